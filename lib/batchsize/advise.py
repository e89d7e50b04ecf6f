"""Choosing a batch size for your own model, data and device: the book's measurements as one bounded-time call.

`advise` runs, within a time budget or with a fixed amount of work (`fixed_work=True`, whose answer does not depend
on how fast the machine is at the moment), the measurements of the earlier chapters on any `nn.Module` and the data
it is given (tensors, a Dataset or a DataLoader; inputs may be token ids, dicts or tuples; `batches`): the largest
batch that fits (`memory.find_batch_size`, chapter 4), the time of a training step against the batch size and its
knee (chapter 4), a short learning-rate probe at a reference batch (chapter 2's grid), and the gradient noise scale
B_simple, with its bootstrap interval, at a few points of a short training run (chapter 1: per-example gradients by
torch.func where it supports the model, else the two-batch estimator, drawn until a stated precision). From them it
predicts the wall-clock time to a target as t(B) (1 + B_noise / B): chapter 2's S(B) = S_min (1 + B_crit / B) times
the measured time per step t(B), with the noise scale standing in for the critical batch size. The recommendation is
the batch size that minimises it, a range that allows for B_crit lying within a factor `spread` of B_noise and for
the spread of the step timings, and a starting learning rate from McCandlish et al.'s rule of chapter 3,
lr(B) = lr_max / (1 + B_noise / B), anchored at the reference batch, never above a learning rate the probe saw
diverge, with a warmup where it raises the learning rate. Where the evidence cannot carry a recommendation (a probe
whose loss does not move, a noise scale not measured to a factor `noise_precision`), it raises `CannotAdvise`.
"""
import contextlib
import copy
import math
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from . import batches, grads, hardware, memory, scaling, seeding, tune
from ._checks import check_batch_size, check_positive_float, check_positive_int
from .steps import micro_batches

# share of the time left when a phase starts that the phase may use (the rest of the last is for the recommendation)
_PHASE_SHARES = {"finder": 0.25, "throughput": 0.4, "probe": 0.4, "noise": 0.9}
PROBE_LRS = tuple(0.01 * 2.0 ** np.arange(10))  # chapter 2's factor-2 grid, 0.01 to 5.12
DIVERGENCE_FACTOR = 100.0  # a run whose training loss exceeds this many times its first loss (or is not finite)
MIN_NOISE_DRAWS = 8  # draws of the noise estimator at each point before its precision is judged
_clock = time.perf_counter  # the clock of the deadlines (the tests replace it with a slow one)


class _OutOfTime(Exception):
    """Raised inside a callback to end a phase at its deadline."""


class CannotAdvise(RuntimeError):
    """The measurements cannot carry a recommendation; the message says why and what to try. Chapter 6."""

    def __init__(self, message, notes=()):
        super().__init__(f"cannot advise: {message}")
        self.notes = list(notes)  # what the phases noted before the advisor gave up


# ----------------------------------------------------------------------------------------------------------------
# the two formulas


def scaled_lr(ref_lr, ref_batch_size, batch_size, b_noise):
    """Learning rate at batch_size from one tuned at ref_batch_size, by lr(B) = lr_max / (1 + B_noise / B).

    Introduced in chapter 6 (choosing a batch size); the rule is McCandlish et al.'s, tested in chapter 3. It is
    linear in B while B is far below B_noise and flat far above it. batch_size may be an array.
    """
    ref_lr = check_positive_float(ref_lr, "ref_lr")
    ref_batch_size = check_positive_float(ref_batch_size, "ref_batch_size")
    b_noise = check_positive_float(b_noise, "b_noise")
    B = np.asarray(batch_size, dtype=float)
    if B.size == 0 or np.any(~(B > 0)) or not np.all(np.isfinite(B)):
        raise ValueError(f"batch_size must be a number > 0 or an array of them, got {batch_size!r}")
    out = ref_lr * (1 + b_noise / ref_batch_size) / (1 + b_noise / B)
    return out if out.ndim else float(out)


def predicted_time(batch_sizes, seconds_per_step, b_noise):
    """Predicted wall-clock time to a target, in units of S_min: t(B) (1 + B_noise / B). Introduced in chapter 6.

    Chapter 2's S(B) = S_min (1 + B_crit / B) times the measured time per step t(B), with B_noise for B_crit.
    """
    B = np.asarray(batch_sizes, dtype=float)
    t = np.asarray(seconds_per_step, dtype=float)
    if B.shape != t.shape or B.ndim != 1 or B.size == 0:
        raise ValueError(f"batch_sizes and seconds_per_step must be 1-D and of the same length, got shapes "
                         f"{B.shape} and {t.shape}")
    if np.any(~(B > 0)) or np.any(~(t > 0)) or not np.all(np.isfinite(t)):
        raise ValueError("batch_sizes and seconds_per_step must be finite and > 0")
    b_noise = check_positive_float(b_noise, "b_noise")
    return t * (1 + b_noise / B)


# ----------------------------------------------------------------------------------------------------------------
# the evidence and the recommendation


@dataclass(frozen=True)
class Phase:
    """The work one phase of `advise` did against its deadline, in seconds since the call began. Chapter 6.

    A phase may use its share of the time left when it starts (`_PHASE_SHARES`); before each unit of work (a
    finder step, one batch size's timing, one lr of the probe, one noise measurement) it checks the deadline, and
    every unit but the first must be expected to end by it (from the time of the units before it): the budget is
    kept up to what the last unit of each phase takes beyond its expectation. The phases follow each other without
    a gap. With fixed work every deadline is infinite.
    """

    start_s: float
    deadline_s: float
    end_s: float
    unit_starts_s: tuple  # when each unit of work began, after its deadline check passed
    stopped_s: float = None  # when a failed deadline check ended the phase; None if it did all its work
    refused_end_s: float = None  # when the unit refused there was expected to end (past the deadline)

    @property
    def units(self):
        """Units of work done."""
        return len(self.unit_starts_s)

    @property
    def cut(self):
        """Whether the deadline cut the phase short."""
        return self.stopped_s is not None




