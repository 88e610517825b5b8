r"""The seed's route to ``∂λ/∂A`` through a Kronecker-product SVD (a dense reference).

For ``λ = log(α + wᵀ(A⊗B)⁻¹w)``, ``w = y − μ``, ``S = A⊗B`` and ``β = α + wᵀS⁻¹w``, the seed
derives ``∂λ/∂S = −β⁻¹ S⁻ᵀ w wᵀ S⁻ᵀ``, writes that P×P matrix as a sum of Kronecker products
``Σ_k F_k ⊗ G_k`` (its Kronecker-product SVD, Van Loan–Pitsianis) and contracts with the other
factor: ``∂λ/∂A = −β⁻¹ Σ_k (B:G_k) F_k`` and ``∂λ/∂B = −β⁻¹ Σ_k (A:F_k) G_k``.

This module computes exactly that, literally: O(P³) per observation, two factors, ``P ≤``
:data:`KPSVD_ROUTE_MAX_P`. It serves :func:`kronkit.log_quad_grad` with ``method="kpsvd"``,
``kronkit demo`` (which prints the route's Kronecker rank and singular values) and the
derivation page (``docs/derivation.md``). Real work uses the closed form (``method="closed"``).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from .._checks import check_scalar
from .._kron import Kron, factorizations
from .._quad import checked_beta, prepare_observations, reduce_values, reduction_scale
from . import kpsvd

__all__ = ["KPSVD_ROUTE_MAX_P", "KPSVDRouteGrad", "kpsvd_route", "kpsvd_route_grads"]

KPSVD_ROUTE_MAX_P = 4096


class KPSVDRouteGrad(NamedTuple):
    """``λ`` and its gradients by the Kronecker-SVD route, for one observation.

    Attributes
    ----------
    value : float
        ``λ``.
    A, B : ndarray of shape (p, p) and (q, q)
        ``∂λ/∂A = −β⁻¹ Σ_k (B:G_k) F_k`` and ``∂λ/∂B = −β⁻¹ Σ_k (A:F_k) G_k``.
    y : ndarray of shape (P,)
        ``∂λ/∂y = β⁻¹ (S⁻¹ + S⁻ᵀ) w`` computed densely.
    singular_values : ndarray of shape (r,)
        Kronecker singular values of ``S⁻ᵀ w wᵀ S⁻ᵀ = Σ_k F_k ⊗ G_k``.
    beta : float
        ``β = α + q``.
    """

    value: float
    A: np.ndarray
    B: np.ndarray
    y: np.ndarray
    singular_values: np.ndarray
    beta: float

    @property
    def rank(self) -> int:
        """Number of Kronecker terms ``r``."""
        return int(self.singular_values.size)


def kpsvd_route(K: Any, y: Any, mu: Any = None, alpha: float = 1.0) -> KPSVDRouteGrad:
    r"""The Kronecker-SVD route for one observation ``y`` of shape (P,) and two factors.

    Forms ``X = S⁻ᵀ w wᵀ S⁻ᵀ`` (P×P), takes its Kronecker-product SVD ``X = Σ_k F_k ⊗ G_k``
    through the Van Loan–Pitsianis rearrangement (:func:`kronkit.kpsvd`), and returns
    ``∂λ/∂A = −β⁻¹ Σ_k (B:G_k) F_k`` and ``∂λ/∂B = −β⁻¹ Σ_k (A:F_k) G_k`` with the singular
    values. Arguments as in :func:`kronkit.log_quad_grad`. O(P³); refuses ``P > 4096``.
    """
    K, W, _, single = prepare_observations(K, y, mu, "kpsvd_route")
    if not single:
        raise ValueError(f"`y` must be a single observation of shape ({K.shape[1]},), got {W.shape}")
    a = check_scalar(alpha, "alpha")
    factorizations(K, "kpsvd_route")  # consistent with solve: singular raises, ill warns
    return _route_one(K, W[0], a)


def _route_one(K: Kron, w: np.ndarray, alpha: float) -> KPSVDRouteGrad:
    if K.n_factors != 2:
        raise ValueError(
            f"the seed's Kronecker-SVD route needs exactly two factors, got {K.n_factors}; "
            "use method='closed'"
        )
    P = K.shape[0]
    if P > KPSVD_ROUTE_MAX_P:
        raise ValueError(
            f"the seed's Kronecker-SVD route forms a P×P matrix and refuses P > {KPSVD_ROUTE_MAX_P} "
            f"(got P = {P}, which would take {8 * P * P / 2**30:.1f} GiB); use method='closed'"
        )
    A, B = K.factors
    p, q = A.shape[0], B.shape[0]
    S = np.kron(A, B)
    try:
        z = np.linalg.solve(S, w)
        u = np.linalg.solve(S.T, w)
    except np.linalg.LinAlgError:
        factorizations(K, "kpsvd_route", warn=False)  # raises SingularFactorError naming it
        raise
    beta = float(checked_beta(np.array([w @ z]), alpha, w[None, :])[0])
    X = np.outer(u, z)  # S⁻ᵀ w wᵀ S⁻ᵀ = (S⁻ᵀw)(S⁻¹w)ᵀ
    res = kpsvd(X, ((p, p), (q, q)))
    F = res.s[:, None, None] * res.A
    G = res.B
    gA = -np.einsum("k,kij->ij", np.einsum("ab,kab->k", B, G), F) / beta
    gB = -np.einsum("k,kij->ij", np.einsum("ab,kab->k", A, F), G) / beta
    gy = (z + u) / beta
    return KPSVDRouteGrad(float(np.log(beta)), gA, gB, gy, np.asarray(res.s), beta)


def kpsvd_route_grads(K: Kron, W: np.ndarray, mua: np.ndarray | None, alpha: float,
                      reduce: Any, single: bool) -> tuple:
    """``log_quad_grad(..., method="kpsvd")`` on validated inputs: the route once per row of
    ``W = y − μ`` (shape (N, P), N ≥ 1), reduced like the closed form.

    Returns the fields of :class:`kronkit.LogQuadGrad`: ``(value, factors, y, mu, alpha)``.
    """
    factorizations(K, "log_quad_grad")  # consistent with solve: singular raises, ill warns
    routes = [_route_one(K, w, alpha) for w in W]
    lam = np.array([r.value for r in routes])
    gA = np.stack([r.A for r in routes])
    gB = np.stack([r.B for r in routes])
    gy = np.stack([r.y for r in routes])
    c = np.array([1.0 / r.beta for r in routes])
    if single:
        return float(lam[0]), (gA[0], gB[0]), gy[0], -gy[0], float(c[0])
    if reduce is None:
        return lam, (gA, gB), gy, -gy, c
    scale = reduction_scale(reduce, W.shape[0], single)
    g_mu = -gy * scale if (mua is not None and mua.ndim == 2) else -gy.sum(axis=0) * scale
    return (reduce_values(lam, reduce, single, scale), (gA.sum(0) * scale, gB.sum(0) * scale),
            gy * scale, g_mu, reduce_values(c, reduce, single, scale))
