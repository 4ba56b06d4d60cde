"""The service bus interface, and ``create_bus(url)`` which picks an implementation from its URL.

Semantics every implementation keeps (the contract tests in ``tests/test_bus_contract.py`` check them):

* an event's topic is its class; handlers subscribe with a ``service`` name;
* each service is a consumer group: it receives every event of a topic it subscribed to, once;
* several handlers subscribed under the same service share that service's load (competing consumers):
  each event goes to exactly one of them;
* events of one publisher are delivered to a given handler in the order they were published
  (in-process bus; the Redis bus keeps it per topic);
* handlers run on the bus's thread(s) and must be fast: agents only enqueue work in them;
* a handler that raises is logged; the other services still get the event.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

from cryptorsi.events import Event

__all__ = ["ServiceBus", "Handler", "create_bus"]

Handler = Callable[[Event], None]


class ServiceBus(ABC):
    url: str = ""

    @abstractmethod
    def subscribe(self, event_type: type[Event], handler: Handler, *, service: str) -> None:
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


def create_bus(url: str = "memory://", *, namespace: str = "cryptorsi") -> ServiceBus:
    """The bus named by ``url``: ``memory://`` (in-process) or ``redis://host:port/db`` (Redis Streams)."""
    if url == "memory://":
        from cryptorsi.runtime.memory_bus import InMemoryBus

        return InMemoryBus()
    if url.startswith(("redis://", "rediss://")):
        try:
            from cryptorsi.runtime.redis_bus import RedisBus
        except ImportError as exc:  # the Redis bus is an optional extra
            raise ValueError(f"bus_url {url!r} needs the Redis bus: pip install 'cryptorsi[redis]' ({exc})") from None
        return RedisBus(url, namespace=namespace)
    raise ValueError(f"bus_url: unsupported bus {url!r}; use memory:// or redis://host:port/db")
