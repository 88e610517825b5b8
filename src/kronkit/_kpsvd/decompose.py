r"""Kronecker-product SVD (Van Loan–Pitsianis) and the nearest Kronecker product.

For ``M`` of shape ``(m1*m2, n1*n2)`` with blocks ``M_ij`` of shape ``(m2, n2)``, the
rearrangement ``R(M)`` of shape ``(m1*n1, m2*n2)`` has row ``i*n1 + j`` equal to the row-major
``vec(M_ij)``, so ``R(A ⊗ B) = vec(A) vec(B)^T``. If ``R(M) = Σ_k σ_k u_k v_k^H`` then
``M = Σ_k σ_k unvec(u_k) ⊗ unvec(conj(v_k))`` exactly, and the first ``r`` terms are the best
Frobenius approximation of ``M`` by ``r`` Kronecker products, with
``‖M - M_r‖_F² = Σ_{k>r} σ_k²`` (Van Loan & Pitsianis 1993; Golub & Van Loan §12.3.6).

Public entry points: :func:`rearrange`, :func:`unrearrange`, :func:`kpsvd`,
:func:`kpsvd_samples`, :func:`nearest_kron` and the result types :class:`KPSVDResult`,
:class:`NearestKronResult`. The operators and the SVD engine live in ``_kpsvd_core``; the
d-factor solver in ``_kpsvd_multi``.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from .._checks import as_float, check_int, non_finite_error
from .._dask import is_dask_array
from .._errors import ConvergenceWarning, StructureWarning
from .._kron import Kron
from .._samples import chunk_samples, combine_scans, scan_chunk, second_moment
from .core import (
    DEFAULT_TOL,
    ChunkedSamplesR,
    DenseR,
    LowRankR,
    OperatorR,
    SamplesR,
    check_method,
    full_is_cheaper,
    linear_basis,
    parse_shapes,
    prod,
    project,
    rng_from,
    skew_basis,
    symmetric_basis,
    to_tensor,
    top_svd,
)
from .multi import _mode_mul, cp_sqnorm, hopm_cp, hopm_dense

__all__ = [
    "KPSVDResult",
    "NearestKronResult",
    "kpsvd",
    "kpsvd_samples",
    "nearest_kron",
    "rearrange",
    "unrearrange",
]

_SYM_RTOL = 1e-10  # ‖M - M^T‖_F <= _SYM_RTOL ‖M‖_F counts as symmetric
_PSD_RTOL = 1e-8  # factor eigenvalues >= -_PSD_RTOL * λ_max count as PSD
_M_LEVEL = ("symmetric", "psd", "nonnegative")
_LINEAR_NAMES = ("general", "skew", "toeplitz", "hankel", "circulant", "diagonal", "upper",
                 "lower")


# ----------------------------------------------------------------------------------------
# rearrangement
# ----------------------------------------------------------------------------------------


def _as_matrix(M: Any, name: str) -> np.ndarray:
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


def rearrange(M: Any, shapes: Any) -> Any:
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
    (m1, n1), (m2, n2) = parse_shapes(shapes, d=2)
    if sp.issparse(M):
        if M.shape != (m1 * m2, n1 * n2):
            raise ValueError(f"`M` must have shape {(m1 * m2, n1 * n2)} for shapes "
                             f"{((m1, n1), (m2, n2))}, got {M.shape}")
        C = sp.coo_matrix(M)
        i, a = np.divmod(C.row.astype(np.int64), m2)
        j, b = np.divmod(C.col.astype(np.int64), n2)
        return sp.csr_matrix((C.data, (i * n1 + j, a * n2 + b)), shape=(m1 * n1, m2 * n2))
    M = _as_matrix(M, "M")
    if M.shape != (m1 * m2, n1 * n2):
        raise ValueError(f"`M` must have shape {(m1 * m2, n1 * n2)} for shapes "
                         f"{((m1, n1), (m2, n2))}, got {M.shape}")
    return to_tensor(M, ((m1, n1), (m2, n2)))


def unrearrange(R: Any, shapes: Any) -> np.ndarray:
    """Inverse of :func:`rearrange`: ``R`` of shape ``(m1*n1, m2*n2)`` to ``M`` of shape
    ``(m1*m2, n1*n2)``, so that ``unrearrange(np.outer(A.ravel(), B.ravel()), s)`` equals
    ``np.kron(A, B)``. Real or complex; a new array; cost O(size of R).
    """
    (m1, n1), (m2, n2) = parse_shapes(shapes, d=2)
    R = _as_matrix(R, "R")
    if R.shape != (m1 * n1, m2 * n2):
        raise ValueError(f"`R` must have shape {(m1 * n1, m2 * n2)} for shapes "
                         f"{((m1, n1), (m2, n2))}, got {R.shape}")
    out = R.reshape(m1, n1, m2, n2).transpose(0, 2, 1, 3)
    return np.ascontiguousarray(out).reshape(m1 * m2, n1 * n2)


# ----------------------------------------------------------------------------------------
# results
# ----------------------------------------------------------------------------------------


def _readonly(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a)
    a.setflags(write=False)
    return a


def _frozen_state(obj: Any, state: Any) -> None:
    """``__setstate__`` of the result dataclasses: restore the fields with every array
    read-only again (pickle, any protocol, and ``copy.deepcopy`` build writeable arrays)."""
    if isinstance(state, tuple) and len(state) == 2:  # (dict, slots) form
        state = {**(state[0] or {}), **(state[1] or {})}
    for key, val in state.items():
        if isinstance(val, np.ndarray):
            val = _readonly(val)
        elif isinstance(val, tuple) and any(isinstance(v, np.ndarray) for v in val):
            val = tuple(_readonly(v) if isinstance(v, np.ndarray) else v for v in val)
        object.__setattr__(obj, key, val)


@dataclass(frozen=True, eq=False)
class KPSVDResult:
    r"""``M ≈ Σ_k s[k] · kron(A[k], B[k])``: a (truncated) Kronecker-product SVD.

    Attributes
    ----------
    s : ndarray of shape (r,)
        Kronecker singular values, descending, ``>= 0``.
    A : ndarray of shape (r, m1, n1)
        Left factors; the ``vec(A[k])`` are orthonormal (``‖A[k]‖_F = 1``).
    B : ndarray of shape (r, m2, n2)
        Right factors, ``B[k] = unvec(conj(v_k))``; the ``vec(B[k])`` are orthonormal.
    residual : float or None
        ``‖M - Σ_k s_k A_k ⊗ B_k‖_F``, without cancellation (an exact Kronecker product
        reports ~1e-16 relative): from the tail singular values when the whole spectrum was
        computed, else from the difference itself (dense or sparse ``M``, sums of Kron terms).
        Only for matrix-free samples (:func:`kpsvd_samples`) is it
        ``sqrt(‖M‖_F² - Σ_k s_k²)``, with absolute accuracy about ``1e-8·‖M‖_F``; ``None``
        when ``‖M‖_F`` is unknown (a LinearOperator input).
    norm : float or None
        ``‖M‖_F`` (``None`` for a LinearOperator input).
    skew : ndarray of bool, shape (r,)
        ``True`` where term ``k`` is skew ⊗ skew (possible for ``structure="symmetric"``:
        a symmetric ``M`` has terms symmetric ⊗ symmetric *or* skew ⊗ skew).
    method : str
        How the SVD was computed: ``"dense"``, ``"lanczos"``, ``"randomized"`` or
        ``"lowrank"`` (exact, from a sum of Kronecker terms).

    Notes
    -----
    Each term's sign (complex: phase) is fixed so that the entry of ``A[k]`` of largest
    magnitude is real positive (for ``structure="psd"`` the leading term has ``tr A[0] > 0``
    instead). ``term(k)`` returns a :class:`~kronkit.Kron` and needs real factors; for complex
    results use ``to_dense()`` or ``np.kron(s[k] * A[k], B[k])``.
    """

    s: np.ndarray
    A: np.ndarray
    B: np.ndarray
    residual: float | None
    norm: float | None
    skew: np.ndarray
    method: str

    def __setstate__(self, state: Any) -> None:
        _frozen_state(self, state)

    @property
    def rank(self) -> int:
        """Number of terms ``r``."""
        return int(self.s.size)

    @property
    def rel_error(self) -> float | None:
        """``residual / ‖M‖_F`` (0 for the zero matrix; ``None`` when unknown)."""
        if self.residual is None or self.norm is None:
            return None
        return 0.0 if self.norm == 0.0 else self.residual / self.norm

    def tail_errors(self, relative: bool = False) -> np.ndarray | None:
        r"""The error after each number of terms: ``‖M - M_k‖_F`` for ``k = 1..r``.

        ``M_k = Σ_{j<=k} s_j A_j ⊗ B_j``; by orthogonality of the terms
        ``‖M - M_k‖_F = sqrt(Σ_{j>k} s_j² + residual²)``, summed from the tail (a reverse
        cumulative sum: no cancellation). The last entry is ``residual``.

        Parameters
        ----------
        relative : bool, default False
            Divide by ``‖M‖_F`` (all zeros for the zero matrix, as :attr:`rel_error`).

        Returns
        -------
        ndarray of shape (r,) or None
            Non-increasing errors; ``None`` when ``residual`` is unknown (a LinearOperator
            input), as :attr:`rel_error`. Cost ``O(r)``.

        Examples
        --------
        Dense equivalent, for ``k = 1..r``:
        ``np.linalg.norm(M - sum(np.kron(s[j] * A[j], B[j]) for j in range(k)))``.
        """
        if self.residual is None or (relative and self.norm is None):
            return None
        sq = np.abs(self.s).astype(float) ** 2
        after = np.concatenate([np.cumsum(sq[::-1])[::-1][1:], [0.0]])
        err = np.sqrt(after + float(self.residual) ** 2)
        if not relative:
            return err
        return np.zeros_like(err) if self.norm == 0.0 else err / float(self.norm)

    def term(self, k: int) -> Kron:
        """Term ``k`` as the operator ``Kron(s[k] * A[k], B[k])`` (real results only)."""
        if not -self.rank <= k < self.rank:
            raise IndexError(f"`k` must be in [0, {self.rank}), got {k}")
        if np.iscomplexobj(self.A) or np.iscomplexobj(self.B):
            raise TypeError(
                "Kron supports real factors only and this KPSVD is complex; use "
                "`to_dense()` or `np.kron(res.s[k] * res.A[k], res.B[k])`"
            )
        return Kron(self.s[k] * self.A[k], self.B[k])

    def to_dense(self) -> np.ndarray:
        """``Σ_k s_k kron(A_k, B_k)`` as a dense ``(m1*m2, n1*n2)`` array (one GEMM)."""
        r, m1, n1 = self.A.shape
        _, m2, n2 = self.B.shape
        Rr = (self.A.reshape(r, m1 * n1).T * self.s) @ self.B.reshape(r, m2 * n2)
        return unrearrange(Rr, ((m1, n1), (m2, n2)))

    def __repr__(self) -> str:
        _, m1, n1 = self.A.shape
        _, m2, n2 = self.B.shape
        err = "?" if self.rel_error is None else f"{self.rel_error:.3g}"
        return (f"KPSVDResult(rank={self.rank}, A: {m1}×{n1}, B: {m2}×{n2}, "
                f"s={np.array2string(self.s[:4], precision=4)}{'...' if self.rank > 4 else ''}, "
                f"rel_error={err}, method={self.method!r})")


@dataclass(frozen=True, eq=False)
class NearestKronResult:
    r"""The nearest Kronecker product ``A1 ⊗ ... ⊗ Ad`` to ``M`` in the Frobenius norm.

    Unpacks to its factors: ``A, B = nearest_kron(M, shapes)``.

    Attributes
    ----------
    factors : tuple of ndarray
        ``A_k`` of shape ``(m_k, n_k)``. The optimal scale ``σ`` is split evenly,
        ``‖A_k‖_F = σ^(1/d)``, and signs (phases) are fixed: the largest-magnitude entry of
        every factor but the last is real positive (``structure="psd"``: every factor has a
        positive trace).
    sigma : float
        ``σ = <M, A1⊗...⊗Ad>/∏‖A_k‖_F``: the leading Kronecker singular value for d = 2.
    residual : float or None
        ``‖M - A1 ⊗ ... ⊗ Ad‖_F`` without cancellation (the SVD tail for d = 2, else the
        difference itself); ``sqrt(‖M‖_F² - σ²)`` (absolute accuracy ~1e-8·‖M‖_F) only for a
        sum of Kron terms with d >= 3; ``None`` if ``‖M‖_F`` is unknown.
    norm : float or None
        ``‖M‖_F``.
    n_iter : int
        Power-method sweeps (0 for d = 2, solved exactly by an SVD).
    converged : bool
        Whether the power method met its tolerance (always True for d = 2).
    skew_sigma : float or None
        For ``structure="symmetric"`` (d = 2): the singular value of the best skew ⊗ skew pair
        when it beats the returned symmetric pair (a :class:`StructureWarning` is issued too).
    """

    factors: tuple[np.ndarray, ...]
    sigma: float
    residual: float | None
    norm: float | None
    n_iter: int
    converged: bool
    skew_sigma: float | None = None

    def __iter__(self):
        return iter(self.factors)

    def __setstate__(self, state: Any) -> None:
        _frozen_state(self, state)

    @property
    def rel_error(self) -> float | None:
        if self.residual is None or self.norm is None:
            return None
        return 0.0 if self.norm == 0.0 else self.residual / self.norm

    @property
    def kron(self) -> Kron:
        """The approximation as a :class:`~kronkit.Kron` (real factors only)."""
        if any(np.iscomplexobj(f) for f in self.factors):
            raise TypeError("Kron supports real factors only and these are complex; use "
                            "`to_dense()`")
        return Kron(*self.factors)

    def to_dense(self) -> np.ndarray:
        out = self.factors[0]
        for f in self.factors[1:]:
            out = np.kron(out, f)
        return out


# ----------------------------------------------------------------------------------------
# input handling
# ----------------------------------------------------------------------------------------


def _is_linear_operator(M: Any) -> bool:
    from scipy.sparse.linalg import LinearOperator

    return isinstance(M, LinearOperator)


def _kron_terms(M: Any) -> list[Kron] | None:
    """The list of Kron terms if ``M`` is a Kron or a non-empty sequence of them."""
    if isinstance(M, Kron):
        return [M]
    if isinstance(M, (list, tuple)) and len(M) > 0 and any(isinstance(t, Kron) for t in M):
        if not all(isinstance(t, Kron) for t in M):
            bad = next(type(t).__name__ for t in M if not isinstance(t, Kron))
            raise TypeError(f"`M` as a sum of Kronecker terms must hold only Kron objects, "
                            f"got a {bad}")
        return list(M)
    return None


def _group_factors(term: Kron, shapes: Sequence[tuple[int, int]], k: int) -> list[np.ndarray]:
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


def _cp_factors(terms: list[Kron], shapes) -> list[np.ndarray]:
    """``F_l`` of shape ``(m_l*n_l, K)``: column ``k`` is ``vec`` of term ``k``'s factor ``l``."""
    grouped = [_group_factors(t, shapes, k) for k, t in enumerate(terms)]
    return [np.stack([g[l].ravel() for g in grouped], axis=1) for l in range(len(shapes))]


