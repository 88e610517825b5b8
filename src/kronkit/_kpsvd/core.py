"""Internals of the Kronecker-product SVD: operators for R(M), structure bases, the SVD engine.

Everything here is private. The public functions in :mod:`kronkit._kpsvd` validate their input
once and hand clean arrays to the pieces below.

The rearranged-operator protocol
--------------------------------
An *R-operator* stands for the rearrangement ``R(M)`` of shape ``(a, b)`` with
``a = m1*n1`` and ``b = m2*n2``. It has the attributes ``shape``, ``dtype`` and ``sqnorm``
(``‖R‖_F² = ‖M‖_F²``, or ``None`` when unknown) and the methods ``matmat(X)`` (``R @ X`` for
``X`` of shape ``(b, k)``) and ``rmatmat(Y)`` (``R^H @ Y`` for ``Y`` of shape ``(a, k)``).
The classes are :class:`DenseR` (an explicit ndarray or scipy sparse matrix), :class:`LowRankR`
(``R = F G^T``: a sum of Kronecker terms), :class:`OperatorR` (built from the products of a
``scipy.sparse.linalg.LinearOperator`` M), :class:`SamplesR` (the sample covariance of matrix
samples, never formed) and :class:`ProjectedR` (``Q_A^T R Q_B`` for orthonormal bases of a
linear structure). Any object with the same attributes (for example a dask-backed samples
operator built from :func:`kronkit._samples.row_sandwich` / :func:`~kronkit._samples.col_sandwich`) works with
:func:`top_svd`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp

from .._errors import ConvergenceWarning
from .._samples import col_sandwich, cross_gram, layout, row_sandwich

# ----------------------------------------------------------------------------------------
# shapes
# ----------------------------------------------------------------------------------------


def parse_shapes(shapes: Any, *, d: int | None = None, name: str = "shapes"
                 ) -> tuple[tuple[int, int], ...]:
    """``((m1, n1), (m2, n2), ...)`` from ``shapes``; an int ``m`` is a square ``(m, m)`` block."""
    want = "((m1, n1), (m2, n2))" if d == 2 else "((m1, n1), (m2, n2), ...)"
    if isinstance(shapes, (str, bytes)) or not hasattr(shapes, "__len__"):
        raise TypeError(f"`{name}` must be a sequence like {want}, got {shapes!r}")
    entries = list(shapes)
    if d is not None and len(entries) != d:
        raise ValueError(f"`{name}` must have {d} entries {want}, got {len(entries)}: {shapes!r}")
    if len(entries) < 2:
        raise ValueError(f"`{name}` must have at least 2 entries {want}, got {shapes!r}")
    out = []
    for k, s in enumerate(entries):
        if isinstance(s, (bool, np.bool_)):
            raise TypeError(f"`{name}[{k}]` must be an int or an (m, n) pair, got {s!r}")
        if isinstance(s, (int, np.integer)):
            pair: tuple[Any, ...] = (s, s)
        elif isinstance(s, (str, bytes)) or not hasattr(s, "__len__"):
            raise TypeError(f"`{name}[{k}]` must be an int or an (m, n) pair, got {s!r}")
        else:
            pair = tuple(s)
        if len(pair) != 2 or not all(
            isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)) for v in pair
        ):
            raise TypeError(f"`{name}[{k}]` must be an int or a pair of ints (m, n), got {s!r}")
        if min(pair) < 1:
            raise ValueError(f"`{name}[{k}]` must be positive, got {tuple(int(v) for v in pair)}")
        out.append((int(pair[0]), int(pair[1])))
    return tuple(out)


def prod(xs: Sequence[int]) -> int:
    out = 1
    for x in xs:
        out *= int(x)
    return out


def to_tensor(M: np.ndarray, shapes: Sequence[tuple[int, int]]) -> np.ndarray:
    """The d-way rearrangement: ``T[(i1, j1), ..., (id, jd)] = M[(i1..id), (j1..jd)]``.

    ``T`` has shape ``(m1*n1, ..., md*nd)``; for d = 2 it is ``R(M)``. A copy.
    """
    d = len(shapes)
    ms = [s[0] for s in shapes]
    ns = [s[1] for s in shapes]
    perm = [ax for k in range(d) for ax in (k, d + k)]
    T = M.reshape(*ms, *ns).transpose(perm)
    return np.ascontiguousarray(T).reshape([m * n for m, n in shapes])


# ----------------------------------------------------------------------------------------
# R-operators
# ----------------------------------------------------------------------------------------


class DenseR:
    """``R`` held explicitly (ndarray, or scipy sparse matrix)."""

    kind = "dense"

    def __init__(self, R: Any, sqnorm: float | None = None):
        self.R = R
        self.shape = tuple(R.shape)
        self.dtype = np.dtype(R.dtype)
        self.is_sparse = sp.issparse(R)
        if sqnorm is None:
            data = R.data if self.is_sparse else R
            sqnorm = float(np.vdot(data, data).real)
        self.sqnorm = float(sqnorm)
        self._RH = R.conj().T if np.iscomplexobj(R) else R.T

    def matmat(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(self.R @ X)

    def rmatmat(self, Y: np.ndarray) -> np.ndarray:
        return np.asarray(self._RH @ Y)

    def dense(self) -> np.ndarray:
        return self.R.toarray() if self.is_sparse else self.R


class LowRankR:
    """``R = F @ G.T``: the rearrangement of ``Σ_k A_k ⊗ B_k`` with ``F[:, k] = vec(A_k)``."""

    kind = "lowrank"

    def __init__(self, F: np.ndarray, G: np.ndarray):
        self.F = F
        self.G = G
        self.shape = (F.shape[0], G.shape[0])
        self.dtype = np.result_type(F.dtype, G.dtype)
        self._svd: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self._core: np.ndarray | None = None

    def matmat(self, X: np.ndarray) -> np.ndarray:
        return self.F @ (self.G.T @ X)

    def rmatmat(self, Y: np.ndarray) -> np.ndarray:
        return self.G.conj() @ (self.F.conj().T @ Y)

    def _qr(self):
        if self._core is None:
            Qf, Rf = np.linalg.qr(self.F)
            Qg, Rg = np.linalg.qr(self.G)
            self._Qf, self._Qg = Qf, Qg
            self._core = Rf @ Rg.T  # R = Qf core Qg^T
        return self._Qf, self._core, self._Qg

    @property
    def sqnorm(self) -> float:
        _, C, _ = self._qr()
        return float(np.vdot(C, C).real)

    def exact_svd(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All singular triples: two thin QRs and the SVD of the small core (K×K at most)."""
        if self._svd is None:
            Qf, C, Qg = self._qr()
            W, s, Zh = np.linalg.svd(C, full_matrices=False)
            self._svd = (Qf @ W, s, Zh @ Qg.T)
        return self._svd


