"""The parameters of the Kronecker distributions, checked: the SPD scale, the location, the
degrees of freedom and the number of draws (:class:`kronkit.KronNormal`, :class:`kronkit.KronT`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ._checks import as_float, check_int
from ._errors import NotPositiveDefiniteError, SingularFactorError
from ._kron import Kron, as_kron, factorizations

__all__ = ["check_df", "location", "n_samples", "spd_scale"]


def spd_scale(scale: Any) -> Kron:
    """A Kron of symmetric positive definite, non-singular factors, or a typed error."""
    if isinstance(scale, np.ndarray):
        raise TypeError(
            f"`scale` must be a Kron or a sequence of factor matrices (A1, ..., Ad), got a single "
            f"ndarray of shape {scale.shape}; pass [A, B] (or Kron(A) for one factor)"
        )
    if isinstance(scale, (list, tuple)):
        for k, f in enumerate(scale):
            if not isinstance(f, Kron):
                as_float(f, f"scale[{k}]", ndim=2)
    K = as_kron(scale, "scale")
    for k, a in enumerate(K.factors):
        if a.shape[0] != a.shape[1]:
            raise ValueError(f"`scale[{k}]` (factor {k}) must be square, got shape {a.shape}")
    facs = factorizations(K, "a scale matrix", check=False)
    for f in facs:
        k = f.index
        if f.kind != "cholesky":
            why = "it is not symmetric" if not f.symmetric else "its Cholesky factorisation failed"
            raise NotPositiveDefiniteError(
                f"`scale[{k}]` (factor {k}) must be symmetric positive definite, but {why} "
                f"(shape {K.factors[k].shape})",
                factor=k,
            )
        try:
            f.check()
        except SingularFactorError as exc:
            raise SingularFactorError(
                f"`scale[{k}]` (factor {k}) is positive definite but singular to working "
                f"precision (reciprocal condition number {f.rcond:.3g})",
                factor=k,
                rcond=f.rcond,
            ) from exc
    return K


def location(loc: Any, name: str, dims: tuple[int, ...], dtype: Any) -> np.ndarray:
    """``loc`` (called ``name``) as a read-only flat copy of shape (P,), zeros for None; a
    ``(p1, ..., pd)`` tensor is accepted. ``dims``, ``dtype``: those of the scale."""
    P = math.prod(dims)
    if loc is None:
        out = np.zeros(P, dtype=dtype)
    else:
        arr = as_float(loc, name)
        if arr.shape not in ((P,), dims):
            raise ValueError(
                f"`{name}` must have shape ({P},) or {dims} (the factor sizes), got {arr.shape}"
            )
        out = np.array(arr.reshape(P), dtype=np.result_type(arr.dtype, dtype), copy=True)
    out.setflags(write=False)
    return out


def check_df(df: Any) -> float:
    """``df`` as a float in ``(0, ∞]`` (``np.inf`` is the Gaussian limit), or a typed error."""
    arr = np.asarray(df)
    if arr.ndim != 0 or arr.dtype.kind not in "biuf":
        raise TypeError(f"`df` must be a real scalar, got {df!r}")
    val = float(arr)
    if not val > 0:  # also NaN
        raise ValueError(f"`df` must be > 0 (np.inf for the Gaussian limit), got {val}")
    return val


def n_samples(size: Any) -> int | None:
    """``size`` of :meth:`rvs`: None (one draw, returned as a vector) or an int ``>= 0``."""
    return None if size is None else check_int(size, "size", min_value=0)
