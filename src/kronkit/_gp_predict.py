r"""The posterior of :class:`kronkit.KroneckerGP` at new points, in the eigenbasis of the grid.

With ``S = K_1⊗…⊗K_d + s·I = (⊗V_k) diag(λ) (⊗V_k)ᵀ`` (``V_k`` orthogonal, ``λ`` a grid-shaped
tensor) and the cross-kernels ``k_k(x*, X_k)`` of a point ``x*``, let ``a_k = V_kᵀ k_k(X_k, x*_k)``
(length ``n_k``); the cross-covariance of ``x*`` with the grid is ``⊗a_k`` in the eigenbasis, so

    mean(x*) = Σ_j (Π_k a_k[j_k]) · α̂_j,         α̂ = (⊗V_k)ᵀ y / λ
    var(x*)  = Π_k k_k(x*_k, x*_k) − Σ_j (Π_k a_k[j_k])² / λ_j
    cov(x*, x') = Π_k k_k(x*_k, x'_k) − Σ_j Π_k a_k[j_k] a'_k[j_k] / λ_j

On a grid of new points the sums are mode products with the matrices ``A_k`` (rows ``a_kᵀ``) and
their elementwise squares, O(Σ_k (Π_{j≤k} m_j)(Π_{j≥k} n_j)); at scattered points they are
contractions of the ``λ``-tensor with the rows, batched in chunks of points so that memory stays
below :data:`CHUNK_DOUBLES` doubles — never a P×M cross-covariance.

On an incomplete grid (:mod:`kronkit._gp_cells`) the embedded ``S_OO⁻¹`` is
``S̄⁻¹ − Σ_j c_j y_j y_jᵀ`` with ``y_j`` the columns of ``Z C`` (``Z = S̄⁻¹E_U``,
``H⁻¹ = C diag(c) Cᵀ``), whose eigen coordinates come in chunks from
:func:`kronkit._cells.rank_sum`; the variance gains ``Σ_j c_j (k_*ᵀy_j)²`` and the covariance
``Σ_j c_j (k_*ᵀy_j)(k'_*ᵀy_j)`` (:func:`lowrank_explained`), never a P×P or P×M array.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ._cells import CellForm, rank_sum
from ._vec import apply_modes

__all__ = ["CHUNK_DOUBLES", "grid_mean_var", "grid_points", "lowrank_explained", "rows_contract",
           "tensor_rows_cov"]

#: Scratch memory of the chunked contractions, in float64 entries (32 MiB).
CHUNK_DOUBLES = 4 * 1024 * 1024


def rows_contract(T: np.ndarray, rows: Sequence[np.ndarray]) -> np.ndarray:
    r"""``out[b, l] = Σ_j T[b, j] Π_k rows[k][l, j_k]`` for a batch of grid tensors.

    Parameters
    ----------
    T : ndarray of shape (B, n_1, ..., n_d)
    rows : sequence of d arrays, ``rows[k]`` of shape (L, n_k)

    Returns
    -------
    ndarray of shape (B, L)

    Cost O(B·L·P) in chunks of ``L`` holding at most :data:`CHUNK_DOUBLES` entries of scratch.
    Dense equivalent: ``T.reshape(B, P) @ np.stack([reduce(np.kron, r) for r in zip(*rows)]).T``.
    """
    B, dims = T.shape[0], T.shape[1:]
    d = len(dims)
    L = rows[0].shape[0]
    out = np.empty((B, L))
    if B == 0 or L == 0:
        return out
    per_point = max(1, B * math.prod(dims[:-1]))
    chunk = max(1, CHUNK_DOUBLES // per_point)
    for start in range(0, L, chunk):
        sl = slice(start, min(L, start + chunk))
        X = np.tensordot(T, rows[d - 1][sl], axes=([d], [1]))  # (B, n_1..n_{d-1}, c)
        for k in range(d - 2, -1, -1):
            X = np.einsum("b...jl,lj->b...l", X, rows[k][sl])
        out[:, sl] = X
    return out


def grid_points(axes: Sequence[np.ndarray]) -> list[np.ndarray]:
    """The per-axis coordinates of every point of the grid, row-major: ``d`` arrays of shape
    ``(M, d_k)``, ``M = Π m_k`` (the first axis varies slowest, like ``Y.ravel()``)."""
    sizes = [a.shape[0] for a in axes]
    idx = np.indices(sizes).reshape(len(sizes), -1)
    return [a[i] for a, i in zip(axes, idx, strict=True)]


def tensor_rows_cov(inv_lam: np.ndarray, rows: Sequence[np.ndarray]) -> np.ndarray:
    r"""``Q[i, l] = Σ_j Π_k rows[k][i, j_k] rows[k][l, j_k] · inv_lam[j]`` (M×M), the part of
    the posterior covariance explained by the data, O(M²·P) in chunks of rows ``i``."""
    M = rows[0].shape[0]
    dims = inv_lam.shape
    out = np.empty((M, M))
    if M == 0:
        return out
    P = math.prod(dims)
    chunk = max(1, min(M, CHUNK_DOUBLES // max(P, M * math.prod(dims[:-1]))))
    for start in range(0, M, chunk):
        sl = slice(start, min(M, start + chunk))
        T = np.broadcast_to(inv_lam, (sl.stop - sl.start, *dims)).copy()
        for k, r in enumerate(rows):
            shape = [r[sl].shape[0]] + [1] * len(dims)
            shape[k + 1] = dims[k]
            T *= r[sl].reshape(shape)
        out[sl] = rows_contract(T, rows)
    return 0.5 * (out + out.T)


def grid_mean_var(alpha_hat: np.ndarray, inv_lam: np.ndarray,
                  A: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``(⊗A_k) α̂`` and explained variance ``(⊗A_k∘A_k)(1/λ)`` on a grid of new points,
    both of shape ``(m_1, ..., m_d)`` (mode products)."""
    mean = apply_modes(alpha_hat, list(A))
    explained = apply_modes(inv_lam, [a * a for a in A])
    return mean, explained


