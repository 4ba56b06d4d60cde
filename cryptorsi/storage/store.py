"""``Store``: query past analyses in a cryptorsi database (read-only, from any thread).

>>> store = Store("crypto_data.db")                      # doctest: +SKIP
>>> store.sessions()[["session_id", "status", "n_coins"]]  # doctest: +SKIP
>>> store.selected()                                       # doctest: +SKIP  (latest session)
>>> store.rsi("eth", "1h").plot()                          # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import sqlite3
from typing import Any

import numpy as np
import pandas as pd

from cryptorsi.config import AnalysisConfig
from cryptorsi.market import timeframe_ms, to_ms
from cryptorsi.storage.database import load_candles, read_transaction, require_database
from cryptorsi.storage.liveness import running_or_abandoned
from cryptorsi.tables import CORRELATION_COLUMNS, FAILURE_COLUMNS, METRIC_COLUMNS, correlation_table, failure_table

__all__ = ["Store", "NotFound", "CORRELATION_COLUMNS", "FAILURE_COLUMNS", "COIN_COLUMNS", "SESSION_COLUMNS"]

SESSION_COLUMNS = ("session_id", "started_at", "finished_at", "status", "exchange", "config", "source", "message",
                   "n_coins", "n_correlations", "n_failures")
COIN_COLUMNS = ("coin_id", "symbol", "name", "market_cap", "market_cap_rank", "exchange", "pair", "quote")

#: pandas' default dtype for text (``object`` on pandas 2, ``str`` on pandas 3); used even for empty frames
_TEXT = pd.Series(["x"]).dtype
#: dtype of the UTC timestamps cryptorsi builds from milliseconds
_UTC = pd.to_datetime(np.zeros(1, dtype=np.int64), unit="ms", utc=True).dtype

_DEFAULTS = {f: AnalysisConfig.__dataclass_fields__[f].default
             for f in ("correlation_threshold", "low_cap_percentile", "timeframes")}


class NotFound(KeyError):
    """A ``KeyError`` whose message prints as one plain line (``KeyError`` quotes its message)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class Store:
    """Query past analyses. Each method opens its own short-lived read-only connection, so a Store can be
    used from any thread, while an analysis writes to the same file.

    ``session_id=None`` means the latest session (by ``started_at``). An unknown session, symbol or
    timeframe raises ``KeyError`` with a one-line message; the file is never written.

    >>> store = Store("crypto_data.db"); store.correlations()   # doctest: +SKIP
    """

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        require_database(self.path)  # DatabaseError if missing / not cryptorsi / too new; the file is untouched

    def __repr__(self) -> str:
        return f"Store({self.path!r})"

    def _read(self):
        return read_transaction(self.path)

    # ------------------------------------------------------------------ sessions
    def sessions(self, exchange: str | None = None) -> pd.DataFrame:
        """One row per session, oldest first (newest last); ``config`` is a dict, times are UTC; ``exchange`` the
        exchange its candles came from (``sample`` for the sample market; empty before its coin list was stored).
        Only the sessions of ``exchange`` when it is given (``store.sessions(exchange="okx")``).

        ``status`` is running, completed, failed, interrupted or ``abandoned``: a session stored as running whose
        process is gone (killed, crashed, machine lost), as :mod:`cryptorsi.storage.liveness` tells from what
        that process left; its ``message`` then names the process.
        """
        with self._read() as conn:
            owner = ("s.host, s.pid, s.process_start" if "host" in _columns(conn, "sessions")
                     else "NULL, NULL, NULL")  # a database of schema < 5, not yet migrated by a writer
            rows = conn.execute(
                "SELECT s.session_id, s.started_at, s.finished_at, s.status, s.config, s.source, s.message, "
                "(SELECT count(*) FROM universe u WHERE u.session_id = s.session_id AND u.excluded_reason IS NULL), "
                "(SELECT count(*) FROM correlations c WHERE c.session_id = s.session_id), "
                f"(SELECT count(*) FROM failures f WHERE f.session_id = s.session_id), {owner}, "
                "(SELECT u.exchange FROM universe u WHERE u.session_id = s.session_id AND u.exchange IS NOT NULL "
                "LIMIT 1) "
                "FROM sessions s ORDER BY s.started_at, s.rowid"
            ).fetchall()
        rows = self._read_liveness(rows)
        if exchange is not None:
            rows = [row for row in rows if row[10] == exchange]
        cols = list(zip(*rows)) if rows else [()] * (len(SESSION_COLUMNS) + 1)
        return pd.DataFrame({
            "session_id": pd.Series(cols[0], dtype=_TEXT),
            "started_at": _times(cols[1]),
            "finished_at": _times(cols[2]),
            "status": pd.Series(cols[3], dtype=_TEXT),
            "exchange": pd.Series(cols[10], dtype=_TEXT),
            "config": pd.Series([json.loads(c) for c in cols[4]], dtype=object),
            "source": pd.Series(cols[5], dtype=_TEXT),
            "message": pd.Series(cols[6], dtype=_TEXT),
            "n_coins": pd.Series(cols[7], dtype=np.int64),
            "n_correlations": pd.Series(cols[8], dtype=np.int64),
            "n_failures": pd.Series(cols[9], dtype=np.int64),
        })

    def _read_liveness(self, rows: list[tuple]) -> list[tuple]:
        """``rows`` with ``running`` turned ``abandoned`` where the session's process is gone (the owner columns
        dropped, the exchange last). A session found abandoned is read again: it may have been closed meanwhile."""
        out, gone = [], {}
        for row in rows:
            row, (host, pid, start), exchange = list(row[:10]), row[10:13], row[13]
            row.append(exchange)
            if row[3] == "running" and running_or_abandoned(self.path, row[0], host, pid, start) == "abandoned":
                process = "its process" if pid is None else f"process {pid}" + (f" on {host}" if host else "")
                row[3], row[6] = "abandoned", row[6] or f"{process} ended without closing the session"
                gone[row[0]] = row
            out.append(row)
        if gone:
            with self._read() as conn:
                closed = conn.execute(
                    f"SELECT session_id, status, finished_at, message FROM sessions WHERE session_id IN "
                    f"({','.join('?' * len(gone))}) AND status <> 'running'", list(gone)).fetchall()
            for sid, status, finished, message in closed:
                gone[sid][2], gone[sid][3], gone[sid][6] = finished, status, message
        return [tuple(row) for row in out]

    def latest_session_id(self) -> str | None:
        """The id of the session started last, ``None`` when there is none."""
        with self._read() as conn:
            row = conn.execute(_LATEST).fetchone()
        return None if row is None else row[0]

    def _session(self, conn: sqlite3.Connection, session_id: str | None) -> tuple[str, dict[str, Any]]:
        if session_id is None:
            row = conn.execute(_LATEST_WITH_CONFIG).fetchone()
            if row is None:
                raise NotFound(f"no analysis sessions in {self.path}")
        else:
            row = conn.execute("SELECT session_id, config FROM sessions WHERE session_id = ?",
                               (str(session_id),)).fetchone()
            if row is None:
                raise NotFound(f"no session {session_id!r} in {self.path}")
        try:
            config = json.loads(row[1])
        except (TypeError, ValueError):
            config = {}
        return row[0], config if isinstance(config, dict) else {}

    def benchmark(self, session_id: str | None = None) -> str:
        """The symbol of the session's benchmark coin (its config's ``benchmark``)."""
        with self._read() as conn:
            _, config = self._session(conn, session_id)
        return str(config.get("benchmark") or AnalysisConfig.__dataclass_fields__["benchmark"].default)

    # ------------------------------------------------------------------ universe
    def coins(self, session_id: str | None = None, *, include_excluded: bool = False) -> pd.DataFrame:
        """The session's coins with their market caps as of that run, by market-cap rank.

        Only the coins analysed (those with a pair) unless ``include_excluded``, which adds the coins left
        out, with an ``excluded_reason`` column (missing for the analysed coins).
        """
        with self._read() as conn:
            sid, _ = self._session(conn, session_id)
            where = "" if include_excluded else " AND excluded_reason IS NULL"
            rows = conn.execute(
                "SELECT coin_id, symbol, name, market_cap, market_cap_rank, exchange, pair, quote, excluded_reason "
                f"FROM universe WHERE session_id = ?{where} "
                "ORDER BY market_cap_rank IS NULL, market_cap_rank, position", (sid,)).fetchall()
        cols = list(zip(*rows)) if rows else [()] * 9
        frame = pd.DataFrame({
            "coin_id": pd.Series(cols[0], dtype=_TEXT),
            "symbol": pd.Series(cols[1], dtype=_TEXT),
            "name": pd.Series(cols[2], dtype=_TEXT),
            "market_cap": _floats(cols[3]),
            "market_cap_rank": pd.Series(cols[4], dtype="Int64"),
            "exchange": pd.Series(cols[5], dtype=_TEXT),
            "pair": pd.Series(cols[6], dtype=_TEXT),
            "quote": pd.Series(cols[7], dtype=_TEXT),
        })
        if include_excluded:
            frame["excluded_reason"] = pd.Series(cols[8], dtype=_TEXT)
        return frame

    def _listing(self, conn: sqlite3.Connection, sid: str, symbol: str) -> tuple[str, str, str | None, str | None]:
        """(coin_id, symbol, exchange, pair) of ``symbol`` (case-insensitive) or of a coin id in the universe."""
        text = str(symbol).strip()
        rows = conn.execute(
            "SELECT coin_id, symbol, exchange, pair, excluded_reason FROM universe WHERE session_id = ? "
            "AND (upper(symbol) = upper(?) OR coin_id = ?) "
            "ORDER BY excluded_reason IS NOT NULL, upper(symbol) <> upper(?), market_cap_rank IS NULL, "
            "market_cap_rank, position LIMIT 1", (sid, text, text.lower(), text)).fetchall()
        if not rows:
            raise NotFound(f"{text.upper()} is not among the coins of session {sid}")
        coin_id, sym, exchange, pair, reason = rows[0]
        return coin_id, sym, exchange, pair

    # ------------------------------------------------------------------ series
    def prices(self, symbol: str, timeframe: str, start=None, end=None, *,
               session_id: str | None = None) -> pd.DataFrame:
        """Cached candles of a coin of the session (its exchange pair then), open time in ``[start, end)``.

        ``symbol`` is case-insensitive (a CoinGecko coin id works too); ``start``/``end`` are timestamps,
        date strings or UTC milliseconds, ``None`` for unbounded.
        """
        timeframe_ms(timeframe)  # ValueError for an unknown timeframe
        with self._read() as conn:
            sid, _ = self._session(conn, session_id)
            coin_id, sym, exchange, pair = self._listing(conn, sid, symbol)
            if pair is None:
                reason = conn.execute("SELECT excluded_reason FROM universe WHERE session_id = ? AND coin_id = ?",
                                      (sid, coin_id)).fetchone()[0]
                raise NotFound(f"{sym} was not analysed in session {sid}: {reason}")
            return load_candles(conn, exchange, pair, timeframe,
                                None if start is None else to_ms(start), None if end is None else to_ms(end))

    def rsi(self, symbol: str, timeframe: str, session_id: str | None = None) -> pd.Series:
        """The RSI series of a coin on ``timeframe`` in the session (UTC open-time index, name ``rsi``).

        ``attrs`` holds its ``period`` and ``method``.
        """
        with self._read() as conn:
            sid, _ = self._session(conn, session_id)
            try:
                coin_id, sym, _, _ = self._listing(conn, sid, symbol)
            except KeyError:
                coin_id, sym = str(symbol).strip(), str(symbol).strip().upper()
            row = conn.execute(
                "SELECT period, method, open_times, rsi_values FROM rsi "
                "WHERE session_id = ? AND coin_id = ? AND timeframe = ?", (sid, coin_id, timeframe)).fetchone()
        if row is None:
            raise NotFound(f"{sym} has no {timeframe} RSI in session {sid}")
        period, method, times, values = row
        index = pd.DatetimeIndex(pd.to_datetime(np.frombuffer(times, dtype="<i8").astype(np.int64),
                                                unit="ms", utc=True), name="open_time")
        series = pd.Series(np.frombuffer(values, dtype="<f8").astype(np.float64), index=index, name="rsi")
        series.attrs.update(period=int(period), method=method)
        return series

    def lag_profile(self, symbol: str, timeframe: str, session_id: str | None = None) -> pd.Series:
        """Correlation of the coin's stored RSI at t with the benchmark's at t - k candles, indexed by lag k
        (-max_lag..+max_lag of the session; +k: the coin follows the benchmark)."""
        from cryptorsi.leadlag import session_lag_profile

        config, coin, bench = self._with_benchmark(symbol, timeframe, session_id)
        return session_lag_profile(coin, bench, timeframe, config)

    def rolling_correlation(self, symbol: str, timeframe: str, session_id: str | None = None) -> pd.Series:
        """Pearson of the coin's and the benchmark's stored RSI over the session's trailing window of
        common candles, indexed by the window's last open time."""
        from cryptorsi.leadlag import session_rolling_correlation

        config, coin, bench = self._with_benchmark(symbol, timeframe, session_id)
        return session_rolling_correlation(coin, bench, timeframe, config)

    def _with_benchmark(self, symbol: str, timeframe: str, session_id: str | None):
        with self._read() as conn:
            sid, stored = self._session(conn, session_id)
        config = AnalysisConfig.from_dict({k: v for k, v in stored.items() if k != "db_path"})
        return config, self.rsi(symbol, timeframe, sid), self.rsi(config.benchmark, timeframe, sid)

    def candles(self, exchange: str, pair: str, timeframe: str, start_ms: int | None = None,
                end_ms: int | None = None) -> pd.DataFrame:
        """The candle cache itself: candles of ``pair`` on ``exchange``, open time in ``[start_ms, end_ms)``."""
        with self._read() as conn:
            return load_candles(conn, exchange, pair, timeframe, start_ms, end_ms)

    # ------------------------------------------------------------------ results
    def correlations(self, session_id: str | None = None) -> pd.DataFrame:
        """Correlation of each coin's RSI with the benchmark's, per timeframe, with ``low_cap``.

        ``low_cap`` is derived at read time: a market cap > 0 and at or below the session config's
        ``low_cap_percentile`` of the market caps of the coins analysed in the session (the listings;
        excluded coins do not count), so interrupted sessions get it too. Rows are ordered by timeframe
        (in the order of the session config), then correlation (descending), then symbol: the table
        :func:`cryptorsi.tables.correlation_table` makes during a run.
        """
        with self._read() as conn:
            sid, config = self._session(conn, session_id)
            return self._correlations(conn, sid, config)

    def selected(self, session_id: str | None = None) -> pd.DataFrame:
        """The answer: low-cap coins whose ``|correlation|`` reaches the session's ``correlation_threshold``
        (and its ``min_stability``, when set), as :attr:`AnalysisResult.selected` selects them.

        Ordered by correlation, descending (then timeframe and symbol as in :meth:`correlations`).
        """
        from cryptorsi.analytics import select

        with self._read() as conn:
            sid, config = self._session(conn, session_id)
            frame = self._correlations(conn, sid, config)
        threshold = float(config.get("correlation_threshold", _DEFAULTS["correlation_threshold"]))
        return select(frame, threshold, config.get("min_stability"))

    def _correlations(self, conn: sqlite3.Connection, sid: str, config: dict[str, Any]) -> pd.DataFrame:
        caps = [r[0] for r in conn.execute(
            "SELECT market_cap FROM universe WHERE session_id = ? AND excluded_reason IS NULL", (sid,))]
        metrics = ", ".join(f"c.{name}" for name in METRIC_COLUMNS)
        rows = conn.execute(
            f"SELECT c.coin_id, u.symbol, c.timeframe, c.correlation, c.n_points, u.market_cap, {metrics} "
            "FROM correlations c LEFT JOIN universe u ON u.session_id = c.session_id AND u.coin_id = c.coin_id "
            "WHERE c.session_id = ?", (sid,)).fetchall()
        names = [c for c in CORRELATION_COLUMNS if c != "low_cap"]
        # The table an analysis shows (cryptorsi.tables), so a stored session reads back exactly as it ran.
        frame, _ = correlation_table([dict(zip(names, row)) for row in rows], caps,
                                     float(config.get("low_cap_percentile", _DEFAULTS["low_cap_percentile"])),
                                     _timeframes(config))
        return _typed(frame, CORRELATION_COLUMNS, {"correlation": np.float64, "n_points": np.int64,
                                                   "market_cap": np.float64, "low_cap": bool, "best_lag": "Int64"}
                      | {name: np.float64 for name in METRIC_COLUMNS[1:]})

    def failures(self, session_id: str | None = None) -> pd.DataFrame:
        """Coins that could not be analysed on a timeframe, and why (ordered as ``cryptorsi.tables`` orders them)."""
        with self._read() as conn:
            sid, _ = self._session(conn, session_id)
            rows = conn.execute("SELECT coin_id, symbol, timeframe, stage, reason FROM failures "
                                "WHERE session_id = ? ORDER BY rowid", (sid,)).fetchall()
        frame = failure_table([dict(zip(FAILURE_COLUMNS, row)) for row in rows])
        return _typed(frame, FAILURE_COLUMNS, {})


