"""``CacheSource``: analyse again what the database already holds, without any network.

Its universe is the one of the most recent session in the file that saved a universe (the coins
analysed then, with their market caps as of that run); its markets are those coins' pairs; its
candles are the candle cache. ``default_end_ms`` ends the window one candle after the latest cached
candle, so a cache run without ``end`` analyses the cached window.

>>> source = CacheSource("crypto_data.db")   # doctest: +SKIP
>>> source.top_coins(3)                       # doctest: +SKIP
"""

from __future__ import annotations

import os
import threading
from collections import Counter

import pandas as pd

from cryptorsi.errors import SourceUnavailable
from cryptorsi.market import Coin, Listing, Market, timeframe_ms
from cryptorsi.sources.base import MarketSource
from cryptorsi.storage.database import CandleCache, inspect_database, read_transaction, require_database

__all__ = ["CacheSource"]


class CacheSource(MarketSource):
    """Only what is already in the database at ``db_path``; safe to call from several threads.

    Raises :class:`~cryptorsi.errors.SourceUnavailable` when the file holds no analysis to start from
    (missing, empty, or no session with a universe), ``DatabaseError`` when it is not a usable
    cryptorsi database.
    """

    name = "cache"

    def __init__(self, db_path: str | os.PathLike):
        self.db_path = os.fspath(db_path)
        nothing = SourceUnavailable(
            f"no cached analysis in {self.db_path}; run with --source sample or --source live first")
        if inspect_database(self.db_path).kind != "cryptorsi":
            raise nothing  # missing or empty (a file that is not cryptorsi raised DatabaseError)
        require_database(self.db_path)
        with read_transaction(self.db_path) as conn:
            row = conn.execute(
                "SELECT s.session_id FROM sessions s WHERE EXISTS (SELECT 1 FROM universe u WHERE "
                "u.session_id = s.session_id AND u.excluded_reason IS NULL) "
                "ORDER BY s.started_at DESC, s.rowid DESC LIMIT 1").fetchone()
            if row is None:
                raise nothing
            rows = conn.execute(
                "SELECT coin_id, symbol, name, market_cap, market_cap_rank, exchange, pair, quote FROM universe "
                "WHERE session_id = ? AND excluded_reason IS NULL "
                "ORDER BY market_cap_rank IS NULL, market_cap_rank, position", (row[0],)).fetchall()
        #: the session whose universe this source replays
        self.session_id: str = row[0]
        # One exchange per source: the cache key of the candles (a universe always has one in practice).
        self.exchange = Counter(r[5] for r in rows).most_common(1)[0][0]
        self.synthetic = self.exchange == "sample"
        self.listings: tuple[Listing, ...] = tuple(
            Listing(Coin(coin_id, symbol, name, cap, None if rank is None else int(rank)), exchange, pair, quote)
            for coin_id, symbol, name, cap, rank, exchange, pair, quote in rows if exchange == self.exchange
        )
        self._local = threading.local()
        self._caches: list[CandleCache] = []
        self._lock = threading.Lock()
        self._end_ms: dict[str, int] = {}

    def __repr__(self) -> str:
        return f"CacheSource({self.db_path!r}, exchange={self.exchange!r}, coins={len(self.listings)})"

    # ------------------------------------------------------------------ MarketSource
    def top_coins(self, n: int) -> list[Coin]:
        """The first ``n`` coins of the cached universe, by market-cap rank as stored."""
        return [listing.coin for listing in self.listings[: max(int(n), 0)]]

    def markets(self) -> list[Market]:
        """The pairs of the cached universe (active); ``base`` is the coin's symbol, as the listing had it."""
        return [Market(listing.pair, listing.symbol, listing.quote, True) for listing in self.listings]

    def candles(self, market: Market, timeframe: str, start_ms: int, end_ms: int) -> pd.DataFrame:
        """Cached candles of ``market`` with open time in ``[start_ms, end_ms)`` (empty when none are cached)."""
        return self._cache().load(self.exchange, market.pair, timeframe, start_ms, end_ms)

    def default_end_ms(self, timeframe: str) -> int:
        """One candle after the latest cached ``timeframe`` candle of the universe's pairs (now if none)."""
        end = self._end_ms.get(timeframe)
        if end is None:
            latest = self._cache().latest_open_ms(self.exchange, [l.pair for l in self.listings], timeframe)
            if latest is None:
                return super().default_end_ms(timeframe)
            end = self._end_ms[timeframe] = latest + timeframe_ms(timeframe)
        return end

    def close(self) -> None:
        """Close every thread's cache connection (callable from any thread, once the others are done)."""
        with self._lock:
            caches, self._caches = self._caches, []
        for cache in caches:
            cache.close()

    # ------------------------------------------------------------------ helpers
    def _cache(self) -> CandleCache:
        cache = getattr(self._local, "cache", None)
        if cache is None or cache not in self._caches:  # first call on this thread, or closed since
            cache = self._local.cache = CandleCache(self.db_path)
            with self._lock:
                self._caches.append(cache)
        return cache
