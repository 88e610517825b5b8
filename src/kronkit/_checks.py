"""Input validation shared by every public entry point.

Public functions validate once, here, and hand clean float arrays to private code.
Error messages name the argument and show what was expected and what was given.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["as_float", "check_finite", "check_square", "float_dtype"]


def float_dtype(*arrays: np.ndarray) -> np.dtype:
    """Common floating dtype of real arrays: float32 only if every input is float32."""
    kinds = [np.asarray(a).dtype for a in arrays]
    if kinds and all(k == np.float32 for k in kinds):
        return np.dtype(np.float32)
    return np.dtype(np.float64)


def as_float(
    x: Any,
    name: str,
    *,
    ndim: int | tuple[int, ...] | None = None,
    min_ndim: int | None = None,
    finite: bool = True,
    dtype: np.dtype | type | None = None,
    copy: bool = False,
) -> np.ndarray:
    """Return ``x`` as a real floating array, or raise an error naming ``name``.

    Integers and booleans become float64; float32 stays float32 unless ``dtype`` is given.
    Complex input raises ``TypeError`` (not supported yet); NaN or Inf raises ``ValueError``
    when ``finite`` is true. The user's array is never modified: with ``copy=True`` a fresh
    array is returned, otherwise the result may share memory with ``x`` and must be treated
    as read-only by the caller.
    """
    if x is None:
        raise TypeError(f"`{name}` must be an array, got None")
    try:
        arr = np.asarray(x)
    except Exception as exc:  # ragged lists and the like
        raise TypeError(f"`{name}` could not be converted to an array: {exc}") from exc
    kind = arr.dtype.kind
    if kind == "c":
        raise TypeError(
            f"`{name}` is complex ({arr.dtype}); kronkit supports real input here "
            "(complex support is limited to kpsvd/nearest_kron)"
        )
    if kind not in "biuf":
        raise TypeError(f"`{name}` must be a real numeric array, got dtype {arr.dtype}")
    if dtype is not None:
        target = np.dtype(dtype)
    elif kind == "f" and arr.dtype in (np.float32, np.float64):
        target = arr.dtype
    else:
        target = np.dtype(np.float64)
    arr = np.array(arr, dtype=target, copy=True) if copy else arr.astype(target, copy=False)
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else ndim
        if arr.ndim not in allowed:
            want = " or ".join(f"{k}-D" for k in allowed)
            raise ValueError(f"`{name}` must be {want}, got shape {arr.shape}")
    if min_ndim is not None and arr.ndim < min_ndim:
        raise ValueError(f"`{name}` must have at least {min_ndim} dimension(s), got shape {arr.shape}")
    if finite:
        check_finite(arr, name)
    return arr


def check_finite(arr: np.ndarray, name: str) -> None:
    """Raise ``ValueError`` if ``arr`` holds NaN or Inf."""
    if arr.size and not np.isfinite(arr).all():
        bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
        raise ValueError(f"`{name}` contains NaN or Inf ({bad} non-finite entr{'y' if bad == 1 else 'ies'})")


def check_square(arr: np.ndarray, name: str, why: str = "") -> None:
    """Raise ``ValueError`` if the 2-D array ``arr`` is not square."""
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1]:
        extra = f" ({why})" if why else ""
        raise ValueError(f"`{name}` must be square{extra}, got shape {arr.shape}")


def check_scalar(x: Any, name: str) -> float:
    """Return ``x`` as a finite Python float, or raise naming ``name``."""
    arr = np.asarray(x)
    if arr.dtype.kind == "c":
        raise TypeError(f"`{name}` must be real, got {x!r}")
    if arr.ndim != 0 or arr.dtype.kind not in "biuf":
        raise TypeError(f"`{name}` must be a real scalar, got {x!r}")
    val = float(arr)
    if not np.isfinite(val):
        raise ValueError(f"`{name}` must be finite, got {val}")
    return val
