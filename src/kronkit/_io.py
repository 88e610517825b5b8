"""Loading user arrays from .npy / .npz / .csv files (no pickles) for the command line."""

from __future__ import annotations

import os

import numpy as np

__all__ = ["ArrayFileError", "load_array"]


class ArrayFileError(ValueError):
    """A file could not be read as a numeric array."""


def load_array(path: str | os.PathLike[str], name: str = "file") -> np.ndarray:
    """Read a numeric array from ``.npy``, ``.npz`` (``path.npz`` with one array, or
    ``path.npz:key``) or ``.csv`` (comma-separated, ``#`` comments), never unpickling.

    Raises :class:`ArrayFileError` (a ``ValueError``) naming ``name`` and the file.
    """
    spec = os.fspath(path)
    key = None
    base = spec
    if ".npz:" in spec:
        base, key = spec.rsplit(":", 1)
    if not os.path.exists(base):
        raise ArrayFileError(f"{name}: no such file: {base}")
    ext = os.path.splitext(base)[1].lower()
    try:
        if ext == ".npy":
            arr = np.load(base, allow_pickle=False)
        elif ext == ".npz":
            with np.load(base, allow_pickle=False) as z:
                keys = list(z.keys())
                if key is None:
                    if len(keys) != 1:
                        raise ArrayFileError(
                            f"{name}: {base} holds {len(keys)} arrays {keys}; choose one as "
                            f"{base}:KEY"
                        )
                    key = keys[0]
                if key not in keys:
                    raise ArrayFileError(f"{name}: {base} has no array {key!r} (it has {keys})")
                arr = z[key]
        elif ext in (".csv", ".txt"):
            arr = np.loadtxt(base, delimiter=",", comments="#", ndmin=1)
        else:
            raise ArrayFileError(f"{name}: unsupported file type {ext!r} for {base} (use .npy, .npz or .csv)")
    except ArrayFileError:
        raise
    except Exception as exc:  # corrupt file, object arrays (pickles refused), bad CSV ...
        raise ArrayFileError(f"{name}: could not read {base}: {exc}") from exc
    if arr.dtype.kind not in "biuf":
        raise ArrayFileError(f"{name}: {base} must hold a real numeric array, got dtype {arr.dtype}")
    return arr


def load_cli_array(path: str | os.PathLike[str], name: str) -> np.ndarray:
    """:func:`load_array` for the command line: a bad file is a ``click.BadParameter``."""
    import click

    try:
        return load_array(path, name)
    except ArrayFileError as exc:
        raise click.BadParameter(str(exc), param_hint=name) from exc
