"""What ``kronkit.jax`` and ``kronkit.torch`` share: the edge contract of their public functions.

One home for the ``assume`` vocabulary, the validation of ``factors`` and of the vector
arguments (with their messages), the choice between Cholesky and LU, the singular /
ill-conditioned checks of a call's factorisations, the per-mode solves and the domain errors.
Nothing here imports JAX or PyTorch: the back ends hand in their own array conversion and
finiteness check, and their factor objects (which mirror :class:`~kronkit._factor.Factorization`:
``kind``, ``index``, ``n``, ``rcond``, ``exact_zero``, ``solve(b, trans)``, ``tri_solve``,
``slogdet``, ``check``, ``singular``, ``ill_conditioned``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from ._checks import check_choice
from ._errors import DomainError, NotPositiveDefiniteError
from ._factor import FactorChecks, warn_ill_conditioned
from ._kron import Kron
from ._vec import along_mode

__all__ = ["ASSUME", "ASSUME_DOC", "BackendFactor", "beta_error", "check_assume",
           "check_factorizations", "choose_kind", "missing_extra", "negative_det_error",
           "solve_modes", "validate", "validate_vectors"]

#: How each factor is factorised: ``"auto"`` (Cholesky where the factor is symmetric positive
#: definite, LU otherwise), ``"general"`` (always LU), ``"spd"`` (Cholesky, or an error).
ASSUME = ("auto", "general", "spd")

ASSUME_DOC = """assume : {"auto", "general", "spd"}, default "auto"
        Factorisation of each factor: ``"auto"`` uses Cholesky where a factor is symmetric
        and positive definite and LU otherwise; ``"general"`` always LU; ``"spd"`` Cholesky,
        raising :class:`~kronkit.NotPositiveDefiniteError` for any other factor. The value and
        derivatives are the same (to rounding) whichever is used."""


def missing_extra(extra: str, package: str) -> ImportError:
    """The ``ImportError`` of ``kronkit.<extra>`` when ``package`` is not installed."""
    return ImportError(f"kronkit.{extra} needs {package}, which is not installed; install it "
                       f"with `pip install kronkit[{extra}]`")


def check_assume(assume: Any) -> None:
    """``ValueError`` unless ``assume`` is one of :data:`ASSUME`."""
    check_choice(assume, "assume", ASSUME)


# ---------------------------------------------------------------------------------------
# Arguments
# ---------------------------------------------------------------------------------------
def _factor_sequence(factors: Any) -> Sequence[Any]:
    """The factors of a :class:`~kronkit.Kron` or of a non-empty list / tuple of matrices."""
    if isinstance(factors, Kron):
        return factors.factors
    if hasattr(factors, "ndim") and hasattr(factors, "shape"):
        raise TypeError(
            "`factors` must be a sequence of 2-D factor matrices [A1, ..., Ad] (or a "
            f"kronkit.Kron), got a single array of shape {tuple(factors.shape)}; pass [A]"
        )
    if not isinstance(factors, (list, tuple)):
        raise TypeError(
            f"`factors` must be a sequence of 2-D factor matrices, got {type(factors).__name__}"
        )
    if len(factors) == 0:
        raise ValueError("`factors` must hold at least one factor, got an empty sequence")
    return factors


def _check_factor(M: Any, name: str, square: str | None) -> None:
    shape = tuple(M.shape)
    if M.ndim != 2:
        raise ValueError(f"`{name}` must be 2-D, got shape {shape}")
    if math.prod(shape) == 0:
        raise ValueError(f"`{name}` is empty (shape {shape}); factors must be non-empty")
    if square is not None and shape[0] != shape[1]:
        raise ValueError(
            f"`{name}` must be square ({square} needs square factors), got shape {shape}"
        )


def validate(factors: Any, square: str | None, convert: Callable[[Any, str], Any],
             check_finite: Callable[[Any, str], None],
             **vectors: Any) -> tuple[list[Any], dict[str, Any]]:
    """Validate ``factors`` and the named vector arguments, in the back end's arrays.

    ``convert(x, name)`` turns an argument into a real array of the back end (or raises a
    ``TypeError`` naming it); ``check_finite(x, name)`` raises ``ValueError`` for NaN / Inf.
    ``square`` names the operation that needs square factors (``None``: any shape). Each
    vector (``None`` allowed, and kept) must have last axis ``N = Π n_k``; one named
    ``alpha`` must be a scalar. Returns ``(factor arrays, {name: array or None})``, uncast.
    """
    mats = []
    for k, A in enumerate(_factor_sequence(factors)):
        name = f"factors[{k}]"
        M = convert(A, name)
        _check_factor(M, name, square)
        check_finite(M, name)
        mats.append(M)
    rows = math.prod(int(M.shape[0]) for M in mats)
    cols = math.prod(int(M.shape[1]) for M in mats)
    return mats, validate_vectors(rows, cols, convert, check_finite, **vectors)


def validate_vectors(rows: int, cols: int, convert: Callable[[Any, str], Any],
                     check_finite: Callable[[Any, str], None], **vectors: Any) -> dict[str, Any]:
    """The named vector arguments of an operator of shape ``(rows, cols)``, converted and
    checked as in :func:`validate` (``None`` kept; ``alpha`` a scalar)."""
    arrays: dict[str, Any] = {}
    for name, v in vectors.items():
        if v is None:
            arrays[name] = None
            continue
        x = convert(v, name)
        if name == "alpha":
            if x.ndim != 0:
                raise ValueError(f"`alpha` must be a scalar, got shape {tuple(x.shape)}")
        elif x.ndim < 1 or x.shape[-1] != cols:
            raise ValueError(
                f"`{name}` must have length {cols} in its last axis (the Kronecker product is "
                f"{rows}×{cols}), got shape {tuple(x.shape)}"
            )
        check_finite(x, name)
        arrays[name] = x
    return arrays


# ---------------------------------------------------------------------------------------
# Factorisations
# ---------------------------------------------------------------------------------------
class BackendFactor(FactorChecks):
    """Base of the JAX and PyTorch factor objects: messages name ``factors[k]``."""

    __slots__ = ()
    LABEL = "`factors[{}]`"


def choose_kind(assume: str, symmetric: bool, cholesky_ok: Callable[[], bool],
                index: int) -> str:
    """``"cholesky"`` or ``"lu"`` for factor ``index`` under ``assume`` (concrete values).

    ``cholesky_ok()`` attempts the Cholesky factorisation (only asked for a symmetric factor
    when ``assume`` is not ``"general"``). Under ``"spd"`` a factor that is not symmetric
    positive definite raises :class:`~kronkit.NotPositiveDefiniteError`.
    """
    if symmetric and assume != "general" and cholesky_ok():
        return "cholesky"
    if assume == "spd":
        why = "Cholesky failed" if symmetric else "it is not symmetric"
        raise NotPositiveDefiniteError(
            f"`factors[{index}]` is not symmetric positive definite ({why}); "
            "use assume='auto' or 'general'",
            factor=index,
        )
    return "lu"


def check_factorizations(facs: Sequence[FactorChecks], skip_dirs: Sequence[str] = (), *,
                         zero_det_ok: bool = False) -> bool:
    """The conditioning contract of ``Kron`` for one call; returns whether ``det = 0`` exactly.

    A factor singular to working precision (``rcond <= eps``, exact zero pivots included)
    raises :class:`~kronkit.SingularFactorError`; one :class:`~kronkit.IllConditionedWarning`
    names every factor with ``rcond < sqrt(eps)``. ``zero_det_ok`` (log-determinants): an
    exact zero pivot is no error (``det = 0``, ``log det = −inf``), and then nothing else is
    checked, as in ``Kron.slogdet``.
    """
    if zero_det_ok and any(f.exact_zero for f in facs):
        return True
    for f in facs:
        f.check()
    warn_ill_conditioned(facs, None, skip_dirs)
    return False


def solve_modes(t: Any, facs: Sequence[Any], trans: bool = False, tri: bool = False) -> Any:
    """``(A1⊗…⊗Ad)⁻¹`` (``trans``: ``⁻ᵀ``) on a tensor ``(..., p1, ..., pd)``: one per-factor
    solve per mode, O(size(t)·Σ p_k). ``tri`` (every factor Cholesky, ``A_k = L_k L_kᵀ``):
    ``(L1⊗…⊗Ld)⁻¹`` (``trans``: ``⁻ᵀ``)."""
    d = len(facs)
    for k, f in enumerate(facs):
        t = along_mode(t, k, d, f.tri_solve if tri else f.solve, trans)
    return t


# ---------------------------------------------------------------------------------------
# Domain errors
# ---------------------------------------------------------------------------------------
def negative_det_error(value: Any) -> DomainError:
    """``log det`` of a Kronecker product with a negative determinant."""
    return DomainError(
        "det(A1 ⊗ ... ⊗ Ad) is negative, so its logarithm is undefined", value=value
    )


def beta_error(min_beta: float, value: Any) -> DomainError:
    """``log β`` where some ``β = α + (y−μ)ᵀS⁻¹(y−μ)`` is not positive."""
    return DomainError(
        "β = α + (y−μ)ᵀS⁻¹(y−μ) must be positive for log β to be defined, got "
        f"min β = {min_beta:.6g}",
        value=value,
    )
