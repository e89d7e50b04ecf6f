"""Tests for grads.py"""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from batchsize import grads


# ---------------------------------------------------------------------------------------------------------------
# references: one backward pass per example, in float64


def loop_per_example_grads(model, X, y, loss_fn=None):
    """Explicit per-example gradients, one backward per example, (N, num_params)."""
    params = [p for p in model.parameters() if p.requires_grad]
    rows = []
    for i in range(len(X)):
        out = model(X[i:i + 1])
        loss = F.cross_entropy(out, y[i:i + 1]) if loss_fn is None else loss_fn(out, y[i:i + 1]).sum()
        rows.append(torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, params)]))
    return torch.stack(rows)  # (N, num_params)


def make_mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(40, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(inplace=True),
                         nn.Linear(32, 10)).double()


def make_cnn():
    # Shapes chosen so that both code paths run: the first conv (6 positions, 48 inputs, 32 outputs) uses the Gram
    # trick, the grouped dilated circular conv (6 positions, 48 inputs, 4 outputs per group) materialises.
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv1d(16, 32, 3, stride=2, padding=1), nn.ReLU(),
                         nn.Conv1d(32, 8, 3, padding="same", dilation=2, groups=2, padding_mode="circular"),
                         nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6, 10)).double()


def make_sequence_model():
    # Linear layers on (batch_size, seq, features): Linear(3, 64) on 20 positions materialises, Linear(64, 64) on
    # 20 positions uses the Gram trick.
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 64), nn.Tanh(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 2), nn.Flatten(),
                         nn.Linear(20 * 2, 10)).double()


def data(shape, num_examples=24, seed=1):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(num_examples, *shape, generator=g, dtype=torch.float64)
    y = torch.randint(10, (num_examples,), generator=g)
    return X, y


CASES = {"mlp": (make_mlp, (40,)), "cnn": (make_cnn, (16, 12)), "sequence": (make_sequence_model, (20, 3))}


# ---------------------------------------------------------------------------------------------------------------
# exact statistics against the loop


@pytest.mark.parametrize("case", CASES)
def test_per_example_sq_norms_match_loop(case):
    make, shape = CASES[case]
    model, (X, y) = make(), data(shape)
    G = loop_per_example_grads(model, X, y)  # (N, num_params)
    torch.testing.assert_close(grads.per_example_sq_norms(model, X, y), G.square().sum(1), rtol=1e-10, atol=1e-12)


def test_per_example_sq_norms_support_the_book_models():
    from batchsize.models import CNN1D, MLP
    for model in (MLP().double(), CNN1D(channels=4).double()):
        X, y = data((40,), num_examples=8)
        G = loop_per_example_grads(model, X, y)
        torch.testing.assert_close(grads.per_example_sq_norms(model, X, y), G.square().sum(1),
                                   rtol=1e-10, atol=1e-12)


def test_per_example_sq_norms_skip_frozen_parameters():
    model, (X, y) = make_mlp(), data((40,))
    model[0].weight.requires_grad_(False)
    model[4].bias.requires_grad_(False)
    G = loop_per_example_grads(model, X, y)
    torch.testing.assert_close(grads.per_example_sq_norms(model, X, y), G.square().sum(1), rtol=1e-10, atol=1e-12)


def test_per_example_sq_norms_with_custom_loss_match_loop():
    model, (X, _) = make_mlp(), data((40,))
    target = torch.randn(len(X), 10, dtype=torch.float64)

    def loss_fn(out, y):
        return (out - y).square().sum(1)  # (N,)

    G = loop_per_example_grads(model, X, target, loss_fn)
    torch.testing.assert_close(grads.per_example_sq_norms(model, X, target, loss_fn), G.square().sum(1),
                               rtol=1e-10, atol=1e-12)


def test_gradient_gram_matches_explicit_gradient_matrix():
    model, (X, y) = make_mlp(), data((40,))
    G = loop_per_example_grads(model, X, y)
    gram = grads.gradient_gram(model, X, y)
    assert gram.dtype == torch.float64 and gram.shape == (len(X), len(X))
    torch.testing.assert_close(gram, G @ G.T, rtol=1e-10, atol=1e-12)


def test_mean_gradient_matches_mean_loss_backward():
    model, (X, y) = make_cnn(), data((16, 12))
    F.cross_entropy(model(X), y).backward()
    expected = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
    model.zero_grad(set_to_none=True)
    torch.testing.assert_close(grads.mean_gradient(model, X, y), expected, rtol=1e-12, atol=1e-14)


