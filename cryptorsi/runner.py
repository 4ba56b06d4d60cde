"""``Runner``, ``run_analysis`` and ``stop_all``: start, watch and stop the agents of one analysis.

>>> import cryptorsi as cr
>>> result = cr.run_analysis(cr.AnalysisConfig(source="sample", top_n_coins=20, weeks=8,
...                                            timeframes="4h,1d", db_path="sample.db"))  # doctest: +SKIP

A process runs one analysis at a time: starting a Runner stops any other Runner of the process
first, so re-running a notebook cell never leaves two sets of agents. ``stop()`` returns within its
timeout with every cryptorsi thread ended; runners are also stopped when the interpreter exits.
"""

from __future__ import annotations

import logging
import secrets
import sys
import threading
import time
from typing import Any, TextIO

import pandas as pd

from cryptorsi.config import AnalysisConfig
from cryptorsi.errors import RunFailed, RunInterrupted
from cryptorsi.events import (
    CoinProcessingFailed,
    DisplayCompleted,
    ProgressUpdated,
    ResultsSaved,
    RunFailed as RunFailedEvent,
    TaskFailed,
)
from cryptorsi.market import to_ms
from cryptorsi.windows import analysis_window

__all__ = ["Runner", "run_analysis", "stop_all", "active_runners"]

log = logging.getLogger(__name__)

#: agents a Runner may host besides its orchestrator, database and display (the others can run in
#: ``cryptorsi worker`` processes when the bus is Redis)
LOCAL_AGENTS = ("fetcher", "rsi")

_registry_lock = threading.Lock()
_active: list["Runner"] = []
_START_TIMEOUT = 30.0


def new_session_id() -> str:
    """A sortable, readable session id: UTC start time plus a random suffix."""
    return pd.Timestamp.now(tz="UTC").strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(2)


