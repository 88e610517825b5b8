"""Issue 11 item 2: the operators behave like the dense NumPy matrix they stand for.

``K @ x``, ``K @ M`` (the columns of a 2-D ``M``), ``X @ K`` (the rows of ``X``), ``x @ K``,
``K.solve(M)`` (as ``np.linalg.solve``) and ``np.asarray(K)`` are compared with the same
expression on ``np.kron``'s dense matrix, for d = 1, 2, 3 factors, square and rectangular
factors, k = 1 and 3 right-hand sides and square (P×P) ``M``. Before this item kronkit
applied ``K @ M`` and ``K.solve(M)`` to the *rows* of a 2-D ``M``, so the 2-D cases here
failed (a P×P ``M`` gave ``M @ D.T``; a (P, 3) one raised). The statistical, row-wise methods
(``matvec``, ``rmatvec``, ``solve_rows``) keep observations as rows and are checked too.
"""

from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_allclose

from helpers import ATOL, RTOL, dense_kron, factors
from kronkit import DENSE_MAX_BYTES, Kron, SumOfKron

SQUARE = [(5,), (3, 4), (2, 3, 2)]  # d = 1, 2, 3
RECTANGULAR = [[(2, 5)], [(2, 3), (4, 1)], [(2, 3), (3, 2), (1, 2)]]  # (m_k, n_k) per factor


def _right_operands(rng, n):
    """2-D right operands with n rows: k = 1, k = 3 and a square n×n one."""
    return [rng.standard_normal((n, k)) for k in (1, 3, n)]


def _close(got, want):
    assert got.shape == want.shape
    assert_allclose(got, want, rtol=RTOL, atol=ATOL)


def _products_are_dense(rng, op, D):
    """``op @ x``, ``z @ op``, ``op @ M`` (columns) and ``X @ op`` (rows) equal the dense ``D``'s."""
    m, n = D.shape
    _close(op @ (x := rng.standard_normal(n)), D @ x)
    _close((z := rng.standard_normal(m)) @ op, z @ D)
    for M in _right_operands(rng, n):
        _close(op @ M, D @ M)
    for X in _right_operands(rng, m):
        _close(X.T @ op, X.T @ D)


