"""Sums of Kronecker products in the encoding of kronkit.jax / kronkit.torch, for their tests.

A sum is a list of terms, each a list of d factors: a 2-D matrix, a 1-D diagonal, or a
Python float (times the identity). :func:`sum_forms` draws every supported form; the dense
oracle (:func:`dense_sum`) builds the P×P matrix with any array namespace's ``kron``.
"""

from __future__ import annotations

import functools

import numpy as np

from helpers import conditioned, factor

FORMS = ("a", "b", "c", "d", "mix")


def _sym_small(rng, n):
    """A symmetric indefinite matrix with spectral radius 1/4."""
    A = factor(rng, n, "indefinite")
    return A / (4.0 * np.max(np.abs(np.linalg.eigvalsh(A))))


def sum_forms(rng, dims, cond=None):
    """Every supported form for axis sizes ``dims`` (d = 2 or 3), as ``{name: terms}``.

    (a) K1⊗…⊗Kd + s²I; (b) K + D1⊗…⊗Dd; (c) A1⊗…⊗Ad + C1⊗…⊗Cd (A_k symmetric indefinite,
    C_k SPD); (d) the Kronecker sum A1⊕…⊕Ad + s²I (A_k symmetric indefinite); mix:
    Cg⊗K⊗… + Cn⊗I⊗…. ``cond``: the SPD factors K_k, C_k get that condition number.
    """
    d = len(dims)

    def spd(n):
        return conditioned(rng, n, cond, "spd") if cond else factor(rng, n, "spd")

    Ks = [spd(n) for n in dims]
    ones = [1.0] * (d - 1)
    out = {
        "a": [Ks, [0.3, *ones]],
        "b": [Ks, [rng.uniform(0.5, 2.0, n) for n in dims]],
        "c": [[_sym_small(rng, n) for n in dims], [spd(n) for n in dims]],
        "mix": [[spd(dims[0]), *Ks[1:]], [spd(dims[0]), *ones]],
    }
    ksum = []
    for k, n in enumerate(dims):
        term = [1.0] * d
        term[k] = _sym_small(rng, n)
        ksum.append(term)
    out["d"] = [*ksum, [0.5 + 0.5 * d, *ones]]
    return out


def dense_sum(terms, dims, kron, eye, diag):
    """``Σ_t ⊗_k F_tk`` densely; ``kron``, ``eye(n)`` and ``diag(v)`` of one namespace."""
    S = 0.0
    for term in terms:
        mats = []
        for F, n in zip(term, dims, strict=True):
            nd = getattr(F, "ndim", 0)
            mats.append(F if nd == 2 else diag(F) if nd == 1 else F * eye(n))
        S = S + functools.reduce(kron, mats)
    return S


def np_dense(terms, dims):
    return dense_sum(terms, dims, np.kron, np.eye, np.diag)


def flatten(terms):
    """The factors as one flat list (slot t·d + k), and a function rebuilding the terms."""
    d = len(terms[0])
    flat = [F for term in terms for F in term]

    def rebuild(xs):
        return [list(xs[t * d:(t + 1) * d]) for t in range(len(terms))]

    return flat, rebuild
