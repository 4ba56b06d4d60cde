"""Benchmark: a long day in one kernel — the same analysis run again and again in one process.

    python bench/bench_soak.py [--runs 100] [--retunes 20] [--top 60] [--timeframes 1h,4h,1d] [--weeks 50]
                               [--view kernel|terminal] [--after 10]

1. ``--runs`` times ``cr.run_analysis(cr.AnalysisConfig(source="sample", ...))`` on one temporary database, as a
   notebook cell run again and again would: with ``--view kernel`` (the default) the whole benchmark runs in a
   real Jupyter kernel (ipykernel, started here with this interpreter; its messages are read and dropped, as a
   frontend would), where each run shows its view in the cell (live status, results table, four figures);
   with ``--view terminal`` it runs in this process and prints the console report to a string.
2. Then ``cr.ui()``'s path: one Run of the panel, and ``--retunes`` changes of the RSI period (each retunes
   from the cached candles and redraws the table and the visible figure), then the panel is closed.

After each step (and a ``gc.collect()``, so that what is counted is what is kept, not garbage not yet
collected): resident memory (``VmRSS``), threads (all, and cryptorsi's), open file descriptors, live
ipywidgets. The summary gives the growth per run after run ``--after``: from end to end, and the slope of a
least-squares line (RSS moves by tens of MB from one run to the next as glibc keeps or returns freed memory:
the slope is the steadier figure). Issue 16 target: <= 0.5 MB a run, no growth of threads or descriptors;
acceptance: 30 runs, RSS growth from run 10 to 30 <= 10 MB, one thread after each run.

``--trim`` calls glibc's ``malloc_trim(0)`` before each measurement (here, in the benchmark: the library never
does), which returns freed heap memory to the system: what is left is memory that objects still hold, without
what the allocator keeps for reuse.
"""

from __future__ import annotations

import argparse
import gc
import io
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import cryptorsi as cr
from cryptorsi.runtime.worker import THREAD_PREFIX


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def live_widgets() -> int | None:
    if "ipywidgets" not in sys.modules:
        return None
    from ipywidgets.widgets.widget import _instances

    return len(_instances)


TRIM = False


def sample() -> dict:
    gc.collect()
    if TRIM:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    return {"rss": rss_mb(), "threads": threading.active_count(),
            "cr_threads": sum(t.name.startswith(THREAD_PREFIX) for t in threading.enumerate()),
            "fds": len(os.listdir("/proc/self/fd")), "widgets": live_widgets()}


def row(label: str, s: dict, prev: dict | None, seconds: float) -> str:
    delta = "" if prev is None else f"{s['rss'] - prev['rss']:+7.1f}"
    widgets = "-" if s["widgets"] is None else s["widgets"]
    return (f"{label:>8} {s['rss']:9.1f} {delta:>7} {s['threads']:7d} {s['cr_threads']:10d} {s['fds']:4d} "
            f"{widgets:>7} {seconds:7.2f}")


HEADER = f"{'':>8} {'RSS MB':>9} {'delta':>7} {'threads':>7} {'cryptorsi':>10} {'fds':>4} {'widgets':>7} {'seconds':>7}"


def summary(name: str, samples: list[dict], after: int) -> None:
    n = len(samples)
    if n <= after:
        print(f"{name}: {n} steps, fewer than --after {after}: no growth figure")
        return
    base, last = samples[after - 1], samples[-1]
    per = (last["rss"] - base["rss"]) / (n - after)
    xs = list(range(after, n + 1))
    ys = [s["rss"] for s in samples[after - 1:]]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    print(f"{name}: RSS {samples[0]['rss']:.1f} MB after step 1, {base['rss']:.1f} after step {after}, "
          f"{last['rss']:.1f} after step {n}: {last['rss'] - base['rss']:+.1f} MB from step {after} to {n} "
          f"({per:+.2f} MB a step); least-squares slope {slope:+.2f} MB a step")
    print(f"{name}: threads after each step {min(s['threads'] for s in samples)}..{max(s['threads'] for s in samples)}"
          f" (cryptorsi's: max {max(s['cr_threads'] for s in samples)}); descriptors "
          f"{base['fds']} after step {after} -> {last['fds']}; widgets "
          f"{base['widgets']} -> {last['widgets']}")


def soak_runs(config: cr.AnalysisConfig, runs: int, view: str, after: int) -> list[dict]:
    print(f"\n{runs} runs of run_analysis: top {config.top_n_coins}, {','.join(config.timeframes)}, "
          f"{config.weeks:g} weeks, sample source, {view} view")
    print(HEADER)
    samples, prev = [], None
    for i in range(1, runs + 1):
        started = time.perf_counter()
        if view == "kernel":  # shown in the cell, as when a notebook cell is run again and again
            result = cr.run_analysis(config, progress=True)
        else:
            result = cr.run_analysis(config, progress=False, stream=io.StringIO())
        assert len(result.correlations) > 0
        del result
        seconds = time.perf_counter() - started
        s = sample()
        print(row(f"run {i}", s, prev, seconds), flush=True)
        samples.append(s)
        prev = s
    summary("runs", samples, after)
    return samples


