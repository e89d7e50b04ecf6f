"""Tests for scaling.py"""
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from batchsize.data import load_mnist1d
from batchsize.models import MLP
from batchsize.scaling import (Sweep, bootstrap_critical_batch, fit_critical_batch, local_slopes, median_steps,
                               plot_steps, regime_slope, run_model, steps_to_target, sweep_steps,
                               top_hessian_eigenvalue)
from batchsize.train import TrainConfig, train, train_many


# ---------------------------------------------------------------------------------------------------------------
# steps to target


def test_steps_to_target_is_first_crossing_and_ignores_nan():
    eval_steps = np.array([0, 10, 20, 30])
    loss = np.array([[2.0, 1.5, 0.9, np.nan],  # reaches 1.0 at 20, then stopped
                     [2.0, 1.8, 1.7, 1.6],  # never reaches 1.0
                     [np.nan, np.nan, np.nan, np.nan]])  # diverged
    got = steps_to_target(eval_steps, loss, [1.6, 1.0])
    np.testing.assert_array_equal(got, [[10, 30, np.inf], [20, np.inf, np.inf]])
    acc = np.array([[0.1, 0.5, 0.7, 0.6]])
    np.testing.assert_array_equal(steps_to_target(eval_steps, acc, [0.6], metric="test_acc"), [[20]])


def test_median_steps_is_inf_when_half_the_seeds_never_reach():
    np.testing.assert_array_equal(median_steps([[1, 2, np.inf], [1, np.inf, np.inf], [3, 5, 4]]),
                                  [2, np.inf, 4])


# ---------------------------------------------------------------------------------------------------------------
# the fit, against synthetic data with a known critical batch size


@pytest.mark.parametrize("b_crit, s_min", [(37.0, 120.0), (800.0, 15.0)])
def test_fit_recovers_known_critical_batch_exactly_without_noise(b_crit, s_min):
    B = 2.0 ** np.arange(13)
    fit = fit_critical_batch(B, s_min * (1 + b_crit / B))
    assert fit.b_crit == pytest.approx(b_crit, rel=1e-6)
    assert fit.s_min == pytest.approx(s_min, rel=1e-6)
    assert fit.e_min == pytest.approx(s_min * b_crit, rel=1e-6)
    assert fit.rms_log_residual < 1e-6
    # the hyperbola (S/S_min - 1)(E/E_min - 1) = 1 holds on the fitted curve
    S = fit.steps(B)
    np.testing.assert_allclose((S / fit.s_min - 1) * (B * S / fit.e_min - 1), 1, rtol=1e-9)


def test_fit_with_multiplicative_noise_is_within_its_bootstrap_spread():
    rng = np.random.default_rng(0)
    B = 2.0 ** np.arange(13)
    steps = 200 * (1 + 64 / B)[:, None] * np.exp(0.1 * rng.standard_normal((13, 5)))  # (num_B, num_seeds)
    fit = fit_critical_batch(B, median_steps(steps))
    b_boot, _ = bootstrap_critical_batch(B, steps, num_boot=200, seed=1)
    lo, hi = np.percentile(b_boot, [2.5, 97.5])
    assert lo < 64 < hi and hi / lo < 2
    assert abs(np.log(fit.b_crit / 64)) < 0.25


def test_slopes_of_a_power_law():
    B = 2.0 ** np.arange(8)
    np.testing.assert_allclose(local_slopes(B, 1e4 / B), -1)
    assert regime_slope(B, 1e4 * B ** -0.5, lo=4) == pytest.approx(-0.5)


@pytest.mark.parametrize("call, error, match", [
    (lambda: fit_critical_batch([1, 2, 4], [3, 2]), ValueError, "one entry per batch size"),
    (lambda: fit_critical_batch([1, 2, 4], [3, np.inf, 1]), ValueError, "at least 3"),
    (lambda: fit_critical_batch([1, -2, 4], [3, 2, 1]), ValueError, "batch_sizes"),
    (lambda: bootstrap_critical_batch([1, 2, 4], np.ones(3)), ValueError, "num_batch_sizes, num_seeds"),
    (lambda: steps_to_target([0, 1], np.ones((2, 2)), 1.0, metric="train_loss"), ValueError, "metric"),
    (lambda: steps_to_target([0, 1], np.ones((2, 3)), 1.0), ValueError, "values must be"),
])
def test_bad_inputs_raise(call, error, match):
    with pytest.raises(error, match=match):
        call()


# ---------------------------------------------------------------------------------------------------------------
# the sweep: the pruned sweep gives the same tuned steps as the full grid with no step budget


@pytest.fixture(scope="module")
def small_data():
    X, y, _, _ = load_mnist1d()
    X, y = X[:500], y[:500]
    return X, y, X, y  # evaluated on the training set: a training-loss target


