"""Reading klines pages in a helper process, so that the threads fetching them spend less time holding the GIL.

A cold live run is bound by one core: every fetch thread needs the GIL to turn a 180 kB page into numbers
(~1.8 ms of the ~6 ms a page costs in all), while the machine's other cores wait. :class:`PageParserProcess`
starts one helper interpreter (``python -m cryptorsi.sources.page_parser``: a plain subprocess, so no
``multiprocessing`` re-import of the user's ``__main__``) that reads compact pages with the very same function,
:func:`cryptorsi.sources.live._compact_kline_array`, and hands the arrays back over its pipes, bit for bit.

It is an optimisation only: until the helper has said it is ready, when it stays busy with other threads' pages
for ``busy_wait_s``, when it cannot read a page plainly, or once it has failed, the page is read in the calling
thread instead.
:meth:`PageParserProcess.close` ends it (stdin closed, then terminate/kill, each wait bounded).

Protocol: the parent writes ``<u8 length><body>``; the helper answers ``<i8 rows><rows * 6 float64>`` (``-1``:
not plainly readable, with no data). At start the helper writes one byte, ``R``.
"""

from __future__ import annotations

import os
import select
import struct
import subprocess
import sys
import threading
import time

import numpy as np

__all__ = ["PageParserProcess"]

_LEN = struct.Struct("<Q")
_PIPE_SIZE = 1 << 20  # Linux's default most for an unprivileged process (/proc/sys/fs/pipe-max-size)
_ROWS = struct.Struct("<q")


class PageParserProcess:
    """One helper process reading compact klines pages (see the module docstring). Thread-safe."""

    def __init__(self, close_timeout_s: float = 5.0, busy_wait_s: float = 1.0, answer_timeout_s: float = 30.0):
        self.close_timeout_s = float(close_timeout_s)
        self.busy_wait_s = float(busy_wait_s)
        self.answer_timeout_s = float(answer_timeout_s)  # a page takes ~2 ms: a helper this late is stuck
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._ready = False
        self._failed = False
        self._closed = False
        self.parsed = 0  # pages the helper read

    def start(self) -> None:
        """Start the helper (it loads numpy and pandas on its own core meanwhile); idempotent."""
        with self._lock:
            if self._proc is None and not self._closed and not self._failed:
                if sys.platform == "win32":  # select() does not take pipes there: pages are read in the threads
                    self._failed = True
                    return
                # the helper imports cryptorsi the way this interpreter does (a checkout on sys.path too)
                env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
                try:
                    self._proc = subprocess.Popen([sys.executable, "-m", "cryptorsi.sources.page_parser"],
                                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                                  stderr=subprocess.DEVNULL, bufsize=0, env=env)
                except OSError:
                    self._failed = True
                    return
                fd = self._proc.stdin.fileno()
                os.set_blocking(fd, False)  # writes wait in select(), with a deadline
                try:  # room for a whole page in the pipe (Linux): one write, not one per 64 kB the helper reads
                    import fcntl

                    fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, _PIPE_SIZE)
                except (ImportError, AttributeError, OSError):
                    pass

    def parse(self, text: str) -> np.ndarray | None:
        """The (n, 6) array of a compact page read by the helper, or None when it did not read it (not ready,
        busy, not plainly readable, failed): then the caller reads it itself."""
        # waiting for the helper (GIL released) is better than reading here (GIL held) while it is busy with
        # another thread's page; a helper that stays busy that long is not waited for
        if not self._lock.acquire(timeout=self.busy_wait_s):
            return None
        try:
            proc = self._proc
            if proc is None or self._failed or self._closed or not self._is_ready(proc):
                return None
            try:
                body = text.encode()
                deadline = time.monotonic() + self.answer_timeout_s
                _write_all(proc.stdin, _LEN.pack(len(body)) + body, deadline)
                (rows,) = _ROWS.unpack(_read_exactly(proc.stdout, _ROWS.size, deadline))
                if rows < 0:
                    return None
                data = _read_exactly(proc.stdout, rows * 48, deadline)
            except (OSError, ValueError, EOFError, TimeoutError):
                self._failed = True  # and for good: a helper that broke or hangs is not asked again
                if proc.poll() is None:
                    proc.kill()
                return None
            self.parsed += 1
            return np.frombuffer(data, dtype="<f8").reshape(rows, 6).astype(np.float64)
        finally:
            self._lock.release()

    def wait_ready(self, timeout: float) -> bool:
        """Start the helper if needed and wait at most ``timeout`` seconds for it to be ready; True if it is."""
        self.start()
        with self._lock:
            proc = self._proc
            return proc is not None and not self._failed and self._is_ready(proc, timeout)

    def _is_ready(self, proc: subprocess.Popen, timeout: float = 0.0) -> bool:
        if not self._ready:
            readable, _, _ = select.select([proc.stdout], [], [], timeout)
            if not readable:
                return False
            if proc.stdout.read(1) != b"R":
                self._failed = True
                return False
            self._ready = True
        return True

    def close(self) -> None:
        """End the helper: its stdin closed (it exits), else terminated, else killed; bounded waits. A thread
        still waiting for an answer gets none (None: it reads its page itself)."""
        self._closed = True  # start() makes no helper from now on
        # a thread reading an answer holds the lock for at most answer_timeout_s; ending the helper ends that too
        locked = self._lock.acquire(timeout=self.close_timeout_s)
        try:
            proc = self._proc
            if locked:
                self._proc = None
        finally:
            if locked:
                self._lock.release()
        if proc is None:
            return
        try:
            proc.stdin.close()
        except (OSError, ValueError):
            pass
        for stop in (None, proc.terminate, proc.kill):
            if stop is not None:
                stop()
            try:
                proc.wait(self.close_timeout_s)
                break
            except subprocess.TimeoutExpired:
                continue
        if locked:
            proc.stdout.close()


def _write_all(stream, data: bytes, deadline: float) -> None:
    """Write to a non-blocking pipe, waiting at most until ``deadline`` (a helper that stopped reading)."""
    view = memoryview(data)
    while view:
        _, writable, _ = select.select([], [stream], [], max(0.0, deadline - time.monotonic()))
        if not writable:
            raise TimeoutError("the page reader does not read")
        view = view[stream.write(view) or 0:]


def _read_exactly(stream, n: int, deadline: float | None = None) -> bytes:
    chunks, left = [], n
    while left:
        if deadline is not None:
            readable, _, _ = select.select([stream], [], [], max(0.0, deadline - time.monotonic()))
            if not readable:
                raise TimeoutError("the page reader did not answer")
        chunk = stream.read(left)
        if not chunk:
            raise EOFError("the page reader ended")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _serve() -> None:
    from cryptorsi.sources.live import _compact_kline_array

    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    stdout.write(b"R")
    stdout.flush()
    while True:
        try:
            (n,) = _LEN.unpack(_read_exactly(stdin, _LEN.size))
            text = _read_exactly(stdin, n).decode()
        except EOFError:
            return
        table = _compact_kline_array(text)
        if table is None:
            stdout.write(_ROWS.pack(-1))
        else:
            stdout.write(_ROWS.pack(len(table)) + np.ascontiguousarray(table, dtype="<f8").tobytes())
        stdout.flush()


if __name__ == "__main__":
    _serve()
