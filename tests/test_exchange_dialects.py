"""OKX, Bybit and Binance.US on the local exchange server, as the real ccxt clients see them: spot-only market
loading, 50 weeks of hourly candles paged the way a researcher's loop pages them, late listings, a window ending
mid-candle, each exchange's rate-limit answer and the faults; plus the raw envelopes."""

from __future__ import annotations

import ccxt
import numpy as np
import pytest
import requests

from cryptorsi.sources.exchange_urls import rebase_api_urls
from cryptorsi.testing.exchange_server import ExchangeMarket, ExchangeServer, Faults, synthetic_market

NOW = 1_700_000_000_000 + 1_234_567  # 2023-11-14 22:33:54.567 UTC: mid-candle on every timeframe
H = 3_600_000
D = 24 * H
WEEKS50 = 50 * 7 * D
LISTED = NOW // H * H - 10 * D  # LATE/USDT's first candle: ten days before NOW

EXCHANGES = ["okx", "bybit", "binanceus"]
#: ccxt's options that keep each of the three on public spot endpoints: the same names for all of them
SPOT_ONLY = {"defaultType": "spot", "fetchMarkets": {"types": ["spot"]}, "fetchCurrencies": False}
#: the one request load_markets then sends
MARKETS_REQUEST = {"okx": ("/api/v5/public/instruments", {"instType": "SPOT"}),
                   "bybit": ("/v5/market/instruments-info", {"category": "spot"}),
                   "binanceus": ("/api/v3/exchangeInfo", {})}
#: each exchange's candle endpoint as the server records it, and the page a loop asks for (OKX: its
#: history-candles cap, which is what a 50-week-old window is fetched from)
CANDLES = {"okx": "okx:history-candles", "bybit": "bybit:kline", "binanceus": "klines"}
PAGE = {"okx": 100, "bybit": 1000, "binanceus": 1000}
#: one small candle request per exchange, straight over HTTP
RAW_CANDLES = {
    "okx": ("/api/v5/market/history-candles", {"instId": "BTC-USDT", "bar": "1H", "limit": "3"}),
    "bybit": ("/v5/market/kline", {"category": "spot", "symbol": "BTCUSDT", "interval": "60", "limit": "3"}),
    "binanceus": ("/api/v3/klines", {"symbol": "BTCUSDT", "interval": "1h", "limit": "3"}),
}


@pytest.fixture(scope="module")
def market() -> ExchangeMarket:
    """Five USDT pairs (C003 halted) over 52 weeks, plus LATE/USDT listed ten days before NOW."""
    base = synthetic_market(5, quote="USDT", intervals=("1h", "1d"), weeks=52, now_ms=NOW, break_symbols=("C003",),
                            seed=13)
    frames = {}
    for s in base.symbols:
        for interval, tf in (("1h", H), ("1d", D)):  # with the candle open at NOW: shift the clock past it
            frames[(s["symbol"], interval)] = base.expected_frame(s["symbol"], interval, 0, NOW + tf, now_ms=NOW + tf)
    hourly = frames[("C001USDT", "1h")]
    frames[("LATEUSDT", "1h")] = hourly[hourly.index.as_unit("ms").asi8 >= LISTED]
    symbols = base.symbols + [{"symbol": "LATEUSDT", "base": "LATE", "quote": "USDT", "status": "TRADING"}]
    return ExchangeMarket.from_frames(base.coins, symbols, frames, now_ms=NOW)


def client(name: str, url: str) -> ccxt.Exchange:
    """The real ccxt client, synchronous, its own limiter off, pointed at the server."""
    ex = getattr(ccxt, name)({"enableRateLimit": False, "timeout": 5000, "options": dict(SPOT_ONLY)})
    return rebase_api_urls(ex, url)


def fetch_window(ex: ccxt.Exchange, symbol: str, start: int, end: int, limit: int) -> list[list]:
    """A researcher's loop over hourly candles: pages from ``since`` on, the next one from the last candle + 1
    step; an empty page moves the window on by a page (OKX answers one for a window before a listing) until
    ``end``."""
    rows, since = [], start
    while since < end:
        page = ex.fetch_ohlcv(symbol, "1h", since, limit)
        if page:
            rows += page
            since = page[-1][0] + H
        else:
            since += limit * H
    return rows


