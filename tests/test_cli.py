"""The kronkit command: demo, grad, file handling, and a hostile-input battery over every
command (exit status 2 for bad input or usage, 1 for a numerical failure, one-line messages,
never a traceback)."""

from __future__ import annotations

import io
import math
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from numpy.testing import assert_allclose

import kronkit
from helpers import ATOL, ROUNDING, RTOL, dense_log_quad, factor, factors
from kronkit import cli, log_quad_grad


@pytest.fixture
def runner():
    return CliRunner()


def test_demo_agrees_and_exits_zero(runner):
    res = runner.invoke(cli.main, ["demo"])
    assert res.exit_code == 0, res.output
    assert "All three routes agree" in res.output
    lam = dense_log_quad([cli.DEMO_A, cli.DEMO_B], cli.DEMO_Y, cli.DEMO_MU, cli.DEMO_ALPHA)
    assert f"λ = {lam:.12f}" in res.output
    assert "4 terms" in res.output


def test_demo_exits_nonzero_when_routes_disagree(runner, monkeypatch):
    import kronkit._calculus as calc

    real = calc.log_quad_grad

    def broken(*args, **kwargs):
        g = real(*args, **kwargs)
        return g._replace(factors=(g.factors[0] * 1.01, g.factors[1]))

    monkeypatch.setattr(calc, "log_quad_grad", broken)
    res = runner.invoke(cli.main, ["demo"])
    assert res.exit_code == 1
    assert "disagree" in res.output


def test_module_entry_point():
    out = subprocess.run([sys.executable, "-m", "kronkit", "--version"], capture_output=True,
                         text=True, check=True)
    assert "kronkit" in out.stdout


@pytest.mark.parametrize("fmt", ["npy", "csv", "npz"])
def test_grad_on_files(runner, tmp_path, rng, fmt):
    A, B = factor(rng, 3), factor(rng, 2)
    Y = rng.standard_normal((4, 6))
    mu = rng.standard_normal(6)

    def save(name, arr):
        path = tmp_path / f"{name}.{fmt}"
        if fmt == "npy":
            np.save(path, arr)
        elif fmt == "csv":
            np.savetxt(path, arr, delimiter=",")
        else:
            np.savez(path, data=arr)
        return str(path)

    out = tmp_path / "g.npz"
    res = runner.invoke(cli.main, ["grad", "--factor", save("A", A), "--factor", save("B", B),
                                   "--y", save("y", Y), "--mu", save("mu", mu),
                                   "--alpha", "2.5", "--out", str(out)])
    assert res.exit_code == 0, res.output
    g = log_quad_grad([A, B], Y, mu, 2.5)
    with np.load(out) as z:
        assert_allclose(z["dA"], g.A, rtol=ROUNDING)
        assert_allclose(z["dB"], g.B, rtol=ROUNDING)
        assert_allclose(z["dy"], g.y, rtol=ROUNDING)
        assert_allclose(z["dmu"], g.mu, rtol=ROUNDING)
        assert_allclose(z["value"], g.value, rtol=ROUNDING)


def _save_factors(tmp_path, fs):
    """Write each factor to ``f{i}.npy``; return the paths in order."""
    paths = [str(tmp_path / f"f{i}.npy") for i in range(len(fs))]
    for path, f in zip(paths, fs, strict=True):
        np.save(path, f)
    return paths


def test_grad_three_factors_per_observation(runner, tmp_path, rng):
    fs = factors(rng, (2, 3, 2))
    Y = rng.standard_normal((3, 12))
    paths = _save_factors(tmp_path, fs)
    np.save(tmp_path / "y.npy", Y)
    out = tmp_path / "g.npz"
    res = runner.invoke(cli.main, ["grad", "--factor", paths[0], "--factor", paths[1], "--factor", paths[2],
                                   "--y", str(tmp_path / "y.npy"), "--per-observation",
                                   "--out", str(out)])
    assert res.exit_code == 0, res.output
    g = log_quad_grad(fs, Y, reduce=None)
    with np.load(out) as z:
        assert z["dfactor3"].shape == (3, 2, 2)
        assert_allclose(z["dfactor3"], g.factors[2], rtol=ROUNDING)


def test_grad_old_option_spelling_is_a_hidden_alias(runner, tmp_path, rng):
    """`--A a --B b --factor c` (the old spelling) is `--factor a --factor b --factor c`."""
    fs = factors(rng, (2, 3, 2))
    Y = rng.standard_normal((3, 12))
    paths = _save_factors(tmp_path, fs)
    np.save(tmp_path / "y.npy", Y)
    tail = ["--factor", paths[2], "--y", str(tmp_path / "y.npy"), "--out"]
    old = runner.invoke(cli.main, ["grad", "--A", paths[0], "--B", paths[1], *tail,
                                   str(tmp_path / "old.npz")])
    assert old.exit_code == 0, old.output
    g = log_quad_grad(fs, Y)
    with np.load(tmp_path / "old.npz") as z:
        assert_allclose(z["dA"], g.A, rtol=ROUNDING)
        assert_allclose(z["dB"], g.B, rtol=ROUNDING)
        assert_allclose(z["dfactor3"], g.factors[2], rtol=ROUNDING)
        assert_allclose(z["value"], g.value, rtol=ROUNDING)
    helptext = runner.invoke(cli.main, ["grad", "--help"]).output
    assert "--factor" in helptext
    assert "--A" not in helptext and "--B" not in helptext


def test_grad_bad_files(runner, tmp_path):
    np.save(tmp_path / "A.npy", np.eye(2))
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    (tmp_path / "bad.csv").write_text("1,2\n3,x\n")
    base = ["grad", "--factor", str(tmp_path / "A.npy"), "--out", str(tmp_path / "o.npz")]
    res = runner.invoke(cli.main, [*base, "--factor", str(tmp_path / "missing.npy"), "--y", "x.npy"])
    assert res.exit_code == 2 and "no such file" in res.output
    res = runner.invoke(cli.main, [*base, "--factor", str(tmp_path / "obj.npy"), "--y", "x.npy"])
    assert res.exit_code == 2 and "could not read" in res.output
    res = runner.invoke(cli.main, [*base, "--factor", str(tmp_path / "bad.csv"), "--y", "x.npy"])
    assert res.exit_code == 2 and "could not read" in res.output
    np.save(tmp_path / "B.npy", np.eye(3))
    np.save(tmp_path / "y.npy", np.ones(5))
    res = runner.invoke(cli.main, [*base, "--factor", str(tmp_path / "B.npy"),
                                   "--y", str(tmp_path / "y.npy")])
    assert res.exit_code == 2 and "--y: must have shape (P,) or (N, P) with P = 6" in res.output


