"""The two-SPD-factor hot path of ``log_quad_grad`` (``kronkit._hot``) against dense truth.

Every branch is exercised at sizes that reach it: tiny grids (plain NumPy products), grids
past ``TINY`` (triangular products on BLAS, scratch buffers), a few rows and batches (the
one-pass GEMM route, with blocks forced small so that partial blocks occur), float32, μ of
both shapes, the reductions, ill-conditioned factors, threads; and the hand-offs to the
general path (β ≤ 0, q out of range, NaN, a non-SPD factor), which must answer exactly as
before. The oracle is the dense P×P computation: ``z = np.linalg.solve(np.kron(A, B), w)``,
``G = −z zᵀ/β`` and the dense chain rule through ``np.kron`` (``helpers.dense_chain``).
"""

from __future__ import annotations

import threading
import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose

import kronkit
from helpers import ATOL, RTOL, conditioned, dense_chain, spd
from kronkit import _factor, _hot
from kronkit._factor import tri_inverse_lower


def dense_oracle(A, B, Y, mu=None, alpha=1.0):
    """Per row: λ, ∂λ/∂A, ∂λ/∂B, ∂λ/∂y, ∂λ/∂α, densely (float64)."""
    A, B = np.asarray(A, float), np.asarray(B, float)
    S = np.kron(A, B)
    W = np.atleast_2d(np.asarray(Y, float) - (0.0 if mu is None else np.asarray(mu, float)))
    out = []
    for w, z in zip(W, np.linalg.solve(S, W.T).T, strict=True):  # one factorisation
        beta = alpha + w @ z
        gA, gB = dense_chain(-np.outer(z, z) / beta, [A, B])
        out.append((np.log(beta), gA, gB, 2.0 * z / beta, 1.0 / beta))
    return out


def check(g, ref, reduce="sum", single=False, rtol=RTOL):
    atol = ATOL if rtol == RTOL else rtol  # relative to the largest entry
    if single:
        lam, gA, gB, gy, ga = ref[0]
        assert_allclose(g.value, lam, rtol=rtol)
        assert_allclose(g.y, gy, rtol=rtol, atol=atol * np.abs(gy).max())
        assert_allclose(g.alpha, ga, rtol=rtol)
    else:
        s = 1.0 / len(ref) if reduce == "mean" else 1.0
        gA = s * sum(r[1] for r in ref)
        gB = s * sum(r[2] for r in ref)
        assert_allclose(g.value, s * sum(r[0] for r in ref), rtol=rtol)
        gy = s * np.array([r[3] for r in ref])
        assert_allclose(g.y, gy, rtol=rtol, atol=atol * np.abs(gy).max())
        assert_allclose(g.alpha, s * sum(r[4] for r in ref), rtol=rtol)
    assert_allclose(g.A, gA, rtol=rtol, atol=atol * np.abs(gA).max())
    assert_allclose(g.B, gB, rtol=rtol, atol=atol * np.abs(gB).max())
    assert_allclose(g.A, g.A.T, rtol=0, atol=0)  # exactly symmetric
    assert_allclose(g.B, g.B.T, rtol=0, atol=0)


# sizes: tiny (NumPy products), past TINY (BLAS trmm on scratch buffers), uneven p ≠ q
SHAPES = [(3, 5), (8, 8), (40, 30), (23, 47)]


@pytest.mark.parametrize("p,q", SHAPES)
@pytest.mark.parametrize("n_obs", [None, 1, 2, 3, 4, 9])
def test_matches_dense(rng, p, q, n_obs):
    A, B = spd(rng, p), spd(rng, q)
    Y = rng.standard_normal((p * q,) if n_obs is None else (n_obs, p * q))
    g = kronkit.log_quad_grad(kronkit.Kron(A, B), Y, alpha=0.7)
    check(g, dense_oracle(A, B, Y, alpha=0.7), single=n_obs is None)


