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
products (:func:`_mode_product`) and per-factor solves (:func:`_factor_solve`) — so
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

Importing ``kronkit`` does not import JAX; importing this module does.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np

try:
    import jax
    import jax.numpy as jnp
    import jax.scipy.linalg as jsl
except ImportError as exc:  # pragma: no cover - exercised in a subprocess test
    raise ImportError(
        "kronkit.jax needs JAX, which is not installed; install it with "
        "`pip install kronkit[jax]`"
    ) from exc

from ._checks import check_square, non_finite_error
from ._errors import (
    DomainError,
    IllConditionedWarning,
    NotPositiveDefiniteError,
    SingularFactorError,
    warn_at_caller,
)
from ._factor import rcond_from_factor
from ._kron import Kron

try:  # public home since jax 0.4.36; older releases keep it in jax.core
    from jax.extend.core import concrete_or_error as _concrete_or_error
except ImportError:  # pragma: no cover - old jax
    from jax.core import concrete_or_error as _concrete_or_error

__all__ = ["inv_quad", "log_quad", "logdet", "matvec", "solve"]

_ASSUME = ("general", "spd")


# ---------------------------------------------------------------------------------------
# The vec convention on tensors (..., p1, ..., pd) and the one place for mode operations
# ---------------------------------------------------------------------------------------
def _prod(xs: Sequence[int]) -> int:
    out = 1
    for x in xs:
        out *= int(x)
    return out


def _to_tensor(y: jax.Array, dims: Sequence[int]) -> jax.Array:
    """View ``y`` of shape ``(..., P)`` as ``(..., p1, ..., pd)`` (row-major)."""
    return y.reshape(*y.shape[:-1], *dims)


def _to_vec(t: jax.Array, d: int) -> jax.Array:
    """Flatten the last ``d`` axes of ``t`` row-major (empty batches included)."""
    return t.reshape(*t.shape[: t.ndim - d], _prod(t.shape[t.ndim - d :]))


def _along_mode(t: jax.Array, k: int, d: int, op: Callable[[jax.Array], jax.Array]) -> jax.Array:
    """Apply the matrix map ``op`` to mode ``k`` (of the last ``d`` axes) of ``t``.

    Mode ``k`` is unfolded to the rows of a ``(n_k, rest)`` matrix ``X`` (batch axes
    included in ``rest``); ``op(X)`` of shape ``(m_k, rest)`` is folded back in place.
    One GEMM or one multi-right-hand-side solve per call.
    """
    axis = t.ndim - d + k
    x = jnp.moveaxis(t, axis, 0)
    rest = x.shape[1:]
    out = op(x.reshape(x.shape[0], _prod(rest)))
    return jnp.moveaxis(out.reshape(out.shape[0], *rest), 0, axis)


def _mode_product(t: jax.Array, M: jax.Array, k: int, d: int) -> jax.Array:
    """Mode-``k`` product ``t ×_k M``: ``(..., n_k, ...) -> (..., m_k, ...)``."""
    return _along_mode(t, k, d, lambda X: M @ X)


def _kron_apply(mats: Sequence[jax.Array], t: jax.Array, skip: int | None = None) -> jax.Array:
    """``(M1⊗…⊗Md) t`` on tensors, leaving mode ``skip`` (if given) untouched."""
    d = len(mats)
    for k, M in enumerate(mats):
        if k != skip:
            t = _mode_product(t, M, k, d)
    return t


def _kron_dapply(mats: Sequence[jax.Array], dmats: Sequence[jax.Array], t: jax.Array) -> jax.Array:
    """``dS t = Σ_k (M1⊗…⊗dM_k⊗…⊗Md) t``, the directional derivative of ``S t`` in ``S``.

    The factors ``M_j`` (j ≠ k) are applied first, so everything but the last mode product
    of each term is independent of ``dM``; reverse mode turns that last product into one
    contraction (a GEMM) per factor.
    """
    d = len(mats)
    total = None
    for k, dM in enumerate(dmats):
        term = _mode_product(_kron_apply(mats, t, skip=k), dM, k, d)
        total = term if total is None else total + term
    return total


def _inner(a: jax.Array, b: jax.Array, d: int) -> jax.Array:
    """``Σ a·b`` over the last ``d`` axes (one value per batch row)."""
    return jnp.sum(a * b, axis=tuple(range(-d, 0)))


