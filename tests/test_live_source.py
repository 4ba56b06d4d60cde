"""LiveSource against the local exchange server: real pycoingecko and ccxt over HTTP on loopback, no mocks."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from cryptorsi.errors import SourceError, SourceRefused, SourceUnavailable
from cryptorsi.market import TIMEFRAMES, Market
from cryptorsi.sources.budget import WeightBudget
from cryptorsi.sources.live import LiveSource, _ccxt_message, _check_page
from cryptorsi.testing.exchange_server import ExchangeMarket, ExchangeServer, Faults, synthetic_market

NOW = 1_700_000_000_000 + 1_234_567  # mid-candle for every timeframe
H = 3_600_000
D = 24 * H
WEEKS50 = 50 * 7 * D
START = NOW - WEEKS50
KEY = "CG-secret-test-key-0123456789"
#: short back-offs; the timeout only ends requests the server answers slowly on purpose, so it is generous: a busy
#: machine never turns a normal answer into a timeout (and an extra retry the counts would see)
FAST = dict(retry_base_s=0.02, retry_max_s=0.1, timeout=10.0)


@pytest.fixture(scope="module")
def market():
    return synthetic_market(6, intervals=("1h", "4h", "1d", "1w"), weeks=52, now_ms=NOW, break_symbols=("C004",),
                            seed=11)


@pytest.fixture
def server(market):
    with ExchangeServer(market=market) as srv:
        yield srv


@pytest.fixture
def source(server):
    src = LiveSource(server.url, server.url, now_ms=NOW, **FAST)
    yield src
    src.close()


def market_of(pair: str) -> Market:
    base, quote = pair.split("/")
    return Market(pair, base, quote)


def expected(market, pair, timeframe, start=START, end=NOW, now=NOW):
    return market.expected_frame(pair.replace("/", ""), timeframe, start, end, now_ms=now)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------------------------------ CoinGecko


def test_top_coins_pages_250_by_market_cap():
    big = synthetic_market(2, intervals=("1d",), weeks=1, now_ms=NOW, extra_coins=298)
    big.coins[5]["id"] = None  # an item without id is skipped
    with ExchangeServer(market=big) as srv:
        src = LiveSource(srv.url, srv.url, now_ms=NOW, **FAST)
        coins = src.top_coins(300)
        pages = srv.requests("coins/markets")
        assert [(r.params["page"], r.params["per_page"], r.params["order"], r.params["vs_currency"])
                for r in pages] == [("1", "250", "market_cap_desc", "usd"), ("2", "250", "market_cap_desc", "usd")]
        assert len(coins) == 299  # 300 listed, one without id
        assert coins[0].coin_id == "bitcoin" and coins[0].symbol == "BTC" and coins[0].market_cap_rank == 1
        ranks = [c.market_cap_rank for c in coins]
        assert ranks == sorted(ranks) and ranks[:5] == [1, 2, 3, 4, 5] and 6 not in ranks
        assert all(c.symbol == c.symbol.upper() for c in coins)
        caps = [c.market_cap for c in coins]
        assert caps == sorted(caps, reverse=True)
        srv.reset_records()
        assert [c.coin_id for c in src.top_coins(3)] == ["bitcoin", coins[1].coin_id, coins[2].coin_id]
        assert srv.requests("coins/markets")[0].params["per_page"] == "3"
        src.close()


def test_coingecko_429_twice_then_success(market):
    with ExchangeServer(market=market, faults=Faults(coingecko_429_first=2)) as srv:
        src = LiveSource(srv.url, srv.url, now_ms=NOW, **FAST)
        coins = src.top_coins(6)
        assert [c.symbol for c in coins][:2] == ["BTC", "C001"] and len(coins) == 6
        assert [r.status for r in srv.requests("coins/markets")] == [429, 429, 200]
        assert src.stats()["coingecko_rate_limited"] == 2
        src.close()


def test_coingecko_retry_after_is_honoured(market):
    with ExchangeServer(market=market, faults=Faults(coingecko_429_first=1, coingecko_retry_after=1)) as srv:
        src = LiveSource(srv.url, srv.url, now_ms=NOW, **FAST)
        t0 = time.monotonic()
        assert len(src.top_coins(3)) == 3
        assert time.monotonic() - t0 >= 0.95
        first, second = srv.requests("coins/markets")
        assert second.t - first.t >= 0.95
        src.close()


def test_coingecko_5xx_reset_and_malformed_are_retried(market):
    faults = Faults(script={"coins/markets": {0: "503", 1: "reset", 2: "malformed"}})
    with ExchangeServer(market=market, faults=faults) as srv:
        src = LiveSource(srv.url, srv.url, now_ms=NOW, **FAST)
        assert [c.coin_id for c in src.top_coins(2)] == ["bitcoin", "coin-c001"]
        assert srv.count("coins/markets") == 4 and src.stats()["retries"] == 3
        src.close()


def test_demo_key_sent_in_header_never_logged_or_in_messages(market, caplog, monkeypatch):
    caplog.set_level(logging.DEBUG)
    with ExchangeServer(market=market) as srv:
        src = LiveSource(srv.url, srv.url, coingecko_api_key=KEY, now_ms=NOW, **FAST)
        src.top_coins(2)
        src.markets()
        (request,) = srv.requests("coins/markets")
        assert request.headers["x-cg-demo-api-key"] == KEY
        assert "x-cg-pro-api-key" not in request.headers
        assert all(KEY not in str(v) for v in request.params.values())  # not in the query string (URL logs)
        assert all("x-cg-demo-api-key" not in r.headers for r in srv.requests("exchangeInfo"))  # not to Binance
        assert KEY not in repr(src) and KEY not in str(src.stats())
        src.close()
    # the env variable is the fallback; an unreachable host's message never carries the key
    monkeypatch.setenv("COINGECKO_API_KEY", KEY)
    url = f"http://127.0.0.1:{closed_port()}"
    src = LiveSource(url, url, now_ms=NOW, max_attempts=2, **FAST)
    assert src._cg.session.headers["x-cg-demo-api-key"] == KEY
    with pytest.raises(SourceUnavailable) as info:
        src.top_coins(5)
    assert KEY not in str(info.value) and KEY not in repr(info.value.__cause__)
    assert KEY not in caplog.text
    src.close()


def test_pro_key_goes_to_the_pro_header(market):
    with ExchangeServer(market=market) as srv:
        src = LiveSource(srv.url, srv.url, coingecko_api_key=KEY, coingecko_plan="pro", now_ms=NOW, **FAST)
        src.top_coins(1)
        assert srv.requests("coins/markets")[0].headers["x-cg-pro-api-key"] == KEY
        src.close()
    default = LiveSource(coingecko_api_key=KEY, coingecko_plan="pro")
    assert default.coingecko_url == "https://pro-api.coingecko.com"
    assert LiveSource(coingecko_url="https://pro-api.coingecko.com", coingecko_api_key=KEY)._cg.session.headers[
        "x-cg-pro-api-key"] == KEY
    plain = LiveSource(coingecko_api_key="")
    assert plain.coingecko_url == "https://api.coingecko.com" and "x-cg-demo-api-key" not in plain._cg.session.headers
    for src in (default, plain):
        src.close()


# ------------------------------------------------------------------------------------------ Binance markets


def test_markets_are_spot_only_and_loaded_once(server, source):
    markets = source.markets()
    assert len(markets) == 6
    by_pair = {m.pair: m for m in markets}
    assert by_pair["BTC/USDC"] == Market("BTC/USDC", "BTC", "USDC", True)
    assert by_pair["C004/USDC"].active is False  # BREAK
    assert source.markets() == markets
    paths = [r.path for r in server.records]
    assert paths == ["/api/v3/exchangeInfo"]  # once; no /fapi, /dapi, /sapi; no /time with a fixed now
    assert not any(p.startswith(("/fapi", "/dapi", "/sapi", "/eapi", "/papi")) for p in paths)


def test_markets_retry_a_malformed_exchange_info_and_adopt_its_budget(market):
    faults = Faults(script={"exchangeInfo": {0: "malformed", 1: "502"}})
    with ExchangeServer(market=market, faults=faults, weight_limit=1200, weight_window_s=30) as srv:
        src = LiveSource(srv.url, srv.url, now_ms=NOW, **FAST)
        assert len(src.markets()) == 6
        assert srv.count("exchangeInfo") == 3
        stats = src.stats()
        assert (stats["weight_limit"], stats["weight_window_s"]) == (1200, 30)
        src.close()


def test_open_candle_is_judged_by_the_exchange_clock(market):
    """Without ``now_ms`` the source reads the server's clock (``serverTime`` of exchangeInfo, no extra request):
    the server's open candle is dropped although the local clock has long passed its close, and the default
    window ends on the exchange's clock."""
    with ExchangeServer(market=market) as srv:
        src = LiveSource(srv.url, srv.url, **FAST)
        before = time.time()
        end = src.default_end_ms("1h")  # loads the markets
        took_ms = (time.time() - before) * 1000
        assert 0 <= end - NOW <= took_ms + 1  # the server's clock, moved on by the local time since it was read
        assert srv.count("exchangeInfo") == 1 and srv.count("time") == 0
        assert src.closed_until("1h") == NOW // H * H and src.closed_until("1d") == NOW // D * D
        frame = src.candles(market_of("BTC/USDC"), "1h", NOW - 10 * H, NOW + 5 * H)
        assert frame.index[-1].value // 1_000_000 == NOW // H * H - H
        assert frame.equals(expected(market, "BTC/USDC", "1h", NOW - 10 * H, NOW + 5 * H))
        src.close()


