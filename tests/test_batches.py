"""Tests for batches.py"""
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from batchsize import batches


def xy(n=50, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, 4, generator=gen), torch.randint(0, 3, (n,), generator=gen)


class Pairs(Dataset):
    """A map-style dataset of ({"a": x, "b": x + 1}, y) pairs: dict inputs, as a tokenizer would give."""

    def __init__(self, X, y):
        self.X, self.y = X, y

    def __len__(self):
        return len(self.X)

    def __getitem__(self, i):
        return {"a": self.X[i], "b": self.X[i] + 1}, self.y[i]


def test_every_form_of_data_gives_the_same_examples():
    """(X, y), a TensorDataset and an unshuffled DataLoader hold the same examples, split by the same seeded
    permutation into a training part and a held-out fifth; (X, y, X_test, y_test) keeps its own test part."""
    X, y = xy()
    forms = [(X, y), TensorDataset(X, y), DataLoader(TensorDataset(X, y), batch_size=7)]
    splits = [batches.examples(d, seed=3) for d in forms]
    for train, held in splits:
        assert len(train) == 40 and len(held) == 10
        assert torch.equal(train.inputs, splits[0][0].inputs) and torch.equal(held.targets, splits[0][1].targets)
    together = torch.cat([splits[0][0].inputs, splits[0][1].inputs])
    assert torch.equal(together.sort(0).values, X.sort(0).values)  # a partition of the examples
    train, held = batches.examples((X, y, X[:5], y[:5]))
    assert torch.equal(train.inputs, X) and torch.equal(held.targets, y[:5])
    big = torch.zeros(batches.MAX_HELD_OUT + 7, 4), torch.zeros(batches.MAX_HELD_OUT + 7, dtype=torch.long)
    assert len(batches.examples((X, y, *big))[1]) == batches.MAX_HELD_OUT  # a large test part: its first ones


def test_dict_inputs_are_indexed_moved_and_passed_as_keywords():
    X, y = xy(20)
    train, held = batches.examples(Pairs(X, y.double()))  # a Dataset of (dict, target) pairs
    assert set(train.inputs) == {"a", "b"} and len(train) == 16 and len(held) == 4
    inputs, _ = train.take(slice(0, 3))
    torch.testing.assert_close(inputs["b"], inputs["a"] + 1)
    moved = train.to("cpu", torch.float64)
    assert moved.inputs["a"].dtype == torch.float64 and moved.targets.dtype == torch.float64

    class TwoInputs(nn.Module):
        def forward(self, a, b):
            return a - b

    out = batches.call_model(TwoInputs(), inputs)
    torch.testing.assert_close(out, -torch.ones_like(out))
    torch.testing.assert_close(batches.call_model(TwoInputs(), (inputs["a"], inputs["b"])), out)  # a tuple: *args


def test_integer_inputs_keep_their_dtype():
    tokens = torch.randint(0, 8, (10, 5))
    ex = batches.Examples(tokens, tokens).to("cpu", torch.float64)
    assert ex.inputs.dtype == torch.long and ex.targets.dtype == torch.long


def test_mean_loss_is_cross_entropy_over_every_position_by_default():
    """(B, C) logits against (B,) labels and (B, T, V) against (B, T) tokens: the mean over every label."""
    logits, labels = torch.randn(6, 5, 3), torch.randint(0, 3, (6, 5))
    expected = nn.functional.cross_entropy(logits.reshape(-1, 3), labels.reshape(-1))
    torch.testing.assert_close(batches.mean_loss(logits, labels), expected)
    torch.testing.assert_close(batches.mean_loss(logits[:, 0], labels[:, 0]),
                               nn.functional.cross_entropy(logits[:, 0], labels[:, 0]))
    loss = batches.mean_loss({"logits": logits}, labels, lambda out, t: batches.mean_loss(out["logits"], t))
    torch.testing.assert_close(loss, expected)


@pytest.mark.parametrize("call, error, match", [
    (lambda: batches.examples(5), TypeError, r"data must be \(X, y\), \(X, y, X_test, y_test\), a torch.utils.data"),
    (lambda: batches.examples((1, 2)), TypeError, "inputs must be a tensor, a dict or a tuple of tensors, got int"),
    (lambda: batches.examples(xy(2)), ValueError, "at least 3 examples"),
    (lambda: batches.examples(DataLoader(xy()[0], batch_size=5)), TypeError, "each batch of the data must be a pair"),
    (lambda: batches.examples(xy(), max_examples=0), ValueError, "max_examples must be an integer >= 1"),
    (lambda: batches.Examples(torch.zeros(4, 2), torch.zeros(3)), ValueError, "same number of examples"),
    (lambda: batches.Examples({"a": torch.zeros(4), "b": torch.zeros(5)}, torch.zeros(4)), ValueError,
     "every tensor of inputs must hold the same number of examples"),
    (lambda: batches.mean_loss({"logits": torch.zeros(2, 3)}, torch.zeros(2, dtype=torch.long)), TypeError,
     "the model returned a dict, not a tensor of logits: give loss_fn"),
    (lambda: batches.mean_loss(torch.zeros(2, 3), torch.zeros(2)), TypeError, "integer class labels"),
    (lambda: batches.mean_loss(torch.zeros(2, 3), torch.zeros(2, 4, dtype=torch.long)), ValueError,
     r"logits of shape \(\*target.shape, num_classes\)"),
    (lambda: batches.mean_loss(torch.zeros(2, 3), torch.full((2,), 3)), ValueError, "class labels must lie in 0..2"),
    (lambda: batches.mean_loss(torch.zeros(2, 3), None, lambda o, t: torch.zeros(2)), ValueError,
     "must return the batch's mean loss as a scalar tensor, got \\(2,\\)"),
    (lambda: batches.check_labels(torch.zeros(2, 3), {"held-out": batches.Examples(torch.zeros(2, 1), torch.tensor(
        [0, 5]))}), ValueError, r"held-out labels must lie in 0..2 \(the model has 3 outputs\), got labels from 0 to 5"),
])
def test_bad_data_raises_clear_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()
