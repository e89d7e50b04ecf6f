"""The lesson library of the book "Batch size in machine-learning training".

One flat package of small modules, each named after what it holds:
data (MNIST-1D, synthetic regression), models (MLP, 1-D CNN), sim (noisy-quadratic SGD simulator and model),
grads (per-example gradient statistics), prose (the numbers a chapter's text quotes), seeding (the book-wide
replicate, BATCHSIZE_SEED), train (fast seeded SGD and Adam, many runs at once, schedules), tune (the rule for the
best learning rate on a grid, the seed bootstrap), scaling (steps to a target against the batch size, the critical
batch size, sharpness), steps (one training step of a model: flat gradients, micro-batches, gradient accumulation,
any torch.optim optimizer), hardware (devices, timing, throughput, FLOPs and provenance), memory (bytes against
the batch size, the largest batch that fits), parallel (gradient accumulation against the full batch, and its
traps), plots (book style), widgets (interactive figures), claims (the web texts' claims and the book's verdicts),
advise (a measured batch-size recommendation for a reader's own model); ddp (DistributedDataParallel against one
process, the check that torchrun runs), coursework (the graded labs, built with otter-grader) and robustness (the
notebooks run in a matrix of simulated CPUs, seeds, threads and load) are imported on their own.
"""
from . import (advise, claims, data, grads, hardware, memory, models, parallel, plots, prose, scaling, seeding, sim,
               steps, train, tune, widgets)

__all__ = ["advise", "claims", "data", "grads", "hardware", "memory", "models", "parallel", "plots", "prose", "scaling",
           "seeding", "sim", "steps", "train", "tune", "widgets"]
__version__ = "0.1.0"
