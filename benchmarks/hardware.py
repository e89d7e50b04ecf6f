"""Chapter 4's hardware measurements on whatever device is present, written to lib/batchsize/results/<device-slug>.json.

Run `python benchmarks/hardware.py` on a machine with the GPU to record (or the CPU, if none). It measures, with
the lib's functions and the book's timing helper (`hardware.time_fn`):
  1. time per training step and examples/s against the batch size for the chapter's MLP, CNN and wide MLP (and,
     on a GPU, a larger MLP that keeps it busy), with FLOPs per step and, where the peak is tabled, the MFU;
  2. powers of two: time per example at B = 2^k - 1, 2^k, 2^k + 1 and 2^k +- 8, interleaved over rounds;
  3. memory (when `batchsize.memory` is installed): saved-activation bytes and state bytes against B;
  6. mixed precision: training throughput, and on CUDA the allocator's peak memory, in float32 and bfloat16;
  7. inference latency and throughput against the batch size.
Every file carries its provenance (device, memory, driver/CUDA, torch, dtype, date). The chapter loads every file
in the package's results folder and shows it beside its live measurement, labelled as recorded. `--quick` runs a tiny version (for
tests); `--out DIR` writes elsewhere.
"""
import argparse
import datetime
import json
import os
from pathlib import Path

import numpy as np
import torch

from batchsize import hardware as hw
from batchsize import models

try:  # the memory functions of chapter 4's memory section, when present
    from batchsize import memory
except ImportError:  # pragma: no cover
    memory = None

REPO = Path(__file__).resolve().parents[1]


