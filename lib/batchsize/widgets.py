"""Interactive explorations: a plain function draws each figure, a widget only wires sliders to it.

The book's static pages and the tests call the plain functions; locally or on Colab the `*_explorer`
functions return ipywidgets controls that redraw the figure.
"""
import matplotlib.pyplot as plt
import numpy as np

from .plots import PALETTE
from .sim import simulate_sgd, theory_moments


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
        fig.suptitle(f"batch size {batch_size}, learning rate {lr}")
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
    fig.suptitle(f"batch size {batch_size}, learning rate {lr}")
    fig.tight_layout()
    return fig


def sgd_explorer():
    """Sliders for batch size and learning rate driving `plot_sgd_paths` (needs a live Jupyter kernel)."""
    import ipywidgets as widgets

    def draw(batch_size, lr):
        plot_sgd_paths(batch_size=batch_size, lr=lr)
        plt.show()

    return widgets.interactive(
        draw,
        batch_size=widgets.SelectionSlider(options=[1, 2, 4, 8, 16, 32, 64, 128, 256], value=8,
                                           description="batch size"),
        lr=widgets.FloatLogSlider(value=0.1, base=10, min=-2, max=0.1, step=0.05, description="learning rate"))
