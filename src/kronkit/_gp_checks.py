"""Argument checks of :class:`kronkit.KroneckerGP` (each error names the argument) and its
warning for hyperparameters fitted at a bound."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from ._cell_ops import LOGDET_MAX_CELLS
from ._checks import as_float, check_finite, check_scalar
from ._errors import ConvergenceWarning
from ._gp_dense import DENSE_MAX_OBS

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


def check_grid_values(Y: Any, dims: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray | None]:
    """``(Y, observed)``: ``Y`` as a float64 grid of shape ``dims`` (a copy) and the boolean grid
    of its observed cells (``None`` when every cell is observed). NaN marks a missing cell;
    Inf is an error, and so is a grid with nothing observed."""
    arr = as_float(Y, "Y", dtype=np.float64, finite=False, copy=True)
    if arr.shape != dims:
        raise ValueError(f"`Y` must have the grid's shape {dims} (one entry per grid point, "
                         f"axis k of length n_k), got shape {arr.shape}")
    missing = np.isnan(arr)
    if not missing.any():
        check_finite(arr, "Y")
        return arr, None
    if missing.all():
        raise ValueError(f"`Y` is NaN in all of its {arr.size} cells: nothing is observed "
                         "(NaN marks a missing cell)")
    n_missing = int(missing.sum())
    n_obs = arr.size - n_missing
    if n_missing > LOGDET_MAX_CELLS and n_obs > DENSE_MAX_OBS:
        raise ValueError(
            f"`Y` has {n_missing} missing (NaN) cells and {n_obs} observed ones: the exact "
            f"log-marginal likelihood needs the k×k capacitance matrix of the missing cells (up "
            f"to k = {LOGDET_MAX_CELLS}) or the dense n×n block of the observed ones (up to "
            f"n = {DENSE_MAX_OBS}); fit a subgrid that holds the observed cells more densely")
    if np.isinf(arr).any():
        raise ValueError(f"`Y` contains Inf in {int(np.isinf(arr).sum())} cells (NaN marks a "
                         "missing cell; Inf is not a value)")
    return arr, ~missing


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


def check_alpha(alpha: Any, dims: tuple[int, ...]) -> float | np.ndarray:
    """``alpha`` as a float ``≥ 0``, or a grid of shape ``dims`` (a copy) of finite values ``≥ 0``
    (known per-cell noise variances)."""
    if np.ndim(alpha) == 0:
        value = check_scalar(alpha, "alpha")
        if value < 0:
            raise ValueError(f"`alpha` must be >= 0, got {value}")
        return value
    arr = as_float(alpha, "alpha", dtype=np.float64, finite=False, copy=True)
    if arr.shape != dims:
        raise ValueError(f"`alpha` must be a scalar or an array of the grid's shape {dims} "
                         f"(one noise variance per cell), got shape {arr.shape}")
    check_finite(arr, "alpha")
    if np.any(arr < 0):
        raise ValueError(f"`alpha` must be >= 0 (variances), got min {float(arr.min()):.6g}")
    return arr


def warn_at_bounds(theta: np.ndarray, bounds: np.ndarray, names: Sequence[str]) -> None:
    """scikit-learn's warning when a fitted hyperparameter sits at one of its bounds."""
    for value, (lo, hi), name in zip(theta, bounds, names, strict=True):
        for bound, side, advice in ((lo, "lower", "Decreasing"), (hi, "upper", "Increasing")):
            if np.isclose(bound, value):
                warnings.warn(
                    f"The optimal value found for {name} is close to the specified {side} bound "
                    f"{math.exp(bound):.3g}. {advice} the bound and calling fit again may find a "
                    "better value.", ConvergenceWarning, stacklevel=4)
