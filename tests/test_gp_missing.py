"""KroneckerGP on incomplete grids (NaN cells) and with a per-cell alpha, against scikit-learn's
GaussianProcessRegressor on the observed points and against the dense observed block with
np.kron (log-marginal likelihood, gradient, predictions at the hidden cells and elsewhere)."""

from __future__ import annotations

import copy
import functools
import pickle

import numpy as np
import pytest

pytest.importorskip("sklearn")

from scipy.linalg import cho_factor, cho_solve
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import RBF, ConstantKernel, Matern, WhiteKernel
from sklearn.metrics import r2_score

import kronkit._cell_ops as cell_ops
import kronkit._gp_cells as gp_cells
import kronkit._gp_predict as gp_predict
from helpers import CHAIN_RTOL, ITER_RTOL, RTOL
from kronkit import KroneckerGP, NotPositiveDefiniteError
from test_gp import assert_rel, full_grid, grid_data, rbf_kernels, theta_of


# ---------------------------------------------------------------------------------------
# data and oracles
# ---------------------------------------------------------------------------------------
def holes(rng, sizes, fraction):
    """A random observed mask with about ``fraction`` of the cells missing (at least one kept)."""
    obs = rng.uniform(size=sizes) >= fraction
    obs.flat[0] = True
    return obs


def per_cell_alpha(rng, sizes, base=0.01, share=0.3):
    """Mostly ``base``, a ``share`` of the cells with other known noise variances."""
    alpha = np.full(sizes, base)
    odd = rng.uniform(size=sizes) < share
    alpha[odd] = rng.uniform(0.0, 0.2, int(odd.sum()))
    return alpha


def separable_alpha(rng, sizes):
    """A noise variance per level of each axis, multiplied: ``a_1⊗…⊗a_d`` (with the noise, its
    Kronecker fit is separable, and the grid's eigen form a generalised, non-orthogonal one)."""
    out = np.ones(())
    for n in sizes:
        out = np.multiply.outer(out, rng.uniform(0.2, 1.0, n))
    return 0.1 * out


def sklearn_on_observed(theirs_k, axes, Y, obs, noise, alpha, normalize_y=False):
    """scikit-learn on the observed points: same product kernel, alpha per observed point."""
    a = np.broadcast_to(alpha, obs.shape)[obs] if np.ndim(alpha) else alpha
    return GaussianProcessRegressor(theirs_k + WhiteKernel(noise), alpha=a, optimizer=None,
                                    normalize_y=normalize_y).fit(full_grid(axes)[obs.ravel()],
                                                                 Y[obs])


def dense_observed_lml(kernels, axes, y, obs, noise, alpha):
    """LML and gradient (kernels' theta, then log noise) from the dense observed block."""
    cols = [np.asarray(a).reshape(len(a), -1) for a in axes]
    pairs = [k(X, eval_gradient=True) for k, X in zip(kernels, cols, strict=True)]
    Ks = [K for K, _ in pairs]
    o = obs.ravel()
    S = functools.reduce(np.kron, Ks) + np.diag(noise + np.broadcast_to(alpha, obs.shape).ravel())
    S = S[np.ix_(o, o)]
    c = cho_factor(S, lower=True)
    yo = y.ravel()[o]
    a = cho_solve(c, yo)
    value = -0.5 * yo @ a - np.log(np.diag(c[0])).sum() - 0.5 * yo.size * np.log(2 * np.pi)
    inner = np.outer(a, a) - cho_solve(c, np.eye(yo.size))
    grad = []
    for k, (_, dK) in enumerate(pairs):
        for p in range(dK.shape[2]):
            mats = [dK[:, :, p] if j == k else K for j, K in enumerate(Ks)]
            grad.append(0.5 * np.sum(inner * functools.reduce(np.kron, mats)[np.ix_(o, o)]))
    grad.append(0.5 * noise * np.trace(inner))
    return value, np.array(grad)