def _check_rank(rank: Any, max_rank: int) -> int | None:
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


def _check_tol(tol: Any, name: str) -> float:
    """A float in [0, 1); ``TypeError`` for anything that is not a real number (bool and
    strings included), ``ValueError`` outside the range. Both name the argument."""
    if isinstance(tol, (bool, np.bool_, str, bytes)) or not isinstance(tol, numbers.Real):
        raise TypeError(f"`{name}` must be a float, got {tol!r} ({type(tol).__name__})")
    val = float(tol)
    if not (np.isfinite(val) and 0 <= val < 1):
        raise ValueError(f"`{name}` must be in [0, 1), got {val}")
    return val


def _check_maxiter(maxiter: Any, name: str = "maxiter") -> int | None:
    """``None`` or an int >= 1 (``TypeError``/``ValueError`` naming the argument)."""
    if maxiter is None:
        return None
    return check_int(maxiter, name, min_value=1)


def _parse_structure(structure: Any, shapes):
    """Return ``(m_level, bases)``: an M-level property name, or per-factor linear bases."""
    d = len(shapes)
    specs: list[Any]
    if structure is None:
        return None, None
    if isinstance(structure, str):
        if structure in _M_LEVEL:
            if structure != "nonnegative" and any(m != n for m, n in shapes):
                raise ValueError(f"`structure`={structure!r} needs square blocks, got shapes "
                                 f"{tuple(shapes)}")
            return structure, None
        if structure in _LINEAR_NAMES:
            specs = [structure] * d
        else:
            raise ValueError(
                f"`structure` must be None, one of {_M_LEVEL}, a linear structure name "
                f"{_LINEAR_NAMES}, ('banded', lower, upper), or a sequence of {d} per-factor "
                f"structures, got {structure!r}"
            )
    elif (isinstance(structure, tuple) and len(structure) == 3
          and isinstance(structure[0], str) and structure[0] == "banded"):
        specs = [structure] * d
    elif isinstance(structure, (tuple, list)):
        if len(structure) != d:
            raise ValueError(f"`structure` as per-factor structures must have {d} entries "
                             f"(one per factor), got {len(structure)}")
        specs = list(structure)
    else:
        raise TypeError(f"`structure` must be None, a string or a sequence of per-factor "
                        f"structures, got {type(structure).__name__}")
    bases = [linear_basis(spec, m, n, f"structure[{l}]")
             for l, (spec, (m, n)) in enumerate(zip(specs, shapes, strict=True))]
    if all(b is None for b in bases):
        return None, None
    return None, [sp.identity(m * n, format="csr") if b is None else b
                  for b, (m, n) in zip(bases, shapes, strict=True)]


