"""A session whose process is gone reads as ``abandoned``; one whose process lives reads as ``running``.

Decided from what the session's process leaves (host, pid and start token in its row, its lock file), never from
age. Processes are real: children that block mid-run and are killed with SIGKILL.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys

import pandas as pd
import pytest

from cryptorsi.cli import main
from cryptorsi.storage import SCHEMA_VERSION, SessionWriter, Store, open_database
from cryptorsi.storage.liveness import SessionLock, lock_path, process_start, this_process
from cryptorsi.storage.schema import APPLICATION_ID, MIGRATIONS

STARTED = pd.Timestamp("2026-01-01T10:00", tz="UTC")


def statuses(db) -> dict[str, str]:
    sessions = Store(db).sessions()
    return dict(zip(sessions["session_id"], sessions["status"]))


def set_owner(db, session_id: str, host, pid, start) -> None:
    conn = sqlite3.connect(db)
    with conn:
        conn.execute("UPDATE sessions SET host = ?, pid = ?, process_start = ? WHERE session_id = ?",
                     (host, pid, start, session_id))
    conn.close()


@pytest.fixture()
def db(tmp_path):
    path = str(tmp_path / "crypto_data.db")
    conn = open_database(path)
    writer = SessionWriter(conn)
    writer.start_session("done", STARTED, {"source": "sample"})
    writer.finish_session("done", "completed", STARTED + pd.Timedelta(minutes=1))
    writer.start_session("s", STARTED + pd.Timedelta(minutes=2), {"source": "sample"})
    conn.close()
    return path


def test_a_session_records_the_process_that_writes_it(db):
    conn = sqlite3.connect(db)
    row = conn.execute("SELECT host, pid, process_start FROM sessions WHERE session_id = 's'").fetchone()
    conn.close()
    assert row == this_process() == (socket.gethostname(), os.getpid(), process_start(os.getpid()))
    if sys.platform == "linux":
        assert row[2] is not None


def test_this_process_reads_running_only_while_it_owns_the_session(db):
    # written by this process with no DatabaseManager holding it: nobody will close it
    assert statuses(db) == {"done": "completed", "s": "abandoned"}
    lock = SessionLock.acquire(db, "s")
    try:
        assert statuses(db)["s"] == "running"
        assert os.path.exists(lock_path(db, "s"))
    finally:
        lock.release()
    assert not os.path.exists(lock_path(db, "s"))
    sessions = Store(db).sessions().set_index("session_id")
    assert sessions.loc["s", "status"] == "abandoned"
    assert sessions.loc["s", "message"] == f"process {os.getpid()} on {socket.gethostname()} ended without closing " \
                                           "the session"
    assert pd.isna(sessions.loc["done", "message"])


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="process start times come from /proc")
def test_same_host_pid_gone_or_reused(db):
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        start = process_start(child.pid)
        set_owner(db, "s", socket.gethostname(), child.pid, start)
        assert statuses(db)["s"] == "running"
        set_owner(db, "s", socket.gethostname(), child.pid, "another-boot:12345")  # the pid of another process
        assert statuses(db)["s"] == "abandoned"
        set_owner(db, "s", socket.gethostname(), child.pid, start)
    finally:
        child.kill()
        child.wait()
    assert statuses(db)["s"] == "abandoned"


def test_another_host_runs_while_its_lock_is_held(db):
    set_owner(db, "s", "elsewhere.example", 4242, "boot:1")
    assert statuses(db)["s"] == "abandoned"  # no lock file
    lock = SessionLock.acquire(db, "s")  # held through its own open file: as another host's process would
    try:
        assert statuses(db)["s"] == "running"
    finally:
        lock.release()
    open(lock_path(db, "s"), "w").close()  # a killed process leaves its file, unlocked
    assert statuses(db)["s"] == "abandoned"


def test_a_session_closed_while_being_read_reads_closed(db, monkeypatch):
    """The owner closes the row between the reader's snapshot and its look at the process: the reader reads
    the row again rather than calling a finished session abandoned."""
    import cryptorsi.storage.store as store_module

    real = store_module.running_or_abandoned

    def closing_meanwhile(*args):
        conn = open_database(db)
        SessionWriter(conn).finish_session("s", "completed", STARTED + pd.Timedelta(minutes=3))
        conn.close()
        return real(*args)

    monkeypatch.setattr(store_module, "running_or_abandoned", closing_meanwhile)
    sessions = Store(db).sessions().set_index("session_id")
    assert sessions.loc["s", "status"] == "completed"
    assert sessions.loc["s", "finished_at"] == STARTED + pd.Timedelta(minutes=3)


def schema_4_database(path) -> None:
    """A database as the previous version (schema 4) made it, with a completed and a running session."""
    conn = sqlite3.connect(path)
    for version in (1, 2, 3, 4):
        for sql in MIGRATIONS[version]:
            conn.execute(sql)
    conn.execute("PRAGMA user_version = 4")
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    conn.execute("INSERT INTO cryptorsi_meta VALUES ('application', 'cryptorsi'), ('schema_version', '4')")
    conn.executemany("INSERT INTO sessions (session_id, started_at, finished_at, status, config, source, message) "
                     "VALUES (?, ?, ?, ?, '{\"source\": \"sample\"}', 'sample', NULL)",
                     [("old-done", "2025-01-01T00:00:00.000000Z", "2025-01-01T00:01:00.000000Z", "completed"),
                      ("old-killed", "2025-01-02T00:00:00.000000Z", None, "running")])
    conn.commit()
    conn.close()


def test_schema_4_databases_migrate_and_their_running_sessions_read_abandoned(tmp_path):
    path = str(tmp_path / "v4.db")
    schema_4_database(path)
    assert statuses(path) == {"old-done": "completed", "old-killed": "abandoned"}  # read before any migration
    conn = open_database(path)  # migrates 4 -> 5
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 5
    assert conn.execute("SELECT session_id, status, host, pid, process_start FROM sessions ORDER BY started_at"
                        ).fetchall() == [("old-done", "completed", None, None, None),
                                         ("old-killed", "running", None, None, None)]
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    with pytest.raises(sqlite3.IntegrityError):  # `abandoned` is read, never stored
        conn.execute("UPDATE sessions SET status = 'abandoned'")
    conn.close()
    assert statuses(path) == {"old-done": "completed", "old-killed": "abandoned"}


# A `cryptorsi run` that blocks for good on its first correlation save: a run in progress, for as long as needed.
STUCK_RUN = """
import sys, threading
from cryptorsi.storage.database import SessionWriter
from cryptorsi.cli import main

