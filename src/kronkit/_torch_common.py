"""What ``kronkit.torch`` and its sums module share: argument conversion, the finiteness
check, and one device and dtype for a call's inputs."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from ._backend import beta_error
from ._checks import check_scalar, non_finite_error

__all__ = ["FLOATS", "StructuredSolve", "as_tensor", "check_finite", "host_view", "log_beta", "prepare"]

FLOATS = (torch.float32, torch.float64)


def as_tensor(x: Any, name: str) -> torch.Tensor:
    """A real float32/float64 tensor (non-tensors via NumPy; integers and booleans -> float64)."""
    if x is None:
        raise TypeError(f"`{name}` must be a tensor, got None")
    if not isinstance(x, torch.Tensor):
        try:
            arr = np.array(x)  # a copy: the caller's array is never shared or touched
        except Exception as exc:  # ragged lists and the like
            raise TypeError(f"`{name}` could not be converted to a tensor: {exc}") from exc
        if arr.dtype.kind not in "biufc":
            raise TypeError(f"`{name}` must be a real numeric array, got dtype {arr.dtype}")
        x = torch.from_numpy(arr)
    if x.is_complex():
        raise TypeError(f"`{name}` must be real, got dtype {x.dtype}")
    if not x.is_floating_point():
        return x.to(torch.float64)
    if x.dtype not in FLOATS:
        raise TypeError(f"`{name}` must be float32 or float64, got dtype {x.dtype}")
    return x


def host_view(x: torch.Tensor) -> np.ndarray | torch.Tensor:
    """``x`` (detached) as a zero-copy NumPy array if it lives on the CPU, else the tensor.

    For the O(n²) checks of a call (finiteness, symmetry): NumPy runs them on the calling
    thread, where a small PyTorch op would wake its thread pool (on a busy machine each such
    wake-up can cost milliseconds)."""
    x = x.detach()
    return x.numpy() if x.device.type == "cpu" else x


def check_finite(x: torch.Tensor, name: str) -> None:
    """``ValueError`` naming ``name`` (and counting the entries), as ``Kron`` raises.

    One pass: the sum of the entries is finite unless some entry is not (or the sum
    overflows, which the exact count below then clears)."""
    if not x.numel():
        return
    total = host_view(x).sum()
    if bool(np.isfinite(total) if isinstance(total, np.generic) else torch.isfinite(total)):
        return
    bad = int(x.numel() - torch.isfinite(x.detach()).sum())
    if bad:
        raise non_finite_error(name, bad)


def prepare(validate: Callable[..., tuple[list[torch.Tensor], dict[str, Any]]],
            weak: Sequence[int] = (), **vectors: Any) -> tuple[list[torch.Tensor], dict[str, Any]]:
    """``validate(**vectors) -> (factor tensors, {name: tensor or None})``, then one dtype and
    device for all of them (differentiable casts).

    A Python number ``alpha`` stays a Python float (it does not set the dtype), and so do the
    factors listed in ``weak`` (Python numbers). The dtype is float64 if any other input is
    float64, else float32; all inputs must share a device.
    """
    scalars = {}
    if vectors.get("alpha") is not None and not isinstance(vectors["alpha"], torch.Tensor):
        scalars["alpha"] = check_scalar(vectors["alpha"], "alpha")
        vectors = {**vectors, "alpha": None}
    mats, arrays = validate(**vectors)
    named = {f"factors[{k}]": A for k, A in enumerate(mats)}
    named.update({name: x for name, x in arrays.items() if x is not None})
    if len({x.device for x in named.values()}) > 1:
        where = ", ".join(f"`{n}` on {x.device}" for n, x in named.items())
        raise ValueError(f"all inputs must be on one device, got {where}")
    strong = set(named) - {f"factors[{k}]" for k in weak}
    dtype = torch.float32
    if any(named[n].dtype == torch.float64 for n in strong) or not strong:
        dtype = torch.float64
    cast = {name: x.to(dtype=dtype) for name, x in named.items()}
    out_factors = [cast[f"factors[{k}]"] for k in range(len(mats))]
    return out_factors, {name: cast.get(name, scalars.get(name)) for name in vectors}


class StructuredSolve(torch.autograd.Function):
    """``x = S⁻¹ y`` (``trans``: ``S⁻ᵀ y``) for a structured ``S`` described by ``solver``:
    ``solver.solve(y, trans)`` and ``solver.factor_grads(u, v, factors, needs)`` (the
    gradients ``∂⟨u, S v⟩/∂F`` of the differentiable inputs ``factors``, ``None`` where not
    needed). The one solve Function of ``kronkit.torch`` (Kronecker products and sums).

    Backward (not transposed): ``ȳ = S⁻ᵀ g`` and ``F̄ = −∂⟨ȳ, S x⟩/∂F``; transposed:
    ``ȳ = S⁻¹ g`` and ``F̄ = −∂⟨x, S ȳ⟩/∂F``. ``ȳ`` is itself a ``StructuredSolve``, so the
    backward is differentiable.
    """

    @staticmethod
    def forward(ctx, y, solver, trans, *factors):
        x = solver.solve(y, trans)
        ctx.solver, ctx.trans = solver, trans
        ctx.save_for_backward(x, *factors)
        return x

    @staticmethod
    def backward(ctx, g):
        x, *factors = ctx.saved_tensors
        gy = StructuredSolve.apply(g, ctx.solver, not ctx.trans, *factors)
        u, v = (x, gy) if ctx.trans else (gy, x)
        grads = ctx.solver.factor_grads(u, v, factors, ctx.needs_input_grad[3:])
        return (gy if ctx.needs_input_grad[0] else None, None, None,
                *[None if G is None else -G for G in grads])


def log_beta(alpha: Any, q: torch.Tensor) -> torch.Tensor:
    """``log(α + q)``, or :class:`~kronkit.DomainError` where some ``β = α + q ≤ 0``."""
    beta = alpha + q
    if not bool((beta.detach() > 0).all()):
        raise beta_error(float(beta.detach().min()), beta.detach())
    return torch.log(beta)