# -- M-level structure checks ----------------------------------------------------------------


def _check_dense_structure(M: np.ndarray, level: str) -> None:
    if np.iscomplexobj(M):
        raise TypeError(f"`structure`={level!r} supports real `M` only, got dtype {M.dtype}")
    nrm = float(np.linalg.norm(M))
    if level == "nonnegative":
        if M.size and M.min() < 0:
            raise ValueError(f"`structure`='nonnegative' but `M` has negative entries "
                             f"(min {M.min():.3g})")
        return
    asym = float(np.linalg.norm(M - M.T))
    if asym > _SYM_RTOL * nrm:
        raise ValueError(f"`structure`={level!r} but `M` is not symmetric "
                         f"(‖M - M^T‖_F / ‖M‖_F = {asym / nrm:.3g} > {_SYM_RTOL:g})")
    if level == "psd" and nrm > 0:
        n = M.shape[0]
        Ms = 0.5 * (M + M.T)
        delta = 64 * n * np.finfo(float).eps * max(float(np.max(np.diagonal(Ms))), 0.0)
        try:
            np.linalg.cholesky(Ms + delta * np.eye(n))
        except np.linalg.LinAlgError:
            lam = float(np.linalg.eigvalsh(Ms)[0])
            raise ValueError(f"`structure`='psd' but `M` is not positive semi-definite "
                             f"(smallest eigenvalue {lam:.3g})") from None


def _check_sparse_structure(M: Any, level: str) -> None:
    if np.iscomplexobj(M.data):
        raise TypeError(f"`structure`={level!r} supports real `M` only, got dtype {M.dtype}")
    if level == "nonnegative":
        if M.nnz and M.data.min() < 0:
            raise ValueError("`structure`='nonnegative' but `M` has negative entries")
        return
    D = (M - M.T).tocoo()
    asym = float(np.linalg.norm(D.data))
    nrm = float(np.linalg.norm(sp.coo_matrix(M).data))
    if asym > _SYM_RTOL * nrm:
        raise ValueError(f"`structure`={level!r} but `M` is not symmetric "
                         f"(‖M - M^T‖_F / ‖M‖_F = {asym / nrm:.3g})")


def _check_terms_structure(F: np.ndarray, G: np.ndarray, shapes, level: str) -> None:
    (m1, _), (m2, _) = shapes
    if level == "nonnegative":
        for k in range(F.shape[1]):
            a, b = F[:, k], G[:, k]
            if not ((a.min() >= 0 and b.min() >= 0) or (a.max() <= 0 and b.max() <= 0)):
                raise ValueError(
                    "`structure`='nonnegative' could not be verified for a sum of Kronecker "
                    f"terms: term {k} is not (nonnegative ⊗ nonnegative) up to sign; pass the "
                    "dense matrix instead"
                )
        return
    # symmetric: R(M - M^T) = [F, F^T-vec][G, -G^T-vec]^T, measured exactly via thin QRs
    Ft = F.reshape(m1, m1, -1).transpose(1, 0, 2).reshape(m1 * m1, -1)
    Gt = G.reshape(m2, m2, -1).transpose(1, 0, 2).reshape(m2 * m2, -1)
    diff = LowRankR(np.concatenate([F, Ft], 1), np.concatenate([G, -Gt], 1))
    nrm2 = LowRankR(F, G).sqnorm
    asym = math.sqrt(diff.sqnorm)
    if asym > _SYM_RTOL * math.sqrt(nrm2):
        raise ValueError(f"`structure`={level!r} but the sum of Kronecker terms is not symmetric "
                         f"(‖M - M^T‖_F / ‖M‖_F = {asym / math.sqrt(nrm2):.3g})")


def _check_operator_structure(M: Any, level: str, rng: np.random.Generator) -> None:
    if level == "nonnegative":
        raise ValueError("`structure`='nonnegative' cannot be verified for a LinearOperator `M`; "
                         "pass a dense or sparse matrix")
    if np.dtype(M.dtype).kind == "c":
        raise TypeError(f"`structure`={level!r} supports real `M` only, got dtype {M.dtype}")
    X = rng.standard_normal((M.shape[1], 2))
    try:
        MX = np.asarray(M.matmat(X))
        MtX = np.asarray(M.rmatmat(X))
    except NotImplementedError:
        return  # no adjoint: symmetry is the caller's assertion (documented)
    if float(np.linalg.norm(MX - MtX)) > 1e-8 * max(float(np.linalg.norm(MX)), 1e-300):
        raise ValueError(f"`structure`={level!r} but the LinearOperator `M` is not symmetric "
                         "(M @ x differs from M^T @ x for random x)")


# ----------------------------------------------------------------------------------------
# the 2-factor decomposition
# ----------------------------------------------------------------------------------------


@dataclass
class _Terms:
    U: np.ndarray  # (a, r) unit columns, vec(A_k)
    s: np.ndarray  # (r,)
    Vh: np.ndarray  # (r, b), rows vec(B_k) = conj(v_k)
    skew: np.ndarray  # (r,) bool
    exact_tail: float | None  # Σ of squared dropped σ when every σ is known
    method: str
    full_sq: float | None = None  # Σ of all squared σ (= ‖M‖_F²) when every σ is known