def soak_retunes(config: cr.AnalysisConfig, retunes: int, after: int) -> list[dict]:
    print(f"\ncr.ui(): one Run, then {retunes} changes of the RSI period (retune + table + figure)")
    print(HEADER)
    panel = cr.ui(config)
    ended = threading.Event()
    panel.observe(lambda change: ended.set() if change["new"] in ("completed", "failed", "stopped") else None,
                  names="state")
    started = time.perf_counter()
    panel.run()
    if not ended.wait(600) or panel.state != "completed":
        raise SystemExit(f"the panel's run ended {panel.state}: {panel.message.value}")
    panel.wait(60)
    prev = sample()
    print(row("run", prev, None, time.perf_counter() - started), flush=True)
    panel.tabs.selected_index = 1  # a figure tab: each change redraws it
    samples = []
    for i in range(1, retunes + 1):
        started = time.perf_counter()
        panel.controls["rsi_period"].value = 14 + i % 2 * 7  # 21, 14, 21, ...
        s = sample()
        print(row(f"tune {i}", s, prev, time.perf_counter() - started), flush=True)
        samples.append(s)
        prev = s
    panel.close()
    del panel
    closed = sample()
    print(row("closed", closed, prev, 0.0))
    summary("retunes", samples, min(after, max(1, retunes // 2)))
    return samples


def in_a_kernel(argv: list[str]) -> None:
    """Run this benchmark with ``argv`` in a new Jupyter kernel of this interpreter; print what it prints."""
    from jupyter_client import KernelManager
    from jupyter_client.kernelspec import KernelSpec, KernelSpecManager

    class ThisPython(KernelSpecManager):
        def get_kernel_spec(self, kernel_name: str) -> KernelSpec:
            return KernelSpec(argv=[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                              display_name="soak", language="python")

    manager = KernelManager(kernel_name="soak", kernel_spec_manager=ThisPython())
    manager.start_kernel()
    client = manager.client()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=120)
        msg_id = client.execute(f"import runpy\nrunpy.run_path({__file__!r}, run_name='soak')['main']({argv!r})")
        while True:  # every message is read (widgets, displays...): the kernel is never held up by its frontend
            message = client.get_iopub_msg(timeout=3600)
            if message["parent_header"].get("msg_id") != msg_id:
                continue
            kind, content = message["msg_type"], message["content"]
            if kind == "stream":
                sys.stdout.write(content["text"])
                sys.stdout.flush()
            elif kind == "error":
                raise SystemExit("\n".join(content["traceback"]))
            elif kind == "status" and content["execution_state"] == "idle":
                break
    finally:
        client.stop_channels()
        manager.shutdown_kernel()


def main(argv: list[str] | None = None) -> None:
    from cryptorsi.notebook.kernel import in_notebook

    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--retunes", type=int, default=20)
    parser.add_argument("--top", type=int, default=60)
    parser.add_argument("--timeframes", default="1h,4h,1d")
    parser.add_argument("--weeks", type=float, default=50)
    parser.add_argument("--view", choices=("kernel", "terminal"), default="kernel")
    parser.add_argument("--after", type=int, default=10, help="growth is measured from this run on")
    parser.add_argument("--db", default=None, help="database (default: a temporary file)")
    parser.add_argument("--trim", action="store_true", help="malloc_trim(0) before each measurement")
    args = parser.parse_args(argv)
    global TRIM
    TRIM = args.trim
    if args.view == "kernel" and not in_notebook():
        in_a_kernel(argv)
        return

    with tempfile.TemporaryDirectory(prefix="cryptorsi-soak-") as tmp:
        db = args.db or str(Path(tmp) / "soak.db")
        config = cr.AnalysisConfig(source="sample", top_n_coins=args.top, timeframes=args.timeframes,
                                   weeks=args.weeks, db_path=db)
        print(f"python {sys.version.split()[0]}, cryptorsi {cr.__version__}, pid {os.getpid()}; start: "
              f"RSS {rss_mb():.1f} MB, {threading.active_count()} thread(s), {len(os.listdir('/proc/self/fd'))} fds"
              + ("; malloc_trim before each measurement" if TRIM else ""))
        if args.runs:
            soak_runs(config, args.runs, args.view, args.after)
        if args.retunes:
            soak_retunes(config, args.retunes, args.after)


if __name__ == "__main__":
    main()
