"""Where the code runs and how fast: the device to use, the book's one timing helper, FLOPs and model FLOP
utilisation, throughput against the batch size for training and inference, the input pipeline, and the
machine's record (provenance) for measured numbers, live or recorded in results/.
"""
import contextlib
import datetime
import json
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from . import seeding
from ._checks import as_positive_array, check_model, check_positive_float, check_positive_int
from .steps import autocast, training_step


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


def reference_speed(repeats=7):
    """This machine's speed on one core, to read the book's run times against: the median GFLOP/s of a 512 x 512
    float32 matrix product (what large batches spend their time on) and ns per iteration of a plain Python loop
    (what bounds a step at small batches). Introduced in the status page."""
    a = torch.randn(512, 512, generator=seeding.generator(0))
    matmul = time_fn(lambda: a @ a, repeats=repeats, warmup=2, device="cpu", threads=1).median

    def loop():
        total = 0
        for i in range(100_000):
            total += i

    python = time_fn(loop, repeats=repeats, warmup=1, device="cpu").median
    return {"matmul_gflops": 2 * 512**3 / matmul / 1e9, "python_loop_ns": python / 100_000 * 1e9}


@dataclass(frozen=True)
class Timing:
    """Seconds per call of a timed function: median, quartiles and every repeat. Introduced in chapter 4."""

    median: float
    q25: float
    q75: float
    times: np.ndarray  # (repeats,) seconds

    @property
    def iqr(self):
        """The interquartile range in seconds, the spread the book reports beside every median."""
        return self.q75 - self.q25


