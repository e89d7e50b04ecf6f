"""Tests for advise.py and the command line (__main__.py)"""
import inspect
import json
import subprocess
import sys

import matplotlib

matplotlib.use("Agg")
import numpy as np
import pytest
import torch

from batchsize import advise, grads, hardware, models


def tiny_data(num_train=256, num_test=64, seed=0):
    """A learnable 3-class problem with 8 features: labels from a fixed linear rule."""
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(num_train + num_test, 8, generator=gen)
    y = (X @ torch.randn(8, 3, generator=gen)).argmax(1)
    return X[:num_train], y[:num_train], X[num_train:], y[num_train:]


def tiny_model():
    return models.MLP(in_features=8, hidden=(16,), num_classes=3)


WORK = dict(max_train_steps=100, probe_steps=30, repeats=3, num_noise_points=4)  # the tiny model's fixed work


@pytest.fixture(scope="module")
def tiny_advice():
    torch.set_num_threads(1)
    return advise.advise(tiny_model, tiny_data(), fixed_work=True, time_budget_s=None, rounds=3, **WORK)


def test_advice_on_a_tiny_model_is_consistent(tiny_advice):
    a = tiny_advice
    grid = a.throughput.batch_sizes
    assert a.max_fit == 256 and grid[-1] == 256  # nothing runs out of memory: the data size caps the batch
    assert list(grid) == [1, 2, 4, 8, 16, 32, 64, 128, 256]
    lo, hi = a.batch_range
    assert lo <= a.batch_size <= hi and lo in grid and hi in grid
    assert a.knee in grid
    assert list(a.noise_steps) == [0, 25, 50, 75, 100] and np.all(np.isfinite(a.b_simple))
    assert a.b_noise == grads.pooled_noise_estimate(a.noise_estimates[2:]).b_simple
    assert a.b_noise_interval[0] < a.b_noise < a.b_noise_interval[1] <= 2 * a.b_noise <= 4 * a.b_noise_interval[0]
    assert a.ref_lr in advise.PROBE_LRS and len(a.probe_loss) == len(advise.PROBE_LRS) and a.probe_num_steps == 30
    assert a.lr == pytest.approx(advise.scaled_lr(a.ref_lr, a.ref_batch_size, a.batch_size, a.b_noise))
    assert (a.warmup_steps > 0) == (a.lr > a.ref_lr)
    assert a.notes == [] and a.fixed_work and a.time_budget_s == np.inf
    assert "recommended batch size" in a.summary() and "fixed work" in a.summary()


def test_fixed_work_times_every_batch_size_in_interleaved_rounds(tiny_advice):
    a = tiny_advice
    assert a.step_times.shape == (3, 9) and np.all(a.step_times > 0)
    q25, med, q75 = np.percentile(a.step_times, [25, 50, 75], axis=0)
    np.testing.assert_array_equal(a.throughput.median_s, med)
    np.testing.assert_array_equal(a.throughput.q25_s, q25)
    np.testing.assert_array_equal(a.throughput.q75_s, q75)
    assert list(a.phases) == ["finder", "throughput", "probe", "noise"]
    for p in a.phases.values():
        assert p.deadline_s == np.inf and not p.cut
    assert a.phases["throughput"].units == 9 and a.phases["noise"].units == 5 \
        and a.phases["probe"].units == len(advise.PROBE_LRS)  # one unit per lr


def test_advice_is_reproducible_apart_from_timings(tiny_advice):
    again = advise.advise(tiny_model, tiny_data(), fixed_work=True, rounds=2, **WORK)
    assert again.ref_lr == tiny_advice.ref_lr and again.max_fit == tiny_advice.max_fit
    np.testing.assert_array_equal(again.b_simple, tiny_advice.b_simple)
    np.testing.assert_array_equal(again.probe_loss, tiny_advice.probe_loss)


