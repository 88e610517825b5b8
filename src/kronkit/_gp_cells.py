r""":class:`kronkit.KroneckerGP` on incomplete grids and with a per-cell ``alpha``.

The observed cells ``O`` of the grid (the others are NaN in ``Y``) have the covariance

    S_OO = [K_1⊗…⊗K_d + diag(noise + alpha)]_OO,

the observed block of a Kronecker product plus a per-cell diagonal: a
:class:`~kronkit.KronPlusDiag` restricted to ``O`` (:mod:`kronkit._cell_ops`), exact by the
capacitance identities of :mod:`kronkit._cells` (``k`` = missing cells plus cells where
``noise + alpha`` differs from its Kronecker-structured fit). With ``x = S_OO⁻¹ y_O``:

    LML = −½ (y_Oᵀx + log det S_OO + n_O log 2π)
    ∂LML/∂K_k = −½ (∂(y_OᵀS_OO⁻¹y_O)/∂K_k + ∂ log det S_OO/∂K_k)
    ∂LML/∂noise = ½ (xᵀx − tr S_OO⁻¹)

(:meth:`~kronkit.CellOperator.quad_state` and :meth:`~kronkit.CellOperator.logdet_grads_trace`).
The posterior keeps the capacitance form: ``x̂ = S_OO⁻¹y_O`` embedded on the grid (zero on the
missing cells) has eigen coordinates ``Z̃`` (:meth:`~kronkit._cells.CellForm.whiten`), so the
mean at new points is ``k_*ᵀx̂`` exactly as on a complete grid, and the variance gains the
low-rank term of the embedded ``S_OO⁻¹ = S̄⁻¹ − Z C diag(c) Cᵀ Zᵀ``
(:func:`kronkit._gp_predict.lowrank_explained`). When the dense observed block is cheaper
(many missing cells), :mod:`kronkit._gp_dense` computes the same quantities from its Cholesky
factor.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from ._cell_ops import LOGDET_MAX_CELLS, CellOperator, KronPlusDiag
from ._cells import CellForm
from ._errors import NotPositiveDefiniteError, SingularFactorError
from ._gp_dense import DensePosterior, dense_explained, dense_is_cheaper, dense_lml
from ._gp_predict import lowrank_explained
from ._kron import Kron

__all__ = ["CellPosterior", "cell_lml", "cell_operator", "explained_correction", "fill_alpha"]

_LOG_2PI = math.log(2.0 * math.pi)


class CellPosterior(NamedTuple):
    """What predictions need on an incomplete grid: the eigen form's ``V_k`` and ``1/λ`` of
    ``S̄``, the eigen coordinates ``α̂ = Z̃`` of the embedded ``S_OO⁻¹y_O`` (grid-shaped) and the
    capacitance form (its ``C``, ``c``, ``R`` give the low-rank part of the variance)."""

    V: tuple[np.ndarray, ...]
    inv_lam: np.ndarray
    alpha_hat: np.ndarray
    form: CellForm


def fill_alpha(alpha: np.ndarray, observed: np.ndarray) -> float | np.ndarray:
    """``alpha`` (grid) with its missing cells set to the most frequent observed value (they do
    not enter the model; this keeps them out of the Kronecker fit of the diagonal); a float when
    ``alpha`` is constant on the observed cells (then it is the scalar ``alpha``)."""
    values, counts = np.unique(alpha[observed], return_counts=True)
    if values.size == 1:
        return float(values[0])
    out = alpha.copy()
    out[~observed] = values[int(np.argmax(counts))]
    return out


def cell_operator(Ks: Sequence[np.ndarray], s: float, alpha: float | np.ndarray,
                  observed: np.ndarray) -> CellOperator:
    """``[⊗K_k + diag(s + alpha)]_OO`` as a :class:`~kronkit.Restricted` (``observed`` a boolean
    grid; ``alpha`` a float or a grid)."""
    dims = observed.shape
    d = np.broadcast_to(np.asarray(s + alpha, dtype=np.float64), dims)
    return KronPlusDiag(Kron(*Ks), d).restrict(observed)


def cell_lml(kernels: Sequence[Any], axes: Sequence[np.ndarray], y: np.ndarray,
             observed: np.ndarray, s: float, alpha: float | np.ndarray, eval_gradient: bool,
             posterior: bool = False
             ) -> tuple[float, np.ndarray, Any, CellPosterior | DensePosterior | None]:
    """``(LML, ∂LML/∂θ_kernels, ∂LML/∂s, posterior or None)`` of the observed cells of ``y``
    (grid, any value on the missing cells) under ``⊗k_k(X_k) + diag(s + alpha)``, by the
    capacitance route or, when cheaper, the dense observed block (:mod:`._gp_dense`);
    ``NotPositiveDefiniteError`` where the observed covariance is not positive definite."""
    if eval_gradient:
        pairs = [kern(X, eval_gradient=True) for kern, X in zip(kernels, axes, strict=True)]
        Ks, dKs = [K for K, _ in pairs], [dK for _, dK in pairs]
    else:
        Ks, dKs = [kern(X) for kern, X in zip(kernels, axes, strict=True)], []
    n_missing = int(observed.size - np.count_nonzero(observed))
    if dense_is_cheaper(observed.size, n_missing):
        d_obs = np.broadcast_to(np.asarray(s + alpha, dtype=np.float64), observed.shape)
        return dense_lml(Ks, dKs, d_obs[observed], observed, y[observed], eval_gradient,
                         posterior)
    op = cell_operator(Ks, s, alpha, observed)
    if op.n_cells > LOGDET_MAX_CELLS:
        n_alpha = op.n_cells - n_missing
        raise ValueError(
            f"`alpha` (plus the noise) differs from its best Kronecker-structured fit on "
            f"{n_alpha} observed cells: with the missing ones, more than the "
            f"{LOGDET_MAX_CELLS} cells the exact log-marginal likelihood takes (a k×k "
            "capacitance matrix); give alpha a constant or per-axis (separable) pattern on most "
            "cells")
    y_obs = op.select(y)
    try:
        quad = op.quad_state(y_obs[None], "lml")
        logdet = op.logdet()
    except SingularFactorError as exc:
        raise NotPositiveDefiniteError(str(exc)) from exc
    value = -0.5 * (float(quad.q[0]) + logdet + y_obs.size * _LOG_2PI)
    post = None
    if posterior:
        form = op.cell_form()
        Zl, _ = form.whiten(op.embed(y_obs[None]))
        post = CellPosterior(tuple(form.E.V), 1.0 / form.E.lam, Zl[0].reshape(observed.shape),
                             form)
    if not eval_gradient:
        return value, np.empty(0), None, post
    G_quad, two_x = quad.grads(np.ones(1), False)
    G_logdet, trace = op.logdet_grads_trace()
    grads = [np.einsum("ij,ijp->p", -0.5 * (G_quad[0][k] + G_logdet[0][k]), dK)
             for k, dK in enumerate(dKs)]
    x = 0.5 * two_x[0]
    d_s = 0.5 * (float(np.dot(x, x)) - trace)
    return value, np.concatenate(grads), d_s, post


def explained_correction(post: CellPosterior | DensePosterior, A: Sequence[np.ndarray],
                         grid: bool, cov: bool = False) -> np.ndarray:
    """What to subtract from the eigen-form part ``Σ (Π a_k)²/λ`` of the explained variance
    (covariance with ``cov``) at the query points: the low-rank term that the missing cells
    give back (capacitance route), or minus ``‖L⁻¹k_{*O}‖²`` (dense route, no eigen part)."""
    if isinstance(post, DensePosterior):
        return -dense_explained(post, A, grid, cov)
    return lowrank_explained(post.form, A, grid, cov)
