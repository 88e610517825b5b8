"""Incomplete grids (issue 13, items 1, 2 and 6): ``S.restrict(observed)`` (Restricted) and
``S + GridDiag(d)`` (KronPlusDiag) against independent truth.

Truth is the dense observed block ``D = (np.kron(...) + np.diag(d))[np.ix_(o, o)]`` with
``np.linalg`` (solve, slogdet, inv), scipy.stats for the Gaussian density, and for gradients
the dense chain rule ``∂f/∂F_tk[i, j] = Σ_ab G_ab ∂S_ab/∂F_tk[i, j]`` with ``G = ∂f/∂S`` the
P×P matrix derivative of the dense expression (``embed(D⁻¹)`` for log det, ``−x xᵀ`` with
``x = embed(D⁻¹w)`` for the quadratic form), itself checked against JAX autodiff of the dense
expression. Parents: Kron (d = 2, 3) and every supported SumOfKron form (tests/sum_forms.py).
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import scipy.stats
from numpy.testing import assert_allclose

from helpers import (
    CHAIN_RTOL,
    FD_RTOL,
    RTOL,
    assert_close_cond,
    central_diff,
    conditioned,
    dense_chain,
    dense_kron,
    factor,
)
from kronkit import (
    ConvergenceWarning,
    DomainError,
    GridDiag,
    Kron,
    KronPlusDiag,
    NotPositiveDefiniteError,
    Restricted,
    SumOfKron,
    UnsupportedSumError,
    _cell_ops,
    inv_quad_grad,
    log_quad,
    log_quad_grad,
    log_quad_hvp,
    logdet_grad,
)
from sum_forms import FORMS, sum_forms

pytestmark = pytest.mark.usefixtures("one_blas_thread_module")

DIMS = {2: (7, 6), 3: (4, 3, 5)}
FRACTIONS = (0.001, 0.01, 0.1, 0.5)  # fraction of the cells missing (at least one)
PARENTS = ("kron", *FORMS)


# ---------------------------------------------------------------------------------------
# builders and the dense oracle
# ---------------------------------------------------------------------------------------
def as_matrices(terms, dims):
    """The sum_forms encoding (2-D, 1-D diagonal, scalar·I) as square matrices."""
    return [[F if np.ndim(F) == 2 else np.diag(F) if np.ndim(F) == 1 else F * np.eye(n)
             for F, n in zip(term, dims, strict=True)] for term in terms]


def make_parent(rng, name, dims, cond=None):
    """A Kron (``"kron"``) or a SumOfKron of one of the supported forms."""
    if name == "kron":
        return Kron(*[conditioned(rng, n, cond, "spd") if cond else factor(rng, n)
                      for n in dims])
    terms = as_matrices(sum_forms(rng, dims, cond)[name], dims)
    return SumOfKron([Kron(*t) for t in terms])


def term_factors(S):
    return [list(S.factors)] if isinstance(S, Kron) else [list(K.factors) for K in S.terms]


def random_mask(rng, dims, frac):
    """``observed``: exactly max(1, round(frac·P)) cells missing, at random."""
    P = math.prod(dims)
    obs = np.ones(P, dtype=bool)
    obs[rng.choice(P, max(1, round(frac * P)), replace=False)] = False
    return obs.reshape(dims)




class Dense:
    """The dense observed block of ``Σ_t ⊗_k F_tk + diag(d)`` and its derivatives."""

    def __init__(self, S, observed=None, d=None):
        self.terms = term_factors(S)
        full = sum(dense_kron(*t) for t in self.terms)
        self.P = full.shape[0]
        if d is not None:
            full = full + np.diag(np.ravel(d))
        self.o = (np.arange(self.P) if observed is None
                  else np.flatnonzero(np.ravel(observed)))
        self.M = full[np.ix_(self.o, self.o)]
        self.inv = np.linalg.inv(self.M)
        self.kappa = float(np.linalg.cond(self.M))

    def embed(self, G):
        out = np.zeros((self.P, self.P))
        out[np.ix_(self.o, self.o)] = G
        return out

    def grads(self, G_small):
        """``∂f/∂F_tk`` nested [t][k] for ``G_small = ∂f/∂D`` (n_obs × n_obs)."""
        G = self.embed(G_small)
        return [dense_chain(G, t) for t in self.terms]

    def logdet_grads(self):
        return self.grads(self.inv.T)

    def log_quad(self, Y, mu=None, alpha=1.0):
        """Per row: λ, ∂λ/∂F_tk, ∂λ/∂y, ∂λ/∂α (``alpha=None``: the quadratic form q)."""
        W = np.atleast_2d(Y) - (0.0 if mu is None else mu)
        out = []
        for w in W:
            x = self.inv @ w
            q = w @ x
            beta = 1.0 if alpha is None else alpha + q
            val = q if alpha is None else np.log(beta)
            out.append((val, self.grads(-np.outer(x, x) / beta), 2 * x / beta, 1.0 / beta))
        return out


def nested(R, factors):
    return [list(factors)] if R.flat_factors else [list(row) for row in factors]


def close(got, want, rtol=RTOL, what=""):
    want = np.asarray(want, dtype=float)
    scale = float(np.max(np.abs(want))) if want.size else 1.0
    assert_allclose(np.asarray(got, dtype=float), want, rtol=rtol, atol=rtol * scale,
                    err_msg=what)


def close_grads(got, want, rtol=CHAIN_RTOL, what=""):
    assert len(got) == len(want), what
    for t, (row, wrow) in enumerate(zip(got, want, strict=True)):
        assert len(row) == len(wrow)
        for k, (g, w) in enumerate(zip(row, wrow, strict=True)):
            close(g, w, rtol, f"{what} term {t} factor {k}")


# ---------------------------------------------------------------------------------------
# values: every parent, d = 2 and 3, masks from 0.1% to 50% missing
# ---------------------------------------------------------------------------------------
def check_values(rng, R, D):
    """Every value method of ``R`` against the dense observed block ``D``."""
    n = D.M.shape[0]
    assert R.shape == (n, n)
    close(R.to_dense(), D.M, what="to_dense")
    close(np.asarray(R), D.M, what="__array__")
    close(R.diag(), np.diagonal(D.M), what="diag")
    close(R.trace(), np.trace(D.M), what="trace")
    B = rng.standard_normal((n, 3))
    close(R @ B, D.M @ B, what="@")
    close(R @ B[:, 0], D.M @ B[:, 0], what="@ 1-D")
    close(R.matvec(B.T), B.T @ D.M, what="matvec")
    X = np.linalg.solve(D.M, B)
    assert_close_cond(R.solve(B), X, D.kappa, what="solve columns")
    assert_close_cond(R.solve(B[:, 0]), X[:, 0], D.kappa, what="solve 1-D")
    Y = rng.standard_normal((2, 3, n))
    assert_close_cond(R.solve_rows(Y), np.linalg.solve(D.M, Y.reshape(-1, n).T).T.reshape(Y.shape),
                      D.kappa, what="solve_rows")
    q = np.einsum("ij,ij->i", Y.reshape(-1, n), np.linalg.solve(D.M, Y.reshape(-1, n).T).T)
    assert_close_cond(R.inv_quad(Y), q.reshape(2, 3), D.kappa, what="inv_quad batch")
    close(R.inv_quad(Y[0, 0]), q[0], what="inv_quad 1-D")
    assert isinstance(R.inv_quad(Y[0, 0]), float)
    sign, ld = np.linalg.slogdet(D.M)
    assert sign == 1.0 and R.is_positive_definite
    close(R.logdet(), ld, what="logdet")
    assert R.slogdet()[0] == 1.0
    close(R.slogdet()[1], ld, what="slogdet")
    mean = rng.standard_normal(n)
    want = scipy.stats.multivariate_normal(mean, D.M).logpdf(Y[0])
    close(R.logpdf(Y[0], mean), want, what="logpdf")
    close(R.inverse_trace(), np.trace(D.inv), what="inverse_trace")
    full = rng.standard_normal(R.dims)
    assert_allclose(R.select(full), full.ravel()[D.o], rtol=0)
    emb = R.embed(R.select(full), fill=np.nan)
    assert_allclose(emb[D.o], full.ravel()[D.o], rtol=0)
    assert np.all(np.isnan(np.delete(emb, D.o)))


@pytest.mark.parametrize("frac", FRACTIONS)
@pytest.mark.parametrize("d", [2, 3])
@pytest.mark.parametrize("parent", PARENTS)
def test_restricted_values_match_dense(rng, parent, d, frac):
    dims = DIMS[d]
    S = make_parent(rng, parent, dims)
    obs = random_mask(rng, dims, frac)
    R = S.restrict(obs)
    assert isinstance(R, Restricted) and R.parent is S
    assert R.route == "capacitance" and R.n_cells == int(np.count_nonzero(~obs))
    assert R.dims == dims and R.terms == (S.terms if isinstance(S, SumOfKron) else (S,))
    check_values(rng, R, Dense(S, obs))
    assert_allclose(S.restrict(obs.ravel()).logdet(), R.logdet(), rtol=0)  # flat mask


def check_grads(rng, R, D, N=3):
    """log_quad_grad (reduce None/sum/mean, μ shared and per row), inv_quad_grad, logdet_grad
    and logdet_grads_trace against the dense chain rule."""
    n = D.M.shape[0]
    Y = rng.standard_normal((N, n))
    mu = rng.standard_normal(n)
    alpha = 0.7
    per = D.log_quad(Y, mu, alpha)
    for reduce in (None, "sum", "mean"):
        g = log_quad_grad(R, Y, mu, alpha, reduce=reduce)
        agg = {None: lambda xs: np.stack(xs), "sum": lambda xs: np.sum(xs, 0),
               "mean": lambda xs: np.mean(xs, 0)}[reduce]
        close(g.value, agg([p[0] for p in per]), what=f"value {reduce}")
        want = [[agg([p[1][t][k] for p in per]) for k in range(len(D.terms[t]))]
                for t in range(len(D.terms))]
        close_grads(nested(R, g.factors), want, what=f"log_quad_grad {reduce}")
        gy = np.stack([p[2] for p in per])
        close(g.y, {None: gy, "sum": gy, "mean": gy / N}[reduce], CHAIN_RTOL, "y")
        close(g.mu, {None: -gy, "sum": -gy.sum(0), "mean": -gy.sum(0) / N}[reduce],
              CHAIN_RTOL, "mu")
        close(g.alpha, agg([p[3] for p in per]), CHAIN_RTOL, "alpha")
    one = log_quad_grad(R, Y[0], mu, alpha)  # a single y
    close(one.value, per[0][0])
    close_grads(nested(R, one.factors), per[0][1], what="single y")
    close(one.y, per[0][2], CHAIN_RTOL)
    close(log_quad(R, Y, mu, alpha), [p[0] for p in per], what="log_quad")
    mus = rng.standard_normal((N, n))  # μ per row: ∂/∂μ per row
    g = log_quad_grad(R, Y, mus, alpha)
    per_mu = D.log_quad(Y, mus, alpha)
    close(g.mu, -np.stack([p[2] for p in per_mu]), CHAIN_RTOL, "mu per row")
    gi = inv_quad_grad(R, Y)
    pq = D.log_quad(Y, None, None)
    close(gi.value, sum(p[0] for p in pq), what="inv_quad_grad value")
    close_grads(nested(R, gi.factors),
                [[sum(p[1][t][k] for p in pq) for k in range(len(D.terms[t]))]
                 for t in range(len(D.terms))], what="inv_quad_grad")
    close(gi.y, np.stack([p[2] for p in pq]), CHAIN_RTOL, "inv_quad_grad y")
    check_logdet_grads(R, D)


def check_logdet_grads(R, D):
    want = D.logdet_grads()
    close_grads(nested(R, logdet_grad(R)), want, what="logdet_grad")
    G, tr = R.logdet_grads_trace(scale=0.5)
    close_grads(G, [[0.5 * g for g in row] for row in want], what="logdet_grads_trace")
    close(tr, np.trace(D.inv), what="trace of the inverse")
    close_grads(R.logdet_grads(), want, what="logdet_grads")


@pytest.mark.parametrize("frac", FRACTIONS)
@pytest.mark.parametrize("d", [2, 3])
@pytest.mark.parametrize("parent", PARENTS)
def test_restricted_gradients_match_dense(rng, parent, d, frac):
    dims = DIMS[d]
    S = make_parent(rng, parent, dims)
    obs = random_mask(rng, dims, frac)
    check_grads(rng, S.restrict(obs), Dense(S, obs))


def test_empty_batches(rng):
    S = make_parent(rng, "a", DIMS[2])
    R = S.restrict(random_mask(rng, DIMS[2], 0.1))
    n = R.shape[0]
    Y0 = np.zeros((0, n))
    assert log_quad(R, Y0).shape == (0,)
    g = log_quad_grad(R, Y0, reduce=None)
    assert g.value.shape == (0,) and g.y.shape == (0, n)
    assert all(f.shape == (0, m, m) for row in g.factors for f, m in zip(row, R.dims, strict=True))
    g = log_quad_grad(R, Y0, reduce="sum")
    assert g.value == 0.0 and all(np.all(f == 0) for row in g.factors for f in row)
    with pytest.raises(ValueError, match="reduce='mean'"):
        log_quad_grad(R, Y0, reduce="mean")
    assert inv_quad_grad(R, Y0).value == 0.0


@pytest.mark.parametrize("d", [2, 3])
def test_empty_batches_of_methods(rng, d):
    S = make_parent(rng, "kron", DIMS[d])
    R = S.restrict(random_mask(rng, DIMS[d], 0.1))
    n = R.shape[0]
    assert R.inv_quad(np.zeros((0, n))).shape == (0,)
    assert R.solve_rows(np.zeros((0, n))).shape == (0, n)
    assert R.solve(np.zeros((n, 0))).shape == (n, 0)


def _oracle_case(rng, d):
    """K⊗…⊗K + s²I plus a per-cell diagonal (three corrections, one to zero), restricted."""
    dims = DIMS[d]
    S = make_parent(rng, "a", dims)
    dvec = np.full(dims, 0.2)
    dvec.flat[[1, 5, 9]] = [0.05, 1.0, 0.0]
    obs = random_mask(rng, dims, 0.1)
    R = (S + GridDiag(dvec)).restrict(obs)
    assert R.route == "capacitance"
    return S, dvec, obs, R


def test_gradients_match_jax_of_the_dense_block(rng, jax_x64):
    """The chain-rule oracle above, and the operators, against jax.grad of the dense block
    (log_quad summed over a batch, and log det), d = 3."""
    jnp = jax_x64.numpy
    S, dvec, obs, R = _oracle_case(rng, 3)
    o = np.flatnonzero(obs)
    facs = [[jnp.asarray(F) for F in t] for t in term_factors(S)]

    def block(fs):
        full = sum(functools.reduce(jnp.kron, t) for t in fs) + jnp.diag(dvec.ravel())
        return full[np.ix_(o, o)]

    def lam(fs, y, m, a):
        w = y - m
        return jnp.sum(jnp.log(a + jnp.einsum("ij,ij->i", w, jnp.linalg.solve(block(fs), w.T).T)))

    Y = rng.standard_normal((3, o.size))
    mu = rng.standard_normal(o.size)
    jit, grad = jax_x64.jit, jax_x64.grad  # jit: one compile instead of op-by-op dispatch
    gf, gy, gmu, ga = jit(grad(lam, argnums=(0, 1, 2, 3)))(facs, Y, mu, 0.7)
    gl = jit(grad(lambda fs: jnp.linalg.slogdet(block(fs))[1]))(facs)
    g = log_quad_grad(R, Y, mu, 0.7)
    close(g.value, lam(facs, Y, mu, 0.7))
    close_grads(g.factors, gf, what="jax log_quad")
    close(g.y, gy, CHAIN_RTOL)
    close(g.mu, gmu, CHAIN_RTOL)
    close(g.alpha, ga, CHAIN_RTOL)
    close_grads(logdet_grad(R), gl, what="jax logdet")
    D = Dense(S, obs, dvec)
    close_grads(D.logdet_grads(), gl, what="chain-rule oracle")


def test_gradients_match_finite_differences_of_the_dense_block(rng):
    """d = 2: the operators' gradients against central differences of the dense block."""
    S, dvec, obs, R = _oracle_case(rng, 2)
    o = np.flatnonzero(obs)
    terms = term_factors(S)
    y = rng.standard_normal(o.size)

    def block(t, k, F):
        fs = [list(row) for row in terms]
        fs[t][k] = F
        full = sum(dense_kron(*row) for row in fs) + np.diag(dvec.ravel())
        return full[np.ix_(o, o)]

    g = log_quad_grad(R, y, alpha=0.7)
    gl = logdet_grad(R)
    for t, row in enumerate(terms):
        for k, F in enumerate(row):
            def lq(X, t=t, k=k):
                return np.log(0.7 + y @ np.linalg.solve(block(t, k, X), y))

            def ld(X, t=t, k=k):
                return np.linalg.slogdet(block(t, k, X))[1]

            close(g.factors[t][k], central_diff(lq, F), FD_RTOL, f"log_quad term {t} factor {k}")
            close(gl[t][k], central_diff(ld, F), FD_RTOL, f"logdet term {t} factor {k}")


