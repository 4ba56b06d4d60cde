"""A full sample run through the agents, checked against independent recomputation from the database."""

import io
import sqlite3

import numpy as np
import pandas as pd
import pytest
import talib

import cryptorsi as cr
from conftest import cryptorsi_threads

TIMEFRAMES = ("1h", "4h", "1d")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    db = tmp_path_factory.mktemp("run") / "sample.db"
    out = io.StringIO()
    config = cr.AnalysisConfig(source="sample", top_n_coins=40, timeframes=TIMEFRAMES, weeks=50, db_path=str(db))
    result = cr.run_analysis(config, progress=False, stream=out)
    assert not cryptorsi_threads()
    return result, cr.Store(str(db)), out.getvalue()


def ms_to_ts(ms):
    return pd.Timestamp(ms, unit="ms", tz="UTC")


def test_session_completed_and_every_coin_has_a_correlation_or_a_failure(run):
    result, store, _ = run
    sessions = store.sessions()
    assert sessions.iloc[-1]["session_id"] == result.session_id
    assert sessions.iloc[-1]["status"] == "completed"
    coins = store.coins(result.session_id)
    assert 20 <= len(coins) <= 40 and "BTC" in set(coins["symbol"])
    done = set(zip(result.correlations["coin_id"], result.correlations["timeframe"]))
    failed = set(zip(result.failures["coin_id"], result.failures["timeframe"]))
    assert not done & failed
    for coin_id in coins["coin_id"]:
        for tf in TIMEFRAMES:
            assert (coin_id, tf) in done | failed, (coin_id, tf)
    assert result.failures["reason"].str.len().min() > 0 if len(result.failures) else True
    pd.testing.assert_frame_equal(store.correlations(result.session_id), result.correlations)


def test_stored_rsi_equals_talib_over_the_stored_candles_of_its_window(run):
    result, store, _ = run
    windows = store.sessions().iloc[-1]["config"]["windows"]
    checked = 0
    for row in result.correlations.itertuples():
        start, end = windows[row.timeframe]
        candles = store.prices(row.symbol, row.timeframe, start=ms_to_ts(start), end=ms_to_ts(end),
                               session_id=result.session_id)
        assert candles.index.min() >= ms_to_ts(start) and candles.index.max() < ms_to_ts(end)
        expected = pd.Series(talib.RSI(candles["close"].to_numpy(), timeperiod=14), index=candles.index).dropna()
        stored = store.rsi(row.symbol, row.timeframe, result.session_id)
        assert stored.index.equals(expected.index)
        np.testing.assert_allclose(stored.to_numpy(), expected.to_numpy(), rtol=0, atol=1e-9)
        checked += 1
    assert checked == len(result.correlations) > 60


def test_correlations_equal_pearson_of_the_stored_rsis(run):
    result, store, _ = run
    btc = {tf: store.rsi("btc", tf, result.session_id) for tf in TIMEFRAMES}
    for row in result.correlations.itertuples():
        rsi = store.rsi(row.symbol, row.timeframe, result.session_id)
        joined = pd.concat([rsi, btc[row.timeframe]], axis=1, join="inner").dropna()
        assert row.n_points == len(joined)
        expected = np.corrcoef(joined.iloc[:, 0], joined.iloc[:, 1])[0, 1]
        assert abs(row.correlation - expected) <= 1e-9, row


def test_low_cap_flags_follow_the_percentile(run):
    result, store, _ = run
    caps = store.coins(result.session_id)["market_cap"].to_numpy(dtype=float)
    limit = np.percentile(caps[caps > 0], 25.0)
    expected = (result.correlations["market_cap"] > 0) & (result.correlations["market_cap"] <= limit)
    assert (result.correlations["low_cap"] == expected).all()
    assert result.correlations["low_cap"].any() and not result.correlations["low_cap"].all()
    sel = result.selected
    assert (sel["low_cap"] & (sel["correlation"].abs() >= 0.7)).all()
    assert list(sel["correlation"]) == sorted(sel["correlation"], reverse=True)


def test_display_and_repr_say_the_data_is_synthetic(run):
    result, _, text = run
    assert "SYNTHETIC" in text and result.session_id in text
    assert "synthetic" in repr(result)


def test_database_is_consistent(run):
    result, store, _ = run
    conn = sqlite3.connect(result.config.db_path)
    try:
        assert conn.execute("pragma integrity_check").fetchone()[0] == "ok"
        assert conn.execute("pragma journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()


def test_retune_recomputes_from_cached_candles(run):
    result, store, _ = run
    tuned = result.retune(rsi_period=21, correlation_threshold=0.6)
    assert tuned.config.rsi_period == 21 and tuned.config.correlation_threshold == 0.6
    windows = store.sessions().iloc[-1]["config"]["windows"]
    for symbol in ("BTC", result.correlations["symbol"].iloc[5]):
        start, end = windows["4h"]
        closes = store.prices(symbol, "4h", start=ms_to_ts(start), end=ms_to_ts(end))["close"]
        expected = pd.Series(talib.RSI(closes.to_numpy(), 21), index=closes.index).dropna()
        got = tuned.rsi(symbol, "4h")
        assert got.index.equals(expected.index)
        np.testing.assert_allclose(got.to_numpy(), expected.to_numpy(), atol=1e-9, rtol=0)
    assert set(tuned.correlations["timeframe"]) == set(TIMEFRAMES)
    # only the selection changes: same correlations, new threshold
    same = result.retune(correlation_threshold=0.5)
    pd.testing.assert_series_equal(same.correlations["correlation"], result.correlations["correlation"])
    assert len(same.selected) >= len(result.selected)
    with pytest.raises(ValueError, match="^top_n_coins"):
        result.retune(top_n_coins=5)
