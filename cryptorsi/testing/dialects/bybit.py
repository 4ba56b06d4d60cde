"""Bybit's public spot REST API (v5), as ccxt's ``bybit`` client calls it.

Served: ``GET /v5/market/instruments-info`` (``category=spot``, one page: Bybit does not page spot instruments;
``linear``/``inverse``/``option`` answer an empty list, the market being spot only), ``/v5/market/time`` and
``/v5/market/kline``.

Every answer is HTTP 200 with the envelope ``{"retCode": 0, "retMsg": "OK", "result": {...}, "retExtInfo": {},
"time": ms}``; an error has ``retCode != 0`` (``10001`` for bad parameters and unknown symbols: ccxt raises
``BadRequest``). Kline rows are ``[startTime, open, high, low, close, volume, turnover]``, all strings, **newest
first**; ``start`` and ``end`` are inclusive bounds on the open time (``start`` inside a candle includes that
candle), ``limit`` defaults to 200 and is capped at 1000; with ``start`` the page is the ``limit`` candles from
``start`` on, without it the latest ``limit`` up to ``end``. The candle still open is served. ``category``
defaults to ``linear``, as Bybit's does, so a spot symbol asked without ``category=spot`` is unknown.
Intervals: ``1 3 5 15 30 60 120 240 360 720 D W``.

Rate limits: over an endpoint's budget ``retCode 10006 "Too many visits!"`` (HTTP 200, ccxt:
``RateLimitExceeded``); over the per-IP budget HTTP 403 ``access too frequent`` (a ban: ccxt maps HTTP 403 to
``RateLimitExceeded`` for Bybit).
"""

from __future__ import annotations

from cryptorsi.market import TIMEFRAMES
from cryptorsi.testing.dialects._common import (TRADING, Dialect, Reply, decimal, encode, filter_sizes, rows_between,
                                                swap_middle)

__all__ = ["BybitDialect", "INTERVALS", "REAL_LIMITS"]

#: Bybit interval -> the market's interval
INTERVALS = {"1": "1m", "3": "3m", "5": "5m", "15": "15m", "30": "30m", "60": "1h", "120": "2h", "240": "4h",
             "360": "6h", "720": "12h", "D": "1d", "W": "1w"}
#: Bybit's documented per-IP limit (600 requests per 5 s, then a 403 ban), for ``ExchangeServer(request_limits=...)``
REAL_LIMITS = {"bybit": (600, 5.0)}
_STATUSES = {TRADING: "Trading", "PRE_TRADING": "PreLaunch"}  # any other status: closed


class BybitDialect(Dialect):
    """Bybit v5 (see the module docstring)."""

    exchange = "bybit"
    prefix = "/v5/"
    paths = {"/v5/market/instruments-info": "bybit:instruments-info", "/v5/market/time": "bybit:time",
             "/v5/market/kline": "bybit:kline"}
    kinds = {"bybit:kline": "klines", "bybit:instruments-info": "exchangeInfo"}

    def __init__(self, market):
        super().__init__(market)
        self._symbols = {s["symbol"] for s in market.symbols}

    def symbol(self, params: dict) -> str | None:
        symbol = params.get("symbol")
        return symbol if symbol in self._symbols else None

    def answer(self, endpoint: str, params: dict, fault: str | None) -> Reply:
        if endpoint == "bybit:time":
            now = self.market.now()
            return self._ok({"timeSecond": str(now // 1000), "timeNano": str(now * 1_000_000)})
        if endpoint == "bybit:instruments-info":
            return self._instruments(params)
        return self._kline(params, fault)

    def error(self, status: int) -> Reply:
        if status == 429:
            return self.rate_limited("endpoint", 1000)
        # an injected 400 stands for an unknown symbol, as Binance's -1121
        code, msg = (10001, "Not supported symbols") if status == 400 else (10016, "Internal server error.")
        reply = self._fail(code, msg)
        reply.status = status
        return reply

    def rate_limited(self, scope: str, reset_in_ms: int) -> Reply:
        if scope == "ip":  # Bybit's IP ban is answered before its API: a bare 403, no JSON envelope
            return Reply(403, b"access too frequent", {"Content-Type": "text/plain"})
        reply = self._fail(10006, "Too many visits!")
        reset = self.market.now() + reset_in_ms  # on the exchange's clock, like every time it sends
        reply.headers.update({"X-Bapi-Limit-Status": "0", "X-Bapi-Limit-Reset-Timestamp": str(reset)})
        return reply

    def not_found(self, path: str) -> Reply:
        return Reply(404, b"404 page not found", {"Content-Type": "text/plain"})

    # ------------------------------------------------------------------ envelopes
    def _ok(self, result: dict) -> Reply:
        return Reply(200, encode({"retCode": 0, "retMsg": "OK", "result": result, "retExtInfo": {},
                                  "time": self.market.now()}))

    def _fail(self, code: int, msg: str) -> Reply:
        return Reply(200, encode({"retCode": code, "retMsg": msg, "result": {}, "retExtInfo": {},
                                  "time": self.market.now()}))

    # ------------------------------------------------------------------ endpoints
    def _instruments(self, params: dict) -> Reply:
        category = params.get("category")
        if category not in ("spot", "linear", "inverse", "option"):
            return self._fail(10001, "params error: Category is invalid")
        items = [] if category != "spot" else [
            _instrument(s, self.market.last_price(s["symbol"])) for s in self.market.symbols
            if params.get("symbol") in (None, s["symbol"])]
        return self._ok({"category": category, "list": items})

    def _kline(self, params: dict, fault: str | None) -> Reply:
        category = params.get("category", "linear")
        symbol = self.symbol(params) if category == "spot" else None
        if symbol is None:
            return self._fail(10001, "Not supported symbols")
        interval = INTERVALS.get(params.get("interval", ""))
        if interval is None:
            return self._fail(10001, "Invalid period!")
        try:
            limit = int(params.get("limit", 200))
            start = int(params["start"]) if params.get("start") else None
            end = int(params["end"]) if params.get("end") else None
        except ValueError:
            return self._fail(10001, "params error: invalid start, end or limit")
        limit = max(1, min(limit, 1000))
        if fault == "empty":
            return self._ok({"symbol": symbol, "category": "spot", "list": []})
        now = self.market.now()
        if start is not None:  # the candle containing start is included: it opens less than a candle before it
            start = start - TIMEFRAMES[interval] + 1
        rows = rows_between(self.market, symbol, interval, start, end, limit, now, newest=start is None)
        data = [[str(r[0]), r[1], r[2], r[3], r[4], r[5], r[7]] for r in reversed(rows)]  # newest first
        if fault == "nonmonotonic":
            data = swap_middle(data)
        return self._ok({"symbol": symbol, "category": "spot", "list": data})


def _instrument(s: dict, price: float) -> dict:
    tick, step = filter_sizes(price)
    return {
        "symbol": s["symbol"], "baseCoin": s["base"], "quoteCoin": s["quote"], "innovation": "0",
        "status": _STATUSES.get(s["status"], "Closed"), "marginTrading": "utaOnly", "stTag": "0",
        "lotSizeFilter": {"basePrecision": decimal(step), "quotePrecision": "0.0000001",
                          "minOrderQty": decimal(step), "maxOrderQty": "10000000", "minOrderAmt": "1",
                          "maxOrderAmt": "2000000"},
        "priceFilter": {"tickSize": decimal(tick)},
        "riskParameters": {"priceLimitRatioX": "0.05", "priceLimitRatioY": "0.1"},
    }
