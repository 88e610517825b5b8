r"""Sums of Kronecker products in ``kronkit.jax`` / ``kronkit.torch``: the input encoding and
the structure rule (backend-independent; decided from shapes and object identity, never from
values, so that it is the same eagerly and under ``jax.jit``).

A sum ``S = Σ_t F_t1⊗…⊗F_td`` is given as

* a :class:`kronkit.SumOfKron` (constant NumPy factors: a multiple of the identity is encoded
  as that scalar, a diagonal matrix as its diagonal, equal factors as one matrix), or
* a list / tuple of terms, each a :class:`kronkit.Kron` or a list / tuple of ``d`` factors.
  A factor is a 2-D ``(n, n)`` array, a 1-D ``(n,)`` array meaning ``diag(v)``, or a 0-d
  array / Python number meaning that number times the identity (its size is taken from the
  other terms). A flat list of 2-D arrays (or of nested lists that form 2-D arrays) keeps
  meaning one Kronecker product.

Structure rule, per axis ``k`` (2-D factors are compared by object identity: pass the same
array object for the same matrix):

* no 2-D factor: everything in the axis is diagonal (``V_k = I``);
* one 2-D matrix ``A`` (in any number of terms), the other factors 0-d: ``eigh(A)``;
* one 2-D matrix ``A`` and one 1-D ``D`` (each in any number of terms), no 0-d: the metric is
  ``D`` (positive), ``eigh(D^{-1/2} A D^{-1/2})``;
* two 2-D matrices and nothing else: the one of the last term is the metric ``C`` (symmetric
  positive definite), the other ``A``: ``eigh(L⁻¹ A L⁻ᵀ)``, ``C = L Lᵀ``;
* anything else raises ``ValueError`` with :data:`FORMS`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._errors import UnsupportedSumError
from ._kron import Kron
from ._sum_eig import analyse_factor
from ._sum_kron import SumOfKron

__all__ = ["FORMS", "AxisSpec", "SumSpec", "is_sum", "parse_sum", "slot_name"]

FORMS = """kronkit.jax / kronkit.torch support these sums S = Σ_t F_t1⊗…⊗F_td (a term is a
list of d factors: a 2-D (n, n) array, a 1-D (n,) array meaning diag(v), or a scalar
meaning that scalar times the identity; the same array object for the same matrix):
  (a) [[K1, ..., Kd], [s2, 1.0, ..., 1.0]]          K1⊗…⊗Kd + s²I
  (b) [[K1, ..., Kd], [D1, ..., Dd]], D_k 1-D > 0   K1⊗…⊗Kd + D1⊗…⊗Dd
  (c) [[A1, ..., Ad], [C1, ..., Cd]], C_k SPD       A1⊗…⊗Ad + C1⊗…⊗Cd (A_k symmetric)
  (d) [[A, 1.0], [1.0, B]] (+ [[s2, 1.0]])          A⊕B (+ s²I); A⊕B⊕C likewise
  and mixes such as [[Cg, K], [Cn, 1.0]]            Cg⊗K + Cn⊗I
