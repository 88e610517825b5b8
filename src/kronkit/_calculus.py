r"""The seed function ``λ = log(α + (y−μ)ᵀ(A1⊗…⊗Ad)⁻¹(y−μ))``: value and closed-form gradients.

Notation (REFERENCES §2): ``w = y − μ``, ``S = A1⊗…⊗Ad``, ``q = wᵀS⁻¹w``, ``β = α + q``,
``λ = log β``. With ``Z = S⁻¹w`` and ``U = S⁻ᵀw`` viewed as tensors of shape ``(p1, …, pd)``,

    ∂q/∂A_k = −U_(k) (w ×_k A_k⁻¹)_(k)ᵀ,   ∂q/∂w = Z + U,   ∂λ/∂· = β⁻¹ ∂q/∂·,

where ``X_(k)`` is the mode-k unfolding (for d = 2: ``∂q/∂A = −U B Zᵀ``, ``∂q/∂B = −Uᵀ A Z``).
With symmetric positive definite factors ``A_k = L_k L_kᵀ`` and ``X = (⊗L_k⁻¹) w``:
``q = ‖X‖²`` and ``∂q/∂A_k = −L_k⁻ᵀ X_(k) X_(k)ᵀ L_k⁻¹`` — triangular solves and one
symmetric rank-k update per factor. Batches of observations are folded into the GEMMs.
"""

from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple

import numpy as np
import scipy.linalg as sla
from scipy.linalg.blas import get_blas_funcs

from ._checks import as_float, check_scalar, overflow_error
from ._dask import add_nested, is_dask_array, row_chunks, tree_reduce_chunks
from ._errors import DomainError
from ._factor import Factorization, mode_solve
from ._kron import (
    Kron,
    as_kron,
    factorizations,
    half_solve,
    overflow_checked,
    require_square,
    slogdet_with,
    solve_with,
)
from ._vec import to_tensor, unfold

__all__ = [
    "InvQuadGrad",
    "LogQuadGrad",
    "SeedRoute",
    "inv_quad_grad",
    "log_quad",
    "log_quad_grad",
    "logdet_grad",
    "seed_route",
]

SEED_ROUTE_MAX_P = 4096
_REDUCTIONS = ("sum", "mean", None)


# ---------------------------------------------------------------------------------------
# Result types
# ---------------------------------------------------------------------------------------
class LogQuadGrad(NamedTuple):
    """Value and gradients of ``λ = log(α + (y−μ)ᵀ S⁻¹ (y−μ))``.

    Attributes
    ----------
    value : float or ndarray of shape (N,)
        ``λ`` (or ``Σ_i λ_i`` / mean with ``reduce="sum"`` / ``"mean"``).
    factors : tuple of ndarray
        ``∂/∂A_k`` for every factor: shape ``(p_k, p_k)``, or ``(N, p_k, p_k)`` per observation.
    y : ndarray of shape (P,) or (N, P)
        ``∂/∂y`` (row i is the gradient with respect to ``y_i``).
    mu : ndarray of shape (P,) or (N, P)
        ``∂/∂μ = −∂/∂y`` (summed over observations when ``μ`` is shared and reduced).
    alpha : float or ndarray of shape (N,)
        ``∂/∂α = β⁻¹``.
    """

    value: Any
    factors: tuple[np.ndarray, ...]
    y: np.ndarray
    mu: np.ndarray
    alpha: Any

    @property
    def A(self) -> np.ndarray:
        """Gradient with respect to the first factor (the seed's ``A``)."""
        return self.factors[0]

    @property
    def B(self) -> np.ndarray:
        """Gradient with respect to the second factor (the seed's ``B``)."""
        if len(self.factors) < 2:
            raise AttributeError("`B` needs at least two factors; use `.factors`")
        return self.factors[1]


class InvQuadGrad(NamedTuple):
    """Value and gradients of the quadratic form ``q = (y−μ)ᵀ S⁻¹ (y−μ)`` (see LogQuadGrad)."""

    value: Any
    factors: tuple[np.ndarray, ...]
    y: np.ndarray
    mu: np.ndarray


