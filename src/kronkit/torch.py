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

**Sums.** ``solve``, ``inv_quad``, ``logdet`` and ``log_quad`` also take a sum of
Kronecker products (a :class:`kronkit.SumOfKron`, or a list of terms of 2-D, 1-D diagonal
and scalar factors), with the encoding and structure rule of :mod:`kronkit.jax` (its module
docstring, and ``docs/autodiff.md``, "Sums of Kronecker products"). Their backward passes
are closed forms on one eigendecomposition per axis, differentiable again (``gradgradcheck``)
without differentiating ``eigh``. Python-number factors do not choose the dtype.

Importing :mod:`kronkit` does not import torch; ``import kronkit.torch`` does.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

from . import _backend

try:
    import torch
except ImportError as exc:  # pragma: no cover - exercised in a subprocess test
    raise _backend.missing_extra("torch", "PyTorch") from exc

from . import _torch_sum
from ._factor import is_symmetric, kron_logdet, kron_sign, rcond_from_factor
from ._kron import Kron
from ._sum_spec import is_sum
from ._torch_chol import half_solve, spd_backward, sum_squares
from ._torch_common import StructuredSolve, host_view, log_beta, prepare
from ._torch_common import as_tensor as _as_tensor
from ._torch_common import check_finite as _check_finite
from ._vec import apply_modes, mode_apply, to_tensor, to_vec, unfold

__all__ = ["inv_quad", "log_quad", "logdet", "matvec", "solve"]

Tensor = torch.Tensor
_TORCH_DIR = os.path.dirname(os.path.abspath(torch.__file__)) + os.sep


# =============================================================================================
# Products and the factor-gradient contraction (mode products from kronkit._vec)
# =============================================================================================
def _apply(y: Tensor, mats: Sequence[Tensor]) -> Tensor:
    """``(M1 ⊗ ... ⊗ Md) y`` for rows ``y`` of shape ``(..., Π n_k)``; O(P·Σ m_k).
    Ordinary torch ops, so it is differentiable to any order."""
    return to_vec(apply_modes(to_tensor(y, [M.shape[1] for M in mats]), mats), len(mats))


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
    ut = to_tensor(u, [A.shape[0] for A in factors])
    vt = to_tensor(v, [A.shape[1] for A in factors])
    suffix: list[Tensor] = [ut] * d  # suffix[k] = u ×_{j>k} A_jᵀ
    for k in range(d - 1, 0, -1):
        suffix[k - 1] = mode_apply(suffix[k], factors[k].mT, k, d)
    grads: list[Tensor | None] = []
    t = vt  # v ×_{j<k} A_j
    for k in range(d):
        grads.append(unfold(suffix[k], k, d) @ unfold(t, k, d).T if needs[k] else None)
        if k < d - 1 and any(needs[k + 1 :]):
            t = mode_apply(t, factors[k], k, d)
    return grads


