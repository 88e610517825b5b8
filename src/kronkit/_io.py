"""The command line's contact with the outside: reading user arrays from .npy / .npz / .csv
files (no pickles), checking output destinations, and turning every failure into a one-line
message with a documented exit status.

Exit status of every ``kronkit`` command:

* ``0`` — success;
* ``2`` — bad input or usage: an unreadable, empty or non-finite file, wrong shapes, an
  option out of range, a function evaluated outside its domain
  (:class:`~kronkit.DomainError`), an output path that cannot be written;
* ``1`` — numerical failure: the input was valid but the computation failed (a
  ``numpy.linalg.LinAlgError`` such as :class:`~kronkit.SingularFactorError` or
  :class:`~kronkit.NotPositiveDefiniteError`, overflow), or an internal error (the message
  says so).

No command shows a Python traceback; set ``KRONKIT_TRACEBACK=1`` to see one for an internal
error.
"""

from __future__ import annotations

import functools
import math
import os
import warnings
import zipfile
from collections.abc import Callable
from typing import Any, TypeVar

import click
import numpy as np

__all__ = [
    "ArrayFileError",
    "FiniteFloat",
    "InputError",
    "NumericalError",
    "check_output_path",
    "check_plot_path",
    "cli_errors",
    "load_array",
    "load_cli_array",
    "make_console",
    "save_figure",
    "save_npz",
    "write_output",
]

#: Longest message printed for one error (a pathological exception text is cut here).
MAX_MESSAGE_CHARS = 600


class ArrayFileError(ValueError):
    """A file could not be read as a numeric array."""


def load_array(path: str | os.PathLike[str], name: str = "file") -> np.ndarray:
    """Read a numeric array from ``.npy``, ``.npz`` (``path.npz`` with one array, or
    ``path.npz:key``) or ``.csv`` (comma-separated, ``#`` comments), never unpickling.

    Raises :class:`ArrayFileError` (a ``ValueError``) naming ``name`` and the file.
    """
    base, key = _split_member(path)
    if not os.path.exists(base):
        raise ArrayFileError(f"{name}: no such file: {base}")
    ext = os.path.splitext(base)[1].lower()
    try:
        if ext == ".npy":
            with open(base, "rb") as fh:
                problem = _npy_header_problem(fh, os.path.getsize(base))
            if problem:
                raise ArrayFileError(f"{name}: could not read {base}: {problem}")
            arr = np.load(base, allow_pickle=False)
        elif ext == ".npz":
            if not zipfile.is_zipfile(base):
                raise ArrayFileError(
                    f"{name}: could not read {base}: not an .npz file (not a zip archive)")
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
                member = key + ".npy" if key + ".npy" in z.zip.namelist() else key
                with z.zip.open(member) as fh:
                    problem = _npy_header_problem(fh, z.zip.getinfo(member).file_size)
                if problem:
                    raise ArrayFileError(
                        f"{name}: could not read member {key!r} of {base}: {problem}")
                arr = z[key]
                if not isinstance(arr, np.ndarray):  # a member that is not an .npy file
                    raise ArrayFileError(
                        f"{name}: member {key!r} of {base} is not an .npy array")
        elif ext in (".csv", ".txt"):
            with warnings.catch_warnings():  # an empty file: reported below, not warned
                warnings.simplefilter("ignore")
                arr = np.loadtxt(base, delimiter=",", comments="#", ndmin=1)
        else:
            raise ArrayFileError(f"{name}: unsupported file type {ext!r} for {base} (use .npy, .npz or .csv)")
    except ArrayFileError:
        raise
    except Exception as exc:  # corrupt file, object arrays (pickles refused), bad CSV ...
        raise ArrayFileError(f"{name}: could not read {base}: {exc}") from exc
    if not isinstance(arr, np.ndarray):  # pragma: no cover - np.load returns arrays here
        raise ArrayFileError(f"{name}: {base} does not hold an array")
    if arr.dtype.kind not in "biuf":
        raise ArrayFileError(f"{name}: {base} must hold a real numeric array, got dtype {arr.dtype}")
    return arr


