"""Every Kron method against the dense np.kron result, and the identities of REFERENCES §1."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from numpy.testing import assert_allclose
from scipy.sparse.linalg import LinearOperator

import kronkit
from helpers import ATOL, RTOL, dense_kron, general, spd
from kronkit import Kron

SIZES = [1, 2, 3, 5]
SHAPES_2 = [(p, q) for p, q in itertools.product(SIZES, SIZES)]
SHAPES_3 = [(2, 3, 1), (3, 2, 2), (1, 5, 2), (2, 2, 3)]


def _factors(rng, dims, kind):
    make = spd if kind == "spd" else general
    return [make(rng, n) for n in dims]


@pytest.mark.parametrize("dims", SHAPES_2 + SHAPES_3)
@pytest.mark.parametrize("kind", ["spd", "general"])
class TestAgainstDense:
    def test_matvec_single_and_batch(self, rng, dims, kind):
        fs = _factors(rng, dims, kind)
        K, D = Kron(*fs), dense_kron(*fs)
        y = rng.standard_normal(D.shape[1])
        Y = rng.standard_normal((4, D.shape[1]))
        assert_allclose(K @ y, D @ y, rtol=RTOL, atol=ATOL)
        assert_allclose(K.matvec(Y), Y @ D.T, rtol=RTOL, atol=ATOL)
        assert_allclose(K.rmatvec(Y), Y @ D, rtol=RTOL, atol=ATOL)
        assert_allclose(Y @ K, Y @ D, rtol=RTOL, atol=ATOL)

    def test_solve_inv(self, rng, dims, kind):
        fs = _factors(rng, dims, kind)
        K, D = Kron(*fs), dense_kron(*fs)
        Y = rng.standard_normal((3, D.shape[1]))
        assert_allclose(K.solve(Y), np.linalg.solve(D, Y.T).T, rtol=RTOL, atol=ATOL)
        assert_allclose(K.solve(Y[0]), np.linalg.solve(D, Y[0]), rtol=RTOL, atol=ATOL)
        assert isinstance(K.inv(), Kron)
        assert_allclose(K.inv().to_dense(), np.linalg.inv(D), rtol=RTOL, atol=ATOL)

    def test_determinants(self, rng, dims, kind):
        fs = _factors(rng, dims, kind)
        K, D = Kron(*fs), dense_kron(*fs)
        sign, logabs = K.slogdet()
        dsign, dlogabs = np.linalg.slogdet(D)
        assert sign == dsign
        assert_allclose(logabs, dlogabs, rtol=RTOL, atol=ATOL)
        if dsign > 0:
            assert_allclose(K.logdet(), dlogabs, rtol=RTOL, atol=ATOL)

    def test_trace_diag_norm_transpose(self, rng, dims, kind):
        fs = _factors(rng, dims, kind)
        K, D = Kron(*fs), dense_kron(*fs)
        assert_allclose(K.trace(), np.trace(D), rtol=RTOL, atol=ATOL)
        assert_allclose(K.diag(), np.diag(D), rtol=RTOL, atol=ATOL)
        assert_allclose(K.norm(), np.linalg.norm(D), rtol=RTOL)
        assert_allclose(K.T.to_dense(), D.T, rtol=RTOL, atol=ATOL)

    def test_inv_quad(self, rng, dims, kind):
        fs = _factors(rng, dims, kind)
        K, D = Kron(*fs), dense_kron(*fs)
        Y = rng.standard_normal((5, D.shape[1]))
        expect = np.einsum("ij,ij->i", Y, np.linalg.solve(D, Y.T).T)
        assert_allclose(K.inv_quad(Y), expect, rtol=RTOL, atol=ATOL)
        assert isinstance(K.inv_quad(Y[0]), float)
        assert_allclose(K.inv_quad(Y[0]), expect[0], rtol=RTOL, atol=ATOL)

    def test_linear_operator(self, rng, dims, kind):
        fs = _factors(rng, dims, kind)
        K, D = Kron(*fs), dense_kron(*fs)
        L = K.aslinearoperator()
        assert isinstance(L, LinearOperator)
        X = rng.standard_normal((D.shape[1], 3))
        assert_allclose(L @ X, D @ X, rtol=RTOL, atol=ATOL)
        assert_allclose(L.rmatvec(X[:, 0]), D.T @ X[:, 0], rtol=RTOL, atol=ATOL)
        assert_allclose(L.matvec(X[:, 1]), D @ X[:, 1], rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize(
    "shapes",
    [[(2, 3), (4, 1)], [(1, 5), (3, 2)], [(2, 3), (3, 2), (2, 2)], [(3, 1), (1, 4), (2, 5)]],
)
def test_rectangular_matvec(rng, shapes):
    fs = [rng.standard_normal(s) for s in shapes]
    K, D = Kron(*fs), dense_kron(*fs)
    assert K.shape == D.shape
    Y = rng.standard_normal((3, D.shape[1]))
    assert_allclose(K @ Y, Y @ D.T, rtol=RTOL, atol=ATOL)
    Z = rng.standard_normal((2, D.shape[0]))
    assert_allclose(K.rmatvec(Z), Z @ D, rtol=RTOL, atol=ATOL)
    assert_allclose(K.T.to_dense(), D.T)
    with pytest.raises(ValueError, match="must be square for solve"):
        K.solve(Y)


def test_leading_batch_axes(rng):
    fs = [general(rng, 2), general(rng, 3)]
    K, D = Kron(*fs), dense_kron(*fs)
    Y = rng.standard_normal((2, 4, 6))
    assert_allclose(K @ Y, Y @ D.T, rtol=RTOL, atol=ATOL)
    assert_allclose(K.solve(Y), np.linalg.solve(D, Y.reshape(-1, 6).T).T.reshape(Y.shape),
                    rtol=RTOL, atol=ATOL)


class TestIdentities:
    """REFERENCES §1, each checked without forming the big matrix (and against it)."""

    def test_inverse_of_kron_is_kron_of_inverses(self, rng):
        A, B = general(rng, 3), general(rng, 4)
        assert_allclose(Kron(A, B).inv().to_dense(), np.kron(np.linalg.inv(A), np.linalg.inv(B)),
                        rtol=RTOL, atol=ATOL)

    def test_transpose(self, rng):
        A, B = general(rng, 3, 2), general(rng, 4, 5)
        assert_allclose(Kron(A, B).T.to_dense(), np.kron(A.T, B.T))

    def test_logdet(self, rng):
        A, B = spd(rng, 3), spd(rng, 4)
        p, q = 3, 4
        expect = q * np.linalg.slogdet(A)[1] + p * np.linalg.slogdet(B)[1]
        assert_allclose(Kron(A, B).logdet(), expect, rtol=RTOL)

    def test_trace(self, rng):
        A, B = general(rng, 3), general(rng, 5)
        assert_allclose(Kron(A, B).trace(), np.trace(A) * np.trace(B), rtol=RTOL)

    def test_frobenius_of_krons(self, rng):
        A, B, C, D = (general(rng, n) for n in (3, 4, 3, 4))
        expect = np.sum(A * C) * np.sum(B * D)
        assert_allclose(kronkit.frob(Kron(A, B), Kron(C, D)), expect, rtol=RTOL)
        assert_allclose(expect, np.sum(np.kron(A, B) * np.kron(C, D)), rtol=RTOL)

    def test_vec_convention(self, rng):
        A, B = general(rng, 3, 2), general(rng, 4, 5)
        Y = rng.standard_normal((2, 5))
        assert_allclose(Kron(A, B) @ Y.ravel(), (A @ Y @ B.T).ravel(), rtol=RTOL, atol=ATOL)
        assert_allclose(np.kron(A, B) @ Y.ravel(), (A @ Y @ B.T).ravel(), rtol=RTOL, atol=ATOL)

    def test_mixed_product(self, rng):
        A, B, C, D = general(rng, 3, 2), general(rng, 4, 5), general(rng, 2, 3), general(rng, 5, 2)
        assert_allclose((Kron(A, B) @ Kron(C, D)).to_dense(), np.kron(A, B) @ np.kron(C, D),
                        rtol=RTOL, atol=ATOL)


class TestConstruction:
    def test_nested_kron_flattens(self, rng):
        A, B, C = general(rng, 2), general(rng, 3), general(rng, 2)
        K = Kron(Kron(A, B), C)
        assert K.n_factors == 3
        assert_allclose(K.to_dense(), dense_kron(A, B, C))

    def test_scalar_scaling(self, rng):
        A, B = general(rng, 2), general(rng, 3)
        assert_allclose((2.5 * Kron(A, B)).to_dense(), 2.5 * np.kron(A, B))
        assert_allclose((-Kron(A, B)).to_dense(), -np.kron(A, B))
        assert_allclose((Kron(A, B) / 4).to_dense(), np.kron(A, B) / 4)

    def test_inputs_are_copied_and_not_modified(self, rng):
        A, B = spd(rng, 3), spd(rng, 2)
        A0, B0 = A.copy(), B.copy()
        K = Kron(A, B)
        y = rng.standard_normal(6)
        y0 = y.copy()
        K.solve(y), K.inv_quad(y), K.logdet(), K @ y
        A[0, 0] = 99.0
        assert_allclose(K.factors[0], A0)
        assert_allclose(B, B0)
        assert_allclose(y, y0)
        assert not K.factors[0].flags.writeable

    def test_integer_input_cast_to_float64(self):
        K = Kron(np.array([[2, 1], [1, 2]]), np.eye(2, dtype=int))
        assert K.dtype == np.float64
        assert_allclose(K.solve(np.array([1, 2, 3, 4])),
                        np.linalg.solve(np.kron([[2, 1], [1, 2]], np.eye(2)), [1, 2, 3, 4]),
                        rtol=RTOL, atol=ATOL)

    def test_float32_kept(self, rng):
        K = Kron(spd(rng, 2).astype(np.float32), spd(rng, 3).astype(np.float32))
        assert K.dtype == np.float32
        assert (K @ np.ones(6, dtype=np.float32)).dtype == np.float32

    def test_factorisation_kinds_cached(self, rng):
        K = Kron(spd(rng, 3), general(rng, 2))
        assert K.factorization_kinds == ("cholesky", "lu")
        first = K._facts[0]
        K.solve(np.ones(6))
        K.logdet()
        assert K._facts[0] is first

    def test_negative_definite_symmetric_uses_lu(self, rng):
        A = -spd(rng, 3)
        K = Kron(A, spd(rng, 2))
        assert K.factorization_kinds == ("lu", "cholesky")
        assert_allclose(K.solve(np.ones(6)), np.linalg.solve(K.to_dense(), np.ones(6)))

    def test_repr(self, rng):
        assert "3×3 ⊗ 2×2" in repr(Kron(np.eye(3), np.eye(2)))


class TestBadInput:
    def test_no_factors(self):
        with pytest.raises(ValueError, match="at least one factor"):
            Kron()

    def test_not_2d(self):
        with pytest.raises(ValueError, match=r"`factors\[1\]` must be 2-D"):
            Kron(np.eye(2), np.ones(3))

    def test_empty(self):
        with pytest.raises(ValueError, match=r"`factors\[0\]` is empty"):
            Kron(np.zeros((0, 0)), np.eye(2))

    def test_not_square_for_inverse(self):
        K = Kron(np.ones((2, 3)), np.eye(2))
        for method in (K.inv, K.logdet, K.slogdet, K.trace, K.diag):
            with pytest.raises(ValueError, match=r"`factors\[0\]` must be square"):
                method()

    def test_nan(self):
        with pytest.raises(ValueError, match=r"`factors\[0\]` contains NaN or Inf"):
            Kron(np.array([[np.nan, 0], [0, 1]]), np.eye(2))
        K = Kron(np.eye(2), np.eye(2))
        with pytest.raises(ValueError, match="`y` contains NaN or Inf"):
            K.solve(np.array([1.0, np.inf, 0, 0]))

    def test_complex(self):
        with pytest.raises(TypeError, match="complex"):
            Kron(np.eye(2) * 1j, np.eye(2))

    def test_wrong_y_length(self):
        K = Kron(np.eye(2), np.eye(3))
        with pytest.raises(ValueError, match="`y` must have length 6"):
            K @ np.ones(5)

    def test_singular_factor_named(self):
        S = np.array([[1.0, 2.0], [2.0, 4.0]])
        K = Kron(np.eye(3), S)
        with pytest.raises(kronkit.SingularFactorError, match="factor 1 is singular") as info:
            K.solve(np.ones(6))
        assert info.value.factor == 1
        assert isinstance(info.value, np.linalg.LinAlgError)
        assert K.slogdet() == (0.0, -np.inf)
        assert K.logdet() == -np.inf

    def test_near_singular_factor(self):
        S = np.array([[1.0, 1.0], [1.0, 1.0 + 1e-17]])
        with pytest.raises(kronkit.SingularFactorError):
            Kron(S, np.eye(2)).inv()

    def test_negative_determinant_logdet(self):
        K = Kron(np.diag([1.0, -1.0, 1.0]), np.eye(2))  # exponent 2: det > 0
        assert_allclose(K.logdet(), 0.0, atol=1e-15)
        K = Kron(np.diag([1.0, -1.0]), np.eye(3))  # exponent 3: det < 0
        with pytest.raises(kronkit.DomainError, match="negative"):
            K.logdet()
        assert K.slogdet() == (-1.0, 0.0)

    def test_scalar_mul_with_kron_rejected(self):
        K = Kron(np.eye(2), np.eye(2))
        with pytest.raises(TypeError, match="use `@`"):
            K * K

    def test_mixed_product_shape_mismatch(self):
        with pytest.raises(ValueError, match="mixed product"):
            Kron(np.eye(2), np.eye(3)) @ Kron(np.eye(3), np.eye(3))
