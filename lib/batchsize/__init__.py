"""The lesson library of the book "Batch size in machine-learning training".

One flat package of small modules, each named after what it holds:
data (MNIST-1D, synthetic regression), models (MLP, 1-D CNN), sim (noisy-quadratic SGD simulator),
grads (per-example gradient statistics), train (fast seeded SGD, many runs at once), plots (book style),
widgets (interactive figures), hardware (devices and provenance).
"""
from . import data, grads, hardware, models, plots, sim, train, widgets

__all__ = ["data", "grads", "hardware", "models", "plots", "sim", "train", "widgets"]
__version__ = "0.1.0"
