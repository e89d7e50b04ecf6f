"""Tests for sim.py"""
import numpy as np
import pytest

from batchsize.sim import (NQM, SimResult, critical_batch_size, nqm_expected_loss, nqm_steps_to_target, simulate_nqm,
                           simulate_sgd, stationary_variance, theory_moments)


# ---------------------------------------------------------------------------------------------------------------
# references: the course lesson's plain scalar loop, and the moment recursion iterated step by step


def lesson_loop(theta0, target, curvature, lr, batch_size, noise_std, noises):
    """The lesson's SGD, one scalar run: theta <- theta - lr * (curvature (theta - target) + noise / sqrt(B))."""
    theta = [float(theta0)]
    for xi in noises:
        grad = curvature * (theta[-1] - target) + noise_std / np.sqrt(batch_size) * xi
        theta.append(theta[-1] - lr * grad)
    return np.array(theta)


def moment_recursion(theta0, target, curvature, lr, batch_size, noise_std, num_steps):
    """Mean and variance of theta_t by iterating m <- rho m, v <- rho^2 v + s2 (m is the offset from target)."""
    rho, s2 = 1 - lr * curvature, lr ** 2 * noise_std ** 2 / batch_size
    m, v = theta0 - target, 0.0
    means, variances = [target + m], [v]
    for _ in range(num_steps):
        m, v = rho * m, rho ** 2 * v + s2
        means.append(target + m)
        variances.append(v)
    return np.array(means), np.array(variances)


# ---------------------------------------------------------------------------------------------------------------
# simulate_sgd


def test_result_shapes_follow_seeds_batch_sizes_lrs_steps():
    res = simulate_sgd(lrs=[0.05, 0.1, 0.2], batch_sizes=(1, 8), num_steps=7, num_seeds=5)
    assert isinstance(res, SimResult)
    assert res.theta.shape == (5, 2, 3, 8)
    assert res.loss.shape == res.theta.shape
    assert res.diverged.shape == (2, 3)
    np.testing.assert_array_equal(res.batch_sizes, [1, 8])
    np.testing.assert_array_equal(res.lrs, [0.05, 0.1, 0.2])


def test_scalar_lr_and_batch_size_give_singleton_axes():
    res = simulate_sgd(lrs=0.1, batch_sizes=8, num_steps=3, num_seeds=2)
    assert res.theta.shape == (2, 1, 1, 4)


def test_noiseless_trajectory_equals_deterministic_recursion():
    lrs, steps = [0.01, 0.1, 0.5, 0.9, 0.99], 40
    res = simulate_sgd(theta0=-1.5, target=3.0, curvature=2.0, lrs=lrs, batch_sizes=(1, 64), noise_std=0.0,
                       num_steps=steps, num_seeds=3)
    for j, lr in enumerate(lrs):
        expected = lesson_loop(-1.5, 3.0, 2.0, lr, 1, 0.0, np.zeros(steps))
        for s in range(3):
            for b in range(2):
                np.testing.assert_array_equal(res.theta[s, b, j], expected)


def test_noisy_trajectory_equals_lesson_loop_driven_by_same_noise():
    # The lesson draws one standard normal per run and step from numpy's default generator, step-major.
    lrs, batch_sizes, steps, seeds = [0.1, 0.3], [1, 8, 32], 12, 4
    res = simulate_sgd(lrs=lrs, batch_sizes=batch_sizes, noise_std=4.0, num_steps=steps, num_seeds=seeds, seed=7)
    rng = np.random.default_rng(7)
    xi = np.stack([rng.standard_normal((seeds, len(batch_sizes), len(lrs))) for _ in range(steps)], -1)
    for s in range(seeds):
        for b, batch_size in enumerate(batch_sizes):
            for j, lr in enumerate(lrs):
                expected = lesson_loop(0.0, 3.0, 2.0, lr, batch_size, 4.0, xi[s, b, j])
                np.testing.assert_allclose(res.theta[s, b, j], expected, rtol=1e-12, atol=1e-12)


