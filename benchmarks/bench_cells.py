"""Benchmark: incomplete grids and per-cell noise (issue 13), exact, against dense NumPy.

    python benchmarks/bench_cells.py                     # (a) agreement table (~1 min)
    python benchmarks/bench_cells.py --big               # (b) 500×500 and 1000×1000 grids
    python benchmarks/bench_cells.py --big --sizes 500   # (b) the 500×500 grid only
    python benchmarks/bench_cells.py --markdown out.md --blas-threads 2

(a) ``agree`` — for d = 2 and 3, parents ``K⊗…⊗K`` (random SPD factors), ``K⊗…⊗K + σ²I``
    (squared-exponential factors, σ² = 0.1) and a two-term sum ``A⊗…⊗A + C⊗…⊗C`` (A symmetric
    indefinite, C SPD: the generalised eigen form), random masks with 0.1%, 1%, 10% and 50% of
    the cells missing, P ≈ 2000: ``S.restrict(observed)`` against the dense observed block
    ``D = S[np.ix_(o, o)]`` (np.kron; np.linalg.slogdet, np.linalg.inv): log det, the quadratic
    form ``yᵀD⁻¹y`` (4 observations), the gradients of ``Σ log(1 + yᵀD⁻¹y)``
    (``kronkit.log_quad_grad``) and of ``log det D`` (``kronkit.logdet_grad``) with respect to
    every factor of every term. The dense gradients are the chain rule of the dense expression,
    ``∂f/∂F_tk[i, j] = Σ_ab G_ab ∂S_ab/∂F_tk[i, j]`` with ``G = D⁻¹`` (log det) or
    ``−Σ β⁻¹ x xᵀ`` (``x = D⁻¹y``), embedded in the grid and contracted with np.einsum.
    Reported: the largest relative difference (max |ours − dense| / max |dense| per array);
    target ≤ 1e-9. The same for ``S + GridDiag(d)`` (a constant d with outliers) restricted.

(b) ``--big`` — an n×n grid (n = 500 and 1000; P = n²) with ``S = K1⊗K2 + 0.1·I`` (squared
    exponential kernels, lengthscales 0.1 and 0.2 on [0, 1]) and m = 1000 cells missing at
    random: the exact Gaussian log-likelihood of the observed values (``logpdf``), the
    gradients of its log-determinant with respect to K1, K2 and the noise variance
    (``logdet_grads_trace`` of ``KronPlusDiag(Kron(K1, K2), 0.1).restrict(observed)``: the
    factor gradients and tr(S_OO⁻¹) in one pass) and of its
    quadratic form (``inv_quad_grad``: factors and y). Time of one evaluation (a fresh
    operator: nothing cached), peak resident memory (the high-water mark, reset before each
    grid on Linux), and the time against the issue's flop floor: the m back-transforms of the
    log-det gradient alone, m·4n³ flops (4·10¹² at n = 1000), at the GEMM rate of one
    2000×2000 matrix product timed in the same run. Checks: the quadratic form against the
    CG route (``route="cg"``, rtol 1e-12), and at n ≤ 500 the log-likelihood gradient along a
    random symmetric direction of K1 against a (Richardson-extrapolated) central difference.
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
import kronkit
from _common import fmt_time, peak_rss_mb, print_table, run_with_blas_threads
from kronkit import GridDiag, Kron, KronPlusDiag, SumOfKron

FRACTIONS = (0.001, 0.01, 0.1, 0.5)
DIMS = {2: (40, 50), 3: (10, 12, 14)}
TARGET = 1e-9


# ------------------------------------------------------------------------------------------
# (a) agreement with the dense observed block
# ------------------------------------------------------------------------------------------
def se(n: int, ell: float) -> np.ndarray:
    x = np.linspace(0.0, 1.0, n)
    return np.exp(-0.5 * (x[:, None] - x[None, :]) ** 2 / ell**2)


def spd(rng: np.random.Generator, n: int) -> np.ndarray:
    X = rng.standard_normal((n, n))
    return X @ X.T / n + 0.5 * np.eye(n)


def sym_small(rng: np.random.Generator, n: int) -> np.ndarray:
    X = rng.standard_normal((n, n))
    A = X + X.T
    return A / (4.0 * np.max(np.abs(np.linalg.eigvalsh(A))))


def parents(rng: np.random.Generator, dims: tuple[int, ...]) -> dict[str, object]:
    eye = [np.eye(n) for n in dims]
    return {
        "K⊗…⊗K": Kron(*[spd(rng, n) for n in dims]),
        "K⊗…⊗K + σ²I": Kron(*[se(n, 0.1 + 0.1 * k) for k, n in enumerate(dims)])
        + 0.1 * Kron(*eye),
        "A⊗…⊗A + C⊗…⊗C": Kron(*[sym_small(rng, n) for n in dims])
        + Kron(*[spd(rng, n) for n in dims]),
    }


def term_factors(S: object) -> list[list[np.ndarray]]:
    terms = S.terms if isinstance(S, SumOfKron) else [S]
    return [list(K.factors) for K in terms]


def chain(G: np.ndarray, facs: list[np.ndarray]) -> list[np.ndarray]:
    """``∂f/∂F_k = Σ_ab G_ab ∂(⊗F)_ab/∂F_k`` for the P×P matrix derivative ``G``, densely."""
    dims = [F.shape[0] for F in facs]
    d = len(dims)
    T = G.reshape(*dims, *dims)
    rows, cols = "abcdef"[:d], "ABCDEF"[:d]
    out = []
    for k in range(d):
        others = [j for j in range(d) if j != k]
        spec = f"{rows}{cols}" + "".join(f",{rows[j]}{cols[j]}" for j in others)
        out.append(np.einsum(f"{spec}->{rows[k]}{cols[k]}", T, *[facs[j] for j in others],
                             optimize=True))
    return out


def rel(got: object, want: object) -> float:
    g, w = np.asarray(got, dtype=float), np.asarray(want, dtype=float)
    return float(np.max(np.abs(g - w)) / max(np.max(np.abs(w)), np.finfo(float).tiny))


def rel_grads(got: object, want: list[list[np.ndarray]]) -> float:
    return max(rel(g, w) for row, wrow in zip(got, want, strict=True)
               for g, w in zip(row, wrow, strict=True))


def agreement(S: object, dvec: np.ndarray | None, observed: np.ndarray,
              rng: np.random.Generator) -> dict[str, float]:
    """The relative differences of one operator against its dense observed block."""
    terms = term_factors(S)
    full = sum(functools.reduce(np.kron, t) for t in terms)
    if dvec is not None:
        full = full + np.diag(dvec.ravel())
    P = full.shape[0]
    o = np.flatnonzero(observed)
    D = full[np.ix_(o, o)]
    R = (S if dvec is None else S + GridDiag(dvec)).restrict(observed)
    Y = rng.standard_normal((4, o.size))
    Dinv = np.linalg.inv(D)
    Dinv = 0.5 * (Dinv + Dinv.T)
    X = Y @ Dinv
    q = np.einsum("ij,ij->i", Y, X)
    beta = 1.0 + q
    G = np.zeros((P, P))
    G[np.ix_(o, o)] = -(X.T / beta) @ X
    want_quad = [chain(G, t) for t in terms]
    G[np.ix_(o, o)] = Dinv
    want_ld = [chain(G, t) for t in terms]
    flat = isinstance(S, Kron)
    g = kronkit.log_quad_grad(R, Y)
    gl = kronkit.logdet_grad(R)
    return {
        "route": R.route,
        "k": R.n_cells,
        "logdet": abs(R.logdet() - np.linalg.slogdet(D)[1]) / abs(np.linalg.slogdet(D)[1]),
        "inv_quad": rel(R.inv_quad(Y), q),
        "log_quad_grad": max(rel_grads([g.factors] if flat else g.factors, want_quad),
                             rel(g.y, 2 * X / beta[:, None])),
        "logdet_grad": rel_grads([gl] if flat else gl, want_ld),
    }


def section_agree(md: list[str] | None) -> None:
    rng = np.random.default_rng(13)
    rows = []
    worst = 0.0
    for d, dims in DIMS.items():
        P = math.prod(dims)
        for name, S in parents(rng, dims).items():
            for frac in FRACTIONS:
                m = max(1, round(frac * P))
                observed = np.ones(P, dtype=bool)
                observed[rng.choice(P, m, replace=False)] = False
                observed = observed.reshape(dims)
                cases = [("", None)]
                if frac == 0.1:  # one per-cell-noise case per parent: a constant with outliers
                    dvec = np.full(dims, 0.2)
                    dvec.flat[rng.choice(P, 20, replace=False)] = rng.uniform(0.0, 2.0, 20)
                    cases.append((" + GridDiag(d)", dvec))
                for suffix, dvec in cases:
                    t0 = time.perf_counter()
                    r = agreement(S, dvec, observed, rng)
                    vals = [r["logdet"], r["inv_quad"], r["log_quad_grad"], r["logdet_grad"]]
                    worst = max(worst, *vals)
                    rows.append([str(d), "×".join(map(str, dims)), name + suffix,
                                 f"{100 * frac:g}%", str(m),
                                 "— (dense)" if r["route"] == "dense" else
                                 f"{r['k']} ({r['route']})",
                                 *[f"{v:.1e}" for v in vals],
                                 f"{time.perf_counter() - t0:.1f} s"])
                    print(" | ".join(rows[-1]), flush=True)
    print_table(f"(a) Restricted vs the dense observed block: max relative difference "
                f"(target ≤ {TARGET:g}; worst {worst:.1e}: "
                f"{'met' if worst <= TARGET else 'MISSED'})",
                ["d", "grid", "S", "missing", "m", "k (route)", "log det", "inv_quad",
                 "log_quad_grad (factors, y)", "logdet_grad (factors)", "time (ours + dense)"],
                rows, md)


# ------------------------------------------------------------------------------------------
# (b) the big grids
# ------------------------------------------------------------------------------------------
def gemm_rate() -> float:
    """Flops per second of a 2000×2000 matrix product (best of 3)."""
    A = np.random.default_rng(0).standard_normal((2000, 2000))
    A @ A
    best = min(_time(lambda: A @ A) for _ in range(3))
    return 2.0 * 2000**3 / best


def _time(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def reset_peak() -> bool:
    """Reset the resident-memory high-water mark (Linux ``clear_refs`` 5); False if not."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def likelihood_and_gradients(K1, K2, s2, observed, y):
    """The Gaussian log-likelihood of the observed values and its gradients to K1, K2, s².

    The noise is a (constant) per-cell diagonal, as KroneckerGP builds it: the parent is the
    Kron K1⊗K2, so the log-det Grams are formed for its two factors only and the noise
    gradient is tr(S_OO⁻¹) (a SumOfKron parent K1⊗K2 + s²·I⊗I would also form the Grams of the
    identity term's two factors, which the noise gradient does not need)."""
    n1, n2 = K1.shape[0], K2.shape[0]
    R = KronPlusDiag(Kron(K1, K2), np.full((n1, n2), s2)).restrict(observed)
    lml = float(R.logpdf(y))
    (Gl,), trace = R.logdet_grads_trace()
    gq = kronkit.inv_quad_grad(R, y)
    x2 = float(gq.y @ gq.y) / 4.0  # ‖S_OO⁻¹ y‖²: ∂q/∂s² = −‖x‖²
    grads = [-0.5 * (a + b) for a, b in zip(Gl, gq.factors, strict=True)]
    return lml, grads, -0.5 * (trace - x2), R


