"""``ui()``: a panel to run an analysis and tune its parameters from the cached candles.

>>> import cryptorsi as cr
>>> panel = cr.ui(source="sample", top_n_coins=100, timeframes="1h,4h,1d", db_path="tuning.db")  # doctest: +SKIP
>>> panel                                       # doctest: +SKIP  (shows it; press Run)

Run starts a :class:`~cryptorsi.runner.Runner` (stopping any other of the kernel) and shows its live
status in the panel; Stop stops it. Once a run is done, changing the RSI period or method, the
threshold, the low-cap percentile or choosing fewer timeframes recomputes the table and the figures
with :meth:`AnalysisResult.retune <cryptorsi.result.AnalysisResult.retune>` — from the candles in
memory, without network or agents. The other controls (source, top N, weeks, database) need a new Run.

Which thread runs what: the panel is built, and its buttons and controls are handled, on the kernel's
main thread; a run is awaited on a named thread (``cryptorsi-ui-run``) that fills the panel through
trait assignments only and ends with the run.
"""

from __future__ import annotations

import html
import logging
import threading
import time
from typing import Any

import ipywidgets as widgets
import traitlets

from cryptorsi.config import AnalysisConfig
from cryptorsi.errors import ConfigError, RunFailed, RunInterrupted
from cryptorsi.market import TIMEFRAMES
from cryptorsi.runtime.worker import THREAD_PREFIX

__all__ = ["ui", "TuningPanel", "TUNABLE"]

log = logging.getLogger(__name__)

#: controls applied to a finished run through ``retune`` (the others need a new run)
TUNABLE = ("rsi_period", "rsi_method", "correlation_threshold", "low_cap_percentile", "timeframes")

#: the exchanges the picker lists (ccxt ids; any other can be typed)
_EXCHANGES = ("binance", "binanceus", "okx", "bybit", "coinbase", "kraken")
_FIGURES = ("bars", "rsi", "heatmap", "cap")
_FIGURE_DPI = 80
_TAB_TITLES = ("Table", "Correlation bars", "RSI vs BTC", "Heatmap", "Market cap vs correlation")


def ui(config: AnalysisConfig | None = None, **overrides: Any) -> "TuningPanel":
    """A :class:`TuningPanel` initialised from ``config`` (and keyword overrides, as for ``run_analysis``)."""
    return TuningPanel(config, **overrides)


