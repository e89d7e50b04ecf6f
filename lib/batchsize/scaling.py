"""Steps to a result and final accuracy against batch size: the sweeps, the critical-batch fit, sharpness.

The sweep (Shallue et al. 2019) trains, for each batch size, a window of learning rates x seeds as one batched
model (`train.train_many`) that stops each run at the hardest target, and reads off the first step at which each
run reaches each target. The fit is McCandlish et al.'s (2018) S(B) = S_min (1 + B_crit / B), equivalently
E(B) = B S(B) = E_min (1 + B / B_crit) with E_min = S_min B_crit. Sharpness is the top eigenvalue of the
training-loss Hessian, found by power iteration on Hessian-vector products. The generalization sweep (chapter 2's
section on generalization) trains each batch size for a fixed budget, tunes its learning rate on held-out data and
reports the final loss and accuracy of the tuned runs on the training and the test set. The holdout tuning
(chapter 3) does the same at one batch size and keeps the test accuracy of every run, for rules applied beside it.
"""
import functools
from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import functional_call

from . import _memo, seeding, tune
from .hardware import num_threads, sweep_threads
from ._checks import as_positive_array, check_data, check_positive_float, check_positive_int
from .steps import trainable_parameters
from .train import TrainConfig, measure_noise, train_many


# ----------------------------------------------------------------------------------------------------------------
# steps to target


def steps_to_target(eval_steps, values, targets, metric="test_loss"):
    """First evaluation step at which each run reaches each target, (num_targets, num_runs); inf if never.

    Introduced in chapter 2 (batch-size trade-offs). `values` is a History's test_loss or test_acc,
    (num_runs, num_evals); a loss reaches a target at or below it, an accuracy at or above it. NaN (a run that
    stopped or diverged) never counts as reached.
    """
    if metric not in ("test_loss", "test_acc"):
        raise ValueError(f"metric must be 'test_loss' or 'test_acc', got {metric!r}")
    values = np.asarray(values, dtype=float)
    eval_steps = np.asarray(eval_steps)
    if values.ndim != 2 or values.shape[1] != len(eval_steps):
        raise ValueError(f"values must be (num_runs, {len(eval_steps)}), got shape {values.shape}")
    targets = np.atleast_1d(np.asarray(targets, dtype=float))  # (num_targets,)
    with np.errstate(invalid="ignore"):
        there = values[None] <= targets[:, None, None] if metric == "test_loss" else \
            values[None] >= targets[:, None, None]  # (num_targets, num_runs, num_evals)
    first = eval_steps[there.argmax(-1)].astype(float)
    return np.where(there.any(-1), first, np.inf)


def median_steps(steps):
    """Median over seeds (last axis) that is inf when half or more of the seeds never reached the target."""
    steps = np.asarray(steps, dtype=float)
    unreached = np.isinf(steps).sum(-1) * 2 >= steps.shape[-1]
    return np.where(unreached, np.inf, np.median(np.where(np.isinf(steps), np.inf, steps), axis=-1))


@dataclass
class StepsSweep:
    """Steps to each target at each batch size, at the learning rate tuned for it. Introduced in chapter 2."""

    batch_sizes: np.ndarray  # (num_batch_sizes,)
    targets: np.ndarray  # (num_targets,), hardest last
    seeds: np.ndarray  # (num_seeds,)
    steps: np.ndarray  # (num_targets, num_batch_sizes, num_seeds) at the tuned lr; inf if not reached
    best_lr: np.ndarray  # (num_targets, num_batch_sizes)
    tried: list  # per batch size: (lrs (num_lrs,), steps (num_targets, num_lrs, num_seeds), diverged (num_lrs, num_seeds))
    params: list  # per batch size: {name: (num_seeds, ...)} of the tuned runs for the hardest target, where they stopped
    num_runs: int  # training runs in all, the reruns included
    metric: str
    noise: list | None = None  # with cfg.noise_growth, per batch size {tuned lr: per seed (steps, B_simple)}
    grid: np.ndarray | None = None  # (num_lrs,) the learning rates the sweep could try

    @property
    def median(self):
        """Median steps over seeds, (num_targets, num_batch_sizes)."""
        return median_steps(self.steps)

    @property
    def on_grid_edge(self):
        """Whether each tuned learning rate is the grid's smallest or largest, bool (num_targets, num_batch_sizes):
        there the optimum may lie beyond the grid and the tuned steps overstate S(B). Introduced in chapter 2.2."""
        if self.grid is None:
            raise ValueError("this sweep does not know its grid (made without sweep_steps)")
        ends = np.array([self.grid.min(), self.grid.max()])
        return np.isclose(self.best_lr[..., None], ends, rtol=1e-9).any(-1)

    def near_best_lrs(self, target=-1, z=2.0):
        """Smallest and largest learning rate within the seed noise of the tuned one at each batch size, on log
        steps to the target (`tune.near_best`): two arrays (num_batch_sizes,)."""
        lo, hi = np.full(len(self.batch_sizes), np.nan), np.full(len(self.batch_sizes), np.nan)
        for j, (lrs, steps, _) in enumerate(self.tried):
            s = steps[target]  # (num_lrs, num_seeds)
            with np.errstate(divide="ignore"):
                mask = tune.near_best(np.log(s), np.isinf(s), higher_is_better=False, z=z)
            if mask.any():
                lo[j], hi[j] = lrs[mask].min(), lrs[mask].max()
        return lo, hi

    def b_simple_series(self, target=-1):
        """Per batch size, per seed: (steps, B_simple) logged along the run tuned for `target`. Introduced in 2.2."""
        if self.noise is None:
            raise ValueError("the sweep logged no noise scale: run sweep_steps with cfg.noise_growth set")
        return [[self.noise[j][lr][s] for s in range(len(self.seeds))]
                for j, lr in enumerate(self.best_lr[target])]

    def b_simple_at(self, target=-1):
        """B_simple of each tuned run where it reached the target, (num_batch_sizes, num_seeds): measured there for
        the hardest target, interpolated in log between the logged steps for the others; NaN where not reached.

        Introduced in chapter 2.2.
        """
        out = np.full(self.steps.shape[1:], np.nan)
        for j, per_seed in enumerate(self.b_simple_series(target)):
            for s, (steps, values) in enumerate(per_seed):
                reach = self.steps[target, j, s]
                if np.isfinite(reach) and len(steps):
                    out[j, s] = np.exp(np.interp(reach, steps, np.log(values)))
        return out

    def b_simple_along(self, target=-1):
        """B_simple of each tuned run averaged over its steps up to the target, every step weighing the same
        (trapezoids between the logged steps), (num_batch_sizes, num_seeds); NaN where not reached.

        Introduced in chapter 2.2.
        """
        at = self.b_simple_at(target)
        out = np.full(self.steps.shape[1:], np.nan)
        for j, per_seed in enumerate(self.b_simple_series(target)):
            for s, (steps, values) in enumerate(per_seed):
                reach = self.steps[target, j, s]
                if np.isfinite(at[j, s]) and reach > 0:
                    keep = steps < reach
                    out[j, s] = np.trapezoid(np.append(values[keep], at[j, s]), np.append(steps[keep], reach)) / reach
        return out