def test_implied_gradient_noise_has_std_noise_std_over_sqrt_batch_size():
    # Recover each step's gradient noise from the trajectory:
    # noise = (theta_t - theta_{t+1}) / lr - curvature * (theta_t - target).
    lr, steps, seeds = 0.1, 20, 2000
    res = simulate_sgd(lrs=lr, batch_sizes=(1, 4, 64), noise_std=4.0, num_steps=steps, num_seeds=seeds, seed=3)
    theta = res.theta[:, :, 0]  # (num_seeds, num_batch_sizes, num_steps + 1)
    noise = (theta[..., :-1] - theta[..., 1:]) / lr - 2.0 * (theta[..., :-1] - 3.0)
    n = seeds * steps
    for b, batch_size in enumerate((1, 4, 64)):
        sigma = 4.0 / np.sqrt(batch_size)
        sample = noise[:, b].ravel()
        assert abs(sample.mean()) < 5 * sigma / np.sqrt(n)
        assert abs(sample.std() - sigma) < 5 * sigma / np.sqrt(2 * (n - 1))


def test_mean_and_variance_over_seeds_match_theory_within_five_standard_errors():
    lrs, batch_sizes, steps, n = [0.05, 0.2, 0.7], [1, 8, 128], 30, 4000
    res = simulate_sgd(lrs=lrs, batch_sizes=batch_sizes, num_steps=steps, num_seeds=n, seed=11)
    mean, var = theory_moments(lrs=lrs, batch_sizes=batch_sizes, num_steps=steps)
    emp_mean, emp_var = res.theta.mean(0), res.theta.var(0, ddof=1)
    # theta_t is Gaussian: SE of the mean is sqrt(var / n), SE of the sample variance var * sqrt(2 / (n - 1)).
    assert np.all(np.abs(emp_mean - mean) <= 5 * np.sqrt(var / n) + 1e-12)
    assert np.all(np.abs(emp_var - var) <= 5 * var * np.sqrt(2 / (n - 1)) + 1e-12)


def test_loss_is_half_curvature_times_squared_offset():
    res = simulate_sgd(theta0=0.0, target=3.0, curvature=2.0, lrs=0.1, batch_sizes=8, num_steps=5, num_seeds=3)
    assert np.all(res.loss[..., 0] == 9.0)  # the lesson's (0 - 3)**2
    np.testing.assert_allclose(res.loss, (res.theta - 3.0) ** 2, rtol=1e-14)


def test_same_seed_gives_identical_trajectories():
    a = simulate_sgd(num_steps=10, num_seeds=50, seed=5)
    b = simulate_sgd(num_steps=10, num_seeds=50, seed=5)
    np.testing.assert_array_equal(a.theta, b.theta)


def test_different_seeds_give_different_trajectories():
    a = simulate_sgd(num_steps=10, num_seeds=50, seed=5)
    b = simulate_sgd(num_steps=10, num_seeds=50, seed=6)
    assert not np.array_equal(a.theta, b.theta)


def test_diverged_flags_clearly_unstable_lrs_and_spares_stable_ones():
    res = simulate_sgd(lrs=[0.1, 0.5, 0.9, 2.0, 5.0], num_seeds=20)
    np.testing.assert_array_equal(res.diverged, np.tile([False, False, False, True, True], (4, 1)))


def test_diverged_flags_exactly_the_lrs_with_lr_times_curvature_at_least_two():
    lrs = np.array([0.1, 0.5, 0.9, 0.99, 1.0, 1.01, 1.2, 1.5, 2.0])
    res = simulate_sgd(lrs=lrs, curvature=2.0, num_seeds=20)
    expected = np.abs(1 - lrs * 2.0) >= 1
    np.testing.assert_array_equal(res.diverged, np.tile(expected, (4, 1)))


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(batch_sizes=0), ValueError, "batch_sizes"),
    (dict(batch_sizes=(8, 0)), ValueError, "batch_sizes"),
    (dict(batch_sizes=1.5), ValueError, "batch_sizes must be whole numbers"),
    (dict(batch_sizes=()), ValueError, "batch_sizes"),
    (dict(batch_sizes="8"), TypeError, "batch_sizes"),
    (dict(lrs=-0.1), ValueError, "lrs"),
    (dict(lrs=0.0), ValueError, "lrs"),
    (dict(lrs=np.nan), ValueError, "lrs"),
    (dict(lrs="0.1"), TypeError, "lrs"),
    (dict(num_steps=0), ValueError, "num_steps"),
    (dict(num_steps=2.5), TypeError, "num_steps"),
    (dict(num_steps="30"), TypeError, "num_steps"),
    (dict(num_seeds=0), ValueError, "num_seeds"),
    (dict(noise_std=-1.0), ValueError, "noise_std"),
    (dict(curvature=-2.0), ValueError, "curvature"),
    (dict(curvature=np.inf), ValueError, "curvature"),
])
def test_bad_arguments_raise_naming_the_argument(kwargs, error, match):
    with pytest.raises(error, match=match):
        simulate_sgd(**kwargs)


