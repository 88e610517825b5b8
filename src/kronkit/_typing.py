"""Type aliases of the public signatures: what a type checker (mypy, pyright) shows a user.

The package ships ``py.typed``, so these are part of what a user's checker sees: inputs are
``numpy.typing.ArrayLike`` (anything ``np.asarray`` accepts), outputs ``numpy.ndarray``,
``float`` or a result type (:class:`kronkit.LogQuadGrad`, :class:`kronkit.KPSVDResult`, ...).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, TypeAlias, Union

import numpy as np
from numpy.typing import ArrayLike

if TYPE_CHECKING:
    from ._kron import Kron
    from ._sum_kron import SumOfKron

__all__ = ["ArrayLike", "FloatOrArray", "KronLike", "ShapesLike"]

#: A Kronecker operator, the sequence of its factors ``(A1, ..., Ad)``, or a sum of Kronecker
#: products (the calculus functions accept one).
KronLike: TypeAlias = Union["Kron", "SumOfKron", Sequence[ArrayLike]]
#: A float for one observation, an ndarray of shape (N,) for a batch.
FloatOrArray: TypeAlias = float | np.ndarray
#: Factor shapes: ``((m1, n1), (m2, n2), ...)``; an int ``m`` means ``(m, m)``.
ShapesLike: TypeAlias = Sequence[int | tuple[int, int]]
