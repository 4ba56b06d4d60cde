"""cryptorsi.indicators.rsi against TA-Lib (Wilder) and against a plain-pandas SMA formula, with
each backend (numpy; numba when it is installed), and the choice of backend."""

from __future__ import annotations

import doctest
import importlib.util
import logging
import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest

talib = pytest.importorskip("talib")

from cryptorsi import indicators  # noqa: E402
from cryptorsi.indicators import rsi, rsi_values  # noqa: E402

TOL = 1e-9
PERIODS = [2, 6, 14, 21, 50]
SCALES = [30_000.0, 1e-4]
HAVE_NUMBA = importlib.util.find_spec("numba") is not None
needs_numba = pytest.mark.skipif(not HAVE_NUMBA, reason="numba is not installed (extra 'fast')")


@pytest.fixture(autouse=True, params=["numpy", "numba"])
def backend(request):
    """Every test of this module runs with each backend (the numba ones skipped without numba);
    TestBackendChoice overrides this fixture."""
    if request.param == "numba" and not HAVE_NUMBA:
        pytest.skip("numba is not installed (extra 'fast')")
    previous = indicators.set_backend(request.param)
    assert indicators.get_backend() == request.param
    yield request.param
    indicators.set_backend(previous)


# ------------------------------------------------------------------------------------------------
# helpers


def walk(n: int, seed: int, scale: float = 30_000.0, vol: float = 0.01) -> np.ndarray:
    """Seeded geometric random walk around ``scale``."""
    rng = np.random.default_rng(seed)
    return scale * np.exp(np.cumsum(rng.normal(0.0, vol, n)))


def talib_rsi(values: np.ndarray, period: int) -> np.ndarray:
    """TA-Lib on the valid values only, realigned to the input (TA-Lib garbles interior NaN)."""
    values = np.asarray(values, dtype=np.float64)
    out = np.full(values.shape, np.nan)
    valid = np.flatnonzero(np.isfinite(values))
    if valid.size:
        out[valid] = talib.RSI(values[valid], timeperiod=period)
    return out


def sma_reference(values: np.ndarray, period: int) -> np.ndarray:
    """The original SMA formula, plain pandas, on the valid values, realigned; NaN before valid
    position ``period`` (where the original mixes in a fake zero change)."""
    values = np.asarray(values, dtype=np.float64)
    out = np.full(values.shape, np.nan)
    valid = np.flatnonzero(np.isfinite(values))
    close = pd.Series(values[valid])
    delta = close.diff()
    gain = delta.where(delta > 0, 0).rolling(period).mean()
    loss = (-delta.where(delta < 0, 0)).rolling(period).mean()
    rs = gain / loss
    ref = (100 - 100 / (1 + rs)).where(loss != 0, 100.0).to_numpy().copy()
    ref[:period] = np.nan
    out[valid] = ref
    return out


def assert_same(ours, expected, tol: float = TOL) -> None:
    """Same NaN pattern, and |ours - expected| <= tol elsewhere."""
    ours = np.asarray(ours, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert ours.shape == expected.shape
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(expected), err_msg="NaN positions differ")
    both = ~np.isnan(expected)
    if both.any():
        worst = np.max(np.abs(ours[both] - expected[both]))
        assert worst <= tol, f"max |diff| {worst:.3g} > {tol}"


# ------------------------------------------------------------------------------------------------
# Wilder == TA-Lib


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("period", PERIODS)
def test_series_matches_talib(period, scale):
    close = walk(3000, seed=period, scale=scale)
    index = pd.date_range("2024-01-01", periods=close.size, freq="h", tz="UTC", name="open_time")
    series = pd.Series(close, index=index, name="ETH")
    out = rsi(series, period)
    assert isinstance(out, pd.Series)
    assert out.index.equals(series.index) and out.name == "ETH" and out.dtype == np.float64
    assert_same(out.to_numpy(), talib.RSI(close, timeperiod=period))
    assert np.isnan(out.iloc[:period]).all() and not np.isnan(out.iloc[period:]).any()


@pytest.mark.parametrize("period", PERIODS)
def test_ndarray_1d_and_rsi_values_match_talib(period):
    close = walk(2500, seed=100 + period, scale=1e-4)
    expected = talib.RSI(close, timeperiod=period)
    out = rsi(close, period)
    assert isinstance(out, np.ndarray) and out.shape == close.shape and out.dtype == np.float64
    assert_same(out, expected)
    assert_same(rsi_values(close, period), expected)