class OperatorR:
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
        self.M = M
        (self.m1, self.n1), (self.m2, self.n2) = shapes
        self.shape = (self.m1 * self.n1, self.m2 * self.n2)
        self.dtype = np.dtype(M.dtype) if np.dtype(M.dtype).kind in "fc" else np.dtype(float)
        self.sqnorm = None
        self.n_products = 0

    def _apply(self, Z: np.ndarray) -> np.ndarray:
        self.n_products += Z.shape[1]
        out = np.asarray(self.M.matmat(Z))
        if out.shape != (self.m1 * self.m2, Z.shape[1]):
            raise ValueError(
                f"`M.matmat` returned shape {out.shape}, expected {(self.m1 * self.m2, Z.shape[1])}"
            )
        return out

    def _rvec(self, x: np.ndarray) -> np.ndarray:
        m1, n1, m2, n2 = self.m1, self.n1, self.m2, self.n2
        V = x.reshape(m2, n2)
        Uv, sv, Wh = np.linalg.svd(V, full_matrices=False)
        out = np.zeros((m1, n1), dtype=np.result_type(self.dtype, x.dtype))
        eye = np.eye(n1)
        for l in range(sv.size):
            if sv[l] == 0.0:
                break
            Z = np.kron(eye, Wh[l][:, None])  # column j = e_j ⊗ w_l, shape (n1*n2, n1)
            Y = self._apply(Z).reshape(m1, m2, n1)
            out += sv[l] * np.einsum("iaj,a->ij", Y, Uv[:, l])
        return out.ravel()

    def _rtvec(self, y: np.ndarray) -> np.ndarray:
        m1, n1, m2, n2 = self.m1, self.n1, self.m2, self.n2
        U = y.reshape(m1, n1)
        Xu, su, Yh = np.linalg.svd(U, full_matrices=False)
        out = np.zeros((m2, n2), dtype=np.result_type(self.dtype, y.dtype))
        eye = np.eye(n2)
        for l in range(su.size):
            if su[l] == 0.0:
                break
            Z = np.kron(Yh[l][:, None], eye)  # column b = y_l ⊗ e_b, shape (n1*n2, n2)
            Y = self._apply(Z).reshape(m1, m2, n2)
            out += su[l] * np.einsum("iab,i->ab", Y, Xu[:, l])
        return out.ravel()

    def matmat(self, X: np.ndarray) -> np.ndarray:
        return np.stack([self._rvec(X[:, c]) for c in range(X.shape[1])], axis=1)

    def rmatmat(self, Y: np.ndarray) -> np.ndarray:
        # R^H y = conj(R^T conj(y))
        cols = [np.conj(self._rtvec(np.conj(Y[:, c]))) for c in range(Y.shape[1])]
        return np.stack(cols, axis=1)