def synchronize(device=None):
    """Wait until all queued work on the device is done (a no-op on CPU). Introduced in chapter 4."""
    device = torch.device(default_device() if device is None else device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def thread_limit():
    """The most CPU threads torch should use here: OMP_NUM_THREADS when it is set (test workers that share the cores
    set 1), else the cores this process may run on. Introduced in chapter 2.2."""
    env = os.environ.get("OMP_NUM_THREADS", "")
    if env.strip().isdigit() and int(env) > 0:
        return int(env)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def sweep_threads(threads):
    """Threads for a sweep's batched training calls: min(threads, thread_limit()), or torch's current count when
    threads is None. Many stacked runs make even a small batch's step large arrays (every run's parameters are
    updated at every step), so two threads pay at every batch size of the book's sweeps on an idle machine.
    Introduced in chapter 2.2."""
    if threads is None:
        return torch.get_num_threads()
    return min(check_positive_int(threads, "threads"), thread_limit())


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


# ---------------------------------------------------------------------------------------------------------------
# FLOPs, peaks and model FLOP utilisation

# Dense (no sparsity) peak FLOP/s from NVIDIA's data sheets, by a substring of torch.cuda.get_device_name() (first
# match wins) and dtype; "tf32" is float32 matmuls with torch.set_float32_matmul_precision("high"). The data
# sheets quote tensor-core numbers "with sparsity", twice the dense ones given here.
PEAK_FLOPS = (
    ("H200", {"bfloat16": 989e12, "float16": 989e12, "tf32": 495e12, "float32": 67e12}),
    ("H100 PCIe", {"bfloat16": 756e12, "float16": 756e12, "tf32": 378e12, "float32": 51e12}),
    ("H100", {"bfloat16": 989e12, "float16": 989e12, "tf32": 495e12, "float32": 67e12}),  # SXM
    ("A100", {"bfloat16": 312e12, "float16": 312e12, "tf32": 156e12, "float32": 19.5e12}),
    ("T4", {"float16": 65e12, "float32": 8.1e12}),
)


def _dtype_key(dtype):
    if dtype == torch.float32 and torch.get_float32_matmul_precision() != "highest":
        return "tf32"
    return str(dtype).removeprefix("torch.")


def peak_flops(device_name, dtype=torch.float32):
    """Dense peak FLOP/s of a GPU for a dtype from vendor data sheets, or None if not tabled. Introduced in chapter 4."""
    if not isinstance(device_name, str):
        raise TypeError(f"device_name must be a str such as torch.cuda.get_device_name(), got {device_name!r}")
    for pattern, peaks in PEAK_FLOPS:
        if pattern.lower() in device_name.lower():
            return peaks.get(_dtype_key(dtype))
    return None


def count_flops(fn):
    """Floating-point operations of one call fn() (matmuls and convolutions), by FlopCounterMode. Introduced in chapter 4."""
    if not callable(fn):
        raise TypeError(f"fn must be callable with no arguments, got {type(fn).__name__}")
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def measured_matmul_peak(size=1024, dtype=torch.float32, device=None, repeats=10, threads=None):
    """FLOP/s of a square matmul of the given size: the practical peak a device reaches. Introduced in chapter 4.

    Returns (flops_per_s, Timing); a matmul of two size x size matrices takes 2 size^3 operations.
    """
    size = check_positive_int(size, "size")
    device = default_device() if device is None else device
    gen = seeding.generator(0)
    A = torch.randn(size, size, generator=gen).to(device=device, dtype=dtype)
    B = torch.randn(size, size, generator=gen).to(device=device, dtype=dtype)
    timing = time_fn(lambda: A @ B, repeats=repeats, device=device, threads=threads)
    return 2 * size**3 / timing.median, timing


def mfu(flops_per_step, seconds_per_step, peak):
    """Model FLOP utilisation: achieved FLOP/s over the peak FLOP/s. Introduced in chapter 4."""
    flops = as_positive_array(flops_per_step, "flops_per_step")
    seconds = as_positive_array(seconds_per_step, "seconds_per_step")
    check_positive_float(peak, "peak")
    return flops / seconds / peak


# ---------------------------------------------------------------------------------------------------------------
# Training and inference steps, and their throughput against the batch size


def synthetic_batch(batch_size, in_shape=(40,), num_classes=10, device=None, seed=0):
    """A seeded batch of Gaussian inputs and uniform labels on the device. Introduced in chapter 4."""
    batch_size = check_positive_int(batch_size, "batch_size")
    num_classes = check_positive_int(num_classes, "num_classes")
    gen = seeding.generator(seed)
    X = torch.randn(batch_size, *in_shape, generator=gen)  # (batch_size, *in_shape)
    y = torch.randint(num_classes, (batch_size,), generator=gen)  # (batch_size,)
    device = default_device() if device is None else device
    return X.to(device), y.to(device)


def make_sgd_step(model, lr=0.01, autocast_dtype=None):
    """A function step(X, y) doing one SGD step of model on mean cross-entropy. Introduced in chapter 4.

    The step is `steps.training_step` with torch.optim.SGD; with autocast_dtype (e.g. torch.bfloat16) the forward
    pass runs under torch.autocast on X's device.
    """
    check_model(model)
    opt = torch.optim.SGD(model.parameters(), lr=check_positive_float(lr, "lr"))
    return lambda X, y: training_step(model, X, y, opt, autocast_dtype=autocast_dtype)


def make_train_step(model, X, y, lr=0.01, autocast_dtype=None):
    """A no-argument function doing one SGD step of model on the fixed batch (X, y). Introduced in chapter 4."""
    step = make_sgd_step(model, lr, autocast_dtype)
    return lambda: step(X, y)


def make_inference_step(model, X, autocast_dtype=None):
    """A no-argument function computing model(X) under inference_mode. Introduced in chapter 4."""
    check_model(model)

    def step():
        with torch.inference_mode(), autocast(X.device, autocast_dtype):
            return model(X)

    return step


@dataclass(frozen=True)
class Throughput:
    """Time per step against batch size, with FLOPs per step. Introduced in chapter 4."""

    batch_sizes: np.ndarray  # (num_batch_sizes,)
    median_s: np.ndarray  # (num_batch_sizes,) seconds per step
    q25_s: np.ndarray
    q75_s: np.ndarray
    flops: np.ndarray  # (num_batch_sizes,) FLOPs per step

    @property
    def examples_per_s(self):
        """Examples processed per second at each batch size (from the median time)."""
        return self.batch_sizes / self.median_s

    def seconds_at(self, batch_sizes, times=None):
        """Seconds per step at batch_sizes, interpolated log-log between the measured ones. Chapter 6 (advise).

        times (num_batch_sizes,) replaces the medians, e.g. one round of `time_interleaved`; outside the measured
        range the end values are held.
        """
        times = self.median_s if times is None else np.asarray(times, dtype=float)
        if times.shape != np.shape(self.batch_sizes):
            raise ValueError(f"times must have one value per measured batch size {np.shape(self.batch_sizes)}, got "
                             f"shape {times.shape}")
        batch_sizes = np.asarray(batch_sizes, dtype=float)
        if np.any(~(batch_sizes > 0)) or np.any(~(times > 0)):
            raise ValueError("batch sizes and times must be > 0")
        return np.exp(np.interp(np.log(batch_sizes), np.log(self.batch_sizes), np.log(times)))

    def as_dict(self):
        """Plain lists, for JSON."""
        return {k: getattr(self, k).tolist() for k in ("batch_sizes", "median_s", "q25_s", "q75_s", "flops")}


def measure_throughput(model, batch_sizes, in_shape=(40,), num_classes=10, mode="train", autocast_dtype=None,
                       device=None, repeats=10, warmup=3, threads=None):
    """Time one training (or inference) step of model at each batch size on synthetic data. Introduced in chapter 4.

    mode: "train" (forward, backward, SGD update) or "inference" (forward under inference_mode). Each batch size
    gets its own warm-up (kernels and allocations differ per shape). The model is moved to the device.
    """
    if mode not in ("train", "inference"):
        raise ValueError(f"mode must be 'train' or 'inference', got {mode!r}")
    batch_sizes = as_positive_array(batch_sizes, "batch_sizes", integer=True)
    device = default_device() if device is None else device
    model = model.to(device)
    rows = []
    with num_threads(threads) if threads is not None else contextlib.nullcontext():
        for batch_size in batch_sizes:
            X, y = synthetic_batch(int(batch_size), in_shape, num_classes, device)
            if mode == "train":
                step = make_train_step(model, X, y, autocast_dtype=autocast_dtype)
            else:
                step = make_inference_step(model, X, autocast_dtype=autocast_dtype)
            flops = count_flops(step)  # also the first warm-up call
            t = time_fn(step, repeats=repeats, warmup=max(warmup - 1, 0), device=device)
            rows.append((t.median, t.q25, t.q75, flops))
    median, q25, q75, flops = (np.array(col) for col in zip(*rows))
    return Throughput(batch_sizes, median, q25, q75, flops)


def throughput_knee(batch_sizes, examples_per_s, fraction=0.8):
    """Smallest batch size whose throughput reaches fraction of the largest measured. Introduced in chapter 4."""
    batch_sizes = as_positive_array(batch_sizes, "batch_sizes", integer=True)
    rate = as_positive_array(examples_per_s, "examples_per_s")
    if len(rate) != len(batch_sizes):
        raise ValueError(f"batch_sizes and examples_per_s must have the same length, got {len(batch_sizes)} "
                         f"and {len(rate)}")
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    order = np.argsort(batch_sizes)
    reached = rate[order] >= fraction * rate.max()
    return int(batch_sizes[order][np.argmax(reached)])


def time_interleaved(fns, rounds=5, repeats=5, warmup=1, device=None, threads=None, seed=0):
    """Median seconds of each fn per round, the fns timed in a new random order each round. Introduced in chapter 4.

    Interleaving spreads slow drifts of a shared machine over all fns alike; the spread over rounds is the noise.
    repeats and warmup are numbers of calls, one for all fns or a sequence with one per fn (a call of a second
    needs fewer repeats than one of a millisecond). Returns an array of shape (rounds, len(fns)).
    """
    fns = list(fns)
    if not fns or not all(callable(f) for f in fns):
        raise TypeError("fns must be a non-empty sequence of callables with no arguments")
    rounds = check_positive_int(rounds, "rounds")
    repeats, warmup = (_per_fn(v, len(fns), name) for v, name in ((repeats, "repeats"), (warmup, "warmup")))
    rng = seeding.default_rng(seed)
    out = np.empty((rounds, len(fns)))
    with num_threads(threads) if threads is not None else contextlib.nullcontext():
        for r in range(rounds):
            for j in rng.permutation(len(fns)):
                out[r, j] = time_fn(fns[j], repeats=repeats[j], warmup=warmup[j], device=device).median
    return out


def _per_fn(value, num_fns, name):
    """value (an int) for each of num_fns functions, or its given sequence of num_fns ints."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return [value] * num_fns
    if isinstance(value, (list, tuple)) and len(value) == num_fns:
        return list(value)
    raise ValueError(f"{name} must be an int or a sequence of {num_fns} ints (one per fn), got {value!r}")


# ---------------------------------------------------------------------------------------------------------------
# The input pipeline


class SlowDataset(torch.utils.data.Dataset):
    """A map-style dataset over tensors whose every item costs delay_s seconds, as decoding a file would.

    Introduced in chapter 4 (input pipeline). Lives in the lib so DataLoader workers can import it.
    """

    def __init__(self, X, y, delay_s):
        if len(X) != len(y):
            raise ValueError(f"X and y must have the same length, got {len(X)} and {len(y)}")
        if isinstance(delay_s, bool) or not isinstance(delay_s, (int, float)) or delay_s < 0:
            raise ValueError(f"delay_s must be a number >= 0, got {delay_s!r}")
        self.X, self.y, self.delay_s = X, y, float(delay_s)

    def __len__(self):
        return len(self.X)

    def __getitem__(self, i):
        if self.delay_s:
            time.sleep(self.delay_s)
        return self.X[i], self.y[i]


def tensor_batches(X, y, batch_size):
    """The in-memory pipeline: consecutive slices of X and y, no copying. Introduced in chapter 4."""
    batch_size = check_positive_int(batch_size, "batch_size")
    for start in range(0, len(X), batch_size):
        yield X[start:start + batch_size], y[start:start + batch_size]


def time_epoch(make_batches, step, device=None):
    """Seconds for one pass over make_batches(), calling step(X, y) on each batch. Introduced in chapter 4.

    Returns (seconds, seconds_to_first_batch, num_examples).
    """
    device = default_device() if device is None else device
    synchronize(device)
    start = time.perf_counter()
    first, count = None, 0
    for X, y in make_batches():
        if first is None:
            first = time.perf_counter() - start
        step(X.to(device, non_blocking=True), y.to(device, non_blocking=True))
        count += len(X)
    synchronize(device)
    if first is None:
        raise ValueError("make_batches() yielded no batch")
    return time.perf_counter() - start, first, count


# ---------------------------------------------------------------------------------------------------------------
# Recorded results


def device_slug(device=None):
    """A file-name-safe name of the device, e.g. 'nvidia-h100-80gb-hbm3' or 'cpu-amd-epyc'. Introduced in chapter 4."""
    device = torch.device(default_device() if device is None else device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu {cpu_model()}"
    slug = "".join(c if c.isalnum() else "-" for c in name.lower())
    return "-".join(part for part in slug.split("-") if part)


def results_dir():
    """The folder of recorded results shipped with this package: lib/batchsize/results/ in the repository.

    Introduced in chapter 4 (recorded GPU results). `python benchmarks/hardware.py --out lib/batchsize/results`
    records the device it runs on there; the files are committed and ship with the package, so the chapter finds
    them from any working directory and in an installed package alike.
    """
    return Path(__file__).with_name("results")


def load_results(folder=None):
    """Every recorded benchmark file in folder (a .json file with a "provenance" key), sorted by name.

    Introduced in chapter 4 (recorded GPU results). folder defaults to `results_dir()`, the package's own. Each
    result gets a 'file' key with its file name. An empty folder gives []; a folder that does not exist raises
    FileNotFoundError (a missing folder is not the same as no results: the package or the path is broken).
    """
    if folder is None:
        folder = results_dir()
    elif not isinstance(folder, (str, os.PathLike)):
        raise TypeError(f"folder must be a path, got {type(folder).__name__}")
    folder = Path(folder)
    if not folder.exists():
        raise FileNotFoundError(
            f"no results folder at {folder.resolve()}: the recorded results ship with the package in "
            f"{results_dir()} (lib/batchsize/results/ in the repository); record one on a device with "
            f"`python benchmarks/hardware.py --out lib/batchsize/results`")
    if not folder.is_dir():
        raise NotADirectoryError(f"{folder.resolve()} is not a folder: load_results reads a folder of .json files")
    results = []
    for path in sorted(folder.glob("*.json")):
        try:
            record = json.loads(path.read_text(encoding="utf8"))
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not a JSON file ({e})") from e
        if isinstance(record, dict) and "provenance" in record:
            record["file"] = path.name
            results.append(record)
    return results
