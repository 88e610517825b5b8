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
* ``d(yᵀS⁻¹y) = (z + u)ᵀ dy − uᵀ dS z`` with ``z = S⁻¹y``, ``u = S⁻ᵀy`` (Cholesky factors,
  ``A_k = C_kC_kᵀ``: ``−Σ_k ⟨P_k, P_k ×_k dA_k⟩ + 2zᵀdy`` with ``P_k = X ×_k C_k⁻ᵀ`` and the
  half solve ``X = (C_1⁻¹⊗…⊗C_d⁻¹)y``, so ``∂q/∂A_k = −P_(k)P_(k)ᵀ``: see
  :mod:`kronkit._jax_quad`);
* ``d log det S = Σ_k (P/p_k) tr(A_k⁻¹ dA_k)``.

The rules are written with the same two structured building blocks as the values — mode
products (:func:`kronkit._vec.mode_apply`) and per-factor solves (:class:`kronkit._jax_factor.JaxFactor`) — so
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
offending factor is replaced by NaN, judged by the ``rcond`` of :func:`~kronkit._jax_factor.traced_rcond`),
and there is no warning.

``assume`` is ``kronkit.torch``'s: ``"auto"`` (default; per factor, Cholesky where it is
symmetric positive definite, else LU), ``"general"`` (LU), ``"spd"`` (Cholesky). A traced
factor's values cannot be inspected: under ``jit``, ``inv_quad`` and ``log_quad`` compile both
routes and choose at run time (``lax.cond``: Cholesky where every traced factor is symmetric
positive definite, LU otherwise); ``solve`` and ``logdet``, and every function under ``vmap``
of the factors or under an outer derivative (jvp-of-grad, ``jax.hessian``), use LU for it
(second derivatives then exact in every direction).

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
from collections.abc import Sequence
from typing import Any

from . import _backend

try:
    import jax
    import jax.numpy as jnp
    from jax.custom_derivatives import SymbolicZero
except ImportError as exc:  # pragma: no cover - exercised in a subprocess test
    raise _backend.missing_extra("jax", "JAX") from exc

from . import _jax_sum
from ._factor import kron_logdet, kron_sign
from ._jax_common import check_finite as _check_finite
from ._jax_common import concrete as _concrete
from ._jax_common import log_beta
from ._jax_common import real_array as _real_array
from ._jax_factor import any_singular, factorize_all, spd_test
from ._jax_quad import QuadParts, chol_parts, general_parts, quad_tangent
from ._kron import Kron
from ._sum_spec import is_sum
from ._vec import apply_modes, d_apply_modes, to_tensor, to_vec

__all__ = ["inv_quad", "log_quad", "logdet", "matvec", "solve"]

try:  # the tracer of ``jit``'s own trace (public module; see _plain_traced)
    from jax.interpreters.partial_eval import DynamicJaxprTracer as _JitTracer
except ImportError:  # pragma: no cover - a JAX without it: "auto" keeps LU under jit
    _JitTracer = None  # type: ignore[assignment,misc]
_DynamicJaxprTracer: Any = _JitTracer


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
    facs, _ = factorize_all(mats, assume)
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


def _plain_traced(x: Any) -> bool:
    """``x`` is an argument of the program ``jit`` traces, and nothing else transforms it
    (no outer derivative, no ``vmap``): only then does ``"auto"`` choose at run time."""
    return _DynamicJaxprTracer is not None and isinstance(x, _DynamicJaxprTracer)


def _quad_parts(assume: str, mats, w, need, need_g: bool) -> QuadParts:
    """:class:`~kronkit._jax_quad.QuadParts` of ``q = wᵀS⁻¹w``: the Cholesky route where every
    factor is Cholesky, else the general one. ``"auto"`` with factors traced by ``jit`` alone:
    both are compiled and ``lax.cond`` runs the Cholesky route where every traced factor is
    symmetric positive definite (:func:`~kronkit._jax_factor.spd_test`), LU for it otherwise.
    (Under an outer derivative or ``vmap`` a traced factor gets LU, as before: its second
    derivatives are then exact in every direction.)"""
    W = to_tensor(w, _dims(mats, 1))

    def parts(chols=None):
        facs, _ = factorize_all(mats, assume, chols=chols, nan_factors=False)
        Wn = W + jnp.where(any_singular(facs), jnp.nan, 0.0).astype(W.dtype)  # NaN if singular
        if all(f.kind == "cholesky" for f in facs):
            return chol_parts([f.factor for f in facs], Wn, need, need_g)
        return general_parts(facs, mats, Wn, need, need_g)

    if assume == "auto" and any(_concrete(M) is None for M in mats) and all(
            _plain_traced(M) for M in mats if _concrete(M) is None):
        ok, chols = spd_test(mats)
        return jax.lax.cond(ok, lambda: parts(chols), parts)
    return parts()


@_static_assume
def _inv_quad(assume: str, mats, w):
    return _quad_parts(assume, mats, w, [False] * len(mats), False).q


def _inv_quad_jvp(assume, primals, tangents):
    mats, w = primals
    dmats, dw = tangents
    d = len(mats)
    need = [not isinstance(t, SymbolicZero) for t in dmats]
    need_g = not isinstance(dw, SymbolicZero)
    parts = _quad_parts(assume, mats, w, need, need_g)
    dW = to_tensor(dw, _dims(mats, 1)) if need_g else dw
    return parts.q, quad_tangent(parts, dmats, dW, d)


_inv_quad.defjvp(_inv_quad_jvp, symbolic_zeros=True)


def _logdet_parts(assume: str, mats, zero_det_ok: bool = True):
    """Factorisations and ``log det S = Σ_k (P/p_k) log|det A_k|``: −inf where a factor has
    an exact zero pivot (``det S = 0``), NaN where ``det S < 0``."""
    facs, zero = factorize_all(mats, assume, zero_det_ok=zero_det_ok)
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
        not known, ``"auto"`` uses LU for it (``inv_quad``/``log_quad`` under ``jit`` alone:
        chosen at run time) and ``"spd"`` gives NaN instead of raising."""
for _f in (solve, inv_quad, logdet, log_quad):
    if _f.__doc__:  # None under python -OO
        _f.__doc__ = _f.__doc__.replace("ASSUME", _ASSUME_DOC)
del _f
