"""Tests for models.py"""
import pytest
import torch
from torch import nn

from batchsize.models import CNN1D, MLP


def num_params(model):
    return sum(p.numel() for p in model.parameters())


def has_no_batch_statistics(model):
    return (not any(isinstance(m, (nn.modules.batchnorm._BatchNorm, nn.modules.dropout._DropoutNd))
                    for m in model.modules())
            and not list(model.buffers()))


def test_mlp_parameter_count_is_40_100_100_10():
    assert num_params(MLP()) == 40 * 100 + 100 + 100 * 100 + 100 + 100 * 10 + 10 == 15210


def test_mlp_layer_sizes_follow_arguments():
    model = MLP(in_features=8, hidden=(16,), num_classes=3)
    linears = [m for m in model if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(8, 16), (16, 3)]
    assert isinstance(model[-1], nn.Linear)  # logits, no activation on the output
    assert num_params(model) == 8 * 16 + 16 + 16 * 3 + 3


def test_mlp_output_shape():
    assert MLP()(torch.randn(7, 40)).shape == (7, 10)


def test_cnn1d_parameter_count():
    # Three stride-2 convolutions take length 40 to 20, 10, 5; then a linear read-out from 32 * 5 features.
    expected = (32 * 1 * 3 + 32) + 2 * (32 * 32 * 3 + 32) + (32 * 5 * 10 + 10)
    assert num_params(CNN1D()) == expected == 7946


@pytest.mark.parametrize("shape", [(7, 40), (7, 1, 40)])
def test_cnn1d_output_shape_for_flat_and_channel_inputs(shape):
    assert CNN1D()(torch.randn(shape)).shape == (7, 10)


def test_cnn1d_gives_same_output_for_flat_and_channel_inputs():
    torch.manual_seed(0)
    model, X = CNN1D(), torch.randn(5, 40)
    torch.testing.assert_close(model(X), model(X[:, None, :]), rtol=0, atol=0)


def test_cnn1d_matches_plain_conv_stack_with_same_weights():
    torch.manual_seed(0)
    model, X = CNN1D(), torch.randn(6, 40)
    convs = [m for m in model if isinstance(m, nn.Conv1d)]
    h = X[:, None, :]
    for conv in convs:
        h = torch.relu(nn.functional.conv1d(h, conv.weight, conv.bias, stride=2, padding=1))
    linear = model[-1]
    torch.testing.assert_close(model(X), h.flatten(1) @ linear.weight.T + linear.bias)


def test_cnn1d_other_length():
    assert CNN1D(length=64)(torch.randn(3, 64)).shape == (3, 10)


@pytest.mark.parametrize("model", [MLP(), CNN1D()], ids=["MLP", "CNN1D"])
def test_models_have_no_batch_norm_or_dropout(model):
    assert has_no_batch_statistics(model)


@pytest.mark.parametrize("make", [MLP, CNN1D], ids=["MLP", "CNN1D"])
def test_each_output_depends_only_on_its_own_example(make):
    # Without batch statistics, an example's logits are the same alone, in a batch, in train or eval mode.
    torch.manual_seed(0)
    model, X = make(), torch.randn(6, 40)
    batch_out = model.train()(X)
    single = torch.cat([model(X[i:i + 1]) for i in range(6)])
    torch.testing.assert_close(batch_out, single, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(model.eval()(X), batch_out, rtol=0, atol=0)


@pytest.mark.parametrize("shape", [(4, 39), (4, 1, 41), (4, 40, 2), (40,)])
def test_cnn1d_rejects_inputs_of_wrong_length(shape):
    with pytest.raises(ValueError, match=r"CNN1D expects inputs of shape \(batch_size, 40\)"):
        CNN1D()(torch.randn(shape))


@pytest.mark.parametrize("shape", [(4, 2, 20), (4, 40, 1)])
def test_cnn1d_rejects_more_than_one_channel(shape):
    with pytest.raises(ValueError, match="CNN1D expects"):
        CNN1D()(torch.randn(shape))


@pytest.mark.parametrize("make, match", [
    (lambda: MLP(hidden=(100, 0)), "layer size"),
    (lambda: MLP(in_features=-1), "layer size"),
    (lambda: CNN1D(length=0), "length"),
    (lambda: CNN1D(channels=0), "channels"),
])
def test_bad_sizes_raise(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_mlp_with_batch_norm_normalises_with_the_batch_and_starts_as_the_hand_built_network():
    import torch
    from torch import nn
    from batchsize import models

    torch.manual_seed(0)
    model = models.MLP(batch_norm=True)
    torch.manual_seed(0)
    reference = nn.Sequential(nn.Linear(40, 100), nn.BatchNorm1d(100, track_running_stats=False), nn.ReLU(),
                              nn.Linear(100, 100), nn.BatchNorm1d(100, track_running_stats=False), nn.ReLU(),
                              nn.Linear(100, 10))
    assert [k for k, _ in model.named_parameters()] == [k for k, _ in reference.named_parameters()]
    for a, b in zip(model.parameters(), reference.parameters()):
        assert torch.equal(a, b)
    X = torch.randn(16, 40)
    model.eval()
    hidden = model[1](model[0](X))  # evaluation too normalises with the batch's own statistics
    assert torch.allclose(hidden.mean(0), torch.zeros(100), atol=1e-5)
    with pytest.raises(TypeError, match="batch_norm"):
        models.MLP(batch_norm="yes")
