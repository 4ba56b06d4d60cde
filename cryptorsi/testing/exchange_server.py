"""A local HTTP server speaking the Binance spot and CoinGecko endpoints cryptorsi uses, with fault injection.

It lets the real ccxt and pycoingecko clients be tested (and benchmarked) over real HTTP on loopback, with no
network. It serves, in the real wire formats:

* Binance spot: ``GET /api/v3/exchangeInfo``, ``/api/v3/klines``, ``/api/v3/ping``, ``/api/v3/time``, with a
  request-weight budget per window (``X-MBX-USED-WEIGHT-1M`` headers, 429 + ``Retry-After`` over budget, and 418
  for a client that keeps calling during the back-off);
* CoinGecko: ``GET /api/v3/coins/markets`` (26 keys per item, paged) and ``/api/v3/ping``;
* OKX (``/api/v5/...``) and Bybit (``/v5/...``) public spot endpoints, one module each in
  :mod:`cryptorsi.testing.dialects`, with their rate-limit answers over ``request_limits``. Binance.US speaks
  Binance's protocol: a ``ccxt.binanceus`` is served by a server of its own.

Every request is recorded (:attr:`ExchangeServer.records`) for assertions. Faults (:class:`Faults`) are drawn
from a seeded generator, or scripted per endpoint and request number for exact tests.

>>> market = synthetic_market(n_coins=3, intervals=("1d",), weeks=2, now_ms=1_700_000_000_000)
>>> with ExchangeServer(market=market) as server:
...     server.url.startswith("http://127.0.0.1:")
True
"""

from __future__ import annotations

import json
import math
import random
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterable, Mapping, Sequence
from urllib.parse import parse_qs, urlsplit

import numpy as np

from cryptorsi.market import TIMEFRAMES, candles_from_arrays
from cryptorsi.testing.dialects import Dialect, RateLimits, Reply, dialects_for

__all__ = [
    "ExchangeMarket",
    "ExchangeServer",
    "Faults",
    "RequestRecord",
    "synthetic_market",
    "sample_market",
    "SAMPLE_NOW_MS",
    "grid_offset_ms",
    "WEIGHTS",
]

#: Binance request weights of the endpoints served.
WEIGHTS = {"exchangeInfo": 20, "klines": 2, "ping": 1, "time": 1}

_WEEK_OFFSET_MS = 4 * 86_400_000  # Binance weekly candles open on Monday 00:00 UTC; 1970-01-01 was a Thursday


def grid_offset_ms(interval: str) -> int:
    """Offset of ``interval``'s candle grid from the epoch (weekly candles open on Mondays)."""
    return _WEEK_OFFSET_MS if interval == "1w" else 0


# --------------------------------------------------------------------------------------------- market data


CandlesFn = Callable[[str, str, int, int], Sequence[Sequence[Any]]]


class ExchangeMarket:
    """The market a server serves: coins (CoinGecko), symbols (Binance) and candles per (symbol, interval).

    ``coins``: dicts with at least ``id``, ``symbol``, ``name``, ``market_cap`` (``None`` allowed); any of the 26
    CoinGecko keys given overrides the generated value. ``symbols``: dicts ``{"symbol": "ETHUSDC", "base": "ETH",
    "quote": "USDC", "status": "TRADING"}`` (status defaults to TRADING). Candles come from ``candles`` — a mapping
    ``(symbol, interval) -> (open_ms, open, high, low, close, volume)`` arrays, oldest first — or from
    ``candles_fn(symbol, interval, start_ms, end_ms)``, which returns rows ``[open_ms, o, h, l, c, v]`` (or full
    12-field kline rows) with open time in ``[start_ms, end_ms)``, oldest first. ``now_ms`` is the server clock
    (``None``: the wall clock); candles opening after it are never served.
    """

    def __init__(
        self,
        coins: Iterable[Mapping[str, Any]] = (),
        symbols: Iterable[Mapping[str, Any]] = (),
        candles: Mapping[tuple[str, str], Sequence[np.ndarray]] | None = None,
        candles_fn: CandlesFn | None = None,
        now_ms: int | None = None,
    ):
        self.coins = [dict(c) for c in coins]
        self.symbols = []
        for s in symbols:
            s = dict(s)
            s.setdefault("status", "TRADING")
            if "symbol" not in s:
                s["symbol"] = f"{s['base']}{s['quote']}"
            self.symbols.append(s)
        self._by_symbol = {s["symbol"]: s for s in self.symbols}
        self.candles_fn = candles_fn
        self.now_ms = now_ms
        self._arrays: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}
        for key, cols in (candles or {}).items():
            t, o, h, l, c, v = (np.asarray(x) for x in cols)
            self._arrays[key] = (t.astype(np.int64), np.column_stack([o, h, l, c, v]).astype(np.float64))
        self._encoded: dict[tuple[str, str], list[str]] = {}
        self._last_close: dict[str, float] | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_frames(cls, coins: Iterable[Mapping[str, Any]], symbols: Iterable[Mapping[str, Any]],
                    frames: Mapping[tuple[str, str], Any], now_ms: int | None = None) -> "ExchangeMarket":
        """A market whose candles are candle frames (:mod:`cryptorsi.market`), keyed by (symbol, interval)."""
        candles = {}
        for key, frame in frames.items():
            t = frame.index.as_unit("ms").asi8
            candles[key] = (t, *(frame[c].to_numpy(dtype=np.float64) for c in ("open", "high", "low", "close",
                                                                                "volume")))
        return cls(coins=coins, symbols=symbols, candles=candles, now_ms=now_ms)

    # -------------------------------------------------------------- lookups
    def has_symbol(self, symbol: str) -> bool:
        return symbol in self._by_symbol

    def symbol_info(self, symbol: str) -> dict:
        return self._by_symbol[symbol]

    def last_price(self, symbol: str) -> float:
        """The latest close of ``symbol`` in any interval (1.0 when it has no candles), for exchangeInfo filters."""
        if self._last_close is None:
            self._last_close = {}
            for (sym, _), (_, x) in self._arrays.items():
                if len(x):
                    self._last_close.setdefault(sym, float(x[-1, 3]))
        return self._last_close.get(symbol, 1.0)

    def now(self) -> int:
        return int(self.now_ms) if self.now_ms is not None else int(time.time() * 1000)

    def _encoded_rows(self, symbol: str, interval: str) -> tuple[np.ndarray, list[str]] | None:
        key = (symbol, interval)
        if key not in self._arrays:
            return None
        with self._lock:
            rows = self._encoded.get(key)
            if rows is None:
                t, x = self._arrays[key]
                rows = _encode_rows(t, x, TIMEFRAMES[interval])
                self._encoded[key] = rows
        return self._arrays[key][0], rows

    def kline_rows(self, symbol: str, interval: str, start: int | None, end: int | None, limit: int,
                   now: int) -> list[str]:
        """Encoded rows as Binance selects them: open time in [start, end] (both optional), at most ``limit``,
        oldest first; without ``start`` the latest ``limit`` ones. Candles opening after ``now`` do not exist."""
        hi_bound = now if end is None else min(end, now)
        tf = TIMEFRAMES[interval]
        if self.candles_fn is not None and (symbol, interval) not in self._arrays:
            lo = start if start is not None else hi_bound - limit * tf + 1
            raw = self.candles_fn(symbol, interval, int(lo), int(hi_bound) + 1)
            out = [json.dumps(list(r), separators=(",", ":")) if len(r) >= 12
                   else _encode_row(int(r[0]), *(float(v) for v in r[1:6]), tf) for r in raw]
            return out[:limit] if start is not None else out[-limit:]
        found = self._encoded_rows(symbol, interval)
        if found is None:
            return []
        times, rows = found
        j = int(np.searchsorted(times, hi_bound, side="right"))
        if start is not None:
            i = int(np.searchsorted(times, start, side="left"))
            return rows[i:min(j, i + limit)]
        return rows[max(0, j - limit):j]

    def expected_frame(self, symbol: str, interval: str, start_ms: int, end_ms: int, now_ms: int | None = None):
        """The closed candles of ``symbol`` with open time in ``[start_ms, end_ms)`` exactly as a client parses
        them from the wire (prices and volumes through their 8-decimal strings), as a candle frame."""
        now = self.now() if now_ms is None else now_ms
        tf = TIMEFRAMES[interval]
        rows = self.kline_rows(symbol, interval, start_ms, end_ms - 1, 10**9, now)
        parsed = [json.loads(r) for r in rows]
        parsed = [r for r in parsed if r[0] + tf <= now]
        cols = list(zip(*parsed)) if parsed else [[]] * 6
        return candles_from_arrays(np.asarray(cols[0], dtype=np.int64),
                                   *(np.asarray([float(v) for v in cols[k]]) for k in range(1, 6)))


