"""kronkit: Kronecker-structured matrix calculus, decomposition and estimation.

Convention (fixed): ``Kron(A, B)`` means ``np.kron(A, B)``; a vector of length ``p*q`` is the
row-major flattening of a ``(p, q)`` matrix ``Y``, so ``Kron(A, B) @ Y.ravel()`` equals
``(A @ Y @ B.T).ravel()``.
"""

__version__ = "0.1.0"

# --- foundation: operator, errors, Frobenius algebra, the seed function -----------------
from ._errors import ConvergenceWarning as ConvergenceWarning
from ._errors import DomainError as DomainError
from ._errors import NotPositiveDefiniteError as NotPositiveDefiniteError
from ._errors import SingularFactorError as SingularFactorError
from ._kron import Kron as Kron

# --- kpsvd (issue 3) ---------------------------------------------------------------------
from ._kpsvd import KPSVDResult as KPSVDResult
from ._kpsvd import kpsvd as kpsvd
from ._kpsvd import rearrange as rearrange
from ._kpsvd import unrearrange as unrearrange

# --- distributions and hvp (issue 4) ------------------------------------------------------

# --- estimators (issue 5) -----------------------------------------------------------------

__all__ = [
    "ConvergenceWarning",
    "DomainError",
    "KPSVDResult",
    "Kron",
    "NotPositiveDefiniteError",
    "SingularFactorError",
    "__version__",
    "kpsvd",
    "rearrange",
    "unrearrange",
]
