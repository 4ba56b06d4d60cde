"""What cryptorsi knows of exchanges that ccxt does not say (plain data: ccxt itself is not imported here).

ccxt carries each exchange's timeframes, page size (``features['spot']['fetchOHLCV']['limit']``), request pace
(``rateLimit``), markets and URLs; the live source reads them from ccxt. This table holds only the rest:

* ``root``: the API root used when none is given (Binance: its public market-data host);
* ``page``: candles a request really returns, when ccxt's features say more (OKX documents 100 for
  history-candles, where old windows come from; ccxt's 300 is its recent-candles endpoint's);
* ``history``: most candles the exchange keeps per timeframe (Kraken: its last 720);
* ``quotes``: the quote preference that fits the exchange when the config names none.

>>> default_quotes("kraken"), default_quotes("binance")
(('USD', 'USDC'), ('USDC',))
"""

from __future__ import annotations

from typing import Any

__all__ = ["BINANCE_URL", "BINANCE_FAMILY", "EXCHANGE_FACTS", "DEFAULT_QUOTES", "default_quotes"]

#: Binance's public market-data host: spot market data only, no key, and it answers where ``api.binance.com``
#: refuses a restricted location (HTTP 451). Its use is under Binance's terms.
BINANCE_URL = "https://data-api.binance.vision"
#: the exchanges that speak Binance's API (weights, X-MBX-USED-WEIGHT headers, exchangeInfo, klines)
BINANCE_FAMILY = ("binance", "binanceus")
#: the quote preference of an exchange the table does not name
DEFAULT_QUOTES = ("USDC",)
EXCHANGE_FACTS: dict[str, dict[str, Any]] = {
    "binance": {"root": BINANCE_URL},
    "okx": {"page": 100},
    "kraken": {"history": 720, "quotes": ("USD", "USDC")},
    "coinbase": {"quotes": ("USD", "USDC")},
}


def default_quotes(exchange: str) -> tuple[str, ...]:
    """The quote assets a config of ``exchange`` prefers when it names none (the first that trades is used)."""
    return tuple(EXCHANGE_FACTS.get(exchange, {}).get("quotes", DEFAULT_QUOTES))