def split_theta(kernels, theta):
    cuts = np.cumsum([k.n_dims for k in kernels])[:-1]
    return [k.clone_with_theta(t) for k, t in
            zip(kernels, np.split(theta[:-1], cuts), strict=True)]


@pytest.fixture(params=["capacitance", "dense"])
def route(request, monkeypatch):
    """Each test on both exact routes: the capacitance identities and the dense observed block
    (chosen by cost in use: dense beyond about a third of the cells missing)."""
    monkeypatch.setattr(gp_cells, "dense_is_cheaper", lambda P, k: request.param == "dense")
    return request.param


# ---------------------------------------------------------------------------------------
# log-marginal likelihood and gradient
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("sizes", [(7, 5), (4, 3, 5)], ids=["d2", "d3"])
@pytest.mark.parametrize("alpha_kind", ["zero", "scalar", "per-cell", "separable"])
@pytest.mark.parametrize("fraction", [0.1, 0.5])
def test_lml_and_gradient_match_sklearn_and_dense(rng, sizes, alpha_kind, fraction, route):
    axes, Y = grid_data(rng, sizes)
    obs = holes(rng, sizes, fraction)
    Yn = np.where(obs, Y, np.nan)
    alpha = {"zero": 0.0, "scalar": 0.03, "per-cell": per_cell_alpha(rng, sizes),
             "separable": separable_alpha(rng, sizes)}[alpha_kind]
    normalize_y = alpha_kind == "scalar"
    ours_k, theirs_k = rbf_kernels(len(sizes))
    noise = 0.07
    Y0, a0 = Yn.copy(), np.copy(alpha)
    gp = KroneckerGP(ours_k, noise=noise, alpha=alpha, optimizer=None,
                     normalize_y=normalize_y).fit(axes, Yn)
    assert np.array_equal(Yn, Y0, equal_nan=True) and np.array_equal(alpha, a0)  # not modified
    assert np.array_equal(gp.observed_, obs)
    assert np.array_equal(np.isnan(gp.y_train_), ~obs)
    sk = sklearn_on_observed(theirs_k, axes, Y, obs, noise, alpha, normalize_y)
    theta = theta_of(gp.kernels_, noise) + rng.uniform(-0.3, 0.3, len(sizes) + 2)
    value, grad = gp.log_marginal_likelihood(theta, eval_gradient=True)
    sk_value, sk_grad = sk.log_marginal_likelihood(theta, eval_gradient=True)
    assert_rel(value, sk_value, RTOL, "LML vs sklearn")
    assert_rel(grad, sk_grad, CHAIN_RTOL, "gradient vs sklearn")
    d_value, d_grad = dense_observed_lml(split_theta(gp.kernels_, theta), axes, gp.y_train_,
                                         obs, np.exp(theta[-1]), alpha)
    assert_rel(value, d_value, RTOL, "LML vs dense")
    assert_rel(grad, d_grad, CHAIN_RTOL, "gradient vs dense")
    assert gp.log_marginal_likelihood(theta) == pytest.approx(value, rel=1e-15)
    assert_rel(gp.log_marginal_likelihood_value_, sk.log_marginal_likelihood_value_, RTOL)


def test_general_kernels_and_ill_conditioned_axes_vs_dense(rng, route):
    """A Matern on a 2-D axis, long length scales (kernel matrices of condition ~1e6 and
    beyond) and a small noise, 20% missing: value and gradient against the dense block."""
    ax0 = rng.uniform(0, 2, (6, 2))
    ax1 = np.linspace(0, 1, 7)
    kernels = [ConstantKernel(2.0) * Matern(1.5, nu=2.5), RBF(0.6)]
    Y = rng.standard_normal((6, 7))
    obs = holes(rng, (6, 7), 0.2)
    gp = KroneckerGP(kernels, noise=1e-3, optimizer=None).fit([ax0, ax1], np.where(obs, Y, np.nan))
    theta = theta_of(gp.kernels_, 1e-3)
    assert np.linalg.cond(gp.kernels_[1](ax1[:, None])) > 1e6
    value, grad = gp.log_marginal_likelihood(theta, eval_gradient=True)
    d_value, d_grad = dense_observed_lml(gp.kernels_, [ax0, ax1], Y, obs, 1e-3, 0.0)
    assert_rel(value, d_value, RTOL)
    assert_rel(grad, d_grad, 1e-16 * 1e6)  # κ·eps for the ill-conditioned axis