def test_gradient_stats_match_explicit_covariance():
    model, (X, y) = make_mlp(), data((40,))
    G = loop_per_example_grads(model, X, y)  # (N, num_params)
    mean = G.mean(0)
    cov = (G - mean).T @ (G - mean) / len(G)  # (num_params, num_params), population normalisation
    stats = grads.gradient_stats(model, X, y)
    assert stats.num_examples == len(X)
    assert stats.grad_sq_norm == pytest.approx(mean.square().sum().item(), rel=1e-10)
    assert stats.trace_cov == pytest.approx(torch.trace(cov).item(), rel=1e-10)
    assert stats.b_simple == pytest.approx(torch.trace(cov).item() / mean.square().sum().item(), rel=1e-10)


def test_calls_leave_no_hooks_and_do_not_touch_grad():
    model, (X, y) = make_mlp(), data((40,))
    model[0].weight.grad = torch.ones_like(model[0].weight)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    grads.per_example_sq_norms(model, X, y)
    grads.gradient_gram(model, X, y)
    grads.gradient_stats(model, X, y)
    grads.mean_gradient(model, X, y)
    grads.estimate_noise_scale(model, X, y, 2, 8, num_draws=2)
    with pytest.raises(ValueError):  # an error inside the pass must also remove the hooks
        grads.per_example_sq_norms(model, X, y, loss_fn=lambda out, y: out.sum())
    for module in model.modules():
        assert not module._forward_hooks and not module._backward_hooks
    assert torch.equal(model[0].weight.grad, torch.ones_like(model[0].weight))
    assert all(p.grad is None for name, p in model.named_parameters() if name != "0.weight")
    assert all(torch.equal(p, before[name]) for name, p in model.named_parameters())


# ---------------------------------------------------------------------------------------------------------------
# mini-batch variance: theory against Monte Carlo


@pytest.mark.parametrize("replacement, batch_sizes", [(True, [1, 4, 16, 60, 200]), (False, [1, 4, 16, 59, 60])])
def test_measured_minibatch_variance_matches_theory(replacement, batch_sizes):
    rng = np.random.default_rng(0)
    g = rng.normal(size=(60, 7)) * np.arange(1, 8) + 2.0  # per-example gradients with a nonzero mean
    gram = g @ g.T  # (N, N)
    trace_cov = ((g - g.mean(0)) ** 2).sum(1).mean()
    theory = grads.minibatch_variance(trace_cov, np.array(batch_sizes), num_examples=60, replacement=replacement)
    measured, sem = grads.measure_minibatch_variance(gram, batch_sizes, num_draws=20_000, replacement=replacement,
                                                     seed=1, return_sem=True)
    # 5 Monte-Carlo standard errors (false alarm < 1e-6 per entry); B = N without replacement has zero variance.
    np.testing.assert_array_less(np.abs(measured - theory), 5 * sem + 1e-9)


def test_measure_minibatch_variance_is_deterministic_given_seed():
    gram = torch.eye(10, dtype=torch.float64)
    a = grads.measure_minibatch_variance(gram, [2, 3], num_draws=50, seed=3)
    b = grads.measure_minibatch_variance(gram, [2, 3], num_draws=50, seed=3)
    np.testing.assert_array_equal(a, b)


def test_minibatch_variance_scalar_and_array_inputs():
    assert grads.minibatch_variance(8.0, 4) == 2.0
    assert grads.minibatch_variance(torch.tensor(8.0), 4) == 2.0
    assert grads.minibatch_variance(8.0, 4, num_examples=5, replacement=False) == pytest.approx(2.0 * 1 / 4)
    np.testing.assert_allclose(grads.minibatch_variance(8.0, np.array([1, 2, 8])), [8.0, 4.0, 1.0])


def test_gradient_snr_is_batch_size_over_b_simple():
    assert grads.gradient_snr(2.0, 10.0, 5) == pytest.approx(5 / (10.0 / 2.0))
    np.testing.assert_allclose(grads.gradient_snr(2.0, 10.0, np.array([5, 10])), [1.0, 2.0])


# ---------------------------------------------------------------------------------------------------------------
# the two-batch estimator


def test_two_batch_estimates_are_unbiased_with_replacement():
    rng = np.random.default_rng(0)
    g = rng.normal(size=(500, 20)) * 3.0 + 0.5  # a population of per-example gradients
    G = g.mean(0)
    true_grad_sq_norm, true_trace_cov = G @ G, ((g - G) ** 2).sum(1).mean()
    b_small, b_big, num_draws = 4, 64, 20_000
    g_small = g[rng.integers(0, 500, (num_draws, b_small))].mean(1)  # (num_draws, 20)
    g_big = g[rng.integers(0, 500, (num_draws, b_big))].mean(1)
    # The estimators are linear in the squared norms, so per-draw estimates average to the pooled estimate.
    est_g, est_t = grads.two_batch_estimates((g_small**2).sum(1), (g_big**2).sum(1), b_small, b_big)
    pooled = grads.two_batch_estimates((g_small**2).sum(1).mean(), (g_big**2).sum(1).mean(), b_small, b_big)
    np.testing.assert_allclose(pooled, (est_g.mean(), est_t.mean()))
    for est, truth in ((est_g, true_grad_sq_norm), (est_t, true_trace_cov)):
        assert abs(est.mean() - truth) < 5 * est.std(ddof=1) / np.sqrt(num_draws)


