"""Observations as dask arrays: the same fits on NumPy, on dask threads, on a dask.distributed
LocalCluster, and out of core.

Part 1 — data that fit in memory. The Gaussian flip-flop (``separable_mle``, method
"samples") and Kronecker PCA (``kronecker_pca``, 2 terms) on the same array, run

* with NumPy (BLAS with its default thread count, and with one BLAS thread),
* as ``da.from_array(X)`` on the threaded scheduler (one BLAS thread per task — dask supplies
  the parallelism; see docs/dask.md),
* on a ``LocalCluster`` with two single-threaded worker processes, the chunks already on the
  workers (``persist`` beforehand, not timed).

The flip-flop runs a fixed number of iterations (``tol=0``) so that every backend does the
same work; the ratio column is time / best NumPy time. The fitted factors are compared with
the NumPy fit (max relative difference) as a check that all backends compute the same thing.

Part 2 — out of core. A subprocess fits the Gaussian model to data generated lazily by dask
(``da.random.default_rng(0).standard_normal((N, p, q))`` scaled to have covariance
``diag(a²)⊗diag(b²)``), larger than this machine's memory, on the threaded scheduler, for a
fixed number of iterations (each flip-flop iteration is two passes over the data, plus one pass
up front for the mean: every pass regenerates the data chunk by chunk). It reports the time of
the first (mean) pass, the mean time of a statistic pass, the total, and the subprocess's peak
resident memory.

Run ``python benchmarks/bench_dask.py`` (about 10 minutes: part 2 dominates; ``--ooc-n`` and
``--ooc-iter`` change it, ``--skip-ooc`` skips it) or ``--quick`` (under a minute, a small
"out-of-core" run that fits in memory).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import warnings
from functools import partial

import numpy as np

import kronkit

sys.path.insert(0, os.path.dirname(__file__))
from _common import fmt_time, peak_rss_mb, print_table, timed


def _quiet_fit(X, n_iter):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", kronkit.ConvergenceWarning)
        return kronkit.separable_mle(X, tol=0.0, max_iter=n_iter, method="samples")


def _rel(a, b):
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


# ---------------------------------------------------------------------------------------
# Part 1: in memory
# ---------------------------------------------------------------------------------------
def in_memory(sizes, n_iter, n_chunks, repeat, md):
    import dask
    import dask.array as da
    from distributed import Client, LocalCluster
    from threadpoolctl import threadpool_limits

    fits = {
        "flip-flop": lambda Z: _quiet_fit(Z, n_iter),
        "Kronecker PCA (r=2)": lambda Z: kronkit.kronecker_pca(Z, 2),
    }

    def key(res):
        if isinstance(res, kronkit.SeparableMLEResult):
            return np.concatenate([res.row_covariance.ravel(), res.column_covariance.ravel()])
        return res.singular_values

    rows = []
    for name, fit in fits.items():
        N, p, q = sizes[name]
        rng = np.random.default_rng(0)
        a, b = np.linspace(0.5, 2.0, p), np.linspace(1.0, 3.0, q)
        X = rng.standard_normal((N, p, q)) * np.outer(a, b) + 1.0
        chunk = -(-N // n_chunks)
        times, checks = {}, {}
        times["NumPy (BLAS default threads)"], ref = timed(partial(fit, X), repeat)
        with threadpool_limits(1):
            times["NumPy (1 BLAS thread)"], _ = timed(partial(fit, X), repeat)
            Xd = da.from_array(X, chunks=(chunk, p, q))
            with dask.config.set(scheduler="threads"):
                times[f"dask threads ({n_chunks} chunks)"], res = timed(partial(fit, Xd), repeat)
                checks[f"dask threads ({n_chunks} chunks)"] = _rel(key(res), key(ref))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                              dashboard_address=None, silence_logs=50) as cluster, \
                    Client(cluster) as client:
                Xp = client.persist(da.from_array(X, chunks=(chunk, p, q)))
                from distributed import wait

                wait(Xp)
                label = "LocalCluster (2 workers × 1 thread)"
                times[label], res = timed(partial(fit, Xp), repeat)
                checks[label] = _rel(key(res), key(ref))
        base = min(times["NumPy (BLAS default threads)"], times["NumPy (1 BLAS thread)"])
        what = f"{name}, N×p×q = {N}×{p}×{q} ({N * p * q * 8 / 2**20:.0f} MB)"
        for backend, t in times.items():
            per = f"{fmt_time(t / n_iter)}/iter" if name == "flip-flop" else ""
            rows.append([what, backend, fmt_time(t), per, f"{t / base:.2f}×",
                         f"{checks[backend]:.1e}" if backend in checks else "(reference)"])
    title = (f"In memory: the same fit on each backend (flip-flop: {n_iter} iterations, tol=0), "
             f"best of {repeat}")
    print_table(title, ["fit", "backend", "time", "per iteration", "vs best NumPy",
                        "max rel. diff. vs NumPy"], rows, md)


# ---------------------------------------------------------------------------------------
# Part 2: out of core (in a subprocess, for its own peak memory)
# ---------------------------------------------------------------------------------------
def ooc_child(N, p, q, n_iter, chunk):
    """Runs in the subprocess: one lazily generated fit; prints a JSON line."""
    import dask
    import dask.array as da
    from threadpoolctl import threadpool_limits

    import kronkit._estimators.statistics as stats  # where every pass is reduced

    a, b = np.linspace(0.5, 2.0, p), np.linspace(1.0, 3.0, q)
    Z = da.random.default_rng(0).standard_normal((N, p, q), chunks=(chunk, p, q))
    X = Z * np.outer(a, b) + 1.0  # covariance diag(a²) ⊗ diag(b²), mean 1

    pass_times = []
    original = stats.tree_reduce_chunks

    def timed(*args, **kw):  # instrument: time every pass of the fit
        t0 = time.perf_counter()
        out = original(*args, **kw)
        pass_times.append(time.perf_counter() - t0)
        return out

    stats.tree_reduce_chunks = timed
    t0 = time.perf_counter()
    with threadpool_limits(1), dask.config.set(scheduler="threads"):
        fit = _quiet_fit(X, n_iter)
    total = time.perf_counter() - t0
    # error of the fitted A⊗B against the truth, via ⟨A⊗B, C⊗D⟩ = ⟨A, C⟩⟨B, D⟩
    A, B = fit.row_covariance, fit.column_covariance
    TA, TB = np.diag(a**2), np.diag(b**2)
    sq = (np.vdot(A, A) * np.vdot(B, B) - 2 * np.vdot(A, TA) * np.vdot(B, TB)
          + np.vdot(TA, TA) * np.vdot(TB, TB))
    rel_err = float(np.sqrt(max(sq, 0.0)) / np.sqrt(np.vdot(TA, TA) * np.vdot(TB, TB)))
    print(json.dumps({
        "total_s": total, "passes": len(pass_times), "first_pass_s": pass_times[0],
        "stat_pass_s": float(np.mean(pass_times[1:])), "peak_rss_mb": peak_rss_mb(),
        "rel_err": rel_err, "n_iter": fit.n_iter,
    }))


def out_of_core(N, p, q, n_iter, chunk, md):
    cmd = [sys.executable, __file__, "--ooc-child", str(N), str(p), str(q), str(n_iter),
           str(chunk)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        print(out.stdout, out.stderr, file=sys.stderr)
        raise SystemExit("the out-of-core subprocess failed")
    r = json.loads(out.stdout.strip().splitlines()[-1])
    size_gb = N * p * q * 8 / 1e9
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9
    rows = [[f"{N:,} × {p} × {q}", f"{size_gb:.1f} GB (machine: {mem_gb:.0f} GB)",
             str(r["n_iter"]), str(r["passes"]), fmt_time(r["first_pass_s"]),
             fmt_time(r["stat_pass_s"]), fmt_time(r["total_s"]),
             f"{r['peak_rss_mb']:.0f} MB", f"{r['rel_err']:.3f}"]]
    print_table(
        f"Out of core: Gaussian flip-flop on lazily generated data, threaded scheduler "
        f"(2 threads), chunks of {chunk} observations, {n_iter} iterations (tol=0)",
        ["N × p × q", "data size", "iterations", "passes", "mean pass", "statistic pass",
         "total", "peak RSS", "‖fit − truth‖_F/‖truth‖_F"], rows, md)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, a few seconds each")
    ap.add_argument("--skip-ooc", action="store_true", help="skip the out-of-core run")
    ap.add_argument("--ooc-n", type=int, default=500_000, help="N of the out-of-core run")
    ap.add_argument("--ooc-p", type=int, default=100)
    ap.add_argument("--ooc-q", type=int, default=100)
    ap.add_argument("--ooc-iter", type=int, default=3, help="flip-flop iterations (tol=0)")
    ap.add_argument("--ooc-chunk", type=int, default=1000, help="observations per chunk")
    ap.add_argument("--markdown", action="store_true", help="also print Markdown tables")
    ap.add_argument("--ooc-child", nargs=5, type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.ooc_child:
        ooc_child(*args.ooc_child)
        return
    md: list[str] | None = [] if args.markdown else None
    if args.quick:
        sizes = {"flip-flop": (4000, 12, 10), "Kronecker PCA (r=2)": (2000, 8, 6)}
        in_memory(sizes, n_iter=5, n_chunks=4, repeat=1, md=md)
        if not args.skip_ooc:
            out_of_core(N=20_000, p=20, q=20, n_iter=2, chunk=2000, md=md)
    else:
        sizes = {"flip-flop": (40_000, 30, 30), "Kronecker PCA (r=2)": (10_000, 20, 20)}
        in_memory(sizes, n_iter=10, n_chunks=8, repeat=2, md=md)
        if not args.skip_ooc:
            out_of_core(args.ooc_n, args.ooc_p, args.ooc_q, args.ooc_iter, args.ooc_chunk, md)
    if md is not None:
        print("\n".join(md))


if __name__ == "__main__":
    main()
