"""Tests for widgets.py"""
import matplotlib

matplotlib.use("Agg")

import ipywidgets  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from batchsize.widgets import (KEYBOARD_NOTE, SGD_BATCH_SIZES, SGD_LRS, nqm_explorer, plot_nqm,  # noqa: E402
                               plot_sgd_paths, sgd_explorer)


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


def test_every_unstable_lr_on_the_slider_shows_diverged_and_the_stable_ones_do_not():
    unstable = [lr for lr in SGD_LRS if lr * 2.0 >= 2]  # the lesson's curvature 2
    assert unstable == [1.0, 1.1, 1.2]
    for lr in unstable + [max(lr for lr in SGD_LRS if lr * 2.0 < 2)]:
        fig = plot_sgd_paths(lr=lr, num_seeds=20)
        assert any("diverged" in t for t in texts(fig)) == (lr in unstable)
        plt.close(fig)


def test_titles_show_rounded_learning_rates():
    assert plot_sgd_paths(lr=10 ** -1.7, num_seeds=20).get_suptitle() == "batch size 8, learning rate 0.02"
    assert plot_sgd_paths(lr=10 ** 0.05, num_seeds=20).get_suptitle() == "batch size 8, learning rate 1.12"
    title = plot_nqm(lr=10 ** -0.5, batch_size=16, num_steps=20, num_seeds=2).get_suptitle()
    assert title.startswith("batch size 16, learning rate 0.316, ")


def controls(widget):
    """The explorer's sliders by keyword argument."""
    return {c._kwarg: c for c in widget.kwargs_widgets}


def test_sgd_explorer_wires_two_selection_sliders_over_the_grids():
    widget = sgd_explorer()
    assert isinstance(widget, ipywidgets.interactive)
    sliders = controls(widget)
    assert set(sliders) == {"batch_size", "lr"}
    assert all(type(c) is ipywidgets.SelectionSlider for c in sliders.values())
    assert list(sliders["batch_size"].options) == SGD_BATCH_SIZES == [1, 2, 4, 8, 16, 32, 64, 128, 256]
    assert list(sliders["lr"].options) == SGD_LRS
    assert widget.kwargs == {"batch_size": 8, "lr": 0.1}  # the chapter's settings, exactly


def test_slider_range_reaches_unstable_lrs():
    (lr_slider,) = [c for c in sgd_explorer().children if getattr(c, "description", "") == "learning rate"]
    assert max(lr_slider.options) * 2.0 >= 2  # the lesson's curvature 2: lets a reader see divergence


@pytest.mark.parametrize("make, kwargs", [
    (sgd_explorer, {"batch_size": 8, "lr": 0.1}),
    (sgd_explorer, {"batch_size": 1, "lr": 1.2}),
    (nqm_explorer, {"lr": 0.3, "batch_size": 16, "momentum": 0.0, "precondition_power": 0.0}),
    (nqm_explorer, {"lr": 0.003, "batch_size": 4096, "momentum": 0.9, "precondition_power": 0.5}),
])
def test_explorers_open_at_exactly_the_arguments(make, kwargs):
    widget = make(**kwargs)
    assert {name: c.value for name, c in controls(widget).items()} == kwargs
    assert widget.kwargs == kwargs
    for name, c in controls(widget).items():  # the front end's readout, _options_labels[index], shows the value
        assert c._options_labels[c.index] == str(kwargs[name])


def test_explorer_defaults_are_the_texts_settings():
    assert sgd_explorer().kwargs == {"batch_size": 8, "lr": 0.1}
    assert nqm_explorer().kwargs == {"batch_size": 16, "lr": 0.3, "momentum": 0.0, "precondition_power": 0.0}


@pytest.mark.parametrize("make, kwargs, allowed", [
    (nqm_explorer, {"lr": 10 ** -0.5}, "0.2, 0.3, 0.5"),
    (nqm_explorer, {"momentum": 0.93}, "0.9, 0.95"),
    (nqm_explorer, {"precondition_power": 0.3}, "0, 0.25, 0.5, 0.75, 1"),
    (nqm_explorer, {"batch_size": 3}, "1, 2, 4, 8"),
    (sgd_explorer, {"lr": 2.0}, "1, 1.1, 1.2"),
    (sgd_explorer, {"batch_size": 512}, "128, 256"),
])
def test_explorer_rejects_a_value_off_the_slider_naming_the_allowed_ones(make, kwargs, allowed):
    ((name, value),) = kwargs.items()
    with pytest.raises(ValueError, match=f"{name} must be one of the slider's values .*{allowed}.*got {value!r}"):
        make(**kwargs)


