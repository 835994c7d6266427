"""`mode=sample`, `mode=evaluate` and `mode=eval_bpd`: use the latest checkpoint's EMA params."""

import itertools
import os
import time

import jax
import ml_collections
import numpy as np

from diffjax import progress
from diffjax.evaluation.bpd import evaluate_bpd
from diffjax.losses import vocabulary
from diffjax.train import latents, outputs, runs, sharding


def sample(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Samples `sample.num_samples` with `sample.sampler` / `sample.num_steps` / options; writes
    `samples/sample_<sampler>_<steps>.{png,npz,json}` and returns the JSON (NFE, seconds)."""
    exp, state = runs.restore_latest(config, workdir)
    mesh = sharding.make_mesh(exp.mesh)
    fn = outputs.sample_function(exp, mesh, exp.sampling.num_samples)
    key = jax.random.PRNGKey(exp.seed)
    start = time.perf_counter()
    compiled = fn.lower(state.ema_params, key).compile()
    compile_seconds = time.perf_counter() - start
    start = time.perf_counter()
    x = jax.block_until_ready(compiled(state.ema_params, key))
    seconds = time.perf_counter() - start
    x = np.asarray(sharding.gather(x, mesh))
    sampler_name = exp.sampler_name
    process = exp.recipe.process_for(state.ema_params)
    num_steps = len(exp.sampler.timesteps(process, exp.sample_num_steps)) - 1
    name = f"sample_{sampler_name}_{num_steps}"
    png = outputs.save_samples(workdir, name, x, outputs.grid_columns(exp))
    report = {
        "step": int(state.step),
        "sampler": sampler_name,
        "num_steps": num_steps,
        "nfe": exp.sampler.nfe(num_steps),
        "num_samples": int(x.shape[0]),
        "seconds": seconds,
        "compile_seconds": compile_seconds,
        "png": png,
    }
    outputs.write_json(os.path.join(workdir, "samples", name + ".json"), report)
    return report


def evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Recomputes metrics.json (sample quality of the EMA params, or an autoencoder's
    reconstruction quality) for the latest checkpoint."""
    exp, state = runs.restore_latest(config, workdir)
    if exp.recipe.reconstructs:
        return latents.evaluate_autoencoder(exp, state, workdir)
    return outputs.evaluate_sample_quality(exp, state, workdir, exp.eval.num_samples)


def eval_bpd(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Bits/dim of the test split through the probability-flow ODE (dequantized as score_sde);
    writes `<workdir>/bpd.json` with the mean, standard error, NFE and wall time."""
    exp, state = runs.restore_latest(config, workdir)
    ec = exp.eval
    mesh = sharding.make_mesh(exp.mesh)
    sharding.check_batch_size(ec.bpd_batch_size, mesh, "eval.bpd_batch_size")
    loader = exp.dataset.loader(
        "test", ec.bpd_batch_size, seed=exp.seed, shuffle=False, num_epochs=1
    )
    batches = (sharding.global_batch(b, mesh) for b in loader)
    if ec.bpd_max_examples:
        batches = itertools.islice(batches, -(-ec.bpd_max_examples // ec.bpd_batch_size))
    result = evaluate_bpd(
        jax.random.PRNGKey(exp.seed),
        # inside evaluate_bpd's jit: the weights gathered, the batch split (`jit_over_batch`)
        lambda params: exp.recipe.denoiser(exp.apply_fn, sharding.replicate(params, mesh)),
        batches,
        exp.dataset.num_bins,
        params=state.ema_params,
        num_dequantizations=ec.bpd_num_dequantizations,
        progress=jax.process_index() == 0,
        trace=ec.bpd_trace,
        num_probes=ec.bpd_num_probes,
        rtol=ec.bpd_rtol,
        atol=ec.bpd_atol,
        t_min=ec.bpd_t_min,
    )
    report = {"step": int(state.step), "method": exp.recipe.name, **result}
    if exp.recipe.vlb is not None and exp.dataset.num_bins is not None:
        report.update(_vlb_bpd(exp, state, loader, mesh))
    if jax.process_index() == 0:
        outputs.write_json(os.path.join(workdir, "bpd.json"), report)
    return report


def _vlb_bpd(exp, state, loader, mesh) -> dict:
    """The method's own variational bound on the same test examples, in bits/dim."""
    ec = exp.eval

    def per_example_bpd(params, key, x):
        denoiser = exp.recipe.denoiser(exp.apply_fn, params)
        nats = exp.recipe.vlb(denoiser, x, key, exp.dataset.num_bins)
        return vocabulary.bits_per_dim(nats, vocabulary.dim_of(x))

    per_example_bpd = sharding.jit_over_batch(per_example_bpd, mesh)
    batches = (sharding.global_batch(b, mesh) for b in loader)
    if ec.bpd_max_examples:
        batches = itertools.islice(batches, -(-ec.bpd_max_examples // ec.bpd_batch_size))
    key = jax.random.PRNGKey(exp.seed + 1)
    values = []
    for i, batch in enumerate(progress.bar(batches, desc="vlb")):
        bpd = per_example_bpd(state.ema_params, jax.random.fold_in(key, i), batch["x"])
        values.append(np.asarray(sharding.gather(bpd, mesh)))
    values = np.concatenate(values)
    return {
        "vlb_bpd_mean": float(values.mean()),
        "vlb_bpd_stderr": float(values.std(ddof=1) / np.sqrt(len(values))),
    }