def test_a_budget_that_cuts_nothing_does_the_fixed_work(tiny_advice):
    """The two modes share every step but the timing: with a budget no machine can exhaust, the same numbers."""
    a = advise.advise(tiny_model, tiny_data(), time_budget_s=1e5, **WORK)
    assert a.notes == [] and not a.fixed_work and a.step_times is None
    assert not any(p.cut for p in a.phases.values())
    assert a.ref_lr == tiny_advice.ref_lr and a.probe_num_steps == tiny_advice.probe_num_steps
    np.testing.assert_array_equal(a.noise_steps, tiny_advice.noise_steps)
    np.testing.assert_array_equal(a.b_simple, tiny_advice.b_simple)
    np.testing.assert_array_equal(a.probe_loss, tiny_advice.probe_loss)


def slow_clock(seconds_per_reading):
    """A clock that advances by seconds_per_reading at every reading: a machine as slow as one can get."""
    readings = iter(range(10**9))
    return lambda: seconds_per_reading * next(readings)


def test_fixed_work_does_not_depend_on_the_speed_of_the_machine(tiny_advice, monkeypatch):
    monkeypatch.setattr(advise, "_clock", slow_clock(100.0))
    slow = advise.advise(tiny_model, tiny_data(), fixed_work=True, rounds=2, **WORK)
    assert slow.notes == []
    for key in ("max_fit", "ref_lr", "probe_num_steps"):
        assert getattr(slow, key) == getattr(tiny_advice, key), key
    np.testing.assert_array_equal(slow.noise_steps, tiny_advice.noise_steps)
    np.testing.assert_array_equal(slow.b_simple, tiny_advice.b_simple)
    # the same clock cuts a time budget down to one unit of work per phase: the finder stops at batch 1, so only
    # batch 1 is timed, too few batch sizes to choose among: no advice
    with pytest.raises(advise.CannotAdvise, match="cannot advise: the time budget allowed timing batch sizes up to 1 "
                                                  "only, too few to choose among; give a longer time budget") as cut:
        advise.advise(tiny_model, tiny_data(), time_budget_s=30, **WORK)
    assert list(cut.value.phases) == ["finder", "throughput"]
    assert all(p.units == 1 for p in cut.value.phases.values())
    assert cut.value.notes == ["the finder was cut short by the time budget; batch sizes up to 1 ran"]



def test_deadlines_give_each_phase_its_share_of_the_time_left(monkeypatch):
    """advise's bookkeeping on its own, on a clock that advances 1 s per reading (budget 10 s, from 0 s)."""
    monkeypatch.setattr(advise, "_clock", slow_clock(1.0))
    clock = advise._Deadlines(advise._clock(), 10.0)
    clock.begin("finder")  # at 1 s: deadline 1 + 0.25 (10 - 1)
    clock.unit()
    clock.unit()
    with pytest.raises(advise._OutOfTime):
        clock.unit()  # at 4 s, past the deadline: the phase is cut
    clock.begin("noise")  # at 5 s: ends the finder there; deadline 5 + 0.9 (10 - 5)
    clock.end(clock.now())
    finder, noise = clock.phases["finder"], clock.phases["noise"]
    assert (finder.start_s, finder.end_s, finder.unit_starts_s, finder.stopped_s, finder.refused_end_s) == \
        (1, 5, (2, 3), 4, 4)
    assert finder.deadline_s == pytest.approx(3.25) and finder.cut and finder.units == 2
    assert (noise.start_s, noise.end_s, noise.units, noise.cut) == (5, 6, 0, False)
    assert noise.deadline_s == pytest.approx(9.5)


def test_the_first_unit_of_a_phase_runs_even_past_its_deadline(monkeypatch):
    monkeypatch.setattr(advise, "_clock", slow_clock(1.0))
    clock = advise._Deadlines(advise._clock(), 1.0)
    clock.begin("probe")  # at 1 s: no time left, so the deadline is now
    clock.unit()  # at 2 s: the first unit runs
    with pytest.raises(advise._OutOfTime):
        clock.unit()
    clock.end(clock.now())
    assert clock.phases["probe"] == advise.Phase(1.0, 1.0, 4.0, (2.0,), 3.0, 3.0)

def settings(model, data, **kwargs):
    """advise's checked settings for these arguments (with advise's defaults), to run its phases one by one."""
    bound = inspect.signature(advise.advise).bind(model, data, **kwargs)
    bound.apply_defaults()
    return advise._checked_settings(**bound.arguments)


