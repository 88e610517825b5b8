r"""The eigen form of a supported sum and its closed-form derivatives, for JAX and PyTorch.

Written once for both back ends: arrays are JAX arrays or torch tensors, used only through
what the two share (``@``, ``*``, ``/``, ``.reshape``, ``.T``, ``.sum(axis)``,
``.diagonal()``) and the few back-end functions of an :class:`Ops` (eigh, Cholesky,
triangular solves, ``log``, ``sqrt``, ``diag``, the checks). Structure comes from a
:class:`kronkit._sum_spec.SumSpec`; factor ``(t, k)`` is ``mats[t·d + k]``, a 2-D matrix,
a 1-D diagonal or a 0-d scalar (times the identity).

Eigen form: per axis ``V_k`` with ``V_kᵀ F_tk V_k = diag(h_tk)`` for every term, so
``S⁻¹ = (⊗V_k) diag(1/λ) (⊗V_k)ᵀ``, ``λ = Σ_t ⊗_k h_tk``,
``log det S = Σ log λ + Σ_k (P/n_k) log det C_k`` (``C_k`` the axis's metric).

Derivatives (``u = S⁻¹w``; ``dS = Σ_{t,k} F_t1⊗…⊗dF_tk⊗…⊗F_td``):

* ``∂⟨u, S v⟩/∂F_tk = unfold_k(u)·unfold_k(v ×_{j≠k} F_tj)ᵀ`` (:func:`quad_grads`);
* ``∂ log det S/∂F_tk = V_k diag(g_tk) V_kᵀ``, ``g_tk = Σ_{i: i_k=·} λ⁻¹ Π_{j≠k} h_tj``
  (:func:`logdet_grads`);
* the derivative of those along ``dF`` (:func:`logdet_hvp`): with ``dH_sm = V_mᵀ dF_sm V_m``
  and ``δ_sm`` its diagonal,
  ``dG_tk = V_k [diag(c_tk) − Σ_s M_stk ∘ dH_skᵀ] V_kᵀ``, where
  ``M_stk = unfold_k(λ⁻¹ w_s) unfold_k(λ⁻¹ w_t)ᵀ`` (``w_t = Π_{j≠k} h_tj``) and
  ``c_tk = Σ_{i_k=·} [−λ⁻² w_t Σ_s Σ_{m≠k} δ_sm Π_{j≠m} h_sj + λ⁻¹ Σ_{j≠k} δ_tj Π_{l≠j,k} h_tl]``.
  The Hessian of ``log det S`` is symmetric, so the same map is its vector-Jacobian product.

Gradients with respect to a diagonal (1-D) factor are the diagonal of the matrix gradient,
with respect to a scalar factor its trace.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ._errors import NotPositiveDefiniteError
from ._sum_spec import DIAG, FULL, SCALAR, SumSpec, slot_name
from ._vec import mode_apply, to_tensor, to_vec, unfold

__all__ = ["EigenForm", "Ops", "apply", "d_apply", "eigen_form", "inv_quad", "logdet", "logdet_grads",
           "logdet_hvp", "metric_error", "not_symmetric_error", "quad_grads", "require_positive",
           "solve"]


def not_symmetric_error(name: str) -> ValueError:
    """A matrix factor of a sum that is not symmetric (the eigen route needs symmetry)."""
    return ValueError(f"`{name}` must be symmetric (sums are diagonalised by eigh)")


def metric_error(name: str, low: float | None) -> NotPositiveDefiniteError:
    """The metric of an axis (``name``) is not positive definite (``low``: its smallest
    entry, for a diagonal metric)."""
    why = "Cholesky failed" if low is None else f"min {low:.6g}"
    return NotPositiveDefiniteError(
        f"`{name}` is the metric of its axis and must be positive definite ({why})")


def require_positive(low: float, name: str | None) -> None:
    """Raise unless ``low`` (the smallest entry of a metric diagonal ``name``, or for
    ``name=None`` the smallest whitened eigenvalue ``λ`` of the sum) is positive."""
    if low > 0:
        return
    if name:
        raise metric_error(name, low)
    raise NotPositiveDefiniteError(
        "the sum of Kronecker products is not positive definite: smallest eigenvalue of the "
        f"whitened sum λ = {low:.6g}")


@dataclass(frozen=True)
class Ops:
    """The back end's few functions: ``eigh(M) -> (e, Q)``; ``cholesky(C, name) -> L``
    (raising or NaN for a matrix that is not positive definite); ``tri_solve(L, X, trans)``
    (``L⁻¹X`` or ``L⁻ᵀX``); ``log``, ``sqrt``, ``diag`` (vector → matrix); ``ones(n, like)``;
    ``symmetric(F, name) -> F`` (raises, or NaN under ``jit``, for a non-symmetric ``F``);
    ``positive(v, name) -> v``: raises (or NaN) unless every entry is positive, with
    :func:`require_positive`'s errors."""

    eigh: Callable[[Any], tuple[Any, Any]]
    cholesky: Callable[[Any, str], Any]
    tri_solve: Callable[[Any, Any, bool], Any]
    log: Callable[[Any], Any]
    sqrt: Callable[[Any], Any]
    diag: Callable[[Any], Any]
    ones: Callable[[int, Any], Any]
    symmetric: Callable[[Any, str], Any]
    positive: Callable[[Any, str | None], Any]