def directional_check(K1, K2, s2, observed, y, g1, rng, h=1e-6) -> float:
    """Relative difference of ⟨∂ℓ/∂K1, E⟩ (E random symmetric) and the central difference of ℓ
    along E, Richardson-extrapolated from steps h and h/2 (error O(h⁴): the plain central
    difference's O(h²) error is ~1e-3 relative at h = 1e-5 here, the curvature along E⊗K2
    being large against the noise 0.1)."""
    E = rng.standard_normal(K1.shape)
    E = 0.5 * (E + E.T)
    eye1, eye2 = np.eye(K1.shape[0]), np.eye(K2.shape[0])

    def f(step: float) -> float:
        S = Kron(K1 + step * h * E, K2) + s2 * Kron(eye1, eye2)
        return float(S.restrict(observed).logpdf(y))

    d1 = (f(1.0) - f(-1.0)) / (2 * h)
    d2 = (f(0.5) - f(-0.5)) / h
    fd = (4.0 * d2 - d1) / 3.0
    return abs(float(np.sum(g1 * E)) - fd) / abs(fd)


def section_big(sizes: list[int], md: list[str] | None) -> None:
    rate = gemm_rate()
    print(f"GEMM rate (2000×2000 matmul, best of 3): {rate / 1e9:.1f} GFlop/s", flush=True)
    rows = []
    for n in sizes:
        rng = np.random.default_rng(n)
        P, m = n * n, 1000
        K1, K2, s2 = se(n, 0.1), se(n, 0.2), 0.1
        observed = np.ones(P, dtype=bool)
        observed[rng.choice(P, m, replace=False)] = False
        observed = observed.reshape(n, n)
        y = rng.standard_normal(P - m)
        reset_ok = reset_peak()
        rss0 = peak_rss_mb()
        t0 = time.perf_counter()
        lml, grads, _, R = likelihood_and_gradients(K1, K2, s2, observed, y)
        t = time.perf_counter() - t0
        rss = peak_rss_mb()
        floor = m * 4.0 * n**3  # m back-transforms V1 Z V2ᵀ-type, 2·2n³ each
        # checks: the quadratic form by preconditioned CG; a directional derivative (n = 500)
        S = Kron(K1, K2) + s2 * Kron(np.eye(n), np.eye(n))
        q = R.inv_quad(y)
        t_cg0 = time.perf_counter()
        q_cg = S.restrict(observed, route="cg", rtol=1e-12).inv_quad(y)
        t_cg = time.perf_counter() - t_cg0
        checks = f"q vs CG {abs(q - q_cg) / abs(q):.1e} (CG {fmt_time(t_cg)})"
        if n <= 500:
            err = directional_check(K1, K2, s2, observed, y, grads[0], rng)
            checks += f"; ∂/∂K1 along a random E vs central difference {err:.1e}"
        rows.append([f"{n}×{n}", f"{P:,}", str(m), fmt_time(t), f"{rss:,.0f} MB"
                     + ("" if reset_ok else " (process peak)"), f"{rss0:,.0f} MB",
                     f"{floor:.1e}", fmt_time(floor / rate), f"{t / (floor / rate):.1f}×",
                     f"{lml:.10g}", checks])
        print(" | ".join(rows[-1]), flush=True)
        del R
    print_table("(b) exact log-likelihood + gradients (K1, K2, σ²) of K1⊗K2 + 0.1·I on the "
                "observed cells of an n×n grid, m = 1000 missing (one evaluation, fresh operator)",
                ["grid", "P", "m", "time", "peak RSS", "RSS before", "floor (flops)",
                 "floor at GEMM rate", "time ÷ floor", "log-likelihood", "checks"], rows, md)


