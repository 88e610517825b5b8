"""Every Kron method against the dense np.kron result, and the identities of REFERENCES §1."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from numpy.testing import assert_allclose
from scipy.sparse.linalg import LinearOperator

import kronkit
from helpers import ATOL, ROUNDING, RTOL, ULPS, dense_kron, factors, general, spd
from kronkit import Kron
from kronkit._kron import factorization

SIZES = [1, 2, 3, 5]
SHAPES_2 = [(p, q) for p, q in itertools.product(SIZES, SIZES)]
SHAPES_3 = [(2, 3, 1), (3, 2, 2), (1, 5, 2), (2, 2, 3)]


@pytest.mark.parametrize("dims", SHAPES_2 + SHAPES_3)
@pytest.mark.parametrize("kind", ["spd", "general"])
class TestAgainstDense:
    def test_matvec_single_and_batch(self, rng, dims, kind):
        fs = factors(rng, dims, kind)
        K, D = Kron(*fs), dense_kron(*fs)
        y = rng.standard_normal(D.shape[1])
        Y = rng.standard_normal((4, D.shape[1]))
        assert_allclose(K @ y, D @ y, rtol=RTOL, atol=ATOL)
        assert_allclose(K.matvec(Y), Y @ D.T, rtol=RTOL, atol=ATOL)
        assert_allclose(K.rmatvec(Y), Y @ D, rtol=RTOL, atol=ATOL)
        assert_allclose(Y @ K, Y @ D, rtol=RTOL, atol=ATOL)

    def test_solve_inv(self, rng, dims, kind):
        fs = factors(rng, dims, kind)
        K, D = Kron(*fs), dense_kron(*fs)
        Y = rng.standard_normal((3, D.shape[1]))
        assert_allclose(K.solve_rows(Y), np.linalg.solve(D, Y.T).T, rtol=RTOL, atol=ATOL)
        assert_allclose(K.solve(Y.T), np.linalg.solve(D, Y.T), rtol=RTOL, atol=ATOL)
        assert_allclose(K.solve(Y[0]), np.linalg.solve(D, Y[0]), rtol=RTOL, atol=ATOL)
        assert isinstance(K.inv(), Kron)
        assert_allclose(K.inv().to_dense(), np.linalg.inv(D), rtol=RTOL, atol=ATOL)

    def test_determinants(self, rng, dims, kind):
        fs = factors(rng, dims, kind)
        K, D = Kron(*fs), dense_kron(*fs)
        sign, logabs = K.slogdet()
        dsign, dlogabs = np.linalg.slogdet(D)
        assert sign == dsign
        assert_allclose(logabs, dlogabs, rtol=RTOL, atol=ATOL)
        if dsign > 0:
            assert_allclose(K.logdet(), dlogabs, rtol=RTOL, atol=ATOL)

    def test_trace_diag_norm_transpose(self, rng, dims, kind):
        fs = factors(rng, dims, kind)
        K, D = Kron(*fs), dense_kron(*fs)
        assert_allclose(K.trace(), np.trace(D), rtol=RTOL, atol=ATOL)
        assert_allclose(K.diag(), np.diag(D), rtol=RTOL, atol=ATOL)
        assert_allclose(K.norm(), np.linalg.norm(D), rtol=RTOL)
        assert_allclose(K.T.to_dense(), D.T, rtol=RTOL, atol=ATOL)

    def test_inv_quad(self, rng, dims, kind):
        fs = factors(rng, dims, kind)
        K, D = Kron(*fs), dense_kron(*fs)
        Y = rng.standard_normal((5, D.shape[1]))
        expect = np.einsum("ij,ij->i", Y, np.linalg.solve(D, Y.T).T)
        assert_allclose(K.inv_quad(Y), expect, rtol=RTOL, atol=ATOL)
        assert isinstance(K.inv_quad(Y[0]), float)
        assert_allclose(K.inv_quad(Y[0]), expect[0], rtol=RTOL, atol=ATOL)

    def test_linear_operator(self, rng, dims, kind):
        fs = factors(rng, dims, kind)
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
    assert_allclose(K.matvec(Y), Y @ D.T, rtol=RTOL, atol=ATOL)
    assert_allclose(K @ Y.T, D @ Y.T, rtol=RTOL, atol=ATOL)
    Z = rng.standard_normal((2, D.shape[0]))
    assert_allclose(K.rmatvec(Z), Z @ D, rtol=RTOL, atol=ATOL)
    assert_allclose(K.T.to_dense(), D.T)
    with pytest.raises(ValueError, match="must be square for solve"):
        K.solve_rows(Y)
    with pytest.raises(ValueError, match="must be square for solve"):
        K.solve(Y.T)


def test_leading_batch_axes(rng):
    fs = [general(rng, 2), general(rng, 3)]
    K, D = Kron(*fs), dense_kron(*fs)
    Y = rng.standard_normal((2, 4, 6))
    assert_allclose(K.matvec(Y), Y @ D.T, rtol=RTOL, atol=ATOL)
    assert_allclose(K.solve_rows(Y), np.linalg.solve(D, Y.reshape(-1, 6).T).T.reshape(Y.shape),
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
        with pytest.raises(ValueError, match="`x` in `K @ x` must have length 6"):
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


# ---------------------------------------------------------------------------------------
# Issue 9 regressions
# ---------------------------------------------------------------------------------------
def _mp_logdet(F: np.ndarray, digits: int = 60) -> float:
    """log|det F| of the floating-point matrix F, in 60-digit arithmetic (independent truth)."""
    mpmath = pytest.importorskip("mpmath")
    with mpmath.workdps(digits):
        return float(mpmath.log(abs(mpmath.det(mpmath.matrix(F.tolist())))))


def _q_diag(seed: int, d) -> np.ndarray:
    Q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((len(d), len(d))))
    F = (Q * np.asarray(d, dtype=float)) @ Q.T
    return (F + F.T) / 2


class TestDeterminantConsistentWithSolve:
    """Item 2: logdet/slogdet raise where solve raises; a warning below sqrt(eps)."""

    def test_issue_reproducer_raises_like_solve(self):
        F = _q_diag(3, [1, 1e-9, 1e-20])
        K = Kron(F, np.eye(2))
        with pytest.raises(kronkit.SingularFactorError) as e_solve:
            K.solve(np.ones(6))
        for method in (K.logdet, K.slogdet):  # returned -120.12 (exact: -120.74) before
            with pytest.raises(kronkit.SingularFactorError, match="factor 0 is singular") as e:
                method()
            assert e.value.factor == 0 and e.value.rcond == e_solve.value.rcond

    def test_nearly_singular_spd_factor_passes_cholesky_but_raises(self):
        F = np.diag([1.0, 1e-17])  # potrf succeeds; rcond 1e-17 < eps
        K = Kron(np.eye(2), F)
        assert K.factorization_kinds == ("cholesky", "cholesky")
        for method in (K.logdet, K.slogdet, K.inv, lambda: K.solve(np.ones(4))):
            with pytest.raises(kronkit.SingularFactorError, match="factor 1"):
                method()

    def test_exact_zero_pivot_gives_minus_inf(self):
        K = Kron(np.eye(2), np.array([[1.0, 2.0], [1.0, 2.0]]))
        assert K.slogdet() == (0.0, -np.inf)
        assert K.logdet() == -np.inf
        with pytest.raises(kronkit.SingularFactorError, match="exact zero pivot"):
            K.solve(np.ones(4))

    @pytest.mark.parametrize("spd_factor", [True, False])
    def test_ill_conditioned_warns_once_with_index_and_estimate(self, spd_factor):
        F = _q_diag(5, [1.0, 1e-10, 2.0])
        if not spd_factor:
            F = F @ np.diag([1.0, -1.0, 1.0])  # non-symmetric: the LU path
        K = Kron(np.eye(2), F)
        with pytest.warns(kronkit.IllConditionedWarning) as rec:
            sign, logabs = K.slogdet()
        assert len(rec) == 1
        w = rec[0].message
        assert w.factor == 1 and "factor 1" in str(w) and "condition number" in str(w)
        cond1 = np.linalg.cond(F, 1)
        assert 0.1 < w.rcond * cond1 < 10  # LAPACK's estimate is within a small factor
        # the value is still right to the accuracy the conditioning allows (vs 60 digits)
        assert_allclose(logabs, 2 * _mp_logdet(F), rtol=1e-16 * cond1)
        assert sign == np.sign(np.linalg.det(np.kron(np.eye(2), F)))

    def test_every_factorisation_user_warns_exactly_once(self, rng):
        from kronkit._kpsvd.route import kpsvd_route  # the seed's route (was `seed_route`)

        F = _q_diag(5, [1.0, 1e-10, 2.0])
        K = Kron(spd(rng, 2), F)
        y = rng.standard_normal(6)
        ops = {
            "solve": lambda: K.solve(y),
            "inv": K.inv,
            "logdet": K.logdet,
            "slogdet": K.slogdet,
            "inv_quad": lambda: K.inv_quad(y),
            "log_quad": lambda: kronkit.log_quad(K, y),
            "log_quad_grad": lambda: kronkit.log_quad_grad(K, np.stack([y] * 5)),
            "log_quad_grad_kpsvd": lambda: kronkit.log_quad_grad(K, y, method="kpsvd"),
            "inv_quad_grad": lambda: kronkit.inv_quad_grad(K, y),
            "logdet_grad": lambda: kronkit.logdet_grad(K),
            "log_quad_hvp": lambda: kronkit.log_quad_hvp(K, y, (None, F)),
            "kpsvd_route": lambda: kpsvd_route(K, y),
        }
        for name, op in ops.items():
            with pytest.warns(kronkit.IllConditionedWarning) as rec:
                op()
            assert len(rec) == 1, (name, [str(r.message) for r in rec])
            assert rec[0].message.factor == 1

    def test_well_conditioned_does_not_warn(self, rng):
        K = Kron(spd(rng, 3), general(rng, 2))
        K.logdet(), K.solve(np.ones(6)), K.inv()  # filterwarnings=error would raise


class TestEmptyBatches:
    """Item 3 (Kron part): N = 0 gives empty results of the right shapes, nothing printed."""

    @pytest.mark.parametrize("kind", ["spd", "general"])
    def test_empty(self, rng, kind, capfd):
        fs = factors(rng, (2, 3), kind)
        K = Kron(*fs)
        Y = np.zeros((0, 6))
        for out in (K.matvec(Y), K.rmatvec(Y), K.solve_rows(Y), Y @ K):
            assert out.shape == (0, 6)
        for out in (K @ Y.T, K.solve(Y.T)):
            assert out.shape == (6, 0)
        assert K.inv_quad(Y).shape == (0,)
        assert K.solve_rows(np.zeros((2, 0, 6))).shape == (2, 0, 6)
        assert K.solve(np.zeros((2, 6, 0))).shape == (2, 6, 0)
        captured = capfd.readouterr()
        assert captured.err == "" and captured.out == ""


class TestCopies:
    """Item 4: pickle (every protocol) and deepcopy keep factors read-only, caches honest."""

    @pytest.mark.parametrize("protocol", range(6))
    def test_pickle_protocols(self, rng, protocol):
        import pickle

        fs = [general(rng, 3), spd(rng, 2)]
        K = Kron(*fs)
        y = rng.standard_normal(6)
        x = K.solve(y)  # populate the caches before copying
        K.inv()
        K2 = pickle.loads(pickle.dumps(K, protocol=protocol))
        assert all(not a.flags.writeable for a in K2.factors)
        for a, b in zip(K2.factors, fs, strict=True):
            assert np.array_equal(a, b)
        assert_allclose(K2.solve(y), x, rtol=RTOL)
        assert_allclose(K2 @ K2.solve(y), y, rtol=RTOL, atol=ATOL)
        Ki = pickle.loads(pickle.dumps(K.inv(), protocol=protocol))
        assert all(not a.flags.writeable for a in Ki.factors)
        assert_allclose(Ki.to_dense(), np.linalg.inv(dense_kron(*fs)), rtol=RTOL, atol=ATOL)

    def test_copy_never_holds_a_stale_factorisation(self, rng):
        import copy

        K = Kron(general(rng, 3), spd(rng, 2))
        y = rng.standard_normal(6)
        K.solve(y)
        for K2 in (copy.deepcopy(K), copy.copy(K)):
            assert all(not a.flags.writeable for a in K2.factors)
            with pytest.raises(ValueError, match="read-only"):
                K2.factors[0][0, 0] = 99.0
            # even if someone forces a write, the copy holds no factorisation to go stale
            f0 = np.array(K2.factors[0])
            f0[0, 0] += 1.0
            K3 = copy.deepcopy(Kron(f0, K2.factors[1]))
            assert_allclose(K3 @ K3.solve(y), y, rtol=RTOL, atol=ATOL)
            assert_allclose(K2 @ K2.solve(y), y, rtol=RTOL, atol=ATOL)
        assert copy.deepcopy(K)._facts == [None, None]

    def test_factorisation_pickles_read_only(self, rng):
        import pickle

        f = factorization(Kron(general(rng, 3)), 0)
        for protocol in range(6):
            g = pickle.loads(pickle.dumps(f, protocol=protocol))
            assert not g.factor.flags.writeable and not g.piv.flags.writeable
            b = rng.standard_normal(3)
            assert_allclose(g.solve(b), f.solve(b), rtol=RTOL)


class TestIssue9Edges:
    def test_to_dense_size_guard(self):
        K = Kron(np.eye(300), np.eye(300), np.eye(300))  # 2e14 bytes dense
        with pytest.raises(ValueError, match=r"Kron.to_dense\(\)`.*GiB.*DENSE_MAX_BYTES"):
            K.to_dense()
        small = Kron(np.eye(3), np.eye(2))
        with pytest.raises(ValueError, match="above the limit"):
            small.to_dense(max_bytes=100)
        assert_allclose(small.to_dense(max_bytes=36 * 8), np.eye(6))

    def test_division_by_zero(self):
        K = Kron(np.eye(2), np.eye(2))
        with pytest.raises(kronkit.DomainError, match=r"divisor.*non-zero"):
            K / 0
        with pytest.raises(ValueError, match=r"divisor.*non-zero"):
            K / np.float32(0.0)

    @pytest.mark.parametrize("bad", [np.inf, -np.inf, np.nan])
    def test_non_finite_scalars(self, bad):
        K = Kron(np.eye(2), np.eye(2))
        with pytest.raises(ValueError, match=r"divisor .* must be finite"):
            K / bad
        with pytest.raises(ValueError, match=r"multiplier .* must be finite"):
            K * bad
        with pytest.raises(ValueError, match=r"multiplier .* must be finite"):
            bad * K

    @pytest.mark.parametrize("bad", [np.ones(2), "x", 1j, [1.0]])
    def test_non_scalar_scalars(self, bad):
        K = Kron(np.eye(2), np.eye(2))
        with pytest.raises(TypeError, match=r"divisor .* must be a real scalar"):
            K / bad
        with pytest.raises(TypeError, match=r"multiplier .* must be a real scalar"):
            K * bad

    def test_scaling_overflow_is_reported_as_overflow(self):
        K = Kron(np.eye(2) * 1e200, np.eye(2))
        with pytest.raises(OverflowError, match=r"overflows.*1e\+200"):
            K * 1e200
        with pytest.raises(OverflowError, match="overflows"):
            K / 1e-200
        assert_allclose((K / 1e200).to_dense(), np.eye(4))

    def test_masked_array_refused(self):
        M = np.ma.masked_array(np.eye(2), mask=[[False, True], [False, False]])
        with pytest.raises(TypeError, match=r"`factors\[1\]` is a masked array with 1 masked"):
            Kron(np.eye(3), M)
        K = Kron(np.eye(2), np.eye(2))
        with pytest.raises(TypeError, match="`y` is a masked array"):
            K.solve(np.ma.masked_array(np.ones(4), mask=[0, 0, 1, 0]))
        # without masked entries the data are used as they are
        ok = Kron(np.ma.masked_array(2 * np.eye(2)), np.eye(2))
        assert_allclose(ok.to_dense(), 2 * np.eye(4))

    def test_overflow_messages_name_the_computation(self):
        big = Kron(np.eye(2) * 1e200, np.eye(3) * 1e200)
        y = np.full(6, 1e200)
        for op in (lambda: big @ y, lambda: big.rmatvec(y), lambda: big.matvec(y[None])):
            with pytest.raises(OverflowError, match=r"overflowed.*`y` has entries up to 1e\+200"):
                op()
        tiny = Kron(np.eye(2) * 1e-200, np.eye(3) * 1e-200)
        with pytest.raises(OverflowError, match=r"`factors` has entries up to 1e-200"):
            tiny.solve(y)
        with pytest.raises(OverflowError, match="quadratic form"):
            tiny.inv_quad(y)
        with pytest.raises(OverflowError, match="inverse of factor 0 overflows"):
            Kron(np.eye(2) * 1e-310, np.eye(2)).inv()
        with pytest.raises(OverflowError, match=r"mixed product of factor 0"):
            big @ big
        # the true values are representable: no spurious error
        assert_allclose(big @ np.full(6, 1e-300), np.full(6, 1e100), rtol=RTOL)
        assert_allclose(tiny.solve(np.full(6, 1e-300)), np.full(6, 1e100), rtol=RTOL)


def test_reductions_overflow_reported_not_silent():
    """trace / diag / norm / frob of finite inputs: the true value or an OverflowError."""
    big = Kron(np.eye(2) * 1e200, np.eye(3) * 1e200)
    for op in (big.trace, big.diag, lambda: kronkit.frob(big, big)):
        with pytest.raises(OverflowError, match=r"overflowed.*1e\+200"):
            op()
    # ‖1e200·I_2‖_F = 1.414e200 is representable although its square is not
    assert_allclose(Kron(np.eye(2) * 1e200).norm(), np.sqrt(2) * 1e200, rtol=RTOL)
    with pytest.raises(OverflowError, match="partial_contraction"):
        kronkit.partial_contraction(np.full((4, 4), 1e200), np.full((2, 2), 1e200))


def test_intermediate_overflow_is_not_an_error():
    """(1e200·A) ⊗ (1e-200·B) applied to 1e200·y: the first mode product overflows but the
    result does not (truth: the dense product of the unscaled factors, times 1e200)."""
    rng = np.random.default_rng(7)
    A, B = general(rng, 3), general(rng, 2)
    y = rng.standard_normal((2, 6))
    K = Kron(A * 1e200, B * 1e-200)
    D = np.kron(A, B)
    assert_allclose(K.matvec(y * 1e200), (y @ D.T) * 1e200, rtol=ULPS)
    assert_allclose(K @ (y.T * 1e200), (D @ y.T) * 1e200, rtol=ULPS)
    assert_allclose(K.rmatvec(y * 1e200), (y @ D) * 1e200, rtol=ULPS)
    Ki = Kron(A * 1e-200, B * 1e200)  # K⁻¹ applies A⁻¹·1e200 first
    assert_allclose(Ki.solve_rows(y * 1e200), np.linalg.solve(D, y.T).T * 1e200, rtol=ROUNDING)


def test_intermediate_underflow_is_not_a_silent_zero():
    """(1e200·A) ⊗ (1e-200·B) solving for 1e-300·y: A⁻¹ first gives 1e-500 → 0 unless the
    rows are renormalised (before: an exact zero vector, silently)."""
    rng = np.random.default_rng(8)
    A, B = general(rng, 3), general(rng, 2)
    y = rng.standard_normal((2, 6))
    D = np.kron(A, B)
    K = Kron(A * 1e200, B * 1e-200)
    assert_allclose(K.solve_rows(y * 1e-300) * 1e300, np.linalg.solve(D, y.T).T, rtol=ROUNDING)
    assert_allclose(K.solve(y.T * 1e-300) * 1e300, np.linalg.solve(D, y.T), rtol=ROUNDING)
    Kt = Kron(A * 1e-200, B * 1e200)
    assert_allclose(Kt.matvec(y * 1e-300) * 1e300, y @ D.T, rtol=ULPS)
    assert_allclose(Kt.rmatvec(y[0] * 1e-300) * 1e300, y[0] @ D, rtol=ULPS)
