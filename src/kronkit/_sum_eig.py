r"""Exact eigen forms of sums of Kronecker products (REFERENCES §6).

A sum ``S = Σ_t F_t1⊗…⊗F_td`` is *supported* when every axis ``k`` has a congruence ``V_k``
that diagonalises the factors of all terms at once, ``V_kᵀ F_tk V_k = diag(h_tk)``. Then

    S = (⊗W_k) diag(λ) (⊗W_k)ᵀ,  W_k = V_k⁻ᵀ,   S⁻¹ = (⊗V_k) diag(1/λ) (⊗V_k)ᵀ,
    λ = Σ_t h_t1⊗…⊗h_td,   log det S = Σ log λ + Σ_k (P/n_k) log det C_k,

where ``C_k = W_k W_kᵀ`` is the axis's positive definite *metric* (``V_kᵀ C_k V_k = I``).
Per axis, the factors (each a multiple of a *base* matrix) may have:

* only diagonal bases (identity included): ``V_k = I``, nothing to compute;
* one full symmetric base ``A``: ``eigh(A) = Q diag(e) Qᵀ``, ``V_k = Q`` (``C_k = I``);
* two bases, one positive definite (the metric ``C``; the identity or a positive diagonal is
  preferred, then the later term's): the generalised symmetric-definite problem
  ``A V = C V diag(e)``, solved as ``L⁻¹AL⁻ᵀ = Q diag(e) Qᵀ``, ``V_k = L⁻ᵀQ`` (``C = LLᵀ``).

That covers ``K1⊗…⊗Kd + s²I``, ``K + D1⊗…⊗Dd`` (positive diagonals), ``A + C`` (``C_k``
positive definite), Kronecker sums ``A1⊕…⊕Ad`` (plus ``s²I``) and mixes such as
``C_g⊗K + C_n⊗I``. Cost O(Σ n_k³) once, O(P·Σ n_k) per vector; nothing P×P.

The gradient of ``log det S`` with respect to ``F_tk`` needs no eigenvector derivative:
``∂ log det S/∂F_tk = V_k diag(g_tk) V_kᵀ`` with ``g_tk[a] = Σ_{i: i_k = a} λ_i⁻¹ Π_{j≠k} h_tj[i_j]``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ._errors import UnsupportedSumError
from ._vec import mode_apply, mode_split, to_tensor, unfold

__all__ = ["SUPPORTED_FORMS", "AxisForm", "EigenForm", "FactorKind",
           "analyse_factor", "axis_form", "build_eigen_form", "contract_modes", "factor_apply",
           "quad_grads"]

SUPPORTED_FORMS = (
    "the exact (eigen) route supports sums S = Σ_t F_t1⊗…⊗F_td of symmetric factors where, in "
    "every axis k, each term's factor is a multiple of one of at most two matrices (or any "
    "diagonal matrices), one of them positive definite when there are two: "
    "(a) Kron(K1, …, Kd) + s2 * Kron(I, …, I); "
    "(b) Kron(K1, …, Kd) + Kron(D1, …, Dd) with positive diagonal D_k; "
    "(c) Kron(A1, …, Ad) + Kron(C1, …, Cd) with C_k symmetric positive definite; "
    "(d) Kronecker sums Kron(A, I) + Kron(I, B) (A1⊕…⊕Ad), optionally + s2 * Kron(I, …, I); "
    "and mixes such as Kron(Cg, K) + Kron(Cn, I)"
)


@dataclass(frozen=True)
class FactorKind:
    """One factor ``F = coef · base`` (``base`` scaled to unit max-norm, trace ≥ 0).

    ``kind`` is ``"identity"`` (``base = I``), ``"diagonal"`` (``base`` is its diagonal, a
    vector) or ``"full"`` (a symmetric matrix, or a general one with ``symmetric=False``).
    """

    kind: str
    coef: float
    base: np.ndarray
    symmetric: bool


def analyse_factor(F: np.ndarray) -> FactorKind:
    """Classify a square factor: scaled identity, diagonal, or full (symmetric or not)."""
    n = F.shape[0]
    scale = float(np.max(np.abs(F))) if F.size else 0.0
    if scale == 0.0 or not math.isfinite(scale):
        return FactorKind("full", 1.0, F, bool(np.array_equal(F, F.T)))
    d = np.diagonal(F)
    # diagonal iff it has no more non-zeros than its diagonal (a full matrix fails at once)
    full = n > 1 and (F[0, 1] != 0 or F[1, 0] != 0)
    if not full and np.count_nonzero(F) == np.count_nonzero(d):
        sign = -1.0 if np.sum(d) < 0 else 1.0
        coef = sign * scale
        if np.all(d == d[0]):
            return FactorKind("identity", float(d[0]), np.ones(n), True)
        return FactorKind("diagonal", coef, d / coef, True)
    tol = 64 * np.finfo(np.float64).eps * scale
    symmetric = bool(np.max(np.abs(F - F.T)) <= tol)
    sign = -1.0 if np.trace(F) < 0 else 1.0
    coef = sign * scale
    # eigh reads one triangle, and bases are compared to a tolerance: no symmetrising copy
    return FactorKind("full", coef, F * (1.0 / coef), symmetric)


def _same_base(a: FactorKind, b: FactorKind) -> bool:
    if a.kind != b.kind or a.base.shape != b.base.shape:
        return False
    if a.kind == "identity":
        return True
    return bool(np.max(np.abs(a.base - b.base)) <= 64 * np.finfo(np.float64).eps)


@dataclass(frozen=True)
class AxisForm:
    """The congruence of one axis: ``V`` (None for the identity), ``W = V⁻ᵀ``, the diagonals
    ``h[t]`` of ``Vᵀ F_t V`` for every term, and ``log det C`` of the metric."""

    V: np.ndarray | None
    W: np.ndarray | None
    h: tuple[np.ndarray, ...]
    logdet_metric: float


def _unsupported(k: int, why: str) -> UnsupportedSumError:
    return UnsupportedSumError(f"axis {k}: {why}; {SUPPORTED_FORMS}")


def _positive_definite(b: FactorKind) -> np.ndarray | None:
    """Cholesky factor (or, for diagonal bases, the square-root diagonal) if ``b`` is positive
    definite, else None."""
    if b.kind == "identity":
        return np.ones(b.base.shape[0])
    if b.kind == "diagonal":
        return np.sqrt(b.base) if np.all(b.base > 0) else None
    try:  # NumPy's LAPACK throughout: mixing SciPy's BLAS pool with NumPy's costs more than the work
        return np.linalg.cholesky(b.base)
    except np.linalg.LinAlgError:
        return None


def axis_form(kinds: Sequence[FactorKind], k: int) -> AxisForm:
    """The congruence that diagonalises ``kinds`` (one factor per term) of axis ``k``."""
    for t, f in enumerate(kinds):
        if not f.symmetric:
            raise _unsupported(k, f"terms[{t}].factors[{k}] is not symmetric")
    n = kinds[0].base.shape[0]
    if all(f.kind != "full" for f in kinds):  # diagonal matrices: V = I
        h = tuple(f.coef * (f.base if f.kind == "diagonal" else np.ones(n)) for f in kinds)
        return AxisForm(None, None, h, 0.0)
    bases: list[FactorKind] = []
    which: list[int] = []
    for f in kinds:
        j = next((i for i, b in enumerate(bases) if _same_base(b, f)), None)
        if j is None:
            bases.append(f)
            j = len(bases) - 1
        which.append(j)
    if len(bases) > 2:
        raise _unsupported(k, f"the factors are multiples of {len(bases)} different matrices")
    if len(bases) == 1:
        e, Q = np.linalg.eigh(bases[0].base)
        return AxisForm(Q, Q, tuple(f.coef * e for f in kinds), 0.0)
    return _generalised(kinds, bases, which, k)


def _generalised(kinds, bases, which, k) -> AxisForm:
    """Two bases: the positive definite one (identity, diagonal, else the later) is the metric."""
    order = sorted(range(2), key=lambda i: ({"identity": 0, "diagonal": 1}.get(bases[i].kind, 2),
                                            -i))
    for ci in order:
        L = _positive_definite(bases[ci])
        if L is not None:
            break
    else:
        raise _unsupported(k, "neither of the two matrices in this axis is positive definite "
                              "(up to sign)")
    A = bases[1 - ci].base
    if bases[ci].kind == "identity":  # C = I: an orthogonal eigenbasis, V = W = Q
        e, Q = np.linalg.eigh(A)
        V = W = Q
        logdet_c = 0.0
    elif L.ndim == 1:  # metric diagonal: C = diag(L²)
        e, Q = np.linalg.eigh((A / L[:, None]) / L[None, :])
        V = Q / L[:, None]
        W = Q * L[:, None]
        logdet_c = 2.0 * float(np.sum(np.log(L)))
    else:
        Li = np.linalg.inv(L)
        M = Li @ A @ Li.T
        e, Q = np.linalg.eigh(0.5 * (M + M.T))
        V = Li.T @ Q
        W = L @ Q
        logdet_c = 2.0 * float(np.sum(np.log(np.diagonal(L))))
    ones = np.ones(A.shape[0])
    h = tuple(f.coef * (ones if w == ci else e) for f, w in zip(kinds, which, strict=True))
    return AxisForm(V, W, h, logdet_c)


@dataclass(frozen=True)
class EigenForm:
    r"""``S = (⊗W_k) diag(λ) (⊗W_k)ᵀ`` and ``S⁻¹ = (⊗V_k) diag(1/λ) (⊗V_k)ᵀ``.

    Attributes
    ----------
    dims : tuple of int
        ``(n_1, …, n_d)``.
    V, W : tuple of ndarray
        Per axis, ``V_k`` and ``W_k = V_k⁻ᵀ`` (``n_k×n_k``); ``V_k = W_k`` is orthogonal for
        eigh axes and the identity for diagonal ones.
    h : tuple of tuple of ndarray
        ``h[t][k]``: the diagonal of ``V_kᵀ F_tk V_k``.
    lam : ndarray of grid shape
        ``Σ_t h[t][1]⊗…⊗h[t][d]``: the eigenvalues of the pencil ``(S, ⊗C_k)``, whose signs are
        those of the eigenvalues of ``S`` (Sylvester's law of inertia).
    logdet_metric : float
        ``Σ_k (P/n_k) log det C_k``, so ``log |det S| = Σ log |λ| + logdet_metric``.
    """

    dims: tuple[int, ...]
    V: tuple[np.ndarray, ...]
    W: tuple[np.ndarray, ...]
    identity: tuple[bool, ...]
    h: tuple[tuple[np.ndarray, ...], ...]
    lam: np.ndarray
    logdet_metric: float

    @property
    def is_positive_definite(self) -> bool:
        return bool(np.all(self.lam > 0))

    @property
    def logdet(self) -> float:
        """``log det S`` (meaningful when ``S`` is positive definite)."""
        return float(np.sum(np.log(self.lam))) + self.logdet_metric

    def slogdet(self) -> tuple[float, float]:
        """``(sign, log |det S|)``; ``(0.0, -inf)`` when some ``λ`` is zero."""
        if not np.all(self.lam):
            return 0.0, -math.inf
        sign = -1.0 if np.count_nonzero(self.lam < 0) % 2 else 1.0
        return sign, float(np.sum(np.log(np.abs(self.lam)))) + self.logdet_metric

    def _modes(self, Y: np.ndarray, mats: Sequence[np.ndarray], trans: bool) -> np.ndarray:
        d = len(self.dims)
        t = to_tensor(Y, self.dims)
        for k, M in enumerate(mats):
            if not self.identity[k]:
                t = mode_apply(t, M.T if trans else M, k, d)
        return t.reshape(Y.shape)

    def to_eig(self, Y: np.ndarray) -> np.ndarray:
        """``(⊗V_k)ᵀ y`` for every row of ``Y`` (..., P)."""
        return self._modes(Y, self.V, True)

    def from_eig(self, Z: np.ndarray) -> np.ndarray:
        """``(⊗V_k) z`` for every row of ``Z`` (..., P)."""
        return self._modes(Z, self.V, False)

    def half_apply(self, Z: np.ndarray) -> np.ndarray:
        """``(⊗W_k) diag(√λ) z`` per row: maps standard normal rows to ``N(0, S)``."""
        return self._modes(Z * np.sqrt(self.lam).ravel(), self.W, False)

    def solve_rows(self, Y: np.ndarray) -> np.ndarray:
        """``S⁻¹ y`` for every row of ``Y``."""
        return self.from_eig(self.to_eig(Y) / self.lam.ravel())

    def inv_quad(self, Y: np.ndarray) -> np.ndarray:
        """``yᵀ S⁻¹ y`` for every row of ``Y`` (shape ``Y.shape[:-1]``)."""
        Z = self.to_eig(Y)
        return np.einsum("...i,...i->...", Z / self.lam.ravel(), Z)

    def whiten(self, W: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(Z̃, q)``: ``Z̃ = diag(1/λ)(⊗V_k)ᵀ w`` per row (so ``S⁻¹w = (⊗V_k) z̃``) and
        ``q = wᵀS⁻¹w``, for rows ``W`` (N, P)."""
        Z = self.to_eig(W)
        Zl = Z / self.lam.ravel()
        return Zl, np.einsum("ij,ij->i", Zl, Z)

    def quad_grads(self, Zl: np.ndarray, c: np.ndarray | None = None,
                   per_obs: bool = False) -> tuple[tuple[tuple[np.ndarray, ...], ...], np.ndarray]:
        r"""``(G, U)``: ``G[t][k] = Σ_i c_i ∂(u_iᵀ S u_i)/∂F_tk`` and ``U = S⁻¹W`` (rows), from
        ``Z̃`` of :meth:`whiten`, in the eigenbasis.

        With ``B_k = Z̃ ×_k V_k``: ``u ×_{j≠k} F_tj = Z̃ ×_k V_k ×_{j≠k} W_j diag(h_tj)`` and
        ``(⊗V_j)ᵀ(⊗W_j) = I``, so ``G[t][k] = B_k(k) diag(⊗_{j≠k} h_tj) B_k(k)ᵀ``: one mode
        product per axis (shared by every term) and one weighted Gram (a symmetric rank-k
        update when the weights are non-negative) per factor.
        """
        d, N = len(self.dims), Zl.shape[0]
        T = Zl.reshape(N, *self.dims)
        B = [T if self.identity[k] else mode_apply(T, self.V[k], k, d) for k in range(d)]
        U = B[0]
        for j in range(1, d):
            if not self.identity[j]:
                U = mode_apply(U, self.V[j], j, d)
        cw = np.ones(N) if c is None else c
        out = []
        for ht in self.h:
            row = []
            for k in range(d):
                w = cw.reshape(N, *([1] * d))
                for j in range(d):
                    if j != k:
                        shape = [1] * (d + 1)
                        shape[j + 1] = self.dims[j]
                        w = w * ht[j].reshape(shape)
                row.append(_weighted_gram(B[k], w, k, d, per_obs))
            out.append(tuple(row))
        return tuple(out), U.reshape(N, -1)

    def eig_grams(self, Zl: np.ndarray, c: np.ndarray,
                  terms: Sequence[int]) -> list[list[np.ndarray]]:
        r"""``Σ_i c_i Z̃_i(k) diag(⊗_{j≠k} h_tj) Z̃_i(k)ᵀ`` for the terms ``t`` in ``terms`` and
        every axis ``k``, in the eigenbasis (rows ``Zl`` (N, P)): :meth:`quad_grads` without
        the mode products. Weights of either sign (kernels' tiny negative eigenvalues, signed
        ``c``) are symmetric rank updates with ``|w|`` minus twice the few negative ones; the
        last axis in one update over the batch, the others one per row (views, no transposes
        of the batch); :meth:`sandwich` maps a sum of them to ``∂/∂F_tk``."""
        d, N = len(self.dims), Zl.shape[0]
        out = [[np.zeros((n, n)) for n in self.dims] for _ in terms]
        rc, sc = np.sqrt(np.abs(c)), np.sign(c)
        for acc, t in zip(out, terms, strict=True):
            for k in range(d):
                w: np.ndarray = np.ones(())  # ⊗_{j≠k} h_tj over the other axes, in order
                for j in range(d):
                    if j != k:
                        w = np.multiply.outer(w, self.h[t][j])
                w = w.reshape(-1)
                rw, sw = np.sqrt(np.abs(w)), np.sign(w)
                if k == d - 1:  # rows of Zl.reshape(N·rest, n_k): one update for the batch
                    A = Zl.reshape(-1, self.dims[k])
                    acc[k] += _signed_gram(A, np.outer(rc, rw).reshape(-1),
                                           np.outer(sc, sw).reshape(-1), rows=True)
                    continue
                if Zl[0].size <= _ROW_GRAM_MIN:  # small grids: one update on a transposed copy
                    A = unfold(Zl.reshape(N, *self.dims), k, d)  # (n_k, N·rest)
                    acc[k] += _signed_gram(A, np.outer(rc, rw).reshape(-1),
                                           np.outer(sc, sw).reshape(-1), rows=False)
                    continue
                for i in range(N):
                    A = (Zl[i].reshape(self.dims[0], -1) if k == 0
                         else unfold(Zl[i].reshape(1, *self.dims), k, d))
                    acc[k] += _signed_gram(A, rc[i] * rw, sc[i] * sw, rows=False)
        return out

    def sandwich(self, k: int, G: np.ndarray) -> np.ndarray:
        """``V_k G V_kᵀ``: an eigenbasis Gram of axis ``k`` in the factor basis."""
        return G if self.identity[k] else self.V[k] @ G @ self.V[k].T

    def logdet_grads(self, scale: float = 1.0) -> tuple[tuple[np.ndarray, ...], ...]:
        """``G[t][k] = scale · ∂ log det S / ∂F_tk = V_k diag(g_tk) V_kᵀ`` (O(P·d²) + matrix
        products per factor)."""
        d = len(self.dims)
        R = scale / self.lam
        out = []
        for ht in self.h:
            row = []
            for k in range(d):
                w = R
                for j in range(d):
                    if j != k:
                        shape = [1] * d
                        shape[j] = self.dims[j]
                        w = w * ht[j].reshape(shape)
                g = w.sum(axis=tuple(j for j in range(d) if j != k)) if d > 1 else w
                if self.identity[k]:
                    row.append(np.diag(g))
                elif np.all(g >= 0):  # Y Yᵀ: NumPy takes the half-cost symmetric product
                    Y = self.V[k] * np.sqrt(g)
                    row.append(Y @ Y.T)
                else:
                    row.append((self.V[k] * g) @ self.V[k].T)
            out.append(tuple(row))
        return tuple(out)


def _weighted_gram(B: np.ndarray, w: np.ndarray, k: int, d: int, per_obs: bool) -> np.ndarray:
    """``Σ B_(k) diag(w) B_(k)ᵀ`` over the batch and the other modes (``w`` broadcasts against
    ``B`` of shape (N, n_1, …, n_d) with mode ``k`` of size 1); per observation if asked."""
    if per_obs:
        return contract_modes(B * w, B, k, d, True)
    if np.all(w >= 0):
        X = unfold(B * np.sqrt(w), k, d)
        return X @ X.T
    return unfold(B * w, k, d) @ unfold(B, k, d).T


#: Grids up to this size take the batched Gram through a transposed copy (a row at a time is
#: call overhead there); larger ones a symmetric update per row on views.
_ROW_GRAM_MIN = 2**16


def _signed_gram(A: np.ndarray, root: np.ndarray, sign: np.ndarray, rows: bool) -> np.ndarray:
    """``Σ_m sign_m root_m² a_m a_mᵀ`` over the columns (``rows=False``) or rows of ``A``: one
    symmetric rank update with ``|w|``, minus twice the update of the negative ones (those
    above rounding)."""
    X = A * (root[:, None] if rows else root[None, :])
    G = X.T @ X if rows else X @ X.T
    # negative weights below 64 ulps of the largest (a kernel's rounding-level eigenvalues)
    # change G by less than the rounding of the update itself: no correction for them
    w2 = root * root
    neg = np.flatnonzero((sign < 0) & (w2 > 64 * np.finfo(np.float64).eps * float(np.max(w2))))
    if neg.size:
        Xn = X[neg] if rows else X[:, neg]
        G -= 2.0 * (Xn.T @ Xn if rows else Xn @ Xn.T)
    return G


def build_eigen_form(kinds: Sequence[Sequence[FactorKind]],
                     dims: Sequence[int]) -> EigenForm:
    """The eigen form from the factor kinds ``kinds[t][k]`` (``UnsupportedSumError``)."""
    d = len(dims)
    axes = [axis_form([row[k] for row in kinds], k) for k in range(d)]
    n_terms = len(kinds)
    h = tuple(tuple(axes[k].h[t] for k in range(d)) for t in range(n_terms))
    lam = np.zeros(tuple(dims))
    for ht in h:
        term = ht[0]
        for v in ht[1:]:
            term = np.multiply.outer(term, v)
        lam = lam + term
    P = math.prod(dims)
    logdet_metric = sum(P / n * ax.logdet_metric for n, ax in zip(dims, axes, strict=True))
    eye = [ax.V is None for ax in axes]
    V = tuple(np.eye(n) if ax.V is None else ax.V for n, ax in zip(dims, axes, strict=True))
    W = tuple(np.eye(n) if ax.W is None else ax.W for n, ax in zip(dims, axes, strict=True))
    return EigenForm(tuple(dims), V, W, tuple(eye), h, lam, float(logdet_metric))


def factor_apply(t: np.ndarray, f: FactorKind, F: np.ndarray, k: int, d: int) -> np.ndarray:
    """Mode-``k`` product of ``t`` with the factor ``F`` (``f`` its kind): free for scaled
    identities, a broadcast for diagonals, a GEMM otherwise."""
    if f.kind == "identity":
        return t * f.coef
    if f.kind == "diagonal":
        shape = [1] * d
        shape[k] = F.shape[0]
        return t * np.diagonal(F).reshape(shape)
    return mode_apply(t, F, k, d)


def quad_grads(terms: Sequence[Sequence[np.ndarray]], kinds: Sequence[Sequence[FactorKind]],
               dims: Sequence[int], U: np.ndarray, c: np.ndarray | None = None,
               per_obs: bool = False,
               V: np.ndarray | None = None) -> tuple[tuple[np.ndarray, ...], ...]:
    r"""``G[t][k] = Σ_i c_i ∂(u_iᵀ S v_i)/∂F_tk`` with the rows ``u_i`` of ``U`` and ``v_i`` of
    ``V`` (default ``U``; shape (N, P)) fixed: ``unfold_k(U) unfold_k(V ×_{j≠k} F_tj)ᵀ``;
    ``per_obs``: shape (N, n_k, n_k).

    So for ``q = wᵀS⁻¹w`` and ``u = S⁻¹w``: ``∂q/∂F_tk = −quad_grads(…, u)``.
    """
    d = len(dims)
    T = to_tensor(U, dims)
    Tv = T if V is None else to_tensor(V, dims)
    Tc = T if c is None else T * c.reshape(-1, *([1] * d))
    out = []
    for F_t, kind_t in zip(terms, kinds, strict=True):
        row = []
        for k in range(d):
            Y = Tv
            for j in range(d):
                if j != k:
                    Y = factor_apply(Y, kind_t[j], F_t[j], j, d)
            row.append(contract_modes(Tc, Y, k, d, per_obs))
        out.append(tuple(row))
    return tuple(out)


def contract_modes(A: np.ndarray, B: np.ndarray, k: int, d: int, per_obs: bool) -> np.ndarray:
    """``unfold_k(A) unfold_k(B)ᵀ`` for tensors (N, n_1, …, n_d): summed over the batch, or per
    observation (N, n_k, n_k)."""
    if not per_obs:
        return unfold(A, k, d) @ unfold(B, k, d).T
    n_obs = A.shape[0]
    before, nk, after = mode_split(A.shape[1:], k, d)
    return np.einsum("nbia,nbja->nij", A.reshape(n_obs, before, nk, after),
                     B.reshape(n_obs, before, nk, after))
