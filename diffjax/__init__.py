"""diffjax: the diffusion and flow-matching family in JAX/Flax.

Time runs from t = 0 (data) to t = 1 (noise); images are NHWC float32 in [-1, 1]; every random
function takes an explicit key. See docs/architecture.md.
"""

__version__ = "0.1.0"
