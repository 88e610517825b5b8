"""``kronkit fit``: fit a separable covariance to matrix-valued data in a file."""

from __future__ import annotations

import math
import os
import re
import warnings
from typing import Any

import click
import numpy as np

from .. import _io
from .._estimators import GAUGES
from .._samples import as_samples, parse_shape

__all__ = ["fit"]


def _parse_shape(text: str | None) -> tuple[int, int] | None:
    """``"p,q"`` (or ``pxq``, ``p×q``) to ``(p, q)``; ``None`` stays ``None``."""
    if text is None:
        return None
    m = re.fullmatch(r"\s*(\d+)\s*[,x×]\s*(\d+)\s*", text)
    try:
        if m is None:
            raise ValueError(text)
        return parse_shape((int(m.group(1)), int(m.group(2))), "--shape")
    except ValueError as exc:
        raise _io.InputError(f"--shape: expected two positive integers 'p,q', got {text!r}") from exc


def _load_samples(path: str, shape: tuple[int, int] | None) -> np.ndarray:
    """The observations in ``path`` as an (N, p, q) array, by the samples' shape rule
    (:func:`~kronkit._samples.as_samples`), with the command line's messages: a 2-D file
    needs ``--shape`` (as 2-D ``X`` needs ``shape`` in the library)."""
    arr = _io.load_cli_array(path, "DATA")  # float64, finite, not empty
    if arr.ndim == 2 and shape is None:
        raise _io.InputError(
            f"--shape: the data are 2-D (shape {arr.shape}: N rows of length P); give the "
            "matrix shape of a row with --shape p,q (rows are row-major flattenings)")
    try:
        return as_samples(arr, shape, "DATA")
    except ValueError as exc:
        if arr.ndim == 3 and shape is not None:
            raise _io.InputError(f"--shape: {shape[0]},{shape[1]} does not match the data of "
                                 f"shape {arr.shape}") from exc
        if arr.ndim == 2 and shape is not None:
            raise _io.InputError(
                f"--shape: {shape[0]},{shape[1]} needs rows of length {shape[0] * shape[1]}, "
                f"but the data have shape {arr.shape}") from exc
        raise _io.InputError(
            f"DATA: {path} must hold a 3-D array (N, p, q) or a 2-D one (N, P) with --shape, "
            f"got shape {arr.shape}") from exc


def _fmt(x: float) -> str:
    return "∞" if math.isinf(x) else f"{x:.10g}"


#: How the separability test's p-value was computed, as printed.
_PVALUE_METHODS = {
    "scaled-chi2": "cumulant-matched χ²",
    "chi2": "asymptotic χ²",
    "bartlett": "Bartlett-corrected χ²",
    "monte-carlo": "Monte Carlo",
    "parametric-bootstrap": "parametric bootstrap",
}


def _separability(X: np.ndarray, model: str, assume_centered: bool, seed: int | None,
                  simulations: int | None) -> tuple[Any, str]:
    """(the test result or None, a note): the likelihood-ratio test of A⊗B against an
    unstructured covariance, with a p-value valid for the fitted model: the Gaussian null, or
    for ``model="t"`` the t null (a parametric bootstrap; the Gaussian p-value is not valid
    for heavy tails)."""
    from .. import separability_test

    _, p, q = X.shape
    if p < 2 or q < 2:
        return None, "not applicable: p = 1 or q = 1, every covariance is separable"
    kwargs: dict[str, Any] = {"assume_centered": assume_centered, "distribution": model,
                              "random_state": seed}
    if simulations is not None:
        kwargs["n_simulations"] = simulations
    try:
        return separability_test(X, **kwargs), ""
    except (ValueError, np.linalg.LinAlgError) as exc:
        return None, f"not available: {exc}"


