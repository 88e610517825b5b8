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

from .._errors import SingularFactorError
from .cholesky import RCOND_MIN, SIDES, IterateFactor, factor_iterate, inv_lower, inverse, logdet

__all__ = ["LOG_2PI", "NormalMoments", "NormalSamples", "flipflop_sweep",
           "rearrange_covariance", "separable_logdet", "sweep"]

LOG_2PI = math.log(2.0 * math.pi)
_SQRT_RCOND_MIN = math.sqrt(RCOND_MIN)


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


#: ``inv_logdet(M, side) -> (M⁻¹, log det M)`` for a stack of iterates (m, n, n) (the log
#: determinants (m,), or a float for a stack of one); ``side`` 0 for the row factor, 1 for the
#: column factor.
InvLogdet = Callable[[np.ndarray, int], tuple[np.ndarray, Any]]


def flipflop_sweep(R: np.ndarray, Bi: np.ndarray, p: int, q: int,
                   inv_logdet: InvLogdet) -> tuple[np.ndarray, np.ndarray, np.ndarray, Any]:
    """One flip-flop sweep for a stack of rearranged covariances ``R`` (m, p², q²).

    ``A ← unvec(R vec(B⁻¹))/q``, then ``B ← unvec(Rᵀ vec(A⁻¹))/p``, from ``Bi = B⁻¹``
    (m, q, q). ``inv_logdet`` inverts the iterates (and says how a bad one is reported).
    Returns ``A (m, p, p)``, ``B (m, q, q)``, ``B⁻¹`` and ``ld = q log det A + p log det B``
    (m,); with ``R = R(S)`` the Gaussian log-likelihood is ``−½N(P log 2π + ld + P)``.
    ``O(P² + p³ + q³)`` per data set.
    """
    m = R.shape[0]
    A = (R @ Bi.reshape(m, q * q, 1)).reshape(m, p, p) / q
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
        def inv_logdet(M: np.ndarray, side: int) -> tuple[np.ndarray, float]:
            f = factor_iterate(M[0], side, it)  # a stack of one: log det as a float
            return inverse(f)[None], logdet(f)

        A, B, self.Bi, ld = flipflop_sweep(self.R, self.Bi, self.p, self.q, inv_logdet)
        self.A, self.B = A[0], B[0]
        return -0.5 * (self.const + self.N * float(ld))


# ---------------------------------------------------------------------------------------
# The separable MLE given S, batched over data sets (the separability test and its null)
# ---------------------------------------------------------------------------------------
def _inv_logdet(M: np.ndarray, side: int) -> tuple[np.ndarray, np.ndarray]:
    """``(M⁻¹, log det M)`` of a stack of SPD iterates (…, k, k), or a clear error."""
    what = SIDES[side]
    try:
        L = np.linalg.cholesky(M)
    except np.linalg.LinAlgError as exc:
        raise SingularFactorError(
            f"the {what} covariance of the separable fit lost positive definiteness (the "
            "sample covariance is too close to singular for the test)") from exc
    d = np.diagonal(L, axis1=-2, axis2=-1)
    if not (d.min(axis=-1) > _SQRT_RCOND_MIN * d.max(axis=-1)).all():
        raise SingularFactorError(
            f"the {what} covariance of the separable fit is numerically singular (the "
            "sample covariance is too close to singular for the test)")
    Li = np.linalg.inv(L)
    return np.swapaxes(Li, -1, -2) @ Li, 2.0 * np.log(d).sum(axis=-1)


def separable_logdet(R: np.ndarray, p: int, q: int, max_iter: int,
                     tol: float) -> tuple[np.ndarray, int, np.ndarray]:
    """``log det(Â⊗B̂)`` of the separable MLE given ``S``, for a stack of rearranged ``S``.

    ``R`` has shape ``(m, p², q²)``, ``R[·, (a, b), (j, k)] = S[(a, j), (b, k)]``. Flip-flop
    (:func:`flipflop_sweep`, batched over the stack) from ``B = I``:
    ``A ← Σ_jk S_(aj)(bk) B⁻¹_kj / q``, ``B ← Σ_ab S_(aj)(bk) A⁻¹_ba / p``;
    after each sweep ``tr((A⊗B)⁻¹S) = P``, so the separable log-likelihood is
    ``−½N(P log 2π + ld + P)`` with ``ld = q log det A + p log det B``, which decreases
    monotonically. A data set has converged when the estimated remaining decrease of ``ld``
    (the last decrease ``d`` times ``r/(1 − r)``, ``r`` the observed contraction ratio; ``d``
    itself if ``r`` is not in (0, 1)) is at most ``2·tol·P`` — the log-likelihood is within
    ``tol·N·P`` of its maximum — or when ``ld`` stops decreasing (rounding floor). Sweeps
    continue until every data set has converged or ``max_iter``.
    Returns ``(ld (m,), sweeps, converged (m,))``. ``O(P²)`` per sweep and data set.
    """
    m = R.shape[0]
    P = p * q
    Bi = np.broadcast_to(np.eye(q), (m, q, q))
    thr = 2.0 * tol * P
    ld_prev = np.full(m, np.inf)
    dec_prev = np.full(m, np.nan)
    done = np.zeros(m, dtype=bool)
    ld = ld_prev
    it = 0
    for it in range(1, max_iter + 1):
        _, _, Bi, ld = flipflop_sweep(R, Bi, p, q, _inv_logdet)
        if it > 1:
            dec = ld_prev - ld
            with np.errstate(divide="ignore", invalid="ignore"):
                r = dec / dec_prev
                gap = np.where((r > 0) & (r < 1), dec * r / (1.0 - r), dec)
            done |= (dec <= thr * 1e-3) | (gap <= thr)
            if done.all():
                break
            dec_prev = dec
        ld_prev = ld
    return ld, it, done
