"""Fast, seeded mini-batch training for the lessons: one run, or many runs (learning rates, seeds) as one model.

Data stay as tensors and are shuffled with `torch.randperm`: no DataLoader. Several runs are trained at once
by stacking their parameters and mapping the model over them with `torch.func.vmap`, so a learning-rate or
seed sweep is a single tensor program. Each run draws its initialisation and its data order from its own
seed, so a run gives the same numbers alone or inside a sweep. A run whose loss becomes NaN, infinite or
`divergence_factor` times its first loss is stopped and reported as diverged.

Optimizers: SGD with heavy-ball momentum, Adam and AdamW, with the update rules of torch.optim. Schedules are
plain callables of the step: a learning-rate schedule returns the factor that multiplies a run's learning
rate (`warmup`, `step_decay`, `cosine`, combined with `chain`), and a batch-size schedule returns the batch size
of every run at that step. In `train_many` each learning rate may have its own schedule, and its own Adam betas
and eps (Malladi et al.'s square-root rule scales them with the batch size).

Chapter 5.1 adds three things: `train_many` may be given each run's batches (`orders`) instead of shuffling,
`TrainConfig.clip_norm` clips every run's gradient as torch.nn.utils.clip_grad_norm_() does and logs its norm, and
`evaluate`, `predict` and `recall_per_class` evaluate trained runs on any data. Inside, a training step is built
from small parts: the live runs' state (`_Runs`, whose `drop` removes stopped runs), the optimizer updates in
place on each run's rows (`_sgd_update_`, `_adam_update_`) and the evaluation (`_evaluate`). For the book's MLP the
forward and backward pass are written out as batched matrix products (`stacked_mlp`), several times faster at small
batches than autograd; other models go through torch.func. Chapter 2.2 adds `TrainConfig.noise_growth` (each run's
gradient noise scale logged along the run) and `stop_rule` (runs stopped once they can no longer matter).

Chapter 5 (language models) trains token sequences: X (N, T) torch.long token ids and y (N, T) the next tokens, for
a model with an embedding such as `models.TinyGPT`. The loss is the mean cross-entropy over every token of a batch,
the accuracy the fraction of tokens predicted right; a batch of B sequences is B x T tokens. A model with a
`forward_stacked(params, x)` method (TinyGPT) computes its runs with it, as batched matrix products under autograd.
"""
import copy
import functools
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch.func import functional_call, stack_module_state
from tqdm.auto import tqdm

from . import hardware, seeding, stacked_mlp, tune
from ._checks import (check_batch_size, check_data, check_data4, check_positive_float, check_positive_int,
                      check_same_dtype, cross_entropy)


@dataclass
class TrainConfig:
    """Defaults for a training run; a lesson changes only the knob it teaches. Introduced in chapter 1."""

    lr: float = 0.1  # learning rate of SGD
    batch_size: int = 64  # examples (sequences: B x T tokens) per step, drawn without replacement within an epoch
    num_steps: int = 1000  # optimisation steps (an epoch is len(X) // batch_size steps)
    momentum: float = 0.0  # heavy-ball momentum, PyTorch convention
    weight_decay: float = 0.0  # L2 penalty added to the gradient
    seed: int = 0  # seeds the initialisation (train_many) and the data order
    eval_every: int = 100  # steps between evaluations on the test set
    divergence_factor: float = 100.0  # loss this many times the first loss counts as diverged
    progress: bool = True  # show a tqdm.auto progress bar
    target: float | None = None  # stop a run at the first evaluation where target_metric reaches this
    target_metric: str = "test_acc"  # "test_acc" (reached when >= target) or "test_loss" (when <= target)
    eval_growth: float = 1.0  # > 1: evaluation gaps grow geometrically, at least eval_every steps apart
    optimizer: str = "sgd"  # "sgd" (with `momentum`), "adam" (L2 `weight_decay`) or "adamw" (decoupled)
    betas: tuple = (0.9, 0.999)  # Adam's decay rates of the first and second moment
    eps: float = 1e-8  # Adam's denominator offset
    lr_schedule: object = None  # None or a callable step -> factor on the learning rate
    batch_schedule: object = None  # None or a callable step -> batch size (overrides batch_size from step 0)
    clip_norm: float | None = None  # clip each run's gradient norm to this, as torch.nn.utils.clip_grad_norm_ (5.1)
    noise_growth: float | None = None  # > 1: log each run's B_simple over the training set at geometric steps (2.2)


@dataclass
class History:
    """What a run logged: per-step mini-batch loss and accuracy, periodic test loss and accuracy.

    Introduced in chapter 1 (gradient variance). Arrays have a leading run axis for `train_many`. Values
    after a run diverged are NaN and must not be plotted: use `diverged` and `diverged_at`.
    """

    train_loss: np.ndarray  # (num_steps,) or (num_runs, num_steps)
    train_acc: np.ndarray
    eval_steps: np.ndarray  # (num_evals,)
    test_loss: np.ndarray  # (num_evals,) or (num_runs, num_evals)
    test_acc: np.ndarray
    diverged: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))  # bool, () or (num_runs,)
    diverged_at: np.ndarray = field(default_factory=lambda: np.zeros(0, int))  # step, -1 if it did not
    reached_at: np.ndarray = field(default_factory=lambda: np.zeros(0, int))  # steps to the target, -1 if not
    params: dict | None = None  # train_many: final parameters {name: (num_runs, ...)}; None for train
    grad_norm: np.ndarray | None = None  # with cfg.clip_norm: each step's gradient norm before clipping, else None
    noise_steps: np.ndarray | None = None  # with cfg.noise_growth: steps at which B_simple was measured, else None
    b_simple: np.ndarray | None = None  # (num_runs, num_noise_steps) over the training set; NaN once a run stopped
    b_simple_at_stop: np.ndarray | None = None  # (num_runs,) B_simple where a run stopped at cfg.target, else NaN
    snapshots: dict | None = None  # train_many(snapshots=True): {name: (num_runs, num_noise_steps, ...)} for later
    snapshot_taken: np.ndarray | None = None  # bool (num_runs, num_noise_steps): the run was live there


