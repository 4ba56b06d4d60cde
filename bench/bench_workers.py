"""Benchmark: a sample run over the Redis bus with 1, 2 and 3 `cryptorsi worker` processes, side by side.

    python bench/bench_workers.py [--top 200] [--timeframes 1h,4h,1d] [--weeks 50] [--redis URL]

Each configuration runs the same analysis on a fresh database (cold cache: every worker generates
and sends its candles over Redis) with the orchestrator hosting no fetcher/RSI agent of its own
(`agents=()`), so the workers do all the fetch and RSI work; the in-process run (memory bus, local
agents) is the reference. Prints seconds, the ratio to the in-process run and to one worker, and
checks every run computed the same correlations. Events/s through each bus: bench/bench_bus.py.
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

import cryptorsi as cr
from cryptorsi.testing.redis_server import RedisServer


def start_workers(bus_url: str, count: int) -> list[subprocess.Popen]:
    workers = []
    for _ in range(count):
        proc = subprocess.Popen([sys.executable, "-m", "cryptorsi", "worker", "--bus", bus_url],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        banner = proc.stdout.readline()
        if not banner.startswith("cryptorsi worker: serving"):
            raise RuntimeError(f"worker did not start: {banner}{proc.stderr.read()}")
        workers.append(proc)
    return workers


def stop_workers(workers) -> None:
    for proc in workers:
        proc.terminate()
    for proc in workers:
        proc.communicate(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--top", type=int, default=200)
    parser.add_argument("--timeframes", default="1h,4h,1d")
    parser.add_argument("--weeks", type=float, default=50)
    parser.add_argument("--redis", help="Redis URL (default: start a private redis-server)")
    args = parser.parse_args()
    server = None if args.redis else RedisServer().start()
    redis_url = args.redis or server.url
    rows = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            base = cr.AnalysisConfig(source="sample", top_n_coins=args.top, timeframes=args.timeframes,
                                     weeks=args.weeks, db_path=str(Path(tmp) / "memory.db"))
            start = time.perf_counter()
            reference = cr.run_analysis(base, progress=False, stream=io.StringIO())
            rows.append(("in-process (memory bus)", time.perf_counter() - start, reference))
            for n in (1, 2, 3):
                bus = f"{redis_url}?namespace=bench-{uuid.uuid4().hex[:8]}"
                workers = start_workers(bus, n)  # started (and their sample market warmed) before timing
                try:
                    runner = cr.Runner(base.replace(bus_url=bus, db_path=str(Path(tmp) / f"redis{n}.db")),
                                       stream=io.StringIO(), agents=())
                    start = time.perf_counter()
                    result = cr.run_analysis(runner=runner)
                    rows.append((f"redis, {n} worker process{'es' if n > 1 else ''}", time.perf_counter() - start,
                                 result))
                finally:
                    stop_workers(workers)
    finally:
        if server is not None:
            server.close()

    ref = reference.correlations.set_index(["coin_id", "timeframe"]).sort_index()
    one = rows[1][1]
    print(f"{args.top} coins x {args.timeframes}, {args.weeks:g} weeks, cold cache\n")
    print(f"{'':30}{'seconds':>9}{'vs in-process':>15}{'vs 1 worker':>13}{'same results':>14}")
    for name, seconds, result in rows:
        ours = result.correlations.set_index(["coin_id", "timeframe"]).sort_index()
        same = ours.index.equals(ref.index) and float(np.max(np.abs(ours["correlation"] - ref["correlation"]))) <= 1e-12
        print(f"{name:30}{seconds:9.2f}{seconds / rows[0][1]:15.2f}{seconds / one:13.2f}{str(same):>14}")


if __name__ == "__main__":
    main()
