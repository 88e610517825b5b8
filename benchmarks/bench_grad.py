"""Benchmark: the seed's gradient, kronkit's closed form against its peers, in one run.

    python benchmarks/bench_grad.py            # full run (several minutes)
    python benchmarks/bench_grad.py --quick    # smoke run
    python benchmarks/bench_grad.py --markdown out.md   # also write the tables as Markdown
    python benchmarks/bench_grad.py --native-blas       # without OPENBLAS_CORETYPE/_L2_SIZE
    python benchmarks/bench_grad.py --sections hot,breakdown,batch   # the issue-14 figures

Compares ``kronkit.log_quad_grad`` (value + gradients for A and B, SPD factors, one y) with
GPyTorch ``linear_operator`` (``inv_quad`` + backward to the factors; exact inside
``max_cholesky_size(10**9)``, and its default, which switches to conjugate gradients above
P = 800), ``jax.grad`` of the dense formula, and the seed's Kronecker-SVD route
(``method="kpsvd"``); then the large cases against a count of dense m×m matrix products
measured in the same run, peak RSS, and a batch against the GFLOP/s of a plain dgemm.

Units: "products" is the time of one dense m×m matrix product (``X @ Y``, 2m³ flops) timed in
the same run; the closed form's floor is ≈ 8.7 m³ flops ≈ 4.35 products (two Choleskys, two
triangular inverses, five triangular products, two symmetric rank-k products). ``breakdown``
times each of those BLAS/LAPACK calls alone, against its flops, to show where the time goes.
The BLAS kernel that ran is printed first (threadpoolctl).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
import time
import warnings

sys.path.insert(0, os.path.dirname(__file__))
from _common import native_blas_reexec

native_blas_reexec()  # before NumPy loads OpenBLAS

import numpy as np  # noqa: E402

import kronkit  # noqa: E402
from _common import best_of, blas_report, fmt_ratio, fmt_time, peak_rss_mb, print_table  # noqa: E402

ALPHA = 1.0


def spd(rng, n):
    X = rng.standard_normal((n, n))
    return X @ X.T / n + np.eye(n)


def problem(m, seed=0):
    rng = np.random.default_rng(seed)
    return spd(rng, m), spd(rng, m), rng.standard_normal(m * m)


def kronkit_grad(A, B, y):
    g = kronkit.log_quad_grad(kronkit.Kron(A, B), y, alpha=ALPHA)
    return g.A, g.B


def lo_grad(A, B, y, exact=True):
    import linear_operator
    import torch
    from linear_operator.operators import DenseLinearOperator, KroneckerProductLinearOperator

    At = torch.tensor(A, requires_grad=True)
    Bt = torch.tensor(B, requires_grad=True)
    yt = torch.tensor(y)
    size = 10**9 if exact else linear_operator.settings.max_cholesky_size.value()
    with linear_operator.settings.max_cholesky_size(size), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        K = KroneckerProductLinearOperator(DenseLinearOperator(At), DenseLinearOperator(Bt))
        lam = torch.log(ALPHA + K.inv_quad(yt))
        lam.backward()
    return At.grad.numpy(), Bt.grad.numpy()


def jax_dense(m):
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)

    @jax.jit
    def g(A, B, y):
        def lam(A, B):
            return jnp.log(ALPHA + y @ jnp.linalg.solve(jnp.kron(A, B), y))

        return jax.grad(lam, argnums=(0, 1))(A, B)

    def run(A, B, y):
        a, b = g(A, B, y)
        return np.asarray(a.block_until_ready()), np.asarray(b)

    return run


def seed_grad(A, B, y):
    """The seed's Kronecker-SVD route (``method="kpsvd"``)."""
    g = kronkit.log_quad_grad(kronkit.Kron(A, B), y, alpha=ALPHA, method="kpsvd")
    return g.A, g.B


def rel(a, b):
    return float(max(np.max(np.abs(a[0] - b[0])) / np.max(np.abs(b[0])),
                     np.max(np.abs(a[1] - b[1])) / np.max(np.abs(b[1]))))


def matmul8(m, seed=1):
    rng = np.random.default_rng(seed)
    X, Y = rng.standard_normal((2, m, m))
    t = best_of(lambda: X @ Y, repeat=3)
    return 8 * t


