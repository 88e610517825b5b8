"""``kronkit grad``: value and gradients of λ = log(α + (y−μ)ᵀ(A⊗B⊗…)⁻¹(y−μ)) for arrays in
files."""

from __future__ import annotations

import math
from typing import Any

import click
import numpy as np

from .. import _io

__all__ = ["grad"]


def _check_grad_shapes(factors: list[np.ndarray], names: list[str], y: np.ndarray,
                       mu: np.ndarray | None) -> None:
    """Shape errors named by the option the user gave (the library would say `factors[0]`)."""
    for f, name in zip(factors, names, strict=True):
        if f.ndim != 2 or f.shape[0] != f.shape[1]:
            raise _io.InputError(f"{name}: a factor must be a square matrix, got shape {f.shape}")
    sizes = tuple(f.shape[0] for f in factors)
    P = math.prod(sizes)
    for arr, name in ((y, "--y"), (mu, "--mu")):
        if arr is not None and (arr.ndim not in (1, 2) or arr.shape[-1] != P):
            raise _io.InputError(f"{name}: must have shape (P,) or (N, P) with P = {P} (the "
                                 f"product of the factor sizes {sizes}), got shape {arr.shape}")


def _print_report(out: dict[str, Any], value: Any, out_path: str) -> None:
    """The table of saved arrays (shape, largest magnitude), λ, and where they went."""
    from rich.table import Table

    con = _io.make_console()
    table = Table(title="kronkit grad")
    table.add_column("array")
    table.add_column("shape")
    table.add_column("max |·|", justify="right")
    for key, val in out.items():
        arr = np.asarray(val)
        table.add_row(key, str(arr.shape), f"{np.max(np.abs(arr)):.6g}")
    con.print(table)
    lam = np.asarray(value)
    con.print(f"λ = {lam:.12g}" if lam.ndim == 0 else f"λ: {lam.size} values, sum {lam.sum():.12g}")
    con.print(f"saved to {out_path}")


def _factor_paths(factor_paths: tuple[str, ...], a_path: str | None,
                  b_path: str | None) -> tuple[list[str], list[str]]:
    """The factor files in order, and the option each came from (for error messages).

    ``--A``/``--B`` (the old spelling, hidden) come first, then every ``--factor``.
    """
    if (a_path is None) != (b_path is None):
        raise _io.InputError("--A and --B (the old spelling of --factor) must be given together")
    paths, names = [], []
    if a_path is not None and b_path is not None:
        paths, names = [a_path, b_path], ["--A", "--B"]
    for path in factor_paths:
        paths.append(path)
        names.append(f"--factor #{len(paths)}")
    if len(paths) < 2:
        raise _io.InputError(
            f"--factor: give at least two factors (--factor A.npy --factor B.npy ...), got "
            f"{len(paths)}"
        )
    return paths, names


@click.command("grad")
@click.option("--factor", "factor_paths", multiple=True, metavar="PATH",
              help="A Kronecker factor A_k (p_k×p_k): .npy, .npz or .csv. Repeat it, in order, "
                   "at least twice: --factor A.npy --factor B.npy [--factor C.npy ...] "
                   "for A⊗B⊗C⊗…")
@click.option("--A", "a_path", default=None, hidden=True)  # the old spelling: first factor
@click.option("--B", "b_path", default=None, hidden=True)  # the old spelling: second factor
@click.option("--y", "y_path", required=True, help="Observation(s): (P,) or (N, P).")
@click.option("--mu", "mu_path", default=None, help="Location μ: (P,) or (N, P). Default 0.")
@click.option("--alpha", default=1.0, show_default=True, type=_io.FiniteFloat(), help="Offset α.")
@click.option("--per-observation", is_flag=True,
              help="For a batch, save per-observation gradients instead of their sum.")
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False),
              help="Output .npz with value, dA, dB (first two factors), dfactor3, ..., dy, dmu, "
                   "dalpha.")
@_io.cli_errors
def grad(factor_paths: tuple[str, ...], a_path: str | None, b_path: str | None, y_path: str,
         mu_path: str | None, alpha: float, per_observation: bool, out_path: str) -> None:
    """Value and gradients of λ = log(α + (y−μ)ᵀ(A⊗B⊗…)⁻¹(y−μ)) for arrays in files.

    Example: kronkit grad --factor A.npy --factor B.npy --y y.npy --out grad.npz
    """
    from .._calculus import log_quad_grad

    out_path = _io.check_output_path(out_path, "--out")
    paths, names = _factor_paths(factor_paths, a_path, b_path)
    factors = [_io.load_cli_array(path, name) for path, name in zip(paths, names, strict=True)]
    y = _io.load_cli_array(y_path, "--y")
    mu = None if mu_path is None else _io.load_cli_array(mu_path, "--mu")
    _check_grad_shapes(factors, names, y, mu)
    g = log_quad_grad(factors, y, mu, alpha, reduce=None if per_observation else "sum")
    grad_names = ["dA", "dB"] + [f"dfactor{k + 1}" for k in range(2, len(factors))]
    out: dict[str, Any] = {"value": np.asarray(g.value), "dy": g.y, "dmu": g.mu,
                           "dalpha": np.asarray(g.alpha)}
    out.update(dict(zip(grad_names, g.factors, strict=True)))
    _io.save_npz(out_path, out)
    _print_report(out, g.value, out_path)