# =============================================================================================
# Per-factor factorisations (the API of kronkit's NumPy Factorization, in torch tensors)
# =============================================================================================
class _Factor(_backend.BackendFactor):
    """Cholesky (symmetric positive definite) or LU factorisation of one square factor.

    The PyTorch mirror of :class:`kronkit._factor.Factorization`: ``kind`` (``"cholesky"`` or
    ``"lu"``), ``factor`` (the lower Cholesky factor ``L``, or the packed LU factors),
    ``piv`` (LU pivots, 1-based as LAPACK's; ``None`` for Cholesky), ``n``, ``index``,
    ``symmetric``, ``rcond``, ``exact_zero``; :meth:`solve`, :meth:`tri_solve`,
    :meth:`slogdet`, ``check``, ``singular``, ``ill_conditioned``.

    Computed once per call from the factor's values (detached; the autograd graph goes through
    the factor tensors themselves). ``assume="auto"``: Cholesky if the factor is symmetric (to
    ``16·eps·max|A|``) and the Cholesky succeeds, LU with partial pivoting otherwise;
    ``"general"``: always LU; ``"spd"``: Cholesky, and :class:`~kronkit.NotPositiveDefiniteError`
    if the factor is not symmetric positive definite. No eigenvalue clamping or jitter.
    ``rcond`` is LAPACK's estimate of ``1/(‖A‖₁‖A⁻¹‖₁)``, as in :class:`kronkit.Kron`
    (``pocon`` / ``gecon`` on the factors, O(p²) on the host); ``exact_zero`` flags an exact
    zero pivot in the LU factors (``rcond = 0``).
    """

    __slots__ = ("exact_zero", "factor", "index", "kind", "n", "piv", "rcond", "symmetric")
    factor: Tensor
    piv: Tensor | None

    def __init__(self, A: Tensor, index: int, assume: str):
        A = A.detach()
        self.index = index
        self.n = A.shape[0]
        self.symmetric = bool(is_symmetric(host_view(A), torch.finfo(A.dtype).eps))
        chol: list[Tensor] = []

        def cholesky_ok() -> bool:
            L, info = torch.linalg.cholesky_ex(A)
            chol.append(L)
            return int(info) == 0

        self.kind = _backend.choose_kind(assume, self.symmetric, cholesky_ok, index)
        self.exact_zero = False
        if self.kind == "cholesky":
            self.factor, self.piv = chol[0], None
        else:
            self.factor, self.piv, info = torch.linalg.lu_factor_ex(A)
            self.exact_zero = int(info) > 0 or bool((torch.diagonal(self.factor) == 0).any())
        self.rcond = 0.0 if self.exact_zero else rcond_from_factor(
            A.cpu().numpy(), self.factor.cpu().numpy(), self.kind == "cholesky")

    @property
    def eps(self) -> float:
        return torch.finfo(self.factor.dtype).eps

    def solve(self, X: Tensor, trans: bool = False) -> Tensor:
        """``A⁻¹ X`` (``trans``: ``A⁻ᵀ X``) for ``X`` of shape (n, k)."""
        if self.kind == "cholesky":
            return torch.cholesky_solve(X, self.factor)
        return torch.linalg.lu_solve(self.factor, self.piv, X, adjoint=trans)

    def tri_solve(self, X: Tensor, trans: bool = False) -> Tensor:
        """``L⁻¹ X`` (``trans``: ``L⁻ᵀ X``) with the Cholesky factor ``L`` (Cholesky only)."""
        L = self.factor.mT if trans else self.factor
        return torch.linalg.solve_triangular(L, X, upper=trans)

    def slogdet(self) -> tuple[int, Tensor]:
        """``(sign, log|det A|)`` from the factorisation (sign as a Python int)."""
        diag = torch.diagonal(self.factor)
        if self.piv is None:  # Cholesky
            return 1, 2.0 * torch.log(diag).sum()
        swaps = int(torch.ne(self.piv, torch.arange(1, self.n + 1, device=self.piv.device)).sum())
        negatives = int((diag < 0).sum())
        return (-1) ** ((swaps + negatives) % 2), torch.log(diag.abs()).sum()


def _factorize(factors: Sequence[Tensor], assume: str, *,
               zero_det_ok: bool = False) -> list[_Factor]:
    """Factor every factor, with the conditioning contract of :class:`kronkit.Kron`
    (:func:`kronkit._backend.check_factorizations`; ``zero_det_ok`` for log-determinants)."""
    with torch.no_grad():
        facs = [_Factor(A, k, assume) for k, A in enumerate(factors)]
    _backend.check_factorizations(facs, (_TORCH_DIR,), zero_det_ok=zero_det_ok)
    return facs


def _solve(y: Tensor, facs: Sequence[_Factor], trans: bool, tri: bool = False) -> Tensor:
    """``S⁻¹ y`` (``trans``: ``S⁻ᵀ y``) for rows ``y`` of shape ``(..., P)``; O(P·Σ p_k).

    ``tri`` (all factors Cholesky, ``S = 𝐋𝐋ᵀ`` with ``𝐋 = L1 ⊗ ... ⊗ Ld``): ``𝐋⁻¹ y``
    (``trans``: ``𝐋⁻ᵀ y``).
    """
    t = _backend.solve_modes(to_tensor(y, [f.n for f in facs]), facs, trans, tri)
    return to_vec(t, len(facs))


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


class _KronSolver:
    """``S = A1⊗…⊗Ad`` for :class:`kronkit._torch_common.StructuredSolve`: solves with the
    factorisations ``facs``, factor gradients by :func:`_factor_grads`."""

    __slots__ = ("facs",)

    def __init__(self, facs: Sequence[_Factor]):
        self.facs = facs

    def solve(self, y: Tensor, trans: bool) -> Tensor:
        return _solve(y, self.facs, trans)

    @staticmethod
    def factor_grads(u: Tensor, v: Tensor, factors: Sequence[Tensor],
                     needs: Sequence[bool]) -> list[Tensor | None]:
        return _factor_grads(u, v, factors, needs)


