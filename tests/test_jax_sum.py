"""kronkit.jax on sums of Kronecker products: values vs dense np.kron + np.linalg, derivatives
(first and second order) vs JAX autodiff of the dense formula (jnp.kron + solve / slogdet).

Truth is independent of kronkit: the dense P×P matrix built from the same factors.
"""

from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_allclose

from helpers import ATOL, CHAIN_RTOL, RTOL, factor
from sum_forms import FORMS, dense_sum, flatten, np_dense, sum_forms

jax = pytest.importorskip("jax")
jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402

import kronkit  # noqa: E402
import kronkit.jax as kj  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_blas_thread_module")

DIMS = [(3, 4), (2, 3, 2)]


def close(a, b, rtol=RTOL):
    b = np.asarray(b)
    scale = max(1.0, float(np.max(np.abs(b)))) if b.size else 1.0
    assert_allclose(np.asarray(a), b, rtol=rtol, atol=max(ATOL, rtol) * scale)


def jdense(terms, dims):
    return dense_sum(terms, dims, jnp.kron, jnp.eye, jnp.diag)


def objective(fns, terms, y, r):
    """Σ log_quad + logdet + ⟨solve, r⟩ + Σ inv_quad: every primitive in one scalar."""
    solve, inv_quad, logdet, log_quad = fns
    return (jnp.sum(log_quad(terms, y, None, 2.0)) + logdet(terms)
            + jnp.sum(solve(terms, y) * r) + jnp.sum(inv_quad(terms, y)))


def dense_fns(dims):
    def solve(terms, y):
        return jnp.linalg.solve(jdense(terms, dims), y.T).T

    def inv_quad(terms, y):
        return jnp.sum(y * solve(terms, y), -1)

    def logdet(terms):
        return jnp.linalg.slogdet(jdense(terms, dims))[1]

    def log_quad(terms, y, mu, alpha):
        return jnp.log(alpha + inv_quad(terms, y))

    return solve, inv_quad, logdet, log_quad


OURS = (kj.solve, kj.inv_quad, kj.logdet, kj.log_quad)


def as_jnp(terms):
    return [[jnp.asarray(F, dtype=float) for F in term] for term in terms]


# ---------------------------------------------------------------------------------------
# Values and gradients, every form, d = 2 and 3
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("dims", DIMS)
@pytest.mark.parametrize("form", FORMS)
def test_values_match_dense(rng, form, dims):
    terms = sum_forms(rng, dims)[form]
    S, P = np_dense(terms, dims), int(np.prod(dims))
    Y = rng.standard_normal((2, P))
    Z = np.linalg.solve(S, Y.T).T
    close(kj.solve(terms, Y), Z)
    close(kj.solve(terms, Y[0]), Z[0])
    close(kj.inv_quad(terms, Y), np.sum(Y * Z, -1))
    close(kj.logdet(terms), np.linalg.slogdet(S)[1])
    close(kj.log_quad(terms, Y, Y[1], 3.0), np.log(3.0 + np.sum((Y - Y[1]) * np.linalg.solve(
        S, (Y - Y[1]).T).T, -1)))


@pytest.mark.parametrize("dims", DIMS)
@pytest.mark.parametrize("form", FORMS)
def test_gradients_match_dense_autodiff(rng, form, dims):
    """Every factor of every term (matrices, diagonals, scalars) and y."""
    terms = as_jnp(sum_forms(rng, dims)[form])
    flat, rebuild = flatten(terms)
    P = int(np.prod(dims))
    y, r = jnp.asarray(rng.standard_normal((2, P))), jnp.asarray(rng.standard_normal((2, P)))
    got = jax.jit(jax.grad(lambda fl, y: objective(OURS, rebuild(fl), y, r),
                           argnums=(0, 1)))(flat, y)
    want = jax.jit(jax.grad(lambda fl, y: objective(dense_fns(dims), rebuild(fl), y, r),
                            argnums=(0, 1)))(flat, y)
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        assert g.shape == w.shape
        close(g, w, CHAIN_RTOL)


@pytest.mark.parametrize("form", ["a", "b", "mix"])
def test_ill_conditioned_factors(rng, form):
    """SPD factors with condition number 1e6: values and gradients still to 1e-9."""
    dims = (4, 3)
    terms = as_jnp(sum_forms(rng, dims, cond=1e6)[form])
    S = np_dense(terms, dims)
    y = rng.standard_normal(12)
    close(kj.inv_quad(terms, y), y @ np.linalg.solve(S, y), CHAIN_RTOL)
    close(kj.logdet(terms), np.linalg.slogdet(S)[1], CHAIN_RTOL)
    flat, rebuild = flatten(terms)

    def ours(fl):
        return kj.logdet(rebuild(fl)) + kj.log_quad(rebuild(fl), y)

    def dense(fl):
        _, _, logdet, log_quad = dense_fns(dims)
        return logdet(rebuild(fl)) + log_quad(rebuild(fl), y, None, 1.0)

    got, want = jax.jit(jax.grad(ours))(flat), jax.jit(jax.grad(dense))(flat)
    for g, w in zip(got, want, strict=True):
        close(g, w, CHAIN_RTOL)


