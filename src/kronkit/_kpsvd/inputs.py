"""Argument checks of the KPSVD functions, and ``M`` in any accepted form as an R-operator.

``M`` may be a dense array, a scipy sparse matrix, a ``scipy.sparse.linalg.LinearOperator``,
a :class:`~kronkit.SumOfKron`, or a :class:`~kronkit.Kron` / sequence of ``Kron`` (converted
once to the sum form; terms with more factors are grouped consecutively into ``shapes``).
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import LinearOperator

from .._checks import check_choice, check_int
from .._kron import Kron
from .._sum_kron import SumOfKron
from .operators import DenseR, LowRankR, OperatorR, ROperator
from .rearrange import as_matrix, check_matrix_shape, rearrange_sparse, rearrange_tensor
from .structure import Structure

__all__ = ["build_operator", "check_maxiter", "check_method", "check_rank", "check_tol",
           "cp_factors", "kron_terms"]


# -- scalar arguments -----------------------------------------------------------------------

def check_method(method: Any) -> str:
    return check_choice(method, "method", ("auto", "dense", "lanczos", "randomized"))


def check_rank(rank: Any, max_rank: int) -> int | None:
    if rank is None:
        return None
    if isinstance(rank, (bool, np.bool_)) or not isinstance(rank, (int, np.integer)):
        raise TypeError(f"`rank` must be a positive int or None, got {rank!r}")
    if rank < 1:
        raise ValueError(f"`rank` must be >= 1, got {rank}")
    if rank > max_rank:
        raise ValueError(f"`rank` must be <= {max_rank} (the largest possible Kronecker rank for "
                         f"these shapes and structure), got {rank}")
    return int(rank)


def check_tol(tol: Any, name: str) -> float:
    """A float in [0, 1); ``TypeError`` for anything that is not a real number (bool and
    strings included), ``ValueError`` outside the range. Both name the argument."""
    if isinstance(tol, (bool, np.bool_, str, bytes)) or not isinstance(tol, numbers.Real):
        raise TypeError(f"`{name}` must be a float, got {tol!r} ({type(tol).__name__})")
    val = float(tol)
    if not (np.isfinite(val) and 0 <= val < 1):
        raise ValueError(f"`{name}` must be in [0, 1), got {val}")
    return val


def check_maxiter(maxiter: Any, name: str = "maxiter") -> int | None:
    """``None`` or an int >= 1 (``TypeError``/``ValueError`` naming the argument)."""
    if maxiter is None:
        return None
    return check_int(maxiter, name, min_value=1)


# -- sums of Kronecker terms ------------------------------------------------------------------

def is_linear_operator(M: Any) -> bool:
    return isinstance(M, LinearOperator)


def kron_terms(M: Any) -> list[Kron] | None:
    """The Kron terms if ``M`` is a SumOfKron, a Kron or a non-empty sequence of Kron."""
    if isinstance(M, SumOfKron):
        return list(M.terms)
    if isinstance(M, Kron):
        return [M]
    if isinstance(M, (list, tuple)) and len(M) > 0 and any(isinstance(t, Kron) for t in M):
        if not all(isinstance(t, Kron) for t in M):
            bad = next(type(t).__name__ for t in M if not isinstance(t, Kron))
            raise TypeError(f"`M` as a sum of Kronecker terms must hold only Kron objects, "
                            f"got a {bad}")
        return list(M)
    return None


def group_factors(term: Kron, shapes: Sequence[tuple[int, int]], k: int) -> list[np.ndarray]:
    """Group the factors of one Kron term into ``len(shapes)`` factors of the given shapes."""
    facs = list(term.factors)
    out = []
    pos = 0
    for l, (m, n) in enumerate(shapes):
        acc = None
        while pos < len(facs) and (acc is None or (acc.shape[0] < m or acc.shape[1] < n)):
            acc = facs[pos] if acc is None else np.kron(acc, facs[pos])
            pos += 1
            if acc.shape == (m, n):
                break
        if acc is None or acc.shape != (m, n):
            got = tuple(f.shape for f in term.factors)
            raise ValueError(
                f"`M[{k}]` has factor shapes {got}, which do not group into `shapes` "
                f"{tuple(shapes)} (factor {l} should be {(m, n)})"
            )
        out.append(acc)
    if pos != len(facs):
        raise ValueError(f"`M[{k}]` has factor shapes {tuple(f.shape for f in term.factors)}, "
                         f"more than `shapes` {tuple(shapes)} accounts for")
    return out


def cp_factors(terms: list[Kron], shapes: Sequence[tuple[int, int]]) -> list[np.ndarray]:
    """``F_l`` of shape ``(m_l*n_l, K)``: column ``k`` is ``vec`` of term ``k``'s factor ``l``."""
    grouped = [group_factors(t, shapes, k) for k, t in enumerate(terms)]
    return [np.stack([g[l].ravel() for g in grouped], axis=1) for l in range(len(shapes))]


def as_sum_of_kron(M: Any, shapes: Sequence[tuple[int, int]]) -> SumOfKron | None:
    """``M`` as a two-factor :class:`SumOfKron` of the given ``shapes`` (terms grouped), or
    ``None`` if ``M`` is not a sum of Kronecker terms."""
    if isinstance(M, SumOfKron) and M.shapes == tuple(shapes):
        return M
    terms = kron_terms(M)
    if terms is None:
        return None
    return SumOfKron([Kron(*group_factors(t, shapes, k)) for k, t in enumerate(terms)])


# -- the R-operator of M (two factors) --------------------------------------------------------

def build_operator(M: Any, st: Structure, rng: np.random.Generator) -> ROperator:
    """The R-operator for any accepted input, with the M-level structure checked."""
    shapes = st.shapes
    (m1, _), (m2, _) = shapes
    S = as_sum_of_kron(M, shapes)
    if S is not None:
        op = LowRankR.of_sum(S)
        st.check_lowrank(op.F, op.G, m1, m2)
        return op
    if sp.issparse(M):
        check_matrix_shape(M.shape, shapes)
        if M.dtype.kind not in "fcbiu":
            raise TypeError(f"`M` must be numeric, got dtype {M.dtype}")
        if M.nnz and not np.isfinite(sp.coo_matrix(M).data).all():
            raise ValueError("`M` contains NaN or Inf")
        Mf = M.astype(np.result_type(M.dtype, np.float64))
        st.check_sparse(Mf)
        return DenseR(rearrange_sparse(Mf, shapes))
    if is_linear_operator(M):
        check_matrix_shape(M.shape, shapes)
        st.check_operator(M, rng)
        return OperatorR(M, shapes)
    Md = as_matrix(M, "M")
    check_matrix_shape(Md.shape, shapes)
    st.check_dense(Md)
    return DenseR(rearrange_tensor(Md, shapes))
