"""SGD on noisy quadratic losses: a vectorised simulator and its closed-form theory.

The loss is L(theta) = curvature / 2 * (theta - target)**2 and each step sees the true gradient plus
Gaussian noise of standard deviation noise_std / sqrt(batch_size), the model of a mini-batch gradient whose
per-example noise has standard deviation noise_std. Every (seed, batch size, learning rate) run is one slice
of a single array program: no Python loop over runs, only over steps.
"""
import numbers
from dataclasses import dataclass

import numpy as np

from ._checks import as_positive_array, check_positive_int


@dataclass
class SimResult:
    """Trajectories of simulated SGD runs. Introduced in chapter 1 (gradient variance)."""

    theta: np.ndarray  # (num_seeds, num_batch_sizes, num_lrs, num_steps + 1)
    batch_sizes: np.ndarray  # (num_batch_sizes,)
    lrs: np.ndarray  # (num_lrs,)
    target: float
    curvature: float
    noise_std: float

    @property
    def loss(self):
        """Loss at every step of every run, same shape as theta."""
        return 0.5 * self.curvature * (self.theta - self.target) ** 2

    @property
    def diverged(self):
        """(num_batch_sizes, num_lrs) mask of unstable settings (|1 - lr * curvature| >= 1) or blown-up runs."""
        blown = ~np.isfinite(self.theta[..., -1]) | (np.abs(self.theta[..., -1] - self.target) > 1e12)
        unstable = np.abs(1 - self.lrs * self.curvature) >= 1  # (num_lrs,)
        return blown.any(axis=0) | unstable[None, :]


def simulate_sgd(theta0=0.0, target=3.0, curvature=2.0, lrs=0.1, batch_sizes=(1, 8, 32, 128),
                 noise_std=4.0, num_steps=30, num_seeds=1000, seed=0):
    """Run SGD on a noisy quadratic for many seeds, batch sizes and learning rates at once.

    Introduced in chapter 1 (gradient variance). The defaults are the course lesson's simulation
    (claim L5): L = (theta - 3)**2 from theta = 0, lr 0.1, 30 steps, gradient noise 4 / sqrt(B).
    """
    batch_sizes = as_positive_array(batch_sizes, "batch_sizes", integer=True)
    lrs = as_positive_array(lrs, "lrs")
    check_positive_int(num_steps, "num_steps")
    check_positive_int(num_seeds, "num_seeds")
    for name, value in (("curvature", curvature), ("noise_std", noise_std)):
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(f"{name} must be a number >= 0, got {type(value).__name__} {value!r}")
        if not np.isfinite(value) or value < 0:
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    rng = np.random.default_rng(seed)
    step_noise = noise_std / np.sqrt(batch_sizes)[None, :, None]  # (1, num_batch_sizes, 1)
    lr = lrs[None, None, :]  # (1, 1, num_lrs)
    theta = np.empty((num_seeds, len(batch_sizes), len(lrs), num_steps + 1))
    theta[..., 0] = theta0
    with np.errstate(over="ignore", invalid="ignore"):
        for t in range(num_steps):
            xi = rng.standard_normal((num_seeds, len(batch_sizes), len(lrs)))
            grad = curvature * (theta[..., t] - target) + step_noise * xi
            theta[..., t + 1] = theta[..., t] - lr * grad
    return SimResult(theta, batch_sizes, lrs, float(target), float(curvature), float(noise_std))


def theory_moments(theta0=0.0, target=3.0, curvature=2.0, lrs=0.1, batch_sizes=(1, 8, 32, 128),
                   noise_std=4.0, num_steps=30):
    """Exact mean and variance of theta_t for the linear-Gaussian SGD recursion.

    Introduced in chapter 1 (gradient variance). With rho = 1 - lr * curvature and
    s2 = lr**2 * noise_std**2 / B: mean_t = target + rho**t (theta0 - target) and
    var_t = s2 * (1 - rho**(2t)) / (1 - rho**2). Returns (mean, var) of shape
    (num_batch_sizes, num_lrs, num_steps + 1).
    """
    batch_sizes = as_positive_array(batch_sizes, "batch_sizes", integer=True)
    lrs = as_positive_array(lrs, "lrs")
    check_positive_int(num_steps, "num_steps")
    t = np.arange(num_steps + 1)[None, None, :]
    rho = (1 - lrs * curvature)[None, :, None]  # (1, num_lrs, 1)
    s2 = (lrs[None, :] ** 2 * noise_std ** 2 / batch_sizes[:, None])[..., None]  # (num_batch_sizes, num_lrs, 1)
    shape = (len(batch_sizes), len(lrs), num_steps + 1)
    mean = np.broadcast_to(target + rho ** t * (theta0 - target), shape)
    with np.errstate(divide="ignore", invalid="ignore"):
        geometric = np.where(np.isclose(rho ** 2, 1.0), t, (1 - rho ** (2 * t)) / (1 - rho ** 2))
    return mean, np.broadcast_to(s2 * geometric, shape)


def stationary_variance(lr, batch_size, curvature=2.0, noise_std=4.0):
    """Long-run variance of theta, lr**2 sigma**2 / (B (1 - (1 - lr h)**2)); inf where SGD is unstable.

    Introduced in chapter 1 (gradient variance). Stable only for 0 < lr * curvature < 2.
    """
    lr = as_positive_array(lr, "lr", any_shape=True)
    batch_size = as_positive_array(batch_size, "batch_size", integer=True, any_shape=True)
    lr, batch_size = np.broadcast_arrays(lr, batch_size)
    rho2 = (1 - lr * curvature) ** 2
    with np.errstate(divide="ignore"):
        var = np.where(rho2 < 1, lr ** 2 * noise_std ** 2 / (batch_size * (1 - rho2)), np.inf)
    return var if var.ndim else float(var)
