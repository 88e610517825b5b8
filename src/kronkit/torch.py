r"""PyTorch autodiff rules for Kronecker-structured linear algebra (optional extra ``torch``).

=========================================  ===============================================
``matvec(factors, y)``                     ``S y``               (factors may be rectangular)
``solve(factors, y)``                      ``S⁻¹ y``
``inv_quad(factors, y)``                   ``yᵀ S⁻¹ y``          (one value per row of ``y``)
``logdet(factors)``                        ``log det S``
``log_quad(factors, y, mu, alpha)``        ``log(α + (y−μ)ᵀ S⁻¹ (y−μ))``  (one value per row)
=========================================  ===============================================

``factors`` is a sequence of 2-D tensors ``(A1, ..., Ad)`` (or a :class:`kronkit.Kron`) for
``S = A1 ⊗ ... ⊗ Ad`` (``torch.kron`` / ``np.kron`` order); ``y`` of shape ``(..., P)`` holds
one vector per row, each the row-major flattening of a ``(p1, ..., pd)`` tensor, so that for
two factors ``S @ Y.ravel() == (A @ Y @ B.T).ravel()``. Nothing ``P×P`` is ever formed.

``matvec``, ``solve``, ``inv_quad`` and ``logdet`` are :class:`torch.autograd.Function`
subclasses with closed-form backward passes (REFERENCES.md §1–2); ``log_quad`` is
``log(α + inv_quad(factors, y − μ))``, so its backward is ``inv_quad``'s scaled by ``1/β``.
Each backward is written with differentiable building blocks (mode products as torch ops, the
structured solve as its own ``Function``), so second derivatives (``create_graph=True``,
Hessian-vector products, ``gradgradcheck``) work too. Results follow the inputs' device and
dtype (float32 or float64).

Importing :mod:`kronkit` does not import torch; ``import kronkit.torch`` does.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Any

try:
    import torch
except ImportError as exc:  # pragma: no cover - exercised in a subprocess test
    raise ImportError(
        "kronkit.torch needs PyTorch, which is not installed; install it with "
        "`pip install kronkit[torch]`"
    ) from exc

import numpy as np

from ._checks import check_scalar, non_finite_error
from ._errors import (
    DomainError,
    IllConditionedWarning,
    NotPositiveDefiniteError,
    SingularFactorError,
    warn_at_caller,
)
from ._factor import rcond_from_factor
from ._kron import Kron

__all__ = ["inv_quad", "log_quad", "logdet", "matvec", "solve"]

Tensor = torch.Tensor
_FLOATS = (torch.float32, torch.float64)
_ASSUME = ("auto", "general", "spd")


def _prod(xs: Iterable[int]) -> int:
    out = 1
    for x in xs:
        out *= int(x)
    return out


# =============================================================================================
# Mode products and the factor-gradient contraction (the one place for mode products)
# =============================================================================================
def _to_tensor(y: Tensor, dims: Sequence[int]) -> Tensor:
    """View ``y`` of shape ``(..., P)`` as ``(..., p1, ..., pd)`` (row-major)."""
    return y.reshape(*y.shape[:-1], *dims)


def _to_vec(t: Tensor, d: int) -> Tensor:
    """Flatten the last ``d`` axes of ``t`` row-major: ``(..., p1, ..., pd) -> (..., P)``."""
    return t.reshape(*t.shape[: t.ndim - d], _prod(t.shape[t.ndim - d :]))


def _mode_product(t: Tensor, M: Tensor, k: int, d: int) -> Tensor:
    """Mode-``k`` product: axis ``k`` (of the last ``d``) of ``t`` multiplied by ``M`` (mk, nk).

    ``(..., n1, ..., nk, ..., nd) -> (..., n1, ..., mk, ..., nd)``; one (batched) GEMM.
    Ordinary torch ops, so it is differentiable to any order.
    """
    shape = t.shape
    axis = t.ndim - d + k
    nk = shape[axis]
    before = _prod(shape[:axis])
    after = _prod(shape[axis + 1 :])
    if after == 1:
        out = t.reshape(before, nk) @ M.mT
    else:
        out = torch.matmul(M, t.reshape(before, nk, after))
    return out.reshape(*shape[:axis], M.shape[0], *shape[axis + 1 :])


def _apply(y: Tensor, mats: Sequence[Tensor]) -> Tensor:
    """``(M1 ⊗ ... ⊗ Md) y`` for rows ``y`` of shape ``(..., Π n_k)``; O(P·Σ m_k)."""
    d = len(mats)
    t = _to_tensor(y, [M.shape[1] for M in mats])
    for k, M in enumerate(mats):
        t = _mode_product(t, M, k, d)
    return _to_vec(t, d)


def _contract(u: Tensor, v: Tensor, k: int, d: int) -> Tensor:
    """``U_(k) V_(k)ᵀ``: contract every axis but mode ``k`` (batch axes included, so summed)."""
    axis = u.ndim - d + k
    others = [a for a in range(u.ndim) if a != axis]
    return torch.tensordot(u, v, dims=(others, others))


def _factor_grads(u: Tensor, v: Tensor, factors: Sequence[Tensor],
                  needs: Sequence[bool]) -> list[Tensor | None]:
    r"""``G_k = ∂⟨u, S v⟩/∂A_k`` for every ``k`` with ``needs[k]`` (``None`` elsewhere).

    ``u`` has shape ``(..., Π m_j)``, ``v`` shape ``(..., Π n_j)``; the batch is summed.
    ``G_k = U_(k) (V ×_{j≠k} A_j)_(k)ᵀ`` (mode-k unfoldings), computed as
    ``unfold_k(u ×_{j>k} A_jᵀ) · unfold_k(v ×_{j<k} A_j)ᵀ`` with running prefix / suffix
    products: 2(d−1) mode products and d contractions, O(P·Σ p_j) in all. For two factors,
    ``G_A = U B Vᵀ`` and ``G_B = Uᵀ A V``.
    """
    d = len(factors)
    ut = _to_tensor(u, [A.shape[0] for A in factors])
    vt = _to_tensor(v, [A.shape[1] for A in factors])
    suffix: list[Tensor] = [ut] * d  # suffix[k] = u ×_{j>k} A_jᵀ
    for k in range(d - 1, 0, -1):
        suffix[k - 1] = _mode_product(suffix[k], factors[k].mT, k, d)
    grads: list[Tensor | None] = []
    t = vt  # v ×_{j<k} A_j
    for k in range(d):
        grads.append(_contract(suffix[k], t, k, d) if needs[k] else None)
        if k < d - 1 and any(needs[k + 1 :]):
            t = _mode_product(t, factors[k], k, d)
    return grads


# =============================================================================================
# Per-factor factorisations (the one place for per-factor solves)
# =============================================================================================
class _Factor:
    """Cholesky (symmetric positive definite) or LU factorisation of one square factor.

    Computed once per call from the factor's values (detached; the autograd graph goes through
    the factor tensors themselves). ``assume="auto"``: Cholesky if the factor is symmetric (to
    ``16·eps·max|A|``) and the Cholesky succeeds, LU with partial pivoting otherwise;
    ``"general"``: always LU; ``"spd"``: Cholesky, and :class:`~kronkit.NotPositiveDefiniteError`
    if the factor is not symmetric positive definite. No eigenvalue clamping or jitter.

    Conditioning, as in :class:`kronkit.Kron`: ``rcond`` is LAPACK's estimate of
    ``1/(‖A‖₁‖A⁻¹‖₁)`` (``pocon`` / ``gecon`` on the factors, O(p²) on the host);
    ``exact_zero`` flags an exact zero pivot in the LU factors (``rcond = 0``). The checks
    themselves are made by :func:`_factorize`.
    """

    __slots__ = ("cholesky", "exact_zero", "index", "lu", "n", "piv", "rcond", "symmetric")
    lu: Tensor  # lower Cholesky factor L, or the packed LU factors
    piv: Tensor | None  # LU pivots (1-based, LAPACK style); None for Cholesky

    def __init__(self, A: Tensor, index: int, assume: str):
        A = A.detach()
        self.index = index
        self.n = A.shape[0]
        eps = torch.finfo(A.dtype).eps
        scale = float(A.abs().max())
        self.symmetric = bool(torch.equal(A, A.mT)) or bool(
            (A - A.mT).abs().max() <= 16 * eps * scale
        )
        self.cholesky = False
        if self.symmetric and assume != "general":
            L, info = torch.linalg.cholesky_ex(A)
            self.cholesky = int(info) == 0
        if assume == "spd" and not self.cholesky:
            why = "Cholesky failed" if self.symmetric else "it is not symmetric"
            raise NotPositiveDefiniteError(
                f"`factors[{index}]` is not symmetric positive definite ({why}); "
                "use assume='auto' or 'general'",
                factor=index,
            )
        self.exact_zero = False
        if self.cholesky:
            self.lu, self.piv = L, None
        else:
            self.lu, self.piv, info = torch.linalg.lu_factor_ex(A)
            self.exact_zero = int(info) > 0 or bool((torch.diagonal(self.lu) == 0).any())
        self.rcond = 0.0 if self.exact_zero else self._estimate_rcond(A)

    def _estimate_rcond(self, A: Tensor) -> float:
        return rcond_from_factor(A.detach().cpu().numpy(), self.lu.detach().cpu().numpy(),
                                 self.cholesky)

    @property
    def eps(self) -> float:
        return torch.finfo(self.lu.dtype).eps

    def check(self) -> None:
        """:class:`~kronkit.SingularFactorError` if singular to working precision."""
        if not self.rcond > self.eps:
            why = ("an exact zero pivot in its LU factorisation" if self.exact_zero else
                   f"reciprocal condition number {self.rcond:.3g} <= eps = {self.eps:.3g}")
            raise SingularFactorError(
                f"`factors[{self.index}]` is singular to working precision ({why}); "
                "an inverse, solve or log-determinant is undefined",
                factor=self.index,
                rcond=self.rcond,
            )

    def solve(self, X: Tensor, trans: bool, tri: bool = False) -> Tensor:
        """``A⁻¹ X`` (``trans``: ``A⁻ᵀ X``) for ``X`` of shape (n, k).

        ``tri`` (Cholesky only): ``L⁻¹ X`` (``trans``: ``L⁻ᵀ X``) with ``A = L Lᵀ``.
        """
        if tri:
            L = self.lu.mT if trans else self.lu
            return torch.linalg.solve_triangular(L, X, upper=trans)
        if self.cholesky:
            return torch.cholesky_solve(X, self.lu)
        return torch.linalg.lu_solve(self.lu, self.piv, X, adjoint=trans)

    def solve_mode(self, t: Tensor, k: int, d: int, trans: bool, tri: bool = False) -> Tensor:
        """:meth:`solve` applied on mode ``k`` (of the last ``d``) of ``t``; O(size(t)·n)."""
        shape = t.shape
        axis = t.ndim - d + k
        nk = shape[axis]
        before = _prod(shape[:axis])
        after = _prod(shape[axis + 1 :])
        X = t.reshape(before, nk, after).transpose(0, 1).reshape(nk, before * after)
        X = self.solve(X, trans, tri)
        return X.reshape(nk, before, after).transpose(0, 1).reshape(shape)

    def slogdet(self) -> tuple[int, Tensor]:
        """``(sign, log|det A|)`` from the factorisation (sign as a Python int)."""
        diag = torch.diagonal(self.lu)
        if self.piv is None:  # Cholesky
            return 1, 2.0 * torch.log(diag).sum()
        swaps = int(torch.ne(self.piv, torch.arange(1, self.n + 1, device=self.piv.device)).sum())
        negatives = int((diag < 0).sum())
        return (-1) ** ((swaps + negatives) % 2), torch.log(diag.abs()).sum()


_TORCH_DIR = os.path.dirname(os.path.abspath(torch.__file__)) + os.sep


def _warn(warning: Warning) -> None:
    """Issue ``warning`` at the caller's line (skipping kronkit's and torch's frames)."""
    warn_at_caller(warning, _TORCH_DIR)


