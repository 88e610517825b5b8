"""Sums of Kronecker products with an exact eigen form (noise, diagonal noise, the generalised
two-term sum, Kronecker sums, mixes), d = 2 and 3: the operator and the seed's calculus
against the dense ``np.kron`` sum, ``np.linalg`` and JAX autodiff of the dense expression."""

from __future__ import annotations

import functools
import pickle
import threading

import numpy as np
import pytest

from helpers import CHAIN_RTOL, FD_RTOL, RTOL, ULPS, assert_close_cond, conditioned, factor
from kronkit import (
    DomainError,
    Kron,
    NotPositiveDefiniteError,
    SumOfKron,
    UnsupportedSumError,
    inv_quad_grad,
    log_quad,
    log_quad_grad,
    log_quad_hvp,
    logdet_grad,
)
from kronkit._sum_kron import DENSE_MAX_P

DIMS = {2: (4, 3), 3: (3, 2, 4)}


def _diag(rng, n):
    return np.diag(rng.uniform(0.5, 2.0, n))


def make_form(rng, form: str, d: int, cond: float = 30.0) -> SumOfKron:
    """One sum of the supported forms on grid ``DIMS[d]``."""
    dims = DIMS[d]
    eye = [np.eye(n) for n in dims]
    K = [conditioned(rng, n, cond, "spd") for n in dims]
    if form == "noise":
        return Kron(*K) + 0.3 * Kron(*eye)
    if form == "diag-noise":
        return Kron(*K) + Kron(*[_diag(rng, n) for n in dims])
    if form == "generalised":  # A_k symmetric indefinite, C_k SPD; PD as ‖A_k‖ < λ_min(C_k)
        A = [factor(rng, n, "indefinite") for n in dims]
        A = [0.9 * a * np.linalg.eigvalsh(c)[0] / np.linalg.norm(a, 2) for a, c in zip(A, K, strict=True)]
        return Kron(*A) + Kron(*K)
    if form == "kron-sum":  # A1⊕…⊕Ad with SPD A_k
        terms = [Kron(*[K[j] if j == k else eye[j] for j in range(d)]) for k in range(d)]
        return functools.reduce(lambda a, b: a + b, terms)
    if form == "kron-sum+noise":
        terms = [Kron(*[factor(rng, dims[j], "indefinite") if j == k else eye[j]
                        for j in range(d)]) for k in range(d)]
        S = sum(terms)
        shift = 1.0 - float(np.linalg.eigvalsh(S.to_dense())[0])
        return S + shift * Kron(*eye)
    if form == "mixed":  # C_g⊗K + C_n⊗I (a multi-trait mixed model), more axes: identity
        rest = [conditioned(rng, n, cond, "spd") for n in dims[2:]]
        return (Kron(factor(rng, dims[0]), K[1], *rest)
                + Kron(factor(rng, dims[0]), eye[1], *rest))
    raise AssertionError(form)


FORMS = ["noise", "diag-noise", "generalised", "kron-sum", "kron-sum+noise", "mixed"]


def dense_of(S: SumOfKron) -> np.ndarray:
    return sum(functools.reduce(np.kron, K.factors) for K in S.terms)


# ---------------------------------------------------------------------------------------
# the operator
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("d", [2, 3])
@pytest.mark.parametrize("form", FORMS)
def test_operator_matches_dense(rng, form, d):
    S = make_form(rng, form, d)
    D = dense_of(S)
    P = D.shape[0]
    kappa = np.linalg.cond(D)
    assert S.route == "eigen" and S.is_positive_definite
    assert_close_cond(S.to_dense(), D, 1.0)
    Y = rng.standard_normal((5, P))
    B = rng.standard_normal((P, 2))
    X = np.linalg.solve(D, B)
    assert_close_cond(S.solve(B), X, kappa, what="solve")
    assert_close_cond(S.solve(B[:, 0]), X[:, 0], kappa, what="solve 1-D")
    assert_close_cond(S.solve_rows(Y), np.linalg.solve(D, Y.T).T, kappa, what="solve_rows")
    sign, ld = np.linalg.slogdet(D)
    assert sign == 1.0
    assert_close_cond(S.logdet(), ld, kappa, scale=max(1.0, abs(ld)), what="logdet")
    assert S.slogdet()[0] == 1.0
    q = np.einsum("ij,ij->i", Y, np.linalg.solve(D, Y.T).T)
    assert_close_cond(S.inv_quad(Y), q, kappa, what="inv_quad")
    np.testing.assert_allclose(S.diag(), np.diagonal(D), rtol=RTOL)
    np.testing.assert_allclose(S.trace(), np.trace(D), rtol=RTOL)
    np.testing.assert_allclose(S.T.to_dense(), D.T, rtol=RTOL, atol=0)
    np.testing.assert_allclose(S @ B, D @ B, rtol=RTOL)
    np.testing.assert_allclose(S.aslinearoperator() @ B, D @ B, rtol=RTOL)
    np.testing.assert_allclose(S.aslinearoperator().rmatvec(B[:, 0]), D.T @ B[:, 0], rtol=RTOL)


