"""Tests for hardware.py"""
import datetime
import os
import platform
import re

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
