"""Results as a sortable table: a DataFrame view and the HTML shown in notebooks.

>>> from cryptorsi.notebook.report import results_frame, result_html
>>> results_frame(result, sort_by="market_cap", ascending=True)   # doctest: +SKIP
>>> from IPython.display import HTML; HTML(result_html(result))   # doctest: +SKIP

Selected pairs (low cap and ``|correlation| >= threshold``) are highlighted; results of synthetic
sample data carry :data:`~cryptorsi.agents.display.SYNTHETIC_LABEL` above and below the table.
"""

from __future__ import annotations

import html

import pandas as pd

__all__ = ["results_frame", "result_html", "summary_frame", "SORT_KEYS"]

#: sort keys of :func:`results_frame`: column name -> label
SORT_KEYS = {
    "correlation": "correlation",
    "abs_correlation": "|correlation|",
    "market_cap": "market cap",
    "symbol": "symbol",
    "timeframe": "timeframe",
    "n_points": "points",
}

_HIGHLIGHT = "#fff3b0"
_SYNTHETIC_STYLE = ("color:#b00020;font-weight:bold;border:1px solid #b00020;padding:2px 6px;"
                    "display:inline-block;margin:2px 0")


def results_frame(result, *, sort_by: str = "correlation", ascending: bool = False, selected_only: bool = False,
                  timeframe: str | None = None, include_benchmark: bool = False) -> pd.DataFrame:
    """One row per (coin, timeframe) analysed, with ``name`` and ``selected``, sorted by ``sort_by``.

    ``sort_by`` is a column, or ``abs_correlation``; ties keep the market-cap order. The benchmark's own rows (its
    RSI against itself) are left out unless ``include_benchmark``; :func:`result_html` shows it once, above.
    """
    from cryptorsi.analytics import select
    from cryptorsi.tables import benchmark_rows

    if sort_by not in SORT_KEYS:
        raise ValueError(f"sort_by: one of {', '.join(SORT_KEYS)}, got {sort_by!r}")
    table = result.correlations.copy()
    if not include_benchmark:
        table = table[~benchmark_rows(table, result.config.benchmark)]
    names = result.universe.drop_duplicates("coin_id").set_index("coin_id")["name"]
    table.insert(2, "name", table["coin_id"].map(names))
    chosen = select(result.correlations, result.config.correlation_threshold)
    keys = set(zip(chosen["coin_id"], chosen["timeframe"]))
    table["selected"] = [(c, t) in keys for c, t in zip(table["coin_id"], table["timeframe"])]
    if timeframe is not None:
        table = table[table["timeframe"] == timeframe]
    if selected_only:
        table = table[table["selected"]]
    table = table.sort_values("market_cap", ascending=False, kind="stable")
    if sort_by == "abs_correlation":
        order = table["correlation"].abs().sort_values(ascending=ascending, kind="stable").index
        table = table.loc[order]
    else:
        table = table.sort_values(sort_by, ascending=ascending, kind="stable")
    return table.reset_index(drop=True)


def summary_frame(result) -> pd.DataFrame:
    """Per timeframe: pairs analysed and failed, median correlation, pairs over the threshold, selected."""
    threshold = result.config.correlation_threshold
    table = results_frame(result)
    rows = []
    for timeframe in result.config.timeframes:
        group = table[table["timeframe"] == timeframe]
        rows.append({"timeframe": timeframe, "analysed": len(group),
                     "failed": int((result.failures["timeframe"] == timeframe).sum()),
                     "median corr": round(float(group["correlation"].median()), 3) if len(group) else float("nan"),
                     "|corr| >= thr": int((group["correlation"].abs() >= threshold).sum()),
                     "selected": int(group["selected"].sum())})
    return pd.DataFrame(rows)


