r"""The Gaussian likelihood-ratio test of a separable covariance ``A⊗B``, with a calibrated p-value.

Statistic. For residuals ``e_i = vec(X_i − M̂)`` with ``n`` residual degrees of freedom
(``N``, ``N − 1`` or ``N − G``) and ``S = Σ_i e_i e_iᵀ / N`` (P×P),
``T = −2 log Λ = N [log det(Â⊗B̂) − log det S]`` where ``Â⊗B̂`` is the separable Gaussian MLE
given ``S``. ``T`` is invariant under ``X_i ↦ C X_i Dᵀ + M`` and under scaling of ``S``, so
under ``H0`` its law depends only on ``(p, q, n, N)``, and it depends on the data only through
``S``: a null replicate is ``W ~ Wishart_P(n, I)`` (Bartlett decomposition, ``O(P³)`` whatever
``N``) with the separable MLE computed from ``W`` (flip-flop on the rearrangement of ``W``,
``O(P²)`` per sweep).

Null moments. With ``S̃ = P·S/tr S`` (trace ``P``) and ``Ã⊗B̃`` its separable MLE,
``T = U − V``, ``U = −N log det S̃`` (Mauchly's sphericity statistic of ``S``) and
``V = −N log det(Ã⊗B̃)`` (the sphericity statistic *within* the separable model, ``p(p+1)/2 +
q(q+1)/2 − 2`` parameters). For ``W ~ Wishart_P(n, I)``, ``tr W`` is independent of
``W/tr W``, so the cumulants of ``log det S̃`` are exact: those of ``log det W`` (a sum of
independent ``log χ²_{n−i+1}``) minus ``P^r`` times those of ``log tr W`` (``log χ²_{nP}``).
``V`` is, to the order that matters, the sum of the sphericity statistics of the row factor
(``p×p``, ``n·q`` degrees of freedom, multiplier ``N·q``) and of the column factor (``q×q``,
``n·p``, ``N·p``), whose cumulants are given by the same formula; and ``V`` is asymptotically
independent of ``T`` (nested likelihood-ratio statistics), so ``κ_r(T) ≈ κ_r(U) − κ_r(V)``.
The default p-value matches the first three cumulants with ``a + b·χ²_f`` (the Bartlett
correction ``chi2.sf(T·df/E₀[T], df)`` matches the mean only).
"""

from __future__ import annotations

import math
import warnings
from typing import Any, NamedTuple

import numpy as np
from scipy.linalg.lapack import dpotrf
from scipy.special import digamma, polygamma

from .._checks import check_int, check_random_state, check_scalar
from .._errors import ConvergenceWarning, SingularFactorError
from .._factor import rcond_from_factor
from .._samples import as_samples
from .cholesky import RCOND_MIN, SIDES
from .normal import LOG_2PI, flipflop_sweep, rearrange_covariance
from .separable import separable_mle

__all__ = ["SEPARABILITY_TEST_MAX_P", "SeparabilityTestResult", "separability_test"]

_SQRT_RCOND_MIN = math.sqrt(RCOND_MIN)
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


# ---------------------------------------------------------------------------------------
# Null moments
# ---------------------------------------------------------------------------------------
def sphericity_cumulants(P: int, m: float, mult: float) -> np.ndarray:
    """First three cumulants of ``−mult·log det(P·W/tr W)`` for ``W ~ Wishart_P(m, I)``."""
    a = (m - np.arange(P)) / 2.0
    out = np.empty(3)
    out[0] = -mult * (np.sum(digamma(a)) - P * digamma(m * P / 2.0) + P * math.log(P))
    for r in (2, 3):
        out[r - 1] = (-mult) ** r * (np.sum(polygamma(r - 1, a))
                                     - float(P) ** r * polygamma(r - 1, m * P / 2.0))
    return out


def null_cumulants(p: int, q: int, n: int, N: int) -> np.ndarray:
    """Approximate first three cumulants of the statistic under ``H0`` (see module notes).

    Exact for the sphericity part ``U``; the part ``V`` removed by the separable fit is
    approximated by independent row and column sphericity statistics.
    """
    return (sphericity_cumulants(p * q, n, N) - sphericity_cumulants(p, n * q, N * q)
            - sphericity_cumulants(q, n * p, N * p))


