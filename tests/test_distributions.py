"""KronNormal / KronT against scipy.stats, finite differences, JAX and sampling theory."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats as st

import kronkit
from helpers import ATOL, CHAIN_RTOL, F32_RTOL, FD_RTOL, ROUNDING, RTOL, ULPS, dense_kron, factor, factors
from kronkit import (
    Kron,
    KronNormal,
    KronNormalGrad,
    KronT,
    KronTGrad,
    NotPositiveDefiniteError,
    SingularFactorError,
)

SHAPES = [(3,), (1, 3), (2, 3), (3, 2), (5, 2), (2, 3, 2)]
P_VALUE_FLOOR = 1e-3  # statistical tests reject below this (fixed seeds: deterministic)


def _factors(rng, dims, cond_cap=50.0):
    return factors(rng, dims, "spd", cond_cap)


def _setup(rng, dims, N=4):
    factors = _factors(rng, dims)
    P = int(np.prod(dims))
    mu = rng.standard_normal(P)
    Y = mu + rng.standard_normal((N, P)) * 1.5
    return factors, mu, Y


# ---------------------------------------------------------------------------------------
# Values against scipy.stats
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("dims", SHAPES)
def test_normal_logpdf_matches_scipy(rng, dims):
    factors, mu, Y = _setup(rng, dims)
    ref = st.multivariate_normal(mu, dense_kron(*factors))
    dist = KronNormal(mu, factors)
    np.testing.assert_allclose(dist.logpdf(Y), ref.logpdf(Y), rtol=RTOL)
    val = dist.logpdf(Y[0])
    assert isinstance(val, float)
    np.testing.assert_allclose(val, ref.logpdf(Y[0]), rtol=RTOL)
    np.testing.assert_allclose(dist.logpdf(Y.reshape(-1, *dims)), ref.logpdf(Y), rtol=RTOL)
    np.testing.assert_allclose(dist.pdf(Y), ref.pdf(Y), rtol=CHAIN_RTOL)
    np.testing.assert_allclose(dist.entropy(), ref.entropy(), rtol=RTOL)


@pytest.mark.parametrize("dims", SHAPES)
@pytest.mark.parametrize("df", [0.7, 3.0, 25.5])
def test_t_logpdf_matches_scipy(rng, dims, df):
    factors, mu, Y = _setup(rng, dims)
    ref = st.multivariate_t(mu, dense_kron(*factors), df=df)
    dist = KronT(mu, factors, df)
    np.testing.assert_allclose(dist.logpdf(Y), ref.logpdf(Y), rtol=RTOL)
    np.testing.assert_allclose(dist.logpdf(Y[1]), ref.logpdf(Y[1]), rtol=RTOL)
    np.testing.assert_allclose(dist.logpdf(Y.reshape(-1, *dims)), ref.logpdf(Y), rtol=RTOL)
    np.testing.assert_allclose(dist.entropy(), ref.entropy(), rtol=RTOL)


def test_mean_as_tensor_and_none(rng):
    A, B = _factors(rng, (2, 3))
    M = rng.standard_normal((2, 3))
    y = rng.standard_normal(6)
    d1 = KronNormal(M, [A, B])
    d2 = KronNormal(M.ravel(), Kron(A, B))
    assert d1.logpdf(y) == d2.logpdf(y)
    np.testing.assert_array_equal(d1.mean, M.ravel())
    np.testing.assert_array_equal(KronT(None, [A, B], 3.0).loc, np.zeros(6))
    np.testing.assert_allclose(
        KronNormal(None, [A, B]).logpdf(y),
        st.multivariate_normal(np.zeros(6), np.kron(A, B)).logpdf(y), rtol=RTOL,
    )


def test_mahalanobis_is_squared(rng):
    """``mahalanobis`` is the squared distance, as scikit-learn's (one rule in kronkit)."""
    from scipy.spatial.distance import mahalanobis
    from sklearn.covariance import EmpiricalCovariance

    factors, mu, Y = _setup(rng, (3, 2))
    S = dense_kron(*factors)
    W = Y - mu
    delta = np.einsum("ij,ij->i", W, np.linalg.solve(S, W.T).T)
    emp = EmpiricalCovariance(assume_centered=True).fit(W)  # its mahalanobis: squared
    emp.covariance_, emp.location_ = S, mu
    emp.precision_ = np.linalg.inv(S)
    for dist in (KronNormal(mu, factors), KronT(mu, factors, 4.0)):
        np.testing.assert_allclose(dist.mahalanobis(Y), delta, rtol=RTOL)
        np.testing.assert_allclose(dist.mahalanobis(Y), emp.mahalanobis(Y), rtol=RTOL)
        ref = mahalanobis(Y[0], mu, np.linalg.inv(S))  # scipy's: not squared
        np.testing.assert_allclose(dist.mahalanobis(Y[0]), ref**2, rtol=RTOL)
        assert isinstance(dist.mahalanobis(Y[0]), float)
        assert isinstance(dist.mahalanobis(Y[0].reshape(3, 2)), float)
        assert not hasattr(dist, "mahalanobis_sq")


@pytest.mark.parametrize("dims", [(2, 3), (3, 2), (1, 3), (3, 1), (2, 3, 2)])
def test_one_matrix_and_a_stack_as_scipy_matrix_normal(rng, dims):
    """One (p, q) matrix and a stack (N, p, q), as scipy.stats.matrix_normal takes them."""
    factors, mu, Y = _setup(rng, dims)
    P = int(np.prod(dims))
    S = dense_kron(*factors)
    for dist, ref in ((KronNormal(mu, factors), st.multivariate_normal(mu, S)),
                      (KronT(mu, factors, 3.5), st.multivariate_t(mu, S, 3.5))):
        one, stack = Y[0].reshape(dims), Y.reshape(-1, *dims)
        if dims[0] == 1 and len(dims) == 2:
            # ambiguous: (1, P) is read as one row of an (N, P) array, N = 1
            assert dist.logpdf(one).shape == (1,)
            np.testing.assert_allclose(dist.logpdf(one)[0], ref.logpdf(Y[0]), rtol=RTOL)
        else:
            val = dist.logpdf(one)
            assert isinstance(val, float)
            np.testing.assert_allclose(val, ref.logpdf(Y[0]), rtol=RTOL)
            np.testing.assert_allclose(dist.pdf(one), ref.pdf(Y[0]), rtol=CHAIN_RTOL)
            g = dist.logpdf_grad(one)
            g_vec = dist.logpdf_grad(Y[0])
            assert g.y.shape == (P,)
            np.testing.assert_allclose(g.value, g_vec.value, rtol=ULPS)
            for a, b in zip(g.factors, g_vec.factors, strict=True):
                np.testing.assert_allclose(a, b, rtol=ULPS)
        np.testing.assert_allclose(dist.logpdf(stack), ref.logpdf(Y), rtol=RTOL)
        if len(dims) == 2:
            mn = st.matrix_normal(mu.reshape(dims), *factors)
            if isinstance(dist, KronNormal):
                np.testing.assert_allclose(dist.logpdf(stack), mn.logpdf(stack), rtol=RTOL)


