"""The result tables every part shows the same way: correlations and failures (pure pandas)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import pandas as pd

from cryptorsi.analytics import low_cap_flags, low_cap_threshold

__all__ = ["CORRELATION_COLUMNS", "FAILURE_COLUMNS", "METRIC_COLUMNS", "correlation_table", "failure_table", "ago",
           "duration", "benchmark_rows"]

#: lead-lag, stability and significance of each correlation (see cryptorsi.leadlag)
METRIC_COLUMNS = ("best_lag", "best_lag_correlation", "stability", "n_eff", "p_value", "ci_low", "ci_high",
                  "return_correlation")
CORRELATION_COLUMNS = ("coin_id", "symbol", "timeframe", "correlation", "n_points", "market_cap", "low_cap",
                       *METRIC_COLUMNS)
FAILURE_COLUMNS = ("coin_id", "symbol", "timeframe", "stage", "reason")


def correlation_table(rows: Iterable[Mapping], universe_caps: Iterable[float | None], low_cap_percentile: float,
                      timeframes: Iterable[str] = ()) -> tuple[pd.DataFrame, float | None]:
    """Correlation rows (coin_id, symbol, timeframe, correlation, n_points, market_cap and the
    :data:`METRIC_COLUMNS`, None where missing) with ``low_cap`` added.

    ``low_cap`` compares each market cap with the ``low_cap_percentile`` of ``universe_caps`` (the caps
    of every coin analysed in the run). Rows are ordered by timeframe (in ``timeframes`` order), then
    correlation, descending. Returns the table and the low-cap threshold.
    """
    threshold = low_cap_threshold(universe_caps, low_cap_percentile)
    frame = pd.DataFrame(list(rows), columns=[c for c in CORRELATION_COLUMNS if c != "low_cap"])
    caps = pd.to_numeric(frame["market_cap"], errors="coerce").astype("float64")
    frame["market_cap"] = caps
    frame["correlation"] = frame["correlation"].astype("float64")
    frame["n_points"] = frame["n_points"].astype("int64")
    frame["low_cap"] = low_cap_flags(caps.to_numpy(), threshold)
    frame["best_lag"] = pd.array(pd.to_numeric(frame["best_lag"]), dtype="Int64")
    for name in METRIC_COLUMNS[1:]:
        frame[name] = pd.to_numeric(frame[name]).astype("float64")
    frame = frame[list(CORRELATION_COLUMNS)]
    order = {tf: i for i, tf in enumerate(timeframes)}
    frame["_tf"] = frame["timeframe"].map(lambda tf: order.get(tf, len(order))).astype("int64")
    frame = frame.sort_values(["_tf", "correlation", "symbol"], ascending=[True, False, True], kind="stable")
    return frame.drop(columns="_tf").reset_index(drop=True), threshold


def failure_table(rows: Iterable[Mapping]) -> pd.DataFrame:
    """Failure rows (coin_id, symbol, timeframe, stage, reason), sorted by symbol then timeframe."""
    frame = pd.DataFrame(list(rows), columns=list(FAILURE_COLUMNS))
    return frame.sort_values(["symbol", "timeframe"], kind="stable").reset_index(drop=True)


def benchmark_rows(frame: pd.DataFrame, benchmark: str) -> pd.Series:
    """Which rows of a frame with a ``symbol`` column (correlations, coins) are the benchmark's; in a correlation
    table, that is its RSI against itself (correlation 1)."""
    return frame["symbol"].astype(str).str.upper() == str(benchmark).upper()


def duration(seconds: float) -> str:
    """A duration for people: ``2.1 s``, ``3 min 5 s``, ``2 h 4 min``."""
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes} min {secs} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60} min"


def ago(timestamp: float | None, now: float) -> str:
    """How long before ``now`` the epoch time ``timestamp`` was: ``2.1 s ago`` (see :func:`duration`); ``""``
    for ``None``."""
    return "" if timestamp is None else f"{duration(now - float(timestamp))} ago"
