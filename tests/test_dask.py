"""dask arrays of observations: same results as NumPy, on the synchronous scheduler and on a
real dask.distributed LocalCluster with worker processes."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_allclose

import kronkit
from helpers import ITER_RTOL, RTOL, SQRT_EPS_RTOL, ULPS, dense_kron, factors
from helpers import matrix_samples as simulate

da = pytest.importorskip("dask.array")
dask = pytest.importorskip("dask")
distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def client():
    """A LocalCluster with two worker processes, closed after the module."""
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None, silence_logs=40) as cluster, \
            distributed.Client(cluster, set_as_default=False) as c:
        yield c


@pytest.fixture(params=["synchronous", "distributed"])
def scheduler(request):
    if request.param == "synchronous":
        with dask.config.set(scheduler="synchronous"):
            yield "synchronous"
    else:
        c = request.getfixturevalue("client")
        with c.as_current(), dask.config.set(scheduler=c.get):
            yield "distributed"


@pytest.fixture
def data(rng):
    A, B = factors(rng, (3, 4))
    Y = rng.standard_normal((53, 12))
    mu = rng.standard_normal(12)
    return A, B, Y, mu


def test_log_quad(scheduler, data):
    A, B, Y, mu = data
    lazy = kronkit.log_quad([A, B], da.from_array(Y, chunks=(10, 12)), mu, 2.0)
    assert isinstance(lazy, da.Array)
    assert_allclose(lazy.compute(), kronkit.log_quad([A, B], Y, mu, 2.0), rtol=RTOL)


@pytest.mark.parametrize("reduce", ["sum", "mean"])
def test_log_quad_grad(scheduler, data, reduce):
    A, B, Y, mu = data
    ref = kronkit.log_quad_grad([A, B], Y, mu, 2.0, reduce=reduce)
    got = kronkit.log_quad_grad([A, B], da.from_array(Y, chunks=(8, 6)), mu, 2.0, reduce=reduce)
    assert_allclose(got.value, ref.value, rtol=RTOL)
    for g, r in zip(got.factors, ref.factors, strict=True):
        assert_allclose(g, r, rtol=RTOL, atol=ULPS)
    assert_allclose(got.mu, ref.mu, rtol=RTOL, atol=ULPS)
    assert_allclose(got.alpha, ref.alpha, rtol=RTOL)
    assert isinstance(got.y, da.Array)
    assert_allclose(got.y.compute(), ref.y, rtol=RTOL, atol=ULPS)


def test_dask_bad_input(data):
    A, B, Y, _ = data
    Yd = da.from_array(Y, chunks=(10, 12))
    with pytest.raises(ValueError, match="reduce='sum' or 'mean'"):
        kronkit.log_quad_grad([A, B], Yd, reduce=None)
    with pytest.raises(ValueError, match=r"shape \(N, 12\)"):
        kronkit.log_quad([A, B], Yd[:, :5])
    with pytest.raises(ValueError, match="`mu` must be 1-D"):
        kronkit.log_quad_grad([A, B], Yd, mu=np.ones((53, 12)))
    with pytest.raises(ValueError, match=r"`mu` must have shape \(12,\)"):
        kronkit.log_quad_grad([A, B], Yd, mu=np.ones(5))


# ---------------------------------------------------------------------------------------
# Distributions: lazy log-densities
# ---------------------------------------------------------------------------------------
def test_kron_normal_and_t_logpdf_are_lazy_and_match_scipy(scheduler, rng):
    st = pytest.importorskip("scipy.stats")
    A, B = factors(rng, (3, 4))
    mu = rng.standard_normal(12)
    Y = rng.standard_normal((41, 12))
    Yd = da.from_array(Y, chunks=(9, 5))  # split along P too: rechunked, not an error
    normal = kronkit.KronNormal(mu, [A, B])
    t = kronkit.KronT(mu, [A, B], df=3.5)
    S = dense_kron(A, B)
    for dist, ref in [(normal, st.multivariate_normal(mu, S)),
                      (t, st.multivariate_t(mu, S, df=3.5))]:
        lazy = dist.logpdf(Yd)
        assert isinstance(lazy, da.Array) and lazy.shape == (41,)
        assert lazy.chunks == (Yd.chunks[0],)
        assert_allclose(lazy.compute(), ref.logpdf(Y), rtol=RTOL)
        d3 = dist.mahalanobis(da.from_array(Y.reshape(41, 3, 4), chunks=(10, 3, 4)))
        assert_allclose(d3.compute(), np.einsum("ij,ij->i", Y - mu, np.linalg.solve(S, (Y - mu).T).T),
                        rtol=RTOL)


def test_logpdf_dask_bad_input(rng):
    dist = kronkit.KronNormal(None, factors(rng, (2, 3)))
    with pytest.raises(ValueError, match=r"`Y` as a dask array must have shape \(N, 6\)"):
        dist.logpdf(da.zeros((5, 7), chunks=2))
    with pytest.raises(ValueError, match="`Y` as a dask array must have shape"):
        dist.logpdf(da.zeros(6, chunks=2))


# ---------------------------------------------------------------------------------------
# separable_mle / SeparableCovariance on dask arrays
# ---------------------------------------------------------------------------------------


def assert_same_fit(got, ref, rtol=RTOL):
    assert got.n_iter == ref.n_iter and got.converged == ref.converged
    assert_allclose(got.row_covariance, ref.row_covariance, rtol=rtol, atol=ULPS)
    assert_allclose(got.column_covariance, ref.column_covariance, rtol=rtol, atol=ULPS)
    assert_allclose(got.location, ref.location, rtol=rtol, atol=ULPS)
    assert_allclose(got.loglik_history, ref.loglik_history, rtol=rtol)
    assert_allclose(got.weights, ref.weights, rtol=rtol)
    assert got.df == pytest.approx(ref.df, rel=rtol) or (np.isinf(got.df) and np.isinf(ref.df))


@pytest.mark.parametrize(
    "distribution, df, centered",
    [("normal", None, False), ("normal", None, True), ("t", None, False), ("t", 4.0, True)],
)
def test_separable_mle_same_iterates_as_numpy(scheduler, rng, distribution, df, centered):
    """Same iteration sequence: after the same number of iterations the results agree."""
    A, B = factors(rng, (3, 5))
    X = simulate(rng, 90, A, B, mean=0.0 if centered else 1.5, df=5.0)
    kw = dict(distribution=distribution, df=df, assume_centered=centered, tol=0.0, max_iter=6,
              method="samples")
    with pytest.warns(kronkit.ConvergenceWarning):
        ref = kronkit.separable_mle(X, **kw)
    with pytest.warns(kronkit.ConvergenceWarning):
        got = kronkit.separable_mle(da.from_array(X, chunks=(17, 3, 5)), **kw)
    assert_same_fit(got, ref)


def test_separable_mle_converged_fit_against_dense(scheduler, rng):
    """Converged dask fit: the MLE fixed point Σ δ_i = N·P and the dense log-likelihood."""
    st = pytest.importorskip("scipy.stats")
    A, B = factors(rng, (2, 4))
    X = simulate(rng, 70, A, B, mean=-1.0)
    Xd = da.from_array(X.reshape(70, 8), chunks=(16, 8))
    fit = kronkit.separable_mle(Xd, shape=(2, 4), tol=1e-13)
    assert fit.converged
    S = dense_kron(fit.row_covariance, fit.column_covariance)
    E = X.reshape(70, 8) - X.mean(axis=0).ravel()
    assert_allclose(fit.location, X.mean(axis=0), rtol=RTOL)
    assert_allclose(np.einsum("ij,ij->i", E, np.linalg.solve(S, E.T).T).sum(), 70 * 8, rtol=RTOL)
    ll = st.multivariate_normal(fit.location.ravel(), S).logpdf(X.reshape(70, 8)).sum()
    assert_allclose(fit.loglik, ll, rtol=RTOL)
    assert_same_fit(fit, kronkit.separable_mle(X, tol=1e-13, method="samples"))


def test_separable_mle_t_estimated_df_converged(scheduler, rng):
    A, B = factors(rng, (2, 3))
    X = simulate(rng, 120, A, B, mean=0.5, df=4.0)
    ref = kronkit.separable_mle(X, distribution="t", tol=1e-9, max_iter=500)
    got = kronkit.separable_mle(da.from_array(X, chunks=(40, 2, 3)), distribution="t",
                                tol=1e-9, max_iter=500)
    assert ref.converged and np.isfinite(ref.df)
    assert_same_fit(got, ref)


def test_separable_mle_moments_route(scheduler, rng):
    A, B = factors(rng, (3, 2))
    X = simulate(rng, 50, A, B, mean=2.0)
    ref = kronkit.separable_mle(X, method="moments", tol=1e-13)
    got = kronkit.separable_mle(da.from_array(X, chunks=(12, 3, 2)), method="moments", tol=1e-13)
    assert_same_fit(got, ref)


def test_pass_count_and_chunk_traffic(rng):
    """Normal model: 1 pass up front + 2 per iteration; each task returns only p×p / q×q sums."""
    A, B = factors(rng, (3, 4))
    X = simulate(rng, 60, A, B)
    calls = []

    def tag(block):
        if block.shape[0]:  # dask may call it once on an empty block to infer metadata
            calls.append(block.shape[0])
        return block

    Xd = da.from_array(X, chunks=(20, 3, 4)).map_blocks(tag, dtype=X.dtype)
    with dask.config.set(scheduler="synchronous"), pytest.warns(kronkit.ConvergenceWarning):
        fit = kronkit.separable_mle(Xd, tol=0.0, max_iter=4, method="samples")
    assert fit.n_iter == 4
    assert len(calls) == 3 * (1 + 2 * 4)  # 3 chunks, each read once per pass


def test_separable_covariance_estimator(scheduler, rng):
    A, B = factors(rng, (2, 3))
    X = simulate(rng, 80, A, B, mean=1.0, df=6.0)
    for kw in [{}, {"distribution": "t", "df": 6.0}]:
        ref = kronkit.SeparableCovariance(tol=1e-10, **kw).fit(X)
        est = kronkit.SeparableCovariance(tol=1e-10, **kw).fit(da.from_array(X, chunks=(30, 2, 3)))
        assert est.shape_ == (2, 3) and est.n_features_in_ == 6
        assert_allclose(est.row_covariance_, ref.row_covariance_, rtol=RTOL)
        assert_allclose(est.column_covariance_, ref.column_covariance_, rtol=RTOL)
        assert_allclose(est.location_, ref.location_, rtol=RTOL, atol=ULPS)
        Xd2 = da.from_array(X.reshape(80, 6), chunks=(25, 6))
        lazy = est.logpdf(Xd2)
        assert isinstance(lazy, da.Array)
        assert_allclose(lazy.compute(), ref.logpdf(X), rtol=RTOL)
        assert_allclose(est.score(Xd2), ref.score(X), rtol=RTOL)
        assert_allclose(est.mahalanobis(Xd2).compute(), ref.mahalanobis(X), rtol=RTOL)
    with pytest.raises(ValueError, match="fitted with shape"):
        est.logpdf(da.zeros((4, 3, 2), chunks=2))


def test_lazily_generated_data_recovers_truth(scheduler):
    """Data made by dask (never a NumPy array on the client) with covariance A⊗B."""
    A = np.array([[2.0, 0.6, 0.0], [0.6, 1.0, 0.3], [0.0, 0.3, 0.5]])
    B = np.array([[1.0, -0.4], [-0.4, 2.0]])
    LA, LB = np.linalg.cholesky(A), np.linalg.cholesky(B)
    Z = da.random.RandomState(0).standard_normal((40_000, 3, 2), chunks=(5_000, 3, 2))
    X = da.einsum("ij,njk,lk->nil", LA, Z, LB) + 3.0
    fit = kronkit.separable_mle(X, tol=1e-12)
    assert fit.converged
    # sampling error of a covariance entry is ~ 1/sqrt(N) = 0.005 relative
    assert_allclose(fit.covariance.to_dense(), np.kron(A, B), atol=0.05)
    assert_allclose(fit.location, 3.0, atol=0.03)


def test_separable_mle_dask_bad_input(rng):
    X = rng.standard_normal((30, 2, 3))
    X[4, 1, 1] = np.inf
    with pytest.raises(ValueError, match="NaN or Inf"):
        kronkit.separable_mle(da.from_array(X, chunks=10))
    Xd = da.from_array(rng.standard_normal((30, 6)), chunks=10)
    with pytest.raises(ValueError, match="`shape`"):
        kronkit.separable_mle(Xd, shape=(4, 2))
    with pytest.raises(ValueError, match="unknown chunk sizes"):
        kronkit.separable_mle(Xd[Xd[:, 0] > 0], shape=(2, 3))
    with pytest.raises(TypeError, match="complex"):
        kronkit.separable_mle(Xd.astype(complex), shape=(2, 3))
    with pytest.raises(ValueError, match="too few"):
        kronkit.separable_mle(Xd[:2], shape=(1, 6))
    with pytest.raises(ValueError, match=r"shape \(N, p, q\)"):
        kronkit.separable_mle(da.zeros((3, 2, 2, 2), chunks=1))


# ---------------------------------------------------------------------------------------
# kpsvd_samples / kronecker_pca / KroneckerPCA on dask arrays
# ---------------------------------------------------------------------------------------
def dense_sample_cov(X, center=True):
    N = X.shape[0]
    E = X.reshape(N, -1) - (X.reshape(N, -1).mean(axis=0) if center else 0.0)
    return E.T @ E / N


@pytest.mark.parametrize(
    "shape, rank, kw",
    [((3, 4), 2, {}), ((4, 3), 3, {"structure": "psd"}), ((3, 3), 2, {"center": False}),
     ((8, 7), 2, {}), ((5, 6), 1, {"method": "randomized", "structure": "psd"})],
)
def test_kpsvd_samples_against_dense_kpsvd(scheduler, rng, shape, rank, kw):
    """Same terms as the NumPy path and as the dense KPSVD of the formed covariance."""
    p, q = shape
    A, B = factors(rng, (p, q))
    X = simulate(rng, 150, A, B, mean=0.5)
    got = kronkit.kpsvd_samples(da.from_array(X, chunks=(40, p, q)), rank, random_state=1, **kw)
    ref = kronkit.kpsvd_samples(X, rank, random_state=1, **kw)
    M = dense_sample_cov(X, kw.get("center", True))
    dense = kronkit.kpsvd(M, ((p, p), (q, q)), rank)
    for other in (ref, dense):
        assert_allclose(got.s, other.s, rtol=RTOL)
        assert_allclose(np.einsum("kab,kcd->kacbd", got.A, got.B),
                        np.einsum("kab,kcd->kacbd", other.A, other.B), atol=RTOL)
    assert_allclose(got.norm, np.linalg.norm(M), rtol=RTOL)
    assert_allclose(got.residual, dense.residual, rtol=SQRT_EPS_RTOL, atol=ITER_RTOL * dense.norm)
    assert got.method == ref.method


def test_kpsvd_samples_pass_count(rng):
    """Each block product with R(M) is one pass; centring adds one pass up front."""
    X = rng.standard_normal((90, 8, 8))
    calls = []

    def tag(block):
        if block.shape[0]:
            calls.append(block.shape[0])
        return block

    Xd = da.from_array(X, chunks=(30, 8, 8)).map_blocks(tag, dtype=X.dtype)
    with dask.config.set(scheduler="synchronous"):
        from kronkit._kpsvd.operators import ChunkedSamplesR

        op = ChunkedSamplesR(Xd, X.mean(axis=0), None)
        V = rng.standard_normal((64, 5))
        R = op.matmat(V)
    assert len(calls) == 3 and op.passes == 1
    E = X.reshape(90, 64) - X.reshape(90, 64).mean(axis=0)
    Rd = kronkit.rearrange(E.T @ E / 90, ((8, 8), (8, 8)))
    assert_allclose(R, Rd @ V, rtol=RTOL)
    assert_allclose(op.rmatmat(V + 1j * V), Rd.T @ (V + 1j * V), rtol=RTOL)


def test_kpsvd_samples_large_p_has_no_norm(rng):
    X = rng.standard_normal((40, 40, 30))
    got = kronkit.kpsvd_samples(da.from_array(X, chunks=(15, 40, 30)), 1, structure="psd")
    ref = kronkit.kpsvd_samples(X, 1, structure="psd")
    assert got.norm is None and got.residual is None and got.rel_error is None
    assert_allclose(got.s, ref.s, rtol=RTOL)


def test_kpsvd_samples_dask_bad_input(rng):
    X = rng.standard_normal((20, 2, 3))
    X[3, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN or Inf"):
        kronkit.kpsvd_samples(da.from_array(X, chunks=5), 1)
    with pytest.raises(ValueError, match="NaN or Inf"):
        kronkit.kpsvd_samples(da.from_array(X, chunks=5), 1, center=False)
    with pytest.raises(ValueError, match="nonnegative"):
        kronkit.kpsvd_samples(da.from_array(-np.abs(rng.standard_normal((9, 2, 2))), chunks=3),
                              1, center=False, structure="nonnegative")
    with pytest.raises(ValueError, match="3-D"):
        kronkit.kpsvd_samples(da.zeros((4, 6), chunks=2), 1)


def test_kronecker_pca_and_estimator(scheduler, rng):
    p, q = 3, 4
    A, B = factors(rng, (p, q))
    X = simulate(rng, 120, A, B, mean=-1.0)
    Xd = da.from_array(X, chunks=(35, p, q))
    got = kronkit.kronecker_pca(Xd, 2)
    ref = kronkit.kronecker_pca(X, 2)
    assert_allclose(got.singular_values, ref.singular_values, rtol=RTOL)
    assert_allclose(got.explained_energy, ref.explained_energy, rtol=RTOL)
    assert_allclose(got.total_energy, np.linalg.norm(dense_sample_cov(X)) ** 2, rtol=RTOL)
    assert_allclose(got.location, X.mean(axis=0), rtol=RTOL)
    assert_allclose(got.covariance.to_dense(), ref.covariance.to_dense(), atol=RTOL)
    est = kronkit.KroneckerPCA(2).fit(Xd)
    lazy = est.score_samples(Xd)
    assert isinstance(lazy, da.Array)
    st = pytest.importorskip("scipy.stats")
    dense = st.multivariate_normal(X.mean(axis=0).ravel(), got.covariance.to_dense())
    assert_allclose(lazy.compute(), dense.logpdf(X.reshape(120, -1)), rtol=RTOL)
    assert_allclose(est.score(Xd), dense.logpdf(X.reshape(120, -1)).mean(), rtol=RTOL)
    d2 = est.mahalanobis(Xd)  # squared, lazy
    assert isinstance(d2, da.Array)
    W = X.reshape(120, -1) - X.mean(axis=0).ravel()
    assert_allclose(d2.compute(), np.einsum("ij,ij->i", W, np.linalg.solve(
        got.covariance.to_dense(), W.T).T), rtol=RTOL)
