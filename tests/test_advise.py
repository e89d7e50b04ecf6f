"""Tests for advise.py and the command line (__main__.py)"""
import json
import subprocess
import sys
import time

import matplotlib

matplotlib.use("Agg")
import numpy as np
import pytest
import torch

from batchsize import advise, hardware, models


def tiny_data(num_train=256, num_test=64, seed=0):
    """A learnable 3-class problem with 8 features: labels from a fixed linear rule."""
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(num_train + num_test, 8, generator=gen)
    y = (X @ torch.randn(8, 3, generator=gen)).argmax(1)
    return X[:num_train], y[:num_train], X[num_train:], y[num_train:]


def tiny_model():
    return models.MLP(in_features=8, hidden=(16,), num_classes=3)


@pytest.fixture(scope="module")
def tiny_advice():
    torch.set_num_threads(1)
    return advise.advise(tiny_model, tiny_data(), time_budget_s=20, max_train_steps=100, probe_steps=30,
                         repeats=3, num_noise_points=4)


def test_advice_on_a_tiny_model_is_consistent(tiny_advice):
    a = tiny_advice
    grid = a.throughput.batch_sizes
    assert a.max_fit == 256 and grid[-1] == 256  # nothing runs out of memory: the data size caps the batch
    assert list(grid) == [1, 2, 4, 8, 16, 32, 64, 128, 256]
    lo, hi = a.batch_range
    assert lo <= a.batch_size <= hi and lo in grid and hi in grid
    assert a.knee in grid
    assert list(a.noise_steps) == [0, 25, 50, 75, 100] and np.all(np.isfinite(a.b_simple))
    assert a.b_noise == np.median(a.b_simple[2:])
    assert a.ref_lr in advise.PROBE_LRS and len(a.probe_loss) == len(advise.PROBE_LRS)
    assert a.lr == pytest.approx(advise.scaled_lr(a.ref_lr, a.ref_batch_size, a.batch_size, a.b_noise))
    assert (a.warmup_steps > 0) == (a.lr > a.ref_lr)
    assert a.notes == [] and a.seconds < 20
    assert "recommended batch size" in a.summary()


def test_advice_is_reproducible_apart_from_timings(tiny_advice):
    again = advise.advise(tiny_model, tiny_data(), time_budget_s=20, max_train_steps=100, probe_steps=30,
                          repeats=3, num_noise_points=4)
    assert again.ref_lr == tiny_advice.ref_lr
    np.testing.assert_array_equal(again.b_simple, tiny_advice.b_simple)
    np.testing.assert_array_equal(again.probe_loss, tiny_advice.probe_loss)


def test_time_budget_is_respected():
    """A budget far too small for the work asked: every phase is cut, the call still returns in time."""
    budget = 1.5
    start = time.perf_counter()
    a = advise.advise(tiny_model, tiny_data(), time_budget_s=budget, max_train_steps=10**6, probe_steps=10**5)
    elapsed = time.perf_counter() - start
    assert elapsed < budget + 1.0, elapsed  # one unit of work (a step, a timing, a noise measurement) past it
    assert a.seconds <= elapsed and a.notes
    assert a.batch_range[0] <= a.batch_size <= a.batch_range[1]


def test_memory_budget_caps_the_batch():
    X, y, X_test, y_test = tiny_data()
    model = tiny_model()
    peak = __import__("batchsize").memory.peak_bytes(tiny_model(), X[:40], y[:40])
    a = advise.advise(model, (X, y, X_test, y_test), time_budget_s=20, memory_budget_bytes=peak, lr=0.1,
                      max_train_steps=20, repeats=2, ref_batch_size=128)
    assert a.finder is not None and 40 <= a.finder.largest_fit < a.finder.smallest_failed < 128
    assert a.max_fit == a.finder.batch_size and a.throughput.batch_sizes.max() == a.max_fit
    assert a.batch_range[1] <= a.max_fit
    assert a.ref_batch_size == a.max_fit and any("ref_batch_size lowered" in n for n in a.notes)


def test_given_lr_skips_the_probe_and_a_module_is_left_untouched():
    model = tiny_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    a = advise.advise(model, tiny_data(), time_budget_s=20, lr=0.05, max_train_steps=20, repeats=2)
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


@pytest.mark.parametrize("kwargs, error, match", [
    ({"model": "mlp"}, TypeError, "model must be"),
    ({"model": lambda: 3}, TypeError, "must return a torch.nn.Module"),
    ({"data": (1, 2)}, TypeError, "data must be a tuple"),
    ({"time_budget_s": 0}, ValueError, "time_budget_s"),
    ({"time_budget_s": "10"}, TypeError, "time_budget_s"),
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
    figure = tmp_path / "advice.png"
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "batchsize", "advise", "--model", "mlp", "--time-budget", "6",
                          "--json", "--figure", str(figure)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["batch_range"][0] <= result["batch_size"] <= result["batch_range"][1]
    assert result["seconds"] < 6 + 2 and result["lr"] > 0
    assert figure.stat().st_size > 0
    assert time.perf_counter() - start < 60


def test_command_line_reports_bad_arguments():
    out = subprocess.run([sys.executable, "-m", "batchsize", "advise", "--time-budget", "-1"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "time_budget_s" in out.stderr
    out = subprocess.run([sys.executable, "-m", "batchsize", "advise", "--model", "resnet"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "invalid choice" in out.stderr