class SeedRoute(NamedTuple):
    """The seed's Kronecker-SVD route for one observation (reference implementation).

    Attributes
    ----------
    value : float
        ``λ``.
    A, B : ndarray
        ``∂λ/∂A = −β⁻¹ Σ_k (B:G_k) F_k`` and ``∂λ/∂B = −β⁻¹ Σ_k (A:F_k) G_k``.
    y : ndarray of shape (P,)
        ``∂λ/∂y = β⁻¹ (S⁻¹ + S⁻ᵀ) w`` computed densely.
    singular_values : ndarray of shape (r,)
        Kronecker singular values of ``S⁻ᵀ w wᵀ S⁻ᵀ = Σ_k F_k ⊗ G_k``.
    beta : float
        ``β = α + q``.
    """

    value: float
    A: np.ndarray
    B: np.ndarray
    y: np.ndarray
    singular_values: np.ndarray
    beta: float

    @property
    def rank(self) -> int:
        """Number of Kronecker terms ``r``."""
        return int(self.singular_values.size)


# ---------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------
def _prepare(K: Any, y: Any, mu: Any, what: str) -> tuple[Kron, np.ndarray, np.ndarray | None, bool]:
    """Validate; return (Kron, W of shape (N, P) = y − μ, μ array or None, y was 1-D)."""
    K = as_kron(K)
    require_square(K, what)
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
    return K, np.atleast_2d(W), mua, ya.ndim == 1


def _check_reduce(reduce: Any) -> None:
    if reduce not in _REDUCTIONS:
        raise ValueError(f"`reduce` must be 'sum', 'mean' or None, got {reduce!r}")


def _check_q(q: np.ndarray, K: Kron, W: np.ndarray) -> None:
    """The inputs are finite, so a non-finite q is an overflow of the computation."""
    if not np.all(np.isfinite(q)):
        raise overflow_error("the quadratic form (y-mu)ᵀ S⁻¹ (y-mu)", **{"y - mu": W},
                             factors=K.factors)


def _all_finite(a: np.ndarray) -> bool:
    """``np.isfinite(a).all()``, by one reduction in the common case: the sum is NaN or ±inf
    whenever an entry is, and only a sum that overflowed needs the entrywise check."""
    return math.isfinite(np.add.reduce(a, axis=None)) or bool(np.isfinite(a).all())


def _check_outputs(K: Kron, W: np.ndarray, *arrays: Any) -> None:
    """Raise ``OverflowError`` (naming the inputs) if a gradient overflowed."""
    for a in arrays:
        if isinstance(a, tuple):
            _check_outputs(K, W, *a)
        elif not _all_finite(a):
            raise overflow_error("the gradient", **{"y - mu": W}, factors=K.factors)


def _empty_batch(K: Kron, W: np.ndarray, mua, reduce, what: str, with_alpha: bool):
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


class _ScaledQuad(NamedTuple):
    """The quadratic forms of rows rescaled by powers of two where q over/underflows.

    ``q_i = 4^{e_i} q̂_i`` with ``q̂_i`` the form of ``ŵ_i = 2^{−e_i} w_i`` (exact scaling);
    ``e_i = 0`` for every row whose q is representable, so those rows are untouched.
    ``λ_i = log(α 4^{−e_i} + q̂_i) + e_i log 4`` then needs no number beyond the range.
    """

    state: _QuadState
    e: np.ndarray | None  # None: no row rescaled

    def alpha_hat(self, alpha: float) -> Any:
        return alpha if self.e is None else np.ldexp(alpha, -2 * self.e)

    def log_scale(self) -> Any:
        return 0.0 if self.e is None else 2.0 * np.log(2.0) * self.e

    def row_scale(self) -> np.ndarray | None:
        return None if self.e is None else np.ldexp(1.0, -self.e)


def _scaled_quad(K: Kron, W: np.ndarray, what: str, alpha: float) -> _ScaledQuad:
    """``_QuadState`` on W; rows whose q overflows or underflows are redone on 2^{-e} w
    (an underflowing row only where ``α·4^{-e}`` stays finite, i.e. where α does not
    dominate β anyway)."""
    with overflow_checked():
        state = _QuadState(K, W, what)
    q = state.q
    tiny = np.finfo(W.dtype).tiny
    aq = np.abs(q)
    if not aq.size or (aq.min() >= tiny and math.isfinite(aq.max())):  # the common case
        return _ScaledQuad(state, None)
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(q) | ((aq < tiny) & np.any(W != 0, axis=1))
    if not bad.any():
        return _ScaledQuad(state, None)
    e = np.zeros(W.shape[0], dtype=int)
    e[bad] = np.frexp(np.max(np.abs(W[bad]), axis=1))[1]
    with np.errstate(over="ignore"):
        e[~np.isfinite(np.ldexp(alpha, -2 * e))] = 0
    if not e.any():
        _check_q(q, K, W)
        return _ScaledQuad(state, None)
    W_hat = np.ldexp(W, -e[:, None])
    with overflow_checked():
        state = _QuadState(K, W_hat, what)
    _check_q(state.q, K, W)  # still not finite: the factors themselves are out of range
    return _ScaledQuad(state, e)