@dataclass(frozen=True)
class EigenForm:
    """``V[k]`` (None: the identity), ``h[t][k]`` (vectors), ``lam`` (grid tensor), and
    ``logdet_metric = Σ_k (P/n_k) log det C_k``."""

    spec: SumSpec
    V: tuple[Any, ...]
    h: tuple[tuple[Any, ...], ...]
    lam: Any
    logdet_metric: Any


def _name(spec: SumSpec, slot: int) -> str:
    return slot_name(*divmod(slot, spec.d))


def _axis(spec: SumSpec, mats: Sequence[Any], k: int, ops: Ops) -> tuple[Any, list[Any], Any]:
    """``(V_k, [h_tk for every t], log det C_k)`` for axis ``k``."""
    ax, n = spec.axes[k], spec.dims[k]
    like = mats[spec.slot(0, k)]
    if ax.kind == "diag":
        hs = [x if x.ndim == DIAG else x * ops.ones(n, x)
              for x in (mats[spec.slot(t, k)] for t in range(spec.n_terms))]
        return None, hs, 0.0
    A = ops.symmetric(mats[ax.a], _name(spec, ax.a))
    if ax.kind == "eigh":
        e, V = ops.eigh(A)
        logc: Any = 0.0
    elif ax.kind == "dmetric":
        c = ops.positive(mats[ax.c], _name(spec, ax.c))
        r = 1.0 / ops.sqrt(c)
        e, Q = ops.eigh(r.reshape(n, 1) * A * r.reshape(1, n))
        V, logc = r.reshape(n, 1) * Q, ops.log(c).sum()
    else:
        L = ops.cholesky(ops.symmetric(mats[ax.c], _name(spec, ax.c)), _name(spec, ax.c))
        X = ops.tri_solve(L, ops.tri_solve(L, A, False).T, False)  # L⁻¹ A L⁻ᵀ (A symmetric)
        e, Q = ops.eigh(0.5 * (X + X.T))
        V, logc = ops.tri_solve(L, Q, True), 2.0 * ops.log(L.diagonal()).sum()
    hs = []
    for t, role in enumerate(ax.roles):
        x = mats[spec.slot(t, k)]
        hs.append(e if role == "A" else ops.ones(n, like) if role == "C" else x * ops.ones(n, e))
    return V, hs, logc


def outer(vecs: Sequence[Any | None], d: int) -> Any:
    """``⊗_k v_k`` as a grid tensor by broadcasting (``None`` entries are skipped: size 1)."""
    out: Any = 1.0
    for k, v in enumerate(vecs):
        if v is not None:
            out = out * v.reshape(*[1] * k, v.shape[0], *[1] * (d - k - 1))
    return out


