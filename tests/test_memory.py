"""Tests for memory.py"""
import json
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from batchsize import memory, models

FLOAT = 4  # bytes of a float32
TARGET = 8  # bytes of an int64 class label
LOSS_SCALAR = 4  # nll_loss saves its total weight, a float32 scalar


def mlp_hand_count(batch_size, sizes, saved_per_hidden=1):
    """Bytes saved by a ReLU MLP, counted by hand: the input, each hidden activation (saved once, shared by the
    activation and the next layer), the log-softmax output, the target and the loss's scalar."""
    in_features, *hidden, num_classes = sizes
    floats = in_features + saved_per_hidden * sum(hidden) + num_classes
    return (floats * FLOAT + TARGET) * batch_size + LOSS_SCALAR


def batch(batch_size, in_features=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch_size, in_features, generator=g), torch.randint(10, (batch_size,), generator=g)


# ---------------------------------------------------------------------------------------------------------------
# activation_bytes against hand counts


@pytest.mark.parametrize("sizes", [(40, 100, 100, 10), (784, 512, 512, 10), (7, 3, 10)])
@pytest.mark.parametrize("batch_size", [1, 2, 17, 64])
def test_activation_bytes_match_hand_count_of_relu_mlp(sizes, batch_size):
    model = models.MLP(sizes[0], sizes[1:-1], sizes[-1])
    X, y = batch(batch_size, sizes[0])
    assert memory.activation_bytes(model, X, y) == mlp_hand_count(batch_size, sizes)


def test_activation_bytes_of_the_784_512_512_10_mlp_are_7280_per_example_plus_4():
    model = models.MLP(784, (512, 512), 10)
    for batch_size in (1, 64, 300):
        assert memory.activation_bytes(model, *batch(batch_size, 784)) == 7280 * batch_size + 4


def test_gelu_saves_its_input_and_its_output():
    # GELU's backward needs its input (the linear output); the next layer saves GELU's output: two per layer.
    model = nn.Sequential(nn.Linear(784, 512), nn.GELU(), nn.Linear(512, 512), nn.GELU(), nn.Linear(512, 10))
    for batch_size in (1, 64):
        expected = mlp_hand_count(batch_size, (784, 512, 512, 10), saved_per_hidden=2)
        assert expected == 11376 * batch_size + 4
        assert memory.activation_bytes(model, *batch(batch_size, 784)) == expected


def test_cnn_activation_bytes_match_hand_count():
    # input 40, three ReLU outputs 32x20, 32x10, 32x5 (each saved by ReLU and the next layer), log-softmax 10
    model = models.CNN1D()
    floats = 40 + 32 * (20 + 10 + 5) + 10
    for batch_size in (1, 3, 64):
        expected = (floats * FLOAT + TARGET) * batch_size + LOSS_SCALAR
        assert memory.activation_bytes(model, *batch(batch_size)) == expected


def test_activation_bytes_are_affine_in_batch_size_for_a_model_with_batch_norm():
    model = nn.Sequential(nn.Linear(40, 64), nn.BatchNorm1d(64), nn.ReLU(), nn.Linear(64, 10))
    counts = [memory.activation_bytes(model, *batch(b)) for b in (2, 3, 4, 10)]
    slope = counts[1] - counts[0]
    assert slope > 0
    assert all(c == counts[0] + slope * (b - 2) for c, b in zip(counts, (2, 3, 4, 10)))


def test_activation_bytes_dedupe_counts_fewer_than_counting_every_saved_tensor():
    model = models.MLP(784, (512, 512), 10)
    X, y = batch(64, 784)
    naive = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: naive.append(t.untyped_storage().nbytes()) or t,
                                                  lambda t: t):
        F.cross_entropy(model(X), y)
    assert memory.activation_bytes(model, X, y) < sum(naive)


def test_activation_bytes_on_the_meta_device_equal_real_ones():
    with torch.device("meta"):
        model = models.MLP(784, (512, 512), 10)
        X, y = torch.randn(32, 784), torch.randint(10, (32,))
    assert memory.activation_bytes(model, X, y) == 7280 * 32 + 4


