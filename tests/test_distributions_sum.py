"""KronNormal / KronT with a SumOfKron scale, against the dense covariance: scipy.stats,
JAX autodiff of the dense log-density, finite differences and sampling theory."""

from __future__ import annotations

import copy
import functools
import pickle

import numpy as np
import pytest
import scipy.stats as st

from helpers import CHAIN_RTOL, FD_RTOL, RTOL, ULPS, factor
from kronkit import (
    Kron,
    KronNormal,
    KronNormalGrad,
    KronT,
    KronTGrad,
    NotPositiveDefiniteError,
    SingularFactorError,
    SumOfKron,
)
from test_distributions import P_VALUE_FLOOR, moment_test_pvalues


def _ill(rng, n, cond):
    """A symmetric positive definite n×n matrix with condition number ``cond``."""
    Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    return (Q * np.geomspace(1.0, 1.0 / cond, n)) @ Q.T


def _form(name, rng):
    """``terms[t][k]`` of one supported (or dense-route) sum and its route."""
    spd = functools.partial(factor, rng, kind="spd")
    eye = np.eye
    if name == "noise":  # K1⊗K2 + s²I
        return [[spd(2), spd(3)], [0.3 * eye(2), eye(3)]], "eigen"
    if name == "noise_d3":  # K1⊗K2⊗K3 + s²I
        return [[spd(2), spd(3), spd(2)], [eye(2), eye(3), 0.2 * eye(2)]], "eigen"
    if name == "diag":  # K + D1⊗D2, positive diagonals
        D1, D2 = np.diag(rng.uniform(0.2, 2.0, 2)), np.diag(rng.uniform(0.2, 2.0, 3))
        return [[spd(2), spd(3)], [D1, D2]], "eigen"
    if name == "general":  # A + C, C_k SPD: generalised eigenproblems (non-orthogonal V_k)
        return [[spd(3), spd(2)], [spd(3), spd(2)]], "eigen"
    if name == "kron_sum":  # A ⊕ B = A⊗I + I⊗B
        return [[spd(2), eye(3)], [eye(2), spd(3)]], "eigen"
    if name == "kron_sum_d3":  # A ⊕ B ⊕ C
        return [[spd(2), eye(2), eye(3)], [eye(2), spd(2), eye(3)],
                [eye(2), eye(2), spd(3)]], "eigen"
    if name == "mixed":  # Cg⊗K + Cn⊗I (multi-trait mixed model)
        return [[spd(2), spd(3)], [spd(2), eye(3)]], "eigen"
    if name == "ill":  # κ(K_k) = 1e6, plus noise
        return [[_ill(rng, 3, 1e6), _ill(rng, 2, 1e6)], [0.05 * eye(3), eye(2)]], "eigen"
    if name == "dense":  # three different terms: no eigen form, the dense route
        return [[spd(2), spd(3)], [spd(2), spd(3)], [spd(2), spd(3)]], "dense"
    raise ValueError(name)


FORMS = ["noise", "noise_d3", "diag", "general", "kron_sum", "kron_sum_d3", "mixed", "ill",
         "dense"]
JAX_FORMS = ["noise", "noise_d3", "diag", "general", "kron_sum", "ill", "dense"]  # others: FD


def _dense(terms):
    return sum(functools.reduce(np.kron, t) for t in terms)


def _setup(name, rng, N=3):
    terms, route = _form(name, rng)
    S = SumOfKron(terms)
    assert S.route == route
    P = S.shape[0]
    mu = rng.standard_normal(P)
    Y = mu + rng.standard_normal((N, P)) * 1.3
    return terms, S, mu, Y


def _make(family, mu, S, df=4.5):
    return KronNormal(mu, S) if family == "normal" else KronT(mu, S, df)


def _close(got, want, rtol=CHAIN_RTOL):
    """Relative to the largest entry of ``want`` (norm-wise relative error)."""
    want = np.asarray(want)
    np.testing.assert_allclose(got, want, rtol=rtol,
                               atol=rtol * max(float(np.max(np.abs(want), initial=0.0)), 1e-300))


