r"""scikit-learn estimators: :class:`SeparableCovariance` and :class:`KroneckerPCA`.

Both follow the scikit-learn covariance estimators (``EmpiricalCovariance``): ``__init__``
only stores keyword arguments, ``fit(X)`` returns ``self``, fitted attributes end in ``_``,
``score(X)`` is the mean log-likelihood. The numerical work is done by the pure functions
:func:`kronkit.separable_mle` and :func:`kronkit.kronecker_pca`.

Input. Observations are matrices: ``X`` of shape ``(N, p, q)``, or rows of length ``P = p·q``
(``X`` of shape ``(N, P)``) with the constructor parameter ``shape=(p, q)``;
``x = X_i.ravel()`` (row-major). A 2-D ``X`` without ``shape`` is a ValueError — never a silent
unstructured fit. ``shape=(-1, 1)`` (one entry inferred, as in ``np.reshape``) is the
unstructured covariance (``A`` is P×P, ``B = [[1]]``): what scikit-learn's generic
``check_estimator`` runs on. ``fit(X, shape=...)`` still works but is deprecated
(FutureWarning). After fitting, methods accept ``(n, p, q)`` or ``(n, P)``.

scikit-learn is needed (``pip install kronkit[sklearn]``); ``import kronkit`` works without it
and the classes raise ImportError when instantiated.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._checks import check_dense_size, check_finite
from .._dask import is_dask_array
from .._errors import NotPositiveDefiniteError
from .._kron import Kron
from .._samples import as_dask_samples, sample_shape
from .._sum_kron import SumOfKron
from .kpca import KroneckerPCAResult, kronecker_pca
from .missing import observed_logpdf, refuse_missing
from .separable import DEFAULT_MAX_ITER, DEFAULT_TOL, separable_mle

try:  # scikit-learn is optional for kronkit as a whole, required for these classes
    from sklearn.base import BaseEstimator as _BaseEstimator

    _SKLEARN_ERROR: ImportError | None = None
except ImportError as _exc:  # pragma: no cover - exercised only without scikit-learn
    _BaseEstimator = object  # type: ignore[assignment,misc]
    _SKLEARN_ERROR = _exc

__all__ = ["KroneckerPCA", "SeparableCovariance"]


def _require_sklearn() -> None:
    if _SKLEARN_ERROR is not None:  # pragma: no cover
        raise ImportError(
            "kronkit.SeparableCovariance and kronkit.KroneckerPCA need scikit-learn: "
            "pip install kronkit[sklearn]"
        ) from _SKLEARN_ERROR


def _check_finite_samples(X: Any, nan: str | None) -> None:
    """kronkit's own message for NaN/Inf in ``X`` (naming ``X``), before scikit-learn's.

    ``nan`` is ``"allow"`` (NaN marks a missing entry; Inf is still an error) or the name of
    the method that needs complete observations (refused by
    :func:`kronkit._estimators.missing.refuse_missing`, which says what to do).
    """
    import scipy.sparse

    if scipy.sparse.issparse(X):
        return  # validate_data refuses sparse input with its own message
    try:
        arr = np.asarray(X)
    except Exception:  # ragged lists and the like: validate_data reports them
        return
    if arr.dtype.kind in "fc":
        if nan != "allow":
            refuse_missing(arr, nan or "this method")
        check_finite(np.where(np.isnan(arr), 0.0, arr) if nan == "allow" else arr, "X")


class _MatrixSamplesMixin:
    """What both estimators share: parameters kept as given, and the validation of
    ``(N, p, q)`` / ``(N, P)`` samples (the shape rule of :func:`kronkit._samples.sample_shape`)
    through scikit-learn's ``validate_data``."""

    def _keep_params(self, params: dict[str, Any]) -> None:
        """Store ``__init__``'s keyword arguments unchanged (scikit-learn's rule: no validation
        in ``__init__``); ImportError without scikit-learn."""
        _require_sklearn()
        for name, value in params.items():
            if name != "self":
                setattr(self, name, value)

    shape: Any  # the constructor's parameter (both estimators have it)

    def _fit_samples(self, X: Any, shape: Any, nan: str | None = None) -> Any:
        """``fit``'s observations (N, p, q), with the shape of :meth:`_fit_shape` (``nan``: see
        :func:`_check_finite_samples`)."""
        return self._samples(X, self._fit_shape(shape), reset=True, nan=nan)

    def _fit_shape(self, shape: Any) -> Any:
        """The ``shape`` a fit uses: the constructor's, or (deprecated) ``fit``'s argument."""
        if shape is None:
            return self.shape
        import warnings

        warnings.warn(
            f"`shape` as an argument of {type(self).__name__}.fit is deprecated and will be "
            f"removed: give it to the constructor, {type(self).__name__}(shape={shape!r}) (or "
            f"est.set_params(shape={shape!r}))", FutureWarning, stacklevel=3)
        if self.shape is not None and tuple(self.shape) != tuple(shape):
            raise ValueError(f"`shape` {shape!r} given to fit differs from the constructor's "
                             f"shape={self.shape!r}; give it once, to the constructor")
        return shape

    def _samples(self, X: Any, shape: Any, *, reset: bool, nan: str | None = None) -> Any:
        """Observations (N, p, q) from ``X`` (N, p, q) or (N, P); ``fit`` (``reset``) records
        ``shape_``, the other methods check ``X`` against it. NaN: see
        :func:`_check_finite_samples`."""
        if not reset:  # scikit-learn's NotFittedError before anything else
            from sklearn.utils.validation import check_is_fitted

            check_is_fitted(self, "shape_")
        if is_dask_array(X):
            return self._dask_samples(X, shape, reset=reset)
        from sklearn.utils.validation import validate_data

        name = type(self).__name__
        _check_finite_samples(X, nan or (f"{name}.fit" if reset else f"{name}'s scoring"))
        arr_shape = None
        if getattr(X, "ndim", None) is None:
            X = np.asarray(X)
        if getattr(X, "ndim", None) == 3:
            X = np.asarray(X)
            arr_shape = tuple(int(v) for v in X.shape)
            X = X.reshape(X.shape[0], -1)
        X2 = validate_data(self, X, reset=reset, dtype=np.float64, ensure_min_samples=1,
                           ensure_all_finite="allow-nan" if nan == "allow" else True)
        if reset:
            self.shape_ = sample_shape(arr_shape or X2.shape, shape, "X")[1:]
        elif arr_shape is not None:
            self._check_observation_shape(arr_shape)
        return X2.reshape(X2.shape[0], *self.shape_)

    def _check_observation_shape(self, arr_shape: tuple[int, ...]) -> None:
        """``ValueError`` if observations (n, p', q') are not of the fitted shape (p, q)."""
        if tuple(arr_shape[1:]) != tuple(self.shape_):
            raise ValueError(f"`X` has observations of shape {tuple(arr_shape[1:])}, but the "
                             f"estimator was fitted with shape {tuple(self.shape_)}")

    def _dask_samples(self, X: Any, shape: Any, *, reset: bool) -> Any:
        """A dask array of observations, validated lazily: (N, p, q) chunked along N."""
        if reset:
            X3 = as_dask_samples(X, shape)
            _, p, q = (int(v) for v in X3.shape)
            self.shape_ = (p, q)
            self.n_features_in_ = self.shape_[0] * self.shape_[1]
            return X3
        p, q = self.shape_
        if X.ndim == 3:
            self._check_observation_shape(X.shape)
        if X.ndim == 2 and X.shape[1] != p * q:
            raise ValueError(f"`X` has {X.shape[1]} features, but the estimator was fitted with "
                             f"{p * q} = p·q features")
        return as_dask_samples(X, (p, q))


