"""cryptorsi.analytics: alignment, Pearson correlation, low-cap flags, selection."""

from __future__ import annotations

import doctest

import numpy as np
import pandas as pd
import pytest

from cryptorsi import analytics
from cryptorsi.analytics import (
    ConstantRSI,
    InsufficientOverlap,
    align,
    correlate,
    correlate_frame,
    low_cap_flags,
    low_cap_threshold,
    pearson,
    select,
)


def rsi_like(n: int, seed: int, start: str = "2024-01-01", freq: str = "h") -> pd.Series:
    """A bounded, autocorrelated series in (0, 100) on an hourly UTC index."""
    rng = np.random.default_rng(seed)
    values = 50 + 40 * np.tanh(np.cumsum(rng.normal(0, 0.2, n)) / 3)
    index = pd.date_range(start, periods=n, freq=freq, tz="UTC", name="open_time")
    return pd.Series(values, index=index)


def related(base: pd.Series, seed: int, noise: float) -> pd.Series:
    rng = np.random.default_rng(seed)
    return base * 0.8 + rng.normal(0, noise, base.size) + 5


def reference(a: pd.Series, b: pd.Series) -> tuple[float, int]:
    """Inner join + dropna, then numpy.corrcoef (independent of the module)."""
    both = pd.concat([a.rename("a"), b.rename("b")], axis=1, join="inner").dropna()
    return float(np.corrcoef(both["a"], both["b"])[0, 1]), len(both)


# ------------------------------------------------------------------------------------------------
# align / pearson / correlate


def test_align_inner_join_drops_nan_and_keeps_order():
    a = pd.Series([1.0, np.nan, 3.0, 4.0, 5.0], index=pd.date_range("2024-01-01", periods=5, freq="h"))
    b = pd.Series([30.0, 40.0, np.nan, 60.0], index=pd.date_range("2024-01-01 02:00", periods=4, freq="h"))
    x, y, index = align(a, b)
    # hour 1: a is NaN; hour 4: b is NaN; hours 0 and 5: only one side exists
    assert index.equals(pd.DatetimeIndex(["2024-01-01 02:00", "2024-01-01 03:00"]))
    np.testing.assert_array_equal(x, [3.0, 4.0])
    np.testing.assert_array_equal(y, [30.0, 40.0])
    assert x.dtype == np.float64 and y.dtype == np.float64


def test_align_same_index_and_disjoint():
    a = rsi_like(50, 1)
    b = rsi_like(50, 2)
    x, y, index = align(a, b)
    assert index.equals(a.index) and x.size == y.size == 50
    later = rsi_like(50, 3, start="2025-01-01")
    x, y, index = align(a, later)
    assert x.size == y.size == len(index) == 0


def test_align_rejects_duplicate_timestamps():
    a = pd.Series([1.0, 2.0], index=pd.DatetimeIndex(["2024-01-01", "2024-01-01"]))
    with pytest.raises(ValueError, match="duplicate"):
        align(a, rsi_like(5, 1))


@pytest.mark.parametrize("seed", range(5))
def test_correlate_matches_corrcoef_and_pandas_with_offsets_and_gaps(seed):
    btc = rsi_like(3000, seed)
    coin = related(btc, seed + 10, noise=5.0)
    coin = coin.iloc[400:2800].copy()  # listed later, history ends earlier
    coin.iloc[[5, 6, 7, 100, 1500]] = np.nan  # missing candles on the coin
    btc = btc.copy()
    btc.iloc[[1000, 1001, 2000]] = np.nan  # and on the benchmark
    btc = btc.drop(btc.index[[1200, 1201]])  # absent rows
    expected, n_expected = reference(coin, btc)
    corr, n = correlate(coin, btc, min_overlap=100)
    assert n == n_expected == 2400 - 5 - 3 - 2
    assert corr == pytest.approx(expected, abs=1e-12)
    assert corr == pytest.approx(coin.corr(btc), abs=1e-12)


def test_correlate_negative_and_perfect():
    btc = rsi_like(500, 7)
    corr, n = correlate(100 - btc, btc, min_overlap=10)
    assert corr == pytest.approx(-1.0, abs=1e-12) and -1.0 <= corr and n == 500
    corr, _ = correlate(btc * 2 + 1, btc, min_overlap=10)
    assert corr == pytest.approx(1.0, abs=1e-12) and corr <= 1.0


def test_insufficient_overlap_message_and_counts():
    btc = rsi_like(100, 1)
    coin = rsi_like(12, 2, start=str(btc.index[-12].tz_localize(None)))
    with pytest.raises(InsufficientOverlap) as info:
        correlate(coin, btc, min_overlap=30)
    assert str(info.value) == "insufficient overlap: 12 common candles, 30 needed"
    assert str(info.value).startswith("insufficient overlap: ")
    assert isinstance(info.value, ValueError)
    assert (info.value.n_points, info.value.min_overlap) == (12, 30)
    corr, n = correlate(coin, btc, min_overlap=12)  # exactly enough
    assert n == 12 and np.isfinite(corr)