def section_peers(sizes, quick, md):
    """Each library is timed in its own phase (kronkit for every size first, then each peer),
    so that no library's idle worker threads (torch's OpenMP pool, XLA's, OpenBLAS's) compete
    with the one being timed."""
    probs = {m: problem(m) for m in sizes}
    ref = {m: kronkit_grad(*probs[m]) for m in sizes}
    t_k = {m: best_of(lambda m=m: kronkit_grad(*probs[m]), repeat=3 if m >= 1000 else 10)
           for m in sizes}
    t_8 = {m: matmul8(m) for m in sizes if m >= 200}
    t_lo, err_lo, err_def = {}, {}, {}
    for m in sizes:
        t_lo[m] = best_of(lambda m=m: lo_grad(*probs[m]), repeat=1 if m >= 1000 else 3)
        err_lo[m] = rel(lo_grad(*probs[m]), ref[m])
        err_def[m] = rel(lo_grad(*probs[m], exact=False), ref[m])
    t_jax, err_jax = {}, {}
    for m in [m for m in sizes if m <= 64]:
        f = jax_dense(m)
        f(*probs[m])  # compile
        t_jax[m] = best_of(lambda m=m, f=f: f(*probs[m]), repeat=1 if m == 64 else 3)
        err_jax[m] = rel(f(*probs[m]), ref[m])
    t_seed, err_seed = {}, {}
    for m in [m for m in sizes if m <= (32 if quick else 64)]:
        t_seed[m] = best_of(lambda m=m: seed_grad(*probs[m]), repeat=1)
        err_seed[m] = rel(seed_grad(*probs[m]), ref[m])
    rows = []
    for m in sizes:
        tk = t_k[m]
        rows.append([
            str(m), f"{m * m:,}", fmt_time(tk),
            fmt_time(t_lo[m]), fmt_ratio(t_lo[m] / tk), f"{err_lo[m]:.1e}", f"{err_def[m]:.1e}",
            fmt_time(t_jax.get(m)), fmt_ratio(t_jax[m] / tk if m in t_jax else None),
            f"{err_jax[m]:.1e}" if m in err_jax else "—",
            fmt_time(t_seed.get(m)), fmt_ratio(t_seed[m] / tk if m in t_seed else None),
            f"{err_seed[m]:.1e}" if m in err_seed else "—",
            f"{tk / t_8[m]:.2f}" if m in t_8 else "—",
        ])
    cols = ["m=n", "P", "kronkit", "lin_op exact", "speed-up", "rel diff",
            "lin_op default (CG) rel err", "JAX dense", "speed-up", "rel diff",
            "seed route", "speed-up", "rel diff", "kronkit / 8 matmuls"]
    print_table("log_quad_grad (value + ∂A + ∂B, SPD, one y) vs peers", cols, rows, md)


def matmul1(m, seed=1):
    """Seconds of one m×m matrix product (2m³ flops): the faster of NumPy's ``X @ Y`` and SciPy's
    ``dgemm`` (NumPy and SciPy each ship their own OpenBLAS; kronkit's hot path runs on SciPy's),
    each after a pause that lets the other library's idle threads stop spinning."""
    from scipy.linalg import blas

    rng = np.random.default_rng(seed)
    X, Y = rng.standard_normal((2, m, m))
    Xf, Yf = np.asfortranarray(X), np.asfortranarray(Y)
    reps = 5 if m < 1000 else 3
    settle()
    t_np = best_of(lambda: X @ Y, repeat=reps)
    settle()
    t_sp = best_of(lambda: blas.dgemm(1.0, Xf, Yf), repeat=reps)
    return min(t_np, t_sp)


def settle(seconds=0.3):
    """Pause between phases: BLAS worker threads spin for a while after a call, and on two
    cores they would slow whatever is timed next."""
    time.sleep(seconds)


HOT_TARGETS = {8: ("≤ 25 µs", None), 64: (None, 5.0), 200: ("≤ 8 products", 5.0),
               1000: ("≤ 5.5 products", 2.0)}