def test_cg_route_vs_sklearn(rng, monkeypatch):
    """More missing cells than the capacitance route takes (lowered here): the solves by
    preconditioned CG, the log-determinant still exact."""
    sizes = (8, 6)
    axes, Y = grid_data(rng, sizes)
    obs = holes(rng, sizes, 0.3)
    ours_k, theirs_k = rbf_kernels(2)
    monkeypatch.setattr(cell_ops, "CAPACITANCE_MAX_CELLS", 2)
    gp = KroneckerGP(ours_k, noise=0.1, optimizer=None).fit(axes, np.where(obs, Y, np.nan))
    sk = sklearn_on_observed(theirs_k, axes, Y, obs, 0.1, 0.0)
    theta = theta_of(gp.kernels_, 0.1) + 0.2
    value, grad = gp.log_marginal_likelihood(theta, eval_gradient=True)
    sk_value, sk_grad = sk.log_marginal_likelihood(theta, eval_gradient=True)
    assert_rel(value, sk_value, ITER_RTOL)
    assert_rel(grad, sk_grad, ITER_RTOL)


def test_complete_grid_and_constant_alpha_are_the_complete_path(rng):
    """A grid without NaN and a scalar alpha, or an alpha array constant on the observed cells,
    run the complete-grid eigen route: bit for bit the same numbers."""
    sizes = (6, 5)
    axes, Y = grid_data(rng, sizes)
    ks = rbf_kernels(2)[0]
    theta = theta_of(ks, 0.1) + 0.1
    ref = KroneckerGP(ks, noise=0.1, alpha=0.02, optimizer=None).fit(axes, Y)
    arr = KroneckerGP(ks, noise=0.1, alpha=np.full(sizes, 0.02), optimizer=None).fit(axes, Y)
    want = ref.log_marginal_likelihood(theta, eval_gradient=True)
    got = arr.log_marginal_likelihood(theta, eval_gradient=True)
    assert got[0] == want[0] and np.array_equal(got[1], want[1])
    assert np.array_equal(arr.predict(axes, return_std=True), ref.predict(axes, return_std=True))
    assert ref.observed_.all() and not np.isnan(ref.y_train_).any()
    # with holes, alpha's values on the missing cells play no part
    obs = holes(rng, sizes, 0.3)
    Yn = np.where(obs, Y, np.nan)
    a1 = per_cell_alpha(rng, sizes)
    a2 = np.where(obs, a1, 5.0)
    g1 = KroneckerGP(ks, noise=0.1, alpha=a1, optimizer=None).fit(axes, Yn)
    g2 = KroneckerGP(ks, noise=0.1, alpha=a2, optimizer=None).fit(axes, Yn)
    assert np.array_equal(g1.log_marginal_likelihood(theta, eval_gradient=True)[1],
                          g2.log_marginal_likelihood(theta, eval_gradient=True)[1])


