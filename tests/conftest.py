"""Test-wide JAX settings: no silent rank promotion, CPU only, and the persistent compilation
cache of `diffjax.main` (a program compiled by an earlier test, or an earlier run of the suite,
is read from disk)."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402

from diffjax import compile_cache  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")
compile_cache.enable(compile_cache.default_dir())
