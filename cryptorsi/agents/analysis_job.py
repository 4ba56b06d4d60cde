"""``AnalysisJob``: the state of one timeframe's analysis — which coins are still outstanding.

Pure bookkeeping (no threads, no bus): the ``CryptoAnalyzer`` feeds it RSI series and failures and
publishes the outcomes it returns. Coin RSIs that arrive before the benchmark's wait for it; if the
benchmark fails, every coin of the timeframe fails with that reason, so the job always finishes.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from cryptorsi.analytics import correlate
from cryptorsi.market import Listing

__all__ = ["AnalysisJob", "Outcome"]


@dataclass(frozen=True)
class Outcome:
    """A coin finished: a correlation (``stage is None``) or a failure at ``stage`` with ``reason``."""

    listing: Listing
    correlation: float | None = None
    n_points: int = 0
    stage: str | None = None
    reason: str | None = None


class AnalysisJob:
    def __init__(self, timeframe: str, listings: tuple[Listing, ...], benchmark: Listing, min_overlap: int):
        self.timeframe = timeframe
        self.benchmark = benchmark
        self.min_overlap = min_overlap
        self.total = len(listings)
        self._outstanding = {listing.coin_id for listing in listings}
        self._waiting: dict[str, tuple[Listing, pd.Series]] = {}
        self._benchmark_rsi: pd.Series | None = None
        self._benchmark_failure: str | None = None
        self.outcomes: list[Outcome] = []

    @property
    def done(self) -> bool:
        return not self._outstanding

    @property
    def finished(self) -> int:
        return self.total - len(self._outstanding)

    @property
    def failed(self) -> int:
        return sum(1 for o in self.outcomes if o.stage is not None)

    def rsi_ready(self, listing: Listing, rsi: pd.Series) -> list[Outcome]:
        """A coin's RSI arrived: correlate it now, or once the benchmark's RSI is known."""
        if listing.coin_id not in self._outstanding:
            return []  # a duplicate delivery
        if listing.coin_id == self.benchmark.coin_id:
            self._benchmark_rsi = rsi
            waiting, self._waiting = list(self._waiting.values()), {}
            return [self._correlate(listing, rsi)] + [self._correlate(l, s) for l, s in waiting]
        if self._benchmark_rsi is None:
            if self._benchmark_failure is not None:
                return [self._finish(Outcome(listing, stage="correlation", reason=self._benchmark_failure))]
            self._waiting[listing.coin_id] = (listing, rsi)
            return []
        return [self._correlate(listing, rsi)]

    def failed_at(self, listing: Listing, stage: str, reason: str) -> list[Outcome]:
        """A coin failed upstream (fetch or RSI). If it is the benchmark, the waiting coins fail too."""
        if listing.coin_id not in self._outstanding:
            return []
        out = [self._finish(Outcome(listing, stage=stage, reason=reason))]
        if listing.coin_id == self.benchmark.coin_id:
            self._benchmark_failure = f"benchmark {listing.symbol} has no {self.timeframe} RSI ({reason})"
            waiting, self._waiting = list(self._waiting.values()), {}
            out += [self._finish(Outcome(l, stage="correlation", reason=self._benchmark_failure)) for l, _ in waiting]
        return out

    def _correlate(self, listing: Listing, rsi: pd.Series) -> Outcome:
        try:
            correlation, n_points = correlate(rsi, self._benchmark_rsi, self.min_overlap)
        except ValueError as exc:  # insufficient overlap, constant RSI
            return self._finish(Outcome(listing, stage="correlation", reason=str(exc)))
        return self._finish(Outcome(listing, correlation=correlation, n_points=n_points))

    def _finish(self, outcome: Outcome) -> Outcome:
        self._outstanding.discard(outcome.listing.coin_id)
        self.outcomes.append(outcome)
        return outcome