def eigen_form(spec: SumSpec, mats: Sequence[Any], ops: Ops) -> EigenForm:
    """The eigen form of the sum; O(Σ n_k³ + T·P)."""
    d, P = spec.d, spec.size
    axes = [_axis(spec, mats, k, ops) for k in range(d)]
    h = tuple(tuple(axes[k][1][t] for k in range(d)) for t in range(spec.n_terms))
    lam = sum(outer(ht, d) for ht in h)
    logc = sum((P // spec.dims[k]) * axes[k][2] for k in range(d))
    return EigenForm(spec, tuple(a[0] for a in axes), h, ops.positive(lam, None), logc)


def _modes(t: Any, mats: Sequence[Any | None], transpose: bool) -> Any:
    d = len(mats)
    for k, M in enumerate(mats):
        if M is not None:
            t = mode_apply(t, M.T if transpose else M, k, d)
    return t


def solve(E: EigenForm, y: Any) -> Any:
    """``S⁻¹ y`` for rows ``y`` of shape ``(..., P)``; O(P·Σ n_k) per row."""
    Z = _modes(to_tensor(y, E.spec.dims), E.V, True) / E.lam
    return to_vec(_modes(Z, E.V, False), E.spec.d)


def inv_quad(E: EigenForm, y: Any) -> Any:
    """``yᵀ S⁻¹ y`` per row."""
    Z = _modes(to_tensor(y, E.spec.dims), E.V, True)
    return to_vec(Z * Z / E.lam, E.spec.d).sum(-1)


def logdet(E: EigenForm, ops: Ops) -> Any:
    return ops.log(E.lam).sum() + E.logdet_metric


def mode_mul(t: Any, F: Any, k: int, d: int) -> Any:
    """``t ×_k F`` for a factor in the encoding (matrix, diagonal or scalar)."""
    if F.ndim == SCALAR:
        return t * F
    if F.ndim == DIAG:
        return t * F.reshape(F.shape[0], *[1] * (d - k - 1))
    return mode_apply(t, F, k, d)


def _term_apply(spec: SumSpec, mats: Sequence[Any], t: int, X: Any, skip: int | None) -> Any:
    for k in range(spec.d):
        if k != skip:
            X = mode_mul(X, mats[spec.slot(t, k)], k, spec.d)
    return X


def apply(spec: SumSpec, mats: Sequence[Any], v: Any) -> Any:
    """``S v`` for rows ``v``; O(T·P·Σ n_k)."""
    X = to_tensor(v, spec.dims)
    return to_vec(sum(_term_apply(spec, mats, t, X, None) for t in range(spec.n_terms)), spec.d)


def d_apply(spec: SumSpec, mats: Sequence[Any], dmats: Sequence[Any], v: Any) -> Any:
    """``dS v`` for rows ``v`` (the derivative of ``S v`` along ``dmats``); O(T·d²·P·n)."""
    X, total = to_tensor(v, spec.dims), None
    for t in range(spec.n_terms):
        for k in range(spec.d):
            part = mode_mul(_term_apply(spec, mats, t, X, k), dmats[spec.slot(t, k)], k, spec.d)
            total = part if total is None else total + part
    return to_vec(total, spec.d)


def quad_grads(spec: SumSpec, mats: Sequence[Any], u: Any, v: Any,
               needs: Sequence[bool]) -> list[Any | None]:
    """``∂⟨u, S v⟩/∂F_tk`` per slot (batch rows summed; ``None`` where not ``needs``), in the
    factor's encoding: the matrix, its diagonal, or its trace."""
    d = spec.d
    U, Vt = to_tensor(u, spec.dims), to_tensor(v, spec.dims)

    def grad(t: int, k: int) -> Any:
        X = _term_apply(spec, mats, t, Vt, k)
        kind = spec.kinds[t][k]
        if kind == FULL:
            return unfold(U, k, d) @ unfold(X, k, d).T
        return unfold(U * X, k, d).sum(-1) if kind == DIAG else (U * X).sum()

    return _per_slot(needs, d, grad)


def _per_slot(needs: Sequence[bool], d: int, fn: Callable[[int, int], Any]) -> list[Any | None]:
    """``[fn(t, k) if needs[t·d + k] else None]`` over the slots."""
    return [fn(*divmod(slot, d)) if need else None for slot, need in enumerate(needs)]


def _reduce(E: EigenForm, k: int, kind: int, core: Any, diagonal: bool) -> Any:
    """``V_k core V_kᵀ`` (``diagonal``: ``core`` is the vector of a diagonal core) reduced to
    the encoding ``kind``: the matrix, its diagonal or its trace."""
    V = E.V[k]
    if V is None:
        M = core
    elif diagonal and kind != FULL:
        vv = (V * V) @ core  # diag(V diag(core) Vᵀ)
        return vv if kind == DIAG else vv.sum()
    else:
        M = (V * core) @ V.T if diagonal else V @ core @ V.T
    if kind == FULL:
        return M
    dg = M if (diagonal and V is None) else M.diagonal()
    return dg if kind == DIAG else dg.sum()


def _w(E: EigenForm, t: int, skip: Sequence[int], replace: dict[int, Any] | None = None) -> Any:
    """``⊗_{j∉skip} h_tj`` (with ``replace[j]`` in place of ``h_tj``) as a grid tensor."""
    vecs = [None if j in skip else (replace or {}).get(j, E.h[t][j]) for j in range(E.spec.d)]
    return outer(vecs, E.spec.d)


def logdet_grads(E: EigenForm, needs: Sequence[bool]) -> list[Any | None]:
    """``∂ log det S/∂F_tk`` per slot in the factor's encoding (``None`` where not needed);
    O(Σ n_k³ + T·d·P)."""
    spec, d = E.spec, E.spec.d
    ilam = 1.0 / E.lam
    return _per_slot(needs, d, lambda t, k: _reduce(
        E, k, spec.kinds[t][k], unfold(ilam * _w(E, t, [k]), k, d).sum(-1), True))


def _d_h(E: EigenForm, ops: Ops, k: int, dF: Any) -> Any:
    """``V_kᵀ dF V_k`` (a full matrix) for a tangent in the encoding."""
    V, n = E.V[k], E.spec.dims[k]
    if V is None:
        return ops.diag(dF if dF.ndim == DIAG else dF * ops.ones(n, dF)) if dF.ndim < 2 else dF
    if dF.ndim == SCALAR:
        return dF * (V.T @ V)
    if dF.ndim == DIAG:
        return (V * dF.reshape(n, 1)).T @ V
    return V.T @ dF @ V


def logdet_hvp(E: EigenForm, ops: Ops, dmats: Sequence[Any],
               needs: Sequence[bool]) -> list[Any | None]:
    """``d(∂ log det S/∂F_tk)`` along ``dmats`` per slot, in the encodings (see the module
    docstring); O(Σ n_k³ + T²·d·P·n). Also the vector-Jacobian product of
    :func:`logdet_grads` with cotangents ``dmats`` (the Hessian is symmetric)."""
    spec, d, T = E.spec, E.spec.d, E.spec.n_terms
    ilam = 1.0 / E.lam
    dH = [[_d_h(E, ops, k, dmats[spec.slot(s, k)]) for k in range(d)] for s in range(T)]
    delta = [[dH[s][k].diagonal() for k in range(d)] for s in range(T)]
    dlam = [[_w(E, s, [], {m: delta[s][m]}) for m in range(d)] for s in range(T)]

    def dgrad(t: int, k: int) -> Any:
        wt = _w(E, t, [k])
        other = sum(dlam[s][m] for s in range(T) for m in range(d) if m != k)
        c = -(ilam * ilam * other * wt)
        for j in range(d):
            if j != k:
                c = c + ilam * _w(E, t, [k], {j: delta[t][j]})
        core = ops.diag(unfold(c, k, d).sum(-1))
        lt = unfold(ilam * wt, k, d)
        for s in range(T):
            M = unfold(ilam * _w(E, s, [k]), k, d) @ lt.T
            core = core - M * dH[s][k].T
        return _reduce(E, k, spec.kinds[t][k], core, False)

    return _per_slot(needs, d, dgrad)
