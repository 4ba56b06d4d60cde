"""gc_paused: the collector is off inside, back on after, and never left off by overlapping blocks;
freeze_imports: what the paused imports made is frozen, in the processes that ask for it only."""

import gc
import subprocess
import sys
import threading

import pytest

from cryptorsi._gc import gc_paused


@pytest.fixture(autouse=True)
def _restore_gc():
    was = gc.isenabled()
    yield
    (gc.enable if was else gc.disable)()


def test_pauses_and_restores():
    gc.enable()
    with gc_paused():
        assert not gc.isenabled()
        with gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the outer block still runs
    assert gc.isenabled()
    with pytest.raises(ZeroDivisionError), gc_paused():
        1 / 0
    assert gc.isenabled()


def test_leaves_a_disabled_collector_disabled():
    gc.disable()
    with gc_paused():
        pass
    assert not gc.isenabled()


def test_overlapping_blocks_in_threads_end_with_the_collector_on():
    gc.enable()
    start = threading.Barrier(8)

    def work():
        start.wait(timeout=10)
        for _ in range(2000):
            with gc_paused():
                pass

    threads = [threading.Thread(target=work, name=f"gc-pause-test-{i}") for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not any(t.is_alive() for t in threads)
    assert gc.isenabled()


def _python(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()


def test_importing_cryptorsi_leaves_the_collector_on_and_nothing_frozen():
    code = ("import gc, cryptorsi as cr; from cryptorsi.sources import live; cr.Runner; "
            "print(gc.isenabled(), gc.get_freeze_count())")
    assert _python(code) == "True 0"  # a notebook's objects are never frozen


def test_import_cryptorsi_is_lazy():
    code = ("import sys, cryptorsi as cr; before = 'pandas' in sys.modules; from cryptorsi import Store; "
            "print(before, 'pandas' in sys.modules, cr.Store is Store, cr.indicators.__name__, "
            "sorted(set(cr.__all__) ^ set(cr._PUBLIC)), sorted(set(cr.__all__) - set(dir(cr))))")
    assert _python(code) == "False True True cryptorsi.indicators [] []"
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        import cryptorsi

        cryptorsi.nope


def test_freeze_imports_freezes_what_each_outermost_block_made():
    code = """
import gc
from cryptorsi._gc import freeze_imports, gc_paused
kept = []
with gc_paused():
    freeze_imports()                      # inside a block: nothing frozen until it ends
    inside = gc.get_freeze_count()
    kept.append([[] for _ in range(5000)])
after_block = gc.get_freeze_count()
with gc_paused():
    kept.append([[] for _ in range(5000)])
after_second = gc.get_freeze_count()
loose = [[] for _ in range(5000)]         # made outside a block: left to the collector
print(inside, after_block >= 5000, after_second - after_block >= 5000, gc.get_freeze_count() == after_second,
      gc.isenabled())
"""
    assert _python(code) == "0 True True True True"