def test_matrix_normal_convention_against_scipy(rng):
    """scipy.stats.matrix_normal(M, U, V): X.ravel() ~ N(M.ravel(), U⊗V) (row-major vec).

    Checked independently of kronkit: scipy's logpdf against multivariate_normal with
    np.kron(U, V), and the sample covariance of scipy's own rvs.
    """
    U, V = _factors(rng, (2, 3))
    M = rng.standard_normal((2, 3))
    mn = st.matrix_normal(M, U, V)
    X = rng.standard_normal((5, 2, 3))
    np.testing.assert_allclose(mn.logpdf(X), st.multivariate_normal(
        M.ravel(), np.kron(U, V)).logpdf(X.reshape(5, -1)), rtol=RTOL)
    Z = mn.rvs(size=20000, random_state=rng).reshape(20000, -1)
    C = np.cov(Z.T)
    err = np.abs(C - np.kron(U, V)).max() / np.abs(np.kron(U, V)).max()
    assert err < 0.1 < np.abs(C - np.kron(V, U)).max() / np.abs(np.kron(U, V)).max()


def test_conversions_to_and_from_scipy_stats(rng):
    U, V = _factors(rng, (2, 3))
    M = rng.standard_normal((2, 3))
    X = M + rng.standard_normal((6, 2, 3))
    mn = st.matrix_normal(M, U, V)
    dist = KronNormal.from_matrix_normal(mn)
    np.testing.assert_allclose(dist.logpdf(X), mn.logpdf(X), rtol=RTOL)
    np.testing.assert_allclose(dist.logpdf(X[0]), mn.logpdf(X[0]), rtol=RTOL)
    np.testing.assert_allclose(dist.entropy(), mn.entropy(), rtol=RTOL)
    back = dist.to_matrix_normal()
    np.testing.assert_allclose(back.mean, M, rtol=ULPS)
    np.testing.assert_allclose(back.rowcov, U, rtol=ULPS)
    np.testing.assert_allclose(back.colcov, V, rtol=ULPS)
    np.testing.assert_allclose(back.logpdf(X), mn.logpdf(X), rtol=RTOL)
    zero = KronNormal.from_matrix_normal(st.matrix_normal(rowcov=U, colcov=V))
    np.testing.assert_array_equal(zero.mean, np.zeros(6))
    with pytest.raises(TypeError, match="`mn`"):
        KronNormal.from_matrix_normal(st.multivariate_normal(np.zeros(6), np.kron(U, V)))
    with pytest.raises(TypeError, match="`mn`"):
        KronNormal.from_matrix_normal(st.matrix_normal)  # not frozen
    with pytest.raises(ValueError, match="two factors"):
        KronNormal(None, _factors(rng, (2, 3, 2))).to_matrix_normal()
    for dims in ((2, 3), (2, 3, 2), (4,)):
        fs = _factors(rng, dims)
        mu = rng.standard_normal(int(np.prod(dims)))
        Y = mu + rng.standard_normal((5, mu.size))
        for df in (0.8, 4.0):
            t = KronT(mu, fs, df)
            mt = t.to_multivariate_t()
            np.testing.assert_allclose(mt.logpdf(Y), st.multivariate_t(
                mu, dense_kron(*fs), df=df).logpdf(Y), rtol=RTOL)
            np.testing.assert_allclose(mt.logpdf(Y), t.logpdf(Y), rtol=RTOL)
            assert mt.df == df
        mvn = KronT(mu, fs, np.inf).to_multivariate_t()  # scipy: the normal at df = inf
        np.testing.assert_allclose(mvn.logpdf(Y), KronNormal(mu, fs).logpdf(Y), rtol=RTOL)


def test_attributes_mean_cov(rng):
    A, B = _factors(rng, (2, 3))
    mu = rng.standard_normal(6)
    n = KronNormal(mu, [A, B])
    assert n.dim == 6 and n.dims == (2, 3)
    assert isinstance(n.cov, Kron) and isinstance(n.scale, Kron)
    np.testing.assert_allclose(n.cov.to_dense(), np.kron(A, B), rtol=RTOL)
    np.testing.assert_allclose(n.logdet_scale, np.linalg.slogdet(np.kron(A, B))[1], rtol=RTOL)
    t = KronT(mu, [A, B], 5.0)
    assert t.df == 5.0
    np.testing.assert_allclose(t.cov.to_dense(), 5.0 / 3.0 * np.kron(A, B), rtol=RTOL)
    np.testing.assert_array_equal(t.mean, mu)
    with pytest.raises(ValueError, match=r"`df` > 2.*infinite"):
        _ = KronT(mu, [A, B], 1.5).cov
    with pytest.raises(ValueError, match=r"`df` > 2.*undefined"):
        _ = KronT(mu, [A, B], 0.5).cov
    with pytest.raises(ValueError, match="`df` > 1"):
        _ = KronT(mu, [A, B], 1.0).mean
    assert "KronT" in repr(t) and "2×2 ⊗ 3×3" in repr(t)


