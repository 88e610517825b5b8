"""Conversions between :class:`kronkit.KronNormal` / :class:`kronkit.KronT` and scipy.stats.

``scipy.stats.matrix_normal(mean=M, rowcov=U, colcov=V)`` is the law of a (p, q) matrix ``X``
with ``vec(X) ~ N(vec M, V⊗U)`` in SciPy's column-stacking ``vec``; in kronkit's row-major
convention (``x = X.ravel()``) that is ``x ~ N(M.ravel(), U⊗V)``: ``KronNormal(M, [U, V])``.
(Checked against ``matrix_normal.logpdf`` and the covariance of its ``rvs`` in the tests.)
``scipy.stats.multivariate_t(loc, shape, df)`` is :class:`kronkit.KronT` with a dense
``shape = np.kron(A1, ..., Ad)`` (or the dense :class:`kronkit.SumOfKron`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._checks import check_dense_size
from ._kron import Kron
from ._sum_kron import SumOfKron

__all__ = ["matrix_normal_parts", "to_matrix_normal", "to_multivariate_t"]


def matrix_normal_parts(mn: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(M, U, V)`` of a frozen ``scipy.stats.matrix_normal``, or TypeError naming ``mn``."""
    parts = [getattr(mn, name, None) for name in ("mean", "rowcov", "colcov")]
    if any(x is None for x in parts) or callable(parts[0]):
        raise TypeError(
            "`mn` must be a frozen scipy.stats.matrix_normal(mean, rowcov, colcov) (with "
            f"attributes mean, rowcov, colcov), got {type(mn).__name__}")
    M, U, V = (np.array(x, dtype=np.float64) for x in parts)
    return M, U, V


def to_matrix_normal(loc: np.ndarray, scale: Kron | SumOfKron) -> Any:
    """``scipy.stats.matrix_normal(loc.reshape(p, q), A, B)`` for a two-factor scale ``A⊗B``."""
    from scipy.stats import matrix_normal

    if not isinstance(scale, Kron):
        raise ValueError(
            "to_matrix_normal needs a Kronecker product scale A⊗B (row and column covariances), "
            f"got {scale!r}")
    if scale.n_factors != 2:
        raise ValueError(
            "to_matrix_normal needs a scale with two factors (A, B), got "
            f"{scale.n_factors} (factor sizes {scale.col_dims}); a matrix normal has one row "
            "and one column covariance")
    A, B = scale.factors
    return matrix_normal(mean=np.array(loc).reshape(scale.col_dims), rowcov=np.array(A),
                         colcov=np.array(B))


def to_multivariate_t(loc: np.ndarray, scale: Kron | SumOfKron, df: float) -> Any:
    """``scipy.stats.multivariate_t(loc, S.to_dense(), df)`` (dense P×P shape)."""
    from scipy.stats import multivariate_t

    P = scale.shape[0]
    check_dense_size((P, P), np.float64, "to_multivariate_t (scipy needs the dense shape matrix)")
    return multivariate_t(loc=np.array(loc), shape=scale.to_dense(), df=df)
