"""Observations as dask arrays: per-chunk statistics, reduced in a tree.

The work in kronkit is a sum over observations of small per-observation terms. For a
``dask.array`` of observations chunked along the first axis, each chunk is reduced where it
lives to a few p×p / q×q arrays and scalars, and the partial results are summed pairwise (a
tree), so only those small arrays travel. Whatever scheduler is active runs the graph: the
threaded default, ``dask.config.set(scheduler="synchronous")``, or a ``dask.distributed``
``Client`` (a ``LocalCluster`` or a real cluster's scheduler address).

dask is imported only when a dask array is passed (extra ``kronkit[dask]``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["is_dask_array", "tree_reduce_chunks"]


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
    """Rechunk so that only the first (observation) axis is split; return the array."""
    if X.ndim < 2:
        raise ValueError(f"`{name}` as a dask array must have shape (N, ...), got shape {X.shape}")
    if any(len(c) > 1 for c in X.chunks[1:]):
        X = X.rechunk({i: -1 for i in range(1, X.ndim)})
    return X


def tree_reduce_chunks(X: Any, chunk_fn: Callable[[Any], Any], combine: Callable[[Any, Any], Any],
                       *, name: str = "X") -> Any:
    """``combine``-reduce ``chunk_fn(block)`` over the row blocks of the dask array ``X``.

    ``chunk_fn`` maps one NumPy block (n_i, ...) to a small result; ``combine`` adds two results.
    The partial results are combined pairwise (depth log2 of the number of chunks) and the
    graph is computed once with the active scheduler. Returns the combined result.
    """
    dask = require_dask()
    X = row_chunks(X, name)
    blocks = X.to_delayed().reshape(-1)
    parts = [dask.delayed(chunk_fn)(b) for b in blocks]
    if not parts:
        raise ValueError(f"`{name}` has no observations")
    while len(parts) > 1:
        nxt = [dask.delayed(combine)(parts[i], parts[i + 1]) for i in range(0, len(parts) - 1, 2)]
        if len(parts) % 2:
            nxt.append(parts[-1])
        parts = nxt
    (out,) = dask.compute(parts[0])
    return out


def add_nested(a: Any, b: Any) -> Any:
    """Elementwise sum of two equally nested tuples of arrays / floats."""
    if isinstance(a, tuple):
        return tuple(add_nested(x, y) for x, y in zip(a, b, strict=True))
    return a + b
