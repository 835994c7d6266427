"""Cold-diffusion sampling: restore, then degrade again, down a grid t_0 = 1 > ... > t_N = 0.

Seed 000, "Cold Diffusion" (Bansal et al. 2022, Algorithms 1 and 2). With the restoration
network R(x_t, t) ~ x0 (the Denoiser's x0 prediction) and a degradation
D(x0, t, eps) = A_t x0 + n(t) eps (`diffjax.degradations`), one step t -> s < t is

  naive (Algorithm 1):  x_s = D(R(x_t), s, z),                        z ~ N(0, I) fresh,
  TACoS (Algorithm 2):  x_s = x_t - D(R(x_t), t, eps_hat) + D(R(x_t), s, eps_hat),

where eps_hat = (x_t - A_t x0_hat) / n(t) is the noise that x_t implies given x0_hat = R(x_t)
(0 where n(t) = 0, the deterministic degradations). For the Gaussian noise degradation
(A_t = alpha_t, n = sigma_t) the TACoS step is alpha_s x0_hat + sigma_s eps_hat: deterministic
DDIM (eta = 0), step for step. For a linear deterministic degradation the TACoS steps telescope:
with any restorer, x_N = x_0 + sum_i (A_{t_{i+1}} - A_{t_i}) x0_hat_i, so a restorer with a
constant error, x0_hat = x0 + delta, ends at x0 + delta - A_1 delta, the naive sampler at
x0 + delta (the paper's argument that TACoS tolerates restoration errors); a perfect restorer
makes both follow the degradation path x_{t_i} = D(x0, t_i) exactly.

Generation (`from_noise=True`): `x_init` is then N(0, I) noise z [B, H, W, C] and the start is
  x_1 = D(m, 1, z) + perturbation * z',   m [B, 1, 1, C] ~ N(0, channel_std^2 I), z' ~ N(0, I),
a constant image of random colour m degraded at t = 1: for blur and pixelation A_1 maps an
image onto its per-channel mean, so this is a one-component version of the paper's Gaussian
mixture over fully degraded images (fit `channel_std` to the data's per-channel means: 0.32
for shapes32, configs/cold_blur_shapes32.py); for the noise degradation x_1 = alpha_1 m +
sigma_1 z is the Gaussian prior; for the mask (A_1 = 0) only the perturbation breaks the
symmetry between samples.

The paper's start for blur (section 4, "generation"; seed 000, "Cold Diffusion") draws the fully
degraded image from a Gaussian mixture fitted to the fully degraded training images: `colours=
"mixture"` draws m from `ColourMixture`, a K-component diagonal Gaussian mixture fitted by EM
(`fit_colour_mixture`, k-means++ start, float64 numpy) to the per-channel means of D(x0, 1) over
the training split (for blur and pixelation D(x0, 1) is exactly that constant image, so the
mixture is the law of the fully degraded images). The fit needs data, which a sampler does not
have: `Cold.fit_to_data(train_x)` returns the sampler with its mixture, and the Experiment build
(the edge where a config meets the dataset) calls it for every sampler that says `needs_data`.
It is refitted at each build rather than cached in the workdir: it is deterministic (fixed key,
float64 EM), takes a few seconds on the 20000 shapes32 images, and so `mode=sample`, a resumed
run and an override of `--config.data.name` can never read a mixture of other data.
"""

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from diffjax.degradations import Degradation
from diffjax.denoisers import Denoiser
from diffjax.processes import expand
from diffjax.samplers.base import State, StepSampler

RULES = ("tacos", "naive")
COLOURS = ("gaussian", "mixture")  # law of the generative start's colour m


@dataclasses.dataclass(frozen=True)
class ColourMixture:
    """A diagonal Gaussian mixture over colours m in R^C: sum_k w_k N(mu_k, diag(s_k^2)).

    Attributes (tuples, so the sampler stays hashable):
      weights: [K] component weights, >= 0, summing to 1.
      means: [K][C] component means.
      stds: [K][C] component standard deviations, > 0.
    """

    weights: tuple[float, ...]
    means: tuple[tuple[float, ...], ...]
    stds: tuple[tuple[float, ...], ...]

    def __post_init__(self):
        w, mu, sd = np.asarray(self.weights), np.asarray(self.means), np.asarray(self.stds)
        if w.ndim != 1 or mu.ndim != 2 or mu.shape[0] != w.shape[0] or sd.shape != mu.shape:
            raise ValueError(
                f"need weights [K], means [K, C], stds [K, C]; got {w.shape}, {mu.shape}, "
                f"{sd.shape}"
            )
        if w.min() < 0 or abs(w.sum() - 1.0) > 1e-6:
            raise ValueError(f"weights={self.weights} must be >= 0 and sum to 1")
        if not sd.min() > 0:
            raise ValueError(f"stds must be > 0, got min {sd.min()}")

    def sample(self, key: Array, n: int) -> Array:
        """n colours [n, C]: a component k ~ w, then mu_k + s_k * N(0, I)."""
        component_key, normal_key = jax.random.split(key)
        k = jax.random.categorical(component_key, jnp.log(jnp.asarray(self.weights)), shape=(n,))
        means, stds = jnp.asarray(self.means, jnp.float32), jnp.asarray(self.stds, jnp.float32)
        return means[k] + stds[k] * jax.random.normal(normal_key, (n, means.shape[1]))


