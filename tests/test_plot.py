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
from helpers import ROUNDING, RTOL, SQRT_EPS_RTOL  # noqa: E402


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


# --------------------------------------------------------------------------------------------
# Readable at any size, math-text labels, one style that leaves the user's rcParams alone
# --------------------------------------------------------------------------------------------
def _separable_fit(rng, p, q, n=12):
    """A fit of p×q observations with decaying row and column correlations."""
    def chol(m, scale):
        i = np.arange(m)
        return np.linalg.cholesky(np.exp(-np.abs(i[:, None] - i[None, :]) / scale))

    X = chol(p, 3.0) @ rng.standard_normal((n, p, q)) @ chol(q, 5.0).T
    return kronkit.SeparableCovariance(tol=1e-6).fit(X)


def _heatmaps(fig):
    return [ax for ax in fig.axes if ax.images]


def _ticks(ax, axis):
    ticks = ax.get_xticks() if axis == "x" else ax.get_yticks()
    labels = ax.get_xticklabels() if axis == "x" else ax.get_yticklabels()
    return np.asarray(ticks), [t.get_text() for t in labels]


def _assert_thinned(pos, n):
    """At most 10 ticks, at integer cells 0, s, 2s, … with no room for one more."""
    assert 1 <= pos.size <= 10
    np.testing.assert_array_equal(pos, np.round(pos))
    assert pos[0] == 0 and pos[-1] <= n - 1
    step = pos[1] - pos[0] if pos.size > 1 else n
    np.testing.assert_array_equal(np.diff(pos), step)
    assert pos[-1] + step > n - 1


