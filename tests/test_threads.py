"""One object shared by many threads gives exactly the results of serial calls (issue 9, item 1).

Before the fix, ``Kron.solve`` with a non-symmetric (LU) factor aborted the process under
threads: SciPy's ``getrs`` wrapper shifts the pivot array in place around the LAPACK call, and
every thread was handed the same cached array. Each test below builds the shared object *fresh*
(nothing factorised yet), so the threads also race to build the lazy caches.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import kronkit
from helpers import factors as factor_catalogue
from helpers import general, spd
from kronkit import _factor
from kronkit._kron import factorization, factorizations

N_THREADS = 8
N_TASKS = 24


def _factors(kind: str, rng: np.random.Generator):
    # "lu": non-symmetric factors whose products keep q = wᵀK⁻¹w > 0 (the catalogue's near-spd)
    return factor_catalogue(rng, (12, 9), "near-spd" if kind == "lu" else "spd")


def _threaded(fn, items):
    with ThreadPoolExecutor(N_THREADS) as ex:
        return list(ex.map(fn, items))


def _assert_identical(got, want):
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        if isinstance(g, tuple):
            _assert_identical(list(g), list(w))
        elif isinstance(g, kronkit.Kron):
            _assert_identical(list(g.factors), list(w.factors))
        else:
            assert np.array_equal(np.asarray(g), np.asarray(w))


@pytest.mark.parametrize("kind", ["lu", "cholesky"])
@pytest.mark.parametrize(
    "op",
    [
        "solve",
        "inv_quad",
        "logdet",
        "slogdet",
        "inv",
        "log_quad",
        "log_quad_grad",
        "log_quad_grad_batch",
        "inv_quad_grad",
        "log_quad_hvp",
    ],
)
def test_shared_kron_matches_serial(kind, op, rng, one_blas_thread):
    factors = _factors(kind, rng)
    P = 12 * 9
    Y = rng.standard_normal((N_TASKS, P))
    dirs = (np.eye(12), None)

    def call(K, y):
        if op == "solve":
            return K.solve(y)
        if op == "inv_quad":
            return K.inv_quad(y)
        if op == "logdet":
            return K.logdet()
        if op == "slogdet":
            return K.slogdet()
        if op == "inv":
            return K.inv()
        if op == "log_quad":
            return kronkit.log_quad(K, y, alpha=2.0)
        if op == "log_quad_grad":
            return tuple(kronkit.log_quad_grad(K, y, alpha=2.0))
        if op == "log_quad_grad_batch":  # the batched GEMM path (cached inverses)
            return tuple(kronkit.log_quad_grad(K, np.stack([y] * 5), alpha=2.0))
        if op == "inv_quad_grad":
            return tuple(kronkit.inv_quad_grad(K, y))
        h = kronkit.log_quad_hvp(K, y, dirs, alpha=2.0)
        return (h.value, h.factors, h.y)

    assert kronkit.Kron(*factors).factorization_kinds == (kind, kind)
    serial = [call(kronkit.Kron(*factors), y) for y in Y]  # a fresh object per call
    K = kronkit.Kron(*factors)  # shared, nothing factorised yet
    got = _threaded(lambda y: call(K, y), Y)
    _assert_identical(got, serial)


def test_lu_solve_repeated_under_threads(rng):
    """The issue's reproducer, a few times over (it aborted the process every time)."""
    A = rng.standard_normal((20, 20)) + 20 * np.eye(20)
    Y = rng.standard_normal((64, 300))
    serial = kronkit.Kron(A, 2 * np.eye(15)).solve_rows(Y)
    for _ in range(3):
        K = kronkit.Kron(A, 2 * np.eye(15))
        got = np.stack(_threaded(K.solve, Y))
        assert np.array_equal(got, serial)
    # the cached pivots are read-only and unchanged
    f = factorization(K, 0)
    assert not f.piv.flags.writeable and not f.factor.flags.writeable
    np.testing.assert_array_equal(f.piv, _factor.Factorization(K.factors[0], 0).piv)


def test_caches_are_built_once(monkeypatch, rng, one_blas_thread):
    """Racing threads build each factorisation and each cached inverse exactly once."""
    built = []
    orig = _factor.Factorization.__init__

    def slow_init(self, A, index, *args, **kwargs):
        built.append(index)
        threading.Event().wait(0.01)  # widen the window for a race
        orig(self, A, index, *args, **kwargs)

    monkeypatch.setattr(_factor.Factorization, "__init__", slow_init)
    K = kronkit.Kron(spd(rng, 5), general(rng, 4))
    barrier = threading.Barrier(N_THREADS)

    def work(_):
        barrier.wait()
        facs = factorizations(K, "test")
        return [f.inverse_view() for f in facs] + [facs[0].tri_inverse()], facs

    out = _threaded(work, range(N_THREADS))
    assert sorted(built) == [0, 1]
    assert out[0][1][0].kind == "cholesky"
    for invs, facs in out:
        assert all(f is g for f, g in zip(facs, out[0][1], strict=True))
        assert all(a is b for a, b in zip(invs, out[0][0], strict=True))


# ---------------------------------------------------------------------------------------
# Objects built on Kron: distributions and fitted estimators
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("dist", ["normal", "t"])
def test_shared_distribution_matches_serial(dist, rng, one_blas_thread):
    A, B = spd(rng, 6), spd(rng, 5)
    loc = rng.standard_normal(30)
    Y = rng.standard_normal((N_TASKS, 3, 30))

    def make():
        if dist == "normal":
            return kronkit.KronNormal(loc, [A, B])
        return kronkit.KronT(loc, [A, B], 4.5)

    def call(D, y):
        g = D.logpdf_grad(y)
        return (D.logpdf(y), D.mahalanobis(y), tuple(g))

    serial = [call(make(), y) for y in Y]
    D = make()
    _assert_identical(_threaded(lambda y: call(D, y), Y), serial)


def _matrix_samples(rng, n=40, p=5, q=4):
    A, B = spd(rng, p), spd(rng, q)
    La, Lb = np.linalg.cholesky(A), np.linalg.cholesky(B)
    return La @ rng.standard_normal((n, p, q)) @ Lb.T


@pytest.mark.parametrize("distribution", ["normal", "t"])
def test_shared_separable_covariance_matches_serial(distribution, rng, one_blas_thread):
    pytest.importorskip("sklearn")
    X = _matrix_samples(rng)
    Xs = [_matrix_samples(rng, n=6) for _ in range(N_TASKS)]
    kw = dict(distribution=distribution)
    if distribution == "t":
        kw["df"] = 5.0

    def call(est, x):
        return est.score(x), est.mahalanobis(x), est.score_samples(x)

    ref = kronkit.SeparableCovariance(**kw).fit(X)  # deterministic: the same fit twice
    serial = [call(ref, x) for x in Xs]
    est = kronkit.SeparableCovariance(**kw).fit(X)
    _assert_identical(_threaded(lambda x: call(est, x), Xs), serial)


@pytest.mark.parametrize("n_terms", [1, 2])
def test_shared_kronecker_pca_matches_serial(n_terms, rng, one_blas_thread):
    pytest.importorskip("sklearn")
    X = _matrix_samples(rng, n=60)
    Xs = [_matrix_samples(rng, n=6) for _ in range(N_TASKS)]

    def call(est, x):
        return est.score(x), est.score_samples(x)

    ref = kronkit.KroneckerPCA(n_terms).fit(X)
    serial = [call(ref, x) for x in Xs]
    est = kronkit.KroneckerPCA(n_terms).fit(X)
    _assert_identical(_threaded(lambda x: call(est, x), Xs), serial)
