"""What a type checker sees: kronkit ships ``py.typed``, a user's mypy shows the real types
(``Kron``, ``numpy.ndarray``, ``LogQuadGrad``, ...), and ``mypy src/kronkit`` is clean.

Also the packaging promises that go with it: ``py.typed`` is in the package, runtime extras
carry lower bounds only (installing one never downgrades a user's package), ``all`` is every
runtime extra, and the ``test`` extra brings mypy.
"""

from __future__ import annotations

import pathlib
import re
import subprocess
import sys
import tomllib

import pytest

import kronkit

ROOT = pathlib.Path(__file__).resolve().parents[1]
RUNTIME_EXTRAS = ("jax", "torch", "dask", "plot", "sklearn")

# A user's script. Each `reveal_type(...)  # expect: a, b` line must reveal a type whose text
# contains every expected piece; the script must type-check without errors.
USER_SNIPPET = '''
import numpy as np
import kronkit
from kronkit import Kron

A = np.array([[2.0, 0.5], [0.5, 1.0]])
B = np.eye(3)
y = np.arange(6.0)
Y = np.ones((4, 6))
K = Kron(A, B)
reveal_type(K)  # expect: kronkit._kron.Kron
reveal_type(K.inv())  # expect: kronkit._kron.Kron
reveal_type(K.solve(y))  # expect: numpy.ndarray
reveal_type(K.logdet())  # expect: float
reveal_type(kronkit.log_quad(K, y))  # expect: float | numpy.ndarray
reveal_type(kronkit.log_quad([A, B], Y, alpha=2.0))  # expect: float | numpy.ndarray
g = kronkit.log_quad_grad([A, B], y, alpha=2.0)
reveal_type(g)  # expect: kronkit._grad_results.LogQuadGrad
reveal_type(g.A)  # expect: numpy.ndarray
reveal_type(g.factors)  # expect: tuple[numpy.ndarray
reveal_type(g.value)  # expect: float | numpy.ndarray
reveal_type(kronkit.inv_quad_grad(K, Y, reduce=None))  # expect: InvQuadGrad
h = kronkit.log_quad_hvp([A, B], y, [np.eye(2), None])
reveal_type(h)  # expect: kronkit._grad_results.LogQuadHVP
reveal_type(h.grad)  # expect: LogQuadGrad
reveal_type(kronkit.logdet_grad([A, B]))  # expect: tuple[numpy.ndarray
reveal_type(kronkit.frob(K, np.kron(A, B)))  # expect: float
M = np.kron(A, B)
r = kronkit.kpsvd(M, ((2, 2), (3, 3)), rank=1)
reveal_type(r)  # expect: kronkit._kpsvd.results.KPSVDResult
reveal_type(r.s)  # expect: numpy.ndarray
reveal_type(r.term(0))  # expect: kronkit._kron.Kron
reveal_type(r.to_sum())  # expect: SumOfKron
n = kronkit.nearest_kron(M, [2, 3])
reveal_type(n)  # expect: kronkit._kpsvd.results.NearestKronResult
A1, B1 = n
reveal_type(A1)  # expect: numpy.ndarray
reveal_type(kronkit.rearrange(M, ((2, 2), (3, 3))))  # expect: numpy.ndarray
reveal_type(kronkit.unrearrange(np.ones((4, 9)), [2, 3]))  # expect: numpy.ndarray
reveal_type(kronkit.KronNormal(np.zeros(6), K))  # expect: kronkit._distributions.KronNormal
reveal_type(kronkit.separable_mle(np.ones((10, 2, 3))))  # expect: SeparableMLEResult
'''


def _mypy(args: list[str], cwd: pathlib.Path, cache: pathlib.Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--cache-dir", str(cache), "--no-color-output", *args],
        cwd=cwd, capture_output=True, text=True, timeout=600,
    )


