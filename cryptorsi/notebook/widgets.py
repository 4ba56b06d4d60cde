"""Widgets of a run: the live status, the sortable results table, and the view that holds them.

Widgets are created on the kernel's main thread (in the cell that starts the run). Their ``update``
/ ``show_result`` methods may be called from any thread: they only assign traits (and append to an
``Output`` widget's outputs), which ipywidgets sends to the frontend as comm messages; no ``with output:``
block is ever entered off the main thread.

ipywidgets keeps every widget it has made (and its comm) until the widget is closed, shown or not, so a
day of runs in one kernel would keep every run's view: :func:`close_widgets` closes a widget and all the
widgets it holds, and :func:`keep_live` keeps only the views of the last :data:`LIVE_VIEWS` runs shown in
cells as widgets, older ones becoming a static copy of what they showed.

>>> status = StatusWidget(["1h", "1d"])        # doctest: +SKIP
>>> status.update(runner.status())             # doctest: +SKIP  (from any thread)
>>> ResultsTable(result)                       # doctest: +SKIP  sortable, selected rows highlighted
"""

from __future__ import annotations

import base64
import html
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import ipywidgets as widgets

from cryptorsi.runtime.worker import THREAD_PREFIX

__all__ = ["StatusWidget", "StatusRefresher", "ResultsTable", "RunView", "requests_text", "held_widgets",
           "close_widgets", "keep_live", "LIVE_VIEWS"]

log = logging.getLogger(__name__)

_STATE_STYLE = {"running": "info", "starting": "info", "completed": "success", "failed": "danger",
                "interrupted": "warning", "stopped": "warning"}


class StatusWidget(widgets.VBox):
    """Live status of one run: a bar per timeframe, every agent's queue and last activity, failures and
    requests so far. Build it on the main thread; call :meth:`update` from any thread."""

    def __init__(self, timeframes, *, source: str = "", synthetic: bool = False, **kwargs: Any):
        from cryptorsi.agents.display import SYNTHETIC_LABEL

        self.timeframes = tuple(timeframes)
        self.source = source
        self.banner = widgets.HTML(_synthetic_html(SYNTHETIC_LABEL) if synthetic else "")
        self.header = widgets.HTML("<b>cryptorsi</b> starting")
        self.bars = {tf: widgets.IntProgress(value=0, min=0, max=1, description=tf, bar_style="info",
                                             layout=widgets.Layout(width="420px")) for tf in self.timeframes}
        self.counts = {tf: widgets.Label("waiting") for tf in self.timeframes}
        self.totals = widgets.HTML("")
        self.agents = widgets.HTML("")
        rows = [widgets.HBox([self.bars[tf], self.counts[tf]]) for tf in self.timeframes]
        super().__init__([self.banner, self.header, *rows, self.totals, self.agents], **kwargs)
        self._lock = threading.Lock()
        self._synthetic_label = SYNTHETIC_LABEL

    def update(self, status: dict[str, Any]) -> None:
        """Show ``status`` (a :meth:`Runner.status` dict); trait assignments only, safe from any thread."""
        with self._lock:
            if status.get("synthetic") and not self.banner.value:
                self.banner.value = _synthetic_html(self._synthetic_label)
            state = status.get("state", "")
            elapsed = status.get("elapsed_s")
            timing = "" if elapsed is None else f" &middot; {elapsed:.1f} s"
            where = " ".join(filter(None, (status.get("source") or self.source, status.get("exchange"))))
            self.header.value = (f"<b>cryptorsi</b> session <code>{_e(status.get('session_id') or '')}</code> "
                                 f"&middot; {_e(where)} &middot; <b>{_e(state)}</b>{timing}")
            for timeframe, progress in (status.get("progress") or {}).items():
                bar = self.bars.get(timeframe)
                if bar is None:
                    continue
                total, done, failed = int(progress.get("total", 0)), int(progress.get("done", 0)), \
                    int(progress.get("failed", 0))
                bar.max = max(1, total)
                bar.value = min(done, bar.max)
                fetched = ((status.get("requests") or {}).get("timeframes") or {}).get(timeframe) \
                    if isinstance(status.get("requests"), dict) else None
                planned = f" · requests {fetched.get('done', 0)}/{fetched.get('planned', 0)}" \
                    if isinstance(fetched, dict) and fetched.get("planned") else ""
                self.counts[timeframe].value = f"{done}/{total} coins, {failed} failed{planned}"
                if total and done >= total:
                    bar.bar_style = "success"
            self.totals.value = (f"failures so far: <b>{int(status.get('failures', 0))}</b> &middot; "
                                 f"task errors: {int(status.get('task_errors', 0))} &middot; "
                                 f"{_e(requests_text(status.get('requests'), status.get('source') or self.source))}")
            agents = status.get("agents") or {}
            if agents:
                self.agents.value = _agents_html(agents, time.time())

    def finish(self, state: str) -> None:
        """Mark the run ended as ``state`` (completed, failed, interrupted); safe from any thread."""
        with self._lock:
            style = _STATE_STYLE.get(state, "")
            for bar in self.bars.values():
                if bar.bar_style != "success" or state != "completed":
                    bar.bar_style = style
            value = self.header.value
            for old in ("running", "starting", "new"):
                value = value.replace(f"<b>{old}</b>", f"<b>{_e(state)}</b>")
            self.header.value = value


