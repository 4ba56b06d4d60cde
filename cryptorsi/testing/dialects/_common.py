"""What the exchange dialects share: the reply they build, the request budget, and the market's candles as rows."""

from __future__ import annotations

import json
import math
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the server imports the dialects: no import back at run time
    from cryptorsi.testing.exchange_server import ExchangeMarket

#: the market's symbol statuses (Binance's words, as :class:`ExchangeMarket` keeps them) that mean "trading"
TRADING = "TRADING"


@dataclass
class Reply:
    """An answer as it goes on the wire: HTTP status, body bytes (JSON, or text for a bare refusal), headers."""

    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


def encode(obj: Any) -> bytes:
    """Compact JSON, as the exchanges send it."""
    return json.dumps(obj, separators=(",", ":")).encode()


class RequestBudget:
    """At most ``limit`` requests per window of ``window_s`` seconds, the window opening with its first request.

    Not aligned on the clock, unlike the Binance weight window: a test that sends ``limit + 1`` requests within one
    long window sees exactly one refusal, whatever the time of day and the machine's speed.
    """

    def __init__(self, limit: int, window_s: float):
        self.limit = int(limit)
        self.window_s = float(window_s)
        self._opened = -math.inf
        self._used = 0
        self._lock = threading.Lock()

    def take(self, now: float) -> tuple[bool, float]:
        """Count one request at ``now``: (whether it is within the budget, when the window ends)."""
        with self._lock:
            if now >= self._opened + self.window_s:
                self._opened, self._used = now, 0
            self._used += 1
            return self._used <= self.limit, self._opened + self.window_s


def rows_between(market: "ExchangeMarket", symbol: str, interval: str, lo: int | None, hi: int | None,
                 limit: int, now: int, *, newest: bool) -> list[list]:
    """The market's candles of ``symbol`` opening in ``[lo, hi]`` (either bound optional) as Binance kline rows
    (``[open_ms, "o", "h", "l", "c", "v", close_ms, "quote_v", ...]``, the 8-decimal strings every dialect
    re-emits, so that :meth:`ExchangeMarket.expected_frame` is what a client parses), oldest first: at most
    ``limit`` of them, the newest ones when ``newest`` else the oldest. Candles opening after ``now`` do not
    exist yet."""
    if newest:
        rows = market.kline_rows(symbol, interval, None, hi, limit, now)
        parsed = [json.loads(r) for r in rows]
        return [r for r in parsed if lo is None or r[0] >= lo]
    if lo is None:
        raise ValueError("the oldest rows need a lower bound")
    return [json.loads(r) for r in market.kline_rows(symbol, interval, lo, hi, limit, now)]


def filter_sizes(price: float) -> tuple[float, float]:
    """(price tick, amount step) plausible for a price: about five significant digits of price, and an amount
    step worth about a tenth of a quote unit."""
    exp = math.floor(math.log10(price)) if price > 0 else 0
    tick = min(0.01, max(1e-8, 10.0 ** (exp - 4)))
    step = min(1.0, max(1e-8, 10.0 ** (-exp - 1)))
    return tick, step


def decimal(x: float) -> str:
    """A filter value as the exchanges write them: plain decimal, no exponent, no trailing zeros."""
    text = f"{x:.8f}".rstrip("0").rstrip(".")
    return text or "0"


class Dialect:
    """One exchange's public spot REST API over an :class:`ExchangeMarket`: which paths it serves, and the body
    of each answer. The server (:class:`~cryptorsi.testing.exchange_server.ExchangeServer`) routes requests by
    :attr:`prefix`, counts them against the budgets, injects faults and records them; a dialect only speaks.

    Endpoint names are ``"<exchange>:<name>"`` (``"okx:candles"``): they name the request records and the keys of
    ``Faults.script``. :attr:`kinds` maps them to the generic kinds the fault options use, so that
    ``Faults(endpoints=("klines",))`` and ``Faults.fail_symbols`` apply to every exchange's candle endpoints.
    """

    exchange: str = ""
    prefix: str = ""
    paths: dict[str, str] = {}
    kinds: dict[str, str] = {}

    def __init__(self, market: "ExchangeMarket"):
        self.market = market

    def endpoint(self, path: str) -> str | None:
        """The endpoint name of ``path``, None when this exchange has no such public endpoint."""
        return self.paths.get(path)

    def kind(self, endpoint: str) -> str:
        """``"klines"`` for candle endpoints, ``"exchangeInfo"`` for instrument lists, else the name itself."""
        return self.kinds.get(endpoint, endpoint)

    def symbol(self, params: dict) -> str | None:
        """The market symbol (``BTCUSDT``) a request names, None when it names none the market has."""
        raise NotImplementedError

    def answer(self, endpoint: str, params: dict, fault: str | None) -> Reply:
        """The answer to a request; ``fault`` is ``"empty"`` or ``"nonmonotonic"`` for a page altered on purpose
        (other faults are the server's)."""
        raise NotImplementedError

    def error(self, status: int) -> Reply:
        """The answer an injected non-5xx ``status`` fault stands for (a 429: :meth:`rate_limited`)."""
        raise NotImplementedError

    def rate_limited(self, scope: str, reset_in_ms: int) -> Reply:
        """The exchange's answer over a budget: ``scope`` ``"endpoint"`` (one endpoint's limit) or ``"ip"`` (the
        whole exchange's, per client address); the window ends in ``reset_in_ms``."""
        raise NotImplementedError

    def not_found(self, path: str) -> Reply:
        """The answer to a path under :attr:`prefix` that is not served."""
        return Reply(404, encode({"code": "404", "msg": f"Not Found: {path}"}))


def swap_middle(rows: list) -> list:
    """``rows`` with its two middle rows swapped (the ``nonmonotonic`` fault)."""
    rows = list(rows)
    if len(rows) >= 2:
        k = len(rows) // 2
        rows[k - 1], rows[k] = rows[k], rows[k - 1]
    return rows