# ------------------------------------------------------------------------------------------ candles


@pytest.mark.parametrize("parser", ["numpy", "ccxt"])
def test_candles_paging_is_exact(server, market, parser):
    src = LiveSource(server.url, server.url, now_ms=NOW, ohlcv_parser=parser, **FAST)
    src.markets()
    server.reset_records()
    frame = src.candles(market_of("C001/USDC"), "1h", START, NOW)
    want = expected(market, "C001/USDC", "1h")
    assert len(want) == 8400 - 1  # 50 weeks of hours, without the open one
    assert frame.equals(want)
    assert frame.index.is_unique and frame.index.is_monotonic_increasing
    assert list(frame.columns) == ["open", "high", "low", "close", "volume"]
    pages = server.requests("klines")
    assert len(pages) == 9  # 8400 candles, 1000 a page
    starts = [int(r.params["startTime"]) for r in pages]
    assert starts[0] == START
    times = frame.index.as_unit("ms").asi8
    # each page starts one candle past the previous page's last: no candle is asked twice
    assert starts[1:] == [int(t) + H for t in times[999:8000:1000]]
    assert all(r.params["limit"] == "1000" and r.params["endTime"] == str(NOW - 1) for r in pages)
    src.close()


def as_ccxt_would_parse(body: str):
    """What ccxt hands back for a body: the JSON value, or the text when it is not JSON."""
    try:
        return json.loads(body)
    except ValueError:
        return body