@pytest.mark.parametrize("case", ["sum restricted", "kron plus diag"])
def test_one_axis(rng, case):
    A = factor(rng, 6)
    obs = np.array([1, 0, 1, 1, 0, 1], dtype=bool)
    if case == "sum restricted":
        S = Kron(A) + 0.3 * Kron(np.eye(6))
        R, D = S.restrict(obs), Dense(S, obs)
    else:
        S, dvec = Kron(A), np.array([0.5, 1.0, 0.5, 0.5, 0.0, 0.5])  # base A + 0.5·I
        R, D = S + GridDiag(dvec), Dense(S, None, dvec)
    close(R.logdet(), np.linalg.slogdet(D.M)[1])
    check_logdet_grads(R, D)


def test_one_axis_kron_restricted(rng):
    S = Kron(factor(rng, 6))
    obs = np.array([1, 0, 1, 1, 0, 1], dtype=bool)
    R, D = S.restrict(obs), Dense(S, obs)
    check_values(rng, R, D)
    check_grads(rng, R, D)


# ---------------------------------------------------------------------------------------
# masks with whole rows / columns / slabs missing; a larger grid with sparse masks
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("parent", ["kron", "a", "c", "d"])
def test_whole_rows_and_columns_missing(rng, parent):
    for dims in DIMS.values():
        S = make_parent(rng, parent, dims)
        obs = np.ones(dims, dtype=bool)
        obs[1] = False  # a whole row (slab) of the first axis
        obs[:, -1] = False  # a whole column of the second axis
        obs[(0,) * len(dims)] = False
        R = S.restrict(obs)
        D = Dense(S, obs)
        check_values(rng, R, D)
        check_grads(rng, R, D, N=2)


