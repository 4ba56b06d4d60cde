"""CacheSource: the universe, markets and candles of the last analysis, from the database only."""

from __future__ import annotations

import threading

import numpy as np
import pandas as pd
import pytest

from cryptorsi.errors import DatabaseError, SourceUnavailable
from cryptorsi.events import ExcludedCoin
from cryptorsi.market import Coin, Listing, Market, candles_from_arrays
from cryptorsi.sources.base import MarketSource
from cryptorsi.sources.cache import CacheSource
from cryptorsi.storage import SessionWriter, open_database

H = 3_600_000
D = 24 * H
T0 = 1_735_689_600_000  # 2025-01-01T00:00Z


def candles(n: int, start: int = T0, step: int = H, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 50 + rng.random(n)
    return candles_from_arrays(start + np.arange(n, dtype=np.int64) * step, close, close + 1, close - 1, close,
                               rng.random(n))


def listing(coin_id: str, symbol: str, cap: float, rank: int, exchange: str = "binance") -> Listing:
    return Listing(Coin(coin_id, symbol, coin_id.title(), cap, rank), exchange, f"{symbol}/USDC", "USDC")


def started(day: int) -> pd.Timestamp:
    return pd.Timestamp("2025-03-01", tz="UTC") + pd.Timedelta(days=day)


@pytest.fixture()
def db(tmp_path):
    path = str(tmp_path / "crypto_data.db")
    conn = open_database(path)
    yield path, SessionWriter(conn)
    conn.close()


def test_nothing_cached_is_reported_clearly(tmp_path, db):
    path, w = db
    for where in (str(tmp_path / "missing.db"), path):
        with pytest.raises(SourceUnavailable, match="no cached analysis in .*; run with --source sample or "
                                                    "--source live first"):
            CacheSource(where)
    w.start_session("s", started(0), {"source": "live"})  # a session that never got its universe
    w.save_universe("s", [], [ExcludedCoin(Coin("tether", "USDT", "Tether", 1e11, 3), "stablecoin")])
    with pytest.raises(SourceUnavailable, match="no cached analysis"):
        CacheSource(path)
    text = tmp_path / "notes.db"
    text.write_text("not a database")
    with pytest.raises(DatabaseError, match="is not a SQLite database"):
        CacheSource(str(text))


def test_universe_is_the_latest_session_with_one(db):
    path, w = db
    w.start_session("old", started(0), {"source": "live"})
    w.save_universe("old", [listing("bitcoin", "BTC", 2e12, 1)], [])
    w.start_session("mid", started(1), {"source": "live"})
    eth, btc, sol = listing("ethereum", "ETH", 4e11, 2), listing("bitcoin", "BTC", 2e12, 1), \
        listing("solana", "SOL", 8e10, 5)
    w.save_universe("mid", [eth, sol, btc],  # saved out of rank order: top_coins orders by rank
                    [ExcludedCoin(Coin("tether", "USDT", "Tether", 1.4e11, 3), "stablecoin")])
    w.start_session("new", started(2), {"source": "cache"})  # started, no universe yet (e.g. this very run)
    source = CacheSource(path)
    assert isinstance(source, MarketSource) and source.name == "cache"
    assert source.session_id == "mid"
    assert source.exchange == "binance" and source.synthetic is False
    assert [c.coin_id for c in source.top_coins(10)] == ["bitcoin", "ethereum", "solana"]
    assert source.top_coins(2) == [btc.coin, eth.coin]  # market caps and ranks as stored
    assert source.top_coins(0) == []
    assert source.markets() == [Market("BTC/USDC", "BTC", "USDC", True), Market("ETH/USDC", "ETH", "USDC", True),
                                Market("SOL/USDC", "SOL", "USDC", True)]
    source.close()


def test_sample_exchange_is_synthetic(db):
    path, w = db
    w.start_session("s", started(0), {"source": "sample"})
    w.save_universe("s", [listing("bitcoin", "BTC", 2e12, 1, exchange="sample")], [])
    source = CacheSource(path)
    assert source.exchange == "sample" and source.synthetic is True


def test_candles_come_from_the_cache_on_every_thread(db):
    path, w = db
    w.start_session("s", started(0), {"source": "live"})
    w.save_universe("s", [listing("bitcoin", "BTC", 2e12, 1), listing("ethereum", "ETH", 4e11, 2)], [])
    btc, eth = candles(300, seed=1), candles(200, seed=2)
    w.save_candles("binance", "BTC/USDC", "1h", btc)
    w.save_candles("binance", "ETH/USDC", "1h", eth)
    w.save_candles("sample", "ETH/USDC", "1h", candles(10, seed=9))  # another exchange: not ours
    source = CacheSource(path)
    market = Market("ETH/USDC", "ETH", "USDC")
    pd.testing.assert_frame_equal(source.candles(market, "1h", T0 + 5 * H, T0 + 50 * H), eth.iloc[5:50])
    assert source.candles(market, "4h", T0, T0 + 100 * H).empty

    results, errors = {}, []

    def fetch(i: int) -> None:
        try:
            for _ in range(5):
                results[i] = source.candles(Market("BTC/USDC", "BTC", "USDC"), "1h", T0, T0 + 1000 * H)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=fetch, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert not errors
    for frame in results.values():
        pd.testing.assert_frame_equal(frame, btc)
    caches = list(source._caches)
    assert len(caches) == 5  # one cache per thread that read (4 workers + this one)
    source.close()
    assert source._caches == [] and all(cache._conn is None for cache in caches)
    # still usable after close (a new connection is opened on demand)
    pd.testing.assert_frame_equal(source.candles(market, "1h", T0, T0 + 3 * H), eth.iloc[:3])
    source.close()


def test_close_closes_connections_opened_on_other_threads(db):
    path, w = db
    w.start_session("s", started(0), {"source": "live"})
    w.save_universe("s", [listing("bitcoin", "BTC", 2e12, 1)], [])
    w.save_candles("binance", "BTC/USDC", "1h", candles(10))
    source = CacheSource(path)
    worker = threading.Thread(target=source.candles, args=(Market("BTC/USDC", "BTC", "USDC"), "1h", T0, T0 + H))
    worker.start()
    worker.join()
    (cache,) = source._caches
    assert cache._conn is not None
    source.close()  # from this thread, not the one that opened it
    assert cache._conn is None


def test_default_end_is_one_candle_after_the_latest_cached(db):
    path, w = db
    w.start_session("s", started(0), {"source": "live"})
    w.save_universe("s", [listing("bitcoin", "BTC", 2e12, 1), listing("ethereum", "ETH", 4e11, 2)], [])
    w.save_candles("binance", "BTC/USDC", "1h", candles(100))
    w.save_candles("binance", "ETH/USDC", "1h", candles(120))  # the latest of the universe's pairs counts
    w.save_candles("binance", "BTC/USDC", "1d", candles(30, step=D))
    w.save_candles("binance", "DOGE/USDC", "1h", candles(500))  # not in the universe
    w.save_candles("other", "BTC/USDC", "1h", candles(900))  # another exchange
    source = CacheSource(path)
    assert source.default_end_ms("1h") == T0 + 120 * H
    assert source.default_end_ms("1d") == T0 + 30 * D
    now = pd.Timestamp.now(tz="UTC").value // 1_000_000
    assert abs(source.default_end_ms("4h") - now) < 60_000  # nothing cached on 4h: now, like any source
    source.close()
