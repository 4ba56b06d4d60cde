"""Relative Strength Index (RSI), vectorised, equal to TA-Lib's ``RSI`` and robust to missing candles.

Tutorial
--------
:func:`rsi` takes a ``pandas.Series`` of closes, a ``DataFrame`` of closes (one coin per column) or a
numpy array (1-D, or 2-D column-wise) and returns the same kind of object, same shape, same index and
columns, as float64, with NaN where there is no RSI yet:

>>> import numpy as np, pandas as pd
>>> from cryptorsi.indicators import rsi
>>> close = pd.Series([10.0, 11, 12, 11, 13, 12, 14], name="close")
>>> rsi(close, period=3).round(2).tolist()
[nan, nan, nan, 66.67, 83.33, 60.61, 78.33]

The first ``period`` candles have no RSI (``period`` changes are needed to seed the averages). With a
DataFrame each column is its own series: a coin listed late (leading NaN) simply starts late, and a
missing candle (interior NaN) is skipped: the change is taken between its valid neighbours, the RSI at
the missing position is NaN, and the rest of the series is unaffected.

>>> closes = pd.DataFrame({"btc": [10.0, 11, 12, 11, 13, 12, 14],
...                        "new": [np.nan, np.nan, 5.0, 6, 5, 7, 8],
...                        "gap": [10.0, 11, np.nan, 12, 11, 13, 12]})
>>> rsi(closes, period=3).round(2)
     btc    new    gap
0    NaN    NaN    NaN
1    NaN    NaN    NaN
2    NaN    NaN    NaN
3  66.67    NaN    NaN
4  83.33    NaN  66.67
5  60.61  75.00  83.33
6  78.33  81.82  60.61

Methods
-------
``method="wilder"`` (default) is Wilder's smoothing exactly as TA-Lib computes it: the average gain and
loss are seeded with the plain mean of the first ``period`` changes, then
``avg = (avg * (period - 1) + change) / period``; ``rsi = 100 * gain / (gain + loss)``, and 0 when
``gain + loss == 0`` (TA-Lib's convention for a flat start). It matches ``talib.RSI`` to ~1e-13.

``method="sma"`` is the simple-moving-average variant: ``rolling(period).mean()`` of the gains and of
the losses, ``100 - 100 / (1 + gain / loss)``, and 100 where the average loss is 0.

Backends
--------
Two kernels compute the same RSI. ``"numba"`` runs plain loops compiled by `numba
<https://numba.pydata.org>`_ (installed by the optional extra ``pip install cryptorsi[fast]``); the
``"numpy"`` kernel needs nothing beyond numpy. Both give the same NaN pattern; their Wilder values agree
within ~1e-13 (both match TA-Lib to that), their ``"sma"`` values are identical (the same operations
in the same order).

By default (``"auto"``) a call uses the numba kernel when numba's compiled kernels are already loaded in
this process (``set_backend("numba")`` loads them), or when the call alone is big enough to pay for
loading them: at least :data:`AUTO_NUMBA_MIN_VALUES` values. Otherwise it uses the numpy kernel. Loading
numba (its import and the kernels compiled and cached on disk) takes ~1 s, which is what the numpy
kernel needs for ~200 million values: a whole analysis of a few hundred coins (a few million values)
finishes sooner without it. When numba cannot be loaded, ``"auto"`` uses numpy silently (the reason is
logged at DEBUG level on the ``cryptorsi.indicators`` logger).

Numba is imported when it is first used, never when cryptorsi is imported. The very first load in an
environment also compiles the kernels (several seconds); the compiled code is cached on disk (numba's
``cache=True``: ``__pycache__`` beside this module, or numba's user-wide cache directory when that
is not writable; when no cache directory is writable the kernels are compiled in memory, in each
process). :func:`get_backend` tells which backend an ordinary call uses.

To choose the backend, set the environment variable ``CRYPTORSI_RSI_BACKEND`` to ``auto`` (the
default), ``numpy`` or ``numba`` before the first RSI computation, or call :func:`set_backend`
(which takes precedence over the variable; ``set_backend(None)`` goes back to it):

>>> from cryptorsi.indicators import set_backend, get_backend
>>> previous = set_backend("numpy")
>>> get_backend()
'numpy'
>>> _ = set_backend(previous)

Asking for ``"numba"`` when numba cannot be imported or its kernels cannot be compiled raises
``ImportError``, from :func:`set_backend` at once, or from the first RSI call when it is asked for by
the environment variable. An unknown name raises ``ValueError``.

Speed
-----
The numba kernel follows each series sample by sample and skips the missing values inside the loop,
so a DataFrame, ragged or not, is one compiled call and a Series one call with no copy. Its Wilder
loop takes about half of TA-Lib's time per series: it multiplies by ``1/period`` where TA-Lib divides,
and each step's multiply-add may be fused (numba's ``fastmath={"contract"}``), which shortens the
chain of dependent operations that bounds such a loop. Its ``"sma"`` loop builds the window sums as
the numpy kernel does (no running sum), in vectorised loops. ``bench/bench_rsi.py`` times both
backends against TA-Lib.

The numpy kernel: Wilder's smoothing is a first-order linear recursion, ``y_t = c y_{t-1} + r u_t``.
Run sample by sample (``scipy.signal.lfilter``) the two recursions (gain, loss) alone cost several
times TA-Lib's whole RSI, so they are computed by blocks of 16 changes instead: the value at the end
of each block (as if the block started from 0) is one matrix-vector product, the 16 times shorter
recursion over the block ends is solved the same way (or, when short, by one small triangular matrix
product), and one matrix product filters every block from its carried-in state. The results match TA-Lib to ~1e-13
(rounding). Every BLAS call stays below OpenBLAS's multithreading thresholds: single-threaded,
predictable under load, and safe to call from several threads at once.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import threading
from numbers import Integral

import numpy as np
import pandas as pd

__all__ = ["rsi", "rsi_values", "set_backend", "get_backend", "METHODS", "BACKENDS", "AUTO_NUMBA_MIN_VALUES"]

#: The RSI methods understood by :func:`rsi`.
METHODS = ("wilder", "sma")

# Block length of the blocked Wilder recursion (the local filter is a BLOCK x BLOCK matrix product).
_BLOCK = 16

# Block-end recursions at most this long are one small matrix product; longer ones are blocked again.
_DENSE_MAX = 64
# OpenBLAS runs a dgemm on one thread up to m*n*k = 65536 * 4 and a dgemv up to m*n = 2304 * 4: the
# products are cut into calls below these sizes. Its threads only pay off on large products; on small
# ones they cost more than they save, and badly so when the cores are busy.
_GEMM_MNK = 65536 * 4
_GEMV_ROWS = 2304 * 4 - 1
_WORKSPACE_MAX = 1 << 20  # float64 values (8 MB)
_TINY = np.nextafter(0.0, 1.0)  # smallest positive (subnormal) double


# --------------------------------------------------------------------------------------------------
# validation


def _check_period(period) -> int:
    if isinstance(period, bool) or not isinstance(period, Integral):
        raise ValueError(f"period must be an int >= 2, got {period!r}")
    period = int(period)
    if period < 2:
        raise ValueError(f"period must be an int >= 2, got {period}")
    return period


def _check_method(method) -> str:
    if not isinstance(method, str) or method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    return method


_NUMERIC_OBJECT_KINDS = frozenset({"floating", "integer", "mixed-integer-float", "decimal", "empty"})


def _float_values(values, what: str) -> np.ndarray:
    """``values`` (ndarray or Series/column) as a float64 ndarray; TypeError when not numeric."""
    dtype = values.dtype
    if isinstance(dtype, np.dtype):
        kind = dtype.kind
        if kind == "f":
            arr = values if isinstance(values, np.ndarray) else values.to_numpy()
            return arr if dtype == np.float64 else arr.astype(np.float64)
        if kind in "iu":
            arr = values if isinstance(values, np.ndarray) else values.to_numpy()
            return arr.astype(np.float64)
        if kind == "O":
            arr = values if isinstance(values, np.ndarray) else values.to_numpy()
            inferred = pd.api.types.infer_dtype(arr.ravel(), skipna=True)
            if inferred in _NUMERIC_OBJECT_KINDS:
                try:
                    return np.asarray(pd.to_numeric(arr.ravel()), dtype=np.float64).reshape(arr.shape)
                except (TypeError, ValueError) as exc:  # pragma: no cover - defensive
                    raise TypeError(f"{what} must be numeric: {exc}") from None
        raise TypeError(f"{what} must be numeric (int or float), got dtype {dtype}")
    # pandas extension dtypes (nullable Float64/Int64...): numeric ones convert, NA -> NaN
    if pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype):
        return values.to_numpy(dtype=np.float64, na_value=np.nan)
    raise TypeError(f"{what} must be numeric (int or float), got dtype {dtype}")


# --------------------------------------------------------------------------------------------------
# Wilder kernel: blocked first-order recursion  y_t = c * y_{t-1} + r * u_t  (c = (p-1)/p, r = 1/p)


@functools.lru_cache(maxsize=256)
def _scan_coefs(c: float, r: float, block: int):
    """Local filter of one block, ``y_row = u_row @ a`` with ``a[i, j] = r c^(j-i)`` for j >= i
    (upper triangular), the block-end weights ``w = a[:, -1]`` and the block decay ``c^block``."""
    lag = np.arange(block)[None, :] - np.arange(block)[:, None]
    powers = np.power(c, np.maximum(lag, 0).astype(np.float64))
    a = np.where(lag >= 0, r * powers, 0.0)
    w = np.ascontiguousarray(a[:, -1])
    a.setflags(write=False)
    w.setflags(write=False)
    return a, w, c**block


def _scan(u3: np.ndarray, c: float, r: float, y: np.ndarray | None = None) -> np.ndarray:
    """``y_t = c * y_{t-1} + r * u_t`` (``y_{-1} = 0``) along the flattened last two axes of the
    C-contiguous ``u3`` (rows, blocks, block), into ``y`` (C-contiguous, same size, not overlapping
    ``u3``; a new array if None), returned with the shape of ``u3``. ``u3`` is used as scratch space."""
    rows, nblocks, block = u3.shape
    a, w, c_block = _scan_coefs(c, r, block)
    u2 = u3.reshape(-1, block)
    if nblocks > 1:
        # value at the end of each block if the block started from 0 ...
        ends = np.empty(u2.shape[0])
        step = _GEMV_ROWS // block
        for s in range(0, u2.shape[0], step):
            np.matmul(u2[s : s + step], w, out=ends[s : s + step])
        ends = ends.reshape(rows, nblocks)[:, :-1]
        # ... then the true block-end values E_b = ends_b + c^B E_{b-1}, which enter the next block as
        # an extra input (c / r) * E_b at its first sample (so they are computed pre-scaled)
        carry = _block_carry(ends, c_block, c / r)
        u3[:, 1:, 0] += carry
    y = np.empty_like(u2) if y is None else y.reshape(u2.shape)
    step = _GEMM_MNK // (block * block)
    for s in range(0, u2.shape[0], step):
        np.matmul(u2[s : s + step], a, out=y[s : s + step])
    return y.reshape(rows, nblocks, block)


@functools.lru_cache(maxsize=256)
def _decay_matrix(c: float, scale: float) -> np.ndarray:
    """``t[i, j] = scale * c^(j-i)`` for j >= i, else 0: (_DENSE_MAX, _DENSE_MAX), upper triangular.
    ``e @ t[:m, :m]`` runs the recursion ``E_j = c E_{j-1} + scale e_j`` over m <= _DENSE_MAX values."""
    lag = np.arange(_DENSE_MAX)[None, :] - np.arange(_DENSE_MAX)[:, None]
    with np.errstate(under="ignore"):
        t = np.where(lag >= 0, scale * np.power(c, np.maximum(lag, 0).astype(np.float64)), 0.0)
    t.setflags(write=False)
    return t


def _block_carry(e: np.ndarray, c: float, scale: float) -> np.ndarray:
    """``E_j = c E_{j-1} + scale e_j`` (``E_{-1} = 0``) along the rows of ``e`` (rows, m): one small
    matrix product when m <= _DENSE_MAX, else the block scheme again on the m values."""
    rows, m = e.shape
    if m <= _DENSE_MAX:
        return e @ _decay_matrix(c, scale)[:m, :m]
    n2 = -(-m // _BLOCK)
    e2 = np.zeros((rows, n2, _BLOCK))
    e2.reshape(rows, -1)[:, :m] = e
    return _scan(e2, c, scale).reshape(rows, -1)[:, :m]


_local = threading.local()


def _workspace(size: int) -> np.ndarray:
    """A scratch float64 array of ``size`` values, kept per thread and reused from call to call.

    Allocating the kernel's temporaries afresh on every call costs more than the arithmetic for
    series of a few thousand candles (fresh pages, allocator churn); up to _WORKSPACE_MAX values
    are kept per thread (a few MB), larger requests get a temporary array.
    """
    if size > _WORKSPACE_MAX:
        return np.empty(size)
    work = getattr(_local, "work", None)
    if work is None or work.size < size:
        work = np.empty(max(size, 2 * (work.size if work is not None else 0)))
        if work.size > _WORKSPACE_MAX:
            work = np.empty(size)
        _local.work = work
    return work[:size]


def _wilder_rows(x: np.ndarray, p: int, out: np.ndarray) -> None:
    """Wilder RSI of each row of ``x`` (k, n), finite values, n >= p + 1, written into ``out`` (k, n)."""
    k, n = x.shape
    m = n - p  # number of RSI values per row
    nb = -(-m // _BLOCK)
    pre = -(-(p - 1) // _BLOCK) * _BLOCK  # room for the first p - 1 changes, a whole number of blocks
    length = pre + nb * _BLOCK
    off = pre - (p - 1)
    size = 2 * k * length
    work = _workspace(2 * size)
    buf = work[:size].reshape(2, k, length)
    gain = buf[0, :, off : off + n - 1]
    absd = buf[1, :, off : off + n - 1]
    np.subtract(x[:, 1:], x[:, :-1], out=gain)
    np.abs(gain, out=absd)
    np.maximum(gain, 0.0, out=gain)
    # seed: plain sum of the first p changes, at the first filtered sample
    np.add.reduce(buf[:, :, off : pre + 1], axis=2, out=buf[:, :, pre])
    buf[:, :, :pre] = 0.0
    buf[:, :, off + n - 1 :] = 0.0
    y = _scan(buf.reshape(2 * k, length // _BLOCK, _BLOCK), (p - 1) / p, 1.0 / p, work[size:])
    y = y.reshape(2, k, length)
    # avg_gain / (avg_gain + avg_loss), the denominator being filtered directly from |change|.
    # Where it is 0 (flat start) the gain is 0 too: clamping it to the smallest positive double gives
    # 0 / tiny = 0, TA-Lib's convention, without a 0/0.
    gains = y[0, :, pre : pre + m]
    total = y[1, :, pre : pre + m]
    np.maximum(total, _TINY, out=total)
    res = out[:, p:]
    out[:, :p] = np.nan
    np.divide(gains, total, out=res)
    np.multiply(res, 100.0, out=res)


# --------------------------------------------------------------------------------------------------
# SMA kernel: rolling means of gains and losses (exact zeros preserved)


def _window_sums(v: np.ndarray, p: int) -> np.ndarray:
    """Sums of every window of ``p`` consecutive values along the rows of ``v`` (rows, L), L >= p;
    returns (rows, L - p + 1).

    Sums of 2, 4, 8... consecutive values are built by pairing shifted halves, and each window is
    assembled from the powers of two in ``p``: every window sum adds exactly its own ``p`` values
    (no running sum, so no drift and no leftover from large values that left the window; a window of
    zeros sums to exactly 0), in about ``2 log2(p)`` vectorised passes.
    """
    count = v.shape[1] - p + 1
    result = None
    offset = 0
    power, size, rest = v, 1, p
    while True:
        if rest & 1:
            part = power[:, offset : offset + count]
            if result is None:
                result = part.copy()
            else:
                result += part
            offset += size
        rest >>= 1
        if not rest:
            return result
        power = power[:, :-size] + power[:, size:]  # power[i] = sum of v[i : i + 2 * size]
        size *= 2


def _sma_rows(x: np.ndarray, p: int, out: np.ndarray) -> None:
    """SMA RSI of each row of ``x`` (k, n), finite values, n >= p + 1, written into ``out`` (k, n)."""
    k, n = x.shape
    d = np.subtract(x[:, 1:], x[:, :-1])
    gl = np.empty((2 * k, n - 1))
    np.maximum(d, 0.0, out=gl[:k])
    np.subtract(gl[:k], d, out=gl[k:])  # loss = -change where change < 0, else 0 (exact)
    sums = _window_sums(gl, p)
    gain = sums[:k] / p
    loss = sums[k:] / p
    res = out[:, p:]
    out[:, :p] = np.nan
    with np.errstate(divide="ignore", invalid="ignore"):
        rs = gain / loss
        np.divide(100.0, 1.0 + rs, out=res)
    np.subtract(100.0, res, out=res)
    res[loss == 0.0] = 100.0


# rows per kernel call in the DataFrame path: enough to amortise the per-call overhead, few enough
# for the temporaries to stay small (large temporaries cost fresh pages on every call)
_wilder_rows.chunk_rows = 8
_sma_rows.chunk_rows = 1
_KERNELS = {"wilder": _wilder_rows, "sma": _sma_rows}


# --------------------------------------------------------------------------------------------------
# numba kernels: plain loops, compiled by _compile_numba() (numba is imported only then). Each takes
# ``x``, rows of ``n`` values laid end to end (1-D, C-contiguous; a row = one series, non-finite
# values = missing), and writes their RSI into ``out`` (same size), every position exactly once; the
# return value is the number of missing values met. Compiled with error_model="numpy": a float
# division by 0 gives inf/nan instead of raising (the SMA loop replaces those values).


def _wilder_loop(x, n, p, out):
    """Wilder RSI of each row, the missing values skipped inside the loop."""
    missing = 0
    if n == 0:
        return missing
    c = (p - 1) / p
    r = 1.0 / p
    for base in range(0, x.shape[0], n):
        row = x[base : base + n]
        res = out[base : base + n]
        # leading missing values, then the first valid value (no change yet)
        i = 0
        while i < n and not math.isfinite(row[i]):
            res[i] = np.nan
            i += 1
        missing += i
        if i == n:
            continue
        prev = row[i]
        res[i] = np.nan
        i += 1
        # the first p changes: their sums seed the averages
        gain_sum = 0.0
        abs_sum = 0.0
        seen = 0
        while i < n and seen < p:
            v = row[i]
            res[i] = np.nan
            i += 1
            if math.isfinite(v):
                d = v - prev
                prev = v
                gain_sum += max(d, 0.0)
                abs_sum += abs(d)
                seen += 1
            else:
                missing += 1
        if seen < p:
            continue
        # average gain and average |change| (= gain + loss); a flat start (total 0) gives 0 / tiny = 0
        gain = r * gain_sum
        total = r * abs_sum
        res[i - 1] = gain / max(total, _TINY) * 100.0
        rest = row[i:]
        rest_res = res[i:]
        for j in range(rest.shape[0]):
            v = rest[j]
            if math.isfinite(v):
                d = v - prev
                prev = v
                gain = c * gain + r * max(d, 0.0)
                total = c * total + r * abs(d)
                rest_res[j] = gain / max(total, _TINY) * 100.0
            else:
                rest_res[j] = np.nan
                missing += 1
    return missing


def _sma_loop(x, n, p, out):
    """SMA RSI of each row: the same operations, in the same order, as _sma_rows on the row's valid
    values (so the same results), put back at their positions."""
    missing = 0
    if n == 0:
        return missing
    gains = np.empty(n)
    losses = np.empty(n)
    loss_sums = np.empty(n)
    packed = np.empty(0)  # results of a row with gaps, before they are put back (allocated on need)
    where = np.empty(0, np.int64)
    for base in range(0, x.shape[0], n):
        row = x[base : base + n]
        res = out[base : base + n]
        count = 0
        first = -1
        last = -1
        for i in range(n):
            if math.isfinite(row[i]):
                count += 1
                if first < 0:
                    first = i
                last = i
        missing += n - count
        if count <= p:
            res[:] = np.nan
            continue
        gappy = last - first + 1 != count
        if not gappy:  # one run of valid values (maybe listed late, delisted early): computed in place
            res[:first] = np.nan
            res[last + 1 :] = np.nan
            for j in range(count - 1):
                d = row[first + j + 1] - row[first + j]
                g = max(d, 0.0)
                gains[j] = g
                losses[j] = g - d  # -change where change < 0, else 0 (exact)
            target = res[first : last + 1]
        else:  # gaps: the changes between consecutive valid values, results put back below
            if packed.shape[0] == 0:
                packed = np.empty(n)
                where = np.empty(n, np.int64)
            res[:] = np.nan
            prev = row[first]
            where[0] = first
            j = 0
            for i in range(first + 1, last + 1):
                v = row[i]
                if math.isfinite(v):
                    d = v - prev
                    prev = v
                    g = max(d, 0.0)
                    gains[j] = g
                    losses[j] = g - d
                    j += 1
                    where[j] = i
            target = packed[:count]
        # window sums of p changes, as _window_sums builds them (in place: gains/losses become sums of
        # 2, 4, 8... consecutive changes); the gain sums go to target[p:], the loss sums to loss_sums.
        # (Loops over views indexed from 0, which numba compiles to vector instructions.)
        windows = count - p
        gain_sums = target[p:]
        loss_sums_w = loss_sums[:windows]
        length = count - 1
        offset = 0
        size = 1
        rest = p
        started = False
        while True:
            if rest & 1:
                gain_part = gains[offset : offset + windows]
                loss_part = losses[offset : offset + windows]
                if started:
                    for j in range(windows):
                        gain_sums[j] += gain_part[j]
                    for j in range(windows):
                        loss_sums_w[j] += loss_part[j]
                else:
                    gain_sums[:] = gain_part
                    loss_sums_w[:] = loss_part
                    started = True
                offset += size
            rest >>= 1
            if rest == 0:
                break
            length -= size
            low = gains[:length]
            high = gains[size : size + length]
            for j in range(length):
                low[j] += high[j]
            low = losses[:length]
            high = losses[size : size + length]
            for j in range(length):
                low[j] += high[j]
            size *= 2
        target[:p] = np.nan
        for j in range(windows):
            gain = gain_sums[j] / p
            loss = loss_sums_w[j] / p
            value = 100.0 - 100.0 / (1.0 + gain / loss)  # inf/nan where loss == 0: replaced below
            gain_sums[j] = 100.0 if loss == 0.0 else value
        if gappy:
            for j in range(p, count):
                res[where[j]] = packed[j]
    return missing


# method -> (loop, numba fastmath flags). Wilder's recursion may use fused multiply-adds (its
# rounding differs from TA-Lib's at the 1e-14 level either way; the dependency chain is shorter);
# the SMA loop keeps IEEE operations as written, to give exactly the numpy kernel's values.
_NUMBA_LOOPS = {"wilder": (_wilder_loop, {"contract"}), "sma": (_sma_loop, False)}


# --------------------------------------------------------------------------------------------------
# 1-D and 2-D drivers


def _rsi_1d(values: np.ndarray, p: int, kernel) -> np.ndarray:
    """RSI of one float64 series that may contain NaN/inf (missing values)."""
    n = values.shape[0]
    out = np.empty(n)
    if n > p and np.isfinite(np.add.reduce(values)):
        kernel(values[None, :], p, out[None, :])
        return out
    out.fill(np.nan)
    if n <= p:
        return out
    where, count = _valid_positions(values)
    if count <= p:
        return out
    if isinstance(where, slice):  # one run: late listing and/or early end
        kernel(values[None, where], p, out[None, where])
    else:  # gaps: compute on the valid values, then put them back in place
        res = np.empty(count)
        kernel(values[where][None, :], p, res[None, :])
        out[where] = res
    return out


def _rsi_columns(a: np.ndarray, p: int, kernel) -> np.ndarray:
    """RSI of every row of the float64 array ``a`` (K, n) (a row = one series); returns (K, n)."""
    nrows, n = a.shape
    out = np.empty((nrows, n))
    if nrows == 0 or n == 0:
        return out
    if n <= p:
        out.fill(np.nan)
        return out
    ragged: list[int] = []
    chunk_rows = kernel.chunk_rows
    for lo in range(0, nrows, chunk_rows):
        hi = min(lo + chunk_rows, nrows)
        # the row sums are finite iff the rows hold no NaN/inf (an overflow only sends a row to the
        # slower path, which handles it the same way); reading the chunk also warms the cache
        ok = np.isfinite(a[lo:hi].sum(axis=1))
        if ok.all():
            kernel(a[lo:hi], p, out[lo:hi])
            continue
        # the complete rows of the chunk, by runs of consecutive rows (views, no copies)
        edges = np.flatnonzero(np.diff(np.concatenate(([False], ok, [False])).astype(np.int8)))
        for start, stop in zip(edges[::2], edges[1::2]):
            kernel(a[lo + start : lo + stop], p, out[lo + start : lo + stop])
        ragged.extend((lo + np.flatnonzero(~ok)).tolist())
    if ragged:
        _rsi_ragged(a, ragged, p, kernel, out)
    return out


def _valid_positions(row: np.ndarray):
    """Where ``row`` is finite: a slice when the valid values form one run, else an index array;
    with their count."""
    mask = np.isfinite(row)
    count = int(np.count_nonzero(mask))
    if count == 0:
        return slice(0, 0), 0
    first = int(mask.argmax())
    last = row.shape[0] - 1 - int(mask[::-1].argmax())
    if last - first + 1 == count:
        return slice(first, last + 1), count
    return np.flatnonzero(mask), count


def _rsi_ragged(a: np.ndarray, rows: list[int], p: int, kernel, out: np.ndarray) -> None:
    """Rows with missing values: the valid values of each row are packed to the left of a shared
    buffer (padded by repeating the last value: zero changes, which cannot affect earlier RSI
    values), filtered together, and the results put back at the valid positions."""
    items = []
    for i in rows:
        where, count = _valid_positions(a[i])
        out[i] = np.nan
        if count > p:
            items.append((count, i, where))
    items.sort(key=lambda item: -item[0])
    for s in range(0, len(items), kernel.chunk_rows):
        chunk = items[s : s + kernel.chunk_rows]
        packed = np.empty((len(chunk), chunk[0][0]))
        for j, (count, i, where) in enumerate(chunk):
            packed[j, :count] = a[i, where]
            packed[j, count:] = packed[j, count - 1]
        res = np.empty_like(packed)
        kernel(packed, p, res)
        for j, (count, i, where) in enumerate(chunk):
            out[i, where] = res[j, :count]


# --------------------------------------------------------------------------------------------------
# backends: "numpy" (the blocked kernels) or "numba" (the loops, compiled on first use)

#: The backend names understood by :func:`set_backend` and ``CRYPTORSI_RSI_BACKEND``.
BACKENDS = ("auto", "numpy", "numba")
#: Under ``"auto"``, the size of one call (values) from which numba is loaded for it if it is not loaded yet:
#: where the numpy kernel's extra time (a few ns per value) reaches numba's ~1 s load.
AUTO_NUMBA_MIN_VALUES = 200_000_000
_BACKEND_ENV = "CRYPTORSI_RSI_BACKEND"
_NOT_FINITE = "rsi_values needs finite values (no NaN/inf); use rsi() for series with gaps"

_log = logging.getLogger(__name__)
_backend_lock = threading.RLock()
_backend_choice: str | None = None  # set_backend()'s choice; None: the environment variable's
_backend = None  # the backend in use; None: resolved by the next call
_numba_kernels: dict | None = None  # method -> compiled loop, once compiled
_numba_error: Exception | None = None  # why numba could not be used, once it failed


class _NumpyBackend:
    """Backend interface: ``one`` (1-D values, may hold NaN), ``rows`` (K, n) C-contiguous, one series
    per row, ``finite`` (1-D values, n > p, ValueError if any is not finite); float64 inputs."""

    name = "numpy"

    @staticmethod
    def one(values: np.ndarray, p: int, method: str) -> np.ndarray:
        return _rsi_1d(values, p, _KERNELS[method])

    @staticmethod
    def rows(a: np.ndarray, p: int, method: str) -> np.ndarray:
        return _rsi_columns(a, p, _KERNELS[method])

    @staticmethod
    def finite(values: np.ndarray, p: int, method: str) -> np.ndarray:
        if not np.isfinite(np.add.reduce(values)):
            raise ValueError(_NOT_FINITE)
        out = np.empty(values.shape[0])
        _KERNELS[method](values[None, :], p, out[None, :])
        return out


def _c_aligned(a: np.ndarray) -> np.ndarray:
    """``a`` itself when C-contiguous and aligned (what the compiled loops take), else a copy that is."""
    flags = a.flags
    if flags.c_contiguous and flags.aligned:
        return a
    return np.require(a, np.float64, "CA")


class _NumbaBackend:
    name = "numba"

    def __init__(self, kernels: dict):
        self.kernels = kernels

    def one(self, values: np.ndarray, p: int, method: str) -> np.ndarray:
        values = _c_aligned(values)
        out = np.empty(values.shape[0])
        self.kernels[method](values, values.shape[0], p, out)
        return out

    def rows(self, a: np.ndarray, p: int, method: str) -> np.ndarray:
        k, n = a.shape
        out = np.empty((k, n))
        if a.size:
            self.kernels[method](_c_aligned(a).reshape(-1), n, p, out.reshape(-1))
        return out

    def finite(self, values: np.ndarray, p: int, method: str) -> np.ndarray:
        values = _c_aligned(values)
        out = np.empty(values.shape[0])
        if self.kernels[method](values, values.shape[0], p, out):  # the number of missing values
            raise ValueError(_NOT_FINITE)
        return out


_NUMPY_BACKEND = _NumpyBackend()


def _loaded_numba_backend():
    """The numba backend when its kernels are loaded in this process, else None (never loads them)."""
    kernels = _numba_kernels
    return None if kernels is None else _NumbaBackend(kernels)


class _AutoBackend:
    """``"auto"``: numba when it is loaded already, or for a call of at least AUTO_NUMBA_MIN_VALUES values
    (loading it then, when it can be); numpy otherwise."""

    name = "auto"

    @staticmethod
    def _for(size: int):
        backend = _loaded_numba_backend()
        if backend is None and size >= AUTO_NUMBA_MIN_VALUES and _numba_error is None:
            try:
                _load_numba()
            except ImportError:  # logged by _load_numba
                pass
            backend = _loaded_numba_backend()
        return backend or _NUMPY_BACKEND

    def one(self, values: np.ndarray, p: int, method: str) -> np.ndarray:
        return self._for(values.size).one(values, p, method)

    def rows(self, a: np.ndarray, p: int, method: str) -> np.ndarray:
        return self._for(a.size).rows(a, p, method)

    def finite(self, values: np.ndarray, p: int, method: str) -> np.ndarray:
        return self._for(values.size).finite(values, p, method)


_AUTO_BACKEND = _AutoBackend()


def _compile_numba() -> dict:
    """Import numba and compile the loops (cached on disk when numba finds a writable cache
    directory, in memory otherwise); returns {method: compiled loop}."""
    import numba
    from numba import types

    values = types.Array(types.float64, 1, "C", readonly=True)  # accepts writable arrays too
    out = types.Array(types.float64, 1, "C")
    signature = types.int64(values, types.int64, types.int64, out)
    kernels = {}
    for method, (loop, fastmath) in _NUMBA_LOOPS.items():
        try:
            kernels[method] = numba.njit(signature, cache=True, nogil=True, fastmath=fastmath,
                                          error_model="numpy")(loop)
        except Exception as exc:  # no writable cache directory, or the cache could not be written
            _log.debug("numba cannot cache %s (%s: %s); compiling it in memory",
                       loop.__name__, type(exc).__name__, exc)
            kernels[method] = numba.njit(signature, cache=False, nogil=True, fastmath=fastmath,
                                          error_model="numpy")(loop)
    # one small call of each, with a gap, before they are trusted
    check = np.array([1.0, 2.0, np.nan, 1.5, 3.0, 2.5])
    res = np.empty(6)
    for kernel in kernels.values():
        if kernel(check, 6, 2, res) != 1 or not np.isfinite(res[3:]).all():
            raise RuntimeError("the compiled RSI loop gave a wrong result on a smoke test")
    return kernels


def _load_numba() -> dict:
    """The compiled loops, compiled on the first call; ImportError (every call) if numba cannot be
    imported or the loops cannot be compiled."""
    global _numba_kernels, _numba_error
    kernels = _numba_kernels
    if kernels is not None:
        return kernels
    with _backend_lock:
        if _numba_kernels is None and _numba_error is None:
            try:
                _numba_kernels = _compile_numba()
            except Exception as exc:  # numba missing or broken, compilation failed
                _numba_error = exc
                _log.debug("numba RSI backend unavailable (%s: %s)", type(exc).__name__, exc,
                           exc_info=True)
        if _numba_kernels is not None:
            return _numba_kernels
        exc = _numba_error
    raise ImportError(
        f"the numba RSI backend is not available ({type(exc).__name__}: {exc}); install numba "
        f"(pip install 'cryptorsi[fast]') or use the numpy backend"
    ) from exc


def _check_backend(name, what: str) -> str:
    if not isinstance(name, str) or name.strip().lower() not in BACKENDS:
        raise ValueError(f"{what} must be one of {BACKENDS}, got {name!r}")
    return name.strip().lower()


def _resolve_backend():
    """The backend in use, resolved from set_backend()'s choice or the environment variable."""
    global _backend
    with _backend_lock:
        if _backend is None:
            if _backend_choice is not None:
                choice = _backend_choice
            else:
                choice = _check_backend(os.environ.get(_BACKEND_ENV) or "auto", _BACKEND_ENV)
            if choice == "numpy":
                backend = _NUMPY_BACKEND
            elif choice == "numba":
                backend = _NumbaBackend(_load_numba())  # ImportError when unavailable
            else:
                backend = _AUTO_BACKEND
            _backend = backend
        return _backend