def scaled_chi2_sf(t: float, kappa: np.ndarray) -> float:
    """``P(a + b·χ²_f ≥ t)`` with ``a, b, f`` matching the cumulants ``κ1, κ2, κ3 > 0``.

    Skewness ``√(8/f)`` of ``χ²_f`` fixes ``f = 8κ2³/κ3²``; then ``b = κ3/(4κ2)``, ``a = κ1 − b·f``
    (a Pearson type III approximation). Normal approximation if ``κ3 <= 0``.
    """
    from scipy.stats import chi2, norm

    k1, k2, k3 = (float(v) for v in kappa)
    if not k3 > 0:
        return float(norm.sf((t - k1) / math.sqrt(k2)))
    f = 8.0 * k2**3 / k3**2
    b = k3 / (4.0 * k2)
    return float(chi2.sf((t - (k1 - b * f)) / b, f))


def chi2_df(p: int, q: int) -> int:
    """``P(P+1)/2 − [p(p+1)/2 + q(q+1)/2 − 1]``."""
    P = p * q
    return P * (P + 1) // 2 - (p * (p + 1) // 2 + q * (q + 1) // 2 - 1)


# ---------------------------------------------------------------------------------------
# The separable MLE given S (flip-flop on the rearrangement), batched over data sets
# ---------------------------------------------------------------------------------------
def _inv_logdet(M: np.ndarray, side: int) -> tuple[np.ndarray, np.ndarray]:
    """``(M⁻¹, log det M)`` of a stack of SPD iterates (…, k, k), or a clear error."""
    what = SIDES[side]
    try:
        L = np.linalg.cholesky(M)
    except np.linalg.LinAlgError as exc:
        raise SingularFactorError(
            f"the {what} covariance of the separable fit lost positive definiteness (the "
            "sample covariance is too close to singular for the test)") from exc
    d = np.diagonal(L, axis1=-2, axis2=-1)
    if not (d.min(axis=-1) > _SQRT_RCOND_MIN * d.max(axis=-1)).all():
        raise SingularFactorError(
            f"the {what} covariance of the separable fit is numerically singular (the "
            "sample covariance is too close to singular for the test)")
    Li = np.linalg.inv(L)
    return np.swapaxes(Li, -1, -2) @ Li, 2.0 * np.log(d).sum(axis=-1)


def separable_logdet(R: np.ndarray, p: int, q: int, max_iter: int,
                     tol: float) -> tuple[np.ndarray, int, np.ndarray]:
    """``log det(Â⊗B̂)`` of the separable MLE given ``S``, for a stack of rearranged ``S``.

    ``R`` has shape ``(m, p², q²)``, ``R[·, (a, b), (j, k)] = S[(a, j), (b, k)]``. Flip-flop
    (:func:`kronkit._estimators.normal.flipflop_sweep`, batched over the stack) from ``B = I``:
    ``A ← Σ_jk S_(aj)(bk) B⁻¹_kj`` (scaled to ``tr A = p``), ``B ← Σ_ab S_(aj)(bk) A⁻¹_ba / p``;
    after each sweep ``tr((A⊗B)⁻¹S) = P``, so the separable log-likelihood is
    ``−½N(P log 2π + ld + P)`` with ``ld = q log det A + p log det B``, which decreases
    monotonically. A data set has converged when the estimated remaining decrease of ``ld``
    (the last decrease ``d`` times ``r/(1 − r)``, ``r`` the observed contraction ratio; ``d``
    itself if ``r`` is not in (0, 1)) is at most ``2·tol·P`` — the log-likelihood is within
    ``tol·N·P`` of its maximum — or when ``ld`` stops decreasing (rounding floor). Sweeps
    continue until every data set has converged or ``max_iter``.
    Returns ``(ld (m,), sweeps, converged (m,))``. ``O(P²)`` per sweep and data set.
    """
    m = R.shape[0]
    P = p * q
    Bi = np.broadcast_to(np.eye(q), (m, q, q))
    thr = 2.0 * tol * P
    ld_prev = np.full(m, np.inf)
    dec_prev = np.full(m, np.nan)
    done = np.zeros(m, dtype=bool)
    ld = ld_prev
    it = 0
    for it in range(1, max_iter + 1):
        _, _, Bi, ld = flipflop_sweep(R, Bi, p, q, _inv_logdet)
        if it > 1:
            dec = ld_prev - ld
            with np.errstate(divide="ignore", invalid="ignore"):
                r = dec / dec_prev
                gap = np.where((r > 0) & (r < 1), dec * r / (1.0 - r), dec)
            done |= (dec <= thr * 1e-3) | (gap <= thr)
            if done.all():
                break
            dec_prev = dec
        ld_prev = ld
    return ld, it, done


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


