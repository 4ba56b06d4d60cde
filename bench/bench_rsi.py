"""Benchmark cryptorsi.indicators.rsi, numpy and numba backends, against TA-Lib: 500 seeded series x
8,760 hourly candles.

    python bench/bench_rsi.py [--series 500] [--candles 8760] [--period 14] [--repeats 7]

Every variant is timed in the same run, round-robin (one timing of each variant per round, best of
``--repeats`` rounds, ``time.perf_counter``), so background load hits them alike; the backend is
switched (``set_backend``) between variants, outside the timings. Ratios are ours / TA-Lib measured
in the same run, < 1 meaning faster than TA-Lib. Workloads:

- "per Series": ``rsi(series)`` once per coin, each Series with its own contiguous values (as a
  candle frame's close column is), against ``talib.RSI`` on the ndarray, and against ``talib.RSI`` on
  the Series (TA-Lib's pandas wrapper, which also returns a Series); "per ndarray": ``rsi(array)``,
  no pandas on either side;
- "DataFrame": ``rsi(frame)`` on one 500-column frame, against TA-Lib per column;
- "ragged DataFrame": 20% of the coins listed late, 5% with missing candles, against TA-Lib run on
  the compacted valid values of each column;
- "kept": every result stays alive, as for a caller that keeps them (500 fresh output arrays, fresh
  memory pages, which cost as much as TA-Lib's arithmetic here); "discarded": each result is dropped
  at once (memory reused, closer to pure compute); the DataFrame variants build one frame holding all
  results.

max |diff| is against TA-Lib (realigned for the ragged frame). The numba line at the end is the
first RSI call in a new process (importing numba, loading the kernels compiled and cached by an
earlier run). The last row times only the two sample-by-sample Wilder recursions in scipy's lfilter,
for reference. Needs TA-Lib (``pip install ta-lib``, a dev dependency); numba (extra ``fast``) for
the numba columns.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import talib
from scipy.signal import lfilter

from cryptorsi import indicators
from cryptorsi.indicators import rsi, rsi_values

BACKENDS = ("numpy", "numba")


def make_closes(n_series: int, n_candles: int, seed: int = 42) -> pd.DataFrame:
    """Seeded geometric random walks, hourly, prices spread from ~1e-4 to ~3e4."""
    rng = np.random.default_rng(seed)
    start = 10.0 ** rng.uniform(-4, 4.5, n_series)
    steps = rng.normal(0.0, 0.01, (n_candles, n_series))
    close = start * np.exp(np.cumsum(steps, axis=0))
    index = pd.date_range("2024-01-01", periods=n_candles, freq="h", tz="UTC", name="open_time")
    return pd.DataFrame(close, index=index, columns=[f"c{i:03d}" for i in range(n_series)])


def with_late_listings_and_gaps(closes: pd.DataFrame, seed: int = 7) -> pd.DataFrame:
    """~20% of the columns listed late (leading NaN), ~5% with a few missing candles."""
    rng = np.random.default_rng(seed)
    values = closes.to_numpy(copy=True)
    n, k = values.shape
    late = rng.choice(k, size=k // 5, replace=False)
    for j in late:
        values[: rng.integers(24, n // 2), j] = np.nan
    gappy = rng.choice(k, size=max(1, k // 20), replace=False)
    for j in gappy:
        values[rng.integers(n // 2, n, size=5), j] = np.nan
    return pd.DataFrame(values, index=closes.index, columns=closes.columns)


def talib_reference(frame: pd.DataFrame, period: int) -> np.ndarray:
    """TA-Lib per column on the valid values, realigned (TA-Lib itself mishandles interior NaN)."""
    out = np.full(frame.shape, np.nan)
    for j in range(frame.shape[1]):
        col = frame.iloc[:, j].to_numpy()
        valid = np.flatnonzero(~np.isnan(col))
        out[valid, j] = talib.RSI(col[valid], timeperiod=period)
    return out


def _lfilter_only(gl: np.ndarray, period: int) -> np.ndarray:
    return lfilter([1.0 / period], [1.0, -(period - 1) / period], gl, axis=1)


def best_times(variants: dict, repeats: int) -> dict:
    """Best time of each variant; ``variants``: key -> (backend or None, callable)."""
    best = {key: float("inf") for key in variants}
    for _ in range(repeats):
        for key, (backend, fn) in variants.items():
            if backend is not None:
                indicators.set_backend(backend)
            t0 = time.perf_counter()
            fn()
            best[key] = min(best[key], time.perf_counter() - t0)
    return best


def numba_first_call() -> float | None:
    """Seconds of the first RSI call in a new process with the numba backend (import + cached
    kernels), or None when it fails."""
    code = (
        "import time, numpy as np\n"
        "from cryptorsi import indicators\n"
        "t0 = time.perf_counter()\n"
        "indicators.set_backend('numba')\n"
        "indicators.rsi(np.linspace(1.0, 2.0, 100), 14)\n"
        "print(time.perf_counter() - t0)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    return float(done.stdout) if done.returncode == 0 else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=500)
    parser.add_argument("--candles", type=int, default=8760)
    parser.add_argument("--period", type=int, default=14)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    p = args.period

    backends = list(BACKENDS)
    try:
        indicators.set_backend("numba")  # compiles now (or loads the cache), outside the timings
    except ImportError as exc:
        print(f"numba backend unavailable ({exc}): numpy only")
        backends.remove("numba")

    closes = make_closes(args.series, args.candles)
    arrays = [np.ascontiguousarray(closes.iloc[:, j].to_numpy()) for j in range(closes.shape[1])]
    # one Series per coin with its own contiguous values, as a candle frame's close column is
    # (a column taken from this wide frame would be a strided view)
    series = [pd.Series(a, index=closes.index, name=name) for a, name in zip(arrays, closes.columns)]
    ragged = with_late_listings_and_gaps(closes)
    ragged_compact = [np.ascontiguousarray(col[~np.isnan(col)])
                      for col in (ragged.iloc[:, j].to_numpy() for j in range(ragged.shape[1]))]

    gains_losses = []
    for a in arrays:
        d = np.diff(a)
        gains_losses.append(np.vstack([np.maximum(d, 0.0), np.maximum(-d, 0.0)]))

    def discard(fn, items):
        def run():
            for item in items:
                fn(item, p)
        return run

    talib_variants = {
        "talib ndarray kept": lambda: [talib.RSI(a, timeperiod=p) for a in arrays],
        "talib Series kept": lambda: [talib.RSI(s, timeperiod=p) for s in series],
        "talib ragged kept": lambda: [talib.RSI(a, timeperiod=p) for a in ragged_compact],
        "talib ndarray discarded": discard(lambda a, q: talib.RSI(a, timeperiod=q), arrays),
    }
    ours_variants = {
        "Series kept": lambda: [rsi(s, p) for s in series],
        "ndarray kept": lambda: [rsi(a, p) for a in arrays],
        "DataFrame": lambda: rsi(closes, p),
        "ragged": lambda: rsi(ragged, p),
        "Series discarded": discard(rsi, series),
        "rsi_values discarded": discard(rsi_values, arrays),
    }
    variants = {key: (None, fn) for key, fn in talib_variants.items()}
    for backend in backends:
        variants.update({(backend, key): (backend, fn) for key, fn in ours_variants.items()})
    # reference: only the two sample-by-sample Wilder recursions (gain, loss) in scipy's lfilter, the
    # approach the blocked numpy kernel replaces; no RSI is produced
    variants["lfilter"] = (None, discard(_lfilter_only, gains_losses))
    best = best_times(variants, args.repeats)

    reference = np.column_stack([talib.RSI(a, timeperiod=p) for a in arrays])
    ragged_reference = talib_reference(ragged, p)

    def maxdiff(ours: np.ndarray, ref: np.ndarray) -> float:
        if not np.array_equal(np.isnan(ours), np.isnan(ref)):
            return float("nan")  # the NaN patterns differ: reported as nan
        return float(np.nanmax(np.abs(ours - ref)))

    diffs = {}
    for backend in backends:
        indicators.set_backend(backend)
        per_series = maxdiff(np.column_stack([rsi(s, p).to_numpy() for s in series]), reference)
        diffs[backend] = {
            "Series kept": per_series,
            "ndarray kept": maxdiff(np.column_stack([rsi(a, p) for a in arrays]), reference),
            "Series discarded": per_series,
            "DataFrame": maxdiff(rsi(closes, p).to_numpy(), reference),
            "ragged": maxdiff(rsi(ragged, p).to_numpy(), ragged_reference),
            "rsi_values discarded": maxdiff(np.column_stack([rsi_values(a, p) for a in arrays]), reference),
        }
    indicators.set_backend(None)

    # (label, TA-Lib variant, our variant)
    rows = [
        ("per Series, kept", "talib ndarray kept", "Series kept"),
        ("per Series, kept, vs talib.RSI(Series)", "talib Series kept", "Series kept"),
        ("per ndarray, kept", "talib ndarray kept", "ndarray kept"),
        ("DataFrame", "talib ndarray kept", "DataFrame"),
        ("ragged DataFrame", "talib ragged kept", "ragged"),
        ("per Series, discarded", "talib ndarray discarded", "Series discarded"),
        ("rsi_values per series, discarded", "talib ndarray discarded", "rsi_values discarded"),
    ]
    print(f"RSI period {p}: {args.series} series x {args.candles} candles, best of {args.repeats} rounds; "
          f"ms, ratio = ours / TA-Lib")
    width = max(len(label) for label, _, _ in rows)
    header = f"{'workload':<{width}}  {'TA-Lib':>7}"
    for backend in backends:
        header += f"  {backend:>7}  {'ratio':>5}"
    header += "  max |diff| " + " / ".join(backends)
    print(header)
    for label, base, ours in rows:
        line = f"{label:<{width}}  {best[base] * 1e3:7.1f}"
        for backend in backends:
            t = best[(backend, ours)]
            line += f"  {t * 1e3:7.1f}  {t / best[base]:5.2f}"
        line += "  " + " / ".join(f"{diffs[b][ours]:.1e}" for b in backends)
        print(line)
    print(f"{'(lfilter recursions alone, discarded)':<{width}}  {'':>7}  {best['lfilter'] * 1e3:7.1f}  "
          f"{best['lfilter'] / best['talib ndarray discarded']:5.2f}")
    if "numba" in backends:
        first = numba_first_call()
        if first is not None:
            print(f"numba: first RSI call in a new process (import numba, load the cached kernels): {first:.2f} s")


if __name__ == "__main__":
    main()
