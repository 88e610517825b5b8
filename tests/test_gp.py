"""kronkit.KroneckerGP against scikit-learn's GaussianProcessRegressor on the full grid of points
and against the dense computation with np.kron (values, gradients, predictions, fits)."""

from __future__ import annotations

import functools

import numpy as np
import pytest

pytest.importorskip("sklearn")

from scipy.linalg import cho_factor, cho_solve
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import (
    RBF,
    ConstantKernel,
    ExpSineSquared,
    Matern,
    RationalQuadratic,
    WhiteKernel,
)

import kronkit
import kronkit._gp_predict as gp_predict
from helpers import CHAIN_RTOL, ITER_RTOL, RTOL, SQRT_EPS_RTOL
from kronkit import KroneckerGP, NotPositiveDefiniteError


# ---------------------------------------------------------------------------------------
# data and oracles
# ---------------------------------------------------------------------------------------
def grid_data(rng, sizes, noise=0.05):
    """Axes (1-D) and a smooth function on the grid plus noise."""
    axes = [np.sort(rng.uniform(0.0, 3.0, n)) for n in sizes]
    Y = np.zeros(tuple(sizes))
    for k, x in enumerate(axes):
        shape = [1] * len(sizes)
        shape[k] = -1
        Y = Y + np.sin((k + 1.3) * x).reshape(shape)
    return axes, Y + np.sqrt(noise) * rng.standard_normal(Y.shape)


def full_grid(axes):
    """The P×Σd_k matrix of grid points, row-major (first axis slowest)."""
    cols = [np.asarray(a).reshape(len(a), -1) for a in axes]
    idx = np.indices([len(c) for c in cols]).reshape(len(cols), -1)
    return np.hstack([c[i] for c, i in zip(cols, idx, strict=True)])


def rbf_kernels(d, amplitude=1.3):
    """Per-axis RBFs (the first with an amplitude) and the equivalent sklearn kernel."""
    ls = [0.9, 0.6, 1.2][:d]
    ours = [ConstantKernel(amplitude) * RBF(ls[0])] + [RBF(v) for v in ls[1:]]
    theirs = ConstantKernel(amplitude) * RBF(ls)
    return ours, theirs


def dense_lml(kernels, axes, y, noise, alpha=0.0, noise_fitted=True):
    """LML and its gradient in theta by the dense route: Cholesky of np.kron(...) + s·I."""
    cols = [np.asarray(a).reshape(len(a), -1) for a in axes]
    pairs = [k(X, eval_gradient=True) for k, X in zip(kernels, cols, strict=True)]
    Ks = [K for K, _ in pairs]
    P = y.size
    S = functools.reduce(np.kron, Ks) + (noise + alpha) * np.eye(P)
    c = cho_factor(S, lower=True)
    a = cho_solve(c, y.ravel())
    value = (-0.5 * y.ravel() @ a - np.log(np.diag(c[0])).sum() - 0.5 * P * np.log(2 * np.pi))
    inner = np.outer(a, a) - cho_solve(c, np.eye(P))
    grad = []
    for k, (_, dK) in enumerate(pairs):
        for p in range(dK.shape[2]):
            mats = [dK[:, :, p] if j == k else K for j, K in enumerate(Ks)]
            grad.append(0.5 * np.sum(inner * functools.reduce(np.kron, mats)))
    if noise_fitted:
        grad.append(0.5 * noise * np.trace(inner))
    return value, np.array(grad)


def theta_of(kernels, noise=None):
    parts = [k.theta for k in kernels] + ([] if noise is None else [[np.log(noise)]])
    return np.concatenate(parts)


def assert_rel(got, want, rtol, what=""):
    got, want = np.asarray(got, dtype=float), np.asarray(want, dtype=float)
    assert got.shape == want.shape, (what, got.shape, want.shape)
    err = np.linalg.norm(got - want)
    assert err <= rtol * max(np.linalg.norm(want), 1e-300), (what, err, np.linalg.norm(want))


