"""Tests for hardware.py"""
import datetime
import os
import platform
import re
import time

import numpy as np
import pytest
import torch

from batchsize.hardware import cpu_model, default_device, describe_environment

KEYS = {"date", "python", "torch", "cuda", "numpy", "platform", "cpu", "num_cores", "torch_threads", "gpu"}


def test_describe_environment_has_the_documented_keys():
    assert set(describe_environment()) == KEYS


def test_describe_environment_reports_installed_versions():
    env = describe_environment()
    assert env["torch"] == torch.__version__
    assert env["numpy"] == np.__version__
    assert env["python"] == platform.python_version()
    assert env["num_cores"] == os.cpu_count()
    assert env["torch_threads"] == torch.get_num_threads()
    assert datetime.date.fromisoformat(env["date"]) == datetime.date.today()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only machine")
def test_cpu_only_machine_reports_no_gpu_and_cpu_device():
    env = describe_environment()
    assert env["gpu"] == "none"
    assert default_device() == "cpu"


def test_default_device_holds_tensors():
    assert torch.ones(2, device=default_device()).sum().item() == 2.0


@pytest.mark.skipif(not os.path.exists("/proc/cpuinfo"), reason="needs /proc/cpuinfo")
def test_cpu_model_is_first_model_name_in_proc_cpuinfo():
    with open("/proc/cpuinfo") as f:
        names = re.findall(r"^model name\s*:\s*(.*?)\s*$", f.read(), flags=re.MULTILINE)
    expected = names[0] if names else platform.processor() or platform.machine()
    assert cpu_model() == expected


# ---------------------------------------------------------------------------------------------------------------
# time_fn: checked against known durations (time.sleep) and against numpy's percentiles of its own repeats

from batchsize.hardware import (Timing, num_threads, sweep_threads, synchronize, thread_limit,  # noqa: E402
                                time_fn)


def bracketed(fn):
    """fn wrapped to record perf_counter on entry and exit of every call: [(entry, exit), ...]."""
    calls = []

    def wrapped():
        entry = time.perf_counter()
        fn(len(calls))
        calls.append((entry, time.perf_counter()))

    return wrapped, calls


def check_times_bracket_the_calls(t, calls, warmup, returned):
    """Each timed repeat i lasts at least its call and at most from the end of the call before it to the start of
    the call after it (or the return of time_fn): it times that call and nothing else. No absolute bound, so
    neither a busy nor a slow machine can break it."""
    timed = calls[warmup:]
    assert len(timed) == len(t.times)
    for i, (entry, exit_) in enumerate(timed):
        before = calls[warmup + i - 1][1] if warmup + i > 0 else -np.inf
        after = timed[i + 1][0] if i + 1 < len(timed) else returned
        assert exit_ - entry <= t.times[i] <= after - before, (i, t.times[i])


def test_time_fn_measures_a_known_sleep():
    fn, calls = bracketed(lambda i: time.sleep(0.02))
    t = time_fn(fn, repeats=5, warmup=1)
    returned = time.perf_counter()
    assert isinstance(t, Timing) and t.times.shape == (5,)
    assert t.median >= 0.02  # sleep never returns early
    check_times_bracket_the_calls(t, calls, 1, returned)


def test_time_fn_calls_warmup_then_repeats_and_times_only_the_repeats():
    # the two warm-up calls are slow, as a first call with allocation or tuning is
    fn, calls = bracketed(lambda i: time.sleep(0.2) if i < 2 else None)
    t = time_fn(fn, repeats=4, warmup=2)
    returned = time.perf_counter()
    assert len(calls) == 6
    check_times_bracket_the_calls(t, calls, 2, returned)  # so no repeat contains a warm-up's sleep


def test_time_fn_quartiles_are_numpys_percentiles_of_the_repeats():
    t = time_fn(lambda: sum(range(1000)), repeats=11, warmup=0)
    q25, med, q75 = np.percentile(t.times, [25, 50, 75])
    assert (t.q25, t.median, t.q75) == (q25, med, q75)
    assert t.q25 <= t.median <= t.q75 and t.iqr == t.q75 - t.q25
    assert np.all(t.times > 0)


