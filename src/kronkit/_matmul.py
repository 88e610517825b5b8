"""NumPy's semantics for the operators' ``@``, ``solve`` and ``np.asarray``: one home for
:class:`~kronkit.Kron` and :class:`~kronkit.SumOfKron`.

The split, said once: **linear algebra acts on columns, like NumPy; statistics take
observations as rows.**

* ``op @ x`` is ``op.to_dense() @ x``: a 1-D ``x`` is one vector, a 2-D ``x`` of shape
  ``(N, k)`` is ``k`` column vectors (a stack ``(..., N, k)`` is a stack of matrices, as
  ``np.matmul`` broadcasts); ``x @ op`` multiplies the rows of ``x``; ``op.solve(b)`` is
  ``np.linalg.solve(op.to_dense(), b)``; ``np.asarray(op)`` is the dense matrix (size guarded).
* The row-wise batch methods ``matvec`` / ``rmatvec`` / ``solve_rows`` / ``inv_quad`` take a
  batch ``(..., N)`` of vectors as rows, as the statistical functions (``log_quad``,
  ``logpdf``, the estimators' ``fit``) take observations ``(N, P)``, like scipy.stats and
  scikit-learn.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ._checks import as_float, check_dense_size

__all__ = ["as_operand", "dense_array", "linear_operator", "on_columns"]


def as_operand(x: Any, name: str, n: int, what: str, shape: tuple[int, int],
               dtype: Any) -> np.ndarray:
    """``x`` as a float array of shape ``(n,)`` or ``(..., n, k)`` (a matmul right operand), or
    an error naming ``name``; ``what`` is the expression, ``shape`` the operator's shape."""
    arr = as_float(x, name, min_ndim=1)
    axis = -1 if arr.ndim == 1 else -2
    if arr.ndim == 1 and arr.shape[0] != n:
        raise ValueError(f"`{name}` in `{what}` must have length {n} (the operator is "
                         f"{shape[0]}×{shape[1]}), got shape {arr.shape}")
    if arr.shape[axis] != n:
        raise ValueError(
            f"`{name}` in `{what}` must have shape ({n},) or ({n}, k) (or a stack (..., {n}, k)): "
            f"the operator is {shape[0]}×{shape[1]} and acts on columns, like NumPy; got shape "
            f"{arr.shape}. For observations as rows (N, {n}) use the row-wise methods "
            "(`matvec`, `rmatvec`, `solve_rows`)"
        )
    return arr.astype(np.result_type(arr.dtype, dtype), copy=False)


def on_columns(rows: Callable[[np.ndarray], np.ndarray], arr: np.ndarray) -> np.ndarray:
    """Apply ``rows`` (which acts on the vectors along the last axis) to a 1-D ``arr`` or to the
    columns of each matrix of ``arr`` of shape ``(..., n, k)``; a C-ordered result."""
    if arr.ndim == 1:
        return rows(arr)
    return np.ascontiguousarray(np.swapaxes(rows(np.swapaxes(arr, -1, -2)), -1, -2))


def dense_array(op: Any, name: str, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
    """``op.__array__(dtype, copy)`` (NumPy 2 protocol): the dense matrix under the size guard
    of ``to_dense`` (:data:`kronkit.DENSE_MAX_BYTES`); ``name`` is the class name."""
    if copy is False:
        raise ValueError(
            f"`np.asarray({name}, copy=False)`: a {name} holds only its factors, so its dense "
            "matrix is always a new array (use copy=None or copy=True)"
        )
    check_dense_size(op.shape, op.dtype,
                     f"`np.asarray({name})` (its dense matrix; `{name}.to_dense(max_bytes=...)` "
                     "allows a larger one)")
    out = op.to_dense(max_bytes=np.iinfo(np.int64).max)  # checked just above
    return out if dtype is None else out.astype(dtype, copy=False)


def linear_operator(op: Any, rows: Callable[[np.ndarray], np.ndarray],
                    rows_t: Callable[[np.ndarray], np.ndarray]) -> Any:
    """A ``scipy.sparse.linalg.LinearOperator`` of ``op`` (columns, as ``@``) from its row-wise
    products with ``op`` and with ``op.T``."""
    from scipy.sparse.linalg import LinearOperator

    def fwd(X: Any) -> np.ndarray:
        return on_columns(rows, np.asarray(X))

    def adj(X: Any) -> np.ndarray:
        return on_columns(rows_t, np.asarray(X))

    return LinearOperator(op.shape, matvec=fwd, rmatvec=adj, matmat=fwd, rmatmat=adj,
                          dtype=op.dtype)
