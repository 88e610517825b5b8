"""The SVD engine: the top singular triples of an R-operator (full, Lanczos, randomized).

:func:`top_svd` chooses between a full LAPACK SVD of the explicit ``R`` and two iterative
methods that only multiply by ``R`` and ``R^H`` (see :mod:`kronkit._kpsvd.operators`):
thick-restart Lanczos on the smaller normal operator (:func:`lanczos`) and block subspace
iteration (:func:`randomized`). A sum of Kronecker terms (:class:`LowRankR`) is always exact.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.linalg as sla

from .._errors import ConvergenceWarning
from .operators import DenseR, LowRankR

__all__ = ["DEFAULT_TOL", "SVDOptions", "SVDOut", "full_is_cheaper", "lanczos", "randomized",
           "top_svd"]


@dataclass
class SVDOut:
    U: np.ndarray  # (a, r)
    s: np.ndarray  # (r,), descending
    Vh: np.ndarray  # (r, b)
    all_s: np.ndarray | None  # the full spectrum when it was computed
    method: str


DEFAULT_TOL = 1e-12


@dataclass(frozen=True)
class SVDOptions:
    """How :func:`top_svd` computes singular triples (the user's ``method``, ``tol``,
    ``random_state`` and ``maxiter``, validated once)."""

    rng: np.random.Generator  # start vectors of the iterative methods
    method: str = "auto"  # "auto", "dense", "lanczos" or "randomized"
    tol: float = DEFAULT_TOL  # relative tolerance of the iterative methods
    maxiter: int | None = None  # their iteration cap (None: each method's default)

#: Lanczos basis size cap (columns) and the number of Ritz vectors kept at a thick restart
LANCZOS_MAX_BASIS = 120
#: a wanted value whose relative gap to its neighbours is below this counts as clustered: only
#: its singular value (not its individual vectors) is converged to ``tol`` (see lanczos)
CLUSTER_RELGAP = 0.01
LANCZOS_DEFAULT_MAXITER = 2000


def full_is_cheaper(op: Any, k: int) -> bool:
    """Heuristic choice between a full SVD and an iterative one for the top ``k`` triples."""
    m = min(op.shape)
    if k >= m - 1:
        return True
    if isinstance(op, DenseR) and not op.is_sparse:
        return m <= 64 or 6 * k >= m
    # forming R costs m products; Lanczos needs at least ncv ~ max(2k+1, 20) of them, usually 2-4x
    return m <= 2 * max(2 * k + 1, 20)


def _full(R: np.ndarray, k: int | None, method: str) -> SVDOut:
    U, s, Vh = np.linalg.svd(R, full_matrices=False)
    r = s.size if k is None else k
    return SVDOut(U[:, :r], s[:r], Vh[:r], s, method)


def top_svd(op: Any, k: int | None, opts: SVDOptions) -> SVDOut:
    """Top ``k`` singular triples of the R-operator ``op`` (all of them when ``k`` is None).

    ``opts.method``: ``"auto"`` (full SVD when cheaper, else Lanczos), ``"dense"`` (explicit R and
    LAPACK), ``"lanczos"`` (thick-restart Lanczos, :func:`lanczos`), ``"randomized"``
    (block subspace iteration with a convergence test). A low-rank operator is always exact.
    """
    if isinstance(op, LowRankR):
        U, s, Vh = op.exact_svd()
        r = s.size if k is None else min(k, s.size)
        if k is not None and k > s.size:  # more terms asked than stored: pad with null vectors
            U, s, Vh = _pad(U, s, Vh, k, op.shape, op.dtype)
            r = k
        return SVDOut(U[:, :r], s[:r], Vh[:r], s, "lowrank")
    method = opts.method
    if k is None or method == "dense" or (method == "auto" and full_is_cheaper(op, k)) \
            or k >= min(op.shape) - 1:
        return _full(op.to_array(), k, "dense")
    solve = randomized if method == "randomized" else lanczos
    return solve(op, k, tol=opts.tol, rng=opts.rng, maxiter=opts.maxiter)


def _pad(U, s, Vh, k, shape, dtype):
    """Complete ``U``/``Vh`` with orthonormal columns/rows (zero singular values) up to ``k``."""
    a, b = shape
    extra = k - s.size
    Uf = sla.null_space(U.conj().T) if U.shape[1] else np.eye(a, dtype=dtype)
    Vf = sla.null_space(Vh) if Vh.shape[0] else np.eye(b, dtype=dtype)
    U2 = np.concatenate([U, Uf[:, :extra]], axis=1)
    Vh2 = np.concatenate([Vh, Vf[:, :extra].conj().T], axis=0)
    return U2, np.concatenate([s, np.zeros(extra)]), Vh2


def _start(rng: np.random.Generator, n: int, dtype: np.dtype) -> np.ndarray:
    v = rng.standard_normal(n)
    if np.dtype(dtype).kind == "c":
        v = v + 1j * rng.standard_normal(n)
    return v


class _Krylov:
    """The Lanczos basis ``V`` (n×m), ``W = R V`` (or ``R^H V``), ``AV = R^H R V`` and the
    Rayleigh–Ritz matrix ``G = W^H W``, with room for ``mmax`` columns."""

    def __init__(self, n: int, m_other: int, mmax: int, dtype: np.dtype):
        self.V = np.empty((n, mmax), dtype=dtype)
        self.W = np.empty((m_other, mmax), dtype=dtype)
        self.AV = np.empty((n, mmax), dtype=dtype)
        self.G = np.zeros((mmax, mmax), dtype=dtype)
        self.m = 0

    def add(self, x: np.ndarray, w: np.ndarray, z: np.ndarray) -> None:
        """Append ``x`` with ``w = R x`` and ``z = R^H w``; update ``G`` incrementally."""
        m = self.m
        self.V[:, m], self.W[:, m], self.AV[:, m] = x, w, z
        g = self.W[:, : m + 1].conj().T @ w
        self.G[: m + 1, m] = g
        self.G[m, : m + 1] = g.conj()
        self.G[m, m] = g[m].real
        self.m = m + 1

    def ritz(self, l: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Ritz values ``θ²`` (descending, all), vectors ``Z``, and the ``l`` leading residuals
        ``A y_j - θ_j² y_j`` with their norms."""
        m = self.m
        th, Z = np.linalg.eigh(self.G[:m, :m])
        th, Z = np.maximum(th[::-1], 0.0), Z[:, ::-1]
        Res = self.AV[:, :m] @ Z[:, :l] - (self.V[:, :m] @ Z[:, :l]) * th[:l]
        return th, Z, Res, np.linalg.norm(Res, axis=0)

    def restart(self, th: np.ndarray, Z: np.ndarray, keep: int) -> None:
        """Thick restart: keep the ``keep`` leading Ritz vectors."""
        m = self.m
        Zk = Z[:, :keep]
        self.V[:, :keep] = self.V[:, :m] @ Zk
        self.W[:, :keep] = self.W[:, :m] @ Zk
        self.AV[:, :keep] = self.AV[:, :m] @ Zk
        self.G[:keep, :keep] = np.diag(th[:keep])
        self.G[keep:, :] = 0.0
        self.G[:, keep:] = 0.0
        self.m = keep

    def orthogonal(self, x: np.ndarray) -> np.ndarray:
        """``x`` with the basis projected out (twice: full reorthogonalisation)."""
        V = self.V[:, : self.m]
        for _ in range(2):
            x = x - V @ (V.conj().T @ x)
        return x


