"""Separable-covariance fits: kronkit against the same EM written with dense np.kron matrices.

Part 1 — time per iteration at p = q = 30, N = 1000 (P = 900): kronkit's flip-flop / ECME
against a dense EM that does the same iteration with the P×P matrix ``np.kron(A, B)``
(Cholesky of it, solves with it, the sample covariance and its partial traces). Both start
from the same point (kronkit's start, the identity in its internal units) and run the same
number of iterations; as a check that they compute the same thing, the normal fits' whole
log-likelihood histories are compared, and for the t model (kronkit's ECME is accelerated by
SQUAREM, so its iterates differ) the log-likelihood kronkit reports for its fit is compared
with the one computed densely at that fit (that it is the optimum is checked by
``bench_t_convergence.py``). Per-iteration time is
``(time of k2 iterations − time of k1 iterations) / (k2 − k1)``, so set-up (forming the sample
covariance, copying the data) is reported separately and not counted.

Part 2 — a full Gaussian fit at p = q = 200, N = 1000 (P = 40 000: the dense P×P matrix
would need 12.8 GB), and the per-iteration time of the t fit at that size.

Run ``python benchmarks/bench_fit.py`` (about two minutes) or ``--quick`` (seconds).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
import warnings

import numpy as np
import scipy.linalg as sla
from rich.console import Console
from rich.table import Table

sys.path.insert(0, os.path.dirname(__file__))
from scipy.optimize import minimize_scalar
from scipy.special import gammaln

import kronkit
from _common import best_of, run_with_blas_threads

LOG_2PI = math.log(2 * math.pi)


# ---------------------------------------------------------------------------------------
# The dense baseline: the same EM with P×P matrices
# ---------------------------------------------------------------------------------------
def _partial_traces(C: np.ndarray, A: np.ndarray, B: np.ndarray, p: int, q: int):
    """Flip-flop step from the (weighted) sample covariance C (P×P), densely.

    ``A_ab = tr(B⁻¹ C_ab)/q`` over the q×q blocks of C, then ``B = Σ_ab (A⁻¹)_ab C_ab / p``.
    """
    C4 = C.reshape(p, q, p, q)
    A = np.einsum("akbl,lk->ab", C4, np.linalg.inv(B)) / q
    A = 0.5 * (A + A.T)
    B = np.einsum("akbl,ba->kl", C4, np.linalg.inv(A)) / p
    return A, 0.5 * (B + B.T)


def kronkit_start(X: np.ndarray) -> np.ndarray:
    """kronkit's first B: the identity in its internal units, ``diag(c²)`` in the data's.

    ``separable_mle`` divides the data by row and column scales ``r cᵀ`` (units) and starts
    from ``B = I`` there; the flip-flop is equivariant, so the dense EM started from
    ``diag(c²)`` makes the same iterates.
    """
    from kronkit._estimators.units import unit_scales  # the scales kronkit uses, not a copy

    _, c = unit_scales(np.max(np.abs(X), axis=0))
    return np.diag(c**2)


def dense_normal_em(X: np.ndarray, n_iter: int) -> list[float]:
    N, p, q = X.shape
    P = p * q
    E = X.reshape(N, P) - X.reshape(N, P).mean(axis=0)
    C = E.T @ E / N  # set-up: the sample covariance (the Gaussian's sufficient statistic)
    A, B = np.eye(p), kronkit_start(X)
    hist = []
    for _ in range(n_iter):
        A, B = _partial_traces(C, A, B, p, q)
        S = np.kron(A, B)
        cf = sla.cho_factor(S, lower=True)
        logdet = 2.0 * np.sum(np.log(np.diagonal(cf[0])))
        trace = np.trace(sla.cho_solve(cf, C))
        hist.append(-0.5 * N * (P * LOG_2PI + logdet + trace))
    return hist


def _t_ll(nu, delta, logdet, P):
    N = delta.size
    c = gammaln((nu + P) / 2) - gammaln(nu / 2) - 0.5 * P * math.log(nu * math.pi)
    return N * (c - 0.5 * logdet) - 0.5 * (nu + P) * np.sum(np.log1p(delta / nu))


def dense_t_loglik(X: np.ndarray, fit) -> float:
    """The t log-likelihood of ``X`` at a fitted (location, A, B, ν), with np.kron (P×P)."""
    N = X.shape[0]
    P = X[0].size
    L = sla.cholesky(np.kron(fit.row_covariance, fit.column_covariance), lower=True)
    Z = sla.solve_triangular(L, (X - fit.location).reshape(N, P).T, lower=True)
    return _t_ll(fit.df, np.einsum("ij,ij->j", Z, Z), 2.0 * np.sum(np.log(np.diagonal(L))), P)


def dense_t_em(X: np.ndarray, n_iter: int, df: float | None) -> list[float]:
    """ECME for the vec-form t with S = np.kron(A, B): Cholesky of S and N solves per step."""
    N, p, q = X.shape
    P = p * q
    Y = X.reshape(N, P)
    M = Y.mean(axis=0)
    A, B = np.eye(p), kronkit_start(X)
    w = np.ones(N)
    nu = math.inf
    delta = np.zeros(N)
    hist = []
    for it in range(n_iter):
        if it > 0:
            w = (nu + P) / (nu + delta)
            M = w @ Y / w.sum()
        E = Y - M
        C = (E * w[:, None]).T @ E / N  # weighted sample covariance, O(N·P²)
        A, B = _partial_traces(C, A, B, p, q)
        L = sla.cholesky(np.kron(A, B), lower=True)  # O(P³)
        Z = sla.solve_triangular(L, E.T, lower=True)  # O(N·P²)
        delta = np.einsum("ij,ij->j", Z, Z)
        logdet = 2.0 * np.sum(np.log(np.diagonal(L)))
        if df is None:
            res = minimize_scalar(lambda u, d=delta, ld=logdet: -_t_ll(math.exp(u), d, ld, P),
                                  bounds=(math.log(0.1), math.log(1e6)), method="bounded",
                                  options={"xatol": 1e-9})
            cand = math.exp(res.x)
            nu = cand if (it == 0 or _t_ll(cand, delta, logdet, P)
                          >= _t_ll(nu, delta, logdet, P)) else nu
        else:
            nu = df
        hist.append(_t_ll(nu, delta, logdet, P))
    return hist


# ---------------------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------------------
def _kronkit_hist(X, n_iter, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", kronkit.ConvergenceWarning)
        return list(kronkit.separable_mle(X, max_iter=n_iter, tol=0.0, **kw).loglik_history)


def per_iteration(run, k1: int, k2: int, repeat: int) -> tuple[float, float]:
    """(seconds per iteration, seconds of set-up + first k1 iterations).

    ``run(k)`` returns the log-likelihood history; the difference in time is divided by the
    difference in iterations actually made (a fit may stop early once ℓ stops changing).
    NaN if both runs stopped at the same iteration.
    """
    h1, h2 = run(k1), run(k2)
    t1 = best_of(lambda: run(k1), repeat)  # timeit-style: loops of calls for fast runs
    t2 = best_of(lambda: run(k2), repeat)
    done = len(h2) - len(h1)
    return (max(t2 - t1, 0.0) / done if done > 0 else float("nan")), t1


def simulate(rng, N, p, q, df=None):
    A = np.cov(rng.standard_normal((p, 3 * p))) + 0.1 * np.eye(p)
    B = np.cov(rng.standard_normal((q, 3 * q))) + 0.1 * np.eye(q)
    X = np.linalg.cholesky(A) @ rng.standard_normal((N, p, q)) @ np.linalg.cholesky(B).T
    if df is not None:
        X /= np.sqrt(rng.chisquare(df, N) / df)[:, None, None]
    return X + 1.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, a few seconds")
    ap.add_argument("--blas-threads", type=int, default=None,
                    help="limit BLAS/LAPACK threads (threadpoolctl) for both sides; on a busy "
                         "machine threaded LAPACK calls on small matrices can cost ~10 ms each")
    args = ap.parse_args()
    run_with_blas_threads(run, args, args.blas_threads)


def run(args: argparse.Namespace) -> None:
    con = Console(width=130)
    rng = np.random.default_rng(0)
    if args.quick:
        p1, N1, p2, N2, k1, k2, repeat = 12, 200, 40, 200, 1, 3, 2
    else:
        p1, N1, p2, N2, k1, k2, repeat = 30, 1000, 200, 1000, 1, 3, 5

    # -- part 1: per-iteration time against the dense EM --------------------------------
    X = simulate(rng, N1, p1, p1)
    Xt = simulate(rng, N1, p1, p1, df=5.0)
    t_kw = {"t, ν = 5 fixed": {"distribution": "t", "df": 5.0},
             "t, ν estimated (ECME)": {"distribution": "t"}}
    cases = [
        ("normal (auto → moments)", lambda k: _kronkit_hist(X, k),
         lambda k: dense_normal_em(X, k)),
        ("normal (samples)", lambda k: _kronkit_hist(X, k, method="samples"),
         lambda k: dense_normal_em(X, k)),
        ("t, ν = 5 fixed", lambda k: _kronkit_hist(Xt, k, distribution="t", df=5.0),
         lambda k: dense_t_em(Xt, k, 5.0)),
        ("t, ν estimated (ECME)", lambda k: _kronkit_hist(Xt, k, distribution="t"),
         lambda k: dense_t_em(Xt, k, None)),
    ]
    table = Table(title=f"Per-iteration time, p = q = {p1}, N = {N1} (P = {p1 * p1}); "
                        f"best of {repeat}")
    for col in ("model", "kronkit / it", "dense np.kron / it", "speed-up", "kronkit set-up",
                "dense set-up", "max |Δℓ| / |ℓ|"):
        table.add_column(col, justify="right")
    for name, kk, dd in cases:
        if name.startswith("normal"):  # the same iterates: compare the histories
            hk, hd = kk(k2), dd(k2)
            n = min(len(hk), len(hd))  # kronkit stops early if ℓ stops changing exactly
            agree = np.max(np.abs(np.subtract(hk[:n], hd[:n])) / np.abs(hd[:n]))
        else:  # kronkit's t fit is SQUAREM-accelerated (other iterates): its reported ℓ
            fit = kronkit.separable_mle(Xt, **t_kw[name])  # against the dense ℓ at its fit
            agree = abs(fit.loglik - dense_t_loglik(Xt, fit)) / abs(fit.loglik)
        tk, sk = per_iteration(kk, k1, k2, repeat)
        td, sd = per_iteration(dd, k1, k2, repeat)
        table.add_row(name, f"{tk * 1e3:.2f} ms", f"{td * 1e3:.1f} ms",
                      f"{td / tk:.0f}×" if tk > 0 else "—", f"{sk * 1e3:.1f} ms",
                      f"{sd * 1e3:.1f} ms", f"{agree:.1e}")
    con.print(table)

    # -- part 2: a full fit at p = q = 200 ----------------------------------------------
    X2 = simulate(rng, N2, p2, p2)
    t0 = time.perf_counter()
    fit = kronkit.separable_mle(X2)
    t_fit = time.perf_counter() - t0
    t_it, _ = per_iteration(lambda k: _kronkit_hist(X2, k, distribution="t", df=5.0), 1, 3, 1)
    table = Table(title=f"Large fit, p = q = {p2}, N = {N2} (P = {p2 * p2}; dense S would be "
                        f"{(p2 * p2) ** 2 * 8 / 1e9:.1f} GB)")
    for col in ("fit", "time", "iterations", "converged"):
        table.add_column(col, justify="right")
    table.add_row("normal, full fit (tol 1e-9)", f"{t_fit:.1f} s", str(fit.n_iter),
                  str(fit.converged))
    table.add_row("t (ν = 5), per iteration", f"{t_it:.1f} s", "—", "—")
    con.print(table)
    con.print("dense baseline: the same EM with np.kron(A, B) (Cholesky, solves, the P×P "
              "sample covariance and its partial traces); kronkit works on the factors.")


if __name__ == "__main__":
    main()
