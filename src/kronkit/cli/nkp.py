"""``kronkit nkp``: nearest Kronecker product / Kronecker-product SVD of a matrix in a file.

The command object :data:`nkp` is registered on the ``kronkit`` click group by
``cli/__init__.py``.
"""

from __future__ import annotations

import math
import re
from typing import Any

import click
import numpy as np

from .. import _io

__all__ = ["nkp", "parse_shapes_option"]

_SHAPE_RE = re.compile(r"^\s*(\d+)\s*(?:[xX×]\s*(\d+))?\s*$")


def parse_shapes_option(text: str) -> tuple[tuple[int, int], ...]:
    """``"4x4,3x3"`` (or ``"4,3"`` for square blocks) to ``((4, 4), (3, 3))``."""
    out = []
    for part in text.split(","):
        m = _SHAPE_RE.match(part)
        if m is None:
            raise _io.InputError(
                f"--shapes: expected factor shapes like 4x4,3x3 (or 4,3 for square factors), "
                f"got {text!r}")
        rows = int(m.group(1))
        cols = int(m.group(2)) if m.group(2) is not None else rows
        if rows < 1 or cols < 1:
            raise _io.InputError(f"--shapes: factor shapes must be positive, got {part.strip()!r}")
        out.append((rows, cols))
    if len(out) < 2:
        raise _io.InputError(f"--shapes: need at least two factor shapes, got {text!r}")
    return tuple(out)


def _load_matrix(path: str, shp: tuple[tuple[int, int], ...], shapes: str) -> np.ndarray:
    """MATRIX as a float64 2-D array of the size the factor shapes ``shp`` multiply to."""
    M = _io.load_cli_array(path, "MATRIX")  # float64, finite, not empty
    if M.ndim != 2:
        raise _io.InputError(f"MATRIX: {path} must hold a 2-D matrix, got shape {M.shape}")
    want = (math.prod(m for m, _ in shp), math.prod(n for _, n in shp))
    if M.shape != want:
        raise _io.InputError(f"--shapes: MATRIX has shape {M.shape}, but shapes {shapes} need {want}")
    return M


def _save_spectrum_plot(con: Any, res: Any, path: str) -> None:
    """The picture of :func:`kronkit.plot.spectrum` of ``res``, saved to ``path``."""
    from .. import plot as kplot  # matplotlib is there: check_plot_path looked first

    _io.save_figure(kplot.spectrum(res), path)
    con.print(f"plot saved to {path}")


#: Rows of the spectrum table printed unless --max-terms or --all says otherwise.
DEFAULT_MAX_TERMS = 10


@click.command("nkp")
@click.argument("matrix", type=click.Path(dir_okay=False))
@click.option("--shapes", required=True,
              help="Factor shapes, e.g. 4x4,3x3 (4,3 for square factors; three or more shapes "
                   "give the nearest A1⊗A2⊗A3⊗… by the power method).")
@click.option("--rank", type=click.IntRange(min=1), default=None,
              help="Number of Kronecker terms (default: all, the exact decomposition).")
@click.option("--structure", type=click.Choice(["symmetric", "psd", "nonnegative"]),
              default=None, help="Require and preserve a structure of MATRIX.")
@click.option("--out", "out_path", type=click.Path(dir_okay=False), default=None,
              help="Save the factors to this .npz (s, A, B, residual, norm; or A1, A2, … for "
                   "three or more shapes).")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), default=None,
              help="Save a plot of the Kronecker spectrum (needs matplotlib; the extension "
                   "picks the format, none means .png).")
@click.option("--max-terms", type=click.IntRange(min=1), default=DEFAULT_MAX_TERMS,
              show_default=True, help="Print at most this many terms of the spectrum table.")
@click.option("--all", "show_all", is_flag=True, help="Print every term of the spectrum table.")
@_io.cli_errors
def nkp(matrix: str, shapes: str, rank: int | None, structure: str | None,
        out_path: str | None, plot_path: str | None, max_terms: int, show_all: bool) -> None:
    """Kronecker-product SVD of MATRIX (.npy, .npz or .csv): M ≈ Σ_k s_k A_k ⊗ B_k.

    Prints the Kronecker singular values and the relative error ‖M − M_k‖_F/‖M‖_F after
    k terms (the first --max-terms of them; --all for every one); --out and --plot save
    all of them.
    """
    shp = parse_shapes_option(shapes)
    if len(shp) > 2 and rank not in (None, 1):
        raise _io.InputError("--rank: a rank above 1 needs exactly two factor shapes")
    if out_path is not None:
        out_path = _io.check_output_path(out_path, "--out")
    if plot_path is not None:
        plot_path = _io.check_plot_path(plot_path, "--plot")
    M = _load_matrix(matrix, shp, shapes)
    con = _io.make_console()
    res = _decompose(con, M, shp, rank, structure)
    if len(shp) > 2:
        _report_nearest(con, res, shp, out_path, plot_path)
    else:
        shown = res.s.size if show_all else min(res.s.size, max_terms)
        _report_kpsvd(con, res, shp, structure, shown, out_path, plot_path)