# ---------------------------------------------------------------------------------------
# Per-factor factorisations and solves (the one place)
# ---------------------------------------------------------------------------------------
class _Factor(NamedTuple):
    """Cholesky (``piv is None``: ``c`` is the lower factor ``L``) or LU (``c``, ``piv``)."""

    c: jax.Array
    piv: jax.Array | None


def _concrete(x: Any) -> Any:
    """The value of ``x`` if it is known now (plain calls, and ``jax.grad`` / ``jax.jvp`` /
    ``jax.hessian`` outside ``jit``), else ``None`` (under ``jit`` or ``vmap``)."""
    if not isinstance(x, jax.core.Tracer):
        return x
    try:
        return _concrete_or_error(None, x)
    except Exception:  # ConcretizationTypeError: an abstract value
        return None


def _check_finite(x: Any, name: str) -> None:
    """``ValueError`` naming ``name`` if the (concrete) ``x`` holds NaN or Inf, as
    ``Kron`` and ``kronkit.torch`` do; a no-op for abstract values."""
    v = _concrete(x)
    if v is None or not v.size:
        return
    with jax.ensure_compile_time_eval():  # a constant under jit: check it now, not staged
        finite = jnp.isfinite(v)
        bad = 0 if bool(jnp.all(finite)) else int(v.size - jnp.count_nonzero(finite))
    if bad:
        raise non_finite_error(name, bad)


_JAX_DIR = os.path.dirname(os.path.abspath(jax.__file__)) + os.sep


def _warn(warning: Warning) -> None:
    """Issue ``warning`` at the caller's line (skipping kronkit's and jax's frames)."""
    warn_at_caller(warning, _JAX_DIR)


def _is_symmetric(A: Any) -> Any:
    """``A == Aᵀ`` to ``16·eps·max|A|``, the test ``Kron`` and ``kronkit.torch`` use."""
    eps = jnp.finfo(A.dtype).eps
    return jnp.max(jnp.abs(A - A.T)) <= 16 * eps * jnp.max(jnp.abs(A))


def _rcond(c: Any, cholesky: bool, A: Any) -> float:
    """LAPACK's estimate of ``1/(‖A‖₁‖A⁻¹‖₁)`` from the factors, as ``Kron`` computes it
    (O(p²) on the host)."""
    return rcond_from_factor(np.asarray(A), np.asarray(c), cholesky)


_EXACT_RCOND_MAX_N = 64  # up to this size the traced rcond is exact, above it estimated


def _traced_rcond(f: _Factor, A: jax.Array) -> jax.Array:
    """``1/(‖A‖₁‖A⁻¹‖₁)`` in the traced program (JAX has no LAPACK ``gecon``).

    ``‖A⁻¹‖₁ = ‖(LU)⁻¹‖₁`` (the row permutation does not change it; Cholesky: ``U = Lᵀ``).
    For ``p ≤ 64`` it is computed exactly, from two triangular solves with the identity
    (O(p³), cheap at that size, and two operations to compile); above, by the Hager–Higham
    estimate of :func:`_inv_norm1_estimate` (O(p²), the method of LAPACK's ``gecon``).
    Nothing is differentiated (``stop_gradient``). NaN or Inf (a zero pivot, a failed
    Cholesky) gives ``rcond = 0``.
    """
    A, c = jax.lax.stop_gradient(A), jax.lax.stop_gradient(f.c)
    tri = jax.lax.linalg.triangular_solve
    unit = f.piv is not None  # LU: unit lower L and upper U in ``c``; Cholesky: L, U = Lᵀ

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