# ---------------------------------------------------------------------------------------
# Values against scipy.stats with the dense covariance
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", FORMS)
def test_values_match_scipy(rng, name):
    terms, S, mu, Y = _setup(name, rng)
    M = _dense(terms)
    dims = S.dims
    W = Y - mu
    delta = np.einsum("ij,ij->i", W, np.linalg.solve(M, W.T).T)
    logdet = np.linalg.slogdet(M)[1]
    rtol = CHAIN_RTOL if name == "ill" else RTOL
    for dist, ref in ((KronNormal(mu, S), st.multivariate_normal(mu, M)),
                      (KronT(mu, S, 3.5), st.multivariate_t(mu, M, df=3.5))):
        np.testing.assert_allclose(dist.logpdf(Y), ref.logpdf(Y), rtol=rtol)
        np.testing.assert_allclose(dist.pdf(Y), ref.pdf(Y), rtol=CHAIN_RTOL)
        val = dist.logpdf(Y[0])
        assert isinstance(val, float)
        np.testing.assert_allclose(val, ref.logpdf(Y[0]), rtol=rtol)
        np.testing.assert_allclose(dist.logpdf(Y.reshape(-1, *dims)), ref.logpdf(Y), rtol=rtol)
        assert isinstance(dist.logpdf(Y[0].reshape(dims)), float)
        np.testing.assert_allclose(dist.entropy(), ref.entropy(), rtol=rtol)
        _close(dist.mahalanobis(Y), delta, rtol)
        np.testing.assert_allclose(dist.logdet_scale, logdet, rtol=rtol)
        assert dist.dims == dims and dist.dim == M.shape[0]
        assert dist.scale is S
    np.testing.assert_allclose(KronT(mu, S, 3.5).to_multivariate_t().logpdf(Y),
                               st.multivariate_t(mu, M, df=3.5).logpdf(Y), rtol=rtol)


def test_kron_plus_kron_and_the_equivalent_kron(rng):
    """``Kron + Kron`` is accepted as is; a one-term sum is the Kron distribution."""
    A, B = factor(rng, 2), factor(rng, 3)
    mu = rng.standard_normal(6)
    Y = mu + rng.standard_normal((4, 6))
    dist = KronNormal(mu, Kron(A, B) + 0.5 * Kron(np.eye(2), np.eye(3)))
    ref = st.multivariate_normal(mu, np.kron(A, B) + 0.5 * np.eye(6))
    np.testing.assert_allclose(dist.logpdf(Y), ref.logpdf(Y), rtol=RTOL)
    for make in (lambda s: KronNormal(mu, s), lambda s: KronT(mu, s, 2.5)):
        one, kron = make(SumOfKron([Kron(A, B)])), make([A, B])
        np.testing.assert_allclose(one.logpdf(Y), kron.logpdf(Y), rtol=RTOL)
        g1, gk = one.logpdf_grad(Y), kron.logpdf_grad(Y)
        for a, b in zip(g1.factors[0], gk.factors, strict=True):
            _close(a, b, RTOL)
        _close(g1.y, gk.y, RTOL)


# ---------------------------------------------------------------------------------------
# Gradients: JAX autodiff of the dense expression, and finite differences
# ---------------------------------------------------------------------------------------
def _jax_logpdf(jnp, jsp, family, terms, loc, Y, df):
    S = sum(functools.reduce(jnp.kron, t) for t in terms)
    P = S.shape[0]
    W = Y - loc
    q = jnp.einsum("ij,ij->i", W, jnp.linalg.solve(S, W.T).T)
    logdet = jnp.linalg.slogdet(S)[1]
    if family == "normal":
        return -0.5 * (P * jnp.log(2 * jnp.pi) + logdet + q)
    return (jsp.special.gammaln((df + P) / 2) - jsp.special.gammaln(df / 2)
            - P / 2 * jnp.log(df * jnp.pi) - 0.5 * logdet - (df + P) / 2 * jnp.log1p(q / df))