# ---------------------------------------------------------------------------------------
# log-marginal likelihood and gradient
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("sizes", [(7, 5), (4, 3, 5)], ids=["d2", "d3"])
@pytest.mark.parametrize("normalize_y", [False, True])
@pytest.mark.parametrize("alpha", [0.0, 0.03])
def test_lml_and_gradient_match_sklearn_and_dense(rng, sizes, normalize_y, alpha):
    axes, Y = grid_data(rng, sizes)
    ours_k, theirs_k = rbf_kernels(len(sizes))
    noise = 0.07
    gp = KroneckerGP(ours_k, noise=noise, alpha=alpha, optimizer=None,
                     normalize_y=normalize_y).fit(axes, Y)
    sk = GaussianProcessRegressor(theirs_k + WhiteKernel(noise), alpha=alpha, optimizer=None,
                                  normalize_y=normalize_y).fit(full_grid(axes), Y.ravel())
    theta = theta_of(gp.kernels_, noise) + rng.uniform(-0.3, 0.3, len(sizes) + 2)
    assert np.array_equal(theta_of(gp.kernels_, noise), sk.kernel_.theta)  # same parametrisation
    value, grad = gp.log_marginal_likelihood(theta, eval_gradient=True)
    sk_value, sk_grad = sk.log_marginal_likelihood(theta, eval_gradient=True)
    assert_rel(value, sk_value, RTOL, "LML vs sklearn")
    assert_rel(grad, sk_grad, CHAIN_RTOL, "gradient vs sklearn")
    kernels = [k.clone_with_theta(t) for k, t in
               zip(gp.kernels_, np.split(theta[:-1], np.cumsum([k.n_dims for k in gp.kernels_])[:-1]),
                   strict=True)]
    d_value, d_grad = dense_lml(kernels, axes, gp.y_train_, np.exp(theta[-1]), alpha)
    assert_rel(value, d_value, RTOL, "LML vs dense")
    assert_rel(grad, d_grad, CHAIN_RTOL, "gradient vs dense")
    assert gp.log_marginal_likelihood(theta) == pytest.approx(value, rel=1e-15)
    assert gp.log_marginal_likelihood() == gp.log_marginal_likelihood_value_
    assert_rel(gp.log_marginal_likelihood_value_, sk.log_marginal_likelihood_value_, RTOL)


def test_general_kernels_multicolumn_axis_and_fixed_hyperparameters_vs_dense(rng):
    """Matern on a 2-D axis (points in the plane), rational quadratic with an amplitude, a
    periodic kernel with a fixed period: value and gradient vs np.kron; the fixed
    hyperparameter is left out of theta."""
    ax0 = rng.uniform(0, 2, (5, 2))
    ax1 = np.linspace(0, 1, 4)
    ax2 = np.linspace(0, 2, 3)
    kernels = [Matern(0.8, nu=1.5), ConstantKernel(0.7) * RationalQuadratic(0.5, 1.5),
               ExpSineSquared(1.0, 2.0, periodicity_bounds="fixed")]
    Y = rng.standard_normal((5, 4, 3))
    gp = KroneckerGP(kernels, noise=0.2, optimizer=None).fit([ax0, ax1, ax2], Y)
    theta = theta_of(gp.kernels_, 0.2)
    assert theta.size == 1 + 3 + 1 + 1
    value, grad = gp.log_marginal_likelihood(theta, eval_gradient=True)
    d_value, d_grad = dense_lml(gp.kernels_, [ax0, ax1, ax2], Y, 0.2)
    assert_rel(value, d_value, RTOL)
    assert_rel(grad, d_grad, CHAIN_RTOL)


def test_fixed_noise_matches_sklearn_fixed_white_kernel(rng):
    axes, Y = grid_data(rng, (6, 5))
    ours_k, theirs_k = rbf_kernels(2)
    gp = KroneckerGP(ours_k, noise=0.1, noise_bounds="fixed", optimizer=None).fit(axes, Y)
    sk = GaussianProcessRegressor(theirs_k + WhiteKernel(0.1, noise_level_bounds="fixed"),
                                  alpha=0.0, optimizer=None).fit(full_grid(axes), Y.ravel())
    theta = theta_of(gp.kernels_) + 0.2
    assert theta.size == 3
    value, grad = gp.log_marginal_likelihood(theta, eval_gradient=True)
    sk_value, sk_grad = sk.log_marginal_likelihood(theta, eval_gradient=True)
    assert_rel(value, sk_value, RTOL)
    assert_rel(grad, sk_grad, CHAIN_RTOL)


