"""A real Jupyter kernel for the notebook tests: execute cells, collect their messages, interrupt, shut down.

The kernel runs this interpreter (``sys.executable -m ipykernel_launcher``), as ``nbval --nbval-current-env``
does, so the tests do not depend on which kernelspecs are installed.
"""

from __future__ import annotations

import json
import queue
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from jupyter_client import KernelManager
from jupyter_client.kernelspec import KernelSpec, KernelSpecManager

KERNEL_NAME = "cryptorsi-tests-this-python"


class _ThisPython(KernelSpecManager):
    def get_kernel_spec(self, kernel_name: str) -> KernelSpec:
        if kernel_name == KERNEL_NAME:
            return KernelSpec(argv=[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                              display_name="cryptorsi tests", language="python")
        return super().get_kernel_spec(kernel_name)


@dataclass
class Execution:
    """What one cell produced: its own iopub messages (by type), the reply, and every other message seen."""

    msg_id: str
    reply: dict[str, Any] | None = None
    messages: list[dict[str, Any]] = field(default_factory=list)
    others: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def status(self) -> str | None:
        return None if self.reply is None else self.reply["content"]["status"]

    @property
    def stdout(self) -> str:
        return "".join(m["content"]["text"] for m in self.messages
                       if m["msg_type"] == "stream" and m["content"]["name"] == "stdout")

    @property
    def stderr(self) -> str:
        return "".join(m["content"]["text"] for m in self.messages
                       if m["msg_type"] == "stream" and m["content"]["name"] == "stderr")

    def of_type(self, *types: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["msg_type"] in types]

    def json(self) -> Any:
        """The last line the cell printed, parsed as JSON."""
        lines = [line for line in self.stdout.splitlines() if line.strip()]
        return json.loads(lines[-1])

    def error(self) -> str:
        errors = self.of_type("error")
        return "\n".join(f"{e['content']['ename']}: {e['content']['evalue']}" for e in errors)


class Kernel:
    """A started kernel and its client; use as a context manager.

    On shutdown the manager waits up to ``shutdown_wait`` seconds for the kernel to exit on its own (it sends
    SIGTERM after half of it, SIGKILL at the end): long, so that a busy machine never makes a clean exit look
    like a hung one.
    """

    def __init__(self, cwd: str | None = None, startup_timeout: float = 60.0, shutdown_wait: float = 60.0):
        self.manager = KernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=_ThisPython(),
                                     shutdown_wait_time=shutdown_wait)
        self.manager.start_kernel(cwd=cwd)
        self.client = self.manager.client()
        self.client.start_channels()
        try:
            self.client.wait_for_ready(timeout=startup_timeout)
        except RuntimeError:
            self.shutdown()
            raise
        # every iopub message read so far that belonged to no awaited cell (comm updates between cells...)
        self.stray: list[dict[str, Any]] = []

    def __enter__(self) -> "Kernel":
        return self

    def __exit__(self, *exc_info) -> None:
        self.shutdown()

    def execute(self, code: str, *, timeout: float = 120.0, until=None, on_message=None) -> Execution:
        """Run ``code`` and collect its messages until the kernel is idle again (or ``timeout``).

        ``on_message(message, execution)`` is called for every iopub message while waiting (to interrupt
        the kernel at the right moment, say). Raises ``TimeoutError`` when the cell does not finish.
        """
        started = time.monotonic()
        msg_id = self.client.execute(code, allow_stdin=False)
        run = Execution(msg_id)
        idle = False
        deadline = started + timeout
        while not (idle and run.reply is not None):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"cell did not finish within {timeout}s: {code[:80]!r}")
            if run.reply is None:
                try:
                    reply = self.client.get_shell_msg(timeout=0.01)
                    if reply["parent_header"].get("msg_id") == msg_id:
                        run.reply = reply
                        run.seconds = time.monotonic() - started
                except queue.Empty:
                    pass
            try:
                message = self.client.get_iopub_msg(timeout=min(0.05, max(0.001, remaining)))
            except queue.Empty:
                continue
            if message["parent_header"].get("msg_id") == msg_id:
                if message["msg_type"] == "status":
                    idle = message["content"]["execution_state"] == "idle"
                else:
                    run.messages.append(message)
            else:
                run.others.append(message)
                self.stray.append(message)
            if on_message is not None:
                on_message(message, run)
        return run

    def check(self, code: str, **options: Any) -> Execution:
        """Like :meth:`execute`, but fails with the cell's error when it raised."""
        run = self.execute(code, **options)
        assert run.status == "ok", f"cell failed: {run.error()}\n{code}"
        return run

    def interrupt(self) -> None:
        self.manager.interrupt_kernel()

    def shutdown(self, *, now: bool = False) -> float:
        """Shut the kernel down; the seconds it took (the manager kills it after its own wait otherwise)."""
        started = time.monotonic()
        try:
            self.client.stop_channels()
        finally:
            if self.manager.has_kernel:
                self.manager.shutdown_kernel(now=now)
        return time.monotonic() - started


def widget_tree(messages: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Widget models opened in ``messages``: model id -> {"model_name", "state"} (state updates applied)."""
    models: dict[str, dict[str, Any]] = {}
    for message in messages:
        content = message["content"]
        if message["msg_type"] == "comm_open" and content.get("target_name") == "jupyter.widget":
            state = content["data"].get("state", {})
            models[content["comm_id"]] = {"model_name": state.get("_model_name"), "state": dict(state)}
        elif message["msg_type"] == "comm_msg" and content["comm_id"] in models:
            data = content["data"]
            if data.get("method") in ("update", "echo_update"):
                models[content["comm_id"]]["state"].update(data.get("state", {}))
    return models


def descendants(models: dict[str, dict[str, Any]], root: str) -> set[str]:
    """Ids of the widgets inside ``root`` (through ``children`` of boxes)."""
    found, todo = set(), [root]
    while todo:
        model = models.get(todo.pop())
        if model is None:
            continue
        for child in model["state"].get("children", []) or []:
            child_id = child.removeprefix("IPY_MODEL_")
            if child_id not in found:
                found.add(child_id)
                todo.append(child_id)
    return found


def widget_views(execution: Execution) -> list[str]:
    """Model ids of the widgets a cell displayed."""
    views = []
    for message in execution.of_type("display_data", "execute_result"):
        view = message["content"]["data"].get("application/vnd.jupyter.widget-view+json")
        if view:
            views.append(view["model_id"])
    return views
