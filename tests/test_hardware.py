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

from batchsize.hardware import Timing, num_threads, synchronize, time_fn  # noqa: E402


def test_time_fn_measures_a_known_sleep():
    t = time_fn(lambda: time.sleep(0.02), repeats=5, warmup=1)
    assert isinstance(t, Timing) and t.times.shape == (5,)
    assert t.median >= 0.02  # sleep never returns early
    assert t.median < 0.02 + 0.2  # loose: a loaded machine may wake the thread late


def test_time_fn_calls_warmup_then_repeats_and_times_only_the_repeats():
    calls = []

    def fn():
        calls.append(1)
        if len(calls) <= 2:  # the two warm-up calls are slow, as a first call with allocation or tuning is
            time.sleep(0.2)

    t = time_fn(fn, repeats=4, warmup=2)
    assert len(calls) == 6
    assert t.times.max() < 0.1


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
    A = torch.randn(4096, 4096, device="cuda")
    synced = time_fn(lambda: A @ A, repeats=5, warmup=2, device="cuda")
    start = time.perf_counter()
    A @ A  # launch only: returns before the GPU finishes
    launch = time.perf_counter() - start
    torch.cuda.synchronize()
    assert synced.median > launch


@pytest.mark.parametrize("kwargs, error", [
    (dict(fn=3), TypeError), (dict(repeats=0), ValueError), (dict(repeats=2.5), TypeError),
    (dict(warmup=-1), ValueError), (dict(threads=0), ValueError)])
def test_time_fn_rejects_bad_input(kwargs, error):
    args = dict(fn=lambda: None) | kwargs
    fn = args.pop("fn")
    with pytest.raises(error):
        time_fn(fn, **args)