def test_per_cell_alpha_on_a_complete_grid_vs_sklearn(rng):
    sizes = (5, 4, 3)
    axes, Y = grid_data(rng, sizes)
    alpha = per_cell_alpha(rng, sizes, share=0.5)
    ours_k, theirs_k = rbf_kernels(3)
    gp = KroneckerGP(ours_k, noise=0.05, alpha=alpha, optimizer=None).fit(axes, Y)
    sk = sklearn_on_observed(theirs_k, axes, Y, np.ones(sizes, bool), 0.05, alpha)
    theta = theta_of(gp.kernels_, 0.05) - 0.2
    value, grad = gp.log_marginal_likelihood(theta, eval_gradient=True)
    sk_value, sk_grad = sk.log_marginal_likelihood(theta, eval_gradient=True)
    assert_rel(value, sk_value, RTOL)
    assert_rel(grad, sk_grad, CHAIN_RTOL)
    Xs = rng.uniform(0, 3, (6, 3))
    mean, std = gp.predict(Xs, return_std=True)
    sk_mean, sk_std = sk.predict(Xs, return_std=True)
    assert_rel(mean, sk_mean, RTOL)
    assert_rel(std**2, sk_std**2 - 0.05, CHAIN_RTOL)


# ---------------------------------------------------------------------------------------
# predictions: the holes filled
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("sizes", [(7, 5), (4, 3, 5)], ids=["d2", "d3"])
@pytest.mark.parametrize("alpha_kind", ["scalar", "per-cell", "separable"])
def test_predict_fills_the_holes_like_sklearn(rng, sizes, alpha_kind, route):
    axes, Y = grid_data(rng, sizes)
    Y = 3.0 * Y + 10.0
    obs = holes(rng, sizes, 0.25)
    alpha = {"scalar": 0.01, "per-cell": per_cell_alpha(rng, sizes),
             "separable": separable_alpha(rng, sizes)}[alpha_kind]
    ours_k, theirs_k = rbf_kernels(len(sizes))
    noise = 0.05
    gp = KroneckerGP(ours_k, noise=noise, alpha=alpha, optimizer=None,
                     normalize_y=True).fit(axes, np.where(obs, Y, np.nan))
    sk = sklearn_on_observed(theirs_k, axes, Y, obs, noise, alpha, normalize_y=True)
    y_var = np.var(Y[obs])  # the noise in predictions is in normalised units, scaled back
    X = full_grid(axes)
    sk_mean, sk_std = sk.predict(X, return_std=True)
    mean, std = gp.predict(axes, return_std=True)  # the training grid, holes included
    assert mean.shape == std.shape == sizes
    assert_rel(mean.ravel(), sk_mean, RTOL, "grid mean")
    assert_rel(std.ravel() ** 2, sk_std**2 - noise * y_var, CHAIN_RTOL, "grid var")
    hidden = ~obs
    assert_rel(mean[hidden], sk_mean[hidden.ravel()], RTOL, "mean at the hidden cells")
    assert_rel(std[hidden] ** 2, sk_std[hidden.ravel()] ** 2 - noise * y_var, CHAIN_RTOL)
    new_axes = [np.linspace(-0.5, 3.5, m) for m in (4, 3, 2)[: len(sizes)]]
    Xs = full_grid(new_axes)
    sk_mean, sk_std = sk.predict(Xs, return_std=True)
    _, sk_cov = sk.predict(Xs, return_cov=True)
    latent_cov = sk_cov - noise * y_var * np.eye(len(Xs))
    mean, std = gp.predict(new_axes, return_std=True)  # a new grid
    assert_rel(mean.ravel(), sk_mean, RTOL)
    assert_rel(std.ravel() ** 2, np.diag(latent_cov), CHAIN_RTOL)
    mean, std = gp.predict(Xs, return_std=True)  # scattered points
    assert_rel(mean, sk_mean, RTOL)
    assert_rel(std**2, np.diag(latent_cov), CHAIN_RTOL)
    for Xq in (Xs, new_axes):
        mean, cov = gp.predict(Xq, return_cov=True)
        assert_rel(cov, latent_cov, CHAIN_RTOL, "cov")
        assert_rel(mean.ravel(), sk_mean, RTOL)