def test_fewer_than_two_points_is_always_insufficient():
    btc = rsi_like(10, 1)
    with pytest.raises(InsufficientOverlap, match="^insufficient overlap: 1 common candles, 2 needed$"):
        correlate(btc.iloc[:1], btc, min_overlap=0)


@pytest.mark.parametrize("bad", [-1, 2.5, "3", None, True])
def test_min_overlap_validation(bad):
    with pytest.raises(ValueError, match="min_overlap"):
        correlate(rsi_like(10, 1), rsi_like(10, 2), min_overlap=bad)


def test_constant_rsi_raises():
    btc = rsi_like(200, 1)
    flat = pd.Series(100.0, index=btc.index)
    with pytest.raises(ValueError, match="^constant RSI: ") as info:
        correlate(flat, btc, min_overlap=10)
    assert isinstance(info.value, ConstantRSI) and "coin" in str(info.value)
    with pytest.raises(ConstantRSI, match="^constant RSI: .*benchmark"):
        correlate(btc, flat, min_overlap=10)
    # constant only over the common candles (varies before the benchmark starts)
    coin = btc.copy()
    coin.iloc[100:] = 42.0
    with pytest.raises(ConstantRSI):
        correlate(coin, btc.iloc[100:], min_overlap=10)


def test_pearson_edge_cases_and_precision():
    assert np.isnan(pearson([], []))
    assert np.isnan(pearson([1.0], [2.0]))
    assert np.isnan(pearson([3.0, 3.0, 3.0], [1.0, 2.0, 3.0]))
    assert np.isnan(pearson([1.0, 2.0, 3.0], [0.1, 0.1, 0.1]))
    # constant values whose mean is not exactly representable are still constant
    assert np.isnan(pearson(np.full(1001, 0.1), np.arange(1001.0)))
    with pytest.raises(ValueError):
        pearson([1.0, 2.0], [1.0, 2.0, 3.0])
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, 10_000)
    y = 0.5 * x + rng.normal(0, 1, 10_000)
    base = np.corrcoef(x, y)[0, 1]
    assert pearson(x, y) == pytest.approx(base, abs=1e-12)
    # a large common offset: centring first keeps the precision
    assert pearson(x + 1e6, y - 1e6) == pytest.approx(base, abs=1e-9)


# ------------------------------------------------------------------------------------------------
# correlate_frame == correlate per column


def frame_case():
    btc = rsi_like(2000, 0)
    btc.iloc[[10, 500, 501]] = np.nan
    cols = {}
    for j in range(150):  # more than one internal chunk of columns
        s = related(btc, 100 + j, noise=2.0 + j % 17)
        if j % 5 == 1:
            s.iloc[: 50 * j] = np.nan  # late listings, some beyond the end
        if j % 7 == 2:
            s.iloc[[3 * j, 3 * j + 1, 1700]] = np.nan  # gaps
        cols[f"coin{j}"] = s
    cols["flat"] = pd.Series(55.1, index=btc.index)  # its mean is not exactly 55.1: centring alone
    # would leave tiny non-zero values, only the exact constant test gives the right answer
    cols["empty"] = pd.Series(np.nan, index=btc.index)
    frame = pd.DataFrame(cols)
    frame.iloc[:1990, frame.columns.get_loc("coin3")] = np.nan  # 10 points left
    # a benchmark that is constant over one coin's short history
    btc_flat_tail = btc.copy()
    btc_flat_tail.iloc[1950:] = 50.0
    return frame, btc, btc_flat_tail


@pytest.mark.parametrize("min_overlap", [0, 10, 11, 30, 1000])  # coin3 has exactly 10 points
def test_correlate_frame_equals_correlate(min_overlap):
    frame, btc, _ = frame_case()
    out = correlate_frame(frame, btc, min_overlap)
    assert list(out.columns) == ["correlation", "n_points", "reason"]
    assert out.index.equals(frame.columns)
    for coin in frame.columns:
        row = out.loc[coin]
        try:
            corr, n = correlate(frame[coin], btc, min_overlap)
        except ValueError as exc:
            assert row["reason"] == str(exc), coin
            assert np.isnan(row["correlation"])
            x, _, _ = align(frame[coin], btc)
            assert row["n_points"] == x.size
        else:
            assert row["reason"] is None, coin
            assert row["n_points"] == n
            assert abs(row["correlation"] - corr) <= 1e-12, coin
    reasons = out["reason"].dropna()
    assert reasons.str.startswith("insufficient overlap: ").any() or min_overlap == 0
    assert out.loc["flat", "reason"].startswith("constant RSI: ")
    assert out.loc["empty", "reason"].startswith("insufficient overlap: 0 common candles")


def test_correlate_frame_constant_benchmark_over_the_overlap():
    frame, _, btc_flat_tail = frame_case()
    late = frame[["coin3", "coin0"]]
    out = correlate_frame(late, btc_flat_tail, 5)
    with pytest.raises(ConstantRSI) as info:
        correlate(late["coin3"], btc_flat_tail, 5)
    assert out.loc["coin3", "reason"] == str(info.value)
    assert "benchmark" in str(info.value)
    assert out.loc["coin0", "reason"] is None


