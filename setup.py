"""diffjax: the diffusion and flow-matching family in JAX/Flax.

This file is the one place dependencies are declared; every version is pinned to a set measured
to install together on CPython 3.11 (CPU, no accelerator). The accelerator extras add JAX's own
backend for the same jax version (`pip install -e .[tpu]` on a TPU VM, `.[cuda12]` / `.[cuda13]`
on an NVIDIA GPU host); without one, JAX runs on the CPU and the run log says so.
"""

import setuptools

JAX_VERSION = "0.10.2"

INSTALL_REQUIRES = [
    f"jax=={JAX_VERSION}",
    f"jaxlib=={JAX_VERSION}",
    "flax==0.12.8",
    "optax==0.2.8",
    "orbax-checkpoint==0.12.8",
    "chex==0.1.92",
    "tensorflow-datasets==4.9.10",
    # Imported to tell a failed download of a tfds dataset from other errors (tfds uses it).
    "requests==2.34.2",
    # tfds 4.9.10 imports importlib_resources on every Python but declares it only for old ones.
    "importlib_resources==7.1.0",
    "grain==0.2.18",
    "ml-collections==1.1.0",
    "absl-py==2.5.1",
    "numpy==2.4.6",
    "scipy==1.17.1",
    # TensorBoard event files without TensorFlow (clu's writers import TensorFlow).
    "tensorboardX==2.6.5",
    "tqdm==4.70.1",
    "matplotlib==3.11.2",
    # Real 8x8 handwritten digits shipped inside the wheel: the offline dataset.
    "scikit-learn==1.9.1",
    # PNG encoding for tfds image features without TensorFlow, and for sample grids.
    "pillow==13.0.0",
    # The lock JAX's compilation cache takes to evict old programs (diffjax.compile_cache).
    "filelock==4.3.2",
]

EXTRAS_REQUIRE = {
    # Cloud TPU VMs (v4, v5e, v5p, v6e): jax's tpu extra pins libtpu 0.0.42.* for jax 0.10.2.
    "tpu": [f"jax[tpu]=={JAX_VERSION}"],
    # NVIDIA GPUs: the CUDA 12 or CUDA 13 plugin with its CUDA/cuDNN/NCCL wheels (pip-installed,
    # so only the driver must be on the host: >= 525 for CUDA 12, >= 580 for CUDA 13).
    "cuda12": [f"jax[cuda12]=={JAX_VERSION}"],
    "cuda13": [f"jax[cuda13]=={JAX_VERSION}"],
    # nbclient, nbformat and ipykernel: tests/test_notebooks.py executes the notebooks.
    "test": [
        "pytest==9.2.0",
        "pytest-xdist==3.8.0",
        "ruff==0.17.6",
        "nbclient==0.11.0",
        "nbformat==5.11.1",
        "ipykernel==7.4.0",
    ],
    # Running notebooks/ locally (Jupyter), and `python notebooks/build.py --execute`.
    "notebooks": ["jupyter==1.1.1", "nbclient==0.11.0", "nbformat==5.11.1", "ipykernel==7.4.0"],
    # TensorFlow for preparing tfds catalogue datasets (cifar10, mnist, celeb_a, ...): tfds
    # extracts, reads and PNG-encodes them with it; reading them needs none. The CPU build on
    # Linux (no GPU claimed next to JAX; the same requirement as
    # diffjax.data.pipeline.TENSORFLOW_REQUIREMENT), the only build there is on macOS.
    "prepare": [
        "tensorflow-cpu==2.21.0; sys_platform == 'linux'",
        "tensorflow==2.21.0; sys_platform == 'darwin'",
    ],
    # PyTorch and diffusers for experiments/benchmarks/peers.py (diffjax against diffusers'
    # UNet2DModel on the CPU); nothing in diffjax imports them. PyPI has no CPU-only torch wheel
    # for Linux: its torch 2.13.0 manylinux wheel pulls the CUDA 13 wheels (cuBLAS, cuDNN, NCCL,
    # triton, ...: several GB). The `2.13.0+cpu` wheel (192 MB, no nvidia
    # dependencies) comes only from PyTorch's own CPU index, which this machine cannot reach;
    # `torch==2.13.0` accepts it too and pip prefers it when it is found (the measuring machine
    # has a local copy, so the peers benchmark ran on 2.13.0+cpu).
    "peers": ["torch==2.13.0", "diffusers==0.42.1"],
}

setuptools.setup(
    name="diffjax",
    version="0.1.0",
    description="Diffusion and flow-matching models in JAX/Flax: one coherent, tested library.",
    packages=setuptools.find_packages(include=["diffjax", "diffjax.*"]),
    python_requires=">=3.11",
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS_REQUIRE,
)
