"""Fast, seeded mini-batch SGD for the lessons: one run, or many runs (learning rates, seeds) as one model.

Data stay as tensors and are shuffled with `torch.randperm`: no DataLoader. Several runs are trained at once
by stacking their parameters and mapping the model over them with `torch.func.vmap`, so a learning-rate or
seed sweep is a single tensor program. Each run draws its initialisation and its data order from its own
seed, so a run gives the same numbers alone or inside a sweep. A run whose loss becomes NaN, infinite or
`divergence_factor` times its first loss is stopped and reported as diverged.
"""
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import functional_call, stack_module_state
from tqdm.auto import tqdm

from ._checks import check_batch_size, check_data, check_positive_float, check_positive_int


@dataclass
class TrainConfig:
    """Defaults for a training run; a lesson changes only the knob it teaches. Introduced in chapter 1."""

    lr: float = 0.1  # learning rate of SGD
    batch_size: int = 64  # examples per step, drawn without replacement within an epoch
    num_steps: int = 1000  # optimisation steps (an epoch is len(X) // batch_size steps)
    momentum: float = 0.0  # heavy-ball momentum, PyTorch convention
    weight_decay: float = 0.0  # L2 penalty added to the gradient
    seed: int = 0  # seeds the initialisation (train_many) and the data order
    eval_every: int = 100  # steps between evaluations on the test set
    divergence_factor: float = 100.0  # loss this many times the first loss counts as diverged
    progress: bool = True  # show a tqdm.auto progress bar


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


