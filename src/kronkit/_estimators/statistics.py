r"""The sample statistics of the separable fits: one engine over chunks of observations.

Every statistic the flip-flop and ECME fits need is a sum (or a concatenation) over
observations of a per-chunk kernel applied to weighted residuals ``√w_i (X_i − M)`` in the
``(p, n, q)`` layout of :func:`kronkit._samples.layout`:

- the row statistic ``Σ_i w_i E_i B⁻¹ E_iᵀ`` (p×p, :func:`kronkit._samples.row_gram`),
- the column statistic ``Σ_i w_i E_iᵀ A⁻¹ E_i`` (q×q, :func:`kronkit._samples.col_gram`),
- the squared distances ``δ_i = tr(A⁻¹ E_i B⁻¹ E_iᵀ)`` (N numbers,
  :func:`kronkit._samples.delta_kernel`),
- the second moment ``Σ_i vec(E_i) vec(E_i)ᵀ`` (P×P, :func:`kronkit._samples.second_moment`).

:class:`SampleStatistics` computes them from a source of chunks: :class:`DaskChunks` (a
``dask.array`` chunked along N: the kernels run where the chunks live, only the p×p / q×q sums
travel, reduced in a tree; the weights go out and ``δ`` comes back) or :class:`InMemoryChunks`
(a NumPy array: the one-chunk case, which keeps its laid-out residuals while ``M`` and the
weights stay the same, and the column statistic's ``L_A⁻¹ E_i`` for the next ``δ``). The t
model's weighted mean is computed directly in memory; for chunked data, where it would be a
pass of its own, it is folded into the next row statistic: with ``D_i = X_i − M_old`` and
``Δ = Σ w_i D_i / Σ w_i``, ``Σ w_i (D_i − Δ) C (D_i − Δ)ᵀ = Σ w_i D_i C D_iᵀ − (Σ w_i) Δ C Δᵀ``.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from .._checks import non_finite_error
from .._dask import add_nested, concat_chunks, tree_reduce_chunks
from .._errors import SingularFactorError
from .._samples import (
    col_gram,
    combine_scans,
    delta_kernel,
    layout,
    row_gram,
    scan_chunk,
    second_moment,
)
from .cholesky import SIDES
from .units import unit_scales

__all__ = ["DaskChunks", "InMemoryChunks", "SampleStatistics", "check_not_constant",
           "open_statistics"]


# ---------------------------------------------------------------------------------------
# Per-chunk kernels: ``kernel(Et, w, memo, **kw)`` on weighted residuals Et (p, n, q)
# ---------------------------------------------------------------------------------------
def _row_kernel(Et: np.ndarray, w: np.ndarray | None, memo: dict, *, LBi: np.ndarray,
                with_mean: bool) -> Any:
    """Row statistic of one chunk; with ``with_mean`` also ``Σ w_i`` and ``Σ w_i (X_i − M)``."""
    S = row_gram(Et, LBi)
    if not with_mean or w is None:
        return S
    return S, float(np.sum(w)), np.einsum("anb,n->ab", Et, np.sqrt(w))


def _col_kernel(Et: np.ndarray, w: np.ndarray | None, memo: dict, *, LAi: np.ndarray,
                keep: bool) -> np.ndarray:
    """Column statistic of one chunk; with ``keep``, ``G_i = L_A⁻¹ E_i`` is left in ``memo``."""
    S, G = col_gram(Et, LAi)
    memo["G"] = (LAi, G) if keep else None
    return S


def _delta_kernel(Et: np.ndarray, w: np.ndarray | None, memo: dict, *, LAi: np.ndarray,
                  LBi: np.ndarray) -> np.ndarray:
    """``δ_i`` (n,) of one chunk (from ``G`` in ``memo`` when it was computed with ``LAi``)."""
    hit = memo.pop("G", None)
    if hit is not None and hit[0] is LAi:
        G = hit[1]
    else:
        p, n, q = Et.shape
        G = (LAi @ Et.reshape(p, n * q)).reshape(p, n, q)
    d = delta_kernel(G, LBi)  # δ_i·w_i for the weighted residuals
    return d if w is None else d / w


def _chunk_task(kernel: Any, M: np.ndarray, kw: dict, block: Any,
                w: np.ndarray | None) -> Any:
    """A kernel on one dask chunk, laid out where it lives (module level: picklable)."""
    return kernel(layout(block, M, w), w, {}, **kw)


# ---------------------------------------------------------------------------------------
# Sources of chunks
# ---------------------------------------------------------------------------------------
class InMemoryChunks:
    """Observations (N, p, q) in memory: one chunk.

    The weighted residuals are laid out once per ``(M, w)`` (compared by identity: the
    engine replaces them, never modifies them) and kept, with what a kernel leaves in the
    memo, until either changes. With ``moving_mean`` (the t model, whose weighted mean moves
    every step) the observations are also kept in ``(p, N, q)`` layout, so that each new
    layout and the weighted mean are contiguous passes; in memory the weighted mean costs no
    pass over the data, so it is computed directly (:meth:`weighted_mean`) rather than folded
    into the row statistic.
    """

    #: the data are resident: a weighted mean costs no pass, and laid-out residuals are kept
    resident = True

    def __init__(self, X: np.ndarray, moving_mean: bool = False):
        self.X = X
        self._Xt = np.ascontiguousarray(X.transpose(1, 0, 2)) if moving_mean else None
        self._key: tuple[Any, Any] | None = None
        self._Et: np.ndarray | None = None
        self._memo: dict = {}

    def _residuals(self, M: np.ndarray, w: np.ndarray | None) -> np.ndarray:
        key = self._key
        if key is None or key[0] is not M or key[1] is not w or self._Et is None:
            self._Et = self._memo = None  # type: ignore[assignment]  # free before allocating
            if self._Xt is None:
                Et = layout(self.X, M, w)
            else:
                Et = self._Xt - M[:, None, :]
                if w is not None:
                    Et *= np.sqrt(w)[None, :, None]
            self._Et, self._memo, self._key = Et, {}, (M, w)
        return self._Et

    def weighted_mean(self, w: np.ndarray) -> np.ndarray:
        """``Σ_i w_i X_i / Σ_i w_i`` (p, q)."""
        Xt = self._Xt if self._Xt is not None else self.X.transpose(1, 0, 2)
        return np.einsum("anb,n->ab", Xt, w) / w.sum()

    def reduce(self, kernel: Any, M: np.ndarray, w: np.ndarray | None, **kw: Any) -> Any:
        """``kernel`` on the residuals ``√w_i (X_i − M)`` of the one chunk."""
        return kernel(self._residuals(M, w), w, self._memo, **kw)

    concat = reduce

    def reduce_raw(self, fn: Any) -> Any:
        """``fn`` on the observations (N, p, q)."""
        return fn(self.X)


class DaskChunks:
    """Observations as a dask array (N, p, q) chunked along N: every statistic is one pass.

    Each pass maps a kernel over the chunks where they live (laid out there) and sums the
    results in a tree (:func:`kronkit._dask.tree_reduce_chunks`) or concatenates per-observation
    results; per-observation weights travel to the tasks.
    """

    #: each statistic is a pass: the weighted mean is folded into the row statistic's, and
    #: ``δ`` is computed from unweighted residuals (no weights to send)
    resident = False

    def __init__(self, X: Any):
        self.X = X

    def reduce(self, kernel: Any, M: np.ndarray, w: np.ndarray | None, **kw: Any) -> Any:
        return tree_reduce_chunks(self.X, functools.partial(_chunk_task, kernel, M, kw),
                                  add_nested, aligned=(w,))

    def concat(self, kernel: Any, M: np.ndarray, w: np.ndarray | None, **kw: Any) -> np.ndarray:
        return concat_chunks(self.X, functools.partial(_chunk_task, kernel, M, kw), aligned=(w,))

    def reduce_raw(self, fn: Any) -> Any:
        return tree_reduce_chunks(self.X, fn, add_nested)


# ---------------------------------------------------------------------------------------
# The engine
# ---------------------------------------------------------------------------------------
class SampleStatistics:
    """The statistics of observations (N, p, q) at location ``M`` and weights ``w``.

    ``chunks`` is :class:`InMemoryChunks` or :class:`DaskChunks`; the iteration is the same
    either way. ``keep_g`` (the t model) keeps the column statistic's ``L_A⁻¹ E_i`` of an
    in-memory chunk for the ``δ`` that follows it.
    """

    def __init__(self, chunks: Any, shape: tuple[int, int, int], M: np.ndarray, *,
                 keep_g: bool = False):
        self.chunks = chunks
        self.N, self.p, self.q = shape
        self.M = M
        self._keep_g = keep_g
        self._w: np.ndarray | None = None
        self._recentre = False
        self._LAi: Any = None  # the row factor of the last column statistic

    def reweight(self, w: np.ndarray, update_mean: bool) -> None:
        """Use weights ``w`` (N,) from now on; with ``update_mean`` the next row statistic
        also moves ``M`` to ``Σ w_i X_i/Σ w_i``."""
        self._w = w
        self._recentre = update_mean

    def row_stat(self, LBi: np.ndarray) -> np.ndarray:
        """``Σ_i w_i (X_i − M) B⁻¹ (X_i − M)ᵀ`` (p×p) with ``LBi = L_B⁻¹``."""
        if self._recentre and self.chunks.resident:
            self.M = self.chunks.weighted_mean(self._w)
            self._recentre = False
        out = self.chunks.reduce(_row_kernel, self.M, self._w, LBi=LBi,
                                 with_mean=self._recentre)
        if not self._recentre:
            return out
        S, W, D = out
        shift = D / W  # M_new − M_old
        self.M = self.M + shift
        self._recentre = False
        K = shift @ LBi.T
        return S - W * (K @ K.T)

    def col_stat(self, LAi: np.ndarray) -> np.ndarray:
        """``Σ_i w_i (X_i − M)ᵀ A⁻¹ (X_i − M)`` (q×q) with ``LAi = L_A⁻¹``."""
        self._LAi = LAi
        return self.chunks.reduce(_col_kernel, self.M, self._w, LAi=LAi, keep=self._keep_g)

    def delta(self, LBi: np.ndarray) -> np.ndarray:
        """``δ_i`` (N,) for the row factor of the last :meth:`col_stat` and ``B = L_B L_Bᵀ``.

        Resident data reuse the column statistic's ``L_A⁻¹ √w_i E_i`` (and divide by ``w_i``).
        """
        w = self._w if self.chunks.resident else None
        return self.chunks.concat(_delta_kernel, self.M, w, LAi=self._LAi, LBi=LBi)

    def delta_at(self, M: np.ndarray, LAi: np.ndarray, LBi: np.ndarray) -> np.ndarray:
        """``δ_i`` (N,) at location ``M`` and factors ``A = L_A L_Aᵀ``, ``B = L_B L_Bᵀ``."""
        return self.chunks.concat(_delta_kernel, M, None, LAi=LAi, LBi=LBi)

    def second_moment(self) -> np.ndarray:
        """``Σ_i vec(X_i − M) vec(X_i − M)ᵀ`` (P×P)."""
        return self.chunks.reduce_raw(functools.partial(second_moment, mean=self.M))


# ---------------------------------------------------------------------------------------
# The first pass: checks, units, mean
# ---------------------------------------------------------------------------------------
def open_statistics(Xs: Any, chunked: bool, assume_centered: bool,
                    weighted: bool) -> tuple[SampleStatistics, np.ndarray, np.ndarray]:
    """The engine for validated samples ``Xs`` (N, p, q) in their units, and the scales.

    One pass over the data (chunked: the sum, a NaN/Inf check and the entrywise maximum
    magnitude; in memory: the check for a constant entry and the maximum magnitude) gives the
    row and column scales ``r``, ``c`` (:func:`kronkit._estimators.units.unit_scales`); the
    engine holds ``X_i / (r cᵀ)`` and its mean (zero with ``assume_centered``); ``weighted``
    (the t model) prepares it for weights and a moving mean.
    """
    N, p, q = (int(v) for v in Xs.shape)
    if chunked:
        total, bad, _, T = tree_reduce_chunks(Xs, scan_chunk, combine_scans, name="X")
        if bad:
            raise non_finite_error("X", bad)
    else:
        check_not_constant(Xs, assume_centered)
        T = np.max(np.abs(Xs), axis=0)
    r, c = unit_scales(T)
    rc = r[:, None] * c[None, :]
    if np.any(r != 1.0) or np.any(c != 1.0):
        Xs = Xs / rc
    if assume_centered:
        M = np.zeros((p, q))
    else:
        M = total / rc / N if chunked else Xs.mean(axis=0)
    chunks = DaskChunks(Xs) if chunked else InMemoryChunks(Xs, moving_mean=weighted)
    return SampleStatistics(chunks, (N, p, q), M, keep_g=weighted), r, c


def check_not_constant(X: np.ndarray, assume_centered: bool) -> None:
    """Raise if an entry of ``X`` has no spread (constant, or always 0 when centred).

    Then ``A[a, a]·B[j, j] = 0`` and the likelihood is unbounded; caught here, exactly,
    because a fit is equivariant under units and would otherwise treat rounding noise in the
    residuals of a constant entry as a variance in very small units.
    """
    lo, hi = np.min(X, axis=0), np.max(X, axis=0)
    flat = (lo == hi) & (hi == 0) if assume_centered else lo == hi
    if not flat.any():
        return
    what = "always 0 (assume_centered=True)" if assume_centered else "constant"
    rows, cols = np.flatnonzero(flat.all(axis=1)), np.flatnonzero(flat.all(axis=0))
    if rows.size:
        side, where = 0, f"row {int(rows[0])} of every observation is {what}"
    elif cols.size:
        side, where = 1, f"column {int(cols[0])} of every observation is {what}"
    else:
        a, j = (int(v) for v in np.argwhere(flat)[0])
        side, where = 0, f"entry ({a}, {j}) of every observation is {what}"
    raise SingularFactorError(
        f"`X`: {where}, so the {SIDES[side]} covariance of the separable model is singular "
        "(the likelihood is unbounded); remove or perturb that entry", factor=side)