def _test_label(test: Any) -> tuple[str, str]:
    """('Gaussian separability LRT' or 'separability LRT (t null)', 'p-value method')."""
    dist = getattr(test, "distribution", "normal")
    name = "Gaussian separability LRT" if dist == "normal" else f"separability LRT ({dist} null)"
    method = str(getattr(test, "method", "chi2"))
    label = _PVALUE_METHODS.get(method, method)
    n_sim = int(getattr(test, "n_simulations", 0) or 0)
    return name, f"{label}, {n_sim} draws" if n_sim else label


def _fit_separable(X: np.ndarray, **options: Any) -> tuple[Any, list[str]]:
    """(:func:`~kronkit.separable_mle` of ``X`` with ``options``, the convergence notes it
    warned): a ``ValueError`` (too few observations, ...) is about DATA (exit status 2), a
    ``LinAlgError`` a numerical failure (1); other warnings go to the usual printer."""
    from .._errors import ConvergenceWarning
    from .._estimators import separable_mle

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        try:
            res = separable_mle(X, **options)
        except np.linalg.LinAlgError:  # valid data, failed computation: exit status 1
            raise
        except ValueError as exc:  # too few observations, ... : about DATA
            raise _io.InputError(f"DATA: {exc}") from exc
    for w in caught:  # warnings other than the convergence notes go to the usual printer
        if not issubclass(w.category, ConvergenceWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return res, [str(w.message) for w in caught if issubclass(w.category, ConvergenceWarning)]


def _summary_table(name: str, dims: tuple[int, ...], res: Any, test: Any, model: str,
                   df_fixed: bool, gauge: str) -> Any:
    """The printed summary of a fit of N observations of shape (p, q) (``dims``)."""
    from rich.table import Table

    N, p, q = dims
    table = Table(title=f"kronkit fit — {name}")
    table.add_column("quantity")
    table.add_column("value", justify="right")
    table.add_row("observations N × (p, q)", f"{N} × ({p}, {q})")
    table.add_row("model", "matrix normal" if model == "normal" else "vec-form t (scale A⊗B)")
    table.add_row("log-likelihood", f"{res.loglik:.10g}")
    table.add_row("mean log-likelihood", f"{res.loglik / N:.10g}")
    table.add_row("iterations", str(res.n_iter))
    table.add_row("converged", "yes" if res.converged else "[yellow]no[/yellow]")
    if model == "t":
        table.add_row("ν (df)", _fmt(res.df) + (" (fixed)" if df_fixed else " (estimated)"))
    table.add_row("gauge", f"{gauge}")
    if test is not None:
        name, method = _test_label(test)
        table.add_row(f"{name} statistic", f"{test.statistic:.6g}")
        table.add_row(f"{name} df", str(test.df))
        table.add_row(f"{name} p-value", f"{test.pvalue:.4g} ({method})")
    else:
        table.add_row("separability test", "n/a (see below)")
    return table


def _output_arrays(res: Any, test: Any, shape: tuple[int, ...], model: str,
                   gauge: str) -> dict[str, Any]:
    """The arrays ``--out`` saves: the fit, and the separability test when it ran."""
    out: dict[str, Any] = {
        "location": res.location,
        "row_covariance": res.row_covariance,
        "column_covariance": res.column_covariance,
        "df": np.float64(res.df),
        "loglik": np.float64(res.loglik),
        "loglik_history": res.loglik_history,
        "n_iter": np.int64(res.n_iter),
        "converged": np.bool_(res.converged),
        "weights": res.weights,
        "shape": np.array(shape, dtype=np.int64),
        "model": np.array(model),
        "gauge": np.array(gauge),
    }
    if test is not None:
        out.update(separability_statistic=np.float64(test.statistic),
                   separability_df=np.int64(test.df),
                   separability_pvalue=np.float64(test.pvalue),
                   separability_method=np.array(str(getattr(test, "method", "chi2"))),
                   separability_simulations=np.int64(getattr(test, "n_simulations", 0) or 0),
                   separability_distribution=np.array(
                       str(getattr(test, "distribution", "normal"))))
    return out


@click.command("fit")
@click.argument("data", type=click.Path(dir_okay=False))
@click.option("--shape", "shape_text", default=None, metavar="P,Q",
              help="Matrix shape of one observation; required for 2-D data (rows of length P·Q, "
                   "row-major).")
@click.option("--model", type=click.Choice(["normal", "t"]), default="normal", show_default=True,
              help="Matrix normal, or vec-form multivariate t with scale A⊗B.")
@click.option("--df", type=_io.FiniteFloat(0.0, low_open=True), default=None,
              help="Degrees of freedom of the t model, held fixed (default: estimated).")
@click.option("--assume-centered", is_flag=True,
              help="The data are already centred (location fixed at zero).")
@click.option("--max-iter", type=click.IntRange(min=1), default=500, show_default=True)
@click.option("--tol", type=_io.FiniteFloat(0.0), default=1e-9, show_default=True,
              help="Stop when the log-likelihood changes by at most tol·N·P.")
@click.option("--gauge", type=click.Choice(GAUGES), default="trace", show_default=True,
              help="How the scale is split between A and B.")
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False),
              help="Output .npz: location, row_covariance, column_covariance, df, loglik, ...")