def _batch_order(num_examples, batch_size, num_steps, seed):
    """Indices (num_steps, batch_size): reshuffled every epoch from the run's own seed."""
    gen = seeding.generator(int(seed))
    steps_per_epoch = num_examples // batch_size
    num_epochs = -(-num_steps // steps_per_epoch)
    perms = [torch.randperm(num_examples, generator=gen)[: steps_per_epoch * batch_size] for _ in range(num_epochs)]
    return torch.cat(perms).view(-1, batch_size)[:num_steps]


def _eval_steps(num_steps, eval_every, growth):
    """Steps after which to evaluate: every eval_every steps, or geometrically spaced when growth > 1."""
    if growth == 1:
        steps = np.arange(0, num_steps + 1, eval_every)
    else:
        steps = [0, eval_every]
        while steps[-1] < num_steps:
            steps.append(max(steps[-1] + eval_every, int(np.ceil(steps[-1] * growth))))
        steps = np.array(steps)
        steps = steps[steps <= num_steps]
    return steps if steps[-1] == num_steps else np.append(steps, num_steps)


class _Orders:
    """Each run's data order, drawn one epoch at a time: the same batches as `_batch_order`, in O(N) memory."""

    def __init__(self, num_examples, batch_size, seeds):
        self.batch_size, self.num_examples = batch_size, num_examples
        self.per_epoch = num_examples // batch_size
        self.gens = [seeding.generator(int(s)) for s in seeds]
        self.epoch, self.perms = -1, None
        self.cursor = num_examples  # next unused position of the current permutation (for `take`)

    def take(self, live, batch_size):
        """The next batch_size indices of every live run; a new epoch starts when fewer than that are left.

        With a constant batch size this gives the same batches as `batch`; a batch-size schedule uses it.
        """
        if self.cursor + batch_size > self.num_examples:
            self.perms = torch.stack([torch.randperm(self.num_examples, generator=g) for g in self.gens])
            self.cursor = 0
        self.cursor += batch_size
        return self.perms[live, self.cursor - batch_size:self.cursor]

    def batch(self, step, live):
        """Indices (len(live), batch_size) of the runs `live` (sorted run numbers) at this step."""
        epoch, k = divmod(step, self.per_epoch)
        if epoch != self.epoch:  # every run, live or not, draws its permutation so the streams stay aligned
            self.perms = torch.stack([torch.randperm(self.num_examples, generator=g) for g in self.gens])
            self.epoch = epoch
        return self.perms[live, k * self.batch_size:(k + 1) * self.batch_size]


def _check_config(cfg, X, y, X_test, y_test, lrs, ordered=False, tokens=False):
    """Raise a clear error for a setting of cfg (or a learning rate, or the data) that training cannot use.

    With tokens (a model that embeds token ids), X and X_test must hold torch.long ids instead of floats."""
    if not isinstance(cfg, TrainConfig):
        raise TypeError(f"cfg must be a TrainConfig, got {type(cfg).__name__}")
    num_examples = check_data(X, y, floating=not tokens)
    check_data(X_test, y_test, floating=not tokens)
    for name, inputs in (("X", X), ("X_test", X_test)):
        if tokens and inputs.dtype != torch.long:
            raise TypeError(f"{name} must hold token ids (torch.long) for a model that embeds tokens, got dtype "
                            f"{inputs.dtype}")
    if tokens and cfg.noise_growth is not None:
        raise ValueError("noise_growth needs a model of real-valued inputs (its per-example gradients); it must be "
                         "None for a model of tokens")
    if not ordered:  # given orders set the batch size themselves
        check_batch_size(cfg.batch_size, num_examples)
    check_positive_int(cfg.num_steps, "num_steps")
    check_positive_int(cfg.eval_every, "eval_every")
    for lr in lrs:
        check_positive_float(lr, "lr")
    if cfg.optimizer not in ("sgd", "adam", "adamw"):
        raise ValueError(f"optimizer must be 'sgd', 'adam' or 'adamw', got {cfg.optimizer!r}")
    if len(tuple(cfg.betas)) != 2 or not all(0 <= b < 1 for b in cfg.betas):
        raise ValueError(f"betas must be two numbers in [0, 1), got {cfg.betas!r}")
    check_positive_float(cfg.eps, "eps")
    for name in ("lr_schedule", "batch_schedule"):
        if getattr(cfg, name) is not None and not callable(getattr(cfg, name)):
            raise TypeError(f"{name} must be None or a callable of the step, got {type(getattr(cfg, name)).__name__}")
    if not 0 <= cfg.momentum < 1:
        raise ValueError(f"momentum must be in [0, 1), got {cfg.momentum}")
    if cfg.weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0, got {cfg.weight_decay}")
    if cfg.target is not None and (isinstance(cfg.target, bool) or not isinstance(cfg.target, (int, float))
                                   or not np.isfinite(cfg.target)):
        raise ValueError(f"target must be None or a finite number, got {cfg.target!r}")
    if cfg.target_metric not in ("test_acc", "test_loss"):
        raise ValueError(f"target_metric must be 'test_acc' or 'test_loss', got {cfg.target_metric!r}")
    if isinstance(cfg.eval_growth, bool) or not isinstance(cfg.eval_growth, (int, float)) \
            or not 1 <= cfg.eval_growth < np.inf:
        raise ValueError(f"eval_growth must be a finite number >= 1, got {cfg.eval_growth!r}")
    if cfg.clip_norm is not None and (isinstance(cfg.clip_norm, bool) or not isinstance(cfg.clip_norm, (int, float))
                                      or np.isnan(cfg.clip_norm) or cfg.clip_norm <= 0):
        raise ValueError(f"clip_norm must be None or a number > 0 (inf: log the norms only), got {cfg.clip_norm!r}")
    if cfg.noise_growth is not None and (isinstance(cfg.noise_growth, bool)
                                         or not isinstance(cfg.noise_growth, (int, float))
                                         or not 1 < cfg.noise_growth < np.inf):
        raise ValueError(f"noise_growth must be None or a finite number > 1, got {cfg.noise_growth!r}")
    for name, labels in (("y", y), ("y_test", y_test)):
        if labels.dtype != torch.long:
            raise TypeError(f"{name} must hold integer class labels (torch.long), got dtype {labels.dtype}")


def _schedule_value(schedule, step, name):
    value = schedule(step)
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not np.isfinite(value) or value < 0:
        raise ValueError(f"{name} must return a finite number >= 0 at every step, got {value!r} at step {step}")
    return float(value)


def _check_betas(betas):
    betas = tuple(betas) if isinstance(betas, (tuple, list, np.ndarray)) else (betas,)
    if len(betas) != 2 or not all(isinstance(b, (int, float, np.integer, np.floating)) and not isinstance(b, bool)
                                  and 0 <= b < 1 for b in betas):
        raise ValueError(f"betas must be two numbers in [0, 1), got {betas!r}")
    return float(betas[0]), float(betas[1])


def _check_orders(orders, num_runs, num_examples, num_steps):
    """Given example orders as (num_runs, steps, batch_size) indices, checked; a 2-D order serves every run."""
    if not isinstance(orders, torch.Tensor) or orders.dtype != torch.long or orders.ndim not in (2, 3):
        raise TypeError("orders must be a torch.long tensor (num_runs, num_steps, batch_size) or "
                        f"(num_steps, batch_size), got {type(orders).__name__} {getattr(orders, 'shape', '')}")
    orders = orders.expand(num_runs, *orders.shape) if orders.ndim == 2 else orders
    if len(orders) != num_runs or orders.shape[1] < num_steps or orders.shape[2] < 1:
        raise ValueError(f"orders must hold {num_runs} runs of at least num_steps = {num_steps} batches of one or "
                         f"more examples, got shape {tuple(orders.shape)}")
    if orders.min() < 0 or orders.max() >= num_examples:
        raise ValueError(f"orders must index the {num_examples} training examples, got values from "
                         f"{orders.min().item()} to {orders.max().item()}")
    return orders


# ---------------------------------------------------------------------------------------------------------------
# the parts of a batched training run: forward pass, evaluation, optimizer updates, the live runs


def _takes_tokens(model):
    """Whether model embeds token ids (has an nn.Embedding), so that its inputs are torch.long, not floats."""
    return any(isinstance(m, torch.nn.Embedding) for m in model.modules())


def _batched(model):
    """model's forward pass over stacked parameters: its own `forward_stacked` if it has one, else torch.func.vmap."""
    return _OwnStacked(model) if callable(getattr(model, "forward_stacked", None)) else _Stacked(model)


class _OwnStacked:
    """`model.forward_stacked(params, x)` (e.g. models.TinyGPT's) with the call of `_Stacked`."""

    def __init__(self, model):
        self.model = model

    def __call__(self, params, x, shared=False):
        """Outputs (num_runs, n, ...) of x, (num_runs, n, ...) or (n, ...) when shared."""
        num_runs = len(next(iter(params.values())))
        return self.model.forward_stacked(params, x.expand(num_runs, *x.shape) if shared else x)


class _Stacked:
    """`model`'s forward pass mapped over stacked parameters {name: (num_runs, ...)} with torch.func.vmap."""

    def __init__(self, model):
        self.buffers = dict(model.named_buffers())  # shared by every run

        def logits(p, b, x):
            return functional_call(model, (p, b), (x,))

        self.own = torch.func.vmap(logits)  # each run gets its own inputs
        self.shared = torch.func.vmap(logits, in_dims=(0, 0, None))  # every run sees the same inputs

    def __call__(self, params, x, shared=False):
        """Logits (num_runs, n, num_classes) of x, (num_runs, n, ...) or (n, ...) when shared."""
        num_runs = len(next(iter(params.values())))
        buffers = {k: v.expand(num_runs, *v.shape) for k, v in self.buffers.items()}
        return (self.shared if shared else self.own)(params, buffers, x)


def _check_targets(logits, y):
    """Raise unless the labels y (num_runs, n, ...) or (n, ...) match the logits (num_runs, n, ..., num_classes)."""
    if y.ndim not in (logits.ndim - 2, logits.ndim - 1) or y.shape[-(logits.ndim - 2):] != logits.shape[1:-1]:
        raise ValueError(f"y must hold one class label per output of the model (for sequences, one per token): "
                         f"the model gives {tuple(logits.shape[1:-1])} outputs, y has shape {tuple(y.shape)}")


def _cross_entropy(logits, y):
    """Each run's mean cross-entropy (num_runs,) over every label of y (every token of a sequence), y (num_runs, n,
    ...) or (n, ...) for every run."""
    _check_targets(logits, y)
    y = y.expand(logits.shape[:-1])
    loss = cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="none")
    return loss.view(len(logits), -1).mean(1)