def _svd_terms(op: Any, shapes, k: int | None, level: str | None, bases, *, method: str,
               tol: float, rtol: float | None, rng: np.random.Generator,
               maxiter: int | None, truncate: bool = True) -> _Terms:
    """All candidate terms, merged and sorted; truncated to ``k`` (or the numerical rank).

    With ``truncate=False`` every computed candidate is kept (up to ``k`` per subproblem).
    """
    (m1, _), (m2, _) = shapes
    if (level in ("symmetric", "psd") and truncate and k is not None
            and not isinstance(op, LowRankR) and method != "dense" and k < min(op.shape) - 1
            and not (method == "auto" and full_is_cheaper(op, k))):
        fast = _symmetric_fast(op, shapes, k, method=method, tol=tol, rng=rng, maxiter=maxiter)
        if fast is not None:
            return fast
    if level in ("symmetric", "psd"):
        subs = [(symmetric_basis(m1), symmetric_basis(m2), False)]
        if m1 > 1 and m2 > 1:
            subs.append((skew_basis(m1), skew_basis(m2), True))
    elif bases is not None:
        subs = [(bases[0], bases[1], False)]
    else:
        subs = [(None, None, False)]
    Us, ss, Vhs, flags, alls = [], [], [], [], []
    methods = []
    for QA, QB, is_skew in subs:
        sub = op if QA is None else project(op, QA, QB)
        kk = None if k is None else min(k, min(sub.shape))
        out = top_svd(sub, kk, method=method, tol=tol, rng=rng, maxiter=maxiter)
        methods.append(out.method)
        U, Vh = out.U, out.Vh
        if QA is not None:
            U = np.asarray(QA @ U)
            Vh = np.asarray(QB @ Vh.T).T
        Us.append(U)
        ss.append(out.s)
        Vhs.append(Vh)
        flags.append(np.full(out.s.size, is_skew))
        alls.append(out.all_s)
    U = np.concatenate(Us, axis=1)
    s = np.concatenate(ss)
    Vh = np.concatenate(Vhs, axis=0)
    skew = np.concatenate(flags)
    order = np.argsort(-s, kind="stable")
    U, s, Vh, skew = U[:, order], s[order], Vh[order], skew[order]
    if k is None:
        a, b = op.shape
        cut = (max(a, b) * np.finfo(float).eps if rtol is None else rtol) * (s[0] if s.size else 0)
        r = int(np.count_nonzero(s > cut))
    else:
        r = min(k, s.size) if truncate else s.size
    exact_tail = full_sq = None
    if bases is None and level is None and alls[0] is not None:
        exact_tail = float(np.sum(alls[0][r:] ** 2))
        full_sq = float(np.sum(alls[0] ** 2))
    method_used = methods[0] if len(set(methods)) == 1 else "+".join(methods)
    return _Terms(U[:, :r], s[:r], Vh[:r], skew[:r], exact_tail, method_used, full_sq)


def _symmetric_fast(op: Any, shapes, k: int, *, method: str, tol: float,
                    rng: np.random.Generator, maxiter: int | None) -> _Terms | None:
    """One iterative SVD of ``R(M)`` for a symmetric ``M``, its terms classified.

    ``R(M)`` is block diagonal in the (symmetric, skew) bases, so apart from ties every
    singular pair is symmetric ⊗ symmetric or skew ⊗ skew already; each term is projected onto
    its part (removing rounding). Returns ``None`` if a term mixes the two (a tie between a
    symmetric and a skew σ), and the caller then solves the two parts separately. This halves
    the cost of ``structure="symmetric"``/``"psd"`` for iterative (matrix-free) solves.
    """
    (m1, _), (m2, _) = shapes
    out = top_svd(op, k, method=method, tol=tol, rng=rng, maxiter=maxiter)
    U, Vh = np.array(out.U), np.array(out.Vh)
    skew = np.zeros(out.s.size, dtype=bool)
    for j in range(out.s.size):
        A = U[:, j].reshape(m1, m1)
        B = Vh[j].reshape(m2, m2)
        parts = [(0.5 * (A + A.T), 0.5 * (B + B.T)), (0.5 * (A - A.T), 0.5 * (B - B.T))]
        small = [max(np.linalg.norm(pa), np.linalg.norm(pb)) <= 1e-6 for pa, pb in parts]
        if small[1] == small[0]:
            return None
        keep = 0 if small[1] else 1
        pa, pb = parts[keep]
        U[:, j] = pa.ravel() / np.linalg.norm(pa)
        Vh[j] = pb.ravel() / np.linalg.norm(pb)
        skew[j] = keep == 1
    return _Terms(U, out.s, Vh, skew, None, out.method)


def _fix_signs(t: _Terms, first_by_trace: bool, m1: int) -> None:
    """Make the largest-|.| entry of each ``vec(A_k)`` real positive (in place)."""
    for k in range(t.s.size):
        u = t.U[:, k]
        if k == 0 and first_by_trace:
            tr = np.trace(u.reshape(m1, m1)).real
            c = -1.0 if tr < 0 else 1.0
        else:
            j = int(np.argmax(np.abs(u)))
            c = np.conj(u[j]) / abs(u[j]) if u[j] != 0 else 1.0
        if c != 1.0:
            t.U[:, k] = u * c
            t.Vh[k] = t.Vh[k] * np.conj(c)


def _is_psd(S: np.ndarray) -> bool:
    w = np.linalg.eigvalsh(0.5 * (S + S.T))
    return bool(w[0] >= -_PSD_RTOL * max(abs(w[-1]), np.finfo(float).tiny))


def _zero_terms(shapes, r: int, level: str | None, bases, dtype):
    """Orthonormal factor vectors (with the requested structure) for ``r`` zero terms."""
    (m1, _), (m2, _) = shapes
    if level in ("symmetric", "psd"):
        pairs = [(symmetric_basis(m1), symmetric_basis(m2), False)]
        if m1 > 1 and m2 > 1:
            pairs.append((skew_basis(m1), skew_basis(m2), True))
    elif bases is not None:
        pairs = [(bases[0], bases[1], False)]
    else:
        pairs = [(sp.identity(m1 * shapes[0][1]), sp.identity(m2 * shapes[1][1]), False)]
    Us, Vs, flags = [], [], []
    for QA, QB, is_skew in pairs:
        n = min(QA.shape[1], QB.shape[1])
        QA = QA.toarray() if sp.issparse(QA) else np.asarray(QA)
        QB = QB.toarray() if sp.issparse(QB) else np.asarray(QB)
        Us.append(QA[:, :n])
        Vs.append(QB[:, :n])
        flags.append(np.full(n, is_skew))
    U = np.concatenate(Us, axis=1)[:, :r].astype(dtype)
    Vh = np.concatenate(Vs, axis=1)[:, :r].T.astype(dtype)
    return U, Vh, np.concatenate(flags)[:r]


