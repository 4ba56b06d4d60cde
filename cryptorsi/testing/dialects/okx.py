"""OKX's public spot REST API (v5), as ccxt's ``okx`` client calls it.

Served: ``GET /api/v5/public/instruments`` (``instType=SPOT``; the other types answer an empty list: the market is
spot only), ``/api/v5/public/time``, ``/api/v5/market/candles`` and ``/api/v5/market/history-candles``.

Candles, as OKX documents them: rows ``[ts, o, h, l, c, vol, volCcy, volCcyQuote, confirm]``, all strings,
**newest first**; ``after`` returns candles opening strictly before it, ``before`` strictly after it, and a page is
the **newest** ``limit`` candles between the two (``before`` alone: the latest candles). ``limit`` defaults to 100
and is capped at 300 on ``candles`` and at :attr:`OkxDialect.history_limit` on ``history-candles`` (100 in
OKX's documentation until 2024, 300 according to ccxt 4.5; 100 here by default, the case a client must survive).
``candles`` only has the latest 1,440 candles; ``history-candles`` has them all. The candle still open is served
with ``confirm="0"``. Bars: ``1m 3m 5m 15m 30m 1H 2H 4H`` and the UTC-aligned ``6Hutc 12Hutc 1Dutc 1Wutc`` (ccxt
sends ``1Dutc`` for ``1d``: its ``timezone`` option is UTC); OKX's Hong-Kong-aligned ``6H 12H 1D 1W`` cannot be
derived from a UTC market and answer ``51000 Parameter bar error``.

Errors: ``{"code": "51001", "msg": "Instrument ID does not exist", "data": []}`` (HTTP 200) for an unknown
``instId``; over a budget HTTP 429 with ``{"code": "50011", "msg": "Too Many Requests", "data": []}``
(ccxt: ``RateLimitExceeded``).
"""

from __future__ import annotations

from cryptorsi.market import TIMEFRAMES
from cryptorsi.testing.dialects._common import (TRADING, Dialect, Reply, decimal, encode, filter_sizes, rows_between,
                                                swap_middle)

__all__ = ["OkxDialect", "BARS", "REAL_LIMITS"]

#: OKX bar -> the market's interval (UTC-aligned bars only)
BARS = {"1m": "1m", "3m": "3m", "5m": "5m", "15m": "15m", "30m": "30m", "1H": "1h", "2H": "2h", "4H": "4h",
        "6Hutc": "6h", "12Hutc": "12h", "1Dutc": "1d", "1Wutc": "1w"}
#: OKX's documented public limits (requests per 2 s, per IP), to pass as ``ExchangeServer(request_limits=...)``
REAL_LIMITS = {"okx:candles": (40, 2.0), "okx:history-candles": (20, 2.0), "okx:instruments": (20, 2.0),
               "okx:time": (10, 2.0)}
#: how far back ``/market/candles`` reaches, in candles
RECENT_CANDLES = 1440
_STATES = {TRADING: "live", "PRE_TRADING": "preopen"}  # any other status: suspended


def _ok(data: list) -> bytes:
    return encode({"code": "0", "msg": "", "data": data})


def _error(code: str, msg: str, status: int = 200) -> Reply:
    return Reply(status, encode({"code": code, "msg": msg, "data": []}))


