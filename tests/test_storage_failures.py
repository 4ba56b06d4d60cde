"""A database that stops taking writes ends the run: one line with the file and the cause, nothing stored lost.

Each failure is a real one from SQLite: a database at its size limit (``PRAGMA max_page_count``: "database or
disk is full"), a read-only connection, a lock held by another connection past the busy timeout, a file made
immutable during the run (``chattr +i``: "disk I/O error"), and, where the machine allows mounting, a full
filesystem under the ``cryptorsi`` command.
"""

from __future__ import annotations

import io
import logging
import os
import shutil
import sqlite3
import subprocess
import sys
import threading

import pytest

import cryptorsi as cr
from cryptorsi.events import ProgressUpdated
from cryptorsi.storage import Store
from cryptorsi.storage import database

pytestmark = pytest.mark.usefixtures("no_thread_leak")

WAIT = 120  # seconds a failing run may take at most before the test fails (it ends in a few)


def sample(db, **changes) -> cr.AnalysisConfig:
    values = dict(source="sample", top_n_coins=12, timeframes="4h,1d", weeks=12, db_path=str(db))
    return cr.AnalysisConfig(**(values | changes))


def stored(db) -> dict:
    """What a first session left in ``db``: its row and every candle, to compare after a failed run."""
    conn = sqlite3.connect(db)
    try:
        return {"sessions": conn.execute("SELECT * FROM sessions ORDER BY started_at").fetchall(),
                "candles": conn.execute("SELECT * FROM candles ORDER BY exchange, pair, timeframe, open_time")
                .fetchall()}
    finally:
        conn.close()


def integrity(db) -> str:
    conn = sqlite3.connect(db)
    try:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        conn.close()


@pytest.fixture()
def first(tmp_path):
    """A database holding one completed session, and what it holds."""
    db = tmp_path / "crypto_data.db"
    cr.run_analysis(sample(db), progress=False, stream=io.StringIO())
    return db, stored(db)


def fail_run(config, caplog, runner_hook=None) -> tuple[str, cr.Runner]:
    runner = cr.Runner(config, stream=io.StringIO())
    if runner_hook is not None:
        runner_hook(runner)
    with caplog.at_level(logging.WARNING, logger="cryptorsi"):
        with pytest.raises(cr.RunFailed) as failed:
            runner.start()
            runner.wait(timeout=WAIT)
    return str(failed.value), runner


def assert_kept(db, before) -> None:
    assert integrity(db) == "ok"
    after = stored(db)
    assert after["sessions"][: len(before["sessions"])] == before["sessions"]
    assert set(before["candles"]) <= set(after["candles"])


def logged_causes(caplog, cause: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and cause in r.getMessage()]


def test_a_full_database_ends_the_run_once_and_marks_the_session_failed(first, monkeypatch, caplog):
    db, before = first
    real = database.open_database

    def at_its_limit(path, **kwargs):
        conn = real(path, **kwargs)
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count = {pages + 40}")  # ~160 kB more, far less than the run writes
        return conn

    monkeypatch.setattr(database, "open_database", at_its_limit)
    reason, runner = fail_run(sample(db, top_n_coins=40, timeframes="1h,4h", weeks=30), caplog)
    assert reason == f"cannot write to {db}: database or disk is full"
    assert runner.state == "failed"
    assert len(logged_causes(caplog, "full")) == 1  # one line for the cause, not one per task
    assert_kept(db, before)
    sessions = Store(db).sessions()
    assert sessions["status"].tolist() == ["completed", "failed"]
    assert sessions["message"].iloc[-1] == reason


def test_a_read_only_connection_ends_the_run(first, monkeypatch, caplog):
    db, before = first
    real = database.open_database

    def read_only(path, **kwargs):
        real(path, **kwargs).close()  # the schema is there; the writer then gets a read-only handle
        return sqlite3.connect(f"{database._uri(os.fspath(path))}?mode=ro", uri=True, isolation_level=None)

    monkeypatch.setattr(database, "open_database", read_only)
    reason, _ = fail_run(sample(db), caplog)
    assert reason == f"cannot write to {db}: attempt to write a readonly database"
    assert len(logged_causes(caplog, "readonly")) == 1
    assert_kept(db, before)
    assert Store(db).sessions()["session_id"].tolist() == [row[0] for row in before["sessions"]]  # never started


def test_a_lock_held_past_the_busy_timeout_ends_the_run(first, monkeypatch, caplog):
    db, before = first
    monkeypatch.setattr(database, "BUSY_TIMEOUT", 0.2)
    other = sqlite3.connect(db, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # another process writing, for longer than the writer waits
        reason, _ = fail_run(sample(db), caplog)
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert reason == f"cannot write to {db}: database is locked"
    assert len(logged_causes(caplog, "locked")) == 1
    assert_kept(db, before)


def _chattr(flag: str, *paths) -> bool:
    tool = shutil.which("chattr")
    return tool is not None and all(
        subprocess.run([tool, flag, p], capture_output=True).returncode == 0 for p in paths if os.path.exists(p))


def test_a_file_made_immutable_during_the_run_is_an_io_error(first, caplog):
    db, before = first
    probe = db.parent / "probe"
    probe.touch()
    if not _chattr("+i", str(probe)):
        pytest.skip("chattr +i is not available here (needs root and a filesystem with attributes)")
    _chattr("-i", str(probe))
    files = [str(db), f"{db}-wal"]
    frozen = threading.Event()

    def freeze_once(runner):
        def on_progress(event):  # the bus thread: the run is under way
            if not frozen.is_set():
                frozen.set()
                _chattr("+i", *files)
        runner.add_listener(ProgressUpdated, on_progress)

    try:
        reason, _ = fail_run(sample(db, top_n_coins=30, timeframes="1h,4h,1d", weeks=30), caplog, freeze_once)
    finally:
        _chattr("-i", *files)
    assert frozen.is_set()
    assert reason == f"cannot write to {db}: disk I/O error"
    assert len(logged_causes(caplog, "disk I/O error")) == 1
    assert_kept(db, before)


@pytest.fixture()
def small_filesystem(tmp_path):
    """A 6 MB tmpfs mounted for the test (root only; skipped where mounting is not allowed)."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mnt)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mnt
    finally:  # lazy: this process keeps a read-only descriptor of a database it looked at (see _read_header)
        subprocess.run(["umount", "-l", str(mnt)], check=True)


def test_the_command_exits_1_with_one_line_when_the_disk_fills(small_filesystem):
    db = small_filesystem / "F.db"
    command = [sys.executable, "-m", "cryptorsi", "run", "--source", "sample", "--timeframes", "1d", "--no-progress",
               "--db", str(db)]
    subprocess.run(command + ["--top", "10", "--weeks", "5"], check=True, capture_output=True, timeout=WAIT)
    before = stored(db)
    done = subprocess.run(command + ["--top", "60", "--timeframes", "1h,4h,1d", "--weeks", "50"],
                          capture_output=True, text=True, timeout=WAIT)
    lines = done.stderr.splitlines()
    assert done.returncode == 1, done.stderr
    assert 1 <= len(lines) <= 5
    assert [line for line in lines if str(db) in line and "database or disk is full" in line], lines
    assert_kept(db, before)
    assert Store(db).sessions()["status"].iloc[-1] in ("failed", "abandoned")  # failed when that row still fit
