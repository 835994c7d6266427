"""The optimizer: optax Adam(W) with warm-up, cosine or constant schedule, and clipping."""

import optax

OPTIMIZERS = ("adam", "adamw")
SCHEDULES = ("constant", "cosine")


def learning_rate_schedule(
    learning_rate: float, schedule: str, warmup_steps: int, total_steps: int
) -> optax.Schedule:
    """Linear warm-up from 0 to `learning_rate`, then constant or cosine decay to 0 at the end."""
    if learning_rate <= 0:
        raise ValueError(f"optim.learning_rate={learning_rate} must be > 0")
    if warmup_steps < 0:
        raise ValueError(f"optim.warmup_steps={warmup_steps} must be >= 0")
    if schedule == "constant":
        decay = optax.constant_schedule(learning_rate)
    elif schedule == "cosine":
        decay = optax.cosine_decay_schedule(learning_rate, max(1, total_steps - warmup_steps))
    else:
        raise ValueError(f"unknown optim.schedule {schedule!r}; valid: {', '.join(SCHEDULES)}")
    if warmup_steps == 0:
        return decay
    warmup = optax.linear_schedule(0.0, learning_rate, warmup_steps)
    return optax.join_schedules([warmup, decay], [warmup_steps])


def make_optimizer(
    *,
    optimizer: str,
    learning_rate: float,
    schedule: str,
    warmup_steps: int,
    total_steps: int,
    b1: float,
    b2: float,
    weight_decay: float,
    grad_clip: float,
) -> optax.GradientTransformation:
    """Gradient clipping by global norm (if > 0) followed by Adam or AdamW."""
    lr = learning_rate_schedule(learning_rate, schedule, warmup_steps, total_steps)
    if optimizer == "adam":
        if weight_decay:
            raise ValueError("optim.weight_decay needs optim.optimizer='adamw'")
        opt = optax.adam(lr, b1=b1, b2=b2)
    elif optimizer == "adamw":
        opt = optax.adamw(lr, b1=b1, b2=b2, weight_decay=weight_decay)
    else:
        raise ValueError(f"unknown optim.optimizer {optimizer!r}; valid: {', '.join(OPTIMIZERS)}")
    if grad_clip < 0:
        raise ValueError(f"optim.grad_clip={grad_clip} must be >= 0 (0 disables)")
    return optax.chain(optax.clip_by_global_norm(grad_clip), opt) if grad_clip else opt
