"""Tests for data.py"""
import mnist1d.data
import numpy as np
import pytest
import torch

from batchsize.data import LinearRegression, cache_dir, load_mnist1d


# ---------------------------------------------------------------------------------------------------------------
# MNIST-1D


@pytest.fixture(scope="module")
def mnist():
    return load_mnist1d()


@pytest.fixture(scope="module")
def reference_mnist():
    """The mnist1d package's own dataset with its default arguments (seed 42, 5000 samples, 80/20 split)."""
    return mnist1d.data.make_dataset(mnist1d.data.get_dataset_args())


@pytest.fixture
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("BATCHSIZE_CACHE", str(tmp_path))
    return tmp_path


def test_mnist1d_shapes_and_dtypes(mnist):
    X, y, X_test, y_test = mnist
    assert X.shape == (4000, 40) and y.shape == (4000,)
    assert X_test.shape == (1000, 40) and y_test.shape == (1000,)
    assert X.dtype == X_test.dtype == torch.float32
    assert y.dtype == y_test.dtype == torch.long


def test_mnist1d_equals_the_packages_published_split(mnist, reference_mnist):
    X, y, X_test, y_test = mnist
    np.testing.assert_allclose(X.numpy(), reference_mnist["x"], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(X_test.numpy(), reference_mnist["x_test"], rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(y.numpy(), reference_mnist["y"])
    np.testing.assert_array_equal(y_test.numpy(), reference_mnist["y_test"])


def test_mnist1d_has_ten_balanced_classes(mnist):
    _, y, _, y_test = mnist
    # make_dataset draws the same number of examples per class: 500 of each over train and test together.
    np.testing.assert_array_equal(torch.bincount(torch.cat([y, y_test]), minlength=10).numpy(), np.full(10, 500))
    train_counts = torch.bincount(y, minlength=10).numpy()
    assert len(train_counts) == 10
    assert train_counts.min() >= 350 and train_counts.max() <= 450  # 400 expected from a random 80 % split


def test_mnist1d_inputs_are_standardised(mnist):
    X, _, X_test, _ = mnist
    X_all = torch.cat([X, X_test]).double()
    assert abs(X_all.mean().item()) < 1e-5
    assert abs(X_all.std().item() - 1.0) < 1e-3


def test_mnist1d_is_deterministic(mnist):
    for a, b in zip(mnist, load_mnist1d()):
        assert torch.equal(a, b)


def test_cache_dir_follows_environment_variable(isolated_cache):
    assert cache_dir() == isolated_cache


def test_cached_file_is_reused_without_regenerating(isolated_cache, monkeypatch):
    first = load_mnist1d(num_train=90, num_test=10)
    assert list(isolated_cache.glob("*.npz")) == [isolated_cache / "mnist1d_v2_90_10_42.npz"]

    def fail(*args, **kwargs):
        raise AssertionError("make_dataset called although the data set is cached")

    monkeypatch.setattr(mnist1d.data, "make_dataset", fail)
    for a, b in zip(first, load_mnist1d(num_train=90, num_test=10)):
        assert torch.equal(a, b)
    with pytest.raises(AssertionError, match="make_dataset called"):
        load_mnist1d(num_train=80, num_test=20)  # a different split is a different file


def test_small_split_matches_package_with_same_arguments(isolated_cache):
    X, y, X_test, y_test = load_mnist1d(num_train=90, num_test=10, seed=3)
    args = mnist1d.data.get_dataset_args()
    args.num_samples, args.train_split, args.seed = 100, 0.9, 3
    ref = mnist1d.data.make_dataset(args)
    np.testing.assert_allclose(X.numpy(), ref["x"], rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(y_test.numpy(), ref["y_test"])


def test_other_sizes_on_request(isolated_cache):
    X, y, X_test, y_test = load_mnist1d(num_train=1990, num_test=10)
    assert X.shape == (1990, 40) and y.shape == (1990,)
    assert X_test.shape == (10, 40) and y_test.shape == (10,)
    np.testing.assert_array_equal(torch.bincount(torch.cat([y, y_test])).numpy(), np.full(10, 200))


def test_requested_split_sizes_are_exact(isolated_cache):
    X, _, X_test, _ = load_mnist1d(num_train=29, num_test=21)
    assert (len(X), len(X_test)) == (29, 21)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(num_train=0), ValueError, "num_train"),
    (dict(num_test=-10), ValueError, "num_test"),
    (dict(num_train=2.5), TypeError, "num_train"),
    (dict(num_train="4000"), TypeError, "num_train"),
    (dict(num_train=95, num_test=10), ValueError, "multiple of 10"),
])
def test_bad_sizes_raise_naming_the_argument(isolated_cache, kwargs, error, match):
    with pytest.raises(error, match=match):
        load_mnist1d(**kwargs)
    assert not list(isolated_cache.iterdir())  # nothing generated or cached


# ---------------------------------------------------------------------------------------------------------------
# LinearRegression: closed forms against Monte Carlo, per-example gradients against autograd


