"""DistributedDataParallel against one process: the check that torchrun runs, and its launcher.

Run as a module under torchrun (two processes on the CPU with gloo, or one per GPU with NCCL):

    torchrun --standalone --nproc_per_node=2 -m batchsize.ddp --out result.json

`launch_ddp` does this from Python (a notebook cannot spawn functions it defines) with a timeout. The package
does not import this module, so torchrun's workers run it once, as `__main__`.
"""
import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile

import torch
import torch.nn.functional as F
from torch import nn

from . import seeding
from ._checks import check_positive_int
from .memory import find_batch_size
from .steps import accumulate_gradients, flat_grad


def _ddp_model(seed=0):
    """The small MLP of the DDP check, freshly seeded, so every process builds the same one."""
    seeding.manual_seed(seed)
    return nn.Sequential(nn.Linear(40, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))


def _max_diff(a, b):
    """Largest absolute difference between two tensors, as a float."""
    return float((a.detach() - b.detach()).abs().max())


def ddp_check(per_worker_batch_size=8, accumulation_steps=2, lr=0.1, dataset_size=11):
    """Run inside torchrun: compare DDP's gradients and updates with one process on the global batch.

    Introduced in chapter 4 (many devices). Every rank computes the single-process reference itself, so no
    tensors travel except through DDP. Returns a dict of residuals and checks (the same on every rank).
    """
    import torch.distributed as dist

    rank, world = dist.get_rank(), dist.get_world_size()
    use_cuda = dist.get_backend() == "nccl"
    device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if use_cuda else "cpu")
    b, a = per_worker_batch_size, accumulation_steps
    global_batch_size = b * world * a
    g = seeding.generator(1)
    X = torch.randn(global_batch_size, 40, generator=g).to(device)
    y = torch.randint(10, (global_batch_size,), generator=g).to(device)
    out = {"world_size": world, "backend": dist.get_backend(), "device": str(device),
           "per_worker_batch_size": b, "accumulation_steps": a, "global_batch_size": global_batch_size}
    out.update(_check_one_step(X, y, b, rank, world, device))
    out.update(_check_accumulation(X, y, b, a, lr, rank, world, device))
    out.update(_check_sampler(dataset_size, rank, world))
    out["finder_per_rank"] = _finder_per_rank(rank, world)
    return out


def _ddp_wrapped(device):
    """A fresh `_ddp_model` on device inside DistributedDataParallel (one GPU per process with NCCL)."""
    from torch.nn.parallel import DistributedDataParallel as DDP

    return DDP(_ddp_model().to(device), device_ids=[device.index] if device.type == "cuda" else None)


def _check_one_step(X, y, b, rank, world, device):
    """Part 1 of ddp_check: one step's all-reduced (averaged) gradient against one process on the concatenated batch."""
    ddp = _ddp_wrapped(device)
    F.cross_entropy(ddp(X[rank * b:(rank + 1) * b]), y[rank * b:(rank + 1) * b]).backward()
    reference = _grad_on(_ddp_model().to(device), X[:world * b], y[:world * b])
    g_ddp, g_ref = flat_grad(ddp.module), flat_grad(reference)
    return {"ddp_grad_max_diff": _max_diff(g_ddp, g_ref), "ddp_grad_max_abs": float(g_ref.abs().max()),
            "local_grad_max_diff": _max_diff(flat_grad(_grad_on(_ddp_model().to(device), X[:b], y[:b])), g_ref)}


def _counting_allreduce(state, bucket):
    """DDP comm hook: the default averaging all-reduce of a bucket, counted in state["allreduce"]."""
    import torch.distributed as dist

    state["allreduce"] += 1
    tensor = bucket.buffer().div_(state["world"])
    return dist.all_reduce(tensor, async_op=True).get_future().then(lambda fut: fut.value()[0])


def _accumulate(X, y, b, a, lr, rank, world, device, sync):
    """One update from a micro-batches per rank under sync; returns (gradient, updated module, all-reduce calls)."""
    # sync="every" all-reduces after every micro-batch; "no_sync" runs the first a - 1 micro-batches, forward and
    # backward, inside ddp.no_sync(): one all-reduce; "no_sync_backward_only" wraps only backward, a common mistake:
    # DDP prepares its all-reduce in the forward
    calls = {"allreduce": 0, "world": world}
    ddp = _ddp_wrapped(device)
    ddp.register_comm_hook(calls, _counting_allreduce)
    opt = torch.optim.SGD(ddp.parameters(), lr=lr)
    for m in range(a):  # micro-batch m of rank r: rows (m * world + r) * b ...
        rows = slice((m * world + rank) * b, (m * world + rank + 1) * b)
        if sync == "no_sync" and m < a - 1:
            with ddp.no_sync():
                (F.cross_entropy(ddp(X[rows]), y[rows]) / a).backward()
        elif sync == "no_sync_backward_only" and m < a - 1:
            loss = F.cross_entropy(ddp(X[rows]), y[rows]) / a
            with ddp.no_sync():
                loss.backward()
        else:
            (F.cross_entropy(ddp(X[rows]), y[rows]) / a).backward()
    grad = flat_grad(ddp.module).detach().clone()
    opt.step()
    return grad, ddp.module, calls["allreduce"]


