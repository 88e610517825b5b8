"""Matrix samples ``X_1, ..., X_N`` (each ``p×q``), in memory (NumPy) or chunked (dask).

The one home of
- the shape rule: samples are ``(N, p, q)``, or ``(N, P)`` with ``shape=(p, q)``, ``p·q = P``
  (one entry may be ``-1``, inferred); a 2-D ``X`` without ``shape`` is an error
  (:func:`parse_shape`, :func:`resolve_shape`, :func:`sample_shape`, :func:`as_samples`,
  :func:`as_dask_samples`);
- the ``(p, n, q)`` layout (:func:`layout`) in which every contraction below is one GEMM on a
  ``(p·n, q)`` or ``(p, n·q)`` view, with no further copies;
- the contractions the KPSVD of a sample covariance and the separable estimators are built
  from: ``Σ_n X_n V X_nᵀ`` and ``Σ_n X_nᵀ U X_n`` (:func:`row_sandwich`, :func:`col_sandwich`),
  their Gram forms with a triangular factor (:func:`row_gram`, :func:`col_gram`,
  :func:`delta_kernel`), the second moment ``Σ_n vec(X_n) vec(X_n)ᵀ`` (:func:`second_moment`)
  and the ``N×N`` cross Gram block (:func:`cross_gram`);
- one pass over chunked data: sum, non-finite count, minimum and entrywise maximum magnitude
  (:func:`scan_chunk`, :func:`combine_scans`, :func:`chunked_mean`), and chunking of
  in-memory samples (:func:`chunk_samples`).
"""

from __future__ import annotations

import math
import numbers
from typing import Any, NamedTuple

import numpy as np

from ._checks import as_float, non_finite_error
from ._dask import add_nested, row_chunks, tree_reduce_chunks

__all__ = [
    "SAMPLE_CHUNK_ELEMENTS",
    "Scan",
    "as_dask_samples",
    "as_samples",
    "chunk_samples",
    "chunked_mean",
    "col_gram",
    "col_sandwich",
    "combine_scans",
    "cross_gram",
    "delta_kernel",
    "layout",
    "parse_shape",
    "resolve_shape",
    "row_gram",
    "row_sandwich",
    "sample_shape",
    "scan_chunk",
    "second_moment",
]

SAMPLE_CHUNK_ELEMENTS = 1 << 22  # about 32 MB of float64 per chunk


# ---------------------------------------------------------------------------------------
# The shape rule
# ---------------------------------------------------------------------------------------
def parse_shape(shape: Any, name: str = "shape") -> tuple[int, int]:
    """``(p, q)`` from a pair of positive ints; ``TypeError``/``ValueError`` naming ``name``."""
    try:
        vals = tuple(shape)
    except TypeError as exc:
        raise TypeError(f"`{name}` must be a pair of positive ints (p, q), got {shape!r}") from exc
    if len(vals) != 2 or not all(
        isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in vals
    ):
        raise TypeError(f"`{name}` must be a pair of positive ints (p, q), got {shape!r}")
    p, q = (int(v) for v in vals)
    if p < 1 or q < 1:
        raise ValueError(f"`{name}` must be a pair of positive ints (p, q), got {shape!r}")
    return p, q