# ---------------------------------------------------------------------------------------
# Hostile input: every command, every way a file or an option can be wrong
# ---------------------------------------------------------------------------------------
def _make_hostile_files(d: Path) -> None:
    rng = np.random.default_rng(0)

    def save(name, arr):
        np.save(d / name, arr)

    save("A.npy", factor(rng, 3))
    save("B.npy", factor(rng, 2))
    save("y.npy", rng.standard_normal(6))
    save("Y.npy", rng.standard_normal((4, 6)))
    (d / "empty.csv").write_text("")
    (d / "comments.csv").write_text("# nothing here\n")
    save("empty.npy", np.zeros(0))
    save("empty2.npy", np.zeros((0, 6)))
    y = rng.standard_normal(6)
    y[2] = np.nan
    save("nan_y.npy", y)
    A = factor(rng, 3)
    A[0, 1] = np.inf
    save("inf_A.npy", A)
    (d / "nan.csv").write_text("1,2,nan,4,5,6\n")
    save("y5.npy", np.ones(5))
    save("rect.npy", np.ones((3, 2)))
    save("vec3.npy", np.ones(3))
    save("cube.npy", np.ones((2, 3, 3)))
    save("zero3.npy", np.zeros((3, 3)))
    save("complex.npy", np.ones(6) * (1 + 1j))
    save("str.npy", np.array(["a", "b"]))
    save("struct.npy", np.zeros(6, dtype=[("a", "f8"), ("b", "i4")]))
    np.save(d / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with zipfile.ZipFile(d / "notnpy.npz", "w") as z:
        z.writestr("y.npy", b"garbage, not an npy file")
    with zipfile.ZipFile(d / "textmember.npz", "w") as z:
        z.writestr("y.txt", "1,2,3,4,5,6")
    np.savez(d / "two.npz", a=np.ones(6), b=np.ones(6))
    (d / "corrupt.npz").write_bytes(bytes(range(256)) * 4)
    buf = io.BytesIO()
    np.save(buf, np.ones(1000))
    (d / "truncated.npy").write_bytes(buf.getvalue()[:300])
    (d / "garbage.npy").write_bytes(b"not a numpy file")
    (d / "binary.csv").write_bytes(bytes(range(256)))
    (d / "ragged.csv").write_text("1,2,3\n4,5\n")
    (d / "data.mat").write_bytes(b"MATLAB 5.0")
    (d / "dir.npy").mkdir()
    header = "{'descr': '<f8', 'fortran_order': False, 'shape': (1000000000000,), }"
    header = header + " " * (118 - len(header)) + "\n"
    (d / "hugeheader.npy").write_bytes(b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little")
                                       + header.encode())
    save("y1e300.npy", rng.standard_normal(6) * 1e300)
    save("M66.npy", rng.standard_normal((6, 6)))
    M = rng.standard_normal((6, 6))
    M[1, 1] = np.nan
    save("M_nan.npy", M)
    with np.errstate(over="ignore"):
        save("M_overflow.npy", np.array([[1e308, 3e308], [1.0, 2.0]]) * 10)
    save("M_1e300.npy", rng.standard_normal((6, 6)) * 1e300)
    save("M_empty.npy", np.zeros((0, 0)))
    save("M_zeros.npy", np.zeros((6, 6)))
    save("M12.npy", rng.standard_normal((12, 12)))
    save("X.npy", rng.standard_normal((30, 2, 3)))
    X = rng.standard_normal((30, 2, 3))
    X[4, 1, 1] = np.nan
    save("X_nan.npy", X)
    np.savetxt(d / "X_flat.csv", rng.standard_normal((30, 6)), delimiter=",")
    (d / "X_inf.csv").write_text("\n".join("1,2,inf,3,4,5" for _ in range(20)))
    X = rng.standard_normal((30, 2, 3))
    X[:, :, 0] = 1.0
    save("X_constcol.npy", X)
    save("X_few.npy", rng.standard_normal((3, 6, 2)))
    save("X4d.npy", np.ones((3, 2, 2, 2)))
    save("X1d.npy", np.ones(12))
    save("X_big.npy", rng.standard_normal((30, 2, 3)) * 1e200)
    save("X_empty.npy", np.zeros((0, 2, 3)))
    (d / "file.txt").write_text("a regular file")
    (d / "outdir").mkdir()
    (d / "dnpz.npz").mkdir()


_G = ["grad", "--factor", "{d}/A.npy", "--factor", "{d}/B.npy"]
_GO = ["--out", "{d}/g.npz"]
_N = ["nkp", "{d}/M66.npy", "--shapes", "2,3"]
_N3 = ["nkp", "{d}/M12.npy", "--shapes", "2,3,2"]
_F = ["fit", "--no-progress", "--out", "{d}/f.npz"]
_FX = ["fit", "{d}/X.npy", "--no-progress"]
_VALID = (0, 1)  # valid input: success, or a numerical failure - never "bad input"

# (id, argv with {d} = the folder of files, expected exit status(es), text the output must hold)
HOSTILE_CASES = [
    ("grad-ok", [*_G, "--y", "{d}/y.npy", *_GO], 0, "saved to"),
    ("grad-y-empty-csv", [*_G, "--y", "{d}/empty.csv", *_GO], 2, "--y: "),
    ("grad-y-comments-only-csv", [*_G, "--y", "{d}/comments.csv", *_GO], 2, "holds no data"),
    ("grad-y-empty-npy", [*_G, "--y", "{d}/empty.npy", *_GO], 2, "holds no data"),
    ("grad-y-empty-batch", [*_G, "--y", "{d}/empty2.npy", *_GO], 2, "holds no data"),
    ("grad-y-nan", [*_G, "--y", "{d}/nan_y.npy", *_GO], 2, "--y: "),
    ("grad-y-nan-csv", [*_G, "--y", "{d}/nan.csv", *_GO], 2, "NaN"),
    ("grad-A-inf", ["grad", "--factor", "{d}/inf_A.npy", "--factor", "{d}/B.npy", "--y",
                    "{d}/y.npy", *_GO], 2, "--factor #1: "),
    ("grad-old-A-inf", ["grad", "--A", "{d}/inf_A.npy", "--B", "{d}/B.npy", "--y", "{d}/y.npy",
                        *_GO], 2, "--A: "),
    ("grad-y-wrong-length", [*_G, "--y", "{d}/y5.npy", *_GO], 2, "P = 6"),
    ("grad-A-not-square", ["grad", "--factor", "{d}/rect.npy", "--factor", "{d}/B.npy", "--y",
                           "{d}/y.npy", *_GO], 2, "--factor #1: a factor must be a square"),
    ("grad-A-1d", ["grad", "--factor", "{d}/vec3.npy", "--factor", "{d}/B.npy", "--y",
                   "{d}/y.npy", *_GO], 2, "--factor #1: "),
    ("grad-A-3d", ["grad", "--factor", "{d}/cube.npy", "--factor", "{d}/B.npy", "--y",
                   "{d}/y.npy", *_GO], 2, "--factor #1: "),
    ("grad-A-singular", ["grad", "--factor", "{d}/zero3.npy", "--factor", "{d}/B.npy", "--y",
                         "{d}/y.npy", *_GO], 1, "singular"),
    ("grad-factor-1d", [*_G, "--factor", "{d}/vec3.npy", "--y", "{d}/y.npy", *_GO], 2,
     "--factor #3: "),
    ("grad-one-factor", ["grad", "--factor", "{d}/A.npy", "--y", "{d}/y.npy", *_GO], 2,
     "at least two factors"),
    ("grad-no-factor", ["grad", "--y", "{d}/y.npy", *_GO], 2, "at least two factors"),
    ("grad-old-A-without-B", ["grad", "--A", "{d}/A.npy", "--factor", "{d}/B.npy", "--y",
                              "{d}/y.npy", *_GO], 2, "--A and --B"),
    ("grad-mu-wrong", [*_G, "--y", "{d}/y.npy", "--mu", "{d}/y5.npy", *_GO], 2, "--mu: "),
    ("grad-alpha-nan", [*_G, "--y", "{d}/y.npy", "--alpha", "nan", *_GO], 2, "--alpha"),
    ("grad-alpha-inf", [*_G, "--y", "{d}/y.npy", "--alpha", "inf", *_GO], 2, "--alpha"),
    ("grad-alpha-domain", [*_G, "--y", "{d}/y.npy", "--alpha", "-1e6", *_GO], 2, "alpha"),
    ("grad-alpha-text", [*_G, "--y", "{d}/y.npy", "--alpha", "abc", *_GO], 2, "--alpha"),
    ("grad-y-1e300", [*_G, "--y", "{d}/y1e300.npy", *_GO], _VALID, ""),
    ("grad-y-complex", [*_G, "--y", "{d}/complex.npy", *_GO], 2, "real numeric"),
    ("grad-y-strings", [*_G, "--y", "{d}/str.npy", *_GO], 2, "real numeric"),
    ("grad-y-structured", [*_G, "--y", "{d}/struct.npy", *_GO], 2, "real numeric"),
    ("grad-y-pickle", [*_G, "--y", "{d}/obj.npy", *_GO], 2, "could not read"),
    ("grad-y-npz-member-not-npy", [*_G, "--y", "{d}/notnpy.npz", *_GO], 2, "not an .npy"),
    ("grad-y-npz-text-member", [*_G, "--y", "{d}/textmember.npz", *_GO], 2, "not an .npy"),
    ("grad-y-npz-two", [*_G, "--y", "{d}/two.npz", *_GO], 2, "choose one"),
    ("grad-y-npz-key-missing", [*_G, "--y", "{d}/two.npz:c", *_GO], 2, "no array"),
    ("grad-y-npz-key", [*_G, "--y", "{d}/two.npz:a", *_GO], 0, "saved to"),
    ("grad-y-npz-corrupt", [*_G, "--y", "{d}/corrupt.npz", *_GO], 2, "not an .npz"),
    ("grad-y-npy-truncated", [*_G, "--y", "{d}/truncated.npy", *_GO], 2, "truncated"),
    ("grad-y-npy-garbage", [*_G, "--y", "{d}/garbage.npy", *_GO], 2, "could not read"),
    ("grad-y-npy-huge-header", [*_G, "--y", "{d}/hugeheader.npy", *_GO], 2, "truncated"),
    ("grad-y-csv-binary", [*_G, "--y", "{d}/binary.csv", *_GO], 2, "could not read"),
    ("grad-y-csv-ragged", [*_G, "--y", "{d}/ragged.csv", *_GO], 2, "could not read"),
    ("grad-y-unsupported-ext", [*_G, "--y", "{d}/data.mat", *_GO], 2, "unsupported"),
    ("grad-y-directory", [*_G, "--y", "{d}/dir.npy", *_GO], 2, "--y: "),
    ("grad-y-missing", [*_G, "--y", "{d}/nothere.npy", *_GO], 2, "no such file"),
    ("grad-out-missing-dir", [*_G, "--y", "{d}/y.npy", "--out", "{d}/nodir/g.npz"], 2,
     "--out: "),
    ("grad-out-under-file", [*_G, "--y", "{d}/y.npy", "--out", "{d}/file.txt/g.npz"], 2,
     "--out: "),
    ("grad-out-is-dir", [*_G, "--y", "{d}/y.npy", "--out", "{d}/outdir"], 2, "directory"),
    ("grad-out-npz-is-dir", [*_G, "--y", "{d}/y.npy", "--out", "{d}/dnpz"], 2, "--out: "),
    ("grad-missing-option", ["grad", "--A", "{d}/A.npy", "--y", "{d}/y.npy", *_GO], 2, "--B"),
    ("grad-unknown-option", [*_G, "--y", "{d}/y.npy", "--frob", *_GO], 2, "--frob"),
    ("nkp-ok", [*_N], 0, "Kronecker"),
    ("nkp-out-missing-dir", [*_N, "--out", "{d}/nodir/f.npz"], 2, "--out: "),
    ("nkp-out-under-file", [*_N, "--out", "{d}/file.txt/f.npz"], 2, "--out: "),
    ("nkp-out-npz-is-dir", [*_N, "--out", "{d}/dnpz"], 2, "--out: "),
    ("nkp-plot-bad-ext", [*_N, "--plot", "{d}/s.xyz"], 2, "--plot: "),
    ("nkp-plot-missing-dir", [*_N, "--plot", "{d}/nodir/s.png"], 2, "--plot: "),
    ("nkp-plot-under-file", [*_N, "--plot", "{d}/file.txt/s.png"], 2, "--plot: "),
    ("nkp-plot-is-dir", [*_N, "--plot", "{d}/outdir"], 2, "directory"),
    ("nkp3-out-missing-dir", [*_N3, "--out", "{d}/nodir/f.npz"], 2, "--out: "),
    ("nkp3-plot-bad-ext", [*_N3, "--plot", "{d}/s.xyz"], 2, "--plot: "),
    ("nkp3-rank-2", [*_N3, "--rank", "2"], 2, "--rank"),
    ("nkp-nan", ["nkp", "{d}/M_nan.npy", "--shapes", "2,3"], 2, "MATRIX: "),
    ("nkp-inf-after-overflow", ["nkp", "{d}/M_overflow.npy", "--shapes", "2,1"], 2, "NaN or Inf"),
    ("nkp-1e300", ["nkp", "{d}/M_1e300.npy", "--shapes", "2,3"], _VALID, ""),
    ("nkp-empty", ["nkp", "{d}/M_empty.npy", "--shapes", "2,3"], 2, "MATRIX: "),
    ("nkp-zeros", ["nkp", "{d}/M_zeros.npy", "--shapes", "2,3"], 0, "‖M‖_F = 0"),
    ("nkp-1d", ["nkp", "{d}/y.npy", "--shapes", "2,3"], 2, "2-D"),
    ("nkp-shape-mismatch", ["nkp", "{d}/M66.npy", "--shapes", "3,3"], 2, "--shapes: "),
    ("nkp-shape-zero", ["nkp", "{d}/M66.npy", "--shapes", "0x2,3"], 2, "--shapes: "),
    ("nkp-shape-huge", ["nkp", "{d}/M66.npy", "--shapes", "99999999999999999999x1,1"], 2,
     "--shapes: "),
    ("nkp-shape-garbage", ["nkp", "{d}/M66.npy", "--shapes", "a,b"], 2, "--shapes: "),
    ("nkp-rank-0", [*_N, "--rank", "0"], 2, "--rank"),
    ("nkp-rank-too-big", [*_N, "--rank", "1000"], 2, "rank"),
    ("nkp-psd-not-symmetric", [*_N, "--structure", "psd"], 2, "symmetric"),
    ("nkp-max-terms-0", [*_N, "--max-terms", "0"], 2, "--max-terms"),
    ("nkp-npz-member-not-npy", ["nkp", "{d}/notnpy.npz", "--shapes", "2,3"], 2, "MATRIX: "),
    ("nkp-garbage", ["nkp", "{d}/garbage.npy", "--shapes", "2,3"], 2, "could not read"),
    ("nkp-matrix-is-dir", ["nkp", "{d}/outdir", "--shapes", "2,3"], 2, "directory"),
    ("fit-ok", [*_F, "{d}/X.npy"], 0, "saved to"),
    ("fit-nan", [*_F, "{d}/X_nan.npy"], 2, "X_nan.npy contains NaN"),
    ("fit-inf-csv", [*_F, "{d}/X_inf.csv", "--shape", "2,3"], 2, "DATA: "),
    ("fit-empty-csv", [*_F, "{d}/empty.csv", "--shape", "2,3"], 2, "DATA: "),
    ("fit-empty-npy", [*_F, "{d}/X_empty.npy"], 2, "holds no data"),
    ("fit-1d", [*_F, "{d}/X1d.npy"], 2, "DATA: "),
    ("fit-4d", [*_F, "{d}/X4d.npy"], 2, "DATA: "),
    ("fit-too-few", [*_F, "{d}/X_few.npy"], 2, "too few"),
    ("fit-constant-column", [*_F, "{d}/X_constcol.npy"], 1, "numerical failure"),
    ("fit-1e200", [*_F, "{d}/X_big.npy"], 2, "gauge='balanced'"),
    ("fit-strings", [*_F, "{d}/str.npy"], 2, "real numeric"),
    ("fit-npz-member-not-npy", [*_F, "{d}/notnpy.npz"], 2, "DATA: "),
    ("fit-garbage", [*_F, "{d}/garbage.npy"], 2, "could not read"),
    ("fit-data-is-dir", [*_F, "{d}/outdir"], 2, "directory"),
    ("fit-shape-mismatch", [*_F, "{d}/X_flat.csv", "--shape", "4,2"], 2, "--shape: "),
    ("fit-shape-missing", [*_F, "{d}/X_flat.csv"], 2, "--shape: "),
    ("fit-shape-garbage", [*_F, "{d}/X_flat.csv", "--shape", "2;3"], 2, "--shape: "),
    ("fit-df-without-t", [*_F, "{d}/X.npy", "--df", "3"], 2, "--df"),
    ("fit-df-zero", [*_F, "{d}/X.npy", "--model", "t", "--df", "0"], 2, "--df"),
    ("fit-df-negative", [*_F, "{d}/X.npy", "--model", "t", "--df", "-2"], 2, "--df"),
    ("fit-df-nan", [*_F, "{d}/X.npy", "--model", "t", "--df", "nan"], 2, "--df"),
    ("fit-tol-nan", [*_F, "{d}/X.npy", "--tol", "nan"], 2, "--tol"),
    ("fit-max-iter-0", [*_F, "{d}/X.npy", "--max-iter", "0"], 2, "--max-iter"),
    ("fit-out-missing-dir", [*_FX, "--out", "{d}/nodir/f.npz"], 2, "--out: "),
    ("fit-out-under-file", [*_FX, "--out", "{d}/file.txt/f.npz"], 2, "--out: "),
    ("fit-out-npz-is-dir", [*_FX, "--out", "{d}/dnpz"], 2, "--out: "),
    ("fit-plot-bad-ext", [*_F, "{d}/X.npy", "--plot", "{d}/f.xyz"], 2, "--plot: "),
    ("fit-plot-missing-dir", [*_F, "{d}/X.npy", "--plot", "{d}/nodir/f.png"], 2, "--plot: "),
    ("fit-missing-out", ["fit", "{d}/X.npy"], 2, "--out"),
    ("demo-extra-arg", ["demo", "extra"], 2, "extra"),
    ("unknown-command", ["frobnicate"], 2, "frobnicate"),
]


@pytest.fixture(scope="module")
def hostile_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("hostile")
    _make_hostile_files(d)
    return d


_REPEATED_PREFIX = re.compile(r"(--?[\w#-]+|[A-Z]+): (?:Invalid value for \S+ )?\1:")


def check_clean(res, codes=(0, 1, 2)) -> None:
    """No traceback; a known exit status; an error is one line without a repeated prefix."""
    exc = res.exception
    assert exc is None or isinstance(exc, SystemExit), (
        f"traceback: {type(exc).__name__}: {exc}\n{res.output}")
    codes = codes if isinstance(codes, tuple) else (codes,)
    assert res.exit_code in codes, res.output
    assert "Traceback" not in res.output
    assert "internal error" not in res.output, res.output
    assert not _REPEATED_PREFIX.search(res.output), res.output
    err = [line for line in res.stderr.splitlines() if line.strip()]
    if res.exit_code == 0:
        assert all(line.startswith("Warning: ") for line in err), res.stderr
    else:
        errors = [line for line in err if line.startswith("Error: ")]
        assert len(errors) == 1, res.stderr
        if "Usage:" not in res.stderr:  # ours: the one line (and one-line warnings) only
            assert all(line.startswith(("Error: ", "Warning: ")) for line in err), res.stderr


@pytest.mark.parametrize(("argv", "codes", "text"),
                         [pytest.param(*c[1:], id=c[0]) for c in HOSTILE_CASES])
def test_hostile_input(hostile_dir, argv, codes, text):
    res = CliRunner().invoke(cli.main, [a.replace("{d}", str(hostile_dir)) for a in argv])
    check_clean(res, codes)
    assert text in res.output


@pytest.mark.parametrize(("argv", "heavy"), [
    (["grad", "--A", "{d}/A.npy", "--B", "{d}/B.npy", "--y", "{d}/y.npy", "--out",
      "{d}/nodir/g.npz"], "kronkit._calculus.log_quad_grad"),
    (["nkp", "{d}/M66.npy", "--shapes", "2,3", "--out", "{d}/nodir/f"], "kronkit._kpsvd.kpsvd"),
    (["nkp", "{d}/M66.npy", "--shapes", "2,3", "--plot", "{d}/s.xyz"], "kronkit._kpsvd.kpsvd"),
    (["nkp", "{d}/M12.npy", "--shapes", "2,3,2", "--plot", "{d}/nodir/s.png"],
     "kronkit._kpsvd.nearest_kron"),
    (["fit", "{d}/X.npy", "--out", "{d}/file.txt/f"], "kronkit._estimators.separable_mle"),
    (["fit", "{d}/X.npy", "--out", "{d}/f", "--plot", "{d}/f.docx"],
     "kronkit._estimators.separable_mle"),
])
def test_destinations_are_checked_before_the_work(hostile_dir, monkeypatch, argv, heavy):
    def never(*args, **kwargs):
        raise AssertionError("the computation ran before the destination was checked")

    monkeypatch.setattr(heavy, never)
    res = CliRunner().invoke(cli.main, [a.replace("{d}", str(hostile_dir)) for a in argv])
    check_clean(res, 2)


def test_plot_without_extension_is_png(hostile_dir, tmp_path):
    pytest.importorskip("matplotlib")
    res = CliRunner().invoke(cli.main, ["nkp", str(hostile_dir / "M66.npy"), "--shapes", "2,3",
                                        "--plot", str(tmp_path / "spectrum")])
    check_clean(res, 0)
    assert (tmp_path / "spectrum.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_real_process_prints_one_line_and_no_traceback(hostile_dir):
    """Outside CliRunner: the entry point as a user runs it."""
    bad = subprocess.run(
        [sys.executable, "-m", "kronkit", "grad", "--A", str(hostile_dir / "A.npy"), "--B",
         str(hostile_dir / "B.npy"), "--y", str(hostile_dir / "notnpy.npz"), "--out",
         str(hostile_dir / "g.npz")], capture_output=True, text=True)
    assert bad.returncode == 2
    assert bad.stderr.count("\n") == 1 and bad.stderr.startswith("Error: --y: ")
    assert bad.stdout == ""


@pytest.mark.parametrize(("exc", "code", "text"), [
    (kronkit.SingularFactorError("factor 0 is singular"), 1, "numerical failure: factor 0"),
    (kronkit.NotPositiveDefiniteError("not PD"), 1, "numerical failure: not PD"),
    (np.linalg.LinAlgError("SVD did not converge"), 1, "numerical failure"),
    (OverflowError("too big"), 1, "numerical failure (OverflowError): too big"),
    (MemoryError(), 1, "out of memory"),
    (kronkit.DomainError("log(beta) is undefined"), 2, "log(beta) is undefined"),
    (ValueError("`y` must have\nlength 6"), 2, "`y` must have length 6"),
    (TypeError("`alpha` must be real"), 2, "`alpha` must be real"),
    (FileNotFoundError(2, "No such file or directory", "x.npy"), 2, "could not access x.npy"),
    (KeyError("oops"), 1, "internal error (KeyError"),
])
def test_exit_status_policy(exc, code, text, monkeypatch):
    """The one place that maps failures to exit statuses: 2 bad input, 1 numerical failure
    (and internal errors), warnings as one line."""
    import warnings

    import click

    from kronkit._io import cli_errors

    @click.command()
    @cli_errors
    def command():
        warnings.warn("first line\nsecond line", kronkit.ConvergenceWarning, stacklevel=1)
        raise exc

    monkeypatch.delenv("KRONKIT_TRACEBACK", raising=False)
    res = CliRunner().invoke(command, [])
    assert isinstance(res.exception, SystemExit), repr(res.exception)
    assert res.exit_code == code
    warning, error = res.stderr.splitlines()
    assert warning == "Warning: first line second line"
    assert error.startswith("Error: ") and text in error


# -- garbage file contents, drawn by hypothesis -------------------------------------------
def _npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def _zip_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


_floats = st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                    st.sampled_from([0.0, 1.0, -1.0, 1e-300, 1e300, -1e308]))
_arrays = hnp.arrays(
    dtype=st.sampled_from([np.float64, np.float32, np.int64, np.bool_, np.complex128]),
    shape=hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=6),
    elements=None)
