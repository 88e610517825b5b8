r"""``kronkit.jax`` on sums of Kronecker products: custom-JVP primitives whose rules are the
closed forms of :mod:`kronkit._sum_rules` (the encoding and structure rule:
:mod:`kronkit._sum_spec`).

Primitives (the :class:`~kronkit._sum_spec.SumSpec` is static):

* ``_solve``: ``x = S⁻¹y``; ``dx = S⁻¹(dy − dS x)`` (by :func:`_solve_tangent`); with
  ``trans`` ``S⁻ᵀy`` (the same value: ``S`` is symmetric) and ``dx = S⁻ᵀ(dy − dSᵀ x)``;
* ``_inv_quad``: ``q = wᵀS⁻¹w``; ``dq = (z + u)ᵀdw − uᵀ dS z`` with ``z = S⁻¹w`` and
  ``u = S⁻ᵀw`` (equal values; their derivatives differ along non-symmetric directions);
* ``_logdet``: ``d log det S = Σ_{t,k} ⟨G_tk, dF_tk⟩`` with ``G = _logdet_grads``;
* ``_logdet_grads``: ``(log det S, G)``, whose JVP is :func:`~kronkit._sum_rules.logdet_hvp`.

Every rule uses the eigendecomposition only for values, never differentiates it: first and
second derivatives (``jax.grad``, ``jax.hessian``, jvp-of-grad, grad-of-grad) go through
these rules, in every direction of the factors (non-symmetric ones included), so degenerate
spectra (an identity, a constant diagonal) are harmless. Third and higher derivatives of
``solve``, and of the log-determinant's gradient, are not covered (``_solve_tangent`` and
:func:`~kronkit._sum_rules.logdet_hvp` are exact to first order in the factors).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl

from . import _backend
from . import _sum_rules as rules
from ._factor import is_symmetric
from ._jax_common import check_finite, concrete, log_beta, real_array
from ._sum_spec import SumSpec, parse_sum

__all__ = ["inv_quad", "log_quad", "logdet", "solve"]


# ---------------------------------------------------------------------------------------
# Back-end functions for the shared rules: raise when values are known, NaN under jit
# ---------------------------------------------------------------------------------------
def _symmetric(F: jax.Array, name: str) -> jax.Array:
    eps = float(jnp.finfo(F.dtype).eps)
    value = concrete(F)
    if value is None:
        return jnp.where(is_symmetric(F, eps), F, jnp.nan)
    with jax.ensure_compile_time_eval():
        ok = bool(is_symmetric(value, eps))
    if not ok:
        raise rules.not_symmetric_error(name)
    return F


def _cholesky(C: jax.Array, name: str) -> jax.Array:
    L = jnp.linalg.cholesky(C)
    value = concrete(L)
    if value is not None:
        with jax.ensure_compile_time_eval():
            ok = bool(jnp.all(jnp.isfinite(value)))
        if not ok:
            raise rules.metric_error(name, None)
    return L


def _positive(v: jax.Array, name: str | None) -> jax.Array:
    """``v`` if every entry is positive; else the metric error (``name``) or, for
    ``name=None``, the error for ``λ`` (the sum is not positive definite) when values are
    known, and NaN under ``jit``."""
    value = concrete(v)
    if value is None:
        return jnp.where(jnp.all(v > 0), v, jnp.nan)
    with jax.ensure_compile_time_eval():
        rules.require_positive(float(jnp.min(value)), name)
    return v


OPS = rules.Ops(
    eigh=jnp.linalg.eigh,
    cholesky=_cholesky,
    tri_solve=lambda L, X, trans: jsl.solve_triangular(L, X, lower=True, trans=int(trans)),
    log=jnp.log,
    sqrt=jnp.sqrt,
    diag=jnp.diag,
    ones=lambda n, like: jnp.ones(n, like.dtype),
    symmetric=_symmetric,
    positive=_positive,
)


def _eigen(spec: SumSpec, mats: Sequence[jax.Array]) -> rules.EigenForm:
    return rules.eigen_form(spec, mats, OPS)


# ---------------------------------------------------------------------------------------
# The custom-JVP primitives
# ---------------------------------------------------------------------------------------
_static_spec = functools.partial(jax.custom_jvp, nondiff_argnums=(0,))


_static_spec_trans = functools.partial(jax.custom_jvp, nondiff_argnums=(0, 1))


@_static_spec_trans
def _solve(spec: SumSpec, trans: bool, mats, y):
    """``S⁻¹y`` (``trans``: ``S⁻ᵀy``: the same value, as ``S`` is symmetric, but the
    derivative of the transpose, so that derivatives along non-symmetric directions of the
    factors are exact at every order, as for the dense formula)."""
    return rules.solve(_eigen(spec, mats), y)


def _transposed(mats: Sequence[jax.Array], trans: bool) -> list[jax.Array]:
    return [M.T if trans and M.ndim == 2 else M for M in mats]


def _solve_tangent(spec: SumSpec, trans: bool, mats, r):
    """``S⁻¹r`` (``trans``: ``S⁻ᵀr``) for a tangent ``r``, as ``S₀⁻¹r − S₀⁻¹(S − S₀)S₀⁻¹r``
    with ``S₀`` built from ``stop_gradient(mats)``: the same value (``S − S₀ = 0``), and a
    first derivative with respect to the factors that is ``−S⁻¹ dS S⁻¹r`` without
    differentiating the eigendecomposition. JAX inlines a function applied to tangents when
    it linearises, so this is what second derivatives of :func:`_solve` differentiate."""
    fixed = [jax.lax.stop_gradient(M) for M in mats]
    E = _eigen(spec, fixed)
    z = rules.solve(E, r)
    delta = (rules.apply(spec, _transposed(mats, trans), z)
             - rules.apply(spec, _transposed(fixed, trans), z))
    return z - rules.solve(E, delta)


@_solve.defjvp
def _solve_jvp(spec, trans, primals, tangents):
    (mats, y), (dmats, dy) = primals, tangents
    x = _solve(spec, trans, mats, y)
    dx = dy - rules.d_apply(spec, mats, _transposed(dmats, trans), x)
    return x, _solve_tangent(spec, trans, mats, dx)


@_static_spec
def _inv_quad(spec: SumSpec, mats, w):
    return rules.inv_quad(_eigen(spec, mats), w)


@_inv_quad.defjvp
def _inv_quad_jvp(spec, primals, tangents):
    (mats, w), (dmats, dw) = primals, tangents
    z, u = _solve(spec, False, mats, w), _solve(spec, True, mats, w)  # S⁻¹w, S⁻ᵀw
    dq = jnp.sum((z + u) * dw, -1) - jnp.sum(u * rules.d_apply(spec, mats, dmats, z), -1)
    return jnp.sum(w * z, -1), dq


@_static_spec
def _logdet_grads(spec: SumSpec, mats):
    E = _eigen(spec, mats)
    return rules.logdet(E, OPS), tuple(rules.logdet_grads(E, [True] * len(mats)))


@_logdet_grads.defjvp
def _logdet_grads_jvp(spec, primals, tangents):
    (mats,), (dmats,) = primals, tangents
    E = _eigen(spec, mats)
    grads = tuple(rules.logdet_grads(E, [True] * len(mats)))
    dvalue = sum(jnp.sum(g * dF) for g, dF in zip(grads, dmats, strict=True))
    dgrads = tuple(rules.logdet_hvp(E, OPS, dmats, [True] * len(mats)))
    return (rules.logdet(E, OPS), grads), (dvalue, dgrads)


@_static_spec
def _logdet(spec: SumSpec, mats):
    return rules.logdet(_eigen(spec, mats), OPS)


@_logdet.defjvp
def _logdet_jvp(spec, primals, tangents):
    (mats,), (dmats,) = primals, tangents
    value, grads = _logdet_grads(spec, mats)
    return value, sum(jnp.sum(g * dF) for g, dF in zip(grads, dmats, strict=True))


# ---------------------------------------------------------------------------------------
# Public entry points (called by kronkit.jax for a sum)
# ---------------------------------------------------------------------------------------
def _prepare(factors: Any, **vectors: Any):
    """Parse the sum and validate the vectors; cast everything to one float dtype."""
    spec, mats = parse_sum(factors, real_array, check_finite)
    arrays = _backend.validate_vectors(spec.size, spec.size, real_array, check_finite,
                                       **vectors)
    dtype = jnp.result_type(*mats, *[a for n, a in arrays.items()
                                     if a is not None and n != "alpha"], 0.0)
    return (spec, tuple(M.astype(dtype) for M in mats),
            {k: (None if a is None else a.astype(dtype)) for k, a in arrays.items()})


def solve(factors: Any, y: Any) -> jax.Array:
    """``S⁻¹ y`` per row for a sum ``S`` (see :func:`kronkit.jax.solve`)."""
    spec, mats, arrays = _prepare(factors, y=y)
    return _solve(spec, False, mats, arrays["y"])


def inv_quad(factors: Any, y: Any) -> jax.Array:
    """``yᵀ S⁻¹ y`` per row for a sum ``S`` (see :func:`kronkit.jax.inv_quad`)."""
    spec, mats, arrays = _prepare(factors, y=y)
    return _inv_quad(spec, mats, arrays["y"])


def logdet(factors: Any) -> jax.Array:
    """``log det S`` for a sum ``S`` (see :func:`kronkit.jax.logdet`)."""
    spec, mats, _ = _prepare(factors)
    return _logdet(spec, mats)


def log_quad(factors: Any, y: Any, mu: Any = None, alpha: Any = 1.0) -> jax.Array:
    """``log(α + (y−μ)ᵀ S⁻¹ (y−μ))`` per row for a sum ``S`` (see
    :func:`kronkit.jax.log_quad`)."""
    spec, mats, arrays = _prepare(factors, y=y, mu=mu, alpha=alpha)
    w = arrays["y"] if arrays["mu"] is None else arrays["y"] - arrays["mu"]
    return log_beta(arrays["alpha"], _inv_quad(spec, mats, w))