def section_hot(sizes, md):
    """The issue-14 table: kronkit in products, vs exact linear_operator in the same run."""
    probs = {m: problem(m) for m in sizes}
    t_k, t_1, t_lo, err = {}, {}, {}, {}
    for m in sizes:  # kronkit and the product first, each library in its own phase
        kronkit_grad(*probs[m])
        settle()
        t_k[m] = best_of(lambda m=m: kronkit_grad(*probs[m]), repeat=7 if m < 1000 else 5)
        t_1[m] = matmul1(m)
    for m in sizes:
        settle()
        t_lo[m] = best_of(lambda m=m: lo_grad(*probs[m]), repeat=5 if m < 1000 else 3)
        err[m] = rel(kronkit_grad(*probs[m]), dense_grad(*probs[m])) if m <= 64 else None
    rows = []
    for m in sizes:
        goal_t, goal_lo = HOT_TARGETS.get(m, (None, None))
        rows.append([str(m), fmt_time(t_k[m]), fmt_time(t_1[m]), f"{t_k[m] / t_1[m]:.2f}",
                     goal_t or "—", fmt_time(t_lo[m]), fmt_ratio(t_lo[m] / t_k[m]),
                     f"≥ {goal_lo:g}×" if goal_lo else "—",
                     f"{err[m]:.1e}" if err[m] is not None else "—"])
    cols = ["m=n", "kronkit", "one m×m product", "kronkit in products (floor 4.35)", "target",
            "lin_op exact", "speed-up", "target", "rel diff vs dense np.kron"]
    print_table("Seed gradient hot path: log_quad_grad(Kron(A, B), y), SPD, one y", cols, rows, md)


def dense_grad(A, B, y):
    """∂λ/∂A, ∂λ/∂B from the dense matrix: −β⁻¹ (S⁻¹w)(S⁻¹w)ᵀ folded onto each factor."""
    S = np.kron(A, B)
    z = np.linalg.solve(S, y)
    beta = ALPHA + y @ z
    m, n = A.shape[0], B.shape[0]
    Z = z.reshape(m, n)
    return -(Z @ B @ Z.T) / beta, -(Z.T @ A @ Z) / beta


def section_breakdown(sizes, md):
    """Each BLAS/LAPACK call of the hot path alone, against its flops (the kernel floor)."""
    from scipy.linalg import blas, lapack

    from kronkit._factor import tri_inverse_lower

    rows = []
    for m in sizes:
        A, B, y = problem(m)
        L = lapack.dpotrf(A, lower=1, clean=1)[0]
        M = tri_inverse_lower(L)
        Xt = np.asfortranarray(y.reshape(m, m).T)
        t1 = matmul1(m)
        anorm = float(np.abs(A).sum(0).max())
        calls = [
            ("potrf (Cholesky)", 2, m**3 / 3, functools.partial(lapack.dpotrf, A.T, lower=1, clean=1)),
            ("triangular inverse", 2, m**3 / 3, functools.partial(tri_inverse_lower, L)),
            ("trmm (triangular product)", 5, m**3,
             functools.partial(blas.dtrmm, 1.0, M, Xt, side=0, lower=1)),
            ("syrk (X Xᵀ, NumPy)", 2, m**3, functools.partial(np.matmul, Xt.T, Xt)),
            ("pocon (condition estimate)", 2, 0.0, functools.partial(lapack.dpocon, L, anorm, uplo="L")),
        ]
        total = 0.0
        for name, count, flops, fn in calls:
            t = best_of(fn, repeat=5)
            total += count * t
            rate = f"{flops / t / 1e9:.1f}" if flops else "—"
            rows.append([str(m), name, str(count), fmt_time(t), rate,
                         f"{2 * m**3 / t1 / 1e9:.1f}", f"{count * t / t1:.2f}"])
        settle()
        t_all = best_of(lambda A=A, B=B, y=y: kronkit_grad(A, B, y), repeat=5)
        rows.append([str(m), "sum of the calls", "", fmt_time(total), "", "", f"{total / t1:.2f}"])
        rows.append([str(m), "log_quad_grad (whole call)", "1", fmt_time(t_all), "", "",
                     f"{t_all / t1:.2f}"])
    cols = ["m=n", "call", "count", "time per call", "GFLOP/s", "GEMM GFLOP/s (same m)",
            "count × time, in products"]
    print_table("Where the time goes: the hot path's BLAS/LAPACK calls, one at a time", cols,
                rows, md)


