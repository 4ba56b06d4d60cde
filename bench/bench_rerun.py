"""Benchmark: ``cryptorsi run --source live`` twice on one database, as two processes — how much faster is the re-run?

    python bench/bench_rerun.py [--top 70] [--latency-ms 150,30] [--reps 5] [--other-symbols 3000]

The project's exchange server (:mod:`cryptorsi.testing.exchange_server`) serves the bundled sample market over
HTTP (Binance spot and CoinGecko wire formats) with ``--latency-ms`` added to every answer; its
``exchangeInfo`` lists ``--other-symbols`` more pairs, as Binance's lists ~3,000 (every run reads them). For each
latency and repetition, the command runs on a new database (cold: every candle downloaded and stored), then on
the same database (warm: the cache has every closed candle, so no klines request is needed), each as a fresh
process timed from outside, as a user would see it — imports, network, analysis, writes and exit included. The
server's request budget is reset before each run, so no run waits on a 429. Prints, per latency, the median cold
and warm times and the median and range of cold / warm (target at 150 ms: >= 5x).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

TIMEFRAMES = "1h,4h,1d"
WEEKS = 50


def run_cli(url: str, top: int, db: str, cwd: str, extra: list[str]) -> float:
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # an installed package has its .pyc files
    argv = [sys.executable, "-m", "cryptorsi", "run", "--source", "live", "--binance-url", url, "--coingecko-url", url,
            "--quote", "USDT", "--top", str(top), "--timeframes", TIMEFRAMES, "--weeks", str(WEEKS), "--db", db,
            "--no-progress", *extra]
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=cwd)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"cryptorsi run failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--top", type=int, default=70, help="top N coins (default 70: 56 with a USDT pair)")
    parser.add_argument("--latency-ms", default="150,30", help="milliseconds added to every answer, comma-separated")
    parser.add_argument("--requests-in-flight", type=int, default=None, help="passed to cryptorsi run")
    parser.add_argument("--other-symbols", type=int, default=3000,
                        help="other pairs in exchangeInfo, as Binance lists ~3,000 (default 3000)")
    parser.add_argument("--reps", type=int, default=5, help="cold + warm pairs per latency (default 5)")
    args = parser.parse_args()

    from cryptorsi.testing.exchange_server import ExchangeServer, Faults, sample_market

    timeframes = TIMEFRAMES.split(",")
    market = sample_market(args.top, intervals=timeframes, weeks=WEEKS + 2, other_symbols=args.other_symbols)
    for symbol in market.symbols:  # encode the wire rows now, not during the timed runs
        for tf in timeframes:
            market.kline_rows(symbol["symbol"], tf, 0, None, 1, market.now())
    print(f"top {args.top} coins x {TIMEFRAMES} x {WEEKS} weeks, {args.other_symbols} other symbols, "
          f"{args.reps} cold + warm pairs per latency")
    with tempfile.TemporaryDirectory() as tmp:
        extra = [] if args.requests_in_flight is None else ["--requests-in-flight", str(args.requests_in_flight)]
        for latency in (float(x) / 1000 for x in args.latency_ms.split(",")):
            with ExchangeServer(market=market, faults=Faults(latency_s=latency)) as server:
                pairs = []
                for rep in range(args.reps):
                    db = os.path.join(tmp, f"rerun-{latency}-{rep}.db")
                    times = []
                    for _ in ("cold", "warm"):
                        server.reset_budget()
                        times.append(run_cli(server.url, args.top, db, tmp, extra))
                    pairs.append(times)
            cold = [c for c, _ in pairs]
            warm = [w for _, w in pairs]
            ratios = [c / w for c, w in pairs]
            print(f"  latency {latency * 1000:4.0f} ms: cold {statistics.median(cold):5.2f} s, "
                  f"warm {statistics.median(warm):5.2f} s; re-run {statistics.median(ratios):.2f}x faster "
                  f"(median; {min(ratios):.2f}-{max(ratios):.2f}x) (target >= 5x at 150 ms)")


if __name__ == "__main__":
    main()
