"""The analysis of one timeframe: every coin's RSI against the benchmark's (pure, no threads, no storage).

The agents (:class:`~cryptorsi.agents.analysis_job.AnalysisJob`, once every coin of a timeframe is in) and
:meth:`AnalysisResult.retune <cryptorsi.result.AnalysisResult.retune>` call the same function, so a run and a
retune with the same parameters give the same correlations and the same failure reasons.

>>> import numpy as np, pandas as pd
>>> t = pd.date_range("2025-01-01", periods=100, freq="h", tz="UTC")
>>> rsi = pd.DataFrame({"btc": np.linspace(30, 70, 100), "eth": np.linspace(35, 60, 100)}, index=t)
>>> table = analyze_timeframe(rsi, pd.DataFrame(), "btc", "1h", min_overlap=30, max_lag=2,
...                           rolling_window=None, threshold=0.7)
>>> float(round(table.loc["eth", "correlation"], 6)), table.loc["eth", "reason"] is None
(1.0, True)
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from cryptorsi.analytics import correlate_frame
from cryptorsi.leadlag import analyze_many
from cryptorsi.market import timeframe_ms
from cryptorsi.tables import METRIC_COLUMNS

__all__ = ["analyze_timeframe", "benchmark_missing_reason"]


def benchmark_missing_reason(symbol: str, timeframe: str, cause: str | None = None) -> str:
    """Why no coin of ``timeframe`` has a correlation when the benchmark has no RSI (``cause``: the benchmark's own
    failure, when known)."""
    return f"benchmark {symbol} has no {timeframe} RSI" + (f" ({cause})" if cause else "")


def analyze_timeframe(rsi: pd.DataFrame, close: pd.DataFrame, benchmark: str, timeframe: str, *, min_overlap: int,
                      max_lag: int, rolling_window: int | None, threshold: float,
                      benchmark_symbol: str | None = None, benchmark_cause: str | None = None) -> pd.DataFrame:
    """Correlation with the ``benchmark`` column and the lead-lag metrics of every column of ``rsi``.

    ``rsi`` and ``close`` have one column per coin id (``close`` may lack coins: they get no return
    correlation). Returns one row per column of ``rsi``: ``correlation``, ``n_points``, ``reason`` (None, or why
    there is no correlation: too few common candles, or a benchmark without RSI, named by
    ``benchmark_symbol`` with its ``benchmark_cause``) and :data:`~cryptorsi.tables.METRIC_COLUMNS`.
    """
    if benchmark not in rsi or not rsi[benchmark].notna().any():
        reason = benchmark_missing_reason(benchmark_symbol or benchmark, timeframe, benchmark_cause)
        coins = [c for c in rsi.columns if c != benchmark]
        table = pd.DataFrame({"correlation": np.nan, "n_points": 0, "reason": reason}, index=pd.Index(coins))
        return table.assign(**{name: np.nan for name in METRIC_COLUMNS})
    bench = rsi[benchmark].dropna()
    table = correlate_frame(rsi, bench, min_overlap)
    with_returns = benchmark in close  # without the benchmark's closes there is no return correlation
    metrics = analyze_many(rsi, bench, timeframe_ms(timeframe), max_lag=max_lag, rolling_window=rolling_window,
                           threshold=threshold, min_overlap=min_overlap, close=close if with_returns else None,
                           benchmark_close=close[benchmark].dropna() if with_returns else None)
    return table.join(metrics[list(METRIC_COLUMNS)])