@pytest.mark.parametrize("period", PERIODS)
def test_ndarray_2d_is_column_wise(period):
    cols = [walk(1500, seed=200 + period + j, scale=10.0 ** (j - 3)) for j in range(9)]
    arr = np.column_stack(cols)  # (n, k), C order: time-major
    out = rsi(arr, period)
    assert isinstance(out, np.ndarray) and out.shape == arr.shape and out.dtype == np.float64
    assert_same(out, np.column_stack([talib.RSI(c, timeperiod=period) for c in cols]))
    # Fortran-ordered input gives the same
    assert_same(rsi(np.asfortranarray(arr), period), out, tol=0.0)


@pytest.mark.parametrize("period", PERIODS)
def test_dataframe_matches_talib_per_column(period):
    rng = np.random.default_rng(period)
    n, k = 2000, 21  # more columns than one kernel chunk, not a multiple of it
    close = 10.0 ** rng.uniform(-4, 4.5, k) * np.exp(np.cumsum(rng.normal(0, 0.01, (n, k)), axis=0))
    index = pd.date_range("2023-01-01", periods=n, freq="4h", tz="UTC")
    frame = pd.DataFrame(close, index=index, columns=[f"coin{j}" for j in range(k)])
    out = rsi(frame, period)
    assert isinstance(out, pd.DataFrame)
    assert out.index.equals(frame.index) and out.columns.equals(frame.columns)
    assert (out.dtypes == np.float64).all()
    assert_same(out.to_numpy(), np.column_stack([talib.RSI(close[:, j], timeperiod=period) for j in range(k)]))


@pytest.mark.parametrize("period", [2, 14, 50])
def test_long_series_block_recursion(period):
    # long enough for the block-end recursion to be blocked again (not a plain lfilter)
    close = walk(40_000, seed=7, scale=30_000.0)
    assert_same(rsi(close, period), talib.RSI(close, timeperiod=period))
    frame = pd.DataFrame({f"c{j}": walk(6000, seed=j, scale=1e-4) for j in range(10)})
    expected = np.column_stack([talib.RSI(frame[c].to_numpy(), timeperiod=period) for c in frame])
    assert_same(rsi(frame, period).to_numpy(), expected)


# ------------------------------------------------------------------------------------------------
# missing values: late listings, gaps, delistings


