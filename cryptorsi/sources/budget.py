"""A request-weight budget shared by every thread that talks to one exchange (Binance: 6,000 weight a minute).

:class:`WeightBudget` keeps a sliding log of the weight *sent* in the last window (plus a small margin for the
network's delay, so that the server, which counts on arrival in fixed windows, never sees more than the limit),
and makes a thread wait until its request fits. It learns from the server: :meth:`configure` adopts the budget
``exchangeInfo`` advertises, :meth:`observe` resynchronises with ``X-MBX-USED-WEIGHT-*`` headers (weight used by
others makes it more careful), :meth:`lower` narrows the limit after a 429, and :meth:`pause` stops every thread
until a ``Retry-After`` has passed. Waits are condition waits that :meth:`close` interrupts (no sleeps).

>>> budget = WeightBudget(limit=10, window_s=60, safety=1.0)
>>> [budget.acquire(2) for _ in range(5)]
[True, True, True, True, True]
>>> budget.acquire(2, timeout=0.01)
False
>>> budget.snapshot()["weight"]
10
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from typing import Callable

__all__ = ["WeightBudget", "BudgetClosed"]


class BudgetClosed(Exception):
    """The budget was closed while a thread was waiting for it."""


class WeightBudget:
    """``limit`` weight per ``window_s`` seconds, of which a fraction ``safety`` is used."""

    def __init__(self, limit: float = 6000, window_s: float = 60.0, *, safety: float = 0.9,
                 clock: Callable[[], float] = time.monotonic):
        if limit <= 0 or window_s <= 0:
            raise ValueError("limit and window_s must be > 0")
        self._clock = clock
        self._cond = threading.Condition()
        self._log: deque[tuple[float, float]] = deque()
        self._total = 0.0
        self._limit = float(limit)
        self._window = float(window_s)
        #: the most weight per minute the owner allows, whatever the server says
        self._cap_rate = float(limit) * 60.0 / float(window_s)
        self._safety = float(safety)
        self._paused_until = 0.0
        self._closed = False
        self._stats = {"requests": 0, "weight": 0.0, "waits": 0, "waited_s": 0.0, "pauses": 0,
                       "paused_s": 0.0, "phantom_weight": 0.0}

    # ---------------------------------------------------------------- configuration
    @property
    def limit(self) -> float:
        return self._limit

    @property
    def window_s(self) -> float:
        return self._window

    def _effective(self) -> tuple[float, float]:
        limit = max(1.0, math.floor(self._limit * self._safety))
        return limit, self._window + min(1.0, 0.05 * self._window)

    def configure(self, limit: float, window_s: float) -> None:
        """Adopt the server's budget (``limit`` per ``window_s``), never beyond the owner's rate cap."""
        if limit <= 0 or window_s <= 0:
            return
        with self._cond:
            self._window = float(window_s)
            self._limit = min(float(limit), self._cap_rate * self._window / 60.0)
            self._cond.notify_all()

    def lower(self, limit: float) -> None:
        """Narrow the limit (after a 429 revealed the server's is smaller than assumed)."""
        with self._cond:
            if 0 < limit < self._limit:
                self._limit = float(limit)

    # ---------------------------------------------------------------- use
    def acquire(self, weight: float, timeout: float | None = None) -> bool:
        """Wait until ``weight`` fits in the budget (and no pause is running), then count it as sent.

        Returns False if ``timeout`` passed first; raises :class:`BudgetClosed` if the budget is closed.
        """
        deadline = None if timeout is None else self._clock() + timeout
        waited = False
        t0 = self._clock()
        with self._cond:
            while True:
                if self._closed:
                    raise BudgetClosed("budget closed")
                now = self._clock()
                limit, window = self._effective()
                while self._log and self._log[0][0] <= now - window:
                    self._total -= self._log.popleft()[1]
                if now < self._paused_until:
                    delay = self._paused_until - now
                elif self._total + weight <= limit or not self._log:
                    self._log.append((now, float(weight)))
                    self._total += weight
                    self._stats["requests"] += 1
                    self._stats["weight"] += weight
                    if waited:
                        self._stats["waits"] += 1
                        self._stats["waited_s"] += now - t0
                    return True
                else:
                    need, freed, delay = self._total + weight - limit, 0.0, 0.0
                    for t, w in self._log:
                        freed += w
                        if freed >= need:
                            delay = t + window - now
                            break
                if deadline is not None:
                    if now >= deadline:
                        return False
                    delay = min(delay, deadline - now)
                waited = True
                self._cond.wait(max(delay, 0.001))

    def observe(self, used: float, window_s: float | None = None) -> None:
        """Resynchronise with the weight the server reports used in its current window (``X-MBX-USED-WEIGHT``).

        If the server counts more than this budget sent in a window, someone else shares the IP: the
        difference is booked as sent now. Reports for another window length are ignored.
        """
        if window_s is not None and abs(window_s - self._window) > 0.01 * self._window:
            return
        with self._cond:
            now = self._clock()
            _, window = self._effective()
            while self._log and self._log[0][0] <= now - window:
                self._total -= self._log.popleft()[1]
            if used > self._total:
                extra = used - self._total
                self._log.append((now, extra))
                self._total += extra
                self._stats["phantom_weight"] += extra

    def pause(self, seconds: float) -> None:
        """Stop every thread from sending for ``seconds`` (a 429's ``Retry-After``)."""
        with self._cond:
            until = self._clock() + max(0.0, seconds)
            if until > self._paused_until:
                self._stats["pauses"] += 1
                self._stats["paused_s"] += until - max(self._paused_until, self._clock())
                self._paused_until = until
            self._cond.notify_all()

    def close(self) -> None:
        """Wake every waiting thread with :class:`BudgetClosed`."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def snapshot(self) -> dict:
        """Counters: requests and weight sent, waits, pauses, and the current limit and window."""
        with self._cond:
            out = dict(self._stats)
            now = self._clock()
            out["limit"] = self._limit
            out["window_s"] = self._window
            out["paused"] = now < self._paused_until
            out["weight_in_window"] = sum(w for t, w in self._log if t > now - self._effective()[1])
        out["weight"] = int(out["weight"]) if float(out["weight"]).is_integer() else out["weight"]
        return out
