r"""Kronecker PCA: a covariance ``≈ Σ_{k≤r} A_k⊗B_k`` from samples, and the sum-of-Kron operator.

Kronecker PCA (Tsiligkaridis & Hero 2013) approximates the sample covariance
``S = (1/N) Σ_n e_n e_nᵀ`` (``e_n = vec(X_n − M)``, P×P, never formed) by the sum of its first
``r`` Kronecker-product SVD terms ``Σ_k σ_k A_k⊗B_k``, the best Frobenius approximation with
``r`` Kronecker terms; the KPSVD comes from :func:`kronkit.kpsvd_samples`, matrix-free.
Optionally the singular values are soft-thresholded, ``σ_k ← max(σ_k − τ, 0)`` (the
nuclear-norm penalised estimator of the rearranged covariance).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from .._checks import as_float, check_scalar
from .._dask import is_dask_array
from .._errors import NotPositiveDefiniteError
from .._factor import Factorization, mode_solve
from .._kron import Kron
from .._samples import as_dask_samples, as_samples, chunked_mean

__all__ = ["KroneckerPCAResult", "SumOfKron", "kronecker_pca"]

_LOG_2PI = math.log(2.0 * math.pi)
#: Sums of three or more Kronecker terms are factorised densely (O(P³)) up to this P.
DENSE_MAX_P = 4096


class _Whitened(NamedTuple):
    """``Σ = (W_A⊗W_B) diag(vec lam) (W_A⊗W_B)ᵀ`` with ``W_A = L_A U``, ``W_B = L_B V``."""

    fA: Factorization
    fB: Factorization
    U: np.ndarray
    V: np.ndarray
    lam: np.ndarray  # (p, q)
    logdet: float


class SumOfKron:
    r"""A sum of Kronecker products ``M = Σ_k A_k⊗B_k`` as an operator (never formed densely).

    Parameters
    ----------
    terms : sequence of Kron, or of (A_k, B_k) pairs
        At least one term; every term has two square factors of the same shapes
        ``(p, p)`` and ``(q, q)``. Stored as :class:`~kronkit.Kron` (copied, read-only).

    Notes
    -----
    ``matvec`` costs O(r·P·(p+q)) per row. :meth:`logdet`, :meth:`inv_quad` and
    :meth:`logpdf` (a Gaussian with covariance ``M``) need ``M`` positive definite and use:

    * ``r ≤ 2`` with the first term's factors symmetric positive definite (after a common
      sign flip) and the second term's symmetric: the simultaneous diagonalisation
      ``A_1⁻½A_2A_1⁻½ = U diag(c) Uᵀ``, ``B_1⁻½B_2B_1⁻½ = V diag(d) Vᵀ``, so
      ``M = (L_AU⊗L_BV)(I + diag(c)⊗diag(d))(L_AU⊗L_BV)ᵀ`` — O(p³ + q³) once and
      O(P·(p+q)) per row;
    * otherwise the dense P×P matrix and its Cholesky factor, O(P³), for ``P ≤ DENSE_MAX_P``
      (4096); larger ``P`` raises ``ValueError``.

    Dense equivalent: ``sum(np.kron(A_k, B_k) for k ...)``.
    """

    def __init__(self, terms: Sequence[Any]):
        if isinstance(terms, Kron):
            terms = [terms]
        try:
            items = list(terms)
        except TypeError as exc:
            raise TypeError(f"`terms` must be a sequence of Kron or (A, B) pairs, got "
                            f"{type(terms).__name__}") from exc
        if not items:
            raise ValueError("`terms` must hold at least one term, got none")
        out: list[Kron] = []
        for k, t in enumerate(items):
            K = t if isinstance(t, Kron) else Kron(*t)
            if K.n_factors != 2 or not K.is_square:
                raise ValueError(f"`terms[{k}]` must have two square factors, got {K!r}")
            if out and K.col_dims != out[0].col_dims:
                raise ValueError(f"`terms[{k}]` has factor sizes {K.col_dims}, expected "
                                 f"{out[0].col_dims} like terms[0]")
            out.append(K)
        self._terms: tuple[Kron, ...] = tuple(out)
        self._structure: Any = None

    # -- attributes ---------------------------------------------------------------------
    @property
    def terms(self) -> tuple[Kron, ...]:
        """The terms ``A_k⊗B_k`` as :class:`~kronkit.Kron` operators."""
        return self._terms

    @property
    def n_terms(self) -> int:
        return len(self._terms)

    @property
    def dims(self) -> tuple[int, int]:
        """``(p, q)``."""
        return self._terms[0].col_dims  # type: ignore[return-value]

    @property
    def shape(self) -> tuple[int, int]:
        return self._terms[0].shape

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        p, q = self.dims
        return f"SumOfKron({self.n_terms} term(s) of {p}×{p} ⊗ {q}×{q}, shape={self.shape})"

    # -- products -----------------------------------------------------------------------
    def matvec(self, Y: Any) -> np.ndarray:
        """``M @ y`` for rows ``Y`` of shape ``(..., P)``: ``Σ_k (A_k⊗B_k) y``."""
        out = self._terms[0].matvec(Y)
        for K in self._terms[1:]:
            out = out + K.matvec(Y)
        return out

    def __matmul__(self, Y: Any) -> np.ndarray:
        return self.matvec(Y)

    def to_dense(self) -> np.ndarray:
        """``Σ_k np.kron(A_k, B_k)`` (allocates P×P)."""
        out = self._terms[0].to_dense()
        for K in self._terms[1:]:
            out = out + K.to_dense()
        return out

    def trace(self) -> float:
        """``Σ_k tr A_k · tr B_k``."""
        return float(sum(K.trace() for K in self._terms))

    def diag(self) -> np.ndarray:
        """The diagonal (length P)."""
        return sum(K.diag() for K in self._terms)  # type: ignore[return-value]

    # -- Gaussian quantities --------------------------------------------------------------
    def _whitened(self) -> _Whitened | None:
        """The simultaneous-diagonalisation form for r ≤ 2, or None if it does not apply."""
        if self.n_terms > 2:
            return None
        A1, B1 = self._terms[0].factors
        sign = 1.0 if np.trace(A1) >= 0 else -1.0
        fA = Factorization(sign * A1, 0)
        fB = Factorization(sign * B1, 1)
        if fA.kind != "cholesky" or fB.kind != "cholesky":
            return None
        p, q = self.dims
        if self.n_terms == 1:
            U, V = np.eye(p), np.eye(q)
            c, d = np.zeros(p), np.zeros(q)
        else:
            A2, B2 = self._terms[1].factors
            if not (_is_symmetric(A2) and _is_symmetric(B2)):
                return None
            CA = _congruence(fA, A2)
            CB = _congruence(fB, B2)
            c, U = np.linalg.eigh(CA)
            d, V = np.linalg.eigh(CB)
        lam = 1.0 + np.outer(c, d)
        if not np.all(lam > 0):
            raise NotPositiveDefiniteError(
                f"the sum of Kronecker terms is not positive definite: its eigenvalues relative to "
                f"the first term, 1 + c_i·d_j, reach {lam.min():.6g} <= 0"
            )
        logdet = q * _chol_logdet(fA) + p * _chol_logdet(fB) + float(np.sum(np.log(lam)))
        return _Whitened(fA, fB, U, V, lam, logdet)

    def _factorize(self) -> Any:
        if self._structure is None:
            w = self._whitened()
            if w is not None:
                self._structure = w
            else:
                P = self.shape[0]
                if P > DENSE_MAX_P:
                    raise ValueError(
                        f"the log-determinant and solves of a sum of {self.n_terms} Kronecker "
                        f"terms need the dense P×P matrix here; P = {P} exceeds DENSE_MAX_P = "
                        f"{DENSE_MAX_P} (use n_terms <= 2)"
                    )
                M = self.to_dense()
                M = 0.5 * (M + M.T)
                f = Factorization(M, 0)
                if f.kind != "cholesky":
                    ev = float(np.linalg.eigvalsh(M)[0])
                    raise NotPositiveDefiniteError(
                        f"the sum of {self.n_terms} Kronecker terms is not positive definite "
                        f"(smallest eigenvalue {ev:.6g})"
                    )
                self._structure = f
        return self._structure

    @property
    def is_positive_definite(self) -> bool:
        """Whether ``M`` is symmetric positive definite (factorises it if needed)."""
        try:
            self._factorize()
        except NotPositiveDefiniteError:
            return False
        return True

    def logdet(self) -> float:
        """``log det M`` (``M`` positive definite; NotPositiveDefiniteError otherwise)."""
        s = self._factorize()
        if isinstance(s, _Whitened):
            return s.logdet
        return _chol_logdet(s)

    def inv_quad(self, Y: Any) -> Any:
        """``yᵀ M⁻¹ y`` for rows ``Y`` of shape (P,) or (N, P); O(P·(p+q)) per row (r ≤ 2)."""
        arr = as_float(Y, "Y", ndim=(1, 2), dtype=np.float64)
        P = self.shape[0]
        if arr.shape[-1] != P:
            raise ValueError(f"`Y` must have length {P} in its last axis, got shape {arr.shape}")
        single = arr.ndim == 1
        W = arr.reshape(-1, P)
        s = self._factorize()
        if isinstance(s, _Whitened):
            p, q = self.dims
            T = mode_solve(W.reshape(-1, p, q), s.fA, 0, 2, tri=True)
            T = mode_solve(T, s.fB, 1, 2, tri=True)
            Z = s.U.T @ T @ s.V  # (N, p, q)
            out = np.einsum("nij,nij->n", Z * (1.0 / s.lam), Z)
        else:
            Z = s.tri_solve(W.T)
            out = np.einsum("ij,ij->j", Z, Z)
        return float(out[0]) if single else out

    def logpdf(self, Y: Any, mean: Any = None) -> Any:
        """Gaussian ``log N(y; μ, M) = −½(P log 2π + log det M + (y−μ)ᵀM⁻¹(y−μ))``."""
        arr = as_float(Y, "Y", ndim=(1, 2), dtype=np.float64)
        if mean is not None:
            arr = arr - as_float(mean, "mean", ndim=1, dtype=np.float64)
        return -0.5 * (self.shape[0] * _LOG_2PI + self.logdet() + self.inv_quad(arr))


def _is_symmetric(M: np.ndarray) -> bool:
    scale = float(np.max(np.abs(M))) if M.size else 0.0
    return bool(np.max(np.abs(M - M.T)) <= 64 * np.finfo(np.float64).eps * scale)


def _congruence(f: Factorization, M: np.ndarray) -> np.ndarray:
    """``L⁻¹ M L⁻ᵀ`` (symmetrised) for the Cholesky factor ``L`` of ``f``."""
    H = f.tri_solve(M)
    C = f.tri_solve(H.T)
    return 0.5 * (C + C.T)


def _chol_logdet(f: Factorization) -> float:
    return float(2.0 * np.sum(np.log(np.diagonal(f.lu))))


class KroneckerPCAResult(NamedTuple):
    r"""The result of :func:`kronecker_pca`.

    Attributes
    ----------
    covariance : SumOfKron
        ``Σ_{k≤r'} σ̃_k A_k⊗B_k`` (terms with shrunk ``σ̃_k = 0`` dropped, so ``r' ≤ r``);
        the first term's factors are symmetric positive definite when the sample covariance is.
    singular_values : ndarray of shape (r,)
        The Kronecker singular values ``σ_k`` of the sample covariance (before shrinkage).
    explained_energy : ndarray of shape (r,), or None
        ``Σ_{j≤k} σ_j² / ‖S‖_F²``: the fraction of the squared Frobenius norm of the sample
        covariance captured by the first ``k`` terms. ``None`` when ``‖S‖_F`` was not
        computed: a dask ``X`` with ``P > 1024`` (it needs P×P partial sums per chunk).
    total_energy : float or None
        ``‖S‖_F² = (1/N²) Σ_{n,m} (e_nᵀ e_m)²`` (``None`` as for ``explained_energy``).
    location : ndarray of shape (p, q)
        The sample mean (zeros with ``assume_centered``).
    """

    covariance: SumOfKron
    singular_values: np.ndarray
    explained_energy: np.ndarray | None
    total_energy: float | None
    location: np.ndarray


def _check_n_terms(n_terms: Any, p: int, q: int) -> int:
    if isinstance(n_terms, bool) or not isinstance(n_terms, numbers.Integral) or int(n_terms) < 1:
        raise ValueError(f"`n_terms` must be an int >= 1, got {n_terms!r}")
    rmax = min(p * p, q * q)
    if int(n_terms) > rmax:
        raise ValueError(f"`n_terms` must be <= min(p², q²) = {rmax} for (p, q) = ({p}, {q}), "
                         f"got {n_terms}")
    return int(n_terms)


def kronecker_pca(
    X: Any,
    n_terms: int = 1,
    *,
    shrinkage: float | None = None,
    assume_centered: bool = False,
    shape: Any = None,
) -> KroneckerPCAResult:
    r"""Kronecker PCA: the sample covariance approximated by ``r`` Kronecker terms.

    Parameters
    ----------
    X : array_like of shape (N, p, q), or (N, P) with ``shape=(p, q)``
        Observations; not modified. 2-D ``X`` without ``shape`` is ``(p, q) = (P, 1)``.
        A ``dask.array`` chunked along N is processed where its chunks live (see Notes).
    n_terms : int
        ``r``, the number of Kronecker terms (``1 ≤ r ≤ min(p², q²)``).
    shrinkage : float, optional
        Soft threshold ``τ ≥ 0`` applied to the Kronecker singular values,
        ``σ̃_k = max(σ_k − τ, 0)``; terms that vanish are dropped.
    assume_centered : bool
        If true the mean is zero; otherwise the sample mean is subtracted.
    shape : (int, int), optional
        ``(p, q)`` for 2-D ``X``.

    Returns
    -------
    KroneckerPCAResult
        ``covariance`` (:class:`SumOfKron`), ``singular_values``, ``explained_energy``,
        ``total_energy``, ``location``.

    Notes
    -----
    ``S = (1/N) Σ_n e_n e_nᵀ``; its rearrangement ``R(S) = (1/N) Σ_n E_n⊗E_n`` is applied
    matrix-free by :func:`kronkit.kpsvd_samples` (O(N·p·q·(p+q)) per product), never forming
    the P×P matrix. ``‖S‖_F²`` comes from the ``min(N, P)``-sized Gram matrix of the samples,
    O(N·P·min(N, P)). Dense equivalent: ``kpsvd(np.cov(X.reshape(N, -1).T, bias=True),
    ((p, p), (q, q)), rank=r)``.

    For a dask ``X``: one pass for the mean, then :func:`kronkit.kpsvd_samples` with each chunk
    centred where it lives — one pass per block product, only p×p / q×q partial sums travel
    (the same SVD as in memory); ``‖S‖_F`` (for ``explained_energy``) costs one more pass
    with P×P partial sums and is skipped above ``P = 1024``.
    """
    chunked = is_dask_array(X)
    Xs = as_dask_samples(X, shape) if chunked else as_samples(X, shape)
    N, p, q = (int(v) for v in Xs.shape)
    r = _check_n_terms(n_terms, p, q)
    if N < 2 and not assume_centered:
        raise ValueError(f"`X` has n_samples = {N}; a sample covariance with the mean estimated "
                         "needs at least 2 observations")
    tau = None
    if shrinkage is not None:
        tau = check_scalar(shrinkage, "shrinkage")
        if tau < 0:
            raise ValueError(f"`shrinkage` must be >= 0 (a soft threshold), got {tau}")
    from .._kpsvd.decompose import kpsvd_samples

    M = np.zeros((p, q)) if assume_centered else None
    # structure="psd": symmetric terms, the leading one with SPD factors (tr A_0 > 0).
    if chunked:
        from .._kpsvd.core import DEFAULT_TOL
        from .._kpsvd.decompose import _kpsvd_samples_chunked

        if M is None:
            M = chunked_mean(Xs)  # one pass (and the NaN/Inf check)
        # the mean is subtracted inside each product's chunk layout
        res = _kpsvd_samples_chunked(Xs, r, center=not assume_centered, mean=M, method="auto",
                                     random_state=None, tol=DEFAULT_TOL, structure="psd",
                                     maxiter=None)
    else:
        if M is None:
            M = Xs.mean(axis=0)
        res = kpsvd_samples(Xs - M, r, center=False, structure="psd")
    # ‖S‖_F², from the Gram matrix of the samples (None: a dask X with P > 1024)
    total = None if res.norm is None else float(res.norm) ** 2
    s = np.asarray(res.s, dtype=np.float64)
    if not (s[0] > 0 if total is None else total > 0):
        raise ValueError("the sample covariance of `X` is zero (all observations equal after "
                         "centring); there is nothing to approximate")
    A = np.asarray(res.A, dtype=np.float64)
    B = np.asarray(res.B, dtype=np.float64)
    energy = None if total is None else np.cumsum(s**2) / total
    st = s if tau is None else np.maximum(s - tau, 0.0)
    keep = np.flatnonzero(st > 0)
    if keep.size == 0:
        raise ValueError(
            f"`shrinkage` = {tau} removes every term (largest Kronecker singular value "
            f"{s.max():.6g}); use a smaller threshold"
        )
    cov = SumOfKron([Kron(st[k] * A[k], B[k]) for k in keep])
    return KroneckerPCAResult(cov, s.copy(), energy, total, M.copy())
