r"""The null law of the separability statistic: analytic cumulants and Monte Carlo replicates.

Under ``H0`` the statistic ``T = N [log det(Â⊗B̂) − log det S]`` of
:func:`kronkit.separability_test` depends on the data only through ``S``, and its law only on
``(p, q, n, N)``. Two ways to it:

Null moments. With ``S̃ = P·S/tr S`` (trace ``P``) and ``Ã⊗B̃`` its separable MLE,
``T = U − V``, ``U = −N log det S̃`` (Mauchly's sphericity statistic of ``S``) and
``V = −N log det(Ã⊗B̃)`` (the sphericity statistic *within* the separable model, ``p(p+1)/2 +
q(q+1)/2 − 2`` parameters). For ``W ~ Wishart_P(n, I)``, ``tr W`` is independent of
``W/tr W``, so the cumulants of ``log det S̃`` are exact: those of ``log det W`` (a sum of
independent ``log χ²_{n−i+1}``) minus ``P^r`` times those of ``log tr W`` (``log χ²_{nP}``).
``V`` is, to the order that matters, the sum of the sphericity statistics of the row factor
(``p×p``, ``n·q`` degrees of freedom, multiplier ``N·q``) and of the column factor (``q×q``,
``n·p``, ``N·p``), whose cumulants are given by the same formula; and ``V`` is asymptotically
independent of ``T`` (nested likelihood-ratio statistics), so ``κ_r(T) ≈ κ_r(U) − κ_r(V)``
(:func:`null_cumulants`, :func:`scaled_chi2_sf`).

Null replicates. ``W ~ Wishart_P(n, I)`` by the Bartlett decomposition (``O(P³)`` whatever
``N``), with the separable MLE of ``W`` by the batched flip-flop on its rearrangement
(:func:`kronkit._estimators.normal.separable_logdet`, ``O(P²)`` per sweep), many replicates
at a time (:func:`null_statistics`).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from scipy.special import digamma, polygamma

from .._errors import ConvergenceWarning
from .normal import rearrange_covariance, separable_logdet

__all__ = ["BATCH_ENTRIES", "chi2_df", "null_cumulants", "null_statistics", "scaled_chi2_sf",
           "sphericity_cumulants", "warn_unconverged", "wishart_identity"]


# ---------------------------------------------------------------------------------------
# Null moments
# ---------------------------------------------------------------------------------------
def sphericity_cumulants(P: int, m: float, mult: float) -> np.ndarray:
    """First three cumulants of ``−mult·log det(P·W/tr W)`` for ``W ~ Wishart_P(m, I)``."""
    a = (m - np.arange(P)) / 2.0
    out = np.empty(3)
    out[0] = -mult * (np.sum(digamma(a)) - P * digamma(m * P / 2.0) + P * math.log(P))
    for r in (2, 3):
        out[r - 1] = (-mult) ** r * (np.sum(polygamma(r - 1, a))
                                     - float(P) ** r * polygamma(r - 1, m * P / 2.0))
    return out


def null_cumulants(p: int, q: int, n: int, N: int) -> np.ndarray:
    """Approximate first three cumulants of the statistic under ``H0`` (see module notes).

    Exact for the sphericity part ``U``; the part ``V`` removed by the separable fit is
    approximated by independent row and column sphericity statistics.
    """
    return (sphericity_cumulants(p * q, n, N) - sphericity_cumulants(p, n * q, N * q)
            - sphericity_cumulants(q, n * p, N * p))


def scaled_chi2_sf(t: float, kappa: np.ndarray) -> float:
    """``P(a + b·χ²_f ≥ t)`` with ``a, b, f`` matching the cumulants ``κ1, κ2, κ3 > 0``.

    Skewness ``√(8/f)`` of ``χ²_f`` fixes ``f = 8κ2³/κ3²``; then ``b = κ3/(4κ2)``, ``a = κ1 − b·f``
    (a Pearson type III approximation). Normal approximation if ``κ3 <= 0``.
    """
    from scipy.stats import chi2, norm

    k1, k2, k3 = (float(v) for v in kappa)
    if not k3 > 0:
        return float(norm.sf((t - k1) / math.sqrt(k2)))
    f = 8.0 * k2**3 / k3**2
    b = k3 / (4.0 * k2)
    return float(chi2.sf((t - (k1 - b * f)) / b, f))


def chi2_df(p: int, q: int) -> int:
    """``P(P+1)/2 − [p(p+1)/2 + q(q+1)/2 − 1]``."""
    P = p * q
    return P * (P + 1) // 2 - (p * (p + 1) // 2 + q * (q + 1) // 2 - 1)


# ---------------------------------------------------------------------------------------
# Null replicates
# ---------------------------------------------------------------------------------------
#: Null replicates are drawn and fitted in batches holding about this many P×P entries.
BATCH_ENTRIES = 2_000_000


def wishart_identity(rng: np.random.Generator, P: int, n: int,
                     size: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """``(W, log det W)``, ``size`` draws of ``W ~ Wishart_P(n, I)`` (shapes (size, P, P),
    (size,)) by the Bartlett decomposition ``W = L Lᵀ``: ``L`` lower triangular with
    ``L_ii = √χ²_{n−i}`` (``i = 0, …, P−1``) and standard normal entries below. ``O(P³)``."""
    L = np.tril(rng.standard_normal((size, P, P)), -1)
    d = np.sqrt(rng.chisquare(n - np.arange(P), size=(size, P)))
    idx = np.arange(P)
    L[:, idx, idx] = d
    return L @ np.swapaxes(L, -1, -2), 2.0 * np.sum(np.log(d), axis=-1)


def warn_unconverged(failed: int, total: int, max_iter: int) -> None:
    if failed:
        warnings.warn(
            f"separability_test: the separable fit did not converge in max_iter = {max_iter} "
            f"sweeps for {failed} of {total} simulated data sets; increase `max_iter`",
            ConvergenceWarning, stacklevel=4)


def null_statistics(p: int, q: int, n: int, N: int, n_simulations: int,
                    rng: np.random.Generator, max_iter: int = 2000,
                    tol: float = 1e-13) -> np.ndarray:
    """``n_simulations`` draws of the statistic under the Gaussian ``H0``.

    ``T = N (log det(Â⊗B̂) − log det W)`` with ``W ~ Wishart_P(n, I)`` (the scale of ``W``
    cancels), in batches. ``O(P³)`` per replicate, independent of ``N``.
    """
    P = p * q
    out = np.empty(n_simulations)
    batch = max(1, BATCH_ENTRIES // (P * P))
    failed = 0
    for start in range(0, n_simulations, batch):
        size = min(batch, n_simulations - start)
        W, ldW = wishart_identity(rng, P, n, size)
        ld, _, conv = separable_logdet(rearrange_covariance(W, p, q), p, q, max_iter, tol)
        failed += int(np.count_nonzero(~conv))
        out[start:start + size] = N * (ld - ldW)
    warn_unconverged(failed, n_simulations, max_iter)
    return out
