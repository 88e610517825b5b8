"""Dense oracles and well-conditioned random matrices shared by the tests."""

from __future__ import annotations

import functools

import numpy as np

# Tolerances live here, in one place.
RTOL = 1e-10  # float64 results of well-conditioned problems
ATOL = 1e-12
FD_RTOL = 1e-6  # central finite differences (step ~1e-6 relative)
COND_CAP = 1e3  # matrices are redrawn until their condition number is below this


def spd(rng: np.random.Generator, n: int, cond_cap: float = COND_CAP) -> np.ndarray:
    """A random symmetric positive definite n×n matrix with condition number < cond_cap."""
    while True:
        X = rng.standard_normal((n, n))
        A = X @ X.T / n + 0.5 * np.eye(n)
        A = 0.5 * (A + A.T)
        if np.linalg.cond(A) < cond_cap:
            return A


def general(rng: np.random.Generator, n: int, m: int | None = None,
            cond_cap: float = COND_CAP) -> np.ndarray:
    """A random (non-symmetric) matrix; square ones are redrawn until well conditioned."""
    m = n if m is None else m
    while True:
        A = rng.standard_normal((n, m)) + (2.0 * np.eye(n, m) if n == m else 0.0)
        if n != m or np.linalg.cond(A) < cond_cap:
            return A


def dense_kron(*factors: np.ndarray) -> np.ndarray:
    """The dense oracle: np.kron(A1, np.kron(A2, ...))."""
    return functools.reduce(np.kron, factors)


def dense_log_quad(factors, y, mu=None, alpha=1.0):
    """λ = log(α + wᵀ S⁻¹ w) computed densely with S = np.kron(...)."""
    S = dense_kron(*factors)
    w = np.asarray(y, dtype=float) - (0.0 if mu is None else np.asarray(mu, dtype=float))
    w2 = np.atleast_2d(w)
    q = np.einsum("ij,ij->i", w2, np.linalg.solve(S, w2.T).T)
    out = np.log(alpha + q)
    return float(out[0]) if np.ndim(y) == 1 else out


def central_diff(f, x: np.ndarray, h: float = 1e-6) -> np.ndarray:
    """Central finite-difference gradient of a scalar function f at x (any shape)."""
    x = np.array(x, dtype=float)
    g = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        step = h * max(1.0, abs(x[idx]))
        xp = x.copy()
        xm = x.copy()
        xp[idx] += step
        xm[idx] -= step
        g[idx] = (f(xp) - f(xm)) / (2 * step)
    return g
