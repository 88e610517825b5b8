"""Exception and warning types raised by kronkit.

Every error kronkit raises on bad input is one of the standard types (``ValueError``,
``TypeError``, ``numpy.linalg.LinAlgError``) or a subclass defined here, so
``except ValueError`` keeps working for callers who do not know kronkit.
"""

from __future__ import annotations

import os
import sys
import types
import warnings

import numpy as np
from scipy.linalg import LinAlgWarning

__all__ = [
    "ConvergenceWarning",
    "DomainError",
    "IllConditionedWarning",
    "NotPositiveDefiniteError",
    "SingularFactorError",
]


class SingularFactorError(np.linalg.LinAlgError):
    """A Kronecker factor is singular (or numerically singular) where an inverse is needed.

    Attributes
    ----------
    factor : int or None
        Index of the offending factor in ``Kron.factors`` (``None`` if not known).
    rcond : float or None
        Estimated reciprocal condition number of that factor.
    """

    def __init__(self, message: str, *, factor: int | None = None, rcond: float | None = None):
        super().__init__(message)
        self.factor = factor
        self.rcond = rcond


class NotPositiveDefiniteError(np.linalg.LinAlgError):
    """A factor that must be symmetric positive definite is not.

    Attributes
    ----------
    factor : int or None
        Index of the offending factor (``None`` if not known).
    """

    def __init__(self, message: str, *, factor: int | None = None):
        super().__init__(message)
        self.factor = factor


class DomainError(ValueError):
    """The function is undefined at the given point, e.g. ``log(beta)`` with ``beta <= 0``.

    Attributes
    ----------
    value : float or ndarray or None
        The offending value(s) (for :func:`kronkit.log_quad`, ``beta = alpha + q``).
    """

    def __init__(self, message: str, *, value: object = None):
        super().__init__(message)
        self.value = value


class UnsupportedSumError(ValueError):
    """A sum of Kronecker products has no exact (eigen) form and is too large for the dense one.

    The message names the axis that breaks the structure and lists the supported forms (see
    :class:`kronkit.SumOfKron`). A ``ValueError``.
    """


class ConvergenceWarning(UserWarning):
    """An iterative method stopped before meeting its tolerance."""


class StructureWarning(UserWarning):
    """A requested structure holds, but a better unstructured answer exists (and is reported).

    Raised by :func:`nearest_kron` with ``structure="symmetric"`` when the best Kronecker
    approximation of a symmetric ``M`` is skew ⊗ skew rather than symmetric ⊗ symmetric.
    """


class IllConditionedWarning(LinAlgWarning):
    """A factor is so ill-conditioned that results lose more than half of their digits.

    Issued when a factor's estimated reciprocal condition number is below ``sqrt(eps)`` (but
    above ``eps``, where :class:`SingularFactorError` is raised instead). A subclass of
    ``scipy.linalg.LinAlgWarning``, so filters written for SciPy apply.

    Attributes
    ----------
    factor : int or None
        Index of the offending factor.
    rcond : float or None
        Its estimated reciprocal condition number.
    """

    def __init__(self, message: str, *, factor: int | None = None, rcond: float | None = None):
        super().__init__(message)
        self.factor = factor
        self.rcond = rcond


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def warn_at_caller(warning: Warning, *skip_dirs: str) -> None:
    """Issue ``warning`` at the user's line: the first stack frame outside kronkit (and outside
    the directories ``skip_dirs``, e.g. JAX's or PyTorch's, whose frames sit between the user
    and kronkit's rules)."""
    skip = (_PACKAGE_DIR, *skip_dirs)
    frame: types.FrameType | None = sys._getframe(1)
    level = 2
    while frame is not None and frame.f_code.co_filename.startswith(skip):
        frame, level = frame.f_back, level + 1
    warnings.warn(warning, stacklevel=level)
