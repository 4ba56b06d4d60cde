"""The analysis over Redis Streams with `cryptorsi worker` processes equals the in-memory analysis."""

import io
import os
import signal
import subprocess
import sys
import threading
import uuid

import numpy as np
import pandas as pd
import pytest

import cryptorsi as cr
from conftest import cryptorsi_threads
from cryptorsi.cli import main
from cryptorsi.events import ProgressUpdated

TIMEFRAMES = ("1h", "4h", "1d")


def config(db, **changes):
    values = dict(source="sample", top_n_coins=60, timeframes=TIMEFRAMES, weeks=30, db_path=str(db))
    return cr.AnalysisConfig(**(values | changes))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    db = tmp_path_factory.mktemp("memory") / "memory.db"
    return cr.run_analysis(config(db), progress=False, stream=io.StringIO())


def start_worker(bus_url):
    proc = subprocess.Popen([sys.executable, "-m", "cryptorsi", "worker", "--bus", bus_url, "--agents", "fetcher,rsi"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    banner = proc.stdout.readline()  # printed once the worker's consumers are running
    assert banner.startswith("cryptorsi worker: serving fetcher,rsi"), (banner, proc.stderr.read())
    return proc


def stop_worker(proc):
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    return out


def assert_same(result, reference):
    ours = result.correlations.set_index(["coin_id", "timeframe"]).sort_index()
    ref = reference.correlations.set_index(["coin_id", "timeframe"]).sort_index()
    assert ours.index.equals(ref.index)  # same rows, none twice
    assert np.max(np.abs(ours["correlation"] - ref["correlation"])) <= 1e-12
    assert (ours["n_points"] == ref["n_points"]).all() and (ours["low_cap"] == ref["low_cap"]).all()
    pd.testing.assert_frame_equal(result.failures.drop(columns="reason"), reference.failures.drop(columns="reason"))


def tasks_done(worker_output):
    """'cryptorsi worker: stopped (DataFetcher 57 tasks, RSICalculator 60 tasks)' -> {'DataFetcher': 57, ...}"""
    inside = worker_output.strip().splitlines()[-1].split("(", 1)[1].split(")")[0]
    return {part.split()[0]: int(part.split()[1]) for part in inside.split(", ")}


def test_two_workers_share_the_work_and_the_results_are_exact(tmp_path, redis_url, reference, no_thread_leak):
    bus = f"{redis_url}?namespace=t-{uuid.uuid4().hex[:8]}"
    workers = [start_worker(bus) for _ in range(2)]
    try:
        result = cr.run_analysis(config(tmp_path / "redis.db", bus_url=bus), progress=False, stream=io.StringIO())
    finally:
        outputs = [stop_worker(w) for w in workers]
    assert_same(result, reference)
    assert cr.Store(str(tmp_path / "redis.db")).sessions().iloc[-1]["status"] == "completed"
    for output in outputs:
        done = tasks_done(output)
        assert done["DataFetcher"] > 0 and done["RSICalculator"] > 0, output


def test_a_worker_killed_mid_run_loses_nothing(tmp_path, redis_url, reference, no_thread_leak):
    bus = f"{redis_url}?namespace=k-{uuid.uuid4().hex[:8]}&claim_idle_ms=2000"
    workers = [start_worker(bus) for _ in range(2)]
    runner = cr.Runner(config(tmp_path / "killed.db", bus_url=bus), stream=io.StringIO(), agents=("rsi",))
    progressed = threading.Event()
    total = {}
    runner.add_listener(ProgressUpdated, lambda e: (total.__setitem__(e.timeframe, e.done),
                                                    progressed.set() if sum(total.values()) >= 20 else None))
    try:
        runner.start()
        assert progressed.wait(60), "the run made no progress"
        workers[0].send_signal(signal.SIGKILL)  # fetch work it held is claimed by the other worker
        workers[0].wait(10)
        result = runner.wait(120)
    finally:
        runner.stop()
        stop_worker(workers[1])
        workers[0].kill()
        workers[0].wait(10)
    assert_same(result, reference)


def test_worker_command_errors(capsys, redis_url):
    assert main(["worker", "--bus", "memory://"]) == 2
    assert "--bus" in capsys.readouterr().err
    assert main(["worker", "--bus", redis_url, "--agents", "database"]) == 2
    assert "--agents" in capsys.readouterr().err
    assert main(["worker", "--bus", "redis://127.0.0.1:1/0"]) == 1  # nothing listens on port 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "127.0.0.1:1" in err
    assert not cryptorsi_threads()