def test_activation_bytes_of_a_slice_count_the_slice_only():
    X, y = batch(1000)
    assert memory.activation_bytes(models.MLP(), X[:5], y[:5]) == mlp_hand_count(5, (40, 100, 100, 10))


def test_activation_bytes_leave_gradients_untouched():
    model = models.MLP()
    memory.activation_bytes(model, *batch(8))
    assert all(p.grad is None for p in model.parameters())


def test_activation_bytes_with_a_custom_loss():
    model = nn.Linear(5, 1)
    X = torch.randn(6, 5)
    y = torch.randn(6, 1)
    # mse_loss saves its input (the linear output) and the target: 6 floats each; addmm saves X: 30 floats
    assert memory.activation_bytes(model, X, y, loss_fn=F.mse_loss) == (30 + 6 + 6) * FLOAT


def test_activation_bytes_reject_bad_input():
    with pytest.raises(TypeError, match="model"):
        memory.activation_bytes("mlp", *batch(4))
    with pytest.raises(ValueError, match="same number"):
        memory.activation_bytes(models.MLP(), torch.randn(4, 40), torch.zeros(3, dtype=torch.long))


# ---------------------------------------------------------------------------------------------------------------
# state_bytes against a real optimizer after one step


def measured_state_bytes(model, optimizer):
    """Bytes of every parameter, gradient and optimizer-state tensor after one real optimizer step."""
    opt = {"sgd": lambda p: torch.optim.SGD(p, lr=0.1),
           "momentum": lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9),
           "adam": lambda p: torch.optim.Adam(p, lr=1e-3)}[optimizer](model.parameters())
    F.cross_entropy(model(torch.randn(4, 40)), torch.randint(10, (4,))).backward()
    opt.step()
    tensors = [*model.parameters(), *(p.grad for p in model.parameters() if p.grad is not None)]
    tensors += [v for state in opt.state.values() for v in state.values() if isinstance(v, torch.Tensor)]
    return sum(t.untyped_storage().nbytes() for t in tensors)


@pytest.mark.parametrize("optimizer", memory.OPTIMIZERS)
@pytest.mark.parametrize("make_model", [models.MLP, models.CNN1D])
def test_state_bytes_match_a_real_optimizer(make_model, optimizer):
    assert memory.state_bytes(make_model(), optimizer) == measured_state_bytes(make_model(), optimizer)


def test_state_bytes_count_frozen_parameters_once():
    model = models.MLP()
    model[0].weight.requires_grad_(False)
    frozen = model[0].weight.numel() * FLOAT
    # no gradient, no two Adam buffers and no step counter (a float32 scalar) for the frozen weight
    assert memory.state_bytes(model, "adam") == memory.state_bytes(models.MLP(), "adam") - 3 * frozen - 4
    assert memory.state_bytes(model, "adam") == measured_state_bytes(model, "adam")


def test_state_bytes_reject_unknown_optimizer():
    with pytest.raises(ValueError, match="optimizer"):
        memory.state_bytes(models.MLP(), "lbfgs")


# ---------------------------------------------------------------------------------------------------------------
# the finder: 1) a simulated out-of-memory model


class SimulatedDevice:
    """Raises CUDA's out-of-memory error when a step would need more than the budget: fixed + per-example bytes.
    Keeps track of what is allocated, so a leak after a failure would show."""

    def __init__(self, budget, fixed=1000, per_example=100):
        self.budget, self.fixed, self.per_example = budget, fixed, per_example
        self.allocated, self.calls = 0, []

    def step(self, batch_size):
        self.calls.append(batch_size)
        need = self.fixed + self.per_example * batch_size
        if need > self.budget:
            raise torch.OutOfMemoryError(f"CUDA out of memory. Tried to allocate {need} bytes (simulated)")
        return need


