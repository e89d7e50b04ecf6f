"""Tests for widgets.py"""
import matplotlib

matplotlib.use("Agg")

import ipywidgets  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from batchsize.widgets import plot_sgd_paths, sgd_explorer  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def expected_loss(lr, batch_size, num_steps, theta0=0.0, target=3.0, curvature=2.0, noise_std=4.0):
    """E[(theta_t - 3)**2] by iterating the mean and variance of the lesson's SGD step by step."""
    m, v, out = theta0 - target, 0.0, []
    for _ in range(num_steps + 1):
        out.append(m ** 2 + v)
        m, v = (1 - lr * curvature) * m, (1 - lr * curvature) ** 2 * v + lr ** 2 * noise_std ** 2 / batch_size
    return np.array(out)


def lines_have_no_nan(fig):
    return all(np.isfinite(np.asarray(line.get_ydata(), float)).all() for ax in fig.axes for line in ax.get_lines())


def texts(fig):
    return [t.get_text() for ax in fig.axes for t in ax.texts]


def test_plot_sgd_paths_returns_figure_with_two_axes():
    fig = plot_sgd_paths()
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 2
    assert lines_have_no_nan(fig)
    assert not any("diverged" in t for t in texts(fig))
    assert "batch size 8" in fig.get_suptitle() and "learning rate 0.1" in fig.get_suptitle()


def test_paths_panel_shows_five_runs_on_the_loss_curve():
    fig = plot_sgd_paths(num_steps=10)
    ax_path = fig.axes[0]
    curve, *paths = ax_path.get_lines()
    assert len(paths) == 5
    for line in [curve, *paths]:
        np.testing.assert_allclose(line.get_ydata(), (np.asarray(line.get_xdata()) - 3) ** 2)
    for line in paths:
        assert len(line.get_xdata()) == 11
        assert line.get_xdata()[0] == 0.0  # every path starts at theta0 = 0


@pytest.mark.parametrize("batch_size, lr", [(8, 0.1), (1, 0.4), (128, 0.02)])
def test_exact_mean_line_is_expected_loss(batch_size, lr):
    fig = plot_sgd_paths(batch_size=batch_size, lr=lr, num_steps=20, num_seeds=50)
    (exact,) = [line for line in fig.axes[1].get_lines() if line.get_label() == "exact mean"]
    np.testing.assert_allclose(exact.get_ydata(), expected_loss(lr, batch_size, 20), rtol=1e-10)


def test_median_line_is_median_over_seeds_near_expected_loss():
    fig = plot_sgd_paths(batch_size=8, lr=0.1, num_steps=30, num_seeds=400)
    (median,) = [line for line in fig.axes[1].get_lines() if line.get_label().startswith("median of 400")]
    # (theta - 3)**2 is a scaled noncentral chi-square: its median lies below its mean, but within a factor 3.
    ratio = median.get_ydata()[1:] / expected_loss(0.1, 8, 30)[1:]
    assert np.all((ratio > 1 / 3) & (ratio <= 1.05))


@pytest.mark.parametrize("lr", [2.0, 5.0])
def test_diverging_lr_shows_diverged_text_without_nan_lines(lr):
    fig = plot_sgd_paths(lr=lr)
    assert len(fig.axes) == 2
    assert len(texts(fig)) == 2 and all(t.startswith("diverged") for t in texts(fig))
    assert lines_have_no_nan(fig)


def test_titles_show_rounded_learning_rates():
    assert plot_sgd_paths(lr=10 ** -1.7, num_seeds=20).get_suptitle() == "batch size 8, learning rate 0.02"
    assert plot_sgd_paths(lr=10 ** 0.05, num_seeds=20).get_suptitle() == "batch size 8, learning rate 1.12"


@pytest.mark.parametrize("lr", [1.0, 1.2])
def test_every_unstable_lr_in_slider_range_shows_diverged(lr):
    fig = plot_sgd_paths(lr=lr)
    assert any("diverged" in t for t in texts(fig))


def test_sgd_explorer_wires_two_sliders():
    widget = sgd_explorer()
    assert isinstance(widget, ipywidgets.interactive)
    sliders = {type(c).__name__: c for c in widget.children if isinstance(c, ipywidgets.ValueWidget)}
    assert set(sliders) == {"SelectionSlider", "FloatLogSlider"}
    assert list(sliders["SelectionSlider"].options) == [1, 2, 4, 8, 16, 32, 64, 128, 256]
    assert sliders["SelectionSlider"].value == 8
    assert sliders["FloatLogSlider"].value == pytest.approx(0.1)
    assert widget.kwargs == {"batch_size": 8, "lr": pytest.approx(0.1)}


