"""Size study of ``kronkit.separability_test`` and the time of the default test.

Part 1 — size under the Gaussian null. The statistic is pivotal (its null law depends only on
``(p, q, N)`` and the centring), and it depends on the data only through the sample
covariance, so null replicates are drawn as Wishart matrices (``null_statistics``; the suite
checks that this equals the law of the statistic computed from Gaussian data). For each
``(p, q, N)`` (mean estimated, ``n = N − 1``) the rejection rate at level 0.05 is reported for
the uncorrected chi-square p-value (the default before issue 9), the Bartlett correction
(mean only), and the default ``"scaled-chi2"`` p-value, with the Monte Carlo standard error
``√(0.05·0.95/reps)``; also the rate at level 0.01 (the tail). ``KS`` is the
Kolmogorov–Smirnov p-value of the default p-values against U(0, 1).

Part 2 — the t model: rejection rate at 0.05 of the Gaussian p-value and of the parametric
bootstrap (``distribution="t"``) on separable t data (``--t``; slow: one t fit per data set).

Part 3 — wall time of the default test at p = q = 10, N = 1000 and p = q = 20, N = 8000.

Run ``python benchmarks/bench_separability.py`` (several minutes), ``--quick`` (a minute).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import scipy.stats as st
from rich.console import Console
from rich.table import Table

sys.path.insert(0, os.path.dirname(__file__))

import kronkit
from kronkit._estimators.separability_null import (
    chi2_df,
    null_cumulants,
    null_statistics,
    scaled_chi2_sf,
)

SHAPES = [(2, 2), (2, 3), (3, 3), (2, 6), (4, 4), (5, 5), (3, 10), (8, 8), (10, 10), (20, 20)]
RATIOS = [2, 3, 5, 10, 20, 50]
EDGE = [1.1, 1.25, 1.5]  # N/P below 2: reported separately (auto uses Monte Carlo at n < 1.25P)


def reps_for(P: int, scale: float) -> int:
    base = 4000 if P <= 36 else 2000 if P <= 100 else 500
    return max(100, int(base * scale))


def size_row(p: int, q: int, N: int, reps: int, rng: np.random.Generator) -> list[str]:
    n, P = N - 1, p * q
    t0 = time.perf_counter()
    T = null_statistics(p, q, n, N, reps, rng)
    el = time.perf_counter() - t0
    dof = chi2_df(p, q)
    kappa = null_cumulants(p, q, n, N)
    p_chi2 = st.chi2.sf(T, dof)
    p_bart = st.chi2.sf(T * dof / kappa[0], dof)
    p_def = np.array([scaled_chi2_sf(t, kappa) for t in T])
    se = np.sqrt(0.05 * 0.95 / reps)
    rate = np.mean(p_def < 0.05)
    flag = "" if abs(rate - 0.05) < 3 * se else " *"
    se01 = np.sqrt(0.01 * 0.99 / reps)
    rate01 = np.mean(p_def < 0.01)
    flag01 = "" if abs(rate01 - 0.01) < 3 * se01 else " *"
    return [f"{p}", f"{q}", f"{N}", f"{N / P:.3g}", f"{reps}", f"{np.mean(p_chi2 < 0.05):.3f}",
            f"{np.mean(p_bart < 0.05):.3f}", f"{rate:.3f}{flag}", f"{se:.4f}",
            f"{rate01:.4f}{flag01}", f"{se01:.4f}",
            f"{st.kstest(p_def, 'uniform').pvalue:.2g}", f"{el / reps * 1e3:.2f}"]


def size_table(con: Console, ratios: list[float], scale: float, seed: int, title: str,
               markdown: bool = False) -> None:
    rng = np.random.default_rng(seed)
    rows = []
    tab = Table(title=title)
    for c in ("p", "q", "N", "N/P", "reps", "old chi2", "Bartlett (mean)", "default",
              "MC s.e.", "default @ 0.01", "s.e. @ 0.01", "KS (default)", "ms/replicate"):
        tab.add_column(c, justify="right")
    for p, q in SHAPES:
        P = p * q
        for r in ratios:
            N = round(r * P)
            if N - 1 <= P:
                continue
            row = size_row(p, q, N, reps_for(P, scale), rng)
            tab.add_row(*row)
            rows.append(row)
    con.print(tab)
    if markdown:
        print("| p | q | N | N/P | reps | old χ² | Bartlett (mean) | default | MC s.e. "
              "| default @ 0.01 | s.e. |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for row in rows:
            print("| " + " | ".join(row[:11]) + " |")
    con.print("* : more than 3 Monte Carlo standard errors from the level")


def t_study(con: Console, reps: int, n_sim: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    tab = Table(title=f"separable t data (reps = {reps}, bootstrap replicates = {n_sim})")
    for c in ("p", "q", "N", "nu", "Gaussian default", "t bootstrap", "MC s.e.", "s/test"):
        tab.add_column(c, justify="right")
    for p, q, N, nu in [(2, 3, 60, 4.0), (3, 3, 100, 8.0)]:
        A = np.eye(p) + 0.5
        B = np.diag(np.arange(1.0, q + 1))
        LA, LB = np.linalg.cholesky(A), np.linalg.cholesky(B)
        gauss, boot = [], []
        t0 = time.perf_counter()
        for _ in range(reps):
            Z = rng.standard_normal((N, p, q)) / np.sqrt(rng.chisquare(nu, N) / nu)[:, None, None]
            X = LA @ Z @ LB.T + 1.0
            gauss.append(kronkit.separability_test(X).pvalue)
            boot.append(kronkit.separability_test(X, distribution="t", n_simulations=n_sim,
                                                  random_state=rng).pvalue)
        el = (time.perf_counter() - t0) / reps
        se = np.sqrt(0.05 * 0.95 / reps)
        tab.add_row(f"{p}", f"{q}", f"{N}", f"{nu:g}", f"{np.mean(np.array(gauss) < 0.05):.3f}",
                    f"{np.mean(np.array(boot) <= 0.05):.3f}", f"{se:.3f}", f"{el:.2f}")
    con.print(tab)


def timings(con: Console) -> None:
    rng = np.random.default_rng(0)
    tab = Table(title="time of the default test (best of 7), N(0, I⊗I) data")
    for c in ("p", "q", "N", "method", "pvalue", "old chi2 pvalue", "time (s)",
              "monte-carlo (999) time (s)"):
        tab.add_column(c, justify="right")
    for p, q, N in [(10, 10, 1000), (20, 20, 8000)]:
        X = rng.standard_normal((N, p, q))
        best = np.inf
        for _ in range(7):
            t0 = time.perf_counter()
            res = kronkit.separability_test(X)
            best = min(best, time.perf_counter() - t0)
        t0 = time.perf_counter()
        kronkit.separability_test(X, method="monte-carlo", random_state=0)
        mc = time.perf_counter() - t0
        tab.add_row(f"{p}", f"{q}", f"{N}", res.method, f"{res.pvalue:.3g}",
                    f"{res.pvalue_chi2:.3g}", f"{best:.3f}", f"{mc:.1f}")
    con.print(tab)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer replicates (a minute)")
    ap.add_argument("--t", action="store_true", help="also the t-model study (slow)")
    ap.add_argument("--no-edge", action="store_true", help="skip N/P < 2")
    ap.add_argument("--markdown", action="store_true", help="also print the tables as markdown")
    args = ap.parse_args()
    con = Console(width=160)
    scale = 0.1 if args.quick else 1.0
    size_table(con, RATIOS, scale, 1, "size at level 0.05 under H0 (mean estimated, n = N − 1)",
               args.markdown)
    if not args.no_edge:
        size_table(con, EDGE, scale, 2, "close to the boundary n = P + 1", args.markdown)
    if args.t:
        t_study(con, 40 if args.quick else 400, 99, 3)
    timings(con)


if __name__ == "__main__":
    main()