@pytest.mark.parametrize("parent", ["kron", "a"])
def test_larger_grid_sparse_masks(rng, parent):
    """P = 1200: 0.1% (one cell) and 1% missing, where the capacitance is 1×1 and 12×12."""
    dims = (40, 30)
    S = make_parent(rng, parent, dims)
    for frac in (0.001, 0.01):
        obs = random_mask(rng, dims, frac)
        R = S.restrict(obs)
        D = Dense(S, obs)
        y = rng.standard_normal(D.M.shape[0])
        assert_close_cond(R.solve(y), D.inv @ y, D.kappa, what="solve")
        close(R.logdet(), np.linalg.slogdet(D.M)[1], what="logdet")
        val, gf, gy, _ = D.log_quad(y)[0]
        g = log_quad_grad(R, y)
        close(g.value, val)
        close_grads(nested(R, g.factors), gf, what="log_quad_grad")
        close(g.y, gy, CHAIN_RTOL)
        G, tr = R.logdet_grads_trace()
        close_grads(G, D.logdet_grads(), what="logdet_grads_trace")
        close(tr, np.trace(D.inv))


@pytest.mark.parametrize("d", [2, 3])
def test_ill_conditioned_factors(rng, d):
    """κ = 1e6 per SPD factor of K⊗…⊗K + 1e-3·I: errors within COND_TOL·κ·eps of the dense
    block (κ of the observed block itself, measured)."""
    dims = DIMS[d]
    K = [conditioned(rng, n, 1e6, "spd") for n in dims]
    S = Kron(*K) + 1e-3 * Kron(*[np.eye(n) for n in dims])
    obs = random_mask(rng, dims, 0.1)
    R = S.restrict(obs)
    D = Dense(S, obs)
    Y = rng.standard_normal((3, D.M.shape[0]))
    assert_close_cond(R.solve_rows(Y), np.linalg.solve(D.M, Y.T).T, D.kappa, what="solve")
    ld = np.linalg.slogdet(D.M)[1]
    assert_close_cond(R.logdet(), ld, D.kappa, scale=max(1.0, abs(ld)), what="logdet")
    q = np.einsum("ij,ij->i", Y, np.linalg.solve(D.M, Y.T).T)
    assert_close_cond(R.inv_quad(Y), q, D.kappa, what="inv_quad")