def test_vec_t_is_not_gupta_nagar_matrix_t(rng):
    """The vec-form t differs from scipy's matrix_t, except with a single row (p = 1)."""
    B = factor(rng, 3, "spd")
    nu = 4.5
    # one row: Gupta–Nagar kernel det(1 + W B⁻¹ Wᵀ/a) = 1 + δ/ν with S = (a/ν) ⊗ B
    a = 1.7
    Y1 = rng.standard_normal((1, 3))
    ours = KronT(None, [np.array([[a / nu]]), B], nu).logpdf(Y1.ravel())
    ref = st.matrix_t(row_spread=[[a]], col_spread=B, df=nu).logpdf(Y1)
    np.testing.assert_allclose(ours, ref, rtol=RTOL)
    # two rows: different distributions (no rescaling makes them agree at every point)
    A = factor(rng, 2, "spd")
    Ys = rng.standard_normal((5, 2, 3))
    ours = KronT(None, [A / nu, B], nu).logpdf(Ys)
    ref = np.array([st.matrix_t(row_spread=A, col_spread=B, df=nu).logpdf(Yi) for Yi in Ys])
    diff = ours - ref
    assert np.ptp(diff) > 1e-3  # not even equal up to a constant


# ---------------------------------------------------------------------------------------
# Gradients: finite differences (symmetric directions keep the factors SPD) and JAX
# ---------------------------------------------------------------------------------------
def _sym_fd(f, A, h=1e-6):
    """⟨∇f, E_ij⟩ for the symmetric basis E_ij = e_ie_jᵀ + e_je_iᵀ (i < j), e_ie_iᵀ (i = j)."""
    p = A.shape[0]
    out = np.zeros((p, p))
    for i in range(p):
        for j in range(i, p):
            E = np.zeros((p, p))
            E[i, j] = E[j, i] = 1.0
            out[i, j] = out[j, i] = (f(A + h * E) - f(A - h * E)) / (2 * h)
    return out


def _sym_pair(G):
    """The same contractions from a full (symmetric) gradient G."""
    return G + G.T - np.diag(np.diag(G))


def _fd_close(got, want):
    scale = max(1.0, float(np.max(np.abs(want))))
    np.testing.assert_allclose(got, want, rtol=FD_RTOL, atol=FD_RTOL * scale)


@pytest.mark.parametrize("dims", [(2, 3), (3,), (2, 2, 3)])
@pytest.mark.parametrize("family", ["normal", "t"])
def test_logpdf_grad_finite_differences(rng, dims, family):
    factors, mu, Y = _setup(rng, dims, N=3)
    nu = 3.7

    def make(fs=factors, m=mu, df=nu):
        return KronNormal(m, fs) if family == "normal" else KronT(m, fs, df)

    def total(dist):
        return float(np.sum(dist.logpdf(Y)))

    g = make().logpdf_grad(Y)
    assert isinstance(g, KronNormalGrad if family == "normal" else KronTGrad)
    np.testing.assert_allclose(g.value, total(make()), rtol=RTOL)
    for k in range(len(dims)):
        def f(Ak, k=k):
            fs = list(factors)
            fs[k] = Ak
            return total(make(fs=fs))

        _fd_close(_sym_pair(g.factors[k]), _sym_fd(f, factors[k]))
        np.testing.assert_allclose(g.factors[k], g.factors[k].T, rtol=RTOL, atol=ATOL)
    loc = g.mean if family == "normal" else g.loc
    fd_mu = np.array([(total(make(m=mu + 1e-6 * e)) - total(make(m=mu - 1e-6 * e))) / 2e-6
                      for e in np.eye(mu.size)])
    _fd_close(loc, fd_mu)
    # ∂/∂y_i per observation
    dist = make()
    fd_y = np.array([[(dist.logpdf(Y[i] + 1e-6 * e) - dist.logpdf(Y[i] - 1e-6 * e)) / 2e-6
                      for e in np.eye(mu.size)] for i in range(Y.shape[0])])
    _fd_close(g.y, fd_y)
    if family == "t":
        h = 1e-6
        fd_df = (total(make(df=nu + h)) - total(make(df=nu - h))) / (2 * h)
        _fd_close(np.array(g.df), np.array(fd_df))




def _dense_logpdf_jax(jnp, jsp, family, factors, loc, Y, df=None):
    S = factors[0]
    for F in factors[1:]:
        S = jnp.kron(S, F)
    P = S.shape[0]
    W = Y - loc
    q = jnp.einsum("ij,ij->i", W, jnp.linalg.solve(S, W.T).T)
    _, logdet = jnp.linalg.slogdet(S)
    if family == "normal":
        return -0.5 * (P * jnp.log(2 * jnp.pi) + logdet + q)
    return (jsp.special.gammaln((df + P) / 2) - jsp.special.gammaln(df / 2)
            - P / 2 * jnp.log(df * jnp.pi) - 0.5 * logdet - (df + P) / 2 * jnp.log1p(q / df))


@pytest.mark.parametrize("dims", [(2, 3), (3, 2, 2)])
@pytest.mark.parametrize("family", ["normal", "t"])
def test_logpdf_grad_matches_jax(rng, jax_x64, dims, family):
    """Per-observation Jacobian of the dense formula; sums / means of it for the reductions."""
    jax = jax_x64
    import jax.numpy as jnp
    import jax.scipy as jsp

    factors, mu, Y = _setup(rng, dims, N=3)
    N, nu, d = Y.shape[0], 6.3, len(dims)

    def f_obs(*args):
        fs, loc, Yv, df = list(args[:d]), args[d], args[d + 1], args[d + 2]
        return _dense_logpdf_jax(jnp, jsp, family, fs, loc, Yv, df)

    both = jax.jit(lambda *a: (f_obs(*a), jax.jacrev(f_obs, argnums=tuple(range(d + 3)))(*a)))
    vals, jac = both(*factors, mu, Y, nu)
    vals, jac = np.asarray(vals), [np.asarray(j) for j in jac]
    jy = np.einsum("iip->ip", jac[d + 1])  # only the diagonal blocks of ∂ℓ_i/∂y_j are non-zero
    np.testing.assert_allclose(jac[d + 1].sum(axis=1), jy, rtol=RTOL, atol=ATOL)
    dist = KronNormal(mu, factors) if family == "normal" else KronT(mu, factors, nu)
    for reduce, red in (
        (None, lambda a: a),
        ("sum", lambda a: a.sum(axis=0)),
        ("mean", lambda a: a.mean(axis=0)),
    ):
        g = dist.logpdf_grad(Y, reduce=reduce)
        close = lambda got, want: np.testing.assert_allclose(  # noqa: E731
            got, want, rtol=RTOL, atol=ATOL * max(1.0, float(np.max(np.abs(want)))))
        for k in range(d):
            close(g.factors[k], red(jac[k]))
        close(g.mean if family == "normal" else g.loc, red(jac[d]))
        scale_y = 1.0 / N if reduce == "mean" else 1.0
        close(g.y, jy * scale_y)
        close(np.asarray(g.value), red(vals))
        if family == "t":
            close(np.asarray(g.df), red(jac[d + 2]))