@dataclass
class Advice:
    """What `advise` measured and what it recommends. Introduced in chapter 6 (choosing a batch size)."""

    batch_size: int  # the batch size with the smallest predicted time to a target on this device
    batch_range: tuple  # (low, high): near-fastest batch sizes for any B_crit within a factor `spread` of B_noise
    lr: float  # starting learning rate at batch_size: the rule anchored at (ref_batch_size, ref_lr), capped at lr_cap
    warmup_steps: int  # linear warmup from ref_lr to lr over this many steps (0: no warmup needed)
    ref_batch_size: int  # batch size of the learning-rate probe and the short training run
    ref_lr: float  # learning rate at ref_batch_size: given, or the probe's best
    max_fit: int  # largest batch that fits in memory (the finder, with its margin), or the data size
    knee: int  # smallest measured batch size with 80 % of the best throughput
    throughput: hardware.Throughput  # time per step against batch size, up to max_fit
    noise_steps: np.ndarray  # (num_points,) training steps at which B_simple was measured
    b_simple: np.ndarray  # (num_points,) gradient noise scale at those steps
    b_noise: float  # the noise scale used: from the later half of the points' draws pooled (it grows in training)
    spread: float  # factor allowed between B_noise and the critical batch size
    tolerance: float  # batch sizes predicted within this fraction of the fastest count as equally good
    probe_lrs: np.ndarray  # learning rates tried at ref_batch_size (empty if ref_lr was given)
    probe_loss: np.ndarray  # their final held-out loss; NaN where a run diverged
    finder: object = None  # memory.FinderResult, or None if the finder was cut short
    seconds: float = 0.0  # wall-clock time advise took
    time_budget_s: float = 0.0  # inf with fixed work
    notes: list = field(default_factory=list)  # what was cut short or fell back, in words
    phases: dict = field(default_factory=dict)  # name -> Phase: "finder", "throughput", "probe" (if run), "noise"
    step_times: np.ndarray = None  # (rounds, num_batch_sizes) seconds per step per interleaved round; fixed work only
    probe_num_steps: int = 0  # steps of the learning-rate probe (0 if ref_lr was given)
    fixed_work: bool = False  # True: fixed work, no time budget
    b_noise_interval: tuple = (np.nan, np.nan)  # 95 % bootstrap interval of b_noise over the pooled draws
    noise_estimates: list = field(default_factory=list)  # grads.NoiseEstimate at each point, with its draws
    noise_method: str = ""  # "per-example" (torch.func) or "two-batch" (McCandlish et al.'s estimator)
    lr_cap: float = math.inf  # largest probe lr that lowered the held-out loss, below any that failed (inf: lr given)

    @property
    def b_simple_interval(self):
        """The 95 % bootstrap interval of B_simple at each point, an array (num_points, 2)."""
        return np.array([(e.low, e.high) for e in self.noise_estimates])

    @property
    def predicted_time(self):
        """Predicted time to a target at each measured batch size, in units of S_min seconds."""
        return predicted_time(self.throughput.batch_sizes, self.throughput.median_s, self.b_noise)

    def lr_for(self, batch_size):
        """Starting learning rate at another batch size, by the same rule, capped at lr_cap."""
        return np.minimum(scaled_lr(self.ref_lr, self.ref_batch_size, batch_size, self.b_noise), self.lr_cap)

    def summary(self):
        """The recommendation and its evidence in a few lines of text."""
        lo, hi = self.batch_range
        b_lo, b_hi = self.b_noise_interval
        lines = [f"recommended batch size: {self.batch_size} (range {lo} to {hi})",
                 f"starting learning rate: {self.lr:.3g}" + (f" with a linear warmup over {self.warmup_steps} steps "
                                                             f"from {self.ref_lr:.3g}" if self.warmup_steps else ""),
                 f"largest batch that fits: {self.max_fit}; throughput knee: {self.knee}",
                 (f"gradient noise scale B_simple: {self.b_noise:.0f} (95 % interval {b_lo:.0f} to {b_hi:.0f}, "
                 f"{self.noise_method} estimator; measured at steps "
                 f"{', '.join(str(int(s)) for s in self.noise_steps)} of a run at batch {self.ref_batch_size}, "
                 f"lr {self.ref_lr:.3g})"),
                 f"measured in {self.seconds:.1f} s " + ("(fixed work)" if self.fixed_work else
                                                         f"(budget {self.time_budget_s:g} s)")]
        return "\n".join(lines + [f"note: {n}" for n in self.notes])


def _make_model_fn(model):
    """A function returning a fresh model: model itself if it is a class or factory, else copies of the module."""
    if isinstance(model, nn.Module):
        state = copy.deepcopy(model)
        return lambda: copy.deepcopy(state)
    if callable(model):
        def make():
            m = model()
            if not isinstance(m, nn.Module):
                raise TypeError(f"model() must return a torch.nn.Module, got {type(m).__name__}")
            return m
        return make
    raise TypeError(f"model must be a torch.nn.Module or a callable returning one (e.g. models.MLP), "
                    f"got {type(model).__name__}")


def _grid(max_fit, start=1):
    """Powers of 2 from start (1 or 2) up to max_fit, and max_fit itself."""
    grid = [2 ** k for k in range(int(math.log2(start)), int(math.log2(max_fit)) + 1)]
    return grid if grid[-1] == max_fit else grid + [max_fit]


def _check_spread_and_tolerance(spread, tolerance):
    """Raise unless spread is a factor >= 1 and tolerance a number >= 0; returns spread as a float."""
    spread = check_positive_float(spread, "spread")
    if spread < 1:
        raise ValueError(f"spread must be a factor >= 1, got {spread}")
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not 0 <= tolerance < np.inf:
        raise ValueError(f"tolerance must be a number >= 0, got {tolerance!r}")
    return spread


def recommend(throughput, b_noise, spread=3.0, tolerance=0.1):
    """The batch size with the smallest predicted time to a target, and the range of good ones: (best, (low, high)).

    Introduced in chapter 6 (choosing a batch size). The best is the smallest `predicted_time` from the median step
    times. A batch size is in the range if, for some critical batch size within a factor `spread` of b_noise, its
    predicted time at the lower quartile of its step time is within `tolerance` of the fastest predicted time at
    the upper quartile of that one's: batch sizes that the spread of the timings cannot tell from the fastest count
    as good, so the range does not hinge on the noise of one repeat. With no spread (q25 = q75) it is the plain
    rule on the medians.
    """
    if not isinstance(throughput, hardware.Throughput):
        raise TypeError(f"throughput must be a hardware.Throughput, got {type(throughput).__name__}")
    spread = _check_spread_and_tolerance(spread, tolerance)
    B = throughput.batch_sizes
    pred = predicted_time(B, throughput.median_s, b_noise)
    best = int(B[np.argmin(pred)])
    fast, slow = np.minimum(throughput.q25_s, throughput.median_s), np.maximum(throughput.q75_s, throughput.median_s)
    good = np.zeros(len(B), bool)
    for b_crit in np.geomspace(b_noise / spread, b_noise * spread, 41):  # (41,) critical batch sizes
        good |= predicted_time(B, fast, b_crit) <= (1 + tolerance) * predicted_time(B, slow, b_crit).min()
    return best, (int(B[good].min()), int(B[good].max()))




