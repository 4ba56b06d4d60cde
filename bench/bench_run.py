"""Benchmark: a full cryptorsi run against a plain single-threaded pandas/numpy script, side by side.

    python bench/bench_run.py [--top 200] [--timeframes 1h,4h,1d] [--weeks 50] [--repeats 3]

1. A cold sample run fills a fresh database (candles generated and stored) — reported, not compared.
2. Then, on the same cached candles, best of ``--repeats``:
   * ``cryptorsi (cache)``: ``run_analysis(source="cache")`` — agents on the bus, candles read from
     SQLite, RSI, correlations, everything saved (session, universe, RSI series, correlations);
   * ``cryptorsi (sample, warm)``: the same with ``source="sample"`` (the cache holds every candle,
     so nothing is generated again);
   * ``plain script``: one thread, ``sqlite3`` + pandas: read the same candles, Wilder RSI with
     ``ewm(alpha=1/period, adjust=False)`` seeded with the SMA of the first changes, Pearson on the
     inner join with BTC; nothing saved.
3. Prints seconds and the ratio to the plain script, and checks both computed the same numbers.
Target (issue 2): the full run within 1.5x of the plain script.
"""

from __future__ import annotations

import argparse
import json
import io
import sqlite3
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

import cryptorsi as cr


def plain_script(db_path: str, session_id: str, timeframes, period: int = 14) -> pd.DataFrame:
    """What a researcher would write by hand: no threads, no agents, no storage of results."""
    conn = sqlite3.connect(db_path)
    config = pd.read_sql("select config from sessions where session_id = ?", conn, params=(session_id,))
    windows = json.loads(config["config"][0])["windows"]
    coins = pd.read_sql("select coin_id, symbol, exchange, pair from universe where session_id = ? "
                        "and excluded_reason is null order by position", conn, params=(session_id,))
    rows = []
    for tf in timeframes:
        start, end = windows[tf]
        rsis = {}
        for coin in coins.itertuples():
            closes = pd.read_sql("select open_time, close from candles where exchange = ? and pair = ? and "
                                 "timeframe = ? and open_time >= ? and open_time < ? order by open_time", conn,
                                 params=(coin.exchange, coin.pair, tf, start, end), index_col="open_time")["close"]
            delta = closes.diff().iloc[1:]
            if len(delta) < period:
                continue
            gain, loss = delta.clip(lower=0), (-delta).clip(lower=0)
            # Wilder: seed with the mean of the first `period` changes, then the recursive average.
            seeded = lambda x: pd.concat([pd.Series([x.iloc[:period].mean()], index=[x.index[period - 1]]),
                                          x.iloc[period:]]).ewm(alpha=1 / period, adjust=False).mean()
            g, l = seeded(gain), seeded(loss)
            rsis[coin.symbol] = (100 * g / (g + l)).where((g + l) != 0, 0.0)
        btc = rsis["BTC"]
        for symbol, rsi in rsis.items():
            joined = pd.concat([rsi, btc], axis=1, join="inner").dropna()
            rows.append((symbol, tf, joined.iloc[:, 0].corr(joined.iloc[:, 1]), len(joined)))
    conn.close()
    return pd.DataFrame(rows, columns=["symbol", "timeframe", "correlation", "n_points"])


def timed(fn, repeats: int):
    best, value = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - start)
    return best, value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--top", type=int, default=200)
    parser.add_argument("--timeframes", default="1h,4h,1d")
    parser.add_argument("--weeks", type=float, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = str(Path(tmp) / "bench.db")
        cfg = cr.AnalysisConfig(source="sample", top_n_coins=args.top, timeframes=args.timeframes,
                                weeks=args.weeks, db_path=db)
        run = lambda c: cr.run_analysis(c, progress=False, stream=io.StringIO())  # noqa: E731
        cold, first = timed(lambda: run(cfg), 1)
        n_candles = sqlite3.connect(db).execute("select count(*) from candles").fetchone()[0]
        print(f"{len(first.universe)} coins x {len(cfg.timeframes)} timeframes, {args.weeks:g} weeks, "
              f"{n_candles:,} candles; cold sample run (generate + store candles): {cold:.2f} s\n")
        cache_s, cached = timed(lambda: run(cfg.replace(source="cache")), args.repeats)
        warm_s, _ = timed(lambda: run(cfg), args.repeats)
        plain_s, plain = timed(lambda: plain_script(db, cached.session_id, cfg.timeframes), args.repeats)

        ours = cached.correlations.set_index(["symbol", "timeframe"]).sort_index()
        theirs = plain.set_index(["symbol", "timeframe"]).sort_index()
        common = ours.index.intersection(theirs.index)
        diff = float(np.max(np.abs(ours.loc[common, "correlation"] - theirs.loc[common, "correlation"])))
        same_n = bool((ours.loc[common, "n_points"] == theirs.loc[common, "n_points"]).all())

        print(f"{'':28}{'seconds':>9}{'ratio to plain':>16}")
        for name, seconds in [("plain script (1 thread)", plain_s), ("cryptorsi run, source=cache", cache_s),
                              ("cryptorsi run, sample warm", warm_s)]:
            print(f"{name:28}{seconds:9.2f}{seconds / plain_s:16.2f}")
        print(f"\nsame rows: {len(common)} of {len(ours)} / {len(theirs)}; max |correlation diff| = {diff:.1e}; "
              f"same n_points: {same_n}; target ratio <= 1.5")


if __name__ == "__main__":
    main()
