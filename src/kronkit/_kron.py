"""The Kronecker operator ``Kron(A1, ..., Ad)`` and its per-factor factorisation cache."""

from __future__ import annotations

import functools
import math
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from ._checks import as_float, check_dense_size, check_finite, check_multiplier, float_dtype, overflow_error
from ._errors import DomainError
from ._factor import (
    Factorization,
    frozen,
    kron_logdet,
    kron_sign,
    mode_solve,
    warn_ill_conditioned,
)
from ._hot import spd_rows
from ._matmul import as_operand, dense_array, linear_operator, on_columns
from ._vec import apply_modes, mode_apply, to_tensor, to_vec

__all__ = ["Kron", "as_kron"]


_MAG_LO, _MAG_HI = 2.0**-200, 2.0**200  # magnitudes beyond which products may over/underflow
_FLOATS = (np.dtype(np.float64), np.dtype(np.float32))
_CACHE_ATTRS = ("_facts", "_lock", "_extreme", "_mags")  # rebuilt, never pickled


def overflow_checked():
    """Silence NumPy's overflow warnings where the caller checks the result and raises."""
    return np.errstate(over="ignore", invalid="ignore")


class Kron:
    r"""The Kronecker product ``A1 ⊗ A2 ⊗ ... ⊗ Ad`` as an operator, never formed densely.

    ``Kron(A1, ..., Ad)`` means ``np.kron(A1, np.kron(A2, ...))``: a vector ``y`` of length
    ``P = n1 * ... * nd`` is the row-major flattening of a tensor of shape ``(n1, ..., nd)``,
    and ``Kron(A, B) @ Y.ravel() == (A @ Y @ B.T).ravel()``.

    Parameters
    ----------
    *factors : array_like of shape (m_k, n_k), or Kron
        One or more 2-D real factors (square or rectangular). A ``Kron`` argument contributes
        its own factors. Integer input is cast to float64; float32 is kept if every factor is
        float32. Factors are copied and stored read-only; the caller's arrays are never touched.

    Notes
    -----
    **Linear algebra acts on columns, like NumPy; statistics take observations as rows.**
    With ``D = K.to_dense()``: ``K @ M == D @ M`` (``M`` of shape ``(N, k)``: the columns; a
    stack ``(..., N, k)`` as in ``np.matmul``), ``X @ K == X @ D`` (the rows of ``X``),
    ``K.solve(B) == np.linalg.solve(D, B)``, ``np.asarray(K) == D`` (size guarded). The
    row-wise methods take vectors ``Y`` of shape ``(..., N)`` as rows, as the statistical
    functions take observations ``(N, P)`` (like scipy.stats and scikit-learn):
    ``K.matvec(Y) == Y @ D.T``, ``K.rmatvec(Y) == Y @ D``, ``K.solve_rows(Y) ==
    np.linalg.solve(D, Y.T).T``, ``K.inv_quad(Y)`` (one form per row). ``Kron @ Kron`` is
    the mixed product ``(A1⊗..⊗Ad)(B1⊗..⊗Bd) = (A1B1)⊗..⊗(AdBd)``, a Kron.

    Factorisations (Cholesky for symmetric positive definite factors, LU otherwise; no eigen
    clamping) are computed once per factor, on first need, and reused by ``solve``, ``inv``,
    ``logdet``, ``inv_quad`` and the calculus functions. Nothing but :meth:`to_dense`
    allocates a P×P array. Costs: ``matvec`` O(P·Σ n_k) per vector; ``solve`` O(Σ n_k³) once
    plus O(P·Σ n_k) per vector; ``logdet`` O(Σ n_k³).
    """

    __array_priority__ = 1000.0  # make ``ndarray @ Kron`` defer to ``Kron.__rmatmul__``

    def __init__(self, *factors: Any):
        if not factors:
            raise ValueError("`Kron` needs at least one factor, got none")
        flat: list[Any] = []
        for f in factors:
            if isinstance(f, Kron):
                flat.extend(f.factors)
            else:
                flat.append(f)
        arrs = []
        for k, f in enumerate(flat):  # NaN/Inf: checked on the copy, with the magnitude
            fast = type(f) is np.ndarray and f.dtype in _FLOATS and f.ndim == 2
            a = f if fast else as_float(f, f"factors[{k}]", ndim=2, finite=False)
            if a.size == 0:
                raise ValueError(f"`factors[{k}]` is empty (shape {a.shape}); factors must be non-empty")
            arrs.append(a)
        dt = arrs[0].dtype
        if dt not in _FLOATS or any(a.dtype != dt for a in arrs):
            dt = float_dtype(*arrs)
        self._factors: tuple[np.ndarray, ...] = tuple(
            frozen(np.array(a, dtype=dt, copy=True, order="C")) for a in arrs)
        self._init_cache()

    def _init_cache(self) -> None:
        self._facts: list[Factorization | None] = [None] * len(self._factors)
        self._lock = threading.Lock()
        # max|A_k| by two reductions (no temporary); NaN or Inf in a factor shows here
        self._mags = mags = tuple(max(float(a.max()), -float(a.min())) for a in self._factors)
        for k in (k for k, mag in enumerate(mags) if not math.isfinite(mag)):
            check_finite(self._factors[k], f"factors[{k}]")
        self._extreme = any(not _MAG_LO <= mag <= _MAG_HI for mag in mags)

    # -- copies and pickles ---------------------------------------------------------------
    # The state is the factors alone: a copy or an unpickled Kron starts with an empty cache
    # (it can never hold a factorisation of other factors) and read-only factors. Works for
    # every pickle protocol and for copy.copy / copy.deepcopy.
    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k not in _CACHE_ATTRS}

    def __setstate__(self, state: dict) -> None:
        state = dict(state)
        state["_factors"] = tuple(
            frozen(np.array(a, copy=True, order="C")) for a in state["_factors"]
        )
        self.__dict__.update(state)
        self._init_cache()

    # -- basic attributes ---------------------------------------------------------------
    @property
    def factors(self) -> tuple[np.ndarray, ...]:
        """The factors ``(A1, ..., Ad)`` (read-only arrays)."""
        return self._factors

    @property
    def n_factors(self) -> int:
        """Number of factors ``d``."""
        return len(self._factors)

    @property
    def row_dims(self) -> tuple[int, ...]:
        """``(m1, ..., md)``: the row counts of the factors."""
        return tuple(a.shape[0] for a in self._factors)

    @property
    def col_dims(self) -> tuple[int, ...]:
        """``(n1, ..., nd)``: the column counts of the factors."""
        return tuple(a.shape[1] for a in self._factors)

    @property
    def shape(self) -> tuple[int, int]:
        """``(m1*...*md, n1*...*nd)``."""
        return math.prod(self.row_dims), math.prod(self.col_dims)

    @property
    def dtype(self) -> np.dtype:
        return self._factors[0].dtype

    @property
    def ndim(self) -> int:
        return 2

    @property
    def is_square(self) -> bool:
        """True if every factor is square (needed for solve, inv, logdet, trace, diag)."""
        return all(a.shape[0] == a.shape[1] for a in self._factors)

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        dims = " ⊗ ".join(f"{a.shape[0]}×{a.shape[1]}" for a in self._factors)
        return f"Kron({dims}, shape={self.shape}, dtype={self.dtype})"

    # -- factorisation cache ------------------------------------------------------------
    def _require_square(self, what: str) -> None:
        for k, a in enumerate(self._factors):
            if a.shape[0] != a.shape[1]:
                raise ValueError(
                    f"`factors[{k}]` must be square for {what}, got shape {a.shape}"
                )

    def _factorization(self, k: int) -> Factorization:
        fac = self._facts[k]
        if fac is None:
            # compute once, even when several threads ask at the same time
            with self._lock:
                fac = self._facts[k]
                if fac is None:
                    fac = Factorization(self._factors[k], k, scale=self._mags[k])
                    self._facts[k] = fac
        return fac

    def _factorizations(self, what: str, *, check: bool = True,
                        warn: bool | None = None) -> list[Factorization]:
        """The factorisations of every factor (cached).

        ``check``: raise :class:`SingularFactorError` for a factor singular to working precision.
        ``warn`` (default: ``check``): issue one :class:`IllConditionedWarning` when some factor
        has ``rcond < sqrt(eps)``. Public operations ask once per call.
        """
        self._require_square(what)
        facs = [self._factorization(k) for k in range(self.n_factors)]
        if check:
            for f in facs:
                f.check()
        if check if warn is None else warn:
            warn_ill_conditioned(facs, what)
        return facs

    @property
    def is_spd(self) -> bool:
        """True if every factor is symmetric positive definite (Cholesky succeeded)."""
        if not self.is_square:
            return False
        return all(self._factorization(k).kind == "cholesky" for k in range(self.n_factors))

    @property
    def factorization_kinds(self) -> tuple[str, ...]:
        """``"cholesky"`` or ``"lu"`` for each factor (computes the factorisations)."""
        return tuple(f.kind for f in self._factorizations("factorization", check=False))

    # -- vector input ---------------------------------------------------------------------
    def _vectors(self, y: Any, name: str, n: int, what: str) -> np.ndarray:
        """``y`` as a batch of vectors along its last axis (rows), validated."""
        arr = as_float(y, name, min_ndim=1)
        if arr.shape[-1] != n:
            raise ValueError(
                f"`{name}` in `{what}` must have length {n} in its last axis (vectors as rows; "
                f"the operator is {self.shape[0]}×{self.shape[1]}), got shape {arr.shape}"
            )
        return arr.astype(np.result_type(arr.dtype, self.dtype), copy=False)

    # -- products -----------------------------------------------------------------------
    def _apply(self, y: np.ndarray, mats: Sequence[np.ndarray]) -> np.ndarray:
        t = to_tensor(y, [m.shape[1] for m in mats])
        return to_vec(apply_modes(t, mats), len(mats))

    def matvec(self, y: Any) -> np.ndarray:
        """``K`` applied to every row of ``y`` of shape ``(..., N)`` (vectors as rows):
        ``y @ K.to_dense().T``; O(P·Σ n_k) per row. For columns use ``K @ y``.

        An empty batch (shape ``(0, N)``) gives an empty result of shape ``(0, M)``. Raises
        ``OverflowError`` if the (finite) inputs give a result beyond the floating range.
        """
        return self._product(self._vectors(y, "y", self.shape[1], "K.matvec(y)"), False, "K @ y")

    def rmatvec(self, y: Any) -> np.ndarray:
        """``Kᵀ`` applied to every row of ``y`` of shape ``(..., M)``: ``y @ K.to_dense()``."""
        return self._product(self._vectors(y, "y", self.shape[0], "K.rmatvec(y)"), True, "y @ K")

    def _product(self, arr: np.ndarray, trans: bool, what: str) -> np.ndarray:
        """``K`` (``trans``: ``Kᵀ``) on the rows of a validated ``arr``, overflow-safe."""
        mats = [a.T for a in self._factors] if trans else list(self._factors)
        if arr.size == 0:
            return np.zeros((*arr.shape[:-1], self.shape[1 if trans else 0]), dtype=arr.dtype)
        with overflow_checked():
            out = self._apply(arr, mats)
            if self._renormalise(arr, out):  # an intermediate may over/underflow
                out = self._renormalised(arr, self.row_dims if trans else self.col_dims, [
                    lambda t, k, M=M: mode_apply(t, M, k, self.n_factors) for M in mats
                ])
        self._check_overflow(out, what, arr)
        return out

    def _renormalise(self, y: np.ndarray, out: np.ndarray) -> bool:
        """Whether to redo a product or solve with per-step renormalisation: when it
        overflowed, or when the factors or ``y`` are so far from 1 (beyond 2^±200) that an
        intermediate may have underflowed to zero unseen."""
        if not np.all(np.isfinite(out)):
            return True
        if self._extreme:
            return True
        m = float(np.max(np.abs(y)))
        return m != 0 and not _MAG_LO <= m <= _MAG_HI

    def _renormalised(self, y: np.ndarray, dims: Sequence[int], steps) -> np.ndarray:
        """Apply the mode steps to the rows of ``y``, rescaling each row by a power of two
        before every step (exact) and undoing it at the end: an intermediate overflow or
        underflow of a result that is itself representable is avoided."""
        d = self.n_factors
        lead = y.shape[:-1]
        t = to_tensor(y, dims)
        axes = tuple(range(len(lead), t.ndim))
        total = np.zeros(lead, dtype=int)
        for k, step in enumerate(steps):
            m = np.max(np.abs(t), axis=axes)
            e = np.where(m > 0, np.frexp(m)[1], 0)
            t = np.ldexp(t, -e.reshape(*lead, *(1,) * d))
            total = total + e
            t = step(t, k)
        return np.ldexp(to_vec(t, d), total[..., None])

    def _check_overflow(self, out: Any, what: str, y: np.ndarray | None = None) -> None:
        """Raise ``OverflowError`` (naming the inputs' magnitudes) if ``out`` is not finite:
        the inputs were checked finite on entry, so this is an overflow of the computation."""
        if np.all(np.isfinite(out)):
            return
        raise overflow_error(what, y=y, factors=self._factors)

    def __matmul__(self, other: Any) -> Any:
        """``K @ x`` as ``K.to_dense() @ x``: a 1-D ``x``, the columns of a 2-D ``x`` (N, k),
        each matrix of a stack (..., N, k); ``Kron @ Kron`` is the mixed product, a Kron."""
        if isinstance(other, Kron):
            return self._kron_product(other)
        arr = as_operand(other, "x", self.shape[1], "K @ x", self.shape, self.dtype)
        return on_columns(lambda a: self._product(a, False, "K @ x"), arr)

    def __rmatmul__(self, other: Any) -> Any:
        """``x @ K`` as ``x @ K.to_dense()``: ``Kᵀ`` applied to the rows of ``x`` (..., M)."""
        return self._product(self._vectors(other, "x", self.shape[0], "x @ K"), True, "x @ K")

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        """``np.asarray(K)``: the dense matrix, under the size guard of :meth:`to_dense`."""
        return dense_array(self, "Kron", dtype, copy)

    def _kron_product(self, other: Kron) -> Kron:
        if self.n_factors != other.n_factors or any(
            a.shape[1] != b.shape[0] for a, b in zip(self._factors, other.factors, strict=True)
        ):
            raise ValueError(
                "the mixed product (A1⊗..⊗Ad)(B1⊗..⊗Bd) = (A1B1)⊗..⊗(AdBd) needs the same number "
                f"of factors with matching inner sizes, got {self!r} and {other!r}"
            )
        with overflow_checked():
            prods = [a @ b for a, b in zip(self._factors, other.factors, strict=True)]
        for k, m in enumerate(prods):
            if not np.all(np.isfinite(m)):
                raise overflow_error(
                    f"the mixed product of factor {k} (`self.factors[{k}] @ other.factors[{k}]`)",
                    **{f"self.factors[{k}]": self._factors[k], f"other.factors[{k}]": other.factors[k]},
                )
        return Kron(*prods)

    def _scaled(self, c: float, op: str) -> Kron:
        with np.errstate(over="ignore", under="ignore"):
            A0 = self._factors[0] / c if op == "/" else self._factors[0] * c
        if not np.all(np.isfinite(A0)):
            raise OverflowError(
                f"`Kron {op} {c:.6g}` overflows: factors[0] has entries up to "
                f"{float(np.max(np.abs(self._factors[0]))):.3g} in magnitude and the result "
                f"exceeds the {self.dtype} range"
            )
        out = Kron.__new__(Kron)  # the factors are checked and read-only: no second copy
        out._factors = (frozen(A0), *self._factors[1:])
        out._init_cache()
        return out

    def __mul__(self, c: Any) -> Kron:
        return self._scaled(check_multiplier(c, "*", "Kron"), "*")

    __rmul__ = __mul__

    def __truediv__(self, c: Any) -> Kron:
        val = check_multiplier(c, "/", "Kron")
        if val == 0:
            raise DomainError(
                "the divisor in `Kron / c` must be non-zero, got c = 0.0 (K / 0 is undefined)",
                value=val,
            )
        return self._scaled(val, "/")

    def __neg__(self) -> Kron:
        return self * -1.0

    def __add__(self, other: Any) -> Any:
        """``K + other`` (a Kron or SumOfKron of the same factor shapes): a
        :class:`~kronkit.SumOfKron` (``0 + K`` too, so ``sum(terms)`` works)."""
        from ._sum_kron import SumOfKron

        return SumOfKron([self]).__add__(other)

    def __radd__(self, other: Any) -> Any:
        from ._sum_kron import SumOfKron

        return SumOfKron([self]).__radd__(other)

    def restrict(self, observed: Any, **options: Any) -> Any:
        """``S_OO`` on the ``observed`` cells (boolean, grid-shaped): a :class:`~kronkit.Restricted`."""
        from ._cell_ops import Restricted

        return Restricted(self, observed, **options)

    def __sub__(self, other: Any) -> Any:
        return self + (-1.0) * other

    # -- structure ------------------------------------------------------------------------
    @property
    def T(self) -> Kron:
        """The transpose ``A1ᵀ ⊗ ... ⊗ Adᵀ``."""
        return Kron(*[a.T for a in self._factors])

    def transpose(self) -> Kron:
        return self.T

    def to_dense(self, *, max_bytes: int | None = None) -> np.ndarray:
        """The dense matrix ``np.kron(A1, np.kron(A2, ...))`` (allocates M×N).

        Refuses (``ValueError``) when the M×N array would take more than ``max_bytes``
        (default :data:`kronkit.DENSE_MAX_BYTES`, 2 GiB: a 16 384 × 16 384 float64 matrix);
        pass a larger ``max_bytes`` to allow it for one call.
        """
        check_dense_size(self.shape, self.dtype, "`Kron.to_dense()`", max_bytes=max_bytes)
        return functools.reduce(np.kron, self._factors)

    def trace(self) -> float:
        """``tr(A1) * ... * tr(Ad)``."""
        self._require_square("trace")
        with overflow_checked():
            out = float(np.prod([np.trace(a) for a in self._factors]))
        self._check_overflow(out, "K.trace()")
        return out

    def diag(self) -> np.ndarray:
        """The diagonal, ``kron(diag(A1), ..., diag(Ad))``, of length P."""
        self._require_square("diag")
        with overflow_checked():
            out = functools.reduce(np.kron, [np.diagonal(a) for a in self._factors]).copy()
        self._check_overflow(out, "K.diag()")
        return out

    def norm(self) -> float:
        """Frobenius norm ``‖A1‖_F · ... · ‖Ad‖_F`` (each computed scaled: no spurious overflow)."""
        with overflow_checked():
            out = 1.0
            for a in self._factors:
                s = float(np.max(np.abs(a)))
                out *= s * float(np.linalg.norm(a / s)) if s > 0 else 0.0
        self._check_overflow(out, "K.norm()")
        return out

    # -- inverse, solve, determinants --------------------------------------------------------
    def solve(self, y: Any) -> np.ndarray:
        """``K⁻¹ y`` as ``np.linalg.solve(K.to_dense(), y)``: ``y`` of shape ``(P,)``, or
        ``(P, k)`` solved column by column (a stack ``(..., P, k)`` matrix by matrix).

        Cost O(Σ n_k³) once (cached factorisations) plus O(P·Σ n_k) per vector. Raises
        :class:`SingularFactorError` (naming the factor) if a factor is singular. For
        right-hand sides as rows ``(N, P)`` use :meth:`solve_rows`.
        """
        arr = as_operand(y, "y", self.shape[1], "K.solve(y)", self.shape, self.dtype)
        return on_columns(self._solve_checked, arr)

    def solve_rows(self, y: Any) -> np.ndarray:
        """``K⁻¹`` applied to every row of ``y`` of shape ``(..., P)`` (right-hand sides as
        rows, as observations are): ``np.linalg.solve(K.to_dense(), y.T).T`` for 2-D ``y``."""
        return self._solve_checked(self._vectors(y, "y", self.shape[1], "K.solve_rows(y)"))

    def _solve_checked(self, arr: np.ndarray) -> np.ndarray:
        facs = self._factorizations("solve")
        if arr.size == 0:
            return np.zeros(arr.shape, dtype=np.result_type(arr.dtype, self.dtype))
        with overflow_checked():
            out = self._solve(arr, facs)
            if self._renormalise(arr, out):  # an intermediate may over/underflow
                out = self._renormalised(arr, self.col_dims, [
                    lambda t, k, f=f: mode_solve(t, f, k, self.n_factors) for f in facs
                ])
        self._check_overflow(out, "K.solve(y)", arr)
        return out

    def _solve(self, y: np.ndarray, facs: Sequence[Factorization], trans: bool = False):
        if (t := spd_rows(y, facs, half=False)) is not None:  # two SPD factors, a few rows
            return t.reshape(y.shape)
        d = self.n_factors
        t = to_tensor(y, self.col_dims)
        for k, f in enumerate(facs):
            t = mode_solve(t, f, k, d, trans=trans)
        return to_vec(t, d)

    def inv(self) -> Kron:
        """``K⁻¹ = A1⁻¹ ⊗ ... ⊗ Ad⁻¹`` as a Kron (factors inverted through the cache)."""
        facs = self._factorizations("inv")
        with overflow_checked():
            invs = [f.inverse() for f in facs]
        for f, a in zip(facs, invs, strict=True):
            if not np.all(np.isfinite(a)):
                raise OverflowError(
                    f"the inverse of factor {f.index} overflows the {self.dtype} range (its "
                    f"entries are as small as {float(np.min(np.abs(self._factors[f.index]))):.3g}; "
                    f"reciprocal condition number {f.rcond:.3g})"
                )
        return Kron(*invs)

    def slogdet(self) -> tuple[float, float]:
        """``(sign, log|det K|)`` with ``log|det| = Σ_k (P/n_k) log|det A_k|``.

        Consistent with :meth:`solve`: a factor with an exact zero pivot gives
        ``(0.0, -inf)``; a factor singular to working precision (``rcond <= eps``, where
        ``solve`` raises) raises :class:`SingularFactorError`; a factor with
        ``rcond < sqrt(eps)`` gives an :class:`IllConditionedWarning` (the result may have
        lost more than half of its digits).
        """
        facs = self._factorizations("slogdet", check=False, warn=False)
        if any(f.exact_zero for f in facs):
            return 0.0, -np.inf
        for f in facs:
            f.check()
        warn_ill_conditioned(facs, "slogdet")
        return self._slogdet(facs)

    def _slogdet(self, facs: Sequence[Factorization]) -> tuple[float, float]:
        parts = [f.slogdet() for f in facs]
        dims = [f.n for f in facs]
        sign = kron_sign([s for s, _ in parts], dims)
        if sign == 0:
            return 0.0, -np.inf
        return float(sign), float(kron_logdet([la for _, la in parts], dims))

    def logdet(self) -> float:
        """``log det K`` (requires ``det K > 0``; see :meth:`slogdet` otherwise).

        A factor with an exact zero pivot gives ``-inf``; a factor singular to working
        precision raises :class:`SingularFactorError` (as :meth:`solve` does); a negative
        determinant raises :class:`DomainError` (a ``ValueError``) rather than returning NaN.
        """
        sign, logabs = self.slogdet()
        if sign < 0:
            raise DomainError(
                "det(K) is negative, so log det(K) is undefined; use `slogdet()`", value=sign
            )
        return logabs

    def inv_quad(self, y: Any) -> Any:
        """``yᵀ K⁻¹ y`` for ``y`` of shape (P,) (a float) or ``(..., P)`` (an array).

        Cost O(Σ n_k³) once plus O(P·Σ n_k) per vector; with SPD factors it is ``‖L⁻¹y‖²``.
        Dense equivalent: ``y @ np.linalg.solve(K.to_dense(), y)``.
        """
        arr = self._vectors(y, "y", self.shape[1], "K.inv_quad(y)")
        facs = self._factorizations("inv_quad")
        if arr.size == 0:
            return np.zeros(arr.shape[:-1], dtype=np.result_type(arr.dtype, self.dtype))
        with overflow_checked():
            if all(f.kind == "cholesky" for f in facs):
                x = to_vec(self._half_solve(arr, facs), self.n_factors)
                out = np.einsum("...i,...i->...", x, x)
            else:
                out = np.einsum("...i,...i->...", arr, self._solve(arr, facs))
        self._check_overflow(out, "the quadratic form yᵀ K⁻¹ y", arr)
        return float(out) if out.ndim == 0 else out

    def _half_solve(self, y: np.ndarray, facs: Sequence[Factorization]) -> np.ndarray:
        """``(L1⁻¹ ⊗ ... ⊗ Ld⁻¹) y`` as a tensor ``(..., n1, ..., nd)`` (Cholesky factors)."""
        if (t := spd_rows(y, facs, half=True)) is not None:
            return t
        d = self.n_factors
        t = to_tensor(y, self.col_dims)
        for k, f in enumerate(facs):
            t = mode_solve(t, f, k, d, tri=True)
        return t

    # -- interoperability --------------------------------------------------------------------
    def aslinearoperator(self):
        """A ``scipy.sparse.linalg.LinearOperator`` for iterative solvers (columns, as ``@``)."""
        return linear_operator(self, lambda v: self._apply(v, self._factors),
                               lambda v: self._apply(v, [a.T for a in self._factors]))