@pytest.mark.parametrize("form", ["c", "d"])
def test_hessian_all_factors(rng, form):
    """Second derivatives in every direction of every factor (non-symmetric ones included)."""
    dims = (3, 2)
    terms = as_jnp(sum_forms(rng, dims)[form])
    flat, rebuild = flatten(terms)
    y = jnp.asarray(rng.standard_normal((1, 6)))
    got = jax.jit(jax.hessian(lambda fl: objective(OURS, rebuild(fl), y, y)))(flat)
    want = jax.jit(jax.hessian(lambda fl: objective(dense_fns(dims), rebuild(fl), y, y)))(flat)
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        close(g, w, CHAIN_RTOL)


# ---------------------------------------------------------------------------------------
# Kernel hyperparameters through user code: jax.hessian, degenerate spectra
# ---------------------------------------------------------------------------------------
X1, X2 = jnp.linspace(0.0, 1.0, 5), jnp.linspace(0.0, 2.0, 4)


def rbf(x, ell):
    return jnp.exp(-((x[:, None] - x[None, :]) ** 2) / ell ** 2)


HYPER_SUMS = {
    # K1(ℓ)⊗K2(2ℓ) + s²I
    "noise": lambda ell, s2: [[rbf(X1, ell), rbf(X2, 2.0 * ell)], [s2, 1.0]],
    # K(ℓ)⊗I + s²I with I a matrix: eigh of a fully degenerate spectrum on axis 1
    "identity-matrix": lambda ell, s2: [[rbf(X1, ell), jnp.eye(4)], [s2, 1.0]],
    # K1(ℓ)⊗K2(ℓ) + (s²I)⊗I: the metric of axis 0 is s²I, a full matrix
    "metric": lambda ell, s2: [[rbf(X1, ell), rbf(X2, ell)], [s2 * jnp.eye(5), 1.0]],
}


@pytest.mark.parametrize(("case", "which"), [(case, "nll") for case in HYPER_SUMS]
                         + [("identity-matrix", "log_quad")])
def test_hessian_of_hyperparameters(rng, case, which):
    """jax.hessian (and reverse-over-reverse) of f(ℓ, log s²), the factors built inside the
    function, vs the dense formula (``nll`` = ½(logdet + inv_quad) covers both)."""
    y = jnp.asarray(rng.standard_normal(20))

    def f(theta, fns):
        terms = HYPER_SUMS[case](theta[0], jnp.exp(theta[1]))
        _, inv_quad, logdet, log_quad = fns
        if which == "inv_quad":
            return inv_quad(terms, y)
        if which == "logdet":
            return logdet(terms)
        if which == "log_quad":
            return log_quad(terms, y, None, 1.0)
        return 0.5 * (logdet(terms) + inv_quad(terms, y))

    theta = jnp.asarray([0.7, np.log(0.3)])
    want = jax.jit(jax.hessian(lambda t: f(t, dense_fns((5, 4)))))(theta)
    got = jax.jit(jax.hessian(lambda t: f(t, OURS)))(theta)
    assert np.all(np.isfinite(got))
    close(got, want, CHAIN_RTOL)
    close(jax.jit(jax.jacrev(jax.jacrev(lambda t: f(t, OURS))))(theta), want, CHAIN_RTOL)


# ---------------------------------------------------------------------------------------
# jit, vmap, inputs
# ---------------------------------------------------------------------------------------
def test_jit_and_vmap_over_y(rng):
    dims = (3, 4)
    terms = as_jnp(sum_forms(rng, dims)["mix"])
    S = np_dense(terms, dims)
    Y = jnp.asarray(rng.standard_normal((3, 12)))
    Z = np.linalg.solve(S, np.asarray(Y).T).T
    jitted = jax.jit(lambda t, Y: (kj.solve(t, Y), kj.inv_quad(t, Y), kj.logdet(t),
                                   kj.log_quad(t, Y)))
    z, q, ld, lq = jitted(terms, Y)
    close(z, Z)
    close(q, np.sum(np.asarray(Y) * Z, -1))
    close(ld, np.linalg.slogdet(S)[1])
    close(lq, np.log1p(np.sum(np.asarray(Y) * Z, -1)))
    close(jax.vmap(lambda y: kj.inv_quad(terms, y))(Y), q)
    close(jax.vmap(lambda y: kj.solve(terms, y))(Y), Z)
    per_row = jax.vmap(jax.grad(lambda y: kj.log_quad(terms, y)))(Y)
    close(per_row, 2.0 * Z / (1.0 + np.sum(np.asarray(Y) * Z, -1))[:, None])
    close(kj.inv_quad(terms, jnp.zeros((0, 12))), np.zeros(0))


