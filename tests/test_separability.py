"""The separability test: statistic against dense references, null law, size of the p-values."""

import numpy as np
import pytest
import scipy.stats as st

import kronkit
from helpers import CHAIN_RTOL, ITER_RTOL, ROUNDING, RTOL, factors
from helpers import matrix_samples as simulate
from kronkit import ConvergenceWarning, separability_test
from kronkit._estimators.separability_null import (
    chi2_df,
    null_cumulants,
    null_statistics,
    sphericity_cumulants,
)
from kronkit._estimators.separability_test import t_null_statistics


def flipflop_reference(E3, sweeps=400):
    """The separable Gaussian MLE of residuals E3 (N, p, q) by a long plain flip-flop."""
    N, p, q = E3.shape
    B = np.eye(q)
    for _ in range(sweeps):
        A = np.einsum("naj,jk,nbk->ab", E3, np.linalg.inv(B), E3) / (N * q)
        B = np.einsum("naj,ab,nbk->jk", E3, np.linalg.inv(A), E3) / (N * p)
    return A, B


def dense_lrt(E3):
    """(statistic, ℓ_separable, ℓ_unstructured) from scipy densities on np.kron(A, B)."""
    N, p, q = E3.shape
    A, B = flipflop_reference(E3)
    Y = E3.reshape(N, -1)
    ll_k = st.multivariate_normal(np.zeros(p * q), np.kron(A, B)).logpdf(Y).sum()
    ll_u = st.multivariate_normal(np.zeros(p * q), Y.T @ Y / N).logpdf(Y).sum()
    return 2 * (ll_u - ll_k), ll_k, ll_u


# ---------------------------------------------------------------------------------------
# The statistic
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(("p", "q", "N"), [(2, 3, 50), (3, 2, 20), (4, 3, 100)])
def test_statistic_against_dense(rng, p, q, N):
    X = simulate(rng, N, *factors(rng, (p, q)), mean=2.0)
    res = separability_test(X)
    T, ll_k, ll_u = dense_lrt(X - X.mean(axis=0))
    np.testing.assert_allclose(res.statistic, T, rtol=CHAIN_RTOL)
    np.testing.assert_allclose(res.loglik_separable, ll_k, rtol=ROUNDING)
    np.testing.assert_allclose(res.loglik_unstructured, ll_u, rtol=ROUNDING)
    assert res.df == p * q * (p * q + 1) // 2 - (p * (p + 1) // 2 + q * (q + 1) // 2 - 1)
    np.testing.assert_allclose(res.pvalue_chi2, st.chi2.sf(T, res.df), rtol=ITER_RTOL)
    assert res.distribution == "normal" and res.residual_df == N - 1 and res.t_df is None


def test_groups_and_assume_centered(rng):
    A, B = factors(rng, (2, 3))
    labels = np.repeat(["a", "b", "c"], [10, 12, 8])
    X = simulate(rng, 30, A, B) + np.repeat(rng.standard_normal((3, 2, 3)) * 5, [10, 12, 8],
                                            axis=0)
    Xc = X.copy()
    for g in "abc":
        Xc[labels == g] -= X[labels == g].mean(axis=0)
    a = separability_test(X, groups=labels)
    b = separability_test(Xc, assume_centered=True)
    np.testing.assert_allclose(a.statistic, dense_lrt(Xc)[0], rtol=CHAIN_RTOL)
    np.testing.assert_allclose(a.statistic, b.statistic, rtol=RTOL)
    np.testing.assert_allclose(a.loglik_unstructured, b.loglik_unstructured, rtol=RTOL)
    mc = separability_test(X, groups=labels, n_simulations=5, random_state=0)
    assert mc.method == "monte-carlo" and mc.pvalue in {k / 6 for k in range(1, 7)}
    assert a.residual_df == 27 and b.residual_df == 30
    # the residual degrees of freedom enter the null law: different Bartlett factors
    assert a.bartlett_factor > b.bartlett_factor > 1


