"""The d-factor nearest Kronecker problem (d >= 3): best rank-1 approximation of a tensor.

``min ‖M - A1 ⊗ ... ⊗ Ad‖_F`` is ``min ‖T - σ a1 ∘ ... ∘ ad‖`` for the rearranged tensor
``T[(i1, j1), ..., (id, jd)] = M[(i1..id), (j1..jd)]`` and ``a_k = vec(A_k)/‖A_k‖``. It has no
SVD solution; we use the higher-order power method (rank-1 ALS, HOPM): each sweep sets
``a_k ∝ T ×_{l≠k} conj(a_l)``, which never decreases ``σ = |<T, a1∘...∘ad>|``. The start is
the sequential ("peeling") SVD solution: ``M ≈ A1 ⊗ Rest``, then ``Rest ≈ A2 ⊗ Rest'``, ...,
so the result is never worse than peeling. Linear structures are imposed exactly by working
in the coordinates of orthonormal bases ``Q_k`` (``a_k = Q_k c_k``).

Two representations of ``T``: a dense d-way array, or CP form ``T = Σ_j ∘_k F_k[:, j]``
(a sum of Kronecker terms, never expanded).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._kpsvd_core import DenseR, top_svd


@dataclass
class HOPMOut:
    vecs: list[np.ndarray]  # unit vectors a_k (full coordinates, length m_k*n_k)
    sigma: float
    n_iter: int
    converged: bool


def _mode_mul(T: np.ndarray, k: int, Mt: Any) -> np.ndarray:
    """Multiply mode ``k`` of ``T`` by ``Mt`` (shape (new, dim_k); ndarray or sparse)."""
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
    out = top_svd(DenseR(mat), 1, method="auto", rng=rng)
    return out.U[:, 0]


def hopm_dense(T: np.ndarray, *, nonneg: bool, tol: float, max_iter: int,
               rng: np.random.Generator) -> HOPMOut:
    """HOPM on a dense tensor (already in structure coordinates)."""
    d = T.ndim
    dims = T.shape
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
    converged = False
    n_iter = 0
    for n_iter in range(1, max_iter + 1):  # noqa: B007
        old = sigma
        for k in range(d):
            vecs[k], sigma = _unit(_contract_except(T, vecs, k))
        if abs(sigma - old) <= tol * sigma:
            converged = True
            break
    return HOPMOut(vecs, sigma, n_iter, converged)


def hopm_cp(Fs: Sequence[np.ndarray], *, nonneg: bool, tol: float, max_iter: int) -> HOPMOut:
    """HOPM on ``T = Σ_j ∘_k F_k[:, j]`` (each ``F_k`` of shape (dim_k, K)), never expanded.

    Each contraction costs ``O(K·Σ dim_k)``; the peeling start uses Gram matrices
    (``K×K``) and thin QRs, ``O(K²·Σ dim_k)``.
    """
    d = len(Fs)
    K = Fs[0].shape[1]
    grams = [F.T @ F.conj() for F in Fs]  # (K, K): F^T conj(F)
    vecs: list[np.ndarray] = []
    c = np.ones(K, dtype=np.result_type(*Fs))
    for k in range(d - 1):
        H = np.ones((K, K), dtype=grams[0].dtype)
        for j in range(k + 1, d):
            H = H * grams[j]
        Dc = c[:, None] * H * c.conj()[None, :]  # T_(k) T_(k)^H = F_k Dc F_k^H
        Q, Rf = np.linalg.qr(Fs[k])
        S = Rf @ Dc @ Rf.conj().T
        S = 0.5 * (S + S.conj().T)
        _, E = np.linalg.eigh(S)
        u = Q @ E[:, -1]
        if nonneg:
            u = np.abs(u)
        vecs.append(u)
        c = c * (Fs[k].T @ u.conj())
    last, sigma = _unit(Fs[-1] @ c)
    vecs.append(last)
    if sigma == 0.0:
        return HOPMOut(vecs, 0.0, 0, True)

    def contract(k: int) -> np.ndarray:
        w = np.ones(K, dtype=c.dtype)
        for l in range(d):
            if l != k:
                w = w * (Fs[l].T @ vecs[l].conj())
        return Fs[k] @ w

    converged = False
    n_iter = 0
    for n_iter in range(1, max_iter + 1):  # noqa: B007
        old = sigma
        for k in range(d):
            vecs[k], sigma = _unit(contract(k))
        if abs(sigma - old) <= tol * sigma:
            converged = True
            break
    return HOPMOut(vecs, sigma, n_iter, converged)


def cp_sqnorm(Fs: Sequence[np.ndarray]) -> float:
    """``‖Σ_j ∘_k F_k[:, j]‖²`` from the Hadamard product of the factor Gram matrices."""
    H = Fs[0].conj().T @ Fs[0]
    for F in Fs[1:]:
        H = H * (F.conj().T @ F)
    return float(np.sum(H).real)
