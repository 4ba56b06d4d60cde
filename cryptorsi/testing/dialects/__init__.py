"""The exchanges the local exchange server speaks besides Binance: one module per wire format.

:class:`~cryptorsi.testing.exchange_server.ExchangeServer` routes a request by its path prefix: ``/api/v3/`` is
Binance (and Binance.US, the same protocol on another host: point a ``ccxt.binanceus`` at a server of its own),
``/api/v5/`` OKX (:mod:`.okx`), ``/v5/`` Bybit (:mod:`.bybit`). A ccxt client reaches it once its REST bases are
rewritten with :func:`cryptorsi.sources.exchange_urls.rebase_api_urls`.

Request records name these endpoints ``"okx:candles"``, ``"okx:history-candles"``, ``"okx:instruments"``,
``"okx:time"``, ``"bybit:kline"``, ``"bybit:instruments-info"``, ``"bybit:time"`` (Binance's keep their plain
names, ``"klines"``...). Per-window request budgets (:class:`RateLimits`) are keyed by such an endpoint name or by
an exchange name (all its requests, like an exchange's per-IP limit).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Mapping

from cryptorsi.testing.dialects._common import Dialect, Reply, RequestBudget
from cryptorsi.testing.dialects.bybit import BybitDialect
from cryptorsi.testing.dialects.okx import OkxDialect

if TYPE_CHECKING:
    from cryptorsi.testing.exchange_server import ExchangeMarket

__all__ = ["Dialect", "Reply", "RateLimits", "dialects_for"]


def dialects_for(market: "ExchangeMarket", okx_history_limit: int = 100) -> list[Dialect]:
    """The dialects a server speaks over ``market`` (Binance is the server's own)."""
    return [OkxDialect(market, history_limit=okx_history_limit), BybitDialect(market)]


class RateLimits:
    """Request budgets per endpoint name or exchange: ``{"okx:history-candles": (20, 2.0), "bybit": (600, 5.0)}``
    (at most n requests per window of s seconds, see :class:`RequestBudget`). A request over its exchange's budget
    gets the exchange's per-IP answer, over its endpoint's budget the per-endpoint one."""

    def __init__(self, limits: Mapping[str, tuple[int, float]] | None = None):
        self._budgets = {key: RequestBudget(n, window_s) for key, (n, window_s) in (limits or {}).items()}

    def check(self, dialect: Dialect, endpoint: str) -> Reply | None:
        """Count one request; the refusal to send when it is over a budget, else None."""
        now = time.time()
        for key, scope in ((dialect.exchange, "ip"), (endpoint, "endpoint")):
            budget = self._budgets.get(key)
            if budget is None:
                continue
            allowed, window_end = budget.take(now)
            if not allowed:
                return dialect.rate_limited(scope, max(0, int((window_end - now) * 1000)))
        return None
