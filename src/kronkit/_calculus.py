r"""The seed function ``λ = log(α + (y−μ)ᵀ(A1⊗…⊗Ad)⁻¹(y−μ))``: value and closed-form gradients.

Notation (REFERENCES §2): ``w = y − μ``, ``S = A1⊗…⊗Ad``, ``q = wᵀS⁻¹w``, ``β = α + q``,
``λ = log β``. With ``Z = S⁻¹w`` and ``U = S⁻ᵀw`` viewed as tensors of shape ``(p1, …, pd)``,

    ∂q/∂A_k = −U_(k) (w ×_k A_k⁻¹)_(k)ᵀ,   ∂q/∂w = Z + U,   ∂λ/∂· = β⁻¹ ∂q/∂·,

where ``X_(k)`` is the mode-k unfolding (for d = 2: ``∂q/∂A = −U B Zᵀ``, ``∂q/∂B = −Uᵀ A Z``).
With symmetric positive definite factors ``A_k = L_k L_kᵀ`` and ``X = (⊗L_k⁻¹) w``:
``q = ‖X‖²`` and ``∂q/∂A_k = −L_k⁻ᵀ X_(k) X_(k)ᵀ L_k⁻¹`` — triangular solves and one
symmetric rank-k update per factor. Batches of observations are folded into the GEMMs
(the engine: :mod:`kronkit._quad`).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np

from ._cell_ops import CellOperator
from ._checks import as_float, check_choice, check_scalar, overflow_error
from ._dask import add_nested, is_dask_array, row_chunks, tree_reduce_chunks
from ._errors import DomainError
from ._factor import warn_ill_conditioned
from ._grad_results import InvQuadGrad, LogQuadGrad
from ._hot import seed_grads
from ._kron import (
    Kron,
    as_kron,
    factorization,
    factorizations,
    overflow_checked,
    require_square,
    slogdet_with,
)
from ._quad import (
    QuadState,
    assemble_grads,
    check_outputs,
    check_q,
    check_reduce,
    checked_beta,
    empty_batch,
    logdet_grads,
    prepare_observations,
    reduce_values,
    reduction_scale,
    scaled_quad,
)
from ._sum_calculus import (
    sum_inv_quad_grad,
    sum_log_quad,
    sum_log_quad_grad,
    sum_logdet_grad,
    zero_factor_grads,
)
from ._sum_kron import SumOfKron
from ._typing import ArrayLike, FloatOrArray, KronLike

__all__ = [
    "InvQuadGrad",
    "LogQuadGrad",
    "inv_quad_grad",
    "log_quad",
    "log_quad_grad",
    "logdet_grad",
]


# ---------------------------------------------------------------------------------------
# Public functions
# ---------------------------------------------------------------------------------------
def log_quad(K: KronLike, y: ArrayLike, mu: ArrayLike | None = None,
             alpha: float = 1.0) -> FloatOrArray:
    r"""The seed function ``λ = log(α + (y−μ)ᵀ (A1⊗…⊗Ad)⁻¹ (y−μ))``.

    Parameters
    ----------
    K : Kron, sequence of square factors ``(A1, ..., Ad)`` (each (p_k, p_k)), or SumOfKron
        The matrix ``S``; a :class:`~kronkit.SumOfKron` (positive definite) uses its exact
        eigen form (``K1⊗K2 + s²I``, Kronecker sums, ...).
    y : array_like of shape (P,) or (N, P)
        Observation(s); ``P = p1·…·pd``; row-major flattening of a ``(p1, …, pd)`` tensor.
    mu : array_like of shape (P,) or (N, P), optional
        Location (default 0).
    alpha : float
        Offset ``α``; ``β = α + q`` must be positive.

    Returns
    -------
    float for ``y`` of shape (P,), ndarray of shape (N,) for (N, P) (a lazy dask array of
    shape (N,) for a dask ``y``).

    Notes
    -----
    Cost O(Σ p_k³ + N·P·Σ p_k) (Cholesky for SPD factors, LU otherwise); nothing P×P.
    Dense equivalent: ``np.log(alpha + w @ np.linalg.solve(np.kron(A, B), w))``.
    Raises :class:`DomainError` where ``β ≤ 0`` and :class:`SingularFactorError` for a
    singular factor.
    """
    if is_dask_array(y):
        return _log_quad_dask(K, y, mu, alpha)
    K = _uncell(K)
    if isinstance(K, (SumOfKron, CellOperator)):
        return sum_log_quad(K, y, mu, check_scalar(alpha, "alpha"))
    K, W, _, single = prepare_observations(K, y, mu, "log_quad")
    a = check_scalar(alpha, "alpha")
    if W.shape[0] == 0:
        factorizations(K, "log_quad")
        return np.zeros(0, dtype=W.dtype)
    sq = scaled_quad(K, W, "log_quad", a)
    lam = np.log(checked_beta(sq.state.q, sq.alpha_hat(a), W)) + sq.log_scale()
    return float(lam[0]) if single else lam


def log_quad_grad(
    K: KronLike,
    y: ArrayLike,
    mu: ArrayLike | None = None,
    alpha: float = 1.0,
    *,
    reduce: str | None = "sum",
    method: str = "closed",
) -> LogQuadGrad:
    r"""Value and gradients of ``λ = log(α + (y−μ)ᵀ (A1⊗…⊗Ad)⁻¹ (y−μ))``.

    Parameters
    ----------
    K : Kron, sequence of square factors ``(A1, ..., Ad)`` (each (p_k, p_k)), or SumOfKron
        For a :class:`~kronkit.SumOfKron` ``S = Σ_t F_t1⊗…⊗F_td`` (positive definite),
        ``factors[t][k]`` is ``∂λ/∂F_tk`` for every factor of every term: the partial
        contraction ``−β⁻¹ unfold_k(u) unfold_k(u ×_{j≠k} F_tj)ᵀ`` with ``u = S⁻¹w``.
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
    if type(method) is str and method == "closed" and (
            reduce is None or (type(reduce) is str and reduce in _SUMS)):
        fast = _two_spd_fast(K, y, mu, alpha, reduce)
        if fast is not None:
            return fast
    check_reduce(reduce)
    check_choice(method, "method", ("closed", "kpsvd"))
    if is_dask_array(y):
        return _log_quad_grad_dask(K, y, mu, alpha, reduce, method)
    K = _uncell(K)
    if isinstance(K, (SumOfKron, CellOperator)):
        if method != "closed":
            raise ValueError("method='kpsvd' (the seed's route) takes a Kron; a SumOfKron uses "
                             "method='closed'")
        return _flat(K, sum_log_quad_grad(K, y, mu, check_scalar(alpha, "alpha"), reduce))
    K, W, mua, single = prepare_observations(K, y, mu, "log_quad_grad")
    a = check_scalar(alpha, "alpha")
    if W.shape[0] == 0:
        return LogQuadGrad(*empty_batch(K, W, mua, reduce, "log_quad_grad", True))
    if method == "kpsvd":  # the seed's reference route, imported only when asked for
        from ._kpsvd.route import kpsvd_route_grads

        return LogQuadGrad(*kpsvd_route_grads(K, W, mua, a, reduce, single))
    sq = scaled_quad(K, W, "log_quad_grad", a)
    beta = checked_beta(sq.state.q, sq.alpha_hat(a), W)  # β̂_i = 4^{-e_i} β_i
    lam = np.log(beta) + sq.log_scale()
    scale = reduction_scale(reduce, W.shape[0], single)
    c = scale / beta  # ∂λ/∂A_k = ∂q̂/∂A_k / β̂ (λ - e log 4 is the same function of Â = A)
    with overflow_checked():
        factors, g_y, g_mu = assemble_grads(sq.state, c, mua, reduce, single, sq.row_scale())
    check_outputs(K, W, factors, g_y)
    if sq.e is not None:
        with overflow_checked():
            c = np.ldexp(c, -2 * sq.e)  # ∂λ/∂α = 1/β = 4^{-e}/β̂
        if not np.all(np.isfinite(c)):
            raise overflow_error("the gradient with respect to alpha (1/beta)",
                                 **{"y - mu": W}, factors=K.factors)
    return LogQuadGrad(reduce_values(lam, reduce, single, scale), factors, g_y, g_mu,
                       reduce_values(c, reduce, single))