def test_statistic_is_invariant_and_unit_free(rng):
    """T is invariant under X ↦ C X Dᵀ + M, including rescaling rows/columns by 1e±7."""
    X = rng.standard_normal((40, 3, 4))
    C = rng.standard_normal((3, 3)) + 3 * np.eye(3)
    D = rng.standard_normal((4, 4)) + 3 * np.eye(4)
    t0 = separability_test(X).statistic
    np.testing.assert_allclose(separability_test(C @ X @ D.T + 5.0).statistic, t0, rtol=ITER_RTOL)
    Y = X * np.array([1e7, 1.0, 1e-7])[:, None] * np.array([1.0, 1e-7, 1e7, 3.0])
    np.testing.assert_allclose(separability_test(Y).statistic, t0, rtol=ITER_RTOL)


def test_input_not_modified(rng):
    X = rng.standard_normal((30, 2, 3))
    X0 = X.copy()
    separability_test(X, method="monte-carlo", n_simulations=9, random_state=0)
    np.testing.assert_array_equal(X, X0)


# ---------------------------------------------------------------------------------------
# The null law
# ---------------------------------------------------------------------------------------
def testsphericity_cumulants_against_scipy_wishart():
    """Exact mean and variance of Mauchly's −m log det(P W / tr W), W ~ Wishart_P(m, I)."""
    rng = np.random.default_rng(3)
    P, m, reps = 4, 9, 40000
    W = st.wishart(df=m, scale=np.eye(P)).rvs(reps, random_state=rng)
    u = -m * (np.linalg.slogdet(W)[1] - P * np.log(np.trace(W, axis1=1, axis2=2) / P))
    k1, k2, _ = sphericity_cumulants(P, m, m)
    se = np.sqrt(k2 / reps)
    assert abs(u.mean() - k1) < 4 * se
    assert abs(u.var() / k2 - 1) < 4 * np.sqrt(2 / reps)


def test_null_statistics_wishart_route_equals_data_route():
    """Wishart draws of S give the law of T computed from Gaussian data centred by groups."""
    rng = np.random.default_rng(4)
    p, q, N, G = 2, 3, 15, 3
    labels = np.arange(N) % G
    A, B = factors(rng, (p, q))
    data = [separability_test(simulate(rng, N, A, B, mean=1.0), groups=labels,
                              method="chi2").statistic for _ in range(300)]
    wish = null_statistics(p, q, N - G, N, 1000, rng)
    assert st.ks_2samp(data, wish).pvalue > 0.01


def test_null_mean_against_simulation():
    """The analytic E0[T] (Bartlett factor) against data simulated under H0."""
    rng = np.random.default_rng(5)
    for p, q, N in [(2, 5, 25), (4, 4, 64)]:
        A, B = factors(rng, (p, q))
        T = np.array([separability_test(simulate(rng, N, A, B), method="chi2").statistic
                      for _ in range(300)])
        mean = null_cumulants(p, q, N - 1, N)[0]
        assert abs(T.mean() - mean) < 4 * T.std() / np.sqrt(len(T))
        # and the uncorrected chi-square mean (df) is far off at these N/P
        assert abs(T.mean() - chi2_df(p, q)) > 10 * T.std() / np.sqrt(len(T))


# ---------------------------------------------------------------------------------------
# Size of the default p-value (the size study in the suite; full table: benchmarks/)
# ---------------------------------------------------------------------------------------
SIZE_CASES = [  # (p, q, N): N/P from 2 to 50
    (2, 2, 8), (2, 3, 12), (3, 3, 45), (2, 6, 24), (4, 4, 160), (2, 3, 300), (5, 5, 50),
]