def test_estimate_noise_scale_matches_exact_stats():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Linear(16, 3)).double()
    X = torch.randn(256, 10, dtype=torch.float64)
    y = (X[:, :3] + 0.5 * torch.randn(256, 3, dtype=torch.float64)).argmax(1)  # learnable labels: |G|^2 > 0
    exact = grads.gradient_stats(model, X, y)
    runs = [grads.estimate_noise_scale(model, X, y, 4, 64, num_draws=25, seed=s) for s in range(8)]
    assert all(r.num_examples == 256 for r in runs)
    # Each run is unbiased for |G|^2 and tr(Sigma) (sampling with replacement); the spread of 8 independent runs
    # gives the standard error of their mean; 5 of them is a false-alarm rate below 1e-3 even for a t(7) law.
    for field in ("grad_sq_norm", "trace_cov"):
        values = np.array([getattr(r, field) for r in runs])
        assert abs(values.mean() - getattr(exact, field)) < 5 * values.std(ddof=1) / np.sqrt(len(values))
    # B_simple is a ratio of the two: its relative standard error is about the two relative errors in quadrature.
    means, sems = [], []
    for field in ("trace_cov", "grad_sq_norm"):
        values = np.array([getattr(r, field) for r in runs])
        means.append(values.mean())
        sems.append(values.std(ddof=1) / np.sqrt(len(values)) / abs(values.mean()))
    assert means[0] / means[1] == pytest.approx(exact.b_simple, rel=5 * np.hypot(*sems))


def test_estimate_noise_scale_is_deterministic_given_seed():
    model, (X, y) = make_mlp(), data((40,))
    assert grads.estimate_noise_scale(model, X, y, 2, 8, num_draws=3, seed=5) == \
        grads.estimate_noise_scale(model, X, y, 2, 8, num_draws=3, seed=5)


# ---------------------------------------------------------------------------------------------------------------
# bad input


def test_unsupported_layer_raises_type_error_naming_it():
    model = nn.Sequential(nn.Linear(40, 8), nn.LayerNorm(8), nn.Linear(8, 10)).double()
    X, y = data((40,))
    with pytest.raises(TypeError, match=r"LayerNorm.*supported: nn.Linear and nn.Conv1d"):
        grads.per_example_sq_norms(model, X, y)


def test_batch_norm_raises_type_error_explaining_why():
    model = nn.Sequential(nn.Linear(40, 8), nn.BatchNorm1d(8), nn.Linear(8, 10)).double()
    X, y = data((40,))
    with pytest.raises(TypeError, match="not defined with batch norm"):
        grads.gradient_stats(model, X, y)


def test_shared_layer_and_frozen_model_raise():
    layer = nn.Linear(40, 40)
    X, y = data((40,))
    with pytest.raises(ValueError, match="called more than once"):
        grads.per_example_sq_norms(nn.Sequential(layer, nn.ReLU(), layer).double(), X, y)
    with pytest.raises(ValueError, match="no trainable parameters"):
        grads.per_example_sq_norms(make_mlp().requires_grad_(False), X, y)


def test_gradient_gram_rejects_conv_and_sequence_inputs():
    with pytest.raises(TypeError, match="only nn.Linear layers on 2-D inputs.*Conv1d"):
        grads.gradient_gram(make_cnn(), *data((16, 12)))
    with pytest.raises(TypeError, match="only nn.Linear layers on 2-D inputs"):
        grads.gradient_gram(make_sequence_model(), *data((20, 3)))


@pytest.mark.parametrize("X, y, error, match", [
    (np.zeros((4, 40)), torch.zeros(4, dtype=torch.long), TypeError, "X must be a torch.Tensor"),
    (torch.zeros(4, 40), torch.zeros(3, dtype=torch.long), ValueError, "same number of examples"),
    (torch.zeros(0, 40), torch.zeros(0, dtype=torch.long), ValueError, "at least one example"),
])
def test_bad_data_raises(X, y, error, match):
    model = make_mlp().float()
    for fn in (grads.per_example_sq_norms, grads.mean_gradient, grads.gradient_gram, grads.gradient_stats):
        with pytest.raises(error, match=match):
            fn(model, X, y)