# ---------------------------------------------------------------------------------------
# per-cell diagonals: S + GridDiag(d)
# ---------------------------------------------------------------------------------------
def diagonal(rng, kind, dims):
    """``(d, expected number of corrected cells or None)``."""
    P = math.prod(dims)
    if kind == "constant":
        return np.full(dims, 0.3), 0
    if kind == "separable":  # a1⊗a2(⊗a3) with outliers above and below the fit
        d = functools.reduce(np.multiply.outer, [rng.uniform(0.5, 2.0, n) for n in dims])
        cells = rng.choice(P, 4, replace=False)
        d.flat[cells] *= [3.0, 0.5, 0.1, 1.7]  # two corrections negative (d below the fit)
        return d, 4
    if kind == "below":  # constant but a few cells far below: every correction negative
        d = np.full(dims, 2.0)
        d.flat[rng.choice(P, 3, replace=False)] = [0.0, 0.01, 1.0]
        return d, 3
    if kind == "zeros":  # zeros with a few non-zeros
        d = np.zeros(dims)
        d.flat[rng.choice(P, 3, replace=False)] = [0.5, 2.0, 1e-3]
        return d, 3
    if kind == "arbitrary":
        return rng.uniform(0.0, 1.0, dims), None
    raise AssertionError(kind)


