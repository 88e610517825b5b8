"""The candidate terms of a two-factor decomposition under a :class:`Structure`.

:func:`svd_terms` solves each subproblem of the structure (the plain SVD of ``R(M)``, the
symmetric and skew blocks of a symmetric ``M``, or ``Q_A^T R(M) Q_B`` of a linear structure),
maps the singular vectors back to full coordinates and merges the terms by ``σ``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .operators import LowRankR
from .structure import Structure
from .svd import SVDOptions, full_is_cheaper, top_svd

__all__ = ["Terms", "svd_terms"]


@dataclass
class Terms:
    U: np.ndarray  # (a, r) unit columns, vec(A_k)
    s: np.ndarray  # (r,)
    Vh: np.ndarray  # (r, b), rows vec(B_k) = conj(v_k)
    skew: np.ndarray  # (r,) bool
    exact_tail: float | None  # Σ of squared dropped σ when every σ is known
    method: str
    full_sq: float | None = None  # Σ of all squared σ (= ‖M‖_F²) when every σ is known


def _use_symmetric_fast(op: Any, st: Structure, k: int, method: str, truncate: bool) -> bool:
    """Whether one iterative SVD of ``R(M)`` (classified afterwards) replaces the two
    subproblems of a symmetric ``M``."""
    return (st.symmetric and truncate and not isinstance(op, LowRankR)
            and method != "dense" and k < min(op.shape) - 1
            and not (method == "auto" and full_is_cheaper(op, k)))


def svd_terms(op: Any, st: Structure, k: int | None, opts: SVDOptions, *,
              rtol: float | None = None, truncate: bool = True) -> Terms:
    """All candidate terms, merged and sorted; truncated to ``k`` (or, ``k=None``, to the
    numerical rank: every ``σ > rtol·σ_1``, default ``rtol = max(a, b)·eps``).

    With ``truncate=False`` every computed candidate is kept (up to ``k`` per subproblem).
    """
    if k is not None and _use_symmetric_fast(op, st, k, opts.method, truncate):
        fast = _symmetric_fast(op, st, k, opts)
        if fast is not None:
            return fast
    Us, ss, Vhs, flags, alls, methods = [], [], [], [], [], []
    for QA, QB, is_skew in st.subproblems():
        sub = op if QA is None else op.project(QA, QB)
        kk = None if k is None else min(k, min(sub.shape))
        out = top_svd(sub, kk, opts)
        methods.append(out.method)
        U, Vh = out.U, out.Vh
        if QA is not None:
            U = np.asarray(QA @ U)
            Vh = np.asarray(QB @ Vh.T).T
        Us.append(U)
        ss.append(out.s)
        Vhs.append(Vh)
        flags.append(np.full(out.s.size, is_skew))
        alls.append(out.all_s)
    s = np.concatenate(ss)
    order = np.argsort(-s, kind="stable")
    U, Vh = np.concatenate(Us, axis=1)[:, order], np.concatenate(Vhs, axis=0)[order]
    s, skew = s[order], np.concatenate(flags)[order]
    if k is None:
        a, b = op.shape
        cut = (max(a, b) * np.finfo(float).eps if rtol is None else rtol) * (s[0] if s.size else 0)
        r = int(np.count_nonzero(s > cut))
    else:
        r = min(k, s.size) if truncate else s.size
    exact_tail = full_sq = None
    if st.unconstrained and alls[0] is not None:
        exact_tail = float(np.sum(alls[0][r:] ** 2))
        full_sq = float(np.sum(alls[0] ** 2))
    method_used = methods[0] if len(set(methods)) == 1 else "+".join(methods)
    return Terms(U[:, :r], s[:r], Vh[:r], skew[:r], exact_tail, method_used, full_sq)


def _symmetric_fast(op: Any, st: Structure, k: int, opts: SVDOptions) -> Terms | None:
    """One iterative SVD of ``R(M)`` for a symmetric ``M``, its terms classified.

    ``R(M)`` is block diagonal in the (symmetric, skew) bases, so apart from ties every
    singular pair is symmetric ⊗ symmetric or skew ⊗ skew already; each term is projected onto
    its part (removing rounding). Returns ``None`` if a term mixes the two (a tie between a
    symmetric and a skew σ), and the caller then solves the two parts separately. This halves
    the cost of ``structure="symmetric"``/``"psd"`` for iterative (matrix-free) solves.
    """
    (m1, _), (m2, _) = st.shapes
    out = top_svd(op, k, opts)
    U, Vh = np.array(out.U), np.array(out.Vh)
    skew = np.zeros(out.s.size, dtype=bool)
    for j in range(out.s.size):
        A = U[:, j].reshape(m1, m1)
        B = Vh[j].reshape(m2, m2)
        parts = [(0.5 * (A + A.T), 0.5 * (B + B.T)), (0.5 * (A - A.T), 0.5 * (B - B.T))]
        small = [max(np.linalg.norm(pa), np.linalg.norm(pb)) <= 1e-6 for pa, pb in parts]
        if small[1] == small[0]:
            return None
        keep = 0 if small[1] else 1
        pa, pb = parts[keep]
        U[:, j] = pa.ravel() / np.linalg.norm(pa)
        Vh[j] = pb.ravel() / np.linalg.norm(pb)
        skew[j] = keep == 1
    return Terms(U, out.s, Vh, skew, None, out.method)
