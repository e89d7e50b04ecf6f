"""Tests for steps.py"""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from batchsize import models, steps


def data(num_examples=24, in_features=40, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(num_examples, in_features, generator=g, dtype=dtype)
    return X, torch.randint(10, (num_examples,), generator=g)


def mlp(seed=0):
    torch.manual_seed(seed)
    return models.MLP().double()


def reference_gradient(model, X, y):
    """The reference: the gradient of the mean loss over the whole batch by torch.autograd.grad, in float64."""
    params = [p for p in model.parameters() if p.requires_grad]
    grads = torch.autograd.grad(F.cross_entropy(model(X), y), params)
    return torch.cat([g.reshape(-1) for g in grads])


# ---------------------------------------------------------------------------------------------------------------
# flattening and micro-batches


def test_flat_grad_concatenates_trainable_gradients_in_order_with_zeros_for_none():
    model = nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 2))
    model[0].bias.requires_grad_(False)  # frozen: left out
    model[0].weight.grad = torch.ones(2, 3)
    model[1].bias.grad = torch.full((2,), 2.0)  # model[1].weight.grad stays None: zeros
    expected = torch.cat([torch.ones(6), torch.zeros(4), torch.full((2,), 2.0)])
    torch.testing.assert_close(steps.flat_grad(model), expected)


def test_flatten_grads_matches_a_concatenation_and_fills_none_with_zeros():
    params = [torch.zeros(2, 3), torch.zeros(4)]
    grads = [torch.arange(6.0).view(2, 3), None]
    torch.testing.assert_close(steps.flatten_grads(grads, params), torch.cat([torch.arange(6.0), torch.zeros(4)]))


def test_trainable_parameters_reject_a_frozen_model():
    model = nn.Linear(3, 2).requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        steps.trainable_parameters(model)
    with pytest.raises(ValueError, match="no trainable parameters"):
        steps.flat_grad(model)


@pytest.mark.parametrize("num_examples, num_micro_batches", [(24, 1), (24, 5), (7, 7), (10, 3)])
def test_micro_batches_cover_every_example_once_in_near_equal_slices(num_examples, num_micro_batches):
    slices = steps.micro_batches(num_examples, num_micro_batches)
    assert len(slices) == num_micro_batches
    assert [i for s in slices for i in range(s.start, s.stop)] == list(range(num_examples))
    sizes = [s.stop - s.start for s in slices]
    assert max(sizes) - min(sizes) <= 1


def test_micro_batches_reject_bad_counts():
    with pytest.raises(ValueError, match="at most the number of examples"):
        steps.micro_batches(4, 5)
    with pytest.raises(ValueError, match="num_micro_batches"):
        steps.micro_batches(4, 0)
    with pytest.raises(TypeError, match="num_micro_batches"):
        steps.micro_batches(4, 2.0)


# ---------------------------------------------------------------------------------------------------------------
# accumulation against the full batch


@pytest.mark.parametrize("num_micro_batches", [1, 2, 3, 5, 24])
def test_accumulated_gradient_and_loss_equal_the_full_batch_ones(num_micro_batches):
    model = mlp()
    X, y = data()
    reference = reference_gradient(model, X, y)
    loss = steps.accumulate_gradients(model, X, y, num_micro_batches)  # 24 / 5: slices of 4 and 5
    torch.testing.assert_close(steps.flat_grad(model), reference, rtol=1e-12, atol=1e-14)
    with torch.no_grad():
        assert loss == pytest.approx(float(F.cross_entropy(model(X), y)), rel=1e-12)


def test_accumulation_adds_to_existing_gradients():
    model = mlp()
    X, y = data()
    steps.accumulate_gradients(model, X, y, 4)
    first = steps.flat_grad(model).clone()
    steps.accumulate_gradients(model, X, y, 3)
    torch.testing.assert_close(steps.flat_grad(model), 2 * first, rtol=1e-12, atol=1e-14)


def test_accumulation_with_a_custom_loss_and_a_hook_before_each_micro_batch():
    model = mlp()
    X, y = data()
    calls = []
    loss = steps.accumulate_gradients(model, X, y, 3, loss_fn=lambda out, target: out.square().mean(),
                                      before_micro_batch=lambda: calls.append(1))
    assert len(calls) == 3
    params = list(model.parameters())
    expected = torch.cat([g.reshape(-1) for g in torch.autograd.grad(model(X).square().mean(), params)])
    torch.testing.assert_close(steps.flat_grad(model), expected, rtol=1e-12, atol=1e-14)
    with torch.no_grad():
        assert loss == pytest.approx(float(model(X).square().mean()), rel=1e-12)


