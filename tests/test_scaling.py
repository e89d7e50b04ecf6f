"""Tests for scaling.py"""
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from batchsize import tune
from batchsize.data import load_mnist1d
from batchsize.models import MLP
from batchsize.scaling import (Generalization, HoldoutTuning, StepsSweep, bootstrap_critical_batch, evaluate_runs,
                               fit_critical_batch, generalization_sweep, local_slopes, median_steps, plot_generalization,
                               plot_steps, regime_slope, run_model, steps_to_target, sweep_steps, top_hessian_eigenvalue,
                               tune_on_holdout)
from batchsize.train import TrainConfig, train, train_many, warmup


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


def test_fit_flags_what_it_dropped_an_edge_and_steps_that_grow_with_b():
    """A fit that is no measurement says so: good data give a trustworthy fit; NaN or inf steps are counted; steps
    that grow with B push B_crit to the edge of its grid, and both flags are set."""
    B = 2.0 ** np.arange(8)
    good = fit_critical_batch(B, 100 * (1 + 8 / B))
    assert good.trustworthy and good.num_dropped == 0 and not good.at_grid_edge and not good.steps_grow
    dropped = fit_critical_batch(B, np.r_[100 * (1 + 8 / B[:6]), np.nan, np.inf])
    assert dropped.num_dropped == 2 and dropped.b_crit == pytest.approx(8, rel=1e-6) and dropped.trustworthy
    growing = fit_critical_batch(B, 10 * B ** 0.5)
    assert growing.steps_grow and growing.at_grid_edge and not growing.trustworthy


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


def test_a_widening_window_with_capped_steps_equals_the_full_grid(small_data):
    # the first window lies far below the best, so every batch size widens it, each new lr capped at the steps
    # of the best one's slowest seed
    kw = dict(batch_sizes=[8, 32, 128], lrs=0.04 * 2.0 ** np.arange(6), targets=[1.8, 1.6], seeds=[0, 1, 2],
              cfg=TrainConfig(eval_every=2, eval_growth=1.1), max_steps=1500)
    pruned = sweep_steps(MLP, small_data, first_lrs=[0.04, 0.08], window=(0.5, 1.0), **kw)
    full = sweep_steps(MLP, small_data, window=(0, np.inf), slack=np.inf, **kw)
    assert [len(lrs) for lrs, _, _ in pruned.tried] == [3, 3, 6]  # widened at every batch size
    np.testing.assert_array_equal(pruned.steps, full.steps)
    np.testing.assert_array_equal(pruned.best_lr, full.best_lr)


@pytest.fixture(scope="module")
def tight_budget_case():
    X, y, _, _ = load_mnist1d()
    kw = dict(batch_sizes=[64, 256, 1024], lrs=0.04 * 2.0 ** np.arange(7), targets=[1.9, 1.8], seeds=[0, 1, 2],
              first_lrs=[0.64, 1.28], max_steps=400, cfg=TrainConfig(eval_every=1, eval_growth=1.1))
    data = (X, y, X[:1000], y[:1000])
    return data, kw, sweep_steps(MLP, data, window=(0, np.inf), slack=np.inf, **kw)


@pytest.mark.parametrize("slack, path", [(0.05, "retry"), (0.5, "rerun")])
def test_a_budget_too_tight_retries_or_reruns_and_equals_the_full_grid(tight_budget_case, slack, path, monkeypatch):
    # slack < 1 gives smaller batches fewer steps than they need: with 0.05 every lr fails and the batch size is
    # tuned again with max_steps; with 0.5 a seed of the tuned lr misses the budget and is rerun with max_steps
    data, kw, full = tight_budget_case
    calls = []

    def recording(make_model, data, lrs, seeds, cfg, **kwargs):
        calls.append((cfg.batch_size, len(lrs), len(seeds), cfg.num_steps))
        return train_many(make_model, data, lrs, seeds, cfg, **kwargs)

    monkeypatch.setattr("batchsize.scaling.train_many", recording)
    tight = sweep_steps(MLP, data, slack=slack, **kw)
    if path == "retry":
        assert any(b < 1024 and n == 3 and s == 400 for b, _, n, s in calls)
    else:
        assert any(n < 3 and s == 400 for _, _, n, s in calls)
    np.testing.assert_array_equal(tight.steps, full.steps)
    np.testing.assert_array_equal(tight.best_lr, full.best_lr)
    assert tight.num_runs == sum(k * n for _, k, n, _ in calls)  # every run trained is counted