def _beta(q: np.ndarray, alpha: Any, W: np.ndarray | None = None) -> np.ndarray:
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
    H = sla.solve_triangular(f.lu, G, lower=True, trans=1, check_finite=False)
    S = sla.solve_triangular(f.lu, H.T, lower=True, trans=1, check_finite=False).T
    return 0.5 * (S + S.T)


def _per_obs_gram(t: np.ndarray, k: int, d: int) -> np.ndarray:
    """``t_i(k) t_i(k)ᵀ`` for every observation i of ``t`` (shape (N, p1, ..., pd))."""
    N = t.shape[0]
    pk = t.shape[1 + k]
    M = np.moveaxis(t, 1 + k, 1).reshape(N, pk, -1)
    return M @ M.transpose(0, 2, 1)


# ---------------------------------------------------------------------------------------
# Two SPD factors: the hot path, written directly on BLAS (trsm / syrk) with few copies
# ---------------------------------------------------------------------------------------
def _rmul_tri(M: np.ndarray, f: Factorization, inverse_transpose: bool) -> np.ndarray:
    """``M L⁻ᵀ`` (``inverse_transpose``) or ``M L⁻¹`` for a C-contiguous 2-D ``M`` (new array).

    Works on the Fortran view ``Mᵀ``: ``(M L⁻ᵀ)ᵀ = L⁻¹ Mᵀ``, one left ``trsm``, no transpose copy.
    """
    (trsm,) = get_blas_funcs(("trsm",), (M,))
    out = trsm(1.0, f.lu, M.T, side=0, lower=1, trans_a=0 if inverse_transpose else 1)
    return out.T


def _lmul_tri(M: np.ndarray, f: Factorization, transpose: bool) -> np.ndarray:
    """``L⁻ᵀ M`` (``transpose``) or ``L⁻¹ M`` for a C-contiguous 2-D ``M`` (new array)."""
    (trsm,) = get_blas_funcs(("trsm",), (M,))
    # (L⁻¹ M)ᵀ = Mᵀ L⁻ᵀ ; (L⁻ᵀ M)ᵀ = Mᵀ L⁻¹  — a right trsm on the Fortran view Mᵀ
    out = trsm(1.0, f.lu, M.T, side=1, lower=1, trans_a=0 if transpose else 1)
    return out.T


def _syrk_rows(M: np.ndarray) -> np.ndarray:
    """``M Mᵀ`` for a C-contiguous 2-D ``M`` (full symmetric result)."""
    (syrk,) = get_blas_funcs(("syrk",), (M,))
    G = syrk(1.0, M.T, trans=1, lower=0)  # (Mᵀ)ᵀ(Mᵀ) = M Mᵀ, upper triangle
    return np.triu(G) + np.triu(G, 1).T


def _syrk_cols(M: np.ndarray) -> np.ndarray:
    """``Mᵀ M`` for a C-contiguous 2-D ``M`` (full symmetric result)."""
    (syrk,) = get_blas_funcs(("syrk",), (M,))
    G = syrk(1.0, M.T, trans=0, lower=0)  # (Mᵀ)(Mᵀ)ᵀ = Mᵀ M, upper triangle
    return np.triu(G) + np.triu(G, 1).T