@pytest.mark.parametrize("value", ["0.3", None, True])
def test_explorer_rejects_a_non_number(value):
    with pytest.raises(TypeError, match="lr must be a number"):
        nqm_explorer(lr=value)
    with pytest.raises(TypeError, match="batch_size must be a number"):
        sgd_explorer(batch_size=value)


@pytest.mark.parametrize("make", [sgd_explorer, nqm_explorer])
def test_every_slider_label_is_shown_in_full(make):
    for c in controls(make()).values():
        assert c.style.description_width == "initial"  # ipywidgets' default width cuts "learning rate"
        assert len(c.description) >= 8 and "." not in c.description  # a full word, no abbreviation


def test_keyboard_note_names_the_upstream_issue_and_the_keys_that_work():
    assert "https://github.com/jupyter/notebook/issues/7716" in KEYBOARD_NOTE
    assert all(key in KEYBOARD_NOTE for key in ("Notebook 7", "Shift", "Page Up", "Home"))


def test_explorer_callback_draws_the_slider_values():
    widget = sgd_explorer()
    plt.close("all")
    controls(widget)["batch_size"].value = 32  # moving the slider redraws with the new value
    assert widget.kwargs == {"batch_size": 32, "lr": 0.1}
    fig = plt.gcf()
    assert len(fig.axes) == 2 and fig.get_suptitle() == "batch size 32, learning rate 0.1"


def figure_summary(fig):
    """What a reader sees: titles, texts, legend labels and every line's data."""
    return (fig.get_suptitle(), [ax.get_title() for ax in fig.axes], texts(fig),
            [[(line.get_label(), np.asarray(line.get_xdata(), float), np.asarray(line.get_ydata(), float))
              for line in ax.get_lines()] for ax in fig.axes])


def opened_figure(make, **kwargs):
    """The figure an explorer draws when it opens."""
    plt.close("all")
    make(**kwargs)
    (num,) = plt.get_fignums()
    return plt.figure(num)


def test_sgd_explorer_at_open_draws_the_static_figure():
    opened = opened_figure(sgd_explorer, batch_size=8, lr=0.1)
    np.testing.assert_equal(figure_summary(opened), figure_summary(plot_sgd_paths(batch_size=8, lr=0.1)))
    assert opened.get_suptitle() == "batch size 8, learning rate 0.1"


# ---------------------------------------------------------------------------------------------------------------
# the noisy quadratic model


from batchsize.sim import NQM  # noqa: E402
from batchsize.sim import nqm_expected_loss, nqm_steps_to_target  # noqa: E402
from batchsize.widgets import NQM_BATCH_SIZES, NQM_LRS, NQM_MOMENTA, NQM_PRECONDITION_POWERS  # noqa: E402


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


def test_nqm_explorer_wires_four_selection_sliders_that_reach_divergence():
    widget = nqm_explorer()
    assert isinstance(widget, ipywidgets.interactive)
    sliders = controls(widget)
    assert set(sliders) == {"batch_size", "lr", "momentum", "precondition_power"}
    assert all(type(c) is ipywidgets.SelectionSlider for c in sliders.values())
    assert list(sliders["batch_size"].options) == NQM_BATCH_SIZES
    assert list(sliders["lr"].options) == NQM_LRS and max(NQM_LRS) > 2.0  # past the limit 2 / h_1 = 2
    assert list(sliders["momentum"].options) == NQM_MOMENTA == [k / 20 for k in range(20)]
    assert list(sliders["precondition_power"].options) == NQM_PRECONDITION_POWERS


def test_nqm_explorer_at_open_draws_the_static_figure_and_reaches_the_target():
    opened = opened_figure(nqm_explorer, lr=0.3, batch_size=16)
    np.testing.assert_equal(figure_summary(opened), figure_summary(plot_nqm(lr=0.3, batch_size=16)))
    assert opened.get_suptitle().startswith("batch size 16, learning rate 0.3, ")
    assert not any("never reached" in t for t in texts(opened))
    assert [line.get_label() for line in opened.axes[1].get_lines()][-1] == "B = 16"  # the circled point


def test_lr_0316_puts_batch_16_above_the_target_for_good_where_03_reaches_it():
    """The bug the exact grid fixes: a log slider's 10**-0.5 is past the lr whose noise floor is the target."""
    nqm = NQM.make(dim=100)
    target = 0.01 * nqm.initial_loss
    steps = nqm_steps_to_target(nqm, [0.3, 10 ** -0.5], 16, target)[0]
    assert steps[0] == 917 and steps[1] == np.inf
    floor = nqm_expected_loss(nqm, [0.3, 10 ** -0.5], 16, [10 ** 6])[0, :, 0]  # the noise floor, reached by then
    assert floor[0] < target < floor[1]
    assert any("never reached" in t for t in texts(plot_nqm(lr=10 ** -0.5, batch_size=16, num_steps=20, num_seeds=2)))