def _kron_solve(y: Tensor, facs: Sequence[_Factor], trans: bool, *factors: Tensor) -> Tensor:
    """``x = S⁻¹ y`` (``trans``: ``S⁻ᵀ y``) with the factorisations ``facs``: a
    :class:`~kronkit._torch_common.StructuredSolve` (differentiable to any order)."""
    return StructuredSolve.apply(y, _KronSolver(facs), trans, *factors)


class _InvQuad(torch.autograd.Function):
    """``q = wᵀ S⁻¹ w`` per row of ``w``.

    Backward with ``Z = S⁻¹ w`` and ``U = S⁻ᵀ w`` (``U = Z`` for symmetric factors):
    ``ḡw = ḡq (Z + U)`` and ``ḡA_k = −∂⟨ḡq U, S Z⟩/∂A_k = −ḡq U_(k) (Z ×_{j≠k} A_j)_(k)ᵀ``.

    Fast path when every factor has a Cholesky factor ``A_k = L_k L_kᵀ``: the forward keeps
    the half solve ``H = (L1⁻¹ ⊗ ... ⊗ Ld⁻¹) w`` (``q = ‖H‖²``) and, since
    ``Z ×_{j≠k} A_j = H ×_{j≠k} L_j ×_k L_k⁻ᵀ`` while ``Z = H ×_j L_j⁻ᵀ``, the modes ``j ≠ k``
    cancel in the contraction: ``ḡA_k = −ḡq X_k X_kᵀ`` with ``X_k = L_k⁻ᵀ H_(k)`` — one
    triangular solve and one product per factor — and ``ḡw = 2 ḡq (L1⁻ᵀ ⊗ ... ⊗ Ld⁻ᵀ) H``
    (:mod:`kronkit._torch_chol`: the backward reuses the forward's ``H`` and ``L_k``, no
    refactorisation and no second solve of ``w``).

    For second derivatives (``create_graph=True``) ``Z`` and ``U`` are rebuilt as ``_kron_solve``
    outputs so that the backward graph reaches ``w`` and the factors.
    """

    @staticmethod
    def forward(ctx, w, facs, *factors):
        ctx.facs = facs
        ctx.spd = all(f.kind == "cholesky" for f in facs)
        if ctx.spd:
            h = half_solve(w, [f.factor for f in facs])
            ctx.save_for_backward(w, h, *factors)
            return sum_squares(h, len(facs))
        z = _solve(w, facs, False)
        ctx.save_for_backward(w, z, *factors)
        return (w * z).sum(-1)

    @staticmethod
    def backward(ctx, gq):
        w, saved, *factors = ctx.saved_tensors  # saved: H (ctx.spd) or Z
        facs, needs = ctx.facs, ctx.needs_input_grad[2:]
        if ctx.spd and not torch.is_grad_enabled():
            gw, grads = spd_backward(gq, saved, [f.factor for f in facs], needs,
                                     ctx.needs_input_grad[0])
            return (gw, None, *grads)
        gq = gq.unsqueeze(-1)
        if torch.is_grad_enabled():  # differentiable backward
            z = _kron_solve(w, facs, False, *factors)
            u = _kron_solve(w, facs, True, *factors)
        else:
            z = saved
            u = z if all(f.symmetric for f in facs) else _solve(w, facs, True)
        gw = gq * (z + u) if ctx.needs_input_grad[0] else None
        grads = _factor_grads(gq * u, z, factors, needs)
        return (gw, None, *[None if G is None else -G for G in grads])


