"""Benchmark cryptorsi.leadlag.analyze_many against a naive per-coin pandas computation.

    python bench/bench_leadlag.py [--coins 250] [--weeks 50] [--repeats 5] [--naive-coins 8]

The data is the sample market (``SampleSource``): the first ``--coins`` coins with a USDC pair (BTC
excluded) over the last ``--weeks`` weeks, on 1h, 4h and 1d (about 8,400, 2,100 and 350 candles), with
its late listings and missing candles; RSI(14) by :func:`cryptorsi.indicators.rsi`. For each timeframe:

* ``ours``: one ``analyze_many`` call for all coins (lag profiles over 25 lags, rolling correlation over
  the default 30-day window and stability, n_eff / p-value / CI, and the return correlation from the
  closes), best of ``--repeats`` (``time.perf_counter``; the CPU time of the process beside it);
  ``detailed``: ``analyze_many_detailed``, which also hands back every lag profile and rolling Series;
* ``naive``: the same figures coin by coin with plain pandas: for each lag, shift BTC's index by
  ``k * step``, inner join, ``Series.corr``; ``rolling(window).corr`` on the joined frame; the
  autocorrelations by direct sums; log returns over one-step gaps. Timed on ``--naive-coins`` coins and
  reported per coin (and extrapolated to all), with the ratio naive / ours per coin.

``max |diff|`` checks the two agree on those coins (lag profiles, rolling series, n_eff relative).
The preparation (sample candles, RSI) is not timed. Timings on a busy machine vary; the best of several
repeats is reported.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import pandas as pd

from cryptorsi.indicators import rsi
from cryptorsi.leadlag import (analyze_many, analyze_many_detailed, default_rolling_window, lag_profiles,
                               rolling_correlations)
from cryptorsi.market import Market, timeframe_ms
from cryptorsi.sources.sample import SAMPLE_END_MS, SampleSource

WEEK_MS = 7 * 86_400_000


def sample_frames(n_coins: int, weeks: float, timeframes) -> dict:
    """{timeframe: (coin RSI frame, BTC RSI, coin closes, BTC closes)} from the sample market."""
    src = SampleSource(cache_size=400)
    usdc = {m.base for m in src.markets() if m.quote == "USDC" and m.active}
    coins, seen = [], {"BTC"}
    for c in src.top_coins(10_000):
        if c.symbol in usdc and c.symbol not in seen and len(coins) < n_coins:
            seen.add(c.symbol)
            coins.append(c)
    start = SAMPLE_END_MS - int(weeks * WEEK_MS)
    out = {}
    for tf in timeframes:
        closes = {}
        for c in [None, *coins]:
            sym = "BTC" if c is None else c.symbol
            f = src.candles(Market(f"{sym}/USDC", sym, "USDC"), tf, start, SAMPLE_END_MS)
            closes[sym] = f["close"]
        frame = pd.DataFrame(closes)
        r = rsi(frame, 14)
        out[tf] = (r.drop(columns="BTC"), r["BTC"].dropna(), frame.drop(columns="BTC"), frame["BTC"].dropna())
    return out


# ------------------------------------------------------------------------------------------ naive
def naive_profile(x: pd.Series, y: pd.Series, step_ms: int, max_lag: int, min_overlap: int) -> pd.Series:
    out = {}
    for k in range(-max_lag, max_lag + 1):
        shifted = y.copy()
        shifted.index = shifted.index + pd.Timedelta(milliseconds=k * step_ms)
        j = pd.concat([x.rename("x"), shifted.rename("y")], axis=1, join="inner").dropna()
        const = len(j) == 0 or j["x"].min() == j["x"].max() or j["y"].min() == j["y"].max()
        out[k] = np.nan if len(j) < max(min_overlap, 2) or const else j["x"].corr(j["y"])
    return pd.Series(out)


def naive_n_eff(a: np.ndarray, b: np.ndarray) -> float:
    n = a.size
    ac, bc = a - a.mean(), b - b.mean()
    sa, sb = ac @ ac, bc @ bc
    band, total = 2.0 / math.sqrt(n), 0.0
    for k in range(1, n // 4 + 1):
        ra, rb = (ac[:-k] @ ac[k:]) / sa, (bc[:-k] @ bc[k:]) / sb
        if abs(ra) < band or abs(rb) < band:
            break
        total += ra * rb
    return float(n) if total <= 0 else min(max(n / (1 + 2 * total), 3.0), float(n))


def naive_returns(close: pd.Series, step_ms: int) -> pd.Series:
    c = close[close > 0].dropna()
    lr = np.log(c).diff()
    return lr[c.index.to_series().diff() == pd.Timedelta(milliseconds=step_ms)]


def naive_coin(x, y, cx, cy, step_ms, window, threshold, max_lag=12, min_overlap=30):
    from scipy import stats

    profile = naive_profile(x.dropna(), y, step_ms, max_lag, min_overlap)
    j = pd.concat([x.rename("x"), y.rename("y")], axis=1, join="inner").dropna()
    roll = j["x"].rolling(window).corr(j["y"]).iloc[window - 1:]
    finite = roll.dropna()
    stab = float((finite.abs() >= threshold).mean()) if len(finite) else np.nan
    r = profile[0]
    n_eff = naive_n_eff(j["x"].to_numpy(), j["y"].to_numpy())
    t = r * math.sqrt((n_eff - 2) / (1 - r * r))
    p = 2 * stats.t.sf(abs(t), n_eff - 2)
    z, half = math.atanh(r), 1.959964 / math.sqrt(n_eff - 3)
    rets = pd.concat([naive_returns(cx, step_ms), naive_returns(cy, step_ms)], axis=1, join="inner").dropna()
    ret = rets.iloc[:, 0].corr(rets.iloc[:, 1])
    best = profile.abs().idxmax()
    return profile, roll, stab, n_eff, (p, math.tanh(z - half), math.tanh(z + half)), ret, best


# ------------------------------------------------------------------------------------------ timing
def best_of(fn, repeats: int):
    wall = cpu = math.inf
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        result = fn()
        wall = min(wall, time.perf_counter() - t0)
        cpu = min(cpu, time.process_time() - c0)
    return wall, cpu, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--coins", type=int, default=250)
    parser.add_argument("--weeks", type=float, default=50)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--naive-coins", type=int, default=8)
    parser.add_argument("--threshold", type=float, default=0.7)
    args = parser.parse_args()

    timeframes = ("1h", "4h", "1d")
    started = time.perf_counter()
    data = sample_frames(args.coins, args.weeks, timeframes)
    print(f"prepared {args.coins} coins x {len(timeframes)} timeframes from the sample market "
          f"in {time.perf_counter() - started:.1f} s (not timed below)\n")

    header = (f"{'tf':>3} {'points':>6} {'coins':>5} | {'ours s':>7} {'cpu s':>6} {'ms/coin':>7} {'detailed s':>10} | "
              f"{'naive ms/coin':>13} {'naive s (all)':>13} | {'ratio':>6} | max |diff| profile/rolling/n_eff")
    print(header)
    print("-" * len(header))
    total_ours = total_cpu = total_naive = total_detailed = 0.0
    for tf in timeframes:
        coin_rsi, btc_rsi, coin_close, btc_close = data[tf]
        step = timeframe_ms(tf)
        window = default_rolling_window(tf)
        c = coin_rsi.shape[1]

        def ours():
            return analyze_many(coin_rsi, btc_rsi, step, max_lag=12, rolling_window=window,
                                threshold=args.threshold, min_overlap=30, close=coin_close,
                                benchmark_close=btc_close)

        wall, cpu, summary = best_of(ours, args.repeats)
        detailed, _, _ = best_of(lambda: analyze_many_detailed(
            coin_rsi, btc_rsi, step, max_lag=12, rolling_window=window, threshold=args.threshold, min_overlap=30,
            close=coin_close, benchmark_close=btc_close), args.repeats)
        names = list(coin_rsi.columns[: args.naive_coins])
        t0 = time.perf_counter()
        naive = {name: naive_coin(coin_rsi[name], btc_rsi, coin_close[name], btc_close, step, window, args.threshold)
                 for name in names}
        naive_per_coin = (time.perf_counter() - t0) / len(names)

        profiles = lag_profiles(coin_rsi[names], btc_rsi, step)
        rolling = rolling_correlations(coin_rsi[names], btc_rsi, window)
        d_prof = max(np.nanmax(np.abs(profiles.loc[n].to_numpy() - naive[n][0].to_numpy())) for n in names)
        d_roll = max(np.nanmax(np.abs(rolling[n].to_numpy() - naive[n][1].to_numpy()), initial=0.0) for n in names)
        d_neff = max(abs(summary.loc[n, "n_eff"] / naive[n][3] - 1) for n in names)

        ours_per_coin = wall / c
        total_ours, total_cpu, total_naive = total_ours + wall, total_cpu + cpu, total_naive + naive_per_coin * c
        total_detailed += detailed
        print(f"{tf:>3} {len(btc_rsi):>6} {c:>5} | {wall:>7.3f} {cpu:>6.3f} {ours_per_coin * 1e3:>7.3f} "
              f"{detailed:>10.3f} | "
              f"{naive_per_coin * 1e3:>13.1f} {naive_per_coin * c:>13.1f} | {naive_per_coin / ours_per_coin:>6.0f} | "
              f"{d_prof:.1e} / {d_roll:.1e} / {d_neff:.1e}")
    print("-" * len(header))
    print(f"all {'':>12} | {total_ours:>7.3f} {total_cpu:>6.3f} {'':>7} {total_detailed:>10.3f} | "
          f"{'':>13} {total_naive:>13.1f} | "
          f"{total_naive / total_ours:>6.0f} |")


if __name__ == "__main__":
    main()
