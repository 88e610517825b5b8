"""Gradient of the seed function λ = log(1 + yᵀ(A⊗B)⁻¹y) with respect to (A, B), m = n.

Times, in one run, on SPD factors and a single y (float64):

* ``kronkit numpy`` — the NumPy closed form ``kronkit.log_quad_grad(kronkit.Kron(A, B), y)``
  (the ratio baseline; the ``Kron`` is built inside the timed call, as the JAX rows factor
  inside theirs);
* ``kronkit.jax`` — ``jax.jit(jax.grad(lambda A, B: kronkit.jax.log_quad([A, B], y),
  argnums=(0, 1)))`` with the default ``assume="auto"`` (under ``jit`` it chooses Cholesky or
  LU at run time), and with ``assume="general"`` (LU) and ``"spd"`` (Cholesky);
* ``jax dense`` — ``jax.jit(jax.grad(lambda A, B: jnp.log(1 + y @ jnp.linalg.solve(
  jnp.kron(A, B), y))))`` (only where P = m·n ≤ 4096);
* ``linear_operator`` — GPyTorch ``KroneckerProductLinearOperator(...).inv_quad(y)`` and
  ``backward`` to A and B, exact (``max_cholesky_size(10**9)``);
* the PyTorch rows of ``benchmarks/_bench_autodiff_torch.py`` (``kronkit.torch``) if present.

Each timing is the best over several rounds; within a size, every case runs once per round
(alternately), so a busy spell of the shared machine slows all of them alike. JAX calls wait
for their result (``block_until_ready``). Ratios are seconds / seconds of the NumPy closed
form in the same run; the last lines print issue 14's target for ``kronkit.jax``.

Threads: jaxlib's CPU LAPACK kernels (Cholesky, LU, triangular solves) call the OpenBLAS that
SciPy ships, and XLA's CPU runtime starts independent operations together, so two LAPACK calls
each with every BLAS thread used to share the cores (a 200×200 LU took 100 ms instead of
0.5 ms); the benchmark therefore limited OpenBLAS to one thread for JAX. ``kronkit.jax`` now
chains its LAPACK calls (one at a time), and with one BLAS thread its triangular solves run at
half speed on two cores (1000×1000: 30 ms instead of 17 ms), so the JAX rows now run with
OpenBLAS's default threads (``--jax-blas-threads 0``, the default; 1 reproduces the old setup).
NumPy runs with its default threads, and once more with 1 BLAS thread.

Usage: ``python benchmarks/bench_autodiff.py [--quick] [--sizes 32,64,200,1000]
[--rounds 5] [--jax-blas-threads 0] [--breakdown] [--native-blas]``. ``--breakdown`` times
each kernel of ``kronkit.jax``'s Cholesky route alone (jitted) against its flops.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import blas_report, native_blas_reexec

native_blas_reexec()  # --native-blas: before NumPy loads OpenBLAS

import numpy as np  # noqa: E402

DENSE_MAX_P = 4096
BASELINE = "kronkit numpy (closed form)"
JAX_DEFAULT = "kronkit.jax grad (auto)"
TARGET_M = 1000
TARGET_RATIO = 1.2


@contextlib.contextmanager
def blas_threads(n: int) -> Iterator[None]:
    """Limit OpenBLAS/MKL threads to ``n`` inside the block (``n = 0``: no limit)."""
    if n <= 0:
        yield
        return
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=n):
        yield


def once(fn: Callable[[], object], calls: int) -> float:
    """Best wall time of ``calls`` calls of ``fn`` (which must wait for its result)."""
    best = np.inf
    for _ in range(calls):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def calls_for(m: int) -> int:
    return 5 if m <= 64 else (3 if m <= 200 else 1)


def alternate(cases: dict[str, tuple[Callable[[], object], int]], m: int,
              rounds: int) -> dict[str, float]:
    """``{case: best seconds}``: each round runs every case (``fn``, BLAS threads) in turn."""
    best = dict.fromkeys(cases, np.inf)
    for _ in range(rounds):
        for case, (fn, threads) in cases.items():
            with blas_threads(threads):
                best[case] = min(best[case], once(fn, calls_for(m)))
    return best


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


def numpy_jax_rows(sizes: list[int], rounds: int, jax_threads: int
                   ) -> tuple[list[dict], dict[int, tuple]]:
    """The NumPy closed form and the JAX rows, timed alternately within each size."""
    from kronkit import Kron, log_quad_grad

    try:
        import jax
        import jax.numpy as jnp

        import kronkit.jax as kj

        jax.config.update("jax_enable_x64", True)
    except ImportError as exc:
        print(f"note: JAX rows skipped ({exc})")
        jax = None
    rows: list[dict] = []
    grads: dict[int, tuple] = {}
    for m in sizes:
        A, B, y = problem(m)
        grads[m] = tuple(log_quad_grad(Kron(A, B), y).factors)
        cases: dict[str, tuple[Callable[[], object], int]] = {
            BASELINE: (lambda A=A, B=B, y=y: log_quad_grad(Kron(A, B), y), 0),
            "kronkit numpy (closed form), 1 BLAS thread":
                (lambda A=A, B=B, y=y: log_quad_grad(Kron(A, B), y), 1),
        }
        notes: dict[str, str] = {}
        if jax is not None:
            Aj, Bj, yj = (jnp.asarray(x) for x in (A, B, y))
            fns: dict[str, Callable] = {}
            for assume, label in (("auto", "auto"), ("general", "LU"), ("spd", "Cholesky")):
                fns[f"kronkit.jax grad ({label})"] = (
                    lambda A, B, yj=yj, assume=assume: kj.log_quad([A, B], yj, assume=assume))
            if m * m <= DENSE_MAX_P:
                fns["jax dense grad"] = (
                    lambda A, B, yj=yj: jnp.log(1.0 + yj @ jnp.linalg.solve(jnp.kron(A, B), yj)))
            else:
                rows.append({"m": m, "case": "jax dense grad", "seconds": np.nan,
                             "note": f"skipped: P = {m * m} > {DENSE_MAX_P} (P×P dense)"})
            for case, f in fns.items():
                g = jax.jit(jax.grad(f, argnums=(0, 1)))
                with blas_threads(jax_threads):
                    out = jax.block_until_ready(g(Aj, Bj))  # compile + warm
                notes[case] = f"rel. diff to numpy {rel_diff(out, grads[m]):.1e}"
                cases[case] = (lambda g=g, Aj=Aj, Bj=Bj: jax.block_until_ready(g(Aj, Bj)),
                               jax_threads)
        best = alternate(cases, m, rounds if m * m <= DENSE_MAX_P or m <= 1000 else 2)
        rows += [{"m": m, "case": c, "seconds": t, **({"note": notes[c]} if c in notes else {})}
                 for c, t in best.items()]
    return rows, grads


def linear_operator_rows(sizes: list[int], rounds: int, ref: dict[int, tuple]) -> list[dict]:
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
        sec = min(once(run, calls_for(m)) for _ in range(rounds))
        row = {"m": m, "case": "linear_operator (GPyTorch) backward", "seconds": sec}
        if m in ref:
            diff = rel_diff(tuple(t.numpy() for t in out), ref[m])
            row["note"] = f"rel. diff to numpy {diff:.1e}"
        rows.append(row)
    return rows


def torch_rows(sizes: list[int], quick: bool) -> list[dict]:
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
    print("targets:")
    for m in sizes:
        base, ours = sec.get((m, BASELINE)), sec.get((m, JAX_DEFAULT))
        if base is None or ours is None:
            continue
        line = f"kronkit.jax (jit) / NumPy closed form at m = {m} = {ours / base:.2f}"
        if m == TARGET_M:
            ok = "met" if ours / base <= TARGET_RATIO else "NOT met"
            line = (f"kronkit.jax (jit) / NumPy closed form at m = {m} (target ≤ {TARGET_RATIO}): "
                    f"{ours / base:.2f}  ({ok}; {ours * 1e3:.1f} ms vs {base * 1e3:.1f} ms)")
        print("  " + line)
    for m in sizes:
        dense = sec.get((m, "jax dense grad"), np.nan)
        if (m, JAX_DEFAULT) in sec and dense == dense:
            print(f"  m = {m:5d}: jax dense / kronkit.jax = {dense / sec[(m, JAX_DEFAULT)]:.3g}")


def jax_breakdown(m: int, rounds: int, threads: int) -> None:
    """Each kernel of ``kronkit.jax``'s Cholesky route at size ``m``, jitted alone (best over
    ``rounds``), against its flops, next to the whole jitted gradient and one m×m product."""
    import jax
    import jax.numpy as jnp

    import kronkit.jax as kj
    from kronkit._factor import is_symmetric
    from kronkit._jax_factor import traced_rcond

    jax.config.update("jax_enable_x64", True)
    A, B, y = (jnp.asarray(x) for x in problem(m))
    W = y.reshape(m, m)
    C = jnp.linalg.cholesky(A)
    tri = jax.lax.linalg.triangular_solve
    eps = float(jnp.finfo(A.dtype).eps)
    grad = jax.jit(jax.grad(lambda A, B: kj.log_quad([A, B], y), argnums=(0, 1)))
    # arguments, not constants: XLA would fold constant operands at compile time
    pieces: list[tuple[str, int, Callable, tuple, float]] = [
        ("whole gradient (auto)", 1, grad, (A, B), 0.0),
        ("Cholesky (potrf)", 2, jax.jit(jax.lax.linalg.cholesky), (A,), m**3 / 3),
        ("triangular solve C⁻¹W (trsm)", 4,
         jax.jit(lambda C, W: tri(C, W.T, left_side=False, lower=True).T), (C, W), m**3),
        ("product PPᵀ (dot)", 2, jax.jit(lambda W: W @ W.T), (W,), 2 * m**3),
        ("traced rcond (Hager–Higham)", 2,
         jax.jit(lambda A, C: traced_rcond(A, C, "cholesky")), (A, C), 0.0),
        ("symmetry test", 2, jax.jit(lambda A: is_symmetric(A, eps)), (A,), 0.0),
        ("one m×m elementwise pass", 1, jax.jit(lambda W: W * 2.0), (W,), 0.0),
    ]
    best = dict.fromkeys(range(len(pieces)), np.inf)
    with blas_threads(threads):
        for _, _, fn, args, _ in pieces:
            jax.block_until_ready(fn(*args))
        for _ in range(rounds):
            for i, (_, _, fn, args, _) in enumerate(pieces):
                best[i] = min(best[i], once(lambda fn=fn, a=args: jax.block_until_ready(fn(*a)), 2))
    a = np.random.default_rng(0).standard_normal((m, m))
    gemm = min(once(lambda: a @ a, 2) for _ in range(rounds))
    print(f"\nkronkit.jax breakdown at m = {m} (jitted kernels alone; one NumPy m×m product "
          f"{gemm * 1e3:.2f} ms):")
    total = 0.0
    for i, (name, count, _, _, flops) in enumerate(pieces):
        rate = f"{flops / best[i] / 1e9:6.1f} GFLOP/s" if flops else " " * 14
        line = f"  {name:32s} {count} × {best[i] * 1e3:8.3f} ms  {rate}"
        if i:
            total += count * best[i]
        print(line + (f"  = {best[i] / gemm:.2f} products" if not i else ""))
    print(f"  {'sum of the kernels':32s}     {total * 1e3:8.3f} ms  (= {total / gemm:.2f} products; "
          f"the rest of the whole is copies, scalings and scheduling)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run on small sizes")
    parser.add_argument("--sizes", type=str, default=None,
                        help="comma-separated m = n values (default 32,64,200,1000)")
    parser.add_argument("--rounds", type=int, default=None,
                        help="rounds of alternate timings per size (default 5; --quick 2)")
    parser.add_argument("--jax-blas-threads", type=int, default=0,
                        help="OpenBLAS threads during the JAX timings (0: no limit, the default)")
    parser.add_argument("--breakdown", action="store_true",
                        help="also time each kernel of kronkit.jax's Cholesky route at the largest m")
    parser.add_argument("--native-blas", action="store_true",
                        help="re-run without OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE (benchmarks only)")
    args = parser.parse_args(argv)
    if args.sizes:
        sizes = [int(s) for s in args.sizes.split(",")]
    else:
        sizes = [8, 16] if args.quick else [32, 64, 200, 1000]
    rounds = args.rounds or (2 if args.quick else 5)
    print(blas_report())
    limit = args.jax_blas_threads
    print(f"JAX rows: OpenBLAS threads {f'limited to {limit}' if limit > 0 else 'at their default'}")
    rows, ref = numpy_jax_rows(sizes, rounds, args.jax_blas_threads)
    rows += linear_operator_rows(sizes, rounds, ref)
    rows += torch_rows(sizes, args.quick)
    print_table(rows, sizes)
    print_targets(rows, sizes)
    if args.breakdown:
        jax_breakdown(max(sizes), rounds, args.jax_blas_threads)


if __name__ == "__main__":
    main()