def test_identity_and_diagonal_factors_are_detected(rng):
    """Identity and diagonal factors cost nothing: their axes keep V_k = I."""
    K1, K2 = factor(rng, 4), factor(rng, 3)
    S = Kron(K1, K2) + 0.5 * Kron(np.eye(4), np.eye(3))
    kinds = [[f.kind for f in row] for row in S.factor_kinds()]
    assert kinds == [["full", "full"], ["identity", "identity"]]
    D = Kron(np.diag([1.0, 2.0, 3.0, 4.0]), np.diag([2.0, 1.0, 3.0]))
    E = (D + 0.1 * Kron(np.eye(4), np.eye(3))).eigen_form()
    assert E.identity == (True, True)
    np.testing.assert_allclose(E.lam.ravel(), np.diagonal(D.to_dense()) + 0.1, rtol=RTOL)
    ks = Kron(K1, np.eye(3)) + Kron(np.eye(4), K2)
    assert ks.eigen_form().identity == (False, False)


@pytest.mark.parametrize("d", [2, 3])
def test_ill_conditioned_noise_and_generalised(rng, d):
    """κ = 1e6: per factor with noise, of the metric ⊗C_k in the generalised sum; the eigen
    route is as accurate as the dense solve allows."""
    dims = DIMS[d]
    K = [conditioned(rng, n, 1e6, "spd") for n in dims]
    C = [conditioned(rng, n, 1e6 ** (1 / d), "spd") for n in dims]
    A = [factor(rng, n, "indefinite") for n in dims]
    A = [0.9 * a * np.linalg.eigvalsh(c)[0] / np.linalg.norm(a, 2) for a, c in zip(A, C, strict=True)]
    for S in (Kron(*K) + 1e-3 * Kron(*[np.eye(n) for n in dims]), Kron(*A) + Kron(*C)):
        D = dense_of(S)
        kappa = np.linalg.cond(D)
        Y = rng.standard_normal((3, D.shape[0]))
        assert_close_cond(S.solve_rows(Y), np.linalg.solve(D, Y.T).T, kappa)
        sign, ld = np.linalg.slogdet(D)
        s2, ld2 = S.slogdet()
        assert s2 == sign
        assert_close_cond(ld2, ld, kappa, scale=max(1.0, abs(ld)))


def test_indefinite_sum_is_refused_by_the_gaussian_quantities_only(rng):
    A, B = factor(rng, 4, "indefinite"), factor(rng, 3, "indefinite")
    S = Kron(A, np.eye(3)) + Kron(np.eye(4), B)
    D = dense_of(S)
    ev = np.linalg.eigvalsh(D)[0]
    assert ev < 0 and not S.is_positive_definite
    with pytest.raises(NotPositiveDefiniteError, match=f"smallest eigenvalue.*{ev:.4g}"):
        S.logdet()
    for f in (lambda: S.inv_quad(np.ones(12)), lambda: log_quad(S, np.ones(12)),
              lambda: logdet_grad(S)):
        with pytest.raises(NotPositiveDefiniteError):
            f()
    sign, ld = np.linalg.slogdet(D)  # solves and slogdet hold for any nonsingular sum
    assert S.slogdet()[0] == sign
    np.testing.assert_allclose(S.slogdet()[1], ld, rtol=RTOL)
    y = rng.standard_normal(12)
    np.testing.assert_allclose(S.solve(y), np.linalg.solve(D, y), rtol=1e-9, atol=1e-12)