_ROW = '[%d,"%.8f","%.8f","%.8f","%.8f","%.8f",%d,"%.8f",%d,"%.8f","%.8f","0"]'


def _encode_rows(t: np.ndarray, x: np.ndarray, tf: int) -> list[str]:
    """:func:`_encode_row` of every row of open times ``t`` and ``x`` = [o, h, l, c, v] columns (5x faster)."""
    if not len(t):
        return []
    o, h, l, c, v = (x[:, k] for k in range(5))
    quote_volume = v * (o + c) / 2.0
    trades = v.astype(np.int64) % 100_000 + 1
    return [_ROW % (ti, oi, hi, li, ci, vi, ti + tf - 1, qi, ni, vi * 0.5, qi * 0.5)
            for ti, oi, hi, li, ci, vi, qi, ni in zip(t.tolist(), o.tolist(), h.tolist(), l.tolist(), c.tolist(),
                                                      v.tolist(), quote_volume.tolist(), trades.tolist())]


def _encode_row(t: int, o: float, h: float, l: float, c: float, v: float, tf: int) -> str:
    quote_volume = v * (o + c) / 2.0
    trades = int(v) % 100_000 + 1
    return (f'[{t},"{o:.8f}","{h:.8f}","{l:.8f}","{c:.8f}","{v:.8f}",{t + tf - 1},"{quote_volume:.8f}",'
            f'{trades},"{v * 0.5:.8f}","{quote_volume * 0.5:.8f}","0"]')


def synthetic_market(
    n_coins: int = 20,
    *,
    quote: str = "USDC",
    intervals: Sequence[str] = ("1h", "4h", "1d"),
    weeks: float = 50,
    now_ms: int | None = None,
    seed: int = 0,
    break_symbols: Sequence[str] = (),
    unlisted: Sequence[str] = (),
    extra_coins: int = 0,
) -> ExchangeMarket:
    """A generated market: ``n_coins`` coins (BTC first, then ``C001``... by decreasing market cap) each with a
    ``<BASE><quote>`` symbol and random-walk candles for ``weeks`` up to ``now_ms`` (the last one still open).

    ``break_symbols`` lists bases whose pair has status BREAK; ``unlisted`` bases are on CoinGecko but not on
    the exchange; ``extra_coins`` more coins are listed on CoinGecko only (smallest caps).
    """
    rng = np.random.default_rng(seed)
    now = int(now_ms) if now_ms is not None else int(time.time() * 1000)
    bases = ["BTC"] + [f"C{i:03d}" for i in range(1, n_coins)]
    caps = np.sort(rng.uniform(1e7, 1e11, size=n_coins + extra_coins))[::-1]
    caps[0] = 1e12
    coins, symbols, candles = [], [], {}
    for k in range(n_coins + extra_coins):
        base = bases[k] if k < n_coins else f"X{k:03d}"
        coin_id = "bitcoin" if base == "BTC" else f"coin-{base.lower()}"
        coins.append({"id": coin_id, "symbol": base.lower(), "name": f"Coin {base}",
                      "market_cap": float(round(caps[k]))})
        if k >= n_coins or base in unlisted:
            continue
        symbols.append({"symbol": f"{base}{quote}", "base": base, "quote": quote,
                        "status": "BREAK" if base in break_symbols else "TRADING"})
        price0 = 30_000.0 if base == "BTC" else float(rng.uniform(0.05, 500))
        for interval in intervals:
            tf = TIMEFRAMES[interval]
            off = grid_offset_ms(interval)
            last_open = (now - off) // tf * tf + off  # the candle containing now: still open
            n = int(math.ceil(weeks * 7 * 86_400_000 / tf)) + 2
            t = last_open - tf * np.arange(n - 1, -1, -1, dtype=np.int64)
            steps = rng.normal(0, 0.01 * math.sqrt(tf / 3_600_000), size=n)
            close = price0 * np.exp(np.cumsum(steps))
            open_ = np.concatenate([[price0], close[:-1]])
            wick = np.abs(rng.normal(0, 0.003, size=(2, n)))
            high = np.maximum(open_, close) * (1 + wick[0])
            low = np.minimum(open_, close) * (1 - wick[1])
            volume = rng.lognormal(10, 1, size=n)
            candles[(f"{base}{quote}", interval)] = (t, open_, high, low, close, volume)
    return ExchangeMarket(coins=coins, symbols=symbols, candles=candles, now_ms=now_ms)