DIAG_KINDS = ("constant", "separable", "below", "zeros", "arbitrary")


@pytest.mark.parametrize("kind", DIAG_KINDS)
@pytest.mark.parametrize("d", [2, 3])
@pytest.mark.parametrize("parent", ["kron", "a", "b", "c", "d", "mix"])
def test_kron_plus_diag_matches_dense(rng, parent, d, kind):
    dims = DIMS[d]
    S = make_parent(rng, parent, dims)
    dvec, k = diagonal(rng, kind, dims)
    for KD in (S + GridDiag(dvec), GridDiag(dvec.ravel()) + S, KronPlusDiag(S, dvec)):
        assert isinstance(KD, KronPlusDiag) and KD.parent is S
    KD = S + GridDiag(dvec)
    assert_allclose(KD.diagonal, dvec, rtol=0)
    if k is not None and parent == "kron":
        assert KD.route == "capacitance" and KD.n_cells == k
    D = Dense(S, None, dvec)
    check_values(rng, KD, D)
    check_grads(rng, KD, D, N=2)


@pytest.mark.parametrize("kind", ["separable", "below", "zeros", "arbitrary"])
@pytest.mark.parametrize("parent", ["kron", "a", "c"])
def test_kron_plus_diag_restrict(rng, parent, kind):
    for dims in DIMS.values():
        S = make_parent(rng, parent, dims)
        dvec, _ = diagonal(rng, kind, dims)
        obs = random_mask(rng, dims, 0.2)
        KD = S + GridDiag(dvec)
        R = KD.restrict(obs)
        assert isinstance(R, Restricted) and R.parent is KD and R.terms == KD.terms
        if kind == "zeros" and parent == "kron":  # the fit is 0: k = missing + observed non-zeros
            assert R.n_cells == np.count_nonzero(~obs) + np.count_nonzero((dvec != 0) & obs)
        D = Dense(S, obs, dvec)
        check_values(rng, R, D)
        check_grads(rng, R, D, N=2)


def unsupported_sum(rng, dims):
    """Three general SPD terms: no eigen form; P small, so the dense route."""
    return SumOfKron([Kron(*[factor(rng, n) for n in dims]) for _ in range(3)])


@pytest.mark.parametrize("case", ["restricted", "plus diag", "plus diag, restricted"])
def test_dense_route_logdet_grads(rng, case):
    """Sums without an eigen form (small P: the observed block is factorised densely; the
    route itself is checked in test_unsupported_sums): the log-det gradients and tr(S_OO⁻¹)
    against the dense chain rule."""
    dims = DIMS[2]
    obs = random_mask(rng, dims, 0.2)
    dvec, _ = diagonal(rng, "separable", dims)
    S = unsupported_sum(rng, dims)
    R, D = {"restricted": (S.restrict(obs), Dense(S, obs)),
            "plus diag": (S + GridDiag(dvec), Dense(S, None, dvec)),
            "plus diag, restricted": ((S + GridDiag(dvec)).restrict(obs),
                                      Dense(S, obs, dvec))}[case]
    check_logdet_grads(R, D)


def test_negative_correction_making_the_block_indefinite(rng):
    """A cell whose d is far below the fit can leave S + diag(d) indefinite (S itself is not
    positive definite here): NotPositiveDefiniteError from every Gaussian quantity."""
    dims = DIMS[2]
    A, B = (factor(rng, n) for n in dims)
    S = Kron(A / np.linalg.norm(A, 2), B / np.linalg.norm(B, 2)) - 2.0 * Kron(*map(np.eye, dims))
    dvec = np.full(dims, 3.0)
    dvec[1, 1] = 0.0  # that cell's diagonal is (A⊗B)_ii − 2 < 0
    full = dense_kron(*term_factors(S)[0]) - 2.0 * np.eye(S.shape[0]) + np.diag(dvec.ravel())
    assert np.linalg.eigvalsh(full)[0] < 0
    KD = S + GridDiag(dvec)
    assert not KD.is_positive_definite
    y = rng.standard_normal(KD.shape[0])
    for f in (KD.logdet, lambda: KD.inv_quad(y), lambda: log_quad_grad(KD, y),
              lambda: logdet_grad(KD), lambda: KD.logpdf(y)):
        with pytest.raises(NotPositiveDefiniteError):
            f()
    obs = np.ones(dims, dtype=bool)
    obs[1, 1] = False  # without that cell the block is positive definite again
    R = KD.restrict(obs)
    D = Dense(S, obs, dvec)
    assert np.linalg.eigvalsh(D.M)[0] > 0
    close(R.logdet(), np.linalg.slogdet(D.M)[1])


# ---------------------------------------------------------------------------------------
# nothing missing: exactly the parent's answers
# ---------------------------------------------------------------------------------------
def _identical(a, b):
    if isinstance(a, (tuple, list)):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            _identical(x, y)
    else:
        assert np.array_equal(np.asarray(a), np.asarray(b))


ALL_OBSERVED = ["kron2", "kron3", "a2", "a3", "c2", "d3"]


def _all_observed(rng, case):
    d = int(case[-1])
    S = make_parent(rng, case[:-1], DIMS[d])
    P = S.shape[0]
    return S, rng.standard_normal((3, P)), (np.ones(DIMS[d], dtype=bool), np.ones(P, dtype=bool))


