"""Settings for the whole test session: library tests, the site test and the notebooks run by nbval.

Kernels: xdist hands out whole files (`--dist loadfile`), so every cell of a notebook runs on one worker, in one
kernel. Kernels started at the same moment by two processes can be handed the same free TCP ports, so a process
starts kernels only while it holds one machine-wide file lock (`kernel_start_lock`): nbval while a notebook's
kernel starts, the site test for its whole book build. `pytest_runtest_setup` counts the kernels each notebook
starts and fails the notebook on a second one.

Another machine: the build has executed every notebook on this CPU with the book's replicate 0; nbval executes
them again as another machine would, in the variant `NBVAL_VARIANT` (set in the environment of the kernels it
starts, nowhere else): torch's and its matrix libraries' kernels limited to AVX2, and the book's replicate
`BATCHSIZE_SEED=1`, so one CI run tests two CPUs and two sets of seeds. `BATCHSIZE_NBVAL_VARIANT=native` runs
nbval in the plain environment instead.
"""
import contextlib
import os
import tempfile
from collections import Counter
from pathlib import Path

import pytest
from filelock import FileLock

from batchsize._kernel_polls import poll_in_slices

if os.environ.get("PYTEST_XDIST_WORKER"):
    # The xdist workers share the machine's cores; one thread each (and in every kernel or build they start)
    # avoids the oversubscription that made a 1 s training run take 30 s.
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["MKL_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)

# Every asyncio Jupyter client of the session (test_colab's, test_workdir's, the harness's) polls in slices of a
# second, so a lost ZMQ wake-up costs a second, not a cell's whole timeout (batchsize._kernel_polls).
poll_in_slices()

NBVAL_VARIANT = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2",
                 "BATCHSIZE_SEED": "1"}


def nbval_variant():
    """The environment variables that nbval's kernels get: NBVAL_VARIANT, or none when asked for the native one."""
    choice = os.environ.get("BATCHSIZE_NBVAL_VARIANT", "avx2-s1")
    if choice not in ("avx2-s1", "native"):
        raise ValueError(f"BATCHSIZE_NBVAL_VARIANT must be 'avx2-s1' or 'native', got {choice!r}")
    return dict(NBVAL_VARIANT) if choice == "avx2-s1" else {}


@contextlib.contextmanager
def environment(values):
    """os.environ with `values` set for the duration (a kernel started inside inherits them)."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# One lock for the whole machine: free ports are a machine-wide resource, whichever checkout asks for them.
KERNEL_START_LOCK = Path(tempfile.gettempdir()) / "batchsize-book-kernel-start.lock"
KERNELS_STARTED = Counter()  # notebook path -> kernels started by nbval in this process


@pytest.fixture(scope="session")
def kernel_start_lock():
    """The machine-wide lock to hold while starting Jupyter kernels (e.g. around a book build)."""
    return FileLock(KERNEL_START_LOCK)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item):
    """Start a notebook's kernel under the lock, and fail the notebook if it needs a second kernel.

    nbval starts a notebook's kernel in the setup of its file collector, which pytest runs inside the setup of
    the first cell it executes; a file collector torn down and set up again starts a new kernel.
    """
    notebook = item.parent if item.path.suffix == ".ipynb" else None
    if notebook is None:
        return (yield)
    kernel = getattr(notebook, "kernel", None)
    if kernel is not None and kernel.is_alive():  # the notebook's kernel runs: nothing starts
        return (yield)
    with FileLock(KERNEL_START_LOCK), environment(nbval_variant()):
        result = yield
    if getattr(notebook, "kernel", None) is not kernel:
        KERNELS_STARTED[item.path] += 1
        if KERNELS_STARTED[item.path] > 1:
            raise RuntimeError(
                f"{item.path.name} started kernel number {KERNELS_STARTED[item.path]} at {item.name}: all cells "
                "of a notebook must run in one kernel (run the notebooks with --dist loadfile or -n 0)"
            )
    return result