def test_ill_conditioned_axes_vs_dense(rng):
    """Long length scales: cond(K_k) ≈ 1e6 on each axis, small noise; still the dense values."""
    axes = [np.linspace(0, 1, 6), np.linspace(0, 1, 5)]
    kernels = [RBF(0.9), RBF(1.0)]
    conds = [np.linalg.cond(k(a[:, None])) for k, a in zip(kernels, axes, strict=True)]
    assert 1e5 < min(conds) and max(conds) < 1e8
    Y = rng.standard_normal((6, 5))
    gp = KroneckerGP(kernels, noise=1e-3, optimizer=None).fit(axes, Y)
    theta = theta_of(gp.kernels_, 1e-3)
    value, grad = gp.log_marginal_likelihood(theta, eval_gradient=True)
    d_value, d_grad = dense_lml(kernels, axes, Y, 1e-3)
    assert_rel(value, d_value, ITER_RTOL)  # S has condition number ~1e3·P/1e-3
    assert_rel(grad, d_grad, ITER_RTOL)


def test_one_axis_is_sklearn(rng):
    x = np.sort(rng.uniform(0, 4, 15))
    y = np.sin(x) + 0.1 * rng.standard_normal(15)
    gp = KroneckerGP([ConstantKernel() * RBF()], noise=0.05, optimizer=None).fit([x], y)
    sk = GaussianProcessRegressor(ConstantKernel() * RBF() + WhiteKernel(0.05), alpha=0.0,
                                  optimizer=None).fit(x[:, None], y)
    theta = sk.kernel_.theta - 0.1
    assert_rel(gp.log_marginal_likelihood(theta, eval_gradient=True)[1],
               sk.log_marginal_likelihood(theta, eval_gradient=True)[1], CHAIN_RTOL)
    xs = np.linspace(-1, 5, 7)
    m, s = gp.predict([xs], return_std=True)
    sm, ss = sk.predict(xs[:, None], return_std=True)
    assert_rel(m, sm, RTOL)
    assert_rel(s**2, ss**2 - 0.05, CHAIN_RTOL)


def test_noise_zero_when_fixed(rng):
    """noise=0 is allowed when fixed: S = ⊗K_k (+ alpha) exactly, as GPR with that alpha."""
    axes, Y = grid_data(rng, (5, 4))
    kernels = [Matern(0.3, nu=0.5), Matern(0.4, nu=0.5)]
    gp = KroneckerGP(kernels, noise=0.0, noise_bounds="fixed", optimizer=None).fit(axes, Y)
    d_value, _ = dense_lml(kernels, axes, Y, 0.0, noise_fitted=False)
    assert_rel(gp.log_marginal_likelihood_value_, d_value, CHAIN_RTOL)


# ---------------------------------------------------------------------------------------
# predictions
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("sizes", [(7, 5), (4, 3, 5)], ids=["d2", "d3"])
def test_predict_matches_sklearn(rng, sizes):
    axes, Y = grid_data(rng, sizes)
    Y = 3.0 * Y + 10.0
    ours_k, theirs_k = rbf_kernels(len(sizes))
    noise = 0.05
    gp = KroneckerGP(ours_k, noise=noise, alpha=0.01, optimizer=None,
                     normalize_y=True).fit(axes, Y)
    sk = GaussianProcessRegressor(theirs_k + WhiteKernel(noise), alpha=0.01, optimizer=None,
                                  normalize_y=True).fit(full_grid(axes), Y.ravel())
    y_var = np.var(Y)  # the noise in predictions is in normalised units, scaled back
    new_axes = [np.linspace(-0.5, 3.5, m) for m in (4, 3, 2)[: len(sizes)]]
    Xs = full_grid(new_axes)
    sk_mean, sk_std = sk.predict(Xs, return_std=True)
    _, sk_cov = sk.predict(Xs, return_cov=True)
    latent_var = sk_std**2 - noise * y_var
    latent_cov = sk_cov - noise * y_var * np.eye(len(Xs))
    mean, std = gp.predict(new_axes, return_std=True)  # on a grid
    assert mean.shape == std.shape == (4, 3, 2)[: len(sizes)]
    assert_rel(mean.ravel(), sk_mean, RTOL, "grid mean")
    assert_rel(std.ravel() ** 2, latent_var, CHAIN_RTOL, "grid var")
    mean, std = gp.predict(Xs, return_std=True)  # scattered
    assert mean.shape == (len(Xs),)
    assert_rel(mean, sk_mean, RTOL, "points mean")
    assert_rel(std**2, latent_var, CHAIN_RTOL, "points var")
    for X in (Xs, new_axes):
        mean, cov = gp.predict(X, return_cov=True)
        assert cov.shape == (len(Xs), len(Xs))
        assert mean.shape == ((len(Xs),) if X is Xs else tuple(len(a) for a in new_axes))
        assert_rel(cov, latent_cov, CHAIN_RTOL, "cov")
        assert_rel(mean.ravel(), sk_mean, RTOL)
    assert_rel(gp.predict(Xs), sk.predict(Xs), RTOL)
    assert gp.score(Xs, sk_mean) == pytest.approx(1.0)


