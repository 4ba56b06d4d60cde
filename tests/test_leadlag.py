"""cryptorsi.leadlag against independent naive pandas/numpy computations, and on the sample market."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from cryptorsi import leadlag as ll
from cryptorsi.analytics import correlate_frame
from cryptorsi.indicators import rsi
from cryptorsi.market import Market, timeframe_ms
from cryptorsi.sources.sample import SAMPLE_END_MS, SampleSource

HOUR = 3_600_000
DAY = 86_400_000
WEEK = 7 * DAY


# ------------------------------------------------------------------------------------------ naive
def naive_profile(x: pd.Series, y: pd.Series, step_ms: int, max_lag: int = 12, min_overlap: int = 30) -> pd.Series:
    """Per lag: shift BTC's index by k * step, inner join, Pearson (NaN: too few points or constant)."""
    out = {}
    for k in range(-max_lag, max_lag + 1):
        shifted = y.dropna().copy()
        shifted.index = shifted.index + pd.Timedelta(milliseconds=k * step_ms)
        j = pd.concat([x.dropna().rename("x"), shifted.rename("y")], axis=1, join="inner")
        if len(j) < max(min_overlap, 2) or j["x"].nunique() < 2 or j["y"].nunique() < 2:
            out[k] = np.nan
        else:
            out[k] = np.corrcoef(j["x"], j["y"])[0, 1]
    return pd.Series(out, dtype=float)


def joined(x: pd.Series, y: pd.Series) -> pd.DataFrame:
    return pd.concat([x.rename("x"), y.rename("y")], axis=1, join="inner").dropna().sort_index()


def naive_rolling(x: pd.Series, y: pd.Series, window: int) -> pd.Series:
    j = joined(x, y)
    return j["x"].rolling(window).corr(j["y"]).iloc[window - 1:].replace([np.inf, -np.inf], np.nan)


def naive_acf(v: np.ndarray, k: int) -> float:
    c = v - v.mean()
    return float(np.dot(c[: len(c) - k], c[k:]) / np.dot(c, c))