# -- samples ------------------------------------------------------------------------------

class SamplesR:
    """``R(M)`` for ``M = (1/N) Σ_n vec(X_n) vec(X_n)^T`` (``X_n`` already centred), never formed.

    ``R(M) = (1/N) Σ_n X_n ⊗ X_n`` (``p²×q²``); ``R vec(V) = vec((1/N) Σ X_n V X_n^T)`` and
    ``R^T vec(U) = vec((1/N) Σ X_n^T U X_n)``. The samples are held as chunks of ``(p, c, q)``
    layout (see :func:`kronkit._samples.layout`); each product is two GEMMs per chunk, cost
    ``O(N·p·q·(p+q))``, memory ``O(N·p·q + p² + q²)``.
    """

    kind = "samples"

    def __init__(self, chunks: Sequence[np.ndarray], n_total: int):
        self.chunks = list(chunks)
        self.p, _, self.q = self.chunks[0].shape
        self.n_total = int(n_total)
        self.shape = (self.p * self.p, self.q * self.q)
        self.dtype = np.dtype(np.float64)
        self._sqnorm: float | None = None
        self.n_products = 0

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

    def matmat(self, X: np.ndarray) -> np.ndarray:
        return np.stack([self._one(X[:, c], True) for c in range(X.shape[1])], axis=1)

    def rmatmat(self, Y: np.ndarray) -> np.ndarray:
        # R is real, so R^H = R^T
        return np.stack([self._one(Y[:, c], False) for c in range(Y.shape[1])], axis=1)

    @property
    def sqnorm(self) -> float:
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


def _chunk_products(block: np.ndarray, *, mean: np.ndarray | None, mats: np.ndarray,
                    left: bool) -> np.ndarray:
    """Per-chunk partial sums ``Σ_n X_n V X_n^T`` (``left``) or ``Σ_n X_n^T U X_n`` for a stack.

    ``block`` is ``(n, p, q)``; ``mats`` is ``(k, q, q)`` or ``(k, p, p)``; returns ``(k, p, p)``
    or ``(k, q, q)``, unnormalised. The same kernels as :class:`SamplesR`.
    """
    Xt = layout(np.asarray(block, dtype=np.float64), mean)
    kernel = row_sandwich if left else col_sandwich
    return np.stack([kernel(Xt, V) for V in mats])