def test_near_best_lrs_bracket_the_tuned_lr_and_shrink_to_it_without_noise_allowance(small_data):
    kw = dict(batch_sizes=[8, 32], lrs=0.04 * 2.0 ** np.arange(6), targets=[1.8], seeds=[0, 1, 2],
              cfg=TrainConfig(eval_every=2, eval_growth=1.1), max_steps=1500)
    sw = sweep_steps(MLP, small_data, window=(0, np.inf), slack=np.inf, **kw)
    lo, hi = sw.near_best_lrs()
    assert np.all(lo <= sw.best_lr[0]) and np.all(sw.best_lr[0] <= hi)
    lo0, hi0 = sw.near_best_lrs(z=0)
    np.testing.assert_array_equal(lo0, sw.best_lr[0])
    np.testing.assert_array_equal(hi0, sw.best_lr[0])
    for j, (lrs, steps, _) in enumerate(sw.tried):  # every lr in the bracket is within 2 s.e. of the best
        inside = (lrs >= lo[j]) & (lrs <= hi[j])
        assert tune.near_best(np.log(steps[0]), np.isinf(steps[0]), higher_is_better=False)[inside].any()


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


def test_on_grid_edge_flags_a_tuned_lr_at_either_end_of_the_grid(small_data):
    cfg = TrainConfig(eval_every=2, eval_growth=1.1)
    kw = dict(targets=[1.5], seeds=[0], cfg=cfg, max_steps=2000)
    low = sweep_steps(MLP, small_data, [32], lrs=[0.02, 0.04], **kw)  # both too small: the larger one wins
    assert low.best_lr[0, 0] == 0.04 and low.on_grid_edge.tolist() == [[True]]
    inside = sweep_steps(MLP, small_data, [32], lrs=[0.02, 0.2, 100.0], **kw)  # 100 diverges, 0.02 is slow
    assert inside.best_lr[0, 0] == 0.2 and inside.on_grid_edge.tolist() == [[False]]
    np.testing.assert_array_equal(inside.grid, [0.02, 0.2, 100.0])


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
# generalization at a fixed budget


@pytest.fixture(scope="module")
def split_data():
    X, y, X_test, y_test = load_mnist1d()
    return (X[:1000], y[:1000], X_test[:300], y_test[:300]), (X[1000:1500], y[1000:1500])


def test_evaluate_runs_matches_each_model_evaluated_alone(split_data):
    (X, y, _, _), _ = split_data
    hist = train_many(MLP, (X, y, X[:10], y[:10]), [0.05, 0.2], seeds=[0, 1],
                      cfg=TrainConfig(batch_size=32, num_steps=30, progress=False))
    loss, acc = evaluate_runs(MLP, hist.params, X, y)
    for i in range(4):
        model = run_model(MLP, hist.params, i)
        with torch.no_grad():
            out = model(X)
        assert loss[i] == pytest.approx(F.cross_entropy(out, y).item(), rel=1e-5)
        assert acc[i] == pytest.approx((out.argmax(1) == y).double().mean().item())


@pytest.fixture(scope="module")
def sweep_kw(split_data):
    data, val = split_data
    return dict(make_model=MLP, data=data, val_data=val, batch_sizes=[16, 64, 256],
                lrs=0.01 * 2.0 ** np.arange(8), seeds=[0, 1], cfg=TrainConfig(momentum=0.9), num_epochs=3,
                first_lrs=[0.02, 0.04])


@pytest.fixture(scope="module")
def pruned(sweep_kw):
    return generalization_sweep(**sweep_kw)


