"""Memory against batch size: saved-activation bytes, parameter/gradient/optimizer-state bytes, the whole peak
of a training step (`steps.training_step`), the largest batch for a memory budget, and an out-of-memory-safe
batch-size finder.

The activation count is exact: every tensor that autograd saves for the backward pass is seen through
`torch.autograd.graph.saved_tensors_hooks`, each storage is counted once (a ReLU output saved by the ReLU and by
the next layer is one allocation), and storages of parameters and buffers (model state, not activations) are
skipped.
"""
import gc
import math
import numbers
from dataclasses import dataclass, field

import torch

from ._checks import check_batch_size, check_data, check_model, check_positive_int, cross_entropy
from .steps import training_step  # the step whose peak is measured; chapter 4 calls it as memory.training_step

OPTIMIZERS = ("sgd", "momentum", "adam")
_STATES_PER_PARAM = {"sgd": 0, "momentum": 1, "adam": 2}  # buffers of the parameter's size kept by the optimizer


def _state_storages(model):
    """The storage ids of the model's parameters and buffers."""
    return {t.untyped_storage()._cdata for t in (*model.parameters(), *model.buffers())}


def activation_bytes(model, X, y, loss_fn=None):
    """Bytes saved for backward by one training step on (X, y), each storage once, parameters excluded.

    Introduced in chapter 4 (memory). The loss is the mean cross-entropy unless loss_fn(output, y) is given.
    Only the forward pass runs (that is when autograd saves tensors); the model's gradients are not touched.
    The batch counts as its own bytes, even when X or y is a slice of a larger data set.
    """
    check_model(model)
    check_data(X, y, floating=False)
    X, y = X.clone(), y.clone()  # a slice would otherwise count its whole data set's storage
    skip = _state_storages(model)
    seen = {}  # storage id -> bytes

    def pack(t):
        storage = t.untyped_storage()
        key = storage._cdata
        if key not in skip:
            seen[key] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), torch.enable_grad():
        out = model(X)
        loss = cross_entropy(out, y) if loss_fn is None else loss_fn(out, y)
    del out, loss
    return int(sum(seen.values()))


def state_bytes(model, optimizer="sgd"):
    """Bytes of parameters + gradients + optimizer state, constant in the batch size. Introduced in chapter 4.

    optimizer: "sgd" (no state), "momentum" (one buffer per parameter) or "adam" (two buffers and a scalar step
    per parameter tensor, as torch.optim.Adam keeps them). Parameters that do not require grad count once.
    """
    check_model(model)
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
    params = list(model.parameters())
    trainable = [p for p in params if p.requires_grad]
    total = sum(p.numel() * p.element_size() for p in params)
    per_copy = sum(p.numel() * p.element_size() for p in trainable)
    total += per_copy * (1 + _STATES_PER_PARAM[optimizer])  # gradients + optimizer buffers
    if optimizer == "adam":  # Adam's step counter: a 0-d tensor of the default float dtype per parameter tensor
        step_size = 8 if torch.get_default_dtype() == torch.float64 else 4
        total += step_size * len(trainable)
    return int(total)


# ---------------------------------------------------------------------------------------------------------------
# the whole peak of a training step


def make_optimizer(model, optimizer="sgd", lr=0.01):
    """A torch optimizer by name: "sgd", "momentum" (0.9) or "adam". Introduced in chapter 4 (memory)."""
    check_model(model)
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
    if optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=lr)
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9 if optimizer == "momentum" else 0.0)


def _resident_bytes(model, optimizer, X, y):
    """Bytes of the tensors that stay allocated between steps: parameters, buffers, optimizer state, data."""
    tensors = [*model.parameters(), *model.buffers(), X, y]
    if optimizer is not None:
        tensors += [v for s in optimizer.state.values() for v in s.values() if isinstance(v, torch.Tensor)]
    return sum({t.untyped_storage()._cdata: t.untyped_storage().nbytes() for t in tensors}.values())