def _accuracy(logits, y):
    """Each run's fraction of labels (tokens) predicted right, float64 (num_runs,)."""
    return (logits.argmax(-1) == y).double().flatten(1).mean(1)


def _evaluate(forward, params, X, y):
    """Mean cross-entropy and accuracy of every run on (X, y): two tensors (num_runs,); per token for sequences.

    The log-softmax is computed in place by hand: with few classes F.cross_entropy's kernel costs more than the
    model's forward pass on a large evaluation set."""
    with torch.no_grad():
        logits = forward(params, X, shared=True)  # (num_runs, N, num_classes) or (num_runs, N, T, vocab)
        _check_targets(logits, y)
        acc = _accuracy(logits, y)
        if y.dtype != torch.long or (len(y) and (y.min() < 0 or y.max() >= logits.shape[-1])):
            return _cross_entropy(logits, y), acc  # F.cross_entropy's own path, with its error message
        own = isinstance(forward, stacked_mlp.StackedMLP)  # its logits are a new tensor; another model's may alias
        log_p = stacked_mlp._log_softmax_(logits if own else logits.clone())
        return stacked_mlp._mean_nll(log_p, y), acc


def _noise_scale(model, forward, params, X, y):
    """Every run's B_simple over the whole of (X, y), float64 (num_runs,): in closed form for a plain MLP, else
    `grads.gradient_stats` run by run."""
    if isinstance(forward, stacked_mlp.StackedMLP):
        return forward.noise_scale(params, X, y)[2]
    from .grads import gradient_stats

    out = []
    for i in range(len(next(iter(params.values())))):
        with torch.no_grad():
            for name, p in model.named_parameters():
                p.copy_(params[name][i])
        with torch.enable_grad():  # called from inside the training loop's no_grad
            out.append(gradient_stats(model, X, y).b_simple)
    return torch.tensor(out, dtype=torch.float64)


def _loss_and_grads(forward, params, xb, yb):
    """Every run's mean cross-entropy and accuracy on its batch xb (num_runs, batch_size, ...), and the gradients.

    For sequences (xb, yb (num_runs, batch_size, T)) both are per token: over the batch_size x T tokens."""
    params = {k: v.detach().requires_grad_() for k, v in params.items()}
    logits = forward(params, xb)  # (num_runs, batch_size, num_classes) or (num_runs, batch_size, T, vocab)
    loss = _cross_entropy(logits, yb)
    grads = torch.autograd.grad(loss.sum(), list(params.values()))
    with torch.no_grad():
        acc = _accuracy(logits, yb)
    return loss.detach(), acc, list(grads)


def _per_run(values, like):
    """values (num_runs,) shaped to broadcast against a stacked tensor like (num_runs, ...)."""
    return values.view((len(like),) + (1,) * (like.ndim - 1))


def _clip(grads, max_norm):
    """Each run's total gradient norm (num_runs,) and its gradients scaled as torch.nn.utils.clip_grad_norm_() does."""
    norms = torch.stack([torch.linalg.vector_norm(g.reshape(len(g), -1), dim=1) for g in grads], 1)
    total = torch.linalg.vector_norm(norms, dim=1)
    coef = (max_norm / (total + 1e-6)).clamp(max=1.0)
    return total, [g * _per_run(coef, g) for g in grads]


def _sgd_update(p, g, velocity, lr, momentum=0.0, weight_decay=0.0):
    """torch.optim.SGD's step (heavy-ball momentum, L2 weight decay) as a pure function: (new p, new velocity)."""
    p, velocity = p.clone(), velocity.clone()
    _sgd_update_(p, g.clone(), velocity, lr, momentum, weight_decay)
    return p, velocity


def _adam_coefficients(beta1, beta2, eps, t, dtype):
    """Adam's constants at step t >= 1 from per-run arrays: floats if the runs share betas and eps, else tensors."""
    coef = [beta1, beta2, 1 - beta1, 1 - beta2, 1 - beta1 ** t, np.sqrt(1 - beta2 ** t), eps]
    if len(set(zip(beta1, beta2, eps))) <= 1:
        return [float(a[0]) if len(a) else 0.0 for a in coef]
    return [torch.tensor(a, dtype=dtype) for a in coef]


def _adam_update(p, g, exp_avg, exp_avg_sq, lr, coef, weight_decay=0.0, decoupled=False):
    """torch.optim.Adam's step (AdamW's if decoupled) as a pure function: (new p, new exp_avg, new exp_avg_sq)."""
    p, exp_avg, exp_avg_sq = p.clone(), exp_avg.clone(), exp_avg_sq.clone()
    _adam_update_(p, g.clone(), exp_avg, exp_avg_sq, lr, coef, weight_decay, decoupled)
    return p, exp_avg, exp_avg_sq


def _sgd_update_(p, g, velocity, lr, momentum=0.0, weight_decay=0.0):
    """torch.optim.SGD's step in place on p and velocity (g is overwritten too); `_sgd_update` is its pure form."""
    if weight_decay:
        g = g.add_(p.mul(weight_decay))
    if momentum:
        velocity.mul_(momentum).add_(g)
    step = velocity if momentum else g
    if isinstance(lr, torch.Tensor):  # one lr per run: p -= lr * step in one kernel, without a temporary
        p.addcmul_(step, lr, value=-1)
    else:
        p.add_(step, alpha=-lr)