def fit_colour_mixture(
    x: np.ndarray, num_components: int, key: Array, iterations: int = 200, min_std: float = 1e-3
) -> ColourMixture:
    """Maximum-likelihood diagonal Gaussian mixture of the points x [N, C] by EM.

    Started by k-means++ (first centre uniform, each next one drawn with probability
    proportional to the squared distance to the nearest centre, from `key`), all stds the data's,
    weights uniform; then `iterations` EM steps in float64. Stds are floored at `min_std`, so
    points that coincide (e.g. the all-zero images of a fully applied mask) give a narrow
    component rather than a singular one.

    Raises:
      ValueError: for x not [N, C] with N >= num_components >= 1.
    """
    x = np.asarray(x, np.float64)
    if x.ndim != 2 or not 1 <= num_components <= len(x):
        raise ValueError(f"need points [N, C] with N >= {num_components=} >= 1, got {x.shape}")
    rng = np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel().tolist())
    centres = [x[rng.integers(len(x))]]
    for _ in range(num_components - 1):
        d2 = np.min([np.sum((x - c) ** 2, axis=1) for c in centres], axis=0)
        p = d2 / d2.sum() if d2.sum() > 0 else np.full(len(x), 1.0 / len(x))
        centres.append(x[rng.choice(len(x), p=p)])
    means = np.stack(centres)
    var = np.tile(np.maximum(x.var(axis=0), min_std**2), (num_components, 1))
    weights = np.full(num_components, 1.0 / num_components)
    for _ in range(iterations):
        # E step: responsibilities r [N, K] from the log densities, normalised stably.
        log_p = np.log(weights) - 0.5 * np.sum(
            np.log(2 * np.pi * var)[None] + (x[:, None] - means[None]) ** 2 / var[None], axis=-1
        )
        log_p -= log_p.max(axis=1, keepdims=True)
        r = np.exp(log_p)
        r /= r.sum(axis=1, keepdims=True)
        # M step.
        nk = r.sum(axis=0) + 1e-12
        weights = nk / nk.sum()
        means = (r.T @ x) / nk[:, None]
        var = np.maximum((r.T @ x**2) / nk[:, None] - means**2, min_std**2)
    return ColourMixture(
        weights=tuple(float(w) for w in weights / weights.sum()),
        means=tuple(tuple(float(v) for v in row) for row in means),
        stds=tuple(tuple(float(v) for v in row) for row in np.sqrt(var)),
    )


