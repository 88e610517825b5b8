"""The three back ends — NumPy ``Kron`` (with ``kronkit.log_quad``), ``kronkit.jax`` (eager)
and ``kronkit.torch`` — fed the same edge cases give the same exception types or the same
values.

Truth is independent of kronkit: dense ``np.kron`` / ``np.linalg`` computations, and exact
determinants of matrices built from known eigenvalues. The contract (issue 9):

* a non-symmetric factor where symmetric positive definite is required
  (``assume="spd"``; ``KronNormal``'s scale for NumPy) -> ``NotPositiveDefiniteError``;
* NaN or Inf in a factor, in ``y``, ``mu`` or ``alpha`` -> ``ValueError`` naming it;
* a factor singular to working precision (LAPACK ``rcond <= eps``) -> ``SingularFactorError``
  from ``solve``, ``inv_quad``, ``log_quad`` and ``logdet``, except that an exact zero pivot
  makes ``logdet`` return ``-inf`` (``det = 0``);
* ``eps < rcond < sqrt(eps)`` -> one ``IllConditionedWarning`` (``factor``, ``rcond``), value
  as accurate as the conditioning allows;
* empty batches give empty results; a negative determinant or ``β <= 0`` -> ``DomainError``.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
from numpy.testing import assert_allclose

import kronkit
from helpers import ROUNDING
from kronkit import (
    DomainError,
    IllConditionedWarning,
    NotPositiveDefiniteError,
    SingularFactorError,
)

EPS = np.finfo(np.float64).eps


# ---------------------------------------------------------------------------------------
# One adapter per back end: solve, inv_quad, log_quad, logdet (and matvec) on NumPy input,
# NumPy output. ``spd=True`` asks for symmetric positive definite factors.
# ---------------------------------------------------------------------------------------
class NumpyBackend:
    name = "numpy"

    @staticmethod
    def _K(F, spd):
        if spd:  # the NumPy place that requires SPD factors
            kronkit.KronNormal(None, list(F))
        return kronkit.Kron(*F)

    def matvec(self, F, y):
        return kronkit.Kron(*F).matvec(y)

    def solve(self, F, y, spd=False):
        return self._K(F, spd).solve_rows(y)

    def inv_quad(self, F, y, spd=False):
        return np.asarray(self._K(F, spd).inv_quad(y))

    def log_quad(self, F, y, mu=None, alpha=1.0, spd=False):
        return np.asarray(kronkit.log_quad(self._K(F, spd), y, mu, alpha))

    def logdet(self, F, spd=False):
        return np.asarray(self._K(F, spd).logdet())


class JaxBackend:
    """Eager calls. ``assume="auto"`` is ``Kron``'s own choice (per factor, Cholesky where it
    is symmetric positive definite, LU otherwise); ``spd=True`` asks for "spd"."""

    name = "jax"

    def __init__(self):
        self.kj = pytest.importorskip("kronkit.jax")

    def _assume(self, F, spd):
        return "spd" if spd else "auto"

    def matvec(self, F, y):
        return np.asarray(self.kj.matvec(F, y))

    def solve(self, F, y, spd=False):
        return np.asarray(self.kj.solve(F, y, assume=self._assume(F, spd)))

    def inv_quad(self, F, y, spd=False):
        return np.asarray(self.kj.inv_quad(F, y, assume=self._assume(F, spd)))

    def log_quad(self, F, y, mu=None, alpha=1.0, spd=False):
        return np.asarray(self.kj.log_quad(F, y, mu, alpha, assume=self._assume(F, spd)))

    def logdet(self, F, spd=False):
        return np.asarray(self.kj.logdet(F, assume=self._assume(F, spd)))


class TorchBackend:
    name = "torch"

    def __init__(self):
        self.torch = pytest.importorskip("torch")
        self.kt = pytest.importorskip("kronkit.torch")

    def _t(self, x):
        return None if x is None else self.torch.as_tensor(np.asarray(x, dtype=np.float64))

    def _F(self, F):
        return [self._t(A) for A in F]

    def _a(self, spd):
        return "spd" if spd else "auto"

    def matvec(self, F, y):
        return self.kt.matvec(self._F(F), self._t(y)).numpy()

    def solve(self, F, y, spd=False):
        return self.kt.solve(self._F(F), self._t(y), assume=self._a(spd)).numpy()

    def inv_quad(self, F, y, spd=False):
        return self.kt.inv_quad(self._F(F), self._t(y), assume=self._a(spd)).numpy()

    def log_quad(self, F, y, mu=None, alpha=1.0, spd=False):
        return self.kt.log_quad(self._F(F), self._t(y), self._t(mu), alpha,
                                assume=self._a(spd)).numpy()

    def logdet(self, F, spd=False):
        return self.kt.logdet(self._F(F), assume=self._a(spd)).numpy()


@pytest.fixture(scope="module", params=["numpy", "jax", "torch"])
def backend(request):
    if request.param == "jax":
        jax = pytest.importorskip("jax")
        jax.config.update("jax_enable_x64", True)
        return JaxBackend()
    if request.param == "torch":
        return TorchBackend()
    return NumpyBackend()


# ---------------------------------------------------------------------------------------
# Problems and dense truth
# ---------------------------------------------------------------------------------------
def rotated(eigenvalues, seed=3):
    """``Q diag(λ) Qᵀ`` (symmetrised) for a fixed random orthogonal ``Q``: a symmetric matrix
    with known eigenvalues, so ``log det = Σ log λ`` up to κ·eps."""
    n = len(eigenvalues)
    Q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((n, n)))
    A = (Q * np.asarray(eigenvalues, dtype=float)) @ Q.T
    return (A + A.T) / 2


def dense(F):
    return functools.reduce(np.kron, F)


B2 = np.array([[2.0, 0.5], [0.5, 1.0]])  # a well-conditioned SPD partner factor
OPS = ["solve", "inv_quad", "log_quad", "logdet"]


def call(backend, op, F, y, **kw):
    if op == "logdet":
        return getattr(backend, op)(F, **kw)
    return getattr(backend, op)(F, y, **kw)


# ---------------------------------------------------------------------------------------
# 1. non-symmetric factor where SPD is required
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("op", OPS)
def test_non_symmetric_factor_with_spd_raises(backend, op):
    nonsym = np.array([[2.0, 1.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 1.0]])  # eigenvalues > 0
    y = np.ones(6)
    with pytest.raises(NotPositiveDefiniteError) as info:
        call(backend, op, [B2, nonsym], y, spd=True)
    assert info.value.factor == 1
    assert "symmetric" in str(info.value)


def test_non_symmetric_factor_general_matches_dense(backend):
    nonsym = np.array([[2.0, 1.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 1.0]])
    y = np.linspace(-1.0, 2.0, 6)
    S = dense([B2, nonsym])
    assert_allclose(backend.solve([B2, nonsym], y), np.linalg.solve(S, y), rtol=ROUNDING)
    assert_allclose(backend.logdet([B2, nonsym]), np.linalg.slogdet(S)[1], rtol=ROUNDING)


def test_one_assume_vocabulary():
    """kronkit.jax and kronkit.torch take the same ``assume`` values, default "auto", and reject
    anything else with the same message."""
    import inspect

    kj = pytest.importorskip("kronkit.jax")
    kt = pytest.importorskip("kronkit.torch")
    for name in ("solve", "inv_quad", "logdet", "log_quad"):
        for mod in (kj, kt):
            assert inspect.signature(getattr(mod, name)).parameters["assume"].default == "auto"
    messages = set()
    for mod in (kj, kt):
        for bad in ("symmetric", None):
            with pytest.raises(ValueError, match="`assume` must be one of") as info:
                mod.logdet([np.eye(2)], assume=bad)
            messages.add(str(info.value).replace(repr(bad), "BAD"))
    assert len(messages) == 1


@pytest.mark.parametrize("mod", ["kronkit.jax", "kronkit.torch"])
def test_assume_auto_per_factor(mod):
    """"auto" chooses per factor (Cholesky for the SPD one, LU for the other): the dense truth,
    as "general" gives; on SPD factors "auto", "general" and "spd" agree."""
    be = pytest.importorskip(mod)
    as_arr = (lambda x: x) if mod.endswith("jax") else pytest.importorskip("torch").as_tensor
    nonsym = np.array([[2.0, 1.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 1.0]])
    y = np.linspace(-1.0, 2.0, 6)
    for F, kinds in (([B2, nonsym], ("auto", "general")),
                     ([B2, rotated([1.0, 2.0, 3.0])], ("auto", "general", "spd"))):
        S = dense(F)
        z = np.linalg.solve(S, y)
        for assume in kinds:
            Ft, yt = [as_arr(A) for A in F], as_arr(y)
            assert_allclose(np.asarray(be.solve(Ft, yt, assume=assume)), z, rtol=ROUNDING)
            assert_allclose(np.asarray(be.log_quad(Ft, yt, assume=assume)), np.log(1 + y @ z),
                            rtol=ROUNDING)
            assert_allclose(np.asarray(be.logdet(Ft, assume=assume)), np.linalg.slogdet(S)[1],
                            rtol=ROUNDING)


# ---------------------------------------------------------------------------------------
# 2. NaN / Inf input
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("op", [*OPS, "matvec"])
def test_non_finite_factor_raises_naming_it(backend, op, bad):
    A = np.eye(3)
    A[1, 2] = bad
    with pytest.raises(ValueError, match=r"`factors\[1\]` contains NaN or Inf"):
        call(backend, op, [B2, A], np.ones(6))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
@pytest.mark.parametrize("op", ["solve", "inv_quad", "log_quad", "matvec"])
def test_non_finite_y_raises_naming_it(backend, op, bad):
    y = np.ones((2, 6))
    y[1, 4] = bad
    with pytest.raises(ValueError, match=r"`y` contains NaN or Inf"):
        call(backend, op, [B2, np.eye(3)], y)


@pytest.mark.parametrize("name", ["mu", "alpha"])
def test_non_finite_mu_or_alpha_raises(backend, name):
    kw = {"mu": np.r_[np.nan, np.zeros(5)]} if name == "mu" else {"alpha": np.inf}
    with pytest.raises(ValueError, match=rf"`{name}`"):
        backend.log_quad([B2, np.eye(3)], np.ones(6), **kw)


# ---------------------------------------------------------------------------------------
# 3. singular, numerically singular and ill-conditioned factors
# ---------------------------------------------------------------------------------------
EXACT = {  # an exact zero pivot in LU with partial pivoting (exact arithmetic throughout)
    "zeros": np.zeros((2, 2)),
    "rank-one symmetric": np.array([[1.0, 2.0], [2.0, 4.0]]),
    "zero column": np.array([[1.0, 0.0], [3.0, 0.0]]),
}
NUMERICAL = {  # rcond far below eps, no exact zero pivot
    "spd, 1e-20": np.diag([1.0, 1e-20, 2.0]),
    "triangular, 1e-20": np.array([[1.0, 1.0, 0.0], [0.0, 1e-20, 0.0], [0.0, 0.0, 1.0]]),
}


@pytest.mark.parametrize("name", list(EXACT))
@pytest.mark.parametrize("op", ["solve", "inv_quad", "log_quad"])
def test_exactly_singular_factor_raises(backend, op, name):
    with pytest.raises(SingularFactorError) as info:
        call(backend, op, [B2, EXACT[name]], np.ones(4))
    assert info.value.factor == 1 and info.value.rcond == 0.0


@pytest.mark.parametrize("name", list(EXACT))
def test_exactly_singular_factor_logdet_is_minus_inf(backend, name):
    # det S = det(B2)^2 · det(A)^2 = 0 exactly (NumPy: slogdet of the dense product agrees)
    assert np.linalg.slogdet(dense([B2, EXACT[name]]))[1] == -np.inf
    assert backend.logdet([B2, EXACT[name]]) == -np.inf
    assert backend.logdet([EXACT[name], B2]) == -np.inf


@pytest.mark.parametrize("name", list(NUMERICAL))
@pytest.mark.parametrize("op", OPS)
def test_numerically_singular_factor_raises(backend, op, name):
    A = NUMERICAL[name]
    assert 1.0 / np.linalg.cond(A, 1) < EPS  # truth: singular to working precision
    with pytest.raises(SingularFactorError) as info:
        call(backend, op, [A, B2], np.ones(6))
    assert info.value.factor == 0 and 0.0 < info.value.rcond <= EPS


def test_issue_reproducer_logdet_raises(backend):
    # issue 9: Kron(F, I).logdet() returned -120.12 (exact -120.74) where solve raises
    F = rotated([1.0, 1e-9, 1e-20])
    with pytest.raises(SingularFactorError):
        backend.logdet([F, np.eye(2)])


ILL_EIG = [1.0, 1e-10, 3.0]  # rcond ≈ 3e-11: inside (eps, sqrt(eps))


@pytest.mark.parametrize("op", OPS)
def test_ill_conditioned_factor_warns_and_stays_accurate(backend, op):
    A = rotated(ILL_EIG)
    F = [B2, A]
    y = np.linspace(-1.0, 1.0, 6)
    with pytest.warns(IllConditionedWarning) as record:
        out = call(backend, op, F, y)
    w = [r.message for r in record if isinstance(r.message, IllConditionedWarning)]
    assert len(w) == 1 and w[0].factor == 1
    assert EPS < w[0].rcond < np.sqrt(EPS)
    assert w[0].rcond == pytest.approx(1.0 / np.linalg.cond(A, 1), rel=0.5)
    S = dense(F)
    if op == "logdet":  # exact: 3·log det B2 + 2·Σ log λ (κ·eps ≈ 1e-6 relative in det)
        truth = 3 * np.log(np.linalg.det(B2)) + 2 * np.sum(np.log(ILL_EIG))
        assert_allclose(out, truth, rtol=0, atol=1e-5)
    else:
        z = np.linalg.solve(S, y)
        truth = {"solve": z, "inv_quad": y @ z, "log_quad": np.log1p(y @ z)}[op]
        assert_allclose(out, truth, rtol=1e-4)


def test_well_conditioned_factor_does_not_warn(backend):
    A = rotated([1.0, 1e-6, 3.0])  # rcond ≈ 3e-7 > sqrt(eps): no warning (errors are errors)
    for op in OPS:
        call(backend, op, [B2, A], np.ones(6))


# ---------------------------------------------------------------------------------------
# 4. empty batches, undefined points
# ---------------------------------------------------------------------------------------
def test_empty_batch(backend):
    F = [B2, rotated([1.0, 2.0, 3.0])]
    y = np.zeros((0, 6))
    assert backend.solve(F, y).shape == (0, 6)
    assert backend.matvec(F, y).shape == (0, 6)
    assert backend.inv_quad(F, y).shape == (0,)
    assert backend.log_quad(F, y).shape == (0,)


def test_undefined_points_raise_domain_error(backend):
    neg = np.diag([-1.0, 2.0, 3.0])  # det(neg ⊗ B2) = det(neg)^2 det(B2)^3 > 0
    assert np.isfinite(backend.logdet([neg, B2]))
    with pytest.raises(DomainError):  # det(neg ⊗ [[1]]) < 0
        backend.logdet([neg, np.eye(1)])
    with pytest.raises(DomainError):  # β = α + q = −10 + 1 < 0
        backend.log_quad([np.eye(2), np.eye(1)], np.array([1.0, 0.0]), alpha=-10.0)
