# %% [markdown]
# # Forward processes and samplers, against exact answers
#
# Part 1 draws the forward processes x_t = alpha(t) x_0 + sigma(t) eps of `diffjax.processes`
# side by side. Part 2 runs every sampler of `diffjax.samplers` on data whose denoiser is known
# exactly (a Gaussian, `diffjax.analytic.gaussian.GaussianMixture`), so the only error left is
# the sampler's own: deterministic samplers against the exact probability-flow ODE map
# (`GaussianMixture.ode_solution`), stochastic ones against the exact law of their output. The
# slopes of the log-log plots are the samplers' convergence orders.
#
# **Runtime on a CPU runtime: about 3 minutes** (no training; most of it is compiling one
# sampling loop per step count).

# %%
FAST = False

# %% [markdown]
# `FAST = True` is the shortened run the test suite executes (fewer step counts and samples).
#
# ## 1. Forward processes
# Every process defines alpha(t) and sigma(t); the log-SNR log(alpha^2 / sigma^2) follows. Time
# runs from t = 0 (data) to t = 1 (noise). (`vdm_learned`, whose schedule is a network trained
# with the model, is left out.)

# %%
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from tqdm.auto import tqdm

from diffjax import processes, samplers
from diffjax.analytic.gaussian import GaussianMixture
from diffjax.evaluation.frechet import GaussianStats, frechet_distance, gaussian_stats

PROCESSES = [
    "ddpm_linear",
    "ddpm_cosine",
    "vp",
    "subvp",
    "ve",
    "edm",
    "cosine",
    "rectified_flow",
    "ot_path",
]
t = jnp.linspace(0.005, 0.995, 199)  # inside (0, 1): the log-SNR is infinite at an end
fig, axes = plt.subplots(1, 3, figsize=(16, 4.2))
for name in PROCESSES:
    process = processes.get(name)
    axes[0].plot(t, process.alpha(t), label=name)
    axes[1].plot(t, process.sigma(t), label=name)
    axes[2].plot(t, process.log_snr(t), label=name)
axes[0].set(xlabel="t", title="alpha(t)")
axes[1].set(xlabel="t", title="sigma(t)", yscale="log")
axes[2].set(xlabel="t", title="log-SNR(t) = log(alpha^2 / sigma^2)")
axes[2].legend(fontsize=8)
plt.show()

# %% [markdown]
# ## 2. Every sampler on exact Gaussian data
# x_0 ~ N(mu, C) in 2-D under the VP process: the Bayes-optimal denoiser E[x_0 | x_t] is exact
# (`GaussianMixture.denoiser`), and so is the probability-flow ODE map from x_1 to x_s for any s
# (`ode_solution`). Each sampler runs from the same x_1 down to the last time of its grid.

# %%
MEAN = jnp.array([1.0, -0.5])
COV = jnp.array([[0.3, 0.2], [0.2, 0.4]])
VP = processes.get("vp")
data = GaussianMixture.gaussian(MEAN, COV)
denoiser = data.denoiser(VP)
print("samplers:", ", ".join(samplers.names()))


def run(sampler, x_init, num_steps):
    """The sampler's output from x_init at t = 1 after num_steps steps (one jitted scan)."""
    key = jax.random.key(1)  # the noise of the stochastic samplers
    return jax.jit(lambda x: sampler(key, denoiser, x, num_steps=num_steps))(x_init)


# %% [markdown]
# ### Deterministic samplers: error against the exact ODE map
# The error is the root-mean-square distance to the exact x_s over 1000 starting points. Order
# p shows as a slope of -p against the number of network evaluations (NFE). `dopri5` is
# adaptive: its points are tolerances 1e-2 ... 1e-6, at the NFE it needed.

# %%
DETERMINISTIC = {
    "ddim (eta = 0)": ("ddim", {}),
    "euler": ("euler", {}),
    "heun": ("heun", {}),
    "rk4": ("rk4", {}),
    "dpm_solver, order 1": ("dpm_solver", {"order": 1}),
    "dpm_solver, order 2": ("dpm_solver", {"order": 2}),
    "dpm_solver, order 3": ("dpm_solver", {"order": 3}),
    "dpm_solver_pp, order 2": ("dpm_solver_pp", {"order": 2}),
    "edm_heun": ("edm_heun", {}),
}
STEPS = [4, 8] if FAST else [4, 8, 16, 32]
x1 = jax.random.normal(jax.random.key(0), (1000, 2))


def rms(x, y):
    return float(jnp.sqrt(jnp.mean(jnp.sum(jnp.square(x - y), axis=-1))))