def test_time_fn_pins_threads_during_the_timing_and_restores_them():
    before = torch.get_num_threads()
    seen = []
    time_fn(lambda: seen.append(torch.get_num_threads()), repeats=3, warmup=1, threads=1)
    assert seen == [1] * 4
    assert torch.get_num_threads() == before
    with num_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def test_time_fn_on_the_default_device_runs_a_matmul():
    A = torch.randn(64, 64, device=default_device())
    t = time_fn(lambda: A @ A, repeats=3, warmup=1)
    assert t.median > 0
    synchronize()  # a no-op on CPU; waits for the queue on a GPU


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA: asynchronous launches")
def test_time_fn_waits_for_asynchronous_cuda_work():
    """A synchronized timing covers the GPU's work, a bare launch does not: launches and synchronized timings are
    interleaved, and the slowest quartile of the launches stays below the fastest quartile of the timings."""
    A = torch.randn(4096, 4096, device="cuda")
    launches, synced = [], []
    for _ in range(7):
        torch.cuda.synchronize()
        start = time.perf_counter()
        A @ A  # launch only: returns before the GPU finishes
        launches.append(time.perf_counter() - start)
        torch.cuda.synchronize()
        synced.append(time_fn(lambda: A @ A, repeats=3, warmup=1, device="cuda").median)
    assert np.percentile(launches, 75) < np.percentile(synced, 25), (launches, synced)


@pytest.mark.parametrize("kwargs, error", [
    (dict(fn=3), TypeError), (dict(repeats=0), ValueError), (dict(repeats=2.5), TypeError),
    (dict(warmup=-1), ValueError), (dict(threads=0), ValueError)])
def test_time_fn_rejects_bad_input(kwargs, error):
    args = dict(fn=lambda: None) | kwargs
    fn = args.pop("fn")
    with pytest.raises(error):
        time_fn(fn, **args)


# ---------------------------------------------------------------------------------------------------------------
# FLOPs, peaks, MFU: against hand counts of the matmuls and the data-sheet table

import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

from torch.utils.data import DataLoader  # noqa: E402

from batchsize import hardware as hw  # noqa: E402
from batchsize.models import MLP  # noqa: E402


def mlp_train_flops(batch_size, sizes):
    """Hand count: forward 2*B*in*out per layer; backward 2*B*in*out for the weight gradient and again for the
    input gradient, except the first layer's input, which needs no gradient."""
    pairs = list(zip(sizes[:-1], sizes[1:]))
    per = [2 * batch_size * i * o for i, o in pairs]
    return 3 * sum(per) - per[0]


def test_count_flops_of_a_training_step_matches_the_hand_count():
    for batch_size in (1, 7, 64):
        X, y = hw.synthetic_batch(batch_size, device="cpu")
        step = hw.make_train_step(MLP(), X, y)
        assert hw.count_flops(step) == mlp_train_flops(batch_size, (40, 100, 100, 10))


def test_inference_flops_are_the_forward_matmuls():
    X, _ = hw.synthetic_batch(32, device="cpu")
    assert hw.count_flops(hw.make_inference_step(MLP(), X)) == 2 * 32 * (40 * 100 + 100 * 100 + 100 * 10)


def test_peak_flops_reads_the_data_sheet_table():
    assert hw.peak_flops("NVIDIA H100 80GB HBM3", torch.bfloat16) == 989e12
    assert hw.peak_flops("NVIDIA H100 PCIe", torch.bfloat16) == 756e12
    assert hw.peak_flops("NVIDIA H200", torch.float32) == 67e12
    assert hw.peak_flops("Tesla T4", torch.float16) == 65e12
    assert hw.peak_flops("Tesla T4", torch.bfloat16) is None  # no bf16 tensor cores
    assert hw.peak_flops("Some Future GPU") is None
    before = torch.get_float32_matmul_precision()
    try:
        torch.set_float32_matmul_precision("high")  # float32 matmuls may use TF32
        assert hw.peak_flops("NVIDIA H100 80GB HBM3", torch.float32) == 495e12
    finally:
        torch.set_float32_matmul_precision(before)
    with pytest.raises(TypeError):
        hw.peak_flops(3)


