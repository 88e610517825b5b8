"""A griffe extension for the API reference: fill in the shared ``assume`` parameter text.

``kronkit.jax`` and ``kronkit.torch`` write ``ASSUME`` in their docstrings and replace it at
import time with ``kronkit._backend.ASSUME_DOC`` (plus, in ``kronkit.jax``, the module's own
``_ASSUME_DOC`` suffix). griffe reads the source without importing JAX or PyTorch, so it would
show the placeholder; this extension makes the same replacement on the static docstrings.
"""

from __future__ import annotations

import ast
import re
import textwrap
from pathlib import Path
from typing import Any

import griffe

_SRC = Path(__file__).resolve().parent.parent / "src" / "kronkit"


def _string_constant(path: Path, name: str) -> str:
    """The string assigned to ``name`` in ``path``: a literal, or ``x + "literal"`` where x is
    ``_backend.ASSUME_DOC`` (the only forms the modules use)."""
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == name for t in node.targets
        ):
            value = node.value
            if isinstance(value, ast.Constant):
                return value.value
            if isinstance(value, ast.BinOp) and isinstance(value.right, ast.Constant):
                return _string_constant(_SRC / "_backend.py", "ASSUME_DOC") + value.right.value
    raise LookupError(f"{name} not found in {path}")


def _replacement(module: str) -> str:
    if module == "jax":
        text = _string_constant(_SRC / "jax.py", "_ASSUME_DOC")
    else:
        text = _string_constant(_SRC / "_backend.py", "ASSUME_DOC")
    # The source text is indented for a raw docstring (parameter at 4, description at 8);
    # griffe's docstrings are dedented by 4.
    first, _, rest = text.partition("\n")
    return first + "\n" + textwrap.indent(textwrap.dedent(rest), "    ")


class AssumeDoc(griffe.Extension):
    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        if pkg.name != "kronkit":
            return
        for module in ("jax", "torch"):
            if module not in pkg.members:
                continue
            for member in pkg.members[module].members.values():
                if member.is_alias or not member.is_function or member.docstring is None:
                    continue
                doc = member.docstring
                if "\nASSUME\n" in doc.value:  # only then is the module's template needed
                    doc.value = doc.value.replace("\nASSUME\n", "\n" + _replacement(module) + "\n")


_ROLE = re.compile(r":(?:meth|func|class|attr|mod|data|exc|obj):`~?([^`]+)`")


def _plain_role(match: re.Match[str]) -> str:
    """``:meth:`~kronkit.Kron.solve``` -> ```solve``` (Sphinx's ``~`` keeps the last part)."""
    target = match.group(1)
    tilde = match.group(0).split("`", 1)[1].startswith("~")
    return f"``{target.rsplit('.', 1)[-1] if tilde else target}``"


class SphinxRoles(griffe.Extension):
    """The docstrings use Sphinx roles (``:func:`x```); Markdown would show them raw. Render
    each as inline code, the way Sphinx shows an unresolved role."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        if pkg.name != "kronkit":
            return
        stack: list[Any] = [pkg]
        while stack:
            obj = stack.pop()
            if obj.docstring is not None:
                obj.docstring.value = _ROLE.sub(_plain_role, obj.docstring.value)
            stack.extend(m for m in obj.members.values() if not m.is_alias)