def test_predict_in_chunks_equals_one_block(rng, monkeypatch):
    """A scratch budget of a few entries forces the chunked loops; same numbers."""
    axes, Y = grid_data(rng, (5, 4, 3))
    gp = KroneckerGP(rbf_kernels(3)[0], noise=0.05, optimizer=None).fit(axes, Y)
    Xs = rng.uniform(0, 3, (23, 3))
    want = gp.predict(Xs, return_std=True), gp.predict(Xs, return_cov=True)
    monkeypatch.setattr(gp_predict, "CHUNK_DOUBLES", 7)
    got = gp.predict(Xs, return_std=True), gp.predict(Xs, return_cov=True)
    for g, w in zip(got, want, strict=True):
        for a, b in zip(g, w, strict=True):
            np.testing.assert_allclose(a, b, rtol=RTOL, atol=1e-15)


def test_predict_empty_queries(rng):
    axes, Y = grid_data(rng, (4, 3))
    gp = KroneckerGP(rbf_kernels(2)[0], noise=0.05, optimizer=None).fit(axes, Y)
    mean, std = gp.predict([np.zeros(0), np.linspace(0, 1, 3)], return_std=True)
    assert mean.shape == std.shape == (0, 3)
    mean, std = gp.predict(np.zeros((0, 2)), return_std=True)
    assert mean.shape == std.shape == (0,)
    mean, cov = gp.predict(np.zeros((0, 2)), return_cov=True)
    assert cov.shape == (0, 0)


def test_sample_y_moments(rng):
    axes, Y = grid_data(rng, (6, 5))
    gp = KroneckerGP(rbf_kernels(2)[0], noise=0.05, optimizer=None).fit(axes, Y)
    Xs = np.array([[0.5, 0.5], [1.0, 2.9], [1.1, 2.8]])
    n = 4000
    draws = gp.sample_y(Xs, n_samples=n, random_state=3)
    assert draws.shape == (3, n)
    mean, cov = gp.predict(Xs, return_cov=True)
    sd = np.sqrt(np.diag(cov))
    # sampling error: 5 standard errors of the mean and of the variance
    assert np.all(np.abs(draws.mean(axis=1) - mean) <= 5 * sd / np.sqrt(n))
    assert np.all(np.abs(draws.var(axis=1) / sd**2 - 1) <= 5 * np.sqrt(2 / n))
    corr = np.corrcoef(draws)[1, 2]
    assert abs(corr - cov[1, 2] / (sd[1] * sd[2])) <= 5 / np.sqrt(n)
    assert np.array_equal(draws, gp.sample_y(Xs, n_samples=n, random_state=3))
    grid_draws = gp.sample_y([np.linspace(0, 1, 3), np.linspace(0, 1, 2)], n_samples=5)
    assert grid_draws.shape == (3, 2, 5)


# ---------------------------------------------------------------------------------------
# fitting
# ---------------------------------------------------------------------------------------
def test_fit_is_not_below_sklearns_fit(rng):
    axes, Y = grid_data(rng, (9, 7))
    ours_k, theirs_k = rbf_kernels(2)
    gp = KroneckerGP(ours_k, noise=0.5, n_restarts_optimizer=2, random_state=0).fit(axes, Y)
    sk = GaussianProcessRegressor(theirs_k + WhiteKernel(0.5), alpha=0.0, n_restarts_optimizer=2,
                                  random_state=0).fit(full_grid(axes), Y.ravel())
    ours, theirs = gp.log_marginal_likelihood_value_, sk.log_marginal_likelihood_value_
    assert ours >= theirs - ITER_RTOL * abs(theirs)
    # the reported value is the likelihood at the fitted hyperparameters, by sklearn's count too
    theta = theta_of(gp.kernels_, gp.noise_)
    assert_rel(sk.log_marginal_likelihood(theta), ours, RTOL)
    # the fitted hyperparameters agree (same optimizer, same starting points)
    assert_rel(theta, sk.kernel_.theta, SQRT_EPS_RTOL * 100)
    assert gp.kernels_[0] is not ours_k[0] and ours_k[0].k2.length_scale == 0.9  # not mutated


