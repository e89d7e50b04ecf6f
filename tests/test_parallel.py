"""Tests for parallel.py"""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from batchsize import grads, models, parallel, steps


def data(num_examples=24, in_features=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(num_examples, in_features, generator=g), torch.randint(10, (num_examples,), generator=g)


def full_batch_gradient(model, X, y):
    """The reference: one backward pass of the mean loss over the whole batch."""
    model.zero_grad(set_to_none=True)
    F.cross_entropy(model(X), y).backward()
    grad = steps.flat_grad(model).clone()
    model.zero_grad(set_to_none=True)
    return grad


# ---------------------------------------------------------------------------------------------------------------
# accumulation against the full batch


@pytest.mark.parametrize("num_micro_batches", [1, 2, 3, 5, 24])
def test_accumulated_gradient_equals_full_batch_gradient(num_micro_batches):
    torch.manual_seed(0)
    model = models.MLP().double()
    X, y = data()
    X = X.double()
    reference = full_batch_gradient(model, X, y)
    accumulated = parallel.accumulated_gradient(model, X, y, num_micro_batches)  # 24/5: slices of 5 and 4
    torch.testing.assert_close(accumulated, reference, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(accumulated, grads.mean_gradient(model, X, y), rtol=1e-12, atol=1e-14)


def test_batch_norm_breaks_accumulation_and_group_norm_does_not():
    X, y = data(64)
    torch.manual_seed(0)
    bn = nn.Sequential(nn.Linear(40, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 10))
    torch.manual_seed(0)
    gn = nn.Sequential(nn.Linear(40, 32), nn.GroupNorm(4, 32), nn.ReLU(), nn.Linear(32, 10))
    assert parallel.relative_error(parallel.accumulated_gradient(bn, X, y, 4), full_batch_gradient(bn, X, y)) > 0.05
    assert parallel.relative_error(parallel.accumulated_gradient(gn, X, y, 4), full_batch_gradient(gn, X, y)) < 1e-5


def test_accumulation_rejects_more_micro_batches_than_examples():
    with pytest.raises(ValueError, match="num_micro_batches"):
        parallel.accumulated_gradient(models.MLP(), *data(4), 5)


# ---------------------------------------------------------------------------------------------------------------
# the per-token loss trap


def token_reference_gradient(model, X, y, mask):
    """Reference: the mean loss over every real token of the batch, from a plain loop over tokens in float64."""
    model.zero_grad(set_to_none=True)
    losses = [F.cross_entropy(model(X[i, t:t + 1]), y[i, t:t + 1])
              for i in range(len(X)) for t in range(X.shape[1]) if mask[i, t]]
    (sum(losses) / len(losses)).backward()
    grad = steps.flat_grad(model).clone()
    model.zero_grad(set_to_none=True)
    return grad


def test_token_task_has_variable_lengths_and_zero_padding():
    X, y, mask = parallel.make_token_task(num_sequences=50, max_len=10, seed=3)
    lengths = mask.sum(1)
    assert lengths.min() >= 1 and lengths.max() <= 10 and len(set(lengths.tolist())) > 3
    assert torch.all(X[~mask] == 0) and torch.all(mask[:, :-1] >= mask[:, 1:])


def test_global_token_normalisation_is_exact_and_mean_of_means_is_not():
    X, y, mask = parallel.make_token_task(num_sequences=12, max_len=6, seed=1)
    X = X.double()
    torch.manual_seed(0)
    model = nn.Linear(8, 5).double()
    reference = token_reference_gradient(model, X, y, mask)
    for k in (1, 3, 12):
        exact = parallel.accumulated_token_gradient(model, X, y, mask, k, normalize="global")
        torch.testing.assert_close(exact, reference, rtol=1e-10, atol=1e-12)
    wrong = parallel.accumulated_token_gradient(model, X, y, mask, 12, normalize="per_micro_batch")
    assert parallel.relative_error(wrong, reference) > 0.01
    one = parallel.accumulated_token_gradient(model, X, y, mask, 1, normalize="per_micro_batch")
    torch.testing.assert_close(one, reference, rtol=1e-10, atol=1e-12)  # one micro-batch: the bug vanishes


def test_token_gradient_rejects_bad_arguments():
    X, y, mask = parallel.make_token_task(num_sequences=4, max_len=3)
    with pytest.raises(ValueError, match="normalize"):
        parallel.accumulated_token_gradient(nn.Linear(8, 5), X, y, mask, 2, normalize="sum")
    with pytest.raises(ValueError, match="mask"):
        parallel.accumulated_token_gradient(nn.Linear(8, 5), X, y, mask[:, :2], 2)
