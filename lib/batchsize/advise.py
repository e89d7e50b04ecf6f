"""Choosing a batch size for your own model, data and device: the book's measurements as one bounded-time call.

`advise` runs, within a time budget or with a fixed amount of work (`fixed_work=True`, whose answer does not depend
on how fast the machine is at the moment), the measurements of the earlier chapters on the model and data it is given:
the largest batch that fits (`memory.find_batch_size`, chapter 4), the time of a training step against the batch
size and its knee (`hardware.measure_throughput`, `hardware.throughput_knee`, chapter 4), a short learning-rate
probe at a reference batch (`train.train_many`, chapter 1), and the gradient noise scale B_simple at a few points
of a short training run (`grads.gradient_stats`, chapter 1). From them it predicts the wall-clock time to a target
as t(B) (1 + B_noise / B): chapter 2's S(B) = S_min (1 + B_crit / B) times the measured time per step t(B), with the
noise scale standing in for the critical batch size. The recommendation is the batch size that minimises it, a
range that allows for B_crit lying within a factor `spread` of B_noise and for the spread of the step timings, and a
starting learning rate from
McCandlish et al.'s rule of chapter 3, lr(B) = lr_max / (1 + B_noise / B), anchored at the reference batch, with a
warmup where it raises the learning rate.
"""
import contextlib
import copy
import math
import time
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch import nn

from . import grads, hardware, memory, seeding
from ._checks import check_batch_size, check_data, check_positive_float, check_positive_int
from .steps import training_step
from .train import TrainConfig, train, train_many

# share of the time left when a phase starts that the phase may use (the rest of the last is for the recommendation)
_PHASE_SHARES = {"finder": 0.25, "throughput": 0.4, "probe": 0.4, "noise": 0.9}
PROBE_LRS = tuple(0.01 * 2.0 ** np.arange(10))  # chapter 2's factor-2 grid, 0.01 to 5.12
_clock = time.perf_counter  # the clock of the deadlines (the tests replace it with a slow one)


class _OutOfTime(Exception):
    """Raised inside a callback to end a phase at its deadline."""


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
    finder step, one batch size's timing, the probe, one noise measurement) it checks the deadline, and every unit
    but the first must start by it: the budget is kept up to the last unit of each phase. The phases follow each
    other without a gap. With fixed work every deadline is infinite.
    """

    start_s: float
    deadline_s: float
    end_s: float
    unit_starts_s: tuple  # when each unit of work began, after its deadline check passed
    stopped_s: float = None  # when a failed deadline check ended the phase; None if it did all its work

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
    lr: float  # starting learning rate at batch_size, from the rule anchored at (ref_batch_size, ref_lr)
    warmup_steps: int  # linear warmup from ref_lr to lr over this many steps (0: no warmup needed)
    ref_batch_size: int  # batch size of the learning-rate probe and the short training run
    ref_lr: float  # learning rate at ref_batch_size: given, or the probe's best
    max_fit: int  # largest batch that fits in memory (the finder, with its margin), or the data size
    knee: int  # smallest measured batch size with 80 % of the best throughput
    throughput: hardware.Throughput  # time per step against batch size, up to max_fit
    noise_steps: np.ndarray  # (num_points,) training steps at which B_simple was measured
    b_simple: np.ndarray  # (num_points,) gradient noise scale at those steps
    b_noise: float  # the noise scale used: the median of the later half of b_simple (it grows during training)
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

    @property
    def predicted_time(self):
        """Predicted time to a target at each measured batch size, in units of S_min seconds."""
        return predicted_time(self.throughput.batch_sizes, self.throughput.median_s, self.b_noise)

    def lr_for(self, batch_size):
        """Starting learning rate at another batch size, by the same rule."""
        return scaled_lr(self.ref_lr, self.ref_batch_size, batch_size, self.b_noise)

    def summary(self):
        """The recommendation and its evidence in a few lines of text."""
        lo, hi = self.batch_range
        lines = [f"recommended batch size: {self.batch_size} (range {lo} to {hi})",
                 f"starting learning rate: {self.lr:.3g}" + (f" with a linear warmup over {self.warmup_steps} steps "
                                                             f"from {self.ref_lr:.3g}" if self.warmup_steps else ""),
                 f"largest batch that fits: {self.max_fit}; throughput knee: {self.knee}",
                 f"gradient noise scale B_simple: {self.b_noise:.0f} (measured at steps "
                 f"{', '.join(str(int(s)) for s in self.noise_steps)} of a run at batch {self.ref_batch_size}, "
                 f"lr {self.ref_lr:.3g})",
                 f"measured in {self.seconds:.1f} s " + ("(fixed work)" if self.fixed_work else
                                                         f"(budget {self.time_budget_s:g} s)")]
        return "\n".join(lines + [f"note: {n}" for n in self.notes])


def _make_model_fn(model):
    """A function returning a fresh model: model itself if it is a class or factory, else copies of the module."""
    if isinstance(model, nn.Module):
        state = copy.deepcopy(model).cpu()
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


def _check_data4(data):
    """Raise unless data is (X_train, y_train, X_test, y_test) with integer labels; returns the training-set size."""
    if not isinstance(data, (tuple, list)) or len(data) != 4:
        raise TypeError("data must be a tuple (X_train, y_train, X_test, y_test) of tensors, "
                        "e.g. data.load_mnist1d()")
    X, y, X_test, y_test = data
    num_examples = check_data(X, y)
    check_data(X_test, y_test)
    for name, labels in (("y_train", y), ("y_test", y_test)):
        if labels.dtype != torch.long or labels.dim() != 1:
            raise TypeError(f"{name} must hold integer class labels (torch.long, shape (N,)), got dtype "
                            f"{labels.dtype} and shape {tuple(labels.shape)}")
    return num_examples


def _grid(max_fit):
    """Powers of 2 up to max_fit, and max_fit itself."""
    grid = [2 ** k for k in range(int(math.log2(max_fit)) + 1)]
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

    make_model: object  # a function returning a fresh model (`_make_model_fn`)
    data: tuple  # (X_train, y_train, X_test, y_test) as given
    num_examples: int
    num_classes: int
    device: str
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
    spread: float
    tolerance: float
    repeats: int
    seed: int
    threads: int

    def pin(self):
        """A fresh context each time: torch's CPU threads pinned as for every timing of chapter 4."""
        return hardware.num_threads(self.threads) if self.threads is not None else contextlib.nullcontext()


