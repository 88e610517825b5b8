r"""The seed's calculus on sums of Kronecker products ``S = Σ_t F_t1⊗…⊗F_td``.

With ``w = y − μ``, ``u = S⁻¹w``, ``q = wᵀu`` and ``β = α + q`` (``S`` symmetric positive
definite):

    ∂q/∂F_tk = −unfold_k(U) unfold_k(U ×_{j≠k} F_tj)ᵀ,   ∂q/∂w = 2u,   ∂λ/∂· = β⁻¹ ∂q/∂·,

a partial contraction of ``uuᵀ`` against the other factors of term ``t`` (identity factors
free), and ``∂ log det S/∂F_tk = V_k diag(g_tk) V_kᵀ`` in the eigen form
(:mod:`kronkit._sum_eig`). Cost O(Σ n_k³) once plus O(T·d·P·Σ n_k) per observation; nothing
P×P on the eigen route.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._errors import DomainError, NotPositiveDefiniteError
from ._grad_results import InvQuadGrad, LogQuadGrad
from ._quad import checked_beta, observations, reduce_values, reduction_scale

__all__ = ["SumQuad", "log_quad_grad_state", "quad_state", "sum_inv_quad_grad", "sum_log_quad",
           "sum_log_quad_grad", "sum_logdet_grad", "zero_factor_grads"]

NestedGrads = tuple[tuple[np.ndarray, ...], ...]


def _prepare(S: Any, y: Any, mu: Any, what: str):
    if not S.is_square:
        raise ValueError(f"`{what}` needs square factors, got a SumOfKron of {S.shapes}")
    W, mua, single = observations(S, y, mu)
    if W.dtype != np.float64:
        W = W.astype(np.float64)
    return W, mua, single


def _finite_q(q: np.ndarray) -> None:
    if not np.all(np.isfinite(q)):
        raise OverflowError("the quadratic form (y-mu)ᵀ S⁻¹ (y-mu) overflowed (it is not finite "
                            "in float64); rescale y - mu or the factors")


def zero_factor_grads(S: Any, n: int | None = None, dtype: Any = np.float64) -> NestedGrads:
    """Zero gradients for every factor of every term (``n`` observations: leading axis)."""
    lead = () if n is None else (n,)
    return tuple(tuple(np.zeros((*lead, m, m), dtype=dtype) for m in S.dims) for _ in S.terms)


def _empty(S: Any, W: np.ndarray, mua: Any, reduce: Any, with_alpha: bool) -> list:
    _require_pd(S, "the batch")  # errors as for a non-empty batch
    if reduce == "mean":
        raise ValueError(
            f"reduce='mean' needs at least one observation: `y` has shape {W.shape} "
            "(the mean of no observations is undefined); use reduce='sum' or None"
        )
    P = S.shape[1]
    g_y = np.zeros((0, P))
    if reduce is None:
        out = [np.zeros(0), zero_factor_grads(S, 0), g_y, np.zeros((0, P))]
        return out + ([np.zeros(0)] if with_alpha else [])
    g_mu = np.zeros((0, P)) if (mua is not None and mua.ndim == 2) else np.zeros(P)
    out = [0.0, zero_factor_grads(S), g_y, g_mu]
    return out + ([0.0] if with_alpha else [])


def _require_pd(S: Any, what: str) -> None:
    """NotPositiveDefiniteError naming ``what`` and the smallest eigenvalue, unless S is
    positive definite (structure errors surface here too)."""
    if not S.is_positive_definite:
        try:
            S.logdet()  # raises, naming the smallest eigenvalue
        except NotPositiveDefiniteError as exc:
            raise NotPositiveDefiniteError(f"`{what}` needs S positive definite: {exc}") from None


class SumQuad:
    """``q_i = w_iᵀS⁻¹w_i`` for rows ``W``, and the gradients of ``Σ_i c_i q_i``: in the
    eigenbasis on the eigen route (:meth:`EigenForm.quad_grads`), by partial contractions of
    ``u = S⁻¹w`` on the dense route."""

    def __init__(self, S: Any, W: np.ndarray, what: str):
        _require_pd(S, what)
        self.S = S
        self.E = S.eigen_form() if S.route == "eigen" else None
        with np.errstate(over="ignore", invalid="ignore"):
            if self.E is not None:
                self.Zl, self.q = self.E.whiten(W)
            else:
                self.U = S.solve_rows(W)
                self.q = np.einsum("ij,ij->i", self.U, W)
        _finite_q(self.q)

    def grads(self, c: np.ndarray, per_obs: bool) -> tuple[Any, np.ndarray]:
        """``(∂(Σ_i c_i q_i)/∂F_tk nested [t][k], ∂/∂w_i = 2 c_i S⁻¹w_i of shape (N, P))``."""
        if self.E is not None:
            G, self.U = self.E.quad_grads(self.Zl, c, per_obs)
        else:
            G = self.S.quad_grads(self.U, c, per_obs)
        return tuple(tuple(-g for g in row) for row in G), 2.0 * c[:, None] * self.U


def quad_state(S: Any, W: np.ndarray, what: str) -> Any:
    """The quadratic-form engine for ``S``: a :class:`SumQuad`, or the operator's own
    (``S.quad_state``: the incomplete-grid operators) with the same interface."""
    make = getattr(S, "quad_state", None)
    if make is None:
        return SumQuad(S, W, what)
    _require_pd(S, what)
    state = make(W, what)
    _finite_q(state.q)
    return state


def _grads(state: Any, c: np.ndarray, mua: Any, reduce: Any,
           single: bool) -> tuple[Any, np.ndarray, np.ndarray]:
    """``Σ_i c_i ∂q_i/∂F_tk`` (or per observation) and the ``y``/``μ`` gradients."""
    per_obs = reduce is None and not single
    factors, g_y = state.grads(c, per_obs)
    if single:
        return factors, g_y[0], -g_y[0]
    if per_obs or (mua is not None and mua.ndim == 2):
        return factors, g_y, -g_y
    return factors, g_y, -g_y.sum(axis=0)


def _check_grads(factors: NestedGrads, g_y: np.ndarray) -> None:
    if not (all(np.all(np.isfinite(g)) for row in factors for g in row)
            and np.all(np.isfinite(g_y))):
        raise OverflowError("the gradient overflowed (it is not finite in float64); rescale "
                            "y - mu or the factors")


def sum_log_quad(S: Any, y: Any, mu: Any, alpha: float) -> Any:
    """``λ = log(α + (y−μ)ᵀ S⁻¹ (y−μ))`` for a :class:`SumOfKron` ``S``."""
    W, _, single = _prepare(S, y, mu, "log_quad")
    if W.shape[0] == 0:
        _require_pd(S, "log_quad")  # errors as for a non-empty batch
        return np.zeros(0)
    lam = np.log(checked_beta(quad_state(S, W, "log_quad").q, alpha, W))
    return float(lam[0]) if single else lam


def sum_log_quad_grad(S: Any, y: Any, mu: Any, alpha: float, reduce: Any) -> LogQuadGrad:
    """:func:`kronkit.log_quad_grad` for a :class:`SumOfKron`: ``factors[t][k]``."""
    return log_quad_grad_state(S, y, mu, alpha, reduce)[0]


def log_quad_grad_state(S: Any, y: Any, mu: Any, alpha: float, reduce: Any
                        ) -> tuple[LogQuadGrad, SumQuad | None, np.ndarray, np.ndarray | None]:
    """``(gradient, the SumQuad state (None for an empty batch; its U = S⁻¹W), W, β)``: the
    gradient and what a Hessian-vector product reuses."""
    W, mua, single = _prepare(S, y, mu, "log_quad_grad")
    if W.shape[0] == 0:
        return LogQuadGrad(*_empty(S, W, mua, reduce, True)), None, W, None
    state = quad_state(S, W, "log_quad_grad")
    beta = checked_beta(state.q, alpha, W)
    scale = reduction_scale(reduce, W.shape[0], single)
    c = scale / beta
    factors, g_y, g_mu = _grads(state, c, mua, reduce, single)
    _check_grads(factors, g_y)
    grad = LogQuadGrad(reduce_values(np.log(beta), reduce, single, scale), factors, g_y, g_mu,
                       reduce_values(c, reduce, single))
    return grad, state, W, beta


def sum_inv_quad_grad(S: Any, y: Any, mu: Any, reduce: Any) -> InvQuadGrad:
    """:func:`kronkit.inv_quad_grad` for a :class:`SumOfKron`: ``factors[t][k]``."""
    W, mua, single = _prepare(S, y, mu, "inv_quad_grad")
    if W.shape[0] == 0:
        return InvQuadGrad(*_empty(S, W, mua, reduce, False))
    state = quad_state(S, W, "inv_quad_grad")
    scale = reduction_scale(reduce, W.shape[0], single)
    factors, g_y, g_mu = _grads(state, np.full(W.shape[0], scale), mua, reduce, single)
    _check_grads(factors, g_y)
    return InvQuadGrad(reduce_values(state.q, reduce, single, scale), factors, g_y, g_mu)


def sum_logdet_grad(S: Any) -> NestedGrads:
    """``∂ log det S/∂F_tk`` for every factor of every term (``S`` positive definite)."""
    if not S.is_square:
        raise ValueError(f"`logdet_grad` needs square factors, got a SumOfKron of {S.shapes}")
    G = S.logdet_grads()
    if not all(np.all(np.isfinite(g)) for row in G for g in row):
        raise DomainError("the gradient of log det S is not finite (S is numerically singular)",
                          value=float("nan"))
    return G
