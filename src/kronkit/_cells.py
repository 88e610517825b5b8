r"""Exact answers on incomplete grids and with per-cell corrections (REFERENCES §6).

``S̄`` has an exact eigen form (:mod:`kronkit._sum_eig`). The operator of interest is

    S_OO = (S̄ + E_C diag(δ) E_Cᵀ)_OO,

the observed block (cells ``O``; ``M`` missing) of ``S̄`` with a diagonal correction ``δ_c ≠ 0``
on a few observed cells ``C``. With the ``k = |M| + |C|`` cells ``U = M ∪ C``, ``Z = S̄⁻¹E_U`` and
the ``k×k`` *capacitance* ``H = Δ̃⁻¹ + (S̄⁻¹)_UU`` (``Δ̃⁻¹`` is 0 on ``M`` and ``1/δ_c`` on ``C``),

    S_OO⁻¹ = [S̄⁻¹ − Z H⁻¹ Zᵀ]_OO        (the bracket vanishes on the rows and columns of M)
    log det S_OO = log det S̄ + Σ_C log δ_c + log det H,

the Woodbury identity for ``C`` and the complementary-block (Schur) identity
``log det S_OO = log det S + log det (S⁻¹)_MM`` for ``M`` in one (``δ_M → ∞``). ``S_OO`` is
positive definite iff ``H`` has exactly as many negative eigenvalues as ``δ`` has (Haynsworth
inertia additivity). Gradients come from the same objects: with ``G = S̄⁻¹ − Z H⁻¹ Zᵀ``,
``∂ log det S_OO/∂S̄ = G`` and ``∂(wᵀS_OO⁻¹w)/∂S̄ = −x̂x̂ᵀ`` (``x̂ = G ŵ``), so the factor
gradients are those of :class:`~kronkit._sum_eig.EigenForm` minus a low-rank part: ``k``
columns ``Y = Z L⁻ᵀ`` (``H = LLᵀ``), formed chunk by chunk in the eigenbasis, where the columns of
``Z`` are ``Λ⁻¹(⊗_k V_k[i_k, :])`` (rank one before ``Λ⁻¹``).

Cost: ``(S̄⁻¹)_UU`` is ``O(P·k²)`` (``O(k²·Σn_k)`` for one Kronecker term, whose ``Λ`` is
separable), the factorisation of ``H`` ``O(k³)``, a solve two eigen-form solves plus ``O(k²)``,
the log-det gradient ``O(P·k·(k + Σn_k))`` in GEMMs; memory ``O(k² + P·chunk)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import scipy.linalg

from ._errors import NotPositiveDefiniteError, SingularFactorError
from ._sum_eig import EigenForm

__all__ = ["CHUNK_BYTES", "CellForm", "cell_rows", "inverse_block", "khatri_rao_t", "rank_sum"]

#: Working memory of one chunk of P-long columns (log-det gradients, capacitance blocks).
CHUNK_BYTES = 128 * 2**20


def cell_rows(E: EigenForm, cells: np.ndarray) -> tuple[np.ndarray, ...]:
    """``R_k = V_k[i_k(u), :]`` (k × n_k) for the flat cells ``u``: ``(⊗V_k)ᵀ e_u = ⊗_k R_k[u]``."""
    idx = np.unravel_index(cells, E.dims)
    return tuple(np.ascontiguousarray(E.V[a][idx[a], :]) for a in range(len(E.dims)))


def _chunk(E: EigenForm, k: int) -> int:
    return max(1, min(k, CHUNK_BYTES // (8 * max(1, math.prod(E.dims)))))


def khatri_rao_t(rows: Sequence[np.ndarray]) -> np.ndarray:
    """``KRᵀ`` (Π n × k): the transposed row-wise Khatri–Rao product of the row sets ``rows``
    (each k × n), ``KR[u] = rows[0][u] ⊗ rows[1][u] ⊗ …``."""
    k = rows[0].shape[0]
    KR = rows[0]
    for Rk in rows[1:]:
        KR = (KR[:, :, None] * Rk[:, None, :]).reshape(k, -1)
    return np.ascontiguousarray(KR.T)


def rank_sum(E: EigenForm, R: Sequence[np.ndarray], C: np.ndarray,
             out: np.ndarray | None = None, lead: Sequence[int] | None = None,
             KRt: np.ndarray | None = None) -> np.ndarray:
    """``Λ⁻¹ ∘ Σ_u C[u, j] ⊗_k R_k[u]`` for every column ``j`` of ``C`` (k, c): shape (c, P).

    That is ``Λ⁻¹(⊗V_k)ᵀ E_U C``, the eigen coordinates of ``S̄⁻¹E_U C``: per column one GEMM
    ``(KRᵀ diag(C[:, j])) R_d`` of ``O(P·k)`` (``KR`` the Khatri–Rao product of the first d−1 row
    sets); ``lead[j]``: only the first ``lead[j]`` rows of column ``j`` are non-zero (a
    triangular ``C`` halves the work)."""
    k, c = C.shape
    P = math.prod(E.dims)
    out = np.empty((c, P)) if out is None else out[:c]
    if c == 0:
        return out
    if len(R) == 1:
        np.matmul(C.T, R[0], out=out)
    else:
        KRt = khatri_rao_t(R[:-1]) if KRt is None else KRt
        tmp = np.empty_like(KRt)
        view = out.reshape(c, KRt.shape[0], -1)
        for j in range(c):
            m = k if lead is None else int(lead[j])
            np.multiply(KRt[:, :m], C[:m, j], out=tmp[:, :m])
            np.matmul(tmp[:, :m], R[-1][:m], out=view[j])
    out /= E.lam.reshape(1, -1)
    return out


def inverse_block(E: EigenForm, R: Sequence[np.ndarray]) -> np.ndarray:
    """``(S̄⁻¹)_UU`` (k × k) from the cell rows ``R``: ``XᵀX`` with ``X[p, u] = Π_k R_k[u, p_k]/√λ_p``
    (``S̄`` positive definite), one symmetric rank update per chunk of grid rows."""
    k = R[0].shape[0]
    if len(E.h) == 1:  # one Kronecker term: 1/λ = ⊗ 1/h_k, the block is a Hadamard product
        H = np.ones((k, k))
        for Rk, hk in zip(R, E.h[0], strict=True):
            H *= (Rk / hk) @ Rk.T
        return H
    if len(R) == 1:
        return (R[0] / E.lam.reshape(1, -1)) @ R[0].T
    restT = khatri_rao_t(R[1:])  # the row sets of axes 2..d: (P / n_1, k)
    R0T = np.ascontiguousarray(R[0].T)
    inv_sqrt = 1.0 / np.sqrt(E.lam.reshape(E.dims[0], -1))
    H = np.zeros((k, k))
    step = max(1, CHUNK_BYTES // (8 * k * restT.shape[0]))
    buf = np.empty((min(step, E.dims[0]), *restT.shape))
    for i0 in range(0, E.dims[0], step):
        m = min(E.dims[0], i0 + step) - i0
        for r in range(m):  # row by row: contiguous, cache-sized products
            np.multiply(restT, inv_sqrt[i0 + r][:, None], out=buf[r])
            buf[r] *= R0T[i0 + r]
        X = buf[:m].reshape(-1, k)
        H += X.T @ X
    return H


class CellForm:
    """The capacitance form of ``S_OO`` for an eigen form ``E``, cells ``U`` (flat, P-grid) and
    ``inv_delta`` (0 for missing cells, ``1/δ_c`` for corrected ones)."""

    def __init__(self, E: EigenForm, cells: np.ndarray, inv_delta: np.ndarray):
        self.E = E
        self.cells = np.asarray(cells, dtype=np.intp)
        self.inv_delta = np.asarray(inv_delta, dtype=np.float64)
        self.R = cell_rows(E, self.cells)
        k = self.cells.size
        H = inverse_block(E, self.R) if k else np.zeros((0, 0))
        H[np.diag_indices(k)] += self.inv_delta
        n_neg = int(np.count_nonzero(self.inv_delta < 0))
        corrected = self.inv_delta != 0
        logdet_delta = -float(np.sum(np.log(np.abs(self.inv_delta[corrected]))))
        self.chol: np.ndarray | None = None
        if n_neg == 0:
            try:
                self.chol = np.linalg.cholesky(H)
            except np.linalg.LinAlgError:
                raise NotPositiveDefiniteError(
                    f"the capacitance matrix of the {k} missing or corrected cells is not "
                    "positive definite: the observed covariance is singular to working precision"
                ) from None
            diag = np.diagonal(self.chol)
            logdet_h = 2.0 * float(np.sum(np.log(diag)))
            self.C = scipy.linalg.solve_triangular(self.chol, np.eye(k), lower=True).T
            self.c = np.ones(k)
            cond_ok = k == 0 or float(np.min(diag)) ** 2 > k * np.finfo(float).eps * float(
                np.max(np.abs(H)))
        else:
            e, Q = np.linalg.eigh(H)
            if int(np.count_nonzero(e < 0)) != n_neg:
                raise NotPositiveDefiniteError(
                    f"the observed covariance is not positive definite: its capacitance matrix "
                    f"has {int(np.count_nonzero(e < 0))} negative eigenvalues where "
                    f"{n_neg} (one per negative correction δ) are allowed")
            logdet_h = float(np.sum(np.log(np.abs(e))))
            self.C, self.c = Q, 1.0 / e
            # relative to the largest term that cancels in H = Δ̃⁻¹ + (S̄⁻¹)_UU, not just to |e|
            size = max(float(np.max(np.abs(e))), float(np.max(np.abs(self.inv_delta))))
            cond_ok = float(np.min(np.abs(e))) > k * np.finfo(float).eps * size
        if not cond_ok:
            raise SingularFactorError(
                f"the capacitance matrix of the {k} missing or corrected cells is singular to "
                "working precision (the observed covariance is numerically singular)")
        self.H = H
        self.logdet = E.logdet + logdet_delta + logdet_h

    @property
    def k(self) -> int:
        return int(self.cells.size)

    def h_solve(self, X: np.ndarray) -> np.ndarray:
        """``H⁻¹X`` for ``X`` of shape (k, …)."""
        if self.chol is not None:
            return scipy.linalg.cho_solve((self.chol, True), X)
        return (self.C * self.c) @ (self.C.T @ X)

    def whiten(self, W: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(Z̃, q)`` for rows ``W`` (N, P) that vanish on the missing cells: ``Z̃`` are the
        eigen coordinates of ``x̂ = G w`` (so ``x̂ = (⊗V_k) Z̃``) and ``q = wᵀ S_OO⁻¹ w``."""
        E = self.E
        Zl = E.to_eig(W) / E.lam.reshape(1, -1)
        if not self.k:
            return Zl, np.einsum("ij,ij->i", Zl * E.lam.reshape(1, -1), Zl)
        s = E.from_eig(Zl)
        sU = s[:, self.cells]
        g = self.h_solve(sU.T)
        q = np.einsum("ij,ij->i", W, s) - np.einsum("ji,ij->i", g, sU)
        return Zl - rank_sum(E, self.R, g), q

    def solve_rows(self, W: np.ndarray) -> np.ndarray:
        """``x̂ = G w`` for rows ``W`` (N, P) vanishing on the missing cells."""
        return self.E.from_eig(self.whiten(W)[0])

    def lowrank_grams(self, terms: Sequence[int], trace: bool = False
                      ) -> tuple[list[list[np.ndarray]], float]:
        """``(L[t][k], τ)``: ``L[t][k] = ∂ tr(Z H⁻¹ Zᵀ S̄)/∂F_tk`` for the terms ``t`` in
        ``terms`` (factor basis) and, if ``trace``, ``τ = tr(Z H⁻¹ Zᵀ)``."""
        E, d = self.E, len(self.E.dims)
        acc: list[list[np.ndarray]] = [[np.zeros((n, n)) for n in E.dims] for _ in terms]
        tau = 0.0
        orth = all(E.identity[a] or E.V[a] is E.W[a] for a in range(d))
        gram = [None if (E.identity[a] or E.V[a] is E.W[a]) else E.V[a].T @ E.V[a]
                for a in range(d)]
        c = _chunk(self.E, self.k)
        buf = np.empty((c, math.prod(E.dims)))  # reused: page faults of fresh memory cost more
        KRt = khatri_rao_t(self.R[:-1]) if d > 1 else None
        for j0 in range(0, self.k, c):
            J = slice(j0, min(self.k, j0 + c))
            # C = L⁻ᵀ is upper triangular on the Cholesky route: column j has j + 1 rows
            lead = None if self.chol is None else range(J.start + 1, J.stop + 1)
            Zl = rank_sum(E, self.R, self.C[:, J], buf, lead, KRt)
            cw = self.c[J]
            part = E.eig_grams(Zl, cw, terms)
            for row, prow in zip(acc, part, strict=True):
                for a in range(d):
                    row[a] += prow[a]
            if trace:
                if orth:
                    tau += float(np.einsum("jp,jp->j", Zl, Zl) @ cw)
                else:
                    T = Zl.reshape(Zl.shape[0], *E.dims)
                    for a, Ga in enumerate(gram):
                        if Ga is not None:
                            T = np.moveaxis(np.tensordot(T, Ga, axes=([a + 1], [1])), -1, a + 1)
                    tau += float(np.einsum("j,jp,jp->", cw, Zl, T.reshape(Zl.shape)))
        return [[E.sandwich(a, row[a]) for a in range(d)] for row in acc], tau

    def inverse_trace(self, tau: float | None = None) -> float:
        """``tr(S_OO⁻¹) = tr(S̄⁻¹) − tr(Z H⁻¹ Zᵀ)`` (``tau``: the second term, if known from
        :meth:`lowrank_grams`)."""
        E = self.E
        w = 1.0 / E.lam
        for a, n in enumerate(E.dims):
            norms = np.ones(n) if E.identity[a] else np.sum(E.V[a] ** 2, axis=0)
            shape = [1] * len(E.dims)
            shape[a] = n
            w = w * norms.reshape(shape)
        if tau is None:
            tau = self.lowrank_grams([], trace=True)[1] if self.k else 0.0
        return float(np.sum(w)) - tau
