r"""``kronkit.torch`` on sums of Kronecker products: ``torch.autograd.Function``\ s whose
backward passes are the closed forms of :mod:`kronkit._sum_rules` (the encoding and structure
rule: :mod:`kronkit._sum_spec`).

* ``_solve``: ``x = S⁻¹y``, a :class:`~kronkit._torch_common.StructuredSolve`; backward
  ``ȳ = S⁻ᵀg``, ``F̄_tk = −∂⟨ȳ, S x⟩/∂F_tk``;
* ``_InvQuad``: ``q = wᵀS⁻¹w``; backward ``w̄ = 2ḡ u``, ``F̄_tk = −ḡ ∂⟨u, S u⟩/∂F_tk``
  (``u = S⁻¹w``; under ``create_graph`` the two ``u`` are ``S⁻¹w`` and ``S⁻ᵀw`` as
  ``_solve`` outputs, equal in value, so that second derivatives are exact in every
  direction);
* ``_LogDet``: backward ``F̄ = ḡ G`` with ``G = _LogDetGrads``, whose backward is the
  Hessian-vector product :func:`~kronkit._sum_rules.logdet_hvp` (the Hessian is symmetric).

The eigen form is computed once per call from the detached factors; every derivative reaches
the factors through the Functions, never through ``eigh``, so second derivatives
(``gradgradcheck``, Hessian-vector products) are exact at degenerate spectra too.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import torch

from . import _backend
from . import _sum_rules as rules
from ._factor import is_symmetric
from ._sum_spec import SumSpec, parse_sum, slot_name
from ._torch_common import StructuredSolve, as_tensor, check_finite, host_view, log_beta, prepare

__all__ = ["inv_quad", "log_quad", "logdet", "solve"]

Tensor = torch.Tensor


def _symmetric(F: Tensor, name: str) -> Tensor:
    if not bool(is_symmetric(host_view(F), torch.finfo(F.dtype).eps)):
        raise rules.not_symmetric_error(name)
    return F


def _cholesky(C: Tensor, name: str) -> Tensor:
    L, info = torch.linalg.cholesky_ex(C)
    if int(info) != 0:
        raise rules.metric_error(name, None)
    return L


def _positive(v: Tensor, name: str | None) -> Tensor:
    """``v`` if every entry is positive, else the metric error (``name``) or, for
    ``name=None``, the error for ``λ`` (the sum is not positive definite)."""
    rules.require_positive(float(v.min()), name)
    return v


OPS = rules.Ops(
    eigh=torch.linalg.eigh,
    cholesky=_cholesky,
    tri_solve=lambda L, X, trans: torch.linalg.solve_triangular(L.mT if trans else L, X,
                                                                upper=trans),
    log=torch.log,
    sqrt=torch.sqrt,
    diag=torch.diag,
    ones=lambda n, like: torch.ones(n, dtype=like.dtype, device=like.device),
    symmetric=_symmetric,
    positive=_positive,
)


_LAST = threading.local()  # per thread: (spec, copies of the factors, their eigen form)


def _eigen(spec: SumSpec, mats: Sequence[Tensor]) -> rules.EigenForm:
    """The eigen form of the sum, from the detached factors. The previous call's (in this
    thread) is reused when the spec and every factor's values are the same (compared, O(Σ n_k²)),
    so ``logdet`` and ``inv_quad`` of one sum (a Gaussian likelihood) cost one
    eigendecomposition per axis."""
    with torch.no_grad():
        fixed = [M.detach() for M in mats]
        last = getattr(_LAST, "entry", None)
        if (last is not None and last[0] == spec and all(
                a.dtype == b.dtype and a.device == b.device and torch.equal(a, b)
                for a, b in zip(last[1], fixed, strict=True))):
            return last[2]
        E = rules.eigen_form(spec, fixed, OPS)
        _LAST.entry = (spec, [M.clone() for M in fixed], E)
        return E


def _neg(grads: Sequence[Tensor | None]) -> list[Tensor | None]:
    return [None if G is None else -G for G in grads]


class _SumSolver:
    """A sum for :class:`kronkit._torch_common.StructuredSolve`: solves with the eigen form
    ``E`` (``S`` is symmetric, so ``trans`` changes only the derivatives), factor gradients
    by :func:`kronkit._sum_rules.quad_grads`."""

    __slots__ = ("E",)

    def __init__(self, E: rules.EigenForm):
        self.E = E

    def solve(self, y: Tensor, trans: bool) -> Tensor:
        return rules.solve(self.E, y)

    def factor_grads(self, u: Tensor, v: Tensor, mats: Sequence[Tensor],
                     needs: Sequence[bool]) -> list[Tensor | None]:
        return rules.quad_grads(self.E.spec, mats, u, v, needs)


def _solve(y: Tensor, E: rules.EigenForm, trans: bool, mats: Sequence[Tensor]) -> Tensor:
    return StructuredSolve.apply(y, _SumSolver(E), trans, *mats)


class _InvQuad(torch.autograd.Function):
    """``q = wᵀ S⁻¹ w`` per row. Backward with ``z = S⁻¹w``, ``u = S⁻ᵀw`` (equal values,
    rebuilt as ``_solve`` outputs under ``create_graph``): ``w̄ = ḡ(z + u)``,
    ``F̄_tk = −ḡ ∂⟨u, S z⟩/∂F_tk``."""

    @staticmethod
    def forward(ctx, w, E, *mats):
        z = rules.solve(E, w)
        ctx.E = E
        ctx.save_for_backward(w, z, *mats)
        return (w * z).sum(-1)

    @staticmethod
    def backward(ctx, gq):
        w, z, *mats = ctx.saved_tensors
        u = z
        if torch.is_grad_enabled():  # differentiable backward: through the solves
            z, u = _solve(w, ctx.E, False, mats), _solve(w, ctx.E, True, mats)
        gq = gq.unsqueeze(-1)
        gw = gq * (z + u) if ctx.needs_input_grad[0] else None
        grads = rules.quad_grads(ctx.E.spec, mats, gq * u, z, ctx.needs_input_grad[2:])
        return (gw, None, *_neg(grads))


class _LogDetGrads(torch.autograd.Function):
    """``(∂ log det S/∂F_tk)`` for every slot; backward: the Hessian-vector product."""

    @staticmethod
    def forward(ctx, E, *mats):
        ctx.E = E
        ctx.shapes = [M.shape for M in mats]
        return tuple(rules.logdet_grads(E, [True] * len(mats)))

    @staticmethod
    def backward(ctx, *cots):
        with torch.no_grad():
            hvp = rules.logdet_hvp(ctx.E, OPS, [c.detach() for c in cots],
                                   ctx.needs_input_grad[1:])
        return (None, *hvp)


class _LogDet(torch.autograd.Function):
    """``log det S = Σ log λ + Σ_k (P/n_k) log det C_k``."""

    @staticmethod
    def forward(ctx, E, *mats):
        ctx.E = E
        ctx.save_for_backward(*mats)
        return rules.logdet(E, OPS)

    @staticmethod
    def backward(ctx, g):
        mats = ctx.saved_tensors
        grads = _LogDetGrads.apply(ctx.E, *mats)
        return (None, *[g * G if need else None
                        for G, need in zip(grads, ctx.needs_input_grad[1:], strict=True)])


# ---------------------------------------------------------------------------------------
# Public entry points (called by kronkit.torch for a sum)
# ---------------------------------------------------------------------------------------
def _prepare(factors: Any, **vectors: Any) -> tuple[SumSpec, list[Tensor], dict[str, Any]]:
    """Parse the sum, validate the vectors; one dtype and device (Python-number factors do not
    choose the dtype)."""
    specs: list[SumSpec] = []
    numbers: set[str] = set()
    weak: list[int] = []  # flat slots given as Python numbers

    def convert(x: Any, name: str) -> Tensor:
        if isinstance(x, (int, float)) and not isinstance(x, bool):
            numbers.add(name)
        return as_tensor(x, name)

    def validate(**v: Any) -> tuple[list[Tensor], dict[str, Any]]:
        spec, mats = parse_sum(factors, convert, check_finite)
        specs.append(spec)
        weak.extend(i for i in range(len(mats)) if slot_name(*divmod(i, spec.d)) in numbers)
        return mats, _backend.validate_vectors(spec.size, spec.size, as_tensor, check_finite,
                                               **v)

    mats, arrays = prepare(validate, weak=weak, **vectors)
    return specs[0], mats, arrays


def solve(factors: Any, y: Any) -> Tensor:
    """``S⁻¹ y`` per row for a sum ``S`` (see :func:`kronkit.torch.solve`)."""
    spec, mats, v = _prepare(factors, y=y)
    return _solve(v["y"], _eigen(spec, mats), False, mats)


def inv_quad(factors: Any, y: Any) -> Tensor:
    """``yᵀ S⁻¹ y`` per row for a sum ``S`` (see :func:`kronkit.torch.inv_quad`)."""
    spec, mats, v = _prepare(factors, y=y)
    return _InvQuad.apply(v["y"], _eigen(spec, mats), *mats)


def logdet(factors: Any) -> Tensor:
    """``log det S`` for a sum ``S`` (see :func:`kronkit.torch.logdet`)."""
    spec, mats, _ = _prepare(factors)
    return _LogDet.apply(_eigen(spec, mats), *mats)


def log_quad(factors: Any, y: Any, mu: Any = None, alpha: Any = 1.0) -> Tensor:
    """``log(α + (y−μ)ᵀ S⁻¹ (y−μ))`` per row for a sum ``S`` (see
    :func:`kronkit.torch.log_quad`)."""
    spec, mats, v = _prepare(factors, y=y, mu=mu, alpha=alpha)
    w = v["y"] if v["mu"] is None else v["y"] - v["mu"]
    return log_beta(v["alpha"], _InvQuad.apply(w, _eigen(spec, mats), *mats))
