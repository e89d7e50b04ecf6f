"""SGD on noisy quadratic losses: a vectorised simulator and its closed-form theory.

The loss is L(theta) = curvature / 2 * (theta - target)**2 and each step sees the true gradient plus
Gaussian noise of standard deviation noise_std / sqrt(batch_size), the model of a mini-batch gradient whose
per-example noise has standard deviation noise_std. Every (seed, batch size, learning rate) run is one slice
of a single array program: no Python loop over runs, only over steps.

The noisy quadratic model (NQM) of Zhang et al. (2019) extends it to d eigendirections with gradient noise
proportional to the curvature, for SGD, heavy-ball momentum and a diagonal preconditioner: its expected loss
is computed in closed form (no sampling), and `simulate_nqm` samples the same optimiser as a check.
"""
import numbers
from dataclasses import dataclass

import numpy as np

from . import seeding
from ._checks import as_positive_array, check_positive_float, check_positive_int


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
    rng = seeding.default_rng(seed)
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


# ---------------------------------------------------------------------------------------------------------------
# The noisy quadratic model (NQM) of Zhang et al. (2019): d eigendirections, gradient noise proportional to the
# curvature, SGD with heavy-ball momentum and a diagonal preconditioner, evolved in closed form.


@dataclass
class NQM:
    """A d-dimensional noisy quadratic: loss sum_i h_i theta_i**2 / 2, gradient noise variance c_i / B.

    Introduced in chapter 3 (learning-rate scaling). Coordinates are the Hessian's eigendirections.
    """

    curvatures: np.ndarray  # (dim,) h_i > 0
    noise: np.ndarray  # (dim,) c_i >= 0: per-example gradient-noise variance along direction i
    theta0: np.ndarray  # (dim,) starting point (deterministic)

    @classmethod
    def make(cls, dim=100, noise_scale=1.0, theta0=1.0):
        """Zhang et al.'s spectrum h_i = 1 / i with noise c_i = noise_scale * h_i, started at theta0 in every direction."""
        check_positive_int(dim, "dim")
        for name, value in (("noise_scale", noise_scale), ("theta0", theta0)):
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value):
                raise TypeError(f"{name} must be a finite number, got {type(value).__name__} {value!r}")
        if noise_scale < 0:
            raise ValueError(f"noise_scale must be >= 0, got {noise_scale}")
        h = 1.0 / np.arange(1, dim + 1)
        return cls(h, noise_scale * h, np.full(dim, float(theta0)))

    def __post_init__(self):
        self.curvatures = as_positive_array(self.curvatures, "curvatures")
        self.noise = np.atleast_1d(np.asarray(self.noise, dtype=np.float64))
        self.theta0 = np.atleast_1d(np.asarray(self.theta0, dtype=np.float64))
        dim = len(self.curvatures)
        if self.noise.shape != (dim,) or not np.all(np.isfinite(self.noise)) or np.any(self.noise < 0):
            raise ValueError(f"noise must hold {dim} finite values >= 0, one per curvature")
        if self.theta0.shape != (dim,) or not np.all(np.isfinite(self.theta0)):
            raise ValueError(f"theta0 must hold {dim} finite values, one per curvature")

    @property
    def initial_loss(self):
        """Loss at theta0."""
        return float(0.5 * np.sum(self.curvatures * self.theta0 ** 2))


def _nqm_args(lrs, batch_sizes, momentum, precondition_power):
    lrs = as_positive_array(lrs, "lrs")
    batch_sizes = as_positive_array(batch_sizes, "batch_sizes")
    if isinstance(momentum, bool) or not isinstance(momentum, numbers.Real) or not 0 <= momentum < 1:
        raise ValueError(f"momentum must be a number in [0, 1), got {momentum!r}")
    if (isinstance(precondition_power, bool) or not isinstance(precondition_power, numbers.Real)
            or not 0 <= precondition_power <= 1):
        raise ValueError(f"precondition_power must be a number in [0, 1], got {precondition_power!r}")
    return lrs, batch_sizes, float(momentum), float(precondition_power)


def _geometric(x, x_t):
    """sum_{k=1}^{t} x**k = x (1 - x**t) / (1 - x), given x and x**t (complex, |x| < 1)."""
    return x * (1 - x_t) / (1 - x)


