r"""The Cholesky route of ``kronkit.torch.inv_quad`` / ``log_quad``: every factor SPD.

With ``A_k = L_k L_kᵀ`` and ``𝐋 = L1 ⊗ ... ⊗ Ld`` the forward keeps only the half solve
``H = 𝐋⁻¹ w`` (one triangular solve per mode; ``q = ‖H‖²``) and the backward reuses it and
the forward's ``L_k``: since ``Z ×_{j≠k} A_j = H ×_{j≠k} L_j ×_k L_k⁻ᵀ`` while
``Z = S⁻¹ w = H ×_j L_j⁻ᵀ``, the modes ``j ≠ k`` cancel in ``∂q/∂A_k = −U_(k)(Z ×_{j≠k}
A_j)_(k)ᵀ`` and

    ∂q/∂A_k = −X_k X_kᵀ,   X_k = (H ×_k L_k⁻ᵀ)_(k),      ∂q/∂w = 2 (L1⁻ᵀ ⊗ ... ⊗ Ld⁻ᵀ) H

— one triangular solve and one symmetric product per factor (for two factors and one ``y``
as a ``p×q`` matrix ``W``: ``X = L_A⁻¹ W L_B⁻ᵀ``, ``∂q/∂A = −(L_A⁻ᵀX)(L_A⁻ᵀX)ᵀ``,
``∂q/∂B = −(X L_B⁻¹)ᵀ(X L_B⁻¹)``, ``∂q/∂y = 2 L_A⁻ᵀ X L_B⁻¹``), ≈ 8.7 p³ flops in all
with the two Cholesky factorisations. Every solve is one multi-right-hand-side
``torch.linalg.solve_triangular`` call on the mode's unfolding (batch rows included, no Python
loop over rows), laid out so that LAPACK gets its operands without transposing copies; the
symmetric products of large factors compute only the lower blocks (``gram``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from ._vec import along_mode, unfold

__all__ = ["gram", "half_solve", "spd_backward", "sum_squares"]

Tensor = torch.Tensor

#: ``gram`` splits ``X Xᵀ`` into row blocks of about this many rows when ``X`` has at least
#: twice as many (below that one product is faster than several smaller ones).
GRAM_BLOCK = 256


def _tri(X: Tensor, L: Tensor, trans: bool, overwrite: bool = False) -> Tensor:
    """``L⁻¹ X`` (``trans``: ``L⁻ᵀ X``) for a lower-triangular ``L``; ``overwrite``: in
    ``X``'s storage (LAPACK's in-place solve, saving the copy of ``X``).

    Otherwise in a copy of ``X`` that keeps its layout: PyTorch's own output would be
    column-major, so a row-major ``X`` would be transposed on the way in, and LAPACK's solve
    from the right (what a row-major ``X`` gets in place) is the faster one in MKL."""
    out = X if overwrite else X.clone()
    return torch.linalg.solve_triangular(L.mT if trans else L, out, upper=trans, out=out)


def _modes(t: Tensor, Ls: Sequence[Tensor], trans: bool, start: int = 0,
           overwrite: bool = False) -> Tensor:
    """``t ×_k L_k⁻¹`` (``trans``: ``L_k⁻ᵀ``) for the modes ``k >= start`` of ``t``'s last
    ``len(Ls)`` axes, one solve per mode. Every mode after the first overwrites the previous
    mode's result (a temporary); ``overwrite`` lets the first one overwrite ``t`` too."""
    d = len(Ls)
    for k in range(start, d):
        t = along_mode(t, k, d, _tri, Ls[k], trans, overwrite or k > start)
    return t


def half_solve(w: Tensor, Ls: Sequence[Tensor]) -> Tensor:
    """``H = (L1⁻¹ ⊗ ... ⊗ Ld⁻¹) w`` as a tensor of shape ``(..., p1, ..., pd)`` (any strides)
    for rows ``w`` of shape ``(..., P)`` (not modified); O(P·Σ p_k) per row."""
    return _modes(w.reshape(*w.shape[:-1], *[L.shape[0] for L in Ls]), Ls, False)