#: the clock :func:`sample_market` gives its server by default: 20 min 34.567 s after the sample market's end, so
#: that the candle opening at its end is the exchange's open candle on every timeframe up to a day
SAMPLE_NOW_MS = 1_767_225_600_000 + 1_234_567


def sample_market(
    top_n: int = 30,
    *,
    intervals: Sequence[str] = ("1h", "4h", "1d"),
    weeks: float = 52,
    quotes: Sequence[str] | None = None,
    break_pairs: Sequence[str] = (),
    unlisted: Sequence[str] = (),
    listed_ms: Mapping[str, int] | None = None,
    halted_ms: Mapping[str, int] | None = None,
    now_ms: int = SAMPLE_NOW_MS,
    other_symbols: int = 0,
) -> ExchangeMarket:
    """The bundled synthetic sample market (:class:`~cryptorsi.sources.sample.SampleSource`) served over the wire:
    its ``top_n`` largest coins on CoinGecko (stablecoins, wrapped twins, coins without a pair and a shared ticker
    included) and their spot pairs on the exchange, with the candles of the ``weeks`` before the sample's end.

    ``quotes`` keeps only pairs against those quote assets (None: all); ``break_pairs`` (``"ETH/USDT"``) are
    served with status BREAK, ``unlisted`` tickers have no pair at all; pairs the sample has inactive are BREAK.
    ``listed_ms`` / ``halted_ms`` map pairs to the time of their first candle (a late listing) / the time after
    which they have none (a pair still TRADING whose candles stop, like a halted or recorded series).
    The sample's candles are closed up to its end (2026-01-01), ``now_ms`` is the exchange's clock.
    ``other_symbols`` adds that many pairs of coins outside the top (no candles, one in ten BREAK) to
    ``exchangeInfo``: Binance lists ~3,000 spot symbols, and every run reads them all.
    """
    from cryptorsi.sources.sample import SAMPLE_END_MS, SampleSource

    source = SampleSource()
    coins = source.top_coins(top_n)
    bases = {c.symbol for c in coins} - {t.upper() for t in unlisted}
    wanted = None if quotes is None else {q.upper() for q in quotes}
    start = SAMPLE_END_MS - int(weeks * 7 * 86_400_000)
    symbols, frames = [], {}
    for m in source.markets():
        if m.base not in bases or (wanted is not None and m.quote not in wanted):
            continue
        symbol = f"{m.base}{m.quote}"
        status = "BREAK" if (not m.active or m.pair in break_pairs) else "TRADING"
        symbols.append({"symbol": symbol, "base": m.base, "quote": m.quote, "status": status})
        for interval in intervals:
            first = max(start, (listed_ms or {}).get(m.pair, start))
            frames[(symbol, interval)] = source.candles(m, interval, first,
                                                        min(SAMPLE_END_MS, (halted_ms or {}).get(m.pair, SAMPLE_END_MS)))
    other_quotes = ("USDT", "BTC", "USDC", "FDUSD", "TRY", "EUR")
    for i in range(other_symbols):
        base, quote = f"ZZ{i:04d}", other_quotes[i % len(other_quotes)]
        symbols.append({"symbol": base + quote, "base": base, "quote": quote,
                        "status": "BREAK" if i % 10 == 9 else "TRADING"})
    coin_items = [{"id": c.coin_id, "symbol": c.symbol.lower(), "name": c.name, "market_cap": c.market_cap}
                  for c in coins]
    return ExchangeMarket.from_frames(coin_items, symbols, frames, now_ms=now_ms)


# --------------------------------------------------------------------------------------------- faults


