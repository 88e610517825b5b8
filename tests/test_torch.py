"""kronkit.torch: values against dense np.kron, gradients against autograd through the dense
torch formula, gradcheck / gradgradcheck (finite differences), dtype, batches and errors."""

from __future__ import annotations

import functools
import subprocess
import sys

import numpy as np
import pytest

from helpers import ATOL, CHAIN_RTOL, COND_CAP, F32_RTOL, RTOL, dense_kron, factors, general, spd

torch = pytest.importorskip("torch")
kt = pytest.importorskip("kronkit.torch")

from kronkit import (  # noqa: E402
    DomainError,
    IllConditionedWarning,
    Kron,
    NotPositiveDefiniteError,
    SingularFactorError,
)

F64 = torch.float64


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny matrices gain nothing from threads; on a busy machine MKL's thread rendezvous costs
    ~10 ms per Cholesky, which would dominate this file's run time. Restored afterwards."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)

# (sizes, kind): d = 2 and 3, p ≠ q, sizes in {1, 2, 3, 5}
SHAPES = [(2, 3), (3, 2), (1, 5), (5, 1), (3, 5), (2, 3, 5), (1, 2, 3), (3,)]
KINDS = ["general", "spd", "indefinite"]  # indefinite: symmetric, LU with the U = Z shortcut


def _factors(rng, sizes, kind):
    """The catalogue's factors; symmetric indefinite ones with condition number below 1e2."""
    return factors(rng, sizes, kind, 1e2 if kind == "indefinite" else COND_CAP)


def _t(a, requires_grad=False, dtype=F64):
    return torch.tensor(np.asarray(a), dtype=dtype, requires_grad=requires_grad)


def _dense_t(factors):
    return functools.reduce(torch.kron, factors)


def _quad(S, w):
    """Dense wᵀS⁻¹w per row of w (any batch shape)."""
    P = S.shape[0]
    return np.einsum("...i,...i->...", w, np.linalg.solve(S, w.reshape(-1, P).T).T.reshape(w.shape))


def _close(got, want, rtol=RTOL, atol=ATOL):
    got = got.detach().numpy() if isinstance(got, torch.Tensor) else np.asarray(got)
    want = want.detach().numpy() if isinstance(want, torch.Tensor) else np.asarray(want)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol * max(1.0, np.abs(want).max()))