# ----------------------------------------------------------------------------------------------------------------
# the procedure: checked settings, the deadlines, one function per phase


@dataclass(frozen=True)
class _Settings:
    """The checked arguments of one `advise` call and what follows from them (chapter 6)."""

    make_model: object  # a function returning a fresh model (`_make_model_fn`), moved to device by `model()`
    train: batches.Examples  # the training examples, on the device, floating tensors in the model's dtype
    held_out: batches.Examples  # the held-out examples that score the probe, likewise
    loss_fn: object  # loss_fn(output, target) -> mean loss, or None: cross-entropy
    min_batch: int  # 2 with batch norm (training needs two examples), else 1
    device: torch.device
    budget: float  # seconds; inf with fixed work
    fixed_work: bool
    rounds: int
    cap: int  # the largest batch to consider
    ref_batch_size: int  # as given (checked); the phases may lower it
    lr: float  # None: probe
    memory_budget_bytes: int
    num_noise_points: int
    max_train_steps: int
    probe_steps: int
    num_noise_examples: int
    max_noise_draws: int
    noise_precision: float
    spread: float
    tolerance: float
    repeats: int
    seed: int
    threads: int

    @property
    def num_examples(self):
        return len(self.train)

    def model(self):
        """A fresh model from the seed, on the device."""
        seeding.manual_seed(self.seed)
        return self.make_model().to(self.device)

    def pin(self):
        """A fresh context each time: torch's CPU threads pinned as for every timing of chapter 4."""
        return hardware.num_threads(self.threads) if self.threads is not None else contextlib.nullcontext()

    def step(self, model, optimizer, idx):
        """One SGD step on the examples at idx; returns the loss tensor (not read: no wait for the device)."""
        inputs, targets = self.train.take(idx)
        optimizer.zero_grad(set_to_none=True)
        loss = batches.mean_loss(batches.call_model(model, inputs), targets, self.loss_fn)
        loss.backward()
        optimizer.step()
        return loss.detach()


def _check_mode(fixed_work, time_budget_s, rounds):
    """The time budget (inf with fixed work) and the checked rounds: (budget, rounds); raises on bad input."""
    if not isinstance(fixed_work, bool):
        raise TypeError(f"fixed_work must be True or False, got {fixed_work!r}")
    if fixed_work:
        if time_budget_s is not None:
            check_positive_float(time_budget_s, "time_budget_s")
        return math.inf, check_positive_int(rounds, "rounds")
    return check_positive_float(time_budget_s, "time_budget_s"), rounds




def _check_model_on_data(make_model, train, held_out, loss_fn, device, seed):
    """One training step on two examples (the cold start, before any phase): the output against the loss and labels.

    Returns the smallest batch that trains (2 with batch norm, else 1).
    """
    seeding.manual_seed(seed)
    model = make_model().to(device)
    min_batch = 2 if batches.has_batch_norm(model) else 1
    inputs, targets = train.take(slice(0, 2))
    try:
        output = batches.call_model(model, inputs)
    except (RuntimeError, TypeError, ValueError, IndexError) as error:
        raise ValueError(f"the model fails on two examples of the data: {type(error).__name__}: "
                         f"{str(error).splitlines()[0] if str(error) else ''}") from error
    if loss_fn is None:
        if not isinstance(output, torch.Tensor):
            raise TypeError(f"the model returned a {type(output).__name__}, not a tensor of logits: give "
                            f"loss_fn(output, target) that returns the mean loss")
        batches.check_labels(output, {"training": train, "held-out": held_out})
    loss = batches.mean_loss(output, targets, loss_fn)
    if not torch.isfinite(loss):
        raise ValueError(f"the loss of the untrained model on two examples is {float(loss)}: check the data and "
                         f"loss_fn")
    loss.backward()  # and a first optimizer step: what the first step of a process loads is not charged to a phase
    torch.optim.SGD(model.parameters(), lr=1e-3).step()
    return min_batch


def _checked_settings(model, data, loss_fn, time_budget_s, ref_batch_size, lr, device, memory_budget_bytes,
                      max_batch_size, num_noise_points, max_train_steps, probe_steps, num_noise_examples,
                      max_noise_draws, noise_precision, spread, tolerance, repeats, seed, threads, fixed_work, rounds):
    """advise's arguments checked (in advise's order of checks, so the first bad one is reported) as `_Settings`."""
    budget, rounds = _check_mode(fixed_work, time_budget_s, rounds)
    make_model = _make_model_fn(model)
    if loss_fn is not None and not callable(loss_fn):
        raise TypeError(f"loss_fn must be None or a callable loss_fn(output, target), got {type(loss_fn).__name__}")
    train, held_out = batches.examples(data, seed)
    ref_batch_size = check_batch_size(ref_batch_size, len(train), "ref_batch_size")
    cap = len(train) if max_batch_size is None else min(check_positive_int(max_batch_size, "max_batch_size"),
                                                         len(train))
    if lr is not None:
        lr = check_positive_float(lr, "lr")
    if memory_budget_bytes is not None:
        memory_budget_bytes = check_positive_int(memory_budget_bytes, "memory_budget_bytes")
    counts = [check_positive_int(v, name) for v, name in (
        (num_noise_points, "num_noise_points"), (max_train_steps, "max_train_steps"), (probe_steps, "probe_steps"),
        (num_noise_examples, "num_noise_examples"), (max_noise_draws, "max_noise_draws"), (repeats, "repeats"))]
    noise_precision = check_positive_float(noise_precision, "noise_precision")
    if noise_precision <= 1:
        raise ValueError(f"noise_precision must be a factor > 1, got {noise_precision}")
    spread = _check_spread_and_tolerance(spread, tolerance)
    if threads is not None:
        threads = check_positive_int(threads, "threads")
    probe = make_model()
    model_device, dtype = batches.model_device_dtype(probe)
    try:
        device = model_device if device is None else torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ValueError(f"device must be None (the model's), or a device such as 'cpu' or 'cuda', got "
                         f"{device!r}") from error
    train, held_out = train.to(device, dtype), held_out.to(device, dtype)
    min_batch = _check_model_on_data(make_model, train, held_out, loss_fn, device, seed)
    if ref_batch_size < min_batch or cap < min_batch:
        raise ValueError(f"the model has batch norm, which trains only on batches of 2 or more: ref_batch_size and "
                         f"max_batch_size must be >= 2, got {ref_batch_size} and {cap}")
    if memory_budget_bytes is not None and (loss_fn is not None or not isinstance(train.inputs, torch.Tensor)):
        raise TypeError("memory_budget_bytes needs tensor inputs and the default loss (memory.step_within_budget); "
                        "leave it None to try real steps on the device")
    return _Settings(make_model, train, held_out, loss_fn, min_batch, device, budget, fixed_work, rounds, cap,
                     ref_batch_size, lr, memory_budget_bytes, counts[0], counts[1], counts[2], counts[3], counts[4],
                     noise_precision, spread, tolerance, counts[5], seed, threads)


