"""Property-based tests: Kron and the seed function against the dense ``np.kron`` oracle.

Hypothesis draws the number of factors (d = 1..3), their sizes (1..4, unequal included; m ≠ n
for the products), the kind (SPD / general / mixed), the condition number of the operator
(up to 1e6, shared out between the factors), the batch size (0..3, and single vectors), and a
seed for the entries. Every result is compared with the dense computation; tolerances scale
with the condition number (``helpers.assert_close_cond``, ``helpers.COND_TOL``).

Examples are bounded and derandomised (the same examples on every run, no example database),
so the file is fast and deterministic in CI.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import kronkit
from helpers import (
    EPS,
    assert_close_cond,
    conditioned,
    dense_kron,
    dense_log_quad_grad,
    kron_cond,
)
from kronkit import Kron

FAST = settings(max_examples=25, deadline=None, derandomize=True, database=None)


pytestmark = pytest.mark.usefixtures("one_blas_thread_module")


class Problem(NamedTuple):
    factors: list
    Y: np.ndarray  # (N, P), or (P,) for a single vector
    cond: float  # 2-norm condition number of the Kron
    kinds: tuple


@st.composite
def problems(draw, max_log_cond: float = 6.0):
    d = draw(st.integers(1, 3))
    dims = draw(st.lists(st.integers(1, 4), min_size=d, max_size=d))
    kind = draw(st.sampled_from(["spd", "general", "mixed"]))
    log_cond = draw(st.floats(0.0, max_log_cond))
    shares = np.array(draw(st.lists(st.floats(0.0, 1.0), min_size=d, max_size=d))) + 1e-3
    seed = draw(st.integers(0, 2**32 - 1))
    n_obs = draw(st.integers(0, 3))
    single = n_obs == 1 and draw(st.booleans())
    rng = np.random.default_rng(seed)
    kinds = tuple(
        kind if kind != "mixed" else ("spd" if k % 2 == 0 else "general") for k in range(d)
    )
    conds = 10.0 ** (log_cond * shares / shares.sum())
    factors = [conditioned(rng, n, c, kd) for n, c, kd in zip(dims, conds, kinds, strict=True)]
    P = int(np.prod(dims))
    Y = rng.standard_normal(P) if single else rng.standard_normal((n_obs, P))
    return Problem(factors, Y, kron_cond(factors), kinds)


@st.composite
def rectangular(draw):
    d = draw(st.integers(1, 3))
    shapes = draw(st.lists(st.tuples(st.integers(1, 4), st.integers(1, 4)), min_size=d,
                           max_size=d))
    seed = draw(st.integers(0, 2**32 - 1))
    n_obs = draw(st.integers(0, 3))
    rng = np.random.default_rng(seed)
    factors = [rng.standard_normal(s) for s in shapes]
    return factors, n_obs, rng


# ---------------------------------------------------------------------------------------
# Products and structure (no conditioning involved: backward stable, compared normwise)
# ---------------------------------------------------------------------------------------
@FAST
@given(rectangular())
def test_matvec_rmatvec_transpose(case):
    factors, n_obs, rng = case
    K, D = Kron(*factors), dense_kron(*factors)
    Y = rng.standard_normal((n_obs, D.shape[1]))
    Z = rng.standard_normal((n_obs, D.shape[0]))
    scale = np.prod([np.linalg.norm(a) for a in factors])
    got = K.matvec(Y)
    assert got.shape == (n_obs, D.shape[0])
    assert_close_cond(got, Y @ D.T, 1.0, scale=scale * np.linalg.norm(Y), what="matvec")
    got = K.rmatvec(Z)
    assert got.shape == (n_obs, D.shape[1])
    assert_close_cond(got, Z @ D, 1.0, scale=scale * np.linalg.norm(Z), what="rmatvec")
    y = rng.standard_normal(D.shape[1])
    assert_close_cond(K @ y, D @ y, 1.0, scale=scale * np.linalg.norm(y), what="matvec 1-D")
    assert np.array_equal(K.T.to_dense(), D.T)
    assert K.T.shape == D.T.shape


@FAST
@given(problems())
def test_trace_diag(pb):
    K, D = Kron(*pb.factors), dense_kron(*pb.factors)
    scale = np.prod([np.sum(np.abs(np.diag(a))) for a in pb.factors])
    assert_close_cond(K.trace(), np.trace(D), 1.0, scale=scale, what="trace")
    assert np.array_equal(K.diag(), np.diag(D))


# ---------------------------------------------------------------------------------------
# Inverses, solves, determinants (errors of order κ·eps on both sides)
# ---------------------------------------------------------------------------------------
@FAST
@given(problems())
def test_solve_and_inv(pb):
    K, D = Kron(*pb.factors), dense_kron(*pb.factors)
    got = K.solve_rows(pb.Y)
    assert got.shape == pb.Y.shape
    want = np.linalg.solve(D, np.atleast_2d(pb.Y).T).T.reshape(pb.Y.shape)
    assert_close_cond(got, want, pb.cond, what="solve")
    Dinv = np.linalg.inv(D)
    assert_close_cond(K.inv().to_dense(), Dinv, pb.cond, what="inv")
    assert_close_cond(K.T.solve_rows(pb.Y), np.atleast_2d(pb.Y) @ Dinv if pb.Y.ndim == 2
                      else pb.Y @ Dinv, pb.cond, what="T.solve")


@FAST
@given(problems())
def test_slogdet_logdet(pb):
    K, D = Kron(*pb.factors), dense_kron(*pb.factors)
    sign, logabs = K.slogdet()
    dsign, dlogabs = np.linalg.slogdet(D)
    assert sign == dsign
    P = D.shape[0]
    # |Δ log|det|| <= Σ_i |Δσ_i|/σ_i <= P·κ·eps (normwise backward error of the factorisation)
    assert abs(logabs - dlogabs) <= 200.0 * P * pb.cond * EPS
    if dsign > 0:
        assert K.logdet() == logabs
    else:
        with pytest.raises(kronkit.DomainError):
            K.logdet()


@FAST
@given(problems())
def test_inv_quad(pb):
    K, D = Kron(*pb.factors), dense_kron(*pb.factors)
    Y2 = np.atleast_2d(pb.Y)
    want = np.einsum("ij,ij->i", Y2, np.linalg.solve(D, Y2.T).T)
    got = K.inv_quad(pb.Y)
    if pb.Y.ndim == 1:
        assert isinstance(got, float)
    got = np.atleast_1d(got)
    assert got.shape == want.shape
    # |Δq| <= κ·eps·‖y‖²·‖S⁻¹‖ per observation
    norm_inv = np.linalg.norm(np.linalg.inv(D), 2)
    for g, w, y in zip(got, want, Y2, strict=True):
        assert_close_cond(g, w, pb.cond, scale=y @ y * norm_inv, what="inv_quad")


# ---------------------------------------------------------------------------------------
# The seed function and its gradient (dense closed form through the chain rule, per entry)
# ---------------------------------------------------------------------------------------
def _alpha(D: np.ndarray, W: np.ndarray) -> float:
    """α with β = α + q >= 1 for every row (q may be negative for non-SPD factors)."""
    if W.shape[0] == 0:
        return 1.0
    q = np.einsum("ij,ij->i", W, np.linalg.solve(D, W.T).T)
    return 1.0 + 2.0 * float(np.max(np.abs(q)))


@FAST
@given(problems(), st.sampled_from([None, "shared", "per_obs"]))
def test_log_quad(pb, mu_kind):
    D = dense_kron(*pb.factors)
    P = D.shape[0]
    rng = np.random.default_rng(P)
    mu = _mu(rng, pb.Y, mu_kind)
    W = np.atleast_2d(pb.Y - (0.0 if mu is None else mu))
    alpha = _alpha(D, W)
    got = kronkit.log_quad(pb.factors, pb.Y, mu, alpha)
    lam, _, _, _ = dense_log_quad_grad(pb.factors, pb.Y, mu, alpha)
    if pb.Y.ndim == 1:
        assert isinstance(got, float)
    got = np.atleast_1d(got)
    assert got.shape == (W.shape[0],)
    norm_inv = np.linalg.norm(np.linalg.inv(D), 2)
    for g, w, wi in zip(got, lam, W, strict=True):  # |Δλ| <= |Δq| / β, β >= (α + 1) / 2
        assert_close_cond(g, w, pb.cond, scale=wi @ wi * norm_inv / (0.5 * (alpha + 1.0)),
                          what="log_quad")


def _mu(rng, Y, mu_kind):
    if mu_kind is None:
        return None
    if mu_kind == "shared" or Y.ndim == 1:
        return rng.standard_normal(Y.shape[-1])
    return rng.standard_normal(Y.shape)


@settings(max_examples=30, deadline=None, derandomize=True, database=None)
@given(problems(), st.sampled_from([None, "sum", "mean"]), st.sampled_from([None, "shared",
                                                                              "per_obs"]))
def test_log_quad_grad(pb, reduce, mu_kind):
    D = dense_kron(*pb.factors)
    P = D.shape[0]
    rng = np.random.default_rng(P + 1)
    mu = _mu(rng, pb.Y, mu_kind)
    W = np.atleast_2d(pb.Y - (0.0 if mu is None else mu))
    N = W.shape[0]
    alpha = _alpha(D, W)
    single = pb.Y.ndim == 1
    if N == 0 and reduce == "mean":
        with pytest.raises(ValueError, match="mean of no observations"):
            kronkit.log_quad_grad(pb.factors, pb.Y, mu, alpha, reduce=reduce)
        return
    g = kronkit.log_quad_grad(pb.factors, pb.Y, mu, alpha, reduce=reduce)
    lam, gfac, gy, ga = dense_log_quad_grad(pb.factors, pb.Y, mu, alpha)
    # scale of each per-observation gradient: ‖S⁻¹‖·‖w‖·(1 + ‖w‖‖S⁻¹‖ Π‖A_j‖)/β, β >= (α+1)/2
    norm_inv = np.linalg.norm(np.linalg.inv(D), 2)
    wn = np.linalg.norm(W, axis=1) if N else np.zeros(0)
    fac_norm = np.prod([np.linalg.norm(a, 2) for a in pb.factors])
    per_obs_scale = norm_inv * wn * (1.0 + wn * norm_inv * fac_norm) / (0.5 * (alpha + 1.0))
    if single or reduce is None:
        sel = (lambda a: a[0]) if single else (lambda a: a)
        if not single:
            assert g.value.shape == (N,) and g.alpha.shape == (N,)
        assert_close_cond(g.value, sel(lam), pb.cond, scale=float(np.sum(per_obs_scale)),
                          what="value")
        assert_close_cond(g.alpha, sel(ga), pb.cond, what="alpha")
        for k, (got_k, want_k) in enumerate(zip(g.factors, gfac, strict=True)):
            assert_close_cond(got_k, sel(want_k), pb.cond, scale=float(np.sum(per_obs_scale)),
                              what=f"factors[{k}]")
        assert_close_cond(g.y, sel(gy), pb.cond, scale=float(np.sum(per_obs_scale)), what="y")
        assert_close_cond(g.mu, -sel(gy), pb.cond, scale=float(np.sum(per_obs_scale)),
                          what="mu")
        return
    s = 1.0 / N if reduce == "mean" else 1.0
    total = float(np.sum(per_obs_scale)) * s
    assert isinstance(g.value, float)
    assert_close_cond(g.value, s * lam.sum(), pb.cond, scale=total + abs(s * lam.sum()),
                      what="value")
    assert_close_cond(g.alpha, s * ga.sum(), pb.cond, what="alpha")
    for k, (got_k, want_k) in enumerate(zip(g.factors, gfac, strict=True)):
        assert_close_cond(got_k, s * want_k.sum(axis=0), pb.cond, scale=total,
                          what=f"factors[{k}]")
    assert_close_cond(g.y, s * gy, pb.cond, scale=total, what="y")
    want_mu = -s * gy if mu_kind == "per_obs" else -s * gy.sum(axis=0)
    assert_close_cond(g.mu, want_mu, pb.cond, scale=total, what="mu")


@settings(max_examples=10, deadline=None, derandomize=True, database=None)
@given(problems(max_log_cond=2.0))
def test_log_quad_grad_matches_finite_differences(pb):
    """∂λ/∂A_k and ∂λ/∂y against central differences (well-conditioned draws: FD error is
    O(h²·f''' + eps/h), which conditioning would swamp)."""
    from helpers import central_diff

    if pb.Y.ndim == 2 and pb.Y.shape[0] == 0:
        return
    y = np.atleast_2d(pb.Y)[0]
    D = dense_kron(*pb.factors)
    alpha = _alpha(D, y[None, :])
    g = kronkit.log_quad_grad(pb.factors, y, alpha=alpha)
    for k in range(len(pb.factors)):
        def f(A, k=k):
            fs = list(pb.factors)
            fs[k] = A
            return kronkit.log_quad(fs, y, alpha=alpha)
        fd = central_diff(f, pb.factors[k], h=1e-5)
        np.testing.assert_allclose(g.factors[k], fd, rtol=1e-5, atol=1e-7)
    fd = central_diff(lambda v: kronkit.log_quad(pb.factors, v, alpha=alpha), y, h=1e-5)
    np.testing.assert_allclose(g.y, fd, rtol=1e-5, atol=1e-7)