class ChunkedSamplesR:
    """``R(M)`` of the sample covariance of samples held as a dask array (N, p, q), chunked along N.

    Same products as :class:`SamplesR`, ``R vec(V) = vec((1/N) Σ_n X_n V X_n^T)`` and
    ``R^T vec(U) = vec((1/N) Σ_n X_n^T U X_n)``, but each block product (all columns of ``X``
    at once) is **one pass** over the data: every chunk is centred and laid out where it lives
    (:func:`kronkit._samples.layout`), its partial sums come back (``k`` matrices of p×p or q×q) and are
    added in a tree (:func:`kronkit._dask.tree_reduce_chunks`). ``sqnorm`` is given by the
    caller (``None`` when not computed). ``passes`` counts the passes made.
    """

    kind = "samples"

    def __init__(self, X: Any, mean: np.ndarray | None, sqnorm: float | None):
        self.X = X
        self.n_total, self.p, self.q = (int(v) for v in X.shape)
        self.mean = mean
        self.shape = (self.p * self.p, self.q * self.q)
        self.dtype = np.dtype(np.float64)
        self.sqnorm = sqnorm
        self.n_products = 0
        self.passes = 0

    def _pass(self, cols: np.ndarray, left: bool) -> np.ndarray:
        from functools import partial

        from .._dask import add_nested, tree_reduce_chunks

        k = cols.shape[1]
        self.n_products += k
        self.passes += 1
        parts = [cols.real] + ([cols.imag] if np.iscomplexobj(cols) else [])
        side = self.q if left else self.p
        mats = np.concatenate([np.ascontiguousarray(c.T).reshape(k, side, side) for c in parts])
        fn = partial(_chunk_products, mean=self.mean, mats=mats, left=left)
        out = tree_reduce_chunks(self.X, fn, add_nested)
        if not np.isfinite(out).all():
            raise ValueError("`X` contains NaN or Inf (a product with the sample covariance "
                             "is not finite)")
        out = out.reshape(len(parts) * k, -1).T / self.n_total
        return out[:, :k] + 1j * out[:, k:] if len(parts) == 2 else out

    def matmat(self, X: np.ndarray) -> np.ndarray:
        return self._pass(np.asarray(X), True)

    def rmatmat(self, Y: np.ndarray) -> np.ndarray:
        return self._pass(np.asarray(Y), False)  # R is real, so R^H = R^T


