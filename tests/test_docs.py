"""The documentation: the site builds strictly, every code block runs, every public name has an
API entry.

Code blocks: every fenced ```` ```python ```` block in README.md and docs/**/*.md is run, the
blocks of one page in order in one namespace (as a reader would paste them), in a temporary
working directory with matplotlib's Agg back end. A block is left out only when it is marked
as not runnable: a ``title="..."`` in its fence (a signature or a sketch) or an HTML comment
``<!-- skip: reason -->`` on the line before it. The markdown-exec blocks of the gallery
(``exec="on"``) run here too; they also run when the site is built.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]

FENCE = re.compile(r"^(?P<indent> *)(?P<fence>`{3,})(?P<info>[^`\n]*)$")
SKIP = re.compile(r"<!--\s*skip:\s*(?P<reason>\S.*?)\s*-->")


def python_blocks(path: Path) -> list[tuple[int, str, str | None]]:
    """``(line, code, skip_reason)`` for every ```python block of a markdown file."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks, i = [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence, info = m["indent"], m["fence"], m["info"].strip()
        j = i + 1
        while j < len(lines) and not re.match(rf"^ *{fence}`*\s*$", lines[j]):
            j += 1
        words = info.split()
        if words and words[0] in ("python", "py"):
            reason = None
            prev = lines[i - 1] if i > 0 else ""
            if SKIP.search(prev):
                reason = SKIP.search(prev)["reason"]
            elif "title=" in info:
                reason = "a signature or sketch (title=)"
            body = [ln[len(indent):] if ln.startswith(indent) else ln for ln in lines[i + 1 : j]]
            blocks.append((i + 1, "\n".join(body) + "\n", reason))
        i = j + 1
    return blocks


def test_block_extraction():
    """The extractor on a made-up page: plain, titled, skipped and non-python blocks."""
    import tempfile

    text = (
        "x\n```python\na = 1\n```\n```text\nnot code\n```\n"
        '```python title="sig"\nf(x, y)\n```\n<!-- skip: needs a cluster -->\n```python\nb\n```\n'
        '```python exec="on"\nc = 2\n```\n'
    )
    with tempfile.TemporaryDirectory() as tmp:
        page = Path(tmp) / "p.md"
        page.write_text(text, encoding="utf-8")
        got = python_blocks(page)
    assert [(code, reason) for _, code, reason in got] == [
        ("a = 1\n", None),
        ("f(x, y)\n", "a signature or sketch (title=)"),
        ("b\n", "needs a cluster"),
        ("c = 2\n", None),
    ]


def _page_id(path: Path) -> str:
    return str(path.relative_to(ROOT))


@pytest.mark.slow
@pytest.mark.parametrize("page", [p for p in PAGES if python_blocks(p)], ids=_page_id)
def test_code_blocks_run(page, tmp_path, monkeypatch):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__docs__"}
    ran = 0
    import warnings

    for line, code, reason in python_blocks(page):
        if reason is not None:
            continue
        try:
            with warnings.catch_warnings():
                # A page may demonstrate a warning (e.g. ConvergenceWarning); pytest's
                # filterwarnings=error would turn that into a failure of the example.
                warnings.simplefilter("default")
                exec(compile(code, f"{_page_id(page)}:{line}", "exec"), namespace)
        except Exception as exc:  # pragma: no cover - the failure message is the point
            pytest.fail(f"{_page_id(page)}, the block at line {line} failed: {exc!r}\n{code}")
        ran += 1
        import matplotlib.pyplot as plt

        plt.close("all")
    assert ran > 0


def test_few_skipped_blocks():
    """Blocks marked not runnable are few, and each says why."""
    skipped = [(p, line, r) for p in PAGES for line, _, r in python_blocks(p) if r is not None]
    assert len(skipped) <= 8, skipped
    assert all(r.strip() for _, _, r in skipped)


# --------------------------------------------------------------------------------------------
# The API reference
# --------------------------------------------------------------------------------------------
DIRECTIVE = re.compile(r"^:::\s*(?P<target>[\w.]+)\s*$", re.M)
SUBMODULES = ("jax", "torch", "plot")


def api_targets() -> list[str]:
    return [m["target"] for page in sorted((DOCS / "api").glob("*.md"))
            for m in DIRECTIVE.finditer(page.read_text(encoding="utf-8"))]


def _resolve(target: str):
    parts = target.split(".")
    for k in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:k]))
        except ImportError:
            continue
        for name in parts[k:]:
            obj = getattr(obj, name)
        return obj
    raise ImportError(target)


def test_every_public_name_has_an_api_entry():
    import kronkit

    targets = api_targets()
    assert len(targets) == len(set(targets)), "an API entry appears twice"
    top = {t.removeprefix("kronkit.") for t in targets if t.count(".") == 1}
    for name in kronkit.__all__:
        if name in top:
            continue
        # an entry under the defining module's path (the lazily imported estimators)
        value = getattr(kronkit, name)
        assert any(
            t.rsplit(".", 1)[-1] == name and _resolve(t) is value for t in targets
        ), f"kronkit.{name} has no entry in docs/api/"
    for module in SUBMODULES:
        source = (ROOT / "src" / "kronkit" / f"{module}.py").read_text(encoding="utf-8")
        names = re.search(r"^__all__ = \[(.*?)\]", source, re.M | re.S)
        assert names, f"kronkit.{module} has no __all__"
        for name in re.findall(r"\"(\w+)\"", names[1]):
            assert f"kronkit.{module}.{name}" in targets, f"kronkit.{module}.{name} has no entry"


def test_api_entries_name_real_objects():
    """Every ``::: target`` names something that exists (also checked by the strict build)."""
    for target in api_targets():
        if target.split(".")[1:2] and target.split(".")[1] in ("jax", "torch"):
            if importlib.util.find_spec(target.split(".")[1]) is None:
                continue
        _resolve(target)


# --------------------------------------------------------------------------------------------
# The site
# --------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_mkdocs_build_strict(tmp_path):
    missing = [m for m in ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python",
                           "markdown_exec")
               if importlib.util.find_spec(m.split(".")[0]) is None]
    if missing:
        pytest.skip(f"the docs extra is not installed (missing {missing}): pip install -e '.[docs]'")
    env = {**os.environ, "MPLBACKEND": "Agg", "NO_MKDOCS_2_WARNING": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT, capture_output=True, text=True, env=env, timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-8000:]
    assert (tmp_path / "site" / "index.html").is_file()
    api = (tmp_path / "site" / "api" / "operator" / "index.html").read_text(encoding="utf-8")
    assert "kronkit.Kron" in api
    # the docstrings' Sphinx roles are rendered as code, never shown raw
    for page in (tmp_path / "site" / "api").rglob("index.html"):
        html = page.read_text(encoding="utf-8")
        assert not any(f":{role}:" in html for role in ("meth", "func", "class", "mod")), page