@pytest.mark.parametrize("name", JAX_FORMS)
def test_logpdf_grad_matches_jax(rng, jax_x64, name):
    """Every factor of every term, μ, y and ν: the per-observation Jacobian of the dense
    log-density (normal and t in one call), summed / averaged for the reductions."""
    jax = jax_x64
    import jax.numpy as jnp
    import jax.scipy as jsp

    terms, S, mu, Y = _setup(name, rng)
    N, nu = Y.shape[0], 5.5

    def both(*a):
        v = jnp.stack([_jax_logpdf(jnp, jsp, family, *a) for family in ("normal", "t")])
        return v, v

    jac, vals = jax.jacrev(both, argnums=(0, 1, 2, 3), has_aux=True)(terms, mu, Y, nu)
    for i, family in enumerate(("normal", "t")):
        jac_f = [[np.asarray(g)[i] for g in row] for row in jac[0]]
        jac_loc = np.asarray(jac[1])[i]
        jac_y = np.einsum("iip->ip", np.asarray(jac[2])[i])
        jac_df, val = np.asarray(jac[3])[i], np.asarray(vals)[i]
        dist = _make(family, mu, S, nu)
        for reduce, red in ((None, lambda a: a), ("sum", lambda a: a.sum(axis=0)),
                            ("mean", lambda a: a.mean(axis=0))):
            g = dist.logpdf_grad(Y, reduce=reduce)
            assert isinstance(g, KronNormalGrad if family == "normal" else KronTGrad)
            assert [len(r) for r in g.factors] == [len(r) for r in terms]
            for t, row in enumerate(terms):
                for k in range(len(row)):
                    _close(g.factors[t][k], red(jac_f[t][k]))
            _close(g.mean if family == "normal" else g.loc, red(jac_loc))
            _close(g.y, jac_y / (N if reduce == "mean" else 1))
            _close(np.asarray(g.value), red(val))
            if family == "t":
                _close(np.asarray(g.df), red(jac_df))
        one = dist.logpdf_grad(Y[1])
        assert isinstance(one.value, float) and one.y.shape == (S.shape[0],)
        _close(one.factors[-1][0], jac_f[-1][0][1])


def _sym_direction(rng, n):
    E = rng.standard_normal((n, n))
    return E + E.T


@pytest.mark.parametrize("name", ["noise_d3", "general", "kron_sum_d3", "mixed", "dense"])
@pytest.mark.parametrize("family", ["normal", "t"])
def test_logpdf_grad_finite_differences(rng, name, family):
    """⟨∂ℓ/∂F_tk, E⟩ for a random symmetric E against a central difference of the summed
    log-density (the perturbed sum may take another route: both are exact)."""
    terms, S, mu, Y = _setup(name, rng)
    nu, h = 3.7, 1e-6

    def total(ts=terms, m=mu, df=nu):
        return float(np.sum(_make(family, m, SumOfKron(ts), df).logpdf(Y)))

    g = _make(family, mu, S, nu).logpdf_grad(Y)
    for t, row in enumerate(terms):
        for k, F in enumerate(row):
            E = _sym_direction(rng, F.shape[0])

            def moved(sign, t=t, k=k, E=E):
                ts = [list(r) for r in terms]
                ts[t][k] = ts[t][k] + sign * h * E
                return total(ts)

            fd = (moved(1.0) - moved(-1.0)) / (2 * h)
            np.testing.assert_allclose(np.sum(g.factors[t][k] * E), fd, rtol=FD_RTOL,
                                       atol=FD_RTOL * max(1.0, abs(fd)))
    v = rng.standard_normal(mu.size)
    fd_mu = (total(m=mu + h * v) - total(m=mu - h * v)) / (2 * h)
    loc = g.mean if family == "normal" else g.loc
    np.testing.assert_allclose(loc @ v, fd_mu, rtol=FD_RTOL, atol=FD_RTOL)
    if family == "t":
        fd_df = (total(df=nu + h) - total(df=nu - h)) / (2 * h)
        np.testing.assert_allclose(g.df, fd_df, rtol=FD_RTOL, atol=FD_RTOL)


# ---------------------------------------------------------------------------------------
# Sampling: exact draws μ + (⊗W_k) diag(√λ) z (eigen route) or μ + L z (dense route)
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["general", "kron_sum", "dense"])
def test_rvs_moments_and_radial_law(name):
    rng = np.random.default_rng(17)
    terms, S, mu, _ = _setup(name, rng)
    M, P = _dense(terms), S.shape[0]
    X = KronNormal(mu, S).rvs(size=20000, random_state=np.random.default_rng(5))
    assert X.shape == (20000, P)
    p_mean, p_cov = moment_test_pvalues(X, mu, M, 1.0, 1.0)
    assert p_mean > P_VALUE_FLOOR and p_cov > P_VALUE_FLOOR
    delta = KronNormal(mu, S).mahalanobis(X)  # δ ~ χ²_P exactly
    assert st.kstest(delta, st.chi2(P).cdf).pvalue > P_VALUE_FLOOR
    nu = 12.0
    T = KronT(mu, S, nu)
    X = T.rvs(size=20000, random_state=6)
    p_mean, p_cov = moment_test_pvalues(X, mu, M, nu / (nu - 2), nu**2 / ((nu - 2) * (nu - 4)))
    assert p_mean > P_VALUE_FLOOR and p_cov > P_VALUE_FLOOR
    assert st.kstest(T.mahalanobis(X) / P, st.f(P, nu).cdf).pvalue > P_VALUE_FLOOR


