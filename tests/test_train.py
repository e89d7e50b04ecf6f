"""Tests for train.py"""
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from batchsize import hardware
from batchsize.data import load_mnist1d
from batchsize.models import MLP
from batchsize.train import History, TrainConfig, _batch_order, train, train_many

CFG = TrainConfig(lr=0.1, batch_size=64, num_steps=300, eval_every=100, progress=False)


@pytest.fixture(scope="module")
def data():
    return load_mnist1d()


@pytest.fixture(scope="module")
def data64(data):
    """MNIST-1D in float64: against torch.optim the runs must agree in the algorithm, not in one float32 rounding
    (over 300 steps float32's differences between its kernels, which change with the thread count, grow to 1e-3)."""
    X, y, X_test, y_test = data
    return X.double(), y, X_test.double(), y_test


def make_model(seed=0, dtype=torch.float32):
    torch.manual_seed(seed)
    return MLP().to(dtype)


# ---------------------------------------------------------------------------------------------------------------
# reference: a plain PyTorch loop with torch.optim.SGD over the same batches


def reference_sgd(model, data, cfg, stop_at=None):
    """Train with torch.optim.SGD in a plain loop; returns per-step losses and test losses at eval steps."""
    X, y, X_test, y_test = data
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    order = _batch_order(len(X), cfg.batch_size, cfg.num_steps, cfg.seed)
    losses, test_losses = [], []

    def evaluate():
        with torch.no_grad():
            test_losses.append(F.cross_entropy(model(X_test), y_test).item())

    evaluate()
    for step, idx in enumerate(order[:stop_at]):
        opt.zero_grad()
        loss = F.cross_entropy(model(X[idx]), y[idx])
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if (step + 1) % cfg.eval_every == 0 or step + 1 == cfg.num_steps:
            evaluate()
    return np.array(losses), np.array(test_losses)


def assert_same_history(a, b, rtol=1e-5, atol=1e-6):
    for name in ("train_loss", "train_acc", "test_loss", "test_acc"):
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=rtol, atol=atol, err_msg=name)
    np.testing.assert_array_equal(a.eval_steps, b.eval_steps)
    np.testing.assert_array_equal(a.diverged, b.diverged)
    np.testing.assert_array_equal(a.diverged_at, b.diverged_at)


# ---------------------------------------------------------------------------------------------------------------
# batch order


def test_batch_order_draws_each_example_at_most_once_per_epoch():
    order = _batch_order(100, 8, 30, seed=0)
    assert order.shape == (30, 8) and order.dtype == torch.long
    steps_per_epoch = 100 // 8
    for start in range(0, 30, steps_per_epoch):
        epoch = order[start:start + steps_per_epoch].flatten()
        assert len(torch.unique(epoch)) == len(epoch)
        assert epoch.min() >= 0 and epoch.max() < 100


def test_batch_order_depends_on_seed_only():
    assert torch.equal(_batch_order(100, 8, 30, seed=1), _batch_order(100, 8, 30, seed=1))
    assert not torch.equal(_batch_order(100, 8, 30, seed=1), _batch_order(100, 8, 30, seed=2))


# ---------------------------------------------------------------------------------------------------------------
# train against torch.optim.SGD


@pytest.fixture(scope="module")
def plain_run(data64):
    """The default short run (300 steps, lr 0.1, batch size 64), and the same run with torch.optim.SGD, in float64."""
    model, ref_model = make_model(dtype=torch.float64), make_model(dtype=torch.float64)
    hist = train(model, data64, CFG)
    ref_losses, ref_test = reference_sgd(ref_model, data64, CFG)
    return hist, model, ref_losses, ref_test, ref_model


def test_train_decreases_the_loss(plain_run):
    hist = plain_run[0]
    assert isinstance(hist, History)
    assert hist.train_loss.shape == hist.train_acc.shape == (300,)
    np.testing.assert_array_equal(hist.eval_steps, [0, 100, 200, 300])
    assert hist.test_loss.shape == hist.test_acc.shape == (4,)
    assert not hist.diverged and hist.diverged_at == -1
    assert abs(hist.test_loss[0] - np.log(10)) < 0.1  # an untrained classifier is near chance
    assert hist.test_loss[-1] < hist.test_loss[0] - 0.3
    assert hist.train_loss[-50:].mean() < hist.train_loss[:50].mean() - 0.3
    assert hist.test_acc[-1] > 0.25  # chance is 0.1


def test_train_matches_torch_optim_sgd_on_same_batches(plain_run):
    hist, model, ref_losses, ref_test, ref_model = plain_run
    np.testing.assert_allclose(hist.train_loss, ref_losses, rtol=1e-10, atol=0)
    np.testing.assert_allclose(hist.test_loss, ref_test, rtol=1e-10, atol=0)
    for p, q in zip(model.parameters(), ref_model.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("momentum, weight_decay", [(0.9, 0.0), (0.0, 1e-2), (0.9, 5e-4)])
def test_train_matches_torch_optim_sgd_with_momentum_and_weight_decay(data64, momentum, weight_decay):
    cfg = replace(CFG, momentum=momentum, weight_decay=weight_decay, num_steps=100, eval_every=50, lr=0.05)
    model, ref_model = make_model(dtype=torch.float64), make_model(dtype=torch.float64)
    hist = train(model, data64, cfg)
    ref_losses, ref_test = reference_sgd(ref_model, data64, cfg)
    np.testing.assert_allclose(hist.train_loss, ref_losses, rtol=1e-10, atol=0)
    np.testing.assert_allclose(hist.test_loss, ref_test, rtol=1e-10, atol=0)
    for p, q in zip(model.parameters(), ref_model.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-9, atol=1e-12)


def test_train_accuracy_is_fraction_of_correct_predictions_in_batch(data):
    cfg = replace(CFG, num_steps=1)
    model = make_model()
    X, y = data[0], data[1]
    idx = _batch_order(len(X), cfg.batch_size, 1, cfg.seed)[0]
    with torch.no_grad():
        expected = (model(X[idx]).argmax(1) == y[idx]).double().mean().item()
    hist = train(model, data, cfg)
    assert hist.train_acc[0] == pytest.approx(expected)


def test_train_is_reproducible(data):
    cfg = replace(CFG, num_steps=100)
    a, b = make_model(), make_model()
    assert_same_history(train(a, data, cfg), train(b, data, cfg), rtol=0, atol=0)
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)


def test_callback_sees_model_with_current_parameters(data64):
    cfg = replace(CFG, num_steps=120, eval_every=50)
    calls = []

    def callback(step, model):
        calls.append((step, [p.detach().clone() for p in model.parameters()]))

    train(make_model(dtype=torch.float64), data64, cfg, callback=callback)
    assert [step for step, _ in calls] == [50, 100]
    for step, params in calls:
        ref_model = make_model(dtype=torch.float64)
        reference_sgd(ref_model, data64, cfg, stop_at=step)
        for p, q in zip(params, ref_model.parameters()):
            torch.testing.assert_close(p, q, rtol=1e-9, atol=1e-12)


# ---------------------------------------------------------------------------------------------------------------
# train_many: every run as if trained alone


