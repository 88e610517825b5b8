import contextlib

import numpy as np
import pytest
from threadpoolctl import threadpool_limits


@pytest.fixture
def rng():
    """A seeded generator: every test draws the same numbers on every run."""
    return np.random.default_rng(20261124)


@contextlib.contextmanager
def _one_blas_thread():
    """One BLAS thread: on tiny problems extra OpenBLAS threads only add synchronisation (seconds
    on a busy machine), and inside XLA's thread pool they oversubscribe the cores. For speed
    only: nothing tested depends on it (the thread-safety tests use Python threads)."""
    with threadpool_limits(1, user_api="blas"):
        yield


@pytest.fixture
def one_blas_thread():
    """One BLAS thread for one test."""
    with _one_blas_thread():
        yield


@pytest.fixture(scope="module")
def one_blas_thread_module():
    """One BLAS thread for a whole module (``pytestmark = usefixtures(...)``)."""
    with _one_blas_thread():
        yield


@pytest.fixture
def jax_x64():
    """JAX with 64-bit floats for one test (skipped where JAX is not installed)."""
    jax = pytest.importorskip("jax")
    old = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    yield jax
    jax.config.update("jax_enable_x64", old)