def _check_mode(fixed_work, time_budget_s, rounds):
    """The time budget (inf with fixed work) and the checked rounds: (budget, rounds); raises on bad input."""
    if not isinstance(fixed_work, bool):
        raise TypeError(f"fixed_work must be True or False, got {fixed_work!r}")
    if fixed_work:
        if time_budget_s is not None:
            check_positive_float(time_budget_s, "time_budget_s")
        return math.inf, check_positive_int(rounds, "rounds")
    return check_positive_float(time_budget_s, "time_budget_s"), rounds


def _checked_settings(model, data, time_budget_s, ref_batch_size, lr, device, memory_budget_bytes, max_batch_size,
                      num_noise_points, max_train_steps, probe_steps, num_noise_examples, spread, tolerance, repeats,
                      seed, threads, fixed_work, rounds):
    """advise's arguments checked (in advise's order of checks, so the first bad one is reported) as `_Settings`."""
    budget, rounds = _check_mode(fixed_work, time_budget_s, rounds)
    make_model = _make_model_fn(model)
    num_examples = _check_data4(data)
    ref_batch_size = check_batch_size(ref_batch_size, num_examples)
    cap = num_examples if max_batch_size is None else min(check_positive_int(max_batch_size, "max_batch_size"),
                                                          num_examples)
    if lr is not None:
        lr = check_positive_float(lr, "lr")
    if memory_budget_bytes is not None:
        memory_budget_bytes = check_positive_int(memory_budget_bytes, "memory_budget_bytes")
    num_noise_points = check_positive_int(num_noise_points, "num_noise_points")
    max_train_steps = check_positive_int(max_train_steps, "max_train_steps")
    probe_steps = check_positive_int(probe_steps, "probe_steps")
    num_noise_examples = check_positive_int(num_noise_examples, "num_noise_examples")
    spread = _check_spread_and_tolerance(spread, tolerance)
    repeats = check_positive_int(repeats, "repeats")
    if threads is not None:
        threads = check_positive_int(threads, "threads")
    device = hardware.default_device() if device is None else str(device)
    X, y, X_test, y_test = data
    num_classes = int(max(y.max(), y_test.max())) + 1
    return _Settings(make_model, (X, y, X_test, y_test), num_examples, num_classes, device, budget, fixed_work, rounds,
                     cap, ref_batch_size, lr, memory_budget_bytes, num_noise_points, max_train_steps, probe_steps,
                     num_noise_examples, spread, tolerance, repeats, seed, threads)


