"""Lead-lag, rolling stability and honest significance of the RSI correlation with the benchmark.

Pure, vectorised functions (no threads, no I/O). The inputs are RSI series: ``pandas`` Series (or, for
many coins at once, a DataFrame with one column per coin on a union index) indexed by candle open
times (a ``DatetimeIndex``, UTC), NaN or absent rows where there is no value (missing candles, late
listings). ``step_ms`` is the candle length of the timeframe (:func:`cryptorsi.market.timeframe_ms`).
Every correlation is Pearson's (centred), NaN when fewer than ``min_overlap`` (and at least 2) points
are common or when either side is constant over them (exactly: all values equal).

Lead-lag
--------
``lag_profile(coin, btc, step_ms)[k]`` is the correlation between the coin's RSI at ``t`` and BTC's RSI
at ``t - k * step`` over every ``t`` where both exist, for ``k = -max_lag .. +max_lag``. The shift is
by ``k`` candle *durations on the timestamps*, never by row positions, so a missing candle does not
slide one series against the other. **Positive k: the coin follows BTC** by k candles; negative k: the
coin leads. It equals, lag by lag, shifting BTC's index by ``k * step``, an inner join and a Pearson.

``best_lag(profile)`` is the lag with the largest ``|correlation|``. Ties (equal ``|r|``, exactly) go
to the smallest ``|k|``, then to the positive lag (the coin following BTC, the usual hypothesis).
With no finite correlation it is ``(None, nan)``.

Rolling stability
-----------------
``rolling_correlation(coin, btc, window)``: the Pearson correlation over a trailing window of
``window`` *common* timestamps (the inner join of the two series), one value per common timestamp from
the window-th on; equal to ``a.rolling(window).corr(b)`` on the joined frame (NaN for a window where
either side is constant). :func:`default_rolling_window`: 30 days of candles of the timeframe (720 for
1h, 180 for 4h, 30 for 1d), at least 10. ``stability(rolling, threshold)`` = share of the (non-NaN)
windows whose ``|correlation| >= threshold``; NaN when there is no window.

Significance
------------
RSI is a smoothed, strongly autocorrelated series, so its ``n`` common points carry far less than ``n``
independent observations. For two series of ``n`` aligned points (the lag-0 common timestamps, taken as
consecutive observations: a rare missing candle simply joins its neighbours)::

    rho_x(k) = sum_{t=1}^{n-k} (x_t - mean x)(x_{t+k} - mean x) / sum_{t=1}^{n} (x_t - mean x)^2

(the usual biased estimator; likewise ``rho_y``), and Bartlett's effective sample size::

    n_eff = n / (1 + 2 * sum_{k=1}^{K} rho_x(k) * rho_y(k)),   clipped to [3, n]

**Truncation** (``max_lag=None``, the default): the sum stops before the first lag at which either
autocorrelation falls inside the white-noise band ``|rho| < 2 / sqrt(n)`` (no longer significant),
and never goes beyond ``K = n // 4``. With ``max_lag=m`` the sum runs over ``k = 1 .. min(m, n - 1)``.
A negative sum gives ``n_eff = n`` (the clip); fewer than 3 points, or a constant side, gives NaN.
For RSI(14) ``n_eff`` is typically ``n / 10 .. n / 20``; for white noise it is ``~n``.

``correlation_significance(r, n_eff)``:

* two-sided p-value of ``r`` from Student's t with ``n_eff - 2`` degrees of freedom:
  ``t = r * sqrt((n_eff - 2) / (1 - r^2))``, ``p = P(|T| > |t|)`` (``scipy.special.stdtr``); 0 for
  ``|r| = 1``, NaN for ``n_eff <= 2``;
* a 95 % confidence interval by Fisher's z: ``tanh(atanh(r) -/+ 1.95996 / sqrt(n_eff - 3))``;
  ``(-1, 1)`` when ``n_eff <= 3``. Always ``ci_low <= r <= ci_high`` (clamped against rounding).

Return correlation
------------------
``return_correlation(close, benchmark_close)``: Pearson of log returns ``log(c_t / c_{t - step})`` at
the timestamps where both coins have a return. A return exists at ``t`` only when the series has a
candle at ``t`` *and* at exactly ``t - step`` (both closes finite and > 0): a gap produces no
return (never a multi-candle one), and the candle after the gap starts afresh.

Many coins at once
------------------
:func:`analyze_many` returns one row per coin with every figure above (see :data:`SUMMARY_COLUMNS`);
:func:`analyze_many_detailed` returns it with the lag profiles (coins x lags) and the rolling series;
:func:`lag_profiles` and :func:`rolling_correlations` compute one part only. The single-coin functions
run the same kernels on one column, so both give the same numbers.

How it is fast
--------------
When the timestamps lie on a common grid of ``step`` (candle open times do), every series is laid on
the dense grid with NaN holes. Lag profiles: for each lag the six sums of a Pearson (``n, Sx, Sy, Sxx,
Syy, Sxy``) over the overlap; ``Sxy`` for all coins and lags is one matrix product of the coins'
centred values by the benchmark's shifted centred values; when a coin's values and the benchmark's
each form one run on the grid (no interior hole, the usual case) the other sums are the whole run's
minus what the lag cuts at its ends, otherwise products with the masks. Values are centred on each
series' mean first, so the sums do not cancel; a cell whose variance still comes out small next to
its sum of squares (a nearly flat overlap) is recomputed exactly, two-pass, on its own points, which
also decides constancy exactly. Rolling windows: the common points are cut in blocks of ``window``,
taken relative to their block's mean, and each window's sums (differences of running sums) are moved
to its first block's mean, so each window is centred locally; windows whose variance is small next to
their sum of squares or to the rounding error of the running sums are checked exactly (constant: NaN,
else recomputed two-pass). The benchmark's side of the window sums is computed once for all the coins
whose common points are all of its points. Autocorrelations: one FFT per series. Every BLAS call stays
below OpenBLAS's multithreading thresholds (as in :mod:`cryptorsi.indicators`): single-threaded,
predictable under load. Timestamps off a common grid fall back to per-lag joins (same results, slower).
``bench/bench_leadlag.py`` times it: about 0.4 s of CPU for 250 coins on 1h, 4h and 1d together (50
weeks, 25 lags) on the 2-core development VM, about 100 times less than the naive pandas computation.

>>> import numpy as np, pandas as pd
>>> t = pd.date_range("2024-01-01", periods=200, freq="h", tz="UTC")
>>> btc = pd.Series(np.sin(np.arange(200) / 7.0) * 20 + 50, index=t)
>>> coin = btc.shift(3).dropna()          # repeats BTC three candles later
>>> profile = lag_profile(coin, btc, 3_600_000, max_lag=5)
>>> best_lag(profile)
(3, 1.0)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Integral, Real
from statistics import NormalDist

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view
from scipy import special

from cryptorsi.analytics import align, correlate_frame, pearson
from cryptorsi.market import timeframe_ms

__all__ = [
    "lag_profile",
    "session_lag_profile",
    "session_rolling_correlation",
    "best_lag",
    "rolling_correlation",
    "default_rolling_window",
    "stability",
    "effective_sample_size",
    "correlation_significance",
    "return_correlation",
    "lag_profiles",
    "rolling_correlations",
    "analyze_many",
    "analyze_many_detailed",
    "LeadLag",
    "SUMMARY_COLUMNS",
    "ROLLING_DAYS",
    "MIN_ROLLING_WINDOW",
]

#: Columns of :func:`analyze_many`, in order.
SUMMARY_COLUMNS = (
    "n_points", "correlation", "best_lag", "best_lag_correlation", "best_lag_n_points",
    "stability", "n_windows", "n_eff", "p_value", "ci_low", "ci_high",
    "return_correlation", "return_n_points",
)
#: The default rolling window spans this many days of candles ...
ROLLING_DAYS = 30
#: ... and at least this many candles.
MIN_ROLLING_WINDOW = 10

_DAY_MS = 86_400_000
_NS_PER_MS = 1_000_000
# coins processed together by the lag kernel (bounds the temporaries: 64 coins x 8,760 hours is 4.5 MB
# an array) and by the rolling / n_eff kernels (many more temporaries: kept small enough for the caches)
_CHUNK = 64
_SMALL_CHUNK = 8
# a lag cell (rolling window) whose centred sum of squares exceeds its variance this many times is
# recomputed exactly (the relative rounding error of the one-pass formula grows with that ratio)
_KAPPA = 100.0
_KAPPA_WINDOW = 1_000.0
# ... and so is a window whose variance is below this many times the rounding error bound of its sums
# (a relative error of 1e-10 at most on what is kept)
_ERR_WINDOW = 1e10
_ULP = 2.0 ** -52
# OpenBLAS runs a dgemm on one thread up to m*n*k = 65536 * 4 and a dgemv up to m*n = 2304 * 4: the
# products are cut into calls below these sizes (as in cryptorsi.indicators). Its threads only pay off on
# large products; on these they cost more than they save, and badly so when the cores are busy.
_GEMM_MNK = 65536 * 4
_GEMV_MN = 2304 * 4 - 1
# the grid path is used when the grid is at most this many times longer than the union of timestamps
_GRID_SLACK = 8


# ------------------------------------------------------------------------------------------ validation
def _int_param(name: str, value, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    return int(value)


def _needed(min_overlap) -> int:
    return max(_int_param("min_overlap", min_overlap, 0), 2)


def _threshold(threshold) -> float:
    if isinstance(threshold, bool) or not isinstance(threshold, Real) or not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be a number in [0, 1], got {threshold!r}")
    return float(threshold)


def _check_series(s, what: str) -> pd.Series:
    if not isinstance(s, pd.Series):
        raise TypeError(f"{what} must be a pandas Series, got {type(s).__name__}")
    _check_index(s.index, what)
    return s


def _check_index(index, what: str) -> None:
    if not isinstance(index, pd.DatetimeIndex):
        raise TypeError(f"{what} must be indexed by a DatetimeIndex, got {type(index).__name__}")
    if not index.is_unique:
        raise ValueError(f"{what} has duplicate timestamps")


def _check_frame(frame, what: str) -> pd.DataFrame:
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"{what} must be a pandas DataFrame, got {type(frame).__name__}")
    _check_index(frame.index, what)
    if not frame.columns.is_unique:
        raise ValueError(f"{what} has duplicate columns")
    return frame


def _ns(index: pd.DatetimeIndex) -> np.ndarray:
    return index.as_unit("ns").asi8


def _same_tz(a: pd.DatetimeIndex, b: pd.DatetimeIndex) -> None:
    if (a.tz is None) != (b.tz is None):
        raise ValueError("cannot align a tz-aware index with a tz-naive one")


def _to_index(ns_values: np.ndarray, like: pd.DatetimeIndex) -> pd.DatetimeIndex:
    """Timestamps (int64 ns since the epoch, UTC) as a DatetimeIndex with ``like``'s tz, unit and name."""
    idx = pd.DatetimeIndex(np.asarray(ns_values, dtype=np.int64).view("datetime64[ns]"))
    if like.tz is not None:
        idx = idx.tz_localize("UTC").tz_convert(like.tz)
    return idx.as_unit(like.unit).rename(like.name)