@pytest.fixture
def problem():
    return LinearRegression.make(dim=4, noise_std=0.7, seed=1)


def independent_gradient_samples(problem, theta, num_examples, seed):
    """Per-example gradients x (x . theta - y) from inputs drawn here, not by the lib, (num_examples, dim)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((num_examples, len(problem.w_true))) * problem.scales
    y = X @ problem.w_true + problem.noise_std * rng.standard_normal(num_examples)
    return X * (X @ theta - y)[:, None]


def test_make_gives_shapes_and_scales_over_a_decade():
    p = LinearRegression.make(dim=20, noise_std=0.5, seed=0)
    assert p.w_true.shape == p.scales.shape == (20,)
    assert p.scales[0] == 1.0 and np.isclose(p.scales[-1], 0.1)
    assert p.noise_std == 0.5
    np.testing.assert_array_equal(p.hessian, np.diag(p.scales ** 2))


def test_sample_has_the_stated_distribution(problem):
    n = 100_000
    X, y = problem.sample(n, seed=2)
    assert X.dtype == y.dtype == torch.float64 and X.shape == (n, 4) and y.shape == (n,)
    X, y = X.numpy(), y.numpy()
    se_std = problem.scales / np.sqrt(2 * (n - 1))
    assert np.all(np.abs(X.std(0) - problem.scales) < 5 * se_std)
    assert np.all(np.abs(X.mean(0)) < 5 * problem.scales / np.sqrt(n))
    resid = y - X @ problem.w_true
    assert abs(resid.std() - problem.noise_std) < 5 * problem.noise_std / np.sqrt(2 * (n - 1))


def test_sample_is_seeded(problem):
    a, b, c = problem.sample(10, seed=1), problem.sample(10, seed=1), problem.sample(10, seed=2)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


def test_population_gradient_matches_monte_carlo_mean(problem):
    theta = problem.w_true + np.array([1.0, -0.5, 2.0, 0.3])
    g = independent_gradient_samples(problem, theta, 200_000, seed=5)
    se = g.std(0, ddof=1) / np.sqrt(len(g))
    assert np.all(np.abs(g.mean(0) - problem.population_gradient(theta)) < 5 * se)


def test_population_gradient_vanishes_at_true_weights(problem):
    np.testing.assert_array_equal(problem.population_gradient(problem.w_true), np.zeros(4))


@pytest.mark.parametrize("offset", [[1.0, -0.5, 2.0, 0.3], [0.0, 0.0, 0.0, 0.0]])
def test_gradient_covariance_matches_monte_carlo_covariance(problem, offset):
    theta = problem.w_true + np.array(offset)
    g = independent_gradient_samples(problem, theta, 200_000, seed=6)
    centred = g - g.mean(0)
    products = centred[:, :, None] * centred[:, None, :]  # (num_examples, dim, dim)
    se = products.std(0, ddof=1) / np.sqrt(len(g))
    cov = problem.gradient_covariance(theta)
    np.testing.assert_allclose(cov, cov.T)
    assert np.all(np.abs(np.cov(g.T) - cov) < 5 * se + 1e-12)


def test_per_example_grads_match_autograd_of_half_squared_error(problem):
    X, y = problem.sample(8, seed=3)
    theta = problem.w_true + 0.5
    out = problem.per_example_grads(X, y, theta)
    assert out.shape == (8, 4) and out.dtype == torch.float64
    for i in range(8):
        t = torch.tensor(theta, requires_grad=True)
        loss = (X[i] @ t - y[i]) ** 2 / 2
        (grad,) = torch.autograd.grad(loss, t)
        torch.testing.assert_close(out[i], grad, rtol=1e-12, atol=1e-12)


def test_per_example_grads_average_to_population_gradient(problem):
    X, y = problem.sample(200_000, seed=4)
    theta = problem.w_true - 1.0
    g = problem.per_example_grads(X, y, theta).numpy()
    se = g.std(0, ddof=1) / np.sqrt(len(g))
    assert np.all(np.abs(g.mean(0) - problem.population_gradient(theta)) < 5 * se)


@pytest.mark.parametrize("bad_theta", [np.zeros(3), np.zeros((4, 1)), 0.0])
def test_theta_of_wrong_shape_raises(problem, bad_theta):
    with pytest.raises(ValueError, match="theta must have shape"):
        problem.population_gradient(bad_theta)
    with pytest.raises(ValueError, match="theta must have shape"):
        problem.gradient_covariance(bad_theta)


def test_per_example_grads_rejects_theta_of_wrong_shape(problem):
    X, y = problem.sample(5)
    with pytest.raises(ValueError, match="theta must have shape"):
        problem.per_example_grads(X, y, np.zeros(3))


@pytest.mark.parametrize("call, match", [
    (lambda: LinearRegression.make(dim=0), "dim"),
    (lambda: LinearRegression.make(dim=4).sample(0), "num_examples"),
])
def test_bad_sizes_for_linear_regression_raise(call, match):
    with pytest.raises(ValueError, match=match):
        call()