def _logpdf_block(W: np.ndarray, cov: SumOfKron) -> np.ndarray:
    """Gaussian log-density of the centred rows ``W`` (n, P) of one block."""
    return np.asarray(cov.logpdf(W)).reshape(W.shape[0]) if W.shape[0] else np.zeros(0)


def _inv_quad_block(W: np.ndarray, cov: SumOfKron) -> np.ndarray:
    """Squared Mahalanobis distances of the centred rows ``W`` (n, P) of one block."""
    return np.asarray(cov.inv_quad(W)).reshape(W.shape[0]) if W.shape[0] else np.zeros(0)


def _dense_inverse(cov: SumOfKron) -> np.ndarray:
    """``C⁻¹`` (P×P) of a positive definite sum of Kronecker products, by dense Cholesky."""
    from scipy.linalg import cho_factor, cho_solve

    if not cov.is_positive_definite:
        raise NotPositiveDefiniteError("`covariance_` is not positive definite, so it has no "
                                       "precision matrix (fewer terms or more data may help)")
    C = cov.to_dense()
    C = 0.5 * (C + C.T)
    return cho_solve(cho_factor(C, lower=True), np.eye(C.shape[0]))


class SeparableCovariance(_MatrixSamplesMixin, _BaseEstimator):
    r"""Maximum-likelihood separable covariance ``A⊗B`` (matrix normal, or vec-form t).

    Parameters
    ----------
    shape : (int, int), optional
        ``(p, q)``, the matrix shape of an observation, needed for 2-D ``X`` of shape (N, P)
        (``p·q = P``; one entry may be ``-1``, inferred as in ``np.reshape``); for 3-D ``X``
        of shape (N, p, q), if given, it must equal ``(p, q)``. ``(-1, 1)`` is the
        unstructured covariance; without ``shape`` a 2-D ``X`` is a ValueError.
    distribution : {"normal", "t"}, default="normal"
        ``"normal"``: ``vec X_i ~ N(vec M, A⊗B)`` fitted by the flip-flop algorithm.
        ``"t"``: the vec-form multivariate t with *scale* ``A⊗B`` and one weight per
        observation (``scipy.stats.multivariate_t(vec M, A⊗B, ν)``), fitted by ECME.
    df : float, optional
        Degrees of freedom ``ν`` for ``"t"``, held fixed; ``None`` estimates it.
    assume_centered : bool, default=False
        If true the location is zero and not estimated (e.g. data centred by group means).
    max_iter : int, default=500
        Maximum number of iterations.
    tol : float, default=1e-9
        Stop when the estimated distance to the maximum of the log-likelihood is at most
        ``tol·N·P`` (see :func:`kronkit.separable_mle`).
    gauge : {"trace", "unit", "balanced"}, default="trace"
        How the scale is split between the factors: ``tr(row_covariance_) = p``,
        ``row_covariance_[0, 0] = 1``, or equal Frobenius norms. ``covariance_`` does not
        depend on it.
    progress : bool, default=False
        Show a progress bar (rich) with the current log-likelihood.

    Attributes
    ----------
    location_ : ndarray of shape (p, q)
        ``M`` (the mean; for the t model the location, a weighted mean).
    covariance_ : Kron
        ``A⊗B``. For ``distribution="t"`` this is the **scale** matrix; the covariance of the
        fitted t is ``ν/(ν−2)·covariance_`` (:meth:`get_covariance`).
    precision_ : Kron
        ``A⁻¹⊗B⁻¹``, the inverse of ``covariance_``.
    row_covariance_ : ndarray of shape (p, p)
        ``A`` (row covariance), in the chosen gauge.
    column_covariance_ : ndarray of shape (q, q)
        ``B`` (column covariance), in the chosen gauge.
    df_ : float
        ``ν`` (``inf`` for the normal model).
    loglik_ : float
        Total log-likelihood ``Σ_i log f(x_i)`` on the training data at the fit (the
        observed-data log-likelihood when ``X`` had missing entries).
    loglik_history_ : ndarray of shape (n_iter_,)
        Log-likelihood after each iteration.
    n_iter_ : int
        Iterations performed.
    converged_ : bool
        Whether the fit is within ``tol·N·P`` of the maximum of the log-likelihood (otherwise
        a ``kronkit.ConvergenceWarning`` was issued).
    weights_ : ndarray of shape (N,)
        ``(ν+P)/(ν+δ_i)`` for the training observations (ones for the normal model; NaN for
        observations dropped because every entry was missing).
    shape_ : tuple (p, q)
        Observation shape.
    n_features_in_ : int
        ``P = p·q``.

    Notes
    -----
    Existence: the Gaussian MLE needs ``N > max(p/q, q/p) + 1`` (``N > max(p/q, q/p)`` with
    ``assume_centered``), otherwise ``fit`` raises ValueError; it is unique for
    ``N > max(p, q) + 1``. Non-convergence warns :class:`kronkit.ConvergenceWarning` (a
    ``UserWarning``; it is not scikit-learn's ``ConvergenceWarning`` class). An iterate that
    becomes numerically singular raises :class:`kronkit.SingularFactorError`. Methods other
    than ``fit`` raise scikit-learn's ``NotFittedError`` before ``fit``; a fitted estimator
    holds no lazily built state of its own and may be shared across threads.
    Cost per iteration ``O(N·p·q·(p+q))``; see :func:`kronkit.separable_mle`.

    Examples
    --------
    >>> import numpy as np, kronkit
    >>> X = np.random.default_rng(0).standard_normal((100, 3, 4))
    >>> est = kronkit.SeparableCovariance().fit(X)
    >>> est.row_covariance_.shape, est.column_covariance_.shape
    ((3, 3), (4, 4))
    >>> est = kronkit.SeparableCovariance(shape=(3, 4)).fit(X.reshape(100, 12))  # rows
    >>> mn = est.to_matrix_normal()  # scipy.stats.matrix_normal(location_, A, B)
    >>> bool(np.isclose(mn.logpdf(X[0]), est.score_samples(X[:1])[0]))
    True
    """

    def __init__(self, *, shape: tuple[int, int] | None = None, distribution: str = "normal",
                 df: float | None = None, assume_centered: bool = False,
                 max_iter: int = DEFAULT_MAX_ITER, tol: float = DEFAULT_TOL,
                 gauge: str = "trace", progress: bool = False):
        self._keep_params(locals())

    def __sklearn_tags__(self) -> Any:
        """scikit-learn's tags: NaN in ``X`` is allowed (a missing entry, fitted by EM)."""
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        return tags

    def fit(self, X: Any, y: Any = None, shape: Any = None) -> SeparableCovariance:
        """Fit ``A⊗B`` (and the location, and ``ν`` for the t model) by maximum likelihood.

        Parameters
        ----------
        X : array_like of shape (N, p, q), or (N, P)
            Observations. 2-D ``X`` needs the constructor's ``shape=(p, q)`` (ValueError
            without it).
            A ``dask.array`` chunked along N is fitted chunk by chunk where the chunks live
            (see :func:`kronkit.separable_mle` and ``docs/dask.md``); nothing of the size of
            ``X`` is gathered. NaN entries of an in-memory ``X`` are missing cells, fitted by
            EM on the observed-data likelihood (:func:`kronkit.separable_mle`, "Missing
            entries"); Inf is a ValueError.
        y : ignored
        shape : (int, int), optional
            Deprecated (FutureWarning): give ``shape`` to the constructor.

        Returns
        -------
        self
        """
        X3 = self._fit_samples(X, shape, nan="allow")
        res = separable_mle(
            X3, distribution=self.distribution, df=self.df,
            assume_centered=self.assume_centered, max_iter=self.max_iter, tol=self.tol,
            gauge=self.gauge, progress=self.progress,
        )
        self.location_ = res.location
        self.row_covariance_ = res.row_covariance
        self.column_covariance_ = res.column_covariance
        self.covariance_ = res.covariance
        self.precision_ = self.covariance_.inv()
        self.df_ = res.df
        self.loglik_ = res.loglik
        self.loglik_history_ = res.loglik_history
        self.n_iter_ = res.n_iter
        self.converged_ = res.converged
        self.weights_ = res.weights
        return self

    # -- the fitted distribution --------------------------------------------------------
    def _distribution(self) -> Any:
        from sklearn.utils.validation import check_is_fitted

        from .._distributions import KronNormal, KronT

        check_is_fitted(self, "covariance_")
        loc = self.location_.ravel()
        if np.isinf(self.df_):
            return KronNormal(loc, self.covariance_)
        return KronT(loc, self.covariance_, self.df_)

    def get_covariance(self) -> Kron:
        """The covariance of the fitted distribution, as a :class:`~kronkit.Kron`.

        ``covariance_`` for the normal model; ``ν/(ν−2)·covariance_`` for the t model, which
        needs ``ν > 2`` (ValueError otherwise: the covariance is infinite or undefined).
        """
        return self._distribution().cov

    def get_precision(self) -> Kron:
        """The inverse of :meth:`get_covariance`, as a :class:`~kronkit.Kron` ``A⁻¹⊗B⁻¹``.

        ``precision_`` for the normal model (as ``sklearn.covariance.EmpiricalCovariance.
        get_precision``); ``(ν−2)/ν·precision_`` for the t model (``ν > 2``, ValueError
        otherwise). A Kron: ``@``, ``solve``, ``to_dense()`` (``np.asarray`` gives the dense
        P×P matrix); nothing P×P is formed here. Cost O(p³ + q³).
        """
        return self.get_covariance().inv()

    def to_matrix_normal(self) -> Any:
        """The fitted normal model as ``scipy.stats.matrix_normal(location_, A, B)``.

        ``matrix_normal(mean=M, rowcov=A, colcov=B)`` is the law of ``X_i`` (p, q) whose
        row-major ``X_i.ravel()`` has covariance ``A⊗B``, so its ``logpdf`` of an observation
        (p, q) equals :meth:`score_samples`. ValueError for ``distribution="t"`` (not a matrix
        normal: use ``kronkit.KronT(est.location_, est.covariance_, est.df_)``).
        """
        dist = self._distribution()
        if not np.isinf(self.df_):
            raise ValueError(
                "to_matrix_normal needs a normal fit; this estimator fitted the vec-form t "
                "(distribution='t'), which is not a matrix normal: use kronkit.KronT("
                "est.location_, est.covariance_, est.df_), or .to_multivariate_t() on it")
        return dist.to_matrix_normal()

    def logpdf(self, X: Any) -> np.ndarray:
        """Log-density of each observation under the fitted model, shape (n,).

        ``X`` of shape (n, p, q) or (n, P). Normal: ``−½(P log 2π + log det(A⊗B) + δ)``; t:
        the vec-form t log-density (see :class:`kronkit.KronT`). Cost O(n·P·(p+q)). A dask
        ``X`` gives a lazy dask array (n,). NaN entries of an in-memory ``X`` are missing
        cells: the log-density of the observed entries ``x_{i,O}`` under the observed block
        of the fitted model (0 for an observation with nothing observed), from the same
        complementary-block identities as the fit.
        """
        X3 = self._samples(X, None, reset=False, nan="allow")
        if self._incomplete(X3):
            return self._observed(X3)[0]
        return self._distribution().logpdf(X3.reshape(X3.shape[0], -1))

    @staticmethod
    def _incomplete(X3: Any) -> bool:
        """Whether in-memory observations hold NaN (missing entries)."""
        return not is_dask_array(X3) and bool(np.isnan(X3).any())

    def _observed(self, X3: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Observed-data log-densities and squared distances of observations with NaN."""
        return observed_logpdf(X3, np.asarray(self.location_, dtype=np.float64),
                               np.asarray(self.row_covariance_, dtype=np.float64),
                               np.asarray(self.column_covariance_, dtype=np.float64),
                               float(self.df_))

    def score_samples(self, X: Any) -> np.ndarray:
        """Same as :meth:`logpdf` (the scikit-learn name)."""
        return self.logpdf(X)

    def score(self, X: Any, y: Any = None) -> float:
        """Mean log-likelihood of ``X`` under the fitted model, ``mean(logpdf(X))``."""
        return float(np.mean(self.logpdf(X)))

    def mahalanobis(self, X: Any) -> np.ndarray:
        """**Squared** Mahalanobis distances ``δ_i = (x_i − m)ᵀ(A⊗B)⁻¹(x_i − m)``, shape (n,).

        Squared, like ``sklearn.covariance.EmpiricalCovariance.mahalanobis`` and every
        ``mahalanobis`` in kronkit (:meth:`kronkit.KronNormal.mahalanobis`); measured against
        ``covariance_`` (the scale matrix for the t model). Cost O(n·P·(p+q)). With NaN
        entries (missing cells): ``x_Oᵀ (A⊗B)_OO⁻¹ x_O`` over the observed entries.
        """
        X3 = self._samples(X, None, reset=False, nan="allow")
        if self._incomplete(X3):
            return self._observed(X3)[1]
        d = self._distribution().mahalanobis(X3.reshape(X3.shape[0], -1))
        return d if is_dask_array(d) else np.asarray(d)


class KroneckerPCA(_MatrixSamplesMixin, _BaseEstimator):
    r"""Kronecker PCA: the sample covariance approximated by ``Σ_{k≤r} A_k⊗B_k``.

    Parameters
    ----------
    n_terms : int, default=1
        ``r``, the number of Kronecker terms (``≤ min(p², q²)``).
    shape : (int, int), optional
        ``(p, q)`` for 2-D ``X`` of shape (N, P) (see :class:`SeparableCovariance`).
    shrinkage : float, optional
        Soft threshold ``τ`` on the Kronecker singular values, ``σ̃_k = max(σ_k − τ, 0)``.
    assume_centered : bool, default=False
        If true the mean is zero; otherwise the sample mean is subtracted.

    Attributes
    ----------
    covariance_ : SumOfKron
        ``Σ_k σ̃_k A_k⊗B_k`` (``matvec``/``@``, ``to_dense``, ``logdet``, ``inv_quad``).
    singular_values_ : ndarray of shape (n_terms,)
        Kronecker singular values ``σ_k`` of the sample covariance (before shrinkage).
    explained_energy_ : ndarray of shape (n_terms,) or None
        Cumulative ``Σ_{j≤k} σ_j² / ‖S‖_F²`` — the curve for choosing ``r``. ``None`` for a
        dask ``X`` with ``P > 1024`` (``‖S‖_F`` would need P×P partial sums per chunk).
    total_energy_ : float or None
        ``‖S‖_F²`` of the sample covariance ``S`` (``None`` as above).
    n_terms_ : int
        Terms kept after shrinkage.
    location_ : ndarray of shape (p, q)
    shape_ : tuple (p, q)
    n_features_in_ : int

    Notes
    -----
    The KPSVD is computed matrix-free by :func:`kronkit.kpsvd_samples` (never forming the
    P×P covariance). :meth:`score` is the Gaussian log-likelihood under ``covariance_``; it
    needs ``covariance_`` positive definite (NotPositiveDefiniteError otherwise — possible
    when ``N`` is small or ``r`` is large, because truncation does not preserve
    definiteness) and, for ``r ≥ 3`` terms, ``P ≤ 4096`` (it factorises the dense matrix);
    ``r ≤ 2`` is structured, O(p³ + q³ + n·P·(p+q)).
    """

    def __init__(self, n_terms: int = 1, *, shape: tuple[int, int] | None = None,
                 shrinkage: float | None = None, assume_centered: bool = False):
        self._keep_params(locals())

    def fit(self, X: Any, y: Any = None, shape: Any = None) -> KroneckerPCA:
        """Compute the ``r``-term Kronecker approximation of the sample covariance of ``X``.

        Parameters
        ----------
        X : array_like of shape (N, p, q), or (N, P) with the constructor's ``shape=(p, q)``
            A ``dask.array`` chunked along N is processed where its chunks live (see
            :func:`kronkit.kronecker_pca`).
        y : ignored
        shape : (int, int), optional
            Deprecated: ``KroneckerPCA(shape=...)`` (FutureWarning).

        Returns
        -------
        self
        """
        X3 = self._fit_samples(X, shape)
        res: KroneckerPCAResult = kronecker_pca(
            X3, self.n_terms, shrinkage=self.shrinkage, assume_centered=self.assume_centered)
        self.covariance_: SumOfKron = res.covariance
        self.singular_values_ = res.singular_values
        self.explained_energy_ = res.explained_energy
        self.total_energy_ = res.total_energy
        self.n_terms_ = res.covariance.n_terms
        self.location_ = res.location
        return self

    def score_samples(self, X: Any) -> np.ndarray:
        """Gaussian log-density of each observation under ``N(location_, covariance_)``.

        A dask ``X`` gives a lazy dask array (n,).
        """
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(self, "covariance_")
        X3 = self._samples(X, None, reset=False)
        W = (X3 - self.location_).reshape(X3.shape[0], -1)
        if is_dask_array(W):  # lazy, one block at a time where the blocks live
            return W.map_blocks(_logpdf_block, self.covariance_, drop_axis=1, dtype=np.float64)
        return np.asarray(self.covariance_.logpdf(W))

    def score(self, X: Any, y: Any = None) -> float:
        """Mean Gaussian log-likelihood of ``X`` under ``N(location_, covariance_)``."""
        return float(np.mean(self.score_samples(X)))

    def mahalanobis(self, X: Any) -> np.ndarray:
        """**Squared** Mahalanobis distances ``(x_i − m)ᵀ C⁻¹ (x_i − m)`` to ``covariance_``
        ``C``, shape (n,) (as ``sklearn.covariance.EmpiricalCovariance.mahalanobis``).

        Needs ``C`` positive definite (NotPositiveDefiniteError otherwise; see Notes).
        """
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(self, "covariance_")
        X3 = self._samples(X, None, reset=False)
        W = (X3 - self.location_).reshape(X3.shape[0], -1)
        if is_dask_array(W):
            return W.map_blocks(_inv_quad_block, self.covariance_, drop_axis=1,
                                dtype=np.float64)
        return np.asarray(self.covariance_.inv_quad(W), dtype=np.float64).reshape(W.shape[0])

    def get_precision(self) -> np.ndarray:
        """The inverse of ``covariance_``, a dense ndarray of shape (P, P).

        The inverse of a sum of Kronecker products is not one, so it is formed densely:
        ``O(P³)``, refused (ValueError) above ``kronkit.DENSE_MAX_BYTES``;
        NotPositiveDefiniteError if ``covariance_`` is not positive definite.
        """
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(self, "covariance_")
        P = self.covariance_.shape[0]
        check_dense_size((P, P), np.float64, "KroneckerPCA.get_precision")
        return _dense_inverse(self.covariance_)
