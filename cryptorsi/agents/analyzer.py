"""``CryptoAnalyzer``: the orchestrator. It holds the state of a session and does no heavy work.

``begin()`` publishes ``SessionStarted`` and ``FetchTopCoinsRequested``; on ``TopCoinsFetched`` it
makes one :class:`AnalysisJob` per timeframe and requests every coin's candles (the benchmark's
first); it turns candles into ``CalculateRSIRequested``, RSI into ``CorrelationAnalyzed`` (or a
failure), counts outstanding coins, and publishes ``FinalResultsReady`` when every job is done.
"""

from __future__ import annotations

import logging

import pandas as pd

from cryptorsi.agents.analysis_job import AnalysisJob, Outcome
from cryptorsi.config import AnalysisConfig
from cryptorsi.market import timeframe_ms
from cryptorsi.events import (
    CalculateRSIRequested,
    CoinProcessingFailed,
    CorrelationAnalyzed,
    FetchHistoricalPricesRequested,
    FetchTopCoinsRequested,
    FinalResultsReady,
    HistoricalPricesFetched,
    ProgressUpdated,
    RSICalculated,
    RunFailed,
    SessionStarted,
    TopCoinsFetched,
)
from cryptorsi.runtime.worker import QueueWorkerThread
from cryptorsi.sources import source_spec
from cryptorsi.tables import correlation_table, failure_table

__all__ = ["CryptoAnalyzer"]

log = logging.getLogger(__name__)


class CryptoAnalyzer(QueueWorkerThread):
    """Orchestrates session ``session_id``; ``windows`` maps each timeframe to its ``[start_ms, end_ms)``."""

    def __init__(self, bus, config: AnalysisConfig, session_id: str, windows: dict[str, tuple[int, int]],
                 *, synthetic: bool = False):
        super().__init__(bus, name="CryptoAnalyzer", threads=1, session_id=session_id)
        self.config = config
        self.source = source_spec(config)
        self.windows = windows
        self.synthetic = synthetic
        self.jobs: dict[str, AnalysisJob] = {}
        self._listings = ()
        self._finished = False
        # (coin_id, timeframe) pairs whose candles / RSI arrived: what the database must have saved
        self._priced: set[tuple[str, str]] = set()
        self._rsi_seen: set[tuple[str, str]] = set()
        self._reported: dict[str, int] = {}  # the progress last published per timeframe

    def subscribe(self) -> None:
        self.serve(TopCoinsFetched, self._plan)
        self.serve(HistoricalPricesFetched, self._request_rsi)
        self.serve(RSICalculated, self._rsi_ready)
        self.serve(CoinProcessingFailed, self._coin_failed)
        self.serve(RunFailed, self._run_failed)

    def begin(self) -> None:
        """Start the session (called by the Runner once every agent is ready)."""
        cfg = self.config
        config = cfg.to_dict() | {"windows": {tf: list(w) for tf, w in self.windows.items()},
                                  "synthetic": self.synthetic}
        self.publish(SessionStarted(self.session_id, config, pd.Timestamp.now(tz="UTC")))
        self.publish(FetchTopCoinsRequested(self.session_id, self.source, cfg.top_n_coins, cfg.quote, cfg.benchmark,
                                            cfg.include_stablecoins))

    # ------------------------------------------------------------------ tasks (analyzer thread)
    def _plan(self, event: TopCoinsFetched) -> None:
        if self.jobs:
            return  # a duplicate delivery
        self._listings = event.listings
        benchmark = next(l for l in event.listings if l.symbol == self.config.benchmark)
        ordered = (benchmark,) + tuple(l for l in event.listings if l is not benchmark)
        for timeframe in self.config.timeframes:
            self.jobs[timeframe] = AnalysisJob(timeframe, ordered, benchmark, min_overlap=self.config.min_overlap,
                                               max_lag=self.config.max_lag,
                                               rolling_window=self.config.rolling_window,
                                               threshold=self.config.correlation_threshold)
            self._progress(self.jobs[timeframe])
        # timeframe after timeframe, the one with the most candles first: each timeframe is analysed as soon as
        # its last coin is in, so the largest analysis runs while the other timeframes are still being fetched
        for timeframe in sorted(self.config.timeframes, key=timeframe_ms):
            start, end = self.windows[timeframe]
            for listing in ordered:
                self.publish(FetchHistoricalPricesRequested(self.session_id, self.source, listing, timeframe, start, end))

    def _request_rsi(self, event: HistoricalPricesFetched) -> None:
        key = (event.listing.coin_id, event.timeframe)
        if key in self._priced:
            return  # a redelivered event (at-least-once buses)
        self._priced.add(key)
        job = self.jobs.get(event.timeframe)
        if job is not None:
            job.prices_ready(event.listing, event.candles["close"])
        self.publish(CalculateRSIRequested(self.session_id, event.listing, event.timeframe, event.candles["close"],
                                           self.config.rsi_period, self.config.rsi_method))

    def _rsi_ready(self, event: RSICalculated) -> None:
        job = self.jobs.get(event.timeframe)
        if job is not None:
            self._rsi_seen.add((event.listing.coin_id, event.timeframe))
            self._publish_outcomes(job, job.rsi_ready(event.listing, event.rsi))

    def _coin_failed(self, event: CoinProcessingFailed) -> None:
        job = self.jobs.get(event.timeframe)
        if job is not None and event.stage != "correlation":  # correlation failures are this agent's own
            self._publish_outcomes(job, job.failed_at(event.listing, event.stage, event.reason), upstream=event)

    def _run_failed(self, event: RunFailed) -> None:
        self._finished = True

    # ------------------------------------------------------------------ helpers
    def _publish_outcomes(self, job: AnalysisJob, outcomes: list[Outcome], upstream=None) -> None:
        for outcome in outcomes:
            if outcome.stage is None:
                self.publish(CorrelationAnalyzed(self.session_id, outcome.listing, job.timeframe,
                                                 outcome.correlation, outcome.n_points, outcome.metrics))
            elif upstream is None or outcome.listing != upstream.listing:
                self.publish(CoinProcessingFailed(self.session_id, outcome.listing, job.timeframe, outcome.stage,
                                                  outcome.reason))
        if job.finished != self._reported.get(job.timeframe):
            self._reported[job.timeframe] = job.finished
            self._progress(job)
        if not self._finished and self.jobs and all(j.done for j in self.jobs.values()):
            self._finished = True
            self._publish_final()

    def _progress(self, job: AnalysisJob) -> None:
        self.publish(ProgressUpdated(self.session_id, job.timeframe, job.finished, job.total, job.failed))

    def _publish_final(self) -> None:
        rows, failures = [], []
        for job in self.jobs.values():
            for o in job.outcomes:
                base = {"coin_id": o.listing.coin_id, "symbol": o.listing.symbol, "timeframe": job.timeframe}
                if o.stage is None:
                    rows.append(base | {"correlation": o.correlation, "n_points": o.n_points,
                                        "market_cap": o.listing.coin.market_cap} | o.metrics)
                else:
                    failures.append(base | {"stage": o.stage, "reason": o.reason})
        caps = [listing.coin.market_cap for listing in self._listings]
        table, threshold = correlation_table(rows, caps, self.config.low_cap_percentile, self.config.timeframes)
        expected = {"prices": len(self._priced), "rsi": len(self._rsi_seen), "correlations": len(rows),
                    "failures": len(failures)}
        self.publish(FinalResultsReady(self.session_id, table, failure_table(failures), threshold, self.synthetic,
                                       expected))