def _factorize(A: jax.Array, assume: str, k: int) -> tuple[_Factor, float | None, bool]:
    """Factor ``A`` once: Cholesky for ``assume="spd"``, LU with partial pivoting otherwise.

    Returns ``(factor, rcond, exact_zero)``. When ``A`` is concrete (see :func:`_concrete`),
    a factor that is not symmetric positive definite under ``assume="spd"`` (not symmetric to
    ``16·eps·max|A|``, or Cholesky fails) raises :class:`NotPositiveDefiniteError`, and
    ``rcond`` is LAPACK's estimate; ``exact_zero`` flags an exact zero pivot in the LU
    factors. Under ``jit`` / ``vmap`` nothing can be raised: a non-symmetric factor under
    ``assume="spd"`` gives NaN factors (every result is NaN, as a failed Cholesky gives),
    and ``rcond`` / ``exact_zero`` are traced values, ``rcond`` from :func:`_traced_rcond`.
    """
    a = _concrete(A)
    if a is None:  # abstract: nothing can be raised, and LAPACK is out of reach
        if assume == "spd":
            L = jax.lax.linalg.cholesky(A, symmetrize_input=False)
            f = _Factor(jnp.where(_is_symmetric(A), L, jnp.nan), None)
            return f, _traced_rcond(f, A), jnp.zeros((), bool)
        f = _Factor(*jsl.lu_factor(A))
        return f, _traced_rcond(f, A), jnp.any(jnp.diagonal(f.c) == 0)
    with jax.ensure_compile_time_eval():  # a constant under jit is factored now, once
        if assume == "spd":
            why = None
            if not bool(_is_symmetric(a)):
                why = "it is not symmetric"
            else:
                L = jax.lax.linalg.cholesky(a, symmetrize_input=False)
                if not bool(jnp.all(jnp.isfinite(L))):
                    why = "Cholesky failed"
            if why is not None:
                raise NotPositiveDefiniteError(
                    f"`factors[{k}]` is not symmetric positive definite ({why}); "
                    "use assume='general'",
                    factor=k,
                )
            return _Factor(L, None), _rcond(L, True, a), False
        lu, piv = jsl.lu_factor(a)
        exact_zero = bool(jnp.any(jnp.diagonal(lu) == 0))
    return _Factor(lu, piv), 0.0 if exact_zero else _rcond(lu, False, a), exact_zero


def _factorize_all(mats: Sequence[jax.Array], assume: str, *,
                   zero_det_ok: bool = False) -> tuple[list[_Factor], Any]:
    """Factor every factor, with the conditioning contract of ``Kron``.

    Returns ``(factors, zero)``, ``zero`` true where some factor has an exact zero pivot.
    Concrete values: a factor singular to working precision (``rcond <= eps``, exact zero
    pivots included) raises :class:`SingularFactorError`; one :class:`IllConditionedWarning`
    names every factor with ``rcond < sqrt(eps)``; ``zero_det_ok`` (log-determinants): an
    exact zero pivot is no error (``det = 0``, ``log det = −inf``) and then nothing is
    checked, as in ``Kron.slogdet``. Abstract values (``jit``, ``vmap``): such a factor is
    replaced by NaN, so every result computed from it is NaN (``logdet`` turns an exact zero
    pivot into −inf itself); no warning.
    """
    out = [_factorize(M, assume, k) for k, M in enumerate(mats)]
    facs = [f for f, _, _ in out]
    concrete = [(k, rc, z) for k, (_, rc, z) in enumerate(out) if isinstance(rc, float)]
    traced = [(k, rc, z) for k, (_, rc, z) in enumerate(out) if not isinstance(rc, float)]
    zero: Any = any(z for _, _, z in concrete)
    for _, _, z in traced:
        zero = zero | z
    if zero_det_ok and any(z for _, _, z in concrete):
        return facs, True
    ill = []
    for k, rc, z in concrete:
        eps = float(jnp.finfo(mats[k].dtype).eps)
        if not rc > eps:
            why = ("an exact zero pivot in its LU factorisation" if z else
                   f"reciprocal condition number {rc:.3g} <= eps = {eps:.3g}")
            raise SingularFactorError(
                f"`factors[{k}]` is singular to working precision ({why}); "
                "an inverse, solve or log-determinant is undefined",
                factor=k,
                rcond=rc,
            )
        if rc < np.sqrt(eps):
            ill.append((rc, k, eps))
    if ill:
        rc, k, eps = min(ill)
        listing = ", ".join(f"`factors[{j}]` (condition number ≈ {1.0 / r:.3g})"
                            for r, j, _ in sorted(ill, key=lambda t: t[1]))
        _warn(IllConditionedWarning(
            f"ill-conditioned {listing}; results may have lost more than half of their "
            f"digits (reciprocal condition number below sqrt(eps) = {np.sqrt(eps):.3g})",
            factor=k,
            rcond=rc,
        ))
    for k, rc, _ in traced:
        f = facs[k]
        singular = ~(rc > jnp.finfo(mats[k].dtype).eps)
        facs[k] = _Factor(jnp.where(singular, jnp.nan, f.c), f.piv)
    return facs, zero


