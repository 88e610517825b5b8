"""kronkit.jax: values vs dense np.kron, derivatives vs JAX autodiff of the dense formulas.

Truth here is independent of kronkit: dense ``np.kron`` computations with NumPy, and
``jax.grad`` / ``jax.jvp`` / ``jax.hessian`` of the dense formulas (``jnp.kron`` +
``jnp.linalg.solve``), plus one central finite difference. Float64 is enabled for the
whole module (JAX's default is float32).
"""

from __future__ import annotations

import functools
import subprocess
import sys

import numpy as np
import pytest
from numpy.testing import assert_allclose

from helpers import (
    ATOL,
    CHAIN_RTOL,
    F32_RTOL,
    FD_RTOL,
    RTOL,
    central_diff,
    dense_kron,
    dense_log_quad,
    general,
    spd,
)
from helpers import factors as factor_catalogue

jax = pytest.importorskip("jax")
jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402
from jax.extend import core as jex_core  # noqa: E402

import kronkit  # noqa: E402
import kronkit.jax as kj  # noqa: E402
from kronkit._jax_factor import JaxFactor, traced_rcond  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_blas_thread_module")


COND = 30.0  # factor condition cap: products of d factors stay well conditioned
DIMS = [(2, 3), (5, 1), (2, 3, 5), (3, 1, 2)]
KINDS = ["general", "spd"]


# ---------------------------------------------------------------------------------------
# Problems and dense oracles
# ---------------------------------------------------------------------------------------
def factors(rng, kind, dims):
    """Well-conditioned factors; general ones get det > 0 (so log det S is defined)."""
    return factor_catalogue(rng, dims, "general+" if kind == "general" else kind, COND)


def close(a, b, rtol=RTOL):
    b = np.asarray(b)
    scale = max(1.0, float(np.max(np.abs(b)))) if b.size else 1.0
    assert_allclose(np.asarray(a), b, rtol=rtol, atol=max(ATOL, rtol) * scale)


def tree_close(a, b, rtol=RTOL):
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(la) == len(lb)
    for x, y in zip(la, lb, strict=True):
        assert np.shape(x) == np.shape(y)
        close(x, y, rtol)


def jkron(mats):
    return functools.reduce(jnp.kron, mats)


def dense_solve(mats, y):
    S = jkron(mats)
    P = S.shape[0]
    return jnp.linalg.solve(S, y.reshape(-1, P).T).T.reshape(y.shape)


def dense_matvec(mats, y):
    return y @ jkron(mats).T


def dense_inv_quad(mats, y):
    return jnp.sum(y * dense_solve(mats, y), axis=-1)


def dense_logdet(mats):
    return jnp.linalg.slogdet(jkron(mats))[1]


def dense_lq(mats, y, mu, alpha):
    return jnp.log(alpha + dense_inv_quad(mats, y - mu))


def objectives(assume="general"):
    """Scalar objectives ``f(mats, y, mu, alpha, c)``: {name: (ours, dense)}."""
    return {
        "matvec": (lambda m, y, mu, a, c: jnp.sum(c * kj.matvec(m, y)),
                   lambda m, y, mu, a, c: jnp.sum(c * dense_matvec(m, y))),
        "solve": (lambda m, y, mu, a, c: jnp.sum(c * kj.solve(m, y, assume=assume)),
                  lambda m, y, mu, a, c: jnp.sum(c * dense_solve(m, y))),
        "inv_quad": (lambda m, y, mu, a, c: jnp.sum(kj.inv_quad(m, y, assume=assume) ** 2),
                     lambda m, y, mu, a, c: jnp.sum(dense_inv_quad(m, y) ** 2)),
        "logdet": (lambda m, y, mu, a, c: kj.logdet(m, assume=assume),
                   lambda m, y, mu, a, c: dense_logdet(m)),
        "log_quad": (lambda m, y, mu, a, c: jnp.sum(kj.log_quad(m, y, mu, a, assume=assume)),
                     lambda m, y, mu, a, c: jnp.sum(dense_lq(m, y, mu, a))),
    }


def jit_all(transform, fns):
    """One jitted program applying ``transform`` to every function of ``fns`` (one compile)."""
    return jax.jit(lambda *args: {name: transform(f)(*args) for name, f in fns.items()})


def problem(rng, kind, dims, batch=(2,)):
    mats = [jnp.asarray(A) for A in factors(rng, kind, dims)]
    P = int(np.prod(dims))
    y = jnp.asarray(rng.standard_normal((*batch, P)))
    mu = jnp.asarray(rng.standard_normal(P))
    c = jnp.asarray(rng.standard_normal((*batch, P)))
    return mats, y, mu, safe_alpha(mats, y - mu), c