class _LogDet(torch.autograd.Function):
    """``log det S = Σ_k (P/p_k) log det A_k``. Backward: ``ḡA_k = ḡ (P/p_k) A_k⁻ᵀ``."""

    @staticmethod
    def forward(ctx, facs, *factors):
        ctx.facs = facs
        ctx.save_for_backward(*factors)
        if any(f.exact_zero for f in facs):  # det S = 0 exactly
            return factors[0].new_full((), -float("inf"))
        parts = [f.slogdet() for f in facs]
        dims = [f.n for f in facs]
        sign = kron_sign([s for s, _ in parts], dims)
        if sign < 0:
            raise _backend.negative_det_error(float(sign))
        return kron_logdet([la for _, la in parts], dims)

    @staticmethod
    def backward(ctx, g):
        factors = ctx.saved_tensors
        P = math.prod(f.n for f in ctx.facs)
        grads = []
        for k, (f, A) in enumerate(zip(ctx.facs, factors, strict=True)):
            if not ctx.needs_input_grad[k + 1]:
                grads.append(None)
                continue
            f.check()  # at det A_k = 0 the derivative A_k⁻ᵀ does not exist
            eye = torch.eye(f.n, dtype=A.dtype, device=A.device)
            inv_t = _kron_solve(eye, [f], False, A)  # rows A⁻¹e_i: the matrix A⁻ᵀ
            grads.append(g * (P // f.n) * inv_t)
        return (None, *grads)


# =============================================================================================
# Input validation
# =============================================================================================
def _inputs(factors: Any, square: str | None, **vectors: Any) -> tuple[list[Tensor], dict]:
    """Validate ``factors`` and the named vectors (:func:`kronkit._backend.validate`); cast
    all to one dtype and device (:func:`kronkit._torch_common.prepare`)."""
    return prepare(lambda **v: _backend.validate(factors, square, _as_tensor, _check_finite, **v),
                   **vectors)


# =============================================================================================
# Public functions
# =============================================================================================
def matvec(factors: Sequence[Any] | Kron, y: Any) -> Tensor:
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


def solve(factors: Sequence[Any] | Kron, y: Any, *, assume: str = "auto") -> Tensor:
    r"""``Z = S⁻¹ y`` with ``S = A1 ⊗ ... ⊗ Ad`` (square factors), differentiable to any order.

    Parameters
    ----------
    factors : sequence of Tensor of shape (p_k, p_k), kronkit.Kron, or a sum (see "Sums")
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
    _backend.check_assume(assume)
    if is_sum(factors):
        return _torch_sum.solve(factors, y)
    fs, v = _inputs(factors, "solve", y=y)
    return _kron_solve(v["y"], _factorize(fs, assume), False, *fs)


def inv_quad(factors: Sequence[Any] | Kron, y: Any, *, assume: str = "auto") -> Tensor:
    r"""``q = yᵀ S⁻¹ y`` per row of ``y``, ``S = A1 ⊗ ... ⊗ Ad``, with a closed-form gradient.

    Parameters
    ----------
    factors : sequence of Tensor of shape (p_k, p_k), kronkit.Kron, or a sum (see "Sums")
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
    _backend.check_assume(assume)
    if is_sum(factors):
        return _torch_sum.inv_quad(factors, y)
    fs, v = _inputs(factors, "inv_quad", y=y)
    return _InvQuad.apply(v["y"], _factorize(fs, assume), *fs)


def logdet(factors: Sequence[Any] | Kron, *, assume: str = "auto") -> Tensor:
    r"""``log det S = Σ_k (P/p_k) log det A_k`` with ``∂/∂A_k = (P/p_k) A_k⁻ᵀ``.

    Parameters
    ----------
    factors : sequence of Tensor of shape (p_k, p_k), kronkit.Kron, or a sum (see "Sums")
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
    _backend.check_assume(assume)
    if is_sum(factors):
        return _torch_sum.logdet(factors)
    fs, _ = _inputs(factors, "logdet")
    return _LogDet.apply(_factorize(fs, assume, zero_det_ok=True), *fs)


def log_quad(factors: Sequence[Any] | Kron, y: Any, mu: Any = None, alpha: Any = 1.0, *,
             assume: str = "auto") -> Tensor:
    r"""The seed function ``λ = log(α + wᵀ S⁻¹ w)``, ``w = y − μ``, per row of ``y``.

    Parameters
    ----------
    factors : sequence of Tensor of shape (p_k, p_k), kronkit.Kron, or a sum (see "Sums")
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
    _backend.check_assume(assume)
    if is_sum(factors):
        return _torch_sum.log_quad(factors, y, mu, alpha)
    fs, v = _inputs(factors, "log_quad", y=y, mu=mu, alpha=alpha)
    w = v["y"] if v["mu"] is None else v["y"] - v["mu"]
    return log_beta(v["alpha"], _InvQuad.apply(w, _factorize(fs, assume), *fs))


for _f in (solve, inv_quad, logdet, log_quad):
    if _f.__doc__:  # None under python -OO
        _f.__doc__ = _f.__doc__.replace("ASSUME", _backend.ASSUME_DOC)
del _f