def _factor_solve(f: _Factor, b: jax.Array, trans: bool = False) -> jax.Array:
    """``A⁻¹ b`` (``trans``: ``A⁻ᵀ b``) for ``b`` of shape ``(p, n)``; O(p²n)."""
    if f.piv is None:
        return jsl.cho_solve((f.c, True), b)
    return jsl.lu_solve((f.c, f.piv), b, trans=1 if trans else 0)


def _kron_solve(facs: Sequence[_Factor], t: jax.Array, trans: bool = False) -> jax.Array:
    """``(A1⊗…⊗Ad)⁻¹ t`` (``trans``: ``⁻ᵀ``) on tensors: one per-factor solve per mode."""
    d = len(facs)
    for k, f in enumerate(facs):
        t = _along_mode(t, k, d, lambda X, f=f: _factor_solve(f, X, trans))
    return t


def _slogdet(f: _Factor) -> tuple[jax.Array, jax.Array]:
    """``(sign, log|det A|)`` from a factorisation."""
    diag = jnp.diagonal(f.c)
    if f.piv is None:
        return jnp.ones((), diag.dtype), 2.0 * jnp.sum(jnp.log(diag))
    swaps = jnp.sum(f.piv != jnp.arange(f.piv.shape[0], dtype=f.piv.dtype))
    sign = jnp.where(swaps % 2 == 0, 1.0, -1.0).astype(diag.dtype) * jnp.prod(jnp.sign(diag))
    return sign, jnp.sum(jnp.log(jnp.abs(diag)))


# ---------------------------------------------------------------------------------------
# The custom-JVP primitives (validated, cast arrays in; ``assume`` is static)
# ---------------------------------------------------------------------------------------
# ``assume`` ("general" / "spd") is a static, non-differentiable first argument.
_static_assume = functools.partial(jax.custom_jvp, nondiff_argnums=(0,))


def _dims(mats: Sequence[jax.Array], axis: int) -> tuple[int, ...]:
    return tuple(M.shape[axis] for M in mats)


@jax.custom_jvp
def _matvec(mats: tuple[jax.Array, ...], y: jax.Array) -> jax.Array:
    return _to_vec(_kron_apply(mats, _to_tensor(y, _dims(mats, 1))), len(mats))


@_matvec.defjvp
def _matvec_jvp(primals, tangents):
    mats, y = primals
    dmats, dy = tangents
    cols, d = _dims(mats, 1), len(mats)
    Y = _to_tensor(y, cols)
    out = _kron_apply(mats, Y)
    dout = _kron_apply(mats, _to_tensor(dy, cols)) + _kron_dapply(mats, dmats, Y)
    return _to_vec(out, d), _to_vec(dout, d)


def _solve_parts(assume: str, mats, y):
    facs, _ = _factorize_all(mats, assume)
    return facs, _kron_solve(facs, _to_tensor(y, _dims(mats, 1)))


@_static_assume
def _solve(assume: str, mats, y):
    return _to_vec(_solve_parts(assume, mats, y)[1], len(mats))


@_solve.defjvp
def _solve_jvp(assume, primals, tangents):
    mats, y = primals
    dmats, dy = tangents
    facs, X = _solve_parts(assume, mats, y)
    dX = _kron_solve(facs, _to_tensor(dy, _dims(mats, 1)) - _kron_dapply(mats, dmats, X))
    return _to_vec(X, len(mats)), _to_vec(dX, len(mats))


def _inv_quad_parts(assume: str, mats, w):
    facs, Z = _solve_parts(assume, mats, w)
    W = _to_tensor(w, _dims(mats, 1))
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
    U = Z if assume == "spd" else _kron_solve(facs, W, trans=True)
    dW = _to_tensor(dw, _dims(mats, 1))
    return q, _inner(Z + U, dW, d) - _inner(U, _kron_dapply(mats, dmats, Z), d)