@pytest.mark.parametrize("case", ALL_OBSERVED)
def test_all_observed_methods_are_the_parent_exactly(rng, case):
    S, Y, masks = _all_observed(rng, case)
    for obs in masks:
        R = S.restrict(obs)
        assert R.trivial and R.n_cells == 0
        _identical(R.solve(Y.T), S.solve(Y.T))
        _identical(R.solve(Y[0]), S.solve(Y[0]))
        _identical(R.solve_rows(Y), S.solve_rows(Y))
        _identical(R.inv_quad(Y), S.inv_quad(Y))
        assert R.logdet() == S.logdet()


@pytest.mark.parametrize("case", ALL_OBSERVED)
def test_all_observed_calculus_is_the_parent_exactly(rng, case):
    S, Y, masks = _all_observed(rng, case)
    mu = rng.standard_normal(Y.shape[1])
    for obs in masks:
        R = S.restrict(obs)
        assert R.trivial
        for reduce in (None, "sum"):
            _identical(tuple(log_quad_grad(R, Y, mu, 0.5, reduce=reduce)),
                       tuple(log_quad_grad(S, Y, mu, 0.5, reduce=reduce)))
        _identical(tuple(inv_quad_grad(R, Y)), tuple(inv_quad_grad(S, Y)))
        _identical(log_quad(R, Y, mu, 0.5), log_quad(S, Y, mu, 0.5))
        _identical(logdet_grad(R), logdet_grad(S))


# ---------------------------------------------------------------------------------------
# route "cg", the exact log det there, and the stochastic estimate on request
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("parent", ["kron", "a", "mix"])
def test_cg_route(rng, parent):
    dims = DIMS[3]
    S = make_parent(rng, parent, dims)
    dvec, _ = diagonal(rng, "separable" if parent == "kron" else "below", dims)
    obs = random_mask(rng, dims, 0.3)
    rtol = 1e-10
    cases = [(S.restrict(obs, route="cg", rtol=rtol), Dense(S, obs))]
    if parent != "mix":  # Cg⊗K + Cn⊗I + d̄: no eigen form, the dense route (test above)
        cases.append((KronPlusDiag(S, dvec, route="cg", rtol=rtol), Dense(S, None, dvec)))
    for op, D in cases:
        assert op.route == "cg"
        B = rng.standard_normal((D.M.shape[0], 3))
        X = op.solve(B)
        # the stopping rule: ‖b − Ax‖ ≤ rtol·‖b‖ per column (recurrence residual; the true
        # one may differ by rounding, ~κ·eps‖b‖, far below rtol here)
        res = np.linalg.norm(B - D.M @ X, axis=0) / np.linalg.norm(B, axis=0)
        assert np.all(res <= 1.1 * rtol), res
        assert_close_cond(X, D.inv @ B, D.kappa * rtol / np.finfo(float).eps, what="cg solve")
        close(op.logdet(), np.linalg.slogdet(D.M)[1], what="logdet exact on the cg route")
        y = B[:, 0]
        val, gf, gy, _ = D.log_quad(y)[0]
        g = log_quad_grad(op, y)
        # ~κ·rtol relative: the solve's error propagates linearly into q and its gradients
        tol = max(CHAIN_RTOL, 10 * D.kappa * rtol)
        close(g.value, val, tol)
        close_grads(nested(op, g.factors), gf, tol, "cg log_quad_grad")
        close(g.y, gy, tol)
        close_grads(nested(op, logdet_grad(op)), D.logdet_grads(), what="cg logdet_grad")
        with pytest.warns(ConvergenceWarning, match="maxiter=1"):
            type(op)(*((S, obs) if isinstance(op, Restricted) else (S, dvec)),
                     route="cg", maxiter=1).solve(y)


def test_auto_route_switches_to_cg_and_refuses_a_huge_exact_logdet(rng, monkeypatch):
    dims = DIMS[3]
    S = make_parent(rng, "a", dims)
    obs = random_mask(rng, dims, 0.2)
    D = Dense(S, obs)
    monkeypatch.setattr(_cell_ops, "CAPACITANCE_MAX_CELLS", 3)
    R = S.restrict(obs, rtol=1e-10)
    assert R.route == "cg"
    y = rng.standard_normal(D.M.shape[0])
    assert_close_cond(R.solve(y), D.inv @ y, D.kappa * 1e-10 / np.finfo(float).eps)
    close(R.logdet(), np.linalg.slogdet(D.M)[1])
    monkeypatch.setattr(_cell_ops, "LOGDET_MAX_CELLS", 3)
    R = S.restrict(obs)
    with pytest.raises(ValueError, match="logdet_estimate"):
        R.logdet()
    est = R.logdet_estimate(n_probes=16, random_state=0)
    assert math.isfinite(est.value) and est.stderr > 0


def test_logdet_estimate(rng):
    """Within 4 standard errors of the exact value for each of 5 seeds (a false failure
    about 6e-5 per seed if the estimate were normal; with 32 probes the t tail gives ~5e-4),
    and the standard error shrinks with the number of probes (~1/√n_probes)."""
    dims = (12, 10)
    S = make_parent(rng, "a", dims)
    obs = random_mask(rng, dims, 0.5)  # k = 60 cells, capacitance condition number ~10:
    R = S.restrict(obs, route="cg")  # Lanczos has converged by 30 steps (quadrature exact)
    exact = np.linalg.slogdet(Dense(S, obs).M)[1]
    close(R.logdet(), exact)
    for seed in range(5):
        est = R.logdet_estimate(n_probes=32, steps=30, random_state=seed)
        assert est.n_probes == 32 and est.stderr > 0
        assert abs(est.value - exact) < 4 * est.stderr, (est, exact)
    few = np.mean([R.logdet_estimate(8, 30, random_state=s).stderr for s in range(4)])
    many = np.mean([R.logdet_estimate(128, 30, random_state=s).stderr for s in range(4)])
    assert many < few / 2  # expected ratio 4
    full = S.restrict(np.ones(dims, dtype=bool)).logdet_estimate()
    assert full.stderr == 0.0 and full.value == S.logdet()
    below, _ = diagonal(rng, "below", dims)
    with pytest.raises(ValueError, match="at least its Kronecker fit"):
        (S + GridDiag(below)).logdet_estimate()
    above = np.full(dims, 0.2)  # per-cell noise above the fit on 40 cells, 30 of them observed
    above.flat[rng.choice(above.size, 40, replace=False)] = rng.uniform(0.5, 3.0, 40)
    R = KronPlusDiag(S, above, route="cg").restrict(obs)  # the route is the KronPlusDiag's
    exact = np.linalg.slogdet(Dense(S, obs, above).M)[1]
    close(R.logdet(), exact)
    for seed in range(3):
        est = R.logdet_estimate(n_probes=32, random_state=seed)
        assert abs(est.value - exact) < 4 * est.stderr, (est, exact)