def test_size_of_default_pvalue_under_h0():
    """Rejection rate at 5 % of the default p-value within Monte Carlo error of 0.05.

    Data are drawn from N(M, A⊗B) with random A, B, M (the null is true). Before issue 9 the
    (chi-square) default rejected 28 %–92 % of these data sets at N/P = 2.
    """
    rng = np.random.default_rng(6)
    reps = 300
    rates, rates_chi2 = [], []
    for p, q, N in SIZE_CASES:
        A, B = factors(rng, (p, q))
        res = [separability_test(simulate(rng, N, A, B, mean=rng.standard_normal((p, q))))
               for _ in range(reps)]
        assert {r.method for r in res} == {"scaled-chi2"}
        rates.append(np.mean([r.pvalue < 0.05 for r in res]))
        rates_chi2.append(np.mean([r.pvalue_chi2 < 0.05 for r in res]))
    rates = np.array(rates)
    se = np.sqrt(0.05 * 0.95 / reps)
    assert np.all(np.abs(rates - 0.05) < 4 * se), rates
    pooled_se = se / np.sqrt(len(rates))
    assert abs(rates.mean() - 0.05) < 3 * pooled_se, rates
    # the uncorrected chi-square p-value is far too liberal at N/P = 2 (what issue 9 reported)
    assert min(rates_chi2[i] for i in (0, 1, 3, 6)) > 0.2


def test_size_of_monte_carlo_pvalue_close_to_boundary():
    """n < 1.5·P: "auto" takes the exact Monte Carlo p-value; its size is exactly 0.05."""
    rng = np.random.default_rng(7)
    A, B = factors(rng, (2, 3))
    res = [separability_test(simulate(rng, 8, A, B), n_simulations=19, random_state=rng)
           for _ in range(200)]
    res_auto = separability_test(simulate(rng, 8, A, B), random_state=0)
    assert res_auto.method == "monte-carlo" and res_auto.n_simulations == 999
    assert {r.method for r in res} == {"monte-carlo"}
    rate = np.mean([r.pvalue <= 0.05 for r in res])
    assert abs(rate - 0.05) < 4 * np.sqrt(0.05 * 0.95 / 200)
    assert np.mean([r.pvalue_chi2 < 0.05 for r in res]) > 0.3


# ---------------------------------------------------------------------------------------
# Methods, fields, validation
# ---------------------------------------------------------------------------------------
def test_methods_and_fields(rng):
    X = rng.standard_normal((60, 2, 3))
    auto = separability_test(X)
    assert auto.method == "scaled-chi2" and auto.n_simulations == 0
    assert separability_test(X, method="scaled-chi2") == auto
    bart = separability_test(X, method="bartlett")
    assert bart.method == "bartlett"
    np.testing.assert_allclose(bart.pvalue, st.chi2.sf(bart.statistic / bart.bartlett_factor,
                                                       bart.df), rtol=ROUNDING)
    # both corrections move the p-value the same way, away from the liberal chi-square one
    assert auto.pvalue > auto.pvalue_chi2 and bart.pvalue > bart.pvalue_chi2
    chi = separability_test(X, method="chi2")
    assert chi.method == "chi2" and chi.pvalue == chi.pvalue_chi2
    mc = separability_test(X, n_simulations=5, random_state=0)
    assert mc.method == "monte-carlo" and mc.pvalue in {k / 6 for k in range(1, 7)}
    mc2 = separability_test(X, method="monte-carlo", n_simulations=5, random_state=0)
    assert mc2 == mc  # same seed, same replicates