def test_each_phase_runs_on_its_own():
    """The phases of advise, called one by one on fixed-work settings (no deadline): the finder, the timing grid,
    the learning-rate probe, the noise run and the noise scale's verdict, each with what it returns."""
    s = settings(tiny_model, tiny_data(), fixed_work=True, rounds=2, **WORK)
    clock, notes = advise._Deadlines(advise._clock(), s.budget), []
    finder, max_fit = advise._find_max_fit(s, clock, notes)
    assert finder.tries[0] == (1, True) and max_fit == finder.largest_fit == 256  # nothing fails: the data caps it
    throughput, step_times = advise._time_steps(s, clock, notes, 16)
    assert list(throughput.batch_sizes) == [1, 2, 4, 8, 16] and step_times.shape == (2, 5)
    lrs, losses, steps, lr, lr_cap = advise._probe_lr(s, clock, notes, 1e-6, 32)
    assert list(lrs) == list(advise.PROBE_LRS) and steps == WORK["probe_steps"]
    assert lr == lrs[np.nanargmin(losses)] and lr <= lr_cap <= lrs.max()
    noise_steps, estimates, method = advise._measure_noise(s, clock, notes, 1e-6, 32, lr)
    assert list(noise_steps) == [0, 25, 50, 75, 100] and method == "per-example"
    assert all(e.num_draws >= advise.MIN_NOISE_DRAWS and e.b_small == 1 for e in estimates)
    b_noise, (low, high) = advise._b_noise(s, estimates, notes)
    assert b_noise == grads.pooled_noise_estimate(estimates[2:]).b_simple and low < b_noise < high
    assert list(clock.phases) == ["finder", "throughput", "probe", "noise"] and notes == []
    rng = np.random.default_rng(0)  # two draws of pure noise: B_simple not resolved, no advice
    noisy = [grads.noise_estimate(rng.gamma(2, size=2), rng.gamma(2, size=2), 1, 64) for _ in range(2)]
    with pytest.raises(advise.CannotAdvise, match="cannot advise"):
        advise._b_noise(s, noisy, notes)


def check_budget_accounting(a):
    """The budget as `advise` keeps it: contiguous phases, each with its share of the time left as its deadline,
    no unit of work after the first starting past the deadline, and a phase cut only by a failed deadline check.
    So the call overruns its budget by no more than what each phase did before its first unit and from its last
    unit on (measured in the same call: on a busy or slow machine they grow with everything else)."""
    shares = advise._PHASE_SHARES
    names = list(a.phases)
    assert names == [n for n in ("finder", "throughput", "probe", "noise") if n in a.phases]
    phases = [a.phases[n] for n in names]
    assert 0 <= phases[0].start_s and phases[-1].end_s <= a.seconds
    for before, after in zip(phases, phases[1:]):
        assert after.start_s == before.end_s  # no time outside a phase
    for name, p in zip(names, phases):
        assert p.deadline_s == pytest.approx(p.start_s + shares[name] * max(0.0, a.time_budget_s - p.start_s))
        assert p.deadline_s <= max(a.time_budget_s, p.start_s)
        starts = np.array(p.unit_starts_s)
        assert p.units >= 1 and np.all(np.diff(starts) >= 0)
        assert p.start_s <= starts[0] and starts[-1] <= p.end_s
        assert np.all(starts[1:] <= p.deadline_s), name  # every unit but the first began by the deadline
        if p.cut:  # refused because the unit was expected to end past the deadline
            assert starts[-1] <= p.stopped_s <= p.end_s and p.refused_end_s > p.deadline_s, name
    overrun = a.seconds - a.time_budget_s
    allowed = sum((p.unit_starts_s[0] - p.start_s) + (p.end_s - p.unit_starts_s[-1]) for p in phases)
    assert overrun <= allowed + (a.seconds - phases[-1].end_s), (overrun, allowed)


