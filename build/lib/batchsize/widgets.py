"""Interactive explorations: a plain function draws each figure, a widget only wires sliders to it.

The book's static pages and the tests call the plain functions; locally or on Colab the `*_explorer`
functions return ipywidgets controls that redraw the figure.
"""
import numbers

import matplotlib.pyplot as plt
import numpy as np

from .plots import PALETTE
from .sim import NQM, nqm_expected_loss, nqm_steps_to_target, simulate_nqm, simulate_sgd, theory_moments


def plot_sgd_paths(batch_size=8, lr=0.1, num_steps=30, num_seeds=200, noise_std=4.0, seed=0):
    """The lesson's SGD on (theta - 3)**2 for one batch size and learning rate: paths and loss per step.

    Introduced in chapter 1 (gradient variance). Left: five paths on the loss curve. Right: median loss
    over `num_seeds` seeds with its interquartile band, and the exact expected loss.
    """
    res = simulate_sgd(lrs=lr, batch_sizes=batch_size, noise_std=noise_std, num_steps=num_steps,
                       num_seeds=num_seeds, seed=seed)
    mean, var = theory_moments(lrs=lr, batch_sizes=batch_size, noise_std=noise_std, num_steps=num_steps)
    theta, loss = res.theta[:, 0, 0], res.loss[:, 0, 0]  # (num_seeds, num_steps + 1)
    fig, (ax_path, ax_loss) = plt.subplots(1, 2, figsize=(9, 3.4))
    if res.diverged[0, 0]:
        for ax in (ax_path, ax_loss):
            ax.text(0.5, 0.5, f"diverged: lr x curvature = {lr * res.curvature:.2f} >= 2",
                    ha="center", va="center", transform=ax.transAxes)
        fig.suptitle(f"batch size {batch_size}, learning rate {lr:.3g}")
        return fig
    grid = np.linspace(min(-1.0, theta[:5].min()), max(7.0, theta[:5].max()), 200)
    ax_path.plot(grid, (grid - 3) ** 2, color=PALETTE[-1], lw=1)
    for k in range(5):
        ax_path.plot(theta[k], (theta[k] - 3) ** 2, ".-", ms=3, lw=0.8, color=PALETTE[k], alpha=0.8)
    ax_path.set(xlabel=r"parameter $\theta$", ylabel=r"loss $(\theta-3)^2$", title="five SGD paths")
    steps = np.arange(num_steps + 1)
    lo, mid, hi = np.percentile(loss, [25, 50, 75], axis=0)
    ax_loss.fill_between(steps, lo, hi, color=PALETTE[0], alpha=0.25, lw=0, label="interquartile range")
    ax_loss.plot(steps, mid, color=PALETTE[0], label=f"median of {num_seeds} seeds")
    ax_loss.plot(steps, (mean[0, 0] - 3) ** 2 + var[0, 0], "--", color=PALETTE[-1], label="exact mean")
    ax_loss.set(yscale="log", xlabel="step", ylabel="loss", title="loss per step")
    ax_loss.legend(fontsize=8)
    fig.suptitle(f"batch size {batch_size}, learning rate {lr:.3g}")
    fig.tight_layout()
    return fig


def _grid(*mantissas, decades):
    """Values m * 10**e for each decade e and mantissa m, parsed from text so that 0.3 is the float 0.3."""
    return [float(f"{m}e{e}") for e in decades for m in mantissas]


# The explorers' sliders step through these values only (SelectionSliders: the front end sends back an index,
# so the kernel gets a listed value exactly). A log slider would snap 0.3 to 10**-0.5 = 0.316 and send that back.
SGD_BATCH_SIZES = [1, 2, 4, 8, 16, 32, 64, 128, 256]
SGD_LRS = _grid(1, 1.5, 2, 3, 5, 7, decades=(-2, -1)) + [0.9, 1.0, 1.1, 1.2]  # curvature 2: diverges from lr 1
# Notebook 7 starts its app without JupyterLab's bubblingKeydown option, so its command-mode shortcuts take the
# arrow keys before a focused slider sees them; keys with no notebook shortcut still reach the slider.
KEYBOARD_NOTE = (
    "In Jupyter Notebook 7 the arrow keys on a focused slider move the cell selection instead of the slider "
    "(upstream bug https://github.com/jupyter/notebook/issues/7716; JupyterLab is fine). There, hold Shift with "
    "the left or right arrow key to move one step, press Page Up/Page Down to move five steps or Home/End to jump "
    "to the ends, or drag the slider.")


