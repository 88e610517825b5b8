"""log_quad_hvp against jax.hessian of the dense formula, finite differences and identities."""

from __future__ import annotations

import numpy as np
import pytest

import kronkit
from helpers import ATOL, CHAIN_RTOL, FD_RTOL, ROUNDING, RTOL, ULPS, dense_kron
from helpers import factors as catalogue_factors
from kronkit import DomainError, LogQuadHVP, SingularFactorError, log_quad_grad, log_quad_hvp

# The catalogue kinds used here, with today's condition caps: "spd"; "near-spd" (SPD + a skew
# part, so q > 0 for every y); "general" (unstructured non-symmetric: q of either sign).
COND_CAPS = {"spd": 20.0, "near-spd": 20.0, "general": 50.0}


def _problem(rng, dims, kind, N=None, mu_kind="none"):
    """Factors, y, μ, a direction (dA, dy) and α with β = α + q > 1 for every observation."""
    factors = catalogue_factors(rng, dims, kind, COND_CAPS[kind])
    P = int(np.prod(dims))
    y = rng.standard_normal(P if N is None else (N, P))
    mu = {"none": None, "shared": rng.standard_normal(P),
          "per_obs": rng.standard_normal(y.shape)}[mu_kind]
    Y = np.atleast_2d(y - (0.0 if mu is None else mu))
    q = np.einsum("ij,ij->i", Y, np.linalg.solve(dense_kron(*factors), Y.T).T)
    alpha = 1.3 + 2.0 * max(0.0, -float(q.min()))
    dA = [rng.standard_normal((p, p)) for p in dims]
    dy = rng.standard_normal(y.shape)
    return factors, y, mu, dA, dy, alpha


# ---------------------------------------------------------------------------------------
# Against jax.hessian of the dense formula
# ---------------------------------------------------------------------------------------


CASES = [
    ((2, 3), "spd", None, "none", "sum"),
    ((3, 2), "general", None, "shared", "sum"),
    ((1, 3), "near-spd", None, "none", "sum"),
    ((2, 3, 2), "spd", 2, "shared", "mean"),
    ((2, 2, 3), "general", None, "none", "sum"),
    ((2, 3), "near-spd", 3, "per_obs", "sum"),
]


@pytest.mark.parametrize(("dims", "kind", "N", "mu_kind", "reduce"), CASES)
def test_hvp_matches_jax_hessian(rng, jax_x64, dims, kind, N, mu_kind, reduce):
    jax = jax_x64
    import jax.numpy as jnp

    factors, y, mu, dA, dy, alpha = _problem(rng, dims, kind, N, mu_kind)
    sizes = [F.size for F in factors] + [y.size]
    shapes = [F.shape for F in factors] + [y.shape]
    d = len(dims)

    def unpack(theta):
        out, i = [], 0
        for n, sh in zip(sizes, shapes, strict=True):
            out.append(theta[i:i + n].reshape(sh))
            i += n
        return out

    def f(theta):
        parts = unpack(theta)
        S = parts[0]
        for F in parts[1:d]:
            S = jnp.kron(S, F)
        W = jnp.atleast_2d(parts[d] - (0.0 if mu is None else mu))
        q = jnp.einsum("ij,ij->i", W, jnp.linalg.solve(S, W.T).T)
        lam = jnp.log(alpha + q)
        return jnp.mean(lam) if reduce == "mean" else jnp.sum(lam)

    theta = np.concatenate([F.ravel() for F in factors] + [y.ravel()])
    v = np.concatenate([D.ravel() for D in dA] + [dy.ravel()])
    value, grad, H = jax.jit(lambda t: (f(t), jax.grad(f)(t), jax.hessian(f)(t)))(theta)
    Hv = unpack(np.asarray(H) @ v)
    grad = unpack(np.asarray(grad))

    res = log_quad_hvp(factors, y, tuple(dA), mu, alpha, dy=dy, reduce=reduce)
    assert isinstance(res, LogQuadHVP)
    for got, want in zip((*res.factors, res.y), Hv, strict=True):
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL * np.max(np.abs(H)))
    for got, want in zip((*res.grad.factors, res.grad.y), grad, strict=True):
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=ULPS)
    np.testing.assert_allclose(res.value, float(value), rtol=RTOL)
    # the gradient part agrees with log_quad_grad (same reduction, same μ handling)
    g = log_quad_grad(factors, y, mu, alpha, reduce=reduce)
    for got, want in zip((*res.grad.factors, res.grad.y, res.grad.mu), (*g.factors, g.y, g.mu),
                         strict=True):
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=ULPS)
    np.testing.assert_allclose(res.grad.alpha, g.alpha, rtol=RTOL)