def _logdet_parts(assume: str, mats, zero_det_ok: bool = True):
    """Factorisations and ``log det S = Σ_k (P/p_k) log|det A_k|``: −inf where a factor has
    an exact zero pivot (``det S = 0``), NaN where ``det S < 0``."""
    facs, zero = _factorize_all(mats, assume, zero_det_ok=zero_det_ok)
    P = _prod(_dims(mats, 0))
    sign = jnp.ones((), mats[0].dtype)
    logabs = jnp.zeros((), mats[0].dtype)
    for f, M in zip(facs, mats, strict=True):
        s, la = _slogdet(f)
        e = P // M.shape[0]  # det(S) = Π_k det(A_k)^(P/p_k)
        sign = sign * (s if e % 2 else jnp.abs(s))
        logabs = logabs + e * la
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
    P = _prod(_dims(mats, 0))
    dvalue = sum(
        (P // M.shape[0]) * jnp.trace(_factor_solve(f, dM))
        for f, M, dM in zip(facs, mats, dmats, strict=True)
    )
    return value, dvalue


# ---------------------------------------------------------------------------------------
# Validation (static shapes, at trace time) and the public functions
# ---------------------------------------------------------------------------------------
def _real_array(x: Any, name: str) -> jax.Array:
    if x is None:
        raise TypeError(f"`{name}` must be an array, got None")
    try:
        arr = jnp.asarray(x)
    except Exception as exc:  # ragged lists, objects
        raise TypeError(f"`{name}` could not be converted to an array: {exc}") from exc
    if jnp.issubdtype(arr.dtype, jnp.complexfloating):
        raise TypeError(f"`{name}` is complex ({arr.dtype}); kronkit.jax supports real input")
    if not (jnp.issubdtype(arr.dtype, jnp.floating) or jnp.issubdtype(arr.dtype, jnp.integer)
            or arr.dtype == jnp.bool_):
        raise TypeError(f"`{name}` must be a real numeric array, got dtype {arr.dtype}")
    return arr


def _check_assume(assume: Any) -> None:
    if assume not in _ASSUME:
        raise ValueError(f"`assume` must be 'general' or 'spd', got {assume!r}")


def _prepare(factors: Any, *, square: str | None, **vectors: Any):
    """Validate ``factors`` (and named vector arguments) and cast to one float dtype.

    ``square`` names the operation that needs square factors (``None``: any shape).
    Each entry of ``vectors`` (``None`` allowed) must have last axis ``P``, the column count
    of the Kronecker product. Returns ``(mats, {name: array})``.
    """
    if isinstance(factors, Kron):
        factors = factors.factors
    elif hasattr(factors, "ndim") and hasattr(factors, "shape"):
        raise TypeError(
            "`factors` must be a sequence of 2-D factor matrices (or a kronkit.Kron), got a "
            f"single array of shape {factors.shape}; pass [A, B, ...]"
        )
    elif not isinstance(factors, (list, tuple)):
        raise TypeError(
            f"`factors` must be a sequence of 2-D factor matrices, got {type(factors).__name__}"
        )
    if len(factors) == 0:
        raise ValueError("`factors` must hold at least one factor, got an empty sequence")
    mats = []
    for k, A in enumerate(factors):
        name = f"factors[{k}]"
        M = _real_array(A, name)
        if M.ndim != 2:
            raise ValueError(f"`{name}` must be 2-D, got shape {M.shape}")
        if M.size == 0:
            raise ValueError(f"`{name}` is empty (shape {M.shape}); factors must be non-empty")
        if square is not None:
            check_square(M, name, f"{square} needs square factors")
        _check_finite(M, name)
        mats.append(M)
    n = _prod(_dims(mats, 1))
    m = _prod(_dims(mats, 0))
    arrays = {}
    for name, v in vectors.items():
        if v is None:
            arrays[name] = None
            continue
        arr = _real_array(v, name)
        if arr.ndim < 1 or arr.shape[-1] != n:
            raise ValueError(
                f"`{name}` must have length {n} in its last axis (the Kronecker product is "
                f"{m}×{n}), got shape {arr.shape}"
            )
        _check_finite(arr, name)
        arrays[name] = arr
    dtype = jnp.result_type(*mats, *[a for a in arrays.values() if a is not None], 0.0)
    mats = tuple(M.astype(dtype) for M in mats)
    arrays = {k: (None if a is None else a.astype(dtype)) for k, a in arrays.items()}
    return mats, arrays


def matvec(factors: Sequence[Any], y: Any) -> jax.Array:
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


def solve(factors: Sequence[Any], y: Any, *, assume: str = "general") -> jax.Array:
    r"""``(A1⊗…⊗Ad)⁻¹ y`` for each row of ``y``, by one solve per factor.

    Parameters
    ----------
    factors : sequence of square arrays of shape (p_k, p_k), or kronkit.Kron
    y : array of shape (..., P)
        ``P = p1·…·pd``; each row is a right-hand side.
    assume : {"general", "spd"}
        ``"general"``: LU with partial pivoting. ``"spd"``: every factor is symmetric
        positive definite; Cholesky. A factor that is not (not symmetric to
        ``16·eps·max|A|``, or Cholesky fails) raises
        :class:`~kronkit.NotPositiveDefiniteError` in eager calls and gives NaN under ``jit``.

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
    _check_assume(assume)
    mats, arrays = _prepare(factors, square="solve", y=y)
    return _solve(assume, mats, arrays["y"])


def inv_quad(factors: Sequence[Any], y: Any, *, assume: str = "general") -> jax.Array:
    r"""The quadratic form ``q = yᵀ (A1⊗…⊗Ad)⁻¹ y``, one value per row of ``y``.

    Parameters
    ----------
    factors : sequence of square arrays of shape (p_k, p_k), or kronkit.Kron
    y : array of shape (..., P)
    assume : {"general", "spd"}
        As in :func:`solve`.

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
    _check_assume(assume)
    mats, arrays = _prepare(factors, square="inv_quad", y=y)
    return _inv_quad(assume, mats, arrays["y"])


def logdet(factors: Sequence[Any], *, assume: str = "general") -> jax.Array:
    r"""``log det (A1⊗…⊗Ad) = Σ_k (P/p_k) log det A_k``.

    Parameters
    ----------
    factors : sequence of square arrays of shape (p_k, p_k), or kronkit.Kron
    assume : {"general", "spd"}
        As in :func:`solve`.

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
    _check_assume(assume)
    mats, _ = _prepare(factors, square="logdet")
    out = _logdet(assume, mats)
    value = _concrete(out)
    if value is not None and bool(jnp.isnan(value)):
        raise DomainError(
            "det(A1⊗…⊗Ad) is negative, so its logarithm is undefined", value=float(value)
        )
    return out


def log_quad(
    factors: Sequence[Any],
    y: Any,
    mu: Any = None,
    alpha: Any = 1.0,
    *,
    assume: str = "general",
) -> jax.Array:
    r"""The seed function ``λ = log(α + (y−μ)ᵀ (A1⊗…⊗Ad)⁻¹ (y−μ))``, one value per row.

    Parameters
    ----------
    factors : sequence of square arrays of shape (p_k, p_k), or kronkit.Kron
    y : array of shape (..., P)
        Observation(s), each the row-major flattening of a ``(p1, …, pd)`` tensor.
    mu : array of shape (P,) or (..., P), optional
        Location (default 0); broadcast against ``y``.
    alpha : scalar
        Offset ``α`` (differentiable); ``β = α + q`` must be positive.
    assume : {"general", "spd"}
        As in :func:`solve`.

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
    _check_assume(assume)
    mats, arrays = _prepare(factors, square="log_quad", y=y, mu=mu)
    a = _real_array(alpha, "alpha")
    if a.ndim != 0:
        raise ValueError(f"`alpha` must be a scalar, got shape {a.shape}")
    w = arrays["y"] if arrays["mu"] is None else arrays["y"] - arrays["mu"]
    _check_finite(a, "alpha")
    beta = a.astype(w.dtype) + _inv_quad(assume, mats, w)
    value = _concrete(beta)
    if value is not None and value.size and not bool(jnp.all(value > 0)):
        raise DomainError(
            "β = α + (y−μ)ᵀS⁻¹(y−μ) must be positive for log β to be defined, got "
            f"min β = {float(jnp.min(value)):.6g}",
            value=value,
        )
    return jnp.log(beta)