def ragged_frame(n: int = 1500, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    cols = {}
    for j in range(14):
        cols[f"c{j}"] = walk(n, seed=seed * 100 + j, scale=10.0 ** rng.uniform(-4, 4.5))
    frame = pd.DataFrame(cols, index=pd.date_range("2024-01-01", periods=n, freq="h", tz="UTC"))
    v = frame.to_numpy(copy=True)
    v[:300, 1] = np.nan  # listed late
    v[:700, 2] = np.nan  # listed later
    v[:300, 3] = np.nan  # same listing date as c1 (grouped together)
    v[[10, 11, 500, 501, 502, 900], 4] = np.nan  # missing candles
    v[:250, 5] = np.nan  # late listing and gaps
    v[[400, 1000], 5] = np.nan
    v[1200:, 6] = np.nan  # delisted
    v[:n - 10, 7] = np.nan  # 10 valid values: too short for any period here
    v[:, 8] = np.nan  # never listed
    v[600, 9] = np.inf  # a bad print is a missing value too
    v[0, 10] = np.nan  # first candle missing
    v[-1, 11] = np.nan  # last candle missing
    return pd.DataFrame(v, index=frame.index, columns=frame.columns)


@pytest.mark.parametrize("period", PERIODS)
def test_dataframe_late_listings_gaps_delistings(period):
    frame = ragged_frame()
    out = rsi(frame, period)
    assert out.index.equals(frame.index) and out.columns.equals(frame.columns)
    expected = np.column_stack([talib_rsi(frame[c].to_numpy(), period) for c in frame])
    assert_same(out.to_numpy(), expected)
    # spot checks of the semantics, independent of TA-Lib
    late = out["c1"]
    assert late.iloc[: 300 + period].isna().all() and late.iloc[300 + period :].notna().all()
    gaps = out["c4"]
    assert gaps.iloc[[500, 501, 502, 900]].isna().all() and gaps.iloc[503:900].notna().all()
    assert out["c8"].isna().all()
    assert np.isnan(out["c9"].iloc[600]) and out["c9"].iloc[601:].notna().all()


@pytest.mark.parametrize("period", [6, 14])
def test_series_with_gaps_matches_compacted_talib(period):
    close = walk(2000, seed=11, scale=1e-4)
    close[:123] = np.nan
    close[[500, 777, 778, 1500]] = np.nan
    close[1900:] = np.nan
    series = pd.Series(close, index=pd.RangeIndex(5, 5 + close.size), name="x")
    out = rsi(series, period)
    assert out.index.equals(series.index)
    assert_same(out.to_numpy(), talib_rsi(close, period))
    assert_same(rsi(close, period), talib_rsi(close, period))


def test_gap_does_not_change_the_rest():
    # removing a candle only changes the RSI after it through the single merged change
    close = walk(800, seed=5)
    with_gap = close.copy()
    with_gap[400] = np.nan
    full, gapped = rsi(close, 14), rsi(with_gap, 14)
    assert_same(gapped[:400], full[:400], tol=0.0)
    assert np.isnan(gapped[400]) and not np.isnan(gapped[401:]).any()


# ------------------------------------------------------------------------------------------------
# flat stretches, short series


@pytest.mark.parametrize("period", PERIODS)
def test_flat_start_gives_zero_like_talib(period):
    close = np.concatenate([np.full(period + 30, 42_000.0), walk(400, seed=period, scale=42_000.0)])
    expected = talib.RSI(close, timeperiod=period)
    out = rsi(close, period)
    assert_same(out, expected)
    # both averages are 0 over the flat start: RSI 0 by TA-Lib's convention, exactly
    assert (out[period : period + 30] == 0.0).all()
    assert (expected[period : period + 30] == 0.0).all()


@pytest.mark.parametrize("period", PERIODS)
def test_constant_and_monotonic_series(period):
    flat = np.full(300, 0.0001)
    assert_same(rsi(flat, period), talib.RSI(flat, timeperiod=period))
    assert (rsi(flat, period)[period:] == 0.0).all()
    up = np.linspace(1.0, 2.0, 300)
    assert_same(rsi(up, period), talib.RSI(up, timeperiod=period))
    assert (rsi(up, period)[period:] == 100.0).all()
    down = up[::-1].copy()
    assert (rsi(down, period)[period:] == 0.0).all()


@pytest.mark.parametrize("period", [2, 14, 50])
def test_flat_stretch_after_moves_decays_like_talib(period):
    close = walk(600, seed=9)
    close = np.concatenate([close, np.full(300, close[-1]), walk(300, seed=10, scale=close[-1])])
    assert_same(rsi(close, period), talib.RSI(close, timeperiod=period))


@pytest.mark.parametrize("period", PERIODS)
@pytest.mark.parametrize("method", ["wilder", "sma"])
def test_short_series(period, method):
    for n in (0, 1, period - 1, period):
        out = rsi(pd.Series(walk(n, seed=1) if n else np.array([])), period, method)
        assert len(out) == n and out.isna().all()
        assert np.isnan(rsi_values(walk(n, seed=1) if n else np.array([]), period, method)).all()
    exact = walk(period + 1, seed=2)
    out = rsi(exact, period, method)
    assert np.isnan(out[:period]).all() and np.isfinite(out[period])
    if method == "wilder":
        assert_same(out, talib.RSI(exact, timeperiod=period))
    else:
        assert_same(out, sma_reference(exact, period))
    frame = pd.DataFrame({"short": walk(period, seed=3), "ok": walk(period, seed=4)})
    assert rsi(frame, period, method).isna().all().all()


def test_dataframe_shorter_than_period_and_empty():
    frame = pd.DataFrame(np.ones((5, 3)), columns=list("abc"))
    out = rsi(frame, 14)
    assert out.shape == (5, 3) and out.isna().all().all()
    empty = pd.DataFrame(index=pd.RangeIndex(4))
    assert rsi(empty, 14).shape == (4, 0)
    assert rsi(pd.DataFrame({"a": []}, dtype=float), 14).shape == (0, 1)


# ------------------------------------------------------------------------------------------------
# method="sma" against the original formula


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("period", PERIODS)
def test_sma_matches_original_formula(period, scale):
    close = walk(2000, seed=300 + period, scale=scale)
    close[700:760] = close[700]  # flat: gain == loss == 0 -> 100
    close[1000:1100] = np.maximum.accumulate(close[1000:1100])  # no loss -> 100
    out = rsi(pd.Series(close), period, "sma")
    assert_same(out.to_numpy(), sma_reference(close, period))
    assert (out.iloc[700 + period : 760] == 100.0).all()


def test_sma_after_a_crash_is_not_polluted_by_old_large_changes():
    # a coin falling from ~80 to ~1e-4: later windows hold changes 1e6 times smaller
    rng = np.random.default_rng(12)
    close = np.concatenate([
        80 * np.exp(np.cumsum(rng.normal(0, 0.05, 300))),
        np.geomspace(80, 1e-4, 60),
        1e-4 * np.exp(np.cumsum(rng.normal(0, 0.002, 1500))),
    ])
    for period in (2, 14, 50):
        assert_same(rsi(close, period, "sma"), sma_reference(close, period))


@pytest.mark.parametrize("period", [2, 14, 21])
def test_sma_dataframe_with_missing_values(period):
    frame = ragged_frame(seed=4)
    out = rsi(frame, period, method="sma")
    expected = np.column_stack([sma_reference(frame[c].to_numpy(), period) for c in frame])
    assert_same(out.to_numpy(), expected)


# ------------------------------------------------------------------------------------------------
# inputs, validation


def test_integer_and_nullable_and_object_inputs():
    close = np.round(walk(400, seed=8, scale=1000.0)).astype(np.int64)
    expected = talib.RSI(close.astype(np.float64), timeperiod=14)
    assert_same(rsi(pd.Series(close), 14).to_numpy(), expected)
    assert_same(rsi(close, 14), expected)
    nullable = pd.Series(close, dtype="Int64")
    nullable.iloc[50] = pd.NA
    assert_same(rsi(nullable, 14).to_numpy(), talib_rsi(np.where(np.arange(400) == 50, np.nan, close), 14))
    as_object = pd.Series([Decimal(int(v)) for v in close], dtype=object)
    assert_same(rsi(as_object, 14).to_numpy(), expected)
    mixed = pd.DataFrame({"f": close.astype(np.float32), "i": close})
    assert_same(rsi(mixed, 14)["i"].to_numpy(), expected)
    assert rsi(mixed, 14).dtypes.tolist() == [np.float64, np.float64]


@pytest.mark.parametrize("period", [0, 1, -14, 2.0, 14.5, "14", None, True])
def test_bad_period(period):
    with pytest.raises(ValueError, match="period"):
        rsi(pd.Series(walk(50, seed=1)), period)
    with pytest.raises(ValueError, match="period"):
        rsi_values(walk(50, seed=1), period)


@pytest.mark.parametrize("method", ["ema", "Wilder", "", None, 14, ("wilder",)])
def test_bad_method(method):
    with pytest.raises(ValueError, match="method"):
        rsi(pd.Series(walk(50, seed=1)), 14, method)


@pytest.mark.parametrize(
    "close",
    [
        pd.Series(["1.0", "2.0", "3.0"] * 10),
        pd.Series([True, False] * 20),
        pd.Series(pd.date_range("2024", periods=30)),
        pd.Series([1.0, "x"] * 15, dtype=object),
        pd.DataFrame({"ok": np.arange(30.0), "bad": ["a"] * 30}),
        np.array(["1", "2"] * 20),
        np.arange(30) + 1j,
    ],
)
def test_non_numeric_input_raises_type_error(close):
    with pytest.raises(TypeError, match="numeric"):
        rsi(close, 14)


def test_unsupported_containers():
    with pytest.raises(TypeError, match="Series, a DataFrame or a numpy ndarray"):
        rsi([1.0, 2.0, 3.0], 2)
    with pytest.raises(ValueError, match="1-D or 2-D"):
        rsi(np.ones((3, 3, 3)), 2)
    with pytest.raises(ValueError, match="1-D"):
        rsi_values(np.ones((30, 2)), 2)
    with pytest.raises(ValueError, match="finite"):
        rsi_values(np.array([1.0, 2.0, np.nan, 3.0]), 2)


def test_input_is_not_modified():
    frame = ragged_frame()
    before = frame.copy()
    rsi(frame, 14)
    rsi(frame, 14, "sma")
    pd.testing.assert_frame_equal(frame, before)
    close = walk(300, seed=2)
    copy = close.copy()
    rsi(close, 14)
    np.testing.assert_array_equal(close, copy)


def test_results_do_not_share_the_workspace():
    a, b = walk(500, seed=1), walk(500, seed=2, scale=1e-4)
    ra = rsi(a, 14)
    rb = rsi(b, 14)
    assert_same(ra, talib.RSI(a, timeperiod=14))
    assert_same(rb, talib.RSI(b, timeperiod=14))


def test_threads_get_correct_results():
    closes = [walk(3000 + 97 * i, seed=i, scale=10.0 ** (i % 7 - 3)) for i in range(24)]
    barrier = threading.Barrier(4)

    def job(i):
        if i < 4:
            barrier.wait(timeout=10)
        return rsi(closes[i], 14)

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(job, range(len(closes))))
    for close, out in zip(closes, results):
        assert_same(out, talib.RSI(close, timeperiod=14))