class _Deadlines:
    """The time budget of one `advise` call: its phases one after the other, each with its deadline (chapter 6)."""

    def __init__(self, start, budget):
        self.start, self.budget = start, budget  # _clock() when the call began; seconds (inf with fixed work)
        self.phases = {}  # name -> Phase, for the phases that ended
        self.name = self.deadline = None  # the phase under way, and its deadline in seconds since start
        self._begun, self._units, self._stopped = None, [], None

    def now(self):
        """Seconds since the call began."""
        return _clock() - self.start

    def begin(self, name):
        """End the phase under way; the new one may use its share of the time left."""
        t = self.now()
        self.end(t)
        self.name, self._begun, self._units, self._stopped = name, t, [], None
        self.deadline = t + _PHASE_SHARES[name] * max(0.0, self.budget - t)

    def end(self, t):
        """End the phase under way (if any) at t, recording it as a `Phase`."""
        if self.name is not None:
            self.phases[self.name] = Phase(self._begun, self.deadline, t, tuple(self._units), self._stopped)
            self.name = None

    def unit(self):
        """Called before each unit of work: the first always runs, later ones only by the deadline (else _OutOfTime)."""
        t = self.now()
        if self._units and t > self.deadline:
            self._stopped = t
            raise _OutOfTime
        self._units.append(t)


def _find_max_fit(s, clock, notes):
    """Phase 1 (chapter 4): the largest batch that fits, doubling then bisecting; returns (finder, max_fit)."""
    clock.begin("finder")
    X, y = s.data[:2]
    seeding.manual_seed(s.seed)
    probe_model = s.make_model().to(s.device)
    if s.memory_budget_bytes is not None:
        budget_step = memory.step_within_budget(probe_model, X[:s.cap].to(s.device), y[:s.cap].to(s.device),
                                                s.memory_budget_bytes)
    opt = torch.optim.SGD(probe_model.parameters(), lr=1e-3)
    ran = []

    def try_step(batch_size):
        clock.unit()
        if s.memory_budget_bytes is not None:
            budget_step(batch_size)
        else:
            training_step(probe_model, X[:batch_size].to(s.device), y[:batch_size].to(s.device), opt)
        ran.append(batch_size)

    try:
        with s.pin():
            finder = memory.find_batch_size(try_step, s.cap, start=1, margin=0.1)
        return finder, finder.batch_size if finder.smallest_failed is not None else finder.largest_fit
    except _OutOfTime:
        notes.append(f"the finder was cut short by the time budget; batch sizes up to {max(ran)} ran")
        return None, max(ran)


def _time_steps(s, clock, notes, max_fit):
    """Phase 2 (chapter 4): time per step on the grid of batch sizes up to max_fit; returns (throughput, step_times)."""
    clock.begin("throughput")
    grid = _grid(max_fit)
    if s.fixed_work:
        return _time_interleaved_grid(s, clock, grid)
    return _time_grid_by_deadline(s, clock, notes, grid), None


def _time_interleaved_grid(s, clock, grid):
    """Fixed work: every batch size in each round, in a new random order: drifts of a shared machine spread evenly."""
    seeding.manual_seed(s.seed)
    tp_model = s.make_model().to(s.device)
    steps, flops = [], []
    with s.pin():
        for batch_size in grid:
            clock.unit()
            Xs, ys = hardware.synthetic_batch(batch_size, tuple(s.data[0].shape[1:]), s.num_classes, s.device)
            steps.append(hardware.make_train_step(tp_model, Xs, ys))
            flops.append(hardware.count_flops(steps[-1]))  # also a first warm-up call
    step_times = hardware.time_interleaved(steps, rounds=s.rounds, repeats=s.repeats, warmup=1, device=s.device,
                                           threads=s.threads, seed=s.seed)  # (rounds, len(grid))
    q25, median, q75 = np.percentile(step_times, [25, 50, 75], axis=0)
    return hardware.Throughput(np.array(grid, dtype=np.int64), median, q25, q75, np.array(flops)), step_times


def _time_grid_by_deadline(s, clock, notes, grid):
    """Time budget: one batch size after the other, each on a fresh model, until the phase's deadline."""
    rows = []
    try:
        for batch_size in grid:
            clock.unit()
            seeding.manual_seed(s.seed)
            t = hardware.measure_throughput(s.make_model(), [batch_size], in_shape=tuple(s.data[0].shape[1:]),
                                            num_classes=s.num_classes, device=s.device, repeats=s.repeats,
                                            warmup=3, threads=s.threads)
            rows.append((batch_size, t.median_s[0], t.q25_s[0], t.q75_s[0], t.flops[0]))
    except _OutOfTime:
        notes.append(f"throughput measured up to batch size {rows[-1][0]} only (time budget)")
    cols = [np.array(c) for c in zip(*rows)]
    return hardware.Throughput(cols[0].astype(np.int64), *cols[1:])


