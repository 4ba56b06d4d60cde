"""One contract for every ServiceBus implementation (in-process and Redis Streams), plus Redis-only checks.

Contract (both buses): every service gets every event once; handlers of one service compete (each event goes
to one of them); per-topic order; a raising handler does not stop the others; events published before
``start`` are delivered; ``stop`` joins every ``cryptorsi-`` thread; events with DataFrames arrive intact.

Known difference: a handler that raises is retried on the Redis bus (its entry stays pending and is claimed
again after ``claim_idle_ms``) but not on the in-memory bus (the failure is only logged).
"""

from __future__ import annotations

import collections
import os
import queue
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid

import numpy as np
import pytest
from pandas.testing import assert_frame_equal

from cryptorsi.events import HistoricalPricesFetched, ProgressUpdated, TaskFailed
from cryptorsi.market import Coin, Listing, candles_from_arrays, empty_candles
from cryptorsi.runtime import create_bus
from cryptorsi.runtime.memory_bus import InMemoryBus
from cryptorsi.runtime.worker import THREAD_PREFIX

import redis  # a dev dependency: missing it is an error, not a skip
from cryptorsi.runtime.redis_bus import BusConnectionError, RedisBus


#: Redis bus settings for the tests: short blocking reads (fast stop); entries are claimed from a consumer after
#: 2 s idle, far above any stall of a loaded CI machine, so a live consumer is never robbed by accident
FAST = {"block_ms": 100, "claim_idle_ms": 2_000}
#: for the tests that wait for a redelivery
QUICK_CLAIM = {"claim_idle_ms": 300}
WAIT = 10.0  # upper bound of every wait; tests normally finish far sooner


def _namespace() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


def _task(i: int, session: str = "s") -> TaskFailed:
    return TaskFailed(session, "agent", f"t{i}", "boom")


def _cryptorsi_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith(THREAD_PREFIX) and t.is_alive()]


class Recorder:
    """Thread-safe record of what each handler received, with waits on a Condition."""

    def __init__(self):
        self.cond = threading.Condition()
        self.got: dict[str, list] = collections.defaultdict(list)

    def handler(self, name: str, key=lambda e: e):
        def handle(event):
            with self.cond:
                self.got[name].append(key(event))
                self.cond.notify_all()
        return handle

    def wait_count(self, name: str, n: int, timeout: float = WAIT) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: len(self.got[name]) >= n, timeout)


@pytest.fixture(params=["memory", "redis"])
def make_bus(request):
    """A factory of buses of one kind; every bus it made is stopped and no cryptorsi- thread may be left."""
    url = request.getfixturevalue("redis_url") if request.param == "redis" else None
    created = []

    def make(namespace: str | None = None, **options):
        if request.param == "memory":
            bus = InMemoryBus()
        else:
            bus = RedisBus(url, namespace=namespace or _namespace(), **{**FAST, **options})
        created.append(bus)
        return bus

    make.kind = request.param
    yield make
    for bus in created:
        assert bus.stop(5.0)
    assert _cryptorsi_threads() == []


@pytest.fixture
def bus(make_bus):
    return make_bus()


# ============================================================================================== the contract
def test_every_service_gets_every_event_once(bus):
    rec = Recorder()
    for service in ("alpha", "beta"):
        bus.subscribe(TaskFailed, rec.handler(service, lambda e: e.task), service=service)
    bus.subscribe(ProgressUpdated, rec.handler("progress", lambda e: e.done), service="alpha")
    bus.start()
    for i in range(50):
        bus.publish(_task(i))
        bus.publish(ProgressUpdated("s", "1h", i, 50))
    assert bus.wait_idle(WAIT)
    expected = [f"t{i}" for i in range(50)]
    assert sorted(rec.got["alpha"]) == sorted(expected)
    assert sorted(rec.got["beta"]) == sorted(expected)
    assert sorted(rec.got["progress"]) == list(range(50))
    assert bus.pending() == 0


