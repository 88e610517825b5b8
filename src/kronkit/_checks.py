"""Input validation shared by every public entry point.

Public functions validate once, here, and hand clean float arrays to private code.
Error messages name the argument and show what was expected and what was given.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

__all__ = [
    "DENSE_MAX_BYTES",
    "as_float",
    "check_dense_size",
    "check_finite",
    "check_int",
    "check_multiplier",
    "check_random_state",
    "check_scalar",
    "check_square",
    "float_dtype",
    "non_finite_error",
    "overflow_error",
    "sum_is_finite",
]

#: The largest dense array (in bytes) that kronkit allocates without being asked explicitly:
#: ``to_dense`` and every route that forms a P×P matrix refuse above it (pass ``max_bytes=`` to
#: those that take it to raise the limit for one call). 2 GiB = a 16 384 × 16 384 float64 matrix.
DENSE_MAX_BYTES = 2 * 1024**3


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
    when ``finite`` is true. A ``numpy.ma.MaskedArray`` with masked entries raises
    ``TypeError`` (its mask would otherwise be dropped silently); one without is accepted.
    The user's array is never modified: with ``copy=True`` a fresh array is returned,
    otherwise the result may share memory with ``x`` and must be treated as read-only by
    the caller.
    """
    if x is None:
        raise TypeError(f"`{name}` must be an array, got None")
    if isinstance(x, np.ma.MaskedArray):
        n_masked = int(np.count_nonzero(np.ma.getmaskarray(x)))
        if n_masked:
            raise TypeError(
                f"`{name}` is a masked array with {n_masked} masked entr"
                f"{'y' if n_masked == 1 else 'ies'}; kronkit does not drop masks silently: pass "
                f"a plain array (e.g. `{name}.filled(value)` or the observed cells only)"
            )
        x = np.ma.getdata(x)
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


def non_finite_error(name: str, bad: int) -> ValueError:
    """The ``ValueError`` for ``bad`` NaN/Inf entries in argument ``name`` (one wording for
    every back end and every chunked pass)."""
    return ValueError(f"`{name}` contains NaN or Inf ({bad} non-finite entr"
                      f"{'y' if bad == 1 else 'ies'})")


def sum_is_finite(a: np.ndarray) -> bool:
    """True if the sum of the real array ``a`` is finite — then so is every entry (one reduction,
    no temporary). False also when finite entries overflow the sum: callers that must not
    reject those look entry by entry then."""
    return math.isfinite(np.add.reduce(a, axis=None))


def check_finite(arr: np.ndarray, name: str) -> None:
    """Raise ``ValueError`` if ``arr`` holds NaN or Inf."""
    if not arr.size or (arr.dtype.kind == "f" and sum_is_finite(arr)):
        return
    if not np.isfinite(arr).all():
        bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
        raise non_finite_error(name, bad)


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


def check_multiplier(c: Any, op: str, cls: str) -> float:
    """``c`` in ``op {op} c`` as a finite real Python float, or a ``TypeError``/``ValueError``
    naming it (``cls`` is the operator's class name)."""
    if hasattr(c, "shape") and hasattr(c, "matvec"):
        raise TypeError(
            f"use `@` for products of {cls} operators (`*` and `/` take a real scalar)"
        )
    role = "divisor" if op == "/" else "multiplier"
    try:
        arr = np.asarray(c)
    except Exception:  # pragma: no cover - exotic objects
        arr = np.asarray(None, dtype=object)
    if arr.ndim != 0 or arr.dtype.kind not in "biuf":
        what = f"an array of shape {arr.shape}" if arr.ndim else repr(c)
        raise TypeError(
            f"the {role} in `{cls} {op} c` must be a real scalar, got {what}"
            + (" (complex scaling is not supported)" if arr.dtype.kind == "c" else "")
        )
    val = float(arr)
    if not np.isfinite(val):
        raise ValueError(f"the {role} in `{cls} {op} c` must be finite, got {val}")
    return val


