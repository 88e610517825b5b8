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
from ._calculus import InvQuadGrad as InvQuadGrad
from ._calculus import LogQuadGrad as LogQuadGrad
from ._calculus import SeedRoute as SeedRoute
from ._calculus import inv_quad_grad as inv_quad_grad
from ._calculus import log_quad as log_quad
from ._calculus import log_quad_grad as log_quad_grad
from ._calculus import logdet_grad as logdet_grad
from ._calculus import seed_route as seed_route
from ._frobenius import frob as frob
from ._frobenius import partial_contraction as partial_contraction
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
    "InvQuadGrad",
    "KPSVDResult",
    "Kron",
    "LogQuadGrad",
    "NotPositiveDefiniteError",
    "SeedRoute",
    "SingularFactorError",
    "__version__",
    "frob",
    "inv_quad_grad",
    "kpsvd",
    "log_quad",
    "log_quad_grad",
    "logdet_grad",
    "partial_contraction",
    "rearrange",
    "seed_route",
    "unrearrange",
]