def test_singular_sum_solve_raises(rng):
    A = factor(rng, 3, "spd")
    S = Kron(A, np.eye(2)) - Kron(A, np.eye(2))
    with pytest.raises(np.linalg.LinAlgError, match="singular"):
        S.solve(np.ones(6))
    assert S.slogdet() == (0.0, -np.inf)


# ---------------------------------------------------------------------------------------
# arithmetic and construction
# ---------------------------------------------------------------------------------------


def test_arithmetic_builds_sums(rng):
    A, B, C, D = (factor(rng, n) for n in (3, 2, 3, 2))
    K1, K2 = Kron(A, B), Kron(C, D)
    dense = np.kron(A, B) + np.kron(C, D)
    for S in (K1 + K2, SumOfKron([K1]) + K2, K1 + SumOfKron([K2]), sum([K1, K2])):
        assert isinstance(S, SumOfKron) and S.n_terms == 2
        np.testing.assert_allclose(S.to_dense(), dense, rtol=RTOL)
    S = K1 + K2
    np.testing.assert_allclose((S + K1).to_dense(), dense + np.kron(A, B), rtol=RTOL)
    np.testing.assert_allclose((S + S).to_dense(), 2 * dense, rtol=RTOL)
    np.testing.assert_allclose((2.5 * S).to_dense(), 2.5 * dense, rtol=RTOL)
    np.testing.assert_allclose((S * 2.5).to_dense(), 2.5 * dense, rtol=RTOL)
    np.testing.assert_allclose((S / 4).to_dense(), dense / 4, rtol=RTOL)
    np.testing.assert_allclose((-S).to_dense(), -dense, rtol=RTOL)
    np.testing.assert_allclose((S - K2).to_dense(), np.kron(A, B), rtol=RTOL, atol=1e-14)
    np.testing.assert_allclose((K1 - K2).to_dense(), np.kron(A, B) - np.kron(C, D), rtol=RTOL)
    assert S.n_factors == 2 and S.dims == S.col_dims == (3, 2)


def test_arithmetic_errors(rng):
    A, B = factor(rng, 3), factor(rng, 2)
    S = Kron(A, B) + Kron(A, B)
    # an ndarray operand goes through __array__, as every NumPy ufunc does (size-guarded)
    np.testing.assert_allclose(S + np.ones((6, 6)), 2 * np.kron(A, B) + 1, rtol=RTOL)
    with pytest.raises(TypeError):
        Kron(A, B) + 1.0
    with pytest.raises(TypeError, match="real scalar"):
        S * "a"
    with pytest.raises(TypeError, match="use `@`"):
        S * Kron(A, B)
    with pytest.raises(DomainError, match="non-zero"):
        S / 0
    with pytest.raises(ValueError, match=r"terms\[2\]` has factor shapes 2×2 ⊗ 3×3"):
        S + Kron(B, A)
    with pytest.raises(ValueError, match=r"terms\[1\]` has factor shapes 3×3 ⊗ 2×2 ⊗ 2×2"):
        Kron(A, B) + Kron(A, B, B)


def test_inputs_are_not_modified_and_pickles(rng):
    K1, K2 = factor(rng, 3), factor(rng, 2)
    copies = [K1.copy(), K2.copy()]
    S = Kron(K1, K2) + 0.1 * Kron(np.eye(3), np.eye(2))
    y = rng.standard_normal((2, 6))
    y0 = y.copy()
    log_quad_grad(S, y, alpha=1.0)
    S.solve_rows(y)
    np.testing.assert_array_equal(y, y0)
    np.testing.assert_array_equal(K1, copies[0])
    np.testing.assert_array_equal(K2, copies[1])
    S2 = pickle.loads(pickle.dumps(S))
    np.testing.assert_allclose(S2.inv_quad(y), S.inv_quad(y), rtol=RTOL)


def test_eigen_form_is_built_once_under_threads(rng):
    S = make_form(rng, "noise", 3)
    out = []
    barrier = threading.Barrier(4)

    def work():
        barrier.wait()
        out.append(S.eigen_form())

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(out) == 4 and all(e is out[0] for e in out)


