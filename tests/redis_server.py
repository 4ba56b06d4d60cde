"""pytest plugin: the session fixture ``redis_url``, a real ``redis-server`` on a free loopback port.

When ``redis-server`` is missing the Redis tests are skipped — except when the environment variable ``CI``
is set: then they fail, so CI cannot silently stop testing the Redis bus. Registered in ``conftest.py``.
"""

from __future__ import annotations

import os

import pytest

from cryptorsi.testing.redis_server import RedisServer, find_redis_server

__all__ = ["RedisServer", "find_redis_server", "require_redis_server", "redis_url"]


def require_redis_server() -> str:
    """The executable, or skip the test (fail when ``CI`` is set)."""
    exe = find_redis_server()
    if exe is None:
        message = "redis-server not found (Debian: apt-get install redis-server, or set REDIS_SERVER)"
        if os.environ.get("CI"):
            pytest.fail(f"{message}; CI must run the Redis tests", pytrace=False)
        pytest.skip(message)
    return exe


@pytest.fixture(scope="session")
def redis_url():
    """URL of a private redis-server for the whole test session (skipped locally, failed in CI, if missing)."""
    server = RedisServer(require_redis_server()).start()
    try:
        yield server.url
    finally:
        server.close()