def closed(rows: list[list], now: int, tf: int = H) -> list[list]:
    """The candles closed at ``now`` (the page ending mid-candle brings the one still open)."""
    return [r for r in rows if r[0] + tf <= now]


# ------------------------------------------------------------------------------------------ ccxt clients


@pytest.mark.parametrize("name", EXCHANGES)
def test_load_markets_asks_only_the_public_spot_list(name, market):
    with ExchangeServer(market=market) as srv:
        markets = client(name, srv.url).load_markets()
        assert [(r.path, r.params) for r in srv.records] == [MARKETS_REQUEST[name]]
    assert sorted(markets) == sorted(f"{s['base']}/USDT" for s in market.symbols)
    assert {k for k, m in markets.items() if not m["active"]} == {"C003/USDT"}
    assert all(m["spot"] and not m["contract"] for m in markets.values())
    assert markets["BTC/USDT"]["id"] == {"okx": "BTC-USDT"}.get(name, "BTCUSDT")


@pytest.mark.parametrize("name, requests_sent", [("okx", 5), ("bybit", 11), ("binanceus", 1)])
def test_default_options_also_ask_for_derivatives_which_are_empty_here(name, requests_sent, market):
    """Without the spot-only options OKX asks for futures, swaps and options too, Bybit for linear, inverse and
    six option lists; the server has none (Binance.US is spot only by default)."""
    with ExchangeServer(market=market) as srv:
        ex = rebase_api_urls(getattr(ccxt, name)({"enableRateLimit": False, "timeout": 5000}), srv.url)
        assert sorted(ex.load_markets()) == sorted(f"{s['base']}/USDT" for s in market.symbols)
        assert len(srv.records) == requests_sent and all(r.status == 200 for r in srv.records)