def test_gradient_stats_and_labels_out_of_range_raise():
    """One example has no covariance (B_simple would be a rounding error, also negative); labels beyond the model's
    classes are a ValueError that says so, not cross-entropy's IndexError."""
    model, (X, y) = make_mlp(), data((40,))
    with pytest.raises(ValueError, match="gradient_stats needs at least 2 examples"):
        grads.gradient_stats(model, X[:1], y[:1])
    for fn in (grads.per_example_sq_norms, grads.mean_gradient, grads.gradient_stats):
        with pytest.raises(ValueError, match="class labels must lie in 0..9"):
            fn(model, X, y + 100)


def test_dropout_in_training_mode_is_refused_by_the_per_example_statistics():
    """Dropout in training mode would make the statistics a random draw that changes from call to call."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(40, 16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 10)).double()
    X, y = data((40,))
    for fn in (grads.per_example_sq_norms, grads.gradient_gram, grads.gradient_stats):
        with pytest.raises(ValueError, match="2 is dropout in training mode: per-example statistics would change"):
            fn(model, X, y)
    model.eval()
    assert grads.gradient_stats(model, X, y).b_simple == grads.gradient_stats(model, X, y).b_simple


def test_noise_estimate_brackets_the_two_batch_formula_and_pools():
    """On draws with a known |G|^2 = 1 and tr(Sigma) = 64 (|g_B|^2 = 1 + 64 / B exactly, plus noise), the estimate
    is the two-batch formula on the means, inside its interval; pooling two halves gives the estimate of all."""
    rng = np.random.default_rng(0)
    small = (1 + 64 / 4) * rng.gamma(50, 1 / 50, 400)  # (400,) mean 1 + 64/4, 14 % noise per draw
    big = (1 + 64 / 64) * rng.gamma(50, 1 / 50, 400)
    est = grads.noise_estimate(small, big, 4, 64)
    g2, tr = grads.two_batch_estimates(small.mean(), big.mean(), 4, 64)
    assert est.b_simple == pytest.approx(tr / g2) and est.low < est.b_simple < est.high
    assert est.low < 64 < est.high and est.within(1.5)
    halves = [grads.noise_estimate(small[i::2], big[i::2], 4, 64) for i in (0, 1)]
    assert grads.pooled_noise_estimate(halves).b_simple == pytest.approx(
        grads.noise_estimate(np.r_[small[0::2], small[1::2]], np.r_[big[0::2], big[1::2]], 4, 64).b_simple)
    assert not grads.noise_estimate(small[:3], big[:3] * 0 + 20, 4, 64).within(2)  # |G|^2 < 0: B = inf
    with pytest.raises(ValueError, match="at least 2 draws"):
        grads.noise_estimate([1.0], [1.0], 4, 64)
    with pytest.raises(ValueError, match="share their two batch sizes"):
        grads.pooled_noise_estimate([est, grads.noise_estimate(small, big, 8, 64)])


def test_loss_fn_must_return_per_example_losses():
    model, (X, y) = make_mlp(), data((40,))
    with pytest.raises(ValueError, match=r"one loss per example, shape \(24,\).*reduction='none'"):
        grads.per_example_sq_norms(model, X, y, loss_fn=F.cross_entropy)


def test_bad_batch_sizes_and_draws_raise():
    with pytest.raises(ValueError, match="batch_size must be > 0"):
        grads.minibatch_variance(1.0, 0)
    with pytest.raises(ValueError, match="needs num_examples"):
        grads.minibatch_variance(1.0, 4, replacement=False)
    with pytest.raises(ValueError, match=r"batch_size must lie in 1..num_examples=10"):
        grads.minibatch_variance(1.0, 11, num_examples=10, replacement=False)
    with pytest.raises(ValueError, match="square"):
        grads.measure_minibatch_variance(np.zeros((3, 4)), [1])
    with pytest.raises(ValueError, match="num_draws must be an integer >= 1"):
        grads.measure_minibatch_variance(np.eye(3), [1], num_draws=0)
    with pytest.raises(ValueError, match="<= N=3"):
        grads.measure_minibatch_variance(np.eye(3), [4], replacement=False)
    with pytest.raises(ValueError, match="b_small < b_big"):
        grads.two_batch_estimates(1.0, 1.0, 8, 8)
    model, (X, y) = make_mlp(), data((40,))
    with pytest.raises(ValueError, match="b_small < b_big"):
        grads.estimate_noise_scale(model, X, y, 16, 4)
    with pytest.raises(ValueError, match="num_draws must be an integer >= 1"):
        grads.estimate_noise_scale(model, X, y, 4, 16, num_draws=0)
    with pytest.raises(ValueError, match="batch_size must be > 0"):
        grads.gradient_snr(1.0, 1.0, -2)
