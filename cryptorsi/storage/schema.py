"""The SQLite schema of a cryptorsi database, its version, and the migrations that create it.

A cryptorsi database is recognised by three marks written in the transaction that creates it:
``PRAGMA application_id`` (``0x43525349``, "CRSI", in the file header), ``PRAGMA user_version``
(the schema version) and the row ``('application', 'cryptorsi')`` of the ``cryptorsi_meta`` table.
The meta row is the one that decides (``application_id`` is kept for tools such as ``file``).

Tables (``session_id`` columns reference ``sessions`` with ``ON DELETE CASCADE``):

``cryptorsi_meta(key, value)``
    application marker, schema version, library version that created the file.
``sessions(session_id, started_at, finished_at, status, config, source, message, host, pid, process_start)``
    one row per analysis; datetimes are ISO-8601 UTC text (``2025-06-30T12:00:00.000000Z``, which
    sorts as time does); ``config`` is the ``AnalysisConfig`` as JSON (never an API key). ``status`` is stored
    as running, completed, failed or interrupted; a ``running`` session whose process is gone reads as
    ``abandoned``, decided from ``host``, ``pid`` and ``process_start`` (schema 5: the process writing the
    session) and the session's lock file (see :mod:`cryptorsi.storage.liveness`).
``universe(session_id, coin_id, position, symbol, name, market_cap, market_cap_rank, exchange, pair,
quote, excluded_reason)``
    the coins of the session with their market caps as of that run: listings (``excluded_reason``
    NULL) and excluded coins (``exchange/pair/quote`` NULL, ``excluded_reason`` set).
``candles(exchange, pair, timeframe, open_time, open, high, low, close, volume)``
    the candle cache shared by every session; ``WITHOUT ROWID`` keyed on
    ``(exchange, pair, timeframe, open_time)`` (open time in UTC ms), so the rows of one series are
    stored together in key order and a window is one range scan of the primary key.
``rsi(session_id, coin_id, timeframe, period, method, n_points, first_open_time, last_open_time,
open_times, rsi_values)``
    one row per (session, coin, timeframe); the series is two little-endian BLOBs (see below).
``candle_coverage(exchange, pair, timeframe, start_time, end_time)`` (schema 2)
    spans ``[start_time, end_time)`` of open times (UTC ms) over which the candle cache holds every closed
    candle the exchange has: what a fetch asked for and got a complete answer to, merged into disjoint
    spans. A span may hold no candle at all (before a late listing, after a delisting): that is what
    keeps such a span from being asked again. Written in the transaction that saves the candles.
``candle_series(exchange, pair, timeframe, start_time, end_time, n_rows, data)`` (schema 4)
    a copy of one series of the candle cache, for reading it fast: every cached candle with open time in
    ``[start_time, end_time)``, as one little-endian BLOB of ``n_rows x 6`` float64 values (open time, open,
    high, low, close, volume, row by row). Reading 8,400 candles as rows costs ~12 ms of ``sqlite3`` making
    row tuples; as this BLOB, ~0.1 ms: it is what makes a re-run on a warm cache quick. The ``candles`` rows
    stay the reference: a transaction that writes rows of a series inside its copy's span deletes the copy,
    and the copy is written again from the next complete window of that series. One copy per series.
``correlations(session_id, coin_id, timeframe, correlation, n_points, best_lag, best_lag_correlation,
stability, n_eff, p_value, ci_low, ci_high, return_correlation)`` (the last eight: schema 3) and
``failures(session_id, coin_id, symbol, timeframe, stage, reason)``
    plain rows.

Why RSI is stored as BLOBs: a run of 200 coins on 1h over 50 weeks produces 200 x 8,400 = 1.7 million
RSI values, more with more timeframes. As rows, inserting and indexing them would cost more than the
whole analysis (every row is a B-tree insert of a 40-byte key), and nobody queries one RSI value in SQL:
a series is always read whole, to plot or re-analyse it. So each series is one row holding
``ndarray.astype('<i8').tobytes()`` of the open times and ``ndarray.astype('<f8').tobytes()`` of the values:
writing it is one insert of ~130 kB, reading it back is ``numpy.frombuffer`` (exact, bit for bit, NaN and
infinities included); period, method, length and first/last open time stay queryable columns. That table
keeps its rowid (with a UNIQUE key): SQLite advises against ``WITHOUT ROWID`` for rows this large.
"""