def test_logpdf_grad_single_observation_shapes(rng):
    factors, mu, Y = _setup(rng, (2, 3))
    g = KronT(mu, factors, 3.0).logpdf_grad(Y[0], reduce=None)
    assert isinstance(g.value, float) and isinstance(g.df, float)
    assert g.loc.shape == (6,) and g.y.shape == (6,)
    assert [F.shape for F in g.factors] == [(2, 2), (3, 3)]
    gb = KronT(mu, factors, 3.0).logpdf_grad(Y[:1])
    np.testing.assert_allclose(gb.factors[0], g.factors[0], rtol=RTOL)
    np.testing.assert_allclose(gb.loc, g.loc, rtol=RTOL)


@pytest.mark.parametrize("dims", [(2, 3), (2, 3, 2)])
def test_logpdf_grad_of_an_empty_batch(rng, dims):
    """Regression: reduce=None raised IndexError and "mean" ZeroDivisionError for N = 0."""
    factors, mu, _ = _setup(rng, dims)
    P = mu.size
    Y0 = np.zeros((0, P))
    for dist in (KronNormal(mu, factors), KronT(mu, factors, 3.0)):
        g = dist.logpdf_grad(Y0, reduce=None)
        assert g.value.shape == (0,) and g.y.shape == (0, P) and g[3].shape == (0, P)
        assert [F.shape for F in g.factors] == [(0, p, p) for p in dims]
        g = dist.logpdf_grad(Y0, reduce="sum")
        assert g.value == 0.0 and g.y.shape == (0, P)
        np.testing.assert_array_equal(g[3], np.zeros(P))
        assert all(np.all(F == 0) and F.shape == (p, p) for F, p in zip(g.factors, dims, strict=True))
        if isinstance(dist, KronT):
            assert g.df == 0.0 and dist.logpdf_grad(Y0, reduce=None).df.shape == (0,)
        with pytest.raises(ValueError, match="reduce='mean' needs at least one observation"):
            dist.logpdf_grad(Y0, reduce="mean")


def test_gauge_invariance_of_distributions(rng):
    """(cA)⊗(B/c) = A⊗B: same density; the gradient satisfies ⟨∂ℓ/∂A, A⟩ = ⟨∂ℓ/∂B, B⟩."""
    (A, B), mu, Y = _setup(rng, (2, 3))
    for make in (lambda fs: KronNormal(mu, fs), lambda fs: KronT(mu, fs, 2.5)):
        np.testing.assert_allclose(make([3.0 * A, B / 3.0]).logpdf(Y), make([A, B]).logpdf(Y),
                                   rtol=RTOL)
        g = make([A, B]).logpdf_grad(Y)
        np.testing.assert_allclose(np.sum(g.factors[0] * A), np.sum(g.factors[1] * B), rtol=CHAIN_RTOL)