@pytest.mark.parametrize("dims", SQUARE, ids=lambda d: f"d{len(d)}")
@pytest.mark.parametrize("kind", ["spd", "general"])
def test_square_operator_is_the_dense_matrix(rng, dims, kind):
    fs = factors(rng, dims, kind)
    K, D = Kron(*fs), dense_kron(*fs)
    P = D.shape[0]
    x = rng.standard_normal(P)
    _close(K @ x, D @ x)
    _close(x @ K, x @ D)
    _close(K.solve(x), np.linalg.solve(D, x))
    for M in _right_operands(rng, P):
        _close(K @ M, D @ M)                        # columns, as NumPy
        _close(M.T @ K, M.T @ D)                    # rows
        _close(K.solve(M), np.linalg.solve(D, M))   # column by column
        _close(np.matmul(M.T, K), M.T @ D)          # the ufunc, through __array__
    A = np.asarray(K)
    assert isinstance(A, np.ndarray) and A.dtype == D.dtype
    assert_allclose(A, D, rtol=0, atol=0)
    assert np.asarray(K, dtype=np.float32).dtype == np.float32
    if kind == "spd":
        assert_allclose(np.linalg.eigvalsh(K), np.linalg.eigvalsh(D), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("shapes", RECTANGULAR, ids=lambda s: f"d{len(s)}")
def test_rectangular_operator_is_the_dense_matrix(rng, shapes):
    fs = [rng.standard_normal(s) for s in shapes]
    K, D = Kron(*fs), dense_kron(*fs)
    m, n = D.shape
    assert K.shape == (m, n) and m != n
    _products_are_dense(rng, K, D)
    assert_allclose(np.asarray(K), D, rtol=0, atol=0)
    with pytest.raises(ValueError, match="must be square for solve"):
        K.solve(rng.standard_normal((n, 2)))


def test_stacks_broadcast_as_numpy(rng):
    fs = factors(rng, (2, 3), "general")
    K, D = Kron(*fs), dense_kron(*fs)
    M = rng.standard_normal((4, 2, 6, 3))    # a (4, 2) stack of 6×3 matrices
    _close(K @ M, D @ M)
    _close(K.solve(M), np.linalg.solve(D, M))
    X = rng.standard_normal((2, 5, 6))      # a stack of 5×6 matrices on the left
    _close(X @ K, X @ D)


def test_row_wise_methods_keep_observations_as_rows(rng):
    """The statistical convention, next to the NumPy one: rows in, rows out."""
    fs = factors(rng, (3, 2), "general")
    K, D = Kron(*fs), dense_kron(*fs)
    Y = rng.standard_normal((4, 6))  # 4 observations of length P = 6
    _close(K.matvec(Y), Y @ D.T)
    _close(K.rmatvec(Y), Y @ D)
    _close(K.solve_rows(Y), np.linalg.solve(D, Y.T).T)
    _close(K.matvec(Y), (K @ Y.T).T)
    _close(K.solve_rows(Y), K.solve(Y.T).T)
    _close(K.inv_quad(Y), np.einsum("ni,ni->n", Y, np.linalg.solve(D, Y.T).T))


@pytest.mark.parametrize("d", [1, 2, 3])
def test_kron_at_kron_is_the_mixed_product(rng, d):
    """``Kron @ Kron`` stays the mixed product (A1⊗..⊗Ad)(B1⊗..⊗Bd) = A1B1⊗..⊗AdBd, a Kron."""
    inner = [(2, 3), (4, 2), (1, 2)][:d]
    L = [rng.standard_normal((m, n)) for m, n in inner]
    R = [rng.standard_normal((n, m + 1)) for m, n in inner]
    out = Kron(*L) @ Kron(*R)
    assert isinstance(out, Kron) and out.n_factors == d
    _close(out.to_dense(), dense_kron(*L) @ dense_kron(*R))


def test_wrong_shapes_name_the_argument(rng):
    K = Kron(np.eye(2), np.eye(3))
    with pytest.raises(ValueError, match=r"`x` in `K @ x` must have length 6"):
        K @ np.ones(5)
    with pytest.raises(ValueError, match=r"`x` in `K @ x` must have shape \(6,\) or \(6, k\)"):
        K @ np.ones((4, 6))  # observations as rows: the row-wise methods say so
    with pytest.raises(ValueError, match=r"`y` in `K.solve\(y\)` must have shape"):
        K.solve(np.ones((4, 6)))
    with pytest.raises(ValueError, match=r"`x` in `x @ K` must have length 6"):
        np.ones((6, 4)) @ K
    with pytest.raises(ValueError, match="`x`"):
        K @ np.float64(2.0)  # NumPy's matmul refuses a scalar too; `*` scales
    with pytest.raises(TypeError, match="`x`"):
        K @ np.ones(6, dtype=complex)
    with pytest.raises(ValueError, match=r"`y` in `K\.solve_rows"):
        K.solve_rows(np.ones((6, 4)))


def test_asarray_size_guard_and_copy_protocol(rng):
    """np.asarray refuses above DENSE_MAX_BYTES (without allocating), as to_dense does, while
    the structured products on the same operator still work."""
    A, B = np.eye(200) * 2.0, np.eye(100) * 3.0  # P = 20 000: 3.2 GB dense
    K = Kron(A, B)
    assert K.shape[0] * K.shape[1] * 8 > DENSE_MAX_BYTES
    with pytest.raises(ValueError, match=r"np\.asarray\(Kron\).*DENSE_MAX_BYTES"):
        np.asarray(K)
    with pytest.raises(ValueError, match=r"np\.asarray\(Kron\)"):
        np.linalg.eigvalsh(K)
    X = np.zeros((2, 20000))
    X[0, 5], X[1, 12345] = 1.0, 1.0
    rows = X @ K  # ndarray @ Kron defers to Kron.__rmatmul__: structured, no dense matrix
    want = np.stack([np.kron(A[0], B[5]), np.kron(A[123], B[45])])
    assert_allclose(rows, want, rtol=0, atol=0)
    small = Kron(np.eye(2), np.eye(3))
    with pytest.raises(ValueError, match="copy=False"):
        np.asarray(small, copy=False)
    assert_allclose(np.array(small, copy=True), np.eye(6), rtol=0, atol=0)


# -- SumOfKron ------------------------------------------------------------------------------
SUM_SHAPES = [((2, 2), (3, 3)), ((2, 3), (4, 1))]  # square, rectangular


@pytest.mark.parametrize("shapes", SUM_SHAPES, ids=["square", "rectangular"])
@pytest.mark.parametrize("r", [1, 2, 3])
def test_sum_of_kron_is_the_dense_matrix(rng, shapes, r):
    terms = [tuple(rng.standard_normal(s) for s in shapes) for _ in range(r)]
    S = SumOfKron(terms)
    D = sum(np.kron(a, b) for a, b in terms)
    m, n = D.shape
    _products_are_dense(rng, S, D)
    _close(S @ (M := rng.standard_normal((2, n, 3))), D @ M)
    _close(S.matvec(Y := rng.standard_normal((4, n))), Y @ D.T)
    _close(S.rmatvec(Z := rng.standard_normal((4, m))), Z @ D)
    assert_allclose(np.asarray(S), D, rtol=RTOL, atol=ATOL)
    assert S.dtype == D.dtype and S.ndim == 2
    with pytest.raises(ValueError, match=r"`X` in `M @ X` must have shape"):
        S @ rng.standard_normal((4, n + 1))


def test_sum_of_kron_size_guard():
    S = SumOfKron([(np.eye(200), np.eye(100)), (2 * np.eye(200), np.eye(100))])
    with pytest.raises(ValueError, match=r"np\.asarray\(SumOfKron\)"):
        np.asarray(S)
    with pytest.raises(ValueError, match=r"SumOfKron\.to_dense\(\)"):
        S.to_dense()
    out = np.ones((1, 20000)) @ S  # structured: 3·(row sums of the identities)
    assert_allclose(out, np.full((1, 20000), 3.0), rtol=0, atol=0)
