"""The kronkit command: demo, grad, file handling."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from numpy.testing import assert_allclose

from helpers import dense_log_quad, spd
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
    A, B = spd(rng, 3), spd(rng, 2)
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
    res = runner.invoke(cli.main, ["grad", "--A", save("A", A), "--B", save("B", B),
                                   "--y", save("y", Y), "--mu", save("mu", mu),
                                   "--alpha", "2.5", "--out", str(out)])
    assert res.exit_code == 0, res.output
    g = log_quad_grad([A, B], Y, mu, 2.5)
    with np.load(out) as z:
        assert_allclose(z["dA"], g.A, rtol=1e-12)
        assert_allclose(z["dB"], g.B, rtol=1e-12)
        assert_allclose(z["dy"], g.y, rtol=1e-12)
        assert_allclose(z["dmu"], g.mu, rtol=1e-12)
        assert_allclose(z["value"], g.value, rtol=1e-12)


def test_grad_three_factors_per_observation(runner, tmp_path, rng):
    fs = [spd(rng, n) for n in (2, 3, 2)]
    Y = rng.standard_normal((3, 12))
    paths = []
    for i, f in enumerate(fs):
        paths.append(str(tmp_path / f"f{i}.npy"))
        np.save(paths[-1], f)
    np.save(tmp_path / "y.npy", Y)
    out = tmp_path / "g.npz"
    res = runner.invoke(cli.main, ["grad", "--A", paths[0], "--B", paths[1], "--factor", paths[2],
                                   "--y", str(tmp_path / "y.npy"), "--per-observation",
                                   "--out", str(out)])
    assert res.exit_code == 0, res.output
    g = log_quad_grad(fs, Y, reduce=None)
    with np.load(out) as z:
        assert z["dfactor3"].shape == (3, 2, 2)
        assert_allclose(z["dfactor3"], g.factors[2], rtol=1e-12)


def test_grad_bad_files(runner, tmp_path):
    np.save(tmp_path / "A.npy", np.eye(2))
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    (tmp_path / "bad.csv").write_text("1,2\n3,x\n")
    base = ["grad", "--A", str(tmp_path / "A.npy"), "--out", str(tmp_path / "o.npz")]
    res = runner.invoke(cli.main, [*base, "--B", str(tmp_path / "missing.npy"), "--y", "x.npy"])
    assert res.exit_code == 2 and "no such file" in res.output
    res = runner.invoke(cli.main, [*base, "--B", str(tmp_path / "obj.npy"), "--y", "x.npy"])
    assert res.exit_code == 2 and "could not read" in res.output
    res = runner.invoke(cli.main, [*base, "--B", str(tmp_path / "bad.csv"), "--y", "x.npy"])
    assert res.exit_code == 2 and "could not read" in res.output
    np.save(tmp_path / "B.npy", np.eye(3))
    np.save(tmp_path / "y.npy", np.ones(5))
    res = runner.invoke(cli.main, [*base, "--B", str(tmp_path / "B.npy"),
                                   "--y", str(tmp_path / "y.npy")])
    assert res.exit_code == 1 and "`y` must have length P = 6" in res.output