def _factorize(factors: Sequence[Tensor], assume: str, *,
               zero_det_ok: bool = False) -> list[_Factor]:
    """Factor every factor, with the conditioning contract of :class:`kronkit.Kron`.

    A factor singular to working precision (``rcond <= eps``, exact zero pivots included)
    raises :class:`~kronkit.SingularFactorError`; one :class:`~kronkit.IllConditionedWarning`
    names every factor with ``rcond < sqrt(eps)``. ``zero_det_ok`` (log-determinants): an
    exact zero pivot is no error (``det = 0``, ``log det = −inf``), and then nothing else is
    checked, as in ``Kron.slogdet``.
    """
    with torch.no_grad():
        facs = [_Factor(A, k, assume) for k, A in enumerate(factors)]
    if zero_det_ok and any(f.exact_zero for f in facs):
        return facs
    for f in facs:
        f.check()
    ill = [f for f in facs if f.rcond < np.sqrt(f.eps)]
    if ill:
        worst = min(ill, key=lambda f: f.rcond)
        listing = ", ".join(f"`factors[{f.index}]` (condition number ≈ {1.0 / f.rcond:.3g})"
                            for f in ill)
        _warn(IllConditionedWarning(
            f"ill-conditioned {listing}; results may have lost more than half of their "
            f"digits (reciprocal condition number below sqrt(eps) = {np.sqrt(worst.eps):.3g})",
            factor=worst.index,
            rcond=worst.rcond,
        ))
    return facs