_npy_contents = st.one_of(
    st.binary(max_size=200),
    _arrays.map(_npy_bytes),
    st.tuples(_arrays.map(_npy_bytes), st.integers(0, 400)).map(lambda t: t[0][:t[1]]),
    st.builds(lambda arr, junk: _npy_bytes(arr) + junk, _arrays, st.binary(max_size=20)),
)
_npz_contents = st.one_of(
    st.binary(max_size=200),
    st.dictionaries(st.sampled_from(["a.npy", "b.npy", "x", "a.txt"]),
                    st.one_of(st.binary(max_size=80), _arrays.map(_npy_bytes)),
                    max_size=2).map(_zip_bytes),
)
_csv_contents = st.one_of(
    st.binary(max_size=200),
    st.text(alphabet="0123456789.,-+e naif#\n\t", max_size=200).map(str.encode),
    st.lists(st.lists(_floats, min_size=6, max_size=6), min_size=0, max_size=12).map(
        lambda rows: "\n".join(",".join(repr(v) for v in r) for r in rows).encode()),
)
_files = st.one_of(st.tuples(st.just(".npy"), _npy_contents),
                   st.tuples(st.just(".npz"), _npz_contents),
                   st.tuples(st.just(".csv"), _csv_contents))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(file=_files, command=st.sampled_from(["grad-y", "grad-A", "nkp", "fit", "fit-flat"]))
