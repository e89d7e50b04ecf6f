"""Tuning a learning rate on a grid, with one rule for the whole book, and the seed bootstrap.

The rule (stated here once; `train.sweep`, `scaling.sweep_steps` and `scaling.generalization_sweep` all use it):

- a grid point's score is the **median over seeds**; a seed that failed (diverged, or never reached its target)
  counts as the worst score, so a point can win only if most of its seeds succeeded;
- the **best** point has the best median; exact ties go to the **larger learning rate**;
- a comparison between learning rates (does the tuned one grow with the batch?) uses the **near-best set**: the
  points whose median is within `z` standard errors of the difference from the best's, the standard error taken
  from the seeds' spread, so a near-tie that another CPU's rounding could flip never decides it;
- `search` trains a first window of grid points, then one more point beyond an edge at a time while the best sits
  on that edge (below the window while every point tried failed).

Introduced in chapter 2 (batch-size trade-offs); chapter 3 tunes with it too.
"""
import warnings
from dataclasses import dataclass

import numpy as np

from . import seeding


@dataclass
class Trial:
    """What one grid point gave: a score per seed, which seeds failed, and anything the caller keeps with it."""

    scores: np.ndarray  # (num_seeds,)
    failed: np.ndarray  # bool (num_seeds,)
    payload: object = None


def _prepare(scores, failed, higher_is_better):
    """Scores (num_lrs, num_seeds) as floats oriented so that larger is better, failures as -inf."""
    scores = np.asarray(scores, dtype=float)
    if scores.ndim != 2 or scores.size == 0:
        raise ValueError(f"scores must be a non-empty (num_lrs, num_seeds) array, got shape {scores.shape}")
    failed = np.zeros(scores.shape, bool) if failed is None else np.asarray(failed, dtype=bool)
    if failed.shape != scores.shape:
        raise ValueError(f"failed must have the shape of scores {scores.shape}, got {failed.shape}")
    oriented = scores if higher_is_better else -scores
    return np.where(failed | np.isnan(oriented), -np.inf, oriented)


def centre(scores, failed=None, higher_is_better=True):
    """Median over seeds of each grid point, failed seeds counted as the worst score: (num_lrs,)."""
    med = np.median(_prepare(scores, failed, higher_is_better), axis=1)
    return med if higher_is_better else -med


def best_index(scores, failed=None, higher_is_better=True):
    """Index of the grid point with the best median (ties: the larger lr, the later index); None if all failed."""
    med = np.median(_prepare(scores, failed, higher_is_better), axis=1)
    if not np.isfinite(med).any():
        return None
    return len(med) - 1 - int(np.argmax(med[::-1]))


def near_best(scores, failed=None, higher_is_better=True, z=2.0):
    """Mask (num_lrs,) of the grid points within z standard errors of the best (the best included).

    The standard error of the difference of two points is sqrt(se_i**2 + se_best**2) (`difference_se`), each se
    the standard error of the point's seeds (`standard_error`); a point with a failed median is never near the best.
    """
    if isinstance(z, bool) or not isinstance(z, (int, float)) or not z >= 0:
        raise ValueError(f"z must be a number >= 0, got {z!r}")
    values = _prepare(scores, failed, higher_is_better)
    best = best_index(scores, failed, higher_is_better)
    mask = np.zeros(len(values), bool)
    if best is None:
        return mask
    med = np.median(values, axis=1)
    ses = np.nan_to_num(standard_error(np.where(np.isfinite(values), values, np.nan)))  # one seed: 0
    with np.errstate(invalid="ignore"):
        mask = np.isfinite(med) & (med[best] - med <= z * np.hypot(ses, ses[best]))
    mask[best] = True
    return mask


def standard_error(values, axis=-1):
    """Standard error of the mean over seeds along `axis`, NaN (diverged) seeds left out; NaN under two seeds.

    Introduced in chapter 2 (batch-size trade-offs): the book's one standard error of a seed mean.
    """
    values = np.asarray(values, dtype=float)
    count = np.isfinite(values).sum(axis)
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # fewer than two seeds: NaN, said in the docstring
        return np.nanstd(values, axis, ddof=1) / np.sqrt(count)


def difference_se(a, b, axis=-1):
    """Standard error of the difference of two independent seed means, sqrt(se(a)**2 + se(b)**2). Chapter 2."""
    return np.hypot(standard_error(a, axis), standard_error(b, axis))


def widen(grid, tried, best):
    """Grid points to add next: beyond the edge of `tried` where the best sits (below when best is None)."""
    grid, tried = np.asarray(grid, dtype=float), np.asarray(tried, dtype=float)
    lower, upper = grid[grid < tried[0]], grid[grid > tried[-1]]
    add = []
    if (best is None or best == 0) and len(lower):
        add.append(float(lower[-1]))
    if best is not None and best == len(tried) - 1 and len(upper):
        add.append(float(upper[0]))
    return add


def search(grid, first, run, higher_is_better=True, retry=None):
    """Tune on `grid`: train `first`, then widen (see `widen`) until the best is inside the points tried.

    `run(new_lrs, best)` trains the learning rates `new_lrs` (best: the best so far as (lr, Trial), or None) and
    returns {lr: Trial}. `retry()`, called when every point tried has failed, may return True to forget them and start
    again from `first` (e.g. with a larger budget). Returns (tried lrs sorted (num_lrs,), index of the best or
    None, {lr: Trial}).
    """
    grid = np.sort(np.asarray(grid, dtype=float))
    first = [float(lr) for lr in np.atleast_1d(first)]
    if not first:
        raise ValueError("first must hold at least one learning rate")
    results, cand, best_lr = {}, list(first), None
    while True:
        new = [lr for lr in cand if lr not in results]
        if new:
            out = run(new, None if best_lr is None else (best_lr, results[best_lr]))
            if set(out) != set(new):
                raise RuntimeError(f"run must return one Trial per learning rate asked for, {new}")
            results.update(out)
        tried = np.array(sorted(results))
        scores = np.stack([results[lr].scores for lr in tried])
        failed = np.stack([results[lr].failed for lr in tried])
        best = best_index(scores, failed, higher_is_better)
        if best is None and retry is not None and retry():
            results, cand, best_lr = {}, list(first), None
            continue
        best_lr = None if best is None else float(tried[best])
        add = widen(grid, tried, best)
        if not add:
            return tried, best, results
        cand += add


def bootstrap(values, num_boot=1000, seed=0):
    """Seed resamples of `values` (..., num_seeds): (num_boot, ..., num_seeds), seeds drawn with replacement
    independently for every leading index. Introduced in chapter 2."""
    values = np.asarray(values)
    if values.ndim < 1 or values.shape[-1] < 1:
        raise ValueError(f"values must have a last axis of seeds, got shape {values.shape}")
    if isinstance(num_boot, bool) or not isinstance(num_boot, (int, np.integer)) or num_boot < 1:
        raise ValueError(f"num_boot must be an integer >= 1, got {num_boot!r}")
    pick = seeding.default_rng(seed).integers(0, values.shape[-1], size=(int(num_boot), *values.shape))
    return np.take_along_axis(np.broadcast_to(values, pick.shape), pick, -1)
