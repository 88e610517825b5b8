"""The d-factor nearest Kronecker problem (d >= 3): best rank-1 approximation of a tensor.

``min ‖M - A1 ⊗ ... ⊗ Ad‖_F`` is ``min ‖T - σ a1 ∘ ... ∘ ad‖`` for the rearranged tensor
``T[(i1, j1), ..., (id, jd)] = M[(i1..id), (j1..jd)]`` and ``a_k = vec(A_k)/‖A_k‖``. It has no
SVD solution; we use the higher-order power method (rank-1 ALS, HOPM): each sweep sets
``a_k ∝ T ×_{l≠k} conj(a_l)``, which never decreases ``σ = |<T, a1∘...∘ad>|``. It is run from
two starts and the larger ``σ`` is kept: the sequential ("peeling") SVD solution
(``M ≈ A1 ⊗ Rest``, then ``Rest ≈ A2 ⊗ Rest'``, ...) and the HOSVD start (``a_k`` = the
leading left singular vector of the mode-k unfolding ``T_(k)``). The result is a local
maximum, never worse than either start. The power method stops on the factors (see
:func:`_power`), not on ``σ``, which is flat at the optimum. Linear structures are imposed
exactly by working in the coordinates of orthonormal bases ``Q_k`` (``a_k = Q_k c_k``).

Two representations of ``T``: a dense d-way array, or CP form ``T = Σ_j ∘_k F_k[:, j]``
(a sum of Kronecker terms, never expanded).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .operators import DenseR
from .svd import SVDOptions, top_svd


@dataclass
class HOPMOut:
    vecs: list[np.ndarray]  # unit vectors a_k (full coordinates, length m_k*n_k)
    sigma: float
    n_iter: int
    converged: bool


def mode_product(T: np.ndarray, k: int, Mt: Any) -> np.ndarray:
    """The mode-``k`` product ``T ×_k Mt``: every mode-``k`` fibre ``t`` becomes ``Mt @ t``.

    ``Mt`` has shape ``(new, dim_k)`` (ndarray or scipy sparse, e.g. a structure basis
    transposed); the result has ``dim_k`` replaced by ``new``. Cost ``O(new·size(T))``.
    """
    Tk = np.moveaxis(T, k, 0)
    shp = Tk.shape
    out = np.asarray(Mt @ Tk.reshape(shp[0], -1))
    return np.moveaxis(out.reshape(out.shape[0], *shp[1:]), 0, k)


def _contract_except(T: np.ndarray, vecs: Sequence[np.ndarray], k: int) -> np.ndarray:
    """``T ×_{l≠k} conj(a_l)`` as a vector of length ``dim_k``."""
    t = T
    for l in range(T.ndim - 1, -1, -1):
        if l != k:
            t = np.tensordot(t, vecs[l].conj(), axes=([l], [0]))
    return t


def _unit(x: np.ndarray) -> tuple[np.ndarray, float]:
    n = float(np.linalg.norm(x))
    if n == 0.0:
        return x, 0.0
    return x / n, n


def _top_left(mat: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    out = top_svd(DenseR(mat), 1, SVDOptions(rng))
    return out.U[:, 0]


def _align(new: np.ndarray, old: np.ndarray) -> float:
    """``‖new - c·old‖`` for the unit phase ``c`` that best aligns the two unit vectors."""
    ip = np.vdot(old, new)
    c = ip / abs(ip) if ip != 0 else 1.0
    return float(np.linalg.norm(new - c * old))


def _power(contract, vecs: list[np.ndarray], sigma: float, *, tol: float, max_iter: int,
           floor: float) -> HOPMOut:
    """HOPM sweeps from ``vecs``; ``contract(k, vecs)`` is ``T ×_{l≠k} conj(a_l)``.

    Stopping rule, on the factors: with ``δ_n = max_k ‖a_k^(n) - a_k^(n-1)‖`` (phases aligned)
    and the observed linear rate ``ρ = δ_n / δ_{n-1}``, the distance to the limit is about
    ``δ_n·ρ/(1-ρ)``; the run has converged when that is ``<= tol`` (or ``δ_n <= floor``, the
    rounding level). ``σ`` is flat at the optimum (its change is ``O(δ²)``), so it is not used.
    """
    d = len(vecs)
    converged = False
    n_iter = 0
    prev = math.inf
    for n_iter in range(1, max_iter + 1):
        delta = 0.0
        for k in range(d):
            new, sigma = _unit(contract(k, vecs))
            if sigma == 0.0:
                return HOPMOut(vecs, 0.0, n_iter, True)
            delta = max(delta, _align(new, vecs[k]))
            vecs[k] = new
        if delta <= floor:
            converged = True
            break
        rho = delta / prev if math.isfinite(prev) and prev > 0 else 1.0
        prev = delta
        if rho < 1.0 and delta * rho / (1.0 - rho) <= tol:
            converged = True
            break
    return HOPMOut(vecs, sigma, n_iter, converged)


def _best(runs: list[HOPMOut]) -> HOPMOut:
    """The run with the largest σ (the first on ties)."""
    best = runs[0]
    for r in runs[1:]:
        if r.sigma > best.sigma * (1.0 + 1e-13):
            best = r
    return best


def _floor(dims: Sequence[int]) -> float:
    return 64.0 * np.finfo(float).eps * math.sqrt(max(dims))


def hopm_dense(T: np.ndarray, *, nonneg: bool, tol: float, max_iter: int,
               rng: np.random.Generator) -> HOPMOut:
    """HOPM on a dense tensor (already in structure coordinates), from the peeling and the
    HOSVD starts; the larger σ is kept."""
    d = T.ndim
    dims = T.shape
    starts = []
    # peeling start
    vecs: list[np.ndarray] = []
    cur = T
    for k in range(d - 1):
        u = _top_left(cur.reshape(dims[k], -1), rng)
        if nonneg:
            u = np.abs(u)
        vecs.append(u)
        cur = np.tensordot(u.conj(), cur, axes=([0], [0]))
    last, sigma = _unit(np.asarray(cur))
    vecs.append(last)
    if sigma == 0.0:
        return HOPMOut(vecs, 0.0, 0, True)
    starts.append(vecs)
    # HOSVD start: the leading left singular vector of every unfolding
    hv = []
    for k in range(d):
        u = _top_left(np.moveaxis(T, k, 0).reshape(dims[k], -1), rng)
        hv.append(np.abs(u) if nonneg else u)
    starts.append(hv)

    def contract(k, vs):
        return _contract_except(T, vs, k)

    runs = []
    for vs in starts:
        _, s0 = _unit(contract(0, vs))
        runs.append(_power(contract, list(vs), s0, tol=tol, max_iter=max_iter,
                           floor=_floor(dims)))
    return _best(runs)


def hopm_cp(Fs: Sequence[np.ndarray], *, nonneg: bool, tol: float, max_iter: int) -> HOPMOut:
    """HOPM on ``T = Σ_j ∘_k F_k[:, j]`` (each ``F_k`` of shape (dim_k, K)), never expanded.

    Each contraction costs ``O(K·Σ dim_k)``; the peeling and HOSVD starts use Gram matrices
    (``K×K``) and thin QRs, ``O(K²·Σ dim_k)``. Same starts and stopping rule as
    :func:`hopm_dense`.
    """
    d = len(Fs)
    K = Fs[0].shape[1]
    grams = [F.T @ F.conj() for F in Fs]  # (K, K): F^T conj(F)
    dt = np.result_type(*Fs)

    def top_left(k: int, c: np.ndarray, others: Sequence[int]) -> np.ndarray:
        """Leading left singular vector of ``F_k diag(c) (⊙_{l in others} F_l)^T``."""
        H = np.ones((K, K), dtype=grams[0].dtype)
        for j in others:
            H = H * grams[j]
        Dc = c[:, None] * H * c.conj()[None, :]  # T_(k) T_(k)^H = F_k Dc F_k^H
        Q, Rf = np.linalg.qr(Fs[k])
        S = Rf @ Dc @ Rf.conj().T
        S = 0.5 * (S + S.conj().T)
        _, E = np.linalg.eigh(S)
        u = Q @ E[:, -1]
        return np.abs(u) if nonneg else u

    vecs: list[np.ndarray] = []
    c = np.ones(K, dtype=dt)
    for k in range(d - 1):
        u = top_left(k, c, range(k + 1, d))
        vecs.append(u)
        c = c * (Fs[k].T @ u.conj())
    last, sigma = _unit(Fs[-1] @ c)
    vecs.append(last)
    if sigma == 0.0:
        return HOPMOut(vecs, 0.0, 0, True)
    ones = np.ones(K, dtype=dt)
    hv = [top_left(k, ones, [l for l in range(d) if l != k]) for k in range(d)]

    def contract(k: int, vs) -> np.ndarray:
        w = np.ones(K, dtype=dt)
        for l in range(d):
            if l != k:
                w = w * (Fs[l].T @ vs[l].conj())
        return Fs[k] @ w

    floor = _floor([F.shape[0] for F in Fs])
    runs = []
    for vs in (vecs, hv):
        _, s0 = _unit(contract(0, vs))
        runs.append(_power(contract, list(vs), s0, tol=tol, max_iter=max_iter, floor=floor))
    return _best(runs)


def cp_sqnorm(Fs: Sequence[np.ndarray]) -> float:
    """``‖Σ_j ∘_k F_k[:, j]‖²`` from the Hadamard product of the factor Gram matrices."""
    H = Fs[0].conj().T @ Fs[0]
    for F in Fs[1:]:
        H = H * (F.conj().T @ F)
    return float(np.sum(H).real)