def test_garbage_files_never_show_a_traceback(file, command):
    ext, content = file
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        path = d / f"input{ext}"
        path.write_bytes(content)
        np.save(d / "A.npy", np.diag([2.0, 3.0, 4.0]))
        np.save(d / "B.npy", np.diag([1.0, 5.0]))
        np.save(d / "y.npy", np.arange(6.0))
        argv = {
            "grad-y": ["grad", "--A", f"{d}/A.npy", "--B", f"{d}/B.npy", "--y", str(path),
                       "--out", f"{d}/g"],
            "grad-A": ["grad", "--A", str(path), "--B", f"{d}/B.npy", "--y", f"{d}/y.npy",
                       "--out", f"{d}/g"],
            "nkp": ["nkp", str(path), "--shapes", "2,3"],
            "fit": ["fit", str(path), "--no-progress", "--out", f"{d}/f"],
            "fit-flat": ["fit", str(path), "--shape", "2,3", "--no-progress", "--out", f"{d}/f"],
        }[command]
        res = CliRunner().invoke(cli.main, argv)
    check_clean(res)


# -- nkp prints a bounded table ---------------------------------------------------------
def _kron_singular_values(M: np.ndarray, m: int, n: int) -> np.ndarray:
    """Singular values of the rearrangement R(M) (rows vec(block)), dense SVD."""
    R = M.reshape(m, n, m, n).transpose(0, 2, 1, 3).reshape(m * m, n * n)
    return np.linalg.svd(R, compute_uv=False)