def lanczos(op: Any, k: int, *, tol: float, rng: np.random.Generator,
            maxiter: int | None) -> SVDOut:
    """Thick-restart Lanczos on the smaller normal operator, with a residual-based stop.

    Works on ``A = R^H R`` (or ``R R^H`` when that is smaller) with full reorthogonalisation:
    each step adds one basis vector ``x`` (the Krylov direction, taken from the Ritz residuals)
    at the cost of one product with ``R`` and one with ``R^H``; Rayleigh–Ritz on the whole
    basis (``G = (R V)^H (R V)``, updated incrementally) gives Ritz values ``θ_j² <= σ_j²``
    (lower bounds) and explicit residuals ``r_j = A y_j - θ_j² y_j``. The basis holds at most
    ``LANCZOS_MAX_BASIS`` columns; then it restarts from the leading Ritz vectors (thick
    restart), so memory is ``O((a + 2b)·LANCZOS_MAX_BASIS)``.

    Stopping rule, for each wanted ``j <= k`` (``g_j``: the gap from ``θ_j²`` to the nearest
    other Ritz value, an estimate of the gap in the spectrum): ``‖r_j‖ <= tol·θ_j²``
    (backward error ``tol``; the vectors are then accurate to about ``tol·θ_j²/g_j``), or —
    when ``θ_j`` is clustered (``g_j < CLUSTER_RELGAP·θ_j²``) — the quadratic residual bound
    of the value, ``min(‖r_j‖, ‖r_j‖²/g_j) <= tol·θ_j²``: inside a cluster the individual
    singular vectors are ill-conditioned and are not chased, the values are. A rounding floor
    ``10·sqrt(n)·eps·θ_1²`` counts as converged. ``maxiter`` caps the number of steps
    (default ``LANCZOS_DEFAULT_MAXITER``); then it warns (ConvergenceWarning) and returns the
    current Ritz triples.
    """
    a, b = op.shape
    if b <= a:
        fwd, bwd, n, m_other = op.matmat, op.rmatmat, b, a
    else:
        fwd, bwd, n, m_other = op.rmatmat, op.matmat, a, b
    dtype = np.result_type(op.dtype, np.float64)
    maxiter = LANCZOS_DEFAULT_MAXITER if maxiter is None else int(maxiter)
    mmax = int(min(n, max(LANCZOS_MAX_BASIS, 3 * k + 20)))
    keep = int(min(mmax - 1, max(2 * k, k + 20, mmax // 2)))
    eps = np.finfo(float).eps
    kr = _Krylov(n, m_other, mmax, dtype)
    x = _start(rng, n, dtype)
    x = x / np.linalg.norm(x)
    converged = False
    th, Z = np.zeros(0), np.zeros((0, 0), dtype=dtype)
    for _step in range(maxiter):
        w = fwd(x[:, None])[:, 0]
        kr.add(x, w, bwd(w[:, None])[:, 0])
        th, Z, Res, rn = kr.ritz(min(kr.m, k + 1))
        if kr.m >= k:
            floor = 10.0 * math.sqrt(n) * eps * th[0]
            if kr.m == n or _lanczos_done(th, rn, k, tol, floor):
                converged = True
                break
        # the next Krylov direction: in exact arithmetic every Ritz residual is parallel to it
        j = int(np.argmax(rn))
        if kr.m == mmax:
            kr.restart(th, Z, keep)
        x = kr.orthogonal(Res[:, j])
        nx = float(np.linalg.norm(x))
        if not nx > 1e-10 * max(float(rn[j]), 1e-300):  # Krylov space exhausted: restart it
            x = kr.orthogonal(_start(rng, n, dtype))
            nx = float(np.linalg.norm(x))
        x = x / nx
    if not converged:
        warnings.warn(
            f"Lanczos did not reach tol={tol:g} for the top {k} Kronecker singular values in "
            f"{maxiter} steps (maxiter); returning the current estimates",
            ConvergenceWarning, stacklevel=3,
        )
    return _ritz_triples(kr, th, Z, k, rng, transposed=b > a)


def _ritz_triples(kr: _Krylov, th: np.ndarray, Z: np.ndarray, k: int,
                  rng: np.random.Generator, *, transposed: bool) -> SVDOut:
    """The ``k`` leading Ritz triples of the final basis as an :class:`SVDOut`."""
    m = kr.m
    s = np.sqrt(th[:k])
    Zk = Z[:, :k]
    Vk = kr.V[:, :m] @ Zk  # unit right (or left) vectors
    Wk = kr.W[:, :m] @ Zk  # R Vk (or R^H Vk), columns of norm s
    Uo = Wk / np.where(s > 0, s, 1.0)
    # tiny singular values (R of lower rank): R v / s is rounding noise, not orthogonal to
    # the other columns; orthonormalise those columns against the good ones
    ok = s > 1e-8 * (float(s[0]) if s.size else 0.0)
    if not ok.all():
        Uo = _complete(Uo, ok, rng)
    if transposed:
        return SVDOut(Vk, s, Uo.conj().T, None, "lanczos")
    return SVDOut(Uo, s, Vk.conj().T, None, "lanczos")


def _lanczos_done(th: np.ndarray, rn: np.ndarray, k: int, tol: float, floor: float) -> bool:
    """The stopping rule of :func:`lanczos` for the top ``k`` Ritz values."""
    m = th.size
    for j in range(k):
        if rn[j] <= max(tol * th[j], floor):
            continue
        up = th[j - 1] - th[j] if j > 0 else math.inf
        lo = th[j] - th[j + 1] if j + 1 < m else math.inf
        gap = max(min(up, lo), 0.0)
        if not (gap < CLUSTER_RELGAP * th[j]):
            return False
        if min(rn[j], rn[j] ** 2 / gap if gap > 0 else math.inf) > max(tol * th[j], floor):
            return False
    return True


def _complete(U: np.ndarray, ok: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Orthonormalise the columns of ``U`` where ``ok`` is False against the others (a random
    orthonormal completion where a column has no usable direction)."""
    U = U.copy()
    good = U[:, ok]
    for c in np.flatnonzero(~ok):
        x = U[:, c]  # keep its direction where it has one, else a random one
        for attempt in range(2):
            for _ in range(2):
                x = x - good @ (good.conj().T @ x)
            nx = float(np.linalg.norm(x))
            if nx > 1e-3 or attempt:
                break
            x = _start(rng, U.shape[0], U.dtype)
        U[:, c] = x / nx
        good = np.concatenate([good, U[:, [c]]], axis=1)
    return U


def _orth(Y: np.ndarray) -> np.ndarray:
    return np.linalg.qr(Y)[0]


def randomized(op: Any, k: int, *, tol: float, rng: np.random.Generator,
               maxiter: int | None, oversample: int | None = None) -> SVDOut:
    """Block subspace iteration from a Gaussian start with ``k + max(k, 10)`` columns.

    Each iteration costs one block product with ``R^H`` and one with ``R``. It stops when the
    top-``k`` Ritz triples have residuals ``‖R v_k - σ_k u_k‖ <= tol·σ_k`` (plus a rounding
    floor ``10·sqrt(max(a, b))·eps·σ_1``), the same criterion as ARPACK's; warns
    (ConvergenceWarning) after ``maxiter`` (default 200) iterations.
    """
    a, b = op.shape
    m = min(a, b)
    l = min(m, k + (oversample if oversample is not None else max(k, 10)))
    maxiter = 200 if maxiter is None else int(maxiter)
    Omega = _start(rng, b * l, op.dtype).reshape(b, l)
    Q = _orth(op.matmat(Omega))
    converged = False
    for _ in range(maxiter):
        Z = op.rmatmat(Q)  # R^H Q (b × l);  Q^H R = Z^H = W S Vh
        W, s, Vh = np.linalg.svd(Z.conj().T, full_matrices=False)
        U = Q @ W
        Y = op.matmat(Vh.conj().T)  # R v_j, also the next block of the iteration
        res = np.linalg.norm(Y[:, :k] - U[:, :k] * s[:k], axis=0)
        floor = 10.0 * math.sqrt(max(a, b)) * np.finfo(float).eps * (float(s[0]) if s.size else 0.0)
        if np.all(res <= tol * s[:k] + floor):
            converged = True
            break
        Q = _orth(Y)
    if not converged:
        warnings.warn(
            f"randomized subspace iteration did not reach tol={tol:g} in {maxiter} iterations",
            ConvergenceWarning, stacklevel=3,
        )
    return SVDOut(U[:, :k], s[:k], Vh[:k], None, "randomized")