def _solve(y: Tensor, facs: Sequence[_Factor], trans: bool, tri: bool = False) -> Tensor:
    """``S⁻¹ y`` (``trans``: ``S⁻ᵀ y``) for rows ``y`` of shape ``(..., P)``; O(P·Σ p_k).

    ``tri`` (all factors Cholesky, ``S = 𝐋𝐋ᵀ`` with ``𝐋 = L1 ⊗ ... ⊗ Ld``): ``𝐋⁻¹ y``
    (``trans``: ``𝐋⁻ᵀ y``).
    """
    d = len(facs)
    t = _to_tensor(y, [f.n for f in facs])
    for k, f in enumerate(facs):
        t = f.solve_mode(t, k, d, trans, tri)
    return _to_vec(t, d)


# =============================================================================================
# autograd Functions
# =============================================================================================
class _MatVec(torch.autograd.Function):
    """``x = S y``. Backward: ``ḡy = Sᵀ g``, ``ḡA_k = ∂⟨g, S y⟩/∂A_k``."""

    @staticmethod
    def forward(ctx, y, *factors):
        ctx.save_for_backward(y, *factors)
        return _apply(y, factors)

    @staticmethod
    def backward(ctx, g):
        y, *factors = ctx.saved_tensors
        gy = _MatVec.apply(g, *[A.mT for A in factors]) if ctx.needs_input_grad[0] else None
        return (gy, *_factor_grads(g, y, factors, ctx.needs_input_grad[1:]))


