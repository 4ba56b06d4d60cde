"""The ``cryptorsi`` command: ``run`` an analysis, ``query`` stored results.

Exit codes: 0 the command completed (per-coin failures are listed, not fatal); 2 invalid options or
config (one line naming the option); 1 the run could not complete (one line with the cause; the
traceback only with ``--verbose``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence

__all__ = ["main"]

#: AnalysisConfig field -> the option that sets it, to name the option in error messages
OPTION_OF_FIELD = {
    "top_n_coins": "--top",
    "timeframes": "--timeframes",
    "weeks": "--weeks",
    "end": "--end",
    "rsi_period": "--rsi-period",
    "rsi_method": "--rsi-method",
    "correlation_threshold": "--threshold",
    "low_cap_percentile": "--low-cap-percentile",
    "quote": "--quote",
    "benchmark": "--benchmark",
    "source": "--source",
    "db_path": "--db",
    "bus_url": "--bus",
    "status_port": "--status-port",
    "exchange": "--exchange",
    "exchange_url": "--exchange-url",
    "binance_url": "--binance-url",
    "coingecko_url": "--coingecko-url",
    "coingecko_api_key": "--coingecko-api-key",
    "min_overlap": "--min-overlap",
    "requests_in_flight": "--requests-in-flight",
    "max_lag": "--max-lag",
    "rolling_window": "--rolling-window",
    "min_stability": "--min-stability",
}
QUERIES = ("sessions", "correlations", "selected", "failures", "coins", "prices", "rsi")


class UsageError(Exception):
    """Bad command-line usage: exit 2 with one line."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, no usage block
        raise UsageError(message)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="cryptorsi", description="Which coins have an RSI that moves with Bitcoin's?")
    parser.add_argument("--verbose", "-v", action="store_true", help="log progress and show tracebacks")
    commands = parser.add_subparsers(dest="command", metavar="{run,query,worker}", parser_class=_Parser)
    commands.required = True

    run = commands.add_parser("run", help="run an analysis")
    run.add_argument("--source", default="live", help="live | sample | cache (default: live)")
    run.add_argument("--top", dest="top_n_coins", default="200", help="top N coins by market cap (default 200)")
    run.add_argument("--timeframes", default="1h,1d", help="comma-separated, e.g. 1h,4h,1d (default 1h,1d)")
    run.add_argument("--weeks", default="50", help="weeks of candles (default 50)")
    run.add_argument("--end", default=None, help="UTC end of the window, e.g. 2025-06-30 (default: now)")
    run.add_argument("--rsi-period", dest="rsi_period", default="14", help="RSI period (default 14)")
    run.add_argument("--rsi-method", dest="rsi_method", default="wilder", help="wilder | sma (default wilder)")
    run.add_argument("--threshold", dest="correlation_threshold", default="0.7",
                     help="|correlation| needed to select a coin (default 0.7)")
    run.add_argument("--low-cap-percentile", dest="low_cap_percentile", default="25",
                     help="market-cap percentile at or below which a coin is low cap (default 25)")
    run.add_argument("--quote", default=None, help="quote asset, or a preference list such as USDC,USDT "
                                                   "(default: USDC; USD,USDC on coinbase and kraken)")
    run.add_argument("--benchmark", default="BTC", help="benchmark coin (default BTC)")
    run.add_argument("--db", dest="db_path", default="crypto_data.db", help="SQLite file (default crypto_data.db)")
    run.add_argument("--bus", dest="bus_url", default="memory://", help="memory:// or redis://host:port/db")
    run.add_argument("--status-port", dest="status_port", default=None,
                     help="serve a status page on 127.0.0.1:PORT (0: any free port)")
    run.add_argument("--exchange", default=None, help="a ccxt exchange id with candles: binance (default), "
                                                      "binanceus, okx, bybit, coinbase, kraken...")
    run.add_argument("--exchange-url", dest="exchange_url", default=None,
                     help="the exchange's API root URL (mirrors, tests; default: its public host)")
    run.add_argument("--binance-url", dest="binance_url", default=None,
                     help="the same as --exchange-url, for binance and binanceus")
    run.add_argument("--coingecko-url", dest="coingecko_url", default=None, help="CoinGecko root URL")
    run.add_argument("--coingecko-api-key", dest="coingecko_api_key", default=None,
                     help="CoinGecko API key (default: $COINGECKO_API_KEY); never stored")
    run.add_argument("--include-stablecoins", dest="include_stablecoins", action="store_true",
                     help="keep stablecoins and wrapped tokens")
    run.add_argument("--requests-in-flight", dest="requests_in_flight", default=None,
                     help="live: most exchange requests in flight at once, within the weight budget (default 10)")
    run.add_argument("--min-overlap", dest="min_overlap", default="30",
                     help="fewest common candles for a correlation (default 30)")
    run.add_argument("--max-lag", dest="max_lag", default="12",
                     help="lead-lag: try lags -N..+N candles (default 12)")
    run.add_argument("--rolling-window", dest="rolling_window", default=None,
                     help="rolling correlation window in candles (default: 30 days of each timeframe)")
    run.add_argument("--min-stability", dest="min_stability", default=None,
                     help="select only coins whose rolling correlation reached the threshold in this share "
                          "of windows, 0-1 (default: off)")
    run.add_argument("--no-progress", dest="progress", action="store_false", default=None,
                     help="no progress bars")
    run.add_argument("--agents", dest="local_agents", default="fetcher,rsi",
                     help="agents this process hosts besides the orchestrator, database and display "
                          "(default fetcher,rsi; 'none' with --bus redis://... leaves them to workers)")

    worker = commands.add_parser("worker", help="host agents for analyses run over a Redis bus")
    worker.add_argument("--bus", dest="bus_url", required=True, help="redis://host:port/db[?namespace=NAME]")
    worker.add_argument("--agents", default="fetcher,rsi", help="fetcher,rsi (default both)")
    worker.add_argument("--threads", default="1", help="threads per agent (default 1)")
    worker.add_argument("--db", dest="db_path", default=None,
                        help="a local copy of the database to read cached candles from (optional)")
    worker.add_argument("--coingecko-api-key", dest="coingecko_api_key", default=None,
                        help="CoinGecko API key (default: $COINGECKO_API_KEY); never stored")

    query = commands.add_parser("query", help="show stored results")
    query.add_argument("what", metavar="WHAT", help="|".join(QUERIES))
    query.add_argument("--db", dest="db_path", default="crypto_data.db", help="SQLite file (default crypto_data.db)")
    query.add_argument("--session", default=None, help="session id (default: the latest)")
    query.add_argument("--symbol", default=None, help="coin ticker, for prices and rsi")
    query.add_argument("--timeframe", default=None, help="timeframe, for prices and rsi")
    query.add_argument("--exchange", default=None, help="only the sessions of this exchange, for sessions")
    query.add_argument("--format", default="table",
                       help="table | csv | json (default table; sessions: a short parameter summary in a table, "
                            "the whole config in csv and json)")
    query.add_argument("--include-benchmark", dest="include_benchmark", action="store_true",
                       help="correlations: list the benchmark's own rows too (its RSI against itself)")
    return parser