@pytest.mark.parametrize("name", ["curvature", "noise_std"])
def test_string_curvature_or_noise_std_raises_naming_the_argument(name):
    with pytest.raises(TypeError, match=name):
        simulate_sgd(**{name: "2"})


# ---------------------------------------------------------------------------------------------------------------
# theory_moments and stationary_variance


@pytest.mark.parametrize("curvature", [2.0, 0.5, 0.0])
def test_theory_moments_equal_iterated_moment_recursion(curvature):
    # lr * curvature covers 0 (no curvature), (0, 1), 1 (rho = 0), (1, 2), 2 (rho = -1) and > 2 (unstable).
    lrs, batch_sizes, steps = [0.01, 0.1, 0.5, 0.75, 1.0, 1.2], [1, 8, 128], 30
    mean, var = theory_moments(theta0=-1.0, target=3.0, curvature=curvature, lrs=lrs, batch_sizes=batch_sizes,
                               noise_std=4.0, num_steps=steps)
    assert mean.shape == var.shape == (3, 6, 31)
    for b, batch_size in enumerate(batch_sizes):
        for j, lr in enumerate(lrs):
            ref_mean, ref_var = moment_recursion(-1.0, 3.0, curvature, lr, batch_size, 4.0, steps)
            np.testing.assert_allclose(mean[b, j], ref_mean, rtol=1e-9, atol=1e-12)
            np.testing.assert_allclose(var[b, j], ref_var, rtol=1e-9, atol=1e-12)


def test_theory_moments_start_at_theta0_with_zero_variance():
    mean, var = theory_moments(theta0=0.5, lrs=[0.1, 0.3], batch_sizes=[1, 4], num_steps=3)
    assert np.all(mean[..., 0] == 0.5)
    assert np.all(var[..., 0] == 0.0)


def test_theory_moments_rejects_negative_num_steps():
    with pytest.raises(ValueError, match="num_steps"):
        theory_moments(num_steps=-1)


@pytest.mark.parametrize("lr", [0.01, 0.1, 0.5, 0.9, 0.99])
@pytest.mark.parametrize("batch_size", [1, 32])
def test_stationary_variance_is_limit_of_moment_recursion(lr, batch_size):
    _, ref_var = moment_recursion(0.0, 3.0, 2.0, lr, batch_size, 4.0, 20000)
    np.testing.assert_allclose(stationary_variance(lr, batch_size), ref_var[-1], rtol=1e-9)


@pytest.mark.parametrize("lr", [1.0, 1.2, 3.0])
def test_stationary_variance_is_infinite_when_lr_times_curvature_at_least_two(lr):
    assert stationary_variance(lr, 8, curvature=2.0) == np.inf


def test_stationary_variance_is_infinite_without_curvature():
    assert stationary_variance(0.1, 8, curvature=0.0) == np.inf  # a random walk


def test_stationary_variance_broadcasts_and_returns_float_for_scalars():
    assert isinstance(stationary_variance(0.1, 8), float)
    out = stationary_variance(np.array([[0.1], [0.2], [1.5]]), np.array([1, 8]))
    assert out.shape == (3, 2)
    for i, lr in enumerate([0.1, 0.2, 1.5]):
        for k, batch_size in enumerate([1, 8]):
            assert out[i, k] == stationary_variance(lr, batch_size)


def test_stationary_variance_halves_when_batch_size_doubles():
    np.testing.assert_allclose(stationary_variance(0.1, 16), stationary_variance(0.1, 8) / 2, rtol=1e-14)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(lr=0.0, batch_size=8), ValueError, "lr"),
    (dict(lr=-0.1, batch_size=8), ValueError, "lr"),
    (dict(lr=0.1, batch_size=0), ValueError, "batch_size"),
    (dict(lr=0.1, batch_size=2.5), ValueError, "batch_size"),
    (dict(lr="0.1", batch_size=8), TypeError, "lr"),
])
def test_stationary_variance_bad_arguments_raise_naming_the_argument(kwargs, error, match):
    with pytest.raises(error, match=match):
        stationary_variance(**kwargs)