def test_correlate_frame_with_different_benchmark_index():
    frame, btc, _ = frame_case()
    shifted = btc.iloc[300:].copy()
    extra = pd.Series([60.0, 61.0], index=pd.date_range("2030-01-01", periods=2, freq="h", tz="UTC"))
    bench = pd.concat([shifted, extra])
    out = correlate_frame(frame[["coin0", "coin2"]], bench, 10)
    for coin in ("coin0", "coin2"):
        corr, n = correlate(frame[coin], bench, 10)
        assert out.loc[coin, "n_points"] == n
        assert abs(out.loc[coin, "correlation"] - corr) <= 1e-12


# ------------------------------------------------------------------------------------------------
# low caps


def test_low_cap_threshold_matches_numpy_percentile():
    rng = np.random.default_rng(4)
    caps = list(10 ** rng.uniform(5, 12, 300))
    dirty = caps + [None, float("nan"), 0, 0.0, -5.0, float("inf")]
    positive = np.array(caps)
    for pct in (0, 10, 25, 50, 90, 100):
        assert low_cap_threshold(dirty, pct) == pytest.approx(np.percentile(positive, pct), rel=1e-12)
    series = pd.Series(dirty, dtype=object)
    assert low_cap_threshold(series, 25) == pytest.approx(np.percentile(positive, 25), rel=1e-12)
    assert low_cap_threshold(pd.Series([1.0, None, 3.0], dtype="Float64"), 50) == 2.0
    assert low_cap_threshold([None, 0, float("nan")], 50) is None
    assert low_cap_threshold([], 50) is None


def test_low_cap_flags():
    caps = [10.0, 25.0, 25.000001, None, float("nan"), 0, -3.0, float("inf"), 1]
    flags = low_cap_flags(caps, 25.0)
    assert flags.dtype == bool and flags.shape == (9,)
    assert flags.tolist() == [True, True, False, False, False, False, False, False, True]
    assert not low_cap_flags(caps, None).any() and low_cap_flags(caps, None).shape == (9,)
    assert not low_cap_flags(caps, float("nan")).any()
    assert low_cap_flags(pd.Series([5.0, np.nan]), 10).tolist() == [True, False]
    assert low_cap_flags(np.array([5, 50]), 10).tolist() == [True, False]
    threshold = low_cap_threshold(caps, 50)
    assert low_cap_flags(caps, threshold).sum() >= 1


# ------------------------------------------------------------------------------------------------
# select


def correlations_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "coin_id": ["a", "b", "c", "d", "e", "f", "g", "h"],
            "symbol": ["A", "B", "C", "D", "E", "F", "G", "H"],
            "timeframe": ["1h", "1h", "4h", "1h", "4h", "1d", "1h", "1h"],
            "correlation": [0.91, 0.75, -0.95, 0.99, 0.70, np.nan, 0.80, 0.69999],
            "n_points": [500, 400, 300, 200, 100, 0, 50, 60],
            "market_cap": [1e6, 2e6, 3e6, 9e9, 5e6, 1e5, None, 4e6],
            "low_cap": [True, True, True, False, True, True, None, True],
            "reason": [None, None, None, None, None, "insufficient overlap: 0 common candles, 30 needed", None, None],
        },
        index=[10, 11, 12, 13, 14, 15, 16, 17],
    )


def test_select_filters_and_sorts():
    frame = correlations_frame()
    out = select(frame, 0.7)
    assert out["coin_id"].tolist() == ["a", "b", "e", "c"]  # d is not low cap, g unknown, f NaN, h < 0.7
    assert out["correlation"].tolist() == [0.91, 0.75, 0.70, -0.95]
    assert out.index.tolist() == [0, 1, 2, 3]
    assert list(out.columns) == list(frame.columns)
    assert out["low_cap"].tolist() == [True] * 4
    assert select(frame, 0.0)["coin_id"].tolist() == ["a", "b", "e", "h", "c"]
    assert select(frame, 1.0).empty
    assert list(select(frame, 1.0).columns) == list(frame.columns)


def test_select_ties_keep_the_input_order():
    frame = correlations_frame()
    frame["correlation"] = 0.8
    frame["low_cap"] = True
    shuffled = frame.iloc[[3, 0, 7, 5, 1, 6, 2, 4]]
    out = select(shuffled, 0.5)
    assert out["coin_id"].tolist() == shuffled["coin_id"].tolist()
    frame.loc[frame["coin_id"] == "e", "correlation"] = 0.9
    assert select(frame.iloc[::-1], 0.5)["coin_id"].tolist() == ["e", "h", "g", "f", "d", "c", "b", "a"]


def test_select_validation():
    frame = correlations_frame()
    with pytest.raises(ValueError, match="market_cap"):
        select(frame.drop(columns=["market_cap"]), 0.5)
    for bad in (-0.1, 1.5, float("nan"), "0.5", None):
        with pytest.raises(ValueError, match="threshold"):
            select(frame, bad)
    with pytest.raises(TypeError):
        select(frame.to_dict(), 0.5)


def test_module_docstring_examples():
    failures, tried = doctest.testmod(analytics)
    assert tried >= 5 and failures == 0
