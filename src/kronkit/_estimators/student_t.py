r"""The vec-form t separable fit by ECME, and its degrees-of-freedom step.

Model ``x_i = vec M + g_i/√(u_i/ν)``, ``g_i ~ N(0, A⊗B)``, ``u_i ~ χ²_ν`` (one weight per
observation). One ECME step: weights ``w_i = (ν+P)/(ν+δ_i)``,
``δ_i = ‖L_A⁻¹ E_i L_B⁻ᵀ‖_F²``; ``M ← Σ w_i X_i/Σ w_i``; one weighted flip-flop sweep (the
flip-flop of ``√w_i E_i``); and, when ``df`` is not fixed, ``ν`` maximising the *observed*
log-likelihood with the other parameters held (``scipy.optimize.minimize_scalar`` on
``log ν`` over ``df_bounds``, then refined to a root of ``∂ℓ/∂ν`` so that ``ν`` is a smooth
function of the data, not of the search's path). ECME converges linearly and often slowly;
:func:`kronkit._estimators.iteration.squarem` accelerates it through :class:`TSamples`.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from .._errors import ConvergenceWarning
from .cholesky import IterateFactor, factor_iterate, inv_lower, logdet
from .normal import sweep

__all__ = ["TSamples", "TState", "df_score", "df_step", "t_loglik", "t_normalizer",
           "warn_df_at_lower_bound"]

#: Below this ``ν`` the t normaliser ``lgamma((ν+P)/2) − lgamma(ν/2)`` is evaluated directly
#: (its rounding error, ≈ eps·(ν/2)·log(ν/2) ≤ 1e-11, is far below any tolerance and the call
#: costs a microsecond); above it :mod:`kronkit._special`, which is accurate up to ``ν = inf``
#: where the direct difference loses every digit (``ν ≳ 1e15``).
DF_DIRECT_MAX = 1e4


# ---------------------------------------------------------------------------------------
# The likelihood and the ν-step
# ---------------------------------------------------------------------------------------
def t_normalizer(nu: float, P: int) -> float:
    """``lgamma((ν+P)/2) − lgamma(ν/2) − (P/2) log(νπ)``."""
    if nu <= DF_DIRECT_MAX:
        return math.lgamma(0.5 * (nu + P)) - math.lgamma(0.5 * nu) - 0.5 * P * math.log(nu * math.pi)
    from .._special import t_log_normalizer

    return float(t_log_normalizer(nu, P))


def t_loglik(nu: float, delta: np.ndarray, ld: float | np.ndarray, P: int | np.ndarray) -> float:
    """``Σ_i log f(x_i)`` of the vec-form t from ``δ_i`` and ``ld = log det(A⊗B)``.

    With missing entries ``P`` and ``ld`` are arrays (N,): the number of observed entries of
    each observation and the log-determinant of its observed block of the scale.

    The kernel ``−((ν+P)/2) log1p(δ/ν)`` is a product of accurately computed factors (no
    cancellation at any finite ``ν``); the normaliser is :func:`t_normalizer`.
    """
    if isinstance(P, np.ndarray):  # incomplete observations: P_i observed, ld_i their scale's
        sizes, counts = np.unique(P, return_counts=True)
        norm = sum(int(c) * t_normalizer(nu, int(s)) for s, c in zip(sizes, counts, strict=True))
        kern = -0.5 * float(np.sum((nu + P) * np.log1p(delta / nu)))
        return float(norm - 0.5 * float(np.sum(ld)) + kern)
    N = delta.size
    kernel = -0.5 * (nu + P) * float(np.sum(np.log1p(delta / nu)))
    return float(N * (t_normalizer(nu, P) - 0.5 * float(ld)) + kernel)


def df_step(delta: np.ndarray, ld: float | np.ndarray, P: int | np.ndarray,
            bounds: tuple[float, float],
            nu_old: float | None) -> float:
    """ECME step: ``argmax_ν ℓ(ν | δ)`` on ``log ν`` in ``bounds`` (never worse than ``nu_old``)."""
    from scipy.optimize import minimize_scalar

    lo, hi = math.log(bounds[0]), math.log(bounds[1])
    res = minimize_scalar(lambda u: -t_loglik(math.exp(u), delta, ld, P),
                          bounds=(lo, hi), method="bounded", options={"xatol": 1e-9})
    nu = _polish_df(float(res.x), delta, P, lo, hi)
    if nu_old is not None:
        # keep the old ν only if it is better beyond rounding: the polished root is a smooth
        # function of δ, so fits along rounding-different paths (chunked data) stay together
        ll_new, ll_old = t_loglik(nu, delta, ld, P), t_loglik(nu_old, delta, ld, P)
        if ll_old > ll_new + 64.0 * float(np.finfo(np.float64).eps) * abs(ll_new):
            return nu_old
    return nu


def df_score(nu: float, delta: np.ndarray, P: int | np.ndarray) -> float:
    """``∂ℓ/∂ν`` of the t log-likelihood at fixed ``δ`` (``P`` an int, or (N,) observed counts).

    Direct digamma form for ``ν ≤ DF_DIRECT_MAX``; above it
    :func:`kronkit._special.t_logpdf_dnu`, which sums the normaliser's and the kernel's parts
    analytically (both ``O(P²/ν²)`` while their sum is smaller).
    """
    if nu <= DF_DIRECT_MAX:
        from scipy.special import digamma

        N = delta.size
        if isinstance(P, np.ndarray):  # P_i observed entries per observation
            return float(0.5 * np.sum(digamma(0.5 * (nu + P)) - digamma(0.5 * nu) - P / nu)
                         + np.sum(0.5 * (nu + P) * delta / (nu * (nu + delta))
                                  - 0.5 * np.log1p(delta / nu)))
        return float(0.5 * N * (digamma(0.5 * (nu + P)) - digamma(0.5 * nu) - P / nu)
                     + np.sum(0.5 * (nu + P) * delta / (nu * (nu + delta))
                              - 0.5 * np.log1p(delta / nu)))
    from .._special import t_logpdf_dnu

    return float(np.sum(t_logpdf_dnu(nu, P, delta)))


def _polish_df(u: float, delta: np.ndarray, P: int | np.ndarray, lo: float,
               hi: float) -> float:
    """Refine the bounded search's ``log ν`` (good to ~1e-9) to a root of the score.

    The bounded search stops at ``xatol``, and where it stops depends on rounding in ``δ``;
    the root of ``∂ℓ/∂ν`` in a small bracket around it is a smooth function of ``δ``, so fits
    of the same data summed in a different order (e.g. chunked) agree to rounding.
    """
    from scipy.optimize import brentq

    a, b = max(lo, u - 1e-6), min(hi, u + 1e-6)
    fa, fb = df_score(math.exp(a), delta, P), df_score(math.exp(b), delta, P)
    if a < b and fa > 0 > fb:
        u = brentq(lambda v: df_score(math.exp(v), delta, P), a, b, xtol=1e-15, rtol=1e-15)
    return float(math.exp(u))


def warn_df_at_lower_bound(nu: float, delta: np.ndarray, P: int | np.ndarray,
                           df_bounds: tuple[float, float], stacklevel: int = 3) -> None:
    """Warn if ``ν̂`` is the lower bound with the likelihood still rising towards smaller ``ν``."""
    lo = df_bounds[0]
    if nu > lo * (1.0 + 1e-6) or not df_score(lo, delta, P) < 0:
        return
    import warnings

    warnings.warn(
        f"the t log-likelihood still increases as ν decreases at ν = df_bounds[0] = {lo:.3g}: "
        "there is no maximum-likelihood estimate inside df_bounds — either the MLE has "
        f"ν < {lo:.3g}, or the likelihood is unbounded as ν → 0 and no MLE exists (as when many "
        "observations coincide or lie on a lower-dimensional subspace). The returned fit "
        "maximises the likelihood with ν held at the bound; it is not an MLE",
        ConvergenceWarning,
        stacklevel=stacklevel,
    )


# ---------------------------------------------------------------------------------------
# ECME
# ---------------------------------------------------------------------------------------
class TState(NamedTuple):
    """One ECME iterate with what the next step needs: ``δ`` and ``ℓ`` at these parameters."""

    M: np.ndarray
    A: np.ndarray
    B: np.ndarray
    fB: IterateFactor
    nu: float
    delta: np.ndarray
    ll: float


class TSamples:
    """ECME for the vec-form t: weights, weighted mean, weighted flip-flop sweep, ν-step.

    :meth:`em` is one ECME step (the map ``θ ↦ F(θ)`` that SQUAREM accelerates), :meth:`at`
    evaluates ``δ`` and ``ℓ`` at an extrapolated point, :meth:`vector` / the inverse in
    :meth:`at` map an iterate to and from the flat parameter vector ``(M, A/c, c·B, log ν)``
    with ``c = tr(A)/p`` (the gauge fixed, so that extrapolation does not wander along it).

    Chunked data: three passes per ECME step (weighted mean with the row statistic, column
    statistic, ``δ``) and one per extrapolated point; ``δ`` (N numbers) comes back for the
    ν-step and the weights go out.
    """

    def __init__(self, data: Any, assume_centered: bool, nu_fixed: float | None,
                 df_bounds: tuple[float, float]):
        self.data = data
        self.N, self.p, self.q = data.N, data.p, data.q
        self.P = self.p * self.q
        self.assume_centered = assume_centered
        self.nu_fixed = nu_fixed
        self.df_bounds = df_bounds

    def _finish(self, A: np.ndarray, B: np.ndarray, fA: IterateFactor, fB: IterateFactor,
                delta: np.ndarray, nu_old: float | None) -> TState:
        ld = self.q * logdet(fA) + self.p * logdet(fB)
        if self.nu_fixed is not None:
            nu = self.nu_fixed
        else:
            nu = df_step(delta, ld, self.P, self.df_bounds, nu_old)
        ll = t_loglik(nu, delta, ld, self.P)
        return TState(self.data.M, A, B, fB, nu, delta, ll)

    def first(self, it: int) -> TState:
        """The first iteration: a Gaussian flip-flop sweep from ``B = I``, then the ν-step."""
        A, B, fA, fB = sweep(self.data, factor_iterate(np.eye(self.q), 1, 0), it)
        return self._finish(A, B, fA, fB, self.data.delta(inv_lower(fB)), None)

    def em(self, s: TState, it: int) -> TState:
        """One ECME step from ``s``: weights, weighted mean, weighted sweep, ν-step."""
        weights = (s.nu + self.P) / (s.nu + s.delta)
        self.data.M = s.M
        self.data.reweight(weights, update_mean=not self.assume_centered)
        A, B, fA, fB = sweep(self.data, s.fB, it)
        return self._finish(A, B, fA, fB, self.data.delta(inv_lower(fB)), s.nu)

    def vector(self, s: TState) -> np.ndarray:
        """The flat parameter vector ``(M, A/c, c·B, log ν)`` of ``s`` (``c = tr(A)/p``)."""
        c = float(np.trace(s.A)) / self.p
        parts = [] if self.assume_centered else [s.M.ravel()]
        parts += [(s.A / c).ravel(), (s.B * c).ravel()]
        if self.nu_fixed is None:
            parts.append(np.array([math.log(s.nu)]))
        return np.concatenate(parts)

    def _unpack(self, v: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
        """``M, A, B, ν`` from a parameter vector (``ν`` clipped to ``df_bounds``)."""
        p, q, P = self.p, self.q, self.P
        i = 0
        if self.assume_centered:
            M = self.data.M
        else:
            M, i = v[:P].reshape(p, q), P
        A = v[i : i + p * p].reshape(p, p)
        B = v[i + p * p : i + p * p + q * q].reshape(q, q)
        if self.nu_fixed is None:
            lo, hi = self.df_bounds
            nu = float(min(max(math.exp(min(float(v[-1]), 700.0)), lo), hi))
        else:
            nu = self.nu_fixed
        return M, 0.5 * (A + A.T), 0.5 * (B + B.T), nu

    def at(self, v: np.ndarray, it: int) -> TState | None:
        """The iterate with parameter vector ``v`` and its ``δ``, ``ℓ``; None if not valid."""
        M, A, B, nu = self._unpack(v)
        try:
            fA, fB = factor_iterate(A, 0, it), factor_iterate(B, 1, it)
        except (np.linalg.LinAlgError, ValueError):
            return None
        with np.errstate(all="ignore"):  # a wild extrapolation is rejected, not reported
            delta = self.data.delta_at(M, inv_lower(fA), inv_lower(fB))
            ll = t_loglik(nu, delta, self.q * logdet(fA) + self.p * logdet(fB), self.P)
        if not (math.isfinite(ll) and np.all(np.isfinite(delta))):
            return None
        return TState(M, A, B, fB, nu, delta, ll)

    def result(self, s: TState):
        """``M, A, B, ν, weights`` at ``s``."""
        weights = (s.nu + self.P) / (s.nu + s.delta)
        return s.M, s.A, s.B, s.nu, weights
