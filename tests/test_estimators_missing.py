"""Separable estimators with missing entries (NaN): EM / ECME on the observed-data likelihood.

Oracles: the observed-data log-likelihood computed densely per observation with
scipy.stats.multivariate_normal / multivariate_t on the observed sub-vector and the
sub-covariance np.kron(A, B)[O][:, O]; the conditional Gaussian of the missing cells from
dense np.linalg; one EM step written densely (P×P completed second moments and their partial
traces); a generic optimiser (scipy.optimize) of the dense observed-data likelihood;
simulation (recovery of the truth under MCAR).
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.optimize as so
import scipy.stats as st

from helpers import ITER_RTOL, ROUNDING, RTOL, SQRT_EPS_RTOL, conditioned, dense_kron, factors
from helpers import matrix_samples as simulate
from kronkit import (
    ConvergenceWarning,
    KroneckerPCA,
    SeparableCovariance,
    SingularFactorError,
    kronecker_pca,
    separability_test,
    separable_mle,
)
from kronkit._estimators import missing as missing_mod
from kronkit._estimators.cholesky import factor_iterate

TIGHT = 1e-14  # convergence tolerance for comparisons at the fixed point


def hide(rng, X, frac):
    """A copy of ``X`` with a fraction ``frac`` of its cells set to NaN (MCAR)."""
    Y = np.array(X, dtype=float)
    Y[rng.random(Y.shape) < frac] = np.nan
    return Y


def dense_observed_loglik(X, M, A, B, df=None):
    """Σ_i log f(x_{i,O}) with scipy.stats on the observed sub-vector and sub-covariance."""
    S = dense_kron(A, B)
    total = 0.0
    for x in X.reshape(X.shape[0], -1):
        o = ~np.isnan(x)
        if not o.any():
            continue
        mu, Soo = np.ravel(M)[o], S[np.ix_(o, o)]
        if df is None or np.isinf(df):
            total += st.multivariate_normal(mu, Soo).logpdf(x[o])
        else:
            total += st.multivariate_t(mu, Soo, df=df).logpdf(x[o])
    return float(total)


def dense_em_step(X, M, A, B, *, df=None, centered=False):
    """One EM (normal) or ECME (t, ν fixed) step written densely with P×P matrices."""
    N, p, q = X.shape
    S = dense_kron(A, B)
    xs, ws, second = [], [], np.zeros((S.shape[0], S.shape[0]))
    for x in X.reshape(N, -1):
        o = ~np.isnan(x)
        m = ~o
        mu = np.ravel(M)
        xh = x.copy()
        K = np.linalg.solve(S[np.ix_(o, o)], S[np.ix_(o, m)])  # Σ_OO⁻¹ Σ_OM
        xh[m] = mu[m] + K.T @ (x[o] - mu[o])
        C = np.zeros_like(S)
        C[np.ix_(m, m)] = S[np.ix_(m, m)] - S[np.ix_(m, o)] @ K
        d = (x[o] - mu[o]) @ np.linalg.solve(S[np.ix_(o, o)], x[o] - mu[o])
        w = 1.0 if df is None else (df + o.sum()) / (df + d)
        xs.append(xh)
        ws.append(w)
        second += C  # unweighted (t: E[τ C/τ] = C)
    xs, ws = np.array(xs), np.array(ws)
    Mn = np.zeros(p * q) if centered else ws @ xs / ws.sum()
    E = xs - Mn
    second += (E * ws[:, None]).T @ E
    S4 = second.reshape(p, q, p, q)
    An = np.einsum("akbl,lk->ab", S4, np.linalg.inv(B)) / (N * q)
    Bn = np.einsum("akbl,ba->kl", S4, np.linalg.inv(An)) / (N * p)
    return Mn.reshape(p, q), An, Bn


def rel(a, b):
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b)) / np.linalg.norm(b))


# ---------------------------------------------------------------------------------------
# The E-step and one EM step against dense linear algebra
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(2, 3), (3, 2), (1, 4), (4, 3)])
@pytest.mark.parametrize("cond", [10.0, 1e6])
def test_conditional_step_matches_dense(rng, shape, cond):
    p, q = shape
    A = conditioned(rng, p, cond if p > 1 else 1.0, "spd")
    B = conditioned(rng, q, 10.0, "spd")
    S = dense_kron(A, B)
    X = hide(rng, simulate(rng, 12, A, B), 0.35)
    X[0] = np.nan
    X[0, 0, 0] = 1.0  # one observed cell
    X[1] = simulate(rng, 1, A, B)[0]  # complete
    obs = ~np.isnan(X)
    pat = missing_mod.MissingPatterns(~obs.reshape(12, -1), p, q)
    got = missing_mod.conditional_step(np.where(obs, X, 0.0), factor_iterate(A, 0, 0),
                                       factor_iterate(B, 1, 0), pat)
    for i, x in enumerate(X.reshape(12, -1)):
        o = ~np.isnan(x)
        m = ~o
        Soo = S[np.ix_(o, o)]
        want = x.copy()
        want[m] = S[np.ix_(m, o)] @ np.linalg.solve(Soo, x[o])
        scale = np.sqrt(np.diag(S))  # conditional means in the units of each cell
        np.testing.assert_allclose(got.Ehat[i].ravel() / scale, want / scale,
                                   rtol=0, atol=1e-12 * cond)
        np.testing.assert_allclose(got.delta[i], x[o] @ np.linalg.solve(Soo, x[o]),
                                   rtol=1e-13 * cond)
        np.testing.assert_allclose(got.ld[i], np.linalg.slogdet(Soo)[1],
                                   rtol=RTOL, atol=1e-13 * cond)


@pytest.mark.parametrize("model", ["normal", "t"])
@pytest.mark.parametrize("centered", [False, True])
def test_one_em_step_matches_dense(rng, model, centered):
    p, q = 3, 4
    A, B = factors(rng, (p, q))
    X = hide(rng, simulate(rng, 30, A, B, mean=0.5), 0.25)
    nu = 4.0 if model == "t" else None
    em = missing_mod.MissingEM(X, centered, model == "t", nu, (0.1, 1e6))
    s = em.start
    M, A0, B0 = s.M.copy(), np.eye(p), np.eye(q)
    np.testing.assert_allclose(s.ll, dense_observed_loglik(X, M, A0, B0, df=nu), rtol=RTOL)
    for it in (1, 2):
        Mn, An, Bn = dense_em_step(X, M, A0, B0, df=nu, centered=centered)
        s = em.em(s, it)
        np.testing.assert_allclose(s.M, Mn, rtol=RTOL, atol=RTOL)
        np.testing.assert_allclose(s.A, An, rtol=RTOL)
        np.testing.assert_allclose(s.B, Bn, rtol=RTOL)
        np.testing.assert_allclose(s.ll, dense_observed_loglik(X, Mn, An, Bn, df=nu), rtol=RTOL)
        M, A0, B0 = Mn, An, Bn


# ---------------------------------------------------------------------------------------
# The fit: observed-data likelihood, monotonicity, the maximum
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(2, 3), (3, 2), (1, 4), (4, 1), (3, 5)])
@pytest.mark.parametrize("model", ["normal", "t"])
@pytest.mark.parametrize("centered", [False, True])
def test_loglik_is_the_observed_data_loglik_and_monotone(rng, shape, model, centered):
    p, q = shape
    A, B = factors(rng, (p, q))
    X = hide(rng, simulate(rng, 40, A, B, mean=0.0 if centered else 2.0,
                           df=5.0 if model == "t" else None), 0.2)
    fit = separable_mle(X, distribution=model, assume_centered=centered, tol=TIGHT,
                        max_iter=3000)
    assert fit.converged and fit.n_iter == fit.loglik_history.size
    want = dense_observed_loglik(X, fit.location, fit.row_covariance, fit.column_covariance,
                                 df=fit.df)
    np.testing.assert_allclose(fit.loglik, want, rtol=RTOL)
    steps = np.diff(fit.loglik_history)
    assert steps.min() >= -ROUNDING * abs(fit.loglik), steps.min()
    if centered:
        assert np.all(fit.location == 0.0)
    assert fit.weights.shape == (40,)
    if model == "normal":
        assert np.all(fit.weights == 1.0) and np.isinf(fit.df)


def _cholesky_params(p, q, centered):
    """Pack/unpack (M, L_A with L_A[0, 0] = 1, L_B) for a generic optimiser."""
    ia, ib = np.tril_indices(p), np.tril_indices(q)
    nm = 0 if centered else p * q

    def unpack(v):
        M = np.zeros((p, q)) if centered else v[:nm].reshape(p, q)
        LA = np.zeros((p, p))
        LA[ia] = np.concatenate([[1.0], v[nm : nm + ia[0].size - 1]])
        LB = np.zeros((q, q))
        LB[ib] = v[nm + ia[0].size - 1 :]
        return M, LA @ LA.T, LB @ LB.T

    def pack(M, A, B):
        A, B = A / A[0, 0], B * A[0, 0]
        LA, LB = np.linalg.cholesky(A), np.linalg.cholesky(B)
        return np.concatenate([[] if centered else M.ravel(), LA[ia][1:], LB[ib]])

    return pack, unpack


@pytest.mark.parametrize("centered", [False, True])
def test_em_fixed_point_is_the_maximum_found_by_scipy_optimize(rng, centered):
    p, q = 2, 3
    A, B = factors(rng, (p, q))
    X = hide(rng, simulate(rng, 25, A, B, mean=0.0 if centered else 1.0), 0.2)
    fit = separable_mle(X, assume_centered=centered, tol=TIGHT, max_iter=5000)
    pack, unpack = _cholesky_params(p, q, centered)
    x0 = pack(np.zeros((p, q)) if centered else np.nanmean(X, axis=0), np.eye(p), np.eye(q))
    res = so.minimize(lambda v: -dense_observed_loglik(X, *unpack(v)), x0, method="BFGS",
                      options={"gtol": 1e-9, "maxiter": 2000})
    M_opt, A_opt, B_opt = unpack(res.x)
    ll_opt = -res.fun
    # the EM fixed point is at least as good as the optimiser's point, and the same point
    assert fit.loglik >= ll_opt - 1e-7 * abs(ll_opt)
    np.testing.assert_allclose(fit.loglik, ll_opt, rtol=1e-7)
    K = dense_kron(fit.row_covariance, fit.column_covariance)
    assert rel(K, dense_kron(A_opt, B_opt)) < 1e-4
    assert rel(fit.location, M_opt) < 1e-4 if not centered else True


def test_t_fixed_point_is_the_maximum_found_by_scipy_optimize(rng):
    p, q = 2, 2
    A, B = factors(rng, (p, q))
    X = hide(rng, simulate(rng, 30, A, B, df=4.0), 0.2)
    fit = separable_mle(X, distribution="t", df=4.0, assume_centered=True, tol=TIGHT,
                        max_iter=5000)
    pack, unpack = _cholesky_params(p, q, True)
    res = so.minimize(lambda v: -dense_observed_loglik(X, *unpack(v), df=4.0),
                      pack(None, np.eye(p), np.eye(q)), method="BFGS",
                      options={"gtol": 1e-9, "maxiter": 2000})
    _, A_opt, B_opt = unpack(res.x)
    assert fit.loglik >= -res.fun - 1e-7 * abs(res.fun)
    np.testing.assert_allclose(fit.loglik, -res.fun, rtol=1e-7)
    K = dense_kron(fit.row_covariance, fit.column_covariance)
    assert rel(K, dense_kron(A_opt, B_opt)) < 1e-4


def test_t_estimated_df_maximises_the_observed_likelihood(rng):
    A, B = factors(rng, (3, 3))
    X = hide(rng, simulate(rng, 80, A, B, df=3.0), 0.15)
    fit = separable_mle(X, distribution="t", tol=TIGHT, max_iter=3000)
    assert fit.converged and 1.0 < fit.df < 20.0

    def ll(nu):
        return dense_observed_loglik(X, fit.location, fit.row_covariance,
                                     fit.column_covariance, df=nu)

    np.testing.assert_allclose(fit.loglik, ll(fit.df), rtol=RTOL)
    assert fit.loglik >= max(ll(fit.df * 1.01), ll(fit.df / 1.01))
    w = (fit.df + (~np.isnan(X)).reshape(80, -1).sum(1)) / (
        fit.df + _dense_delta(X, fit.location, dense_kron(fit.row_covariance,
                                                          fit.column_covariance)))
    np.testing.assert_allclose(fit.weights, w, rtol=RTOL)


def _dense_delta(X, M, S):
    out = []
    for x in X.reshape(X.shape[0], -1):
        o = ~np.isnan(x)
        e = x[o] - np.ravel(M)[o]
        out.append(e @ np.linalg.solve(S[np.ix_(o, o)], e))
    return np.array(out)


def test_mcar_recovers_the_truth_as_n_grows(rng):
    p, q = 3, 4
    A, B = factors(rng, (p, q))
    K = dense_kron(A, B)
    errs = []
    for N in (50, 400, 3200):
        X = hide(rng, simulate(rng, N, A, B, mean=1.0), 0.3)
        fit = separable_mle(X)
        errs.append(rel(dense_kron(fit.row_covariance, fit.column_covariance), K))
    assert errs[0] > errs[1] > errs[2] and errs[2] < 0.05, errs


# ---------------------------------------------------------------------------------------
# Complete data, dropped observations, units, the estimator class
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("model", ["normal", "t"])
def test_complete_data_never_reach_the_em(rng, monkeypatch, model):
    A, B = factors(rng, (3, 4))
    X = simulate(rng, 40, A, B)
    before = separable_mle(X, distribution=model)

    class Boom:
        def __init__(self, *a, **k):
            raise AssertionError("complete data were routed through the EM for missing data")

    monkeypatch.setattr("kronkit._estimators.separable.MissingEM", Boom)
    after = separable_mle(X, distribution=model)
    est = SeparableCovariance(distribution=model).fit(X)
    for a, b in zip(before, after, strict=True):
        assert np.array_equal(a, b) if isinstance(a, np.ndarray) else a == b
    assert np.array_equal(est.row_covariance_, before.row_covariance)
    assert est.loglik_ == before.loglik


def test_one_missing_cell_is_close_to_the_complete_fit(rng):
    A, B = factors(rng, (3, 4))
    X = simulate(rng, 200, A, B)
    full = separable_mle(X, tol=TIGHT)
    Y = X.copy()
    Y[7, 1, 2] = np.nan
    fit = separable_mle(Y, tol=TIGHT)
    K0 = dense_kron(full.row_covariance, full.column_covariance)
    assert 0 < rel(dense_kron(fit.row_covariance, fit.column_covariance), K0) < 1e-2


def test_all_missing_observations_are_dropped_with_a_warning(rng):
    A, B = factors(rng, (2, 3))
    X = hide(rng, simulate(rng, 30, A, B), 0.2)
    Y = X.copy()
    Y[[4, 11]] = np.nan
    with pytest.warns(UserWarning, match="2 of the 30 observations"):
        fit = separable_mle(Y, distribution="t", df=6.0)
    ref = separable_mle(np.delete(Y, [4, 11], axis=0), distribution="t", df=6.0)
    assert np.array_equal(fit.row_covariance, ref.row_covariance)
    assert fit.loglik == ref.loglik
    assert np.isnan(fit.weights[[4, 11]]).all()
    np.testing.assert_array_equal(np.delete(fit.weights, [4, 11]), ref.weights)
    with pytest.raises(ValueError, match="every entry missing"):
        separable_mle(np.full((5, 2, 3), np.nan))


def test_units_equivariance_with_missing_entries(rng):
    p, q = 3, 4
    A, B = factors(rng, (p, q))
    X = hide(rng, simulate(rng, 60, A, B, mean=1.0), 0.2)
    d1, d2 = np.array([1e-7, 1.0, 3.0]), np.array([1.0, 1e5, 2.0, 0.5])
    fit = separable_mle(X, tol=TIGHT)
    fit2 = separable_mle(X * d1[:, None] * d2[None, :], tol=TIGHT)
    D = np.kron(d1, d2)
    K = dense_kron(fit.row_covariance, fit.column_covariance) * np.outer(D, D)
    np.testing.assert_allclose(dense_kron(fit2.row_covariance, fit2.column_covariance), K,
                               rtol=SQRT_EPS_RTOL, atol=0)
    shift = -np.sum((~np.isnan(X)).sum(axis=0) * np.log(np.outer(d1, d2)))
    np.testing.assert_allclose(fit2.loglik, fit.loglik + shift, rtol=ITER_RTOL)


def test_input_is_not_modified_and_float32(rng):
    A, B = factors(rng, (2, 3))
    X = hide(rng, simulate(rng, 30, A, B), 0.2)
    X0 = X.copy()
    separable_mle(X)
    SeparableCovariance(distribution="t").fit(X)
    assert np.array_equal(X, X0, equal_nan=True)
    fit32 = separable_mle(X.astype(np.float32))
    assert fit32.row_covariance.dtype == np.float32 and isinstance(fit32.loglik, float)
    fit64 = separable_mle(X.astype(np.float32).astype(np.float64))
    np.testing.assert_allclose(fit32.row_covariance, fit64.row_covariance, rtol=1e-6)


@pytest.mark.parametrize("model", ["normal", "t"])
def test_estimator_fits_missing_entries_like_the_function(rng, model):
    A, B = factors(rng, (3, 2))
    X = hide(rng, simulate(rng, 50, A, B, mean=1.0), 0.2)
    est = SeparableCovariance(distribution=model, shape=(3, 2)).fit(X.reshape(50, 6))
    fit = separable_mle(X, distribution=model)
    np.testing.assert_array_equal(est.row_covariance_, fit.row_covariance)
    np.testing.assert_array_equal(est.loglik_history_, fit.loglik_history)
    assert est.loglik_ == fit.loglik and est.df_ == fit.df
    assert est.get_tags().input_tags.allow_nan if hasattr(est, "get_tags") else True
    assert np.isfinite(est.score(np.nan_to_num(X)))


@pytest.mark.parametrize("model", ["normal", "t"])
def test_estimator_scores_incomplete_observations_by_their_observed_entries(rng, model):
    A, B = factors(rng, (3, 4))
    X = hide(rng, simulate(rng, 60, A, B, mean=1.0), 0.2)
    est = SeparableCovariance(distribution=model).fit(X)
    Y = hide(rng, simulate(rng, 7, A, B, mean=1.0), 0.3)
    Y[0] = np.nan  # nothing observed: log-density 0, distance 0
    Y[1] = simulate(rng, 1, A, B)[0]  # complete
    S = dense_kron(est.row_covariance_, est.column_covariance_)
    want = [dense_observed_loglik(y[None], est.location_, est.row_covariance_,
                                  est.column_covariance_, df=est.df_) for y in Y]
    np.testing.assert_allclose(est.score_samples(Y), want, rtol=RTOL, atol=RTOL)
    np.testing.assert_allclose(est.score_samples(Y)[1], est.score_samples(Y[1:2])[0],
                               rtol=RTOL)
    np.testing.assert_allclose(est.score(Y), np.mean(want), rtol=RTOL)
    np.testing.assert_allclose(est.mahalanobis(Y.reshape(7, 12)),
                               _dense_delta(Y, est.location_, S), rtol=RTOL, atol=RTOL)


def test_not_converged_warns(rng):
    A, B = factors(rng, (3, 3))
    X = hide(rng, simulate(rng, 40, A, B), 0.3)
    with pytest.warns(ConvergenceWarning, match="did not converge in 2 iterations"):
        fit = separable_mle(X, max_iter=2)
    assert not fit.converged and fit.n_iter == 2


# ---------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------
def test_unidentifiable_patterns_are_refused(rng):
    A, B = factors(rng, (3, 4))
    X = simulate(rng, 40, A, B)
    Y = X.copy()
    Y[:, 1, :] = np.nan
    with pytest.raises(ValueError, match=r"`X`: row 1 is missing \(NaN\) in every observation"):
        separable_mle(Y)
    Y = X.copy()
    Y[:, :, 3] = np.nan
    with pytest.raises(ValueError, match="`X`: column 3 is missing"):
        separable_mle(Y, assume_centered=True)
    Y = X.copy()
    Y[:20, 0, :] = np.nan
    Y[20:, 2, :] = np.nan
    with pytest.raises(ValueError, match="rows 0 and 2 are never observed in the same"):
        separable_mle(Y)
    Y = X.copy()
    Y[:, 2, 1] = np.nan
    with pytest.raises(ValueError, match=r"cell \(2, 1\) is missing.*assume_centered"):
        separable_mle(Y)
    fit = separable_mle(Y, assume_centered=True)  # the cell's variance A[2,2]·B[1,1] is known
    assert fit.converged
    Y = np.full((2, 3, 4), np.nan)  # 2·6 = 12 entries for 6 + 10 − 1 = 15 parameters
    Y[:, 0, :] = X[:2, 0, :]
    Y[:, :, 0] = X[:2, :, 0]
    with pytest.raises(ValueError, match="12 observed entries, too few for the 15"):
        separable_mle(Y, assume_centered=True)


def test_bad_values_with_missing_entries(rng):
    A, B = factors(rng, (2, 3))
    X = hide(rng, simulate(rng, 30, A, B), 0.2)
    Y = X.copy()
    Y[0, 0, 0] = np.inf
    with pytest.raises(ValueError, match="`X` contains Inf"):
        separable_mle(Y)
    with pytest.raises(ValueError, match=r"method.*moments.*complete data"):
        separable_mle(X, method="moments")
    Y = X.copy()
    Y[:, 1, 2] = np.where(np.isnan(Y[:, 1, 2]), np.nan, 3.0)
    with pytest.raises(SingularFactorError, match=r"entry \(1, 2\)"):
        separable_mle(Y)
    with pytest.raises(ValueError, match="n_samples = 2"):
        separable_mle(X[:2])


def test_dask_with_missing_entries_is_refused(rng):
    da = pytest.importorskip("dask.array")
    X = hide(rng, rng.standard_normal((20, 2, 3)), 0.2)
    with pytest.raises(ValueError, match="`X` contains NaN"):
        separable_mle(da.from_array(X, chunks=(10, 2, 3)))


def test_separability_test_and_kronecker_pca_refuse_missing_entries(rng):
    X = hide(rng, rng.standard_normal((60, 2, 3)), 0.05)
    n = int(np.isnan(X).sum())
    for call, who in ((lambda: separability_test(X), "separability_test"),
                      (lambda: kronecker_pca(X, 1), "kronecker_pca"),
                      (lambda: KroneckerPCA().fit(X), "KroneckerPCA.fit")):
        with pytest.raises(ValueError, match=f"`X` has {n} missing entries") as info:
            call()
        msg = str(info.value)
        assert who in msg and "SeparableCovariance" in msg and "impute" in msg
    kp = KroneckerPCA().fit(np.nan_to_num(X))
    with pytest.raises(ValueError, match=r"missing entries \(NaN\), but KroneckerPCA's scoring"):
        kp.score(X)
    Y = X.copy()
    Y[np.isnan(Y)] = np.inf
    with pytest.raises(ValueError, match="`X` contains NaN or Inf"):
        KroneckerPCA().fit(Y)  # Inf keeps its message


@pytest.mark.parametrize("model", ["normal", "t"])
def test_heavy_missingness_converges_monotonically(rng, model):
    """60 % of the cells missing: slow plain EM, accelerated by SQUAREM, still monotone."""
    A, B = factors(rng, (3, 4))
    X = hide(rng, simulate(rng, 150, A, B, mean=1.0, df=4.0 if model == "t" else None), 0.6)
    X[np.isnan(X).all(axis=(1, 2)), 0, 0] = 0.5  # no empty observation (tested elsewhere)
    fit = separable_mle(X, distribution=model, tol=TIGHT, max_iter=2000)
    assert fit.converged
    assert np.diff(fit.loglik_history).min() >= -ROUNDING * abs(fit.loglik)
    want = dense_observed_loglik(X, fit.location, fit.row_covariance, fit.column_covariance,
                                 df=fit.df)
    np.testing.assert_allclose(fit.loglik, want, rtol=RTOL)


@pytest.mark.parametrize("cond", [1e3, 1e6])
def test_ill_conditioned_truth(rng, cond):
    """Factors with condition number up to 1e6: the fit's ℓ is still the dense observed ℓ."""
    A = conditioned(rng, 3, cond, "spd")
    B = conditioned(rng, 4, 10.0, "spd")
    X = hide(rng, simulate(rng, 200, A, B), 0.15)
    fit = separable_mle(X, tol=TIGHT)
    assert fit.converged
    want = dense_observed_loglik(X, fit.location, fit.row_covariance, fit.column_covariance)
    np.testing.assert_allclose(fit.loglik, want, rtol=1e-14 * cond)
    assert np.diff(fit.loglik_history).min() >= -ROUNDING * abs(fit.loglik)