def safe_alpha(mats, w):
    """An α with β = α + q ≥ 1 (q can be negative for non-symmetric factors)."""
    return jnp.asarray(1.0 + 2.0 * float(jnp.max(jnp.abs(dense_inv_quad(mats, w)))))


# ---------------------------------------------------------------------------------------
# Values vs dense NumPy
# ---------------------------------------------------------------------------------------
def _values(assume):
    def run(fs, Y, mu, alpha):
        return {
            "solve": kj.solve(fs, Y, assume=assume),
            "solve1": kj.solve(fs, Y[0], assume=assume),
            "inv_quad": kj.inv_quad(fs, Y, assume=assume),
            "inv_quad1": kj.inv_quad(fs, Y[0], assume=assume),
            "logdet": kj.logdet(fs, assume=assume),
            "log_quad": kj.log_quad(fs, Y, mu, alpha, assume=assume),
            "log_quad1": kj.log_quad(fs, Y[1], None, alpha, assume=assume),
            "matvec": kj.matvec(fs, Y),
        }

    return jax.jit(run)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dims", DIMS)
def test_values_match_dense_numpy(rng, kind, dims):
    fs = factors(rng, kind, dims)
    S = dense_kron(*fs)
    P = S.shape[0]
    Y = rng.standard_normal((4, P))
    mu = rng.standard_normal(P)
    alpha = float(safe_alpha(fs, jnp.asarray(np.concatenate([Y - mu, Y]))))
    X = np.linalg.solve(S, Y.T).T
    expected = {
        "solve": X, "solve1": X[0],
        "inv_quad": np.einsum("ij,ij->i", Y, X), "inv_quad1": Y[0] @ X[0],
        "logdet": np.linalg.slogdet(S)[1],
        "log_quad": dense_log_quad(fs, Y, mu, alpha),
        "log_quad1": dense_log_quad(fs, Y[1], None, alpha),
        "matvec": Y @ S.T,
    }
    for assume in sorted({"general", kind}):
        got = _values(assume)(fs, Y, mu, alpha)
        for name, ref in expected.items():
            assert got[name].shape == np.shape(ref), name
            close(got[name], ref)


@pytest.mark.parametrize("shapes", [[(2, 3), (4, 1)], [(1, 2), (3, 3), (2, 5)], [(3, 2)]])
def test_matvec_rectangular(rng, shapes):
    fs = [general(rng, m, n) for m, n in shapes]
    S = dense_kron(*fs)
    Y = rng.standard_normal((2, 3, S.shape[1]))
    out = kj.matvec(fs, Y)
    assert out.shape == (2, 3, S.shape[0])
    close(out, Y @ S.T)


def test_convention_two_factors(rng):
    """kron(A, B) @ Y.ravel() == (A @ Y @ B.T).ravel(), and a Kron is accepted as factors."""
    A, B = general(rng, 3), general(rng, 4)
    Y = rng.standard_normal((3, 4))
    close(kj.matvec([A, B], Y.ravel()), (A @ Y @ B.T).ravel())
    K = kronkit.Kron(A, B)
    close(kj.solve(K, Y.ravel()), np.linalg.solve(np.kron(A, B), Y.ravel()))


def test_log_quad_broadcasts_mu(rng):
    fs = factors(rng, "spd", (2, 3))
    Y = rng.standard_normal((3, 6))
    mu = rng.standard_normal((3, 6))
    close(kj.log_quad(fs, Y, mu), dense_log_quad(fs, Y - mu))
    close(kj.log_quad(fs, Y[0], mu), dense_log_quad(fs, Y[0] - mu))  # (P,) y, (N, P) mu


# ---------------------------------------------------------------------------------------
# Derivatives vs JAX autodiff of the dense formulas
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(("kind", "dims"), [
    ("general", (2, 3)), ("general", (3, 1, 2)), ("spd", (3, 1, 2)),  # spd d = 2: below
])
def test_grad_every_argument(rng, kind, dims):
    """∂/∂(every factor, y, mu, alpha) of every function, vs jax.grad of the dense formula."""
    fns = objectives(kind)
    args = problem(rng, kind, dims)

    def grad(f):
        return jax.grad(f, argnums=(0, 1, 2, 3))

    got = jit_all(grad, {n: f[0] for n, f in fns.items()})(*args)
    ref = jit_all(grad, {n: f[1] for n, f in fns.items()})(*args)
    tree_close(got, ref)