def test_a_klines_page_is_read_exactly(market):
    body = "[" + ",".join(market.kline_rows("C001USDC", "1h", START, None, 1000, NOW)) + "]"
    # every value exactly as float() reads its string (the first field is the open time, an integer)
    want = np.array([[float(v) for v in row[:6]] for row in json.loads(body)])
    problem, page = _check_page(json.loads(body), None, START, H, 0)
    assert problem is None and page.shape == (1000, 6)
    np.testing.assert_array_equal(page, want)


ROW = '[1700000000000,"1.5","2.5","1.0","2.0","10.0",1700003599999,"15.0",3,"5.0","7.5","0"]'
ROW2 = ROW.replace("1700000000000", "1700003600000")
Q = chr(34)


@pytest.mark.parametrize("body, problem", [
    (f"[{ROW},{ROW2}]", None),
    (f"[\n  {ROW},\n  {ROW2}\n]", None),  # pretty-printed
    (f"[{ROW.replace(Q, '')},{ROW2.replace(Q, '')}]", None),  # numbers, not strings
    (f'[[1700000000000,"1.5","2.5","1.0","2.0","10.0"],{ROW2}]', None),  # only the six fields read
    (f'[{ROW},[1700003600000,"1.5","2.5","1.0","2.0"]]', "not kline rows"),  # a short row
    (f'[{ROW},{ROW2.replace(Q + "2.5" + Q, Q + "abc" + Q)}]', "not kline rows of numbers"),
    (f'[{ROW},{ROW2.replace(Q + "2.5" + Q, Q + "2,5" + Q)}]', "not kline rows of numbers"),
    (f'[{ROW},{ROW2.replace(Q + "2.5" + Q, "[2.5]")}]', "not kline rows of numbers"),  # nested
    (f'[{ROW},{ROW2.replace(Q + "2.5" + Q, Q + "NaN" + Q)}]', "non-finite values"),
    (f"[{ROW2},{ROW}]", "open times not strictly increasing"),
    (f"[{ROW},{ROW2}]]", "not a JSON list"),  # trailing garbage: ccxt hands back the text
    ("[[]]", "not kline rows"), ("[[1,2,3]]", "not kline rows"), ("[[", "not a JSON list"),
    ('{"code": 0}', "not a JSON list"),
    ("[]", None),
])
def test_each_malformed_klines_body_is_named(body, problem):
    got, page = _check_page(as_ccxt_would_parse(body), None, 1_600_000_000_000, H, None)
    assert got == problem
    if problem is None:
        assert page.shape == (len(json.loads(body)), 6)
        assert (page[:, 0] == [1_700_000_000_000, 1_700_003_600_000][:len(page)]).all() and (page[:, 2] == 2.5).all()