from __future__ import annotations

import sqlite3

__all__ = ["SCHEMA_VERSION", "APPLICATION_ID", "APPLICATION", "META_TABLE", "STATUSES", "STORED_STATUSES", "migrate"]

#: Version of the schema this code writes; ``PRAGMA user_version`` of a current database.
SCHEMA_VERSION = 5
#: ``PRAGMA application_id``: "CRSI" as a big-endian 32-bit integer.
APPLICATION_ID = 0x43525349
#: Value of the ``application`` row of the meta table.
APPLICATION = "cryptorsi"
META_TABLE = "cryptorsi_meta"
#: Every status a session can have: the four stored ones and ``abandoned`` (read, never stored: a ``running``
#: session whose process is gone, see :mod:`cryptorsi.storage.liveness`).
STATUSES = ("running", "completed", "failed", "interrupted", "abandoned")
#: The statuses a ``sessions`` row may hold (its CHECK constraint, as schema 1 made it).
STORED_STATUSES = ("running", "completed", "failed", "interrupted")

_V1 = [
    f"""CREATE TABLE {META_TABLE} (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    ) WITHOUT ROWID""",
    f"""CREATE TABLE sessions (
        session_id  TEXT PRIMARY KEY,
        started_at  TEXT NOT NULL,
        finished_at TEXT,
        status      TEXT NOT NULL CHECK (status IN ({", ".join(repr(s) for s in STORED_STATUSES)})),
        config      TEXT NOT NULL,
        source      TEXT,
        message     TEXT
    )""",
    "CREATE INDEX sessions_by_start ON sessions (started_at)",
    "CREATE INDEX sessions_by_status ON sessions (status)",
    """CREATE TABLE universe (
        session_id      TEXT NOT NULL REFERENCES sessions (session_id) ON DELETE CASCADE,
        coin_id         TEXT NOT NULL,
        position        INTEGER NOT NULL,
        symbol          TEXT NOT NULL,
        name            TEXT NOT NULL,
        market_cap      REAL,
        market_cap_rank INTEGER,
        exchange        TEXT,
        pair            TEXT,
        quote           TEXT,
        excluded_reason TEXT,
        PRIMARY KEY (session_id, coin_id)
    ) WITHOUT ROWID""",
    # No NOT NULL on the prices: SQLite stores a float NaN as NULL, and a NaN volume must not abort a save.
    """CREATE TABLE candles (
        exchange  TEXT NOT NULL,
        pair      TEXT NOT NULL,
        timeframe TEXT NOT NULL,
        open_time INTEGER NOT NULL,
        open      REAL,
        high      REAL,
        low       REAL,
        close     REAL,
        volume    REAL,
        PRIMARY KEY (exchange, pair, timeframe, open_time)
    ) WITHOUT ROWID""",
    # One row per series, not per value: 2 million RSI rows would cost more to write than the whole analysis
    # and are never queried one by one (see the module docstring). Rowid table: its rows are ~130 kB.
    """CREATE TABLE rsi (
        session_id      TEXT NOT NULL REFERENCES sessions (session_id) ON DELETE CASCADE,
        coin_id         TEXT NOT NULL,
        timeframe       TEXT NOT NULL,
        period          INTEGER NOT NULL,
        method          TEXT NOT NULL,
        n_points        INTEGER NOT NULL,
        first_open_time INTEGER,
        last_open_time  INTEGER,
        open_times      BLOB NOT NULL,
        rsi_values      BLOB NOT NULL,
        UNIQUE (session_id, coin_id, timeframe)
    )""",
    """CREATE TABLE correlations (
        session_id  TEXT NOT NULL REFERENCES sessions (session_id) ON DELETE CASCADE,
        coin_id     TEXT NOT NULL,
        timeframe   TEXT NOT NULL,
        correlation REAL,
        n_points    INTEGER NOT NULL,
        PRIMARY KEY (session_id, coin_id, timeframe)
    ) WITHOUT ROWID""",
    """CREATE TABLE failures (
        session_id TEXT NOT NULL REFERENCES sessions (session_id) ON DELETE CASCADE,
        coin_id    TEXT NOT NULL,
        symbol     TEXT NOT NULL,
        timeframe  TEXT NOT NULL,
        stage      TEXT NOT NULL,
        reason     TEXT NOT NULL,
        UNIQUE (session_id, coin_id, timeframe)
    )""",
]