@pytest.mark.parametrize("kind", KINDS)
def test_log_quad_grad_formula_and_fd(rng, kind):
    """∂λ/∂A = −β⁻¹ U B Zᵀ, ∂λ/∂B = −β⁻¹ Uᵀ A Z (REFERENCES §2), and central differences."""
    A, B = factors(rng, kind, (3, 4))
    y, mu = rng.standard_normal(12), rng.standard_normal(12)
    W = (y - mu).reshape(3, 4)
    Z = np.linalg.solve(A, np.linalg.solve(B, W.T).T)
    U = np.linalg.solve(A.T, np.linalg.solve(B.T, W.T).T)
    alpha = 1.0 + 2.0 * abs(np.sum(W * Z))
    beta = alpha + np.sum(W * Z)
    grad = jax.jit(jax.grad(kj.log_quad, argnums=(0, 1, 2, 3)))
    (gA, gB), gy, gmu, ga = grad([A, B], y, mu, alpha)
    close(gA, -U @ B @ Z.T / beta)
    close(gB, -U.T @ A @ Z / beta)
    close(gy, (Z + U).ravel() / beta)
    close(gmu, -(Z + U).ravel() / beta)
    close(ga, 1.0 / beta)
    fd = central_diff(lambda X: dense_log_quad([X, B], y, mu, alpha), A)
    assert_allclose(gA, fd, rtol=FD_RTOL, atol=FD_RTOL * np.max(np.abs(fd)))


@pytest.mark.parametrize("kind", KINDS)
def test_jvp_all_inputs(rng, kind):
    mats, y, mu, alpha, c = problem(rng, kind, (2, 3, 2))
    tangents = (
        [jnp.asarray(rng.standard_normal(M.shape)) for M in mats],
        jnp.asarray(rng.standard_normal(y.shape)),
        jnp.asarray(rng.standard_normal(mu.shape)),
        jnp.asarray(0.3),
        jnp.zeros_like(c),
    )
    fns = objectives(kind)

    def jvp(f):
        return lambda *primals: jax.jvp(f, primals, tangents)

    got = jit_all(jvp, {n: f[0] for n, f in fns.items()})(mats, y, mu, alpha, c)
    ref = jit_all(jvp, {n: f[1] for n, f in fns.items()})(mats, y, mu, alpha, c)
    tree_close(got, ref)


@pytest.mark.parametrize(("dims", "names"), [
    ((2, 3), ("matvec", "solve", "inv_quad", "logdet", "log_quad")),
    ((2, 1, 2), ("matvec", "logdet", "log_quad")),
])
def test_hessian_general_factors(rng, dims, names):
    """jax.hessian in every direction (non-symmetric factors, LU) vs the dense Hessian."""
    fns = {n: f for n, f in objectives("general").items() if n in names}
    mats, y, mu, alpha, c = problem(rng, "general", dims, batch=(2,))

    def hessian(f):
        return lambda *a: jax.hessian(lambda m, y, mu, al: f(m, y, mu, al, a[4]),
                                      argnums=(0, 1, 2, 3))(*a[:4])

    got = jit_all(hessian, {n: f[0] for n, f in fns.items()})(mats, y, mu, alpha, c)
    ref = jit_all(hessian, {n: f[1] for n, f in fns.items()})(mats, y, mu, alpha, c)
    tree_close(got, ref, rtol=CHAIN_RTOL)


def test_hessian_spd_along_symmetric_directions(rng):
    """assume="spd": gradients exact in every direction, Hessian-vector products along
    symmetric factor perturbations (Cholesky reads the symmetric part only)."""
    mats, y, mu, alpha, _ = problem(rng, "spd", (3, 2), batch=())
    V = [jnp.asarray(rng.standard_normal(M.shape)) for M in mats]
    V = [0.5 * (X + X.T) for X in V]
    dy = jnp.asarray(rng.standard_normal(y.shape))

    def grad_hvp(f):
        g = jax.grad(f, argnums=(0, 1))
        return lambda m, y: (g(m, y), jax.jvp(g, (m, y), (V, dy))[1])

    fns = {"ours": lambda m, y: kj.log_quad(m, y, mu, alpha, assume="spd"),
           "dense": lambda m, y: dense_lq(m, y, mu, alpha)}
    out = jit_all(grad_hvp, fns)(mats, y)
    tree_close(out["ours"], out["dense"], rtol=CHAIN_RTOL)


def test_hessian_matches_reverse_over_reverse(rng):
    """grad-of-grad Hessian-vector products agree with the dense HVP."""
    mats, y, mu, alpha, _ = problem(rng, "general", (2, 3), batch=())
    V = [jnp.asarray(rng.standard_normal(M.shape)) for M in mats]

    def hvp_rev(f):
        g = jax.grad(f)
        return jax.grad(lambda m: sum(jnp.vdot(a, b) for a, b in zip(g(m), V, strict=True)))

    fns = {"ours": lambda m: kj.log_quad(m, y, mu, alpha),
           "dense": lambda m: dense_lq(m, y, mu, alpha)}
    out = jit_all(hvp_rev, fns)(mats)
    tree_close(out["ours"], out["dense"], rtol=CHAIN_RTOL)


