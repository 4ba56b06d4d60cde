"""``cryptorsi worker``: host stateless agents (fetcher, RSI) in another process or machine.

A worker connects to a Redis bus and serves every analysis published there, sharing the load with
the agents of ``cryptorsi run`` and of other workers (competing consumers of one group per agent).
The DatabaseManager is not among them: it stays with ``cryptorsi run``, the single writer of SQLite.

>>> worker = WorkerProcess("redis://127.0.0.1:6379/0", agents=("fetcher", "rsi"))  # doctest: +SKIP
>>> worker.start(); ...; worker.stop()                                             # doctest: +SKIP
"""

from __future__ import annotations

import logging

from cryptorsi.runner import LOCAL_AGENTS

__all__ = ["WorkerProcess", "WORKER_AGENTS"]

log = logging.getLogger(__name__)

WORKER_AGENTS = LOCAL_AGENTS


class WorkerProcess:
    """The agents of one worker process on the bus ``bus_url``; ``db_path`` (optional) is a candle cache."""

    def __init__(self, bus_url: str, agents=WORKER_AGENTS, *, threads: int = 1, db_path: str | None = None,
                 coingecko_api_key: str | None = None, bus_options: dict | None = None):
        agents = tuple(dict.fromkeys(agents))
        if not agents:
            raise ValueError("agents: name at least one of " + ", ".join(WORKER_AGENTS))
        for name in agents:
            if name == "database":
                raise ValueError("agents: the database agent runs with `cryptorsi run` (SQLite has one writer)")
            if name not in WORKER_AGENTS:
                raise ValueError(f"agents: unknown agent {name!r}; choose from {', '.join(WORKER_AGENTS)}")
        if not bus_url.startswith(("redis://", "rediss://")):
            raise ValueError(f"bus: a worker needs a network bus such as redis://host:6379/0, got {bus_url!r}")
        if threads < 1:
            raise ValueError(f"threads: must be >= 1, got {threads}")
        self.bus_url = bus_url
        self.agent_names = agents
        self.threads = threads
        self.db_path = db_path
        self.coingecko_api_key = coingecko_api_key
        self.bus_options = bus_options or {}
        self.bus = None
        self.agents = []

    def start(self) -> "WorkerProcess":
        from cryptorsi.agents.fetcher import DataFetcher
        from cryptorsi.agents.rsi_calculator import RSICalculator
        from cryptorsi.runtime import create_bus

        self.bus = create_bus(self.bus_url, **self.bus_options)
        if "fetcher" in self.agent_names:
            self.agents.append(DataFetcher(self.bus, self.db_path, threads=self.threads,
                                           coingecko_api_key=self.coingecko_api_key))
        if "rsi" in self.agent_names:
            self.agents.append(RSICalculator(self.bus, threads=self.threads))
        try:
            self.bus.start()  # fails within a few seconds, in one line, if the broker cannot be reached
            for agent in self.agents:
                agent.start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, timeout: float = 10.0) -> bool:
        """Finish or hand back the current tasks, then stop the agents and the bus."""
        clean = True
        for agent in reversed(self.agents):
            clean &= agent.stop(timeout)  # a queued task is released: another consumer claims it
        if self.bus is not None:
            clean &= self.bus.stop(timeout)
        self.agents, self.bus = [], None
        return clean

    def status(self) -> dict:
        return {agent.name: agent.status() for agent in self.agents}
