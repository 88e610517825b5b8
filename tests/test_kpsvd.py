"""Kronecker-product SVD, nearest Kronecker product, matrix-free paths and the ``nkp`` command.

Truth comes from outside the code under test: the rearrangement written out entry by entry
with loops, ``np.linalg.svd`` of that explicit matrix, ``np.kron`` reconstructions, the
published Laplacian values, and ``scipy.optimize.minimize`` for the d-factor problem.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import scipy.optimize
import scipy.sparse as sp
from scipy.sparse.linalg import LinearOperator, aslinearoperator

import kronkit
from helpers import ATOL, CHAIN_RTOL, ITER_RTOL, RTOL, SQRT_EPS_RTOL, ULPS, spd
from kronkit import (
    ConvergenceWarning,
    KPSVDResult,
    Kron,
    NearestKronResult,
    StructureWarning,
    kpsvd,
    kpsvd_samples,
    nearest_kron,
    rearrange,
    unrearrange,
)
from kronkit._samples import chunk_samples, col_sandwich, row_sandwich

SHAPES = [  # ((m1, n1), (m2, n2)), rectangular and degenerate ones included
    ((2, 2), (3, 3)),
    ((3, 2), (2, 5)),
    ((1, 1), (3, 3)),
    ((3, 3), (1, 1)),
    ((1, 4), (3, 1)),
    ((5, 3), (2, 2)),
]


# ---------------------------------------------------------------------------------------
# independent truth
# ---------------------------------------------------------------------------------------


def loop_rearrange(M, shapes):
    """R(M) written out entry by entry: R[i*n1 + j, a*n2 + b] = M[i*m2 + a, j*n2 + b]."""
    (m1, n1), (m2, n2) = shapes
    R = np.zeros((m1 * n1, m2 * n2), dtype=np.asarray(M).dtype)
    for i in range(m1):
        for j in range(n1):
            for a in range(m2):
                for b in range(n2):
                    R[i * n1 + j, a * n2 + b] = M[i * m2 + a, j * n2 + b]
    return R


def dense_terms(M, shapes):
    """(σ, [σ_k · np.kron(A_k, B_k)]) from np.linalg.svd of the loop rearrangement."""
    (m1, n1), (m2, n2) = shapes
    U, s, Vh = np.linalg.svd(loop_rearrange(M, shapes))
    terms = [s[k] * np.kron(U[:, k].reshape(m1, n1), Vh[k].reshape(m2, n2)) for k in range(s.size)]
    return s, terms


def assert_close(a, b, rtol=RTOL, atol=ATOL):
    np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)


def scale_free_equal(X, Y, tol=RTOL):
    """X = c·Y for some scalar c of modulus ‖X‖/‖Y‖ (equal up to scale and sign/phase)."""
    x, y = np.ravel(X), np.ravel(Y)
    cos = abs(np.vdot(x, y)) / (np.linalg.norm(x) * np.linalg.norm(y))
    return abs(cos - 1.0) < tol


def kron_sum(rng, shapes, K, scale=None):
    (m1, n1), (m2, n2) = shapes
    terms = []
    for k in range(K):
        c = 1.0 if scale is None else scale[k]
        terms.append(Kron(c * rng.standard_normal((m1, n1)), rng.standard_normal((m2, n2))))
    return terms, sum(t.to_dense() for t in terms)


# ---------------------------------------------------------------------------------------
# rearrangement
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("shapes", SHAPES)
def test_rearrange_matches_loop_definition(rng, shapes):
    (m1, n1), (m2, n2) = shapes
    M = rng.standard_normal((m1 * m2, n1 * n2))
    np.testing.assert_array_equal(rearrange(M, shapes), loop_rearrange(M, shapes))


@pytest.mark.parametrize("shapes", SHAPES)
def test_rearrange_of_kron_is_outer_product(rng, shapes):
    (m1, n1), (m2, n2) = shapes
    A, B = rng.standard_normal((m1, n1)), rng.standard_normal((m2, n2))
    np.testing.assert_array_equal(rearrange(np.kron(A, B), shapes), np.outer(A.ravel(), B.ravel()))
    np.testing.assert_array_equal(unrearrange(np.outer(A.ravel(), B.ravel()), shapes),
                                  np.kron(A, B))


@pytest.mark.parametrize("shapes", SHAPES)
def test_rearrange_roundtrip_is_exact(rng, shapes):
    (m1, n1), (m2, n2) = shapes
    M = rng.standard_normal((m1 * m2, n1 * n2)) + 1j * rng.standard_normal((m1 * m2, n1 * n2))
    np.testing.assert_array_equal(unrearrange(rearrange(M, shapes), shapes), M)
    R = rng.standard_normal((m1 * n1, m2 * n2))
    np.testing.assert_array_equal(rearrange(unrearrange(R, shapes), shapes), R)


def test_rearrange_int_shapes_mean_square_blocks(rng):
    M = rng.standard_normal((6, 6))
    np.testing.assert_array_equal(rearrange(M, (2, 3)), rearrange(M, ((2, 2), (3, 3))))


def test_rearrange_sparse_matches_dense(rng):
    shapes = ((3, 2), (4, 5))
    M = sp.random(12, 10, density=0.3, random_state=1, format="csr")
    R = rearrange(M, shapes)
    assert sp.issparse(R)
    np.testing.assert_array_equal(R.toarray(), loop_rearrange(M.toarray(), shapes))


def test_rearrange_does_not_modify_input(rng):
    M = rng.standard_normal((6, 6))
    M0 = M.copy()
    R = rearrange(M, (2, 3))
    R[:] = 0
    np.testing.assert_array_equal(M, M0)


@pytest.mark.parametrize(
    ("M_shape", "shapes", "exc", "match"),
    [
        ((6, 6), ((2, 2), (3, 2)), ValueError, "must have shape"),
        ((6, 6), ((2, 2),), ValueError, "2 entries"),
        ((6, 6), ((2, 2), (3, 3), (1, 1)), ValueError, "2 entries"),
        ((6, 6), ((0, 2), (3, 3)), ValueError, "positive"),
        ((6, 6), ((2, 2, 2), (3, 3)), TypeError, "pair"),
        ((6, 6), "2x3", TypeError, "sequence"),
        ((6, 6), ((True, 2), (3, 3)), TypeError, "pair of ints"),
        ((6, 6), ((2.0, 2), (3, 3)), TypeError, "pair of ints"),
        ((36,), ((2, 2), (3, 3)), ValueError, "2-D"),
    ],
)
def test_rearrange_bad_input(M_shape, shapes, exc, match):
    with pytest.raises(exc, match=match):
        rearrange(np.ones(M_shape), shapes)


def test_unrearrange_bad_shape():
    with pytest.raises(ValueError, match=r"`R` must have shape \(4, 9\)"):
        unrearrange(np.ones((9, 4)), (2, 3))


# ---------------------------------------------------------------------------------------
# dense KPSVD against the dense SVD of the explicit rearrangement
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("shapes", SHAPES)
def test_exact_recovery_of_a_kron(rng, shapes):
    (m1, n1), (m2, n2) = shapes
    A, B = rng.standard_normal((m1, n1)), rng.standard_normal((m2, n2))
    res = kpsvd(np.kron(A, B), shapes)
    assert isinstance(res, KPSVDResult)
    assert res.rank == 1
    assert_close(res.s[0], np.linalg.norm(A) * np.linalg.norm(B))
    assert scale_free_equal(res.A[0], A) and scale_free_equal(res.B[0], B)
    assert_close(res.to_dense(), np.kron(A, B), atol=ATOL)
    assert res.residual < 1e-12 * res.norm


@pytest.mark.parametrize("shapes", SHAPES)
def test_full_rank_reconstruction_and_singular_values(rng, shapes):
    (m1, n1), (m2, n2) = shapes
    M = rng.standard_normal((m1 * m2, n1 * n2))
    res = kpsvd(M, shapes)
    s_ref, terms = dense_terms(M, shapes)
    assert res.rank == min(m1 * n1, m2 * n2)
    assert_close(res.s, s_ref)
    assert_close(res.to_dense(), M, atol=ATOL)
    for k in range(res.rank):  # each term equals the dense one (signs cancel in the product)
        assert_close(res.s[k] * np.kron(res.A[k], res.B[k]), terms[k], atol=ATOL)
    # orthonormal vec(A_k), vec(B_k)
    VA = res.A.reshape(res.rank, -1)
    VB = res.B.reshape(res.rank, -1)
    assert_close(VA @ VA.T, np.eye(res.rank), atol=ATOL)
    assert_close(VB @ VB.T, np.eye(res.rank), atol=ATOL)


def test_error_identity(rng):
    shapes = ((4, 3), (3, 5))
    M = rng.standard_normal((12, 15))
    s_ref, _ = dense_terms(M, shapes)
    for r in range(1, s_ref.size + 1):
        res = kpsvd(M, shapes, rank=r)
        err2 = np.linalg.norm(M - res.to_dense()) ** 2
        assert_close(err2, np.sum(s_ref[r:] ** 2), atol=ATOL)
        assert_close(res.residual, math.sqrt(np.sum(s_ref[r:] ** 2)), atol=ATOL)


@pytest.mark.parametrize("shapes", [((4, 3), (3, 5)), ((2, 2), (3, 3))])
def test_tail_errors_match_dense_differences(rng, shapes):
    """tail_errors()[k-1] = ‖M − Σ_{j<=k} s_j A_j⊗B_j‖_F, for a truncated and a full KPSVD."""
    (m1, n1), (m2, n2) = shapes
    M = rng.standard_normal((m1 * m2, n1 * n2))
    nrm = np.linalg.norm(M)
    for r in (2, min(m1 * n1, m2 * n2)):
        res = kpsvd(M, shapes, rank=r)
        want = [np.linalg.norm(M - sum(np.kron(res.s[j] * res.A[j], res.B[j])
                                       for j in range(k))) for k in range(1, r + 1)]
        err = res.tail_errors()
        assert err.shape == (r,)
        assert_close(err, want, atol=ATOL)
        assert_close(err[-1], res.residual, atol=ATOL)
        assert_close(res.tail_errors(relative=True), np.asarray(want) / nrm, atol=ATOL)
    # an exact Kronecker product: the tail is tiny, not a cancellation residue
    K = np.kron(rng.standard_normal((m1, n1)), rng.standard_normal((m2, n2)))
    err = kpsvd(K, shapes, rank=2).tail_errors(relative=True)
    assert np.all(err < 1e-14)


def test_tail_errors_zero_matrix_and_unknown_residual(rng):
    res = kpsvd(np.zeros((6, 6)), (3, 2), rank=2)
    assert_close(res.tail_errors(), [0.0, 0.0], atol=0)
    assert_close(res.tail_errors(relative=True), [0.0, 0.0], atol=0)
    M = rng.standard_normal((60, 60))  # big enough for the matrix-free path
    res = kpsvd(aslinearoperator(M), (6, 10), rank=2, method="lanczos", random_state=0)
    assert res.residual is None
    assert res.tail_errors() is None and res.tail_errors(relative=True) is None


def test_truncation_is_best_among_random_kron_sums(rng):
    shapes = ((3, 3), (2, 2))
    M = rng.standard_normal((6, 6))
    best = kpsvd(M, shapes, rank=2).residual
    for _ in range(50):
        _, D = kron_sum(rng, shapes, 2)
        assert np.linalg.norm(M - D) >= best


@pytest.mark.parametrize("n", [3, 5, 8])
def test_laplacian_has_kronecker_rank_two(n):
    T = 2 * np.eye(n) - np.eye(n, k=1) - np.eye(n, k=-1)
    L = np.kron(T, np.eye(n)) + np.kron(np.eye(n), T)
    res = kpsvd(L, (n, n))
    assert res.rank == 2
    expected = [2 * n + math.sqrt(n * (6 * n - 2)), abs(2 * n - math.sqrt(n * (6 * n - 2)))]
    assert_close(res.s, expected)
    assert_close(res.to_dense(), L, atol=ATOL)
    if n == 8:  # the published values
        assert_close(res.s, [35.18332609, 3.18332609], rtol=0, atol=5e-9)


@pytest.mark.parametrize("method", ["lanczos", "randomized", "dense"])
def test_iterative_methods_match_dense(rng, method):
    shapes = ((12, 10), (9, 11))
    _, M = kron_sum(rng, shapes, 6, scale=[1.0, 0.6, 0.4, 0.25, 0.1, 0.05])
    M = M + 1e-3 * rng.standard_normal(M.shape)
    s_ref, dterms = dense_terms(M, shapes)
    res = kpsvd(M, shapes, rank=4, method=method, random_state=1)
    assert_close(res.s, s_ref[:4])
    assert_close(res.to_dense(), sum(dterms[:4]), atol=RTOL)
    assert_close(res.residual, math.sqrt(np.sum(s_ref[4:] ** 2)), rtol=SQRT_EPS_RTOL)


def test_signs_are_fixed(rng):
    M = rng.standard_normal((12, 12))
    res = kpsvd(M, (3, 4))
    for k in range(res.rank):
        a = res.A[k].ravel()
        assert a[np.argmax(np.abs(a))] > 0


def test_term_is_a_kron(rng):
    M = rng.standard_normal((6, 6))
    res = kpsvd(M, (2, 3), rank=2)
    K = res.term(1)
    assert isinstance(K, Kron)
    assert_close(K.to_dense(), res.s[1] * np.kron(res.A[1], res.B[1]))
    with pytest.raises(IndexError):
        res.term(2)


def test_result_is_read_only(rng):
    res = kpsvd(rng.standard_normal((6, 6)), (2, 3))
    with pytest.raises(ValueError):
        res.s[0] = 1.0
    with pytest.raises(AttributeError):
        res.s = np.zeros(1)  # frozen dataclass


# ---------------------------------------------------------------------------------------
# complex input
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("shapes", [((2, 3), (3, 2)), ((3, 3), (2, 2))])
def test_complex_uses_conjugated_right_factor(rng, shapes):
    (m1, n1), (m2, n2) = shapes
    M = rng.standard_normal((m1 * m2, n1 * n2)) + 1j * rng.standard_normal((m1 * m2, n1 * n2))
    res = kpsvd(M, shapes)
    assert_close(res.to_dense(), M, atol=ATOL)
    R = loop_rearrange(M, shapes)
    U, s, Vh = np.linalg.svd(R)
    assert_close(res.s, s)
    for r in (1, 2):
        tr = kpsvd(M, shapes, rank=r)
        # best rank-r approximation, reconstructed from the dense SVD of R
        assert_close(tr.to_dense(), unrearrange((U[:, :r] * s[:r]) @ Vh[:r], shapes), atol=ATOL)
        # B_k = unvec(conj(v_k)) with v_k = conj(Vh[k]) the k-th right singular vector;
        # unvec(v_k) itself would be wrong for complex M
        for k in range(r):
            v_k = Vh[k].conj()
            assert scale_free_equal(tr.B[k], np.conj(v_k).reshape(m2, n2))
            assert not scale_free_equal(tr.B[k], v_k.reshape(m2, n2), tol=1e-3)


def test_complex_exact_kron_and_lanczos(rng):
    A = rng.standard_normal((7, 6)) + 1j * rng.standard_normal((7, 6))
    B = rng.standard_normal((8, 9)) + 1j * rng.standard_normal((8, 9))
    C = rng.standard_normal((7, 6)) + 1j * rng.standard_normal((7, 6))
    D = rng.standard_normal((8, 9)) + 1j * rng.standard_normal((8, 9))
    M = np.kron(A, B) + 0.3 * np.kron(C, D)
    res = kpsvd(M, ((7, 6), (8, 9)), rank=2, method="lanczos", random_state=0)
    assert_close(res.to_dense(), M, atol=RTOL)
    with pytest.raises(TypeError, match="real factors only"):
        res.term(0)


# ---------------------------------------------------------------------------------------
# edge cases
# ---------------------------------------------------------------------------------------


def test_zero_matrix():
    res = kpsvd(np.zeros((6, 6)), (2, 3))
    assert res.rank == 0 and res.residual == 0.0 and res.norm == 0.0
    assert res.to_dense().shape == (6, 6) and not res.to_dense().any()
    res2 = kpsvd(np.zeros((6, 6)), (2, 3), rank=2)
    np.testing.assert_array_equal(res2.s, [0.0, 0.0])
    assert not res2.to_dense().any()
    res3 = kpsvd(np.zeros((6, 6)), (2, 3), rank=4, structure="symmetric")
    VA = res3.A.reshape(4, -1)
    assert_close(VA @ VA.T, np.eye(4))
    for k in range(4):
        sign = -1.0 if res3.skew[k] else 1.0
        assert_close(res3.A[k].T, sign * res3.A[k])
        assert_close(res3.B[k].T, sign * res3.B[k])


@pytest.mark.parametrize("method", ["auto", "lanczos", "randomized"])
def test_rank_at_or_near_min_dimension(rng, method):
    shapes = ((2, 2), (3, 3))
    M = rng.standard_normal((6, 6))
    s_ref, _ = dense_terms(M, shapes)
    for r in (3, 4):
        res = kpsvd(M, shapes, rank=r, method=method, random_state=0)
        assert_close(res.s, s_ref[:r])


def test_rank_above_true_rank_gives_zero_tail(rng):
    A, B = rng.standard_normal((10, 10)), rng.standard_normal((12, 12))
    M = np.kron(A, B)
    for method in ("lanczos", "randomized", "dense"):
        res = kpsvd(M, (10, 12), rank=3, method=method, random_state=0)
        assert_close(res.s[0], np.linalg.norm(A) * np.linalg.norm(B))
        assert np.all(res.s[1:] < 1e-10 * res.s[0])
        assert_close(res.to_dense(), M, atol=RTOL)


def test_rank_none_tolerance(rng):
    A, B = rng.standard_normal((3, 3)), rng.standard_normal((4, 4))
    M = np.kron(A, B) + 1e-9 * np.kron(rng.standard_normal((3, 3)), rng.standard_normal((4, 4)))
    assert kpsvd(M, (3, 4)).rank == 2
    assert kpsvd(M, (3, 4), rtol=1e-6).rank == 1


# ---------------------------------------------------------------------------------------
# matrix-free inputs equal the dense path
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("K", [1, 3, 8])
def test_sum_of_krons_equals_dense(rng, K):
    shapes = ((2, 3), (4, 2))
    terms, M = kron_sum(rng, shapes, K)
    res = kpsvd(terms, shapes)
    ref = kpsvd(M, shapes)
    assert res.method == "lowrank"
    assert res.rank == ref.rank
    assert_close(res.s, ref.s)
    assert_close(res.to_dense(), M, atol=ATOL)
    r = min(2, ref.rank)
    tr = kpsvd(terms, shapes, rank=r)
    assert_close(tr.to_dense(), kpsvd(M, shapes, rank=r).to_dense(), atol=ATOL)
    assert_close(tr.residual, kpsvd(M, shapes, rank=r).residual, atol=RTOL)


def test_sum_of_krons_rank_above_number_of_terms(rng):
    shapes = ((3, 3), (3, 3))
    terms, M = kron_sum(rng, shapes, 2)
    res = kpsvd(terms, shapes, rank=4)
    assert_close(res.s[:2], kpsvd(M, shapes).s)
    assert_close(res.s[2:], 0.0)
    VA = res.A.reshape(4, -1)
    assert_close(VA @ VA.T, np.eye(4), atol=ATOL)


def test_kron_terms_with_more_factors_are_grouped(rng):
    A, B, C = rng.standard_normal((2, 2)), rng.standard_normal((3, 1)), rng.standard_normal((2, 4))
    K = Kron(A, B, C)
    res = kpsvd(K, ((2, 2), (6, 4)))
    assert res.rank == 1
    assert_close(res.to_dense(), K.to_dense(), atol=ATOL)
    with pytest.raises(ValueError, match="do not group"):
        kpsvd(K, ((2, 6), (3, 4)))


def test_single_kron_input(rng):
    K = Kron(rng.standard_normal((3, 3)), rng.standard_normal((2, 2)))
    res = kpsvd(K, (3, 2))
    assert_close(res.to_dense(), K.to_dense(), atol=ATOL)


@pytest.mark.parametrize("shapes", [((3, 2), (4, 5)), ((4, 4), (3, 3)), ((1, 2), (5, 3))])
def test_linear_operator_equals_dense(rng, shapes):
    (m1, n1), (m2, n2) = shapes
    _, M = kron_sum(rng, shapes, 3, scale=[1.0, 0.5, 0.2])
    M = M + 1e-2 * rng.standard_normal(M.shape)
    r = min(2, m1 * n1 - 1, m2 * n2 - 1) or 1
    ref = kpsvd(M, shapes, rank=r)
    for method in ("auto", "lanczos", "randomized"):
        res = kpsvd(aslinearoperator(M), shapes, rank=r, method=method, random_state=0)
        assert_close(res.s, ref.s)
        assert_close(res.to_dense(), ref.to_dense(), atol=RTOL)
        if res.method == "dense":  # small: R(M) formed from min(m1 n1, m2 n2) products
            assert_close(res.residual, ref.residual)
            assert_close(res.norm, ref.norm)
        else:
            assert res.residual is None and res.norm is None


def test_linear_operator_matvec_only(rng):
    """An operator with only matvec works (no rmatvec needed, M is never formed)."""
    shapes = ((3, 3), (4, 4))
    M = rng.standard_normal((12, 12))
    calls = []

    def mv(x):
        calls.append(1)
        return M @ x

    op = LinearOperator(M.shape, matvec=mv, dtype=float)
    res = kpsvd(op, shapes, rank=2, method="lanczos", random_state=0)
    assert_close(res.s, kpsvd(M, shapes, rank=2).s)
    assert calls


def test_complex_linear_operator(rng):
    shapes = ((2, 3), (3, 2))
    M = rng.standard_normal((6, 6)) + 1j * rng.standard_normal((6, 6))
    res = kpsvd(aslinearoperator(M), shapes, rank=2, method="lanczos", random_state=0)
    ref = kpsvd(M, shapes, rank=2)
    assert_close(res.s, ref.s)
    assert_close(res.to_dense(), ref.to_dense(), atol=RTOL)


def test_sparse_equals_dense(rng):
    shapes = ((6, 5), (4, 6))
    M = sp.random(24, 30, density=0.2, random_state=3, format="csc")
    ref = kpsvd(M.toarray(), shapes, rank=3)
    res = kpsvd(M, shapes, rank=3, method="lanczos", random_state=0)
    assert_close(res.s, ref.s)
    assert_close(res.to_dense(), ref.to_dense(), atol=RTOL)
    assert_close(res.residual, ref.residual, rtol=SQRT_EPS_RTOL)


def dense_sample_cov(X, center):
    N = X.shape[0]
    Xc = X - X.mean(axis=0) if center else X
    F = Xc.reshape(N, -1)
    return F.T @ F / N


@pytest.mark.parametrize("center", [True, False])
@pytest.mark.parametrize(("N", "p", "q"), [(40, 3, 5), (7, 4, 4), (200, 2, 3), (1, 3, 2),
                                           (30, 1, 4), (30, 4, 1)])
def test_samples_equals_dense(rng, N, p, q, center):
    X = rng.standard_normal((N, p, q)) + 2.0  # a non-zero mean
    M = dense_sample_cov(X, center)
    shapes = ((p, p), (q, q))
    ref = kpsvd(M, shapes)
    r = max(1, min(2, ref.rank))
    if ref.rank == 0:  # N = 1 and centred: the zero matrix
        res = kpsvd_samples(X, 1, center=center)
        assert_close(res.s, 0.0)
        assert res.residual == 0.0
        return
    res = kpsvd_samples(X, r, center=center, random_state=0)
    ref = kpsvd(M, shapes, rank=r)
    assert res.A.shape == (r, p, p) and res.B.shape == (r, q, q)
    assert_close(res.s, ref.s)
    assert_close(res.to_dense(), ref.to_dense(), atol=RTOL)
    assert_close(res.norm, np.linalg.norm(M))
    assert abs(res.residual**2 - ref.residual**2) <= 1e-12 * np.linalg.norm(M) ** 2


@pytest.mark.parametrize("method", ["lanczos", "randomized"])
def test_samples_iterative_equals_dense(rng, method):
    N, p, q = 60, 7, 6
    X = rng.standard_normal((N, p, q)) @ np.diag(np.linspace(1, 3, q))
    M = dense_sample_cov(X, True)
    ref = kpsvd(M, ((p, p), (q, q)), rank=3)
    res = kpsvd_samples(X, 3, method=method, random_state=0)
    assert_close(res.s, ref.s)
    assert_close(res.to_dense(), ref.to_dense(), atol=RTOL)


def test_samples_chunk_kernels(rng):
    """The per-chunk sums (reused by the dask path) add up to R(M) vec(V) / R(M)^T vec(U)."""
    N, p, q = 23, 3, 4
    X = rng.standard_normal((N, p, q))
    M = dense_sample_cov(X, False) * N  # unnormalised Σ vec(X_n) vec(X_n)^T
    R = loop_rearrange(M, ((p, p), (q, q)))
    V, U = rng.standard_normal((q, q)), rng.standard_normal((p, p))
    chunks = chunk_samples(X, None, chunk_elements=5 * p * q)  # chunks of 5 samples
    assert len(chunks) == 5
    assert_close(sum(row_sandwich(c, V) for c in chunks).ravel(), R @ V.ravel())
    assert_close(sum(col_sandwich(c, U) for c in chunks).ravel(), R.T @ U.ravel())


def test_r_operators_are_linear_operators_of_the_rearrangement(rng):
    """Every form of R(M) is a scipy LinearOperator equal to loop_rearrange(M): products,
    adjoint products (complex vectors too), .H, to_array() and sqnorm = ‖M‖_F²."""
    from kronkit._kpsvd.bases import symmetric_basis
    from kronkit._kpsvd.operators import DenseR, LowRankR, OperatorR, ProjectedR, SamplesR

    shapes = ((3, 3), (4, 4))
    terms, M = kron_sum(rng, shapes, 3)
    R = loop_rearrange(M, shapes)
    X = rng.standard_normal((20, 3, 4))
    Ms = dense_sample_cov(X, False)
    ops = [(DenseR(R), R, M), (DenseR(sp.csr_matrix(R)), R, M),
           (LowRankR.of_sum(kronkit.SumOfKron(terms)), R, M),
           (OperatorR(aslinearoperator(M), shapes), R, None),
           (SamplesR(chunk_samples(X, None, chunk_elements=7 * 12), 20),
            loop_rearrange(Ms, shapes), Ms)]
    for op, Rd, Md in ops:
        assert isinstance(op, LinearOperator) and op.shape == Rd.shape
        Z = rng.standard_normal((Rd.shape[1], 2)) + 1j * rng.standard_normal((Rd.shape[1], 2))
        W = rng.standard_normal((Rd.shape[0], 2)) + 1j * rng.standard_normal((Rd.shape[0], 2))
        assert_close(op.matmat(Z), Rd @ Z)
        assert_close(op @ Z[:, 0], Rd @ Z[:, 0])
        assert_close(op.rmatmat(W), Rd.T @ W)
        assert_close(op.H @ W[:, 0], Rd.T @ W[:, 0])
        assert_close(op.to_array(), Rd)
        if Md is None:
            assert op.sqnorm is None
        else:
            assert_close(op.sqnorm, np.linalg.norm(Md) ** 2)
    Q = symmetric_basis(3), symmetric_basis(4)
    proj = ProjectedR(OperatorR(aslinearoperator(M), shapes), *Q)
    want = Q[0].T @ R @ Q[1]
    assert isinstance(proj, LinearOperator)
    assert_close(proj.to_array(), want)
    assert_close(DenseR(R).project(*Q).to_array(), want)
    assert_close(LowRankR.of_sum(kronkit.SumOfKron(terms)).project(*Q).to_array(), want)


def test_samples_does_not_modify_input(rng):
    X = rng.standard_normal((10, 3, 4))
    X0 = X.copy()
    kpsvd_samples(X, 2)
    np.testing.assert_array_equal(X, X0)


# ---------------------------------------------------------------------------------------
# structure
# ---------------------------------------------------------------------------------------


def is_psd(S, tol=1e-10):
    return np.allclose(S, S.T, atol=ATOL) and np.linalg.eigvalsh(S)[0] >= -tol * abs(S).max()


def test_psd_sweep(rng):
    """Random SPD M (not Kronecker structured): the leading factors are both SPD."""
    for trial in range(150):
        p, q = (2, 3) if trial % 2 else (3, 2)
        M = spd(rng, p * q, cond_cap=1e6)
        res = kpsvd(M, (p, q), rank=2, structure="psd")
        ref = kpsvd(M, (p, q), rank=2)
        assert_close(res.s[0], ref.s[0])
        assert is_psd(res.A[0]) and is_psd(res.B[0])
        assert np.trace(res.A[0]) > 0 and not res.skew[0]
        F1, F2 = nearest_kron(M, (p, q), structure="psd")
        assert is_psd(F1) and is_psd(F2)
        assert_close(np.kron(F1, F2), ref.term(0).to_dense(), atol=RTOL)


def test_psd_samples_and_psd_singular_factors(rng):
    # singular PSD factors: the check must not reject rounding-level negative eigenvalues
    a = rng.standard_normal((4, 2))
    b = rng.standard_normal((3, 1))
    M = np.kron(a @ a.T, b @ b.T)
    F1, F2 = nearest_kron(M, (4, 3), structure="psd")
    assert_close(np.kron(F1, F2), M, atol=RTOL)
    X = rng.standard_normal((50, 4, 3))
    res = kpsvd_samples(X, 3, structure="psd")
    assert is_psd(res.A[0]) and is_psd(res.B[0])


def test_nonnegative_sweep(rng):
    for trial in range(150):
        shapes = ((2, 3), (3, 2)) if trial % 2 else ((3, 3), (2, 2))
        (m1, n1), (m2, n2) = shapes
        M = rng.random((m1 * m2, n1 * n2))
        if trial % 3 == 0:
            M[M < 0.5] = 0.0  # sparse nonnegative: zero entries where rounding could go negative
        res = kpsvd(M, shapes, rank=1, structure="nonnegative")
        ref = kpsvd(M, shapes, rank=1)
        assert_close(res.s, ref.s)
        assert res.A.min() >= 0 and res.B.min() >= 0
        F1, F2 = nearest_kron(M, shapes, structure="nonnegative")
        assert F1.min() >= 0 and F2.min() >= 0
        assert_close(np.kron(F1, F2), ref.to_dense(), atol=RTOL)


def test_symmetric_sweep(rng):
    """Every term is symmetric ⊗ symmetric or skew ⊗ skew, as flagged; spectrum unchanged."""
    n_skew_top = 0
    for _ in range(120):
        X = rng.standard_normal((6, 6))
        M = X + X.T
        res = kpsvd(M, (2, 3), structure="symmetric")
        ref = kpsvd(M, (2, 3))
        assert_close(res.s, ref.s)
        assert_close(res.to_dense(), M, atol=ATOL)
        for k in range(res.rank):
            sign = -1.0 if res.skew[k] else 1.0
            assert_close(res.A[k].T, sign * res.A[k], atol=ATOL)
            assert_close(res.B[k].T, sign * res.B[k], atol=ATOL)
        n_skew_top += bool(res.skew[0])
    assert n_skew_top < 60  # symmetric tops are the rule, skew tops the exception


def test_symmetric_with_skew_top_is_reported(rng):
    S1, S2 = spd(rng, 3), spd(rng, 3)
    K1 = np.array([[0, 1, 2], [-1, 0, 3], [-2, -3, 0.0]])
    K2 = np.array([[0, 2, -1], [-2, 0, 1], [1, -1, 0.0]])
    M = np.kron(S1, S2) / (np.linalg.norm(S1) * np.linalg.norm(S2)) + 3 * np.kron(K1, K2) / (
        np.linalg.norm(K1) * np.linalg.norm(K2))
    assert_close(M, M.T, atol=ULPS)
    res = kpsvd(M, (3, 3), structure="symmetric")
    assert res.skew.tolist() == [True, False]
    assert_close(res.s, [3.0, 1.0])
    with pytest.warns(StructureWarning, match="skew"):
        near = nearest_kron(M, (3, 3), structure="symmetric")
    assert_close(near.skew_sigma, 3.0)
    assert_close(near.sigma, 1.0)
    F1, F2 = near
    assert_close(F1, F1.T, atol=ULPS)
    assert_close(F2, F2.T, atol=ULPS)
    # unstructured: the skew pair is the answer
    G1, _ = nearest_kron(M, (3, 3))
    assert_close(G1, -G1.T, atol=ULPS)
    with pytest.raises(ValueError, match="not positive semi-definite"):
        kpsvd(M, (3, 3), structure="psd")


def _unit(X):
    return X / np.linalg.norm(X)


def _skew(rng, n):
    X = rng.standard_normal((n, n))
    return _unit(X - X.T)


def _sym(rng, n):
    X = rng.standard_normal((n, n))
    return _unit(X + X.T)


@pytest.mark.parametrize("weights", [(1.0, 0.8, 0.5), (1.0, 1.0, 0.5)])  # the second: a tie
def test_symmetric_iterative_path_matches_split(rng, weights):
    """Large enough for Lanczos: the one-SVD path (or its fallback at a tie) equals the split."""
    n1, n2 = 10, 9
    S1, S2, S3, S4 = _sym(rng, n1), _sym(rng, n2), _sym(rng, n1), _sym(rng, n2)
    S3, S4 = _unit(S3 - np.vdot(S1, S3) * S1), _unit(S4 - np.vdot(S2, S4) * S2)  # orthogonal
    M = (weights[0] * np.kron(S1, S2) + weights[1] * np.kron(_skew(rng, n1), _skew(rng, n2))
         + weights[2] * np.kron(S3, S4))  # Kronecker singular values exactly `weights`
    if weights[0] != weights[1]:  # keep the exact tie in the second case
        E = 1e-3 * rng.standard_normal(M.shape)
        M = M + E + E.T
    it = kpsvd(M, (n1, n2), rank=3, structure="symmetric", method="lanczos", random_state=0)
    ref = kpsvd(M, (n1, n2), rank=3, structure="symmetric", method="dense")
    assert it.method == "lanczos" and ref.method == "dense"
    assert_close(it.s, ref.s)
    assert it.skew.sum() == 1 and ref.skew.sum() == 1
    for res in (it, ref):
        for k in range(3):
            sign = -1.0 if res.skew[k] else 1.0
            assert_close(res.A[k].T, sign * res.A[k], atol=ULPS)
            assert_close(res.B[k].T, sign * res.B[k], atol=ULPS)
    if weights[0] != weights[1]:
        assert_close(it.to_dense(), ref.to_dense(), atol=RTOL)
    assert_close(it.residual, ref.residual, rtol=SQRT_EPS_RTOL)


def test_psd_samples_iterative_path(rng):
    X = rng.standard_normal((300, 9, 10)) @ np.diag(np.linspace(1, 2, 10))
    it = kpsvd_samples(X, 3, structure="psd", method="lanczos", random_state=0)
    ref = kpsvd(dense_sample_cov(X, True), (9, 10), rank=3, structure="psd", method="dense")
    assert_close(it.s, ref.s)
    assert_close(it.to_dense(), ref.to_dense(), atol=RTOL)
    assert is_psd(it.A[0]) and is_psd(it.B[0]) and np.trace(it.A[0]) > 0


def test_banded_inputs_give_banded_factors(rng):
    """Banded blocks are inherited without imposing anything; imposing changes nothing."""
    n1, n2 = 6, 5
    for _ in range(100):
        terms = [Kron(np.triu(np.tril(rng.standard_normal((n1, n1)), 1), -1),
                      np.triu(np.tril(rng.standard_normal((n2, n2)), 2), -2)) for _ in range(3)]
        M = sum(t.to_dense() for t in terms)
        res = kpsvd(M, (n1, n2))
        I1, J1 = np.indices((n1, n1))
        I2, J2 = np.indices((n2, n2))
        assert np.abs(res.A[:, np.abs(I1 - J1) > 1]).max() < 1e-12
        assert np.abs(res.B[:, np.abs(I2 - J2) > 2]).max() < 1e-12
        imp = kpsvd(M, (n1, n2), structure=(("banded", 1, 1), ("banded", 2, 2)))
        assert_close(imp.s, res.s)


def toeplitz_basis_by_loops(m, n):
    cols = []
    for off in range(-(m - 1), n):
        E = np.zeros((m, n))
        for i in range(m):
            if 0 <= i + off < n:
                E[i, i + off] = 1.0
        cols.append(E.ravel() / np.linalg.norm(E))
    return np.stack(cols, axis=1)


def test_imposed_toeplitz_is_the_constrained_optimum(rng):
    shapes = ((4, 3), (3, 3))
    M = rng.standard_normal((12, 9))
    QA, QB = toeplitz_basis_by_loops(4, 3), toeplitz_basis_by_loops(3, 3)
    R = loop_rearrange(M, shapes)
    s_ref = np.linalg.svd(QA.T @ R @ QB, compute_uv=False)
    res = kpsvd(M, shapes, rank=2, structure="toeplitz")
    assert_close(res.s, s_ref[:2])
    for k in range(2):
        A, B = res.A[k], res.B[k]
        assert_close(A[1:, 1:], A[:-1, :-1], atol=ULPS)
        assert_close(B[1:, 1:], B[:-1, :-1], atol=ULPS)
    # a user-given basis (any non-orthonormal spanning set) gives the same answer
    res2 = kpsvd(M, shapes, rank=2, structure=(QA @ rng.standard_normal((6, 6)), "toeplitz"))
    assert_close(res2.s, res.s)
    # and the constrained optimum beats random Toeplitz pairs
    F1, F2 = nearest_kron(M, shapes, structure="toeplitz")
    best = np.linalg.norm(M - np.kron(F1, F2))
    for _ in range(50):
        A = (QA @ rng.standard_normal(6)).reshape(4, 3)
        B = (QB @ rng.standard_normal(5)).reshape(3, 3)
        c = np.vdot(np.kron(A, B), M) / np.linalg.norm(np.kron(A, B)) ** 2
        assert np.linalg.norm(M - c * np.kron(A, B)) >= best - 1e-12


def test_structure_through_matrix_free_paths(rng):
    p, q = 4, 3
    terms = [Kron(spd(rng, p), spd(rng, q)) for _ in range(3)]
    M = sum(t.to_dense() for t in terms)
    ref = kpsvd(M, (p, q), rank=3, structure="psd")
    for inp in (terms, aslinearoperator(M)):
        res = kpsvd(inp, (p, q), rank=3, structure="psd", random_state=0)
        assert_close(res.s, ref.s)
        assert_close(res.to_dense(), ref.to_dense(), atol=RTOL)
        assert is_psd(res.A[0]) and is_psd(res.B[0])


@pytest.mark.parametrize(
    ("M", "structure", "exc", "match"),
    [
        (np.arange(36.0).reshape(6, 6), "symmetric", ValueError, "not symmetric"),
        (np.arange(36.0).reshape(6, 6), "psd", ValueError, "not symmetric"),
        (np.diag([1.0, -1, 1, 1, 1, 1]), "psd", ValueError, "not positive semi-definite"),
        (np.eye(6) - 0.1, "nonnegative", ValueError, "negative entries"),
        (np.eye(6), "hermitian", ValueError, "`structure` must be"),
        (np.eye(6), 3, TypeError, "`structure` must be"),
        (np.eye(6), ("toeplitz",), ValueError, "2 entries"),
        (np.eye(6), ("toeplitz", "wavy"), ValueError, "structure\\[1\\]"),
        (np.eye(6) * (1 + 0j), "psd", TypeError, "real `M` only"),
        (np.eye(6), ("toeplitz", np.ones((9, 2))), ValueError, "linearly independent"),
        (np.eye(6), ("toeplitz", np.ones((8, 2))), ValueError, r"shape \(9, d\)"),
    ],
)
def test_structure_errors(M, structure, exc, match):
    with pytest.raises(exc, match=match):
        kpsvd(M, (2, 3), structure=structure)


def test_structure_needs_square_blocks():
    with pytest.raises(ValueError, match="square blocks"):
        kpsvd(np.ones((6, 4)), ((2, 2), (3, 2)), structure="symmetric")
    with pytest.raises(ValueError, match="square factor"):
        kpsvd(np.ones((6, 4)), ((2, 2), (3, 2)), structure="circulant")


def test_structure_errors_matrix_free(rng):
    terms = [Kron(rng.standard_normal((2, 2)), rng.standard_normal((3, 3)))]
    with pytest.raises(ValueError, match="not symmetric"):
        kpsvd(terms, (2, 3), structure="symmetric")
    with pytest.raises(ValueError, match="could not be verified"):
        kpsvd(terms, (2, 3), structure="nonnegative")
    with pytest.raises(ValueError, match="not symmetric"):
        kpsvd(aslinearoperator(rng.standard_normal((6, 6))), (2, 3), rank=1, structure="psd")
    with pytest.raises(ValueError, match="center=False"):
        kpsvd_samples(rng.random((5, 2, 3)), 1, structure="nonnegative")
    res = kpsvd_samples(rng.random((5, 2, 3)), 1, structure="nonnegative", center=False)
    assert res.A.min() >= 0 and res.B.min() >= 0


# ---------------------------------------------------------------------------------------
# nearest Kronecker product
# ---------------------------------------------------------------------------------------


def test_nearest_kron_two_factors(rng):
    shapes = ((3, 2), (2, 4))
    M = rng.standard_normal((6, 8))
    near = nearest_kron(M, shapes)
    assert isinstance(near, NearestKronResult)
    F1, F2 = near
    s_ref, terms = dense_terms(M, shapes)
    assert_close(np.kron(F1, F2), terms[0], atol=ATOL)
    assert_close(np.linalg.norm(F1), np.linalg.norm(F2))
    assert_close(near.sigma, s_ref[0])
    assert_close(near.residual, math.sqrt(np.sum(s_ref[1:] ** 2)))
    assert near.converged and near.n_iter == 0
    assert isinstance(near.kron, Kron)
    assert_close(near.kron.to_dense(), near.to_dense())


def test_nearest_kron_zero_matrix():
    F1, F2 = nearest_kron(np.zeros((6, 6)), (2, 3))
    assert not F1.any() and not F2.any()
    near = nearest_kron(np.zeros((8, 8)), (2, 2, 2))
    assert near.sigma == 0.0 and not near.to_dense().any()


def test_d3_exact_recovery(rng):
    shapes = ((2, 3), (3, 2), (2, 2))
    A, B, C = (rng.standard_normal(s) for s in shapes)
    M = np.kron(np.kron(A, B), C)
    near = nearest_kron(M, shapes)
    assert near.converged
    assert_close(near.to_dense(), M, atol=ATOL)
    assert near.residual < 1e-7 * near.norm
    for F, G in zip(near.factors, (A, B, C), strict=True):
        assert scale_free_equal(F, G)


def test_d3_complex_exact_recovery(rng):
    shapes = ((2, 2), (3, 3), (2, 2))
    A, B, C = (rng.standard_normal(s) + 1j * rng.standard_normal(s) for s in shapes)
    M = np.kron(np.kron(A, B), C)
    near = nearest_kron(M, shapes)
    assert_close(near.to_dense(), M, atol=ATOL)
    with pytest.raises(TypeError, match="real factors only"):
        near.kron  # noqa: B018


def peel(M, shapes):
    """Peel factors off one at a time with the 2-factor nearest_kron (SVD)."""
    first, rest = shapes[0], shapes[1:]
    if len(rest) == 1:
        return list(nearest_kron(M, (first, rest[0])))
    rest_shape = (math.prod(s[0] for s in rest), math.prod(s[1] for s in rest))
    F, Rest = nearest_kron(M, (first, rest_shape))
    return [F, *peel(Rest, rest)]


def test_d3_never_worse_than_peeling(rng):
    cases = [((2, 2), (3, 2), (2, 3)), ((3, 3), (2, 2), (2, 2)), ((2, 1), (2, 3), (3, 2), (1, 2))]
    for trial in range(30):
        shapes = cases[trial % 3]
        rows, cols = math.prod(s[0] for s in shapes), math.prod(s[1] for s in shapes)
        M = rng.standard_normal((rows, cols))
        if trial % 2:  # a dominant (first factor) ⊗ (rest) part, not a d-fold Kronecker product
            (m1, n1) = shapes[0]
            M += 3 * np.kron(rng.standard_normal((m1, n1)),
                             rng.standard_normal((rows // m1, cols // n1)))
        near = nearest_kron(M, shapes)
        peeled = peel(M, shapes)
        D = peeled[0]
        for F in peeled[1:]:
            D = np.kron(D, F)
        assert near.residual <= np.linalg.norm(M - D) + 1e-12
        assert_close(near.residual, np.linalg.norm(M - near.to_dense()), rtol=SQRT_EPS_RTOL, atol=ATOL)


def test_d3_agrees_with_generic_optimiser(rng):
    shapes = ((2, 2), (2, 2), (2, 2))
    A, B, C = (spd(rng, 2) for _ in range(3))
    M = np.kron(np.kron(A, B), C) + 0.3 * rng.standard_normal((8, 8))
    near = nearest_kron(M, shapes, tol=1e-14)

    def obj(x):
        a, b, c = x[:4].reshape(2, 2), x[4:8].reshape(2, 2), x[8:].reshape(2, 2)
        return np.sum((M - np.kron(np.kron(a, b), c)) ** 2)

    best = min(
        (scipy.optimize.minimize(obj, rng.standard_normal(12), method="BFGS",
                                 options={"gtol": 1e-10}) for _ in range(8)),
        key=lambda r: r.fun,
    )
    assert_close(near.residual**2, best.fun, rtol=1e-7)
    assert_close(near.to_dense(), np.kron(np.kron(*best.x[:8].reshape(2, 2, 2)),
                                          best.x[8:].reshape(2, 2)), atol=1e-5)


def test_d3_kron_sum_equals_dense(rng):
    shapes = ((2, 3), (3, 3), (2, 1))
    terms = [Kron(*(rng.standard_normal(s) for s in shapes)) for _ in range(4)]
    M = sum(t.to_dense() for t in terms)
    a = nearest_kron(terms, shapes, tol=1e-14)
    b = nearest_kron(M, shapes, tol=1e-14)
    assert_close(a.sigma, b.sigma, rtol=CHAIN_RTOL)
    assert_close(a.to_dense(), b.to_dense(), atol=ITER_RTOL)
    assert_close(a.residual, np.linalg.norm(M - a.to_dense()), rtol=SQRT_EPS_RTOL)


def test_d3_convergence_warning(rng):
    M = rng.standard_normal((27, 27))
    with pytest.warns(ConvergenceWarning, match="did not converge"):
        near = nearest_kron(M, (3, 3, 3), max_iter=1)
    assert not near.converged and near.n_iter == 1


def test_d3_structures(rng):
    for _ in range(20):
        A, B, C = spd(rng, 2), spd(rng, 3), spd(rng, 2)
        E = spd(rng, 12)
        M = np.kron(np.kron(A, B), C) + 0.2 * E
        F = nearest_kron(M, (2, 3, 2), structure="psd").factors
        assert all(is_psd(f) for f in F)
        N = np.abs(rng.standard_normal((12, 12)))
        G = nearest_kron(N, (2, 3, 2), structure="nonnegative")
        assert all(f.min() >= 0 for f in G.factors)
        assert G.residual <= nearest_kron(N, (2, 3, 2)).residual + 1e-9
        Ms = M + rng.standard_normal((12, 12)) * 0.1
        Ms = Ms + Ms.T
        H = nearest_kron(Ms, (2, 3, 2), structure="symmetric")
        assert all(np.allclose(f, f.T, atol=ULPS) for f in H.factors)
    with pytest.raises(ValueError, match="not positive semi-definite"):
        nearest_kron(-M, (2, 3, 2), structure="psd")


def test_d3_bad_inputs(rng):
    with pytest.raises(ValueError, match="dense array or a sum of Kron"):
        nearest_kron(aslinearoperator(np.eye(8)), (2, 2, 2))
    with pytest.raises(ValueError, match=r"must have shape \(8, 8\)"):
        nearest_kron(np.eye(9), (2, 2, 2))
    with pytest.raises(ValueError, match="max_iter"):
        nearest_kron(np.eye(8), (2, 2, 2), max_iter=0)


# ---------------------------------------------------------------------------------------
# bad inputs
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"rank": 0}, ValueError, "`rank` must be >= 1"),
        ({"rank": -2}, ValueError, "`rank` must be >= 1"),
        ({"rank": 2.0}, TypeError, "`rank` must be a positive int"),
        ({"rank": True}, TypeError, "`rank` must be a positive int"),
        ({"rank": 5}, ValueError, "`rank` must be <= 4"),
        ({"method": "qr"}, ValueError, "`method` must be one of"),
        ({"tol": -1.0}, ValueError, "`tol` must be in"),
        ({"rtol": "a"}, TypeError, "`rtol` must be a float"),
        ({"random_state": "seed"}, TypeError, "`random_state`"),
    ],
)
def test_bad_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        kpsvd(np.eye(6), ((2, 2), (3, 3)), **kwargs)


def test_bad_matrices():
    M = np.eye(6)
    M[0, 1] = np.nan
    with pytest.raises(ValueError, match="NaN or Inf"):
        kpsvd(M, (2, 3))
    with pytest.raises(ValueError, match=r"`M` must have shape \(6, 6\)"):
        kpsvd(np.eye(5), (2, 3))
    with pytest.raises(TypeError, match="real or complex numeric"):
        kpsvd(np.array([["a"] * 6] * 6), (2, 3))
    with pytest.raises(TypeError, match="only Kron objects"):
        kpsvd([Kron(np.eye(2), np.eye(3)), np.eye(6)], (2, 3))
    with pytest.raises(ValueError, match="`rank` is required"):
        kpsvd(aslinearoperator(np.eye(6)), (2, 3))
    with pytest.raises(ValueError, match="`rank` is required"):
        kpsvd(sp.eye(6), (2, 3))
    with pytest.raises(ValueError, match="must have shape"):
        kpsvd(aslinearoperator(np.eye(5)), (2, 3), rank=1)


def test_bad_samples():
    with pytest.raises(ValueError, match="3-D"):
        kpsvd_samples(np.ones((4, 4)), 1)
    with pytest.raises(ValueError, match="NaN or Inf"):
        kpsvd_samples(np.full((3, 2, 2), np.nan), 1)
    with pytest.raises(ValueError, match="`rank` must be <= 1"):
        kpsvd_samples(np.ones((3, 1, 2)), 2)
    with pytest.raises(TypeError, match="`rank` must be a positive int"):
        kpsvd_samples(np.ones((3, 2, 2)), None)
    with pytest.raises(TypeError, match="`center` must be a bool"):
        kpsvd_samples(np.ones((3, 2, 2)), 1, center="yes")


def test_public_names():
    for name in ("kpsvd", "kpsvd_samples", "nearest_kron", "rearrange", "unrearrange",
                 "KPSVDResult", "NearestKronResult", "StructureWarning"):
        assert name in kronkit.__all__


def test_no_warnings_on_ordinary_use(rng):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        kpsvd(rng.standard_normal((36, 36)), (6, 6), rank=3, method="lanczos", random_state=0)
        kpsvd_samples(rng.standard_normal((30, 5, 6)), 2, random_state=0)


# ---------------------------------------------------------------------------------------
# issue 9: residuals without cancellation, d >= 3 convergence and starts, argument checks,
# clustered spectra, read-only results across pickle/deepcopy
# ---------------------------------------------------------------------------------------


def _kron3(rng, shapes):
    out = np.ones((1, 1))
    for s in shapes:
        out = np.kron(out, rng.standard_normal(s))
    return out


@pytest.mark.parametrize("method", ["auto", "dense", "lanczos", "randomized"])
def test_exact_kron_reports_zero_residual(rng, method):
    """An exact Kronecker product: rel_error at rounding level, not sqrt(eps) ~ 1e-8."""
    A, B = rng.standard_normal((20, 20)), rng.standard_normal((20, 20))
    M = np.kron(A, B)
    res = kpsvd(M, (20, 20), rank=1, method=method, random_state=0)
    assert res.rel_error < 1e-14
    near = nearest_kron(M, (20, 20), method=method, random_state=0)
    assert near.rel_error < 1e-14
    # structured paths and the other inputs, against the difference formed here
    for out in (nearest_kron(M, (20, 20), structure="toeplitz"),
                nearest_kron(sp.csr_matrix(M), (20, 20)),
                nearest_kron([Kron(A, B)], (20, 20))):
        assert_close(out.residual, np.linalg.norm(M - out.to_dense()), rtol=SQRT_EPS_RTOL, atol=ATOL)
    assert nearest_kron(sp.csr_matrix(M), (20, 20)).rel_error < 1e-14
    assert nearest_kron([Kron(A, B)], (20, 20)).rel_error < 1e-14


def test_near_exact_residual_matches_the_difference(rng):
    """Residual 1e-9·‖M‖: the difference formula would be wrong in the first digit."""
    shapes = ((4, 5), (6, 3))
    M = np.kron(rng.standard_normal(shapes[0]), rng.standard_normal(shapes[1]))
    E = rng.standard_normal(M.shape)
    M = M + 1e-9 * np.linalg.norm(M) * E / np.linalg.norm(E)
    for method in ("dense", "lanczos", "randomized"):
        res = kpsvd(M, shapes, rank=1, method=method, random_state=0)
        assert_close(res.residual, np.linalg.norm(M - res.to_dense()), rtol=SQRT_EPS_RTOL)
    near = nearest_kron(M, shapes, structure=("general", "general"))
    assert_close(near.residual, np.linalg.norm(M - near.to_dense()), rtol=SQRT_EPS_RTOL)
    shapes3 = ((2, 2), (3, 2), (2, 3))
    M3 = _kron3(rng, shapes3)
    assert nearest_kron(M3, shapes3).rel_error < 1e-14


def _plain_hopm(T, vecs, sweeps):
    """A textbook rank-1 power method for a real 3-way tensor (the reference)."""
    a, b, c = (v / np.linalg.norm(v) for v in vecs)
    s = 0.0
    for _ in range(sweeps):
        a = np.einsum("ijk,j,k->i", T, b, c)
        a /= np.linalg.norm(a)
        b = np.einsum("ijk,i,k->j", T, a, c)
        b /= np.linalg.norm(b)
        c = np.einsum("ijk,i,j->k", T, a, b)
        s = np.linalg.norm(c)
        c /= s
    return s, (a, b, c)


def test_d3_factors_match_a_fully_converged_reference():
    """The stop is on the factors: at the default tol they are converged to ~1e-12."""
    rng = np.random.default_rng(0)
    shapes = ((3, 3), (3, 3), (3, 3))
    for _ in range(4):
        M = rng.standard_normal((27, 27))
        near = nearest_kron(M, shapes)
        assert near.converged
        T = kronkit.rearrange(M, ((3, 3), (9, 9))).reshape(9, 9, 9)  # (i1 j1), (i2 j2 i3 j3)
        T = T.reshape(9, 3, 3, 3, 3).transpose(0, 1, 3, 2, 4).reshape(9, 9, 9)
        s, vecs = _plain_hopm(T, [f.ravel() for f in near.factors], 3000)
        ref = s * np.kron(np.kron(vecs[0].reshape(3, 3), vecs[1].reshape(3, 3)),
                          vecs[2].reshape(3, 3))
        assert_close(near.sigma, s, rtol=1e-13)
        assert np.max(np.abs(near.to_dense() - ref)) <= 1e-8 * np.abs(ref).max()


def test_d3_never_worse_than_the_hosvd_started_power_method():
    """Twelve Gaussian 27×27 matrices (3 of them had a worse local maximum with the peeling
    start alone): σ >= that of the power method from the unfoldings' singular vectors."""
    rng = np.random.default_rng(0)
    for _ in range(12):
        M = rng.standard_normal((27, 27))
        near = nearest_kron(M, (3, 3, 3))
        T = kronkit.rearrange(M, ((3, 3), (9, 9))).reshape(9, 3, 3, 3, 3)
        T = T.transpose(0, 1, 3, 2, 4).reshape(9, 9, 9)
        starts = [np.linalg.svd(np.moveaxis(T, k, 0).reshape(9, 81))[0][:, 0] for k in range(3)]
        s_hosvd, _ = _plain_hopm(T, starts, 2000)
        assert near.sigma >= s_hosvd * (1 - 1e-10)
        assert_close(near.residual, np.linalg.norm(M - near.to_dense()), rtol=RTOL)