def _on_grid(name, value, grid):
    """The entry of `grid` equal to `value`; TypeError for a non-number, ValueError naming the grid otherwise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    if value not in grid:
        raise ValueError(f"{name} must be one of the slider's values {', '.join(f'{v:g}' for v in grid)}; "
                         f"got {value!r}")
    return grid[grid.index(value)]


def _slider(description, options, value):
    """A SelectionSlider over `options` at `value`, its label shown in full and its track still long."""
    import ipywidgets as widgets

    return widgets.SelectionSlider(options=options, value=value, description=description,
                                   style={"description_width": "initial"}, layout={"width": "36em"})


def sgd_explorer(batch_size=8, lr=0.1):
    """Sliders for batch size and lr driving `plot_sgd_paths`, opened at exactly these values (needs a kernel)."""
    import ipywidgets as widgets

    batch_size, lr = _on_grid("batch_size", batch_size, SGD_BATCH_SIZES), _on_grid("lr", lr, SGD_LRS)

    def draw(batch_size, lr):
        plot_sgd_paths(batch_size=batch_size, lr=lr)
        plt.show()

    return widgets.interactive(draw, batch_size=_slider("batch size", SGD_BATCH_SIZES, batch_size),
                               lr=_slider("learning rate", SGD_LRS, lr))


NQM_BATCH_SIZES = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096]
NQM_LRS = _grid(1, 1.5, 2, 3, 5, 7, decades=(-3, -2, -1)) + [1.0, 1.5, 2.0, 2.5, 3.0]  # SGD diverges from 2 / h_1 = 2
NQM_MOMENTA = [round(0.05 * k, 2) for k in range(20)]  # 0, 0.05, ..., 0.95
NQM_PRECONDITION_POWERS = [0.0, 0.25, 0.5, 0.75, 1.0]


def plot_nqm(lr=0.3, batch_size=16, momentum=0.0, precondition_power=0.0, num_steps=1000, target_fraction=0.01,
             num_seeds=50, seed=0):
    """The noisy quadratic model (100 directions, h_i = 1/i) at one lr and batch size: loss and steps to target.

    Introduced in chapter 3 (learning-rate scaling). Left: exact expected loss per step with the median and
    interquartile band of `num_seeds` sampled runs. Right: exact steps to reach `target_fraction` of the
    initial loss against the batch size, at this lr, with the chosen batch size marked.
    """
    nqm = NQM.make(dim=100)
    target = target_fraction * nqm.initial_loss
    steps = np.arange(num_steps + 1)
    exact = nqm_expected_loss(nqm, lr, batch_size, steps, momentum, precondition_power)[0, 0]
    fig, (ax_loss, ax_steps) = plt.subplots(1, 2, figsize=(9, 3.4))
    title = f"batch size {batch_size}, learning rate {lr:.3g}, momentum {momentum:g}, preconditioner power " \
            f"{precondition_power:g}"
    fig.suptitle(title, fontsize=9)
    if not np.isfinite(exact).all():
        for ax in (ax_loss, ax_steps):
            ax.text(0.5, 0.5, "diverged: the learning rate is beyond the stability limit",
                    ha="center", va="center", transform=ax.transAxes)
        return fig
    runs = simulate_nqm(nqm, lr, batch_size, num_steps, momentum, precondition_power, num_seeds, seed)
    lo, mid, hi = np.percentile(runs, [25, 50, 75], axis=0)
    ax_loss.fill_between(steps, lo, hi, color=PALETTE[0], alpha=0.25, lw=0, label="interquartile range")
    ax_loss.plot(steps, mid, color=PALETTE[0], label=f"median of {num_seeds} sampled runs")
    ax_loss.plot(steps, exact, "--", color=PALETTE[-1], label="exact expected loss")
    ax_loss.axhline(target, color=PALETTE[3], lw=1, label="target")
    ax_loss.set(yscale="log", xlabel="step", ylabel="loss", title="loss per step")
    ax_loss.legend(fontsize=8)
    needed = nqm_steps_to_target(nqm, lr, NQM_BATCH_SIZES, target, momentum, precondition_power)[:, 0]
    reached = np.isfinite(needed)
    ax_steps.plot(np.array(NQM_BATCH_SIZES)[reached], needed[reached], "o-", color=PALETTE[2], ms=4)
    mine = nqm_steps_to_target(nqm, lr, batch_size, target, momentum, precondition_power)[0, 0]
    if np.isfinite(mine):
        ax_steps.plot([batch_size], [mine], "o", ms=10, mfc="none", color=PALETTE[3], label=f"B = {batch_size}")
        ax_steps.legend(fontsize=8)
    else:
        ax_steps.text(0.5, 0.9, f"B = {batch_size}: target never reached (noise floor above it)",
                      ha="center", transform=ax_steps.transAxes, fontsize=8)
    ax_steps.set(xscale="log", yscale="log", xlabel="batch size B", ylabel="steps to target",
                 title=f"steps to {target_fraction:g} x initial loss at this lr")
    fig.tight_layout()
    return fig


def nqm_explorer(lr=0.3, batch_size=16, momentum=0.0, precondition_power=0.0):
    """Sliders for lr, batch size, momentum and preconditioner driving `plot_nqm`, opened at exactly these values."""
    import ipywidgets as widgets

    lr, batch_size = _on_grid("lr", lr, NQM_LRS), _on_grid("batch_size", batch_size, NQM_BATCH_SIZES)
    momentum = _on_grid("momentum", momentum, NQM_MOMENTA)
    precondition_power = _on_grid("precondition_power", precondition_power, NQM_PRECONDITION_POWERS)

    def draw(batch_size, lr, momentum, precondition_power):
        plot_nqm(lr=lr, batch_size=batch_size, momentum=momentum, precondition_power=precondition_power)
        plt.show()

    return widgets.interactive(
        draw, batch_size=_slider("batch size", NQM_BATCH_SIZES, batch_size),
        lr=_slider("learning rate", NQM_LRS, lr), momentum=_slider("momentum", NQM_MOMENTA, momentum),
        precondition_power=_slider("preconditioner power", NQM_PRECONDITION_POWERS, precondition_power))