@pytest.mark.parametrize("assume", ["general", "auto", "spd"])
def test_eager_second_derivatives(rng, assume):
    """Forward-over-reverse and reverse-over-reverse HVPs outside ``jit`` (values concrete)
    match the dense ones: in every direction for "general" and "auto", along symmetric
    directions for "spd". Regression: the factors of concrete values carried no tangent, so
    eager second derivatives in the factors were wrong (off by O(1))."""
    mats, y, mu, alpha, _ = problem(rng, "spd", (3, 2), batch=())
    V = [jnp.asarray(rng.standard_normal(M.shape)) for M in mats]
    if assume == "spd":
        V = [0.5 * (X + X.T) for X in V]
    ours = jax.grad(lambda m: kj.log_quad(m, y, mu, alpha, assume=assume))
    dense = jax.grad(lambda m: dense_lq(m, y, mu, alpha))
    tree_close(jax.jvp(ours, (mats,), (V,))[1], jax.jvp(dense, (mats,), (V,))[1], rtol=CHAIN_RTOL)
    if assume != "spd":
        def rev(g):
            return jax.grad(lambda m: sum(jnp.vdot(a, b) for a, b in zip(g(m), V, strict=True)))
        tree_close(rev(ours)(mats), rev(dense)(mats), rtol=CHAIN_RTOL)


def test_auto_cholesky_when_values_are_known_lu_when_traced(rng):
    """assume="auto": Cholesky for an SPD factor whose values are known (plain calls, jax.grad
    outside jit, a constant under jit), LU for a non-symmetric one and for any traced factor
    (jit, vmap); "spd" is Cholesky everywhere. Results agree with "general" in every case."""
    S, G = jnp.asarray(spd(rng, 3)), jnp.asarray(general(rng, 3))
    assert JaxFactor(S, 0, "auto").kind == "cholesky"
    assert JaxFactor(G, 0, "auto").kind == "lu"
    assert JaxFactor(S, 0, "general").kind == "lu"
    kinds = []

    def kind_of(A, assume):
        kinds.append(JaxFactor(A, 0, assume).kind)
        return A

    jax.jit(lambda A: kind_of(A, "auto"))(S)
    jax.jit(lambda A: kind_of(A, "spd"))(S)
    jax.jit(lambda A: kind_of(S, "auto"))(G)  # S is a constant of the traced program
    jax.vmap(lambda A: kind_of(A, "auto"))(S[None])
    assert kinds == ["lu", "cholesky", "cholesky", "lu"]
    B = jnp.asarray(spd(rng, 2))
    y = jnp.asarray(rng.standard_normal(6))
    for fn in (lambda A: kj.log_quad([A, B], y), lambda A: kj.logdet([A, B]),
               lambda A: kj.solve([A, B], y)):
        close(fn(S), jax.jit(fn)(S))
        grad = jax.grad(lambda A, fn=fn: jnp.sum(fn(A)))
        tree_close(grad(S), jax.jit(grad)(S))


def _jaxpr_has(fn, name, *args) -> bool:
    """Whether the traced program of ``fn(*args)`` (sub-programs included) holds ``name``."""
    def walk(jaxpr):
        for eqn in jaxpr.eqns:
            if eqn.primitive.name == name:
                return True
            if any(walk(sub) for p in eqn.params.values() for sub in _sub_jaxprs(p)):
                return True
        return False
    return walk(jax.make_jaxpr(fn)(*args).jaxpr)


@pytest.mark.parametrize("dims", [(3, 4), (2, 3, 4)])
def test_auto_under_jit_chooses_at_run_time(rng, dims):
    """assume="auto" with factors traced by jit: one compiled program runs the Cholesky route
    where every factor is SPD and LU otherwise (a symmetric indefinite factor, a
    non-symmetric one); values and gradients in every argument match the dense oracle
    either way (batch of rows, d = 2 and 3)."""
    spd_mats, Y, mu, _, _ = problem(rng, "spd", dims, batch=(3,))
    gen_mats = [jnp.asarray(A) for A in factors(rng, "general", dims)]
    D = np.diag(np.linspace(-2.0, 3.0, dims[0]))
    D[np.diag_indices(dims[0])] += 0.25 * (D.diagonal() == 0)  # no zero eigenvalue
    Q, _ = np.linalg.qr(rng.standard_normal((dims[0], dims[0])))
    indefinite = [jnp.asarray(Q @ D @ Q.T), *spd_mats[1:]]

    def lam(m, y, mu, a, ours):
        return jnp.sum(kj.log_quad(m, y, mu, a) if ours else dense_lq(m, y, mu, a))

    run = jax.jit(lambda m, y, mu, a: {
        ours: jax.value_and_grad(functools.partial(lam, ours=ours), argnums=(0, 1, 2, 3))(
            m, y, mu, a)
        for ours in (True, False)})
    assert _jaxpr_has(lambda m: kj.log_quad(m, Y), "cholesky", spd_mats)  # both compiled
    assert _jaxpr_has(lambda m: kj.log_quad(m, Y), "lu", spd_mats)
    assert not _jaxpr_has(lambda m: kj.log_quad(m, Y, assume="general"), "cholesky", spd_mats)
    for mats in (spd_mats, gen_mats, indefinite):
        a = safe_alpha(mats, Y - mu)
        out = run(mats, Y, mu, a)
        tree_close(out[True], out[False])