class Runner:
    """Runs one analysis on threaded agents; ``start`` returns at once, ``wait`` returns the result.

    >>> runner = Runner(AnalysisConfig(source="sample", top_n_coins=30))  # doctest: +SKIP
    >>> runner.start(); runner.status()["progress"]                       # doctest: +SKIP
    >>> result = runner.wait()                                             # doctest: +SKIP

    Also a context manager: leaving the ``with`` block stops the agents.
    """

    def __init__(self, config: AnalysisConfig | None = None, *, stream: TextIO | None = None,
                 progress: bool = False, agents: tuple[str, ...] = LOCAL_AGENTS, **overrides: Any):
        if config is None:
            config = AnalysisConfig(**overrides)
        elif overrides:
            config = config.replace(**overrides)
        self.config = config
        unknown = set(agents) - set(LOCAL_AGENTS)
        if unknown:
            raise ValueError(f"agents: unknown agent {sorted(unknown)[0]!r}; choose from {', '.join(LOCAL_AGENTS)}")
        if not agents and config.bus_url == "memory://":
            raise ValueError("agents: the in-process bus needs local fetcher and rsi agents")
        self.local_agents = tuple(agents)
        self.stream = stream
        self.progress = progress
        self.session_id: str | None = None
        self.state = "new"
        self.windows: dict[str, tuple[int, int]] = {}
        self.synthetic = False
        self._bus = None
        self._agents: list = []
        self._analyzer = None
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._saved_status: str | None = None
        self._displayed = False
        self._failure: str | None = None
        self._progress: dict[str, dict[str, int]] = {}
        self._failures = 0
        self._task_errors = 0
        self._started_at: float | None = None
        self._listeners: list[tuple[type, Any]] = []

    def add_listener(self, event_type: type, handler) -> None:
        """Call ``handler(event)`` for each ``event_type`` event of this analysis (e.g. ``ProgressUpdated``).

        Handlers run on the bus thread: keep them fast (update a widget trait, set an Event). Add them
        before ``start``.
        """
        if self.state != "new":
            raise RuntimeError("add listeners before start()")
        self._listeners.append((event_type, handler))

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> "Runner":
        """Start the agents and the session; stops any other Runner of this process first."""
        if self.state != "new":
            raise RuntimeError("a Runner runs once; make a new Runner to run again")
        _register(self)
        self.state = "starting"
        self._started_at = time.monotonic()
        try:
            self._start_agents()
        except BaseException:
            self.stop()
            self.state = "failed"
            raise
        self.state = "running"
        self._analyzer.begin()
        return self

    def _start_agents(self) -> None:
        from cryptorsi.agents.analyzer import CryptoAnalyzer
        from cryptorsi.agents.database import DatabaseManager
        from cryptorsi.agents.display import DisplayAgent
        from cryptorsi.agents.fetcher import DataFetcher
        from cryptorsi.agents.rsi_calculator import RSICalculator
        from cryptorsi.runtime import create_bus
        from cryptorsi.sources import make_source, source_spec

        cfg = self.config
        self.session_id = sid = new_session_id()
        source = make_source(cfg)
        try:
            source.check(cfg.timeframes, cfg.weeks)
            self.synthetic = source.synthetic
            end = None if cfg.end is None else to_ms(cfg.end)
            self.windows = {tf: analysis_window(end if end is not None else source.default_end_ms(tf), cfg.weeks, tf)
                            for tf in cfg.timeframes}
            self._bus = create_bus(cfg.bus_url)
        except BaseException:
            source.close()  # nothing owns it yet (the DataFetcher closes it from here on)
            raise
        for event_type, handler in {
            ResultsSaved: self._on_saved,
            DisplayCompleted: self._on_displayed,
            RunFailedEvent: self._on_run_failed,
            ProgressUpdated: self._on_progress,
            CoinProcessingFailed: self._on_coin_failed,
            TaskFailed: self._on_task_failed,
        }.items():
            self._bus.subscribe(event_type, handler, service=f"Runner@{sid}", history=False)
        for i, (event_type, handler) in enumerate(self._listeners):
            self._bus.subscribe(event_type, _only_session(sid, handler), service=f"Runner-listener-{i}@{sid}",
                                history=False)
        self._analyzer = CryptoAnalyzer(self._bus, cfg, sid, self.windows, synthetic=source.synthetic)
        agents = [DatabaseManager(self._bus, cfg.db_path, session_id=sid)]
        if "fetcher" in self.local_agents:
            agents.append(DataFetcher(self._bus, cfg.db_path, threads=source.concurrency,
                                      sources={source_spec(cfg): source}, coingecko_api_key=cfg.coingecko_api_key))
        else:
            source.close()
        if "rsi" in self.local_agents:
            agents.append(RSICalculator(self._bus))
        agents.append(DisplayAgent(self._bus, session_id=sid, stream=self.stream, progress=self.progress,
                                   threshold=cfg.correlation_threshold, config=cfg, status=self.status))
        if cfg.status_port is not None:
            from cryptorsi.agents.status_server import StatusServer  # http.server: only when asked for

            agents.append(StatusServer(self.status, port=cfg.status_port))
        agents.append(self._analyzer)
        self._bus.start()
        for agent in agents:
            self._agents.append(agent)
            agent.start()
            if not agent.ready.wait(_START_TIMEOUT):
                raise RunFailed(f"{agent.name} did not start within {_START_TIMEOUT:.0f}s")
            if agent.start_error is not None:
                raise agent.start_error

    def wait(self, timeout: float | None = None):
        """Block until the analysis ends and return its :class:`~cryptorsi.result.AnalysisResult`.

        Raises ``RunFailed`` when it could not complete, ``RunInterrupted`` when it was stopped, and
        ``TimeoutError`` after ``timeout`` seconds (the run goes on). Ctrl-C stops the run.
        """
        if self.state == "new":
            raise RuntimeError("start() the Runner first")
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            # Short waits keep Ctrl-C (KeyboardInterrupt) responsive in every Python and kernel.
            while not self._done.wait(0.2):
                if deadline is not None and time.monotonic() >= deadline:
                    raise TimeoutError(f"session {self.session_id} still running after {timeout}s")
        except KeyboardInterrupt:
            self.stop()
            raise
        return self._finish()

    def _finish(self):
        from cryptorsi.result import AnalysisResult

        if self._saved_status == "completed":
            self.stop()
            self.state = "completed"
            return AnalysisResult.load(self.config.db_path, self.session_id)
        if self._failure is not None:
            self.stop()
            self.state = "failed"
            raise RunFailed(self._failure)
        raise RunInterrupted(f"session {self.session_id} was stopped before it completed")

    def stop(self, timeout: float = 5.0) -> bool:
        """Stop every agent (last started first) within ``timeout`` seconds; True when all threads ended.

        A session that had not completed is marked ``interrupted`` in the database.
        """
        with self._lock:
            agents, self._agents = self._agents, []
            bus, self._bus = self._bus, None
        deadline = time.monotonic() + timeout
        clean = True
        if bus is not None:
            clean &= bus.stop(max(0.1, deadline - time.monotonic()))
        for agent in reversed(agents):
            clean &= agent.stop(max(0.1, deadline - time.monotonic()))
        if self.state in ("starting", "running"):
            self.state = "completed" if self._saved_status == "completed" else "interrupted"
        self._done.set()
        _unregister(self)
        return clean

    def __enter__(self) -> "Runner":
        if self.state == "new":
            self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    # ------------------------------------------------------------------ status
    def status(self) -> dict[str, Any]:
        """Progress per timeframe, every agent's queue and activity, failures so far (JSON-ready)."""
        agents = {a.name: a.status() for a in list(self._agents)}
        if self._bus is not None:
            agents["ServiceBus"] = {"queue": self._bus.pending(), "alive": True}
        return {
            "session_id": self.session_id,
            "state": self.state,
            "source": self.config.source,
            "exchange": self.config.exchange if self.config.source == "live" else None,
            "synthetic": self.synthetic,
            "elapsed_s": None if self._started_at is None else round(time.monotonic() - self._started_at, 3),
            "progress": {tf: dict(p) for tf, p in self._progress.items()},
            "failures": self._failures,
            "task_errors": self._task_errors,
            "requests": next((a.request_stats(self.session_id) for a in list(self._agents)
                              if hasattr(a, "request_stats")), None),
            "agents": agents,
        }

    # ------------------------------------------------------------------ bus handlers (bus thread)
    def _on_progress(self, event: ProgressUpdated) -> None:
        if event.session_id == self.session_id:
            self._progress[event.timeframe] = {"done": event.done, "total": event.total, "failed": event.failed}

    def _on_coin_failed(self, event: CoinProcessingFailed) -> None:
        if event.session_id == self.session_id:
            self._failures += 1

    def _on_task_failed(self, event: TaskFailed) -> None:
        if event.session_id == self.session_id:
            self._task_errors += 1

    def _on_run_failed(self, event: RunFailedEvent) -> None:
        if event.session_id == self.session_id:
            self._failure = event.reason

    def _on_saved(self, event: ResultsSaved) -> None:
        if event.session_id == self.session_id:
            if event.status == "failed" and self._failure is None:  # before its RunFailed (any order on a network bus)
                self._failure = event.reason or f"session {self.session_id} failed"
            self._saved_status = event.status
            self._check_done()

    def _on_displayed(self, event: DisplayCompleted) -> None:
        if event.session_id == self.session_id:
            self._displayed = True
            self._check_done()

    def _check_done(self) -> None:
        if self._saved_status is not None and (self._displayed or self._saved_status != "completed"):
            self._done.set()


