"""The package's layout rules, checked on the source (no import of the modules needed).

- No module imports a ``_private`` name from another module, nor reaches into another
  module's private attributes (``obj._name`` where ``_name`` is not defined in the module
  doing it). Names other modules need are public inside the package (no leading underscore).
- No module over ``MAX_MODULE_LINES`` lines; no function over ``MAX_FUNCTION_LINES`` lines of
  code (docstring, blank and comment lines aside).

``python tests/test_layout.py`` prints every module and the largest functions with their sizes.
"""

from __future__ import annotations

import ast
import pathlib
import sys

import pytest

SRC = pathlib.Path(__file__).resolve().parents[1] / "src" / "kronkit"
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 80
MODULES = sorted(SRC.rglob("*.py"))
# Private names of other projects that have no public spelling.
EXTERNAL_PRIVATE = {
    "_getframe",  # sys._getframe: the caller's frame for warnings (_errors.warn_at_caller)
    "_bit_generator",  # numpy.random.RandomState._bit_generator (legacy RandomState input)
}


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _rel(path: pathlib.Path) -> str:
    return str(path.relative_to(SRC.parent)) if path.is_relative_to(SRC.parent) else path.name


def _is_module(path: pathlib.Path, node: ast.ImportFrom, name: str) -> bool:
    """True if ``from <node.module> import <name>`` imports a module (a file or a package)."""
    base = path.parent
    for _ in range(node.level - 1):
        base = base.parent
    if node.level == 0:
        parts = (node.module or "").split(".")
        if parts[0] != "kronkit":
            return False
        base = SRC.parent
    if node.module:
        base = base.joinpath(*node.module.split("."))
    return (base / f"{name}.py").exists() or (base / name / "__init__.py").exists()


def _defined_private_names(tree: ast.AST) -> set[str]:
    """Every private name a module defines: functions, classes, attributes, slots, locals."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            names.add(node.value)  # __slots__ entries, setattr names, namedtuple fields
        elif isinstance(node, ast.arg):
            names.add(node.arg)
    return {n for n in names if _private(n)}


def private_reaches(path: pathlib.Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    own = _defined_private_names(tree)
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if _private(alias.name) and not _is_module(path, node, alias.name):
                    out.append(f"{_rel(path)}:{node.lineno} imports {alias.name} from "
                               f"{'.' * node.level}{node.module or ''}")
        elif (isinstance(node, ast.Attribute) and _private(node.attr) and node.attr not in own
              and node.attr not in EXTERNAL_PRIVATE):
            if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                continue
            out.append(f"{_rel(path)}:{node.lineno} reads .{node.attr}, private to another "
                       "module")
    return out


def function_sizes(path: pathlib.Path) -> list[tuple[int, str]]:
    """(lines of code, qualified name) of every function: no docstring, blanks or comments."""
    lines = path.read_text(encoding="utf-8").splitlines()
    tree = ast.parse("\n".join(lines))
    out = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                body = child.body
                skip: set[int] = set()
                first = body[0]
                if (isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
                        and isinstance(first.value.value, str)):
                    skip = set(range(first.lineno, (first.end_lineno or first.lineno) + 1))
                start = min([child.lineno] + [d.lineno for d in child.decorator_list])
                n = sum(1 for i in range(start, (child.end_lineno or start) + 1)
                        if i not in skip and lines[i - 1].strip()
                        and not lines[i - 1].strip().startswith("#"))
                name = f"{prefix}{child.name}"
                out.append((n, f"{_rel(path)}:{name}"))
                visit(child, name + ".")
            elif isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.")
            else:
                visit(child, prefix)

    visit(tree, "")
    return out


@pytest.mark.parametrize("path", MODULES, ids=_rel)
def test_no_private_names_across_modules(path):
    assert private_reaches(path) == []


@pytest.mark.parametrize("path", MODULES, ids=_rel)
def test_module_size(path):
    n = len(path.read_text(encoding="utf-8").splitlines())
    assert n <= MAX_MODULE_LINES, f"{_rel(path)} has {n} lines (limit {MAX_MODULE_LINES})"


@pytest.mark.parametrize("path", MODULES, ids=_rel)
def test_function_size(path):
    big = [(n, name) for n, name in function_sizes(path) if n > MAX_FUNCTION_LINES]
    assert big == [], f"functions over {MAX_FUNCTION_LINES} lines of code: {big}"


def test_the_checks_can_fail(tmp_path):
    """The checkers see what they are meant to see (on a made-up module)."""
    bad = tmp_path / "bad.py"
    (tmp_path / "_checks.py").write_text("")
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES + 1))
    bad.write_text(
        "from ._kron import _hidden\nfrom . import _checks\n"
        f"def big():\n    '''doc'''\n{body}\n"
        "def reach(K):\n    return K._factorization(0), _checks.as_float\n"
    )
    reaches = private_reaches(bad)
    assert len(reaches) == 2
    assert "_hidden" in reaches[0] and "._factorization" in reaches[1]
    sizes = dict((name.split(":")[-1], n) for n, name in function_sizes(bad))
    assert sizes == {"big": MAX_FUNCTION_LINES + 2, "reach": 2}  # the `def` line counts


if __name__ == "__main__":  # pragma: no cover - a report for the restructure's note
    for path in MODULES:
        n = len(path.read_text(encoding="utf-8").splitlines())
        print(f"{n:6d}  {_rel(path)}")
    sizes = sorted((s for p in MODULES for s in function_sizes(p)), reverse=True)
    print("\nlargest functions (lines of code):")
    for n, name in sizes[: int(sys.argv[1]) if len(sys.argv) > 1 else 20]:
        print(f"{n:6d}  {name}")
    print("\nprivate reaches:")
    for path in MODULES:
        for line in private_reaches(path):
            print("  " + line)
