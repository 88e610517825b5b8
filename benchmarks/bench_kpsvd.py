"""Kronecker-product SVD benchmark: kronkit's truncated / matrix-free KPSVD against the dense SVD.

Three cases, one run each (the dense peers take minutes at full size):

1. ``dense``   — ``kronkit.kpsvd(M, ((64, 64), (64, 64)), rank=5)`` of a dense 4096×4096 ``M``
   (Lanczos on the rearrangement) against the full ``np.linalg.svd`` of ``R(M)`` (4096×4096,
   ``full_matrices=False``), including the rearrangement in both timings.
2. ``samples`` — ``kronkit.kpsvd_samples(X, 5)`` for samples ``X`` of shape (2000, 100, 100)
   against forming the 10⁴×10⁴ sample covariance, rearranging it and ``np.linalg.svd``.
3. ``samples-large`` — ``kronkit.kpsvd_samples`` at p = q = 316, N = 200: a dense covariance
   would be 99856² float64 (80 GB), so only kronkit runs; it runs in a subprocess so that the
   peak RSS reported (``VmHWM``) is its own.

The test matrices have a decaying Kronecker spectrum (the top five terms separated from the
rest, as in a real covariance with a few Kronecker components plus noise). Each row reports
the largest relative difference between kronkit's five σ and the dense SVD's; the Lanczos
tolerance (1e-12) is chosen to make it well below 1e-10.

Run ``python benchmarks/bench_kpsvd.py [--quick]``. ``--quick`` shrinks every case (a smoke
run of a few seconds); ``--dense-n``, ``--p``, ``--n-samples``, ``--large-p``, ``--large-n``
override the sizes; ``--skip-peers`` times kronkit only.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))

from _common import fmt_ratio, fmt_time, peak_rss_mb, print_table

RANK = 5


# ---------------------------------------------------------------------------------------
# problems (seeded)
# ---------------------------------------------------------------------------------------


def dense_problem(n: int, seed: int = 0) -> np.ndarray:
    """``M = Σ_{k<8} 2^-k A_k ⊗ B_k + noise`` (n²×n², A_k, B_k n×n Gaussian, ‖noise‖_F ≈ 1e-3)."""
    rng = np.random.default_rng(seed)
    M = np.zeros((n * n, n * n))
    for k in range(8):
        M += 2.0**-k * np.kron(rng.standard_normal((n, n)) / n, rng.standard_normal((n, n)) / n)
    M += 1e-3 / (n * n) * rng.standard_normal(M.shape)
    return M


def sample_problem(N: int, p: int, q: int, seed: int = 1) -> np.ndarray:
    """``X_n = 0.05 Z_n + Σ_j sqrt(w_j) L_j Z_nj R_j^T`` with orthogonal column blocks L_j, R_j.

    The population covariance is ``Σ_j w_j (L_j L_j^T) ⊗ (R_j R_j^T) + 0.0025 I``:
    five Kronecker components with weights 1, 0.7, 0.5, 0.35, 0.25 plus isotropic noise.
    Generated in place, a few samples at a time (no temporaries the size of ``X``).
    """
    rng = np.random.default_rng(seed)
    w = (1.0, 0.7, 0.5, 0.35, 0.25)
    X = rng.standard_normal((N, p, q))
    X *= 0.05
    bp, bq = max(1, p // len(w)), max(1, q // len(w))
    Ul = np.linalg.qr(rng.standard_normal((p, p)))[0]
    Ur = np.linalg.qr(rng.standard_normal((q, q)))[0]
    step = max(1, (1 << 21) // (p * q))
    for j, wj in enumerate(w):
        L = np.sqrt(wj) * Ul[:, j * bp : (j + 1) * bp]
        R = Ur[:, j * bq : (j + 1) * bq]
        if L.shape[1] == 0 or R.shape[1] == 0:
            continue
        for s in range(0, N, step):
            Z = rng.standard_normal((min(step, N - s), L.shape[1], R.shape[1]))
            X[s : s + step] += L @ Z @ R.T
    return X


def rel_sigma_diff(s: np.ndarray, ref: np.ndarray) -> float:
    return float(np.max(np.abs(s - ref[: s.size]) / ref[: s.size]))


# ---------------------------------------------------------------------------------------
# cases
# ---------------------------------------------------------------------------------------


def case_dense(n: int, skip_peers: bool) -> list[str]:
    import kronkit

    M = dense_problem(n)
    shapes = ((n, n), (n, n))
    t0 = time.perf_counter()
    res = kronkit.kpsvd(M, shapes, rank=RANK, random_state=0)
    t_kk = time.perf_counter() - t0
    t_peer = None
    diff = None
    if not skip_peers:
        t0 = time.perf_counter()
        s_ref = np.linalg.svd(kronkit.rearrange(M, shapes), full_matrices=False)[1]
        t_peer = time.perf_counter() - t0
        diff = rel_sigma_diff(res.s, s_ref)
    return [
        f"dense {n * n}² ({n}×{n} ⊗ {n}×{n}), r={RANK}",
        f"kpsvd ({res.method})",
        fmt_time(t_kk),
        "svd(R(M))",
        fmt_time(t_peer),
        fmt_ratio(None if t_peer is None else t_peer / t_kk),
        "—" if diff is None else f"{diff:.1e}",
    ]


def case_samples(N: int, p: int, skip_peers: bool) -> list[str]:
    import kronkit

    X = sample_problem(N, p, p)
    t0 = time.perf_counter()
    res = kronkit.kpsvd_samples(X, RANK, random_state=0)
    t_kk = time.perf_counter() - t0
    t_peer = None
    diff = None
    if not skip_peers:
        t0 = time.perf_counter()
        Xc = (X - X.mean(axis=0)).reshape(N, -1)
        C = Xc.T @ Xc / N
        del Xc
        R = kronkit.rearrange(C, (p, p))
        del C
        s_ref = np.linalg.svd(R, full_matrices=False)[1]
        t_peer = time.perf_counter() - t0
        diff = rel_sigma_diff(res.s, s_ref)
    return [
        f"samples N={N}, p=q={p}, r={RANK}",
        f"kpsvd_samples ({res.method})",
        fmt_time(t_kk),
        "cov + svd(R)",
        fmt_time(t_peer),
        fmt_ratio(None if t_peer is None else t_peer / t_kk),
        "—" if diff is None else f"{diff:.1e}",
    ]


def _reset_hwm() -> bool:
    """Reset ``VmHWM`` to the current RSS (Linux >= 4.0); False where not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _child_large(N: int, p: int) -> None:
    """Runs in a subprocess: time and memory of one kpsvd_samples call, printed as JSON.

    Reports the peak RSS after the imports, after building ``X`` (generated in place), and
    during the call (the high-water mark is reset just before it where Linux allows).
    """
    import kronkit

    rss_imports = peak_rss_mb()
    X = sample_problem(N, p, p)
    rss_data = peak_rss_mb()
    reset = _reset_hwm()
    t0 = time.perf_counter()
    res = kronkit.kpsvd_samples(X, RANK, random_state=0)
    t = time.perf_counter() - t0
    print(json.dumps({"time": t, "peak_rss_mb": peak_rss_mb(), "rss_imports_mb": rss_imports,
                      "rss_after_data_mb": rss_data, "hwm_reset": reset, "s": res.s.tolist(),
                      "rel_error": res.rel_error, "method": res.method}))


