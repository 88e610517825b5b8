"""kronkit.torch's Cholesky route (every factor SPD): gradients of ``log_quad`` against autograd
through the DENSE torch formula (``torch.kron`` + ``torch.linalg.solve``) at sizes where the
solves' layouts and the blocked symmetric product (``gram``) are exercised; batches, d = 1, 2, 3,
ill-conditioned factors, float32, second derivatives, retained graphs, untouched inputs."""

from __future__ import annotations

import functools
import warnings

import numpy as np
import pytest

from helpers import ATOL, CHAIN_RTOL, F32_RTOL, RTOL, ULPS, spd

torch = pytest.importorskip("torch")
kt = pytest.importorskip("kronkit.torch")
tc = pytest.importorskip("kronkit._torch_chol")

from kronkit import IllConditionedWarning  # noqa: E402

F64 = torch.float64


def _t(a, requires_grad=False, dtype=F64):
    return torch.tensor(np.asarray(a), dtype=dtype, requires_grad=requires_grad)


def _close(got, want, rtol=RTOL, atol=ATOL):
    got, want = got.detach().double().numpy(), want.detach().double().numpy()
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol * max(1.0, np.abs(want).max()))


def _dense_log_quad(Fs, y, mu, alpha):
    """``log(α + wᵀ(A1⊗…⊗Ad)⁻¹w)`` per row, dense (the oracle)."""
    S = functools.reduce(torch.kron, Fs)
    w = y - mu
    P = S.shape[0]
    z = torch.linalg.solve(S, w.reshape(-1, P).T).T.reshape(w.shape)
    return torch.log(alpha + (w * z).sum(-1))


def _compare(rng, sizes, batch, rtol=CHAIN_RTOL, cond=None, wrt_y=True):
    """log_quad's value and gradients (factors, y, mu, alpha) against the dense oracle."""
    F = [spd(rng, n) if cond is None else cond(rng, n) for n in sizes]
    P = int(np.prod(sizes))
    y0, mu0 = rng.standard_normal((*batch, P)), rng.standard_normal(P)
    cot = rng.standard_normal(batch)

    def run(fn):
        Fs = [_t(A, True) for A in F]
        y, mu, alpha = _t(y0, wrt_y), _t(mu0, True), _t(1.5, True)
        lam = fn(Fs, y, mu, alpha)
        wrt = [*Fs, mu, alpha] + ([y] if wrt_y else [])
        return lam, torch.autograd.grad((lam * _t(cot)).sum(), wrt)

    lam, got = run(kt.log_quad)
    lam_d, want = run(_dense_log_quad)
    _close(lam, lam_d, rtol=rtol)
    for g, h in zip(got, want, strict=True):
        _close(g, h, rtol=rtol)


@pytest.mark.parametrize("sizes", [(7, 5), (5, 7), (1, 6), (6, 1), (4,), (3, 4, 5), (2, 1, 3)])
@pytest.mark.parametrize("batch", [(), (3,), (2, 2)])
def test_gradients_match_dense(rng, sizes, batch):
    _compare(rng, sizes, batch)


@pytest.mark.parametrize("batch", [(), (2,)])
def test_medium_sizes_match_dense(rng, batch):
    """p ≠ q big enough for LAPACK's blocked kernels (the dense oracle is 1200×1200)."""
    _compare(rng, (40, 30), batch)


@pytest.mark.parametrize("sizes", [(9, 7), (7, 9, 2)])
@pytest.mark.parametrize("block", [2, 3, 4])
def test_blocked_gram_route(rng, sizes, block, monkeypatch):
    """The block-lower-triangle product (``gram``) on odd sizes and several block counts."""
    monkeypatch.setattr(tc, "GRAM_BLOCK", block)
    _compare(rng, sizes, ())


@pytest.mark.parametrize("n", [1, 2, 5, 8, 9, 17])
@pytest.mark.parametrize("block", [1, 2, 4, 256])
def test_gram_is_scaled_x_xt(rng, n, block, monkeypatch):
    monkeypatch.setattr(tc, "GRAM_BLOCK", block)
    X = _t(rng.standard_normal((n, 6)))
    G = tc.gram(X, -0.75)
    _close(G, -0.75 * X @ X.T, rtol=ULPS)


def test_only_y_or_only_one_factor(rng):
    A, B = spd(rng, 4), spd(rng, 3)
    y0 = rng.standard_normal(12)
    for wrt in ("y", "A", "B"):
        xs = {"A": _t(A, wrt == "A"), "B": _t(B, wrt == "B"), "y": _t(y0, wrt == "y")}
        xd = {"A": _t(A, wrt == "A"), "B": _t(B, wrt == "B"), "y": _t(y0, wrt == "y")}
        (g,) = torch.autograd.grad(kt.log_quad([xs["A"], xs["B"]], xs["y"]), [xs[wrt]])
        (h,) = torch.autograd.grad(_dense_log_quad([xd["A"], xd["B"]], xd["y"], 0.0, 1.0),
                                   [xd[wrt]])
        _close(g, h, rtol=CHAIN_RTOL)