def check_int(x: Any, name: str, *, min_value: int | None = None) -> int:
    """Return ``x`` as a Python int, or raise naming ``name``.

    ``TypeError`` for anything that is not an integer (``bool``, floats and strings included);
    ``ValueError`` when ``x < min_value``.
    """
    if isinstance(x, bool) or not isinstance(x, numbers.Integral):
        raise TypeError(f"`{name}` must be an int, got {x!r} ({type(x).__name__})")
    val = int(x)
    if min_value is not None and val < min_value:
        raise ValueError(f"`{name}` must be an int >= {min_value}, got {val}")
    return val


def check_choice(value: Any, name: str, choices: tuple[Any, ...], why: str = "") -> Any:
    """``value`` if it is one of ``choices`` (strings compared by equality, ``None``/bools by
    identity); otherwise ``ValueError`` naming ``name`` and listing the choices (``why`` is
    appended). Never compares arrays elementwise: an array is simply not a choice."""
    for c in choices:
        if value is c or (isinstance(value, str) and isinstance(c, str) and value == c):
            return c
    raise ValueError(f"`{name}` must be one of {choices}{why}, got {value!r}")


def check_random_state(random_state: Any, name: str = "random_state") -> np.random.Generator:
    """A ``numpy.random.Generator`` from ``None``, an int, a ``SeedSequence``, a
    ``BitGenerator``, a ``Generator`` (returned as is) or a legacy ``RandomState`` (its bit
    generator is used); anything else raises ``TypeError`` naming ``name``."""
    if isinstance(random_state, np.random.Generator):
        return random_state
    if isinstance(random_state, np.random.RandomState):
        return np.random.Generator(random_state._bit_generator)
    ok = random_state is None or isinstance(
        random_state, (np.random.SeedSequence, np.random.BitGenerator)
    ) or (isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool))
    if not ok:
        raise TypeError(
            f"`{name}` must be None, an int, a SeedSequence, a BitGenerator, a numpy Generator or "
            f"a RandomState, got {random_state!r} ({type(random_state).__name__})"
        )
    if isinstance(random_state, numbers.Integral) and random_state < 0:
        raise ValueError(f"`{name}` must be a non-negative int seed, got {random_state}")
    return np.random.default_rng(random_state)


def check_dense_size(shape: tuple[int, ...], dtype: Any, what: str,
                     max_bytes: int | None = None) -> None:
    """Refuse to allocate a dense array of ``shape`` above ``max_bytes`` (default
    :data:`DENSE_MAX_BYTES`) with a ``ValueError`` that says what was asked and how to proceed."""
    limit = DENSE_MAX_BYTES if max_bytes is None else int(max_bytes)
    n = 1
    for s in shape:
        n *= int(s)
    nbytes = n * np.dtype(dtype).itemsize
    if nbytes > limit:
        dims = " × ".join(str(int(s)) for s in shape)
        raise ValueError(
            f"{what} would allocate a dense {dims} array of {nbytes / 1024**3:.3g} GiB, above the "
            f"limit of {limit / 1024**3:.3g} GiB (kronkit.DENSE_MAX_BYTES, or `max_bytes=` where "
            "the function takes it); use the structured operations instead"
        )


def overflow_error(what: str, **inputs: Any) -> OverflowError:
    """An ``OverflowError`` for a computation on finite inputs whose result left the range.

    ``inputs`` maps argument names to arrays (or sequences of arrays, or ``None``); the message
    names each with the magnitude of its largest entry, so it is not mistaken for bad data.
    """
    parts = []
    for name, val in inputs.items():
        if val is None:
            continue
        arrs = val if isinstance(val, (list, tuple)) else [val]
        mags = [float(np.max(np.abs(a))) for a in arrs if np.size(a)]
        if mags:
            parts.append(f"`{name}` has entries up to {max(mags):.3g} in magnitude")
    detail = ("; ".join(parts) + "; ") if parts else ""
    return OverflowError(
        f"{what} overflowed the floating-point range although every input is finite "
        f"({detail}rescale the inputs)"
    )