def case_large(N: int, p: int) -> tuple[list[str], dict]:
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--child-large", str(N),
                          str(p)], capture_output=True, text=True, check=True)
    info = json.loads(out.stdout.strip().splitlines()[-1])
    P = p * p
    dense_gb = 8.0 * P * P / 1e9
    row = [
        f"samples N={N}, p=q={p} (cov {dense_gb:.1f} GB)",
        f"kpsvd_samples ({info['method']})",
        fmt_time(info["time"]),
        "dense: not run",
        "—",
        "—",
        f"peak RSS {info['peak_rss_mb']:.0f} MB",
    ]
    return row, info


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, a few seconds")
    ap.add_argument("--dense-n", type=int, default=None, help="factor size of the dense case")
    ap.add_argument("--p", type=int, default=None, help="p = q of the samples case")
    ap.add_argument("--n-samples", type=int, default=None, help="N of the samples case")
    ap.add_argument("--large-p", type=int, default=None, help="p = q of the large case")
    ap.add_argument("--large-n", type=int, default=None, help="N of the large case")
    ap.add_argument("--skip-peers", action="store_true", help="time kronkit only")
    ap.add_argument("--child-large", nargs=2, type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child_large:
        _child_large(*args.child_large)
        return
    q = args.quick
    dense_n = args.dense_n or (24 if q else 64)
    p = args.p or (20 if q else 100)
    N = args.n_samples or (300 if q else 2000)
    large_p = args.large_p or (60 if q else 316)
    large_n = args.large_n or (50 if q else 200)

    import scipy

    print(f"numpy {np.__version__}, scipy {scipy.__version__}, {platform.processor() or 'cpu'}, "
          f"{os.cpu_count()} CPUs{' (quick run)' if q else ''}")
    rows = [case_dense(dense_n, args.skip_peers), case_samples(N, p, args.skip_peers)]
    row, info = case_large(large_n, large_p)
    rows.append(row)
    print_table(
        "kronkit KPSVD vs dense SVD (one run each; ratio = peer time / kronkit time)",
        ["case", "kronkit", "time", "peer", "peer time", "ratio", "max rel σ diff / memory"],
        rows,
        None,
    )
    X_mb = 8.0 * large_n * large_p * large_p / 2**20
    print("peers: svd(R(M)) = np.linalg.svd(kronkit.rearrange(M), full_matrices=False); "
          "cov + svd(R) = centred X^T X / N, rearranged, then the same SVD. Times include the "
          "rearrangement (and forming the covariance) for the peers, everything for kronkit.")
    print(f"samples-large (p=q={large_p}, N={large_n}): X is {X_mb:.0f} MB; peak RSS after "
          f"imports {info['rss_imports_mb']:.0f} MB, after building X "
          f"{info['rss_after_data_mb']:.0f} MB, during kpsvd_samples {info['peak_rss_mb']:.0f} MB "
          f"(+{info['peak_rss_mb'] - info['rss_after_data_mb']:.0f} MB for the call"
          f"{'' if info['hwm_reset'] else '; high-water mark not resettable here'}); "
          f"σ = {np.round(info['s'], 6).tolist()}, rank-{RANK} relative error "
          f"{info['rel_error']:.3g}")


if __name__ == "__main__":
    main()
