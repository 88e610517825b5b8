r"""Pictures of separable-covariance fits and of Kronecker spectra (needs matplotlib:
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

One style for every figure, whatever the session's settings: DejaVu Sans text and math
(axis labels are math text: ``$\hat A$``, ``$\sigma_k$``, ``$\ell_k$``), 10 pt labels and 9 pt
ticks, a white background, blue for the data and red for the curve read against it. It is
applied inside :func:`matplotlib.rc_context` while the figure is built, so the user's
``matplotlib.rcParams`` are left as they were, and it is fixed on the artists, so the figure
draws the same under other settings later.

Heat-maps are readable at any size: at most 10 labelled ticks per axis, at integer positions
(every index up to 10, else multiples of 2, 5, 10, 20, …; user labels are thinned to the same
positions), a colour bar, a diverging colour scale symmetric about zero, and the values
written in the cells only for factors up to 12×12.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any, ParamSpec, TypeVar

import numpy as np

__all__ = ["convergence", "factors", "fit_summary", "spectrum"]

_P = ParamSpec("_P")
_R = TypeVar("_R")

_BLUE = "#2166ac"  # the data (σ_k bars, log-likelihood): the blue end of RdBu
_RED = "#b2182b"  # the curve read against it (error, energy): the red end of RdBu
_GREY = "#4d4d4d"
_TICK_SIZE = 9.0
_MAX_TICKS = 10  # labelled ticks per axis, at most
_ANNOTATE_AUTO = 8  # annotate=None writes the values in factors up to this size
_ANNOTATE_MAX = 12  # annotate=True writes them in factors up to this size, never beyond


def _style() -> dict[str, Any]:
    """The rcParams every kronkit figure is built under (inside ``rc_context``)."""
    from matplotlib.rcsetup import cycler

    return {
        "font.family": "sans-serif", "font.sans-serif": ["DejaVu Sans"],
        "mathtext.fontset": "dejavusans", "text.usetex": False,
        "font.size": 10.0, "axes.titlesize": 11.0, "axes.labelsize": 10.0,
        "figure.titlesize": 12.0, "legend.fontsize": 9.0,
        "xtick.labelsize": _TICK_SIZE, "ytick.labelsize": _TICK_SIZE,
        "text.color": "black", "axes.labelcolor": "black", "axes.edgecolor": "black",
        "xtick.color": "black", "ytick.color": "black",
        "figure.facecolor": "white", "axes.facecolor": "white",
        "axes.grid": False, "axes.linewidth": 0.8, "lines.linewidth": 1.5,
        "lines.markersize": 4.0, "xtick.direction": "out", "ytick.direction": "out",
        "axes.unicode_minus": True, "axes.formatter.use_mathtext": True,
        "axes.prop_cycle": cycler(color=[_BLUE, _RED, _GREY]),
        "figure.constrained_layout.w_pad": 0.08, "figure.constrained_layout.h_pad": 0.06,
        "figure.constrained_layout.wspace": 0.04,
    }


def _styled(func: Callable[_P, _R]) -> Callable[_P, _R]:
    """Run ``func`` (which builds a figure) inside the kronkit style's ``rc_context``."""

    @functools.wraps(func)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            import matplotlib
        except ImportError as exc:  # pragma: no cover - exercised only without matplotlib
            raise ImportError("kronkit.plot needs matplotlib: pip install kronkit[plot]") from exc
        style: Any = _style()  # rcParams keys are checked at run time
        with matplotlib.rc_context(style):
            fig = func(*args, **kwargs)
            _settle(fig)
            return fig

    return wrapper


def _settle(fig: Any, passes: int = 10) -> None:
    """Lay the figure out until the axes stop moving. Constrained layout around fixed-aspect
    images and colour bars moves them a little at each of the first few draws; settled here
    (inside the style, which also makes every tick), the figure draws the same every time."""
    before = None
    for _ in range(passes):
        fig.draw_without_rendering()
        now = np.array([ax.get_position().bounds for ax in fig.axes])
        if before is not None and np.array_equal(now, before):
            return
        before = now


def _figure(figsize: Any) -> Any:
    """A constrained-layout Figure of ``figsize`` (checked: two positive finite inches)."""
    from matplotlib.figure import Figure

    try:
        w, h = (float(v) for v in figsize)
        ok = math.isfinite(w) and math.isfinite(h) and w > 0 and h > 0
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"`figsize` must be two positive numbers (width, height) in inches, "
                         f"got {figsize!r}")
    return Figure(figsize=(w, h), layout="constrained")


