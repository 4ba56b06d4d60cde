import threading

import pytest

from cryptorsi.runtime.worker import THREAD_PREFIX


def cryptorsi_threads():
    """Live threads started by cryptorsi (every one is named with the prefix)."""
    return [t for t in threading.enumerate() if t.name.startswith(THREAD_PREFIX)]


@pytest.fixture
def no_thread_leak():
    """Fails the test if a cryptorsi thread outlives it."""
    yield
    left = cryptorsi_threads()
    assert not left, f"threads left behind: {[t.name for t in left]}"


# The Redis server fixture (`redis_url`): a real redis-server on a free loopback port.
pytest_plugins = ["redis_server"]
