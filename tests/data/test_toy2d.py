"""toy2d: builders load offline, samples follow the stated formulas, exact densities are exact."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

from diffjax import processes
from diffjax.data import pipeline, toy2d

N_TRAIN, N_TEST = 2000, 500  # small custom configs keep preparation fast
N = 100_000  # fresh draws for the statistical checks


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("tfds"))


def draws(distribution, seed=0, n=N):
    return toy2d.sample(distribution, np.random.default_rng(seed), n)


@pytest.mark.parametrize("distribution", toy2d.DISTRIBUTIONS)
def test_builder_loads_offline(data_dir, distribution):
    ds = toy2d.load(distribution, num_train=N_TRAIN, num_test=N_TEST, data_dir=data_dir)
    assert ds.name == f"toy2d/{distribution}_{N_TRAIN}_{N_TEST}/1.0.0"
    assert ds.shape == (2,) and ds.num_bins is None
    assert ds.num_classes == toy2d.NUM_CLASSES[distribution]
    assert (ds.num_examples("train"), ds.num_examples("test")) == (N_TRAIN, N_TEST)
    train, test = ds.as_array("train"), ds.as_array("test")
    assert train["x"].dtype == np.float32 and train["x"].shape == (N_TRAIN, 2)
    assert np.all(np.abs(train["x"]) < 1.5)  # unit scale
    assert not np.array_equal(train["x"][:N_TEST], test["x"])
    if ds.num_classes is None:
        np.testing.assert_array_equal(train["label"], pipeline.UNLABELED)
    else:
        assert set(np.unique(train["label"])) == set(range(ds.num_classes))
    batch = next(iter(ds.loader("train", 64, seed=0, shard_count=1, shard_index=0)))
    assert batch["x"].shape == (64, 2) and batch["label"].shape == (64,)
    with pytest.raises(ValueError, match="continuous"):
        ds.loader("train", 64, seed=0, dequantize=True)


def test_generation_is_deterministic(tmp_path):
    """The same config prepared in two data dirs holds the same points in the same order."""
    a = toy2d.load("checkerboard", num_train=300, num_test=50, data_dir=str(tmp_path / "a"))
    b = toy2d.load("checkerboard", num_train=300, num_test=50, data_dir=str(tmp_path / "b"))
    for split in ("train", "test"):
        np.testing.assert_array_equal(a.as_array(split)["x"], b.as_array(split)["x"])


def test_eight_gaussians_components():
    """Points of label k: mean mu_k = r (cos, sin)(2 pi k / 8), per-axis std s."""
    x, label = draws("eight_gaussians")
    for k in range(8):
        xk = x[label == k]
        angle = 2 * np.pi * k / 8
        mean = toy2d.EIGHT_RADIUS * np.array([np.cos(angle), np.sin(angle)])
        se = toy2d.EIGHT_STD / np.sqrt(len(xk))
        np.testing.assert_allclose(xk.mean(0), mean, atol=5 * se)
        np.testing.assert_allclose(xk.std(0), toy2d.EIGHT_STD, rtol=5 / np.sqrt(2 * len(xk)))
    assert scipy.stats.chisquare(np.bincount(label, minlength=8)).pvalue > 1e-4


def test_eight_gaussians_log_prob_matches_scipy_mixture():
    x = np.random.default_rng(1).uniform(-1.2, 1.2, (256, 2)).astype(np.float32)
    dens = sum(
        scipy.stats.multivariate_normal(m, toy2d.EIGHT_STD**2 * np.eye(2)).pdf(x) / 8
        for m in toy2d.EIGHT_MEANS
    )
    logp = jax.jit(lambda x: toy2d.log_prob("eight_gaussians", x))(x)
    np.testing.assert_allclose(logp, np.log(dens), rtol=1e-5, atol=1e-5)


def test_eight_gaussians_mixture_is_the_same_density():
    """At t = 0 of the rectified-flow process (alpha = 1, sigma = 0), p_t is the data density."""
    x = np.random.default_rng(2).uniform(-1.2, 1.2, (64, 2)).astype(np.float32)
    mix, proc = toy2d.eight_gaussians_mixture(), processes.get("rectified_flow")
    logp_t0 = jax.jit(lambda x: mix.log_prob(x, jnp.zeros(()), proc))(x)
    np.testing.assert_allclose(logp_t0, toy2d.log_prob("eight_gaussians", x), rtol=1e-4, atol=1e-4)


def test_checkerboard_samples_live_on_their_cells_with_density_one_half():
    x, label = draws("checkerboard")
    cell = np.floor(2 * (x + 1)).astype(int)
    np.testing.assert_array_equal(cell, toy2d.CHECKER_CELLS[label])
    assert np.all(cell.sum(-1) % 2 == 0)
    assert scipy.stats.chisquare(np.bincount(label, minlength=8)).pvalue > 1e-4
    within = (x - (toy2d.CHECKER_CELLS[label] / 2 - 1)).ravel() / 0.5  # position in the cell
    assert scipy.stats.kstest(within, "uniform").pvalue > 1e-4
    logp = jax.jit(lambda x: toy2d.log_prob("checkerboard", x))(x)
    np.testing.assert_array_equal(logp, np.float32(np.log(0.5)))


def test_checkerboard_log_prob_integrates_to_one():
    """Midpoint rule on a 0.01 grid over [-1.5, 1.5]^2 is exact for the piecewise-constant p."""
    g = np.arange(-1.5, 1.5, 0.01) + 0.005
    xx = np.stack(np.meshgrid(g, g), -1).reshape(-1, 2).astype(np.float32)
    p = np.exp(np.asarray(jax.jit(lambda x: toy2d.log_prob("checkerboard", x))(xx)))
    np.testing.assert_allclose(p.sum() * 0.01**2, 1.0, rtol=1e-5)
    assert set(np.unique(p)) == {0.0, np.float32(0.5)}


def test_moons_lie_on_two_unit_half_circles():
    """Back in scikit-learn's coordinates y = 3/2 x + (1/2, 1/4): |y| = 1 (upper, sin >= 0) and
    |y - (1, 1/2)| = 1 (lower), up to the noise 3/2 * 0.05."""
    x, label = draws("moons")
    y = 1.5 * x.astype(np.float64) + np.array([0.5, 0.25])
    noise = 1.5 * toy2d.MOONS_NOISE
    for m, center in ((0, np.zeros(2)), (1, np.array([1.0, 0.5]))):
        r = np.linalg.norm(y[label == m] - center, axis=-1)
        # E|c + n| - 1 = noise^2 / 2 to leading order (the tangential part of the noise)
        assert abs(r.mean() - 1 - noise**2 / 2) < 5 * noise / np.sqrt(len(r))
        np.testing.assert_allclose(r.std(), noise, rtol=0.02)
    assert abs(label.mean() - 0.5) < 5 * 0.5 / np.sqrt(N)


def test_swiss_roll_radius_is_uniform_on_one_third_to_one():
    """|x| = t / (9 pi / 2) ~ U[1/3, 1] plus (nearly radial) noise of std 0.03."""
    x, label = draws("swiss_roll")
    assert label is None
    r = np.linalg.norm(x.astype(np.float64), axis=-1)
    sd = np.sqrt((2 / 3) ** 2 / 12 + toy2d.SWISS_NOISE**2)
    assert abs(r.mean() - 2 / 3) < 5 * sd / np.sqrt(N) + toy2d.SWISS_NOISE**2  # curvature bias
    np.testing.assert_allclose(r.std(), sd, rtol=0.02)


def test_errors_name_the_valid_choices(data_dir):
    with pytest.raises(ValueError, match="valid: moons, eight_gaussians, checkerboard"):
        toy2d.load("spiral", data_dir=data_dir)
    with pytest.raises(ValueError, match="positive"):
        toy2d.load("moons", num_train=0, data_dir=data_dir)
    with pytest.raises(ValueError, match="no closed-form density"):
        toy2d.log_prob("moons", np.zeros((1, 2)))