def peak_breakdown(model, X, y, optimizer="sgd", lr=0.01, num_micro_batches=1):
    """The peak of one training step split by kind (MemTracker), in bytes. Introduced in chapter 4 (memory).

    Keys: parameters, buffers, gradients, activations, temporaries, optimizer, inputs (the batch), total. A first
    step runs untracked so that the optimizer's state exists, as in every step after the first; both steps
    change the model's parameters. Works on any device, also under FakeTensorMode. With num_micro_batches > 1
    the step accumulates gradients over that many slices of the batch.
    """
    from torch.distributed._tools.mem_tracker import MemTracker

    check_model(model)
    check_data(X, y, floating=False)
    opt = make_optimizer(model, optimizer, lr)
    if optimizer != "sgd":
        training_step(model, X, y, opt, num_micro_batches=num_micro_batches)
    tracker = MemTracker()
    tracker.track_external(model, opt, X, y)
    with tracker:  # the tracker's per-module statistics allow one forward pass: reset them before each
        training_step(model, X, y, opt, num_micro_batches=num_micro_batches,
                      before_micro_batch=tracker.reset_mod_stats)
    snapshot = tracker.get_tracker_snapshot("peak")
    names = {"Parameter": "parameters", "Buffer": "buffers", "Gradient": "gradients", "Activation": "activations",
             "Temp": "temporaries", "Optstate": "optimizer", "Other": "inputs", "Total": "total"}
    out = dict.fromkeys(names.values(), 0)
    for per_device in snapshot.values():
        for kind, nbytes in per_device.items():
            out[names[getattr(kind, "value", kind)]] += int(nbytes)
    return out


def peak_bytes(model, X, y, optimizer="sgd", lr=0.01, num_micro_batches=1):
    """Peak bytes of one training step: the CUDA allocator's peak on a GPU, MemTracker's elsewhere.

    Introduced in chapter 4 (memory). Counts parameters, buffers, optimizer state and the batch as well as what
    the step allocates; like peak_breakdown, it changes the model's parameters.
    """
    check_model(model)
    check_data(X, y, floating=False)
    if X.device.type != "cuda":
        return peak_breakdown(model, X, y, optimizer, lr, num_micro_batches)["total"]
    opt = make_optimizer(model, optimizer, lr)
    if optimizer != "sgd":
        training_step(model, X, y, opt, num_micro_batches=num_micro_batches)
    torch.cuda.synchronize(X.device)
    before = torch.cuda.memory_allocated(X.device)
    torch.cuda.reset_peak_memory_stats(X.device)
    training_step(model, X, y, opt, num_micro_batches=num_micro_batches)
    torch.cuda.synchronize(X.device)
    return int(torch.cuda.max_memory_allocated(X.device) - before + _resident_bytes(model, opt, X, y))


def predict_max_batch_size(peak_fn, budget_bytes, batch_sizes=(512, 1024)):
    """Largest batch whose peak fits the budget, by a straight line through peak_fn at two batch sizes.

    Introduced in chapter 4 (memory). peak_fn(batch_size) -> bytes (e.g. a peak_bytes closure). The peak is
    affine in the batch size once activations dominate, so pick batch sizes past that point. Returns
    (batch_size, bytes_per_example, fixed_bytes); batch_size is 0 when not even the fixed part fits.
    """
    budget = check_positive_int(budget_bytes, "budget_bytes")
    b1, b2 = (check_positive_int(b, "batch_sizes") for b in batch_sizes)
    if b1 == b2:
        raise ValueError(f"batch_sizes must be two different batch sizes, got {batch_sizes!r}")
    p1, p2 = peak_fn(b1), peak_fn(b2)
    per_example = (p2 - p1) / (b2 - b1)
    if per_example <= 0:
        raise ValueError(f"peak_fn must grow with the batch size, got {p1} bytes at {b1} and {p2} at {b2}")
    fixed = p1 - per_example * b1
    return max(0, math.floor((budget - fixed) / per_example)), per_example, fixed


# ---------------------------------------------------------------------------------------------------------------
# the out-of-memory-safe batch-size finder


def is_out_of_memory(error):
    """True for a CUDA or CPU allocator failure. Introduced in chapter 4 (memory).

    CUDA raises torch.OutOfMemoryError; the CPU allocator raises a plain RuntimeError ("DefaultCPUAllocator:
    can't allocate memory"); Python raises MemoryError.
    """
    if isinstance(error, (torch.OutOfMemoryError, MemoryError)):
        return True
    message = str(error).lower()
    return isinstance(error, RuntimeError) and ("out of memory" in message or "can't allocate memory" in message)


