"""Functions from Denoiser to Denoiser: changes to what a trained model predicts at sampling time.

`clip_x0` is the "clip_denoised" of Ho et al. (2020): the x0 prediction of image models is kept in
the data range [-1, 1] at every step, which removes the saturated outliers an undertrained model
otherwise produces. Guidance (classifier, classifier-free) belongs here as well.
"""

import jax.numpy as jnp

from diffjax.predictions import Denoiser


def clip_x0(denoiser: Denoiser, lo: float = -1.0, hi: float = 1.0) -> Denoiser:
    """The Denoiser whose x0 prediction is `clip(denoiser.x0(x, t), lo, hi)`.

    Every other kind follows from the clipped x0 through the conversions of `predictions`; a
    learned variance is kept as it is.

    Raises:
      ValueError: if lo >= hi.
    """
    if not lo < hi:
        raise ValueError(f"clip_x0 needs lo < hi, got {lo=}, {hi=}")
    return Denoiser(
        lambda x, t: jnp.clip(denoiser.x0(x, t), lo, hi),
        kind="x0",
        process=denoiser.process,
        variance_fn=denoiser.variance_fn,
    )
