"""The ``kronkit`` command: a click group with one module per command, registered here.

* ``demo`` (:mod:`.demo`) — the seed's example, three ways;
* ``grad`` (:mod:`.grad`) — gradients of λ = log(α + (y−μ)ᵀ(A⊗B)⁻¹(y−μ)) for arrays in files;
* ``nkp`` (:mod:`.nkp`) — Kronecker-product SVD / nearest Kronecker product of a matrix;
* ``fit`` (:mod:`.fit`) — a separable covariance fitted to matrix observations.

File reading, output checks and the exit statuses live in :mod:`kronkit._io`.
"""

from __future__ import annotations

import click

from .. import __version__
from .demo import DEMO_A, DEMO_ALPHA, DEMO_B, DEMO_MU, DEMO_Y, demo, run_demo
from .fit import fit
from .grad import grad
from .nkp import nkp

__all__ = ["DEMO_A", "DEMO_ALPHA", "DEMO_B", "DEMO_MU", "DEMO_Y", "main", "run_demo"]


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


main.add_command(demo)
main.add_command(grad)
main.add_command(nkp)
main.add_command(fit)


if __name__ == "__main__":  # pragma: no cover
    main()
