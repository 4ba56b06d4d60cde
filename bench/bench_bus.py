"""Events per second through the in-process bus and the Redis Streams bus, side by side.

For each workload, N events are published to a bus with one subscribing service, timed from the first
publish until the handler has received the last one (the publisher and the consumer run concurrently).

    python bench/bench_bus.py                      # starts a private redis-server (needs the redis-server package)
    python bench/bench_bus.py --redis redis://127.0.0.1:6379/0 -n 20000 --frames 500 --candles 8400
"""

from __future__ import annotations

import argparse
import threading
import time
import uuid

import numpy as np

from cryptorsi.events import HistoricalPricesFetched, TaskFailed
from cryptorsi.market import Coin, Listing, candles_from_arrays, empty_candles
from cryptorsi.runtime.codec import encode
from cryptorsi.runtime.memory_bus import InMemoryBus


def _frame_event(n_candles: int) -> HistoricalPricesFetched:
    rng = np.random.default_rng(0)
    open_ms = np.arange(n_candles, dtype=np.int64) * 3_600_000 + 1_700_000_000_000
    frame = candles_from_arrays(open_ms, *(rng.random((5, n_candles)) * 100))
    listing = Listing(Coin("bitcoin", "BTC", "Bitcoin", 1.3e12, 1), "binance", "BTC/USDC", "USDC")
    return HistoricalPricesFetched("bench", listing, "1h", frame, empty_candles())


def measure(bus, events: list) -> float:
    """Events per second from the first publish until the last event was handled."""
    done = threading.Event()
    count = 0
    total = len(events)

    def handle(_event) -> None:
        nonlocal count
        count += 1  # one consumer thread per subscription: no lock needed
        if count == total:
            done.set()

    bus.subscribe(type(events[0]), handle, service="bench")
    bus.start()
    try:
        started = time.perf_counter()
        for event in events:
            bus.publish(event)
        if not done.wait(600):
            raise RuntimeError(f"only {count} of {total} events handled")
        return total / (time.perf_counter() - started)
    finally:
        bus.stop(5.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis", help="Redis URL (default: start a private redis-server)")
    parser.add_argument("-n", "--small", type=int, default=20_000, help="small events per run (default 20000)")
    parser.add_argument("--frames", type=int, default=500, help="candle-frame events per run (default 500)")
    parser.add_argument("--candles", type=int, default=8_400, help="candles per frame (default 8400)")
    args = parser.parse_args(argv)

    server = None
    url = args.redis
    if url is None:
        from cryptorsi.testing.redis_server import RedisServer  # throwaway: --save '' on a free port

        server = RedisServer().start()
        url = server.url
    from cryptorsi.runtime.redis_bus import RedisBus

    frame_event = _frame_event(args.candles)
    workloads = [
        ("small (TaskFailed)", [TaskFailed("bench", "agent", f"task-{i}", "error") for i in range(args.small)]),
        (f"candle frame ({args.candles} rows, {len(encode(frame_event)) / 1e3:.0f} kB)", [frame_event] * args.frames),
    ]
    rows = []
    try:
        for name, events in workloads:
            memory = measure(InMemoryBus(), events)
            redis_bus = RedisBus(url, namespace=f"bench-{uuid.uuid4().hex[:8]}", maxlen=max(10_000, len(events)))
            redis_rate = measure(redis_bus, events)
            rows.append((name, len(events), memory, redis_rate))
    finally:
        if server is not None:
            server.close()

    print(f"{'workload':<36} {'events':>7} {'memory ev/s':>13} {'redis ev/s':>12} {'memory/redis':>13}")
    for name, n, memory, redis_rate in rows:
        print(f"{name:<36} {n:>7} {memory:>13,.0f} {redis_rate:>12,.0f} {memory / redis_rate:>12.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
