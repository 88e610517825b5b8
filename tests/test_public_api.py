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
    from kronkit import KroneckerPCA, SeparableCovariance

    assert SeparableCovariance.__name__ == "SeparableCovariance"
    assert KroneckerPCA.__name__ == "KroneckerPCA"
    assert "SeparableCovariance" in dir(kronkit)


def test_version():
    assert kronkit.__version__.count(".") == 2