class ProjectedR:
    """``Q_A^T R Q_B`` for real orthonormal bases (ndarray or sparse, columns orthonormal)."""

    kind = "projected"

    def __init__(self, base: Any, QA: Any, QB: Any):
        self.base, self.QA, self.QB = base, QA, QB
        self.shape = (QA.shape[1], QB.shape[1])
        self.dtype = base.dtype
        self.sqnorm = None

    def matmat(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(self.QA.T @ self.base.matmat(np.asarray(self.QB @ X)))

    def rmatmat(self, Y: np.ndarray) -> np.ndarray:
        return np.asarray(self.QB.T @ self.base.rmatmat(np.asarray(self.QA @ Y)))


def project(op: Any, QA: Any, QB: Any) -> Any:
    """The operator of ``Q_A^T R Q_B`` in coordinates (dense and low-rank stay explicit)."""
    if isinstance(op, DenseR):
        left = QA.T @ op.R  # sparse @ (dense or sparse)
        if sp.issparse(left):
            left = left.toarray()
        core = np.asarray((QB.T @ np.asarray(left).T).T)
        return DenseR(core)
    if isinstance(op, LowRankR):
        return LowRankR(np.asarray(QA.T @ op.F), np.asarray(QB.T @ op.G))
    return ProjectedR(op, QA, QB)


def densify(op: Any, block: int = 64) -> np.ndarray:
    """The explicit ``R`` from ``min(a, b)`` products with ``op`` (identity in column blocks)."""
    a, b = op.shape
    if isinstance(op, DenseR):
        return op.dense()
    if a <= b:
        out = np.empty((a, b), dtype=op.dtype)
        for s in range(0, a, block):
            e = min(a, s + block)
            E = np.zeros((a, e - s), dtype=op.dtype)
            E[np.arange(s, e), np.arange(e - s)] = 1.0
            out[s:e] = op.rmatmat(E).conj().T
        return out
    out = np.empty((a, b), dtype=op.dtype)
    for s in range(0, b, block):
        e = min(b, s + block)
        E = np.zeros((b, e - s), dtype=op.dtype)
        E[np.arange(s, e), np.arange(e - s)] = 1.0
        out[:, s:e] = op.matmat(E)
    return out


# ----------------------------------------------------------------------------------------
# structure bases: real orthonormal columns, sparse (m*n, d) in row-major vec order
# ----------------------------------------------------------------------------------------

_SQRT_HALF = math.sqrt(0.5)


def _sparse_basis(size: int, rows: np.ndarray, cols: np.ndarray, w: np.ndarray, d: int):
    return sp.csr_matrix((w.astype(float), (rows, cols)), shape=(size, d))


def symmetric_basis(m: int):
    """Orthonormal basis of symmetric m×m matrices (dimension m(m+1)/2)."""
    i, j = np.triu_indices(m)
    cols = np.arange(i.size)
    off = i != j
    rows = np.concatenate([i * m + j, (j * m + i)[off]])
    c = np.concatenate([cols, cols[off]])
    w = np.concatenate([np.where(off, _SQRT_HALF, 1.0), np.full(int(off.sum()), _SQRT_HALF)])
    return _sparse_basis(m * m, rows, c, w, i.size)


def skew_basis(m: int):
    """Orthonormal basis of skew-symmetric m×m matrices (dimension m(m-1)/2)."""
    i, j = np.triu_indices(m, 1)
    cols = np.arange(i.size)
    rows = np.concatenate([i * m + j, j * m + i])
    w = np.concatenate([np.full(i.size, _SQRT_HALF), np.full(i.size, -_SQRT_HALF)])
    return _sparse_basis(m * m, rows, np.concatenate([cols, cols]), w, i.size)


def _grouped_basis(m: int, n: int, key: np.ndarray, keep: np.ndarray | None = None):
    """Basis whose columns are the normalised indicators of the groups ``key`` (m×n array)."""
    flat = key.ravel()
    idx = np.arange(m * n)
    if keep is not None:
        idx = idx[keep.ravel()]
        flat = flat[keep.ravel()]
    uniq, col = np.unique(flat, return_inverse=True)
    counts = np.bincount(col)
    return _sparse_basis(m * n, idx, col, 1.0 / np.sqrt(counts[col]), uniq.size)


def linear_basis(spec: Any, m: int, n: int, name: str):
    """The basis of one factor's linear structure, or ``None`` for no constraint."""
    I, J = np.meshgrid(np.arange(m), np.arange(n), indexing="ij")
    if spec is None or (isinstance(spec, str) and spec == "general"):
        return None
    if isinstance(spec, str):
        square_only = {"symmetric", "skew", "circulant"}
        if spec in square_only and m != n:
            raise ValueError(f"`{name}`={spec!r} needs a square factor, got shape {(m, n)}")
        if spec == "symmetric":
            return symmetric_basis(m)
        if spec == "skew":
            if m < 2:
                raise ValueError(f"`{name}`='skew' needs a factor of size >= 2, got {(m, n)}")
            return skew_basis(m)
        if spec == "toeplitz":
            return _grouped_basis(m, n, J - I)
        if spec == "hankel":
            return _grouped_basis(m, n, I + J)
        if spec == "circulant":
            return _grouped_basis(m, n, (J - I) % m)
        if spec == "diagonal":
            return _grouped_basis(m, n, I * n + J, keep=(I == J))
        if spec == "upper":
            return _grouped_basis(m, n, I * n + J, keep=(J >= I))
        if spec == "lower":
            return _grouped_basis(m, n, I * n + J, keep=(J <= I))
        raise ValueError(
            f"`{name}` must be one of 'general', 'symmetric', 'skew', 'toeplitz', 'hankel', "
            f"'circulant', 'diagonal', 'upper', 'lower', ('banded', lower, upper) or a basis "
            f"array of shape ({m * n}, d), got {spec!r}"
        )
    if isinstance(spec, tuple) and len(spec) == 3 and spec[0] == "banded":
        lo, up = spec[1], spec[2]
        if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 0
                   for v in (lo, up)):
            raise ValueError(f"`{name}`=('banded', lower, upper) needs ints >= 0, got {spec!r}")
        keep = (J - I >= -int(lo)) & (J - I <= int(up))
        return _grouped_basis(m, n, I * n + J, keep=keep)
    if isinstance(spec, np.ndarray) or sp.issparse(spec):
        Q = spec.toarray() if sp.issparse(spec) else spec
        if Q.ndim != 2 or Q.shape[0] != m * n or Q.shape[1] < 1:
            raise ValueError(f"`{name}` basis must have shape ({m * n}, d) with d >= 1, "
                             f"got {Q.shape}")
        if Q.dtype.kind not in "biuf":
            raise TypeError(f"`{name}` basis must be real, got dtype {Q.dtype}")
        Q = np.asarray(Q, dtype=float)
        if not np.isfinite(Q).all():
            raise ValueError(f"`{name}` basis contains NaN or Inf")
        Qo, Rr = np.linalg.qr(Q)
        dg = np.abs(np.diagonal(Rr))
        if dg.size == 0 or dg.min() <= 1e-10 * max(dg.max(), np.finfo(float).tiny):
            raise ValueError(f"`{name}` basis columns must be linearly independent "
                             f"(rank < {Q.shape[1]})")
        return Qo
    raise TypeError(f"`{name}` must be a structure name, ('banded', lower, upper) or a basis "
                    f"array, got {type(spec).__name__}")