@pytest.mark.parametrize("steps", [59, 60])
def test_logdet_estimate_with_as_many_steps_as_cells(rng, steps):
    dims = (12, 10)
    S = make_parent(rng, "a", dims)
    obs = random_mask(rng, dims, 0.5)  # k = 60
    R = S.restrict(obs, route="cg")
    exact = np.linalg.slogdet(Dense(S, obs).M)[1]
    est = R.logdet_estimate(n_probes=32, steps=steps, random_state=0)
    assert abs(est.value - exact) < 4 * est.stderr


# ---------------------------------------------------------------------------------------
# sums without an eigen form, threads, bad input, inputs untouched
# ---------------------------------------------------------------------------------------
def test_unsupported_sums(rng):
    """Small: the observed block is factorised densely (route "dense", exact); large: a typed
    error naming the supported forms."""
    dims = DIMS[2]
    S = unsupported_sum(rng, dims)
    obs = random_mask(rng, dims, 0.2)
    dvec, _ = diagonal(rng, "separable", dims)
    for R, D in ((S.restrict(obs), Dense(S, obs)), (S + GridDiag(dvec), Dense(S, None, dvec)),
                 ((S + GridDiag(dvec)).restrict(obs), Dense(S, obs, dvec))):
        assert R.route == "dense"
        check_values(rng, R, D)
        check_grads(rng, R, D, N=2)
    big = SumOfKron([Kron(factor(rng, 71), np.eye(59)) for _ in range(3)])
    obs = np.ones((71, 59), dtype=bool)
    obs[3, 4] = False
    with pytest.raises(UnsupportedSumError, match="no exact eigen form"):
        big.restrict(obs).logdet()
    with pytest.raises(UnsupportedSumError):
        (big + GridDiag(np.ones((71, 59)))).solve(np.ones(71 * 59))


@pytest.mark.parametrize("route", ["auto", "cg"])
def test_shared_operator_under_threads(rng, route):
    """One fresh operator (nothing built yet) shared by 8 threads: the serial answers, bit for
    bit (the threads race to build the capacitance form; on the CG route, lazily, for log det)."""
    from concurrent.futures import ThreadPoolExecutor

    dims = DIMS[3]
    S = make_parent(rng, "b", dims)
    dvec, _ = diagonal(rng, "separable", dims)
    obs = random_mask(rng, dims, 0.2)
    n = int(obs.sum())
    Y = rng.standard_normal((24, n))

    def call(R, y):
        g = log_quad_grad(R, y, alpha=2.0)
        G, tr = R.logdet_grads_trace()
        return (R.solve(y), R.inv_quad(y), R.logdet(), g.value, g.factors, g.y, G, tr)

    def make():
        return KronPlusDiag(S, dvec, route=route).restrict(obs)

    serial = [call(make(), y) for y in Y]
    R = make()
    with ThreadPoolExecutor(8) as ex:
        got = list(ex.map(lambda y: call(R, y), Y))
    _identical(got, serial)


def test_bad_input(rng):
    dims = DIMS[2]
    S = make_parent(rng, "kron", dims)
    obs = random_mask(rng, dims, 0.1)
    with pytest.raises(TypeError, match="`observed` must be a boolean"):
        S.restrict(obs.astype(int))
    with pytest.raises(TypeError, match="`observed` must be a boolean"):
        S.restrict(obs.astype(float))
    with pytest.raises(ValueError, match="`observed` must have the grid shape"):
        S.restrict(obs.T)
    with pytest.raises(ValueError, match="`observed` must have the grid shape"):
        S.restrict(obs.ravel()[:-1])
    with pytest.raises(ValueError, match="nothing is observed"):
        S.restrict(np.zeros(dims, dtype=bool))
    with pytest.raises(ValueError, match="`route`"):
        S.restrict(obs, route="dense")
    with pytest.raises(ValueError, match="`rtol`"):
        S.restrict(obs, rtol=0.0)
    with pytest.raises(ValueError, match="`maxiter`"):
        S.restrict(obs, maxiter=0)
    R = S.restrict(obs)
    with pytest.raises(TypeError, match="combined mask"):
        Restricted(R, obs)
    with pytest.raises(TypeError, match="combined mask"):  # R.restrict refuses, as Restricted(R) does
        R.restrict(obs)
    n = R.shape[0]
    for f in (R.solve, R.inv_quad, R.solve_rows, R.logpdf, R.matvec,
              lambda y: log_quad(R, y), lambda y: log_quad_grad(R, y),
              lambda y: inv_quad_grad(R, y)):
        with pytest.raises(ValueError, match=f"{n}"):
            f(np.ones(n + 1))
    with pytest.raises(DomainError, match="`d` must be non-negative"):
        GridDiag(-np.ones(dims))
    with pytest.raises(ValueError, match="`d` contains NaN"):
        GridDiag(np.full(dims, np.nan))
    with pytest.raises(ValueError, match="`d` contains NaN"):
        KronPlusDiag(S, np.full(dims, np.inf))
    with pytest.raises(DomainError, match="`d` must be non-negative"):
        KronPlusDiag(S, -np.ones(dims))
    with pytest.raises(ValueError, match="`d` must have the grid shape"):
        S + GridDiag(np.ones(dims[::-1]))
    with pytest.raises(ValueError, match="`d` must have the grid shape"):
        KronPlusDiag(S, np.ones(S.shape[0] + 1))
    with pytest.raises(TypeError, match="needs a Kron or a SumOfKron"):
        KronPlusDiag(np.eye(S.shape[0]), np.ones(S.shape[0]))
    with pytest.raises(ValueError, match="square factors"):
        Kron(factor(rng, 4), np.ones((3, 2))).restrict(np.ones((4, 3), dtype=bool))
    with pytest.raises(ValueError, match="`n_probes`"):
        R.logdet_estimate(n_probes=1)
    with pytest.raises(TypeError, match="log_quad_hvp takes a Kron or a SumOfKron"):
        log_quad_hvp(R, np.ones(n), (None, None))
    indefinite = Kron(factor(rng, dims[0], "indefinite"), factor(rng, dims[1]))
    for f in (lambda: indefinite.restrict(obs).logdet(),
              lambda: log_quad_grad(indefinite.restrict(obs), np.ones(n))):
        with pytest.raises(NotPositiveDefiniteError):
            f()


