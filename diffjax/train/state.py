"""TrainState, its creation, and the train step (one jitted function per run)."""

from collections.abc import Callable

import flax.struct
import jax
import jax.numpy as jnp
import optax
from jax import Array

from diffjax.losses.base import Batch, LossFn, Params

FrozenUpdate = Callable[[Params, Params, Array], Params]


@flax.struct.dataclass
class TrainState:
    """Everything a run needs to continue: one pytree, checkpointed whole.

    Attributes:
      step: number of optimizer steps taken (int32 scalar).
      params: `{"model": ..., **aux}` trained parameters.
      frozen: parameters the loss reads but does not train (`{"teacher": ..., "target": ...}`,
        `{}` for most methods); see `diffjax.methods.base`.
      ema_params: exponential moving average of `params`, used for sampling and evaluation.
      opt_state: optax state (of `params` only).
      key: base PRNG key (raw uint32 [2]); step s uses `fold_in(key, s)`.
    """

    step: Array
    params: Params
    frozen: Params
    ema_params: Params
    opt_state: optax.OptState
    key: Array


def create_train_state(
    key: Array,
    init_params: Callable[[Array], Params],
    optimizer: optax.GradientTransformation,
    init_frozen: Callable[[Params], Params] = lambda params: {},
) -> TrainState:
    """Initialises params from `key`, the frozen params from them, and a fresh optimizer state;
    EMA starts at the params."""
    init_key, train_key = jax.random.split(key)
    params = init_params(init_key)
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        frozen=init_frozen(params),
        ema_params=params,
        opt_state=optimizer.init(params),
        key=train_key,
    )


def make_train_step(
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    ema_decay: float,
    update_frozen: FrozenUpdate | None = None,
) -> Callable[[TrainState, Batch], tuple[TrainState, dict[str, Array]]]:
    """Returns train_step(state, batch) -> (state, metrics), pure and jittable.

    The loss sees `{**params, **frozen}` and the batch with "step" (the steps taken before this
    one); gradients are taken with respect to `params` only. The loss key of step s is
    `fold_in(state.key, s)`, so a resumed run draws the same noise as an uninterrupted one.
    After the update, `update_frozen(frozen, params, step)` moves the frozen params (e.g. an
    EMA target). Metrics carry the loss and the gradient norm.
    """
    if not 0.0 <= ema_decay < 1.0:
        raise ValueError(f"optim.ema_decay={ema_decay} must be in [0, 1)")

    def train_step(state: TrainState, batch: Batch) -> tuple[TrainState, dict[str, Array]]:
        key = jax.random.fold_in(state.key, state.step)
        batch = {**batch, "step": state.step}

        def loss_of(params):
            return loss_fn({**params, **state.frozen}, batch, key)

        (loss, metrics), grads = jax.value_and_grad(loss_of, has_aux=True)(state.params)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        ema_params = jax.tree.map(
            lambda e, p: ema_decay * e + (1.0 - ema_decay) * p, state.ema_params, params
        )
        frozen = state.frozen
        if update_frozen is not None:
            frozen = update_frozen(frozen, params, state.step)
        metrics = {**metrics, "loss": loss, "grad_norm": optax.global_norm(grads)}
        new_state = state.replace(
            step=state.step + 1,
            params=params,
            frozen=frozen,
            ema_params=ema_params,
            opt_state=opt_state,
        )
        return new_state, metrics

    return train_step