def _decompose(op: Any, shapes, rank: int | None, *, method: str, tol: float,
               rtol: float | None, rng: np.random.Generator, maxiter: int | None,
               level: str | None = None, bases=None) -> KPSVDResult:
    """KPSVD of the R-operator ``op`` (structure already parsed and the input checked)."""
    (m1, n1), (m2, n2) = shapes
    sq = op.sqnorm
    norm = None if sq is None else math.sqrt(sq)
    if sq == 0.0:  # the zero matrix: no terms (rank=None) or r zero terms
        r = 0 if rank is None else rank
        U, Vh, skew = _zero_terms(shapes, r, level, bases, op.dtype)
        return KPSVDResult(_readonly(np.zeros(r)), _readonly(U.T.reshape(r, m1, n1)),
                           _readonly(Vh.reshape(r, m2, n2)), 0.0, 0.0, _readonly(skew), "zero")
    t = _svd_terms(op, shapes, rank, level, bases, method=method, tol=tol, rtol=rtol, rng=rng,
                   maxiter=maxiter)
    t.U = np.array(t.U)
    t.Vh = np.array(t.Vh)
    _fix_signs(t, level == "psd", m1)
    if level == "nonnegative" and t.s.size:
        # For R >= 0, |u|^T R |v| >= |u^T R v| = σ1, so (|u|, |v|) is a top pair as well.
        u, v = np.abs(t.U[:, 0]), np.abs(t.Vh[0])
        t.U[:, 0], t.Vh[0] = u, v
        t.s = t.s.copy()
        t.s[0] = float(u @ op.matmat(v[:, None])[:, 0])
    if level == "psd" and t.s.size:
        if t.skew[0]:
            raise ValueError("`structure`='psd' but `M` is not positive semi-definite: its "
                             "leading Kronecker term is skew ⊗ skew")
        A0 = t.U[:, 0].reshape(m1, m1)
        B0 = t.Vh[0].reshape(m2, m2)
        if not (_is_psd(A0) and _is_psd(B0)):
            raise ValueError("`structure`='psd' but `M` is not positive semi-definite: the "
                             "leading Kronecker factors are indefinite")
    r = t.s.size
    if norm is None and t.full_sq is not None:  # an operator that was formed (small case)
        norm = math.sqrt(t.full_sq)
    residual: float | None
    if t.exact_tail is not None:  # every σ known: the tail, no cancellation
        residual = math.sqrt(t.exact_tail)
    else:
        residual = _direct_residual(op, t.U, t.s, t.Vh)
        if residual is None and sq is not None:  # matrix-free: the difference formula
            residual = math.sqrt(max(sq - float(np.sum(t.s ** 2)), 0.0))
    A = t.U.T.reshape(r, m1, n1)
    B = t.Vh.reshape(r, m2, n2)
    return KPSVDResult(_readonly(t.s), _readonly(A), _readonly(B), residual, norm,
                       _readonly(t.skew), t.method)


#: the direct residual of a sparse ``M`` is computed (in row blocks of the dense ``R(M)``) only
#: up to this many entries of ``R(M)``; above it the difference formula is used
_DIRECT_RESIDUAL_MAX_ENTRIES = 1 << 27


