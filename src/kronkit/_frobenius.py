"""Frobenius algebra: the seed's ``X : Y = tr(XᵀY)`` with Kronecker structure."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._checks import as_float, check_choice, overflow_error
from ._kron import Kron
from ._typing import ArrayLike

__all__ = ["frob", "partial_contraction"]


def frob(X: Kron | ArrayLike, Y: Kron | ArrayLike) -> float:
    r"""Frobenius product ``X : Y = tr(XᵀY) = Σ_ij X_ij Y_ij``.

    Either argument may be a :class:`Kron`; nothing P×P is formed:

    - two Kron operators with matching factor shapes use
      ``(A1⊗…⊗Ad) : (C1⊗…⊗Cd) = Π_k (A_k : C_k)``, cost O(Σ m_k n_k);
    - a Kron and a dense matrix contract the dense matrix with one factor at a time,
      cost O(M·N·...) linear in the size of the dense matrix;
    - two arrays give ``np.sum(X * Y)``.

    Parameters
    ----------
    X, Y : Kron or array_like of the same shape (m, n)

    Returns
    -------
    float

    Examples
    --------
    >>> import numpy as np, kronkit
    >>> A, B, C, D = (np.arange(4.0).reshape(2, 2) + k for k in range(4))
    >>> np.isclose(kronkit.frob(kronkit.Kron(A, B), kronkit.Kron(C, D)),
    ...            np.sum(np.kron(A, B) * np.kron(C, D)))
    True
    """
    if isinstance(X, Kron) and isinstance(Y, Kron):
        if X.n_factors == Y.n_factors and all(
            a.shape == c.shape for a, c in zip(X.factors, Y.factors, strict=True)
        ):
            with np.errstate(over="ignore", invalid="ignore"):
                out = float(np.prod([np.sum(a * c) for a, c in
                                     zip(X.factors, Y.factors, strict=True)]))
            return _finite(out, X=X.factors, Y=Y.factors)
        raise ValueError(
            "`X` and `Y` must be Kron operators with factors of matching shapes, got "
            f"{X!r} and {Y!r}; pass `Y.to_dense()` explicitly to contract them densely"
        )
    if isinstance(X, Kron):
        Ya = as_float(Y, "Y", ndim=2)
        return _finite(_frob_kron_dense(X, Ya), X=X.factors, Y=Ya)
    if isinstance(Y, Kron):
        Xa = as_float(X, "X", ndim=2)
        return _finite(_frob_kron_dense(Y, Xa), X=Xa, Y=Y.factors)
    Xa = as_float(X, "X", ndim=2)
    Ya = as_float(Y, "Y", ndim=2)
    if Xa.shape != Ya.shape:
        raise ValueError(f"`X` and `Y` must have the same shape, got {Xa.shape} and {Ya.shape}")
    with np.errstate(over="ignore", invalid="ignore"):
        out = float(np.sum(Xa * Ya))
    return _finite(out, X=Xa, Y=Ya)


def _finite(out: Any, what: str = "the Frobenius contraction", **inputs: Any) -> Any:
    """The inputs were checked finite: a non-finite result is an overflow of the computation."""
    if not np.all(np.isfinite(out)):
        raise overflow_error(what, **inputs)
    return out


def _frob_kron_dense(K: Kron, M: np.ndarray) -> float:
    if M.shape != K.shape:
        raise ValueError(f"the dense matrix must have shape {K.shape} to match the Kron, got {M.shape}")
    t = M.reshape(*K.row_dims, *K.col_dims)
    # Contract factor k against axes (row k, col k); after each step those two axes are gone.
    with np.errstate(over="ignore", invalid="ignore"):
        for a in K.factors:
            nd = t.ndim // 2
            t = np.tensordot(a, t, axes=([0, 1], [0, nd]))
    return float(t)


def partial_contraction(X: ArrayLike, B: ArrayLike, *, side: str = "right") -> np.ndarray:
    r"""Contract the blocks of ``X`` with one Kronecker factor: the seed's ``Σ_k (B:G_k) F_k``.

    Write ``X`` (shape ``(m1·m2, n1·n2)``) in blocks ``X_ij`` of shape ``(m2, n2)``.

    - ``side="right"``: ``B`` has shape ``(m2, n2)`` and the result ``C`` (shape ``(m1, n1)``)
      is ``C_ij = B : X_ij``. If ``X = Σ_k F_k ⊗ G_k`` (any such expansion, e.g. its
      Kronecker-product SVD) then ``C = Σ_k (B : G_k) F_k``, so no SVD is needed.
    - ``side="left"``: ``B`` stands for the left factor, shape ``(m1, n1)``, and the result
      (shape ``(m2, n2)``) is ``Σ_ij B_ij X_ij = Σ_k (B : F_k) G_k``.

    Identity: ``C : A = X : (A ⊗ B)`` for every ``A`` (``side="right"``).
    Cost O(m1·m2·n1·n2) (one pass over X), vectorised over blocks.

    Parameters
    ----------
    X : array_like of shape (m1*m2, n1*n2)
    B : array_like, the factor that is contracted
    side : {"right", "left"}

    Returns
    -------
    ndarray of shape (m1, n1) (``side="right"``) or (m2, n2) (``side="left"``)
    """
    Xa = as_float(X, "X", ndim=2)
    Ba = as_float(B, "B", ndim=2)
    check_choice(side, "side", ("right", "left"))
    M, N = Xa.shape
    b0, b1 = Ba.shape
    if Ba.size == 0:
        raise ValueError(
            f"`B` must be a non-empty factor (the block shape of `X`), got shape {Ba.shape}"
        )
    if M % b0 or N % b1:
        raise ValueError(
            f"`X` of shape {Xa.shape} cannot be split into blocks matching `B` of shape {Ba.shape}"
        )
    with np.errstate(over="ignore", invalid="ignore"):
        if side == "right":
            m1, n1, m2, n2 = M // b0, N // b1, b0, b1
            out = np.einsum("iajb,ab->ij", Xa.reshape(m1, m2, n1, n2), Ba)
        else:
            m1, n1 = b0, b1
            m2, n2 = M // b0, N // b1
            out = np.einsum("iajb,ij->ab", Xa.reshape(m1, m2, n1, n2), Ba)
    return _finite(out, "partial_contraction", X=Xa, B=Ba)
