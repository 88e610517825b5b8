r"""What the incomplete-grid operators need besides the capacitance form (:mod:`kronkit._cells`).

* :func:`diagonal_fit` — the Kronecker-structured diagonal ``d̄ = a_1⊗…⊗a_d`` (or a constant)
  that agrees with an arbitrary non-negative grid diagonal ``d`` on the most cells, so that
  ``S + diag(d) = (S + diag(d̄)) + E_C diag(d − d̄) E_Cᵀ`` with few cells ``C``.
* :func:`pcg` — preconditioned conjugate gradients for many right-hand sides at once, with a
  bound, a stopping rule on the relative residual and a :class:`ConvergenceWarning`.
* :func:`slq_logdet` — a stochastic Lanczos-quadrature estimate of ``log det H`` with its
  standard error, for when the user asks for one (never used silently).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from ._errors import ConvergenceWarning

__all__ = ["FIT_ULPS", "DiagonalFit", "LogdetEstimate", "diagonal_fit", "pcg", "slq_logdet"]

#: Cells whose diagonal differs from the Kronecker-structured fit by at most this many units in
#: the last place of the diagonal are treated as agreeing (a backward error of that size in the
#: per-cell variance, below the rounding of any solve with it).
FIT_ULPS = 64


class DiagonalFit(NamedTuple):
    """``d̄ = ⊗_k vectors[k]`` (``vectors`` None: ``d̄ = 0``) and the cells where ``d ≠ d̄``."""

    vectors: tuple[np.ndarray, ...] | None
    mismatch: np.ndarray  # flat indices, sorted
    constant: bool


def _agree(d: np.ndarray, fit: np.ndarray) -> np.ndarray:
    return np.abs(d - fit) <= FIT_ULPS * np.finfo(np.float64).eps * np.abs(d)


def _constant_fit(d: np.ndarray) -> DiagonalFit:
    values, counts = np.unique(d, return_counts=True)
    c = float(values[int(np.argmax(counts))])
    dims = d.shape
    vectors = None if c == 0.0 else (np.full(dims[0], c), *(np.ones(n) for n in dims[1:]))
    return DiagonalFit(vectors, np.flatnonzero(d.ravel() != c), True)


def _separable_fit(d: np.ndarray, sweeps: int = 8) -> DiagonalFit | None:
    """Median polish of ``log d`` (Tukey): a robust additive fit, exact on the cells that follow
    a separable pattern when the others are a minority in every row and column."""
    if not np.all(d > 0):
        return None
    L = np.log(d)
    dims = d.shape
    effects = [np.zeros(n) for n in dims]
    R = L.copy()
    for _ in range(sweeps):
        for k in range(len(dims)):
            axes = tuple(j for j in range(len(dims)) if j != k)
            med = np.median(R, axis=axes) if axes else R.copy()
            effects[k] += med
            shape = [1] * len(dims)
            shape[k] = dims[k]
            R -= med.reshape(shape)
    vectors = tuple(np.exp(e) for e in effects)
    fit = vectors[0]
    for v in vectors[1:]:
        fit = np.multiply.outer(fit, v)
    return DiagonalFit(vectors, np.flatnonzero(~_agree(d, fit).ravel()), False)


def diagonal_fit(d: np.ndarray) -> list[DiagonalFit]:
    """Candidate fits of the grid diagonal ``d`` (non-negative), best (fewest cells) first: a
    separable positive fit when it beats the most frequent constant."""
    const = _constant_fit(d)
    sep = _separable_fit(d) if const.mismatch.size else None
    if sep is not None and sep.mismatch.size < const.mismatch.size:
        return [sep, const]
    return [const]


def pcg(apply_a: Callable[[np.ndarray], np.ndarray], apply_m: Callable[[np.ndarray], np.ndarray],
        B: np.ndarray, rtol: float, maxiter: int, what: str) -> tuple[np.ndarray, int]:
    """Solve ``A X = B`` row by row (rows of ``B``: right-hand sides; ``A`` symmetric positive
    definite) by preconditioned CG until ``‖b − Ax‖ ≤ rtol·‖b‖`` for every row or ``maxiter``
    iterations (then a :class:`ConvergenceWarning` naming the largest relative residual).
    Returns ``(X, iterations)``."""
    X = np.zeros_like(B)
    norms = np.linalg.norm(B, axis=1)
    target = rtol * norms
    R = B.copy()
    Z = apply_m(R)
    Pd = Z.copy()
    rz = np.einsum("ij,ij->i", R, Z)
    it = 0
    res = norms.copy()
    while it < maxiter and np.any(res > target):
        active = res > target
        AP = apply_a(Pd)
        pap = np.einsum("ij,ij->i", Pd, AP)
        step = np.where(active, rz / np.where(pap > 0, pap, 1.0), 0.0)
        X += step[:, None] * Pd
        R -= step[:, None] * AP
        res = np.linalg.norm(R, axis=1)
        Z = apply_m(R)
        rz_new = np.einsum("ij,ij->i", R, Z)
        beta = np.where(active, rz_new / np.where(rz != 0, rz, 1.0), 0.0)
        Pd = Z + beta[:, None] * Pd
        rz = rz_new
        it += 1
    if np.any(res > target):
        worst = float(np.max(res / np.where(norms > 0, norms, 1.0)))
        warnings.warn(f"{what}: conjugate gradients stopped at maxiter={maxiter} with relative "
                      f"residual {worst:.3g} > rtol={rtol:.3g}", ConvergenceWarning, stacklevel=3)
    return X, it


class LogdetEstimate(NamedTuple):
    """A stochastic estimate of ``log det``: ``value ± stderr`` (standard error of the mean over
    ``n_probes`` Rademacher probes, Lanczos quadrature with ``steps`` steps)."""

    value: float
    stderr: float
    n_probes: int
    steps: int


def slq_logdet(apply_h: Callable[[np.ndarray], np.ndarray], k: int, n_probes: int, steps: int,
               rng: Any) -> tuple[float, float]:
    """``(mean, standard error)`` of the stochastic Lanczos-quadrature estimate of
    ``log det H`` for a symmetric positive definite ``H`` (k × k) given by its products."""
    steps = min(steps, k)
    samples = np.empty(n_probes)
    for i in range(n_probes):
        z = rng.choice([-1.0, 1.0], size=k)
        Q = np.zeros((steps, k))
        alpha, beta = np.zeros(steps), np.zeros(steps)
        q = z / math.sqrt(k)
        m = steps
        for j in range(steps):
            Q[j] = q
            v = apply_h(q[None, :])[0]
            alpha[j] = q @ v
            for _ in range(2):  # full re-orthogonalisation, twice ("twice is enough")
                v -= Q[: j + 1].T @ (Q[: j + 1] @ v)
            b = float(np.linalg.norm(v))
            if j + 1 < steps:
                if b <= 1e-12 * abs(alpha[j]):
                    m = j + 1
                    break
                beta[j] = b
                q = v / b
        T = np.diag(alpha[:m]) + np.diag(beta[: m - 1], 1) + np.diag(beta[: m - 1], -1)
        theta, S = np.linalg.eigh(T)
        if np.any(theta <= 0):
            raise np.linalg.LinAlgError("the Lanczos matrix is not positive definite")
        samples[i] = k * float(np.sum(S[0] ** 2 * np.log(theta)))
    stderr = float(np.std(samples, ddof=1) / math.sqrt(n_probes)) if n_probes > 1 else math.inf
    return float(np.mean(samples)), stderr