def test_mfu_is_achieved_over_peak():
    assert np.allclose(hw.mfu([2e9, 4e9], [1.0, 0.5], 1e10), [0.2, 0.8])
    with pytest.raises(ValueError):
        hw.mfu(1e9, 0.0, 1e10)
    with pytest.raises(ValueError):
        hw.mfu(1e9, 1.0, -1.0)


def test_measured_matmul_peak_is_two_n_cubed_over_the_median():
    flops_per_s, timing = hw.measured_matmul_peak(64, device="cpu", repeats=3, threads=1)
    assert flops_per_s == pytest.approx(2 * 64**3 / timing.median)


# ---------------------------------------------------------------------------------------------------------------
# steps and throughput: one step against a hand-written SGD update


def test_train_step_is_one_sgd_step_on_mean_cross_entropy():
    torch.manual_seed(0)
    model = MLP()
    X, y = hw.synthetic_batch(16, device="cpu")
    params = [p.detach().clone() for p in model.parameters()]
    grads = torch.autograd.grad(torch.nn.functional.cross_entropy(model(X), y), list(model.parameters()))
    hw.make_train_step(model, X, y, lr=0.5)()
    for p, p0, g in zip(model.parameters(), params, grads):
        torch.testing.assert_close(p.detach(), p0 - 0.5 * g)


def test_bf16_autocast_step_changes_the_parameters_and_keeps_them_float32():
    torch.manual_seed(0)
    model = MLP()
    X, y = hw.synthetic_batch(8, device="cpu")
    before = [p.detach().clone() for p in model.parameters()]
    hw.make_train_step(model, X, y, autocast_dtype=torch.bfloat16)()
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert any(not torch.equal(p, q) for p, q in zip(model.parameters(), before))


def test_inference_step_returns_the_model_output_without_autograd():
    model = MLP()
    X, _ = hw.synthetic_batch(4, device="cpu")
    out = hw.make_inference_step(model, X)()
    assert not out.requires_grad
    torch.testing.assert_close(out, model(X).detach())


def test_measure_throughput_counts_flops_linear_in_batch_size():
    tp = hw.measure_throughput(MLP(), [1, 2, 8], device="cpu", repeats=2, warmup=1, threads=1)
    assert tp.batch_sizes.tolist() == [1, 2, 8]
    assert tp.flops.tolist() == [mlp_train_flops(b, (40, 100, 100, 10)) for b in (1, 2, 8)]
    assert np.all(tp.q25_s <= tp.median_s) and np.all(tp.median_s <= tp.q75_s)
    assert np.allclose(tp.examples_per_s, tp.batch_sizes / tp.median_s)
    assert json.loads(json.dumps(tp.as_dict()))["flops"] == tp.flops.tolist()
    with pytest.raises(ValueError):
        hw.measure_throughput(MLP(), [1], mode="eval")


def test_throughput_knee_of_a_fixed_overhead_model():
    # t(B) = a + b*B: examples/s = B / (a + b*B) tends to 1/b; with a = 100 b it reaches 80 % of its value at
    # B = 4096 (97.6 % of 1/b) where B / (100 + B) >= 0.8 * 0.976, i.e. at B >= 356: the first grid point is 512
    B = 2 ** np.arange(13)
    rate = B / (100 + B)
    assert hw.throughput_knee(B, rate, fraction=0.8) == 512
    assert hw.throughput_knee(B, rate, fraction=1.0) == 4096
    with pytest.raises(ValueError):
        hw.throughput_knee([1, 2], [1.0])
    with pytest.raises(ValueError):
        hw.throughput_knee([1, 2], [1.0, 2.0], fraction=0)