def as_kron(K: Any, name: str = "K") -> Kron:
    """Accept a :class:`Kron` or a sequence of factors; return a :class:`Kron`."""
    if isinstance(K, Kron):
        return K
    if isinstance(K, np.ndarray):
        raise TypeError(
            f"`{name}` must be a Kron or a sequence of factor matrices, got a single ndarray of "
            f"shape {K.shape}; wrap it as Kron(A) or pass [A, B, ...]"
        )
    if isinstance(K, (list, tuple)):
        if len(K) == 0:
            raise ValueError(f"`{name}` must hold at least one factor, got an empty sequence")
        return Kron(*K)
    raise TypeError(f"`{name}` must be a Kron or a sequence of factor matrices, got {type(K).__name__}")


# -- the package's access to a Kron's factorisations (not the methods' private names) ------
def require_square(K: Kron, what: str) -> None:
    """Raise ``ValueError`` naming the first non-square factor of ``K`` (for ``what``)."""
    K._require_square(what)


def factorization(K: Kron, k: int) -> Factorization:
    """The cached :class:`Factorization` of factor ``k`` (no checks, no warnings)."""
    return K._factorization(k)


def factorizations(K: Kron, what: str, *, check: bool = True,
                   warn: bool | None = None) -> list[Factorization]:
    """Every factor's cached factorisation; see :meth:`Kron._factorizations`."""
    return K._factorizations(what, check=check, warn=warn)


def solve_with(K: Kron, y: np.ndarray, facs: Sequence[Factorization],
               trans: bool = False) -> np.ndarray:
    """``K⁻¹ y`` (``trans``: ``K⁻ᵀ y``) with factorisations already checked."""
    return K._solve(y, facs, trans)


def half_solve(K: Kron, y: np.ndarray, facs: Sequence[Factorization]) -> np.ndarray:
    """``(L1⁻¹ ⊗ ... ⊗ Ld⁻¹) y`` as a tensor (Cholesky factorisations)."""
    return K._half_solve(y, facs)


def slogdet_with(K: Kron, facs: Sequence[Factorization]) -> tuple[float, float]:
    """``(sign, log|det K|)`` from factorisations already made."""
    return K._slogdet(facs)
