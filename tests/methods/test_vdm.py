"""The VDM recipe: schedule params beside the model, bound process, VLB in bits/dim trains."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffjax import methods, processes
from tests.methods import digits_run


def test_schedule_params_and_binding():
    proc = processes.get("vdm_learned", hidden=8)
    recipe = methods.get("vdm")(process=proc)
    aux = recipe.init_aux(jax.random.key(0))
    assert set(aux) == {"schedule"}
    bound = recipe.process_for({"model": {}, **aux})
    np.testing.assert_allclose(bound.log_snr(jnp.array([0.0, 1.0])), [13.3, -5.0], rtol=1e-6)


def test_loss_gradients_reach_model_and_schedule():
    proc = processes.get("vdm_learned", hidden=8)
    recipe = methods.get("vdm")(process=proc, num_bins=17)
    params = {"model": {"w": jnp.float32(0.5)}, **recipe.init_aux(jax.random.key(0))}

    def apply_fn(p, z, t, cond=None, key=None):
        return p["w"] * z

    x = jnp.linspace(-1, 1, 17)[jax.random.randint(jax.random.key(1), (32, 4, 4, 1), 0, 17)]
    loss_fn = recipe.make_loss(apply_fn)
    (value, metrics), grads = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))(
        params, {"x": x}, jax.random.key(2)
    )
    parts = metrics["diffusion_bpd"] + metrics["prior_bpd"] + metrics["recon_bpd"]
    np.testing.assert_allclose(value, parts, rtol=1e-5)
    for leaf in jax.tree.leaves(grads):
        assert np.all(np.isfinite(leaf))
    assert float(jnp.abs(grads["model"]["w"])) > 0
    assert float(jnp.abs(grads["schedule"]["gamma_0"])) > 0
    assert float(jnp.abs(grads["schedule"]["_PositiveDense_1"]["kernel"]).sum()) > 0


def test_validation():
    with pytest.raises(ValueError, match="discrete"):
        methods.get("vdm")(process=processes.get("ddpm_linear"))
    with pytest.raises(ValueError):
        methods.get("vdm")(process=processes.get("vdm_learned"), time_distribution="bogus")


@pytest.mark.slow
def test_digits_config_trains_through_main(tmp_path):
    values = digits_run.train_losses("vdm_digits", tmp_path)
    assert np.isfinite(values).all() and values[-1] < values[0]


def _continuous_vlb(process, prediction, x0, nodes=64):
    """L_inf = 1/2 int_0^1 gamma'(t) E_eps ||eps - eps_hat(z_t)||^2 dt of a linear eps-hat,
    in closed form over eps (eps_hat = c z with c read off the model at z = 1: E||eps - c z||^2 =
    (1 - c sigma)^2 + c^2 alpha^2 x0^2 per dimension) and by Gauss-Legendre quadrature over t."""
    from diffjax import denoisers

    def apply_fn(params, x, t_in, cond=None, key=None):  # eps_hat = (0.3 + 0.5 sin(3 t_in)) z
        return (0.3 + 0.5 * jnp.sin(3.0 * t_in))[:, None] * x

    model = denoisers.from_network(apply_fn, {}, prediction, process)
    u, w = np.polynomial.legendre.leggauss(nodes)
    t = jnp.asarray(0.5 * (u + 1.0), jnp.float32)
    c = model.eps(jnp.ones((nodes, 1)), t)[:, 0]
    gamma_prime = -jax.vmap(jax.grad(process.log_snr))(t)
    alpha, sigma = process.alpha(t), process.sigma(t)
    mse = jnp.sum(
        jnp.broadcast_to(jnp.square(1.0 - c * sigma)[:, None], (nodes, x0.shape[0]))
        + jnp.square(c * alpha)[:, None] * jnp.square(x0)[None],
        -1,
    )
    return float(0.5 * 0.5 * jnp.sum(jnp.asarray(w) * gamma_prime * mse))


def test_continuous_vlb_depends_only_on_the_schedule_ends_when_conditioned_on_gamma():
    """Seed 001, "EQUIVALENCE OF DIFFUSION MODELS": with the network a function of the SNR (VDM's
    LogSNRConditioning), two schedules with the same ends and different shapes give the same
    continuous VLB; with the network a function of t they do not."""
    proc = processes.get("vdm_learned", hidden=8)
    p1 = proc.init(jax.random.key(0))
    p2 = jax.tree.map(lambda a: a, p1)
    dense = "_PositiveDense_1"
    p2[dense] = {"kernel": 4.0 * p1[dense]["kernel"] + 1.0, "bias": p1[dense]["bias"] - 2.0}
    a, b = proc.bind(p1), proc.bind(p2)
    t = jnp.linspace(0.0, 1.0, 5)
    np.testing.assert_allclose(
        a.log_snr(t[jnp.array([0, 4])]), b.log_snr(t[jnp.array([0, 4])]), rtol=1e-5
    )
    assert not np.allclose(a.log_snr(t[1:-1]), b.log_snr(t[1:-1]), rtol=1e-2)  # other shapes
    x0 = jnp.array([0.7, -0.2, 0.4])
    recipe = methods.get("vdm")(process=proc)
    snr_model = [_continuous_vlb(p, recipe.prediction, x0) for p in (a, b)]
    np.testing.assert_allclose(snr_model[0], snr_model[1], rtol=1e-3)
    t_model = [_continuous_vlb(p, "eps", x0) for p in (a, b)]
    # The t-conditioned model's VLB moves with the shape, far beyond the quadrature error that
    # separates the two SNR-conditioned values.
    assert abs(t_model[0] - t_model[1]) > 5e-3 * abs(t_model[0])
    assert abs(t_model[0] - t_model[1]) > 20 * abs(snr_model[0] - snr_model[1])


def test_network_sees_normalised_gamma_and_no_decay_on_the_ends():
    proc = processes.get("vdm_learned", hidden=8)
    recipe = methods.get("vdm")(process=proc)
    params = {"model": {}, "schedule": proc.init(jax.random.key(0))}
    seen = []

    def apply_fn(p, x, t_in, cond=None, key=None):
        seen.append(t_in)
        return jnp.zeros_like(x)

    t = jnp.array([0.0, 0.5, 1.0])
    recipe.denoiser(apply_fn, params).eps(jnp.zeros((3, 2)), t)
    gamma = -recipe.process_for(params).log_snr(t)
    np.testing.assert_allclose(seen[0], (gamma + 13.3) / 18.3, rtol=1e-5, atol=1e-6)
    mask = recipe.weight_decay_mask(params)
    assert not mask["schedule"]["gamma_0"] and not mask["schedule"]["log_gamma_span"]
    assert mask["schedule"]["_PositiveDense_1"]["kernel"]


def test_gamma_min_for_keeps_sigma_0_per_level_spacing():
    from diffjax.methods.vdm import gamma_min_for

    assert gamma_min_for(256) == pytest.approx(-13.3)  # the paper's CIFAR-10 value

    def sigma_0_in_spacings(gamma_min, num_bins):
        sigma_0 = float(jnp.sqrt(jax.nn.sigmoid(gamma_min)))
        alpha_0 = float(jnp.sqrt(jax.nn.sigmoid(-gamma_min)))
        return sigma_0 / alpha_0 / (2.0 / (num_bins - 1))

    paper = sigma_0_in_spacings(-13.3, 256)
    assert paper == pytest.approx(0.165, abs=1e-3)
    for num_bins in (2, 17, 1024):
        assert sigma_0_in_spacings(gamma_min_for(num_bins), num_bins) == pytest.approx(paper)
    with pytest.raises(ValueError, match="num_bins >= 2"):
        gamma_min_for(1)