Per axis: at most two distinct 2-D matrices (the last term's is then the SPD metric and
nothing else may appear), or one 2-D matrix with scalars, or one 2-D matrix with one
positive diagonal, or only diagonals and scalars."""

SCALAR, DIAG, FULL = 0, 1, 2


@dataclass(frozen=True)
class AxisSpec:
    """How axis ``k`` is diagonalised: ``kind`` is ``"diag"`` (no 2-D factor), ``"eigh"``
    (one matrix ``A`` and scalars), ``"dmetric"`` (``A`` with the diagonal metric ``D``) or
    ``"gen"`` (``A`` with the SPD metric ``C``); ``a``, ``c``: a slot holding ``A`` / the
    metric (``-1`` where absent); ``roles[t]``: ``"A"``, ``"C"`` or ``"x"`` (a scalar or
    diagonal factor whose values give ``h`` directly)."""

    kind: str
    a: int
    c: int
    roles: tuple[str, ...]


@dataclass(frozen=True)
class SumSpec:
    """Static structure of a sum: ``dims`` (n_k), ``kinds[t][k]`` (0 scalar, 1 diagonal,
    2 matrix), ``axes`` (:class:`AxisSpec` per axis). Factor ``(t, k)`` is slot ``t·d + k``
    of the flat tuple of factor arrays."""

    dims: tuple[int, ...]
    kinds: tuple[tuple[int, ...], ...]
    axes: tuple[AxisSpec, ...]

    @property
    def d(self) -> int:
        return len(self.dims)

    @property
    def n_terms(self) -> int:
        return len(self.kinds)

    @property
    def size(self) -> int:
        return math.prod(self.dims)

    def slot(self, t: int, k: int) -> int:
        return t * self.d + k


def slot_name(t: int, k: int) -> str:
    """The name of factor ``k`` of term ``t`` in messages."""
    return f"factors[{t}][{k}]"


def _is_matrix_literal(x: Any) -> bool:
    """A list / tuple of lists / tuples of numbers: one 2-D factor written as a literal."""
    return isinstance(x, (list, tuple)) and len(x) > 0 and all(
        isinstance(r, (list, tuple)) and all(isinstance(v, (int, float, np.number)) for v in r)
        for r in x)


def _is_term(x: Any) -> bool:
    return isinstance(x, Kron) or (isinstance(x, (list, tuple)) and not _is_matrix_literal(x))


def is_sum(factors: Any) -> bool:
    """Whether the first argument of ``solve`` / ``inv_quad`` / ``logdet`` / ``log_quad`` is a
    sum of Kronecker products (a ``SumOfKron``, or a list / tuple of terms)."""
    if isinstance(factors, SumOfKron):
        return True
    return isinstance(factors, (list, tuple)) and any(_is_term(x) for x in factors)


def _sum_of_kron_terms(S: Any) -> list[list[Any]]:
    """The terms of a ``SumOfKron`` in the encoding (constants, so values may be inspected):
    each factor is ``coef · base`` (:func:`kronkit._sum_eig.analyse_factor`); a scaled
    identity becomes a 0-d array, a diagonal base 1-D, equal bases of one axis one object;
    the term's coefficients go into its first scalar or diagonal factor (else its first)."""
    terms: list[list[Any]] = []
    seen: dict[int, list[np.ndarray]] = {}
    for K in S.terms:
        row: list[Any] = []
        coef = 1.0
        for k, F in enumerate(K.factors):
            fk = analyse_factor(np.asarray(F, dtype=float))
            if fk.kind == "identity":
                row.append(np.asarray(1.0))
                coef *= fk.coef
                continue
            base = fk.base if fk.symmetric else np.asarray(F, dtype=float)
            coef *= fk.coef if fk.symmetric or fk.kind != "full" else 1.0
            same = [G for G in seen.setdefault(k, []) if G.shape == base.shape
                    and np.max(np.abs(G - base)) <= 64 * np.finfo(float).eps]
            row.append(same[0] if same else base)
            if not same:
                seen[k].append(base)
        j = next((k for k, x in enumerate(row) if x.ndim < 2), 0)
        row[j] = row[j] * coef
        terms.append(row)
    return terms


