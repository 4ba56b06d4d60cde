import threading

import pytest

from cryptorsi.events import Event, TaskFailed
from cryptorsi.runtime.memory_bus import InMemoryBus
from cryptorsi.runtime.worker import THREAD_PREFIX, QueueWorkerThread

WAIT = 30.0  # upper bound of every wait for another thread: only reached when something is broken


def cryptorsi_threads():
    return [t for t in threading.enumerate() if t.name.startswith(THREAD_PREFIX)]


@pytest.fixture
def bus():
    bus = InMemoryBus()
    bus.start()
    yield bus
    assert bus.stop(WAIT)


class Recorder(QueueWorkerThread):
    def __init__(self, bus, threads=1):
        super().__init__(bus, name="Recorder", threads=threads)
        self.started_in, self.stopped_in, self.ran_in = [], [], []
        self.done = threading.Event()

    def on_start(self):
        self.started_in.append(threading.current_thread().name)

    def on_stop(self):
        self.stopped_in.append(threading.current_thread().name)

    def record(self, value, sink):
        self.ran_in.append(threading.current_thread().name)
        sink.append(value)
        if len(sink) == 3:
            self.done.set()


def test_tasks_run_on_named_threads_and_hooks_run_there(bus):
    agent = Recorder(bus, threads=2).start()
    assert agent.ready.wait(WAIT)
    sink = []
    for i in range(3):
        agent.submit(agent.record, i, sink)
    assert agent.done.wait(WAIT)
    assert sorted(sink) == [0, 1, 2]
    assert agent.stop(WAIT)
    assert sorted(agent.started_in) == ["cryptorsi-Recorder-1", "cryptorsi-Recorder-2"]
    assert sorted(agent.stopped_in) == sorted(agent.started_in)
    assert set(agent.ran_in) <= set(agent.started_in)
    assert not [t for t in cryptorsi_threads() if "Recorder" in t.name]


def test_failing_task_is_reported_and_the_thread_survives(bus):
    failures, seen = [], threading.Event()
    bus.subscribe(TaskFailed, lambda e: (failures.append(e), seen.set()), service="test")
    agent = Recorder(bus).start()
    errors = []

    def boom():
        raise RuntimeError("kaput")

    agent.submit(boom, on_error=errors.append)
    sink = []
    for i in range(3):
        agent.submit(agent.record, i, sink)
    assert agent.done.wait(WAIT) and seen.wait(WAIT)
    assert sink == [0, 1, 2]
    assert agent.errors == 1 and isinstance(errors[0], RuntimeError)
    assert failures[0].agent == "Recorder" and "kaput" in failures[0].error
    assert agent.stop(WAIT)


def test_stop_abandons_queued_work_and_joins_quickly(bus):
    agent = Recorder(bus).start()
    gate, release = threading.Event(), threading.Event()

    def blocker():
        gate.set()
        release.wait(5)

    agent.submit(blocker)
    ran = []
    for i in range(1000):
        agent.submit(ran.append, i)
    assert gate.wait(WAIT)
    stopper = threading.Thread(target=lambda: agent.stop(WAIT))
    stopper.start()
    release.set()
    stopper.join(WAIT)
    assert not stopper.is_alive() and not agent.alive
    assert ran == []  # abandoned, not run
    agent.submit(ran.append, "late")  # ignored after stop
    assert agent.queue_size() == 0 or ran == []


def test_start_error_is_reported_through_ready(bus):
    class Broken(QueueWorkerThread):
        def on_start(self):
            raise OSError("no database")

    agent = Broken(bus).start()
    assert agent.ready.wait(WAIT)
    assert isinstance(agent.start_error, OSError)
    assert agent.stop(WAIT)


def test_listen_uses_the_agent_name_as_consumer_group(bus):
    class Ping(Event):
        pass

    got = []
    done = threading.Event()
    a = Recorder(bus)
    a.listen(Ping, lambda e: (got.append(("a", e)), done.set()))
    b = Recorder(bus)  # same name: same service, so the two compete for each event
    b.listen(Ping, lambda e: (got.append(("b", e)), done.set()))
    bus.publish(Ping("s"))
    assert done.wait(WAIT) and bus.wait_idle(WAIT)
    assert len(got) == 1


class Keeper(Recorder):
    """Keeps its "keep" tasks when stopped; the others are abandoned."""

    def runs_when_stopping(self, fn, args):
        return args[0] == "keep"


def test_stop_abandons_queued_tasks_but_those_the_agent_keeps(bus):
    agent = Keeper(bus).start()
    assert agent.ready.wait(WAIT)
    entered, release, sink = threading.Event(), threading.Event(), []
    agent.submit(lambda: (entered.set(), release.wait(5)))  # occupies the only thread
    assert entered.wait(WAIT)
    for value in ("drop", "keep", "drop", "keep"):
        agent.submit(agent.record, value, sink)
    stopper = threading.Thread(target=agent.stop, args=(WAIT,), name="test-stopper")
    stopper.start()
    assert agent.stop_event.wait(WAIT)  # stop() has been called while the tasks are queued
    release.set()
    stopper.join(WAIT)
    assert not stopper.is_alive()
    assert sink == ["keep", "keep"]
    assert not [t for t in cryptorsi_threads() if "Keeper" in t.name]
