"""Per-example gradient statistics: norms, Gram matrices, the gradient noise scale and mini-batch variance.

A mini-batch gradient is the mean of `batch_size` per-example gradients g_i. Everything the book measures about its
noise follows from two numbers over the N examples at hand: the squared norm of the mean gradient |G|^2 and the
trace of the per-example covariance tr(Sigma) (McCandlish et al. 2018, "An Empirical Model of Large-Batch Training").

The fast paths never build the (N, num_params) matrix of per-example gradients. Forward hooks record each layer's
input a_i and the gradient delta_i of the summed loss with respect to the layer's output; for nn.Linear,
g_i = delta_i a_i^T, so |g_i|^2 = |delta_i|^2 |a_i|^2 and g_i . g_j = (a_i . a_j)(delta_i . delta_j)
(Goodfellow 2015, arXiv:1510.01799). Layers applied at several positions (sequences, nn.Conv1d) use the same
identity summed over pairs of positions. Supported layers with trainable parameters: nn.Linear and nn.Conv1d.
"""
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import seeding
from ._checks import as_positive_array, check_data, check_model, check_positive_int, cross_entropy
from .steps import flatten_grads, trainable_parameters

_SUPPORTED = (nn.Linear, nn.Conv1d)
_SUPPORTED_NAMES = "nn.Linear and nn.Conv1d (parameter-free modules such as ReLU, Flatten or eval-mode Dropout " \
                   "may sit anywhere)"


# ----------------------------------------------------------------------------------------------------------------
# input checks and the hooked forward/backward pass


def _per_example_losses(output, y, loss_fn):
    """Per-example losses, shape (N,), checked."""
    if loss_fn is None:
        losses = cross_entropy(output, y, reduction="none")
    else:
        losses = loss_fn(output, y)
    if not isinstance(losses, torch.Tensor) or tuple(losses.shape) != (len(y),):
        shape = tuple(losses.shape) if isinstance(losses, torch.Tensor) else type(losses).__name__
        raise ValueError(f"loss_fn(output, y) must return one loss per example, shape ({len(y)},), got {shape}; "
                         f"use reduction='none'")
    return losses  # (N,)


def _hooked_modules(model):
    """Modules whose own trainable parameters the per-example paths handle."""
    check_model(model)
    modules = []
    for name, module in model.named_modules():
        trainable = [p for p in module.parameters(recurse=False) if p.requires_grad]
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and (module.training or trainable):
            raise TypeError(f"per-example gradients are not defined with batch norm ({name or 'model'}: "
                            f"{type(module).__name__}): it normalises each example with statistics of the whole "
                            f"batch, so one example's loss depends on the others; remove it, or put it in eval mode "
                            f"with frozen affine parameters")
        if isinstance(module, nn.modules.dropout._DropoutNd) and module.training and module.p > 0:
            raise ValueError(f"{name or 'model'} is dropout in training mode: per-example statistics would change "
                             f"from call to call; call model.eval() for the statistics without dropout, or use "
                             f"advise.advise, which samples dropout afresh for every example")
        if not trainable:
            continue
        if not isinstance(module, _SUPPORTED):
            raise TypeError(f"per-example gradients are not implemented for {type(module).__name__} "
                            f"({name or 'model'}), which has trainable parameters of its own; supported: "
                            f"{_SUPPORTED_NAMES}")
        modules.append(module)
    if not modules:
        raise ValueError("model has no trainable parameters (requires_grad=True)")
    return modules


def _hooked_pass(model, X, y, loss_fn, modules, params=()):
    """Run model(X) once; return {module: (input, grad_output)} and the summed-loss gradient for params."""
    records = {}

    def record(module, inputs, output):
        if module in records:
            raise ValueError(f"{type(module).__name__} is called more than once in one forward pass (weight "
                             f"sharing); its per-example gradient is then not a single outer product")
        records[module] = (inputs[0].detach(), output)
        # Return a copy so that a later in-place op (ReLU(inplace=True)) cannot overwrite the recorded output.
        return output.clone()

    handles = [m.register_forward_hook(record) for m in modules]
    try:
        with torch.enable_grad():
            losses = _per_example_losses(model(X), y, loss_fn)  # (N,)
    finally:
        for handle in handles:
            handle.remove()
    called = [m for m in modules if m in records]
    outputs = [records[m][1] for m in called]
    # The summed loss makes row i of each grad_output the gradient of example i's own loss.
    grads = torch.autograd.grad(losses.sum(), outputs + list(params), allow_unused=True)
    layers = {m: (records[m][0], g.detach() if g is not None else torch.zeros_like(records[m][1]))
              for m, g in zip(called, grads[:len(called)])}
    return layers, grads[len(called):]


