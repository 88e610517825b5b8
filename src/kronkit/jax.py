r"""JAX versions of the Kronecker primitives, with closed-form derivative rules.

``kronkit.jax`` (optional extra ``jax``: ``pip install kronkit[jax]``) provides

=========================================  ===============================================
``matvec(factors, y)``                     ``(A1⊗…⊗Ad) y``          (factors may be rectangular)
``solve(factors, y)``                      ``(A1⊗…⊗Ad)⁻¹ y``
``inv_quad(factors, y)``                   ``yᵀ (A1⊗…⊗Ad)⁻¹ y``     (one value per row of ``y``)
``logdet(factors)``                        ``log det (A1⊗…⊗Ad)``
``log_quad(factors, y, mu, alpha)``        ``log(α + (y−μ)ᵀ (A1⊗…⊗Ad)⁻¹ (y−μ))``
=========================================  ===============================================

Convention (as everywhere in kronkit): ``A1⊗A2`` is ``jnp.kron(A1, A2)``; ``y`` of shape
``(..., P)`` holds one vector per row (``P = p1·…·pd``), each the row-major flattening of a
``(p1, …, pd)`` tensor, so ``kron(A, B) @ Y.ravel() == (A @ Y @ B.T).ravel()``.

Every function is a :func:`jax.custom_jvp` whose rule is the closed form (``S = A1⊗…⊗Ad``,
``dS = Σ_k A1⊗…⊗dA_k⊗…⊗Ad``):

* ``d(S y) = S dy + dS y`` (multilinear);
* ``d(S⁻¹y) = S⁻¹(dy − dS S⁻¹y)``;
* ``d(yᵀS⁻¹y) = (z + u)ᵀ dy − uᵀ dS z`` with ``z = S⁻¹y``, ``u = S⁻ᵀy``;
* ``d log det S = Σ_k (P/p_k) tr(A_k⁻¹ dA_k)``.

The rules are written with the same two structured building blocks as the values — mode
products (:func:`kronkit._vec.mode_apply`) and per-factor solves (:meth:`_Factor.solve`) — so
``jax.grad``, ``jax.jvp``, ``jax.vmap``, ``jax.jit`` and second derivatives
(``jax.hessian``, jvp-of-grad) all run in O(Σ p_k³ + P·Σ p_k) per vector and never build a
P×P array. ``log_quad`` is ``log(α + inv_quad(factors, y − μ))``; its derivatives are the
chain rule through ``inv_quad``'s rule.

Edge cases follow ``Kron`` and ``kronkit.torch`` (``docs/autodiff.md`` has the table) whenever
values are known — plain calls, and ``jax.grad`` / ``jax.jvp`` / ``jax.hessian`` outside
``jit``: NaN/Inf input raises ``ValueError`` naming the argument; a non-symmetric factor under
``assume="spd"`` raises :class:`~kronkit.NotPositiveDefiniteError`; a factor singular to
working precision (LAPACK's ``rcond <= eps``) raises :class:`~kronkit.SingularFactorError`
(``logdet`` too, except that an exact zero pivot gives ``-inf``); ``rcond < sqrt(eps)`` gives
an :class:`~kronkit.IllConditionedWarning`. Under ``jit`` (and for ``vmap``-ped arguments)
nothing can be raised: where an eager call raises, the result is NaN (the factorisation of an
offending factor is replaced by NaN, judged by the ``rcond`` of :func:`_traced_rcond`),
and there is no warning.

``assume`` is ``kronkit.torch``'s: ``"auto"`` (default; per factor, Cholesky where it is
symmetric positive definite, else LU), ``"general"`` (LU), ``"spd"`` (Cholesky). A traced
factor's values cannot be inspected, so under ``jit`` / ``vmap`` ``"auto"`` uses LU for it.

**Sums.** ``solve``, ``inv_quad``, ``logdet`` and ``log_quad`` also take a sum of
Kronecker products ``S = Σ_t F_t1⊗…⊗F_td`` as first argument: a :class:`kronkit.SumOfKron`
(constant factors), or a list of terms, each a list of ``d`` factors — a 2-D ``(n, n)``
array, a 1-D ``(n,)`` array ``v`` meaning ``diag(v)``, or a 0-d array / Python number ``s``
meaning ``s·I`` (its size taken from the other terms); a flat list of 2-D arrays is still one
Kronecker product. The structure is decided from these encodings and from object identity
(pass the same array object for the same matrix), never from values, so it is the same under
``jit``. Per axis ``k``: no 2-D factor (all diagonal); one 2-D matrix ``A`` with scalars
(``eigh(A)``); one 2-D ``A`` with one positive 1-D ``D`` (the metric); or two 2-D matrices
and nothing else, the last term's being the symmetric positive definite metric ``C``
(``eigh(L⁻¹AL⁻ᵀ)``, ``C = LLᵀ``). That covers ``[[K1, K2], [s2, 1.0]]`` (``K1⊗K2 + s²I``),
``[[K1, K2], [D1, D2]]``, ``[[A1, A2], [C1, C2]]``, ``[[A, 1.0], [1.0, B]]`` (``A⊕B``) and
``[[Cg, K], [Cn, 1.0]]``; anything else raises ``ValueError`` listing the forms. Rules
(``u = S⁻¹w``): ``d(wᵀS⁻¹w) = 2uᵀdw − uᵀ dS u``, ``dS⁻¹w = S⁻¹(dw − dS u)``,
``d log det S = Σ_{t,k} tr(G_tk dF_tk)`` with ``G_tk = V_k diag(g_tk) V_kᵀ``; the
eigendecomposition is never differentiated, so ``jax.hessian`` is exact at degenerate
spectra (an identity factor) too. A sum that is not positive definite raises
:class:`~kronkit.NotPositiveDefiniteError` naming its smallest whitened eigenvalue (NaN under
``jit``); a non-symmetric matrix factor raises ``ValueError`` (NaN under ``jit``). Gradients
with respect to a 1-D factor are the diagonal, to a scalar the trace, of the matrix gradient.
``docs/autodiff.md`` ("Sums of Kronecker products") has the derivation and costs.

Importing ``kronkit`` does not import JAX; importing this module does.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from . import _backend

try:
    import jax
    import jax.numpy as jnp
    import jax.scipy.linalg as jsl
except ImportError as exc:  # pragma: no cover - exercised in a subprocess test
    raise _backend.missing_extra("jax", "JAX") from exc

from . import _jax_sum
from ._factor import is_symmetric, kron_logdet, kron_sign, rcond_from_factor
from ._jax_common import check_finite as _check_finite
from ._jax_common import concrete as _concrete
from ._jax_common import log_beta
from ._jax_common import real_array as _real_array
from ._kron import Kron
from ._sum_spec import is_sum
from ._vec import apply_modes, d_apply_modes, to_tensor, to_vec

__all__ = ["inv_quad", "log_quad", "logdet", "matvec", "solve"]

_JAX_DIR = os.path.dirname(os.path.abspath(jax.__file__)) + os.sep


# ---------------------------------------------------------------------------------------
# Structured products on tensors (..., p1, ..., pd): mode products from kronkit._vec
# ---------------------------------------------------------------------------------------
def _inner(a: jax.Array, b: jax.Array, d: int) -> jax.Array:
    """``Σ a·b`` over the last ``d`` axes (one value per batch row)."""
    return jnp.sum(a * b, axis=tuple(range(-d, 0)))


# ---------------------------------------------------------------------------------------
# Per-factor factorisations and solves (the one place)
# ---------------------------------------------------------------------------------------
class _Factor(_backend.BackendFactor):
    """Cholesky or LU factorisation of one square factor: the JAX mirror of
    :class:`kronkit._factor.Factorization` (``kind``, ``factor``, ``piv``, ``n``, ``index``,
    ``symmetric``, ``rcond``, ``exact_zero``, :meth:`solve`, :meth:`tri_solve`,
    :meth:`slogdet`, ``check``, ``singular``, ``ill_conditioned``).

    Concrete ``A`` (see :func:`_concrete`): the kind follows ``assume`` as in
    :func:`kronkit._backend.choose_kind`; ``rcond`` is LAPACK's estimate. Abstract ``A``
    (``jit``, ``vmap``): nothing can be inspected or raised; ``"spd"`` uses Cholesky (NaN
    factors where ``A`` is not symmetric, as a failed Cholesky gives), ``"auto"`` and
    ``"general"`` use LU; ``rcond`` (:func:`_traced_rcond`) and ``exact_zero`` are traced,
    and ``check`` is a no-op (:func:`_factorize_all` turns a singular factor into NaN).
    """

    __slots__ = ("concrete", "exact_zero", "factor", "index", "kind", "n", "piv", "rcond",
                 "symmetric")

    def __init__(self, A: jax.Array, index: int, assume: str):
        self.index = index
        self.n = A.shape[0]
        a = _concrete(A)
        self.concrete = a is not None
        if a is None:  # abstract: nothing can be raised, and LAPACK is out of reach
            self.symmetric = is_symmetric(A, float(jnp.finfo(A.dtype).eps))
            if assume == "spd":
                L = jax.lax.linalg.cholesky(A, symmetrize_input=False)
                self.kind, self.piv = "cholesky", None
                self.factor = jnp.where(self.symmetric, L, jnp.nan)
                self.exact_zero = jnp.zeros((), bool)
            else:
                self.kind = "lu"
                self.factor, self.piv = jsl.lu_factor(A)
                self.exact_zero = jnp.any(jnp.diagonal(self.factor) == 0)
            self.rcond = _traced_rcond(A, self.factor, self.kind)
            return
        with jax.ensure_compile_time_eval():  # a constant under jit is factored now, once
            self._factor_concrete(a, assume)
        if isinstance(A, jax.core.Tracer):  # an outer derivative (jvp of grad): factor A
            # itself, so that the factors carry its tangent (the checks used the values); LU
            # unless "spd", whose Cholesky is exact along symmetric directions only
            if assume == "spd":
                self.factor = jax.lax.linalg.cholesky(A, symmetrize_input=False)
            else:
                self.kind = "lu"
                self.factor, self.piv = jsl.lu_factor(A)

    def _factor_concrete(self, a: jax.Array, assume: str) -> None:
        self.symmetric = bool(is_symmetric(a, float(jnp.finfo(a.dtype).eps)))
        chol: list[jax.Array] = []

        def cholesky_ok() -> bool:
            chol.append(jax.lax.linalg.cholesky(a, symmetrize_input=False))
            return bool(jnp.all(jnp.isfinite(chol[0])))

        self.kind = _backend.choose_kind(assume, self.symmetric, cholesky_ok, self.index)
        if self.kind == "cholesky":
            self.factor, self.piv, self.exact_zero = chol[0], None, False
        else:
            self.factor, self.piv = jsl.lu_factor(a)
            self.exact_zero = bool(jnp.any(jnp.diagonal(self.factor) == 0))
        self.rcond = 0.0 if self.exact_zero else rcond_from_factor(
            np.asarray(a), np.asarray(self.factor), self.kind == "cholesky")

    @property
    def eps(self) -> float:
        return float(jnp.finfo(self.factor.dtype).eps)

    @property
    def singular(self) -> Any:
        """``rcond <= eps`` (a traced boolean for abstract values)."""
        return super().singular if self.concrete else ~(self.rcond > self.eps)

    def check(self) -> None:
        if self.concrete:
            super().check()

    def solve(self, b: jax.Array, trans: bool = False) -> jax.Array:
        """``A⁻¹ b`` (``trans``: ``A⁻ᵀ b``) for ``b`` of shape ``(p, n)``; O(p²n)."""
        if self.kind == "cholesky":
            return jsl.cho_solve((self.factor, True), b)
        return jsl.lu_solve((self.factor, self.piv), b, trans=1 if trans else 0)

    def tri_solve(self, b: jax.Array, trans: bool = False) -> jax.Array:
        """``L⁻¹ b`` (``trans``: ``L⁻ᵀ b``) with the Cholesky factor ``L`` (Cholesky only)."""
        return jsl.solve_triangular(self.factor, b, lower=True, trans=1 if trans else 0)

    def slogdet(self) -> tuple[jax.Array, jax.Array]:
        """``(sign, log|det A|)`` from the factorisation."""
        diag = jnp.diagonal(self.factor)
        if self.piv is None:
            return jnp.ones((), diag.dtype), 2.0 * jnp.sum(jnp.log(diag))
        swaps = jnp.sum(self.piv != jnp.arange(self.piv.shape[0], dtype=self.piv.dtype))
        sign = jnp.where(swaps % 2 == 0, 1.0, -1.0).astype(diag.dtype) * jnp.prod(jnp.sign(diag))
        return sign, jnp.sum(jnp.log(jnp.abs(diag)))


_EXACT_RCOND_MAX_N = 64  # up to this size the traced rcond is exact, above it estimated


def _traced_rcond(A: jax.Array, c: jax.Array, kind: str) -> jax.Array:
    """``1/(‖A‖₁‖A⁻¹‖₁)`` in the traced program (JAX has no LAPACK ``gecon``).

    ``‖A⁻¹‖₁ = ‖(LU)⁻¹‖₁`` (the row permutation does not change it; Cholesky: ``U = Lᵀ``).
    For ``p ≤ 64`` it is computed exactly, from two triangular solves with the identity
    (O(p³), cheap at that size, and two operations to compile); above, by the Hager–Higham
    estimate of :func:`_inv_norm1_estimate` (O(p²), the method of LAPACK's ``gecon``).
    ``c`` is the lower Cholesky factor (``kind="cholesky"``) or the packed LU factors.
    Nothing is differentiated (``stop_gradient``). NaN or Inf (a zero pivot, a failed
    Cholesky) gives ``rcond = 0``.
    """
    A, c = jax.lax.stop_gradient(A), jax.lax.stop_gradient(c)
    tri = jax.lax.linalg.triangular_solve
    unit = kind == "lu"  # LU: unit lower L and upper U in ``c``; Cholesky: L, U = Lᵀ

    def inv(V):  # (LU)⁻¹ V for V of shape (p, k)
        V = tri(c, V, left_side=True, lower=True, unit_diagonal=unit)
        return tri(c, V, left_side=True, lower=not unit, transpose_a=not unit)

    def inv_t(V):  # (LU)⁻ᵀ V
        V = tri(c, V, left_side=True, lower=not unit, transpose_a=unit)
        return tri(c, V, left_side=True, lower=True, transpose_a=True, unit_diagonal=unit)

    n = A.shape[0]
    if n <= _EXACT_RCOND_MAX_N:
        inv_norm = jnp.max(jnp.sum(jnp.abs(inv(jnp.eye(n, dtype=A.dtype))), axis=0))
    else:
        inv_norm = _inv_norm1_estimate(inv, inv_t, n, A.dtype)
    rcond = 1.0 / (jnp.max(jnp.sum(jnp.abs(A), axis=0)) * inv_norm)
    return jnp.where(jnp.isfinite(rcond) & jnp.isfinite(inv_norm), rcond, 0.0)


def _inv_norm1_estimate(inv, inv_t, n: int, dtype, steps: int = 4) -> jax.Array:
    """Hager–Higham estimate of ``‖M‖₁`` from products ``M V`` (``inv``) and ``Mᵀ V``.

    From ``x = 1/n`` move to the unit vector where ``Mᵀ sign(M x)`` peaks, ``steps`` times at
    most (stopping when that no longer increases ``‖M x‖₁``), and keep the larger of that and
    ``2‖M v‖₁/(3n)`` for the alternating vector ``v = ((−1)ⁱ(1 + i/(n−1)))``. A lower bound,
    in practice within a factor 3 of ``‖M‖₁``; for ``M = A⁻¹`` it equals LAPACK's figure.
    """
    def sign(v):
        return jnp.where(v >= 0, 1.0, -1.0).astype(dtype)

    i = jnp.arange(n, dtype=dtype)
    alt = jnp.where(i % 2 == 0, 1.0, -1.0) * (1.0 + i / max(n - 1, 1))
    x = jnp.full((n,), 1.0 / n, dtype)
    Y = inv(jnp.stack([x, alt], axis=1))
    est, xi = jnp.sum(jnp.abs(Y[:, 0])), sign(Y[:, 0])

    def step(_, carry):
        x, xi, est, done = carry
        z = inv_t(xi[:, None])[:, 0]
        j = jnp.argmax(jnp.abs(z))
        done = done | (jnp.abs(z[j]) <= z @ x)
        x_new = jax.nn.one_hot(j, n, dtype=dtype)
        y = inv(x_new[:, None])[:, 0]
        est_new, xi_new = jnp.sum(jnp.abs(y)), sign(y)
        improves = ~done & (est_new > est) & jnp.any(xi_new != xi)
        est = jnp.where(done, est, jnp.maximum(est, est_new))
        done = done | ~improves
        return jnp.where(done, x, x_new), jnp.where(done, xi, xi_new), est, done

    _, _, est, _ = jax.lax.fori_loop(0, steps, step, (x, xi, est, jnp.zeros((), bool)))
    return jnp.maximum(est, 2.0 * jnp.sum(jnp.abs(Y[:, 1])) / (3.0 * n))


def _factorize_all(mats: Sequence[jax.Array], assume: str, *,
                   zero_det_ok: bool = False) -> tuple[list[_Factor], Any]:
    """Factor every factor, with the conditioning contract of ``Kron``.

    Returns ``(factors, zero)``, ``zero`` true where some factor has an exact zero pivot.
    Concrete values: :func:`kronkit._backend.check_factorizations` (raise for a singular
    factor, warn for an ill-conditioned one; ``zero_det_ok`` for log-determinants). Abstract
    values (``jit``, ``vmap``): a singular factor is replaced by NaN, so every result computed
    from it is NaN (``logdet`` turns an exact zero pivot into −inf itself); no warning.
    """
    facs = [_Factor(M, k, assume) for k, M in enumerate(mats)]
    if _backend.check_factorizations([f for f in facs if f.concrete], (_JAX_DIR,),
                            zero_det_ok=zero_det_ok):
        return facs, True
    zero: Any = False
    for f in facs:
        if not f.concrete:
            zero = zero | f.exact_zero
            f.factor = jnp.where(f.singular, jnp.nan, f.factor)
    return facs, zero


# ---------------------------------------------------------------------------------------
# The custom-JVP primitives (validated, cast arrays in; ``assume`` is static)
# ---------------------------------------------------------------------------------------
# ``assume`` ("auto" / "general" / "spd") is a static, non-differentiable first argument.
_static_assume = functools.partial(jax.custom_jvp, nondiff_argnums=(0,))


def _dims(mats: Sequence[jax.Array], axis: int) -> tuple[int, ...]:
    return tuple(M.shape[axis] for M in mats)


@jax.custom_jvp
def _matvec(mats: tuple[jax.Array, ...], y: jax.Array) -> jax.Array:
    return to_vec(apply_modes(to_tensor(y, _dims(mats, 1)), mats), len(mats))


@_matvec.defjvp
def _matvec_jvp(primals, tangents):
    mats, y = primals
    dmats, dy = tangents
    cols, d = _dims(mats, 1), len(mats)
    Y = to_tensor(y, cols)
    out = apply_modes(Y, mats)
    dout = apply_modes(to_tensor(dy, cols), mats) + d_apply_modes(Y, mats, dmats)
    return to_vec(out, d), to_vec(dout, d)


def _solve_parts(assume: str, mats, y):
    facs, _ = _factorize_all(mats, assume)
    return facs, _backend.solve_modes(to_tensor(y, _dims(mats, 1)), facs)


@_static_assume
def _solve(assume: str, mats, y):
    return to_vec(_solve_parts(assume, mats, y)[1], len(mats))


@_solve.defjvp
def _solve_jvp(assume, primals, tangents):
    mats, y = primals
    dmats, dy = tangents
    facs, X = _solve_parts(assume, mats, y)
    dX = _backend.solve_modes(to_tensor(dy, _dims(mats, 1)) - d_apply_modes(X, mats, dmats), facs)
    return to_vec(X, len(mats)), to_vec(dX, len(mats))


def _inv_quad_parts(assume: str, mats, w):
    facs, Z = _solve_parts(assume, mats, w)
    W = to_tensor(w, _dims(mats, 1))
    return facs, W, Z, _inner(W, Z, len(mats))


@_static_assume
def _inv_quad(assume: str, mats, w):
    return _inv_quad_parts(assume, mats, w)[3]


@_inv_quad.defjvp
def _inv_quad_jvp(assume, primals, tangents):
    mats, w = primals
    dmats, dw = tangents
    d = len(mats)
    facs, W, Z, q = _inv_quad_parts(assume, mats, w)
    U = Z if all(f.kind == "cholesky" for f in facs) else _backend.solve_modes(W, facs, trans=True)
    dW = to_tensor(dw, _dims(mats, 1))
    return q, _inner(Z + U, dW, d) - _inner(U, d_apply_modes(Z, mats, dmats), d)


def _logdet_parts(assume: str, mats, zero_det_ok: bool = True):
    """Factorisations and ``log det S = Σ_k (P/p_k) log|det A_k|``: −inf where a factor has
    an exact zero pivot (``det S = 0``), NaN where ``det S < 0``."""
    facs, zero = _factorize_all(mats, assume, zero_det_ok=zero_det_ok)
    parts = [f.slogdet() for f in facs]
    dims = _dims(mats, 0)
    sign = kron_sign([s for s, _ in parts], dims)
    logabs = kron_logdet([la for _, la in parts], dims)
    value = jnp.where(sign > 0, logabs, jnp.where(sign == 0, -jnp.inf, jnp.nan))
    return facs, jnp.where(zero, -jnp.inf, value)


@_static_assume
def _logdet(assume: str, mats):
    return _logdet_parts(assume, mats)[1]


@_logdet.defjvp
def _logdet_jvp(assume, primals, tangents):
    (mats,), (dmats,) = primals, tangents
    # the derivative needs A_k⁻¹: at det S = 0 it does not exist (raises when concrete)
    facs, value = _logdet_parts(assume, mats, zero_det_ok=False)
    P = math.prod(_dims(mats, 0))
    dvalue = sum(
        (P // M.shape[0]) * jnp.trace(f.solve(dM))
        for f, M, dM in zip(facs, mats, dmats, strict=True)
    )
    return value, dvalue


# ---------------------------------------------------------------------------------------
# Validation (static shapes, at trace time) and the public functions
# ---------------------------------------------------------------------------------------
def _prepare(factors: Any, *, square: str | None, **vectors: Any):
    """Validate ``factors`` and named vector arguments (:func:`kronkit._backend.validate`)
    and cast to one float dtype (``alpha``, if given, does not take part in the choice).

    Returns ``(mats, {name: array or None})``.
    """
    mats, arrays = _backend.validate(factors, square, _real_array, _check_finite, **vectors)
    dtype = jnp.result_type(*mats, *[a for n, a in arrays.items()
                                     if a is not None and n != "alpha"], 0.0)
    return (tuple(M.astype(dtype) for M in mats),
            {k: (None if a is None else a.astype(dtype)) for k, a in arrays.items()})


def matvec(factors: Sequence[Any] | Kron, y: Any) -> jax.Array:
    r"""``(A1⊗…⊗Ad) y`` for each row of ``y``, without forming the Kronecker product.

    Parameters
    ----------
    factors : sequence of arrays of shape (m_k, n_k), or kronkit.Kron
        The factors; rectangular allowed.
    y : array of shape (..., N)
        ``N = n1·…·nd``; each row is the row-major flattening of an ``(n1, …, nd)`` tensor.

    Returns
    -------
    jax.Array of shape (..., M)
        ``M = m1·…·md``.

    Notes
    -----
    Mode products, O(N·Σ m_k) per row (for d = 2: ``A @ Y @ B.T``). The JVP is multilinear:
    ``d(Sy) = S dy + Σ_k (A1⊗…⊗dA_k⊗…⊗Ad) y``.
    Dense equivalent: ``y @ jnp.kron(A, B).T``.
    """
    mats, arrays = _prepare(factors, square=None, y=y)
    return _matvec(mats, arrays["y"])


def solve(factors: Sequence[Any] | Kron, y: Any, *, assume: str = "auto") -> jax.Array:
    r"""``(A1⊗…⊗Ad)⁻¹ y`` for each row of ``y``, by one solve per factor.

    Parameters
    ----------
    factors : sequence of square arrays (p_k, p_k), kronkit.Kron, or a sum ("Sums", above)
    y : array of shape (..., P)
        ``P = p1·…·pd``; each row is a right-hand side.
    ASSUME

    Returns
    -------
    jax.Array of shape (..., P)

    Notes
    -----
    Cost O(Σ p_k³ + P·Σ p_k) per row. JVP: ``dx = S⁻¹(dy − dS x)``, ``x = S⁻¹y``.
    A factor singular to working precision raises :class:`~kronkit.SingularFactorError`
    (NaN under ``jit``); ``rcond < sqrt(eps)`` warns (:class:`~kronkit.IllConditionedWarning`).
    Dense equivalent: ``jnp.linalg.solve(jnp.kron(A, B), y.T).T``.
    """
    _backend.check_assume(assume)
    if is_sum(factors):
        return _jax_sum.solve(factors, y)
    mats, arrays = _prepare(factors, square="solve", y=y)
    return _solve(assume, mats, arrays["y"])


def inv_quad(factors: Sequence[Any] | Kron, y: Any, *, assume: str = "auto") -> jax.Array:
    r"""The quadratic form ``q = yᵀ (A1⊗…⊗Ad)⁻¹ y``, one value per row of ``y``.

    Parameters
    ----------
    factors : sequence of square arrays (p_k, p_k), kronkit.Kron, or a sum ("Sums", above)
    y : array of shape (..., P)
    ASSUME

    Returns
    -------
    jax.Array of shape ``y.shape[:-1]``

    Notes
    -----
    With ``z = S⁻¹y`` and ``u = S⁻ᵀy`` (``u = z`` for symmetric factors), the JVP is
    ``dq = (z + u)ᵀdy − uᵀ dS z``; its reverse mode gives ``∂q/∂A = −U B Zᵀ`` and
    ``∂q/∂B = −Uᵀ A Z`` for d = 2 (``Z``, ``U`` the ``(p, q)`` matrices of ``z``, ``u``).
    Cost O(Σ p_k³ + P·Σ p_k) per row for the value and for each derivative.
    Dense equivalent: ``y @ jnp.linalg.solve(jnp.kron(A, B), y)``.
    """
    _backend.check_assume(assume)
    if is_sum(factors):
        return _jax_sum.inv_quad(factors, y)
    mats, arrays = _prepare(factors, square="inv_quad", y=y)
    return _inv_quad(assume, mats, arrays["y"])


def logdet(factors: Sequence[Any] | Kron, *, assume: str = "auto") -> jax.Array:
    r"""``log det (A1⊗…⊗Ad) = Σ_k (P/p_k) log det A_k``.

    Parameters
    ----------
    factors : sequence of square arrays (p_k, p_k), kronkit.Kron, or a sum ("Sums", above)
    ASSUME

    Returns
    -------
    jax.Array of shape ()
        The log-determinant; ``-inf`` if a factor has an exact zero pivot (``det S = 0``).
        Where ``det(A1⊗…⊗Ad) < 0`` it is undefined: eager calls raise
        :class:`kronkit.DomainError`; under ``jit`` (no exception possible) the value is NaN,
        as ``jnp.log(jnp.linalg.det(S))`` would be. A factor singular to working precision
        without an exact zero pivot raises :class:`~kronkit.SingularFactorError`, as
        :func:`solve` does (NaN under ``jit``); its derivative at ``det S = 0`` raises too.

    Notes
    -----
    Cost O(Σ p_k³). JVP: ``Σ_k (P/p_k) tr(A_k⁻¹ dA_k)``, so ``∂/∂A_k = (P/p_k) A_k⁻ᵀ``.
    Dense equivalent: ``jnp.linalg.slogdet(jnp.kron(A, B))[1]`` where the sign is +1.
    """
    _backend.check_assume(assume)
    if is_sum(factors):
        return _jax_sum.logdet(factors)
    mats, _ = _prepare(factors, square="logdet")
    out = _logdet(assume, mats)
    value = _concrete(out)
    if value is not None and bool(jnp.isnan(value)):
        raise _backend.negative_det_error(float(value))
    return out


def log_quad(
    factors: Sequence[Any] | Kron,
    y: Any,
    mu: Any = None,
    alpha: Any = 1.0,
    *,
    assume: str = "auto",
) -> jax.Array:
    r"""The seed function ``λ = log(α + (y−μ)ᵀ (A1⊗…⊗Ad)⁻¹ (y−μ))``, one value per row.

    Parameters
    ----------
    factors : sequence of square arrays (p_k, p_k), kronkit.Kron, or a sum ("Sums", above)
    y : array of shape (..., P)
        Observation(s), each the row-major flattening of a ``(p1, …, pd)`` tensor.
    mu : array of shape (P,) or (..., P), optional
        Location (default 0); broadcast against ``y``.
    alpha : scalar
        Offset ``α`` (differentiable); ``β = α + q`` must be positive.
    ASSUME

    Returns
    -------
    jax.Array of shape ``broadcast(y, mu).shape[:-1]``
        Where ``β ≤ 0`` the logarithm is undefined: eager calls raise
        :class:`kronkit.DomainError`; under a JAX transformation the value is NaN (or −inf),
        as ``jnp.log`` gives.

    Notes
    -----
    ``λ = log(α + inv_quad(factors, y − μ))``: derivatives are ``β⁻¹`` times those of
    :func:`inv_quad` (``∂λ/∂A = −β⁻¹ U B Zᵀ``, ``∂λ/∂B = −β⁻¹ Uᵀ A Z``,
    ``∂λ/∂y = −∂λ/∂μ = β⁻¹(z + u)``, ``∂λ/∂α = β⁻¹``). Cost O(Σ p_k³ + P·Σ p_k) per row.
    Dense equivalent: ``jnp.log(alpha + w @ jnp.linalg.solve(jnp.kron(A, B), w))``,
    ``w = y − mu``.
    """
    _backend.check_assume(assume)
    if is_sum(factors):
        return _jax_sum.log_quad(factors, y, mu, alpha)
    mats, arrays = _prepare(factors, square="log_quad", y=y, mu=mu, alpha=alpha)
    w = arrays["y"] if arrays["mu"] is None else arrays["y"] - arrays["mu"]
    return log_beta(arrays["alpha"], _inv_quad(assume, mats, w))


_ASSUME_DOC = _backend.ASSUME_DOC + """ Under ``jit`` / ``vmap``, where a factor's values are
        not known, ``"auto"`` uses LU for it and ``"spd"`` gives NaN instead of raising."""
for _f in (solve, inv_quad, logdet, log_quad):
    if _f.__doc__:  # None under python -OO
        _f.__doc__ = _f.__doc__.replace("ASSUME", _ASSUME_DOC)
del _f
