r"""The nearest Kronecker product ``A1 ⊗ ... ⊗ Ad`` to ``M`` in the Frobenius norm.

d = 2 is the leading term of the Kronecker-product SVD (solved exactly, :mod:`.terms`); d >= 3
is the best rank-1 approximation of the rearranged tensor, by the higher-order power method
(:mod:`.multi`).
"""

from __future__ import annotations

import functools
import math
import warnings
from typing import Any

import numpy as np
import scipy.sparse as sp

from .._checks import check_int, check_random_state
from .._errors import ConvergenceWarning, StructureWarning
from .._typing import ShapesLike
from .inputs import (
    build_operator,
    check_method,
    check_tol,
    cp_factors,
    is_linear_operator,
    kron_terms,
)
from .multi import HOPMOut, cp_sqnorm, hopm_cp, hopm_dense, mode_product
from .rearrange import as_matrix, check_matrix_shape, parse_shapes, rearrange_tensor
from .results import NearestKronResult, readonly
from .structure import Structure
from .svd import SVDOptions
from .terms import svd_terms

__all__ = ["NearestKronResult", "nearest_kron"]


def nearest_kron(M: Any, shapes: ShapesLike, *, structure: Any = None, method: str = "auto",
                 tol: float = 1e-12, max_iter: int = 1000, random_state: Any = None
                 ) -> NearestKronResult:
    r"""The nearest Kronecker product ``A1 ⊗ ... ⊗ Ad`` to ``M`` in the Frobenius norm.

    d = 2: the leading KPSVD term with ``σ`` absorbed, solved exactly. d >= 3: the best
    rank-1 approximation of the rearranged tensor
    ``T[(i1, j1), ..., (id, jd)] = M[(i1..id), (j1..jd)]`` by the higher-order power method
    (rank-1 ALS), run from two starts — the sequential SVD ("peeling") solution and the HOSVD
    start (the leading left singular vector of each unfolding of ``T``) — keeping the larger
    ``σ``. The result is a local maximum of ``σ``, never worse than either start (the problem
    is NP-hard in general; a better maximum can exist). It reports ``n_iter``/``converged``
    (of the kept run) and warns with :class:`~kronkit.ConvergenceWarning` if ``max_iter``
    sweeps did not reach ``tol``.

    Parameters
    ----------
    M : array_like, scipy sparse matrix, LinearOperator, SumOfKron, Kron or sequence of Kron
        As in :func:`kpsvd`. For d >= 3: a dense array or a sum of Kron terms whose factors
        group into ``shapes`` (CP form; each power sweep costs ``O(K·Σ m_k n_k)``).
    shapes : sequence of (m_k, n_k)
        Two or more factor shapes; an int means a square block.
    structure : {None, "symmetric", "psd", "nonnegative"} or linear structure
        As in :func:`kpsvd`. ``"symmetric"`` returns the best *symmetric* factors; if a
        skew ⊗ skew pair is better (d = 2) its σ is in ``skew_sigma`` and a
        :class:`StructureWarning` is issued. ``"psd"``: every factor symmetric PSD.
        ``"nonnegative"``: every factor ``>= 0``. For d >= 3 ``"symmetric"`` imposes symmetric
        factors (skew alternatives are not searched).
    method, random_state
        SVD method of the d = 2 solve (see :func:`kpsvd`); the d >= 3 peeling start uses
        ``"auto"``.
    tol : float
        Power-method stop, on the factors (d >= 3): the estimated distance of the unit
        factors to the limit, ``δ·ρ/(1-ρ)`` with ``δ`` their change in a sweep and ``ρ`` the
        observed rate, is ``<= tol`` (σ, flat at the optimum, is not used).
    max_iter : int
        Power-method sweep cap (d >= 3).

    Returns
    -------
    NearestKronResult
        ``factors`` (σ split evenly, ``‖A_k‖_F = σ^(1/d)``), ``sigma``, ``residual``, ``norm``,
        ``n_iter``, ``converged``; unpacks to the factors.

    Examples
    --------
    >>> A, B = np.diag([1., 2.]), np.ones((3, 3))
    >>> F1, F2 = nearest_kron(np.kron(A, B), ((2, 2), (3, 3)))
    >>> np.allclose(np.kron(F1, F2), np.kron(A, B))
    True
    """
    shp = parse_shapes(shapes)
    method = check_method(method)
    tol = check_tol(tol, "tol")
    max_iter = check_int(max_iter, "max_iter", min_value=1)
    rng = check_random_state(random_state)
    st = Structure.parse(structure, shp)
    if len(shp) == 2:
        return _nearest_two(M, st, SVDOptions(rng, method))
    return _nearest_multi(M, st, tol=tol, max_iter=int(max_iter), rng=rng)


