"""The one place the vec / reshape convention lives, for every array namespace.

Convention (fixed): ``Kron(A, B)`` means ``np.kron(A, B)``. A vector ``y`` of length
``P = p1 * ... * pd`` is the row-major (C-order) flattening of a tensor of shape
``(p1, ..., pd)``; for two factors, ``np.kron(A, B) @ Y.ravel() == (A @ Y @ B.T).ravel()``.

Every function here works unchanged on NumPy arrays, JAX arrays and PyTorch tensors: it uses
only what the three share (``.shape``, ``.ndim``, ``.reshape``, ``.swapaxes``, ``.T`` of a
2-D array and ``@``), so there is no dispatch and no per-call cost on NumPy's hot path.
JAX traces them and PyTorch's autograd records them like any other array code.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["along_mode", "apply_modes", "d_apply_modes", "mode_apply", "mode_split", "to_tensor",
           "to_vec", "unfold"]


def to_tensor(y: Any, dims: Sequence[int]) -> Any:
    """View ``y`` of shape ``(..., P)`` as ``(..., p1, ..., pd)`` (row-major)."""
    return y.reshape(*y.shape[:-1], *dims)


def to_vec(t: Any, d: int) -> Any:
    """Flatten the last ``d`` axes of ``t`` row-major: ``(..., p1, ..., pd) -> (..., P)``."""
    lead = t.shape[: t.ndim - d]
    return t.reshape(*lead, math.prod(t.shape[t.ndim - d :]))


def mode_split(shape: Sequence[int], k: int, d: int) -> tuple[int, int, int]:
    """``(before, n_k, after)``: the sizes of the axes before mode ``k`` (batch axes included),
    of mode ``k`` itself, and after it, for a tensor of ``shape`` whose last ``d`` axes are the
    modes. ``t.reshape(before, n_k, after)`` exposes mode ``k`` as the middle axis."""
    axis = len(shape) - d + k
    return math.prod(shape[:axis]), shape[axis], math.prod(shape[axis + 1 :])


def unfold(t: Any, k: int, d: int) -> Any:
    """Mode-``k`` unfolding of the last ``d`` axes, batch axes folded into the columns.

    ``t`` has shape ``(..., p1, ..., pd)``; the result has shape ``(p_k, prod(rest))`` with the
    batch axes included among the columns, so ``unfold(U) @ unfold(V).T`` sums over the batch.
    """
    before, nk, after = mode_split(t.shape, k, d)
    if before == 1:
        return t.reshape(nk, after)
    return t.reshape(before, nk, after).swapaxes(0, 1).reshape(nk, before * after)


def mode_apply(t: Any, M: Any, k: int, d: int) -> Any:
    """Mode-``k`` product: multiply axis ``k`` (of the last ``d``) of ``t`` by ``M``.

    ``t`` of shape ``(..., n1, ..., nk, ..., nd)`` and ``M`` of shape ``(mk, nk)`` give
    ``(..., n1, ..., mk, ..., nd)``. One GEMM (or one batched GEMM) per call.
    """
    shape = t.shape
    axis = t.ndim - d + k
    before, nk, after = mode_split(shape, k, d)
    if after == 1:
        out = t.reshape(before, nk) @ M.T
    elif before == 1:
        out = M @ t.reshape(nk, after)
    else:
        out = M @ t.reshape(before, nk, after)
    return out.reshape(*shape[:axis], M.shape[0], *shape[axis + 1 :])


def apply_modes(t: Any, mats: Sequence[Any], skip: int | None = None) -> Any:
    """``t ×_1 M1 ×_2 ... ×_d Md``, i.e. ``(M1⊗…⊗Md)`` on tensors ``(..., n1, ..., nd)``,
    leaving mode ``skip`` (if given) untouched; O(size(t)·Σ m_k)."""
    d = len(mats)
    for k, M in enumerate(mats):
        if k != skip:
            t = mode_apply(t, M, k, d)
    return t


def d_apply_modes(t: Any, mats: Sequence[Any], dmats: Sequence[Any]) -> Any:
    """``dS t = Σ_k (M1⊗…⊗dM_k⊗…⊗Md) t``, the derivative of ``S t`` in ``S = M1⊗…⊗Md`` along
    ``(dM1, ..., dMd)``, on tensors; O(d·size(t)·Σ m_k).

    The factors ``M_j`` (j ≠ k) are applied first, so everything but the last mode product
    of each term is independent of ``dM_k``; reverse mode turns that last product into one
    contraction (a GEMM) per factor.
    """
    d = len(mats)
    total = None
    for k, dM in enumerate(dmats):
        term = mode_apply(apply_modes(t, mats, skip=k), dM, k, d)
        total = term if total is None else total + term
    return total


def along_mode(t: Any, k: int, d: int, op: Callable[..., Any], *args: Any) -> Any:
    """Apply the matrix map ``op(X, *args)`` to mode ``k`` (of the last ``d`` axes) of ``t``.

    Mode ``k`` is unfolded to the rows of an ``(n_k, rest)`` matrix ``X`` (batch axes
    included in ``rest``); ``op`` must return the same shape (a solve, say), which is folded
    back in place. One multi-right-hand-side call per mode.
    """
    shape = t.shape
    before, nk, after = mode_split(shape, k, d)
    if before == 1:
        out = op(t.reshape(nk, after), *args)
    elif after == 1:
        out = op(t.reshape(before, nk).T, *args).T
    else:
        x = t.reshape(before, nk, after).swapaxes(0, 1).reshape(nk, before * after)
        out = op(x, *args).reshape(nk, before, after).swapaxes(0, 1)
    return out.reshape(shape)
