"""dask arrays of observations: same results as NumPy, on the synchronous scheduler and on a
real dask.distributed LocalCluster with worker processes."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import RTOL, spd
from numpy.testing import assert_allclose

import kronkit

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
    A, B = spd(rng, 3), spd(rng, 4)
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
        assert_allclose(g, r, rtol=RTOL, atol=1e-14)
    assert_allclose(got.mu, ref.mu, rtol=RTOL, atol=1e-14)
    assert_allclose(got.alpha, ref.alpha, rtol=RTOL)
    assert isinstance(got.y, da.Array)
    assert_allclose(got.y.compute(), ref.y, rtol=RTOL, atol=1e-14)


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
