"""One matplotlib style for the whole book: colour-blind-safe colours (Okabe-Ito), labelled axes."""
import matplotlib as mpl
import numpy as np

# Okabe & Ito (2008) palette, safe for the common colour-vision deficiencies; black is kept for theory lines.
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"]

BOOK_STYLE = {
    "figure.figsize": (6.4, 3.6),
    "figure.dpi": 110,
    "savefig.dpi": 110,
    "axes.prop_cycle": mpl.cycler(color=PALETTE[:-1]),
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.titlesize": "medium",
    "legend.frameon": False,
    "font.size": 10,
    "lines.linewidth": 1.8,
}


def use_book_style():
    """Apply the book's matplotlib style. Introduced in chapter 1 (gradient variance)."""
    mpl.rcParams.update(BOOK_STYLE)


def batch_colors(batch_sizes):
    """One palette colour per batch size, in order, so a batch size keeps its colour across a chapter."""
    batch_sizes = list(batch_sizes)
    if len(batch_sizes) > len(PALETTE) - 1:
        raise ValueError(f"at most {len(PALETTE) - 1} batch sizes can get distinct colours, got {len(batch_sizes)}")
    return dict(zip(batch_sizes, PALETTE))


def plot_runs(ax, steps, values, diverged=None, label=None, color=None, band=True):
    """Median over runs (axis 0) with an interquartile band; diverged runs are left out and counted in the label.

    Introduced in chapter 1 (gradient variance). `values` is (num_runs, num_steps); runs flagged in
    `diverged` are dropped, never drawn as NaN.
    """
    values = np.asarray(values, dtype=float)
    if values.ndim != 2 or values.shape[1] != len(steps):
        raise ValueError(f"values must be (num_runs, {len(steps)}), got shape {values.shape}")
    if diverged is not None and np.shape(diverged) != (len(values),):
        raise ValueError(f"diverged must be a mask with one entry per run, shape ({len(values)},), "
                         f"got shape {np.shape(diverged)}")
    keep = np.ones(len(values), bool) if diverged is None else ~np.asarray(diverged, bool)
    if label is not None and not keep.all():
        label = f"{label} ({(~keep).sum()} of {len(keep)} diverged)"
    if not keep.any():
        ax.plot([], [], color=color, label=label)
        return
    lo, mid, hi = np.percentile(values[keep], [25, 50, 75], axis=0)
    (line,) = ax.plot(steps, mid, color=color, label=label)
    if band and keep.sum() > 1:
        ax.fill_between(steps, lo, hi, color=line.get_color(), alpha=0.2, linewidth=0)


def plot_estimates(ax, x, estimate, lo, hi, fmt="o-", color=None, label=None, **kwargs):
    """Point estimates joined by `fmt`, each with its interval [lo, hi] as a capped bar. Introduced in chapter 2.2.

    The bars are drawn from `lo` to `hi` whether or not they contain the estimate: a bootstrap percentile interval
    need not contain the fit on all the data, and matplotlib's `errorbar` refuses the negative lengths that would give.
    """
    x, estimate, lo, hi = (np.asarray(a, dtype=float) for a in (x, estimate, lo, hi))
    if x.ndim != 1 or any(a.shape != x.shape for a in (estimate, lo, hi)):
        raise ValueError(f"x, estimate, lo and hi must be 1-d arrays of one shape, got shapes "
                         f"{x.shape}, {estimate.shape}, {lo.shape} and {hi.shape}")
    if np.any(lo > hi):
        raise ValueError(f"each interval needs lo <= hi, got lo {lo} and hi {hi}")
    (line,) = ax.plot(x, estimate, fmt, color=color, label=label, **kwargs)
    ax.errorbar(x, (lo + hi) / 2, yerr=(hi - lo) / 2, fmt="none", capsize=3, color=line.get_color())
    return line