def _only_session(session_id: str, handler):
    return lambda event: handler(event) if event.session_id == session_id else None


def run_analysis(config: AnalysisConfig | None = None, *, progress: bool | None = None,
                 stream: TextIO | None = None, runner: Runner | None = None, **overrides: Any):
    """Run one analysis to the end and return its :class:`~cryptorsi.result.AnalysisResult`.

    >>> result = run_analysis(source="sample", top_n_coins=40, timeframes="1h,4h,1d")  # doctest: +SKIP
    >>> result.selected.head()                                                           # doctest: +SKIP

    ``progress`` shows progress bars (default: when stderr is a terminal). Ctrl-C stops the agents,
    marks the session ``interrupted`` and re-raises ``KeyboardInterrupt``. A prepared, not yet started
    ``runner`` may be passed instead of a config.
    """
    if runner is None:
        if progress is None:
            from cryptorsi.notebook.kernel import in_notebook

            progress = sys.stderr.isatty() or in_notebook()
        runner = Runner(config, stream=stream, progress=progress, **overrides)
    runner.start()
    return runner.wait()


def active_runners() -> list[Runner]:
    with _registry_lock:
        return list(_active)


def stop_all(timeout: float = 5.0) -> bool:
    """Stop every Runner of this process (also runs at interpreter exit). True when all threads ended."""
    clean = True
    for runner in reversed(active_runners()):
        clean &= runner.stop(timeout)
    return clean


def _register(runner: Runner) -> None:
    for other in active_runners():
        if other is not runner:
            log.info("stopping the previous analysis (session %s) before starting a new one", other.session_id)
            other.stop()
    with _registry_lock:
        _active.append(runner)


def _unregister(runner: Runner) -> None:
    with _registry_lock:
        if runner in _active:
            _active.remove(runner)


def _register_exit_hook() -> None:
    # threading's own exit hook runs before the interpreter joins non-daemon threads (plain atexit runs
    # after, too late: it would wait forever on running agents). concurrent.futures relies on it as well.
    register = getattr(threading, "_register_atexit", None)
    if register is not None:
        register(stop_all)
    else:  # pragma: no cover - other Pythons
        import atexit

        atexit.register(stop_all)


_register_exit_hook()