def _split_member(path: str | os.PathLike[str]) -> tuple[str, str | None]:
    """``("file.npz", "key")`` from ``"file.npz:key"``; ``(path, None)`` for any other path."""
    spec = os.fspath(path)
    if ".npz:" in spec:
        base, key = spec.rsplit(":", 1)
        return base, key
    return spec, None


def _npy_header_problem(fh: Any, nbytes: int) -> str | None:
    """Why the .npy stream ``fh`` (``nbytes`` long) cannot hold its array, read from the
    header alone (so a header promising terabytes is refused before any allocation), or
    ``None`` if the header looks sound (``np.load`` then has the last word)."""
    from numpy.lib import format as npformat

    try:
        version = npformat.read_magic(fh)
    except ValueError:
        return "not an .npy array (no NumPy header)"
    if version == (1, 0):
        read_header = npformat.read_array_header_1_0
    elif version == (2, 0):
        read_header = npformat.read_array_header_2_0
    else:  # other versions: np.load checks them
        return None
    try:
        shape, _, dtype = read_header(fh)
    except ValueError as exc:
        return f"a corrupt .npy header ({exc})"
    if dtype.hasobject:
        return None  # np.load refuses it with allow_pickle=False
    need = math.prod(shape) * dtype.itemsize
    have = nbytes - fh.tell()
    if need > have:
        return (f"truncated or corrupt: its header promises an array of shape {shape} and "
                f"dtype {dtype} ({need} bytes), but {have} bytes follow")
    return None


def _one_line(message: str) -> str:
    text = " ".join(str(message).split())
    if len(text) > MAX_MESSAGE_CHARS:
        text = text[: MAX_MESSAGE_CHARS - 1] + "…"
    return text


class InputError(click.ClickException):
    """Bad input or usage: printed as one line ``Error: …``, exit status 2."""

    exit_code = 2

    def __init__(self, message: str) -> None:
        super().__init__(_one_line(message))