@pytest.mark.parametrize("dims", [(4, 3), (3, 1, 2), (2, 3, 4)])
@pytest.mark.parametrize("assume", ["auto", "spd", "general"])
def test_one_vector_gradients_under_jit(rng, dims, assume):
    """One ``y`` (no batch axis: the factor gradients are products of mode unfoldings) under
    jit, with respect to every argument and to one factor alone, against the dense oracle;
    an ill-conditioned SPD factor (cond 1e6) included."""
    mats, y, mu, _, _ = problem(rng, "spd", dims, batch=())
    mats[0] = jnp.asarray(_rotated(np.geomspace(1.0, 1e-6, dims[0]), seed=5))
    alpha = safe_alpha(mats, y - mu)

    def both(f):
        every = jax.value_and_grad(f, argnums=(0, 1, 2, 3))
        last = jax.grad(lambda M, m, y, mu, a: f([*m[:-1], M], y, mu, a))
        return lambda m, y, mu, a: (every(m, y, mu, a), last(m[-1], m, y, mu, a))

    fns = {"ours": lambda m, y, mu, a: kj.log_quad(m, y, mu, a, assume=assume),
           "dense": lambda m, y, mu, a: dense_lq(m, y, mu, a)}
    out = jit_all(both, fns)(mats, y, mu, alpha)
    tree_close(out["ours"], out["dense"])  # RTOL = 1e-10


def test_auto_under_jit_second_derivatives_every_direction(rng):
    """Under an outer derivative (jit of jvp-of-grad, of grad-of-grad, of jax.hessian) "auto"
    keeps LU for traced factors, so second derivatives of SPD factors stay exact along
    non-symmetric directions too; a gradient with respect to one factor only agrees too."""
    mats, y, mu, alpha, _ = problem(rng, "spd", (3, 2), batch=())
    V = [jnp.asarray(rng.standard_normal(M.shape)) for M in mats]
    fns = {"ours": lambda m: kj.log_quad(m, y, mu, alpha),
           "dense": lambda m: dense_lq(m, y, mu, alpha)}

    def second(f):
        g = jax.grad(f)
        rev = jax.grad(lambda m: sum(jnp.vdot(a, b) for a, b in zip(g(m), V, strict=True)))
        one = jax.grad(lambda A, m: f([A, m[1]]))
        return lambda m: (jax.jvp(g, (m,), (V,))[1], rev(m), jax.hessian(f)(m), one(m[0], m))

    out = jit_all(second, fns)(mats)
    tree_close(out["ours"], out["dense"], rtol=CHAIN_RTOL)


# ---------------------------------------------------------------------------------------
# jit, vmap, float32
# ---------------------------------------------------------------------------------------
def test_jit_matches_eager(rng):
    mats, y, mu, alpha, _ = problem(rng, "general", (3, 2))

    def f(m, y):
        return jnp.sum(kj.log_quad(m, y, mu, alpha))

    grad = jax.grad(f, argnums=(0, 1))
    close(jax.jit(f)(mats, y), f(mats, y))
    tree_close(jax.jit(grad)(mats, y), grad(mats, y))


@pytest.mark.parametrize("kind", KINDS)
def test_vmap_over_rows_and_factors(rng, kind):
    mats, Y, mu, alpha, _ = problem(rng, kind, (2, 3), batch=(5,))
    fns = {
        "inv_quad": lambda y: kj.inv_quad(mats, y, assume=kind),
        "log_quad": lambda y: kj.log_quad(mats, y, mu, alpha, assume=kind),
        "solve": lambda y: kj.solve(mats, y, assume=kind),
        "matvec": lambda y: kj.matvec(mats, y),
    }
    vmapped = jit_all(jax.vmap, fns)(Y)
    rows = jit_all(lambda f: f, fns)(Y)  # leading batch axes = rows
    one = jit_all(lambda f: f, fns)
    looped = [one(y) for y in Y]
    for name in fns:
        close(vmapped[name], rows[name])
        close(vmapped[name], jnp.stack([lp[name] for lp in looped]))
    # a batch of factor pairs, and per-row gradients
    As = jnp.stack([jnp.asarray(A) for A in factors(rng, kind, (2,) * 5)])
    B = mats[1]

    @jax.jit
    def g(A, y):
        return jax.grad(lambda A, B: kj.log_quad([A, B], y, mu, alpha, assume=kind),
                        argnums=(0, 1))(A, B)

    batched = jax.jit(jax.vmap(g))(As, Y)
    looped = [g(A, y) for A, y in zip(As, Y, strict=True)]
    for k in range(2):
        close(batched[k], jnp.stack([lp[k] for lp in looped]))


