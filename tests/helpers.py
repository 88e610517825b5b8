"""Dense oracles and well-conditioned random matrices shared by the tests."""

from __future__ import annotations

import functools

import numpy as np

# ---------------------------------------------------------------------------------------
# Tolerances live here, in one place: one name per kind of comparison, tightest first
# (eps = 2.2e-16). As ``atol`` a name is the absolute slack for unit-scale data, whose
# entries may cancel to ~0 (``atol=RTOL`` on O(1) reconstructions), or it is multiplied by the
# data's scale at the call (``atol=ATOL * np.max(np.abs(H))``).
# A literal left in a test is special: an exact 0 (bit identity, or "no absolute slack"), a
# bound tied to a stated conditioning or formula (COND_TOL, 1e-16·κ), a published or
# measured bound, an external optimiser's accuracy, sampling error, or an absolute slack
# tied to the data of that test (finite differences of O(P) functions, float32 samples).
# ---------------------------------------------------------------------------------------
ULPS = 1e-14  # a few dozen ulps: the same computation in another order (dask chunks vs
#               NumPy, t with ν = ∞ vs the normal, power-of-ten rescaling), an identity of a
#               handful of operations, or structure of a result (symmetry, skew, Toeplitz)
ROUNDING = 1e-12  # two routes to one well-conditioned quantity that differ only by rounding:
#                   a file round trip (CLI), another backend or factorisation, scipy's
#                   densities and special functions vs ours or vs 50-digit mpmath
RTOL = 1e-10  # the default: float64 results of well-conditioned problems vs the dense oracle
#               (errors ~ κ·eps·dims with κ < COND_CAP per factor, plus a wide margin)
ATOL = 1e-12  # the default absolute slack next to RTOL, for entries that are ~0
CHAIN_RTOL = 1e-9  # one step further from the data than RTOL: derivatives compared across
#                    routes (closed form vs autodiff, kpsvd route), Hessians and HVPs, long
#                    chains (P = 250 000 sums, whitening + eigen-decomposition), quantities
#                    amplified by one more operation (exp of a log-density, an inverse, a
#                    statistic that is a difference of log-likelihoods), fits run to ~1e-14
ITER_RTOL = 1e-8  # iterative methods at the tolerances the tests use (EM / flip-flop fits at
#                   their default tol, Lanczos, randomized SVD, alternating sweeps) against a
#                   dense or converged reference, or against the same fit of transformed data
SQRT_EPS_RTOL = 1e-6  # what a computation fixes only to ~sqrt(eps) = 1.5e-8 (times modest
#                       conditioning): parameters of a fit converged in its objective, the
#                       stationarity condition at its fixed point, residual norms that cancel
#                       (‖M‖² − Σσ²) or are compared with a dense difference ‖M − K‖
FD_RTOL = 1e-6  # central finite differences (step ~1e-6 relative: error ~ h² + eps·|f|/h)
F32_RTOL = 1e-4  # float32 results vs float64 ones (eps32 = 1.2e-7, times dims and conditioning)

COND_CAP = 1e3  # matrices are redrawn until their condition number is below this


def spd(rng: np.random.Generator, n: int, cond_cap: float = COND_CAP) -> np.ndarray:
    """A random symmetric positive definite n×n matrix with condition number < cond_cap."""
    while True:
        X = rng.standard_normal((n, n))
        A = X @ X.T / n + 0.5 * np.eye(n)
        A = 0.5 * (A + A.T)
        if np.linalg.cond(A) < cond_cap:
            return A


def general(rng: np.random.Generator, n: int, m: int | None = None,
            cond_cap: float = COND_CAP) -> np.ndarray:
    """A random (non-symmetric) matrix; square ones are redrawn until well conditioned."""
    m = n if m is None else m
    while True:
        A = rng.standard_normal((n, m)) + (2.0 * np.eye(n, m) if n == m else 0.0)
        if n != m or np.linalg.cond(A) < cond_cap:
            return A


FACTOR_KINDS = ("spd", "general", "general+", "indefinite", "near-spd", "mixed")


