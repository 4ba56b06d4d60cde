"""The SQLite persistence: schema, writer, candle cache, Store, and files that are not ours."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time

import numpy as np
import pandas as pd
import pytest

from cryptorsi.config import AnalysisConfig
from cryptorsi.errors import DatabaseError
from cryptorsi.events import ExcludedCoin
from cryptorsi.market import Coin, Listing, candles_from_arrays
from cryptorsi.storage import SCHEMA_VERSION, CandleCache, SessionWriter, Store, open_database
from cryptorsi.storage.schema import APPLICATION_ID

H = 3_600_000
T0 = 1_735_689_600_000  # 2025-01-01T00:00Z


# ---------------------------------------------------------------------------------------------- helpers
def candles(n: int, start: int = T0, step: int = H, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 100 + rng.standard_normal(n).cumsum()
    return candles_from_arrays(start + np.arange(n, dtype=np.int64) * step, close - 0.1, close + 1, close - 1,
                               close, rng.random(n) * 1e6)


def coin(coin_id: str, symbol: str, cap: float | None, rank: int | None) -> Coin:
    return Coin(coin_id, symbol, coin_id.title(), cap, rank)


def listing(c: Coin, exchange: str = "binance", quote: str = "USDC") -> Listing:
    return Listing(c, exchange, f"{c.symbol}/{quote}", quote)


def ts(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def config(**changes) -> dict:
    return AnalysisConfig(source="sample", timeframes="1h,1d", **changes).to_dict()


@pytest.fixture()
def path(tmp_path) -> str:
    return str(tmp_path / "crypto_data.db")


@pytest.fixture()
def writer(path):
    conn = open_database(path)
    yield SessionWriter(conn)
    conn.close()


CAPS = {"bitcoin": 2e12, "ethereum": 4e11, "solana": 8e10, "chainlink": 9e9, "pepe": 4e9, "bonk": 1.5e9,
        "floki": 1.2e9, "dust": 0.0}


def populate(w: SessionWriter, session_id: str = "s1", started: str = "2025-03-01T10:00",
             finish: str | None = "completed", **config_changes) -> list[Listing]:
    """A session with 8 listed coins (one with cap 0), 2 excluded ones, correlations, RSI and a failure."""
    w.start_session(session_id, ts(started), config(**config_changes))
    symbols = {"bitcoin": "BTC", "ethereum": "ETH", "solana": "SOL", "chainlink": "LINK", "pepe": "PEPE",
               "bonk": "BONK", "floki": "FLOKI", "dust": "DUST"}
    ranks = [1, 2, 4, 5, 6, 7, 8, 9]  # tether (excluded) is number 3
    listings = [listing(coin(cid, symbols[cid], cap, rank)) for rank, (cid, cap) in zip(ranks, CAPS.items())]
    excluded = [ExcludedCoin(coin("tether", "USDT", 1.4e11, 3), "stablecoin"),
                *(ExcludedCoin(coin(f"tiny{i}", f"TINY{i}", float(i), 90 + i), "no USDC pair on binance")
                  for i in (1, 2, 3))]
    w.save_universe(session_id, listings, excluded)
    corr = {"ethereum": 0.91, "solana": 0.75, "chainlink": -0.72, "pepe": 0.69, "bonk": 0.88, "floki": -0.95,
            "dust": 0.99}
    for i, (cid, value) in enumerate(corr.items()):
        w.save_correlation(session_id, cid, "1h", value, 500 + i)
        w.save_correlation(session_id, cid, "1d", value / 2, 300 + i)
    w.save_failure(session_id, "bonk", "BONK", "1d", "fetch", "no candles\nin the window")
    frame = candles(200)
    for lst in listings[:3]:
        w.save_candles(lst.exchange, lst.pair, "1h", frame)
        w.save_rsi(session_id, lst.coin_id, "1h", 14, "wilder", pd.Series(np.linspace(20, 80, 200), frame.index))
    if finish:
        w.finish_session(session_id, finish, ts(started) + pd.Timedelta(minutes=5))
    return listings


def snapshot(directory) -> dict[str, bytes]:
    return {name: open(os.path.join(directory, name), "rb").read() for name in sorted(os.listdir(directory))}


# ---------------------------------------------------------------------------------------------- schema
def test_new_database_has_schema_wal_and_markers(path):
    conn = open_database(path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
        assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert {"cryptorsi_meta", "sessions", "universe", "candles", "rsi", "correlations", "failures"} <= tables
        meta = dict(conn.execute("SELECT key, value FROM cryptorsi_meta"))
        assert meta["application"] == "cryptorsi" and meta["schema_version"] == str(SCHEMA_VERSION)
        ddl = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'candles'").fetchone()[0]
        assert "WITHOUT ROWID" in ddl and "PRIMARY KEY (exchange, pair, timeframe, open_time)" in ddl
        plan = " ".join(r[3] for r in conn.execute(
            "EXPLAIN QUERY PLAN SELECT * FROM candles WHERE exchange='b' AND pair='p' AND timeframe='1h' "
            "AND open_time >= 0 AND open_time < 10"))
        assert "PRIMARY KEY" in plan and "SCAN" not in plan
    finally:
        conn.close()
    again = open_database(path, create=False)  # reopening is a no-op
    assert again.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    again.close()
    assert not os.path.exists(path + "-wal")  # the last connection to close cleans up after WAL


def test_missing_file_directory_and_create_false(tmp_path):
    missing = str(tmp_path / "nope.db")
    with pytest.raises(DatabaseError, match="no such database file"):
        open_database(missing, create=False)
    assert not os.path.exists(missing)
    with pytest.raises(DatabaseError, match="is a directory"):
        open_database(str(tmp_path))
    with pytest.raises(DatabaseError, match="does not exist"):
        open_database(str(tmp_path / "no_dir" / "x.db"))
    with pytest.raises(DatabaseError, match="no such database file"):
        Store(missing)
    assert CandleCache(missing).load("binance", "BTC/USDC", "1h", 0, T0).empty  # nothing cached yet


def test_empty_files_are_initialised(tmp_path):
    zero = tmp_path / "zero.db"
    zero.write_bytes(b"")
    with pytest.raises(DatabaseError, match="empty"):
        Store(str(zero))
    with pytest.raises(DatabaseError, match="empty"):
        open_database(str(zero), create=False)
    assert zero.read_bytes() == b""
    open_database(str(zero)).close()
    assert Store(str(zero)).sessions().empty

    blank = tmp_path / "blank.db"  # a SQLite file without any table (e.g. made by `sqlite3 blank.db VACUUM`)
    sqlite3.connect(blank).execute("VACUUM").connection.close()
    assert blank.read_bytes().startswith(b"SQLite format 3\x00")
    conn = open_database(str(blank))
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    conn.close()


def _random_bytes(p):
    p.write_bytes(np.random.default_rng(1).integers(0, 256, 5000, dtype=np.uint8).tobytes())


def _text_file(p):
    p.write_text("date,close\n2025-01-01,100\n" * 50)


def _other_app(p):
    conn = sqlite3.connect(p)
    conn.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, amount REAL)")
    conn.executemany("INSERT INTO invoices (amount) VALUES (?)", [(i * 1.5,) for i in range(100)])
    conn.commit()
    conn.close()


def _other_app_wal(p):
    conn = sqlite3.connect(p)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("CREATE TABLE sessions (id TEXT)")  # a table name we use too
    conn.execute("CREATE TABLE cryptorsi_meta (k TEXT)")  # even our meta table's name, other columns
    conn.commit()
    conn.close()


def _newer_cryptorsi(p):
    open_database(str(p)).close()
    conn = sqlite3.connect(p)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.commit()
    conn.close()


def _damaged(p):
    _other_app(p)
    data = bytearray(p.read_bytes())
    data[100:] = bytes(len(data) - 100)  # a valid header, then zeros: page 1 is garbage
    data[16:18] = (1024).to_bytes(2, "big")
    p.write_bytes(bytes(data))


@pytest.mark.parametrize("make, message", [
    (_random_bytes, "is not a SQLite database"),
    (_text_file, "is not a SQLite database"),
    (_other_app, "is a SQLite database but not a cryptorsi database"),
    (_other_app_wal, "is a SQLite database but not a cryptorsi database"),
    (_newer_cryptorsi, f"database is newer than this cryptorsi \\(schema {SCHEMA_VERSION + 1}\\)"),
    (_damaged, "SQLite database"),
])
def test_foreign_files_are_refused_and_left_byte_identical(tmp_path, make, message):
    from cryptorsi.sources.cache import CacheSource

    target = tmp_path / "data.db"
    make(target)
    before = snapshot(tmp_path)
    assert list(before) == ["data.db"]
    for attempt in (lambda: open_database(str(target)), lambda: open_database(str(target), create=False),
                    lambda: Store(str(target)), lambda: CacheSource(str(target)),
                    lambda: CandleCache(str(target)).load("binance", "BTC/USDC", "1h", 0, T0)):
        with pytest.raises(DatabaseError, match=message) as info:
            attempt()
        assert "\n" not in str(info.value) and str(info.value).startswith(str(target))
        assert snapshot(tmp_path) == before  # same bytes, and no -wal, -shm or -journal file


# ---------------------------------------------------------------------------------------------- candles
def test_candle_upsert_is_idempotent_and_updates(writer, path):
    frame = candles(500)
    assert writer.save_candles("binance", "ETH/USDC", "1h", frame) == 500
    assert writer.save_candles("binance", "ETH/USDC", "1h", frame) == 500
    count = lambda: writer.conn.execute("SELECT count(*) FROM candles").fetchone()[0]  # noqa: E731
    assert count() == 500
    changed = frame.iloc[100:110].copy()
    changed["close"] = 1.0
    changed["volume"] = np.nan  # stored as NULL, read back as NaN
    extra = candles(5, start=T0 + 500 * H, seed=3)
    writer.save_candles("binance", "ETH/USDC", "1h", pd.concat([changed, extra]))
    assert count() == 505
    cache = CandleCache(path)
    loaded = cache.load("binance", "ETH/USDC", "1h", T0, T0 + 1000 * H)
    expected = pd.concat([frame, extra])
    expected.iloc[100:110, expected.columns.get_loc("close")] = 1.0
    expected.iloc[100:110, expected.columns.get_loc("volume")] = np.nan
    pd.testing.assert_frame_equal(loaded, expected)
    assert writer.save_candles("binance", "ETH/USDC", "1h", frame.iloc[:0]) == 0
    cache.close()


def test_candle_load_window_and_keys(writer, path):
    frame = candles(100)
    writer.save_candles("binance", "ETH/USDC", "1h", frame)
    writer.save_candles("binance", "ETH/USDC", "4h", candles(10, step=4 * H, seed=5))
    writer.save_candles("sample", "ETH/USDC", "1h", candles(100, seed=7))
    with CandleCache(path) as cache:
        part = cache.load("binance", "ETH/USDC", "1h", T0 + 10 * H, T0 + 20 * H)  # [start, end)
        pd.testing.assert_frame_equal(part, frame.iloc[10:20])
        assert part.index.name == "open_time" and str(part.index.tz) == "UTC"
        assert part.index.is_monotonic_increasing
        empty = cache.load("binance", "ETH/USDC", "1h", T0 + 100 * H, T0 + 200 * H)
        assert empty.empty and list(empty.columns) == ["open", "high", "low", "close", "volume"]
        assert cache.load("binance", "SOL/USDC", "1h", 0, 2**62).empty
    store = Store(path)
    pd.testing.assert_frame_equal(store.candles("binance", "ETH/USDC", "1h"), frame)
    assert len(store.candles("binance", "ETH/USDC", "4h")) == 10
    assert len(store.candles("binance", "ETH/USDC", "1h", end_ms=T0 + 5 * H)) == 5


def rows_in_sql(path, exchange, pair, timeframe, lo, hi) -> pd.DataFrame:
    """The reference: the candle rows themselves, read with plain SQL."""
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT open_time, open, high, low, close, volume FROM candles WHERE exchange = ? AND "
                            "pair = ? AND timeframe = ? AND open_time >= ? AND open_time < ? ORDER BY open_time",
                            (exchange, pair, timeframe, lo, hi)).fetchall()
    a = np.array(rows, dtype=np.float64).reshape(-1, 6)
    return candles_from_arrays(a[:, 0].astype(np.int64), *(a[:, i] for i in range(1, 6)))


def test_a_series_copy_reads_as_its_rows_and_goes_when_they_change(writer, path):
    frame = candles(1000)
    frame.iloc[7, frame.columns.get_loc("volume")] = np.nan  # a NULL
    frame = frame.drop(frame.index[500:510])  # a gap
    writer.save_candles("binance", "ETH/USDC", "1h", frame)
    hours = lambda a, b: frame[(frame.index >= pd.Timestamp(T0 + a * H, unit="ms", tz="UTC"))  # noqa: E731
                               & (frame.index < pd.Timestamp(T0 + b * H, unit="ms", tz="UTC"))]
    assert writer.save_series_copy("binance", "ETH/USDC", "1h", hours(100, 800))
    assert not writer.save_series_copy("binance", "ETH/USDC", "1h", hours(200, 300))  # already spanned

    def copies():
        return writer.conn.execute("SELECT start_time, end_time, n_rows FROM candle_series").fetchall()

    assert copies() == [(T0 + 100 * H, T0 + 799 * H + 1, 690)]
    windows = [(T0, T0 + 2000 * H), (T0 + 100 * H, T0 + 800 * H), (T0 + 150 * H, T0 + 505 * H),
               (T0 + 50 * H, T0 + 300 * H), (T0 + 600 * H, T0 + 950 * H), (T0 + 799 * H, T0 + 801 * H),
               (T0 + 900 * H, T0 + 950 * H), (T0 + 10 * H, T0 + 20 * H)]
    with CandleCache(path) as cache:
        for lo, hi in windows:
            got = cache.load("binance", "ETH/USDC", "1h", lo, hi)
            pd.testing.assert_frame_equal(got, rows_in_sql(path, "binance", "ETH/USDC", "1h", lo, hi))
        # rows written inside the copy's span (the gap filled, a candle corrected) retire the copy...
        filler = candles(10, start=T0 + 500 * H, seed=9)
        writer.save_candles("binance", "ETH/USDC", "1h", filler)
        assert copies() == []
        for lo, hi in windows:
            got = cache.load("binance", "ETH/USDC", "1h", lo, hi)
            pd.testing.assert_frame_equal(got, rows_in_sql(path, "binance", "ETH/USDC", "1h", lo, hi))
        # ...rows outside it do not; a wider window replaces it
        writer.save_series_copy("binance", "ETH/USDC", "1h", cache.load("binance", "ETH/USDC", "1h", T0, T0 + 500 * H))
        writer.save_candles("binance", "ETH/USDC", "1h", candles(5, start=T0 + 1000 * H, seed=4))
        assert copies() == [(T0, T0 + 499 * H + 1, 500)]
        whole = cache.load("binance", "ETH/USDC", "1h", T0, T0 + 2000 * H)
        assert writer.save_series_copy("binance", "ETH/USDC", "1h", whole)
        assert copies() == [(T0, T0 + 1004 * H + 1, 1005)]
        for lo, hi in windows:
            got = cache.load("binance", "ETH/USDC", "1h", lo, hi)
            pd.testing.assert_frame_equal(got, rows_in_sql(path, "binance", "ETH/USDC", "1h", lo, hi))
        assert cache.load("binance", "ETH/USDC", "4h", T0, T0 + 2000 * H).empty  # other series: no copy, no rows


# ---------------------------------------------------------------------------------------------- RSI
def test_rsi_blob_round_trip_is_exact(writer, path):
    extremes = [0.0, 100.0, -0.0, np.nan, np.inf, -np.inf, 5e-324, np.finfo(float).tiny, np.finfo(float).max,
                -np.finfo(float).max, 1 / 3, 2**53 + 1.0]
    values = np.concatenate([extremes, np.random.default_rng(2).random(1000) * 100])
    times = T0 + np.arange(values.size, dtype=np.int64) * H
    times[-1] += 7  # irregular open times survive too
    series = pd.Series(values, index=pd.to_datetime(times, unit="ms", utc=True))
    writer.start_session("s", ts("2025-01-01"), config())
    writer.save_universe("s", [listing(coin("ethereum", "ETH", 1e11, 2))], [])
    writer.save_rsi("s", "ethereum", "1h", 14, "wilder", series)
    row = writer.conn.execute("SELECT period, method, n_points, first_open_time, last_open_time, open_times, "
                              "rsi_values FROM rsi").fetchone()
    assert row[:5] == (14, "wilder", values.size, int(times[0]), int(times[-1]))
    assert row[5] == times.astype("<i8").tobytes() and row[6] == values.astype("<f8").tobytes()  # little-endian
    loaded = Store(path).rsi("ETH", "1h")
    assert loaded.to_numpy().tobytes() == values.tobytes()  # bit for bit: NaN, -0.0 and subnormals included
    assert (loaded.index.as_unit("ms").asi8 == times).all()
    assert loaded.name == "rsi" and loaded.index.name == "open_time" and str(loaded.index.tz) == "UTC"
    assert loaded.attrs == {"period": 14, "method": "wilder"}
    writer.save_rsi("s", "ethereum", "1h", 7, "sma", series.iloc[:3])  # upsert: replaces
    assert writer.conn.execute("SELECT count(*), max(n_points) FROM rsi").fetchone() == (1, 3)
    writer.save_rsi("s", "ethereum", "1d", 14, "wilder", series.iloc[:0])  # an empty series is fine
    assert Store(path).rsi("eth", "1d").empty


# ---------------------------------------------------------------------------------------------- sessions
def test_session_lifecycle_and_config_without_secrets(writer, path):
    cfg = AnalysisConfig(source="sample", coingecko_api_key="CG-SECRET-KEY")
    raw = dict(cfg.to_dict(), coingecko_api_key="CG-SECRET-KEY")  # even if a caller leaves it in
    writer.start_session("run-1", ts("2025-02-01T12:00"), raw)
    status = lambda: writer.conn.execute(  # noqa: E731
        "SELECT status, finished_at, message FROM sessions WHERE session_id = 'run-1'").fetchone()
    assert status() == ("running", None, None)
    with pytest.raises(ValueError):
        writer.finish_session("run-1", "done", ts("2025-02-01T12:05"))
    with pytest.raises(KeyError):
        writer.finish_session("other", "completed", ts("2025-02-01T12:05"))
    writer.finish_session("run-1", "failed", ts("2025-02-01T12:05"), "cannot fetch the coin list:\n  timeout")
    assert status() == ("failed", "2025-02-01T12:05:00.000000Z", "cannot fetch the coin list: timeout")
    stored = writer.conn.execute("SELECT config FROM sessions").fetchone()[0]
    assert "SECRET" not in stored and "api_key" not in stored
    assert AnalysisConfig.from_dict(json.loads(stored)) == cfg
    sessions = Store(path).sessions()
    assert sessions.loc[0, "config"]["source"] == "sample" and sessions.loc[0, "source"] == "sample"
    assert sessions.loc[0, "finished_at"] == ts("2025-02-01T12:05")


def test_interrupt_running(writer, path):
    writer.start_session("a", ts("2025-01-01"), config())
    writer.start_session("b", ts("2025-01-02"), config())
    writer.start_session("c", ts("2025-01-03"), config())
    writer.finish_session("c", "completed", ts("2025-01-03T01:00"))
    assert writer.interrupt_running() == 2
    assert writer.interrupt_running() == 0
    frame = Store(path).sessions().set_index("session_id")
    assert frame["status"].to_dict() == {"a": "interrupted", "b": "interrupted", "c": "completed"}
    assert frame.loc["a", "finished_at"] >= ts("2025-01-01") and frame.loc["a", "message"]
    assert frame.loc["c", "finished_at"] == ts("2025-01-03T01:00")


def test_failed_write_rolls_back_and_writer_goes_on(writer):
    with pytest.raises(sqlite3.IntegrityError):  # foreign key: no such session
        writer.save_correlation("ghost", "ethereum", "1h", 0.5, 10)
    assert not writer.conn.in_transaction
    with pytest.raises(Exception):
        writer.save_candles("binance", "ETH/USDC", "1h", candles(3).drop(columns="close"))
    assert not writer.conn.in_transaction
    writer.start_session("s", ts("2025-01-01"), config())
    writer.save_correlation("s", "ethereum", "1h", 0.5, 10)
    assert writer.conn.execute("SELECT count(*) FROM correlations").fetchone()[0] == 1


def test_universe_is_replaced_not_duplicated(writer, path):
    writer.start_session("s", ts("2025-01-01"), config())
    eth = listing(coin("ethereum", "ETH", 4e11, 2))
    writer.save_universe("s", [eth, listing(coin("solana", "SOL", 8e10, 5))], [])
    writer.save_universe("s", [eth], [ExcludedCoin(coin("tether", "USDT", 1e11, 3), "stablecoin")])
    coins = Store(path).coins("s", include_excluded=True)
    assert coins["coin_id"].tolist() == ["ethereum", "tether"]
    assert coins["excluded_reason"].isna().tolist() == [True, False]


# ---------------------------------------------------------------------------------------------- Store
def test_store_frames_and_dtypes(writer, path):
    populate(writer)
    store = Store(path)
    sessions = store.sessions()
    assert list(sessions.columns) == ["session_id", "started_at", "finished_at", "status", "exchange", "config",
                                      "source", "message", "n_coins", "n_correlations", "n_failures"]
    assert sessions.iloc[0]["exchange"] == "binance"
    assert sessions.iloc[0][["n_coins", "n_correlations", "n_failures"]].tolist() == [8, 14, 1]
    assert str(sessions["started_at"].dtype).endswith("UTC]") and sessions["n_coins"].dtype == np.int64

    coins = store.coins()
    assert list(coins.columns) == ["coin_id", "symbol", "name", "market_cap", "market_cap_rank", "exchange",
                                   "pair", "quote"]
    assert coins["coin_id"].tolist() == list(CAPS)  # by rank; the excluded ones are left out
    assert coins["market_cap"].dtype == np.float64 and str(coins["market_cap_rank"].dtype) == "Int64"
    every = store.coins(include_excluded=True)
    assert len(every) == 12 and every.set_index("coin_id").loc["tether", "excluded_reason"] == "stablecoin"
    assert every["coin_id"].tolist()[:3] == ["bitcoin", "ethereum", "tether"]  # by rank

    corr = store.correlations()
    assert list(corr.columns) == ["coin_id", "symbol", "timeframe", "correlation", "n_points", "market_cap",
                                  "low_cap", "best_lag", "best_lag_correlation", "stability", "n_eff", "p_value",
                                  "ci_low", "ci_high", "return_correlation"]
    assert [str(t) for t in corr.dtypes[["correlation", "n_points", "market_cap", "low_cap", "best_lag",
                                         "stability"]]] == ["float64", "int64", "float64", "bool", "Int64", "float64"]
    assert corr["best_lag"].isna().all()  # saved without lead-lag metrics: NULL, not zero
    assert corr["timeframe"].tolist() == ["1h"] * 7 + ["1d"] * 7  # the config's order, then correlation desc
    assert corr[corr["timeframe"] == "1h"]["symbol"].tolist() == ["DUST", "ETH", "BONK", "SOL", "PEPE", "LINK",
                                                                   "FLOKI"]
    failures = store.failures()
    assert failures.to_dict("records") == [{"coin_id": "bonk", "symbol": "BONK", "timeframe": "1d",
                                            "stage": "fetch", "reason": "no candles in the window"}]
    prices = store.prices("BTC", "1h")
    pd.testing.assert_frame_equal(prices, candles(200))
    assert len(store.prices("btc", "1h", start=T0 + 10 * H, end=ts("2025-01-01T20:00"))) == 10


def test_empty_frames_keep_columns_and_dtypes(writer, path):
    store = Store(path)
    empty_sessions = store.sessions()
    assert empty_sessions.empty and len(empty_sessions.columns) == 11
    assert empty_sessions["n_coins"].dtype == np.int64 and str(empty_sessions["started_at"].dtype).endswith("UTC]")
    assert store.latest_session_id() is None
    with pytest.raises(KeyError, match="no analysis sessions"):
        store.correlations()

    populate(writer, "full")
    writer.start_session("bare", ts("2025-04-01"), config())  # nothing saved yet
    full_dtypes = store.correlations("full").dtypes
    for frame, reference in ((store.correlations(), full_dtypes), (store.selected(), full_dtypes),
                             (store.failures(), store.failures("full").dtypes),
                             (store.coins(), store.coins("full").dtypes),
                             (store.coins(include_excluded=True), store.coins("full", include_excluded=True).dtypes)):
        assert frame.empty
        pd.testing.assert_series_equal(frame.dtypes, reference)


def test_low_cap_matches_numpy_percentile_of_the_listings(writer, path):
    populate(writer, low_cap_percentile=40)
    corr = Store(path).correlations()
    listed = np.array([c for c in CAPS.values() if c > 0])  # excluded coins and caps <= 0 do not count
    threshold = np.percentile(listed, 40)
    expected = {cid: 0 < cap <= threshold for cid, cap in CAPS.items()}
    wrong = np.percentile(np.concatenate([listed, [1.4e11, 1.0, 2.0, 3.0]]), 40)  # counting the excluded ones
    assert expected != {cid: 0 < cap <= wrong for cid, cap in CAPS.items()}  # the data tells them apart
    assert corr.set_index(["coin_id", "timeframe"])["low_cap"].xs("1h", level="timeframe").to_dict() == {
        cid: expected[cid] for cid in corr["coin_id"].unique()}
    assert corr.set_index("coin_id").loc["dust", "low_cap"].tolist() == [False, False]  # cap 0
    assert corr["low_cap"].any() and not corr["low_cap"].all()


def test_selected_uses_the_session_threshold(writer, path):
    populate(writer, low_cap_percentile=60, correlation_threshold=0.72)
    store = Store(path)
    corr = store.correlations()
    selected = store.selected()
    want = corr[corr["low_cap"] & (corr["correlation"].abs() >= 0.72)]
    assert set(zip(selected["coin_id"], selected["timeframe"])) == set(zip(want["coin_id"], want["timeframe"]))
    assert selected["correlation"].is_monotonic_decreasing
    assert ("floki", "1h") in set(zip(selected["coin_id"], selected["timeframe"]))  # |-0.95| counts
    assert selected["low_cap"].all() and (selected["correlation"].abs() >= 0.72).all()


def test_interrupted_session_still_has_low_cap(writer, path):
    populate(writer, "s1", finish=None)
    assert writer.interrupt_running() == 1
    store = Store(path)
    assert store.sessions()["status"].tolist() == ["interrupted"]
    assert store.correlations()["low_cap"].any()


def test_latest_session_and_explicit_ids(writer, path):
    populate(writer, "march", started="2025-03-01")
    populate(writer, "january", started="2025-01-01")  # written later, started earlier
    store = Store(path)
    assert store.latest_session_id() == "march"
    assert store.sessions()["session_id"].tolist() == ["january", "march"]  # newest last
    writer.save_correlation("january", "ethereum", "1h", 0.1, 99)
    assert store.correlations().set_index(["coin_id", "timeframe"]).loc[("ethereum", "1h"), "correlation"] == 0.91
    assert store.correlations("january").set_index(["coin_id", "timeframe"]).loc[
        ("ethereum", "1h"), "correlation"] == 0.1
    populate(writer, "april", started="2025-04-01", finish=None)
    assert store.latest_session_id() == "april"


def test_symbols_are_case_insensitive_and_unknowns_raise_key_error(writer, path):
    populate(writer)
    store = Store(path)
    pd.testing.assert_series_equal(store.rsi("eth", "1h"), store.rsi("ETH", "1h"))
    pd.testing.assert_series_equal(store.rsi("Eth", "1h"), store.rsi("ethereum", "1h"))  # a coin id works too
    pd.testing.assert_frame_equal(store.prices("sOl", "1h"), store.prices("SOL", "1h"))
    cases = [
        (lambda: store.correlations("abc"), "no session 'abc' in "),
        (lambda: store.coins("abc"), "no session 'abc' in "),
        (lambda: store.rsi("ETH", "1d"), "ETH has no 1d RSI in session s1"),
        (lambda: store.rsi("NOPE", "1h"), "NOPE has no 1h RSI in session s1"),
        (lambda: store.prices("NOPE", "1h"), "NOPE is not among the coins of session s1"),
        (lambda: store.prices("usdt", "1h"), "USDT was not analysed in session s1: stablecoin"),
    ]
    for call, message in cases:
        with pytest.raises(KeyError) as info:
            call()
        assert str(info.value).startswith(message) and "\n" not in str(info.value)
    assert str(path) in str(pytest.raises(KeyError, store.failures, "abc").value)


# ---------------------------------------------------------------------------------------------- concurrency
def test_store_reads_while_another_thread_writes(path):
    open_database(path).close()
    chunk, chunks = 50, 40
    errors: list[BaseException] = []
    done = threading.Event()
    # row counts the writer stops at until the reader has seen them: reads happen mid-write on a busy machine too
    checkpoints = {10 * chunk: threading.Event(), 20 * chunk: threading.Event()}

    def write() -> None:
        try:
            conn = open_database(path)
            w = SessionWriter(conn)
            w.start_session("live", ts("2025-01-01"), config())
            for i in range(chunks):
                w.save_candles("binance", "ETH/USDC", "1h", candles(chunk, start=T0 + i * chunk * H, seed=i))
                w.save_correlation("live", f"coin{i}", "1h", 0.5, 10)
                if (i + 1) * chunk in checkpoints:
                    checkpoints[(i + 1) * chunk].wait(30)
            w.finish_session("live", "completed", ts("2025-01-01T01:00"))
            conn.close()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            done.set()

    seen: list[int] = []

    def read() -> None:
        try:
            store = Store(path)
            while True:
                finished = done.is_set()  # read once more after the writer is done
                n = len(store.candles("binance", "ETH/USDC", "1h"))
                assert n % chunk == 0, f"saw a partial transaction: {n} rows"  # whole transactions only
                seen.append(n)
                for count, seen_it in checkpoints.items():
                    if n >= count:
                        seen_it.set()
                if store.latest_session_id() is not None:
                    store.correlations()
                if finished:
                    break
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write), threading.Thread(target=read)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors
    assert seen == sorted(seen) and seen[-1] == chunk * chunks
    assert len(set(seen)) > 2  # the reader did read while the writer wrote
    assert Store(path).sessions()["n_correlations"].tolist() == [chunks]


KILLED_WRITER = """
import sys, numpy as np
from cryptorsi.storage import open_database, SessionWriter
from cryptorsi.market import candles_from_arrays
import pandas as pd
w = SessionWriter(open_database(sys.argv[1]))
w.start_session("killed", pd.Timestamp("2025-01-01", tz="UTC"), {"source": "sample"})
i = 0
while True:
    t = 1735689600000 + (i * 100 + np.arange(100, dtype=np.int64)) * 3600000
    w.save_candles("binance", "ETH/USDC", "1h", candles_from_arrays(t, *np.ones((5, 100))))
    i += 1
    if i == 3:
        print("ready", flush=True)
