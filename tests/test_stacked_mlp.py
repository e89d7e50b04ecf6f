"""Tests for stacked_mlp.py: the hand-written forward and backward of stacked MLP runs, against autograd."""
import numpy as np
import pytest
import torch
from torch import nn
from torch.func import stack_module_state

from batchsize import grads, seeding, stacked_mlp, train
from batchsize.data import load_mnist1d
from batchsize.models import CNN1D, MLP
from batchsize.scaling import run_model


def stacked(num_runs, dtype=torch.float64, make=MLP):
    models = []
    for seed in range(num_runs):
        seeding.manual_seed(seed)
        models.append(make().to(dtype))
    params, _ = stack_module_state(models)
    return models[0], {k: v.detach() for k, v in params.items()}


def test_layer_names_accept_only_linear_layers_with_relu_between():
    assert stacked_mlp.layer_names(MLP()) == [("0.weight", "0.bias"), ("2.weight", "2.bias"), ("4.weight", "4.bias")]
    assert stacked_mlp.layer_names(MLP(hidden=(7,))) == [("0.weight", "0.bias"), ("2.weight", "2.bias")]
    assert stacked_mlp.layer_names(MLP(batch_norm=True)) is None
    assert stacked_mlp.layer_names(CNN1D()) is None
    assert stacked_mlp.layer_names(nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))) is None
    assert stacked_mlp.layer_names(nn.Sequential(nn.Linear(3, 4, bias=False))) is None
    frozen = MLP()
    frozen[0].weight.requires_grad_(False)
    assert stacked_mlp.layer_names(frozen) is None


@pytest.mark.parametrize("batch_size", [1, 7, 64])
def test_loss_and_grads_equal_autograd_in_float64(batch_size):
    model, params = stacked(4)
    gen = torch.Generator().manual_seed(batch_size)
    xb = torch.randn(4, batch_size, 40, generator=gen, dtype=torch.float64)
    yb = torch.randint(0, 10, (4, batch_size), generator=gen)
    loss, acc, got = stacked_mlp.StackedMLP(stacked_mlp.layer_names(model)).loss_and_grads(params, xb, yb)
    ref_loss, ref_acc, want = train._loss_and_grads(train._Stacked(model), params, xb, yb)
    torch.testing.assert_close(loss, ref_loss, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(acc, ref_acc)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-12)
    logits = stacked_mlp.StackedMLP(stacked_mlp.layer_names(model))(params, xb[0], shared=True)
    torch.testing.assert_close(logits, train._Stacked(model)(params, xb[0], shared=True), rtol=1e-12, atol=1e-12)


def test_noise_scale_of_each_run_equals_gradient_stats():
    X, y, _, _ = load_mnist1d()
    X, y = X[:300].double(), y[:300]
    model, params = stacked(3)
    sq, trace, b = stacked_mlp.StackedMLP(stacked_mlp.layer_names(model)).noise_scale(params, X, y)
    for i in range(3):
        ref = grads.gradient_stats(run_model(lambda: MLP().double(), params, i), X, y)
        assert sq[i].item() == pytest.approx(ref.grad_sq_norm, rel=1e-9)
        assert trace[i].item() == pytest.approx(ref.trace_cov, rel=1e-9)
        assert b[i].item() == pytest.approx(ref.b_simple, rel=1e-9)


def with_identity():
    """The MLP with an nn.Identity appended: the same function, trained through autograd instead."""
    return nn.Sequential(*MLP(), nn.Identity()).double()


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_train_many_on_the_mlp_follows_the_autograd_path_in_float64(momentum):
    """The MLP's SGD step inside its backward pass (`sgd_step_`) against autograd and the separate update."""
    X, y, _, _ = load_mnist1d()
    data = (X[:400].double(), y[:400], X[:200].double(), y[:200])
    cfg = train.TrainConfig(batch_size=8, num_steps=150, eval_every=10, momentum=momentum, progress=False)
    fast = train.train_many(lambda: MLP().double(), data, [0.02, 0.05], [0, 1], cfg)
    slow = train.train_many(with_identity, data, [0.02, 0.05], [0, 1], cfg)
    assert stacked_mlp.layer_names(with_identity()) is None
    np.testing.assert_allclose(fast.train_loss, slow.train_loss, rtol=1e-9)
    np.testing.assert_allclose(fast.test_loss, slow.test_loss, rtol=1e-9)
    for (k, v), w in zip(fast.params.items(), slow.params.values()):
        torch.testing.assert_close(v, w, rtol=1e-8, atol=1e-10)