def _decompose(con: Any, M: np.ndarray, shp: tuple[tuple[int, int], ...], rank: int | None,
               structure: str | None) -> Any:
    """:func:`~kronkit.kpsvd` of ``M`` for two factor shapes, :func:`~kronkit.nearest_kron`
    for more, under a status line; an overflowing ``‖M‖_F`` is a numerical failure."""
    from .._kpsvd import kpsvd, nearest_kron

    with con.status(f"computing the Kronecker decomposition of a {M.shape[0]}×{M.shape[1]} "
                    "matrix…"):
        res: Any
        if len(shp) == 2:
            res = kpsvd(M, shp, rank, structure=structure)
        else:
            res = nearest_kron(M, shp, structure=structure)
    if not math.isfinite(float(res.norm or 0.0)):
        raise _io.NumericalError(
            "numerical failure: ‖MATRIX‖_F overflows in floating point (entries up to "
            f"{np.max(np.abs(M)):.3g}); rescale MATRIX")
    return res


def _report_nearest(con: Any, near: Any, shp: tuple[tuple[int, int], ...],
                    out_path: str | None, plot_path: str | None) -> None:
    """Print, save and plot the nearest Kronecker product of three or more factors."""
    from rich.table import Table

    table = Table(title=f"nearest Kronecker product ({' ⊗ '.join(f'{m}×{n}' for m, n in shp)})")
    table.add_column("σ", justify="right")
    table.add_column("relative error", justify="right")
    table.add_column("sweeps", justify="right")
    table.add_column("converged")
    table.add_row(f"{near.sigma:.10g}", f"{near.rel_error:.3e}", str(near.n_iter),
                  "yes" if near.converged else "no")
    con.print(table)
    if out_path is not None:
        arrays: dict[str, Any] = {"sigma": near.sigma, "residual": float(near.residual or 0.0),
                                  "norm": float(near.norm or 0.0)}
        arrays.update({f"A{k + 1}": f for k, f in enumerate(near.factors)})
        _io.save_npz(out_path, arrays)
        con.print(f"saved to {out_path}")
    if plot_path is not None:
        _save_spectrum_plot(con, near, plot_path)


def _spectrum_table(res: Any, rel: np.ndarray, shp: tuple[tuple[int, int], ...],
                    structure: str | None, shown: int) -> Any:
    """The first ``shown`` terms: k, σ_k, the relative error after k terms (and the kind of
    term for a symmetric structure)."""
    from rich.table import Table

    (m1, n1), (m2, n2) = shp
    table = Table(title=f"Kronecker-product SVD: A {m1}×{n1} ⊗ B {m2}×{n2}")
    table.add_column("k", justify="right")
    table.add_column("σ_k", justify="right")
    table.add_column("relative error after k terms", justify="right")
    if structure in ("symmetric", "psd"):
        table.add_column("term")
    for k in range(shown):
        row = [str(k + 1), f"{res.s[k]:.10g}", f"{rel[k]:.3e}"]
        if structure in ("symmetric", "psd"):
            row.append("skew⊗skew" if res.skew[k] else "sym⊗sym")
        table.add_row(*row)
    return table


def _report_kpsvd(con: Any, res: Any, shp: tuple[tuple[int, int], ...], structure: str | None,
                  shown: int, out_path: str | None, plot_path: str | None) -> None:
    """Print the first ``shown`` terms of the Kronecker-product SVD; save and plot them all."""
    # a dense M: the norm and residual are always known
    norm = float(res.norm or 0.0)
    residual = float(res.residual or 0.0)
    s = np.asarray(res.s)
    rel = res.tail_errors(relative=True)
    con.print(_spectrum_table(res, rel, shp, structure, shown))
    if shown < s.size:
        con.print(f"(the first {shown} of {s.size} terms; --max-terms K or --all prints more, "
                  "--out saves all)")
    con.print(f"‖M‖_F = {norm:.10g}; {res.rank} term(s); relative error {res.rel_error:.3e}")
    if out_path is not None:
        _io.save_npz(out_path, {"s": s, "A": np.asarray(res.A), "B": np.asarray(res.B),
                                "residual": residual, "norm": norm})
        con.print(f"saved to {out_path}")
    if plot_path is not None:
        _save_spectrum_plot(con, res, plot_path)