class _Solve(torch.autograd.Function):
    """``x = S⁻¹ y`` (``trans``: ``S⁻ᵀ y``) with the factorisations ``facs`` of the factors.

    Backward (not transposed): ``ḡy = S⁻ᵀ g`` and ``ḡA_k = −∂⟨ḡy, S x⟩/∂A_k``; transposed:
    ``ḡy = S⁻¹ g`` and ``ḡA_k = −∂⟨x, S ḡy⟩/∂A_k``. ``ḡy`` is itself a ``_Solve``, so the
    backward is differentiable.
    """

    @staticmethod
    def forward(ctx, y, facs, trans, *factors):
        x = _solve(y, facs, trans)
        ctx.facs, ctx.trans = facs, trans
        ctx.save_for_backward(x, *factors)
        return x

    @staticmethod
    def backward(ctx, g):
        x, *factors = ctx.saved_tensors
        gy = _Solve.apply(g, ctx.facs, not ctx.trans, *factors)
        u, v = (x, gy) if ctx.trans else (gy, x)
        grads = _factor_grads(u, v, factors, ctx.needs_input_grad[3:])
        return (gy, None, None, *[None if G is None else -G for G in grads])


class _InvQuad(torch.autograd.Function):
    """``q = wᵀ S⁻¹ w`` per row of ``w``.

    Backward with ``Z = S⁻¹ w`` and ``U = S⁻ᵀ w`` (``U = Z`` for symmetric factors):
    ``ḡw = ḡq (Z + U)`` and ``ḡA_k = −∂⟨ḡq U, S Z⟩/∂A_k = −ḡq U_(k) (Z ×_{j≠k} A_j)_(k)ᵀ``.

    Fast path when every factor has a Cholesky factor ``A_k = L_k L_kᵀ``: the forward keeps
    the half solve ``H = (L1⁻¹ ⊗ ... ⊗ Ld⁻¹) w`` (``q = ‖H‖²``) and, since
    ``Z ×_{j≠k} A_j = H ×_{j≠k} L_j ×_k L_k⁻ᵀ`` while ``Z = H ×_j L_j⁻ᵀ``, the modes ``j ≠ k``
    cancel in the contraction: ``ḡA_k = −ḡq X_k X_kᵀ`` with ``X_k = L_k⁻ᵀ H_(k)`` — one
    triangular solve and one product per factor — and ``ḡw = 2 ḡq (L1⁻ᵀ ⊗ ... ⊗ Ld⁻ᵀ) H``.

    For second derivatives (``create_graph=True``) ``Z`` and ``U`` are rebuilt as ``_Solve``
    outputs so that the backward graph reaches ``w`` and the factors.
    """

    @staticmethod
    def forward(ctx, w, facs, *factors):
        ctx.facs = facs
        ctx.spd = all(f.cholesky for f in facs)
        if ctx.spd:
            h = _solve(w, facs, False, tri=True)
            ctx.save_for_backward(w, h, *factors)
            return (h * h).sum(-1)
        z = _solve(w, facs, False)
        ctx.save_for_backward(w, z, *factors)
        return (w * z).sum(-1)

    @staticmethod
    def backward(ctx, gq):
        w, saved, *factors = ctx.saved_tensors  # saved: H (ctx.spd) or Z
        facs, needs = ctx.facs, ctx.needs_input_grad[2:]
        gq = gq.unsqueeze(-1)
        if torch.is_grad_enabled():  # differentiable backward
            z = _Solve.apply(w, facs, False, *factors)
            u = _Solve.apply(w, facs, True, *factors)
        elif ctx.spd:
            gw = None
            if ctx.needs_input_grad[0]:
                gw = 2.0 * gq * _solve(saved, facs, True, tri=True)
            return (gw, None, *_spd_factor_grads(gq, saved, facs, needs))
        else:
            z = saved
            u = z if all(f.symmetric for f in facs) else _solve(w, facs, True)
        gw = gq * (z + u) if ctx.needs_input_grad[0] else None
        grads = _factor_grads(gq * u, z, factors, needs)
        return (gw, None, *[None if G is None else -G for G in grads])