def test_predict_in_chunks_equals_one_block(rng, monkeypatch, route):
    """A scratch budget of a few entries forces the chunked low-rank loops; same numbers."""
    sizes = (5, 4, 3)
    axes, Y = grid_data(rng, sizes)
    obs = holes(rng, sizes, 0.3)
    gp = KroneckerGP(rbf_kernels(3)[0], noise=0.05, optimizer=None).fit(
        axes, np.where(obs, Y, np.nan))
    Xs = rng.uniform(0, 3, (23, 3))
    new_axes = [np.linspace(0, 3, 4), np.linspace(0, 3, 2), np.linspace(0, 3, 3)]
    want = [gp.predict(Xs, return_std=True), gp.predict(Xs, return_cov=True),
            gp.predict(new_axes, return_std=True)]
    monkeypatch.setattr(gp_predict, "CHUNK_DOUBLES", 7)
    got = [gp.predict(Xs, return_std=True), gp.predict(Xs, return_cov=True),
           gp.predict(new_axes, return_std=True)]
    for g, w in zip(got, want, strict=True):
        for a, b in zip(g, w, strict=True):
            np.testing.assert_allclose(a, b, rtol=RTOL, atol=1e-15)


def test_predict_empty_queries_sample_y_and_score(rng, route):
    sizes = (6, 5)
    axes, Y = grid_data(rng, sizes)
    obs = holes(rng, sizes, 0.3)
    Yn = np.where(obs, Y, np.nan)
    gp = KroneckerGP(rbf_kernels(2)[0], noise=0.05, optimizer=None).fit(axes, Yn)
    mean, std = gp.predict([np.zeros(0), axes[1]], return_std=True)
    assert mean.shape == std.shape == (0, 5)
    mean, cov = gp.predict(np.zeros((0, 2)), return_cov=True)
    assert cov.shape == (0, 0)
    # sample_y: scikit-learn's draw from the joint posterior (checked above against sklearn)
    Xs = full_grid(axes)[~obs.ravel()]
    mean, cov = gp.predict(Xs, return_cov=True)
    want = np.random.RandomState(4).multivariate_normal(mean, cov, 3).T
    assert_rel(gp.sample_y(Xs, n_samples=3, random_state=4), want, RTOL)
    assert gp.sample_y(axes, n_samples=2).shape == (*sizes, 2)
    # score: R² over the cells of Y that are not NaN
    pred = gp.predict(axes)
    assert gp.score(axes, Yn) == pytest.approx(r2_score(Y[obs], pred[obs]), rel=1e-15)
    assert gp.score(axes, Y) == pytest.approx(r2_score(Y.ravel(), pred.ravel()), rel=1e-15)
    # a fitted model pickles and deep-copies with its posterior (no lock, no operator kept)
    for copied in (pickle.loads(pickle.dumps(gp)), copy.deepcopy(gp)):
        assert np.array_equal(copied.predict(axes, return_std=True),
                              gp.predict(axes, return_std=True))
    with pytest.raises(ValueError, match="`Y` is NaN everywhere"):
        gp.score(axes, np.full(sizes, np.nan))
    with pytest.raises(ValueError, match="`Y` contains Inf"):
        gp.score(axes, np.where(obs, Y, np.inf))


def test_fit_on_holes_is_not_below_sklearns_fit(rng):
    sizes = (8, 6)
    axes, Y = grid_data(rng, sizes)
    obs = holes(rng, sizes, 0.2)
    ours_k, theirs_k = rbf_kernels(2)
    gp = KroneckerGP(ours_k, noise=0.5).fit(axes, np.where(obs, Y, np.nan))
    sk = GaussianProcessRegressor(theirs_k + WhiteKernel(0.5), alpha=0.0).fit(
        full_grid(axes)[obs.ravel()], Y[obs])
    ours, theirs = gp.log_marginal_likelihood_value_, sk.log_marginal_likelihood_value_
    assert ours >= theirs - ITER_RTOL * abs(theirs)
    assert_rel(sk.log_marginal_likelihood(theta_of(gp.kernels_, gp.noise_)), ours, RTOL)