@pytest.mark.parametrize("reduce", ["sum", "mean"])
@pytest.mark.parametrize("mu_shape", ["none", "shared", "per-row"])
@pytest.mark.parametrize("n_obs", [2, 6])
def test_mu_and_reductions(rng, reduce, mu_shape, n_obs):
    p, q = 36, 30
    A, B = spd(rng, p), spd(rng, q)
    Y = rng.standard_normal((n_obs, p * q))
    mu = {"none": None, "shared": rng.standard_normal(p * q),
          "per-row": rng.standard_normal((n_obs, p * q))}[mu_shape]
    g = kronkit.log_quad_grad([A, B], Y, mu, alpha=2.0, reduce=reduce)
    ref = dense_oracle(A, B, Y, mu, alpha=2.0)
    check(g, ref, reduce=reduce)
    s = 1.0 / n_obs if reduce == "mean" else 1.0
    gy = s * np.array([r[3] for r in ref])
    want_mu = -gy if mu_shape == "per-row" else -gy.sum(axis=0)
    assert_allclose(g.mu, want_mu, rtol=RTOL, atol=ATOL * np.abs(want_mu).max())


def test_batch_blocks_with_a_partial_last_block(rng, monkeypatch):
    """Blocks of 2 observations over a batch of 7 (the last block holds one)."""
    p, q = 12, 10
    monkeypatch.setattr(_hot, "BLOCK_CELLS", 2 * p * q)
    A, B = spd(rng, p), spd(rng, q)
    Y = rng.standard_normal((7, p * q))
    check(kronkit.log_quad_grad([A, B], Y, alpha=1.5), dense_oracle(A, B, Y, alpha=1.5))


@pytest.mark.parametrize("block", [None, 2])
def test_two_phase_batch(rng, monkeypatch, block):
    """inv_quad_grad (q first, then the gradients: the general engine's order) on a batch."""
    p, q = 12, 10
    if block:
        monkeypatch.setattr(_hot, "BLOCK_CELLS", block * p * q)
    A, B = spd(rng, p), spd(rng, q)
    Y = rng.standard_normal((7, p * q))
    g = kronkit.inv_quad_grad([A, B], Y)
    S = np.kron(A, B)
    Z = np.linalg.solve(S, Y.T).T
    gA, gB = dense_chain(-Z.T @ Z, [A, B])
    assert_allclose(g.value, np.einsum("ij,ij->", Y, Z), rtol=RTOL)
    assert_allclose(g.factors[0], gA, rtol=RTOL, atol=ATOL * np.abs(gA).max())
    assert_allclose(g.factors[1], gB, rtol=RTOL, atol=ATOL * np.abs(gB).max())
    assert_allclose(g.y, 2 * Z, rtol=RTOL, atol=ATOL * np.abs(Z).max())


def test_per_observation_reduce_is_unchanged(rng):
    """``reduce=None`` takes the general path: per-row gradients as before."""
    A, B = spd(rng, 40), spd(rng, 30)
    Y = rng.standard_normal((3, 1200))
    g = kronkit.log_quad_grad([A, B], Y, reduce=None)
    for i, r in enumerate(dense_oracle(A, B, Y)):
        assert_allclose(g.A[i], r[1], rtol=RTOL, atol=ATOL * np.abs(r[1]).max())


@pytest.mark.parametrize("p,q", [(6, 7), (40, 30)])
def test_float32(rng, p, q):
    A, B = spd(rng, p).astype(np.float32), spd(rng, q).astype(np.float32)
    y = rng.standard_normal(p * q).astype(np.float32)
    g = kronkit.log_quad_grad([A, B], y)
    assert g.A.dtype == np.float32 and g.y.dtype == np.float32
    check(g, dense_oracle(A, B, y), single=True, rtol=2e-4)


@pytest.mark.parametrize("p,q", [(7, 6), (40, 31)])
def test_ill_conditioned_factors(rng, p, q):
    """κ(A) = 1e6: the result is as accurate as the dense oracle allows (κ·eps scale)."""
    A = conditioned(rng, p, 1e6, "spd")
    B = conditioned(rng, q, 1e2, "spd")
    y = rng.standard_normal(p * q)
    g = kronkit.log_quad_grad([A, B], y)
    ref = dense_oracle(A, B, y)[0]
    for got, want in ((g.A, ref[1]), (g.B, ref[2]), (g.y, ref[3])):
        err = np.linalg.norm(got - want) / np.linalg.norm(want)
        assert err < 1e8 * np.finfo(float).eps


def test_inputs_are_not_modified_and_may_be_read_only(rng):
    A, B = spd(rng, 40), spd(rng, 30)
    Y = rng.standard_normal((3, 1200))
    mu = rng.standard_normal(1200)
    for a in (A, B, Y, mu):
        a.setflags(write=False)
    copies = [a.copy() for a in (A, B, Y, mu)]
    g1 = kronkit.log_quad_grad([A, B], Y, mu)
    g2 = kronkit.log_quad_grad([A, B], Y[:, ::-1][:, ::-1], mu)  # a non-contiguous view
    for a, c in zip((A, B, Y, mu), copies, strict=True):
        assert np.array_equal(a, c)
    assert_allclose(g1.A, g2.A, rtol=0, atol=0)