# ---------------------------------------------------------------------------------------
# Against finite differences of log_quad_grad
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("dims", [(2, 3), (3, 1, 2)])
@pytest.mark.parametrize("kind", ["spd", "near-spd", "general"])
@pytest.mark.parametrize("N", [None, 4])
def test_hvp_matches_finite_differences_of_gradient(rng, dims, kind, N):
    factors, y, mu, dA, dy, alpha = _problem(rng, dims, kind, N, "shared")
    h = 1e-5

    def grad_at(t):
        g = log_quad_grad([F + t * D for F, D in zip(factors, dA, strict=True)], y + t * dy, mu,
                          alpha)
        return (*g.factors, g.y)

    fd = [(gp - gm) / (2 * h) for gp, gm in zip(grad_at(h), grad_at(-h), strict=True)]
    res = log_quad_hvp(factors, y, dA, mu, alpha, dy=dy)
    for got, want in zip((*res.factors, res.y), fd, strict=True):
        scale = max(1.0, float(np.max(np.abs(want))))
        np.testing.assert_allclose(got, want, rtol=FD_RTOL, atol=FD_RTOL * scale)


# ---------------------------------------------------------------------------------------
# Identities
# ---------------------------------------------------------------------------------------
def _inner(u, v):
    return sum(float(np.sum(a * b)) for a, b in zip(u, v, strict=True))


@pytest.mark.parametrize("kind", ["spd", "general"])
def test_hessian_is_symmetric(rng, kind):
    factors, y, _, dA1, dy1, alpha = _problem(rng, (2, 3, 2), kind, N=3)
    dA2 = [rng.standard_normal(D.shape) for D in dA1]
    dy2 = rng.standard_normal(dy1.shape)
    h1 = log_quad_hvp(factors, y, dA1, alpha=alpha, dy=dy1)
    h2 = log_quad_hvp(factors, y, dA2, alpha=alpha, dy=dy2)
    a = _inner((*dA2, dy2), (*h1.factors, h1.y))
    b = _inner((*dA1, dy1), (*h2.factors, h2.y))
    np.testing.assert_allclose(a, b, rtol=RTOL)


@pytest.mark.parametrize("kind", ["spd", "near-spd", "general"])
def test_gauge_direction_d2(rng, kind):
    """λ is constant along (eᵗA, e⁻ᵗB): ⟨∇λ, (A, −B)⟩ = 0 and H(A, −B) = (−∇_Aλ, ∇_Bλ)."""
    (A, B), y, mu, _, _, alpha = _problem(rng, (3, 2), kind, mu_kind="shared")
    g = log_quad_grad([A, B], y, mu, alpha)
    np.testing.assert_allclose(np.sum(g.A * A), np.sum(g.B * B), rtol=RTOL)
    res = log_quad_hvp([A, B], y, (A, -B), mu, alpha)
    np.testing.assert_allclose(res.factors[0], -g.A, rtol=RTOL, atol=ULPS)
    np.testing.assert_allclose(res.factors[1], g.B, rtol=RTOL, atol=ULPS)
    np.testing.assert_allclose(res.y, 0.0, atol=ULPS)
    # the same from finite differences of the gradient along the exact curve
    h = 1e-5

    def grad_on_curve(t):
        gc = log_quad_grad([np.exp(t) * A, np.exp(-t) * B], y, mu, alpha)
        return gc.A, gc.B, gc.y

    for got, gp, gm in zip((*res.factors, res.y), grad_on_curve(h), grad_on_curve(-h),
                           strict=True):
        np.testing.assert_allclose(got, (gp - gm) / (2 * h), rtol=FD_RTOL, atol=FD_RTOL)
    # curvature along the tangent: (A,−B)ᵀH(A,−B) = −∇λ·(A, B) = 2q/β (the curve bends)
    beta = np.exp(g.value)
    curv = _inner((A, -B), res.factors)
    np.testing.assert_allclose(curv, 2 * (beta - alpha) / beta, rtol=RTOL)


def test_gauge_directions_d3_batch(rng):
    factors, Y, _, _, _, alpha = _problem(rng, (2, 3, 2), "general", N=3)
    g = log_quad_grad(factors, Y, alpha=alpha)
    for j, k in [(0, 1), (0, 2), (1, 2)]:
        dirs = [None, None, None]
        dirs[j] = factors[j]
        dirs[k] = -factors[k]
        res = log_quad_hvp(factors, Y, tuple(dirs), alpha=alpha)
        want = [np.zeros_like(F) for F in factors]
        want[j] = -g.factors[j]
        want[k] = g.factors[k]
        for got, w in zip(res.factors, want, strict=True):
            np.testing.assert_allclose(got, w, rtol=RTOL, atol=ULPS)
        np.testing.assert_allclose(res.y, 0.0, atol=ATOL)


@pytest.mark.parametrize("kind", ["spd", "general"])
def test_scaling_direction_closed_form(rng, kind):
    """Along s ↦ ((1+s)A, B): λ = log(α + q/(1+s)), so vᵀHv = 2q/β − q²/β² for v = (A, 0, 0)."""
    (A, B), y, _, _, _, alpha = _problem(rng, (2, 3), kind)
    res = log_quad_hvp([A, B], y, (A, None), alpha=alpha)
    beta = np.exp(res.value)
    q = beta - alpha
    np.testing.assert_allclose(_inner((A,), res.factors[:1]), 2 * q / beta - q**2 / beta**2,
                               rtol=CHAIN_RTOL)
    assert res.factors[1].shape == (3, 3)


