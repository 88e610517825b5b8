r"""The Van Loan–Pitsianis rearrangement and the factor shapes it is defined by.

For ``M`` of shape ``(m1*m2, n1*n2)`` with blocks ``M_ij`` of shape ``(m2, n2)``, the
rearrangement ``R(M)`` of shape ``(m1*n1, m2*n2)`` has row ``i*n1 + j`` equal to the row-major
``vec(M_ij)``, so ``R(A ⊗ B) = vec(A) vec(B)^T``. For ``d`` factors the same permutation gives
the d-way tensor ``T[(i1, j1), ..., (id, jd)] = M[(i1..id), (j1..jd)]``
(:func:`rearrange_tensor`), with ``T(A1 ⊗ ... ⊗ Ad) = vec(A1) ∘ ... ∘ vec(Ad)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, overload

import numpy as np
import scipy.sparse as sp

from .._checks import non_finite_error
from .._typing import ArrayLike, ShapesLike

__all__ = ["as_matrix", "parse_shapes", "rearrange", "rearrange_tensor", "unrearrange"]


def parse_shapes(shapes: Any, *, d: int | None = None, name: str = "shapes"
                 ) -> tuple[tuple[int, int], ...]:
    """``((m1, n1), (m2, n2), ...)`` from ``shapes``; an int ``m`` is a square ``(m, m)`` block."""
    want = "((m1, n1), (m2, n2))" if d == 2 else "((m1, n1), (m2, n2), ...)"
    if isinstance(shapes, (str, bytes)) or not hasattr(shapes, "__len__"):
        raise TypeError(f"`{name}` must be a sequence like {want}, got {shapes!r}")
    entries = list(shapes)
    if d is not None and len(entries) != d:
        raise ValueError(f"`{name}` must have {d} entries {want}, got {len(entries)}: {shapes!r}")
    if len(entries) < 2:
        raise ValueError(f"`{name}` must have at least 2 entries {want}, got {shapes!r}")
    return tuple(_parse_pair(s, f"{name}[{k}]") for k, s in enumerate(entries))


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _parse_pair(s: Any, name: str) -> tuple[int, int]:
    """One entry of ``shapes``: an int ``m`` (a square block) or a pair ``(m, n)``."""
    if isinstance(s, (bool, np.bool_)):
        raise TypeError(f"`{name}` must be an int or an (m, n) pair, got {s!r}")
    if isinstance(s, (int, np.integer)):
        pair: tuple[Any, ...] = (s, s)
    elif isinstance(s, (str, bytes)) or not hasattr(s, "__len__"):
        raise TypeError(f"`{name}` must be an int or an (m, n) pair, got {s!r}")
    else:
        pair = tuple(s)
    if len(pair) != 2 or not all(_is_int(v) for v in pair):
        raise TypeError(f"`{name}` must be an int or a pair of ints (m, n), got {s!r}")
    if min(pair) < 1:
        raise ValueError(f"`{name}` must be positive, got {tuple(int(v) for v in pair)}")
    return int(pair[0]), int(pair[1])


def matrix_shape(shapes: Sequence[tuple[int, int]]) -> tuple[int, int]:
    """``(m1*...*md, n1*...*nd)``: the shape of ``M`` for these factor shapes."""
    return math.prod(m for m, _ in shapes), math.prod(n for _, n in shapes)


def as_matrix(M: Any, name: str) -> np.ndarray:
    """A finite real or complex 2-D float array (the user's array is not modified)."""
    if M is None:
        raise TypeError(f"`{name}` must be an array, got None")
    try:
        arr = np.asarray(M)
    except Exception as exc:
        raise TypeError(f"`{name}` could not be converted to an array: {exc}") from exc
    if arr.dtype.kind == "c":
        arr = arr.astype(np.complex128 if arr.dtype != np.complex64 else np.complex64, copy=False)
    elif arr.dtype.kind in "biu":
        arr = arr.astype(np.float64)
    elif arr.dtype.kind != "f":
        raise TypeError(f"`{name}` must be a real or complex numeric array, got dtype {arr.dtype}")
    if arr.ndim != 2:
        raise ValueError(f"`{name}` must be 2-D, got shape {arr.shape}")
    if arr.size and not np.isfinite(arr).all():
        bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
        raise non_finite_error(name, bad)
    return arr


def check_matrix_shape(got: tuple[int, ...], shapes: Sequence[tuple[int, int]],
                       name: str = "M") -> None:
    """``ValueError`` unless ``got`` is the shape of ``M`` for the factor ``shapes``."""
    want = matrix_shape(shapes)
    if tuple(got) != want:
        raise ValueError(f"`{name}` must have shape {want} for shapes {tuple(shapes)}, "
                         f"got {tuple(got)}")


def rearrange_tensor(M: np.ndarray, shapes: Sequence[tuple[int, int]]) -> np.ndarray:
    """The d-way rearrangement: ``T[(i1, j1), ..., (id, jd)] = M[(i1..id), (j1..jd)]``.

    ``T`` has shape ``(m1*n1, ..., md*nd)``; for d = 2 it is ``R(M)``. A copy, cost O(size).
    (Not :func:`kronkit._vec.to_tensor`, which reshapes a vector.)
    """
    d = len(shapes)
    ms = [s[0] for s in shapes]
    ns = [s[1] for s in shapes]
    perm = [ax for k in range(d) for ax in (k, d + k)]
    T = M.reshape(*ms, *ns).transpose(perm)
    return np.ascontiguousarray(T).reshape([m * n for m, n in shapes])


def rearrange_sparse(M: Any, shapes: Sequence[tuple[int, int]]) -> Any:
    """``R(M)`` of a scipy sparse ``M`` as CSR, with the same entries."""
    (m1, n1), (m2, n2) = shapes
    C = sp.coo_matrix(M)
    i, a = np.divmod(C.row.astype(np.int64), m2)
    j, b = np.divmod(C.col.astype(np.int64), n2)
    return sp.csr_matrix((C.data, (i * n1 + j, a * n2 + b)), shape=(m1 * n1, m2 * n2))


@overload
def rearrange(M: np.ndarray | Sequence[Sequence[float]], shapes: ShapesLike) -> np.ndarray: ...
@overload
def rearrange(M: Any, shapes: ShapesLike) -> Any: ...  # a scipy sparse matrix: CSR
def rearrange(M: Any, shapes: ShapesLike) -> Any:
    r"""The Van Loan–Pitsianis rearrangement ``R(M)`` of shape ``(m1*n1, m2*n2)``.

    ``R(M)[i*n1 + j, a*n2 + b] = M[i*m2 + a, j*n2 + b]``: row ``(i, j)`` is the row-major vec
    of block ``M_ij`` (shape ``(m2, n2)``), so ``rearrange(np.kron(A, B), ...)`` equals
    ``np.outer(A.ravel(), B.ravel())``.

    Parameters
    ----------
    M : array_like of shape (m1*m2, n1*n2), or scipy sparse matrix
        Real or complex. A sparse ``M`` gives a sparse (CSR) ``R`` with the same entries.
    shapes : ((m1, n1), (m2, n2))
        Shapes of the two Kronecker factors; an int ``m`` means a square ``(m, m)`` block.

    Returns
    -------
    R : ndarray of shape (m1*n1, m2*n2)
        A new array (a permuted copy); cost O(size of M).

    See Also
    --------
    unrearrange : the inverse; ``unrearrange(rearrange(M, s), s)`` equals ``M`` exactly.
    """
    shp = parse_shapes(shapes, d=2)
    if sp.issparse(M):
        check_matrix_shape(M.shape, shp)
        return rearrange_sparse(M, shp)
    M = as_matrix(M, "M")
    check_matrix_shape(M.shape, shp)
    return rearrange_tensor(M, shp)


def unrearrange(R: ArrayLike, shapes: ShapesLike) -> np.ndarray:
    """Inverse of :func:`rearrange`: ``R`` of shape ``(m1*n1, m2*n2)`` to ``M`` of shape
    ``(m1*m2, n1*n2)``, so that ``unrearrange(np.outer(A.ravel(), B.ravel()), s)`` equals
    ``np.kron(A, B)``. Real or complex; a new array; cost O(size of R).
    """
    (m1, n1), (m2, n2) = parse_shapes(shapes, d=2)
    R = as_matrix(R, "R")
    if R.shape != (m1 * n1, m2 * n2):
        raise ValueError(f"`R` must have shape {(m1 * n1, m2 * n2)} for shapes "
                         f"{((m1, n1), (m2, n2))}, got {R.shape}")
    out = R.reshape(m1, n1, m2, n2).transpose(0, 2, 1, 3)
    return np.ascontiguousarray(out).reshape(m1 * m2, n1 * n2)