def test_moment_test_detects_transposed_half(rng):
    """Power check: draws (⊗W_kᵀ)… instead of (⊗W_k)… (wrong for non-orthogonal W_k)."""
    terms, S, _, _ = _setup("general", np.random.default_rng(3))
    E = S.eigen_form()
    wrong = SumOfKron([[Wk.T for Wk in E.W]])  # (⊗W_kᵀ) applied to √λ z
    z = np.random.default_rng(4).standard_normal((20000, S.shape[0])) * np.sqrt(E.lam.ravel())
    X = wrong.matvec(z)
    _, p_cov = moment_test_pvalues(X, np.zeros(S.shape[0]), _dense(terms), 1.0, 1.0)
    assert p_cov < P_VALUE_FLOOR


def test_rvs_shapes_dtype_reproducible(rng):
    _, S, mu, _ = _setup("noise", rng)
    for dist in (KronNormal(mu, S), KronT(mu, S, 3.0), KronT(mu, S, np.inf)):
        one = dist.rvs(random_state=5)
        assert one.shape == (6,) and one.dtype == np.float64
        np.testing.assert_array_equal(one, dist.rvs(random_state=np.random.default_rng(5)))
        assert dist.rvs(size=0, random_state=1).shape == (0, 6)
        assert dist.rvs(size=3, random_state=np.random.RandomState(0)).shape == (3, 6)


# ---------------------------------------------------------------------------------------
# Attributes, copies, reductions at the edges, bad input
# ---------------------------------------------------------------------------------------
def test_attributes_cov_repr(rng):
    terms, S, mu, _ = _setup("mixed", rng)
    M = _dense(terms)
    n, t = KronNormal(mu, S), KronT(mu, S, 5.0)
    assert n.cov is S and n.scale is S and t.scale is S
    assert isinstance(t.cov, SumOfKron)
    np.testing.assert_allclose(t.cov.to_dense(), 5.0 / 3.0 * M, rtol=RTOL)
    np.testing.assert_allclose(KronT(mu, S, np.inf).cov.to_dense(), M, rtol=ULPS)
    np.testing.assert_array_equal(n.mean, mu)
    assert "SumOfKron" in repr(n) and "KronT" in repr(t) and "df=5" in repr(t)
    with pytest.raises(ValueError, match="`df` > 2"):
        _ = KronT(mu, S, 1.5).cov
    with pytest.raises(ValueError, match="Kronecker product scale"):
        n.to_matrix_normal()


@pytest.mark.parametrize("protocol", [*range(6), "deepcopy", "copy"])
def test_pickle_and_copies(rng, protocol):
    _, S, mu, Y = _setup("general", rng)
    for dist in (KronNormal(mu, S), KronT(mu, S, 3.5)):
        g = dist.logpdf_grad(Y)
        if protocol == "deepcopy":
            new = copy.deepcopy(dist)
        elif protocol == "copy":
            new = copy.copy(dist)
        else:
            new = pickle.loads(pickle.dumps(dist, protocol=protocol))
        assert type(new) is type(dist) and isinstance(new.scale, SumOfKron)
        np.testing.assert_array_equal(new.logpdf(Y), dist.logpdf(Y))
        assert not new.loc.flags.writeable
        g2 = new.logpdf_grad(Y)
        for a, b in zip(g.factors, g2.factors, strict=True):
            for x, y in zip(a, b, strict=True):
                np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("family", ["normal", "t"])
def test_empty_batch(rng, family):
    _, S, mu, _ = _setup("noise_d3", rng)
    dist = _make(family, mu, S)
    P, dims = S.shape[0], S.dims
    Y0 = np.zeros((0, P))
    assert dist.logpdf(Y0).shape == (0,) and dist.mahalanobis(Y0).shape == (0,)
    g = dist.logpdf_grad(Y0, reduce=None)
    assert g.value.shape == (0,) and g.y.shape == (0, P)
    assert [[F.shape for F in row] for row in g.factors] == [[(0, n, n) for n in dims]] * 2
    g = dist.logpdf_grad(Y0, reduce="sum")
    assert g.value == 0.0 and g.y.shape == (0, P)
    assert all(np.all(F == 0) and F.shape == (n, n)
               for row in g.factors for F, n in zip(row, dims, strict=True))
    loc = g.mean if family == "normal" else g.loc
    np.testing.assert_array_equal(loc, np.zeros(P))
    if family == "t":
        assert g.df == 0.0
    with pytest.raises(ValueError, match="reduce='mean' needs at least one observation"):
        dist.logpdf_grad(Y0, reduce="mean")


