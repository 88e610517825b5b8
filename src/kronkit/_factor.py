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
from scipy.linalg.blas import get_blas_funcs

from ._errors import IllConditionedWarning, SingularFactorError, warn_at_caller
from ._vec import along_mode

__all__ = ["FactorChecks", "Factorization", "blas_fn", "eps_of", "exactly_symmetric", "frozen",
           "is_symmetric", "kron_logdet", "kron_sign", "lapack_fn", "mode_solve", "one_norm",
           "rcond_from_factor", "singular_error", "tri_inverse_lower", "warn_ill_conditioned"]

SYMMETRY_TOL = 16  # A counts as symmetric when max|A − Aᵀ| <= 16·eps·max|A|


@functools.cache
def eps_of(dtype: np.dtype) -> float:
    """Machine epsilon of ``dtype`` (cached: asked on every solve)."""
    return float(np.finfo(dtype).eps)


def exactly_symmetric(A: np.ndarray) -> bool:
    """``A == Aᵀ`` entry for entry: by bytes for small ``A`` (cheaper than an elementwise
    comparison), by row panels against column panels for large ones (cache-friendly), else
    elementwise."""
    n = A.shape[0]
    if A.size <= 4096:
        return A.tobytes() == A.T.tobytes()
    if n < 512:
        return bool(np.array_equal(A, A.T))
    return all(np.array_equal(A[i : i + 256, i:], A[i:, i : i + 256].T) for i in range(0, n, 256))


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

    __slots__ = ("_anorm", "_cert", "_inv", "_lock", "_rcond", "_tinv", "exact_zero", "factor",
                 "index", "kind", "lower", "n", "piv", "symmetric")

    def __init__(self, A: np.ndarray, index: int, scale: float | None = None):
        self.index = index
        self.n = A.shape[0]
        self._inv: np.ndarray | None = None
        self._tinv: np.ndarray | None = None
        self._rcond: float | None = None
        self._cert: bool | None = None
        self._anorm = 0.0
        self._lock = threading.Lock()
        self.exact_zero = False
        if scale is None:
            scale = max(float(A.max()), -float(A.min())) if A.size else 0.0
        exact = exactly_symmetric(A)
        self.symmetric = exact or bool(is_symmetric(A, eps_of(A.dtype)))
        self.kind = "lu"
        if self.symmetric:
            # an exactly symmetric row-major A is its own column-major transpose: LAPACK gets
            # a contiguous copy instead of a transposing one
            At = A.T if (exact and A.flags.c_contiguous) else A
            c, info = lapack_fn("potrf", A.dtype)(At, lower=1, clean=1, overwrite_a=0)
            if info == 0:
                self.kind = "cholesky"
                self.factor = frozen(c)  # lower-triangular L with A = L L^T
                self.piv = None
                self.lower = True
                self._anorm = one_norm(A)  # LAPACK's estimate: on first need (rcond)
                if not 1e-100 < scale < 1e100:  # the estimate itself may over/underflow
                    self._rcond = _rcond_rescaled(A, scale, "cholesky")
                return
        (getrf,) = lapack.get_lapack_funcs(("getrf",), (A,))
        lu, piv, info = getrf(A, overwrite_a=0)
        self.factor = frozen(lu)
        self.piv = frozen(piv)
        self.lower = False
        if info > 0:  # exact zero pivot: det A = 0 exactly in the computed factorisation
            self.exact_zero = True
            self._rcond = 0.0
        else:
            self._rcond = rcond_from_factor(A, lu, cholesky=False)
            if not 1e-100 < scale < 1e100:
                self._rcond = _rcond_rescaled(A, scale, "lu")

    # -- copies and pickles: no lock in the state; arrays come back read-only -------------
    def __getstate__(self):
        return {s: getattr(self, s) for s in self.__slots__ if s != "_lock"}

    def __setstate__(self, state):
        for s, v in state.items():
            if isinstance(v, np.ndarray):
                v = frozen(np.array(v, copy=True))
            object.__setattr__(self, s, v)
        self._lock = threading.Lock()

    # -- conditioning (check: see FactorChecks) --------------------------------------------
    @property
    def rcond(self) -> float:
        """LAPACK's estimate of ``1/(‖A‖₁‖A⁻¹‖₁)`` (``pocon`` / ``gecon``, O(n²); for a Cholesky
        factorisation computed on first need)."""
        rc = self._rcond
        if rc is None:
            pocon = lapack_fn("pocon", self.factor.dtype)
            rc = self._rcond = float(pocon(self.factor, self._anorm, uplo="L")[0])
        return rc

    @property
    def singular(self) -> bool:
        return False if self._certified() else not self.rcond > self.eps

    @property
    def ill_conditioned(self) -> bool:
        return False if self._certified() else self.eps < self.rcond < math.sqrt(self.eps)

    def _certified(self) -> bool:
        """True when ``rcond > sqrt(eps)`` is proven from the cached ``L⁻¹`` without the estimate:
        ``‖A⁻¹‖₁ = ‖L⁻ᵀL⁻¹‖₁ ≤ ‖L⁻¹‖_∞ ‖L⁻¹‖₁`` (an upper bound, where the estimate is a lower
        one, so both agree that nothing is to be raised or warned). For factor sizes in
        ``CERTIFY_N`` only, where the estimate costs more than the bound's few reductions."""
        if self._cert is None:
            M = self._tinv
            if self._rcond is not None or M is None or not CERTIFY_N[0] <= self.n <= CERTIFY_N[1]:
                return False
            aM = np.abs(M)
            bound = self._anorm * float(aM.sum(axis=0).max()) * float(aM.sum(axis=1).max())
            self._cert = bool(bound * math.sqrt(self.eps) < 1.0)
        return self._cert

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
        """The cached ``A⁻¹`` itself (read-only; for internal products).

        Cholesky: ``L⁻ᵀL⁻¹`` by LAPACK (exactly symmetric); LU: ``getrs`` on the identity."""
        inv = self._inv
        if inv is None:
            with self._lock:
                inv = self._inv
                if inv is None:
                    if self.kind == "cholesky":
                        # A⁻¹ = L⁻ᵀL⁻¹: lauum on the cached L⁻¹ (n³/3 flops) when it exists,
                        # else potri (trtri and lauum, n³ flops)
                        if self._tinv is not None:
                            c, info = lapack_fn("lauum", self.factor.dtype)(self._tinv, lower=1)
                        else:
                            c, info = lapack_fn("potri", self.factor.dtype)(self.factor, lower=1)
                        if info != 0:  # pragma: no cover - a Cholesky factor has L_ii > 0
                            raise ValueError(f"LAPACK potri/lauum failed with info = {info}")
                        inv = np.tril(c)
                        inv += np.tril(c, -1).T
                    else:
                        inv = self.solve(np.eye(self.n, dtype=self.factor.dtype))
                    inv = frozen(np.ascontiguousarray(inv))
                    self._inv = inv
        return inv

    def tri_inverse(self) -> np.ndarray:
        """``L⁻¹`` for the Cholesky factor ``L`` (lower triangular, Fortran order, read-only;
        :func:`tri_inverse_lower`, n³/3 flops, computed once). Cholesky only."""
        inv = self._tinv
        if inv is None:
            with self._lock:
                inv = self._tinv
                if inv is None:
                    if self.kind != "cholesky":
                        raise ValueError("tri_inverse() needs a Cholesky factorisation")
                    inv = frozen(tri_inverse_lower(self.factor))
                    self._tinv = inv
        return inv

    def chol(self) -> np.ndarray:
        """The lower Cholesky factor ``L`` (zeros above the diagonal)."""
        return np.tril(self.factor)


