"""``AnalysisJob``: the state of one timeframe's analysis — which coins are still outstanding.

Pure bookkeeping (no threads, no bus): the ``CryptoAnalyzer`` feeds it each coin's closes and RSI, or its
failure. When the last coin of the timeframe is in, the job hands every RSI to the one analysis of a timeframe
(:func:`cryptorsi.analysis.analyze_timeframe`, which ``AnalysisResult.retune`` calls too) and returns the
outcomes; a benchmark that failed upstream makes every coin fail there, with the benchmark's own reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from cryptorsi.analysis import analyze_timeframe
from cryptorsi.market import Listing
from cryptorsi.tables import METRIC_COLUMNS

__all__ = ["AnalysisJob", "Outcome"]


@dataclass(frozen=True)
class Outcome:
    """A coin finished: a correlation (``stage is None``) or a failure at ``stage`` with ``reason``."""

    listing: Listing
    correlation: float | None = None
    n_points: int = 0
    stage: str | None = None
    reason: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)


class AnalysisJob:
    def __init__(self, timeframe: str, listings: tuple[Listing, ...], benchmark: Listing, *, min_overlap: int,
                 max_lag: int = 12, rolling_window: int | None = None, threshold: float = 0.7):
        self.timeframe = timeframe
        self.benchmark = benchmark
        self.params = dict(min_overlap=min_overlap, max_lag=max_lag, rolling_window=rolling_window,
                           threshold=threshold)
        self.total = len(listings)
        self._listings = {listing.coin_id: listing for listing in listings}
        self._outstanding = set(self._listings)
        self._rsi: dict[str, pd.Series] = {}
        self._close: dict[str, pd.Series] = {}
        self._benchmark_cause: str | None = None  # the benchmark's own failure, if it failed upstream
        self.outcomes: list[Outcome] = []

    @property
    def done(self) -> bool:
        return not self._outstanding and not self._rsi

    @property
    def finished(self) -> int:
        """Coins whose RSI is in or that failed (what progress counts)."""
        return self.total - len(self._outstanding)

    @property
    def failed(self) -> int:
        return sum(1 for o in self.outcomes if o.stage is not None)

    def prices_ready(self, listing: Listing, close: pd.Series) -> None:
        """A coin's closes arrived (kept for the return correlation)."""
        if listing.coin_id in self._outstanding:
            self._close[listing.coin_id] = close

    def rsi_ready(self, listing: Listing, rsi: pd.Series) -> list[Outcome]:
        """A coin's RSI arrived; when it is the last one, every outcome of the timeframe is returned."""
        if listing.coin_id not in self._outstanding:
            return []  # a duplicate delivery, or a coin already failed
        self._outstanding.discard(listing.coin_id)
        self._rsi[listing.coin_id] = rsi
        return self._analyze() if not self._outstanding else []

    def failed_at(self, listing: Listing, stage: str, reason: str) -> list[Outcome]:
        """A coin failed upstream (fetch or RSI); when it is the last one, every outcome left is returned too."""
        if listing.coin_id not in self._outstanding:
            return []
        self._outstanding.discard(listing.coin_id)
        if listing.coin_id == self.benchmark.coin_id:
            self._benchmark_cause = reason
        out = [self._finish(Outcome(listing, stage=stage, reason=reason))]
        if not self._outstanding and self._rsi:
            out += self._analyze()
        return out

    def _analyze(self) -> list[Outcome]:
        rsi, self._rsi = self._rsi, {}
        close = pd.DataFrame({c: self._close[c] for c in rsi if c in self._close})
        table = analyze_timeframe(pd.DataFrame(rsi), close, self.benchmark.coin_id, self.timeframe, **self.params,
                                  benchmark_symbol=self.benchmark.symbol, benchmark_cause=self._benchmark_cause)
        out = []
        for coin_id, row in table.iterrows():
            listing = self._listings[coin_id]
            if isinstance(row["reason"], str):
                out.append(self._finish(Outcome(listing, stage="correlation", reason=row["reason"])))
            else:
                metrics = {name: _plain(row[name]) for name in METRIC_COLUMNS}
                out.append(self._finish(Outcome(listing, float(row["correlation"]), int(row["n_points"]),
                                                metrics=metrics)))
        return out

    def _finish(self, outcome: Outcome) -> Outcome:
        self.outcomes.append(outcome)
        return outcome


def _plain(value):
    """A numpy/pandas scalar as a plain Python value (None for missing), for events and SQLite."""
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return None if np.isnan(value) else float(value)
    return value
