"""Pure analysis functions: correlation on aligned timestamps, low-cap percentile (no threads, no I/O).

Two RSI series are compared at the timestamps where both have a value (an inner join on the index,
NaN dropped); the correlation is Pearson's, computed on centred values.

>>> import pandas as pd
>>> t = pd.date_range("2024-01-01", periods=6, freq="h", tz="UTC")
>>> coin = pd.Series([30.0, 40, 50, None, 70, 60], index=t)
>>> btc = pd.Series([35.0, 45, 55, 65, 75, 50], index=t)
>>> corr, n = correlate(coin, btc, min_overlap=3)
>>> round(corr, 4), n
(0.9061, 5)
"""

from __future__ import annotations

import math
from numbers import Integral, Real

import numpy as np
import pandas as pd

__all__ = [
    "InsufficientOverlap",
    "ConstantRSI",
    "align",
    "pearson",
    "correlate",
    "correlate_frame",
    "low_cap_threshold",
    "low_cap_flags",
    "select",
    "SELECT_COLUMNS",
]

#: Columns a correlations frame must have for :func:`select`.
SELECT_COLUMNS = ("coin_id", "symbol", "timeframe", "correlation", "n_points", "market_cap", "low_cap")

# columns processed together by correlate_frame (bounds the size of its temporaries)
_FRAME_CHUNK = 64


class InsufficientOverlap(ValueError):
    """Too few common candles to correlate; ``n_points`` and ``min_overlap`` give the counts."""

    def __init__(self, n_points: int, min_overlap: int):
        super().__init__(_overlap_reason(n_points, min_overlap))
        self.n_points = n_points
        self.min_overlap = min_overlap


class ConstantRSI(ValueError):
    """The correlation is undefined because one of the RSI series is constant over the common candles."""


def _overlap_reason(n_points: int, min_overlap: int) -> str:
    return f"insufficient overlap: {n_points} common candles, {min_overlap} needed"


def _constant_reason(which: str, n_points: int) -> str:
    return f"constant RSI: the {which} RSI is constant over the {n_points} common candles"


def _check_min_overlap(min_overlap) -> int:
    if isinstance(min_overlap, bool) or not isinstance(min_overlap, Integral) or min_overlap < 0:
        raise ValueError(f"min_overlap must be an int >= 0, got {min_overlap!r}")
    # a correlation needs at least 2 points whatever the caller asks for
    return max(int(min_overlap), 2)


def _valid_values(s: pd.Series, what: str) -> pd.Series:
    if not isinstance(s, pd.Series):
        raise TypeError(f"{what} must be a pandas Series, got {type(s).__name__}")
    if not s.index.is_unique:
        raise ValueError(f"{what} has duplicate timestamps")
    values = s.to_numpy(dtype=np.float64, na_value=np.nan)
    keep = np.isfinite(values)
    return pd.Series(values[keep], index=s.index[keep], copy=False)


def align(a: pd.Series, b: pd.Series) -> tuple[np.ndarray, np.ndarray, pd.DatetimeIndex]:
    """Values of ``a`` and ``b`` at the timestamps where both exist and are not NaN (nor ±inf).

    An inner join on the index, in the order of ``a``'s index: returns ``(a_values, b_values,
    index)`` as two float64 arrays and the common index. Indexes must not hold duplicates.
    """
    a_ok = _valid_values(a, "a")
    b_ok = _valid_values(b, "b")
    if a_ok.index.equals(b_ok.index):
        return a_ok.to_numpy(), b_ok.to_numpy(), a_ok.index
    pos = b_ok.index.get_indexer(a_ok.index)
    found = pos >= 0
    return a_ok.to_numpy()[found], b_ok.to_numpy()[pos[found]], a_ok.index[found]


def _is_constant(v: np.ndarray) -> bool:
    return bool(v.min() == v.max())


