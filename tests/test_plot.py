"""kronkit.plot: figures of separable fits and of Kronecker PCA spectra (Agg backend)."""

from __future__ import annotations

import io
import subprocess
import sys

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")

import kronkit  # noqa: E402
import kronkit.plot as kplot  # noqa: E402
from helpers import ROUNDING  # noqa: E402


@pytest.fixture
def fitted(rng):
    X = rng.standard_normal((40, 3, 4)) @ np.diag([1.0, 2.0, 0.5, 1.5])
    return X, kronkit.SeparableCovariance(tol=1e-12).fit(X)


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def test_convergence_figure(fitted):
    X, est = fitted
    fig = kplot.convergence(est)
    assert isinstance(fig, matplotlib.figure.Figure)
    ax_ll, ax_gap = fig.axes
    x, y = ax_ll.lines[0].get_data()
    np.testing.assert_array_equal(x, np.arange(1, est.n_iter_ + 1))
    np.testing.assert_array_equal(y, est.loglik_history_)
    gap = est.loglik_history_[-1] - est.loglik_history_[:-1]
    np.testing.assert_allclose(ax_gap.lines[0].get_data()[1], gap[gap > 0])
    assert _png(fig).startswith(b"\x89PNG")
    # a separable_mle result works too
    res = kronkit.separable_mle(X, distribution="t", df=5.0)
    fig2 = kplot.convergence(res)
    assert "ν = 5" in fig2.axes[0].get_title()


def test_factors_heatmaps_show_the_fitted_factors(fitted):
    _, est = fitted
    fig = kplot.factors(est, row_labels=["a", "b", "c"], column_labels=list("wxyz"))
    images = [ax.images[0] for ax in fig.axes if ax.images]
    assert len(images) == 2
    np.testing.assert_array_equal(images[0].get_array(), est.row_covariance_)
    np.testing.assert_array_equal(images[1].get_array(), est.column_covariance_)
    lo, hi = images[1].get_clim()
    assert lo == -hi == -np.max(np.abs(est.column_covariance_))  # symmetric colour scale
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["a", "b", "c"]
    corr = kplot.factors(est, correlation=True)
    A = est.row_covariance_
    d = np.sqrt(np.diagonal(A))
    np.testing.assert_allclose(corr.axes[0].images[0].get_array(), A / np.outer(d, d),
                               rtol=ROUNDING)
    assert _png(fig).startswith(b"\x89PNG")


def test_fit_summary_has_three_panels(fitted):
    _, est = fitted
    fig = kplot.fit_summary(est)
    assert len([ax for ax in fig.axes if ax.images]) == 2
    assert any(ax.lines for ax in fig.axes)


def test_spectrum_figure(rng):
    X = rng.standard_normal((60, 3, 3))
    kp = kronkit.KroneckerPCA(n_terms=4).fit(X)
    fig = kplot.spectrum(kp)
    ax = fig.axes[0]
    heights = [bar.get_height() for bar in ax.patches]
    np.testing.assert_allclose(heights, kp.singular_values_)
    np.testing.assert_allclose(fig.axes[1].lines[0].get_data()[1], kp.explained_energy_)
    res = kronkit.kronecker_pca(X, 2)
    assert len(kplot.spectrum(res).axes[0].patches) == 2
    assert _png(fig).startswith(b"\x89PNG")


def test_spectrum_of_a_kronecker_product_svd(rng):
    """kpsvd / nearest_kron results (the `kronkit nkp --plot` picture): σ_k as bars, the
    relative error after k terms on the twin axis."""
    M = rng.standard_normal((6, 6))
    res = kronkit.kpsvd(M, (2, 3))
    fig = kplot.spectrum(res)
    ax, ax2 = fig.axes
    np.testing.assert_allclose([bar.get_height() for bar in ax.patches], res.s)
    rel = res.tail_errors(relative=True)
    x, y = ax2.lines[0].get_data()
    np.testing.assert_array_equal(x, np.arange(1, res.s.size + 1)[rel > 0])
    np.testing.assert_allclose(y, rel[rel > 0])
    assert ax.get_title() == "Kronecker spectrum (2×2 ⊗ 3×3)"
    assert _png(fig).startswith(b"\x89PNG")
    near = kronkit.nearest_kron(rng.standard_normal((12, 12)), [(2, 2), (3, 3), (2, 2)])
    fig3 = kplot.spectrum(near)
    assert [bar.get_height() for bar in fig3.axes[0].patches] == [near.sigma]
    np.testing.assert_allclose(fig3.axes[1].lines[0].get_data()[1], [near.rel_error])
    assert fig3.axes[0].get_title() == "nearest Kronecker product"


def test_spectrum_without_its_curve_has_one_axis(rng):
    res = kronkit.kronecker_pca(rng.standard_normal((60, 3, 3)), 2)
    fig = kplot.spectrum(res._replace(explained_energy=None))  # as for a large dask X
    assert len(fig.axes) == 1 and len(fig.axes[0].patches) == 2


def test_plot_errors(fitted):
    _, est = fitted
    with pytest.raises(ValueError, match="not fitted"):
        kplot.factors(kronkit.SeparableCovariance())
    with pytest.raises(ValueError, match="not fitted"):
        kplot.spectrum(kronkit.KroneckerPCA())
    with pytest.raises(TypeError, match="`fit`"):
        kplot.convergence(np.eye(3))
    with pytest.raises(TypeError, match="`kpca`"):
        kplot.spectrum(est)
    with pytest.raises(ValueError, match="length 3"):
        kplot.factors(est, row_labels=["a", "b"])


def test_import_kronkit_does_not_import_matplotlib():
    code = ("import sys, kronkit; "
            "assert 'kronkit.plot' not in sys.modules and 'matplotlib' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
