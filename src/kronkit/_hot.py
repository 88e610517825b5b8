r"""Two symmetric positive definite factors: the seed function's hot path, on BLAS directly.

``S = A ⊗ B`` with ``A = L_A L_Aᵀ`` (p×p), ``B = L_B L_Bᵀ`` (q×q) and an observation ``w``
viewed as the p×q matrix ``W`` (row-major, REFERENCES §1). With the triangular inverses
``M_A = L_A⁻¹``, ``M_B = L_B⁻¹`` (LAPACK ``trtri``, cached by the factorisation):

    X = M_A W M_Bᵀ,   q = ‖X‖²,
    ∂q/∂A = −(M_Aᵀ X)(M_Aᵀ X)ᵀ,   ∂q/∂B = −(X M_B)ᵀ(X M_B),   ∂q/∂w = 2 M_Aᵀ X M_B,

five triangular products (``trmm``, m³ flops each for m = p = q) and two symmetric rank-k
products (``syrk``, m³ each): with the two Choleskys and two ``trtri`` about 8.3 m³ flops, on
square BLAS-3 calls. ``trmm`` with an explicit inverse runs near GEMM speed where ``trsm`` (a
solve) runs at about 60 % of it, and ``trtri`` costs m³/3, so the inverses pay for themselves.
Every array handed to BLAS is Fortran-ordered: a row-major W is the Fortran view of ``Wᵀ``, so
the products are written on transposes (``Xᵀ = M_B Wᵀ M_Aᵀ``) and nothing is copied or
transposed beyond BLAS's own output.

Many observations (``N ≥ BATCH_MIN``): triangular products with one wide right-hand side
would need the batch transposed, so the batch runs on the cached inverses and GEMM alone,
block by block (``Z_i = A⁻¹ (W_i B⁻¹)``, ``q_i = W_i : Z_i``, and because ``A Z_i = W_i B⁻¹``,
``Σ c_i Z_i B Z_iᵀ = (Σ c_i Z_i W_iᵀ) A⁻¹``, ``Σ c_i Z_iᵀ A Z_i = (Σ c_i Z_iᵀ W_i) B⁻¹``):
8·N·p·q·(p+q)/2 flops, all in large GEMMs.

:func:`seed_grad` is the entry point of :func:`kronkit.log_quad_grad` for this case: it checks
only what it must (types, shapes, the factorisations' conditioning contract) and hands every
unusual case (a non-SPD factor, a quadratic form that over- or underflows, ``β ≤ 0``, a
non-finite gradient, bad input) back to the general path, which raises or rescales as usual.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence

import numpy as np

from ._checks import sum_is_finite
from ._factor import Factorization, blas_fn

__all__ = ["BATCH_MIN", "WORKSPACE", "SPDBatch", "TwoSPD", "Workspace", "seed_grads", "spd_rows",
           "symmetric", "tiny_grads", "tri_rows"]

BATCH_MIN = 4  # from this many observations on, the GEMM batch path
TINY = 1024  # up to this many cells per observation, plain NumPy products
BLOCK_CELLS = 1 << 18  # cells per block of a batch (2 MiB of float64)


class Workspace(threading.local):
    """Scratch arrays of the hot path, kept per thread between calls.

    A fresh array costs its page faults when first written (the C library hands large
    blocks back to the system on free): at m = 200 that was a third of the whole gradient.
    Intermediates are therefore written into buffers that stay mapped; what the user gets
    is always a fresh array. Buffers larger than ``MAX_BYTES`` are not kept.
    """

    MAX_BYTES = 1 << 25  # 32 MiB per buffer (m = n = 2000); larger ones are not kept

    def __init__(self) -> None:
        self.buffers: dict[tuple[int, str], np.ndarray] = {}

    def take(self, slot: int, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """A row-major scratch array for ``slot`` (contents undefined), out of the pool until
        :meth:`give` returns it (so that a second user in the same thread gets another)."""
        buf = self.buffers.pop((slot, dtype.char), None)
        if buf is None or buf.shape != shape:
            buf = np.empty(shape, dtype=dtype)
        return buf

    def give(self, slot: int, buf: np.ndarray) -> None:
        """Return a buffer from :meth:`take` to the pool (kept if not larger than MAX_BYTES)."""
        if buf.nbytes <= self.MAX_BYTES:
            self.buffers[(slot, buf.dtype.char)] = buf

    def lower(self, slot: int, n: int, dtype: np.dtype) -> np.ndarray:
        """An n×n column-major buffer for ``syrk(..., lower=1)`` results, kept in the pool:
        zero above the diagonal when made, and only ever written below it."""
        buf = self.buffers.get((slot, dtype.char))
        if buf is None or buf.shape != (n, n):
            buf = np.zeros((n, n), dtype=dtype, order="F")
            self.give(slot, buf)
        return buf


WORKSPACE = Workspace()


class TwoSPD:
    """Two SPD factors, a batch of N observations (rows of ``W``): ``q_i`` and the gradients
    of ``Σ c_i q_i``. ``W`` is never modified."""

    __slots__ = ("N", "W3", "X", "batch", "batched", "buf", "fa", "fb", "p", "q", "q_dim")

    def __init__(self, fa: Factorization, fb: Factorization, W: np.ndarray):
        self.fa, self.fb = fa, fb
        self.N = N = W.shape[0]
        self.p, self.q_dim = p, q = fa.n, fb.n
        self.W3 = W3 = np.ascontiguousarray(W).reshape(N, p, q)
        self.batched = N >= BATCH_MIN
        self.X: list[np.ndarray] = []
        if self.batched:
            self.batch: SPDBatch | None = SPDBatch(fa, fb, W3)
            self.q = self.batch.quad()
            return
        Ma, Mb = fa.tri_inverse(), fb.tri_inverse()
        if p * q <= TINY:  # a few NumPy products: the cost is per call, not per flop
            self.X = [Ma @ Wi @ Mb.T for Wi in W3]
            self.q = np.array([np.vdot(X, X) for X in self.X], dtype=W3.dtype)
            return
        self.buf = X3 = tri_rows(Ma, Mb, W3, WORKSPACE.take(0, (N, p, q), W3.dtype), half=True)
        dot = blas_fn("dot", W3.dtype)
        self.q = np.array([dot(x, x) for x in X3.reshape(N, -1)], dtype=W3.dtype)
        self.X = [Xi.T for Xi in X3]  # Xᵀ, column-major views for BLAS

    def grads(self, c: np.ndarray) -> tuple[tuple[np.ndarray, np.ndarray], np.ndarray]:
        """``(∂/∂A, ∂/∂B)`` of ``Σ c_i q_i`` and the rows ``c_i ∂q_i/∂w_i`` (N, P). Once."""
        if self.batched:
            batch, self.batch = self.batch, None
            if batch is None:
                raise RuntimeError("the gradients of a batch are computed once")
            return batch.grads(c)
        N, p, q = self.N, self.p, self.q_dim
        X, self.X = self.X, []
        if len(X) != N:
            raise RuntimeError("the gradients of a batch are computed once")
        Ma, Mb = self.fa.tri_inverse(), self.fb.tri_inverse()
        if p * q <= TINY:
            return self._grads_tiny(X, c, Ma, Mb)
        # SciPy's BLAS only: NumPy ships its own OpenBLAS, and alternating calls into the two
        # (each with its own spinning thread pool) ran 20× slower on two cores
        dt = self.W3.dtype
        trmm, syrk = blas_fn("trmm", dt), blas_fn("syrk", dt)
        gA = gB = None
        gy = np.empty((N, p * q), dtype=self.W3.dtype)
        for i, Xt in enumerate(X):
            ci = float(c[i])
            Yt = gy[i].reshape(p, q).T  # the output row, column-major: BLAS works in it
            np.copyto(Yt, Xt)
            trmm(1.0, Ma, Yt, side=1, lower=1, overwrite_b=1)  # Xᵀ M_A = (M_Aᵀ X)ᵀ
            GA = symmetric(syrk(-ci, Yt, trans=1, lower=1, c=WORKSPACE.lower(-1, p, dt),
                                overwrite_c=1))  # −c (M_Aᵀ X)(M_Aᵀ X)ᵀ
            trmm(1.0, Mb, Xt, side=0, lower=1, trans_a=1, overwrite_b=1)  # (X M_B)ᵀ
            GB = symmetric(syrk(-ci, Xt, trans=0, lower=1, c=WORKSPACE.lower(-2, q, dt),
                                overwrite_c=1))  # −c (X M_B)ᵀ(X M_B)
            trmm(2.0 * ci, Mb, Yt, side=0, lower=1, trans_a=1, overwrite_b=1)  # 2c Zᵀ, in gy
            gA = GA if gA is None else gA + GA
            gB = GB if gB is None else gB + GB
        WORKSPACE.give(0, self.buf)
        if gA is None or gB is None:  # pragma: no cover - N >= 1 here
            raise RuntimeError("no observations")
        return (gA, gB), gy

    @staticmethod
    def _grads_tiny(X: list[np.ndarray], c: np.ndarray, Ma: np.ndarray, Mb: np.ndarray):
        gA = gB = None
        rows = np.empty((len(X), X[0].size), dtype=X[0].dtype)
        for i, (Xi, ci) in enumerate(zip(X, c.tolist(), strict=True)):
            GA, GB, rows[i] = tiny_grads(Ma, Mb, Xi, ci)
            gA = GA if gA is None else gA + GA
            gB = GB if gB is None else gB + GB
        return (gA, gB), rows


def tiny_grads(Ma: np.ndarray, Mb: np.ndarray, X: np.ndarray, c: float):
    """One row on a tiny grid, from ``X = M_A W M_Bᵀ``: ``(−c (M_AᵀX)(M_AᵀX)ᵀ, −c (X M_B)ᵀ(X M_B),
    2c M_AᵀX M_B flattened)`` by five NumPy products."""
    YA = Ma.T @ X
    YB = X @ Mb
    gA = YA @ YA.T
    gB = YB.T @ YB
    gy = YA @ Mb
    gA *= -c
    gB *= -c
    gy *= 2.0 * c
    return gA, gB, gy.reshape(-1)


def spd_rows(y: np.ndarray, facs: Sequence[Factorization], half: bool) -> np.ndarray | None:
    """``A⁻¹ Y_i B⁻¹`` (``half``: ``L_A⁻¹ Y_i L_B⁻ᵀ``) for a few rows ``y`` (..., p·q) and two
    Cholesky factorisations, as a new tensor (..., p, q) (:func:`tri_rows`). ``None`` where this
    is not the better route (other factors, tiny grids, many rows: the mode-wise solves batch
    those)."""
    if len(facs) != 2 or facs[0].kind != "cholesky" or facs[1].kind != "cholesky":
        return None
    fa, fb = facs
    p, q = fa.n, fb.n
    rows = y.reshape(-1, p * q)
    if p * q <= TINY or rows.shape[0] >= BATCH_MIN or y.dtype != fa.factor.dtype:
        return None
    out = np.empty((rows.shape[0], p, q), dtype=y.dtype)
    tri_rows(fa.tri_inverse(), fb.tri_inverse(), rows.reshape(-1, p, q), out, half)
    return out.reshape(*y.shape[:-1], p, q)


def tri_rows(Ma: np.ndarray, Mb: np.ndarray, W3: np.ndarray, out: np.ndarray,
             half: bool) -> np.ndarray:
    """``out[i] = M_A W_i M_Bᵀ`` (``half``) or ``M_AᵀM_A W_i M_BᵀM_B`` for the rows of ``W3``
    (N, p, q), with the triangular inverses ``M_A``, ``M_B``: two (four) triangular products
    per row on the column-major view of ``out[i]``, in place. Returns ``out``."""
    trmm = blas_fn("trmm", out.dtype)
    for i in range(W3.shape[0]):
        Xt = out[i].T  # column-major (q, p): BLAS writes into out itself
        np.copyto(Xt, W3[i].T)
        trmm(1.0, Mb, Xt, side=0, lower=1, overwrite_b=1)  # M_B Wᵀ
        trmm(1.0, Ma, Xt, side=1, lower=1, trans_a=1, overwrite_b=1)  # (M_A W M_Bᵀ)ᵀ
        if not half:
            trmm(1.0, Mb, Xt, side=0, lower=1, trans_a=1, overwrite_b=1)  # B⁻¹ Wᵀ M_Aᵀ
            trmm(1.0, Ma, Xt, side=1, lower=1, overwrite_b=1)  # B⁻¹ Wᵀ A⁻¹ = (A⁻¹ W B⁻¹)ᵀ
    return out


class SPDBatch:
    """A batch of N observations with two SPD factors, on cached inverses and GEMM alone.

    Blocks of n observations are laid out as p×(n·q) (one transposing copy), so that every
    product is one large GEMM: ``V = [W_i] B⁻¹`` (rows (a, i)), ``Z = A⁻¹ V`` (p × n·q),
    ``Σ c_i Z_i W_iᵀ`` (a contraction over n·q) and ``Σ c_i Z_iᵀ W_i`` (over p·n) — 8·p·q·(p+q)/2
    flops per observation. Because ``A Z_i = W_i B⁻¹``: ``Σ c_i Z_i B Z_iᵀ = (Σ c_i Z_i W_iᵀ) A⁻¹``
    and ``Σ c_i Z_iᵀ A Z_i = (Σ c_i Z_iᵀ W_i) B⁻¹``. Block buffers are reused (no page faults);
    nothing of size N·P is allocated but the rows ``c_i ∂q_i/∂w_i`` returned.
    """

    def __init__(self, fa: Factorization, fb: Factorization, W: np.ndarray):
        self.N, self.p, self.q_dim = N, p, q = W.shape[0], fa.n, fb.n
        self.W3 = np.ascontiguousarray(W).reshape(N, p, q)
        self.dt = dt = self.W3.dtype
        self.Ainv, self.Binv = fa.inverse_view(), fb.inverse_view()
        self.step = max(1, min(N, BLOCK_CELLS // (p * q)))
        self.GA, self.GB = np.zeros((p, p), dtype=dt), np.zeros((q, q), dtype=dt)
        self.tA, self.tB = np.empty((p, p), dtype=dt), np.empty((q, q), dtype=dt)
        self.rows = np.empty((N, p * q), dtype=dt)  # Z_i, then c_i ∂q_i/∂w_i
        self._bufs: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def _buffers(self, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if n not in self._bufs:
            p, q, dt = self.p, self.q_dim, self.dt
            self._bufs[n] = (np.empty((p, n, q), dt), np.empty((p * n, q), dt),
                             np.empty((p, n * q), dt))
        return self._bufs[n]

    def _solve(self, s: int, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Block ``s:s+n``: ``W_i`` as (p, n, q), ``Z_i = A⁻¹ W_i B⁻¹`` as (p, n·q), and ``q_i``."""
        p, q = self.p, self.q_dim
        Wt, V, Z = self._buffers(n)
        np.copyto(Wt, self.W3[s : s + n].transpose(1, 0, 2))
        np.matmul(Wt.reshape(p * n, q), self.Binv, out=V)  # W_i B⁻¹, rows (a, i)
        np.matmul(self.Ainv, V.reshape(p, n * q), out=Z)  # A⁻¹ W_i B⁻¹, as (p, n, q)
        return Wt, Z, np.einsum("anb,anb->n", Wt, Z.reshape(p, n, q))

    def _accumulate(self, Wt: np.ndarray, Z: np.ndarray, n: int) -> None:
        """Add ``Σ Z_i W_iᵀ`` and ``Σ Z_iᵀ W_i`` of a block (Z already weighted)."""
        p, q = self.p, self.q_dim
        self.GA += np.matmul(Z, Wt.reshape(p, n * q).T, out=self.tA)
        self.GB += np.matmul(Z.reshape(p * n, q).T, Wt.reshape(p * n, q), out=self.tB)

    def _finish(self) -> tuple[np.ndarray, np.ndarray]:
        gA = self.GA @ self.Ainv  # 2 Σ c_i Z_i B Z_iᵀ
        gB = self.GB @ self.Binv
        gA += gA.T
        gB += gB.T
        gA *= -0.25
        gB *= -0.25
        return gA, gB

    def fused(self, weights: Callable[[np.ndarray], np.ndarray]):
        """One pass: ``(q, c, (∂/∂A, ∂/∂B), rows)`` of ``Σ c_i q_i`` with ``c_i = weights(q_i)``."""
        N, p, q = self.N, self.p, self.q_dim
        qv, cv = np.empty(N, dtype=self.dt), np.empty(N, dtype=self.dt)
        for s in range(0, N, self.step):
            n = min(self.step, N - s)
            Wt, Z, qb = self._solve(s, n)
            cb = weights(qb)
            qv[s : s + n], cv[s : s + n] = qb, cb
            Z3 = Z.reshape(p, n, q)
            Z3 *= (2.0 * cb)[None, :, None]  # 2 c_i Z_i = c_i ∂q_i/∂w_i
            self._accumulate(Wt, Z, n)
            np.copyto(self.rows[s : s + n].reshape(n, p, q), Z3.transpose(1, 0, 2))
        return qv, cv, self._finish(), self.rows

    def quad(self) -> np.ndarray:
        """``q_i`` for every row (keeps ``Z_i`` for :meth:`grads`)."""
        N, p, q = self.N, self.p, self.q_dim
        qv = np.empty(N, dtype=self.dt)
        for s in range(0, N, self.step):
            n = min(self.step, N - s)
            _, Z, qv[s : s + n] = self._solve(s, n)
            np.copyto(self.rows[s : s + n].reshape(n, p, q), Z.reshape(p, n, q).transpose(1, 0, 2))
        return qv

    def grads(self, c: np.ndarray) -> tuple[tuple[np.ndarray, np.ndarray], np.ndarray]:
        """After :meth:`quad`: the gradients of ``Σ c_i q_i`` and the rows ``c_i ∂q_i/∂w_i``."""
        N, p, q = self.N, self.p, self.q_dim
        for s in range(0, N, self.step):
            n = min(self.step, N - s)
            Wt, _, Z = self._buffers(n)
            rows = self.rows[s : s + n].reshape(n, p, q)
            rows *= (2.0 * c[s : s + n])[:, None, None]
            np.copyto(Wt, self.W3[s : s + n].transpose(1, 0, 2))
            np.copyto(Z.reshape(p, n, q), rows.transpose(1, 0, 2))
            self._accumulate(Wt, Z, n)
        return self._finish(), self.rows


