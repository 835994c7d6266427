"""`mode=reflow`: k-rectified flow, with the straightness and transport cost of every round.

Seed 002, "Rectified Flow" and "Reflow" (Liu et al. 2023): simulate the trained flow from
noise Z_1 to Z_0, then train the next flow on the pairs (Z_0, Z_1); the k-th round gives the
(k + 1)-rectified flow, whose paths are straighter, so few Euler steps suffice.

Round 0 is the run in `config.teacher.workdir`, of a method whose Recipe runs in this mode
(`chain_modes`: flow_matching, ot_cfm, rectified_flow).
Round k (1 .. `reflow.rounds`) lives in `<workdir>/round_<k>`: `pairs.npz` holds the
`reflow.num_pairs` pairs simulated from round k - 1 with `reflow.ode_steps` RK4 steps (written
once, atomically), and the round is a complete `mode=train` run on them, initialised from round
k - 1 (resumable; rerunning the command continues where it stopped). Every flow is then measured
on the same `eval.num_samples` noise draws: straightness S and transport cost C
(`methods.rectified_flow.simulate`) and the Frechet distance of its Euler samples at each of
`reflow.eval_nfes`. `<workdir>/reflow.json` and `reflow.png` hold the figures per round.
"""

import os

import jax
import ml_collections
import numpy as np

from diffjax import progress
from diffjax.errors import ConfigError
from diffjax.evaluation import plots
from diffjax.methods import rectified_flow
from diffjax.train import experiment, loop, outputs, runs, settings, sharding


def _simulate(exp, params, noise: np.ndarray, ode_steps: int, batch_size: int, desc: str):
    """(Z_0, straightness, transport cost) of the flow from `noise`, in jitted batches."""

    def run(params, z1):
        velocity = exp.recipe.denoiser(exp.apply_fn, params).velocity
        return rectified_flow.simulate(velocity, z1, ode_steps, "rk4")

    mesh = sharding.make_mesh(exp.mesh)
    run = sharding.jit_over_batch(run, mesh)

    def simulate(z1):  # each batch split over the devices when it divides
        out = run(params, sharding.put_split(z1, mesh))
        return jax.device_get(jax.tree.map(lambda a: sharding.gather(a, mesh), out))

    outs = [
        simulate(noise[i : i + batch_size])
        for i in progress.bar(range(0, len(noise), batch_size), desc=desc)
    ]
    return tuple(np.concatenate(parts) for parts in zip(*outs, strict=True))


def _pairs(
    rc: settings.ReflowConfig, seed: int, round_dir: str, prev_dir: str, k: int
) -> dict[str, np.ndarray]:
    """The reflow pairs {"x": Z_0, "noise": Z_1} of round k, simulated once and kept."""
    path = os.path.join(round_dir, "pairs.npz")
    if os.path.exists(path):
        with np.load(path) as f:
            return {"x": f["x"], "noise": f["noise"]}
    exp, state = runs.restore_latest(runs.load_config(prev_dir), prev_dir)
    key = jax.random.fold_in(jax.random.PRNGKey(seed), k)
    noise = np.asarray(jax.random.normal(key, (rc.num_pairs, *exp.dataset.shape)))
    z0, _, _ = _simulate(
        exp, state.ema_params, noise, rc.ode_steps, rc.pair_batch_size, f"pairs {k}"
    )
    if jax.process_index() == 0:
        os.makedirs(round_dir, exist_ok=True)
        with open(path + ".tmp", "wb") as f:
            np.savez(f, x=z0, noise=noise)
        os.replace(path + ".tmp", path)
    return {"x": z0, "noise": noise}


def _measure(rc: settings.ReflowConfig, seed: int, flow_dir: str, quality, noise: np.ndarray):
    """Straightness, transport cost and Frechet distance at each NFE of the flow in flow_dir."""
    exp, state = runs.restore_latest(runs.load_config(flow_dir), flow_dir)
    _, s, c = _simulate(exp, state.ema_params, noise, rc.ode_steps, rc.pair_batch_size, "paths")
    frechet = {}
    for nfe in rc.eval_nfes:
        euler = exp.with_sampling(sampler="euler", num_steps=nfe, options={})
        x = outputs.sampler(euler, len(noise))(state.ema_params, jax.random.PRNGKey(seed))
        frechet[str(nfe)] = quality.frechet(np.asarray(x))
    return {
        "workdir": flow_dir,
        "straightness": float(np.mean(s)),
        "transport_cost": float(np.mean(c)),
        "frechet_by_nfe": frechet,
    }


def reflow(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Runs `reflow.rounds` rounds of reflow; returns and writes reflow.json.

    Raises:
      ConfigError: (a ValueError) if the method's Recipe does not run in this mode
        (`chain_modes`), if no teacher is named, for a class-conditional model (the simulated
        pairs carry no labels yet), or for bad `config.reflow` values.
    """
    exp = experiment.build(config)
    with settings.naming("mode"):
        runs.check_chain_mode(exp, "reflow", "the trained 1-rectified flow")
    if exp.conditioning.conditional:
        raise ConfigError(
            f"mode=reflow simulates unlabelled pairs: it needs model.num_classes=0, got "
            f"model.num_classes={exp.conditioning.num_classes}"
        )
    rc = settings.read(settings.ReflowConfig, config.reflow)
    quality = outputs.quality_ruler(exp, workdir)
    eval_noise = np.asarray(
        jax.random.normal(
            jax.random.PRNGKey(exp.seed + 1), (exp.eval.num_samples, *exp.dataset.shape)
        )
    )
    flows = [exp.teacher.workdir]
    for k in range(1, rc.rounds + 1):
        round_dir = os.path.join(workdir, f"round_{k}")
        pairs = _pairs(rc, exp.seed, round_dir, flows[-1], k)
        loop.train(runs.round_config(config, flows[-1]), round_dir, train_arrays=pairs)
        flows.append(round_dir)
    rounds = [
        {"round": k, **_measure(rc, exp.seed, d, quality, eval_noise)} for k, d in enumerate(flows)
    ]
    floor = quality.report(eval_noise)["frechet_floor_train_vs_test"]
    result = {"rounds": rounds, "frechet_floor_train_vs_test": floor}
    if jax.process_index() == 0:
        outputs.write_json(os.path.join(workdir, "reflow.json"), result)
        nfes = [int(n) for n in rc.eval_nfes]
        curves = {}
        for r in rounds:
            label = f"{r['round'] + 1}-rectified, S={r['straightness']:.3g}"
            curves[label] = (nfes, [r["frechet_by_nfe"][str(n)] for n in nfes])
        plots.save_quality_vs_nfe(
            os.path.join(workdir, "reflow.png"), curves, floor=floor, title="reflow, Euler sampling"
        )
    return result