def test_time_interleaved_times_every_fn_every_round():
    calls = {0: 0, 1: 0}

    def make(i):
        def fn():
            calls[i] += 1
        return fn

    out = hw.time_interleaved([make(0), make(1)], rounds=3, repeats=2, warmup=1)
    assert out.shape == (3, 2) and np.all(out > 0)
    assert calls == {0: 9, 1: 9}
    calls.update({0: 0, 1: 0})
    hw.time_interleaved([make(0), make(1)], rounds=3, repeats=[3, 1], warmup=[1, 0])  # per fn
    assert calls == {0: 12, 1: 3}
    with pytest.raises(TypeError):
        hw.time_interleaved([])
    for bad in ([1], [1, 2, 3], 1.5, True):
        with pytest.raises(ValueError, match="one per fn"):
            hw.time_interleaved([make(0), make(1)], repeats=bad)


# ---------------------------------------------------------------------------------------------------------------
# the input pipeline


def test_slow_dataset_items_take_at_least_the_delay():
    X, y = torch.arange(10.0)[:, None], torch.arange(10)
    ds = hw.SlowDataset(X, y, 0.01)
    start = time.perf_counter()
    items = [ds[i] for i in range(5)]
    assert time.perf_counter() - start >= 0.05
    assert [int(t) for _, t in items] == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError):
        hw.SlowDataset(X, y, -1)


def test_tensor_batches_and_dataloader_give_the_same_batches():
    X, y = torch.randn(10, 3), torch.arange(10)
    ours = list(hw.tensor_batches(X, y, 4))
    theirs = list(DataLoader(torch.utils.data.TensorDataset(X, y), batch_size=4))
    assert [len(b[0]) for b in ours] == [4, 4, 2]
    for (a, b), (c, d) in zip(ours, theirs):
        assert torch.equal(a, c) and torch.equal(b, d)


def test_time_epoch_sees_every_example():
    X, y = torch.randn(10, 3), torch.arange(10)
    seen = []
    seconds, first, count = hw.time_epoch(lambda: hw.tensor_batches(X, y, 3), lambda a, b: seen.append(len(a)))
    assert count == 10 and seen == [3, 3, 3, 1] and 0 <= first <= seconds
    with pytest.raises(ValueError):
        hw.time_epoch(lambda: iter(()), lambda a, b: None)


# ---------------------------------------------------------------------------------------------------------------
# recorded results: the benchmark script's file, read back by the chapter's loader

REPO = Path(__file__).resolve().parents[1]


def test_device_slug_is_file_name_safe():
    slug = hw.device_slug("cpu")
    assert slug.startswith("cpu-") and re.fullmatch(r"[a-z0-9-]+", slug)


def test_benchmark_script_writes_a_file_the_loader_reads(tmp_path):
    subprocess.run([sys.executable, str(REPO / "benchmarks" / "hardware.py"), "--quick", "--out", str(tmp_path)],
                   check=True, timeout=300, capture_output=True,
                   env=os.environ | {"OMP_NUM_THREADS": "1"})  # one thread: no oversubscription on a shared machine
    (tmp_path / "notes.json").write_text(json.dumps({"not": "a result"}))  # ignored: no provenance
    results = hw.load_results(tmp_path)
    assert len(results) == 1
    r = results[0]
    assert r["file"] == f"{hw.device_slug()}.json" and r["quick"] is True
    assert {"device", "device_name", "memory_bytes", "torch", "cuda", "dtype", "date"} <= set(r["provenance"])
    assert r["provenance"]["torch"] == torch.__version__
    for name in ("mlp", "cnn", "wide_mlp"):
        row = r["throughput"][name]
        assert row["batch_sizes"] == [1, 4] and len(row["median_s"]) == 2 and row["flops"][1] > row["flops"][0]
        assert set(r["inference"][name]) >= {"batch_sizes", "median_s", "flops"}
    assert r["throughput"]["mlp"]["flops"][0] == mlp_train_flops(1, (40, 100, 100, 10))
    pot = r["powers_of_two"]
    assert np.array(pot["seconds_per_step"]).shape == (2, len(pot["batch_sizes"]))
    assert set(r["mixed_precision"]) >= {"float32", "bfloat16"}
    finder = r.get("memory", {}).get("finder")
    if finder is not None:  # the finder against the budget agrees with the prediction from two peaks
        assert finder["found"] == finder["predicted"] and finder["smallest_failed"] == finder["found"] + 1


