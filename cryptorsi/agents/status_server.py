"""``StatusServer``: an optional HTTP page and JSON with every agent's queue, activity, counts and errors.

It binds 127.0.0.1 (port 0 picks a free port; ``url`` tells which). ``/status.json`` answers the
status dict of the runner; ``/`` is a small self-refreshing HTML page of the same.
"""

from __future__ import annotations

import html
import json
import logging
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cryptorsi.runtime.worker import THREAD_PREFIX

__all__ = ["StatusServer"]

log = logging.getLogger(__name__)


class StatusServer:
    """Serves ``status_fn()`` (a JSON-ready dict) over HTTP on its own named thread."""

    name = "StatusServer"

    def __init__(self, status_fn: Callable[[], dict[str, Any]], *, port: int = 0, host: str = "127.0.0.1"):
        self.status_fn = status_fn
        self.host = host
        self.port = port
        self.requests = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.ready = threading.Event()
        self.start_error: BaseException | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> "StatusServer":
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's naming
                server.requests += 1
                path = self.path.split("?", 1)[0]
                if path not in ("/", "/status.json", "/index.html"):
                    self.send_error(404, "try / or /status.json")
                    return
                status = server.status_fn()
                if path == "/status.json":
                    body, kind = json.dumps(status, default=str, indent=1).encode(), "application/json"
                else:
                    body, kind = _page(status).encode(), "text/html; charset=utf-8"
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format, *args):  # noqa: A002 - keep the console clean
                log.debug("status server: " + format, *args)

        try:
            self._server = ThreadingHTTPServer((self.host, self.port), Handler)
        except OSError as exc:
            self.start_error = exc
            self.ready.set()
            raise
        self._server.daemon_threads = False
        self._server.block_on_close = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name=f"{THREAD_PREFIX}{self.name}")
        self._thread.start()
        self.ready.set()
        return self

    def stop(self, timeout: float = 5.0) -> bool:
        if self._server is None:
            return True
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout)
        return not (self._thread and self._thread.is_alive())

    @property
    def alive(self) -> bool:
        return bool(self._thread and self._thread.is_alive())

    def status(self) -> dict[str, Any]:
        return {"queue": 0, "busy": 0, "tasks_done": self.requests, "errors": 0, "last_activity": None,
                "alive": self.alive, "url": self.url}


def _page(status: dict[str, Any], now: float | None = None) -> str:
    from cryptorsi.tables import ago

    now = time.time() if now is None else now
    rows = "".join(
        f"<tr><td>{html.escape(name)}</td>"
        + "".join(f"<td>{_cell(a.get(key))}</td>" for key in ("queue", "busy", "tasks_done", "errors"))
        + f"<td>{html.escape(ago(a.get('last_activity'), now))}</td></tr>"
        for name, a in status.get("agents", {}).items()
    )
    progress = "".join(
        f"<tr><td>{html.escape(tf)}</td><td>{p['done']}/{p['total']}</td><td>{p['failed']}</td></tr>"
        for tf, p in status.get("progress", {}).items()
    )
    synthetic = "<p><b>Synthetic sample data.</b></p>" if status.get("synthetic") else ""
    return (
        "<!doctype html><html><head><meta charset='utf-8'><meta http-equiv='refresh' content='2'>"
        "<title>cryptorsi status</title><style>body{font-family:sans-serif}td,th{padding:2px 8px}</style></head>"
        f"<body><h1>cryptorsi</h1><p>session {html.escape(str(status.get('session_id')))}: "
        f"<b>{html.escape(str(status.get('state')))}</b>; failures {status.get('failures', 0)}</p>{synthetic}"
        f"<h2>Progress</h2><table><tr><th>timeframe</th><th>done</th><th>failed</th></tr>{progress}</table>"
        "<h2>Agents</h2><table><tr><th>agent</th><th>queue</th><th>busy</th><th>tasks</th><th>errors</th>"
        f"<th>last activity</th></tr>{rows}</table><p><a href='/status.json'>JSON</a></p></body></html>"
    )


def _cell(value: Any) -> str:
    """A table cell: empty for what an agent does not report (the bus has no tasks), never ``None``."""
    return "" if value is None else html.escape(str(value))
