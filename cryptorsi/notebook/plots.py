"""Figures of an :class:`~cryptorsi.result.AnalysisResult`, drawn with matplotlib's object API only.

>>> from cryptorsi.notebook import plots
>>> plots.correlation_bars(result)        # doctest: +SKIP  correlation per coin and timeframe, threshold marked
>>> plots.rsi_vs_btc(result, "ETH", "1h")  # doctest: +SKIP  a coin's RSI over BTC's, 30/70 bands
>>> plots.correlation_heatmap(result)     # doctest: +SKIP  coins x timeframes
>>> plots.cap_vs_correlation(result)      # doctest: +SKIP  market cap (log) against correlation, low caps shaded

Every function returns a new :class:`NotebookFigure` (a ``matplotlib.figure.Figure`` on the Agg canvas that
shows itself as a PNG in Jupyter whatever the backend). pyplot's global state is never touched, so the
figures can be drawn from any thread; :data:`DRAW_LOCK` serialises the drawing because matplotlib's font
cache and text layout are shared by every figure of the process. Figures of synthetic sample data carry
:data:`~cryptorsi.agents.display.SYNTHETIC_LABEL`. The benchmark (BTC, correlated with itself) is left out.
"""

from __future__ import annotations

import io
import threading
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
from matplotlib.figure import Figure

__all__ = [
    "NotebookFigure",
    "DRAW_LOCK",
    "correlation_bars",
    "rsi_vs_btc",
    "correlation_heatmap",
    "cap_vs_correlation",
    "figures",
    "to_png",
    "default_coin",
]

#: held while a figure is built or rendered (matplotlib's font cache and text layout are process-wide)
DRAW_LOCK = threading.RLock()

_TIMEFRAME_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f")
_SELECTED_COLOR = "#d62728"
_SYNTHETIC_COLOR = "#b00020"