def test_load_results_of_an_empty_folder_is_empty(tmp_path):
    assert hw.load_results(tmp_path) == []
    (tmp_path / "README.md").write_text("no results yet")  # not a .json file: ignored
    assert hw.load_results(str(tmp_path)) == []


def test_load_results_of_a_missing_folder_raises_and_says_where_it_looked(tmp_path):
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "none"))) as info:
        hw.load_results(tmp_path / "none")
    assert "benchmarks/hardware.py" in str(info.value)  # and how to record one
    (tmp_path / "file.json").write_text("{}")
    with pytest.raises(NotADirectoryError, match="not a folder"):
        hw.load_results(tmp_path / "file.json")


def test_load_results_rejects_a_non_path_and_a_broken_file(tmp_path):
    for bad in (3, ["results"]):
        with pytest.raises(TypeError, match="folder must be a path"):
            hw.load_results(bad)
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(ValueError, match="broken.json: not a JSON file"):
        hw.load_results(tmp_path)


def test_results_ship_with_the_package_and_load_by_default():
    folder = hw.results_dir()
    assert folder == Path(hw.__file__).with_name("results") and folder.is_dir()
    assert (folder / "README.md").is_file()  # keeps the folder (and the package data) when no result is recorded
    assert hw.load_results() == hw.load_results(folder)
    for record in hw.load_results():  # whatever is committed there is a result of benchmarks/hardware.py
        assert {"device_name", "torch", "cuda", "date"} <= set(record["provenance"]), record["file"]


def test_seconds_at_interpolates_the_step_time_log_log_and_holds_the_ends():
    B = np.array([1, 4, 16])
    t = np.array([1e-3, 2e-3, 8e-3])
    tp = hw.Throughput(B, t, t, t, np.zeros(3))
    np.testing.assert_allclose(tp.seconds_at(B), t, rtol=1e-12)
    assert tp.seconds_at(2)[()] == pytest.approx(np.sqrt(1e-3 * 2e-3), rel=1e-12)  # halfway in log B
    np.testing.assert_allclose(tp.seconds_at([0.5, 64]), [1e-3, 8e-3])  # the ends held
    np.testing.assert_allclose(tp.seconds_at([8], times=2 * t), [2 * np.sqrt(2e-3 * 8e-3)], rtol=1e-12)
    with pytest.raises(ValueError, match="one value per measured batch size"):
        tp.seconds_at([2], times=[1.0, 2.0])
    with pytest.raises(ValueError, match="> 0"):
        tp.seconds_at([0])


def test_thread_limit_is_omp_num_threads_when_set_else_the_cores_we_may_use(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert thread_limit() == 3
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    for unset in ("", "0", "many"):
        monkeypatch.setenv("OMP_NUM_THREADS", unset)
        assert thread_limit() == cores
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert thread_limit() == cores


def test_sweep_threads_stay_within_the_limit(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    with num_threads(1):
        assert sweep_threads(2) == 2 and sweep_threads(8) == 3  # never above thread_limit()
        assert sweep_threads(None) == 1  # the current count
    for bad in (0, -1, 1.5, "2"):
        with pytest.raises((ValueError, TypeError), match="threads"):
            sweep_threads(bad)


def test_reference_speed_gives_positive_finite_rates_and_restores_the_threads():
    before = torch.get_num_threads()
    speed = hw.reference_speed(repeats=3)
    assert set(speed) == {"matmul_gflops", "python_loop_ns"}
    assert all(np.isfinite(v) and v > 0 for v in speed.values()) and torch.get_num_threads() == before
    assert speed["matmul_gflops"] < 1e5 and speed["python_loop_ns"] < 1e5  # a real machine's, not a mis-scaled unit