def _check_accumulation(X, y, b, a, lr, rank, world, device):
    """Part 2 of ddp_check: accumulated DDP gradients and update against one process on all of X (the global batch)."""
    out = {}
    g_acc, model_acc, out["no_sync_allreduce_calls"] = _accumulate(X, y, b, a, lr, rank, world, device, "no_sync")
    g_every, _, out["every_step_allreduce_calls"] = _accumulate(X, y, b, a, lr, rank, world, device, "every")
    _, _, out["no_sync_backward_only_allreduce_calls"] = _accumulate(X, y, b, a, lr, rank, world, device,
                                                                     "no_sync_backward_only")
    reference = _grad_on(_ddp_model().to(device), X, y)  # one process, all global_batch_size rows
    g_full = flat_grad(reference).detach().clone()
    torch.optim.SGD(reference.parameters(), lr=lr).step()
    out["no_sync_grad_max_diff"] = _max_diff(g_acc, g_full)
    out["every_step_grad_max_diff"] = _max_diff(g_every, g_full)
    out["no_sync_update_max_diff"] = max(_max_diff(p, q) for p, q in zip(model_acc.parameters(),
                                                                          reference.parameters()))
    half = len(X) // 2
    out["half_batch_grad_max_diff"] = _max_diff(flat_grad(_grad_on(_ddp_model().to(device), X[:half], y[:half])),
                                                g_full)
    return out


def _check_sampler(dataset_size, rank, world):
    """Part 3 of ddp_check: DistributedSampler keeps its order unless set_epoch is called; pads the last shard."""
    import torch.distributed as dist
    from torch.utils.data.distributed import DistributedSampler

    sampler = DistributedSampler(range(dataset_size), num_replicas=world, rank=rank, shuffle=True, seed=0)
    epoch0, again = list(sampler), list(sampler)
    sampler.set_epoch(1)
    epoch1 = list(sampler)
    shards = [None] * world
    dist.all_gather_object(shards, epoch0)
    every = [i for shard in shards for i in shard]
    return {"sampler_same_without_set_epoch": epoch0 == again, "sampler_changes_with_set_epoch": epoch0 != epoch1,
            "sampler_covers_dataset": sorted(set(every)) == list(range(dataset_size)),
            "sampler_samples_per_epoch": len(every), "dataset_size": dataset_size}


def _finder_per_rank(rank, world):
    """Part 4 of ddp_check: the batch-size finder with a different (simulated) memory per rank; every rank's answer."""
    import torch.distributed as dist

    def try_step(batch_size):
        if batch_size > 100 + 37 * rank:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated, rank-dependent budget)")

    found = [None] * world
    dist.all_gather_object(found, find_batch_size(try_step, 1000, margin=0.0).largest_fit)
    return found


def _grad_on(model, X, y):
    """model, with .grad the gradient of the mean cross-entropy over (X, y) in one process."""
    accumulate_gradients(model, X, y)
    return model


def main(argv=None):
    """Entry point for torchrun: set up the process group, run ddp_check, rank 0 writes JSON."""
    import torch.distributed as dist

    parser = argparse.ArgumentParser(description="DistributedDataParallel check (run under torchrun)")
    parser.add_argument("--out", required=True, help="path of the JSON file rank 0 writes")
    parser.add_argument("--per-worker-batch-size", type=int, default=8)
    parser.add_argument("--accumulation-steps", type=int, default=2)
    args = parser.parse_args(argv)
    world = int(os.environ.get("WORLD_SIZE", 1))
    use_nccl = torch.cuda.is_available() and torch.cuda.device_count() >= world
    if use_nccl:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group(backend="nccl" if use_nccl else "gloo")
    try:
        result = ddp_check(args.per_worker_batch_size, args.accumulation_steps)
        if dist.get_rank() == 0:
            with open(args.out, "w") as f:
                json.dump(result, f, indent=1)
        dist.barrier()  # no rank tears down while another still communicates
    finally:
        gc.collect()  # the DDP reducers and their comm-hook futures go while the interpreter is whole
        dist.destroy_process_group()


def torchrun_command(out, nproc_per_node=2, per_worker_batch_size=8, accumulation_steps=2):
    """The torchrun command line (as a list) that runs this module's check. Introduced in chapter 4."""
    check_positive_int(nproc_per_node, "nproc_per_node")
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc_per_node}",
            "-m", "batchsize.ddp", "--out", str(out),
            "--per-worker-batch-size", str(check_positive_int(per_worker_batch_size, "per_worker_batch_size")),
            "--accumulation-steps", str(check_positive_int(accumulation_steps, "accumulation_steps"))]


def launch_ddp(nproc_per_node=2, per_worker_batch_size=8, accumulation_steps=2, timeout=180):
    """Run the DDP check under torchrun in a subprocess and return its JSON result. Introduced in chapter 4.

    One thread per process; --standalone picks a free port on localhost. Raises RuntimeError with the
    processes' output if they fail, subprocess.TimeoutExpired after timeout seconds.
    """
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "ddp.json")
        cmd = torchrun_command(out, nproc_per_node, per_worker_batch_size, accumulation_steps)
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
        if proc.returncode != 0 or not os.path.exists(out):
            raise RuntimeError(f"torchrun failed (exit {proc.returncode}):\n{proc.stdout[-2000:]}\n"
                               f"{proc.stderr[-4000:]}")
        with open(out) as f:
            return json.load(f)


if __name__ == "__main__":
    main()
    # Leave without finalizing the interpreter: a gloo thread that still wants the GIL while Python finalizes is
    # ended by pthread_exit inside C++ code that cannot unwind, and the process aborts ("terminate called without
    # an active exception", SIGABRT): once in 105 runs on a busy 2-core CPU, after a run of the usual length.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
