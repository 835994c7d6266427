"""Cold sampling: TACoS on Gaussian noise is DDIM step for step; exact restoration paths with a
perfect restorer; the paper's exactness of TACoS for D(x, t) = x + t e with any restorer; the
telescoped end point of a constant restoration error; the generative start; clear errors."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffjax import degradations, processes, samplers
from diffjax.degradations import Degradation, GaussianBlur, GaussianNoise, Mask, Pixelate
from diffjax.denoisers import Denoiser
from diffjax.processes import expand
from diffjax.samplers import cold as cold_sampler

SHAPE = (4, 8, 8, 3)
COSINE = processes.get("cosine")


def _image(seed: int) -> jax.Array:
    return jax.random.uniform(jax.random.PRNGKey(seed), SHAPE, minval=-1.0, maxval=1.0)


def _run(sampler, denoiser, x_init, ts):
    fn = jax.jit(lambda k, x: sampler(k, denoiser, x, timesteps=ts, return_trajectory=True))
    return fn(jax.random.PRNGKey(7), x_init)


def _smooth_x0(x, t):
    """An arbitrary smooth x0-model, standing in for a network."""
    return 0.8 * jnp.tanh(x) + 0.1 * expand(t, x)


def test_tacos_on_gaussian_noise_is_ddim_step_for_step():
    den = Denoiser(_smooth_x0, "x0", COSINE)
    ts = jnp.linspace(0.98, 0.0, 13)
    x_init = jax.random.normal(jax.random.PRNGKey(1), SHAPE)
    cold = samplers.get("cold", degradation=GaussianNoise(COSINE))
    _, cold_traj = _run(cold, den, x_init, ts)
    _, ddim_traj = _run(samplers.get("ddim", eta=0.0), den, x_init, ts)
    np.testing.assert_allclose(cold_traj, ddim_traj, atol=2e-5)


def _perfect(x0):
    return Denoiser(lambda x, t: jnp.broadcast_to(x0, x.shape), "x0", COSINE)


@pytest.mark.parametrize("d", [GaussianBlur(), Pixelate(), Mask()], ids=["blur", "pix", "mask"])
@pytest.mark.parametrize("rule", ["tacos", "naive"])
def test_perfect_restorer_follows_the_degradation_path(d, rule):
    x0, ts = _image(0), jnp.linspace(1.0, 0.0, 9)
    x, traj = _run(samplers.get("cold", degradation=d, rule=rule), _perfect(x0), d(x0, 1.0), ts)
    expected = jnp.stack([d(x0, t) for t in ts])
    np.testing.assert_allclose(traj, expected, atol=1e-5)
    np.testing.assert_allclose(x, x0, atol=1e-5)


def test_perfect_restorer_on_noise_tacos_keeps_the_noise_naive_does_not():
    """With x0 known, TACoS recovers the noise of x_t exactly: x_{t_i} = alpha x0 + sigma eps at
    every step; the naive sampler draws fresh noise, so its path leaves the forward path."""
    x0, eps, ts = (
        _image(0),
        jax.random.normal(jax.random.PRNGKey(2), SHAPE),
        jnp.linspace(0.9, 0, 7),
    )
    d = GaussianNoise(COSINE)
    expected = jnp.stack([d(x0, t, eps) for t in ts])
    _, tacos = _run(samplers.get("cold", degradation=d), _perfect(x0), d(x0, 0.9, eps), ts)
    np.testing.assert_allclose(tacos, expected, atol=1e-5)
    _, naive = _run(
        samplers.get("cold", degradation=d, rule="naive"), _perfect(x0), expected[0], ts
    )
    assert float(jnp.abs(naive[1:-1] - expected[1:-1]).max()) > 0.5
    np.testing.assert_allclose(naive[-1], x0, atol=1e-6)


@dataclasses.dataclass(frozen=True)
class _Shift(Degradation):
    """D(x, t) = x + t e: the paper's first-order model of a degradation (section 3.3)."""

    e: jax.Array

    def operator(self, x0, t):
        return x0 + expand(t, x0) * self.e


