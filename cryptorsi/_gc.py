"""``gc_paused()``: import heavy modules without the cyclic garbage collector running meanwhile."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_depth = 0  # with blocks open now, in any thread
_enable_after = False


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
            if _depth == 0 and _enable_after:
                gc.enable()
