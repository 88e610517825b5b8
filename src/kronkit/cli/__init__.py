"""The ``kronkit`` command: ``demo`` (the seed's example), ``grad`` (gradients of user data),
and the commands of the other modules (``nkp``, ``fit``)."""

from __future__ import annotations

import math
import sys
from typing import Any

import click
import numpy as np

from .. import __version__
from .._io import (
    FiniteFloat,
    InputError,
    check_output_path,
    cli_errors,
    load_cli_array,
    write_output,
)

# The seed's example, embedded: a non-symmetric A (3×3), an SPD B (2×2), y, μ and α.
DEMO_A = np.array([[2.0, 0.3, -0.4], [0.1, 1.5, 0.2], [-0.3, 0.4, 1.8]])
DEMO_B = np.array([[1.2, 0.5], [0.5, 0.9]])
DEMO_Y = np.array([0.8, -1.1, 0.4, 1.9, -0.7, 0.3])
DEMO_MU = np.array([0.1, 0.0, -0.2, 0.5, 0.3, -0.1])
DEMO_ALPHA = 1.5
DEMO_RTOL_SEED = 1e-9  # closed form vs the seed's Kronecker-SVD route
DEMO_RTOL_FD = 1e-6  # closed form vs central finite differences


def _console():
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True)


def _matrix_table(title: str, M: np.ndarray, fmt: str = "{: .10f}"):
    from rich.table import Table

    t = Table(title=title, show_header=False, box=None, pad_edge=False, title_justify="left")
    M = np.atleast_2d(M)
    for _ in range(M.shape[1]):
        t.add_column(justify="right")
    for row in M:
        t.add_row(*(fmt.format(v) for v in row))
    return t


def _rel_diff(a: np.ndarray, b: np.ndarray) -> float:
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), np.finfo(float).tiny))


def _dense_lambda(A: np.ndarray, B: np.ndarray, w: np.ndarray, alpha: float) -> float:
    return float(np.log(alpha + w @ np.linalg.solve(np.kron(A, B), w)))


def _central_diff(f, X: np.ndarray, h: float = 1e-6) -> np.ndarray:
    G = np.zeros_like(X)
    for idx in np.ndindex(X.shape):
        Xp = X.copy()
        Xm = X.copy()
        Xp[idx] += h
        Xm[idx] -= h
        G[idx] = (f(Xp) - f(Xm)) / (2 * h)
    return G


def run_demo(console=None) -> int:
    """Print the seed's example three ways; return 0 if they agree, 1 otherwise."""
    from rich.table import Table

    from .._calculus import log_quad_grad, seed_route

    con = console or _console()
    A, B, y, mu, alpha = DEMO_A, DEMO_B, DEMO_Y, DEMO_MU, DEMO_ALPHA
    w = y - mu
    con.print("[bold]kronkit demo[/bold] — the seed's question: ∂λ/∂A for "
              "λ = log(α + (y−μ)ᵀ(A⊗B)⁻¹(y−μ))")
    con.print(f"A is {A.shape[0]}×{A.shape[0]} (not symmetric), B is {B.shape[0]}×{B.shape[0]} "
              f"(SPD), P = {A.shape[0] * B.shape[0]}, α = {alpha}")
    con.print(_matrix_table("A", A, "{: .4f}"))
    con.print(_matrix_table("B", B, "{: .4f}"))
    con.print(_matrix_table("y", y[None], "{: .4f}"))
    con.print(_matrix_table("μ", mu[None], "{: .4f}"))

    closed = log_quad_grad([A, B], y, mu, alpha)
    seed = seed_route([A, B], y, mu, alpha)
    fdA = _central_diff(lambda X: _dense_lambda(X, B, w, alpha), A)
    fdB = _central_diff(lambda X: _dense_lambda(A, X, w, alpha), B)
    lam_dense = _dense_lambda(A, B, w, alpha)

    con.print(f"\nλ = {closed.value:.12f}   (β = α + q = {seed.beta:.12f}; dense np.kron: "
              f"{lam_dense:.12f})")
    con.print("\n[bold]1. Closed form[/bold] (Z = A⁻¹WB⁻ᵀ, U = A⁻ᵀWB⁻¹; ∂λ/∂A = −β⁻¹ U B Zᵀ, "
              "∂λ/∂B = −β⁻¹ Uᵀ A Z)")
    con.print(_matrix_table("∂λ/∂A", closed.A))
    con.print(_matrix_table("∂λ/∂B", closed.B))
    con.print("\n[bold]2. The seed's route[/bold] (S⁻ᵀwwᵀS⁻ᵀ = Σ_k F_k⊗G_k by Kronecker-product SVD; "
              "∂λ/∂A = −β⁻¹ Σ_k (B:G_k) F_k)")
    sv = ", ".join(f"{s:.6g}" for s in seed.singular_values)
    con.print(f"Kronecker singular values ({seed.rank} terms, r ≤ min(m,n)² = "
              f"{min(A.shape[0], B.shape[0]) ** 2}): {sv}")
    con.print(_matrix_table("∂λ/∂A", seed.A))
    con.print(_matrix_table("∂λ/∂B", seed.B))
    con.print("\n[bold]3. Central finite differences[/bold] of the dense formula (h = 1e-6)")
    con.print(_matrix_table("∂λ/∂A", fdA))
    con.print(_matrix_table("∂λ/∂B", fdB))

    rows = [
        ("∂λ/∂A", "closed vs seed route", _rel_diff(closed.A, seed.A), DEMO_RTOL_SEED),
        ("∂λ/∂B", "closed vs seed route", _rel_diff(closed.B, seed.B), DEMO_RTOL_SEED),
        ("∂λ/∂A", "closed vs finite differences", _rel_diff(closed.A, fdA), DEMO_RTOL_FD),
        ("∂λ/∂B", "closed vs finite differences", _rel_diff(closed.B, fdB), DEMO_RTOL_FD),
        ("λ", "closed vs dense np.kron", abs(closed.value - lam_dense) / abs(lam_dense),
         DEMO_RTOL_SEED),
    ]
    table = Table(title="Largest relative differences")
    for col in ("quantity", "comparison", "max |Δ| / max |ref|", "tolerance", "ok"):
        table.add_column(col)
    ok = True
    for qty, comp, diff, tol in rows:
        good = diff <= tol
        ok &= good
        table.add_row(qty, comp, f"{diff:.2e}", f"{tol:.0e}",
                      "[green]yes[/green]" if good else "[red]NO[/red]")
    con.print()
    con.print(table)
    if ok:
        con.print("[green]All three routes agree.[/green]")
        return 0
    con.print("[red]The routes disagree.[/red]")
    return 1