def _measured_ref_batch_size(ref_batch_size, throughput, notes):
    """ref_batch_size, lowered (with a note) to the largest measured batch size if it lies above it."""
    largest = int(throughput.batch_sizes[-1])
    if ref_batch_size > largest:
        notes.append(f"ref_batch_size lowered from {ref_batch_size} to {largest}, the largest measured")
        return largest
    return ref_batch_size


def _probe_lr(s, clock, notes, train_data, cfg, t_ref):
    """Phase 3 (chapter 2's grid): the lr at cfg.batch_size, given or probed; returns (lrs, losses, steps, lr)."""
    if s.lr is not None:
        return np.zeros(0), np.zeros(0), 0, s.lr
    # a short probe, sized to fit its deadline from the measured step time (2 t_ref per lr and step: each step also
    # evaluates)
    clock.begin("probe")
    probe_lrs = np.array(PROBE_LRS)
    affordable = (clock.deadline - clock.now()) / (2 * len(probe_lrs) * t_ref)
    steps = max(1, int(min(affordable, s.probe_steps)))
    if steps < s.probe_steps:
        notes.append(f"the learning-rate probe ran {steps} steps instead of {s.probe_steps} (time budget)")
    clock.unit()
    with s.pin():
        hist = train_many(s.make_model, train_data, probe_lrs, [s.seed], replace(cfg, num_steps=steps,
                                                                                 eval_every=steps))
    probe_loss = np.where(hist.diverged, np.nan, hist.test_loss[:, -1])
    if np.all(np.isnan(probe_loss)):
        raise RuntimeError(f"every learning rate of the probe diverged at batch size {cfg.batch_size}; give lr")
    return probe_lrs, probe_loss, steps, float(probe_lrs[np.nanargmin(probe_loss)])