def _finish(ax: Any) -> None:
    """Fix the tick-label size on the axes (ticks are made lazily, possibly at draw time)."""
    ax.tick_params(labelsize=_TICK_SIZE)


def _thinned_ticks(n: int, first: int = 0) -> np.ndarray:
    """At most ``_MAX_TICKS`` integer positions among ``first, …, first + n − 1``: all of them
    for ``n ≤ _MAX_TICKS``, else ``first`` and the multiples of the smallest step in
    2, 5, 10, 20, 50, … that keeps the count within the limit."""
    last = first + n - 1
    for k in range(20):
        for m in (1, 2, 5):
            step = m * 10**k
            pos = sorted({first} | set(range(-(-first // step) * step, last + 1, step)))
            if len(pos) <= _MAX_TICKS:
                return np.array(pos if n > 0 else [], dtype=int)
    raise ValueError(f"too many positions to thin: {n}")  # pragma: no cover - n < 10**20


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


def _draw_convergence(ax_ll: Any, ax_gap: Any, hist: np.ndarray, label: str) -> None:
    from matplotlib.ticker import MaxNLocator

    its = np.arange(1, hist.size + 1)
    marker = "o" if hist.size <= 50 else None
    ax_ll.plot(its, hist, marker=marker, color=_BLUE)
    ax_ll.xaxis.set_major_locator(MaxNLocator(nbins=_MAX_TICKS, integer=True))
    ax_ll.set_xlabel(r"iteration $k$")
    ax_ll.set_ylabel(r"log-likelihood $\ell_k$")
    ax_ll.set_title(f"Convergence — {label}")
    ax_ll.grid(True, alpha=0.3)
    _finish(ax_ll)
    if ax_gap is None:
        return
    gap = hist[-1] - hist[:-1]
    ok = gap > 0
    if np.any(ok):
        ax_gap.semilogy(its[:-1][ok], gap[ok], marker=marker, color=_BLUE)
    ax_gap.xaxis.set_major_locator(MaxNLocator(nbins=_MAX_TICKS, integer=True))
    ax_gap.set_xlabel(r"iteration $k$")
    ax_gap.set_ylabel(r"$\ell_{\mathrm{final}} - \ell_k$")
    ax_gap.set_title("Gap to the final value")
    ax_gap.grid(True, alpha=0.3)
    _finish(ax_gap)


@_styled
def convergence(fit: Any, *, figsize: tuple[float, float] = (9.0, 4.0)) -> Any:
    r"""Log-likelihood against iteration, and (log scale) its gap to the final value.

    Parameters
    ----------
    fit : SeparableCovariance (fitted) or SeparableMLEResult
    figsize : (float, float)
        Width and height in inches.

    Returns
    -------
    matplotlib.figure.Figure
        Two axes: ``ℓ_k`` and ``ℓ_final − ℓ_k`` (linear convergence shows as a straight line).
    """
    _, _, hist, label = _separable_parts(fit)
    fig = _figure(figsize)
    ax1, ax2 = fig.subplots(1, 2)
    _draw_convergence(ax1, ax2, hist, label)
    return fig


def _check_labels(labels: Sequence[Any] | None, n: int, name: str, which: str) -> list[str] | None:
    if labels is None:
        return None
    if isinstance(labels, str) or not hasattr(labels, "__len__"):
        raise TypeError(f"`{name}` must be a sequence of {n} labels, got {type(labels).__name__}")
    if len(labels) != n:
        raise ValueError(f"`{name}` must have length {n} (one per row of {which}), "
                         f"got {len(labels)}")
    return [str(v) for v in labels]


def _heatmap_ticks(ax: Any, n: int, labels: list[str] | None) -> None:
    """At most _MAX_TICKS labelled ticks per axis at integer cells; user labels thinned to the
    same cells. The x labels turn by 45° when they would not fit side by side."""
    pos = _thinned_ticks(n)
    text = [str(i) for i in pos] if labels is None else [labels[i] for i in pos]
    ax.set_xticks(pos, text)
    ax.set_yticks(pos, text)
    if max((len(t) for t in text), default=0) * len(text) > 40:  # would not fit side by side
        ax.tick_params(axis="x", labelrotation=45)
        for t in ax.get_xticklabels():
            t.set(ha="right", rotation_mode="anchor")


def _cell_texts(M: np.ndarray, lim: float) -> list[list[str]]:
    """The values of M with the decimals that give ``max|M|`` three significant digits."""
    decimals = min(6, max(0, 2 - math.floor(math.log10(lim))))
    texts = [[f"{v:.{decimals}f}" for v in row] for row in M]
    return [[t[1:] if t.startswith("-") and float(t) == 0 else t for t in row] for row in texts]


def _annotate(fig: Any, cells: list[tuple[Any, np.ndarray, float]]) -> None:
    """Write the values in the cells of each (axes, M, lim), after the layout has fixed the
    cell sizes: the font (at most 8 pt) is the largest that fits the widest value in a cell."""
    if not cells:
        return
    _settle(fig)
    for ax, M, lim in cells:
        texts = _cell_texts(M, lim)
        widest = max(len(t) for row in texts for t in row)
        cell_pt = min(ax.bbox.width / M.shape[1], ax.bbox.height / M.shape[0]) * 72 / fig.dpi
        size = float(np.clip(0.85 * cell_pt / (0.64 * widest), 4.0, 8.0))
        for i, row in enumerate(texts):
            for j, t in enumerate(row):
                ax.text(j, i, t, ha="center", va="center", fontsize=size, in_layout=False,
                        color="white" if abs(M[i, j]) > 0.6 * lim else "black")


def _heatmap(fig: Any, ax: Any, M: np.ndarray, title: str, labels: list[str] | None,
             cmap: Any, correlation: bool) -> float:
    """M as an image: a diverging colour scale symmetric about zero ([−1, 1] for a
    correlation, ±max|M| else), a colour bar, thinned ticks. Returns the scale's limit."""
    finite = np.abs(M[np.isfinite(M)])
    lim = 1.0 if correlation else (float(finite.max()) if finite.size else 0.0)
    lim = lim if lim > 0 else 1.0
    im = ax.imshow(M, cmap=cmap, vmin=-lim, vmax=lim, interpolation="nearest",
                   origin="upper", aspect="equal")
    bar = fig.colorbar(im, ax=ax, shrink=0.8)
    bar.set_label("correlation" if correlation else "covariance")
    _finish(bar.ax)
    ax.set_title(title)
    _heatmap_ticks(ax, M.shape[0], labels)
    _finish(ax)
    return lim


def _draw_factors(fig: Any, ax1: Any, ax2: Any, fit: Any, row_labels: Any, column_labels: Any,
                  correlation: bool, cmap: Any, annotate: bool | None) -> tuple[Any, ...]:
    """The two heat-maps of ``fit`` on ax1 (A) and ax2 (B). Returns (loglik history, label,
    the cells to annotate once the figure is laid out)."""
    A, B, hist, label = _separable_parts(fit)
    rows = _check_labels(row_labels, A.shape[0], "row_labels", "A")
    cols = _check_labels(column_labels, B.shape[0], "column_labels", "B")
    if correlation:
        A, B = _corr(A), _corr(B)
        titles = (r"row correlation of $\hat A$", r"column correlation of $\hat B$")
    else:
        titles = (r"$\hat A$ (row covariance)", r"$\hat B$ (column covariance)")
    cells = []
    for ax, M, title, labels in ((ax1, A, titles[0], rows), (ax2, B, titles[1], cols)):
        n = M.shape[0]
        lim = _heatmap(fig, ax, M, f"{title}, {n}×{n}", labels, cmap, correlation)
        if (n <= _ANNOTATE_AUTO) if annotate is None else (annotate and n <= _ANNOTATE_MAX):
            cells.append((ax, M, lim))
    return hist, label, cells


@_styled
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
    r"""Heat-maps of the fitted row covariance ``A`` and column covariance ``B``.

    Readable at any size: at most 10 labelled ticks per axis (integer positions; labels
    thinned to the same positions), a colour bar, and values in the cells only up to 12×12.

    Parameters
    ----------
    fit : SeparableCovariance (fitted) or SeparableMLEResult
    row_labels, column_labels : sequence of str, optional
        One label per row of ``A`` (length p) and of ``B`` (length q); on large factors only
        those at the labelled tick positions are shown.
    correlation : bool
        Show the correlation matrices ``D⁻½AD⁻½`` (gauge-free, colour scale fixed to
        [−1, 1]) instead of the factors.
    cmap : str
        A diverging colour map; the colour scale is symmetric about zero (``±max|A|``).
    annotate : bool, optional
        Write the values in the cells. Default: for factors up to 8×8; ``True``: up to
        12×12 (larger factors are never annotated: their cells are too small for text).
    figsize : (float, float)
        Width and height in inches.

    Returns
    -------
    matplotlib.figure.Figure
        Two image axes, ``A`` (p×p) and ``B`` (q×q), each with its colour bar. The split of
        scale between them is the fit's gauge; only ``A⊗B`` is identified.
    """
    fig = _figure(figsize)
    ax1, ax2 = fig.subplots(1, 2)
    _, label, cells = _draw_factors(fig, ax1, ax2, fit, row_labels, column_labels,
                                    correlation, cmap, annotate)
    fig.suptitle(f"Separable fit — {label}")
    _annotate(fig, cells)
    return fig


def _corr(M: np.ndarray) -> np.ndarray:
    d = 1.0 / np.sqrt(np.diagonal(M))
    return M * d[:, None] * d[None, :]


@_styled
def fit_summary(fit: Any, *, row_labels: Sequence[str] | None = None,
                column_labels: Sequence[str] | None = None,
                figsize: tuple[float, float] = (13.0, 4.0), correlation: bool = False,
                annotate: bool | None = None) -> Any:
    r"""One figure with the two factor heat-maps and the convergence curve (used by the CLI).

    Parameters
    ----------
    fit : SeparableCovariance (fitted) or SeparableMLEResult
    row_labels, column_labels, correlation, annotate
        As in :func:`factors`.
    figsize : (float, float)
        Width and height in inches.

    Returns
    -------
    matplotlib.figure.Figure
        The heat-maps of ``A`` and ``B`` (as :func:`factors`) and the log-likelihood per
        iteration (the first panel of :func:`convergence`).
    """
    fig = _figure(figsize)
    ax1, ax2, ax3 = fig.subplots(1, 3)
    hist, label, cells = _draw_factors(fig, ax1, ax2, fit, row_labels, column_labels,
                                       correlation, "RdBu_r", annotate)
    _draw_convergence(ax3, None, hist, label)
    _annotate(fig, cells)
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


@_styled
def spectrum(kpca: Any, *, figsize: tuple[float, float] = (6.0, 4.0)) -> Any:
    r"""A Kronecker spectrum: the singular values ``σ_k`` (bars, log scale) and, on a twin
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
        Width and height in inches.

    Returns
    -------
    matplotlib.figure.Figure
        Axes ``[σ_k bars, twin axis]``; at most 10 labelled ticks on the ``k`` axis (1 and
        multiples of 2, 5, 10, … beyond 10 terms). Each axis label has its curve's colour.
    """
    s, curve, is_error, title = _spectrum_parts(kpca)
    k = np.arange(1, s.size + 1)
    fig = _figure(figsize)
    ax = fig.subplots()
    ax.bar(k, s, color=_BLUE, alpha=0.75, label=r"$\sigma_k$")
    if s.size and np.all(s > 0):
        ax.set_yscale("log")
    ax.set_xticks(_thinned_ticks(k.size, first=1))
    ax.set_xlim(0.4, k.size + 0.6)
    ax.set_xlabel(r"term $k$")
    ax.set_ylabel(r"Kronecker singular value $\sigma_k$", color=_BLUE)
    ax.set_title(title)
    _finish(ax)
    if curve is None:
        return fig
    ax2 = ax.twinx()
    marker: str | None = ("s" if is_error else "o") if k.size <= 30 else None
    if is_error:
        pos = curve > 0
        ax2.plot(k[pos], curve[pos], color=_RED, marker=marker, linestyle="--",
                 label="relative error after k terms")
        if np.any(pos):
            ax2.set_yscale("log")
        ax2.set_ylabel(r"relative error $\|M - M_k\|_F \,/\, \|M\|_F$", color=_RED)
    else:
        ax2.plot(k, curve, color=_RED, marker=marker, label="explained energy")
        ax2.set_ylim(0.0, 1.02)
        ax2.set_ylabel(r"explained energy $\Sigma_{j \leq k}\, \sigma_j^2 \,/\, \|S\|_F^2$",
                       color=_RED)
    _finish(ax2)
    return fig
