"""Orthonormal bases of the linear factor structures (symmetric, skew, Toeplitz, banded, ...).

Each basis is a real ``(m*n, d)`` matrix with orthonormal columns, in the row-major ``vec``
order of an ``m×n`` factor, held as scipy CSR (the named structures are 0/±c patterns). A
structure imposed on the factors is the subspace ``vec(A) = Q c``; the KPSVD is then the SVD of
``Q_A^T R(M) Q_B`` (see :mod:`kronkit._kpsvd.structure`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import scipy.sparse as sp

__all__ = ["linear_basis", "skew_basis", "symmetric_basis"]

_SQRT_HALF = math.sqrt(0.5)


def _sparse_basis(size: int, rows: np.ndarray, cols: np.ndarray, w: np.ndarray, d: int):
    return sp.csr_matrix((w.astype(float), (rows, cols)), shape=(size, d))


def symmetric_basis(m: int):
    """Orthonormal basis of symmetric m×m matrices (dimension m(m+1)/2)."""
    i, j = np.triu_indices(m)
    cols = np.arange(i.size)
    off = i != j
    rows = np.concatenate([i * m + j, (j * m + i)[off]])
    c = np.concatenate([cols, cols[off]])
    w = np.concatenate([np.where(off, _SQRT_HALF, 1.0), np.full(int(off.sum()), _SQRT_HALF)])
    return _sparse_basis(m * m, rows, c, w, i.size)


def skew_basis(m: int):
    """Orthonormal basis of skew-symmetric m×m matrices (dimension m(m-1)/2)."""
    i, j = np.triu_indices(m, 1)
    cols = np.arange(i.size)
    rows = np.concatenate([i * m + j, j * m + i])
    w = np.concatenate([np.full(i.size, _SQRT_HALF), np.full(i.size, -_SQRT_HALF)])
    return _sparse_basis(m * m, rows, np.concatenate([cols, cols]), w, i.size)


def _grouped_basis(m: int, n: int, key: np.ndarray, keep: np.ndarray | None = None):
    """Basis whose columns are the normalised indicators of the groups ``key`` (m×n array)."""
    flat = key.ravel()
    idx = np.arange(m * n)
    if keep is not None:
        idx = idx[keep.ravel()]
        flat = flat[keep.ravel()]
    uniq, col = np.unique(flat, return_inverse=True)
    counts = np.bincount(col)
    return _sparse_basis(m * n, idx, col, 1.0 / np.sqrt(counts[col]), uniq.size)


_NAMES = ("'general', 'symmetric', 'skew', 'toeplitz', 'hankel', 'circulant', 'diagonal', "
          "'upper', 'lower'")


def _named_basis(spec: str, m: int, n: int, name: str):
    """The basis of a structure given by name."""
    if spec in ("symmetric", "skew", "circulant") and m != n:
        raise ValueError(f"`{name}`={spec!r} needs a square factor, got shape {(m, n)}")
    if spec == "skew" and m < 2:
        raise ValueError(f"`{name}`='skew' needs a factor of size >= 2, got {(m, n)}")
    if spec == "symmetric":
        return symmetric_basis(m)
    if spec == "skew":
        return skew_basis(m)
    I, J = np.meshgrid(np.arange(m), np.arange(n), indexing="ij")
    grouped = {  # name: (group key, kept entries)
        "toeplitz": (J - I, None), "hankel": (I + J, None), "circulant": ((J - I) % m, None),
        "diagonal": (I * n + J, I == J), "upper": (I * n + J, J >= I),
        "lower": (I * n + J, J <= I),
    }
    if spec not in grouped:
        raise ValueError(
            f"`{name}` must be one of {_NAMES}, ('banded', lower, upper) or a basis "
            f"array of shape ({m * n}, d), got {spec!r}"
        )
    key, keep = grouped[spec]
    return _grouped_basis(m, n, key, keep=keep)


def _banded_basis(spec: tuple, m: int, n: int, name: str):
    lo, up = spec[1], spec[2]
    if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 0
               for v in (lo, up)):
        raise ValueError(f"`{name}`=('banded', lower, upper) needs ints >= 0, got {spec!r}")
    I, J = np.meshgrid(np.arange(m), np.arange(n), indexing="ij")
    keep = (J - I >= -int(lo)) & (J - I <= int(up))
    return _grouped_basis(m, n, I * n + J, keep=keep)


def _array_basis(spec: Any, m: int, n: int, name: str) -> np.ndarray:
    """A user's basis array, orthonormalised (QR); its columns must be independent."""
    Q = spec.toarray() if sp.issparse(spec) else spec
    if Q.ndim != 2 or Q.shape[0] != m * n or Q.shape[1] < 1:
        raise ValueError(f"`{name}` basis must have shape ({m * n}, d) with d >= 1, "
                         f"got {Q.shape}")
    if Q.dtype.kind not in "biuf":
        raise TypeError(f"`{name}` basis must be real, got dtype {Q.dtype}")
    Q = np.asarray(Q, dtype=float)
    if not np.isfinite(Q).all():
        raise ValueError(f"`{name}` basis contains NaN or Inf")
    Qo, Rr = np.linalg.qr(Q)
    dg = np.abs(np.diagonal(Rr))
    if dg.size == 0 or dg.min() <= 1e-10 * max(dg.max(), np.finfo(float).tiny):
        raise ValueError(f"`{name}` basis columns must be linearly independent "
                         f"(rank < {Q.shape[1]})")
    return Qo


def linear_basis(spec: Any, m: int, n: int, name: str):
    """The basis of one factor's linear structure, or ``None`` for no constraint."""
    if spec is None or (isinstance(spec, str) and spec == "general"):
        return None
    if isinstance(spec, str):
        return _named_basis(spec, m, n, name)
    if isinstance(spec, tuple) and len(spec) == 3 and spec[0] == "banded":
        return _banded_basis(spec, m, n, name)
    if isinstance(spec, np.ndarray) or sp.issparse(spec):
        return _array_basis(spec, m, n, name)
    raise TypeError(f"`{name}` must be a structure name, ('banded', lower, upper) or a basis "
                    f"array, got {type(spec).__name__}")