def test_nkp_table_is_bounded_by_default(tmp_path, rng):
    M = rng.standard_normal((64, 64))
    np.save(tmp_path / "M.npy", M)
    s = _kron_singular_values(M, 8, 8)  # 64 nonzero terms
    runner = CliRunner()
    res = runner.invoke(cli.main, ["nkp", str(tmp_path / "M.npy"), "--shapes", "8,8", "--out",
                                   str(tmp_path / "f.npz")])
    check_clean(res, 0)
    rows = [line for line in res.stdout.splitlines() if re.match(r"^│\s*\d+\s*│", line)]
    assert len(rows) == 10
    for k in range(10):
        assert f"{s[k]:.10g}" in res.stdout
    assert f"{s[10]:.10g}" not in res.stdout
    assert "first 10 of 64 terms" in res.stdout and "64 term(s)" in res.stdout
    with np.load(tmp_path / "f.npz") as z:  # --out keeps every term
        assert_allclose(z["s"], s, rtol=RTOL)
    res = runner.invoke(cli.main, ["nkp", str(tmp_path / "M.npy"), "--shapes", "8,8", "--all"])
    rows = [line for line in res.stdout.splitlines() if re.match(r"^│\s*\d+\s*│", line)]
    assert len(rows) == 64 and "first" not in res.stdout
    assert f"{s[63]:.10g}" in res.stdout
    res = runner.invoke(cli.main, ["nkp", str(tmp_path / "M.npy"), "--shapes", "8,8",
                                   "--max-terms", "3"])
    rows = [line for line in res.stdout.splitlines() if re.match(r"^│\s*\d+\s*│", line)]
    assert len(rows) == 3 and "first 3 of 64 terms" in res.stdout