def test_pruned_sweep_equals_unpruned_sweep(small_data):
    kw = dict(batch_sizes=[8, 32, 128], lrs=0.04 * 2.0 ** np.arange(6), targets=[1.8, 1.6], seeds=[0, 1],
              cfg=TrainConfig(eval_every=2, eval_growth=1.1), max_steps=1500)
    pruned = sweep_steps(MLP, small_data, **kw)
    full = sweep_steps(MLP, small_data, window=(0, np.inf), slack=np.inf, **kw)
    np.testing.assert_array_equal(pruned.steps, full.steps)
    np.testing.assert_array_equal(pruned.best_lr, full.best_lr)
    assert pruned.num_runs < full.num_runs


def test_sweep_steps_and_params_match_a_run_trained_alone(small_data):
    cfg = TrainConfig(eval_every=2, eval_growth=1.1)
    sw = sweep_steps(MLP, small_data, [32], lrs=[0.1, 0.2, 0.4], targets=[1.5], seeds=[3], cfg=cfg, max_steps=2000)
    lr, steps = sw.best_lr[0, 0], sw.steps[0, 0, 0]
    torch.manual_seed(3)
    alone = MLP()
    hist = train(alone, small_data, replace(cfg, lr=float(lr), batch_size=32, seed=3, num_steps=int(steps),
                                            progress=False))
    assert hist.test_loss[-1] <= 1.5 < np.nanmin(hist.test_loss[:-1])
    model = run_model(MLP, sw.params[0], 0)
    for p, q in zip(model.parameters(), alone.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------------------------------------------------------
# sharpness, against the dense Hessian


def dense_hessian(model, X, y):
    params = [p for p in model.parameters()]
    shapes = [p.shape for p in params]
    sizes = [p.numel() for p in params]
    flat0 = torch.cat([p.detach().reshape(-1) for p in params])

    def loss_of(flat):
        chunks = torch.split(flat, sizes)
        named = {n: c.view(s) for (n, _), c, s in zip(model.named_parameters(), chunks, shapes)}
        return F.cross_entropy(torch.func.functional_call(model, named, (X,)), y)

    return torch.autograd.functional.hessian(loss_of, flat0)


@pytest.mark.parametrize("seed", [0, 1])
def test_top_hessian_eigenvalue_matches_dense_hessian(seed):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3)).double()
    X, y = torch.randn(30, 5, dtype=torch.float64), torch.randint(0, 3, (30,))
    eigs = torch.linalg.eigvalsh(dense_hessian(model, X, y))
    top = eigs[eigs.abs().argmax()].item()
    got = top_hessian_eigenvalue(model, X, y, num_iters=2000, tol=1e-12)
    assert got == pytest.approx(top, rel=1e-6)


def test_top_hessian_eigenvalue_of_trained_mlp_is_positive_and_seed_independent():
    X, y, _, _ = load_mnist1d()
    torch.manual_seed(0)
    model = MLP()
    train(model, (X, y, X[:10], y[:10]), TrainConfig(lr=0.1, batch_size=64, num_steps=200, progress=False))
    a = top_hessian_eigenvalue(model, X[:1000], y[:1000], num_iters=300, tol=1e-7, seed=0)
    b = top_hessian_eigenvalue(model, X[:1000], y[:1000], num_iters=300, tol=1e-7, seed=1)
    assert a > 0 and a == pytest.approx(b, rel=1e-3)


@pytest.mark.parametrize("call, error, match", [
    (lambda m, X, y: top_hessian_eigenvalue(lambda x: x, X, y), TypeError, "model must be"),
    (lambda m, X, y: top_hessian_eigenvalue(m, X.long(), y), TypeError, "floating-point"),
    (lambda m, X, y: top_hessian_eigenvalue(m, X.double(), y), TypeError, "dtype of the model"),
    (lambda m, X, y: top_hessian_eigenvalue(m, X, y.float()), TypeError, "integer class labels"),
    (lambda m, X, y: top_hessian_eigenvalue(m, X, y + 10), ValueError, "labels must lie in"),
    (lambda m, X, y: top_hessian_eigenvalue(m, X, y[:-1]), ValueError, "same number of examples"),
    (lambda m, X, y: top_hessian_eigenvalue(m, X, y, num_iters=0), ValueError, "num_iters"),
])
def test_top_hessian_eigenvalue_bad_inputs_raise(call, error, match):
    model = MLP()
    X, y = torch.randn(8, 40), torch.randint(0, 10, (8,))
    with pytest.raises(error, match=match):
        call(model, X, y)


# ---------------------------------------------------------------------------------------------------------------
# the figure


def test_plot_steps_fits_each_target_and_rejects_other_input():
    import matplotlib
    matplotlib.use("Agg")
    B = 2 ** np.arange(1, 12)
    steps = np.stack([s * (1 + b / B) for s, b in ((20, 30), (60, 90))])[..., None] * np.ones(3)  # (2, 11, 3)
    sweep = Sweep(B, np.array([1.8, 1.5]), np.arange(3), steps, np.ones((2, 11)), [], [], 0, "test_loss")
    ax, fits = plot_steps(sweep)
    assert [round(f.b_crit) for f in fits] == [30, 90]
    assert len(ax.get_legend_handles_labels()[1]) == 2
    with pytest.raises(TypeError, match="scaling.Sweep"):
        plot_steps({"steps": steps})
