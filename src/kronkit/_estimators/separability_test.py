r"""The Gaussian likelihood-ratio test of a separable covariance ``A⊗B``, with a calibrated p-value.

Statistic. For residuals ``e_i = vec(X_i − M̂)`` with ``n`` residual degrees of freedom
(``N``, ``N − 1`` or ``N − G``) and ``S = Σ_i e_i e_iᵀ / N`` (P×P),
``T = −2 log Λ = N [log det(Â⊗B̂) − log det S]`` where ``Â⊗B̂`` is the separable Gaussian MLE
given ``S``. ``T`` is invariant under ``X_i ↦ C X_i Dᵀ + M`` and under scaling of ``S``, so
under ``H0`` its law depends only on ``(p, q, n, N)``, and it depends on the data only through
``S``: a null replicate is ``W ~ Wishart_P(n, I)`` (Bartlett decomposition, ``O(P³)`` whatever
``N``) with the separable MLE computed from ``W`` (flip-flop on the rearrangement of ``W``,
``O(P²)`` per sweep).

The null law (:mod:`kronkit._estimators.separability_null`): analytic cumulants from the
decomposition ``T = U − V`` into sphericity statistics, or Monte Carlo replicates drawn as
Wishart matrices. The default p-value matches the first three cumulants with ``a + b·χ²_f``
(the Bartlett correction ``chi2.sf(T·df/E₀[T], df)`` matches the mean only).
"""

from __future__ import annotations

import math
import warnings
from typing import Any, NamedTuple

import numpy as np
from scipy.linalg.lapack import dpotrf

from .._checks import check_choice, check_int, check_random_state, check_scalar
from .._errors import ConvergenceWarning, SingularFactorError
from .._factor import rcond_from_factor
from .._samples import as_samples
from .cholesky import RCOND_MIN
from .missing import refuse_missing
from .normal import LOG_2PI, rearrange_covariance, separable_logdet
from .separability_null import (
    chi2_df,
    null_cumulants,
    null_statistics,
    scaled_chi2_sf,
    warn_unconverged,
)
from .separable import separable_mle

__all__ = ["SEPARABILITY_TEST_MAX_P", "SeparabilityTestResult", "separability_test"]

#: The separability test forms the P×P sample covariance; it refuses larger P.
SEPARABILITY_TEST_MAX_P = 6000
#: ``method`` values of :func:`separability_test`.
METHODS = ("auto", "scaled-chi2", "bartlett", "monte-carlo", "chi2")
#: Null replicates of the Monte Carlo / parametric-bootstrap p-values unless told otherwise.
DEFAULT_N_SIMULATIONS = 999
#: ``method="auto"`` takes the Monte Carlo p-value when ``n < AUTO_MC_BELOW_RATIO·P`` and
#: ``P <= AUTO_MC_MAX_P`` (close to the boundary ``n = P + 1`` the analytic approximation is
#: slightly conservative; size study in ``docs/estimators.md``), otherwise ``"scaled-chi2"``.
AUTO_MC_BELOW_RATIO = 1.25
AUTO_MC_MAX_P = 200
DISTRIBUTIONS = ("normal", "t")


class SeparabilityTestResult(NamedTuple):
    r"""Likelihood-ratio test of a separable against an unstructured covariance (Gaussian).

    Attributes
    ----------
    statistic : float
        ``−2 log Λ = 2 (ℓ_unstructured − ℓ_separable)`` (Gaussian log-likelihoods).
    df : int
        ``P(P+1)/2 − [p(p+1)/2 + q(q+1)/2 − 1]``.
    pvalue : float
        The p-value of ``method``.
    pvalue_chi2 : float
        ``chi2.sf(statistic, df)``, the uncorrected asymptotic p-value, whatever the method
        (too small unless ``N/P`` is large: see ``docs/estimators.md``).
    loglik_separable : float
        Maximised Gaussian log-likelihood under ``A⊗B``.
    loglik_unstructured : float
        Maximised Gaussian log-likelihood under an unstructured covariance.
    n_samples : int
        Number of observations ``N``.
    method : str
        How ``pvalue`` was computed: ``"scaled-chi2"`` (``a + b·χ²_f`` matching the first
        three null cumulants), ``"bartlett"`` (``chi2.sf(statistic / bartlett_factor, df)``),
        ``"monte-carlo"`` (exact null law by simulation, Gaussian), ``"parametric-bootstrap"``
        (``distribution="t"``) or ``"chi2"`` (uncorrected).
    distribution : str
        The model under ``H0`` that the p-value is valid for: ``"normal"`` or ``"t"``.
    bartlett_factor : float
        ``E₀[statistic]/df`` under the Gaussian null (analytic; ``1`` would be the
        chi-square law).
    n_simulations : int
        Null replicates behind ``pvalue`` (0 for the analytic methods).
    residual_df : int
        ``n``: ``N``, ``N − 1`` (mean estimated) or ``N − G`` (``G`` group means).
    t_df : float or None
        The degrees of freedom ``ν̂`` of the separable t fitted under ``H0`` (the parametric
        bootstrap simulates from it); ``None`` for the normal model.
    """

    statistic: float
    df: int
    pvalue: float
    pvalue_chi2: float
    loglik_separable: float
    loglik_unstructured: float
    n_samples: int
    method: str
    distribution: str
    bartlett_factor: float
    n_simulations: int
    residual_df: int
    t_df: float | None