@pytest.mark.parametrize("bad", [0, -5, "x", 2.5, True])
def test_iteration_arguments_are_validated(bad):
    M = np.eye(36)
    X = np.ones((4, 6, 6))
    exc = ValueError if isinstance(bad, int) and not isinstance(bad, bool) else TypeError
    with pytest.raises(exc, match="`maxiter`"):
        kpsvd(M, (6, 6), rank=2, method="lanczos", maxiter=bad)
    with pytest.raises(exc, match="`maxiter`"):
        kpsvd(M, (6, 6), rank=2, maxiter=bad)  # also where it would not be used
    with pytest.raises(exc, match="`maxiter`"):
        kpsvd_samples(X, 1, maxiter=bad)
    with pytest.raises(exc, match="`max_iter`"):
        nearest_kron(np.eye(8), (2, 2, 2), max_iter=bad)


@pytest.mark.parametrize("bad", ["1e-3", True, None, [1e-3]])
def test_tolerance_arguments_are_validated(bad):
    with pytest.raises(TypeError, match="`tol`"):
        kpsvd(np.eye(36), (6, 6), rank=2, tol=bad)
    with pytest.raises(TypeError, match="`tol`"):
        kpsvd_samples(np.ones((4, 6, 6)), 1, tol=bad)
    with pytest.raises(TypeError, match="`tol`"):
        nearest_kron(np.eye(8), (2, 2, 2), tol=bad)


