"""``QueueWorkerThread``: the base of every agent — named threads draining one task queue.

An agent subscribes to events on the bus; its handlers run on the bus thread and only enqueue work
(``submit``); the work runs on the agent's own thread(s). A task that raises is logged with its
traceback, counted, reported as a :class:`~cryptorsi.events.TaskFailed` event and handed to the task's
``on_error`` callback (which publishes the domain failure, so counters always reach zero). It never
kills the thread.

Lifecycle (which thread runs what):

* ``__init__`` and ``start()`` run in the thread that creates the agent;
* ``on_start()`` runs once in each worker thread before its first task (thread-bound resources such
  as a sqlite3 connection are made there); ``ready`` is set when every worker thread has run it;
* ``on_stop()`` runs in each worker thread after its last task;
* ``stop(timeout)`` abandons queued tasks (but those ``runs_when_stopping`` keeps: short ones an agent must not
  lose), wakes the threads and joins them within ``timeout``.

``serve(event_type, task)`` is how agents take work from the bus: the event stays unacknowledged
until its task has run (``Delivery.ack``) and is handed back if the agent stops first
(``Delivery.release``), so on the Redis bus the work of a killed process goes to another one.

Session-bound agents (one analysis' orchestrator, database, display) subscribe as the consumer
group ``<name>@<session_id>`` so that analyses sharing a broker never take each other's events;
stateless agents (fetcher, RSI) pass no session and serve every analysis as the group ``<name>``.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from cryptorsi.events import Event, TaskFailed
from cryptorsi.runtime.bus import Delivery

__all__ = ["QueueWorkerThread", "THREAD_PREFIX"]

log = logging.getLogger(__name__)

#: every thread cryptorsi starts has a name beginning with this
THREAD_PREFIX = "cryptorsi-"
_STOP = object()


class QueueWorkerThread:
    """A named agent with ``threads`` worker threads sharing one queue.

    Subclasses subscribe in :meth:`subscribe` (called by ``start``) and do their work in tasks::

        class Echo(QueueWorkerThread):
            def subscribe(self):
                self.listen(SomethingHappened, lambda e: self.submit(self.handle, e))
    """

    def __init__(self, bus, *, name: str | None = None, threads: int = 1, session_id: str | None = None):
        self.bus = bus
        self.name = name or type(self).__name__
        self.session_id = session_id
        #: the consumer group this agent subscribes as
        self.service = self.name if session_id is None else f"{self.name}@{session_id}"
        self._n_threads = max(1, int(threads))
        self._queue: queue.Queue = queue.Queue()
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._ready_count = itertools.count(1)
        self.ready = threading.Event()
        self.start_error: BaseException | None = None
        self.tasks_done = 0
        self.errors = 0
        self.last_activity: float | None = None
        self.busy = 0

    # ------------------------------------------------------------------ hooks for subclasses
    def subscribe(self) -> None:
        """Register bus subscriptions (runs in the thread calling ``start``)."""

    def on_start(self) -> None:
        """Runs in each worker thread before its first task."""

    def on_stop(self) -> None:
        """Runs in each worker thread after its last task (also when stopped early)."""

    def runs_when_stopping(self, fn: Callable[..., Any], args: tuple) -> bool:
        """Whether a task still queued when ``stop`` is called runs anyway (default: no, it is abandoned). For
        the few short tasks whose loss would leave the agent's record incomplete; ``stop``'s timeout holds."""
        return False

    # ------------------------------------------------------------------ API
    @property
    def stopping(self) -> bool:
        """True once ``stop`` was called: long tasks check it between steps and return early."""
        return self._stopping.is_set()

    @property
    def stop_event(self) -> threading.Event:
        """Set when the agent stops: wait on it instead of sleeping (``stop_event.wait(delay)``)."""
        return self._stopping

    def listen(self, event_type: type[Event], handler: Callable[[Event], None]) -> None:
        """Subscribe ``handler`` (runs on the bus thread: keep it fast) as this agent's consumer group."""
        self.bus.subscribe(event_type, handler, service=self.service, history=self.session_id is None)

    def serve(self, event_type: type[Event], task: Callable[[Event], None],
              on_error: Callable[[Event, BaseException], None] | None = None) -> None:
        """Run ``task(event)`` on a worker thread for each ``event_type`` event of this agent's session.

        The event is acknowledged once the task has run (``on_error(event, exc)`` included) and handed
        back unacknowledged when the agent stops before running it.
        """
        def enqueue(event: Event) -> None:
            if self.session_id is not None and event.session_id != self.session_id:
                return  # another analysis' event (its own group gets it too): settled at once
            report = None if on_error is None else (lambda exc: on_error(event, exc))
            self.submit(task, event, on_error=report, delivery=self.bus.defer_ack())

        self.listen(event_type, enqueue)

    def submit(self, fn: Callable[..., Any], *args: Any, on_error: Callable[[BaseException], None] | None = None,
               delivery: Delivery | None = None):
        """Queue ``fn(*args)`` for a worker thread; ``on_error(exc)`` runs there if it raises."""
        if self._stopping.is_set():
            if delivery is not None:
                delivery.release()
            return
        self._queue.put((fn, args, on_error, delivery))

    def publish(self, event: Event) -> None:
        self.bus.publish(event)

    def start(self) -> "QueueWorkerThread":
        if self._threads:
            raise RuntimeError(f"{self.name} already started")
        self.subscribe()
        for i in range(self._n_threads):
            suffix = f"-{i + 1}" if self._n_threads > 1 else ""
            thread = threading.Thread(target=self._run, name=f"{THREAD_PREFIX}{self.name}{suffix}")
            self._threads.append(thread)
            thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> bool:
        """Abandon queued work, end the threads; True when all joined within ``timeout`` seconds."""
        self._stopping.set()
        for _ in self._threads:
            self._queue.put(_STOP)
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(max(0.0, deadline - time.monotonic()))
        alive = [t.name for t in self._threads if t.is_alive()]
        if alive:
            log.warning("%s: threads still running after %.1fs: %s", self.name, timeout, ", ".join(alive))
        return not alive

    @property
    def alive(self) -> bool:
        return any(t.is_alive() for t in self._threads)

    def queue_size(self) -> int:
        return self._queue.qsize()

    def status(self) -> dict[str, Any]:
        """Queue depth, tasks done, errors and last activity (UTC epoch seconds) — for status displays."""
        return {
            "queue": self.queue_size(),
            "busy": self.busy,
            "tasks_done": self.tasks_done,
            "errors": self.errors,
            "last_activity": self.last_activity,
            "alive": self.alive,
        }

    # ------------------------------------------------------------------ internals
    def _run(self) -> None:
        try:
            self.on_start()
        except BaseException as exc:  # noqa: BLE001 - reported to whoever waits on `ready`, who raises it
            log.debug("%s failed to start", self.name, exc_info=True)
            self.start_error = exc
            self.ready.set()
            return
        if next(self._ready_count) == self._n_threads:
            self.ready.set()
        try:
            while True:
                item = self._queue.get()
                if item is _STOP:
                    break
                if self._stopping.is_set() and not self.runs_when_stopping(item[0], item[1]):
                    if item[3] is not None:
                        item[3].release()  # abandoned: handed back to the bus, not run
                    continue
                self._execute(*item)
        finally:
            try:
                self.on_stop()
            except Exception:  # noqa: BLE001 - a failing teardown must not hide the others
                log.exception("%s: on_stop failed", self.name)

    def _execute(self, fn, args, on_error, delivery) -> None:
        with self._lock:
            self.busy += 1
        try:
            fn(*args)
        except Exception as exc:  # noqa: BLE001 - a task never kills its thread
            self.errors += 1
            task = getattr(fn, "__name__", repr(fn))
            log.exception("%s: task %s failed", self.name, task)
            # Reporting goes through the bus, which may itself be failing (a broker outage): a report
            # that cannot be sent is logged, and the thread lives on.
            for report in (lambda: self.publish(TaskFailed(self.session_id or "", self.name, task,
                                                           f"{type(exc).__name__}: {exc}")),
                           (lambda: on_error(exc)) if on_error is not None else None):
                if report is None:
                    continue
                try:
                    report()
                except Exception:  # noqa: BLE001
                    log.exception("%s: reporting the failure of %s failed", self.name, task)
        finally:
            if delivery is not None:
                try:
                    # A task cut short by stop() is handed back (tasks return early when `stopping`);
                    # one that did finish is then redone elsewhere, which every agent tolerates.
                    delivery.release() if self._stopping.is_set() else delivery.ack()
                except Exception:  # noqa: BLE001 - the bus redelivers; duplicates are tolerated
                    log.warning("%s: could not acknowledge a finished task", self.name, exc_info=True)
            with self._lock:
                self.busy -= 1
                self.tasks_done += 1
            self.last_activity = time.time()