def test_y_only_direction_matches_dense(rng):
    """dA = 0: [Hv]_y = β⁻¹(S⁻¹ + S⁻ᵀ)dy − β⁻² (∇q·dy) ∇q with dense S."""
    factors, y, _, _, dy, alpha = _problem(rng, (2, 3), "general")
    Si = np.linalg.inv(np.kron(*factors))
    gq = (Si + Si.T) @ y
    beta = alpha + y @ Si @ y
    want = (Si + Si.T) @ dy / beta - (gq @ dy) * gq / beta**2
    res = log_quad_hvp(factors, y, (None, None), alpha=alpha, dy=dy)
    np.testing.assert_allclose(res.y, want, rtol=RTOL)
    # and the cross term ∂²λ/∂A∂y · dy, against finite differences in y
    h = 1e-6
    fd = (log_quad_grad(factors, y + h * dy, alpha=alpha).A
          - log_quad_grad(factors, y - h * dy, alpha=alpha).A) / (2 * h)
    np.testing.assert_allclose(res.factors[0], fd, rtol=FD_RTOL, atol=FD_RTOL)


def test_batch_sum_is_sum_of_singles_and_mean(rng):
    factors, Y, _, dA, dY, alpha = _problem(rng, (3, 2), "general", N=4)
    total = log_quad_hvp(factors, Y, dA, alpha=alpha, dy=dY)
    mean = log_quad_hvp(factors, Y, dA, alpha=alpha, dy=dY, reduce="mean")
    singles = [log_quad_hvp(factors, Y[i], dA, alpha=alpha, dy=dY[i]) for i in range(4)]
    for k in range(2):
        s = sum(r.factors[k] for r in singles)
        np.testing.assert_allclose(total.factors[k], s, rtol=RTOL)
        np.testing.assert_allclose(mean.factors[k], s / 4, rtol=RTOL)
    np.testing.assert_allclose(total.y, np.stack([r.y for r in singles]), rtol=RTOL)
    np.testing.assert_allclose(mean.y, total.y / 4, rtol=RTOL)
    np.testing.assert_allclose(total.value, sum(r.value for r in singles), rtol=ROUNDING)


# ---------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------
def test_bad_input(rng):
    (A, B), y, _, (dA, dB), dy, _ = _problem(rng, (2, 3), "near-spd")
    with pytest.raises(TypeError, match="`directions`"):
        log_quad_hvp([A, B], y, np.zeros((2, 2)))
    with pytest.raises(ValueError, match="`directions` must hold one direction per factor"):
        log_quad_hvp([A, B], y, (dA,))
    with pytest.raises(ValueError, match=r"`directions\[1\]` must have the shape .*\(3, 3\)"):
        log_quad_hvp([A, B], y, (dA, dA))
    with pytest.raises(ValueError, match=r"`directions\[0\]` contains NaN"):
        log_quad_hvp([A, B], y, (np.full((2, 2), np.nan), dB))
    with pytest.raises(ValueError, match="`dy` must have the shape of `y`"):
        log_quad_hvp([A, B], y, (dA, dB), dy=np.ones(5))
    with pytest.raises(ValueError, match="`dy` must have the shape of `y`"):
        log_quad_hvp([A, B], np.stack([y, y]), (dA, dB), dy=dy)
    with pytest.raises(ValueError, match="`dy` contains NaN"):
        log_quad_hvp([A, B], y, (dA, dB), dy=np.full(6, np.nan))
    with pytest.raises(ValueError, match="`reduce`"):
        log_quad_hvp([A, B], y, (dA, dB), reduce=None)
    with pytest.raises(ValueError, match="`y` must have length P = 6"):
        log_quad_hvp([A, B], np.ones(7), (dA, dB))
    with pytest.raises(DomainError, match="beta"):
        log_quad_hvp([A, B], y, (dA, dB), alpha=-1e6)
    with pytest.raises(SingularFactorError):
        log_quad_hvp([np.zeros((2, 2)), B], y, (dA, dB))


def test_inputs_not_modified(rng):
    factors, y, mu, dA, dy, _ = _problem(rng, (2, 3), "spd", N=2, mu_kind="per_obs")
    saved = [x.copy() for x in (*factors, y, mu, *dA, dy)]
    log_quad_hvp(factors, y, dA, mu, dy=dy)
    for x, s in zip((*factors, y, mu, *dA, dy), saved, strict=True):
        np.testing.assert_array_equal(x, s)


def test_exports():
    assert "log_quad_hvp" in kronkit.__all__ and "LogQuadHVP" in kronkit.__all__