def _adam_update_(p, g, exp_avg, exp_avg_sq, lr, coef, weight_decay=0.0, decoupled=False):
    """torch.optim.Adam's (AdamW's if decoupled) step in place on p, exp_avg and exp_avg_sq (g is overwritten too),
    without a new tensor per operation (which costs more than the arithmetic for a big one); `_adam_update` is its
    pure form."""
    if decoupled:
        p.mul_(1 - lr * weight_decay)
    elif weight_decay:
        g = g.add_(p.mul(weight_decay))
    b1, b2, c1, c2, bias1, bias2_sqrt, eps = coef
    if isinstance(b1, float):  # the runs share betas and eps
        exp_avg.mul_(b1).add_(g, alpha=c1)
        exp_avg_sq.mul_(b2).addcmul_(g, g, value=c2)
    else:  # each run has its own
        b1, b2, c1, c2, bias1, bias2_sqrt, eps = (_per_run(c, p) for c in coef)
        exp_avg.mul_(b1).add_(c1 * g)
        exp_avg_sq.mul_(b2).add_((c2 * g).mul_(g))
    denom = exp_avg_sq.sqrt().div_(bias2_sqrt).add_(eps)
    p.sub_((lr / bias1 * exp_avg).div_(denom))


class _Runs:
    """The runs of `_fit` still training, one row each: parameters, optimizer state and settings.

    A run that stops leaves with `drop`, which writes its parameters to `out` ({name: (num_runs, ...)}). With
    flat=True, `update` steps every parameter at once, in place, as one (len(live), num_params) tensor whose views
    are `params` and `state`: the same arithmetic, element by element, in a dozen operations instead of a dozen per
    parameter tensor (a transformer has many small ones).
    """

    def __init__(self, out, lrs, betas, eps, dtype, flat=False):
        self.out, self.flat = out, flat
        self._flat = None  # with flat: {"params"/state name: (len(live), num_params)}, None until the next update
        self.initial = {k: v.detach().clone() for k, v in out.items()}
        self.params = {k: v.detach().clone() for k, v in out.items()}  # (len(live), ...)
        self.state = {s: {k: torch.zeros_like(v) for k, v in self.params.items()}  # SGD's velocity, Adam's moments
                      for s in ("velocity", "exp_avg", "exp_avg_sq")}
        self.live = torch.arange(len(lrs))  # run numbers still training
        self.rows = slice(None)  # the live runs' rows of a History: a slice while every run is live, else live's
        self.lr = torch.tensor(lrs, dtype=dtype)
        self.beta1 = np.array([b[0] for b in betas])  # float64, as torch.optim keeps them
        self.beta2 = np.array([b[1] for b in betas])
        self.eps = np.array(eps)
        self.first_loss = None  # (len(live),), set at the first step

    def drop(self, stop, parked=False):
        """Remove the runs flagged in `stop` (bool, (len(live),)); parked runs leave with their initial parameters."""
        keep = ~stop
        for k in self.params:
            self.out[k][self.live[stop]] = self.initial[k][self.live[stop]] if parked else self.params[k][stop]
            self.params[k] = self.params[k][keep]
            for s in self.state.values():
                s[k] = s[k][keep]
        self.live, self.lr = self.live[keep], self.lr[keep]
        self.rows = self.live.numpy()
        self.beta1, self.beta2, self.eps = self.beta1[keep.numpy()], self.beta2[keep.numpy()], self.eps[keep.numpy()]
        self._flat = None  # params and state are no longer views of it
        if self.first_loss is not None:
            self.first_loss = self.first_loss[keep.numpy()]

    def write_back(self):
        """Copy the live runs' parameters to `out`."""
        for k in self.params:
            self.out[k][self.live] = self.params[k]

    def update(self, grads, lr, cfg, step):
        """One optimizer step of every live run with learning rates lr (len(live),)."""
        if cfg.optimizer != "sgd":
            coef = _adam_coefficients(self.beta1, self.beta2, self.eps, step + 1, lr.dtype)
        if self.flat:
            return self._update_flat(grads, lr, cfg, coef if cfg.optimizer != "sgd" else None)
        for (k, p), g in zip(self.params.items(), grads):  # in place: the runs' rows are their own tensors
            run_lr = _per_run(lr, p)
            if cfg.optimizer == "sgd":
                _sgd_update_(p, g, self.state["velocity"][k], run_lr, cfg.momentum, cfg.weight_decay)
            else:
                _adam_update_(p, g, self.state["exp_avg"][k], self.state["exp_avg_sq"][k], run_lr, coef,
                              cfg.weight_decay, decoupled=cfg.optimizer == "adamw")

    def _update_flat(self, grads, lr, cfg, coef):
        """`update` of every parameter at once, in place on (len(live), num_params) tensors that params and state
        view."""
        n, names = len(self.live), list(self.params)
        if self._flat is None:
            self._flat = {s: torch.cat([d[k].reshape(n, -1) for k in names], 1)
                          for s, d in (("params", self.params), *self.state.items())}
            start = 0
            for k in names:
                shape, size = self.params[k].shape, self.params[k][0].numel()
                self.params[k] = self._flat["params"][:, start:start + size].view(shape)
                for s, d in self.state.items():
                    d[k] = self._flat[s][:, start:start + size].view(shape)
                start += size
        f, g = self._flat, torch.cat([g.reshape(n, -1) for g in grads], 1)
        if cfg.optimizer == "sgd":
            _sgd_update_(f["params"], g, f["velocity"], lr[:, None], cfg.momentum, cfg.weight_decay)
        else:
            _adam_update_(f["params"], g, f["exp_avg"], f["exp_avg_sq"], lr[:, None], coef, cfg.weight_decay,
                          decoupled=cfg.optimizer == "adamw")


def _empty_history(num_runs, num_steps, eval_steps, grad_norm, noise_steps=None):
    """A History of NaN (and -1 steps) for num_runs runs, to be filled in by `_fit`."""
    steps, evals = np.full((num_runs, num_steps), np.nan), np.full((num_runs, len(eval_steps)), np.nan)
    hist = History(steps, steps.copy(), eval_steps, evals, evals.copy(), np.zeros(num_runs, bool),
                   np.full(num_runs, -1), np.full(num_runs, -1), grad_norm=steps.copy() if grad_norm else None)
    if noise_steps is not None:
        hist.noise_steps = noise_steps
        hist.b_simple, hist.b_simple_at_stop = np.full((num_runs, len(noise_steps)), np.nan), np.full(num_runs, np.nan)
    return hist


def _log_step(runs, hist, step, loss, acc, divergence_factor):
    """Log the live runs' training loss and accuracy; stop the runs that diverged. Returns the flags (len(live),)
    as a bool tensor, or None when no run diverged (the common case, checked in numpy: a few runs' numbers)."""
    loss_np, acc_np = loss.numpy(), acc.numpy()
    if runs.first_loss is None:
        runs.first_loss = loss_np.copy()
    rows = runs.rows
    blown = ~np.isfinite(loss_np) | (loss_np > divergence_factor * runs.first_loss)
    if not blown.any():
        hist.train_loss[rows, step], hist.train_acc[rows, step] = loss_np, acc_np
        return None
    hist.train_loss[rows, step] = np.where(blown, np.nan, loss_np)
    hist.train_acc[rows, step] = np.where(blown, np.nan, acc_np)
    blown = torch.from_numpy(blown)
    hist.diverged_at[runs.live[blown].numpy()] = step
    runs.drop(blown, parked=True)  # parked on their finite initial values
    return blown