@dataclasses.dataclass(frozen=True)
class Cold(StepSampler):
    """The cold-diffusion sampler (module docstring) on a uniform grid from 1 to 0.

    Attributes:
      degradation: the D the restorer was trained to invert.
      rule: "tacos" (Algorithm 2, the default) or "naive" (Algorithm 1).
      from_noise: x_init is N(0, I) noise turned into a fully degraded start (generation);
        False: x_init is x at the grid's first time t_0 (e.g. D(x0, t_0) of real images to
        restore, or a draw of a mixture fitted to fully degraded images).
      channel_std: std of the start's random colour m (from_noise, colours="gaussian"); the
        default is the RMS per-channel mean of shapes32 images (fit it to the data).
      perturbation: std of the noise added to the start (from_noise only).
      colours: law of the start's colour m (from_noise only): "gaussian", N(0, channel_std^2 I)
        per channel; "mixture", the paper's Gaussian mixture fitted to the per-channel means of
        the fully degraded training images (`fit_to_data`, module docstring).
      mixture_components: K of that mixture.
      mixture: the fitted mixture; set by `fit_to_data` (the Experiment build), not by hand.
    """

    degradation: Degradation
    rule: str = "tacos"
    from_noise: bool = False
    channel_std: float = 0.32
    perturbation: float = 0.0
    colours: str = "gaussian"
    mixture_components: int = 10
    mixture: ColourMixture | None = None
    default_num_steps: ClassVar[int] = 50

    def __post_init__(self):
        if not isinstance(self.degradation, Degradation):
            raise ValueError(
                f"cold needs a diffjax.degradations.Degradation, got {self.degradation!r}"
            )
        if self.rule not in RULES:
            raise ValueError(f"unknown cold rule {self.rule!r}; valid rules: {', '.join(RULES)}")
        if not (self.channel_std >= 0.0 and self.perturbation >= 0.0):
            raise ValueError(f"need channel_std={self.channel_std} >= 0 and "
                             f"perturbation={self.perturbation} >= 0")  # fmt: skip
        if self.colours not in COLOURS:
            raise ValueError(
                f"unknown cold colours {self.colours!r}; valid colours: {', '.join(COLOURS)}"
            )
        if self.mixture_components < 1:
            raise ValueError(f"mixture_components={self.mixture_components} must be >= 1")
        if self.mixture is not None and not isinstance(self.mixture, ColourMixture):
            raise ValueError(f"mixture must be a ColourMixture, got {self.mixture!r}")

    @property
    def needs_data(self) -> bool:
        """True if the start's mixture still has to be fitted (`fit_to_data`)."""
        return self.from_noise and self.colours == "mixture" and self.mixture is None

    def fully_degraded_colours(self, x: Array, batch_size: int = 1000) -> np.ndarray:
        """Per-channel means [N, C] of D(x, 1) (no noise) of images x [N, H, W, C]."""
        degrade = jax.jit(lambda x: jnp.mean(self.degradation(x, 1.0), axis=(1, 2)))
        x = np.asarray(x, np.float32)
        return np.concatenate(
            [np.asarray(degrade(x[i : i + batch_size])) for i in range(0, len(x), batch_size)]
        )

    def fit_to_data(self, train_x: Array) -> "Cold":
        """This sampler with `mixture` fitted (fixed key 0) to the per-channel means of the
        fully degraded `train_x` [N, H, W, C]; itself if its start needs no fit."""
        if not self.needs_data:
            return self
        colours = self.fully_degraded_colours(train_x)
        mixture = fit_colour_mixture(colours, self.mixture_components, jax.random.key(0))
        return dataclasses.replace(self, mixture=mixture)

    def nfe(self, num_steps: int) -> int:
        return num_steps

    def start(self, key: Array, z: Array) -> Array:
        """The fully degraded start x_1 [B, H, W, C] from noise z [B, H, W, C]."""
        colour_key, perturb_key = jax.random.split(key)
        if self.colours == "mixture":
            if self.mixture is None:
                raise ValueError(
                    "cold colours='mixture' needs its mixture fitted to the training images: "
                    "Cold.fit_to_data(train_x) (the Experiment build does it)"
                )
            m = self.mixture.sample(colour_key, z.shape[0])[:, None, None, :]
            if m.shape[-1] != z.shape[-1]:
                raise ValueError(f"mixture of {m.shape[-1]} channels for images {z.shape}")
        else:
            m = self.channel_std * jax.random.normal(colour_key, (z.shape[0], 1, 1, z.shape[-1]))
        x1 = self.degradation(jnp.broadcast_to(m, z.shape), 1.0, z)
        return x1 + self.perturbation * jax.random.normal(perturb_key, z.shape)

    def integrate(
        self, key: Array, denoiser: Denoiser, x_init: Array, ts: Array, return_trajectory: bool
    ) -> Array | tuple[Array, Array]:
        if self.from_noise:
            key, start_key = jax.random.split(key)
            x_init = self.start(start_key, x_init)
        return super().integrate(key, denoiser, x_init, ts, return_trajectory)

    def step(
        self,
        denoiser: Denoiser,
        x: Array,
        state: State,
        t: Array,
        s: Array,
        key: Array,
        last: Array,
    ) -> tuple[Array, State]:
        del last
        d = self.degradation
        x0 = denoiser.x0(x, t)
        if self.rule == "naive":
            return d(x0, s, jax.random.normal(key, x.shape, x.dtype)), state
        a_t = d(x0, t)  # A_t x0_hat
        n_t = expand(d.noise_std(jnp.broadcast_to(t, x.shape[:1])), x)
        eps = jnp.where(n_t > 0.0, (x - a_t) / jnp.where(n_t > 0.0, n_t, 1.0), 0.0)
        return x - d(x0, t, eps) + d(x0, s, eps), state