@dataclass
class Faults:
    """Faults the server injects, deterministic for a given ``seed`` and request order.

    Rates are probabilities per request on the endpoints of ``endpoints`` (``"klines"``, ``"exchangeInfo"``,
    ``"coins/markets"``; ``"klines"`` and ``"exchangeInfo"`` also stand for OKX's and Bybit's candle and instrument
    endpoints, which can be named too: ``"okx:history-candles"``, ``"bybit:kline"``...). ``script`` maps an
    endpoint to ``{request number (0-based): fault}`` for exact tests.
    Fault names: ``"error"`` (a status from ``error_statuses``) or a status such as ``"503"``, ``"reset"`` (close
    the connection without answering), ``"slow"`` (answer after ``slow_s``), ``"malformed"`` (truncated JSON),
    ``"nonmonotonic"`` (two kline rows swapped), ``"empty"`` (an empty kline page), ``"429"``, ``"ratelimit"``
    (OKX's and Bybit's own rate-limit answer).
    """

    seed: int = 0
    error_rate: float = 0.0
    error_statuses: tuple[int, ...] = (500, 502, 503, 504)
    reset_rate: float = 0.0
    slow_rate: float = 0.0
    slow_s: float = 40.0
    malformed_rate: float = 0.0
    nonmonotonic_rate: float = 0.0
    empty_rate: float = 0.0
    endpoints: tuple[str, ...] = ("klines", "exchangeInfo", "coins/markets")
    #: market symbols (``ETHUSDC``) whose every candle request fails with ``fail_status``, on every exchange (a
    #: status; 400 answers each exchange's unknown-symbol error, Binance's -1121 "Invalid symbol."; ``"reset"``
    #: closes the connection; ``"slow"``, ``"malformed"``... any fault name)
    fail_symbols: tuple[str, ...] = ()
    fail_status: int | str = 500
    #: CoinGecko answers 429 (JSON body) to its first k ``coins/markets`` calls
    coingecko_429_first: int = 0
    coingecko_retry_after: int | None = None
    #: added to every request, in seconds
    latency_s: float = 0.0
    #: every Binance request answered with this status: 451 (Binance's restricted-location answer, its JSON body)
    #: or 403 (a web application firewall's HTML page)
    refuse_status: int | None = None
    script: dict[str, dict[int, str]] = field(default_factory=dict)


@dataclass(frozen=True)
class RequestRecord:
    """One request: ``t`` when it was counted (Binance) or answered, by the server's clock; ``status`` 0 when
    dropped unanswered; ``window`` the number of the weight window it was counted in (-1: not counted)."""

    t: float
    method: str
    path: str
    endpoint: str
    params: dict
    headers: dict
    status: int  # 0: connection closed without an answer
    weight: int = 0
    fault: str | None = None
    window: int = -1


# --------------------------------------------------------------------------------------------- server


_COINGECKO_429 = {"status": {"error_code": 429, "error_message": "You've exceeded the Rate Limit. Please visit "
                             "https://www.coingecko.com/en/api/pricing to subscribe to our API plans for higher "
                             "rate limits."}}
#: whole-client refusals as Binance and its CDN send them: the 451 body is Binance's own (recorded in many user
#: reports); the 403 is an AWS WAF / CloudFront block page (HTML)
_REFUSALS = {
    451: {"raw": b'{"code":0,"msg":"Service unavailable from a restricted location according to \'b. Eligibility\' '
                 b'in https://www.binance.com/en/terms. Please contact customer service if you believe you received '
                 b'this message in error."}'},
    403: {"raw": b'<!DOCTYPE HTML PUBLIC "-//W3C//DTD HTML 4.01 Transitional//EN" '
                 b'"http://www.w3.org/TR/html4/loose.dtd">\n<HTML><HEAD><META HTTP-EQUIV="Content-Type" CONTENT="text/html; charset=iso-8859-1">\n'
                 b'<TITLE>ERROR: The request could not be satisfied</TITLE>\n</HEAD><BODY>\n<H1>403 ERROR</H1>\n'
                 b'<H2>The request could not be satisfied.</H2>\n<HR noshade size="1px">\nRequest blocked.\n'
                 b'</BODY></HTML>', "content_type": "text/html"},
}
_BINANCE_PATHS = {"/api/v3/exchangeInfo": "exchangeInfo", "/api/v3/klines": "klines", "/api/v3/ping": "ping",
                  "/api/v3/time": "time"}
_INTERVALS = ("1s", "1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d", "3d", "1w", "1M")


def _server_error_page(status: int) -> bytes:
    return b"<html><body><h1>%d Server Error</h1></body></html>" % status


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, owner: "ExchangeServer"):
        self.owner = owner
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        super().__init__(("127.0.0.1", owner._port), _Handler)

    def process_request(self, request, client_address):
        with self._conns_lock:
            self._conns.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request):
        with self._conns_lock:
            self._conns.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self._conns_lock:
            conns = list(self._conns)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request, client_address):  # a client hanging up is not worth a traceback
        pass


class _Reset(Exception):
    pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HTTPServer
    t_counted: float | None = None  # when the request was counted against the weight budget
    in_flight = False  # counted in the server's requests in flight, until its answer is sent
    window_counted: int = -1  # the weight window it was counted in

    def log_message(self, format, *args):  # quiet
        pass

    def setup(self):
        super().setup()
        try:
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass

    def do_GET(self):
        try:
            self.server.owner._handle(self)
        except _Reset:
            self.close_connection = True
            try:
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            except OSError:
                pass
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def send_json(self, status: int, body: Any, headers: Mapping[str, str] | None = None, raw: bytes | None = None,
                  content_type: str = "application/json;charset=UTF-8"):
        data = raw if raw is not None else json.dumps(body, separators=(",", ":")).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        # headers and body in one write: a split small answer meets Nagle + delayed ACK (40 ms stalls)
        self._headers_buffer.append(b"\r\n")
        self._headers_buffer.append(data)
        self.server.owner._answered(self)
        self.flush_headers()


