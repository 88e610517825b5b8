r"""The scale matrix ``S`` of :class:`kronkit.KronNormal` / :class:`kronkit.KronT`, as an engine.

The distributions need five things of ``S``: ``log det S``, the squared distances
``δ_i = w_iᵀS⁻¹w_i``, the gradients of ``Σ_i c_i δ_i`` and of ``log det S`` with respect to
every factor, and draws of ``N(0, S)``. Two engines provide them:

* :class:`KronScale` — ``S = A1⊗…⊗Ad`` with symmetric positive definite factors (Cholesky
  per factor, :mod:`kronkit._quad`); gradients ``factors[k]``.
* :class:`SumScale` — ``S = Σ_t F_t1⊗…⊗F_td``, a :class:`kronkit.SumOfKron` (REFERENCES §6).
  On its exact eigen route ``S = (⊗W_k) diag(λ) (⊗W_k)ᵀ``, ``S⁻¹ = (⊗V_k) diag(1/λ) (⊗V_k)ᵀ``:
  ``δ = ‖diag(λ)^{-1/2} (⊗V_k)ᵀ w‖²``, ``u = S⁻¹w = (⊗V_k) diag(1/λ) (⊗V_k)ᵀ w``,
  ``∂δ/∂F_tk = −unfold_k(u) unfold_k(u ×_{j≠k} F_tj)ᵀ`` (the partial contraction of ``uuᵀ``),
  ``∂ log det S/∂F_tk = V_k diag(g_tk) V_kᵀ`` and draws ``(⊗W_k) diag(√λ) z``: O(Σ n_k³) once,
  O(P·Σ n_k) per observation, nothing P×P. Sums without an eigen form use the dense P×P
  Cholesky factor (``P ≤ DENSE_MAX_P``). Gradients ``factors[t][k]``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._dist_params import spd_scale
from ._errors import NotPositiveDefiniteError, SingularFactorError, UnsupportedSumError
from ._kron import factorizations, slogdet_with
from ._quad import QuadState, logdet_grads
from ._sum_calculus import SumQuad, zero_factor_grads
from ._sum_kron import SumOfKron
from ._vec import mode_apply, to_tensor

__all__ = ["KronScale", "SumScale", "empty_grad_terms", "negated_sum",
           "scale_engine"]


def scale_engine(scale: Any) -> KronScale | SumScale:
    """The engine of a distribution's ``scale`` argument (checked; typed errors name it)."""
    if isinstance(scale, SumOfKron):
        return SumScale(scale)
    return KronScale(scale)


def negated_sum(a: Any, b: Any) -> Any:
    """``−a − b`` for arrays, or entrywise for (nested) tuples of arrays of the same layout."""
    if isinstance(a, tuple):
        return tuple(negated_sum(x, y) for x, y in zip(a, b, strict=True))
    return -a - b


def empty_grad_terms(eng: KronScale | SumScale, W: np.ndarray, reduce: Any, per_obs: bool):
    """``(δ, factors, ∂/∂μ, ∂/∂y)`` of no observations (``W`` of shape (0, P)): empty
    per-observation arrays, or zeros (an empty sum); ``"mean"`` is undefined (ValueError)."""
    if reduce == "mean":
        raise ValueError(
            f"reduce='mean' needs at least one observation: `Y` has shape {W.shape} (the mean "
            "of no observations is undefined); use reduce='sum' or None")
    dt, P = W.dtype, W.shape[1]
    lead = (0,) if per_obs else ()
    g_loc = np.zeros((0, P) if per_obs else P, dtype=dt)
    return np.zeros(0, dtype=dt), eng.zero_grads(lead, dt), g_loc, np.zeros((0, P), dtype=dt)