def rcond_from_factor(A: np.ndarray, factor: np.ndarray, cholesky: bool) -> float:
    """LAPACK's estimate of ``1/(‖A‖₁‖A⁻¹‖₁)`` from ``A``'s lower Cholesky factor (``pocon``)
    or its packed LU factor (``gecon``), O(n²). The one estimate ``Kron``, ``kronkit.jax`` and
    ``kronkit.torch`` use."""
    anorm = one_norm(A)
    if cholesky:
        return float(lapack_fn("pocon", factor.dtype)(factor, anorm, uplo="L")[0])
    return float(lapack_fn("gecon", factor.dtype)(factor, anorm, norm="1")[0])


def one_norm(A: np.ndarray) -> float:
    """``‖A‖₁ = ‖Aᵀ‖_∞``, by LAPACK on the column-major view ``Aᵀ`` of a row-major ``A``."""
    At = A.T if A.flags.c_contiguous else np.asfortranarray(A).T
    return float(lapack_fn("lange", A.dtype)("I", At)) if A.size else 0.0


def lapack_fn(name: str, dtype: np.dtype) -> Any:
    """SciPy's LAPACK routine ``name`` for ``dtype`` (looked up once per dtype)."""
    key = (name, np.dtype(dtype).char)
    fn = _ROUTINES.get(key)
    if fn is None:
        (fn,) = lapack.get_lapack_funcs((name,), dtype=dtype)
        _ROUTINES[key] = fn
    return fn


def blas_fn(name: str, dtype: np.dtype) -> Any:
    """SciPy's BLAS routine ``name`` for ``dtype`` (looked up once per dtype)."""
    key = ("blas:" + name, np.dtype(dtype).char)
    fn = _ROUTINES.get(key)
    if fn is None:
        (fn,) = get_blas_funcs((name,), dtype=dtype)
        _ROUTINES[key] = fn
    return fn


_ROUTINES: dict[tuple[str, str], Any] = {}


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


CERTIFY_N = (24, 256)  # Factorization._certified: sizes where the bound costs less than pocon
TRI_BLOCK = 64  # tri_inverse_lower: LAPACK trtri on blocks up to this size


def tri_inverse_lower(L: np.ndarray) -> np.ndarray:
    """The inverse of a nonsingular lower-triangular ``L`` (a new Fortran-ordered array).

    Recursive on halves, ``[[L11, 0], [L21, L22]]⁻¹ = [[M11, 0], [−M22 L21 M11, M22]]``: the
    off-diagonal block is two triangular products (``trmm``, which run near GEMM speed), the
    diagonal blocks recurse down to LAPACK ``trtri`` on blocks of at most ``TRI_BLOCK`` — whose
    unblocked inner loops are slow on large matrices (at n = 200 it took as long as a GEMM of
    the same size, for a third of the flops). n³/3 flops either way.
    """
    n = L.shape[0]
    if n <= TRI_BLOCK:
        M, info = lapack_fn("trtri", L.dtype)(L, lower=1)
        if info != 0:
            raise ValueError(f"LAPACK trtri failed with info = {info} (a zero on the diagonal)")
        return M
    h = n // 2
    M = np.empty((n, n), dtype=L.dtype, order="F")
    M11 = tri_inverse_lower(L[:h, :h])
    M22 = tri_inverse_lower(L[h:, h:])
    trmm = blas_fn("trmm", L.dtype)
    T = trmm(-1.0, M11, L[h:, :h], side=1, lower=1)  # −L21 M11 (a fresh Fortran array)
    M[h:, :h] = trmm(1.0, M22, T, side=0, lower=1, overwrite_b=1)  # −M22 L21 M11
    M[:h, :h] = M11
    M[:h, h:] = 0.0
    M[h:, h:] = M22
    return M


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
