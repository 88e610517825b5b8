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

4. ``white-noise`` — ``kronkit.kpsvd_samples(X, 3)`` for white-noise samples (no spectral gap:
   σ2/σ3 ≈ 1.004, the top of a continuum), at p = q = 316, N = 200 (in a subprocess: wall
   and CPU time, products with R(M), peak RSS), and at p = q = 40 against the dense SVD.
   For the large case the accuracy of σ is bounded from the residuals
   ``r_j = ‖R(M)^T u_j - σ_j v_j‖`` (``R v_j = σ_j u_j`` holds by construction): some singular
   value lies within ``r_j`` of ``σ_j`` (Weyl), and within ``r_j²/gap`` when ``gap`` separates
   it from the rest; ``--white-reference`` also reruns it with ``tol=1e-14`` and another seed
   and reports the largest relative difference of σ.

The test matrices of cases 1-3 have a decaying Kronecker spectrum (the top five terms separated from the
rest, as in a real covariance with a few Kronecker components plus noise). Each row reports
the largest relative difference between kronkit's five σ and the dense SVD's; the Lanczos
tolerance (1e-12) is chosen to make it well below 1e-10.

Run ``python benchmarks/bench_kpsvd.py [--quick]``. ``--quick`` shrinks every case (a smoke
run of a few seconds); ``--dense-n``, ``--p``, ``--n-samples``, ``--large-p``, ``--large-n``,
``--white-p``, ``--white-n`` override the sizes; ``--skip-peers`` times kronkit only;
``--only-white`` runs case 4 alone. The machine's load (``os.getloadavg``) is printed with
the results: on a shared machine wall times are noisy, CPU times and product counts less so.
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


def white_problem(N: int, p: int, seed: int = 0) -> np.ndarray:
    """White-noise samples ``X_n`` with i.i.d. N(0, 1) entries: no spectral gap below σ1."""
    return np.random.default_rng(seed).standard_normal((N, p, p))


def _count_products():
    """Wrap the samples operator so that every product with R(M) or R(M)^T is counted."""
    from kronkit._kpsvd.operators import SamplesR

    count = [0]
    mm, rm = SamplesR._matmat, SamplesR._rmatmat

    def matmat(self, X):
        count[0] += X.shape[1]
        return mm(self, X)

    def rmatmat(self, Y):
        count[0] += Y.shape[1]
        return rm(self, Y)

    SamplesR._matmat, SamplesR._rmatmat = matmat, rmatmat
    return count


def _child_white(N: int, p: int, reference: bool) -> None:
    """Runs in a subprocess: one kpsvd_samples call on white noise, printed as JSON."""
    import warnings

    import kronkit
    from kronkit._kpsvd.operators import SamplesR
    from kronkit._samples import chunk_samples

    count = _count_products()
    X = white_problem(N, p)
    rss_data = peak_rss_mb()
    reset = _reset_hwm()
    load0 = os.getloadavg()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        c0, t0 = time.process_time(), time.perf_counter()
        res = kronkit.kpsvd_samples(X, 3, random_state=0)
        t, cpu = time.perf_counter() - t0, time.process_time() - c0
    products = count[0]
    load1 = os.getloadavg()
    out = {"time": t, "cpu": cpu, "products": products, "peak_rss_mb": peak_rss_mb(),
           "rss_after_data_mb": rss_data, "hwm_reset": reset, "s": res.s.tolist(),
           "method": res.method, "load": [load0[0], load1[0]],
           "warnings": [str(w.message) for w in caught]}
    # residual bounds: R v_j = s_j u_j by construction; r_j = ‖R^T u_j - s_j v_j‖
    op = SamplesR(chunk_samples(X, X.mean(axis=0)), N)
    U = res.A.reshape(3, -1).T
    V = res.B.reshape(3, -1).T
    r_right = np.linalg.norm(op.matmat(V) - U * res.s, axis=0)
    r_left = np.linalg.norm(op.rmatmat(U) - V * res.s, axis=0)
    out["rel_res_right"] = (r_right / res.s).tolist()
    out["rel_res_left"] = (r_left / res.s).tolist()
    if reference:
        c0, t0 = time.process_time(), time.perf_counter()
        ref = kronkit.kpsvd_samples(X, 3, random_state=1, tol=1e-14)
        out["ref_time"], out["ref_cpu"] = time.perf_counter() - t0, time.process_time() - c0
        out["ref_diff"] = float(np.max(np.abs(res.s - ref.s) / ref.s))
    print(json.dumps(out))


def case_white(N: int, p: int, reference: bool) -> tuple[list[str], dict]:
    cmd = [sys.executable, os.path.abspath(__file__), "--child-white", str(N), str(p)]
    if reference:
        cmd.append("--white-reference")
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    info = json.loads(out.stdout.strip().splitlines()[-1])
    bound = max(info["rel_res_left"])
    acc = f"Weyl bound {bound:.1e}"
    if "ref_diff" in info:
        acc += f"; vs tol=1e-14 rerun {info['ref_diff']:.1e}"
    row = [
        f"white noise N={N}, p=q={p}, r=3",
        f"kpsvd_samples ({info['method']})",
        f"{fmt_time(info['time'])} (CPU {fmt_time(info['cpu'])}, {info['products']} products)",
        "dense: not run",
        "—",
        "—",
        acc,
    ]
    return row, info


