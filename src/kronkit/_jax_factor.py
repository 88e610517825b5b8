"""Per-factor factorisations of ``kronkit.jax`` (Cholesky or LU, the one place): the JAX mirror
of :class:`kronkit._factor.Factorization`, the traced condition estimate used under ``jit``, and
the conditioning contract of one call (:func:`factorize_all`)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
import numpy as np

from . import _backend
from ._factor import is_symmetric, rcond_from_factor
from ._jax_common import concrete
from ._jax_quad import after

__all__ = ["EXACT_RCOND_MAX_N", "JAX_DIR", "JaxFactor", "any_singular", "factorize_all",
           "inv_norm1_estimate", "spd_test", "traced_rcond"]

#: JAX's own files: warnings are attributed to the first frame outside them.
JAX_DIR = os.path.dirname(os.path.abspath(jax.__file__)) + os.sep


class JaxFactor(_backend.BackendFactor):
    """Cholesky or LU factorisation of one square factor: the JAX mirror of
    :class:`kronkit._factor.Factorization` (``kind``, ``factor``, ``piv``, ``n``, ``index``,
    ``symmetric``, ``rcond``, ``exact_zero``, :meth:`solve`, :meth:`tri_solve`,
    :meth:`slogdet`, ``check``, ``singular``, ``ill_conditioned``).

    Concrete ``A`` (see :func:`kronkit._jax_common.concrete`): the kind follows ``assume`` as in
    :func:`kronkit._backend.choose_kind`; ``rcond`` is LAPACK's estimate. Abstract ``A``
    (``jit``, ``vmap``): nothing can be inspected or raised; ``"spd"`` uses Cholesky (NaN
    factors where ``A`` is not symmetric, as a failed Cholesky gives), ``"auto"`` and
    ``"general"`` use LU; ``rcond`` (:func:`traced_rcond`) and ``exact_zero`` are traced,
    and ``check`` is a no-op (:func:`factorize_all` turns a singular factor into NaN).
    ``chol``: the Cholesky factor of an abstract ``A``, already computed (``"auto"``'s run-time
    choice, :func:`spd_test`); the factor is then Cholesky whatever ``assume`` says.
    """

    __slots__ = ("concrete", "exact_zero", "factor", "index", "kind", "n", "piv", "rcond",
                 "symmetric")

    def __init__(self, A: jax.Array, index: int, assume: str, chol: jax.Array | None = None):
        self.index = index
        self.n = A.shape[0]
        a = concrete(A)
        self.concrete = a is not None
        if a is None:  # abstract: nothing can be raised, and LAPACK is out of reach
            self.symmetric: Any
            if chol is not None:  # spd_test has checked symmetry (and tells the caller)
                self.symmetric, self.factor = jnp.ones((), bool), chol
                self.kind, self.piv, self.exact_zero = "cholesky", None, jnp.zeros((), bool)
            elif assume == "spd":
                self.symmetric = is_symmetric(A, float(jnp.finfo(A.dtype).eps))
                L = jax.lax.linalg.cholesky(A, symmetrize_input=False)
                self.kind, self.piv = "cholesky", None
                self.factor = jnp.where(self.symmetric, L, jnp.nan)
                self.exact_zero = jnp.zeros((), bool)
            else:
                self.symmetric = is_symmetric(A, float(jnp.finfo(A.dtype).eps))
                self.kind = "lu"
                self.factor, self.piv = jsl.lu_factor(A)
                self.exact_zero = jnp.any(jnp.diagonal(self.factor) == 0)
            self.rcond = traced_rcond(A, self.factor, self.kind)
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


EXACT_RCOND_MAX_N = 64  # up to this size the traced rcond is exact, above it estimated


def traced_rcond(A: jax.Array, c: jax.Array, kind: str) -> jax.Array:
    """``1/(‖A‖₁‖A⁻¹‖₁)`` in the traced program (JAX has no LAPACK ``gecon``).

    ``‖A⁻¹‖₁ = ‖(LU)⁻¹‖₁`` (the row permutation does not change it; Cholesky: ``U = Lᵀ``).
    For ``p ≤ 64`` it is computed exactly, from two triangular solves with the identity
    (O(p³), cheap at that size, and two operations to compile); above, by the Hager–Higham
    estimate of :func:`inv_norm1_estimate` (O(p²), the method of LAPACK's ``gecon``).
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
    if n <= EXACT_RCOND_MAX_N:
        inv_norm = jnp.max(jnp.sum(jnp.abs(inv(jnp.eye(n, dtype=A.dtype))), axis=0))
    else:
        inv_norm = inv_norm1_estimate(inv, inv_t, n, A.dtype)
    rcond = 1.0 / (jnp.max(jnp.sum(jnp.abs(A), axis=0)) * inv_norm)
    return jnp.where(jnp.isfinite(rcond) & jnp.isfinite(inv_norm), rcond, 0.0)


def inv_norm1_estimate(inv, inv_t, n: int, dtype, steps: int = 4) -> jax.Array:
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

    def step(carry):
        i, x, xi, est, done = carry
        z = inv_t(xi[:, None])[:, 0]
        j = jnp.argmax(jnp.abs(z))
        done = done | (jnp.abs(z[j]) <= z @ x)
        x_new = jax.nn.one_hot(j, n, dtype=dtype)
        y = inv(x_new[:, None])[:, 0]
        est_new, xi_new = jnp.sum(jnp.abs(y)), sign(y)
        improves = ~done & (est_new > est) & jnp.any(xi_new != xi)
        est = jnp.where(done, est, jnp.maximum(est, est_new))
        done = done | ~improves
        return i + 1, jnp.where(done, x, x_new), jnp.where(done, xi, xi_new), est, done

    # a while loop: it stops when the estimate stops growing (usually after one or two steps)
    _, _, _, est, _ = jax.lax.while_loop(lambda c: (c[0] < steps) & ~c[4], step,
                                         (0, x, xi, est, jnp.zeros((), bool)))
    return jnp.maximum(est, 2.0 * jnp.sum(jnp.abs(Y[:, 1])) / (3.0 * n))


def factorize_all(mats: Sequence[jax.Array], assume: str, *, zero_det_ok: bool = False,
                  chols: Sequence[jax.Array | None] | None = None,
                  nan_factors: bool = True) -> tuple[list[JaxFactor], Any]:
    """Factor every factor, with the conditioning contract of ``Kron``.

    Returns ``(factors, zero)``, ``zero`` true where some factor has an exact zero pivot.
    Concrete values: :func:`kronkit._backend.check_factorizations` (raise for a singular
    factor, warn for an ill-conditioned one; ``zero_det_ok`` for log-determinants). Abstract
    values (``jit``, ``vmap``): a singular factor is replaced by NaN, so every result computed
    from it is NaN (``logdet`` turns an exact zero pivot into −inf itself); no warning. With
    ``nan_factors=False`` the factors are left as they are and the caller makes its result NaN
    where :func:`any_singular` is true (one scalar instead of a pass over each factor).
    ``chols[k]``, if given, is the Cholesky factor of an abstract ``mats[k]`` (see
    :class:`JaxFactor`). Abstract factors are factored one after another (:func:`after`).
    """
    chols = [None] * len(mats) if chols is None else chols
    facs: list[JaxFactor] = []
    zero: Any = False
    prev: tuple[Any, ...] = ()
    for k, (M, L) in enumerate(zip(mats, chols, strict=True)):
        if concrete(M) is not None:
            facs.append(JaxFactor(M, k, assume, L))
            continue
        f = JaxFactor(after(M, *prev), k, assume, after(L, *prev) if L is not None else None)
        zero = zero | f.exact_zero
        prev = (f.factor, f.rcond)  # before the NaN: an exact zero pivot further on still counts
        if nan_factors:
            f.factor = jnp.where(f.singular, jnp.nan, f.factor)
        facs.append(f)
    if _backend.check_factorizations([f for f in facs if f.concrete], (JAX_DIR,),
                                     zero_det_ok=zero_det_ok):
        return facs, True
    return facs, zero


def any_singular(facs: Sequence[JaxFactor]) -> Any:
    """Whether some abstract factor is singular to working precision (a traced boolean; False
    when every factor is concrete: those raise instead)."""
    bad: Any = False
    for f in facs:
        if not f.concrete:
            bad = bad | f.singular
    return bad


def spd_test(mats: Sequence[jax.Array]) -> tuple[Any, list[jax.Array | None]]:
    """``"auto"``'s run-time choice for abstract factors (under ``jit``): ``(ok, chols)``, with
    ``chols[k]`` the Cholesky factor of each abstract ``mats[k]`` (``None`` for concrete ones,
    whose kind their values decide) and ``ok`` a traced boolean, true where every abstract
    factor is symmetric (:func:`kronkit._factor.is_symmetric`) and its Cholesky factorisation
    finite — positive definite to working precision. O(Σ p_k³/3)."""
    ok: Any = True
    chols: list[jax.Array | None] = []
    for M in mats:
        if concrete(M) is not None:
            chols.append(None)
            continue
        L = jax.lax.linalg.cholesky(after(M, *[c for c in chols if c is not None][-1:]),
                                    symmetrize_input=False)
        ok = ok & is_symmetric(M, float(jnp.finfo(M.dtype).eps)) & jnp.all(jnp.isfinite(L))
        chols.append(L)
    return ok, chols