def test_competing_consumers_share_events(bus):
    rec = Recorder()
    bus.subscribe(TaskFailed, rec.handler("one", lambda e: e.task), service="pool")
    bus.subscribe(TaskFailed, rec.handler("two", lambda e: e.task), service="pool")
    bus.subscribe(TaskFailed, rec.handler("audit", lambda e: e.task), service="audit")
    bus.start()
    n = 200
    for i in range(n):
        bus.publish(_task(i))
    assert bus.wait_idle(WAIT)
    shared = rec.got["one"] + rec.got["two"]
    assert sorted(shared) == sorted(f"t{i}" for i in range(n))  # each exactly once across the pool
    assert rec.got["one"] and rec.got["two"]  # both took some
    assert len(rec.got["audit"]) == n  # another service still gets everything


def test_order_per_topic(bus):
    rec = Recorder()
    bus.subscribe(ProgressUpdated, rec.handler("progress", lambda e: e.done), service="ordered")
    bus.subscribe(TaskFailed, rec.handler("tasks", lambda e: e.task), service="ordered")
    bus.start()
    for i in range(100):
        bus.publish(ProgressUpdated("s", "1h", i, 100))
        bus.publish(_task(i))
    assert bus.wait_idle(WAIT)
    assert rec.got["progress"] == list(range(100))
    assert rec.got["tasks"] == [f"t{i}" for i in range(100)]


def test_raising_handler_does_not_stop_others(make_bus):
    bus = make_bus(**QUICK_CLAIM)
    rec = Recorder()
    attempts = collections.Counter()

    def flaky(event):  # fails the first time it sees an event
        attempts[event.task] += 1
        if attempts[event.task] == 1:
            raise RuntimeError(f"handler bug on {event.task}")
        rec.handler("flaky")(event.task)

    bus.subscribe(TaskFailed, flaky, service="flaky")
    bus.subscribe(TaskFailed, rec.handler("good", lambda e: e.task), service="good")
    bus.start()
    for i in range(3):
        bus.publish(_task(i))
    assert bus.wait_idle(WAIT)
    assert sorted(rec.got["good"]) == ["t0", "t1", "t2"]
    if make_bus.kind == "redis":
        # the failed entries stayed pending and were claimed again after claim_idle_ms
        assert sorted(rec.got["flaky"]) == ["t0", "t1", "t2"]
        assert dict(attempts) == {"t0": 2, "t1": 2, "t2": 2}
    else:
        # the in-memory bus logs the failure and does not retry
        assert rec.got["flaky"] == []
        assert dict(attempts) == {"t0": 1, "t1": 1, "t2": 1}


def test_publish_before_start_is_delivered(bus):
    rec = Recorder()
    bus.subscribe(TaskFailed, rec.handler("early", lambda e: e.task), service="early")
    for i in range(10):
        bus.publish(_task(i))
    assert bus.pending() == 10
    bus.start()
    assert bus.wait_idle(WAIT)
    assert rec.got["early"] == [f"t{i}" for i in range(10)]
    assert bus.pending() == 0


def test_subscribe_after_start(bus):
    rec = Recorder()
    bus.start()
    bus.subscribe(TaskFailed, rec.handler("late", lambda e: e.task), service="late")
    bus.publish(_task(1))
    assert rec.wait_count("late", 1)
    assert bus.wait_idle(WAIT)
    assert rec.got["late"] == ["t1"]


def test_stop_joins_all_threads(bus):
    rec = Recorder()
    for service in ("a", "b", "c"):
        bus.subscribe(TaskFailed, rec.handler(service), service=service)
    bus.start()
    bus.publish(_task(0))
    assert bus.wait_idle(WAIT)
    assert _cryptorsi_threads()
    assert bus.stop(timeout=WAIT)  # every thread joined within the timeout (at once: nothing else to wait for)
    assert _cryptorsi_threads() == []
    bus.publish(_task(1))  # after stop: dropped, not raised


