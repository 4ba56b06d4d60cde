"""gc_paused: the collector is off inside, back on after, and never left off by overlapping blocks."""

import gc
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


def test_importing_cryptorsi_leaves_the_collector_on():
    import subprocess
    import sys

    code = "import gc, cryptorsi; from cryptorsi.sources import live; print(gc.isenabled())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "True"
