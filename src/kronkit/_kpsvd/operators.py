r"""The rearrangement ``R(M)`` as an operator, for every kind of input ``M``.

An *R-operator* stands for ``R(M)`` of shape ``(a, b)`` with ``a = m1*n1`` and ``b = m2*n2``.
Each is a :class:`scipy.sparse.linalg.LinearOperator` (``matmat(X)`` is ``R @ X`` for ``X`` of
shape ``(b, k)``, ``rmatmat(Y)`` is ``R^H @ Y`` for ``Y`` of shape ``(a, k)``, ``.H`` the
adjoint) with these extra attributes:

``sqnorm``
    ``‖R‖_F² = ‖M‖_F²``, or ``None`` when unknown (a LinearOperator ``M``).
``kind``
    ``"dense"``, ``"lowrank"``, ``"operator"``, ``"samples"`` or ``"projected"``.
``n_products``
    The number of vectors multiplied so far (matrix-free operators count them).
``to_array()``
    The explicit ``R`` (from ``min(a, b)`` products unless it is held).
``residual(U, s, Vh)``
    ``‖R - U diag(s) Vh‖_F`` without cancellation, or ``None`` where that would need ``M``.
``project(QA, QB)``
    The operator of ``Q_A^T R Q_B`` (orthonormal bases of a linear structure).

The classes: :class:`DenseR` (an ndarray or scipy sparse ``R``), :class:`LowRankR`
(``R = F G^T``: a sum of Kronecker terms, exact SVD), :class:`OperatorR` (from the products
of a LinearOperator ``M``), :class:`SamplesR` / :class:`ChunkedSamplesR` (the sample
covariance of matrix samples in memory / as dask chunks, never formed) and
:class:`ProjectedR`. The samples contractions themselves live in :mod:`kronkit._samples`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import partial
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import LinearOperator

from .._dask import add_nested, tree_reduce_chunks
from .._samples import col_sandwich, cross_gram, layout, row_sandwich
from .._sum_kron import SumOfKron

__all__ = ["ChunkedSamplesR", "DenseR", "LowRankR", "OperatorR", "ProjectedR", "ROperator",
           "SamplesR"]

#: the direct residual of a sparse ``M`` is computed (in row blocks of the dense ``R(M)``) only
#: up to this many entries of ``R(M)``; above it the difference formula is used
DIRECT_RESIDUAL_MAX_ENTRIES = 1 << 27


class ROperator(LinearOperator):
    """Base of the R-operators: a LinearOperator with ``sqnorm``, ``kind``, ``n_products``."""

    kind = "operator"
    sqnorm: float | None = None

    def __init__(self, shape: tuple[int, int], dtype: Any):
        super().__init__(dtype=np.dtype(dtype), shape=shape)
        self.n_products = 0

    def to_array(self, block: int = 64) -> np.ndarray:
        """The explicit ``R`` from ``min(a, b)`` products (identity in column blocks)."""
        a, b = self.shape
        n = min(a, b)
        out = np.empty((a, b), dtype=self.dtype)
        for s in range(0, n, block):
            e = min(n, s + block)
            E = np.zeros((n, e - s), dtype=self.dtype)
            E[np.arange(s, e), np.arange(e - s)] = 1.0
            if a <= b:
                out[s:e] = self.rmatmat(E).conj().T
            else:
                out[:, s:e] = self.matmat(E)
        return out

    def residual(self, U: np.ndarray, s: np.ndarray, Vh: np.ndarray) -> float | None:
        """``‖R - U diag(s) Vh‖_F`` without cancellation; ``None``: not available matrix-free."""
        return None

    def project(self, QA: Any, QB: Any) -> ROperator:
        """The operator of ``Q_A^T R Q_B`` in coordinates."""
        return ProjectedR(self, QA, QB)


class DenseR(ROperator):
    """``R`` held explicitly (ndarray, or scipy sparse matrix)."""

    kind = "dense"

    def __init__(self, R: Any, sqnorm: float | None = None):
        super().__init__(tuple(R.shape), R.dtype)
        self.R = R
        self.is_sparse = sp.issparse(R)
        if sqnorm is None:
            data = R.data if self.is_sparse else R
            sqnorm = float(np.vdot(data, data).real)
        self.sqnorm = float(sqnorm)
        self._RH = R.conj().T if np.iscomplexobj(R) else R.T

    def _matmat(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(self.R @ X)

    def _rmatmat(self, Y: np.ndarray) -> np.ndarray:
        return np.asarray(self._RH @ Y)

    def to_array(self, block: int = 64) -> np.ndarray:
        return self.R.toarray() if self.is_sparse else self.R

    def residual(self, U: np.ndarray, s: np.ndarray, Vh: np.ndarray) -> float | None:
        """The difference formed in row blocks: one GEMM, ``O(a·b·r)``, a few MB workspace.

        ``sqrt(‖M‖² - Σ s_k²)`` would lose half the digits when the residual is small (an
        exact Kronecker product would report ~1e-8 instead of ~1e-16). ``None`` for a sparse
        ``R`` above ``DIRECT_RESIDUAL_MAX_ENTRIES`` entries.
        """
        a, b = self.shape
        if self.is_sparse and a * b > DIRECT_RESIDUAL_MAX_ENTRIES:
            return None
        US = U * s
        step = max(1, (1 << 20) // max(1, b))
        total = 0.0
        for i in range(0, a, step):
            blk = self.R[i : i + step]
            blk = blk.toarray() if self.is_sparse else np.asarray(blk)
            D = blk - US[i : i + step] @ Vh
            total += float(np.vdot(D, D).real)
        return math.sqrt(total)

    def project(self, QA: Any, QB: Any) -> ROperator:
        left = QA.T @ self.R  # sparse @ (dense or sparse)
        if sp.issparse(left):
            left = left.toarray()
        return DenseR(np.asarray((QB.T @ np.asarray(left).T).T))


class LowRankR(ROperator):
    """``R = F @ G.T``: the rearrangement of ``Σ_k A_k ⊗ B_k`` with ``F[:, k] = vec(A_k)``,
    ``G[:, k] = vec(B_k)``. ``exact_svd()`` gives every singular triple, ``O((a + b)·K²)``."""

    kind = "lowrank"

    def __init__(self, F: np.ndarray, G: np.ndarray):
        super().__init__((F.shape[0], G.shape[0]), np.result_type(F.dtype, G.dtype))
        self.F = F
        self.G = G
        self._svd: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self._qr: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    @classmethod
    def of_sum(cls, S: SumOfKron) -> LowRankR:
        """``R(Σ_k A_k ⊗ B_k)`` of a :class:`~kronkit.SumOfKron` (two-factor terms)."""
        F = np.stack([K.factors[0].ravel() for K in S.terms], axis=1)
        G = np.stack([K.factors[1].ravel() for K in S.terms], axis=1)
        return cls(F, G)

    def _matmat(self, X: np.ndarray) -> np.ndarray:
        return self.F @ (self.G.T @ X)

    def _rmatmat(self, Y: np.ndarray) -> np.ndarray:
        return self.G.conj() @ (self.F.conj().T @ Y)

    def core(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(Q_F, C, Q_G)`` with ``R = Q_F C Q_G^T`` (two thin QRs; cached)."""
        if self._qr is None:
            Qf, Rf = np.linalg.qr(self.F)
            Qg, Rg = np.linalg.qr(self.G)
            self._qr = (Qf, Rf @ Rg.T, Qg)
        return self._qr

    @property
    def sqnorm(self) -> float:  # type: ignore[override]
        _, C, _ = self.core()
        return float(np.vdot(C, C).real)

    def exact_svd(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All singular triples: two thin QRs and the SVD of the small core (K×K at most)."""
        if self._svd is None:
            Qf, C, Qg = self.core()
            W, s, Zh = np.linalg.svd(C, full_matrices=False)
            self._svd = (Qf @ W, s, Zh @ Qg.T)
        return self._svd

    def to_array(self, block: int = 64) -> np.ndarray:
        return self.F @ self.G.T

    def residual(self, U: np.ndarray, s: np.ndarray, Vh: np.ndarray) -> float | None:
        """Exact, as the low-rank matrix ``[F, U s][G, -Vh^T]^T`` (two thin QRs)."""
        F = np.concatenate([self.F, U * s], axis=1)
        G = np.concatenate([self.G, -Vh.T], axis=1)
        return math.sqrt(LowRankR(F, G).sqnorm)

    def project(self, QA: Any, QB: Any) -> ROperator:
        return LowRankR(np.asarray(QA.T @ self.F), np.asarray(QB.T @ self.G))


class OperatorR(ROperator):
    """``R(M)`` from the products of a LinearOperator ``M`` of shape ``(m1*m2, n1*n2)``.

    ``R vec(V) = vec([<M_ij, V>]_ij)``: with ``V = Σ_l s_l u_l w_l^T`` (its SVD, rank ρ),
    ``[<M_ij, V>] = Σ_l s_l (I ⊗ u_l)^T M (I_{n1} ⊗ w_l)``, i.e. ``n1`` products with ``M`` per
    term. ``R^T vec(U) = vec(Σ_ij U_ij M_ij)``: with ``U = Σ_l t_l x_l y_l^T``,
    ``Σ_l t_l (x_l ⊗ I)^T M (y_l ⊗ I_{n2})``, i.e. ``n2`` products per term. One product with
    ``R`` therefore costs ``n1·min(m2, n2)`` (``R^T``: ``n2·min(m1, n1)``) products with ``M``
    and ``O(m1·m2·max(n1, n2))`` workspace; ``M`` itself is never formed.
    """

    kind = "operator"

    def __init__(self, M: Any, shapes: Sequence[tuple[int, int]]):
        (self.m1, self.n1), (self.m2, self.n2) = shapes
        dt = np.dtype(M.dtype) if np.dtype(M.dtype).kind in "fc" else np.dtype(float)
        super().__init__((self.m1 * self.n1, self.m2 * self.n2), dt)
        self.M = M
        self.sqnorm = None

    def _apply(self, Z: np.ndarray) -> np.ndarray:
        self.n_products += Z.shape[1]
        out = np.asarray(self.M.matmat(Z))
        if out.shape != (self.m1 * self.m2, Z.shape[1]):
            raise ValueError(
                f"`M.matmat` returned shape {out.shape}, expected {(self.m1 * self.m2, Z.shape[1])}"
            )
        return out

    def _product(self, x: np.ndarray, forward: bool) -> np.ndarray:
        """``R x`` (``forward``) or ``R^T x`` for one vector, from the SVD of ``unvec(x)``:
        ``x = vec(Σ_l s_l u_l w_l^T)`` costs ``n1`` (``R^T``: ``n2``) products with ``M`` per
        term ``l``, with ``Z = I ⊗ w_l`` (``R^T``: ``w_l ⊗ I``)."""
        m1, n1, m2, n2 = self.m1, self.n1, self.m2, self.n2
        small, big = ((m2, n2), (m1, n1)) if forward else ((m1, n1), (m2, n2))
        Ux, sx, Wh = np.linalg.svd(x.reshape(small), full_matrices=False)
        out = np.zeros(big, dtype=np.result_type(self.dtype, x.dtype))
        eye = np.eye(big[1])
        for l in range(sx.size):
            if sx[l] == 0.0:
                break
            w = Wh[l][:, None]
            Z = np.kron(eye, w) if forward else np.kron(w, eye)  # (n1*n2, big[1])
            Y = self._apply(Z).reshape(m1, m2, big[1])
            # forward: out[i, j] += s_l Σ_a Y[i, a, j] u[a];  else out[a, b] += s_l Σ_i Y[i, a, b] u[i]
            out += sx[l] * (np.einsum("iaj,a->ij", Y, Ux[:, l]) if forward
                            else np.einsum("iab,i->ab", Y, Ux[:, l]))
        return out.ravel()

    def _matmat(self, X: np.ndarray) -> np.ndarray:
        return np.stack([self._product(X[:, c], True) for c in range(X.shape[1])], axis=1)

    def _rmatmat(self, Y: np.ndarray) -> np.ndarray:
        # R^H y = conj(R^T conj(y))
        cols = [np.conj(self._product(np.conj(Y[:, c]), False)) for c in range(Y.shape[1])]
        return np.stack(cols, axis=1)


# -- samples ------------------------------------------------------------------------------

class SamplesR(ROperator):
    """``R(M)`` for ``M = (1/N) Σ_n vec(X_n) vec(X_n)^T`` (``X_n`` already centred), never formed.

    ``R(M) = (1/N) Σ_n X_n ⊗ X_n`` (``p²×q²``); ``R vec(V) = vec((1/N) Σ X_n V X_n^T)`` and
    ``R^T vec(U) = vec((1/N) Σ X_n^T U X_n)``. The samples are held as chunks of ``(p, c, q)``
    layout (see :func:`kronkit._samples.layout`); each product is two GEMMs per chunk
    (:func:`~kronkit._samples.row_sandwich`, :func:`~kronkit._samples.col_sandwich`), cost
    ``O(N·p·q·(p+q))``, memory ``O(N·p·q + p² + q²)``.
    """

    kind = "samples"

    def __init__(self, chunks: Sequence[np.ndarray], n_total: int):
        self.chunks = list(chunks)
        self.p, _, self.q = self.chunks[0].shape
        super().__init__((self.p * self.p, self.q * self.q), np.float64)
        self.n_total = int(n_total)
        self._sqnorm: float | None = None

    def _one(self, x: np.ndarray, left: bool) -> np.ndarray:
        self.n_products += 1
        if np.iscomplexobj(x):
            return self._one(x.real, left) + 1j * self._one(x.imag, left)
        if left:
            V = x.reshape(self.q, self.q)
            acc = sum(row_sandwich(c, V) for c in self.chunks)
        else:
            U = x.reshape(self.p, self.p)
            acc = sum(col_sandwich(c, U) for c in self.chunks)
        return np.ravel(acc) / self.n_total

    def _matmat(self, X: np.ndarray) -> np.ndarray:
        return np.stack([self._one(X[:, c], True) for c in range(X.shape[1])], axis=1)

    def _rmatmat(self, Y: np.ndarray) -> np.ndarray:
        # R is real, so R^H = R^T
        return np.stack([self._one(Y[:, c], False) for c in range(Y.shape[1])], axis=1)

    @property
    def sqnorm(self) -> float:  # type: ignore[override]
        """``‖M‖_F² = ‖G‖_F² / N²`` with the ``N×N`` Gram matrix, or ``‖X^T X‖_F²/N²``.

        Cost ``O(N·p·q·min(N, p·q))``, memory ``O(min(N, p·q)²)`` (never above ``N·p·q``).
        """
        if self._sqnorm is None:
            P = self.p * self.q
            total = 0.0
            if self.n_total <= P:
                for i, a in enumerate(self.chunks):
                    for j in range(i, len(self.chunks)):
                        g = cross_gram(a, self.chunks[j])
                        total += (1.0 if i == j else 2.0) * float(np.vdot(g, g))
            else:
                C = np.zeros((P, P))
                for c in self.chunks:
                    flat = c.transpose(1, 0, 2).reshape(c.shape[1], P)
                    C += flat.T @ flat
                total = float(np.vdot(C, C))
            self._sqnorm = total / float(self.n_total) ** 2
        return self._sqnorm


def chunk_products(block: np.ndarray, *, mean: np.ndarray | None, mats: np.ndarray,
                   left: bool) -> np.ndarray:
    """Per-chunk partial sums ``Σ_n X_n V X_n^T`` (``left``) or ``Σ_n X_n^T U X_n`` for a stack.

    ``block`` is ``(n, p, q)``; ``mats`` is ``(k, q, q)`` or ``(k, p, p)``; returns ``(k, p, p)``
    or ``(k, q, q)``, unnormalised. The same kernels as :class:`SamplesR`.
    """
    Xt = layout(np.asarray(block, dtype=np.float64), mean)
    kernel = row_sandwich if left else col_sandwich
    return np.stack([kernel(Xt, V) for V in mats])


class ChunkedSamplesR(ROperator):
    """``R(M)`` of the sample covariance of samples held as a dask array (N, p, q), chunked along N.

    Same products as :class:`SamplesR`, ``R vec(V) = vec((1/N) Σ_n X_n V X_n^T)`` and
    ``R^T vec(U) = vec((1/N) Σ_n X_n^T U X_n)``, but each block product (all columns of ``X``
    at once) is **one pass** over the data: every chunk is centred and laid out where it lives
    (:func:`kronkit._samples.layout`), its partial sums come back (``k`` matrices of p×p or
    q×q) and are added in a tree (:func:`kronkit._dask.tree_reduce_chunks`). ``sqnorm`` is
    given by the caller (``None`` when not computed). ``passes`` counts the passes made.
    """

    kind = "samples"

    def __init__(self, X: Any, mean: np.ndarray | None, sqnorm: float | None):
        self.n_total, self.p, self.q = (int(v) for v in X.shape)
        super().__init__((self.p * self.p, self.q * self.q), np.float64)
        self.X = X
        self.mean = mean
        self.sqnorm = sqnorm
        self.passes = 0

    def _pass(self, cols: np.ndarray, left: bool) -> np.ndarray:
        k = cols.shape[1]
        self.n_products += k
        self.passes += 1
        parts = [cols.real] + ([cols.imag] if np.iscomplexobj(cols) else [])
        side = self.q if left else self.p
        mats = np.concatenate([np.ascontiguousarray(c.T).reshape(k, side, side) for c in parts])
        fn = partial(chunk_products, mean=self.mean, mats=mats, left=left)
        out = tree_reduce_chunks(self.X, fn, add_nested)
        if not np.isfinite(out).all():
            raise ValueError("`X` contains NaN or Inf (a product with the sample covariance "
                             "is not finite)")
        out = out.reshape(len(parts) * k, -1).T / self.n_total
        return out[:, :k] + 1j * out[:, k:] if len(parts) == 2 else out

    def _matmat(self, X: np.ndarray) -> np.ndarray:
        return self._pass(np.asarray(X), True)

    def _rmatmat(self, Y: np.ndarray) -> np.ndarray:
        return self._pass(np.asarray(Y), False)  # R is real, so R^H = R^T


class ProjectedR(ROperator):
    """``Q_A^T R Q_B`` for real orthonormal bases (ndarray or sparse, columns orthonormal)."""

    kind = "projected"

    def __init__(self, base: ROperator, QA: Any, QB: Any):
        super().__init__((QA.shape[1], QB.shape[1]), base.dtype)
        self.base, self.QA, self.QB = base, QA, QB
        self.sqnorm = None

    def _matmat(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(self.QA.T @ self.base.matmat(np.asarray(self.QB @ X)))

    def _rmatmat(self, Y: np.ndarray) -> np.ndarray:
        return np.asarray(self.QB.T @ self.base.rmatmat(np.asarray(self.QA @ Y)))