def test_vmap_over_factors(rng):
    K1s = np.stack([factor(rng, 3, "spd") for _ in range(3)])
    K2, y = factor(rng, 2, "spd"), rng.standard_normal(6)
    got = jax.vmap(lambda K1: kj.inv_quad([[K1, K2], [0.3, 1.0]], y))(jnp.asarray(K1s))
    want = [y @ np.linalg.solve(np.kron(K1, K2) + 0.3 * np.eye(6), y) for K1 in K1s]
    close(got, want)
    grads = jax.vmap(jax.grad(lambda K1: kj.logdet([[K1, K2], [0.3, 1.0]])))(jnp.asarray(K1s))
    for g, K1 in zip(grads, K1s, strict=True):
        S = np.kron(K1, K2) + 0.3 * np.eye(6)
        want_g = np.einsum("iajb,ab->ij", np.linalg.inv(S).reshape(3, 2, 3, 2), K2)
        close(g, want_g)


def test_sum_of_kron_and_kron_terms(rng):
    """A kronkit.SumOfKron (constant factors) and Kron terms give the same values."""
    K1, K2 = factor(rng, 3, "spd"), factor(rng, 4, "spd")
    D = rng.uniform(0.5, 2.0, 4)
    S_op = kronkit.Kron(K1, K2) + 0.5 * kronkit.Kron(np.eye(3), np.diag(D))
    S = np.kron(K1, K2) + 0.5 * np.kron(np.eye(3), np.diag(D))
    y = rng.standard_normal(12)
    for given in (S_op, [kronkit.Kron(K1, K2), [0.5, D]]):
        close(kj.inv_quad(given, y), y @ np.linalg.solve(S, y))
        close(kj.logdet(given), np.linalg.slogdet(S)[1])
    # a flat list of matrices is still one Kronecker product
    close(kj.logdet([K1, K2]), np.linalg.slogdet(np.kron(K1, K2))[1])
    close(kj.logdet([K1.tolist(), K2.tolist()]), np.linalg.slogdet(np.kron(K1, K2))[1])


def test_bad_input(rng):
    K1, K2, K3 = (factor(rng, n, "spd") for n in (3, 4, 3))
    y = rng.standard_normal(12)
    with pytest.raises(ValueError, match=r"(?s)unsupported sum.*\(a\).*\(d\)"):  # 3 on axis 0
        kj.logdet([[K1, K2], [K3, 1.0], [K3 + 1.0, 1.0]])
    with pytest.raises(ValueError, match="unsupported sum"):  # a matrix, a diagonal and a scalar
        kj.inv_quad([[K1, K2], [np.ones(3), 1.0], [1.0, K2]], y)
    with pytest.raises(kronkit.NotPositiveDefiniteError, match="λ = "):
        kj.inv_quad([[K1, K2], [-50.0, 1.0]], y)
    with pytest.raises(kronkit.NotPositiveDefiniteError, match=r"factors\[1\]\[0\]"):
        kj.logdet([[K1, K2], [-K3, K2 + 1.0]])
    with pytest.raises(kronkit.NotPositiveDefiniteError, match=r"factors\[1\]\[1\]"):
        kj.logdet([[K1, K2], [np.ones(3), -np.ones(4)]])
    with pytest.raises(ValueError, match=r"`factors\[0\]\[0\]` must be symmetric"):
        kj.logdet([[K1 + np.triu(np.ones((3, 3)), 1), K2], [0.5, 1.0]])
    bad = K2.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match=r"`factors\[0\]\[1\]` contains NaN"):
        kj.logdet([[K1, bad], [0.5, 1.0]])
    with pytest.raises(ValueError, match="`y` contains NaN"):
        kj.inv_quad([[K1, K2], [0.5, 1.0]], np.full(12, np.nan))
    with pytest.raises(ValueError, match="sizes"):
        kj.logdet([[K1, K2], [np.ones(2), 1.0]])
    with pytest.raises(ValueError, match="only scalars"):
        kj.logdet([[K1, 1.0], [0.5, 1.0]])
    with pytest.raises(ValueError, match="length 12"):
        kj.inv_quad([[K1, K2], [0.5, 1.0]], np.ones(11))
    with pytest.raises(kronkit.DomainError):
        kj.log_quad([[K1, K2], [0.5, 1.0]], y, alpha=-1e6)
    # under jit nothing can be raised: NaN where an eager call raises
    assert np.isnan(jax.jit(lambda s: kj.inv_quad([[K1, K2], [s, 1.0]], y))(-50.0))
    # inputs are not modified
    K1c = K1.copy()
    kj.logdet([[K1, K2], [0.5, 1.0]])
    assert np.array_equal(K1, K1c)