def _window_candidates(lrs, first_lrs, prev_lr, window):
    """Learning rates a batch size tries first: `first_lrs` (or all of `lrs`), else `lrs` within `window` x prev_lr."""
    if prev_lr is None:
        return lrs if first_lrs is None else np.sort(as_positive_array(first_lrs, "first_lrs"))
    lo, hi = window
    return lrs[(lrs >= lo * prev_lr * (1 - 1e-9)) & (lrs <= hi * prev_lr * (1 + 1e-9))]


def _runs_per_lr(new, num_seeds):
    """Each learning rate of a batched call with the slice of its seeds' runs, in the order trained."""
    return [(lr, slice(k * num_seeds, (k + 1) * num_seeds)) for k, lr in enumerate(new)]


def _check_window(window):
    """Raise unless window is (low, high) with 0 <= low <= 1 <= high."""
    lo, hi = window
    if not 0 <= lo <= 1 <= hi:
        raise ValueError(f"window must be (low, high) with 0 <= low <= 1 <= high, got {window!r}")


def _steps_inputs(batch_sizes, lrs, targets, seeds, metric, max_steps, window, slack):
    """`sweep_steps`'s checked arguments: batch sizes largest first, lrs, targets, seeds, hardest target, its index."""
    batch_sizes = np.sort(as_positive_array(batch_sizes, "batch_sizes", integer=True))[::-1]
    lrs = np.sort(as_positive_array(lrs, "lrs"))
    targets = np.atleast_1d(np.asarray(targets, dtype=float))
    if targets.ndim != 1 or not np.all(np.isfinite(targets)):
        raise ValueError(f"targets must be a finite number or 1-D sequence of numbers, got {targets!r}")
    hardest = targets.min() if metric == "test_loss" else targets.max()
    seeds = np.atleast_1d(np.asarray(seeds, dtype=int))
    check_positive_int(max_steps, "max_steps")
    _check_window(window)
    if np.isfinite(slack):
        check_positive_float(slack, "slack")
    hard = int(np.argmin(targets) if metric == "test_loss" else np.argmax(targets))
    return batch_sizes, lrs, targets, seeds, hardest, hard


@dataclass
class _StepsRuns:
    """What every training call of one `sweep_steps` shares, and the runs trained so far."""

    make_model: object
    data: tuple
    seeds: np.ndarray
    targets: np.ndarray
    metric: str
    hard: int  # index of the hardest target
    max_steps: int
    run_many: object  # train_many, or its memoised call
    stop_slower: bool = False
    num_runs: int = 0

    def steps(self, hist):
        """Steps to each target of every run of a History, (num_targets, num_runs)."""
        return steps_to_target(hist.eval_steps, getattr(hist, self.metric), self.targets, self.metric)


class _Noise:
    """The B_simple series of one learning rate's runs (`rows` of a History kept with snapshots), measured when first
    asked for: a sweep measures only the learning rates it tunes. `patch` {seed index: series} replaces reruns'."""

    def __init__(self, hist, rows):
        self.hist, self.rows, self.patch, self._series = hist, rows, {}, None

    def series(self, runs):
        """Per seed: (steps, B_simple) along the run, measured over runs.data's training set on first call."""
        if self._series is None:
            measure_noise(runs.make_model, self.hist, runs.data, self.rows)
            self._series = _noise_series(self.hist, self.rows)
        return [self.patch.get(s, series) for s, series in enumerate(self._series)]


class _TunedNoise(Mapping):
    """{tuned lr: per seed (steps, B_simple)} of one batch size, each measured (on `threads` threads, as the sweep's
    training calls) when first read: a page that reuses a sweep without its noise scale never pays for it."""

    def __init__(self, noises, runs, threads):
        self._noises, self._runs, self._threads = noises, runs, threads

    def __getitem__(self, lr):
        with num_threads(self._threads):
            return self._noises[lr].series(self._runs)

    def __iter__(self):
        return iter(self._noises)

    def __len__(self):
        return len(self._noises)


def _noise_series(hist, rows):
    """Per run of `rows`: (steps, B_simple) logged along it, its value where it stopped at the target included."""
    out = []
    for r in range(rows.start, rows.stop):
        ok = np.isfinite(hist.b_simple[r])
        steps, values = hist.noise_steps[ok].astype(float), hist.b_simple[r, ok]
        stop = hist.reached_at[r]
        if np.isfinite(hist.b_simple_at_stop[r]) and stop not in steps:
            steps, values = np.append(steps, stop), np.append(values, hist.b_simple_at_stop[r])
        out.append((steps, values))
    return out


@dataclass(frozen=True)
class _StopSlower:
    """A `train_many` stop rule: once most seeds of one learning rate (runs lr-major) have reached the target, the
    runs of every learning rate whose seeds mostly have not can no longer be the tuned one, and stop."""

    num_lrs: int
    num_seeds: int  # odd: then "most" is a strict majority, and the median steps of the stopped lrs lie later

    def __call__(self, reached):
        most = reached.reshape(self.num_lrs, self.num_seeds).sum(1) * 2 > self.num_seeds  # (num_lrs,)
        return np.repeat(most.any() & ~most, self.num_seeds)


def _steps_trials(runs, cfg, new, best):
    """Train learning rates `new` for `tune.search`, a new one capped at the best's slowest seed: {lr: Trial}."""
    cap = cfg.num_steps  # a new lr must beat the best: most seeds no later than its slowest
    if best is not None:
        cap = int(min(cap, best[1].scores[np.isfinite(best[1].scores)].max()))
    stop = _StopSlower(len(new), len(runs.seeds)) if runs.stop_slower and len(runs.seeds) % 2 else None
    hist = runs.run_many(runs.make_model, runs.data, new, runs.seeds, replace(cfg, num_steps=cap), stop_rule=stop,
                         snapshots=cfg.noise_growth is not None)
    runs.num_runs += len(new) * len(runs.seeds)
    s = runs.steps(hist)
    return {lr: tune.Trial(s[runs.hard, rows], np.isinf(s[runs.hard, rows]),
                           (s[:, rows], hist.diverged[rows], {n: v[rows] for n, v in hist.params.items()}, cap,
                            None if cfg.noise_growth is None else _Noise(hist, rows)))
            for lr, rows in _runs_per_lr(new, len(runs.seeds))}