class _Deadlines:
    """The time budget of one `advise` call: its phases one after the other, each with its deadline (chapter 6)."""

    def __init__(self, start, budget):
        self.start, self.budget = start, budget  # _clock() when the call began; seconds (inf with fixed work)
        self.phases = {}  # name -> Phase, for the phases that ended
        self.name = self.deadline = None  # the phase under way, and its deadline in seconds since start
        self._begun, self._units, self._stopped, self._refused_end = None, [], None, None

    def now(self):
        """Seconds since the call began."""
        return _clock() - self.start

    def begin(self, name):
        """End the phase under way; the new one may use its share of the time left."""
        t = self.now()
        self.end(t)
        self.name, self._begun, self._units, self._stopped, self._refused_end = name, t, [], None, None
        self.deadline = t + _PHASE_SHARES[name] * max(0.0, self.budget - t)

    def end(self, t):
        """End the phase under way (if any) at t, recording it as a `Phase`."""
        if self.name is not None:
            self.phases[self.name] = Phase(self._begun, self.deadline, t, tuple(self._units), self._stopped,
                                           self._refused_end)
            self.name = None

    def unit(self, expected_s=0.0):
        """Called before each unit of work: the first always runs, later ones only if they are expected to end by
        the deadline (else _OutOfTime); expected_s is the unit's expected duration (0: unknown)."""
        t = self.now()
        if self._units and t + expected_s > self.deadline:
            self._stopped, self._refused_end = t, t + expected_s
            raise _OutOfTime
        self._units.append(t)



def _find_max_fit(s, clock, notes):
    """Phase 1 (chapter 4): the largest batch that fits, doubling then bisecting; returns (finder, max_fit)."""
    clock.begin("finder")
    probe_model = s.model()
    if s.memory_budget_bytes is not None:
        X, y = s.train.take(slice(0, s.cap))
        budget_step = memory.step_within_budget(probe_model, X, y, s.memory_budget_bytes)
    opt = torch.optim.SGD(probe_model.parameters(), lr=1e-3)
    ran, took = [], []

    def try_step(batch_size):  # expected to take as long as the last step per example
        clock.unit(took[-1] * batch_size / ran[-1] if ran else 0.0)
        started = clock.now()
        if s.memory_budget_bytes is not None:
            budget_step(batch_size)
        else:
            s.step(probe_model, opt, slice(0, batch_size))
        ran.append(batch_size)
        took.append(clock.now() - started)

    try:
        with s.pin():
            finder = _find_batch_size(s, try_step)
        return finder, max(s.min_batch, finder.batch_size if finder.smallest_failed is not None else
                           finder.largest_fit)
    except _OutOfTime:
        notes.append(f"the finder was cut short by the time budget; batch sizes up to {max(ran)} ran")
        return None, max(ran)


def _find_batch_size(s, try_step):
    """memory.find_batch_size from the smallest batch that trains; a ValueError (memory_budget_bytes) or
    CannotAdvise (the device) when not even that fits."""
    try:
        return memory.find_batch_size(try_step, s.cap, start=s.min_batch, margin=0.1)
    except RuntimeError as error:
        if not str(error).startswith("not even"):
            raise
        if s.memory_budget_bytes is not None:
            raise ValueError(f"memory_budget_bytes={s.memory_budget_bytes} is too small: not even a batch of "
                             f"{s.min_batch} fits in it with the model's parameters") from error
        raise CannotAdvise(f"not even a batch of {s.min_batch} fits in the memory of {s.device}; try a smaller "
                           f"model or another device") from error


def _make_timed_step(s, batch_size):
    """A training step on the first batch_size examples, on a fresh model, to be timed (SGD, lr 0.01)."""
    model = s.model()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    return lambda: s.step(model, opt, slice(0, batch_size))


def _time_steps(s, clock, notes, max_fit):
    """Phase 2 (chapter 4): time per step on the grid of batch sizes up to max_fit; returns (throughput, step_times)."""
    clock.begin("throughput")
    grid = _grid(max_fit, s.min_batch)
    if s.fixed_work:
        return _time_interleaved_grid(s, clock, grid)
    return _time_grid_by_deadline(s, clock, notes, grid), None


def _time_interleaved_grid(s, clock, grid):
    """Fixed work: every batch size in each round, in a new random order: drifts of a shared machine spread evenly."""
    steps, flops = [], []
    with s.pin():
        for batch_size in grid:
            clock.unit()
            steps.append(_make_timed_step(s, batch_size))
            flops.append(hardware.count_flops(steps[-1]))  # also a first warm-up call
    step_times = hardware.time_interleaved(steps, rounds=s.rounds, repeats=s.repeats, warmup=1, device=s.device,
                                           threads=s.threads, seed=s.seed)  # (rounds, len(grid))
    q25, median, q75 = np.percentile(step_times, [25, 50, 75], axis=0)
    return hardware.Throughput(np.array(grid, dtype=np.int64), median, q25, q75, np.array(flops)), step_times


def _time_grid_by_deadline(s, clock, notes, grid):
    """Time budget: one batch size after the other, each on a fresh model, until the phase's deadline."""
    rows = []
    try:
        with s.pin():
            for batch_size in grid:  # a unit is 3 + repeats steps, expected to grow at most in proportion to B
                clock.unit((3 + s.repeats) * rows[-1][1] * batch_size / rows[-1][0] if rows else 0.0)
                step = _make_timed_step(s, batch_size)
                flops = hardware.count_flops(step)  # also the first warm-up call
                t = hardware.time_fn(step, repeats=s.repeats, warmup=2, device=s.device)
                rows.append((batch_size, t.median, t.q25, t.q75, flops))
    except _OutOfTime:
        notes.append(f"throughput measured up to batch size {rows[-1][0]} only (time budget): the recommended "
                     f"range cannot reach above it")
    cols = [np.array(c) for c in zip(*rows)]
    return hardware.Throughput(cols[0].astype(np.int64), *cols[1:])


def _measured_ref_batch_size(ref_batch_size, throughput, notes):
    """ref_batch_size, lowered (with a note) to the largest measured batch size if it lies above it."""
    largest = int(throughput.batch_sizes[-1])
    if ref_batch_size > largest:
        notes.append(f"ref_batch_size lowered from {ref_batch_size} to {largest}, the largest measured")
        return largest
    return ref_batch_size