def test_time_budget_is_respected():
    """A budget far too small for the work asked: phases are cut at their deadlines, and the accounting holds.

    20 000 examples, so that the short run, however many steps the machine affords, stays far from the minimum of
    the training loss, where the noise scale grows without bound and the advisor would rightly refuse; no demand
    on the noise scale's precision (noise_precision=1e9), which so short a budget may or may not reach: the
    refusals are tested on their own."""
    a = advise.advise(tiny_model, tiny_data(num_train=20_000), time_budget_s=1.5, max_train_steps=10**6,
                      probe_steps=10**5, noise_precision=1e9)
    check_budget_accounting(a)
    assert a.notes and a.probe_num_steps < 10**5 and a.noise_steps[-1] < 10**6
    assert any("probe ran" in n for n in a.notes) and any("shortened" in n for n in a.notes)
    # the probe and the training run were sized to fit their deadlines from the measured step time
    t_ref = float(a.throughput.seconds_at(a.ref_batch_size))
    probe, noise = a.phases["probe"], a.phases["noise"]
    probe_seconds = a.probe_num_steps * 1.5 * len(advise.PROBE_LRS) * t_ref  # the probe's planned time
    assert a.probe_num_steps == 1 or probe_seconds <= probe.deadline_s - probe.start_s
    assert a.noise_steps[-1] * 1.5 * t_ref <= noise.deadline_s - noise.start_s or a.noise_steps[-1] <= 10
    assert a.batch_range[0] <= a.batch_size <= a.batch_range[1]


def test_budget_accounting_holds_when_nothing_is_cut(tiny_advice):
    a = advise.advise(tiny_model, tiny_data(), time_budget_s=1e5, lr=0.1, **WORK)
    check_budget_accounting(a)
    assert "probe" not in a.phases and a.probe_num_steps == 0


def test_memory_budget_caps_the_batch():
    X, y, X_test, y_test = tiny_data()
    model = tiny_model()
    peak = __import__("batchsize").memory.peak_bytes(tiny_model(), X[:40], y[:40])
    a = advise.advise(model, (X, y, X_test, y_test), fixed_work=True, memory_budget_bytes=peak, lr=0.1,
                      max_train_steps=20, repeats=2, rounds=2, ref_batch_size=128)
    assert a.finder is not None and 40 <= a.finder.largest_fit < a.finder.smallest_failed < 128
    assert a.max_fit == a.finder.batch_size and a.throughput.batch_sizes.max() == a.max_fit
    assert a.batch_range[1] <= a.max_fit
    assert a.ref_batch_size == a.max_fit and any("ref_batch_size lowered" in n for n in a.notes)


def test_given_lr_skips_the_probe_and_a_module_is_left_untouched():
    model = tiny_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    a = advise.advise(model, tiny_data(), fixed_work=True, lr=0.05, max_train_steps=20, repeats=2, rounds=2)
    assert a.ref_lr == 0.05 and a.probe_lrs.size == 0
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_scaled_lr_against_the_closed_form():
    lr = advise.scaled_lr(0.1, 32, np.array([32, 64, 1e6]), b_noise=100.0)
    eps_max = 0.1 * (1 + 100 / 32)
    np.testing.assert_allclose(lr, eps_max / (1 + 100 / np.array([32, 64, 1e6])))
    assert lr[0] == pytest.approx(0.1)
    # far below the noise scale the rule is linear, far above it flat
    assert advise.scaled_lr(0.1, 2, 4, b_noise=1e9) == pytest.approx(0.2, rel=1e-6)
    assert advise.scaled_lr(0.1, 1e6, 4e6, b_noise=1.0) == pytest.approx(0.1, rel=1e-5)


def test_recommend_finds_the_optimum_of_an_affine_step_time():
    """t = a + cB gives (a + cB)(1 + b/B), smallest at B = sqrt(ab / c): 64 for a = 1, b = 4096, c = 1."""
    B = 2 ** np.arange(12)
    t = 1.0 + 1.0 * B
    tp = hardware.Throughput(B, t, t, t, np.ones(len(B)))
    best, (lo, hi) = advise.recommend(tp, b_noise=4096.0, spread=1.0, tolerance=0.0)
    assert best == 64 and lo == hi == 64
    _, (lo, hi) = advise.recommend(tp, b_noise=4096.0, spread=4.0, tolerance=0.0)
    assert (lo, hi) == (32, 128)  # sqrt(a b / c) for b = 1024 and 16384
    _, (lo, hi) = advise.recommend(tp, b_noise=4096.0, spread=1.0, tolerance=0.5)
    pred = advise.predicted_time(B, t, 4096.0)
    inside = B[pred <= 1.5 * pred.min()]
    assert (lo, hi) == (inside.min(), inside.max())


