"""``DataFetcher``: all I/O with the market — the coin universe and the candles of each coin.

It serves two requests from its worker threads (several for the live source, whose requests wait
on the network):

* ``FetchTopCoinsRequested`` → ``TopCoinsFetched`` (top coins × exchange markets, filtered by
  :func:`~cryptorsi.sources.universe.select_universe`), or ``RunFailed`` when there is no universe;
* ``FetchHistoricalPricesRequested`` → ``HistoricalPricesFetched``, or ``CoinProcessingFailed``.

Candles already in the database are read from it (each worker thread has its own read-only
connection) and only the missing head and tail of the window are asked of the source.

Each request names its source (a :class:`~cryptorsi.events.SourceSpec`), so a fetcher serves every
analysis on its bus, in this process or in a ``cryptorsi worker`` elsewhere; sources are made once per
spec and kept until the fetcher stops.
"""

from __future__ import annotations

import logging
import threading

import pandas as pd

from cryptorsi.errors import CryptoRSIError, DatabaseError, SourceError
from cryptorsi.events import (
    CoinProcessingFailed,
    FetchHistoricalPricesRequested,
    FetchTopCoinsRequested,
    HistoricalPricesFetched,
    RunFailed,
    SourceSpec,
    TopCoinsFetched,
)
from cryptorsi.market import Market, empty_candles, open_times_ms
from cryptorsi.runtime.worker import QueueWorkerThread
from cryptorsi.sources import source_from_spec
from cryptorsi.sources.base import MarketSource
from cryptorsi.windows import missing_spans

__all__ = ["DataFetcher"]

log = logging.getLogger(__name__)


class DataFetcher(QueueWorkerThread):
    """Serves fetch requests; ``db_path`` (optional) is the candle cache to read first.

    ``sources`` pre-seeds the sources by spec (the Runner passes the one it already made);
    ``coingecko_api_key`` is this process' key for live sources.
    """

    def __init__(self, bus, db_path: str | None = None, *, threads: int = 1,
                 sources: dict[SourceSpec, MarketSource] | None = None, coingecko_api_key: str | None = None):
        super().__init__(bus, name="DataFetcher", threads=threads)
        self.db_path = db_path
        self.coingecko_api_key = coingecko_api_key
        self._sources: dict[SourceSpec, MarketSource] = dict(sources or {})
        self._sources_lock = threading.Lock()
        self._local = threading.local()  # one read-only CandleCache connection per worker thread

    def subscribe(self) -> None:
        self.serve(FetchTopCoinsRequested, self._fetch_universe, self._universe_failed)
        self.serve(FetchHistoricalPricesRequested, self._fetch_prices, self._prices_failed)

    def source(self, spec: SourceSpec) -> MarketSource:
        """The source for ``spec``, made on first use."""
        with self._sources_lock:
            source = self._sources.get(spec)
            if source is None:
                source = self._sources[spec] = source_from_spec(spec, coingecko_api_key=self.coingecko_api_key)
            return source

    def stats(self) -> dict:
        """Request statistics of the sources that keep them (live): requests, weight, retries..."""
        with self._sources_lock:
            sources = list(self._sources.values())
        out = {}
        for source in sources:
            stats = getattr(source, "stats", None)
            if callable(stats):
                out[source.name] = stats()
        return out

    def on_stop(self) -> None:  # runs in each worker thread: closes that thread's own connections
        for cache in self._local.__dict__.pop("caches", {}).values():
            cache.close()

    def stop(self, timeout: float = 5.0) -> bool:
        # Interrupts the sources' back-off waits first, so a stop never waits out a Retry-After.
        with self._sources_lock:
            sources = list(self._sources.values())
        for source in sources:
            source.close()
        return super().stop(timeout)

    # ------------------------------------------------------------------ tasks (worker threads)
    def _fetch_universe(self, event: FetchTopCoinsRequested) -> None:
        from cryptorsi.sources.universe import select_universe

        source = self.source(event.source)
        coins = source.top_coins(event.top_n)
        markets = source.markets()
        listings, excluded = select_universe(
            coins, markets, exchange=source.exchange, quotes=event.quotes,
            benchmark=event.benchmark, include_stablecoins=event.include_stablecoins,
        )
        if not any(listing.symbol == event.benchmark for listing in listings):
            why = next((x.reason for x in excluded if x.coin.symbol == event.benchmark), "not in the top coins")
            self.publish(RunFailed(event.session_id, f"benchmark {event.benchmark} cannot be analysed: {why}"))
            return
        self.publish(TopCoinsFetched(event.session_id, tuple(listings), tuple(excluded)))

    def _fetch_prices(self, event: FetchHistoricalPricesRequested) -> None:
        if self.stopping:
            return
        source = self.source(event.source)
        listing, timeframe = event.listing, event.timeframe
        db_path = event.source.db_path if source.name == "cache" else self.db_path
        cached = self._cached(db_path, listing.exchange, listing.pair, timeframe, event.start_ms, event.end_ms)
        fresh = []
        if source.name != "cache":
            market = Market(listing.pair, listing.symbol, listing.quote)
            for start, end in missing_spans(open_times_ms(cached), event.start_ms, event.end_ms, timeframe):
                if self.stopping:
                    return
                fresh.append(source.candles(market, timeframe, start, end))
        uncached = _concat(fresh)
        candles = _concat([cached, uncached]) if len(uncached) else cached
        if len(candles) == 0:
            raise SourceError(f"no {timeframe} candles for {listing.pair} in the window")
        self.publish(HistoricalPricesFetched(event.session_id, listing, timeframe, candles, uncached))

    # ------------------------------------------------------------------ helpers
    def _cached(self, db_path, exchange: str, pair: str, timeframe: str, start_ms: int, end_ms: int) -> pd.DataFrame:
        if db_path is None:
            return empty_candles()
        caches = self._local.__dict__.setdefault("caches", {})
        cache = caches.get(db_path)
        if cache is None:
            from cryptorsi.storage.database import CandleCache

            cache = caches[db_path] = CandleCache(db_path)
        return cache.load(exchange, pair, timeframe, start_ms, end_ms)

    def _universe_failed(self, event: FetchTopCoinsRequested, exc: BaseException) -> None:
        what = "" if isinstance(exc, CryptoRSIError) else f"{type(exc).__name__}: "
        self.publish(RunFailed(event.session_id, f"cannot fetch the coin list: {what}{exc}"))

    def _prices_failed(self, event: FetchHistoricalPricesRequested, exc: BaseException) -> None:
        expected = isinstance(exc, (SourceError, DatabaseError))
        reason = str(exc) if expected else f"{type(exc).__name__}: {exc}"
        self.publish(CoinProcessingFailed(event.session_id, event.listing, event.timeframe, "fetch", reason))


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    frames = [f for f in frames if len(f)]
    if not frames:
        return empty_candles()
    if len(frames) == 1:
        return frames[0]
    out = pd.concat(frames).sort_index()
    return out[~out.index.duplicated(keep="last")]
