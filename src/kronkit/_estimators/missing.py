r"""Separable fits with missing entries (NaN in ``X``): EM on the observed-data likelihood.

Model as in :mod:`kronkit._estimators.separable`: ``x_i = vec X_i ~ N(vec M, Σ)`` (or the
vec-form t with scale ``Σ``), ``Σ = A⊗B``; observation ``i`` is seen on the cells ``O_i`` and
missing on ``M_i`` (``k_i`` cells), missing at random. The likelihood maximised is the
*observed-data* one, ``ℓ = Σ_i log f(x_{i,O_i}; vec M_{O_i}, Σ_{O_iO_i})``.

The complementary-block identities make every quantity cheap for a Kronecker ``Σ``. With
``Λ = Σ⁻¹ = A⁻¹⊗B⁻¹`` and ``x̂⁰`` the centred observation with zeros at ``M_i``:

- ``Λ_MM`` has entries ``A⁻¹[a, a']·B⁻¹[b, b']`` (``O(k_i²)`` to gather), and
  ``C_i = (Λ_MM)⁻¹`` is the conditional covariance of the missing cells given the observed;
- the conditional mean is ``x̂_M = −C_i (Λ x̂⁰)_M`` (one Kronecker product ``A⁻¹ X̂⁰ B⁻¹``);
- ``log det Σ_OO = log det Σ + log det Λ_MM``;
- ``x_Oᵀ Σ_OO⁻¹ x_O = x̂ᵀ Λ x̂`` for the completed ``x̂`` (computed as the sum of squares
  ``‖L_A⁻¹ X̂ L_B⁻ᵀ‖²``; the equal ``x̂⁰ᵀ Λ x̂⁰ + (Λ x̂⁰)_Mᵀ x̂_M`` cancels for ill-conditioned
  factors).

E-step: those, per distinct missing pattern (``Λ_MM`` and its Cholesky factor are shared by
the observations with the same pattern; patterns with the same ``k`` are batched, nothing
padded). M-step: the flip-flop sweep on the completed statistics,
``E[E_i B⁻¹ E_iᵀ] = Ê_i B⁻¹ Ê_iᵀ + Σ_{m,m'∈M_i} C_i[m, m'] B⁻¹[b_m, b_m'] e_{a_m} e_{a_m'}ᵀ``
and the same for the column factor with ``A⁻¹``. For the t model (ECME) the observation's
weight is ``w_i = (ν + |O_i|)/(ν + δ_i)`` with the observed ``δ_i``, the completed residuals
are weighted, the conditional covariances are not (``E[τ_i C_i/τ_i] = C_i``), and ``ν``
maximises the observed-data likelihood. Every step increases ``ℓ`` (EM / ECME); the steps
are accelerated by SQUAREM (:func:`kronkit._estimators.iteration.squarem`, as the complete-data
t fit), which keeps the recorded history non-decreasing: always for the t model, and for the
normal model above :data:`SQUAREM_MISSING_FRACTION` of the cells missing (the fraction of
missing information slows plain EM: at 70 % missing 274 E-steps plain, 70 with SQUAREM).

Cost per iteration ``O(N·p·q·(p+q) + Σ_g k_g³ + Σ_i k_i²)`` (``g`` over distinct patterns)
against ``O(Σ_i |O_i|³)`` for the dense observed-data likelihood.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from .._checks import check_dense_size
from .._errors import SingularFactorError
from .._samples import col_gram, layout, row_gram
from .cholesky import IterateFactor, factor_iterate, inv_lower, inverse, logdet
from .normal import LOG_2PI
from .student_t import df_step, t_loglik

__all__ = ["SQUAREM_MISSING_FRACTION", "Conditional", "MissingEM", "MissingPatterns",
           "MissingState", "PatternGroup", "check_identifiable", "check_not_constant_observed",
           "conditional_step", "drop_empty", "observed_logpdf", "observed_scales",
           "refuse_missing"]


# ---------------------------------------------------------------------------------------
# The missing patterns
# ---------------------------------------------------------------------------------------
class PatternGroup(NamedTuple):
    """The distinct missing patterns with ``k`` missing cells, and the observations that have them.

    ``obs`` (n,) the observations; ``local`` (n,) each one's pattern (index into the rest);
    ``cells`` (G, k) the flat indices of the missing cells; ``row_pairs`` / ``col_pairs``
    (G, k, k) the flat indices ``a_m·p + a_m'`` / ``b_m·q + b_m'`` of their row and column
    pairs (``F.ravel()[row_pairs]`` is ``F[a_m, a_m']``); ``counts`` (G,) observations per pattern.
    """

    obs: np.ndarray
    local: np.ndarray
    cells: np.ndarray
    row_pairs: np.ndarray
    col_pairs: np.ndarray
    counts: np.ndarray


class MissingPatterns:
    """The missing patterns of ``N`` observations (p, q), grouped by their number of missing
    cells ``k`` (one batch per ``k``, nothing padded); ``n_obs`` (N,) observed cells per
    observation. Observations with the same pattern share its E-step work.
    """

    def __init__(self, miss: np.ndarray, p: int, q: int):
        pats, inv, counts = np.unique(miss, axis=0, return_inverse=True, return_counts=True)
        inv = np.asarray(inv).reshape(-1)
        k = pats.sum(axis=1)
        self.n_obs = (p * q - k)[inv]
        self.p, self.q = p, q
        self.groups: list[PatternGroup] = []
        for kk in np.unique(k[k > 0]):
            g = np.flatnonzero(k == kk)
            cells = np.nonzero(pats[g])[1].reshape(g.size, int(kk))  # row-major: sorted
            rows, cols = cells // q, cells % q
            where = np.full(pats.shape[0], -1)
            where[g] = np.arange(g.size)
            obs = np.flatnonzero(where[inv] >= 0)
            self.groups.append(PatternGroup(
                obs, where[inv[obs]], cells, rows[:, :, None] * p + rows[:, None, :],
                cols[:, :, None] * q + cols[:, None, :], counts[g].astype(np.float64)))
        # the conditional covariances (per pattern) and their copies per observation
        need = sum((grp.counts.size + grp.obs.size) * grp.cells.shape[1] ** 2
                   for grp in self.groups)
        check_dense_size((need,), np.float64, "the EM for missing entries (a k×k conditional "
                         "covariance per missing pattern and per observation, k missing cells)")

    def scatter(self, C: list[np.ndarray], F: np.ndarray, side: int) -> np.ndarray:
        """The missing cells' part of a flip-flop statistic, from the conditional covariances
        ``C`` (one (G, k, k) array per group): ``side`` 0, the row statistic
        ``Σ_i Σ_{m,m'∈M_i} C_i[m, m'] F[b_m, b_m'] e_{a_m} e_{a_m'}ᵀ`` (p×p, ``F = B⁻¹``);
        ``side`` 1, the column statistic (q×q, ``F = A⁻¹``). ``O(Σ_g k_g²)``."""
        n = self.q if side else self.p
        out = np.zeros(n * n)
        Fr = F.ravel()
        for grp, Cg in zip(self.groups, C, strict=True):
            this, other = (grp.col_pairs, grp.row_pairs) if side else (grp.row_pairs,
                                                                       grp.col_pairs)
            W = Cg * np.take(Fr, other) * grp.counts[:, None, None]
            out += np.bincount(this.ravel(), weights=W.ravel(), minlength=n * n)
        return out.reshape(n, n)


def check_identifiable(obs: np.ndarray, assume_centered: bool, name: str = "X") -> None:
    """``ValueError`` naming ``name`` and the row/column/cell when the observed cells ``obs``
    (N, p, q) leave a parameter of the separable model undetermined.

    ``A[a, a']`` appears in the likelihood only through observations that see rows ``a`` and
    ``a'`` both (``a = a'``: row ``a`` at all); likewise ``B``; with the mean estimated each
    cell must be observed at least once.
    """
    _, p, q = obs.shape
    for side, what in ((0, "row"), (1, "column")):
        occ = np.asarray(obs.any(axis=2 - side), dtype=np.int64)  # (N, p) rows / (N, q) cols
        co: np.ndarray = np.matmul(occ.T, occ)
        bad = np.argwhere(co == 0)
        if bad.size == 0:
            continue
        never = np.flatnonzero(np.diag(co) == 0)  # a row (column) never seen: say that first
        a, b = (int(never[0]), int(never[0])) if never.size else (int(v) for v in bad[0])
        factor = "A (row covariance)" if side == 0 else "B (column covariance)"
        if a == b:
            raise ValueError(
                f"`{name}`: {what} {a} is missing (NaN) in every observation, so the {factor} "
                f"entry [{a}, {a}] is not identifiable; drop that {what} or observe it")
        raise ValueError(
            f"`{name}`: {what}s {a} and {b} are never observed in the same observation, so "
            f"the {factor} entry [{a}, {b}] is not identifiable from the observed cells")
    if not assume_centered and not obs.any(axis=0).all():
        a, j = (int(v) for v in np.argwhere(~obs.any(axis=0))[0])
        raise ValueError(
            f"`{name}`: cell ({a}, {j}) is missing (NaN) in every observation, so its mean is "
            "not identifiable; use assume_centered=True for data centred beforehand, or drop it")
    n_params = p * (p + 1) // 2 + q * (q + 1) // 2 - 1 + (0 if assume_centered else p * q)
    n_seen = int(obs.sum())
    if n_seen <= n_params:
        raise ValueError(
            f"`{name}` has {n_seen} observed entries, too few for the {n_params} parameters of "
            "the separable model" + ("" if assume_centered else " with its mean")
            + " (the maximum-likelihood estimate is not determined)")


def refuse_missing(X: Any, what: str, name: str = "X") -> None:
    """``ValueError`` if the array ``X`` (not dask) holds NaN: ``what`` needs complete data.

    Says why and what to do: fit the separable model with its EM for missing entries, or
    impute first. Other input problems are left to the caller's own validation.
    """
    arr = X if isinstance(X, np.ndarray) else None
    if arr is None:
        try:
            arr = np.asarray(X)
        except Exception:  # ragged lists and the like: the caller's validation reports them
            return
    if arr.dtype.kind not in "fc" or not np.isnan(arr).any():
        return
    n = int(np.isnan(arr).sum())
    raise ValueError(
        f"`{name}` has {n} missing entr{'y' if n == 1 else 'ies'} (NaN), but {what} needs "
        "complete observations. Fitting a separable covariance handles missing entries "
        "(kronkit.separable_mle and kronkit.SeparableCovariance.fit accept NaN: EM on the "
        "observed entries); otherwise impute the missing cells or drop the incomplete "
        "observations")


def observed_scales(X: np.ndarray, obs: np.ndarray) -> np.ndarray:
    """``max_i |X_i|`` over the observed cells (p, q) (0 for a cell never observed)."""
    return np.max(np.abs(np.where(obs, X, 0.0)), axis=0)


def check_not_constant_observed(X: np.ndarray, obs: np.ndarray, assume_centered: bool) -> None:
    """``SingularFactorError`` if a cell's observed values have no spread: equal in the two or
    more observations that see it (with the mean estimated), or all 0 (``assume_centered``).

    As for complete data (:func:`kronkit._estimators.statistics.check_not_constant`), such a
    cell makes the likelihood unbounded (its variance ``A[a, a]·B[j, j]`` → 0).
    """
    lo = np.min(np.where(obs, X, np.inf), axis=0)
    hi = np.max(np.where(obs, X, -np.inf), axis=0)
    seen = obs.sum(axis=0)
    flat = (lo == hi) & ((hi == 0) & (seen >= 1) if assume_centered else seen >= 2)
    if flat.any():
        a, j = (int(v) for v in np.argwhere(flat)[0])
        what = "0 (assume_centered=True)" if assume_centered else "the same value"
        raise SingularFactorError(
            f"`X`: entry ({a}, {j}) is {what} in every observation where it is observed, so "
            "the separable covariance is singular there (the likelihood is unbounded); remove "
            "or perturb that entry", factor=0)


def drop_empty(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The observations of ``X`` (N, p, q) with at least one observed cell, and which they are.

    Observations with every entry NaN carry no information: they are dropped with a
    ``UserWarning`` that says how many; ``ValueError`` if none is left.
    """
    kept = ~np.isnan(X).all(axis=(1, 2))
    n_drop = int(X.shape[0] - kept.sum())
    if n_drop == X.shape[0]:
        raise ValueError("`X` has every entry missing (NaN): there is nothing to fit")
    if n_drop:
        import warnings

        warnings.warn(
            f"{n_drop} of the {X.shape[0]} observations of `X` have every entry missing (NaN) "
            "and are dropped (their weights are NaN)", UserWarning, stacklevel=4)
        X = X[kept]
    return X, kept


# ---------------------------------------------------------------------------------------
# The E-step
# ---------------------------------------------------------------------------------------
class Conditional(NamedTuple):
    """The E-step at ``(M, A, B)``: what the M-step and the likelihood need.

    ``Ehat`` (N, p, q) completed residuals (``X̂_i − M``: observed cells as they are, missing
    cells their conditional mean); ``delta`` (N,) observed ``x_Oᵀ Σ_OO⁻¹ x_O``; ``ld`` (N,)
    ``log det Σ_OO``; ``C`` the conditional covariances of the missing cells, one (G, k, k)
    array per group of :class:`MissingPatterns`.
    """

    Ehat: np.ndarray
    delta: np.ndarray
    ld: np.ndarray
    C: list[np.ndarray]


def conditional_step(E0: np.ndarray, fA: IterateFactor, fB: IterateFactor,
                     pat: MissingPatterns) -> Conditional:
    """The E-step for residuals ``E0`` (N, p, q) with zeros at the missing cells.

    ``O(N·p·q·(p+q))`` for ``Λ x̂⁰ = A⁻¹ X̂⁰ B⁻¹``, ``O(k³)`` per distinct pattern for the
    Cholesky factor and inverse of its ``Λ_MM``, ``O(k²)`` per observation for its
    conditional mean.
    """
    N, p, q = E0.shape
    P = p * q
    Ai, Bi = inverse(fA), inverse(fB)
    E = E0.reshape(N, P)
    R = np.matmul(np.matmul(Ai, E0), Bi).reshape(N, P)  # Λ x̂⁰
    Ehat = E.copy()
    ld = np.full(N, q * logdet(fA) + p * logdet(fB))
    Cs = []
    for grp in pat.groups:
        Lmm = np.take(Ai.ravel(), grp.row_pairs) * np.take(Bi.ravel(), grp.col_pairs)
        try:
            L = np.linalg.cholesky(Lmm)
        except np.linalg.LinAlgError as exc:  # pragma: no cover - a block of Λ > 0
            raise SingularFactorError("the precision block of the missing cells is not "
                                      "positive definite (the iterates are numerically "
                                      "singular)") from exc
        Li = np.linalg.inv(L)
        C = np.matmul(np.swapaxes(Li, 1, 2), Li)  # (Λ_MM)⁻¹
        cells = grp.cells[grp.local]
        rM = np.take_along_axis(R[grp.obs], cells, axis=1)  # (Λ x̂⁰)_M
        xM = -np.matmul(C[grp.local], rM[:, :, None])[:, :, 0]
        Ehat[grp.obs[:, None], cells] = xM
        ld_mm = 2.0 * np.sum(np.log(np.diagonal(L, axis1=1, axis2=2)), axis=1)
        ld[grp.obs] += ld_mm[grp.local]
        Cs.append(C)
    # δ_i = x̂ᵀΛx̂ = ‖L_A⁻¹ X̂_i L_B⁻ᵀ‖²: a sum of squares (x̂⁰ᵀΛx̂⁰ + (Λx̂⁰)_Mᵀx̂_M, equal in
    # exact arithmetic, cancels when A or B is ill-conditioned)
    H = np.matmul(np.matmul(inv_lower(fA), Ehat.reshape(N, p, q)), inv_lower(fB).T)
    delta = np.einsum("nab,nab->n", H, H)
    return Conditional(Ehat.reshape(N, p, q), delta, ld, Cs)


def observed_logpdf(X: np.ndarray, M: np.ndarray, A: np.ndarray, B: np.ndarray,
                    nu: float) -> tuple[np.ndarray, np.ndarray]:
    """``log f(x_{i,O_i})`` and ``δ_i = x_Oᵀ Σ_OO⁻¹ x_O`` (both (n,)) of observations ``X``
    (n, p, q) with NaN at missing cells, under location ``M`` and scale ``A⊗B``: normal
    (``nu = inf``) or the vec-form t with ``ν = nu`` on the observed entries. An observation
    with nothing observed has log-density 0 and ``δ = 0``. Cost as one E-step."""
    from .._special import t_log_kernel, t_log_normalizer

    n, p, q = X.shape
    obs = ~np.isnan(X)
    pat = MissingPatterns(~obs.reshape(n, -1), p, q)
    cond = conditional_step(np.where(obs, X - M, 0.0), factor_iterate(A, 0, 0),
                            factor_iterate(B, 1, 0), pat)
    P = pat.n_obs.astype(np.float64)
    lp = t_log_normalizer(nu, P) - 0.5 * cond.ld + t_log_kernel(nu, P, cond.delta)
    return np.asarray(lp, dtype=np.float64).reshape(n), cond.delta


# ---------------------------------------------------------------------------------------
# EM / ECME
# ---------------------------------------------------------------------------------------
#: The normal model's EM is accelerated by SQUAREM only above this fraction of missing cells:
#: plain EM contracts at about the fraction of missing information, and a SQUAREM cycle costs
#: one extra E-step, which pays only when the rate is high. E-steps to convergence (p = 5,
#: q = 6, N = 300, default tol), plain / SQUAREM: 5 % missing 7 / 12, 10 % 10 / 15, 20 % 15 /
#: 16, 30 % 24 / 23, 50 % 52 / 31, 70 % 274 / 70. The t model (ECME) always uses SQUAREM.
SQUAREM_MISSING_FRACTION = 0.25


class MissingState(NamedTuple):
    """One iterate of :class:`MissingEM`: the parameters, their E-step and ``ℓ`` there."""

    M: np.ndarray
    A: np.ndarray
    B: np.ndarray
    fA: IterateFactor
    fB: IterateFactor
    nu: float
    cond: Conditional
    ll: float


class MissingEM:
    """EM (normal) or ECME (t) for the separable model with missing cells, as a SQUAREM
    stepper (:func:`kronkit._estimators.iteration.squarem`).

    ``X`` (N, p, q) in the fit's units with NaN at the missing cells (no observation empty).
    The start ``θ0``: the observed mean of each cell (zero with ``assume_centered``),
    ``A = I``, ``B = I`` and, for the t model, ``ν`` from the ν-step (or ``nu_fixed``).
    :meth:`em` is one M-step followed by the E-step (and the ν-step) at the new parameters
    (:meth:`step` the same for the plain iteration);
    :meth:`vector` / :meth:`at` map an iterate to and from ``(M, A/c, c·B, log ν)`` with
    ``c = tr(A)/p`` (the gauge fixed, so that extrapolation does not wander along it).
    """

    def __init__(self, X: np.ndarray, assume_centered: bool, t_model: bool,
                 nu_fixed: float | None, df_bounds: tuple[float, float]):
        obs = ~np.isnan(X)
        self.N, self.p, self.q = X.shape
        self.pat = MissingPatterns(~obs.reshape(self.N, -1), self.p, self.q)
        self.X0 = np.where(obs, X, 0.0)
        self.obs = obs
        self.assume_centered = assume_centered
        self.t_model, self.nu_fixed, self.df_bounds = t_model, nu_fixed, df_bounds
        M = np.zeros((self.p, self.q)) if assume_centered else self.X0.sum(0) / obs.sum(0)
        I_p, I_q = np.eye(self.p), np.eye(self.q)
        self.start = self._evaluate(M, I_p, I_q, factor_iterate(I_p, 0, 0),
                                    factor_iterate(I_q, 1, 0), None, step_nu=True)
        self.state = self.start  # the current iterate of the plain iteration (:meth:`step`)

    def _evaluate(self, M: np.ndarray, A: np.ndarray, B: np.ndarray, fA: IterateFactor,
                  fB: IterateFactor, nu: float | None, step_nu: bool) -> MissingState:
        """The E-step at ``(M, A, B)``, the ν-step (t, when ``step_nu``, from ``nu``) and ``ℓ``."""
        E0 = np.where(self.obs, self.X0 - M, 0.0)
        cond = conditional_step(E0, fA, fB, self.pat)
        delta, ld, n_obs = cond.delta, cond.ld, self.pat.n_obs
        if not self.t_model:
            ll = -0.5 * float(np.sum(n_obs * LOG_2PI + ld + delta))
            return MissingState(M, A, B, fA, fB, math.inf, cond, ll)
        if self.nu_fixed is not None:
            nu = self.nu_fixed
        elif step_nu or nu is None:
            nu = df_step(delta, ld, n_obs, self.df_bounds, nu)
        return MissingState(M, A, B, fA, fB, nu, cond, t_loglik(nu, delta, ld, n_obs))

    def weights(self, s: MissingState) -> np.ndarray:
        """``w_i = (ν + |O_i|)/(ν + δ_i)`` at ``s`` (ones for the normal model)."""
        if not self.t_model:
            return np.ones(self.N)
        return (s.nu + self.pat.n_obs) / (s.nu + s.cond.delta)

    def em(self, s: MissingState, it: int) -> MissingState:
        """One M-step from ``s`` (mean, flip-flop sweep on the completed statistics), then the
        E-step (and ν-step) at the new parameters."""
        pat, cond = self.pat, s.cond
        w = self.weights(s)
        Xhat = cond.Ehat + s.M
        M = s.M if self.assume_centered else np.einsum("nab,n->ab", Xhat, w) / w.sum()
        Et = layout(Xhat, M, None if not self.t_model else w)
        # the conditional covariances enter unweighted (t: E[τ_i·C_i/τ_i] = C_i)
        SA = row_gram(Et, inv_lower(s.fB)) + pat.scatter(cond.C, inverse(s.fB), 0)
        A = 0.5 * (SA + SA.T) / (self.N * self.q)
        fA = factor_iterate(A, 0, it)
        SB = col_gram(Et, inv_lower(fA))[0] + pat.scatter(cond.C, inverse(fA), 1)
        B = 0.5 * (SB + SB.T) / (self.N * self.p)
        return self._evaluate(M, A, B, fA, factor_iterate(B, 1, it), s.nu, step_nu=True)

    def step(self, it: int) -> float:
        """One plain EM step from the current iterate (:func:`~kronkit._estimators.iteration.
        iterate`); returns ``ℓ`` at the new one, kept in ``state``."""
        self.state = self.em(self.state, it)
        return self.state.ll

    def first(self, it: int) -> MissingState:
        """The first iterate: one step from the start."""
        return self.em(self.start, it)

    def vector(self, s: MissingState) -> np.ndarray:
        """The flat parameter vector ``(M, A/c, c·B, log ν)`` of ``s`` (``c = tr(A)/p``)."""
        c = float(np.trace(s.A)) / self.p
        parts = [] if self.assume_centered else [s.M.ravel()]
        parts += [(s.A / c).ravel(), (s.B * c).ravel()]
        if self.t_model and self.nu_fixed is None:
            parts.append(np.array([math.log(s.nu)]))
        return np.concatenate(parts)

    def at(self, v: np.ndarray, it: int) -> MissingState | None:
        """The iterate with parameter vector ``v`` (``ν`` clipped to ``df_bounds``); None if
        its factors are not positive definite or ``ℓ`` is not finite there."""
        p, q = self.p, self.q
        i = 0 if self.assume_centered else p * q
        M = self.start.M if self.assume_centered else v[:i].reshape(p, q)
        A, B = v[i : i + p * p].reshape(p, p), v[i + p * p : i + p * p + q * q].reshape(q, q)
        A, B = 0.5 * (A + A.T), 0.5 * (B + B.T)
        nu = self.nu_fixed if self.nu_fixed is not None else math.inf
        if self.t_model and self.nu_fixed is None:
            lo, hi = self.df_bounds
            nu = float(min(max(math.exp(min(float(v[-1]), 700.0)), lo), hi))
        try:
            fA, fB = factor_iterate(A, 0, it), factor_iterate(B, 1, it)
            with np.errstate(all="ignore"):  # a wild extrapolation is rejected, not reported
                s = self._evaluate(M, A, B, fA, fB, nu, step_nu=False)
        except (np.linalg.LinAlgError, ValueError):
            return None
        return s if math.isfinite(s.ll) and np.all(np.isfinite(s.cond.delta)) else None

    def result(self, s: MissingState) -> tuple[np.ndarray, np.ndarray, np.ndarray, float,
                                               np.ndarray]:
        """``M, A, B, ν, weights`` at ``s``."""
        return s.M, s.A, s.B, s.nu, self.weights(s)