# ---------------------------------------------------------------------------------------
# click commands
# ---------------------------------------------------------------------------------------
@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="kronkit")
def main() -> None:
    """kronkit: Kronecker-structured matrix calculus, decomposition and estimation.

    Convention: Kron(A, B) means np.kron(A, B); a vector of length p·q is the row-major
    flattening of a (p, q) matrix.

    Exit status: 0 success; 2 bad input or usage (unreadable, empty or non-finite file,
    wrong shape, option out of range, unwritable output); 1 numerical failure (the input
    was valid but the computation failed, e.g. a singular factor). Errors are one line.
    """


@main.command()
@cli_errors
def demo() -> None:
    """Run the seed's example: λ, ∂λ/∂A and ∂λ/∂B three ways (closed form, the seed's
    Kronecker-SVD route, finite differences); exit 1 if they disagree."""
    sys.exit(run_demo())


def _load(path: str, name: str) -> np.ndarray:
    return load_cli_array(path, name)


def _check_grad_shapes(factors: list[np.ndarray], names: list[str], y: np.ndarray,
                       mu: np.ndarray | None) -> None:
    """Shape errors named by the option the user gave (the library would say `factors[0]`)."""
    for f, name in zip(factors, names, strict=True):
        if f.ndim != 2 or f.shape[0] != f.shape[1]:
            raise InputError(f"{name}: a factor must be a square matrix, got shape {f.shape}")
    sizes = tuple(f.shape[0] for f in factors)
    P = math.prod(sizes)
    for arr, name in ((y, "--y"), (mu, "--mu")):
        if arr is not None and (arr.ndim not in (1, 2) or arr.shape[-1] != P):
            raise InputError(f"{name}: must have shape (P,) or (N, P) with P = {P} (the product "
                             f"of the factor sizes {sizes}), got shape {arr.shape}")


@main.command()
@click.option("--A", "a_path", required=True, help="First factor A (p×p): .npy, .npz or .csv.")
@click.option("--B", "b_path", required=True, help="Second factor B (q×q).")
@click.option("--factor", "extra", multiple=True,
              help="Further factors for A⊗B⊗C⊗… (repeat the option, in order).")
@click.option("--y", "y_path", required=True, help="Observation(s): (P,) or (N, P).")
@click.option("--mu", "mu_path", default=None, help="Location μ: (P,) or (N, P). Default 0.")
@click.option("--alpha", default=1.0, show_default=True, type=FiniteFloat(), help="Offset α.")
@click.option("--per-observation", is_flag=True,
              help="For a batch, save per-observation gradients instead of their sum.")
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False),
              help="Output .npz with value, dA, dB, ..., dy, dmu, dalpha.")
@cli_errors
def grad(a_path: str, b_path: str, extra: tuple[str, ...], y_path: str, mu_path: str | None,
         alpha: float, per_observation: bool, out_path: str) -> None:
    """Value and gradients of λ = log(α + (y−μ)ᵀ(A⊗B)⁻¹(y−μ)) for arrays in files."""
    from rich.table import Table

    from .._calculus import log_quad_grad

    out_path = check_output_path(out_path, "--out")
    names = ["--A", "--B"] + [f"--factor #{i + 1}" for i in range(len(extra))]
    factors = [_load(path, name) for path, name in zip((a_path, b_path, *extra), names,
                                                       strict=True)]
    y = _load(y_path, "--y")
    mu = None if mu_path is None else _load(mu_path, "--mu")
    _check_grad_shapes(factors, names, y, mu)
    g = log_quad_grad(factors, y, mu, alpha, reduce=None if per_observation else "sum")
    grad_names = ["dA", "dB"] + [f"dfactor{i + 3}" for i in range(len(extra))]
    out: dict[str, Any] = {"value": np.asarray(g.value), "dy": g.y, "dmu": g.mu,
                           "dalpha": np.asarray(g.alpha)}
    out.update(dict(zip(grad_names, g.factors, strict=True)))
    write_output(lambda: np.savez(out_path, **out), out_path, "--out")
    con = _console()
    table = Table(title="kronkit grad")
    table.add_column("array")
    table.add_column("shape")
    table.add_column("max |·|", justify="right")
    for key, val in out.items():
        arr = np.asarray(val)
        table.add_row(key, str(arr.shape), f"{np.max(np.abs(arr)):.6g}")
    con.print(table)
    lam = np.asarray(g.value)
    con.print(f"λ = {lam:.12g}" if lam.ndim == 0 else f"λ: {lam.size} values, sum {lam.sum():.12g}")
    con.print(f"saved to {out_path}")


from .fit import fit  # noqa: E402 - the commands register on the group defined above
from .nkp import nkp  # noqa: E402

main.add_command(nkp)
main.add_command(fit)


if __name__ == "__main__":  # pragma: no cover
    main()