def test_validation(rng):
    X = rng.standard_normal((30, 2, 3))
    with pytest.raises(TypeError, match="`random_state`"):
        separability_test(X, method="monte-carlo", random_state="x")
    with pytest.raises(ValueError, match="`n_simulations`"):
        separability_test(X, n_simulations=0)
    with pytest.raises(TypeError, match="`n_simulations`"):
        separability_test(X, n_simulations="5")
    with pytest.raises(TypeError, match="`n_simulations`"):
        separability_test(X, n_simulations=5.0)
    with pytest.raises(ValueError, match=r"`n_simulations`.*method='bartlett'"):
        separability_test(X, method="bartlett", n_simulations=9)
    with pytest.raises(ValueError, match="`method`"):
        separability_test(X, method="exact")
    with pytest.raises(ValueError, match="`distribution`"):
        separability_test(X, distribution="laplace")
    with pytest.raises(ValueError, match=r"distribution='t'.*Gaussian data only"):
        separability_test(X, distribution="t", method="bartlett")
    with pytest.raises(TypeError, match="`max_iter`"):
        separability_test(X, max_iter=2.5)
    with pytest.raises(ValueError, match="`max_iter`"):
        separability_test(X, max_iter=0)


def test_errors_for_too_few_observations(rng):
    with pytest.raises(ValueError, match=r"N − 1, the mean being estimated = 6.*n > P"):
        separability_test(rng.standard_normal((7, 2, 3)))
    with pytest.raises(ValueError, match=r"N = 6 .*n > P"):
        separability_test(rng.standard_normal((6, 2, 3)), assume_centered=True)
    with pytest.raises(ValueError, match=r"N − G with G = 3 groups = 6"):
        separability_test(rng.standard_normal((9, 2, 3)), groups=np.repeat([0, 1, 2], 3))
    with pytest.raises(ValueError, match="p >= 2 and q >= 2"):
        separability_test(rng.standard_normal((30, 6)), shape=(-1, 1))
    with pytest.raises(ValueError, match=r"`X` is 2-D.*shape=\(p, q\)"):
        separability_test(rng.standard_normal((30, 6)))
    W = rng.standard_normal((9, 2, 3))
    for g in range(3):
        W[3 * g : 3 * g + 3] -= W[3 * g : 3 * g + 3].mean(axis=0)  # rank <= 6 = P
    W[:, 0, 0] = W[:, 0, 1]  # plus one exact collinearity: rank 5 < P
    with pytest.raises(ValueError, match=r"singular \(rank 5 < P = 6\).*group"):
        separability_test(W, assume_centered=True)


def test_convergence_warning(rng):
    X = simulate(rng, 40, *factors(rng, (3, 4)))
    with pytest.warns(ConvergenceWarning, match="max_iter = 1"):
        separability_test(X, max_iter=1)


def test_exported():
    assert kronkit.separability_test is separability_test
    assert kronkit.SeparabilityTestResult._fields[-5:] == (
        "distribution", "bartlett_factor", "n_simulations", "residual_df", "t_df")


# ---------------------------------------------------------------------------------------
# The t model
# ---------------------------------------------------------------------------------------
def test_t_model_parametric_bootstrap(rng):
    """Under a separable t(ν = 4) the Gaussian p-value rejects far too often; the bootstrap
    simulates the law of the statistic under the separable t (checked against t data with
    random A, B, M), and the test reports what it did. Size study: benchmarks/."""
    p, q, N = 2, 3, 60
    A, B = factors(rng, (p, q))
    data = [simulate(rng, N, A, B, mean=rng.standard_normal((p, q)), df=4) for _ in range(100)]
    gauss = [separability_test(X) for X in data]
    assert np.mean([r.pvalue < 0.05 for r in gauss]) > 0.4
    sims = t_null_statistics(p, q, N, 4.0, 800, rng, lambda Z: Z - Z.mean(axis=0), 2000,
                              1e-13)
    assert st.ks_2samp([r.statistic for r in gauss], sims).pvalue > 0.01
    r = separability_test(data[0], distribution="t", n_simulations=19, random_state=0)
    assert r.method == "parametric-bootstrap" and r.distribution == "t" and r.n_simulations == 19
    fit = kronkit.separable_mle(data[0], distribution="t")
    np.testing.assert_allclose(r.t_df, fit.df, rtol=ROUNDING)
    assert r.statistic == gauss[0].statistic and r.pvalue in {k / 20 for k in range(1, 21)}
