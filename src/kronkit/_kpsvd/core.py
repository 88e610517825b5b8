"""Transitional: the names callers imported from the former ``core`` module.

The content moved to :mod:`.rearrange`, :mod:`.bases`, :mod:`.operators` and :mod:`.svd`.
This module re-exports what code outside the package still imports from here
(``_estimators/kpca.py``: ``DEFAULT_TOL``; ``tests/test_dask.py``: ``ChunkedSamplesR``); it
goes once they import from :mod:`kronkit._kpsvd` / :mod:`kronkit._kpsvd.operators`.
"""

from .operators import ChunkedSamplesR, DenseR, LowRankR, OperatorR, ProjectedR, SamplesR
from .svd import DEFAULT_TOL

__all__ = ["DEFAULT_TOL", "ChunkedSamplesR", "DenseR", "LowRankR", "OperatorR", "ProjectedR",
           "SamplesR"]
