"""The result types of the Kronecker-product SVD and the nearest Kronecker product.

Frozen dataclasses with read-only arrays (also after pickling or ``copy.deepcopy``).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._kron import Kron
from .._sum_kron import SumOfKron
from .rearrange import unrearrange

__all__ = ["KPSVDResult", "NearestKronResult", "readonly"]


def readonly(a: np.ndarray) -> np.ndarray:
    """A C-contiguous read-only view (or copy) of ``a``."""
    a = np.ascontiguousarray(a)
    a.setflags(write=False)
    return a


def _frozen_state(obj: Any, state: Any) -> None:
    """``__setstate__`` of the result dataclasses: restore the fields with every array
    read-only again (pickle, any protocol, and ``copy.deepcopy`` build writeable arrays)."""
    if isinstance(state, tuple) and len(state) == 2:  # (dict, slots) form
        state = {**(state[0] or {}), **(state[1] or {})}
    for key, val in state.items():
        if isinstance(val, np.ndarray):
            val = readonly(val)
        elif isinstance(val, tuple) and any(isinstance(v, np.ndarray) for v in val):
            val = tuple(readonly(v) if isinstance(v, np.ndarray) else v for v in val)
        object.__setattr__(obj, key, val)


def _rel_error(residual: float | None, norm: float | None) -> float | None:
    """``residual / norm`` (0 for the zero matrix; ``None`` when either is unknown)."""
    if residual is None or norm is None:
        return None
    return 0.0 if norm == 0.0 else residual / norm


@dataclass(frozen=True, eq=False)
class KPSVDResult:
    r"""``M ≈ Σ_k s[k] · kron(A[k], B[k])``: a (truncated) Kronecker-product SVD.

    Attributes
    ----------
    s : ndarray of shape (r,)
        Kronecker singular values, descending, ``>= 0``.
    A : ndarray of shape (r, m1, n1)
        Left factors; the ``vec(A[k])`` are orthonormal (``‖A[k]‖_F = 1``).
    B : ndarray of shape (r, m2, n2)
        Right factors, ``B[k] = unvec(conj(v_k))``; the ``vec(B[k])`` are orthonormal.
    residual : float or None
        ``‖M - Σ_k s_k A_k ⊗ B_k‖_F``, without cancellation (an exact Kronecker product
        reports ~1e-16 relative): from the tail singular values when the whole spectrum was
        computed, else from the difference itself (dense or sparse ``M``, sums of Kron terms).
        Only for matrix-free samples (:func:`kpsvd_samples`) is it
        ``sqrt(‖M‖_F² - Σ_k s_k²)``, with absolute accuracy about ``1e-8·‖M‖_F``; ``None``
        when ``‖M‖_F`` is unknown (a LinearOperator input).
    norm : float or None
        ``‖M‖_F`` (``None`` for a LinearOperator input).
    skew : ndarray of bool, shape (r,)
        ``True`` where term ``k`` is skew ⊗ skew (possible for ``structure="symmetric"``:
        a symmetric ``M`` has terms symmetric ⊗ symmetric *or* skew ⊗ skew).
    method : str
        How the SVD was computed: ``"dense"``, ``"lanczos"``, ``"randomized"`` or
        ``"lowrank"`` (exact, from a sum of Kronecker terms).

    Notes
    -----
    Each term's sign (complex: phase) is fixed so that the entry of ``A[k]`` of largest
    magnitude is real positive (for ``structure="psd"`` the leading term has ``tr A[0] > 0``
    instead). ``term(k)`` returns a :class:`~kronkit.Kron` and ``to_sum()`` all terms as a
    :class:`~kronkit.SumOfKron`; both need real factors; for complex results use
    ``to_dense()`` or ``np.kron(s[k] * A[k], B[k])``. ``tail_errors()`` gives the error
    after each number of terms.
    """

    s: np.ndarray
    A: np.ndarray
    B: np.ndarray
    residual: float | None
    norm: float | None
    skew: np.ndarray
    method: str

    def __setstate__(self, state: Any) -> None:
        _frozen_state(self, state)

    @property
    def rank(self) -> int:
        """Number of terms ``r``."""
        return int(self.s.size)

    @property
    def rel_error(self) -> float | None:
        """``residual / ‖M‖_F`` (0 for the zero matrix; ``None`` when unknown)."""
        return _rel_error(self.residual, self.norm)

    def tail_errors(self, relative: bool = False) -> np.ndarray | None:
        r"""The error after each number of terms: ``‖M - M_k‖_F`` for ``k = 1..r``.

        ``M_k = Σ_{j<=k} s_j A_j ⊗ B_j``; by orthogonality of the terms
        ``‖M - M_k‖_F = sqrt(Σ_{j>k} s_j² + residual²)``, summed from the tail (a reverse
        cumulative sum: no cancellation). The last entry is ``residual``.

        Parameters
        ----------
        relative : bool, default False
            Divide by ``‖M‖_F`` (all zeros for the zero matrix, as :attr:`rel_error`).

        Returns
        -------
        ndarray of shape (r,) or None
            Non-increasing errors; ``None`` when ``residual`` is unknown (a LinearOperator
            input), as :attr:`rel_error`. Cost ``O(r)``.

        Examples
        --------
        Dense equivalent, for ``k = 1..r``:
        ``np.linalg.norm(M - sum(np.kron(s[j] * A[j], B[j]) for j in range(k)))``.
        """
        residual, norm = self.residual, self.norm
        if residual is None or (relative and norm is None):
            return None
        sq = np.abs(self.s).astype(float) ** 2
        after = np.concatenate([np.cumsum(sq[::-1])[::-1][1:], [0.0]])
        err = np.sqrt(after + float(residual) ** 2)
        if not relative or norm is None:
            return err
        return np.zeros_like(err) if norm == 0.0 else err / float(norm)

    def _require_real(self) -> None:
        if np.iscomplexobj(self.A) or np.iscomplexobj(self.B):
            raise TypeError(
                "Kron supports real factors only and this KPSVD is complex; use "
                "`to_dense()` or `np.kron(res.s[k] * res.A[k], res.B[k])`"
            )

    def term(self, k: int) -> Kron:
        """Term ``k`` as the operator ``Kron(s[k] * A[k], B[k])`` (real results only): the
        ``k``-th term of :meth:`to_sum`, built alone."""
        if not -self.rank <= k < self.rank:
            raise IndexError(f"`k` must be in [0, {self.rank}), got {k}")
        self._require_real()
        return Kron(self.s[k] * self.A[k], self.B[k])

    def to_sum(self) -> SumOfKron:
        r"""The terms as a :class:`~kronkit.SumOfKron`: ``Σ_k Kron(s[k] * A[k], B[k])``.

        Real results only (``TypeError`` for a complex KPSVD, as :meth:`term`); at least one
        term (``ValueError`` for the zero matrix decomposed with ``rank=None``). The factors
        are copied (``O(r·(m1 n1 + m2 n2))``); products with the sum cost
        ``O(r·M·(n1 + n2))`` per vector, never forming ``M``.

        Dense equivalent: ``sum(np.kron(s[k] * A[k], B[k]) for k in range(r))``, which
        :meth:`to_dense` computes in one GEMM (complex results too).
        """
        self._require_real()
        if self.rank == 0:
            raise ValueError("this KPSVD has no terms (the zero matrix with rank=None); "
                             "a SumOfKron needs at least one")
        return SumOfKron([self.term(k) for k in range(self.rank)])

    def to_dense(self) -> np.ndarray:
        """``Σ_k s_k kron(A_k, B_k)`` as a dense ``(m1*m2, n1*n2)`` array (one GEMM)."""
        r, m1, n1 = self.A.shape
        _, m2, n2 = self.B.shape
        Rr = (self.A.reshape(r, m1 * n1).T * self.s) @ self.B.reshape(r, m2 * n2)
        return unrearrange(Rr, ((m1, n1), (m2, n2)))

    def __repr__(self) -> str:
        _, m1, n1 = self.A.shape
        _, m2, n2 = self.B.shape
        err = "?" if self.rel_error is None else f"{self.rel_error:.3g}"
        return (f"KPSVDResult(rank={self.rank}, A: {m1}×{n1}, B: {m2}×{n2}, "
                f"s={np.array2string(self.s[:4], precision=4)}{'...' if self.rank > 4 else ''}, "
                f"rel_error={err}, method={self.method!r})")


@dataclass(frozen=True, eq=False)
class NearestKronResult:
    r"""The nearest Kronecker product ``A1 ⊗ ... ⊗ Ad`` to ``M`` in the Frobenius norm.

    Unpacks to its factors: ``A, B = nearest_kron(M, shapes)``.

    Attributes
    ----------
    factors : tuple of ndarray
        ``A_k`` of shape ``(m_k, n_k)``. The optimal scale ``σ`` is split evenly,
        ``‖A_k‖_F = σ^(1/d)``, and signs (phases) are fixed: the largest-magnitude entry of
        every factor but the last is real positive (``structure="psd"``: every factor has a
        positive trace).
    sigma : float
        ``σ = <M, A1⊗...⊗Ad>/∏‖A_k‖_F``: the leading Kronecker singular value for d = 2.
    residual : float or None
        ``‖M - A1 ⊗ ... ⊗ Ad‖_F`` without cancellation (the SVD tail for d = 2, else the
        difference itself); ``sqrt(‖M‖_F² - σ²)`` (absolute accuracy ~1e-8·‖M‖_F) only for a
        sum of Kron terms with d >= 3; ``None`` if ``‖M‖_F`` is unknown.
    norm : float or None
        ``‖M‖_F``.
    n_iter : int
        Power-method sweeps (0 for d = 2, solved exactly by an SVD).
    converged : bool
        Whether the power method met its tolerance (always True for d = 2).
    skew_sigma : float or None
        For ``structure="symmetric"`` (d = 2): the singular value of the best skew ⊗ skew pair
        when it beats the returned symmetric pair (a :class:`StructureWarning` is issued too).
    """

    factors: tuple[np.ndarray, ...]
    sigma: float
    residual: float | None
    norm: float | None
    n_iter: int
    converged: bool
    skew_sigma: float | None = None

    def __iter__(self) -> Iterator[np.ndarray]:
        return iter(self.factors)

    def __setstate__(self, state: Any) -> None:
        _frozen_state(self, state)

    @property
    def rel_error(self) -> float | None:
        """``residual / ‖M‖_F`` (0 for the zero matrix; ``None`` when unknown)."""
        return _rel_error(self.residual, self.norm)

    @property
    def kron(self) -> Kron:
        """The approximation as a :class:`~kronkit.Kron` (real factors only)."""
        if any(np.iscomplexobj(f) for f in self.factors):
            raise TypeError("Kron supports real factors only and these are complex; use "
                            "`to_dense()`")
        return Kron(*self.factors)

    def to_dense(self) -> np.ndarray:
        """``np.kron(A1, np.kron(A2, ...))``."""
        return functools.reduce(np.kron, self.factors)