def test_float32(rng):
    fs64 = factors(rng, "spd", (3, 4))
    Y64 = rng.standard_normal((2, 12))
    fs = [A.astype(np.float32) for A in fs64]
    Y = Y64.astype(np.float32)

    @jax.jit
    def run(fs, Y):
        lam = jax.value_and_grad(lambda fs: jnp.sum(kj.log_quad(fs, Y)))
        return lam(fs), kj.inv_quad(fs, Y, assume="spd"), kj.logdet(fs), kj.solve(fs, Y), \
            kj.matvec(fs, Y)

    (lam, g), q, ld, x, mv = run(fs, Y)
    S = dense_kron(*fs64)
    g_ref = jax.jit(jax.grad(lambda fs: jnp.sum(dense_lq(fs, Y64, 0.0, 1.0))))(fs64)
    for out, ref in [
        (lam, np.sum(dense_log_quad(fs64, Y64))), (q, dense_inv_quad(fs64, Y64)),
        (ld, np.linalg.slogdet(S)[1]), (x, np.linalg.solve(S, Y64.T).T), (mv, Y64 @ S.T),
        (g[0], g_ref[0]), (g[1], g_ref[1]),
    ]:
        assert out.dtype == jnp.float32
        close(out, ref, rtol=F32_RTOL)


# ---------------------------------------------------------------------------------------
# Nothing P×P in the traced program (first and second derivatives)
# ---------------------------------------------------------------------------------------
def _sub_jaxprs(value):
    items = value if isinstance(value, (list, tuple)) else [value]
    for item in items:
        if isinstance(item, jex_core.ClosedJaxpr):
            yield item.jaxpr
        elif isinstance(item, jex_core.Jaxpr):
            yield item


def largest_array(jaxpr) -> int:
    """Largest number of elements of any variable in ``jaxpr`` and all its sub-jaxprs."""
    sizes = [int(np.prod(v.aval.shape)) for v in (*jaxpr.invars, *jaxpr.constvars)]
    for eqn in jaxpr.eqns:
        sizes += [int(np.prod(v.aval.shape)) for v in eqn.outvars if hasattr(v.aval, "shape")]
        for param in eqn.params.values():
            sizes += [largest_array(sub) for sub in _sub_jaxprs(param)]
    return max(sizes, default=0)


@pytest.mark.parametrize("assume", ["general", "spd"])
@pytest.mark.parametrize("dims", [(300, 300), (50, 40, 45)])
def test_traced_program_holds_no_p_squared_array(dims, assume):
    P = int(np.prod(dims))
    limit = P * P  # 8.1e9 elements
    mats = [jax.ShapeDtypeStruct((n, n), jnp.float64) for n in dims]
    y = jax.ShapeDtypeStruct((P,), jnp.float64)

    def lam(mats, y):
        return kj.log_quad(mats, y, None, 1.0, assume=assume)

    grad = jax.grad(lam, argnums=(0, 1))

    def hvp(mats, y):  # forward-over-reverse
        return jax.jvp(grad, (mats, y), (mats, y))[1]

    def hvp_rr(mats, y):  # reverse-over-reverse
        return jax.grad(lambda m: jnp.vdot(grad(m, y)[1], y))(mats)

    def solve_hvp(mats, y):
        g = jax.grad(lambda m, y: jnp.sum(kj.solve(m, y, assume=assume) * y), argnums=(0, 1))
        return jax.jvp(g, (mats, y), (mats, y))[1]

    for fn in (grad, hvp, hvp_rr, solve_hvp):
        jaxpr = jax.make_jaxpr(fn)(mats, y).jaxpr
        assert largest_array(jaxpr) < limit
    # the check can fail: the dense formula's gradient holds a P×P array
    dense = jax.grad(lambda mats, y: dense_lq(mats, y, 0.0, 1.0))
    assert largest_array(jax.make_jaxpr(dense)(mats, y).jaxpr) >= limit