def inv_quad_grad(K: KronLike, y: ArrayLike, mu: ArrayLike | None = None, *,
                  reduce: str | None = "sum") -> InvQuadGrad:
    r"""Value and gradients of the quadratic form ``q = (y−μ)ᵀ (A1⊗…⊗Ad)⁻¹ (y−μ)``.

    Same shapes, conventions and cost as :func:`log_quad_grad`, without the logarithm:
    ``∂q/∂A = −U B Zᵀ``, ``∂q/∂B = −Uᵀ A Z``, ``∂q/∂y = Z + U`` (d = 2). ``K`` may be a
    :class:`~kronkit.SumOfKron` (``factors[t][k]``, as in :func:`log_quad_grad`).
    Dense equivalent: ``w @ np.linalg.solve(np.kron(A, B), w)``.
    """
    check_reduce(reduce)
    K = _uncell(K)
    if isinstance(K, (SumOfKron, CellOperator)):
        return _flat(K, sum_inv_quad_grad(K, y, mu, reduce))
    K, W, mua, single = prepare_observations(K, y, mu, "inv_quad_grad")
    if W.shape[0] == 0:
        return InvQuadGrad(*empty_batch(K, W, mua, reduce, "inv_quad_grad", False))
    with overflow_checked():
        state = QuadState(K, W, "inv_quad_grad")
    check_q(state.q, K, W)
    scale = reduction_scale(reduce, W.shape[0], single)
    c = np.full(W.shape[0], scale)
    with overflow_checked():
        factors, g_y, g_mu = assemble_grads(state, c, mua, reduce, single)
    check_outputs(K, W, factors, g_y)
    return InvQuadGrad(reduce_values(state.q, reduce, single, scale), factors, g_y, g_mu)


