"""Argument checks of :class:`kronkit.KroneckerGP` (each error names the argument) and its
warning for hyperparameters fitted at a bound."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from ._checks import as_float, check_finite, check_scalar
from ._errors import ConvergenceWarning

__all__ = ["check_alpha", "check_axes", "check_grid_values", "check_kernels", "check_noise",
           "warn_at_bounds"]


def check_axes(axes: Any, n_axes: int, name: str, *, min_points: int) -> tuple[np.ndarray, ...]:
    """``axes`` as ``n_axes`` float arrays of shape (n_k, d_k) (copies; 1-D becomes (n_k, 1))."""
    if not isinstance(axes, (list, tuple)):
        raise TypeError(f"`{name}` must be a list of coordinate arrays, one per kernel "
                        f"(axis k of shape (n_k, d_k) or (n_k,)), got {type(axes).__name__}")
    if len(axes) != n_axes:
        raise ValueError(f"`{name}` has {len(axes)} axes but there are {n_axes} kernels "
                         "(one kernel per grid axis)")
    out = []
    for k, ax in enumerate(axes):
        arr = as_float(ax, f"{name}[{k}]", ndim=(1, 2), dtype=np.float64, copy=True)
        arr = arr.reshape(-1, 1) if arr.ndim == 1 else arr
        if arr.shape[0] < min_points or arr.shape[1] == 0:
            raise ValueError(f"`{name}[{k}]` must have at least {min_points} point(s) and one "
                             f"coordinate, got shape {arr.shape}")
        out.append(arr)
    return tuple(out)


def check_grid_values(Y: Any, dims: tuple[int, ...]) -> np.ndarray:
    """``Y`` as a float64 grid of shape ``dims`` (a copy), no NaN (missing cells) nor Inf."""
    arr = as_float(Y, "Y", dtype=np.float64, finite=False, copy=True)
    if arr.shape != dims:
        raise ValueError(f"`Y` must have the grid's shape {dims} (one entry per grid point, "
                         f"axis k of length n_k), got shape {arr.shape}")
    if np.isnan(arr).any():
        raise ValueError(f"`Y` has {int(np.isnan(arr).sum())} NaN entries: missing cells are "
                         "not supported yet; KroneckerGP needs every cell of the grid")
    check_finite(arr, "Y")
    return arr


def check_noise(noise: Any, noise_bounds: Any) -> tuple[float, np.ndarray | None]:
    """``(noise, log-bounds or None when fixed)``; ``noise > 0`` unless fixed (then ``≥ 0``)."""
    fixed = isinstance(noise_bounds, str)
    if fixed and noise_bounds != "fixed":
        raise ValueError(f"`noise_bounds` must be a pair (low, high) or \"fixed\", got "
                         f"{noise_bounds!r}")
    value = check_scalar(noise, "noise")
    if value < 0 or (value == 0 and not fixed):
        raise ValueError(f"`noise` must be > 0 (its log is a hyperparameter; use "
                         f"noise_bounds=\"fixed\" for noise=0), got {value}")
    if fixed:
        return value, None
    try:
        lo, hi = (check_scalar(b, "noise_bounds") for b in noise_bounds)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"`noise_bounds` must be a pair of finite positive numbers (low, high) "
                        f"or \"fixed\", got {noise_bounds!r}") from exc
    if not 0 < lo <= hi:
        raise ValueError(f"`noise_bounds` must satisfy 0 < low <= high, got {noise_bounds!r}")
    return value, np.log([lo, hi])


def check_kernels(kernels: Any) -> list[Any]:
    from sklearn.gaussian_process.kernels import Kernel

    if not isinstance(kernels, (list, tuple)) or not kernels:
        raise TypeError("`kernels` must be a non-empty list of scikit-learn kernels (one per "
                        f"grid axis), got {kernels!r}")
    for k, kern in enumerate(kernels):
        if not isinstance(kern, Kernel):
            raise TypeError(f"`kernels[{k}]` must be a sklearn.gaussian_process.kernels.Kernel,"
                            f" got {type(kern).__name__}")
    return list(kernels)


def check_alpha(alpha: Any) -> float:
    if np.ndim(alpha) != 0:
        raise TypeError("`alpha` must be a scalar (a per-cell alpha would break the Kronecker "
                        f"structure), got shape {np.shape(alpha)}")
    value = check_scalar(alpha, "alpha")
    if value < 0:
        raise ValueError(f"`alpha` must be >= 0, got {value}")
    return value


def warn_at_bounds(theta: np.ndarray, bounds: np.ndarray, names: Sequence[str]) -> None:
    """scikit-learn's warning when a fitted hyperparameter sits at one of its bounds."""
    for value, (lo, hi), name in zip(theta, bounds, names, strict=True):
        for bound, side, advice in ((lo, "lower", "Decreasing"), (hi, "upper", "Increasing")):
            if np.isclose(bound, value):
                warnings.warn(
                    f"The optimal value found for {name} is close to the specified {side} bound "
                    f"{math.exp(bound):.3g}. {advice} the bound and calling fit again may find a "
                    "better value.", ConvergenceWarning, stacklevel=4)
