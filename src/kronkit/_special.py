r"""Accurate pieces of the multivariate t log-density for every ``ν`` in ``(0, ∞]``.

The vec-form t of dimension ``P`` with ``ν`` degrees of freedom has (see :class:`kronkit.KronT`)

    log f(y) = N(ν, P) − ½ log det S + K(ν, P, δ),
    N(ν, P)    = lgamma((ν+P)/2) − lgamma(ν/2) − (P/2) log(νπ),
    K(ν, P, δ) = −((ν+P)/2) log(1 + δ/ν).

Written naively, ``N`` is a difference of two log-gamma values of size ``(ν/2) log(ν/2)`` whose
sum is only ``O(P log P)``: at ``ν = 1e16`` the rounding error of each term (≈ 1e17·eps) is
larger than the result. The functions here rewrite every quantity so that the large parts
cancel *analytically*; each is accurate to a few units of ``eps`` relative to the size of its
terms for ``ν`` from ``1e-2`` to ``1e300`` (and ``ν = ∞``, the Gaussian limit) and ``P`` up to
``1e7`` or more.

Derivation (``x = ν/2``, ``a = P/2``, ``u = a/x = P/ν``, ``t = δ/ν``). Stirling's series
``lgamma(z) = (z−½) log z − z + ½ log 2π + φ(z)`` and ``ψ(z) = log z − 1/(2z) − χ(z)`` with
remainders ``φ(z) = Σ B₂ₖ/(2k(2k−1) z^{2k−1})``, ``χ(z) = Σ B₂ₖ/(2k z^{2k})`` give

    G(x, a) := lgamma(x+a) − lgamma(x) − a log x
             = a·[(1+1/u) log1p(u) − 1] − ½ log1p(u) + φ(x+a) − φ(x),
    N = G − a log 2π,
    ∂N/∂ν = ½ [ψ(x+a) − ψ(x) − a/x] = ½ [log1p(u) − u + P/(ν(ν+P)) + χ(x) − χ(x+a)],

where ``(1+1/u) log1p(u) − 1 = u/2 − u²/6 + …`` and ``log1p(u) − u = −u²/2 + …`` are summed
as series for small ``u``. The remainder differences ``φ(x+a) − φ(x)`` and ``χ(x) − χ(x+a)``
are summed term by term as ``x^{1−2k}·expm1((1−2k) log1p(u))`` (no cancellation, no overflow)
when ``x ≥ 10``; below that ``φ`` and ``χ`` come from ``lgamma`` / ``digamma`` directly (their
values are O(1) there, so absolute accuracy is what matters and what they give).

The entropy is ``H = −N + ½ log det S + (x+a)(ψ(x+a) − ψ(x))``. The Gaussian entropy
``½ (P (1 + log 2π) + log det S)`` splits off exactly and the rest is

    E(ν, P) = H − H_normal = ½ (u + log1p(u)) + (x+a)(χ(x) − χ(x+a)) − (φ(x+a) − φ(x)) ≥ 0,

which is ``≈ P/ν`` for large ``ν`` and positive.

For the gradient in ``ν`` of the whole log-density the two parts cancel again (both are
``O(P²/ν²)`` while their sum is ``O(((δ−P)² − 2P)/ν²)``); with ``r = (P − δ)/(ν + δ)``

    ∂ log f/∂ν = ½ [log1p(r) − r + P/(ν(ν+P)) + χ(x) − χ(x+a)],

in which the remaining cancellation (between ``−r²/2`` and ``P/ν²``) is that of the function
itself. :func:`t_logpdf_dnu` evaluates that form; :func:`t_log_normalizer_dnu` and
:func:`t_log_kernel_dnu` give the two parts separately (each accurate on its own).

All functions take floats or arrays (broadcast against each other; ``P`` may be an int) and
return a NumPy float64 scalar or array. They do not validate: callers pass ``ν > 0`` (``np.inf``
allowed), ``P > 0`` and ``δ ≥ 0``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy.special import digamma, gammaln

__all__ = [
    "t_entropy_excess",
    "t_log_kernel",
    "t_log_kernel_dnu",
    "t_log_normalizer",
    "t_log_normalizer_dnu",
    "t_logpdf_dnu",
]

_LOG_2PI = math.log(2.0 * math.pi)
_HALF_LOG_2PI = 0.5 * _LOG_2PI

# Bernoulli numbers B_2 .. B_20.
_B2K = (
    1.0 / 6.0, -1.0 / 30.0, 1.0 / 42.0, -1.0 / 30.0, 5.0 / 66.0, -691.0 / 2730.0, 7.0 / 6.0,
    -3617.0 / 510.0, 43867.0 / 798.0, -174611.0 / 330.0,
)
# φ(z) = Σ_k _PHI[k-1] z^{1-2k};  χ(z) = Σ_k _CHI[k-1] z^{-2k}  (k = 1..10).
_PHI = tuple(b / ((2 * k) * (2 * k - 1)) for k, b in enumerate(_B2K, start=1))
_CHI = tuple(b / (2 * k) for k, b in enumerate(_B2K, start=1))
# Asymptotic series are used for z >= _ZMIN: the 10th term is below 3e-19 there.
_ZMIN = 10.0
# Power series in u (or r, t) are used for |u| < _SMALL (terms up to u^_NTERMS: < 1e-18).
_SMALL = 0.125
_NTERMS = 22


def _arr(x: Any) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def _out(x: np.ndarray) -> Any:
    return x[()] if x.ndim == 0 else x


# ---------------------------------------------------------------------------------------
# Series helpers (elementwise on float64 arrays)
# ---------------------------------------------------------------------------------------
def _f_over_u(u: np.ndarray, log1pu: np.ndarray) -> np.ndarray:
    """``((1+u) log1p(u) − u)/u = (1 + 1/u) log1p(u) − 1`` (→ 0 as u → 0), u ≥ 0."""
    out = np.empty_like(u)
    small = u < _SMALL
    us = u[small]
    # Σ_{k≥2} (−1)^k u^{k−1}/(k(k−1)), Horner from the top.
    acc = np.zeros_like(us)
    for k in range(_NTERMS, 1, -1):
        acc = acc * us + ((-1.0) ** k) / (k * (k - 1))
    out[small] = acc * us
    big = ~small
    ub = u[big]
    out[big] = (1.0 + 1.0 / ub) * log1pu[big] - 1.0
    return out


def _log1p_minus(r: np.ndarray, log1pr: np.ndarray) -> np.ndarray:
    """``log1p(r) − r`` for r > −1 (``log1pr``: an accurate log1p(r), used for |r| ≥ 1/8)."""
    out = np.empty_like(r)
    small = np.abs(r) < _SMALL
    rs = r[small]
    # Σ_{k≥2} (−1)^{k+1} r^k / k
    acc = np.zeros_like(rs)
    for k in range(_NTERMS, 1, -1):
        acc = acc * rs + ((-1.0) ** (k + 1)) / k
    out[small] = acc * rs * rs
    big = ~small
    out[big] = log1pr[big] - r[big]
    return out


def _phi_direct(z: np.ndarray) -> np.ndarray:
    """Stirling remainder ``φ(z) = lgamma(z) − (z−½) log z + z − ½ log 2π`` from lgamma."""
    return gammaln(z) - (z - 0.5) * np.log(z) + z - _HALF_LOG_2PI


def _phi_series(z: np.ndarray) -> np.ndarray:
    w = 1.0 / z
    w2 = w * w
    acc = np.zeros_like(z)
    for c in reversed(_PHI):
        acc = acc * w2 + c
    return acc * w


def _chi_direct(z: np.ndarray) -> np.ndarray:
    """``χ(z) = log z − 1/(2z) − ψ(z)`` from digamma."""
    return np.log(z) - 0.5 / z - digamma(z)


def _chi_series(z: np.ndarray) -> np.ndarray:
    w2 = 1.0 / (z * z)
    acc = np.zeros_like(z)
    for c in reversed(_CHI):
        acc = acc * w2 + c
    return acc * w2


def _remainder_diffs(x: np.ndarray, a: np.ndarray, log1pu: np.ndarray, u: np.ndarray):
    """``φ(x+a) − φ(x)``, ``χ(x) − χ(x+a)`` and ``(x+a)(χ(x) − χ(x+a))``, elementwise."""
    dphi = np.empty_like(x)
    dchi = np.empty_like(x)
    xdchi = np.empty_like(x)
    big = x >= _ZMIN
    if big.any():
        xb, Lb, ub = x[big], log1pu[big], u[big]
        winv = 1.0 / xb  # 0 for x = inf
        w2 = winv * winv
        p = np.zeros_like(xb)
        c = np.zeros_like(xb)
        pw = winv.copy()  # x^{1-2k}, starting at k = 1
        for k in range(1, len(_PHI) + 1):
            # x^{1−2k} [(1+u)^{1−2k} − 1]  and  x^{−2k} [1 − (1+u)^{−2k}]
            p += _PHI[k - 1] * pw * np.expm1((1 - 2 * k) * Lb)
            c += _CHI[k - 1] * (pw * winv) * (-np.expm1(-2 * k * Lb))
            pw = pw * w2
        dphi[big] = p
        dchi[big] = c
        # (x+a) x^{-2k}(...) = (1+u) x^{1-2k}(...): multiply the x^{-2k} sum by x(1+u) termwise
        xc = np.zeros_like(xb)
        pw = winv.copy()
        for k in range(1, len(_CHI) + 1):
            xc += _CHI[k - 1] * pw * (-np.expm1(-2 * k * Lb))
            pw = pw * w2
        xdchi[big] = (1.0 + ub) * xc
    small = ~big
    if small.any():
        xs, as_ = x[small], a[small]
        z = xs + as_
        zbig = z >= _ZMIN
        phi_z = np.where(zbig, _phi_series(np.where(zbig, z, _ZMIN)),
                         _phi_direct(np.where(zbig, 1.0, z)))
        chi_z = np.where(zbig, _chi_series(np.where(zbig, z, _ZMIN)),
                         _chi_direct(np.where(zbig, 1.0, z)))
        dphi[small] = phi_z - _phi_direct(xs)
        dc = _chi_direct(xs) - chi_z
        dchi[small] = dc
        xdchi[small] = z * dc
    return dphi, dchi, xdchi


def _xau(nu: Any, P: Any):
    nu_, P_ = np.broadcast_arrays(_arr(nu), _arr(P))
    x = 0.5 * nu_
    a = 0.5 * P_
    with np.errstate(divide="ignore", over="ignore"):
        u = a / x  # 0 for ν = ∞
    return np.array(x, dtype=np.float64), np.array(a, dtype=np.float64), u


# ---------------------------------------------------------------------------------------
# Public functions
# ---------------------------------------------------------------------------------------
def t_log_normalizer(nu: Any, P: Any) -> Any:
    """``lgamma((ν+P)/2) − lgamma(ν/2) − (P/2) log(νπ)``, accurate for ν in (0, ∞].

    Tends to ``−(P/2) log 2π`` (the Gaussian constant) as ν → ∞ and equals it at ``ν = inf``.
    """
    x, a, u = _xau(nu, P)
    L = np.log1p(u)
    dphi, _, _ = _remainder_diffs(x, a, L, u)
    G = a * _f_over_u(u, L) - 0.5 * L + dphi
    return _out(G - a * _LOG_2PI)


def t_log_normalizer_dnu(nu: Any, P: Any) -> Any:
    """``∂/∂ν`` of :func:`t_log_normalizer`: ``½ [ψ((ν+P)/2) − ψ(ν/2) − P/ν]`` (0 at ν = inf)."""
    x, a, u = _xau(nu, P)
    L = np.log1p(u)
    _, dchi, _ = _remainder_diffs(x, a, L, u)
    nu_ = 2.0 * x
    with np.errstate(over="ignore"):
        extra = u / (nu_ + 2.0 * a)  # P/(ν(ν+P))
    return _out(0.5 * (_log1p_minus(u, L) + extra + dchi))


def _log1p_t(nu: np.ndarray, delta: np.ndarray):
    """``t = δ/ν`` and ``log1p(t)``; where ``t`` overflows (tiny ν), ``log δ − log ν``."""
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        t = delta / nu
        L = np.log1p(t)
        over = np.isinf(t) & np.isfinite(delta) & np.isfinite(nu)
        if over.any():
            L = np.where(over, np.log(delta) - np.log(nu), L)
    return t, L


def t_log_kernel(nu: Any, P: Any, delta: Any) -> Any:
    """``−((ν+P)/2) log1p(δ/ν)``; ``−δ/2`` at ``ν = inf``."""
    nu_, P_, d_ = (np.array(v, dtype=np.float64) for v in np.broadcast_arrays(
        _arr(nu), _arr(P), _arr(delta)))
    t, L = _log1p_t(nu_, d_)
    out = np.empty_like(t)
    small = t <= 1.0
    # small t: −(δ/2)(1 + P/ν) · log1p(t)/t   (finite at ν = ∞);  large t: the plain form
    ts, Ls = t[small], L[small]
    ratio = np.ones_like(ts)
    pos = ts > 0
    ratio[pos] = Ls[pos] / ts[pos]
    out[small] = -0.5 * d_[small] * (1.0 + P_[small] / nu_[small]) * ratio
    big = ~small
    out[big] = -0.5 * (nu_[big] + P_[big]) * L[big]
    return _out(out)


def t_log_kernel_dnu(nu: Any, P: Any, delta: Any) -> Any:
    """``∂/∂ν`` of :func:`t_log_kernel`: ``½ [t/(1+t) − log1p(t)] + ½ P δ/(ν(ν+δ))``, t = δ/ν."""
    nu_, P_, d_ = (np.array(v, dtype=np.float64) for v in np.broadcast_arrays(
        _arr(nu), _arr(P), _arr(delta)))
    t, L = _log1p_t(nu_, d_)
    # t/(1+t) − log1p(t) = l(s) with s = −t/(1+t), log1p(s) = −log1p(t)
    with np.errstate(invalid="ignore"):
        s = np.where(np.isinf(t), -1.0, -t / (1.0 + t))
    h = _log1p_minus(s, -L)
    u = P_ / nu_
    return _out(0.5 * h - 0.5 * u * s)


def t_logpdf_dnu(nu: Any, P: Any, delta: Any) -> Any:
    """``∂/∂ν`` of the whole t log-density, ``t_log_normalizer_dnu + t_log_kernel_dnu``.

    Summed analytically: ``½ [log1p(r) − r + P/(ν(ν+P)) + χ(ν/2) − χ((ν+P)/2)]`` with
    ``r = (P−δ)/(ν+δ)``; the large ``O(P²/ν²)`` parts of the two terms never meet in floating
    point. 0 at ``ν = inf``.
    """
    nu_, P_, d_ = (np.array(v, dtype=np.float64) for v in np.broadcast_arrays(
        _arr(nu), _arr(P), _arr(delta)))
    x, a = 0.5 * nu_, 0.5 * P_
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        u = a / x
        L = np.log1p(u)
        _, dchi, _ = _remainder_diffs(x, a, L, u)
        fin = np.isfinite(nu_)
        den = nu_ + d_
        r = np.where(fin, (P_ - d_) / np.where(fin, den, 1.0), 0.0)
        # log(1 + r) = log((ν+P)/(ν+δ)), from the ratio (accurate also as r → −1)
        q = (nu_ + P_) / den
        ok = fin & np.isfinite(q) & (q > 0)
        log1pr = np.where(ok, np.log(np.where(ok, q, 1.0)), np.log1p(u) - np.log1p(d_ / nu_))
        extra = u / (nu_ + P_)
    return _out(0.5 * (_log1p_minus(r, log1pr) + extra + dchi))


def t_entropy_excess(nu: Any, P: Any) -> Any:
    """Entropy of the P-variate t (any scale) minus that of the Gaussian with the same scale.

    ``E = −N(ν, P) + ((ν+P)/2)(ψ((ν+P)/2) − ψ(ν/2)) − (P/2)(1 + log 2π)``, evaluated as
    ``½ (u + log1p(u)) + (x+a)(χ(x) − χ(x+a)) − (φ(x+a) − φ(x))`` (``u = P/ν``); ``≈ P/ν``
    for large ν, 0 at ``ν = inf``. The t entropy is ``½ (P (1 + log 2π) + log det S) + E``.
    """
    x, a, u = _xau(nu, P)
    L = np.log1p(u)
    dphi, _, xdchi = _remainder_diffs(x, a, L, u)
    return _out(0.5 * (u + L) + xdchi - dphi)