def _search_steps(runs, cfg, lrs, cand):
    """Tune one batch size in cfg's budget (max_steps if all fail): lrs tried, {lr: payload}, the config used."""
    state = {"cfg": cfg}

    def retry():  # the budget was too tight for every lr: once more with max_steps
        if state["cfg"].num_steps >= runs.max_steps:
            return False
        state["cfg"] = replace(state["cfg"], num_steps=runs.max_steps)
        return True

    tried_lrs, _, trials = tune.search(lrs, cand, lambda new, best: _steps_trials(runs, state["cfg"], new, best),
                                       higher_is_better=False, retry=retry)
    return tried_lrs, {lr: trials[lr].payload for lr in tried_lrs}, state["cfg"]


def _pick_steps(all_steps, tried_lrs, best_lr, out_steps):
    """Fill each target's tuned lr (num_targets,) and its steps (num_targets, num_seeds) in place."""
    for t in range(len(all_steps)):
        best = tune.best_index(all_steps[t], np.isinf(all_steps[t]), higher_is_better=False)
        if best is not None:
            best_lr[t] = tried_lrs[best]
            out_steps[t] = all_steps[t, best]


def _rerun_missing(runs, run_cfg, result, lr_hard, tried_lrs, all_steps, best_lr, out_steps):
    """Rerun with max_steps the tuned lr's seeds that did not answer in a tighter budget; its params, updated."""
    p = result[2]
    missing = np.isinf(result[0]).any(0)  # seeds of the tuned lr that did not answer in the budget
    if not (missing.any() and result[3] < runs.max_steps):
        return p
    rerun = runs.run_many(runs.make_model, runs.data, [lr_hard], runs.seeds[missing],
                          replace(run_cfg, num_steps=runs.max_steps), snapshots=run_cfg.noise_growth is not None)
    runs.num_runs += int(missing.sum())
    s = runs.steps(rerun)  # (num_targets, num_missing)
    for t in range(len(runs.targets)):
        if best_lr[t] == lr_hard:
            out_steps[t, missing] = s[t]
    all_steps[:, list(tried_lrs).index(lr_hard), missing] = s
    p = {n: v.clone() for n, v in p.items()}
    for n in p:
        p[n][torch.from_numpy(missing)] = rerun.params[n]
    if result[4] is not None:  # the reruns' noise scale replaces the cut runs'
        series = _Noise(rerun, slice(0, int(missing.sum()))).series(runs)
        result[4].patch.update(zip(np.flatnonzero(missing).tolist(), series))
    return p


def sweep_steps(make_model, data, batch_sizes, lrs, targets, seeds=(0, 1, 2), cfg=TrainConfig(), metric="test_loss",
                max_steps=20000, first_lrs=None, window=(0.25, 1.0), slack=1.25, cache=False, stop_slower=False,
                threads=None):
    """Steps to each target for each batch size at its tuned learning rate. Introduced in chapter 2.

    Batch sizes are taken from the largest down. The largest tries `first_lrs` (default: the whole `lrs` grid)
    within `max_steps`; each smaller one tries the grid points within `window` times the previous tuned learning
    rate (of the hardest target), and the window widens while the best lies on its edge. A smaller batch never
    needs more examples than a larger one (E(B) is increasing), so batch size B gets a budget of `slack` x
    (B_prev / B) x the slowest tuned run at B_prev steps; a run that has not answered within it is slower than
    the tuned one and changes no tuned result. A learning rate added by widening the window only matters if it
    beats the best so far, which needs most of its seeds to reach the hardest target no later than the best one's
    slowest seed, so it gets that many steps. Tuned runs that did not answer are rerun with `max_steps`.
    window=(0, inf) with slack=inf is the unpruned sweep. cache=True keeps each batched training call on disk,
    keyed by all its inputs, the library's source, the versions, the CPU and the thread count, so a later call
    that repeats it on this machine (chapters 3.c and 6 repeat chapter 2's sweep) loads it instead of training
    again.

    Chapter 2.2 adds three options. stop_slower=True (with an odd number of seeds) also stops, inside each batched
    call, the runs of a learning rate whose median cannot reach the hardest target before another's already has:
    the tuned results are the same, but the stopped runs leave the near-best sets (`near_best_lrs`). `threads`
    sets torch's thread count for the training calls, never more than `hardware.thread_limit()` (cores that other
    processes share would make the threads wait on each other; `hardware.sweep_threads`); None keeps the current
    setting. With cfg.noise_growth every run keeps its
    parameters along the way and the tuned ones get their B_simple measured (`StepsSweep.b_simple_along`,
    `b_simple_at`), the same numbers as logging it during training for all.
    """
    call_threads = sweep_threads(threads)
    batch_sizes, lrs, targets, seeds, hardest, hard = _steps_inputs(batch_sizes, lrs, targets, seeds, metric,
                                                                    max_steps, window, slack)
    cfg = replace(cfg, target=float(hardest), target_metric=metric, progress=False)
    runs = _StepsRuns(make_model, data, seeds, targets, metric, hard, max_steps,
                      functools.partial(_memo.call, train_many) if cache else train_many, bool(stop_slower))
    out_steps = np.full((len(targets), len(batch_sizes), len(seeds)), np.inf)
    best_lr = np.full((len(targets), len(batch_sizes)), np.nan)
    tried, params, noise = [], [], []
    prev_lr, budget = None, max_steps
    for j, batch_size in enumerate(batch_sizes):
        run_cfg = replace(cfg, batch_size=int(batch_size), num_steps=int(budget))
        cand = _window_candidates(lrs, first_lrs, prev_lr, window)
        with num_threads(call_threads):
            tried_lrs, results, run_cfg = _search_steps(runs, run_cfg, lrs, cand)
        budget = run_cfg.num_steps
        all_steps = np.stack([results[lr][0] for lr in tried_lrs], 1)  # (num_targets, num_lrs, num_seeds)
        diverged = np.stack([results[lr][1] for lr in tried_lrs])
        _pick_steps(all_steps, tried_lrs, best_lr[:, j], out_steps[:, j])
        lr_hard = best_lr[hard, j]
        if np.isnan(lr_hard):
            raise RuntimeError(f"no learning rate reached the target {hardest} at batch size {batch_size} within "
                               f"{budget} steps; raise max_steps or pick an easier target")
        with num_threads(call_threads):
            params.append(_rerun_missing(runs, run_cfg, results[lr_hard], lr_hard, tried_lrs, all_steps,
                                         best_lr[:, j], out_steps[:, j]))
        tuned = np.unique(best_lr[:, j][np.isfinite(best_lr[:, j])])  # B_simple is measured for these only
        noise.append(None if results[lr_hard][4] is None else
                     _TunedNoise({lr: results[lr][4] for lr in tuned}, runs, call_threads))
        tried.append((tried_lrs, all_steps, diverged))
        prev_lr = lr_hard
        if j + 1 < len(batch_sizes) and np.isfinite(slack):
            finite = out_steps[hard, j][np.isfinite(out_steps[hard, j])]
            ratio = batch_size / batch_sizes[j + 1]
            budget = int(min(max_steps, np.ceil(slack * ratio * finite.max())))
    order = np.argsort(batch_sizes)  # report in increasing batch size
    return StepsSweep(batch_sizes[order], targets, seeds, out_steps[:, order], best_lr[:, order],
                      [tried[i] for i in order], [params[i] for i in order], runs.num_runs, metric,
                      None if cfg.noise_growth is None else [noise[i] for i in order], grid=lrs.copy())