def seed_grads(fa: Factorization, fb: Factorization, W: np.ndarray, alpha: float, scale: float):
    """``(β, c, ∂/∂A, ∂/∂B, rows c_i ∂q_i/∂w_i)`` of ``Σ_i scale·log(α + q_i)`` with
    ``c_i = scale/β_i``; ``None`` when some ``q_i`` over- or underflows, some ``β_i ≤ 0`` or a
    gradient overflows (the general path then rescales or raises)."""
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        if W.shape[0] == 1 and W.size <= TINY:
            return _tiny_seed(fa, fb, W, alpha, scale)
        if W.shape[0] >= BATCH_MIN:  # one pass; a bad q shows in β or the gradients
            q, c, (gA, gB), gy = SPDBatch(fa, fb, W).fused(lambda q: scale / (alpha + q))
            beta = alpha + q
        else:
            two = TwoSPD(fa, fb, W)
            q = two.q
            beta = alpha + q
            if not _in_range(q, beta):
                return None
            c = scale / beta
            (gA, gB), gy = two.grads(c)
    if not (_in_range(q, beta) and sum_is_finite(gA) and sum_is_finite(gB) and sum_is_finite(gy)):
        return None
    return beta, c, gA, gB, gy


def _tiny_seed(fa: Factorization, fb: Factorization, W: np.ndarray, alpha: float, scale: float):
    """:func:`seed_grads` for one observation on a tiny grid: nine NumPy products, no more
    (at m = 8 every call costs about a microsecond, whatever its flops)."""
    Ma, Mb = fa.tri_inverse(), fb.tri_inverse()
    X = Ma @ W.reshape(fa.n, fb.n) @ Mb.T
    q = float(np.vdot(X, X))
    beta = alpha + q
    if not (q >= _TINY[X.dtype.char] and math.isfinite(q) and beta > 0):
        return None
    c = scale / beta
    gA, gB, gy = tiny_grads(Ma, Mb, X, c)
    if not math.isfinite(np.add.reduce(gA, axis=None) + np.add.reduce(gB, axis=None)
                         + np.add.reduce(gy, axis=None)):
        return None
    return np.array([beta]), np.array([c]), gA, gB, gy.reshape(1, -1)


_TINY = {np.dtype(t).char: float(np.finfo(t).tiny) for t in (np.float64, np.float32)}


def _in_range(q: np.ndarray, beta: np.ndarray) -> bool:
    """Every ``q_i`` finite and not underflowing, every ``β_i > 0``."""
    if q.shape[0] == 1:
        q0 = float(q[0])
        return q0 >= _TINY[q.dtype.char] and math.isfinite(q0) and float(beta[0]) > 0
    return bool(q.min() >= _TINY[q.dtype.char] and math.isfinite(q.max()) and beta.min() > 0)


def symmetric(G: np.ndarray) -> np.ndarray:
    """The full symmetric matrix from a ``syrk`` result holding one triangle (zeros in the
    other): ``G + Gᵀ`` with the diagonal halved (exact), one pass."""
    S = np.add(G, G.T)
    S.flat[:: S.shape[0] + 1] *= 0.5
    return S


