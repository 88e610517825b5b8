"""Shared helpers for the benchmark scripts: timing, peak memory, tables, BLAS hygiene."""

from __future__ import annotations

import gc
import os
import resource
import shutil
import sys
import time
from collections.abc import Callable

# Variables that pin OpenBLAS to a kernel family chosen by hand (some machines set them
# globally; with a current NumPy they select slower kernels than OpenBLAS's own detection).
BLAS_PIN_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
NATIVE_BLAS_FLAG = "--native-blas"


def native_blas_reexec(argv: list[str] | None = None) -> None:
    """With ``--native-blas`` on the command line, run this benchmark again without
    ``OPENBLAS_CORETYPE`` and ``OPENBLAS_L2_SIZE`` (both together), so that OpenBLAS picks its
    kernels by itself. Call before NumPy is imported (OpenBLAS reads them when it loads).

    For benchmark runs only: the tests and CI never change these variables.
    """
    argv = sys.argv if argv is None else argv
    if NATIVE_BLAS_FLAG not in argv:
        return
    if "numpy" in sys.modules:
        raise RuntimeError("native_blas_reexec() must run before NumPy is imported")
    if not any(v in os.environ for v in BLAS_PIN_VARS):
        return
    env = {k: v for k, v in os.environ.items() if k not in BLAS_PIN_VARS}
    os.execve(sys.executable, [sys.executable, *argv], env)


def blas_report() -> str:
    """One line naming the BLAS that runs (threadpoolctl: library, kernel family, threads,
    version) and the pinning variables as they are in this process."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:  # pragma: no cover - threadpoolctl is a dependency
        return "BLAS: threadpoolctl not installed"
    import numpy  # noqa: F401  (loads numpy's OpenBLAS, so threadpoolctl sees it)
    import scipy.linalg  # noqa: F401

    libs = [f"{i.get('internal_api')} {i.get('version')} kernel={i.get('architecture', '?')} "
            f"threads={i.get('num_threads')} ({os.path.basename(i.get('filepath', ''))})"
            for i in threadpool_info() if i.get("user_api") == "blas"]
    pins = ", ".join(f"{v}={os.environ.get(v, '(unset)')}" for v in BLAS_PIN_VARS)
    return "BLAS: " + ("; ".join(libs) or "none found") + f" | {pins}"


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
