"""``DatabaseManager``: the only owner of the SQLite connection; every write runs on its thread.

It records what the other agents publish: the session and its config, the universe with market
caps as of the run, new candles (the cache shared by sessions), RSI, correlations and failures; it
closes the session as ``completed`` on ``FinalResultsReady`` (then publishes ``ResultsSaved``),
``failed`` on ``RunFailed``, and ``interrupted`` when it is stopped while its session still runs.
"""

from __future__ import annotations

import logging

import pandas as pd

from cryptorsi.events import (
    CoinProcessingFailed,
    CorrelationAnalyzed,
    FinalResultsReady,
    HistoricalPricesFetched,
    ResultsSaved,
    RSICalculated,
    RunFailed,
    SessionStarted,
    TopCoinsFetched,
)
from cryptorsi.runtime.worker import QueueWorkerThread

__all__ = ["DatabaseManager"]

log = logging.getLogger(__name__)


class DatabaseManager(QueueWorkerThread):
    """Persists the analysis. ``ready`` is set once the connection is open (``start_error`` if it failed)."""

    def __init__(self, bus, db_path: str, *, session_id: str | None = None):
        super().__init__(bus, name="DatabaseManager", threads=1, session_id=session_id)
        self.db_path = db_path
        self._conn = None
        self._writer = None
        self._open_sessions: set[str] = set()

    # -- runs in the DatabaseManager thread
    def on_start(self) -> None:
        from cryptorsi.storage.database import SessionWriter, open_database

        self._conn = open_database(self.db_path, create=True)
        self._writer = SessionWriter(self._conn)

    def on_stop(self) -> None:
        if self._conn is None:
            return
        try:
            for session_id in sorted(self._open_sessions):
                self._writer.finish_session(session_id, "interrupted", _now(), "stopped before completion")
                log.info("session %s marked interrupted", session_id)
            self._open_sessions.clear()
        finally:
            self._conn.close()
            self._conn = None

    # -- runs in the thread calling start()
    def subscribe(self) -> None:
        handlers = {
            SessionStarted: self._start_session,
            TopCoinsFetched: self._save_universe,
            HistoricalPricesFetched: self._save_candles,
            RSICalculated: self._save_rsi,
            CorrelationAnalyzed: self._save_correlation,
            CoinProcessingFailed: self._save_failure,
            FinalResultsReady: self._complete,
            RunFailed: self._fail,
        }
        for event_type, task in handlers.items():
            self.listen(event_type, lambda event, task=task: self.submit(task, event))

    # -- tasks (DatabaseManager thread)
    def _mine(self, event) -> bool:
        return self.session_id is None or event.session_id == self.session_id

    def _start_session(self, event: SessionStarted) -> None:
        if self._mine(event):
            self._writer.start_session(event.session_id, event.started_at, event.config)
            self._open_sessions.add(event.session_id)

    def _save_universe(self, event: TopCoinsFetched) -> None:
        if self._mine(event):
            self._writer.save_universe(event.session_id, event.listings, event.excluded)

    def _save_candles(self, event: HistoricalPricesFetched) -> None:
        if self._mine(event) and len(event.uncached):
            listing = event.listing
            self._writer.save_candles(listing.exchange, listing.pair, event.timeframe, event.uncached)

    def _save_rsi(self, event: RSICalculated) -> None:
        if self._mine(event):
            self._writer.save_rsi(event.session_id, event.listing.coin_id, event.timeframe, event.period,
                                  event.method, event.rsi)

    def _save_correlation(self, event: CorrelationAnalyzed) -> None:
        if self._mine(event):
            self._writer.save_correlation(event.session_id, event.listing.coin_id, event.timeframe,
                                          event.correlation, event.n_points)

    def _save_failure(self, event: CoinProcessingFailed) -> None:
        if self._mine(event):
            self._writer.save_failure(event.session_id, event.listing.coin_id, event.listing.symbol,
                                      event.timeframe, event.stage, event.reason)

    def _complete(self, event: FinalResultsReady) -> None:
        if self._mine(event):
            self._close(event.session_id, "completed", None)

    def _fail(self, event: RunFailed) -> None:
        if self._mine(event):
            self._close(event.session_id, "failed", event.reason)

    def _close(self, session_id: str, status: str, message: str | None) -> None:
        self._writer.finish_session(session_id, status, _now(), message)
        self._open_sessions.discard(session_id)
        self.publish(ResultsSaved(session_id, status))


def _now() -> pd.Timestamp:
    return pd.Timestamp.now(tz="UTC")