def _log_evaluation(forward, runs, hist, X_test, y_test, i, cfg, noise=None, stop_rule=None):
    """Evaluate the live runs on the test set (evaluation i); stop the runs at their target, logging their B_simple
    there with `noise` (params -> (num_runs,)) if given, and the runs that `stop_rule` stops."""
    if len(runs.live) == 0:  # every run has diverged or answered: nothing left to evaluate
        return
    loss, acc = _evaluate(forward, runs.params, X_test, y_test)
    hist.test_loss[runs.rows, i], hist.test_acc[runs.rows, i] = loss.numpy(), acc.numpy()
    if cfg.target is not None:
        done = acc >= cfg.target if cfg.target_metric == "test_acc" else loss <= cfg.target
        if done.any():
            hist.reached_at[runs.live[done].numpy()] = hist.eval_steps[i]
            if noise is not None:
                hist.b_simple_at_stop[runs.live[done].numpy()] = noise(
                    {k: v[done] for k, v in runs.params.items()}).numpy()
            runs.drop(done)
        if stop_rule is not None and len(runs.live):
            stop = np.asarray(stop_rule(hist.reached_at >= 0), dtype=bool)
            if stop.shape != hist.reached_at.shape:
                raise ValueError(f"stop_rule must return one bool per run, {len(stop)} in all, got shape {stop.shape}")
            stop = torch.from_numpy(stop[runs.live.numpy()])
            if stop.any():
                runs.drop(stop)


def _noise_logger(noise, runs, hist):
    """A function of the step that logs the live runs' B_simple at the steps of hist.noise_steps, or keeps their
    parameters there if hist.snapshots is set (a no-op without noise steps)."""
    if hist.noise_steps is None:
        return lambda step: None
    where = {int(s): i for i, s in enumerate(hist.noise_steps)}

    def log(step):
        i = where.get(step)
        if i is None or not len(runs.live):
            return
        if hist.snapshots is None:
            hist.b_simple[runs.rows, i] = noise(runs.params).numpy()
            return
        for k, v in runs.params.items():
            hist.snapshots[k][runs.live, i] = v
        hist.snapshot_taken[runs.rows, i] = True

    return log


def _next_batch(batches, cfg, step, live, num_examples):
    """Indices (len(live), batch_size) of the live runs' batch at this step."""
    if isinstance(batches, torch.Tensor):  # given orders
        return batches[live, step]
    if cfg.batch_schedule is None:
        return batches.batch(step, live)
    batch_size = int(round(_schedule_value(cfg.batch_schedule, step, "batch_schedule")))
    return batches.take(live, check_batch_size(batch_size, num_examples))


def _fit(model, params, data, cfg, lrs, seeds, callback=None, lr_schedules=None, betas=None, eps=None, orders=None,
         stop_rule=None, snapshots=False):
    """Train stacked parameters {name: (num_runs, ...)} in place; the core of train and train_many.

    Only live runs (neither diverged nor at their target) are computed: when a run stops, its parameters are
    written back to `params` and the batched model shrinks to the runs still going. `lr_schedules` holds one
    schedule (or None) per run; None everywhere falls back to cfg.lr_schedule. `betas` and `eps` hold Adam's
    settings per run; None falls back to cfg.betas and cfg.eps. `orders` (num_runs, steps, batch_size), if given,
    are the runs' batches instead of their seeds' shuffles. `stop_rule`, with cfg.target, is called after every
    evaluation with the runs that reached the target so far (bool (num_runs,)) and returns the runs to stop there.
    With snapshots (and cfg.noise_growth) the noise steps keep the parameters instead of measuring B_simple.
    """
    X, y, X_test, y_test = data
    if stop_rule is not None and (cfg.target is None or not callable(stop_rule)):
        raise ValueError("stop_rule must be a callable, and needs cfg.target")
    tokens = _takes_tokens(model)
    _check_config(cfg, X, y, X_test, y_test, lrs, ordered=orders is not None, tokens=tokens)
    if callable(getattr(model, "check_tokens", None)):  # e.g. TinyGPT: ids in its vocabulary, T within its context
        model.check_tokens(X)
        model.check_tokens(X_test)
    num_runs = len(lrs)
    betas = [cfg.betas] * num_runs if betas is None else [_check_betas(b) for b in betas]
    eps = [cfg.eps] * num_runs if eps is None else [check_positive_float(e, "eps") for e in eps]
    if len(betas) != num_runs or len(eps) != num_runs:
        raise ValueError(f"betas and eps must hold one value per run, {num_runs} in all")
    lr_schedules = [cfg.lr_schedule] * num_runs if lr_schedules is None else lr_schedules
    schedules = None if all(s is None for s in lr_schedules) else \
        [s if s is not None else (lambda step: 1.0) for s in lr_schedules]
    if orders is not None and cfg.batch_schedule is not None:
        raise ValueError("orders give every batch: cfg.batch_schedule must be None with them")
    batches = _Orders(len(X), cfg.batch_size, seeds) if orders is None else \
        _check_orders(orders, num_runs, len(X), cfg.num_steps)
    names = stacked_mlp.layer_names(model)
    forward = _batched(model) if names is None else stacked_mlp.StackedMLP(names)
    loss_and_grads = forward.loss_and_grads if names is not None else functools.partial(_loss_and_grads, forward)
    # the MLP's SGD step runs inside its backward pass (stacked_mlp.StackedMLP.sgd_step_): no gradient is stored
    fused = names is not None and cfg.optimizer == "sgd" and not cfg.weight_decay and cfg.clip_norm is None
    runs = _Runs(params, lrs, betas, eps, X.dtype if torch.is_floating_point(X) else next(iter(params.values())).dtype,
                 flat=isinstance(forward, _OwnStacked))
    noise_steps = None if cfg.noise_growth is None else _eval_steps(cfg.num_steps, cfg.eval_every, cfg.noise_growth)
    hist = _empty_history(num_runs, cfg.num_steps, _eval_steps(cfg.num_steps, cfg.eval_every, cfg.eval_growth),
                          grad_norm=cfg.clip_norm is not None, noise_steps=noise_steps)
    if snapshots and noise_steps is not None:
        hist.snapshots = {k: v.new_zeros((num_runs, len(noise_steps), *v.shape[1:])) for k, v in params.items()}
        hist.snapshot_taken = np.zeros((num_runs, len(noise_steps)), bool)
    noise = None if noise_steps is None or snapshots else functools.partial(
        _noise_scale, model if names is not None else copy.deepcopy(model), forward, X=X, y=y)
    log_noise = _noise_logger(noise, runs, hist)
    log_noise(0)
    eval_at = {int(s): i for i, s in enumerate(hist.eval_steps)}  # step -> its evaluation's index
    _log_evaluation(forward, runs, hist, X_test, y_test, 0, cfg, noise, stop_rule)
    for step in tqdm(range(cfg.num_steps), disable=not cfg.progress, leave=False, desc="training"):
        if len(runs.live) == 0:
            break  # every run has answered
        idx = _next_batch(batches, cfg, step, runs.live, len(X))  # (len(live), batch_size)
        if fused:
            loss, acc, (inputs, dz) = forward.loss_and_deltas(runs.params, X[idx], y[idx])
        else:
            loss, acc, grads = loss_and_grads(runs.params, X[idx], y[idx])
        with torch.no_grad():
            blown = _log_step(runs, hist, step, loss, acc, cfg.divergence_factor)
            if blown is not None and fused:
                inputs, dz = [a[~blown] for a in inputs], dz[~blown]
            elif blown is not None:
                grads = [g[~blown] for g in grads]
            if cfg.clip_norm is not None:
                norms, grads = _clip(grads, cfg.clip_norm)
                hist.grad_norm[runs.rows, step] = norms.numpy()
            lr = runs.lr
            if schedules is not None:
                lr = lr * torch.tensor([_schedule_value(schedules[r], step, "lr_schedule")
                                        for r in runs.live.tolist()], dtype=lr.dtype)
            if fused:
                forward.sgd_step_(runs.params, runs.state["velocity"], inputs, dz, lr, cfg.momentum)
            else:
                runs.update(grads, lr, cfg, step)
            log_noise(step + 1)
            if step + 1 in eval_at:
                _log_evaluation(forward, runs, hist, X_test, y_test, eval_at[step + 1], cfg, noise, stop_rule)
        if callback is not None and (step + 1) % cfg.eval_every == 0 and len(runs.live):
            runs.write_back()
            callback(step + 1, params)
    runs.write_back()
    hist.diverged = hist.diverged_at >= 0
    return hist