def test_callable_and_no_optimizer(rng):
    axes, Y = grid_data(rng, (5, 4))
    calls = []

    def optimizer(obj_func, initial_theta, bounds):
        value, _ = obj_func(initial_theta)
        calls.append((initial_theta.copy(), bounds.copy()))
        return initial_theta, value

    gp = KroneckerGP(rbf_kernels(2)[0], noise=0.3, optimizer=optimizer).fit(axes, Y)
    theta0 = theta_of(rbf_kernels(2)[0], 0.3)
    assert len(calls) == 1 and np.allclose(calls[0][0], theta0, rtol=0, atol=1e-15)
    assert np.allclose(calls[0][1], np.log([[1e-5, 1e5]] * 4), rtol=0, atol=1e-15)
    assert gp.log_marginal_likelihood_value_ == pytest.approx(gp.log_marginal_likelihood(theta0))
    fixed = KroneckerGP([RBF(1.0, "fixed"), RBF(1.0, "fixed")], noise=0.3,
                        noise_bounds="fixed").fit(axes, Y)  # nothing to fit: no optimizer run
    assert fixed.noise_ == 0.3


def test_verbose_progress(rng, capsys):
    axes, Y = grid_data(rng, (5, 4))
    KroneckerGP(rbf_kernels(2)[0], noise=0.3, verbose=True).fit(axes, Y)
    out = capsys.readouterr().out
    assert "KroneckerGP fit" in out and "log-likelihood" in out


def test_sklearn_protocol(rng):
    axes, Y = grid_data(rng, (5, 4))
    gp = KroneckerGP(rbf_kernels(2)[0], noise=0.3, n_restarts_optimizer=1, random_state=1)
    params = gp.get_params()
    assert {"kernels", "noise", "noise_bounds", "alpha", "optimizer", "n_restarts_optimizer",
            "normalize_y", "random_state", "verbose"} <= set(params)
    copy = clone(gp).set_params(noise=0.4)
    assert copy.noise == 0.4 and gp.noise == 0.3
    a = clone(gp).fit(axes, Y)
    b = clone(gp).fit(axes, Y)
    assert a.log_marginal_likelihood_value_ == b.log_marginal_likelihood_value_
    with pytest.raises(NotFittedError):
        KroneckerGP(rbf_kernels(2)[0]).predict([axes[0], axes[1]])
    assert kronkit.KroneckerGP is KroneckerGP


