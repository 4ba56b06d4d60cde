"""The runtime: the service bus (one interface, an in-process and a Redis Streams implementation) and the
worker threads agents are made of.

>>> bus = create_bus("memory://")
>>> type(bus).__name__
'InMemoryBus'
"""

from __future__ import annotations

import urllib.parse

from cryptorsi.runtime.bus import ServiceBus
from cryptorsi.runtime.memory_bus import InMemoryBus

__all__ = ["ServiceBus", "create_bus"]


def create_bus(url: str = "memory://", **options) -> ServiceBus:
    """The bus named by ``url``: ``memory://`` (in-process) or ``redis://host:port/db`` (Redis Streams).

    A Redis URL may name the namespace of the streams (``redis://host:6379/0?namespace=research``,
    default ``cryptorsi``); workers and runs that should cooperate use the same URL. ``options`` go to
    the Redis bus (``claim_idle_ms``, ``prefetch``...).
    """
    if url == "memory://":
        return InMemoryBus()
    if url.startswith(("redis://", "rediss://")):
        try:
            from cryptorsi.runtime.redis_bus import RedisBus
        except ImportError as exc:  # the Redis bus is an optional extra
            raise ValueError(f"bus_url {url!r} needs the Redis bus: pip install 'cryptorsi[redis]' ({exc})") from None
        parts = urllib.parse.urlsplit(url)
        query = urllib.parse.parse_qs(parts.query)
        options.setdefault("namespace", query.pop("namespace", ["cryptorsi"])[-1])
        for name in ("claim_idle_ms", "prefetch", "maxlen"):
            if name in query:
                options.setdefault(name, int(query.pop(name)[-1]))
        options.setdefault("prefetch", 2)  # each consumer holds at most 2 unfinished tasks: load spreads
        rest = urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query, doseq=True)))
        return RedisBus(rest, **options)
    raise ValueError(f"bus_url: unsupported bus {url!r}; use memory:// or redis://host:port/db")