def free_memory():
    """Collect garbage and return cached blocks to the device after a failed try. Introduced in chapter 4."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _all_ranks_ok(ok):
    """Under torch.distributed, a try succeeds only if it succeeded on every rank (all ranks then agree)."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return ok
    device = "cuda" if torch.distributed.get_backend() == "nccl" else "cpu"
    flag = torch.tensor([int(ok)], device=device)
    torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MIN)
    return bool(flag.item())


@dataclass
class FinderResult:
    """What find_batch_size found: the batch size to use and how it got there. Introduced in chapter 4."""

    batch_size: int  # largest_fit reduced by the margin: the batch size to train with
    largest_fit: int  # largest batch size that ran
    smallest_failed: int | None  # smallest batch size that ran out of memory; None if the cap was reached
    margin: float  # fraction taken off largest_fit
    tries: list = field(default_factory=list)  # (batch_size, ran) in the order tried


def find_batch_size(try_step, max_batch_size, start=1, margin=0.1):
    """Largest batch size for which try_step(batch_size) runs, doubling then bisecting; never above max_batch_size.

    Introduced in chapter 4 (memory). try_step runs one training step and may run out of memory: a CUDA or CPU
    allocator failure counts as "does not fit" (other errors propagate), memory is freed after every failure, and
    under torch.distributed a size fits only if it fits on every rank, so all ranks return the same answer.
    max_batch_size is the data size (or the per-rank shard); the returned batch_size is largest_fit times
    (1 - margin), rounded down, at least 1, to leave room for what one step does not show (fragmentation,
    longer inputs later).
    """
    cap = check_positive_int(max_batch_size, "max_batch_size")
    size = min(check_positive_int(start, "start"), cap)
    if isinstance(margin, bool) or not isinstance(margin, numbers.Real) or not 0 <= margin < 1:
        raise ValueError(f"margin must be a number in [0, 1), got {margin!r}")
    tries = []

    def fits(batch_size):
        ok = True
        try:
            try_step(batch_size)
        except Exception as error:  # noqa: BLE001 -- filtered just below
            if not is_out_of_memory(error):
                raise
            ok = False  # the traceback (and the tensors its frames hold) dies with `error` at the end of this block
        if not ok:  # after a success, reference counting has already freed the step's tensors
            free_memory()
        ok = _all_ranks_ok(ok)
        tries.append((batch_size, ok))
        return ok

    good, bad = 0, None
    while True:  # grow: double until a failure or the cap
        if not fits(size):
            bad = size
            break
        good = size
        if size == cap:
            break
        size = min(2 * size, cap)
    while bad is not None and bad - good > 1:  # bisect between the largest fit and the smallest failure
        mid = (good + bad) // 2
        if fits(mid):
            good = mid
        else:
            bad = mid
    if good == 0:
        raise RuntimeError(f"not even batch_size {tries[0][0]} fits in memory (tries: {tries})")
    return FinderResult(max(1, math.floor(good * (1 - margin))), good, bad, float(margin), tries)


def step_within_budget(model, X, y, budget_bytes, optimizer="sgd"):
    """A try_step for find_batch_size that acts as if the device held budget_bytes. Introduced in chapter 4.

    try_step(batch_size) measures the peak of a training step on the first batch_size examples (peak_bytes) and
    raises torch.OutOfMemoryError, as a full device would, when the peak exceeds the budget.
    """
    budget = check_positive_int(budget_bytes, "budget_bytes")
    num_examples = check_data(X, y, floating=False)

    def try_step(batch_size):
        check_batch_size(batch_size, num_examples)
        # copies, so that the peak counts the batch and not the whole data set it is a view of
        peak = peak_bytes(model, X[:batch_size].clone(), y[:batch_size].clone(), optimizer)
        if peak > budget:
            raise torch.OutOfMemoryError(f"out of memory (budget): batch_size {batch_size} needs {peak} bytes, "
                                         f"the budget is {budget}")
        return peak

    return try_step
