"""SumOfKron, the one form of a sum of Kronecker products ``Σ_k A_k ⊗ B_k``: against dense
``np.kron`` sums (p ≠ q, rectangular terms, r = 1, 2, 3), as input to the KPSVD and from it."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats as st

from helpers import ATOL, CHAIN_RTOL, RTOL, factors
from kronkit import Kron, SumOfKron, kpsvd, nearest_kron

SHAPES = [  # ((m1, n1), (m2, n2)): square p ≠ q, rectangular, degenerate
    ((2, 2), (3, 3)),
    ((3, 2), (2, 4)),
    ((1, 3), (4, 1)),
    ((4, 4), (1, 1)),
]


def random_terms(rng, shapes, r):
    (m1, n1), (m2, n2) = shapes
    return [(rng.standard_normal((m1, n1)), rng.standard_normal((m2, n2))) for _ in range(r)]


def dense_sum(terms):
    return sum(np.kron(a, b) for a, b in terms)


def assert_close(a, b, rtol=RTOL, atol=ATOL):
    np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)


# ---------------------------------------------------------------------------------------
# the operator, any shapes
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("shapes", SHAPES)
@pytest.mark.parametrize("r", [1, 2, 3])
def test_products_and_dense_match_np_kron_sums(rng, shapes, r):
    terms = random_terms(rng, shapes, r)
    S = SumOfKron(terms)
    D = dense_sum(terms)
    (m1, n1), (m2, n2) = shapes
    assert S.shape == D.shape == (m1 * m2, n1 * n2)
    assert S.shapes == shapes and S.dims == (n1, n2) and S.n_terms == r and len(S) == m1 * m2
    assert S.is_square == (m1 == n1 and m2 == n2)
    assert_close(S.to_dense(), D)
    Y = rng.standard_normal((5, n1 * n2))
    assert_close(S.matvec(Y), Y @ D.T)
    assert_close(S @ Y[0], D @ Y[0])
    assert f"{m1}×{n1} ⊗ {m2}×{n2}" in repr(S)


@pytest.mark.parametrize("r", [1, 2, 3])
def test_gaussian_quantities_p_ne_q(rng, r):
    """Square factors, p ≠ q: log det, the quadratic form and the log-density (r ≤ 2: the
    simultaneous diagonalisation; r = 3: the dense Cholesky) against the dense matrix."""
    p, q = 3, 2
    terms = [tuple(factors(rng, (p, q), "spd"))]
    terms += [(0.3 * A, 0.2 * B) for A, B in (factors(rng, (p, q), "spd") for _ in range(r - 1))]
    S = SumOfKron(terms)
    D = dense_sum(terms)
    Y = rng.standard_normal((4, p * q))
    assert S.is_positive_definite
    assert_close(S.trace(), np.trace(D))
    assert_close(S.diag(), np.diagonal(D))
    assert_close(S.logdet(), np.linalg.slogdet(D)[1])
    assert_close(S.inv_quad(Y), np.einsum("ij,ij->i", Y, np.linalg.solve(D, Y.T).T), rtol=CHAIN_RTOL)
    assert_close(S.logpdf(Y), st.multivariate_normal(np.zeros(p * q), D).logpdf(Y))


@pytest.mark.parametrize("what", ["logdet", "inv_quad", "logpdf", "trace", "diag"])
def test_rectangular_terms_refuse_square_only_quantities(rng, what):
    S = SumOfKron(random_terms(rng, ((3, 2), (2, 4)), 2))
    args = {"inv_quad": (np.ones(6),), "logpdf": (np.ones(6),)}.get(what, ())
    with pytest.raises(ValueError, match=rf"SumOfKron\.{what}` needs square factors.*3×2 ⊗ 2×4"):
        getattr(S, what)(*args)
    assert S.is_positive_definite is False


def test_construction_errors(rng):
    A, B = rng.standard_normal((2, 3)), rng.standard_normal((3, 2))
    with pytest.raises(ValueError, match="at least one term"):
        SumOfKron([])
    with pytest.raises(TypeError, match="sequence of Kron"):
        SumOfKron(3.0)
    with pytest.raises(ValueError, match=r"terms\[1\]` has factor shapes 2×3 ⊗ 3×2 ⊗ 2×3, "
                       r"expected 2×3 ⊗ 3×2 like"):
        SumOfKron([Kron(A, B), Kron(A, B, A)])
    with pytest.raises(ValueError, match=r"terms\[1\]` has factor shapes 3×2 ⊗ 2×3"):
        SumOfKron([(A, B), (B, A)])
    # the terms are Kron operators (copied, read-only); one Kron is a sum of one term
    S = SumOfKron(Kron(A, B))
    assert S.n_terms == 1 and not S.terms[0].factors[0].flags.writeable
    assert_close(S.to_dense(), np.kron(A, B), atol=0)


# ---------------------------------------------------------------------------------------
# with the Kronecker-product SVD
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("shapes", SHAPES)
@pytest.mark.parametrize("r", [1, 2, 3])
def test_kpsvd_of_a_sum_equals_dense_and_list_input(rng, shapes, r):
    terms = random_terms(rng, shapes, r)
    D = dense_sum(terms)
    res = kpsvd(SumOfKron(terms), shapes)
    ref = kpsvd(D, shapes)
    same = kpsvd([Kron(a, b) for a, b in terms], shapes)
    assert res.method == "lowrank" and res.rank == ref.rank
    assert_close(res.s, ref.s)
    assert_close(same.s, res.s, atol=0, rtol=0)
    assert_close(res.to_dense(), D, atol=RTOL)
    assert_close(res.residual, 0.0, atol=ATOL)


@pytest.mark.parametrize("shapes", SHAPES)
@pytest.mark.parametrize("r", [1, 2, 3])
def test_to_sum_is_the_terms(rng, shapes, r):
    D = dense_sum(random_terms(rng, shapes, r)) + 0.01 * rng.standard_normal(
        (shapes[0][0] * shapes[1][0], shapes[0][1] * shapes[1][1]))
    k = min(r, shapes[0][0] * shapes[0][1], shapes[1][0] * shapes[1][1])
    res = kpsvd(D, shapes, rank=k)
    S = res.to_sum()
    assert isinstance(S, SumOfKron) and S.n_terms == res.rank and S.shapes == shapes
    assert_close(S.to_dense(), res.to_dense())
    assert_close(S.to_dense(), sum(np.kron(res.s[j] * res.A[j], res.B[j]) for j in range(k)))
    for j in range(k):
        assert_close(S.terms[j].to_dense(), res.term(j).to_dense(), atol=0, rtol=0)
    # round trip: the KPSVD of the sum is the sum's own terms
    again = kpsvd(S, shapes)
    assert_close(again.s, res.s)
    assert_close(again.to_dense(), res.to_dense(), atol=RTOL)


def test_to_sum_errors(rng):
    M = rng.standard_normal((6, 6)) + 1j * rng.standard_normal((6, 6))
    with pytest.raises(TypeError, match="complex"):
        kpsvd(M, (2, 3), rank=2).to_sum()
    with pytest.raises(TypeError, match="complex"):
        kpsvd(M, (2, 3), rank=2).term(0)
    empty = kpsvd(np.zeros((6, 6)), (2, 3))
    assert empty.rank == 0
    with pytest.raises(ValueError, match="no terms"):
        empty.to_sum()


def test_nearest_kron_of_a_sum(rng):
    shapes = ((3, 2), (2, 4))
    terms = random_terms(rng, shapes, 3)
    S = SumOfKron(terms)
    got = nearest_kron(S, shapes)
    ref = nearest_kron(dense_sum(terms), shapes)
    assert_close(got.sigma, ref.sigma)
    assert_close(got.to_dense(), ref.to_dense(), atol=RTOL)
    assert_close(got.residual, ref.residual)
    # three factors: two-factor terms cannot be split into three
    with pytest.raises(ValueError, match="do not group"):
        nearest_kron(S, ((3, 2), (1, 2), (2, 2)))


def test_sum_input_with_other_shapes_is_rejected(rng):
    S = SumOfKron(random_terms(rng, ((2, 2), (3, 3)), 2))
    with pytest.raises(ValueError, match="do not group"):
        kpsvd(S, ((3, 3), (2, 2)))