def case_white_small(N: int, p: int) -> list[str]:
    import kronkit

    count = _count_products()
    X = white_problem(N, p)
    c0, t0 = time.process_time(), time.perf_counter()
    res = kronkit.kpsvd_samples(X, 3, random_state=0)
    t, cpu = time.perf_counter() - t0, time.process_time() - c0
    t1 = time.perf_counter()
    Xc = (X - X.mean(axis=0)).reshape(N, -1)
    s_ref = np.linalg.svd(kronkit.rearrange(Xc.T @ Xc / N, (p, p)), compute_uv=False)
    t_peer = time.perf_counter() - t1
    gaps = s_ref[1:4] / s_ref[2:5]
    return [
        f"white noise N={N}, p=q={p}, r=3 (σ2/σ3 = {gaps[0]:.4f}, σ3/σ4 = {gaps[1]:.4f})",
        f"kpsvd_samples ({res.method})",
        f"{fmt_time(t)} (CPU {fmt_time(cpu)}, {count[0]} products)",
        "cov + svd(R)",
        fmt_time(t_peer),
        fmt_ratio(t_peer / t),
        f"{rel_sigma_diff(res.s, s_ref):.1e}",
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, a few seconds")
    ap.add_argument("--dense-n", type=int, default=None, help="factor size of the dense case")
    ap.add_argument("--p", type=int, default=None, help="p = q of the samples case")
    ap.add_argument("--n-samples", type=int, default=None, help="N of the samples case")
    ap.add_argument("--large-p", type=int, default=None, help="p = q of the large case")
    ap.add_argument("--large-n", type=int, default=None, help="N of the large case")
    ap.add_argument("--skip-peers", action="store_true", help="time kronkit only")
    ap.add_argument("--white-p", type=int, default=None, help="p = q of the white-noise case")
    ap.add_argument("--white-n", type=int, default=None, help="N of the white-noise case")
    ap.add_argument("--white-reference", action="store_true",
                    help="rerun the white-noise case with tol=1e-14 as a reference")
    ap.add_argument("--only-white", action="store_true", help="run the white-noise case only")
    ap.add_argument("--child-large", nargs=2, type=int, help=argparse.SUPPRESS)
    ap.add_argument("--child-white", nargs=2, type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child_large:
        _child_large(*args.child_large)
        return
    if args.child_white:
        _child_white(*args.child_white, args.white_reference)
        return
    q = args.quick
    dense_n = args.dense_n or (24 if q else 64)
    p = args.p or (20 if q else 100)
    N = args.n_samples or (300 if q else 2000)
    large_p = args.large_p or (60 if q else 316)
    large_n = args.large_n or (50 if q else 200)
    white_p = args.white_p or (40 if q else 316)
    white_n = args.white_n or 200

    import scipy

    print(f"numpy {np.__version__}, scipy {scipy.__version__}, {platform.processor() or 'cpu'}, "
          f"{os.cpu_count()} CPUs{' (quick run)' if q else ''}; load average at start "
          f"{os.getloadavg()[0]:.2f}")
    rows = []
    info = None
    if not args.only_white:
        rows += [case_dense(dense_n, args.skip_peers), case_samples(N, p, args.skip_peers)]
        row, info = case_large(large_n, large_p)
        rows.append(row)
    rows.append(case_white_small(white_n, 40))
    wrow, winfo = case_white(white_n, white_p, args.white_reference)
    rows.append(wrow)
    print_table(
        "kronkit KPSVD vs dense SVD (one run each; ratio = peer time / kronkit time)",
        ["case", "kronkit", "time", "peer", "peer time", "ratio", "max rel σ diff / memory"],
        rows,
        None,
    )
    print(f"white noise (p=q={white_p}, N={white_n}): σ = {np.round(winfo['s'], 6).tolist()}; "
          f"relative residuals ‖R^T u - σ v‖/σ = {np.array(winfo['rel_res_left']).round(12)}, "
          f"‖R v - σ u‖/σ = {np.array(winfo['rel_res_right']).round(14)}; peak RSS "
          f"{winfo['peak_rss_mb']:.0f} MB (after building X {winfo['rss_after_data_mb']:.0f} MB); "
          f"load average {winfo['load'][0]:.2f} before, {winfo['load'][1]:.2f} after the call"
          + (f"; warnings: {winfo['warnings']}" if winfo["warnings"] else "")
          + (f"; tol=1e-14 rerun {fmt_time(winfo['ref_time'])} (CPU {fmt_time(winfo['ref_cpu'])})"
             if "ref_time" in winfo else ""))
    print(f"load average at the end {os.getloadavg()[0]:.2f}")
    if info is None:
        return
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