def test_lanczos_maxiter_warns_and_returns_estimates(rng):
    M = rng.standard_normal((144, 144))
    with pytest.warns(ConvergenceWarning, match="maxiter"):
        res = kpsvd(M, (12, 12), rank=3, method="lanczos", maxiter=3, random_state=0)
    assert np.isfinite(res.s).all() and res.rank == 3


def test_clustered_spectrum_converges_as_a_block(rng):
    """White-noise samples: no spectral gap (σ2/σ3 ≈ 1.02). σ to 1e-10 against the dense SVD
    in a bounded number of products (ARPACK with ncv = 2k+1 needed 171 here; p = 316 ran
    for more than 15 minutes)."""
    from kronkit._kpsvd.operators import SamplesR

    X = np.random.default_rng(5).standard_normal((100, 12, 12))
    N, p = 100, 12
    Xc = (X - X.mean(0)).reshape(N, -1)
    s_ref = np.linalg.svd(loop_rearrange(Xc.T @ Xc / N, ((p, p), (p, p))), compute_uv=False)
    counted = []
    orig = SamplesR._one

    def one(self, x, left):
        counted.append(1)
        return orig(self, x, left)

    SamplesR._one = one
    try:
        res = kpsvd_samples(X, 3, method="lanczos", random_state=0)
    finally:
        SamplesR._one = orig
    assert_close(res.s, s_ref[:3], rtol=RTOL)
    assert len(counted) <= 120
    assert_close(res.residual, math.sqrt(np.sum(s_ref[3:] ** 2)), rtol=ITER_RTOL)


def test_results_stay_read_only_across_pickle_and_deepcopy(rng):
    import copy
    import pickle

    M = rng.standard_normal((12, 12))
    objs = [kpsvd(M, (3, 4), rank=2), nearest_kron(M, (3, 4)),
            nearest_kron(rng.standard_normal((8, 8)), (2, 2, 2))]
    for obj in objs:
        copies = [pickle.loads(pickle.dumps(obj, protocol=k))
                  for k in range(pickle.HIGHEST_PROTOCOL + 1)] + [copy.deepcopy(obj)]
        for c in copies:
            arrays = ([c.s, c.A, c.B, c.skew] if isinstance(c, KPSVDResult)
                      else list(c.factors))
            assert all(isinstance(a, np.ndarray) and not a.flags.writeable for a in arrays)
            assert_close(c.to_dense(), obj.to_dense(), rtol=0, atol=0)
            with pytest.raises(ValueError, match="read-only"):
                arrays[0][(0,) * arrays[0].ndim] = 1.0