# ----------------------------------------------------------------------------------------------------------------
# per-layer pieces


def _conv1d_patches(module, x):
    """Unfold a Conv1d input into patches, (N, groups, L_out, C_in/groups * kernel)."""
    if x.dim() != 3:
        raise ValueError(f"Conv1d input must be batched, (batch_size, channels, length); got {tuple(x.shape)}")
    (kernel,), (stride,), (dilation,) = module.kernel_size, module.stride, module.dilation
    if isinstance(module.padding, str):
        total = 0 if module.padding == "valid" else dilation * (kernel - 1)
        left, right = total // 2, total - total // 2  # as nn.Conv1d does for padding='same'
    else:
        left = right = module.padding[0]
    mode = "constant" if module.padding_mode == "zeros" else module.padding_mode
    if left or right:
        x = F.pad(x, (left, right), mode=mode)
    span = dilation * (kernel - 1) + 1
    patches = x.unfold(2, span, stride)[..., ::dilation]  # (N, C_in, L_out, kernel)
    N, C_in, L_out, _ = patches.shape
    groups = module.groups
    patches = patches.reshape(N, groups, C_in // groups, L_out, kernel).transpose(2, 3)
    return patches.reshape(N, groups, L_out, (C_in // groups) * kernel)  # (N, groups, L_out, C_in/groups*kernel)


def _outer_sum_sq_norms(u, d):
    """|sum_l d_il u_il^T|^2 per example, summed over groups; u (N, G, T, I), d (N, G, T, O)."""
    T, I, O = u.shape[2], u.shape[3], d.shape[3]
    if T * T * (I + O) <= T * I * O:
        # Gram trick: sum_{l,l'} (u_l . u_l')(d_l . d_l') without forming the (O, I) gradient.
        return ((u @ u.transpose(-1, -2)) * (d @ d.transpose(-1, -2))).sum(dim=(1, 2, 3))  # (N,)
    per_example = d.transpose(-1, -2) @ u  # (N, G, O, I): cheaper to materialise here
    return per_example.square().sum(dim=(1, 2, 3))  # (N,)


def _layer_sq_norms(module, a, delta):
    """Per-example squared gradient norm of one layer's trainable parameters, (N,)."""
    N = len(a)
    weight_on = module.weight.requires_grad
    bias_on = module.bias is not None and module.bias.requires_grad
    if isinstance(module, nn.Linear):
        if a.dim() == 2:
            d2 = delta.square().sum(1)  # (N,)
            out = torch.zeros_like(d2)
            if weight_on:
                out = out + d2 * a.square().sum(1)  # |delta_i a_i^T|^2 = |delta_i|^2 |a_i|^2
            if bias_on:
                out = out + d2
            return out
        u = a.reshape(N, 1, -1, a.shape[-1])  # (N, 1, T, in_features): all positions share the weight
        d = delta.reshape(N, 1, -1, delta.shape[-1])  # (N, 1, T, out_features)
    else:
        u = _conv1d_patches(module, a)  # (N, groups, L_out, C_in/groups*kernel)
        d = delta.reshape(N, module.groups, -1, delta.shape[-1]).transpose(2, 3)  # (N, groups, L_out, C_out/groups)
    out = torch.zeros(N, dtype=delta.dtype, device=delta.device)
    if weight_on:
        out = out + _outer_sum_sq_norms(u, d)
    if bias_on:
        out = out + d.sum(2).square().sum(dim=(1, 2))  # bias gradient: delta summed over positions
    return out


# ----------------------------------------------------------------------------------------------------------------
# public API: exact statistics over the N examples given


def per_example_sq_norms(model, X, y, loss_fn=None):
    """Per-example squared gradient norms over all trainable parameters. Introduced in chapter 1 (gradient variance).

    Parameters
    ----------
    loss_fn : callable(output, y) -> per-example losses of shape (N,); default cross entropy with reduction='none'.
    """
    check_data(X, y, floating=False)
    modules = _hooked_modules(model)
    layers, _ = _hooked_pass(model, X, y, loss_fn, modules)
    return _sum_layer_sq_norms(layers, len(X), X)


def _sum_layer_sq_norms(layers, N, X):
    """Sum the per-layer per-example squared norms, (N,)."""
    total = torch.zeros(N, dtype=X.dtype if X.is_floating_point() else torch.get_default_dtype(), device=X.device)
    for module, (a, delta) in layers.items():
        total = total + _layer_sq_norms(module, a, delta)
    return total  # (N,)


def mean_gradient(model, X, y, loss_fn=None):
    """Flattened gradient of the mean loss over (X, y), (num_params,). Introduced in chapter 1 (gradient variance).

    Trainable parameters only, in model.parameters() order; works for any model, batch norm included.
    """
    N = check_data(X, y, floating=False)
    params = trainable_parameters(model)
    with torch.enable_grad():
        losses = _per_example_losses(model(X), y, loss_fn)  # (N,)
        grads = torch.autograd.grad(losses.sum() / N, params, allow_unused=True)
    return flatten_grads(grads, params)  # (num_params,)


def gradient_gram(model, X, y, loss_fn=None):
    """Gram matrix of per-example gradients, K_ij = g_i . g_j, float64. Introduced in chapter 1 (gradient variance).

    Sums (A A^T) * (Delta Delta^T) + Delta Delta^T (bias) over nn.Linear layers applied to 2-D inputs; other layers
    with trainable parameters raise TypeError.
    """
    N = check_data(X, y, floating=False)
    modules = _hooked_modules(model)
    for module in modules:
        if not isinstance(module, nn.Linear):
            raise TypeError(f"gradient_gram supports only nn.Linear layers on 2-D inputs (batch_size, features); "
                            f"got {type(module).__name__}; use per_example_sq_norms for the diagonal")
    layers, _ = _hooked_pass(model, X, y, loss_fn, modules)
    for module, (a, delta) in layers.items():
        if a.dim() != 2:
            raise TypeError(f"gradient_gram supports only nn.Linear layers on 2-D inputs (batch_size, features); "
                            f"a Linear layer received input of shape {tuple(a.shape)}")
    # Two (N, N) buffers reused across layers: allocating fresh N x N matrices costs more than the matmuls.
    gram = torch.zeros(N, N, dtype=torch.float64, device=X.device)
    input_gram, delta_gram = torch.empty_like(gram), torch.empty_like(gram)
    for module, (a, delta) in layers.items():
        a, delta = a.double(), delta.double()  # (N, in_features), (N, out_features)
        torch.mm(delta, delta.T, out=delta_gram)  # (N, N)
        if module.weight.requires_grad:
            gram.addcmul_(torch.mm(a, a.T, out=input_gram), delta_gram)  # (A A^T) * (Delta Delta^T)
        if module.bias is not None and module.bias.requires_grad:
            gram += delta_gram
    return gram  # (N, N)


@dataclass
class GradStats:
    """The two numbers behind gradient noise, and their ratio. Introduced in chapter 1 (gradient variance)."""
    grad_sq_norm: float  # |G|^2, G = mean gradient over the examples
    trace_cov: float  # tr(Sigma) = mean_i |g_i - G|^2 (population normalisation 1/N)
    b_simple: float  # trace_cov / grad_sq_norm: the batch size at which noise and signal are equal
    num_examples: int  # N, the examples treated as the population


def _stats(grad_sq_norm, trace_cov, num_examples):
    """Build GradStats from its two numbers."""
    grad_sq_norm, trace_cov = float(grad_sq_norm), float(trace_cov)
    b_simple = trace_cov / grad_sq_norm if grad_sq_norm != 0 else float("inf")
    return GradStats(grad_sq_norm, trace_cov, b_simple, int(num_examples))


def gradient_stats(model, X, y, loss_fn=None):
    """Exact |G|^2, tr(Sigma) and B_simple over the N examples given. Introduced in chapter 1 (gradient variance).

    Same result as per_example_sq_norms and mean_gradient, sharing their single forward and backward pass.
    """
    N = check_data(X, y, floating=False)
    if N < 2:
        raise ValueError("gradient_stats needs at least 2 examples: with one, tr(Sigma) is 0 and B_simple is not "
                         "defined (rounding makes it any small number, also negative)")
    modules = _hooked_modules(model)
    params = trainable_parameters(model)
    layers, grads = _hooked_pass(model, X, y, loss_fn, modules, params)
    sq_norms = _sum_layer_sq_norms(layers, N, X).double()  # (N,)
    grad_sq_norm = (flatten_grads(grads, params).double() / N).square().sum()
    return _stats(grad_sq_norm, sq_norms.mean() - grad_sq_norm, N)


# ----------------------------------------------------------------------------------------------------------------
# public API: mini-batch variance, theory and measurement


def minibatch_variance(trace_cov, batch_size, num_examples=None, replacement=True):
    """Theoretical E|g_B - G|^2 of a mini-batch mean gradient. Introduced in chapter 1 (gradient variance).

    tr(Sigma)/B when the batch is drawn with replacement; tr(Sigma)/B * (N - B)/(N - 1) without (needs num_examples).
    batch_size may be a scalar or an array; the result has its shape.
    """
    B = np.asarray(batch_size, dtype=float)
    if np.any(~(B > 0)):
        raise ValueError(f"batch_size must be > 0, got {batch_size}")
    trace_cov = np.asarray(trace_cov, dtype=float)
    if replacement:
        out = trace_cov / B
    else:
        if num_examples is None:
            raise ValueError("sampling without replacement needs num_examples (N, the population size)")
        N = int(num_examples)
        if N < 1 or np.any(B > N):
            raise ValueError(f"without replacement batch_size must lie in 1..num_examples={N}, got {batch_size}")
        out = trace_cov / B * ((N - B) / (N - 1) if N > 1 else 0.0)
    return out if out.ndim else float(out)


def _minibatch_counts(rng, num_draws, N, batch_size, replacement):
    """How often each example appears in each draw, shape (num_draws, N)."""
    if replacement:
        idx = rng.integers(0, N, size=(num_draws, batch_size))  # (num_draws, batch_size)
    else:
        keys = rng.random((num_draws, N))  # a random permutation per draw; its first batch_size entries
        idx = np.argpartition(keys, batch_size - 1, axis=1)[:, :batch_size] if batch_size < N else \
            np.broadcast_to(np.arange(N), (num_draws, N))
    flat = (idx + N * np.arange(num_draws)[:, None]).ravel()
    return np.bincount(flat, minlength=num_draws * N).reshape(num_draws, N).astype(np.float64)


def measure_minibatch_variance(gram, batch_sizes, num_draws=1000, replacement=True, seed=0, return_sem=False):
    """Measured E|g_B - G|^2 over random mini-batches, from a Gram matrix. Introduced in chapter 1 (gradient variance).

    Parameters
    ----------
    gram : (N, N) array or tensor, K_ij = g_i . g_j (e.g. gradient_gram, or (X X^T) * (r r^T) for linear regression).
    return_sem : also return the Monte-Carlo standard error of each mean, for tolerances.

    Returns
    -------
    np.ndarray of shape (len(batch_sizes),), or (means, standard errors) when return_sem.
    """
    K = gram.detach().cpu().double().numpy() if isinstance(gram, torch.Tensor) else np.asarray(gram, dtype=np.float64)
    if K.ndim != 2 or K.shape[0] != K.shape[1] or K.shape[0] == 0:
        raise ValueError(f"gram must be a non-empty square (N, N) matrix, got shape {K.shape}")
    num_draws = check_positive_int(num_draws, "num_draws")
    N = K.shape[0]
    batch_sizes = as_positive_array(batch_sizes, "batch_sizes", integer=True)  # (num_batch_sizes,)
    if not replacement and batch_sizes.max() > N:
        raise ValueError(f"without replacement batch sizes must be <= N={N} examples, got {batch_sizes.max()}")
    # Centre: the Gram matrix of g_i - G, so that c^T K_c c / B^2 = |g_B - G|^2 for a count vector c.
    K_c = K - K.mean(0, keepdims=True) - K.mean(1, keepdims=True) + K.mean()  # (N, N)
    rng = seeding.default_rng(seed)
    chunk = max(1, min(num_draws, 2**22 // N))  # bound memory: (chunk, N) count matrices
    means, sems = [], []
    for B in batch_sizes:
        sq_devs = []
        for start in range(0, num_draws, chunk):
            C = _minibatch_counts(rng, min(chunk, num_draws - start), N, B, replacement)  # (draws, N)
            sq_devs.append(((C @ K_c) * C).sum(1) / B**2)  # (draws,)
        sq_devs = np.concatenate(sq_devs)
        means.append(sq_devs.mean())
        sems.append(sq_devs.std(ddof=1) / np.sqrt(num_draws) if num_draws > 1 else np.inf)
    return (np.array(means), np.array(sems)) if return_sem else np.array(means)


# ----------------------------------------------------------------------------------------------------------------
# public API: the practical two-batch estimator of the noise scale


def two_batch_estimates(sq_norm_small, sq_norm_big, b_small, b_big):
    """Unbiased |G|^2 and tr(Sigma) from mean |g_B|^2 at two batch sizes. Introduced in chapter 1 (gradient variance).

    McCandlish et al. 2018, appendix A: E|g_B|^2 = |G|^2 + tr(Sigma)/B, solved for the two unknowns. Unbiased when the
    mini-batches are drawn with replacement (without, tr(Sigma)/B carries the factor (N - B)/(N - 1)).

    Returns
    -------
    (grad_sq_norm, trace_cov)
    """
    if not 0 < b_small < b_big:
        raise ValueError(f"need 0 < b_small < b_big, got b_small={b_small}, b_big={b_big}")
    grad_sq_norm = (b_big * sq_norm_big - b_small * sq_norm_small) / (b_big - b_small)
    trace_cov = (sq_norm_small - sq_norm_big) / (1 / b_small - 1 / b_big)
    return grad_sq_norm, trace_cov


def estimate_noise_scale(model, X, y, b_small, b_big, num_draws=100, seed=0, loss_fn=None):
    """Estimate |G|^2, tr(Sigma), B_simple from mini-batches of two sizes. Introduced in chapter 1 (gradient variance).

    Draws num_draws mini-batches of each size with replacement from (X, y), averages |g_B|^2 per size and applies
    two_batch_estimates. B_simple is a ratio of two unbiased estimates, so it is itself only consistent.
    """
    N = check_data(X, y, floating=False)
    num_draws = check_positive_int(num_draws, "num_draws")
    b_small, b_big = check_positive_int(b_small, "b_small"), check_positive_int(b_big, "b_big")
    if b_small >= b_big:
        raise ValueError(f"need b_small < b_big, got b_small={b_small}, b_big={b_big}")
    generator = seeding.generator(seed)
    sq_norms = {b_small: 0.0, b_big: 0.0}
    for _ in range(int(num_draws)):
        for batch_size in (b_small, b_big):
            idx = torch.randint(N, (batch_size,), generator=generator).to(X.device)  # (batch_size,)
            g = mean_gradient(model, X[idx], y[idx], loss_fn)  # (num_params,)
            sq_norms[batch_size] += g.double().square().sum().item() / num_draws
    grad_sq_norm, trace_cov = two_batch_estimates(sq_norms[b_small], sq_norms[b_big], b_small, b_big)
    return _stats(grad_sq_norm, trace_cov, N)


def gradient_snr(grad_sq_norm, trace_cov, batch_size):
    """Signal-to-noise ratio |G|^2 / (tr(Sigma)/B) = B / B_simple. Introduced in chapter 1 (gradient variance)."""
    B = np.asarray(batch_size, dtype=float)
    if np.any(~(B > 0)):
        raise ValueError(f"batch_size must be > 0, got {batch_size}")
    out = np.asarray(grad_sq_norm, dtype=float) * B / np.asarray(trace_cov, dtype=float)
    return out if np.ndim(out) else float(out)


# ----------------------------------------------------------------------------------------------------------------
# the noise scale of any model, with its uncertainty (chapter 6's advisor)


def batch_sq_norms_func(model, inputs, targets, loss_fn=None):
    """(mean_i |g_i|^2, |mean_i g_i|^2) of one batch from per-example gradients by torch.func. Chapter 6.

    Any model torch.func can differentiate and vmap (not nn.LSTM; not batch norm in training mode); inputs and
    targets as in `batches` (tensors, dicts or tuples); loss_fn(output, target) returns a batch's mean loss
    (default cross-entropy). Dropout is sampled independently for every example (randomness="different").
    """
    from torch.func import functional_call, grad, vmap

    from .batches import mean_loss, tree_map

    params = {k: p.detach() for k, p in model.named_parameters() if p.requires_grad}
    buffers = dict(model.named_buffers())

    def loss_one(p, x, t):  # the loss of one example, as a batch of one
        x, t = tree_map(lambda a: a.unsqueeze(0), x), tree_map(lambda a: a.unsqueeze(0), t, "targets")
        args, kwargs = ((), x) if isinstance(x, dict) else (tuple(x), {}) if isinstance(x, (tuple, list)) else \
            ((x,), {})
        return mean_loss(functional_call(model, (p, buffers), args, kwargs), t, loss_fn)

    with torch.enable_grad():
        g = vmap(grad(loss_one), in_dims=(None, 0, 0), randomness="different")(params, inputs, targets)
    flat = torch.cat([v.reshape(v.shape[0], -1) for v in g.values()], 1).double()  # (batch_size, num_params)
    return float(flat.square().sum(1).mean()), float(flat.mean(0).square().sum())


def batch_sq_norm(model, inputs, targets, loss_fn=None):
    """|g_B|^2, the squared norm of the batch's mean-loss gradient, by autograd (any model). Chapter 6."""
    from .batches import call_model, mean_loss

    params = trainable_parameters(model)
    with torch.enable_grad():
        loss = mean_loss(call_model(model, inputs), targets, loss_fn)
        g = torch.autograd.grad(loss, params, allow_unused=True)
    return float(flatten_grads(g, params).double().square().sum())


def _b_simple_of(sq_small, sq_big, b_small, b_big):
    """B_simple from mean |g_B|^2 at two batch sizes, elementwise: inf where |G|^2 <= 0, 0 where tr(Sigma) <= 0."""
    grad_sq_norm, trace_cov = two_batch_estimates(sq_small, sq_big, b_small, b_big)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(grad_sq_norm > 0, np.maximum(trace_cov, 0) / grad_sq_norm, np.inf)


@dataclass
class NoiseEstimate:
    """B_simple from paired draws of |g_B|^2 at two batch sizes, with a bootstrap interval. Chapter 6."""

    b_simple: float  # from the means over all draws; inf if |G|^2 was not resolved above 0
    low: float  # the 95 % bootstrap interval over the draws
    high: float
    num_draws: int
    samples: np.ndarray  # (num_resamples,) B_simple of each bootstrap resample of the draws
    sq_small: np.ndarray  # (num_draws,) the draws of |g_B|^2 at b_small
    sq_big: np.ndarray  # (num_draws,) and at b_big
    b_small: int
    b_big: int

    def within(self, factor):
        """Whether the interval lies within a factor of the estimate on both sides."""
        return bool(0 < self.b_simple < np.inf and self.high <= factor * self.b_simple
                    and self.low >= self.b_simple / factor)


def noise_estimate(sq_small, sq_big, b_small, b_big, num_resamples=400, seed=0):
    """B_simple and its 95 % bootstrap interval from draws of |g_B|^2 at b_small and b_big. Chapter 6.

    sq_small[d], sq_big[d] are the squared norms of draw d (`batch_sq_norm`, or `batch_sq_norms_func`, whose
    mean_i |g_i|^2 is the draw at batch size 1); resampling the draws with replacement gives the interval.
    """
    sq_small, sq_big = np.asarray(sq_small, dtype=float), np.asarray(sq_big, dtype=float)
    if sq_small.ndim != 1 or sq_small.shape != sq_big.shape or sq_small.size < 2:
        raise ValueError(f"sq_small and sq_big must be 1-D, of the same length, with at least 2 draws, got shapes "
                         f"{sq_small.shape} and {sq_big.shape}")
    b_small, b_big = check_positive_int(b_small, "b_small"), check_positive_int(b_big, "b_big")
    if b_small >= b_big:
        raise ValueError(f"need b_small < b_big, got b_small={b_small}, b_big={b_big}")
    idx = seeding.default_rng(seed).integers(len(sq_small), size=(check_positive_int(num_resamples, "num_resamples"),
                                                                    len(sq_small)))  # (num_resamples, num_draws)
    samples = _b_simple_of(sq_small[idx].mean(1), sq_big[idx].mean(1), b_small, b_big)
    low, high = np.percentile(samples, [2.5, 97.5], method="nearest")  # no interpolation between infinities
    return NoiseEstimate(float(_b_simple_of(sq_small.mean(), sq_big.mean(), b_small, b_big)), float(low), float(high),
                         len(sq_small), samples, sq_small, sq_big, b_small, b_big)


def pooled_noise_estimate(estimates, num_resamples=400, seed=0):
    """One NoiseEstimate from the draws of several, at the same two batch sizes, pooled. Chapter 6."""
    if not estimates or not all(isinstance(e, NoiseEstimate) for e in estimates):
        raise TypeError("estimates must be a non-empty sequence of grads.NoiseEstimate")
    sizes = {(e.b_small, e.b_big) for e in estimates}
    if len(sizes) != 1:
        raise ValueError(f"the estimates must share their two batch sizes, got {sorted(sizes)}")
    return noise_estimate(np.concatenate([e.sq_small for e in estimates]), np.concatenate([e.sq_big for e in estimates]),
                          *sizes.pop(), num_resamples=num_resamples, seed=seed)