class NotebookFigure(Figure):
    """A Figure on the Agg canvas that displays itself as a PNG in Jupyter, with or without pyplot."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        FigureCanvasAgg(self)

    def _repr_png_(self) -> bytes:
        return to_png(self)


def to_png(figure: Figure, dpi: float | None = None) -> bytes:
    """The figure as PNG bytes (no software version in the metadata, so the bytes are stable)."""
    with DRAW_LOCK:
        if not isinstance(figure.canvas, FigureCanvasAgg):
            FigureCanvasAgg(figure)
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=dpi, metadata={"Software": None})
        return buffer.getvalue()


# ============================================================================================ the figures


def correlation_bars(result, *, timeframes: list[str] | None = None, max_coins: int | None = 40) -> NotebookFigure:
    """Correlation of each coin's RSI with BTC's, one bar per timeframe, the threshold marked.

    Coins are ordered by their mean correlation over the timeframes, best first; with more than
    ``max_coins`` coins only the ``max_coins`` best are drawn (``None``: all). Bars of selected pairs
    (low cap and ``|correlation| >= threshold``) have a red edge.
    """
    data = _plot_table(result, timeframes)
    threshold = result.config.correlation_threshold
    wide = data.pivot_table(index="coin_id", columns="timeframe", values="correlation", aggfunc="first")
    wide = wide.reindex(columns=[tf for tf in _timeframes(result, timeframes) if tf in wide.columns])
    order = wide.mean(axis=1).sort_values(ascending=False, kind="stable").index
    n_total = len(order)
    if max_coins is not None and n_total > max_coins:
        order = order[:max_coins]
    wide = wide.loc[order]
    symbols = data.drop_duplicates("coin_id").set_index("coin_id")["symbol"].reindex(order)
    selected = set(zip(data.loc[data["selected"], "coin_id"], data.loc[data["selected"], "timeframe"]))

    n, k = len(order), max(1, len(wide.columns))
    with DRAW_LOCK:
        fig = NotebookFigure(figsize=(min(18.0, max(8.0, 0.28 * n * min(k, 3) + 2.0)), 5.6))
        ax = _axes(fig, left=0.75, right=0.2, bottom=1.15, top=_top(result))
        width = 0.8 / k
        x = np.arange(n)
        for i, timeframe in enumerate(wide.columns):
            heights = wide[timeframe].to_numpy(dtype=float)
            edges = [_SELECTED_COLOR if (coin, timeframe) in selected else "none" for coin in order]
            ax.bar(x + (i - (k - 1) / 2) * width, np.nan_to_num(heights, nan=0.0), width,
                   color=_TIMEFRAME_COLORS[i % len(_TIMEFRAME_COLORS)], edgecolor=edges, linewidth=1.4,
                   label=f"{timeframe}", gid=f"bars-{timeframe}")
        ax.axhline(threshold, color="black", linestyle="--", linewidth=1.0,
                   label=f"threshold |correlation| = {threshold:g}")
        if (wide.to_numpy(dtype=float) < 0).any():
            ax.axhline(-threshold, color="black", linestyle="--", linewidth=1.0)
        ax.axhline(0, color="#444444", linewidth=0.6)
        if selected:
            ax.bar([np.nan], [np.nan], color="white", edgecolor=_SELECTED_COLOR, linewidth=1.4,
                   label="selected: low cap and |correlation| >= threshold")
        ax.set_xticks(x, symbols.tolist(), rotation=90, fontsize=8 if n <= 60 else 6)
        ax.set_xlim(-0.6, n - 0.4)
        ax.set_ylim(min(-0.05, float(np.nanmin(wide.to_numpy(dtype=float), initial=0.0)) - 0.05), 1.05)
        ax.set_xlabel("coin (by mean correlation over the timeframes)")
        ax.set_ylabel(f"correlation of RSI({_rsi_label(result)}) with BTC's")
        shown = f"{n} of {n_total} coins" if n < n_total else f"{n} coins"
        ax.set_title(f"RSI correlation with BTC per coin and timeframe ({shown})")
        ax.legend(loc="upper right", fontsize=8, ncols=2)
        ax.grid(axis="y", alpha=0.3)
        _label_synthetic(fig, result)
    return fig


def rsi_vs_btc(result, symbol: str | None = None, timeframe: str | None = None, *,
               last: int | None = 500) -> NotebookFigure:
    """A coin's RSI drawn over BTC's RSI on one timeframe, with the 30/70 bands.

    ``symbol`` and ``timeframe`` default to the best selected pair (else the best-correlated coin);
    ``last`` keeps the last candles only (``None``: the whole window).
    """
    if symbol is None or timeframe is None:
        best_symbol, best_timeframe = default_coin(result)
        symbol = symbol or best_symbol
        timeframe = timeframe or best_timeframe
    benchmark = result.config.benchmark
    coin = result.rsi(symbol, timeframe)
    if last is not None:
        coin = coin.iloc[-last:]
    bench = result.rsi(benchmark, timeframe)
    if len(coin):
        bench = bench[(bench.index >= coin.index[0]) & (bench.index <= coin.index[-1])]
    rows = result.correlations[(result.correlations["symbol"].str.upper() == symbol.upper())
                               & (result.correlations["timeframe"] == timeframe)]
    with DRAW_LOCK:
        fig = NotebookFigure(figsize=(11.0, 4.8))
        ax = _axes(fig, left=0.75, right=0.2, bottom=0.65, top=_top(result))
        ax.axhspan(70, 100, color="#d62728", alpha=0.08, label="overbought (RSI > 70)")
        ax.axhspan(0, 30, color="#2ca02c", alpha=0.08, label="oversold (RSI < 30)")
        for level in (30, 70):
            ax.axhline(level, color="#666666", linestyle=":", linewidth=0.9)
        ax.plot(bench.index, bench.to_numpy(), color="#555555", linewidth=1.0, alpha=0.9,
                label=f"{benchmark} RSI", gid="rsi-benchmark")
        ax.plot(coin.index, coin.to_numpy(), color="#1f77b4", linewidth=1.2, label=f"{symbol.upper()} RSI",
                gid="rsi-coin")
        ax.set_ylim(0, 100)
        locator = AutoDateLocator()
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))
        ax.set_ylabel(f"RSI({_rsi_label(result)})")
        ax.set_xlabel("candle open time (UTC)")
        detail = ""
        if len(rows):
            row = rows.iloc[0]
            detail = f": correlation {row['correlation']:.3f} over {int(row['n_points'])} candles"
        ax.set_title(f"{symbol.upper()} RSI over {benchmark} RSI, {timeframe}{detail}")
        ax.legend(loc="upper left", fontsize=8, ncols=4)
        ax.grid(alpha=0.3)
        _label_synthetic(fig, result)
    return fig


def correlation_heatmap(result, *, timeframes: list[str] | None = None,
                        max_coins: int | None = None) -> NotebookFigure:
    """Correlation with BTC as a heatmap: coins (by market cap, largest first) across, timeframes down.

    Missing cells (the pair failed) are grey; selected pairs carry a dot; a line marks where the low
    caps begin. ``max_coins`` keeps the largest coins only (``None``: all).
    """
    data = _plot_table(result, timeframes)
    caps = data.drop_duplicates("coin_id").set_index("coin_id")
    order = caps["market_cap"].sort_values(ascending=False, kind="stable").index
    n_total = len(order)
    if max_coins is not None and n_total > max_coins:
        order = order[:max_coins]
    wanted = [tf for tf in _timeframes(result, timeframes) if tf in set(data["timeframe"])]
    wide = data.pivot_table(index="timeframe", columns="coin_id", values="correlation", aggfunc="first")
    wide = wide.reindex(index=wanted, columns=order)
    values = wide.to_numpy(dtype=float)
    n, k = len(order), len(wanted)
    with DRAW_LOCK:
        width = min(20.0, max(8.0, 0.17 * n + 2.5))
        top = _top(result)
        fig = NotebookFigure(figsize=(width, top + 0.55 * k + 1.3))
        ax = _axes(fig, left=0.75, right=1.3, bottom=1.3, top=top)
        cmap = _diverging_cmap()
        image = ax.imshow(np.ma.masked_invalid(values), aspect="auto", cmap=cmap, vmin=-1.0, vmax=1.0,
                          interpolation="nearest")
        colorbar = fig.colorbar(image, cax=_axes(fig, left=width - 1.1, right=0.95, bottom=1.3, top=top))
        colorbar.set_label("correlation with BTC's RSI")
        sel = data[data["selected"]]
        col = {coin: j for j, coin in enumerate(order)}
        row = {tf: i for i, tf in enumerate(wanted)}
        points = [(col[c], row[t]) for c, t in zip(sel["coin_id"], sel["timeframe"]) if c in col and t in row]
        if points:
            xs, ys = zip(*points)
            ax.scatter(xs, ys, s=10, color="black", marker="o", label="selected: low cap and |corr| >= threshold")
        low = caps["low_cap"].reindex(order).to_numpy(dtype=bool)
        if low.any() and not low.all():
            first_low = int(np.argmax(low))
            ax.axvline(first_low - 0.5, color="black", linewidth=1.2, linestyle="--",
                       label=f"low caps (<= P{result.config.low_cap_percentile:g}) to the right")
        if np.isnan(values).any():
            ax.scatter([np.nan], [np.nan], marker="s", color="#cccccc", label="no correlation (failed)")
        ax.set_yticks(range(k), wanted)
        ax.set_xticks(range(n), caps["symbol"].reindex(order).tolist(), rotation=90, fontsize=8 if n <= 60 else 6)
        ax.set_xlabel("coin (by market cap, largest first)")
        ax.set_ylabel("timeframe")
        shown = f"{n} of {n_total} coins" if n < n_total else f"{n} coins"
        ax.set_title(f"RSI({_rsi_label(result)}) correlation with BTC: coins x timeframes ({shown})")
        if ax.get_legend_handles_labels()[0]:
            fig.legend(loc="lower center", bbox_to_anchor=(0.5, 0.0), ncols=3, fontsize=8, frameon=False)
        _label_synthetic(fig, result)
    return fig


def cap_vs_correlation(result, *, timeframes: list[str] | None = None, listed: int = 20) -> NotebookFigure:
    """Market cap (log scale) against correlation with BTC, the low-cap region shaded, threshold marked.

    Selected pairs are ringed in red; the best ``listed`` selected coins are named beside the plot.
    """
    data = _plot_table(result, timeframes)
    threshold = result.config.correlation_threshold
    low_cap = result.low_cap_threshold
    with DRAW_LOCK:
        fig = NotebookFigure(figsize=(11.5, 5.8))
        ax = _axes(fig, left=0.75, right=2.1, bottom=0.6, top=_top(result))
        ax.set_xscale("log")
        caps = data["market_cap"].to_numpy(dtype=float)
        positive = caps[np.isfinite(caps) & (caps > 0)]
        if low_cap is not None and positive.size:
            ax.axvspan(positive.min() / 1.5, low_cap, color="#ffbf00", alpha=0.15,
                       label=f"low cap: <= P{result.config.low_cap_percentile:g} = ${low_cap:,.0f}")
        for i, timeframe in enumerate(_timeframes(result, timeframes)):
            part = data[data["timeframe"] == timeframe]
            if part.empty:
                continue
            ax.scatter(part["market_cap"], part["correlation"], s=22, alpha=0.8,
                       color=_TIMEFRAME_COLORS[i % len(_TIMEFRAME_COLORS)], label=timeframe, gid=f"points-{timeframe}")
        chosen = data[data["selected"]].sort_values("correlation", ascending=False, kind="stable")
        if len(chosen):
            ax.scatter(chosen["market_cap"], chosen["correlation"], s=70, facecolors="none",
                       edgecolors=_SELECTED_COLOR, linewidths=1.3, label="selected", gid="points-selected")
            best = chosen.drop_duplicates("coin_id")  # each coin at its best timeframe
            lines = [f"{row.symbol:<6} {row.correlation:5.2f}  {row.timeframe}" for row in best.head(listed).itertuples()]
            if len(best) > listed:
                lines.append(f"... {len(best) - listed} more")
            ax.text(1.02, 1.0, "selected coins\n(best timeframe)\n\n" + "\n".join(lines), transform=ax.transAxes,
                    va="top", ha="left", fontsize=8, family="monospace", gid="selected-list")
        ax.axhline(threshold, color="black", linestyle="--", linewidth=1.0, label=f"threshold = {threshold:g}")
        if (data["correlation"] < 0).any():
            ax.axhline(-threshold, color="black", linestyle="--", linewidth=1.0)
        if positive.size:
            ax.set_xlim(positive.min() / 1.5, positive.max() * 1.5)
        ax.set_xlabel("market cap (USD, log scale)")
        ax.set_ylabel(f"correlation of RSI({_rsi_label(result)}) with BTC's")
        ax.set_title("Market cap against RSI correlation with BTC")
        ax.legend(loc="lower right", fontsize=8)
        ax.grid(alpha=0.3, which="both")
        _label_synthetic(fig, result)
    return fig


def figures(result) -> dict[str, NotebookFigure]:
    """The four figures of a result, by name: bars, rsi, heatmap, cap."""
    return {
        "bars": correlation_bars(result),
        "rsi": rsi_vs_btc(result),
        "heatmap": correlation_heatmap(result),
        "cap": cap_vs_correlation(result),
    }


def default_coin(result) -> tuple[str, str]:
    """(symbol, timeframe) of the best selected pair, else of the best-correlated coin other than BTC."""
    chosen = result.selected
    if len(chosen):
        row = chosen.iloc[0]
        return str(row["symbol"]), str(row["timeframe"])
    table = _plot_table(result, None).sort_values("correlation", ascending=False, kind="stable")
    if table.empty:
        raise ValueError(f"session {result.session_id} has no correlation to draw")
    row = table.iloc[0]
    return str(row["symbol"]), str(row["timeframe"])


# ============================================================================================== helpers


def _timeframes(result, timeframes) -> list[str]:
    return list(timeframes) if timeframes is not None else list(result.config.timeframes)


def _plot_table(result, timeframes) -> pd.DataFrame:
    """The result's correlations without the benchmark, restricted to ``timeframes``, with ``selected``."""
    from cryptorsi.analytics import select

    table = result.correlations
    table = table[(table["symbol"].str.upper() != result.config.benchmark.upper())
                  & table["timeframe"].isin(_timeframes(result, timeframes))].copy()
    chosen = select(result.correlations, result.config.correlation_threshold)
    keys = set(zip(chosen["coin_id"], chosen["timeframe"]))
    table["selected"] = [(c, t) in keys for c, t in zip(table["coin_id"], table["timeframe"])]
    return table.reset_index(drop=True)


def _rsi_label(result) -> str:
    config = result.config
    return f"{config.rsi_period}, {config.rsi_method}"


def _top(result) -> float:
    """Top margin in inches: room for the axes title, and the synthetic label above it."""
    return 0.62 if _synthetic(result) else 0.4


def _synthetic(result) -> bool:
    return bool(getattr(result, "synthetic", False))


def _axes(fig: Figure, *, left: float, right: float, bottom: float, top: float):
    """Axes with fixed margins in inches (cheaper to draw than a layout engine, which draws twice)."""
    width, height = fig.get_size_inches()
    return fig.add_axes((left / width, bottom / height, 1 - (left + right) / width, 1 - (bottom + top) / height))


def _label_synthetic(fig: Figure, result) -> None:
    if _synthetic(result):
        from cryptorsi.agents.display import SYNTHETIC_LABEL

        fig.suptitle(SYNTHETIC_LABEL, y=1 - 0.08 / fig.get_size_inches()[1], va="top", color=_SYNTHETIC_COLOR,
                     fontsize=10, fontweight="bold")


def _diverging_cmap():
    from matplotlib import colormaps

    return colormaps["RdBu_r"].with_extremes(bad="#cccccc")
