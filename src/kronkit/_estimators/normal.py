r"""The Gaussian separable fit: the flip-flop algorithm (Dutilleul 1999), on the samples or on
the rearranged sample covariance.

Alternately ``A ← Σ_i E_i B⁻¹ E_iᵀ/(N q)`` and ``B ← Σ_i E_iᵀ A⁻¹ E_i/(N p)`` with
``E_i = X_i − M``, from ``B = I``. After each sweep ``Σ_i δ_i = N·P`` exactly, so the
log-likelihood is ``ℓ = −½N(P log 2π + q log det A + p log det B + P)``: no pass over the data.

- :class:`NormalSamples` works on the observations (a
  :class:`~kronkit._estimators.statistics.SampleStatistics`): ``O(N·p·q·(p+q))`` per sweep.
- :class:`NormalMoments` works on ``R(S)``, the ``p²×q²`` rearrangement of the sample
  covariance: ``O(N·P²)`` once, then ``O(P² + p³ + q³)`` per sweep. Its sweep,
  :func:`flipflop_sweep`, is batched over a stack of covariances: the separability test fits
  its Monte Carlo null replicates with it, many at a time.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from .cholesky import IterateFactor, factor_iterate, inv_lower, inverse, logdet

__all__ = ["LOG_2PI", "NormalMoments", "NormalSamples", "flipflop_sweep",
           "rearrange_covariance", "sweep"]

LOG_2PI = math.log(2.0 * math.pi)


def sweep(data: Any, fB: IterateFactor, it: int):
    """One flip-flop sweep: ``A = Σ_i w_i E_i B⁻¹E_iᵀ/(N q)``, then ``B = Σ_i w_i E_iᵀA⁻¹E_i/(N p)``.

    ``data`` is a :class:`~kronkit._estimators.statistics.SampleStatistics`; the second
    statistic needs the new ``A``, so a sweep is two passes over chunked data. Returns
    ``A, B, fA, fB_new``.
    """
    N, p, q = data.N, data.p, data.q
    A = data.row_stat(inv_lower(fB)) / (N * q)
    fA = factor_iterate(A, 0, it)
    B = data.col_stat(inv_lower(fA)) / (N * p)
    fB_new = factor_iterate(B, 1, it)
    return A, B, fA, fB_new


class NormalSamples:
    """Gaussian flip-flop on the samples: O(N·p·q·(p+q)) per iteration (two passes if chunked)."""

    def __init__(self, data: Any):
        self.data = data
        self.N, self.p, self.q = data.N, data.p, data.q
        self.fB = factor_iterate(np.eye(self.q), 1, 0)
        self.const = self.N * self.p * self.q * (LOG_2PI + 1.0)

    def step(self, it: int) -> float:
        """One sweep; returns ``ℓ`` at the new iterate."""
        self.A, self.B, fA, self.fB = sweep(self.data, self.fB, it)
        # After the B-step Σ_i δ_i = tr(B⁻¹ Σ_i G_iᵀG_i) = N·p·q exactly.
        ld = self.q * logdet(fA) + self.p * logdet(self.fB)
        return -0.5 * (self.const + self.N * ld)

    def result(self):
        """``M, A, B, ν = inf, weights = 1``."""
        return self.data.M, self.A, self.B, math.inf, np.ones(self.N)


def rearrange_covariance(S: np.ndarray, p: int, q: int) -> np.ndarray:
    """``R[…, (a, b), (j, k)] = S[…, (a, j), (b, k)]`` for one P×P matrix or a stack (a copy):
    the rearrangement with ``R(A⊗B) = vec(A) vec(B)ᵀ`` on which the flip-flop is two products."""
    lead = S.shape[:-2]
    S6 = S.reshape(*lead, p, q, p, q)
    return np.ascontiguousarray(np.moveaxis(S6, -3, -2)).reshape(*lead, p * p, q * q)


#: ``inv_logdet(M, side) -> (M⁻¹, log det M)`` for a stack of iterates (m, n, n); ``side`` 0
#: for the row factor, 1 for the column factor.
InvLogdet = Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]]


def flipflop_sweep(R: np.ndarray, Bi: np.ndarray, p: int, q: int,
                   inv_logdet: InvLogdet) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One flip-flop sweep for a stack of rearranged covariances ``R`` (m, p², q²).

    ``A ← unvec(R vec(B⁻¹))`` scaled to ``tr A = p`` (only ``A⊗B`` is identified; the gauge
    keeps the iterates of order one), then ``B ← unvec(R ᵀvec(A⁻¹))/p``, from ``Bi = B⁻¹``
    (m, q, q). ``inv_logdet`` inverts the iterates (and says how a bad one is reported).
    Returns ``A (m, p, p)``, ``B (m, q, q)``, ``B⁻¹`` and ``ld = q log det A + p log det B``
    (m,); with ``R = R(S)`` the Gaussian log-likelihood is ``−½N(P log 2π + ld + P)``.
    ``O(P² + p³ + q³)`` per data set.
    """
    m = R.shape[0]
    A = (R @ Bi.reshape(m, q * q, 1)).reshape(m, p, p)
    A *= (p / np.trace(A, axis1=1, axis2=2))[:, None, None]
    Ai, ldA = inv_logdet(A, 0)
    B = (Ai.reshape(m, 1, p * p) @ R).reshape(m, q, q) / p
    Bi, ldB = inv_logdet(B, 1)
    return A, B, Bi, q * ldA + p * ldB


class NormalMoments(NormalSamples):
    """Gaussian flip-flop on the rearranged sample covariance ``R(S) = (1/N) Σ E_i⊗E_i``.

    :func:`flipflop_sweep` on a stack of one: O(N·P²) once to form ``S`` (P×P memory; one
    pass if chunked), then O(P² + p³ + q³) per iteration.
    """

    def __init__(self, data: Any):
        super().__init__(data)
        self.R = rearrange_covariance(data.second_moment() / self.N, self.p, self.q)[None]
        self.Bi = np.eye(self.q)[None]

    def step(self, it: int) -> float:
        def inv_logdet(M: np.ndarray, side: int) -> tuple[np.ndarray, np.ndarray]:
            f = factor_iterate(M[0], side, it)
            return inverse(f)[None], np.array([logdet(f)])

        A, B, self.Bi, ld = flipflop_sweep(self.R, self.Bi, self.p, self.q, inv_logdet)
        self.A, self.B = A[0], B[0]
        return -0.5 * (self.const + self.N * float(ld[0]))