def _spd_factor_grads(gq: Tensor, h: Tensor, facs: Sequence[_Factor],
                      needs: Sequence[bool]) -> list[Tensor | None]:
    """``−Σ_rows ḡq X_k X_kᵀ`` with ``X_k = L_k⁻ᵀ H_(k)`` (see :class:`_InvQuad`)."""
    d = len(facs)
    ht = _to_tensor(h, [f.n for f in facs])
    grads: list[Tensor | None] = []
    for k, f in enumerate(facs):
        if not needs[k]:
            grads.append(None)
            continue
        x = f.solve_mode(ht, k, d, True, tri=True)
        if h.ndim == 1:  # one row: scale the p_k×p_k result, not the P-vector
            grads.append(_contract(x, x, k, d) * -gq)
        else:
            weights = -gq.reshape(*gq.shape[:-1], *[1] * d)
            grads.append(_contract(weights * x, x, k, d))
    return grads


class _LogDet(torch.autograd.Function):
    """``log det S = Σ_k (P/p_k) log det A_k``. Backward: ``ḡA_k = ḡ (P/p_k) A_k⁻ᵀ``."""

    @staticmethod
    def forward(ctx, facs, *factors):
        ctx.facs = facs
        ctx.save_for_backward(*factors)
        if any(f.exact_zero for f in facs):  # det S = 0 exactly
            return factors[0].new_full((), -float("inf"))
        P = _prod(f.n for f in facs)
        sign, value = 1, factors[0].new_zeros(())
        for f in facs:
            s, logabs = f.slogdet()
            sign *= s ** ((P // f.n) % 2)
            value = value + (P // f.n) * logabs
        if sign < 0:
            raise DomainError(
                "det(A1 ⊗ ... ⊗ Ad) is negative, so its log is undefined", value=float(sign)
            )
        return value

    @staticmethod
    def backward(ctx, g):
        factors = ctx.saved_tensors
        P = _prod(f.n for f in ctx.facs)
        grads = []
        for k, (f, A) in enumerate(zip(ctx.facs, factors, strict=True)):
            if not ctx.needs_input_grad[k + 1]:
                grads.append(None)
                continue
            f.check()  # at det A_k = 0 the derivative A_k⁻ᵀ does not exist
            eye = torch.eye(f.n, dtype=A.dtype, device=A.device)
            inv_t = _Solve.apply(eye, [f], False, A)  # rows A⁻¹e_i: the matrix A⁻ᵀ
            grads.append(g * (P // f.n) * inv_t)
        return (None, *grads)


# =============================================================================================
# Input validation
# =============================================================================================
def _as_tensor(x: Any, name: str) -> Tensor:
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
    if x.dtype not in _FLOATS:
        raise TypeError(f"`{name}` must be float32 or float64, got dtype {x.dtype}")
    return x


def _check_finite(x: Tensor, name: str) -> None:
    """``ValueError`` naming ``name`` (and counting the entries), as ``Kron`` raises."""
    if x.numel() and not bool(torch.isfinite(x.detach()).all()):
        bad = int(x.numel() - torch.isfinite(x.detach()).sum())
        raise non_finite_error(name, bad)


def _check_assume(assume: Any) -> None:
    if assume not in _ASSUME:
        raise ValueError(f"`assume` must be one of {_ASSUME}, got {assume!r}")


def _inputs(factors: Any, square: str | None, **vectors: Any) -> tuple[list[Tensor], dict]:
    """Validate ``factors`` and the named vectors; cast all to one dtype (differentiably).

    ``square`` names the operation that needs square factors (``None``: any shape). Each
    vector (``None`` allowed) must have last axis ``N = Π n_k``; ``alpha`` must be a scalar.
    The dtype is float64 if any input is float64, else float32; all inputs must share a device.
    """
    if isinstance(factors, Kron):
        factors = factors.factors
    elif isinstance(factors, (torch.Tensor, np.ndarray)):
        raise TypeError(
            "`factors` must be a sequence of 2-D factor matrices [A1, ..., Ad], got a single "
            f"array of shape {tuple(factors.shape)}; pass [A]"
        )
    elif not isinstance(factors, (list, tuple)):
        raise TypeError(
            f"`factors` must be a sequence of 2-D factor matrices, got {type(factors).__name__}"
        )
    if len(factors) == 0:
        raise ValueError("`factors` must hold at least one factor, got an empty sequence")
    named: dict[str, Tensor] = {}
    for k, f in enumerate(factors):
        name = f"factors[{k}]"
        A = _as_tensor(f, name)
        if A.ndim != 2:
            raise ValueError(f"`{name}` must be 2-D, got shape {tuple(A.shape)}")
        if A.numel() == 0:
            raise ValueError(f"`{name}` is empty (shape {tuple(A.shape)})")
        if square is not None and A.shape[0] != A.shape[1]:
            raise ValueError(
                f"`{name}` must be square ({square} needs square factors), got shape "
                f"{tuple(A.shape)}"
            )
        _check_finite(A, name)
        named[name] = A
    rows = _prod(A.shape[0] for A in named.values())
    cols = _prod(A.shape[1] for A in named.values())
    scalars = {}
    for name, v in vectors.items():
        if v is None:
            continue
        if name == "alpha" and not isinstance(v, torch.Tensor):
            scalars[name] = check_scalar(v, name)  # a Python float does not set the dtype
            continue
        x = _as_tensor(v, name)
        if name == "alpha":
            if x.ndim != 0:
                raise ValueError(f"`alpha` must be a scalar, got shape {tuple(x.shape)}")
        elif x.ndim < 1 or x.shape[-1] != cols:
            raise ValueError(
                f"`{name}` must have length {cols} in its last axis (the Kronecker product is "
                f"{rows}×{cols}), got shape {tuple(x.shape)}"
            )
        _check_finite(x, name)
        named[name] = x
    if len({x.device for x in named.values()}) > 1:
        where = ", ".join(f"`{n}` on {x.device}" for n, x in named.items())
        raise ValueError(f"all inputs must be on one device, got {where}")
    dtype = torch.float32
    if any(x.dtype == torch.float64 for x in named.values()):
        dtype = torch.float64
    cast = {name: x.to(dtype=dtype) for name, x in named.items()}
    out_factors = [cast[f"factors[{k}]"] for k in range(len(factors))]
    return out_factors, {name: cast.get(name, scalars.get(name)) for name in vectors}


# =============================================================================================
# Public functions
# =============================================================================================
_ASSUME_DOC = """assume : {"auto", "general", "spd"}, default "auto"
        Factorisation of each factor: ``"auto"`` uses Cholesky where a factor is symmetric
        and positive definite and LU otherwise; ``"general"`` always LU; ``"spd"`` Cholesky,
        raising :class:`~kronkit.NotPositiveDefiniteError` for any other factor. The value and
        derivatives are the same (to rounding) whichever is used."""


def matvec(factors: Sequence[Any], y: Any) -> Tensor:
    r"""``S y`` with ``S = A1 ⊗ ... ⊗ Ad``, differentiable in ``y`` and every factor.

    Parameters
    ----------
    factors : sequence of Tensor of shape (m_k, n_k), or kronkit.Kron
        The Kronecker factors (rectangular allowed).
    y : Tensor of shape (..., N), N = Π n_k
        Rows are vectors (row-major flattenings of ``(n1, ..., nd)`` tensors).

    Returns
    -------
    Tensor of shape (..., M), M = Π m_k
        For two factors, row ``vec(Y)`` becomes ``vec(A Y Bᵀ)``.

    Notes
    -----
    Forward: d mode products, O(N·Σ m_k) per row. Backward with incoming ``g``:
    ``ȳ = Sᵀ g`` (mode products with the transposed factors) and
    ``Ā_k = G_(k) (Y ×_{j≠k} A_j)_(k)ᵀ`` summed over the batch (``Ā = G B Yᵀ``,
    ``B̄ = Gᵀ A Y`` for two factors). Dense equivalent: ``y @ torch.kron(A, B).T``.
    """
    fs, v = _inputs(factors, None, y=y)
    return _MatVec.apply(v["y"], *fs)


def solve(factors: Sequence[Any], y: Any, *, assume: str = "auto") -> Tensor:
    r"""``Z = S⁻¹ y`` with ``S = A1 ⊗ ... ⊗ Ad`` (square factors), differentiable to any order.

    Parameters
    ----------
    factors : sequence of Tensor of shape (p_k, p_k), or kronkit.Kron
    y : Tensor of shape (..., P), P = Π p_k
        Rows are right-hand sides.
    ASSUME

    Returns
    -------
    Tensor of shape (..., P)
        For two factors, row ``vec(Y)`` becomes ``vec(A⁻¹ Y B⁻ᵀ)``.

    Notes
    -----
    One factorisation per factor, O(Σ p_k³), then O(P·Σ p_k) per row. Backward with incoming
    ``g``: ``ȳ = S⁻ᵀ g`` and ``Ā_k = −ȳ_(k) (Z ×_{j≠k} A_j)_(k)ᵀ`` summed over the batch.
    A factor singular to working precision (LAPACK's ``rcond <= eps``) raises
    :class:`~kronkit.SingularFactorError`; ``rcond < sqrt(eps)`` gives an
    :class:`~kronkit.IllConditionedWarning` (as :class:`kronkit.Kron` does).
    Dense equivalent: ``torch.linalg.solve(torch.kron(A, B), y.T).T``.
    """
    _check_assume(assume)
    fs, v = _inputs(factors, "solve", y=y)
    return _Solve.apply(v["y"], _factorize(fs, assume), False, *fs)


def inv_quad(factors: Sequence[Any], y: Any, *, assume: str = "auto") -> Tensor:
    r"""``q = yᵀ S⁻¹ y`` per row of ``y``, ``S = A1 ⊗ ... ⊗ Ad``, with a closed-form gradient.

    Parameters
    ----------
    factors : sequence of Tensor of shape (p_k, p_k), or kronkit.Kron
    y : Tensor of shape (..., P), P = Π p_k
    ASSUME

    Returns
    -------
    Tensor of shape ``y.shape[:-1]``

    Notes
    -----
    With ``Z = S⁻¹ y`` and ``U = S⁻ᵀ y`` (``U = Z`` for symmetric factors):
    ``∂q/∂y = Z + U`` and ``∂q/∂A_k = −U_(k) (Z ×_{j≠k} A_j)_(k)ᵀ`` — for two factors
    ``∂q/∂A = −U B Zᵀ``, ``∂q/∂B = −Uᵀ A Z`` with ``Z = A⁻¹ Y B⁻ᵀ``, ``U = A⁻ᵀ Y B⁻¹``.
    Cost O(Σ p_k³ + P·Σ p_k) for the value and again for the gradient, against O(P³) dense.
    Dense equivalent: ``y @ torch.linalg.solve(torch.kron(A, B), y)``.
    """
    _check_assume(assume)
    fs, v = _inputs(factors, "inv_quad", y=y)
    return _InvQuad.apply(v["y"], _factorize(fs, assume), *fs)


def logdet(factors: Sequence[Any], *, assume: str = "auto") -> Tensor:
    r"""``log det S = Σ_k (P/p_k) log det A_k`` with ``∂/∂A_k = (P/p_k) A_k⁻ᵀ``.

    Parameters
    ----------
    factors : sequence of Tensor of shape (p_k, p_k), or kronkit.Kron
    ASSUME

    Returns
    -------
    Tensor of shape ()

    Notes
    -----
    Cost O(Σ p_k³). As :meth:`kronkit.Kron.logdet`: a factor with an exact zero pivot gives
    ``-inf`` (and ``backward`` raises :class:`~kronkit.SingularFactorError`: the derivative
    does not exist there); a factor singular to working precision otherwise raises
    :class:`~kronkit.SingularFactorError`; ``rcond < sqrt(eps)`` warns
    (:class:`~kronkit.IllConditionedWarning`); a negative ``det S`` raises
    :class:`~kronkit.DomainError` (the log is undefined), never NaN.
    Dense equivalent: ``torch.logdet(torch.kron(A, B))``.
    """
    _check_assume(assume)
    fs, _ = _inputs(factors, "logdet")
    return _LogDet.apply(_factorize(fs, assume, zero_det_ok=True), *fs)


def log_quad(factors: Sequence[Any], y: Any, mu: Any = None, alpha: Any = 1.0, *,
             assume: str = "auto") -> Tensor:
    r"""The seed function ``λ = log(α + wᵀ S⁻¹ w)``, ``w = y − μ``, per row of ``y``.

    Parameters
    ----------
    factors : sequence of Tensor of shape (p_k, p_k), or kronkit.Kron
    y : Tensor of shape (..., P), P = Π p_k
        Observation(s), each the row-major flattening of a ``(p1, ..., pd)`` tensor.
    mu : Tensor of shape (P,) or (..., P), optional
        Location (zero if ``None``), broadcast against ``y``; may require grad.
    alpha : float or 0-d Tensor, default 1.0
        Offset ``α``; may require grad. ``β = α + q`` must be positive.
    ASSUME

    Returns
    -------
    Tensor of shape ``broadcast(y, mu).shape[:-1]``

    Notes
    -----
    ``λ = log β``, ``β = α + q``, ``q = wᵀ S⁻¹ w`` through :func:`inv_quad`, so with
    ``Z = S⁻¹ w``, ``U = S⁻ᵀ w``: ``∂λ/∂y = (Z + U)/β``, ``∂λ/∂μ = −∂λ/∂y``,
    ``∂λ/∂α = 1/β``, ``∂λ/∂A_k = −U_(k) (Z ×_{j≠k} A_j)_(k)ᵀ / β`` (``−U B Zᵀ/β`` and
    ``−Uᵀ A Z/β`` for two factors). Cost O(Σ p_k³ + P·Σ p_k) per call. Raises
    :class:`~kronkit.DomainError` where ``β ≤ 0`` instead of returning NaN.
    Dense equivalent: ``torch.log(alpha + w @ torch.linalg.solve(torch.kron(A, B), w))``.
    """
    _check_assume(assume)
    fs, v = _inputs(factors, "log_quad", y=y, mu=mu, alpha=alpha)
    w = v["y"] if v["mu"] is None else v["y"] - v["mu"]
    beta = v["alpha"] + _InvQuad.apply(w, _factorize(fs, assume), *fs)
    if not bool((beta.detach() > 0).all()):
        raise DomainError(
            "β = α + (y−μ)ᵀS⁻¹(y−μ) must be positive for log β to be defined, got min β = "
            f"{float(beta.detach().min()):.6g}",
            value=beta.detach(),
        )
    return torch.log(beta)


for _f in (solve, inv_quad, logdet, log_quad):
    if _f.__doc__:  # None under python -OO
        _f.__doc__ = _f.__doc__.replace("ASSUME", _ASSUME_DOC)
del _f