def test_unsupported_sums(rng):
    """Sums without an eigen form: dense (exact) up to DENSE_MAX_P, refused above it, naming
    the axis and listing the supported forms."""
    A = [factor(rng, 3) for _ in range(3)]
    B = [factor(rng, 2) for _ in range(3)]
    S = SumOfKron([Kron(a, b) for a, b in zip(A, B, strict=True)])
    assert S.route == "dense"
    D = dense_of(S)
    np.testing.assert_allclose(S.logdet(), np.linalg.slogdet(D)[1], rtol=RTOL)
    G = logdet_grad(S)
    Dinv = np.linalg.inv(D)
    E = rng.standard_normal((3, 3))
    want = np.trace(Dinv @ np.kron(E, B[1]))
    np.testing.assert_allclose(np.sum(G[1][0] * E), want, rtol=CHAIN_RTOL)
    with pytest.raises(UnsupportedSumError, match="axis 0"):
        S.eigen_form()
    n1, n2 = 71, 59  # P = 4189 > DENSE_MAX_P
    assert n1 * n2 > DENSE_MAX_P
    big = SumOfKron([Kron(factor(rng, n1), np.eye(n2)) for _ in range(3)])
    with pytest.raises(ValueError, match=r"no exact eigen form.*\(a\) Kron\(K1.*DENSE_MAX_P"):
        big.logdet()
    nonsym = Kron(factor(rng, n1, "general"), np.eye(n2)) + Kron(np.eye(n1), factor(rng, n2))
    with pytest.raises(ValueError, match=r"terms\[0\]\.factors\[0\] is not symmetric"):
        nonsym.solve(np.ones(n1 * n2))


# ---------------------------------------------------------------------------------------
# the seed's calculus, against JAX autodiff of the dense expression
# ---------------------------------------------------------------------------------------


def _jax_dense(jax, S, Y, mu, alpha):
    """λ summed, log det, and their gradients wrt every factor of every term, y, μ, α."""
    jnp = jax.numpy
    facs = [[jnp.asarray(F) for F in K.factors] for K in S.terms]

    def dense(fs):
        return sum(functools.reduce(jnp.kron, row) for row in fs)

    def lam(fs, y, m, a):
        D = dense(fs)
        w = y - m
        q = jnp.einsum("ij,ij->i", w, jnp.linalg.solve(D, w.T).T)
        return jnp.sum(jnp.log(a + q))

    g = jax.grad(lam, argnums=(0, 1, 2, 3))(facs, jnp.asarray(Y), jnp.asarray(mu), alpha)
    gl = jax.grad(lambda fs: jnp.linalg.slogdet(dense(fs))[1])(facs)
    return float(lam(facs, Y, mu, alpha)), g, gl


@pytest.mark.parametrize("d", [2, 3])
@pytest.mark.parametrize("form", FORMS)
def test_log_quad_grad_matches_jax_of_the_dense_sum(rng, jax_x64, form, d):
    S = make_form(rng, form, d)
    P = S.shape[0]
    Y = rng.standard_normal((4, P))
    mu = rng.standard_normal(P)
    alpha = 0.7
    value, (gf, gy, gmu, ga), gl = _jax_dense(jax_x64, S, Y, mu, alpha)
    g = log_quad_grad(S, Y, mu, alpha)
    np.testing.assert_allclose(g.value, value, rtol=CHAIN_RTOL)
    for t in range(S.n_terms):
        for k in range(S.n_factors):
            np.testing.assert_allclose(g.factors[t][k], gf[t][k], rtol=CHAIN_RTOL,
                                       atol=CHAIN_RTOL * np.abs(gf[t][k]).max(),
                                       err_msg=f"term {t} factor {k}")
            np.testing.assert_allclose(logdet_grad(S)[t][k], gl[t][k], rtol=CHAIN_RTOL,
                                       atol=CHAIN_RTOL * np.abs(gl[t][k]).max())
    np.testing.assert_allclose(g.y, gy, rtol=CHAIN_RTOL, atol=1e-13)
    np.testing.assert_allclose(g.mu, gmu, rtol=CHAIN_RTOL, atol=1e-13)
    np.testing.assert_allclose(g.alpha, ga, rtol=CHAIN_RTOL)
    np.testing.assert_allclose(log_quad(S, Y, mu, alpha).sum(), value, rtol=CHAIN_RTOL)