class ExchangeServer:
    """A loopback HTTP server speaking Binance spot and CoinGecko (see the module docstring).

    ``weight_limit`` per ``weight_window_s`` seconds, in fixed consecutive windows like Binance's minutes, the first
    one opening with the first request counted (Binance aligns them on the clock's minutes: here, where a test
    falls on the clock never matters); over it a request gets 429 with ``Retry-After`` (seconds to the window's
    end); a request arriving more than ``ban_grace_s`` after that 429 and before the window ends gets 418 and bans
    the client for ``ban_s``. ``clock`` (seconds, default :func:`time.time`) times the budget, the back-off, the
    bans and the records: a test can inject one it advances by hand.
    ``advertise_limit``: whether ``exchangeInfo``'s ``rateLimits`` shows the real budget (else Binance's 6000/min);
    ``explain_429``: whether a 429's message states the limit (as Binance's does) or only "Too many requests.".
    ``request_limits``: OKX and Bybit budgets, ``{endpoint or exchange: (requests, window_s)}`` (see
    :class:`cryptorsi.testing.dialects.RateLimits`; none by default); ``okx_history_limit``: the page cap of OKX's
    ``history-candles``.
    """

    def __init__(
        self,
        market: ExchangeMarket,
        faults: Faults | None = None,
        *,
        port: int = 0,
        weight_limit: int = 6000,
        weight_window_s: float = 60.0,
        ban_grace_s: float = 0.5,
        ban_s: float = 120.0,
        advertise_limit: bool = True,
        explain_429: bool = True,
        request_limits: Mapping[str, tuple[int, float]] | None = None,
        okx_history_limit: int = 100,
        clock: Callable[[], float] = time.time,
    ):
        self.market = market
        self.clock = clock
        self.faults = faults or Faults()
        self.weight_limit = int(weight_limit)
        self.weight_window_s = float(weight_window_s)
        self.ban_grace_s = float(ban_grace_s)
        self.ban_s = float(ban_s)
        self.advertise_limit = advertise_limit
        self.explain_429 = explain_429
        self._port = port
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._symbols_json: dict[bool, bytes] = {}  # exchangeInfo's symbols, encoded on the first request
        self._rng = random.Random(self.faults.seed)
        self._counts: dict[str, int] = {}
        self._window_origin: float | None = None  # when the first weight window opened
        self._window = -1
        self._in_flight = 0
        #: the most requests being answered at once since the last reset_records()
        self.most_in_flight = 0
        self._used = 0
        self._backoff_until = 0.0
        self._first_429 = 0.0
        self._banned_until = 0.0
        self.records: list[RequestRecord] = []
        self._dialects = dialects_for(market, okx_history_limit)  # OKX, Bybit: see cryptorsi.testing.dialects
        self._limits = RateLimits(request_limits)

    # -------------------------------------------------------------- lifecycle
    def start(self) -> "ExchangeServer":
        if self._httpd is not None:
            return self
        self._stop.clear()
        self._httpd = _HTTPServer(self)
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"exchange-server-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._stop.set()  # releases slow answers and latency waits
        httpd.shutdown()
        httpd.close_connections()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def __enter__(self) -> "ExchangeServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return self._httpd.server_address[1] if self._httpd else self._port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -------------------------------------------------------------- assertions
    def requests(self, endpoint: str | None = None, **params: str) -> list[RequestRecord]:
        with self._lock:
            records = list(self.records)
        return [r for r in records if (endpoint is None or r.endpoint == endpoint)
                and all(r.params.get(k) == str(v) for k, v in params.items())]

    def count(self, endpoint: str | None = None, **params: str) -> int:
        return len(self.requests(endpoint, **params))

    def status_count(self, status: int) -> int:
        with self._lock:
            return sum(1 for r in self.records if r.status == status)

    @property
    def n418(self) -> int:
        return self.status_count(418)

    @property
    def n429(self) -> int:
        return self.status_count(429)

    def reset_records(self) -> None:
        with self._lock:
            self.records.clear()
            self.most_in_flight = self._in_flight

    def reset_budget(self) -> None:
        """Forget the weight used, any 429 back-off and any ban (a new client, as after a long pause)."""
        with self._lock:
            self._window_origin, self._window, self._used = None, -1, 0
            self._backoff_until = self._first_429 = self._banned_until = 0.0

    # -------------------------------------------------------------- handling
    def _record(self, h: _Handler, endpoint: str, params: dict, status: int, weight: int, fault: str | None):
        t = h.t_counted if h.t_counted is not None else self.clock()
        rec = RequestRecord(t, h.command, urlsplit(h.path).path, endpoint, params,
                            {k.lower(): v for k, v in h.headers.items()}, status, weight, fault, h.window_counted)
        with self._lock:
            self.records.append(rec)

    def _handle(self, h: _Handler) -> None:
        h.in_flight = True
        with self._lock:
            self._in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self._in_flight)
        try:
            self._serve(h)
        finally:
            self._answered(h)

    def _answered(self, h: _Handler) -> None:
        """The request ``h`` is no longer in flight: its answer is about to be sent (once the client has it, its
        next request may arrive before this handler's thread runs again), or it was dropped."""
        if h.in_flight:
            h.in_flight = False
            with self._lock:
                self._in_flight -= 1

    def _serve(self, h: _Handler) -> None:
        h.t_counted, h.window_counted = None, -1
        split = urlsplit(h.path)
        params = {k: v[0] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        path = split.path
        if self.faults.latency_s > 0:
            self._stop.wait(self.faults.latency_s)
        if path == "/api/v3/coins/markets":
            return self._coingecko(h, params)
        for dialect in self._dialects:
            if path.startswith(dialect.prefix):
                return self._serve_dialect(h, dialect, path, params)
        endpoint = _BINANCE_PATHS.get(path)
        if endpoint is None:
            status = 404
            self._record(h, path, params, status, 0, None)
            h.send_json(status, {"code": -1, "msg": f"Not found: {path}"})
            return
        return self._binance(h, endpoint, params)

    def _draw_fault(self, endpoint: str, kind: str | None = None) -> str | None:
        """The fault of this request: scripted by ``endpoint`` and request number, else drawn when ``endpoint``
        or its ``kind`` (``"klines"`` for every exchange's candle endpoints) is among ``Faults.endpoints``."""
        f = self.faults
        kind = kind or endpoint
        with self._lock:
            n = self._counts.get(endpoint, 0)
            self._counts[endpoint] = n + 1
            scripted = f.script.get(endpoint, {}).get(n)
            if scripted is not None:
                return scripted
            if endpoint not in f.endpoints and kind not in f.endpoints:
                return None
            u = self._rng.random()
            for name, rate in (("error", f.error_rate), ("reset", f.reset_rate), ("slow", f.slow_rate),
                               ("malformed", f.malformed_rate)):
                if u < rate:
                    return name
                u -= rate
            if kind == "klines":
                for name, rate in (("nonmonotonic", f.nonmonotonic_rate), ("empty", f.empty_rate)):
                    if u < rate:
                        return name
                    u -= rate
            return None

    def _weight_headers(self, used: int) -> dict[str, str]:
        w = self.weight_window_s
        suffix = "1M" if w == 60 else (f"{int(w // 60)}M" if w % 60 == 0 else f"{max(1, int(round(w)))}S")
        return {f"X-MBX-USED-WEIGHT-{suffix}": str(used), "X-MBX-USED-WEIGHT": str(used)}

    def _rate_check(self, h: _Handler, weight: int) -> tuple[int | None, dict[str, str], dict | None]:
        """(status or None to serve, headers, error body)."""
        now = h.t_counted = self.clock()
        with self._lock:
            if now < self._banned_until:
                until = int(self._banned_until * 1000)
                return 418, {"Retry-After": str(math.ceil(self._banned_until - now))}, {
                    "code": -1003, "msg": f"Way too much request weight used; IP banned until {until}. "
                    "Please use WebSocket Streams for live updates to avoid bans."}
            if self._window_origin is None:
                self._window_origin = now
            window = h.window_counted = int((now - self._window_origin) // self.weight_window_s)
            window_end = self._window_origin + (window + 1) * self.weight_window_s
            if window != self._window:
                self._window, self._used = window, 0
            self._used += weight
            headers = self._weight_headers(self._used)
            in_backoff = now < self._backoff_until
            if in_backoff and now - self._first_429 > self.ban_grace_s:
                self._banned_until = now + self.ban_s
                headers["Retry-After"] = str(math.ceil(self.ban_s))
                return 418, headers, {"code": -1003, "msg": "Way too much request weight used; IP banned until "
                                      f"{int(self._banned_until * 1000)}. Please use WebSocket Streams for live "
                                      "updates to avoid bans."}
            if in_backoff or self._used > self.weight_limit:
                if not in_backoff:
                    self._first_429 = now
                    self._backoff_until = window_end
                headers["Retry-After"] = str(max(1, math.ceil(self._backoff_until - now)))
                unit = "MINUTE" if self.weight_window_s % 60 == 0 else "SECOND"
                num = int(self.weight_window_s // 60) if unit == "MINUTE" else int(round(self.weight_window_s))
                if not self.explain_429:
                    return 429, headers, {"code": -1003, "msg": "Too many requests."}
                return 429, headers, {"code": -1003, "msg": f"Too much request weight used; current limit is "
                                      f"{self.weight_limit} request weight per {num} {unit}. Please use WebSocket "
                                      "Streams for live updates to avoid polling the API."}
            return None, headers, None

    def _apply_common_fault(self, h: _Handler, fault: str | None, endpoint: str, params: dict, weight: int,
                            headers: dict) -> bool:
        """Handle faults that replace the answer; True when the request has been answered (or dropped)."""
        if fault is None:
            return False
        if fault == "reset":
            self._record(h, endpoint, params, 0, weight, fault)
            raise _Reset()
        if fault == "slow":
            self._stop.wait(self.faults.slow_s)
            return False  # then answers normally (too late for a client with a shorter timeout)
        status = self._fault_status(fault)
        if status is not None:
            self._record(h, endpoint, params, status, weight, fault)
            if status == 429:
                headers = dict(headers, **({"Retry-After": "1"} if endpoint != "coins/markets" else {}))
                h.send_json(status, _COINGECKO_429 if endpoint == "coins/markets" else
                            {"code": -1003, "msg": "Too many requests."}, headers)
            elif status >= 500:
                h.send_json(status, None, headers, raw=_server_error_page(status))
            elif status == 400 and endpoint == "klines":
                h.send_json(status, {"code": -1121, "msg": "Invalid symbol."}, headers)
            elif status in _REFUSALS:
                h.send_json(status, None, headers, **_REFUSALS[status])
            else:
                h.send_json(status, {"code": -1000, "msg": "An unknown error occurred while processing the request."},
                            headers)
            return True
        return False

    def _fault_status(self, fault: str | None) -> int | None:
        """The HTTP status a fault answers with (``"error"``: drawn from ``error_statuses``), None for others."""
        if fault == "error":
            with self._lock:
                return self._rng.choice(self.faults.error_statuses)
        return int(fault) if fault is not None and fault.isdigit() else None

    def _serve_dialect(self, h: _Handler, dialect: Dialect, path: str, params: dict) -> None:
        """A request to another exchange's API: its budgets, the faults, the dialect's answer, the record."""
        endpoint, fault = dialect.endpoint(path), None
        if endpoint is None:
            endpoint, reply = path, dialect.not_found(path)
        else:
            reply = self._limits.check(dialect, endpoint)
        if reply is None:
            fault = self._draw_fault(endpoint, dialect.kind(endpoint))
            if dialect.kind(endpoint) == "klines" and dialect.symbol(params) in self.faults.fail_symbols:
                fault = str(self.faults.fail_status)
            reply = self._dialect_answer(h, dialect, endpoint, params, fault)
        self._record(h, endpoint, params, reply.status, 0, fault)
        headers = dict(reply.headers)
        content_type = headers.pop("Content-Type", "application/json")
        h.send_json(reply.status, None, headers, raw=reply.body, content_type=content_type)

    def _dialect_answer(self, h: _Handler, dialect: Dialect, endpoint: str, params: dict, fault: str | None) -> Reply:
        """The answer under ``fault``: a reset drops the request, a slow one waits, a status fault answers in the
        exchange's words (a 5xx: the load balancer's HTML page), a malformed one is cut in half."""
        if fault == "reset":
            self._record(h, endpoint, params, 0, 0, fault)
            raise _Reset()
        if fault == "slow":
            self._stop.wait(self.faults.slow_s)
        if fault == "ratelimit":  # the exchange's own rate-limit answer (OKX 50011, Bybit 10006), scripted
            return dialect.rate_limited("endpoint", 1000)
        status = self._fault_status(fault)
        if status is not None and status >= 500:
            return Reply(status, _server_error_page(status), {"Content-Type": "text/html"})
        if status is not None:
            return dialect.error(status)
        reply = dialect.answer(endpoint, params, fault)
        if fault == "malformed" and reply.status == 200:
            reply.body = reply.body[: max(1, len(reply.body) // 2)]
        return reply

    def _binance(self, h: _Handler, endpoint: str, params: dict) -> None:
        weight = WEIGHTS[endpoint]
        if self.faults.refuse_status is not None:  # before any weight is counted, as a geo-block or WAF answers
            self._record(h, endpoint, params, self.faults.refuse_status, 0, "refused")
            h.send_json(self.faults.refuse_status, None, {}, **_REFUSALS[self.faults.refuse_status])
            return
        status, headers, body = self._rate_check(h, weight)
        if status is not None:
            self._record(h, endpoint, params, status, weight, None)
            h.send_json(status, body, headers)
            return
        fault = self._draw_fault(endpoint) if endpoint in ("klines", "exchangeInfo") else None
        if endpoint == "klines" and params.get("symbol") in self.faults.fail_symbols:
            fault = str(self.faults.fail_status)
        if self._apply_common_fault(h, fault, endpoint, params, weight, headers):
            return
        if endpoint == "ping":
            status, payload = 200, b"{}"
        elif endpoint == "time":
            status, payload = 200, json.dumps({"serverTime": self.market.now()}).encode()
        elif endpoint == "exchangeInfo":
            status, payload = 200, self._exchange_info_body(params.get("showPermissionSets", "true") != "false")
        else:
            status, payload = self._klines(params, fault)
        if fault == "malformed" and status == 200:
            payload = payload[: max(1, len(payload) // 2)]
        self._record(h, endpoint, params, status, weight, fault)
        h.send_json(status, None, headers, raw=payload)

    def _klines(self, params: dict, fault: str | None) -> tuple[int, bytes]:
        symbol, interval = params.get("symbol"), params.get("interval")
        if not symbol:
            return 400, (b'{"code":-1102,"msg":"Mandatory parameter \'symbol\' was not sent, was empty/null, '
                         b'or malformed."}')
        if not self.market.has_symbol(symbol):
            return 400, b'{"code":-1121,"msg":"Invalid symbol."}'
        if interval not in _INTERVALS:
            return 400, b'{"code":-1120,"msg":"Invalid interval."}'
        if interval not in TIMEFRAMES:
            return 200, b"[]"
        try:
            limit = int(params.get("limit", 500))
            start = int(params["startTime"]) if "startTime" in params else None
            end = int(params["endTime"]) if "endTime" in params else None
        except ValueError:
            return 400, b'{"code":-1100,"msg":"Illegal characters found in a parameter."}'
        limit = max(1, min(limit, 1000))
        if fault == "empty":
            return 200, b"[]"
        rows = self.market.kline_rows(symbol, interval, start, end, limit, self.market.now())
        if fault == "nonmonotonic" and len(rows) >= 2:
            rows = list(rows)
            k = len(rows) // 2
            rows[k - 1], rows[k] = rows[k], rows[k - 1]
        return 200, ("[" + ",".join(rows) + "]").encode()

    def _exchange_info_body(self, permission_sets: bool = True) -> bytes:
        """exchangeInfo as sent: the symbols' JSON is encoded once (megabytes with ``other_symbols``, as
        Binance's is), the rest per request (its serverTime moves with the clock). Without ``permission_sets``
        (``showPermissionSets=false``) each symbol's ``permissionSets`` is empty, as Binance sends it."""
        head = json.dumps(self._exchange_info(), separators=(",", ":")).encode()
        with self._lock:
            symbols = self._symbols_json.get(permission_sets)
            if symbols is None:
                entries = [_symbol_entry(s, self._last_price(s["symbol"])) for s in self.market.symbols]
                if not permission_sets:
                    entries = [dict(e, permissionSets=[]) for e in entries]
                symbols = self._symbols_json[permission_sets] = json.dumps(entries, separators=(",", ":")).encode()
        return head[:-1] + b',"symbols":' + symbols + b"}"

    def _exchange_info(self) -> dict:
        """exchangeInfo without its symbols (see _exchange_info_body)."""
        if self.advertise_limit:
            w = self.weight_window_s
            interval, num = ("MINUTE", int(w // 60)) if w % 60 == 0 else ("SECOND", int(round(w)))
            weight = {"rateLimitType": "REQUEST_WEIGHT", "interval": interval, "intervalNum": num,
                      "limit": self.weight_limit}
        else:
            weight = {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000}
        return {
            "timezone": "UTC",
            "serverTime": self.market.now(),
            "rateLimits": [
                weight,
                {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
                {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 200000},
                {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5, "limit": 61000},
            ],
            "exchangeFilters": [],
        }

    def _last_price(self, symbol: str) -> float:
        return self.market.last_price(symbol)

    # -------------------------------------------------------------- CoinGecko
    def _coingecko(self, h: _Handler, params: dict) -> None:
        endpoint = "coins/markets"
        with self._lock:
            n_calls = sum(1 for r in self.records if r.endpoint == endpoint)
        if n_calls < self.faults.coingecko_429_first:
            headers = {}
            if self.faults.coingecko_retry_after is not None:
                headers["Retry-After"] = str(self.faults.coingecko_retry_after)
            self._record(h, endpoint, params, 429, 0, "429")
            h.send_json(429, _COINGECKO_429, headers)
            return
        fault = self._draw_fault(endpoint)
        if self._apply_common_fault(h, fault, endpoint, params, 0, {}):
            return
        if not params.get("vs_currency"):
            self._record(h, endpoint, params, 400, 0, fault)
            h.send_json(400, {"error": "Missing parameter vs_currency"})
            return
        try:
            per_page = max(1, min(int(params.get("per_page", 100)), 250))
            page = max(1, int(params.get("page", 1)))
        except ValueError:
            self._record(h, endpoint, params, 400, 0, fault)
            h.send_json(400, {"error": "invalid per_page or page"})
            return
        items = self._coin_items()
        payload = json.dumps(items[(page - 1) * per_page: page * per_page], separators=(",", ":")).encode()
        if fault == "malformed":
            payload = payload[: max(1, len(payload) // 2)]
        self._record(h, endpoint, params, 200, 0, fault)
        h.send_json(200, None, {"Cache-Control": "max-age=30"}, raw=payload)

    def _coin_items(self) -> list[dict]:
        coins = sorted(self.market.coins,
                       key=lambda c: (c.get("market_cap") is None, -(c.get("market_cap") or 0.0)))
        out, rank = [], 0
        for i, c in enumerate(coins):
            cap = c.get("market_cap")
            if cap is not None:
                rank += 1
            out.append(_coin_item(c, rank if cap is not None else None, i))
        return out


def _coin_item(c: Mapping[str, Any], rank: int | None, i: int) -> dict:
    cap = c.get("market_cap")
    price = float(c.get("current_price", 1.0 + (i * 7.31) % 100))
    supply = cap / price if cap else None
    total = None if i % 13 == 6 else (supply * 1.2 if supply else None)
    max_supply = None if i % 2 else total
    item = {
        "id": c.get("id"),
        "symbol": c.get("symbol"),
        "name": c.get("name"),
        "image": f"https://assets.coingecko.com/coins/images/{i + 1}/large/{c.get('id')}.png?1696501400",
        "current_price": price,
        "market_cap": int(cap) if cap is not None and float(cap).is_integer() else cap,
        "market_cap_rank": rank,
        "fully_diluted_valuation": None if (i % 5 == 4 or max_supply is None) else int(max_supply * price),
        "total_volume": round((cap or 1e6) * 0.03, 2),
        "high_24h": round(price * 1.02, 8),
        "low_24h": round(price * 0.97, 8),
        "price_change_24h": round(price * 0.004, 8),
        "price_change_percentage_24h": 0.4,
        "market_cap_change_24h": round((cap or 0) * 0.004, 2),
        "market_cap_change_percentage_24h": 0.41,
        "circulating_supply": supply,
        "total_supply": total,
        "max_supply": max_supply,
        "ath": round(price * 2.5, 8),
        "ath_change_percentage": -60.0,
        "ath_date": "2021-11-10T14:24:11.849Z",
        "atl": round(price * 0.05, 8),
        "atl_change_percentage": 1900.0,
        "atl_date": "2019-03-15T00:00:00.000Z",
        "roi": None if i % 4 else {"times": 12.5, "currency": "usd", "percentage": 1250.0},
        "last_updated": "2025-03-04T12:00:00.000Z",
    }
    for k, v in c.items():
        if k in item and k not in ("market_cap",):
            item[k] = v
    return item


def _symbol_entry(s: Mapping[str, Any], price: float) -> dict:
    exp = math.floor(math.log10(price)) if price > 0 else 0
    tick = min(0.01, max(1e-8, 10.0 ** (exp - 4)))
    step = min(1.0, max(1e-8, 10.0 ** (-exp - 1)))
    return {
        "symbol": s["symbol"],
        "status": s["status"],
        "baseAsset": s["base"],
        "baseAssetPrecision": 8,
        "quoteAsset": s["quote"],
        "quotePrecision": 8,
        "quoteAssetPrecision": 8,
        "baseCommissionPrecision": 8,
        "quoteCommissionPrecision": 8,
        "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"],
        "icebergAllowed": True,
        "ocoAllowed": True,
        "otoAllowed": True,
        "quoteOrderQtyMarketAllowed": True,
        "allowTrailingStop": True,
        "cancelReplaceAllowed": True,
        "isSpotTradingAllowed": s["status"] == "TRADING",
        "isMarginTradingAllowed": False,
        "filters": [
            {"filterType": "PRICE_FILTER", "minPrice": f"{tick:.8f}", "maxPrice": "1000000.00000000",
             "tickSize": f"{tick:.8f}"},
            {"filterType": "LOT_SIZE", "minQty": f"{step:.8f}", "maxQty": "9000000.00000000",
             "stepSize": f"{step:.8f}"},
            {"filterType": "ICEBERG_PARTS", "limit": 10},
            {"filterType": "MARKET_LOT_SIZE", "minQty": "0.00000000", "maxQty": "100000.00000000",
             "stepSize": "0.00000000"},
            {"filterType": "TRAILING_DELTA", "minTrailingAboveDelta": 10, "maxTrailingAboveDelta": 2000,
             "minTrailingBelowDelta": 10, "maxTrailingBelowDelta": 2000},
            {"filterType": "PERCENT_PRICE_BY_SIDE", "bidMultiplierUp": "5", "bidMultiplierDown": "0.2",
             "askMultiplierUp": "5", "askMultiplierDown": "0.2", "avgPriceMins": 5},
            {"filterType": "NOTIONAL", "minNotional": "5.00000000", "applyMinToMarket": True,
             "maxNotional": "9000000.00000000", "applyMaxToMarket": False, "avgPriceMins": 5},
            {"filterType": "MAX_NUM_ORDERS", "maxNumOrders": 200},
            {"filterType": "MAX_NUM_ALGO_ORDERS", "maxNumAlgoOrders": 5},
        ],
        "permissions": [],
        "permissionSets": [["SPOT", "MARGIN", "TRD_GRP_004", "TRD_GRP_005", "TRD_GRP_006"]],
        "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
        "allowedSelfTradePreventionModes": ["EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"],
    }