# ---------------------------------------------------------------------------------------
# Null replicates
# ---------------------------------------------------------------------------------------
#: Null replicates are drawn and fitted in batches holding about this many P×P entries.
_BATCH_ENTRIES = 2_000_000


def wishart_identity(rng: np.random.Generator, P: int, n: int,
                     size: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """``(W, log det W)``, ``size`` draws of ``W ~ Wishart_P(n, I)`` (shapes (size, P, P),
    (size,)) by the Bartlett decomposition ``W = L Lᵀ``: ``L`` lower triangular with
    ``L_ii = √χ²_{n−i}`` (``i = 0, …, P−1``) and standard normal entries below. ``O(P³)``."""
    L = np.tril(rng.standard_normal((size, P, P)), -1)
    d = np.sqrt(rng.chisquare(n - np.arange(P), size=(size, P)))
    idx = np.arange(P)
    L[:, idx, idx] = d
    return L @ np.swapaxes(L, -1, -2), 2.0 * np.sum(np.log(d), axis=-1)


def _warn_unconverged(failed: int, total: int, max_iter: int) -> None:
    if failed:
        warnings.warn(
            f"separability_test: the separable fit did not converge in max_iter = {max_iter} "
            f"sweeps for {failed} of {total} simulated data sets; increase `max_iter`",
            ConvergenceWarning, stacklevel=4)


def null_statistics(p: int, q: int, n: int, N: int, n_simulations: int,
                    rng: np.random.Generator, max_iter: int = 2000,
                    tol: float = 1e-13) -> np.ndarray:
    """``n_simulations`` draws of the statistic under the Gaussian ``H0``.

    ``T = N (log det(Â⊗B̂) − log det W)`` with ``W ~ Wishart_P(n, I)`` (the scale of ``W``
    cancels), in batches. ``O(P³)`` per replicate, independent of ``N``.
    """
    P = p * q
    out = np.empty(n_simulations)
    batch = max(1, _BATCH_ENTRIES // (P * P))
    failed = 0
    for start in range(0, n_simulations, batch):
        size = min(batch, n_simulations - start)
        W, ldW = wishart_identity(rng, P, n, size)
        ld, _, conv = separable_logdet(rearrange_covariance(W, p, q), p, q, max_iter, tol)
        failed += int(np.count_nonzero(~conv))
        out[start:start + size] = N * (ld - ldW)
    _warn_unconverged(failed, n_simulations, max_iter)
    return out


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
    _warn_unconverged(failed, n_simulations, max_iter)
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
        Observations. Not modified.
    assume_centered : bool
        Whether the mean is known to be zero (otherwise it is estimated under both models).
    groups : array_like of shape (N,), optional
        Group labels: each group has its own mean (estimated under both models — the data are
        centred by group means), with a common covariance. Excludes ``assume_centered``.
    shape : (int, int), optional
        ``(p, q)`` for 2-D ``X`` (required there: with ``p = 1`` or ``q = 1`` every covariance
        is separable and the test is empty).
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
    if method not in METHODS:
        raise ValueError(f"`method` must be one of {METHODS}, got {method!r}")
    if distribution not in DISTRIBUTIONS:
        raise ValueError(f"`distribution` must be one of {DISTRIBUTIONS}, got {distribution!r}")
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
