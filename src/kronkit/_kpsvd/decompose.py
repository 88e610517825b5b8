r"""Kronecker-product SVD (Van Loan–Pitsianis): :func:`kpsvd` and :func:`kpsvd_samples`.

For ``M`` of shape ``(m1*m2, n1*n2)`` with blocks ``M_ij`` of shape ``(m2, n2)``, the
rearrangement ``R(M)`` of shape ``(m1*n1, m2*n2)`` has row ``i*n1 + j`` equal to the row-major
``vec(M_ij)``, so ``R(A ⊗ B) = vec(A) vec(B)^T``. If ``R(M) = Σ_k σ_k u_k v_k^H`` then
``M = Σ_k σ_k unvec(u_k) ⊗ unvec(conj(v_k))`` exactly, and the first ``r`` terms are the best
Frobenius approximation of ``M`` by ``r`` Kronecker products, with
``‖M - M_r‖_F² = Σ_{k>r} σ_k²`` (Van Loan & Pitsianis 1993; Golub & Van Loan §12.3.6).

The pieces: :mod:`.rearrange` (``R``), :mod:`.structure` (the ``structure`` argument),
:mod:`.operators` (``R(M)`` for each input form), :mod:`.svd` (the SVD engine), :mod:`.terms`
(the candidate terms of a structure), :mod:`.results` (the result types); the nearest
Kronecker product is in :mod:`.nearest`.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import numpy as np

from .._checks import as_float, check_random_state, non_finite_error
from .._dask import is_dask_array, row_chunks, tree_reduce_chunks
from .._samples import chunk_samples, combine_scans, scan_chunk, second_moment
from .._typing import ArrayLike, ShapesLike
from .inputs import (
    build_operator,
    check_maxiter,
    check_method,
    check_rank,
    check_tol,
)
from .operators import ChunkedSamplesR, DenseR, OperatorR, ROperator, SamplesR
from .rearrange import parse_shapes
from .results import KPSVDResult, readonly
from .structure import Structure
from .svd import DEFAULT_TOL, SVDOptions
from .terms import svd_terms

__all__ = ["CHUNKED_NORM_MAX_P", "KPSVDResult", "decompose", "kpsvd", "kpsvd_samples",
           "kpsvd_samples_chunked"]


def decompose(op: ROperator, st: Structure, rank: int | None, opts: SVDOptions, *,
              rtol: float | None = None) -> KPSVDResult:
    """KPSVD of the R-operator ``op`` (structure parsed and the input checked)."""
    (m1, n1), (m2, n2) = st.shapes
    sq = op.sqnorm
    norm = None if sq is None else math.sqrt(sq)
    if sq == 0.0:  # the zero matrix: no terms (rank=None) or r zero terms
        r = 0 if rank is None else rank
        U, Vh, skew = st.zero_terms(r, op.dtype)
        return KPSVDResult(readonly(np.zeros(r)), readonly(U.T.reshape(r, m1, n1)),
                           readonly(Vh.reshape(r, m2, n2)), 0.0, 0.0, readonly(skew), "zero")
    t = svd_terms(op, st, rank, opts, rtol=rtol)
    t.U = np.array(t.U)
    t.Vh = np.array(t.Vh)
    st.finish_terms(t, op)
    r = t.s.size
    if norm is None and t.full_sq is not None:  # an operator that was formed (small case)
        norm = math.sqrt(t.full_sq)
    residual: float | None
    if t.exact_tail is not None:  # every σ known: the tail, no cancellation
        residual = math.sqrt(t.exact_tail)
    else:
        residual = op.residual(t.U, t.s, t.Vh)
        if residual is None and sq is not None:  # matrix-free: the difference formula
            residual = math.sqrt(max(sq - float(np.sum(t.s ** 2)), 0.0))
    A = t.U.T.reshape(r, m1, n1)
    B = t.Vh.reshape(r, m2, n2)
    return KPSVDResult(readonly(t.s), readonly(A), readonly(B), residual, norm,
                       readonly(t.skew), t.method)


def kpsvd(M: Any, shapes: ShapesLike, rank: int | None = None, *, structure: Any = None,
          method: str = "auto", tol: float = DEFAULT_TOL, rtol: float | None = None,
          random_state: Any = None, maxiter: int | None = None) -> KPSVDResult:
    r"""Kronecker-product SVD: ``M ≈ Σ_{k<r} s_k A_k ⊗ B_k`` with orthonormal ``vec``\ s.

    Computes the SVD of the rearrangement ``R(M) = Σ σ_k u_k v_k^H`` (see :func:`rearrange`),
    so ``A_k = unvec(u_k)`` and ``B_k = unvec(conj(v_k))``; the first ``r`` terms are the best
    Frobenius-norm approximation of ``M`` by a sum of ``r`` Kronecker products and
    ``‖M - M_r‖_F² = Σ_{k>r} σ_k²``.

    Parameters
    ----------
    M : array_like, scipy sparse matrix, LinearOperator, SumOfKron, Kron or sequence of Kron
        The matrix, of shape ``(m1*m2, n1*n2)``, real or complex. Matrix-free inputs are never
        formed: a ``scipy.sparse.linalg.LinearOperator`` (products with ``M`` only; each
        product with ``R(M)`` costs ``n1·min(m2, n2)`` products with ``M``), or a sum of
        Kronecker terms, :class:`~kronkit.SumOfKron` ``([(A_1, B_1), ..., (A_K, B_K)])``
        (exact: two thin QRs and a K×K SVD, ``O((m1 n1 + m2 n2)·K²)``). A list
        ``[Kron(A_1, B_1), ..., Kron(A_K, B_K)]`` (or one Kron) is converted once to that form;
        its terms may have more factors if they group consecutively into ``shapes``.
    shapes : ((m1, n1), (m2, n2))
        Factor shapes; an int means a square block.
    rank : int, optional
        Number of terms. ``None`` gives the exact decomposition: every ``σ_k > rtol·σ_1`` (the
        numerical Kronecker rank); it needs a dense ``M`` or a sum of Kron terms (sparse and
        LinearOperator inputs need an explicit ``rank``). Must be ``<= min(m1 n1, m2 n2)``
        (with ``structure="symmetric"``/``"psd"``: the number of symmetric ⊗ symmetric plus
        skew ⊗ skew directions; with a linear structure: the smaller subspace dimension).
    structure : str or sequence, optional
        ``"symmetric"``: ``M`` must be symmetric (checked); every term is
        symmetric ⊗ symmetric or skew ⊗ skew (``result.skew`` says which).
        ``"psd"``: ``M`` must be symmetric positive semi-definite (checked, for dense ``M`` by a
        Cholesky factorisation, O((m1 m2)³)); additionally the leading term's factors are both
        PSD. ``"nonnegative"``: ``M >= 0`` (checked); the leading term's factors are ``>= 0``.
        A linear structure imposed exactly (the constrained optimum, ``M`` need not have it):
        a name for all factors (``"toeplitz"``, ``"hankel"``, ``"circulant"``, ``"diagonal"``,
        ``"upper"``, ``"lower"``, ``"skew"``, ``("banded", lower, upper)``) or a pair of per-
        factor specs, each a name, ``"symmetric"``, ``"general"``/None, or a real basis array of
        shape ``(m*n, d)`` (orthonormalised here); then the SVD is of ``Q_A^T R(M) Q_B``.
    method : {"auto", "dense", "lanczos", "randomized"}
        ``"auto"``: full LAPACK SVD when it is cheaper (small problems, or ``rank`` close to
        ``min(m1 n1, m2 n2)``), else Lanczos: thick-restart Lanczos on the smaller normal
        operator with full reorthogonalisation, one product with ``R`` and one with ``R^H`` per
        step. ``"randomized"``: block subspace iteration until the Ritz residuals reach ``tol``.
    tol : float
        Relative tolerance of the iterative methods (default 1e-12). Lanczos stops when every
        wanted triple has ``‖R^H R v - θ² v‖ <= tol·θ²`` (a backward error ``tol``: σ to about
        ``tol``, the factors to about ``tol/gap``), or — for a singular value within 1 % of
        another (a cluster, where single factors are ill-conditioned) — when the quadratic
        residual bound puts that σ within ``tol`` (relative); the factors of a cluster are then
        only as accurate as ``sqrt(tol)/gap``.
    rtol : float, optional
        Rank cut-off for ``rank=None``; default ``max(m1 n1, m2 n2)·eps``.
    random_state : None, int or numpy Generator
        Start vectors of the iterative methods.
    maxiter : int, optional
        Iteration cap of the iterative methods (an int >= 1; Lanczos steps, default 2000, or
        randomized iterations, default 200); on reaching it they warn
        (:class:`~kronkit.ConvergenceWarning`) and return the current estimates.

    Returns
    -------
    KPSVDResult
        ``s`` (r,), ``A`` (r, m1, n1), ``B`` (r, m2, n2), ``residual``, ``norm``, ``skew``,
        ``method``; ``to_dense()``, ``term(k)``, ``to_sum()``, ``tail_errors()``.

    Notes
    -----
    Cost (dense ``M``, ``P = m1 m2 n1 n2`` entries): the rearrangement O(P); a full SVD
    O(P·min(m1 n1, m2 n2)), or Lanczos with O(P) per product. Dense equivalent:
    ``U, s, Vh = np.linalg.svd(rearrange(M, shapes))``, ``A_k = U[:, k].reshape(m1, n1)``,
    ``B_k = Vh[k].reshape(m2, n2)``.

    Examples
    --------
    >>> A, B = np.arange(4.).reshape(2, 2), np.eye(3)
    >>> res = kpsvd(np.kron(A, B), ((2, 2), (3, 3)))
    >>> res.rank, np.allclose(res.to_dense(), np.kron(A, B))
    (1, True)
    """
    shp = parse_shapes(shapes, d=2)
    method, tol = check_method(method), check_tol(tol, "tol")
    if rtol is not None:
        rtol = check_tol(rtol, "rtol")
    opts = SVDOptions(method=method, tol=tol, maxiter=check_maxiter(maxiter),
                      rng=check_random_state(random_state))
    st = Structure.parse(structure, shp)
    rank = check_rank(rank, st.max_rank)
    op = build_operator(M, st, opts.rng)
    if rank is None and isinstance(op, OperatorR):
        raise ValueError("`rank` is required for a LinearOperator `M` (rank=None, the exact "
                         "decomposition, would form M)")
    if rank is None and isinstance(op, DenseR) and op.is_sparse:
        raise ValueError("`rank` is required for a sparse `M` (rank=None, the exact "
                         "decomposition, needs the dense R(M); pass `M.toarray()`)")
    return decompose(op, st, rank, opts, rtol=rtol)


def _samples_args(shape, rank, center, method, tol, random_state, structure, maxiter=None):
    """Validate the arguments shared by the NumPy and dask paths of :func:`kpsvd_samples`:
    ``(SVDOptions, Structure, rank)``."""
    N, p, q = shape
    if min(N, p, q) < 1:
        raise ValueError(f"`X` must have shape (N, p, q) with N, p, q >= 1, got {tuple(shape)}")
    if rank is None:
        raise TypeError("`rank` must be a positive int for kpsvd_samples, got None")
    if not isinstance(center, (bool, np.bool_)):
        raise TypeError(f"`center` must be a bool, got {center!r}")
    opts = SVDOptions(method=check_method(method), tol=check_tol(tol, "tol"),
                      maxiter=check_maxiter(maxiter), rng=check_random_state(random_state))
    st = Structure.parse(structure, ((p, p), (q, q)))
    return opts, st, check_rank(rank, st.max_rank)


def kpsvd_samples(X: ArrayLike, rank: int, *, center: bool = True, method: str = "auto",
                  random_state: Any = None, tol: float = DEFAULT_TOL, structure: Any = None,
                  maxiter: int | None = None) -> KPSVDResult:
    r"""KPSVD of the sample covariance of matrix samples, without forming it.

    ``M = (1/N) Σ_n vec(X_n) vec(X_n)^T`` (``X_n`` centred by the sample mean when
    ``center=True``; divisor ``N`` either way) is ``(pq)×(pq)``, and
    ``R(M) = (1/N) Σ_n X_n ⊗ X_n`` is ``p²×q²``. Products with it are batched GEMMs:
    ``R(M) vec(V) = vec((1/N) Σ_n X_n V X_n^T)`` and ``R(M)^T vec(U) = vec((1/N) Σ_n X_n^T U
    X_n)``, fed to Lanczos (or randomized subspace iteration).

    Parameters
    ----------
    X : array_like of shape (N, p, q)
        Real samples; or a ``dask.array`` of that shape chunked along N (see Notes).
    rank : int
        Number of terms, ``1 <= rank <= min(p², q²)``.
    center : bool
        Subtract the sample mean first.
    method, random_state, tol, maxiter
        As in :func:`kpsvd`; ``"auto"`` forms ``R(M)`` (by ``min(p², q²)`` products) only when
        that is cheaper than Lanczos, i.e. for tiny ``p`` or ``q``, or ``rank`` near
        ``min(p², q²)``.
    structure : {None, "symmetric", "psd", "nonnegative"} or linear structure
        As in :func:`kpsvd`. ``M`` is PSD by construction; ``"nonnegative"`` needs
        ``center=False`` and ``X >= 0``.

    Returns
    -------
    KPSVDResult
        ``A`` of shape (rank, p, p), ``B`` of shape (rank, q, q); ``residual`` from
        ``‖M‖_F² - Σ s_k²`` with ``‖M‖_F`` from the Gram matrix of the samples.

    Notes
    -----
    Cost ``O(N·p·q·(p+q))`` per product (two GEMMs per chunk of samples, no loop over
    samples); ``‖M‖_F`` costs ``O(N·p·q·min(N, p q))`` once. Memory ``O(N·p·q + p² + q²)``:
    one centred copy of ``X`` in ``(p, N, q)`` layout plus a chunk-sized workspace — never the
    ``(pq)²`` covariance. Dense equivalent: ``Xc = X - X.mean(0)``,
    ``M = Xc.reshape(N, -1).T @ Xc.reshape(N, -1) / N``, ``kpsvd(M, ((p, p), (q, q)), rank)``.

    A ``dask.array`` ``X`` is never gathered: every block product with ``R(M)`` is one pass
    over the data, its per-chunk partial sums (p×p or q×q per column) added in a tree
    (:class:`~kronkit._kpsvd.operators.ChunkedSamplesR`), with the active dask scheduler.
    ``center=True`` adds one pass up front for the mean (which also checks for NaN/Inf).
    ``‖M‖_F`` needs the P×P matrix: for ``P <= CHUNKED_NORM_MAX_P`` (1024) it costs one more
    pass whose per-chunk P×P sums travel; above that ``norm`` and ``residual`` are ``None``.
    ``method`` chooses as in memory: the dense route (``min(p², q²)`` products in blocks of 64
    columns, one pass per block) or Lanczos (one pass per product, two per Krylov step).
    ``method="randomized"`` (block subspace iteration: two passes per iteration, each with
    ``rank + max(rank, 10)`` columns) makes fewer passes but more products — the better choice
    when reading the data costs more than the products (small ``p``, ``q``; slow storage).
    """
    if is_dask_array(X):
        return kpsvd_samples_chunked(X, rank, center=center, method=method,
                                     random_state=random_state, tol=tol, structure=structure,
                                     maxiter=maxiter)
    Xa = as_float(X, "X", ndim=3, dtype=np.float64)
    N, p, q = Xa.shape
    opts, st, k = _samples_args(
        (N, p, q), rank, center, method, tol, random_state, structure, maxiter)
    st.check_samples(center, float(Xa.min()) if st.nonnegative else 0.0)
    mean = Xa.mean(axis=0) if center else None
    op = SamplesR(chunk_samples(Xa, mean), N)
    return decompose(op, st, k, opts)


#: ``kpsvd_samples`` of a dask array computes ``‖M‖_F`` (P×P partial sums per chunk) only up to
#: this P; above it ``norm`` and ``residual`` are None.
CHUNKED_NORM_MAX_P = 1024


def kpsvd_samples_chunked(X: Any, rank: int, *, center: bool = True, method: str = "auto",
                          random_state: Any = None, tol: float = DEFAULT_TOL,
                          structure: Any = None, maxiter: int | None = None,
                          mean: np.ndarray | None = None) -> KPSVDResult:
    """:func:`kpsvd_samples` for a dask array (N, p, q) chunked along N.

    ``mean`` (with ``center=True``): the mean ``(p, q)``, already computed by the caller (with
    the NaN/Inf check, e.g. :func:`kronkit._samples.chunked_mean`); it saves the first pass and
    is subtracted inside each product's chunk layout. Ignored when ``center=False``.
    """
    if X.dtype.kind not in "biuf":
        raise TypeError(f"`X` must be a real numeric array, got dtype {X.dtype}")
    if X.ndim != 3:
        raise ValueError(f"`X` must be 3-D, got shape {X.shape}")
    Xd = row_chunks(X, "X")
    N, p, q = (int(v) for v in Xd.shape)
    opts, st, k = _samples_args(
        (N, p, q), rank, center, method, tol, random_state, structure, maxiter)
    if not center:
        mean = None
    if (center and mean is None) or st.nonnegative:  # one pass: mean, NaN/Inf, min
        total, bad, xmin, _ = tree_reduce_chunks(Xd, scan_chunk, combine_scans)
        if bad:
            raise non_finite_error("X", bad)
        st.check_samples(center, xmin)
        mean = total / N if center else None
    sq = None
    if p * q <= CHUNKED_NORM_MAX_P:
        C = tree_reduce_chunks(Xd, partial(second_moment, mean=mean), np.add)
        sq = float(np.vdot(C, C)) / float(N) ** 2
        if not math.isfinite(sq):
            raise ValueError("`X` contains NaN or Inf (its sample covariance is not finite)")
    op = ChunkedSamplesR(Xd, mean, sq)
    return decompose(op, st, k, opts)
