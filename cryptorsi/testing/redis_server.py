"""A throwaway ``redis-server`` on a free loopback port, for tests and benchmarks.

No persistence (``--save '' --appendonly no``), a temporary ``--dir``; ``redis-server`` is looked up as
``$REDIS_SERVER``, then on ``PATH``, then in ``/usr/bin`` and ``/usr/sbin`` (Debian package ``redis-server``).

>>> with RedisServer() as server:        # doctest: +SKIP
...     url = server.url                  # redis://127.0.0.1:PORT/0
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

__all__ = ["RedisServer", "find_redis_server"]

START_TIMEOUT = 10.0


def find_redis_server() -> str | None:
    """Path of the ``redis-server`` executable, or None."""
    explicit = os.environ.get("REDIS_SERVER")
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    found = shutil.which("redis-server")
    if found:
        return found
    for candidate in ("/usr/bin/redis-server", "/usr/sbin/redis-server"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answers_ping(port: int) -> bool:
    """True when a Redis server on ``port`` answers PING (raw RESP, no client library needed)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"*1\r\n$4\r\nPING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One ``redis-server`` process on a free loopback port."""

    def __init__(self, executable: str | None = None, port: int | None = None):
        self.executable = executable or find_redis_server()
        if self.executable is None:
            raise FileNotFoundError("redis-server not found (Debian: apt-get install redis-server, or set REDIS_SERVER)")
        self.port = port
        self.proc: subprocess.Popen | None = None
        self._tmp = tempfile.TemporaryDirectory(prefix="cryptorsi-redis-")
        self.dir = Path(self._tmp.name)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> "RedisServer":
        """Start the server and wait (at most ``START_TIMEOUT`` s) until it answers PING."""
        attempts = 1 if self.port else 3  # a free port may be taken between the probe and the bind
        for _ in range(attempts):
            port = self.port or _free_port()
            if self._launch(port):
                self.port = port
                return self
        log = self.dir / "redis.log"
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        raise RuntimeError(f"redis-server did not start on 127.0.0.1:{port}:\n{tail}")

    def _launch(self, port: int) -> bool:
        self.proc = subprocess.Popen(
            [self.executable, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.dir), "--logfile", str(self.dir / "redis.log"), "--daemonize", "no"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if _answers_ping(port):
                return True
            try:
                self.proc.wait(timeout=0.02)  # bounded poll interval that ends at once if the server died
                return False
            except subprocess.TimeoutExpired:
                pass
        self.kill()
        return False

    def stop(self, timeout: float = 5.0) -> None:
        """Shut the server down (SIGTERM, then SIGKILL after ``timeout``)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self.proc = None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def close(self) -> None:
        self.stop()
        self._tmp.cleanup()

    def __enter__(self) -> "RedisServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()
