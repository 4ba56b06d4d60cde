"""Whether the process running a session is still there, from what that process leaves behind.

What a session's process leaves:

* in its ``sessions`` row (schema 5): the ``host`` name, the ``pid`` and the ``process_start`` token of the process
  that writes the session (on Linux the boot id and the process start time from ``/proc/<pid>/stat``, so a pid
  reused by another process, or after a reboot, is told apart);
* next to the database, while the session runs: the file ``<db>-session-<session_id>.lock``, on which that process
  holds an exclusive ``flock`` (taken before the row is written; the row is closed, then the file removed and
  the lock released). A process that dies, however it dies, releases the lock with it; a killed run leaves an
  unlocked, empty file behind, which may be deleted.

How a session stored as ``running`` is read (:func:`running_or_abandoned`): written on this host, it runs while a
process with its pid and start token exists (in this very process: while its DatabaseManager has not let it
go); written on another host, or before schema 5 recorded a host, it runs while someone holds its lock. Otherwise
it is ``abandoned``. Never by its age: a session waiting a long time for the network still runs.
"""

from __future__ import annotations

import logging
import os
import socket
import threading

__all__ = ["this_process", "process_start", "SessionLock", "lock_path", "running_or_abandoned"]

log = logging.getLogger(__name__)

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: no lock files; sessions of other hosts read as running
    fcntl = None

_owned_lock = threading.Lock()
#: (database real path, session id) of the sessions this process writes right now
_owned: set[tuple[str, str]] = set()


def this_process() -> tuple[str, int, str | None]:
    """``(host, pid, process_start)`` of the calling process, as a session row records them."""
    pid = os.getpid()
    return socket.gethostname(), pid, process_start(pid)


def process_start(pid: int) -> str | None:
    """``"<boot id>:<start time in clock ticks>"`` of process ``pid`` (Linux), ``None`` when unknown or gone."""
    try:
        with open(f"/proc/{int(pid)}/stat", "rb") as fh:
            stat = fh.read().decode("ascii", "replace")
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as fh:
            boot = fh.read().strip()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2:].split()  # after "pid (comm) ": state is field 3, starttime field 22
    if len(fields) < 20 or fields[0] in ("Z", "X"):  # a zombie has ended: only its exit status is left
        return None
    return f"{boot}:{fields[19]}"


def _pid_runs(pid: int, start: str | None) -> bool:
    if os.path.exists("/proc/self/stat"):  # Linux: the process and its start time
        now = process_start(pid)
        return now is not None and (start is None or now == start)
    try:
        os.kill(pid, 0)  # elsewhere: whether the pid exists at all
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, someone else's
        return True
    return True


def lock_path(db_path: str | os.PathLike, session_id: str) -> str:
    """The lock file of a session, next to its database."""
    return f"{os.fspath(db_path)}-session-{session_id}.lock"


def _key(db_path: str | os.PathLike, session_id: str) -> tuple[str, str]:
    return os.path.realpath(os.fspath(db_path)), str(session_id)


class SessionLock:
    """Held by the process writing a session, from before its row is written until after it is closed.

    ``acquire`` never fails: when the lock file cannot be made (read-only folder, full disk) the session is
    still known as this process's own, and other hosts read it as abandoned.
    """

    def __init__(self, db_path: str | os.PathLike, session_id: str):
        self.path = lock_path(db_path, session_id)
        self._key = _key(db_path, session_id)
        self._fd: int | None = None

    @classmethod
    def acquire(cls, db_path: str | os.PathLike, session_id: str) -> "SessionLock":
        lock = cls(db_path, session_id)
        with _owned_lock:
            _owned.add(lock._key)
        if fcntl is not None:
            try:
                fd = os.open(lock.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                log.debug("%s: no lock file (%s); other hosts will read the session as abandoned", lock.path, exc)
                return lock
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                log.debug("%s: not locked (%s)", lock.path, exc)
                return lock
            lock._fd = fd
        return lock

    def release(self) -> None:
        """Remove the lock file and release the lock (idempotent). Call it after the session row is closed."""
        with _owned_lock:
            _owned.discard(self._key)
        fd, self._fd = self._fd, None
        if fd is not None:
            try:
                os.unlink(self.path)
            except OSError:
                pass
            os.close(fd)


def _lock_held(path: str) -> bool:
    if fcntl is None:  # pragma: no cover - cannot tell: not abandoned
        return True
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    except OSError:  # cannot tell: not abandoned
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def running_or_abandoned(db_path: str | os.PathLike, session_id: str, host: str | None, pid: int | None,
                         start: str | None) -> str:
    """``running`` or ``abandoned``: how a session stored as ``running`` reads (see the module docstring)."""
    if host is not None and pid is not None and host == socket.gethostname():
        if pid == os.getpid() and (start is None or start == process_start(pid)):
            with _owned_lock:
                mine = _key(db_path, session_id) in _owned
            return "running" if mine else "abandoned"
        return "running" if _pid_runs(pid, start) else "abandoned"
    return "running" if _lock_held(lock_path(db_path, session_id)) else "abandoned"
