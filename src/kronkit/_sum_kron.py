r"""Sums of Kronecker products ``M = Σ_k A_k⊗B_k`` as operators (never formed densely).

The covariance Kronecker PCA returns, and the home of the exact closed forms for sums of
Kronecker products: for two terms with the first symmetric positive definite and the second
symmetric, the simultaneous diagonalisation ``A_1^{-1/2} A_2 A_1^{-1/2} = U diag(c) Uᵀ`` (and
likewise for ``B``) gives ``M = (W_A⊗W_B) diag(1 + c_i d_j) (W_A⊗W_B)ᵀ``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from ._checks import as_float, check_dense_size
from ._errors import NotPositiveDefiniteError
from ._factor import Factorization, mode_solve
from ._kron import Kron
from ._matmul import as_operand, dense_array, on_columns

__all__ = ["DENSE_MAX_P", "SumOfKron"]

_LOG_2PI = math.log(2.0 * math.pi)
#: Sums of three or more Kronecker terms are factorised densely (O(P³)) up to this P.
DENSE_MAX_P = 4096


class _Whitened(NamedTuple):
    """``Σ = (W_A⊗W_B) diag(vec lam) (W_A⊗W_B)ᵀ`` with ``W_A = L_A U``, ``W_B = L_B V``."""

    fA: Factorization
    fB: Factorization
    U: np.ndarray
    V: np.ndarray
    lam: np.ndarray  # (p, q)
    logdet: float


class SumOfKron:
    r"""A sum of Kronecker products ``M = Σ_k A_k⊗B_k`` as an operator (never formed densely).

    Parameters
    ----------
    terms : sequence of Kron, or of (A_k, B_k) pairs
        At least one term; every term has two factors, of the same shapes in every term:
        ``A_k`` of shape ``(m1, n1)`` and ``B_k`` of shape ``(m2, n2)`` (square ``(p, p)``,
        ``(q, q)`` for the Gaussian quantities). Stored as :class:`~kronkit.Kron` (copied,
        read-only).

    Notes
    -----
    This is the one form of a sum of Kronecker products in kronkit: :func:`~kronkit.kpsvd`
    and :func:`~kronkit.nearest_kron` accept it as ``M``, and
    :meth:`KPSVDResult.to_sum() <kronkit.KPSVDResult.to_sum>` returns one.

    Linear algebra acts on columns, like NumPy; statistics take observations as rows (see
    :class:`~kronkit.Kron`): ``M @ X``, ``X @ M`` and ``np.asarray(M)`` are those of the dense
    matrix; ``matvec``/``rmatvec``, :meth:`inv_quad` and :meth:`logpdf` take rows ``(N, P)``.

    Products cost O(r·M·(n1+n2)) per vector, any shapes. :meth:`trace` and :meth:`diag` need
    square factors; :meth:`logdet`, :meth:`inv_quad` and :meth:`logpdf` (a Gaussian with
    covariance ``M``) need square factors (``ValueError`` otherwise) and ``M`` positive
    definite, and use:

    * ``r ≤ 2`` with the first term's factors symmetric positive definite (after a common
      sign flip) and the second term's symmetric: the simultaneous diagonalisation
      ``A_1⁻½A_2A_1⁻½ = U diag(c) Uᵀ``, ``B_1⁻½B_2B_1⁻½ = V diag(d) Vᵀ``, so
      ``M = (L_AU⊗L_BV)(I + diag(c)⊗diag(d))(L_AU⊗L_BV)ᵀ`` — O(p³ + q³) once and
      O(P·(p+q)) per row;
    * otherwise the dense P×P matrix and its Cholesky factor, O(P³), for ``P ≤ DENSE_MAX_P``
      (4096); larger ``P`` raises ``ValueError``.

    Dense equivalent: ``sum(np.kron(A_k, B_k) for k ...)``.
    """

    __array_priority__ = 1000.0  # make ``ndarray @ SumOfKron`` defer to ``__rmatmul__``

    def __init__(self, terms: Sequence[Any]):
        if isinstance(terms, Kron):
            terms = [terms]
        try:
            items = list(terms)
        except TypeError as exc:
            raise TypeError(f"`terms` must be a sequence of Kron or (A, B) pairs, got "
                            f"{type(terms).__name__}") from exc
        if not items:
            raise ValueError("`terms` must hold at least one term, got none")
        out: list[Kron] = []
        for k, t in enumerate(items):
            K = t if isinstance(t, Kron) else Kron(*t)
            if K.n_factors != 2:
                raise ValueError(f"`terms[{k}]` must have two factors, got {K!r}")
            if out and _factor_shapes(K) != _factor_shapes(out[0]):
                raise ValueError(f"`terms[{k}]` has factor shapes {_factor_shapes(K)}, expected "
                                 f"{_factor_shapes(out[0])} like terms[0]")
            out.append(K)
        self._terms: tuple[Kron, ...] = tuple(out)
        self._structure: Any = None

    # -- attributes ---------------------------------------------------------------------
    @property
    def terms(self) -> tuple[Kron, ...]:
        """The terms ``A_k⊗B_k`` as :class:`~kronkit.Kron` operators."""
        return self._terms

    @property
    def n_terms(self) -> int:
        return len(self._terms)

    @property
    def dims(self) -> tuple[int, int]:
        """``(p, q)`` (square factors); in general ``(n1, n2)``: a vector ``y`` that ``M``
        multiplies is the row-major flattening of an ``(n1, n2)`` matrix."""
        return self._terms[0].col_dims  # type: ignore[return-value]

    @property
    def shapes(self) -> tuple[tuple[int, int], tuple[int, int]]:
        """``((m1, n1), (m2, n2))``: the shapes of ``A_k`` and ``B_k``."""
        return _factor_shapes(self._terms[0])

    @property
    def is_square(self) -> bool:
        """Whether the factors are square (needed by trace, diag and the Gaussian quantities)."""
        return self._terms[0].is_square

    @property
    def shape(self) -> tuple[int, int]:
        """``(m1*m2, n1*n2)``."""
        return self._terms[0].shape

    @property
    def dtype(self) -> np.dtype:
        """The common dtype of the terms."""
        return np.result_type(*(K.dtype for K in self._terms))

    @property
    def ndim(self) -> int:
        """2, as for the dense matrix."""
        return 2

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        (m1, n1), (m2, n2) = self.shapes
        return (f"SumOfKron({self.n_terms} term(s) of {m1}×{n1} ⊗ {m2}×{n2}, "
                f"shape={self.shape})")

    def _require_square(self, what: str) -> None:
        if not self.is_square:
            (m1, n1), (m2, n2) = self.shapes
            raise ValueError(f"`SumOfKron.{what}` needs square factors, got terms of "
                             f"{m1}×{n1} ⊗ {m2}×{n2}")

    # -- products -----------------------------------------------------------------------
    def matvec(self, Y: Any) -> np.ndarray:
        """``M`` applied to every row of ``Y`` of shape ``(..., n1*n2)`` (vectors as rows):
        ``Σ_k (A_k⊗B_k) y``, shape ``(..., m1*m2)``; ``Y @ M.to_dense().T``."""
        out = self._terms[0].matvec(Y)
        for K in self._terms[1:]:
            out = out + K.matvec(Y)
        return out

    def rmatvec(self, Y: Any) -> np.ndarray:
        """``Mᵀ`` applied to every row of ``Y`` of shape ``(..., m1*m2)``: ``Y @ M.to_dense()``."""
        out = self._terms[0].rmatvec(Y)
        for K in self._terms[1:]:
            out = out + K.rmatvec(Y)
        return out

    def __matmul__(self, X: Any) -> np.ndarray:
        """``M @ X`` as ``M.to_dense() @ X``: a 1-D ``X``, or the columns of ``X`` (N, k)."""
        arr = as_operand(X, "X", self.shape[1], "M @ X", self.shape, self.dtype)
        return on_columns(self.matvec, arr)

    def __rmatmul__(self, X: Any) -> np.ndarray:
        """``X @ M`` as ``X @ M.to_dense()`` (the rows of ``X``)."""
        return self.rmatvec(X)

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        """``np.asarray(M)``: the dense matrix, under the size guard of :meth:`to_dense`."""
        return dense_array(self, "SumOfKron", dtype, copy)

    def to_dense(self, *, max_bytes: int | None = None) -> np.ndarray:
        """``Σ_k np.kron(A_k, B_k)`` (allocates ``(m1*m2, n1*n2)``); refused (``ValueError``)
        above ``max_bytes`` (default :data:`kronkit.DENSE_MAX_BYTES`), as ``Kron.to_dense``."""
        check_dense_size(self.shape, self.dtype, "`SumOfKron.to_dense()`", max_bytes=max_bytes)
        big = np.iinfo(np.int64).max  # checked just above
        out = self._terms[0].to_dense(max_bytes=big)
        for K in self._terms[1:]:
            out = out + K.to_dense(max_bytes=big)
        return out

    def trace(self) -> float:
        """``Σ_k tr A_k · tr B_k`` (square factors)."""
        self._require_square("trace")
        return float(sum(K.trace() for K in self._terms))

    def diag(self) -> np.ndarray:
        """The diagonal (length P; square factors)."""
        self._require_square("diag")
        return sum(K.diag() for K in self._terms)  # type: ignore[return-value]

    # -- Gaussian quantities --------------------------------------------------------------
    def _whitened(self) -> _Whitened | None:
        """The simultaneous-diagonalisation form for r ≤ 2, or None if it does not apply."""
        if self.n_terms > 2:
            return None
        A1, B1 = self._terms[0].factors
        sign = 1.0 if np.trace(A1) >= 0 else -1.0
        fA = Factorization(sign * A1, 0)
        fB = Factorization(sign * B1, 1)
        if fA.kind != "cholesky" or fB.kind != "cholesky":
            return None
        p, q = self.dims
        if self.n_terms == 1:
            U, V = np.eye(p), np.eye(q)
            c, d = np.zeros(p), np.zeros(q)
        else:
            A2, B2 = self._terms[1].factors
            if not (_is_symmetric(A2) and _is_symmetric(B2)):
                return None
            CA = _congruence(fA, A2)
            CB = _congruence(fB, B2)
            c, U = np.linalg.eigh(CA)
            d, V = np.linalg.eigh(CB)
        lam = 1.0 + np.outer(c, d)
        if not np.all(lam > 0):
            raise NotPositiveDefiniteError(
                f"the sum of Kronecker terms is not positive definite: its eigenvalues relative to "
                f"the first term, 1 + c_i·d_j, reach {lam.min():.6g} <= 0"
            )
        logdet = q * fA.slogdet()[1] + p * fB.slogdet()[1] + float(np.sum(np.log(lam)))
        return _Whitened(fA, fB, U, V, lam, logdet)

    def _factorize(self, what: str) -> Any:
        self._require_square(what)
        if self._structure is None:
            w = self._whitened()
            if w is not None:
                self._structure = w
            else:
                P = self.shape[0]
                if P > DENSE_MAX_P:
                    raise ValueError(
                        f"the log-determinant and solves of a sum of {self.n_terms} Kronecker "
                        f"terms need the dense P×P matrix here; P = {P} exceeds DENSE_MAX_P = "
                        f"{DENSE_MAX_P} (use n_terms <= 2)"
                    )
                M = self.to_dense()
                M = 0.5 * (M + M.T)
                f = Factorization(M, 0)
                if f.kind != "cholesky":
                    ev = float(np.linalg.eigvalsh(M)[0])
                    raise NotPositiveDefiniteError(
                        f"the sum of {self.n_terms} Kronecker terms is not positive definite "
                        f"(smallest eigenvalue {ev:.6g})"
                    )
                self._structure = f
        return self._structure

    @property
    def is_positive_definite(self) -> bool:
        """Whether ``M`` is symmetric positive definite (factorises it if needed; ``False``
        for rectangular factors)."""
        if not self.is_square:
            return False
        try:
            self._factorize("is_positive_definite")
        except NotPositiveDefiniteError:
            return False
        return True

    def logdet(self) -> float:
        """``log det M`` (``M`` positive definite; NotPositiveDefiniteError otherwise)."""
        s = self._factorize("logdet")
        if isinstance(s, _Whitened):
            return s.logdet
        return s.slogdet()[1]

    def inv_quad(self, Y: Any) -> Any:
        """``yᵀ M⁻¹ y`` for rows ``Y`` of shape (P,) or (N, P); O(P·(p+q)) per row (r ≤ 2)."""
        self._require_square("inv_quad")
        arr = as_float(Y, "Y", ndim=(1, 2), dtype=np.float64)
        P = self.shape[0]
        if arr.shape[-1] != P:
            raise ValueError(f"`Y` must have length {P} in its last axis, got shape {arr.shape}")
        single = arr.ndim == 1
        W = arr.reshape(-1, P)
        s = self._factorize("inv_quad")
        if isinstance(s, _Whitened):
            p, q = self.dims
            T = mode_solve(W.reshape(-1, p, q), s.fA, 0, 2, tri=True)
            T = mode_solve(T, s.fB, 1, 2, tri=True)
            Z = s.U.T @ T @ s.V  # (N, p, q)
            out = np.einsum("nij,nij->n", Z * (1.0 / s.lam), Z)
        else:
            Z = s.tri_solve(W.T)
            out = np.einsum("ij,ij->j", Z, Z)
        return float(out[0]) if single else out

    def logpdf(self, Y: Any, mean: Any = None) -> Any:
        """Gaussian ``log N(y; μ, M) = −½(P log 2π + log det M + (y−μ)ᵀM⁻¹(y−μ))``."""
        self._require_square("logpdf")
        arr = as_float(Y, "Y", ndim=(1, 2), dtype=np.float64)
        if mean is not None:
            arr = arr - as_float(mean, "mean", ndim=1, dtype=np.float64)
        return -0.5 * (self.shape[0] * _LOG_2PI + self.logdet() + self.inv_quad(arr))


def _factor_shapes(K: Kron) -> tuple[tuple[int, int], tuple[int, int]]:
    A, B = K.factors
    return (A.shape[0], A.shape[1]), (B.shape[0], B.shape[1])


def _is_symmetric(M: np.ndarray) -> bool:
    scale = float(np.max(np.abs(M))) if M.size else 0.0
    return bool(np.max(np.abs(M - M.T)) <= 64 * np.finfo(np.float64).eps * scale)


def _congruence(f: Factorization, M: np.ndarray) -> np.ndarray:
    """``L⁻¹ M L⁻ᵀ`` (symmetrised) for the Cholesky factor ``L`` of ``f``."""
    H = f.tri_solve(M)
    C = f.tri_solve(H.T)
    return 0.5 * (C + C.T)
