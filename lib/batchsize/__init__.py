"""The lesson library of the book "Batch size in machine-learning training".

One flat package of small modules, each named after what it holds:
data (MNIST-1D, synthetic regression), language (a seeded character-level Markov language with its exact entropy
ladder), models (MLP, 1-D CNN, a tiny causal transformer), sim (noisy-quadratic SGD simulator and model),
grads (per-example gradient statistics), prose (the numbers a chapter's text quotes), seeding (the book-wide
replicate, BATCHSIZE_SEED), train (fast seeded SGD and Adam, many runs at once, schedules), stacked_mlp (the MLP's
forward and backward pass for many runs at once, written out, and their noise scales), tune (the rule for the
best learning rate on a grid, the seed bootstrap), scaling (steps to a target against the batch size, the critical
batch size, sharpness), steps (one training step of a model: flat gradients, micro-batches, gradient accumulation,
any torch.optim optimizer), hardware (devices, timing, throughput, FLOPs and provenance), memory (bytes against
the batch size, the largest batch that fits), parallel (gradient accumulation against the full batch, and its
traps), plots (book style), widgets (interactive figures), claims (the web texts' claims and the book's verdicts),
advise (a measured batch-size recommendation for a reader's own model), batches (a reader's data as examples:
tensors, a Dataset or a DataLoader, inputs as token ids, dicts or tuples); ddp (DistributedDataParallel against one
process, the check that torchrun runs), coursework (the graded labs, built with otter-grader) and robustness (the
notebooks run in a matrix of simulated CPUs, seeds, threads and load) are imported on their own.

Figures follow one convention: `plots` holds the book's style, its batch-size colours and the one helper every
chapter draws runs with (`plot_runs`); a figure of one module's results is drawn by a `plot_<what>` function beside
the data it draws (`scaling.plot_steps`, `scaling.plot_generalization`, `advise.plot_advice`, and the plain functions
behind the widgets, `widgets.plot_sgd_paths` and `widgets.plot_nqm`). Every timing of a step goes through
`hardware.time_fn` (`hardware.time_interleaved` calls it round by round); `hardware.time_epoch` times one pass of
an input pipeline, with the wait for its first batch.
"""
from . import (advise, batches, claims, data, grads, hardware, language, memory, models, parallel, plots, prose,
               scaling, seeding, sim, stacked_mlp, steps, train, tune, widgets)

__all__ = ["advise", "batches", "claims", "data", "grads", "hardware", "language", "memory", "models", "parallel",
           "plots", "prose", "scaling", "seeding", "sim", "stacked_mlp", "steps", "train", "tune", "widgets"]
__version__ = "0.1.0"