class TuningPanel(widgets.VBox):
    """Controls for the config, Run / Stop, the live status of a run, then the results table and figures.

    ``state`` is idle, running, completed, stopped or failed (observe it to know when a run ends);
    ``result`` is the result of the last run and ``tuned`` the one shown (retuned); ``timings`` has
    the seconds the last update took (retune, table, figure).
    """

    state = traitlets.Unicode("idle")

    def __init__(self, config: AnalysisConfig | None = None, **overrides: Any):
        if config is None:
            config = AnalysisConfig(**overrides)
        elif overrides:
            config = config.replace(**overrides)
        self.base_config = config
        self.result = None
        self.tuned = None
        self.runner = None
        self.timings: dict[str, float] = {}
        self._lock = threading.RLock()
        self._waiter: threading.Thread | None = None
        self._stale: set[str] = set()

        style = {"description_width": "120px"}
        wide = widgets.Layout(width="340px")
        self.controls: dict[str, widgets.Widget] = {
            "source": widgets.Dropdown(options=["sample", "cache", "live"], value=config.source,
                                       description="source", style=style, layout=wide),
            # any ccxt id can be typed; the list offers the exchanges the project's tests serve, and two more
            "exchange": widgets.Combobox(value=config.exchange, options=list(_EXCHANGES), ensure_option=False,
                                         description="exchange (live)", style=style, layout=wide),
            "top_n_coins": widgets.BoundedIntText(value=config.top_n_coins, min=2, max=5000, description="top N coins",
                                                  style=style, layout=wide),
            "timeframes": widgets.SelectMultiple(options=list(TIMEFRAMES), value=tuple(config.timeframes), rows=5,
                                                 description="timeframes", style=style, layout=wide),
            "weeks": widgets.BoundedFloatText(value=float(config.weeks), min=1, max=520, step=1, description="weeks",
                                              style=style, layout=wide),
            "db_path": widgets.Text(value=str(config.db_path), description="database", style=style, layout=wide),
            "rsi_period": widgets.IntSlider(value=config.rsi_period, min=2, max=60, description="RSI period",
                                            continuous_update=False, style=style, layout=wide),
            "rsi_method": widgets.ToggleButtons(options=["wilder", "sma"], value=config.rsi_method,
                                                description="RSI method", style=style),
            "correlation_threshold": widgets.FloatSlider(value=config.correlation_threshold, min=0.0, max=1.0,
                                                         step=0.01, description="threshold |corr|",
                                                         continuous_update=False, style=style, layout=wide),
            "low_cap_percentile": widgets.FloatSlider(value=config.low_cap_percentile, min=1.0, max=100.0, step=1.0,
                                                      description="low-cap percentile", continuous_update=False,
                                                      style=style, layout=wide),
        }
        self.run_button = widgets.Button(description="Run", button_style="primary", icon="play")
        self.stop_button = widgets.Button(description="Stop", button_style="warning", icon="stop", disabled=True)
        self.message = widgets.HTML("Set the parameters and press <b>Run</b>.")
        self.status_box = widgets.VBox()
        from cryptorsi.notebook.widgets import ResultsTable

        self.table = ResultsTable()
        self.images = {name: widgets.Image(format="png", layout=widgets.Layout(max_width="100%"))
                       for name in _FIGURES}
        self.coin = widgets.Dropdown(options=[], description="coin", layout=widgets.Layout(width="220px"))
        self.coin_timeframe = widgets.Dropdown(options=[], description="timeframe",
                                               layout=widgets.Layout(width="200px"))
        rsi_page = widgets.VBox([widgets.HBox([self.coin, self.coin_timeframe]), self.images["rsi"]])
        self.tabs = widgets.Tab(children=[self.table, self.images["bars"], rsi_page, self.images["heatmap"],
                                          self.images["cap"]])
        for i, title in enumerate(_TAB_TITLES):
            self.tabs.set_title(i, title)
        self.results_box = widgets.VBox([self.tabs], layout=widgets.Layout(display="none"))

        data = widgets.VBox([self.controls[k] for k in ("source", "exchange", "top_n_coins", "timeframes", "weeks",
                                                        "db_path")])
        tuning = widgets.VBox([widgets.HTML("<b>Tuning</b> (applied at once after a run, from cached candles)")]
                              + [self.controls[k] for k in ("rsi_period", "rsi_method", "correlation_threshold",
                                                            "low_cap_percentile")])
        super().__init__([widgets.HTML("<h4 style='margin:2px 0'>cryptorsi: RSI correlation with BTC</h4>"),
                          widgets.HBox([data, tuning]),
                          widgets.HBox([self.run_button, self.stop_button]),
                          self.message, self.status_box, self.results_box])

        self.run_button.on_click(self._on_run_clicked)
        self.stop_button.on_click(self._on_stop_clicked)
        for name, control in self.controls.items():
            control.observe(self._on_control_changed, names="value")
        self.tabs.observe(self._on_tab_changed, names="selected_index")
        self.coin.observe(self._on_coin_changed, names="value")
        self.coin_timeframe.observe(self._on_coin_changed, names="value")

    # ------------------------------------------------------------------ public
    def config(self) -> AnalysisConfig:
        """The config the controls describe (``ConfigError`` names a bad field)."""
        c = self.controls
        return self.base_config.replace(
            source=c["source"].value, exchange=c["exchange"].value, top_n_coins=int(c["top_n_coins"].value),
            timeframes=tuple(c["timeframes"].value),
            weeks=float(c["weeks"].value), db_path=c["db_path"].value, rsi_period=int(c["rsi_period"].value),
            rsi_method=c["rsi_method"].value, correlation_threshold=float(c["correlation_threshold"].value),
            low_cap_percentile=float(c["low_cap_percentile"].value))

    def run(self) -> None:
        """Start a run with the current controls (what the Run button does)."""
        self._on_run_clicked(self.run_button)

    def wait(self, timeout: float | None = None) -> str:
        """Block until the current run and its display are done; the panel's ``state`` then.

        For notebooks that run unattended (press Run, then wait); interactively, just watch the panel.
        """
        waiter = self._waiter
        if waiter is not None and waiter is not threading.current_thread():
            waiter.join(timeout)
            if waiter.is_alive():
                raise TimeoutError(f"the run is still going after {timeout}s")
        return self.state

    def stop(self, timeout: float = 5.0) -> bool:
        """Stop the running analysis, if any, and wait for the panel's thread; True when all ended."""
        runner = self.runner
        clean = runner.stop(timeout) if runner is not None else True
        waiter = self._waiter
        if waiter is not None and waiter is not threading.current_thread():
            waiter.join(timeout)
            clean &= not waiter.is_alive()
        return clean

    def close(self) -> None:
        """Stop any run and close the panel with every widget it holds (ipywidgets keeps them until then)."""
        from cryptorsi.notebook.widgets import close_widgets

        self.stop()
        close_widgets(self)
        self.result = self.tuned = self.runner = None

    # ------------------------------------------------------------------ handlers (main thread)
    def _on_run_clicked(self, _button) -> None:
        from cryptorsi.notebook.kernel import show_runs_in
        from cryptorsi.runner import Runner

        if self.state == "running":
            return
        try:
            config = self.config()
        except (ConfigError, ValueError) as exc:
            self._say(f"Cannot run: {_e(exc)}", error=True)
            return
        self._close_views()
        self.state = "running"
        self.run_button.disabled, self.stop_button.disabled = True, False
        where = f" ({config.exchange})" if config.source == "live" else ""
        self._say(f"Running on the <b>{config.source}</b> source{where} ...")
        try:
            with show_runs_in(self._place_view, results=False):
                self.runner = Runner(config, progress=True).start()
        except Exception as exc:  # noqa: BLE001 - shown in the panel: the kernel must not see a traceback
            log.debug("run failed to start", exc_info=True)
            self._ended("failed", f"The run could not start: {_e(exc)}")
            return
        self._waiter = threading.Thread(target=self._await_run, args=(self.runner,), name=f"{THREAD_PREFIX}ui-run")
        self._waiter.start()

    def _on_stop_clicked(self, _button) -> None:
        if self.runner is not None:
            self.runner.stop()

    def _on_control_changed(self, change) -> None:
        name = next(k for k, v in self.controls.items() if v is change["owner"])
        if self.result is None or self.state == "running":
            return
        if name in TUNABLE:
            if name == "timeframes" and not self._timeframes_to_show():
                self._say("Those timeframes were not all analysed: press <b>Run</b> to analyse them.")
                return
            self.update()
        else:
            self._say(f"<b>{name}</b> changed: press <b>Run</b> to fetch and analyse again.")

    def _on_tab_changed(self, change) -> None:
        with self._lock:
            self._draw_visible()

    def _on_coin_changed(self, change) -> None:
        with self._lock:
            if self.tuned is not None and self.coin.value and self.coin_timeframe.value:
                self._stale.add("rsi")
                self._draw_visible()

    # ------------------------------------------------------------------ the update
    def update(self) -> None:
        """Retune the last run's result with the tuning controls and redraw the table and the visible figure."""
        with self._lock:
            if self.result is None:
                return
            c = self.controls
            changes = {"rsi_period": int(c["rsi_period"].value), "rsi_method": c["rsi_method"].value,
                       "correlation_threshold": float(c["correlation_threshold"].value),
                       "low_cap_percentile": float(c["low_cap_percentile"].value)}
            timeframes = self._timeframes_to_show()
            if timeframes:
                changes["timeframes"] = timeframes
            started = time.perf_counter()
            try:
                tuned = self.result.retune(**changes)
            except (ConfigError, ValueError) as exc:
                self._say(f"Cannot retune: {_e(exc)}", error=True)
                return
            retuned = time.perf_counter()
            self.tuned = tuned
            self.table.show(tuned)
            tabled = time.perf_counter()
            self._refresh_coins(tuned)
            self._stale = set(_FIGURES)
            self._draw_visible()
            drawn = time.perf_counter()
            self.timings = {"retune_s": retuned - started, "table_s": tabled - retuned, "figure_s": drawn - tabled,
                            "total_s": drawn - started}
            cfg = tuned.config
            self._say(f"RSI({cfg.rsi_period}, {cfg.rsi_method}), threshold {cfg.correlation_threshold:g}, low cap "
                      f"&le; P{cfg.low_cap_percentile:g}: <b>{len(tuned.selected)}</b> selected pairs "
                      f"<span style='color:#666'>(updated in {self.timings['total_s']:.2f} s)</span>")

    def _timeframes_to_show(self) -> tuple[str, ...] | None:
        chosen = tuple(self.controls["timeframes"].value)
        analysed = tuple(self.result.windows) if self.result is not None else ()
        if chosen and all(tf in analysed for tf in chosen):
            return chosen
        return None

    def _refresh_coins(self, tuned) -> None:
        from cryptorsi.notebook.plots import default_coin

        table = tuned.correlations
        table = table[table["symbol"].str.upper() != tuned.config.benchmark.upper()]
        chosen = list(dict.fromkeys(tuned.selected["symbol"]))
        others = sorted(set(table["symbol"]) - set(chosen))
        options = chosen + others
        timeframes = list(tuned.config.timeframes)
        try:
            symbol, timeframe = default_coin(tuned)
        except ValueError:
            symbol, timeframe = (options[0] if options else None), (timeframes[0] if timeframes else None)
        for dropdown, values, default in ((self.coin, options, symbol), (self.coin_timeframe, timeframes, timeframe)):
            dropdown.unobserve(self._on_coin_changed, names="value")
            try:
                keep = dropdown.value if dropdown.value in values else default
                if list(dropdown.options) != values:
                    dropdown.options = values
                dropdown.value = keep
            finally:
                dropdown.observe(self._on_coin_changed, names="value")

    def _draw_visible(self) -> None:
        """Draw the figure of the selected tab if it is out of date (the others wait until shown)."""
        index = self.tabs.selected_index
        if index:
            self._draw(_FIGURES[index - 1])

    def _draw(self, name: str) -> None:
        from cryptorsi.notebook import plots

        if self.tuned is None or name not in self._stale:
            return
        if name == "rsi":
            figure = plots.rsi_vs_btc(self.tuned, self.coin.value, self.coin_timeframe.value)
        else:
            figure = {"bars": plots.correlation_bars, "heatmap": plots.correlation_heatmap,
                      "cap": plots.cap_vs_correlation}[name](self.tuned)
        self.images[name].value = plots.to_png(figure, dpi=_FIGURE_DPI)
        self._stale.discard(name)

    def render_all(self) -> None:
        """Draw every figure now (e.g. before saving the notebook), not only the visible one."""
        with self._lock:
            for name in _FIGURES:
                self._draw(name)

    # ------------------------------------------------------------------ the run (panel thread)
    def _await_run(self, runner) -> None:
        try:
            result = runner.wait()
        except RunInterrupted:
            self._ended("stopped", "The run was stopped; its session is marked interrupted.")
            return
        except RunFailed as exc:
            self._ended("failed", f"The run failed: {_e(exc)}")
            return
        except Exception as exc:  # noqa: BLE001 - shown in the panel; the thread must end cleanly
            log.exception("the run failed")
            self._ended("failed", f"The run failed: {type(exc).__name__}: {_e(exc)}")
            return
        self._say("Loading the candles for tuning ...")
        try:
            with self._lock:
                self.result = result
                self._warm(result)
                self.results_box.layout.display = ""
                self.update()
        except Exception as exc:  # noqa: BLE001
            log.exception("showing the result failed")
            self._ended("failed", f"Showing the result failed: {type(exc).__name__}: {_e(exc)}")
            return
        self._ended("completed", None)

    @staticmethod
    def _warm(result) -> None:
        """Load every timeframe's closes once, so that the first tuning step is as fast as the next ones."""
        other = result.config.rsi_period + 1 if result.config.rsi_period < 60 else result.config.rsi_period - 1
        result.retune(rsi_period=other)

    def _place_view(self, view) -> None:
        self.status_box.children = (view,)

    def _close_views(self) -> None:
        """Close the previous run's view (ipywidgets would keep it, and its widgets, for ever)."""
        from cryptorsi.notebook.widgets import close_widgets

        old, self.status_box.children = self.status_box.children, ()
        for view in old:
            close_widgets(view)

    def _ended(self, state: str, text: str | None) -> None:
        self.run_button.disabled, self.stop_button.disabled = False, True
        if text is not None:
            self._say(text, error=state == "failed")
        self.state = state

    def _say(self, text: str, *, error: bool = False) -> None:
        self.message.value = f"<span style='color:#b00020'>{text}</span>" if error else text


def _e(value) -> str:
    return html.escape(str(value))