def lowrank_explained(form: CellForm, A: Sequence[np.ndarray], grid: bool,
                      cov: bool = False) -> np.ndarray:
    r"""``Σ_j c_j (k_*ᵀy_j)²`` at the query points (or ``Σ_j c_j (k_*ᵀy_j)(k'_*ᵀy_j)``, M×M,
    with ``cov``): the variance that the missing and corrected cells give back.

    ``A`` are the cross-kernel rows in the eigenbasis (``A_k = k_k(x*_k, X_k) V_k``); ``grid``:
    the query points are the grid ``A_1 × … × A_d`` (mode products, result of shape
    ``(m_1, …, m_d)``), else ``A_k[l]`` are the rows of point ``l`` (result ``(M,)``).
    The columns ``j`` of ``Z C`` come in chunks of at most :data:`CHUNK_DOUBLES` entries.
    """
    E, k = form.E, form.k
    dims = E.dims
    M = math.prod(a.shape[0] for a in A) if grid else A[0].shape[0]
    out = np.zeros((M, M) if cov else M)
    if k == 0 or M == 0:
        return out if cov or not grid else out.reshape(tuple(a.shape[0] for a in A))
    width = max(1, CHUNK_DOUBLES // max(math.prod(dims), M))
    for j0 in range(0, k, width):
        J = slice(j0, min(k, j0 + width))
        Y = rank_sum(E, form.R, form.C[:, J]).reshape(-1, *dims)
        B = (apply_modes(Y, list(A)) if grid else rows_contract(Y, A)).reshape(Y.shape[0], M)
        cw = form.c[J]
        if cov:
            out += B.T @ (cw[:, None] * B)
        else:
            out += cw @ (B * B)
    if cov:
        return 0.5 * (out + out.T)
    return out.reshape(tuple(a.shape[0] for a in A)) if grid else out
