"""Tests for models.py"""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from batchsize.models import CNN1D, MLP, TinyGPT


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


@pytest.mark.parametrize("model", [MLP(), CNN1D(), TinyGPT(16, 8)], ids=["MLP", "CNN1D", "TinyGPT"])
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


# ---------------------------------------------------------------------------------------------------------------
# TinyGPT (chapter 5, language models): random tokens only


def tokens(*shape, vocab_size=16, seed=0):
    return torch.randint(vocab_size, shape, generator=torch.Generator().manual_seed(seed))


def test_tinygpt_maps_token_ids_to_next_token_logits_of_every_position():
    torch.manual_seed(0)
    model = TinyGPT(16, 32, width=32, num_layers=2, num_heads=4)
    assert model(tokens(5, 32)).shape == (5, 32, 16)
    assert model(tokens(3, 7)).shape == (3, 7, 16)  # shorter sequences than the context
    per_layer = 2 * 32 + (32 * 96 + 96) + (32 * 32 + 32) + 2 * 32 + (32 * 128 + 128) + (128 * 32 + 32)
    assert num_params(model) == 16 * 32 + 32 * 32 + 2 * per_layer + 2 * 32 + 16 * 32


def test_tinygpt_is_causal_position_t_sees_tokens_up_to_t_only():
    torch.manual_seed(0)
    model, x = TinyGPT(16, 12, num_layers=2), tokens(3, 12)
    with torch.no_grad():
        logits = model(x)
        for t in (0, 5, 10):
            changed = x.clone()
            changed[:, t + 1:] = (changed[:, t + 1:] + 1 + tokens(3, 11 - t, vocab_size=15, seed=t)) % 16
            other = model(changed)
            torch.testing.assert_close(other[:, :t + 1], logits[:, :t + 1], rtol=1e-5, atol=1e-6)
            assert (other[:, t + 1:] - logits[:, t + 1:]).abs().amax((0, 2)).min() > 1e-4  # later positions do see it


def test_each_sequences_logits_depend_only_on_that_sequence():
    torch.manual_seed(0)
    model, x = TinyGPT(16, 10), tokens(6, 10)
    with torch.no_grad():
        torch.testing.assert_close(model(x), torch.cat([model(x[i:i + 1]) for i in range(6)]), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("vocab_size", [16, 256])
def test_tinygpt_loss_at_initialisation_is_close_to_log_vocabulary(vocab_size):
    # nanoGPT's init (std 0.02, no head bias) after a LayerNorm makes every logit about N(0, sigma^2), sigma =
    # 0.02 sqrt(width) = 0.11, so the loss exceeds ln(V) by about sigma^2 / 2 = 0.006. Over 20 seeds at these
    # 2048 tokens the excess was 0.005 to 0.007 on average, with a standard deviation of 0.002 (at V = 16, 64, 256):
    # the tolerance, 0.02, is the expected excess plus six of those.
    torch.manual_seed(0)
    model = TinyGPT(vocab_size, 32, width=32)
    x, y = tokens(64, 32, vocab_size=vocab_size), tokens(64, 32, vocab_size=vocab_size, seed=1)
    with torch.no_grad():
        logits = model(x)
    loss = F.cross_entropy(logits.flatten(0, 1), y.flatten()).item()
    assert abs(loss - math.log(vocab_size)) < 0.02
    assert 0.5 < logits.std().item() / (0.02 * math.sqrt(32)) < 2


def test_tinygpt_initialisation_follows_nanogpt():
    torch.manual_seed(0)
    model = TinyGPT(64, 32, width=64, num_layers=2)
    for name, p in model.named_parameters():
        if name.endswith("bias"):
            assert (p == 0).all(), name
        elif name.startswith(("ln", "blocks.0.ln", "blocks.1.ln")):
            assert (p == 1).all(), name
        else:  # residual projections are scaled down by sqrt(2 num_layers), as GPT-2 does
            std = 0.02 / 2 if name.endswith(("proj.weight", "out.weight")) else 0.02
            assert p.std().item() == pytest.approx(std, rel=0.1), name
    assert model.head.bias is None


def test_tinygpt_overfits_one_batch():
    # Four random sequences with different first tokens: every position's next token is a function of the tokens up
    # to it, so a model that can attend to them can drive the loss to zero on this batch.
    torch.manual_seed(0)
    model = TinyGPT(16, 16)
    seq = tokens(4, 17, seed=1)
    seq[:, 0] = torch.tensor([3, 7, 11, 14])
    x, y = seq[:, :-1], seq[:, 1:]
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(300):
        opt.zero_grad()
        loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
        loss.backward()
        opt.step()
    assert loss.item() < 0.01 < math.log(16)
    assert torch.equal(model(x).argmax(-1), y)


def test_forward_stacked_equals_each_runs_forward_and_vmap():
    torch.manual_seed(0)
    runs = [TinyGPT(16, 12, num_layers=2) for _ in range(3)]
    params = {k: v.detach() for k, v in torch.func.stack_module_state(runs)[0].items()}
    own, shared = tokens(3, 5, 12), tokens(5, 9, seed=1)
    vmapped = torch.func.vmap(lambda p, x: torch.func.functional_call(runs[0], p, (x,)))
    with torch.no_grad():
        with pytest.warns(UserWarning, match="performance drop"):  # vmap loops over the runs in SDPA
            via_vmap = vmapped(params, own)
        stacked = runs[0].forward_stacked(params, own)
        for i, model in enumerate(runs):
            torch.testing.assert_close(stacked[i], model(own[i]), rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(via_vmap[i], model(own[i]), rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(runs[0].forward_stacked(params, shared)[i], model(shared), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="one row per run"):
        runs[0].forward_stacked(params, own[:2])


@pytest.mark.parametrize("x, error, match", [
    (torch.rand(2, 8), TypeError, "integer token ids"),
    (torch.randint(16, (2, 8)).int(), TypeError, "integer token ids"),
    (torch.full((2, 8), 16), ValueError, r"token ids in \[0, vocab_size = 16\)"),
    (torch.full((2, 8), -1), ValueError, "token ids in"),
    (torch.zeros(2, 9, dtype=torch.long), ValueError, "context = 8"),
    (torch.zeros(2, 0, dtype=torch.long), ValueError, "1 <= T"),
    (torch.zeros(8, dtype=torch.long), ValueError, r"shape \(batch, T\)"),
    (torch.zeros(2, 3, 4, dtype=torch.long), ValueError, r"shape \(batch, T\)"),
    ([[0, 1]], TypeError, "torch.Tensor"),
])
def test_tinygpt_rejects_bad_tokens(x, error, match):
    with pytest.raises(error, match=match):
        TinyGPT(16, 8)(x)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"vocab_size": 0, "context": 8}, ValueError, "vocab_size"),
    ({"vocab_size": 16, "context": 2.0}, TypeError, "context"),
    ({"vocab_size": 16, "context": 8, "width": 30, "num_heads": 4}, ValueError, "multiple of num_heads"),
    ({"vocab_size": 16, "context": 8, "num_layers": 0}, ValueError, "num_layers"),
])
def test_tinygpt_bad_sizes_raise(kwargs, error, match):
    with pytest.raises(error, match=match):
        TinyGPT(**kwargs)
