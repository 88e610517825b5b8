"""Kronecker-product SVD and nearest Kronecker approximation (Van Loan–Pitsianis).

The names other modules of the package use; the public ones are re-exported by
``kronkit/__init__.py``. One module per concept: :mod:`.rearrange` (``R(M)`` and the factor
shapes), :mod:`.bases` and :mod:`.structure` (the ``structure`` argument as a
:class:`~.structure.Structure`), :mod:`.operators` (``R(M)`` as LinearOperators),
:mod:`.svd` (the SVD engine), :mod:`.terms`, :mod:`.decompose` (:func:`kpsvd`,
:func:`kpsvd_samples`), :mod:`.nearest` and :mod:`.multi` (:func:`nearest_kron`),
:mod:`.results` (the result types).
"""

from .decompose import kpsvd, kpsvd_samples, kpsvd_samples_chunked
from .nearest import nearest_kron
from .rearrange import rearrange, unrearrange
from .results import KPSVDResult, NearestKronResult
from .svd import DEFAULT_TOL

__all__ = ["DEFAULT_TOL", "KPSVDResult", "NearestKronResult", "kpsvd", "kpsvd_samples",
           "kpsvd_samples_chunked", "nearest_kron", "rearrange", "unrearrange"]