def test_module_docstring_examples():
    failures, tried = doctest.testmod(indicators, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert tried >= 3 and failures == 0


def test_read_only_strided_and_unaligned_inputs():
    close = walk(1000, seed=21)
    expected = talib.RSI(close, timeperiod=14)
    read_only = close.copy()
    read_only.flags.writeable = False
    assert_same(rsi(read_only, 14), expected)
    assert_same(rsi_values(read_only, 14), expected)
    assert_same(rsi(pd.Series(read_only), 14).to_numpy(), expected)
    strided = np.column_stack([close, 2 * close])[:, 0]
    assert not strided.flags.c_contiguous
    assert_same(rsi(strided, 14), expected)
    assert_same(rsi_values(strided, 14), expected)
    unaligned = np.empty(close.size * 8 + 1, np.uint8)[1:].view(np.float64)
    unaligned[:] = close
    assert not unaligned.flags.aligned
    assert_same(rsi(unaligned, 14), expected)
    frame = pd.DataFrame({"a": close, "b": close[::-1].copy()})
    frozen = frame.to_numpy(copy=True)
    frozen.flags.writeable = False
    expected_2d = np.column_stack([expected, talib.RSI(close[::-1].copy(), timeperiod=14)])
    assert_same(rsi(frozen, 14), expected_2d)
    assert_same(rsi(pd.DataFrame(frozen), 14).to_numpy(), expected_2d)


# ------------------------------------------------------------------------------------------------
# backends: numpy and numba agree; choosing one


def wide_ragged_frame(n: int = 2500, k: int = 60, seed: int = 17) -> pd.DataFrame:
    """Many columns with their own listing dates, gaps, delistings, bad prints and flat stretches."""
    rng = np.random.default_rng(seed)
    v = np.column_stack([walk(n, seed=seed * 1000 + j, scale=10.0 ** rng.uniform(-5, 5)) for j in range(k)])
    for j in range(k):
        kind = j % 6
        if kind == 1:
            v[: rng.integers(1, n - 5), j] = np.nan  # listed late (some too late for any RSI)
        elif kind == 2:
            v[rng.integers(0, n, rng.integers(1, 40)), j] = np.nan  # missing candles
        elif kind == 3:
            v[: rng.integers(1, n // 2), j] = np.nan
            v[rng.integers(n // 2, n):, j] = np.nan  # listed late, delisted
            v[rng.integers(0, n, 5), j] = rng.choice([np.inf, -np.inf])
        elif kind == 4:
            start = rng.integers(0, n - 300)
            v[start : start + 200, j] = v[start, j]  # flat stretch
            v[rng.integers(0, n, 3), j] = np.nan
    v[:, 5] = np.nan  # never listed
    return pd.DataFrame(v, columns=[f"c{j}" for j in range(k)])


class TestBackendChoice:
    @pytest.fixture(autouse=True)
    def backend(self, monkeypatch):
        """Overrides the module's parametrized fixture: these tests choose backends themselves. The
        environment variable and the module's backend state are put back afterwards."""
        monkeypatch.delenv("CRYPTORSI_RSI_BACKEND", raising=False)
        for name in ("_backend_choice", "_backend", "_numba_kernels", "_numba_error"):
            monkeypatch.setattr(indicators, name, getattr(indicators, name))
        indicators.set_backend(None)

    @needs_numba
    @pytest.mark.parametrize("method", ["wilder", "sma"])
    @pytest.mark.parametrize("period", [2, 14, 50])
    def test_backends_agree_on_ragged_frames(self, method, period):
        for frame in (wide_ragged_frame(seed=period), ragged_frame(seed=period)):
            indicators.set_backend("numpy")
            ours_numpy = rsi(frame, period, method).to_numpy()
            per_column_numpy = np.column_stack([rsi(frame[c], period, method).to_numpy() for c in frame])
            indicators.set_backend("numba")
            ours_numba = rsi(frame, period, method).to_numpy()
            per_column_numba = np.column_stack([rsi(frame[c], period, method).to_numpy() for c in frame])
            assert_same(ours_numba, ours_numpy, tol=1e-12)
            assert_same(per_column_numba, per_column_numpy, tol=1e-12)
            assert_same(rsi(frame.to_numpy(), period, method), ours_numpy, tol=1e-12)
            if method == "sma":  # the same operations in the same order: the same values
                np.testing.assert_array_equal(ours_numba, ours_numpy)
            else:
                expected = np.column_stack([talib_rsi(frame[c].to_numpy(), period) for c in frame])
                assert_same(ours_numba, expected)

    def test_importing_cryptorsi_does_not_import_numba(self):
        # a fresh interpreter: numba is imported by the first RSI computation that uses it, not before
        code = (
            "import sys, numpy as np, cryptorsi\n"
            "from cryptorsi import indicators\n"
            "assert 'numba' not in sys.modules\n"
            "indicators.rsi(np.linspace(1.0, 2.0, 40), 14)\n"  # CRYPTORSI_RSI_BACKEND=numpy
            "assert 'numba' not in sys.modules\n"
            "indicators.set_backend('auto')\n"
            "indicators.rsi(np.linspace(1.0, 2.0, 40), 14)\n"  # small: "auto" does not load numba for it
            "print(indicators.get_backend(), 'numba' in sys.modules)\n"
        )
        env = {**os.environ, "CRYPTORSI_RSI_BACKEND": "numpy"}
        done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                              timeout=240)
        assert done.returncode == 0, done.stderr
        assert done.stdout.split() == ["numpy", "False"]

    def test_auto_uses_numba_once_loaded_or_for_a_big_call(self, monkeypatch):
        monkeypatch.setattr(indicators, "_numba_kernels", None)
        monkeypatch.setattr(indicators, "_numba_error", None)
        frame = ragged_frame()
        expected = np.column_stack([talib_rsi(frame[c].to_numpy(), 14) for c in frame])
        indicators.set_backend("auto")
        monkeypatch.setattr(indicators, "AUTO_NUMBA_MIN_VALUES", frame.size + 1)
        assert_same(rsi(frame, 14).to_numpy(), expected)
        assert indicators._numba_kernels is None and indicators.get_backend() == "numpy"
        monkeypatch.setattr(indicators, "AUTO_NUMBA_MIN_VALUES", frame.size)  # this call is big enough
        assert_same(rsi(frame, 14).to_numpy(), expected)
        assert indicators.get_backend() == ("numba" if HAVE_NUMBA else "numpy")
        assert (indicators._numba_kernels is not None) == HAVE_NUMBA
        # loaded: every call uses it, small ones too
        close = walk(300, seed=5)
        assert_same(rsi(close, 14), talib.RSI(close, timeperiod=14))

    def test_environment_variable(self, monkeypatch):
        monkeypatch.setattr(indicators, "_numba_kernels", None)  # as in a new process
        close = pd.Series(walk(300, seed=3))
        expected = talib.RSI(close.to_numpy(), timeperiod=14)
        for value, used in [("numpy", "numpy"), (" NumPy ", "numpy"), ("", "numpy"), ("auto", "numpy")]:
            monkeypatch.setenv("CRYPTORSI_RSI_BACKEND", value)
            indicators.set_backend(None)  # forget the resolved backend: read the variable again
            assert_same(rsi(close, 14).to_numpy(), expected)
            assert indicators.get_backend() == used
        if HAVE_NUMBA:
            monkeypatch.setenv("CRYPTORSI_RSI_BACKEND", "numba")
            indicators.set_backend(None)
            assert indicators.get_backend() == "numba"
        monkeypatch.setenv("CRYPTORSI_RSI_BACKEND", "fortran")
        indicators.set_backend(None)
        with pytest.raises(ValueError, match="CRYPTORSI_RSI_BACKEND"):
            rsi(close, 14)
        with pytest.raises(ValueError, match="CRYPTORSI_RSI_BACKEND"):
            indicators.get_backend()
        # set_backend() takes precedence over the variable
        assert indicators.set_backend("numpy") is None
        assert_same(rsi(close, 14).to_numpy(), expected)

    def test_set_backend_returns_the_previous_choice_and_checks_names(self, monkeypatch):
        monkeypatch.setattr(indicators, "_numba_kernels", None)  # as in a new process
        assert indicators.set_backend("numpy") is None
        assert indicators.get_backend() == "numpy"
        assert indicators.set_backend("auto") == "numpy"
        assert indicators.get_backend() == "numpy"  # numba is not loaded
        if HAVE_NUMBA:
            assert indicators.set_backend("numba") == "auto"
            assert indicators.set_backend("auto") == "numba"
            assert indicators.get_backend() == "numba"  # loaded now: "auto" uses it
        for bad in ["cuda", "", "num ba", 1, True]:
            with pytest.raises(ValueError, match="backend"):
                indicators.set_backend(bad)
        assert indicators.set_backend(None) == "auto"
        assert indicators.BACKENDS == ("auto", "numpy", "numba")

    def test_forcing_numba_without_numba_raises_and_auto_falls_back(self, monkeypatch, caplog):
        monkeypatch.setitem(sys.modules, "numba", None)  # `import numba` raises ImportError
        monkeypatch.setattr(indicators, "_numba_kernels", None)
        monkeypatch.setattr(indicators, "_numba_error", None)
        close = walk(500, seed=4)
        expected = talib.RSI(close, timeperiod=14)
        indicators.set_backend("numpy")
        with pytest.raises(ImportError, match=r"numba RSI backend is not available.*cryptorsi\[fast\]"):
            indicators.set_backend("numba")
        assert indicators.get_backend() == "numpy"  # the choice is unchanged
        assert_same(rsi(close, 14), expected)
        # asked for by the environment variable: the RSI calls raise, every time
        monkeypatch.setenv("CRYPTORSI_RSI_BACKEND", "numba")
        indicators.set_backend(None)
        for _ in range(2):
            with pytest.raises(ImportError, match="numba RSI backend is not available"):
                rsi(pd.Series(close), 14)
            with pytest.raises(ImportError, match="numba RSI backend is not available"):
                rsi_values(close, 14)
        # "auto", for a call big enough to load numba, falls back to numpy silently, with a DEBUG record why
        monkeypatch.setattr(indicators, "_numba_error", None)
        monkeypatch.setattr(indicators, "AUTO_NUMBA_MIN_VALUES", 0)
        monkeypatch.setenv("CRYPTORSI_RSI_BACKEND", "auto")
        indicators.set_backend(None)
        with caplog.at_level(logging.DEBUG, logger="cryptorsi.indicators"):
            out = rsi(close, 14)
        assert indicators.get_backend() == "numpy"
        assert_same(out, expected)
        assert any(r.levelno == logging.DEBUG and "numba RSI backend unavailable" in r.getMessage()
                   for r in caplog.records)
        assert not any(r.levelno > logging.DEBUG for r in caplog.records)

    @needs_numba
    def test_numba_without_a_writable_cache_compiles_in_memory(self, monkeypatch, caplog):
        import numba
        from numba.core import caching

        if not isinstance(getattr(caching.CacheImpl, "_locator_classes", None), list):
            pytest.skip("numba's cache locators are not where this test expects them")
        # no cache locator at all: what numba meets when no cache directory is writable
        monkeypatch.setattr(caching.CacheImpl, "_locator_classes", [])
        monkeypatch.setattr(numba.core.config, "CACHE_LOCATOR_CLASSES", "", raising=False)

        def plain(a):
            return a + 1

        with pytest.raises(RuntimeError, match="no locator available"):
            numba.njit(cache=True)(plain)
        monkeypatch.setattr(indicators, "_numba_kernels", None)
        monkeypatch.setattr(indicators, "_numba_error", None)
        with caplog.at_level(logging.DEBUG, logger="cryptorsi.indicators"):
            indicators.set_backend("numba")
        assert indicators.get_backend() == "numba"
        assert "compiling it in memory" in caplog.text
        frame = ragged_frame()
        expected = np.column_stack([talib_rsi(frame[c].to_numpy(), 14) for c in frame])
        assert_same(rsi(frame, 14).to_numpy(), expected)
