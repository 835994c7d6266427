"""Guidance against the exact class-conditional Gaussian mixture: classifier-free guidance is the
affine (1 + w) cond - w uncond in every kind from one network call, and classifier guidance with
the exact posterior p(y | x_t) is the exact conditional model (Bayes)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.tree_util import Partial

from diffjax import denoisers, guidance, likelihood, predictions, processes, samplers
from diffjax.analytic.gaussian import GaussianMixture

VP = processes.get("vp")
MIX = GaussianMixture(
    weights=jnp.array([0.2, 0.5, 0.3]),
    means=jnp.array([[2.0, 0.0], [-1.0, 1.5], [0.0, -2.0]]),
    covs=jnp.array([0.3 * jnp.eye(2), [[0.2, 0.1], [0.1, 0.3]], 0.1 * jnp.eye(2)]),
)
K = 3  # classes; label K is the null class
CALLS = []


def exact_apply(mix, x, t, cond=None, key=None):
    """The exact x0 of class cond[b] (the mixture's component), or of the mixture for the null
    label K: a conditional network trained with label dropout, in closed form."""
    CALLS.append(x.shape[0])
    time = t if t.ndim == 1 else t[:, 0]
    per_class = [mix.component(k).x0_mean(x, time, VP) for k in range(K)]
    options = jnp.stack([*per_class, mix.x0_mean(x, time, VP)])  # [K + 1, B, D]
    return options[cond, jnp.arange(x.shape[0])]


def points(key, n=6):
    return 1.5 * jax.random.normal(key, (n, 2))


LABELS = jnp.array([0, 1, 2, 0, 1, 2])


def conditional(labels):
    return denoisers.from_network(exact_apply, MIX, "x0", VP, labels)


@pytest.mark.parametrize("kind", predictions.KINDS)
def test_cfg_is_affine_in_every_kind(kind):
    x, t = points(jax.random.key(0)), jnp.full((6,), 0.4)
    w = jnp.array([0.0, 0.5, 1.0, 2.0, 3.0, 7.5])
    guided = guidance.classifier_free(exact_apply, MIX, "x0", VP, LABELS, K, w)
    got = jax.jit(lambda d: d.predict(x, t, kind))(guided)
    cond = conditional(LABELS).predict(x, t, kind)
    uncond = conditional(jnp.full_like(LABELS, K)).predict(x, t, kind)
    np.testing.assert_allclose(got, (1 + w)[:, None] * cond - w[:, None] * uncond, rtol=2e-4,
                               atol=2e-4)  # fmt: skip
    np.testing.assert_allclose(got[0], cond[0], rtol=1e-6, atol=1e-6)  # w = 0: conditional


def test_cfg_is_one_network_call_on_the_doubled_batch_and_respects_the_interval():
    x = points(jax.random.key(1))
    t = jnp.array([0.1, 0.3, 0.5, 0.7, 0.9, 1.0])
    guided = guidance.classifier_free(exact_apply, MIX, "x0", VP, LABELS, K, 3.0, (0.2, 0.8))
    CALLS.clear()
    out = jax.jit(lambda d: d.x0(x, t))(guided)
    assert CALLS == [12]
    cond = conditional(LABELS).x0(x, t)
    outside = np.array([True, False, False, False, True, True])
    np.testing.assert_allclose(out[outside], cond[outside], rtol=1e-6)
    assert not np.allclose(out[~outside], cond[~outside])


def test_classifier_guidance_with_the_exact_posterior_is_the_exact_conditional_model():
    """score(x | y) = score(x) + grad log p(y | x_t): at scale 1 the guided unconditional model is
    the exact model of class y, at every t."""
    x = points(jax.random.key(2))
    classify = Partial(lambda mix, y, t: mix.class_log_posterior(y, t, VP), MIX)
    guided = guidance.classifier(MIX.denoiser(VP), classify, LABELS, 1.0)
    for t in (0.05, 0.3, 0.7, 1.0):
        tb = jnp.full((6,), t)
        got = jax.jit(lambda d: d.eps(x, tb))(guided)  # noqa: B023
        want = conditional(LABELS).eps(x, tb)
        np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3)


def test_classifier_guided_sampling_draws_the_requested_component():
    n = 4000
    labels = jnp.full((n,), 2)
    classify = Partial(lambda mix, y, t: mix.class_log_posterior(y, t, VP), MIX)
    guided = guidance.classifier(MIX.denoiser(VP), classify, labels, 1.0)
    sampler = samplers.get("dpm_solver_pp", order=2)
    x1 = jax.random.normal(jax.random.key(3), (n, 2))
    x = np.asarray(jax.jit(lambda d: sampler(jax.random.key(4), d, x1, num_steps=40))(guided))
    se = np.sqrt(0.1 / n)
    np.testing.assert_allclose(x.mean(0), MIX.means[2], atol=5 * se + 0.01)
    np.testing.assert_allclose(np.cov(x.T), MIX.covs[2], atol=0.02)


# meanflow's times and cold's degradation belong to their own methods (tested there).
@pytest.mark.parametrize("name", [n for n in samplers.names() if n not in ("meanflow", "cold")])
def test_cfg_at_scale_zero_is_the_conditional_sampler(name):
    options = {"steps_per_level": 2} if name == "annealed_langevin" else {}
    sampler = samplers.get(name, **options)
    x1 = jax.random.normal(jax.random.key(5), (6, 2))
    run = jax.jit(lambda d: sampler(jax.random.key(6), d, x1, num_steps=8))
    guided = guidance.classifier_free(exact_apply, MIX, "x0", VP, LABELS, K, 0.0)
    np.testing.assert_allclose(run(guided), run(conditional(LABELS)), rtol=1e-4, atol=1e-4)
    assert np.all(np.isfinite(run(guidance.classifier_free(exact_apply, MIX, "x0", VP, LABELS, K,
                                                           2.0))))  # fmt: skip


def test_cfg_with_meanflow_times_and_the_likelihood():
    """The guided model takes MeanFlow's times [B, 2], and the PF-ODE likelihood of the scale-0
    guided model is the conditional one."""
    from diffjax.preconditioning import AverageVelocity

    rf = processes.get("rectified_flow")

    def velocity_apply(mix, x, t, cond=None, key=None):  # u(z, t, t): the exact velocity
        x0 = exact_apply(mix, x, t, cond)
        return predictions.convert(x0, "x0", "velocity", x, t[:, 0], rf)

    guided = guidance.classifier_free(velocity_apply, MIX, AverageVelocity(), rf, LABELS, K, 0.0)
    cond = denoisers.from_network(velocity_apply, MIX, AverageVelocity(), rf, LABELS)
    x1 = jax.random.normal(jax.random.key(7), (6, 2))
    sampler = samplers.get("meanflow")
    run = jax.jit(lambda d: sampler(jax.random.key(0), d, x1, num_steps=4))
    np.testing.assert_allclose(run(guided), run(cond), rtol=1e-5, atol=1e-5)
    vp_guided = guidance.classifier_free(exact_apply, MIX, "x0", VP, LABELS, K, 0.0)
    x = points(jax.random.key(8))
    nll = jax.jit(lambda d: likelihood.nll(None, d, x, trace="exact")["nll"])
    np.testing.assert_allclose(nll(vp_guided), nll(conditional(LABELS)), rtol=1e-4)


def test_new_scales_and_params_reuse_the_compiled_sampler():
    sampler = samplers.get("ddim")
    traces = []

    def run(d, x):
        traces.append(1)
        return sampler(jax.random.key(0), d, x, num_steps=5)

    jitted = jax.jit(run)
    x1 = jax.random.normal(jax.random.key(9), (6, 2))
    outs = [
        jitted(guidance.classifier_free(exact_apply, MIX, "x0", VP, LABELS, K, w), x1)
        for w in (0.5, 2.0)
    ]
    assert len(traces) == 1 and not np.allclose(outs[0], outs[1])


@pytest.mark.parametrize(
    "build, field",
    [
        (lambda: guidance.classifier_free(exact_apply, MIX, "x0", VP, LABELS, K, -1.0), "scale"),
        (
            lambda: guidance.classifier_free(
                exact_apply, MIX, "x0", VP, LABELS, K, 1.0, (0.5, 0.2)
            ),
            "t_interval",
        ),  # fmt: skip
        (
            lambda: guidance.classifier_free(exact_apply, MIX, "x0", VP, LABELS * 1.0, K, 1.0),
            "labels",
        ),  # fmt: skip
        (lambda: guidance.classifier(MIX.denoiser(VP), lambda x, t: x, LABELS, -2.0), "scale"),
    ],
)
def test_bad_input_names_the_argument(build, field):
    with pytest.raises(ValueError, match=field):
        build()