def logdet_grad(K: KronLike) -> tuple[np.ndarray, ...]:
    r"""Gradients of ``log det(A1⊗…⊗Ad) = Σ_k (P/p_k) log det A_k``: ``(P/p_k) A_k⁻ᵀ``.

    Requires ``det > 0`` for the log to be real (see :meth:`Kron.logdet`); cost O(Σ p_k³).
    For a :class:`~kronkit.SumOfKron` ``S`` (positive definite): ``G[t][k] = ∂ log det S/∂F_tk``
    for every factor of every term, ``V_k diag(g_tk) V_kᵀ`` in its eigen form.
    """
    K = _uncell(K)
    if isinstance(K, CellOperator):
        G = sum_logdet_grad(K)
        return G[0] if K.flat_factors else G  # type: ignore[return-value]
    if isinstance(K, SumOfKron):
        return sum_logdet_grad(K)  # type: ignore[return-value]
    K = as_kron(K)
    facs = factorizations(K, "logdet_grad")  # singular factors raise; one warning if ill-conditioned
    if slogdet_with(K, facs)[0] < 0:
        raise DomainError(
            "det(K) is negative, so log det(K) and its gradient are undefined", value=-1.0
        )
    with overflow_checked():
        out = logdet_grads(facs)
    for k, g in enumerate(out):
        if not np.all(np.isfinite(g)):
            raise overflow_error(f"the gradient of log det with respect to factor {k}",
                                 factors=K.factors)
    return out


_FAST_DTYPES = (np.dtype(np.float64), np.dtype(np.float32))
_SUMS = frozenset(("sum", "mean"))


