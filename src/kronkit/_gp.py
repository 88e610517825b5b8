r"""Exact Gaussian process regression on a grid: :class:`KroneckerGP`.

A product kernel ``k(x, x') = Π_k k_k(x_k, x'_k)`` on the Cartesian grid ``X_1 × … × X_d``
gives the covariance ``K = K_1⊗…⊗K_d`` of ``Y.ravel()`` exactly (row-major order, the first
axis varying slowest). With noise, ``S = K + (noise + alpha)·I = (⊗V_k) diag(λ) (⊗V_k)ᵀ`` from
the eigendecompositions ``K_k = V_k diag(h_k) V_kᵀ`` (:meth:`kronkit.SumOfKron.eigen_form`),
``λ = h_1⊗…⊗h_d + noise + alpha``. Then, with ``u = (⊗V_k)ᵀ y`` and ``z = S⁻¹y``,

    LML = −½ Σ u²/λ − ½ Σ log λ − (P/2) log 2π
    ∂LML/∂K_k = ½ (partial contraction of zzᵀ with ⊗_{j≠k} K_j) − ½ V_k diag(g_k) V_kᵀ,
    g_k = Σ_{other modes} (Π_{j≠k} h_j)/λ,   ∂LML/∂θ = Σ_ij (∂LML/∂K_k)_ij (∂K_k/∂θ)_ij,
    ∂LML/∂log(noise) = noise · (½ zᵀz − ½ Σ 1/λ)

— O(Σ n_k³ + P·Σ n_k) per evaluation, against O(P³) for the dense Cholesky of scikit-learn's
``GaussianProcessRegressor`` with the same kernel on the P grid points.

Missing cells (NaN in ``Y``) and a per-cell ``alpha`` make the covariance of the observed
values the observed block of ``K + diag(noise + alpha)``: :mod:`kronkit._gp_cells`, exact by
the capacitance identities at O(P·k·(k + Σ n_k)) for ``k`` missing (or corrected) cells.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np

from ._checks import as_float, check_dense_size, check_int
from ._errors import ConvergenceWarning, NotPositiveDefiniteError
from ._estimators.iteration import ProgressBar
from ._gp_cells import cell_lml, explained_correction, fill_alpha
from ._gp_checks import (
    check_alpha,
    check_axes,
    check_grid_values,
    check_kernels,
    check_noise,
    warn_at_bounds,
)
from ._gp_predict import grid_mean_var, grid_points, rows_contract, tensor_rows_cov
from ._kron import Kron
from ._sum_kron import SumOfKron

try:  # scikit-learn is optional for kronkit as a whole, required here (the kernels)
    from sklearn.base import BaseEstimator as _BaseEstimator

    _SKLEARN_ERROR: ImportError | None = None
except ImportError as _exc:  # pragma: no cover - exercised only without scikit-learn
    _BaseEstimator = object  # type: ignore[assignment,misc]
    _SKLEARN_ERROR = _exc

__all__ = ["KroneckerGP"]

_LOG_2PI = math.log(2.0 * math.pi)


class _Posterior(NamedTuple):
    """What predictions need: the eigenvectors ``V_k``, ``1/λ`` and ``α̂ = u/λ`` (grid-shaped)."""

    V: tuple[np.ndarray, ...]
    inv_lam: np.ndarray
    alpha_hat: np.ndarray


def _lml(kernels: Sequence[Any], axes: Sequence[np.ndarray], y: np.ndarray, s: float,
         eval_gradient: bool) -> tuple[float, np.ndarray, Any, Any]:
    """``(LML, ∂LML/∂θ_kernels, ∂LML/∂s, posterior)`` of ``y`` (grid) under
    ``⊗k_k(X_k) + s·I``; ``NotPositiveDefiniteError`` if that is not positive definite."""
    if eval_gradient:
        pairs = [kern(X, eval_gradient=True) for kern, X in zip(kernels, axes, strict=True)]
        Ks, dKs = [K for K, _ in pairs], [dK for _, dK in pairs]
    else:
        Ks, dKs = [kern(X) for kern, X in zip(kernels, axes, strict=True)], []
    kron = Kron(*Ks)
    S = kron + s * Kron(*[np.eye(K.shape[0]) for K in Ks]) if s > 0 else SumOfKron([kron])
    E = S.eigen_form()
    lam = np.asarray(E.lam, dtype=np.float64).reshape(y.shape)
    # singular to working precision: eigh's error in λ is about (Σ n_k)·eps·max λ
    floor = sum(y.shape) * np.finfo(np.float64).eps * float(np.max(np.abs(lam)))
    if not float(np.min(lam)) > floor:
        raise NotPositiveDefiniteError(
            f"smallest eigenvalue {float(np.min(lam)):.6g} of the covariance on the grid (largest "
            f"{float(np.max(lam)):.6g}): not positive definite to working precision")
    u = np.asarray(E.to_eig(y.reshape(1, -1)))[0].reshape(y.shape)
    a = u / lam
    value = -0.5 * float(np.vdot(u, a)) - 0.5 * float(E.logdet) - 0.5 * y.size * _LOG_2PI
    post = _Posterior(tuple(E.V), 1.0 / lam, a)
    if not eval_gradient:
        return value, np.empty(0), None, post
    G_all, z = E.quad_grads(a.reshape(1, -1))  # z = S⁻¹y; G: the eigenbasis contractions
    G_logdet = E.logdet_grads()[0]
    G_quad = G_all[0]
    grads = [np.einsum("ij,ijp->p", 0.5 * (G_quad[k] - G_logdet[k]), dK)
             for k, dK in enumerate(dKs)]
    d_s = 0.5 * float(np.vdot(z, z)) - 0.5 * float(np.sum(1.0 / lam))
    return value, np.concatenate(grads), d_s, post


def _cross_rows(kernels: Sequence[Any], V: Sequence[np.ndarray], train: Sequence[np.ndarray],
                new: Sequence[np.ndarray]) -> list[np.ndarray]:
    """``A_k = k_k(new_k, X_k) V_k`` (m_k × n_k): the new points' cross-kernels in the eigenbasis."""
    return [kern(x, X) @ Vk for kern, Vk, X, x in zip(kernels, V, train, new, strict=True)]


