"""Sample a trained cascade on shapes32: base 8x8 -> SR 16x16 -> SR 32x32 (`mode=cascade`).

  python -m diffjax.main --config=configs/cascade_base_shapes32.py --workdir=/tmp/cascade_base
  python -m diffjax.main --config=configs/cascade_sr16_shapes32.py --workdir=/tmp/cascade_sr16
  python -m diffjax.main --config=configs/cascade_sr32_shapes32.py --workdir=/tmp/cascade_sr32
  python -m diffjax.main --config=configs/cascade_shapes32.py --workdir=/tmp/cascade_chain

Each stage is a normal resumable run; this samples the base, then each stage conditioned on the
previous one's output, and writes cascade.png, samples.npz and metrics.json (the Frechet
distance of the final 32x32 images, diffjax/train/cascade.py). Seed 000, "Super Resolution:
Cascaded Diffusion Models (CDM)"; seed 003, "Upscaling".
"""

import ml_collections

from configs import default


def get_config() -> ml_collections.ConfigDict:
    config = default.get_config()
    config.mode = "cascade"  # diffjax/train/cascade.py
    # The stage workdirs in order: the base model, then each super-resolution run.
    config.cascade.stages = ("/tmp/cascade_base", "/tmp/cascade_sr16", "/tmp/cascade_sr32")
    config.cascade.num_samples = 500  # images drawn through the cascade and scored
    return config
