"""The interface every market data source implements (sample, live, cache).

A source answers three questions and knows nothing about threads, the bus or the database:

* ``top_coins(n)`` — the ``n`` largest coins by market cap, largest first (CoinGecko's view);
* ``markets()`` — the exchange's spot markets (ccxt's view);
* ``candles(market, timeframe, start_ms, end_ms)`` — the closed candles whose open time lies in
  ``[start_ms, end_ms)``, as a candle frame (see :mod:`cryptorsi.market`): all of them, so that the
  span, once fetched, is complete in the cache up to ``closed_until(timeframe)``.

The DataFetcher agent calls them from its worker threads, so an implementation must be safe to call
from several threads at once, and must raise :class:`~cryptorsi.errors.SourceError` (one coin or
request failed) or :class:`~cryptorsi.errors.SourceUnavailable` (nothing can be fetched).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import pandas as pd

from cryptorsi.market import Coin, Market

__all__ = ["MarketSource"]


class MarketSource(ABC):
    #: the name users choose it by (``AnalysisConfig.source``)
    name: str = ""
    #: the exchange its candles belong to; the key under which candles are cached
    exchange: str = ""
    #: True when the data is synthetic: every display of it says so
    synthetic: bool = False
    #: how many ``candles`` calls are worth running at once (the fetcher's threads): 1 for a source bound by
    #: this process's CPU, more for one that waits on a network
    concurrency: int = 1

    @abstractmethod
    def top_coins(self, n: int) -> list[Coin]:
        """The ``n`` largest coins by market cap, largest first."""

    @abstractmethod
    def markets(self) -> list[Market]:
        """The exchange's spot markets (active or not)."""

    @abstractmethod
    def candles(self, market: Market, timeframe: str, start_ms: int, end_ms: int) -> pd.DataFrame:
        """Closed candles of ``market`` with open time in ``[start_ms, end_ms)``, oldest first."""

    def check(self, timeframes: tuple[str, ...], weeks: float) -> None:
        """Raise :class:`~cryptorsi.errors.ConfigError` when the source cannot serve these timeframes or a window
        this long (an exchange without 4h candles, one that keeps only its last 720 candles); before any request."""

    def default_end_ms(self, timeframe: str) -> int:
        """Exclusive end of the analysis window when the config gives no ``end``: now, by default."""
        return int(pd.Timestamp.now(tz="UTC").value // 1_000_000)

    def closed_until(self, timeframe: str) -> int:
        """Every candle of ``timeframe`` opening before this instant (UTC ms) is closed: what a ``candles`` call
        made now returns up to there is final (the fetcher records it as complete in the cache)."""
        from cryptorsi.windows import grid_floor

        return grid_floor(self.default_end_ms(timeframe), timeframe)

    def close(self) -> None:
        """Release connections. Called once, from the thread that stops the fetcher."""