def test_recommend_allows_for_the_spread_of_the_timings():
    """Quartiles 5 % either side of the median: a batch size joins the range when its predicted time at its lower
    quartile is within the tolerance of the best's at its upper quartile; the best is still the medians'."""
    B = 2 ** np.arange(12)
    t = 1.0 + 1.0 * B
    tp = hardware.Throughput(B, t, 0.95 * t, 1.05 * t, np.ones(len(B)))
    best, (lo, hi) = advise.recommend(tp, b_noise=4096.0, spread=1.0, tolerance=0.0)
    pred = advise.predicted_time(B, t, 4096.0)
    inside = B[0.95 * pred <= 1.05 * pred.min()]
    assert best == 64 and (lo, hi) == (inside.min(), inside.max()) == (8, 512)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"model": "mlp"}, TypeError, "model must be"),
    ({"model": lambda: 3}, TypeError, "must return a torch.nn.Module"),
    ({"data": (1, 2)}, TypeError, "inputs must be a tensor, a dict or a tuple of tensors, got int"),
    ({"data": (1, 2, 3)}, TypeError, r"data must be \(X, y\), \(X, y, X_test, y_test\), a torch.utils.data.Dataset"),
    ({"time_budget_s": 0}, ValueError, "time_budget_s"),
    ({"time_budget_s": "10"}, TypeError, "time_budget_s"),
    ({"time_budget_s": None}, TypeError, "time_budget_s"),  # only fixed work needs no budget
    ({"fixed_work": "yes"}, TypeError, "fixed_work"),
    ({"fixed_work": True, "rounds": 0}, ValueError, "rounds"),
    ({"ref_batch_size": 10**6}, ValueError, "batch_size"),
    ({"lr": -0.1}, ValueError, "lr"),
    ({"spread": 0.5}, ValueError, "spread"),
    ({"tolerance": -1}, ValueError, "tolerance"),
    ({"memory_budget_bytes": 0}, ValueError, "memory_budget_bytes"),
])
def test_bad_inputs_raise_clear_errors(kwargs, error, match):
    args = {"model": tiny_model, "data": tiny_data(), "time_budget_s": 5}
    args.update(kwargs)
    with pytest.raises(error, match=match):
        advise.advise(args.pop("model"), args.pop("data"), **args)


def test_float_labels_are_refused():
    X, y, X_test, y_test = tiny_data()
    with pytest.raises(TypeError, match="integer class labels"):
        advise.advise(tiny_model, (X, y.float(), X_test, y_test))


def test_fastest_share_against_counting_the_resamples():
    """fastest_share counts, over the same seed resamples as tune.bootstrap, how often each batch size has the
    smallest median; a batch size faster at every seed gets all of them; unreached runs (inf) lose."""
    from batchsize import scaling, tune

    rng = np.random.default_rng(3)
    seconds = rng.uniform(1, 2, (4, 5))
    draws = scaling.median_steps(tune.bootstrap(seconds, num_boot=200, seed=7))
    expected = [(np.argmin(draws, 1) == i).mean() for i in range(4)]
    np.testing.assert_allclose(advise.fastest_share(seconds, num_boot=200, seed=7), expected)
    seconds[2] = 0.5
    np.testing.assert_array_equal(advise.fastest_share(seconds), [0, 0, 1, 0])
    seconds[2] = np.inf
    assert advise.fastest_share(seconds)[2] == 0
    for bad, match in [(np.ones(3), "num_seeds"), (np.ones((3, 1)), "2 seeds"), (np.full((2, 3), np.nan), "NaN"),
                       (np.zeros((2, 3)), "> 0"), (np.full((2, 3), np.inf), "no batch size reached")]:
        with pytest.raises(ValueError, match=match):
            advise.fastest_share(bad)


def test_formula_inputs_are_checked():
    with pytest.raises(ValueError, match="b_noise"):
        advise.scaled_lr(0.1, 32, 64, b_noise=0)
    with pytest.raises(ValueError, match="same length"):
        advise.predicted_time([1, 2], [0.1], 10.0)
    with pytest.raises(TypeError, match="Throughput"):
        advise.recommend({"batch_sizes": [1]}, 10.0)