class OkxDialect(Dialect):
    """OKX v5 (see the module docstring). ``history_limit``: the page cap of ``history-candles``."""

    exchange = "okx"
    prefix = "/api/v5/"
    paths = {"/api/v5/public/instruments": "okx:instruments", "/api/v5/public/time": "okx:time",
             "/api/v5/market/candles": "okx:candles", "/api/v5/market/history-candles": "okx:history-candles"}
    kinds = {"okx:candles": "klines", "okx:history-candles": "klines", "okx:instruments": "exchangeInfo"}

    def __init__(self, market, history_limit: int = 100):
        super().__init__(market)
        self.history_limit = int(history_limit)
        self._by_inst = {_inst_id(s): s["symbol"] for s in market.symbols}

    def symbol(self, params: dict) -> str | None:
        return self._by_inst.get(params.get("instId", ""))

    def answer(self, endpoint: str, params: dict, fault: str | None) -> Reply:
        if endpoint == "okx:time":
            return Reply(200, _ok([{"ts": str(self.market.now())}]))
        if endpoint == "okx:instruments":
            return self._instruments(params)
        return self._candles(params, history=endpoint == "okx:history-candles", fault=fault)

    def error(self, status: int) -> Reply:
        if status == 429:
            return self.rate_limited("endpoint", 0)
        if status == 400:  # as Binance's -1121: the instrument is unknown
            return _error("51001", "Instrument ID does not exist", status)
        return _error("50026", "System error. Try again later.", status)

    def rate_limited(self, scope: str, reset_in_ms: int) -> Reply:  # OKX answers its IP and endpoint limits alike
        return _error("50011", "Too Many Requests", 429)

    def not_found(self, path: str) -> Reply:
        return Reply(404, encode({"msg": "Not Found", "code": "404"}))

    # ------------------------------------------------------------------ endpoints
    def _instruments(self, params: dict) -> Reply:
        inst_type = params.get("instType")
        if not inst_type:
            return _error("50014", "Parameter instType can not be empty.", 400)
        if inst_type not in ("SPOT", "MARGIN", "SWAP", "FUTURES", "OPTION"):
            return _error("51000", "Parameter instType error", 400)
        if inst_type != "SPOT":
            return Reply(200, _ok([]))
        wanted = params.get("instId")
        items = [_instrument(s, self.market.last_price(s["symbol"])) for s in self.market.symbols
                 if wanted is None or _inst_id(s) == wanted]
        if wanted is not None and not items:
            return _error("51001", "Instrument ID does not exist")
        return Reply(200, _ok(items))

    def _candles(self, params: dict, *, history: bool, fault: str | None) -> Reply:
        if not params.get("instId"):
            return _error("50014", "Parameter instId can not be empty.", 400)
        symbol = self.symbol(params)
        if symbol is None:
            return _error("51001", "Instrument ID does not exist")
        interval = BARS.get(params.get("bar", "1m"))
        if interval is None:
            return _error("51000", "Parameter bar error", 400)
        numbers = {}
        for name in ("limit", "after", "before"):
            try:
                numbers[name] = int(params[name]) if params.get(name) else None
            except ValueError:
                return _error("51000", f"Parameter {name} error", 400)
        after, before = numbers["after"], numbers["before"]
        limit = max(1, min(numbers["limit"] or 100, self.history_limit if history else 300))
        if fault == "empty":
            return Reply(200, _ok([]))
        now, tf = self.market.now(), TIMEFRAMES[interval]
        lo = before + 1 if before is not None else None
        if not history:  # the recent endpoint reaches back 1,440 candles from the one open now
            recent = (now // tf - (RECENT_CANDLES - 1)) * tf
            lo = recent if lo is None else max(lo, recent)
        rows = rows_between(self.market, symbol, interval, lo, after - 1 if after is not None else None,
                            limit, now, newest=True)
        data = [_candle(r, now, tf) for r in reversed(rows)]  # newest first, as OKX sends them
        if fault == "nonmonotonic":
            data = swap_middle(data)
        return Reply(200, _ok(data))


def _inst_id(s: dict) -> str:
    """OKX's instrument id of a market symbol: ``BTC-USDT``."""
    return f"{s['base']}-{s['quote']}"


def _candle(r: list, now: int, tf: int) -> list[str]:
    # vol: base volume (what ccxt reads for spot, index 5); volCcy and volCcyQuote: quote volume, as for spot
    return [str(r[0]), r[1], r[2], r[3], r[4], r[5], r[7], r[7], "1" if r[0] + tf <= now else "0"]


def _instrument(s: dict, price: float) -> dict:
    tick, step = filter_sizes(price)
    return {
        "alias": "", "auctionEndTime": "", "baseCcy": s["base"], "category": "1", "ctMult": "", "ctType": "",
        "ctVal": "", "ctValCcy": "", "expTime": "", "instFamily": "", "instId": _inst_id(s), "instType": "SPOT",
        "lever": "10", "listTime": "1606468572000", "lotSz": decimal(step), "maxIcebergSz": "9999999999",
        "maxLmtAmt": "1000000", "maxLmtSz": "9999999999", "maxMktAmt": "1000000", "maxMktSz": "1000000",
        "maxStopSz": "1000000", "maxTriggerSz": "9999999999", "maxTwapSz": "9999999999", "minSz": decimal(step),
        "optType": "", "quoteCcy": s["quote"], "ruleType": "normal", "settleCcy": "",
        "state": _STATES.get(s["status"], "suspend"), "stk": "", "tickSz": decimal(tick), "uly": "",
    }
