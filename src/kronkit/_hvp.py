r"""Hessian-vector products of the seed function ``λ = log(α + (y−μ)ᵀ(A1⊗…⊗Ad)⁻¹(y−μ))``.

Notation as in :mod:`kronkit._calculus`: ``w = y − μ``, ``S = ⊗_k A_k``, ``Z = S⁻¹w``,
``U = S⁻ᵀw`` (tensors of shape ``(p1, …, pd)``), ``q = wᵀZ``, ``β = α + q``, and
``V_k = w ×_k A_k⁻¹ = Z ×_{j≠k} A_j``. The gradient is
``∂q/∂A_k = −U_(k) V_k(k)ᵀ``, ``∂q/∂w = Z + U``.

Along a direction ``v = (dA_1, …, dA_d, dw)``, with ``dS = Σ_k A_1⊗…⊗dA_k⊗…⊗A_d``:

* ``E  = S⁻¹ dS Z   = Σ_k Z ×_k (A_k⁻¹ dA_k)``,      ``dZ = S⁻¹dw − E``,
* ``Eᵀ = S⁻ᵀ dSᵀ U  = Σ_k U ×_k (A_k⁻ᵀ dA_kᵀ)``,     ``dU = S⁻ᵀdw − Eᵀ``,
* ``dq = ∇q·v = ⟨Z + U, dw⟩ − ⟨w, E⟩``,
* ``dV_k = (dw − V_k ×_k dA_k) ×_k A_k⁻¹`` (the ``dA_j``, j ≠ k, terms of ``dZ ×_{j≠k} A_j`` and
  of ``Z ×_j dA_j`` cancel, so ``V_k`` depends on ``A_k`` and ``w`` only),
* ``Hq[v]``: factor k ``−dU_(k) V_k(k)ᵀ − U_(k) dV_k(k)ᵀ``; ``w``: ``dZ + dU``.

Then ``λ = log β`` gives ``Hλ[v] = β⁻¹ Hq[v] − β⁻² (∇q·v) ∇q``. Everything is mode products and
mode solves: O(Σ p_k³ + N·P·Σ p_k), the order of one gradient; nothing P×P.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ._cell_ops import CellOperator
from ._checks import as_float, check_choice, check_scalar
from ._factor import Factorization, mode_solve
from ._grad_results import LogQuadGrad, LogQuadHVP
from ._kron import factorizations
from ._quad import (
    check_outputs,
    check_q,
    checked_beta,
    empty_batch,
    prepare_observations,
    reduce_values,
    reduction_scale,
)
from ._sum_hvp import sum_log_quad_hvp
from ._sum_kron import SumOfKron
from ._typing import ArrayLike, KronLike
from ._vec import mode_apply, to_tensor, unfold

__all__ = ["LogQuadHVP", "log_quad_hvp"]


def _directions(directions: Any, dims: Sequence[int], dtype: np.dtype) -> list[np.ndarray | None]:
    d = len(dims)
    if isinstance(directions, np.ndarray) or not isinstance(directions, (list, tuple)):
        raise TypeError(
            f"`directions` must be a tuple of {d} factor directions (dA_1, ..., dA_{d}) "
            f"(None for a zero direction), got {type(directions).__name__}"
        )
    if len(directions) != d:
        raise ValueError(
            f"`directions` must hold one direction per factor ({d}), got {len(directions)}"
        )
    out: list[np.ndarray | None] = []
    for k, (D, p) in enumerate(zip(directions, dims, strict=True)):
        if D is None:
            out.append(None)
            continue
        arr = as_float(D, f"directions[{k}]", ndim=2)
        if arr.shape != (p, p):
            raise ValueError(
                f"`directions[{k}]` must have the shape of factor {k}, ({p}, {p}), got {arr.shape}"
            )
        out.append(arr.astype(np.result_type(arr.dtype, dtype), copy=False))
    return out


def log_quad_hvp(
    K: KronLike,
    y: ArrayLike,
    directions: Sequence[ArrayLike | None],
    mu: ArrayLike | None = None,
    alpha: float = 1.0,
    *,
    dy: ArrayLike | None = None,
    reduce: str = "sum",
) -> LogQuadHVP:
    r"""Hessian-vector product of ``λ = log(α + (y−μ)ᵀ (A1⊗…⊗Ad)⁻¹ (y−μ))``.

    The Hessian is taken with respect to all factors ``(A1, …, Ad)`` (every entry an
    independent variable, as in :func:`kronkit.log_quad_grad`) and ``y``, jointly; the product
    is with the direction ``v = (dA_1, …, dA_d, dy)``.

    Parameters
    ----------
    K : Kron, sequence of square factors ``(A1, ..., Ad)`` (each (p_k, p_k)), or SumOfKron
        Any non-singular factors (Cholesky is used for SPD ones, LU otherwise). For a
        :class:`~kronkit.SumOfKron` (positive definite), ``directions[t][k]`` and the result's
        ``factors[t][k]`` range over every factor of every term (see ``kronkit._sum_hvp``).
    y : array_like of shape (P,) or (N, P)
        Observation(s).
    directions : sequence of d array_like of shape (p_k, p_k), or None entries
        The factor part of the direction, ``(dA_1, …, dA_d)``; ``None`` means zero.
    mu : array_like of shape (P,) or (N, P), optional
        Location (default 0). Not differentiated: since ``λ`` depends on ``y − μ`` only, the
        ``μ`` block is the ``y`` block with the sign flipped (a direction ``dμ`` acts as
        ``dy = −dμ`` and ``[Hv]_μ = −[Hv]_y``).
    alpha : float
        Offset ``α`` (``β = α + q > 0`` required).
    dy : array_like of the shape of ``y``, optional
        The ``y`` part of the direction (default zero).
    reduce : {"sum", "mean"}
        For a batch, the Hessian of ``Σ_i λ_i`` or of its mean (the ``y`` block is still per
        observation: row i is ``∂/∂y_i``). Ignored for a single ``y``.

    Returns
    -------
    LogQuadHVP
        ``value``, ``factors`` (``[Hv]_{A_k}``), ``y`` (``[Hv]_y``), ``grad`` (a
        :class:`LogQuadGrad` at the same point).

    Notes
    -----
    ``Hλ[v] = β⁻¹ Hq[v] − β⁻² (∇q·v) ∇q`` with ``Hq[v]`` from the differentials
    ``dZ = S⁻¹(dw − dS Z)``, ``dU = S⁻ᵀ(dw − dSᵀ U)`` and
    ``d(∂q/∂A_k) = −dU_(k) V_k(k)ᵀ − U_(k) dV_k(k)ᵀ`` (module docstring). Cost
    O(Σ p_k³ + N·P·Σ p_k): the order of one gradient, never P×P.

    Dense equivalent (d = 2, one observation)::

        f = lambda A, B, y: jnp.log(alpha + (y - mu) @ jnp.linalg.solve(jnp.kron(A, B), y - mu))
        jax.jvp(jax.grad(f, argnums=(0, 1, 2)), (A, B, y), (dA, dB, dy))[1]

    **Gauge.** ``(cA)⊗(B/c) = A⊗B``, so ``λ`` is constant along ``t ↦ (eᵗA, e⁻ᵗB)``. Hence
    ``⟨∇_Aλ, A⟩ − ⟨∇_Bλ, B⟩ = 0`` and ``H·(A, −B, 0) = (−∇_Aλ, ∇_Bλ, 0)`` exactly: the
    direction ``(A, −B)`` is in the null space of the Hessian wherever the factor gradient
    vanishes (e.g. at a maximum-likelihood estimate), and Newton's system is singular there.
    Fix the gauge (see ``docs/distributions.md``).

    Examples
    --------
    >>> import numpy as np, kronkit
    >>> A = np.array([[2.0, 0.5], [0.5, 1.0]]); B = np.eye(3) * 1.5; y = np.arange(6.0)
    >>> h = kronkit.log_quad_hvp([A, B], y, (A, -B))
    >>> bool(np.allclose(h.factors[0], -h.grad.A) and np.allclose(h.factors[1], h.grad.B))
    True
    """
    check_choice(reduce, "reduce", ("sum", "mean"),
                 " for log_quad_hvp (per-observation Hessians: call it once per observation)")
    if isinstance(K, CellOperator):
        raise TypeError(
            f"log_quad_hvp takes a Kron or a SumOfKron, got a {type(K).__name__} (an incomplete "
            "grid): Hessian-vector products on incomplete grids are not implemented; "
            "log_quad_grad works on it")
    if isinstance(K, SumOfKron):
        return sum_log_quad_hvp(K, y, directions, mu, check_scalar(alpha, "alpha"), dy, reduce)
    K, W, mua, single = prepare_observations(K, y, mu, "log_quad_hvp")
    a = check_scalar(alpha, "alpha")
    dA = _directions(directions, K.col_dims, W.dtype)
    dW = _direction_y(dy, W, single)
    if W.shape[0] == 0:  # an empty batch: zeros for a sum, ValueError for a mean
        grad = LogQuadGrad(*empty_batch(K, W, mua, reduce, "log_quad_hvp", True))
        return LogQuadHVP(0.0, grad.factors, np.zeros_like(W), grad)
    facs = factorizations(K, "log_quad_hvp")
    s = reduction_scale(reduce, W.shape[0], single)
    lam, c, g_fac, h_fac, g_y, h_y = _hvp_terms(K, facs, W, dW, dA, a, s)
    check_outputs(K, W, tuple(g_fac), tuple(h_fac), g_y, h_y)
    value = reduce_values(lam, reduce, single, s)
    if single:
        grad = LogQuadGrad(value, tuple(g_fac), g_y[0], -g_y[0], float(c[0]))
        return LogQuadHVP(value, tuple(h_fac), h_y[0], grad)
    g_mu = -g_y if (mua is not None and mua.ndim == 2) else -g_y.sum(axis=0)
    grad = LogQuadGrad(value, tuple(g_fac), g_y, g_mu, float(np.sum(c)))
    return LogQuadHVP(value, tuple(h_fac), h_y, grad)


def _direction_y(dy: Any, W: np.ndarray, single: bool) -> np.ndarray:
    """The ``y`` part of the direction as an (N, P) array (zeros when ``dy`` is None)."""
    if dy is None:
        return np.zeros_like(W)
    dya = as_float(dy, "dy")
    want = (W.shape[1],) if single else W.shape
    if dya.shape != want:
        raise ValueError(f"`dy` must have the shape of `y`, {want}, got {dya.shape}")
    return np.atleast_2d(dya).astype(np.result_type(dya.dtype, W.dtype), copy=False)


def _hvp_terms(K: Any, facs: Sequence[Factorization], W: np.ndarray, dW: np.ndarray,
               dA: list[np.ndarray | None], alpha: float, s: float):
    """Per-observation ``λ_i``, ``c_i = s/β_i``, and the reduced gradient and ``Hv`` blocks.

    Returns ``(λ, c, [∂/∂A_k], [[Hv]_{A_k}], ∂/∂y (N, P), [Hv]_y (N, P))``, all scaled by
    ``s`` (``1/N`` for a mean); the formulas are in the module docstring.
    """
    d, dims, N = K.n_factors, K.col_dims, W.shape[0]
    sym = all(f.symmetric for f in facs)

    def solve(t: np.ndarray, trans: bool) -> np.ndarray:
        for k, f in enumerate(facs):
            t = mode_solve(t, f, k, d, trans=trans)
        return t

    Wt = to_tensor(W, dims)
    dWt = to_tensor(dW, dims)
    Z = solve(Wt, False)
    U = Z if sym else solve(Wt, True)
    q = np.einsum("ij,ij->i", W, Z.reshape(N, -1))
    check_q(q, K, W)
    beta = checked_beta(q, alpha, W)

    # S⁻¹ dS Z and S⁻ᵀ dSᵀ U as sums of single mode products
    E = np.zeros_like(Z)
    ET = np.zeros_like(U)
    for k, (f, D) in enumerate(zip(facs, dA, strict=True)):
        if D is None:
            continue
        E += mode_apply(Z, f.solve(D), k, d)
        ET += mode_apply(U, f.solve(D.T, trans=True), k, d)
    Sdw = solve(dWt, False)
    dZ = Sdw - E
    dU = (Sdw if sym else solve(dWt, True)) - ET

    flat = lambda t: t.reshape(N, -1)  # noqa: E731
    dq = np.einsum("ij,ij->i", flat(Z + U), dW) - np.einsum("ij,ij->i", W, flat(E))

    c1 = (s / beta).reshape((N,) + (1,) * d)  # β⁻¹
    c2 = (-s * dq / beta**2).reshape((N,) + (1,) * d)  # −β⁻² ∇q·v
    aU = c1 * U
    left = c1 * dU + c2 * U
    g_fac, h_fac = [], []
    for k, (f, D) in enumerate(zip(facs, dA, strict=True)):
        V = mode_solve(Wt, f, k, d)  # w ×_k A_k⁻¹
        r = dWt if D is None else dWt - mode_apply(V, D, k, d)
        dV = mode_solve(r, f, k, d)
        Vk = unfold(V, k, d)
        aUk = unfold(aU, k, d)
        g_fac.append(-(aUk @ Vk.T))
        h_fac.append(-(unfold(left, k, d) @ Vk.T) - aUk @ unfold(dV, k, d).T)
    h_y = flat(c1 * (dZ + dU) + c2 * (Z + U))
    g_y = flat(c1 * (Z + U))
    return np.log(beta), s / beta, g_fac, h_fac, g_y, h_y
