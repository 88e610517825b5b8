r"""Result types of the gradient functions, in one place so that they read alike.

Every gradient result names its fields after the argument they differentiate and orders them
the same way: ``value``, ``factors`` (one entry per Kronecker factor ``A_k``), ``y`` (the
observations), the location (``mu`` for :func:`kronkit.log_quad_grad`, the constructor's
``mean`` / ``loc`` for the distributions), then the scalar parameter (``alpha``, ``df``).
For a :class:`kronkit.SumOfKron` ``S = Σ_t F_t1⊗…⊗F_td``, ``factors`` is nested:
``factors[t][k] = ∂/∂F_tk`` for every factor of every term (tuples of tuples).

- :class:`LogQuadGrad` — :func:`kronkit.log_quad_grad`: ``(value, factors, y, mu, alpha)``.
- :class:`InvQuadGrad` — :func:`kronkit.inv_quad_grad`: ``(value, factors, y, mu)``.
- :class:`LogQuadHVP` — :func:`kronkit.log_quad_hvp`: ``(value, factors, y, grad)``.
- :class:`KronNormalGrad` — :meth:`kronkit.KronNormal.logpdf_grad`: ``(value, factors, y, mean)``.
- :class:`KronTGrad` — :meth:`kronkit.KronT.logpdf_grad`: ``(value, factors, y, loc, df)``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["InvQuadGrad", "KronNormalGrad", "KronTGrad", "LogQuadGrad", "LogQuadHVP"]


class LogQuadGrad(NamedTuple):
    """Value and gradients of ``λ = log(α + (y−μ)ᵀ S⁻¹ (y−μ))``.

    Attributes
    ----------
    value : float or ndarray of shape (N,)
        ``λ`` (or ``Σ_i λ_i`` / mean with ``reduce="sum"`` / ``"mean"``).
    factors : tuple of ndarray, or tuple of tuple of ndarray
        ``∂/∂A_k`` for every factor: shape ``(p_k, p_k)``, or ``(N, p_k, p_k)`` per observation.
        For a :class:`~kronkit.SumOfKron` ``S``: nested, ``factors[t][k] = ∂/∂F_tk`` for
        factor ``k`` of term ``t`` (same shapes).
    y : ndarray of shape (P,) or (N, P)
        ``∂/∂y`` (row i is the gradient with respect to ``y_i``).
    mu : ndarray of shape (P,) or (N, P)
        ``∂/∂μ = −∂/∂y`` (summed over observations when ``μ`` is shared and reduced).
    alpha : float or ndarray of shape (N,)
        ``∂/∂α = β⁻¹``.
    """

    value: float | np.ndarray
    factors: tuple[np.ndarray, ...] | tuple[tuple[np.ndarray, ...], ...]
    y: np.ndarray
    mu: np.ndarray
    alpha: float | np.ndarray

    @property
    def A(self) -> np.ndarray:
        """Gradient with respect to the first factor (the seed's ``A``)."""
        return self._factor(0, "A")

    @property
    def B(self) -> np.ndarray:
        """Gradient with respect to the second factor (the seed's ``B``)."""
        if len(self.factors) < 2:
            raise AttributeError("`B` needs at least two factors; use `.factors`")
        return self._factor(1, "B")

    def _factor(self, k: int, name: str) -> np.ndarray:
        g = self.factors[k]
        if isinstance(g, tuple):
            raise AttributeError(f"`{name}` is for a Kron; for a SumOfKron use "
                                 "`.factors[t][k]` (factor k of term t)")
        return g


class InvQuadGrad(NamedTuple):
    """Value and gradients of the quadratic form ``q = (y−μ)ᵀ S⁻¹ (y−μ)`` (see LogQuadGrad).

    ``factors``: ``∂q/∂A_k`` for every factor, or nested ``factors[t][k] = ∂q/∂F_tk`` for a
    :class:`~kronkit.SumOfKron` ``S`` (every factor of every term).
    """

    value: float | np.ndarray
    factors: tuple[np.ndarray, ...] | tuple[tuple[np.ndarray, ...], ...]
    y: np.ndarray
    mu: np.ndarray


class LogQuadHVP(NamedTuple):
    """Hessian-vector product of ``λ = log(α + (y−μ)ᵀ S⁻¹ (y−μ))`` (and the gradient).

    Attributes
    ----------
    value : float
        ``λ`` (``Σ_i λ_i`` or its mean for a batch).
    factors : tuple of ndarray, or tuple of tuple of ndarray
        ``[Hv]_{A_k}``: the ``A_k`` block of the Hessian times the direction, shape
        ``(p_k, p_k)`` each (same layout as the directions; nested ``[t][k]`` for a
        :class:`~kronkit.SumOfKron`).
    y : ndarray of shape (P,) or (N, P)
        ``[Hv]_y``: the ``y`` block (row i for observation ``y_i``).
    grad : LogQuadGrad
        The gradient at the same point, as :func:`kronkit.log_quad_grad` returns it (with the
        same reduction), computed on the way at no extra cost.
    """

    value: float
    factors: tuple[np.ndarray, ...] | tuple[tuple[np.ndarray, ...], ...]
    y: np.ndarray
    grad: LogQuadGrad


class KronNormalGrad(NamedTuple):
    """Value and gradients of the Kronecker-normal log-density.

    With ``reduce="sum"`` (default) everything refers to ``ℓ = Σ_i log f(y_i)``; with
    ``"mean"`` to ``ℓ / N``; with ``None`` to each ``log f(y_i)`` separately. For a single
    ``y`` of shape (P,) the reduction is irrelevant.

    Attributes
    ----------
    value : float or ndarray of shape (N,)
        The (summed / mean / per-observation) log-density.
    factors : tuple of ndarray, or tuple of tuple of ndarray
        ``∂ℓ/∂A_k = −½ n (P/p_k) A_k⁻¹ + ½ A_k⁻¹ (Σ_i W_i(k) B_(k)⁻¹ W_i(k)ᵀ) A_k⁻¹`` (``n`` the
        number of observations summed), shape ``(p_k, p_k)``, or ``(N, p_k, p_k)`` with
        ``reduce=None``. Gradients with respect to the entries of ``A_k`` treated as
        independent (what ``jax.grad`` of the dense formula gives); symmetric for SPD factors.
        For a :class:`~kronkit.SumOfKron` scale: nested, ``factors[t][k] = ∂ℓ/∂F_tk =
        −½ n ∂ log det S/∂F_tk + ½ Σ_i unfold_k(u_i) unfold_k(u_i ×_{j≠k} F_tj)ᵀ`` with
        ``u_i = S⁻¹(y_i − μ)`` (same shapes, every factor of every term).
    y : ndarray of shape (P,) or (N, P)
        ``∂ℓ/∂y_i = −S⁻¹(y_i − μ)`` (row i for observation i; already per observation).
    mean : ndarray of shape (P,) or (N, P)
        ``∂ℓ/∂μ = Σ_i S⁻¹(y_i − μ)``; shape (N, P) (row i for observation i) with
        ``reduce=None``.
    """

    value: float | np.ndarray
    factors: tuple[np.ndarray, ...] | tuple[tuple[np.ndarray, ...], ...]
    y: np.ndarray
    mean: np.ndarray


class KronTGrad(NamedTuple):
    """Value and gradients of the Kronecker (vec-form) multivariate t log-density.

    Reductions as in :class:`KronNormalGrad`.

    Attributes
    ----------
    value : float or ndarray of shape (N,)
        The (summed / mean / per-observation) log-density.
    factors : tuple of ndarray, or tuple of tuple of ndarray
        ``∂ℓ/∂A_k``: ``−½ n (P/p_k) A_k⁻¹`` plus ``−½ Σ_i ω_i ∂δ_i/∂A_k``; shape ``(p_k, p_k)``
        or ``(N, p_k, p_k)`` with ``reduce=None``. For a :class:`~kronkit.SumOfKron` scale:
        nested ``factors[t][k] = ∂ℓ/∂F_tk`` (``−½ n ∂ log det S/∂F_tk − ½ Σ_i ω_i ∂δ_i/∂F_tk``).
    y : ndarray of shape (P,) or (N, P)
        ``∂ℓ/∂y_i = −ω_i S⁻¹(y_i − μ)``.
    loc : ndarray of shape (P,) or (N, P)
        ``∂ℓ/∂μ = Σ_i ω_i S⁻¹(y_i − μ)`` with weights ``ω_i = (ν+P)/(ν+δ_i)``.
    df : float or ndarray of shape (N,)
        ``∂ℓ/∂ν = Σ_i [½ψ((ν+P)/2) − ½ψ(ν/2) − P/(2ν) − ½ log(1 + δ_i/ν)
        + (ν+P) δ_i / (2ν(ν+δ_i))]`` (ψ the digamma function), evaluated without the
        cancellation of its terms (accurate for every ν; ``→ 0`` like ``1/ν²``, 0 at ν = ∞).
    """

    value: float | np.ndarray
    factors: tuple[np.ndarray, ...] | tuple[tuple[np.ndarray, ...], ...]
    y: np.ndarray
    loc: np.ndarray
    df: float | np.ndarray
