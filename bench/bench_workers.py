"""Benchmark: a sample run over the Redis bus with 1, 2, ... `cryptorsi worker` processes, side by side.

    python bench/bench_workers.py [--top 150] [--timeframes 1h,4h,1d] [--weeks 50] [--workers 1,2,4]
                                  [--redis URL]

Each configuration runs the same analysis on a fresh database (cold cache: every worker generates
and sends its candles over Redis) with the orchestrator hosting no fetcher/RSI agent of its own
(`agents=()`), so the workers do all the fetch and RSI work; the in-process run (memory bus, local
agents) is the reference. Prints seconds, the ratio to the in-process run and to one worker, the CPU
seconds of the orchestrator (this process, every thread) and of each worker process during the run, the
orchestrator's share of all that CPU and the ceiling it sets by Amdahl's law (whatever the number of
workers, a run cannot be more than total / orchestrator CPU times faster than the orchestrator's own part),
and checks every run computed the same correlations; then where the orchestrator's CPU went, by thread (its
agents' threads, the bus's), in the run with the most workers. Events/s through each bus: bench/bench_bus.py.
"""

from __future__ import annotations

import argparse
import collections
import io
import os
import re
import threading
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


def process_cpu(stat_path: str) -> float:
    """CPU seconds (user + system) a running process or thread has used so far, from its /proc stat file."""
    with open(stat_path) as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class ThreadCPU:
    """CPU seconds of this process's threads by name while it runs, read from /proc/self/task every 0.1 s (a
    thread's last reading before it ends is kept), grouped by name without its ``-N`` suffix."""

    def __init__(self):
        self.seconds: dict[int, tuple[str, float]] = {}
        self._before = {int(tid): process_cpu(f"/proc/self/task/{tid}/stat")
                        for tid in os.listdir("/proc/self/task")}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-thread-cpu")

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(10)

    def _run(self):
        while True:
            names = {t.native_id: t.name for t in threading.enumerate()}
            for tid in os.listdir("/proc/self/task"):
                try:
                    cpu = process_cpu(f"/proc/self/task/{tid}/stat")
                except OSError:  # ended meanwhile
                    continue
                name = names.get(int(tid)) or self.seconds.get(int(tid), ("other", 0.0))[0]
                self.seconds[int(tid)] = (name, cpu)
            if self._stop.wait(0.1):
                return

    def by_name(self) -> list[tuple[str, float]]:
        groups: dict[str, float] = collections.defaultdict(float)
        for tid, (name, cpu) in self.seconds.items():
            groups[re.sub(r"-\d+$", "", name)] += cpu - self._before.get(tid, 0.0)
        return sorted(groups.items(), key=lambda kv: -kv[1])


def stop_workers(workers) -> None:
    for proc in workers:
        proc.terminate()
    for proc in workers:
        proc.communicate(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--top", type=int, default=150)
    parser.add_argument("--timeframes", default="1h,4h,1d")
    parser.add_argument("--weeks", type=float, default=50)
    parser.add_argument("--workers", default="1,2", help="worker processes per run, comma-separated (default 1,2)")
    parser.add_argument("--redis", help="Redis URL (default: start a private redis-server)")
    args = parser.parse_args()
    counts = [int(n) for n in args.workers.split(",")]
    server = None if args.redis else RedisServer().start()
    redis_url = args.redis or server.url
    rows = []
    threads = None
    try:
        with tempfile.TemporaryDirectory() as tmp:
            base = cr.AnalysisConfig(source="sample", top_n_coins=args.top, timeframes=args.timeframes,
                                     weeks=args.weeks, db_path=str(Path(tmp) / "memory.db"))
            start, cpu = time.perf_counter(), time.process_time()
            reference = cr.run_analysis(base, progress=False, stream=io.StringIO())
            rows.append(("in-process (memory bus)", time.perf_counter() - start, reference,
                         time.process_time() - cpu, []))
            for n in counts:
                bus = f"{redis_url}?namespace=bench-{uuid.uuid4().hex[:8]}"
                workers = start_workers(bus, n)  # started (and their sample market warmed) before timing
                try:
                    runner = cr.Runner(base.replace(bus_url=bus, db_path=str(Path(tmp) / f"redis{n}.db")),
                                       stream=io.StringIO(), agents=())
                    before = [process_cpu(f"/proc/{w.pid}/stat") for w in workers]
                    start, cpu = time.perf_counter(), time.process_time()
                    with ThreadCPU() as threads:  # the last run's is kept: the one with the most workers
                        result = cr.run_analysis(runner=runner)
                    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
                    worker_cpu = [process_cpu(f"/proc/{w.pid}/stat") - b for w, b in zip(workers, before)]
                    rows.append((f"redis, {n} worker process{'es' if n > 1 else ''}", seconds, result, cpu,
                                 worker_cpu))
                finally:
                    stop_workers(workers)
    finally:
        if server is not None:
            server.close()

    ref = reference.correlations.set_index(["coin_id", "timeframe"]).sort_index()
    one = rows[1][1]
    print(f"{args.top} coins x {args.timeframes}, {args.weeks:g} weeks, cold cache\n")
    print(f"{'':30}{'seconds':>9}{'vs in-process':>15}{'vs first':>10}{'same results':>14}"
          f"{'CPU: orchestrator':>19}{'workers':>18}{'share':>7}{'ceiling':>9}")
    for name, seconds, result, cpu, worker_cpu in rows:
        ours = result.correlations.set_index(["coin_id", "timeframe"]).sort_index()
        same = ours.index.equals(ref.index) and float(np.max(np.abs(ours["correlation"] - ref["correlation"]))) <= 1e-12
        line = f"{name:30}{seconds:9.2f}{seconds / rows[0][1]:15.2f}{seconds / one:10.2f}{str(same):>14}{cpu:17.1f} s"
        if worker_cpu:
            total = cpu + sum(worker_cpu)
            line += f"{' + '.join(f'{c:.1f}' for c in worker_cpu):>16} s{cpu / total:7.0%}{total / cpu:8.1f}x"
        print(line)
    if threads is not None:
        print(f"\norchestrator CPU by thread, {counts[-1]} workers (MainThread includes the run's start and the "
              "result read back):")
        for name, cpu in threads.by_name():
            if cpu >= 0.05:
                print(f"  {name:40}{cpu:7.2f} s")


if __name__ == "__main__":
    main()