# ------------------------------------------------------------------------------------------
# import behaviour
# ------------------------------------------------------------------------------------------
def test_import_kronkit_does_not_import_torch():
    code = "import sys, kronkit; sys.exit(1 if 'torch' in sys.modules else 0)"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_import_without_torch_names_the_extra():
    # Block `import torch` with a meta-path finder (kronkit itself is imported first: SciPy
    # inspects sys.modules["torch"], so a None entry there would break unrelated imports).
    code = (
        "import sys, kronkit\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'torch':\n"
        "            raise ImportError('No module named torch')\n"
        "sys.meta_path.insert(0, Block())\n"
        "try:\n    import kronkit.torch\nexcept ImportError as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "pip install kronkit[torch]" in out.stdout


# ------------------------------------------------------------------------------------------
# values against dense np.kron
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("sizes", SHAPES)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("batch", [(), (4,), (2, 3)])
def test_values_match_dense(rng, sizes, kind, batch):
    F = _factors(rng, sizes, kind)
    S = dense_kron(*F)
    P = S.shape[0]
    y = rng.standard_normal((*batch, P))
    mu = rng.standard_normal(P)
    Ft = [_t(A) for A in F]
    _close(kt.matvec(Ft, _t(y)), y @ S.T)
    _close(kt.solve(Ft, _t(y)), np.linalg.solve(S, y.reshape(-1, P).T).T.reshape(y.shape))
    q = _quad(S, y)
    got_q = kt.inv_quad(Ft, _t(y))
    assert got_q.shape == batch
    _close(got_q, q)
    sign, logabs = np.linalg.slogdet(S)
    if sign > 0:
        _close(kt.logdet(Ft), logabs)
    w = y - mu
    qw = _quad(S, w)
    alpha = 1.5 + max(0.0, -float(np.min(qw)))  # keep β > 0 for indefinite factors
    got = kt.log_quad(Ft, _t(y), _t(mu), alpha)
    assert got.shape == batch
    _close(got, np.log(alpha + qw))


@pytest.mark.parametrize("shapes", [[(2, 3), (3, 1)], [(1, 2), (3, 2), (2, 5)], [(5, 3)]])
def test_matvec_rectangular(rng, shapes):
    F = [rng.standard_normal(s) for s in shapes]
    y = rng.standard_normal((3, int(np.prod([s[1] for s in shapes]))))
    _close(kt.matvec([_t(A) for A in F], _t(y)), y @ dense_kron(*F).T)


def test_two_factor_convention(rng):
    A, B, Y = rng.standard_normal((2, 3)), rng.standard_normal((4, 5)), rng.standard_normal((3, 5))
    _close(kt.matvec([_t(A), _t(B)], _t(Y.ravel())), (A @ Y @ B.T).ravel())
    _close(kt.matvec([_t(A), _t(B)], _t(Y.ravel())), torch.kron(_t(A), _t(B)) @ _t(Y.ravel()))


def test_accepts_kron_and_arrays(rng):
    A, B = spd(rng, 2), spd(rng, 3)
    y = rng.standard_normal(6)
    want = np.log(1.0 + y @ np.linalg.solve(np.kron(A, B), y))
    _close(kt.log_quad(Kron(A, B), y), want)
    _close(kt.log_quad([A, B], list(y)), want)


# ------------------------------------------------------------------------------------------
# gradients against autograd through the dense torch formula
# ------------------------------------------------------------------------------------------
def _grads(out, inputs):
    return torch.autograd.grad(out, inputs, allow_unused=False)


@pytest.mark.parametrize("sizes", [(2, 3), (3, 2), (1, 5), (5, 1), (2, 3, 2), (3,)])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("batch", [(), (3,)])
def test_log_quad_gradients_match_dense_autograd(rng, sizes, kind, batch):
    F = _factors(rng, sizes, kind)
    P = int(np.prod(sizes))
    y0, mu0 = rng.standard_normal((*batch, P)), rng.standard_normal(P)
    a0 = 1.5 + max(0.0, -float(np.min(_quad(dense_kron(*F), y0 - mu0))))

    def inputs():
        return ([_t(A, True) for A in F], _t(y0, True), _t(mu0, True), _t(a0, True))

    Fs, y, mu, alpha = inputs()
    cot = _t(rng.standard_normal(batch))
    got = _grads((kt.log_quad(Fs, y, mu, alpha) * cot).sum(), [*Fs, y, mu, alpha])

    Fd, yd, mud, alphad = inputs()
    w = yd - mud
    S = _dense_t(Fd)
    q = (w * torch.linalg.solve(S, w.reshape(-1, P).T).T.reshape(w.shape)).sum(-1)
    lam = torch.log(alphad + q)
    want = _grads((lam * cot).sum(), [*Fd, yd, mud, alphad])
    for g, h in zip(got, want, strict=True):
        _close(g, h, rtol=CHAIN_RTOL)


@pytest.mark.parametrize("sizes", [(2, 3), (3, 2, 2), (5,)])
@pytest.mark.parametrize("kind", ["general", "spd"])
def test_other_gradients_match_dense_autograd(rng, sizes, kind):
    F = _factors(rng, sizes, kind)
    P = int(np.prod(sizes))
    y0 = rng.standard_normal((2, P))
    cot = _t(rng.standard_normal((2, P)))
    cq = _t(rng.standard_normal(2))

    def dense(name, Fd, yd):
        S = _dense_t(Fd)
        if name == "matvec":
            return (yd @ S.T * cot).sum()
        if name == "solve":
            return (torch.linalg.solve(S, yd.T).T * cot).sum()
        if name == "inv_quad":
            return ((yd * torch.linalg.solve(S, yd.T).T).sum(-1) * cq).sum()
        return torch.linalg.slogdet(S)[1]

    def ours(name, Fs, ys):
        if name == "matvec":
            return (kt.matvec(Fs, ys) * cot).sum()
        if name == "solve":
            return (kt.solve(Fs, ys) * cot).sum()
        if name == "inv_quad":
            return (kt.inv_quad(Fs, ys) * cq).sum()
        return kt.logdet(Fs)

    for name in ("matvec", "solve", "inv_quad", "logdet"):
        if name == "logdet" and np.linalg.slogdet(dense_kron(*F))[0] < 0:
            continue
        Fs, ys = [_t(A, True) for A in F], _t(y0, True)
        Fd, yd = [_t(A, True) for A in F], _t(y0, True)
        wrt_s = Fs if name == "logdet" else [*Fs, ys]
        wrt_d = Fd if name == "logdet" else [*Fd, yd]
        for g, h in zip(_grads(ours(name, Fs, ys), wrt_s), _grads(dense(name, Fd, yd), wrt_d),
                        strict=True):
            _close(g, h, rtol=CHAIN_RTOL)


def test_seed_closed_form_two_factors(rng):
    """∂q/∂A = −U B Zᵀ, ∂q/∂B = −Uᵀ A Z with Z = A⁻¹WB⁻ᵀ, U = A⁻ᵀWB⁻¹ (REFERENCES §2)."""
    A, B = general(rng, 3), general(rng, 4)
    W = rng.standard_normal((3, 4))
    Z = np.linalg.solve(A, np.linalg.solve(B, W.T).T)
    U = np.linalg.solve(A.T, np.linalg.solve(B.T, W.T).T)
    At, Bt = _t(A, True), _t(B, True)
    gA, gB = _grads(kt.inv_quad([At, Bt], _t(W.ravel())), [At, Bt])
    _close(gA, -U @ B @ Z.T)
    _close(gB, -U.T @ A @ Z)


def test_hessian_vector_product_matches_dense(rng):
    """Second derivatives: H·v of λ in (A, B, y) against double backward of the dense formula."""
    A, B = general(rng, 2), spd(rng, 3)
    y0 = rng.standard_normal(6)
    vs = [_t(rng.standard_normal(s)) for s in ((2, 2), (3, 3), (6,))]

    def hvp(fn):
        xs = [_t(A, True), _t(B, True), _t(y0, True)]
        g = torch.autograd.grad(fn(*xs), xs, create_graph=True)
        return torch.autograd.grad(sum((gi * v).sum() for gi, v in zip(g, vs, strict=True)), xs)

    def dense(A, B, y):
        return torch.log(2.0 + y @ torch.linalg.solve(torch.kron(A, B), y))

    for g, h in zip(hvp(lambda A, B, y: kt.log_quad([A, B], y, alpha=2.0)), hvp(dense),
                    strict=True):
        _close(g, h, rtol=CHAIN_RTOL)


# ------------------------------------------------------------------------------------------
# gradcheck / gradgradcheck (finite differences, float64)
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("sizes", [(2, 3), (2, 1, 3)])
@pytest.mark.parametrize("kind", ["general", "spd"])
@pytest.mark.parametrize("name", ["matvec", "solve", "inv_quad", "logdet", "log_quad"])
def test_gradcheck_and_gradgradcheck(rng, sizes, kind, name):
    F = _factors(rng, sizes, kind)
    if name == "logdet" and np.linalg.slogdet(dense_kron(*F))[0] < 0:
        F[0] = -F[0] if sizes[0] % 2 else F[0] @ np.diag([-1.0] + [1.0] * (sizes[0] - 1))
    P = int(np.prod(sizes))
    Fs = [_t(A, True) for A in F]
    y = _t(rng.standard_normal((2, P)), True)
    mu = _t(rng.standard_normal(P), True)
    q = _quad(dense_kron(*F), y.detach().numpy() - mu.detach().numpy())
    alpha = _t(1.0 + max(0.0, -float(np.min(q))), True)
    fns = {
        "matvec": (lambda y, *F: kt.matvec(F, y), (y, *Fs)),
        "solve": (lambda y, *F: kt.solve(F, y), (y, *Fs)),
        "inv_quad": (lambda y, *F: kt.inv_quad(F, y), (y, *Fs)),
        "logdet": (lambda *F: kt.logdet(F), tuple(Fs)),
        "log_quad": (lambda y, mu, a, *F: kt.log_quad(F, y, mu, a), (y, mu, alpha, *Fs)),
    }
    fn, args = fns[name]
    assert torch.autograd.gradcheck(fn, args)
    assert torch.autograd.gradgradcheck(fn, args)


# ------------------------------------------------------------------------------------------
# dtype, device, assume, inputs left alone
# ------------------------------------------------------------------------------------------
def test_float32_follows_input(rng):
    A, B = spd(rng, 3), general(rng, 2)
    y = rng.standard_normal((2, 6))
    F32 = [_t(A, True, torch.float32), _t(B, True, torch.float32)]
    y32 = _t(y, True, torch.float32)
    out = kt.log_quad(F32, y32)
    assert out.dtype == torch.float32 and out.device == y32.device
    out.sum().backward()
    assert all(t.grad.dtype == torch.float32 for t in (*F32, y32))
    F64_ = [_t(A, True), _t(B, True)]
    y64 = _t(y, True)
    kt.log_quad(F64_, y64).sum().backward()
    for a, b in zip((*F32, y32), (*F64_, y64), strict=True):
        _close(a.grad.double(), b.grad, rtol=F32_RTOL, atol=1e-5)
    for fn in (kt.matvec, kt.solve, kt.inv_quad):
        assert fn([F32[0].detach()], _t(y[:, :3], dtype=torch.float32)).dtype == torch.float32
    assert kt.logdet([F32[0]]).dtype == torch.float32


def test_mixed_dtypes_promote_to_float64(rng):
    A = _t(spd(rng, 2), dtype=torch.float32)
    y = _t(rng.standard_normal(2))
    assert kt.solve([A], y).dtype == torch.float64


@pytest.mark.parametrize("assume", ["auto", "general", "spd"])
def test_assume_modes_agree(rng, assume):
    A, B = spd(rng, 3), spd(rng, 2)
    y0 = rng.standard_normal(6)
    Fs, y = [_t(A, True), _t(B, True)], _t(y0, True)
    out = kt.log_quad(Fs, y, assume=assume) + kt.logdet(Fs, assume=assume)
    got = _grads(out, [*Fs, y])
    S = torch.kron(_t(A, True), _t(B, True))
    Fd = [_t(A, True), _t(B, True)]
    yd = _t(y0, True)
    S = torch.kron(*Fd)
    dense = torch.log(1.0 + yd @ torch.linalg.solve(S, yd)) + torch.logdet(S)
    for g, h in zip(got, _grads(dense, [*Fd, yd]), strict=True):
        _close(g, h, rtol=CHAIN_RTOL)


def test_inputs_not_modified(rng):
    F = [_t(general(rng, 2), True), _t(spd(rng, 3), True)]
    y, mu = _t(rng.standard_normal((2, 6)), True), _t(rng.standard_normal(6), True)
    before = [t.detach().clone() for t in (*F, y, mu)]
    out = kt.log_quad(F, y, mu).sum() + kt.solve(F, y).sum() + kt.logdet(F) + kt.matvec(F, y).sum()
    out.backward()
    for t, b in zip((*F, y, mu), before, strict=True):
        assert torch.equal(t.detach(), b)


# ------------------------------------------------------------------------------------------
# bad input
# ------------------------------------------------------------------------------------------
def test_wrong_y_length():
    F = [torch.eye(2, dtype=F64), torch.eye(3, dtype=F64)]
    for fn in (kt.matvec, kt.solve, kt.inv_quad, kt.log_quad):
        with pytest.raises(ValueError, match=r"`y` must have length 6.*got shape \(5,\)"):
            fn(F, torch.zeros(5, dtype=F64))
    with pytest.raises(ValueError, match="`mu` must have length 6"):
        kt.log_quad(F, torch.zeros(6, dtype=F64), mu=torch.zeros(4, dtype=F64))


def test_bad_factors():
    y = torch.zeros(6, dtype=F64)
    with pytest.raises(ValueError, match=r"`factors\[1\]` must be 2-D, got shape \(3,\)"):
        kt.matvec([torch.eye(2, dtype=F64), torch.ones(3, dtype=F64)], y)
    with pytest.raises(ValueError, match=r"`factors\[0\]` must be square.*solve.*\(2, 3\)"):
        kt.solve([torch.ones(2, 3, dtype=F64)], torch.zeros(3, dtype=F64))
    for fn in (kt.inv_quad, kt.log_quad):
        with pytest.raises(ValueError, match=r"`factors\[0\]` must be square"):
            fn([torch.ones(2, 3, dtype=F64)], torch.zeros(3, dtype=F64))
    with pytest.raises(ValueError, match=r"`factors\[0\]` must be square"):
        kt.logdet([torch.ones(2, 3, dtype=F64)])
    with pytest.raises(TypeError, match="single array"):
        kt.solve(torch.eye(2, dtype=F64), torch.zeros(2, dtype=F64))
    with pytest.raises(ValueError, match="at least one factor"):
        kt.logdet([])
    with pytest.raises(TypeError, match="real"):
        kt.solve([torch.eye(2, dtype=torch.complex128)], torch.zeros(2, dtype=F64))
    with pytest.raises(ValueError, match=r"`y` contains NaN"):
        kt.solve([torch.eye(2, dtype=F64)], torch.tensor([1.0, float("nan")], dtype=F64))
    with pytest.raises(ValueError, match=r"`alpha` must be a scalar"):
        kt.log_quad([torch.eye(2, dtype=F64)], torch.ones(2, dtype=F64), alpha=torch.ones(2))
    with pytest.raises(ValueError, match="`assume`"):
        kt.solve([torch.eye(2, dtype=F64)], torch.ones(2, dtype=F64), assume="lu")


@pytest.mark.parametrize("singular", [np.zeros((2, 2)), np.array([[1.0, 2.0], [2.0, 4.0]]),
                                      np.array([[1.0, 2.0], [3.0, 6.0]])])
def test_singular_factor_raises(singular):
    F = [torch.eye(3, dtype=F64), _t(singular)]
    y = torch.ones(6, dtype=F64)
    for call in (lambda: kt.solve(F, y), lambda: kt.inv_quad(F, y), lambda: kt.log_quad(F, y)):
        with pytest.raises(SingularFactorError, match=r"`factors\[1\]` is singular") as info:
            call()
        assert info.value.factor == 1 and info.value.rcond == 0.0
    # an exact zero pivot: det = 0, so log det = −inf (as Kron.logdet and np.linalg.slogdet
    # of the dense product give); its derivative does not exist, and backward says so
    assert np.linalg.slogdet(np.kron(np.eye(3), singular))[1] == -np.inf
    G = [torch.eye(3, dtype=F64), _t(singular, True)]
    value = kt.logdet(G)
    assert value.item() == -np.inf
    with pytest.raises(SingularFactorError, match=r"`factors\[1\]`"):
        value.backward()


def test_numerically_singular_factor_raises_in_logdet_too():
    # issue 9: rcond ≈ 6e-18 <= eps; solve raised, logdet used to return a wrong finite value
    Q, _ = np.linalg.qr(np.random.default_rng(3).standard_normal((3, 3)))
    A = (Q * [1.0, 1e-9, 1e-20]) @ Q.T
    F = [_t((A + A.T) / 2), torch.eye(2, dtype=F64)]
    for call in (lambda: kt.logdet(F), lambda: kt.solve(F, torch.ones(6, dtype=F64))):
        with pytest.raises(SingularFactorError, match="singular to working precision") as info:
            call()
        assert info.value.factor == 0 and 0 < info.value.rcond <= np.finfo(float).eps


def test_ill_conditioned_factor_warns_with_rcond():
    Q, _ = np.linalg.qr(np.random.default_rng(3).standard_normal((3, 3)))
    A = (Q * [1.0, 1e-10, 3.0]) @ Q.T
    A = (A + A.T) / 2
    F = [torch.eye(2, dtype=F64), _t(A)]
    for assume in ("auto", "general", "spd"):
        with pytest.warns(IllConditionedWarning, match=r"`factors\[1\]`") as rec:
            value = kt.logdet(F, assume=assume)
        w = rec[0].message
        assert w.factor == 1 and w.rcond == pytest.approx(1 / np.linalg.cond(A, 1), rel=0.5)
        assert rec[0].filename == __file__  # points at the caller
        assert value.item() == pytest.approx(2 * np.log(3e-10), abs=1e-5)  # κ·eps ≈ 1e-6


def test_domain_errors(rng):
    A = _t(-np.eye(3))  # det(A ⊗ I_1) = -1
    with pytest.raises(DomainError, match="negative"):
        kt.logdet([A, torch.eye(1, dtype=F64)])
    assert float(kt.logdet([A, torch.eye(2, dtype=F64)])) == pytest.approx(0.0)  # (-1)^2 = 1
    F = [_t(spd(rng, 2)), _t(spd(rng, 2))]
    with pytest.raises(DomainError, match="β"):
        kt.log_quad(F, torch.ones(4, dtype=F64), alpha=-1e6)
    with pytest.raises(NotPositiveDefiniteError, match=r"`factors\[0\]`"):
        kt.solve([_t(general(rng, 3) - 5 * np.eye(3))], torch.ones(3, dtype=F64), assume="spd")


def test_empty_batch(rng):
    F = [_t(general(rng, 2), True), _t(spd(rng, 3), True)]
    y = torch.zeros(0, 6, dtype=F64, requires_grad=True)
    assert kt.log_quad(F, y).shape == (0,) and kt.inv_quad(F, y).shape == (0,)
    assert kt.solve(F, y).shape == (0, 6) and kt.matvec(F, y).shape == (0, 6)
    (kt.log_quad(F, y).sum() + kt.solve(F, y).sum()).backward()
    assert torch.equal(F[0].grad, torch.zeros(2, 2, dtype=F64))