@pytest.mark.parametrize("reduce", [None, "sum", "mean"])
def test_reductions_and_inv_quad_grad(rng, reduce):
    S = make_form(rng, "noise", 2)
    D = dense_of(S)
    P = D.shape[0]
    Y = rng.standard_normal((3, P))
    per = [log_quad_grad(S, y, alpha=2.0) for y in Y]
    g = log_quad_grad(S, Y, alpha=2.0, reduce=reduce)
    stack = np.stack([p.factors[1][0] for p in per])
    want = {None: stack, "sum": stack.sum(0), "mean": stack.mean(0)}[reduce]
    np.testing.assert_allclose(g.factors[1][0], want, rtol=RTOL, atol=1e-14)
    gi = inv_quad_grad(S, Y, reduce=reduce)
    Z = np.linalg.solve(D, Y.T).T
    q = np.einsum("ij,ij->i", Y, Z)
    wq = {None: q, "sum": q.sum(), "mean": q.mean()}[reduce]
    np.testing.assert_allclose(gi.value, wq, rtol=RTOL)
    wy = 2 * Z / (3 if reduce == "mean" else 1)
    np.testing.assert_allclose(gi.y, wy, rtol=RTOL, atol=1e-14)


def test_finite_differences_of_a_factor(rng):
    """An independent check of ∂λ/∂F_tk: central differences of the dense λ."""
    S = make_form(rng, "mixed", 3)
    y = rng.standard_normal(S.shape[0])
    g = log_quad_grad(S, y, alpha=0.5)
    terms = [list(K.factors) for K in S.terms]
    E = rng.standard_normal(terms[1][0].shape)

    def lam(h):
        fs = [list(r) for r in terms]
        fs[1][0] = fs[1][0] + h * E
        D = sum(functools.reduce(np.kron, r) for r in fs)
        return np.log(0.5 + y @ np.linalg.solve(D, y))

    h = 1e-6
    fd = (lam(h) - lam(-h)) / (2 * h)
    np.testing.assert_allclose(np.sum(g.factors[1][0] * E), fd, rtol=FD_RTOL)


def test_empty_batches_and_dask(rng):
    da = pytest.importorskip("dask.array")
    S = make_form(rng, "kron-sum+noise", 2)
    P = S.shape[0]
    g0 = log_quad_grad(S, np.zeros((0, P)), reduce=None)
    assert g0.value.shape == (0,) and g0.factors[0][1].shape == (0, 3, 3)
    gs = log_quad_grad(S, np.zeros((0, P)))
    assert gs.value == 0.0 and np.all(gs.factors[1][0] == 0)
    with pytest.raises(ValueError, match="at least one observation"):
        log_quad_grad(S, np.zeros((0, P)), reduce="mean")
    assert log_quad(S, np.zeros((0, P))).shape == (0,)
    Y = rng.standard_normal((7, P))
    g = log_quad_grad(S, Y, alpha=1.5)
    gd = log_quad_grad(S, da.from_array(Y, chunks=3), alpha=1.5)
    np.testing.assert_allclose(gd.value, g.value, rtol=RTOL)
    for t in range(S.n_terms):
        for k in range(2):
            np.testing.assert_allclose(gd.factors[t][k], g.factors[t][k], rtol=RTOL, atol=1e-14)
    np.testing.assert_allclose(gd.y.compute(), g.y, rtol=RTOL)
    np.testing.assert_allclose(log_quad(S, da.from_array(Y, chunks=3), alpha=1.5).compute(),
                               log_quad(S, Y, alpha=1.5), rtol=RTOL)


def test_calculus_bad_input(rng):
    S = make_form(rng, "noise", 2)
    with pytest.raises(ValueError, match="length P = 12"):
        log_quad(S, np.ones(5))
    with pytest.raises(ValueError, match=r"non-finite|NaN|finite"):
        log_quad_grad(S, np.full(12, np.nan))
    with pytest.raises(DomainError, match="beta"):
        log_quad(S, np.zeros(12), alpha=-1.0)
    with pytest.raises(ValueError, match="method='kpsvd'"):
        log_quad_grad(S, np.ones(12), method="kpsvd")
    rect = Kron(np.ones((2, 3)), np.eye(2)) + Kron(np.ones((2, 3)), np.eye(2))
    with pytest.raises(ValueError, match="square"):
        log_quad(rect, np.ones(6))