def requests_text(requests: Any, source: str = "") -> str:
    """One line about the requests sent and the budget they use (the ``requests`` entry of a status).

    Understands the DataFetcher's ``request_stats`` (Binance ``requests`` and request ``weight_in_window``
    of ``weight_limit`` per ``weight_window_s``, retries, 429s, bans, CoinGecko requests) and a plain
    ``{"used", "budget"}``; ``None`` means no request is made (sample and cache sources) or not reported.
    """
    if requests is None:
        return "requests: none (offline source)" if source in ("sample", "cache") else "requests: n/a"
    if not isinstance(requests, dict):
        return f"requests: {requests}"
    if "weight_limit" in requests or "klines_requests" in requests:
        text = f"requests: {requests.get('requests', 0)} Binance"
        if requests.get("coingecko_requests"):
            text += f" + {requests['coingecko_requests']} CoinGecko"
        if requests.get("weight_limit"):
            window = requests.get("weight_window_s")
            text += (f"; weight used {requests.get('weight_in_window', 0)} of {requests['weight_limit']}"
                     + (f" per {window:g} s" if window else ""))
        trouble = [f"{requests[k]} {label}" for k, label in (("retries", "retries"), ("rate_limited", "rate-limited"),
                                                               ("banned", "banned"), ("errors", "errors"))
                   if requests.get(k)]
        if requests.get("paused_s"):
            trouble.append(f"paused {requests['paused_s']:.1f} s")
        return text + (f" ({', '.join(trouble)})" if trouble else "")
    used = next((requests[k] for k in ("used", "requests") if k in requests), None)
    budget = next((requests[k] for k in ("budget", "limit") if k in requests), None)
    if used is not None and budget:
        return f"requests used: {used} of {budget}"
    return "requests: " + ", ".join(f"{k} {v}" for k, v in requests.items() if not isinstance(v, (dict, list)))


class StatusRefresher:
    """A named thread that calls ``widget.update(status())`` every ``interval`` seconds until stopped.

    It waits on an Event (never sleeps), so :meth:`stop` ends it at once.
    """

    def __init__(self, widget: StatusWidget, status: Callable[[], dict[str, Any]], *, interval: float = 0.3,
                 name: str = "status"):
        self.widget = widget
        self.status = status
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"{THREAD_PREFIX}{name}")

    def start(self) -> "StatusRefresher":
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> bool:
        """Stop and join within ``timeout``; True when the thread ended."""
        self._stop.set()
        if self._thread.ident is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        return not self._thread.is_alive()

    def refresh(self) -> None:
        try:
            self.widget.update(self.status())
        except Exception:  # noqa: BLE001 - a status display must never break the run; logged once per failure
            log.exception("status refresh failed")

    def _run(self) -> None:
        self.refresh()
        while not self._stop.wait(self.interval):
            self.refresh()