def console_main() -> None:
    """The ``cryptorsi`` command (and ``python -m cryptorsi``): :func:`main`, then exit with its code.

    A reader that goes away (``cryptorsi query ... | head``) ends the output quietly, as the Python docs advise
    for a command's own standard output (its later writes go to ``os.devnull``)."""
    try:
        code = main()
        sys.stdout.flush()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 1
    sys.exit(code)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``) and return its exit code (0, 1 or 2)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    verbose = "--verbose" in argv or "-v" in argv
    try:
        args = _parser().parse_args(argv)
    except UsageError as exc:
        return _fail(2, _which(argv), str(exc))
    _configure_logging(args.verbose)
    try:
        if args.command == "run":
            return _run(args)
        if args.command == "worker":
            return _worker(args)
        return _query(args)
    except UsageError as exc:
        return _fail(2, args.command, str(exc))
    except KeyboardInterrupt:
        print("cryptorsi: interrupted; the session is marked interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader of the output went away: nothing to report (see console_main)
        raise
    except Exception as exc:  # noqa: BLE001 - one line for the user, the traceback with --verbose
        if verbose:
            logging.getLogger("cryptorsi").exception("failed")
        return _fail(1, args.command, _one_line(exc))


def _run(args) -> int:
    from cryptorsi.config import AnalysisConfig
    from cryptorsi.errors import ConfigError
    from cryptorsi.runner import Runner, run_analysis

    values = {field: getattr(args, field) for field in OPTION_OF_FIELD if getattr(args, field, None) is not None}
    values["include_stablecoins"] = args.include_stablecoins
    try:
        config = AnalysisConfig(**values)
    except ConfigError as exc:
        raise _usage(exc) from None
    progress = sys.stderr.isatty() if args.progress is None else args.progress
    agents = () if args.local_agents.strip() == "none" else tuple(a.strip() for a in args.local_agents.split(",") if a.strip())
    try:
        runner = Runner(config, progress=progress, agents=agents)
    except ValueError as exc:
        raise UsageError(f"--{exc}") from None
    try:
        result = run_analysis(runner=runner)
    except ConfigError as exc:  # what only the source can judge: an exchange's timeframes, its history...
        raise _usage(exc) from None
    print(f"session {result.session_id} saved to {config.db_path} "
          f"({len(result.correlations)} correlations, {len(result.failures)} failures)")
    return 0


def _usage(exc) -> UsageError:
    """A ConfigError as the command line says it: naming the option instead of the config field."""
    return UsageError(f"{OPTION_OF_FIELD.get(exc.field, exc.field)}: {str(exc).split(': ', 1)[1]}")


def _worker(args) -> int:
    import signal
    import threading

    from cryptorsi.worker_process import WorkerProcess

    if not args.threads.isdigit():
        raise UsageError(f"--threads: must be a whole number >= 1, got {args.threads!r}")
    try:
        worker = WorkerProcess(args.bus_url, tuple(a.strip() for a in args.agents.split(",") if a.strip()),
                               threads=int(args.threads), db_path=args.db_path,
                               coingecko_api_key=args.coingecko_api_key)
    except ValueError as exc:
        raise UsageError(f"--{exc}") from None
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    worker.start()
    print(f"cryptorsi worker: serving {','.join(worker.agent_names)} on {worker.bus.safe_url} "
          f"(namespace {worker.bus.namespace}); stop with Ctrl-C or SIGTERM", flush=True)
    while not stop.wait(0.5):  # short waits: the signal handler runs between them
        pass
    done = ", ".join(f"{name} {status['tasks_done']} tasks" for name, status in worker.status().items())
    clean = worker.stop()
    print(f"cryptorsi worker: stopped ({done})" + ("" if clean else "; some threads did not end in time"), flush=True)
    return 0 if clean else 1


def _query(args) -> int:
    from cryptorsi.storage.store import Store

    if args.what not in QUERIES:
        raise UsageError(f"WHAT: unknown query {args.what!r}; use one of {', '.join(QUERIES)}")
    if args.format not in ("table", "csv", "json"):
        raise UsageError(f"--format: must be table, csv or json, got {args.format!r}")
    store = Store(args.db_path)
    try:
        if args.what in ("prices", "rsi"):
            if not args.symbol or not args.timeframe:
                raise UsageError(f"query {args.what} needs --symbol and --timeframe")
            if args.what == "prices":
                frame = store.prices(args.symbol, args.timeframe, session_id=args.session)
            else:
                frame = store.rsi(args.symbol, args.timeframe, session_id=args.session).to_frame()
            frame = frame.reset_index()
        elif args.what == "sessions":
            frame = store.sessions(exchange=args.exchange)
            if args.format == "table":
                print(_sessions_table(frame))
                return 0
            if args.format == "csv":  # json keeps it an object
                frame["config"] = frame["config"].map(lambda c: json.dumps(c, default=str))
        elif args.what == "coins":
            frame = store.coins(args.session)
        elif args.what == "correlations":
            frame = store.correlations(args.session)
            if not args.include_benchmark:
                from cryptorsi.tables import benchmark_rows

                benchmark = store.benchmark(args.session)
                frame = frame[~benchmark_rows(frame, benchmark)]
                if args.format == "table":
                    print(f"correlations with the benchmark {benchmark} (its own rows: --include-benchmark)")
        else:
            frame = getattr(store, args.what)(args.session)
    except KeyError as exc:
        raise UsageError(str(exc.args[0]) if exc.args else str(exc)) from None
    _print_frame(frame, args.format)
    return 0


#: widest line of the ``query sessions`` table
SESSIONS_WIDTH = 120


def _sessions_table(sessions) -> str:
    """``query sessions`` as a table that fits :data:`SESSIONS_WIDTH` columns: the start to the minute (the session
    id has the seconds), how long the session took, its status and counts, a short parameter summary; a session's
    message on the line below it."""
    if sessions.empty:
        return "(no rows)"
    took = (sessions["finished_at"] - sessions["started_at"]).dt.total_seconds()
    messages = sessions["message"].astype(object).where(sessions["message"].notna(), None)
    header = ["session", "started (UTC)", "took", "status", "coins", "corr", "fail", "parameters"]
    rows = [[sid, f"{started:%Y-%m-%d %H:%M}", _took(secs), status, str(coins), str(corr),
             str(fail), _parameters(config, source, exchange)]
            for sid, started, secs, status, coins, corr, fail, config, source, exchange in zip(
                sessions["session_id"], sessions["started_at"], took, sessions["status"], sessions["n_coins"],
                sessions["n_correlations"], sessions["n_failures"], sessions["config"], sessions["source"],
                sessions["exchange"])]
    right = {2, 4, 5, 6}
    widths = [max(len(header[i]), *(len(r[i]) for r in rows)) for i in range(len(header) - 1)]
    room = SESSIONS_WIDTH - sum(widths) - 2 * len(widths)
    lines = []
    for values, message in [(header, None), *zip(rows, messages)]:
        cells = [v.rjust(w) if i in right else v.ljust(w) for i, (v, w) in enumerate(zip(values, widths))]
        lines.append("  ".join([*cells, _cut(values[-1], room)]).rstrip())
        if message:
            lines.append(_cut(f"  {message}", SESSIONS_WIDTH))
    return "\n".join(lines)


def _took(seconds: float) -> str:
    """A column-width duration: ``2.1 s``, ``7.5 min``, ``2.1 h``; empty for a session not finished."""
    if seconds != seconds:
        return ""
    return f"{seconds:.1f} s" if seconds < 60 else f"{seconds / 60:.1f} min" if seconds < 3600 else \
        f"{seconds / 3600:.1f} h"


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _parameters(config: dict, source: str | None, exchange: str | None = None) -> str:
    """``sample top 100 1h,4h,1d 50w RSI14`` (``live okx ...``: the exchange after a live source; the method after
    the period unless wilder): what sets sessions apart; the whole config is in ``--format json``."""
    timeframes = config.get("timeframes") or ()
    timeframes = timeframes if isinstance(timeframes, str) else ",".join(map(str, timeframes))
    weeks = config.get("weeks")
    method = config.get("rsi_method", "wilder")
    return " ".join(part for part in (
        source or config.get("source") or "", exchange if isinstance(exchange, str) and exchange != source else "",
        f"top {config.get('top_n_coins', '?')}", timeframes,
        f"{weeks:g}w" if isinstance(weeks, (int, float)) else "", f"RSI{config.get('rsi_period', '?')}",
        "" if method == "wilder" else str(method)) if part)


def _print_frame(frame, fmt: str) -> None:
    if fmt == "csv":
        frame.to_csv(sys.stdout, index=False)
    elif fmt == "json":
        print(frame.to_json(orient="records", date_format="iso", indent=1))
    elif frame.empty:
        print("(no rows)")
    else:
        import pandas as pd

        with pd.option_context("display.max_rows", 500, "display.max_columns", 50, "display.width", 200,
                               "display.max_colwidth", 60):
            print(frame.to_string(index=False, na_rep=""))  # a missing value is an empty cell, never None/NaN


def _configure_logging(verbose: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter(verbose))
    root = logging.getLogger("cryptorsi")
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO if verbose else logging.ERROR)
    root.propagate = False


class _Formatter(logging.Formatter):
    """Tracebacks only with --verbose: without it a user sees one line per problem."""

    def __init__(self, verbose: bool):
        super().__init__("cryptorsi: %(levelname)s: %(message)s")
        self.verbose = verbose

    def formatException(self, ei):  # noqa: N802 - logging's naming
        return super().formatException(ei) if self.verbose else ""

    def format(self, record):
        if not self.verbose:
            record.exc_text = ""
            text = super().format(logging.makeLogRecord({**record.__dict__, "exc_info": None}))
            return text
        return super().format(record)


def _which(argv: list[str]) -> str:
    return next((a for a in argv if a in ("run", "query")), "")


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def _fail(code: int, command: str, message: str) -> int:
    prefix = f"cryptorsi {command}" if command else "cryptorsi"
    print(f"{prefix}: error: {message}", file=sys.stderr)
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