# -- kronkit fit: kronkit's own checks, no scikit-learn, a labelled test -------------------
def test_fit_nan_names_the_file_not_scikit_learn(tmp_path, rng):
    X = rng.standard_normal((20, 2, 3))
    X[3, 0, 2] = np.nan
    np.save(tmp_path / "obs.npy", X)
    res = CliRunner().invoke(cli.main, ["fit", str(tmp_path / "obs.npy"), "--out",
                                        str(tmp_path / "f"), "--no-progress"])
    check_clean(res, 2)
    assert "DATA: " in res.stderr and "obs.npy contains NaN or Inf" in res.stderr
    assert "HistGradientBoosting" not in res.output and "sklearn" not in res.output


def test_fit_runs_without_scikit_learn(tmp_path, rng, monkeypatch):
    for name in [m for m in sys.modules if m == "sklearn" or m.startswith("sklearn.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "sklearn", None)  # import sklearn -> ImportError
    X = rng.standard_normal((25, 3, 2))
    np.save(tmp_path / "d.npy", X)
    res = CliRunner().invoke(cli.main, ["fit", str(tmp_path / "d.npy"), "--out",
                                        str(tmp_path / "f"), "--no-progress"])
    check_clean(res, 0)
    monkeypatch.undo()
    ref = kronkit.separable_mle(X)
    with np.load(tmp_path / "f.npz") as z:
        assert_allclose(np.kron(z["row_covariance"], z["column_covariance"]),
                        np.kron(ref.row_covariance, ref.column_covariance), rtol=RTOL)


def test_fit_labels_the_gaussian_test_and_its_p_value_method(tmp_path, rng):
    X = rng.standard_normal((40, 2, 3))
    np.save(tmp_path / "d.npy", X)
    res = CliRunner().invoke(cli.main, ["fit", str(tmp_path / "d.npy"), "--out",
                                        str(tmp_path / "f"), "--no-progress"])
    check_clean(res, 0)
    test = kronkit.separability_test(X)
    method = str(test.method)
    assert "Gaussian separability LRT p-value" in res.stdout
    label = {"scaled-chi2": "cumulant-matched χ²", "chi2": "asymptotic χ²",
             "bartlett": "Bartlett-corrected χ²", "monte-carlo": "Monte Carlo"}[method]
    assert f"({label})" in res.stdout
    with np.load(tmp_path / "f.npz") as z:
        assert str(z["separability_method"]) == method
        assert str(z["separability_distribution"]) == test.distribution
        assert z["separability_df"] == test.df
    # the statistic against the dense likelihoods: 2 (ℓ_unstructured − ℓ_separable)
    from scipy.stats import multivariate_normal

    x = X.reshape(40, 6)
    xc = x - x.mean(0)
    ll_full = multivariate_normal(x.mean(0), xc.T @ xc / 40).logpdf(x).sum()
    fit = kronkit.separable_mle(X, tol=1e-14, max_iter=10_000)
    ll_sep = multivariate_normal(fit.location.ravel(),
                                 np.kron(fit.row_covariance, fit.column_covariance)).logpdf(x).sum()
    stat = 2 * (ll_full - ll_sep)
    line = next(ln for ln in res.stdout.splitlines() if "LRT statistic" in ln)
    assert float(line.split()[-2 if line.rstrip().endswith("│") else -1]) == pytest.approx(
        stat, rel=1e-5)


def test_fit_t_does_not_print_the_gaussian_p_value(tmp_path, rng):
    X = rng.standard_normal((40, 2, 3)) / np.sqrt(rng.chisquare(4, 40) / 4)[:, None, None]
    np.save(tmp_path / "d.npy", X)
    args = ["fit", str(tmp_path / "d.npy"), "--model", "t", "--df", "4", "--out",
            str(tmp_path / "f"), "--no-progress", "--simulations", "49", "--seed", "3"]
    res = CliRunner().invoke(cli.main, args)
    check_clean(res, 0)
    assert "Gaussian separability" not in res.stdout
    # a valid test under the t null: the library's parametric bootstrap
    ref = kronkit.separability_test(X, distribution="t", n_simulations=49, random_state=3)
    assert ref.distribution == "t"
    assert "separability LRT (t null) p-value" in res.stdout
    assert f"{ref.pvalue:.4g} (parametric bootstrap, 49 draws)" in res.stdout
    with np.load(tmp_path / "f.npz") as z:
        assert str(z["separability_distribution"]) == "t"
        assert z["separability_pvalue"] == ref.pvalue
    res = CliRunner().invoke(cli.main, [*args, "--no-test"])
    check_clean(res, 0)
    assert "LRT p-value" not in res.stdout and "skipped (--no-test)" in res.stdout


# -- kronkit nkp: files, options, the saved factors --------------------------------------
def _nkp(args):
    return CliRunner().invoke(cli.main, ["nkp", *args])


@pytest.fixture
def laplacian_file(tmp_path):
    n = 4
    T = 2 * np.eye(n) - np.eye(n, k=1) - np.eye(n, k=-1)
    L = np.kron(T, np.eye(n)) + np.kron(np.eye(n), T)
    path = tmp_path / "L.npy"
    np.save(path, L)
    return path, L


def test_nkp_npy_and_out(tmp_path, laplacian_file):
    path, L = laplacian_file
    out = tmp_path / "f.npz"
    result = _nkp([str(path), "--shapes", "4x4,4x4", "--out", str(out)])
    assert result.exit_code == 0, result.output
    n = 4
    assert f"{2 * n + math.sqrt(n * (6 * n - 2)):.8f}"[:9] in result.output
    with np.load(out) as z:
        recon = sum(z["s"][k] * np.kron(z["A"][k], z["B"][k]) for k in range(z["s"].size))
        assert_allclose(recon, L, rtol=RTOL, atol=ATOL)
        assert z["s"].size == 2


def test_nkp_csv_rank_structure_plot(tmp_path, rng):
    M = factor(rng, 6)
    csv = tmp_path / "M.csv"
    np.savetxt(csv, M, delimiter=",")
    png = tmp_path / "spec.png"
    result = _nkp([str(csv), "--shapes", "2,3", "--rank", "2", "--structure", "psd",
                   "--plot", str(png)])
    assert result.exit_code == 0, result.output
    assert png.exists() and png.stat().st_size > 1000
    assert "sym⊗sym" in result.output
    s = kronkit.kpsvd(M, (2, 3), rank=2).s
    assert f"{s[0]:.10g}" in result.output


def test_nkp_npz_and_three_factors(tmp_path, rng):
    A, B, C = rng.standard_normal((2, 2)), rng.standard_normal((3, 3)), rng.standard_normal((2, 2))
    M = np.kron(np.kron(A, B), C)
    path = tmp_path / "M.npz"
    np.savez(path, M=M)
    out = tmp_path / "f3.npz"
    result = _nkp([str(path), "--shapes", "2x2,3x3,2x2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    with np.load(out) as z:
        assert_allclose(np.kron(np.kron(z["A1"], z["A2"]), z["A3"]), M, rtol=RTOL, atol=RTOL)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["--shapes", "4x4;4x4"], "factor shapes like"),
        (["--shapes", "4x4"], "at least two"),
        (["--shapes", "3x3,3x3"], "need"),
        (["--shapes", "4x4,4x4", "--rank", "0"], "rank"),
        (["--shapes", "4x4,4x4", "--structure", "nonnegative"], "negative entries"),
    ],
)
def test_nkp_bad_arguments(laplacian_file, args, match):
    path, _ = laplacian_file
    result = _nkp([str(path), *args])
    assert result.exit_code != 0
    assert match in result.output


def test_nkp_bad_files(tmp_path):
    bad = tmp_path / "bad.npy"
    bad.write_bytes(b"not a numpy file")
    r1 = _nkp([str(bad), "--shapes", "2,2"])
    assert r1.exit_code == 2 and "could not read" in r1.output
    r2 = _nkp([str(tmp_path / "missing.npy"), "--shapes", "2,2"])
    assert r2.exit_code == 2 and "no such file" in r2.output
    obj = tmp_path / "obj.npy"
    np.save(obj, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    r3 = _nkp([str(obj), "--shapes", "2,2"])
    assert r3.exit_code == 2
    vec = tmp_path / "vec.npy"
    np.save(vec, np.ones(4))
    r4 = _nkp([str(vec), "--shapes", "2,2"])
    assert r4.exit_code == 2 and "2-D" in r4.output


# -- kronkit fit: files, models, the saved fit, errors ------------------------------------
def _fit(args):
    return CliRunner().invoke(cli.main, ["fit", *args])


def test_fit_npy_and_csv(rng, tmp_path):
    A, B = factors(np.random.default_rng(23), (2, 3))
    # 40 draws with vec-covariance np.kron(A, B), mean 1
    L = np.linalg.cholesky(np.kron(A, B))
    X = (rng.standard_normal((40, 6)) @ L.T).reshape(40, 2, 3) + 1.0
    np.save(tmp_path / "d.npy", X)
    np.savetxt(tmp_path / "d.csv", X.reshape(40, 6), delimiter=",")
    res = _fit([str(tmp_path / "d.npy"), "--out", str(tmp_path / "f.npz"), "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "log-likelihood" in res.output and "p-value" in res.output
    fit = kronkit.separable_mle(X)
    with np.load(tmp_path / "f.npz", allow_pickle=False) as z:
        assert_allclose(z["row_covariance"], fit.row_covariance, rtol=RTOL)
        assert_allclose(z["loglik"], fit.loglik, rtol=ROUNDING)
        assert str(z["model"]) == "normal" and list(z["shape"]) == [2, 3]
        assert z["separability_df"] == 13
    res = _fit([str(tmp_path / "d.csv"), "--shape", "2,3", "--model", "t", "--df", "5",
                "--out", str(tmp_path / "g")])
    assert res.exit_code == 0, res.output
    assert "ECME" in res.output  # the progress bar
    with np.load(tmp_path / "g.npz", allow_pickle=False) as z:
        assert z["df"] == 5.0


def test_fit_plot(rng, tmp_path):
    pytest.importorskip("matplotlib")
    np.save(tmp_path / "d.npy", rng.standard_normal((30, 2, 2)))
    res = _fit([str(tmp_path / "d.npy"), "--out", str(tmp_path / "f.npz"), "--plot",
                str(tmp_path / "f.png"), "--no-progress"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "f.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_fit_errors(rng, tmp_path):
    out = ["--out", str(tmp_path / "f.npz")]
    np.save(tmp_path / "flat.npy", rng.standard_normal((30, 6)))
    res = _fit([str(tmp_path / "flat.npy"), *out])
    assert res.exit_code != 0 and "--shape" in res.output
    res = _fit([str(tmp_path / "flat.npy"), "--shape", "4,2", *out])
    assert res.exit_code != 0 and "rows of length 8" in res.output
    res = _fit([str(tmp_path / "missing.npy"), *out])
    assert res.exit_code != 0 and "no such file" in res.output
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    res = _fit([str(tmp_path / "obj.npy"), *out])
    assert res.exit_code != 0 and "could not read" in res.output
    (tmp_path / "bad.csv").write_text("1,2,x\n3,4\n")
    res = _fit([str(tmp_path / "bad.csv"), "--shape", "1,3", *out])
    assert res.exit_code != 0 and "could not read" in res.output
    np.save(tmp_path / "few.npy", rng.standard_normal((3, 6, 2)))
    res = _fit([str(tmp_path / "few.npy"), *out])
    assert res.exit_code != 0 and "too few" in res.output
    res = _fit([str(tmp_path / "flat.npy"), "--shape", "2,3", "--df", "3", *out])
    assert res.exit_code != 0 and "--df" in res.output
    res = _fit([str(tmp_path / "flat.npy"), "--shape", "2;3", *out])
    assert res.exit_code != 0 and "'p,q'" in res.output


def test_fit_small_n_reports_no_test(rng, tmp_path):
    np.save(tmp_path / "d.npy", rng.standard_normal((6, 2, 3)))
    res = _fit([str(tmp_path / "d.npy"), "--out", str(tmp_path / "f.npz"), "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "n/a" in res.output and "n > P" in res.output