@pytest.mark.parametrize("d", [2, 3])
@pytest.mark.parametrize("form", ["noise", "generalised", "kron-sum+noise", "mixed"])
def test_log_quad_hvp_matches_jax_of_the_dense_sum(rng, jax_x64, form, d):
    """Hessian-vector products (every factor of every term and y; non-symmetric directions,
    a zero term) against ``jax.jvp(jax.grad(...))`` of the dense expression."""
    jax, jnp = jax_x64, jax_x64.numpy
    S = make_form(rng, form, d)
    P = S.shape[0]
    Y = rng.standard_normal((3, P))
    mu = rng.standard_normal(P)
    dy = rng.standard_normal(Y.shape)
    dirs = [[rng.standard_normal(F.shape) for F in K.factors] for K in S.terms]
    dirs[0][0] = None
    facs = [[jnp.asarray(F) for F in K.factors] for K in S.terms]
    tangents = [[jnp.zeros_like(F) if D is None else jnp.asarray(D) for F, D in zip(r, dr,
                 strict=True)] for r, dr in zip(facs, dirs, strict=True)]

    def f(fs, y):
        D = sum(functools.reduce(jnp.kron, r) for r in fs)
        w = y - mu
        return jnp.mean(jnp.log(0.6 + jnp.einsum("ij,ij->i", w, jnp.linalg.solve(D, w.T).T)))

    _, (hf, hy) = jax.jvp(jax.grad(f, argnums=(0, 1)), (facs, jnp.asarray(Y)),
                          (tangents, jnp.asarray(dy)))
    h = log_quad_hvp(S, Y, dirs, mu, 0.6, dy=dy, reduce="mean")
    for t in range(S.n_terms):
        for k in range(d):
            np.testing.assert_allclose(h.factors[t][k], hf[t][k], rtol=CHAIN_RTOL,
                                       atol=CHAIN_RTOL * np.abs(hf[t][k]).max())
    np.testing.assert_allclose(h.y, hy, rtol=CHAIN_RTOL, atol=CHAIN_RTOL * np.abs(hy).max())
    g = log_quad_grad(S, Y, mu, 0.6, reduce="mean")
    np.testing.assert_allclose(h.grad.factors[1][0], g.factors[1][0], rtol=ULPS)
    one = log_quad_hvp(S, Y[0], [None] * S.n_terms, mu, 0.6, dy=dy[0])
    assert one.y.shape == (P,) and one.factors[0][0].shape == (S.dims[0],) * 2


def test_log_quad_hvp_bad_directions(rng):
    S = make_form(rng, "noise", 2)
    y = rng.standard_normal(12)
    with pytest.raises(TypeError, match="sequence of 2 terms"):
        log_quad_hvp(S, y, np.eye(4))
    with pytest.raises(ValueError, match=r"directions\[0\]` must hold 2 factor directions"):
        log_quad_hvp(S, y, [np.eye(4), np.eye(3)])
    with pytest.raises(ValueError, match=r"directions\[1\]\[0\]` must have shape \(4, 4\)"):
        log_quad_hvp(S, y, [None, [np.eye(3), None]])
    with pytest.raises(ValueError, match="dy"):
        log_quad_hvp(S, y, [None, None], dy=np.ones(5))


def test_construction_errors_name_the_term_and_factor(rng):
    A = factor(rng, 3)
    bad = A.copy()
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match=r"terms\[1\]`: .*factors\[0\]"):
        SumOfKron([(A, np.eye(2)), (bad, np.eye(2))])
    with pytest.raises(TypeError, match=r"terms\[0\]` must be a Kron or a sequence"):
        SumOfKron([np.eye(3)])
    with pytest.raises(NotPositiveDefiniteError):  # zero noise and a singular kernel
        (Kron(np.ones((3, 3)), np.eye(2)) + 0.0 * Kron(np.eye(3), np.eye(2))).logdet()
    with pytest.raises(NotPositiveDefiniteError):  # negative noise
        (Kron(A, np.eye(2)) - 1e3 * Kron(np.eye(3), np.eye(2))).logdet()
