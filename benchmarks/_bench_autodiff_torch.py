"""PyTorch rows of the autodiff benchmark: ∇_(A,B) of λ = log(1 + yᵀ(A⊗B)⁻¹y), m = n.

Times, in one run, forward + backward to the SPD factors (A, B) (float64, a single y,
``torch.set_num_threads`` left at its default) of

* ``torch kronkit``         — ``kronkit.torch.log_quad([A, B], y)`` (closed-form backward;
  Cholesky fast path for SPD factors);
* ``torch linear_operator`` — GPyTorch ``log(1 + KroneckerProductLinearOperator(
  DenseLinearOperator(A), DenseLinearOperator(B)).inv_quad(y))`` inside
  ``linear_operator.settings.max_cholesky_size(10**9)`` (exact Cholesky, no CG).

The two are timed alternately (one call of each per round, two warm-up rounds) and each
timing is the best over the rounds, so that a busy spell of a shared machine slows both alike.
``rel_err`` is the largest ``max|g − g_kronkit| / max|g_kronkit|`` over the two factor
gradients.

``benchmarks/bench_autodiff.py`` imports :func:`torch_rows`; run this file alone for a table
with the speed-ups against issue 14's targets (≥ 3× at m = 200, ≥ 2× at m = 1000):
``python benchmarks/_bench_autodiff_torch.py [--quick] [--sizes 64,200,1000] [--threads N]
[--native-blas] [--breakdown]``. It prints the BLAS report (``_common.blas_report``: NumPy/SciPy's OpenBLAS;
PyTorch's own MKL is named in the title) and PyTorch's thread count. On a busy machine, small
sizes with several threads are dominated by the OpenMP/MKL thread wake-up (~10 ms per threaded
LAPACK call, for both libraries); ``--threads 1`` gives steadier numbers there.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

if __name__ == "__main__":  # --native-blas: re-run without the OpenBLAS pins, before NumPy loads
    from _common import native_blas_reexec

    native_blas_reexec()

import numpy as np

CASE_KRONKIT = "torch kronkit"
CASE_LINOP = "torch linear_operator"
TARGETS = {200: 3.0, 1000: 2.0}  # issue 14: kronkit.torch vs linear_operator, forward + backward


def _best_alternating(fns: list[Callable[[], object]], rounds: int) -> list[float]:
    """Best wall time of each of ``fns``, called in turn for ``rounds`` rounds (after two
    warm-up rounds)."""
    best = [np.inf] * len(fns)
    for r in range(rounds + 2):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            fn()
            if r >= 2:
                best[i] = min(best[i], time.perf_counter() - t0)
    return [float(b) for b in best]


def _repeats(m: int, quick: bool) -> int:
    if quick:
        return 3
    return 30 if m <= 200 else 8


def _problem(m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """SPD A, B (m×m, well conditioned) and y of length m², seeded by m."""
    rng = np.random.default_rng(m)

    def spd() -> np.ndarray:
        X = rng.standard_normal((m, m))
        A = X @ X.T / m + np.eye(m)
        return 0.5 * (A + A.T)

    return spd(), spd(), rng.standard_normal(m * m)


def _rel_err(g: tuple, ref: tuple) -> float:
    return max(
        float((a - b).abs().max() / b.abs().max().clamp_min(1e-300))
        for a, b in zip(g, ref, strict=True)
    )


def torch_rows(sizes: list[int], quick: bool) -> list[dict]:
    """Rows ``{"m", "case", "seconds", "rel_err", "note"}`` for each m in ``sizes``.

    ``case`` is ``"torch kronkit"`` or ``"torch linear_operator"``; linear_operator rows are
    left out (with a printed note) if it is not installed.
    """
    import torch

    import kronkit.torch as kt

    try:
        import linear_operator
        from linear_operator.operators import DenseLinearOperator, KroneckerProductLinearOperator
    except ImportError as exc:
        print(f"note: linear_operator rows skipped ({exc})")
        linear_operator = None

    rows: list[dict] = []
    for m in sizes:
        A0, B0, y = (torch.from_numpy(x) for x in _problem(m))

        def run_kronkit(A0=A0, B0=B0, y=y):
            A = A0.clone().requires_grad_(True)
            B = B0.clone().requires_grad_(True)
            return torch.autograd.grad(kt.log_quad([A, B], y), (A, B))

        ref = run_kronkit()  # reference gradients
        if linear_operator is None:
            (sec,) = _best_alternating([run_kronkit], _repeats(m, quick))
            rows.append({"m": m, "case": CASE_KRONKIT, "seconds": sec, "rel_err": 0.0})
            continue

        def run_linop(A0=A0, B0=B0, y=y):
            A = A0.clone().requires_grad_(True)
            B = B0.clone().requires_grad_(True)
            with linear_operator.settings.max_cholesky_size(10**9):
                K = KroneckerProductLinearOperator(DenseLinearOperator(A), DenseLinearOperator(B))
                loss = torch.log(1.0 + K.inv_quad(y))
            return torch.autograd.grad(loss, (A, B))

        err = _rel_err(run_linop(), ref)
        sec, sec_lo = _best_alternating([run_kronkit, run_linop], _repeats(m, quick))
        rows.append({"m": m, "case": CASE_KRONKIT, "seconds": sec, "rel_err": 0.0})
        rows.append({"m": m, "case": CASE_LINOP, "seconds": sec_lo, "rel_err": err,
                     "note": f"rel. grad diff to kronkit.torch {err:.1e}"})
    return rows


def breakdown(m: int, quick: bool) -> None:
    """Print the time of each kernel call the Cholesky route makes at size m (in the layouts
    it uses), against its flops, next to one m×m product: where the time of a call goes."""
    import torch

    from kronkit._factor import is_symmetric, rcond_from_factor
    from kronkit._torch_chol import gram

    A, B, y = (torch.from_numpy(x) for x in _problem(m))
    L = torch.linalg.cholesky(A)
    W = y.view(m, m)

    def tri(X, trans, copy=True):  # the route's solve: in place on a layout-keeping copy
        out = X.clone() if copy else X
        return torch.linalg.solve_triangular(L.mT if trans else L, out, upper=trans, out=out)

    X = tri(W, False)
    calls = {  # name: (function, flops, calls per forward + backward)
        "potrf (cholesky_ex)": (lambda: torch.linalg.cholesky_ex(A), m**3 / 3, 2),
        "trsm, forward mode 0 (copy + in place)": (lambda: tri(W, False), m**3, 1),
        "trsm, forward mode 1 (in place)": (lambda: tri(X.clone().mT, False, False), m**3, 1),
        "trsm, backward mode 0": (lambda: tri(X, True), m**3, 1),
        "trsm, backward mode 1": (lambda: tri(X.mT, True), m**3, 1),
        "X Xᵀ (gram, syrk role)": (lambda: gram(X, -0.5), m**3, 2),
        "symmetry check (host)": (lambda: is_symmetric(A.numpy(), 2.2e-16), 0, 2),
        "rcond (pocon, host)": (lambda: rcond_from_factor(A.numpy(), L.numpy(), True), 0, 2),
        "m×m product (reference)": (lambda: A @ B, 2 * m**3, 0),
    }
    names = list(calls)
    best = _best_alternating([calls[k][0] for k in names], _repeats(m, quick))
    t = dict(zip(names, best, strict=True))
    total = sum(t[k] * calls[k][2] for k in names)
    print(f"breakdown m = {m} ({torch.get_num_threads()} threads): time per call, GF/s on its flops")
    for k in names:
        fl, n = calls[k][1], calls[k][2]
        rate = f"{fl / t[k] / 1e9:6.1f} GF/s" if fl else " " * 11
        print(f"  {k:40s} {t[k] * 1e3:9.3f} ms ×{n} {rate}")
    floor = 8.67 * m**3 / (2 * m**3 / t["m×m product (reference)"])
    print(f"  sum of the route's calls {total * 1e3:.3f} ms; 8.67 m³ flops at the product's rate "
          f"{floor * 1e3:.3f} ms")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run on small sizes")
    parser.add_argument("--sizes", type=str, default=None,
                        help="comma-separated m = n values (default 64,200,1000)")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch.set_num_threads for this run (default 0: leave torch's default)")
    parser.add_argument("--native-blas", action="store_true",
                        help="run without OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE (re-executes)")
    parser.add_argument("--breakdown", action="store_true",
                        help="also time every kernel call of kronkit.torch's route against its flops")
    args = parser.parse_args(argv)
    if args.sizes:
        sizes = [int(s) for s in args.sizes.split(",")]
    else:
        sizes = [16, 32] if args.quick else [64, 200, 1000]

    import torch

    from _common import blas_report

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    print(blas_report())
    print(f"PyTorch {torch.__version__}: {torch.get_num_threads()} threads, "
          f"BLAS/LAPACK {'MKL' if torch.backends.mkl.is_available() else 'other'}")
    rows = torch_rows(sizes, args.quick)
    sec = {(r["m"], r["case"]): r for r in rows}
    header = ["m = n", "P", "kronkit.torch", "linear_operator", "speed-up", "rel. grad diff"]
    body = []
    for m in sizes:
        kk = sec[(m, CASE_KRONKIT)]["seconds"]
        lo = sec.get((m, CASE_LINOP))
        body.append([
            str(m), str(m * m), f"{kk * 1e3:.3f} ms",
            "—" if lo is None else f"{lo['seconds'] * 1e3:.3f} ms",
            "—" if lo is None else f"{lo['seconds'] / kk:.2f}×",
            "—" if lo is None else f"{lo['rel_err']:.1e}",
        ])
    title = (f"∇_(A,B) log(1 + yᵀ(A⊗B)⁻¹y), forward + backward, float64, SPD, best of repeats "
             f"(torch {torch.__version__}, {torch.get_num_threads()} threads)")
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        print(title)
        print(" | ".join(header))
        for b in body:
            print(" | ".join(b))
    else:
        table = Table(title=title)
        for h in header:
            table.add_column(h, justify="right")
        for b in body:
            table.add_row(*b)
        Console(width=140).print(table)
    if args.breakdown:
        for m in sizes:
            breakdown(m, args.quick)
    for m in sizes:
        lo = sec.get((m, CASE_LINOP))
        if m in TARGETS and lo is not None:
            ratio = lo["seconds"] / sec[(m, CASE_KRONKIT)]["seconds"]
            verdict = "met" if ratio >= TARGETS[m] else "NOT met"
            print(f"target m = {m}: linear_operator / kronkit.torch = {ratio:.2f} "
                  f"(≥ {TARGETS[m]:g}: {verdict})")


if __name__ == "__main__":
    main(sys.argv[1:])