curves = {}
for label, (name, options) in tqdm(DETERMINISTIC.items(), desc="deterministic samplers"):
    sampler = samplers.get(name, **options)
    for n in STEPS:
        ts = sampler.timesteps(VP, n)
        exact = data.ode_solution(x1, ts[0], ts[-1], VP)
        curves.setdefault(label, []).append((sampler.nfe(n), rms(run(sampler, x1, n), exact)))
for tol in [1e-2, 1e-3] if FAST else [1e-2, 1e-3, 1e-4, 1e-5, 1e-6]:
    sampler = samplers.get("dopri5", rtol=tol, atol=tol)
    x, stats = jax.jit(lambda x, s=sampler: s(None, denoiser, x, return_stats=True))(x1)
    exact = data.ode_solution(x1, 1.0, sampler.timesteps(VP)[-1], VP)
    curves.setdefault("dopri5 (adaptive)", []).append((int(stats["nfe"]), rms(x, exact)))

fig, ax = plt.subplots(figsize=(8, 5.5))
for label, points in curves.items():
    nfe, err = np.array(points, dtype=float).T
    # The convergence order: the slope over the three largest NFE (before float32 round-off);
    # dopri5 chooses its steps from the tolerance, so its slope is no order.
    order = -np.polyfit(np.log(nfe[-3:]), np.log(np.maximum(err[-3:], 1e-30)), 1)[0]
    ax.plot(nfe, err, "o-", label=label if "adaptive" in label else f"{label}: order {order:.1f}")
ax.set(xscale="log", yscale="log", xlabel="NFE", ylabel="RMS error vs exact ODE map")
ax.set_title("deterministic samplers, exact Gaussian denoiser, VP")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# ### Stochastic samplers: error of the output's law
# A stochastic sampler follows no single path, so it is scored on its law: the output of
# n samples is fitted with a Gaussian (mean and covariance) and compared, by the Frechet
# distance (the squared 2-Wasserstein distance between Gaussians), with the exact law at the
# last time s of the grid, N(alpha_s mu, alpha_s^2 C + sigma_s^2 I). Sampling noise puts a floor
# under it: the same distance for n exact draws (dotted line). DDIM with eta = 1 takes DDPM's
# ancestral step, so those two curves coincide.

# %%
STOCHASTIC = {
    "ddpm": ("ddpm", {}),
    "ddim (eta = 1)": ("ddim", {"eta": 1.0}),
    "euler_maruyama": ("euler_maruyama", {}),
    "predictor_corrector": ("predictor_corrector", {}),
    "annealed_langevin": ("annealed_langevin", {}),
}
NUM = 2000 if FAST else 20000
SDE_STEPS = [8, 16] if FAST else [8, 32, 128, 512]
LEVELS = [2, 4] if FAST else [2, 8, 32]  # annealed Langevin: noise levels x 100 steps each
z = jax.random.normal(jax.random.key(2), (NUM, 2))


def law_at(s):
    """The exact law of x_s, N(alpha_s mu, alpha_s^2 C + sigma_s^2 I)."""
    a, sigma = VP.alpha(s), VP.sigma(s)
    return GaussianStats(a * MEAN, a**2 * COV + sigma**2 * jnp.eye(2))


laws = {}
for label, (name, options) in tqdm(STOCHASTIC.items(), desc="stochastic samplers"):
    sampler = samplers.get(name, **options)
    for n in LEVELS if name == "annealed_langevin" else SDE_STEPS:
        x = run(sampler, z, n)
        distance = frechet_distance(gaussian_stats(x), law_at(sampler.timesteps(VP, n)[-1]))
        laws.setdefault(label, []).append((sampler.nfe(n), float(distance)))
floor = float(frechet_distance(gaussian_stats(data.sample(jax.random.key(3), NUM)), law_at(0.0)))

fig, ax = plt.subplots(figsize=(8, 5))
for label, points in laws.items():
    nfe, distance = np.array(points, dtype=float).T
    ax.plot(nfe, distance, "o-", label=label)
ax.axhline(floor, color="k", ls=":", label=f"{NUM} exact draws (sampling noise)")
ax.set(xscale="log", yscale="log", xlabel="NFE", ylabel="Frechet distance to the exact law")
ax.set_title("stochastic samplers, exact Gaussian denoiser, VP")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# The two remaining samplers, `consistency` and `meanflow`, do not integrate a denoiser: they
# evaluate a network trained to jump along the ODE (a consistency function, an average
# velocity). `flows_and_few_step.ipynb` trains both and samples them in 1 and 2 steps.