# ---------------------------------------------------------------------------------------
# Sampling: exact / asymptotic chi-square tests with a fixed seed
# ---------------------------------------------------------------------------------------
def moment_test_pvalues(X, mu, S, r2, r4):
    """p-values for mean and covariance of X (rows) against x = μ + r·g, g ~ N(0, S).

    With ``u = L⁻¹(x − μ)`` (``S = LLᵀ``, dense Cholesky) the entries of u are uncorrelated
    with ``E[u_i²] = E[r²]``. Mean: ``N‖ū‖²/E[r²] → χ²_P``. Second moments (μ known):
    ``C = uᵀu/N``; off-diagonal ``√N C_ij`` have variance ``E[r⁴]`` and are uncorrelated;
    the diagonal ``√N(C_ii − E[r²])`` has covariance ``2E[r⁴] I + (E[r⁴] − E[r²]²) 11ᵀ``;
    the sum of squares of the whitened entries → χ² with P(P+1)/2 degrees of freedom.
    """
    N, P = X.shape
    L = np.linalg.cholesky(S)
    u = np.linalg.solve(L, (X - mu).T).T
    t_mean = N * np.sum(u.mean(axis=0) ** 2) / r2
    p_mean = st.chi2.sf(t_mean, P)
    C = u.T @ u / N
    iu = np.triu_indices(P, 1)
    t_off = N * np.sum(C[iu] ** 2) / r4
    dv = np.sqrt(N) * (np.diag(C) - r2)
    cov_d = 2 * r4 * np.eye(P) + (r4 - r2**2) * np.ones((P, P))
    t_diag = dv @ np.linalg.solve(cov_d, dv)
    p_cov = st.chi2.sf(t_off + t_diag, P * (P + 1) // 2)
    return p_mean, p_cov


def _t_moments(nu):
    return nu / (nu - 2), nu**2 / ((nu - 2) * (nu - 4))


@pytest.mark.parametrize("dims", [(2, 3), (2, 2, 2)])
def test_normal_rvs_moments(dims):
    rng = np.random.default_rng(7)
    factors = _factors(rng, dims)
    mu = rng.standard_normal(int(np.prod(dims)))
    X = KronNormal(mu, factors).rvs(size=20000, random_state=np.random.default_rng(11))
    assert X.shape == (20000, mu.size)
    p_mean, p_cov = moment_test_pvalues(X, mu, dense_kron(*factors), 1.0, 1.0)
    assert p_mean > P_VALUE_FLOOR and p_cov > P_VALUE_FLOOR
    # δ ~ χ²_P exactly (Kolmogorov–Smirnov)
    delta = KronNormal(mu, factors).mahalanobis(X)
    assert st.kstest(delta, st.chi2(mu.size).cdf).pvalue > P_VALUE_FLOOR


@pytest.mark.parametrize("dims", [(2, 3), (2, 2, 2)])
def test_t_rvs_moments_and_radial_law(dims):
    rng = np.random.default_rng(8)
    factors = _factors(rng, dims)
    P = int(np.prod(dims))
    mu = rng.standard_normal(P)
    nu = 12.0
    dist = KronT(mu, factors, nu)
    X = dist.rvs(size=20000, random_state=12)
    r2, r4 = _t_moments(nu)
    p_mean, p_cov = moment_test_pvalues(X, mu, dense_kron(*factors), r2, r4)
    assert p_mean > P_VALUE_FLOOR and p_cov > P_VALUE_FLOOR
    # vec-form t: one weight per draw, so δ/P ~ F(P, ν) exactly
    delta = dist.mahalanobis(X)
    assert st.kstest(delta / P, st.f(P, nu).cdf).pvalue > P_VALUE_FLOOR


def test_moment_test_detects_a_transposed_cholesky_factor():
    """Power check: draws with Lᵀ in place of L (covariance ⊗ L_kᵀL_k) are rejected."""
    rng = np.random.default_rng(9)
    factors = _factors(rng, (2, 3))
    z = np.random.default_rng(13).standard_normal((20000, 2, 3))
    L1, L2 = (np.linalg.cholesky(F) for F in factors)
    X = (L1.T @ z @ L2).reshape(20000, 6)  # (L1ᵀ ⊗ L2ᵀ) z in the row-major convention
    _, p_cov = moment_test_pvalues(X, np.zeros(6), dense_kron(*factors), 1.0, 1.0)
    assert p_cov < P_VALUE_FLOOR


def test_rvs_shapes_and_reproducibility(rng):
    factors, mu, _ = _setup(rng, (2, 3))
    for dist in (KronNormal(mu, factors), KronT(mu, factors, 3.0)):
        one = dist.rvs(random_state=5)
        assert one.shape == (6,)
        np.testing.assert_array_equal(one, dist.rvs(random_state=np.random.default_rng(5)))
        assert dist.rvs(size=0, random_state=1).shape == (0, 6)
        assert dist.rvs(size=3, random_state=np.random.RandomState(0)).shape == (3, 6)
        assert not np.array_equal(dist.rvs(2, random_state=1), dist.rvs(2, random_state=2))
        with pytest.raises(TypeError, match="`size`"):
            dist.rvs(size=2.5)
        with pytest.raises(TypeError, match="`size`"):
            dist.rvs(size=(2, 3))
        with pytest.raises(ValueError, match="`size`"):
            dist.rvs(size=-1)
        with pytest.raises(TypeError, match="`random_state`"):
            dist.rvs(random_state="seed")


# ---------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------
def test_bad_observations(rng):
    factors, mu, Y = _setup(rng, (2, 3))
    for dist in (KronNormal(mu, factors), KronT(mu, factors, 2.0)):
        with pytest.raises(ValueError, match=r"`Y` must have shape \(6,\)"):
            dist.logpdf(np.ones(5))
        with pytest.raises(ValueError, match=r"`Y`.*got \(4, 5\)"):
            dist.logpdf_grad(np.ones((4, 5)))
        with pytest.raises(ValueError, match=r"`Y` must have shape.*\(2, 3\).*got \(3, 2\)"):
            dist.logpdf(np.ones((3, 2)))
        bad = Y.copy()
        bad[1, 2] = np.nan
        with pytest.raises(ValueError, match="`Y` contains NaN"):
            dist.logpdf(bad)
        with pytest.raises(ValueError, match="`Y` contains NaN"):
            dist.mahalanobis(bad)
        with pytest.raises(ValueError, match="`reduce`"):
            dist.logpdf_grad(Y, reduce="max")
        with pytest.raises(TypeError, match="`Y`"):
            dist.logpdf(Y + 1j)


@pytest.mark.parametrize("df", [0.0, -1.0, np.nan, -np.inf, 5e-324])
def test_bad_df(rng, df):
    factors, mu, _ = _setup(rng, (2, 3))
    with pytest.raises(ValueError, match="`df`"):
        KronT(mu, factors, df)


@pytest.mark.parametrize("df", ["3", None, [3.0], np.ones(2)])
def test_bad_df_type(rng, df):
    factors, mu, _ = _setup(rng, (2, 3))
    with pytest.raises(TypeError, match="`df`"):
        KronT(mu, factors, df)


def test_bad_scale(rng):
    A, B = _factors(rng, (2, 3))
    indefinite = np.array([[1.0, 2.0], [2.0, 1.0]])
    with pytest.raises(NotPositiveDefiniteError, match=r"`scale\[0\]` \(factor 0\).*Cholesky") as e:
        KronNormal(None, [indefinite, B])
    assert e.value.factor == 0
    nonsym = B.copy()
    nonsym[0, 1] += 0.5
    with pytest.raises(NotPositiveDefiniteError, match=r"`scale\[1\]` \(factor 1\).*not symmetric") as e:
        KronT(None, [A, nonsym], 3.0)
    assert e.value.factor == 1
    with pytest.raises(NotPositiveDefiniteError, match=r"`scale\[2\]`"):
        KronNormal(None, [A, B, -np.eye(2)])
    with pytest.raises(ValueError, match=r"`scale\[1\]` \(factor 1\) must be square"):
        KronNormal(None, [A, np.ones((3, 2))])
    with pytest.raises(TypeError, match="`scale`"):
        KronNormal(None, np.kron(A, B))
    with pytest.raises(TypeError, match="`scale`"):
        KronNormal(None, None)
    with pytest.raises(ValueError, match=r"`scale\[1\]` contains NaN"):
        KronNormal(None, [A, np.full((3, 3), np.nan)])
    tiny = np.diag([1.0, 1e-300])
    with pytest.raises(SingularFactorError, match=r"`scale\[0\]`"):
        KronNormal(None, [tiny, B])
    with pytest.raises(ValueError, match=r"`mean` must have shape \(6,\) or \(2, 3\)"):
        KronNormal(np.zeros(5), [A, B])
    with pytest.raises(ValueError, match=r"`loc` must have shape"):
        KronT(np.zeros((3, 2)), [A, B], 3.0)
    with pytest.raises(ValueError, match="`mean` contains NaN"):
        KronNormal(np.full(6, np.nan), [A, B])


def test_inputs_not_modified(rng):
    factors, mu, Y = _setup(rng, (2, 3))
    copies = [F.copy() for F in factors], mu.copy(), Y.copy()
    dist = KronT(mu, factors, 3.0)
    dist.logpdf(Y)
    dist.logpdf_grad(Y, reduce=None)
    dist.rvs(3, random_state=0)
    for F, C in zip(factors, copies[0], strict=True):
        np.testing.assert_array_equal(F, C)
    np.testing.assert_array_equal(mu, copies[1])
    np.testing.assert_array_equal(Y, copies[2])
    mu[0] += 1.0  # the distribution keeps its own copy
    assert dist.loc[0] == copies[1][0]
    with pytest.raises(ValueError):
        dist.loc[0] = 0.0


def test_exports():
    for name in ("KronNormal", "KronT", "KronNormalGrad", "KronTGrad"):
        assert name in kronkit.__all__ and hasattr(kronkit, name)


def test_gradient_fields_named_and_ordered_alike():
    """value, factors, y, the location (named as in the constructor), the scalar parameter."""
    assert kronkit.LogQuadGrad._fields == ("value", "factors", "y", "mu", "alpha")
    assert kronkit.InvQuadGrad._fields == ("value", "factors", "y", "mu")
    assert kronkit.LogQuadHVP._fields[:3] == ("value", "factors", "y")
    assert KronNormalGrad._fields == ("value", "factors", "y", "mean")
    assert KronTGrad._fields == ("value", "factors", "y", "loc", "df")


# ---------------------------------------------------------------------------------------
# Issue 9: the t at large ν (mpmath references), ν = ∞, copies, dtype, threads
# ---------------------------------------------------------------------------------------
mpmath = pytest.importorskip("mpmath")

# ν from 1e-2 to 1e300: the naive lgamma difference is off by 3e-6 at 1e10 and by 44 at 1e16.
NU_GRID = [1e-2, 0.5, 3.0, 19.9, 20.1, 1e3, 1e6, 1e10, 1e16, 1e50, 1e300]


def _mp_t_parts(nu, P, delta):
    """mpmath (enough digits for the cancellation at this ν): normalizer N, kernel K,
    ∂(N+K)/∂ν, the entropy excess E over the Gaussian, and a condition scale for ∂/∂ν
    (``|ν ∂g/∂ν| + |P ∂g/∂P| + |δ ∂g/∂δ|``: what relative perturbations of the inputs, or of
    ``u = P/ν``, change; it matters only where g crosses 0, e.g. g ≡ 0 for P = 2, δ = 0)."""
    mp = mpmath.mp
    with mpmath.workdps(30 + 2 * int(max(0.0, np.log10(nu)))):
        n, Pm, d = mp.mpf(nu), mp.mpf(P), mp.mpf(delta)

        def norm(n):
            return mp.loggamma((n + Pm) / 2) - mp.loggamma(n / 2) - Pm / 2 * mp.log(n * mp.pi)

        def dnu(n, d, Pm=Pm):
            x, a, t = n / 2, Pm / 2, d / n
            return (mp.digamma(x + a) - mp.digamma(x) - a / x + t / (1 + t) - mp.log1p(t)
                    + Pm * d / (n * (n + d))) / 2

        N = norm(n)
        K = -(n + Pm) / 2 * mp.log1p(d / n)
        G = dnu(n, d)
        x, a = n / 2, Pm / 2
        E = -N + (x + a) * (mp.digamma(x + a) - mp.digamma(x)) - a * (1 + mp.log(2 * mp.pi))
        h = mp.mpf(10) ** (-(mp.dps // 3))
        cond = abs(dnu(n * (1 + h), d) - dnu(n * (1 - h), d)) / (2 * h)
        cond += abs(dnu(n, d, Pm * (1 + h)) - dnu(n, d, Pm * (1 - h))) / (2 * h)
        if delta:
            cond += abs(dnu(n, d * (1 + h)) - dnu(n, d * (1 - h))) / (2 * h)
        return float(N), float(K), float(G), float(E), float(cond)


def _dense_delta_logdet(factors, mu, Y):
    S = dense_kron(*factors)
    W = Y - mu
    delta = np.einsum("ij,ij->i", W, np.linalg.solve(S, W.T).T)
    return delta, np.linalg.slogdet(S)[1]


@pytest.mark.parametrize("dims", [(3,), (2, 3), (2, 3, 2)])
def test_t_accurate_for_every_df_against_mpmath(rng, dims):
    """Regression (issue 9): logpdf, pdf, entropy and ∂ℓ/∂ν lost all accuracy for large ν."""
    factors = _factors(rng, dims, cond_cap=10.0)
    P = int(np.prod(dims))
    mu = rng.standard_normal(P)
    Y = mu + rng.standard_normal((3, P)) * np.array([[0.3], [1.0], [2.5]])
    delta, logdet = _dense_delta_logdet(factors, mu, Y)
    for nu in NU_GRID:
        dist = KronT(mu, factors, nu)
        parts = [_mp_t_parts(nu, P, d) for d in delta]
        ref_logpdf = np.array([N + K for N, K, *_ in parts]) - 0.5 * logdet
        ref_dnu = np.array([g[2] for g in parts])
        cond = np.array([g[4] for g in parts])
        ref_entropy = 0.5 * (P * (1 + np.log(2 * np.pi)) + logdet) + parts[0][3]
        np.testing.assert_allclose(dist.logpdf(Y), ref_logpdf, rtol=RTOL, err_msg=f"nu={nu}")
        np.testing.assert_allclose(dist.pdf(Y), np.exp(ref_logpdf), rtol=CHAIN_RTOL, err_msg=f"nu={nu}")
        np.testing.assert_allclose(dist.entropy(), ref_entropy, rtol=RTOL, err_msg=f"nu={nu}")
        g = dist.logpdf_grad(Y, reduce=None)
        np.testing.assert_allclose(g.value, ref_logpdf, rtol=RTOL, err_msg=f"nu={nu}")
        # ∂ℓ/∂ν → 0 like 1/ν²; accurate relative to its value (and its condition scale)
        err = np.abs(g.df - ref_dnu)
        assert np.all(err <= RTOL * np.maximum(np.abs(ref_dnu), cond) + 1e-300), (nu, err, ref_dnu)
        gs = dist.logpdf_grad(Y)
        np.testing.assert_allclose(gs.df, ref_dnu.sum(), rtol=RTOL,
                                   atol=RTOL * cond.sum() + 1e-300, err_msg=f"nu={nu}")


def test_t_reproducer_from_issue_9():
    y = np.linspace(-1, 1, 6)
    scale = [np.eye(2), np.eye(3)]
    truth = st.multivariate_normal(np.zeros(6), np.eye(6)).logpdf(y) - 0.0  # ν = 1e16: −6.9136…
    val = KronT(None, scale, 1e16).logpdf(y)
    np.testing.assert_allclose(val, truth, rtol=ULPS)  # was −51.4
    np.testing.assert_allclose(val, float(KronNormal(None, scale).logpdf(y)), rtol=ULPS)


@pytest.mark.parametrize("df", [40.0, 1e3, 1e4])
def test_t_moderate_df_matches_scipy(rng, df):
    # scipy's lgamma difference is still accurate to ~1e-12 here
    factors, mu, Y = _setup(rng, (2, 3))
    ref = st.multivariate_t(mu, dense_kron(*factors), df=df)
    dist = KronT(mu, factors, df)
    np.testing.assert_allclose(dist.logpdf(Y), ref.logpdf(Y), rtol=RTOL)
    np.testing.assert_allclose(dist.entropy(), ref.entropy(), rtol=RTOL)


@pytest.mark.parametrize("dims", [(2, 3), (3, 1, 2)])
@pytest.mark.parametrize("df", [1e300, np.inf])
def test_t_tends_to_normal(rng, dims, df):
    factors, mu, Y = _setup(rng, dims)
    t, n = KronT(mu, factors, df), KronNormal(mu, factors)
    ref = st.multivariate_normal(mu, dense_kron(*factors))
    np.testing.assert_allclose(t.logpdf(Y), ref.logpdf(Y), rtol=RTOL)
    np.testing.assert_allclose(t.logpdf(Y), n.logpdf(Y), rtol=ULPS)
    np.testing.assert_allclose(t.entropy(), n.entropy(), rtol=ULPS)
    for reduce in ("sum", None):
        gt, gn = t.logpdf_grad(Y, reduce=reduce), n.logpdf_grad(Y, reduce=reduce)
        np.testing.assert_allclose(gt.value, gn.value, rtol=ULPS)
        np.testing.assert_allclose(gt.loc, gn.mean, rtol=ULPS, atol=ULPS)
        np.testing.assert_allclose(gt.y, gn.y, rtol=ULPS, atol=ULPS)
        for a, b in zip(gt.factors, gn.factors, strict=True):
            np.testing.assert_allclose(a, b, rtol=ULPS, atol=ULPS)
        assert np.all(np.abs(gt.df) <= 1e-290)
    if np.isinf(df):
        assert "df=inf" in repr(t)
        np.testing.assert_array_equal(t.rvs(4, random_state=3), n.rvs(4, random_state=3))
        np.testing.assert_allclose(t.cov.to_dense(), dense_kron(*factors), rtol=1e-15)
        sref = st.multivariate_t(mu, dense_kron(*factors), df=np.inf)  # scipy: the normal
        np.testing.assert_allclose(t.logpdf(Y), sref.logpdf(Y), rtol=RTOL)


def test_special_functions_against_mpmath():
    """kronkit._special (also used by the t estimator) on a grid of ν, P and δ."""
    from kronkit import _special as sp

    for nu in [1e-2, 1.0, 19.9, 20.1, 1e4, 1e10, 1e16, 1e100, 1e300]:
        for P in [1, 2, 7, 10**4, 10**7]:
            for delta in [0.0, P + np.sqrt(2.0 * P), 30.0 * P]:
                N, K, G, E, cond = _mp_t_parts(nu, P, delta)
                tag = f"nu={nu}, P={P}, delta={delta}"
                np.testing.assert_allclose(sp.t_log_normalizer(nu, P), N, rtol=ROUNDING, err_msg=tag)
                np.testing.assert_allclose(sp.t_log_kernel(nu, P, delta), K, rtol=ROUNDING,
                                           atol=1e-300, err_msg=tag)
                np.testing.assert_allclose(sp.t_entropy_excess(nu, P), E, rtol=ROUNDING,
                                           atol=1e-300, err_msg=tag)
                got = sp.t_logpdf_dnu(nu, P, delta)
                assert abs(got - G) <= 1e-12 * max(abs(G), cond) + 1e-300, (tag, got, G)
                split = sp.t_log_normalizer_dnu(nu, P) + sp.t_log_kernel_dnu(nu, P, delta)
                assert abs(split - G) <= 1e-12 * max(abs(G), cond) + 1e-12 * abs(
                    sp.t_log_normalizer_dnu(nu, P)) + 1e-300, (tag, split, G)
    # ν = ∞: the Gaussian limits; arrays broadcast
    assert sp.t_log_normalizer(np.inf, 6) == pytest.approx(-3 * np.log(2 * np.pi), rel=1e-15)
    assert sp.t_log_kernel(np.inf, 6, 3.0) == -1.5
    for f in (sp.t_log_normalizer_dnu, sp.t_entropy_excess):
        assert f(np.inf, 6) == 0.0
    for f in (sp.t_log_kernel_dnu, sp.t_logpdf_dnu):
        assert f(np.inf, 6, 3.0) == 0.0
    out = sp.t_logpdf_dnu(np.array([1.0, 1e20, np.inf]), 4, np.array([[0.5], [9.0]]))
    assert out.shape == (2, 3) and np.all(np.isfinite(out))


def _same_distribution(d1, d2, Y):
    assert type(d1) is type(d2)
    np.testing.assert_array_equal(d1.logpdf(Y), d2.logpdf(Y))
    np.testing.assert_array_equal(d1.loc, d2.loc)
    for a, b in zip(d1.scale.factors, d2.scale.factors, strict=True):
        np.testing.assert_array_equal(a, b)
    assert d1.dtype == d2.dtype
    if isinstance(d1, KronT):
        assert d1.df == d2.df


@pytest.mark.parametrize("protocol", [*range(6), "deepcopy", "copy"])
def test_pickle_and_copies_stay_immutable(rng, protocol):
    """Regression (issue 9): after pickle / deepcopy the location came back writeable."""
    import copy
    import pickle

    factors, mu, Y = _setup(rng, (2, 3))
    dists = [KronNormal(mu, factors), KronT(mu, factors, 3.5), KronT(mu, factors, np.inf),
             KronT(mu.astype(np.float32), [f.astype(np.float32) for f in factors], 7.0)]
    for dist in dists:
        dist.logpdf_grad(Y)  # fill whatever is cached
        if protocol == "deepcopy":
            new = copy.deepcopy(dist)
        elif protocol == "copy":
            new = copy.copy(dist)
        else:
            new = pickle.loads(pickle.dumps(dist, protocol=protocol))
        _same_distribution(dist, new, Y)
        for arr in (new.loc, *new.scale.factors):
            assert not arr.flags.writeable
            with pytest.raises(ValueError):
                arr[0] = 1.0
        # the copy's factorisations are those of its own factors: check against the dense truth
        S = dense_kron(*new.scale.factors).astype(np.float64)
        W = Y - mu
        np.testing.assert_allclose(
            new.mahalanobis(Y), np.einsum("ij,ij->i", W, np.linalg.solve(S, W.T).T),
            rtol=RTOL if new.dtype == np.float64 else F32_RTOL,
        )
        g = new.logpdf_grad(Y)
        np.testing.assert_allclose(g.value, dist.logpdf_grad(Y).value, rtol=1e-15)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_rvs_follow_the_distribution_dtype(rng, dtype):
    """Regression (issue 9): KronNormal(float32 factors).rvs() returned float64."""
    factors = [f.astype(dtype) for f in _factors(rng, (2, 3))]
    for dist in (KronNormal(None, factors), KronT(None, factors, 4.0), KronT(None, factors, np.inf)):
        assert dist.dtype == dtype
        assert dist.rvs(random_state=0).dtype == dtype
        assert dist.rvs(5, random_state=0).dtype == dtype
        assert dist.rvs(5, random_state=np.random.RandomState(0)).dtype == dtype
        ref = type(dist)(None, [f.astype(np.float64) for f in factors],
                         *([dist.df] if isinstance(dist, KronT) else []))
        np.testing.assert_allclose(dist.rvs(5, random_state=1), ref.rvs(5, random_state=1),
                                   rtol=1e-5 if dtype == np.float32 else 0, atol=1e-5)


def test_distributions_shared_across_threads(rng):
    """One KronNormal / KronT used by 8 threads gives the serial results exactly."""
    from concurrent.futures import ThreadPoolExecutor

    factors, mu, _ = _setup(rng, (4, 5))
    batches = [rng.standard_normal((3, 20)) for _ in range(16)]
    for make in (lambda: KronNormal(mu, factors), lambda: KronT(mu, factors, 2.5)):
        serial = make()
        want = [serial.logpdf_grad(Yb, reduce=None) for Yb in batches]
        shared = make()  # fresh: every cache is filled by the threads at once
        with ThreadPoolExecutor(8) as ex:
            got = list(ex.map(lambda Yb, d=shared: d.logpdf_grad(Yb, reduce=None), batches))
        for a, b in zip(got, want, strict=True):
            for x, y in zip(a, b, strict=True):
                if isinstance(x, tuple):
                    for xi, yi in zip(x, y, strict=True):
                        np.testing.assert_array_equal(xi, yi)
                else:
                    np.testing.assert_array_equal(x, y)


def _measure_t_accuracy():  # pragma: no cover - a report, run as a script (see the docs)
    """Max relative errors of KronT against mpmath over the ν grid (``python tests/<this>``)."""
    rng = np.random.default_rng(0)
    nus = [1e-2, 0.1, 0.5, 1.0, 3.0, 10.0, 19.9, 20.1, 100.0, 1e3, 1e4, 1e6, 1e8, 1e10, 1e12,
           1e14, 1e16, 1e20, 1e50, 1e100, 1e200, 1e300]
    print(f"{'dims':>10} {'nu':>8} {'logpdf':>10} {'entropy':>10} {'dlogpdf/dnu':>12}")
    worst = [0.0, 0.0, 0.0]
    for dims in [(2, 3), (4, 5, 3)]:
        factors = _factors(rng, dims, cond_cap=10.0)
        P = int(np.prod(dims))
        mu = rng.standard_normal(P)
        Y = mu + rng.standard_normal((4, P)) * np.array([[0.3], [1.0], [1.5], [3.0]])
        delta, logdet = _dense_delta_logdet(factors, mu, Y)
        for nu in nus:
            dist = KronT(mu, factors, nu)
            parts = [_mp_t_parts(nu, P, d) for d in delta]
            ref = np.array([N + K for N, K, *_ in parts]) - 0.5 * logdet
            ref_h = 0.5 * (P * (1 + np.log(2 * np.pi)) + logdet) + parts[0][3]
            ref_g = np.array([p[2] for p in parts])
            scale_g = np.maximum(np.abs(ref_g), np.array([p[4] for p in parts]))
            g = dist.logpdf_grad(Y, reduce=None)
            e = [np.max(np.abs(g.value - ref) / np.abs(ref)),
                 abs(dist.entropy() - ref_h) / abs(ref_h),
                 np.max(np.abs(g.df - ref_g) / np.maximum(scale_g, 1e-300))]
            worst = [max(w, x) for w, x in zip(worst, e, strict=True)]
            print(f"{dims!s:>10} {nu:8.0e} {e[0]:10.2e} {e[1]:10.2e} {e[2]:12.2e}")
    print(f"{'max':>19} {worst[0]:10.2e} {worst[1]:10.2e} {worst[2]:12.2e}")


if __name__ == "__main__":  # pragma: no cover
    _measure_t_accuracy()


@pytest.mark.parametrize("cls", ["KronNormal", "KronT"])
def test_ill_conditioned_scale_warns_once_on_construction(cls):
    """One IllConditionedWarning per construction (not one per internal use of the factors)."""
    import warnings

    args = (None, [np.diag([1.0, 1e-10]), np.eye(2)]) + ((5.0,) if cls == "KronT" else ())
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        getattr(kronkit, cls)(*args)
    ill = [w for w in rec if issubclass(w.category, kronkit.IllConditionedWarning)]
    assert len(ill) == 1 and ill[0].message.factor == 0
    assert 1.0 / ill[0].message.rcond == pytest.approx(1e10, rel=1e-6)