def result_html(result, *, max_rows: int | None = 40, sort_by: str = "correlation", ascending: bool = False,
                selected_only: bool = False, timeframe: str | None = None) -> str:
    """The result as HTML: parameters, a summary per timeframe, and the (sorted) table with selected rows
    highlighted; ``max_rows`` rows at most (``None``: all)."""
    config = result.config
    frame = results_frame(result, sort_by=sort_by, ascending=ascending, selected_only=selected_only,
                          timeframe=timeframe)
    parts = ['<div class="cryptorsi-result">']
    if result.synthetic:
        parts.append(_synthetic_banner())
    cap = "n/a" if result.low_cap_threshold is None else f"${result.low_cap_threshold:,.0f}"
    parts.append(f"<div><b>cryptorsi results</b> &mdash; session <code>{_e(result.session_id)}</code></div>")
    parts.append(f"<div style='font-size:90%'>{_e(_benchmark_line(result))}</div>")
    parts.append(f"<div style='font-size:90%'>RSI({config.rsi_period}, {_e(config.rsi_method)}) vs "
                 f"{_e(config.benchmark)}; selected: low cap (market cap &le; P{config.low_cap_percentile:g} = "
                 f"{cap}) and |correlation| &ge; {config.correlation_threshold:g}</div>")
    parts.append(_table(summary_frame(result), {}, caption="per timeframe"))
    n_selected = int(frame["selected"].sum()) if not selected_only else len(frame)
    shown = frame if max_rows is None else frame.head(max_rows)
    order = f"{SORT_KEYS[sort_by]}, {'ascending' if ascending else 'descending'}"
    what = "selected pairs" if selected_only else "coin/timeframe pairs"
    note = f"{len(frame)} {what}" + (f" ({n_selected} selected, highlighted)" if not selected_only else "")
    if len(shown) < len(frame):
        note += f"; the first {len(shown)} shown"
    note += f"; sorted by {order}"
    display = pd.DataFrame({
        "symbol": shown["symbol"], "name": shown["name"], "timeframe": shown["timeframe"],
        "correlation": shown["correlation"].map(lambda v: f"{v:.3f}"),
        "points": shown["n_points"].map(lambda v: f"{int(v):,}"),
        "market cap": shown["market_cap"].map(lambda v: "n/a" if pd.isna(v) else f"${v:,.0f}"),
        "low cap": shown["low_cap"].map(lambda v: "yes" if v else ""),
        "selected": shown["selected"].map(lambda v: "yes" if v else ""),
    })
    highlight = {i: _HIGHLIGHT for i, chosen in enumerate(shown["selected"]) if chosen}
    parts.append(_table(display, highlight, caption=note, numeric=("correlation", "points", "market cap")))
    if len(result.failures):
        reasons = result.failures["reason"].value_counts().head(3)
        listed = "; ".join(f"{count} &times; {_e(reason)}" for reason, count in reasons.items())
        parts.append(f"<div style='font-size:90%'>{len(result.failures)} pairs failed: {listed}</div>")
    if result.synthetic:
        parts.append(_synthetic_banner())
    parts.append("</div>")
    return "\n".join(parts)


def _benchmark_line(result) -> str:
    from cryptorsi.agents.display import benchmark_line
    from cryptorsi.tables import benchmark_rows

    benchmark = result.config.benchmark
    rows = result.correlations[benchmark_rows(result.correlations, benchmark)]
    listed = result.universe[benchmark_rows(result.universe, benchmark)]
    return benchmark_line(benchmark, rows, pair=listed["pair"].iloc[0] if len(listed) else None)


def _synthetic_banner() -> str:
    from cryptorsi.agents.display import SYNTHETIC_LABEL

    return f"<div style='{_SYNTHETIC_STYLE}'>{_e(SYNTHETIC_LABEL)}</div>"


def _table(frame: pd.DataFrame, highlight: dict[int, str], *, caption: str = "",
           numeric: tuple[str, ...] = ()) -> str:
    head = "".join(f"<th style='text-align:{'right' if c in numeric else 'left'}'>{_e(c)}</th>"
                   for c in frame.columns)
    rows = []
    for i, values in enumerate(frame.itertuples(index=False)):
        style = f" style='background:{highlight[i]}'" if i in highlight else ""
        cells = "".join(f"<td style='text-align:{'right' if c in numeric else 'left'}'>{_e(v)}</td>"
                        for c, v in zip(frame.columns, values))
        rows.append(f"<tr{style}>{cells}</tr>")
    cap = f"<caption style='caption-side:top;text-align:left'>{_e(caption)}</caption>" if caption else ""
    return (f"<table class='cryptorsi-table' style='border-collapse:collapse;font-size:90%'>{cap}"
            f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>")


def _e(value) -> str:
    return html.escape(str(value))