def _values(obj) -> np.ndarray:
    """float64 values with NaN for missing (and ±inf treated as missing); a frame gives (columns, rows),
    C-contiguous (one row per coin)."""
    v = obj.to_numpy(dtype=np.float64, na_value=np.nan, copy=False)
    v = np.array(v.T if v.ndim == 2 else v, dtype=np.float64, order="C", copy=True)
    with np.errstate(invalid="ignore"):
        bad = np.abs(v) == np.inf
    if bad.any():
        v[bad] = np.nan
    return v


# ------------------------------------------------------------------------------------------ alignment
@dataclass
class _Aligned:
    """Coins (c, T) and benchmark (T,) on common time positions: a dense grid of ``step`` (``grid``
    True, NaN holes) or the sorted union of the timestamps (``grid`` False)."""

    times: np.ndarray  # int64 ns, increasing
    x: np.ndarray  # (c, T) float64, NaN where missing
    y: np.ndarray  # (T,)
    grid: bool


def _align_many(x_index: pd.DatetimeIndex, x_values: np.ndarray, bench: pd.Series, step_ns: int) -> _Aligned:
    """``x_values`` (c, len(x_index)) and ``bench`` laid on a common axis."""
    _same_tz(x_index, bench.index)
    xt = _ns(x_index)
    yt = _ns(bench.index)
    yv = _values(bench)
    both = np.concatenate([xt, yt])
    c = x_values.shape[0]
    if both.size == 0:
        return _Aligned(np.empty(0, np.int64), np.empty((c, 0)), np.empty(0), True)
    origin = int(both.min())
    offsets = both - origin
    if step_ns > 0 and not np.any(offsets % step_ns):
        length = int(offsets.max() // step_ns) + 1
        if length <= _GRID_SLACK * max(xt.size, yt.size) + 10_000:
            times = origin + np.arange(length, dtype=np.int64) * step_ns
            pos = (xt - origin) // step_ns
            if pos.size == length and np.array_equal(pos, np.arange(length)):
                x = x_values  # the frame's index is the whole grid, in order: no copy
            else:
                x = np.full((c, length), np.nan)
                x[:, pos] = x_values
            y = np.full(length, np.nan)
            y[(yt - origin) // step_ns] = yv
            return _Aligned(times, x, y, True)
    times = np.unique(both)
    x = np.full((c, times.size), np.nan)
    x[:, np.searchsorted(times, xt)] = x_values
    y = np.full(times.size, np.nan)
    y[np.searchsorted(times, yt)] = yv
    return _Aligned(times, x, y, False)


def _pack(mask: np.ndarray, x: np.ndarray, y: np.ndarray):
    """The values of each row of ``x`` (c, T) and of ``y`` (T,) where ``mask`` (c, T) holds, packed to
    the left of (c, nmax) arrays (zeros after): the counts, the packed x and y, and for each row the
    positions of its points (an int array, or a slice when they form one run)."""
    c = mask.shape[0]
    counts = mask.sum(axis=1)
    nmax = int(counts.max()) if c else 0
    xp = np.zeros((c, nmax))
    yp = np.zeros((c, nmax))
    first = mask.argmax(axis=1)
    where: list = []
    for i in range(c):
        n = int(counts[i])
        f = int(first[i])
        if n and mask[i, f + n - 1] and (n == 1 or mask[i, f: f + n].all()):  # one run: slices, no gather
            pos = slice(f, f + n)
        else:
            pos = np.flatnonzero(mask[i])
        xp[i, :n] = x[i, pos]
        yp[i, :n] = y[pos]
        where.append(pos)
    return counts, xp, yp, where


# ------------------------------------------------------------------------------------------ lag profiles
def _shift_matrix(v: np.ndarray, max_lag: int) -> np.ndarray:
    """(T, 2L+1): column j holds ``v[g - k]`` for lag ``k = j - L`` (0 outside the series)."""
    t = v.shape[0]
    pad = np.zeros(t + 2 * max_lag)
    pad[max_lag: max_lag + t] = v
    return np.ascontiguousarray(sliding_window_view(pad, 2 * max_lag + 1)[:t, ::-1])


def _matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` for a (m, k) and b (k, n), cut into single-threaded BLAS calls (see _GEMM_MNK)."""
    m, k = a.shape
    n = b.shape[1]
    out = np.zeros((m, n))
    kb = max(1, min(k, _GEMV_MN // max(n, 1)))
    mb = max(2, _GEMM_MNK // max(kb * n, 1))
    for k0 in range(0, k, kb):
        bk = b[k0: k0 + kb]
        for m0 in range(0, m, mb):
            out[m0: m0 + mb] += a[m0: m0 + mb, k0: k0 + kb] @ bk
    return out


def _exact_cell(xrow: np.ndarray, y: np.ndarray, k: int, needed: int) -> tuple[float, int]:
    """Two-pass Pearson of ``xrow[g]`` with ``y[g - k]`` on a grid (exact constancy check)."""
    t = xrow.shape[0]
    lo, hi = max(0, k), min(t, t + k)
    if hi <= lo:
        return math.nan, 0
    a = xrow[lo:hi]
    b = y[lo - k: hi - k]
    ok = np.isfinite(a) & np.isfinite(b)
    n = int(ok.sum())
    if n < needed:
        return math.nan, n
    return pearson(a[ok], b[ok]), n


def _one_run(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row of ``mask`` (c, T): first and last True position, and whether the Trues form one run."""
    count = mask.sum(axis=1)
    first = mask.argmax(axis=1)
    last = mask.shape[1] - 1 - mask[:, ::-1].argmax(axis=1)
    return first, last, (count > 0) & (last - first + 1 == count)


def _pearson_from_sums(n, sx, sy, sxx, syy, sxy):
    """Pearson from centred-value sums, and where the one-pass formula may have lost precision."""
    with np.errstate(divide="ignore", invalid="ignore"):
        vx = sxx - sx * sx / n
        vy = syy - sy * sy / n
        r = np.clip((sxy - sx * sy / n) / np.sqrt(vx * vy), -1.0, 1.0)
        shaky = (vx * _KAPPA <= sxx) | (vy * _KAPPA <= syy) | ~np.isfinite(r)
    return r, shaky


def _profiles_grid(al: _Aligned, max_lag: int, needed: int) -> tuple[np.ndarray, np.ndarray]:
    """Correlation and count (c, 2L+1) of every coin with the benchmark at every lag, on a grid.

    ``Sxy`` of every lag is one product of the coins' centred values by the matrix of the benchmark's
    shifted centred values. When a coin's values and the benchmark's each form one run on the grid
    (no interior hole: the usual case) the overlap at each lag is a range, and ``n, Sx, Sy, Sxx,
    Syy`` are differences of running sums; otherwise they are products with the masks too.
    """
    c, t = al.x.shape
    k = 2 * max_lag + 1
    corr = np.full((c, k), np.nan)
    count = np.zeros((c, k), dtype=np.int64)
    my = np.isfinite(al.y)
    if c == 0 or t == 0 or not my.any():
        return corr, count
    lags = np.arange(-max_lag, max_lag + 1)
    yc = np.where(my, al.y - al.y[my].mean(), 0.0)
    sh_y = _shift_matrix(yc, max_lag)
    bf, bl, b_run = (v[0] for v in _one_run(my[None, :]))
    cy = _cumsum0(yc[None, :])[0]
    cyy = _cumsum0((yc * yc)[None, :])[0]
    sh_m = sh_y2 = None
    for lo in range(0, c, _CHUNK):
        x = al.x[lo: lo + _CHUNK]
        m = x.shape[0]
        mx = np.isfinite(x)
        nx = mx.sum(axis=1)
        mu = np.where(mx, x, 0.0).sum(axis=1) / np.maximum(nx, 1)
        xc = np.where(mx, x - mu[:, None], 0.0)
        sxy = _matmul(xc, sh_y)
        n = np.zeros((m, k))
        sx = np.zeros((m, k))
        sxx = np.zeros((m, k))
        sy = np.zeros((m, k))
        syy = np.zeros((m, k))
        f, l, run = _one_run(mx)
        run &= bool(b_run)
        if run.any():  # overlap at lag k: g in [max(f, bf + k), min(l, bl + k)]
            rows = np.flatnonzero(run)
            g0 = np.maximum(f[rows, None], bf + lags[None, :])
            g1 = np.maximum(np.minimum(l[rows, None], bl + lags[None, :]) + 1, g0)  # exclusive end
            n[rows] = g1 - g0
            # the coin's sums over [g0, g1): its whole run minus what the lag cuts at either end (at
            # most 2L points: running sums over the first and last 2L + 1 points of the run only)
            xr = xc[rows]
            edge = min(2 * max_lag + 1, t)
            cut0 = np.minimum(g0 - f[rows, None], l[rows, None] + 1 - f[rows, None])
            cut1 = np.minimum(l[rows, None] + 1 - g1, l[rows, None] + 1 - f[rows, None] - cut0)
            near = (cut0.max(axis=1) <= edge) & (cut1.max(axis=1) <= edge)  # else the benchmark's run
            head_at = np.minimum(f[rows, None] + np.arange(edge)[None, :], t - 1)  # is much shorter
            tail_at = np.maximum(l[rows, None] - np.arange(edge)[None, :], 0)
            for target, v in ((sx, xr), (sxx, xr * xr)):
                total = v.sum(axis=1)[:, None]
                head = _cumsum0(np.take_along_axis(v, head_at, axis=1))  # head[:, j]: the first j points
                tail = _cumsum0(np.take_along_axis(v, tail_at, axis=1))  # tail[:, j]: the last j points
                inside = (total - np.take_along_axis(head, np.minimum(cut0, edge), axis=1)
                          - np.take_along_axis(tail, np.minimum(cut1, edge), axis=1))
                if not near.all():
                    far = np.flatnonzero(~near)
                    cs = _cumsum0(v[far])
                    inside[far] = (np.take_along_axis(cs, g1[far], axis=1) - np.take_along_axis(cs, g0[far], axis=1))
                target[rows] = np.where(g1 > g0, inside, 0.0)
            y0 = np.clip(g0 - lags[None, :], 0, t)
            y1 = np.clip(g1 - lags[None, :], 0, t)
            sy[rows] = cy[y1] - cy[y0]
            syy[rows] = cyy[y1] - cyy[y0]
        if not run.all():
            if sh_m is None:
                sh_m = _shift_matrix(my.astype(np.float64), max_lag)
                sh_y2 = np.concatenate([sh_y, _shift_matrix(yc * yc, max_lag)], axis=1)
            rows = np.flatnonzero(~run)
            xr = xc[rows]
            mxf = mx[rows].astype(np.float64)
            r1 = _matmul(np.concatenate([xr, mxf, xr * xr]), sh_m)
            sx[rows], n[rows], sxx[rows] = r1[: rows.size], r1[rows.size: 2 * rows.size], r1[2 * rows.size:]
            r3 = _matmul(mxf, sh_y2)
            sy[rows], syy[rows] = r3[:, :k], r3[:, k:]
        r, shaky = _pearson_from_sums(n, sx, sy, sxx, syy, sxy)
        ncount = np.rint(n).astype(np.int64)
        valid = ncount >= needed
        r[~valid] = np.nan
        for i, j in zip(*np.nonzero(valid & shaky)):
            r[i, j] = _exact_cell(al.x[lo + i], al.y, int(j) - max_lag, needed)[0]
        corr[lo: lo + m] = r
        count[lo: lo + m] = ncount
    return corr, count


def _profiles_joined(x_index, x_values, bench: pd.Series, step_ns: int, max_lag: int, needed: int):
    """Fallback for timestamps off a common grid: one join per lag."""
    c = x_values.shape[0]
    corr = np.full((c, 2 * max_lag + 1), np.nan)
    count = np.zeros((c, 2 * max_lag + 1), dtype=np.int64)
    xt = _ns(x_index)
    yt = _ns(bench.index)
    yv = _values(bench)
    okx = np.isfinite(x_values)
    for j, lag in enumerate(range(-max_lag, max_lag + 1)):
        pos = pd.Index(yt + lag * step_ns).get_indexer(xt)
        b = np.where(pos >= 0, yv[pos], np.nan)
        okb = np.isfinite(b)
        for i in range(c):
            ok = okx[i] & okb
            n = int(ok.sum())
            count[i, j] = n
            if n >= needed:
                corr[i, j] = pearson(x_values[i, ok], b[ok])
    return corr, count


def _lag_matrix(x_index, x_values, bench, step_ns, max_lag, needed, al: _Aligned | None = None):
    if al is None:
        al = _align_many(x_index, x_values, bench, step_ns)
    if al.grid:
        return _profiles_grid(al, max_lag, needed)
    return _profiles_joined(x_index, x_values, bench, step_ns, max_lag, needed)


def _lags(max_lag: int) -> pd.Index:
    return pd.Index(np.arange(-max_lag, max_lag + 1, dtype=np.int64), name="lag")


def lag_profile(rsi: pd.Series, benchmark_rsi: pd.Series, step_ms: int, max_lag: int = 12,
                min_overlap: int = 30) -> pd.Series:
    """Correlation of ``rsi`` at ``t`` with ``benchmark_rsi`` at ``t - k * step_ms`` for every lag
    ``k = -max_lag .. max_lag``: a float Series indexed by ``k`` (int, named ``"lag"``).

    Positive ``k``: the coin follows the benchmark by k candles. NaN where fewer than
    ``min_overlap`` (at least 2) timestamps are common at that lag, or where either side is constant
    over them. See the module docstring.
    """
    _check_series(rsi, "rsi")
    _check_series(benchmark_rsi, "benchmark_rsi")
    step = _int_param("step_ms", step_ms, 1) * _NS_PER_MS
    max_lag = _int_param("max_lag", max_lag, 0)
    corr, _ = _lag_matrix(rsi.index, _values(rsi)[None, :], benchmark_rsi, step, max_lag, _needed(min_overlap))
    return pd.Series(corr[0], index=_lags(max_lag), name="correlation")


def _lag_order(lags: np.ndarray) -> np.ndarray:
    """Positions of ``lags`` in order of preference for ties: 0, +1, -1, +2, -2, ..."""
    return np.lexsort((-lags, np.abs(lags)))


def _best_of(corr: np.ndarray, lags: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """best_lag over the rows of ``corr`` (c, K): position of the best lag in ``lags`` (-1: none), value."""
    if lags.size == 0:
        return np.full(corr.shape[0], -1), np.full(corr.shape[0], np.nan)
    order = _lag_order(lags)
    a = np.abs(corr[:, order])
    a[~np.isfinite(a)] = -1.0
    pick = order[a.argmax(axis=1)]
    none = a.max(axis=1) < 0
    position = np.where(none, -1, pick)
    value = np.where(none, np.nan, corr[np.arange(corr.shape[0]), pick])
    return position, value


def best_lag(profile: pd.Series) -> tuple[int | None, float]:
    """``(lag, correlation)`` of the lag with the largest ``|correlation|`` in ``profile`` (a Series
    indexed by int lags, as :func:`lag_profile` returns).

    Ties (exactly equal ``|r|``) go to the smallest ``|lag|``, then to the positive lag (the coin
    following the benchmark). NaN entries are ignored; ``(None, nan)`` when none is finite.

    >>> best_lag(pd.Series([0.5, -0.8, 0.8], index=[0, -2, 2]))
    (2, 0.8)
    """
    if not isinstance(profile, pd.Series):
        raise TypeError(f"profile must be a pandas Series, got {type(profile).__name__}")
    lags = np.asarray(profile.index, dtype=np.int64)
    values = profile.to_numpy(dtype=np.float64, na_value=np.nan)
    position, value = _best_of(values[None, :], lags)
    if position[0] < 0:
        return None, math.nan
    return int(lags[position[0]]), float(value[0])


# ------------------------------------------------------------------------------------------ rolling
def default_rolling_window(timeframe: str | int) -> int:
    """The default rolling window, in candles: 30 days of candles of ``timeframe`` (a timeframe
    name such as ``"4h"``, or a candle length in ms), and at least 10.

    >>> default_rolling_window("1h"), default_rolling_window("4h"), default_rolling_window("1d")
    (720, 180, 30)
    """
    step = timeframe_ms(timeframe) if isinstance(timeframe, str) else _int_param("timeframe", timeframe, 1)
    return max(MIN_ROLLING_WINDOW, int(round(ROLLING_DAYS * _DAY_MS / step)))


def _exact_windows(xp: np.ndarray, yp: np.ndarray, rows: np.ndarray, starts: np.ndarray, w: int) -> np.ndarray:
    """Two-pass Pearson (as :func:`cryptorsi.analytics.pearson`) of the windows ``[start, start + w)``
    of the given rows, vectorised; NaN where either side is constant."""
    out = np.empty(rows.size)
    step = max(1, 2_000_000 // w)
    offsets = np.arange(w)
    for lo in range(0, rows.size, step):
        r, j = rows[lo: lo + step, None], starts[lo: lo + step, None] + offsets
        a, b = xp[r, j], yp[r, j]
        flat = (a.min(axis=1) == a.max(axis=1)) | (b.min(axis=1) == b.max(axis=1))
        a = a - a.mean(axis=1, keepdims=True)
        b = b - b.mean(axis=1, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            val = np.clip((a * b).sum(axis=1) / (np.sqrt((a * a).sum(axis=1)) * np.sqrt((b * b).sum(axis=1))),
                          -1.0, 1.0)
        out[lo: lo + step] = np.where(flat, np.nan, val)
    return out


def _cumsum0(v: np.ndarray) -> np.ndarray:
    """Running sums along the rows of ``v`` (c, L) with a leading 0: (c, L + 1)."""
    out = np.empty((v.shape[0], v.shape[1] + 1))
    out[:, 0] = 0.0
    np.cumsum(v, axis=1, out=out[:, 1:])
    return out


@dataclass
class _Side:
    """Window sums of one side (coins' or benchmark's packed values) for :func:`_rolling_packed`."""

    d: np.ndarray  # (c, blocks * w) values minus their block's mean
    s1: np.ndarray  # (c, m) window sums of the values minus the window's reference
    s2: np.ndarray  # (c, m) same, of the squares
    part: np.ndarray  # (c, m) sums of d over the window's part in the next block
    delta: np.ndarray  # (c, m) next block's mean minus the window's first block's mean
    err: np.ndarray  # (c, m) bound on the rounding error of s2 (from the running sums' size)


def _side(v: np.ndarray, counts: np.ndarray, w: int, n_next: np.ndarray) -> _Side:
    c, nmax = v.shape
    nb = -(-nmax // w)
    m = nmax - w + 1
    d = np.zeros((c, nb * w))
    d[:, :nmax] = v
    # block means over each row's own points (the packed zeros after them add nothing to the sums);
    # the zeros' centred values are never inside a window that ends within the row
    nlive = np.clip(counts[:, None] - np.arange(nb)[None, :] * w, 0, w).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(nlive > 0, d.reshape(c, nb, w).sum(axis=2) / nlive, 0.0)  # (c, nb)
    d.reshape(c, nb, w)[...] -= mean[:, :, None]
    step = np.zeros((c, nb))
    step[:, :-1] = mean[:, 1:] - mean[:, :-1]
    delta = np.repeat(step, w, axis=1)[:, :m]
    cs = _cumsum0(d)
    s1 = cs[:, w: nmax + 1] - cs[:, :m]
    part = cs[:, w: nmax + 1] - np.repeat(cs[:, w::w], w, axis=1)[:, :m]
    del cs
    cs = _cumsum0(d * d)
    s2 = cs[:, w: nmax + 1] - cs[:, :m]
    # s2 is a difference of running sums: its rounding error scales with their size (the running sum
    # at the window's end, the larger one), about sqrt(terms) ulps of it
    err = cs[:, w: nmax + 1] * (_ULP * math.sqrt(nmax))
    del cs
    # move the next block's part to the first block's mean: sum (d + D) = sum d + n D and
    # sum (d + D)^2 = sum d^2 + 2 D sum d + n D^2 (n: the part's points, D: delta)
    nd = n_next * delta
    s2 += (2.0 * part + nd) * delta
    s1 += nd
    return _Side(d, s1, s2, part, delta, err)


def _rolling_packed(counts, xp, yp, w: int, y_side: _Side | None = None) -> np.ndarray:
    """Rolling Pearson (c, nmax - w + 1) over the packed common points; NaN past each row's end.

    The points are cut in blocks of ``w`` and each value is taken relative to its block's mean; a
    window covers the end of one block and the start of the next, whose part is moved to the first
    block's mean (exact shifts of the sums), so every window is centred on a local reference and its
    sums do not cancel even when the series wanders far from its overall mean. Window sums are
    differences of running sums of these small centred values. Windows whose variance is still small
    next to their sum of squares are checked: constant ones (no change of value inside) are NaN, the
    others are recomputed exactly, two-pass. ``y_side``: the benchmark's side, computed once for all
    the rows whose packed y is the benchmark's whole series (shape (1, ...), broadcast).
    """
    c, nmax = xp.shape
    if nmax < w:
        return np.empty((c, 0))
    m = nmax - w + 1
    n_next = np.tile(np.arange(w, dtype=np.float64), -(-m // w))[:m]  # window points in the next block
    sx = _side(xp, counts, w, n_next)
    sy = y_side if y_side is not None else _side(yp, counts, w, n_next)
    cs = _cumsum0(sx.d * sy.d)
    sxy = cs[:, w: nmax + 1] - cs[:, :m]
    del cs
    sxy += sx.delta * sy.part
    sxy += sy.delta * sx.part
    sxy += n_next * sx.delta * sy.delta
    with np.errstate(divide="ignore", invalid="ignore"):
        vx = sx.s2 - sx.s1 * sx.s1 / w
        vy = sy.s2 - sy.s1 * sy.s1 / w
        r = np.clip((sxy - sx.s1 * sy.s1 / w) / np.sqrt(vx * vy), -1.0, 1.0)
        shaky = ((vx * _KAPPA_WINDOW <= sx.s2) | (vy * _KAPPA_WINDOW <= sy.s2) | ~np.isfinite(r)
                 | (vx <= _ERR_WINDOW * sx.err) | (vy <= _ERR_WINDOW * sy.err))
    exists = np.arange(w - 1, nmax)[None, :] < counts[:, None]
    r[~exists] = np.nan
    shaky &= exists
    for i in np.flatnonzero(shaky.any(axis=1)):
        starts = np.flatnonzero(shaky[i])
        flat = _constant_windows(xp[i], starts, w) | _constant_windows(yp[i], starts, w)
        r[i, starts[flat]] = np.nan
        if not flat.all():
            rest = starts[~flat]
            r[i, rest] = _exact_windows(xp, yp, np.full(rest.size, i), rest, w)
    return r


def _constant_windows(v: np.ndarray, starts: np.ndarray, w: int) -> np.ndarray:
    """Whether ``v[s : s + w]`` holds one value only, for each start ``s`` (exact: counts changes)."""
    changes = np.zeros(v.size, dtype=np.int64)
    np.cumsum(v[1:] != v[:-1], out=changes[1:])
    return changes[starts + w - 1] == changes[starts]


def _rolling_chunks(al: _Aligned, w: int, like: pd.DatetimeIndex, names: list, series: bool = True):
    """Rolling correlation of every coin, by small chunks of coins: yields (rows, counts, packed x,
    packed y, rolling matrix, Series by name (empty unless ``series``)). Coins whose common points are
    all the benchmark's points go first and share the benchmark's side of the sums."""
    y_ok = np.isfinite(al.y)
    index = _to_index(al.times, like) if series else None
    common = np.isfinite(al.x) & y_ok[None, :]
    counts_all = common.sum(axis=1)
    bench_n = int(y_ok.sum())
    full = counts_all == bench_n
    y_side = None
    if full.any() and bench_n >= w:
        y_row = al.y[y_ok][None, :]
        m = bench_n - w + 1
        y_side = _side(y_row, np.array([bench_n]), w, np.tile(np.arange(w, dtype=np.float64), -(-m // w))[:m])
    for group, shared in ((np.flatnonzero(full), y_side), (np.flatnonzero(~full), None)):
        for lo in range(0, group.size, _SMALL_CHUNK):
            rows = group[lo: lo + _SMALL_CHUNK]
            x = al.x[rows]
            counts, xp, yp, where = _pack(common[rows], x, al.y)
            r = _rolling_packed(counts, xp, yp, w, shared)
            out = {}
            for i, row in enumerate(rows if series else ()):
                m = max(int(counts[i]) - w + 1, 0)
                pos = where[i]
                if isinstance(pos, slice):
                    times = index[pos.start + w - 1: pos.start + w - 1 + m]
                else:
                    times = index[pos[w - 1: w - 1 + m]]
                out[names[row]] = pd.Series(r[i, :m], index=times, name=names[row], copy=False)
            yield rows, counts, xp, yp, r, out


def rolling_correlation(rsi: pd.Series, benchmark_rsi: pd.Series, window: int) -> pd.Series:
    """Pearson correlation over a trailing window of ``window`` common timestamps, indexed by the
    window's last timestamp (the first value at the ``window``-th common point).

    Equal to ``joined.iloc[:, 0].rolling(window).corr(joined.iloc[:, 1]).iloc[window - 1:]`` with
    ``joined`` the inner join of the two series (NaN dropped); NaN where either side is constant over
    the window. Empty when there are fewer than ``window`` common timestamps.
    """
    _check_series(rsi, "rsi")
    _check_series(benchmark_rsi, "benchmark_rsi")
    w = _int_param("window", window, 2)
    al = _align_many(rsi.index, _values(rsi)[None, :], benchmark_rsi, 0)
    for *_, series in _rolling_chunks(al, w, rsi.index, [rsi.name]):
        return series[rsi.name]


def stability(rolling: pd.Series | np.ndarray, threshold: float) -> float:
    """Share of the windows of ``rolling`` whose ``|correlation| >= threshold`` (NaN windows
    excluded); NaN when there is no window.

    >>> stability(pd.Series([0.9, -0.8, 0.2, np.nan]), 0.7)
    0.6666666666666666
    """
    t = _threshold(threshold)
    v = np.asarray(rolling, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    if v.size == 0:
        return math.nan
    return float(np.count_nonzero(np.abs(v) >= t) / v.size)


def session_lag_profile(coin_rsi: pd.Series, benchmark_rsi: pd.Series, timeframe: str, config) -> pd.Series:
    """:func:`lag_profile` with an analysis' parameters (``config``: an AnalysisConfig): its ``max_lag`` and
    ``min_overlap``, lags in candles of ``timeframe``."""
    return lag_profile(coin_rsi, benchmark_rsi, timeframe_ms(timeframe), config.max_lag, config.min_overlap)


def session_rolling_correlation(coin_rsi: pd.Series, benchmark_rsi: pd.Series, timeframe: str, config) -> pd.Series:
    """:func:`rolling_correlation` over an analysis' window (``config.rolling_window``, else the default one of
    ``timeframe``)."""
    return rolling_correlation(coin_rsi, benchmark_rsi, config.rolling_window or default_rolling_window(timeframe))


# ------------------------------------------------------------------------------------------ significance
def _fft_length(n: int) -> int:
    """The smallest 2**a * 3**b * 5**c >= n: a length numpy's FFT handles fast."""
    best = 1 << max(0, int(n - 1).bit_length())
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            m = p35 * (1 << max(0, int(-(-n // p35) - 1).bit_length()))  # times the power of 2 reaching n
            best = min(best, m)
            p35 *= 3
        p5 *= 5
    return best


def _acf_rows(v: np.ndarray, counts: np.ndarray, upto: int) -> np.ndarray:
    """Biased autocorrelations (c, upto + 1) of each row's first counts[i] values (centred here), by FFT
    (zero-padded to at least ``nmax + upto``: no wrap-around for the lags kept)."""
    c, nmax = v.shape
    nz = np.maximum(counts, 1)
    live = np.arange(nmax)[None, :] < counts[:, None]
    vc = np.where(live, v - (v.sum(axis=1) / nz)[:, None], 0.0)
    nfft = _fft_length(nmax + upto)
    spec = np.fft.rfft(vc, n=nfft, axis=1)
    acov = np.fft.irfft(spec.real ** 2 + spec.imag ** 2, n=nfft, axis=1)[:, : upto + 1]
    with np.errstate(divide="ignore", invalid="ignore"):
        return acov / acov[:, :1]


def _n_eff_packed(counts: np.ndarray, xp: np.ndarray, yp: np.ndarray, max_lag: int | None,
                  bench: tuple[int, np.ndarray] | None = None) -> np.ndarray:
    """Bartlett's effective sample size for each row pair of packed values (see the module docstring).

    ``bench``: ``(n, acf)`` of the benchmark's own complete sequence, reused for the rows whose packed
    y is that sequence (``counts == n``: every benchmark point is common), instead of one more FFT.
    """
    c, nmax = xp.shape
    out = np.full(c, np.nan)
    if c == 0 or nmax < 3:
        return out
    n = counts.astype(np.float64)
    if max_lag is None:
        cap = counts // 4
    else:
        cap = np.minimum(max_lag, np.maximum(counts - 1, 0))
    upto = int(min(max(int(cap.max()), 0), nmax - 1))
    rx = _acf_rows(xp, counts, upto)[:, 1:]
    reuse = np.zeros(c, dtype=bool)
    if bench is not None and bench[1].size > upto:
        reuse = counts == bench[0]
    ry = np.empty_like(rx)
    if reuse.any():
        ry[reuse] = bench[1][1: upto + 1]
    if not reuse.all():
        ry[~reuse] = _acf_rows(yp[~reuse], counts[~reuse], upto)[:, 1:]
    k = np.arange(1, upto + 1)[None, :]
    use = k <= cap[:, None]
    if max_lag is None:
        with np.errstate(divide="ignore", invalid="ignore"):
            band = 2.0 / np.sqrt(n)[:, None]
            use &= np.logical_and.accumulate((np.abs(rx) >= band) & (np.abs(ry) >= band), axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        total = np.where(use, rx * ry, 0.0).sum(axis=1)
        n_eff = np.where(total > 0, np.clip(n / (1.0 + 2.0 * total), 3.0, np.maximum(n, 3.0)), n)
    constant = np.array([_constant_packed(xp[i, : counts[i]]) or _constant_packed(yp[i, : counts[i]])
                         for i in range(c)], dtype=bool)
    ok = (counts >= 3) & ~constant
    out[ok] = n_eff[ok]
    return out


def _constant_packed(v: np.ndarray) -> bool:
    return v.size == 0 or bool(v.min() == v.max())


def effective_sample_size(x, y, max_lag: int | None = None) -> float:
    """Bartlett's effective number of independent pairs, ``n / (1 + 2 sum_k rho_x(k) rho_y(k))``,
    clipped to ``[3, n]`` (formula and truncation rule in the module docstring).

    ``x`` and ``y``: two Series (aligned on their common timestamps, NaN dropped) or two equal-length
    1-D arrays of consecutive observations (pairs with a NaN dropped). ``max_lag=None`` stops the sum
    before the first lag where either autocorrelation is inside ``±2/sqrt(n)`` (at most ``n // 4``);
    an int sums exactly lags ``1 .. min(max_lag, n - 1)``. NaN for fewer than 3 pairs or a constant side.
    """
    if max_lag is not None:
        max_lag = _int_param("max_lag", max_lag, 0)
    if isinstance(x, pd.Series) and isinstance(y, pd.Series):
        a, b, _ = align(x, y)
    else:
        a = np.asarray(x, dtype=np.float64)
        b = np.asarray(y, dtype=np.float64)
        if a.ndim != 1 or a.shape != b.shape:
            raise ValueError(f"x and y must be two 1-D arrays of the same length, got {a.shape} and {b.shape}")
        ok = np.isfinite(a) & np.isfinite(b)
        a, b = a[ok], b[ok]
    counts = np.array([a.size], dtype=np.int64)
    return float(_n_eff_packed(counts, a[None, :], b[None, :], max_lag)[0])


def correlation_significance(r, n_eff, confidence: float = 0.95):
    """``(p_value, ci_low, ci_high)`` of a correlation ``r`` with ``n_eff`` effective pairs.

    Two-sided p-value from Student's t with ``n_eff - 2`` degrees of freedom (NaN for
    ``n_eff <= 2``; 0 for ``|r| = 1``) and the ``confidence`` interval by Fisher's z with standard
    error ``1 / sqrt(n_eff - 3)`` (``(-1, 1)`` for ``n_eff <= 3``); ``ci_low <= r <= ci_high``.
    Scalars give floats; arrays broadcast and give arrays. NaN ``r`` gives NaN everywhere.

    >>> p, lo, hi = correlation_significance(0.5, 30)
    >>> round(p, 4), round(lo, 3), round(hi, 3)
    (0.0049, 0.17, 0.729)
    """
    if isinstance(confidence, bool) or not isinstance(confidence, Real) or not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be a number in (0, 1), got {confidence!r}")
    scalar = np.ndim(r) == 0 and np.ndim(n_eff) == 0
    r_arr, n_arr = np.broadcast_arrays(np.asarray(r, dtype=np.float64), np.asarray(n_eff, dtype=np.float64))
    rr = np.clip(r_arr, -1.0, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        dof = n_arr - 2.0
        t = np.abs(rr) * np.sqrt(dof / (1.0 - rr * rr))
        p = 2.0 * special.stdtr(dof, -t)  # NaN for dof <= 0
        p = np.where((dof > 0) & (np.abs(rr) == 1.0), 0.0, p)
        z = np.arctanh(rr)
        half = NormalDist().inv_cdf(0.5 + confidence / 2.0) / np.sqrt(n_arr - 3.0)
        wide = ~(n_arr > 3.0)
        lo = np.where(wide, -1.0, np.tanh(z - np.where(wide, 0.0, half)))
        hi = np.where(wide, 1.0, np.tanh(z + np.where(wide, 0.0, half)))
    lo = np.minimum(lo, rr)
    hi = np.maximum(hi, rr)
    bad = ~np.isfinite(rr) | np.isnan(n_arr)
    p, lo, hi = (np.where(bad, np.nan, a) for a in (p, lo, hi))
    if scalar:
        return float(p), float(lo), float(hi)
    return p, lo, hi


# ------------------------------------------------------------------------------------------ returns
def _infer_step_ns(*indexes: pd.DatetimeIndex) -> int:
    diffs = [np.diff(np.sort(_ns(ix))) for ix in indexes if len(ix) > 1]
    diffs = np.concatenate(diffs) if diffs else np.empty(0, np.int64)
    diffs = diffs[diffs > 0]
    if diffs.size == 0:
        raise ValueError("cannot infer the candle length from fewer than two timestamps; pass step_ms")
    return int(diffs.min())


def _log_returns(index: pd.DatetimeIndex, values: np.ndarray, step_ns: int) -> np.ndarray:
    """Log returns along the last axis of ``values`` (…, len(index)) where the candle exactly one step
    earlier exists (NaN elsewhere); closes <= 0 count as missing."""
    t = _ns(index)
    prev = pd.Index(t).get_indexer(t - step_ns)
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = np.log(np.where(values > 0, values, np.nan))
    out = np.full(values.shape, np.nan)
    has = prev >= 0
    out[..., has] = logs[..., has] - logs[..., prev[has]]
    out[~np.isfinite(out)] = np.nan
    return out


def _return_correlations(close: pd.DataFrame, benchmark_close: pd.Series, step_ns: int, needed: int):
    """Correlation and count of common returns of every column of ``close`` with ``benchmark_close``."""
    al = _align_many(close.index, _values(close), benchmark_close, step_ns)
    if al.grid:  # on the grid, one step apart = adjacent: returns are differences of adjacent logs
        c = al.x.shape[0]
        corr = np.full(c, np.nan)
        count = np.zeros(c, dtype=np.int64)
        with np.errstate(divide="ignore", invalid="ignore"):
            ry = np.diff(np.log(np.where(al.y > 0, al.y, np.nan)))
            ry_ok = np.isfinite(ry)
            for i in range(c):
                row = al.x[i]
                ok = np.isfinite(row)
                first = int(ok.argmax())
                last = row.size - int(ok[::-1].argmax())
                if not ok[first]:
                    continue
                part = row[first:last]  # between the first and the last close: returns only in there
                rx = np.diff(np.log(np.where(part > 0, part, np.nan)))
                both = np.isfinite(rx) & ry_ok[first: last - 1]
                n = int(both.sum())
                count[i] = n
                if n >= needed:
                    corr[i] = pearson(rx[both], ry[first: last - 1][both])
        return corr, count
    rets = pd.DataFrame(_log_returns(close.index, _values(close), step_ns).T, index=close.index,
                        columns=close.columns)
    bret = pd.Series(_log_returns(benchmark_close.index, _values(benchmark_close), step_ns),
                     index=benchmark_close.index)
    rc = correlate_frame(rets, bret, needed)
    return rc["correlation"].to_numpy(), rc["n_points"].to_numpy()


def return_correlation(close: pd.Series, benchmark_close: pd.Series, step_ms: int | None = None,
                       min_overlap: int = 30) -> float:
    """Pearson correlation of the log returns of ``close`` and ``benchmark_close`` over their common
    timestamps.

    A return at ``t`` is ``log(close_t / close_{t - step})`` and exists only when the series has a
    candle at exactly ``t - step`` (a gap gives no return, never a multi-candle one); closes must be
    > 0. ``step_ms``: the candle length (default: the smallest spacing between consecutive
    timestamps of either series). NaN with fewer than ``min_overlap`` (at least 2) common returns or a
    constant side.
    """
    _check_series(close, "close")
    _check_series(benchmark_close, "benchmark_close")
    _same_tz(close.index, benchmark_close.index)
    needed = _needed(min_overlap)
    step = (_int_param("step_ms", step_ms, 1) * _NS_PER_MS if step_ms is not None
            else _infer_step_ns(close.index, benchmark_close.index))
    a = pd.Series(_log_returns(close.index, _values(close), step), index=close.index)
    b = pd.Series(_log_returns(benchmark_close.index, _values(benchmark_close), step), index=benchmark_close.index)
    x, y, _ = align(a, b)
    if x.size < needed:
        return math.nan
    return pearson(x, y)


# ------------------------------------------------------------------------------------------ many coins
@dataclass(frozen=True)
class LeadLag:
    """Everything :func:`analyze_many_detailed` computes for one timeframe.

    ``summary``: :func:`analyze_many`'s frame. ``profiles``: coins x lags (columns ``-L..L``, named
    ``"lag"``), each row a :func:`lag_profile`. ``rolling``: coin -> :func:`rolling_correlation`.
    """

    summary: pd.DataFrame
    profiles: pd.DataFrame
    rolling: dict


def lag_profiles(rsi: pd.DataFrame, benchmark_rsi: pd.Series, step_ms: int, max_lag: int = 12,
                 min_overlap: int = 30) -> pd.DataFrame:
    """:func:`lag_profile` of every column of ``rsi``: a frame indexed like ``rsi.columns`` with one
    column per lag ``-max_lag .. max_lag`` (columns named ``"lag"``)."""
    _check_frame(rsi, "rsi")
    _check_series(benchmark_rsi, "benchmark_rsi")
    step = _int_param("step_ms", step_ms, 1) * _NS_PER_MS
    max_lag = _int_param("max_lag", max_lag, 0)
    corr, _ = _lag_matrix(rsi.index, _values(rsi), benchmark_rsi, step, max_lag, _needed(min_overlap))
    return pd.DataFrame(corr, index=rsi.columns, columns=_lags(max_lag))


def rolling_correlations(rsi: pd.DataFrame, benchmark_rsi: pd.Series, window: int) -> dict:
    """:func:`rolling_correlation` of every column of ``rsi``: a dict column -> Series."""
    _check_frame(rsi, "rsi")
    _check_series(benchmark_rsi, "benchmark_rsi")
    w = _int_param("window", window, 2)
    al = _align_many(rsi.index, _values(rsi), benchmark_rsi, 0)
    out: dict = {}
    for *_, series in _rolling_chunks(al, w, rsi.index, list(rsi.columns)):
        out.update(series)
    return out


def analyze_many_detailed(rsi: pd.DataFrame, benchmark_rsi: pd.Series, step_ms: int, *, max_lag: int = 12,
                          rolling_window: int | None = None, threshold: float = 0.7, min_overlap: int = 30,
                          n_eff_max_lag: int | None = None, close: pd.DataFrame | None = None,
                          benchmark_close: pd.Series | None = None) -> LeadLag:
    """:func:`analyze_many` with the lag profiles and the rolling series it computed on the way."""
    return _analyze(rsi, benchmark_rsi, step_ms, max_lag, rolling_window, threshold, min_overlap, n_eff_max_lag,
                    close, benchmark_close, True)


def _analyze(rsi, benchmark_rsi, step_ms, max_lag, rolling_window, threshold, min_overlap, n_eff_max_lag,
             close, benchmark_close, details: bool) -> LeadLag:
    _check_frame(rsi, "rsi")
    _check_series(benchmark_rsi, "benchmark_rsi")
    step_ms = _int_param("step_ms", step_ms, 1)
    step = step_ms * _NS_PER_MS
    max_lag = _int_param("max_lag", max_lag, 0)
    w = default_rolling_window(step_ms) if rolling_window is None else _int_param("rolling_window", rolling_window, 2)
    t = _threshold(threshold)
    needed = _needed(min_overlap)
    if n_eff_max_lag is not None:
        n_eff_max_lag = _int_param("n_eff_max_lag", n_eff_max_lag, 0)
    names = list(rsi.columns)
    c = len(names)
    x_values = _values(rsi)
    al = _align_many(rsi.index, x_values, benchmark_rsi, step)
    corr, count = _lag_matrix(rsi.index, x_values, benchmark_rsi, step, max_lag, needed, al)
    lags = np.arange(-max_lag, max_lag + 1)
    position, best_value = _best_of(corr, lags)

    rolling: dict = {}
    n_windows = np.zeros(c, dtype=np.int64)
    stab = np.full(c, np.nan)
    n_eff = np.full(c, np.nan)
    y_ok = np.isfinite(al.y)
    bench_n = int(y_ok.sum())
    bench_acf = None
    if bench_n >= 3:
        cap = bench_n // 4 if n_eff_max_lag is None else min(n_eff_max_lag, bench_n - 1)
        bench_acf = _acf_rows(al.y[y_ok][None, :], np.array([bench_n]), cap)[0]
    bench = (bench_n, bench_acf) if bench_acf is not None else None
    for rows, counts, xp, yp, r, series in _rolling_chunks(al, w, rsi.index, names, details):
        finite = np.isfinite(r)
        nw = finite.sum(axis=1)
        n_windows[rows] = nw
        with np.errstate(invalid="ignore", divide="ignore"):
            stab[rows] = np.where(nw > 0, (finite & (np.abs(r) >= t)).sum(axis=1) / np.maximum(nw, 1), np.nan)
        rolling.update(series)
        n_eff[rows] = _n_eff_packed(counts, xp, yp, n_eff_max_lag, bench)
    rolling = {name: rolling[name] for name in names} if details else {}

    zero = max_lag  # the column of lag 0
    r0 = corr[:, zero]
    n0 = count[:, zero]
    n_eff = np.where(np.isfinite(r0), n_eff, np.nan)
    p, lo_ci, hi_ci = correlation_significance(r0, n_eff)
    best = pd.array([lags[i] if i >= 0 else pd.NA for i in position], dtype="Int64")
    best_n = np.where(position >= 0, count[np.arange(c), np.maximum(position, 0)], 0) if c else np.zeros(0, np.int64)

    ret_corr = np.full(c, np.nan)
    ret_n = np.zeros(c, dtype=np.int64)
    if close is not None or benchmark_close is not None:
        if close is None or benchmark_close is None:
            raise ValueError("close and benchmark_close go together")
        _check_frame(close, "close")
        _check_series(benchmark_close, "benchmark_close")
        _same_tz(close.index, benchmark_close.index)
        cols = [col for col in names if col in close.columns]
        if cols:
            where = [names.index(col) for col in cols]
            ret_corr[where], ret_n[where] = _return_correlations(close[cols], benchmark_close, step, needed)

    summary = pd.DataFrame({
        "n_points": n0,
        "correlation": r0,
        "best_lag": best,
        "best_lag_correlation": best_value,
        "best_lag_n_points": best_n,
        "stability": stab,
        "n_windows": n_windows,
        "n_eff": n_eff,
        "p_value": p,
        "ci_low": lo_ci,
        "ci_high": hi_ci,
        "return_correlation": ret_corr,
        "return_n_points": ret_n,
    }, index=rsi.columns)
    profiles = pd.DataFrame(corr, index=rsi.columns, columns=_lags(max_lag))
    return LeadLag(summary=summary, profiles=profiles, rolling=rolling)


def analyze_many(rsi: pd.DataFrame, benchmark_rsi: pd.Series, step_ms: int, *, max_lag: int = 12,
                 rolling_window: int | None = None, threshold: float = 0.7, min_overlap: int = 30,
                 n_eff_max_lag: int | None = None, close: pd.DataFrame | None = None,
                 benchmark_close: pd.Series | None = None) -> pd.DataFrame:
    """Lead-lag, stability and significance of every column (coin) of ``rsi`` against
    ``benchmark_rsi``, in one vectorised pass: a frame indexed like ``rsi.columns`` with the columns
    of :data:`SUMMARY_COLUMNS`:

    * ``n_points``, ``correlation``: common timestamps and Pearson at lag 0 (as
      :func:`cryptorsi.analytics.correlate_frame`; NaN when fewer than ``min_overlap`` or constant);
    * ``best_lag`` (nullable Int64), ``best_lag_correlation``, ``best_lag_n_points``: :func:`best_lag`
      of the coin's :func:`lag_profile` (``max_lag`` candles each way);
    * ``stability``, ``n_windows``: :func:`stability` of the coin's :func:`rolling_correlation` over
      ``rolling_window`` common timestamps (default :func:`default_rolling_window` of ``step_ms``) at
      ``threshold``, and its number of non-NaN windows;
    * ``n_eff``, ``p_value``, ``ci_low``, ``ci_high``: :func:`effective_sample_size` of the lag-0
      common points (``n_eff_max_lag`` as its ``max_lag``) and :func:`correlation_significance` of
      ``correlation`` with it (NaN where ``correlation`` is NaN);
    * ``return_correlation``, ``return_n_points``: :func:`return_correlation` when ``close`` (coins'
      closes, same column labels) and ``benchmark_close`` are given, else NaN and 0.

    ``rsi`` holds one column per coin on a union index (NaN where a coin has no value).
    """
    return _analyze(rsi, benchmark_rsi, step_ms, max_lag, rolling_window, threshold, min_overlap, n_eff_max_lag,
                    close, benchmark_close, False).summary