# ---------------------------------------------------------------------------------------------------------------
# the noisy quadratic model: closed form against the iterated moment recursion and the sampled optimiser


def nqm_recursion(nqm, lr, batch_size, num_steps, momentum, power):
    """E L_t by iterating the mean vector and 2x2 covariance of (theta, v) per direction, one step at a time."""
    losses = []
    for h, c, th0 in zip(nqm.curvatures, nqm.noise, nqm.theta0):
        a = lr * h ** -power
        A = np.array([[1 - a * h, -a * momentum], [h, momentum]])  # (theta, v) -> next (theta, v)
        b = np.array([-a, 1.0])  # how the gradient noise enters
        mean, cov, out = np.array([th0, 0.0]), np.zeros((2, 2)), []
        for _ in range(num_steps + 1):
            out.append(0.5 * h * (mean[0] ** 2 + cov[0, 0]))
            mean, cov = A @ mean, A @ cov @ A.T + np.outer(b, b) * c / batch_size
        losses.append(out)
    return np.sum(losses, axis=0)


SMALL = dict(curvatures=[2.0, 0.7, 0.05], noise=[1.0, 0.3, 0.2], theta0=[1.0, -2.0, 3.0])


@pytest.mark.parametrize("momentum", [0.0, 0.5, 0.9])
@pytest.mark.parametrize("power", [0.0, 0.5, 1.0])
def test_nqm_closed_form_equals_iterated_moment_recursion(momentum, power):
    nqm = NQM(**SMALL)
    lrs, batch_sizes, steps = [0.01, 0.1, 0.4], [1, 16], 60
    loss = nqm_expected_loss(nqm, lrs, batch_sizes, np.arange(steps + 1), momentum, power)
    assert loss.shape == (2, 3, steps + 1)
    for i, batch_size in enumerate(batch_sizes):
        for j, lr in enumerate(lrs):
            ref = nqm_recursion(nqm, lr, batch_size, steps, momentum, power)
            np.testing.assert_allclose(loss[i, j], ref, rtol=1e-8)


def test_nqm_closed_form_near_critical_damping_matches_recursion():
    # momentum 0.25 and lr h = 0.25: tau**2 = 4 m, the two roots coincide
    nqm = NQM(curvatures=[1.0, 0.3], noise=[1.0, 1.0], theta0=[1.0, 1.0])
    loss = nqm_expected_loss(nqm, 0.25, 4, np.arange(301), momentum=0.25)
    np.testing.assert_allclose(loss[0, 0], nqm_recursion(nqm, 0.25, 4, 300, 0.25, 0.0), rtol=1e-5)


@pytest.mark.parametrize("momentum, power", [(0.0, 0.0), (0.9, 0.0), (0.0, 0.5)])
def test_nqm_sampled_mean_loss_matches_closed_form_within_five_standard_errors(momentum, power):
    nqm = NQM.make(dim=20)
    samples = simulate_nqm(nqm, 0.05, 2, 80, momentum, power, num_seeds=4000, seed=1)  # (num_seeds, 81)
    exact = nqm_expected_loss(nqm, 0.05, 2, np.arange(81), momentum, power)[0, 0]
    sem = samples.std(0, ddof=1) / np.sqrt(len(samples))
    np.testing.assert_allclose(samples[:, 0], exact[0])
    assert np.all(np.abs(samples.mean(0) - exact)[1:] <= 5 * sem[1:])


def test_nqm_unstable_lr_gives_inf_and_stable_limit_follows_momentum():
    nqm = NQM(curvatures=[1.0], noise=[1.0], theta0=[1.0])
    # heavy ball is stable for 0 < lr h < 2 (1 + momentum)
    loss = nqm_expected_loss(nqm, [1.9, 2.1, 3.7, 3.9], 1, [10], momentum=0.9)[0, :, 0]
    assert np.all(np.isfinite(loss[[0, 1, 2]])) and loss[3] == np.inf
    assert nqm_expected_loss(nqm, [1.9, 2.1], 1, [10], momentum=0.0)[0, 1, 0] == np.inf