"""


def test_killed_writer_leaves_a_consistent_database(path):
    proc = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, path], stdout=subprocess.PIPE)
    try:
        assert proc.stdout.readline().strip() == b"ready"
        time.sleep(0.2)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    conn = open_database(path)
    w = SessionWriter(conn)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    n = conn.execute("SELECT count(*) FROM candles").fetchone()[0]
    assert n >= 300 and n % 100 == 0
    assert w.interrupt_running() == 1  # what a DatabaseManager does at start-up
    conn.close()
    assert Store(path).sessions()["status"].tolist() == ["interrupted"]


def test_correlation_metrics_round_trip_and_schema_2_files_migrate(tmp_path):
    import sqlite3 as sq

    from cryptorsi.storage.schema import MIGRATIONS

    path = tmp_path / "v2.db"  # a database written by the previous version (schema 2)
    conn = sq.connect(path)
    for version in (1, 2):
        for sql in MIGRATIONS[version]:
            conn.execute(sql)
    conn.execute("PRAGMA user_version = 2")
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    conn.execute("INSERT INTO cryptorsi_meta VALUES ('application', 'cryptorsi'), ('schema_version', '2')")
    conn.commit()
    conn.close()
    db = open_database(str(path))  # migrates 2 -> 3 -> 4 -> 5
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 5
    writer = SessionWriter(db)
    writer.start_session("s1", pd.Timestamp("2025-01-01", tz="UTC"), {"timeframes": ["1h"]})
    metrics = {"best_lag": 3, "best_lag_correlation": -0.5, "stability": 0.25, "n_eff": 41.5, "p_value": 1e-300,
               "ci_low": -0.7, "ci_high": -0.2, "return_correlation": None}
    writer.save_correlation("s1", "eth", "1h", -0.45, 800, metrics)
    row = db.execute("SELECT best_lag, best_lag_correlation, stability, n_eff, p_value, ci_low, ci_high, "
                     "return_correlation FROM correlations").fetchone()
    assert row == (3, -0.5, 0.25, 41.5, 1e-300, -0.7, -0.2, None)
    db.close()


def test_a_session_stopped_early_keeps_its_row_and_universe(path):
    """The DatabaseManager is stopped while the session's first events still wait in its queue: it records them
    anyway (they say what the session is and which coins it has), abandons the rest, and marks it interrupted."""
    from cryptorsi.agents.database import DatabaseManager
    from cryptorsi.events import HistoricalPricesFetched, SessionStarted, TopCoinsFetched
    from cryptorsi.runtime.memory_bus import InMemoryBus

    bus = InMemoryBus()
    bus.start()
    manager = DatabaseManager(bus, path, session_id="s-early").start()
    try:
        assert manager.ready.wait(5)
        entered, release = threading.Event(), threading.Event()
        manager.submit(lambda: (entered.set(), release.wait(5)))  # the manager is busy
        assert entered.wait(5)
        eth = listing(coin("ethereum", "ETH", 4e11, 2))
        tether = ExcludedCoin(coin("tether", "USDT", 1.4e11, 3), "stablecoin")
        for event in (SessionStarted("s-early", config(), ts("2025-03-01T10:00")),
                      TopCoinsFetched("s-early", (eth,), (tether,)),
                      HistoricalPricesFetched("s-early", eth, "1h", candles(50), candles(50))):
            bus.publish(event)
        assert bus.wait_idle(5)  # every event is in the manager's queue
        stopper = threading.Thread(target=manager.stop, args=(5,), name="test-stopper")
        stopper.start()
        assert manager.stop_event.wait(5)
        release.set()
        stopper.join(10)
        assert not stopper.is_alive()
    finally:
        release.set()
        bus.stop(2)
    store = Store(path)
    sessions = store.sessions()
    assert list(sessions["status"]) == ["interrupted"]
    coins = store.coins("s-early", include_excluded=True)
    assert sorted(coins["symbol"]) == ["ETH", "USDT"]
    assert store.candles("binance", "ETH/USDC", "1h").empty  # abandoned: candles are fetched again next time
