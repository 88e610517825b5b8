"""Property-based tests of the incomplete-grid operators against the dense observed block.

Hypothesis draws the number of axes (d = 2, 3; d = 1 is in test_cells.py), their sizes
(1..5), the parent (a Kron, K⊗…⊗K + s²I, or a Kronecker sum plus a shift), the condition
number of the factors (up to 1e6 per operator, shared out between them), the missing cells
(any non-empty observed subset: from none missing to one cell observed), an optional
per-cell diagonal (a constant with outliers above and below it, or arbitrary), the batch size
(1..3) and a seed for the entries.
``Restricted`` / ``KronPlusDiag`` values and gradients are compared with the dense block
``(Σ_t ⊗F_tk + diag(d))[o, o]`` normwise, scaled by a condition number (see ``KAPPA`` below).
Examples are bounded and derandomised (the same on every run, no database).
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import CHAIN_RTOL, COND_TOL, EPS, RTOL, assert_close_cond, conditioned, dense_chain, dense_kron
from kronkit import GridDiag, Kron, SumOfKron, log_quad_grad, logdet_grad

FAST = settings(max_examples=30, deadline=None, derandomize=True, database=None)

pytestmark = pytest.mark.usefixtures("one_blas_thread_module")


@st.composite
def problems(draw):
    d = draw(st.integers(2, 3))
    dims = tuple(draw(st.lists(st.integers(1, 5), min_size=d, max_size=d)))
    P = int(np.prod(dims))
    parent = draw(st.sampled_from(["kron", "noise", "kron-sum"]))
    log_cond = draw(st.floats(0.0, 6.0))
    diag = draw(st.sampled_from([None, "outliers", "arbitrary"]))
    n_missing = draw(st.integers(0, P - 1))
    N = draw(st.integers(1, 3))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    K = [conditioned(rng, n, 10.0 ** (log_cond / d), "spd") for n in dims]
    eye = [np.eye(n) for n in dims]
    if parent == "kron":
        S = Kron(*K)
    elif parent == "noise":
        S = Kron(*K) + float(rng.uniform(1e-3, 1.0)) * Kron(*eye)
    else:  # K_1⊕…⊕K_d + s·I
        S = functools.reduce(lambda a, b: a + b, [
            Kron(*[K[j] if j == k else eye[j] for j in range(d)]) for k in range(d)])
        S = S + 0.1 * Kron(*eye)
    dvec = None
    if diag == "outliers":
        dvec = np.full(P, float(rng.uniform(0.1, 1.0)))
        cells = rng.choice(P, min(P, 3), replace=False)
        dvec[cells] *= rng.choice([0.0, 0.3, 4.0], cells.size)
        dvec = dvec.reshape(dims)
    elif diag == "arbitrary":
        dvec = rng.uniform(0.0, 1.0, dims)
    observed = np.ones(P, dtype=bool)
    observed[rng.choice(P, n_missing, replace=False)] = False
    return S, dvec, observed.reshape(dims), rng.standard_normal((N, P - n_missing))


def dense(S, dvec, observed):
    terms = [list(K.factors) for K in (S.terms if isinstance(S, SumOfKron) else [S])]
    full = sum(dense_kron(*t) for t in terms)
    if dvec is not None:
        full = full + np.diag(dvec.ravel())
    o = np.flatnonzero(observed)
    return terms, full, o, full[np.ix_(o, o)]


# Tolerance: normwise, the target (RTOL = 1e-10 relative for values, CHAIN_RTOL = 1e-9
# for gradients) or COND_TOL·κ·eps where that is larger, κ = the condition number of the dense
# block. The capacitance identities subtract Z H⁻¹ Zᵀ from S̄⁻¹ (S̄ = S + diag(d̄), d̄ the
# internal Kronecker fit of d), so their rounding also grows with ‖S̄⁻¹‖/‖S_OO⁻¹‖ and with the
# capacitance H's conditioning when d is arbitrary (k ≈ P corrections δ of every size; up to
# ~4e-12 relative measured at κ ≈ 5). Measured worst error / tolerance over 2 × 1 000 random
# (not derandomised) examples per test: 0.1 (tr(S_OO⁻¹)), 0.036 (logdet_grad with an arbitrary
# d), ≤ 0.01 for every other quantity.
def check(got, want, block, what, scale=None, rtol=RTOL):
    e = np.linalg.eigvalsh(block)
    floor = rtol / (COND_TOL * EPS)  # the κ below which the relative target applies
    assert_close_cond(got, want, max(e[-1] / e[0], floor), scale=scale, what=what)




def operator(S, dvec, observed):
    op = S if dvec is None else S + GridDiag(dvec)
    return op.restrict(observed)


@FAST
@given(problems())
def test_values_match_the_dense_block(problem):
    S, dvec, observed, Y = problem
    M = dense(S, dvec, observed)[3]
    R = operator(S, dvec, observed)
    X = np.linalg.solve(M, Y.T).T
    check(R.solve_rows(Y), X, M, "solve_rows")
    check(R.inv_quad(Y), np.einsum("ij,ij->i", Y, X), M, "inv_quad")
    ld = np.linalg.slogdet(M)[1]
    check(R.logdet(), ld, M, "logdet", scale=max(1.0, abs(ld)))
    check(R.inverse_trace(), np.trace(np.linalg.inv(M)), M, "tr(S_OO⁻¹)")


@FAST
@given(problems())
def test_gradients_match_the_dense_chain_rule(problem):
    S, dvec, observed, Y = problem
    terms, full, o, M = dense(S, dvec, observed)
    R = operator(S, dvec, observed)
    P = full.shape[0]
    Minv = np.linalg.inv(M)
    G = np.zeros((P, P))
    G[np.ix_(o, o)] = Minv.T
    got = logdet_grad(R)
    got = [got] if R.flat_factors else got
    for t, facs in enumerate(terms):
        for k, want in enumerate(dense_chain(G, facs)):
            check(got[t][k], want, M, f"logdet_grad {t} {k}", rtol=CHAIN_RTOL)
    X = Y @ Minv  # rows x_i = S_OO⁻¹ y_i
    beta = 1.0 + np.einsum("ij,ij->i", Y, X)
    G = np.zeros((P, P))
    G[np.ix_(o, o)] = -(X.T / beta) @ X
    g = log_quad_grad(R, Y)
    gf = [g.factors] if R.flat_factors else g.factors
    for t, facs in enumerate(terms):
        for k, want in enumerate(dense_chain(G, facs)):
            check(gf[t][k], want, M, f"log_quad_grad {t} {k}", rtol=CHAIN_RTOL)
    check(g.y, 2 * X / beta[:, None], M, "∂/∂y", rtol=CHAIN_RTOL)
