# %% [markdown]
# # Guidance and editing
#
# `diffjax.guidance` turns a model into a guided `Denoiser` and `diffjax.editing` edits with any
# `Denoiser`, so both are first checked where the answer is known (exact Gaussian-mixture
# models, no training), then used on digits: classifier-free guidance of a class-conditional
# network trained briefly in the notebook.
#
# **Runtime on a CPU runtime: about 4 minutes** (800 training steps of the conditional model).

# %%
FAST = False

# %% [markdown]
# `FAST = True` is the shortened run the test suite executes (40 training steps).
#
# ## 1. Classifier guidance with the exact posterior
# Two Gaussian components; the exact posterior p(y | x_t) of the mixture is the classifier
# (`GaussianMixture.class_log_posterior`). Guiding the unconditional model towards class 1 with
# scale s = 1 gives exactly the conditional model (all samples in the component of class 1);
# s > 1 sharpens it beyond.

# %%
import tempfile

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from jax.tree_util import Partial
from tqdm.auto import tqdm

import diffjax.train
from configs import ddpm_digits_cond
from diffjax import editing, guidance, processes, samplers
from diffjax.analytic.gaussian import GaussianMixture
from diffjax.evaluation import plots

VP = processes.get("vp")
mixture = GaussianMixture(
    weights=jnp.array([0.5, 0.5]),
    means=jnp.array([[1.5, 0.0], [-1.5, 0.0]]),
    covs=jnp.array([[[0.3, 0.2], [0.2, 0.3]], [[0.3, -0.2], [-0.2, 0.3]]]),
)
posterior = Partial(lambda m, x, t: m.class_log_posterior(x, t, VP), mixture)
sampler = samplers.get("dpm_solver", order=2)
z = jax.random.normal(jax.random.key(0), (1000, 2))
labels = jnp.ones((1000,), jnp.int32)
fig, axes = plt.subplots(1, 3, figsize=(13, 4), sharex=True, sharey=True)
for ax, scale in zip(axes, [0.0, 1.0, 4.0], strict=True):
    guided = guidance.classifier(mixture.denoiser(VP), posterior, labels, scale=scale)
    x = jax.jit(lambda z, d=guided: sampler(jax.random.key(4), d, z, num_steps=20))(z)
    share = float(jnp.mean(x[:, 0] < 0))  # class 1 is the component at x < 0
    ax.scatter(*np.asarray(x).T, s=2)
    ax.set_title(f"classifier guidance s = {scale}: {share:.0%} in class 1", fontsize=10)
plt.show()

# %% [markdown]
# ## 2. Inpainting and inversion with an exact model
# x ~ N(0, C) in 2-D with correlation 0.8: knowing x[0], the exact conditional of x[1] is
# N(0.8 x[0], 0.36). RePaint fills x[1] given x[0]; plain replacement (one pass per level) misses
# the conditional, resampling each level brings it closer. DDIM inversion then decoding returns
# the input up to an error of first order in the number of steps.

# %%
gaussian = GaussianMixture.gaussian(jnp.zeros(2), jnp.array([[1.0, 0.8], [0.8, 1.0]]))
denoiser = gaussian.denoiser(VP)
x = gaussian.sample(jax.random.key(1), 500)
mask = np.array([1.0, 0.0], np.float32)  # 1: known
fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
line = np.linspace(-3, 3, 2)
for ax, resamplings in zip(axes[:2], [1, 10], strict=True):
    filled = jax.jit(
        lambda x, r=resamplings: editing.repaint(
            jax.random.key(2), denoiser, x, mask, 50, jump_length=1, resamplings=r
        )
    )(x)
    residual = np.asarray(filled[:, 1] - 0.8 * filled[:, 0])
    ax.scatter(*np.asarray(filled).T, s=3, label="RePaint")
    ax.plot(line, 0.8 * line, "k", label="exact conditional mean")
    ax.plot(line, 0.8 * line + 1.2, "k:", label="+- 2 std (0.6)")
    ax.plot(line, 0.8 * line - 1.2, "k:")
    ax.set_title(
        f"RePaint, {resamplings} pass(es): residual std {residual.std():.2f} (exact 0.60)",
        fontsize=10,
    )
    ax.set(xlabel="x[0], known", ylabel="x[1], filled")
axes[0].legend(fontsize=8)
STEPS = [5, 10, 20, 40, 80]
errors = []
for n in tqdm(STEPS, desc="DDIM inversion"):
    back = jax.jit(
        lambda x, n=n: editing.ddim_decode(denoiser, editing.ddim_invert(denoiser, x, n), n)
    )(x)
    errors.append(float(jnp.sqrt(jnp.mean(jnp.sum(jnp.square(back - x), -1)))))
axes[2].plot(STEPS, errors, "o-", label="invert, then decode")
axes[2].plot(STEPS, errors[0] * STEPS[0] / np.array(STEPS), "k:", label="slope -1 (order 1)")
axes[2].set(xscale="log", yscale="log", xlabel="DDIM steps each way", ylabel="RMS round trip")
axes[2].legend()
plt.show()

# %% [markdown]
# ## 3. Classifier-free guidance on digits
# `configs/ddpm_digits_cond.py` trains one network on digit classes with label dropout (10% of
# labels replaced by the null class), so it is also the unconditional model. Classifier-free
# guidance (1 + w) D(x | y) - w D(x | null) takes a scale per sample: one batch draws every
# class (columns) at w = 0, 1 and 3 (rows of 10).

# %%
config = diffjax.train.derive(
    ddpm_digits_cond.get_config(),
    **{
        "training.num_steps": 40 if FAST else 800,
        "optim.warmup_steps": 10 if FAST else 100,
        "training.sample_every": 0,
        "eval.at_end": False,  # the grids below are the result
    },
)
workdir = tempfile.mkdtemp(prefix="diffjax_guidance_")
diffjax.train.train(config, workdir)
exp, state = diffjax.train.restore_latest(config, workdir)
SCALES = [0.0, 1.0, 3.0]
classes = jnp.tile(jnp.arange(10), 2 * len(SCALES))  # two rows of ten per scale
scales = jnp.repeat(jnp.array(SCALES), 20)
params = state.ema_params
process = exp.recipe.process_for(params)
guided = guidance.classifier_free(
    exp.apply_fn, params["model"], exp.recipe.prediction, process, classes, 10, scales
)
x_init = process.prior_sample(jax.random.key(3), (len(classes), *exp.dataset.shape))
x = jax.jit(lambda d, x: samplers.get("ddim")(jax.random.key(4), d, x, num_steps=50))(
    guided, x_init
)
fig, axes = plt.subplots(1, len(SCALES), figsize=(15, 3.4))
for i, (ax, w) in enumerate(zip(axes, SCALES, strict=True)):
    ax.imshow(plots.image_grid(np.asarray(x[20 * i : 20 * (i + 1)]), 10)[..., 0], cmap="gray")
    ax.set_title(f"w = {w}: classes 0-9 by column")
    ax.axis("off")
plt.show()
