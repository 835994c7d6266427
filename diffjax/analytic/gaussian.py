"""Gaussian-mixture data: exact marginals, scores, denoisers and probability-flow ODE solutions.

If x_0 ~ sum_k w_k N(mu_k, C_k) and x_t = alpha x_0 + sigma eps, then
  p_t(x) = sum_k w_k N(x; alpha mu_k, S_k),  S_k = alpha^2 C_k + sigma^2 I,
  E[x_0 | x_t, k] = mu_k + alpha C_k S_k^{-1} (x_t - alpha mu_k),
  grad log p_t(x) = -sum_k r_k(x) S_k^{-1} (x - alpha mu_k),  r_k the posterior responsibilities.
For one Gaussian N(mu, U diag(lam) U^T) the probability-flow ODE is solved exactly in the
eigenbasis: x_s - alpha_s mu = U diag(r) U^T (x_t - alpha_t mu) with
r = sqrt((alpha_s^2 lam + sigma_s^2) / (alpha_t^2 lam + sigma_t^2))
(seed 000, "Fokker-Planck equation and ODE models").
"""

import flax.struct
import jax
import jax.numpy as jnp
from jax import Array
from jax.tree_util import Partial

from diffjax.denoisers import Denoiser
from diffjax.processes import Process


def _x0_mean(mixture: "GaussianMixture", process: Process, x: Array, t: Array) -> Array:
    return mixture.x0_mean(x, t, process)


@flax.struct.dataclass
class GaussianMixture:
    """x_0 ~ sum_k weights[k] N(means[k], covs[k]); vectors of dimension D.

    Attributes:
      weights: [K], summing to one.
      means: [K, D].
      covs: [K, D, D], symmetric positive (semi-)definite.
    """

    weights: Array
    means: Array
    covs: Array

    @classmethod
    def gaussian(cls, mean: Array, cov: Array) -> "GaussianMixture":
        """One Gaussian N(mean, cov)."""
        mean, cov = jnp.asarray(mean, jnp.float32), jnp.asarray(cov, jnp.float32)
        return cls(jnp.ones((1,)), mean[None], cov[None])

    @property
    def dim(self) -> int:
        return self.means.shape[-1]

    def _marginal(self, t: Array, process: Process):
        """Per-example alpha, sigma [B] and component covariances S_k [B, K, D, D] at t."""
        alpha, sigma = process.alpha(t), process.sigma(t)
        eye = jnp.eye(self.dim)
        s = (
            alpha[:, None, None, None] ** 2 * self.covs[None]
            + sigma[:, None, None, None] ** 2 * eye[None, None]
        )
        return alpha, sigma, s

    def _components(self, x: Array, t: Array, process: Process):
        """log N(x; alpha mu_k, S_k) [B, K], alpha [B], S_k [B, K, D, D], residuals [B, K, D]."""
        t = jnp.broadcast_to(jnp.asarray(t, jnp.float32), x.shape[:1])
        alpha, _, s = self._marginal(t, process)
        r = x[:, None, :] - alpha[:, None, None] * self.means[None]  # [B, K, D]
        chol = jnp.linalg.cholesky(s)
        z = jax.scipy.linalg.solve_triangular(chol, r[..., None], lower=True)[..., 0]
        logdet = 2.0 * jnp.sum(jnp.log(jnp.diagonal(chol, axis1=-2, axis2=-1)), -1)
        logn = -0.5 * (jnp.sum(z**2, -1) + logdet + self.dim * jnp.log(2 * jnp.pi))
        return logn, alpha, s, r

    def log_prob(self, x: Array, t: Array, process: Process) -> Array:
        """log p_t(x), [B]; x: [B, D], t: scalar or [B]. At t = 0 this is the data density."""
        logn, *_ = self._components(x, t, process)
        return jax.nn.logsumexp(logn + jnp.log(self.weights)[None], axis=-1)

    def score(self, x: Array, t: Array, process: Process) -> Array:
        """grad_x log p_t(x), [B, D]."""
        logn, _, s, r = self._components(x, t, process)
        resp = jax.nn.softmax(logn + jnp.log(self.weights)[None], axis=-1)  # [B, K]
        s_inv_r = jnp.linalg.solve(s, r[..., None])[..., 0]
        return -jnp.sum(resp[..., None] * s_inv_r, axis=1)

    def class_log_posterior(self, x: Array, t: Array, process: Process) -> Array:
        """log p(k | x_t = x) [B, K]: the components as classes (Bayes' rule on the marginals),
        the exact noisy classifier of classifier guidance."""
        logn, *_ = self._components(x, t, process)
        return jax.nn.log_softmax(logn + jnp.log(self.weights)[None], axis=-1)

    def component(self, k: int) -> "GaussianMixture":
        """Component k alone: the data distribution given class k."""
        return GaussianMixture(jnp.ones((1,)), self.means[k : k + 1], self.covs[k : k + 1])

    def x0_mean(self, x: Array, t: Array, process: Process) -> Array:
        """E[x_0 | x_t = x], [B, D]."""
        logn, alpha, s, r = self._components(x, t, process)
        resp = jax.nn.softmax(logn + jnp.log(self.weights)[None], axis=-1)
        s_inv_r = jnp.linalg.solve(s, r[..., None])  # [B, K, D, 1]
        cond = (
            self.means[None] + alpha[:, None, None] * jnp.matmul(self.covs[None], s_inv_r)[..., 0]
        )
        return jnp.sum(resp[..., None] * cond, axis=1)

    def denoiser(self, process: Process) -> Denoiser:
        """The exact (Bayes-optimal) denoiser, predicting x0; the mixture's arrays and the
        process are leaves of the Denoiser pytree."""
        return Denoiser(Partial(_x0_mean, self, process), "x0", process)

    def sample(self, key: Array, n: int) -> Array:
        """n draws of x_0, [n, D]."""
        kc, kz = jax.random.split(key)
        k = jax.random.choice(kc, self.weights.shape[0], (n,), p=self.weights)
        chol = jnp.linalg.cholesky(self.covs + 1e-12 * jnp.eye(self.dim)[None])
        z = jax.random.normal(kz, (n, self.dim))
        return self.means[k] + jnp.einsum("nij,nj->ni", chol[k], z)

    def ode_solution(self, x: Array, t: Array, s: Array, process: Process) -> Array:
        """Exact probability-flow ODE map x_t -> x_s for a single Gaussian; x: [B, D].

        Raises:
          ValueError: for more than one component (no closed form).
        """
        if self.weights.shape[0] != 1:
            raise ValueError("ode_solution has a closed form only for a single Gaussian (K = 1)")
        lam, u = jnp.linalg.eigh(self.covs[0])
        mu = self.means[0]
        t = jnp.broadcast_to(jnp.asarray(t, jnp.float32), x.shape[:1])[:, None]  # [B, 1]
        s = jnp.broadcast_to(jnp.asarray(s, jnp.float32), x.shape[:1])[:, None]
        at, st, as_, ss = process.alpha(t), process.sigma(t), process.alpha(s), process.sigma(s)
        scale = jnp.sqrt((as_**2 * lam[None] + ss**2) / (at**2 * lam[None] + st**2))  # [B, D]
        y = (x - at * mu[None]) @ u
        return (y * scale) @ u.T + as_ * mu[None]