def test_pruned_generalization_sweep_equals_unpruned_grid(sweep_kw, pruned):
    full = generalization_sweep(**{**sweep_kw, "first_lrs": None, "window": (0, np.inf)})
    np.testing.assert_array_equal(pruned.best_lr, full.best_lr)
    for name in ("train_loss", "train_acc", "val_acc", "test_loss", "test_acc"):
        np.testing.assert_allclose(getattr(pruned, name), getattr(full, name), rtol=1e-6)
    assert pruned.num_runs < full.num_runs
    # the tuned learning rate is the best of the whole grid, not the edge of a window
    for lrs, val, _ in full.tried:
        assert lrs[0] == sweep_kw["lrs"][0] and lrs[-1] == sweep_kw["lrs"][-1]


def test_generalization_sweep_budget_and_a_tuned_run_trained_alone(sweep_kw, pruned):
    data, (X_val, y_val) = sweep_kw["data"], sweep_kw["val_data"]
    N = len(data[0])
    np.testing.assert_array_equal(pruned.num_steps, 3 * (N // pruned.batch_sizes))
    np.testing.assert_allclose(pruned.epochs, 3 * (N // pruned.batch_sizes) * pruned.batch_sizes / N)
    j, seed = 1, 1  # B = 64, the second seed
    torch.manual_seed(seed)
    alone = MLP()
    cfg = replace(sweep_kw["cfg"], lr=float(pruned.best_lr[j]), batch_size=64, seed=seed,
                  num_steps=int(pruned.num_steps[j]), progress=False)
    train(alone, (*data[:2], X_val, y_val), cfg)
    with torch.no_grad():
        test_out, train_out = alone(data[2]), alone(data[0])
    assert pruned.test_acc[j, 1] == pytest.approx((test_out.argmax(1) == data[3]).double().mean().item())
    assert pruned.train_loss[j, 1] == pytest.approx(F.cross_entropy(train_out, data[1]).item(), rel=1e-4)
    np.testing.assert_allclose(pruned.gap, pruned.train_acc - pruned.test_acc)
    np.testing.assert_allclose(pruned.loss_gap, pruned.test_loss - pruned.train_loss)


def test_generalization_sweep_with_given_lrs_trains_them_untuned_and_reports_divergence(sweep_kw):
    kw = {**sweep_kw, "batch_sizes": [64, 16], "lrs": None, "best_lrs": [1e3, 0.05], "num_epochs": None,
          "num_steps": 20}
    gen = generalization_sweep(**kw)
    np.testing.assert_array_equal(gen.batch_sizes, [16, 64])
    np.testing.assert_array_equal(gen.best_lr, [0.05, 1e3])  # sorted along with the batch sizes
    np.testing.assert_array_equal(gen.num_steps, [20, 20])
    assert [len(lrs) for lrs, _, _ in gen.tried] == [1, 1]
    assert gen.diverged[1].all() and not gen.diverged[0].any()
    assert np.isnan(gen.test_acc[1]).all() and np.isfinite(gen.test_acc[0]).all()


def test_a_diverging_learning_rate_is_never_tuned(sweep_kw):
    gen = generalization_sweep(**{**sweep_kw, "batch_sizes": [16], "lrs": [0.05, 1e3], "first_lrs": None,
                                  "num_epochs": 1})
    assert gen.best_lr[0] == 0.05 and gen.tried[0][2][1].all() and not gen.diverged.any()


@pytest.mark.parametrize("change, error, match", [
    ({"num_steps": 10}, ValueError, "exactly one of num_epochs"),
    ({"num_epochs": None}, ValueError, "exactly one of num_epochs"),
    ({"val_data": (torch.zeros(3, 40),)}, TypeError, "val_data must be a pair"),
    ({"batch_sizes": [8, 2000]}, ValueError, "at most the number of training examples"),
    ({"window": (2, 4)}, ValueError, "window must be"),
    ({"best_lrs": [0.1]}, ValueError, "one learning rate per batch size"),
    ({"lrs": [0.1, -1]}, ValueError, "lrs must all be finite"),
    ({"num_epochs": 0}, ValueError, "num_epochs"),
])
def test_generalization_sweep_bad_inputs_raise(sweep_kw, change, error, match):
    with pytest.raises(error, match=match):
        generalization_sweep(**{**sweep_kw, **change})


@pytest.mark.parametrize("params, error, match", [
    ([1, 2], TypeError, "params must be a non-empty dict"),
    ({"0.weight": torch.zeros(1, 100, 40)}, ValueError, "the model's parameters"),
])
def test_evaluate_runs_bad_inputs_raise(params, error, match):
    with pytest.raises(error, match=match):
        evaluate_runs(MLP, params, torch.zeros(3, 40), torch.zeros(3, dtype=torch.long))


# ---------------------------------------------------------------------------------------------------------------
# the figure


def test_plot_steps_fits_each_target_and_rejects_other_input():
    import matplotlib
    matplotlib.use("Agg")
    B = 2 ** np.arange(1, 12)
    steps = np.stack([s * (1 + b / B) for s, b in ((20, 30), (60, 90))])[..., None] * np.ones(3)  # (2, 11, 3)
    sweep = StepsSweep(B, np.array([1.8, 1.5]), np.arange(3), steps, np.ones((2, 11)), [], [], 0, "test_loss")
    ax, fits = plot_steps(sweep)
    assert [round(f.b_crit) for f in fits] == [30, 90]
    assert len(ax.get_legend_handles_labels()[1]) == 2
    with pytest.raises(TypeError, match="scaling.StepsSweep"):
        plot_steps({"steps": steps})


def test_plot_generalization_draws_test_and_train_and_counts_diverged(pruned):
    import matplotlib
    matplotlib.use("Agg")
    ax = plot_generalization(pruned, label="3 epochs")
    labels = ax.get_legend_handles_labels()[1]
    assert labels == ["3 epochs: test accuracy", "3 epochs: train accuracy"]
    gen = replace(pruned, test_acc=pruned.test_acc.copy(), train_acc=pruned.train_acc.copy(),
                  diverged=pruned.diverged.copy())
    gen.diverged[0, 0] = True
    gen.test_acc[0, 0] = gen.train_acc[0, 0] = np.nan
    ax = plot_generalization(gen, train=False)
    assert ax.get_legend_handles_labels()[1] == ["test accuracy (1 diverged runs left out)"]
    with pytest.raises(TypeError, match="scaling.Generalization"):
        plot_generalization(pruned.test_acc)


# ---------------------------------------------------------------------------------------------------------------
# holdout tuning at one batch size (chapter 3)


@pytest.fixture(scope="module")
def holdout_kw(split_data):
    data, val = split_data
    return dict(make_model=MLP, data=data, val_data=val, batch_size=64, grid=0.2 * 2.0 ** (np.arange(9) / 2),
                seeds=[0, 1, 2], cfg=TrainConfig(), num_steps=60)


@pytest.fixture(scope="module")
def holdout(holdout_kw):
    grid = holdout_kw["grid"]
    return tune_on_holdout(**holdout_kw, first=grid[:2], extra_lrs=[grid[3], 1e3], extra_schedules=[warmup(10), None])


def test_holdout_tuning_widens_to_the_best_of_the_whole_grid(holdout_kw, holdout):
    full = tune_on_holdout(**holdout_kw, first=holdout_kw["grid"])
    assert isinstance(holdout, HoldoutTuning) and len(holdout.lrs) < len(full.lrs)  # it stopped short of the grid
    assert holdout.lrs[holdout.best] == full.lrs[full.best]
    assert holdout.best == tune.best_index(holdout.val_acc, holdout.diverged) and holdout.best < len(holdout.lrs) - 1
    np.testing.assert_array_equal(holdout.lrs, full.lrs[:len(holdout.lrs)])
    np.testing.assert_allclose(holdout.val_acc, full.val_acc[:len(holdout.lrs)], rtol=1e-6)
    np.testing.assert_allclose(holdout.test_acc, full.test_acc[:len(holdout.lrs)], rtol=1e-6)
    np.testing.assert_array_equal(holdout.near_best(), tune.near_best(holdout.val_acc, holdout.diverged))
    assert holdout.num_runs == (len(holdout.lrs) + 2) * 3 and full.num_runs == len(full.lrs) * 3
    assert holdout.num_steps == 60


def test_holdout_runs_match_runs_trained_alone(holdout_kw, holdout):
    (X, y, X_test, y_test), (X_val, y_val) = holdout_kw["data"], holdout_kw["val_data"]
    cfg = replace(holdout_kw["cfg"], batch_size=64, num_steps=60, eval_every=60, progress=False)
    lrs = [float(holdout.lrs[1]), float(holdout.extra_lrs[0])]
    hist = train_many(MLP, (X, y, X_val, y_val), lrs, [0, 1, 2], cfg, lr_schedules=[None, warmup(10)])
    _, test = evaluate_runs(MLP, hist.params, X_test, y_test)
    np.testing.assert_allclose(holdout.val_acc[1], hist.test_acc[:3, -1], rtol=1e-6)
    np.testing.assert_allclose(holdout.test_acc[1], test[:3], rtol=1e-6)
    np.testing.assert_allclose(holdout.extra_val_acc[0], hist.test_acc[3:, -1], rtol=1e-6)
    np.testing.assert_allclose(holdout.extra_test_acc[0], test[3:], rtol=1e-6)
    assert holdout.index(lrs[0]) == 1


def test_holdout_reports_a_diverged_extra_run_as_nan(holdout):
    assert holdout.extra_diverged[1].all() and np.isnan(holdout.extra_test_acc[1]).all()
    assert np.isnan(holdout.extra_val_acc[1]).all() and not holdout.extra_diverged[0].any()
    np.testing.assert_array_equal(holdout.extra_lrs, [holdout.extra_lrs[0], 1e3])


@pytest.mark.parametrize("change, error, match", [
    ({"first": [0.06]}, ValueError, "first must hold points of grid"),
    ({"num_epochs": 2}, ValueError, "exactly one of num_epochs"),
    ({"num_steps": None}, ValueError, "exactly one of num_epochs"),
    ({"val_data": (torch.zeros(3, 40),)}, TypeError, "val_data must be a pair"),
    ({"batch_size": 2000}, ValueError, "at most the number of training examples"),
    ({"batch_size": 0}, ValueError, "batch_size must be an integer >= 1"),
    ({"extra_lrs": [0.1], "extra_schedules": [None, None]}, ValueError, "one callable"),
    ({"extra_lrs": [-0.1]}, ValueError, "extra_lrs must all be finite"),
    ({"grid": [0.1, np.inf]}, ValueError, "grid must all be finite"),
])
def test_holdout_tuning_bad_inputs_raise(holdout_kw, change, error, match):
    kw = {**holdout_kw, "first": holdout_kw["grid"][:1], **change}
    with pytest.raises(error, match=match):
        tune_on_holdout(**kw)


def test_holdout_index_refuses_an_untrained_lr(holdout):
    with pytest.raises(ValueError, match="was not trained"):
        holdout.index(0.123)


# ---------------------------------------------------------------------------------------------------------------
# chapter 2.2: runs stopped once they cannot be the tuned one, and the noise scale along the tuned runs


def test_stop_slower_gives_the_tuned_results_of_the_full_grid_with_fewer_steps(small_data):
    kw = dict(batch_sizes=[8, 32, 128], lrs=0.04 * 2.0 ** np.arange(6), targets=[1.8, 1.6], seeds=[0, 1, 2],
              cfg=TrainConfig(eval_every=2, eval_growth=1.1), max_steps=1500)
    full = sweep_steps(MLP, small_data, window=(0, np.inf), slack=np.inf, **kw)
    fast = sweep_steps(MLP, small_data, window=(0, np.inf), slack=np.inf, stop_slower=True, threads=1, **kw)
    np.testing.assert_array_equal(fast.steps, full.steps)
    np.testing.assert_array_equal(fast.best_lr, full.best_lr)
    # the slower learning rates stopped early: some of their seeds never got to the hardest target
    assert sum(np.isinf(s[-1]).sum() for _, s, _ in fast.tried) > sum(np.isinf(s[-1]).sum() for _, s, _ in full.tried)
    with pytest.raises(ValueError, match="threads"):
        sweep_steps(MLP, small_data, threads=0, **kw)


def test_b_simple_at_the_hardest_target_is_that_of_the_tuned_runs_where_they_stopped(small_data):
    from batchsize.grads import gradient_stats

    sw = sweep_steps(MLP, small_data, batch_sizes=[16, 64], lrs=0.1 * 2.0 ** np.arange(4), targets=[1.9, 1.7],
                     seeds=[0, 1, 2], cfg=TrainConfig(eval_every=2, eval_growth=1.1, noise_growth=2.0),
                     max_steps=1500, stop_slower=True)
    at, along = sw.b_simple_at(-1), sw.b_simple_along(-1)
    for j in range(2):
        for s in range(3):
            want = gradient_stats(run_model(MLP, sw.params[j], s), small_data[0], small_data[1]).b_simple
            assert at[j, s] == pytest.approx(want, rel=1e-4)
    assert np.all(np.isfinite(along)) and np.all(along > 0)
    assert np.all(np.isfinite(sw.b_simple_at(0)))
    for j in range(2):  # measured for the tuned learning rates only
        assert set(sw.noise[j]) == set(sw.best_lr[:, j])
        assert len(sw.tried[j][0]) > len(set(sw.best_lr[:, j]))
    with pytest.raises(ValueError, match="noise_growth"):
        StepsSweep(sw.batch_sizes, sw.targets, sw.seeds, sw.steps, sw.best_lr, sw.tried, sw.params, 0,
                   "test_loss").b_simple_at()


def test_b_simple_along_is_the_step_average_of_the_logged_values_up_to_the_target():
    steps = np.array([[[15.0]], [[20.0]]])  # (num_targets, num_batch_sizes, num_seeds)
    series = (np.array([0.0, 10.0, 20.0]), np.array([100.0, 200.0, 300.0]))
    sw = StepsSweep(np.array([8]), np.array([1.8, 1.5]), np.array([0]), steps, np.array([[0.1], [0.1]]), [], [], 1,
                    "test_loss", noise=[{0.1: [series]}])
    at_15 = np.sqrt(200.0 * 300.0)  # interpolated in log between steps 10 and 20
    assert sw.b_simple_at(0)[0, 0] == pytest.approx(at_15)
    assert sw.b_simple_at(1)[0, 0] == pytest.approx(300.0)
    assert sw.b_simple_along(0)[0, 0] == pytest.approx(((100 + 200) / 2 * 10 + (200 + at_15) / 2 * 5) / 15)
    assert sw.b_simple_along(1)[0, 0] == pytest.approx(((100 + 200) / 2 * 10 + (200 + 300) / 2 * 10) / 20)


def test_bootstrap_fits_every_resample_as_fit_critical_batch_does():
    rng = np.random.default_rng(3)
    B = np.array([4, 16, 64, 256, 1024, 4000.0])
    steps = (200 * (1 + 150 / B))[:, None] * np.exp(0.1 * rng.standard_normal((6, 3)))
    steps[0, :2] = np.inf  # most resamples at B = 4 never reach: those are fitted one by one, without B = 4
    b_boot, s_boot = bootstrap_critical_batch(B, steps, num_boot=100, seed=2)
    for b, s, m in zip(b_boot, s_boot, median_steps(tune.bootstrap(steps, 100, 2))):
        fit = fit_critical_batch(B, m)
        assert b == pytest.approx(fit.b_crit, rel=1e-6) and s == pytest.approx(fit.s_min, rel=1e-6)