# ---------------------------------------------------------------------------------------
# Bad input, undefined points, optional import
# ---------------------------------------------------------------------------------------
def test_bad_input_errors(rng):
    A, B = spd(rng, 2), spd(rng, 3)
    y = rng.standard_normal(6)
    with pytest.raises(ValueError, match=r"`y` must have length 6"):
        kj.inv_quad([A, B], np.ones(5))
    with pytest.raises(ValueError, match=r"`y`"):
        kj.solve([A, B], np.float64(1.0))
    with pytest.raises(ValueError, match=r"`mu` must have length 6"):
        kj.log_quad([A, B], y, np.ones(4))
    with pytest.raises(ValueError, match=r"`factors\[1\]` must be square"):
        kj.solve([A, np.ones((3, 2))], y)
    with pytest.raises(ValueError, match=r"`factors\[0\]` must be 2-D"):
        kj.matvec([np.ones(3), B], np.ones(9))
    with pytest.raises(TypeError, match=r"`factors`"):
        kj.inv_quad(np.eye(6), y)
    with pytest.raises(ValueError, match=r"`factors`"):
        kj.logdet([])
    with pytest.raises(TypeError, match=r"`factors\[0\]` is complex"):
        kj.logdet([A + 0j, B])
    with pytest.raises(ValueError, match=r"`alpha` must be a scalar"):
        kj.log_quad([A, B], y, alpha=np.ones(2))
    with pytest.raises(ValueError, match=r"`assume` must be one of \('auto', 'general', 'spd'\)"):
        kj.solve([A, B], y, assume="symmetric")
    with pytest.raises(ValueError, match=r"`y`"):  # also at trace time
        jax.jit(lambda y: kj.inv_quad([A, B], y))(np.ones(7))


def test_undefined_points(rng):
    A, B = spd(rng, 2), spd(rng, 3)
    y = rng.standard_normal(6)
    singular = np.array([[1.0, 2.0], [2.0, 4.0]])
    with pytest.raises(kronkit.SingularFactorError, match=r"`factors\[0\]`"):
        kj.solve([singular, B], y)
    with pytest.raises(kronkit.NotPositiveDefiniteError, match=r"`factors\[1\]`"):
        kj.inv_quad([A, -B], y, assume="spd")
    with pytest.raises(kronkit.DomainError, match="negative"):
        kj.logdet([np.diag([-1.0, 2.0]), B])  # det S = (−2)^3 · ... < 0
    assert np.isfinite(kj.logdet([np.diag([-1.0, 2.0]), spd(rng, 2)]))  # even power: det > 0
    with pytest.raises(kronkit.DomainError, match="β"):
        kj.log_quad([A, -B], y, alpha=0.0)
    # under jit nothing can raise: the documented result is NaN, as jnp.log gives
    assert np.isnan(jax.jit(lambda A: kj.log_quad([A, -B], y, alpha=0.0))(A))


TRIANGULAR = np.array([[1.0, 1.0, 0.0], [0.0, 1e-20, 0.0], [0.0, 0.0, 1.0]])  # no zero pivot


def _rotated(eigenvalues, seed=3):
    n = len(eigenvalues)
    Q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((n, n)))
    A = (Q * np.asarray(eigenvalues)) @ Q.T
    return (A + A.T) / 2


def test_edge_contract_eager_and_under_grad(rng):
    """Issue 9: eager calls (and jax.grad outside jit) raise as Kron and kronkit.torch do."""
    B = spd(rng, 2)
    y = rng.standard_normal(6)
    nonsym = np.array([[2.0, 1.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 1.0]])
    with pytest.raises(kronkit.NotPositiveDefiniteError, match="not symmetric") as info:
        kj.solve([B, nonsym], y, assume="spd")  # used to solve with (A + Aᵀ)/2 silently
    assert info.value.factor == 1
    with pytest.raises(kronkit.NotPositiveDefiniteError, match="not symmetric"):
        jax.grad(lambda A: kj.logdet([B, A], assume="spd"))(nonsym)
    bad = y.copy()
    bad[2] = np.inf
    with pytest.raises(ValueError, match="`y` contains NaN or Inf"):
        kj.inv_quad([B, np.eye(3)], bad)  # used to return NaN
    with pytest.raises(ValueError, match="`y` contains NaN or Inf"):
        jax.grad(lambda y: kj.log_quad([B, np.eye(3)], y))(jnp.asarray(bad))
    with pytest.raises(ValueError, match=r"`factors\[0\]` contains NaN or Inf"):
        kj.matvec([np.full((2, 2), np.nan), np.eye(3)], y)
    # exactly singular: logdet = −inf as Kron.logdet (and np.linalg.slogdet) give; solve raises
    exact = np.array([[1.0, 2.0], [2.0, 4.0]])
    assert np.linalg.slogdet(np.kron(exact, np.eye(3)))[1] == -np.inf
    assert kj.logdet([exact, np.eye(3)]) == -np.inf  # used to raise SingularFactorError
    with pytest.raises(kronkit.SingularFactorError, match=r"`factors\[0\]`"):
        kj.solve([exact, np.eye(3)], y)
    with pytest.raises(kronkit.SingularFactorError):  # the derivative A⁻ᵀ does not exist
        jax.grad(lambda A: kj.logdet([A, np.eye(3)]))(exact)
    # singular to working precision (rcond ≈ 6e-18, 5e-21): logdet raises as solve does
    for F, assume in [(_rotated([1.0, 1e-9, 1e-20]), "spd"), (TRIANGULAR, "general")]:
        with pytest.raises(kronkit.SingularFactorError) as info:
            kj.logdet([F, np.eye(2)], assume=assume)
        assert info.value.factor == 0 and 0 < info.value.rcond <= np.finfo(float).eps
    # ill-conditioned: one warning with the condition estimate, value accurate to κ·eps
    A = _rotated([1.0, 1e-10, 3.0])
    with pytest.warns(kronkit.IllConditionedWarning) as rec:
        value = kj.logdet([A, np.eye(2)], assume="spd")
    assert len(rec) == 1 and rec[0].message.factor == 0 and rec[0].filename == __file__
    assert rec[0].message.rcond == pytest.approx(1 / np.linalg.cond(A, 1), rel=0.5)
    assert float(value) == pytest.approx(2 * np.log(3e-10), abs=1e-5)