class _TwoFactorSPD:
    """Two SPD factors, a batch of N observations: q_i and the gradients of Σ c_i q_i.

    Few observations (N < 4): with ``X_i = L_A⁻¹ W_i L_B⁻ᵀ`` (two triangular solves),
    ``q_i = ‖X_i‖²``, ``∂/∂A = −Σ c_i (L_A⁻ᵀX_i)(L_A⁻ᵀX_i)ᵀ`` (a solve and a symmetric rank-k
    update), and ``Z_i = (L_A⁻ᵀ X_i) L_B⁻¹`` reuses the first solve: about 7.7 m³ flops for m = n,
    on square BLAS-3 calls where triangular solves run as fast as GEMM.

    Many observations: triangular solves with a very wide right-hand side run far below GEMM
    speed, so the batch uses the cached inverses and GEMM only (8·N·p·q·(p+q)/2 flops):
    ``Z_i = A⁻¹ (W_i B⁻¹)``, ``q_i = W_i : Z_i``, and, because ``A Z_i = W_i B⁻¹``,
    ``Σ c_i Z_i B Z_iᵀ = (Σ c_i Z_i W_iᵀ) A⁻¹`` and ``Σ c_i Z_iᵀ A Z_i = (Σ c_i Z_iᵀ W_i) B⁻¹``.
    The input ``W`` is never modified.
    """

    BATCH_MIN = 4

    def __init__(self, fa: Factorization, fb: Factorization, W: np.ndarray):
        self.fa, self.fb = fa, fb
        self.N = N = W.shape[0]
        self.p, self.q_dim = p, q = fa.n, fb.n
        self.W3 = W3 = np.ascontiguousarray(W).reshape(N, p, q)
        self.batched = N >= self.BATCH_MIN
        if self.batched:
            # Blocks of a few observations: the temporaries stay small and in cache, and each
            # block is a handful of large GEMM calls (no Python loop over observations).
            self.step = max(1, (1 << 19) // (p * q))
            Ainv, Binv = fa.inverse_view(), fb.inverse_view()
            self.Z = np.empty_like(W3)
            self.q = np.empty(N, dtype=W3.dtype)
            for s in range(0, N, self.step):
                Wb = W3[s : s + self.step]
                Vb = (Wb.reshape(-1, q) @ Binv).reshape(Wb.shape)  # W_i B⁻¹
                Zb = np.matmul(Ainv, Vb, out=self.Z[s : s + self.step])  # A⁻¹ W_i B⁻¹
                self.q[s : s + self.step] = np.einsum("nij,nij->n", Wb, Zb)
        else:
            X1 = _rmul_tri(W3.reshape(N * p, q), fb, inverse_transpose=True)  # W_i L_B⁻ᵀ
            T = np.ascontiguousarray(X1.reshape(N, p, q).transpose(1, 0, 2))  # (p, N, q)
            self.T = np.ascontiguousarray(
                _lmul_tri(T.reshape(p, N * q), fa, transpose=False).reshape(p, N, q)
            )
            self.q = np.einsum("aib,aib->i", self.T, self.T)

    def grads(self, c: np.ndarray):
        if self.batched:
            return self._grads_batched(c)
        return self._grads_few(c)

    def _grads_batched(self, c: np.ndarray):
        N, p, q, W3 = self.N, self.p, self.q_dim, self.W3
        Z2c, self.Z = self.Z, None  # scaled in place (a fresh array costs page faults)
        GA = np.zeros((p, p), dtype=Z2c.dtype)
        GB = np.zeros((q, q), dtype=Z2c.dtype)
        for s in range(0, N, self.step):
            Zb, Wb = Z2c[s : s + self.step], W3[s : s + self.step]
            Zb *= (2.0 * c[s : s + self.step])[:, None, None]  # 2 c_i Z_i = c_i ∂q_i/∂w_i
            GB += Zb.reshape(-1, q).T @ Wb.reshape(-1, q)  # 2 Σ c_i Z_iᵀ W_i
            GA += np.matmul(Zb, Wb.transpose(0, 2, 1)).sum(axis=0)  # 2 Σ c_i Z_i W_iᵀ
        gA = GA @ self.fa.inverse_view()
        gB = GB @ self.fb.inverse_view()
        gA = -0.25 * (gA + gA.T)
        gB = -0.25 * (gB + gB.T)
        return (gA, gB), Z2c.reshape(N, p * q)

    def _grads_few(self, c: np.ndarray):
        p, q, N, T = self.p, self.q_dim, self.N, self.T
        s = np.sqrt(c)[None, :, None]
        YA = _lmul_tri(T.reshape(p, N * q), self.fa, transpose=True)  # L_A⁻ᵀ X_i
        YB = _rmul_tri(T.reshape(p * N, q), self.fb, inverse_transpose=False)  # X_i L_B⁻¹
        gA = -_syrk_rows(np.ascontiguousarray(YA.reshape(p, N, q) * s).reshape(p, N * q))
        gB = -_syrk_cols(np.ascontiguousarray(YB.reshape(p, N, q) * s).reshape(p * N, q))
        YA = YA.reshape(p, N, q) * (s * s)  # L_A⁻ᵀ c_i X_i
        Zc = np.ascontiguousarray(YA.transpose(1, 0, 2))  # (N, p, q)
        Zc = _rmul_tri(Zc.reshape(N * p, q), self.fb, inverse_transpose=False)  # c_i Z_i
        return (gA, gB), 2.0 * np.ascontiguousarray(Zc).reshape(N, p * q)


class _QuadState:
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
            self._two = _TwoFactorSPD(self.facs[0], self.facs[1], W)
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
        Xs = X * self._bcast(np.sqrt(c)) if (nonneg and not per_obs) else None
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


def _assemble(state: _QuadState, c: np.ndarray, mua, reduce, single: bool,
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


# ---------------------------------------------------------------------------------------
# Public functions
# ---------------------------------------------------------------------------------------
def log_quad(K: Any, y: Any, mu: Any = None, alpha: float = 1.0) -> Any:
    r"""The seed function ``λ = log(α + (y−μ)ᵀ (A1⊗…⊗Ad)⁻¹ (y−μ))``.

    Parameters
    ----------
    K : Kron or sequence of square factors ``(A1, ..., Ad)``, each of shape (p_k, p_k)
    y : array_like of shape (P,) or (N, P)
        Observation(s); ``P = p1·…·pd``; row-major flattening of a ``(p1, …, pd)`` tensor.
    mu : array_like of shape (P,) or (N, P), optional
        Location (default 0).
    alpha : float
        Offset ``α``; ``β = α + q`` must be positive.

    Returns
    -------
    float for ``y`` of shape (P,), ndarray of shape (N,) for (N, P).

    Notes
    -----
    Cost O(Σ p_k³ + N·P·Σ p_k) (Cholesky for SPD factors, LU otherwise); nothing P×P.
    Dense equivalent: ``np.log(alpha + w @ np.linalg.solve(np.kron(A, B), w))``.
    Raises :class:`DomainError` where ``β ≤ 0`` and :class:`SingularFactorError` for a
    singular factor.
    """
    if is_dask_array(y):
        return _log_quad_dask(K, y, mu, alpha)
    K, W, _, single = _prepare(K, y, mu, "log_quad")
    a = check_scalar(alpha, "alpha")
    if W.shape[0] == 0:
        factorizations(K, "log_quad")
        return np.zeros(0, dtype=W.dtype)
    sq = _scaled_quad(K, W, "log_quad", a)
    lam = np.log(_beta(sq.state.q, sq.alpha_hat(a), W)) + sq.log_scale()
    return float(lam[0]) if single else lam


def log_quad_grad(
    K: Any,
    y: Any,
    mu: Any = None,
    alpha: float = 1.0,
    *,
    reduce: str | None = "sum",
    method: str = "closed",
) -> LogQuadGrad:
    r"""Value and gradients of ``λ = log(α + (y−μ)ᵀ (A1⊗…⊗Ad)⁻¹ (y−μ))``.

    Parameters
    ----------
    K : Kron or sequence of square factors ``(A1, ..., Ad)``, each (p_k, p_k)
    y : array_like of shape (P,) or (N, P)
    mu : array_like of shape (P,) or (N, P), optional
    alpha : float
    reduce : {"sum", "mean", None}
        For a batch: gradients of ``Σ_i λ_i`` (``"sum"``), of its mean, or per observation
        (``None``: ``factors[k]`` has shape (N, p_k, p_k)). Ignored for a single ``y``.
    method : {"closed", "kpsvd"}
        ``"closed"`` (default): closed form, O(Σ p_k³ + N·P·Σ p_k), batched as matrix products.
        ``"kpsvd"``: the seed's route, literally — forms ``S⁻ᵀwwᵀS⁻ᵀ`` (P×P), takes its
        Kronecker-product SVD ``Σ_k F_k⊗G_k`` and sums ``−β⁻¹ Σ_k (B:G_k) F_k``; two factors
        and ``P ≤ 4096`` only. A reference, O(P³) per observation.

    Returns
    -------
    LogQuadGrad
        ``value``, ``factors`` (∂/∂A_k for every k; ``.A``, ``.B`` for the first two),
        ``y``, ``mu`` (``= −∂/∂y``, summed when μ is shared), ``alpha`` (``= β⁻¹``).

    Notes
    -----
    With ``Z = S⁻¹w``, ``U = S⁻ᵀw``: ``∂λ/∂A = −β⁻¹ U B Zᵀ``, ``∂λ/∂B = −β⁻¹ Uᵀ A Z``,
    ``∂λ/∂y = β⁻¹ (Z + U)`` (d = 2; general d in the module docstring). For SPD factors
    (Cholesky) these are triangular solves and symmetric rank-k updates.

    Examples
    --------
    >>> import numpy as np, kronkit
    >>> A = np.array([[2.0, 0.5], [0.5, 1.0]]); B = np.eye(3) * 1.5
    >>> y = np.arange(6.0)
    >>> g = kronkit.log_quad_grad([A, B], y, alpha=2.0)
    >>> g.A.shape, g.B.shape, g.y.shape
    ((2, 2), (3, 3), (6,))
    """
    _check_reduce(reduce)
    if method not in ("closed", "kpsvd"):
        raise ValueError(f"`method` must be 'closed' or 'kpsvd', got {method!r}")
    if is_dask_array(y):
        return _log_quad_grad_dask(K, y, mu, alpha, reduce, method)
    K, W, mua, single = _prepare(K, y, mu, "log_quad_grad")
    a = check_scalar(alpha, "alpha")
    if W.shape[0] == 0:
        return LogQuadGrad(*_empty_batch(K, W, mua, reduce, "log_quad_grad", True))
    if method == "kpsvd":
        return _log_quad_grad_kpsvd(K, W, mua, a, reduce, single)
    sq = _scaled_quad(K, W, "log_quad_grad", a)
    beta = _beta(sq.state.q, sq.alpha_hat(a), W)  # β̂_i = 4^{-e_i} β_i
    lam = np.log(beta) + sq.log_scale()
    scale = 1.0 / W.shape[0] if (reduce == "mean" and not single) else 1.0
    c = scale / beta  # ∂λ/∂A_k = ∂q̂/∂A_k / β̂ (λ - e log 4 is the same function of Â = A)
    with overflow_checked():
        factors, g_y, g_mu = _assemble(sq.state, c, mua, reduce, single, sq.row_scale())
    _check_outputs(K, W, factors, g_y)
    if sq.e is not None:
        with overflow_checked():
            c = np.ldexp(c, -2 * sq.e)  # ∂λ/∂α = 1/β = 4^{-e}/β̂
        if not np.all(np.isfinite(c)):
            raise overflow_error("the gradient with respect to alpha (1/beta)",
                                 **{"y - mu": W}, factors=K.factors)
    if single:
        return LogQuadGrad(float(lam[0]), factors, g_y, g_mu, float(c[0]))
    if reduce is None:
        return LogQuadGrad(lam, factors, g_y, g_mu, c)
    return LogQuadGrad(float(lam.sum() * scale), factors, g_y, g_mu, float(c.sum()))


def inv_quad_grad(K: Any, y: Any, mu: Any = None, *, reduce: str | None = "sum") -> InvQuadGrad:
    r"""Value and gradients of the quadratic form ``q = (y−μ)ᵀ (A1⊗…⊗Ad)⁻¹ (y−μ)``.

    Same shapes, conventions and cost as :func:`log_quad_grad`, without the logarithm:
    ``∂q/∂A = −U B Zᵀ``, ``∂q/∂B = −Uᵀ A Z``, ``∂q/∂y = Z + U`` (d = 2).
    Dense equivalent: ``w @ np.linalg.solve(np.kron(A, B), w)``.
    """
    _check_reduce(reduce)
    K, W, mua, single = _prepare(K, y, mu, "inv_quad_grad")
    if W.shape[0] == 0:
        return InvQuadGrad(*_empty_batch(K, W, mua, reduce, "inv_quad_grad", False))
    with overflow_checked():
        state = _QuadState(K, W, "inv_quad_grad")
    _check_q(state.q, K, W)
    scale = 1.0 / W.shape[0] if (reduce == "mean" and not single) else 1.0
    c = np.full(W.shape[0], scale)
    with overflow_checked():
        factors, g_y, g_mu = _assemble(state, c, mua, reduce, single)
    _check_outputs(K, W, factors, g_y)
    q = state.q
    if single:
        return InvQuadGrad(float(q[0]), factors, g_y, g_mu)
    if reduce is None:
        return InvQuadGrad(q, factors, g_y, g_mu)
    return InvQuadGrad(float(q.sum() * scale), factors, g_y, g_mu)


def logdet_grad(K: Any) -> tuple[np.ndarray, ...]:
    r"""Gradients of ``log det(A1⊗…⊗Ad) = Σ_k (P/p_k) log det A_k``: ``(P/p_k) A_k⁻ᵀ``.

    Requires ``det > 0`` for the log to be real (see :meth:`Kron.logdet`); cost O(Σ p_k³).
    """
    K = as_kron(K)
    facs = factorizations(K, "logdet_grad")  # singular factors raise; one warning if ill-conditioned
    if slogdet_with(K, facs)[0] < 0:
        raise DomainError(
            "det(K) is negative, so log det(K) and its gradient are undefined", value=-1.0
        )
    P = K.shape[0]
    with overflow_checked():
        out = tuple((P // f.n) * f.inverse().T for f in facs)
    for k, g in enumerate(out):
        if not np.all(np.isfinite(g)):
            raise overflow_error(f"the gradient of log det with respect to factor {k}",
                                 factors=K.factors)
    return out


# ---------------------------------------------------------------------------------------
# The seed's route (reference)
# ---------------------------------------------------------------------------------------
def seed_route(K: Any, y: Any, mu: Any = None, alpha: float = 1.0) -> SeedRoute:
    r"""The seed's answer, computed literally, for one observation and two factors.

    Forms ``X = S⁻ᵀ w wᵀ S⁻ᵀ`` (P×P), takes its Kronecker-product SVD
    ``X = Σ_k F_k ⊗ G_k`` through the Van Loan–Pitsianis rearrangement (:func:`kronkit.kpsvd`),
    and returns ``∂λ/∂A = −β⁻¹ Σ_k (B:G_k) F_k`` and ``∂λ/∂B = −β⁻¹ Σ_k (A:F_k) G_k``.
    O(P³); refuses ``P > 4096``. Use :func:`log_quad_grad` for real work.
    """
    K, W, _, single = _prepare(K, y, mu, "seed_route")
    if not single:
        raise ValueError(f"`y` must be a single observation of shape ({K.shape[1]},), got {W.shape}")
    a = check_scalar(alpha, "alpha")
    factorizations(K, "seed_route")  # consistent with solve: singular raises, ill warns
    return _seed_route_one(K, W[0], a)


def _seed_route_one(K: Kron, w: np.ndarray, alpha: float) -> SeedRoute:
    from ._kpsvd import kpsvd

    if K.n_factors != 2:
        raise ValueError(
            f"the seed's Kronecker-SVD route needs exactly two factors, got {K.n_factors}; "
            "use method='closed'"
        )
    P = K.shape[0]
    if P > SEED_ROUTE_MAX_P:
        raise ValueError(
            f"the seed's Kronecker-SVD route forms a P×P matrix and refuses P > {SEED_ROUTE_MAX_P} "
            f"(got P = {P}, which would take {8 * P * P / 2**30:.1f} GiB); use method='closed'"
        )
    A, B = K.factors
    p, q = A.shape[0], B.shape[0]
    S = np.kron(A, B)
    try:
        z = np.linalg.solve(S, w)
        u = np.linalg.solve(S.T, w)
    except np.linalg.LinAlgError:
        factorizations(K, "seed_route", warn=False)  # raises SingularFactorError naming it
        raise
    beta = float(_beta(np.array([w @ z]), alpha, w[None, :])[0])
    X = np.outer(u, z)  # S⁻ᵀ w wᵀ S⁻ᵀ = (S⁻ᵀw)(S⁻¹w)ᵀ
    res = kpsvd(X, ((p, p), (q, q)))
    F = res.s[:, None, None] * res.A
    G = res.B
    gA = -np.einsum("k,kij->ij", np.einsum("ab,kab->k", B, G), F) / beta
    gB = -np.einsum("k,kij->ij", np.einsum("ab,kab->k", A, F), G) / beta
    gy = (z + u) / beta
    return SeedRoute(float(np.log(beta)), gA, gB, gy, np.asarray(res.s), beta)


def _log_quad_grad_kpsvd(K: Kron, W: np.ndarray, mua, alpha: float, reduce, single: bool):
    factorizations(K, "log_quad_grad")  # consistent with solve: singular raises, ill warns
    routes = [_seed_route_one(K, w, alpha) for w in W]
    lam = np.array([r.value for r in routes])
    gA = np.stack([r.A for r in routes])
    gB = np.stack([r.B for r in routes])
    gy = np.stack([r.y for r in routes])
    c = np.array([1.0 / r.beta for r in routes])
    if single:
        return LogQuadGrad(float(lam[0]), (gA[0], gB[0]), gy[0], -gy[0], float(c[0]))
    if reduce is None:
        return LogQuadGrad(lam, (gA, gB), gy, -gy, c)
    scale = 1.0 / W.shape[0] if reduce == "mean" else 1.0
    g_mu = -gy * scale if (mua is not None and mua.ndim == 2) else -gy.sum(axis=0) * scale
    return LogQuadGrad(
        float(lam.sum() * scale), (gA.sum(0) * scale, gB.sum(0) * scale), gy * scale, g_mu,
        float(c.sum() * scale),
    )


# ---------------------------------------------------------------------------------------
# dask arrays of observations (chunked along N): per-chunk sums, reduced in a tree
# ---------------------------------------------------------------------------------------
def _dask_args(K: Any, y: Any, mu: Any, alpha: Any, what: str):
    K = as_kron(K)
    require_square(K, what)
    P = K.shape[1]
    if y.ndim != 2 or y.shape[1] != P:
        raise ValueError(f"`y` as a dask array must have shape (N, {P}), got {y.shape}")
    if y.dtype.kind not in "biuf":
        raise TypeError(f"`y` must be a real numeric array, got dtype {y.dtype}")
    if mu is not None:
        mu = as_float(mu, "mu", ndim=1)
        if mu.shape != (P,):
            raise ValueError(f"`mu` must have shape ({P},) with a dask `y`, got {mu.shape}")
    return K, row_chunks(y, "y"), mu, check_scalar(alpha, "alpha")


def _lq_block(block, K, mu, alpha):
    return np.atleast_1d(log_quad(K, block, mu, alpha)) if block.shape[0] else np.zeros(0)


def _lqg_block(block, K, mu, alpha):
    if block.shape[0] == 0:
        zero = tuple(np.zeros((f.shape[0],) * 2) for f in K.factors)
        return 0.0, zero, np.zeros(K.shape[1]), 0.0
    g = log_quad_grad(K, block, mu, alpha, reduce="sum")
    return g.value, g.factors, g.mu, g.alpha


def _lqg_y_block(block, K, mu, alpha, scale):
    if block.shape[0] == 0:
        return np.zeros(block.shape)
    return log_quad_grad(K, block, mu, alpha, reduce="sum").y * scale


def _log_quad_dask(K, y, mu, alpha):
    K, y, mu, a = _dask_args(K, y, mu, alpha, "log_quad")
    return y.map_blocks(_lq_block, K, mu, a, drop_axis=1, dtype=np.float64)


def _log_quad_grad_dask(K, y, mu, alpha, reduce, method):
    if method != "closed":
        raise ValueError("a dask `y` needs method='closed' (the seed route is a dense reference)")
    if reduce is None:
        raise ValueError(
            "a dask `y` supports reduce='sum' or 'mean' (per-observation gradients of a large "
            "batch would be as large as the data; map log_quad_grad over its blocks instead)"
        )
    K, y, mu, a = _dask_args(K, y, mu, alpha, "log_quad_grad")
    N = y.shape[0]
    scale = 1.0 / N if reduce == "mean" else 1.0
    value, factors, g_mu, g_alpha = tree_reduce_chunks(
        y, functools.partial(_lqg_block, K=K, mu=mu, alpha=a), add_nested, name="y"
    )
    g_y = y.map_blocks(_lqg_y_block, K, mu, a, scale, dtype=np.float64)  # lazy, row-aligned
    return LogQuadGrad(
        float(value) * scale, tuple(f * scale for f in factors), g_y, g_mu * scale,
        float(g_alpha) * scale,
    )
