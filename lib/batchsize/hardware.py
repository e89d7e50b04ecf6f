"""Where the code runs: the device to use and a record of the machine, for provenance of measured numbers."""
import datetime
import os
import platform

import numpy as np
import torch


def default_device():
    """'cuda' when a GPU is visible, else 'cpu'. Introduced in chapter 1 (gradient variance)."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def cpu_model():
    """The CPU's model name, from /proc/cpuinfo where there is one."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe_environment():
    """Versions and hardware behind the numbers on a page: a dict for the status page and GPU results."""
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return {
        "date": datetime.date.today().isoformat(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda or "none",
        "numpy": np.__version__,
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "num_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": gpu,
    }
