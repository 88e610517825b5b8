"""``kronkit demo``: the seed's example, computed three ways (closed form, the seed's
Kronecker-SVD route, central finite differences of the dense formula), with a verdict."""

from __future__ import annotations

import sys
from typing import Any

import click
import numpy as np

from .._io import cli_errors, make_console

__all__ = ["DEMO_A", "DEMO_ALPHA", "DEMO_B", "DEMO_MU", "DEMO_Y", "demo", "run_demo"]

# The seed's example, embedded: a non-symmetric A (3×3), an SPD B (2×2), y, μ and α.
DEMO_A = np.array([[2.0, 0.3, -0.4], [0.1, 1.5, 0.2], [-0.3, 0.4, 1.8]])
DEMO_B = np.array([[1.2, 0.5], [0.5, 0.9]])
DEMO_Y = np.array([0.8, -1.1, 0.4, 1.9, -0.7, 0.3])
DEMO_MU = np.array([0.1, 0.0, -0.2, 0.5, 0.3, -0.1])
DEMO_ALPHA = 1.5
DEMO_RTOL_SEED = 1e-9  # closed form vs the seed's Kronecker-SVD route
DEMO_RTOL_FD = 1e-6  # closed form vs central finite differences


def _matrix_table(title: str, M: np.ndarray, fmt: str = "{: .10f}") -> Any:
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


def _central_diff(f: Any, X: np.ndarray, h: float = 1e-6) -> np.ndarray:
    G = np.zeros_like(X)
    for idx in np.ndindex(X.shape):
        Xp = X.copy()
        Xm = X.copy()
        Xp[idx] += h
        Xm[idx] -= h
        G[idx] = (f(Xp) - f(Xm)) / (2 * h)
    return G


def _print_problem(con: Any) -> None:
    A, B = DEMO_A, DEMO_B
    con.print("[bold]kronkit demo[/bold] — the seed's question: ∂λ/∂A for "
              "λ = log(α + (y−μ)ᵀ(A⊗B)⁻¹(y−μ))")
    con.print(f"A is {A.shape[0]}×{A.shape[0]} (not symmetric), B is {B.shape[0]}×{B.shape[0]} "
              f"(SPD), P = {A.shape[0] * B.shape[0]}, α = {DEMO_ALPHA}")
    con.print(_matrix_table("A", A, "{: .4f}"))
    con.print(_matrix_table("B", B, "{: .4f}"))
    con.print(_matrix_table("y", DEMO_Y[None], "{: .4f}"))
    con.print(_matrix_table("μ", DEMO_MU[None], "{: .4f}"))


def _three_routes() -> tuple[Any, Any, np.ndarray, np.ndarray, float]:
    """(closed form, the seed's Kronecker-SVD route, finite-difference ∂λ/∂A and ∂λ/∂B,
    dense λ)."""
    from .._calculus import log_quad_grad
    from .._kpsvd.route import kpsvd_route

    A, B, alpha = DEMO_A, DEMO_B, DEMO_ALPHA
    w = DEMO_Y - DEMO_MU
    closed = log_quad_grad([A, B], DEMO_Y, DEMO_MU, alpha)
    route = kpsvd_route([A, B], DEMO_Y, DEMO_MU, alpha)
    fdA = _central_diff(lambda X: _dense_lambda(X, B, w, alpha), A)
    fdB = _central_diff(lambda X: _dense_lambda(A, X, w, alpha), B)
    return closed, route, fdA, fdB, _dense_lambda(A, B, w, alpha)


def _print_routes(con: Any, closed: Any, route: Any, fdA: np.ndarray, fdB: np.ndarray,
                  lam_dense: float) -> None:
    con.print(f"\nλ = {closed.value:.12f}   (β = α + q = {route.beta:.12f}; dense np.kron: "
              f"{lam_dense:.12f})")
    con.print("\n[bold]1. Closed form[/bold] (Z = A⁻¹WB⁻ᵀ, U = A⁻ᵀWB⁻¹; ∂λ/∂A = −β⁻¹ U B Zᵀ, "
              "∂λ/∂B = −β⁻¹ Uᵀ A Z)")
    con.print(_matrix_table("∂λ/∂A", closed.A))
    con.print(_matrix_table("∂λ/∂B", closed.B))
    con.print("\n[bold]2. The seed's route[/bold] (S⁻ᵀwwᵀS⁻ᵀ = Σ_k F_k⊗G_k by Kronecker-product SVD; "
              "∂λ/∂A = −β⁻¹ Σ_k (B:G_k) F_k)")
    sv = ", ".join(f"{s:.6g}" for s in route.singular_values)
    con.print(f"Kronecker singular values ({route.rank} terms, r ≤ min(m,n)² = "
              f"{min(DEMO_A.shape[0], DEMO_B.shape[0]) ** 2}): {sv}")
    con.print(_matrix_table("∂λ/∂A", route.A))
    con.print(_matrix_table("∂λ/∂B", route.B))
    con.print("\n[bold]3. Central finite differences[/bold] of the dense formula (h = 1e-6)")
    con.print(_matrix_table("∂λ/∂A", fdA))
    con.print(_matrix_table("∂λ/∂B", fdB))


def _print_verdict(con: Any, closed: Any, route: Any, fdA: np.ndarray, fdB: np.ndarray,
                   lam_dense: float) -> bool:
    """Print the table of largest relative differences; True if all are within tolerance."""
    from rich.table import Table

    rows = [
        ("∂λ/∂A", "closed vs seed route", _rel_diff(closed.A, route.A), DEMO_RTOL_SEED),
        ("∂λ/∂B", "closed vs seed route", _rel_diff(closed.B, route.B), DEMO_RTOL_SEED),
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
    return ok


def run_demo(console: Any = None) -> int:
    """Print the seed's example three ways (on ``console``, a rich Console; default: a new
    one on stdout); return 0 if they agree, 1 otherwise."""
    con = console or make_console()
    _print_problem(con)
    routes = _three_routes()
    _print_routes(con, *routes)
    if _print_verdict(con, *routes):
        con.print("[green]All three routes agree.[/green]")
        return 0
    con.print("[red]The routes disagree.[/red]")
    return 1


@click.command("demo")
@cli_errors
def demo() -> None:
    """Run the seed's example: λ, ∂λ/∂A and ∂λ/∂B three ways (closed form, the seed's
    Kronecker-SVD route, finite differences); exit 1 if they disagree."""
    sys.exit(run_demo())
