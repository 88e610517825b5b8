"""``kronkit fit``: fit a separable covariance to matrix-valued data in a file."""

from __future__ import annotations

import math
import os
import re
import warnings
from typing import Any

import click
import numpy as np

from ._estimators_mle import GAUGES

__all__ = ["fit"]


def _parse_shape(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    m = re.fullmatch(r"\s*(\d+)\s*[,x×]\s*(\d+)\s*", text)
    if not m or int(m.group(1)) < 1 or int(m.group(2)) < 1:
        raise click.BadParameter(f"expected two positive integers 'p,q', got {text!r}",
                                 param_hint="--shape")
    return int(m.group(1)), int(m.group(2))


def _load_samples(path: str, shape: tuple[int, int] | None) -> np.ndarray:
    from ._io import load_cli_array

    arr = load_cli_array(path, "DATA")
    arr = np.asarray(arr, dtype=np.float64)
    if arr.ndim == 3:
        if shape is not None and shape != arr.shape[1:]:
            raise click.BadParameter(
                f"--shape {shape[0]},{shape[1]} does not match the data of shape {arr.shape}",
                param_hint="--shape")
        return arr
    if arr.ndim == 2:
        if shape is None:
            raise click.BadParameter(
                f"the data are 2-D (shape {arr.shape}: N rows of length P); give the matrix "
                "shape of a row with --shape p,q (rows are row-major flattenings)",
                param_hint="--shape")
        if shape[0] * shape[1] != arr.shape[1]:
            raise click.BadParameter(
                f"--shape {shape[0]},{shape[1]} needs rows of length {shape[0] * shape[1]}, but "
                f"the data have shape {arr.shape}", param_hint="--shape")
        return arr.reshape(arr.shape[0], *shape)
    raise click.BadParameter(
        f"the data must be 3-D (N, p, q) or 2-D (N, P) with --shape, got shape {arr.shape}",
        param_hint="DATA")


def _fmt(x: float) -> str:
    return "∞" if math.isinf(x) else f"{x:.10g}"


@click.command("fit")
@click.argument("data", type=click.Path(dir_okay=False))
@click.option("--shape", "shape_text", default=None, metavar="P,Q",
              help="Matrix shape of one observation; required for 2-D data (rows of length P·Q, "
                   "row-major).")
@click.option("--model", type=click.Choice(["normal", "t"]), default="normal", show_default=True,
              help="Matrix normal, or vec-form multivariate t with scale A⊗B.")
@click.option("--df", type=float, default=None,
              help="Degrees of freedom of the t model, held fixed (default: estimated).")
@click.option("--assume-centered", is_flag=True,
              help="The data are already centred (location fixed at zero).")
@click.option("--max-iter", type=click.IntRange(min=1), default=500, show_default=True)
@click.option("--tol", type=click.FloatRange(min=0.0), default=1e-9, show_default=True,
              help="Stop when the log-likelihood changes by at most tol·N·P.")
@click.option("--gauge", type=click.Choice(GAUGES), default="trace", show_default=True,
              help="How the scale is split between A and B.")
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False),
              help="Output .npz: location, row_covariance, column_covariance, df, loglik, ...")
@click.option("--plot", "plot_path", default=None, type=click.Path(dir_okay=False),
              help="Save a picture of the factors and the convergence (needs matplotlib).")