# ---------------------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------------------
def test_bad_input_names_the_argument(rng):
    axes, Y = grid_data(rng, (5, 4))
    ks = rbf_kernels(2)[0]
    Y0, axes0 = Y.copy(), [a.copy() for a in axes]
    cases = [
        (dict(kernels=None), (axes, Y), TypeError, "`kernels`"),
        (dict(kernels=[ks[0], "rbf"]), (axes, Y), TypeError, r"`kernels\[1\]`"),
        (dict(kernels=ks[:1]), (axes, Y), ValueError, "`axes` has 2 axes but there are 1"),
        (dict(kernels=ks), (np.stack([axes[0][:4], axes[1]]), Y), TypeError, "`axes`"),
        (dict(kernels=ks), (axes, Y.T), ValueError, "`Y` must have the grid's shape"),
        (dict(kernels=ks), ([axes[0], np.zeros((4, 1, 1))], Y), ValueError, r"`axes\[1\]`"),
        (dict(kernels=ks), ([axes[0], np.zeros(0)], Y[:, :0]), ValueError, r"`axes\[1\]`"),
        (dict(kernels=ks, noise=0.0), (axes, Y), ValueError, "`noise` must be > 0"),
        (dict(kernels=ks, noise=-1.0, noise_bounds="fixed"), (axes, Y), ValueError, "`noise`"),
        (dict(kernels=ks, noise_bounds=(1.0, 0.1)), (axes, Y), ValueError, "`noise_bounds`"),
        (dict(kernels=ks, noise_bounds="free"), (axes, Y), ValueError, "`noise_bounds`"),
        (dict(kernels=ks, alpha=-1e-3), (axes, Y), ValueError, "`alpha`"),
        (dict(kernels=ks, alpha=np.ones(20)), (axes, Y), ValueError,
         r"`alpha` must be a scalar or an array of the grid's shape \(5, 4\)"),
        (dict(kernels=ks, alpha=np.full((5, 4), np.nan)), (axes, Y), ValueError,
         "`alpha` contains NaN"),
        (dict(kernels=ks, optimizer="adam"), (axes, Y), ValueError, "`optimizer`"),
        (dict(kernels=ks, n_restarts_optimizer=-1), (axes, Y), ValueError,
         "`n_restarts_optimizer`"),
        (dict(kernels=[RBF(1.0, (1e-5, np.inf)), RBF()], n_restarts_optimizer=1), (axes, Y),
         ValueError, "bounds are finite"),
    ]
    for params, args, exc, match in cases:
        with pytest.raises(exc, match=match):
            KroneckerGP(**params).fit(*args)
    Ynan = np.full_like(Y, np.nan)
    with pytest.raises(ValueError, match="`Y` is NaN in all of its 20 cells"):
        KroneckerGP(ks).fit(axes, Ynan)
    Ynan = Y.copy()
    Ynan[1, 2] = np.inf
    with pytest.raises(ValueError, match="`Y` contains NaN or Inf"):
        KroneckerGP(ks).fit(axes, Ynan)
    with pytest.raises(ValueError, match=r"`axes\[0\]` contains NaN"):
        KroneckerGP(ks).fit([np.r_[axes[0][:-1], np.nan], axes[1]], Y)
    assert np.array_equal(Y, Y0) and all(np.array_equal(a, b) for a, b in
                                         zip(axes, axes0, strict=True))
    assert ks[0].k2.length_scale == 0.9  # the user's kernels are not fitted in place


def test_bad_input_after_fit(rng):
    axes, Y = grid_data(rng, (5, 4))
    gp = KroneckerGP(rbf_kernels(2)[0], noise=0.3, optimizer=None).fit(axes, Y)
    with pytest.raises(ValueError, match=r"`theta` must have shape \(4,\)"):
        gp.log_marginal_likelihood(np.zeros(3))
    with pytest.raises(ValueError, match="Gradient can only be evaluated for theta!=None"):
        gp.log_marginal_likelihood(eval_gradient=True)
    with pytest.raises(RuntimeError, match="At most one"):
        gp.predict(full_grid(axes), return_std=True, return_cov=True)
    with pytest.raises(ValueError, match=r"`X` .* must have 2 columns"):
        gp.predict(np.zeros((3, 3)))
    with pytest.raises(ValueError, match="`X` has 1 axes but there are 2"):
        gp.predict([axes[0]])
    with pytest.raises(ValueError, match=r"`X\[1\]` has 2 coordinates"):
        gp.predict([axes[0], np.zeros((3, 2))])
    with pytest.raises(ValueError, match="`n_samples`"):
        gp.sample_y(full_grid(axes), n_samples=0)


def test_singular_covariance_with_zero_noise(rng):
    """Repeated coordinates make K singular: noise 0 (fixed) and alpha 0 is an error naming
    them; the likelihood itself is -inf there, as scikit-learn's."""
    x = np.array([0.0, 0.5, 0.5, 1.0])
    Y = rng.standard_normal((4, 3))
    kernels = [RBF(0.5), RBF(0.5)]
    with pytest.raises(NotPositiveDefiniteError, match="`noise` or `alpha`"):
        KroneckerGP(kernels, noise=0.0, noise_bounds="fixed", optimizer=None).fit(
            [x, np.linspace(0, 1, 3)], Y)
    gp = KroneckerGP(kernels, noise=1e-2, optimizer=None).fit([x, np.linspace(0, 1, 3)], Y)
    value, grad = gp.log_marginal_likelihood(np.r_[np.log([0.5, 0.5]), -800.0],
                                             eval_gradient=True)
    assert value == -np.inf and np.array_equal(grad, np.zeros(3))
