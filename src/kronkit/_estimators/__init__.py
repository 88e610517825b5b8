"""Estimators of separable (Kronecker) covariance: maximum likelihood (normal, t), the
separability test and Kronecker PCA.

One module per concept:

- :mod:`.separable` — :func:`separable_mle` (options, result, the route), built from
  :mod:`.statistics` (the sample statistics, one engine over chunks: NumPy is one chunk,
  dask is reduced where its chunks live), :mod:`.cholesky` (factors of the iterates),
  :mod:`.normal` (the flip-flop; batched on rearranged covariances), :mod:`.student_t`
  (ECME and the ν-step), :mod:`.iteration` (the stopping rule, SQUAREM, the progress bar)
  and :mod:`.units` (the data's scales and the gauge); with missing entries (NaN)
  :mod:`.missing` (EM / ECME on the observed-data likelihood, and the refusal used by the
  estimators that need complete observations);
- :mod:`.separability_test` — :func:`separability_test`, with its null law in
  :mod:`.separability_null`;
- :mod:`.kpca` — :func:`kronecker_pca`;
- :mod:`.sklearn` — the scikit-learn classes, imported lazily by ``kronkit/__init__.py``
  (scikit-learn is optional).
"""

from .kpca import KroneckerPCAResult, kronecker_pca
from .separability_test import SeparabilityTestResult, separability_test
from .separable import GAUGES, SeparableMLEResult, separable_mle

__all__ = ["GAUGES", "KroneckerPCAResult", "SeparabilityTestResult", "SeparableMLEResult",
           "kronecker_pca", "separability_test", "separable_mle"]
