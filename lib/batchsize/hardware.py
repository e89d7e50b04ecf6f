"""Where the code runs: the device to use, the book's one timing helper, and a record of the machine."""
import contextlib
import datetime
import os
import platform
import time
from dataclasses import dataclass

import numpy as np
import torch

from ._checks import check_positive_int


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


@dataclass(frozen=True)
class Timing:
    """Seconds per call of a timed function: median, quartiles and every repeat. Introduced in chapter 4."""

    median: float
    q25: float
    q75: float
    times: np.ndarray  # (repeats,) seconds

    @property
    def iqr(self):
        """Interquartile range in seconds: the spread the book reports beside every median."""
        return self.q75 - self.q25


def synchronize(device=None):
    """Wait until all queued work on the device is done (a no-op on CPU). Introduced in chapter 4."""
    device = torch.device(default_device() if device is None else device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


@contextlib.contextmanager
def num_threads(n):
    """Run the block with torch using n CPU threads, then restore the previous count. Introduced in chapter 4."""
    n = check_positive_int(n, "n")
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def time_fn(fn, *, repeats=10, warmup=3, device=None, threads=None):
    """Time fn() after warm-up calls, synchronizing the device around each repeat. Introduced in chapter 4.

    Parameters: fn is called with no arguments; warmup calls are run first and not timed (they absorb one-off
    costs such as allocation or per-shape kernel tuning); device (default: `default_device()`) is synchronized
    before and after each timed call, since CUDA runs asynchronously; threads, if given, pins torch's CPU
    threads for the timing. Returns a `Timing` (seconds, measured with time.perf_counter).
    """
    if not callable(fn):
        raise TypeError(f"fn must be callable with no arguments, got {type(fn).__name__}")
    repeats = check_positive_int(repeats, "repeats")
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"warmup must be an integer >= 0, got {warmup!r}")
    device = torch.device(default_device() if device is None else device)
    pin = num_threads(threads) if threads is not None else contextlib.nullcontext()
    times = np.empty(repeats)
    with pin:
        for _ in range(warmup):
            fn()
        for i in range(repeats):
            synchronize(device)
            start = time.perf_counter()
            fn()
            synchronize(device)
            times[i] = time.perf_counter() - start
    q25, median, q75 = np.percentile(times, [25, 50, 75])
    return Timing(median=float(median), q25=float(q25), q75=float(q75), times=times)