def _large_child(m):
    """Run in a subprocess: time kronkit at m=n and report its own peak RSS."""
    A, B, y = problem(m)
    rss0 = peak_rss_mb()
    kronkit_grad(A, B, y)  # warm-up (factorisations are per call: a new Kron each time)
    t = best_of(lambda: kronkit_grad(A, B, y), repeat=3)
    print(json.dumps({"m": m, "seconds": t, "peak_rss_mb": peak_rss_mb(), "rss_inputs_mb": rss0}))


def section_large(sizes, md):
    rows = []
    for m in sizes:
        out = subprocess.run([sys.executable, __file__, "--child", str(m)], capture_output=True,
                             text=True, check=True)
        res = json.loads(out.stdout.strip().splitlines()[-1])
        t8 = matmul8(m)
        rows.append([str(m), f"{m * m:,}", fmt_time(res["seconds"]), fmt_time(t8),
                     f"{res['seconds'] / t8:.2f}", f"{res['peak_rss_mb']:.0f} MB",
                     f"{res['rss_inputs_mb']:.0f} MB"])
    cols = ["m=n", "P", "kronkit", "8 dense m×m matmuls", "ratio (target ≤ 1)", "peak RSS",
            "RSS after inputs"]
    print_table("Large single-y gradients vs 8 dense m×m matrix products (same run)", cols, rows, md)


def section_batch(N, m, md):
    rng = np.random.default_rng(3)
    A, B = spd(rng, m), spd(rng, m)
    Y = rng.standard_normal((N, m * m))
    K = kronkit.Kron(A, B)
    kronkit.log_quad_grad(K, Y[:10])
    t = best_of(lambda: kronkit.log_quad_grad(K, Y, alpha=ALPHA), repeat=3)
    # flops: the batched path does four GEMM products per observation — W_i B⁻¹,
    # A⁻¹(W_i B⁻¹), Σ c_i Z_iᵀW_i and Σ c_i Z_i W_iᵀ — 2m³ each, 8·N·m³ in all. (A route through
    # triangular solves needs 6·N·m³, but OpenBLAS runs trsm with wide right-hand sides far below
    # GEMM speed, so it is slower; its count is shown too.)
    flops = N * 8.0 * m**3
    X1, X2 = rng.standard_normal((2, 2048, 2048))
    t_gemm = best_of(lambda: X1 @ X2, repeat=5)
    gemm_rate = 2 * 2048**3 / t_gemm / 1e9
    rate = flops / t / 1e9
    rows = [[str(N), str(m), fmt_time(t), f"{rate:.1f}", f"{gemm_rate:.1f}",
             f"{100 * rate / gemm_rate:.0f}%", f"{0.75 * rate:.1f} ({75 * rate / gemm_rate:.0f}%)"]]
    cols = ["N", "m=n", "kronkit (sum over batch)", "GFLOP/s (8·N·m³ performed)", "dgemm GFLOP/s",
            "fraction of dgemm (target ≥ 80%)", "by the 6·N·m³ triangular count"]
    print_table("Batched gradient throughput", cols, rows, md)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--markdown", default=None)
    ap.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--sections", default="hot,breakdown,peers,large,batch")
    ap.add_argument("--native-blas", action="store_true",
                    help="run without OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE (both unset together)")
    args = ap.parse_args()
    if args.child is not None:
        _large_child(args.child)
        return
    md: list[str] = []
    sections = args.sections.split(",")
    print(blas_report())
    md.append(f"\n{blas_report()}\n")
    if "hot" in sections:
        section_hot([8, 32] if args.quick else [8, 64, 200, 1000], md)
    if "breakdown" in sections:
        section_breakdown([64] if args.quick else [200, 1000], md)
    if "peers" in sections:
        section_peers([8, 32] if args.quick else [8, 32, 64, 200, 1000], args.quick, md)
    if "large" in sections:
        section_large([300] if args.quick else [1000, 3000], md)
    if "batch" in sections:
        section_batch(50 if args.quick else 1000, 64 if args.quick else 256, md)
    if args.markdown:
        with open(args.markdown, "w") as fh:
            fh.write("\n".join(md) + "\n")


if __name__ == "__main__":
    main()
