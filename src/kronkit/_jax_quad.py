r"""The quadratic form ``q = wᵀS⁻¹w`` of ``kronkit.jax`` (``S = A1⊗…⊗Ad``) and what its
derivative keeps: one rule for every factorisation,

    ``dq = ⟨g, dw⟩ − Σ_k ⟨L_k, R_k ×_k dA_k⟩``,

from :func:`quad_parts` (values) and :func:`quad_tangent` (the linear map). Reverse mode
transposes each term into one matrix product, ``∂q/∂A_k = −unfold_k(L_k) unfold_k(R_k)ᵀ``
(batch rows summed inside it, weighted by their cotangents), so the backward pass is d GEMMs.

* Every factor Cholesky (``A_k = C_k C_kᵀ``), :func:`chol_parts`: the half solve
  ``X = (C_1⁻¹⊗…⊗C_d⁻¹) w`` (one triangular solve per mode), ``q = ‖X‖²``,
  ``L_k = R_k = P_k = X ×_k C_k⁻ᵀ`` (one more per factor) and ``g = 2 S⁻¹w`` (from ``P_1``,
  ``d − 1`` more; only when ``w`` has a tangent). For d = 2 that is ``∂q/∂A = −PPᵀ`` with
  ``P = C_A⁻ᵀX`` and ``∂q/∂B = −QᵀQ`` with ``Q = X C_B⁻¹``: 2 Cholesky, 4 triangular solves and
  2 GEMMs, about 8⅔ m³ flops at m = p = q.
* Any other mix, :func:`general_parts`: ``z = S⁻¹w``, ``u = S⁻ᵀw``, ``L_k = u``,
  ``R_k = z ×_{j≠k} A_j``, ``g = z + u``.

The identity behind the first: ``unfold_k(z) unfold_k(z ×_{j≠k} A_j)ᵀ = P_(k) P_(k)ᵀ`` for
symmetric factors, since ``z = X ×_j C_j⁻ᵀ`` and ``C_j⁻¹A_jC_j⁻ᵀ = I``.

The LAPACK calls run one after another (:func:`after`): XLA's CPU runtime would otherwise
start independent ones together, each with every BLAS thread, and oversubscribe the cores.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.custom_derivatives import SymbolicZero

from ._backend import solve_modes
from ._vec import along_mode, apply_modes, mode_apply, mode_split, unfold

__all__ = ["QuadParts", "after", "chol_parts", "general_parts", "inner", "quad_tangent",
           "tri_mode"]


class QuadParts(NamedTuple):
    """``q`` (one value per batch row) and the arrays of :func:`quad_tangent`: ``left[k]``,
    ``right[k]`` (``None`` where factor ``k`` has no tangent), ``g`` (``None`` where ``w`` has
    none); tensors of shape ``(..., p1, ..., pd)``."""

    q: jax.Array
    left: list[Any]
    right: list[Any]
    g: Any


def inner(a: jax.Array, b: jax.Array, d: int) -> jax.Array:
    """``Σ a·b`` over the last ``d`` axes (one value per batch row)."""
    return jnp.sum(a * b, axis=tuple(range(-d, 0)))


def after(x: Any, *before: Any) -> Any:
    """``x``, computed from only once every array of ``before`` is: ``x + 0·b₀`` for the
    first entry ``b₀`` of each (XLA keeps ``0·b`` for floats, so the dependency is real; its
    pass over ``x`` fuses with the copy a LAPACK call makes of its operand). XLA's CPU
    runtime starts independent operations together; chaining the LAPACK calls stops two
    multi-threaded BLAS calls from sharing the cores (a NaN or Inf in ``b₀`` makes ``x`` NaN:
    only where the result is NaN or Inf anyway)."""
    for b in before:
        if b is not None:
            x = x + jnp.zeros((), x.dtype) * b.ravel()[0].astype(x.dtype)
    return x


def tri_mode(t: jax.Array, k: int, d: int, C: jax.Array, trans: bool) -> jax.Array:
    """``t ×_k C⁻¹`` (``trans``: ``C⁻ᵀ``) for a lower triangular ``C``: one triangular solve
    with every fibre of mode ``k`` as a right-hand side; the last mode is solved from the
    right (``X C⁻ᵀ``), without a transposed copy. O(size(t)·p_k)."""
    solve = jax.lax.linalg.triangular_solve
    before, nk, after_ = mode_split(t.shape, k, d)
    if after_ == 1:
        out = solve(C, t.reshape(before, nk), left_side=False, lower=True, transpose_a=not trans)
        return out.reshape(t.shape)
    return along_mode(t, k, d, lambda x: solve(C, x, left_side=True, lower=True,
                                               transpose_a=trans))


def chol_parts(chols: Sequence[jax.Array], W: jax.Array, need: Sequence[bool],
               need_g: bool) -> QuadParts:
    """:class:`QuadParts` from the lower Cholesky factors ``chols`` of every factor, for the
    tensor ``W`` ``(..., p1, ..., pd)``; ``need[k]``: factor ``k`` has a tangent. Cost
    ``size(W)·(Σ_k p_k + Σ_{need} p_k (+ Σ_{k>1} p_k for g))`` in triangular solves, one
    after another (:func:`after`)."""
    d = len(chols)
    X = after(W, chols[-1])
    for k, C in enumerate(chols):
        X = tri_mode(X, k, d, C, False)
    q = inner(X, X, d)
    P: list[Any] = [None] * d
    last = X
    for k, C in enumerate(chols):
        if need[k] or (k == 0 and need_g):
            P[k] = last = tri_mode(after(X, last), k, d, C, True)
    g = None
    if need_g:  # z = S⁻¹w = P_1 ×_{j>1} C_j⁻ᵀ
        Z = after(P[0], last)
        for k in range(1, d):
            Z = tri_mode(Z, k, d, chols[k], True)
        g = last = 2.0 * Z
    # the products of the backward pass start once every solve is done
    P = [after(p, last) if need[k] else None for k, p in enumerate(P)]
    return QuadParts(q, P, P, g)


def general_parts(facs: Sequence[Any], mats: Sequence[jax.Array], W: jax.Array,
                  need: Sequence[bool], need_g: bool) -> QuadParts:
    """:class:`QuadParts` from any factorisations ``facs`` (with ``solve(b, trans)`` and
    ``kind``): ``z = S⁻¹w``, ``u = S⁻ᵀw`` (``= z`` if every factor is Cholesky)."""
    d = len(mats)
    Z = solve_modes(W, facs)
    q = inner(W, Z, d)
    if not (any(need) or need_g):
        return QuadParts(q, [None] * d, [None] * d, None)
    U = Z if all(f.kind == "cholesky" for f in facs) else solve_modes(after(W, Z), facs, trans=True)
    right = [apply_modes(Z, mats, skip=k) if need[k] else None for k in range(d)]
    left = [U if need[k] else None for k in range(d)]
    return QuadParts(q, left, right, Z + U if need_g else None)


def quad_tangent(parts: QuadParts, dmats: Sequence[Any], dW: Any, d: int) -> jax.Array:
    """``dq = ⟨g, dW⟩ − Σ_k ⟨L_k, R_k ×_k dA_k⟩`` (a ``SymbolicZero`` tangent contributes
    nothing); linear in ``(dmats, dW)``."""
    dq = jnp.zeros_like(parts.q)
    if not isinstance(dW, SymbolicZero):
        dq = dq + inner(parts.g, dW, d)
    for k, dM in enumerate(dmats):
        if isinstance(dM, SymbolicZero):
            continue
        if parts.q.ndim == 0:  # one vector: ⟨L_(k), dA R_(k)⟩, whose transpose L_(k) R_(k)ᵀ is
            # a product of row-major operands (XLA's fast kernel; ``R_(k)ᵀ L_(k)`` is not)
            left, right = unfold(parts.left[k], k, d), unfold(parts.right[k], k, d)
            dq = dq - jnp.sum(left * (dM @ right))
        else:
            dq = dq - inner(parts.left[k], mode_apply(parts.right[k], dM, k, d), d)
    return dq