def _spd_logdet(S: np.ndarray) -> float | None:
    """``log det S`` by Cholesky, or ``None`` if ``S`` is not numerically positive definite."""
    c, info = dpotrf(S, lower=1, clean=1)
    if info != 0 or not rcond_from_factor(S, c, cholesky=True) > RCOND_MIN:
        return None
    return float(2.0 * np.sum(np.log(np.diagonal(c))))


def _statistic_from_samples(E3: np.ndarray, max_iter: int, tol: float,
                            what: str = "X") -> tuple[float, float, float, int, bool]:
    """``(T, ℓ_separable, ℓ_unstructured, sweeps, converged)`` for residuals ``E3`` (N, p, q)."""
    N, p, q = E3.shape
    P = p * q
    E = E3.reshape(N, P)
    S = (E.T @ E) / N
    # A separable rescaling (T is invariant to it) so that units do not matter:
    # diag(S) ≈ r_a·c_j in the geometric-mean sense.
    dg = np.diagonal(S)
    logd = np.log(np.maximum(dg, np.finfo(np.float64).tiny)).reshape(p, q)
    c = logd.mean(axis=0)
    r = (logd - c).mean(axis=1)
    logs = (r[:, None] + c[None, :]).ravel()
    s = np.exp(-0.5 * logs)
    Ss = S * s[:, None] * s[None, :]
    # log det S from the correlation matrix (invariant to any diagonal scaling, e.g. one
    # entry inflated by an outlier), shifted to the separable scaling of Ss
    ld_s = None
    if np.all(dg > 0):
        t = 1.0 / np.sqrt(dg)
        ld_c = _spd_logdet(S * t[:, None] * t[None, :])
        if ld_c is not None:
            ld_s = ld_c + float(np.sum(np.log(dg))) - float(np.sum(logs))
    if ld_s is None:
        rank = int(np.linalg.matrix_rank(E))
        raise ValueError(
            f"the sample covariance of `{what}` is singular (rank {rank} < P = {P}), so the "
            "unstructured Gaussian MLE does not exist and the test is undefined; data centred "
            "by G group means have rank at most N − G (pass `groups=` to account for it)"
        )
    ld, sweeps, conv = separable_logdet(rearrange_covariance(Ss, p, q)[None], p, q, max_iter, tol)
    ld_sep = float(ld[0])
    shift = float(np.sum(logs))
    ll_u = -0.5 * N * (P * LOG_2PI + ld_s + shift + P)
    ll_k = -0.5 * N * (P * LOG_2PI + ld_sep + shift + P)
    return N * (ld_sep - ld_s), ll_k, ll_u, sweeps, bool(conv[0])


def t_null_statistics(p: int, q: int, N: int, nu: float, n_simulations: int,
                       rng: np.random.Generator, centre: Any, max_iter: int,
                       tol: float) -> np.ndarray:
    """Statistics of data sets from the separable t (``A = I``, ``B = I``, ``ν``), centred alike."""
    out = np.empty(n_simulations)
    failed = 0
    for k in range(n_simulations):
        G = rng.standard_normal((N, p, q))
        G /= np.sqrt(rng.chisquare(nu, N) / nu)[:, None, None]
        try:
            T, _, _, _, conv = _statistic_from_samples(centre(G), max_iter, tol)
        except (ValueError, SingularFactorError):  # numerically singular: T = +inf there
            T, conv = math.inf, True
        failed += not conv
        out[k] = T
    warn_unconverged(failed, n_simulations, max_iter)
    return out


