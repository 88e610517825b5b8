"""Pictures of separable-covariance fits and of Kronecker spectra (needs matplotlib:
``pip install kronkit[plot]``).

Every function returns a :class:`matplotlib.figure.Figure` built without ``pyplot`` (no global
figure state, no backend switch): save it with ``fig.savefig("fit.png")``, or let Jupyter
display it. Not imported by ``import kronkit``; use ``import kronkit.plot``.

* :func:`convergence` — the log-likelihood per iteration of a :class:`kronkit.SeparableCovariance`
  (or a :func:`kronkit.separable_mle` result) and its gap to the final value.
* :func:`spectrum` — a Kronecker spectrum: the singular values with the cumulative explained
  energy of a :class:`kronkit.KroneckerPCA` (the curve for choosing the number of terms), or
  with the relative error after k terms of a :func:`kronkit.kpsvd` (the ``kronkit nkp --plot``
  picture).
* :func:`factors` — heat-maps of the fitted row and column covariances.
* :func:`fit_summary` — both factors and the convergence curve in one figure.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["convergence", "factors", "fit_summary", "spectrum"]


def _figure(figsize: tuple[float, float]) -> Any:
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:  # pragma: no cover - exercised only without matplotlib
        raise ImportError("kronkit.plot needs matplotlib: pip install kronkit[plot]") from exc
    return Figure(figsize=figsize, layout="constrained")


def _separable_parts(fit: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """(A, B, loglik history, label) from a fitted SeparableCovariance or a SeparableMLEResult."""
    from ._estimators import SeparableMLEResult

    if isinstance(fit, SeparableMLEResult):
        dist, df = fit.distribution, fit.df
        A, B, hist = fit.row_covariance, fit.column_covariance, fit.loglik_history
    elif hasattr(fit, "row_covariance_") and hasattr(fit, "loglik_history_"):
        dist, df = ("normal" if np.isinf(fit.df_) else "t"), fit.df_
        A, B, hist = fit.row_covariance_, fit.column_covariance_, fit.loglik_history_
    elif type(fit).__name__ == "SeparableCovariance":
        raise ValueError("this SeparableCovariance is not fitted yet; call `fit(X)` first")
    else:
        raise TypeError(
            "`fit` must be a fitted kronkit.SeparableCovariance or a kronkit.SeparableMLEResult, "
            f"got {type(fit).__name__}"
        )
    label = "normal" if dist == "normal" else f"t (ν = {df:.4g})"
    return np.asarray(A), np.asarray(B), np.asarray(hist), label


def _draw_convergence(fig: Any, ax_ll: Any, ax_gap: Any, hist: np.ndarray, label: str) -> None:
    its = np.arange(1, hist.size + 1)
    from matplotlib.ticker import MaxNLocator

    ax_ll.plot(its, hist, marker="o", ms=3)
    ax_ll.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax_ll.set_xlabel("iteration")
    ax_ll.set_ylabel("log-likelihood")
    ax_ll.set_title(f"Convergence — {label}")
    if ax_gap is None:
        return
    gap = hist[-1] - hist[:-1]
    ok = gap > 0
    if np.any(ok):
        ax_gap.semilogy(its[:-1][ok], gap[ok], marker="o", ms=3)
    ax_gap.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax_gap.set_xlabel("iteration")
    ax_gap.set_ylabel("final − current log-likelihood")
    ax_gap.set_title("Gap to the final value")


def convergence(fit: Any, *, figsize: tuple[float, float] = (9.0, 3.5)) -> Any:
    """Log-likelihood against iteration, and (log scale) its gap to the final value.

    Parameters
    ----------
    fit : SeparableCovariance (fitted) or SeparableMLEResult
    figsize : (float, float)

    Returns
    -------
    matplotlib.figure.Figure
        Two axes: ``ℓ_k`` and ``ℓ_final − ℓ_k`` (linear convergence shows as a straight line).
    """
    _, _, hist, label = _separable_parts(fit)
    fig = _figure(figsize)
    ax1, ax2 = fig.subplots(1, 2)
    _draw_convergence(fig, ax1, ax2, hist, label)
    return fig


def _heatmap(fig: Any, ax: Any, M: np.ndarray, title: str, labels: Sequence[str] | None,
             cmap: str, annotate: bool | None) -> None:
    lim = float(np.max(np.abs(M))) if M.size else 1.0
    im = ax.imshow(M, cmap=cmap, vmin=-lim, vmax=lim, interpolation="nearest")
    fig.colorbar(im, ax=ax, shrink=0.8)
    ax.set_title(title)
    n = M.shape[0]
    if labels is not None:
        if len(labels) != n:
            raise ValueError(f"labels for the {title.split()[0]} factor must have length {n}, "
                             f"got {len(labels)}")
        ax.set_xticks(range(n), [str(v) for v in labels], rotation=90 if n > 6 else 0)
        ax.set_yticks(range(n), [str(v) for v in labels])
    elif n <= 30:
        ax.set_xticks(range(n))
        ax.set_yticks(range(n))
    if annotate is None:
        annotate = n <= 8
    if annotate:
        for i in range(n):
            for j in range(n):
                ax.text(j, i, f"{M[i, j]:.3g}", ha="center", va="center", fontsize=8,
                        color="white" if abs(M[i, j]) > 0.6 * lim else "black")


def factors(
    fit: Any,
    *,
    row_labels: Sequence[str] | None = None,
    column_labels: Sequence[str] | None = None,
    correlation: bool = False,
    cmap: str = "RdBu_r",
    annotate: bool | None = None,
    figsize: tuple[float, float] = (9.0, 4.0),
) -> Any:
    """Heat-maps of the fitted row covariance ``A`` and column covariance ``B``.

    Parameters
    ----------
    fit : SeparableCovariance (fitted) or SeparableMLEResult
    row_labels, column_labels : sequence of str, optional
        Tick labels (length p and q).
    correlation : bool
        Show the correlation matrices ``D⁻½AD⁻½`` (gauge-free) instead of the factors.
    cmap : str
        A diverging colour map; the colour scale is symmetric about zero.
    annotate : bool, optional
        Write the values in the cells (default: for factors up to 8×8).
    figsize : (float, float)

    Returns
    -------
    matplotlib.figure.Figure
        Two axes, ``A`` (p×p) and ``B`` (q×q). The split of scale between them is the fit's
        gauge; only ``A⊗B`` is identified.
    """
    A, B, _, label = _separable_parts(fit)
    if correlation:
        A, B = _corr(A), _corr(B)
    fig = _figure(figsize)
    ax1, ax2 = fig.subplots(1, 2)
    what = "correlation" if correlation else "covariance"
    _heatmap(fig, ax1, A, f"row {what} A ({A.shape[0]}×{A.shape[0]})", row_labels, cmap,
             annotate)
    _heatmap(fig, ax2, B, f"column {what} B ({B.shape[0]}×{B.shape[0]})", column_labels, cmap,
             annotate)
    fig.suptitle(f"Separable fit — {label}")
    return fig


def _corr(M: np.ndarray) -> np.ndarray:
    d = 1.0 / np.sqrt(np.diagonal(M))
    return M * d[:, None] * d[None, :]


def fit_summary(fit: Any, *, row_labels: Sequence[str] | None = None,
                column_labels: Sequence[str] | None = None,
                figsize: tuple[float, float] = (13.0, 4.0)) -> Any:
    """One figure with the two factor heat-maps and the convergence curve (used by the CLI)."""
    A, B, hist, label = _separable_parts(fit)
    fig = _figure(figsize)
    ax1, ax2, ax3 = fig.subplots(1, 3)
    _heatmap(fig, ax1, A, f"row covariance A ({A.shape[0]}×{A.shape[0]})", row_labels,
             "RdBu_r", None)
    _heatmap(fig, ax2, B, f"column covariance B ({B.shape[0]}×{B.shape[0]})", column_labels,
             "RdBu_r", None)
    _draw_convergence(fig, ax3, None, hist, label)
    return fig


def _spectrum_parts(kpca: Any) -> tuple[np.ndarray, np.ndarray | None, bool, str]:
    """(σ_k, the curve of the twin axis or None, whether that curve is the relative error
    after k terms (else the explained energy), the title) of a Kronecker spectrum."""
    from ._estimators import KroneckerPCAResult
    from ._kpsvd import KPSVDResult, NearestKronResult

    if isinstance(kpca, KPSVDResult):
        (m1, n1), (m2, n2) = kpca.A.shape[1:], kpca.B.shape[1:]
        return (np.asarray(kpca.s), kpca.tail_errors(relative=True), True,
                f"Kronecker spectrum ({m1}×{n1} ⊗ {m2}×{n2})")
    if isinstance(kpca, NearestKronResult):
        rel = kpca.rel_error
        return (np.array([kpca.sigma]), None if rel is None else np.array([rel]), True,
                "nearest Kronecker product")
    if isinstance(kpca, KroneckerPCAResult):
        s, energy = kpca.singular_values, kpca.explained_energy
    elif hasattr(kpca, "singular_values_") and hasattr(kpca, "explained_energy_"):
        s, energy = kpca.singular_values_, kpca.explained_energy_
    elif type(kpca).__name__ == "KroneckerPCA":
        raise ValueError("this KroneckerPCA is not fitted yet; call `fit(X)` first")
    else:
        raise TypeError("`kpca` must be a fitted kronkit.KroneckerPCA, a "
                        "kronkit.KroneckerPCAResult, a kronkit.KPSVDResult or a "
                        f"kronkit.NearestKronResult, got {type(kpca).__name__}")
    return (np.asarray(s), None if energy is None else np.asarray(energy), False,
            "Kronecker PCA spectrum")


def spectrum(kpca: Any, *, figsize: tuple[float, float] = (6.0, 4.0)) -> Any:
    """A Kronecker spectrum: the singular values ``σ_k`` (bars, log scale) and, on a twin
    axis, what the first ``k`` terms leave out (relative error) or capture (energy).

    Parameters
    ----------
    kpca : KroneckerPCA (fitted), KroneckerPCAResult, KPSVDResult or NearestKronResult
        A Kronecker PCA: the twin axis shows the cumulative explained energy
        ``Σ_{j≤k} σ_j² / ‖S‖_F²`` — fit with a generous ``n_terms`` and read off where the
        curve flattens. A Kronecker-product SVD (:func:`kronkit.kpsvd`; ``kronkit nkp
        --plot``) or a nearest Kronecker product (:func:`kronkit.nearest_kron`, one term):
        the twin axis shows the relative error after ``k`` terms, ``‖M − M_k‖_F / ‖M‖_F``
        (:meth:`KPSVDResult.tail_errors`), log scale. The twin axis is left out when that
        curve is unknown (``None``).
    figsize : (float, float)

    Returns
    -------
    matplotlib.figure.Figure
        Axes ``[σ_k bars, twin axis]``.
    """
    s, curve, is_error, title = _spectrum_parts(kpca)
    k = np.arange(1, s.size + 1)
    fig = _figure(figsize)
    ax = fig.subplots()
    ax.bar(k, s, color="tab:blue", alpha=0.7, label="σ_k")
    if s.size and np.all(s > 0):
        ax.set_yscale("log")
    _integer_ticks(ax, k)
    ax.set_xlabel("term k")
    ax.set_ylabel("Kronecker singular value σ_k")
    ax.set_title(title)
    if curve is None:
        return fig
    ax2 = ax.twinx()
    if is_error:
        pos = curve > 0
        ax2.plot(k[pos], curve[pos], color="tab:red", marker="s", linestyle="--",
                 label="relative error after k terms")
        if np.any(pos):
            ax2.set_yscale("log")
        ax2.set_ylabel("‖M − M_k‖_F / ‖M‖_F")
    else:
        ax2.plot(k, curve, color="tab:red", marker="o", label="explained energy")
        ax2.set_ylim(0.0, 1.02)
        ax2.set_ylabel("cumulative Σσ² / ‖S‖_F²")
    return fig


def _integer_ticks(ax: Any, k: np.ndarray) -> None:
    """Ticks at every k up to 30 terms, else at integers chosen by matplotlib."""
    from matplotlib.ticker import MaxNLocator

    if k.size <= 30:
        ax.set_xticks(k)
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
