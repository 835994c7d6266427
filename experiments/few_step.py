"""Few-step generation on 2-D two moons: sample quality against the number of network calls.

Trains, with one MLP architecture and one optimiser, on the same data:
  flow matching (the teacher of the distilled methods), OT-CFM, 2-rectified flow (reflow on the
  flow-matching pairs), consistency training (iCT), consistency distillation (from the flow-
  matching teacher), progressive distillation (teacher 32 DDIM steps -> 16 -> ... -> 1) and
  MeanFlow,
then samples each with NFE in {1, 2, 4, 8, 16} (Euler for the flows, multistep consistency
sampling, the distilled students at their own step count, MeanFlow's few-step sampler) and
records the offline Frechet distance to the test split (`diffjax.evaluation.sample_quality`) and,
because a Frechet distance of 2-D points only compares means and covariances, the sliced
Wasserstein-1 distance (mean over 64 random directions of the exact 1-D W1). The straightness and
transport cost of the flow-matching and reflowed flows (seed 002, reflow table) are recorded too.

  python experiments/few_step.py --out experiments/results/few_step.json --steps 2000

writes the JSON and a PNG of both metrics against NFE beside it.
"""

import json
import os
import time

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import optax
from absl import app, flags, logging

from diffjax import data, models, processes, samplers
from diffjax.evaluation.sample_quality import SampleQuality
from diffjax.methods import consistency as cm
from diffjax.methods import flow_matching, meanflow, progressive_distillation, rectified_flow
from diffjax.train.experiment import apply_fn_of
from diffjax.train.state import create_train_state, make_train_step

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

_OUT = flags.DEFINE_string("out", "experiments/results/few_step.json", "JSON output path.")
_STEPS = flags.DEFINE_integer("steps", 2000, "Training steps per model (halved per PD round).")
_BATCH = flags.DEFINE_integer("batch_size", 256, "Batch size.")
_SAMPLES = flags.DEFINE_integer("num_samples", 4000, "Samples per evaluation.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of data order, init, training and sampling.")

NFES = (1, 2, 4, 8, 16)
RF = processes.RectifiedFlow()
T_MAX_CM = 0.98  # consistency models need s(t) = t / (1 - t) finite


def sliced_w1(a: np.ndarray, b: np.ndarray, key: jax.Array, num_dirs: int = 64) -> float:
    """Mean over random unit directions of the exact 1-D W1 between equal-size projections."""
    n = min(len(a), len(b))
    dirs = np.array(jax.random.normal(key, (a.shape[1], num_dirs)))
    dirs = dirs / np.linalg.norm(dirs, axis=0, keepdims=True)
    pa, pb = np.sort(a[:n] @ dirs, axis=0), np.sort(b[:n] @ dirs, axis=0)
    return float(np.mean(np.abs(pa - pb)))


