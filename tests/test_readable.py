"""What a person reads: ages instead of epochs, no ``None`` cells, the benchmark shown once and apart from the
coins compared with it, and ``query sessions`` within 120 columns."""

from __future__ import annotations

import io
import json

import pandas as pd
import pytest

import cryptorsi as cr
from cryptorsi.agents.display import format_results
from cryptorsi.agents.status_server import _page
from cryptorsi.cli import SESSIONS_WIDTH, main
from cryptorsi.notebook.report import result_html, results_frame
from cryptorsi.notebook.widgets import _agents_html
from cryptorsi.storage import SessionWriter, open_database
from cryptorsi.tables import ago

NOW = 1_796_396_147.529209


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    db = tmp_path_factory.mktemp("readable") / "sample.db"
    return cr.run_analysis(cr.AnalysisConfig(source="sample", top_n_coins=20, timeframes="4h,1d", weeks=20,
                                             db_path=str(db)), progress=False, stream=io.StringIO())


def test_ages_read_as_durations():
    assert ago(NOW - 2.1, NOW) == "2.1 s ago"
    assert ago(NOW - 185, NOW) == "3 min 5 s ago"
    assert ago(NOW - 7_440, NOW) == "2 h 4 min ago"
    assert ago(NOW + 1, NOW) == "0.0 s ago"  # a clock a little ahead is not "in the future"
    assert ago(None, NOW) == ""


STATUS = {"session_id": "20261204-101500-abcd", "state": "running", "synthetic": False, "failures": 0,
          "progress": {"1h": {"done": 3, "total": 10, "failed": 0}},
          "agents": {"DatabaseManager": {"queue": 2, "busy": 1, "tasks_done": 40, "errors": 0,
                                         "last_activity": NOW - 2.1, "alive": True},
                     "StatusServer": {"queue": 0, "busy": 0, "tasks_done": 1, "errors": 0, "last_activity": None,
                                      "alive": True},
                     "ServiceBus": {"queue": 5, "alive": True}}}


def test_status_page_shows_ages_and_no_none():
    page = _page(STATUS, now=NOW)
    assert "2.1 s ago" in page and str(NOW - 2.1) not in page
    assert "None" not in page
    assert "<tr><td>ServiceBus</td><td>5</td><td></td><td></td><td></td><td></td></tr>" in page


def test_status_widget_shows_ages_and_no_none():
    html = _agents_html(STATUS["agents"], NOW)
    assert "2.1 s ago" in html and "None" not in html


def test_console_report_shows_the_benchmark_once_apart(result):
    text = format_results(result.correlations, result.failures, threshold=0.7,
                          low_cap_threshold=result.low_cap_threshold, synthetic=True, benchmark="BTC")
    lines = text.splitlines()
    bench = result.correlations[result.correlations["symbol"] == "BTC"]
    assert len(bench) == 2  # the data keep it: one row per timeframe
    assert lines[2] == (f"Benchmark: BTC (market cap {bench['market_cap'].iloc[0]:,.0f}; RSI points "
                        f"4h {bench['n_points'].iloc[0]:,}, 1d {bench['n_points'].iloc[1]:,})")
    assert sum("BTC" in line for line in lines) == 1
    summary = pd.read_fwf(io.StringIO("\n".join(lines[5:8])))
    coins = result.correlations[result.correlations["symbol"] != "BTC"]
    assert summary["analysed"].tolist() == coins.groupby("timeframe", sort=False).size().tolist()


def test_notebook_table_shows_the_benchmark_once_apart(result):
    frame = results_frame(result)
    assert "BTC" not in set(frame["symbol"]) and len(frame) == len(result.correlations) - 2
    assert set(results_frame(result, include_benchmark=True)["symbol"]) >= {"BTC"}
    assert (result.correlations["symbol"] == "BTC").sum() == 2  # the public DataFrame is unchanged
    html = result_html(result, max_rows=None)
    assert html.count(">BTC<") == 0 and html.count("Benchmark: BTC/USDC (market cap") == 1


def test_query_correlations_hides_the_benchmark_unless_asked(result, capsys):
    db = result.config.db_path
    assert main(["query", "correlations", "--db", db, "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == len(result.correlations) - 2 and "BTC" not in {r["symbol"] for r in rows}
    assert main(["query", "correlations", "--db", db, "--format", "json", "--include-benchmark"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == len(result.correlations)
    assert main(["query", "correlations", "--db", db]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "correlations with the benchmark BTC (its own rows: --include-benchmark)"
    assert not [line for line in out[1:] if " BTC " in line]
    assert "NaN" not in "\n".join(out) and "None" not in "\n".join(out)


def test_query_sessions_fits_120_columns_and_json_has_the_whole_config(result, tmp_path, capsys):
    db = str(tmp_path / "many.db")
    conn = open_database(db)
    writer = SessionWriter(conn)
    started = pd.Timestamp("2026-12-01T09:00", tz="UTC")
    long_path = "/very/long/path/to/a/folder/of/databases/that/goes/on/and/on/" + "x" * 60 + ".db"
    for i, (status, message) in enumerate([("completed", None), ("failed", f"cannot write to {long_path}: "
                                                                            "database or disk is full"),
                                           ("interrupted", "stopped before completion"), ("running", None)]):
        config = result.config.replace(top_n_coins=250, timeframes="1h,4h,1d", rsi_method="sma").to_dict()
        writer.start_session(f"20261201-09000{i}-abcd", started + pd.Timedelta(minutes=i), config)
        if status != "running":
            writer.finish_session(f"20261201-09000{i}-abcd", status, started + pd.Timedelta(minutes=i, seconds=75),
                                  message)
    conn.close()
    assert main(["query", "sessions", "--db", db]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert max(map(len, lines)) <= SESSIONS_WIDTH, out
    assert lines[0].split() == ["session", "started", "(UTC)", "took", "status", "coins", "corr", "fail",
                                "parameters"]
    assert "sample top 250 1h,4h,1d 20w RSI14 sma" in lines[1] and "1.2 min" in lines[1]
    assert lines[3].startswith("  cannot write to /very/long/path") and lines[3].endswith("…")
    assert "abandoned" in lines[-2] and "ended without closing the session" in lines[-1]  # written, not owned
    assert "None" not in out and "{" not in out
    assert main(["query", "sessions", "--db", db, "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["config"]["timeframes"] == ["1h", "4h", "1d"] and rows[0]["config"]["rsi_method"] == "sma"
    assert rows[1]["message"].endswith("database or disk is full") and len(rows[1]["message"]) > SESSIONS_WIDTH
