"""Tests for plots.py"""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.colors import to_hex  # noqa: E402

from batchsize.plots import (  # noqa: E402
    BOOK_STYLE, PALETTE, batch_colors, plot_estimates, plot_runs, use_book_style)

# Okabe & Ito (2008), "Color Universal Design": the eight colours, named.
OKABE_ITO = {"black": "#000000", "orange": "#E69F00", "sky blue": "#56B4E9", "bluish green": "#009E73",
             "yellow": "#F0E442", "blue": "#0072B2", "vermillion": "#D55E00", "reddish purple": "#CC79A7"}


@pytest.fixture
def ax():
    fig, ax = plt.subplots()
    yield ax
    plt.close(fig)


def test_palette_is_the_okabe_ito_palette_with_black_last():
    assert len(PALETTE) == len(set(PALETTE)) == 8
    assert {c.upper() for c in PALETTE} == set(OKABE_ITO.values())
    assert PALETTE[-1] == OKABE_ITO["black"]  # kept for theory lines


def test_book_style_cycles_the_palette_without_black():
    with matplotlib.rc_context():
        use_book_style()
        cycle = [to_hex(c["color"]).upper() for c in matplotlib.rcParams["axes.prop_cycle"]]
        assert cycle == [c.upper() for c in PALETTE[:-1]]
        assert matplotlib.rcParams["axes.spines.top"] is False
        assert tuple(matplotlib.rcParams["figure.figsize"]) == BOOK_STYLE["figure.figsize"]


def test_batch_colors_are_distinct_palette_colours_in_order():
    colors = batch_colors([1, 8, 32, 128, 512])
    assert list(colors) == [1, 8, 32, 128, 512]
    assert len(set(colors.values())) == 5
    assert list(colors.values()) == PALETTE[:5]
    assert OKABE_ITO["black"] not in colors.values()


def test_batch_colors_are_stable_across_calls():
    assert batch_colors((1, 8, 32, 128)) == batch_colors([1, 8, 32, 128])


def test_batch_colors_reject_more_batch_sizes_than_colours():
    assert len(batch_colors(range(7))) == 7
    with pytest.raises(ValueError, match="at most 7 batch sizes"):
        batch_colors(range(8))


def runs_with_one_diverged():
    steps = np.arange(6)
    rng = np.random.default_rng(0)
    values = rng.random((5, 6)) + 1.0
    values[3, 2:] = np.nan  # a run that blew up at step 2, as History logs it
    diverged = np.array([False, False, False, True, False])
    return steps, values, diverged


def test_plot_runs_draws_median_of_kept_runs_and_drops_diverged(ax):
    steps, values, diverged = runs_with_one_diverged()
    plot_runs(ax, steps, values, diverged=diverged, label="batch size 8", color=PALETTE[1])
    (line,) = ax.get_lines()
    assert not np.isnan(line.get_ydata()).any()
    np.testing.assert_array_equal(line.get_xdata(), steps)
    np.testing.assert_allclose(line.get_ydata(), np.median(values[~diverged], axis=0))
    assert to_hex(line.get_color()).upper() == PALETTE[1]
    assert line.get_label() == "batch size 8 (1 of 5 diverged)"


def test_plot_runs_band_is_the_interquartile_range(ax):
    steps, values, diverged = runs_with_one_diverged()
    plot_runs(ax, steps, values, diverged=diverged)
    (band,) = ax.collections
    vertices = band.get_paths()[0].vertices
    kept = values[~diverged]
    assert not np.isnan(vertices).any()
    np.testing.assert_allclose(vertices[:, 1].min(), np.percentile(kept, 25, axis=0).min())
    np.testing.assert_allclose(vertices[:, 1].max(), np.percentile(kept, 75, axis=0).max())


def test_plot_runs_without_divergence_keeps_label_and_all_runs(ax):
    steps, values, _ = runs_with_one_diverged()
    values = np.nan_to_num(values, nan=1.5)
    plot_runs(ax, steps, values, label="batch size 1", band=False)
    (line,) = ax.get_lines()
    assert line.get_label() == "batch size 1"
    np.testing.assert_allclose(line.get_ydata(), np.median(values, axis=0))
    assert not ax.collections


def test_plot_runs_all_diverged_draws_only_a_legend_entry(ax):
    steps, values, _ = runs_with_one_diverged()
    plot_runs(ax, steps, values, diverged=np.ones(5, bool), label="lr 10")
    (line,) = ax.get_lines()
    assert len(line.get_xdata()) == 0
    assert line.get_label() == "lr 10 (5 of 5 diverged)"
    assert not ax.collections


@pytest.mark.parametrize("values", [np.ones((3, 5)), np.ones(6), np.ones((2, 3, 6))])
def test_plot_runs_rejects_values_of_wrong_shape(ax, values):
    with pytest.raises(ValueError, match="values must be"):
        plot_runs(ax, np.arange(6), values)


def test_plot_runs_rejects_diverged_mask_of_wrong_length(ax):
    with pytest.raises(ValueError, match="diverged"):
        plot_runs(ax, np.arange(6), np.ones((3, 6)), diverged=[False, True])


def test_plot_estimates_draws_bars_from_lo_to_hi_even_when_they_miss_the_estimate(ax):
    # the second estimate lies below its interval, as a bootstrap percentile interval allows
    line = plot_estimates(ax, [1, 2, 3], [10, 5, 30], [8, 6, 20], [12, 9, 40], color=PALETTE[2], label="fit")
    np.testing.assert_array_equal(line.get_ydata(), [10, 5, 30])
    assert line.get_label() == "fit"
    (bars,) = [c for c in ax.collections]
    ends = np.array([seg[:, 1] for seg in bars.get_segments()])
    np.testing.assert_allclose(np.sort(ends, 1), [[8, 12], [6, 9], [20, 40]])
    assert to_hex(bars.get_color()[0]) == PALETTE[2].lower()


@pytest.mark.parametrize("lo, hi", [([1, 2], [2, 3, 4]), ([3, 1, 1], [2, 2, 2])])
def test_plot_estimates_rejects_mismatched_or_inverted_intervals(ax, lo, hi):
    with pytest.raises(ValueError, match="lo"):
        plot_estimates(ax, [1, 2, 3], [1, 2, 3], lo, hi)
