import numpy as np
import pandas as pd

from cryptorsi.agents.analysis_job import AnalysisJob
from cryptorsi.leadlag import lag_profile, best_lag
from cryptorsi.market import Coin, Listing


def listing(symbol, cap=1e9):
    return Listing(Coin(symbol.lower(), symbol, symbol.title(), cap), "sample", f"{symbol}/USDC", "USDC")


def series(seed, n=200, start="2025-01-01", freq="h"):
    rng = np.random.default_rng(seed)
    index = pd.date_range(start, periods=n, freq=freq, tz="UTC")
    return pd.Series(50 + rng.normal(0, 10, n).cumsum() / 5, index=index)


BTC, ETH, SOL, DOGE = listing("BTC"), listing("ETH"), listing("SOL"), listing("DOGE")


def test_outcomes_come_when_the_last_coin_of_the_timeframe_is_in():
    job = AnalysisJob("1h", (BTC, ETH, SOL), BTC, min_overlap=30, max_lag=3)
    eth, sol, btc = series(1), series(2), series(3)
    assert job.rsi_ready(ETH, eth) == [] and job.finished == 1
    assert job.rsi_ready(BTC, btc) == [] and not job.done
    outcomes = job.rsi_ready(SOL, sol)
    assert job.done and job.finished == 3
    by = {o.listing.symbol: o for o in outcomes}
    assert set(by) == {"BTC", "ETH", "SOL"}
    assert abs(by["BTC"].correlation - 1.0) < 1e-12
    assert abs(by["ETH"].correlation - eth.corr(btc)) < 1e-12 and by["ETH"].n_points == 200
    expected_lag, expected_r = best_lag(lag_profile(eth, btc, 3_600_000, 3, 30))
    assert by["ETH"].metrics["best_lag"] == expected_lag
    assert abs(by["ETH"].metrics["best_lag_correlation"] - expected_r) < 1e-12
    assert by["ETH"].metrics["ci_low"] <= by["ETH"].correlation <= by["ETH"].metrics["ci_high"]


def test_a_failed_benchmark_fails_every_coin_with_its_reason_once_all_are_in():
    job = AnalysisJob("4h", (BTC, ETH, SOL, DOGE), BTC, min_overlap=30)
    assert job.rsi_ready(ETH, series(1)) == []
    assert [(o.listing.symbol, o.stage, o.reason) for o in job.failed_at(BTC, "fetch", "HTTP 503")] == [
        ("BTC", "fetch", "HTTP 503")]
    assert job.rsi_ready(SOL, series(2)) == []
    out = job.failed_at(DOGE, "rsi", "too few candles")
    assert [(o.listing.symbol, o.stage) for o in out] == [("DOGE", "rsi"), ("ETH", "correlation"),
                                                          ("SOL", "correlation")]
    assert {o.reason for o in out[1:]} == {"benchmark BTC has no 4h RSI (HTTP 503)"}
    assert job.done and job.failed == 4


def test_insufficient_overlap_and_duplicates():
    job = AnalysisJob("1d", (BTC, ETH, SOL), BTC, min_overlap=30)
    job.rsi_ready(BTC, series(3))
    late_listed = series(4, n=50, start="2025-01-08")  # overlaps the benchmark on 200 - 168 = 32 hours
    short = series(5, n=20, start="2025-01-09")
    assert job.rsi_ready(ETH, late_listed) == []
    assert job.rsi_ready(ETH, late_listed) == []  # a redelivery changes nothing
    by = {o.listing.symbol: o for o in job.rsi_ready(SOL, short)}
    assert by["ETH"].stage is None and by["ETH"].n_points == 32
    assert by["SOL"].stage == "correlation" and by["SOL"].reason.startswith("insufficient overlap")
    assert job.rsi_ready(SOL, short) == [] and job.failed_at(ETH, "rsi", "x") == []  # already finished
    assert job.done and job.finished == 3 and len(job.outcomes) == 3


def test_last_coin_failing_triggers_the_analysis():
    job = AnalysisJob("1h", (BTC, ETH, SOL), BTC, min_overlap=30)
    job.rsi_ready(BTC, series(3))
    job.rsi_ready(ETH, series(1))
    out = job.failed_at(SOL, "fetch", "unknown pair")
    assert [(o.listing.symbol, o.stage) for o in out][0] == ("SOL", "fetch")
    assert {o.listing.symbol for o in out[1:]} == {"BTC", "ETH"} and job.done