@click.option("--plot", "plot_path", default=None, type=click.Path(dir_okay=False),
              help="Save a picture of the factors and the convergence (needs matplotlib; the "
                   "extension picks the format, none means .png).")
@click.option("--no-progress", is_flag=True, help="Do not show the progress bar.")
@click.option("--no-test", is_flag=True,
              help="Skip the separability test (for --model t it is a parametric bootstrap, "
                   "which can take longer than the fit).")
@click.option("--simulations", type=click.IntRange(min=1), default=None,
              help="Simulated data sets behind a Monte Carlo or bootstrap p-value "
                   "(default: separability_test's).")
@click.option("--seed", type=click.IntRange(min=0), default=None,
              help="Seed of those simulations (default: fresh draws).")
@_io.cli_errors
def fit(data: str, shape_text: str | None, model: str, df: float | None, assume_centered: bool,
        max_iter: int, tol: float, gauge: str, out_path: str, plot_path: str | None,
        no_progress: bool, no_test: bool, simulations: int | None, seed: int | None) -> None:
    """Fit a separable covariance A⊗B to the matrix observations in DATA (.npy, .npz, .csv).

    DATA holds N observations of shape (p, q): a 3-D array (N, p, q), or a 2-D array (N, P)
    with --shape p,q (a .csv is always 2-D). Prints a summary (log-likelihood, iterations,
    ν, and when N allows it the separability likelihood-ratio test with how its p-value was
    computed: under the Gaussian null for --model normal, a parametric bootstrap under the
    separable t for --model t) and saves the factors to --out.
    """
    if df is not None and model != "t":
        raise _io.InputError("--df is used only with --model t")
    shape = _parse_shape(shape_text)
    out_path = _io.check_output_path(out_path, "--out")
    if plot_path is not None:
        plot_path = _io.check_plot_path(plot_path, "--plot")
    X = _load_samples(data, shape)
    con = _io.make_console()
    res, notes = _fit_separable(X, distribution=model, df=df, assume_centered=assume_centered,
                                max_iter=max_iter, tol=tol, gauge=gauge,
                                progress=not no_progress)
    if no_test:
        test, test_note = None, "skipped (--no-test)"
    elif no_progress:
        test, test_note = _separability(X, model, assume_centered, seed, simulations)
    else:
        with con.status("separability test…"):
            test, test_note = _separability(X, model, assume_centered, seed, simulations)

    con.print(_summary_table(os.path.basename(data), X.shape, res, test, model,
                             df is not None, gauge))
    if test is None:
        con.print(f"separability test: {test_note}")
    for note in notes:
        con.print(f"[yellow]warning:[/yellow] {note}")
    out = _output_arrays(res, test, X.shape[1:], model, gauge)
    _io.save_npz(out_path, out)
    con.print(f"saved to {out_path}")
    if plot_path is not None:
        from .. import plot as kplot

        _io.save_figure(kplot.fit_summary(res), plot_path)
        con.print(f"picture saved to {plot_path}")