@pytest.mark.parametrize("budget", [1100, 1150, 5000, 12345, 10**6 + 1])
def test_finder_returns_the_largest_batch_that_fits(budget):
    device = SimulatedDevice(budget)
    truth = (budget - device.fixed) // device.per_example  # the reference: solve fixed + per_example * B <= budget
    result = memory.find_batch_size(device.step, max_batch_size=10**9, margin=0.0)
    assert result.largest_fit == truth
    assert result.smallest_failed == truth + 1
    assert result.batch_size == truth


def test_finder_is_capped_by_the_data_size():
    device = SimulatedDevice(budget=10**9)
    result = memory.find_batch_size(device.step, max_batch_size=300)
    assert max(device.calls) == 300 and result.largest_fit == 300 and result.smallest_failed is None


def test_finder_applies_the_margin_and_bisects_in_few_tries():
    device = SimulatedDevice(budget=1000 + 100 * 1000)
    result = memory.find_batch_size(device.step, max_batch_size=10**6, margin=0.1)
    assert result.largest_fit == 1000 and result.batch_size == 900
    assert len(result.tries) <= 2 * 11  # doubling to 1024 (11 tries), then at most 10 halvings
    assert [b for b, _ in result.tries] == device.calls


def test_finder_starting_too_large_bisects_down():
    device = SimulatedDevice(budget=1000 + 100 * 37)
    assert memory.find_batch_size(device.step, max_batch_size=1000, start=512, margin=0.0).largest_fit == 37


def test_finder_counts_the_cpu_allocator_error_as_out_of_memory_and_propagates_others():
    def cpu_oom(batch_size):
        if batch_size > 10:
            raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory")

    assert memory.find_batch_size(cpu_oom, 100, margin=0.0).largest_fit == 10

    def bug(batch_size):
        if batch_size > 10:
            raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")

    with pytest.raises(RuntimeError, match="shapes"):
        memory.find_batch_size(bug, 100)


def test_finder_raises_when_nothing_fits_and_rejects_bad_arguments():
    with pytest.raises(RuntimeError, match="not even batch_size 1 fits"):
        memory.find_batch_size(SimulatedDevice(budget=10).step, 100)
    with pytest.raises(RuntimeError, match="not even batch_size 2 fits"):  # the first size tried is named
        memory.find_batch_size(SimulatedDevice(budget=10).step, 100, start=2)
    with pytest.raises(ValueError, match="max_batch_size"):
        memory.find_batch_size(SimulatedDevice(budget=10).step, 0)
    with pytest.raises(ValueError, match="margin"):
        memory.find_batch_size(SimulatedDevice(budget=10).step, 10, margin=1.0)


def test_finder_with_a_memory_budget_agrees_with_the_straight_line_prediction():
    # a budget on the measured peak of real training steps; the peak is affine in B past a few hundred examples
    g = torch.Generator().manual_seed(0)
    X, y = torch.randn(4000, 40, generator=g), torch.randint(10, (4000,), generator=g)
    budget = 4 * 2**20
    predicted, per_example, _ = memory.predict_max_batch_size(
        lambda b: memory.peak_bytes(models.CNN1D(), X[:b].clone(), y[:b].clone()), budget, (256, 512))
    # the activations are part of each example's bytes (with the batch itself and the backward's temporaries)
    activations_per_example = memory.activation_bytes(models.CNN1D(), X[:2], y[:2]) - memory.activation_bytes(
        models.CNN1D(), X[:1], y[:1])
    assert activations_per_example < per_example < 3 * activations_per_example
    result = memory.find_batch_size(memory.step_within_budget(models.CNN1D(), X, y, budget), len(X), start=256,
                                    margin=0.0)
    assert result.largest_fit == predicted


# ---------------------------------------------------------------------------------------------------------------
# the finder: 2) a real allocation failure, in a subprocess under an address-space limit