def test_train_many_rows_equal_train_with_that_lr_and_seed(data):
    lrs, seeds = [0.05, 0.2], [0, 1]
    cfg = replace(CFG, num_steps=60, eval_every=30)
    hist = train_many(make_model=MLP, data=data, lrs=lrs, seeds=seeds, cfg=cfg)
    assert hist.train_loss.shape == (4, 60) and hist.test_loss.shape == (4, 3)
    for i in range(4):
        lr, seed = lrs[i // 2], seeds[i % 2]  # lr-major
        alone = train(make_model(seed), data, replace(cfg, lr=lr, seed=seed))
        for name in ("train_loss", "train_acc", "test_loss", "test_acc"):
            np.testing.assert_allclose(getattr(hist, name)[i], getattr(alone, name), rtol=1e-5, atol=1e-5,
                                       err_msg=f"{name} of run {i}")
        assert hist.diverged[i] == alone.diverged and hist.diverged_at[i] == alone.diverged_at


def test_diverged_run_is_flagged_and_does_not_affect_the_others(data):
    cfg = replace(CFG, num_steps=60, eval_every=20)
    hist = train_many(MLP, data, lrs=[0.1, 1e3, 0.05], seeds=[0], cfg=cfg)
    np.testing.assert_array_equal(hist.diverged, [False, True, False])
    at = hist.diverged_at[1]
    assert hist.diverged_at[0] == hist.diverged_at[2] == -1
    assert 0 < at < cfg.num_steps
    assert np.all(np.isfinite(hist.train_loss[1, :at]))
    assert np.all(np.isnan(hist.train_loss[1, at:])) and np.all(np.isnan(hist.train_acc[1, at:]))
    assert np.all(np.isnan(hist.test_loss[1, hist.eval_steps > at]))
    for i, lr in ((0, 0.1), (2, 0.05)):
        alone = train(make_model(0), data, replace(cfg, lr=lr))
        np.testing.assert_allclose(hist.train_loss[i], alone.train_loss, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(hist.test_loss[i], alone.test_loss, rtol=1e-5, atol=1e-5)


def test_every_run_diverging_at_an_evaluation_step_is_reported_not_raised(data):
    cfg = replace(CFG, num_steps=60, eval_every=1)
    hist = train_many(MLP, data, lrs=[1e3], seeds=[0], cfg=cfg)
    assert hist.diverged.tolist() == [True] and 0 <= hist.diverged_at[0] < 60
    assert np.all(np.isnan(hist.test_loss[0, hist.diverged_at[0] + 2:]))


def test_train_reports_divergence_of_a_single_run(data):
    cfg = replace(CFG, lr=1e3, num_steps=30, eval_every=10)
    model = make_model()
    hist = train(model, data, cfg)
    assert hist.diverged and 0 < hist.diverged_at < 30
    assert np.all(np.isnan(hist.train_loss[hist.diverged_at:]))
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_train_many_is_reproducible(data):
    cfg = replace(CFG, num_steps=40, eval_every=20)
    a = train_many(MLP, data, lrs=[0.1, 1e3], seeds=[0, 3], cfg=cfg)
    b = train_many(MLP, data, lrs=[0.1, 1e3], seeds=[0, 3], cfg=cfg)
    assert_same_history(a, b, rtol=0, atol=0)


# ---------------------------------------------------------------------------------------------------------------
# bad inputs


@pytest.fixture
def small_data():
    torch.manual_seed(0)
    return torch.randn(20, 40), torch.randint(0, 10, (20,)), torch.randn(5, 40), torch.randint(0, 10, (5,))


@pytest.mark.parametrize("change, error, match", [
    (dict(batch_size=0), ValueError, "batch_size"),
    (dict(batch_size=21), ValueError, "batch_size must be between 1 and the number of examples"),
    (dict(batch_size=2.5), TypeError, "batch_size"),
    (dict(lr=0.0), ValueError, "lr"),
    (dict(lr=-0.1), ValueError, "lr"),
    (dict(lr=float("nan")), ValueError, "lr"),
    (dict(num_steps=0), ValueError, "num_steps"),
    (dict(eval_every=0), ValueError, "eval_every"),
    (dict(momentum=1.0), ValueError, "momentum"),
    (dict(weight_decay=-1e-4), ValueError, "weight_decay"),
])
def test_bad_config_raises_naming_the_setting(small_data, change, error, match):
    cfg = replace(CFG, **{"num_steps": 2, "batch_size": 4, **change})
    with pytest.raises(error, match=match):
        train(make_model(), small_data, cfg)
    with pytest.raises(error, match=match):
        train_many(MLP, small_data, lrs=[cfg.lr], cfg=cfg)


BAD_DATA = [
    (lambda X, y: (X, y.float()), TypeError, "y(_test)? must hold integer class labels"),
    (lambda X, y: (X, y[:-1]), ValueError, "same number of examples"),
    (lambda X, y: (X[:0], y[:0]), ValueError, "at least one example"),
    (lambda X, y: (X.long(), y), TypeError, "X must be a floating-point"),
    (lambda X, y: (X.numpy(), y), TypeError, "X must be a torch.Tensor"),
]


@pytest.mark.parametrize("corrupt, error, match", BAD_DATA)
def test_bad_training_data_raises(small_data, corrupt, error, match):
    X, y, X_test, y_test = small_data
    cfg = replace(CFG, num_steps=2, batch_size=4)
    with pytest.raises(error, match=match):
        train(make_model(), (*corrupt(X, y), X_test, y_test), cfg)


@pytest.mark.parametrize("corrupt, error, match", BAD_DATA[1:])
def test_bad_test_data_raises(small_data, corrupt, error, match):
    X, y, X_test, y_test = small_data
    cfg = replace(CFG, num_steps=2, batch_size=4)
    with pytest.raises(error, match=match):
        train(make_model(), (X, y, *corrupt(X_test, y_test)), cfg)


def test_float_test_labels_raise_type_error(small_data):
    X, y, X_test, y_test = small_data
    with pytest.raises(TypeError, match="y"):
        train(make_model(), (X, y, X_test, y_test.float()), replace(CFG, num_steps=2, batch_size=4))


def test_non_module_model_raises(small_data):
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        train(lambda x: x, small_data, replace(CFG, num_steps=2, batch_size=4))


def test_train_many_non_config_raises(small_data):
    with pytest.raises(TypeError, match="cfg must be a TrainConfig"):
        train_many(MLP, small_data, lrs=[0.1], cfg={"lr": 0.1, "batch_size": 4})


def test_train_non_config_raises(small_data):
    with pytest.raises(TypeError, match="cfg must be a TrainConfig"):
        train(make_model(), small_data, {"lr": 0.1, "batch_size": 4, "seed": 0})


@pytest.mark.parametrize("lrs, seeds", [([], [0]), ([0.1], [])])
def test_train_many_needs_an_lr_and_a_seed(small_data, lrs, seeds):
    with pytest.raises(ValueError, match="at least one value"):
        train_many(MLP, small_data, lrs=lrs, seeds=seeds, cfg=replace(CFG, num_steps=2, batch_size=4))


# ---------------------------------------------------------------------------------------------------------------
# stopping at a target (chapter 2): each run stops at its first evaluation at the target, as if trained alone


def test_lazy_data_order_equals_batch_order():
    from batchsize.train import _Orders
    orders = _Orders(100, 7, seeds=[3, 5])
    ref = [_batch_order(100, 7, 40, s) for s in (3, 5)]
    for step in range(40):
        got = orders.batch(step, torch.tensor([0, 1]))
        torch.testing.assert_close(got, torch.stack([ref[0][step], ref[1][step]]))


def test_geometric_eval_steps_grow_by_the_factor_and_end_at_num_steps():
    cfg = replace(CFG, num_steps=500, eval_every=2, eval_growth=1.5)
    hist = train(make_model(), load_mnist1d(), replace(cfg, num_steps=500))
    steps = hist.eval_steps
    assert steps[0] == 0 and steps[1] == 2 and steps[-1] == 500
    gaps = np.diff(steps[1:-1])
    assert np.all(gaps >= 2)
    ratio = steps[2:-1] / steps[1:-2]
    assert np.all(ratio >= 1.5 - 1e-9) and np.all(ratio <= 1.5 + 2 / steps[1:-2] + 1e-9)


@pytest.mark.parametrize("metric, target", [("test_acc", 0.3), ("test_loss", 1.7)])
def test_target_stops_each_run_at_its_first_evaluation_there(data, metric, target):
    lrs, seeds = [0.02, 0.1, 0.3], [0, 1]
    cfg = replace(CFG, num_steps=400, eval_every=10)
    free = train_many(MLP, data, lrs=lrs, seeds=seeds, cfg=cfg)
    stopped = train_many(MLP, data, lrs=lrs, seeds=seeds, cfg=replace(cfg, target=target, target_metric=metric))
    values = getattr(free, metric)
    there = values >= target if metric == "test_acc" else values <= target
    expected = np.where(there.any(1), free.eval_steps[there.argmax(1)], -1)
    assert (expected > 0).sum() >= 2 and (expected == -1).sum() >= 1, expected  # the test must discriminate
    np.testing.assert_array_equal(stopped.reached_at, expected)
    for i, at in enumerate(expected):
        end = cfg.num_steps if at < 0 else at
        np.testing.assert_allclose(stopped.train_loss[i, :end], free.train_loss[i, :end], rtol=1e-5, atol=1e-6)
        assert np.all(np.isnan(stopped.train_loss[i, end:]))
        alone = make_model(seeds[i % 2])
        train(alone, data, replace(cfg, lr=lrs[i // 2], seed=seeds[i % 2], num_steps=end))
        for name, p in alone.named_parameters():
            torch.testing.assert_close(stopped.params[name][i], p, rtol=1e-4, atol=1e-5)


def test_loop_ends_once_every_run_has_answered(data):
    cfg = replace(CFG, num_steps=5000, eval_every=10, target=0.25)
    hist = train_many(MLP, data, lrs=[0.1, 1e3], seeds=[0], cfg=cfg)
    assert hist.diverged.tolist() == [False, True] and hist.reached_at[1] == -1
    assert 0 < hist.reached_at[0] < 1000
    assert np.all(np.isnan(hist.train_loss[:, hist.reached_at[0]:]))


def test_train_many_returns_final_parameters_of_each_run(data):
    cfg = replace(CFG, num_steps=50, eval_every=25)
    hist = train_many(MLP, data, lrs=[0.05, 0.2], seeds=[0, 2], cfg=cfg)
    for i in range(4):
        alone = make_model([0, 2][i % 2])
        train(alone, data, replace(cfg, lr=[0.05, 0.2][i // 2], seed=[0, 2][i % 2]))
        for name, p in alone.named_parameters():
            torch.testing.assert_close(hist.params[name][i], p, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("change, match", [
    (dict(target=float("nan")), "target"),
    (dict(target="0.5"), "target"),
    (dict(target_metric="train_loss"), "target_metric"),
    (dict(eval_growth=0.5), "eval_growth"),
])
def test_bad_stopping_settings_raise(small_data, change, match):
    cfg = replace(CFG, num_steps=2, batch_size=4, **change)
    with pytest.raises(ValueError, match=match):
        train_many(MLP, small_data, lrs=[0.1], cfg=cfg)


# ---------------------------------------------------------------------------------------------------------------
# chapter 3: Adam, AdamW and schedules against torch.optim on the same batches


from batchsize.train import batch_schedule, chain, constant, cosine, step_decay, warmup  # noqa: E402

SHORT = TrainConfig(lr=0.01, batch_size=32, num_steps=60, eval_every=20, progress=False)


def reference_torch(model, data, cfg, optimizer, scheduler=None, batch_sizes=None):
    """A plain loop with a torch.optim optimizer (and scheduler) over the same batches; per-step losses."""
    X, y, _, _ = data
    if batch_sizes is None:
        order = list(_batch_order(len(X), cfg.batch_size, cfg.num_steps, cfg.seed))
    else:  # consume each epoch's permutation in order, a new epoch when the next batch does not fit
        gen, order, perm, cursor = torch.Generator().manual_seed(cfg.seed), [], None, len(X)
        for b in batch_sizes:
            if cursor + b > len(X):
                perm, cursor = torch.randperm(len(X), generator=gen), 0
            order.append(perm[cursor:cursor + b])
            cursor += b
    losses = []
    for idx in order:
        optimizer.zero_grad()
        loss = F.cross_entropy(model(X[idx]), y[idx])
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        losses.append(loss.item())
    return np.array(losses)


@pytest.mark.parametrize("name, weight_decay", [("adam", 0.0), ("adam", 0.01), ("adamw", 0.1)])
def test_adam_and_adamw_match_torch_optim_on_same_batches(data, name, weight_decay):
    cfg = replace(SHORT, optimizer=name, weight_decay=weight_decay, betas=(0.8, 0.99), eps=1e-6)
    model, ref_model = make_model(), make_model()
    hist = train(model, data, cfg)
    opt_cls = torch.optim.Adam if name == "adam" else torch.optim.AdamW
    opt = opt_cls(ref_model.parameters(), lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, weight_decay=weight_decay)
    ref = reference_torch(ref_model, data, cfg, opt)
    np.testing.assert_allclose(hist.train_loss, ref, rtol=1e-4, atol=1e-5)
    for p, q in zip(model.parameters(), ref_model.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5)


def test_adam_train_many_rows_equal_single_runs(data):
    cfg = replace(SHORT, optimizer="adam", num_steps=30)
    hist = train_many(MLP, data, lrs=[0.001, 0.01], seeds=[0, 1], cfg=cfg)
    for i, (lr, seed) in enumerate([(0.001, 0), (0.001, 1), (0.01, 0), (0.01, 1)]):
        single = train(make_model(seed), data, replace(cfg, lr=lr, seed=seed))
        np.testing.assert_allclose(hist.train_loss[i], single.train_loss, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["adam", "adamw"])
def test_each_lr_of_train_many_has_its_own_betas_and_eps_as_torch_optim(data, name):
    lrs, betas, eps = [0.01, 0.004, 0.002], [(0.8, 0.99), (0.6, 0.996), (0.0, 0.9)], [1e-6, 1e-4, 1e-2]
    cfg = replace(SHORT, optimizer=name, weight_decay=0.05 if name == "adamw" else 0.0, num_steps=30)
    hist = train_many(MLP, data, lrs, seeds=[0, 1], cfg=cfg, betas=betas, eps=eps)
    opt_cls = torch.optim.Adam if name == "adam" else torch.optim.AdamW
    for k, (lr, b, e) in enumerate(zip(lrs, betas, eps)):
        for j, seed in enumerate([0, 1]):
            ref_model = make_model(seed)
            opt = opt_cls(ref_model.parameters(), lr=lr, betas=b, eps=e, weight_decay=cfg.weight_decay)
            ref = reference_torch(ref_model, data, replace(cfg, seed=seed), opt)
            np.testing.assert_allclose(hist.train_loss[2 * k + j], ref, rtol=1e-4, atol=1e-5)
            for q_name, q in ref_model.named_parameters():
                torch.testing.assert_close(hist.params[q_name][2 * k + j], q.detach(), rtol=1e-4, atol=1e-5)


def test_per_lr_betas_equal_to_the_config_change_nothing(data):
    cfg = replace(SHORT, optimizer="adam", num_steps=30, betas=(0.8, 0.99), eps=1e-6)
    plain = train_many(MLP, data, [0.01, 0.003], [0], cfg)
    same = train_many(MLP, data, [0.01, 0.003], [0], cfg, betas=[(0.8, 0.99)] * 2, eps=[1e-6, 1e-6])
    assert_same_history(plain, same, rtol=0, atol=0)


@pytest.mark.parametrize("change, match", [
    (dict(betas=[(0.9, 0.999)]), "betas must hold one value per lr"),
    (dict(betas=[(0.9, 0.999), (0.9, 1.0)]), "betas must be two numbers"),
    (dict(betas=[(0.9, 0.999), (0.9,)]), "betas must be two numbers"),
    (dict(eps=1e-8), "eps must hold one value per lr"),
    (dict(eps=[1e-8, 0.0]), "eps must be a finite number"),
])
def test_bad_per_lr_betas_or_eps_raise(small_data, change, match):
    cfg = replace(SHORT, optimizer="adam", batch_size=8, num_steps=3)
    with pytest.raises(ValueError, match=match):
        train_many(MLP, small_data, [0.01, 0.02], [0], cfg, **change)


@pytest.mark.parametrize("optimizer, momentum", [("sgd", 0.0), ("sgd", 0.9), ("adam", 0.0)])
def test_lr_schedule_matches_torch_scheduler(data, optimizer, momentum):
    cfg = replace(SHORT, lr=0.05 if optimizer == "sgd" else 0.01, optimizer=optimizer, momentum=momentum,
                  lr_schedule=chain(warmup(10), step_decay([30, 45], 0.5)))
    model, ref_model = make_model(), make_model()
    hist = train(model, data, cfg)
    if optimizer == "sgd":
        opt = torch.optim.SGD(ref_model.parameters(), lr=cfg.lr, momentum=momentum)
    else:
        opt = torch.optim.Adam(ref_model.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.SequentialLR(opt, [
        torch.optim.lr_scheduler.LinearLR(opt, start_factor=0.1, total_iters=10),
        torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[20, 35], gamma=0.5)], milestones=[10])
    ref = reference_torch(ref_model, data, cfg, opt, sched)
    np.testing.assert_allclose(hist.train_loss, ref, rtol=1e-4, atol=1e-5)


def test_schedules_equal_hand_computed_values():
    w = warmup(4)
    assert [w(s) for s in range(6)] == pytest.approx([0.25, 0.4375, 0.625, 0.8125, 1.0, 1.0])
    assert [warmup(4, start=0.5)(s) for s in (0, 2, 4)] == pytest.approx([0.5, 0.75, 1.0])
    d = step_decay([3, 5], 0.1)
    assert [d(s) for s in range(7)] == pytest.approx([1, 1, 1, 0.1, 0.1, 0.01, 0.01])
    c = cosine(4, final=0.2)
    assert [c(s) for s in range(6)] == pytest.approx([1.0, 0.2 + 0.8 * (1 + np.sqrt(0.5)) / 2, 0.6,
                                                      0.2 + 0.8 * (1 - np.sqrt(0.5)) / 2, 0.2, 0.2])
    assert chain(warmup(2), step_decay([3], 0.5))(3) == pytest.approx(0.5)
    assert constant()(123) == 1.0
    b = batch_schedule(32, [10, 20], 5)
    assert [b(0), b(9), b(10), b(19), b(20)] == [32, 32, 160, 160, 800]


def test_cosine_matches_torch_cosine_annealing():
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    ref = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=50, eta_min=0.1)
    c, values = cosine(50, final=0.1), []
    for _ in range(60):
        values.append(opt.param_groups[0]["lr"])
        opt.step()
        ref.step()
    assert [c(s) for s in range(51)] == pytest.approx(values[:51], rel=1e-9)


def test_each_lr_of_train_many_follows_its_own_schedule(data):
    cfg = replace(SHORT, lr=0.1, num_steps=30)
    schedules = [warmup(20), None, cosine(30)]
    hist = train_many(MLP, data, lrs=[0.2, 0.1, 0.05], seeds=[0, 1], cfg=cfg, lr_schedules=schedules)
    for k, (lr, sched) in enumerate(zip([0.2, 0.1, 0.05], schedules)):
        for j, seed in enumerate([0, 1]):
            single = train(make_model(seed), data, replace(cfg, lr=lr, seed=seed, lr_schedule=sched))
            np.testing.assert_allclose(hist.train_loss[2 * k + j], single.train_loss, rtol=1e-5, atol=1e-6)


def test_constant_batch_schedule_equals_fixed_batch_size(data):
    cfg = replace(SHORT, num_steps=300)  # past two epochs of 125 steps
    fixed = train(make_model(), data, cfg)
    scheduled = train(make_model(), data, replace(cfg, batch_schedule=lambda step: 32))
    assert_same_history(fixed, scheduled)


def test_growing_batch_schedule_matches_torch_loop_over_same_batches(data):
    sched = batch_schedule(64, [40, 70], 4)  # 64, then 256, then 1024 examples per step
    cfg = replace(SHORT, lr=0.1, num_steps=90, batch_schedule=sched)
    model, ref_model = make_model(), make_model()
    hist = train(model, data, cfg)
    opt = torch.optim.SGD(ref_model.parameters(), lr=cfg.lr)
    ref = reference_torch(ref_model, data, cfg, opt, batch_sizes=[sched(s) for s in range(90)])
    np.testing.assert_allclose(hist.train_loss, ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("change, error, match", [
    (dict(optimizer="rmsprop"), ValueError, "optimizer"),
    (dict(optimizer="adam", betas=(0.9, 1.0)), ValueError, "betas"),
    (dict(optimizer="adam", betas=(0.9,)), ValueError, "betas"),
    (dict(optimizer="adam", eps=0.0), ValueError, "eps"),
    (dict(lr_schedule=0.5), TypeError, "lr_schedule"),
    (dict(batch_schedule=64), TypeError, "batch_schedule"),
    (dict(lr_schedule=lambda step: -1.0), ValueError, "lr_schedule"),
    (dict(lr_schedule=lambda step: float("nan")), ValueError, "lr_schedule"),
    (dict(batch_schedule=lambda step: 10 ** 6), ValueError, "batch_size"),
])
def test_bad_optimizer_or_schedule_settings_raise(small_data, change, error, match):
    with pytest.raises(error, match=match):
        train(make_model(), small_data, replace(SHORT, batch_size=8, num_steps=3, **change))


def test_bad_schedule_arguments_raise():
    with pytest.raises(ValueError, match="num_steps"):
        warmup(-1)
    with pytest.raises(ValueError, match="milestones"):
        step_decay([2.5])
    with pytest.raises(ValueError, match="factor"):
        step_decay([2], factor=0.0)
    with pytest.raises(ValueError, match="final"):
        cosine(10, final=2.0)
    with pytest.raises(TypeError, match="chain"):
        chain(1.0)
    with pytest.raises(ValueError, match="lr_schedules"):
        train_many(MLP, load_mnist1d(), lrs=[0.1, 0.2], lr_schedules=[warmup(3)], cfg=SHORT)


def test_sweep_rows_equal_train_many_per_batch_size(data):
    from batchsize.train import Sweep, sweep
    cfg = replace(SHORT, num_steps=20)
    res = sweep(MLP, data, [16, 64], [0.05, 0.2, 50.0], seeds=[0, 1], cfg=cfg, num_epochs=None)
    assert isinstance(res, Sweep) and res.test_acc.shape == (2, 3, 2)
    for i, b in enumerate([16, 64]):
        ref = train_many(MLP, data, [0.05, 0.2, 50.0], [0, 1], replace(cfg, batch_size=b, eval_every=20))
        np.testing.assert_allclose(res.test_acc[i], ref.test_acc[:, -1].reshape(3, 2), equal_nan=True)
        np.testing.assert_array_equal(res.diverged[i], ref.diverged.reshape(3, 2))
    assert res.diverged[:, 2].all() and not res.diverged[:, :2].any()  # lr 50 blows up, the others do not


def test_sweep_runs_on_the_threads_asked_within_the_limit_and_restores_the_count(data, monkeypatch):
    from batchsize import train
    seen, real = [], train.train_many

    def spy(*args, **kwargs):
        seen.append((args[4].batch_size, torch.get_num_threads()))
        return real(*args, **kwargs)

    monkeypatch.setattr(train, "train_many", spy)
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    with hardware.num_threads(1):
        train.sweep(MLP, data, [16, 256], [0.1], seeds=[0], cfg=replace(SHORT, num_steps=2), threads=2)
        assert seen == [(16, 2), (256, 2)] and torch.get_num_threads() == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # test workers that share the cores
    with hardware.num_threads(1):
        train.sweep(MLP, data, [16], [0.1], seeds=[0], cfg=replace(SHORT, num_steps=2), threads=2)
        assert seen[-1] == (16, 1)
    with pytest.raises(ValueError, match="threads"):
        train.sweep(MLP, data, [16], [0.1], cfg=replace(SHORT, num_steps=2), threads=0)


def test_sweep_epoch_budget_gives_epochs_times_steps_per_epoch(data):
    from batchsize.train import sweep
    res = sweep(MLP, data, [1000, 2000], 0.1, seeds=[0], cfg=SHORT, num_epochs=3)
    assert [h.eval_steps[-1] for h in res.histories] == [3 * 4, 3 * 2]
    with pytest.raises(ValueError, match="num_epochs"):
        sweep(MLP, data, [1000], 0.1, cfg=SHORT, num_epochs=0)


@pytest.mark.filterwarnings("ignore:Mean of empty slice")  # the diverged lr: NaN in every seed, handled
def test_windowed_sweep_finds_the_full_grids_best_and_trains_the_same_runs(data):
    from batchsize.train import sweep
    lrs, cfg = [0.03, 0.1, 0.3, 1.0, 3.0, 30.0], replace(SHORT, num_steps=40)
    full = sweep(MLP, data, [16, 64, 256], lrs, seeds=[0, 1], cfg=cfg)
    part = sweep(MLP, data, [256, 16, 64], lrs, seeds=[0, 1], cfg=cfg, lr_window=(0.5, 2.0))
    np.testing.assert_array_equal(part.batch_sizes, [16, 64, 256])
    assert part.trained[0].all() and not part.trained[1:].all()  # the window left some runs out
    t = part.trained
    np.testing.assert_allclose(part.test_acc[t], full.test_acc[t], equal_nan=True)
    np.testing.assert_array_equal(part.diverged[t], full.diverged[t])
    assert np.isnan(part.test_acc[~t]).all() and not part.diverged[~t].any()
    np.testing.assert_array_equal(part.best()[0], full.best()[0])  # tune's rule: the same tuned lr as the full grid
    for i in range(3):
        rows = np.repeat(t[i], 2)
        np.testing.assert_allclose(part.histories[i].test_acc, full.histories[i].test_acc[rows], equal_nan=True)


def test_sweep_best_and_near_best_follow_tune_and_seeds_at_reads_the_grid(data):
    from batchsize import tune
    from batchsize.train import sweep
    lrs = [0.03, 0.1, 0.3, 1.0, 30.0]
    res = sweep(MLP, data, [16, 64], lrs, seeds=[0, 1, 2], cfg=replace(SHORT, num_steps=40))
    best_lr, best_acc, best_sem = res.best()
    lo, hi = res.near_best_lrs()
    for i in range(2):
        k = tune.best_index(res.test_acc[i], res.diverged[i])
        assert best_lr[i] == lrs[k] and best_acc[i] == np.median(res.test_acc[i, k])
        assert best_sem[i] == pytest.approx(res.test_acc[i, k].std(ddof=1) / np.sqrt(3))
        assert lo[i] <= best_lr[i] <= hi[i]
        assert hi[i] < 30.0  # lr 30 diverges, so it is never within noise of the best
    np.testing.assert_array_equal(res.seeds_at(64, 0.11), res.test_acc[1, 1])
    with pytest.raises(ValueError, match="batch_size must be one of"):
        res.seeds_at(32, 0.1)


def test_windowed_sweep_widens_while_the_best_is_on_an_edge(data):
    from batchsize.train import sweep
    lrs = 0.01 * 3.0 ** np.arange(6)  # 0.01 .. 2.43; at 40 steps the best grows with the batch
    res = sweep(MLP, data, [16, 256], lrs, seeds=[0], cfg=replace(SHORT, num_steps=40), lr_window=(1.0, 1.0))
    tried = np.flatnonzero(res.trained[1])
    mean = np.where(res.diverged[1].any(-1) | ~res.trained[1], -1, res.test_acc[1, :, 0])
    best = int(mean.argmax())
    assert len(tried) >= 2 and tried[0] < best < tried[-1] or best in (0, len(lrs) - 1), (tried, best)
    assert np.all(np.diff(tried) == 1)  # a contiguous stretch of the grid


@pytest.mark.parametrize("window", [(2.0, 3.0), (0.5, 0.9), (0.0, 2.0), "wide", (0.5,)])
def test_bad_lr_window_raises(small_data, window):
    from batchsize.train import sweep
    with pytest.raises(ValueError, match="lr_window"):
        sweep(MLP, small_data, [4], [0.1], cfg=replace(SHORT, num_steps=2), lr_window=window)


# ---------------------------------------------------------------------------------------------------------------
# the parts of _fit: the live runs, the pure optimizer updates, clipping, given orders, evaluation (chapter 5.1)


from batchsize.train import (_adam_coefficients, _adam_update, _clip, _Runs, _sgd_update,  # noqa: E402
                             evaluate, predict, recall_per_class)


def stacked(seed, num_runs=3):
    """Stacked parameters {name: (num_runs, ...)} of MLPs drawn one after another from seed."""
    torch.manual_seed(seed)
    params, _ = torch.func.stack_module_state([MLP() for _ in range(num_runs)])
    return {k: v.detach() for k, v in params.items()}


def test_runs_drop_writes_back_each_stopped_run_and_keeps_the_rest_aligned():
    out = stacked(0, num_runs=4)
    runs = _Runs(out, [0.1, 0.2, 0.3, 0.4], [(0.9, 0.999), (0.8, 0.99), (0.7, 0.9), (0.6, 0.8)], [1e-8] * 4,
                 torch.float32)
    initial = {k: v.clone() for k, v in out.items()}
    for k in runs.params:
        runs.params[k] = runs.params[k] + 1.0  # trained: the live copy moved away from out
        runs.state["velocity"][k] = torch.arange(4.0).view(-1, *[1] * (runs.params[k].ndim - 1)).expand_as(
            runs.params[k]).clone()
    runs.first_loss = np.array([1.0, 2.0, 3.0, 4.0], np.float32)
    runs.drop(torch.tensor([False, True, False, False]))  # run 1 stops at its target: current parameters
    runs.drop(torch.tensor([False, False, True]), parked=True)  # run 3 diverged: its initial parameters
    assert runs.live.tolist() == [0, 2] and runs.rows.tolist() == [0, 2]
    assert runs.lr.tolist() == pytest.approx([0.1, 0.3]) and runs.first_loss.tolist() == [1.0, 3.0]
    assert runs.beta1.tolist() == [0.9, 0.7] and runs.beta2.tolist() == [0.999, 0.9]
    for k in runs.params:
        assert torch.equal(out[k][1], initial[k][1] + 1.0) and torch.equal(out[k][3], initial[k][3])
        assert torch.equal(out[k][[0, 2]], initial[k][[0, 2]])  # live runs are written only at the end
        assert torch.equal(runs.params[k], initial[k][[0, 2]] + 1.0)
        assert runs.state["velocity"][k].flatten(1)[:, 0].tolist() == [0.0, 2.0]
    runs.write_back()
    for k in runs.params:
        assert torch.equal(out[k][[0, 2]], initial[k][[0, 2]] + 1.0)


@pytest.mark.parametrize("momentum, weight_decay", [(0.0, 0.0), (0.9, 0.0), (0.9, 1e-2)])
def test_sgd_update_is_pure_and_equals_torch_optim_sgd(momentum, weight_decay):
    torch.manual_seed(0)
    p, grads = torch.randn(5, 7), [torch.randn(5, 7) for _ in range(3)]
    ref = p.clone().requires_grad_()
    opt = torch.optim.SGD([ref], lr=0.1, momentum=momentum, weight_decay=weight_decay)
    new, velocity = p, torch.zeros_like(p)
    for g in grads:
        before = (new.clone(), velocity.clone(), g.clone())
        new2, velocity2 = _sgd_update(new, g, velocity, 0.1, momentum, weight_decay)
        assert all(torch.equal(a, b) for a, b in zip(before, (new, velocity, g)))  # inputs untouched
        new, velocity = new2, velocity2
        ref.grad = g.clone()
        opt.step()
        torch.testing.assert_close(new, ref.detach(), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name, weight_decay", [("adam", 0.0), ("adam", 1e-2), ("adamw", 1e-1)])
def test_adam_update_is_pure_and_equals_torch_optim_adam(name, weight_decay):
    torch.manual_seed(0)
    betas, eps = [(0.9, 0.999), (0.8, 0.99), (0.5, 0.9)], [1e-8, 1e-6, 1e-3]
    p, grads = torch.randn(3, 4, 5), [torch.randn(3, 4, 5) for _ in range(3)]
    lr = torch.tensor([1e-2, 3e-3, 1e-1])
    for shared in (True, False):  # every run with the first betas and eps (floats), or each its own (tensors)
        run_betas, run_eps = (betas[:1] * 3, eps[:1] * 3) if shared else (betas, eps)
        refs = [p[i].clone().requires_grad_() for i in range(3)]
        opt_cls = torch.optim.Adam if name == "adam" else torch.optim.AdamW
        opts = [opt_cls([r], lr=lr[i].item(), betas=run_betas[i], eps=run_eps[i], weight_decay=weight_decay)
                for i, r in enumerate(refs)]
        new, m, v = p, torch.zeros_like(p), torch.zeros_like(p)
        for t, g in enumerate(grads, start=1):
            coef = _adam_coefficients(np.array([b[0] for b in run_betas]), np.array([b[1] for b in run_betas]),
                                      np.array(run_eps), t, torch.float32)
            assert isinstance(coef[0], float) == shared
            before = (new.clone(), m.clone(), v.clone())
            out = _adam_update(new, g, m, v, lr.view(3, 1, 1), coef, weight_decay, decoupled=name == "adamw")
            assert all(torch.equal(a, b) for a, b in zip(before, (new, m, v)))  # inputs untouched
            new, m, v = out
            for i, (r, opt) in enumerate(zip(refs, opts)):
                r.grad = g[i].clone()
                opt.step()
                torch.testing.assert_close(new[i], r.detach(), rtol=1e-5, atol=1e-7)


def test_clip_scales_each_run_as_clip_grad_norm():
    torch.manual_seed(0)
    grads = [torch.randn(4, 6, 3), torch.randn(4, 6)]
    grads[0][1] *= 1e-3  # run 1 is under the threshold and keeps its gradient
    norms, clipped = _clip(grads, 2.0)
    for i in range(4):
        ref = [torch.nn.Parameter(torch.zeros_like(g[i])) for g in grads]
        for r, g in zip(ref, grads):
            r.grad = g[i].clone()
        total = torch.nn.utils.clip_grad_norm_(ref, 2.0)
        torch.testing.assert_close(norms[i], total)
        for r, c in zip(ref, clipped):
            torch.testing.assert_close(c[i], r.grad)
    assert torch.linalg.vector_norm(torch.cat([c.flatten(1) for c in clipped], 1), dim=1).max() <= 2.0 + 1e-5
    norms_inf, same = _clip(grads, float("inf"))
    assert torch.equal(norms_inf, norms) and all(torch.equal(a, b) for a, b in zip(same, grads))


def reference_on_orders(model, data, order, lr, clip_norm=None):
    """torch.optim.SGD (with clip_grad_norm_) over the given batches; per-step losses and gradient norms."""
    X, y, _, _ = data
    opt, losses, norms = torch.optim.SGD(model.parameters(), lr=lr), [], []
    for idx in order:
        opt.zero_grad()
        loss = F.cross_entropy(model(X[idx]), y[idx])
        loss.backward()
        if clip_norm is not None:
            norms.append(torch.nn.utils.clip_grad_norm_(model.parameters(), clip_norm).item())
        opt.step()
        losses.append(loss.item())
    return np.array(losses), np.array(norms)


def test_given_orders_are_the_batches_each_run_trains_on(data):
    torch.manual_seed(5)
    sorted_by_class = torch.argsort(data[1])[:40 * 16].view(40, 16)  # class after class, as stored in a file
    repeats = torch.randint(0, 50, (40, 100))  # 100 draws from 50 examples: a batch larger than they are
    orders = torch.stack([sorted_by_class, torch.randint(0, len(data[0]), (40, 16))])
    cfg = replace(SHORT, num_steps=40, eval_every=20)
    hist = train_many(MLP, data, [0.1], [0, 1], cfg, orders=orders)
    for i in range(2):
        ref, _ = reference_on_orders(make_model(i), data, orders[i], 0.1)
        np.testing.assert_allclose(hist.train_loss[i], ref, rtol=1e-5, atol=1e-5)
    hist = train_many(MLP, data, [0.1], [0], replace(cfg, num_steps=30), orders=repeats)  # 2-D: every run
    ref, _ = reference_on_orders(make_model(0), data, repeats[:30], 0.1)  # the first num_steps batches
    np.testing.assert_allclose(hist.train_loss[0], ref, rtol=1e-5, atol=1e-5)


def test_orders_of_the_librarys_own_shuffle_give_the_same_runs_bit_for_bit(data):
    cfg = replace(SHORT, num_steps=30, eval_every=10, momentum=0.9)
    own = train_many(MLP, data, [0.05, 0.2], [0, 3], cfg)
    orders = torch.stack([_batch_order(len(data[0]), cfg.batch_size, cfg.num_steps, s) for s in [0, 3] * 2])
    given = train_many(MLP, data, [0.05, 0.2], [0, 3], cfg, orders=orders)
    assert_same_history(own, given, rtol=0, atol=0)
    assert all(torch.equal(own.params[k], given.params[k]) for k in own.params)


def test_clipped_training_matches_clip_grad_norm_and_logs_the_norm_before_clipping(data):
    cfg = replace(SHORT, lr=0.5, batch_size=4, num_steps=40, eval_every=40, clip_norm=1.0)
    model, ref_model = make_model(), make_model()
    hist = train(model, data, cfg)
    order = _batch_order(len(data[0]), 4, 40, 0)
    ref, ref_norms = reference_on_orders(ref_model, data, order, 0.5, clip_norm=1.0)
    assert (ref_norms > 1.0).mean() > 0.5  # most steps are clipped: the test discriminates
    np.testing.assert_allclose(hist.train_loss, ref, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(hist.grad_norm, ref_norms, rtol=1e-4, atol=1e-5)
    for p, q in zip(model.parameters(), ref_model.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5)


def test_infinite_clip_norm_logs_the_norms_and_changes_nothing(data):
    cfg = replace(SHORT, num_steps=30, eval_every=10, optimizer="adam")
    plain = train_many(MLP, data, [1e-3, 1e-2], [0], cfg)
    logged = train_many(MLP, data, [1e-3, 1e-2], [0], replace(cfg, clip_norm=float("inf")))
    assert_same_history(plain, logged, rtol=0, atol=0)
    assert plain.grad_norm is None and logged.grad_norm.shape == (2, 30) and np.isfinite(logged.grad_norm).all()


def test_clipping_keeps_a_learning_rate_that_diverges_without_it_finite(data):
    cfg = replace(SHORT, lr=50.0, num_steps=60, eval_every=20)
    assert train_many(MLP, data, [50.0], [0], cfg).diverged.all()
    clipped = train_many(MLP, data, [50.0], [0], replace(cfg, clip_norm=1e-3))
    assert not clipped.diverged.any() and np.all(clipped.grad_norm > 1e-3)


@pytest.mark.parametrize("orders, error, match", [
    (np.zeros((3, 4), dtype=np.int64), TypeError, "orders must be a torch.long tensor"),
    (torch.zeros(3, 4), TypeError, "orders must be a torch.long tensor"),
    (torch.zeros(4, dtype=torch.long), TypeError, "orders must be a torch.long tensor"),
    (torch.zeros(2, 3, 4, dtype=torch.long), ValueError, "orders must hold 1 runs"),
    (torch.zeros(2, 4, dtype=torch.long), ValueError, "at least num_steps = 3"),
    (torch.full((3, 4), 20, dtype=torch.long), ValueError, "orders must index the 20 training examples"),
    (torch.full((3, 4), -1, dtype=torch.long), ValueError, "orders must index"),
])
def test_bad_orders_raise(small_data, orders, error, match):
    with pytest.raises(error, match=match):
        train_many(MLP, small_data, [0.1], [0], replace(SHORT, num_steps=3), orders=orders)


def test_orders_with_a_batch_schedule_raise(small_data):
    cfg = replace(SHORT, num_steps=3, batch_schedule=lambda step: 4)
    with pytest.raises(ValueError, match="batch_schedule must be None"):
        train_many(MLP, small_data, [0.1], [0], cfg, orders=torch.zeros(3, 4, dtype=torch.long))


@pytest.mark.parametrize("clip_norm", [0.0, -1.0, float("nan"), "1", True])
def test_bad_clip_norm_raises(small_data, clip_norm):
    with pytest.raises(ValueError, match="clip_norm"):
        train_many(MLP, small_data, [0.1], [0], replace(SHORT, batch_size=4, num_steps=2, clip_norm=clip_norm))


def test_data_of_the_wrong_form_dtype_or_labels_raise_clearly(small_data):
    """Checked before training: data not (X_train, y_train, X_test, y_test), float64 inputs for a float32 model,
    and labels outside the model's classes (a raw IndexError of cross-entropy before)."""
    X, y, X_test, y_test = small_data
    cfg = replace(SHORT, batch_size=4, num_steps=2, eval_every=1)
    for run in (lambda d: train(MLP(), d, cfg), lambda d: train_many(MLP, d, [0.1], [0], cfg)):
        with pytest.raises(TypeError, match=r"data must be a tuple \(X_train, y_train, X_test, y_test\).*a tuple of 2"):
            run((X, y))
        with pytest.raises(TypeError, match="data must be a tuple .* got Tensor"):
            run(X)
        with pytest.raises(TypeError, match="X has dtype torch.float64 but the model's parameters are torch.float32"):
            run((X.double(), y, X_test.double(), y_test))
        with pytest.raises(ValueError, match=r"class labels must lie in 0..9 for the model's 10 outputs, got labels "
                                             r"from 1\d to 1\d"):
            run((X, y + 10, X_test, y_test + 10))


def test_evaluate_gives_the_logged_evaluation_and_recall_counts_each_class(data):
    X_test, y_test = data[2:]
    hist = train_many(MLP, data, [0.05, 0.2], [0, 1], replace(SHORT, num_steps=30, eval_every=30))
    loss, acc = evaluate(MLP(), hist.params, X_test, y_test)
    assert np.array_equal(loss, hist.test_loss[:, -1]) and np.array_equal(acc, hist.test_acc[:, -1])
    pred, recall = predict(MLP(), hist.params, X_test), recall_per_class(MLP(), hist.params, X_test, y_test)
    assert pred.shape == (4, len(X_test)) and recall.shape == (4, 10)
    for i in range(4):
        model = MLP()
        with torch.no_grad():
            for name, p in model.named_parameters():
                p.copy_(hist.params[name][i])
            ref_pred = model(X_test).argmax(-1)
        assert torch.equal(pred[i], ref_pred)
        for k in range(10):
            assert recall[i, k] == pytest.approx((ref_pred[y_test == k] == k).double().mean().item())
        assert (recall[i] * np.bincount(y_test, minlength=10)).sum() / len(y_test) == pytest.approx(acc[i])
    absent = recall_per_class(MLP(), hist.params, X_test[y_test != 3], y_test[y_test != 3])
    assert np.isnan(absent[:, 3]).all() and not np.isnan(absent[:, [0, 1, 2, 4]]).any()


def test_evaluate_with_bad_arguments_raises(small_data):
    X, y, _, _ = small_data
    params = stacked(0, num_runs=2)
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        evaluate(lambda x: x, params, X, y)
    with pytest.raises(ValueError, match="params must map each parameter name"):
        predict(MLP(), {k: v for k, v in params.items() if k != "0.bias"}, X)
    with pytest.raises(ValueError, match="params must map each parameter name"):
        predict(MLP(hidden=(50, 100)), params, X)
    with pytest.raises(ValueError, match="same number of runs"):
        predict(MLP(), {**params, "0.bias": params["0.bias"][:1]}, X)
    with pytest.raises(TypeError, match="y must hold integer class labels"):
        recall_per_class(MLP(), params, X, y.float())
    with pytest.raises(ValueError, match="same number of examples"):
        evaluate(MLP(), params, X, y[:-1])
    with pytest.raises(TypeError, match="X must be a torch.Tensor"):
        predict(MLP(), params, X.numpy())


def test_sweep_keeps_each_runs_gradient_norms_in_grid_order(data):
    from batchsize.train import sweep
    lrs, cfg = 0.01 * 3.0 ** np.arange(6), replace(SHORT, num_steps=40, clip_norm=float("inf"))
    res = sweep(MLP, data, [16, 256], lrs, seeds=[0], cfg=cfg, lr_window=(1.0, 1.0))  # widens: several calls
    assert res.trained[1].sum() >= 2
    for i, b in enumerate([16, 256]):
        tried = lrs[res.trained[i]]
        ref = train_many(MLP, data, tried, [0], replace(cfg, batch_size=b, eval_every=40, progress=False))
        np.testing.assert_array_equal(res.histories[i].grad_norm, ref.grad_norm)


def test_stop_rule_stops_the_runs_it_names_with_the_parameters_they_reached(data):
    cfg = TrainConfig(batch_size=32, num_steps=60, eval_every=5, progress=False, target=0.0, target_metric="test_loss")
    calls = []

    def rule(reached):
        calls.append(reached.copy())
        return np.array([False, len(calls) >= 3])  # stop run 1 at the third evaluation (step 10)

    hist = train_many(make_model, data, [0.05], [0, 1], cfg, stop_rule=rule)
    alone = train_many(make_model, data, [0.05], [0, 1], replace(cfg, num_steps=10, target=None))
    assert np.isnan(hist.train_loss[1, 10:]).all() and np.isfinite(hist.train_loss[0]).all()
    for k in hist.params:
        torch.testing.assert_close(hist.params[k][1], alone.params[k][1])
    assert not hist.diverged.any() and (hist.reached_at == -1).all()
    with pytest.raises(ValueError, match="stop_rule"):
        train_many(make_model, data, [0.05], [0], replace(cfg, target=None), stop_rule=rule)
    with pytest.raises(ValueError, match="one bool per run"):
        train_many(make_model, data, [0.05], [0, 1], cfg, stop_rule=lambda reached: np.array([True]))


# ---------------------------------------------------------------------------------------------------------------
# chapter 5 (language models): token sequences, TinyGPT, many runs against torch.optim.AdamW on separate models


from batchsize import seeding  # noqa: E402
from batchsize.models import TinyGPT  # noqa: E402
from batchsize.train import _adam_update_, _sgd_update_  # noqa: E402


def token_data(vocab_size=12, context=16, num_train=48, num_test=16, seed=0):
    """Random sequences with a rule to learn (each steps through the vocabulary by its own stride from a random
    start, one token in eight replaced at random): (X, y, X_test, y_test), y the next tokens, (N, context) each."""
    gen = torch.Generator().manual_seed(seed)
    n = num_train + num_test
    start, stride = torch.randint(vocab_size, (n, 1), generator=gen), torch.randint(1, 4, (n, 1), generator=gen)
    seq = (start + stride * torch.arange(context + 1)) % vocab_size
    noise = torch.rand(seq.shape, generator=gen) < 1 / 8
    seq[noise] = torch.randint(vocab_size, (int(noise.sum()),), generator=gen)
    return seq[:num_train, :-1], seq[:num_train, 1:], seq[num_train:, :-1], seq[num_train:, 1:]


def tiny_gpt(dtype=torch.float32):
    return lambda: TinyGPT(12, 16, width=16, num_layers=2, num_heads=2).to(dtype)


def reference_tokens(model, data, cfg, optimizer):
    """torch.optim over the library's batches of sequences, the loss the mean over every token; per-step losses."""
    X, y, _, _ = data
    losses = []
    for idx in _batch_order(len(X), cfg.batch_size, cfg.num_steps, cfg.seed):
        optimizer.zero_grad()
        loss = F.cross_entropy(model(X[idx]).flatten(0, 1), y[idx].flatten())
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return np.array(losses)


TOKENS = TrainConfig(batch_size=4, num_steps=40, eval_every=20, optimizer="adamw", weight_decay=0.05, progress=False)


@pytest.mark.parametrize("optimizer", ["adamw", "adam", "sgd"])
def test_each_tinygpt_run_of_train_many_equals_torch_optim_on_its_own_model(optimizer):
    # float64: in float32, Adam's step, about lr * sign(g) where |g| << eps fails, turns rounding into differences
    # of a whole step (measured up to 0.1 in a parameter after 40 steps); in float64 they stay below 1e-8.
    data = token_data()
    lrs, betas, eps = [3e-2, 1e-2, 3e-3], [(0.8, 0.99), (0.6, 0.996), (0.0, 0.9)], [1e-6, 1e-4, 1e-2]
    cfg = replace(TOKENS, optimizer=optimizer, momentum=0.9 if optimizer == "sgd" else 0.0)
    per_lr = {} if optimizer == "sgd" else {"betas": betas, "eps": eps}
    lrs = [0.3, 0.1, 0.03] if optimizer == "sgd" else lrs
    hist = train_many(tiny_gpt(torch.float64), data, lrs, seeds=[0, 1], cfg=cfg, **per_lr)
    keys_dropped = torch.ones(3 * 16, dtype=torch.bool)
    keys_dropped[16:32] = False  # queries, keys, values: width 16 each
    assert hist.train_loss[:, -5:].mean() < hist.train_loss[:, :5].mean() - 0.1  # they learn something
    for k, lr in enumerate(lrs):
        for j, seed in enumerate([0, 1]):
            seeding.manual_seed(seed)
            model = tiny_gpt(torch.float64)()
            if optimizer == "sgd":
                opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=cfg.weight_decay)
            else:
                opt_cls = torch.optim.AdamW if optimizer == "adamw" else torch.optim.Adam
                opt = opt_cls(model.parameters(), lr=lr, betas=betas[k], eps=eps[k], weight_decay=cfg.weight_decay)
            ref = reference_tokens(model, data, replace(cfg, seed=seed), opt)
            np.testing.assert_allclose(hist.train_loss[2 * k + j], ref, rtol=1e-7, atol=1e-9)
            for name, p in model.named_parameters():
                got, want = hist.params[name][2 * k + j], p.detach()
                if name.endswith("qkv.bias"):  # the keys' bias has no gradient (a query's scores all shift by the
                    got, want = got[keys_dropped], want[keys_dropped]  # same amount): it moves by rounding alone
                torch.testing.assert_close(got, want, rtol=1e-7, atol=1e-8)


def test_tinygpt_rows_of_train_many_equal_train_alone_in_float32():
    data = token_data()
    cfg = replace(TOKENS, optimizer="adamw", num_steps=20, eval_every=10)
    hist = train_many(tiny_gpt(), data, [1e-2, 3e-3], seeds=[0, 1], cfg=cfg)
    for i, (lr, seed) in enumerate([(1e-2, 0), (1e-2, 1), (3e-3, 0), (3e-3, 1)]):
        seeding.manual_seed(seed)
        single = train(tiny_gpt()(), data, replace(cfg, lr=lr, seed=seed))
        assert_same_history(History(hist.train_loss[i], hist.train_acc[i], hist.eval_steps, hist.test_loss[i],
                                    hist.test_acc[i], hist.diverged[i], hist.diverged_at[i]), single)


def test_sequence_loss_and_accuracy_are_per_token():
    data = token_data()
    X, y, X_test, y_test = data
    cfg = replace(TOKENS, num_steps=1, eval_every=1)
    hist = train_many(tiny_gpt(), data, [1e-2], seeds=[3], cfg=cfg)
    seeding.manual_seed(3)
    model = tiny_gpt()()
    idx = _batch_order(len(X), cfg.batch_size, 1, seed=3)[0]
    with torch.no_grad():
        logits, test_logits = model(X[idx]), model(X_test)
    assert hist.train_loss[0, 0] == pytest.approx(F.cross_entropy(logits.flatten(0, 1), y[idx].flatten()).item(),
                                                  rel=1e-6)
    assert hist.train_acc[0, 0] == (logits.argmax(-1) == y[idx]).double().mean().item()  # over B x T tokens
    assert hist.test_loss[0, 0] == pytest.approx(F.cross_entropy(test_logits.flatten(0, 1), y_test.flatten()).item(),
                                                 rel=1e-6)
    assert hist.test_acc[0, 0] == (test_logits.argmax(-1) == y_test).double().mean().item()


def test_evaluate_and_predict_take_tinygpt_runs():
    data = token_data()
    hist = train_many(tiny_gpt(), data, [1e-2, 3e-3], [0], replace(TOKENS, num_steps=10, eval_every=10))
    loss, acc = evaluate(tiny_gpt()(), hist.params, *data[2:])
    np.testing.assert_allclose(loss, hist.test_loss[:, -1], rtol=1e-6)
    np.testing.assert_array_equal(acc, hist.test_acc[:, -1])
    assert predict(tiny_gpt()(), hist.params, data[2]).shape == (2, *data[2].shape)


@pytest.mark.filterwarnings("ignore:There is a performance drop")
def test_tinygpt_through_vmap_trains_as_through_its_own_stacked_forward():
    class VmappedGPT(TinyGPT):
        forward_stacked = None  # train_many falls back on torch.func.vmap over the model's own forward

    data = token_data()
    own = train_many(tiny_gpt(torch.float64), data, [1e-2, 3e-3], [0, 1], TOKENS)
    vmapped = train_many(lambda: VmappedGPT(12, 16, width=16, num_layers=2).double(), data, [1e-2, 3e-3], [0, 1],
                         TOKENS)
    assert_same_history(own, vmapped, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("momentum, weight_decay", [(0.0, 0.0), (0.9, 1e-2)])
def test_in_place_sgd_update_equals_the_pure_one_bit_for_bit(momentum, weight_decay):
    torch.manual_seed(0)
    p, v, lr = torch.randn(3, 50), torch.randn(3, 50), torch.tensor([[0.1], [0.01], [0.3]])
    for _ in range(3):
        g = torch.randn(3, 50)
        new, velocity = _sgd_update(p, g, v, lr, momentum, weight_decay)
        _sgd_update_(p, g.clone(), v, lr, momentum, weight_decay)
        assert torch.equal(p, new) and (not momentum or torch.equal(v, velocity))


@pytest.mark.parametrize("name, weight_decay", [("adam", 0.0), ("adam", 1e-2), ("adamw", 1e-1)])
def test_in_place_adam_update_equals_the_pure_one_bit_for_bit(name, weight_decay):
    torch.manual_seed(0)
    lr = torch.tensor([[1e-2], [3e-3], [1e-1]])
    for betas, eps in (([(0.9, 0.999)] * 3, [1e-8] * 3), ([(0.9, 0.999), (0.8, 0.99), (0.5, 0.9)], [1e-8, 1e-6, 1e-3])):
        p, m, v = torch.randn(3, 40), torch.zeros(3, 40), torch.zeros(3, 40)
        for t in range(1, 4):
            g = torch.randn(3, 40)
            coef = _adam_coefficients(np.array([b[0] for b in betas]), np.array([b[1] for b in betas]),
                                      np.array(eps), t, torch.float32)
            new = _adam_update(p, g, m, v, lr, coef, weight_decay, decoupled=name == "adamw")
            _adam_update_(p, g.clone(), m, v, lr, coef, weight_decay, decoupled=name == "adamw")
            assert all(torch.equal(a, b) for a, b in zip((p, m, v), new))


def test_flat_runs_update_and_drop_as_the_per_tensor_runs_do():
    torch.manual_seed(0)
    out = {k: v.detach() for k, v in torch.func.stack_module_state([tiny_gpt()() for _ in range(4)])[0].items()}
    cfg = replace(TOKENS, optimizer="adamw")
    lrs, betas, eps = [0.1, 0.2, 0.3, 0.4], [(0.9, 0.999), (0.8, 0.99), (0.7, 0.9), (0.6, 0.8)], [1e-8] * 4
    outs = {flat: {k: v.clone() for k, v in out.items()} for flat in (False, True)}
    runs = {flat: _Runs(outs[flat], lrs, betas, eps, torch.float32, flat=flat) for flat in (False, True)}
    grads = [[torch.randn(4, *v.shape[1:]) for v in out.values()] for _ in range(4)]
    for step in range(4):
        if step == 2:  # run 1 stops: the flat tensors are built again from the runs left
            for r in runs.values():
                r.drop(torch.tensor([False, True, False, False]))
        for r in runs.values():
            live = r.live
            r.update([g[live] for g in grads[step]], r.lr, cfg, step)
    for r in runs.values():
        r.write_back()
    for k in out:
        assert torch.equal(outs[True][k], outs[False][k]), k
        assert torch.equal(runs[True].state["exp_avg_sq"][k], runs[False].state["exp_avg_sq"][k]), k


BAD_TOKENS = [
    (lambda X, y: (X.float(), y), TypeError, "X(_test)? must hold token ids"),
    (lambda X, y: (X + 12, y), ValueError, r"token ids in \[0, vocab_size = 12\)"),
    (lambda X, y: (torch.cat([X, X[:, :1]], 1), torch.cat([y, y[:, :1]], 1)), ValueError, "context = 16"),
    (lambda X, y: (X, y[:, :-1]), ValueError, "one class label per output"),
    (lambda X, y: (X, y.float()), TypeError, "y(_test)? must hold integer class labels"),
]


@pytest.mark.parametrize("corrupt, error, match", BAD_TOKENS)
def test_bad_token_data_raise(corrupt, error, match):
    X, y, X_test, y_test = token_data()
    cfg = replace(TOKENS, num_steps=2)
    with pytest.raises(error, match=match):
        train_many(tiny_gpt(), (*corrupt(X, y), X_test, y_test), [1e-2], [0], cfg)
    with pytest.raises(error, match=match):
        train_many(tiny_gpt(), (X, y, *corrupt(X_test, y_test)), [1e-2], [0], cfg)


def test_tokens_for_a_model_of_real_inputs_and_noise_scale_of_tokens_raise():
    X, y, X_test, y_test = token_data()
    with pytest.raises(TypeError, match="X must be a floating-point"):
        train_many(MLP, (X, y[:, 0], X_test, y_test[:, 0]), [1e-2], [0], replace(TOKENS, num_steps=2))
    with pytest.raises(ValueError, match="noise_growth"):
        train_many(tiny_gpt(), (X, y, X_test, y_test), [1e-2], [0], replace(TOKENS, num_steps=2, noise_growth=2.0))


def test_evaluation_leaves_a_model_output_that_aliases_its_input_untouched():
    from batchsize.train import _evaluate
    X = torch.randn(2, 5, 10)  # the "logits" of a model that returns its input, 2 runs, 5 examples, 10 classes
    y = torch.tensor([0, 3, 9, 1, 1])
    before = X.clone()
    loss, acc = _evaluate(lambda params, x, shared=False: x, {}, X, y)
    assert torch.equal(X, before)
    expected = torch.nn.functional.cross_entropy(before.flatten(0, 1), y.repeat(2), reduction="none").view(2, 5)
    torch.testing.assert_close(loss, expected.mean(1))