def provenance(device):
    """Where and when the numbers were measured."""
    env = hw.describe_environment()
    dev = torch.device(device)
    env.update(device=dev.type, device_name=hw.device_slug(dev), dtype="float32 (and bfloat16 where stated)",
               float32_matmul_precision=torch.get_float32_matmul_precision(),
               datetime=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))
    if dev.type == "cuda":
        props = torch.cuda.get_device_properties(dev)
        env.update(device_name=torch.cuda.get_device_name(dev), memory_bytes=props.total_memory,
                   capability=f"{props.major}.{props.minor}", cudnn=torch.backends.cudnn.version(),
                   driver=_nvidia_driver())
    else:
        env.update(memory_bytes=os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    return env


def _nvidia_driver():
    try:
        with open("/proc/driver/nvidia/version") as f:
            return f.readline().strip()
    except OSError:
        return "unknown"


def chapter_models(device):
    """The models of the chapter (name -> (constructor, input shape)), plus a large MLP on a GPU."""
    out = {"mlp": (models.MLP, (40,)), "cnn": (models.CNN1D, (40,)),
           "wide_mlp": (lambda: models.MLP(hidden=(1024, 1024)), (40,))}
    if torch.device(device).type == "cuda":
        out["gpu_mlp"] = (lambda: models.MLP(in_features=1024, hidden=(4096, 4096, 4096), num_classes=1000),
                          (1024,))
    return out


def peak_for(device, dtype, quick=False):
    """Tabled dense peak of the device for dtype, or the measured matmul peak on a CPU."""
    if torch.device(device).type == "cuda":
        return hw.peak_flops(torch.cuda.get_device_name(device), dtype), "vendor data sheet (dense)"
    size = 256 if quick else 1024
    return hw.measured_matmul_peak(size, dtype=dtype, device=device)[0], f"measured {size}x{size} matmul"


def run(device, quick=False):
    """All measurements as one JSON-ready dict."""
    on_gpu = torch.device(device).type == "cuda"
    repeats = 3 if quick else 10
    grid = [1, 4] if quick else (2 ** np.arange(17 if on_gpu else 11)).tolist()
    record = {"provenance": provenance(device), "throughput": {}, "inference": {}}
    peak, source = peak_for(device, torch.float32, quick)
    record["peak_flops"] = {"float32": peak, "source": source}
    for name, (make, in_shape) in chapter_models(device).items():
        torch.manual_seed(0)
        for mode, key in (("train", "throughput"), ("inference", "inference")):
            tp = hw.measure_throughput(make(), grid, in_shape=in_shape, num_classes=1000 if name == "gpu_mlp" else 10,
                                       mode=mode, device=device, repeats=repeats)
            row = tp.as_dict()
            if peak:
                row["mfu"] = hw.mfu(tp.flops, tp.median_s, peak).tolist()
            record[key][name] = row
    record["powers_of_two"] = powers_of_two(device, quick)
    record["mixed_precision"] = mixed_precision(device, quick, on_gpu)
    if memory is not None and hasattr(memory, "activation_bytes"):
        record["memory"] = memory_rows(device, grid, quick)
    return record


def powers_of_two(device, quick):
    """Time per example of the wide MLP around powers of two, interleaved rounds (rows) x batch sizes."""
    torch.manual_seed(0)
    model = models.MLP(hidden=(1024, 1024)).to(device)
    centres = [16] if quick else [128, 1024, 4096]
    sizes = sorted({b for c in centres for b in (c - 8, c - 1, c, c + 1, c + 8)})
    steps = [hw.make_train_step(model, *hw.synthetic_batch(b, device=device)) for b in sizes]
    rounds = hw.time_interleaved(steps, rounds=2 if quick else 10, repeats=3 if quick else 5, device=device)
    return {"batch_sizes": sizes, "seconds_per_step": rounds.tolist()}


def mixed_precision(device, quick, on_gpu):
    """Training throughput (and, on CUDA, peak allocated bytes) in float32 and under bfloat16 autocast."""
    torch.manual_seed(0)
    make, in_shape = (chapter_models(device)["gpu_mlp"] if on_gpu
                      else (lambda: models.MLP(hidden=(1024, 1024)), (40,)))
    sizes = [1, 4] if quick else ([64, 256, 1024, 4096, 16384] if on_gpu else [8, 32, 128])
    out = {"batch_sizes": sizes}
    for name, dtype in (("float32", None), ("bfloat16", torch.bfloat16)):
        model = make().to(device)
        tp = hw.measure_throughput(model, sizes, in_shape=in_shape, num_classes=1000 if on_gpu else 10,
                                   autocast_dtype=dtype, device=device, repeats=3 if quick else 10)
        out[name] = tp.as_dict()
        if on_gpu:
            peaks = []
            for b in sizes:
                X, y = hw.synthetic_batch(b, in_shape, 1000, device)
                step = hw.make_train_step(model, X, y, autocast_dtype=dtype)
                step()
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
                step()
                torch.cuda.synchronize()
                peaks.append(torch.cuda.max_memory_allocated())
            out[name]["peak_allocated_bytes"] = peaks
            out[name]["peak_flops"] = hw.peak_flops(torch.cuda.get_device_name(device), dtype or torch.float32)
    return out


def memory_rows(device, grid, quick=False):
    """Memory against B (the memory section's functions): saved-activation bytes, state bytes and the whole
    peak of a step for the chapter's models; then the largest batch for a budget, predicted from two peaks and
    found by the out-of-memory-safe finder (on a GPU against its real memory, elsewhere against a budget)."""
    out = {}
    for name, (make, in_shape) in chapter_models(device).items():
        model = make().to(device)
        num_classes = 1000 if name == "gpu_mlp" else 10
        sizes = grid[:12]
        row = {"batch_sizes": sizes, "activation_bytes": [
            memory.activation_bytes(model, *hw.synthetic_batch(b, in_shape, num_classes, device)) for b in sizes]}
        if hasattr(memory, "state_bytes"):
            row["state_bytes_sgd"] = memory.state_bytes(model, "sgd")
        if hasattr(memory, "peak_bytes"):
            row["peak_bytes_sgd"] = [memory.peak_bytes(model, *hw.synthetic_batch(b, in_shape, num_classes, device))
                                     for b in sizes[:3 if quick else 8]]
        out[name] = row
    if all(hasattr(memory, f) for f in ("peak_bytes", "predict_max_batch_size", "find_batch_size")):
        out["finder"] = finder_row(device, quick)
    return out


def finder_row(device, quick):
    """The finder's answer against the two-point prediction, for one model and memory budget."""
    on_gpu = torch.device(device).type == "cuda"
    name = "gpu_mlp" if on_gpu else "mlp"
    make, in_shape = chapter_models(device)[name]
    num_classes = 1000 if on_gpu else 10
    model = make().to(device)

    def peak(b):
        return memory.peak_bytes(model, *hw.synthetic_batch(b, in_shape, num_classes, device))

    if on_gpu:  # the real device: what is free now, less nothing; the finder meets real out-of-memory errors
        budget = torch.cuda.mem_get_info(device)[0]
        cap = 2 ** 22

        def try_step(b):  # drawn on the device: a CPU draw of millions of examples would take minutes
            X = torch.randn(b, *in_shape, device=device)
            y = torch.randint(num_classes, (b,), device=device)
            hw.make_train_step(model, X, y)()
            torch.cuda.synchronize(device)
    else:  # a simulated device of a fixed budget (a real CPU out-of-memory would hit the whole machine)
        budget, cap = (2 * 2**20, 4096) if quick else (64 * 2**20, 2 ** 16)
        X, y = hw.synthetic_batch(cap, in_shape, num_classes, device)
        try_step = memory.step_within_budget(model, X, y, budget) if hasattr(memory, "step_within_budget") else None
    pair = (256, 512) if quick else ((4096, 8192) if on_gpu else (1024, 2048))
    predicted, per_example, fixed = memory.predict_max_batch_size(peak, budget, pair)
    row = {"model": name, "budget_bytes": int(budget), "predicted": int(predicted),
           "bytes_per_example": float(per_example), "fixed_bytes": float(fixed), "cap": cap,
           "simulated_budget": not on_gpu}
    if try_step is not None:
        found = memory.find_batch_size(try_step, cap, margin=0.0)
        row.update(found=found.largest_fit, smallest_failed=found.smallest_failed, tries=len(found.tries))
    return row


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(hw.results_dir()), help="folder for <device-slug>.json (the package's results/)")
    parser.add_argument("--quick", action="store_true", help="a tiny run, for tests")
    args = parser.parse_args(argv)
    device = hw.default_device()
    record = run(device, quick=args.quick)
    record["quick"] = args.quick
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{hw.device_slug(device)}.json"
    path.write_text(json.dumps(record, indent=1))
    print(f"wrote {path}")
    return path


if __name__ == "__main__":
    main()