class NumericalError(click.ClickException):
    """Valid input, failed computation: printed as one line ``Error: …``, exit status 1."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(_one_line(message))


def load_cli_array(path: str | os.PathLike[str], name: str) -> np.ndarray:
    """:func:`load_array` for the command line, as float64: a bad, empty or non-finite file
    is an :class:`InputError` whose message starts with ``name`` (the option or argument)."""
    try:
        arr = load_array(path, name)
    except ArrayFileError as exc:
        raise InputError(str(exc)) from exc
    base, _ = _split_member(path)
    if arr.size == 0:
        raise InputError(f"{name}: {base} holds no data (an empty array of shape {arr.shape})")
    with np.errstate(over="ignore"):  # long doubles beyond float64 become inf: reported below
        out = np.asarray(arr, dtype=np.float64)
    bad = out.size - int(np.count_nonzero(np.isfinite(out)))
    if bad:
        raise InputError(f"{name}: {base} contains NaN or Inf ({bad} non-finite "
                         f"entr{'y' if bad == 1 else 'ies'} of {out.size})")
    return out


class FiniteFloat(click.ParamType):
    """A finite float option (``nan`` and ``inf`` refused), optionally ``> low``/``>= low``."""

    name = "float"

    def __init__(self, low: float | None = None, *, low_open: bool = False) -> None:
        self.low = low
        self.low_open = low_open

    def convert(self, value: Any, param: Any, ctx: Any) -> float:
        x = click.FLOAT.convert(value, param, ctx)
        if not np.isfinite(x):
            self.fail(f"must be a finite number, got {value!r}", param, ctx)
        if self.low is not None and (x < self.low or (self.low_open and x == self.low)):
            self.fail(f"must be {'>' if self.low_open else '>='} {self.low:g}, got {value!r}",
                      param, ctx)
        return float(x)


def check_output_path(path: str, name: str, suffix: str = ".npz") -> str:
    """The file an output option will write (``suffix`` appended unless present), checked
    *before* any work: it is not a directory, its folder exists and is writable.
    Raises :class:`InputError` naming ``name``."""
    final = path if path.endswith(suffix) else path + suffix
    _check_writable(final, name)
    return final


def check_plot_path(path: str, name: str = "--plot") -> str:
    """The picture file ``--plot`` will write, checked before any work: matplotlib is
    installed, the extension is a format it writes (none means ``.png``, appended), and
    the destination is writable. Raises :class:`InputError` naming ``name``."""
    try:
        from matplotlib.backend_bases import FigureCanvasBase
    except ImportError as exc:
        raise InputError(f"{name} needs matplotlib: pip install kronkit[plot]") from exc
    formats = sorted(FigureCanvasBase.get_supported_filetypes())
    ext = os.path.splitext(path)[1].lower().lstrip(".")
    final = path
    if not ext:
        ext, final = "png", path + ".png"
    if ext not in formats:
        raise InputError(f"{name}: cannot write a picture as {ext!r} ({path}); use one of "
                         f"{', '.join(formats)}")
    _check_writable(final, name)
    return final


def _check_writable(path: str, name: str) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise InputError(f"{name}: {path} is a directory")
    if not os.path.isdir(folder):
        what = "is not a directory" if os.path.exists(folder) else "does not exist"
        raise InputError(f"{name}: cannot write {path}: the folder {folder} {what}")
    if os.path.exists(path):
        if not os.access(path, os.W_OK):
            raise InputError(f"{name}: cannot write {path}: permission denied")
    elif not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(f"{name}: cannot write {path}: the folder {folder} is not writable")


def write_output(save: Callable[[], Any], path: str, name: str) -> None:
    """Run ``save()`` (which writes ``path``); an ``OSError`` (or matplotlib's ``ValueError``
    / ``RuntimeError`` for a format it cannot write here) is an :class:`InputError`."""
    try:
        save()
    except (OSError, ValueError, RuntimeError) as exc:
        reason = (exc.strerror if isinstance(exc, OSError) else None) or str(exc)
        raise InputError(f"{name}: could not write {path}: {reason}") from exc


def save_npz(path: str, arrays: dict[str, Any], name: str = "--out") -> None:
    """``np.savez(path, **arrays)``, its failure an :class:`InputError` naming ``name``."""
    write_output(lambda: np.savez(path, **arrays), path, name)


def save_figure(fig: Any, path: str, name: str = "--plot") -> None:
    """Save a matplotlib figure to ``path`` (120 dpi; the extension picks the format, as
    :func:`check_plot_path` checked), its failure an :class:`InputError` naming ``name``."""
    write_output(lambda: fig.savefig(path, dpi=120), path, name)


def make_console() -> Any:
    """The ``rich`` console every command prints its report on (stdout, no highlighting,
    long lines kept whole)."""
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True)


def _show_warning(message: Any, category: type[Warning], *args: Any, **kwargs: Any) -> None:
    click.echo(f"Warning: {_one_line(str(message))}", err=True)


_F = TypeVar("_F", bound=Callable[..., Any])


def cli_errors(command: _F) -> _F:
    """Decorate a click command's function: warnings print as one line ``Warning: …`` on
    stderr; exceptions become one-line errors with the module's exit statuses (2 for
    ``ValueError``/``TypeError``/``OSError``, 1 for ``LinAlgError``, overflow and anything
    unexpected); never a traceback (unless ``KRONKIT_TRACEBACK=1`` for internal errors)."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            warnings.showwarning = _show_warning
            try:
                return command(*args, **kwargs)
            except (click.ClickException, click.exceptions.Exit, click.Abort):
                raise
            except np.linalg.LinAlgError as exc:
                raise NumericalError(f"numerical failure: {exc}") from exc
            except (FloatingPointError, OverflowError, ZeroDivisionError) as exc:
                raise NumericalError(f"numerical failure ({type(exc).__name__}): {exc}") from exc
            except MemoryError as exc:
                raise NumericalError(f"out of memory: {exc or 'the problem is too large'}") from exc
            except (ValueError, TypeError) as exc:  # DomainError included: outside the domain
                raise InputError(str(exc)) from exc
            except OSError as exc:
                target = f" {exc.filename}" if exc.filename else ""
                raise InputError(f"could not access{target}: {exc.strerror or exc}") from exc
            except Exception as exc:
                if os.environ.get("KRONKIT_TRACEBACK"):
                    raise
                raise NumericalError(
                    f"internal error ({type(exc).__name__}: {exc}); please report it "
                    "(KRONKIT_TRACEBACK=1 shows the traceback)") from exc

    return wrapper  # type: ignore[return-value]