def test_dataframe_events_pass_intact(bus):
    rec = Recorder()
    bus.subscribe(HistoricalPricesFetched, rec.handler("prices"), service="prices")
    bus.start()
    n = 2_000
    rng = np.random.default_rng(7)
    open_ms = np.delete(np.arange(n + 5, dtype=np.int64), [10, 11, 500, 1999, 2003])[:n] * 3_600_000 + 1_600_000_000_000
    candles = candles_from_arrays(open_ms, *(rng.random((5, n)) * 100))
    candles.iloc[3, 1] = np.nan
    listing = Listing(Coin("ethereum", "ETH", "Ethereum", 4.1e11, 2), "binance", "ETH/USDC", "USDC")
    event = HistoricalPricesFetched("s1", listing, "1h", candles, empty_candles())
    bus.publish(event)
    assert bus.wait_idle(WAIT)
    (got,) = rec.got["prices"]
    assert got.listing == listing and got.timeframe == "1h" and got.session_id == "s1"
    assert_frame_equal(got.candles, candles, check_exact=True)
    assert_frame_equal(got.uncached, event.uncached, check_exact=True)
    assert got.candles.to_numpy().tobytes() == candles.to_numpy().tobytes()


# ============================================================================================== Redis only
@pytest.fixture
def redis_bus(redis_url):
    created = []

    def make(namespace: str | None = None, **options):
        bus = RedisBus(redis_url, namespace=namespace or _namespace(), **{**FAST, **options})
        created.append(bus)
        return bus

    yield make
    for b in created:
        assert b.stop(5.0)
    assert _cryptorsi_threads() == []


def test_create_bus_selects_redis(redis_url):
    bus = create_bus(redis_url, namespace="selected")
    assert isinstance(bus, RedisBus)
    assert bus.key(TaskFailed) == "selected:TaskFailed"
    assert bus.url == redis_url


def test_namespaces_do_not_mix(redis_bus):
    rec = Recorder()
    first, second = redis_bus(), redis_bus()
    first.subscribe(TaskFailed, rec.handler("first", lambda e: e.task), service="same")
    second.subscribe(TaskFailed, rec.handler("second", lambda e: e.task), service="same")
    first.start()
    second.start()
    first.publish(_task(1))
    second.publish(_task(2))
    assert first.wait_idle(WAIT) and second.wait_idle(WAIT)
    assert rec.got["first"] == ["t1"]
    assert rec.got["second"] == ["t2"]


def test_group_created_after_publish_receives_earlier_events(redis_bus):
    """The orchestrator may publish before a remote worker subscribed: groups start at id 0."""
    namespace = _namespace()
    publisher = redis_bus(namespace)
    publisher.start()
    for i in range(3):
        publisher.publish(_task(i))
    rec = Recorder()
    worker = redis_bus(namespace)
    worker.subscribe(TaskFailed, rec.handler("worker", lambda e: e.task), service="worker")
    worker.start()
    assert publisher.wait_idle(WAIT)  # waits for the worker's group, which exists now
    assert rec.got["worker"] == ["t0", "t1", "t2"]


def test_wait_idle_waits_for_other_processes_groups(redis_bus):
    namespace = _namespace()
    release = threading.Event()
    rec = Recorder()
    consumer = redis_bus(namespace)

    def slow(event):
        release.wait(WAIT)
        rec.handler("slow")(event)

    consumer.subscribe(TaskFailed, slow, service="slow")
    consumer.start()
    publisher = redis_bus(namespace)
    publisher.start()
    publisher.publish(_task(0))
    assert not publisher.wait_idle(0.3)  # the other bus's handler has not returned yet
    release.set()
    assert publisher.wait_idle(WAIT)
    assert len(rec.got["slow"]) == 1


