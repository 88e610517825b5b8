"""Cholesky factors of the iterates of the separable fits, taken on their correlation matrices.

Every iterate ``A`` (p×p) or ``B`` (q×q) of the flip-flop and ECME fits is factored here, with
a clear error (naming the factor and the iteration) when it is not positive definite or is
numerically singular. Factoring the correlation matrix ``D^-½ M D^-½`` rather than ``M``
makes the factorisation, its condition check and everything derived from it equivariant
under a diagonal rescaling of ``M`` (the units of the rows or columns of the data).
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import numpy as np

from .._errors import NotPositiveDefiniteError, SingularFactorError

__all__ = [
    "RCOND_MIN",
    "SIDES",
    "IterateFactor",
    "factor_iterate",
    "inv_lower",
    "inverse",
    "logdet",
]

#: An iterate whose Cholesky factor has reciprocal condition number below this is reported
#: as numerically singular (rather than carried on towards NaN).
RCOND_MIN = 1e3 * float(np.finfo(np.float64).eps)
#: The names of the two factors in messages: ``A`` (side 0) and ``B`` (side 1).
SIDES = ("row", "column")


@functools.lru_cache(maxsize=1)
def _lapack() -> tuple[Any, Any, Any]:
    """LAPACK ``potrf``, ``pocon``, ``trtri`` for float64 (looked up once)."""
    from scipy.linalg.lapack import get_lapack_funcs

    return get_lapack_funcs(("potrf", "pocon", "trtri"), (np.eye(1),))


class IterateFactor(NamedTuple):
    """Cholesky factor of an iterate, computed on its correlation matrix.

    ``M = D^½ C D^½`` with ``D = diag(M)`` and ``C = Lc Lcᵀ``; ``sd = sqrt(diag(M))``. Factoring
    ``C`` rather than ``M`` makes the factorisation, its condition check and everything derived
    from it equivariant under a diagonal rescaling of ``M`` (the units of the rows or columns of
    the data): a factor with entries from 1e-14 to 1e14 is as good as its correlation matrix.
    """

    Lc: np.ndarray
    sd: np.ndarray
    rcond: float  # reciprocal 1-norm condition number (estimate) of C


def factor_iterate(M: np.ndarray, side: int, iteration: int) -> IterateFactor:
    """Cholesky of an iterate (on its correlation matrix, see :class:`IterateFactor`) or a clear
    error: ``ValueError`` (non-finite), ``NotPositiveDefiniteError``, ``SingularFactorError``.

    ``side`` is 0 for the row factor ``A``, 1 for the column factor ``B``; ``iteration`` 0 is
    the start. Cost ``O(n³/3)`` for ``M`` of shape (n, n).
    """
    where = f"at iteration {iteration}" if iteration > 0 else "at the start"
    hint = ("the data do not determine a positive definite separable covariance: is some entry "
            "of the observations constant, are entries exactly collinear, or is N too small?")
    if not np.all(np.isfinite(M)):
        raise ValueError(
            f"the {SIDES[side]} covariance has non-finite entries {where}: entries of `X` are too "
            "large or too small to be squared in float64 (rescale `X`)")
    d = np.diagonal(M).copy()
    if not np.all(d > 0):
        raise NotPositiveDefiniteError(
            f"the {SIDES[side]} covariance has a non-positive diagonal entry {where}; " + hint,
            factor=side)
    sd = np.sqrt(d)
    C = M / sd[:, None] / sd[None, :]
    C = 0.5 * (C + C.T)
    potrf, pocon, _ = _lapack()
    Lc, info = potrf(C, lower=1, clean=1, overwrite_a=0)
    if info != 0:
        raise NotPositiveDefiniteError(
            f"the {SIDES[side]} covariance lost positive definiteness {where} (Cholesky failed); "
            + hint, factor=side)
    anorm = float(np.max(np.sum(np.abs(C), axis=0)))
    rcond, _ = pocon(Lc, anorm, uplo="L")
    rcond = float(rcond)
    if not rcond > RCOND_MIN:
        raise SingularFactorError(
            f"the {SIDES[side]} covariance became numerically singular {where} (reciprocal "
            f"condition number of its correlation matrix {rcond:.3g} <= {RCOND_MIN:.3g}); "
            + hint, factor=side, rcond=rcond)
    return IterateFactor(Lc, sd, rcond)


def logdet(f: IterateFactor) -> float:
    """``log det M = 2 Σ log diag(Lc) + Σ log diag(M)``."""
    return float(2.0 * np.sum(np.log(np.diagonal(f.Lc))) + 2.0 * np.sum(np.log(f.sd)))


def inv_lower(f: IterateFactor) -> np.ndarray:
    """``L⁻¹ = Lc⁻¹ D^-½`` for ``M = L Lᵀ``, ``L = D^½ Lc`` (LAPACK ``trtri``, O(n³/3)).

    The sweeps apply ``L⁻¹`` to all observations as one GEMM; a triangular solve with
    ``N·q`` right-hand sides costs the same flops but OpenBLAS threads it with a fixed
    synchronisation cost that dominates for small factors.
    """
    inv, info = _lapack()[2](f.Lc, lower=1)
    if info != 0:  # pragma: no cover - excluded by the rcond check in factor_iterate
        raise SingularFactorError(f"triangular inversion failed (info = {info})")
    return np.tril(inv) / f.sd[None, :]


def inverse(f: IterateFactor) -> np.ndarray:
    """``M⁻¹ = L⁻ᵀ L⁻¹`` from the factor (symmetrised)."""
    Li = inv_lower(f)
    Mi = Li.T @ Li
    return 0.5 * (Mi + Mi.T)