def test_logpdf_mean_of_the_wrong_length(rng):
    R = make_parent(rng, "kron", DIMS[2]).restrict(random_mask(rng, DIMS[2], 0.1))
    n = R.shape[0]
    with pytest.raises(ValueError, match="`mean`"):
        R.logpdf(np.ones(n), np.ones(n + 1))


@pytest.mark.parametrize("parent", ["kron", "a"])
def test_dask_observations(rng, parent):
    """A dask batch (chunks along N, one of them empty) gives the NumPy batch's answers."""
    da = pytest.importorskip("dask.array")
    dims = DIMS[2]
    S = make_parent(rng, parent, dims)
    dvec, _ = diagonal(rng, "separable", dims)
    obs = random_mask(rng, dims, 0.2)
    for R in (S.restrict(obs), (S + GridDiag(dvec)).restrict(obs)):
        n = R.shape[0]
        Y = rng.standard_normal((10, n))
        mu = rng.standard_normal(n)
        Yd = da.concatenate([da.from_array(Y[:3], chunks=(3, n)), da.zeros((0, n), chunks=(0, n)),
                             da.from_array(Y[3:], chunks=(4, n))])
        close(log_quad(R, Yd, mu, 0.5).compute(), log_quad(R, Y, mu, 0.5))
        for reduce in ("sum", "mean"):
            g, want = log_quad_grad(R, Yd, mu, 0.5, reduce=reduce), log_quad_grad(R, Y, mu, 0.5,
                                                                               reduce=reduce)
            close(g.value, want.value)
            close_grads(nested(R, g.factors), nested(R, want.factors), RTOL, "dask")
            close(g.y.compute(), want.y)
            close(g.mu, want.mu)
            close(g.alpha, want.alpha)


@pytest.mark.parametrize("how", ["pickle", "deepcopy"])
def test_pickle_and_deepcopy(rng, how):
    import copy
    import pickle

    dims = DIMS[2]
    S = make_parent(rng, "a", dims)
    dvec, _ = diagonal(rng, "separable", dims)
    obs = random_mask(rng, dims, 0.2)
    for op in (S.restrict(obs), S + GridDiag(dvec), (S + GridDiag(dvec)).restrict(obs)):
        y = rng.standard_normal(op.shape[0])
        want = (op.logdet(), op.inv_quad(y))  # built: the copy must not share the cache lock
        clone = pickle.loads(pickle.dumps(op)) if how == "pickle" else copy.deepcopy(op)
        assert type(clone) is type(op) and np.array_equal(clone.observed, op.observed)
        assert (clone.logdet(), clone.inv_quad(y)) == want


def test_inputs_are_not_modified(rng):
    dims = DIMS[3]
    S = make_parent(rng, "a", dims)
    facs = [[F.copy() for F in t] for t in term_factors(S)]
    obs = random_mask(rng, dims, 0.2)
    dvec, _ = diagonal(rng, "separable", dims)
    obs0, d0 = obs.copy(), dvec.copy()
    KD = S + GridDiag(dvec)
    R = KD.restrict(obs)
    Y = rng.standard_normal((2, R.shape[0]))
    mu = rng.standard_normal(R.shape[0])
    Y0, mu0 = Y.copy(), mu.copy()
    want = R.logdet()
    R.solve(Y.T)
    R.solve_rows(Y)
    R.inv_quad(Y)
    R.logpdf(Y, mu)
    log_quad_grad(R, Y, mu)
    inv_quad_grad(R, Y, mu)
    R.logdet_grads_trace()
    for got, ref in ((obs, obs0), (dvec, d0), (Y, Y0), (mu, mu0)):
        assert np.array_equal(got, ref)
    for t, row in zip(term_factors(S), facs, strict=True):
        for F, F0 in zip(t, row, strict=True):
            assert np.array_equal(F, F0)
    obs[...] = True  # the operators hold copies: changing the user's arrays changes nothing
    dvec[...] = 5.0
    assert R.shape[0] == int(obs0.sum()) and R.logdet() == want
    assert np.array_equal(R.observed, obs0) and np.array_equal(KD.diagonal, d0)
