"""The optimizer: optax Adam(W) with warm-up, cosine or constant schedule, and clipping.

Both builders take a validated `OptimConfig` (`settings.py` checks the names and ranges).
"""

from collections.abc import Callable
from typing import Any

import optax

from diffjax.methods.base import Params
from diffjax.train.settings import OptimConfig


def learning_rate_schedule(optim: OptimConfig, total_steps: int) -> optax.Schedule:
    """Linear warm-up from 0 to `optim.learning_rate`, then constant or cosine decay to 0 at
    `total_steps`."""
    if optim.schedule == "constant":
        decay = optax.constant_schedule(optim.learning_rate)
    else:
        decay = optax.cosine_decay_schedule(
            optim.learning_rate, max(1, total_steps - optim.warmup_steps)
        )
    if optim.warmup_steps == 0:
        return decay
    warmup = optax.linear_schedule(0.0, optim.learning_rate, optim.warmup_steps)
    return optax.join_schedules([warmup, decay], [optim.warmup_steps])


def make_optimizer(
    optim: OptimConfig,
    learning_rate: optax.Schedule,
    weight_decay_mask: Callable[[Params], Any] | None = None,
) -> optax.GradientTransformation:
    """Gradient clipping by global norm (if > 0) followed by Adam or AdamW.

    Args:
      optim: the optimizer's config.
      learning_rate: the schedule (from `learning_rate_schedule`, shared with whoever logs it).
      weight_decay_mask: params -> pytree of bools, True where AdamW's decoupled weight decay
        applies (`Recipe.weight_decay_mask`); None decays every leaf.
    """
    if optim.optimizer == "adam":
        opt = optax.adam(learning_rate, b1=optim.b1, b2=optim.b2)
    else:
        opt = optax.adamw(
            learning_rate,
            b1=optim.b1,
            b2=optim.b2,
            weight_decay=optim.weight_decay,
            mask=weight_decay_mask,
        )
    if optim.grad_clip:
        return optax.chain(optax.clip_by_global_norm(optim.grad_clip), opt)
    return opt
