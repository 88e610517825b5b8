"""Per-factor factorisations: Cholesky when symmetric positive definite, LU otherwise.

:class:`Factorization` is the one factorisation object of the package: solves (also
triangular and along one mode of a tensor), sign and log-determinant, inverse and LAPACK's
condition estimate. ``Kron`` caches one per factor; ``kronkit.jax`` and ``kronkit.torch``
mirror its API (``solve``, ``slogdet``, ``rcond``, ``check``) in their own array types.
"""

from __future__ import annotations

import functools
import math
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.linalg as sla
from scipy.linalg import lapack

from ._errors import IllConditionedWarning, SingularFactorError, warn_at_caller
from ._vec import along_mode

__all__ = ["FactorChecks", "Factorization", "eps_of", "frozen", "is_symmetric", "kron_logdet",
           "kron_sign", "mode_solve", "rcond_from_factor", "singular_error",
           "warn_ill_conditioned"]

SYMMETRY_TOL = 16  # A counts as symmetric when max|A − Aᵀ| <= 16·eps·max|A|


@functools.cache
def eps_of(dtype: np.dtype) -> float:
    """Machine epsilon of ``dtype`` (cached: asked on every solve)."""
    return float(np.finfo(dtype).eps)


def is_symmetric(A: Any, eps: float) -> Any:
    """``max|A − Aᵀ| <= 16·eps·max|A|``: the one symmetry test of ``Kron``, ``kronkit.jax`` and
    ``kronkit.torch`` (NumPy, JAX or PyTorch ``A``; a traced boolean under ``jax.jit``)."""
    return abs(A - A.T).max() <= SYMMETRY_TOL * eps * abs(A).max()


def singular_error(label: str, rcond: float, eps: float, exact_zero: bool,
                   index: int) -> SingularFactorError:
    """The :class:`SingularFactorError` for the factor named ``label`` (one wording for
    ``Kron``, ``kronkit.jax`` and ``kronkit.torch``)."""
    why = ("an exact zero pivot in its LU factorisation" if exact_zero else
           f"reciprocal condition number {rcond:.3g} <= eps = {eps:.3g}")
    return SingularFactorError(
        f"{label} is singular to working precision ({why}); "
        "an inverse, solve or log-determinant is undefined",
        factor=index,
        rcond=rcond,
    )


class FactorChecks:
    """The conditioning contract of a factorisation, shared by :class:`Factorization` and the
    JAX / PyTorch factor objects that mirror it.

    A subclass has ``index``, ``rcond`` (LAPACK's estimate of ``1/(‖A‖₁‖A⁻¹‖₁)``),
    ``exact_zero`` and an ``eps`` (machine epsilon of its dtype); ``LABEL`` is how messages
    name the factor (``"factor 0"`` for ``Kron``, ``"`factors[0]`"`` for the autodiff back ends).
    """

    __slots__ = ()
    LABEL = "factor {}"
    index: int
    rcond: Any
    exact_zero: Any

    @property
    def eps(self) -> float:  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    @property
    def label(self) -> str:
        return self.LABEL.format(self.index)

    @property
    def singular(self) -> bool:
        """True if the factor is singular to working precision (``rcond <= eps``)."""
        return not self.rcond > self.eps

    @property
    def ill_conditioned(self) -> bool:
        """True if results lose more than half their digits (``eps < rcond < sqrt(eps)``)."""
        eps = self.eps
        return eps < self.rcond < math.sqrt(eps)

    def check(self) -> None:
        """Raise :class:`SingularFactorError` (naming the factor) if :attr:`singular`."""
        if self.singular:
            raise singular_error(self.label, self.rcond, self.eps, self.exact_zero, self.index)


