"""Shared by the tests of runs, distill and reflow: tiny toy2d configs and a trained teacher."""

import ml_collections

from configs import flow_matching_toy2d


def tiny(config: ml_collections.ConfigDict, data_dir: str, steps: int = 40):
    """`config` shrunk to seconds: a small MLP, few steps, few samples."""
    config.data.kwargs.data_dir = data_dir
    config.model.kwargs = ml_collections.ConfigDict({"features": 32, "num_blocks": 1})
    config.training.update(
        {"num_steps": steps, "batch_size": 64, "log_every": 10, "checkpoint_every": steps}
    )
    config.optim.warmup_steps = 0
    config.optim.ema_decay = 0.9
    config.sample.num_samples = 16
    config.eval.num_samples = 200
    return config


def flow_matching(data_dir: str, steps: int = 40) -> ml_collections.ConfigDict:
    return tiny(flow_matching_toy2d.get_config(), data_dir, steps)