def test_plot_advice(tiny_advice):
    axes = advise.plot_advice(tiny_advice)
    assert len(axes) == 3 and axes[2].get_xscale() == "log"
    with pytest.raises(TypeError, match="Advice"):
        advise.plot_advice("advice")


def test_command_line_advises_in_its_budget(tmp_path):
    """The command line runs the time-budget mode (its accounting is tested above, in-process, where the phases
    can be read); here: it returns a consistent recommendation, the figure and the notes."""
    figure = tmp_path / "advice.png"
    out = run_cli("--model", "mlp", "--time-budget", "6", "--json", "--figure", str(figure))
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["batch_range"][0] <= result["batch_size"] <= result["batch_range"][1]
    assert result["seconds"] > 0 and result["lr"] > 0 and isinstance(result["notes"], list)
    assert result["max_fit"] >= max(result["throughput"]["batch_sizes"])
    assert figure.stat().st_size > 0


def run_cli(*args, cwd=None):
    """`python -m batchsize advise ARGS` in a subprocess; a timeout guards against a hang, it is no timing check."""
    return subprocess.run([sys.executable, "-m", "batchsize", "advise", *args], capture_output=True, text=True,
                          timeout=300, cwd=cwd, check=False)


@pytest.mark.parametrize("args, status, message", [
    (["--time-budget", "-1"], 2, "error: time_budget_s must be a finite number > 0, got -1.0"),
    (["--model", "resnet"], 2, "error: --model must be one of mlp, cnn or MODULE:FUNCTION"),
    (["--model", "no_such_module:make"], 2, "error: --model: cannot import 'no_such_module'"),
    (["--model", "missing.py:make"], 2, "error: --model: no file 'missing.py'"),
    (["--model", "user_model.py:nothing"], 2, "error: --model: 'user_model.py' has no function 'nothing'"),
    (["--model", "user_model.py:not_a_pair"], 2, "error: --model: not_a_pair() must return (model, data)"),
    (["--model", "user_model.py:bad_labels"], 2, "error: training labels must lie in 0..2"),
    (["--model", "user_model.py:fails"], 1, "error: ZeroDivisionError: division by zero"),
    (["--figure", "no_such_folder/advice.png"], 2, "error: --figure: the folder"),
    (["--figure", "advice.unknown"], 2, "error: --figure: 'advice.unknown' needs one of the extensions"),
    (["--memory-budget", "100"], 2, "error: memory_budget_bytes=100 is too small: not even a batch of 1 fits"),
    (["--ref-batch-size", "0"], 2, "error: ref_batch_size must be an integer >= 1, got 0"),
])
def test_command_line_reports_every_failure_in_one_line(tmp_path, args, status, message):
    """Bad arguments, a user's module that fails, and output paths that cannot be written: one line on stderr, no
    traceback, a non-zero status; the output paths are checked before anything is measured."""
    (tmp_path / "user_model.py").write_text(USER_MODULE)
    out = run_cli(*args, cwd=tmp_path)
    assert out.returncode == status and out.stderr.startswith(message), out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr and out.stdout == ""


USER_MODULE = """
import torch
from torch import nn


def data():
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(600, 8, generator=gen)
    return X, (X @ torch.randn(8, 3, generator=gen)).argmax(1)


def make():
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3)), data()


def not_a_pair():
    return make()[0]


def bad_labels():
    X, y = data()
    return make()[0], (X, y + 1)


def fails():
    return 1 / 0
"""


def test_command_line_advises_on_a_users_model(tmp_path):
    """--model FILE:FUNCTION loads the user's model and data; the JSON carries the advice and its uncertainty."""
    (tmp_path / "user_model.py").write_text(USER_MODULE)
    out = run_cli("--model", "user_model.py:make", "--time-budget", "4", "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["model"] == "user_model.py:make" and result["noise_method"] == "per-example"
    lo, hi = result["b_noise_interval"]
    assert lo <= result["b_noise"] <= hi and result["batch_range"][0] <= result["batch_size"]
    assert result["throughput"]["batch_sizes"][-1] <= 480  # the data's 600 examples less the held-out fifth