def test_indefinite_singular_and_asymmetric_sums_raise(rng):
    K1, K2 = factor(rng, 2), factor(rng, 3)
    I2, I3 = np.eye(2), np.eye(3)
    s_max = np.linalg.eigvalsh(np.kron(K1, K2))[-1]
    indefinite = [SumOfKron([[K1, K2], [-0.5 * s_max * I2, I3]]),  # eigen route
                  SumOfKron([[K1, K2], [factor(rng, 2), factor(rng, 3)],
                             [-2 * s_max * factor(rng, 2, "spd"), factor(rng, 3)]])]  # dense
    assert [S.route for S in indefinite] == ["eigen", "dense"]
    for S in indefinite:
        for make in (lambda S: KronNormal(None, S), lambda S: KronT(None, S, 3.0)):
            with pytest.raises(NotPositiveDefiniteError, match=r"`scale`.*positive definite"):
                make(S)
    singular = SumOfKron([[np.diag([1.0, 1e-20]), I3], [1e-30 * I2, I3]])
    with pytest.raises(SingularFactorError, match="`scale`"):
        KronNormal(None, singular)
    A = factor(rng, 2, "general")  # not symmetric: no eigen form, and no Gaussian scale
    with pytest.raises(NotPositiveDefiniteError, match=r"`scale`.*not symmetric"):
        KronNormal(None, SumOfKron([[A @ A.T + 5 * I2 + 0.1 * A, K2], [I2, I3]]))


def test_unsupported_big_sum_raises_value_error(rng):
    n = 65  # P = 4225 > DENSE_MAX_P: three different full terms have no eigen form
    terms = [[factor(rng, n), factor(rng, n)] for _ in range(3)]
    for make in (lambda S: KronNormal(None, S), lambda S: KronT(None, S, 3.0)):
        with pytest.raises(ValueError, match=r"`scale`.*DENSE_MAX_P"):
            make(SumOfKron(terms))


def test_bad_shapes(rng):
    _, S, mu, _ = _setup("noise", rng)
    with pytest.raises(ValueError, match="`mean`"):
        KronNormal(np.zeros(5), S)
    with pytest.raises(ValueError, match="`Y`"):
        KronNormal(mu, S).logpdf(np.zeros((2, 5)))
    rect = SumOfKron([[np.ones((2, 3)), np.eye(2)], [np.ones((2, 3)), np.eye(2)]])
    with pytest.raises(ValueError, match=r"`scale`.*square"):
        KronNormal(None, rect)


def test_nothing_mutated(rng):
    terms, S, mu, Y = _setup("general", rng)
    saved = [[F.copy() for F in row] for row in terms], mu.copy(), Y.copy()
    for dist in (KronNormal(mu, S), KronT(mu, S, 2.5)):
        for reduce in ("sum", "mean", None):
            dist.logpdf_grad(Y, reduce=reduce)
        dist.logpdf(Y), dist.mahalanobis(Y), dist.rvs(3, random_state=0), dist.entropy()
    for row, row0 in zip(terms, saved[0], strict=True):
        for F, F0 in zip(row, row0, strict=True):
            np.testing.assert_array_equal(F, F0)
    np.testing.assert_array_equal(mu, saved[1])
    np.testing.assert_array_equal(Y, saved[2])


def test_dask_rows_and_threads(rng):
    """A dask Y (row blocks, the distribution pickled to the workers) and one distribution
    shared by threads give the serial results."""
    from concurrent.futures import ThreadPoolExecutor

    da = pytest.importorskip("dask.array")
    _, S, mu, Y = _setup("general", rng, N=7)
    dist = KronT(mu, S, 3.0)
    for method in ("logpdf", "mahalanobis"):
        lazy = getattr(dist, method)(da.from_array(Y, chunks=(3, Y.shape[1])))
        np.testing.assert_allclose(lazy.compute(scheduler="sync"), getattr(dist, method)(Y),
                                   rtol=ULPS)
    batches = [rng.standard_normal((3, Y.shape[1])) for _ in range(8)]
    want = [dist.logpdf_grad(b, reduce=None).factors for b in batches]
    shared = KronT(mu, S, 3.0)
    with ThreadPoolExecutor(4) as ex:
        got = list(ex.map(lambda b: shared.logpdf_grad(b, reduce=None).factors, batches))
    for a, b in zip(got, want, strict=True):
        for ra, rb in zip(a, b, strict=True):
            for x, y in zip(ra, rb, strict=True):
                np.testing.assert_array_equal(x, y)
