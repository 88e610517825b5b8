"""Gradient of the seed function λ = log(1 + yᵀ(A⊗B)⁻¹y) with respect to (A, B), m = n.

Times, in one run, on SPD factors and a single y (float64):

* ``kronkit.jax``  — ``jax.jit(jax.grad(kronkit.jax.log_quad))`` w.r.t. (A, B), LU
  (``assume="general"``) and Cholesky (``assume="spd"``);
* ``kronkit numpy`` — the NumPy closed form ``kronkit.log_quad_grad`` (the ratio baseline);
* ``jax dense``    — ``jax.jit(jax.grad(lambda A, B: jnp.log(1 + y @ jnp.linalg.solve(
  jnp.kron(A, B), y))))`` (only where P = m·n ≤ 4096);
* ``linear_operator`` — GPyTorch ``KroneckerProductLinearOperator(...).inv_quad(y)`` and
  ``backward`` to A and B, exact (``max_cholesky_size(10**9)``);
* the PyTorch rows of ``benchmarks/_bench_autodiff_torch.py`` (``kronkit.torch``) if present.

Each timing is the best of several repeats of a warm (compiled) call that waits for the
result (``block_until_ready``). Ratios are seconds / seconds of the NumPy closed form.

Threads: jaxlib's CPU LAPACK kernels (LU, Cholesky, triangular solves) call the OpenBLAS that
SciPy ships, from inside XLA's own thread pool; if OpenBLAS also starts its threads the cores
are oversubscribed and a 200×200 LU can take 100 ms instead of 0.5 ms. The JAX rows therefore
run under ``threadpoolctl.threadpool_limits(--jax-blas-threads)`` (default 1; 0 leaves
OpenBLAS alone). NumPy runs with its default threads, and once more with 1 BLAS thread.

Usage: ``python benchmarks/bench_autodiff.py [--quick] [--sizes 32,64,200,1000]``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

DENSE_MAX_P = 4096
BASELINE = "kronkit numpy (closed form)"


@contextlib.contextmanager
def blas_threads(n: int) -> Iterator[None]:
    """Limit OpenBLAS/MKL threads to ``n`` inside the block (``n = 0``: no limit)."""
    if n <= 0:
        yield
        return
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        print("note: threadpoolctl is not installed; BLAS threads not limited")
        yield
        return
    with threadpool_limits(limits=n):
        yield


def best_of(fn: Callable[[], object], repeats: int) -> float:
    """Best wall time of ``repeats`` calls of ``fn`` (which must wait for its result)."""
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def repeats_for(m: int, quick: bool) -> int:
    if quick:
        return 3
    return 7 if m <= 64 else (5 if m <= 200 else 3)


def spd(rng: np.random.Generator, n: int) -> np.ndarray:
    X = rng.standard_normal((n, n))
    A = X @ X.T / n + np.eye(n)
    return 0.5 * (A + A.T)


def problem(m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(m)
    return spd(rng, m), spd(rng, m), rng.standard_normal(m * m)


def rel_diff(g: tuple, ref: tuple) -> float:
    return max(
        float(np.max(np.abs(np.asarray(a) - b)) / max(np.max(np.abs(b)), 1e-300))
        for a, b in zip(g, ref, strict=True)
    )


def numpy_rows(sizes: list[int], quick: bool) -> tuple[list[dict], dict[int, tuple]]:
    rows: list[dict] = []
    grads: dict[int, tuple] = {}
    try:
        from kronkit import log_quad_grad
    except ImportError:
        print("note: kronkit.log_quad_grad is not available yet; NumPy baseline skipped")
        return rows, grads
    for m in sizes:
        A, B, y = problem(m)
        res = log_quad_grad([A, B], y)
        grads[m] = tuple(res.factors)
        for case, threads in ((BASELINE, 0), ("kronkit numpy (closed form), 1 BLAS thread", 1)):
            with blas_threads(threads):
                sec = best_of(lambda A=A, B=B, y=y: log_quad_grad([A, B], y),
                              repeats_for(m, quick))
            rows.append({"m": m, "case": case, "seconds": sec})
    return rows, grads


def jax_rows(sizes: list[int], quick: bool, ref: dict[int, tuple], threads: int) -> list[dict]:
    try:
        import jax
        import jax.numpy as jnp

        import kronkit.jax as kj
    except ImportError as exc:
        print(f"note: JAX rows skipped ({exc})")
        return []
    jax.config.update("jax_enable_x64", True)
    rows: list[dict] = []
    for m in sizes:
        A, B, y = (jnp.asarray(x) for x in problem(m))
        cases: dict[str, Callable] = {}
        for assume in ("general", "spd"):
            def lam(A, B, y=y, assume=assume):
                return kj.log_quad([A, B], y, assume=assume)

            cases[f"kronkit.jax grad ({'LU' if assume == 'general' else 'Cholesky'})"] = lam
        if m * m <= DENSE_MAX_P:
            def dense(A, B, y=y):
                return jnp.log(1.0 + y @ jnp.linalg.solve(jnp.kron(A, B), y))

            cases["jax dense grad"] = dense
        else:
            rows.append({"m": m, "case": "jax dense grad", "seconds": np.nan,
                         "note": f"skipped: P = {m * m} > {DENSE_MAX_P} (P×P dense)"})
        for case, f in cases.items():
            g = jax.jit(jax.grad(f, argnums=(0, 1)))
            with blas_threads(threads):
                out = jax.block_until_ready(g(A, B))  # compile + warm
                reps = repeats_for(m, quick) if "dense" not in case else 3  # dense: seconds
                sec = best_of(lambda g=g, A=A, B=B: jax.block_until_ready(g(A, B)), reps)
            row = {"m": m, "case": case, "seconds": sec}
            if m in ref:
                row["note"] = f"rel. diff to numpy {rel_diff(out, ref[m]):.1e}"
            rows.append(row)
    return rows


def linear_operator_rows(sizes: list[int], quick: bool, ref: dict[int, tuple]) -> list[dict]:
    try:
        import linear_operator
        import torch
        from linear_operator.operators import DenseLinearOperator, KroneckerProductLinearOperator
    except ImportError as exc:
        print(f"note: linear_operator rows skipped ({exc})")
        return []
    rows: list[dict] = []
    for m in sizes:
        A0, B0, y0 = (torch.from_numpy(x) for x in problem(m))

        def run(A0=A0, B0=B0, y0=y0):
            A = A0.clone().requires_grad_(True)
            B = B0.clone().requires_grad_(True)
            with linear_operator.settings.max_cholesky_size(10**9):
                K = KroneckerProductLinearOperator(DenseLinearOperator(A), DenseLinearOperator(B))
                torch.log(1.0 + K.inv_quad(y0)).backward()
            return A.grad, B.grad

        out = run()
        sec = best_of(run, repeats_for(m, quick))
        row = {"m": m, "case": "linear_operator (GPyTorch) backward", "seconds": sec}
        if m in ref:
            diff = rel_diff(tuple(t.numpy() for t in out), ref[m])
            row["note"] = f"rel. diff to numpy {diff:.1e}"
        rows.append(row)
    return rows


def torch_rows(sizes: list[int], quick: bool) -> list[dict]:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    try:
        mod = importlib.import_module("_bench_autodiff_torch")
    except ImportError as exc:
        print(f"note: benchmarks/_bench_autodiff_torch.py not available ({exc}); "
              "kronkit.torch rows skipped")
        return []
    return list(mod.torch_rows(sizes, quick))


def print_table(rows: list[dict], sizes: list[int]) -> None:
    base = {r["m"]: r["seconds"] for r in rows if r["case"] == BASELINE}
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:  # plain text
        Table = None
    header = ["m = n", "P", "case", "seconds", f"÷ {BASELINE}", "note"]
    body = []
    for m in sizes:
        for r in (r for r in rows if r["m"] == m):
            sec = r["seconds"]
            ok = sec == sec  # not NaN
            ratio = f"{sec / base[m]:.3g}" if ok and m in base else "—"
            body.append([str(m), str(m * m), r["case"], f"{sec:.3e}" if ok else "—", ratio,
                         str(r.get("note", ""))])
    if Table is None:
        print(" | ".join(header))
        for b in body:
            print(" | ".join(b))
        return
    table = Table(title="∇_(A,B) log(1 + yᵀ(A⊗B)⁻¹y), best of repeats (float64, SPD)")
    for h in header:
        table.add_column(h, justify="left" if h in ("case", "note") else "right")
    for b in body:
        table.add_row(*b)
    Console(width=160).print(table)


def print_targets(rows: list[dict], sizes: list[int]) -> None:
    sec = {(r["m"], r["case"]): r["seconds"] for r in rows}
    jax_best = {}
    for m in sizes:
        cands = [s for (mm, c), s in sec.items() if mm == m and c.startswith("kronkit.jax")]
        if cands:
            jax_best[m] = min(cands)
    print("targets:")
    for m in sizes:
        if m >= 200 and m in jax_best and (m, BASELINE) in sec:
            r = jax_best[m] / sec[(m, BASELINE)]
            print(f"  m = {m:5d}: kronkit.jax / numpy closed form = {r:.2f}  (target ≤ 2)")
    for m in sizes:
        dense = sec.get((m, "jax dense grad"), np.nan)
        if m in jax_best and dense == dense:
            print(f"  m = {m:5d}: jax dense / kronkit.jax = {dense / jax_best[m]:.3g}"
                  + ("  (target ≥ 1000)" if m == 64 else ""))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run on small sizes")
    parser.add_argument("--sizes", type=str, default=None,
                        help="comma-separated m = n values (default 32,64,200,1000)")
    parser.add_argument("--jax-blas-threads", type=int, default=1,
                        help="OpenBLAS threads during the JAX timings (0: no limit; default 1)")
    args = parser.parse_args(argv)
    if args.sizes:
        sizes = [int(s) for s in args.sizes.split(",")]
    else:
        sizes = [8, 16] if args.quick else [32, 64, 200, 1000]
    rows, ref = numpy_rows(sizes, args.quick)
    print(f"JAX rows: OpenBLAS threads limited to {args.jax_blas_threads or 'default'}")
    rows += jax_rows(sizes, args.quick, ref, args.jax_blas_threads)
    rows += linear_operator_rows(sizes, args.quick, ref)
    rows += torch_rows(sizes, args.quick)
    print_table(rows, sizes)
    print_targets(rows, sizes)


if __name__ == "__main__":
    main()
