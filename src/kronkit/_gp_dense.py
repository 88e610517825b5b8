r""":class:`kronkit.KroneckerGP` on grids with many missing cells: the observed block, densely.

The capacitance route (:mod:`kronkit._gp_cells`) costs about ``1.5·P·k²`` per likelihood and
gradient for ``k`` missing cells; the dense Cholesky factor of the ``n×n`` observed block
``S_OO = [K_1⊗…⊗K_d]_OO + diag(noise + alpha)_O`` costs about ``n³``, so beyond roughly a third
of the grid missing the dense route is the cheaper exact one (:func:`dense_is_cheaper`).
``S_OO`` is gathered from the factors (``S_ij = Π_k K_k[i_k, j_k]``, never the P×P matrix);
with ``x = S_OO⁻¹y`` and ``W = ½(xxᵀ − S_OO⁻¹)``:

    ∂LML/∂K_k = E_kᵀ (W ∘ Π_{l≠k} K_l[i_l, j_l]) E_k,    ∂LML/∂noise = tr W,

``E_k`` the one-hot ``n×n_k`` map of the observed cells to their index on axis ``k``.
Predictions: the mean is ``k_*ᵀx̂`` as on every route (``x̂`` embedded on the grid); the variance
subtracts ``‖L⁻¹k_{*O}‖²`` (``S_OO = LLᵀ``), in chunks of query points.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import scipy.linalg

from . import _gp_predict
from ._errors import NotPositiveDefiniteError

__all__ = ["DENSE_MAX_OBS", "DensePosterior", "dense_explained", "dense_is_cheaper",
           "dense_lml"]

#: The dense route is used for at most this many observed cells (a few n×n arrays).
DENSE_MAX_OBS = 8000
_LOG_2PI = math.log(2.0 * math.pi)


class DensePosterior(NamedTuple):
    """The dense route's posterior: ``V_k = I`` (cross-kernels in the grid basis), ``inv_lam``
    zero (no eigen-form part), ``α̂ = x̂`` on the grid, and the Cholesky factor of ``S_OO``."""

    V: tuple[np.ndarray, ...]
    inv_lam: np.ndarray
    alpha_hat: np.ndarray
    chol: np.ndarray
    cells: tuple[np.ndarray, ...]  # per axis, the index of each observed cell


def dense_is_cheaper(n_cells: int, n_missing: int) -> bool:
    """Whether the dense observed block (``≈ n³``) beats the capacitance route
    (``≈ 1.5·P·k²``) for ``n`` observed cells of ``P``, ``k`` missing."""
    n = n_cells - n_missing
    return n <= DENSE_MAX_OBS and float(n) ** 3 < 1.5 * n_cells * float(n_missing) ** 2


def _gather(mats: Sequence[np.ndarray], rows: Sequence[np.ndarray],
            cols: Sequence[np.ndarray]) -> np.ndarray:
    """``Π_k mats[k][rows_k][:, cols_k]``: a block of ``⊗mats`` between grid cells."""
    out = np.ones((rows[0].size, cols[0].size))
    for M, r, c in zip(mats, rows, cols, strict=True):
        out *= M[np.ix_(r, c)]
    return out


def dense_lml(Ks: Sequence[np.ndarray], dKs: Sequence[np.ndarray], d_obs: np.ndarray,
              observed: np.ndarray, y_obs: np.ndarray, eval_gradient: bool,
              posterior: bool) -> tuple[float, np.ndarray, Any, DensePosterior | None]:
    """``(LML, ∂LML/∂θ_kernels, ∂LML/∂noise, posterior or None)`` of the observed values
    ``y_obs`` under ``[⊗K_k]_OO + diag(d_obs)`` (``dKs``: the kernels' gradients, or empty)."""
    cells = np.unravel_index(np.flatnonzero(observed), observed.shape)
    S = _gather(Ks, cells, cells)
    S[np.diag_indices_from(S)] += d_obs
    try:  # SciPy's LAPACK for the factor, the solve and the inverse (one BLAS pool)
        L = scipy.linalg.cholesky(S, lower=True, overwrite_a=True, check_finite=False)
    except np.linalg.LinAlgError:
        raise NotPositiveDefiniteError(
            f"the covariance of the {y_obs.size} observed cells is not positive definite"
        ) from None
    x = scipy.linalg.cho_solve((L, True), y_obs, check_finite=False)
    value = (-0.5 * float(y_obs @ x) - float(np.sum(np.log(np.diagonal(L))))
             - 0.5 * y_obs.size * _LOG_2PI)
    post = None
    if posterior:
        x_hat = np.zeros(observed.size)
        x_hat[observed.ravel()] = x
        post = DensePosterior(tuple(np.eye(n) for n in observed.shape), np.zeros(observed.shape),
                              x_hat.reshape(observed.shape), L, cells)
    if not eval_gradient:
        return value, np.empty(0), None, post
    inv, info = scipy.linalg.lapack.dpotri(L, lower=1)  # S_OO⁻¹ from L: n³/3, lower half
    if info != 0:
        raise NotPositiveDefiniteError(f"the observed covariance is singular (dpotri info {info})")
    W = np.tril(inv, -1)
    W += W.T
    W[np.diag_indices_from(W)] = np.diagonal(inv)
    W = np.outer(x, x) - W  # 2·W
    grads = []
    for k, dK in enumerate(dKs):
        others = [K for j, K in enumerate(Ks) if j != k]
        idx = [c for j, c in enumerate(cells) if j != k]
        M = W * _gather(others, idx, idx) if others else W
        onehot = np.zeros((y_obs.size, Ks[k].shape[0]))
        onehot[np.arange(y_obs.size), cells[k]] = 1.0
        G = 0.5 * (onehot.T @ M @ onehot)
        grads.append(np.einsum("ij,ijp->p", G, dK))
    d_s = 0.5 * float(np.trace(W))
    return value, np.concatenate(grads), d_s, post


def dense_explained(post: DensePosterior, A: Sequence[np.ndarray], grid: bool,
                    cov: bool = False) -> np.ndarray:
    """``‖L⁻¹k_{*O}‖²`` per query point (``(L⁻¹k_{*O})ᵀ(L⁻¹k'_{*O})``, M×M, with ``cov``);
    ``A`` the cross-kernels ``k_k(x*_k, X_k)``: per axis of a query grid (``grid``), or the rows
    of each point."""
    n = post.chol.shape[0]
    shape = tuple(a.shape[0] for a in A) if grid else (A[0].shape[0],)
    M = math.prod(shape)
    out = np.zeros((M, M) if cov else M)
    if M == 0:
        return out if cov else out.reshape(shape)
    B = np.empty((n, M)) if cov else None
    width = max(1, _gp_predict.CHUNK_DOUBLES // max(1, n))
    for l0 in range(0, M, width):
        pts = np.arange(l0, min(M, l0 + width))
        sel = np.unravel_index(pts, shape) if grid else (pts,) * len(A)
        Kc = _gather(A, sel, post.cells)
        Bc = scipy.linalg.solve_triangular(post.chol, Kc.T, lower=True)
        if B is not None:
            B[:, pts] = Bc
        else:
            out[pts] = np.einsum("ij,ij->j", Bc, Bc)
    if B is not None:
        return B.T @ B
    return out.reshape(shape)