def _centre(X: np.ndarray, assume_centered: bool, inv: np.ndarray | None) -> np.ndarray:
    """Residuals: ``X`` itself, ``X`` minus its mean, or ``X`` minus its group means."""
    if inv is not None:
        G = int(inv.max()) + 1
        sums = np.zeros((G, *X.shape[1:]))
        np.add.at(sums, inv, X)
        return X - (sums / np.bincount(inv, minlength=G)[:, None, None])[inv]
    return X if assume_centered else X - X.mean(axis=0)


# ---------------------------------------------------------------------------------------
# The test
# ---------------------------------------------------------------------------------------
def separability_test(
    X: Any,
    *,
    assume_centered: bool = False,
    groups: Any = None,
    shape: Any = None,
    method: str = "auto",
    distribution: str = "normal",
    n_simulations: int | None = None,
    random_state: Any = None,
    max_iter: int = 2000,
    tol: float = 1e-13,
) -> SeparabilityTestResult:
    r"""Likelihood-ratio test of ``H0: cov = A⊗B`` against an unstructured covariance.

    The statistic is the Gaussian likelihood ratio
    ``−2 log Λ = N [q log det Â + p log det B̂ − log det S]``. Its null law does not depend
    on ``A``, ``B`` or the mean(s); the default p-value has the right size for any ``N/P``
    (see Notes and the size study in ``docs/estimators.md``).

    Parameters
    ----------
    X : array_like of shape (N, p, q), or (N, P) with ``shape=(p, q)``
        Observations. Not modified. NaN (a missing entry) is a ValueError that says what to do:
        the test compares complete-data fits (:func:`kronkit.separable_mle` fits missing
        entries by EM).
    assume_centered : bool
        Whether the mean is known to be zero (otherwise it is estimated under both models).
    groups : array_like of shape (N,), optional
        Group labels: each group has its own mean (estimated under both models — the data are
        centred by group means), with a common covariance. Excludes ``assume_centered``.
    shape : (int, int), optional
        ``(p, q)`` for 2-D ``X`` (required there, ValueError without it; with ``p = 1`` or
        ``q = 1`` every covariance is separable and the test is empty).
    method : {"auto", "scaled-chi2", "bartlett", "monte-carlo", "chi2"}
        The p-value under the Gaussian null (``n`` = residual degrees of freedom).
        ``"scaled-chi2"``: ``P(a + b·χ²_f ≥ T)`` with ``a, b, f`` matching the analytic null
        mean, variance and skewness of ``T`` (instant). ``"bartlett"``: ``chi2.sf(T/c, df)``
        with the analytic Bartlett factor ``c = E₀[T]/df`` (instant; matches the mean only,
        liberal for ``n < 2P``). ``"monte-carlo"``: the exact Monte Carlo p-value
        ``(1 + #{T_sim ≥ T})/(1 + n_simulations)`` from null replicates drawn as Wishart
        matrices (``O(P³)`` each, whatever ``N``). ``"chi2"``: the uncorrected asymptotic
        p-value (far too small unless ``N ≫ P²``; for comparison only).
        ``"auto"`` (default): ``"monte-carlo"`` if ``n_simulations`` is given, or if
        ``n < 1.25·P`` and ``P <= 200``; otherwise ``"scaled-chi2"``.
    distribution : {"normal", "t"}
        The model under ``H0``. ``"normal"``: Gaussian (the p-values above). ``"t"``: the
        vec-form multivariate t with scale ``A⊗B``; the p-value is a parametric bootstrap
        (``method="parametric-bootstrap"``): ``ν̂`` is fitted under ``H0``
        (:func:`kronkit.separable_mle` with ``distribution="t"``) and the same statistic is
        computed on ``n_simulations`` data sets drawn from the separable t with ``ν̂``,
        ``A = I``, ``B = I`` and centred alike (its null law depends on ``ν`` only).
        ``O(N·P²)`` per replicate. ``method`` must be ``"auto"`` there.
    n_simulations : int, optional
        Null replicates for ``"monte-carlo"`` and the t bootstrap (default 999).
    random_state : None, int, numpy.random.Generator, ...
        Seed for the simulations (see ``kronkit._checks.check_random_state``).
    max_iter, tol : int, float
        The separable fit given ``S`` (flip-flop) stops when the log-likelihood is estimated
        to be within ``tol·N·P`` of its maximum; ``ConvergenceWarning`` after ``max_iter``
        sweeps.

    Returns
    -------
    SeparabilityTestResult
        ``statistic``, ``df``, ``pvalue``, ``pvalue_chi2``, the two maximised Gaussian
        log-likelihoods, ``n_samples``, ``method``, ``distribution``, ``bartlett_factor``,
        ``n_simulations``, ``residual_df``, ``t_df``.

    Raises
    ------
    ValueError
        ``p = 1`` or ``q = 1`` (df = 0); too few observations for the unstructured MLE
        (``n ≤ P`` residual degrees of freedom: ``n = N``, ``N − 1`` with the mean estimated,
        ``N − G`` with ``G`` groups); a singular sample covariance; ``P`` above
        ``SEPARABILITY_TEST_MAX_P``; bad ``method``/``distribution``.
    TypeError
        ``n_simulations``/``random_state``/``max_iter`` of the wrong type.

    Notes
    -----
    ``ℓ_unstructured = −½N(P log 2π + log det S + P)`` with ``S = Σ_i e_i e_iᵀ/N`` (``e_i`` the
    residuals): ``O(N·P² + P³)`` time and ``O(P²)`` memory. The separable MLE given ``S`` is a
    flip-flop on the ``p²×q²`` rearrangement of ``S``, ``O(P²)`` per sweep.

    The uncorrected chi-square law is asymptotic in ``N`` for fixed ``P`` and fails badly when
    ``P`` is not small against ``N`` (at ``p = q = 10, N = 1000`` it rejects a true ``H0``
    59 % of the time at the 5 % level). ``E₀[T]`` is computed from an exact decomposition
    ``T = U − V`` (``U`` Mauchly's sphericity statistic of ``S``, whose moments are sums of
    digamma functions; ``V`` the part that the separable fit removes, approximated by the row
    and column sphericity statistics); so are its variance and third cumulant. The
    ``"scaled-chi2"`` p-value is calibrated from ``N/P = 1.2`` to 50 in the size study of
    ``docs/estimators.md`` (slightly conservative at ``n = P + 1``: 3.3 % at ``p = q = 10``).
    The Monte Carlo p-value is exact for any ``n > P``.
    """
    n_simulations, rng, max_iter, tol = _check_options(
        method, distribution, n_simulations, random_state, max_iter, tol)
    refuse_missing(X, "separability_test (a likelihood ratio of complete-data fits)")
    Xs = as_samples(X, shape)
    N, p, q = Xs.shape
    P = p * q
    if p == 1 or q == 1:
        raise ValueError(
            f"the separability test needs p >= 2 and q >= 2, got (p, q) = ({p}, {q}): every "
            "covariance is separable then (df = 0); pass `shape=(p, q)` for 2-D `X`"
        )
    if P > SEPARABILITY_TEST_MAX_P:
        raise ValueError(
            f"the separability test forms the dense P×P sample covariance; P = {P} exceeds "
            f"SEPARABILITY_TEST_MAX_P = {SEPARABILITY_TEST_MAX_P}"
        )
    assume_centered = bool(assume_centered)
    inv, n_eff = _residual_df(N, P, assume_centered, groups)
    from scipy.stats import chi2

    E3 = _centre(Xs, assume_centered, inv)
    stat, ll_k, ll_u, _, conv = _statistic_from_samples(E3, max_iter, tol)
    if not conv:
        warnings.warn(
            f"separability_test: the separable fit did not converge in max_iter = {max_iter} "
            "sweeps; the statistic may be too large — increase `max_iter`",
            ConvergenceWarning, stacklevel=2)
    dof = chi2_df(p, q)
    kappa = null_cumulants(p, q, n_eff, N)
    factor = float(kappa[0] / dof)
    p_chi2 = float(chi2.sf(stat, dof))
    n_sim_used, t_df = 0, None
    if distribution == "t":
        # the t fitted under H0: on the group-centred residuals, or on X with its mean
        fit = separable_mle(E3 if inv is not None else Xs, distribution="t",
                            assume_centered=inv is not None or assume_centered)
        t_df = float(fit.df)
        n_sim_used = DEFAULT_N_SIMULATIONS if n_simulations is None else n_simulations
        sims = t_null_statistics(p, q, N, t_df, n_sim_used, rng,
                                 lambda Z: _centre(Z, assume_centered, inv), max_iter, tol)
        pvalue = float((1.0 + np.count_nonzero(sims >= stat)) / (1.0 + n_sim_used))
        used = "parametric-bootstrap"
    else:
        used = method
        if method == "auto":
            use_mc = n_simulations is not None or (
                n_eff < AUTO_MC_BELOW_RATIO * P and P <= AUTO_MC_MAX_P)
            used = "monte-carlo" if use_mc else "scaled-chi2"
        if used == "monte-carlo":
            n_sim_used = DEFAULT_N_SIMULATIONS if n_simulations is None else n_simulations
            sims = null_statistics(p, q, n_eff, N, n_sim_used, rng, max_iter, tol)
            pvalue = float((1.0 + np.count_nonzero(sims >= stat)) / (1.0 + n_sim_used))
        elif used == "scaled-chi2":
            pvalue = scaled_chi2_sf(stat, kappa)
        elif used == "bartlett":
            pvalue = float(chi2.sf(stat / factor, dof))
        else:
            pvalue = p_chi2
    return SeparabilityTestResult(
        statistic=float(stat), df=int(dof), pvalue=float(pvalue), pvalue_chi2=p_chi2,
        loglik_separable=float(ll_k), loglik_unstructured=float(ll_u), n_samples=int(N),
        method=used, distribution=distribution, bartlett_factor=factor,
        n_simulations=int(n_sim_used), residual_df=int(n_eff), t_df=t_df,
    )


