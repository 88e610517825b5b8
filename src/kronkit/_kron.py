"""The Kronecker operator ``Kron(A1, ..., Ad)`` and its per-factor factorisation cache."""

from __future__ import annotations

import functools
import math
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.linalg as sla
from scipy.linalg import lapack

from ._checks import as_float, check_dense_size, float_dtype, overflow_error
from ._errors import DomainError, IllConditionedWarning, SingularFactorError, warn_at_caller
from ._vec import mode_apply, to_tensor, to_vec

__all__ = ["Kron", "as_kron"]


def _prod(xs: Sequence[int]) -> int:
    out = 1
    for x in xs:
        out *= int(x)
    return out


@functools.cache
def _eps(dtype: np.dtype) -> float:
    """Machine epsilon of ``dtype`` (cached: asked on every solve)."""
    return float(np.finfo(dtype).eps)


class _Factorization:
    """Cholesky (symmetric positive definite) or LU factorisation of one square factor.

    Computed once, on first need, and cached by the owning :class:`Kron`. No eigenvalue
    clamping or jitter of any kind: a factor that is numerically singular raises
    :class:`SingularFactorError` when a solve is asked for.

    Thread safety: after construction nothing is ever written to ``lu`` or ``piv`` (both
    read-only; every LU solve hands LAPACK's ``getrs`` a private copy of the pivots, because
    SciPy's wrapper shifts the pivot array in place around the call). The cached inverse is
    built once under a lock.
    """

    __slots__ = ("_inv", "_lock", "exact_zero", "index", "kind", "lower", "lu", "n", "piv",
                 "rcond", "symmetric")

    def __init__(self, A: np.ndarray, index: int):
        self.index = index
        self.n = A.shape[0]
        self._inv: np.ndarray | None = None
        self._lock = threading.Lock()
        self.exact_zero = False
        scale = float(np.max(np.abs(A))) if A.size else 0.0
        self.symmetric = bool(
            np.array_equal(A, A.T)
            or np.max(np.abs(A - A.T)) <= 16 * np.finfo(A.dtype).eps * scale
        )
        self.kind = "lu"
        if self.symmetric:
            (potrf,) = lapack.get_lapack_funcs(("potrf",), (A,))
            c, info = potrf(A, lower=1, clean=1, overwrite_a=0)
            if info == 0:
                self.kind = "cholesky"
                self.lu = _frozen(c)  # lower-triangular L with A = L L^T
                self.piv = None
                self.lower = True
                self.rcond = rcond_from_factor(A, c, cholesky=True)
                if not 1e-100 < scale < 1e100:  # the estimate itself may over/underflow
                    self.rcond = _rcond_rescaled(A, scale, "cholesky")
                return
        (getrf,) = lapack.get_lapack_funcs(("getrf",), (A,))
        lu, piv, info = getrf(A, overwrite_a=0)
        self.lu = _frozen(lu)
        self.piv = _frozen(piv)
        self.lower = False
        if info > 0:  # exact zero pivot: det A = 0 exactly in the computed factorisation
            self.exact_zero = True
            self.rcond = 0.0
        else:
            self.rcond = rcond_from_factor(A, lu, cholesky=False)
            if not 1e-100 < scale < 1e100:
                self.rcond = _rcond_rescaled(A, scale, "lu")

    # -- copies and pickles: no lock in the state; arrays come back read-only -------------
    def __getstate__(self):
        return {s: getattr(self, s) for s in self.__slots__ if s != "_lock"}

    def __setstate__(self, state):
        for s, v in state.items():
            if isinstance(v, np.ndarray):
                v = _frozen(np.array(v, copy=True))
            object.__setattr__(self, s, v)
        self._lock = threading.Lock()

    # -- determinants -------------------------------------------------------------------
    def slogdet(self) -> tuple[float, float]:
        d = np.diagonal(self.lu)
        if self.kind == "cholesky":
            return 1.0, float(2.0 * np.sum(np.log(d)))
        if self.exact_zero or np.any(d == 0):
            return 0.0, -np.inf
        piv: np.ndarray = self.piv  # type: ignore[assignment]  # LU: always set
        swaps = int(np.count_nonzero(piv != np.arange(self.n, dtype=piv.dtype)))
        sign = (-1.0) ** swaps * float(np.prod(np.sign(d)))
        return sign, float(np.sum(np.log(np.abs(d))))

    # -- conditioning -------------------------------------------------------------------
    @property
    def singular(self) -> bool:
        """True if the factor is singular to working precision (``rcond <= eps``)."""
        return not self.rcond > _eps(self.lu.dtype)

    @property
    def ill_conditioned(self) -> bool:
        """True if results lose more than half their digits (``eps < rcond < sqrt(eps)``)."""
        eps = _eps(self.lu.dtype)
        return eps < self.rcond < math.sqrt(eps)

    def check(self) -> None:
        if self.singular:
            eps = _eps(self.lu.dtype)
            why = ("an exact zero pivot in its LU factorisation" if self.exact_zero else
                   f"reciprocal condition number {self.rcond:.3g} <= eps = {eps:.3g}")
            raise SingularFactorError(
                f"factor {self.index} is singular to working precision ({why}); "
                "an inverse, solve or log-determinant is undefined",
                factor=self.index,
                rcond=self.rcond,
            )

    # -- solves -------------------------------------------------------------------------
    def solve(self, b: np.ndarray, trans: bool = False) -> np.ndarray:
        """``A^{-1} b`` (or ``A^{-T} b``) for ``b`` of shape (n,) or (n, k) (a new array)."""
        if b.size == 0:
            return np.zeros(b.shape, dtype=np.result_type(b.dtype, self.lu.dtype))
        if self.kind == "cholesky":
            return sla.cho_solve((self.lu, True), b, check_finite=False)
        # LAPACK getrs with a private copy of the pivots: SciPy's wrapper shifts the pivot
        # array to 1-based and back *in place* around the call, which corrupted memory when
        # threads shared the cached array. ``lu`` is only read.
        piv: np.ndarray = self.piv  # type: ignore[assignment]  # LU: always set
        (getrs,) = lapack.get_lapack_funcs(("getrs",), (self.lu, b))
        x, info = getrs(self.lu, piv.copy(), b, trans=1 if trans else 0, overwrite_b=0)
        if info != 0:  # pragma: no cover - shapes are checked by the callers
            raise ValueError(f"LAPACK getrs failed with info = {info}")
        return x

    def tri_solve(self, b: np.ndarray, trans: bool = False) -> np.ndarray:
        """``L^{-1} b`` (or ``L^{-T} b``) with the Cholesky factor ``L`` (Cholesky only)."""
        if b.size == 0:
            return np.zeros(b.shape, dtype=np.result_type(b.dtype, self.lu.dtype))
        return sla.solve_triangular(self.lu, b, lower=True, trans=1 if trans else 0,
                                    check_finite=False)

    def inverse(self) -> np.ndarray:
        """``A⁻¹`` through the factorisation (computed once, cached; a fresh copy each call)."""
        return self.inverse_view().copy()

    def inverse_view(self) -> np.ndarray:
        """The cached ``A⁻¹`` itself (read-only; for internal products)."""
        inv = self._inv
        if inv is None:
            with self._lock:
                inv = self._inv
                if inv is None:
                    eye = np.eye(self.n, dtype=self.lu.dtype)
                    inv = self.solve(eye)
                    if self.kind == "cholesky":
                        inv = 0.5 * (inv + inv.T)
                    inv = _frozen(np.ascontiguousarray(inv))
                    self._inv = inv
        return inv

    def chol(self) -> np.ndarray:
        """The lower Cholesky factor ``L`` (zeros above the diagonal)."""
        return np.tril(self.lu)