def test_edge_contract_under_jit(rng):
    """Under jit (and vmap) nothing can raise: where an eager call raises, the result is NaN
    (an exact zero pivot still gives logdet = −inf); no warning."""
    B = spd(rng, 2)
    y = jnp.asarray(rng.standard_normal(6))
    nonsym = np.array([[2.0, 1.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 1.0]])
    numsing = _rotated([1.0, 1e-9, 1e-20])

    @functools.partial(jax.jit, static_argnames="assume")
    def run(A, y, assume):
        return (kj.solve([B, A], y, assume=assume), kj.inv_quad([B, A], y, assume=assume),
                kj.log_quad([B, A], y, assume=assume), kj.logdet([B, A], assume=assume),
                jax.grad(lambda A: kj.logdet([B, A], assume=assume))(A))

    for A, assume in [(nonsym, "spd"), (numsing, "spd"), (TRIANGULAR, "general"),
                      (TRIANGULAR, "auto")]:
        for out in run(A, y, assume):
            assert np.all(np.isnan(out)), (assume, out)  # was finite and wrong
    # "auto"'s run-time choice: NaN whichever route it takes
    assert np.all(np.isnan(run(numsing, y, "auto")[1:3]))
    exact = np.array([[1.0, 2.0, 0.0], [2.0, 4.0, 0.0], [0.0, 0.0, 1.0]])
    x, q, lam, ld, _ = run(exact, y, "general")
    assert ld == -np.inf and np.all(np.isnan(x)) and np.isnan(q) and np.isnan(lam)
    bad = y.at[2].set(np.inf)
    assert np.isnan(jax.jit(lambda y: kj.log_quad([B, nonsym], y))(bad))
    # well-conditioned and ill-conditioned factors are untouched (values match eager)
    A = _rotated([1.0, 1e-10, 3.0])
    with pytest.warns(kronkit.IllConditionedWarning):
        eager = kj.logdet([B, A], assume="spd")
    assert run(A, y, "spd")[3] == eager
    batched = jax.vmap(lambda A: kj.logdet([B, A], assume="spd"))(jnp.stack([A, numsing]))
    assert batched[0] == eager and np.isnan(batched[1])


@pytest.mark.parametrize("n", [5, 70])  # exact rcond up to 64, the Hager–Higham estimate above
def test_traced_rcond_against_dense_condition_number(rng, n):
    Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    rcond = jax.jit(lambda A, L: (traced_rcond(A, L, "cholesky"),
                                  traced_rcond(A, jax.scipy.linalg.lu_factor(A)[0], "lu")))
    for smallest in (1e-3, 1e-12):
        A = (Q * np.logspace(0, np.log10(smallest), n)) @ Q.T
        A = (A + A.T) / 2
        truth = 1.0 / np.linalg.cond(A, 1)
        for est in rcond(A, np.linalg.cholesky(A)):
            assert truth * 0.999 <= float(est) <= 3.0 * truth  # ‖A⁻¹‖₁ from below, factor 3
    M = rng.standard_normal((n, n))
    M[:, -1] = M[:, 0]  # singular (the computed pivot may or may not be exactly zero)
    f = jax.jit(lambda A: kj.solve([A, np.eye(2)], jnp.ones(2 * n)))
    assert np.all(np.isnan(f(M)))
    assert np.all(np.isfinite(f(M + n * np.eye(n))))


def test_import_kronkit_does_not_import_jax():
    code = "import sys, kronkit; assert 'jax' not in sys.modules, 'jax imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_missing_jax_names_the_extra():
    code = (
        "import sys; sys.modules['jax'] = None\n"
        "try:\n    import kronkit.jax\nexcept ImportError as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert "pip install kronkit[jax]" in out.stdout