def _check_options(method: Any, distribution: Any, n_simulations: Any, random_state: Any,
                   max_iter: Any, tol: Any) -> tuple[int | None, np.random.Generator, int, float]:
    """The checked options of :func:`separability_test`: ``n_simulations``, the generator,
    ``max_iter``, ``tol``."""
    check_choice(method, "method", METHODS)
    check_choice(distribution, "distribution", DISTRIBUTIONS)
    if distribution == "t" and method != "auto":
        raise ValueError(
            f"with distribution='t' the p-value is a parametric bootstrap under the fitted "
            f"separable t; `method` must be 'auto' there, got {method!r} (the analytic and "
            "Monte Carlo p-values are valid for Gaussian data only)")
    if n_simulations is not None:
        n_simulations = check_int(n_simulations, "n_simulations", min_value=1)
        if method in ("scaled-chi2", "bartlett", "chi2"):
            raise ValueError(f"`n_simulations` is used only by the simulation p-values, got "
                             f"n_simulations={n_simulations} with method={method!r}")
    rng = check_random_state(random_state, "random_state")
    max_iter = check_int(max_iter, "max_iter", min_value=1)
    tol = check_scalar(tol, "tol")
    if not tol >= 0:
        raise ValueError(f"`tol` must be >= 0, got {tol}")
    return n_simulations, rng, max_iter, tol


