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
"""
from dataclasses import dataclass, field, replace

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import functional_call, stack_module_state
from tqdm.auto import tqdm

from . import seeding, tune
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
    target: float | None = None  # stop a run at the first evaluation where target_metric reaches this
    target_metric: str = "test_acc"  # "test_acc" (reached when >= target) or "test_loss" (when <= target)
    eval_growth: float = 1.0  # > 1: evaluation gaps grow geometrically, at least eval_every steps apart
    optimizer: str = "sgd"  # "sgd" (with `momentum`), "adam" (L2 `weight_decay`) or "adamw" (decoupled)
    betas: tuple = (0.9, 0.999)  # Adam's decay rates of the first and second moment
    eps: float = 1e-8  # Adam's denominator offset
    lr_schedule: object = None  # None or a callable step -> factor on the learning rate
    batch_schedule: object = None  # None or a callable step -> batch size (overrides batch_size from step 0)


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


def _fit(model, params, data, cfg, lrs, seeds, callback=None, lr_schedules=None, betas=None, eps=None):
    """Train stacked parameters {name: (num_runs, ...)} in place; the core of train and train_many.

    Only live runs (neither diverged nor at their target) are computed: when a run stops, its parameters are
    written back to `params` and the batched model shrinks to the runs still going. `lr_schedules` holds one
    schedule (or None) per run; None everywhere falls back to cfg.lr_schedule. `betas` and `eps` hold Adam's
    settings per run; None falls back to cfg.betas and cfg.eps.
    """
    X, y, X_test, y_test = data
    _check_config(cfg, X, y, X_test, y_test, lrs)
    num_runs = len(lrs)
    betas = [cfg.betas] * num_runs if betas is None else [_check_betas(b) for b in betas]
    eps = [cfg.eps] * num_runs if eps is None else [check_positive_float(e, "eps") for e in eps]
    if len(betas) != num_runs or len(eps) != num_runs:
        raise ValueError(f"betas and eps must hold one value per run, {num_runs} in all")
    if lr_schedules is None:
        lr_schedules = [cfg.lr_schedule] * num_runs
    schedules = [s if s is not None else (lambda step: 1.0) for s in lr_schedules]
    scheduled = any(s is not None for s in lr_schedules)
    model_buffers = dict(model.named_buffers())

    def run_logits(p, b, x):
        return functional_call(model, (p, b), (x,))

    batched = torch.func.vmap(run_logits)  # each run gets its own inputs
    shared = torch.func.vmap(run_logits, in_dims=(0, 0, None))  # every run sees the same inputs
    orders = _Orders(len(X), cfg.batch_size, seeds)
    live = torch.arange(num_runs)  # run numbers still training
    lp = {k: v.detach().clone() for k, v in params.items()}  # live parameters (len(live), ...)
    initial = {k: v.detach().clone() for k, v in params.items()}
    # optimizer state per parameter, (len(live), ...): SGD's velocity, Adam's moments
    state = {s: {k: torch.zeros_like(v) for k, v in lp.items()} for s in ("velocity", "exp_avg", "exp_avg_sq")}
    beta1 = np.array([b[0] for b in betas])  # (len(live),), float64 as torch.optim keeps them
    beta2 = np.array([b[1] for b in betas])
    run_eps = np.array(eps)  # (len(live),)
    lr = torch.tensor(lrs, dtype=X.dtype)  # (len(live),)
    first_loss = None  # (len(live),)
    diverged_at = np.full(num_runs, -1)
    reached_at = np.full(num_runs, -1)
    train_loss = np.full((num_runs, cfg.num_steps), np.nan)
    train_acc = np.full((num_runs, cfg.num_steps), np.nan)
    eval_steps = _eval_steps(cfg.num_steps, cfg.eval_every, cfg.eval_growth)
    test_loss = np.full((num_runs, len(eval_steps)), np.nan)
    test_acc = np.full((num_runs, len(eval_steps)), np.nan)

    def buffers():
        return {k: v.expand(len(live), *v.shape) for k, v in model_buffers.items()}

    def drop(stop, parked):
        """Remove the live runs flagged in `stop` (bool, (len(live),)), writing back their parameters."""
        nonlocal live, lr, first_loss, beta1, beta2, run_eps
        keep = ~stop
        for k in lp:
            params[k][live[stop]] = initial[k][live[stop]] if parked else lp[k][stop]
            lp[k] = lp[k][keep]
            for s in state.values():
                s[k] = s[k][keep]
        lr, live = lr[keep], live[keep]
        beta1, beta2, run_eps = beta1[keep.numpy()], beta2[keep.numpy()], run_eps[keep.numpy()]
        if first_loss is not None:
            first_loss = first_loss[keep]

    def evaluate(i, step):
        if len(live) == 0:  # every run has diverged or answered: nothing left to evaluate
            return
        with torch.no_grad():
            logits = shared(lp, buffers(), X_test)  # (len(live), num_test, num_classes)
            loss = F.cross_entropy(logits.flatten(0, 1), y_test.repeat(len(live)), reduction="none")
            loss = loss.view(len(live), -1).mean(1)
            acc = (logits.argmax(-1) == y_test).double().mean(1)
        test_loss[live.numpy(), i], test_acc[live.numpy(), i] = loss.numpy(), acc.numpy()
        if cfg.target is not None:
            done = acc >= cfg.target if cfg.target_metric == "test_acc" else loss <= cfg.target
            if done.any():
                reached_at[live[done].numpy()] = step
                drop(done, parked=False)

    evaluate(0, 0)
    for step in tqdm(range(cfg.num_steps), disable=not cfg.progress, leave=False, desc="training"):
        if len(live) == 0:
            break  # every run has answered
        if cfg.batch_schedule is None:
            idx = orders.batch(step, live)  # (len(live), batch_size)
        else:
            batch_size = check_batch_size(int(round(_schedule_value(cfg.batch_schedule, step, "batch_schedule"))),
                                          len(X))
            idx = orders.take(live, batch_size)
        xb, yb = X[idx], y[idx]  # (len(live), batch_size, ...)
        for v in lp.values():
            v.requires_grad_(True)
        logits = batched(lp, buffers(), xb)  # (len(live), batch_size, num_classes)
        loss = F.cross_entropy(logits.flatten(0, 1), yb.flatten(), reduction="none").view(len(live), -1).mean(1)
        grads = torch.autograd.grad(loss.sum(), list(lp.values()))
        with torch.no_grad():
            for v in lp.values():
                v.requires_grad_(False)
            if first_loss is None:
                first_loss = loss.detach().clone()
            blown = ~torch.isfinite(loss) | (loss > cfg.divergence_factor * first_loss)
            rows = live.numpy()
            train_loss[rows, step] = torch.where(blown, np.nan, loss).numpy()
            acc = (logits.argmax(-1) == yb).double().mean(1)
            train_acc[rows, step] = torch.where(blown, np.nan, acc).numpy()
            if blown.any():
                diverged_at[live[blown].numpy()] = step
                grads = [g[~blown] for g in grads]
                drop(blown, parked=True)  # parked on their finite initial values
            step_lr = lr
            if cfg.optimizer != "sgd":  # Adam's constants: floats when every run shares them, else (len(live),)
                adam = [beta1, beta2, 1 - beta1, 1 - beta2, 1 - beta1 ** (step + 1), np.sqrt(1 - beta2 ** (step + 1)),
                        run_eps]
                if len(set(zip(beta1, beta2, run_eps))) <= 1:
                    adam = [float(a[0]) if len(a) else 0.0 for a in adam]
                else:
                    adam = [torch.tensor(a, dtype=lr.dtype) for a in adam]
                b1, b2, c1, c2, bias1, bias2_sqrt, run_e = adam
            if scheduled:
                factors = [_schedule_value(schedules[r], step, "lr_schedule") for r in live.tolist()]
                step_lr = lr * torch.tensor(factors, dtype=lr.dtype)
            for (name, p), g in zip(lp.items(), grads):
                shape = (len(live),) + (1,) * (p.ndim - 1)
                run_lr = step_lr.view(shape)
                if cfg.optimizer == "adamw":
                    p.mul_(1 - run_lr * cfg.weight_decay)  # decoupled weight decay, as torch.optim.AdamW
                elif cfg.weight_decay:
                    g = g + cfg.weight_decay * p
                if cfg.optimizer == "sgd":
                    v = state["velocity"][name].mul_(cfg.momentum).add_(g) if cfg.momentum else g
                    p.sub_(run_lr * v)
                elif isinstance(b1, float):  # torch.optim.Adam's update, bias-corrected
                    m = state["exp_avg"][name].mul_(b1).add_(g, alpha=c1)
                    v2 = state["exp_avg_sq"][name].mul_(b2).addcmul_(g, g, value=c2)
                    denom = (v2.sqrt() / bias2_sqrt).add_(run_e)
                    p.sub_(run_lr / bias1 * m / denom)
                else:  # the same with each run's betas and eps
                    m = state["exp_avg"][name].mul_(b1.view(shape)).add_(c1.view(shape) * g)
                    v2 = state["exp_avg_sq"][name].mul_(b2.view(shape)).add_(c2.view(shape) * g * g)
                    denom = (v2.sqrt() / bias2_sqrt.view(shape)).add_(run_e.view(shape))
                    p.sub_(run_lr / bias1.view(shape) * m / denom)
            if (step + 1) in eval_steps:
                evaluate(int(np.searchsorted(eval_steps, step + 1)), step + 1)
        if callback is not None and (step + 1) % cfg.eval_every == 0 and len(live):
            for k in lp:
                params[k][live] = lp[k]
            callback(step + 1, params)
    for k in lp:
        params[k][live] = lp[k]
    return History(train_loss, train_acc, eval_steps, test_loss, test_acc, diverged_at >= 0, diverged_at,
                   reached_at)


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
                   hist.diverged[0], hist.diverged_at[0], hist.reached_at[0])


def train_many(make_model, data, lrs, seeds=(0,), cfg=TrainConfig(), lr_schedules=None, betas=None, eps=None):
    """Train every (lr, seed) pair at once as one batched model; History arrays are (len(lrs) * len(seeds), ...).

    Introduced in chapter 1 (gradient variance). Runs are ordered lr-major: run i has
    lr = lrs[i // len(seeds)] and seed = seeds[i % len(seeds)]. Run (lr, seed) starts from
    `seeding.manual_seed(seed); make_model()` and matches `train` with that seed. `lr_schedules` (chapter 3):
    None (every run follows cfg.lr_schedule) or one schedule per lr, so each lr may have its own. `betas` and
    `eps` (chapter 3, Adam and AdamW): None (cfg.betas and cfg.eps for every run) or one (beta1, beta2) pair,
    and one eps, per lr.
    """
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
    params, _ = stack_module_state(models)
    params = {k: v.detach() for k, v in params.items()}
    run_lrs = [lr for lr in lrs for _ in seeds]
    run_seeds = [s for _ in lrs for s in seeds]
    hist = _fit(models[0], params, data, cfg, run_lrs, run_seeds, lr_schedules=lr_schedules, **per_lr)
    hist.params = params
    return hist


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
                   rows("diverged"), rows("diverged_at"), rows("reached_at"), params)


def sweep(make_model, data, batch_sizes, lrs, seeds=(0,), cfg=TrainConfig(), num_epochs=None, lr_window=None):
    """Train every (batch size, lr, seed) with `train_many`, one batched call per batch size.

    Introduced in chapter 3 (learning-rate scaling). With num_epochs, each batch size gets
    num_epochs * (N // B) steps (a budget of examples); otherwise cfg.num_steps (a budget of steps).
    With lr_window=(low, high), batch sizes run in increasing order: the smallest trains the whole grid, and
    each larger one only the grid learning rates within low to high times the previous batch size's best
    (`tune`'s rule on the final test accuracy: the best median over seeds, a diverged seed the worst, ties to
    the larger lr), one more grid point at a time while its best sits on an edge of those trained. It rests on
    the best lr not falling as the batch grows, and on an lr above a diverged one diverging too; the edge rule
    catches a best that does fall.
    """
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
            for name in ("train_loss", "train_acc", "test_loss", "test_acc", "diverged", "diverged_at", "reached_at"):
                setattr(merged, name, getattr(merged, name)[order])
            merged.params = {k: v[torch.from_numpy(order)] for k, v in merged.params.items()}
        histories.append(merged)
    return Sweep(np.array(batch_sizes), lrs, acc, loss, div, histories, trained)