def _batch_indices(num_examples, batch_size, seed):
    """Endless mini-batches of example indices, shuffled each epoch (seeded), each (batch_size,)."""
    generator = seeding.generator(seed)
    while True:
        perm = torch.randperm(num_examples, generator=generator)
        for start in range(0, num_examples - batch_size + 1, batch_size):
            yield perm[start:start + batch_size]


def _train_run(s, lr, batch_size, num_steps, callback=None, every=1):
    """SGD from the seeded model for num_steps; callback(step, model) every `every` steps (it may raise
    _OutOfTime). Returns (model, diverged_at): the step whose loss blew up (DIVERGENCE_FACTOR), else None."""
    model = s.model()
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    first = None
    for step, idx in zip(range(1, num_steps + 1), _batch_indices(s.num_examples, batch_size, s.seed)):
        loss = float(s.step(model, opt, idx))
        first = loss if first is None else first
        if not math.isfinite(loss) or loss > DIVERGENCE_FACTOR * first:
            return model, step
        if callback is not None and step % every == 0:
            callback(step, model)
    return model, None


@contextlib.contextmanager
def _eval_mode(model):
    """model.eval() inside, each module's own mode restored after."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, training in modes:
            m.train(training)


def _chance_loss(s):
    """Held-out cross-entropy of the best constant guess, the training labels' frequencies (add-one smoothed):
    (mean, se) over the same chunks as `_held_out_loss`; (inf, 0) with a loss_fn, which has no such level."""
    if s.loss_fn is not None:
        return math.inf, 0.0
    y, y_held = s.train.targets.reshape(-1), s.held_out.targets
    num_classes = int(max(y.max(), y_held.max())) + 1
    log_freq = torch.log((torch.bincount(y, minlength=num_classes) + 1.0) / (len(y) + num_classes))  # (C,)
    n = len(s.held_out)
    losses = np.array([float(-log_freq[y_held[c]].mean()) for c in micro_batches(n, min(8, n))])
    return float(-log_freq[y_held.reshape(-1)].mean()), float(np.std(losses, ddof=1) / np.sqrt(len(losses))) \
        if len(losses) > 1 else math.inf


def _held_out_loss(s, model):
    """Mean held-out loss in eval mode and its standard error over up to 8 chunks: (mean, se)."""
    n = len(s.held_out)
    chunks = micro_batches(n, min(8, n))
    with _eval_mode(model), torch.no_grad():
        losses = np.array([float(batches.mean_loss(batches.call_model(model, inputs), targets, s.loss_fn))
                           for inputs, targets in (s.held_out.take(c) for c in chunks)])
    sizes = np.array([c.stop - c.start for c in chunks])
    mean = float(np.sum(losses * sizes) / n)
    se = float(np.std(losses, ddof=1) / np.sqrt(len(losses))) if len(losses) > 1 else math.inf
    return mean, se


def _probe_lr(s, clock, notes, t_ref, ref_batch_size):
    """Phase 3 (chapter 2's grid): the lr at ref_batch_size, given or probed, and the cap of the recommended lr.

    Returns (lrs, losses, steps, lr, lr_cap). One unit per lr, in increasing order; the probe stops after two
    diverged lrs in a row. Raises CannotAdvise when every lr diverged or the held-out loss did not move.
    """
    if s.lr is not None:
        return np.zeros(0), np.zeros(0), 0, s.lr, math.inf
    clock.begin("probe")
    probe_lrs = np.array(PROBE_LRS)
    # sized to fit its deadline from the measured step time (1.5 t_ref per step: reading the loss, the optimizer)
    affordable = (clock.deadline - clock.now()) / (1.5 * len(probe_lrs) * t_ref)
    steps = max(1, int(min(affordable, s.probe_steps)))
    if steps < s.probe_steps:
        notes.append(f"the learning-rate probe ran {steps} steps instead of {s.probe_steps} (time budget)")
    start_loss, start_se = min(_held_out_loss(s, s.model()), _chance_loss(s))  # the lower: the harder to beat
    losses = np.full(len(probe_lrs), np.nan)
    diverged = np.zeros(len(probe_lrs), bool)
    try:
        with s.pin():
            for i, lr in enumerate(probe_lrs):
                clock.unit(1.5 * steps * t_ref)
                model, diverged_at = _train_run(s, lr, ref_batch_size, steps)
                diverged[i] = diverged_at is not None
                losses[i] = np.nan if diverged[i] else _held_out_loss(s, model)[0]
                if diverged[i] and i and diverged[i - 1]:
                    break  # larger lrs diverge too
    except _OutOfTime:
        notes.append(f"the learning-rate probe tried lrs up to {probe_lrs[i - 1]:.3g} only (time budget)")
    return _probe_verdict(s, notes, probe_lrs, losses, diverged, steps, ref_batch_size, start_loss, start_se)


def _probe_verdict(s, notes, probe_lrs, losses, diverged, steps, ref_batch_size, start_loss, start_se):
    """The best probed lr and the cap: the largest lr from the best up that lowered the held-out loss below
    start_loss (the start or chance, the lower), below the smallest above the best that diverged or did not lower
    it. CannotAdvise if every lr diverged or none lowered it."""
    if np.all(np.isnan(losses)):
        raise CannotAdvise(f"every learning rate of the probe diverged at batch size {ref_batch_size}; give a "
                           f"smaller lr (lr=...)", notes)
    best = int(np.nanargmin(losses))
    # above the best lr: diverged, not tried, or no better than the start or chance
    failed = (np.isnan(losses) | (losses >= start_loss)) & (probe_lrs > probe_lrs[best])
    lr_cap = float(probe_lrs[~failed & (probe_lrs < probe_lrs[failed].min(initial=math.inf))].max())
    drop = start_loss - losses[best]
    if not drop > 2 * start_se:
        raise CannotAdvise(f"the probe's held-out loss did not move: {start_loss:.4g} at the start or at chance "
                           f"(the training labels' frequencies), whichever is lower, {losses[best]:.4g} after "
                           f"{steps} steps at the best lr {probe_lrs[best]:.3g} (batch {ref_batch_size}), a fall of "
                           f"less than twice the standard error of the held-out loss ({start_se:.2g}); try a longer "
                           f"time budget or more probe_steps, check that the model can learn the data (labels, "
                           f"inputs, loss_fn), or give lr", notes)
    if best == len(probe_lrs) - 1:
        notes.append(f"the probe's best lr is the largest it tried ({probe_lrs[best]:.3g}): a larger one may be "
                     f"better")
    return probe_lrs, losses, steps, float(probe_lrs[best]), lr_cap


def _noise_method(s, model, notes):
    """"per-example" where torch.func differentiates the model example by example, else "two-batch" (with a note)."""
    if batches.has_batch_norm(model):
        notes.append("batch norm couples the examples of a batch, so per-example gradients are not defined: the noise "
                     "scale comes from the two-batch estimator at batches of 2 or more, in training mode")
        return "two-batch"
    inputs, targets = s.train.take(slice(0, 2))
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            grads.batch_sq_norms_func(model, inputs, targets, s.loss_fn)
        slow = [str(w.message) for w in caught if "batching rule" in str(w.message)]
        if slow:  # torch.func loops over the examples (e.g. nn.LSTM on a CPU): slower than two batches
            raise RuntimeError(slow[0])
    except Exception as error:  # noqa: BLE001 -- any failure of torch.func on this model means: fall back
        first = str(error).splitlines()[0] if str(error) else ""
        notes.append(f"torch.func cannot take per-example gradients of this model efficiently "
                     f"({type(error).__name__}: {first[:100]}): the noise scale comes from the two-batch estimator")
        return "two-batch"
    if any(isinstance(m, nn.Dropout) and m.p > 0 for m in model.modules()):
        notes.append("the noise scale is measured in training mode, dropout sampled afresh for every example")
    return "per-example"


def _noise_point(s, model, method, sizes, seed, until):
    """B_simple of model now, drawn until its 95 % interval lies within noise_precision (or max_noise_draws, or
    the time `until`, seconds since the call began). Returns a grads.NoiseEstimate."""
    b_small, b_big = sizes
    n = min(s.num_examples, s.num_noise_examples)
    generator = seeding.generator(seed)
    small, big = [], []
    while True:
        if method == "per-example":
            inputs, targets = s.train.take(torch.randint(n, (b_big,), generator=generator).to(s.device))
            sq_one, sq_batch = grads.batch_sq_norms_func(model, inputs, targets, s.loss_fn)
        else:
            sq_one, sq_batch = (grads.batch_sq_norm(model, *s.train.take(
                torch.randint(n, (b,), generator=generator).to(s.device)), s.loss_fn) for b in (b_small, b_big))
        small.append(sq_one)
        big.append(sq_batch)
        if len(small) >= MIN_NOISE_DRAWS:
            estimate = grads.noise_estimate(small, big, b_small, b_big, seed=seed)
            if estimate.within(s.noise_precision) or len(small) >= s.max_noise_draws or _clock() > until:
                return estimate


def _noise_sizes(s, model, method, ref_batch_size):
    """(b_small, b_big) of the estimator: (1, examples per draw) per example, else batches of two sizes."""
    n = min(s.num_examples, s.num_noise_examples)
    if method == "per-example":
        num_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
        return 1, max(2, min(n, 64, 2**23 // max(1, num_params)))  # (b_big, num_params) float64 under 64 MiB
    b_big = max(2 * s.min_batch, min(n, max(4 * ref_batch_size, 64)))
    return max(s.min_batch, b_big // 8), b_big


def _measure_noise(s, clock, notes, t_ref, ref_batch_size, lr):
    """Phase 4 (chapter 1): B_simple with its interval at num_noise_points + 1 points of a short run at lr.

    Returns (noise_steps, estimates, method). The run is sized to fit the deadline from the step time t_ref and
    the time of the first measurement; each measurement is a unit of work and may use its share of what is left.
    """
    clock.begin("noise")
    state = {"every": 1, "points": s.num_noise_points + 1}
    noise_steps, estimates = [], []

    def measure(step, model):  # expected to take as long as the last measurement
        clock.unit(state.get("t_measure", 0.0))
        if step == 0:
            state["method"] = _noise_method(s, model, notes)
            state["sizes"] = _noise_sizes(s, model, state["method"], ref_batch_size)
        points_left = state["points"] - len(estimates)
        until = clock.start + clock.now() + 0.5 * max(0.0, clock.deadline - clock.now()) / points_left
        started = clock.now()
        estimates.append(_noise_point(s, model, state["method"], state["sizes"], s.seed + step, until))
        noise_steps.append(step)
        state["t_measure"] = clock.now() - started
        if step == 0:
            _size_noise_run(s, clock, notes, state, t_ref, clock.now() - started)

    def size_then_run():
        model = s.model()
        measure(0, model)
        return _train_run(s, lr, ref_batch_size, state["every"] * s.num_noise_points, measure, state["every"])

    try:
        with s.pin():
            _, diverged_at = size_then_run()
    except _OutOfTime:
        diverged_at = None
        notes.append(f"the noise scale was measured at {len(estimates)} of {state['points']} points (time budget)")
    clock.end(clock.now())
    if diverged_at is not None:
        raise CannotAdvise(f"the short training run at lr {lr:.3g}, batch {ref_batch_size}, diverged at step "
                           f"{diverged_at}; give a smaller lr", notes)
    return np.array(noise_steps), estimates, state["method"]


def _size_noise_run(s, clock, notes, state, t_ref, t_measure):
    """The run's steps between measurements, from the time left, the step time and a measurement's time."""
    left = clock.deadline - clock.now() - s.num_noise_points * t_measure
    affordable = left / (1.5 * t_ref) if math.isfinite(left) else math.inf
    num_steps = max(s.num_noise_points, int(min(max(affordable, 0), s.max_train_steps)))
    if num_steps < s.max_train_steps:
        notes.append(f"the training run was shortened to {num_steps} steps instead of {s.max_train_steps} "
                     f"(time budget)")
    state["every"] = max(1, num_steps // s.num_noise_points)


def _b_noise(s, estimates, notes):
    """The noise scale used, from the draws of the later half of the points pooled (it grows as the loss falls),
    with its 95 % bootstrap interval; CannotAdvise unless the interval lies within noise_precision."""
    pooled = grads.pooled_noise_estimate(estimates[len(estimates) // 2:], seed=s.seed)
    b_noise, low, high = pooled.b_simple, pooled.low, pooled.high
    if not (0 < b_noise < np.inf and high <= s.noise_precision * b_noise and low >= b_noise / s.noise_precision):
        measured = (f"B_simple {b_noise:.3g}, 95 % interval {low:.3g} to {high:.3g} "
                    f"({', '.join(str(e.num_draws) for e in estimates)} draws at the points)")
        if b_noise == np.inf:
            raise CannotAdvise(f"the mean gradient was not resolved above its noise in the later half of the short "
                               f"run ({measured}): near a minimum of the training loss B_simple grows without "
                               f"bound; try fewer max_train_steps, a smaller lr, or more data", notes)
        raise CannotAdvise(f"the gradient noise scale was not measured to a factor of {s.noise_precision:g} "
                           f"({measured}); try a longer time budget, a larger max_noise_draws or "
                           f"num_noise_examples, or a larger ref_batch_size", notes)
    return b_noise, (low, high)


def _recommend_lr(s, throughput, b_noise, ref_batch_size, lr, lr_cap, notes):
    """Phase 5: the best batch size and range (`recommend`), its lr by the rule capped at lr_cap, and a warmup where
    that raises it."""
    best, batch_range = recommend(throughput, b_noise, s.spread, s.tolerance)
    rule_lr = scaled_lr(lr, ref_batch_size, best, b_noise)
    best_lr = min(rule_lr, lr_cap)
    if best_lr < rule_lr:
        notes.append(f"the rule's lr {rule_lr:.3g} at batch {best} was capped at {lr_cap:.3g}, the largest lr the "
                     f"probe saw lower the held-out loss, below any that diverged or raised it")
    warmup_steps = max(1, s.num_examples // best) if best_lr > lr * (1 + 1e-9) else 0
    return best, batch_range, best_lr, warmup_steps


def advise(model, data, loss_fn=None, time_budget_s=30.0, ref_batch_size=32, lr=None, device=None,
           memory_budget_bytes=None, max_batch_size=None, num_noise_points=10, max_train_steps=500, probe_steps=200,
           num_noise_examples=2000, max_noise_draws=200, noise_precision=2.0, spread=3.0, tolerance=0.1, repeats=10,
           seed=0, threads=1, fixed_work=False, rounds=5):
    """Measure the model on the data and device, then recommend a batch size and a learning rate.

    Introduced in chapter 6 (choosing a batch size). Returns an `Advice`, or raises `CannotAdvise` (a
    RuntimeError whose message starts "cannot advise:" and says what to try) where the measurements cannot carry
    a recommendation. Two modes:

    - a time budget (the default): the cold start (one forward pass that also checks the model against the data)
      comes first, then each phase may use its share of the time left, checking its deadline before each unit of
      work (a finder step, one batch size's timing, one lr of the probe, one noise measurement) and saying in
      `Advice.notes` what it cut; `Advice.phases` records each phase's deadline and when each of its units began.
    - fixed work (fixed_work=True; time_budget_s is then ignored and may be None): the finder runs to the end,
      every batch size of the grid is timed in `rounds` interleaved rounds (`hardware.time_interleaved`) of
      `repeats` repeats, the probe runs probe_steps steps and the noise run max_train_steps steps with
      num_noise_points + 1 measurements. Everything but the timings is then the same on a busy or a slow machine.

    Parameters
    ----------
    model : any torch.nn.Module, or a callable returning a fresh one (e.g. `models.MLP`); trained with SGD. Its
        device and dtype are the advisor's (device overrides the device).
    data : (X, y), (X, y, X_test, y_test), a Dataset of (input, target) pairs or a DataLoader of (inputs, targets)
        batches (`batches.examples`); inputs may be tensors (token ids too), dicts (``model(**inputs)``) or tuples
        (``model(*inputs)``). The held-out part (a seeded fifth, at most 1000, if none is given) scores the probe.
    loss_fn : loss_fn(output, target) -> the batch's mean loss, for models whose output is not a tensor of logits
        (a dict, a tuple) or targets that are not class labels; default: cross-entropy over the last dimension.
    ref_batch_size : batch size of the learning-rate probe and the short training run (capped by what fits).
    lr : learning rate tuned at ref_batch_size; None probes `PROBE_LRS` for probe_steps steps and keeps the one
        with the lowest held-out loss. The recommended lr never exceeds the largest probe lr below one that diverged.
    memory_budget_bytes : act as if the device held this many bytes (`memory.step_within_budget`; tensor inputs
        and the default loss); None tries real steps on the device.
    max_batch_size : the largest batch to consider (default and cap: the training-set size).
    num_noise_examples, max_noise_draws, noise_precision : the noise scale is drawn from the first
        num_noise_examples training examples: per-example gradients by torch.func where it supports the model
        (dropout sampled per example), else the two-batch estimator (batch norm, nn.LSTM, ...); at each point
        draws continue until the 95 % bootstrap interval lies within a factor noise_precision of the estimate
        (or max_noise_draws, or the point's share of the time), and B_noise must lie within that factor too.
    spread : the critical batch size is taken to lie within this factor of B_noise (chapter 2 checks a factor 3).
    tolerance : batch sizes predicted within this fraction of the fastest time, beyond the spread of the timings,
        belong to the recommended range (`recommend`).
    repeats : timed repeats per batch size (with fixed work: per batch size and round).
    threads : torch CPU threads while measuring (chapter 4 pins one).
    fixed_work, rounds : the fixed-work mode above, and its number of interleaved timing rounds.
    """
    start = _clock()
    s = _checked_settings(model, data, loss_fn, time_budget_s, ref_batch_size, lr, device, memory_budget_bytes,
                          max_batch_size, num_noise_points, max_train_steps, probe_steps, num_noise_examples,
                          max_noise_draws, noise_precision, spread, tolerance, repeats, seed, threads, fixed_work,
                          rounds)
    clock = _Deadlines(start, s.budget)
    try:
        return _advise(s, clock)
    except CannotAdvise as error:  # what the phases did, for the accounting of the budget
        clock.end(clock.now())
        error.phases, error.seconds, error.time_budget_s = clock.phases, clock.now(), s.budget
        raise


def _advise(s, clock):
    """The phases of `advise` one after the other on checked settings, and the Advice they give."""
    notes = []
    finder, max_fit = _find_max_fit(s, clock, notes)
    throughput, step_times = _time_steps(s, clock, notes, max_fit)
    if len(throughput.batch_sizes) < 3 and (finder is None or throughput.batch_sizes[-1] < max_fit):  # cut short
        raise CannotAdvise(f"the time budget allowed timing batch sizes up to {throughput.batch_sizes[-1]} only, too "
                           f"few to choose among; give a longer time budget", notes)
    knee = hardware.throughput_knee(throughput.batch_sizes, throughput.examples_per_s)
    ref_batch_size = _measured_ref_batch_size(s.ref_batch_size, throughput, notes)
    t_ref = float(throughput.seconds_at(ref_batch_size))
    probe_lrs, probe_loss, probe_num_steps, lr, lr_cap = _probe_lr(s, clock, notes, t_ref, ref_batch_size)
    noise_steps, estimates, method = _measure_noise(s, clock, notes, t_ref, ref_batch_size, lr)
    b_noise, b_noise_interval = _b_noise(s, estimates, notes)
    best, batch_range, best_lr, warmup_steps = _recommend_lr(s, throughput, b_noise, ref_batch_size, lr, lr_cap,
                                                             notes)
    return Advice(best, batch_range, best_lr, warmup_steps, ref_batch_size, lr, int(max_fit), knee, throughput,
                  noise_steps, np.array([e.b_simple for e in estimates]), b_noise, s.spread, s.tolerance, probe_lrs,
                  probe_loss, finder, clock.now(), s.budget, notes, clock.phases, step_times, probe_num_steps,
                  s.fixed_work, b_noise_interval, estimates, method, lr_cap)


# ----------------------------------------------------------------------------------------------------------------
# the check: time to a target at a batch size, with the advice's learning rate


def time_to_target(model, data, advice, batch_size, target, seed=0, loss_fn=None, max_examples=80_000,
                   max_steps=2000):
    """Seconds to a held-out loss <= target at batch_size, with the advice's lr for it (and its warm-up from
    ref_lr): the steps taken, counted every max(1, 64 // batch_size) steps, times the step time the advisor
    measured there. inf if not reached within max_examples or max_steps. Introduced in chapter 6.

    model and data as for `advise` (the same seeded held-out part); batches drawn with replacement from seed.
    """
    if not isinstance(advice, Advice):
        raise TypeError(f"advice must be an advise.Advice (from advise), got {type(advice).__name__}")
    make_model = _make_model_fn(model)
    train, held = batches.examples(data, seed=0)
    batch_size = check_batch_size(batch_size, len(train))
    target = check_positive_float(target, "target")
    seeding.manual_seed(seed)
    net = make_model()
    device, dtype = batches.model_device_dtype(net)
    train, held = train.to(device, dtype), held.to(device, dtype)
    lr = float(advice.lr_for(batch_size))
    warmup = max(1, len(train) // batch_size) if lr > advice.ref_lr else 0
    opt = torch.optim.SGD(net.parameters(), lr=lr)
    generator = seeding.generator(seed)
    every = max(1, 64 // batch_size)
    for step in range(1, min(max_examples // batch_size, max_steps) + 1):
        opt.param_groups[0]["lr"] = lr if step > warmup else advice.ref_lr + (lr - advice.ref_lr) * step / (warmup + 1)
        inputs, targets = train.take(torch.randint(len(train), (batch_size,), generator=generator).to(device))
        opt.zero_grad()
        batches.mean_loss(batches.call_model(net, inputs), targets, loss_fn).backward()
        opt.step()
        if step % every == 0:
            with _eval_mode(net), torch.no_grad():
                loss = float(batches.mean_loss(batches.call_model(net, held.inputs), held.targets, loss_fn))
            if not math.isfinite(loss):
                return math.inf
            if loss <= target:
                return step * float(advice.throughput.seconds_at(batch_size))
    return math.inf


def fastest_share(seconds, num_boot=1000, seed=0):
    """How often each batch size comes out fastest when the seeds are resampled: (num_batch_sizes,) shares summing
    to 1, from seconds (num_batch_sizes, num_seeds) to a target (inf where unreached). Chapter 6 counts a batch size
    fastest within the seeds' noise when its share is at least 5 %, a set that, unlike the argmin of near-tied
    medians, does not flip with one seed."""
    seconds = np.asarray(seconds, dtype=float)
    if seconds.ndim != 2 or seconds.shape[0] < 1 or seconds.shape[1] < 2:
        raise ValueError(f"seconds must be (num_batch_sizes, num_seeds) with at least 2 seeds, got {seconds.shape}")
    if np.isnan(seconds).any() or (seconds <= 0).any():
        raise ValueError("seconds must be > 0 (inf where a run never reached the target), got NaN or a value <= 0")
    draws = scaling.median_steps(tune.bootstrap(seconds, num_boot=num_boot, seed=seed))  # (num_boot, num_batch_sizes)
    reached = np.isfinite(draws).any(1)
    if not reached.any():
        raise ValueError("no batch size reached the target in any resample of the seeds")
    return np.bincount(np.argmin(draws[reached], 1), minlength=len(seconds)) / reached.sum()


# ----------------------------------------------------------------------------------------------------------------
# the figure


def plot_advice(advice, axes=None):
    """Three panels: throughput with its knee and the memory limit, B_simple during the short run, and the
    predicted time to a target with the recommended range. Introduced in chapter 6. Returns the axes.
    """
    import matplotlib.pyplot as plt

    from .plots import PALETTE

    if not isinstance(advice, Advice):
        raise TypeError(f"advice must be an advise.Advice (from advise), got {type(advice).__name__}")
    if axes is None:
        axes = plt.subplots(1, 3, figsize=(11, 3.4))[1]
    if len(axes) != 3:
        raise ValueError(f"axes must hold 3 axes, got {len(axes)}")
    tp, (lo, hi) = advice.throughput, advice.batch_range
    ax = axes[0]
    ax.plot(tp.batch_sizes, tp.examples_per_s, "o-", ms=3, color=PALETTE[0], label="measured")
    ax.axvline(advice.knee, ls="--", lw=1, color=PALETTE[1], label=f"knee ({advice.knee})")
    ax.axvline(advice.max_fit, ls=":", lw=1.2, color=PALETTE[3], label=f"largest that fits ({advice.max_fit})")
    ax.set(xscale="log", yscale="log", xlabel="batch size B (examples)", ylabel="examples per second")
    ax.legend(fontsize=7)
    ax = axes[1]
    ax.plot(advice.noise_steps, advice.b_simple, "o-", ms=3, color=PALETTE[2])
    ax.set(yscale="log", xlabel=f"step (batch {advice.ref_batch_size}, lr {advice.ref_lr:.3g})",
           ylabel=r"noise scale $B_\mathrm{simple}$ (examples)")
    ax = axes[2]
    rel = advice.predicted_time / advice.predicted_time.min()
    ax.axvspan(lo, hi, color=PALETTE[2], alpha=0.15, lw=0, label=f"recommended range ({lo}-{hi})")
    ax.plot(tp.batch_sizes, rel, "o-", ms=3, color=PALETTE[0], label=r"$t(B)\,(1 + B_\mathrm{noise}/B)$")
    ax.plot([advice.batch_size], [1.0], "*", ms=10, color=PALETTE[3], label=f"recommended ({advice.batch_size})")
    ax.set(xscale="log", yscale="log", xlabel="batch size B (examples)",
           ylabel="predicted time to target (x best)")
    ax.legend(fontsize=7)
    return axes