def test_nqm_steps_to_target_is_first_step_below_target_of_the_recursion():
    nqm = NQM(**SMALL)
    target = 0.2 * nqm.initial_loss
    for momentum, power in [(0.0, 0.0), (0.9, 0.0), (0.0, 0.5)]:
        steps = nqm_steps_to_target(nqm, [0.02, 0.3], [1, 64], target, momentum, power, max_steps=3000)
        for i, batch_size in enumerate([1, 64]):
            for j, lr in enumerate([0.02, 0.3]):
                ref = nqm_recursion(nqm, lr, batch_size, 3000, momentum, power)
                below = np.nonzero(ref <= target)[0]
                assert steps[i, j] == (below[0] if len(below) else np.inf), (momentum, power, batch_size, lr)


def test_nqm_steps_to_target_unreachable_floor_is_inf():
    nqm = NQM.make(dim=10)
    # at B = 1 and lr 1 the noise floor of the loss sits above a tiny target
    assert nqm_steps_to_target(nqm, 1.0, 1, 1e-6, max_steps=10 ** 4)[0, 0] == np.inf


def test_critical_batch_size_recovers_mccandlish_b_crit():
    # with the grid reaching the plateau (S within 0.3 % of S_min) the crossing is B_crit to within 1 %
    dense = np.geomspace(1, 1e5, 400)
    assert critical_batch_size(dense, 50 * (1 + 300 / dense)) == pytest.approx(300, rel=1e-2)
    # a curve that reaches its plateau exactly: S = max(S_min, E / B) crosses 2 S_min at B = E / (2 S_min)
    batch_sizes = 2.0 ** np.arange(12)
    assert critical_batch_size(batch_sizes, np.maximum(40.0, 6400 / batch_sizes)) == pytest.approx(80)


def test_nqm_make_is_zhang_spectrum():
    nqm = NQM.make(dim=5, noise_scale=2.0, theta0=1.5)
    np.testing.assert_allclose(nqm.curvatures, 1 / np.arange(1, 6))
    np.testing.assert_allclose(nqm.noise, 2 / np.arange(1, 6))
    assert nqm.initial_loss == pytest.approx(0.5 * 1.5 ** 2 * np.sum(1 / np.arange(1, 6)))


@pytest.mark.parametrize("kwargs, match", [
    (dict(momentum=1.0), "momentum"),
    (dict(momentum=-0.1), "momentum"),
    (dict(precondition_power=1.5), "precondition_power"),
    (dict(lrs=0.0), "lrs"),
    (dict(batch_sizes=-1), "batch_sizes"),
    (dict(steps=[-1]), "steps"),
    (dict(steps=[0.5]), "steps"),
])
def test_nqm_bad_arguments_raise_naming_the_argument(kwargs, match):
    args = dict(lrs=0.1, batch_sizes=1, steps=[0, 1]) | kwargs
    with pytest.raises(ValueError, match=match):
        nqm_expected_loss(NQM(**SMALL), **args)


def test_nqm_bad_spectra_raise():
    with pytest.raises(ValueError, match="curvatures"):
        NQM(curvatures=[1.0, -1.0], noise=[1.0, 1.0], theta0=[1.0, 1.0])
    with pytest.raises(ValueError, match="noise"):
        NQM(curvatures=[1.0, 1.0], noise=[1.0], theta0=[1.0, 1.0])
    with pytest.raises(ValueError, match="theta0"):
        NQM(curvatures=[1.0], noise=[1.0], theta0=[np.nan])
    with pytest.raises(ValueError, match="factor"):
        critical_batch_size([1, 2], [2.0, 1.0], factor=1.0)
    with pytest.raises(ValueError, match="one lr"):
        simulate_nqm(NQM(**SMALL), [0.1, 0.2], 1, 5)


def test_nqm_best_steps_is_the_grid_minimum_per_batch_size():
    from batchsize.sim import nqm_best_steps

    nqm = NQM.make(dim=10)
    lrs, batch_sizes = np.geomspace(0.01, 1, 7), [1, 8, 64]
    target = 0.1 * nqm.initial_loss
    all_steps = nqm_steps_to_target(nqm, lrs, batch_sizes, target)  # (num_batch_sizes, num_lrs)
    steps, best_lr = nqm_best_steps(nqm, lrs, batch_sizes, target)
    for i in range(len(batch_sizes)):
        j = int(np.argmin(all_steps[i]))
        assert steps[i] == all_steps[i, j] and best_lr[i] == lrs[j]