def _residual_df(N: int, P: int, assume_centered: bool,
                 groups: Any) -> tuple[np.ndarray | None, int]:
    """``(group index (N,) or None, n)``: the residual degrees of freedom ``N``, ``N − 1`` or
    ``N − G``; ``ValueError`` unless ``n > P``."""
    inv = None
    if groups is not None:
        if assume_centered:
            raise ValueError("`groups` and assume_centered=True exclude each other (with "
                             "`groups` every group mean is estimated)")
        labels = np.asarray(groups)
        if labels.shape != (N,):
            raise ValueError(f"`groups` must have shape ({N},) (one label per observation), got "
                             f"{labels.shape}")
        _, inv = np.unique(labels, return_inverse=True)
        inv = inv.reshape(N)
        n_eff, why = N - (int(inv.max()) + 1), f"N − G with G = {int(inv.max()) + 1} groups"
    elif assume_centered:
        n_eff, why = N, "N"
    else:
        n_eff, why = N - 1, "N − 1, the mean being estimated"
    if not n_eff > P:
        raise ValueError(
            f"the unstructured Gaussian MLE needs more residual degrees of freedom than "
            f"P = {P} = p·q, got {why} = {n_eff} (n_samples = {N}); the test needs n > P"
        )
    return inv, n_eff