def _nearest_two(M: Any, st: Structure, opts: SVDOptions) -> NearestKronResult:
    op = build_operator(M, st, opts.rng)
    shp = st.shapes
    sq = op.sqnorm
    norm = None if sq is None else math.sqrt(sq)
    if sq == 0.0:
        zeros = tuple(readonly(np.zeros(s)) for s in shp)
        return NearestKronResult(zeros, 0.0, 0.0, 0.0, 0, True)
    t = svd_terms(op, st, 1, opts, truncate=False)
    skew_sigma = st.pick_nearest(t)
    if skew_sigma is not None:
        warnings.warn(
            f"the best Kronecker approximation of this symmetric M is skew ⊗ skew "
            f"(σ = {skew_sigma:.6g}); returning the best symmetric ⊗ symmetric pair "
            f"(σ = {t.s[0]:.6g}) as requested by structure='symmetric'",
            StructureWarning, stacklevel=3,
        )
    vecs, sigma = st.finish_nearest([t.U[:, 0], t.Vh[0]], float(t.s[0]), op)
    residual: float | None
    if st.unconstrained and t.exact_tail is not None:
        residual = math.sqrt(t.exact_tail)  # the SVD tail, no cancellation
    else:
        residual = op.residual(vecs[0][:, None], np.array([sigma]), vecs[1][None, :])
        if residual is None and sq is not None:
            residual = math.sqrt(max(sq - sigma ** 2, 0.0))
    scale = math.sqrt(sigma)
    factors = tuple(readonly(scale * v.reshape(shp[l])) for l, v in enumerate(vecs))
    return NearestKronResult(factors, sigma, residual, norm, 0, True, skew_sigma)


def _hopm_of_terms(terms: list, st: Structure, bases: list | None, *, tol: float,
                   max_iter: int) -> tuple[HOPMOut, float]:
    """HOPM on a sum of Kronecker terms in CP form; also ``‖M‖_F²``."""
    Fs = st.check_cp(cp_factors(terms, st.shapes))
    sq = cp_sqnorm(Fs)
    Fc = Fs if bases is None else [np.asarray(Q.T @ F) for Q, F in zip(bases, Fs, strict=True)]
    out = hopm_cp(Fc, nonneg=(st.nonnegative), tol=tol, max_iter=max_iter)
    return out, sq


def _hopm_of_dense(Md: np.ndarray, st: Structure, bases: list | None, *, tol: float,
                   max_iter: int, rng: np.random.Generator) -> tuple[HOPMOut, float]:
    """HOPM on the rearranged tensor of a dense ``M``; also ``‖M‖_F²``."""
    T = rearrange_tensor(Md, st.shapes)
    sq = float(np.vdot(T, T).real)
    if bases is not None:
        for l, Q in enumerate(bases):
            T = mode_product(T, l, Q.T)
    out = hopm_dense(T, nonneg=(st.nonnegative), tol=tol, max_iter=max_iter,
                     rng=rng)
    return out, sq


def _nearest_multi(M: Any, st: Structure, *, tol: float, max_iter: int,
                   rng: np.random.Generator) -> NearestKronResult:
    shp = st.shapes
    d = len(shp)
    bases = st.factor_bases()
    terms = kron_terms(M)
    Md = None
    if terms is not None:
        out, sq = _hopm_of_terms(terms, st, bases, tol=tol, max_iter=max_iter)
    else:
        if sp.issparse(M) or is_linear_operator(M):
            raise ValueError("`M` must be a dense array or a sum of Kron terms for "
                             f"{d} >= 3 factors, got {type(M).__name__}")
        Md = as_matrix(M, "M")
        check_matrix_shape(Md.shape, shp)
        st.check_dense(Md)
        out, sq = _hopm_of_dense(Md, st, bases, tol=tol, max_iter=max_iter, rng=rng)
    vecs = out.vecs
    if bases is not None:
        vecs = [np.asarray(Q @ v) for Q, v in zip(bases, vecs, strict=True)]
    if not out.converged:
        warnings.warn(f"nearest_kron: the power method did not converge in {max_iter} sweeps "
                      f"(tol={tol:g}); the result is the last iterate, still no worse than "
                      "either start", ConvergenceWarning, stacklevel=3)
    norm = math.sqrt(sq)
    sigma = float(out.sigma)
    if sigma == 0.0:
        factors = tuple(readonly(np.zeros(s)) for s in shp)
        return NearestKronResult(factors, 0.0, norm, norm, out.n_iter, out.converged)
    vecs, sigma = st.finish_nearest(vecs, sigma)
    scale = sigma ** (1.0 / d)
    factors = tuple(readonly(scale * v.reshape(shp[l])) for l, v in enumerate(vecs))
    if Md is not None:  # the difference itself: no cancellation for a near-exact product
        residual = float(np.linalg.norm(Md - functools.reduce(np.kron, factors)))
    else:  # a sum of Kron terms: sqrt(‖M‖² - σ²) (absolute accuracy ~1e-8·‖M‖)
        residual = math.sqrt(max(sq - sigma ** 2, 0.0))
    return NearestKronResult(factors, sigma, residual, norm, out.n_iter, out.converged)