def run_model(make_model, params, i):
    """Model i of stacked parameters {name: (num_runs, ...)}, e.g. a run of `StepsSweep.params`. Introduced in chapter 2."""
    model = make_model()
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(params[name][i])
    return model


# ----------------------------------------------------------------------------------------------------------------
# the critical batch size


@dataclass
class CriticalFit:
    """S(B) = S_min (1 + B_crit / B) fitted to steps-to-target. Introduced in chapter 2 (batch-size trade-offs)."""

    s_min: float  # fewest steps, reached as B -> infinity
    b_crit: float  # critical batch size
    rms_log_residual: float  # root-mean-square of log(S / fit)
    num_dropped: int = 0  # batch sizes whose steps were not finite (never reached), left out of the fit
    at_grid_edge: bool = False  # B_crit at an end of the searched range: the data do not pin it down
    steps_grow: bool = False  # the steps grow with B (least-squares slope of log S on log B > 0): no S(B) fits

    @property
    def trustworthy(self):
        """True when the fit is a measurement, with B_crit inside its range and the steps not growing with B."""
        return not (self.at_grid_edge or self.steps_grow)

    @property
    def e_min(self):
        """The fewest examples to the target, E_min = S_min B_crit, approached as B goes to 0."""
        return self.s_min * self.b_crit

    def steps(self, batch_size):
        """Fitted S(B)."""
        return self.s_min * (1 + self.b_crit / np.asarray(batch_size, dtype=float))


def fit_critical_batch(batch_sizes, steps):
    """Least-squares fit of log S = log S_min + log(1 + B_crit / B). Introduced in chapter 2.

    For each B_crit the best S_min is closed-form (the mean log residual); B_crit is found by a fine log grid and
    refined with scipy's bounded scalar minimiser. Batch sizes whose steps are inf or NaN (never reached) are dropped
    and counted in `num_dropped`; a B_crit at an end of the grid (`at_grid_edge`) or steps that grow with B
    (`steps_grow`) are flagged: the fit is then no measurement (`CriticalFit.trustworthy`).
    """
    batch_sizes = as_positive_array(batch_sizes, "batch_sizes")
    steps = np.asarray(steps, dtype=float)
    if steps.shape != batch_sizes.shape:
        raise ValueError(f"steps must have one entry per batch size, shape {batch_sizes.shape}, got {steps.shape}")
    keep = np.isfinite(steps)
    if np.any(steps[keep] <= 0):
        raise ValueError(f"steps must be > 0, got {steps}")
    if keep.sum() < 3:
        raise ValueError(f"need at least 3 batch sizes with a finite step count to fit two parameters, "
                         f"got {int(keep.sum())}")
    B, log_s = batch_sizes[keep], np.log(steps[keep])

    def loss(log_bc):
        shape = np.log1p(np.exp(log_bc) / B)
        log_smin = np.mean(log_s - shape)
        return np.sum((log_s - log_smin - shape) ** 2), log_smin

    grid = np.linspace(np.log(B.min()) - 5, np.log(B.max()) + 5, 2001)
    resid = log_s - np.log1p(np.exp(grid)[:, None] / B)  # (len(grid), num_batch_sizes), before S_min
    k = int(np.argmin(((resid - resid.mean(1, keepdims=True)) ** 2).sum(1)))  # loss(g)[0] at every g
    from scipy.optimize import minimize_scalar

    res = minimize_scalar(lambda g: loss(g)[0], bounds=(grid[max(k - 1, 0)], grid[min(k + 1, len(grid) - 1)]),
                          method="bounded", options={"xatol": 1e-10})
    log_bc = float(res.x) if res.fun <= loss(grid[k])[0] else float(grid[k])
    sse, log_smin = loss(log_bc)
    at_edge = k in (0, len(grid) - 1)
    steps_grow = bool(np.polyfit(np.log(B), log_s, 1)[0] > 0)
    return CriticalFit(float(np.exp(log_smin)), float(np.exp(log_bc)), float(np.sqrt(sse / len(B))),
                       int((~keep).sum()), at_edge, steps_grow)


def bootstrap_critical_batch(batch_sizes, steps, num_boot=1000, seed=0):
    """B_crit and S_min refitted on seed resamples: arrays (num_boot,) each. Introduced in chapter 2.

    `steps` is (num_batch_sizes, num_seeds); each resample draws seeds with replacement independently per batch
    size and fits the median steps.
    """
    batch_sizes = as_positive_array(batch_sizes, "batch_sizes")
    steps = np.asarray(steps, dtype=float)
    if steps.ndim != 2 or len(steps) != len(batch_sizes):
        raise ValueError(f"steps must be (num_batch_sizes, num_seeds) = ({len(batch_sizes)}, ...), "
                         f"got shape {steps.shape}")
    check_positive_int(num_boot, "num_boot")
    resampled = tune.bootstrap(steps, num_boot, seed)  # (num_boot, num_batch_sizes, num_seeds)
    meds = median_steps(resampled)  # (num_boot, num_batch_sizes)
    b_crit, s_min = np.empty(num_boot), np.empty(num_boot)
    whole = np.isfinite(meds).all(1) & (meds > 0).all(1)  # the resamples fitted together, the rest one by one
    if whole.any():
        b_crit[whole], s_min[whole] = _fit_rows(batch_sizes, np.log(meds[whole]))
    for i in np.flatnonzero(~whole):
        fit = fit_critical_batch(batch_sizes, meds[i])
        b_crit[i], s_min[i] = fit.b_crit, fit.s_min
    return b_crit, s_min