def _nqm_moments(nqm, a, t, m):
    """Per-direction squared mean and noise-driven variance (per unit c / B) of theta_t, for a: (..., dim), t: (..., 1|n)."""
    h = nqm.curvatures
    tau = 1 - a * h + m
    disc = (tau ** 2 - 4 * m).astype(complex)
    # near critical damping the two roots meet; a tiny nudge keeps the closed form well conditioned
    disc = np.where(np.abs(disc) < 1e-10, 1e-10, disc)
    root = np.sqrt(disc)
    l1, l2 = (tau + root) / 2, (tau - root) / 2
    unstable = np.maximum(np.abs(l1), np.abs(l2)).max(-1) >= 1
    l1, l2 = l1[..., None], l2[..., None]  # (..., dim, 1)
    with np.errstate(all="ignore"):
        if m == 0:  # lambda_2 = 0: plain (preconditioned) SGD, p_k = rho**(k - 1)
            rho = l1.real
            mean = rho ** t
            sum_p2 = np.where(rho ** 2 == 1, t, (1 - mean ** 2) / (1 - rho ** 2))
        else:  # powers as exp(t log lambda): one complex exp per root and step
            log1, log2 = np.log(l1), np.log(l2)
            p1, p2 = np.exp(t * log1), np.exp(t * log2)  # lambda**t
            diff = l1 - l2
            mean = (p1 * (l1 - m) - p2 * (l2 - m)) / diff
            sum_p2 = (_geometric(l1 ** 2, p1 ** 2) - 2 * _geometric(l1 * l2, p1 * p2)
                      + _geometric(l2 ** 2, p2 ** 2)) / diff ** 2
        mean_sq = (nqm.theta0[:, None] * mean.real) ** 2  # (..., dim, num_steps)
        var = (a ** 2 * nqm.noise)[..., None] * sum_p2.real
    return mean_sq, var, unstable


def nqm_expected_loss(nqm, lrs, batch_sizes, steps, momentum=0.0, precondition_power=0.0):
    """Exact expected loss E L(theta_t) of the NQM, in closed form, for every batch size, lr and step.

    Introduced in chapter 3 (learning-rate scaling). The update is PyTorch's heavy ball on the
    preconditioned gradient: v <- momentum v + h**-p g, theta <- theta - lr v, with g = h theta + noise of
    variance c / B. Per direction, with lambda_1,2 the roots of x**2 - (1 - a h + m) x + m (a = lr h**-p) and
    p_k = (lambda_1**k - lambda_2**k) / (lambda_1 - lambda_2): E theta_t = theta0 (p_{t+1} - m p_t) and
    Var theta_t = a**2 c / B * sum_{k<=t} p_k**2, a sum of geometric series. Returns an array
    (num_batch_sizes, num_lrs, num_steps); inf where the run is unstable (some |lambda| >= 1).
    """
    lrs, batch_sizes, m, p = _nqm_args(lrs, batch_sizes, momentum, precondition_power)
    steps = np.atleast_1d(np.asarray(steps))
    if steps.ndim != 1 or not np.issubdtype(steps.dtype, np.integer) or np.any(steps < 0):
        raise ValueError(f"steps must be a 1-D sequence of integers >= 0, got {steps!r}")
    h = nqm.curvatures
    a = lrs[:, None] * h[None, :] ** -p  # (num_lrs, dim): effective per-direction learning rate
    mean_sq, var, unstable = _nqm_moments(nqm, a, steps[None, None, :].astype(float), m)
    h2 = 0.5 * h[None, :, None]
    with np.errstate(all="ignore"):
        loss = (h2 * mean_sq).sum(1)[None] + (h2 * var).sum(1)[None] / batch_sizes[:, None, None]
    return np.where(unstable[None, :, None], np.inf, loss)


def _nqm_loss_at(nqm, lrs, batch_sizes, steps, m, p):
    """Expected loss for matching 1-D arrays of lr, batch size and step (one value each)."""
    a = lrs[:, None] * nqm.curvatures[None, :] ** -p  # (n, dim)
    mean_sq, var, unstable = _nqm_moments(nqm, a, steps[:, None, None].astype(float), m)
    h2 = 0.5 * nqm.curvatures[None, :]
    with np.errstate(all="ignore"):
        loss = (h2 * mean_sq[..., 0]).sum(1) + (h2 * var[..., 0]).sum(1) / batch_sizes
    return np.where(unstable, np.inf, loss)


def simulate_nqm(nqm, lr, batch_size, num_steps, momentum=0.0, precondition_power=0.0, num_seeds=100, seed=0):
    """Sample the NQM's optimiser directly: loss of every seed at every step, shape (num_seeds, num_steps + 1).

    Introduced in chapter 3 (learning-rate scaling). The check on `nqm_expected_loss`: the same update with
    Gaussian gradient noise drawn step by step, all seeds and directions as one array.
    """
    lrs, batch_sizes, m, p = _nqm_args(lr, batch_size, momentum, precondition_power)
    if len(lrs) != 1 or len(batch_sizes) != 1:
        raise ValueError("simulate_nqm takes one lr and one batch_size")
    check_positive_int(num_steps, "num_steps")
    check_positive_int(num_seeds, "num_seeds")
    rng = seeding.default_rng(seed)
    h, c = nqm.curvatures, nqm.noise
    a = lrs[0] * h ** -p  # (dim,)
    noise_std = np.sqrt(c / batch_sizes[0])  # (dim,)
    theta = np.tile(nqm.theta0, (num_seeds, 1))  # (num_seeds, dim)
    v = np.zeros_like(theta)
    loss = np.empty((num_seeds, num_steps + 1))
    loss[:, 0] = 0.5 * (h * theta ** 2).sum(1)
    with np.errstate(over="ignore", invalid="ignore"):
        for t in range(num_steps):
            g = h * theta + noise_std * rng.standard_normal(theta.shape)
            v = m * v + g
            theta = theta - a * v
            loss[:, t + 1] = 0.5 * (h * theta ** 2).sum(1)
    return loss