def train(loss_fn, init_params, batches, steps: int, key: jax.Array, lr: float = 1e-3):
    """Adam with warm-up and cosine decay; returns the EMA (0.995) params. Params outside
    "model" (a teacher) get zero gradients and therefore zero Adam updates."""
    schedule = optax.warmup_cosine_decay_schedule(0.0, lr, min(100, steps // 10), steps)
    optimizer = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(schedule))
    state = create_train_state(key, lambda _: init_params, optimizer)
    step_fn = jax.jit(make_train_step(loss_fn, optimizer, 0.995))
    for k in range(steps):
        state, metrics = step_fn(state, next(batches) | {"step": jnp.int32(k)})
    logging.info("trained %d steps, final loss %.4f", steps, float(metrics["loss"]))
    return state.ema_params


def data_batches(dataset, batch_size: int, seed: int):
    for batch in dataset.loader("train", batch_size, seed=seed, shuffle=True):
        yield {"x": jnp.asarray(batch["x"])}


def pair_batches(x0: np.ndarray, noise: np.ndarray, batch_size: int, seed: int):
    rng = np.random.default_rng(seed)
    while True:
        idx = rng.integers(0, len(x0), batch_size)
        yield {"x": jnp.asarray(x0[idx]), "noise": jnp.asarray(noise[idx])}


def main(argv):
    del argv
    started = time.time()
    key = jax.random.key(_SEED.value)
    k_init, k_train, k_sample, k_eval = jax.random.split(key, 4)
    dataset = data.get("toy2d", distribution="moons")
    train_x = dataset.as_array("train")["x"]
    test_x = dataset.as_array("test")["x"]
    quality = SampleQuality.fit(None, train_x, None, test_x, k_eval)
    n, steps, bs = _SAMPLES.value, _STEPS.value, _BATCH.value

    module = models.get("mlp", features=128, num_blocks=3, out_channels=2)
    apply_fn = apply_fn_of(module)

    def init(in_dim: int = 2):
        x, t = jnp.zeros((1, in_dim)), jnp.zeros((1,))
        return module.init({"params": k_init}, x, t, train=False)["params"]

    def batches():
        return data_batches(dataset, bs, _SEED.value)

    noise = jax.random.normal(k_sample, (n, 2))
    results = {"config": {"steps": steps, "batch_size": bs, "num_samples": n, "nfe": NFES}}
    curves = {}

    def record(name: str, nfe: int, x) -> None:
        x = np.asarray(x)
        entry = {
            "nfe": nfe,
            "frechet": quality.frechet(x),
            "sliced_w1": sliced_w1(x, test_x, k_eval),
        }
        curves.setdefault(name, []).append(entry)
        logging.info("%s NFE %d: %s", name, nfe, entry)

    euler = samplers.get("euler")

    def eval_flow(name, recipe, params):
        den = recipe.denoiser(apply_fn, params)
        for nfe in NFES:
            record(name, nfe, jax.jit(lambda z: euler(k_sample, den, z, num_steps=nfe))(noise))  # noqa: B023

    def flow_metrics(recipe, params):
        velocity = recipe.denoiser(apply_fn, params).velocity
        z0, s, c = jax.jit(rectified_flow.simulate, static_argnums=(0, 2, 3))(
            velocity, noise, 100, "rk4"
        )
        return z0, {"straightness": float(jnp.mean(s)), "transport_cost": float(jnp.mean(c))}

    # 1. Flow matching (= 1-rectified flow), the teacher.
    fm = flow_matching.flow_matching(RF)
    fm_params = train(fm.make_loss(apply_fn), {"model": init()}, batches(), steps, k_train)
    eval_flow("flow_matching", fm, fm_params)
    _, results["flow_matching_paths"] = flow_metrics(fm, fm_params)

    # 2. OT-CFM.
    ot = flow_matching.ot_cfm(RF)
    ot_params = train(ot.make_loss(apply_fn), {"model": init()}, batches(), steps, k_train)
    eval_flow("ot_cfm", ot, ot_params)
    _, results["ot_cfm_paths"] = flow_metrics(ot, ot_params)

    # 3. Reflow: pairs (Z_0, Z_1) of the flow-matching ODE, 2-rectified flow from its weights.
    pair_noise = jax.random.normal(jax.random.fold_in(k_sample, 1), (20000, 2))
    velocity = fm.denoiser(apply_fn, fm_params).velocity
    pair_x0, _, _ = jax.jit(rectified_flow.simulate, static_argnums=(0, 2, 3))(
        velocity, pair_noise, 100, "rk4"
    )
    rf2 = rectified_flow.rectified_flow(RF)
    rf2_params = train(
        rf2.make_loss(apply_fn),
        {"model": fm_params["model"]},
        pair_batches(np.asarray(pair_x0), np.asarray(pair_noise), bs, _SEED.value),
        steps,
        k_train,
    )
    eval_flow("rectified_flow_2", rf2, rf2_params)
    _, results["rectified_flow_2_paths"] = flow_metrics(rf2, rf2_params)

    # 4./5. Consistency training and distillation (teacher: flow matching, Heun steps).
    def eval_consistency(name, params):
        f = cm.consistency_fn(apply_fn, params["model"], RF, 0.002, 0.5)
        x_init = RF.sigma(T_MAX_CM) * noise
        for nfe in NFES:
            taus = cm.time_grid(jnp.float32(nfe + 1), 0.002, T_MAX_CM, 7.0, jnp.arange(nfe + 1.0))
            x = jax.jit(cm.multistep_sample, static_argnums=(0, 4, 5))(
                f, k_sample, x_init, taus[1:][::-1], RF, 0.002
            )
            record(name, nfe, x)

    ct = cm.consistency(RF, mode="ct", t_max=T_MAX_CM, total_steps=steps, s0=10, s1=320)
    ct_params = train(ct.make_loss(apply_fn), {"model": init()}, batches(), steps, k_train)
    eval_consistency("consistency_training", ct_params)
    cd = cm.consistency(
        RF,
        mode="cd",
        teacher_prediction="velocity",
        t_max=T_MAX_CM,
        schedule="constant",
        s1=18,
        metric="l2",
        weighting="uniform",
        noise_sampling="uniform",
    )
    cd_params = train(
        cd.make_loss(apply_fn),
        {"model": init(), "teacher": fm_params["model"]},
        batches(),
        steps,
        k_train,
    )
    eval_consistency("consistency_distillation", cd_params)

    # 6. Progressive distillation: 32 -> 16 -> 8 -> 4 -> 2 -> 1 DDIM steps.
    ddim = samplers.get("ddim", eta=0.0)
    teacher = fm_params["model"]
    for student_steps in (16, 8, 4, 2, 1):
        pd = progressive_distillation.progressive_distillation(
            RF,
            prediction="velocity",
            teacher_prediction="velocity",
            student_steps=student_steps,
            weighting="uniform",
        )
        params = train(
            pd.make_loss(apply_fn),
            {"model": teacher, "teacher": teacher},
            batches(),
            max(steps // 2, 1),
            k_train,
        )
        teacher = params["model"]
        den = pd.denoiser(apply_fn, params)
        x = jax.jit(lambda z: ddim(k_sample, den, z, num_steps=student_steps))(noise)  # noqa: B023
        record("progressive_distillation", student_steps, x)

    # 7. MeanFlow: the MLP sees (z, t - r) as input and t as its time.
    def mf_apply(p, z, times, cond=None, key=None):
        return apply_fn(p, jnp.concatenate([z, times[:, 1:]], axis=-1), times[:, 0], cond, key)

    mf = meanflow.meanflow(RF)
    mf_module_params = module.init({"params": k_init}, jnp.zeros((1, 3)), jnp.zeros((1,)))
    mf_params = train(
        mf.make_loss(mf_apply), {"model": mf_module_params["params"]}, batches(), steps, k_train
    )
    u_fn = meanflow.average_velocity(mf_apply, mf_params["model"])
    for nfe in NFES:
        record("meanflow", nfe, jax.jit(meanflow.sample, static_argnums=(0, 2))(u_fn, noise, nfe))

    results["curves"] = curves
    results["floor_train_vs_test"] = quality.report(train_x[:n])["frechet"]
    results["floor_sliced_w1"] = sliced_w1(train_x[:n], test_x, k_eval)
    results["seconds"] = time.time() - started
    os.makedirs(os.path.dirname(_OUT.value) or ".", exist_ok=True)
    with open(_OUT.value, "w") as f:
        json.dump(results, f, indent=2)

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, metric in zip(axes, ("frechet", "sliced_w1"), strict=True):
        for name, entries in curves.items():
            ax.plot([e["nfe"] for e in entries], [e[metric] for e in entries], "o-", label=name)
        floor = results["floor_train_vs_test" if metric == "frechet" else "floor_sliced_w1"]
        ax.axhline(floor, color="k", ls=":", label="train vs test")
        ax.set(xscale="log", yscale="log", xlabel="NFE", ylabel=metric, xticks=NFES)
        ax.set_xticklabels([str(v) for v in NFES])
    axes[1].legend(fontsize=7)
    fig.suptitle(f"two moons, {steps} training steps per model")
    fig.tight_layout()
    fig.savefig(os.path.splitext(_OUT.value)[0] + ".png", dpi=120)
    print(json.dumps(results["curves"], indent=1))


if __name__ == "__main__":
    app.run(main)