def _fit_rows(batch_sizes, log_s):
    """`fit_critical_batch` of every row of log S (num_rows, num_batch_sizes) at once: (B_crit, S_min) arrays.

    The same fine log grid, then a golden-section search between the grid's neighbours of each row's best point,
    all rows together, down to 1e-10 in log B_crit (scipy's bounded search, row by row, took most of a bootstrap).
    """
    B = batch_sizes
    grid = np.linspace(np.log(B.min()) - 5, np.log(B.max()) + 5, 2001)

    def sse(log_bc):  # log_bc (num_rows, m) -> residual sum of squares (num_rows, m), S_min at its best
        resid = log_s[:, None, :] - np.log1p(np.exp(log_bc)[..., None] / B)  # (num_rows, m, num_B)
        return ((resid - resid.mean(-1, keepdims=True)) ** 2).sum(-1)

    k = np.argmin(sse(np.broadcast_to(grid, (len(log_s), len(grid)))), 1)
    lo, hi = grid[np.maximum(k - 1, 0)], grid[np.minimum(k + 1, len(grid) - 1)]
    ratio = (np.sqrt(5) - 1) / 2
    while np.max(hi - lo) > 1e-10:
        a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
        left = sse(np.stack([a, b], 1))  # (num_rows, 2)
        lo, hi = np.where(left[:, 0] < left[:, 1], lo, a), np.where(left[:, 0] < left[:, 1], b, hi)
    log_bc = (lo + hi) / 2
    best = sse(log_bc[:, None])[:, 0] <= sse(grid[k][:, None])[:, 0]
    log_bc = np.where(best, log_bc, grid[k])
    log_smin = (log_s - np.log1p(np.exp(log_bc)[:, None] / B)).mean(1)
    return np.exp(log_bc), np.exp(log_smin)


def local_slopes(batch_sizes, steps):
    """Slope d log S / d log B between neighbouring batch sizes, (num_batch_sizes - 1,). Introduced in chapter 2."""
    batch_sizes = as_positive_array(batch_sizes, "batch_sizes")
    steps = as_positive_array(steps, "steps")
    if steps.shape != batch_sizes.shape:
        raise ValueError(f"steps must have one entry per batch size, shape {batch_sizes.shape}, got {steps.shape}")
    return np.diff(np.log(steps)) / np.diff(np.log(batch_sizes))


def regime_slope(batch_sizes, steps, lo=None, hi=None):
    """Least-squares slope of log S against log B over lo <= B <= hi. Introduced in chapter 2."""
    batch_sizes = as_positive_array(batch_sizes, "batch_sizes")
    steps = np.asarray(steps, dtype=float)
    sel = np.isfinite(steps) & (batch_sizes >= (lo or 0)) & (batch_sizes <= (hi or np.inf))
    if sel.sum() < 2:
        raise ValueError(f"need at least 2 batch sizes with finite steps in [{lo}, {hi}], got {int(sel.sum())}")
    return float(np.polyfit(np.log(batch_sizes[sel]), np.log(steps[sel]), 1)[0])


# ----------------------------------------------------------------------------------------------------------------
# sharpness


def top_hessian_eigenvalue(model, X, y, num_iters=100, tol=1e-4, seed=0, loss_fn=None):
    """Largest-magnitude eigenvalue of the Hessian of the mean loss over (X, y). Introduced in chapter 2.

    Power iteration on Hessian-vector products (double backward), from a seeded random start; stops when the
    estimate changes by less than `tol` (relative). Trainable parameters only. Returns a float.
    """
    params = trainable_parameters(model)
    check_data(X, y)
    check_positive_int(num_iters, "num_iters")
    if X.dtype != params[0].dtype:
        raise TypeError(f"X must have the dtype of the model's parameters ({params[0].dtype}), got {X.dtype}")
    if loss_fn is None and y.dtype != torch.long:
        raise TypeError(f"y must hold integer class labels (torch.long), got dtype {y.dtype}")
    with torch.enable_grad():
        out = model(X)
        if loss_fn is None and (y.min() < 0 or y.max() >= out.shape[-1]):
            raise ValueError(f"labels must lie in 0..{out.shape[-1] - 1} (the model's classes), "
                             f"got {int(y.min())}..{int(y.max())}")
        loss = F.cross_entropy(out, y) if loss_fn is None else loss_fn(out, y)
        grads = torch.autograd.grad(loss, params, create_graph=True)
    gen = seeding.generator(int(seed))
    v = [torch.randn(p.shape, generator=gen, dtype=p.dtype).to(p.device) for p in params]
    norm = torch.sqrt(sum((u * u).sum() for u in v))
    v = [u / norm for u in v]
    eig = None
    for _ in range(num_iters):
        hv = torch.autograd.grad(grads, params, grad_outputs=v, retain_graph=True)
        new = float(sum((a * b).sum() for a, b in zip(hv, v)))  # Rayleigh quotient v.Hv
        norm = torch.sqrt(sum((h * h).sum() for h in hv))
        if norm == 0:
            return 0.0
        v = [h / norm for h in hv]
        if eig is not None and abs(new - eig) <= tol * abs(new):
            return new
        eig = new
    return eig


# ----------------------------------------------------------------------------------------------------------------
# generalization: final results at a fixed budget


def evaluate_runs(make_model, params, X, y):
    """Mean cross-entropy and accuracy of every run of stacked parameters on (X, y). Introduced in chapter 2.

    `params` is {name: (num_runs, ...)}, e.g. a History's params or a Generalization's; the runs are evaluated
    as one batched model. Returns two arrays (num_runs,).
    """
    check_data(X, y)
    if not isinstance(params, dict) or not params:
        raise TypeError(f"params must be a non-empty dict {{name: (num_runs, ...) tensor}}, "
                        f"got {type(params).__name__}")
    model = make_model()
    names = {name for name, _ in model.named_parameters()}
    if set(params) != names:
        raise ValueError(f"params must hold the model's parameters {sorted(names)}, got {sorted(params)}")
    buffers = dict(model.named_buffers())
    logits_of = torch.func.vmap(lambda p, x: functional_call(model, (p, buffers), (x,)), in_dims=(0, None))
    with torch.no_grad():
        logits = logits_of(params, X)  # (num_runs, num_examples, num_classes)
        loss = F.cross_entropy(logits.flatten(0, 1), y.repeat(len(logits)), reduction="none")
        loss = loss.view(len(logits), -1).mean(1)
        acc = (logits.argmax(-1) == y).double().mean(1)
    return loss.double().numpy(), acc.numpy()


