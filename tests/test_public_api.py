"""The package surface: exports, lazy optional dependencies, version."""

from __future__ import annotations

import subprocess
import sys

import kronkit


def test_all_names_resolve():
    for name in kronkit.__all__:
        assert getattr(kronkit, name) is not None, name
    assert sorted(kronkit.__all__) == kronkit.__all__


def test_import_is_light():
    code = (
        "import sys, kronkit\n"
        "heavy = [m for m in ('sklearn', 'jax', 'torch', 'matplotlib', 'dask', 'distributed')"
        " if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_lazy_estimators():
    from kronkit import KroneckerGP, KroneckerPCA, SeparableCovariance

    assert SeparableCovariance.__name__ == "SeparableCovariance"
    assert KroneckerPCA.__name__ == "KroneckerPCA"
    assert KroneckerGP.__name__ == "KroneckerGP"
    assert "KroneckerGP" in dir(kronkit)
    assert "SeparableCovariance" in dir(kronkit)


def test_version():
    assert kronkit.__version__.count(".") == 2


def test_public_names_live_in_private_modules():
    """Every export is defined in a private module (or a private package) and re-exported
    explicitly: the public surface is kronkit/__init__.py plus jax, torch, plot and cli."""
    for name in kronkit.__all__:
        if name == "__version__":
            continue
        obj = getattr(kronkit, name)
        if not callable(obj):  # constants (DENSE_MAX_BYTES)
            continue
        module = obj.__module__
        assert module.startswith("kronkit."), (name, module)
        assert any(part.startswith("_") for part in module.split(".")[1:]), (name, module)


def test_python_dash_m_runs_the_cli():
    out = subprocess.run([sys.executable, "-m", "kronkit", "--help"], capture_output=True,
                         text=True, check=True)
    for command in ("demo", "grad", "nkp", "fit"):
        assert command in out.stdout
