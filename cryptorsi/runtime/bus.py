"""The service bus interface (``create_bus(url)`` in :mod:`cryptorsi.runtime` picks an implementation).

Semantics every implementation keeps (the contract tests in ``tests/test_bus_contract.py`` check them):

* an event's topic is its class; handlers subscribe with a ``service`` name;
* each service is a consumer group: it receives every event of a topic it subscribed to, once;
* several handlers subscribed under the same service share that service's load (competing consumers):
  each event goes to exactly one of them;
* events of one publisher are delivered to a given handler in the order they were published
  (in-process bus; the Redis bus keeps it per topic);
* handlers run on the bus's thread(s) and must be fast: agents only enqueue work in them;
* a handler that raises is logged; the other services still get the event;
* ``history=False`` subscribes a new consumer group to events published from now on only (a group
  made for one session); with ``history=True`` a group made late still gets the events the bus
  holds (a worker process that joins after the orchestrator published);
* ``defer_ack()`` inside a handler keeps the event unacknowledged until ``ack()`` (work done) or
  ``release()`` (work handed back): on the Redis bus the work of a killed process is redelivered.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

from cryptorsi.events import Event

__all__ = ["ServiceBus", "Handler", "Delivery"]

Handler = Callable[[Event], None]


class ServiceBus(ABC):
    url: str = ""

    @abstractmethod
    def subscribe(self, event_type: type[Event], handler: Handler, *, service: str, history: bool = True) -> None:
        """Deliver events of ``event_type`` to ``handler`` as a consumer of group ``service``."""

    @abstractmethod
    def publish(self, event: Event) -> None:
        """Send ``event`` to every service subscribed to its type. Never blocks on handlers."""

    @abstractmethod
    def start(self) -> None:
        """Start delivering (events published before ``start`` are kept and delivered then)."""

    @abstractmethod
    def stop(self, timeout: float = 5.0) -> bool:
        """Stop delivering and join the bus threads; True when they ended within ``timeout``."""

    @abstractmethod
    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until everything published so far has been handed to its handlers (tests, shutdown)."""

    def pending(self) -> int:
        """Events published but not yet delivered."""
        return 0

    def defer_ack(self) -> "Delivery":
        """Inside a handler: settle the current event later, when the work it queued is done."""
        return _SETTLED


class Delivery:
    """An event being worked on: ``ack()`` when the work is done, ``release()`` to hand it back."""

    def ack(self) -> bool:
        return True

    def release(self) -> None:
        pass


#: buses that deliver once and forget (in-process) have nothing to settle
_SETTLED = Delivery()