@click.option("--no-progress", is_flag=True, help="Do not show the progress bar.")
def fit(data: str, shape_text: str | None, model: str, df: float | None, assume_centered: bool,
        max_iter: int, tol: float, gauge: str, out_path: str, plot_path: str | None,
        no_progress: bool) -> None:
    """Fit a separable covariance A⊗B to the matrix observations in DATA (.npy, .npz, .csv).

    DATA holds N observations of shape (p, q): a 3-D array (N, p, q), or a 2-D array (N, P)
    with --shape p,q (a .csv is always 2-D). Prints a summary (log-likelihood, iterations,
    ν, the Gaussian separability test when N allows it) and saves the factors to --out.
    """
    from rich.console import Console
    from rich.table import Table

    from ._errors import ConvergenceWarning
    from ._estimators import SeparableCovariance
    from ._estimators_mle import separability_test

    if df is not None and model != "t":
        raise click.BadParameter("--df is used only with --model t", param_hint="--df")
    X = _load_samples(data, _parse_shape(shape_text))
    N, p, q = X.shape
    con = Console(highlight=False, soft_wrap=True)
    est = SeparableCovariance(distribution=model, df=df, assume_centered=assume_centered,
                              max_iter=max_iter, tol=tol, gauge=gauge,
                              progress=not no_progress)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        try:
            est.fit(X)
        except (ValueError, TypeError, np.linalg.LinAlgError) as exc:
            raise click.ClickException(f"the fit failed: {exc}") from exc
    notes = [str(w.message) for w in caught if issubclass(w.category, ConvergenceWarning)]

    test: Any = None
    test_note = ""
    if p >= 2 and q >= 2:
        try:
            test = separability_test(X, assume_centered=assume_centered)
        except (ValueError, np.linalg.LinAlgError) as exc:
            test_note = str(exc)
    else:
        test_note = "p = 1 or q = 1: every covariance is separable"

    table = Table(title=f"kronkit fit — {os.path.basename(data)}")
    table.add_column("quantity")
    table.add_column("value", justify="right")
    table.add_row("observations N × (p, q)", f"{N} × ({p}, {q})")
    table.add_row("model", "matrix normal" if model == "normal" else "vec-form t (scale A⊗B)")
    table.add_row("log-likelihood", f"{est.loglik_:.10g}")
    table.add_row("mean log-likelihood", f"{est.loglik_ / N:.10g}")
    table.add_row("iterations", str(est.n_iter_))
    table.add_row("converged", "yes" if est.converged_ else "[yellow]no[/yellow]")
    if model == "t":
        table.add_row("ν (df)", _fmt(est.df_) + (" (fixed)" if df is not None else " (estimated)"))
    table.add_row("gauge", f"{gauge}")
    if test is not None:
        table.add_row("separability LRT statistic", f"{test.statistic:.6g}")
        table.add_row("separability LRT df", str(test.df))
        table.add_row("separability LRT p-value", f"{test.pvalue:.4g}")
    else:
        table.add_row("separability test", "n/a (see below)")
    con.print(table)
    if test is None:
        con.print(f"separability test not available: {test_note}")
    for note in notes:
        con.print(f"[yellow]warning:[/yellow] {note}")

    out: dict[str, Any] = {
        "location": est.location_,
        "row_covariance": est.row_covariance_,
        "column_covariance": est.column_covariance_,
        "df": np.float64(est.df_),
        "loglik": np.float64(est.loglik_),
        "loglik_history": est.loglik_history_,
        "n_iter": np.int64(est.n_iter_),
        "converged": np.bool_(est.converged_),
        "weights": est.weights_,
        "shape": np.array([p, q], dtype=np.int64),
        "model": np.array(model),
        "gauge": np.array(gauge),
    }
    if test is not None:
        out.update(separability_statistic=np.float64(test.statistic),
                   separability_df=np.int64(test.df),
                   separability_pvalue=np.float64(test.pvalue))
    if not out_path.endswith(".npz"):
        out_path += ".npz"
    try:
        np.savez(out_path, **out)
    except OSError as exc:
        raise click.ClickException(f"could not write {out_path}: {exc}") from exc
    con.print(f"saved to {out_path}")

    if plot_path is not None:
        try:
            from . import plot as kplot

            fig = kplot.fit_summary(est)
        except ImportError as exc:
            raise click.ClickException(str(exc)) from exc
        try:
            fig.savefig(plot_path, dpi=120)
        except (OSError, ValueError) as exc:
            raise click.ClickException(f"could not write {plot_path}: {exc}") from exc
        con.print(f"picture saved to {plot_path}")
