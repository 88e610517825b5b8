"""kronkit: Kronecker-structured matrix calculus, decomposition and estimation.

Convention (fixed): ``Kron(A, B)`` means ``np.kron(A, B)``; a vector of length ``p*q`` is the
row-major flattening of a ``(p, q)`` matrix ``Y``, so ``Kron(A, B) @ Y.ravel()`` equals
``(A @ Y @ B.T).ravel()``.
"""

__version__ = "0.1.0"

from typing import TYPE_CHECKING, Any

from ._calculus import inv_quad_grad as inv_quad_grad
from ._calculus import log_quad as log_quad
from ._calculus import log_quad_grad as log_quad_grad
from ._calculus import logdet_grad as logdet_grad
from ._cell_iter import LogdetEstimate as LogdetEstimate
from ._cell_ops import GridDiag as GridDiag
from ._cell_ops import KronPlusDiag as KronPlusDiag
from ._cell_ops import Restricted as Restricted
from ._checks import DENSE_MAX_BYTES as DENSE_MAX_BYTES
from ._distributions import KronNormal as KronNormal
from ._distributions import KronT as KronT
from ._errors import ConvergenceWarning as ConvergenceWarning
from ._errors import DomainError as DomainError
from ._errors import IllConditionedWarning as IllConditionedWarning
from ._errors import NotPositiveDefiniteError as NotPositiveDefiniteError
from ._errors import SingularFactorError as SingularFactorError
from ._errors import StructureWarning as StructureWarning
from ._errors import UnsupportedSumError as UnsupportedSumError
from ._estimators import KroneckerPCAResult as KroneckerPCAResult
from ._estimators import SeparabilityTestResult as SeparabilityTestResult
from ._estimators import SeparableMLEResult as SeparableMLEResult
from ._estimators import kronecker_pca as kronecker_pca
from ._estimators import separability_test as separability_test
from ._estimators import separable_mle as separable_mle
from ._frobenius import frob as frob
from ._frobenius import partial_contraction as partial_contraction
from ._grad_results import InvQuadGrad as InvQuadGrad
from ._grad_results import KronNormalGrad as KronNormalGrad
from ._grad_results import KronTGrad as KronTGrad
from ._grad_results import LogQuadGrad as LogQuadGrad
from ._grad_results import LogQuadHVP as LogQuadHVP
from ._hvp import log_quad_hvp as log_quad_hvp
from ._kpsvd import KPSVDResult as KPSVDResult
from ._kpsvd import NearestKronResult as NearestKronResult
from ._kpsvd import kpsvd as kpsvd
from ._kpsvd import kpsvd_samples as kpsvd_samples
from ._kpsvd import nearest_kron as nearest_kron
from ._kpsvd import rearrange as rearrange
from ._kpsvd import unrearrange as unrearrange
from ._kron import Kron as Kron
from ._sum_kron import SumOfKron as SumOfKron

# The scikit-learn estimators are imported on first use, so that ``import kronkit`` does not
# import scikit-learn (an optional dependency: ``pip install kronkit[sklearn]``).
if TYPE_CHECKING:  # type checkers see the classes; at run time they are imported on first use
    from ._estimators.sklearn import KroneckerPCA as KroneckerPCA
    from ._estimators.sklearn import SeparableCovariance as SeparableCovariance
    from ._gp import KroneckerGP as KroneckerGP

_LAZY = {"SeparableCovariance": "._estimators.sklearn", "KroneckerPCA": "._estimators.sklearn",
         "KroneckerGP": "._gp"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'kronkit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [  # noqa: RUF022 - plain sorted() order, checked by tests/test_package.py
    "ConvergenceWarning",
    "DENSE_MAX_BYTES",
    "DomainError",
    "GridDiag",
    "IllConditionedWarning",
    "InvQuadGrad",
    "KPSVDResult",
    "Kron",
    "KronNormal",
    "KronNormalGrad",
    "KronPlusDiag",
    "KronT",
    "KronTGrad",
    "KroneckerGP",
    "KroneckerPCA",
    "KroneckerPCAResult",
    "LogQuadGrad",
    "LogQuadHVP",
    "LogdetEstimate",
    "NearestKronResult",
    "NotPositiveDefiniteError",
    "Restricted",
    "SeparabilityTestResult",
    "SeparableCovariance",
    "SeparableMLEResult",
    "SingularFactorError",
    "StructureWarning",
    "SumOfKron",
    "UnsupportedSumError",
    "__version__",
    "frob",
    "inv_quad_grad",
    "kpsvd",
    "kpsvd_samples",
    "kronecker_pca",
    "log_quad",
    "log_quad_grad",
    "log_quad_hvp",
    "logdet_grad",
    "nearest_kron",
    "partial_contraction",
    "rearrange",
    "separability_test",
    "separable_mle",
    "unrearrange",
]