def sum_squares(h: Tensor, d: int) -> Tensor:
    """``‖H‖²`` over the last ``d`` axes of ``h`` (one value per row), in one reduction."""
    if h.ndim == d:  # one row: a flat dot product (a transposed matrix flattens as it lies)
        x = h.mT.reshape(-1) if d == 2 and h.mT.is_contiguous() else h.reshape(-1)
        return torch.dot(x, x)
    return torch.linalg.vector_norm(h, dim=tuple(range(-d, 0))).square()


def gram(X: Tensor, scale: float) -> Tensor:
    """``scale · X Xᵀ`` for ``X`` of shape ``(n, r)``.

    For ``n >= 2·GRAM_BLOCK`` only the block lower triangle is multiplied (one ``addmm`` per
    row block, ≈ (b+1)/(2b) of the flops with b blocks, the role of BLAS ``syrk``, which
    PyTorch does not expose) and mirrored; otherwise one ``addmm``. The scale rides on the
    product (``alpha``), so no extra pass over the result.
    """
    n = X.shape[0]
    if n < 2 * GRAM_BLOCK:
        return torch.addmm(X.new_empty(()), X, X.mT, beta=0, alpha=scale)
    blocks = -(-n // GRAM_BLOCK)
    b = -(-n // blocks)
    G = X.new_empty(n, n)
    for i in range(0, n, b):
        rows = G[i : i + b, : i + b]
        torch.addmm(rows, X[i : i + b], X[: i + b].mT, beta=0, alpha=scale, out=rows)
    for i in range(0, n - b, b):
        G[i : i + b, i + b :] = G[i + b :, i : i + b].mT
    return G


def _weighted_gram(X: Tensor, x: Tensor, gq: Tensor, k: int, d: int, one_row: bool) -> Tensor:
    """``−Σ_rows ḡq X Xᵀ`` for the mode-``k`` unfolding ``X`` of ``x`` (the rows' weights
    ``gq`` on the columns of their blocks)."""
    if one_row:
        if X.device.type == "cpu":  # the weight rides on the product (no sync on the CPU)
            return gram(X, -float(gq))
        return (X @ X.mT).mul_(-gq)
    weights = gq.reshape(*gq.shape, *[1] * d)
    return unfold(x * -weights, k, d) @ X.mT


def spd_backward(gq: Tensor, h: Tensor, Ls: Sequence[Tensor], needs: Sequence[bool],
                 need_w: bool) -> tuple[Tensor | None, list[Tensor | None]]:
    """``(∂/∂w, [∂/∂A_k])`` of ``Σ_rows ḡq·q`` from the forward's half solve ``h`` (shape
    ``(..., p1, ..., pd)``) and Cholesky factors ``Ls``; ``None`` where not needed.

    ``gq`` holds one weight per row (shape ``h.shape[:-d]``). Cost: one triangular solve and
    one symmetric product per needed factor, plus d − 1 solves for ``∂/∂w`` (the first mode's
    solve is shared).
    """
    d = len(Ls)
    one_row = h.ndim == d
    first = along_mode(h, 0, d, _tri, Ls[0], True) if needs[0] or need_w else None
    grads: list[Tensor | None] = []
    for k, L in enumerate(Ls):
        if needs[k]:
            x = first if k == 0 and first is not None else along_mode(h, k, d, _tri, L, True)
            grads.append(_weighted_gram(unfold(x, k, d), x, gq, k, d, one_row))
        else:
            grads.append(None)
    gw = None
    if first is not None and need_w:
        z = _modes(first, Ls, True, start=1, overwrite=d > 1)  # Z = S⁻¹ w; first is spent
        z = z.reshape(*z.shape[:-d], math.prod(z.shape[-d:]))
        gw = z * (2.0 * gq) if one_row else z * (2.0 * gq.unsqueeze(-1))
    return gw, grads