# ----------------------------------------------------------------------------------------
# the SVD engine
# ----------------------------------------------------------------------------------------


@dataclass
class SVDOut:
    U: np.ndarray  # (a, r)
    s: np.ndarray  # (r,), descending
    Vh: np.ndarray  # (r, b)
    all_s: np.ndarray | None  # the full spectrum when it was computed
    method: str


DEFAULT_TOL = 1e-12


def full_is_cheaper(op: Any, k: int) -> bool:
    """Heuristic choice between a full SVD and an iterative one for the top ``k`` triples."""
    m = min(op.shape)
    if k >= m - 1:
        return True
    if isinstance(op, DenseR) and not op.is_sparse:
        return m <= 64 or 6 * k >= m
    # forming R costs m products; Lanczos needs at least ncv ~ max(2k+1, 20) of them, usually 2-4x
    return m <= 2 * max(2 * k + 1, 20)


def _sorted(U: np.ndarray, s: np.ndarray, Vh: np.ndarray):
    order = np.argsort(-s, kind="stable")
    return U[:, order], s[order], Vh[order]


def _full(R: np.ndarray, k: int | None, method: str) -> SVDOut:
    U, s, Vh = np.linalg.svd(R, full_matrices=False)
    r = s.size if k is None else k
    return SVDOut(U[:, :r], s[:r], Vh[:r], s, method)


def top_svd(op: Any, k: int | None, *, method: str = "auto", tol: float = DEFAULT_TOL,
            rng: np.random.Generator, maxiter: int | None = None) -> SVDOut:
    """Top ``k`` singular triples of the R-operator ``op`` (all of them when ``k`` is None).

    ``method``: ``"auto"`` (full SVD when cheaper, else Lanczos), ``"dense"`` (explicit R and
    LAPACK), ``"lanczos"`` (thick-restart Lanczos, :func:`_lanczos`), ``"randomized"``
    (block subspace iteration with a convergence test). A low-rank operator is always exact.
    """
    if isinstance(op, LowRankR):
        U, s, Vh = op.exact_svd()
        r = s.size if k is None else min(k, s.size)
        if k is not None and k > s.size:  # more terms asked than stored: pad with null vectors
            U, s, Vh = _pad(U, s, Vh, k, op.shape, op.dtype)
            r = k
        return SVDOut(U[:, :r], s[:r], Vh[:r], s, "lowrank")
    if k is None or method == "dense" or (method == "auto" and full_is_cheaper(op, k)) \
            or k >= min(op.shape) - 1:
        return _full(densify(op), k, "dense")
    if method == "randomized":
        return _randomized(op, k, tol=tol, rng=rng, maxiter=maxiter)
    return _lanczos(op, k, tol=tol, rng=rng, maxiter=maxiter)


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


#: Lanczos basis size cap (columns) and the number of Ritz vectors kept at a thick restart
LANCZOS_MAX_BASIS = 120
#: a wanted value whose relative gap to its neighbours is below this counts as clustered: only
#: its singular value (not its individual vectors) is converged to ``tol`` (see _lanczos)
CLUSTER_RELGAP = 0.01
LANCZOS_DEFAULT_MAXITER = 2000


