r"""Kronecker PCA: a covariance ``≈ Σ_{k≤r} A_k⊗B_k`` from samples (a :class:`~kronkit.SumOfKron`).

Kronecker PCA (Tsiligkaridis & Hero 2013) approximates the sample covariance
``S = (1/N) Σ_n e_n e_nᵀ`` (``e_n = vec(X_n − M)``, P×P, never formed) by the sum of its first
``r`` Kronecker-product SVD terms ``Σ_k σ_k A_k⊗B_k``, the best Frobenius approximation with
``r`` Kronecker terms; the KPSVD comes from :func:`kronkit.kpsvd_samples`, matrix-free.
Optionally the singular values are soft-thresholded, ``σ_k ← max(σ_k − τ, 0)`` (the
nuclear-norm penalised estimator of the rearranged covariance).
"""

from __future__ import annotations

import numbers
from typing import Any, NamedTuple

import numpy as np

from .._checks import check_scalar
from .._dask import is_dask_array
from .._kpsvd import kpsvd_samples, kpsvd_samples_chunked
from .._kron import Kron
from .._samples import as_dask_samples, as_samples, chunked_mean
from .._sum_kron import SumOfKron
from .missing import refuse_missing

__all__ = ["KroneckerPCAResult", "kronecker_pca"]


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
        Observations; not modified. 2-D ``X`` without ``shape`` is a ValueError, and so is
        NaN (a missing entry: Kronecker PCA needs complete observations; the message says
        what to do — :func:`kronkit.separable_mle` fits missing entries).
        A ``dask.array`` chunked along N is processed where its chunks live (see Notes).
    n_terms : int
        ``r``, the number of Kronecker terms (``1 ≤ r ≤ min(p², q²)``).
    shrinkage : float, optional
        Soft threshold ``τ ≥ 0`` applied to the Kronecker singular values,
        ``σ̃_k = max(σ_k − τ, 0)``; terms that vanish are dropped.
    assume_centered : bool
        If true the mean is zero; otherwise the sample mean is subtracted.
    shape : (int, int), optional
        ``(p, q)`` for 2-D ``X`` (required there; one entry may be ``-1``, inferred).

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
    if not chunked:
        refuse_missing(X, "kronecker_pca (the KPSVD of the sample covariance)")
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
    M = np.zeros((p, q)) if assume_centered else None
    # structure="psd": symmetric terms, the leading one with SPD factors (tr A_0 > 0).
    if chunked:
        if M is None:
            M = chunked_mean(Xs)  # one pass (and the NaN/Inf check)
        # the mean is subtracted inside each product's chunk layout
        res = kpsvd_samples_chunked(Xs, r, center=not assume_centered, mean=M, structure="psd")
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
