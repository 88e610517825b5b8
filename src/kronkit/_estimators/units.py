"""Units and gauge of the separable fits: the data's row and column scales, and how the scale
of ``A⊗B`` is split between the factors when the fit is moved back to the data's units.

A fit runs on ``X_i / (r cᵀ)`` (:func:`unit_scales`), which makes it equivariant under
``X_i ↦ D1 X_i D2`` (diagonal ``D1``, ``D2``) and free of overflow for data in any units;
:func:`unscale_gauge` moves the factors back and applies the gauge (:func:`apply_gauge`) in
logarithms, so that only a result that is itself out of range overflows.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["apply_gauge", "unit_scales", "unscale_gauge"]


def unit_scales(T: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row and column scales ``r`` (p,), ``c`` (q,) from ``T = max_i |X_i|`` (p, q).

    ``log r_a + log c_j`` is the additive (two-way) fit of ``log T``: ``log r_a`` the mean of
    row ``a``, ``log c_j`` the column mean of what remains (zero entries of ``T`` ignored).
    ``X_i / (r cᵀ)`` is of order one — free of overflow (data near 1e200) and of condition
    numbers that only reflect units — and because the fit is exactly additive, data
    ``D1 X_i D2`` (diagonal ``D1``, ``D2``) give scales ``D1 r``, ``c D2`` up to a constant
    factor: the rescaled data, and so every iterate from the start ``B = I`` on, are the same
    up to rounding. Fits are equivariant under such rescalings.
    """
    with np.errstate(divide="ignore"):
        L = np.where(T > 0, np.log(np.where(T > 0, T, 1.0)), np.nan)
    ok = ~np.isnan(L)
    row = np.where(ok.any(axis=1), np.nansum(L, axis=1) / np.maximum(ok.sum(axis=1), 1), 0.0)
    R = np.where(ok, L - row[:, None], np.nan)
    col = np.where(ok.any(axis=0), np.nansum(R, axis=0) / np.maximum(ok.sum(axis=0), 1), 0.0)
    return np.exp(row), np.exp(col)


def apply_gauge(A: np.ndarray, B: np.ndarray, gauge: str) -> tuple[np.ndarray, np.ndarray]:
    """Split the scale: ``(A/c, c·B)`` with ``c`` chosen by the gauge (``A⊗B`` unchanged).

    ``"trace"``: ``c = tr(A)/p``; ``"unit"``: ``c = A[0, 0]``; ``"balanced"``:
    ``c = √(‖A‖_F/‖B‖_F)``.
    """
    if gauge == "trace":
        c = float(np.trace(A)) / A.shape[0]
    elif gauge == "unit":
        c = float(A[0, 0])
    else:  # balanced
        c = math.sqrt(float(np.linalg.norm(A)) / float(np.linalg.norm(B)))
    return A / c, B * c


def unscale_gauge(As: np.ndarray, Bs: np.ndarray, r: np.ndarray, c: np.ndarray,
                  gauge: str) -> tuple[np.ndarray, np.ndarray]:
    """``A = R As R``, ``B = C Bs C`` in ``gauge`` (``R = diag(r)``, ``C = diag(c)``), with the
    gauge constant found from logarithms so that only an unrepresentable result overflows."""
    sr, sc = float(np.max(r)), float(np.max(c))  # A = sr² A1, B = sc² B1
    A1 = As * (r / sr)[:, None] * (r / sr)[None, :]
    B1 = Bs * (c / sc)[:, None] * (c / sc)[None, :]
    A1, B1 = apply_gauge(A1, B1, gauge)  # A1⊗B1 = (As⊗Bs) rescaled / (sr·sc)²
    if gauge == "balanced":
        la = lb = math.log(sr) + math.log(sc)
    else:  # "trace", "unit": A is normalised, the whole scale goes to B
        la, lb = 0.0, 2.0 * (math.log(sr) + math.log(sc))
    return A1 * np.exp(la), B1 * np.exp(lb)  # inf (caught by the caller) if out of range
