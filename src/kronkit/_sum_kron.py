r"""Sums of Kronecker products ``S = Σ_t F_t1⊗…⊗F_td`` as operators (never formed densely).

``Kron(A, B) + Kron(C, D)`` is one; so are the covariance Kronecker PCA returns, the grid
Gaussian process ``K1⊗K2 + s²I`` and Kronecker sums ``A⊕B``. Solves, log-determinants and
quadratic forms are exact through the eigen form of :mod:`kronkit._sum_eig` (per-axis
(generalised) eigendecompositions, O(Σ n_k³) once); sums without one are factorised densely up
to ``DENSE_MAX_P`` and refused above it.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from ._checks import as_float, check_dense_size, check_multiplier
from ._errors import (
    DomainError,
    NotPositiveDefiniteError,
    SingularFactorError,
    UnsupportedSumError,
)
from ._factor import Factorization
from ._kron import Kron
from ._matmul import as_operand, dense_array, linear_operator, on_columns
from ._sum_eig import (
    EigenForm,
    FactorKind,
    analyse_factor,
    build_eigen_form,
    quad_grads,
)

__all__ = ["DENSE_MAX_P", "SumOfKron"]

_LOG_2PI = math.log(2.0 * math.pi)
#: Sums without an exact eigen form are factorised densely (O(P³)) up to this P.
DENSE_MAX_P = 4096


class SumOfKron:
    r"""A sum of Kronecker products ``S = Σ_t F_t1⊗…⊗F_td`` as an operator (never formed densely).

    Parameters
    ----------
    terms : sequence of Kron, or of factor sequences ``(F_t1, ..., F_td)``
        At least one term; every term has the same number ``d`` of factors, of the same shapes
        in every term. Stored as :class:`~kronkit.Kron` (copied, read-only). ``Kron + Kron``
        builds one too; ``SumOfKron + Kron`` appends a term and ``c * S`` scales every term.

    Notes
    -----
    Linear algebra acts on columns, like NumPy; statistics take observations as rows (see
    :class:`~kronkit.Kron`): ``S @ X``, ``X @ S``, ``S.solve(B)`` and ``np.asarray(S)`` are
    those of the dense matrix; ``matvec``/``rmatvec``/``solve_rows``, :meth:`inv_quad` and
    :meth:`logpdf` take rows ``(N, P)``. Products cost O(T·P·Σ n_k) per vector, any shapes.

    **Exact route** (:attr:`route` ``"eigen"``, square symmetric factors): when every axis
    ``k`` has a congruence ``V_k`` with ``V_kᵀ F_tk V_k`` diagonal for every term ``t``,
    ``S⁻¹ = (⊗V_k) diag(1/λ) (⊗V_k)ᵀ`` with ``λ = Σ_t ⊗_k diag(V_kᵀ F_tk V_k)``. That holds
    when, in each axis, every factor is a multiple of one of at most two symmetric matrices
    (one positive definite: the identity or a positive diagonal preferred, else the later
    term's) or of diagonal matrices only:

    * ``Kron(K1, …, Kd) + s2 * Kron(I, …, I)`` (per-axis ``eigh``);
    * ``Kron(K1, …, Kd) + Kron(D1, …, Dd)``, ``D_k`` positive diagonal (whitening by ``D``);
    * ``Kron(A1, …, Ad) + Kron(C1, …, Cd)``, ``C_k`` positive definite (``eigh(A_k, C_k)``);
    * Kronecker sums ``Kron(A, I) + Kron(I, B)`` (``A1⊕…⊕Ad``), optionally ``+ s2 * I``;
    * mixes such as ``Kron(Cg, K) + Kron(Cn, I)``.

    Cost O(Σ n_k³) once, O(P·Σ n_k) per vector; identity and diagonal factors are detected
    and cost nothing. Positive definiteness is read off ``λ`` (Sylvester's law of inertia).

    **Otherwise** (:attr:`route` ``"dense"``) the dense P×P matrix is factorised (O(P³)) for
    ``P ≤ DENSE_MAX_P`` (4096); larger ``P`` raises :class:`UnsupportedSumError` (a
    ``ValueError``) listing the supported forms.

    Dense equivalent: ``sum(functools.reduce(np.kron, t.factors) for t in S.terms)``.
    """

    __array_priority__ = 1000.0  # make ``ndarray @ SumOfKron`` defer to ``__rmatmul__``

    def __init__(self, terms: Sequence[Any]):
        if isinstance(terms, Kron):
            terms = [terms]
        try:
            items = list(terms)
        except TypeError as exc:
            raise TypeError(f"`terms` must be a sequence of Kron or factor sequences, got "
                            f"{type(terms).__name__}") from exc
        if not items:
            raise ValueError("`terms` must hold at least one term, got none")
        out: list[Kron] = []
        for k, t in enumerate(items):
            K = t if isinstance(t, Kron) else _term(t, k)
            if out and _factor_shapes(K) != _factor_shapes(out[0]):
                raise ValueError(f"`terms[{k}]` has factor shapes {_fmt(_factor_shapes(K))}, "
                                 f"expected {_fmt(_factor_shapes(out[0]))} like terms[0]")
            out.append(K)
        self._terms: tuple[Kron, ...] = tuple(out)
        self._init_cache()

    def _init_cache(self) -> None:
        self._kinds: tuple[tuple[FactorKind, ...], ...] | None = None
        self._structure: Any = None
        self._lock = threading.Lock()

    def __getstate__(self) -> dict:
        return {"_terms": self._terms}

    def __setstate__(self, state: dict) -> None:
        self._terms = state["_terms"]
        self._init_cache()

    # -- attributes ---------------------------------------------------------------------
    @property
    def terms(self) -> tuple[Kron, ...]:
        """The terms ``F_t1⊗…⊗F_td`` as :class:`~kronkit.Kron` operators."""
        return self._terms

    @property
    def n_terms(self) -> int:
        return len(self._terms)

    @property
    def n_factors(self) -> int:
        """``d``, the number of factors of every term."""
        return self._terms[0].n_factors

    @property
    def dims(self) -> tuple[int, ...]:
        """``(n_1, …, n_d)``: a vector ``y`` that ``S`` multiplies is the row-major flattening
        of a tensor of this shape."""
        return self._terms[0].col_dims

    @property
    def col_dims(self) -> tuple[int, ...]:
        """``dims``, named as :attr:`Kron.col_dims <kronkit.Kron.col_dims>`."""
        return self.dims

    @property
    def shapes(self) -> tuple[tuple[int, int], ...]:
        """``((m_1, n_1), …, (m_d, n_d))``: the shapes of the factors of every term."""
        return _factor_shapes(self._terms[0])

    @property
    def is_square(self) -> bool:
        """Whether the factors are square (needed by trace, diag and the Gaussian quantities)."""
        return self._terms[0].is_square

    @property
    def shape(self) -> tuple[int, int]:
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
        return (f"SumOfKron({self.n_terms} term(s) of {_fmt(self.shapes)}, "
                f"shape={self.shape})")

    def _require_square(self, what: str) -> None:
        if not self.is_square:
            raise ValueError(f"`SumOfKron.{what}` needs square factors, got terms of "
                             f"{_fmt(self.shapes)}")

    # -- arithmetic -----------------------------------------------------------------------
    def __add__(self, other: Any) -> SumOfKron:
        if isinstance(other, Kron):
            return SumOfKron([*self._terms, other])
        if isinstance(other, SumOfKron):
            return SumOfKron([*self._terms, *other.terms])
        return NotImplemented

    def __radd__(self, other: Any) -> SumOfKron:
        if isinstance(other, (int, float)) and not isinstance(other, bool) and other == 0:
            return self  # ``sum(terms)`` starts from 0
        if isinstance(other, Kron):
            return SumOfKron([other, *self._terms])
        return NotImplemented

    def restrict(self, observed: Any, **options: Any) -> Any:
        """``S_OO`` on the ``observed`` cells (boolean, grid-shaped): a :class:`~kronkit.Restricted`
        (exact by the capacitance identities; options ``route``, ``rtol``, ``maxiter``)."""
        from ._cell_ops import Restricted

        return Restricted(self, observed, **options)

    def __sub__(self, other: Any) -> SumOfKron:
        if isinstance(other, (Kron, SumOfKron)):
            return self + (-1.0) * other
        return NotImplemented

    def __mul__(self, c: Any) -> SumOfKron:
        val = check_multiplier(c, "*", "SumOfKron")
        return SumOfKron([K * val for K in self._terms])

    __rmul__ = __mul__

    def __truediv__(self, c: Any) -> SumOfKron:
        val = check_multiplier(c, "/", "SumOfKron")
        if val == 0:
            raise DomainError("the divisor in `SumOfKron / c` must be non-zero, got c = 0.0",
                              value=val)
        return SumOfKron([K / val for K in self._terms])

    def __neg__(self) -> SumOfKron:
        return self * -1.0

    # -- products -----------------------------------------------------------------------
    def matvec(self, Y: Any) -> np.ndarray:
        """``S`` applied to every row of ``Y`` of shape ``(..., N)`` (vectors as rows):
        ``Σ_t T_t y``, shape ``(..., M)``; ``Y @ S.to_dense().T``."""
        out = self._terms[0].matvec(Y)
        for K in self._terms[1:]:
            out = out + K.matvec(Y)
        return out

    def rmatvec(self, Y: Any) -> np.ndarray:
        """``Sᵀ`` applied to every row of ``Y`` of shape ``(..., M)``: ``Y @ S.to_dense()``."""
        out = self._terms[0].rmatvec(Y)
        for K in self._terms[1:]:
            out = out + K.rmatvec(Y)
        return out

    def __matmul__(self, X: Any) -> np.ndarray:
        """``S @ X`` as ``S.to_dense() @ X``: a 1-D ``X``, or the columns of ``X`` (N, k)."""
        arr = as_operand(X, "X", self.shape[1], "M @ X", self.shape, self.dtype)
        return on_columns(self.matvec, arr)

    def __rmatmul__(self, X: Any) -> np.ndarray:
        """``X @ S`` as ``X @ S.to_dense()`` (the rows of ``X``)."""
        return self.rmatvec(X)

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        """``np.asarray(S)``: the dense matrix, under the size guard of :meth:`to_dense`."""
        return dense_array(self, "SumOfKron", dtype, copy)

    @property
    def T(self) -> SumOfKron:
        """The transpose ``Σ_t F_t1ᵀ⊗…⊗F_tdᵀ``."""
        return SumOfKron([K.T for K in self._terms])

    def transpose(self) -> SumOfKron:
        return self.T

    def aslinearoperator(self) -> Any:
        """A ``scipy.sparse.linalg.LinearOperator`` (columns, as ``@``)."""
        return linear_operator(self, self.matvec, self.rmatvec)

    def to_dense(self, *, max_bytes: int | None = None) -> np.ndarray:
        """``Σ_t np.kron(F_t1, …)`` (allocates the full matrix); refused (``ValueError``) above
        ``max_bytes`` (default :data:`kronkit.DENSE_MAX_BYTES`), as ``Kron.to_dense``."""
        check_dense_size(self.shape, self.dtype, "`SumOfKron.to_dense()`", max_bytes=max_bytes)
        big = np.iinfo(np.int64).max  # checked just above
        out = self._terms[0].to_dense(max_bytes=big)
        for K in self._terms[1:]:
            out = out + K.to_dense(max_bytes=big)
        return out

    def trace(self) -> float:
        """``Σ_t Π_k tr F_tk`` (square factors)."""
        self._require_square("trace")
        return float(sum(K.trace() for K in self._terms))

    def diag(self) -> np.ndarray:
        """The diagonal (length P; square factors): ``Σ_t ⊗_k diag(F_tk)``."""
        self._require_square("diag")
        return sum(K.diag() for K in self._terms)  # type: ignore[return-value]

    # -- structure --------------------------------------------------------------------------
    def factor_kinds(self) -> tuple[tuple[FactorKind, ...], ...]:
        """``kinds[t][k]``: whether factor ``k`` of term ``t`` is a scaled identity, diagonal or
        full (cached)."""
        if self._kinds is None:
            self._kinds = tuple(tuple(analyse_factor(F) for F in K.factors)
                                for K in self._terms)
        return self._kinds

    def _factorize(self, what: str) -> Any:
        self._require_square(what)
        with self._lock:
            if self._structure is None:
                self._structure = self._build_structure()
        return self._structure

    def _build_structure(self) -> Any:
        try:
            return build_eigen_form(self.factor_kinds(), self.dims)
        except UnsupportedSumError as exc:
            P = self.shape[0]
            if P > DENSE_MAX_P:
                raise UnsupportedSumError(
                    f"this sum of {self.n_terms} Kronecker terms has no exact eigen form "
                    f"({exc}); the dense route needs P <= DENSE_MAX_P = {DENSE_MAX_P}, got "
                    f"P = {P}"
                ) from None
        M = self.to_dense()
        scale = float(np.max(np.abs(M))) if M.size else 0.0
        if np.max(np.abs(M - M.T)) <= 64 * np.finfo(np.float64).eps * scale:
            M = 0.5 * (M + M.T)  # symmetric up to rounding: Cholesky if positive definite
        return Factorization(M, 0)

    @property
    def route(self) -> str:
        """``"eigen"`` (exact, per-axis eigendecompositions) or ``"dense"`` (the P×P matrix,
        O(P³), for sums without an eigen form and ``P ≤ DENSE_MAX_P``)."""
        return "eigen" if isinstance(self._factorize("route"), EigenForm) else "dense"

    def eigen_form(self) -> EigenForm:
        """The exact eigen form ``S⁻¹ = (⊗V_k) diag(1/λ) (⊗V_k)ᵀ`` (cached); raises
        :class:`UnsupportedSumError` (listing the supported forms) for other sums."""
        s = self._factorize("eigen_form")
        if not isinstance(s, EigenForm):
            build_eigen_form(self.factor_kinds(), self.dims)  # raises, naming the axis
        return s

    def _pd(self, what: str) -> Any:
        """The structure, after checking that ``S`` is positive definite."""
        s = self._factorize(what)
        if isinstance(s, EigenForm):
            if not s.is_positive_definite:
                k = int(np.argmin(s.lam))
                raise NotPositiveDefiniteError(
                    f"`SumOfKron.{what}` needs a positive definite sum; its smallest eigenvalue "
                    f"(relative to the metric ⊗C_k of the eigen form; of S itself when every "
                    f"axis is orthogonal) is {s.lam.ravel()[k]:.6g} at grid index "
                    f"{np.unravel_index(k, s.lam.shape)}"
                )
        elif s.kind != "cholesky":
            if not s.symmetric:  # symmetrised in _build_structure when within rounding
                raise NotPositiveDefiniteError(
                    f"`SumOfKron.{what}` needs a symmetric positive definite sum; this sum of "
                    f"{self.n_terms} Kronecker terms is not symmetric"
                )
            ev = float(np.linalg.eigvalsh(self.to_dense())[0])
            raise NotPositiveDefiniteError(
                f"`SumOfKron.{what}` needs a positive definite sum; the sum of {self.n_terms} "
                f"Kronecker terms has smallest eigenvalue {ev:.6g}"
            )
        return s

    @property
    def is_positive_definite(self) -> bool:
        """Whether ``S`` is symmetric positive definite (factorises it if needed; ``False``
        for rectangular factors)."""
        if not self.is_square:
            return False
        try:
            self._pd("is_positive_definite")
        except (NotPositiveDefiniteError, UnsupportedSumError):
            return False
        return True

    # -- solves and Gaussian quantities -----------------------------------------------------
    def _rows(self, Y: Any, name: str, what: str) -> tuple[np.ndarray, bool]:
        self._require_square(what)
        arr = as_float(Y, name, min_ndim=1, dtype=np.float64)
        P = self.shape[0]
        if arr.shape[-1] != P:
            raise ValueError(f"`{name}` must have length {P} in its last axis, got shape "
                             f"{arr.shape}")
        return arr, arr.ndim == 1

    def solve_rows(self, Y: Any) -> np.ndarray:
        """``S⁻¹ y`` for every row of ``Y`` of shape ``(..., P)`` (vectors as rows)."""
        arr, _ = self._rows(Y, "Y", "solve_rows")
        s = self.check_nonsingular()
        if isinstance(s, EigenForm):
            return s.solve_rows(arr)
        return s.solve(arr.reshape(-1, arr.shape[-1]).T).T.reshape(arr.shape)

    def check_nonsingular(self) -> Any:
        """Raise :class:`SingularFactorError` if ``S`` is singular to working precision (the
        smallest ``|λ|`` at most ``eps`` times the largest); return the factorisation."""
        s = self._factorize("solve")
        if isinstance(s, EigenForm):
            lam = np.abs(s.lam)
            if not np.all(lam > lam.max() * np.finfo(np.float64).eps):
                raise SingularFactorError(
                    f"the sum of {self.n_terms} Kronecker terms is singular to working precision "
                    f"(smallest |eigenvalue| {lam.min():.3g}, largest {lam.max():.3g})"
                )
        else:
            s.check()
        return s

    def half_apply(self, Z: np.ndarray) -> np.ndarray:
        """``H z`` for every row of ``Z`` (..., P) with ``H Hᵀ = S`` (``S`` positive definite):
        ``(⊗W_k) diag(√λ)`` on the eigen route, the dense Cholesky factor otherwise; maps
        standard normal rows to ``N(0, S)``."""
        s = self._pd("half_apply")
        if isinstance(s, EigenForm):
            return s.half_apply(Z)
        return Z @ s.chol().T

    def solve(self, B: Any) -> np.ndarray:
        """``np.linalg.solve(S.to_dense(), B)``: a 1-D ``B`` or the columns of ``B``."""
        arr = as_operand(B, "B", self.shape[0], "S.solve(B)", self.shape, self.dtype)
        return on_columns(self.solve_rows, arr)

    def logdet(self) -> float:
        """``log det S`` (``S`` positive definite; :class:`NotPositiveDefiniteError` otherwise)."""
        s = self._pd("logdet")
        return s.logdet if isinstance(s, EigenForm) else s.slogdet()[1]

    def slogdet(self) -> tuple[float, float]:
        """``(sign, log |det S|)`` like ``np.linalg.slogdet`` (any nonsingular symmetric sum of
        the eigen route; the dense route needs ``S`` positive definite)."""
        s = self._factorize("slogdet")
        if isinstance(s, EigenForm):
            return s.slogdet()
        return 1.0, self.logdet()

    def inv_quad(self, Y: Any) -> Any:
        """``yᵀ S⁻¹ y`` for rows ``Y`` of shape (P,) or (N, P); O(P·Σ n_k) per row."""
        arr, single = self._rows(Y, "Y", "inv_quad")
        s = self._pd("inv_quad")
        W = arr.reshape(-1, arr.shape[-1])
        if isinstance(s, EigenForm):
            out = s.inv_quad(W)
        else:
            Z = s.tri_solve(W.T)
            out = np.einsum("ij,ij->j", Z, Z)
        return float(out[0]) if single else out.reshape(arr.shape[:-1])

    def logpdf(self, Y: Any, mean: Any = None) -> Any:
        """Gaussian ``log N(y; μ, S) = −½(P log 2π + log det S + (y−μ)ᵀS⁻¹(y−μ))``."""
        arr, _ = self._rows(Y, "Y", "logpdf")
        if mean is not None:
            arr = arr - as_float(mean, "mean", ndim=1, dtype=np.float64)
        return -0.5 * (self.shape[0] * _LOG_2PI + self.logdet() + self.inv_quad(arr))

    # -- gradients (package-public: the calculus and the distributions use them) ------------
    def logdet_grads(self, scale: float = 1.0) -> tuple[tuple[np.ndarray, ...], ...]:
        """``G[t][k] = scale · ∂ log det S / ∂F_tk`` (S positive definite)."""
        s = self._pd("logdet_grad")
        if isinstance(s, EigenForm):
            return s.logdet_grads(scale)
        return _dense_logdet_grads(self, s, scale)

    def quad_grads(self, U: np.ndarray, c: np.ndarray | None = None, per_obs: bool = False,
                   V: np.ndarray | None = None) -> tuple[tuple[np.ndarray, ...], ...]:
        """``G[t][k] = Σ_i c_i ∂(u_iᵀ S v_i)/∂F_tk`` for rows ``U`` and ``V`` (default ``U``),
        shape (N, P), held fixed."""
        return quad_grads([K.factors for K in self._terms], self.factor_kinds(), self.dims,
                          U, c, per_obs, V)


def _dense_logdet_grads(S: SumOfKron, f: Factorization,
                        scale: float) -> tuple[tuple[np.ndarray, ...], ...]:
    """The dense route: ``∂ log det S/∂F_tk`` contracts ``S⁻¹`` (as a 2d-way tensor) with the
    other factors of term ``t``."""
    dims = S.dims
    d = len(dims)
    Sinv = scale * f.solve(np.eye(S.shape[0])).reshape(*dims, *dims)
    letters = "abcdefghijklmnopqrstuvwxyz"
    rows, cols = letters[:d], letters[d:2 * d]
    out = []
    for K in S.terms:
        grads = []
        for k in range(d):
            ops = [Sinv]
            spec = [cols + rows]  # S⁻¹[i', i] pairs with F[i_j, i'_j]
            for j in range(d):
                if j != k:
                    ops.append(K.factors[j])
                    spec.append(rows[j] + cols[j])
            grads.append(np.einsum(",".join(spec) + "->" + rows[k] + cols[k], *ops))
        out.append(tuple(grads))
    return tuple(out)


def _term(t: Any, k: int) -> Kron:
    """``Kron(*t)``, with errors naming the term (``terms[k]``) as well as the factor."""
    if isinstance(t, np.ndarray) or not isinstance(t, Sequence):
        raise TypeError(f"`terms[{k}]` must be a Kron or a sequence of factors, got "
                        f"{type(t).__name__}")
    try:
        return Kron(*t)
    except (ValueError, TypeError) as exc:
        raise type(exc)(f"`terms[{k}]`: {exc}") from None


def _factor_shapes(K: Kron) -> tuple[tuple[int, int], ...]:
    return tuple((int(F.shape[0]), int(F.shape[1])) for F in K.factors)


def _fmt(shapes: Sequence[tuple[int, int]]) -> str:
    return " ⊗ ".join(f"{m}×{n}" for m, n in shapes)
