"""Kernel safety of the Runner: stop at random moments, nothing leaks, the database stays sound."""

import io
import random
import sqlite3
import threading

import pytest

import cryptorsi as cr
from conftest import cryptorsi_threads
from cryptorsi.events import ProgressUpdated, ResultsSaved


def config(db, **changes):
    values = dict(source="sample", top_n_coins=25, timeframes=("1h", "4h", "1d"), weeks=20, db_path=str(db))
    return cr.AnalysisConfig(**(values | changes))


def test_twenty_start_stop_cycles_at_random_moments(tmp_path):
    db = tmp_path / "cycles.db"
    rng = random.Random(20261129)
    statuses = {}
    for cycle in range(20):
        target = rng.randrange(0, 25 * 3)  # stop after this many coin/timeframe pairs finished
        reached = threading.Event()
        runner = cr.Runner(config(db), stream=io.StringIO())
        runner.add_listener(ProgressUpdated, lambda e, t=target, r=reached, seen={}: (
            seen.__setitem__(e.timeframe, e.done), r.set() if sum(seen.values()) >= t else None))
        runner.add_listener(ResultsSaved, lambda e, r=reached: r.set())  # a target beyond the run's pairs: its end
        runner.start()
        if target:
            assert reached.wait(60)
        assert runner.stop(30.0)  # True: every thread joined within the timeout
        assert not cryptorsi_threads(), [t.name for t in cryptorsi_threads()]
        statuses[runner.session_id] = runner.state
    store = cr.Store(str(db))
    sessions = store.sessions().set_index("session_id")
    assert set(sessions.index) == set(statuses)
    for session_id, state in statuses.items():
        stored = sessions.loc[session_id, "status"]
        assert stored == state, (session_id, stored, state)
        assert stored in ("interrupted", "completed"), stored
    assert (sessions["status"] == "interrupted").sum() >= 10
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("pragma integrity_check").fetchone()[0] == "ok"
    finally:
        conn.close()
    # a full run afterwards works, from the candles the interrupted runs cached
    result = cr.run_analysis(config(db), progress=False, stream=io.StringIO())
    assert store.sessions().iloc[-1]["status"] == "completed"
    assert len(result.correlations) + len(result.failures) == len(store.coins(result.session_id)) * 3
    assert not cryptorsi_threads()


def test_a_new_runner_stops_the_previous_one(tmp_path, no_thread_leak):
    first = cr.Runner(config(tmp_path / "a.db"), stream=io.StringIO()).start()
    second = cr.Runner(config(tmp_path / "b.db"), stream=io.StringIO()).start()
    assert first.state in ("interrupted", "completed")
    names = [t.name for t in cryptorsi_threads()]
    assert len(names) == len(set(names)), names  # one set of agents
    second.stop()
    with pytest.raises(cr.RunInterrupted):
        first.wait(1)


def test_stop_all_and_context_manager(tmp_path, no_thread_leak):
    with cr.Runner(config(tmp_path / "c.db"), stream=io.StringIO()) as runner:
        assert runner.state == "running"
        assert runner.status()["agents"]["DatabaseManager"]["alive"]
    assert runner.state in ("interrupted", "completed")
    cr.Runner(config(tmp_path / "d.db"), stream=io.StringIO()).start()
    assert cr.stop_all(30.0)


def test_status_server_serves_json_and_html(tmp_path, no_thread_leak):
    import json
    import urllib.request

    runner = cr.Runner(config(tmp_path / "s.db", status_port=0, top_n_coins=10), stream=io.StringIO()).start()
    try:
        server = next(a for a in runner._agents if a.name == "StatusServer")
        with urllib.request.urlopen(server.url + "/status.json", timeout=5) as answer:
            status = json.load(answer)
        assert status["session_id"] == runner.session_id and "DatabaseManager" in status["agents"]
        with urllib.request.urlopen(server.url + "/", timeout=5) as answer:
            page = answer.read().decode()
        assert "cryptorsi" in page and "Synthetic" in page
        assert server.url.startswith("http://127.0.0.1:")
        runner.wait(60)
    finally:
        runner.stop()
