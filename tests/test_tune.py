"""Tests for tune.py"""
import numpy as np
import pytest

from batchsize import tune


def test_best_is_the_best_median_and_ties_go_to_the_larger_lr():
    scores = np.array([[0.5, 0.6, 0.7], [0.9, 0.1, 0.8], [0.8, 0.0, 0.9]])  # medians 0.6, 0.8, 0.8
    assert tune.best_index(scores) == 2
    assert tune.best_index(-scores, higher_is_better=False) == 2
    np.testing.assert_allclose(tune.centre(scores), [0.6, 0.8, 0.8])


def test_a_failed_seed_counts_as_the_worst_score():
    steps = np.array([[10.0, 12.0, 11.0], [5.0, np.inf, np.inf], [8.0, 9.0, np.inf]])
    # lr 1 has two of three seeds unreached, so its median is inf; lr 2's median is 9
    assert tune.best_index(steps, np.isinf(steps), higher_is_better=False) == 2
    acc = np.array([[0.5, 0.5, 0.5], [0.9, 0.9, 0.9]])
    failed = np.array([[False] * 3, [True, True, False]])
    assert tune.best_index(acc, failed) == 0
    assert tune.best_index(acc, np.ones_like(failed)) is None
    assert tune.best_index(np.full((2, 3), np.nan)) is None


def test_near_best_holds_the_points_within_the_seed_noise_of_the_best():
    rng = np.random.default_rng(0)
    means = np.array([0.50, 0.60, 0.61, 0.62, 0.40])
    scores = means[:, None] + 0.01 * rng.standard_normal((5, 8))  # se of a point's median ~ 0.004
    mask = tune.near_best(scores, z=2.0)
    assert mask[3] and not mask[0] and not mask[4]
    assert mask.sum() >= 2  # 0.61 against 0.62 is within noise
    assert tune.near_best(scores, z=0.0).sum() == 1
    assert tune.near_best(scores, z=100).sum() == 5
    # a point whose median failed is never near the best
    failed = np.zeros(scores.shape, bool)
    failed[2, :5] = True
    assert not tune.near_best(scores, failed, z=100)[2]


def test_widen_adds_the_neighbour_beyond_the_edge_of_the_best():
    grid = [0.1, 0.2, 0.4, 0.8, 1.6]
    assert tune.widen(grid, [0.2, 0.4, 0.8], 1) == []
    assert tune.widen(grid, [0.2, 0.4, 0.8], 0) == [0.1]
    assert tune.widen(grid, [0.2, 0.4, 0.8], 2) == [1.6]
    assert tune.widen(grid, [0.4], 0) == [0.2, 0.8]
    assert tune.widen(grid, [0.2, 0.4], None) == [0.1]
    assert tune.widen(grid, [0.1, 0.2], 0) == []


def test_search_finds_the_grid_optimum_from_a_window_at_the_edge():
    grid = 2.0 ** np.arange(-6, 4)
    optimum = 2.0 ** 1  # index 7 of 10

    def run(new, best):
        return {lr: tune.Trial(np.full(3, -abs(np.log2(lr / optimum))), np.zeros(3, bool)) for lr in new}

    tried, k, results = tune.search(grid, grid[:2], run)
    assert tried[k] == optimum and set(tried) == set(grid[:len(tried)])
    assert len(results) == len(tried) == 10 - 1  # one past the optimum, no further


def test_search_retries_when_every_point_failed_and_passes_the_best_so_far():
    grid, calls, budget = [0.1, 0.2, 0.4], [], {"steps": 10}

    def run(new, best):
        calls.append((list(new), None if best is None else best[0]))
        ok = budget["steps"] > 10
        return {lr: tune.Trial(np.full(2, lr), np.full(2, not ok)) for lr in new}

    def retry():
        if budget["steps"] > 10:
            return False
        budget["steps"] = 100
        return True

    tried, k, _ = tune.search(grid, [0.4], run, retry=retry)
    assert tried[k] == 0.4
    assert calls[0] == ([0.4], None) and calls[1] == ([0.4], None)  # the retry starts again from `first`
    assert calls[2] == ([0.2], 0.4)  # widening below, told the best so far


def test_bootstrap_resamples_seeds_per_row_as_numpy_does():
    values = np.arange(12.0).reshape(4, 3)
    boot = tune.bootstrap(values, num_boot=50, seed=7)
    assert boot.shape == (50, 4, 3)
    pick = np.random.default_rng(7).integers(0, 3, size=(50, 4, 3))
    np.testing.assert_array_equal(boot, np.take_along_axis(np.broadcast_to(values, pick.shape), pick, -1))
    for row in range(4):  # every resampled value is one of that row's seeds
        assert np.isin(boot[:, row], values[row]).all()


@pytest.mark.parametrize("call, error, match", [
    (lambda: tune.best_index(np.zeros(3)), ValueError, "num_lrs, num_seeds"),
    (lambda: tune.best_index(np.zeros((2, 3)), np.zeros((3, 2), bool)), ValueError, "shape of scores"),
    (lambda: tune.near_best(np.zeros((2, 3)), z=-1), ValueError, "z must be"),
    (lambda: tune.search([0.1], [], lambda n, b: {}), ValueError, "at least one"),
    (lambda: tune.search([0.1], [0.1], lambda n, b: {}), RuntimeError, "one Trial per learning rate"),
    (lambda: tune.bootstrap(np.zeros(3), num_boot=0), ValueError, "num_boot"),
])
def test_bad_input_is_refused_clearly(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_standard_error_leaves_out_diverged_seeds_and_matches_the_textbook_formula():
    rng = np.random.default_rng(0)
    values = rng.normal(size=(3, 5))
    expected = values.std(-1, ddof=1) / np.sqrt(5)
    np.testing.assert_allclose(tune.standard_error(values), expected, rtol=1e-12)
    values[1, 0] = np.nan  # a diverged seed
    np.testing.assert_allclose(tune.standard_error(values)[1], values[1, 1:].std(ddof=1) / 2, rtol=1e-12)
    assert np.isnan(tune.standard_error([1.0, np.nan]))  # one seed: no standard error, flagged as NaN


def test_difference_se_adds_the_variances_of_two_means():
    a, b = np.array([1.0, 2.0, 3.0]), np.array([0.0, 4.0])
    se_a, se_b = a.std(ddof=1) / np.sqrt(3), b.std(ddof=1) / np.sqrt(2)
    assert tune.difference_se(a, b) == pytest.approx(np.sqrt(se_a**2 + se_b**2), rel=1e-12)
