"""TrainState, its creation, and the train step (one jitted function per run)."""

from collections.abc import Callable
from typing import Any

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
    grad_accum_steps: int = 1,
) -> Callable[[TrainState, Batch], tuple[TrainState, dict[str, Array]]]:
    """Returns train_step(state, batch) -> (state, metrics), pure and jittable.

    The loss sees `{**params, **frozen}` and the batch with "step" (the steps taken before this
    one); gradients are taken with respect to `params` only. The loss key of step s is
    `fold_in(state.key, s)`, so a resumed run draws the same noise as an uninterrupted one.
    With `grad_accum_steps` k > 1 the batch [B, ...] is cut into k micro-batches of B / k
    examples and the gradients, loss and metrics are their means (`accumulate`): the update of
    the whole batch for a loss that is a mean over examples, in expectation when the loss
    draws noise. After the update, `update_frozen(frozen, params, step)` moves the frozen
    params (e.g. an EMA target). Metrics carry the loss and the gradient norm.

    Raises:
      ValueError: for `ema_decay` outside [0, 1) or `grad_accum_steps` < 1.
    """
    if not 0.0 <= ema_decay < 1.0:
        raise ValueError(f"optim.ema_decay={ema_decay} must be in [0, 1)")
    if grad_accum_steps < 1:
        raise ValueError(f"training.grad_accum_steps={grad_accum_steps} must be >= 1")

    def train_step(state: TrainState, batch: Batch) -> tuple[TrainState, dict[str, Array]]:
        key = jax.random.fold_in(state.key, state.step)

        def grads_of(micro_batch: Batch, micro_key: Array):
            def loss_of(params):
                inputs = {**micro_batch, "step": state.step}
                return loss_fn({**params, **state.frozen}, inputs, micro_key)

            return jax.value_and_grad(loss_of, has_aux=True)(state.params)

        if grad_accum_steps == 1:  # the whole batch with the step key, as before accumulation
            (loss, metrics), grads = grads_of(batch, key)
        else:
            (loss, metrics), grads = accumulate(grads_of, batch, key, grad_accum_steps)
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


def micro_batches(batch: Batch, num: int) -> Batch:
    """Each leaf [B, ...] -> [num, B / num, ...]; micro-batch i holds examples i, i + num, ...

    Strided rather than contiguous: a batch sharded over devices in contiguous blocks of
    B / n rows then gives every micro-batch B / (num n) rows of each device's block (when
    n divides B / num), so the split moves no data and each micro-batch spans all devices.

    Raises:
      ValueError: if a leaf's leading axis does not divide by `num`.
    """

    def split(x: Array) -> Array:
        if x.shape[0] % num:
            raise ValueError(f"a batch of {x.shape[0]} does not split into {num} micro-batches")
        return x.reshape(x.shape[0] // num, num, *x.shape[1:]).swapaxes(0, 1)

    return jax.tree.map(split, batch)


def accumulate(fn: Callable[[Batch, Array], Any], batch: Batch, key: Array, num: int) -> Any:
    """The mean of `fn(micro_batch_i, fold_in(key, i))` over the `num` micro-batches of `batch`
    (`micro_batches`), one at a time in a `lax.scan`, so memory holds one micro-batch's
    activations and one running sum of `fn`'s outputs (float32 gradients).

    Each micro-batch draws its own noise from `fold_in(key, i)`; k micro-batches therefore draw
    differently from one batch of the same examples, equal in expectation only.
    """
    micro = micro_batches(batch, num)
    first = jax.tree.map(lambda x: x[0], micro)
    total = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), jax.eval_shape(fn, first, key))

    def add(total, inputs):
        i, micro_batch = inputs
        out = fn(micro_batch, jax.random.fold_in(key, i))
        return jax.tree.map(jnp.add, total, out), None

    total, _ = jax.lax.scan(add, total, (jnp.arange(num), micro))
    return jax.tree.map(lambda s: s / num, total)
