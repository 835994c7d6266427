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
