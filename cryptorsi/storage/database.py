"""Opening a cryptorsi database, writing a session (``SessionWriter``), reading the candle cache (``CandleCache``).

One SQLite file in WAL mode holds every session and the candle cache they share. Every write goes
through one connection on the DatabaseManager's thread, each call one transaction, every row an
upsert, so a call can be repeated and a run stopped at any point leaves a consistent file. Readers
(``CandleCache``, :class:`~cryptorsi.storage.store.Store`) use their own read-only connections, which
WAL lets run while the writer writes.

A file that is not a cryptorsi database is never changed: it is first inspected by reading its
16-byte header and then its schema through a read-only connection (``immutable`` when it is not being
written, so not even a ``-wal``/``-shm`` file appears), and only a missing file, an empty file, an empty
SQLite database or a cryptorsi database is ever opened read-write.

>>> import tempfile, os
>>> path = os.path.join(tempfile.mkdtemp(), "demo.db")
>>> conn = open_database(path)
>>> conn.execute("PRAGMA journal_mode").fetchone()[0]
'wal'
>>> conn.close()
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import chain, repeat
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cryptorsi.errors import DatabaseError
from cryptorsi.events import ExcludedCoin
from cryptorsi.market import CANDLE_COLUMNS, Listing, candle_table, candles_from_table, empty_candles
from cryptorsi.storage.schema import (APPLICATION, APPLICATION_ID, META_TABLE, SCHEMA_VERSION, STORED_STATUSES,
                                      migrate)
from cryptorsi.tables import METRIC_COLUMNS

__all__ = [
    "open_database",
    "SessionWriter",
    "CandleCache",
    "inspect_database",
    "require_database",
    "connect_readonly",
    "load_candles",
    "load_coverage",
    "merge_spans",
    "COVERAGE_ATTR",
    "DatabaseState",
    "write_error",
]

log = logging.getLogger(__name__)

_SQLITE_HEADER = b"SQLite format 3\x00"
#: seconds a connection waits for a lock held by another connection (another process writing)
BUSY_TIMEOUT = 30.0
_MIN_MS, _MAX_MS = -(2**63), 2**63 - 1
#: key of ``DataFrame.attrs`` by which a candle frame given to :meth:`SessionWriter.save_candles` names the spans
#: ``[(start_ms, end_ms), ...]`` it completes (see ``candle_coverage`` in :mod:`cryptorsi.storage.schema`)
COVERAGE_ATTR = "cryptorsi.covered"
#: words that mark a config key as a secret; such keys are never written to the database
_SECRET_WORDS = ("api_key", "apikey", "secret", "password", "token")


# ---------------------------------------------------------------------------------------------- inspection
@dataclass(frozen=True)
class DatabaseState:
    """What a path holds: ``missing``, ``blank`` (0-byte file or SQLite file without schema) or ``cryptorsi``."""

    kind: str
    version: int = 0


def inspect_database(path: str | os.PathLike) -> DatabaseState:
    """Classify ``path`` without changing it; ``DatabaseError`` (one line) for a file cryptorsi cannot use.

    Never opens the file read-write and never leaves a ``-wal``, ``-shm`` or ``-journal`` file behind.
    A cryptorsi database of any schema version is ``cryptorsi`` (callers compare ``version``).
    """
    p = os.fspath(path)
    if not os.path.lexists(p):
        return DatabaseState("missing")
    if os.path.isdir(p):
        raise DatabaseError(f"{p} is a directory, not a database file")
    if not os.path.isfile(p):
        raise DatabaseError(f"{p} is not a regular file" if os.path.exists(p) else f"{p} is a broken link")
    try:
        header = _read_header(p)
    except OSError as exc:
        raise DatabaseError(f"{p} is not readable: {exc.strerror or exc}") from None
    if not header:
        return DatabaseState("blank")
    if len(header) < 100 or not header.startswith(_SQLITE_HEADER):
        raise DatabaseError(f"{p} is not a SQLite database")
    try:
        user_version, application_id, objects, marker = _read_schema(p, wal=header[18] == 2 or header[19] == 2)
    except sqlite3.DatabaseError as exc:
        raise DatabaseError(f"{p} is a damaged SQLite database: {exc}") from None
    if marker == APPLICATION:
        if user_version < 1:
            raise DatabaseError(f"{p} is a damaged cryptorsi database: no schema version")
        return DatabaseState("cryptorsi", user_version)
    if not objects and user_version == 0 and application_id in (0, APPLICATION_ID):
        return DatabaseState("blank")
    raise DatabaseError(f"{p} is a SQLite database but not a cryptorsi database")


_header_lock = threading.Lock()
#: real path -> a read-only descriptor of that file, kept open for the life of the process (see _read_header)
_header_fds: dict[str, int] = {}


def _read_header(p: str) -> bytes:
    """The first 100 bytes of the file ``p``, read without ever closing a descriptor of a database in use.

    SQLite locks a database with POSIX advisory locks, which belong to the process: closing *any* descriptor of
    the file releases every lock the process holds on it, those of its SQLite connections included (SQLite
    guards its own descriptors against this, not other code's). A connection that loses its shared lock can be
    taken for the last one by another process's closing connection, which then checkpoints and deletes the WAL
    under it: a corrupt database. So each file is opened once and its descriptor kept (one per database file a
    process looks at); a descriptor is closed only once its path no longer names that file (deleted or replaced),
    when no other process can open it by that path.
    """
    key = os.path.realpath(p)
    with _header_lock:
        fd = _header_fds.get(key)
        if fd is None or not _names(key, fd):
            for other, old in list(_header_fds.items()):  # forget files deleted or replaced (temporary ones)
                if other == key or not _names(other, old):
                    os.close(old)  # no other process can open that file by its path any more
                    del _header_fds[other]
            fd = _header_fds[key] = os.open(key, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        return os.pread(fd, 100, 0)


def _names(path: str, fd: int) -> bool:
    """Whether ``path`` still names the file open as ``fd``."""
    try:
        now, then = os.stat(path), os.fstat(fd)
    except OSError:
        return False
    return (now.st_dev, now.st_ino) == (then.st_dev, then.st_ino)


def _read_schema(p: str, *, wal: bool) -> tuple[int, int, list[str], str | None]:
    """user_version, application_id, schema object names and meta marker, read through a read-only connection."""
    # A read-only connection to a WAL file creates -wal/-shm files when they do not exist (and leaves them),
    # so unless a writer is visibly at work (both files present) the file is read as immutable: no locks,
    # no side files. A rollback-journal file is read with ordinary read-only locking.
    busy = os.path.exists(p + "-wal") and os.path.exists(p + "-shm")
    modes = ["ro"] if (busy or not wal) else []
    modes.append("ro&immutable=1")
    last: sqlite3.Error | None = None
    for mode in modes:
        try:
            conn = sqlite3.connect(f"{_uri(p)}?mode={mode}", uri=True, timeout=BUSY_TIMEOUT,
                                   isolation_level=None, check_same_thread=False)
        except sqlite3.OperationalError as exc:
            last = exc
            continue
        try:
            user_version = conn.execute("PRAGMA user_version").fetchone()[0]
            application_id = conn.execute("PRAGMA application_id").fetchone()[0]
            objects = [row[0] for row in conn.execute("SELECT name FROM sqlite_master")]
            marker = None
            if META_TABLE in objects:
                try:
                    row = conn.execute(f"SELECT value FROM {META_TABLE} WHERE key = 'application'").fetchone()
                    marker = row[0] if row else None
                except sqlite3.OperationalError:  # a table of that name with other columns
                    marker = None
            return user_version, application_id, objects, marker
        except sqlite3.OperationalError as exc:  # e.g. a hot journal a read-only connection cannot roll back
            last = exc
        finally:
            conn.close()
    assert last is not None
    raise last


def write_error(path: str | os.PathLike, exc: BaseException) -> str:
    """The one line that says a write to ``path`` failed: ``cannot write to x.db: database or disk is full``."""
    return f"cannot write to {os.fspath(path)}: {_one_line(exc) or type(exc).__name__}"


def _uri(p: str) -> str:
    return Path(p).absolute().as_uri()


def require_database(path: str | os.PathLike) -> int:
    """Check that ``path`` is a cryptorsi database this code can read; its schema version, else ``DatabaseError``."""
    p = os.fspath(path)
    state = inspect_database(p)
    if state.kind == "missing":
        raise DatabaseError(f"{p}: no such database file")
    if state.kind == "blank":
        raise DatabaseError(f"{p} is empty, not a cryptorsi database")
    _check_version(p, state.version)
    return state.version


def _check_version(p: str, version: int) -> None:
    if version > SCHEMA_VERSION:
        raise DatabaseError(f"{p}: database is newer than this cryptorsi (schema {version})")


# ---------------------------------------------------------------------------------------------- connections
def open_database(path: str | os.PathLike, *, create: bool = True) -> sqlite3.Connection:
    """Open (creating it if ``create`` and the file is missing) a cryptorsi database on the calling thread.

    The connection is in WAL mode with ``synchronous=NORMAL`` and foreign keys on, in autocommit mode
    (``isolation_level=None``: :class:`SessionWriter` opens one explicit transaction per call); the
    schema is created or migrated. ``DatabaseError`` (one line) when the path cannot be used; such a
    file is left byte-identical. An existing empty file (0 bytes, or SQLite without any table) is
    initialised when ``create``. ``":memory:"`` gives a private in-memory database.
    """
    p = os.fspath(path)
    if p != ":memory:":
        state = inspect_database(p)
        parent = os.path.dirname(os.path.abspath(p))
        if state.kind == "missing":
            if not create:
                raise DatabaseError(f"{p}: no such database file")
            if not os.path.isdir(parent):
                raise DatabaseError(f"{p}: directory {parent} does not exist")
        elif state.kind == "blank":
            if not create:
                raise DatabaseError(f"{p} is empty, not a cryptorsi database")
        else:
            _check_version(p, state.version)
        if state.kind != "missing" and not os.access(p, os.W_OK):
            raise DatabaseError(f"{p} is not writable")
        if not os.access(parent, os.W_OK):
            raise DatabaseError(f"{p}: directory {parent} is not writable")
    try:
        conn = sqlite3.connect(p, timeout=BUSY_TIMEOUT, isolation_level=None)
    except sqlite3.Error as exc:
        raise DatabaseError(f"{p}: cannot open the database: {exc}") from None
    try:
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if p != ":memory:" and str(mode).lower() != "wal":
            log.warning("%s: WAL journal mode unavailable (%s); readers may wait for the writer", p, mode)
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
        _ensure_schema(conn, p)
    except BaseException as exc:
        conn.close()
        if isinstance(exc, sqlite3.Error):
            raise DatabaseError(f"{p}: cannot open the database: {exc}") from None
        raise
    return conn


def _ensure_schema(conn: sqlite3.Connection, p: str) -> None:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    _check_version(p, version)
    if version == SCHEMA_VERSION:
        return
    conn.execute("BEGIN IMMEDIATE")  # another process may be creating the same file: look again under the lock
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        _check_version(p, version)
        if version == 0 and conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
            raise DatabaseError(f"{p} is a SQLite database but not a cryptorsi database")
        if version < SCHEMA_VERSION:
            migrate(conn, version)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    if version == 0:
        log.info("%s: created cryptorsi database (schema %d)", p, SCHEMA_VERSION)


def connect_readonly(path: str | os.PathLike) -> sqlite3.Connection:
    """A read-only connection (``mode=ro``) usable from any thread, in autocommit mode.

    No checks: callers check the file first (:func:`require_database`). Note that SQLite creates the
    ``-wal``/``-shm`` files of a WAL database a reader opens when no writer has them open; the next
    writer to close removes them. When they cannot be created (read-only directory) and no writer is
    at work, the file is read as immutable.
    """
    p = os.fspath(path)
    uri = _uri(p)
    conn = None
    try:
        conn = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=BUSY_TIMEOUT, isolation_level=None,
                               check_same_thread=False)
        conn.execute("PRAGMA user_version").fetchone()  # opens the file (and its WAL index) now
        return conn
    except sqlite3.OperationalError as exc:
        if conn is not None:
            conn.close()
        if os.path.exists(p + "-wal"):
            raise DatabaseError(f"{p}: cannot read the database: {exc}") from None
    try:
        return sqlite3.connect(f"{uri}?mode=ro&immutable=1", uri=True, isolation_level=None,
                               check_same_thread=False)
    except sqlite3.Error as exc:
        raise DatabaseError(f"{p}: cannot read the database: {exc}") from None


@contextmanager
def read_transaction(path: str | os.PathLike) -> Iterator[sqlite3.Connection]:
    """A short-lived read-only connection with one read transaction open (one consistent snapshot)."""
    conn = connect_readonly(path)
    try:
        conn.execute("BEGIN")
        try:
            yield conn
        finally:
            conn.execute("ROLLBACK")
    except sqlite3.DatabaseError as exc:
        raise DatabaseError(f"{os.fspath(path)}: cannot read the database: {exc}") from None
    finally:
        conn.close()


# ---------------------------------------------------------------------------------------------- conversions
def index_ms(index: Any) -> np.ndarray:
    """Open times of an index as int64 UTC milliseconds (a naive ``DatetimeIndex`` is taken as UTC)."""
    if isinstance(index, pd.DatetimeIndex):
        return index.as_unit("ms").asi8
    values = np.asarray(index)
    if values.dtype.kind in "iu":
        return values.astype(np.int64)
    return pd.DatetimeIndex(index).as_unit("ms").asi8


def to_iso(ts: Any) -> str:
    """UTC ISO-8601 text with microseconds and a ``Z`` (fixed width, so text order is time order)."""
    t = pd.Timestamp(ts)
    if t is pd.NaT:
        raise ValueError("a session time cannot be NaT")
    t = t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _one_line(text: Any, limit: int = 2000) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _public_config(config: Any) -> dict[str, Any]:
    if hasattr(config, "to_dict"):
        config = config.to_dict()
    return {str(k): v for k, v in dict(config).items()
            if not any(word in str(k).lower() for word in _SECRET_WORDS)}


def _float_or_none(value: Any) -> float | None:
    return None if value is None else float(value)


def _int_or_none(value: Any) -> int | None:
    if value is None:
        return None
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return int(value)


# ---------------------------------------------------------------------------------------------- candle reads
_LOAD_CANDLES = (
    "SELECT open_time, open, high, low, close, volume FROM candles "
    "WHERE exchange = ? AND pair = ? AND timeframe = ? AND open_time >= ? AND open_time < ? ORDER BY open_time"
)


def load_candles(conn: sqlite3.Connection, exchange: str, pair: str, timeframe: str,
                 start_ms: int | None = None, end_ms: int | None = None) -> pd.DataFrame:
    """Cached candles with open time in ``[start_ms, end_ms)`` (``None``: unbounded), as a candle frame.

    The part of the window that the series' copy (``candle_series``) spans comes from that one BLOB; the rest
    (all of it when there is no copy) from the rows, in one range scan of the primary key each. Call it inside
    a read transaction (:func:`read_transaction`) so that the copy and the rows are of the same moment.
    """
    lo = _MIN_MS if start_ms is None else int(start_ms)
    hi = _MAX_MS if end_ms is None else int(end_ms)
    parts = []
    copy = _load_series_copy(conn, exchange, pair, timeframe, lo, hi)
    if copy is None:
        parts.append(_load_candle_rows(conn, exchange, pair, timeframe, lo, hi))
    else:
        table, copy_lo, copy_hi = copy
        if lo < copy_lo:
            parts.append(_load_candle_rows(conn, exchange, pair, timeframe, lo, copy_lo))
        parts.append(table)
        if copy_hi < hi:
            parts.append(_load_candle_rows(conn, exchange, pair, timeframe, copy_hi, hi))
    table = parts[0] if len(parts) == 1 else np.concatenate(parts)
    if not len(table):
        return empty_candles()
    return candles_from_table(table)


def _load_candle_rows(conn: sqlite3.Connection, exchange: str, pair: str, timeframe: str, lo: int,
                      hi: int) -> np.ndarray:
    """The rows with open time in ``[lo, hi)`` as an (n, 6) array. The rows go straight into one float64 array
    (open times in ms are integers far below 2**53: exact in float64); most of the time goes into the
    ``sqlite3`` module making the row tuples, which no other way of reading rows avoids."""
    rows = conn.execute(_LOAD_CANDLES, (exchange, pair, timeframe, lo, hi)).fetchall()
    if not rows:
        return np.empty((0, 6))
    try:  # the fastest way from row tuples to one array
        return np.fromiter(chain.from_iterable(rows), dtype=np.float64, count=6 * len(rows)).reshape(-1, 6)
    except TypeError:  # a NULL (a NaN that was stored): np.array turns None into NaN
        return np.array(rows, dtype=np.float64)


def _load_series_copy(conn: sqlite3.Connection, exchange: str, pair: str, timeframe: str, lo: int,
                      hi: int) -> tuple[np.ndarray, int, int] | None:
    """The rows of the series' copy with open time in ``[lo, hi)`` (a read-only view of the BLOB) and the part of
    the window the copy spans, ``(table, max(lo, start), min(hi, end))``; None without a copy that meets it."""
    try:
        found = conn.execute(_LOAD_SERIES, (exchange, pair, timeframe, hi, lo)).fetchone()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):  # a database of schema < 4, read-only
            return None
        raise
    if found is None:
        return None
    start, end, n_rows, data = found
    table = np.frombuffer(data, dtype="<f8").reshape(n_rows, 6)
    times = table[:, 0]
    a, b = np.searchsorted(times, max(lo, start)), np.searchsorted(times, min(hi, end))
    return table[a:b], max(lo, int(start)), min(hi, int(end))


_LOAD_SERIES = (
    "SELECT start_time, end_time, n_rows, data FROM candle_series "
    "WHERE exchange = ? AND pair = ? AND timeframe = ? AND start_time < ? AND end_time > ?"
)


_LOAD_COVERAGE = (
    "SELECT start_time, end_time FROM candle_coverage WHERE exchange = ? AND pair = ? AND timeframe = ? "
    "AND start_time < ? AND end_time > ? ORDER BY start_time"
)


def load_coverage(conn: sqlite3.Connection, exchange: str, pair: str, timeframe: str,
                  start_ms: int | None = None, end_ms: int | None = None) -> list[tuple[int, int]]:
    """The complete spans ``[(start, end), ...]`` of the cache that meet ``[start_ms, end_ms)``, oldest first.

    A database of schema 1 (no ``candle_coverage`` table) has none.
    """
    lo = _MIN_MS if start_ms is None else int(start_ms)
    hi = _MAX_MS if end_ms is None else int(end_ms)
    try:
        rows = conn.execute(_LOAD_COVERAGE, (exchange, pair, timeframe, hi, lo)).fetchall()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return []
        raise
    return [(int(a), int(b)) for a, b in rows]


def merge_spans(spans) -> list[tuple[int, int]]:
    """Sorted disjoint ``[start, end)`` spans covering the same open times as ``spans`` (adjacent ones joined)."""
    out: list[list[int]] = []
    for a, b in sorted((int(a), int(b)) for a, b in spans if int(b) > int(a)):
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return [(a, b) for a, b in out]


def _record_coverage(conn: sqlite3.Connection, exchange: str, pair: str, timeframe: str, spans) -> None:
    """Merge ``spans`` into the stored coverage of one series (inside the caller's transaction)."""
    for a, b in merge_spans(spans):
        touching = conn.execute(
            "SELECT start_time, end_time FROM candle_coverage WHERE exchange = ? AND pair = ? AND timeframe = ? "
            "AND start_time <= ? AND end_time >= ?", (exchange, pair, timeframe, b, a)).fetchall()
        if touching:
            a = min(a, min(int(r[0]) for r in touching))
            b = max(b, max(int(r[1]) for r in touching))
            conn.executemany("DELETE FROM candle_coverage WHERE exchange = ? AND pair = ? AND timeframe = ? "
                             "AND start_time = ?", [(exchange, pair, timeframe, r[0]) for r in touching])
        conn.execute("INSERT INTO candle_coverage (exchange, pair, timeframe, start_time, end_time) "
                     "VALUES (?, ?, ?, ?, ?)", (exchange, pair, timeframe, a, b))


# ---------------------------------------------------------------------------------------------- writes
_UPSERT_CANDLE = (
    "INSERT INTO candles (exchange, pair, timeframe, open_time, open, high, low, close, volume) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (exchange, pair, timeframe, open_time) DO UPDATE SET "
    "open = excluded.open, high = excluded.high, low = excluded.low, close = excluded.close, volume = excluded.volume"
)


_DROP_SERIES_COPY = ("DELETE FROM candle_series WHERE exchange = ? AND pair = ? AND timeframe = ? "
                     "AND start_time <= ? AND end_time > ?")

#: rows per INSERT statement when saving candles: one statement binds many rows, with the series' key (?1-?3)
#: bound once, so that SQLite (which releases the GIL while it steps) does more of the work and the Python loop
#: less: 2.5x faster than one row a statement
_ROWS_PER_INSERT = 100
_UPSERT_CANDLES = (
    "INSERT INTO candles (exchange, pair, timeframe, open_time, open, high, low, close, volume) VALUES "
    + ",".join(f"(?1, ?2, ?3, ?{4 + 6 * i}, ?{5 + 6 * i}, ?{6 + 6 * i}, ?{7 + 6 * i}, ?{8 + 6 * i}, ?{9 + 6 * i})"
               for i in range(_ROWS_PER_INSERT))
    + " ON CONFLICT (exchange, pair, timeframe, open_time) DO UPDATE SET open = excluded.open, "
    "high = excluded.high, low = excluded.low, close = excluded.close, volume = excluded.volume"
)


class SessionWriter:
    """Writes sessions and candles through ``conn`` (from :func:`open_database`); use it on that thread only.

    Every method is one transaction and an upsert: calling it again with the same key replaces the row,
    so nothing is ever duplicated and an interrupted run leaves only whole calls behind.
    """

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    # -- sessions
    def start_session(self, session_id: str, started_at: pd.Timestamp, config: dict) -> None:
        """Record a new session as ``running`` with its config (JSON; keys naming secrets are dropped) and the
        calling process as the one running it (see :mod:`cryptorsi.storage.liveness`)."""
        from cryptorsi.storage.liveness import this_process

        public = _public_config(config)
        text = json.dumps(public, default=str, allow_nan=True)
        source = public.get("source")
        with self._transaction() as conn:
            conn.execute(
                "INSERT INTO sessions (session_id, started_at, finished_at, status, config, source, message, host, "
                "pid, process_start) VALUES (?, ?, NULL, 'running', ?, ?, NULL, ?, ?, ?) ON CONFLICT (session_id) "
                "DO UPDATE SET started_at = excluded.started_at, finished_at = NULL, status = 'running', "
                "config = excluded.config, source = excluded.source, message = NULL, host = excluded.host, "
                "pid = excluded.pid, process_start = excluded.process_start",
                (str(session_id), to_iso(started_at), text, None if source is None else str(source), *this_process()),
            )

    def finish_session(self, session_id: str, status: str, finished_at: pd.Timestamp,
                       message: str | None = None) -> None:
        """Close a session as ``completed``, ``failed`` or ``interrupted``; ``KeyError`` for an unknown session."""
        if status not in STORED_STATUSES or status == "running":
            raise ValueError(f"status must be one of completed, failed, interrupted, got {status!r}")
        with self._transaction() as conn:
            cur = conn.execute(
                "UPDATE sessions SET status = ?, finished_at = ?, message = ? WHERE session_id = ?",
                (status, to_iso(finished_at), None if message is None else _one_line(message), str(session_id)),
            )
            if cur.rowcount == 0:
                raise KeyError(f"no session {session_id!r} in the database")

    def interrupt_running(self, message: str = "stopped before it completed") -> int:
        """Mark every session still ``running`` as ``interrupted``; the number of sessions so marked."""
        now = to_iso(pd.Timestamp.now(tz="UTC"))
        with self._transaction() as conn:
            cur = conn.execute(
                "UPDATE sessions SET status = 'interrupted', finished_at = COALESCE(finished_at, ?), "
                "message = COALESCE(message, ?) WHERE status = 'running'",
                (now, _one_line(message)),
            )
            return cur.rowcount

    # -- universe
    def save_universe(self, session_id: str, listings: Sequence[Listing], excluded: Sequence[ExcludedCoin]) -> None:
        """The session's coins as of this run (replaces any universe saved before for the session)."""
        rows = []
        for position, listing in enumerate(listings):
            coin = listing.coin
            rows.append((str(session_id), coin.coin_id, position, coin.symbol, coin.name,
                         _float_or_none(coin.market_cap), _int_or_none(coin.market_cap_rank),
                         listing.exchange, listing.pair, listing.quote, None))
        for position, item in enumerate(excluded, start=len(rows)):
            coin = item.coin
            rows.append((str(session_id), coin.coin_id, position, coin.symbol, coin.name,
                         _float_or_none(coin.market_cap), _int_or_none(coin.market_cap_rank),
                         None, None, None, _one_line(item.reason) or "excluded"))
        with self._transaction() as conn:
            conn.execute("DELETE FROM universe WHERE session_id = ?", (str(session_id),))
            conn.executemany(
                "INSERT INTO universe (session_id, coin_id, position, symbol, name, market_cap, market_cap_rank, "
                "exchange, pair, quote, excluded_reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (session_id, coin_id) DO NOTHING",  # a coin listed twice: its first entry wins
                rows,
            )

    # -- candle cache
    def save_candles(self, exchange: str, pair: str, timeframe: str, candles: pd.DataFrame) -> int:
        """Upsert a candle frame into the shared cache (one transaction); the number of rows written.

        When the frame names the spans it completes (``candles.attrs[COVERAGE_ATTR]``, set by the fetcher),
        they are merged into ``candle_coverage`` in the same transaction: coverage is never recorded for
        candles that are not saved.
        """
        n = len(candles)
        covered = candles.attrs.get(COVERAGE_ATTR) if hasattr(candles, "attrs") else None
        if n == 0 and not covered:
            return 0
        times = index_ms(candles.index).tolist()
        columns = [candles[c].to_numpy(dtype=np.float64, na_value=np.nan).tolist() for c in CANDLE_COLUMNS]
        bulk = n - n % _ROWS_PER_INSERT
        width = 6 * _ROWS_PER_INSERT
        flat = list(chain.from_iterable(zip(times[:bulk], *(c[:bulk] for c in columns))))
        key = [exchange, pair, timeframe]
        with self._transaction() as conn:
            if bulk:
                conn.executemany(_UPSERT_CANDLES, (key + flat[i:i + width] for i in range(0, len(flat), width)))
            if n > bulk:  # the rest, one row a statement
                conn.executemany(_UPSERT_CANDLE, zip(repeat(exchange), repeat(pair), repeat(timeframe),
                                                     times[bulk:], *(c[bulk:] for c in columns)))
            if n:  # the series' copy no longer tells every row of its span
                conn.execute(_DROP_SERIES_COPY, (exchange, pair, timeframe, max(times), min(times)))
            if covered:
                _record_coverage(conn, exchange, pair, timeframe, covered)
        return n

    def save_series_copy(self, exchange: str, pair: str, timeframe: str, candles: pd.DataFrame) -> bool:
        """Keep ``candles`` — every cached candle of the series from its first open time to its last, as the
        fetcher hands over a window — as the series' copy for fast reads (``candle_series``), unless the copy
        there already spans them. True when written. Call it after their rows are saved."""
        n = len(candles)
        if n == 0:
            return False
        times = index_ms(candles.index)
        start, end = int(times[0]), int(times[-1]) + 1
        key = (exchange, pair, timeframe)
        # checked outside a write transaction: on a re-run the copy usually spans the window already, and then
        # no write lock is taken (copies are written only from here, on the DatabaseManager's thread)
        if self.conn.execute("SELECT 1 FROM candle_series WHERE exchange = ? AND pair = ? AND timeframe = ? "
                             "AND start_time <= ? AND end_time >= ?", (*key, start, end)).fetchone():
            return False
        data = candle_table(candles).astype("<f8", copy=False).tobytes()
        with self._transaction() as conn:
            conn.execute("INSERT OR REPLACE INTO candle_series (exchange, pair, timeframe, start_time, end_time, "
                         "n_rows, data) VALUES (?, ?, ?, ?, ?, ?, ?)", (*key, start, end, n, data))
        return True

    def save_coverage(self, exchange: str, pair: str, timeframe: str, spans) -> None:
        """Record that the cache holds every candle of ``spans`` ``[(start_ms, end_ms), ...]`` (merged)."""
        with self._transaction() as conn:
            _record_coverage(conn, exchange, pair, timeframe, spans)

    # -- results
    def save_rsi(self, session_id: str, coin_id: str, timeframe: str, period: int, method: str,
                 rsi: pd.Series) -> None:
        """Store one RSI series as one row of two little-endian BLOBs (see :mod:`cryptorsi.storage.schema`)."""
        times = np.ascontiguousarray(index_ms(rsi.index), dtype="<i8")
        values = np.ascontiguousarray(rsi.to_numpy(dtype=np.float64, na_value=np.nan), dtype="<f8")
        n = int(times.size)
        first, last = (int(times[0]), int(times[-1])) if n else (None, None)
        with self._transaction() as conn:
            conn.execute(
                "INSERT INTO rsi (session_id, coin_id, timeframe, period, method, n_points, first_open_time, "
                "last_open_time, open_times, rsi_values) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (session_id, coin_id, timeframe) DO UPDATE SET period = excluded.period, "
                "method = excluded.method, n_points = excluded.n_points, "
                "first_open_time = excluded.first_open_time, last_open_time = excluded.last_open_time, "
                "open_times = excluded.open_times, rsi_values = excluded.rsi_values",
                (str(session_id), coin_id, timeframe, int(period), str(method), n, first, last,
                 times.tobytes(), values.tobytes()),
            )

    def save_correlation(self, session_id: str, coin_id: str, timeframe: str, correlation: float,
                         n_points: int, metrics: dict | None = None) -> None:
        """One correlation row; ``metrics`` holds the lead-lag columns (:data:`cryptorsi.tables.METRIC_COLUMNS`)."""
        metrics = metrics or {}
        names = ("correlation", "n_points", *METRIC_COLUMNS)
        values = (_float_or_none(correlation), int(n_points),
                  None if metrics.get("best_lag") is None else int(metrics["best_lag"]),
                  *(_float_or_none(metrics.get(name)) for name in METRIC_COLUMNS[1:]))
        with self._transaction() as conn:
            conn.execute(
                f"INSERT INTO correlations (session_id, coin_id, timeframe, {', '.join(names)}) "
                f"VALUES (?, ?, ?, {', '.join('?' * len(names))}) ON CONFLICT (session_id, coin_id, timeframe) "
                f"DO UPDATE SET {', '.join(f'{n} = excluded.{n}' for n in names)}",
                (str(session_id), coin_id, timeframe, *values),
            )

    def save_failure(self, session_id: str, coin_id: str, symbol: str, timeframe: str, stage: str,
                     reason: str) -> None:
        with self._transaction() as conn:
            conn.execute(
                "INSERT INTO failures (session_id, coin_id, symbol, timeframe, stage, reason) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (session_id, coin_id, timeframe) DO UPDATE SET "
                "symbol = excluded.symbol, stage = excluded.stage, reason = excluded.reason",
                (str(session_id), coin_id, symbol, timeframe, str(stage), _one_line(reason)),
            )


# ---------------------------------------------------------------------------------------------- candle cache
class CandleCache:
    """Reads the candle cache through its own read-only connection, opened on the first :meth:`load`.

    Make one per thread. A missing or still empty file holds no candles (a first run has not created
    it yet); a file that is not a cryptorsi database raises ``DatabaseError``. :meth:`close` may be
    called from another thread once the owning thread is done with it.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        self._conn: sqlite3.Connection | None = None

    def _connection(self) -> sqlite3.Connection | None:
        if self._conn is None:
            state = inspect_database(self.path)
            if state.kind != "cryptorsi":
                return None
            _check_version(self.path, state.version)
            self._conn = connect_readonly(self.path)
        return self._conn

    def load(self, exchange: str, pair: str, timeframe: str, start_ms: int, end_ms: int) -> pd.DataFrame:
        """Cached candles with open time in ``[start_ms, end_ms)``, oldest first (one read snapshot)."""
        return self.load_window(exchange, pair, timeframe, start_ms, end_ms)[0]

    def load_window(self, exchange: str, pair: str, timeframe: str, start_ms: int,
                    end_ms: int) -> tuple[pd.DataFrame, list[tuple[int, int]]]:
        """Cached candles with open time in ``[start_ms, end_ms)`` and the spans known complete that meet it
        (``candle_coverage``), read in one snapshot: a span is never newer than the candles read with it."""
        conn = self._connection()
        if conn is None:
            return empty_candles(), []
        try:
            conn.execute("BEGIN")
            try:
                covered = load_coverage(conn, exchange, pair, timeframe, start_ms, end_ms)
                frame = load_candles(conn, exchange, pair, timeframe, start_ms, end_ms)
            finally:
                conn.execute("ROLLBACK")
        except sqlite3.DatabaseError as exc:
            raise DatabaseError(f"{self.path}: cannot read candles: {exc}") from None
        return frame, covered

    def latest_open_ms(self, exchange: str, pairs: Sequence[str], timeframe: str) -> int | None:
        """The latest cached open time of ``timeframe`` among ``pairs`` of ``exchange`` (one index seek each)."""
        conn = self._connection()
        if conn is None:
            return None
        latest = None
        for pair in pairs:
            row = conn.execute(
                "SELECT open_time FROM candles WHERE exchange = ? AND pair = ? AND timeframe = ? "
                "ORDER BY open_time DESC LIMIT 1", (exchange, pair, timeframe)).fetchone()
            if row is not None and (latest is None or row[0] > latest):
                latest = int(row[0])
        return latest

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def __enter__(self) -> "CandleCache":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
