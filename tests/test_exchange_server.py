"""The local Binance/CoinGecko server: wire formats (as the real ccxt and pycoingecko parse them), paging
semantics, the weight budget (429, then 418 for a client that keeps calling), fault injection and its records."""

from __future__ import annotations

import json
import socket
import threading
import time

import ccxt
import numpy as np
import pytest
import requests
from pycoingecko import CoinGeckoAPI

from cryptorsi.market import TIMEFRAMES
from cryptorsi.testing.exchange_server import ExchangeMarket, ExchangeServer, Faults, synthetic_market

NOW = 1_700_000_000_000 + 1_234_567  # 2023-11-14 22:33:54.567 UTC: mid-candle for every timeframe
H = 3_600_000

SYMBOL_KEYS = [
    "symbol", "status", "baseAsset", "baseAssetPrecision", "quoteAsset", "quotePrecision", "quoteAssetPrecision",
    "baseCommissionPrecision", "quoteCommissionPrecision", "orderTypes", "icebergAllowed", "ocoAllowed",
    "quoteOrderQtyMarketAllowed", "allowTrailingStop", "cancelReplaceAllowed", "isSpotTradingAllowed",
    "isMarginTradingAllowed", "filters", "permissions", "defaultSelfTradePreventionMode",
    "allowedSelfTradePreventionModes",
]
FILTER_TYPES = ["PRICE_FILTER", "LOT_SIZE", "ICEBERG_PARTS", "MARKET_LOT_SIZE", "TRAILING_DELTA",
                "PERCENT_PRICE_BY_SIDE", "NOTIONAL", "MAX_NUM_ORDERS", "MAX_NUM_ALGO_ORDERS"]
COIN_KEYS = [
    "id", "symbol", "name", "image", "current_price", "market_cap", "market_cap_rank", "fully_diluted_valuation",
    "total_volume", "high_24h", "low_24h", "price_change_24h", "price_change_percentage_24h",
    "market_cap_change_24h", "market_cap_change_percentage_24h", "circulating_supply", "total_supply",
    "max_supply", "ath", "ath_change_percentage", "ath_date", "atl", "atl_change_percentage", "atl_date", "roi",
    "last_updated",
]


@pytest.fixture(scope="module")
def market():
    return synthetic_market(8, intervals=("1h", "1d", "1w"), weeks=60, now_ms=NOW, break_symbols=("C003",),
                            unlisted=("C005",), extra_coins=4, seed=7)


@pytest.fixture
def server(market):
    with ExchangeServer(market=market) as srv:
        yield srv


def spot_binance(url: str, **config) -> ccxt.binance:
    ex = ccxt.binance({"enableRateLimit": False, "timeout": 5000, **config,
                       "options": {"defaultType": "spot", "fetchMarkets": {"types": ["spot"]},
                                   "fetchCurrencies": False}})
    for key, value in list(ex.urls["api"].items()):
        if isinstance(value, str):
            ex.urls["api"][key] = value.replace("https://api.binance.com", url)
    return ex


def get(server, path, **params):
    return requests.get(server.url + path, params=params, timeout=5)


# ------------------------------------------------------------------------------------------ Binance wire format