def pearson(x, y) -> float:
    """Pearson correlation of two equal-length 1-D arrays, computed on centred values.

    NaN when there are fewer than 2 points or when either side is constant (exactly: all values
    equal). The result is clipped to [-1, 1].

    >>> round(pearson([1.0, 2.0, 3.0], [2.0, 4.0, 7.0]), 6)
    0.993399
    >>> pearson([1.0, 1.0, 1.0], [1.0, 2.0, 3.0])
    nan
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.ndim != 1 or x.shape != y.shape:
        raise ValueError(f"pearson needs two 1-D arrays of the same length, got {x.shape} and {y.shape}")
    if x.size < 2 or _is_constant(x) or _is_constant(y):
        return math.nan
    xc = x - x.mean()
    yc = y - y.mean()
    sxx = np.add.reduce(xc * xc)
    syy = np.add.reduce(yc * yc)
    if sxx == 0.0 or syy == 0.0:  # pragma: no cover - only for values so close that centring loses them
        return math.nan
    r = np.add.reduce(xc * yc) / (math.sqrt(sxx) * math.sqrt(syy))
    return float(min(1.0, max(-1.0, r)))


def correlate(rsi: pd.Series, benchmark_rsi: pd.Series, min_overlap: int) -> tuple[float, int]:
    """``(correlation, n_points)`` of ``rsi`` with ``benchmark_rsi`` over their common timestamps.

    Raises :class:`InsufficientOverlap` (a ValueError, message ``"insufficient overlap: N common
    candles, M needed"``) when fewer than ``min_overlap`` (and at least 2) timestamps are common, and
    :class:`ConstantRSI` (a ValueError, message ``"constant RSI: ..."``) when either RSI is constant
    over them.
    """
    needed = _check_min_overlap(min_overlap)
    x, y, index = align(rsi, benchmark_rsi)
    n = len(index)
    if n < needed:
        raise InsufficientOverlap(n, needed)
    if _is_constant(x):
        raise ConstantRSI(_constant_reason("coin", n))
    if _is_constant(y):
        raise ConstantRSI(_constant_reason("benchmark", n))
    r = pearson(x, y)
    if math.isnan(r):  # pragma: no cover - see pearson
        raise ConstantRSI(_constant_reason("coin", n))
    return r, n


def correlate_frame(rsi: pd.DataFrame, benchmark_rsi: pd.Series, min_overlap: int) -> pd.DataFrame:
    """:func:`correlate` for every column of ``rsi`` (one coin per column) at once.

    Returns a frame indexed by ``rsi.columns`` with columns ``correlation`` (NaN on failure),
    ``n_points`` (common candles with the benchmark) and ``reason`` (None, or the text
    :func:`correlate` would raise with). Each column has its own common-timestamp mask with the
    benchmark; the computation is masked, centred and vectorised over columns.
    """
    if not isinstance(rsi, pd.DataFrame):
        raise TypeError(f"rsi must be a pandas DataFrame, got {type(rsi).__name__}")
    needed = _check_min_overlap(min_overlap)
    if not rsi.index.is_unique:
        raise ValueError("rsi has duplicate timestamps")
    bench = _valid_values(benchmark_rsi, "benchmark_rsi")
    pos = bench.index.get_indexer(rsi.index)
    b = np.full(len(rsi.index), np.nan)
    b[pos >= 0] = bench.to_numpy()[pos[pos >= 0]]
    k = rsi.shape[1]
    values = np.ascontiguousarray(rsi.to_numpy(dtype=np.float64, na_value=np.nan).T)  # (k, n)
    corr = np.full(k, np.nan)
    counts = np.zeros(k, dtype=np.int64)
    coin_const = np.zeros(k, dtype=bool)
    bench_const = np.zeros(k, dtype=bool)
    b_ok = np.isfinite(b)
    for lo in range(0, k, _FRAME_CHUNK):
        x = values[lo : lo + _FRAME_CHUNK]
        mask = np.isfinite(x) & b_ok
        n = mask.sum(axis=1)
        counts[lo : lo + x.shape[0]] = n
        nz = np.maximum(n, 1)
        xm = np.where(mask, x, 0.0)
        bm = np.where(mask, b, 0.0)
        coin_const[lo : lo + x.shape[0]] = (np.where(mask, x, np.inf).min(axis=1)
                                            == np.where(mask, x, -np.inf).max(axis=1))
        bench_const[lo : lo + x.shape[0]] = (np.where(mask, b, np.inf).min(axis=1)
                                             == np.where(mask, b, -np.inf).max(axis=1))
        xc = np.where(mask, xm - (xm.sum(axis=1) / nz)[:, None], 0.0)
        yc = np.where(mask, bm - (bm.sum(axis=1) / nz)[:, None], 0.0)
        sxx = (xc * xc).sum(axis=1)
        syy = (yc * yc).sum(axis=1)
        sxy = (xc * yc).sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            corr[lo : lo + x.shape[0]] = np.clip(sxy / (np.sqrt(sxx) * np.sqrt(syy)), -1.0, 1.0)
    reasons: list[str | None] = [None] * k
    for j in range(k):
        n = int(counts[j])
        if n < needed:
            reasons[j] = _overlap_reason(n, needed)
        elif coin_const[j]:
            reasons[j] = _constant_reason("coin", n)
        elif bench_const[j]:
            reasons[j] = _constant_reason("benchmark", n)
        elif not np.isfinite(corr[j]):  # pragma: no cover - see pearson
            reasons[j] = _constant_reason("coin", n)
        if reasons[j] is not None:
            corr[j] = np.nan
    out = pd.DataFrame({"correlation": corr, "n_points": counts}, index=rsi.columns)
    out["reason"] = pd.Series(reasons, index=rsi.columns, dtype=object)  # object: None stays None
    return out


def _caps_array(market_caps) -> np.ndarray:
    """Market caps as float64, None/NA -> NaN."""
    if isinstance(market_caps, (pd.Series, pd.Index)):
        return market_caps.to_numpy(dtype=np.float64, na_value=np.nan)
    if isinstance(market_caps, np.ndarray) and market_caps.dtype.kind in "fiu":
        return market_caps.astype(np.float64, copy=False).ravel()
    return np.asarray(
        [np.nan if c is None or c is pd.NA else c for c in market_caps], dtype=np.float64
    ).ravel()


def low_cap_threshold(market_caps, percentile: float) -> float | None:
    """Market cap at the ``percentile`` (0-100, linear interpolation) of the caps that are > 0.

    A coin is *low cap* when its market cap is at or below this value. ``None`` when no cap is > 0.

    >>> low_cap_threshold([10, 20, 30, 40, 0, None], 50)
    25.0
    """
    caps = _caps_array(market_caps)
    caps = caps[np.isfinite(caps) & (caps > 0)]
    if caps.size == 0:
        return None
    return float(np.percentile(caps, percentile))


def low_cap_flags(market_caps, threshold: float | None) -> np.ndarray:
    """Boolean array: True where the cap is a positive finite number <= ``threshold``.

    False for None/NaN/0/negative caps, and everywhere when ``threshold`` is None (or NaN).

    >>> low_cap_flags([10, 20, None, 0, float("nan"), 30], 25.0).tolist()
    [True, True, False, False, False, False]
    """
    caps = _caps_array(market_caps)
    if threshold is None:
        return np.zeros(caps.shape, dtype=bool)
    threshold = float(threshold)
    with np.errstate(invalid="ignore"):
        return np.isfinite(caps) & (caps > 0) & (caps <= threshold)


def select(correlations: pd.DataFrame, threshold: float, min_stability: float | None = None) -> pd.DataFrame:
    """The low-cap coins whose RSI correlation with the benchmark is at least ``threshold`` in
    absolute value, best first; with ``min_stability``, only those whose rolling correlation reached
    the threshold in at least that share of its windows (column ``stability``).

    ``correlations`` has the columns of :data:`SELECT_COLUMNS` (coin_id, symbol, timeframe,
    correlation, n_points, market_cap, low_cap); the rows with ``low_cap`` True and
    ``|correlation| >= threshold`` are returned, sorted by correlation descending (a stable sort: ties
    keep their input order), with a fresh 0..n-1 index. Rows with a NaN correlation are never selected.
    """
    if not isinstance(correlations, pd.DataFrame):
        raise TypeError(f"correlations must be a pandas DataFrame, got {type(correlations).__name__}")
    missing = [c for c in SELECT_COLUMNS if c not in correlations.columns]
    if missing:
        raise ValueError(f"correlations lacks column(s) {', '.join(missing)}")
    if isinstance(threshold, bool) or not isinstance(threshold, Real) or not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be a number in [0, 1], got {threshold!r}")
    low_cap = correlations["low_cap"].map(lambda v: v is True or v is np.True_).to_numpy(dtype=bool)
    corr = pd.to_numeric(correlations["correlation"], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    with np.errstate(invalid="ignore"):
        keep = low_cap & (np.abs(corr) >= threshold)
        if min_stability is not None:
            if "stability" not in correlations.columns:
                raise ValueError("correlations lacks column stability (needed by min_stability)")
            stable = pd.to_numeric(correlations["stability"], errors="coerce").to_numpy(np.float64, na_value=np.nan)
            keep &= stable >= min_stability
    chosen = correlations.loc[keep]
    chosen = chosen.sort_values("correlation", ascending=False, kind="stable")
    return chosen.reset_index(drop=True)
