"""The Jupyter kernel: is there one, which cell started a run, and where a run shows itself.

ipykernel 7 sends what a thread prints to the cell that ran *last* (a thread has no parent
header of its own), not to the cell that started the thread. So the cell is remembered on the
kernel's main thread when a run starts (:func:`parent_header`), and the DisplayAgent's thread
adopts it (:func:`route_thread_output`); its widgets, created on the main thread in that cell,
are updated from agent threads through trait assignments only.

Runners are stopped when the kernel exits by the Runner's own exit hook (it runs before the
interpreter waits for threads), so nothing is registered here.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

__all__ = ["in_notebook", "parent_header", "route_thread_output", "RunTarget", "show_runs_in", "current_target",
           "show"]


def in_notebook() -> bool:
    """True when running in a Jupyter kernel (ipykernel), where widgets and rich output can be shown."""
    if "ipykernel" not in sys.modules:  # cheap test first: never import IPython outside a kernel
        return False
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - ipykernel always brings IPython
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def parent_header() -> dict[str, Any] | None:
    """The request (cell execution) the kernel is serving now; call it on the main thread."""
    if not in_notebook():
        return None
    from IPython import get_ipython

    try:
        return get_ipython().kernel.get_parent()
    except Exception:  # noqa: BLE001 - an unusual kernel: output keeps its default routing
        return None


def route_thread_output(parent: dict[str, Any] | None) -> None:
    """Send what the calling thread prints or displays to the cell of ``parent`` (call it in that thread).

    Uses ipykernel's per-thread parent (``set_thread_parent``); without a kernel it does nothing.
    """
    if not parent or not in_notebook():
        return
    from IPython import get_ipython

    streams = [sys.stdout, sys.stderr, getattr(get_ipython(), "display_pub", None)]
    for stream in streams:
        set_thread_parent = getattr(stream, "set_thread_parent", None)
        if set_thread_parent is not None:
            set_thread_parent(parent)


@dataclass(frozen=True)
class RunTarget:
    """Where runs started in a ``with show_runs_in(...)`` block show their live view.

    ``place(view)`` receives the run's widget on the main thread; ``results`` says whether the view
    also draws the results table and figures (a tuning panel draws its own).
    """

    place: Callable[[Any], None]
    results: bool = True


_target: ContextVar[RunTarget | None] = ContextVar("cryptorsi_run_target", default=None)


@contextmanager
def show_runs_in(place: Callable[[Any], None], *, results: bool = True) -> Iterator[RunTarget]:
    """Runs started in this block hand their view to ``place`` instead of displaying it in the cell.

    Also turns the notebook view on outside a kernel (widgets work without a frontend), which is how
    the tuning panel and the tests drive it.
    """
    target = RunTarget(place, results)
    token = _target.set(target)
    try:
        yield target
    finally:
        _target.reset(token)


def current_target() -> RunTarget | None:
    """The target set by the innermost :func:`show_runs_in` of this thread, if any."""
    return _target.get()


def show(widget: Any) -> Any:
    """Show ``widget``: in the current target if one is set (returns None), else in the cell running now (main
    thread; returns the display handle, with which that output can be replaced later)."""
    target = current_target()
    if target is not None:
        target.place(widget)
        return None
    from IPython.display import display

    return display(widget, display_id=True)
