"""The one place the vec / reshape convention lives.

Convention (fixed): ``Kron(A, B)`` means ``np.kron(A, B)``. A vector ``y`` of length
``P = p1 * ... * pd`` is the row-major (C-order) flattening of a tensor of shape
``(p1, ..., pd)``; for two factors, ``np.kron(A, B) @ Y.ravel() == (A @ Y @ B.T).ravel()``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["mode_apply", "to_tensor", "to_vec", "unfold"]


def to_tensor(y: np.ndarray, dims: Sequence[int]) -> np.ndarray:
    """View ``y`` of shape ``(..., P)`` as ``(..., p1, ..., pd)`` (row-major)."""
    return y.reshape(*y.shape[:-1], *dims)


def to_vec(t: np.ndarray, d: int) -> np.ndarray:
    """Flatten the last ``d`` axes of ``t`` row-major: ``(..., p1, ..., pd) -> (..., P)``."""
    lead = t.shape[: t.ndim - d]
    return t.reshape(*lead, int(np.prod(t.shape[t.ndim - d :], dtype=np.int64)))


def unfold(t: np.ndarray, k: int, d: int) -> np.ndarray:
    """Mode-``k`` unfolding of the last ``d`` axes, batch axes folded into the columns.

    ``t`` has shape ``(..., p1, ..., pd)``; the result has shape ``(p_k, prod(rest))`` with the
    batch axes included among the columns, so ``unfold(U) @ unfold(V).T`` sums over the batch.
    """
    axis = t.ndim - d + k
    return np.moveaxis(t, axis, 0).reshape(t.shape[axis], -1)


def mode_apply(t: np.ndarray, M: np.ndarray, k: int, d: int) -> np.ndarray:
    """Mode-``k`` product: multiply axis ``k`` (of the last ``d``) of ``t`` by ``M``.

    ``t`` of shape ``(..., n1, ..., nk, ..., nd)`` and ``M`` of shape ``(mk, nk)`` give
    ``(..., n1, ..., mk, ..., nd)``. One GEMM (or one batched GEMM) per call.
    """
    lead = t.shape[: t.ndim - d]
    dims = t.shape[t.ndim - d :]
    before = int(np.prod(lead, dtype=np.int64)) * int(np.prod(dims[:k], dtype=np.int64))
    after = int(np.prod(dims[k + 1 :], dtype=np.int64))
    nk = dims[k]
    mk = M.shape[0]
    if after == 1:
        out = t.reshape(before, nk) @ M.T
    elif before == 1:
        out = M @ t.reshape(nk, after)
    else:
        out = np.matmul(M, t.reshape(before, nk, after))
    return out.reshape(*lead, *dims[:k], mk, *dims[k + 1 :])
