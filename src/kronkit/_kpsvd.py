"""Kronecker-product SVD (Van Loan–Pitsianis) and nearest-Kronecker approximation.

Initial version: rearrangement and the dense KPSVD; extended by the KPSVD issue.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from ._checks import as_float
from ._kron import Kron

__all__ = ["KPSVDResult", "kpsvd", "rearrange", "unrearrange"]


def _parse_shapes(shapes: Any) -> tuple[tuple[int, int], tuple[int, int]]:
    try:
        s1, s2 = shapes
    except (TypeError, ValueError) as exc:
        raise ValueError(f"`shapes` must be ((m1, n1), (m2, n2)), got {shapes!r}") from exc
    out = []
    for s in (s1, s2):
        if isinstance(s, (int, np.integer)):
            s = (int(s), int(s))
        s = tuple(int(v) for v in s)
        if len(s) != 2 or min(s) < 1:
            raise ValueError(f"`shapes` entries must be positive ints or (m, n) pairs, got {shapes!r}")
        out.append(s)
    return out[0], out[1]


def rearrange(M: Any, shapes: Any) -> np.ndarray:
    """Van Loan–Pitsianis rearrangement R(M) of shape (m1·n1, m2·n2).

    Row ``i*n1 + j`` of R(M) is the row-major ``vec`` of block ``M_ij`` (of shape (m2, n2)),
    so ``R(np.kron(A, B)) == np.outer(A.ravel(), B.ravel())``.
    """
    (m1, n1), (m2, n2) = _parse_shapes(shapes)
    M = np.asarray(M)
    if M.shape != (m1 * m2, n1 * n2):
        raise ValueError(f"`M` must have shape {(m1 * m2, n1 * n2)} for shapes {shapes!r}, got {M.shape}")
    return M.reshape(m1, m2, n1, n2).transpose(0, 2, 1, 3).reshape(m1 * n1, m2 * n2)


def unrearrange(R: Any, shapes: Any) -> np.ndarray:
    """Inverse of :func:`rearrange`: R of shape (m1·n1, m2·n2) back to M of shape (m1·m2, n1·n2)."""
    (m1, n1), (m2, n2) = _parse_shapes(shapes)
    R = np.asarray(R)
    if R.shape != (m1 * n1, m2 * n2):
        raise ValueError(f"`R` must have shape {(m1 * n1, m2 * n2)} for shapes {shapes!r}, got {R.shape}")
    return R.reshape(m1, n1, m2, n2).transpose(0, 2, 1, 3).reshape(m1 * m2, n1 * n2)


class KPSVDResult(NamedTuple):
    """``M ≈ Σ_k s[k] · kron(A[k], B[k])`` with orthonormal ``vec(A[k])`` and ``vec(B[k])``."""

    s: np.ndarray
    A: np.ndarray
    B: np.ndarray
    residual: float

    def term(self, k: int) -> Kron:
        return Kron(self.s[k] * self.A[k], self.B[k])

    def to_dense(self) -> np.ndarray:
        return sum(self.s[k] * np.kron(self.A[k], self.B[k]) for k in range(len(self.s)))


def kpsvd(M: Any, shapes: Any, rank: int | None = None) -> KPSVDResult:
    """Kronecker-product SVD of a dense real matrix via the SVD of its rearrangement."""
    (m1, n1), (m2, n2) = _parse_shapes(shapes)
    M = as_float(M, "M", ndim=2)
    R = rearrange(M, shapes)
    U, s, Vt = np.linalg.svd(R, full_matrices=False)
    tol = max(R.shape) * np.finfo(R.dtype).eps * (s[0] if s.size else 0.0)
    r_exact = int(np.count_nonzero(s > tol))
    r = r_exact if rank is None else min(int(rank), s.size)
    residual = float(np.sqrt(np.sum(s[r:] ** 2)))
    A = U[:, :r].T.reshape(r, m1, n1)
    B = Vt[:r].reshape(r, m2, n2)
    return KPSVDResult(s[:r].copy(), A, B, residual)