def stuck(self, *args, **kwargs):
    print("stuck", flush=True)
    threading.Event().wait()

SessionWriter.save_correlation = stuck
sys.exit(main(["run", "--source", "sample", "--top", "12", "--timeframes", "1d", "--weeks", "12", "--no-progress",
               "--db", sys.argv[1]]))
"""


def stuck_run(db) -> tuple[subprocess.Popen, str]:
    """A `cryptorsi run` process blocked mid-run, and its session id."""
    before = set(statuses(db)) if os.path.exists(db) else set()
    proc = subprocess.Popen([sys.executable, "-c", STUCK_RUN, db], stdout=subprocess.PIPE, text=True)
    seen = []
    for line in proc.stdout:  # the results table may come first: the console display does not wait for the database
        if line.strip() == "stuck":
            break
        seen.append(line)
    else:
        raise AssertionError(f"the run ended ({proc.wait()}) without reaching its first correlation save: {seen}")
    (session_id,) = set(statuses(db)) - before
    return proc, session_id


def test_killed_run_reads_abandoned_while_a_concurrent_run_reads_running(tmp_path, capsys):
    db = str(tmp_path / "shared.db")
    first, first_id = stuck_run(db)
    second = None
    try:
        second, second_id = stuck_run(db)
        assert statuses(db) == {first_id: "running", second_id: "running"}
        first.kill()
        first.wait()
        assert statuses(db) == {first_id: "abandoned", second_id: "running"}
        assert main(["query", "sessions", "--db", db, "--format", "json"]) == 0
        rows = json.loads(capsys.readouterr().out)
        assert [(r["session_id"], r["status"]) for r in rows] == [(first_id, "abandoned"), (second_id, "running")]
        # the same process seen from another host: its lock says it runs
        set_owner(db, second_id, "elsewhere.example", second.pid, None)
        assert statuses(db)[second_id] == "running"
    finally:
        for proc in (first, second):
            if proc is not None:
                proc.kill()
                proc.wait()
                proc.stdout.close()
    assert statuses(db) == {first_id: "abandoned", second_id: "abandoned"}
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()


# Whether another process could take SQLite's SHARED lock byte range of a database exclusively: "free" once no
# connection of ours holds its shared lock.
LOCK_PROBE = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
try:
    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 510, 1073741826)
    print("free")
except OSError:
    print("held")
"""


def test_looking_at_a_database_keeps_the_locks_of_its_open_connections(tmp_path):
    """POSIX locks belong to the process: closing any descriptor of the file drops them all, SQLite's included.
    A run whose connections lost their shared lock could have its WAL checkpointed and deleted under it by another
    process: two concurrent runs corrupted the database. inspect_database (every open_database, CandleCache and
    Store) must not drop them."""
    from cryptorsi.storage.database import inspect_database

    path = str(tmp_path / "locked.db")

    def probe() -> str:
        return subprocess.run([sys.executable, "-c", LOCK_PROBE, path], capture_output=True, text=True,
                              check=True).stdout.strip()

    conn = open_database(path)
    try:
        conn.execute("SELECT count(*) FROM sessions").fetchone()
        assert probe() == "held"
        for _ in range(3):
            inspect_database(path)
            Store(path).sessions()
        assert probe() == "held"
    finally:
        conn.close()
    assert probe() == "free"