@pytest.mark.parametrize("n", [30, 60])
def test_heatmap_ticks_are_thinned_on_large_factors(rng, n):
    est = _separable_fit(rng, n, n // 2 + 1)
    rows = [f"r{i}" for i in range(n)]
    for fig in (kplot.factors(est), kplot.factors(est, row_labels=rows),
                kplot.fit_summary(est, row_labels=rows)):
        _png(fig)  # drawing adds no ticks
        for ax, size in zip(_heatmaps(fig), (n, n // 2 + 1), strict=True):
            for axis in "xy":
                pos, text = _ticks(ax, axis)
                _assert_thinned(pos, size)
                custom = size == n and fig.axes[0].get_xticklabels()[0].get_text() == "r0"
                expected = [rows[int(i)] for i in pos] if custom else [str(int(i)) for i in pos]
                assert text == expected  # user labels thinned to the same cells


def test_small_factors_keep_every_tick(fitted):
    _, est = fitted
    fig = kplot.factors(est)
    for ax, n in zip(_heatmaps(fig), (3, 4), strict=True):
        np.testing.assert_array_equal(ax.get_xticks(), np.arange(n))
        np.testing.assert_array_equal(ax.get_yticks(), np.arange(n))


def test_no_values_in_the_cells_of_large_factors(rng):
    big = _separable_fit(rng, 30, 13)
    for annotate in (None, True, False):
        fig = kplot.factors(big, annotate=annotate)
        assert all(not ax.texts for ax in _heatmaps(fig))
    mid = _separable_fit(rng, 12, 9)
    assert all(not ax.texts for ax in _heatmaps(kplot.factors(mid)))  # default: up to 8×8
    fig = kplot.factors(mid, annotate=True)  # asked for: up to 12×12
    for ax, M in zip(_heatmaps(fig), (mid.row_covariance_, mid.column_covariance_),
                     strict=True):
        assert len(ax.texts) == M.size
        for t in ax.texts:
            j, i = (round(v) for v in t.get_position())
            shown = t.get_text()
            decimals = len(shown.split(".")[1]) if "." in shown else 0
            assert abs(float(shown) - M[i, j]) <= 0.5 * 10.0**-decimals * (1 + 1e-9)
            assert 4.0 <= t.get_fontsize() <= 8.0


def test_large_factors_show_the_fitted_data(rng):
    est = _separable_fit(rng, 30, 60)
    for fig in (kplot.factors(est), kplot.fit_summary(est)):
        images = [ax.images[0] for ax in _heatmaps(fig)]
        np.testing.assert_array_equal(images[0].get_array(), est.row_covariance_)
        np.testing.assert_array_equal(images[1].get_array(), est.column_covariance_)
        for im, M in zip(images, (est.row_covariance_, est.column_covariance_), strict=True):
            assert im.get_clim() == (-np.max(np.abs(M)), np.max(np.abs(M)))
            assert im.colorbar is not None and im.get_cmap().name == "RdBu_r"
        curves = [ax for ax in fig.axes if ax.lines]  # fit_summary's convergence panel
        for ax in curves:
            np.testing.assert_array_equal(ax.lines[0].get_ydata(), est.loglik_history_)
    corr = kplot.factors(est, correlation=True)
    B = est.column_covariance_
    d = np.sqrt(np.diagonal(B))
    im = _heatmaps(corr)[1].images[0]
    np.testing.assert_allclose(im.get_array(), B / np.outer(d, d), rtol=ROUNDING)
    assert im.get_clim() == (-1.0, 1.0)  # a correlation's scale: symmetric, fixed


def test_spectrum_with_many_terms(rng):
    """100 terms: the bars are the singular values of the rearranged matrix, the curve
    sqrt(Σ_{j>k} σ_j²)/‖M‖_F (Eckart–Young), at most 10 labelled ticks on the k axis."""
    M = rng.standard_normal((100, 100))
    res = kronkit.kpsvd(M, (10, 10))
    R = M.reshape(10, 10, 10, 10).transpose(0, 2, 1, 3).reshape(100, 100)
    s = np.linalg.svd(R, compute_uv=False)
    fig = kplot.spectrum(res)
    ax, ax2 = fig.axes
    np.testing.assert_allclose([bar.get_height() for bar in ax.patches], s, rtol=RTOL)
    tail = np.sqrt(np.maximum(np.sum(s**2) - np.cumsum(s**2), 0.0)) / np.linalg.norm(M)
    x, y = ax2.lines[0].get_data()
    np.testing.assert_allclose(y, tail[x - 1], rtol=SQRT_EPS_RTOL)
    _png(fig)
    k = ax.get_xticks()
    assert k.size <= 10 and k[0] == 1 and k[-1] <= 100
    np.testing.assert_array_equal(k, np.round(k))


def _labels(fig):
    return [s for ax in fig.axes
            for s in (ax.get_title(), ax.get_xlabel(), ax.get_ylabel()) if s]


def test_labels_are_math_text(fitted, rng):
    from matplotlib.cbook import is_math_text

    _, est = fitted
    conv = kplot.convergence(est)
    assert r"$\ell_k$" in conv.axes[0].get_ylabel()
    assert r"$\ell_{\mathrm{final}} - \ell_k$" == conv.axes[1].get_ylabel()
    assert conv.axes[0].get_xlabel() == r"iteration $k$"
    fac = kplot.factors(est)
    assert r"$\hat A$" in fac.axes[0].get_title() and r"$\hat B$" in fac.axes[1].get_title()
    kp = kplot.spectrum(kronkit.kpsvd(rng.standard_normal((6, 6)), (2, 3)))
    assert r"$\sigma_k$" in kp.axes[0].get_ylabel()
    assert r"$\|M - M_k\|_F \,/\, \|M\|_F$" in kp.axes[1].get_ylabel()
    pca = kplot.spectrum(kronkit.KroneckerPCA(n_terms=3).fit(rng.standard_normal((30, 3, 3))))
    assert r"\sigma_j^2" in pca.axes[1].get_ylabel()
    for fig in (conv, fac, kp, pca, kplot.fit_summary(est)):
        assert all(is_math_text(s) for s in _labels(fig) if "$" in s)
        _png(fig)  # every math text parses and renders
    for s in (conv.axes[1].get_ylabel(), kp.axes[0].get_ylabel(), fac.axes[0].get_title()):
        assert is_math_text(s)


def _every_figure(est, rng):
    return [kplot.convergence(est), kplot.factors(est), kplot.factors(est, correlation=True),
            kplot.fit_summary(est), kplot.spectrum(kronkit.kpsvd(rng.standard_normal((6, 6)),
                                                                 (2, 3)))]


USER_RC = {
    "font.size": 17.0, "font.family": "serif", "axes.titlesize": 21.0, "axes.labelsize": 19.0,
    "xtick.labelsize": 20.0, "ytick.labelsize": 5.0, "axes.grid": True, "image.origin": "lower",
    "image.cmap": "viridis", "image.aspect": "auto", "lines.linewidth": 4.0,
    "lines.markersize": 12.0, "axes.facecolor": "0.8", "figure.facecolor": "0.9",
    "text.color": "tab:green", "axes.labelcolor": "tab:green", "xtick.color": "tab:orange",
    "mathtext.fontset": "cm", "xtick.direction": "in", "xtick.major.size": 9.0,
    "axes.unicode_minus": False, "axes.linewidth": 3.0,
}


def test_user_rcparams_are_left_unchanged(fitted, rng):
    _, est = fitted
    before = dict(matplotlib.rcParams)
    _every_figure(est, rng)
    assert dict(matplotlib.rcParams) == before
    with matplotlib.rc_context(USER_RC):
        inside = dict(matplotlib.rcParams)
        _every_figure(est, rng)
        assert dict(matplotlib.rcParams) == inside
    assert dict(matplotlib.rcParams) == before


def test_one_style_whatever_the_user_settings(fitted, rng):
    """Figures built under the user's own rcParams have kronkit's style (fonts, sizes,
    background, no grid on images, image origin), also after drawing under those settings."""
    _, est = fitted
    with matplotlib.rc_context(USER_RC):
        figs = _every_figure(est, rng)
        for fig in figs:
            _png(fig)
    for fig in figs:
        assert fig.get_facecolor() == matplotlib.colors.to_rgba("white")
        for ax in fig.axes:
            assert ax.get_facecolor() == matplotlib.colors.to_rgba("white")
            assert ax.title.get_fontsize() == 11.0 and ax.title.get_fontname() == "DejaVu Sans"
            assert ax.yaxis.label.get_fontsize() == 10.0
            assert all(t.get_fontsize() == 9.0 for t in ax.get_xticklabels() + ax.get_yticklabels())
            if ax.images:
                assert ax.images[0].origin == "upper"
                assert not any(line.get_visible() for line in ax.get_xgridlines())


def test_figsize_and_label_errors(fitted):
    _, est = fitted
    for bad in [(0, 4), (9,), "big", (np.nan, 3.0), None]:
        with pytest.raises(ValueError, match="`figsize`"):
            kplot.factors(est, figsize=bad)
    with pytest.raises(TypeError, match="`row_labels`"):
        kplot.factors(est, row_labels="abc")
    with pytest.raises(ValueError, match="`column_labels` must have length 4"):
        kplot.fit_summary(est, column_labels=list("abc"))
