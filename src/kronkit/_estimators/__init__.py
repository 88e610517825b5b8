"""Estimators of separable (Kronecker) covariance: maximum likelihood (normal, t), the
separability test and Kronecker PCA. The scikit-learn classes live in ``sklearn.py`` and are
imported lazily by ``kronkit/__init__.py`` (scikit-learn is optional).
"""

from .kpca import KroneckerPCAResult, kronecker_pca
from .separability_test import SeparabilityTestResult, separability_test
from .separable import SeparableMLEResult, separable_mle

__all__ = ["KroneckerPCAResult", "SeparabilityTestResult", "SeparableMLEResult",
           "kronecker_pca", "separability_test", "separable_mle"]