def test_tacos_is_exact_for_any_restorer_on_an_additive_degradation():
    """x_s = x_t - (R + t e) + (R + s e) = x_t - (t - s) e, so x_N = x_1 - e = x0 whatever R
    returns; the naive sampler ends at R's last output."""
    x0, e = _image(0), _image(1)
    d, ts = _Shift(e), jnp.linspace(1.0, 0.0, 11)
    wrong = Denoiser(_smooth_x0, "x0", COSINE)
    tacos, _ = _run(samplers.get("cold", degradation=d), wrong, d(x0, 1.0), ts)
    naive, _ = _run(samplers.get("cold", degradation=d, rule="naive"), wrong, d(x0, 1.0), ts)
    np.testing.assert_allclose(tacos, x0, atol=1e-5)
    assert float(jnp.abs(naive - x0).mean()) > 0.1


def test_constant_restoration_error_telescopes():
    """R = x0 + delta on the blur: TACoS ends at x0 + delta - A_1 delta (delta less its channel
    means), naive at x0 + delta."""
    x0, delta = _image(0), 0.1 * _image(1)
    d, ts = GaussianBlur(), jnp.linspace(1.0, 0.0, 9)
    biased = _perfect(x0 + delta)
    tacos, _ = _run(samplers.get("cold", degradation=d), biased, d(x0, 1.0), ts)
    naive, _ = _run(samplers.get("cold", degradation=d, rule="naive"), biased, d(x0, 1.0), ts)
    channel_mean = delta.mean(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(tacos, x0 + delta - channel_mean, atol=1e-4)
    np.testing.assert_allclose(naive, x0 + delta, atol=1e-5)


def test_generative_start():
    """from_noise: blur starts from a constant image per sample and channel with std
    channel_std; a perturbation adds that much pixel noise; the mask starts from it alone."""
    z = jax.random.normal(jax.random.PRNGKey(0), (2000, 8, 8, 3))
    blur = samplers.get("cold", degradation=GaussianBlur(), from_noise=True, channel_std=0.4)
    x1 = jax.jit(blur.start)(jax.random.PRNGKey(1), z)
    np.testing.assert_allclose(x1.std(axis=(1, 2)), 0.0, atol=1e-5)
    assert abs(float(x1[:, 0, 0].std()) - 0.4) < 0.02
    mask = samplers.get("cold", degradation=Mask(), from_noise=True, perturbation=0.1)
    x1 = jax.jit(mask.start)(jax.random.PRNGKey(1), z)
    assert abs(float(x1.std()) - 0.1) < 0.002 and abs(float(x1.mean())) < 0.002
    den = _perfect(jnp.zeros((2000, 8, 8, 3)))
    _, traj = _run(blur, den, z, jnp.linspace(1.0, 0.0, 3))
    np.testing.assert_allclose(traj[0].std(axis=(1, 2)), 0.0, atol=1e-5)


def test_nfe_default_grid_and_errors():
    cold = samplers.get("cold", degradation=Mask())
    assert cold.nfe(20) == 20 and cold.default_steps(COSINE) == 50
    assert "degradation" in samplers.option_names("cold")
    with pytest.raises(ValueError, match="unknown cold rule 'ddim'; valid rules: tacos, naive"):
        samplers.get("cold", degradation=Mask(), rule="ddim")
    with pytest.raises(ValueError, match="needs a diffjax.degradations.Degradation"):
        samplers.get("cold", degradation="blur")
    with pytest.raises(ValueError, match="perturbation=-1.0 >= 0"):
        samplers.get("cold", degradation=degradations.get("blur"), perturbation=-1.0)


def test_cold_without_its_degradation_is_a_clear_error():
    assert samplers.required_options("cold") == ("degradation",)
    assert samplers.required_options("ddim") == ()
    with pytest.raises(ValueError, match="needs the option 'degradation'"):
        samplers.get("cold")


def test_mixture_fit_recovers_a_known_mixture():
    """EM on 30000 draws of a known 3-component diagonal mixture in R^3 finds its weights,
    means and stds to within sampling error (each estimate's std error is below 0.003)."""
    weights = np.array([0.5, 0.3, 0.2])
    means = np.array([[-0.6, 0.2, 0.5], [0.4, -0.5, 0.0], [0.5, 0.6, -0.7]])
    stds = np.array([[0.05, 0.10, 0.08], [0.12, 0.06, 0.05], [0.07, 0.07, 0.15]])
    rng = np.random.default_rng(0)
    k = rng.choice(3, size=30000, p=weights)
    x = means[k] + stds[k] * rng.normal(size=(30000, 3))
    fit = cold_sampler.fit_colour_mixture(x, 3, jax.random.key(0))
    order = [int(np.argmin(np.sum((np.asarray(fit.means) - m) ** 2, axis=1))) for m in means]
    assert sorted(order) == [0, 1, 2]
    np.testing.assert_allclose(np.asarray(fit.weights)[order], weights, atol=0.015)
    np.testing.assert_allclose(np.asarray(fit.means)[order], means, atol=0.01)
    np.testing.assert_allclose(np.asarray(fit.stds)[order], stds, atol=0.01)
    # Its draws have the mixture's moments: E m = sum_k w_k mu_k, and the per-channel variance
    # sum_k w_k (s_k^2 + mu_k^2) - (E m)^2.
    draws = np.asarray(jax.jit(fit.sample, static_argnums=1)(jax.random.key(1), 40000))
    mean = weights @ means
    var = weights @ (stds**2 + means**2) - mean**2
    np.testing.assert_allclose(draws.mean(0), mean, atol=0.01)
    np.testing.assert_allclose(draws.var(0), var, rtol=0.03)


def test_mixture_start_from_fully_blurred_training_images():
    """colours="mixture": fit_to_data fits the per-channel means of D(x, 1) (for blur the images'
    own per-channel means); the start is that colour as a constant image plus the perturbation."""
    rng = np.random.default_rng(1)
    palette = np.array([[0.7, -0.2, 0.1], [-0.5, 0.5, -0.4]])  # two image colours
    colour = palette[rng.integers(2, size=600)] + 0.02 * rng.normal(size=(600, 3))
    train = (colour[:, None, None, :] + 0.3 * rng.normal(size=(600, 8, 8, 3))).astype(np.float32)
    blur = GaussianBlur()
    cold = samplers.get("cold", degradation=blur, from_noise=True, colours="mixture",
                        mixture_components=2, perturbation=0.05)  # fmt: skip
    assert cold.needs_data
    np.testing.assert_allclose(
        cold.fully_degraded_colours(train, batch_size=250), train.mean(axis=(1, 2)), atol=1e-5
    )
    fitted = cold.fit_to_data(train)
    assert not fitted.needs_data and fitted.fit_to_data(train) is fitted
    np.testing.assert_allclose(sorted(fitted.mixture.means), sorted(map(tuple, palette)), atol=0.01)
    z = jax.random.normal(jax.random.PRNGKey(0), (4000, 8, 8, 3))
    x1 = np.asarray(jax.jit(fitted.start)(jax.random.PRNGKey(2), z))
    assert x1.shape == z.shape
    # Per image: a constant colour plus N(0, 0.05^2) pixel noise (the within-image variance of
    # 64 pixels is 0.05^2 * 63 / 64 on average).
    within = np.mean(x1.var(axis=(1, 2)))
    assert abs(within - 0.05**2 * 63 / 64) < 0.02 * 0.05**2
    centre = x1.mean(axis=(1, 2))  # ~ the drawn colour (pixel noise averages to 0.05 / 8)
    nearest = np.min(np.linalg.norm(centre[:, None] - palette[None], axis=-1), axis=1)
    # Each component's std is that of a training image's mean: sqrt(0.02^2 + (0.3 / 8)^2) ~ 0.0425
    # per channel, so 99% of draws lie within 0.0425 sqrt(chi2_3(0.99) = 11.34) ~ 0.143 of a colour.
    np.testing.assert_allclose(fitted.mixture.stds, np.hypot(0.02, 0.3 / 8), atol=0.006)
    assert np.quantile(nearest, 0.99) < 0.16
    share = np.mean(np.linalg.norm(centre - palette[0], axis=-1) < 0.3)
    assert abs(share - 0.5) < 0.05
    with pytest.raises(ValueError, match="needs its mixture fitted"):
        cold.start(jax.random.PRNGKey(0), z)


def test_mixture_options_are_validated():
    with pytest.raises(ValueError, match="unknown cold colours 'gmm'; valid colours: gaussian"):
        samplers.get("cold", degradation=Mask(), colours="gmm")
    with pytest.raises(ValueError, match="mixture_components=0"):
        samplers.get("cold", degradation=Mask(), mixture_components=0)
    with pytest.raises(ValueError, match="sum to 1"):
        cold_sampler.ColourMixture((0.5, 0.4), ((0.0,), (1.0,)), ((1.0,), (1.0,)))
    with pytest.raises(ValueError, match="stds must be > 0"):
        cold_sampler.ColourMixture((1.0,), ((0.0,),), ((0.0,),))
    with pytest.raises(ValueError, match="num_components"):
        cold_sampler.fit_colour_mixture(np.zeros((3, 2)), 4, jax.random.key(0))
