import threading

import pytest

from cryptorsi.runtime.worker import THREAD_PREFIX


def cryptorsi_threads():
    """Live threads started by cryptorsi (every one is named with the prefix)."""
    return [t for t in threading.enumerate() if t.name.startswith(THREAD_PREFIX)]


class ManualClock:
    """A clock (seconds) that moves only when a test advances it: nothing then depends on where the wall clock
    falls or on how fast the machine runs."""

    def __init__(self, start: float = 1_700_000_000.0):
        self.now = float(start)

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock():
    """A :class:`ManualClock` to inject (``ExchangeServer(clock=...)``, ``WeightBudget(clock=...)``)."""
    return ManualClock()


@pytest.fixture
def no_thread_leak():
    """Fails the test if a cryptorsi thread outlives it."""
    yield
    left = cryptorsi_threads()
    assert not left, f"threads left behind: {[t.name for t in left]}"


# The Redis server fixture (`redis_url`): a real redis-server on a free loopback port.
pytest_plugins = ["redis_server"]