def test_exchange_info_wire_format_and_ccxt_parsing(server, market):
    body = get(server, "/api/v3/exchangeInfo").json()
    assert list(body)[:5] == ["timezone", "serverTime", "rateLimits", "exchangeFilters", "symbols"]
    assert body["serverTime"] == NOW
    weight = [r for r in body["rateLimits"] if r["rateLimitType"] == "REQUEST_WEIGHT"]
    assert weight == [{"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000}]
    symbols = body["symbols"]
    assert len(symbols) == len(market.symbols) == 7
    for s in symbols:
        assert all(k in s for k in SYMBOL_KEYS), set(SYMBOL_KEYS) - set(s)
        assert [f["filterType"] for f in s["filters"]] == FILTER_TYPES
        assert isinstance(s["permissionSets"], list) and isinstance(s["permissionSets"][0], list)
        tick = float(s["filters"][0]["tickSize"])
        assert 0 < tick <= 0.01 and isinstance(s["filters"][0]["tickSize"], str)
    statuses = {s["symbol"]: s["status"] for s in symbols}
    assert statuses["C003USDC"] == "BREAK" and statuses["BTCUSDC"] == "TRADING"

    ex = spot_binance(server.url)
    markets = ex.load_markets()
    assert sorted(markets) == sorted(f"{s['baseAsset']}/USDC" for s in symbols)
    assert markets["BTC/USDC"]["active"] is True and markets["C003/USDC"]["active"] is False
    assert all(m["spot"] and not m["contract"] for m in markets.values())
    assert markets["BTC/USDC"]["precision"]["price"] == float(symbols[0]["filters"][0]["tickSize"])
    assert [r.path for r in server.records] == ["/api/v3/exchangeInfo"] * 2  # ccxt, spot only: no fapi/dapi


def test_klines_rows_have_binance_wire_types(server, market):
    r = get(server, "/api/v3/klines", symbol="BTCUSDC", interval="1h", startTime=NOW - 30 * H, limit=5)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("application/json")
    rows = r.json()
    assert len(rows) == 5
    for row in rows:
        assert len(row) == 12
        assert [type(x) for x in row] == [int, str, str, str, str, str, int, str, int, str, str, str]
        assert row[6] == row[0] + H - 1 and row[11] == "0"
        assert all(len(x.split(".")[1]) == 8 for x in row[1:6])
        o, h, lo, c = map(float, row[1:5])
        assert lo <= min(o, c) <= max(o, c) <= h
    assert np.all(np.diff([row[0] for row in rows]) == H)
    assert rows[0][0] == (NOW - 30 * H) // H * H + H  # first open time >= startTime


def test_klines_paging_semantics(server):
    def times(**params):
        return [row[0] for row in get(server, "/api/v3/klines", symbol="BTCUSDC", interval="1h", **params).json()]

    assert len(times()) == 500  # default limit
    assert len(times(limit=5000)) == 1000  # at most 1000
    latest = times(limit=3)
    open_candle = NOW // H * H
    assert latest == [open_candle - 2 * H, open_candle - H, open_candle]  # the still-open candle is served last
    start = open_candle - 10 * H
    assert times(startTime=start, endTime=start + 3 * H) == [start, start + H, start + 2 * H, start + 3 * H]
    assert times(startTime=start + 1, limit=2) == [start + H, start + 2 * H]
    assert times(endTime=start, limit=2) == [start - H, start]
    assert times(startTime=open_candle + H) == []  # after the end: an empty page
    weekly = get(server, "/api/v3/klines", symbol="BTCUSDC", interval="1w", limit=3).json()
    assert all(time.gmtime(row[0] / 1000).tm_wday == 0 for row in weekly)  # weekly candles open on Mondays


def test_klines_errors_as_binance_answers_them(server):
    r = get(server, "/api/v3/klines", symbol="NOPEUSDC", interval="1h")
    assert (r.status_code, r.json()) == (400, {"code": -1121, "msg": "Invalid symbol."})
    r = get(server, "/api/v3/klines", symbol="BTCUSDC", interval="7h")
    assert (r.status_code, r.json()["code"]) == (400, -1120)
    r = get(server, "/api/v3/klines", interval="1h")
    assert (r.status_code, r.json()["code"]) == (400, -1102)
    ex = spot_binance(server.url)
    ex.load_markets()
    with pytest.raises(ccxt.BadSymbol):
        ex.publicGetKlines({"symbol": "NOPEUSDC", "interval": "1h"})


def test_ping_time_and_weight_headers(server):
    assert get(server, "/api/v3/ping").json() == {}
    assert get(server, "/api/v3/time").json() == {"serverTime": NOW}
    r1 = get(server, "/api/v3/klines", symbol="BTCUSDC", interval="1d", limit=1)
    r2 = get(server, "/api/v3/exchangeInfo")
    assert int(r2.headers["X-MBX-USED-WEIGHT-1M"]) - int(r1.headers["X-MBX-USED-WEIGHT-1M"]) == 20
    assert [r.weight for r in server.records] == [1, 1, 2, 20]


def test_ccxt_fetch_ohlcv_reads_the_served_candles(server, market):
    ex = spot_binance(server.url)
    ex.load_markets()
    start = NOW - 100 * H
    rows = ex.fetch_ohlcv("C001/USDC", "1h", start, 1000)
    expected = market.expected_frame("C001USDC", "1h", start, NOW + H, now_ms=NOW + H)  # incl. the open one
    assert len(rows) == len(expected) == 100
    assert [r[0] for r in rows] == list(expected.index.as_unit("ms").asi8)
    assert np.array_equal(np.array(rows)[:, 1:], expected.to_numpy())


# ------------------------------------------------------------------------------------------ weight budget


def test_over_budget_429_with_retry_after_then_418_for_a_client_that_keeps_calling(market, clock):
    with ExchangeServer(market=market, weight_limit=10, weight_window_s=10.0, ban_grace_s=0.2, ban_s=30,
                        clock=clock) as srv:
        statuses = []
        for _ in range(6):
            statuses.append(get(srv, "/api/v3/klines", symbol="BTCUSDC", interval="1d", limit=1))
            clock.advance(0.5)  # the window opened with the first request: 3 s of it are gone after the 6th
        assert [r.status_code for r in statuses] == [200] * 5 + [429]
        limited = statuses[-1]
        assert limited.headers["Retry-After"] == "8"  # seconds to the window's end, rounded up (7.5)
        assert limited.json()["code"] == -1003 and "current limit is 10 request weight per 10 SECOND" in \
            limited.json()["msg"]
        assert limited.headers["X-MBX-USED-WEIGHT-10S"] == "12"
        clock.advance(0.1)  # 0.6 s after the 429, past the 0.2 s grace: calling again during the back-off is banned
        r = get(srv, "/api/v3/ping")
        assert r.status_code == 418 and int(r.headers["Retry-After"]) == 30
        clock.advance(29.0)
        assert get(srv, "/api/v3/ping").status_code == 418
        clock.advance(1.5)  # the ban is over
        assert get(srv, "/api/v3/ping").status_code == 200
        assert srv.n418 == 2 and srv.n429 == 1
        assert [r.window for r in srv.records] == [0] * 7 + [-1, 3]  # a request refused in a ban is not counted


def test_a_client_that_honours_retry_after_is_not_banned(market, clock):
    with ExchangeServer(market=market, weight_limit=10, weight_window_s=10.0, ban_grace_s=0.2, clock=clock) as srv:
        for _ in range(5):
            assert get(srv, "/api/v3/ping").status_code == 200
        clock.advance(4.0)
        limited = get(srv, "/api/v3/exchangeInfo")  # 25 > 10
        assert limited.status_code == 429 and limited.headers["Retry-After"] == "6"
        clock.advance(0.1)
        assert get(srv, "/api/v3/ping").status_code == 429  # within the grace: still only 429
        clock.advance(6.0)  # the next window
        r = get(srv, "/api/v3/ping")
        assert r.status_code == 200 and r.headers["X-MBX-USED-WEIGHT-10S"] == "1"
        assert srv.n418 == 0 and [r.window for r in srv.records] == [0] * 7 + [1]


def test_budget_resets_with_the_window_and_advertises_itself(market, clock):
    with ExchangeServer(market=market, weight_limit=4, weight_window_s=1.0, clock=clock) as srv:
        info = get(srv, "/api/v3/exchangeInfo")  # weight 20 > 4: refused
        assert info.status_code == 429
        retry = int(info.headers["Retry-After"])
        assert retry == 1
        clock.advance(retry)
        assert get(srv, "/api/v3/ping").status_code == 200
        assert srv.n418 == 0
    with ExchangeServer(market=market, weight_limit=200, weight_window_s=2.0) as srv:
        limits = get(srv, "/api/v3/exchangeInfo").json()["rateLimits"]
        assert limits[0] == {"rateLimitType": "REQUEST_WEIGHT", "interval": "SECOND", "intervalNum": 2, "limit": 200}


def test_weight_windows_open_with_the_first_request_whatever_the_clock_says(market, clock):
    """Binance's windows are the clock's minutes; the server's open with its first request, so a test that
    starts 1 s before a minute ends still has the whole minute (and a new client after reset_budget() too)."""
    clock.advance(59.0 - clock() % 60)  # 1 s before a minute of the clock ends
    with ExchangeServer(market=market, clock=clock) as srv:
        for _ in range(3):
            r = get(srv, "/api/v3/exchangeInfo")
            clock.advance(0.9)
        assert r.headers["X-MBX-USED-WEIGHT-1M"] == "60"
        clock.advance(60.0)
        assert get(srv, "/api/v3/ping").headers["X-MBX-USED-WEIGHT-1M"] == "1"
        srv.reset_budget()
        clock.advance(0.5)
        assert get(srv, "/api/v3/ping").headers["X-MBX-USED-WEIGHT-1M"] == "1"
        assert [r.window for r in srv.records] == [0, 0, 0, 1, 0]
        assert [round(r.t - srv.records[0].t, 6) for r in srv.records] == [0.0, 0.9, 1.8, 62.7, 63.2]


# ------------------------------------------------------------------------------------------ CoinGecko


def test_coins_markets_wire_format_paging_and_pycoingecko(server, market):
    cg = CoinGeckoAPI()
    cg.api_base_url = server.url + "/api/v3/"
    page1 = cg.get_coins_markets("usd", order="market_cap_desc", per_page=5, page=1)
    page2 = cg.get_coins_markets("usd", per_page=5, page=2)
    past = cg.get_coins_markets("usd", per_page=5, page=4)
    assert len(page1) == 5 and len(page2) == 5 and past == []
    items = page1 + page2
    assert all(list(item) == COIN_KEYS for item in items)
    assert [item["market_cap_rank"] for item in items] == list(range(1, 11))
    caps = [item["market_cap"] for item in items]
    assert caps == sorted(caps, reverse=True) and all(isinstance(c, int) for c in caps)
    assert items[0]["id"] == "bitcoin" and items[0]["symbol"] == "btc"
    assert any(item["roi"] is None for item in items) and any(item["max_supply"] is None for item in items)
    assert any(isinstance(item["roi"], dict) and set(item["roi"]) == {"times", "currency", "percentage"}
               for item in items)
    assert items[0]["ath_date"].endswith("Z")
    assert len(cg.get_coins_markets("usd", per_page=1000)) == len(market.coins)  # per_page capped at 250
    r = get(server, "/api/v3/coins/markets")
    assert r.status_code == 400


def test_coingecko_429_on_first_calls_as_pycoingecko_sees_it(market):
    with ExchangeServer(market=market, faults=Faults(coingecko_429_first=2, coingecko_retry_after=7)) as srv:
        cg = CoinGeckoAPI()
        cg.api_base_url = srv.url + "/api/v3/"
        for _ in range(2):
            with pytest.raises(ValueError) as info:
                cg.get_coins_markets("usd")
            assert info.value.args[0]["status"]["error_code"] == 429
        assert len(cg.get_coins_markets("usd")) == len(market.coins)
        assert [(r.status, r.headers.get("user-agent", "")[:15]) for r in srv.records][0] == (429, "python-requests")
        r = get(srv, "/api/v3/coins/markets", vs_currency="usd")
        assert r.status_code == 200


def test_coin_overrides_and_null_market_caps():
    market = ExchangeMarket(coins=[{"id": "a", "symbol": "a", "name": "A", "market_cap": None},
                                   {"id": "b", "symbol": "b", "name": "B", "market_cap": 5.0, "roi": None},
                                   {"id": None, "symbol": "c", "name": "C", "market_cap": 9.0}], now_ms=NOW)
    with ExchangeServer(market=market) as srv:
        items = get(srv, "/api/v3/coins/markets", vs_currency="usd").json()
    assert [(i["id"], i["market_cap"], i["market_cap_rank"]) for i in items] == [(None, 9, 1), ("b", 5, 2),
                                                                                 ("a", None, None)]


# ------------------------------------------------------------------------------------------ faults


def test_scripted_faults_as_clients_see_them(market):
    faults = Faults(script={"klines": {0: "503", 1: "reset", 2: "malformed", 3: "nonmonotonic", 4: "empty",
                                       5: "slow"}}, slow_s=3600.0)
    before = set(threading.enumerate())
    with ExchangeServer(market=market, faults=faults) as srv:
        params = dict(symbol="BTCUSDC", interval="1h", limit=10)
        assert get(srv, "/api/v3/klines", **params).status_code == 503
        with pytest.raises(requests.ConnectionError):
            get(srv, "/api/v3/klines", **params)
        body = get(srv, "/api/v3/klines", **params).text
        with pytest.raises(json.JSONDecodeError):
            json.loads(body)
        swapped = [row[0] for row in get(srv, "/api/v3/klines", **params).json()]
        assert swapped != sorted(swapped) and sorted(swapped) == swapped[:4] + [swapped[5], swapped[4]] + swapped[6:]
        assert get(srv, "/api/v3/klines", **params).json() == []
        with pytest.raises(requests.Timeout):
            requests.get(srv.url + "/api/v3/klines", params=params, timeout=0.3)
        assert get(srv, "/api/v3/klines", **params).status_code == 200  # the script is over
    # stop() interrupts the slow answer still waiting (an hour): every thread of the server ends
    for thread in set(threading.enumerate()) - before:
        thread.join(60)
        assert not thread.is_alive(), thread.name
    faults_seen = [r.fault for r in srv.records]  # the slow answer is recorded when it finally goes out
    assert faults_seen[:5] == ["503", "reset", "malformed", "nonmonotonic", "empty"]
    assert sorted(faults_seen[5:], key=str) == [None, "slow"]
    assert [r.status for r in srv.records][:2] == [503, 0]


def test_failing_symbol_latency_and_request_records(market):
    faults = Faults(fail_symbols=("C001USDC",), fail_status=500, latency_s=0.05)
    with ExchangeServer(market=market, faults=faults) as srv:
        t0 = time.monotonic()
        assert get(srv, "/api/v3/klines", symbol="C001USDC", interval="1h").status_code == 500
        assert time.monotonic() - t0 >= 0.05
        assert get(srv, "/api/v3/klines", symbol="C002USDC", interval="1h").status_code == 200
        requests.get(srv.url + "/api/v3/klines", params={"symbol": "C002USDC", "interval": "1d"},
                     headers={"X-Test": "yes"}, timeout=5)
        assert srv.count("klines", symbol="C002USDC") == 2
        assert srv.count("klines", symbol="C002USDC", interval="1d") == 1
        assert srv.requests("klines", interval="1d")[0].headers["x-test"] == "yes"
        assert srv.status_count(500) == 1
        get(srv, "/fapi/v1/exchangeInfo")
        assert srv.requests("/fapi/v1/exchangeInfo")[0].status == 404


def test_random_faults_are_deterministic_for_a_seed(market):
    def run(seed):
        faults = Faults(seed=seed, error_rate=0.2, malformed_rate=0.1, empty_rate=0.1, endpoints=("klines",))
        with ExchangeServer(market=market, faults=faults) as srv:
            for _ in range(40):
                get(srv, "/api/v3/klines", symbol="BTCUSDC", interval="1d", limit=2)
            return [(r.fault, r.status) for r in srv.records]

    first = run(3)
    assert first == run(3) != run(4)
    kinds = {f for f, _ in first}
    assert {"error", "malformed", "empty", None} <= kinds
    assert all(status >= 500 for f, status in first if f == "error")


def test_market_from_candle_frames(market):
    frame = market.expected_frame("BTCUSDC", "1d", NOW - 30 * 24 * H, NOW, now_ms=NOW)
    copy = ExchangeMarket.from_frames(coins=market.coins[:1], symbols=market.symbols[:1],
                                      frames={("BTCUSDC", "1d"): frame}, now_ms=NOW)
    assert copy.expected_frame("BTCUSDC", "1d", 0, NOW).equals(frame)


def test_candles_fn_market_and_start_stop(market):
    def candles_fn(symbol, interval, start, end):
        tf = TIMEFRAMES[interval]
        first = -(-start // tf) * tf
        return [[t, 1.0, 2.0, 0.5, 1.5, 10.0] for t in range(first, end, tf)]

    fn_market = ExchangeMarket(coins=[], symbols=[{"base": "AAA", "quote": "USDC"}], candles_fn=candles_fn,
                               now_ms=NOW)
    srv = ExchangeServer(market=fn_market).start()
    try:
        rows = get(srv, "/api/v3/klines", symbol="AAAUSDC", interval="1h", startTime=NOW - 5 * H).json()
        assert [r[0] for r in rows] == [NOW // H * H - k * H for k in range(4, -1, -1)]
        assert rows[0][1:6] == ["1.00000000", "2.00000000", "0.50000000", "1.50000000", "10.00000000"]
        assert len(get(srv, "/api/v3/klines", symbol="AAAUSDC", interval="1h", limit=7).json()) == 7
    finally:
        srv.stop()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", srv.port), timeout=1).close()
    srv.stop()  # idempotent


# ------------------------------------------------------------------------------------------ the sample market served


def test_sample_market_serves_the_sample_candles_with_its_quirks():
    from cryptorsi.sources.sample import SAMPLE_END_MS, SampleSource
    from cryptorsi.market import Market
    from cryptorsi.testing.exchange_server import SAMPLE_NOW_MS, _encode_row, _encode_rows, sample_market

    D = 24 * H
    market = sample_market(12, intervals=("1d",), weeks=10, quotes=("USDT",), break_pairs=("ETH/USDT",),
                           listed_ms={"AETH/USDT": SAMPLE_END_MS - 20 * D},
                           halted_ms={"APEX/USDT": SAMPLE_END_MS - 5 * D})
    assert market.now() == SAMPLE_NOW_MS and len(market.coins) == 12
    symbols = {s["symbol"]: s for s in market.symbols}
    assert {s["quote"] for s in market.symbols} == {"USDT"} and "BASAUSDT" not in symbols  # no pair on the sample
    assert symbols["ETHUSDT"]["status"] == "BREAK" and symbols["BTCUSDT"]["status"] == "TRADING"
    sample = SampleSource()
    btc = market.expected_frame("BTCUSDT", "1d", 0, SAMPLE_END_MS)
    want = sample.candles(Market("BTC/USDT", "BTC", "USDT"), "1d", SAMPLE_END_MS - 70 * D, SAMPLE_END_MS)
    assert len(btc) == 70 and btc.index.equals(want.index)
    np.testing.assert_allclose(btc.to_numpy(), want.to_numpy(), rtol=1e-7)  # through 8-decimal wire strings
    assert len(market.expected_frame("AETHUSDT", "1d", 0, SAMPLE_END_MS)) == 20
    assert len(market.expected_frame("APEXUSDT", "1d", 0, SAMPLE_END_MS)) == 65
    t = np.array([NOW, NOW + H], dtype=np.int64)
    x = np.array([[1.5, 2.25, 0.125, 2.0, 12345.678], [2.0, 3.0, 1.0, 2.5, 0.0]])
    assert _encode_rows(t, x, H) == [_encode_row(int(t[i]), *x[i], H) for i in range(2)]


def test_sample_market_other_symbols_only_lengthen_exchange_info():
    from cryptorsi.sources.live import LiveSource
    from cryptorsi.sources.universe import select_universe
    from cryptorsi.testing.exchange_server import sample_market

    picked = {}
    for extra in (0, 25):
        market = sample_market(8, intervals=("1d",), weeks=2, other_symbols=extra)
        with ExchangeServer(market=market) as srv:
            symbols = get(srv, "/api/v3/exchangeInfo").json()["symbols"]
            assert all(s["permissionSets"] for s in symbols)
            lean = get(srv, "/api/v3/exchangeInfo", showPermissionSets="false").json()["symbols"]
            assert lean == [dict(s, permissionSets=[]) for s in symbols]
            others = [s for s in symbols if s["symbol"].startswith("ZZ")]
            assert len(others) == extra and sum(s["status"] == "BREAK" for s in others) == extra // 10
            if extra:
                assert get(srv, "/api/v3/klines", symbol=others[0]["symbol"], interval="1d").json() == []
            src = LiveSource(srv.url, srv.url, timeout=5.0)
            try:
                listings, _ = select_universe(src.top_coins(8), src.markets(), exchange="binance",
                                              quotes=("USDT",), benchmark="BTC", include_stablecoins=False)
                assert len(src.markets()) == len(symbols)
                assert [r.params for r in srv.requests("exchangeInfo")][-1] == {"showPermissionSets": "false"}
            finally:
                src.close()
            picked[extra] = [(l.coin_id, l.pair) for l in listings]
    assert picked[25] == picked[0] and len(picked[0]) >= 4


def test_reset_budget_forgets_weight_and_backoff():
    market = synthetic_market(2, intervals=("1d",), weeks=1, now_ms=NOW)
    with ExchangeServer(market=market, weight_limit=25, weight_window_s=60) as srv:
        url = srv.url + "/api/v3/exchangeInfo"
        assert requests.get(url, timeout=5).status_code == 200  # 20
        assert requests.get(url, timeout=5).status_code == 429  # 40 > 25
        srv.reset_budget()
        response = requests.get(url, timeout=5)
        assert response.status_code == 200 and response.headers["X-MBX-USED-WEIGHT-1M"] == "20"