def test_user_snippet_reveals_kronkit_types(tmp_path):
    """A user's mypy run (outside the repository, on the installed package) sees the real
    types: ``Kron``, ``numpy.ndarray``, ``float | ndarray``, the result types."""
    script = tmp_path / "user.py"
    script.write_text(USER_SNIPPET, encoding="utf-8")
    out = _mypy([script.name], tmp_path, tmp_path / "cache")
    text = out.stdout + out.stderr
    revealed = {int(m.group(1)): m.group(2)
                for m in re.finditer(r'^user\.py:(\d+): note: Revealed type is "(.*)"$', text,
                                     flags=re.MULTILINE)}
    expected = {i: [e.strip() for e in line.split("# expect:")[1].split(",")]
                for i, line in enumerate(USER_SNIPPET.splitlines(), start=1)
                if "# expect:" in line}
    assert out.returncode == 0, text  # no error: the package is typed and the calls check
    assert set(revealed) == set(expected), text
    for line, pieces in expected.items():
        got = revealed[line]
        assert got != "Any", (line, got)
        for piece in pieces:
            assert piece in got, (line, piece, got)


def test_user_snippet_errors_are_caught(tmp_path):
    """The types are not `Any` in disguise: a misuse is an error for the user's mypy."""
    script = tmp_path / "bad.py"
    script.write_text(
        "import numpy as np\nimport kronkit\n"
        "g = kronkit.log_quad_grad([np.eye(2), np.eye(3)], np.ones(6))\n"
        "g.C\n"  # no such field
        "kronkit.Kron(np.eye(2), np.eye(3)).inv().nonexistent()\n",
        encoding="utf-8",
    )
    out = _mypy([script.name], tmp_path, tmp_path / "cache")
    text = out.stdout + out.stderr
    assert out.returncode == 1, text
    assert re.search(r'bad\.py:4: error: "LogQuadGrad" has no attribute "C"', text), text
    assert re.search(r'bad\.py:5: error: "Kron" has no attribute "nonexistent"', text), text


@pytest.mark.slow
def test_mypy_is_clean_on_the_package(tmp_path):
    """``mypy src/kronkit`` with the repository's configuration (pyproject.toml): no error."""
    out = _mypy(["src/kronkit"], ROOT, tmp_path / "cache")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Success: no issues found" in out.stdout


def test_py_typed_ships_with_the_package():
    """PEP 561 marker beside the installed package (hatch puts every file of src/kronkit in
    the wheel)."""
    assert (pathlib.Path(kronkit.__file__).parent / "py.typed").is_file()
    assert (ROOT / "src" / "kronkit" / "py.typed").is_file()


def _extras() -> dict[str, list[str]]:
    with open(ROOT / "pyproject.toml", "rb") as fh:
        return tomllib.load(fh)["project"]["optional-dependencies"]


def _names(reqs: list[str]) -> set[str]:
    return {re.split(r"[\[<>=!~;\s]", r, maxsplit=1)[0].lower() for r in reqs}


def test_runtime_extras_have_lower_bounds_only():
    """``pip install kronkit[torch]`` never downgrades: no ``==``, ``<`` or ``~=`` pins."""
    extras = _extras()
    for name in RUNTIME_EXTRAS:
        assert extras[name], name
        for req in extras[name]:
            assert ">=" in req and not re.search(r"==|<|~=|!=", req), (name, req)


def test_all_extra_is_every_runtime_extra():
    extras = _extras()
    (ref,) = extras["all"]
    m = re.fullmatch(r"kronkit\[([a-z,]+)\]", ref.replace(" ", ""))
    assert m is not None, ref
    assert sorted(m.group(1).split(",")) == sorted(RUNTIME_EXTRAS)


def test_test_extra_brings_what_ci_needs():
    """The test extra covers every runtime extra's packages, mypy, and pins torch exactly (the
    CPU build of that release is what CI installs)."""
    extras = _extras()
    test = _names(extras["test"])
    for name in RUNTIME_EXTRAS:
        assert _names(extras[name]) <= test, name
    assert {"pytest", "hypothesis", "mypy"} <= test
    assert "torch==2.13.0" in extras["test"]
    assert {"mkdocs", "mkdocs-material", "mkdocstrings", "markdown-exec"} <= _names(extras["docs"])
