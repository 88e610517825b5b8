r"""The quadratic form ``q_i = w_iᵀ S⁻¹ w_i`` of a batch and the gradients of ``Σ_i c_i q_i``.

The engine behind :func:`kronkit.log_quad_grad`, :func:`kronkit.inv_quad_grad`,
:func:`kronkit.log_quad_hvp` and the log-densities of :class:`kronkit.KronNormal` /
:class:`kronkit.KronT`: validation of ``(K, y, μ)``, the reductions, the over/underflow
handling of ``q`` and ``β = α + q``, and the closed-form gradients (REFERENCES §2).

With ``S = A1⊗…⊗Ad``, ``w = y − μ``, ``Z = S⁻¹w`` and ``U = S⁻ᵀw`` viewed as tensors of shape
``(p1, …, pd)``: ``∂q/∂A_k = −U_(k) (w ×_k A_k⁻¹)_(k)ᵀ`` and ``∂q/∂w = Z + U``. With SPD factors
``A_k = L_k L_kᵀ`` and ``X = (⊗L_k⁻¹) w``: ``q = ‖X‖²`` and
``∂q/∂A_k = −L_k⁻ᵀ X_(k) X_(k)ᵀ L_k⁻¹`` — triangular solves and one symmetric rank-k update per
factor, batches folded into the GEMMs; two SPD factors run directly on BLAS.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import scipy.linalg as sla

from ._checks import as_float, check_choice, overflow_error, sum_is_finite
from ._errors import DomainError
from ._factor import Factorization, mode_solve
from ._hot import TwoSPD
from ._kron import (
    Kron,
    as_kron,
    factorizations,
    half_solve,
    overflow_checked,
    require_square,
    solve_with,
)
from ._vec import to_tensor, unfold

__all__ = [
    "REDUCTIONS",
    "QuadState",
    "ScaledQuad",
    "assemble_grads",
    "check_outputs",
    "check_q",
    "check_reduce",
    "checked_beta",
    "empty_batch",
    "logdet_grads",
    "observations",
    "prepare_observations",
    "reduce_values",
    "reduction_scale",
    "scaled_quad",
]

REDUCTIONS = ("sum", "mean", None)


# ---------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------
def prepare_observations(K: Any, y: Any, mu: Any,
                         what: str) -> tuple[Kron, np.ndarray, np.ndarray | None, bool]:
    """Validate; return (Kron, W of shape (N, P) = y − μ, μ array or None, y was 1-D)."""
    K = as_kron(K)
    require_square(K, what)
    return (K, *observations(K, y, mu))


def observations(K: Any, y: Any, mu: Any) -> tuple[np.ndarray, np.ndarray | None, bool]:
    """``(W = y − μ` of shape (N, P), μ array or None, y was 1-D)`` for an operator ``K`` (a
    Kron or a SumOfKron: ``shape``, ``col_dims``, ``dtype``)."""
    P = K.shape[1]
    ya = as_float(y, "y", ndim=(1, 2))
    if ya.shape[-1] != P:
        raise ValueError(
            f"`y` must have length P = {P} (the product of the factor sizes {K.col_dims}) "
            f"in its last axis, got shape {ya.shape}"
        )
    mua = None
    if mu is not None:
        mua = as_float(mu, "mu", ndim=(1, 2))
        if mua.shape not in ((P,), ya.shape):
            raise ValueError(f"`mu` must have shape ({P},) or {ya.shape} (like `y`), got {mua.shape}")
        if mua.ndim == 2 and ya.ndim == 1:
            raise ValueError(f"`mu` must have shape ({P},) for a single `y`, got {mua.shape}")
    dt = np.result_type(K.dtype, ya.dtype, *(() if mua is None else (mua.dtype,)))
    # W is only read downstream, so y itself is used when no μ is given (no copy of the data)
    W = ya.astype(dt, copy=False) if mua is None else (ya - mua).astype(dt, copy=False)
    return np.atleast_2d(W), mua, ya.ndim == 1


def check_reduce(reduce: Any) -> None:
    check_choice(reduce, "reduce", REDUCTIONS)


def check_q(q: np.ndarray, K: Kron, W: np.ndarray) -> None:
    """The inputs are finite, so a non-finite q is an overflow of the computation."""
    if not np.all(np.isfinite(q)):
        raise overflow_error("the quadratic form (y-mu)ᵀ S⁻¹ (y-mu)", **{"y - mu": W},
                             factors=K.factors)


def _all_finite(a: np.ndarray) -> bool:
    """``np.isfinite(a).all()``, by one reduction in the common case: the sum is NaN or ±inf
    whenever an entry is, and only a sum that overflowed needs the entrywise check."""
    return sum_is_finite(a) or bool(np.isfinite(a).all())


def check_outputs(K: Kron, W: np.ndarray, *arrays: Any) -> None:
    """Raise ``OverflowError`` (naming the inputs) if a gradient overflowed."""
    for a in arrays:
        if isinstance(a, tuple):
            check_outputs(K, W, *a)
        elif not _all_finite(a):
            raise overflow_error("the gradient", **{"y - mu": W}, factors=K.factors)


def empty_batch(K: Kron, W: np.ndarray, mua, reduce, what: str, with_alpha: bool):
    """Results for a batch of N = 0 observations (the factorisations are still checked).

    ``reduce=None``: empty arrays of the per-observation shapes; ``"sum"``: zeros (an empty
    sum); ``"mean"``: ``ValueError`` (the mean of no observations is undefined).
    """
    factorizations(K, what)  # the same SingularFactorError / warning as a non-empty batch
    if reduce == "mean":
        raise ValueError(
            f"reduce='mean' needs at least one observation: `y` has shape {W.shape} "
            "(the mean of no observations is undefined); use reduce='sum' or None"
        )
    dt, P = W.dtype, K.shape[1]
    g_y = np.zeros((0, P), dtype=dt)
    if reduce is None:
        factors = tuple(np.zeros((0, p, p), dtype=dt) for p in K.col_dims)
        out = [np.zeros(0, dtype=dt), factors, g_y, np.zeros((0, P), dtype=dt)]
        if with_alpha:
            out.append(np.zeros(0, dtype=dt))
        return out
    factors = tuple(np.zeros((p, p), dtype=dt) for p in K.col_dims)
    g_mu = np.zeros((0, P), dtype=dt) if (mua is not None and mua.ndim == 2) else np.zeros(P, dt)
    out = [0.0, factors, g_y, g_mu]
    if with_alpha:
        out.append(0.0)
    return out


class ScaledQuad(NamedTuple):
    """The quadratic forms of rows rescaled by powers of two where q over/underflows.

    ``q_i = 4^{e_i} q̂_i`` with ``q̂_i`` the form of ``ŵ_i = 2^{−e_i} w_i`` (exact scaling);
    ``e_i = 0`` for every row whose q is representable, so those rows are untouched.
    ``λ_i = log(α 4^{−e_i} + q̂_i) + e_i log 4`` then needs no number beyond the range.
    """

    state: QuadState
    e: np.ndarray | None  # None: no row rescaled

    def alpha_hat(self, alpha: float) -> Any:
        return alpha if self.e is None else np.ldexp(alpha, -2 * self.e)

    def log_scale(self) -> Any:
        return 0.0 if self.e is None else 2.0 * np.log(2.0) * self.e

    def row_scale(self) -> np.ndarray | None:
        return None if self.e is None else np.ldexp(1.0, -self.e)


def scaled_quad(K: Kron, W: np.ndarray, what: str, alpha: float) -> ScaledQuad:
    """``QuadState`` on W; rows whose q overflows or underflows are redone on 2^{-e} w
    (an underflowing row only where ``α·4^{-e}`` stays finite, i.e. where α does not
    dominate β anyway)."""
    with overflow_checked():
        state = QuadState(K, W, what)
    q = state.q
    tiny = np.finfo(W.dtype).tiny
    aq = np.abs(q)
    if not aq.size or (aq.min() >= tiny and math.isfinite(aq.max())):  # the common case
        return ScaledQuad(state, None)
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(q) | ((aq < tiny) & np.any(W != 0, axis=1))
    if not bad.any():
        return ScaledQuad(state, None)
    e = np.zeros(W.shape[0], dtype=int)
    e[bad] = np.frexp(np.max(np.abs(W[bad]), axis=1))[1]
    with np.errstate(over="ignore"):
        e[~np.isfinite(np.ldexp(alpha, -2 * e))] = 0
    if not e.any():
        check_q(q, K, W)
        return ScaledQuad(state, None)
    W_hat = np.ldexp(W, -e[:, None])
    with overflow_checked():
        state = QuadState(K, W_hat, what)
    check_q(state.q, K, W)  # still not finite: the factors themselves are out of range
    return ScaledQuad(state, e)


def checked_beta(q: np.ndarray, alpha: Any, W: np.ndarray | None = None) -> np.ndarray:
    beta = alpha + q
    bad = np.flatnonzero(~(beta > 0))
    if bad.size:
        i = int(bad[0])
        alpha = float(np.broadcast_to(alpha, q.shape)[i])
        if W is not None and q[i] == 0 and np.any(W[i] != 0):
            raise DomainError(
                f"log(alpha + q) is undefined: q = (y-mu)ᵀ S⁻¹ (y-mu) underflowed to 0 for "
                f"observation {i} (|y - mu| up to {float(np.max(np.abs(W[i]))):.3g}) and "
                f"alpha = {alpha:.6g}; rescale the inputs",
                value=beta[bad],
            )
        raise DomainError(
            f"log(alpha + q) is undefined: beta = alpha + q must be > 0, got beta = {beta[i]:.6g} "
            f"(alpha = {alpha:.6g}, q = {q[i]:.6g}) for observation {i}"
            + (f" and {bad.size - 1} more" if bad.size > 1 else "")
            + "; q = (y-mu)ᵀ S⁻¹ (y-mu) can be negative when the factors are not positive definite",
            value=beta[bad],
        )
    return beta


# ---------------------------------------------------------------------------------------
# Reductions over a batch
# ---------------------------------------------------------------------------------------
def reduction_scale(reduce: Any, n: int, single: bool) -> float:
    """Weight of one observation's term in the reduced result: ``1/N`` for ``"mean"``, else 1."""
    return 1.0 / n if (reduce == "mean" and not single) else 1.0


def reduce_values(vals: np.ndarray, reduce: Any, single: bool, scale: float = 1.0) -> Any:
    """Per-observation values as returned: ``float(vals[0])`` for a single ``y``, ``vals``
    itself for ``reduce=None``, else ``float(Σ_i vals_i · scale)``."""
    if single:
        return float(vals[0])
    if reduce is None:
        return vals
    return float(vals.sum() * scale)


def logdet_grads(facs: Sequence[Factorization], scale: float = 1.0) -> tuple[np.ndarray, ...]:
    """``scale · ∂ log|det(A1⊗…⊗Ad)|/∂A_k = scale · (P/p_k) A_k⁻ᵀ`` for every factor k.

    ``P = Π_k p_k``; the inverses are the factorisations' cached ones. Cost O(Σ p_k²) once
    the inverses exist (O(Σ p_k³) to form them).
    """
    P = math.prod(f.n for f in facs)
    return tuple((scale * (P // f.n)) * f.inverse_view().T for f in facs)


# ---------------------------------------------------------------------------------------
# The closed-form core: q_i and the gradient of Σ_i c_i q_i
# ---------------------------------------------------------------------------------------
def _gram(t: np.ndarray, k: int, d: int) -> np.ndarray:
    """``unfold(t, k) @ unfold(t, k).T`` (batch folded in), as a symmetric rank-k update."""
    pk = t.shape[t.ndim - d + k]
    if k == d - 1:
        M = t.reshape(-1, pk)
        return M.T @ M
    if t.ndim == d + 1 and t.shape[0] == 1 and k == 0:
        M = t.reshape(pk, -1)
        return M @ M.T
    M = unfold(t, k, d)
    return M @ M.T


def _sandwich(f: Factorization, G: np.ndarray) -> np.ndarray:
    """``L⁻ᵀ G L⁻¹`` for symmetric G and the Cholesky factor L of ``f``."""
    H = sla.solve_triangular(f.factor, G, lower=True, trans=1, check_finite=False)
    S = sla.solve_triangular(f.factor, H.T, lower=True, trans=1, check_finite=False).T
    return 0.5 * (S + S.T)


def _per_obs_gram(t: np.ndarray, k: int, d: int) -> np.ndarray:
    """``t_i(k) t_i(k)ᵀ`` for every observation i of ``t`` (shape (N, p1, ..., pd))."""
    N = t.shape[0]
    pk = t.shape[1 + k]
    M = np.moveaxis(t, 1 + k, 1).reshape(N, pk, -1)
    return M @ M.transpose(0, 2, 1)


class QuadState:
    """q_i = w_iᵀ S⁻¹ w_i for a batch, and the gradient of Σ_i c_i q_i in closed form."""

    def __init__(self, K: Kron, W: np.ndarray, what: str = "the quadratic form"):
        self.K = K
        self.d = K.n_factors
        self.dims = K.col_dims
        self.N = W.shape[0]
        self.W = W
        self.facs = factorizations(K, what)
        self.spd = all(f.kind == "cholesky" for f in self.facs)
        self._two = None
        self._X: np.ndarray | None = None
        if self.spd and self.d == 2:
            self._two = TwoSPD(self.facs[0], self.facs[1], W)
            self.q = self._two.q
        elif self.spd:
            self._X = half_solve(K, W, self.facs)  # (N, p1, ..., pd)
            Xf = self._X.reshape(self.N, -1)
            self.q = np.einsum("ij,ij->i", Xf, Xf)
        else:
            self.Z = to_tensor(solve_with(K, W, self.facs), self.dims)
            self.U = to_tensor(solve_with(K, W, self.facs, trans=True), self.dims)
            self.q = np.einsum("ij,ij->i", W, self.Z.reshape(self.N, -1))

    def grads(self, c: np.ndarray, per_obs: bool) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
        """(∂/∂A_k of Σ c_i q_i — or per observation, c_i ∂q_i/∂w_i of shape (N, P))."""
        if self._two is not None and not per_obs and bool(np.all(c >= 0)):
            return self._two.grads(c)
        if self.spd:
            return self._grads_spd(c, per_obs)
        return self._grads_general(c, per_obs)

    @property
    def X(self) -> np.ndarray:
        """``(⊗ L_k⁻¹) w`` as a tensor (N, p1, ..., pd) (SPD factors; computed on first use)."""
        if self._X is None:
            self._X = half_solve(self.K, self.W, self.facs)
        return self._X

    def _bcast(self, c: np.ndarray) -> np.ndarray:
        return c.reshape((self.N,) + (1,) * self.d)

    def _grads_spd(self, c: np.ndarray, per_obs: bool):
        d, N, X = self.d, self.N, self.X
        P = X[0].size
        nonneg = bool(np.all(c >= 0))
        Xs = X * self._bcast(np.sqrt(c)) if (nonneg and not per_obs) else X  # X: unused then
        grads = []
        Y0 = None  # X ×_1 L_1⁻ᵀ (unscaled), reused for Z
        for k, f in enumerate(self.facs):
            pk = f.n
            if per_obs:
                Y = mode_solve(X, f, k, d, tri=True, trans=True)
                if k == 0:
                    Y0 = Y
                grads.append(-c.reshape(N, 1, 1) * _per_obs_gram(Y, k, d))
                continue
            if not nonneg:
                Xc = X * self._bcast(c)
                G = unfold(Xc, k, d) @ unfold(X, k, d).T
                grads.append(-_sandwich(f, 0.5 * (G + G.T)))
                continue
            rest = N * P // pk
            if rest < 2 * pk:  # cheaper to solve first, then one rank-k update
                if k == 0:
                    Y0 = mode_solve(X, f, k, d, tri=True, trans=True)
                    Ys = Y0 * self._bcast(np.sqrt(c))
                else:
                    Ys = mode_solve(Xs, f, k, d, tri=True, trans=True)
                G = _gram(Ys, k, d)
                grads.append(-0.5 * (G + G.T))
            else:  # cheaper to form the Gram matrix first, then two p_k×p_k solves
                grads.append(-_sandwich(f, _gram(Xs, k, d)))
        # ∂q_i/∂w_i = 2 Z_i with Z = X ×_k L_k⁻ᵀ (all k)
        Z = Y0 if Y0 is not None else mode_solve(X, self.facs[0], 0, d, tri=True, trans=True)
        for k in range(1, d):
            Z = mode_solve(Z, self.facs[k], k, d, tri=True, trans=True)
        wgrad = (2.0 * self._bcast(c)) * Z
        return tuple(grads), wgrad.reshape(N, -1)

    def _grads_general(self, c: np.ndarray, per_obs: bool):
        d, N = self.d, self.N
        Wt = to_tensor(self.W, self.dims)
        Uc = self.U * self._bcast(c)
        grads = []
        for k, f in enumerate(self.facs):
            V = mode_solve(Wt, f, k, d)  # w ×_k A_k⁻¹ = Z ×_{j≠k} A_j
            if per_obs:
                pk = f.n
                Uk = np.moveaxis(Uc, 1 + k, 1).reshape(N, pk, -1)
                Vk = np.moveaxis(V, 1 + k, 1).reshape(N, pk, -1)
                grads.append(-(Uk @ Vk.transpose(0, 2, 1)))
            else:
                grads.append(-(unfold(Uc, k, d) @ unfold(V, k, d).T))
        wgrad = (self.Z + self.U) * self._bcast(c)
        return tuple(grads), wgrad.reshape(N, -1)


def assemble_grads(state: QuadState, c: np.ndarray, mua, reduce, single: bool,
              row_scale: np.ndarray | None = None):
    """Gradients of Σ c_i q_i for the requested reduction, shaped for the user.

    ``row_scale``: the state was built on rows ``w_i · row_scale_i``; the ``w`` gradients
    are scaled back (chain rule).
    """
    per_obs = reduce is None and not single
    factor_grads, wgrad = state.grads(c, per_obs)
    if row_scale is not None:
        wgrad = wgrad * row_scale[:, None]
    if single:
        g_y = wgrad[0]
        return tuple(factor_grads), g_y, -g_y
    g_y = wgrad
    if per_obs or (mua is not None and mua.ndim == 2):
        g_mu = -wgrad
    else:
        g_mu = -wgrad.sum(axis=0)
    return tuple(factor_grads), g_y, g_mu