class Factorization(FactorChecks):
    """Cholesky (symmetric positive definite) or LU factorisation of one square factor.

    Computed once, on first need, and cached by the owning :class:`Kron`. No eigenvalue
    clamping or jitter of any kind: a factor that is numerically singular raises
    :class:`SingularFactorError` when a solve is asked for.

    Attributes: ``kind`` (``"cholesky"`` or ``"lu"``); ``factor``, the lower Cholesky factor
    ``L`` (``A = L Lᵀ``, zeros above the diagonal) or LAPACK's packed LU factors (unit lower
    ``L`` below the diagonal, ``U`` on and above it); ``piv``, LAPACK's 0-based pivots (LU
    only, else ``None``); ``n``, ``index``, ``rcond``, ``symmetric``, ``exact_zero``.

    Thread safety: after construction nothing is ever written to ``factor`` or ``piv`` (both
    read-only; every LU solve hands LAPACK's ``getrs`` a private copy of the pivots, because
    SciPy's wrapper shifts the pivot array in place around the call). The cached inverse is
    built once under a lock.
    """

    __slots__ = ("_inv", "_lock", "exact_zero", "factor", "index", "kind", "lower", "n", "piv",
                 "rcond", "symmetric")

    def __init__(self, A: np.ndarray, index: int):
        self.index = index
        self.n = A.shape[0]
        self._inv: np.ndarray | None = None
        self._lock = threading.Lock()
        self.exact_zero = False
        scale = float(np.max(np.abs(A))) if A.size else 0.0
        self.symmetric = bool(np.array_equal(A, A.T) or is_symmetric(A, eps_of(A.dtype)))
        self.kind = "lu"
        if self.symmetric:
            (potrf,) = lapack.get_lapack_funcs(("potrf",), (A,))
            c, info = potrf(A, lower=1, clean=1, overwrite_a=0)
            if info == 0:
                self.kind = "cholesky"
                self.factor = frozen(c)  # lower-triangular L with A = L L^T
                self.piv = None
                self.lower = True
                self.rcond = rcond_from_factor(A, c, cholesky=True)
                if not 1e-100 < scale < 1e100:  # the estimate itself may over/underflow
                    self.rcond = _rcond_rescaled(A, scale, "cholesky")
                return
        (getrf,) = lapack.get_lapack_funcs(("getrf",), (A,))
        lu, piv, info = getrf(A, overwrite_a=0)
        self.factor = frozen(lu)
        self.piv = frozen(piv)
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
                v = frozen(np.array(v, copy=True))
            object.__setattr__(self, s, v)
        self._lock = threading.Lock()

    # -- determinants -------------------------------------------------------------------
    def slogdet(self) -> tuple[float, float]:
        """``(sign, log|det A|)`` from the factors (``(0.0, -inf)`` for a zero pivot)."""
        d = np.diagonal(self.factor)
        if self.kind == "cholesky":
            return 1.0, float(2.0 * np.sum(np.log(d)))
        if self.exact_zero or np.any(d == 0):
            return 0.0, -np.inf
        piv: np.ndarray = self.piv  # type: ignore[assignment]  # LU: always set
        swaps = int(np.count_nonzero(piv != np.arange(self.n, dtype=piv.dtype)))
        sign = (-1.0) ** swaps * float(np.prod(np.sign(d)))
        return sign, float(np.sum(np.log(np.abs(d))))

    # -- conditioning (singular, ill_conditioned, check: see FactorChecks) ------------------
    @property
    def eps(self) -> float:
        return eps_of(self.factor.dtype)

    # -- solves -------------------------------------------------------------------------
    def solve(self, b: np.ndarray, trans: bool = False) -> np.ndarray:
        """``A^{-1} b`` (or ``A^{-T} b``) for ``b`` of shape (n,) or (n, k) (a new array)."""
        if b.size == 0:
            return np.zeros(b.shape, dtype=np.result_type(b.dtype, self.factor.dtype))
        if self.kind == "cholesky":
            return sla.cho_solve((self.factor, True), b, check_finite=False)
        # LAPACK getrs with a private copy of the pivots: SciPy's wrapper shifts the pivot
        # array to 1-based and back *in place* around the call, which corrupted memory when
        # threads shared the cached array. ``factor`` is only read.
        piv: np.ndarray = self.piv  # type: ignore[assignment]  # LU: always set
        (getrs,) = lapack.get_lapack_funcs(("getrs",), (self.factor, b))
        x, info = getrs(self.factor, piv.copy(), b, trans=1 if trans else 0, overwrite_b=0)
        if info != 0:  # pragma: no cover - shapes are checked by the callers
            raise ValueError(f"LAPACK getrs failed with info = {info}")
        return x

    def tri_solve(self, b: np.ndarray, trans: bool = False) -> np.ndarray:
        """``L^{-1} b`` (or ``L^{-T} b``) with the Cholesky factor ``L`` (Cholesky only)."""
        if b.size == 0:
            return np.zeros(b.shape, dtype=np.result_type(b.dtype, self.factor.dtype))
        return sla.solve_triangular(self.factor, b, lower=True, trans=1 if trans else 0,
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
                    eye = np.eye(self.n, dtype=self.factor.dtype)
                    inv = self.solve(eye)
                    if self.kind == "cholesky":
                        inv = 0.5 * (inv + inv.T)
                    inv = frozen(np.ascontiguousarray(inv))
                    self._inv = inv
        return inv

    def chol(self) -> np.ndarray:
        """The lower Cholesky factor ``L`` (zeros above the diagonal)."""
        return np.tril(self.factor)


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


def frozen(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


def warn_ill_conditioned(facs: Sequence[FactorChecks], what: str | None,
                         skip_dirs: Sequence[str] = ()) -> None:
    """One :class:`IllConditionedWarning` if some factor has ``eps < rcond < sqrt(eps)``.

    Names every such factor (``what``, if given, prefixes the message); the warning's
    ``factor`` / ``rcond`` are the worst one's. It is issued at the user's line, skipping
    kronkit's frames and those under ``skip_dirs`` (JAX's or PyTorch's).
    """
    bad = [f for f in facs if f.ill_conditioned]
    if not bad:
        return
    worst = min(bad, key=lambda f: f.rcond)
    listing = ", ".join(f"{f.label} (condition number ≈ {1.0 / f.rcond:.3g})" for f in bad)
    warn_at_caller(
        IllConditionedWarning(
            f"{what + ': ' if what else ''}ill-conditioned {listing}; results may have lost "
            f"more than half of their digits (reciprocal condition number below sqrt(eps) = "
            f"{math.sqrt(worst.eps):.3g})",
            factor=worst.index,
            rcond=worst.rcond,
        ),
        *skip_dirs,
    )


def mode_solve(t: np.ndarray, fac: Factorization, k: int, d: int, *, trans: bool = False,
                tri: bool = False) -> np.ndarray:
    """Apply ``A_k^{-1}`` (``trans``: ``A_k^{-T}``; ``tri``: ``L_k^{-1}``/``L_k^{-T}``) on mode k."""
    return np.ascontiguousarray(along_mode(t, k, d, fac.tri_solve if tri else fac.solve, trans))


def kron_logdet(logdets: Sequence[Any], dims: Sequence[int]) -> Any:
    """``log|det(A_1 ⊗ ... ⊗ A_d)| = Σ_k (P/n_k) log|det A_k|`` with ``P = Π_k n_k``.

    The one statement of the rule: ``logdets[k]`` is ``log|det A_k|`` (a float, or a NumPy, JAX
    or PyTorch scalar or batch — only ``*`` and ``+`` are used) and ``dims[k] = n_k``.
    """
    P = math.prod(int(n) for n in dims)
    total: Any = 0.0
    for ld, n in zip(logdets, dims, strict=True):
        total = total + (P // int(n)) * ld
    return total


def kron_sign(signs: Sequence[Any], dims: Sequence[int]) -> Any:
    """``sign det(A_1 ⊗ ... ⊗ A_d) = Π_k sign(det A_k)^(P/n_k)`` (0 if some factor's is 0).

    ``signs[k]`` is ``-1``, ``0`` or ``+1`` (a float, or a NumPy, JAX or PyTorch scalar — only
    ``*`` is used, so it also runs on traced values): an even power is ``s·s``, an odd one ``s``.
    """
    P = math.prod(int(n) for n in dims)
    out: Any = 1.0
    for s, n in zip(signs, dims, strict=True):
        out = out * (s if (P // int(n)) % 2 else s * s)
    return out + 0.0  # -0.0 (a zero sign times a negative one) as 0.0