def _noise_scale(model, Xn, yn, ref_batch_size, seed):
    """B_simple of model on (Xn, yn): exact per-example gradients, else McCandlish et al.'s two-batch estimator."""
    try:
        return grads.gradient_stats(model, Xn, yn).b_simple
    except TypeError:  # layers without the exact per-example path
        b_big = min(len(Xn), max(4 * ref_batch_size, 2))
        return grads.estimate_noise_scale(model, Xn, yn, max(1, b_big // 8), b_big, num_draws=20, seed=seed).b_simple


def _measure_noise(s, clock, notes, train_data, cfg, t_ref, lr):
    """Phase 4 (chapter 1): B_simple at a few points of a short run at lr; returns (noise_steps, b_simple)."""
    Xn, yn = s.data[0][:s.num_noise_examples].to(s.device), s.data[1][:s.num_noise_examples].to(s.device)
    noise_steps, b_simple = [], []

    def measure(step, m):  # each measurement is a unit of work
        clock.unit()
        noise_steps.append(step)
        b_simple.append(_noise_scale(m, Xn, yn, cfg.batch_size, s.seed))

    # the run sized to fit the deadline (3 t_ref per step, with the measurements)
    clock.begin("noise")
    affordable = (clock.deadline - clock.now()) / (3 * t_ref)
    num_steps = max(s.num_noise_points, int(min(affordable, s.max_train_steps)))
    if num_steps < s.max_train_steps:
        notes.append(f"the training run was shortened to {num_steps} steps instead of {s.max_train_steps} "
                     f"(time budget)")
    every = max(1, num_steps // s.num_noise_points)
    seeding.manual_seed(s.seed)
    run = s.make_model().to(s.device)
    try:
        with s.pin():
            measure(0, run)
            train(run, train_data, replace(cfg, lr=lr, num_steps=every * s.num_noise_points, eval_every=every),
                  callback=measure)
    except _OutOfTime:
        notes.append(f"the noise scale was measured at {len(noise_steps)} of {s.num_noise_points + 1} points "
                     f"(time budget)")
    clock.end(clock.now())
    return np.array(noise_steps), np.array(b_simple, dtype=float)


def _b_noise(b_simple):
    """The noise scale used: the median of the later half of the finite, positive B_simple (it grows as loss falls)."""
    finite = b_simple[np.isfinite(b_simple) & (b_simple > 0)]
    if finite.size == 0:
        raise RuntimeError("the gradient noise scale could not be measured (the gradient vanished or the "
                           "training run diverged); give a smaller lr")
    return float(np.median(finite[len(finite) // 2:]))


def _recommend_lr(s, throughput, b_noise, ref_batch_size, lr):
    """Phase 5: the best batch size and range (`recommend`), its lr by the rule, and a warmup where that raises it."""
    best, batch_range = recommend(throughput, b_noise, s.spread, s.tolerance)
    best_lr = scaled_lr(lr, ref_batch_size, best, b_noise)
    warmup_steps = max(1, s.num_examples // best) if best_lr > lr * (1 + 1e-9) else 0
    return best, batch_range, best_lr, warmup_steps


def advise(model, data, time_budget_s=30.0, ref_batch_size=32, lr=None, device=None, memory_budget_bytes=None,
           max_batch_size=None, num_noise_points=10, max_train_steps=500, probe_steps=200, num_noise_examples=2000,
           spread=3.0, tolerance=0.1, repeats=10, seed=0, threads=1, fixed_work=False, rounds=5):
    """Measure the model on the data and device, then recommend a batch size and a learning rate.

    Introduced in chapter 6 (choosing a batch size). Returns an `Advice`. Two modes:

    - a time budget (the default): stays within time_budget_s seconds up to one unit of work per phase (a
      training step, one batch size's timing, one noise measurement), cutting each phase short at its share of the
      budget and saying so in `Advice.notes`; `Advice.phases` records each phase's deadline and when each of its
      units began, so that the accounting can be checked. How much gets done depends on how fast the machine is
      at that moment; with a budget that cuts nothing, a second call gives the same numbers except the timings.
    - fixed work (fixed_work=True; time_budget_s is then ignored and may be None): the finder runs to the end,
      every batch size of the grid is timed in `rounds` interleaved rounds (`hardware.time_interleaved`) of
      `repeats` repeats, the probe runs probe_steps steps and the noise run max_train_steps steps with
      num_noise_points + 1 measurements. Everything but the timings is then the same on a busy or a slow machine,
      and the timings come with their spread over rounds, which the recommended range allows for.

    Parameters
    ----------
    model : a torch.nn.Module, or a callable returning a fresh one (e.g. `models.MLP`), for classification with
        the mean cross-entropy loss and SGD.
    data : (X_train, y_train, X_test, y_test); the test part scores the learning-rate probe.
    ref_batch_size : batch size of the learning-rate probe and the short training run (capped by what fits).
    lr : learning rate tuned at ref_batch_size; None probes `PROBE_LRS` for probe_steps steps and keeps the one
        with the lowest held-out loss.
    memory_budget_bytes : act as if the device held this many bytes (`memory.step_within_budget`); None tries
        real steps on the device.
    max_batch_size : the largest batch to consider (default and cap: the training-set size).
    spread : the critical batch size is taken to lie within this factor of B_noise (chapter 2 checks a factor 3).
    tolerance : batch sizes predicted within this fraction of the fastest time, beyond the spread of the timings,
        belong to the recommended range (`recommend`).
    repeats : timed repeats per batch size (with fixed work: per batch size and round).
    threads : torch CPU threads while timing (chapter 4 pins one).
    fixed_work, rounds : the fixed-work mode above, and its number of interleaved timing rounds.
    """
    start = _clock()
    s = _checked_settings(model, data, time_budget_s, ref_batch_size, lr, device, memory_budget_bytes, max_batch_size,
                          num_noise_points, max_train_steps, probe_steps, num_noise_examples, spread, tolerance,
                          repeats, seed, threads, fixed_work, rounds)
    clock, notes = _Deadlines(start, s.budget), []
    finder, max_fit = _find_max_fit(s, clock, notes)
    throughput, step_times = _time_steps(s, clock, notes, max_fit)
    knee = hardware.throughput_knee(throughput.batch_sizes, throughput.examples_per_s)
    ref_batch_size = _measured_ref_batch_size(s.ref_batch_size, throughput, notes)
    t_ref = float(throughput.seconds_at(ref_batch_size))
    train_data = tuple(t.to(s.device) for t in s.data)
    cfg = TrainConfig(batch_size=ref_batch_size, progress=False, seed=s.seed)
    probe_lrs, probe_loss, probe_num_steps, lr = _probe_lr(s, clock, notes, train_data, cfg, t_ref)
    noise_steps, b_simple = _measure_noise(s, clock, notes, train_data, cfg, t_ref, lr)
    b_noise = _b_noise(b_simple)
    best, batch_range, best_lr, warmup_steps = _recommend_lr(s, throughput, b_noise, ref_batch_size, lr)
    return Advice(best, batch_range, best_lr, warmup_steps, ref_batch_size, lr, int(max_fit), knee, throughput,
                  noise_steps, b_simple, b_noise, s.spread, s.tolerance, probe_lrs, probe_loss, finder, clock.now(),
                  s.budget, notes, clock.phases, step_times, probe_num_steps, s.fixed_work)


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