class KroneckerGP(_BaseEstimator):
    r"""Exact Gaussian process regression on a grid, one scikit-learn kernel per axis.

    The model of ``fit(axes, Y)``: ``Y.ravel() ~ N(0, k_1(X_1)⊗…⊗k_d(X_d) + diag(noise + alpha))``,
    exactly scikit-learn's ``GaussianProcessRegressor`` with the product kernel
    ``Π_k k_k(x_k, x'_k)`` (plus a ``WhiteKernel(noise)``) on the grid's points in row-major
    order — at O(Σ n_k³ + P·Σ n_k) per likelihood-and-gradient evaluation instead of O(P³),
    ``P = Π n_k``. NaN cells of ``Y`` are missing: the model is then that of the observed
    cells alone (scikit-learn on the observed points), exact at
    O(Σ n_k³ + P·k·(k + Σ n_k)) for ``k`` missing cells (see Notes for many). The conventions
    are scikit-learn's: hyperparameters ``theta`` in log space with bounds, the optimizer,
    restarts drawn from the bounds with ``random_state``, ``normalize_y``, ``alpha``,
    ``log_marginal_likelihood``, ``predict``, ``sample_y``.

    Parameters
    ----------
    kernels : list of sklearn.gaussian_process.kernels.Kernel
        ``d`` kernels; kernel ``k`` acts on the coordinates of grid axis ``k``. Their
        hyperparameters (``kernel.theta``, ``kernel.bounds``) are fitted; give a
        ``ConstantKernel`` factor to one of them for the amplitude.
    noise : float, default=1.0
        Variance of the observation noise, ``> 0`` (``≥ 0`` when fixed); the initial value
        when fitted.
    noise_bounds : (float, float) or "fixed", default=(1e-5, 1e5)
        Bounds of ``noise`` for the optimizer, like a scikit-learn kernel's bounds;
        ``"fixed"`` keeps it (then it is not part of ``theta``).
    alpha : float or array_like of shape (n_1, ..., n_d), default=0.0
        Added to the diagonal, like scikit-learn's ``alpha`` (a fixed jitter or known noise
        variances), ``≥ 0``: a scalar, or one value per grid cell (its values on missing
        cells are ignored). A per-cell ``alpha`` is exact by the capacitance identities on the
        cells where ``noise + alpha`` differs from its best Kronecker-structured fit (a
        constant, or a product of per-axis vectors); their number ``k`` sets the cost.
    optimizer : "fmin_l_bfgs_b", callable or None, default="fmin_l_bfgs_b"
        ``scipy.optimize.minimize(method="L-BFGS-B")`` on ``−LML``; a callable
        ``optimizer(obj_func, initial_theta, bounds) -> (theta_opt, func_min)`` as in
        scikit-learn; ``None`` keeps the given hyperparameters.
    n_restarts_optimizer : int, default=0
        Further optimizer runs from log-uniform draws within the (finite) bounds.
    normalize_y : bool, default=False
        Centre and scale ``Y`` by its mean and standard deviation (over the observed cells)
        before fitting; predictions are mapped back.
    random_state : int, RandomState instance or None, default=None
        Draws the restarts' initial values (scikit-learn's ``check_random_state``).
    verbose : bool, default=False
        Show a progress bar (optimizer runs and the current log-marginal likelihood).

    Attributes
    ----------
    kernels_ : list of Kernel
        The fitted kernels (clones of ``kernels``).
    noise_ : float
        The fitted noise variance (in the units of the normalised ``Y`` with ``normalize_y``).
    log_marginal_likelihood_value_ : float
        The log-marginal likelihood at the fitted hyperparameters.
    axes_ : tuple of ndarray
        The training axes, axis ``k`` of shape ``(n_k, d_k)``.
    y_train_ : ndarray of shape (n_1, ..., n_d)
        The training values (normalised with ``normalize_y``), NaN on missing cells.
    observed_ : ndarray of bool, shape (n_1, ..., n_d)
        The observed cells (``~np.isnan(Y)``).

    Notes
    -----
    ``theta`` is ``np.concatenate([k.theta for k in kernels] + [[log(noise)]])`` (the last entry
    omitted when ``noise_bounds="fixed"``). Predictions at new grids or scattered points cost
    O(P·Σ n_k) per chunk of points (O(P·k·(k + Σ n_k + m)) for ``m`` points with ``k`` missing
    cells) and never form the P×M cross-covariance. Dense equivalent (for small grids):
    ``GaussianProcessRegressor(kernel, alpha=noise + alpha)`` on
    ``X = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, d)`` and ``Y.ravel()``
    restricted to the observed cells (``alpha`` too, when an array), with ``kernel`` the
    product of the axis kernels each acting on its own columns. Beyond about a third of the
    grid missing, the dense Cholesky factor of the observed block is the cheaper exact route
    and is used (up to 8 000 observed cells); more than 16 384 missing cells and more than
    8 000 observed ones is an error (neither exact route fits).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.gaussian_process.kernels import RBF, ConstantKernel
    >>> from kronkit import KroneckerGP
    >>> x1, x2 = np.linspace(0, 1, 30), np.linspace(0, 2, 20)
    >>> rng = np.random.default_rng(0)
    >>> Y = np.sin(3 * x1)[:, None] * np.cos(2 * x2) + 0.05 * rng.standard_normal((30, 20))
    >>> gp = KroneckerGP([ConstantKernel() * RBF(), RBF()], noise=1e-2).fit([x1, x2], Y)
    >>> mean, std = gp.predict([x1, x2], return_std=True)
    >>> mean.shape, round(float(np.sqrt(gp.noise_)), 2)
    ((30, 20), 0.05)
    """

    def __init__(self, kernels: Sequence[Any] | None = None, noise: float = 1.0,
                 noise_bounds: Any = (1e-5, 1e5), alpha: float = 0.0,
                 optimizer: str | Callable[..., Any] | None = "fmin_l_bfgs_b",
                 n_restarts_optimizer: int = 0, normalize_y: bool = False,
                 random_state: Any = None, verbose: bool = False):
        if _SKLEARN_ERROR is not None:  # pragma: no cover
            raise ImportError("kronkit.KroneckerGP needs scikit-learn: "
                              "pip install kronkit[sklearn]") from _SKLEARN_ERROR
        self.kernels = kernels
        self.noise = noise
        self.noise_bounds = noise_bounds
        self.alpha = alpha
        self.optimizer = optimizer
        self.n_restarts_optimizer = n_restarts_optimizer
        self.normalize_y = normalize_y
        self.random_state = random_state
        self.verbose = verbose

    # ------------------------------------------------------------------ hyperparameters
    def _noise_free(self) -> bool:
        return isinstance(self.noise_bounds, str)

    def _theta(self) -> np.ndarray:
        parts = [k.theta for k in self.kernels_]
        if not self._noise_free():
            parts.append(np.array([math.log(self.noise_)]))
        return np.concatenate(parts) if parts else np.empty(0)

    def _bounds(self) -> np.ndarray:
        parts = [np.asarray(k.bounds).reshape(-1, 2) for k in self.kernels_]
        if self._log_noise_bounds is not None:
            parts.append(self._log_noise_bounds.reshape(1, 2))
        return np.vstack(parts)

    def _theta_names(self) -> list[str]:
        names = []
        for k, kern in enumerate(self.kernels_):
            for h in kern.hyperparameters:
                if not h.fixed:
                    names += [f"kernels[{k}] {h.name}"] * h.n_elements
        return names + ([] if self._noise_free() else ["noise"])

    def _split_theta(self, theta: Any) -> tuple[list[np.ndarray], float]:
        theta = np.asarray(theta, dtype=np.float64)
        sizes = [k.n_dims for k in self.kernels_]
        n = sum(sizes) + (0 if self._noise_free() else 1)
        if theta.shape != (n,):
            raise ValueError(f"`theta` must have shape ({n},) (each kernel's theta, then "
                             f"log(noise) unless fixed), got shape {theta.shape}")
        if not np.isfinite(theta).all():
            raise ValueError("`theta` contains NaN or Inf")
        cuts = np.cumsum([0, *sizes])
        thetas = [theta[cuts[k]:cuts[k + 1]] for k in range(len(sizes))]
        noise = self.noise_ if self._noise_free() else math.exp(theta[-1])
        return thetas, noise

    # ------------------------------------------------------------------ fit
    def fit(self, axes: Sequence[Any], Y: Any) -> KroneckerGP:
        """Fit the hyperparameters to the grid data ``Y`` (maximum log-marginal likelihood).

        Parameters
        ----------
        axes : list of array_like
            ``d`` coordinate arrays, axis ``k`` of shape ``(n_k, d_k)`` or ``(n_k,)``.
        Y : array_like of shape (n_1, ..., n_d)
            The values on the grid: ``Y[i_1, ..., i_d]`` at the point
            ``(axes[0][i_1], ..., axes[d-1][i_d])``. NaN marks a missing cell (the model is
            that of the observed cells); no Inf, and at least one observed cell.

        Returns
        -------
        self : KroneckerGP
        """
        from sklearn.base import clone
        from sklearn.utils import check_random_state

        kernels = check_kernels(self.kernels)
        noise, log_bounds = check_noise(self.noise, self.noise_bounds)
        n_restarts = check_int(self.n_restarts_optimizer, "n_restarts_optimizer", min_value=0)
        if not (self.optimizer is None or callable(self.optimizer)
                or self.optimizer == "fmin_l_bfgs_b"):
            raise ValueError(f"`optimizer` must be \"fmin_l_bfgs_b\", a callable or None, got "
                             f"{self.optimizer!r}")
        ax = check_axes(axes, len(kernels), "axes", min_points=1)
        dims = tuple(a.shape[0] for a in ax)
        y, observed = check_grid_values(Y, dims)
        alpha = check_alpha(self.alpha, dims)
        if isinstance(alpha, np.ndarray):
            alpha = fill_alpha(alpha, np.ones(dims, dtype=bool) if observed is None else observed)
        rng = check_random_state(self.random_state)

        self.kernels_ = [clone(k) for k in kernels]
        self.noise_ = noise
        self._log_noise_bounds = log_bounds
        self._alpha = alpha
        self.axes_ = ax
        self._observed = observed
        self.observed_ = np.ones(dims, dtype=bool) if observed is None else observed
        self._y_mean, self._y_std = 0.0, 1.0
        if self.normalize_y:
            self._y_mean = float(np.nanmean(y))
            std = float(np.nanstd(y))
            self._y_std = 1.0 if std < 10 * np.finfo(np.float64).eps else std
            y = (y - self._y_mean) / self._y_std
        self.y_train_ = y
        self._y_fill = y if observed is None else np.where(observed, y, 0.0)
        theta0 = self._theta()
        if self.optimizer is not None and theta0.size > 0:
            self._optimize(theta0, n_restarts, rng)
        else:
            self.log_marginal_likelihood_value_ = self.log_marginal_likelihood(
                theta0, clone_kernel=False)
        self._posterior = self._final_posterior()
        return self

    def _optimize(self, theta0: np.ndarray, n_restarts: int, rng: Any) -> None:
        """scikit-learn's restarts: from ``theta0``, then from uniform draws in the bounds."""
        bounds = self._bounds()
        if n_restarts > 0 and not np.isfinite(bounds).all():
            raise ValueError("Multiple optimizer restarts (n_restarts_optimizer>0) requires "
                             "that all bounds are finite.")
        bar = ProgressBar(bool(self.verbose), n_restarts + 1, "KroneckerGP fit")
        run = 0

        def obj_func(theta: np.ndarray, eval_gradient: bool = True) -> Any:
            if not eval_gradient:
                value = self.log_marginal_likelihood(theta, clone_kernel=False)
                bar.update(run, value)
                return -value
            value, grad = self.log_marginal_likelihood(theta, eval_gradient=True,
                                                       clone_kernel=False)
            bar.update(run, value)
            return -value, -grad

        optima = []
        with bar.open():
            for run in range(n_restarts + 1):
                start = theta0 if run == 0 else rng.uniform(bounds[:, 0], bounds[:, 1])
                optima.append(self._constrained_optimization(obj_func, start, bounds))
                best = min(f for _, f in optima)
                bar.update(run + 1, -best, done=run == n_restarts)
        theta, fmin = min(optima, key=lambda o: o[1])
        self._set_theta(np.asarray(theta, dtype=np.float64))
        self.log_marginal_likelihood_value_ = -float(fmin)
        warn_at_bounds(self._theta(), bounds, self._theta_names())

    def _constrained_optimization(self, obj_func: Callable[..., Any], initial_theta: np.ndarray,
                                  bounds: np.ndarray) -> tuple[np.ndarray, float]:
        if callable(self.optimizer):
            theta_opt, func_min = self.optimizer(obj_func, initial_theta, bounds=bounds)
            return np.asarray(theta_opt, dtype=np.float64), float(func_min)
        import scipy.optimize

        res = scipy.optimize.minimize(obj_func, initial_theta, method="L-BFGS-B", jac=True,
                                      bounds=bounds)
        if res.status != 0:
            warnings.warn(f"L-BFGS-B failed to converge (status={res.status}): {res.message}",
                          ConvergenceWarning, stacklevel=4)
        return np.asarray(res.x, dtype=np.float64), float(res.fun)

    def _set_theta(self, theta: np.ndarray) -> None:
        thetas, noise = self._split_theta(theta)
        for kern, th in zip(self.kernels_, thetas, strict=True):
            if th.size:
                kern.theta = th
        self.noise_ = noise

    def _evaluate(self, kernels: Sequence[Any], noise: float, eval_gradient: bool,
                  posterior: bool = False) -> tuple[float, np.ndarray, Any, Any]:
        """``(LML, ∂LML/∂θ_kernels, ∂LML/∂noise, posterior)``: the complete-grid eigen route for
        a full grid with a scalar ``alpha``, else the observed block (:mod:`._gp_cells`)."""
        if self._observed is None and not isinstance(self._alpha, np.ndarray):
            return _lml(kernels, self.axes_, self.y_train_, noise + self._alpha, eval_gradient)
        return cell_lml(kernels, self.axes_, self._y_fill, self.observed_, noise, self._alpha,
                        eval_gradient, posterior)

    def _final_posterior(self) -> Any:
        """The posterior at the fitted hyperparameters; an error if ``S`` is singular."""
        try:
            _, _, _, post = self._evaluate(self.kernels_, self.noise_, False, posterior=True)
        except np.linalg.LinAlgError as exc:
            kernels = " ⊗ ".join(str(k) for k in self.kernels_)
            alpha = (f"{self._alpha:.6g}" if not isinstance(self._alpha, np.ndarray)
                     else f"per cell (min {float(np.min(self._alpha)):.6g})")
            raise NotPositiveDefiniteError(
                f"the covariance {kernels} + diag(noise + alpha) with noise={self.noise_:.6g}, "
                f"alpha={alpha} is not positive definite on the observed cells ({exc}); give "
                "`noise` or `alpha` a positive value") from exc
        return post

    # ------------------------------------------------------------------ likelihood
    def log_marginal_likelihood(self, theta: Any = None, eval_gradient: bool = False,
                                clone_kernel: bool = True) -> Any:
        r"""The log-marginal likelihood of ``theta`` for the training data, as scikit-learn's.

        Parameters
        ----------
        theta : array_like of shape (n_hyperparameters,), optional
            ``np.concatenate([k.theta for k in kernels_] + [[log(noise)]])`` (log space; the
            last entry only when the noise is fitted). ``None`` returns
            ``log_marginal_likelihood_value_``.
        eval_gradient : bool, default=False
            Also return the gradient with respect to ``theta`` (needs ``theta``).
        clone_kernel : bool, default=True
            If false, ``kernels_`` and ``noise_`` are set to ``theta`` (faster in a loop).

        Returns
        -------
        log_likelihood : float
            ``−½ yᵀS⁻¹y − ½ log det S − (n/2) log 2π`` of the ``n`` observed cells ``y``;
            ``-inf`` where ``S`` is not positive definite (with a zero gradient), as
            scikit-learn.
        log_likelihood_gradient : ndarray of shape (n_hyperparameters,), optional

        Notes
        -----
        O(Σ n_k³ + P·Σ n_k) on a complete grid with a scalar ``alpha``, O(Σ n_k³ +
        P·k·(k + Σ n_k)) with ``k`` missing (or per-cell corrected) cells; never a P×P array.
        Dense equivalent: ``scipy.stats.multivariate_normal(np.zeros(n), S[o][:, o]).logpdf(
        y_train_.ravel()[o])`` with ``o = observed_.ravel()`` and ``S = reduce(np.kron,
        [k(X) for k, X in zip(kernels, axes_)]) + np.diag(noise + alpha)`` (``alpha``
        broadcast to the grid and raveled).
        """
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(self, "kernels_")
        if theta is None:
            if eval_gradient:
                raise ValueError("Gradient can only be evaluated for theta!=None")
            return self.log_marginal_likelihood_value_
        thetas, noise = self._split_theta(theta)
        if clone_kernel:
            kernels = [k.clone_with_theta(th) if th.size else k
                       for k, th in zip(self.kernels_, thetas, strict=True)]
        else:
            self._set_theta(np.asarray(theta, dtype=np.float64))
            kernels = self.kernels_
        try:
            value, grad, d_s, _ = self._evaluate(kernels, noise, eval_gradient)
        except np.linalg.LinAlgError:
            return (-np.inf, np.zeros(len(theta))) if eval_gradient else -np.inf
        if not eval_gradient:
            return value
        if not self._noise_free():
            grad = np.append(grad, noise * d_s)
        return value, grad

    # ------------------------------------------------------------------ prediction
    def _query(self, X: Any) -> tuple[list[np.ndarray], tuple[int, ...] | None]:
        """Per-axis coordinates of the query points, and the grid shape (None: scattered)."""
        if isinstance(X, (list, tuple)):
            axes = check_axes(X, len(self.kernels_), "X", min_points=0)
            for k, (a, t) in enumerate(zip(axes, self.axes_, strict=True)):
                if a.shape[1] != t.shape[1]:
                    raise ValueError(f"`X[{k}]` has {a.shape[1]} coordinates per point, the "
                                     f"training axis {k} has {t.shape[1]}")
            return list(axes), tuple(a.shape[0] for a in axes)
        pts = as_float(X, "X", ndim=2, dtype=np.float64)
        widths = [t.shape[1] for t in self.axes_]
        if pts.shape[1] != sum(widths):
            raise ValueError(f"`X` (scattered points) must have {sum(widths)} columns, the "
                             f"axes' coordinates side by side {tuple(widths)}, got shape "
                             f"{pts.shape}; pass a list of axes for a grid")
        cuts = np.cumsum([0, *widths])
        return [pts[:, cuts[k]:cuts[k + 1]] for k in range(len(widths))], None

    def predict(self, X: Any, return_std: bool = False, return_cov: bool = False) -> Any:
        r"""The posterior mean (and std or covariance of the latent function) at ``X``.

        Parameters
        ----------
        X : list of array_like, or array_like of shape (M, Σ d_k)
            A list (or tuple) of ``d`` axes — axis ``k`` of shape ``(m_k, d_k)`` or
            ``(m_k,)`` — predicts on that grid; an array predicts at ``M`` scattered points,
            the coordinates of the axes side by side.
        return_std : bool, default=False
            Also return the standard deviation of the latent function (noise excluded).
        return_cov : bool, default=False
            Also return the covariance (M×M, the points in row-major order for a grid,
            ``M = Π m_k``): for modest ``M``, O(M²·P).

        Returns
        -------
        y_mean : ndarray of shape (m_1, ..., m_d) or (M,)
        y_std : ndarray, same shape as ``y_mean``, optional
        y_cov : ndarray of shape (M, M), optional

        Notes
        -----
        Exact, on complete and incomplete grids (the missing cells are predicted like any
        other point); O(P·Σ n_k) per chunk of points, plus O(P·k·(k + m)) for the std with
        ``k`` missing cells (``m = Σ m_k`` on a grid, ``M`` scattered points) and O(M·k·(P + M))
        for the covariance; never a P×M cross-covariance. Dense
        equivalent: ``GaussianProcessRegressor.predict`` with the product kernel (its std
        includes a ``WhiteKernel``'s noise; this one does not).
        """
        from sklearn.utils.validation import check_is_fitted

        if return_std and return_cov:
            raise RuntimeError("At most one of return_std or return_cov can be requested.")
        check_is_fitted(self, "kernels_")
        new, grid = self._query(X)
        post = self._posterior
        A = _cross_rows(self.kernels_, post.V, self.axes_, new)
        if grid is not None and not return_cov:
            mean, explained = grid_mean_var(post.alpha_hat, post.inv_lam, A)
            prior = _outer([k.diag(x) for k, x in zip(self.kernels_, new, strict=True)])
        else:
            if grid is not None:
                new = grid_points(new)
                A = [a[i] for a, i in zip(A, np.indices(grid).reshape(len(grid), -1),
                                          strict=True)]
            mean = rows_contract(post.alpha_hat[None], A)[0].reshape(grid or (-1,))
        y_mean = self._y_std * mean + self._y_mean
        if return_cov:
            M = mean.size
            check_dense_size((M, M), np.float64, "predict(return_cov=True)")
            prior_cov = np.ones((M, M))
            for kern, x in zip(self.kernels_, new, strict=True):
                prior_cov *= kern(x)
            explained_cov = tensor_rows_cov(post.inv_lam, A)
            if not isinstance(post, _Posterior):  # an incomplete grid
                explained_cov -= explained_correction(post, A, False, cov=True)
            y_cov = (prior_cov - explained_cov) * self._y_std**2
            return y_mean, y_cov
        if not return_std:
            return y_mean
        if grid is None:
            explained = rows_contract(post.inv_lam[None], [a * a for a in A])[0]
            prior = np.prod([k.diag(x) for k, x in zip(self.kernels_, new, strict=True)],
                            axis=0).reshape(mean.shape)
        if not isinstance(post, _Posterior):  # an incomplete grid
            explained = explained - explained_correction(post, A, grid is not None)
        var = prior - explained
        if np.any(var < 0):
            warnings.warn("Predicted variances smaller than 0. Setting those variances to 0.",
                          stacklevel=2)
            var = np.maximum(var, 0.0)
        return y_mean, np.sqrt(var) * self._y_std

    def sample_y(self, X: Any, n_samples: int = 1, random_state: Any = 0) -> np.ndarray:
        """Draws of the latent function at ``X`` (a grid or scattered points, as
        :meth:`predict`), from its joint posterior.

        Returns
        -------
        y_samples : ndarray of shape (*y_mean.shape, n_samples)
            As scikit-learn: ``rng.multivariate_normal(y_mean, y_cov, n_samples).T`` with
            ``rng = sklearn.utils.check_random_state(random_state)``.
        """
        from sklearn.utils import check_random_state

        n = check_int(n_samples, "n_samples", min_value=1)
        rng = check_random_state(random_state)
        y_mean, y_cov = self.predict(X, return_cov=True)
        draws = rng.multivariate_normal(y_mean.ravel(), y_cov, n).T
        return draws.reshape(*y_mean.shape, n)

    def score(self, X: Any, Y: Any) -> float:
        """R² of :meth:`predict` over the cells of ``Y`` that are not NaN (``X`` a grid and
        ``Y`` its values, or scattered points and a vector), as scikit-learn regressors:
        ``1 − SS_res/SS_tot``."""
        pred = np.asarray(self.predict(X))
        y = as_float(Y, "Y", dtype=np.float64, finite=False)
        if y.shape != pred.shape:
            raise ValueError(f"`Y` must have shape {pred.shape} (that of predict(X)), got "
                             f"{y.shape}")
        keep = ~np.isnan(y)
        if not keep.any():
            raise ValueError("`Y` is NaN everywhere: no cell to score (NaN marks a missing "
                             "cell)")
        if np.isinf(y).any():
            raise ValueError("`Y` contains Inf (NaN marks a missing cell; Inf is not a value)")
        from sklearn.metrics import r2_score

        return float(r2_score(y[keep], pred[keep]))


def _outer(vectors: Sequence[np.ndarray]) -> np.ndarray:
    """``v_1 ∘ v_2 ∘ … ∘ v_d`` as a tensor of shape ``(len v_1, ..., len v_d)``."""
    out = np.asarray(vectors[0], dtype=np.float64)
    for v in vectors[1:]:
        out = np.multiply.outer(out, v)
    return out

