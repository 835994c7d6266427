"""Class-conditional DDPM on scikit-learn's digits: the default job with the labels, trained
with label dropout (p_uncond = 0.1) so the one network is also the unconditional model.

  python -m diffjax.main --config=configs/ddpm_digits_cond.py --workdir=/tmp/ddpm_digits_cond

Sample grids hold one digit class per column (0..9 in every row); metrics.json adds the feature
classifier's accuracy on the classes the samples were drawn for.
"""

import ml_collections

from configs import ddpm_digits


def get_config() -> ml_collections.ConfigDict:
    config = ddpm_digits.get_config()
    config.model.num_classes = 10  # the digits' classes 0..9 (row 10: the null class)
    config.model.p_uncond = 0.1  # label dropout: also learn the unconditional model (CFG)
    config.sample.num_samples = 100  # 10 rows of the 10 classes
    return config