def test_candles_window_bounds_and_timeframes(source, market):
    source.markets()
    mid = NOW - 100 * H - 123
    frame = source.candles(market_of("BTC/USDC"), "1h", mid, mid + 10 * H)
    assert frame.equals(expected(market, "BTC/USDC", "1h", mid, mid + 10 * H)) and len(frame) == 10
    assert frame.index[0].value // 1_000_000 > mid
    for tf in ("4h", "1d", "1w"):
        assert source.candles(market_of("C002/USDC"), tf, START, NOW).equals(expected(market, "C002/USDC", tf))
    weekly = source.candles(market_of("C002/USDC"), "1w", START, NOW)
    assert (weekly.index.day_of_week == 0).all() and len(weekly) == 49  # START is mid-week
    assert source.candles(market_of("C002/USDC"), "1d", NOW + D, NOW + 2 * D).empty  # the future: no request
    assert source.candles(market_of("C002/USDC"), "1d", START, START).empty
    assert source.default_end_ms("1h") == NOW


def test_transient_faults_are_retried_and_the_data_stays_exact(market):
    faults = Faults(script={"klines": {0: "500", 1: "reset", 2: "slow", 4: "malformed", 5: "nonmonotonic",
                                       7: "504", 9: "503", 10: "reset"}}, slow_s=120.0)
    with ExchangeServer(market=market, faults=faults) as srv:
        src = LiveSource(srv.url, srv.url, now_ms=NOW, **dict(FAST, timeout=3.0))
        src.markets()
        frame = src.candles(market_of("C003/USDC"), "1h", START, NOW)
        assert frame.equals(expected(market, "C003/USDC", "1h"))
        stats = src.stats()
        # the slow answer (2 minutes) was given up after the timeout and asked again: one of the 8 retries
        assert stats["retries"] == 8 and stats["klines_requests"] == 9 + 8
        answered = [r.fault for r in srv.requests("klines") if r.fault]  # the slow answer is still pending
        assert sorted(answered) == sorted(["500", "reset", "malformed", "nonmonotonic", "504", "503", "reset"])
        src.close()


@pytest.mark.parametrize("parser", ["numpy", "ccxt"])
def test_a_page_that_stays_malformed_fails_the_coin_with_a_reason(market, parser):
    faults = Faults(fail_symbols=("C002USDC",), fail_status="nonmonotonic")
    with ExchangeServer(market=market, faults=faults) as srv:
        src = LiveSource(srv.url, srv.url, now_ms=NOW, max_attempts=3, ohlcv_parser=parser, **FAST)
        src.markets()
        with pytest.raises(SourceError) as info:
            src.candles(market_of("C002/USDC"), "1d", START, NOW)
        message = str(info.value)
        assert "C002/USDC 1d" in message and "not strictly increasing" in message and "3 attempts" in message
        assert not isinstance(info.value, SourceUnavailable)
        assert srv.count("klines", symbol="C002USDC") == 3
        src.close()