@dataclass
class Generalization:
    """Final results at each batch size for its tuned learning rate. Introduced in chapter 2 (generalization).

    Arrays of results are (num_batch_sizes, num_seeds); a seed of the tuned learning rate that diverged holds NaN.
    """

    batch_sizes: np.ndarray  # (num_batch_sizes,)
    seeds: np.ndarray  # (num_seeds,)
    num_steps: np.ndarray  # (num_batch_sizes,) steps each batch size trained
    best_lr: np.ndarray  # (num_batch_sizes,) learning rate with the highest median validation accuracy
    train_loss: np.ndarray  # (num_batch_sizes, num_seeds) on the whole training set, at the end
    train_acc: np.ndarray
    val_acc: np.ndarray
    test_loss: np.ndarray
    test_acc: np.ndarray
    diverged: np.ndarray  # bool (num_batch_sizes, num_seeds)
    tried: list  # per batch size: (lrs (num_lrs,), val_acc (num_lrs, num_seeds), diverged (num_lrs, num_seeds))
    params: list  # per batch size: {name: (num_seeds, ...)} final parameters of the tuned runs
    num_runs: int  # training runs in all
    num_examples: int  # training-set size

    @property
    def gap(self):
        """Train-test gap in accuracy, train_acc - test_acc, (num_batch_sizes, num_seeds)."""
        return self.train_acc - self.test_acc

    @property
    def loss_gap(self):
        """Train-test gap in loss, test_loss - train_loss, (num_batch_sizes, num_seeds)."""
        return self.test_loss - self.train_loss

    @property
    def epochs(self):
        """Passes over the training set each batch size made, (num_batch_sizes,)."""
        return self.num_steps * self.batch_sizes / self.num_examples


def _check_split(data, val_data):
    """Check (X_train, y_train, X_test, y_test) and held-out (X_val, y_val); return the training-set size."""
    X, y, X_test, y_test = data
    num_examples = check_data(X, y)
    check_data(X_test, y_test)
    if not isinstance(val_data, (tuple, list)) or len(val_data) != 2:
        raise TypeError("val_data must be a pair (X_val, y_val) of tensors")
    check_data(*val_data)
    return num_examples