def _batch_order(num_examples, batch_size, num_steps, seed):
    """Indices (num_steps, batch_size): reshuffled every epoch from the run's own seed."""
    gen = torch.Generator().manual_seed(int(seed))
    steps_per_epoch = num_examples // batch_size
    num_epochs = -(-num_steps // steps_per_epoch)
    perms = [torch.randperm(num_examples, generator=gen)[: steps_per_epoch * batch_size] for _ in range(num_epochs)]
    return torch.cat(perms).view(-1, batch_size)[:num_steps]


def _check_config(cfg, X, y, X_test, y_test, lrs):
    if not isinstance(cfg, TrainConfig):
        raise TypeError(f"cfg must be a TrainConfig, got {type(cfg).__name__}")
    num_examples = check_data(X, y)
    check_data(X_test, y_test)
    check_batch_size(cfg.batch_size, num_examples)
    check_positive_int(cfg.num_steps, "num_steps")
    check_positive_int(cfg.eval_every, "eval_every")
    for lr in lrs:
        check_positive_float(lr, "lr")
    if not 0 <= cfg.momentum < 1:
        raise ValueError(f"momentum must be in [0, 1), got {cfg.momentum}")
    if cfg.weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0, got {cfg.weight_decay}")
    for name, labels in (("y", y), ("y_test", y_test)):
        if labels.dtype != torch.long:
            raise TypeError(f"{name} must hold integer class labels (torch.long), got dtype {labels.dtype}")


def _fit(model, params, data, cfg, lrs, seeds, callback=None):
    """Train stacked parameters {name: (num_runs, ...)} in place; the core of train and train_many."""
    X, y, X_test, y_test = data
    _check_config(cfg, X, y, X_test, y_test, lrs)
    num_runs = len(lrs)
    buffers = {k: v.expand(num_runs, *v.shape) for k, v in model.named_buffers()}

    def run_logits(p, b, x):
        return functional_call(model, (p, b), (x,))

    batched = torch.func.vmap(run_logits)  # each run gets its own inputs
    shared = torch.func.vmap(run_logits, in_dims=(0, 0, None))  # every run sees the same inputs
    order = torch.stack([_batch_order(len(X), cfg.batch_size, cfg.num_steps, s) for s in seeds], 1)
    lr = torch.tensor(lrs, dtype=X.dtype)  # (num_runs,)
    velocity = {k: torch.zeros_like(v) for k, v in params.items()}
    initial = {k: v.detach().clone() for k, v in params.items()}
    active = torch.ones(num_runs, dtype=torch.bool)
    diverged_at = np.full(num_runs, -1)
    train_loss = np.full((num_runs, cfg.num_steps), np.nan)
    train_acc = np.full((num_runs, cfg.num_steps), np.nan)
    eval_steps = np.arange(0, cfg.num_steps + 1, cfg.eval_every)
    if eval_steps[-1] != cfg.num_steps:
        eval_steps = np.append(eval_steps, cfg.num_steps)
    test_loss = np.full((num_runs, len(eval_steps)), np.nan)
    test_acc = np.full((num_runs, len(eval_steps)), np.nan)
    first_loss = None

    def evaluate(i):
        with torch.no_grad():
            logits = shared(params, buffers, X_test)  # (num_runs, num_test, num_classes)
            loss = F.cross_entropy(logits.flatten(0, 1), y_test.repeat(num_runs), reduction="none")
            test_loss[:, i] = torch.where(active, loss.view(num_runs, -1).mean(1), np.nan).numpy()
            acc = (logits.argmax(-1) == y_test).double().mean(1)
            test_acc[:, i] = torch.where(active, acc, np.nan).numpy()

    evaluate(0)
    for step in tqdm(range(cfg.num_steps), disable=not cfg.progress, leave=False, desc="training"):
        idx = order[step]  # (num_runs, batch_size)
        xb, yb = X[idx], y[idx]  # (num_runs, batch_size, ...)
        for v in params.values():
            v.requires_grad_(True)
        logits = batched(params, buffers, xb)  # (num_runs, batch_size, num_classes)
        loss = F.cross_entropy(logits.flatten(0, 1), yb.flatten(), reduction="none").view(num_runs, -1).mean(1)
        grads = torch.autograd.grad(loss.sum(), list(params.values()))
        with torch.no_grad():
            if first_loss is None:
                first_loss = loss.detach().clone()
            blown = active & (~torch.isfinite(loss) | (loss > cfg.divergence_factor * first_loss))
            if blown.any():
                diverged_at[blown.numpy()] = step
                active &= ~blown
            train_loss[:, step] = torch.where(active, loss, np.nan).numpy()
            train_acc[:, step] = torch.where(active, (logits.argmax(-1) == yb).double().mean(1), np.nan).numpy()
            step_lr = torch.where(active, lr, 0.0)
            for (name, p), g in zip(params.items(), grads):
                shape = (num_runs,) + (1,) * (p.ndim - 1)
                g = torch.where(active.view(shape), g, 0.0)  # a diverged run's NaNs stay out of the update
                if cfg.weight_decay:
                    g = g + cfg.weight_decay * p
                v = velocity[name].mul_(cfg.momentum).add_(g) if cfg.momentum else g
                p.sub_(step_lr.view(shape) * v)
                p.copy_(torch.where(active.view(shape), p, initial[name]))  # park diverged runs on finite values
            if (step + 1) in eval_steps:
                evaluate(int(np.searchsorted(eval_steps, step + 1)))
        if callback is not None and (step + 1) % cfg.eval_every == 0:
            callback(step + 1, params)
    for v in params.values():
        v.requires_grad_(False)
    return History(train_loss, train_acc, eval_steps, test_loss, test_acc, diverged_at >= 0, diverged_at)


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
                   hist.diverged[0], hist.diverged_at[0])


def train_many(make_model, data, lrs, seeds=(0,), cfg=TrainConfig()):
    """Train every (lr, seed) pair at once as one batched model; History arrays are (len(lrs) * len(seeds), ...).

    Introduced in chapter 1 (gradient variance). Runs are ordered lr-major: run i has
    lr = lrs[i // len(seeds)] and seed = seeds[i % len(seeds)]. Run (lr, seed) starts from
    `torch.manual_seed(seed); make_model()` and matches `train` with that seed.
    """
    lrs, seeds = list(np.atleast_1d(lrs).astype(float)), [int(s) for s in np.atleast_1d(seeds)]
    if not lrs or not seeds:
        raise ValueError("lrs and seeds must each hold at least one value")
    models = []
    for _ in lrs:
        for seed in seeds:
            torch.manual_seed(seed)
            models.append(make_model())
    params, _ = stack_module_state(models)
    params = {k: v.detach() for k, v in params.items()}
    run_lrs = [lr for lr in lrs for _ in seeds]
    run_seeds = [s for _ in lrs for s in seeds]
    return _fit(models[0], params, data, cfg, run_lrs, run_seeds)
