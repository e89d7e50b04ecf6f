"""Tests for memory.py"""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from batchsize import memory, models

FLOAT = 4  # bytes of a float32
TARGET = 8  # bytes of an int64 class label
LOSS_SCALAR = 4  # nll_loss saves its total weight, a float32 scalar


def mlp_hand_count(batch_size, sizes, saved_per_hidden=1):
    """Bytes saved by a ReLU MLP, counted by hand: the input, each hidden activation (saved once, shared by the
    activation and the next layer), the log-softmax output, the target and the loss's scalar."""
    in_features, *hidden, num_classes = sizes
    floats = in_features + saved_per_hidden * sum(hidden) + num_classes
    return (floats * FLOAT + TARGET) * batch_size + LOSS_SCALAR


def batch(batch_size, in_features=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch_size, in_features, generator=g), torch.randint(10, (batch_size,), generator=g)


# ---------------------------------------------------------------------------------------------------------------
# activation_bytes against hand counts


@pytest.mark.parametrize("sizes", [(40, 100, 100, 10), (784, 512, 512, 10), (7, 3, 10)])
@pytest.mark.parametrize("batch_size", [1, 2, 17, 64])
def test_activation_bytes_match_hand_count_of_relu_mlp(sizes, batch_size):
    model = models.MLP(sizes[0], sizes[1:-1], sizes[-1])
    X, y = batch(batch_size, sizes[0])
    assert memory.activation_bytes(model, X, y) == mlp_hand_count(batch_size, sizes)


def test_activation_bytes_of_the_784_512_512_10_mlp_are_7280_per_example_plus_4():
    model = models.MLP(784, (512, 512), 10)
    for batch_size in (1, 64, 300):
        assert memory.activation_bytes(model, *batch(batch_size, 784)) == 7280 * batch_size + 4


def test_gelu_saves_its_input_and_its_output():
    # GELU's backward needs its input (the linear output); the next layer saves GELU's output: two per layer.
    model = nn.Sequential(nn.Linear(784, 512), nn.GELU(), nn.Linear(512, 512), nn.GELU(), nn.Linear(512, 10))
    for batch_size in (1, 64):
        expected = mlp_hand_count(batch_size, (784, 512, 512, 10), saved_per_hidden=2)
        assert expected == 11376 * batch_size + 4
        assert memory.activation_bytes(model, *batch(batch_size, 784)) == expected


def test_cnn_activation_bytes_match_hand_count():
    # input 40, three ReLU outputs 32x20, 32x10, 32x5 (each saved by ReLU and the next layer), log-softmax 10
    model = models.CNN1D()
    floats = 40 + 32 * (20 + 10 + 5) + 10
    for batch_size in (1, 3, 64):
        expected = (floats * FLOAT + TARGET) * batch_size + LOSS_SCALAR
        assert memory.activation_bytes(model, *batch(batch_size)) == expected


def test_activation_bytes_are_affine_in_batch_size_for_a_model_with_batch_norm():
    model = nn.Sequential(nn.Linear(40, 64), nn.BatchNorm1d(64), nn.ReLU(), nn.Linear(64, 10))
    counts = [memory.activation_bytes(model, *batch(b)) for b in (2, 3, 4, 10)]
    slope = counts[1] - counts[0]
    assert slope > 0
    assert all(c == counts[0] + slope * (b - 2) for c, b in zip(counts, (2, 3, 4, 10)))


def test_activation_bytes_dedupe_counts_fewer_than_counting_every_saved_tensor():
    model = models.MLP(784, (512, 512), 10)
    X, y = batch(64, 784)
    naive = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: naive.append(t.untyped_storage().nbytes()) or t,
                                                  lambda t: t):
        F.cross_entropy(model(X), y)
    assert memory.activation_bytes(model, X, y) < sum(naive)


def test_activation_bytes_on_the_meta_device_equal_real_ones():
    with torch.device("meta"):
        model = models.MLP(784, (512, 512), 10)
        X, y = torch.randn(32, 784), torch.randint(10, (32,))
    assert memory.activation_bytes(model, X, y) == 7280 * 32 + 4


def test_activation_bytes_leave_gradients_untouched():
    model = models.MLP()
    memory.activation_bytes(model, *batch(8))
    assert all(p.grad is None for p in model.parameters())


def test_activation_bytes_with_a_custom_loss():
    model = nn.Linear(5, 1)
    X = torch.randn(6, 5)
    y = torch.randn(6, 1)
    # mse_loss saves its input (the linear output) and the target: 6 floats each; addmm saves X: 30 floats
    assert memory.activation_bytes(model, X, y, loss_fn=F.mse_loss) == (30 + 6 + 6) * FLOAT


def test_activation_bytes_reject_bad_input():
    with pytest.raises(TypeError, match="model"):
        memory.activation_bytes("mlp", *batch(4))
    with pytest.raises(ValueError, match="same number"):
        memory.activation_bytes(models.MLP(), torch.randn(4, 40), torch.zeros(3, dtype=torch.long))


# ---------------------------------------------------------------------------------------------------------------
# state_bytes against a real optimizer after one step


def measured_state_bytes(model, optimizer):
    """Bytes of every parameter, gradient and optimizer-state tensor after one real optimizer step."""
    opt = {"sgd": lambda p: torch.optim.SGD(p, lr=0.1),
           "momentum": lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9),
           "adam": lambda p: torch.optim.Adam(p, lr=1e-3)}[optimizer](model.parameters())
    F.cross_entropy(model(torch.randn(4, 40)), torch.randint(10, (4,))).backward()
    opt.step()
    tensors = [*model.parameters(), *(p.grad for p in model.parameters() if p.grad is not None)]
    tensors += [v for state in opt.state.values() for v in state.values() if isinstance(v, torch.Tensor)]
    return sum(t.untyped_storage().nbytes() for t in tensors)


@pytest.mark.parametrize("optimizer", memory.OPTIMIZERS)
@pytest.mark.parametrize("make_model", [models.MLP, models.CNN1D])
def test_state_bytes_match_a_real_optimizer(make_model, optimizer):
    assert memory.state_bytes(make_model(), optimizer) == measured_state_bytes(make_model(), optimizer)


def test_state_bytes_count_frozen_parameters_once():
    model = models.MLP()
    model[0].weight.requires_grad_(False)
    frozen = model[0].weight.numel() * FLOAT
    # no gradient, no two Adam buffers and no step counter (a float32 scalar) for the frozen weight
    assert memory.state_bytes(model, "adam") == memory.state_bytes(models.MLP(), "adam") - 3 * frozen - 4
    assert memory.state_bytes(model, "adam") == measured_state_bytes(model, "adam")


def test_state_bytes_reject_unknown_optimizer():
    with pytest.raises(ValueError, match="optimizer"):
        memory.state_bytes(models.MLP(), "lbfgs")
