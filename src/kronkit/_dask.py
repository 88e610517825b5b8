"""Observations as dask arrays: per-chunk statistics, reduced in a tree.

The work in kronkit is a sum over observations of small per-observation terms. For a
``dask.array`` of observations chunked along the first axis, each chunk is reduced where it
lives to a few p×p / q×q arrays and scalars, and the partial results are summed pairwise (a
tree), so only those small arrays travel. Whatever scheduler is active runs the graph: the
threaded default, ``dask.config.set(scheduler="synchronous")``, or a ``dask.distributed``
``Client`` (a ``LocalCluster`` or a real cluster's scheduler address).

One call of :func:`tree_reduce_chunks` (or :func:`concat_chunks`) is one *pass* over the
data: one ``dask.compute`` of a graph with one task per chunk plus the tree. Nothing is
persisted between passes; data generated lazily (``da.random``, ``da.from_zarr``, …) are
regenerated / re-read by every pass, so a fit never holds more than a few chunks per worker.

dask is imported only when a dask array is passed (extra ``kronkit[dask]``).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

__all__ = ["concat_chunks", "is_dask_array", "tree_reduce_chunks"]


def is_dask_array(x: Any) -> bool:
    """True for a ``dask.array.Array`` (checked without importing dask)."""
    mod = type(x).__module__ or ""
    return mod.startswith("dask.") and hasattr(x, "to_delayed") and hasattr(x, "chunks")


def require_dask():
    try:
        import dask
        import dask.array
    except ImportError as exc:  # pragma: no cover - dask is in the test extra
        raise ImportError("dask arrays need dask: pip install 'kronkit[dask]'") from exc
    return dask


def row_chunks(X: Any, name: str) -> Any:
    """Rechunk so that only the first (observation) axis is split; return the array.

    Raises ValueError for a 1-D array or unknown chunk sizes along the first axis.
    """
    if X.ndim < 2:
        raise ValueError(f"`{name}` as a dask array must have shape (N, ...), got shape {X.shape}")
    if any(math.isnan(c) for c in X.chunks[0]):
        raise ValueError(
            f"`{name}` has unknown chunk sizes along its first axis (shape {X.shape}); call "
            f"`{name}.compute_chunk_sizes()` first"
        )
    if any(len(c) > 1 for c in X.chunks[1:]):
        X = X.rechunk({i: -1 for i in range(1, X.ndim)})
    return X


def _aligned_slices(X: Any, aligned: Sequence[Any], name: str) -> list[tuple[Any, ...]]:
    """Per chunk of ``X``, the matching row slices of the NumPy arrays in ``aligned``."""
    N = X.shape[0]
    for k, a in enumerate(aligned):
        if a is not None and np.shape(a)[:1] != (N,):
            raise ValueError(f"aligned array {k} must have length {N} like `{name}`, got "
                             f"shape {np.shape(a)}")
    bounds = np.cumsum((0, *X.chunks[0]))
    return [
        tuple(None if a is None else a[lo:hi] for a in aligned)
        for lo, hi in itertools.pairwise(bounds)
    ]


def _chunk_tasks(X: Any, chunk_fn: Callable[..., Any], aligned: Sequence[Any], name: str):
    dask = require_dask()
    X = row_chunks(X, name)
    blocks = X.to_delayed().reshape(-1)
    if len(blocks) == 0:
        raise ValueError(f"`{name}` has no observations (shape {X.shape})")
    extra = _aligned_slices(X, aligned, name)
    fn = dask.delayed(chunk_fn)
    return dask, [fn(b, *e) for b, e in zip(blocks, extra, strict=True)]


def tree_reduce_chunks(X: Any, chunk_fn: Callable[..., Any], combine: Callable[[Any, Any], Any],
                       *, name: str = "X", aligned: Sequence[Any] = ()) -> Any:
    """``combine``-reduce ``chunk_fn(block, *aligned_rows)`` over the row blocks of ``X``.

    Parameters
    ----------
    X : dask.array.Array of shape (N, ...)
        Chunked along the first axis (other axes are merged into one chunk if split).
    chunk_fn : callable
        Maps one NumPy block ``(n_i, ...)`` — and the matching rows of every array in
        ``aligned`` — to a small result (an array, a float, or a nested tuple of them). It
        runs where the block lives, so it must be picklable for ``dask.distributed`` (a
        module-level function or a ``functools.partial`` of one).
    combine : callable
        Adds two results (e.g. :func:`add_nested`).
    aligned : sequence of ndarray of shape (N, ...) or None
        Per-observation arrays held by the caller (weights, say); each task receives its rows,
        so ``N`` numbers travel per pass for each of them.

    Returns
    -------
    The combined result, computed with the active scheduler in one ``dask.compute``: the
    partial results are combined pairwise (depth ``log2`` of the number of chunks), so only
    results of the size of one ``chunk_fn`` output travel between workers.
    """
    dask, parts = _chunk_tasks(X, chunk_fn, aligned, name)
    comb = dask.delayed(combine)
    while len(parts) > 1:
        nxt = [comb(parts[i], parts[i + 1]) for i in range(0, len(parts) - 1, 2)]
        if len(parts) % 2:
            nxt.append(parts[-1])
        parts = nxt
    (out,) = dask.compute(parts[0])
    return out


def concat_chunks(X: Any, chunk_fn: Callable[..., np.ndarray], *, name: str = "X",
                  aligned: Sequence[Any] = ()) -> np.ndarray:
    """``np.concatenate`` of ``chunk_fn(block, *aligned_rows)`` over the row blocks of ``X``.

    For per-observation scalars (``chunk_fn`` returns shape ``(n_i,)``): ``N`` numbers come back
    to the caller, one pass over the data. Same conventions as :func:`tree_reduce_chunks`.
    """
    dask, parts = _chunk_tasks(X, chunk_fn, aligned, name)
    return np.concatenate(dask.compute(*parts))


def add_nested(a: Any, b: Any) -> Any:
    """Elementwise sum of two equally nested tuples of arrays / floats."""
    if isinstance(a, tuple):
        return tuple(add_nested(x, y) for x, y in zip(a, b, strict=True))
    return a + b
