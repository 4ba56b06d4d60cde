"""``InMemoryBus``: the in-process service bus — one dispatcher thread, events passed as objects."""

from __future__ import annotations

import collections
import itertools
import logging
import threading
import time

from cryptorsi.events import Event
from cryptorsi.runtime.bus import Handler, ServiceBus
from cryptorsi.runtime.worker import THREAD_PREFIX

__all__ = ["InMemoryBus"]

log = logging.getLogger(__name__)


class InMemoryBus(ServiceBus):
    """Delivers on one thread named ``cryptorsi-bus``, in publish order, with no copy or serialisation."""

    url = "memory://"

    def __init__(self) -> None:
        # topic -> service -> handlers of that consumer group, and a round-robin cursor per group
        self._groups: dict[type[Event], dict[str, list[Handler]]] = collections.defaultdict(dict)
        self._cursors: dict[tuple[type[Event], str], itertools.count] = {}
        self._events: collections.deque[Event] = collections.deque()
        self._cond = threading.Condition()
        self._in_flight = 0
        self._stopped = False
        self._thread: threading.Thread | None = None

    def subscribe(self, event_type: type[Event], handler: Handler, *, service: str, history: bool = True) -> None:
        # `history` is moot here: events are delivered to the groups that exist when they are dispatched.
        with self._cond:
            handlers = self._groups[event_type].setdefault(service, [])
            handlers.append(handler)
            self._cursors.setdefault((event_type, service), itertools.count())

    def publish(self, event: Event) -> None:
        with self._cond:
            if self._stopped:
                log.debug("bus stopped; dropped %s", type(event).__name__)
                return
            self._events.append(event)
            self._cond.notify_all()

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("bus already started")
        self._thread = threading.Thread(target=self._dispatch, name=f"{THREAD_PREFIX}bus")
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> bool:
        with self._cond:
            self._stopped = True
            self._events.clear()
            self._cond.notify_all()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
            return not self._thread.is_alive()
        return True

    def wait_idle(self, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._events or self._in_flight:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    def pending(self) -> int:
        with self._cond:
            return len(self._events) + self._in_flight

    def _dispatch(self) -> None:
        while True:
            with self._cond:
                while not self._events and not self._stopped:
                    self._cond.wait()
                if self._stopped:
                    return
                event = self._events.popleft()
                self._in_flight = 1
                targets = [
                    (service, handlers[next(self._cursors[(type(event), service)]) % len(handlers)])
                    for service, handlers in self._groups.get(type(event), {}).items()
                    if handlers
                ]
            for service, handler in targets:
                try:
                    handler(event)
                except Exception:  # noqa: BLE001 - one service's bug must not starve the others
                    log.exception("bus: %s handler of %s failed", service, type(event).__name__)
            with self._cond:
                self._in_flight = 0
                self._cond.notify_all()
