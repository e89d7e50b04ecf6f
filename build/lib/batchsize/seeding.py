"""The book-wide replicate: `BATCHSIZE_SEED` shifts every seed the book draws, read here and nowhere else.

Every seed the lessons use (model initialisations, data orders, bootstraps, the seed lists of the sweeps, noise
draws) goes through `seed`, so `BATCHSIZE_SEED=1 jupyter-book build .` re-runs every experiment as an
independent replicate. The data sets themselves (MNIST-1D, the synthetic regression problem) stay fixed. The
library's functions shift the seeds they are given; a notebook seeds its own draws with `manual_seed`,
`default_rng` and `generator` below instead of torch's and numpy's.
"""
import os

import numpy as np
import torch

STRIDE = 1_000_000  # replicates r and r + 1 draw from seeds a million apart: no seed list of the book overlaps


def replicate():
    """The book-wide replicate number, from the environment variable BATCHSIZE_SEED (default 0)."""
    text = os.environ.get("BATCHSIZE_SEED", "0").strip() or "0"
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"BATCHSIZE_SEED must be a whole number >= 0, got {text!r}") from None
    if value < 0:
        raise ValueError(f"BATCHSIZE_SEED must be a whole number >= 0, got {value}")
    return value


def seed(value=0):
    """The seed `value` of the book's replicate: value + STRIDE * BATCHSIZE_SEED. Introduced in chapter 1."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"a seed must be a whole number >= 0, got {value!r}")
    return int(value) + STRIDE * replicate()


def manual_seed(value=0):
    """`torch.manual_seed` with the replicate's seed; returns the seed used. Introduced in chapter 1."""
    used = seed(value)
    torch.manual_seed(used)
    return used


def default_rng(value=0):
    """`np.random.default_rng` with the replicate's seed. Introduced in chapter 1."""
    return np.random.default_rng(seed(value))


def generator(value=0, device="cpu"):
    """A `torch.Generator` seeded with the replicate's seed. Introduced in chapter 1."""
    return torch.Generator(device=device).manual_seed(seed(value))
