"""kronkit.torch on sums of Kronecker products: values vs dense np.kron + np.linalg, gradients
vs torch.autograd of the dense formula (torch.kron + solve / slogdet), gradcheck and
gradgradcheck of the closed-form backward passes."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_allclose

from helpers import ATOL, CHAIN_RTOL, RTOL, factor
from sum_forms import FORMS, dense_sum, flatten, np_dense, sum_forms

torch = pytest.importorskip("torch")

import kronkit  # noqa: E402
import kronkit.torch as kt  # noqa: E402

DIMS = [(3, 4), (2, 3, 2)]
F64 = torch.float64


def close(a, b, rtol=RTOL):
    a = a.detach().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)
    b = b.detach().numpy() if isinstance(b, torch.Tensor) else np.asarray(b)
    scale = max(1.0, float(np.max(np.abs(b)))) if b.size else 1.0
    assert_allclose(a, b, rtol=rtol, atol=max(ATOL, rtol) * scale)


def as_torch(terms, grad=True):
    return [[torch.tensor(np.asarray(F, dtype=float), requires_grad=grad) for F in term]
            for term in terms]


def tdense(terms, dims):
    return dense_sum(terms, dims, torch.kron, lambda n: torch.eye(n, dtype=F64), torch.diag)


def objective(terms, y, r, dims=None):
    """Σ log_quad + logdet + ⟨solve, r⟩ + Σ inv_quad (``dims``: densely)."""
    if dims is None:
        return (kt.log_quad(terms, y, None, 2.0).sum() + kt.logdet(terms)
                + (kt.solve(terms, y) * r).sum() + kt.inv_quad(terms, y).sum())
    S = tdense(terms, dims)
    z = torch.linalg.solve(S, y.T).T
    q = (y * z).sum(-1)
    return torch.log(2.0 + q).sum() + torch.linalg.slogdet(S)[1] + (z * r).sum() + q.sum()


@pytest.mark.parametrize("dims", DIMS)
@pytest.mark.parametrize("form", FORMS)
def test_values_and_gradients_match_dense(rng, form, dims):
    terms = sum_forms(rng, dims)[form]
    S, P = np_dense(terms, dims), int(np.prod(dims))
    Y = rng.standard_normal((2, P))
    Z = np.linalg.solve(S, Y.T).T
    close(kt.solve(terms, Y), Z)
    close(kt.inv_quad(terms, Y[0]), Y[0] @ Z[0])
    close(kt.logdet(terms), np.linalg.slogdet(S)[1])
    close(kt.log_quad(terms, Y, Y[1], 3.0),
          np.log(3.0 + np.sum((Y - Y[1]) * np.linalg.solve(S, (Y - Y[1]).T).T, -1)))
    # gradients of every factor of every term (matrices, diagonals, scalars) and y
    ours, dense = as_torch(terms), as_torch(terms)
    y1, y2 = (torch.tensor(Y, requires_grad=True) for _ in range(2))
    r = torch.tensor(rng.standard_normal((2, P)))
    g1 = torch.autograd.grad(objective(ours, y1, r), [*flatten(ours)[0], y1])
    g2 = torch.autograd.grad(objective(dense, y2, r, dims), [*flatten(dense)[0], y2])
    for a, b in zip(g1, g2, strict=True):
        assert a.shape == b.shape
        close(a, b, CHAIN_RTOL)


@pytest.mark.parametrize("form", ["a", "b", "mix"])
def test_ill_conditioned_factors(rng, form):
    dims = (4, 3)
    terms = sum_forms(rng, dims, cond=1e6)[form]
    y = torch.tensor(rng.standard_normal((1, 12)))
    ours, dense = as_torch(terms), as_torch(terms)
    g1 = torch.autograd.grad(objective(ours, y, y), flatten(ours)[0])
    g2 = torch.autograd.grad(objective(dense, y, y, dims), flatten(dense)[0])
    for a, b in zip(g1, g2, strict=True):
        close(a, b, CHAIN_RTOL)


def symmetrised(terms):
    """Leaf tensors for gradcheck and a function of them giving the sum's terms, with every
    matrix factor symmetrised (X + Xᵀ)/2 so that finite-difference steps keep it symmetric."""
    flat, rebuild = flatten(as_torch(terms))

    def build(*xs):
        return rebuild([0.5 * (x + x.T) if x.ndim == 2 else x for x in xs])

    return flat, build


@pytest.mark.parametrize("form", FORMS)
def test_gradcheck_and_gradgradcheck(rng, form):
    dims = (3, 2)
    flat, build = symmetrised(sum_forms(rng, dims)[form])
    y = torch.tensor(rng.standard_normal((2, 6)), requires_grad=True)
    r = torch.tensor(rng.standard_normal((2, 6)))

    def f(y, *xs):
        return objective(build(*xs), y, r)

    assert torch.autograd.gradcheck(f, (y, *flat))
    assert torch.autograd.gradgradcheck(f, (y, *flat))


def test_hessian_vector_product_with_identity_matrix(rng):
    """Second derivatives at a degenerate spectrum (the identity as a matrix) vs dense."""
    K = torch.tensor(factor(rng, 3, "spd"), requires_grad=True)
    s = torch.tensor(0.4, dtype=F64, requires_grad=True)
    eye = torch.eye(4, dtype=F64)
    y = torch.tensor(rng.standard_normal((1, 12)))

    def f(K, s, dense):
        terms = [[K, eye], [s, 1.0]]
        return objective(terms, y, y, (3, 4) if dense else None)

    v = (torch.tensor(rng.standard_normal((3, 3))), torch.tensor(0.7, dtype=F64))
    hv = []
    for dense in (False, True):
        g = torch.autograd.grad(f(K, s, dense), (K, s), create_graph=True)
        dot = sum((a * b).sum() for a, b in zip(g, v, strict=True))
        hv.append(torch.autograd.grad(dot, (K, s)))
    for a, b in zip(*hv, strict=True):
        close(a, b, CHAIN_RTOL)


def test_sum_of_kron_and_dtype(rng):
    K1, K2 = factor(rng, 3, "spd"), factor(rng, 4, "spd")
    S_op = kronkit.Kron(K1, K2) + 0.5 * kronkit.Kron(np.eye(3), np.eye(4))
    S = np.kron(K1, K2) + 0.5 * np.eye(12)
    y = rng.standard_normal(12)
    close(kt.inv_quad(S_op, y), y @ np.linalg.solve(S, y))
    out = kt.logdet([[torch.tensor(K1, dtype=torch.float32), torch.tensor(K2,
                                                                          dtype=torch.float32)],
                     [0.5, 1.0]])
    assert out.dtype == torch.float32
    close(kt.inv_quad(S_op, torch.zeros(0, 12, dtype=F64)), np.zeros(0))


def test_bad_input(rng):
    K1, K2, K3 = (factor(rng, n, "spd") for n in (3, 4, 3))
    y = rng.standard_normal(12)
    with pytest.raises(ValueError, match=r"(?s)unsupported sum.*\(a\)"):
        kt.logdet([[K1, K2], [K3, 1.0], [K3 + 1.0, 1.0]])
    with pytest.raises(kronkit.NotPositiveDefiniteError, match="λ = "):
        kt.inv_quad([[K1, K2], [-50.0, 1.0]], y)
    with pytest.raises(kronkit.NotPositiveDefiniteError, match=r"factors\[1\]\[0\]"):
        kt.logdet([[K1, K2], [-K3, K2 + 1.0]])
    with pytest.raises(ValueError, match=r"`factors\[0\]\[0\]` must be symmetric"):
        kt.logdet([[K1 + np.triu(np.ones((3, 3)), 1), K2], [0.5, 1.0]])
    with pytest.raises(ValueError, match=r"`factors\[1\]\[0\]` contains NaN"):
        kt.logdet([[K1, K2], [np.nan, 1.0]])
    with pytest.raises(ValueError, match="`y` contains NaN"):
        kt.solve([[K1, K2], [0.5, 1.0]], np.full(12, np.nan))
    with pytest.raises(kronkit.DomainError):
        kt.log_quad([[K1, K2], [0.5, 1.0]], y, alpha=-1e6)


def test_repeated_calls_follow_the_values(rng):
    """The eigen form of the previous call is reused only for equal values: an in-place
    change of a factor between calls is seen."""
    A, B = torch.tensor(factor(rng, 3, "spd")), torch.tensor(factor(rng, 2, "spd"))
    terms = [[A, B], [0.3, 1.0]]
    y = rng.standard_normal(6)
    for _ in range(2):
        S = np.kron(A.numpy(), B.numpy()) + 0.3 * np.eye(6)
        close(kt.logdet(terms), np.linalg.slogdet(S)[1])
        close(kt.inv_quad(terms, y), y @ np.linalg.solve(S, y))
        A.mul_(2.0)