def rcond_from_factor(A: np.ndarray, factor: np.ndarray, cholesky: bool) -> float:
    """LAPACK's estimate of ``1/(‖A‖₁‖A⁻¹‖₁)`` from ``A``'s lower Cholesky factor (``pocon``)
    or its packed LU factor (``gecon``), O(n²). The one estimate ``Kron``, ``kronkit.jax`` and
    ``kronkit.torch`` use."""
    anorm = float(np.max(np.sum(np.abs(A), axis=0))) if A.size else 0.0
    if cholesky:
        (pocon,) = lapack.get_lapack_funcs(("pocon",), (factor,))
        return float(pocon(factor, anorm, uplo="L")[0])
    (gecon,) = lapack.get_lapack_funcs(("gecon",), (factor,))
    return float(gecon(factor, anorm, norm="1")[0])


def _rcond_rescaled(A: np.ndarray, scale: float, kind: str) -> float:
    """The reciprocal condition number of ``A`` (scale-invariant), estimated on ``2^e A`` with
    entries of order one, so that norms of far-from-one matrices do not over/underflow."""
    As = np.ldexp(A, -int(np.frexp(scale)[1]))  # exact: a power-of-two scaling
    if kind == "cholesky":
        (potrf,) = lapack.get_lapack_funcs(("potrf",), (As,))
        c, info = potrf(As, lower=1, clean=1)
        if info == 0:
            return rcond_from_factor(As, c, cholesky=True)
    (getrf,) = lapack.get_lapack_funcs(("getrf",), (As,))
    lu, _, info = getrf(As)
    return 0.0 if info > 0 else rcond_from_factor(As, lu, cholesky=False)


