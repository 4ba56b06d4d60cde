"""``RedisBus``: the service bus over Redis Streams, for agents spread over several processes or machines.

Layout (everything under ``<namespace>:``, so two analyses or deployments on one Redis never mix):

* one stream per event type, ``<namespace>:<EventType>``; an entry holds one field ``e``: the event encoded by
  :mod:`cryptorsi.runtime.codec`; ``XADD ... MAXLEN ~ maxlen`` bounds each stream;
* one consumer group per subscribing service on each stream it subscribes to, named after the service;
* each handler subscribed under a service is its own consumer in that group (``<host>-<pid>-<n>``), served by
  its own thread ``cryptorsi-bus-<service>-<EventType>`` — handlers of one service compete for the entries;
* dead letters (undecodable entries, entries that failed ``max_deliveries`` times) go to ``<namespace>:_dead``.

Design decisions:

**Group start id.** A group is created (``XGROUP CREATE ... MKSTREAM``; ``BUSYGROUP`` = it already exists) at
``"0"``, not ``"$"``: the orchestrator may publish a request before a remote worker has subscribed, and with
``"$"`` the worker's service would never see it. With ``"0"`` a service gets every event still in the stream
once, whenever its group is created. The price: a group created in a namespace that already holds streams of
an earlier analysis also receives those old events (up to ``maxlen`` per stream). Groups persist in Redis, so
this only happens the first time a service appears in a namespace; use one namespace per deployment or
analysis, or :meth:`RedisBus.purge` a namespace before reusing it. ``group_start="$"`` restores the
classic "only new events" behaviour.

**Acknowledgement and redelivery (at least once).** An entry is acknowledged (``XACK``, pipelined with the
consumer's next ``XREADGROUP``) after its handler returned without raising. A handler that raises leaves its
entry pending; any consumer of the group (this one included) claims it again with ``XAUTOCLAIM`` once it has
been idle ``claim_idle_ms`` — so a failing handler is retried, and entries held by a consumer that died
(SIGKILL, lost machine) are handed to a live one. Each consumer runs ``XAUTOCLAIM`` every ``claim_idle_ms / 2``.
Entries this process is still working on are kept alive (``XCLAIM ... JUSTID`` by their owner every
``claim_idle_ms / 3``) so a slow handler is never robbed while its process lives. An entry delivered more
than ``max_deliveries`` times is dead-lettered and acknowledged (logged as an error). A process that dies
after its handler ran but before ``XACK`` causes one duplicate delivery: handlers must tolerate duplicates
(at-least-once), as with any broker.

**Stream length.** ``MAXLEN ~ maxlen`` (default 10,000 entries per event type) trims the oldest entries
whether or not every group has consumed them (Redis 7 has no "trim only acknowledged" option): ``maxlen`` must
exceed the largest backlog a service can have. Entries trimmed while pending are reported in the log.

**Deferred acknowledgement** (extension, not in ``ServiceBus``): a handler that only enqueues work may call
:meth:`RedisBus.defer_ack` and acknowledge when the work is done (``delivery.ack()``), so work lost with a
killed process is redelivered. ``prefetch`` then bounds how many unacknowledged deferred entries a consumer
holds (as AMQP's QoS prefetch): a busy process stops taking work, an idle one takes it.

**Ordering.** Redis orders a stream; a consumer reads its entries in stream order and runs its handler for
one entry after the other, so a handler sees the events of one topic in publish order (several publishers:
in the order Redis received them). There is no order between topics (each has its own consumer thread) nor
between competing consumers, and a redelivered entry comes after later ones. The in-memory bus, by contrast,
orders everything one publisher sends across topics.

**wait_idle(timeout).** True when, on every stream this process published to, every consumer group that
exists has been delivered and has acknowledged every entry up to the last one this process published, and
nothing published before ``start()`` is still buffered. (A group with ``lag`` 0 has been delivered all that is
still in the stream, so trimmed or purged entries are not waited for.) Events other processes publish in
reaction are not waited for unless this process published later on the same stream. Polls Redis, woken early
by local acknowledgements.

**pending().** Entries that the groups this process subscribes to have not acknowledged yet: ``pending``
(delivered, not acked) + ``lag`` (not delivered) from ``XINFO GROUPS``, plus events buffered before ``start``.

**Connection loss.** ``start()`` pings the broker for at most ``connect_timeout`` seconds (default 5) and
raises :class:`BusConnectionError` (a ``ConnectionError``) with one line naming the URL (password masked).
Afterwards consumer threads retry with exponential backoff (0.1 s doubling to 5 s, waited on the stop event),
re-creating their group if Redis lost it; ``publish`` retries for up to ``publish_timeout`` seconds and then
raises :class:`BusConnectionError`. A retried ``XADD`` whose first reply was lost may duplicate an event.
"""

