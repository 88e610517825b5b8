"""Kronecker-product SVD and nearest Kronecker approximation (Van Loan–Pitsianis).

The names other modules of the package use; the public ones are re-exported by
``kronkit/__init__.py``.
"""

from .decompose import (
    KPSVDResult,
    NearestKronResult,
    kpsvd,
    kpsvd_samples,
    nearest_kron,
    rearrange,
    unrearrange,
)

__all__ = ["KPSVDResult", "NearestKronResult", "kpsvd", "kpsvd_samples", "nearest_kron",
           "rearrange", "unrearrange"]
