"""The ``live`` source: CoinGecko's top coins through pycoingecko, an exchange's spot markets and candles through
ccxt — Binance by default, or any exchange ccxt speaks with ``fetchOHLCV`` (``exchange="okx"``...).

Safe to call from several threads at once: every thread gets its own ccxt instance (ccxt instances are not
thread-safe), all sharing the markets loaded once and one request-weight budget
(:class:`~cryptorsi.sources.budget.WeightBudget`: Binance's 6,000 weight a minute, klines weighing 2; for another
exchange, one request per ccxt ``rateLimit`` on average). ccxt's own per-instance limiter is off. A 429 pauses
every thread for its ``Retry-After`` (so a 418 ban never comes); network errors, timeouts, 5xx and malformed
pages are retried with bounded exponential backoff (tenacity); an unknown symbol is not retried. Waits are event waits that :meth:`LiveSource.close` interrupts. An unreachable host
is given up on within ``unavailable_after_s`` with one line naming it; a host that refuses this client (HTTP 451 for
a restricted location, a firewall's 403) is asked nothing more, and the line names the ways out
(:class:`~cryptorsi.errors.SourceRefused`). Binance is reached at its public market-data host
(:data:`cryptorsi.exchanges.BINANCE_URL`); what ccxt does not say of an exchange is in :mod:`cryptorsi.exchanges`.

Time is the exchange's: ``serverTime`` of ``exchangeInfo`` (a lower bound, taken when its answer arrived) decides
which candles are closed, and ends the default window (:meth:`LiveSource.default_end_ms`), so a market whose clock
differs from ours (a mirror, a recorded market) is analysed where its data is.

The CoinGecko key (argument or ``COINGECKO_API_KEY``) travels in a header only (``x-cg-demo-api-key``, or
``x-cg-pro-api-key`` for ``https://pro-api.coingecko.com``); it is never logged, stored or put in a message.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import re
import threading
import time
from typing import Any, Callable
from urllib.parse import urlsplit

import numpy as np
import pandas as pd
import requests
import tenacity
from requests.adapters import HTTPAdapter

from cryptorsi.errors import ConfigError, SourceError, SourceRefused, SourceUnavailable
from cryptorsi.exchanges import BINANCE_FAMILY, BINANCE_URL, EXCHANGE_FACTS
from cryptorsi.market import Coin, Market, candles_from_table, empty_candles, timeframe_ms
from cryptorsi.sources.base import MarketSource
from cryptorsi.sources.budget import BudgetClosed, WeightBudget
from cryptorsi.sources.exchange_urls import rebase_api_urls

__all__ = ["LiveSource", "BINANCE_URL", "COINGECKO_URL", "COINGECKO_PRO_URL"]

log = logging.getLogger(__name__)

COINGECKO_URL = "https://api.coingecko.com"
COINGECKO_PRO_URL = "https://pro-api.coingecko.com"
KLINES_LIMIT = 1000
#: Binance requests in flight at once (``AnalysisConfig.requests_in_flight``). At 150 ms a klines page takes ~0.2 s
#: from request to rows, so 10 in flight ask ~50 pages a second: about the rate the weight budget sustains (90 % of
#: Binance's 6,000 a minute, klines weigh 2: 45 pages a second). Fewer leave budget unused (8: a 55-coin cold run
#: 15 s instead of 12-13 s at 150 ms); more only burst faster until the minute's budget is spent
#: (bench/bench_live.py --requests-in-flight).
DEFAULT_REQUESTS_IN_FLIGHT = 10
KLINES_WEIGHT = 2
EXCHANGE_INFO_WEIGHT = 20
TIME_WEIGHT = 1
_SUGGEST = "try --source sample or --source cache"
_OFFLINE = "or work offline with --source sample or --source cache"


def _refusal(status: int | None, host: str) -> str | None:
    """The one-line reason when ``status`` means the host refuses this client as a whole, else None.

    451: Binance's answer to a restricted location (the US, many cloud hosts: Colab, CI runners), on every
    endpoint. 403: Binance's web application firewall (its documented answer to a client over its limits), a
    CDN's block page, or Bybit's IP ban (minutes long); its body is never shown."""
    if status == 451:
        return (f"{host} refuses requests from this location (HTTP 451, restricted location); use another host "
                f"with --exchange-url (exchange_url) or another exchange with --exchange, {_OFFLINE}")
    if status == 403:
        return (f"{host} blocked the request (HTTP 403: its web application firewall, or an IP ban after too many "
                f"requests); wait before trying again, use another host with --exchange-url (exchange_url), "
                f"{_OFFLINE}")
    return None


#: ccxt options that keep a client on public spot endpoints (the same names serve binance, okx, bybit...)
SPOT_ONLY = {"defaultType": "spot", "fetchMarkets": {"types": ["spot"]}, "fetchCurrencies": False}
#: where each timeframe's candle grid starts: sub-daily and daily candles on UTC midnights, weekly ones on Mondays
#: (1970-01-01 was a Thursday); 3-day candles keep the phase of the first one served (not documented by Binance)
_GRID_OFFSET_MS = {"1w": 4 * 86_400_000, "3d": None}
_UNITS = {"S": 1, "SECOND": 1, "M": 60, "MINUTE": 60, "H": 3600, "HOUR": 3600, "D": 86400, "DAY": 86400}
_LIMIT_MSG = re.compile(r"limit is (\d+) request weight per (\d+) (SECOND|MINUTE|HOUR|DAY)", re.I)
_WEIGHT_HEADER = re.compile(r"^x-mbx-used-weight-(\d+)([smhd])$", re.I)


class _Retry(Exception):
    """A failed attempt worth retrying. ``kind``: network, timeout, http, malformed, ratelimit."""

    def __init__(self, reason: str, kind: str, retry_after: float | None = None, unreachable: bool = False):
        super().__init__(reason)
        self.reason, self.kind, self.retry_after, self.unreachable = reason, kind, retry_after, unreachable


class _Fatal(Exception):
    """A failure that another attempt would not fix (unknown symbol, bad request, refused key...)."""


class _Refused(Exception):
    """The host refuses this client whatever it asks (HTTP 451, a firewall's 403): the run cannot go on."""


class _Closed(Exception):
    pass


class LiveSource(MarketSource):
    """CoinGecko + an exchange's spot market over HTTP. URLs are roots (``scheme://host[:port]``); ``None``: the
    public hosts (for Binance, its market-data host :data:`BINANCE_URL`).

    ``exchange`` is a ccxt id whose ``has['fetchOHLCV']`` is true (an unknown one, or one without candles, raises
    :class:`~cryptorsi.errors.ConfigError`). Keyword-only knobs: ``timeout`` (seconds per HTTP request),
    ``requests_in_flight`` (most exchange requests in flight at once, within the request budget; also
    :attr:`concurrency`, the fetcher's threads), ``weight_per_minute`` (the client's cap on
    Binance weight; the budget the server advertises is adopted if smaller) and ``weight_window_s`` (the budget
    window: 60 s like Binance's minute; shorter in tests), ``now_ms`` (a fixed clock for tests), ``retry_base_s``
    / ``retry_max_s`` / ``max_attempts`` (backoff of transient failures), ``unavailable_after_s`` (how long
    ``top_coins``/``markets`` keep retrying an unreachable host), ``coingecko_plan`` (``"demo"`` or ``"pro"``;
    default: pro for the pro host), ``vs_currency`` (CoinGecko's market-cap currency), ``ohlcv_parser``
    (``"numpy"``: ccxt's ``publicGetKlines`` — the request ``fetch_ohlcv`` sends — and one numpy conversion;
    ``"ccxt"``: ``fetch_ohlcv`` itself, the reference).
    """

    name = "live"
    synthetic = False

    def __init__(
        self,
        exchange_url: str | None = None,
        coingecko_url: str | None = None,
        coingecko_api_key: str | None = None,
        *,
        exchange: str = "binance",
        timeout: float = 10.0,
        requests_in_flight: int = DEFAULT_REQUESTS_IN_FLIGHT,
        weight_per_minute: float = 6000,
        weight_window_s: float = 60.0,
        now_ms: int | None = None,
        retry_base_s: float = 0.5,
        retry_max_s: float = 8.0,
        max_attempts: int = 5,
        max_rate_limited: int = 10,
        unavailable_after_s: float = 20.0,
        coingecko_plan: str | None = None,
        vs_currency: str = "usd",
        ohlcv_parser: str = "numpy",
    ):
        self.exchange = exchange
        self._facts = EXCHANGE_FACTS.get(exchange, {})
        self._binance_api = exchange in BINANCE_FAMILY
        self._meta = _exchange_meta(exchange)  # ccxt's facts of the exchange: timeframes, features, rateLimit
        root = exchange_url or self._facts.get("root")
        self.exchange_url = root.rstrip("/") if root else None  # None: ccxt's own URLs
        key = coingecko_api_key if coingecko_api_key is not None else os.environ.get("COINGECKO_API_KEY") or None
        cg_root = (coingecko_url or "").rstrip("/")
        plan = (coingecko_plan or "").lower() or (
            "pro" if urlsplit(cg_root).hostname and urlsplit(cg_root).hostname.startswith("pro-api.") else "demo")
        if not cg_root:
            cg_root = COINGECKO_PRO_URL if (plan == "pro" and key) else COINGECKO_URL
        self.coingecko_url = cg_root
        self.timeout = float(timeout)
        self.concurrency = max(1, int(requests_in_flight))
        self.now_ms = now_ms
        self.retry_base_s = float(retry_base_s)
        self.retry_max_s = float(retry_max_s)
        self.max_attempts = max(1, int(max_attempts))
        self.max_rate_limited = max(1, int(max_rate_limited))
        self.unavailable_after_s = float(unavailable_after_s)
        self.vs_currency = vs_currency
        if ohlcv_parser not in ("numpy", "ccxt"):
            raise ValueError("ohlcv_parser must be 'numpy' or 'ccxt'")
        self.ohlcv_parser = ohlcv_parser
        self._exchange_host = _host(self.exchange_url) if self.exchange_url else _ccxt_host(self._meta)
        self._coingecko_host = _host(self.coingecko_url)
        self._closed = threading.Event()
        if self._binance_api:
            self._budget = WeightBudget(weight_per_minute * weight_window_s / 60.0, weight_window_s)
        else:  # one request per ccxt rateLimit on average, in bursts of at most one second's worth
            self._budget = WeightBudget(max(1.0, 1000.0 / max(1.0, float(self._meta.rateLimit))), 1.0, safety=1.0)
        self._inflight = threading.BoundedSemaphore(self.concurrency)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._markets_lock = threading.Lock()
        self._exchanges: list[Any] = []
        self._primary: Any = None  # the ccxt instance that loaded the markets; the others share them
        self._markets: list[Market] | None = None
        self._market_ids: dict[str, str] = {}  # unified pair -> the exchange's symbol ("ETH/USDC" -> "ETHUSDC")
        self._server_offset_ms: float | None = None
        self._banned_until = 0.0
        self._refused: str | None = None  # why the host refuses this client, once it has said so
        self._stats = {"requests": 0, "klines_requests": 0, "retries": 0, "rate_limited": 0, "banned": 0,
                       "errors": 0, "candles": 0, "coingecko_requests": 0, "coingecko_rate_limited": 0,
                       "empty_pages": 0}
        self._cg = self._make_coingecko(key, plan)
        self._cg_lock = threading.Lock()
        self._cg_last: dict[str, Any] = {}
        self._redact = key  # only used to scrub messages; never printed

    def __repr__(self) -> str:
        return (f"LiveSource(exchange={self.exchange!r}, exchange_url={self.exchange_url!r}, "
                f"coingecko_url={self.coingecko_url!r})")

    def check(self, timeframes: tuple[str, ...], weeks: float) -> None:
        offered = list(self._meta.timeframes)
        for timeframe in timeframes:
            if timeframe not in offered:
                raise ConfigError("timeframes", f"{self.exchange} has no {timeframe} candles; it offers "
                                                f"{', '.join(offered)}")
        history = self._facts.get("history")
        for timeframe in timeframes:
            needed = math.ceil(weeks * 7 * 86_400_000 / timeframe_ms(timeframe))
            if history is not None and needed > history:
                most = history * timeframe_ms(timeframe) / (7 * 86_400_000)
                raise ConfigError("weeks", f"{self.exchange} keeps only its last {history} candles: {weeks:g} weeks "
                                           f"of {timeframe} need {needed}; at most {most:.4g} weeks of {timeframe}")

    # =========================================================================================== CoinGecko
    def _make_coingecko(self, key: str | None, plan: str):
        from pycoingecko import CoinGeckoAPI

        cg = CoinGeckoAPI()  # no key here: pycoingecko would put it in the query string (and so in logged URLs)
        session = cg.session
        adapter = HTTPAdapter(max_retries=0, pool_connections=2, pool_maxsize=2)  # retries are ours
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        if key:
            session.headers["x-cg-pro-api-key" if plan == "pro" else "x-cg-demo-api-key"] = key
        session.headers["accept"] = "application/json"
        session.hooks["response"].append(self._cg_hook)
        cg.api_base_url = self.coingecko_url + "/api/v3/"
        cg.request_timeout = self.timeout
        return cg

    def _cg_hook(self, response, *args, **kwargs):
        self._cg_last = {"status": response.status_code, "headers": response.headers}
        return response

    def _coingecko_page(self, per_page: int, page: int) -> list:
        def attempt():
            self._check_open()
            with self._cg_lock:
                self._cg_last = {}
                with self._lock:
                    self._stats["coingecko_requests"] += 1
                try:
                    data = self._cg.get_coins_markets(vs_currency=self.vs_currency, order="market_cap_desc",
                                                      per_page=per_page, page=page)
                except json.JSONDecodeError as e:
                    raise _Retry(f"malformed JSON ({e.msg})", "malformed") from None
                except requests.Timeout:
                    raise _Retry(f"no answer within {self.timeout:g} s", "timeout", unreachable=True) from None
                except requests.ConnectionError as e:
                    raise _Retry(_short(e), "network", unreachable=True) from None
                except (requests.HTTPError, ValueError) as e:
                    self._cg_failure(e)
                if not isinstance(data, list) or not all(isinstance(x, dict) for x in data):
                    raise _Retry("malformed page (not a list of coins)", "malformed")
                return data

        return self._retrying(attempt, host=self._coingecko_host, fatal_unavailable=True)

    def _cg_failure(self, e: Exception):
        status = self._cg_last.get("status")
        headers = self._cg_last.get("headers") or {}
        if status == 429:
            with self._lock:
                self._stats["coingecko_rate_limited"] += 1
            raise _Retry("HTTP 429 rate limited", "ratelimit", retry_after=_retry_after(headers, cap=60.0)) from None
        if status is not None and status >= 500:
            raise _Retry(f"HTTP {status}", "http") from None
        if status is not None:
            detail = _cg_message(e)
            raise _Fatal(f"HTTP {status}{': ' + detail if detail else ''}") from None
        raise _Retry(f"unexpected answer ({type(e).__name__})", "malformed") from None

    def top_coins(self, n: int) -> list[Coin]:
        """The ``n`` largest coins by market cap (CoinGecko ``/coins/markets``, 250 a page), largest first."""
        n = int(n)
        if n <= 0:
            return []
        per_page = min(250, n)
        items: list[dict] = []
        for page in range(1, math.ceil(n / per_page) + 1):
            batch = self._coingecko_page(per_page, page)
            items.extend(batch)
            if len(batch) < per_page:
                break
        seen: set[str] = set()
        coins: list[tuple[int, int, Coin]] = []
        for order, item in enumerate(items):
            coin_id = item.get("id")
            if not coin_id or not isinstance(coin_id, str) or coin_id in seen:
                continue
            seen.add(coin_id)
            rank = item.get("market_cap_rank")
            rank = int(rank) if isinstance(rank, (int, float)) and not isinstance(rank, bool) else None
            cap = item.get("market_cap")
            cap = float(cap) if isinstance(cap, (int, float)) and not isinstance(cap, bool) else None
            coins.append((rank if rank is not None else 1 << 62, order, Coin(
                coin_id=coin_id, symbol=str(item.get("symbol") or "").upper(), name=str(item.get("name") or coin_id),
                market_cap=cap, market_cap_rank=rank)))
        coins.sort(key=lambda x: (x[0], x[1]))
        return [c for _, _, c in coins[:n]]

    # =========================================================================================== Binance
    def _new_exchange(self):
        options = dict(SPOT_ONLY, adjustForTimeDifference=False)
        if self._binance_api:
            options["fetchMargins"] = False
        ex = type(self._meta)({
            "enableRateLimit": False,  # the shared budget replaces ccxt's per-instance limiter
            "timeout": int(self.timeout * 1000),
            "options": options,
        })
        last: dict[str, Any] = {}

        def hook(response, *args, **kwargs):  # the status and headers of every answer, errors included
            last["status"] = response.status_code
            last["headers"] = response.headers
            last["t"] = time.time()
            return response

        ex.session.hooks["response"].append(hook)
        ex.enableLastJsonResponse = True
        if self.exchange_url is not None:
            rebase_api_urls(ex, self.exchange_url)
        ex._cryptorsi_last = last
        return ex

    def _exchange(self):
        ex = getattr(self._local, "exchange", None)
        if ex is None:
            self._check_open()
            ex = self._new_exchange()
            with self._lock:
                self._exchanges.append(ex)
            self._local.exchange = ex
        primary = self._primary
        if ex.markets is None and primary is not None and ex is not primary and primary.markets is not None:
            ex.set_markets_from_exchange(primary)  # shares the parsed markets (read-only) instead of re-parsing
        return ex

    def _call(self, weight: int, fn: Callable[[Any], Any], what: str) -> Any:
        """One attempt: wait for the budget, send through this thread's ccxt instance, classify failures."""
        ccxt = _ccxt()
        self._check_open()
        if self._refused is not None:  # nothing more is sent to a host that refuses this client
            raise _Refused(self._refused)
        if time.monotonic() < self._banned_until:
            raise _Fatal(f"{self.exchange} banned this IP (HTTP 418); try again later")
        ex = self._exchange()
        last = ex._cryptorsi_last
        with self._inflight:
            try:
                self._budget.acquire(weight)
            except BudgetClosed:
                raise _Closed() from None
            last.clear()
            ex.last_json_response = None
            with self._lock:
                self._stats["requests"] += 1
            try:
                try:
                    return fn(ex)
                except ccxt.BaseError:  # whatever ccxt made of a refusal (ExchangeNotAvailable, ExchangeError...)
                    refusal = _refusal(last.get("status"), self._exchange_host)
                    if refusal is not None:
                        self._refused = refusal
                        raise _Refused(refusal) from None
                    raise
            except (ccxt.DDoSProtection, ccxt.RateLimitExceeded) as e:
                self._rate_limited(last, weight, str(e))
            except ccxt.RequestTimeout:
                if last.get("status") == 504 or last.get("status") == 408:
                    raise _Retry(f"HTTP {last['status']}", "http") from None
                raise _Retry(f"no answer within {self.timeout:g} s", "timeout", unreachable=True) from None
            except (ccxt.BadSymbol, ccxt.BadRequest) as e:
                raise _Fatal(_ccxt_message(e, self.exchange)) from None
            except ccxt.NetworkError as e:  # ExchangeNotAvailable (5xx, 4xx without a known code), resets
                status = last.get("status")
                if status is None:
                    raise _Retry(_short(e.__cause__ or e), "network", unreachable=True) from None
                if status >= 500:
                    raise _Retry(f"HTTP {status}", "http") from None
                raise _Fatal(f"HTTP {status} {_ccxt_message(e, self.exchange)}") from None
            except ccxt.ExchangeError as e:
                status = last.get("status")
                if status is not None and status >= 500:
                    raise _Retry(f"HTTP {status}", "http") from None
                if status is not None and status >= 400:
                    raise _Fatal(f"HTTP {status} {_ccxt_message(e, self.exchange)}") from None
                raise _Retry(f"malformed answer ({_ccxt_message(e, self.exchange)})", "malformed") from None
            except (TypeError, ValueError, KeyError, IndexError, AttributeError) as e:
                raise _Retry(f"malformed answer ({type(e).__name__})", "malformed") from None
            finally:
                self._observe_weight(last.get("headers"))

    def _observe_weight(self, headers) -> None:
        if not headers:
            return
        for name, value in headers.items():
            m = _WEIGHT_HEADER.match(name)
            if m:
                try:
                    used = float(value)
                except ValueError:
                    continue
                self._budget.observe(used, int(m.group(1)) * _UNITS[m.group(2).upper()])

    def _rate_limited(self, last: dict, weight: int, message: str):
        status = last.get("status")
        headers = last.get("headers") or {}
        retry_after = _retry_after(headers, cap=None)
        m = _LIMIT_MSG.search(message)
        if m:  # Binance's message states the limit: "current limit is 6000 request weight per 1 MINUTE"
            self._budget.configure(int(m.group(1)), int(m.group(2)) * _UNITS[m.group(3).upper()])
        else:  # else the limit is about the weight used when the server said no
            used = window = None
            for name, value in headers.items():
                h = _WEIGHT_HEADER.match(name)
                if h and value.strip().isdigit():
                    used, window = float(value), int(h.group(1)) * _UNITS[h.group(2).upper()]
            if used is not None and window != self._budget.window_s:
                self._budget.configure(max(weight, used - weight), window)
            elif used is not None:
                self._budget.lower(max(weight, used - weight))  # later 429s (in-flight requests) say more
            else:
                self._budget.lower(max(weight, 0.9 * self._budget.snapshot()["weight_in_window"]))
        if status == 418:
            with self._lock:
                self._stats["banned"] += 1
            wait = retry_after if retry_after is not None else 120.0
            if wait > 300:
                self._banned_until = time.monotonic() + wait
                self._budget.pause(wait)
                raise _Fatal(f"{self.exchange} banned this IP (HTTP 418) for {wait:.0f} s")
        else:
            with self._lock:
                self._stats["rate_limited"] += 1
            wait = retry_after if retry_after is not None else max(1.0, self._budget.window_s / 2)
        self._budget.pause(wait)
        log.info("%s answered %s: every thread pauses %.1f s", self.exchange, status or 429, wait)
        raise _Retry(f"HTTP {status or 429} rate limited", "ratelimit", retry_after=0.0)

    # ------------------------------------------------------------------------------------ markets
    def _load_markets(self) -> None:
        if self._binance_api:
            self._load_binance_markets()
        else:
            self._load_ccxt_markets()
        if self.now_ms is None and self._server_offset_ms is None and self._meta.has.get("fetchTime"):
            self._sync_time()

    def _load_ccxt_markets(self) -> None:
        """The spot markets ``load_markets`` gives with :data:`SPOT_ONLY` (no derivative lists, no currencies)."""
        def attempt():
            def load(ex):
                ex.markets = None
                return ex.load_markets(True)

            markets = self._call(1, load, "markets")
            if not isinstance(markets, dict) or not markets:
                raise _Retry("malformed markets", "malformed")
            return markets

        markets = self._retrying(attempt, host=self._exchange_host, fatal_unavailable=True)
        self._primary = self._exchange()
        self._markets = [Market(m["symbol"], m["base"], m["quote"], m.get("active") is not False)
                         for m in markets.values() if m.get("spot") and m.get("base") and m.get("quote")]

    def _load_binance_markets(self) -> None:
        def attempt():
            def load(ex):
                if self.ohlcv_parser == "ccxt":  # fetch_ohlcv needs ccxt's own parsing of every market
                    ex.markets = None
                    ex.load_markets(True)
                    return ex.last_json_response, ex._cryptorsi_last.get("t")
                # the request load_markets sends for spot, without ccxt parsing each of Binance's ~3,000 symbols
                # (~0.4 s a run, measured): the universe needs four fields of each (spot_markets). Nor are the
                # permission sets read: Binance leaves them out on request, a large part of its answer.
                return ex.publicGetExchangeInfo({"showPermissionSets": "false"}), ex._cryptorsi_last.get("t")

            raw, answered = self._call(EXCHANGE_INFO_WEIGHT, load, "exchangeInfo")
            if not isinstance(raw, dict) or not isinstance(raw.get("symbols"), list) or not raw["symbols"]:
                raise _Retry("malformed exchangeInfo", "malformed")
            return raw, answered

        raw, answered = self._retrying(attempt, host=self._exchange_host, fatal_unavailable=True)
        ex = self._exchange()
        for rl in raw.get("rateLimits") or []:
            try:
                if rl.get("rateLimitType") == "REQUEST_WEIGHT":
                    self._budget.configure(int(rl["limit"]), int(rl.get("intervalNum", 1)) * _UNITS[rl["interval"]])
            except (KeyError, TypeError, ValueError):
                pass
        self._primary = ex
        self._markets, self._market_ids = spot_markets(raw["symbols"], currency_code_of(ex))
        if self.now_ms is None:
            server = raw.get("serverTime")
            if isinstance(server, (int, float)) and not isinstance(server, bool) and answered is not None:
                # serverTime was written before the answer arrived here: a lower bound of the exchange clock,
                # which is what judging a candle closed needs (no /api/v3/time request)
                self._server_offset_ms = float(server) - answered * 1000.0

    def _sync_time(self) -> None:
        """Estimate the exchange clock (ccxt's ``fetch_time``) so that a candle it still has open is never kept."""
        def attempt():
            t0 = time.time()
            server = self._call(TIME_WEIGHT, lambda ex: ex.fetch_time(), "time")
            t1 = time.time()
            return float(server) - (t0 + t1) * 500.0

        try:
            self._server_offset_ms = self._retrying(attempt, host=self._exchange_host, attempts=2)
        except (SourceError, TypeError, ValueError):
            self._server_offset_ms = None

    def markets(self) -> list[Market]:
        """The exchange's spot markets, those trading active (Binance: ``exchangeInfo`` only, no futures
        endpoints; another exchange: ccxt's ``load_markets`` with :data:`SPOT_ONLY`)."""
        with self._markets_lock:
            if self._markets is None:
                self._load_markets()
            return list(self._markets)

    # ------------------------------------------------------------------------------------ candles
    def _now(self) -> int:
        if self.now_ms is not None:
            return int(self.now_ms)
        local = time.time() * 1000.0
        if self._server_offset_ms is not None:
            return int(min(local, local + self._server_offset_ms))
        return int(local)

    def default_end_ms(self, timeframe: str) -> int:
        """Now by the exchange's clock (learnt with the markets, which this loads): the window of a run without
        ``end`` ends with the last candle the exchange has closed, even when its clock differs from ours."""
        if self.now_ms is not None:
            return int(self.now_ms)
        self.markets()
        return self._now()

    def closed_until(self, timeframe: str) -> int:
        """Every candle opening before this instant is closed by the exchange's clock."""
        if self._markets is None and self.now_ms is None:
            self.markets()
        now = self._now()
        grid = _GRID_OFFSET_MS.get(timeframe, 0)
        tf = timeframe_ms(timeframe)
        if grid is None:  # a grid of unknown phase (3d): only what opened a whole candle ago
            return now - tf + 1
        return (now - grid) // tf * tf + grid

    def candles(self, market: Market, timeframe: str, start_ms: int, end_ms: int, *,
                on_request: Callable[[], None] | None = None) -> pd.DataFrame:
        """Closed candles of ``market`` with open time in ``[start_ms, end_ms)``, paged (Binance: 1000 a request).

        ``on_request()`` is called after each candle request (retries included), e.g. for a progress bar.
        """
        tf = timeframe_ms(timeframe)
        start_ms, end_ms = int(start_ms), int(end_ms)
        if start_ms >= end_ms:
            return empty_candles()
        if self._markets is None:
            self.markets()
        now = self._now()
        if self._binance_api:
            pages = self._klines_pages(market, timeframe, tf, start_ms, end_ms, now, on_request)
        else:
            pages = self._window_pages(market, timeframe, tf, start_ms, end_ms, now, on_request)
        if not pages:
            return empty_candles()
        data = np.concatenate(pages)
        data = data[(data[:, 0] + tf <= now) & (data[:, 0] < end_ms)]  # closed candles only
        with self._lock:
            self._stats["candles"] += len(data)
        return candles_from_table(data)

    def _klines_pages(self, market: Market, timeframe: str, tf: int, start_ms: int, end_ms: int, now: int,
                      on_request: Callable[[], None] | None) -> list[np.ndarray]:
        """Binance's klines from ``start_ms``: each page the first 1000 candles from its start (gaps skipped), the
        next one from past its last candle; a short page ends the series."""
        pages: list[np.ndarray] = []
        since = start_ms
        grid = _GRID_OFFSET_MS.get(timeframe, 0)
        doubted = False
        while since < end_ms and since + tf <= now:
            raw_len, page = self._klines_page(market, timeframe, tf, since, end_ms, grid, on_request)
            if raw_len == 0:
                # "nothing from here on" is final (the span is then recorded complete): an empty answer is asked
                # again once, so that a server's hiccup does not cut a series for good
                if doubted:
                    break
                doubted = True
                with self._lock:
                    self._stats["empty_pages"] += 1
                continue
            doubted = False
            if len(page):
                if grid is None:
                    grid = int(page[0, 0]) % tf
                pages.append(page)
                since = int(page[-1, 0]) + tf  # past the last candle: restarting from it would repeat it
            if raw_len < KLINES_LIMIT or not len(page):
                break
        return pages

    def _window_pages(self, market: Market, timeframe: str, tf: int, start_ms: int, end_ms: int, now: int,
                      on_request: Callable[[], None] | None) -> list[np.ndarray]:
        """Another exchange's candles, one request per window of a page's length (``fetch_ohlcv`` with ``since``
        and ``until``): whatever an exchange does with a window it has no candle in (OKX answers nothing for the
        weeks before a listing), the next window is asked for, so a late listing or a gap never ends the series."""
        page = min(int(self._meta.features.get("spot", {}).get("fetchOHLCV", {}).get("limit") or 500),
                   int(self._facts.get("page", 1_000_000)))
        grid = 0 if tf <= 86_400_000 and 86_400_000 % tf == 0 else None  # sub-daily and daily grids start at 00:00
        pages: list[np.ndarray] = []
        since = start_ms
        while since < end_ms and since + tf <= now:
            until = min(end_ms, since + page * tf)
            rows = self._ohlcv_window(market, timeframe, tf, since, until, grid, page, on_request)
            if len(rows):
                pages.append(rows)
            since = until
        return pages

    def _ohlcv_window(self, market: Market, timeframe: str, tf: int, since: int, until: int, grid: int | None,
                      page: int, on_request: Callable[[], None] | None) -> np.ndarray:
        """The candles of ``[since, until)`` through ccxt's ``fetch_ohlcv``, checked as a klines page is."""
        what = f"{market.pair} {timeframe}"

        def fetch(ex):
            rows = ex.fetch_ohlcv(market.pair, timeframe, since, page, {"until": until - 1})
            return rows, ex.last_json_response

        def attempt():
            with self._lock:
                self._stats["klines_requests"] += 1
            try:
                rows, body = self._call(1, fetch, what)
            finally:
                if on_request is not None:
                    on_request()
            if not rows and body is None:  # ccxt reads a body that is not JSON as a page without candles
                problem = "not JSON"
            else:
                problem, table = _check_page(rows, None, since, tf, grid)  # ccxt's rows, as raw rows
            if problem:
                raise _Retry(f"malformed candles page at {pd.Timestamp(since, unit='ms', tz='UTC')}: {problem}",
                             "malformed")
            return table[table[:, 0] < until]

        return self._retrying(attempt, host=self._exchange_host, what=what)

    def _klines_page(self, market: Market, timeframe: str, tf: int, since: int, end_ms: int, grid: int | None,
                     on_request: Callable[[], None] | None = None):
        what = f"{market.pair} {timeframe}"
        use_ccxt_parser = self.ohlcv_parser == "ccxt"

        def fetch(ex):
            if use_ccxt_parser:
                rows = ex.fetch_ohlcv(market.pair, timeframe, since, KLINES_LIMIT, {"until": end_ms - 1})
                return ex.last_json_response, rows
            # the same request fetch_ohlcv sends, read by one numpy conversion instead of ccxt's per-row parse
            symbol = self._market_ids.get(market.pair)
            if symbol is None:  # as ccxt's ex.market(pair) says it
                raise _Fatal(f"does not have market symbol {market.pair}")
            raw = ex.publicGetKlines({"symbol": symbol, "interval": ex.timeframes.get(timeframe, timeframe),
                                      "startTime": since, "endTime": end_ms - 1, "limit": KLINES_LIMIT})
            return raw, None

        def attempt():
            with self._lock:
                self._stats["klines_requests"] += 1
            try:
                raw, rows = self._call(KLINES_WEIGHT, fetch, what)
            finally:
                if on_request is not None:
                    on_request()
            problem, page = _check_page(raw, rows, since, tf, grid)
            if problem:
                raise _Retry(f"malformed klines page at {pd.Timestamp(since, unit='ms', tz='UTC')}: {problem}",
                             "malformed")
            return len(page), page[page[:, 0] < end_ms]

        return self._retrying(attempt, host=self._exchange_host, what=what)

    # =========================================================================================== retries
    def _retrying(self, attempt: Callable[[], Any], *, host: str, what: str | None = None,
                  fatal_unavailable: bool = False, attempts: int | None = None) -> Any:
        """Run ``attempt`` with tenacity: transient failures back off exponentially (at most ``max_attempts``),
        rate limits wait for their ``Retry-After`` (at most ``max_rate_limited``), an unreachable host gives up
        after ``unavailable_after_s``. Final failures become SourceError (or SourceUnavailable when
        ``fatal_unavailable``), with a one-line reason."""
        counts = {"transient": 0, "ratelimit": 0}
        max_attempts = attempts or self.max_attempts
        started = time.monotonic()

        def after(rs: tenacity.RetryCallState) -> None:
            exc = rs.outcome.exception()
            counts["ratelimit" if exc.kind == "ratelimit" else "transient"] += 1
            with self._lock:
                self._stats["retries"] += 1

        def stop(rs: tenacity.RetryCallState) -> bool:
            exc = rs.outcome.exception()
            if self._closed.is_set():
                return True
            if exc.kind == "ratelimit":
                return counts["ratelimit"] > self.max_rate_limited
            if exc.unreachable and fatal_unavailable:
                # give up before the next wait and attempt (a connect or read timeout, for a host that does not
                # answer) would end past unavailable_after_s
                k = counts["transient"]
                attempt_s = self.timeout
                upcoming = min(self.retry_max_s, self.retry_base_s * 2 ** (k - 1)) + attempt_s
                if time.monotonic() - started + upcoming > self.unavailable_after_s:
                    return True
            return counts["transient"] >= max_attempts

        def wait(rs: tenacity.RetryCallState) -> float:
            exc = rs.outcome.exception()
            if exc.retry_after is not None:
                return exc.retry_after
            k = counts["ratelimit"] if exc.kind == "ratelimit" else counts["transient"]
            base = self.retry_base_s * (2.0 if exc.kind == "ratelimit" else 1.0)
            return min(self.retry_max_s * (4 if exc.kind == "ratelimit" else 1), base * 2 ** (k - 1)) \
                * (0.75 + 0.25 * random.random())

        label = f"{host}" if what is None else f"{self.exchange} {what}"

        def before_sleep(rs: tenacity.RetryCallState) -> None:
            log.debug("%s: %s; retry in %.2f s", label, self._scrub(rs.outcome.exception().reason), rs.upcoming_sleep)

        retrying = tenacity.Retrying(retry=tenacity.retry_if_exception_type(_Retry), stop=stop, wait=wait,
                                     after=after, before_sleep=before_sleep, sleep=self._sleep, reraise=True)
        try:
            return retrying(attempt)
        except _Retry as e:
            with self._lock:
                self._stats["errors"] += 1
            if self._closed.is_set():
                raise SourceError(f"{label}: source closed") from None
            n = counts["ratelimit"] + counts["transient"]
            if fatal_unavailable and e.unreachable:
                raise SourceUnavailable(self._scrub(f"cannot reach {host} ({e.reason}); {_SUGGEST}")) from None
            if fatal_unavailable:
                raise SourceUnavailable(self._scrub(f"{host} failed ({e.reason}, after {n} attempts); {_SUGGEST}")) \
                    from None
            raise SourceError(self._scrub(f"{label}: {e.reason} (after {n} attempts)")) from None
        except _Fatal as e:
            with self._lock:
                self._stats["errors"] += 1
            if fatal_unavailable:
                raise SourceUnavailable(self._scrub(f"{host} refused the request ({e}); {_SUGGEST}")) from None
            raise SourceError(self._scrub(f"{label}: {e}")) from None
        except _Refused as e:
            with self._lock:
                self._stats["errors"] += 1
            raise SourceRefused(str(e)) from None
        except (_Closed, BudgetClosed):
            raise SourceError(f"{label}: source closed") from None

    def _sleep(self, seconds: float) -> None:
        if seconds > 0 and self._closed.wait(seconds):
            raise _Closed()

    def _check_open(self) -> None:
        if self._closed.is_set():
            raise _Closed()

    def _scrub(self, text: str) -> str:
        return text.replace(self._redact, "***") if self._redact else text

    # =========================================================================================== admin
    def stats(self) -> dict:
        """Counters for a progress display: requests (Binance), klines_requests, weight used, retries,
        rate_limited (429s), banned (418s), errors, candles, coingecko_requests, and the budget's state."""
        budget = self._budget.snapshot()
        with self._lock:
            out = dict(self._stats)
        out["weight"] = budget["weight"]
        out["weight_limit"] = budget["limit"]
        out["weight_window_s"] = budget["window_s"]
        out["weight_in_window"] = budget["weight_in_window"]
        out["budget_waits"] = budget["waits"]
        out["paused_s"] = round(budget["paused_s"], 3)
        out["paused"] = budget["paused"]
        return out

    def close(self) -> None:
        """Interrupt every back-off and budget wait, and close the HTTP sessions."""
        self._closed.set()
        self._budget.close()
        with self._lock:
            exchanges, self._exchanges = self._exchanges, []
        for ex in exchanges:
            try:
                ex.session.close()
            except Exception:  # noqa: BLE001 - closing is best effort
                pass
        try:
            self._cg.session.close()
        except Exception:  # noqa: BLE001
            pass


# ============================================================================================= helpers


_ccxt_module = None


def _ccxt():
    """The ccxt module, imported on first use: its import loads every exchange it knows (~0.3 s)."""
    global _ccxt_module
    if _ccxt_module is None:
        import ccxt
        _ccxt_module = ccxt
    return _ccxt_module


def _exchange_meta(exchange: str):
    """A ccxt instance of ``exchange`` that sends nothing, for what ccxt knows of it; ConfigError for an id ccxt
    does not know or an exchange without candles."""
    ccxt = _ccxt()
    if not isinstance(exchange, str) or exchange not in ccxt.exchanges:
        raise ConfigError("exchange", f"ccxt knows no exchange {exchange!r} (e.g. binance, binanceus, okx, bybit, "
                                      "coinbase, kraken, kucoin, gate)")
    meta = getattr(ccxt, exchange)()
    if not meta.has.get("fetchOHLCV"):
        raise ConfigError("exchange", f"{exchange} offers no candles (fetchOHLCV) through ccxt")
    return meta


def _ccxt_host(ex) -> str:
    """The host of an exchange's public REST API as ccxt knows it (for messages)."""
    api = ex.urls.get("api")
    urls = [api] if isinstance(api, str) else [v for v in (api or {}).values() if isinstance(v, str)]
    for url in urls:
        host = urlsplit(url.replace("{hostname}", getattr(ex, "hostname", None) or "")).netloc
        if host:
            return host
    return ex.id


def _host(url: str) -> str:
    parts = urlsplit(url)
    return parts.netloc or url


def _retry_after(headers, cap: float | None) -> float | None:
    value = headers.get("Retry-After") if headers else None
    if value is None:
        return None
    try:
        seconds = max(0.0, float(value))
    except ValueError:
        return None
    return min(seconds, cap) if cap is not None else seconds


def _short(e: BaseException) -> str:
    """A short reason for a network failure: 'connection refused', 'name resolution failed'..."""
    text = str(e)
    for needle, reason in (("Connection refused", "connection refused"),
                           ("Name or service not known", "name resolution failed"),
                           ("Temporary failure in name resolution", "name resolution failed"),
                           ("nodename nor servname", "name resolution failed"),
                           ("getaddrinfo failed", "name resolution failed"),
                           ("Network is unreachable", "network is unreachable"),
                           ("No route to host", "no route to host"),
                           ("timed out", "timed out"),
                           ("Connection reset", "connection reset"),
                           ("RemoteDisconnected", "connection closed without an answer"),
                           ("Remote end closed", "connection closed without an answer"),
                           ("Connection aborted", "connection aborted"),
                           ("Connection broken", "connection broken")):
        if needle in text:
            return reason
    return type(e).__name__


def spot_markets(symbols: list, currency_code: Callable[[str], str]) -> tuple[list[Market], dict[str, str]]:
    """The spot markets of Binance's ``exchangeInfo`` ``symbols`` as ccxt's ``binance.load_markets()`` makes them,
    and each pair's exchange symbol.

    ``pair`` is ccxt's unified ``BASE/QUOTE`` from its currency codes (``currency_code``, see
    :func:`currency_code_of`); a market is active when its status is TRADING and it is not in permission group
    TRD_GRP_003, as ccxt has it; a later duplicate pair replaces an earlier one, as in ccxt's market table.
    Four fields are read per symbol where ccxt parses some forty (a test compares the two): with Binance's ~3,000
    symbols ccxt's parse costs ~0.4 s of CPU in every run, cold or warm, whatever the latency.
    """
    markets: dict[str, Market] = {}
    ids: dict[str, str] = {}
    for entry in symbols:
        if not isinstance(entry, dict) or "contractType" in entry or "underlying" in entry:
            continue  # not a spot market (spot answers have none of these)
        symbol, base_id, quote_id = entry.get("symbol"), entry.get("baseAsset"), entry.get("quoteAsset")
        if not (isinstance(symbol, str) and isinstance(base_id, str) and isinstance(quote_id, str)):
            continue
        base, quote = currency_code(base_id), currency_code(quote_id)
        pair = f"{base}/{quote}"
        permissions = entry.get("permissions")
        active = entry.get("status") == "TRADING" and not (isinstance(permissions, list)
                                                         and "TRD_GRP_003" in permissions)
        markets[pair] = Market(pair=pair, base=base, quote=quote, active=active)
        ids[pair] = symbol
    return list(markets.values()), ids


def currency_code_of(ex) -> Callable[[str], str]:
    """ccxt's code of an exchange asset ("YOYO" -> "YOYOW"), as ``ex.safe_currency_code`` gives it for an exchange
    whose currencies are not loaded (ours never are), without its per-call currency structure (~12 us each)."""
    return lambda asset: ex.common_currency_code(asset.upper())


def _ccxt_message(e: Exception, exchange: str = "binance") -> str:
    """The exchange's own message of a ccxt error ('Invalid symbol.'), else a short form of it (without the
    ``exchange`` id ccxt starts its messages with)."""
    text = str(e)
    m = re.search(r'"msg"\s*:\s*"([^"]*)"', text)
    if m:
        return m.group(1)
    if re.search(r"<(!doctype|html|head|body)\b", text, re.I):
        return "(an HTML page)"  # a proxy's or CDN's error page: its markup says nothing to a reader
    text = " ".join(text.removeprefix(f"{exchange} ").split())
    return text[:200]


def _cg_message(e: Exception) -> str:
    arg = e.args[0] if e.args else None
    if isinstance(arg, dict):
        status = arg.get("status") if isinstance(arg.get("status"), dict) else {}
        return str(status.get("error_message") or arg.get("error") or "")[:200]
    return ""


def _kline_array(raw: list) -> np.ndarray:
    """Fields 0-5 (open time, open, high, low, close, volume) of raw kline rows as an (n, 6) float64 array.

    Column by column, prices through ``float`` (exactly as ``float("0.72270000")``). With ``publicGetKlines`` this
    replaces ccxt's per-row parse (``fetch_ohlcv``): at 150 ms, a 715-page cold run spends ~1.2 s less CPU (a
    quarter of the client's) and ~0.5 s less wall time. Rows of fewer than 6 fields give fewer columns (caught by
    the caller).
    """
    if type(raw[0]) is not list:  # other rows that are not lists fail below (not iterable, or not numbers)
        raise TypeError("not kline rows")
    cols = list(zip(*raw))
    if len(cols) < 6:
        return np.empty((len(raw), len(cols)))
    return np.array([cols[0]] + [list(map(float, cols[k])) for k in range(1, 6)], dtype=np.float64).T.copy()


def _check_page(raw: Any, rows: list | None, since: int, tf: int, grid: int | None) -> tuple[str | None, np.ndarray]:
    """Check a klines page and return ``(problem or None, array of [open_ms, o, h, l, c, v] rows)``.

    The raw body must be a list of kline rows of numbers, finite, with open times strictly increasing, not before
    ``since``, on the grid ``grid + k * tf`` (``None``: the first row's phase), and sane prices (low > 0,
    low <= open, close <= high, volume >= 0). ``rows`` are ccxt's parsed rows when ccxt parsed the page (else the
    raw rows are converted here)."""
    empty = np.empty((0, 6))
    if not isinstance(raw, list):
        return "not a JSON list", empty
    if not raw:
        return None, empty
    try:
        a = np.array(rows, dtype=np.float64) if rows is not None else _kline_array(raw)
    except (TypeError, ValueError, KeyError):
        return "not kline rows of numbers", empty
    if a.ndim != 2 or a.shape[1] != 6 or len(a) != len(raw):
        return "not kline rows" if rows is None else "rows lost in parsing", empty
    if rows is not None and any(r[0] != row[0] for r, row in zip(rows, raw)):  # ccxt sorts what it parses
        return "open times not strictly increasing", empty
    return _check_rows(a, since, tf, grid), a


def _check_rows(a: np.ndarray, since: int, tf: int, grid: int | None) -> str | None:
    """The problem with a page's (n, 6) rows, or None (see :func:`_check_page`)."""
    if not np.all(np.isfinite(a)):
        return "non-finite values"
    t = a[:, 0].astype(np.int64)
    if np.any(np.diff(t) <= 0):
        return "open times not strictly increasing"
    if t[0] < since:
        return "candles before the requested start"
    if np.any((t - (t[0] if grid is None else grid)) % tf != 0):
        return "open times off the timeframe grid"
    o, h, l, c, v = a[:, 1], a[:, 2], a[:, 3], a[:, 4], a[:, 5]
    if np.any(l <= 0) or np.any(v < 0) or np.any(h < np.maximum(o, c)) or np.any(l > np.minimum(o, c)):
        return "inconsistent high/low"
    return None