from __future__ import annotations

import itertools
import logging
import os
import socket
import threading
import time
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from cryptorsi.events import EVENT_TYPES, Event
from cryptorsi.runtime.bus import Delivery as BusDelivery
from cryptorsi.runtime.bus import Handler, ServiceBus
from cryptorsi.runtime.codec import CodecError, decode, encode
from cryptorsi.runtime.worker import THREAD_PREFIX

__all__ = ["RedisBus", "BusConnectionError", "Delivery"]

log = logging.getLogger(__name__)

_FIELD = b"e"
_CONSUMER_SEQ = itertools.count(1)  # process-wide: consumer names are unique across RedisBus instances
_NETWORK_ERRORS = (redis.ConnectionError, redis.TimeoutError, ConnectionError, TimeoutError)
_BACKOFF_START, _BACKOFF_CAP = 0.1, 5.0


class BusConnectionError(ConnectionError):
    """The Redis broker cannot be reached (one-line message naming the URL)."""


def _safe_url(url: str) -> str:
    """``url`` with its password masked."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "<invalid url>"
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def _sid(entry_id: bytes | str) -> tuple[int, int]:
    """A stream id as a comparable tuple."""
    if isinstance(entry_id, bytes):
        entry_id = entry_id.decode()
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


@dataclass(eq=False)
class _Subscription:
    event_type: type[Event]
    handler: Handler
    service: str
    key: str
    consumer: str
    thread: threading.Thread | None = None
    group_ready: bool = False
    claim_cursor: str = "0-0"
    #: entry id -> monotonic time it was delivered or last kept alive (entries this consumer works on)
    inflight: dict[bytes, float] = field(default_factory=dict)
    #: where a new group starts: "0" (every event the stream holds) or "$" (events from now on)
    start_id: str = "0"
    #: ids of deferred deliveries not yet settled
    deferred: set[bytes] = field(default_factory=set)
    #: handled entries whose XACK failed (connection loss): acknowledged first on the next round
    acks_due: list[bytes] = field(default_factory=list)


class Delivery(BusDelivery):
    """One entry being handled; returned by :meth:`RedisBus.defer_ack` to settle it later from any thread."""

    def __init__(self, bus: "RedisBus", sub: _Subscription, entry_id: bytes):
        self._bus = bus
        self._sub = sub
        self.entry_id = entry_id
        self.deferred = False
        self._settled = False
        self._lock = threading.Lock()

    def ack(self) -> bool:
        """Acknowledge the entry (the work is done); True when Redis recorded it. Idempotent."""
        with self._lock:
            if self._settled:
                return True
            self._settled = True
        return self._bus._ack_deferred(self._sub, self.entry_id)

    def release(self) -> None:
        """Give the entry back unacknowledged: another consumer claims it after ``claim_idle_ms``."""
        with self._lock:
            if self._settled:
                return
            self._settled = True
        self._bus._forget(self._sub, [self.entry_id])


class _Backoff:
    """Exponential delays waited on the bus's stop event (never ``time.sleep``)."""

    def __init__(self, stop: threading.Event):
        self._stop = stop
        self._delay = _BACKOFF_START

    def reset(self) -> None:
        self._delay = _BACKOFF_START

    def wait(self) -> bool:
        """Wait the next delay; True when the bus is stopping."""
        delay = self._delay
        self._delay = min(_BACKOFF_CAP, self._delay * 2)
        return self._stop.wait(delay)