def train(model, data, cfg=TrainConfig(), callback=None):
    """Train `model` in place with mini-batch SGD and return its History. Introduced in chapter 1.

    Parameters
    ----------
    data : (X_train, y_train, X_test, y_test) tensors, e.g. from `load_mnist1d()`.
    callback : optional `callback(step, model)`, called every `cfg.eval_every` steps, e.g. to measure
        gradient statistics during training.
    """
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(cfg, TrainConfig):
        raise TypeError(f"cfg must be a TrainConfig, got {type(cfg).__name__}")
    check_same_dtype(check_data4(data)[0], model)
    params = {k: v.detach().clone()[None] for k, v in model.named_parameters()}

    def load(step, stacked):
        if callback is not None:
            with torch.no_grad():
                for k, v in model.named_parameters():
                    v.copy_(stacked[k][0])
            callback(step, model)

    hist = _fit(model, params, data, cfg, [cfg.lr], [cfg.seed], callback=load)
    with torch.no_grad():
        for k, v in model.named_parameters():
            v.copy_(params[k][0])
    return History(hist.train_loss[0], hist.train_acc[0], hist.eval_steps, hist.test_loss[0], hist.test_acc[0],
                   hist.diverged[0], hist.diverged_at[0], hist.reached_at[0],
                   grad_norm=None if hist.grad_norm is None else hist.grad_norm[0])


def train_many(make_model, data, lrs, seeds=(0,), cfg=TrainConfig(), lr_schedules=None, betas=None, eps=None,
               orders=None, stop_rule=None, snapshots=False):
    """Train every (lr, seed) pair at once as one batched model; History arrays are (len(lrs) * len(seeds), ...).

    Introduced in chapter 1 (gradient variance). Runs are ordered lr-major: run i has
    lr = lrs[i // len(seeds)] and seed = seeds[i % len(seeds)]. Run (lr, seed) starts from
    `seeding.manual_seed(seed); make_model()` and matches `train` with that seed. `lr_schedules` (chapter 3):
    None (every run follows cfg.lr_schedule) or one schedule per lr, so each lr may have its own. `betas` and
    `eps` (chapter 3, Adam and AdamW): None (cfg.betas and cfg.eps for every run) or one (beta1, beta2) pair,
    and one eps, per lr. `orders` (chapter 5.1): None (each run shuffles the data with its seed) or the batches
    themselves, a torch.long tensor of example indices (num_runs, steps, batch_size), or (steps, batch_size) for
    every run, with steps >= cfg.num_steps: run i trains on X[orders[i, t]] at step t, so a batch may repeat
    examples or exceed the data set; cfg.batch_size is then not used, and cfg.batch_schedule must be None.
    `stop_rule` (chapter 2.2), with cfg.target: called after every evaluation with the runs at the target so far
    (bool (num_runs,)), it returns the runs to stop there (bool (num_runs,)); they keep the parameters they reached.
    With cfg.noise_growth the History also holds each run's B_simple over the whole training set (X_train, y_train)
    at geometrically spaced steps, and where it stopped at cfg.target; with snapshots=True it holds the runs'
    parameters at those steps instead, and `measure_noise` measures B_simple later for the runs wanted. Chapter 5 (language models): for a model that
    embeds tokens (e.g. `models.TinyGPT`), X_train and X_test are token ids (N, T) of dtype torch.long and y_train,
    y_test the next tokens (N, T); a batch is cfg.batch_size sequences, cfg.batch_size x T tokens, and the losses
    and accuracies are per token.
    """
    data = check_data4(data)
    lrs, seeds = list(np.atleast_1d(lrs).astype(float)), [int(s) for s in np.atleast_1d(seeds)]
    if not lrs or not seeds:
        raise ValueError("lrs and seeds must each hold at least one value")
    if lr_schedules is not None:
        lr_schedules = list(lr_schedules)
        if len(lr_schedules) != len(lrs) or not all(s is None or callable(s) for s in lr_schedules):
            raise ValueError(f"lr_schedules must hold one callable (or None) per lr, {len(lrs)} in all")
        lr_schedules = [s if s is not None else cfg.lr_schedule for s in lr_schedules for _ in seeds]
    per_lr = {}
    for name, values, check in (("betas", betas, _check_betas), ("eps", eps, lambda e: check_positive_float(e, "eps"))):
        if values is None:
            continue
        if isinstance(values, (str, bytes)) or not hasattr(values, "__len__") or len(values) != len(lrs):
            raise ValueError(f"{name} must hold one value per lr, {len(lrs)} in all, got {values!r}")
        per_lr[name] = [check(v) for v in values for _ in seeds]
    models = []
    for _ in lrs:
        for seed in seeds:
            seeding.manual_seed(seed)
            models.append(make_model())
    check_same_dtype(data[0], models[0])
    params, _ = stack_module_state(models)
    params = {k: v.detach() for k, v in params.items()}
    run_lrs = [lr for lr in lrs for _ in seeds]
    run_seeds = [s for _ in lrs for s in seeds]
    hist = _fit(models[0], params, data, cfg, run_lrs, run_seeds, lr_schedules=lr_schedules, orders=orders,
                stop_rule=stop_rule, snapshots=snapshots, **per_lr)
    hist.params = params
    return hist