class ResultsTable(widgets.VBox):
    """The results as a table, sortable by any column, selected pairs highlighted.

    Controls: sort key, descending, selected only, timeframe. :meth:`show` may be called from any thread.
    """

    def __init__(self, result=None, *, max_rows: int | None = 60, **kwargs: Any):
        from cryptorsi.notebook.report import SORT_KEYS

        self.max_rows = max_rows
        self.sort_by = widgets.Dropdown(options=[(label, key) for key, label in SORT_KEYS.items()],
                                        value="correlation", description="sort by",
                                        layout=widgets.Layout(width="220px"))
        self.descending = widgets.ToggleButton(value=True, description="descending", icon="sort-amount-desc",
                                               layout=widgets.Layout(width="120px"))
        self.selected_only = widgets.Checkbox(value=False, description="selected only", indent=False,
                                              layout=widgets.Layout(width="120px"))
        self.timeframe = widgets.Dropdown(options=[("all", "")], value="", description="timeframe",
                                          layout=widgets.Layout(width="200px"))
        self.html = widgets.HTML("", layout=widgets.Layout(max_height="420px", overflow="auto"))
        controls = widgets.HBox([self.sort_by, self.descending, self.selected_only, self.timeframe])
        super().__init__([controls, self.html], **kwargs)
        self.result = None
        self._lock = threading.RLock()
        for control in (self.sort_by, self.descending, self.selected_only, self.timeframe):
            control.observe(self._on_control_changed, names="value")
        if result is not None:
            self.show(result)

    def show(self, result) -> None:
        """Show ``result`` (an AnalysisResult) with the current sort; safe from any thread."""
        with self._lock:
            self.result = result
            options = [("all", "")] + [(tf, tf) for tf in result.config.timeframes]
            if list(self.timeframe.options) != options:
                keep = self.timeframe.value if self.timeframe.value in dict(options).values() else ""
                self.timeframe.unobserve(self._on_control_changed, names="value")
                try:
                    self.timeframe.options = options
                    self.timeframe.value = keep
                finally:
                    self.timeframe.observe(self._on_control_changed, names="value")
            self._render()

    def _on_control_changed(self, change) -> None:
        self.descending.icon = "sort-amount-desc" if self.descending.value else "sort-amount-asc"
        self.descending.description = "descending" if self.descending.value else "ascending"
        with self._lock:
            if self.result is not None:
                self._render()

    def _render(self) -> None:
        from cryptorsi.notebook.report import result_html

        self.html.value = result_html(self.result, max_rows=self.max_rows, sort_by=self.sort_by.value,
                                      ascending=not self.descending.value, selected_only=self.selected_only.value,
                                      timeframe=self.timeframe.value or None)


