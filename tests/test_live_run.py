"""Whole live runs: ``cryptorsi run --source live`` against the project's exchange server.

The real ccxt and pycoingecko clients talk HTTP on loopback to :class:`ExchangeServer`, which serves the bundled
sample market in Binance's and CoinGecko's wire formats (no mocks). Every stored number is checked against an
independent computation on the candles the server serves: TA-Lib's RSI and numpy's Pearson correlation.
"""

from __future__ import annotations

import io
import os
import socket
import sqlite3
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pytest
import talib

import cryptorsi as cr
from conftest import cryptorsi_threads
from cryptorsi.cli import main
from cryptorsi.events import FetchProgress
from cryptorsi.market import timeframe_ms
from cryptorsi.sources.sample import SAMPLE_END_MS, SampleSource
from cryptorsi.storage.database import CandleCache, SessionWriter, open_database
from cryptorsi.testing.exchange_server import SAMPLE_NOW_MS, ExchangeServer, Faults, sample_market
from cryptorsi.windows import missing_spans

NOW = SAMPLE_NOW_MS
H, D, W = 3_600_000, 86_400_000, 7 * 86_400_000
TIMEFRAMES = ("1h", "4h", "1d")
ARGS = ["--quote", "USDT", "--top", "30", "--timeframes", ",".join(TIMEFRAMES), "--weeks", "50", "--no-progress"]
KEY = "CG-live-run-secret-4242"
LATE = "ECHF/USDT"  # listed 20 weeks before the end of the data
HALTED = "EMBE/USDT"  # still TRADING, but its candles stop 3 weeks before the end
BROKEN = "FATH/USDT"  # in the fault run, every klines request of it fails (the last coin: asked last)


def make_market(**kwargs):
    market = sample_market(30, intervals=TIMEFRAMES, weeks=52, break_pairs=("AMBE/USDT",),
                           listed_ms={LATE: SAMPLE_END_MS - 20 * W}, halted_ms={HALTED: SAMPLE_END_MS - 3 * W},
                           **kwargs)
    for s in market.symbols:  # encode the wire rows once, before anything is timed
        for tf in TIMEFRAMES:
            market.kline_rows(s["symbol"], tf, 0, None, 1, NOW)
    return market


@pytest.fixture(scope="module")
def market():
    return make_market()


@pytest.fixture(scope="module", autouse=True)
def warm_imports():
    """Import ccxt and load the RSI kernel once, so that the first timed run does not pay for them."""
    import ccxt  # noqa: F401
    import pycoingecko  # noqa: F401

    cr.indicators.rsi(np.linspace(1.0, 2.0, 50))


def expected_universe(market) -> list[str]:
    """The coin ids that should be analysed, worked out independently of cryptorsi's universe rules: the server's
    coins by market cap, without the sample's stablecoins and wrapped twins, a ticker belonging to the larger coin,
    and a TRADING <ticker>USDT symbol on the server."""
    kinds = SampleSource().profiles()["kind"]
    trading = {s["base"] for s in market.symbols if s["quote"] == "USDT" and s["status"] == "TRADING"}
    seen, out = set(), []
    for coin in sorted(market.coins, key=lambda c: -c["market_cap"]):
        symbol = coin["symbol"].upper()
        if symbol in seen:
            continue
        seen.add(symbol)
        if kinds[coin["id"]] in ("stable", "flat", "twin") or symbol not in trading:
            continue
        out.append(coin["id"])
    return out


def ms(ts) -> pd.Timestamp:
    return pd.Timestamp(ts, unit="ms", tz="UTC")