def test_slider_range_reaches_unstable_lrs():
    widget = sgd_explorer()
    (lr_slider,) = [c for c in widget.children if isinstance(c, ipywidgets.FloatLogSlider)]
    assert lr_slider.base ** lr_slider.max * 2.0 >= 2  # the lesson's curvature 2: lets a reader see divergence


def test_explorer_callback_draws_the_slider_values():
    widget = sgd_explorer()
    plt.close("all")
    widget.children[0].value = 32  # move the batch-size slider: the callback must receive the new value
    widget.f(**widget.kwargs)
    fig = plt.gcf()
    assert len(fig.axes) == 2 and fig._suptitle.get_text() == "batch size 32, learning rate 0.1"


def test_explorer_defaults_draw_through_plain_function():
    widget = sgd_explorer()
    fig = plot_sgd_paths(**widget.kwargs)
    assert isinstance(fig, Figure) and len(fig.axes) == 2


# ---------------------------------------------------------------------------------------------------------------
# the noisy quadratic model


from batchsize.sim import NQM  # noqa: E402
from batchsize.widgets import NQM_BATCH_SIZES, nqm_explorer, plot_nqm  # noqa: E402


def nqm_loss_by_loop(lr, batch_size, num_steps, momentum):
    """E L_t of the widget's NQM (h_i = 1/i, c_i = h_i, theta0 = 1) by iterating the moments per direction."""
    nqm, total = NQM.make(dim=100), np.zeros(num_steps + 1)
    for h, c in zip(nqm.curvatures, nqm.noise):
        mean, cov = np.array([1.0, 0.0]), np.zeros((2, 2))
        A, b = np.array([[1 - lr * h, -lr * momentum], [h, momentum]]), np.array([-lr, 1.0])
        for t in range(num_steps + 1):
            total[t] += 0.5 * h * (mean[0] ** 2 + cov[0, 0])
            mean, cov = A @ mean, A @ cov @ A.T + np.outer(b, b) * c / batch_size
    return total


@pytest.mark.parametrize("momentum", [0.0, 0.5])
def test_plot_nqm_exact_line_is_expected_loss_and_median_is_near_it(momentum):
    fig = plot_nqm(lr=0.3, batch_size=8, momentum=momentum, num_steps=120, num_seeds=200)
    assert len(fig.axes) == 2 and lines_have_no_nan(fig)
    lines = {line.get_label(): line for line in fig.axes[0].get_lines()}
    np.testing.assert_allclose(lines["exact expected loss"].get_ydata(), nqm_loss_by_loop(0.3, 8, 120, momentum),
                               rtol=1e-8)
    ratio = lines["median of 200 sampled runs"].get_ydata() / lines["exact expected loss"].get_ydata()
    assert np.all((ratio > 0.8) & (ratio < 1.2))  # a sum of 100 squared Gaussians: median near the mean


def test_plot_nqm_steps_panel_marks_chosen_batch_size_and_falls_with_batch():
    fig = plot_nqm(lr=0.3, batch_size=64, num_steps=50, num_seeds=10)
    curve, marker = fig.axes[1].get_lines()
    assert marker.get_xdata()[0] == 64
    assert np.all(np.diff(curve.get_ydata()) <= 0)  # more examples per step never need more steps here
    loss = nqm_loss_by_loop(0.3, 64, 1000, 0.0)
    target = 0.01 * loss[0]
    assert marker.get_ydata()[0] == np.nonzero(loss <= target)[0][0]


@pytest.mark.parametrize("lr, momentum", [(2.5, 0.0), (3.0, 0.5)])
def test_plot_nqm_unstable_lr_shows_diverged_without_nan_lines(lr, momentum):
    fig = plot_nqm(lr=lr, momentum=momentum)
    assert all(t.startswith("diverged") for t in texts(fig)) and len(texts(fig)) == 2
    assert lines_have_no_nan(fig)


def test_nqm_explorer_wires_four_sliders_that_reach_divergence():
    widget = nqm_explorer()
    assert isinstance(widget, ipywidgets.interactive)
    assert set(widget.kwargs) == {"batch_size", "lr", "momentum", "precondition_power"}
    (lr_slider,) = [c for c in widget.children if isinstance(c, ipywidgets.FloatLogSlider)]
    assert lr_slider.base ** lr_slider.max > 2.0  # past the largest curvature's limit 2 / h_1 = 2
    (b_slider,) = [c for c in widget.children if isinstance(c, ipywidgets.SelectionSlider)]
    assert list(b_slider.options) == NQM_BATCH_SIZES
    widget.f(**widget.kwargs)