# ---------------------------------------------------------------------------------------------- helpers
_LATEST = "SELECT session_id FROM sessions ORDER BY started_at DESC, rowid DESC LIMIT 1"
_LATEST_WITH_CONFIG = "SELECT session_id, config FROM sessions ORDER BY started_at DESC, rowid DESC LIMIT 1"


def _times(values) -> pd.Series:
    """ISO-8601 texts (or NULL) as a UTC timestamp series of a fixed dtype."""
    text = pd.Series(values, dtype=object)
    return pd.Series(pd.to_datetime(text, utc=True, format="ISO8601"), dtype=_UTC)


def _columns(conn: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}


def _floats(values) -> pd.Series:
    return pd.Series(np.array(values, dtype=np.float64) if len(values) else np.empty(0), dtype=np.float64)


def _timeframes(config: dict[str, Any]) -> tuple[str, ...]:
    configured = config.get("timeframes") or _DEFAULTS["timeframes"]
    if isinstance(configured, str):
        configured = [t.strip() for t in configured.split(",")]
    return tuple(configured)


def _typed(frame: pd.DataFrame, columns: tuple[str, ...], numeric: dict[str, Any]) -> pd.DataFrame:
    """``frame`` with exactly ``columns``, text in pandas' text dtype, the others as given (stable when empty)."""
    return pd.DataFrame({name: frame[name].astype(numeric.get(name, _TEXT)) for name in columns})
