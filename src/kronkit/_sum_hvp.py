r"""Hessian-vector products of ``λ = log(α + (y−μ)ᵀ S⁻¹ (y−μ))`` for a sum of Kronecker products.

``S = Σ_t F_t1⊗…⊗F_td`` symmetric positive definite, ``w = y − μ``, ``u = S⁻¹w``, ``q = wᵀu``,
``β = α + q``; ``B_tk(a, b) = unfold_k(a) unfold_k(b ×_{j≠k} F_tj)ᵀ``. The gradient is
``∂q/∂F_tk = −B_tk(u, u)``, ``∂q/∂w = 2u``. Along ``v = (dF_tk for all t, k; dw)``, with
``dS = Σ_t Σ_k F_t1⊗…⊗dF_tk⊗…⊗F_td``:

* ``db = d(S⁻¹w) = S⁻¹(dw − dS u)``, ``da = d(S⁻ᵀw) = S⁻¹(dw − dSᵀ u)`` (the directions need
  not be symmetric), ``dq = ∇q·v = 2uᵀdw − uᵀ dS u``;
* ``Hq[v]`` (from ``∂q/∂F_tk = −B_tk(S⁻ᵀw, S⁻¹w)``, ``∂q/∂w = (S⁻¹ + S⁻ᵀ)w``): factor ``(t, k)``:
  ``−B_tk(da, u) − B_tk(u, db) − Σ_{j≠k} B_tk^{F_tj→dF_tj}(u, u)``; ``w``: ``da + db``;

and ``Hλ[v] = β⁻¹ Hq[v] − β⁻² (∇q·v) ∇q``. One extra solve and the partial contractions of a
gradient: O(Σ n_k³ + N·T·d²·P·Σ n_k); nothing P×P.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._checks import as_float
from ._grad_results import LogQuadGrad, LogQuadHVP
from ._quad import reduce_values, reduction_scale
from ._sum_calculus import log_quad_grad_state
from ._sum_eig import contract_modes, factor_apply
from ._sum_kron import SumOfKron
from ._vec import mode_apply, to_tensor

__all__ = ["sum_log_quad_hvp"]


def _directions(S: SumOfKron, directions: Any) -> list[list[np.ndarray | None]]:
    """``directions[t][k]`` (None: zero; a whole term may be None)."""
    T, d = S.n_terms, S.n_factors
    if not isinstance(directions, (list, tuple)) or len(directions) != T:
        raise TypeError(f"`directions` for a SumOfKron must be a sequence of {T} terms, each a "
                        f"sequence of {d} factor directions (or None), got {directions!r:.80}")
    out: list[list[np.ndarray | None]] = []
    for t, row in enumerate(directions):
        if row is None:
            out.append([None] * d)
            continue
        if not isinstance(row, (list, tuple)) or len(row) != d:
            raise ValueError(f"`directions[{t}]` must hold {d} factor directions (or None)")
        cur: list[np.ndarray | None] = []
        for k, (D, n) in enumerate(zip(row, S.dims, strict=True)):
            if D is None:
                cur.append(None)
                continue
            arr = as_float(D, f"directions[{t}][{k}]", ndim=2, dtype=np.float64)
            if arr.shape != (n, n):
                raise ValueError(f"`directions[{t}][{k}]` must have shape ({n}, {n}), got "
                                 f"{arr.shape}")
            cur.append(arr)
        out.append(cur)
    return out


def _apply_term(S: SumOfKron, t: int, X: np.ndarray, skip: int | None = None,
                swap: tuple[int, np.ndarray] | None = None) -> np.ndarray:
    """``X`` times the factors of term ``t`` on every mode but ``skip``; mode ``swap[0]`` uses
    the direction ``swap[1]`` instead of its factor."""
    d = S.n_factors
    kinds = S.factor_kinds()[t]
    facs = S.terms[t].factors
    for j in range(d):
        if j == skip:
            continue
        if swap is not None and j == swap[0]:
            X = mode_apply(X, swap[1], j, d)
        else:
            X = factor_apply(X, kinds[j], facs[j], j, d)
    return X


def sum_log_quad_hvp(S: SumOfKron, y: Any, directions: Any, mu: Any, alpha: float,
                     dy: Any, reduce: str) -> LogQuadHVP:
    """:func:`kronkit.log_quad_hvp` for a :class:`SumOfKron` (``factors[t][k]``)."""
    grad, state, W, beta = log_quad_grad_state(S, y, mu, alpha, reduce)
    dirs = _directions(S, directions)
    single = np.ndim(y) == 1
    N, dims, d = W.shape[0], S.dims, S.n_factors
    dW = np.zeros_like(W) if dy is None else np.atleast_2d(as_float(dy, "dy", dtype=np.float64))
    if dW.shape != W.shape:
        raise ValueError(f"`dy` must have the shape of `y`, got {np.shape(dy)}")
    if state is None or beta is None:
        return LogQuadHVP(float(grad.value), grad.factors, np.zeros_like(W), grad)
    u = to_tensor(state.U, dims)  # S⁻¹w, from the gradient
    dSu, dSTu = np.zeros_like(u), np.zeros_like(u)  # dS u and dSᵀ u
    for t in range(S.n_terms):
        for k, D in enumerate(dirs[t]):
            if D is not None:
                dSu += _apply_term(S, t, u, swap=(k, D))
                dSTu += _apply_term(S, t, u, swap=(k, D.T))
    db = to_tensor(S.solve_rows(dW - dSu.reshape(N, -1)), dims)  # d(S⁻¹w)
    da = to_tensor(S.solve_rows(dW - dSTu.reshape(N, -1)), dims)  # d(S⁻ᵀw)
    flat_u = u.reshape(N, -1)
    dq = 2 * np.einsum("ij,ij->i", flat_u, dW) - np.einsum("ij,ij->i", flat_u, dSu.reshape(N, -1))
    s = reduction_scale(reduce, N, single)
    shape = (N,) + (1,) * d
    c1 = (s / beta).reshape(shape)
    c2 = (-s * dq / beta**2).reshape(shape)
    h_fac = []
    for t in range(S.n_terms):
        row = []
        for k in range(d):
            Fu = _apply_term(S, t, u, skip=k)
            h = -contract_modes(c1 * da + c2 * u, Fu, k, d, False)
            h -= contract_modes(c1 * u, _apply_term(S, t, db, skip=k), k, d, False)
            for j, D in enumerate(dirs[t]):
                if j != k and D is not None:
                    h -= contract_modes(c1 * u, _apply_term(S, t, u, skip=k, swap=(j, D)),
                                        k, d, False)
            row.append(h)
        h_fac.append(tuple(row))
    h_y = (c1 * (da + db) + 2 * c2 * u).reshape(N, -1)
    value = reduce_values(np.log(beta), reduce, single, s)
    return LogQuadHVP(value, tuple(h_fac), h_y[0] if single else h_y,  # type: ignore[arg-type]
                      LogQuadGrad(*grad))