def nqm_steps_to_target(nqm, lrs, batch_sizes, target, momentum=0.0, precondition_power=0.0, max_steps=10 ** 6):
    """Fewest steps t with E L(theta_t) <= target, for every (batch size, lr); inf if not within max_steps.

    Introduced in chapter 3 (learning-rate scaling). The closed form is evaluated on a geometric grid of
    steps (ratio 1.05) and the first crossing is then located exactly by bisection inside its grid interval.
    Returns an array (num_batch_sizes, num_lrs).
    """
    check_positive_float(target, "target")
    check_positive_int(max_steps, "max_steps")
    grid = np.unique(np.concatenate([np.arange(0, 64), np.geomspace(64, max_steps, 1 + int(np.log(max_steps / 64)
                                                                                             / np.log(1.05)))
                                     .astype(np.int64), [max_steps]]))
    loss = nqm_expected_loss(nqm, lrs, batch_sizes, grid, momentum, precondition_power)
    below = loss <= target
    reached = below.any(-1)
    first = np.where(reached, below.argmax(-1), len(grid) - 1)  # (num_batch_sizes, num_lrs)
    hi = grid[first].astype(np.int64)
    lo = np.where(first > 0, grid[np.maximum(first - 1, 0)], 0).astype(np.int64)
    lrs, batch_sizes, m, p = _nqm_args(lrs, batch_sizes, momentum, precondition_power)
    b_idx, l_idx = np.nonzero(reached & (hi - lo > 1))
    while len(b_idx):  # bisection, all pending (batch size, lr) pairs at once
        mid = (lo[b_idx, l_idx] + hi[b_idx, l_idx]) // 2
        ok = _nqm_loss_at(nqm, lrs[l_idx], batch_sizes[b_idx], mid, m, p) <= target
        hi[b_idx[ok], l_idx[ok]] = mid[ok]
        lo[b_idx[~ok], l_idx[~ok]] = mid[~ok]
        keep = hi[b_idx, l_idx] - lo[b_idx, l_idx] > 1
        b_idx, l_idx = b_idx[keep], l_idx[keep]
    return np.where(reached, hi.astype(float), np.inf)


def nqm_best_steps(nqm, lrs, batch_sizes, target, momentum=0.0, precondition_power=0.0):
    """Fewest steps to target over the grid `lrs`, and the lr that gives them, per batch size. Chapter 3.1 (NQM).

    Returns (steps (num_batch_sizes,), lr (num_batch_sizes,)); steps is inf where no lr reaches the target.
    """
    steps = nqm_steps_to_target(nqm, lrs, batch_sizes, target, momentum, precondition_power)
    return steps.min(1), np.atleast_1d(np.asarray(lrs, dtype=float))[steps.argmin(1)]


def critical_batch_size(batch_sizes, steps, factor=2.0):
    """Batch size at which steps-to-target first comes within `factor` of its minimum (log-interpolated).

    Introduced in chapter 3 (learning-rate scaling). For McCandlish et al.'s S(B) = S_min (1 + B_crit / B)
    and factor 2 this is B_crit, provided the batch sizes reach the plateau (the minimum is close to S_min).
    """
    batch_sizes = as_positive_array(batch_sizes, "batch_sizes")
    steps = np.asarray(steps, dtype=float)
    if steps.shape != batch_sizes.shape:
        raise ValueError(f"steps must have one entry per batch size, shape {batch_sizes.shape}, got {steps.shape}")
    check_positive_float(factor, "factor")
    if factor <= 1:
        raise ValueError(f"factor must be > 1, got {factor}")
    finite = np.isfinite(steps)
    if not finite.any():
        raise ValueError("steps must hold at least one finite value")
    goal = factor * steps[finite].min()
    k = int(np.argmax(finite & (steps <= goal)))
    if k == 0:
        return float(batch_sizes[0])
    s0, s1 = np.log(steps[k - 1]), np.log(steps[k])
    b0, b1 = np.log(batch_sizes[k - 1]), np.log(batch_sizes[k])
    if not np.isfinite(s0):
        return float(batch_sizes[k])
    return float(np.exp(b0 + (np.log(goal) - s0) / (s1 - s0) * (b1 - b0)))