def check_exact(db: str, market, *, broken: str | None = None, timeframes=TIMEFRAMES, weeks: int = 50,
                exchange: str = "binance") -> None:
    """Stored candles equal the served ones; RSI and correlations equal TA-Lib + Pearson on them (1e-9)."""
    store = cr.Store(db)
    session = store.sessions().iloc[-1]
    assert session["status"] == "completed"
    windows = session["config"]["windows"]
    assert session["config"]["exchange"] == exchange
    for tf in timeframes:  # the window ends with the last candle the exchange had closed, by its clock
        step = timeframe_ms(tf)
        assert windows[tf] == [NOW // step * step - weeks * W, NOW // step * step]
    coins = store.coins()
    assert list(coins["coin_id"]) == expected_universe(market)
    assert (coins["quote"] == "USDT").all() and (coins["pair"] == coins["symbol"] + "/USDT").all()
    served_caps = {c["id"]: c["market_cap"] for c in market.coins}
    assert all(coins["market_cap"] == coins["coin_id"].map(served_caps))  # market caps as of the run
    correlations, failures = store.correlations(), store.failures()
    rsis: dict[tuple[str, str], pd.Series] = {}
    assert (coins["exchange"] == exchange).all()
    for row in coins.itertuples():
        for tf in timeframes:
            start, end = windows[tf]
            served = market.expected_frame(row.symbol + "USDT", tf, start, end, now_ms=NOW)
            if row.pair == broken:
                continue
            stored = store.prices(row.symbol, tf, start=ms(start), end=ms(end))
            pd.testing.assert_frame_equal(stored, served, check_exact=True, check_freq=False)
            rsi = pd.Series(talib.RSI(served["close"].to_numpy(), timeperiod=14), index=served.index).dropna()
            got = store.rsi(row.symbol, tf)
            assert got.index.equals(rsi.index), (row.symbol, tf)
            np.testing.assert_allclose(got.to_numpy(), rsi.to_numpy(), rtol=0, atol=1e-9)
            rsis[(row.coin_id, tf)] = rsi
    expected_rows = 0
    for (coin_id, tf), rsi in rsis.items():
        joined = pd.concat([rsi, rsis[("bitcoin", tf)]], axis=1, join="inner").dropna()
        (got,) = correlations[(correlations["coin_id"] == coin_id) & (correlations["timeframe"] == tf)].itertuples()
        assert got.n_points == len(joined)
        assert abs(got.correlation - np.corrcoef(joined.iloc[:, 0], joined.iloc[:, 1])[0, 1]) <= 1e-9
        expected_rows += 1
    assert len(correlations) == expected_rows
    if broken is None:
        assert failures.empty, failures
    else:
        assert set(failures["symbol"] + "/USDT") == {broken} and set(failures["timeframe"]) == set(timeframes)
        assert (failures["stage"] == "fetch").all()
        assert failures["reason"].str.contains(rf"{exchange} {broken} \d+[hd]: .+ \(after \d+ attempts\)").all()


def cli_args(server, db, *extra):
    return ["run", "--source", "live", "--binance-url", server.url, "--coingecko-url", server.url, *ARGS,
            "--db", str(db), *extra]


# ------------------------------------------------------------------------------------------ a clean market


@pytest.fixture(scope="module")
def clean(market, tmp_path_factory):
    """A cold run then a warm one on the same database (in this process), each with its CPU time (which a busy
    machine does not stretch, unlike the elapsed time) and the server's requests recorded. The server answers
    after 100 ms, about the round trip to a real exchange."""
    db = tmp_path_factory.mktemp("live") / "live.db"
    with ExchangeServer(market=market, faults=Faults(latency_s=0.1)) as server:
        runs = []
        for _ in range(2):
            server.reset_records()
            cpu = time.process_time()
            code = main(cli_args(server, db))
            runs.append((code, time.process_time() - cpu, server.requests()))
        yield server, db, runs
    assert not cryptorsi_threads()


def test_a_cold_live_run_is_exact(clean, market):
    server, db, runs = clean
    code, _, requests = runs[0]
    assert code == 0
    check_exact(str(db), market)
    store = cr.Store(str(db))
    reasons = store.coins(include_excluded=True).set_index("symbol")["excluded_reason"]
    assert reasons["AMBE"] == "no active USDT pair on binance (AMBE/USDT is inactive)"  # BREAK
    assert reasons["BASA"] == "no active USDT pair on binance"  # on CoinGecko, not on the exchange
    assert reasons["BOLT"] == "no active USDT pair on binance"  # a USDC pair only
    assert reasons["SUSD"] == "stablecoin" and reasons["FUSD"] == "stablecoin"
    assert reasons["WBTC"] == "wrapped or staked token" and reasons["STETH"] == "wrapped or staked token"
    assert [r.path for r in requests if r.endpoint != "klines"] in (
        ["/api/v3/exchangeInfo", "/api/v3/coins/markets"], ["/api/v3/coins/markets", "/api/v3/exchangeInfo"])
    assert all(not r.path.startswith(("/fapi", "/dapi", "/sapi")) for r in requests)  # spot only
    klines = [r for r in requests if r.endpoint == "klines"]
    assert all(r.status == 200 and r.params["limit"] == "1000" for r in klines)
    # pages of 1000: 9 per coin on 1h (8400 candles), 3 on 4h, 1 on 1d; the late listing (20 weeks) needs 4 + 1 + 1,
    # the halted pair (47 weeks: its last page is short, which ends the series) 8 + 2 + 1; no page is asked twice
    n = len(expected_universe(market))
    assert len(klines) == (n - 2) * 13 + 6 + 11
    assert len({(r.params["symbol"], r.params["interval"], r.params["startTime"]) for r in klines}) == len(klines)


def test_a_second_run_asks_only_for_what_is_missing_and_is_3x_faster(clean):
    server, db, runs = clean
    (_, cold, _), (code, warm, requests) = runs
    assert code == 0
    # the late listing's head and the halted pair's tail were recorded as complete: nothing is asked again
    assert [r.endpoint for r in requests if r.endpoint == "klines"] == []
    assert len(requests) <= 3  # instead of the cold run's hundreds, each 100 ms away
    assert warm * 3 <= cold, (cold, warm)  # and a third of the work (CPU seconds; ~9x on the development machine)
    sessions = cr.Store(str(db)).sessions()
    assert list(sessions["status"]) == ["completed", "completed"]
    a, b = (cr.Store(str(db)).correlations(sid) for sid in sessions["session_id"])
    pd.testing.assert_frame_equal(a, b)


def test_the_command_runs_as_a_process_and_the_key_stays_secret(clean, market):
    """The outside view: ``python -m cryptorsi run --source live ...`` exits 0 on the warm database (at most one
    klines request per pair and timeframe, +3), and the CoinGecko key goes in a header only."""
    server, db, _ = clean
    server.reset_records()
    proc = subprocess.run([sys.executable, "-m", "cryptorsi", *cli_args(server, db, "--coingecko-api-key", KEY)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "correlations" in proc.stdout and "SYNTHETIC" not in proc.stdout
    klines = server.count("klines")
    assert klines <= len(expected_universe(market)) * len(TIMEFRAMES)
    assert len(server.requests()) <= klines + 3
    (cg,) = server.requests("coins/markets")
    assert cg.headers["x-cg-demo-api-key"] == KEY and KEY not in str(cg.params)
    assert all("x-cg-demo-api-key" not in r.headers for r in server.requests() if r.endpoint != "coins/markets")
    assert KEY not in proc.stdout + proc.stderr
    for path in (db, db.with_name(db.name + "-wal")):
        assert not path.exists() or KEY.encode() not in path.read_bytes()


# ------------------------------------------------------------------------------------------ a faulty market


def test_a_live_run_through_faults_is_exact_and_never_banned(tmp_path, monkeypatch):
    """5% 5xx, 1% resets, 0.5% answers slower than the client's timeout, one symbol failing on every request,
    one malformed body, CoinGecko 429 on its first two calls, and a weight budget 20x smaller than Binance's per
    window (300 per 3 s, not advertised in exchangeInfo: learnt from the first 429)."""
    market = make_market()
    faults = Faults(seed=7, error_rate=0.05, reset_rate=0.01, slow_rate=0.005, slow_s=4.0,
                    fail_symbols=(BROKEN.replace("/", ""),), fail_status=500, coingecko_429_first=2,
                    script={"klines": {25: "malformed", 60: "slow"}})
    monkeypatch.setenv("CRYPTORSI_HTTP_TIMEOUT", "1.5")
    db = tmp_path / "faults.db"
    with ExchangeServer(market=market, faults=faults, weight_limit=300, weight_window_s=3.0,
                        advertise_limit=False) as server:
        assert main(cli_args(server, db)) == 0
        records = server.requests()
    assert server.n418 == 0
    faults_seen = {r.fault for r in records if r.fault}
    assert {"malformed", "reset", "slow", "error", "500"} <= faults_seen  # 500: the broken symbol
    assert any(r.status == 429 and r.endpoint == "klines" for r in records)  # the budget, learnt the hard way
    assert [r.status for r in records if r.endpoint == "coins/markets"][:3] == [429, 429, 200]
    check_exact(str(db), market, broken=BROKEN)


@pytest.mark.parametrize("faults", [Faults(refuse_status=451), Faults(script={"klines": {40: "451"}})],
                         ids=["every request", "mid-run"])
def test_a_restricted_location_ends_the_run_with_one_line(market, tmp_path, capsys, faults):
    """HTTP 451 from Binance, on its first request or on one coin's page in the middle of a run: not retried, not a
    per-coin failure; exit 1 with one line naming the refusal and the ways out; nothing more is asked."""
    db = tmp_path / "refused.db"
    with ExchangeServer(market=market, faults=faults) as server:
        assert main(cli_args(server, db, "--no-progress")) == 1
        binance = [r for r in server.requests() if r.endpoint != "coins/markets"]
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "restricted location" in err and "--exchange-url" in err, err
    assert [r.status for r in binance].count(451) == 1
    if faults.refuse_status:
        assert len(binance) == 1
    else:  # the run stops there: of its ~350 klines requests, the 41st was refused (in-flight ones still land)
        assert len(binance) < 100
        session = cr.Store(str(db)).sessions().iloc[-1]
        assert session["status"] == "failed"
    assert not cryptorsi_threads()


def test_a_benchmark_without_candles_fails_every_coin_alike_in_the_run_and_in_a_retune(market, tmp_path):
    """The run's agents and retune share one analysis: the same failures, with the benchmark's own reason."""
    db = tmp_path / "no-btc.db"
    with ExchangeServer(market=market, faults=Faults(fail_symbols=("BTCUSDT",), fail_status=400)) as server:
        assert main(cli_args(server, db, "--no-progress")) == 0
    result = cr.AnalysisResult.load(str(db))
    assert result.correlations.empty
    stored = result.failures
    btc = stored[stored["symbol"] == "BTC"].set_index("timeframe")["reason"]
    assert set(btc.index) == set(TIMEFRAMES)
    for tf in TIMEFRAMES:
        others = stored[(stored["timeframe"] == tf) & (stored["symbol"] != "BTC")]
        assert (others["stage"] == "correlation").all() and len(others) == len(expected_universe(market)) - 1
        assert set(others["reason"]) == {f"benchmark BTC has no {tf} RSI ({btc[tf]})"}
    retuned = result.retune(rsi_period=21).failures
    key = ["coin_id", "timeframe", "stage", "reason"]
    pd.testing.assert_frame_equal(retuned.sort_values(key)[key].reset_index(drop=True),
                                  stored.sort_values(key)[key].reset_index(drop=True))


# ------------------------------------------------------------------------------------------ other exchanges


#: per exchange, the timeframes a run asks for: OKX pages 100 candles at ccxt's pace of ~9 requests a second
OTHER_EXCHANGES = {"binanceus": TIMEFRAMES, "bybit": ("4h", "1d"), "okx": ("1d",)}


@pytest.mark.parametrize("exchange", list(OTHER_EXCHANGES))
def test_a_live_run_on_another_exchange_is_exact(market, tmp_path, capsys, exchange):
    """The same sample market served in Binance.US's, Bybit's and OKX's wire formats: stored candles equal the
    served ones (newest-first pages reordered, no duplicate at page boundaries, the late listing and the halted
    pair as served), RSI and correlations exact; a second run asks nothing more; sessions record the exchange."""
    timeframes = OTHER_EXCHANGES[exchange]
    db = tmp_path / f"{exchange}.db"
    args = ["run", "--source", "live", "--exchange", exchange, "--exchange-url", "URL", "--coingecko-url", "URL",
            "--quote", "USDT", "--top", "30", "--timeframes", ",".join(timeframes), "--weeks", "50", "--db", str(db),
            "--no-progress"]
    with ExchangeServer(market=market) as server:
        args = [server.url if a == "URL" else a for a in args]
        assert main(args) == 0
        assert f"cryptorsi results - {exchange} - session" in capsys.readouterr().out
        first = [r.endpoint for r in server.requests()]
        server.reset_records()
        assert main(args) == 0
        again = [r.endpoint for r in server.requests()]
    check_exact(str(db), market, timeframes=timeframes, exchange=exchange)
    # ccxt asks OKX for recent candles or history by the local clock's distance to the window
    candles = {"binanceus": {"klines"}, "bybit": {"bybit:kline"}, "okx": {"okx:candles", "okx:history-candles"}}
    asked = [e for e in first if e in candles[exchange]]
    assert len(asked) >= len(expected_universe(market)) * len(timeframes)  # from that exchange's API
    assert not set(again) & candles[exchange] and len(again) <= 3  # the cache has every closed candle


def test_one_database_keeps_the_series_of_two_exchanges_apart(market, tmp_path, capsys):
    db = tmp_path / "two.db"
    base = ["run", "--source", "live", "--quote", "USDT", "--top", "30", "--timeframes", "1d", "--weeks", "50",
            "--db", str(db), "--no-progress"]
    with ExchangeServer(market=market) as server:
        assert main(base + ["--binance-url", server.url, "--coingecko-url", server.url]) == 0
        server.reset_records()
        assert main(base + ["--exchange", "bybit", "--exchange-url", server.url, "--coingecko-url", server.url]) == 0
        bybit_pages = server.count("bybit:kline")
    n = len(expected_universe(market))
    assert bybit_pages >= n  # every coin asked of Bybit: Binance's candles of the same pairs do not count
    with sqlite3.connect(db) as conn:
        per_exchange = dict(conn.execute("SELECT exchange, COUNT(DISTINCT pair) FROM candles GROUP BY exchange"))
    assert per_exchange == {"binance": n, "bybit": n}
    store = cr.Store(str(db))
    sessions = store.sessions()
    assert [c["exchange"] for c in sessions["config"]] == list(sessions["exchange"]) == ["binance", "bybit"]
    (bybit,) = store.sessions(exchange="bybit")["session_id"]
    assert bybit == sessions["session_id"].iloc[1] and store.sessions(exchange="okx").empty
    capsys.readouterr()
    assert main(["query", "sessions", "--db", str(db), "--exchange", "bybit"]) == 0
    out = capsys.readouterr().out
    assert bybit in out and sessions["session_id"].iloc[0] not in out and "live bybit top 30" in out


@pytest.mark.parametrize("argv, named", [
    (["--exchange", "coinbase", "--timeframes", "4h"], ["--timeframes", "4h", "coinbase", "1h", "6h"]),
    (["--exchange", "nosuch"], ["--exchange", "nosuch"]),
    (["--exchange", "bitflyer"], ["--exchange", "bitflyer", "no candles"]),  # a ccxt exchange without fetchOHLCV
    (["--exchange", "kraken", "--timeframes", "1h", "--weeks", "50"], ["--weeks", "kraken", "720"]),
    (["--exchange", "okx", "--binance-url", "http://127.0.0.1:9"], ["--binance-url", "okx", "--exchange-url"]),
])
def test_what_an_exchange_cannot_do_is_refused_in_one_line(tmp_path, capsys, argv, named):
    db = tmp_path / "refused.db"
    assert main(["run", "--source", "live", "--db", str(db), "--no-progress", *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and all(word in err for word in named), err
    assert not db.exists()


# ------------------------------------------------------------------------------------------ progress


def test_fetch_progress_and_request_status(market, tmp_path):
    """FetchProgress per timeframe (requests done / planned, coins done / total) and ``status()["requests"]``;
    a quote preference list records the pair used for each coin."""
    faults = Faults(script={"klines": {3: "503", 4: "reset"}})
    with ExchangeServer(market=market, faults=faults) as server:
        config = cr.AnalysisConfig(source="live", binance_url=server.url, coingecko_url=server.url, top_n_coins=16,
                                   quote="USDT,USDC", timeframes="1h,1d", weeks=12, db_path=str(tmp_path / "p.db"))
        runner = cr.Runner(config, stream=io.StringIO())
        progress: list[FetchProgress] = []
        statuses = []
        runner.add_listener(FetchProgress, progress.append)
        runner.add_listener(FetchProgress, lambda e: statuses.append(runner.status()["requests"]))
        runner.start()
        assert runner.status()["requests"] is not None
        result = runner.wait()
        klines = {tf: server.count("klines", interval=tf) for tf in ("1h", "1d")}
    coins = cr.Store(config.db_path).coins().set_index("symbol")
    assert coins.loc["BOLT", "pair"] == "BOLT/USDC" and coins.loc["BOLT", "quote"] == "USDC"  # no USDT pair
    assert coins.loc["ETH", "pair"] == "ETH/USDT" and coins.loc["ETH", "quote"] == "USDT"
    n = len(coins)
    assert len(result.correlations) == 2 * n
    for tf in ("1h", "1d"):
        events = [e for e in progress if e.timeframe == tf]
        assert events and all(e.session_id == result.session_id for e in events)
        assert all(e.requests_done <= e.requests_planned and e.coins_total == n for e in events)
        dones = [e.requests_done for e in events]
        assert dones == sorted(dones)
        last = events[-1]
        assert last.coins_done == n and last.requests_done == last.requests_planned == klines[tf]
        # planned from the start: 3 pages of 1h (2016 candles) and 1 of 1d per coin
        assert events[0].requests_planned >= n * (3 if tf == "1h" else 1)
    final = statuses[-1]
    assert final["retries"] == 2 and final["rate_limited"] == 0 and final["banned"] == 0
    assert final["klines_requests"] == sum(klines.values())
    assert final["requests"] == final["klines_requests"] + 1  # + exchangeInfo
    assert final["weight"] == 2 * final["klines_requests"] + 20 and final["weight_limit"] == 6000
    assert final["coingecko_requests"] == 1
    assert {tf: (v["done"], v["planned"]) for tf, v in final["timeframes"].items()} == {
        tf: (klines[tf], klines[tf]) for tf in ("1h", "1d")}
    assert cr.Runner(config).status()["requests"] is None  # nothing started


def test_no_request_statistics_without_a_live_source(tmp_path):
    config = cr.AnalysisConfig(source="sample", top_n_coins=5, timeframes="1d", weeks=10,
                               db_path=str(tmp_path / "s.db"))
    seen = []
    runner = cr.Runner(config, stream=io.StringIO())
    runner.add_listener(FetchProgress, seen.append)
    runner.start()
    assert runner.status()["requests"] is None
    runner.wait()
    assert seen == []


# ------------------------------------------------------------------------------------------ unreachable network


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _offline() -> bool:
    try:
        socket.getaddrinfo("data-api.binance.vision", 443)
        return False
    except OSError:
        return True


def test_an_unreachable_network_fails_fast_with_one_line(tmp_path, market):
    """A closed loopback port, the default public hosts (reached through a dead proxy, and also directly when this
    machine has no network), and CoinGecko alone unreachable: exit 1 within 30 s, one line naming the host and
    the other sources."""
    port = closed_port()
    dead = f"http://127.0.0.1:{port}"
    base = [sys.executable, "-m", "cryptorsi", "run", "--source", "live", "--no-progress"]
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    server = ExchangeServer(market=market).start()
    cases = [
        (base + ["--binance-url", dead, "--coingecko-url", dead, "--db", str(tmp_path / "a.db")], env,
         f"cannot reach 127.0.0.1:{port} ("),
        (base + ["--db", str(tmp_path / "b.db")], dict(env, HTTPS_PROXY=dead, HTTP_PROXY=dead, NO_PROXY=""),
         "cannot reach data-api.binance.vision ("),
        (base + ["--binance-url", server.url, "--coingecko-url", dead, "--db", str(tmp_path / "d.db")], env,
         f"cannot fetch the coin list: cannot reach 127.0.0.1:{port} ("),
    ]
    if _offline():
        cases.append((base + ["--db", str(tmp_path / "c.db")], env, "cannot reach data-api.binance.vision ("))

    def run(case):
        argv, environ, host = case
        t0 = time.monotonic()
        proc = subprocess.run(argv, capture_output=True, text=True, env=environ, timeout=60)
        return proc, time.monotonic() - t0, host

    try:
        with ThreadPoolExecutor(len(cases)) as pool:
            outcomes = list(pool.map(run, cases))
    finally:
        server.stop()
    for proc, elapsed, start in outcomes:
        assert proc.returncode == 1, proc.stderr
        assert elapsed < 30
        assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr
        line = proc.stderr.strip()
        assert line.startswith(f"cryptorsi run: error: {start}"), line
        assert line.endswith("; try --source sample or --source cache"), line
    assert not (tmp_path / "a.db").exists()
    assert cr.Store(str(tmp_path / "d.db")).sessions().iloc[-1]["status"] == "failed"  # recorded, with its reason


# ------------------------------------------------------------------------------------------ coverage records


def test_coverage_spans_merge_and_skip_empty_head_and_tail(tmp_path):
    db = str(tmp_path / "cov.db")
    conn = open_database(db)
    writer = SessionWriter(conn)
    writer.save_coverage("binance", "X/USDT", "1h", [(10 * H, 20 * H)])
    writer.save_coverage("binance", "X/USDT", "1h", [(20 * H, 30 * H), (40 * H, 50 * H)])  # adjacent: merged
    writer.save_coverage("binance", "X/USDT", "1h", [(45 * H, 60 * H)])  # overlapping: merged
    writer.save_coverage("binance", "X/USDT", "4h", [(0, 8 * H)])  # another series
    conn.close()
    cache = CandleCache(db)
    frame, covered = cache.load_window("binance", "X/USDT", "1h", 0, 100 * H)
    assert frame.empty and covered == [(10 * H, 30 * H), (40 * H, 60 * H)]
    assert cache.load_window("binance", "X/USDT", "1h", 31 * H, 39 * H)[1] == []
    cache.close()
    times = np.array([12 * H, 13 * H, 25 * H])  # cached candles of the 1h series
    assert missing_spans(times, 0, 100 * H, "1h", covered) == [(0, 10 * H), (30 * H, 40 * H), (60 * H, 100 * H)]
    assert missing_spans(times, 12 * H, 26 * H, "1h", covered) == []
    assert missing_spans(times, 0, 100 * H, "1h") == [(0, 12 * H), (26 * H, 100 * H)]  # no records: head and tail


def test_a_schema_1_database_is_migrated_and_keeps_its_candles(tmp_path):
    """Databases written before coverage records (schema 1) gain the table; their candles stay trusted between
    the first and the last cached one."""
    from cryptorsi.storage.schema import APPLICATION_ID, MIGRATIONS, SCHEMA_VERSION

    path = str(tmp_path / "v1.db")
    conn = sqlite3.connect(path)
    for statement in MIGRATIONS[1]:
        conn.execute(statement)
    conn.execute("INSERT INTO cryptorsi_meta VALUES ('application', 'cryptorsi')")
    conn.execute("INSERT INTO candles VALUES ('binance', 'X/USDT', '1h', ?, 1, 2, 0.5, 1.5, 10)", (5 * H,))
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    cache = CandleCache(path)  # read-only, before any migration: no coverage table, no coverage
    frame, covered = cache.load_window("binance", "X/USDT", "1h", 0, 10 * H)
    assert len(frame) == 1 and covered == []
    cache.close()
    conn = open_database(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert conn.execute("SELECT count(*) FROM candles").fetchone()[0] == 1
    SessionWriter(conn).save_coverage("binance", "X/USDT", "1h", [(0, 5 * H)])
    conn.close()
    frame, covered = CandleCache(path).load_window("binance", "X/USDT", "1h", 0, 10 * H)
    assert len(frame) == 1 and covered == [(0, 5 * H)]
    assert missing_spans(frame.index.as_unit("ms").asi8, 0, 10 * H, "1h", covered) == [(6 * H, 10 * H)]