def measure_noise(make_model, hist, data, rows, chunk=16):
    """Fill in hist.b_simple and hist.b_simple_at_stop of the runs `rows` from a History that train_many kept with
    snapshots=True, in place: the values train_many would have logged. Introduced in chapter 2.2.

    A sweep keeps every run's parameters and measures B_simple only for the runs it tunes. The snapshots (and the
    parameters where a run stopped at its target) are measured `chunk` at a time over the whole of data's X_train.
    """
    if hist.snapshots is None:
        raise ValueError("the History kept no snapshots: train with train_many(..., snapshots=True) and "
                         "cfg.noise_growth set")
    rows = np.arange(len(hist.reached_at))[rows]
    check_positive_int(chunk, "chunk")
    X, y = data[0], data[1]
    model = make_model()
    names = stacked_mlp.layer_names(model)
    forward = _batched(model) if names is None else stacked_mlp.StackedMLP(names)
    rr, ii = np.nonzero(hist.snapshot_taken[rows])  # (run, noise step) pairs to measure
    pairs = [({k: v[rows[r], i] for k, v in hist.snapshots.items()}, (rows[r], i)) for r, i in zip(rr, ii)]
    pairs += [({k: v[r] for k, v in hist.params.items()}, r) for r in rows if hist.reached_at[r] >= 0]
    for start in range(0, len(pairs), chunk):
        part = pairs[start:start + chunk]
        params = {k: torch.stack([p[k] for p, _ in part]) for k in hist.snapshots}
        with torch.no_grad():
            values = _noise_scale(model, forward, params, X, y).numpy()
        for (_, where), value in zip(part, values):
            if isinstance(where, tuple):
                hist.b_simple[where] = value
            else:
                hist.b_simple_at_stop[where] = value
    return hist


# ---------------------------------------------------------------------------------------------------------------
# trained runs, evaluated on other data (chapter 5.1)


def _check_stacked(model, params, X, y=None):
    """Raise unless params are stacked parameters {name: (num_runs, ...)} of model and (X, y) labelled examples."""
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    shapes = {k: v.shape for k, v in model.named_parameters()}
    if not isinstance(params, dict) or set(params) != set(shapes) \
            or not all(isinstance(v, torch.Tensor) and v.shape[1:] == shapes[k] for k, v in params.items()):
        raise ValueError("params must map each parameter name of model to a tensor (num_runs, *its shape), "
                         "e.g. History.params")
    if len({len(v) for v in params.values()}) != 1 or len(next(iter(params.values()))) == 0:
        raise ValueError(f"params must hold the same number of runs, one or more, for every name, got "
                         f"{ {k: len(v) for k, v in params.items()} }")
    check_data(X, X if y is None else y, floating=not _takes_tokens(model))  # (X, X): X alone
    if y is not None and y.dtype != torch.long:
        raise TypeError(f"y must hold integer class labels (torch.long), got dtype {y.dtype}")


def evaluate(model, params, X, y):
    """Cross-entropy and accuracy on (X, y) of every run of stacked parameters: two arrays (num_runs,).

    Introduced in chapter 5.1 (the claims no other chapter tests). `params` is {name: (num_runs, ...)}, e.g.
    `History.params`, and `model` a module of the same architecture, e.g. `models.MLP()`; its buffers serve
    every run. The numbers are those `train_many` logs at an evaluation.
    """
    _check_stacked(model, params, X, y)
    loss, acc = _evaluate(_batched(model), params, X, y)
    return loss.numpy(), acc.numpy()


def predict(model, params, X):
    """Predicted classes (num_runs, N) of every run of stacked parameters on X (next tokens (num_runs, N, T) for token
    sequences). Introduced in chapter 5.1."""
    _check_stacked(model, params, X)
    with torch.no_grad():
        return _batched(model)(params, X, shared=True).argmax(-1)


def recall_per_class(model, params, X, y):
    """Recall of each class (num_runs, num_classes) of every run of stacked parameters on (X, y).

    Introduced in chapter 5.1 (class imbalance): the fraction of the examples of class k predicted as k, NaN
    for a class with no example in y.
    """
    _check_stacked(model, params, X, y)
    with torch.no_grad():
        logits = _batched(model)(params, X, shared=True)  # (num_runs, N, num_classes)
    pred = logits.argmax(-1)
    return torch.stack([(pred[:, y == k] == k).double().mean(1) for k in range(logits.shape[-1])], 1).numpy()

# ---------------------------------------------------------------------------------------------------------------
# schedules: plain callables of the step (chapter 3)


def _check_steps(value, name):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
    return int(value)


def constant():
    """The factor 1 at every step. Introduced in chapter 3 (learning-rate scaling)."""
    return lambda step: 1.0


def warmup(num_steps, start=None):
    """Linear warmup from `start` at step 0 to 1 at step num_steps, then 1 (torch's LinearLR).

    Introduced in chapter 3 (learning-rate scaling). `start` defaults to 1 / num_steps.
    """
    num_steps = _check_steps(num_steps, "num_steps")
    if num_steps == 0:
        return constant()
    start = 1 / num_steps if start is None else check_positive_float(start, "start")
    return lambda step: 1.0 if step >= num_steps else start + (1 - start) * step / num_steps


def step_decay(milestones, factor=0.1):
    """Multiply by factor at each milestone step (torch's MultiStepLR): factor ** (milestones passed).

    Introduced in chapter 3 (learning-rate scaling). A factor above 1 grows the value instead, as a
    batch-size schedule does.
    """
    milestones = sorted(_check_steps(m, "milestones") for m in milestones)
    factor = check_positive_float(factor, "factor")
    return lambda step: factor ** sum(step >= m for m in milestones)


def cosine(num_steps, final=0.0):
    """Cosine decay from 1 to `final` over num_steps, then `final` (torch's CosineAnnealingLR, eta_min = final).

    Introduced in chapter 3 (learning-rate scaling).
    """
    num_steps = check_positive_int(num_steps, "num_steps")
    if isinstance(final, bool) or not isinstance(final, (int, float)) or not 0 <= final <= 1:
        raise ValueError(f"final must be a number in [0, 1], got {final!r}")
    return lambda step: final + (1 - final) * (1 + np.cos(np.pi * min(step, num_steps) / num_steps)) / 2


def chain(*schedules):
    """The product of several schedules at each step, e.g. chain(warmup(100), cosine(1000)).

    Introduced in chapter 3 (learning-rate scaling).
    """
    if not schedules or not all(callable(s) for s in schedules):
        raise TypeError("chain needs one or more callables of the step")
    return lambda step: float(np.prod([s(step) for s in schedules]))


def batch_schedule(batch_size, milestones, factor):
    """Batch size that is multiplied by factor at each milestone step (rounded): Smith et al.'s schedule.

    Introduced in chapter 3 (learning-rate scaling). Use as TrainConfig(batch_schedule=...).
    """
    check_positive_int(batch_size, "batch_size")
    grow = step_decay(milestones, factor)
    return lambda step: int(round(batch_size * grow(step)))


