"""Small-size timings that catch overhead regressions: ``log_quad_grad`` at m = 8, 64, 200
(cached and fresh ``Kron``) and 20 iterations of ``separable_mle`` at p = q = 30, N = 1000
(normal moments / samples, t with fixed and estimated ν). One BLAS thread, best of 7 rounds.

For an A/B of two trees, run it alternately under each:
``PYTHONPATH=/path/to/old/src python benchmarks/bench_small.py`` and
``python benchmarks/bench_small.py`` (RESULTS.md, "After the restructure").
"""

from __future__ import annotations

import functools
import time
import warnings

import numpy as np
from threadpoolctl import threadpool_limits

import kronkit as kk


def best(f, n: int, rounds: int = 7) -> float:
    """Best mean time per call of ``f`` over ``rounds`` rounds of ``n`` calls."""
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(n):
            f()
        times.append((time.perf_counter() - t0) / n)
    return min(times)


def spd(rng: np.random.Generator, n: int) -> np.ndarray:
    X = rng.standard_normal((n, n))
    return X @ X.T / n + np.eye(n)


def gradients(rng: np.random.Generator) -> dict[str, float]:
    out = {}
    for m, n in ((8, 2000), (64, 300), (200, 20)):
        A, B = spd(rng, m), spd(rng, m)
        y = rng.standard_normal(m * m)
        K = kk.Kron(A, B)
        kk.log_quad_grad(K, y)
        out[f"log_quad_grad cached m={m}"] = best(functools.partial(kk.log_quad_grad, K, y), n)
        fresh = functools.partial(lambda A, B, y: kk.log_quad_grad(kk.Kron(A, B), y), A, B, y)
        out[f"log_quad_grad fresh m={m}"] = best(fresh, n)
    return out


def fits(rng: np.random.Generator) -> dict[str, float]:
    p = q = 30
    N = 1000
    L = np.linalg.cholesky(np.kron(spd(rng, p), spd(rng, q)))
    X = (rng.standard_normal((N, p * q)) @ L.T).reshape(N, p, q)
    Xt = X / np.sqrt(rng.chisquare(5, N) / 5)[:, None, None]
    cases = [("normal moments", {"method": "moments"}, X),
             ("normal samples", {"method": "samples"}, X),
             ("t df=5", {"distribution": "t", "df": 5.0}, Xt),
             ("t ECME", {"distribution": "t"}, Xt)]
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 20 iterations at tol=0 do not converge, by design
        for name, kw, data in cases:
            fit = functools.partial(kk.separable_mle, data, max_iter=20, tol=0.0, **kw)
            out[f"separable_mle 20 it. {name}"] = best(fit, 1, rounds=3)
    return out


def main() -> None:
    rng = np.random.default_rng(0)
    with threadpool_limits(1, user_api="blas"):
        results = {**gradients(rng), **fits(rng)}
    for name, t in results.items():
        print(f"{name:36s} {t * 1e6:12.1f} µs")


if __name__ == "__main__":
    main()
