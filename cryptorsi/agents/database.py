"""``DatabaseManager``: the only owner of the SQLite connection; every write runs on its thread.

It records what the other agents publish: the session and its config, the universe with market
caps as of the run, new candles (the cache shared by sessions), RSI, correlations and failures; it
closes the session as ``completed`` once ``FinalResultsReady`` came and everything it announced is
saved (then publishes ``ResultsSaved``), ``failed`` on ``RunFailed``, and ``interrupted`` when it is
stopped while its session still runs. From before the session's row is written until after it is
closed, it holds the session's lock (:class:`~cryptorsi.storage.liveness.SessionLock`): a session whose
process is gone reads as ``abandoned``.

A write that fails (disk full, I/O error, read-only file or folder, a lock held past the busy timeout, or
anything else a save raises) ends the run: the manager logs the cause once, marks the session ``failed``
with it when the database still takes that row, publishes ``RunFailed`` ("cannot write to <file>: <cause>")
and ``ResultsSaved("failed")``, and ignores every later event. What was committed before stays (each save
is one transaction).

On a network bus, events of different types may arrive in any order: events that come before their
session's ``SessionStarted`` wait for it, and completion waits for the counts ``FinalResultsReady``
announces. Saves are upserts and counts are kept per (coin, timeframe), so a redelivered event is
harmless.
"""

from __future__ import annotations

import collections
import logging
import sqlite3

import pandas as pd

from cryptorsi.events import (
    CoinProcessingFailed,
    CorrelationAnalyzed,
    Event,
    FinalResultsReady,
    HistoricalPricesFetched,
    ResultsSaved,
    RSICalculated,
    RunFailed,
    SessionStarted,
    TopCoinsFetched,
)
from cryptorsi.runtime.worker import QueueWorkerThread
from cryptorsi.storage.database import write_error
from cryptorsi.storage.liveness import SessionLock

__all__ = ["DatabaseManager"]

log = logging.getLogger(__name__)