def naive_n_eff(a: np.ndarray, b: np.ndarray, max_lag: int | None = None) -> float:
    n = len(a)
    if n < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return math.nan
    total = 0.0
    if max_lag is None:
        band = 2.0 / math.sqrt(n)
        for k in range(1, n // 4 + 1):
            ra, rb = naive_acf(a, k), naive_acf(b, k)
            if abs(ra) < band or abs(rb) < band:
                break
            total += ra * rb
    else:
        total = sum(naive_acf(a, k) * naive_acf(b, k) for k in range(1, min(max_lag, n - 1) + 1))
    if total <= 0:
        return float(n)
    return min(max(n / (1.0 + 2.0 * total), 3.0), float(n))


def naive_returns(close: pd.Series, step_ms: int) -> pd.Series:
    c = close[close > 0].dropna()
    lr = np.log(c).diff()
    return lr[c.index.to_series().diff() == pd.Timedelta(milliseconds=step_ms)]


# ------------------------------------------------------------------------------------------ data
def make_market(n_coins: int = 12, n: int = 1500, seed: int = 3, step: str = "h"):
    """Seeded closes of BTC and coins following it 0..6 candles late, RSI(14) of each, with late
    listings, missing candles and flat stretches (exactly constant RSI) mixed in."""
    rng = np.random.default_rng(seed)
    t = pd.date_range("2024-03-01", periods=n, freq=step, tz="UTC", name="open_time")
    z = rng.standard_normal(n)
    btc = pd.Series(30_000 * np.exp(np.cumsum(0.01 * z)), index=t)
    closes = {}
    for i in range(n_coins):
        lag = i % 7
        follow = np.r_[rng.standard_normal(lag), z[: n - lag]]
        rho = 0.3 + 0.65 * rng.random()
        r = 0.012 * (rho * follow + math.sqrt(1 - rho ** 2) * rng.standard_normal(n))
        closes[f"c{i:02d}"] = pd.Series(np.exp(np.cumsum(r)), index=t)
    closes = pd.DataFrame(closes)
    r_btc = rsi(btc)
    r_coins = rsi(closes)
    # late listings, missing candles (absent timestamps), flat stretches
    r_coins.iloc[: 400, 1] = np.nan
    r_coins.iloc[: 900, 4] = np.nan
    for g in rng.integers(100, n - 10, 12):
        r_coins.iloc[g: g + int(rng.integers(1, 6)), 2] = np.nan
    r_coins.iloc[500: 620, 3] = 42.0
    r_coins.iloc[200: 260, 5] = 55.5
    r_btc.iloc[700: 705] = np.nan  # the benchmark misses candles too
    return r_coins, r_btc.dropna(), closes, btc


@pytest.fixture(scope="module")
def market():
    return make_market()


def coin(r_coins: pd.DataFrame, name: str) -> pd.Series:
    return r_coins[name].dropna()


# ------------------------------------------------------------------------------------------ lag profile
@pytest.mark.parametrize("benchmark", ["with a hole", "complete", "shorter", "short"])
def test_lag_profile_equals_the_naive_timestamp_shift(market, benchmark):
    r_coins, r_btc, _, btc_close = market
    complete = rsi(btc_close).dropna()
    r_btc = {"with a hole": r_btc, "complete": complete, "shorter": complete.iloc[300:-200],
             "short": complete.iloc[600:700]}[benchmark]
    for name in r_coins.columns:
        x = coin(r_coins, name)
        got = ll.lag_profile(x, r_btc, HOUR)
        assert list(got.index) == list(range(-12, 13)) and got.index.name == "lag"
        assert got.index.dtype == np.int64
        expected = naive_profile(x, r_btc, HOUR)
        np.testing.assert_allclose(got.to_numpy(), expected.to_numpy(), rtol=0, atol=1e-12, equal_nan=True)
    profiles = ll.lag_profiles(r_coins, r_btc, HOUR)
    for name in r_coins.columns:
        np.testing.assert_allclose(profiles.loc[name].to_numpy(), naive_profile(coin(r_coins, name), r_btc, HOUR),
                                   rtol=0, atol=1e-12, equal_nan=True)


def test_lag_profile_shifts_by_durations_not_rows():
    """A coin that repeats BTC's RSI 3 candles later, with rows missing on both sides, peaks at +3."""
    _, r_btc, _, _ = make_market(6, 1200, seed=11)
    echo = r_btc.copy()
    echo.index = echo.index + pd.Timedelta(hours=3)
    echo = echo.drop(echo.index[[50, 51, 52, 300, 301, 640]])
    profile = ll.lag_profile(echo, r_btc, HOUR, max_lag=6)
    assert profile[3] == pytest.approx(1.0, abs=1e-12)
    assert ll.best_lag(profile) == (3, pytest.approx(1.0, abs=1e-12))
    assert (profile.drop(3).abs() < 1 - 1e-6).all()
    # a coin that leads BTC by 2 candles
    lead = r_btc.copy()
    lead.index = lead.index - pd.Timedelta(hours=2)
    assert ll.best_lag(ll.lag_profile(lead, r_btc, HOUR, max_lag=6))[0] == -2


def test_lag_profile_min_overlap_constant_and_edge_cases(market):
    r_coins, r_btc, _, _ = market
    late = coin(r_coins, "c04")  # listed late: ~600 points
    got = ll.lag_profile(late, r_btc, HOUR, max_lag=3, min_overlap=len(late) - 1)
    expected = naive_profile(late, r_btc, HOUR, 3, len(late) - 1)
    np.testing.assert_allclose(got.to_numpy(), expected.to_numpy(), atol=1e-12, equal_nan=True)
    assert got.isna().any() and got.notna().any()
    flat = pd.Series(50.0, index=r_btc.index)
    assert ll.lag_profile(flat, r_btc, HOUR).isna().all()
    assert ll.lag_profile(r_btc, flat, HOUR).isna().all()
    far = r_btc.copy()
    far.index = far.index + pd.Timedelta(days=1000)
    assert ll.lag_profile(far, r_btc, HOUR).isna().all()
    assert len(ll.lag_profile(late, r_btc, HOUR, max_lag=0)) == 1
    # a constant stretch that covers the whole overlap at some lags only
    x = pd.Series(np.r_[np.full(60, 50.0), [51.0]], index=r_btc.index[:61])
    got = ll.lag_profile(x, r_btc, HOUR, max_lag=4, min_overlap=5)
    np.testing.assert_allclose(got.to_numpy(), naive_profile(x, r_btc, HOUR, 4, 5).to_numpy(), atol=1e-12,
                               equal_nan=True)
    with pytest.raises(ValueError, match="max_lag"):
        ll.lag_profile(late, r_btc, HOUR, max_lag=-1)
    with pytest.raises(ValueError, match="step_ms"):
        ll.lag_profile(late, r_btc, 0)
    with pytest.raises(TypeError):
        ll.lag_profile(late.to_numpy(), r_btc, HOUR)


def test_lag_profile_off_grid_timestamps_fall_back_to_joins(market):
    r_coins, r_btc, _, _ = market
    x = coin(r_coins, "c02")
    odd = x.copy()
    odd.index = odd.index.where(np.arange(len(odd)) % 97 != 5, odd.index + pd.Timedelta(minutes=30))
    got = ll.lag_profile(odd, r_btc, HOUR)
    np.testing.assert_allclose(got.to_numpy(), naive_profile(odd, r_btc, HOUR).to_numpy(), atol=1e-12,
                               equal_nan=True)
    # a 2h step on hourly data: timestamps are off the 2h grid half of the time
    got = ll.lag_profile(x, r_btc, 2 * HOUR, max_lag=5)
    np.testing.assert_allclose(got.to_numpy(), naive_profile(x, r_btc, 2 * HOUR, 5).to_numpy(), atol=1e-12,
                               equal_nan=True)


def test_lag_profile_with_wandering_values_is_still_exact():
    """Not RSI: random walks far from their mean, where one-pass sums would cancel."""
    rng = np.random.default_rng(5)
    t = pd.date_range("2024-01-01", periods=3000, freq="4h", tz="UTC")
    y = pd.Series(1e4 + np.cumsum(rng.standard_normal(3000)), index=t)
    x = pd.Series(1e4 + np.cumsum(rng.standard_normal(3000)) + 0.5 * y.to_numpy(), index=t).iloc[50:]
    got = ll.lag_profile(x, y, 4 * HOUR)
    np.testing.assert_allclose(got.to_numpy(), naive_profile(x, y, 4 * HOUR).to_numpy(), atol=1e-12)


# ------------------------------------------------------------------------------------------ best lag
def test_best_lag_rules():
    s = lambda d: pd.Series(d, dtype=float)  # noqa: E731
    assert ll.best_lag(s({-3: 0.2, 0: 0.5, 2: -0.9})) == (2, -0.9)
    assert ll.best_lag(s({-2: 0.8, 2: -0.8, 1: 0.5})) == (2, -0.8)  # tie on |r|: the positive lag
    assert ll.best_lag(s({-1: 0.7, 3: 0.7, 2: -0.7})) == (-1, 0.7)  # tie: the smallest |k| first
    assert ll.best_lag(s({0: -0.9, 1: 0.9, -1: 0.9})) == (0, -0.9)
    assert ll.best_lag(s({-4: 0.6, 4: 0.6, 5: np.nan})) == (4, 0.6)
    lag, value = ll.best_lag(s({-1: np.nan, 0: np.nan}))
    assert lag is None and math.isnan(value)
    lag, value = ll.best_lag(s({}))
    assert lag is None and math.isnan(value)
    out = ll.best_lag(s({-5: 0.1, 7: 0.3}))
    assert out == (7, 0.3) and isinstance(out[0], int) and isinstance(out[1], float)


def test_best_lag_matches_the_definition_on_profiles(market):
    r_coins, r_btc, _, _ = market
    for name in r_coins.columns:
        profile = naive_profile(coin(r_coins, name), r_btc, HOUR)
        lag, value = ll.best_lag(ll.lag_profile(coin(r_coins, name), r_btc, HOUR))
        finite = profile.dropna()
        top = finite.abs().max()
        candidates = sorted((abs(k), -k) for k in finite.index if abs(finite[k]) >= top - 1e-12)
        assert lag == -candidates[0][1]
        assert value == pytest.approx(profile[lag], abs=1e-12)


# ------------------------------------------------------------------------------------------ rolling
@pytest.mark.parametrize("window", [30, 180])
def test_rolling_correlation_equals_pandas_rolling_corr(market, window):
    r_coins, r_btc, _, _ = market
    for name in r_coins.columns:
        x = coin(r_coins, name)
        got = ll.rolling_correlation(x, r_btc, window)
        expected = naive_rolling(x, r_btc, window)
        assert got.index.equals(expected.index)
        assert got.index[0] == joined(x, r_btc).index[window - 1]
        np.testing.assert_allclose(got.to_numpy(), expected.to_numpy(), rtol=0, atol=1e-9, equal_nan=True)
        assert np.isnan(got.to_numpy()).sum() == np.isnan(expected.to_numpy()).sum()
    # the flat stretch makes constant windows: NaN
    flat = ll.rolling_correlation(coin(r_coins, "c03"), r_btc, 30)
    assert flat.isna().sum() > 50


def test_rolling_correlation_wandering_values_and_short_series():
    rng = np.random.default_rng(8)
    t = pd.date_range("2024-01-01", periods=2500, freq="D", tz="UTC")
    y = pd.Series(5e3 + np.cumsum(rng.standard_normal(2500)) * 3, index=t)
    x = pd.Series(-2e3 + np.cumsum(rng.standard_normal(2500)) + 0.2 * y.to_numpy(), index=t)
    x.iloc[1000:1040] = 7.0  # exactly flat for longer than the window
    x.iloc[1500:1529] = 9.0  # flat but for one point of each window
    for window in (2, 3, 30, 97):
        got = ll.rolling_correlation(x, y, window)
        np.testing.assert_allclose(got.to_numpy(), naive_rolling(x, y, window).to_numpy(), atol=1e-9,
                                   equal_nan=True)
    short = ll.rolling_correlation(x.iloc[:20], y, 30)
    assert len(short) == 0 and isinstance(short.index, pd.DatetimeIndex)
    with pytest.raises(ValueError, match="window"):
        ll.rolling_correlation(x, y, 1)


def test_stability_and_default_window():
    assert ll.stability(pd.Series([0.9, -0.8, 0.2, np.nan]), 0.7) == pytest.approx(2 / 3)
    assert ll.stability(pd.Series([0.7, 0.69999]), 0.7) == 0.5
    assert math.isnan(ll.stability(pd.Series([np.nan]), 0.7))
    assert math.isnan(ll.stability(pd.Series([], dtype=float), 0.7))
    assert ll.stability(np.array([0.1, 0.2]), 0.0) == 1.0
    with pytest.raises(ValueError, match="threshold"):
        ll.stability(pd.Series([0.5]), 1.5)
    assert [ll.default_rolling_window(tf) for tf in ("1h", "4h", "1d", "3d", "1w")] == [720, 180, 30, 10, 10]
    assert ll.default_rolling_window(timeframe_ms("2h")) == 360
    with pytest.raises(ValueError):
        ll.default_rolling_window("7m")


# ------------------------------------------------------------------------------------------ significance
def test_effective_sample_size_equals_the_naive_sum(market):
    r_coins, r_btc, _, _ = market
    for name in ("c00", "c01", "c02", "c05", "c06"):
        j = joined(coin(r_coins, name), r_btc)
        a, b = j["x"].to_numpy(), j["y"].to_numpy()
        for max_lag in (None, 1, 10, 200):
            expected = naive_n_eff(a, b, max_lag)
            assert ll.effective_sample_size(a, b, max_lag) == pytest.approx(expected, rel=1e-9)
        # Series are aligned on their timestamps first
        assert ll.effective_sample_size(coin(r_coins, name), r_btc) == pytest.approx(naive_n_eff(a, b), rel=1e-9)


def test_n_eff_is_far_below_n_for_rsi_and_near_n_for_white_noise(market):
    r_coins, r_btc, _, _ = market
    j = joined(coin(r_coins, "c00"), r_btc)
    n = len(j)
    n_eff = ll.effective_sample_size(j["x"].to_numpy(), j["y"].to_numpy())
    assert 3 <= n_eff < n / 5
    rng = np.random.default_rng(2)
    for seed in range(5):
        a, b = np.random.default_rng(seed).standard_normal((2, 2000))
        assert 0.85 * 2000 <= ll.effective_sample_size(a, b) <= 2000
    smooth = np.convolve(rng.standard_normal(3000), np.ones(40) / 40, mode="valid")
    assert ll.effective_sample_size(smooth, smooth) < len(smooth) / 10
    # clipped to [3, n]; NaN when undefined
    assert ll.effective_sample_size(np.arange(50.0), np.arange(50.0), max_lag=49) == 3.0
    assert ll.effective_sample_size(np.arange(50.0), np.arange(50.0) ** 1.5) == pytest.approx(
        naive_n_eff(np.arange(50.0), np.arange(50.0) ** 1.5), rel=1e-9)
    assert math.isnan(ll.effective_sample_size([1.0, 2.0], [2.0, 1.0]))
    assert math.isnan(ll.effective_sample_size(np.ones(100), rng.standard_normal(100)))
    assert ll.effective_sample_size([1.0, np.nan, 3.0, 2.0, 5.0], [2.0, 1.0, np.nan, 4.0, 4.5]) == 3.0
    with pytest.raises(ValueError):
        ll.effective_sample_size(np.ones(5), np.ones(4))


def test_correlation_significance_formulas():
    p, lo, hi = ll.correlation_significance(0.5, 30)
    t = 0.5 * math.sqrt(28 / 0.75)
    assert p == pytest.approx(2 * stats.t.sf(t, 28), rel=1e-12)
    half = stats.norm.ppf(0.975) / math.sqrt(27)
    assert lo == pytest.approx(math.tanh(math.atanh(0.5) - half))
    assert hi == pytest.approx(math.tanh(math.atanh(0.5) + half))
    p90 = ll.correlation_significance(0.5, 30, confidence=0.9)
    assert p90[0] == p and lo < p90[1] < p90[2] < hi
    assert ll.correlation_significance(1.0, 10) == (0.0, 1.0, 1.0)
    assert ll.correlation_significance(-1.0, 3.0) == (0.0, -1.0, 1.0)
    p, lo, hi = ll.correlation_significance(0.3, 2.5)
    assert (lo, hi) == (-1.0, 1.0) and p == pytest.approx(2 * stats.t.sf(0.3 * math.sqrt(0.5 / 0.91), 0.5))
    assert math.isnan(ll.correlation_significance(0.3, 2.0)[0])
    assert all(math.isnan(v) for v in ll.correlation_significance(np.nan, 50))
    assert all(math.isnan(v) for v in ll.correlation_significance(0.2, np.nan))
    arr = ll.correlation_significance(np.array([0.1, 0.9]), np.array([40.0, 400.0]))
    assert all(isinstance(a, np.ndarray) and a.shape == (2,) for a in arr)
    with pytest.raises(ValueError, match="confidence"):
        ll.correlation_significance(0.1, 10, confidence=1.0)


def test_ci_always_contains_r_and_significance_grows_with_n_eff():
    r = np.concatenate([np.linspace(-1, 1, 201), [1e-300, -1e-17, 0.9999999999999999, -0.9999999999999999]])
    n_effs = np.array([3.0, 3.0000001, 3.5, 4, 10, 100, 1e4, 1e9])
    rr, nn = np.meshgrid(r, n_effs)
    p, lo, hi = ll.correlation_significance(rr, nn)
    assert (lo <= rr).all() and (rr <= hi).all()
    assert ((p >= 0) & (p <= 1)).all() and ((lo >= -1) & (hi <= 1)).all()
    # for a fixed r, a larger n_eff gives a smaller p-value and a narrower interval
    for value in (0.05, 0.3, -0.6, 0.95):
        p, lo, hi = ll.correlation_significance(np.full(n_effs.size, value), n_effs)
        assert (np.diff(p) <= 0).all() and (np.diff(hi - lo) <= 0).all()
        assert p[-1] < p[0]


# ------------------------------------------------------------------------------------------ returns
def test_return_correlation_skips_returns_across_gaps(market):
    _, _, closes, btc = market
    for name in ("c00", "c03", "c05"):
        c = closes[name].drop(closes.index[[10, 11, 400, 401, 402, 999]])
        b = btc.drop(btc.index[[500, 777]])
        j = pd.concat([naive_returns(c, HOUR), naive_returns(b, HOUR)], axis=1, join="inner").dropna()
        expected = np.corrcoef(j.iloc[:, 0], j.iloc[:, 1])[0, 1]
        assert ll.return_correlation(c, b, HOUR) == pytest.approx(expected, abs=1e-12)
        assert ll.return_correlation(c, b) == pytest.approx(expected, abs=1e-12)  # the step inferred
    # a single 2-candle return would be wrong: with every other candle missing there is no return
    sparse = closes["c00"].iloc[::2]
    assert math.isnan(ll.return_correlation(sparse, btc, HOUR))
    # a coin that moves with BTC but a candle late: RSI correlated at lag 1, returns at lag 0 not
    late = btc.copy()
    late.index = late.index + pd.Timedelta(hours=1)
    assert abs(ll.return_correlation(late, btc, HOUR)) < 0.1
    bad = closes["c01"].copy()
    bad.iloc[5] = 0.0
    bad.iloc[6] = -1.0
    j = pd.concat([naive_returns(bad, HOUR), naive_returns(btc, HOUR)], axis=1, join="inner").dropna()
    assert ll.return_correlation(bad, btc, HOUR) == pytest.approx(np.corrcoef(j.iloc[:, 0], j.iloc[:, 1])[0, 1])
    assert math.isnan(ll.return_correlation(closes["c00"].iloc[:10], btc, HOUR))
    assert math.isnan(ll.return_correlation(pd.Series(1.0, index=btc.index), btc, HOUR))


# ------------------------------------------------------------------------------------------ many coins
def test_analyze_many_equals_the_per_coin_functions(market):
    r_coins, r_btc, closes, btc = market
    r_coins = r_coins.copy()
    r_coins["flat"] = 50.0
    r_coins["short"] = np.nan
    r_coins.iloc[-20:, -1] = np.linspace(40, 60, 20)
    closes = closes.drop(closes.index[[30, 31, 600]])
    res = ll.analyze_many_detailed(r_coins, r_btc, HOUR, max_lag=8, rolling_window=48, threshold=0.5,
                                   min_overlap=30, close=closes, benchmark_close=btc)
    summary = res.summary
    assert list(summary.columns) == list(ll.SUMMARY_COLUMNS)
    assert list(summary.index) == list(r_coins.columns)
    assert str(summary["best_lag"].dtype) == "Int64"
    assert summary.equals(ll.analyze_many(r_coins, r_btc, HOUR, max_lag=8, rolling_window=48, threshold=0.5,
                                          min_overlap=30, close=closes, benchmark_close=btc))
    plain = correlate_frame(r_coins, r_btc, 30)
    np.testing.assert_allclose(summary["correlation"], plain["correlation"], atol=1e-12, equal_nan=True)
    assert (summary["n_points"] == plain["n_points"]).all()
    assert list(res.profiles.columns) == list(range(-8, 9)) and res.profiles.columns.name == "lag"
    assert list(res.rolling) == list(r_coins.columns)
    for name in r_coins.columns:
        x = r_coins[name].dropna()
        row = {col: summary.at[name, col] for col in summary.columns}
        profile = ll.lag_profile(x, r_btc, HOUR, max_lag=8)
        np.testing.assert_allclose(res.profiles.loc[name].to_numpy(), profile.to_numpy(), atol=1e-12, equal_nan=True)
        lag, value = ll.best_lag(profile)
        if lag is None:
            assert pd.isna(row["best_lag"]) and math.isnan(row["best_lag_correlation"])
        else:
            assert row["best_lag"] == lag and row["best_lag_correlation"] == pytest.approx(value, abs=1e-12)
        rolling = ll.rolling_correlation(x, r_btc, 48)
        pd.testing.assert_series_equal(res.rolling[name], rolling, check_exact=False, atol=1e-12, rtol=0)
        stab = ll.stability(rolling, 0.5)
        assert row["stability"] == pytest.approx(stab, abs=1e-12, nan_ok=True)
        assert row["n_windows"] == rolling.notna().sum()
        r0 = profile[0]
        if math.isnan(r0):
            assert all(math.isnan(row[k]) for k in ("n_eff", "p_value", "ci_low", "ci_high"))
        else:
            n_eff = ll.effective_sample_size(x, r_btc)
            assert row["n_eff"] == pytest.approx(n_eff, rel=1e-9)
            sig = ll.correlation_significance(r0, n_eff)
            assert (row["p_value"], row["ci_low"], row["ci_high"]) == pytest.approx(sig, rel=1e-9, abs=1e-300)
            assert row["ci_low"] <= row["correlation"] <= row["ci_high"]
            assert row["n_eff"] < row["n_points"] / 4
        if name in closes.columns:
            expected = ll.return_correlation(closes[name], btc, HOUR)
            assert row["return_correlation"] == pytest.approx(expected, abs=1e-12, nan_ok=True)
        else:
            assert math.isnan(row["return_correlation"]) and row["return_n_points"] == 0
    assert math.isnan(summary.loc["flat", "correlation"]) and pd.isna(summary.loc["flat", "best_lag"])
    assert summary.loc["short", "n_points"] == 20 and math.isnan(summary.loc["short", "stability"])
    assert len(res.rolling["short"]) == 0
    # the companions give the same numbers
    pd.testing.assert_frame_equal(ll.lag_profiles(r_coins, r_btc, HOUR, max_lag=8), res.profiles, atol=1e-12)
    companion = ll.rolling_correlations(r_coins, r_btc, 48)
    for name in r_coins.columns:
        pd.testing.assert_series_equal(companion[name], res.rolling[name], atol=1e-12)


def test_analyze_many_defaults_and_edges(market):
    r_coins, r_btc, _, _ = market
    summary = ll.analyze_many(r_coins.iloc[:, :3], r_btc, HOUR)
    window = ll.default_rolling_window("1h")
    assert summary["n_windows"].max() <= len(r_btc) - window + 1
    assert summary["return_correlation"].isna().all() and (summary["return_n_points"] == 0).all()
    assert summary["best_lag"].between(-12, 12).all()
    empty = ll.analyze_many(r_coins.iloc[:, :0], r_btc, HOUR)
    assert len(empty) == 0 and list(empty.columns) == list(ll.SUMMARY_COLUMNS)
    nothing = ll.analyze_many(r_coins.iloc[:, :2], r_btc.iloc[:0], HOUR)
    assert nothing["correlation"].isna().all() and nothing["best_lag"].isna().all()
    with pytest.raises(ValueError, match="together"):
        ll.analyze_many(r_coins, r_btc, HOUR, close=r_coins)
    with pytest.raises(ValueError, match="duplicate"):
        ll.analyze_many(pd.concat([r_coins.iloc[:, :1], r_coins.iloc[:, :1]], axis=1), r_btc, HOUR)


def test_unaligned_frames_and_units(market):
    """A union index in any order, other time units: the same numbers."""
    r_coins, r_btc, _, _ = market
    sub = r_coins.iloc[:, :4]
    shuffled = sub.sample(frac=1.0, random_state=1)
    shuffled.index = shuffled.index.as_unit("ms")
    a = ll.analyze_many(sub, r_btc, HOUR, rolling_window=60)
    b = ll.analyze_many(shuffled, r_btc.iloc[::-1].copy(), HOUR, rolling_window=60)
    pd.testing.assert_frame_equal(a, b, atol=1e-12)
    rolled = ll.rolling_correlations(shuffled, r_btc, 60)
    assert str(rolled["c00"].index.dtype) == "datetime64[ms, UTC]" and rolled["c00"].index.is_monotonic_increasing


# ------------------------------------------------------------------------------------------ sample market
@pytest.fixture(scope="module")
def sample_rsi():
    """RSI(14) of BTC and of the coins built with a known lead-lag or an on/off link, over the last 50
    weeks of the sample market (the default analysis window), per timeframe."""
    src = SampleSource(cache_size=64)
    profiles = src.profiles()
    special = profiles[profiles["kind"].isin(["lagged", "switching"])]
    out = {}
    for tf in ("1h", "4h", "1d"):
        closes = {}
        for cid, sym in [("bitcoin", "BTC"), *zip(special.index, special["symbol"])]:
            f = src.candles(Market(f"{sym}/USDC", sym, "USDC"), tf, SAMPLE_END_MS - 50 * WEEK, SAMPLE_END_MS)
            closes[cid] = f["close"]
        frame = rsi(pd.DataFrame(closes))
        out[tf] = (frame.drop(columns="bitcoin"), frame["bitcoin"].dropna())
    return profiles, out


def test_sample_lag_coins_are_recovered_on_their_timeframe(sample_rsi):
    profiles, data = sample_rsi
    lagged = profiles[profiles["lag_candles"].notna()]
    assert sorted(lagged["lag_candles"]) == [1, 1, 1, 3, 3, 3, 6, 6, 6]
    assert set(lagged["lag_timeframe"]) == {"1h", "4h", "1d"}
    for tf, group in lagged.groupby("lag_timeframe"):
        coins, btc = data[tf]
        summary = ll.analyze_many(coins[group.index], btc, timeframe_ms(tf))
        for cid, k in group["lag_candles"].items():
            assert summary.loc[cid, "best_lag"] == k, (cid, tf, summary.loc[cid].to_dict())
            assert summary.loc[cid, "best_lag_correlation"] > 0.8
            # and from the lag profile directly
            assert ll.best_lag(ll.lag_profile(coins[cid].dropna(), btc, timeframe_ms(tf)))[0] == k


def test_sample_on_off_coins_are_partly_stable(sample_rsi):
    profiles, data = sample_rsi
    switching = profiles.index[profiles["kind"] == "switching"]
    assert len(switching) == 3
    for tf, (coins, btc) in data.items():
        summary = ll.analyze_many(coins[switching], btc, timeframe_ms(tf), threshold=0.7)
        assert (summary["stability"] > 0.1).all() and (summary["stability"] < 0.9).all(), (tf, summary)
    # the lagged coins on their own timeframe are steadily linked at their lag, not at lag 0 (1h, 6 candles)
    coins, btc = data["1h"]
    steady = ll.analyze_many(coins[["sample-follower-1h-by-1"]], btc, HOUR, threshold=0.7)
    assert steady["stability"].iloc[0] > 0.9


def test_sample_significance_is_honest(sample_rsi):
    _, data = sample_rsi
    for tf, (coins, btc) in data.items():
        summary = ll.analyze_many(coins, btc, timeframe_ms(tf))
        ok = summary["correlation"].notna()
        assert ok.all()
        assert ((summary["ci_low"] <= summary["correlation"]) & (summary["correlation"] <= summary["ci_high"])).all()
        assert (summary["n_eff"] < summary["n_points"] / 5).all()  # RSI is strongly autocorrelated