def parse_sum(factors: Any, convert: Callable[[Any, str], Any],
              check_finite: Callable[[Any, str], None]) -> tuple[SumSpec, list[Any]]:
    """The :class:`SumSpec` of a sum and its factors as back-end arrays, one per slot.

    ``convert(x, name)`` makes a real back-end array (``TypeError`` naming it otherwise);
    ``check_finite(x, name)`` raises for NaN / Inf. Raises ``ValueError`` for shapes that do
    not fit (naming the term and factor) and for unsupported structure (with :data:`FORMS`).
    """
    if isinstance(factors, SumOfKron):
        raw = _sum_of_kron_terms(factors)
    else:
        raw = []
        for t, term in enumerate(factors):
            if not _is_term(term):
                raise TypeError(f"`factors[{t}]` must be a term (a list of d factors or a "
                                "kronkit.Kron) like the other items of the sum")
            raw.append(list(term.factors if isinstance(term, Kron) else term))
    if not raw:
        raise ValueError("`factors` must hold at least one term")
    d = len(raw[0])
    for t, term in enumerate(raw):
        if len(term) != d or d == 0:
            raise ValueError(f"every term must have the same number d ≥ 1 of factors: "
                             f"`factors[0]` has {d}, `factors[{t}]` has {len(term)}")
    conv = [[convert(x, slot_name(t, k)) for k, x in enumerate(term)]
            for t, term in enumerate(raw)]
    dims = []
    for k in range(d):
        sizes = set()
        for t in range(len(raw)):
            x, name = conv[t][k], slot_name(t, k)
            if x.ndim > 2 or (x.ndim == 2 and x.shape[0] != x.shape[1]):
                raise ValueError(f"`{name}` must be a square 2-D, a 1-D (diagonal) or a 0-d "
                                 f"(scalar) array, got shape {tuple(x.shape)}")
            if x.ndim:
                sizes.add(int(x.shape[0]))
            check_finite(x, name)
        if len(sizes) != 1:
            what = "only scalars" if not sizes else f"sizes {sorted(sizes)}"
            raise ValueError(f"axis {k} of the sum has {what}; every term's factor {k} must "
                             "have one size n_k (scalars take it from the others)")
        n = sizes.pop()
        if n == 0:
            raise ValueError(f"axis {k} of the sum is empty; factors must be non-empty")
        dims.append(n)
    kinds = [tuple(x.ndim for x in row) for row in conv]
    arrays = [x for row in conv for x in row]
    axes = tuple(_axis_spec(raw, k, d, kinds) for k in range(d))
    return SumSpec(tuple(dims), tuple(kinds), axes), arrays


def _axis_spec(raw: Sequence[Sequence[Any]], k: int, d: int,
               kinds: Sequence[Sequence[int]]) -> AxisSpec:
    """The structure rule for axis ``k`` (see the module docstring)."""
    full: list[int] = []  # ids of the distinct 2-D factors, in order of first use
    diag: list[int] = []
    last_full = 0
    for t, term in enumerate(raw):
        ident = id(term[k])
        if kinds[t][k] == FULL:
            last_full = ident
            if ident not in full:
                full.append(ident)
        elif kinds[t][k] == DIAG and ident not in diag:
            diag.append(ident)
    has_scalar = any(kinds[t][k] == SCALAR for t in range(len(raw)))

    def first_slot(ident: int) -> int:
        return next(t * d + k for t, term in enumerate(raw) if id(term[k]) == ident)

    if not full:
        return AxisSpec("diag", -1, -1, ("x",) * len(raw))
    if len(full) == 1 and not diag:
        roles = tuple("A" if kinds[t][k] == FULL else "x" for t in range(len(raw)))
        return AxisSpec("eigh", first_slot(full[0]), -1, roles)
    if len(full) == 1 and len(diag) == 1 and not has_scalar:
        roles = tuple("A" if kinds[t][k] == FULL else "C" for t in range(len(raw)))
        return AxisSpec("dmetric", first_slot(full[0]), first_slot(diag[0]), roles)
    if len(full) == 2 and not diag and not has_scalar:
        metric = last_full
        a = full[0] if full[1] == metric else full[1]
        roles = tuple("C" if id(term[k]) == metric else "A" for term in raw)
        return AxisSpec("gen", first_slot(a), first_slot(metric), roles)
    found = f"{len(full)} distinct 2-D, {len(diag)} distinct 1-D" + (
        " and scalar factors" if has_scalar else " factors")
    raise UnsupportedSumError(f"unsupported sum of Kronecker products: axis {k} has {found}.\n"
                              f"{FORMS}")