def resolve_shape(shape: Any, P: int, name: str = "shape", where: str = "") -> tuple[int, int]:
    """``(p, q)`` with ``p·q = P`` from ``shape``; one entry may be ``-1`` (inferred, as in
    ``np.reshape``): ``(-1, 1)`` is the unstructured covariance (``A`` P×P, ``B = [[1]]``)."""
    try:
        vals = tuple(shape)
    except TypeError as exc:
        raise TypeError(f"`{name}` must be a pair of ints (p, q), got {shape!r}") from exc
    if len(vals) == 2 and sum(isinstance(v, numbers.Integral) and not isinstance(v, bool)
                             and int(v) == -1 for v in vals) == 1:
        k = 0 if int(vals[0]) == -1 else 1
        other = parse_shape((vals[1 - k], 1), name)[0]  # the given entry: a positive int
        if P % other:
            raise ValueError(f"`{name}` {tuple(vals)!r} does not fit{where}: P = {P} is not a "
                             f"multiple of {other}")
        return (P // other, other) if k == 0 else (other, P // other)
    p, q = parse_shape(shape, name)
    if p * q != P:
        raise ValueError(f"`{name}` {(p, q)} does not fit{where}: p*q = {p * q}, not P = {P}")
    return p, q


def sample_shape(arr_shape: tuple[int, ...], shape: Any, name: str) -> tuple[int, int, int]:
    """The ``(N, p, q)`` that samples of shape ``arr_shape`` stand for (rules in as_samples)."""
    arr_shape = tuple(int(v) for v in arr_shape)
    if len(arr_shape) == 3:
        P = arr_shape[1] * arr_shape[2]
        if shape is not None and resolve_shape(shape, P) != arr_shape[1:]:
            raise ValueError(
                f"`shape` {tuple(shape)!r} does not match `{name}` of shape {arr_shape} "
                f"(expected shape=None or {arr_shape[1:]})"
            )
        out = arr_shape
    elif len(arr_shape) == 2:
        P = arr_shape[1]
        if shape is None:
            raise ValueError(
                f"`{name}` is 2-D, shape {arr_shape} (N rows of length P = {P}), and `shape` is "
                f"not given, so the matrix shape (p, q) of an observation is unknown: give "
                f"`shape=(p, q)` with p*q = {P} (rows are row-major flattenings X_i.ravel()), "
                f"or `{name}` of shape (N, p, q). For an unstructured covariance (A is P×P, "
                "B = [[1]]) give `shape=(-1, 1)`, or use sklearn.covariance.EmpiricalCovariance"
            )
        p, q = resolve_shape(shape, P, where=f" `{name}` of shape {arr_shape}")
        out = (arr_shape[0], p, q)
    else:
        raise ValueError(
            f"`{name}` must have shape (N, p, q), or (N, P) with `shape=(p, q)`, got shape "
            f"{arr_shape}"
        )
    if min(out) == 0:
        raise ValueError(f"`{name}` must hold at least one non-empty observation, got shape "
                         f"{arr_shape}")
    return out


def as_samples(X: Any, shape: Any = None, name: str = "X") -> np.ndarray:
    """Validate samples: a C-contiguous float64 array of shape (N, p, q) (read-only use).

    ``X`` of shape (N, p, q) is taken as is (``shape``, if given, must equal ``(p, q)``);
    ``X`` of shape (N, P) needs ``shape=(p, q)`` with ``p·q = P`` (one entry may be ``-1``, as
    in ``np.reshape``: ``shape=(-1, 1)`` is an unstructured covariance, ``A`` P×P and
    ``B = [[1]]``); without ``shape`` a 2-D ``X`` is a ValueError, never a silent reshape.
    """
    arr = as_float(X, name, dtype=np.float64)
    dims = sample_shape(arr.shape, shape, name)
    return np.ascontiguousarray(arr.reshape(dims), dtype=np.float64)  # may share memory with `X`


def as_dask_samples(X: Any, shape: Any = None, name: str = "X") -> Any:
    """Validate samples given as a dask array: shape (N, p, q), chunked along N only.

    Same shape rules as :func:`as_samples`; chunks along the other axes are merged (a rechunk
    in the graph, nothing computed). Values (NaN/Inf) are checked by the first pass.
    """
    kind = X.dtype.kind
    if kind == "c":
        raise TypeError(f"`{name}` is complex ({X.dtype}); the estimators take real data")
    if kind not in "biuf":
        raise TypeError(f"`{name}` must be a real numeric array, got dtype {X.dtype}")
    Xr = row_chunks(X, name) if X.ndim in (2, 3) else X  # rejects unknown chunk sizes first
    dims = sample_shape(Xr.shape, shape, name)
    return Xr if Xr.ndim == 3 else Xr.reshape(dims)


# ---------------------------------------------------------------------------------------
# One pass over the data
# ---------------------------------------------------------------------------------------
class Scan(NamedTuple):
    """What one pass over samples (n, p, q) learns: ``Σ_i X_i`` (p, q), the number of
    non-finite entries, the smallest entry and the entrywise largest magnitude (p, q)."""

    total: np.ndarray
    n_bad: int
    minimum: float
    max_abs: np.ndarray


def scan_chunk(block: Any) -> Scan:
    """The :class:`Scan` of one chunk (n, p, q)."""
    b = np.asarray(block, dtype=np.float64)
    bad = int(b.size - np.count_nonzero(np.isfinite(b)))
    return Scan(b.sum(axis=0), bad, float(b.min()) if b.size else math.inf,
                np.max(np.abs(b), axis=0))


def combine_scans(a: Scan, b: Scan) -> Scan:
    """The :class:`Scan` of two chunks together."""
    return Scan(a.total + b.total, a.n_bad + b.n_bad, min(a.minimum, b.minimum),
                np.maximum(a.max_abs, b.max_abs))


def chunked_mean(X: Any, name: str = "X") -> np.ndarray:
    """``Σ_i X_i / N`` of a dask array (N, p, q) in one pass, which also rejects NaN/Inf."""
    total, bad = tree_reduce_chunks(X, _sum_and_bad, add_nested, name=name)
    if bad:
        raise non_finite_error(name, bad)
    return total / X.shape[0]


def _sum_and_bad(block: Any) -> tuple[np.ndarray, int]:
    b = np.asarray(block, dtype=np.float64)
    return b.sum(axis=0), int(b.size - np.count_nonzero(np.isfinite(b)))


# ---------------------------------------------------------------------------------------
# Layout and contractions
# ---------------------------------------------------------------------------------------
def layout(X: Any, mean: np.ndarray | None = None, w: np.ndarray | None = None) -> np.ndarray:
    """Samples ``X`` (n, p, q) as ``√w_i (X_i − mean)`` in a contiguous float64 ``(p, n, q)`` array.

    In this layout each contraction below is one GEMM on a ``(p·n, q)`` or ``(p, n·q)`` view
    (and at most one symmetric rank-k update) with no further copies. One allocation of
    ``n·p·q`` float64.
    """
    X = np.asarray(X)
    n, p, q = X.shape
    out = np.empty((p, n, q), dtype=np.float64)
    src = X.transpose(1, 0, 2)
    if mean is None:
        out[...] = src
    else:
        np.subtract(src, mean[:, None, :], out=out)
    if w is not None:
        out *= np.sqrt(w)[None, :, None]
    return out


def row_sandwich(Xt: np.ndarray, V: np.ndarray) -> np.ndarray:
    """``Σ_n X_n V X_nᵀ`` (p×p, unnormalised) for a batch ``Xt`` in ``(p, n, q)`` layout.

    ``V`` is ``(q, q)``. Two GEMMs, ``2·n·p·q·(p+q)`` flops, workspace ``n·p·q``. With
    ``M = Σ_n vec(X_n) vec(X_n)ᵀ`` this is ``R(M) vec(V)`` (reshaped), a per-chunk partial sum.
    """
    p, n, q = Xt.shape
    Z = Xt.reshape(p * n, q) @ V  # Z[a, n, d] = (X_n V)[a, d]
    return Z.reshape(p, n * q) @ Xt.reshape(p, n * q).T


def col_sandwich(Xt: np.ndarray, U: np.ndarray) -> np.ndarray:
    """``Σ_n X_nᵀ U X_n`` (q×q, unnormalised) for a batch ``Xt`` in ``(p, n, q)`` layout.

    ``U`` is ``(p, p)``; this is ``R(M)ᵀ vec(U)`` (reshaped). Two GEMMs, workspace ``n·p·q``.
    """
    p, n, q = Xt.shape
    W = (U @ Xt.reshape(p, n * q)).reshape(p * n, q)  # W[a, n, d] = (U X_n)[a, d]
    return Xt.reshape(p * n, q).T @ W


def row_gram(Et: np.ndarray, LBi: np.ndarray) -> np.ndarray:
    """``Σ_i E_i B⁻¹ E_iᵀ = Σ_i (E_i L_B⁻ᵀ)(E_i L_B⁻ᵀ)ᵀ`` (p×p) for ``Et`` in (p, n, q) layout.

    :func:`row_sandwich` with ``V = B⁻¹ = L_B⁻ᵀ L_B⁻¹`` given by ``LBi = L_B⁻¹``: symmetric
    positive semi-definite by construction. Cost ``n·p·q·(p+q)`` multiply-adds.
    """
    p, n, q = Et.shape
    Fm = (Et.reshape(p * n, q) @ LBi.T).reshape(p, n * q)  # rows of E_i L_B^{-T}
    return Fm @ Fm.T


def col_gram(Et: np.ndarray, LAi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``Σ_i E_iᵀ A⁻¹ E_i = Σ_i G_iᵀ G_i`` (q×q) with ``G_i = L_A⁻¹ E_i``; also ``G`` (p, n, q)."""
    p, n, q = Et.shape
    G = LAi @ Et.reshape(p, n * q)
    Gm = G.reshape(p * n, q)
    return Gm.T @ Gm, G.reshape(p, n, q)


def delta_kernel(G: np.ndarray, LBi: np.ndarray) -> np.ndarray:
    """``δ_i = ‖G_i L_B⁻ᵀ‖_F² = tr(A⁻¹ E_i B⁻¹ E_iᵀ)`` from ``G_i = L_A⁻¹ E_i`` (p, n, q); shape (n,)."""
    p, n, q = G.shape
    H = (G.reshape(p * n, q) @ LBi.T).reshape(p, n, q)
    return np.einsum("anb,anb->n", H, H)


def second_moment(block: Any, mean: np.ndarray | None = None) -> np.ndarray:
    """``Σ_i vec(X_i − mean) vec(X_i − mean)ᵀ`` (P×P, unnormalised) of a chunk (n, p, q)."""
    E = np.asarray(block, dtype=np.float64)
    if mean is not None:
        E = E - mean
    E = E.reshape(E.shape[0], -1)
    return E.T @ E


def cross_gram(Xa: np.ndarray, Xb: np.ndarray) -> np.ndarray:
    """Cross Gram block ``G[n, m] = <X_n, X_m>`` for two batches in ``(p, n, q)`` layout."""
    return np.tensordot(Xa, Xb, axes=([0, 2], [0, 2]))


def chunk_samples(X: np.ndarray, mean: np.ndarray | None,
                  chunk_elements: int = SAMPLE_CHUNK_ELEMENTS) -> list[np.ndarray]:
    """Split samples ``(N, p, q)`` into centred ``(p, c, q)`` chunks of about ``chunk_elements``."""
    N, p, q = X.shape
    c = max(1, min(N, chunk_elements // max(1, p * q)))
    return [layout(X[s : s + c], mean) for s in range(0, N, c)]