def test_entry_of_stopped_consumer_is_claimed(redis_bus):
    """A consumer that took an entry and went away without acknowledging it: another consumer gets it."""
    namespace = _namespace()
    taken = threading.Event()
    dead = redis_bus(namespace, **QUICK_CLAIM)

    def take_and_vanish(event):
        dead.defer_ack()  # hold the entry: never acknowledged
        taken.set()

    dead.subscribe(TaskFailed, take_and_vanish, service="worker")
    dead.start()
    dead.publish(_task(7))
    assert taken.wait(WAIT)
    assert dead.stop(5.0)

    rec = Recorder()
    live = redis_bus(namespace, **QUICK_CLAIM)
    live.subscribe(TaskFailed, rec.handler("live", lambda e: e.task), service="worker")
    live.start()
    assert rec.wait_count("live", 1)  # claimed after claim_idle_ms (300 ms), within WAIT (the default is 30 s)
    assert live.wait_idle(WAIT)
    assert rec.got["live"] == ["t7"]


_KILLED_WORKER = textwrap.dedent("""
    import sys, threading
    from cryptorsi.events import TaskFailed
    from cryptorsi.runtime.redis_bus import RedisBus

    url, namespace, claim_idle_ms = sys.argv[1], sys.argv[2], int(sys.argv[3])
    bus = RedisBus(url, namespace=namespace, claim_idle_ms=claim_idle_ms, block_ms=100)
    forever = threading.Event()

    def handle(event):
        print("got", event.task, flush=True)
        forever.wait()  # busy with the entry until killed: it is never acknowledged

    bus.subscribe(TaskFailed, handle, service="worker")
    bus.start()
    forever.wait()
""")


def test_entry_of_sigkilled_process_is_claimed(redis_bus, redis_url):
    namespace = _namespace()
    claim_idle_ms = 1_000
    publisher = redis_bus(namespace)
    publisher.start()
    publisher.publish(_task(42))
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_WORKER, redis_url, namespace, str(claim_idle_ms)],
                            stdout=subprocess.PIPE, text=True)
    lines: queue.Queue = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], name="test-killed-worker-out")
    reader.start()
    try:
        assert lines.get(timeout=30).split() == ["got", "t42"]
        rec = Recorder()
        live = redis_bus(namespace, claim_idle_ms=claim_idle_ms)
        live.subscribe(TaskFailed, rec.handler("live", lambda e: e.task), service="worker")
        live.start()
        # while its process lives, the busy consumer keeps its entry (kept alive every claim_idle_ms / 3)
        assert not rec.wait_count("live", 1, timeout=2 * claim_idle_ms / 1000)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(WAIT) == -signal.SIGKILL
        assert rec.wait_count("live", 1)
        assert publisher.wait_idle(WAIT)
        assert rec.got["live"] == ["t42"]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(WAIT)
        reader.join(WAIT)


def test_poison_entry_is_dead_lettered(redis_bus, redis_url):
    bus = redis_bus(max_deliveries=2, **QUICK_CLAIM)
    attempts = []

    def always_fails(event):
        attempts.append(event.task)
        raise ValueError("cannot handle this one")

    bus.subscribe(TaskFailed, always_fails, service="victim")
    bus.start()
    bus.publish(_task(3))
    assert bus.wait_idle(WAIT)  # idle once dead-lettered
    assert attempts == ["t3", "t3"]
    client = redis.Redis.from_url(redis_url)
    try:
        (entry_id, fields), = client.xrange(bus.dead_letter_key)
        assert fields[b"group"] == b"victim" and fields[b"stream"] == bus.key(TaskFailed).encode()
        assert client.xpending(bus.key(TaskFailed), "victim")["pending"] == 0
    finally:
        client.close()