class RedisBus(ServiceBus):
    """The :class:`ServiceBus` over Redis Streams (see the module docstring for the semantics)."""

    def __init__(
        self,
        url: str,
        *,
        namespace: str = "cryptorsi",
        maxlen: int = 10_000,
        claim_idle_ms: int = 10_000,
        block_ms: int = 500,
        batch: int = 16,
        max_deliveries: int = 5,
        prefetch: int | None = None,
        connect_timeout: float = 5.0,
        publish_timeout: float = 30.0,
        group_start: str = "0",
    ) -> None:
        if not namespace or any(c.isspace() for c in namespace):
            raise ValueError(f"namespace must be a non-empty word, got {namespace!r}")
        for name, value in (("maxlen", maxlen), ("claim_idle_ms", claim_idle_ms), ("block_ms", block_ms),
                            ("batch", batch), ("max_deliveries", max_deliveries)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if prefetch is not None and (not isinstance(prefetch, int) or prefetch < 1):
            raise ValueError(f"prefetch must be None or a positive integer, got {prefetch!r}")
        if not 0 < connect_timeout <= 10:
            raise ValueError(f"connect_timeout must be in (0, 10] seconds, got {connect_timeout!r}")
        self.url = url
        self.safe_url = _safe_url(url)
        self.namespace = namespace
        self.maxlen = maxlen
        self.claim_idle_ms = claim_idle_ms
        self.block_ms = block_ms
        self.batch = batch
        self.max_deliveries = max_deliveries
        self.prefetch = prefetch
        self.connect_timeout = float(connect_timeout)
        self.publish_timeout = float(publish_timeout)
        self.group_start = group_start
        try:
            self._redis = redis.Redis.from_url(
                url,
                socket_connect_timeout=min(2.0, self.connect_timeout),
                socket_timeout=block_ms / 1000 + 10.0,
                socket_keepalive=True,
                health_check_interval=30,
                retry=Retry(NoBackoff(), 0),  # retries are ours, with backoff waited on the stop event
            )
        except ValueError as exc:
            raise ValueError(f"bus_url {self.safe_url!r}: {_one_line(exc)}") from None
        self._subs: list[_Subscription] = []
        self._cond = threading.Condition()  # guards the state below; notified on acks and publishes
        self._prestart: list[tuple[str, bytes]] = []
        self._last_published: dict[str, tuple[int, int]] = {}
        self._started = False
        self._stopped = False
        self._stop = threading.Event()
        self._keepalive: threading.Thread | None = None
        self._local = threading.local()
        self._outage = False

    # ------------------------------------------------------------------------------------------------ keys
    def key(self, event_type: type[Event]) -> str:
        """The stream of ``event_type``: ``<namespace>:<EventType>``."""
        return f"{self.namespace}:{event_type.__name__}"

    @property
    def dead_letter_key(self) -> str:
        return f"{self.namespace}:_dead"

    # ------------------------------------------------------------------------------------------------ API
    def subscribe(self, event_type: type[Event], handler: Handler, *, service: str, history: bool = True) -> None:
        if EVENT_TYPES.get(getattr(event_type, "__name__", "")) is not event_type:
            raise ValueError(f"{event_type!r} is not an event type of cryptorsi.events.EVENT_TYPES")
        if not service:
            raise ValueError("service must be a non-empty name")
        consumer = f"{socket.gethostname()}-{os.getpid()}-{next(_CONSUMER_SEQ)}"
        sub = _Subscription(event_type, handler, service, self.key(event_type), consumer,
                            start_id=self.group_start if history else "$")
        with self._cond:
            if self._stopped:
                log.debug("bus stopped; subscription of %s to %s ignored", service, event_type.__name__)
                return
            self._subs.append(sub)
            started = self._started
        if started:
            try:
                self._create_group(sub)
            except _NETWORK_ERRORS:
                pass  # the consumer thread creates it once the broker is back
            self._start_consumer(sub)

    def publish(self, event: Event) -> None:
        payload = encode(event)
        key = self.key(type(event))
        with self._cond:
            if self._stopped:
                log.debug("bus stopped; dropped %s", type(event).__name__)
                return
            if not self._started:
                self._prestart.append((key, payload))
                return
        self._xadd(key, payload)

    def start(self) -> None:
        with self._cond:
            if self._started:
                raise RuntimeError("bus already started")
            if self._stopped:
                raise RuntimeError("bus already stopped")
        self._connect()
        with self._cond:
            subs = list(self._subs)
        self._create_groups(subs)  # before the buffered events go out (matters with group_start="$")
        while True:  # flush what was published before start, in order; later publishes wait in the buffer
            with self._cond:
                if not self._prestart:
                    self._started = True
                    late = [s for s in self._subs if s not in subs]
                    break
                buffered, self._prestart = self._prestart, []
            for key, payload in buffered:
                self._xadd(key, payload)
        self._create_groups(late)
        for sub in subs + late:
            self._start_consumer(sub)
        self._keepalive = threading.Thread(target=self._keep_alive, name=f"{THREAD_PREFIX}bus-keepalive")
        self._keepalive.start()

    def stop(self, timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            self._stopped = True
            self._prestart.clear()
            self._stop.set()
            self._cond.notify_all()
            threads = [s.thread for s in self._subs if s.thread is not None]
        if self._keepalive is not None:
            threads.append(self._keepalive)
        me = threading.current_thread()
        for thread in threads:
            if thread is not me:
                thread.join(max(0.0, deadline - time.monotonic()))
        alive = [t.name for t in threads if t.is_alive() and t is not me]
        if alive:
            log.warning("redis bus: threads still running after %.1fs: %s", timeout, ", ".join(alive))
        self._forget_consumers(deadline)
        try:
            self._redis.close()  # later deferred acks reconnect on demand
        except redis.RedisError:
            pass
        return not alive

    def wait_idle(self, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        poll = 0.005
        while True:
            with self._cond:
                local_busy = bool(self._prestart) or any(s.acks_due for s in self._subs)
                targets = dict(self._last_published)
            if not local_busy:
                try:
                    if self._streams_idle(targets):
                        return True
                except redis.RedisError as exc:
                    log.debug("wait_idle: %s", _one_line(exc))
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return False
            with self._cond:
                self._cond.wait(poll if remaining is None else min(poll, remaining))
            poll = min(0.1, poll * 2)

    def pending(self) -> int:
        with self._cond:
            count = len(self._prestart)
            pairs = {(s.key, s.service) for s in self._subs}
        if not pairs or not self._started:
            return count
        keys = sorted({k for k, _ in pairs})
        try:
            pipe = self._redis.pipeline(transaction=False)
            for key in keys:
                pipe.xinfo_groups(key)
            replies = pipe.execute(raise_on_error=False)
        except redis.RedisError as exc:
            log.debug("pending: %s", _one_line(exc))
            return count
        for key, groups in zip(keys, replies):
            if isinstance(groups, Exception):
                continue
            for g in groups:
                if (key, _text(g["name"])) in pairs:
                    count += int(g.get("pending") or 0) + int(g.get("lag") or 0)
        return count

    def defer_ack(self) -> Delivery:
        """Inside a handler: keep the current entry unacknowledged when the handler returns.

        Call ``ack()`` on the returned :class:`Delivery` when the work it started is done (from any thread),
        or ``release()`` to hand it back. Until then the entry is kept alive while this process lives; if the
        process dies the entry is claimed by another consumer after ``claim_idle_ms``.
        """
        delivery = getattr(self._local, "delivery", None)
        if delivery is None:
            raise RuntimeError("defer_ack() must be called inside a handler running on this bus")
        if not delivery.deferred:
            delivery.deferred = True
            with self._cond:
                delivery._sub.deferred.add(delivery.entry_id)
        return delivery

    def purge(self) -> int:
        """Delete every stream of this namespace (all event types and the dead letters); the number deleted.

        Only for a namespace no process is using: groups, pending entries and undelivered events are lost.
        """
        keys = [self.key(cls) for cls in EVENT_TYPES.values()] + [self.dead_letter_key]
        return int(self._redis.delete(*keys))

    # ------------------------------------------------------------------------------------------------ start
    def _connect(self) -> None:
        deadline = time.monotonic() + self.connect_timeout
        backoff = _Backoff(threading.Event())
        last: BaseException | None = None
        while True:
            try:
                self._redis.ping()
                info = self._redis.info("server")
                break
            except redis.AuthenticationError as exc:
                raise BusConnectionError(
                    f"Redis at {self.safe_url} refused the credentials: {_one_line(exc)}") from None
            except redis.ResponseError as exc:  # NOAUTH, ACL...
                raise BusConnectionError(f"Redis at {self.safe_url} refused the connection: {_one_line(exc)}") from None
            except (*_NETWORK_ERRORS, OSError) as exc:
                last = exc
            except redis.RedisError as exc:  # something answered, but not a Redis server (protocol error)
                raise BusConnectionError(f"no usable Redis at {self.safe_url}: {_one_line(exc)}") from None
            if time.monotonic() + backoff._delay >= deadline:
                raise BusConnectionError(f"cannot reach the Redis bus at {self.safe_url} "
                                         f"(tried for {self.connect_timeout:g} s): {_one_line(last)}") from None
            backoff.wait()
        version = str(info.get("redis_version", "0"))
        if tuple(int(p) for p in version.split(".")[:2] if p.isdigit()) < (6, 2):
            raise BusConnectionError(f"Redis at {self.safe_url} is version {version}; the bus needs Redis 6.2 or newer")

    def _create_group(self, sub: _Subscription) -> None:
        try:
            self._redis.xgroup_create(sub.key, sub.service, id=sub.start_id, mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        sub.group_ready = True

    def _create_groups(self, subs: list[_Subscription]) -> None:
        for sub in subs:
            try:
                self._create_group(sub)
            except _NETWORK_ERRORS:
                pass  # retried by the consumer thread

    def _start_consumer(self, sub: _Subscription) -> None:
        name = f"{THREAD_PREFIX}bus-{sub.service}-{sub.event_type.__name__}"
        sub.thread = threading.Thread(target=self._consume, args=(sub,), name=name)
        sub.thread.start()

    # ------------------------------------------------------------------------------------------------ publish
    def _xadd(self, key: str, payload: bytes) -> None:
        deadline = time.monotonic() + self.publish_timeout
        backoff = _Backoff(self._stop)
        while True:
            try:
                entry_id = self._redis.xadd(key, {_FIELD: payload}, maxlen=self.maxlen, approximate=True)
                break
            except _NETWORK_ERRORS as exc:
                if time.monotonic() >= deadline or backoff.wait():
                    raise BusConnectionError(
                        f"cannot publish to the Redis bus at {self.safe_url}: {_one_line(exc)}"
                    ) from None
        sid = _sid(entry_id)
        with self._cond:
            if sid > self._last_published.get(key, (0, 0)):
                self._last_published[key] = sid

    # ------------------------------------------------------------------------------------------------ consume
    def _consume(self, sub: _Subscription) -> None:
        backoff = _Backoff(self._stop)
        claim_every = self.claim_idle_ms / 2000
        next_claim = 0.0  # claim at once: entries a dead consumer left behind are picked up on start
        try:
            while not self._stop.is_set():
                try:
                    if not sub.group_ready:
                        self._create_group(sub)
                    room = self._room(sub)
                    if room == 0:
                        self._flush_acks(sub)
                        continue
                    now = time.monotonic()
                    if now >= next_claim:
                        self._flush_acks(sub)
                        more = self._claim(sub, room)
                        next_claim = now if more else now + claim_every
                        if more:
                            continue
                    block = max(1, min(self.block_ms, int((next_claim - time.monotonic()) * 1000)))
                    for entries in _stream_entries(self._read(sub, room, block)):
                        self._deliver(sub, entries)
                    if self._outage:
                        self._outage = False
                        log.info("redis bus: connection to %s restored", self.safe_url)
                    backoff.reset()
                except _NETWORK_ERRORS as exc:
                    if not self._outage:
                        self._outage = True
                        log.warning("redis bus: lost %s (%s); retrying with backoff", self.safe_url, _one_line(exc))
                    backoff.wait()
                except redis.ResponseError as exc:
                    if "NOGROUP" in str(exc):  # Redis lost the group (restart without persistence, purge)
                        sub.group_ready = False
                        log.warning("redis bus: group %s of %s is gone; re-creating it", sub.service, sub.key)
                    else:
                        log.error("redis bus: %s on %s: %s", sub.service, sub.key, _one_line(exc))
                    backoff.wait()
                except Exception:  # noqa: BLE001 - the consumer must survive anything
                    log.exception("redis bus: consumer %s of %s failed; retrying", sub.service, sub.key)
                    backoff.wait()
        finally:
            try:
                self._flush_acks(sub)  # what was handled is acknowledged before the thread ends
            except redis.RedisError as exc:
                log.warning("redis bus: %d handled entries of %s not acknowledged (%s); they will be redelivered",
                            len(sub.acks_due), sub.key, _one_line(exc))

    def _read(self, sub: _Subscription, count: int, block: int) -> Any:
        """XREADGROUP; the acknowledgements due ride along in the same round trip (pipelined XACK)."""
        with self._cond:
            due = list(sub.acks_due)
        if not due:
            return self._redis.xreadgroup(sub.service, sub.consumer, {sub.key: ">"}, count=count, block=block)
        pipe = self._redis.pipeline(transaction=False)
        pipe.xack(sub.key, sub.service, *due)
        pipe.xreadgroup(sub.service, sub.consumer, {sub.key: ">"}, count=count, block=block)
        _acked, reply = pipe.execute()
        self._acked(sub, due)
        return reply

    def _flush_acks(self, sub: _Subscription) -> None:
        with self._cond:
            due = list(sub.acks_due)
        if due:
            self._redis.xack(sub.key, sub.service, *due)
            self._acked(sub, due)

    def _acked(self, sub: _Subscription, ids: list[bytes]) -> None:
        with self._cond:
            acked = set(ids)
            sub.acks_due = [i for i in sub.acks_due if i not in acked]
        self._forget(sub, ids)

    def _room(self, sub: _Subscription) -> int:
        """How many entries this consumer may take now (waits a little when ``prefetch`` is reached)."""
        if self.prefetch is None:
            return self.batch
        with self._cond:
            free = self.prefetch - len(sub.deferred)
            if free <= 0:
                self._cond.wait(self.block_ms / 1000)
                return 0
        return min(self.batch, free)

    def _claim(self, sub: _Subscription, count: int) -> bool:
        """Take over entries of the group idle for ``claim_idle_ms``; True when the scan is not finished."""
        reply = self._redis.xautoclaim(sub.key, sub.service, sub.consumer, self.claim_idle_ms,
                                       start_id=sub.claim_cursor, count=count)
        cursor = _text(reply[0])
        entries = [(i, f) for i, f in reply[1] if i is not None]
        deleted = reply[2] if len(reply) > 2 else []
        sub.claim_cursor = cursor
        if deleted:
            log.error("redis bus: %d pending entries of %s were trimmed before %s handled them (maxlen %d too small?)",
                      len(deleted), sub.key, sub.service, self.maxlen)
        if entries:
            with self._cond:  # still being handled in this process (its keepalive lagged): not a lost entry
                busy = {i for s in self._subs if s.key == sub.key and s.service == sub.service for i in s.inflight}
            entries = [(i, f) for i, f in entries if i not in busy]
        if entries:
            counts = {p["message_id"]: int(p["times_delivered"]) for p in self._redis.xpending_range(
                sub.key, sub.service, min=entries[0][0], max=entries[-1][0], count=len(entries) * 2,
                consumername=sub.consumer)}
            fresh = []
            for entry_id, fields in entries:
                deliveries = counts.get(entry_id, 0)
                if deliveries > self.max_deliveries:
                    self._dead_letter(sub, entry_id, fields, f"delivered {deliveries} times without success")
                else:
                    fresh.append((entry_id, fields))
            if fresh:
                log.info("redis bus: %s claimed %d idle entries of %s", sub.consumer, len(fresh), sub.key)
                self._deliver(sub, fresh)
        return cursor not in ("0-0", "0")

    def _deliver(self, sub: _Subscription, entries: list[tuple[bytes, dict | None]]) -> None:
        now = time.monotonic()
        with self._cond:
            for entry_id, _ in entries:
                sub.inflight[entry_id] = now
        done: list[bytes] = []
        try:
            for n, (entry_id, fields) in enumerate(entries):
                if self._stop.is_set():  # hand the rest back: claimed by another consumer of the group
                    self._forget(sub, [e for e, _ in entries[n:]])
                    break
                payload = fields.get(_FIELD) if fields else None
                if payload is None:  # trimmed away, or not ours
                    done.append(entry_id)
                    continue
                try:
                    event = decode(payload)
                except CodecError as exc:
                    self._dead_letter(sub, entry_id, fields, _one_line(exc))
                    continue
                delivery = Delivery(self, sub, entry_id)
                self._local.delivery = delivery
                try:
                    sub.handler(event)
                except Exception:  # noqa: BLE001 - one service's bug must not starve the others
                    log.exception("bus: %s handler of %s failed (entry %s stays pending; retried after %d ms)",
                                  sub.service, sub.event_type.__name__, _text(entry_id), self.claim_idle_ms)
                    if not delivery.deferred:  # a deferred entry stays with whoever holds its Delivery
                        delivery.release()
                    continue
                finally:
                    self._local.delivery = None
                if not delivery.deferred:
                    done.append(entry_id)
        finally:
            if done:  # acknowledged with the next read (or flushed before a claim scan and at stop)
                with self._cond:
                    sub.acks_due.extend(done)

    def _forget(self, sub: _Subscription, ids: Iterable[bytes]) -> None:
        with self._cond:
            for entry_id in ids:
                sub.inflight.pop(entry_id, None)
                sub.deferred.discard(entry_id)
            self._cond.notify_all()

    def _ack_deferred(self, sub: _Subscription, entry_id: bytes) -> bool:
        backoff = _Backoff(threading.Event())
        deadline = time.monotonic() + self.publish_timeout
        while True:
            try:
                self._redis.xack(sub.key, sub.service, entry_id)
                break
            except _NETWORK_ERRORS as exc:
                if time.monotonic() >= deadline:
                    log.warning("redis bus: could not acknowledge %s of %s (%s); it will be redelivered",
                                _text(entry_id), sub.key, _one_line(exc))
                    self._forget(sub, [entry_id])
                    return False
                backoff.wait()
        self._forget(sub, [entry_id])
        return True

    def _dead_letter(self, sub: _Subscription, entry_id: bytes, fields: dict | None, reason: str) -> None:
        log.error("redis bus: dead-lettered %s %s for %s: %s", sub.key, _text(entry_id), sub.service, reason)
        record = {b"stream": sub.key, b"id": entry_id, b"group": sub.service, b"reason": reason}
        if fields and fields.get(_FIELD) is not None:
            record[_FIELD] = fields[_FIELD]
        pipe = self._redis.pipeline(transaction=True)
        pipe.xadd(self.dead_letter_key, record, maxlen=1000, approximate=True)
        pipe.xack(sub.key, sub.service, entry_id)
        pipe.execute()
        self._forget(sub, [entry_id])

    # ------------------------------------------------------------------------------------------------ keepalive
    def _keep_alive(self) -> None:
        """Reset the idle time of entries this process still works on, so no other consumer claims them."""
        every = self.claim_idle_ms / 3000
        while not self._stop.wait(every):
            now = time.monotonic()
            with self._cond:
                due = [(s, [i for i, t in s.inflight.items() if now - t >= every]) for s in self._subs]
            for sub, ids in due:
                if not ids:
                    continue
                try:
                    self._redis.xclaim(sub.key, sub.service, sub.consumer, 0, ids, justid=True)
                except redis.RedisError as exc:
                    log.debug("redis bus: keepalive of %s failed: %s", sub.key, _one_line(exc))
                    continue
                with self._cond:
                    for entry_id in ids:
                        if entry_id in sub.inflight:
                            sub.inflight[entry_id] = now

    # ------------------------------------------------------------------------------------------------ idle / stop
    def _streams_idle(self, targets: dict[str, tuple[int, int]]) -> bool:
        if not targets:
            return True
        keys = list(targets)
        pipe = self._redis.pipeline(transaction=False)
        for key in keys:
            pipe.xinfo_groups(key)
        replies = pipe.execute(raise_on_error=False)
        check_pending: list[tuple[str, str]] = []
        for key, groups in zip(keys, replies):
            if isinstance(groups, redis.ResponseError) and "no such key" in str(groups).lower():
                continue  # the stream is gone (purged, broker restarted empty): nothing left to deliver
            if isinstance(groups, Exception):
                raise groups
            last = targets[key]
            for g in groups:
                caught_up = g.get("lag") == 0  # Redis 7: every entry still in the stream was delivered
                if not caught_up and _sid(g["last-delivered-id"]) < last:
                    return False
                if int(g.get("pending") or 0):
                    check_pending.append((key, _text(g["name"])))
        if check_pending:
            pipe = self._redis.pipeline(transaction=False)
            for key, group in check_pending:
                pipe.xpending(key, group)
            for (key, _), summary in zip(check_pending, pipe.execute()):
                if summary["pending"] and summary["min"] is not None and _sid(summary["min"]) <= targets[key]:
                    return False
        return True

    def _forget_consumers(self, deadline: float) -> None:
        """Remove this process's consumers that hold nothing from their groups (keeps XINFO tidy)."""
        for sub in self._subs:
            if time.monotonic() >= deadline or not sub.group_ready:
                return
            if sub.thread is None or sub.thread.is_alive():
                continue
            try:
                if not self._redis.xpending_range(sub.key, sub.service, "-", "+", 1, consumername=sub.consumer):
                    self._redis.xgroup_delconsumer(sub.key, sub.service, sub.consumer)
            except redis.RedisError:
                return


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _stream_entries(reply: Any) -> list[list[tuple[bytes, dict | None]]]:
    """Entry lists of an XREADGROUP reply (RESP2 list or RESP3 dict shape)."""
    if not reply:
        return []
    if isinstance(reply, dict):
        return [entries[0] if entries and isinstance(entries[0], list) else entries for entries in reply.values()]
    return [entries for _stream, entries in reply]