_MAG_LO, _MAG_HI = 2.0**-200, 2.0**200  # magnitudes beyond which products may over/underflow


def _overflow_checked():
    """Silence NumPy's overflow warnings where the caller checks the result and raises."""
    return np.errstate(over="ignore", invalid="ignore")


def _frozen(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


def warn_ill_conditioned(facs: Sequence[_Factorization], what: str) -> None:
    """One :class:`IllConditionedWarning` if some factor has ``eps < rcond < sqrt(eps)``.

    Names every such factor; the warning's ``factor`` / ``rcond`` are the worst one's.
    """
    bad = [f for f in facs if f.ill_conditioned]
    if not bad:
        return
    worst = min(bad, key=lambda f: f.rcond)
    listing = ", ".join(
        f"factor {f.index} (condition number ≈ {1.0 / f.rcond:.3g})" for f in bad
    )
    warn_at_caller(
        IllConditionedWarning(
            f"{what}: ill-conditioned {listing}; results may have lost more than half of their "
            f"digits (reciprocal condition number below sqrt(eps) = "
            f"{np.sqrt(np.finfo(worst.lu.dtype).eps):.3g})",
            factor=worst.index,
            rcond=worst.rcond,
        )
    )


def _mode_solve(t: np.ndarray, fac: _Factorization, k: int, d: int, *, trans: bool = False,
                tri: bool = False) -> np.ndarray:
    """Apply ``A_k^{-1}`` (``trans``: ``A_k^{-T}``; ``tri``: ``L_k^{-1}``/``L_k^{-T}``) on mode k."""
    solve = fac.tri_solve if tri else fac.solve
    lead = t.shape[: t.ndim - d]
    dims = t.shape[t.ndim - d :]
    nk = dims[k]
    before = _prod(lead) * _prod(dims[:k])
    after = _prod(dims[k + 1 :])
    if before == 1:
        out = solve(t.reshape(nk, after), trans=trans)
    elif after == 1:
        out = solve(t.reshape(before, nk).T, trans=trans).T
    else:
        x = t.reshape(before, nk, after).transpose(1, 0, 2).reshape(nk, before * after)
        out = solve(x, trans=trans).reshape(nk, before, after).transpose(1, 0, 2)
    return np.ascontiguousarray(out).reshape(t.shape)


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
    Batches of vectors are *rows*: ``K @ Y`` and ``K.matvec(Y)`` for ``Y`` of shape
    ``(..., P)`` apply ``K`` to every row (``Y @ K.T`` in dense terms). ``aslinearoperator``
    gives the column convention of scipy.

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
        for k, f in enumerate(flat):
            a = as_float(f, f"factors[{k}]", ndim=2)
            if a.size == 0:
                raise ValueError(f"`factors[{k}]` is empty (shape {a.shape}); factors must be non-empty")
            arrs.append(a)
        dt = float_dtype(*arrs)
        stored = []
        for a in arrs:
            a = np.array(a, dtype=dt, copy=True, order="C")
            a.setflags(write=False)
            stored.append(a)
        self._factors: tuple[np.ndarray, ...] = tuple(stored)
        self._init_cache()

    def _init_cache(self) -> None:
        self._facts: list[_Factorization | None] = [None] * len(self._factors)
        self._lock = threading.Lock()
        self._extreme = any(not _MAG_LO <= float(np.max(np.abs(a))) <= _MAG_HI
                            for a in self._factors)

    # -- copies and pickles ---------------------------------------------------------------
    # The state is the factors alone: a copy or an unpickled Kron starts with an empty cache
    # (it can never hold a factorisation of other factors) and read-only factors. Works for
    # every pickle protocol and for copy.copy / copy.deepcopy.
    def __getstate__(self) -> dict:
        state = {k: v for k, v in self.__dict__.items()
                 if k not in ("_facts", "_lock", "_extreme")}
        return state

    def __setstate__(self, state: dict) -> None:
        state = dict(state)
        state["_factors"] = tuple(
            _frozen(np.array(a, copy=True, order="C")) for a in state["_factors"]
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
        return _prod(self.row_dims), _prod(self.col_dims)

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

    def _factorization(self, k: int) -> _Factorization:
        fac = self._facts[k]
        if fac is None:
            # compute once, even when several threads ask at the same time
            with self._lock:
                fac = self._facts[k]
                if fac is None:
                    fac = _Factorization(self._factors[k], k)
                    self._facts[k] = fac
        return fac

    def _factorizations(self, what: str, *, check: bool = True,
                        warn: bool | None = None) -> list[_Factorization]:
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
    def _vectors(self, y: Any, name: str, n: int) -> np.ndarray:
        arr = as_float(y, name, min_ndim=1)
        if arr.shape[-1] != n:
            raise ValueError(
                f"`{name}` must have length {n} in its last axis (the operator is "
                f"{self.shape[0]}×{self.shape[1]}), got shape {arr.shape}"
            )
        return arr.astype(np.result_type(arr.dtype, self.dtype), copy=False)

    # -- products -----------------------------------------------------------------------
    def _apply(self, y: np.ndarray, mats: Sequence[np.ndarray]) -> np.ndarray:
        d = len(mats)
        t = to_tensor(y, [m.shape[1] for m in mats])
        for k, M in enumerate(mats):
            t = mode_apply(t, M, k, d)
        return to_vec(t, d)

    def matvec(self, y: Any) -> np.ndarray:
        """``K @ y`` for ``y`` of shape ``(..., N)`` (rows are vectors); O(P·Σ n_k) each.

        An empty batch (shape ``(0, N)``) gives an empty result of shape ``(0, M)``. Raises
        ``OverflowError`` if the (finite) inputs give a result beyond the floating range.
        """
        arr = self._vectors(y, "y", self.shape[1])
        if arr.size == 0:
            return np.zeros((*arr.shape[:-1], self.shape[0]), dtype=arr.dtype)
        with _overflow_checked():
            out = self._apply(arr, self._factors)
            if self._renormalise(arr, out):  # an intermediate may over/underflow
                out = self._renormalised(arr, self.col_dims, [
                    lambda t, k, M=M: mode_apply(t, M, k, self.n_factors) for M in self._factors
                ])
        self._check_overflow(out, "K @ y", arr)
        return out

    def rmatvec(self, y: Any) -> np.ndarray:
        """``K.T @ y`` for ``y`` of shape ``(..., M)``."""
        arr = self._vectors(y, "y", self.shape[0])
        if arr.size == 0:
            return np.zeros((*arr.shape[:-1], self.shape[1]), dtype=arr.dtype)
        with _overflow_checked():
            out = self._apply(arr, [a.T for a in self._factors])
            if self._renormalise(arr, out):
                out = self._renormalised(arr, self.row_dims, [
                    lambda t, k, M=M: mode_apply(t, M.T, k, self.n_factors)
                    for M in self._factors
                ])
        self._check_overflow(out, "K.T @ y", arr)
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
        """Raise ``OverflowError`` (naming the inputs' magnitudes) if ``out`` is not finite.

        Every input was checked finite on entry, so a NaN or Inf here is an overflow of the
        computation, not bad data.
        """
        if np.all(np.isfinite(out)):
            return
        raise overflow_error(what, y=y, factors=self._factors)

    def __matmul__(self, other: Any) -> Any:
        if isinstance(other, Kron):
            return self._kron_product(other)
        return self.matvec(other)

    def __rmatmul__(self, other: Any) -> Any:
        # y @ K: each row of y times K, i.e. K.T applied to the rows.
        return self.rmatvec(other)

    def _kron_product(self, other: Kron) -> Kron:
        if self.n_factors != other.n_factors or any(
            a.shape[1] != b.shape[0] for a, b in zip(self._factors, other.factors, strict=True)
        ):
            raise ValueError(
                "the mixed product (A1⊗..⊗Ad)(B1⊗..⊗Bd) = (A1B1)⊗..⊗(AdBd) needs the same number "
                f"of factors with matching inner sizes, got {self!r} and {other!r}"
            )
        with _overflow_checked():
            prods = [a @ b for a, b in zip(self._factors, other.factors, strict=True)]
        for k, m in enumerate(prods):
            if not np.all(np.isfinite(m)):
                raise overflow_error(
                    f"the mixed product of factor {k} (`self.factors[{k}] @ other.factors[{k}]`)",
                    **{f"self.factors[{k}]": self._factors[k], f"other.factors[{k}]": other.factors[k]},
                )
        return Kron(*prods)

    def _scalar(self, c: Any, op: str) -> float:
        """``c`` as a finite real Python float, or a ``TypeError``/``ValueError`` naming it."""
        if isinstance(c, Kron):
            raise TypeError(
                "use `@` for products of Kron operators (`*` and `/` take a real scalar)"
            )
        role = "divisor" if op == "/" else "multiplier"
        try:
            arr = np.asarray(c)
        except Exception:  # pragma: no cover - exotic objects
            arr = np.asarray(None, dtype=object)
        if arr.ndim != 0 or arr.dtype.kind not in "biuf":
            what = f"an array of shape {arr.shape}" if arr.ndim else repr(c)
            raise TypeError(
                f"the {role} in `Kron {op} c` must be a real scalar, got {what}"
                + (" (complex scaling is not supported)" if arr.dtype.kind == "c" else "")
            )
        val = float(arr)
        if not np.isfinite(val):
            raise ValueError(f"the {role} in `Kron {op} c` must be finite, got {val}")
        return val

    def _scaled(self, c: float, op: str) -> Kron:
        with np.errstate(over="ignore", under="ignore"):
            A0 = self._factors[0] / c if op == "/" else self._factors[0] * c
        if not np.all(np.isfinite(A0)):
            raise OverflowError(
                f"`Kron {op} {c:.6g}` overflows: factors[0] has entries up to "
                f"{float(np.max(np.abs(self._factors[0]))):.3g} in magnitude and the result "
                f"exceeds the {self.dtype} range"
            )
        return Kron(A0, *self._factors[1:])

    def __mul__(self, c: Any) -> Kron:
        return self._scaled(self._scalar(c, "*"), "*")

    __rmul__ = __mul__

    def __truediv__(self, c: Any) -> Kron:
        val = self._scalar(c, "/")
        if val == 0:
            raise DomainError(
                "the divisor in `Kron / c` must be non-zero, got c = 0.0 (K / 0 is undefined)",
                value=val,
            )
        return self._scaled(val, "/")

    def __neg__(self) -> Kron:
        return self * -1.0

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
        with _overflow_checked():
            out = float(np.prod([np.trace(a) for a in self._factors]))
        self._check_overflow(out, "K.trace()")
        return out

    def diag(self) -> np.ndarray:
        """The diagonal, ``kron(diag(A1), ..., diag(Ad))``, of length P."""
        self._require_square("diag")
        with _overflow_checked():
            out = functools.reduce(np.kron, [np.diagonal(a) for a in self._factors]).copy()
        self._check_overflow(out, "K.diag()")
        return out

    def norm(self) -> float:
        """Frobenius norm ``‖A1‖_F · ... · ‖Ad‖_F`` (each computed scaled: no spurious overflow)."""
        with _overflow_checked():
            out = 1.0
            for a in self._factors:
                s = float(np.max(np.abs(a)))
                out *= s * float(np.linalg.norm(a / s)) if s > 0 else 0.0
        self._check_overflow(out, "K.norm()")
        return out

    # -- inverse, solve, determinants --------------------------------------------------------
    def solve(self, y: Any) -> np.ndarray:
        """``K⁻¹ y`` for ``y`` of shape ``(..., P)`` (rows are right-hand sides).

        Cost O(Σ n_k³) once (cached factorisations) plus O(P·Σ n_k) per vector.
        Raises :class:`SingularFactorError` (naming the factor) if a factor is singular.
        Dense equivalent: ``np.linalg.solve(K.to_dense(), y.T).T``.
        """
        arr = self._vectors(y, "y", self.shape[1])
        facs = self._factorizations("solve")
        if arr.size == 0:
            return np.zeros(arr.shape, dtype=np.result_type(arr.dtype, self.dtype))
        with _overflow_checked():
            out = self._solve(arr, facs)
            if self._renormalise(arr, out):  # an intermediate may over/underflow
                out = self._renormalised(arr, self.col_dims, [
                    lambda t, k, f=f: _mode_solve(t, f, k, self.n_factors) for f in facs
                ])
        self._check_overflow(out, "K.solve(y)", arr)
        return out

    def _solve(self, y: np.ndarray, facs: Sequence[_Factorization], trans: bool = False):
        d = self.n_factors
        t = to_tensor(y, self.col_dims)
        for k, f in enumerate(facs):
            t = _mode_solve(t, f, k, d, trans=trans)
        return to_vec(t, d)

    def inv(self) -> Kron:
        """``K⁻¹ = A1⁻¹ ⊗ ... ⊗ Ad⁻¹`` as a Kron (factors inverted through the cache)."""
        facs = self._factorizations("inv")
        with _overflow_checked():
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

    def _slogdet(self, facs: Sequence[_Factorization]) -> tuple[float, float]:
        P = self.shape[0]
        sign, logabs = 1.0, 0.0
        for f in facs:
            s, la = f.slogdet()
            e = P // f.n
            if s == 0:
                return 0.0, -np.inf
            sign *= s ** (e % 2) if s < 0 else 1.0
            logabs += e * la
        return float(sign), float(logabs)

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
        arr = self._vectors(y, "y", self.shape[1])
        facs = self._factorizations("inv_quad")
        if arr.size == 0:
            return np.zeros(arr.shape[:-1], dtype=np.result_type(arr.dtype, self.dtype))
        with _overflow_checked():
            if all(f.kind == "cholesky" for f in facs):
                x = to_vec(self._half_solve(arr, facs), self.n_factors)
                out = np.einsum("...i,...i->...", x, x)
            else:
                out = np.einsum("...i,...i->...", arr, self._solve(arr, facs))
        self._check_overflow(out, "the quadratic form yᵀ K⁻¹ y", arr)
        return float(out) if out.ndim == 0 else out

    def _half_solve(self, y: np.ndarray, facs: Sequence[_Factorization]) -> np.ndarray:
        """``(L1⁻¹ ⊗ ... ⊗ Ld⁻¹) y`` as a tensor ``(..., n1, ..., nd)`` (Cholesky factors)."""
        d = self.n_factors
        t = to_tensor(y, self.col_dims)
        for k, f in enumerate(facs):
            t = _mode_solve(t, f, k, d, tri=True)
        return t

    # -- interoperability --------------------------------------------------------------------
    def aslinearoperator(self):
        """A ``scipy.sparse.linalg.LinearOperator`` (column convention) for iterative solvers."""
        from scipy.sparse.linalg import LinearOperator

        M, N = self.shape

        def _mm(X: np.ndarray, apply) -> np.ndarray:
            X = np.asarray(X)
            if X.ndim == 1:
                return apply(X)
            return apply(X.T).T

        return LinearOperator(
            (M, N),
            matvec=lambda x: _mm(x, lambda v: self._apply(v, self._factors)),
            rmatvec=lambda x: _mm(x, lambda v: self._apply(v, [a.T for a in self._factors])),
            matmat=lambda X: _mm(X, lambda v: self._apply(v, self._factors)),
            rmatmat=lambda X: _mm(X, lambda v: self._apply(v, [a.T for a in self._factors])),
            dtype=self.dtype,
        )


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
