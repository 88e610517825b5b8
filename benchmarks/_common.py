"""Shared helpers for the benchmark scripts: timing, peak memory, tables."""

from __future__ import annotations

import gc
import resource
import shutil
import sys
import time
from collections.abc import Callable


def best_of(fn: Callable[[], object], repeat: int = 5, target: float = 0.05) -> float:
    """Seconds per call of ``fn``: the best of ``repeat`` timings, timeit-style.

    Fast functions are called in a loop of ``number`` calls (chosen so that one loop takes about
    ``target`` seconds) with the garbage collector off, and the loop time is divided by
    ``number``; slow ones are called once per repeat. The same procedure times every library.
    """
    t0 = time.perf_counter()
    fn()
    once = time.perf_counter() - t0
    number = max(1, int(target / max(once, 1e-7)))
    best = float("inf")
    for _ in range(repeat):
        gc.collect()
        gc.disable()
        try:
            t0 = time.perf_counter()
            for _ in range(number):
                fn()
            best = min(best, (time.perf_counter() - t0) / number)
        finally:
            gc.enable()
    return best


def timed(fn: Callable[[], object], repeat: int = 3) -> tuple[float, object]:
    """(best wall time of ``repeat`` calls, result of the last call) — for slow functions."""
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def peak_rss_mb() -> float:
    """Peak resident set size of this process, in MB.

    On Linux this reads ``VmHWM`` from ``/proc/self/status``: unlike ``ru_maxrss``, which Linux
    carries across ``execve`` (a child started by a large parent would report the parent's
    peak), it belongs to the current program only.
    """
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / 1024.0 if sys.platform != "darwin" else r / 2**20


def fmt_time(t: float | None) -> str:
    if t is None:
        return "—"
    if t < 1e-3:
        return f"{t * 1e6:.1f} µs"
    if t < 1:
        return f"{t * 1e3:.2f} ms"
    return f"{t:.2f} s"


def fmt_ratio(r: float | None) -> str:
    return "—" if r is None else f"{r:,.1f}×"


def print_table(title: str, columns: list[str], rows: list[list[str]], markdown: list[str] | None):
    """Print a rich table; append the same table in Markdown to ``markdown`` if given."""
    from rich.console import Console
    from rich.table import Table

    t = Table(title=title)
    for c in columns:
        t.add_column(c)
    for r in rows:
        t.add_row(*r)
    Console(soft_wrap=True, width=max(160, shutil.get_terminal_size().columns)).print(t)
    if markdown is not None:
        markdown.append(f"\n**{title}**\n")
        markdown.append("| " + " | ".join(columns) + " |")
        markdown.append("|" + "---|" * len(columns))
        for r in rows:
            markdown.append("| " + " | ".join(r) + " |")


def run_with_blas_threads(run: Callable[[object], None], args: object, threads: int | None) -> None:
    """``run(args)``, with BLAS/LAPACK limited to ``threads`` threads (threadpoolctl) if given."""
    if threads is None:
        run(args)
        return
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=threads):
        run(args)