def set_backend(name: str | None) -> str | None:
    """Choose the RSI kernel for :func:`rsi` and :func:`rsi_values`, process-wide: ``"auto"`` (numba when
    it is loaded or a call is big, else numpy; see the module's notes), ``"numpy"``, ``"numba"``, or ``None``
    for the choice of the
    ``CRYPTORSI_RSI_BACKEND`` environment variable (``auto`` when unset). Takes precedence over the
    variable. Returns the previous choice (``None`` when it was the variable's), for restoring it:

    >>> previous = set_backend("numpy")
    >>> _ = set_backend(previous)

    ``"numba"`` loads numba at once and raises ``ImportError`` (leaving the choice unchanged) when it
    cannot be imported or its kernels cannot be compiled; an unknown name raises ``ValueError``.
    """
    global _backend_choice, _backend
    if name is not None:
        name = _check_backend(name, "backend")
    with _backend_lock:
        backend = None
        if name == "numba":
            backend = _NumbaBackend(_load_numba())
        elif name == "numpy":
            backend = _NUMPY_BACKEND
        previous = _backend_choice
        _backend_choice = name
        _backend = backend  # None: resolved by the next call ("auto", or the environment variable)
    return previous


def get_backend() -> str:
    """The backend an RSI computation of ordinary size uses next, ``"numpy"`` or ``"numba"`` (under
    ``"auto"``: numba once it is loaded in this process; this never loads it)."""
    backend = _backend or _resolve_backend()
    if backend is _AUTO_BACKEND:
        return "numba" if _numba_kernels is not None else "numpy"
    return backend.name


