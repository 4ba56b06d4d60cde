"""The command line: exit codes, one-line errors, corrupt databases left untouched."""

import json
import os
import sqlite3
import subprocess
import sys

import pytest

from cryptorsi.cli import main

SMALL = ["--source", "sample", "--top", "12", "--timeframes", "4h,1d", "--weeks", "12", "--no-progress"]


@pytest.mark.parametrize(
    "option, value, named",
    [
        ("--top", "0", "--top"),
        ("--timeframes", "7x", "--timeframes"),
        ("--rsi-period", "1", "--rsi-period"),
        ("--threshold", "1.5", "--threshold"),
        ("--low-cap-percentile", "101", "--low-cap-percentile"),
        ("--weeks", "-3", "--weeks"),
        ("--source", "nowhere", "--source"),
        ("--rsi-method", "magic", "--rsi-method"),
        ("--binance-url", "not-a-url", "--binance-url"),
        ("--status-port", "99999", "--status-port"),
        ("--requests-in-flight", "0", "--requests-in-flight"),
    ],
)
def test_bad_option_values_exit_2_with_one_line_naming_the_option(tmp_path, capsys, option, value, named):
    db = tmp_path / "x.db"
    code = main(["run", "--source", "sample", "--db", str(db), option, value])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and named in err and "Traceback" not in err
    assert not db.exists()


def test_unknown_option_and_command_exit_2(capsys):
    assert main(["run", "--frobnicate", "3"]) == 2
    assert "--frobnicate" in capsys.readouterr().err
    assert main(["explode"]) == 2
    assert main(["query", "nonsense", "--db", "x.db"]) == 2


def test_run_then_query(tmp_path, capsys):
    db = str(tmp_path / "cli.db")
    assert main(["run", *SMALL, "--db", db]) == 0
    out = capsys.readouterr().out
    assert "SYNTHETIC" in out and "session " in out
    assert main(["query", "sessions", "--db", db, "--format", "json"]) == 0
    sessions = json.loads(capsys.readouterr().out)
    assert len(sessions) == 1 and sessions[0]["status"] == "completed"
    assert main(["query", "correlations", "--db", db, "--format", "csv"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("coin_id,symbol,timeframe,correlation,n_points,market_cap,low_cap")
    assert len(lines) > 10
    assert main(["query", "prices", "--db", db, "--symbol", "btc", "--timeframe", "1d"]) == 0
    assert "close" in capsys.readouterr().out
    assert main(["query", "prices", "--db", db]) == 2  # needs --symbol and --timeframe
    assert main(["query", "correlations", "--db", db, "--session", "nope"]) == 2
    assert "nope" in capsys.readouterr().err


def garbage_files(tmp_path):
    random_bytes = tmp_path / "random.db"
    random_bytes.write_bytes(os.urandom(8192))
    text = tmp_path / "notes.db"
    text.write_text("these are my notes, not a database\n")
    other = tmp_path / "other.db"

    conn = sqlite3.connect(other)
    conn.execute("create table recipes (name text)")
    conn.execute("insert into recipes values ('bread')")
    conn.commit()
    conn.close()
    return [random_bytes, text, other]


@pytest.mark.parametrize("command", [["run", *SMALL], ["run", "--source", "cache", "--no-progress"],
                                     ["query", "correlations"]])
def test_foreign_database_is_reported_and_left_byte_identical(tmp_path, capsys, command):
    for path in garbage_files(tmp_path):
        before = path.read_bytes()
        code = main([*command, "--db", str(path)])
        err = capsys.readouterr().err
        assert code == 1, (path, err)
        assert err.count("\n") == 1 and "Traceback" not in err and path.name in err
        assert path.read_bytes() == before
        assert not (tmp_path / (path.name + "-wal")).exists() and not (tmp_path / (path.name + "-shm")).exists()


def test_console_script_runs_as_a_process(tmp_path):
    db = tmp_path / "proc.db"
    proc = subprocess.run([sys.executable, "-m", "cryptorsi", "run", *SMALL, "--db", str(db)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "SYNTHETIC" in proc.stdout
    # the process leaves without the interpreter's module teardown (cli.console_main): everything was written
    # and flushed before, the last line of the output included, and the database was closed complete
    assert proc.stdout.rstrip().splitlines()[-1].startswith("session ") and "saved to" in proc.stdout
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("SELECT status FROM sessions").fetchall() == [("completed",)]
    bad = subprocess.run([sys.executable, "-m", "cryptorsi", "run", "--top", "0"], capture_output=True, text=True,
                         timeout=60)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "--top" in bad.stderr


def test_a_reader_that_goes_away_ends_the_output_quietly(tmp_path):
    """``cryptorsi query ... | head``: no "Broken pipe" error line on stderr."""
    import subprocess
    import sys

    db = tmp_path / "pipe.db"
    assert main(["run", "--source", "sample", "--top", "12", "--timeframes", "1h", "--weeks", "20", "--db", str(db),
                 "--no-progress"]) == 0
    # ~3,400 rows of prices: more than a pipe holds, so the command is still writing when the reader leaves
    proc = subprocess.Popen([sys.executable, "-m", "cryptorsi", "query", "prices", "--symbol", "BTC", "--timeframe",
                             "1h", "--db", str(db), "--format", "csv"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = proc.stdout.readline()
    proc.stdout.close()  # as head does once it has its lines
    err = proc.stderr.read().decode()
    proc.wait(timeout=120)
    assert first.startswith(b"open_time,") and err == "", err