RLIMIT_SCRIPT = r"""
import json, resource
import torch
from batchsize import memory, models

torch.set_num_threads(1)
torch.manual_seed(0)
model = models.MLP(784, (1024, 1024), 10)
X, y = torch.randn(8000, 784), torch.randint(10, (8000,))
memory.training_step(model, X[:8], y[:8])  # allocate what a first step needs before the limit


def vm_size():
    return next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith("VmSize"))


errors = []

def try_step(batch_size):
    try:
        memory.training_step(model, X[:batch_size], y[:batch_size])
    except Exception as error:
        errors.append(f"{type(error).__name__}: {error}")
        raise

before = vm_size()
soft, hard = resource.getrlimit(resource.RLIMIT_AS)
resource.setrlimit(resource.RLIMIT_AS, (before + 64 * 2**20, hard))  # only the soft limit: it can be restored
try:
    first = memory.find_batch_size(try_step, len(X), margin=0.1)
    after = vm_size()
    memory.training_step(model, X[:first.batch_size], y[:first.batch_size])  # the recommended batch runs
    second = memory.find_batch_size(try_step, len(X), margin=0.1)
finally:
    resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
print(json.dumps({"largest_fit": first.largest_fit, "smallest_failed": first.smallest_failed,
                  "second_largest_fit": second.largest_fit, "tries": first.tries, "errors": errors,
                  "retained_bytes": after - before}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS and /proc/self/status are Linux's")
def test_finder_survives_a_real_cpu_allocation_failure_under_rlimit_as():
    # The address space should measure what is still allocated: a fixed mmap threshold makes glibc return every
    # large block to the system when it is freed (its default, dynamic threshold keeps some in the heap), and
    # MKL_DISABLE_FAST_MM stops MKL from caching its matrix-multiplication buffers.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MALLOC_MMAP_THRESHOLD_": "65536",
           "MKL_DISABLE_FAST_MM": "1"}
    proc = subprocess.run([sys.executable, "-c", RLIMIT_SCRIPT], capture_output=True, text=True, timeout=240,
                          env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["errors"], "the limit never triggered an allocation failure"
    assert all("can't allocate memory" in e and e.startswith("RuntimeError") for e in out["errors"])
    assert 1 <= out["largest_fit"] < 8000
    assert out["smallest_failed"] == out["largest_fit"] + 1
    # nothing of the failed steps is kept: the address space is back within 4 MiB of where it started (one
    # hidden activation of a failed step is about 16 MiB), and a second search finds the same batch within 2 %
    assert out["retained_bytes"] < 4 * 2**20, out["retained_bytes"]
    assert abs(out["second_largest_fit"] - out["largest_fit"]) <= 0.02 * out["largest_fit"]


# ---------------------------------------------------------------------------------------------------------------
# the finder: 3) on a GPU, memory is back to its baseline after the failures


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_finder_leaves_cuda_memory_at_its_baseline():
    device = "cuda"
    torch.manual_seed(0)
    model = models.MLP(784, (4096, 4096), 10).to(device)
    X = torch.randn(4096, 784, device=device)
    y = torch.randint(10, (4096,), device=device)
    memory.free_memory()
    baseline = torch.cuda.memory_allocated(device)
    cap = baseline + 256 * 2**20  # the allocator refuses past 256 MiB above the baseline

    def try_step(batch_size):
        memory.training_step(model, X[:batch_size], y[:batch_size])
        if torch.cuda.max_memory_allocated(device) > cap:
            raise torch.OutOfMemoryError("CUDA out of memory (over the test's cap)")

    fraction = torch.cuda.get_per_process_memory_fraction(device) if hasattr(
        torch.cuda, "get_per_process_memory_fraction") else 1.0
    total = torch.cuda.get_device_properties(device).total_memory
    torch.cuda.set_per_process_memory_fraction(min(1.0, (cap + 64 * 2**20) / total), device)
    try:
        torch.cuda.reset_peak_memory_stats(device)
        result = memory.find_batch_size(lambda b: (torch.cuda.reset_peak_memory_stats(device), try_step(b)),
                                        len(X), margin=0.0)
    finally:
        torch.cuda.set_per_process_memory_fraction(fraction, device)
    assert any(not ok for _, ok in result.tries)
    assert 1 <= result.largest_fit < len(X)
    assert torch.cuda.memory_allocated(device) == baseline