class DatabaseManager(QueueWorkerThread):
    """Persists session ``session_id``. ``ready`` is set once the connection is open (``start_error`` if not)."""

    def __init__(self, bus, db_path: str, *, session_id: str):
        super().__init__(bus, name="DatabaseManager", threads=1, session_id=session_id)
        self.db_path = db_path
        self._conn = None
        self._writer = None
        self._started = False
        self._closed = False
        self._early: list[Event] = []  # events that arrived before SessionStarted
        self._saved: dict[str, set] = collections.defaultdict(set)  # kind -> (coin_id, timeframe) keys
        self._final: FinalResultsReady | None = None
        self._session_lock = None  # the SessionLock, while the session is this process's

    # -- runs in the DatabaseManager thread
    def on_start(self) -> None:
        from cryptorsi.storage.database import SessionWriter, open_database

        self._conn = open_database(self.db_path, create=True)
        self._writer = SessionWriter(self._conn)

    def on_stop(self) -> None:
        if self._conn is None:
            return
        try:
            if self._started and not self._closed:
                self._closed = True
                self._writer.finish_session(self.session_id, "interrupted", _now(), "stopped before completion")
                log.info("session %s marked interrupted", self.session_id)
        except sqlite3.Error as exc:  # the run is over: nothing more to end; the session reads as abandoned
            log.warning("%s", write_error(self.db_path, exc))
        finally:
            self._release()
            try:
                self._conn.close()
            except sqlite3.Error as exc:  # e.g. a full disk refuses the closing checkpoint; the WAL stays
                log.debug("%s: closing: %s", self.db_path, exc)
            self._conn = None

    def runs_when_stopping(self, fn, args) -> bool:
        # a session stopped early still records what it is and which coins it has (two short writes): without
        # them an interrupted session has no row, or no universe for Store queries about it
        return fn == self._record and isinstance(args[0], (SessionStarted, TopCoinsFetched))

    # -- runs in the thread calling start()
    def subscribe(self) -> None:
        for event_type in (SessionStarted, TopCoinsFetched, HistoricalPricesFetched, RSICalculated,
                           CorrelationAnalyzed, CoinProcessingFailed, FinalResultsReady, RunFailed):
            self.serve(event_type, self._record)

    # -- tasks (DatabaseManager thread)
    def _record(self, event: Event) -> None:
        if self._closed:
            return
        try:
            self._save(event)
        except Exception as exc:  # noqa: BLE001 - any failed save ends the run (else it would wait forever)
            self._fail(event, exc)

    def _save(self, event: Event) -> None:
        if isinstance(event, SessionStarted):
            if self._session_lock is None:
                self._session_lock = SessionLock.acquire(self.db_path, event.session_id)
            self._writer.start_session(event.session_id, event.started_at, event.config)
            self._started = True
            early, self._early = self._early, []
            for waiting in early:
                self._save(waiting)
        elif not self._started:
            self._early.append(event)
        elif isinstance(event, TopCoinsFetched):
            self._writer.save_universe(event.session_id, event.listings, event.excluded)
        elif isinstance(event, HistoricalPricesFetched):
            listing = event.listing
            if len(event.uncached):
                self._writer.save_candles(listing.exchange, listing.pair, event.timeframe, event.uncached)
            self._writer.save_series_copy(listing.exchange, listing.pair, event.timeframe, event.candles)
            self._count("prices", event)
        elif isinstance(event, RSICalculated):
            self._writer.save_rsi(event.session_id, event.listing.coin_id, event.timeframe, event.period,
                                  event.method, event.rsi)
            self._count("rsi", event)
        elif isinstance(event, CorrelationAnalyzed):
            self._writer.save_correlation(event.session_id, event.listing.coin_id, event.timeframe,
                                          event.correlation, event.n_points, event.metrics)
            self._count("correlations", event)
        elif isinstance(event, CoinProcessingFailed):
            self._writer.save_failure(event.session_id, event.listing.coin_id, event.listing.symbol,
                                      event.timeframe, event.stage, event.reason)
            self._count("failures", event)
        elif isinstance(event, FinalResultsReady):
            self._final = event
            self._complete_if_saved()
        elif isinstance(event, RunFailed):
            self._close("failed", event.reason)

    def _count(self, kind: str, event) -> None:
        self._saved[kind].add((event.listing.coin_id, event.timeframe))
        if self._final is not None:
            self._complete_if_saved()

    def _complete_if_saved(self) -> None:
        missing = {kind: n - len(self._saved[kind]) for kind, n in self._final.expected.items()
                   if len(self._saved[kind]) < n}
        if missing:
            log.debug("session %s: waiting for %s before completing", self.session_id, missing)
            return
        self._close("completed", None)

    def _close(self, status: str, message: str | None) -> None:
        self._writer.finish_session(self.session_id, status, _now(), message)
        self._closed = True
        self._release()
        self.publish(ResultsSaved(self.session_id, status, message))

    def _release(self) -> None:
        lock, self._session_lock = self._session_lock, None
        if lock is not None:
            lock.release()

    def _fail(self, event: Event, exc: Exception) -> None:
        """A save raised: log the cause once, end the session as ``failed`` if the database still takes that row,
        and end the run."""
        self._closed = True
        if isinstance(exc, sqlite3.Error):
            reason = write_error(self.db_path, exc)
            log.warning("%s: %s", self.name, reason)
        else:  # not a storage error: a bug, worth its traceback
            reason = f"cannot save to {self.db_path}: {type(exc).__name__}: {exc}"
            log.exception("%s: saving %s failed", self.name, type(event).__name__)
        if self._started:
            try:
                self._writer.finish_session(self.session_id, "failed", _now(), reason)
            except Exception as again:  # noqa: BLE001 - the row stays `running`; it reads as abandoned
                log.debug("%s: could not mark session %s failed: %s", self.name, self.session_id, again)
        self._release()
        self.publish(RunFailed(self.session_id, reason))
        self.publish(ResultsSaved(self.session_id, "failed", reason))


def _now() -> pd.Timestamp:
    return pd.Timestamp.now(tz="UTC")
