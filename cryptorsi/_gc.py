"""``gc_paused()``: import heavy modules without the cyclic garbage collector running meanwhile.

``freeze_imports()``, for a process cryptorsi owns (the command line, a worker process): what those imports
made is moved out of the collector's sight for good, so it is never walked again either."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_depth = 0  # with blocks open now, in any thread
_enable_after = False
_freeze_after = False  # set by freeze_imports(): freeze what each outermost block imported


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector for the ``with`` block, then restore its previous state.

    Importing pandas, numpy and ccxt creates millions of objects and next to no garbage, but the collector,
    started by allocation counts, walks the growing heap again and again meanwhile: ~0.2 s of the ~1 s a
    ``cryptorsi run`` spends importing. Blocks may overlap across threads: the collector comes back when the
    last one ends, and only if it was enabled before the first began.
    """
    global _depth, _enable_after
    with _lock:
        if _depth == 0:
            _enable_after = gc.isenabled()
            gc.disable()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                if _freeze_after:
                    gc.freeze()
                if _enable_after:
                    gc.enable()


def freeze_imports() -> None:
    """Move every object the collector tracks to its permanent generation (:func:`gc.freeze`), where collections
    never walk them: now, and again each time an outermost ``gc_paused`` block (a lazy import) ends.

    Modules, classes and functions live as long as the process, yet the first collections after the imports
    walk all of them: ~0.1 s of a ~1.2 s ``cryptorsi run`` on a warm cache (measured with ``gc.callbacks``).
    What else is alive at those moments is frozen too: reference counting still frees it, but a reference cycle
    among frozen objects is never collected. Hence only for a process cryptorsi owns, from its entry point (a
    command's run, a worker, whose lazy imports come early); never in a notebook, where the user's objects
    would be frozen with ours.
    """
    global _freeze_after
    with _lock:
        _freeze_after = True
        if _depth == 0:
            gc.freeze()