# ---------------------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------------------
def test_bad_input_names_the_argument(rng):
    sizes = (5, 4)
    axes, Y = grid_data(rng, sizes)
    ks = rbf_kernels(2)[0]
    Yn = np.where(holes(rng, sizes, 0.3), Y, np.nan)
    Y0 = Yn.copy()
    bad_alpha = per_cell_alpha(rng, sizes)
    big = np.full((200, 150), np.nan)  # too many missing cells for the capacitance route,
    big.flat[:13500] = 1.0  # too many observed ones for the dense route
    big_axes = [np.arange(200.0), np.arange(150.0)]
    wide = [np.arange(130.0), np.arange(128.0)]
    cases = [
        (dict(alpha=np.where(np.eye(5, 4) > 0, np.nan, bad_alpha)), axes, Yn,
         "`alpha` contains NaN or Inf"),
        (dict(alpha=np.where(np.eye(5, 4) > 0, np.inf, bad_alpha)), axes, Yn,
         "`alpha` contains NaN or Inf"),
        (dict(alpha=-bad_alpha), axes, Yn, r"`alpha` must be >= 0"),
        (dict(alpha=bad_alpha.T), axes, Yn,
         r"`alpha` must be a scalar or an array of the grid's"),
        (dict(alpha=bad_alpha.ravel()), axes, Yn, r"shape \(5, 4\)"),
        (dict(), axes, np.full(sizes, np.nan), "`Y` is NaN in all of its 20 cells"),
        (dict(), axes, np.where(np.isnan(Yn), np.nan, np.inf), "`Y` contains Inf"),
        (dict(), big_axes, big, "`Y` has 16500 missing .* and 13500 observed"),
        (dict(alpha=np.random.default_rng(1).uniform(0, 1, (130, 128))), wide,
         np.zeros((130, 128)), r"`alpha` .* differs from its best Kronecker-structured fit on "
         r"1663\d observed cells"),
    ]
    for params, ax, Yarg, match in cases:
        alpha0 = np.copy(params.get("alpha", 0.0))
        with pytest.raises(ValueError, match=match):
            KroneckerGP(ks, **params).fit(ax, Yarg)
        assert np.array_equal(params.get("alpha", 0.0), alpha0, equal_nan=True)
    assert np.array_equal(Yn, Y0, equal_nan=True)


def test_singular_observed_covariance(rng, route):
    """Noise 0 (fixed) with repeated coordinates: the observed block is singular — an error
    naming noise and alpha at fit; the likelihood is -inf there, as scikit-learn's."""
    x = np.array([0.0, 0.5, 0.5, 1.0])
    Y = rng.standard_normal((4, 3))
    Y[0, 0] = np.nan
    kernels = [RBF(0.5), RBF(0.5)]
    with pytest.raises(NotPositiveDefiniteError, match="`noise` or `alpha`"):
        KroneckerGP(kernels, noise=0.0, noise_bounds="fixed", optimizer=None).fit(
            [x, np.linspace(0, 1, 3)], Y)
    gp = KroneckerGP(kernels, noise=1e-2, optimizer=None).fit([x, np.linspace(0, 1, 3)], Y)
    value, grad = gp.log_marginal_likelihood(np.r_[np.log([0.5, 0.5]), -800.0],
                                             eval_gradient=True)
    assert value == -np.inf and np.array_equal(grad, np.zeros(3))


def test_route_choice_by_cost():
    """Capacitance (≈ 1.5·P·k²) while few cells are missing, the dense block (≈ n³) beyond
    about a third of the grid, and never a dense block above DENSE_MAX_OBS cells."""
    from kronkit._gp_dense import DENSE_MAX_OBS, dense_is_cheaper

    assert not dense_is_cheaper(5307, 531) and dense_is_cheaper(5307, 2654)
    assert not dense_is_cheaper(5307, 0)
    P = 4 * DENSE_MAX_OBS
    assert not dense_is_cheaper(P, P - DENSE_MAX_OBS - 1) and dense_is_cheaper(P, P - 100)