def noisy_runs():
    """300 examples (also the evaluation set) and a config that logs B_simple, for the noise-scale tests."""
    X, y, _, _ = load_mnist1d()
    cfg = train.TrainConfig(batch_size=16, num_steps=40, eval_every=1, eval_growth=1.2, progress=False,
                            noise_growth=2.0, target=2.0, target_metric="test_loss")
    return (X[:300], y[:300], X[:300], y[:300]), cfg


def test_noise_growth_logs_b_simple_along_each_run_for_any_model():
    data, cfg = noisy_runs()
    for make in (MLP, with_identity):
        d = data if make is MLP else tuple(t.double() if t.is_floating_point() else t for t in data)
        hist = train.train_many(make, d, [0.05, 0.2], [0], cfg)
        np.testing.assert_array_equal(hist.noise_steps[:4], [0, 1, 2, 4])
        for r in range(2):
            model = run_model(make, {k: v for k, v in hist.params.items()}, r)
            ok = np.isfinite(hist.b_simple[r])
            if hist.reached_at[r] >= 0:  # measured where it stopped, at the target
                assert hist.b_simple_at_stop[r] == pytest.approx(grads.gradient_stats(model, d[0], d[1]).b_simple,
                                                                 rel=1e-4)
                assert hist.noise_steps[ok].max() <= hist.reached_at[r]
            else:
                assert np.isnan(hist.b_simple_at_stop[r]) and ok.all()
        seeding.manual_seed(0)
        start = grads.gradient_stats(make(), d[0], d[1]).b_simple
        assert hist.b_simple[0, 0] == pytest.approx(start, rel=1e-4)


def test_snapshots_measured_later_give_the_b_simple_logged_along_the_run_for_any_model():
    data, cfg = noisy_runs()
    for make in (MLP, with_identity):
        d = data if make is MLP else tuple(t.double() if t.is_floating_point() else t for t in data)
        logged = train.train_many(make, d, [0.05, 0.2, 0.5], [0, 1], cfg)
        kept = train.train_many(make, d, [0.05, 0.2, 0.5], [0, 1], cfg, snapshots=True)
        assert np.isnan(kept.b_simple).all() and np.isnan(kept.b_simple_at_stop).all()
        np.testing.assert_array_equal(kept.snapshot_taken, np.isfinite(logged.b_simple))
        assert (logged.reached_at >= 0).any() and (logged.reached_at < 0).any()  # both kinds of run are here
        train.measure_noise(make, kept, d, [1, 4, 5], chunk=4)  # some runs only, in chunks across runs and steps
        for r in range(6):
            if r in (1, 4, 5):
                np.testing.assert_allclose(kept.b_simple[r], logged.b_simple[r], rtol=1e-5)
                np.testing.assert_allclose(kept.b_simple_at_stop[r], logged.b_simple_at_stop[r], rtol=1e-5)
            else:
                assert np.isnan(kept.b_simple[r]).all() and np.isnan(kept.b_simple_at_stop[r])
    with pytest.raises(ValueError, match="snapshots=True"):
        train.measure_noise(MLP, logged, data, [0])


def test_a_run_gives_the_same_numbers_alone_and_inside_a_stack_with_several_threads():
    X, y, X_test, y_test = load_mnist1d()
    data = (X, y, X_test, y_test)
    lrs = [0.01, 0.03, 0.09, 0.27]
    before = torch.get_num_threads()
    torch.set_num_threads(2)  # one product of two threads may split its sum and round otherwise
    try:
        for batch_size in (16, 256):
            cfg = train.TrainConfig(batch_size=batch_size, num_steps=3, eval_every=3, progress=False,
                                    momentum=0.9 if batch_size == 16 else 0.0)
            stack = train.train_many(MLP, data, lrs, [0], cfg)
            for i, lr in enumerate(lrs):
                alone = train.train_many(MLP, data, [lr], [0], cfg)
                for k in stack.params:
                    assert torch.equal(stack.params[k][i], alone.params[k][0]), (batch_size, lr, k)
    finally:
        torch.set_num_threads(before)