@pytest.mark.parametrize("name", EXCHANGES)
def test_fifty_weeks_paged_are_exactly_the_served_candles(name, market):
    start = NOW - WEEKS50
    with ExchangeServer(market=market) as srv:
        ex = client(name, srv.url)
        ex.load_markets()
        rows = fetch_window(ex, "C001/USDT", start, NOW, PAGE[name])
        pages = srv.requests(CANDLES[name])
    times = [r[0] for r in rows]
    assert times == sorted(set(times))  # newest-first pages reordered, no duplicate at page boundaries
    assert times[-1] == NOW // H * H and rows[-1][0] + H > NOW  # the last page ends with the candle still open
    expected = market.expected_frame("C001USDT", "1h", start, NOW, now_ms=NOW)
    got = np.array(closed(rows, NOW), dtype=float)
    assert len(expected) == 50 * 7 * 24 - 1 and len(got) == len(expected)  # no gap invented (both ends mid-candle)
    assert np.array_equal(got[:, 0].astype(np.int64), expected.index.as_unit("ms").asi8)
    assert np.array_equal(got[:, 1:], expected.to_numpy())
    assert len(pages) == -(-len(rows) // PAGE[name]) and all(r.status == 200 for r in pages)
    if name == "okx":  # a 2023 window is older than 1,440 candles: ccxt goes to history-candles, 100 at a time
        assert srv.count("okx:candles") == 0 and {r.params["limit"] for r in pages} == {"100"}


@pytest.mark.parametrize("name", EXCHANGES)
def test_a_late_listing_starts_at_its_first_candle(name, market):
    with ExchangeServer(market=market) as srv:
        ex = client(name, srv.url)
        ex.load_markets()
        rows = closed(fetch_window(ex, "LATE/USDT", NOW - WEEKS50, NOW, PAGE[name]), NOW)
    expected = market.expected_frame("LATEUSDT", "1h", NOW - WEEKS50, NOW, now_ms=NOW)
    assert rows[0][0] == LISTED and len(rows) == len(expected) == 240
    assert np.array_equal(np.array(rows)[:, 1:], expected.to_numpy())


@pytest.mark.parametrize("name", EXCHANGES)
def test_second_run_asks_only_for_the_tail(name, market):
    """What the incremental cache relies on: a page from the last stored candle + 1 step brings only the rest."""
    with ExchangeServer(market=market) as srv:
        ex = client(name, srv.url)
        ex.load_markets()
        since = NOW // H * H - 5 * H
        rows = ex.fetch_ohlcv("C002/USDT", "1h", since, PAGE[name])
    assert [r[0] for r in rows] == [since + k * H for k in range(6)]


def test_okx_history_page_larger_than_its_cap_skips_candles_in_a_since_loop(market):
    """ccxt 4.5 asks history-candles for ``limit`` up to 300 and a window of ``limit`` candles; where OKX caps
    the page at 100 it returns the newest 100 of that window, so stepping from the last candle skips 200."""
    since = NOW - WEEKS50
    with ExchangeServer(market=market) as srv:
        ex = client("okx", srv.url)
        ex.load_markets()
        page = ex.fetch_ohlcv("C001/USDT", "1h", since, 300)
        assert srv.requests("okx:history-candles")[0].params["limit"] == "300"
    assert len(page) == 100 and page[0][0] == since // H * H + H + 200 * H
    with ExchangeServer(market=market, okx_history_limit=300) as srv:  # ccxt's belief: 300 on both endpoints
        ex = client("okx", srv.url)
        ex.load_markets()
        assert len(ex.fetch_ohlcv("C001/USDT", "1h", since, 300)) == 300


def test_okx_after_cursor_walks_back_without_repeats(market):
    """OKX's own paging: ``until`` (sent as ``after``, exclusive) = the oldest candle received, until a page is
    empty; it needs no page size and no listing date, whatever the cap."""
    with ExchangeServer(market=market) as srv:
        ex = client("okx", srv.url)
        ex.load_markets()
        rows, until = [], NOW
        while page := ex.fetch_ohlcv("LATE/USDT", "1h", None, 100, {"until": until, "type": "HistoryCandles"}):
            rows = page + rows
            until = page[0][0]
        assert srv.count("okx:history-candles") == 4  # 241 candles (the open one too), then an empty page
    expected = market.expected_frame("LATEUSDT", "1h", 0, NOW, now_ms=NOW)
    assert [r[0] for r in closed(rows, NOW)] == list(expected.index.as_unit("ms").asi8)


def test_okx_recent_candles_endpoint_and_its_utc_daily_bar(market):
    with ExchangeServer(market=market) as srv:
        ex = client("okx", srv.url)
        ex.load_markets()
        rows = ex.fetch_ohlcv("BTC/USDT", "1d", NOW - 30 * D, 300, {"type": "Candles"})
        req = srv.requests("okx:candles")[0]
    assert req.params["bar"] == "1Dutc"  # ccxt's UTC timezone option: daily candles open at 00:00 UTC
    expected = market.expected_frame("BTCUSDT", "1d", NOW - 30 * D, NOW, now_ms=NOW)
    assert [r[0] for r in closed(rows, NOW, D)] == list(expected.index.as_unit("ms").asi8)


# ------------------------------------------------------------------------------------------ rate limits and faults


@pytest.mark.parametrize("name, limits, status", [
    ("okx", {"okx:history-candles": (2, 3600.0)}, 429),  # code 50011
    ("bybit", {"bybit:kline": (2, 3600.0)}, 200),  # retCode 10006
    ("bybit", {"bybit": (3, 3600.0)}, 403),  # the per-IP limit (load_markets counted)
])
def test_each_exchange_answers_over_its_budget(name, limits, status, market):
    with ExchangeServer(market=market, request_limits=limits) as srv:
        ex = client(name, srv.url)
        ex.load_markets()
        for _ in range(2):
            assert ex.fetch_ohlcv("BTC/USDT", "1h", NOW - 10 * H, 5)
        with pytest.raises(ccxt.RateLimitExceeded):
            ex.fetch_ohlcv("BTC/USDT", "1h", NOW - 10 * H, 5)
        assert srv.records[-1].status == status


def test_binanceus_rate_limit_answer_is_another_ccxt_error(market):
    """ccxt raises DDoSProtection for Binance's HTTP 429 (and 418), RateLimitExceeded for OKX's and Bybit's
    answers: in ccxt 4.5 neither is a subclass of the other (both are NetworkErrors)."""
    with ExchangeServer(market=market, faults=Faults(script={"klines": {0: "429"}})) as srv:
        ex = client("binanceus", srv.url)
        ex.load_markets()
        with pytest.raises(ccxt.DDoSProtection):
            ex.fetch_ohlcv("BTC/USDT", "1h", NOW - 10 * H, 5)
    assert not issubclass(ccxt.DDoSProtection, ccxt.RateLimitExceeded)
    assert not issubclass(ccxt.RateLimitExceeded, ccxt.DDoSProtection)


@pytest.mark.parametrize("name", EXCHANGES)
def test_faults_as_ccxt_sees_them(name, market):
    script = {CANDLES[name]: {0: "503", 1: "reset", 2: "malformed", 3: "nonmonotonic"}}
    with ExchangeServer(market=market, faults=Faults(script=script)) as srv:
        ex = client(name, srv.url)
        ex.load_markets()

        def page():
            return ex.fetch_ohlcv("C001/USDT", "1h", NOW - 10 * H, 5)

        with pytest.raises(ccxt.ExchangeNotAvailable):  # 5xx
            page()
        with pytest.raises(ccxt.NetworkError):  # connection reset
            page()
        # a truncated body is not JSON: ccxt hands the text to the parser, which finds no rows. No exception:
        # a caller that wants to tell a malformed page from the end of a series must read the raw answer.
        assert page() == []
        swapped = page()  # ccxt sorts rows by time, so swapped rows pass unseen
        assert [r[0] for r in swapped] == sorted(r[0] for r in swapped) and len(swapped) == 5
        assert page()  # the script is over
        assert [r.fault for r in srv.requests(CANDLES[name])][:4] == ["503", "reset", "malformed", "nonmonotonic"]


@pytest.mark.parametrize("name, error", [("okx", ccxt.BadSymbol), ("bybit", ccxt.BadRequest),
                                         ("binanceus", ccxt.BadSymbol)])
def test_failing_symbols_and_random_faults_reach_every_exchange(name, error, market):
    faults = Faults(fail_symbols=("C002USDT",), fail_status=400)
    with ExchangeServer(market=market, faults=faults) as srv:
        ex = client(name, srv.url)
        ex.load_markets()
        with pytest.raises(error):
            ex.fetch_ohlcv("C002/USDT", "1h", NOW - 10 * H, 5)
        assert len(ex.fetch_ohlcv("C001/USDT", "1h", NOW - 10 * H, 5)) == 5

    def statuses(seed):
        with ExchangeServer(market=market, faults=Faults(seed=seed, error_rate=0.5, endpoints=("klines",))) as srv:
            for _ in range(12):
                requests.get(srv.url + RAW_CANDLES[name][0], params=RAW_CANDLES[name][1], timeout=5)
            return [r.status for r in srv.records]

    assert statuses(1) == statuses(1) and {200} < set(statuses(1))


# ------------------------------------------------------------------------------------------ raw envelopes


def test_okx_envelopes(market):
    with ExchangeServer(market=market) as srv:
        def get(path, **params):
            r = requests.get(srv.url + path, params=params, timeout=5)
            return r.status_code, r.json()

        status, body = get("/api/v5/market/candles", instId="BTC-USDT", bar="1H", limit="3")
        assert status == 200 and list(body) == ["code", "msg", "data"] and body["code"] == "0"
        rows = body["data"]
        open_candle = NOW // H * H
        assert [int(r[0]) for r in rows] == [open_candle, open_candle - H, open_candle - 2 * H]  # newest first
        assert all(len(r) == 9 and all(isinstance(x, str) for x in r) for r in rows)
        assert [r[8] for r in rows] == ["0", "1", "1"]  # confirm: the open candle is "0"
        # after/before are exclusive cursors; a page is the newest `limit` candles between them
        status, body = get("/api/v5/market/history-candles", instId="BTC-USDT", bar="1H", limit="2",
                           after=str(open_candle - 10 * H), before=str(open_candle - 20 * H))
        assert [int(r[0]) for r in body["data"]] == [open_candle - 11 * H, open_candle - 12 * H]
        assert len(get("/api/v5/market/history-candles", instId="BTC-USDT", bar="1H", limit="500")[1]["data"]) == 100
        assert len(get("/api/v5/market/candles", instId="BTC-USDT", bar="1H", limit="500")[1]["data"]) == 300
        old = str(open_candle - 2000 * H)
        assert get("/api/v5/market/candles", instId="BTC-USDT", bar="1H", after=old)[1]["data"] == []  # > 1,440 back
        assert len(get("/api/v5/market/history-candles", instId="BTC-USDT", bar="1H", after=old)[1]["data"]) == 100
        assert get("/api/v5/market/candles", instId="NOPE-USDT", bar="1H") == (
            200, {"code": "51001", "msg": "Instrument ID does not exist", "data": []})
        assert get("/api/v5/market/candles", instId="BTC-USDT", bar="1D")[1]["code"] == "51000"  # HK-aligned
        status, body = get("/api/v5/public/instruments", instType="SPOT")
        states = {i["instId"]: i["state"] for i in body["data"]}
        assert states["C003-USDT"] == "suspend" and states["BTC-USDT"] == "live"
        assert get("/api/v5/public/instruments", instType="SWAP")[1]["data"] == []
        assert get("/api/v5/public/time")[1] == {"code": "0", "msg": "", "data": [{"ts": str(NOW)}]}
    with ExchangeServer(market=market, request_limits={"okx": (1, 3600.0)}) as srv:
        requests.get(srv.url + "/api/v5/public/time", timeout=5)
        r = requests.get(srv.url + "/api/v5/public/time", timeout=5)
        assert (r.status_code, r.json()) == (429, {"code": "50011", "msg": "Too Many Requests", "data": []})
        assert srv.count("okx:time") == 2


def test_bybit_envelopes(market):
    with ExchangeServer(market=market) as srv:
        def get(path, **params):
            r = requests.get(srv.url + path, params=params, timeout=5)
            assert r.status_code == 200
            return r.json()

        body = get("/v5/market/kline", category="spot", symbol="BTCUSDT", interval="60", limit="3")
        assert list(body) == ["retCode", "retMsg", "result", "retExtInfo", "time"] and body["retCode"] == 0
        assert body["result"]["symbol"] == "BTCUSDT" and body["result"]["category"] == "spot"
        rows = body["result"]["list"]
        open_candle = NOW // H * H
        assert [int(r[0]) for r in rows] == [open_candle, open_candle - H, open_candle - 2 * H]  # newest first
        assert all(len(r) == 7 and all(isinstance(x, str) for x in r) for r in rows)
        start = open_candle - 100 * H
        page = get("/v5/market/kline", category="spot", symbol="BTCUSDT", interval="60", start=str(start + 1),
                   end=str(start + 3 * H), limit="1000")["result"]["list"]
        assert [int(r[0]) for r in page] == [start + k * H for k in (3, 2, 1, 0)]  # inclusive; start's candle in
        btc = {"category": "spot", "symbol": "BTCUSDT", "interval": "60"}
        assert len(get("/v5/market/kline", **btc)["result"]["list"]) == 200  # the default page
        assert len(get("/v5/market/kline", **btc, limit="5000")["result"]["list"]) == 1000  # the cap
        assert get("/v5/market/kline", symbol="BTCUSDT", interval="60")["retCode"] == 10001  # category: linear
        nope = get("/v5/market/kline", category="spot", symbol="NOPEUSDT", interval="60")
        assert (nope["retCode"], nope["retMsg"]) == (10001, "Not supported symbols")
        info = get("/v5/market/instruments-info", category="spot")["result"]
        statuses = {i["symbol"]: i["status"] for i in info["list"]}
        assert info["category"] == "spot" and statuses["C003USDT"] == "Closed" and statuses["BTCUSDT"] == "Trading"
        assert get("/v5/market/time")["result"]["timeSecond"] == str(NOW // 1000)
    with ExchangeServer(market=market, request_limits={"bybit:time": (1, 3600.0), "bybit": (2, 3600.0)}) as srv:
        url = srv.url + "/v5/market/time"
        assert requests.get(url, timeout=5).json()["retCode"] == 0
        limited = requests.get(url, timeout=5)
        assert limited.status_code == 200 and limited.json()["retCode"] == 10006
        assert limited.json()["retMsg"] == "Too many visits!"
        assert NOW < int(limited.headers["X-Bapi-Limit-Reset-Timestamp"]) <= NOW + 3600_000  # the exchange's clock
        banned = requests.get(url, timeout=5)
        assert (banned.status_code, banned.text) == (403, "access too frequent")


@pytest.mark.parametrize("name, time_path", [("okx", "/api/v5/public/time"), ("bybit", "/v5/market/time")])
def test_adjust_for_time_difference_reads_the_server_clock(name, time_path, market):
    with ExchangeServer(market=market) as srv:
        ex = client(name, srv.url)
        ex.options["adjustForTimeDifference"] = True
        ex.load_markets()
        assert [r.path for r in srv.records] == [time_path, MARKETS_REQUEST[name][0]]
        assert ex.fetch_time() == NOW