def _direct_residual(op: Any, U: np.ndarray, s: np.ndarray, Vh: np.ndarray) -> float | None:
    """``‖R - U diag(s) Vh‖_F`` without cancellation, or ``None`` where not available.

    ``sqrt(‖M‖² - Σ s_k²)`` loses half the digits when the residual is small (an exact
    Kronecker product reports ~1e-8 instead of ~1e-16). Here the difference itself is formed:
    for an explicit ``R`` in row blocks (cost ``O(a·b·r)``, one GEMM, workspace of a few MB),
    for a sum of Kronecker terms as the low-rank matrix ``[F, U s][G, -Vh^T]^T`` (two thin
    QRs). Matrix-free operators (samples, LinearOperator) return ``None``.
    """
    if isinstance(op, LowRankR):
        F = np.concatenate([op.F, U * s], axis=1)
        G = np.concatenate([op.G, -Vh.T], axis=1)
        return math.sqrt(LowRankR(F, G).sqnorm)
    if not isinstance(op, DenseR):
        return None
    a, b = op.shape
    if op.is_sparse and a * b > _DIRECT_RESIDUAL_MAX_ENTRIES:
        return None
    US = U * s
    step = max(1, (1 << 20) // max(1, b))
    total = 0.0
    for i in range(0, a, step):
        blk = op.R[i : i + step]
        blk = blk.toarray() if op.is_sparse else np.asarray(blk)
        D = blk - US[i : i + step] @ Vh
        total += float(np.vdot(D, D).real)
    return math.sqrt(total)


def _max_rank(shapes, level: str | None, bases) -> int:
    (m1, n1), (m2, n2) = shapes
    if level in ("symmetric", "psd"):
        return (min(m1 * (m1 + 1) // 2, m2 * (m2 + 1) // 2)
                + min(m1 * (m1 - 1) // 2, m2 * (m2 - 1) // 2))
    if bases is not None:
        return min(bases[0].shape[1], bases[1].shape[1])
    return min(m1 * n1, m2 * n2)


def _build_op(M: Any, shapes, level: str | None, rng: np.random.Generator):
    """The R-operator for any accepted input, with the M-level structure checked."""
    (m1, n1), (m2, n2) = shapes
    want = (m1 * m2, n1 * n2)
    terms = _kron_terms(M)
    if terms is not None:
        F, G = _cp_factors(terms, shapes)
        if level is not None:
            _check_terms_structure(F, G, shapes, level)
        return LowRankR(F, G)
    if sp.issparse(M):
        if M.shape != want:
            raise ValueError(f"`M` must have shape {want} for shapes {tuple(shapes)}, "
                             f"got {M.shape}")
        if M.dtype.kind not in "fcbiu":
            raise TypeError(f"`M` must be numeric, got dtype {M.dtype}")
        if M.nnz and not np.isfinite(sp.coo_matrix(M).data).all():
            raise ValueError("`M` contains NaN or Inf")
        Mf = M.astype(np.result_type(M.dtype, np.float64))
        if level is not None:
            _check_sparse_structure(Mf, level)
        return DenseR(rearrange(Mf, shapes))
    if _is_linear_operator(M):
        if tuple(M.shape) != want:
            raise ValueError(f"`M` must have shape {want} for shapes {tuple(shapes)}, "
                             f"got {tuple(M.shape)}")
        if level is not None:
            _check_operator_structure(M, level, rng)
        return OperatorR(M, shapes)
    Md = _as_matrix(M, "M")
    if Md.shape != want:
        raise ValueError(f"`M` must have shape {want} for shapes {tuple(shapes)}, got {Md.shape}")
    if level is not None:
        _check_dense_structure(Md, level)
    return DenseR(to_tensor(Md, shapes))


def kpsvd(M: Any, shapes: Any, rank: int | None = None, *, structure: Any = None,
          method: str = "auto", tol: float = DEFAULT_TOL, rtol: float | None = None,
          random_state: Any = None, maxiter: int | None = None) -> KPSVDResult:
    r"""Kronecker-product SVD: ``M ≈ Σ_{k<r} s_k A_k ⊗ B_k`` with orthonormal ``vec``\ s.

    Computes the SVD of the rearrangement ``R(M) = Σ σ_k u_k v_k^H`` (see :func:`rearrange`),
    so ``A_k = unvec(u_k)`` and ``B_k = unvec(conj(v_k))``; the first ``r`` terms are the best
    Frobenius-norm approximation of ``M`` by a sum of ``r`` Kronecker products and
    ``‖M - M_r‖_F² = Σ_{k>r} σ_k²``.

    Parameters
    ----------
    M : array_like, scipy sparse matrix, LinearOperator, Kron or sequence of Kron
        The matrix, of shape ``(m1*m2, n1*n2)``, real or complex. Matrix-free inputs are never
        formed: a ``scipy.sparse.linalg.LinearOperator`` (products with ``M`` only; each
        product with ``R(M)`` costs ``n1·min(m2, n2)`` products with ``M``), or a sum of
        Kronecker terms ``[Kron(A_1, B_1), ..., Kron(A_K, B_K)]`` (exact: two thin QRs and
        a K×K SVD, ``O((m1 n1 + m2 n2)·K²)``). Kron terms may have more factors if they group
        consecutively into ``shapes``.
    shapes : ((m1, n1), (m2, n2))
        Factor shapes; an int means a square block.
    rank : int, optional
        Number of terms. ``None`` gives the exact decomposition: every ``σ_k > rtol·σ_1`` (the
        numerical Kronecker rank); it needs a dense ``M`` or a sum of Kron terms (sparse and
        LinearOperator inputs need an explicit ``rank``). Must be ``<= min(m1 n1, m2 n2)``
        (with ``structure="symmetric"``/``"psd"``: the number of symmetric ⊗ symmetric plus
        skew ⊗ skew directions; with a linear structure: the smaller subspace dimension).
    structure : str or sequence, optional
        ``"symmetric"``: ``M`` must be symmetric (checked); every term is
        symmetric ⊗ symmetric or skew ⊗ skew (``result.skew`` says which).
        ``"psd"``: ``M`` must be symmetric positive semi-definite (checked, for dense ``M`` by a
        Cholesky factorisation, O((m1 m2)³)); additionally the leading term's factors are both
        PSD. ``"nonnegative"``: ``M >= 0`` (checked); the leading term's factors are ``>= 0``.
        A linear structure imposed exactly (the constrained optimum, ``M`` need not have it):
        a name for all factors (``"toeplitz"``, ``"hankel"``, ``"circulant"``, ``"diagonal"``,
        ``"upper"``, ``"lower"``, ``"skew"``, ``("banded", lower, upper)``) or a pair of per-
        factor specs, each a name, ``"symmetric"``, ``"general"``/None, or a real basis array of
        shape ``(m*n, d)`` (orthonormalised here); then the SVD is of ``Q_A^T R(M) Q_B``.
    method : {"auto", "dense", "lanczos", "randomized"}
        ``"auto"``: full LAPACK SVD when it is cheaper (small problems, or ``rank`` close to
        ``min(m1 n1, m2 n2)``), else Lanczos: thick-restart Lanczos on the smaller normal
        operator with full reorthogonalisation, one product with ``R`` and one with ``R^H`` per
        step. ``"randomized"``: block subspace iteration until the Ritz residuals reach ``tol``.
    tol : float
        Relative tolerance of the iterative methods (default 1e-12). Lanczos stops when every
        wanted triple has ``‖R^H R v - θ² v‖ <= tol·θ²`` (a backward error ``tol``: σ to about
        ``tol``, the factors to about ``tol/gap``), or — for a singular value within 1 % of
        another (a cluster, where single factors are ill-conditioned) — when the quadratic
        residual bound puts that σ within ``tol`` (relative); the factors of a cluster are then
        only as accurate as ``sqrt(tol)/gap``.
    rtol : float, optional
        Rank cut-off for ``rank=None``; default ``max(m1 n1, m2 n2)·eps``.
    random_state : None, int or numpy Generator
        Start vectors of the iterative methods.
    maxiter : int, optional
        Iteration cap of the iterative methods (an int >= 1; Lanczos steps, default 2000, or
        randomized iterations, default 200); on reaching it they warn
        (:class:`~kronkit.ConvergenceWarning`) and return the current estimates.

    Returns
    -------
    KPSVDResult
        ``s`` (r,), ``A`` (r, m1, n1), ``B`` (r, m2, n2), ``residual``, ``norm``, ``skew``,
        ``method``; ``to_dense()``, ``term(k)``.

    Notes
    -----
    Cost (dense ``M``, ``P = m1 m2 n1 n2`` entries): the rearrangement O(P); a full SVD
    O(P·min(m1 n1, m2 n2)), or Lanczos with O(P) per product. Dense equivalent:
    ``U, s, Vh = np.linalg.svd(rearrange(M, shapes))``, ``A_k = U[:, k].reshape(m1, n1)``,
    ``B_k = Vh[k].reshape(m2, n2)``.

    Examples
    --------
    >>> A, B = np.arange(4.).reshape(2, 2), np.eye(3)
    >>> res = kpsvd(np.kron(A, B), ((2, 2), (3, 3)))
    >>> res.rank, np.allclose(res.to_dense(), np.kron(A, B))
    (1, True)
    """
    shp = parse_shapes(shapes, d=2)
    method = check_method(method)
    tol = _check_tol(tol, "tol")
    if rtol is not None:
        rtol = _check_tol(rtol, "rtol")
    maxiter = _check_maxiter(maxiter)
    rng = rng_from(random_state)
    level, bases = _parse_structure(structure, shp)
    rank = _check_rank(rank, _max_rank(shp, level, bases))
    op = _build_op(M, shp, level, rng)
    if rank is None and isinstance(op, OperatorR):
        raise ValueError("`rank` is required for a LinearOperator `M` (rank=None, the exact "
                         "decomposition, would form M)")
    if rank is None and isinstance(op, DenseR) and op.is_sparse:
        raise ValueError("`rank` is required for a sparse `M` (rank=None, the exact "
                         "decomposition, needs the dense R(M); pass `M.toarray()`)")
    return _decompose(op, shp, rank, method=method, tol=tol, rtol=rtol, rng=rng,
                      maxiter=maxiter, level=level, bases=bases)


def _samples_args(shape, rank, center, method, tol, random_state, structure, maxiter=None):
    """Validate the arguments shared by the NumPy and dask paths of :func:`kpsvd_samples`."""
    N, p, q = shape
    if min(N, p, q) < 1:
        raise ValueError(f"`X` must have shape (N, p, q) with N, p, q >= 1, got {tuple(shape)}")
    if rank is None:
        raise TypeError("`rank` must be a positive int for kpsvd_samples, got None")
    if not isinstance(center, (bool, np.bool_)):
        raise TypeError(f"`center` must be a bool, got {center!r}")
    shp = ((p, p), (q, q))
    method = check_method(method)
    tol = _check_tol(tol, "tol")
    _check_maxiter(maxiter)
    rng = rng_from(random_state)
    level, bases = _parse_structure(structure, shp)
    k = _check_rank(rank, _max_rank(shp, level, bases))
    return shp, method, tol, rng, level, bases, k


def kpsvd_samples(X: Any, rank: int, *, center: bool = True, method: str = "auto",
                  random_state: Any = None, tol: float = DEFAULT_TOL, structure: Any = None,
                  maxiter: int | None = None) -> KPSVDResult:
    r"""KPSVD of the sample covariance of matrix samples, without forming it.

    ``M = (1/N) Σ_n vec(X_n) vec(X_n)^T`` (``X_n`` centred by the sample mean when
    ``center=True``; divisor ``N`` either way) is ``(pq)×(pq)``, and
    ``R(M) = (1/N) Σ_n X_n ⊗ X_n`` is ``p²×q²``. Products with it are batched GEMMs:
    ``R(M) vec(V) = vec((1/N) Σ_n X_n V X_n^T)`` and ``R(M)^T vec(U) = vec((1/N) Σ_n X_n^T U
    X_n)``, fed to Lanczos (or randomized subspace iteration).

    Parameters
    ----------
    X : array_like of shape (N, p, q)
        Real samples; or a ``dask.array`` of that shape chunked along N (see Notes).
    rank : int
        Number of terms, ``1 <= rank <= min(p², q²)``.
    center : bool
        Subtract the sample mean first.
    method, random_state, tol, maxiter
        As in :func:`kpsvd`; ``"auto"`` forms ``R(M)`` (by ``min(p², q²)`` products) only when
        that is cheaper than Lanczos, i.e. for tiny ``p`` or ``q``, or ``rank`` near
        ``min(p², q²)``.
    structure : {None, "symmetric", "psd", "nonnegative"} or linear structure
        As in :func:`kpsvd`. ``M`` is PSD by construction; ``"nonnegative"`` needs
        ``center=False`` and ``X >= 0``.

    Returns
    -------
    KPSVDResult
        ``A`` of shape (rank, p, p), ``B`` of shape (rank, q, q); ``residual`` from
        ``‖M‖_F² - Σ s_k²`` with ``‖M‖_F`` from the Gram matrix of the samples.

    Notes
    -----
    Cost ``O(N·p·q·(p+q))`` per product (two GEMMs per chunk of samples, no loop over
    samples); ``‖M‖_F`` costs ``O(N·p·q·min(N, p q))`` once. Memory ``O(N·p·q + p² + q²)``:
    one centred copy of ``X`` in ``(p, N, q)`` layout plus a chunk-sized workspace — never the
    ``(pq)²`` covariance. Dense equivalent: ``Xc = X - X.mean(0)``,
    ``M = Xc.reshape(N, -1).T @ Xc.reshape(N, -1) / N``, ``kpsvd(M, ((p, p), (q, q)), rank)``.

    A ``dask.array`` ``X`` is never gathered: every block product with ``R(M)`` is one pass
    over the data, its per-chunk partial sums (p×p or q×q per column) added in a tree
    (:class:`~kronkit._kpsvd_core.ChunkedSamplesR`), with the active dask scheduler.
    ``center=True`` adds one pass up front for the mean (which also checks for NaN/Inf).
    ``‖M‖_F`` needs the P×P matrix: for ``P <= CHUNKED_NORM_MAX_P`` (1024) it costs one more
    pass whose per-chunk P×P sums travel; above that ``norm`` and ``residual`` are ``None``.
    ``method`` chooses as in memory: the dense route (``min(p², q²)`` products in blocks of 64
    columns, one pass per block) or Lanczos (one pass per product, two per Krylov step).
    ``method="randomized"`` (block subspace iteration: two passes per iteration, each with
    ``rank + max(rank, 10)`` columns) makes fewer passes but more products — the better choice
    when reading the data costs more than the products (small ``p``, ``q``; slow storage).
    """
    if is_dask_array(X):
        return _kpsvd_samples_chunked(X, rank, center=center, method=method,
                                      random_state=random_state, tol=tol, structure=structure,
                                      maxiter=maxiter)
    Xa = as_float(X, "X", ndim=3, dtype=np.float64)
    N, p, q = Xa.shape
    shp, method, tol, rng, level, bases, k = _samples_args(
        (N, p, q), rank, center, method, tol, random_state, structure, maxiter)
    if level == "nonnegative" and (center or Xa.min() < 0):
        raise ValueError("`structure`='nonnegative' for samples needs center=False and X >= 0 "
                         "(a centred covariance has negative entries in general)")
    mean = Xa.mean(axis=0) if center else None
    op = SamplesR(chunk_samples(Xa, mean), N)
    return _decompose(op, shp, k, method=method, tol=tol, rtol=None, rng=rng,
                      maxiter=maxiter, level=level, bases=bases)


#: ``kpsvd_samples`` of a dask array computes ``‖M‖_F`` (P×P partial sums per chunk) only up to
#: this P; above it ``norm`` and ``residual`` are None.
CHUNKED_NORM_MAX_P = 1024


def _kpsvd_samples_chunked(X: Any, rank: int, *, center: bool, method: str, random_state: Any,
                           tol: float, structure: Any, maxiter: int | None,
                           mean: np.ndarray | None = None) -> KPSVDResult:
    """:func:`kpsvd_samples` for a dask array (N, p, q) chunked along N.

    ``mean`` (with ``center=True``): the mean, already computed by the caller (with the NaN/Inf
    check); it saves the first pass and is subtracted inside each product's chunk layout.
    """
    from functools import partial

    from .._dask import row_chunks, tree_reduce_chunks

    if X.dtype.kind not in "biuf":
        raise TypeError(f"`X` must be a real numeric array, got dtype {X.dtype}")
    if X.ndim != 3:
        raise ValueError(f"`X` must be 3-D, got shape {X.shape}")
    Xd = row_chunks(X, "X")
    N, p, q = (int(v) for v in Xd.shape)
    shp, method, tol, rng, level, bases, k = _samples_args(
        (N, p, q), rank, center, method, tol, random_state, structure, maxiter)
    if not center:
        mean = None
    if (center and mean is None) or level == "nonnegative":  # one pass: mean, NaN/Inf, min
        total, bad, xmin, _ = tree_reduce_chunks(Xd, scan_chunk, combine_scans)
        if bad:
            raise non_finite_error("X", bad)
        if level == "nonnegative" and (center or xmin < 0):
            raise ValueError("`structure`='nonnegative' for samples needs center=False and "
                             "X >= 0 (a centred covariance has negative entries in general)")
        mean = total / N if center else None
    sq = None
    if p * q <= CHUNKED_NORM_MAX_P:
        C = tree_reduce_chunks(Xd, partial(second_moment, mean=mean), np.add)
        sq = float(np.vdot(C, C)) / float(N) ** 2
        if not math.isfinite(sq):
            raise ValueError("`X` contains NaN or Inf (its sample covariance is not finite)")
    op = ChunkedSamplesR(Xd, mean, sq)
    return _decompose(op, shp, k, method=method, tol=tol, rtol=None, rng=rng,
                      maxiter=maxiter, level=level, bases=bases)


# ----------------------------------------------------------------------------------------
# nearest Kronecker product
# ----------------------------------------------------------------------------------------


def _orient(vecs: list[np.ndarray], shapes, by_trace: bool) -> list[np.ndarray]:
    """Fix signs/phases of unit vectors a_1..a_d without changing a_1 ∘ ... ∘ a_d."""
    vecs = [v.copy() for v in vecs]
    d = len(vecs)
    for l in range(d - 1):
        v = vecs[l]
        if by_trace:
            c = -1.0 if np.trace(v.reshape(shapes[l])).real < 0 else 1.0
        else:
            j = int(np.argmax(np.abs(v)))
            c = np.conj(v[j]) / abs(v[j]) if v[j] != 0 else 1.0
        vecs[l] = v * c
        vecs[-1] = vecs[-1] * np.conj(c)
    return vecs


def nearest_kron(M: Any, shapes: Any, *, structure: Any = None, method: str = "auto",
                 tol: float = 1e-12, max_iter: int = 1000, random_state: Any = None
                 ) -> NearestKronResult:
    r"""The nearest Kronecker product ``A1 ⊗ ... ⊗ Ad`` to ``M`` in the Frobenius norm.

    d = 2: the leading KPSVD term with ``σ`` absorbed, solved exactly. d >= 3: the best
    rank-1 approximation of the rearranged tensor
    ``T[(i1, j1), ..., (id, jd)] = M[(i1..id), (j1..jd)]`` by the higher-order power method
    (rank-1 ALS), run from two starts — the sequential SVD ("peeling") solution and the HOSVD
    start (the leading left singular vector of each unfolding of ``T``) — keeping the larger
    ``σ``. The result is a local maximum of ``σ``, never worse than either start (the problem
    is NP-hard in general; a better maximum can exist). It reports ``n_iter``/``converged``
    (of the kept run) and warns with :class:`~kronkit.ConvergenceWarning` if ``max_iter``
    sweeps did not reach ``tol``.

    Parameters
    ----------
    M : array_like, scipy sparse matrix, LinearOperator, Kron or sequence of Kron
        As in :func:`kpsvd`. For d >= 3: a dense array or a sum of Kron terms (CP form; each
        power sweep costs ``O(K·Σ m_k n_k)``).
    shapes : sequence of (m_k, n_k)
        Two or more factor shapes; an int means a square block.
    structure : {None, "symmetric", "psd", "nonnegative"} or linear structure
        As in :func:`kpsvd`. ``"symmetric"`` returns the best *symmetric* factors; if a
        skew ⊗ skew pair is better (d = 2) its σ is in ``skew_sigma`` and a
        :class:`StructureWarning` is issued. ``"psd"``: every factor symmetric PSD.
        ``"nonnegative"``: every factor ``>= 0``. For d >= 3 ``"symmetric"`` imposes symmetric
        factors (skew alternatives are not searched).
    method, random_state
        SVD method of the d = 2 solve (see :func:`kpsvd`); the d >= 3 peeling start uses
        ``"auto"``.
    tol : float
        Power-method stop, on the factors (d >= 3): the estimated distance of the unit
        factors to the limit, ``δ·ρ/(1-ρ)`` with ``δ`` their change in a sweep and ``ρ`` the
        observed rate, is ``<= tol`` (σ, flat at the optimum, is not used).
    max_iter : int
        Power-method sweep cap (d >= 3).

    Returns
    -------
    NearestKronResult
        ``factors`` (σ split evenly, ``‖A_k‖_F = σ^(1/d)``), ``sigma``, ``residual``, ``norm``,
        ``n_iter``, ``converged``; unpacks to the factors.

    Examples
    --------
    >>> A, B = np.diag([1., 2.]), np.ones((3, 3))
    >>> F1, F2 = nearest_kron(np.kron(A, B), ((2, 2), (3, 3)))
    >>> np.allclose(np.kron(F1, F2), np.kron(A, B))
    True
    """
    shp = parse_shapes(shapes)
    d = len(shp)
    method = check_method(method)
    tol = _check_tol(tol, "tol")
    max_iter = check_int(max_iter, "max_iter", min_value=1)
    rng = rng_from(random_state)
    level, bases = _parse_structure(structure, shp)
    if d == 2:
        return _nearest_two(M, shp, level, bases, method=method, rng=rng)
    return _nearest_multi(M, shp, level, bases, tol=tol, max_iter=int(max_iter), rng=rng)


def _nearest_two(M, shp, level, bases, *, method, rng) -> NearestKronResult:
    op = _build_op(M, shp, level, rng)
    (m1, n1), (m2, n2) = shp
    sq = op.sqnorm
    norm = None if sq is None else math.sqrt(sq)
    if sq == 0.0:
        zeros = (np.zeros((m1, n1)), np.zeros((m2, n2)))
        return NearestKronResult(tuple(_readonly(z) for z in zeros), 0.0, 0.0, 0.0, 0, True)
    t = _svd_terms(op, shp, 1, level, bases, method=method, tol=DEFAULT_TOL, rtol=None,
                   rng=rng, maxiter=None, truncate=False)
    skew_sigma = None
    if level in ("symmetric", "psd"):
        sym = np.flatnonzero(~t.skew)
        if t.skew[0]:
            if level == "psd":
                raise ValueError("`structure`='psd' but `M` is not positive semi-definite: its "
                                 "leading Kronecker term is skew ⊗ skew")
            skew_sigma = float(t.s[0])
            warnings.warn(
                f"the best Kronecker approximation of this symmetric M is skew ⊗ skew "
                f"(σ = {t.s[0]:.6g}); returning the best symmetric ⊗ symmetric pair "
                f"(σ = {t.s[sym[0]]:.6g}) as requested by structure='symmetric'",
                StructureWarning, stacklevel=3,
            )
        j = int(sym[0])
        t.U, t.s, t.Vh, t.skew = t.U[:, [j]], t.s[[j]], t.Vh[[j]], t.skew[[j]]
    vecs = _orient([t.U[:, 0], t.Vh[0]], shp, by_trace=(level == "psd"))
    sigma = float(t.s[0])
    if level == "nonnegative":
        vecs = [np.abs(v) for v in vecs]
        sigma = float(vecs[0] @ op.matmat(vecs[1][:, None])[:, 0])
    if level == "psd":
        for l, v in enumerate(vecs):
            if not _is_psd(v.reshape(shp[l])):
                raise ValueError("`structure`='psd' but `M` is not positive semi-definite: the "
                                 "leading Kronecker factors are indefinite")
    residual: float | None
    if level is None and bases is None and t.exact_tail is not None:
        residual = math.sqrt(t.exact_tail)  # the SVD tail, no cancellation
    else:
        residual = _direct_residual(op, vecs[0][:, None], np.array([sigma]), vecs[1][None, :])
        if residual is None and sq is not None:
            residual = math.sqrt(max(sq - sigma ** 2, 0.0))
    scale = math.sqrt(sigma)
    factors = tuple(_readonly(scale * v.reshape(shp[l])) for l, v in enumerate(vecs))
    return NearestKronResult(factors, sigma, residual, norm, 0, True, skew_sigma)


def _nearest_multi(M, shp, level, bases, *, tol, max_iter, rng) -> NearestKronResult:
    d = len(shp)
    if level in ("symmetric", "psd"):
        bases = [symmetric_basis(m) for m, _ in shp]
    terms = _kron_terms(M)
    Md = None
    if terms is not None:
        Fs = _cp_factors(terms, shp)
        if level == "nonnegative":
            for k in range(Fs[0].shape[1]):
                signs = [np.sign(F[:, k][np.abs(F[:, k]) > 0]) for F in Fs]
                if any(np.unique(sg).size > 1 for sg in signs) or \
                        np.prod([sg[0] if sg.size else 1.0 for sg in signs]) < 0:
                    raise ValueError("`structure`='nonnegative' could not be verified for a sum "
                                     f"of Kronecker terms: term {k} is not nonnegative")
            Fs = [np.abs(F) for F in Fs]
        elif level is not None:
            # symmetry of M checked through the grouping (first factor) ⊗ (the rest)
            rest = np.stack([_kron_all([F[:, k].reshape(shp[l]) for l, F in enumerate(Fs)
                                        if l > 0]).ravel() for k in range(Fs[0].shape[1])], 1)
            p_rest = prod([m for m, _ in shp[1:]])
            _check_terms_structure(Fs[0], rest, (shp[0], (p_rest, p_rest)), level)
        sq = cp_sqnorm(Fs)
        Fc = Fs if bases is None else [np.asarray(Q.T @ F) for Q, F in zip(bases, Fs, strict=True)]
        out = hopm_cp(Fc, nonneg=(level == "nonnegative"), tol=tol, max_iter=max_iter)
    else:
        if sp.issparse(M) or _is_linear_operator(M):
            raise ValueError("`M` must be a dense array or a sum of Kron terms for "
                             f"{d} >= 3 factors, got {type(M).__name__}")
        Md = _as_matrix(M, "M")
        want = (prod([m for m, _ in shp]), prod([n for _, n in shp]))
        if Md.shape != want:
            raise ValueError(f"`M` must have shape {want} for shapes {shp}, got {Md.shape}")
        if level is not None:
            _check_dense_structure(Md, level)
        T = to_tensor(Md, shp)
        sq = float(np.vdot(T, T).real)
        if bases is not None:
            for l, Q in enumerate(bases):
                T = _mode_mul(T, l, Q.T)
        out = hopm_dense(T, nonneg=(level == "nonnegative"), tol=tol, max_iter=max_iter,
                         rng=rng)
    vecs = out.vecs
    if bases is not None:
        vecs = [np.asarray(Q @ v) for Q, v in zip(bases, vecs, strict=True)]
    if not out.converged:
        warnings.warn(f"nearest_kron: the power method did not converge in {max_iter} sweeps "
                      f"(tol={tol:g}); the result is the last iterate, still no worse than "
                      "either start", ConvergenceWarning, stacklevel=3)
    norm = math.sqrt(sq)
    sigma = float(out.sigma)
    if sigma == 0.0:
        factors = tuple(_readonly(np.zeros(s)) for s in shp)
        return NearestKronResult(factors, 0.0, norm, norm, out.n_iter, out.converged)
    vecs = _orient(vecs, shp, by_trace=(level == "psd"))
    if level == "psd":
        if np.trace(vecs[-1].reshape(shp[-1])).real < 0:
            raise ValueError("`structure`='psd' but `M` is not positive semi-definite: the "
                             "nearest Kronecker product is negative definite")
        for l, v in enumerate(vecs):
            if not _is_psd(v.reshape(shp[l])):
                raise ValueError("`structure`='psd' but `M` is not positive semi-definite: "
                                 f"nearest Kronecker factor {l} is indefinite")
    scale = sigma ** (1.0 / d)
    factors = tuple(_readonly(scale * v.reshape(shp[l])) for l, v in enumerate(vecs))
    if Md is not None:  # the difference itself: no cancellation for a near-exact product
        residual = float(np.linalg.norm(Md - _kron_all(factors)))
    else:  # a sum of Kron terms: sqrt(‖M‖² - σ²) (absolute accuracy ~1e-8·‖M‖)
        residual = math.sqrt(max(sq - sigma ** 2, 0.0))
    return NearestKronResult(factors, sigma, residual, norm, out.n_iter, out.converged)


def _kron_all(mats: Sequence[np.ndarray]) -> np.ndarray:
    out = mats[0]
    for m in mats[1:]:
        out = np.kron(out, m)
    return out