class KronScale:
    """``S = A1⊗…⊗Ad`` with SPD factors: factorised once (Cholesky, cached inverses)."""

    def __init__(self, scale: Any):
        K = spd_scale(scale)
        self.matrix = K
        self.dims: tuple[int, ...] = K.col_dims
        self.facs = factorizations(K, "a scale matrix")
        for f in self.facs:
            f.inverse_view()  # the gradients' A_k⁻¹, cached (read-only) before any sharing
        self.logdet = slogdet_with(K, self.facs)[1]  # Cholesky factors: sign +1; warned above

    @property
    def init_arg(self) -> Any:
        """What the distribution's constructor takes back (copies, pickles): the factors."""
        return self.matrix.factors

    @property
    def label(self) -> str:
        return " ⊗ ".join(f"{n}×{n}" for n in self.dims)

    def quad(self, W: np.ndarray) -> np.ndarray:
        """``δ_i = w_iᵀS⁻¹w_i`` for the rows of ``W`` (N, P)."""
        return QuadState(self.matrix, W).q

    def state(self, W: np.ndarray) -> QuadState:
        """``δ`` and, on demand, the gradients of ``Σ c_i δ_i`` (``.q``, ``.grads(c, per_obs)``)."""
        return QuadState(self.matrix, W)

    def logdet_grads(self, scale: float) -> tuple[np.ndarray, ...]:
        """``scale · ∂ log det S/∂A_k = scale · (P/p_k) A_k⁻¹`` for every k."""
        return logdet_grads(self.facs, scale)

    def zero_grads(self, lead: tuple[int, ...], dtype: Any) -> tuple[np.ndarray, ...]:
        return tuple(np.zeros((*lead, p, p), dtype=dtype) for p in self.dims)

    def standard_normal(self, rng: Any, n: int, dtype: Any) -> np.ndarray:
        """``n`` draws of ``(⊗L_k) z``, ``z ~ N(0, I_P)`` (``A_k = L_k L_kᵀ``): shape (n, P)."""
        d, P = len(self.dims), self.matrix.shape[0]
        z = to_tensor(rng.standard_normal((n, P)).astype(dtype, copy=False), self.dims)
        for k, f in enumerate(self.facs):
            z = mode_apply(z, f.chol(), k, d)
        return z.reshape(n, P)


class SumScale:
    """``S = Σ_t F_t1⊗…⊗F_td`` (a :class:`~kronkit.SumOfKron`), symmetric positive definite:
    its eigen form, or (no eigen form, ``P ≤ DENSE_MAX_P``) the dense Cholesky factor."""

    def __init__(self, S: SumOfKron):
        if not S.is_square:
            raise ValueError(f"`scale` must have square factors, got a SumOfKron of {S!r}")
        self.matrix = S
        self.dims: tuple[int, ...] = S.dims
        try:
            route = S.route
        except UnsupportedSumError as exc:
            raise UnsupportedSumError(f"`scale`: {exc}") from None
        self.form = S.eigen_form() if route == "eigen" else None
        try:
            self.logdet = S.logdet()
            S.check_nonsingular()
        except NotPositiveDefiniteError as exc:
            raise NotPositiveDefiniteError(f"`scale` must be positive definite: {exc}") from None
        except SingularFactorError as exc:
            raise SingularFactorError(f"`scale` is positive definite but {exc}") from None
        self.half_apply = S.half_apply  # rows z ↦ (⊗W_k) diag(√λ) z, or L z (dense S = L Lᵀ)

    @property
    def init_arg(self) -> SumOfKron:
        return self.matrix

    @property
    def label(self) -> str:
        return repr(self.matrix)

    def quad(self, W: np.ndarray) -> np.ndarray:
        if self.form is not None:
            return self.form.inv_quad(W)
        return self.matrix.inv_quad(W)

    def state(self, W: np.ndarray) -> SumQuad:
        return SumQuad(self.matrix, W, "logpdf_grad")

    def logdet_grads(self, scale: float) -> tuple[tuple[np.ndarray, ...], ...]:
        """``G[t][k] = scale · ∂ log det S/∂F_tk``."""
        return self.matrix.logdet_grads(scale)

    def zero_grads(self, lead: tuple[int, ...], dtype: Any) -> tuple[tuple[np.ndarray, ...], ...]:
        return zero_factor_grads(self.matrix, lead[0] if lead else None, dtype)

    def standard_normal(self, rng: Any, n: int, dtype: Any) -> np.ndarray:
        """``n`` draws of ``N(0, S)``: ``(⊗W_k) diag(√λ) z`` (eigen route) or ``L z`` with the
        dense ``S = L Lᵀ``; ``z ~ N(0, I_P)``, shape (n, P)."""
        z = rng.standard_normal((n, self.matrix.shape[0]))
        return self.half_apply(z).astype(dtype, copy=False)
