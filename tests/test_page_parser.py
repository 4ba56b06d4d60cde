"""The page-reading helper process: the same arrays as reading in the thread, and never in the way."""

from __future__ import annotations

import signal
import time

import numpy as np
import pytest

from cryptorsi.sources.live import LiveSource, _compact_kline_array
from cryptorsi.sources.page_parser import PageParserProcess
from cryptorsi.testing.exchange_server import ExchangeServer, sample_market

NOW_WEEKS = 52


@pytest.fixture(scope="module")
def market():
    return sample_market(8, intervals=("1h", "1d"), weeks=NOW_WEEKS)


def body_of(market, symbol: str, interval: str, start: int) -> str:
    return "[" + ",".join(market.kline_rows(symbol, interval, start, None, 1000, market.now())) + "]"


@pytest.fixture
def helper():
    h = PageParserProcess()
    yield h
    h.close()


def test_the_helper_reads_pages_bit_for_bit(market, helper):
    assert helper.wait_ready(60)
    start = market.now() - 40 * 7 * 86_400_000
    for symbol in [s["symbol"] for s in market.symbols][:5]:
        for interval in ("1h", "1d"):
            body = body_of(market, symbol, interval, start)
            got = helper.parse(body)
            want = _compact_kline_array(body)
            assert got is not None and got.dtype == np.float64 and got.flags.writeable
            np.testing.assert_array_equal(got, want)
    assert helper.parsed == 10
    # what it cannot read plainly it hands back (None): the caller reads it (and finds what is wrong)
    assert helper.parse('[[1,"2"], [3,"4"]]') is None and helper.parse('[[1,"x",3,4,5,6]]') is None
    assert helper.parsed == 10
    np.testing.assert_array_equal(helper.parse(body), want)  # and it goes on


def test_busy_unready_failed_or_closed_means_read_it_yourself(market, helper):
    body = body_of(market, market.symbols[0]["symbol"], "1d", market.now() - 30 * 86_400_000)
    assert helper.parse(body) is None  # not started
    assert helper.wait_ready(60)
    helper.busy_wait_s = 0.05
    with helper._lock:  # another thread's page in progress, for longer than the caller waits
        assert helper.parse(body) is None
    assert helper.parse(body) is not None
    helper._proc.kill()  # the helper dies: the next page is read elsewhere, and so is every later one
    helper._proc.wait(10)
    assert helper.parse(body) is None and helper.parse(body) is None
    proc = helper._proc
    helper.close()
    assert proc.poll() is not None and helper.parse(body) is None
    helper.close()  # idempotent


@pytest.mark.parametrize("interval", ["1d", "1h"])  # a small page fits in the pipe, a 1,000-row one does not
def test_a_helper_that_stops_answering_is_given_up_on(market, helper, interval):
    body = body_of(market, market.symbols[0]["symbol"], interval, market.now() - 300 * 86_400_000)
    assert helper.wait_ready(60)
    helper.answer_timeout_s = 0.5
    helper._proc.send_signal(signal.SIGSTOP)  # alive, but silent
    t0 = time.monotonic()
    assert helper.parse(body) is None
    assert time.monotonic() - t0 < 5
    assert helper.parse(body) is None  # not asked again
    helper.close()
    assert helper._proc is None


def test_close_ends_an_idle_helper(helper):
    assert helper.wait_ready(60)
    proc = helper._proc
    helper.close()
    assert proc.returncode == 0  # it left on its own when its stdin closed


def test_a_live_source_hands_pages_to_the_helper_once_the_run_is_big(market):
    with ExchangeServer(market=market) as server:
        src = LiveSource(server.url, server.url, retry_base_s=0.02, retry_max_s=0.1)
        try:
            markets = {m.pair: m for m in src.markets()}
            pairs = sorted(p for p in markets if p.endswith("/USDC"))[:6]
            assert src._page_parser.wait_ready(60) is True  # started ahead, as a run of this size would
            end = src.default_end_ms("1h")
            start = end - 50 * 7 * 86_400_000
            frames = [src.candles(markets[p], "1h", start, end) for p in pairs]
            stats = src.stats()
            assert stats["klines_requests"] == 9 * len(pairs)
            assert stats["pages_read_by_helper"] > 0
            for pair, frame in zip(pairs, frames):
                want = market.expected_frame(pair.replace("/", ""), "1h", start, end, now_ms=end)
                assert frame.equals(want)
        finally:
            src.close()
        assert src._page_parser._proc is None