def _lanczos(op: Any, k: int, *, tol: float, rng: np.random.Generator,
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
    V = np.empty((n, mmax), dtype=dtype)
    W = np.empty((m_other, mmax), dtype=dtype)
    AV = np.empty((n, mmax), dtype=dtype)
    G = np.zeros((mmax, mmax), dtype=dtype)
    m = 0
    x = _start(rng, n, dtype)
    x = x / np.linalg.norm(x)
    converged = False
    th = np.zeros(0)
    Z = np.zeros((0, 0), dtype=dtype)
    for _step in range(maxiter):
        w = fwd(x[:, None])[:, 0]
        z = bwd(w[:, None])[:, 0]
        V[:, m], W[:, m], AV[:, m] = x, w, z
        g = W[:, : m + 1].conj().T @ w
        G[: m + 1, m] = g
        G[m, : m + 1] = g.conj()
        G[m, m] = g[m].real
        m += 1
        th, Z = np.linalg.eigh(G[:m, :m])
        th, Z = np.maximum(th[::-1], 0.0), Z[:, ::-1]
        l = min(m, k + 1)
        Y = V[:, :m] @ Z[:, :l]
        Res = AV[:, :m] @ Z[:, :l] - Y * th[:l]
        rn = np.linalg.norm(Res, axis=0)
        if m >= k:
            floor = 10.0 * math.sqrt(n) * eps * th[0]
            if m == n or _lanczos_done(th, rn, k, tol, floor):
                converged = True
                break
        # the next Krylov direction: in exact arithmetic every Ritz residual is parallel to it
        j = int(np.argmax(rn))
        x = Res[:, j]
        if m == mmax:  # thick restart: keep the leading Ritz vectors
            Zk = Z[:, :keep]
            V[:, :keep] = V[:, :m] @ Zk
            W[:, :keep] = W[:, :m] @ Zk
            AV[:, :keep] = AV[:, :m] @ Zk
            G[:keep, :keep] = np.diag(th[:keep])
            G[keep:, :] = 0.0
            G[:, keep:] = 0.0
            m = keep
        for _ in range(2):
            x = x - V[:, :m] @ (V[:, :m].conj().T @ x)
        nx = float(np.linalg.norm(x))
        if not nx > 1e-10 * max(float(rn[j]), 1e-300):  # Krylov space exhausted: restart it
            x = _start(rng, n, dtype)
            for _ in range(2):
                x = x - V[:, :m] @ (V[:, :m].conj().T @ x)
            nx = float(np.linalg.norm(x))
        x = x / nx
    if not converged:
        warnings.warn(
            f"Lanczos did not reach tol={tol:g} for the top {k} Kronecker singular values in "
            f"{maxiter} steps (maxiter); returning the current estimates",
            ConvergenceWarning, stacklevel=3,
        )
    s = np.sqrt(th[:k])
    Zk = Z[:, :k]
    Vk = V[:, :m] @ Zk  # unit right (or left) vectors
    Wk = W[:, :m] @ Zk  # R Vk (or R^H Vk), columns of norm s
    Uo = Wk / np.where(s > 0, s, 1.0)
    # tiny singular values (R of lower rank): R v / s is rounding noise, not orthogonal to
    # the other columns; orthonormalise those columns against the good ones
    ok = s > 1e-8 * (float(s[0]) if s.size else 0.0)
    if not ok.all():
        Uo = _complete(Uo, ok, rng)
    if b <= a:
        U, Vh = Uo, Vk.conj().T
    else:
        U, Vh = Vk, Uo.conj().T
    return SVDOut(U, s, Vh, None, "lanczos")


def _lanczos_done(th: np.ndarray, rn: np.ndarray, k: int, tol: float, floor: float) -> bool:
    """The stopping rule of :func:`_lanczos` for the top ``k`` Ritz values."""
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


def _randomized(op: Any, k: int, *, tol: float, rng: np.random.Generator,
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


def rng_from(random_state: Any) -> np.random.Generator:
    if isinstance(random_state, np.random.Generator):
        return random_state
    if random_state is None or isinstance(random_state, (int, np.integer)):
        return np.random.default_rng(random_state)
    raise TypeError(f"`random_state` must be None, an int or a numpy Generator, "
                    f"got {random_state!r}")


def check_method(method: Any) -> str:
    allowed = ("auto", "dense", "lanczos", "randomized")
    if method not in allowed:
        raise ValueError(f"`method` must be one of {allowed}, got {method!r}")
    return str(method)