def test_results_do_not_alias_scratch(rng):
    """What a call returns is the caller's: a second call does not change it."""
    A, B = spd(rng, 40), spd(rng, 30)
    y1, y2 = rng.standard_normal((2, 1200))
    g1 = kronkit.log_quad_grad([A, B], y1)
    keep = [g1.A.copy(), g1.B.copy(), g1.y.copy()]
    kronkit.log_quad_grad([A, B], y2)
    for a, b in zip((g1.A, g1.B, g1.y), keep, strict=True):
        assert np.array_equal(a, b)


# ---------------------------------------------------------------------------------------
# Hand-offs to the general path: the same errors and rescaling as before
# ---------------------------------------------------------------------------------------
def test_beta_not_positive_raises_domain_error(rng):
    A, B = spd(rng, 40), spd(rng, 30)
    y = rng.standard_normal(1200)
    q = y @ np.linalg.solve(np.kron(A, B), y)
    with pytest.raises(kronkit.DomainError):
        kronkit.log_quad_grad([A, B], y, alpha=-2.0 * q)


def test_nan_in_y_names_y(rng):
    A, B = spd(rng, 40), spd(rng, 30)
    y = rng.standard_normal(1200)
    y[5] = np.nan
    with pytest.raises(ValueError, match="`y`"):
        kronkit.log_quad_grad([A, B], y)


def test_huge_y_is_rescaled_not_overflowed(rng):
    """q overflows float64 (|y| ~ 1e160): the general path's exact rescaling answers."""
    A, B = spd(rng, 40), spd(rng, 30)
    y = rng.standard_normal(1200)
    g_big = kronkit.log_quad_grad([A, B], y * 1e160, alpha=1.0)
    g = kronkit.log_quad_grad([A, B], y, alpha=0.0)
    assert_allclose(g_big.value, g.value + 2 * np.log(1e160), rtol=RTOL)
    assert_allclose(g_big.A, g.A, rtol=RTOL, atol=ATOL * np.abs(g.A).max())


def test_non_spd_factor_takes_the_general_path(rng):
    A = spd(rng, 40) + np.triu(rng.standard_normal((40, 40)), 1) * 0.1  # not symmetric
    B = spd(rng, 30)
    y = rng.standard_normal(1200)
    g = kronkit.log_quad_grad([A, B], y)
    S = np.kron(A, B)
    z, u = np.linalg.solve(S, y), np.linalg.solve(S.T, y)
    beta = 1.0 + y @ z
    gA, gB = dense_chain(-np.outer(u, z) / beta, [A, B])
    assert_allclose(g.A, gA, rtol=RTOL, atol=ATOL * np.abs(gA).max())
    assert_allclose(g.B, gB, rtol=RTOL, atol=ATOL * np.abs(gB).max())


def test_ill_conditioned_warns_once(rng):
    A = conditioned(rng, 40, 1e10, "spd")
    B = spd(rng, 30)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        kronkit.log_quad_grad([A, B], rng.standard_normal(1200))
    assert [type(x.message) for x in w] == [kronkit.IllConditionedWarning]


def test_threads_share_nothing_but_the_answers(rng):
    """Threads on problems of different sizes at once (scratch buffers are per thread)."""
    problems = []
    for p, q in [(40, 30), (23, 47), (8, 8), (40, 30), (50, 25), (23, 47)]:
        A, B = spd(rng, p), spd(rng, q)
        problems.append((kronkit.Kron(A, B), rng.standard_normal((2, p * q))))
    serial = [kronkit.log_quad_grad(K, Y) for K, Y in problems]
    results: list = [None] * (3 * len(problems))
    barrier = threading.Barrier(len(results))

    def work(i):
        K, Y = problems[i % len(problems)]
        barrier.wait()
        results[i] = kronkit.log_quad_grad(K, Y)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(results))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, r in enumerate(results):
        s = serial[i % len(problems)]
        assert r.value == s.value
        assert np.array_equal(r.A, s.A) and np.array_equal(r.y, s.y)