def blas_report() -> str:
    try:
        from threadpoolctl import threadpool_info

        libs = ", ".join(f"{i.get('internal_api')} {i.get('version')} "
                         f"({i['num_threads']} threads)" for i in threadpool_info())
    except ImportError:
        libs = "threadpoolctl not installed"
    return (f"{libs}; numpy {np.__version__}, kronkit {kronkit.__version__}; CPUs "
            f"{os.cpu_count()}; load average {os.getloadavg()[0]:.2f} at start")


def run(args: argparse.Namespace) -> None:
    print(f"BLAS: {blas_report()}")
    md: list[str] | None = [f"- {blas_report()}"] if args.markdown else None
    if args.big:
        section_big([int(s) for s in args.sizes.split(",")], md)
    else:
        section_agree(md)
    if args.markdown:
        with open(args.markdown, "w") as fh:
            fh.write("\n".join(md or []) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--big", action="store_true", help="(b) the 500×500 and 1000×1000 grids")
    ap.add_argument("--sizes", default="500,1000", help="grid sizes n for --big")
    ap.add_argument("--markdown", default=None, help="also write the tables to this file")
    ap.add_argument("--blas-threads", type=int, default=None,
                    help="limit BLAS/LAPACK threads (threadpoolctl)")
    args = ap.parse_args()
    run_with_blas_threads(run, args, args.blas_threads)


if __name__ == "__main__":
    main()