def test_timeframe_grids(market):
    """3-day candles keep the phase the exchange serves; an hourly candle off the hour fails the coin."""
    def candles_fn(symbol, interval, start, end):
        tf = TIMEFRAMES[interval]
        phase = D if interval == "3d" else 0
        first = -(-(start - phase) // tf) * tf + phase
        rows = [[t, 1.0, 2.0, 0.5, 1.5, 10.0] for t in range(first, end, tf)]
        if symbol == "BADUSDC" and len(rows) > 3:
            rows[2][0] += 1
        return rows

    fn_market = ExchangeMarket(symbols=[{"base": "AAA", "quote": "USDC"}, {"base": "BAD", "quote": "USDC"}],
                               candles_fn=candles_fn, now_ms=NOW)
    with ExchangeServer(market=fn_market) as srv:
        src = LiveSource(srv.url, srv.url, now_ms=NOW, max_attempts=2, **FAST)
        three = src.candles(market_of("AAA/USDC"), "3d", START, NOW)
        assert len(three) == 116 and ((three.index.as_unit("ms").asi8 - D) % (3 * D) == 0).all()
        assert three.equals(fn_market.expected_frame("AAAUSDC", "3d", START, NOW, now_ms=NOW))
        with pytest.raises(SourceError, match="off the timeframe grid"):
            src.candles(market_of("BAD/USDC"), "1h", START, NOW)
        src.close()


def test_an_empty_page_is_asked_again_once_then_ends_the_series(market):
    """An empty answer means "nothing from here on", which the fetcher records as final: it is confirmed by asking
    once more, so a hiccup does not cut the series; two empty answers in a row end it."""
    with ExchangeServer(market=market, faults=Faults(script={"klines": {1: "empty"}})) as srv:
        src = LiveSource(srv.url, srv.url, now_ms=NOW, **FAST)
        src.markets()
        frame = src.candles(market_of("BTC/USDC"), "1h", START, NOW)
        assert frame.equals(expected(market, "BTC/USDC", "1h")) and srv.count("klines") == 10
        assert src.stats()["empty_pages"] == 1
        src.close()
    with ExchangeServer(market=market, faults=Faults(script={"klines": {1: "empty", 2: "empty"}})) as srv:
        src = LiveSource(srv.url, srv.url, now_ms=NOW, **FAST)
        src.markets()
        frame = src.candles(market_of("BTC/USDC"), "1h", START, NOW)
        assert frame.equals(expected(market, "BTC/USDC", "1h").iloc[:1000]) and srv.count("klines") == 3
        # a window with no candle at all (before the data): asked twice, then empty
        assert src.candles(market_of("BTC/USDC"), "1h", START - 20 * WEEKS50, START - 19 * WEEKS50).empty
        assert srv.count("klines") == 5
        src.close()


def test_unknown_symbols_fail_without_retry(market):
    faults = Faults(fail_symbols=("C001USDC",), fail_status=400)
    with ExchangeServer(market=market, faults=faults) as srv:
        src = LiveSource(srv.url, srv.url, now_ms=NOW, **FAST)
        src.markets()
        with pytest.raises(SourceError, match=r"binance NOPE/USDC 1h: .*NOPE/USDC"):
            src.candles(market_of("NOPE/USDC"), "1h", START, NOW)  # not among the markets: no request
        with pytest.raises(SourceError, match=r"binance C001/USDC 1h: Invalid symbol\."):
            src.candles(market_of("C001/USDC"), "1h", START, NOW)  # the exchange says -1121
        assert srv.count("klines") == 1 and src.stats()["retries"] == 0
        src.close()


def test_a_symbol_failing_on_every_request_fails_alone(market):
    faults = Faults(fail_symbols=("C001USDC",), fail_status=500)
    with ExchangeServer(market=market, faults=faults) as srv:
        src = LiveSource(srv.url, srv.url, now_ms=NOW, max_attempts=4, **FAST)
        src.markets()
        jobs = [market_of(p) for p in ("BTC/USDC", "C001/USDC", "C002/USDC")]
        with ThreadPoolExecutor(3) as pool:
            futures = [pool.submit(src.candles, m, "1d", START, NOW) for m in jobs]
        with pytest.raises(SourceError, match=r"binance C001/USDC 1d: HTTP 500 \(after 4 attempts\)"):
            futures[1].result()
        assert futures[0].result().equals(expected(market, "BTC/USDC", "1d"))
        assert futures[2].result().equals(expected(market, "C002/USDC", "1d"))
        assert srv.count("klines", symbol="C001USDC") == 4
        src.close()


# ------------------------------------------------------------------------------------------ the shared budget


@pytest.mark.parametrize("advertised,explained", [(True, True), (False, True), (False, False)])
def test_threads_share_one_budget_and_never_get_banned(market, advertised, explained):
    """A server budget per 2 s (the 'minute' shortened) far below the client's, 6 threads, 108 klines pages:
    zero 418, all data exact. Advertised in exchangeInfo (200 per 2 s), the budget is adopted before the first
    page (no 429); not advertised (100 per 2 s, exchangeInfo says 6000 a minute), the first 429 pauses every
    thread, and its message (or, when it does not say, its X-MBX-USED-WEIGHT-2S header) teaches the client the
    real limit."""
    limit = 200 if advertised else 100
    with ExchangeServer(market=market, weight_limit=limit, weight_window_s=2.0, advertise_limit=advertised,
                        explain_429=explained, faults=Faults(latency_s=0.005)) as srv:
        src = LiveSource(srv.url, srv.url, now_ms=NOW, weight_window_s=2.0, requests_in_flight=6, **FAST)
        src.markets()
        jobs = [(market_of(p), "1h") for p in ("BTC/USDC", "C001/USDC", "C002/USDC", "C003/USDC", "C004/USDC",
                                                  "C005/USDC")] * 2
        with ThreadPoolExecutor(6) as pool:
            frames = list(pool.map(lambda job: src.candles(job[0], job[1], START, NOW), jobs))
        for (m, tf), frame in zip(jobs, frames):
            assert frame.equals(expected(market, m.pair, tf))
        stats = src.stats()
        assert srv.n418 == 0 and stats["banned"] == 0
        assert srv.count("klines") == stats["klines_requests"] == 108 + stats["rate_limited"]
        if explained:
            assert (stats["weight_limit"], stats["weight_window_s"]) == (limit, 2.0)
        else:
            assert limit - 20 <= stats["weight_limit"] <= limit and stats["weight_window_s"] == 2.0
        if advertised:
            assert srv.n429 == 0 and stats["budget_waits"] > 0
        else:
            assert 1 <= srv.n429 == stats["rate_limited"] <= 6 and stats["paused_s"] > 0
        # apart from the 429s, the server never counted more than its budget in one of its windows
        per_window: dict[int, int] = {}
        for r in srv.requests():
            if r.status != 429:
                per_window[r.window] = per_window.get(r.window, 0) + r.weight
        assert max(per_window.values()) <= limit
        src.close()


def test_weight_header_from_another_client_slows_us_down(market, clock):
    """Weight used by someone else on the same IP (seen in X-MBX-USED-WEIGHT-1M) counts against our budget.
    The server's clock stands still: every request falls in its first minute, however long the test takes."""
    with ExchangeServer(market=market, weight_limit=6000, clock=clock) as srv:
        src = LiveSource(srv.url, srv.url, now_ms=NOW, **FAST)
        src.markets()
        import requests

        for _ in range(50):  # another client: 50 x 20 weight
            requests.get(srv.url + "/api/v3/exchangeInfo", timeout=5)
        src.candles(market_of("BTC/USDC"), "1d", START, NOW)
        assert srv.requests("klines")[-1].window == 0
        stats = src.stats()
        assert stats["weight_in_window"] >= 1000 + 20 + 2
        src.close()


def test_budget_waits_pauses_and_close(clock):
    """What the budget allows and when, on a clock the test moves (no wall clock, no machine speed)."""
    budget = WeightBudget(limit=10, window_s=0.5, safety=1.0, clock=clock)
    for _ in range(5):
        assert budget.acquire(2)
    # full: the first request leaves the window (0.5 s, plus a 5 % margin for the network: 0.525 s) after it
    clock.advance(0.52)
    assert budget.acquire(2, timeout=0) is False
    clock.advance(0.01)
    assert budget.acquire(2, timeout=0)
    budget.pause(0.3)
    clock.advance(0.29)
    assert budget.acquire(1, timeout=0) is False  # paused
    clock.advance(0.02)
    assert budget.acquire(1, timeout=0)
    assert budget.snapshot()["pauses"] == 1
    budget.configure(100, 60)  # never beyond the owner's rate cap: 10 per 0.5 s = 1200 per minute
    assert budget.limit == 100 and budget.window_s == 60
    budget.configure(100_000, 60)
    assert budget.limit == 1200
    budget.lower(50)
    assert budget.limit == 50


def test_budget_waiters_wake_up_when_the_window_slides_or_the_budget_closes():
    waiting, waiter_clock_reads = threading.Event(), []

    def monotonic():  # the real clock; acquire() reads it a second time under the budget's lock, then waits
        if threading.current_thread().name == "budget-waiter":
            waiter_clock_reads.append(1)
            if len(waiter_clock_reads) == 2:
                waiting.set()
        return time.monotonic()

    budget = WeightBudget(limit=10, window_s=0.5, safety=1.0, clock=monotonic)
    t0 = time.monotonic()  # (read before what it times: a lower bound that a stall in between cannot break)
    for _ in range(5):
        assert budget.acquire(2)
    assert budget.acquire(2)  # waits for the window to slide (no timeout: it wakes up by itself)
    assert time.monotonic() - t0 >= 0.5
    t0 = time.monotonic()
    budget.pause(0.3)
    budget.acquire(1)
    assert time.monotonic() - t0 >= 0.3
    budget.configure(10, 60)  # a minute's window: what was sent stays counted however long the waiter takes
    waiter_error = []

    def waiter():
        try:
            budget.acquire(10_000)  # bigger than anything free: waits
        except Exception as e:  # noqa: BLE001
            waiter_error.append(type(e).__name__)

    thread = threading.Thread(target=waiter, name="budget-waiter", daemon=True)
    thread.start()
    assert waiting.wait(30)  # the waiter holds the budget's lock from that read until it waits ...
    budget.close()  # ... so this runs while it waits (close takes that lock)
    thread.join(30)
    assert not thread.is_alive() and waiter_error == ["BudgetClosed"]


# ------------------------------------------------------------------------------------------ unreachable, close


def test_unreachable_hosts_raise_source_unavailable_quickly():
    url = f"http://127.0.0.1:{closed_port()}"
    src = LiveSource(url, url)  # default retries and backoff
    t0 = time.monotonic()
    with pytest.raises(SourceUnavailable) as info:
        src.top_coins(10)
    elapsed = time.monotonic() - t0
    host = url.removeprefix("http://")
    assert str(info.value) == f"cannot reach {host} (connection refused); try --source sample or --source cache"
    assert elapsed < 30
    fast = LiveSource(url, url, **FAST)
    with pytest.raises(SourceUnavailable, match=rf"^cannot reach {host} \(connection refused\); try --source"):
        fast.markets()
    with pytest.raises(SourceUnavailable):
        fast.candles(market_of("BTC/USDC"), "1h", START, NOW)
    for s in (src, fast):
        s.close()


class _Seen(logging.Handler):
    """Sets ``event`` when a log record's message contains ``text``."""

    def __init__(self, text: str):
        super().__init__(logging.DEBUG)
        self.text, self.event = text, threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.event.set()


def test_close_interrupts_backoff_promptly(market):
    faults = Faults(fail_symbols=("C001USDC",), fail_status=503)
    logger = logging.getLogger("cryptorsi")
    backing_off, level = _Seen("retry in"), logger.level
    logger.addHandler(backing_off)
    logger.setLevel(logging.DEBUG)
    try:
        with ExchangeServer(market=market, faults=faults) as srv:
            # a back-off of 10 minutes after the first 503
            src = LiveSource(srv.url, srv.url, now_ms=NOW, retry_base_s=600, retry_max_s=600, max_attempts=5)
            src.markets()
            errors = []

            def fetch():
                try:
                    src.candles(market_of("C001/USDC"), "1h", START, NOW)
                except SourceError as e:
                    errors.append(str(e))

            thread = threading.Thread(target=fetch, name="fetch-c001", daemon=True)
            thread.start()
            assert backing_off.event.wait(60)  # logged as the back-off begins
            src.close()
            thread.join(60)  # far less than the back-off: close() ended it
            assert not thread.is_alive()
            assert errors and "closed" in errors[0]
            assert srv.count("klines") == 1
            with pytest.raises(SourceError, match="closed"):
                src.candles(market_of("BTC/USDC"), "1h", START, NOW)
    finally:
        logger.removeHandler(backing_off)
        logger.setLevel(level)


def test_stats_shape(source):
    source.markets()
    source.candles(market_of("BTC/USDC"), "1d", START, NOW)
    stats = source.stats()
    assert {"requests", "klines_requests", "weight", "retries", "rate_limited", "banned", "errors", "candles",
            "weight_limit", "paused_s"} <= set(stats)
    assert stats["requests"] == 2 and stats["weight"] == 22 and stats["candles"] == 349
    assert np.isclose(stats["weight_limit"], 6000)


def test_spot_markets_read_exchange_info_as_ccxt_parses_it(server):
    import ccxt
    import requests

    from cryptorsi.sources.live import currency_code_of, spot_markets

    served = requests.get(f"{server.url}/api/v3/exchangeInfo", timeout=5).json()["symbols"]
    assert any(s["status"] == "BREAK" for s in served)

    def entry(symbol, base, quote, status="TRADING", **extra):
        return dict(served[0], symbol=symbol, baseAsset=base, quoteAsset=quote, status=status, **extra)

    entries = served + [
        entry("YOYOBTC", "YOYO", "BTC"),  # ccxt's currency code: YOYOW
        entry("YOYOWBTC", "YOYOW", "BTC", status="BREAK"),  # the same unified pair again: the later one counts
        entry("BCCUSDT", "BCC", "USDT"),
        entry("GRPUSDT", "GRP", "USDT", permissions=["SPOT", "TRD_GRP_003"]),  # trading, yet inactive to ccxt
        entry("HALTUSDT", "HALT", "USDT", status="HALT"),
        entry("EODUSDT", "EOD", "USDT", status="END_OF_DAY"),
    ]
    ex = ccxt.binance()
    ex.options["crossMarginPairsData"] = ex.options["isolatedMarginPairsData"] = []  # as fetch_markets sets them
    # the reference: ccxt's own parser of each exchangeInfo symbol, and its market table (set_markets)
    ex.set_markets([m for m in (ex.parse_market(raw) for raw in entries) if m is not None])
    reference = {m["symbol"]: (m["base"], m["quote"], m["active"], m["id"]) for m in ex.markets.values() if m["spot"]}
    assert all(currency_code_of(ex)(a) == ex.safe_currency_code(a) for a in ("YOYO", "BCC", "btc", "ETH"))
    markets, ids = spot_markets(entries + [{"status": "TRADING"}, "junk"], currency_code_of(ex))
    assert {m.pair: (m.base, m.quote, m.active, ids[m.pair]) for m in markets} == reference
    assert reference["YOYOW/BTC"] == ("YOYOW", "BTC", False, "YOYOWBTC")
    assert reference["GRP/USDT"][2] is False and reference["BCC/USDT"][2] is True
    assert len(markets) == len(served) + 5


# ------------------------------------------------------------------------------------------ refusals


@pytest.mark.parametrize("status, says", [(451, "restricted location"),
                                          (403, "HTTP 403: its web application firewall")])
def test_a_host_that_refuses_this_client_is_asked_once(market, status, says):
    """451 (a restricted location) and a firewall's 403 are not retried; the message names the host and the ways
    out, never the body's HTML; nothing more is sent to that host."""
    with ExchangeServer(market=market, faults=Faults(refuse_status=status)) as srv:
        src = LiveSource(srv.url, srv.url, now_ms=NOW, **FAST)
        with pytest.raises(SourceRefused) as info:
            src.markets()
        message = str(info.value)
        assert says in message and srv.url.split("//")[1] in message
        assert "--exchange-url" in message and "--source sample" in message
        assert "<" not in message and "\n" not in message
        with pytest.raises(SourceRefused):
            src.candles(market_of("BTC/USDC"), "1d", START, NOW)
        assert [r.status for r in srv.requests()] == [status]
        assert src.stats()["retries"] == 0
        src.close()


def test_a_refusal_in_the_middle_of_paging_stops_every_later_request(market):
    with ExchangeServer(market=market, faults=Faults(script={"klines": {2: "451"}})) as srv:
        src = LiveSource(srv.url, srv.url, now_ms=NOW, **FAST)
        src.markets()
        with pytest.raises(SourceRefused, match="restricted location"):
            src.candles(market_of("C001/USDC"), "1h", START, NOW)
        assert [r.status for r in srv.requests("klines")] == [200, 200, 451]
        with pytest.raises(SourceRefused):
            src.candles(market_of("C002/USDC"), "1h", START, NOW)
        assert len(srv.requests("klines")) == 3
        src.close()


def test_an_html_error_page_is_not_shown():
    page = "<!DOCTYPE html>\n<html><body><h1>404 Not Found</h1>\n<p>nginx</p></body></html>"
    assert _ccxt_message(Exception(f"binance GET https://host/api/v3/klines 404 {page}")) == "(an HTML page)"
    assert _ccxt_message(Exception('binance {"code":-1121,"msg":"Invalid symbol."}')) == "Invalid symbol."
    assert _ccxt_message(Exception("binance  some\n  text")) == "some text"
    assert _ccxt_message(Exception("okx GET https://host 400 bad"), "okx") == "GET https://host 400 bad"


@pytest.mark.parametrize("configured, expected", [(None, 10), (3, 3)])
def test_requests_in_flight_is_a_bound_the_config_sets(market, configured, expected):
    from cryptorsi.config import AnalysisConfig
    from cryptorsi.sources import make_source

    with ExchangeServer(market=market, faults=Faults(latency_s=0.02)) as srv:
        config = AnalysisConfig(source="live", binance_url=srv.url, coingecko_url=srv.url,
                                requests_in_flight=configured)
        src = make_source(config)
        assert src.concurrency == expected
        src.now_ms = NOW
        src.markets()
        pairs = ["BTC/USDC", "C001/USDC", "C002/USDC", "C003/USDC", "C005/USDC"] * 4
        with ThreadPoolExecutor(12) as pool:
            list(pool.map(lambda pair: src.candles(market_of(pair), "1d", START, NOW), pairs))
        assert srv.count("klines") == len(pairs)
        assert 1 <= srv.most_in_flight <= expected
        src.close()


# ------------------------------------------------------------------------------------------ other exchanges


#: each exchange's candle endpoint as the server records it (OKX: windows this old come from its history)
CANDLES = {"okx": "okx:history-candles", "bybit": "bybit:kline", "binanceus": "klines"}


@pytest.mark.parametrize("exchange", ["okx", "bybit", "binanceus"])
def test_another_exchange_serves_exact_markets_and_candles_through_faults(market, exchange):
    """The spot markets ccxt loads (one public request), and candles paged by that exchange's rules, exact through
    a 5xx, a reset, a malformed page and the exchange's own rate-limit answer."""
    endpoint = CANDLES[exchange]
    rate_limit = "429" if exchange == "binanceus" else "ratelimit"
    faults = Faults(script={endpoint: {0: "500", 2: "reset", 4: "malformed", 6: "503", 8: rate_limit}})
    # a 2-second weight window: Binance.US's 429 lowers the budget to the weight the server saw in its window
    with ExchangeServer(market=market, faults=faults, weight_window_s=2.0) as srv:
        src = LiveSource(srv.url, srv.url, exchange=exchange, now_ms=NOW, weight_window_s=2.0, **FAST)
        markets = {m.pair: m for m in src.markets()}
        assert markets["BTC/USDC"].active and not markets["C004/USDC"].active  # C004 is in BREAK
        assert {r.endpoint for r in srv.requests()} <= {"exchangeInfo", "okx:instruments", "bybit:instruments-info"}
        for tf in ("4h", "1d"):
            assert src.candles(market_of("C001/USDC"), tf, START, NOW).equals(expected(market, "C001/USDC", tf))
        mid = NOW - 100 * H - 123
        assert src.candles(market_of("C002/USDC"), "1h", mid, mid + 30 * H).equals(
            expected(market, "C002/USDC", "1h", mid, mid + 30 * H))
        stats = src.stats()
        assert stats["retries"] >= 4 and stats["rate_limited"] >= 1 and srv.n418 == 0
        assert src.exchange == exchange and exchange in repr(src)
        src.close()