@dataclass
class Sweep:
    """Final results of a batch-size x learning-rate grid. Introduced in chapter 3 (learning-rate scaling)."""

    batch_sizes: np.ndarray  # (num_batch_sizes,)
    lrs: np.ndarray  # (num_lrs,)
    test_acc: np.ndarray  # (num_batch_sizes, num_lrs, num_seeds); NaN where the run diverged or was not trained
    test_loss: np.ndarray  # same shape
    diverged: np.ndarray  # bool, same shape
    histories: list  # one History per batch size, its trained lrs in grid order, runs lr-major as in train_many
    trained: np.ndarray = None  # bool (num_batch_sizes, num_lrs): False where an lr_window left the cell out

    def best(self):
        """Per batch size, the tuned lr (`tune`'s rule on the final test accuracy), its median accuracy over the
        seeds and the seeds' standard error of the mean: three arrays (num_batch_sizes,). Introduced in chapter 3."""
        lrs, acc, sem = (np.full(len(self.batch_sizes), np.nan) for _ in range(3))
        trained = np.ones(self.test_acc.shape[:2], bool) if self.trained is None else self.trained
        for i in range(len(self.batch_sizes)):
            k = tune.best_index(self.test_acc[i], self.diverged[i] | ~trained[i][:, None])
            if k is not None:
                seeds = self.test_acc[i, k]
                lrs[i], acc[i], sem[i] = self.lrs[k], np.median(seeds), seeds.std(ddof=1) / np.sqrt(len(seeds))
        return lrs, acc, sem

    def near_best_lrs(self, z=2.0):
        """Per batch size, the smallest and largest trained lr within the seeds' noise of the tuned one on the final
        test accuracy (`tune.near_best`): two arrays (num_batch_sizes,). Introduced in chapter 3."""
        lo, hi = np.full(len(self.batch_sizes), np.nan), np.full(len(self.batch_sizes), np.nan)
        trained = np.ones(self.test_acc.shape[:2], bool) if self.trained is None else self.trained
        for i in range(len(self.batch_sizes)):
            lrs, t = self.lrs[trained[i]], trained[i]
            mask = tune.near_best(self.test_acc[i][t], self.diverged[i][t], z=z)
            if mask.any():
                lo[i], hi[i] = lrs[mask].min(), lrs[mask].max()
        return lo, hi

    def seeds_at(self, batch_size, lr):
        """Final test accuracy of every seed (NaN where it diverged) at this batch size and the grid lr nearest
        `lr` (in log). Introduced in chapter 3."""
        rows = np.flatnonzero(self.batch_sizes == batch_size)
        if len(rows) != 1:
            raise ValueError(f"batch_size must be one of the sweep's {self.batch_sizes.tolist()}, got {batch_size!r}")
        j = int(np.argmin(np.abs(np.log(self.lrs / check_positive_float(lr, "lr")))))
        return np.where(self.diverged[rows[0], j], np.nan, self.test_acc[rows[0], j])


def _stack_histories(hists):
    """Rows of several Histories of the same config, one after another."""
    def rows(name):
        return np.concatenate([getattr(h, name) for h in hists])

    params = {k: torch.cat([h.params[k] for h in hists]) for k in hists[0].params}
    return History(rows("train_loss"), rows("train_acc"), hists[0].eval_steps, rows("test_loss"), rows("test_acc"),
                   rows("diverged"), rows("diverged_at"), rows("reached_at"), params,
                   None if hists[0].grad_norm is None else rows("grad_norm"))


def sweep(make_model, data, batch_sizes, lrs, seeds=(0,), cfg=TrainConfig(), num_epochs=None, lr_window=None,
          threads=None):
    """Train every (batch size, lr, seed) with `train_many`, one batched call per batch size.

    Introduced in chapter 3 (learning-rate scaling). With num_epochs, each batch size gets
    num_epochs * (N // B) steps (a budget of examples); otherwise cfg.num_steps (a budget of steps).
    With lr_window=(low, high), batch sizes run in increasing order: the smallest trains the whole grid, and
    each larger one only the grid learning rates within low to high times the previous batch size's best
    (`tune`'s rule on the final test accuracy: the best median over seeds, a diverged seed the worst, ties to
    the larger lr), one more grid point at a time while its best sits on an edge of those trained. It rests on
    the best lr not falling as the batch grows, and on an lr above a diverged one diverging too; the edge rule
    catches a best that does fall. `threads` sets torch's thread count for the training calls, within
    `hardware.thread_limit()` (`hardware.sweep_threads`, as `scaling.sweep_steps`); None keeps the current setting.
    """
    call_threads = hardware.sweep_threads(threads)
    batch_sizes = [check_positive_int(int(b), "batch_sizes") for b in np.atleast_1d(batch_sizes)]
    lrs, seeds = np.atleast_1d(np.asarray(lrs, dtype=float)), list(np.atleast_1d(seeds))
    if lr_window is not None:
        if (not isinstance(lr_window, (tuple, list)) or len(lr_window) != 2
                or not all(isinstance(w, (int, float)) and not isinstance(w, bool) for w in lr_window)
                or not 0 < lr_window[0] <= 1 <= lr_window[1] < np.inf):
            raise ValueError(f"lr_window must be None or (low, high) with 0 < low <= 1 <= high, got {lr_window!r}")
        batch_sizes = sorted(batch_sizes)
    shape = (len(batch_sizes), len(lrs), len(seeds))
    acc, loss, div = np.full(shape, np.nan), np.full(shape, np.nan), np.zeros(shape, bool)
    trained = np.zeros(shape[:2], bool)
    histories, best = [], None
    for i, batch_size in enumerate(batch_sizes):
        steps = cfg.num_steps if num_epochs is None else \
            check_positive_int(num_epochs, "num_epochs") * (len(data[0]) // batch_size)
        run_cfg = replace(cfg, batch_size=batch_size, num_steps=steps, eval_every=steps, progress=False)
        if lr_window is None or best is None:
            todo = list(range(len(lrs)))
        else:
            low, high = lr_window[0] * lrs[best] * (1 - 1e-9), lr_window[1] * lrs[best] * (1 + 1e-9)
            todo = [j for j in range(len(lrs)) if low <= lrs[j] <= high] or [best]
        calls = []

        def run(new, _best_lr, i=i, run_cfg=run_cfg, calls=calls):
            cols = [int(np.flatnonzero(lrs == lr)[0]) for lr in new]
            with hardware.num_threads(call_threads):
                hist = train_many(make_model, data, lrs[cols], seeds, run_cfg)
            calls.append((cols, hist))
            for name, out in (("test_acc", acc), ("test_loss", loss)):
                out[i, cols] = getattr(hist, name)[:, -1].reshape(len(cols), len(seeds))
            div[i, cols] = hist.diverged.reshape(len(cols), len(seeds))
            trained[i, cols] = True
            return {lr: tune.Trial(acc[i, j], div[i, j]) for lr, j in zip(new, cols)}

        tried, k, _ = tune.search(lrs if lr_window is not None else lrs[todo], lrs[todo], run)
        best = None if k is None else int(np.flatnonzero(lrs == tried[k])[0])
        acc[i][div[i]], loss[i][div[i]] = np.nan, np.nan
        if len(calls) == 1:
            merged = calls[0][1]
        else:  # the calls' runs, put back in grid order
            merged = _stack_histories([h for _, h in calls])
            order = np.argsort(np.concatenate([np.repeat(t, len(seeds)) for t, _ in calls]), kind="stable")
            for name in ("train_loss", "train_acc", "test_loss", "test_acc", "diverged", "diverged_at", "reached_at",
                         "grad_norm"):
                if getattr(merged, name) is not None:
                    setattr(merged, name, getattr(merged, name)[order])
            merged.params = {k: v[torch.from_numpy(order)] for k, v in merged.params.items()}
        histories.append(merged)
    return Sweep(np.array(batch_sizes), lrs, acc, loss, div, histories, trained)