class RunView(widgets.VBox):
    """What a notebook run shows in the cell that started it: the live status (optional), then the
    results table and figures. Build it on the main thread; the DisplayAgent fills it from its thread."""

    def __init__(self, timeframes, *, status: bool = True, results: bool = True, source: str = "",
                 synthetic: bool = False, **kwargs: Any):
        self.status = StatusWidget(timeframes, source=source, synthetic=synthetic) if status else None
        self.results = results
        self.table = ResultsTable(layout=widgets.Layout(display="none")) if results else None
        self.output = widgets.Output() if results else None
        children = [w for w in (self.status, self.table, self.output) if w is not None]
        super().__init__(children, **kwargs)

    def show_result(self, result, figures: dict[str, bytes] | None = None) -> None:
        """Show the table and the figures (PNG bytes, by name); safe from any thread."""
        if not self.results:
            return
        self.table.show(result)
        self.table.layout.display = ""
        # the display data IPython would make of an Image, without IPython's formatter (Output.append_display_data
        # makes a global IPython shell, with its history thread and file, when there is no kernel)
        self.output.outputs += tuple(
            {"output_type": "display_data", "metadata": {},
             "data": {"image/png": base64.b64encode(png).decode("ascii"),
                      "text/plain": "<IPython.core.display.Image object>"}}
            for png in (figures or {}).values())

    def show_message(self, text: str, *, error: bool = False) -> None:
        """Append a line of text under the results; safe from any thread."""
        if self.output is None:
            return
        if error:
            self.output.append_stderr(text.rstrip("\n") + "\n")
        else:
            self.output.append_stdout(text.rstrip("\n") + "\n")

    def finish(self, state: str) -> None:
        if self.status is not None:
            self.status.finish(state)

    def snapshot_html(self) -> str:
        """What the view shows, as static HTML: the status line, the table and the figures."""
        parts = [] if self.status is None else [self.status.banner.value, f"<div>{self.status.header.value}</div>"]
        if self.table is not None and self.table.layout.display != "none":
            parts.append(self.table.html.value)
        for output in self.output.outputs if self.output is not None else ():
            png = output.get("data", {}).get("image/png")
            if png:
                parts.append(f"<img src='data:image/png;base64,{png}' style='max-width:100%'/>")
            elif output.get("output_type") == "stream":
                parts.append(f"<pre>{_e(output.get('text', ''))}</pre>")
        return "<div>" + "".join(parts) + "</div>"

    def retire(self, handle=None) -> None:
        """Replace the view, in the cell it was shown in (its display ``handle``), by :meth:`snapshot_html`, and
        close its widgets: the kernel no longer holds them."""
        if handle is not None:
            from IPython.display import HTML

            handle.update(HTML(self.snapshot_html()))
        close_widgets(self)


#: how many run views shown in cells stay live widgets; older ones are replaced by a static copy and closed
LIVE_VIEWS = 5
_live_views: deque = deque()
_live_lock = threading.Lock()


def keep_live(view: RunView, handle=None) -> None:
    """Count ``view`` (just shown in a cell, with its display ``handle``) among the live run views, and retire
    the oldest ones beyond :data:`LIVE_VIEWS`. Call it on the kernel's main thread."""
    with _live_lock:
        _live_views.append((view, handle))
        retired = [_live_views.popleft() for _ in range(len(_live_views) - LIVE_VIEWS)]
    for old, old_handle in retired:
        old.retire(old_handle)


def held_widgets(root: widgets.Widget) -> list[widgets.Widget]:
    """``root`` and every widget it holds (children, layouts, styles...: its synced traits), each once."""
    found, todo = {}, [root]
    while todo:
        widget = todo.pop()
        if id(widget) in found:
            continue
        found[id(widget)] = widget
        for name in widget.keys:
            value = getattr(widget, name, None)
            todo.extend(v for v in (value if isinstance(value, (list, tuple)) else (value,))
                        if isinstance(v, widgets.Widget))
    return list(found.values())


def close_widgets(root: widgets.Widget) -> None:
    """Close ``root`` and every widget it holds (ipywidgets' own ``close``: a subclass that does more on close
    calls this from its ``close``)."""
    for widget in held_widgets(root):
        widgets.Widget.close(widget)


def _agents_html(agents: dict[str, dict[str, Any]], now: float) -> str:
    from cryptorsi.tables import ago

    head = "".join(f"<th style='text-align:{a}'>{h}</th>" for h, a in (
        ("agent", "left"), ("queue", "right"), ("busy", "right"), ("tasks done", "right"), ("errors", "right"),
        ("last activity", "right")))
    rows = []
    for name, info in agents.items():
        rows.append("<tr>" + "".join(
            f"<td style='text-align:{a}'>{'' if v is None else _e(v)}</td>" for v, a in (
                (name, "left"), (info.get("queue"), "right"), (info.get("busy"), "right"),
                (info.get("tasks_done"), "right"), (info.get("errors"), "right"),
                (ago(info.get("last_activity"), now), "right"))) + "</tr>")
    return (f"<table style='border-collapse:collapse;font-size:85%'><thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>")


def _synthetic_html(label: str) -> str:
    return f"<span style='color:#b00020;font-weight:bold'>{_e(label)}</span>"


def _e(value) -> str:
    return html.escape(str(value))