def factor(rng: np.random.Generator, n: int, kind: str = "spd",
           cond_cap: float = COND_CAP) -> np.ndarray:
    """One n×n test factor from the catalogue, condition number below ``cond_cap``.

    ``"spd"``: symmetric positive definite. ``"general"``: non-symmetric. ``"general+"``:
    non-symmetric with ``det > 0`` (so ``log det`` of a product is defined). ``"indefinite"``:
    symmetric, not positive definite (LU route on a symmetric matrix). ``"near-spd"``:
    ``S^{1/2}(I + E)S^{1/2}`` with ``S`` SPD and a skew ``E``, ``‖E‖ ≤ 1/4`` (non-symmetric, but
    the symmetric part of a product of up to three such factors is positive definite, so
    ``q = wᵀK⁻¹w > 0`` for every ``w``).
    """
    if kind == "spd":
        return spd(rng, n, cond_cap)
    if kind == "general":
        return general(rng, n, cond_cap=cond_cap)
    if kind == "general+":
        A = general(rng, n, cond_cap=cond_cap)
        if np.linalg.det(A) < 0:
            A[0] *= -1.0  # flips the sign of det A, keeps the conditioning
        return A
    if kind == "indefinite":
        while True:
            X = rng.standard_normal((n, n))
            A = X + X.T + (2.0 * np.eye(n) if n == 1 else 0.0)
            if np.linalg.cond(A) < cond_cap:
                return A
    if kind == "near-spd":
        S = spd(rng, n, cond_cap)
        if n == 1:
            return S
        X = rng.standard_normal((n, n))
        E = X - X.T
        E *= 0.25 / np.linalg.norm(E, 2)
        w, V = np.linalg.eigh(S)
        half = (V * np.sqrt(w)) @ V.T
        return half @ (np.eye(n) + E) @ half
    raise ValueError(f"unknown factor kind {kind!r}; one of {FACTOR_KINDS}")


def factors(rng: np.random.Generator, dims, kind: str = "spd",
            cond_cap: float = COND_CAP) -> list[np.ndarray]:
    """Test factors of sizes ``dims`` (see :func:`factor`); ``"mixed"`` alternates SPD and
    general (SPD first)."""
    if kind == "mixed":
        return [factor(rng, n, "spd" if k % 2 == 0 else "general", cond_cap)
                for k, n in enumerate(dims)]
    return [factor(rng, n, kind, cond_cap) for n in dims]


def dense_kron(*factors: np.ndarray) -> np.ndarray:
    """The dense oracle: np.kron(A1, np.kron(A2, ...))."""
    return functools.reduce(np.kron, factors)


def matrix_samples(rng: np.random.Generator, N: int, A: np.ndarray, B: np.ndarray, *,
                   mean=None, df=None) -> np.ndarray:
    """N draws of (p, q) matrices with vec-covariance (normal) or vec-scale (t with ``df``)
    ``np.kron(A, B)``, plus ``mean`` (a (p, q) array or a scalar) if given."""
    p, q = A.shape[0], B.shape[0]
    Z = rng.standard_normal((N, p * q)) @ np.linalg.cholesky(dense_kron(A, B)).T
    if df is not None:
        Z = Z / np.sqrt(rng.chisquare(df, N) / df)[:, None]
    X = Z.reshape(N, p, q)
    return X if mean is None else X + mean


def dense_log_quad(factors, y, mu=None, alpha=1.0):
    """λ = log(α + wᵀ S⁻¹ w) computed densely with S = np.kron(...)."""
    S = dense_kron(*factors)
    w = np.asarray(y, dtype=float) - (0.0 if mu is None else np.asarray(mu, dtype=float))
    w2 = np.atleast_2d(w)
    q = np.einsum("ij,ij->i", w2, np.linalg.solve(S, w2.T).T)
    out = np.log(alpha + q)
    return float(out[0]) if np.ndim(y) == 1 else out


def central_diff(f, x: np.ndarray, h: float = 1e-6) -> np.ndarray:
    """Central finite-difference gradient of a scalar function f at x (any shape)."""
    x = np.array(x, dtype=float)
    g = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        step = h * max(1.0, abs(x[idx]))
        xp = x.copy()
        xm = x.copy()
        xp[idx] += step
        xm[idx] -= step
        g[idx] = (f(xp) - f(xm)) / (2 * step)
    return g


# ---------------------------------------------------------------------------------------
# Conditioned matrices and dense oracles for the property-based tests (test_properties.py)
# ---------------------------------------------------------------------------------------
EPS = float(np.finfo(np.float64).eps)
# A result computed in float64 from inputs with condition number κ is compared with the dense
# oracle (itself computed in float64) normwise: ‖got − want‖ <= COND_TOL · κ · eps · ‖want‖.
# Both sides carry errors of order κ·eps; COND_TOL absorbs the dimension-dependent constants
# (P <= 64 here). Measured worst ratio err / (κ·eps·scale) over 1 000 random (not derandomised)
# examples per property test: 24.5 (log_quad), <= 7.5 for every other quantity.
COND_TOL = 200.0