def test_autocast_runs_the_forward_pass_in_bfloat16():
    torch.manual_seed(0)
    model = models.MLP()
    X, y = data(8, dtype=torch.float32)
    seen = []

    def loss_fn(out, target):
        seen.append(out.dtype)
        return F.cross_entropy(out.float(), target)

    steps.accumulate_gradients(model, X, y, loss_fn=loss_fn, autocast_dtype=torch.bfloat16)
    assert seen == [torch.bfloat16]
    assert all(p.grad.dtype == torch.float32 for p in model.parameters())
    with steps.autocast("cpu", None):
        assert not torch.is_autocast_enabled("cpu")


# ---------------------------------------------------------------------------------------------------------------
# one step against a hand-written update


@pytest.mark.parametrize("num_micro_batches", [1, 3])
def test_sgd_step_equals_the_hand_written_update(num_micro_batches):
    model = mlp()
    X, y = data()
    before = [p.detach().clone() for p in model.parameters()]
    grads = torch.autograd.grad(F.cross_entropy(model(X), y), list(model.parameters()))
    result = steps.training_step(model, X, y, torch.optim.SGD(model.parameters(), lr=0.5),
                                 num_micro_batches=num_micro_batches)
    assert result is None  # the step does not wait for the device to read the loss
    for p, p0, g in zip(model.parameters(), before, grads):
        torch.testing.assert_close(p.detach(), p0 - 0.5 * g, rtol=1e-12, atol=1e-14)
    assert all(p.grad is None for p in model.parameters())  # gradients freed after the step


def test_adam_first_step_equals_the_hand_written_update():
    # Adam's first step: m = (1 - b1) g, v = (1 - b2) g^2; bias-corrected, p - lr g / (|g| + eps)
    model = mlp()
    X, y = data()
    before = [p.detach().clone() for p in model.parameters()]
    grads = torch.autograd.grad(F.cross_entropy(model(X), y), list(model.parameters()))
    steps.training_step(model, X, y, torch.optim.Adam(model.parameters(), lr=1e-2, eps=1e-8))
    for p, p0, g in zip(model.parameters(), before, grads):
        torch.testing.assert_close(p.detach(), p0 - 1e-2 * g / (g.abs() + 1e-8), rtol=1e-10, atol=1e-12)


def test_step_without_optimizer_leaves_the_parameters_and_frees_the_gradients():
    model = mlp()
    before = [p.detach().clone() for p in model.parameters()]
    steps.training_step(model, *data(), num_micro_batches=2)
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), before))
    assert all(p.grad is None for p in model.parameters())


def test_step_frees_the_gradients_when_a_micro_batch_fails():
    model = mlp()
    X, y = data()
    calls = []

    def loss_fn(out, target):
        calls.append(1)
        if len(calls) == 2:
            raise torch.OutOfMemoryError("out of memory (simulated, second micro-batch)")
        return F.cross_entropy(out, target)

    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(torch.OutOfMemoryError):
        steps.training_step(model, X, y, opt, loss_fn=loss_fn, num_micro_batches=3)
    assert all(p.grad is None for p in model.parameters())  # the first micro-batch's gradients are gone
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), before))  # and no update happened


# ---------------------------------------------------------------------------------------------------------------
# argument errors


@pytest.mark.parametrize("fn", [steps.accumulate_gradients, steps.training_step])
def test_steps_reject_bad_arguments_with_clear_errors(fn):
    model, (X, y) = mlp(), data(4)
    with pytest.raises(TypeError, match="model must be a torch.nn.Module, got function"):
        fn(lambda x: x, X, y)
    with pytest.raises(TypeError, match="X must be a torch.Tensor"):
        fn(model, X.numpy(), y)
    with pytest.raises(ValueError, match="same number of examples"):
        fn(model, X, y[:3])
    with pytest.raises(ValueError, match="num_micro_batches must be at most the number of examples"):
        fn(model, X, y, num_micro_batches=5)
    with pytest.raises(TypeError, match="loss_fn must be None or a callable"):
        fn(model, X, y, loss_fn="cross_entropy")
    with pytest.raises(ValueError, match="class labels must lie in 0..9 for the model's 10 outputs"):
        fn(model, X, y - 20)
    with pytest.raises(TypeError, match="before_micro_batch must be None or a callable"):
        fn(model, X, y, before_micro_batch=1)


def test_training_step_rejects_an_optimizer_that_is_not_a_torch_optimizer():
    model, (X, y) = mlp(), data(4)
    with pytest.raises(TypeError, match="optimizer must be None or a torch.optim.Optimizer, got str"):
        steps.training_step(model, X, y, "sgd")