# ---------------------------------------------------------------------------------------
# The factorisation's inverses
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("n", [1, 2, 63, 64, 65, 129, 300])
def test_tri_inverse_lower(rng, n):
    L = np.linalg.cholesky(spd(rng, n))
    M = tri_inverse_lower(np.asfortranarray(L))
    assert M.flags.f_contiguous
    assert np.array_equal(M, np.tril(M))
    assert_allclose(M @ L, np.eye(n), rtol=0, atol=1e-12)
    assert_allclose(M, np.linalg.inv(L), rtol=1e-12, atol=1e-12 * np.abs(M).max())


def test_tri_inverse_is_cholesky_only(rng):
    f = _factor.Factorization(rng.standard_normal((4, 4)), 0)
    assert f.kind == "lu"
    with pytest.raises(ValueError, match="Cholesky"):
        f.tri_inverse()


@pytest.mark.parametrize("n", [3, 64, 65, 300, 600, 777])
def test_exactly_symmetric(rng, n):
    """Against NumPy's elementwise comparison, for a symmetric matrix and one entry off it."""
    A = rng.standard_normal((n, n))
    A = A + A.T
    assert _factor.exactly_symmetric(A)
    for i, j in [(n - 1, 0), (n // 2, n // 3), (0, n - 1)]:
        B = A.copy()
        B[i, j] += 1e-300 if i != j else 0.0
        B[i, j] = np.nextafter(B[i, j], np.inf)
        assert _factor.exactly_symmetric(B) == np.array_equal(B, B.T)


@pytest.mark.parametrize("n", [5, 130])
@pytest.mark.parametrize("tri_first", [False, True])
def test_inverse_view_is_symmetric_and_exact(rng, n, tri_first):
    """From the factor (potri) or from the cached triangular inverse (lauum)."""
    A = spd(rng, n)
    f = _factor.Factorization(A, 0)
    if tri_first:
        f.tri_inverse()
    inv = f.inverse_view()
    assert np.array_equal(inv, inv.T)
    assert not inv.flags.writeable
    assert_allclose(inv, np.linalg.inv(A), rtol=1e-12, atol=1e-12 * np.abs(inv).max())


@pytest.mark.parametrize("cond", [1e1, 1e5, 1e9, 1e14])
def test_conditioning_certificate_agrees_with_the_estimate(rng, cond):
    """With the triangular inverse cached, a well-conditioned factor is certified without
    LAPACK's estimate; the answers (singular, ill-conditioned, the rcond reported) are the
    estimate's in every case."""
    A = conditioned(rng, 40, cond, "spd")
    f = _factor.Factorization(A, 0)
    f.tri_inverse()
    singular, ill = f.singular, f.ill_conditioned
    want = _factor.rcond_from_factor(A, np.asfortranarray(np.linalg.cholesky(A)), cholesky=True)
    eps = np.finfo(float).eps
    assert singular == (not want > eps)
    assert ill == (eps < want < np.sqrt(eps))
    assert f.rcond == pytest.approx(want, rel=1e-12)
    M = f.tri_inverse()
    exact = np.abs(np.linalg.inv(A)).sum(axis=0).max()  # ‖A⁻¹‖₁ ≤ ‖M‖_∞ ‖M‖₁ (the bound)
    assert exact <= np.abs(M).sum(axis=1).max() * np.abs(M).sum(axis=0).max() * (1 + 1e-12)


def test_interleaved_states_in_one_thread(rng):
    """Two quadratic-form states alive at once in one thread (the general engine keeps one
    between q and its gradients): each keeps its own scratch rows."""
    A, B = spd(rng, 40), spd(rng, 30)
    K = kronkit.Kron(A, B)
    fa, fb = kronkit._kron.factorizations(K, "test")
    W1, W2 = rng.standard_normal((2, 2, 1200))
    s1 = _hot.TwoSPD(fa, fb, W1)
    s2 = _hot.TwoSPD(fa, fb, W2)
    c = np.array([0.5, 2.0])
    (gA2, _), gy2 = s2.grads(c)
    (gA1, _), gy1 = s1.grads(c)
    for W, gA, gy in ((W1, gA1, gy1), (W2, gA2, gy2)):
        Z = np.linalg.solve(np.kron(A, B), W.T).T
        want_A = dense_chain(-(Z.T * c) @ Z, [A, B])[0]
        assert_allclose(gA, want_A, rtol=RTOL, atol=ATOL * np.abs(want_A).max())
        assert_allclose(gy, 2 * c[:, None] * Z, rtol=RTOL, atol=ATOL * np.abs(Z).max())