def test_deferred_acks_and_prefetch(redis_bus):
    bus = redis_bus(prefetch=2, **QUICK_CLAIM)  # held longer than claim_idle_ms: kept alive, not reclaimed
    held = queue.Queue()

    def enqueue(event):
        held.put((event.task, bus.defer_ack()))

    bus.subscribe(TaskFailed, enqueue, service="deferring")
    bus.start()
    for i in range(3):
        bus.publish(_task(i))
    first = [held.get(timeout=WAIT), held.get(timeout=WAIT)]
    assert [task for task, _ in first] == ["t0", "t1"]
    with pytest.raises(queue.Empty):
        held.get(timeout=0.3)  # prefetch reached: the third entry is not taken
    assert not bus.wait_idle(0.1)  # deferred entries are not acknowledged yet
    assert first[0][1].ack()
    task, delivery = held.get(timeout=WAIT)
    assert task == "t2"
    first[1][1].ack()
    delivery.ack()
    assert bus.wait_idle(WAIT)
    with pytest.raises(RuntimeError):
        bus.defer_ack()  # only inside a handler


def test_unreachable_broker_fails_fast_with_one_line():
    with socket_closed_port() as port:
        url = f"redis://:s3cret@127.0.0.1:{port}/0"
        bus = create_bus(url)
        started = time.monotonic()
        with pytest.raises(ConnectionError) as info:
            bus.start()
        assert time.monotonic() - started < 10
    message = str(info.value)
    assert isinstance(info.value, BusConnectionError)
    assert "\n" not in message
    assert f"127.0.0.1:{port}" in message and "s3cret" not in message
    assert info.value.__cause__ is None and info.value.__suppress_context__
    assert bus.stop(1.0)


class socket_closed_port:
    """A loopback port nothing listens on (reserved, then released)."""

    def __enter__(self) -> int:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    def __exit__(self, *exc) -> None:
        pass


def test_reconnects_after_broker_restart():
    from redis_server import RedisServer

    with RedisServer() as server:
        bus = RedisBus(server.url, namespace=_namespace(), **FAST)
        rec = Recorder()
        bus.subscribe(TaskFailed, rec.handler("svc", lambda e: e.task), service="svc")
        bus.start()
        try:
            bus.publish(_task(1))
            assert rec.wait_count("svc", 1)
            server.stop()
            server.start()  # same port, empty (no persistence): streams and groups are gone
            bus.publish(_task(2))  # the consumer re-creates its group (at id 0) and gets it
            assert rec.wait_count("svc", 2)
            assert bus.wait_idle(WAIT)
            assert rec.got["svc"] == ["t1", "t2"]
        finally:
            assert bus.stop(5.0)
    assert _cryptorsi_threads() == []


@pytest.mark.skipif(os.name != "posix", reason="POSIX signals")
def test_publish_during_outage_fails_with_one_line():
    from redis_server import RedisServer

    with RedisServer() as server:
        bus = RedisBus(server.url, namespace=_namespace(), publish_timeout=0.5, **FAST)
        bus.start()
        server.stop()
        try:
            with pytest.raises(BusConnectionError) as info:
                bus.publish(_task(1))
            assert "\n" not in str(info.value) and server.url in str(info.value)
        finally:
            assert bus.stop(5.0)


def test_purge_deletes_the_namespace(redis_bus, redis_url):
    bus = redis_bus()
    rec = Recorder()
    bus.subscribe(TaskFailed, rec.handler("svc"), service="svc")
    bus.start()
    bus.publish(_task(1))
    bus.publish(ProgressUpdated("s", "1h", 1, 1))
    assert bus.wait_idle(WAIT)
    client = redis.Redis.from_url(redis_url)
    try:
        assert client.exists(bus.key(TaskFailed), bus.key(ProgressUpdated)) == 2
        assert bus.purge() == 2
        assert client.exists(bus.key(TaskFailed), bus.key(ProgressUpdated)) == 0
    finally:
        client.close()
    assert bus.wait_idle(WAIT)  # the streams it published to are gone: nothing left to wait for