def test_ill_conditioned_factor(rng):
    """κ(A) ≈ 3e8 (rcond < sqrt(eps)): the warning still comes, and the gradients agree with the
    dense route norm-wise to the accuracy the conditioning allows (κ·eps ≈ 1e-7, with margin)."""
    def cond(rng, n):
        Q = np.linalg.qr(rng.standard_normal((n, n)))[0]
        return (Q * np.logspace(0, -8.5, n)) @ Q.T

    F = [cond(rng, 6), spd(rng, 4)]
    y0 = rng.standard_normal(24)

    def grads(fn):
        Fs, y = [_t(A, True) for A in F], _t(y0, True)
        return torch.autograd.grad(fn(Fs, y, 0.0, 1.0), [*Fs, y])

    with pytest.warns(IllConditionedWarning, match=r"factors\[0\]"):
        got = grads(lambda Fs, y, mu, alpha: kt.log_quad(Fs, y))
    for g, h in zip(got, grads(_dense_log_quad), strict=True):
        assert float(torch.linalg.norm(g - h) / torch.linalg.norm(h)) < 1e-6


def test_float32(rng):
    A, B = spd(rng, 6), spd(rng, 5)
    y0 = rng.standard_normal((2, 30))
    Fs32 = [_t(A, True, torch.float32), _t(B, True, torch.float32)]
    lam = kt.log_quad(Fs32, _t(y0, dtype=torch.float32))
    assert lam.dtype == torch.float32
    got = torch.autograd.grad(lam.sum(), Fs32)
    assert all(g.dtype == torch.float32 for g in got)
    Fs = [_t(A, True), _t(B, True)]
    want = torch.autograd.grad(_dense_log_quad(Fs, _t(y0), 0.0, 1.0).sum(), Fs)
    for g, h in zip(got, want, strict=True):
        _close(g, h, rtol=F32_RTOL, atol=F32_RTOL)


def test_second_derivatives_match_dense(rng):
    """create_graph=True takes the differentiable route: H·v against the dense double backward."""
    A, B = spd(rng, 3), spd(rng, 4)
    y0 = rng.standard_normal(12)
    vs = [_t(rng.standard_normal(s)) for s in ((3, 3), (4, 4), (12,))]

    def hvp(fn):
        xs = [_t(A, True), _t(B, True), _t(y0, True)]
        g = torch.autograd.grad(fn([xs[0], xs[1]], xs[2], 0.0, 1.0).sum(), xs, create_graph=True)
        return torch.autograd.grad(sum((gi * v).sum() for gi, v in zip(g, vs, strict=True)), xs)

    ours = lambda Fs, y, mu, alpha: kt.log_quad(Fs, y, alpha=alpha)  # noqa: E731
    for g, h in zip(hvp(ours), hvp(_dense_log_quad), strict=True):
        _close(g, h, rtol=CHAIN_RTOL)


def test_gradgradcheck_spd(rng):
    Fs = [_t(spd(rng, 2), True), _t(spd(rng, 3), True)]
    y = _t(rng.standard_normal((2, 6)), True)
    fn = lambda A, B, y: kt.log_quad([A, B], y)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (*Fs, y))
    assert torch.autograd.gradgradcheck(fn, (*Fs, y))


@pytest.mark.parametrize("batch", [(), (3,)])
def test_retained_graph_and_untouched_inputs(rng, batch):
    """Two backward passes through one retained graph agree (the backward's in-place solves
    touch only its own temporaries), and no input is modified."""
    A, B, C = spd(rng, 5), spd(rng, 4), spd(rng, 3)
    y0 = rng.standard_normal((*batch, 60))
    Fs, y = [_t(A, True), _t(B, True), _t(C, True)], _t(y0, True)
    before = [x.detach().clone() for x in (*Fs, y)]
    lam = kt.log_quad(Fs, y).sum()
    g1 = torch.autograd.grad(lam, [*Fs, y], retain_graph=True)
    g2 = torch.autograd.grad(lam, [*Fs, y])
    for a, b in zip(g1, g2, strict=True):
        assert torch.equal(a, b)
    for x, x0 in zip((*Fs, y), before, strict=True):
        assert torch.equal(x.detach(), x0)


def test_empty_batch(rng):
    Fs = [_t(spd(rng, 3), True), _t(spd(rng, 2), True)]
    y = _t(np.zeros((0, 6)), True)
    lam = kt.log_quad(Fs, y)
    assert lam.shape == (0,)
    gA, gB, gy = torch.autograd.grad(lam.sum(), [*Fs, y])
    assert torch.equal(gA, torch.zeros(3, 3, dtype=F64))
    assert torch.equal(gB, torch.zeros(2, 2, dtype=F64))
    assert gy.shape == (0, 6)


def test_no_warning_on_well_conditioned(rng):
    Fs = [_t(spd(rng, 5), True), _t(spd(rng, 4), True)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        torch.autograd.grad(kt.log_quad(Fs, _t(rng.standard_normal(20))), Fs)


def test_strided_inputs(rng):
    """Rows taken from a transposed or stepped tensor (the solves copy them in their layout)."""
    A, B = spd(rng, 4), spd(rng, 5)
    base = torch.tensor(rng.standard_normal((20, 6)))
    flat = torch.tensor(rng.standard_normal(40))
    for view in (base.T, flat[::2], base.T[::2]):
        ys = view.detach().requires_grad_(True)
        Fs = [_t(A, True), _t(B, True)]
        got = torch.autograd.grad(kt.log_quad(Fs, ys).sum(), [*Fs, ys])
        Fd, yd = [_t(A, True), _t(B, True)], view.contiguous().requires_grad_(True)
        want = torch.autograd.grad(_dense_log_quad(Fd, yd, 0.0, 1.0).sum(), [*Fd, yd])
        for g, h in zip(got, want, strict=True):
            _close(g, h, rtol=CHAIN_RTOL)