# Schema 2: the spans of the candle cache known to be complete (see the module docstring).
_V2 = [
    """CREATE TABLE candle_coverage (
        exchange   TEXT NOT NULL,
        pair       TEXT NOT NULL,
        timeframe  TEXT NOT NULL,
        start_time INTEGER NOT NULL,
        end_time   INTEGER NOT NULL CHECK (end_time > start_time),
        PRIMARY KEY (exchange, pair, timeframe, start_time)
    ) WITHOUT ROWID""",
]

# Schema 3: lead-lag, stability and significance of each correlation (see cryptorsi.leadlag); NULL in rows of
# sessions analysed before.
_V3 = [
    "ALTER TABLE correlations ADD COLUMN best_lag INTEGER",
    *(f"ALTER TABLE correlations ADD COLUMN {name} REAL"
      for name in ("best_lag_correlation", "stability", "n_eff", "p_value", "ci_low", "ci_high", "return_correlation")),
]

# Schema 4: a copy of each candle series as one BLOB, for reading it fast (see the module docstring).
_V4 = [
    """CREATE TABLE candle_series (
        exchange   TEXT NOT NULL,
        pair       TEXT NOT NULL,
        timeframe  TEXT NOT NULL,
        start_time INTEGER NOT NULL,
        end_time   INTEGER NOT NULL CHECK (end_time > start_time),
        n_rows     INTEGER NOT NULL,
        data       BLOB NOT NULL,
        PRIMARY KEY (exchange, pair, timeframe)
    )""",
]

# Schema 5: the process that writes a session, to tell a running session from an abandoned one (NULL in rows of
# sessions written before).
_V5 = [
    "ALTER TABLE sessions ADD COLUMN host TEXT",
    "ALTER TABLE sessions ADD COLUMN pid INTEGER",
    "ALTER TABLE sessions ADD COLUMN process_start TEXT",
]

#: ``MIGRATIONS[v]`` turns a database of schema ``v - 1`` into one of schema ``v`` (0 is an empty file).
MIGRATIONS: dict[int, list[str]] = {1: _V1, 2: _V2, 3: _V3, 4: _V4, 5: _V5}


def migrate(conn: sqlite3.Connection, from_version: int) -> None:
    """Apply the migrations after ``from_version``, inside the caller's (write) transaction."""
    for version in range(from_version + 1, SCHEMA_VERSION + 1):
        for statement in MIGRATIONS[version]:
            conn.execute(statement)
    if from_version == 0:
        try:
            from importlib.metadata import version as dist_version

            created_by = f"{APPLICATION} {dist_version(APPLICATION)}"
        except Exception:  # not installed as a distribution
            created_by = APPLICATION
        conn.execute(f"INSERT OR REPLACE INTO {META_TABLE} VALUES ('application', ?)", (APPLICATION,))
        conn.execute(f"INSERT OR REPLACE INTO {META_TABLE} VALUES ('created_by', ?)", (created_by,))
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    conn.execute(f"INSERT OR REPLACE INTO {META_TABLE} VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
