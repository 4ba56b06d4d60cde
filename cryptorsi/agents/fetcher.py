"""``DataFetcher``: all I/O with the market — the coin universe and the candles of each coin.

It serves two requests from its worker threads (several for the live source, whose requests wait
on the network):

* ``FetchTopCoinsRequested`` → ``TopCoinsFetched`` (top coins × exchange markets, filtered by
  :func:`~cryptorsi.sources.universe.select_universe`), or ``RunFailed`` when there is no universe;
* ``FetchHistoricalPricesRequested`` → ``HistoricalPricesFetched``, or ``CoinProcessingFailed``.

Candles already in the database are read from it (each worker thread has its own read-only
connection) and only the missing head and tail of the window are asked of the source.
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
    TopCoinsFetched,
)
from cryptorsi.market import Market, empty_candles, open_times_ms
from cryptorsi.runtime.worker import QueueWorkerThread
from cryptorsi.sources.base import MarketSource
from cryptorsi.windows import missing_spans

__all__ = ["DataFetcher"]

log = logging.getLogger(__name__)


class DataFetcher(QueueWorkerThread):
    """Fetches through ``source``; ``db_path`` (optional) is the candle cache to read first."""

    def __init__(self, bus, source: MarketSource, db_path: str | None = None, *, threads: int = 1,
                 session_id: str | None = None):
        super().__init__(bus, name="DataFetcher", threads=threads, session_id=session_id)
        self.source = source
        self.db_path = db_path
        self._local = threading.local()  # one read-only CandleCache connection per worker thread

    def subscribe(self) -> None:
        self.listen(FetchTopCoinsRequested, lambda e: self.submit(self._fetch_universe, e, on_error=self._universe_failed(e)))
        self.listen(FetchHistoricalPricesRequested, lambda e: self.submit(self._fetch_prices, e, on_error=self._prices_failed(e)))

    def on_stop(self) -> None:  # runs in each worker thread: closes that thread's own connection
        cache = getattr(self._local, "cache", None)
        if cache is not None:
            cache.close()

    def stop(self, timeout: float = 5.0) -> bool:
        # Interrupts the source's back-off waits first, so a stop never waits out a Retry-After.
        self.source.close()
        return super().stop(timeout)

    # ------------------------------------------------------------------ tasks (worker threads)
    def _fetch_universe(self, event: FetchTopCoinsRequested) -> None:
        if self._mine(event):
            from cryptorsi.sources.universe import select_universe

            coins = self.source.top_coins(event.top_n)
            markets = self.source.markets()
            listings, excluded = select_universe(
                coins, markets, exchange=self.source.exchange, quotes=event.quotes,
                benchmark=event.benchmark, include_stablecoins=event.include_stablecoins,
            )
            if not any(listing.symbol == event.benchmark for listing in listings):
                why = next((x.reason for x in excluded if x.coin.symbol == event.benchmark), "not in the top coins")
                self.publish(RunFailed(event.session_id, f"benchmark {event.benchmark} cannot be analysed: {why}"))
                return
            self.publish(TopCoinsFetched(event.session_id, tuple(listings), tuple(excluded)))

    def _fetch_prices(self, event: FetchHistoricalPricesRequested) -> None:
        if not self._mine(event) or self.stopping:
            return
        listing, timeframe = event.listing, event.timeframe
        cached = self._cached(listing.exchange, listing.pair, timeframe, event.start_ms, event.end_ms)
        fresh = []
        if self.source.name != "cache":
            market = Market(listing.pair, listing.symbol, listing.quote)
            for start, end in missing_spans(open_times_ms(cached), event.start_ms, event.end_ms, timeframe):
                if self.stopping:
                    return
                fresh.append(self.source.candles(market, timeframe, start, end))
        uncached = _concat(fresh)
        candles = _concat([cached, uncached]) if len(uncached) else cached
        if len(candles) == 0:
            raise SourceError(f"no {timeframe} candles for {listing.pair} in the window")
        self.publish(HistoricalPricesFetched(event.session_id, listing, timeframe, candles, uncached))

    # ------------------------------------------------------------------ helpers
    def _mine(self, event) -> bool:
        return self.session_id is None or event.session_id == self.session_id

    def _cached(self, exchange: str, pair: str, timeframe: str, start_ms: int, end_ms: int) -> pd.DataFrame:
        if self.db_path is None:
            return empty_candles()
        cache = getattr(self._local, "cache", None)
        if cache is None:
            from cryptorsi.storage.database import CandleCache

            cache = self._local.cache = CandleCache(self.db_path)
        return cache.load(exchange, pair, timeframe, start_ms, end_ms)

    def _universe_failed(self, event: FetchTopCoinsRequested):
        def publish_failure(exc: BaseException) -> None:
            host = "" if isinstance(exc, CryptoRSIError) else f"{type(exc).__name__}: "
            self.publish(RunFailed(event.session_id, f"cannot fetch the coin list: {host}{exc}"))
        return publish_failure

    def _prices_failed(self, event: FetchHistoricalPricesRequested):
        def publish_failure(exc: BaseException) -> None:
            expected = isinstance(exc, (SourceError, DatabaseError))
            reason = str(exc) if expected else f"{type(exc).__name__}: {exc}"
            self.publish(CoinProcessingFailed(event.session_id, event.listing, event.timeframe, "fetch", reason))
        return publish_failure


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    frames = [f for f in frames if len(f)]
    if not frames:
        return empty_candles()
    if len(frames) == 1:
        return frames[0]
    out = pd.concat(frames).sort_index()
    return out[~out.index.duplicated(keep="last")]
