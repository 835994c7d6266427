"""JAX's persistent compilation cache, on by default for `python -m diffjax.main`.

A run compiles its train step, its sampler and its evaluations once per machine: a resumed run,
a `mode=sample` after training and a test that runs a config again read the compiled programs
from disk instead of compiling them again (measured in
`experiments/benchmarks/compile_cache.py`). The key of a program covers its computation, the
devices, the jax/jaxlib version and the XLA flags, so a changed model or a new topology compiles
afresh.

Where: `--compilation_cache=DIR`, else `$DIFFJAX_COMPILATION_CACHE`, else
`$XDG_CACHE_HOME/diffjax/jax_compilation_cache` (`~/.cache/...`). An empty value
(`--compilation_cache=`) turns it off. As JAX warns, the cache holds code that will run: do not
point it at a directory others can write to.
"""

import os

import jax

ENV = "DIFFJAX_COMPILATION_CACHE"
# Programs that compile faster than this are compiled again rather than stored: a file each for
# every small helper jit would cost more to look up than to rebuild.
MIN_COMPILE_SECONDS = 0.5
# Beyond this the least recently used programs are deleted (JAX's LRU eviction, under a file
# lock): a few hundred runs' worth of programs of the models here.
MAX_BYTES = 2 * 2**30


def default_dir() -> str:
    """`$DIFFJAX_COMPILATION_CACHE` if set (possibly empty: off), else the user cache dir."""
    if ENV in os.environ:
        return os.environ[ENV]
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(root, "diffjax", "jax_compilation_cache")


def enable(directory: str | None) -> str | None:
    """Stores and reads compiled programs in `directory` (created if needed); None or "" turns
    the cache off. Call it before the first compilation of the process; returns `directory`
    or None."""
    if not directory:
        jax.config.update("jax_enable_compilation_cache", False)
        return None
    os.makedirs(directory, exist_ok=True)
    jax.config.update("jax_enable_compilation_cache", True)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECONDS)
    jax.config.update("jax_compilation_cache_max_size", MAX_BYTES)
    jax.config.update("jax_compilation_cache_dir", directory)
    return directory