def conditioned(rng: np.random.Generator, n: int, cond: float, kind: str) -> np.ndarray:
    """An n×n matrix with 2-norm condition number ``cond`` (exactly, up to rounding).

    ``kind="spd"``: ``Q diag(s) Qᵀ`` (symmetric positive definite); ``"general"``:
    ``U diag(s) Vᵀ`` (non-symmetric, random sign of the determinant). Singular values are
    log-spaced from 1 to 1/cond, then scaled by a random factor in [0.5, 2].
    """
    s = np.logspace(0.0, -np.log10(cond), n) if n > 1 else np.ones(1)
    s = s * rng.uniform(0.5, 2.0)
    Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    if kind == "spd":
        A = (Q * s) @ Q.T
        return 0.5 * (A + A.T)
    V, _ = np.linalg.qr(rng.standard_normal((n, n)))
    return (Q * s) @ V.T


def kron_cond(factors) -> float:
    """2-norm condition number of ``⊗ A_k``: the product of the factors' (cond is multiplicative)."""
    return float(np.prod([np.linalg.cond(a) for a in factors]))


def assert_close_cond(got, want, cond: float, *, scale: float | None = None, what: str = ""):
    """Normwise ``‖got − want‖ <= COND_TOL·κ·eps·(‖want‖ or scale)`` (see COND_TOL)."""
    got = np.asarray(got, dtype=float)
    want = np.asarray(want, dtype=float)
    assert got.shape == want.shape, (what, got.shape, want.shape)
    ref = np.linalg.norm(want) if scale is None else scale
    err = np.linalg.norm(got - want)
    bound = COND_TOL * max(cond, 1.0) * EPS * max(ref, np.finfo(float).tiny)
    assert err <= bound, f"{what}: error {err:.3g} > bound {bound:.3g} (κ = {cond:.3g})"


def dense_log_quad_grad(factors, Y, mu=None, alpha=1.0):
    """Per-observation value and gradients of λ = log(α + wᵀS⁻¹w), densely.

    Independent of kronkit's closed form: with ``G = ∂q/∂S = −(S⁻ᵀw)(S⁻¹w)ᵀ`` (P×P), the
    chain rule through ``S = kron(A_1, …, E_ij, …, A_d)`` gives ``∂q/∂(A_k)_ij = G : dS``,
    evaluated entry by entry with np.kron. Returns (λ (N,), [∂/∂A_k (N, p_k, p_k)],
    ∂/∂y (N, P), ∂/∂α (N,)).
    """
    S = dense_kron(*factors)
    W = np.atleast_2d(np.asarray(Y, float) - (0.0 if mu is None else np.asarray(mu, float)))
    lam, gfac, gy, ga = [], [[] for _ in factors], [], []
    for w in W:
        z = np.linalg.solve(S, w)
        u = np.linalg.solve(S.T, w)
        beta = alpha + w @ z
        G = -np.outer(u, z)
        lam.append(np.log(beta))
        gy.append((z + u) / beta)
        ga.append(1.0 / beta)
        for k, A in enumerate(factors):
            g = np.zeros(A.shape)
            for i, j in np.ndindex(A.shape):
                E = np.zeros(A.shape)
                E[i, j] = 1.0
                g[i, j] = np.sum(G * dense_kron(*factors[:k], E, *factors[k + 1:]))
            gfac[k].append(g / beta)
    N, P = W.shape
    return (np.array(lam).reshape(N), [np.array(g).reshape(N, *A.shape) for g, A in
                                       zip(gfac, factors, strict=True)],
            np.array(gy).reshape(N, P), np.array(ga).reshape(N))


def dense_chain(G, facs):
    """``∂f/∂F_k = Σ_ab G_ab ∂(⊗F)_ab/∂F_k`` for the P×P matrix derivative ``G`` of a
    Kronecker product ``⊗F`` (the dense chain rule: an oracle for factor gradients)."""
    dims = [F.shape[0] for F in facs]
    d = len(dims)
    T = G.reshape(*dims, *dims)
    rows, cols = "abcdef"[:d], "ABCDEF"[:d]
    out = []
    for k in range(d):
        others = [j for j in range(d) if j != k]
        spec = f"{rows}{cols}" + "".join(f",{rows[j]}{cols[j]}" for j in others)
        out.append(np.einsum(f"{spec}->{rows[k]}{cols[k]}", T, *[facs[j] for j in others],
                             optimize=True))
    return out