# --------------------------------------------------------------------------------------------------
# public API


def no_rsi_reason(period: int, n_candles: int) -> str:
    """Why a series has no RSI: fewer than ``period + 1`` candles (the reason a failure row gives)."""
    return f"too few candles for RSI({period}): {n_candles} candles"


def rsi_values(values: np.ndarray, period: int = 14, method: str = "wilder") -> np.ndarray:
    """RSI of a 1-D float array with no missing value (the kernel behind :func:`rsi`).

    Returns a new float64 array of the same length; its first ``period`` values are NaN (all of them
    when ``len(values) <= period``). Raises ``ValueError`` if ``values`` holds NaN or inf: use
    :func:`rsi` for series with missing candles.

    >>> rsi_values(np.array([1.0, 2.0, 3.0, 2.0]), period=2).tolist()
    [nan, nan, 100.0, 50.0]
    """
    p = _check_period(period)
    method = _check_method(method)
    values = np.asarray(values)
    if values.ndim != 1:
        raise ValueError(f"rsi_values needs a 1-D array, got {values.ndim}-D")
    values = _float_values(values, "values")
    if values.shape[0] <= p:
        return np.full(values.shape[0], np.nan)
    return (_backend or _resolve_backend()).finite(values, p, method)


def rsi(
    close: pd.Series | pd.DataFrame | np.ndarray, period: int = 14, method: str = "wilder"
) -> pd.Series | pd.DataFrame | np.ndarray:
    """RSI of ``close``: a Series, a DataFrame (each column its own series) or a 1-D/2-D ndarray
    (2-D: column-wise).

    Returns the same kind of object with the same shape, index and columns, float64, NaN where there
    is no RSI. RSI is computed on the values that exist: leading NaN (a coin listed late) delay its
    start, an interior NaN (a missing candle) is skipped, its output is NaN and the change is taken
    between its valid neighbours. The first ``period`` valid values of each series have no RSI, for
    both methods (the original SMA formula gave a value at valid position ``period - 1`` by counting the
    missing first change as a zero change; here that position is NaN too). Fewer than ``period + 1``
    valid values give all NaN. NaN and ±inf are both treated as missing.

    ``method="wilder"`` equals ``talib.RSI`` (0 when average gain and loss are both 0);
    ``method="sma"`` uses rolling means and gives 100 where the average loss is 0.
    """
    p = _check_period(period)
    method = _check_method(method)
    backend = _backend or _resolve_backend()
    if isinstance(close, pd.Series):
        values = _float_values(close, "close")
        return pd.Series(backend.one(values, p, method), index=close.index, name=close.name, copy=False)
    if isinstance(close, pd.DataFrame):
        if close.shape[1] == 0:
            return pd.DataFrame(index=close.index, columns=close.columns, dtype=np.float64)
        dtypes = close.dtypes
        if all(isinstance(dt, np.dtype) and dt == np.float64 for dt in dtypes):
            arr = close.to_numpy()
        else:
            arr = np.column_stack([_float_values(close.iloc[:, j], f"column {close.columns[j]!r}")
                                   for j in range(close.shape[1])])
        res = backend.rows(np.ascontiguousarray(arr.T), p, method)
        return pd.DataFrame(res.T, index=close.index, columns=close.columns, copy=False)
    if isinstance(close, np.ndarray):
        if close.ndim == 1:
            return backend.one(_float_values(close, "close"), p, method)
        if close.ndim == 2:
            arr = _float_values(close, "close")
            return backend.rows(np.ascontiguousarray(arr.T), p, method).T
        raise ValueError(f"close must be a 1-D or 2-D array, got {close.ndim}-D")
    raise TypeError(
        f"close must be a pandas Series, a DataFrame or a numpy ndarray, got {type(close).__name__}"
    )