def _two_spd_fast(K: Any, y: Any, mu: Any, alpha: Any, reduce: Any) -> LogQuadGrad | None:
    """:func:`log_quad_grad` for the common case — two SPD factors, a NumPy ``y`` of one or a
    few rows (or a batch), the quadratic forms in range — straight on BLAS (:mod:`._hot`).

    Checks only what it relies on; anything else (other operators or inputs, a non-SPD factor,
    ``q`` out of range, ``β ≤ 0``, a non-finite gradient, ``reduce=None`` on a batch) returns
    ``None`` and the general path answers, with its errors and rescaling.
    """
    if type(K) is not Kron:
        if type(K) not in (list, tuple) or len(K) != 2:
            return None
        K = as_kron(K)
    if K.n_factors != 2 or type(y) is not np.ndarray or y.dtype != K.dtype:
        return None
    P = K.shape[1]
    single = y.ndim == 1
    if K.dtype not in _FAST_DTYPES or y.shape[-1] != P or y.ndim > 2 or not y.size:
        return None
    if type(alpha) not in (float, int) or not math.isfinite(alpha):
        return None
    if mu is not None and (type(mu) is not np.ndarray or mu.dtype != y.dtype
                           or mu.shape not in ((P,), y.shape)):
        return None
    if reduce is None and not single:
        return None
    A, B = K.factors
    if A.shape[0] != A.shape[1] or B.shape[0] != B.shape[1]:
        return None
    facs = (factorization(K, 0), factorization(K, 1))
    if facs[0].kind != "cholesky" or facs[1].kind != "cholesky":
        return None  # the general path checks, warns and answers
    for f in facs:  # the triangular inverse first: it may certify the conditioning (no estimate)
        f.tri_inverse()
        f.check()
    W = (y if mu is None else y - mu).reshape(-1, P)
    scale = 1.0 / W.shape[0] if (reduce == "mean" and not single) else 1.0
    out = seed_grads(facs[0], facs[1], W, float(alpha), scale)
    if out is None:
        return None  # q out of range (rescaled there), β ≤ 0 (raised there), an overflow
    warn_ill_conditioned(facs, "log_quad_grad")
    beta, c, gA, gB, gy = out
    if single:
        return LogQuadGrad(math.log(beta[0]), (gA, gB), gy[0], -gy[0], float(c[0]))
    g_mu = -gy if (mu is not None and mu.ndim == 2) else -gy.sum(axis=0)
    return LogQuadGrad(float(np.log(beta).sum() * scale), (gA, gB), gy, g_mu, float(c.sum()))


def _uncell(K: Any) -> Any:
    """An incomplete-grid operator with nothing missing and no diagonal is its parent (so the
    answers are the parent's, exactly)."""
    return K.parent if isinstance(K, CellOperator) and K.trivial else K


def _flat(K: Any, result: Any) -> Any:
    """Gradients of a restricted :class:`Kron` as ``factors[k]``, like the Kron's own."""
    if isinstance(K, CellOperator) and K.flat_factors:
        return type(result)(result[0], result.factors[0], *result[2:])
    return result


# ---------------------------------------------------------------------------------------
# dask arrays of observations (chunked along N): per-chunk sums, reduced in a tree
# ---------------------------------------------------------------------------------------
def _dask_args(K: Any, y: Any, mu: Any, alpha: Any, what: str):
    if isinstance(K, (SumOfKron, CellOperator)):
        if not K.is_square:
            raise ValueError(f"`{what}` needs square factors, got a SumOfKron of {K.shapes}")
    else:
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
        zero: Any = (zero_factor_grads(K) if isinstance(K, (SumOfKron, CellOperator))
                     else tuple(np.zeros((f.shape[0],) * 2) for f in K.factors))
        if isinstance(K, CellOperator) and K.flat_factors:
            zero = zero[0]
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
        float(value) * scale, _scaled(factors, scale), g_y, g_mu * scale, float(g_alpha) * scale,
    )


def _scaled(factors: Any, scale: float) -> Any:
    """``scale`` times every array of a (nested) tuple of gradients."""
    if isinstance(factors, tuple):
        return tuple(_scaled(f, scale) for f in factors)
    return factors * scale