def _budget_steps(num_epochs, num_steps, num_examples, batch_sizes):
    """Steps each batch size trains: num_epochs times N // B, or num_steps; exactly one of the two is given."""
    if (num_epochs is None) == (num_steps is None):
        raise ValueError("give exactly one of num_epochs (a budget of examples) and num_steps (a budget of steps)")
    if num_epochs is not None:
        return check_positive_int(num_epochs, "num_epochs") * (num_examples // batch_sizes)
    return np.full(len(batch_sizes), check_positive_int(num_steps, "num_steps"))


def _generalization_inputs(data, val_data, batch_sizes, lrs, seeds, num_epochs, num_steps, window, best_lrs):
    """`generalization_sweep`'s checked arguments: batch sizes smallest first, best_lrs, lrs, seeds, steps, N."""
    num_examples = _check_split(data, val_data)
    given = as_positive_array(batch_sizes, "batch_sizes", integer=True)
    order = np.argsort(given, kind="stable")
    batch_sizes = given[order]
    if batch_sizes[-1] > num_examples:
        raise ValueError(f"batch_sizes must be at most the number of training examples ({num_examples}), "
                         f"got {batch_sizes[-1]}")
    if best_lrs is not None:
        best_lrs = as_positive_array(best_lrs, "best_lrs")
        if len(best_lrs) != len(batch_sizes):
            raise ValueError(f"best_lrs must hold one learning rate per batch size ({len(batch_sizes)}), "
                             f"got {len(best_lrs)}")
        best_lrs = best_lrs[order]
        lrs = np.unique(best_lrs)
    lrs = np.sort(as_positive_array(lrs, "lrs"))
    seeds = np.atleast_1d(np.asarray(seeds, dtype=int))
    steps = _budget_steps(num_epochs, num_steps, num_examples, batch_sizes)
    _check_window(window)
    return batch_sizes, best_lrs, lrs, seeds, steps, num_examples


def _search_final(make_model, fit_data, seeds, run_cfg, grid, cand):
    """Tune one batch size on the validation accuracy at the end: (lrs tried, best index, {lr: Trial}, runs)."""
    num_runs = 0

    def run(new, _best):
        nonlocal num_runs
        hist = train_many(make_model, fit_data, new, seeds, run_cfg)
        num_runs += len(new) * len(seeds)
        acc = np.where(hist.diverged, np.nan, hist.test_acc[:, -1])
        return {lr: tune.Trial(acc[rows], hist.diverged[rows], {n: v[rows] for n, v in hist.params.items()})
                for lr, rows in _runs_per_lr(new, len(seeds))}

    tried_lrs, k, trials = tune.search(grid, cand, run)
    return tried_lrs, k, trials, num_runs


def generalization_sweep(make_model, data, val_data, batch_sizes, lrs, seeds=(0, 1, 2), cfg=TrainConfig(),
                         num_epochs=None, num_steps=None, first_lrs=None, window=(0.5, 4.0), best_lrs=None,
                         threads=None):
    """Final training and test results at each batch size, its learning rate tuned on held-out data.

    Introduced in chapter 2 (generalization). Each batch size B trains for num_epochs times N // B steps (a fixed
    budget of examples) or for num_steps steps (a fixed budget of steps), every (lr, seed) of its learning rates
    as one batched model (`train.train_many`). `data` is (X_train, y_train, X_test, y_test); `val_data`,
    (X_val, y_val), picks the learning rate by `tune`'s rule on the validation accuracy at the end of the budget
    (the highest median over seeds, a diverged run the worst, ties to the larger lr). The tuned runs are then evaluated on the whole
    training set and on the test set.

    Batch sizes are taken from the smallest up. The smallest tries `first_lrs` (default: the whole `lrs` grid);
    each larger one tries the grid points within `window` times the previous tuned learning rate, and the
    window widens while the best lies on its edge. window=(0, inf) is the unpruned sweep. `best_lrs`, one learning
    rate per batch size (e.g. another sweep's best_lr), trains exactly those, untuned; `lrs` may then be None.
    `threads` sets torch's thread count for the training and the evaluations, as in `sweep_steps`.
    """
    batch_sizes, best_lrs, lrs, seeds, steps, num_examples = _generalization_inputs(
        data, val_data, batch_sizes, lrs, seeds, num_epochs, num_steps, window, best_lrs)
    with num_threads(sweep_threads(threads)):
        return _generalization_sweep(make_model, data, val_data, batch_sizes, lrs, seeds, cfg, first_lrs, window,
                                     best_lrs, steps, num_examples)


def _generalization_sweep(make_model, data, val_data, batch_sizes, lrs, seeds, cfg, first_lrs, window, best_lrs,
                          steps, num_examples):
    """`generalization_sweep` on checked inputs."""
    X, y, X_test, y_test = data
    fit_data = (X, y, *val_data)
    shape = (len(batch_sizes), len(seeds))
    out = {k: np.full(shape, np.nan) for k in ("train_loss", "train_acc", "val_acc", "test_loss", "test_acc")}
    diverged_best, best_lr = np.zeros(shape, bool), np.full(len(batch_sizes), np.nan)
    tried, params, num_runs, prev_lr = [], [], 0, None
    for j, (batch_size, num) in enumerate(zip(batch_sizes, steps)):
        run_cfg = replace(cfg, batch_size=int(batch_size), num_steps=int(num), eval_every=int(num), progress=False,
                          target=None)
        cand = best_lrs[j:j + 1] if best_lrs is not None else _window_candidates(lrs, first_lrs, prev_lr, window)
        tried_lrs, k, trials, runs = _search_final(make_model, fit_data, seeds, run_cfg,
                                                   cand if best_lrs is not None else lrs, cand)
        num_runs += runs
        val = np.stack([trials[lr].scores for lr in tried_lrs])  # (num_lrs, num_seeds)
        div = np.stack([trials[lr].failed for lr in tried_lrs])
        if k is None and best_lrs is None:
            raise RuntimeError(f"every learning rate diverged at batch size {batch_size}; add smaller ones to lrs")
        if k is None:  # the given learning rate diverged on every seed: report it as diverged
            k = 0
        best_lr[j] = prev_lr = tried_lrs[k]
        tuned = trials[tried_lrs[k]]
        diverged_best[j], p = tuned.failed, tuned.payload
        tried.append((tried_lrs, val, div))
        params.append(p)
        ok = ~diverged_best[j]
        out["val_acc"][j] = np.where(ok, tuned.scores, np.nan)
        for name, (Xe, ye) in (("train", (X, y)), ("test", (X_test, y_test))):
            loss, a = evaluate_runs(make_model, p, Xe, ye)
            out[f"{name}_loss"][j], out[f"{name}_acc"][j] = np.where(ok, loss, np.nan), np.where(ok, a, np.nan)
    return Generalization(batch_sizes, seeds, steps, best_lr, **out, diverged=diverged_best, tried=tried,
                          params=params, num_runs=num_runs, num_examples=num_examples)


@dataclass
class HoldoutTuning:
    """A grid of learning rates at one batch size, tuned on held-out data, with every run's test accuracy.

    Introduced in chapter 3 (learning-rate scaling). Arrays of results are (num_lrs, num_seeds) for the grid's
    constant learning rates and (num_extra, num_seeds) for the extra runs, each with its own schedule, trained beside
    them; a run that diverged holds NaN.
    """

    batch_size: int
    seeds: np.ndarray  # (num_seeds,)
    num_steps: int  # steps every run trained
    lrs: np.ndarray  # (num_lrs,) the grid's learning rates trained, increasing
    val_acc: np.ndarray  # (num_lrs, num_seeds) at the end of the budget
    test_acc: np.ndarray
    diverged: np.ndarray  # bool (num_lrs, num_seeds)
    extra_lrs: np.ndarray  # (num_extra,) peak learning rates of the extra runs, in the order given
    extra_val_acc: np.ndarray  # (num_extra, num_seeds)
    extra_test_acc: np.ndarray
    extra_diverged: np.ndarray
    num_runs: int  # training runs in all

    @property
    def best(self):
        """Index of the tuned learning rate, by `tune`'s rule on the validation accuracy (None if every lr failed)."""
        return tune.best_index(self.val_acc, self.diverged)

    def near_best(self, z=2.0):
        """Mask (num_lrs,) of the learning rates within z standard errors of the tuned one on the validation
        accuracy (`tune.near_best`)."""
        return tune.near_best(self.val_acc, self.diverged, z=z)

    def index(self, lr):
        """Index of the grid learning rate `lr` among those trained (a relative tolerance of 1e-6)."""
        lr = check_positive_float(lr, "lr")
        hit = np.flatnonzero(np.abs(self.lrs / lr - 1) <= 1e-6)
        if len(hit) != 1:
            raise ValueError(f"lr {lr:g} was not trained at batch size {self.batch_size}; trained: "
                             f"{[float(f'{v:.4g}') for v in self.lrs]}")
        return int(hit[0])


def tune_on_holdout(make_model, data, val_data, batch_size, grid, first, seeds=(0, 1, 2), cfg=TrainConfig(),
                    num_epochs=None, num_steps=None, extra_lrs=(), extra_schedules=None, threads=None):
    """Tune the learning rate at one batch size on held-out data and test every run: a HoldoutTuning.

    Introduced in chapter 3 (learning-rate scaling). `data` is (X_train, y_train, X_test, y_test) and `val_data`
    (X_val, y_val). The learning rates `first`, points of `grid`, train for num_epochs times N // batch_size steps
    or for num_steps steps; while the best (`tune`'s rule on the validation accuracy at the end: the best median
    over seeds, a diverged seed the worst, ties to the larger lr) sits on an edge of those trained, the next grid
    point beyond it trains too (`tune.search`). `extra_lrs`, with one schedule (or None) each in
    `extra_schedules`, train untuned in the first call beside `first`. Every call trains all its (lr, seed) runs
    as one batched model (`train.train_many`); every run is then evaluated on the test set. `threads` sets torch's
    thread count for the training calls, as in `sweep_steps`.
    """
    call_threads = sweep_threads(threads)
    num_examples = _check_split(data, val_data)
    X, y, X_test, y_test = data
    batch_size = check_positive_int(batch_size, "batch_size")
    if batch_size > num_examples:
        raise ValueError(f"batch_size must be at most the number of training examples ({num_examples}), "
                         f"got {batch_size}")
    grid = np.sort(as_positive_array(grid, "grid"))
    first = np.sort(as_positive_array(first, "first"))
    off = [float(lr) for lr in first if not np.any(np.abs(grid / lr - 1) <= 1e-9)]
    if off:
        raise ValueError(f"first must hold points of grid, got {off} that are not")
    extra_lrs = np.asarray(extra_lrs, dtype=float).reshape(-1)
    if len(extra_lrs):
        extra_lrs = as_positive_array(extra_lrs, "extra_lrs")
    extra_schedules = [None] * len(extra_lrs) if extra_schedules is None else list(extra_schedules)
    if len(extra_schedules) != len(extra_lrs) or not all(s is None or callable(s) for s in extra_schedules):
        raise ValueError(f"extra_schedules must hold one callable (or None) per extra lr, {len(extra_lrs)} in all")
    seeds = np.atleast_1d(np.asarray(seeds, dtype=int))
    if (num_epochs is None) == (num_steps is None):
        raise ValueError("give exactly one of num_epochs (a budget of examples) and num_steps (a budget of steps)")
    steps = check_positive_int(num_epochs, "num_epochs") * (num_examples // batch_size) if num_epochs is not None \
        else check_positive_int(num_steps, "num_steps")
    run_cfg = replace(cfg, batch_size=batch_size, num_steps=int(steps), eval_every=int(steps), progress=False,
                      target=None)
    fit_data, S = (X, y, *val_data), len(seeds)
    extra, num_runs = {}, 0

    def run(new, _best):
        nonlocal num_runs
        todo = list(new) + ([] if extra else list(extra_lrs))
        schedules = [None] * len(new) + ([] if extra else extra_schedules)
        with num_threads(call_threads):
            hist = train_many(make_model, fit_data, todo, seeds, run_cfg, lr_schedules=schedules)
        num_runs += len(todo) * S
        val = np.where(hist.diverged, np.nan, hist.test_acc[:, -1]).reshape(len(todo), S)
        test = np.where(hist.diverged, np.nan, evaluate_runs(make_model, hist.params, X_test, y_test)[1])
        test, div = test.reshape(len(todo), S), hist.diverged.reshape(len(todo), S)
        if not extra:
            extra.update(val=val[len(new):], test=test[len(new):], div=div[len(new):])
        return {lr: tune.Trial(val[i], div[i], test[i]) for i, lr in enumerate(new)}

    tried, _, trials = tune.search(grid, first, run)
    return HoldoutTuning(batch_size, seeds, int(steps), tried, np.stack([trials[lr].scores for lr in tried]),
                         np.stack([trials[lr].payload for lr in tried]),
                         np.stack([trials[lr].failed for lr in tried]), extra_lrs, extra["val"], extra["test"],
                         extra["div"], num_runs)


# ----------------------------------------------------------------------------------------------------------------
# the figure


def plot_steps(sweep, ax=None, fit=True):
    """Steps to each target against batch size, log-log: median over seeds with the seed range, the fit, and
    perfect scaling S proportional to 1/B through the smallest batch size. Introduced in chapter 2.

    Returns the axes and the fits (one CriticalFit per target, None where fewer than 3 points are finite).
    """
    import matplotlib.pyplot as plt

    from .plots import PALETTE

    if not isinstance(sweep, StepsSweep):
        raise TypeError(f"sweep must be a scaling.StepsSweep (from sweep_steps), got {type(sweep).__name__}")
    ax = plt.subplots()[1] if ax is None else ax
    B, fits = sweep.batch_sizes.astype(float), []
    curve = np.geomspace(B.min(), B.max(), 200)
    name = "loss" if sweep.metric == "test_loss" else "accuracy"
    for t, (target, color) in enumerate(zip(sweep.targets, PALETTE)):
        med, steps = sweep.median[t], sweep.steps[t]  # (num_B,), (num_B, num_seeds)
        ok = np.isfinite(med)
        lo = np.where(np.isfinite(steps), steps, np.nan)
        ax.errorbar(B[ok], med[ok], yerr=[med[ok] - np.nanmin(lo[ok], 1), np.nanmax(lo[ok], 1) - med[ok]],
                    fmt="o", ms=4, color=color, capsize=2, label=f"{name} {target:g}")
        f = fit_critical_batch(B, med) if fit and ok.sum() >= 3 else None
        fits.append(f)
        if f is not None:
            ax.plot(curve, f.steps(curve), color=color, lw=1.2)
        first = int(np.argmax(ok))
        ax.plot(curve, med[first] * B[first] / curve, ":", color=color, lw=1)
    finite = sweep.steps[np.isfinite(sweep.steps)]
    ax.set(xscale="log", yscale="log", xlabel="batch size B (examples)", ylabel="steps to target S(B)",
           ylim=(finite.min() / 2, finite.max() * 2))  # the perfect-scaling lines would run far below the data
    return ax, fits


def plot_generalization(gen, ax=None, label=None, color=None, marker="o", train=True):
    """Final test (solid) and training (dashed) accuracy against batch size: seed median, bars spanning the seeds.

    Introduced in chapter 2 (generalization). Each batch size is at its own learning rate. Call it again on the
    same axes to overlay another sweep (e.g. one trained longer). Seeds that diverged are left out and counted in
    the legend. Returns the axes.
    """
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    from .plots import PALETTE

    if not isinstance(gen, Generalization):
        raise TypeError(f"gen must be a scaling.Generalization (from generalization_sweep), "
                        f"got {type(gen).__name__}")
    ax = plt.subplots()[1] if ax is None else ax
    color = PALETTE[0] if color is None else color
    label = "" if label is None else f"{label}: "
    num_diverged = int(gen.diverged.sum())
    note = f" ({num_diverged} diverged runs left out)" if num_diverged else ""
    B = gen.batch_sizes.astype(float)
    for values, style, fill, name in ((gen.test_acc, "-", color, "test"), (gen.train_acc, "--", "white", "train")):
        if name == "train" and not train:
            continue
        ok = np.isfinite(values).any(1)
        if not ok.any():
            continue
        v = values[ok]
        med, lo, hi = np.nanmedian(v, 1), np.nanmin(v, 1), np.nanmax(v, 1)
        ax.errorbar(B[ok], med, yerr=[med - lo, hi - med], fmt=marker + style, ms=5, color=color, mfc=fill,
                    capsize=2, label=f"{label}{name} accuracy{note}")
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
    ax.set(xlabel="batch size B (examples)", ylabel="final accuracy")
    return ax
