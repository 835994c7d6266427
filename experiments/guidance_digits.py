"""Guidance and editing on scikit-learn's digits, every model trained through the CLI path:
  ddpm_digits_cond   class-conditional DDPM with label dropout (p_uncond 0.1): conditional,
                     classifier-free guided, and (null label) unconditional in one network
  classifier_digits  the noisy classifier of classifier guidance, on the same process
The judge is the eval classifier of metrics.json (a feature MLP on clean digits, ~93% accurate on
real test digits): for each guidance scale, the fraction of 500 samples it assigns to the class
they were drawn for, and the offline Frechet distance to the test split (floor: real train vs
test). Classifier-free guidance: (1 + w) cond - w uncond, w in CFG_SCALES. Classifier guidance of
the unconditional model (null label): eps - s sigma grad log p(y | x_t), s in CLASSIFIER_SCALES.
RePaint on test digits with the lower half (and a random half of the pixels) unknown: accuracy of
the inpainted digits, next to the noise-filled baseline and the originals, for several jump
lengths j and resamplings r.
DDIM inversion: reconstruction RMSE of invert-then-decode at 10, 50 and 200 steps.
  python experiments/guidance_digits.py --out experiments/results/guidance_digits.json
writes the JSON and a PNG beside it; the runs stay in --workdir (rerunning reuses them).
"""

import dataclasses
import json
import os
import time

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
from absl import app, flags, logging
from jax.tree_util import Partial

from configs import classifier_digits, ddpm_digits_cond
from diffjax import denoisers, editing, guidance
from diffjax.train import loop, outputs, runs, settings

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

_OUT = flags.DEFINE_string("out", "experiments/results/guidance_digits.json", "JSON output.")
_WORKDIR = flags.DEFINE_string("workdir", "/tmp/diffjax_guidance_digits", "Where runs live.")
_STEPS = flags.DEFINE_integer("steps", 2000, "Training steps of each model.")
_SAMPLES = flags.DEFINE_integer("num_samples", 500, "Samples per guidance scale.")

CFG_SCALES = (0.0, 0.5, 1.0, 2.0, 3.0, 5.0)
CLASSIFIER_SCALES = (0.0, 1.0, 2.0, 4.0, 8.0, 16.0)
# RePaint (jump length j, resamplings r): r = 1 is plain replacement; r at j = 10, then j at r = 10.
REPAINT_SETTINGS = ((10, 1), (10, 5), (10, 10), (1, 10), (5, 10))
INVERSION_STEPS = (10, 50, 200)


def _train(module, workdir: str):
    config = module.get_config()
    config.training.num_steps = _STEPS.value
    if not os.path.exists(os.path.join(workdir, "metrics.json")):
        loop.train(config, workdir)
    return runs.restore_latest(config, workdir)


def main(argv):
    del argv
    started = time.time()
    root = _WORKDIR.value
    exp, state = _train(ddpm_digits_cond, os.path.join(root, "ddpm_digits_cond"))
    cls_exp, cls_state = _train(classifier_digits, os.path.join(root, "classifier_digits"))
    ruler = outputs.quality_ruler(exp, os.path.join(root, "ddpm_digits_cond"))
    n, classes = _SAMPLES.value, exp.dataset.num_classes
    labels = jnp.arange(n, dtype=jnp.int32) % classes
    key = jax.random.PRNGKey(1)
    params = state.ema_params

    def judge(x) -> dict:
        x = np.clip(np.asarray(x), -1.0, 1.0)
        return {
            "accuracy": float(ruler.classifier.accuracy(x, labels)),
            "frechet": ruler.frechet(x),
        }

    cfg = []
    for w in CFG_SCALES:
        g = settings.GuidanceConfig("classifier_free", w, (0.0, 1.0), "")
        guided = dataclasses.replace(exp, guidance=g)
        cfg.append({"scale": w, **judge(jax.jit(lambda p, e=guided: e.sample(p, key, n))(params))})
        logging.warning("CFG w=%s: %s", w, cfg[-1])

    process = exp.recipe.process_for(params)
    x_init = process.prior_sample(jax.random.PRNGKey(2), (n, *exp.dataset.shape))
    null = jnp.full_like(labels, classes)
    logits = Partial(cls_exp.apply_fn, cls_state.ema_params["model"])

    @jax.jit
    def classifier_guided(p, s):
        uncond = exp.recipe.denoiser(exp.apply_fn, p, null)
        den = denoisers.clip_x0(guidance.classifier(uncond, logits, labels, s))
        return exp.sampler(key, den, x_init, num_steps=exp.sample_num_steps)

    cg = []
    for s in CLASSIFIER_SCALES:
        cg.append({"scale": s, **judge(classifier_guided(params, jnp.float32(s)))})
        logging.warning("classifier s=%s: %s", s, cg[-1])

    test = exp.dataset.as_array("test")
    x, y = np.asarray(test["x"][:n]), np.asarray(test["label"][:n])
    model = denoisers.clip_x0(exp.recipe.denoiser(exp.apply_fn, params, jnp.full_like(y, classes)))
    acc = lambda images: float(ruler.classifier.accuracy(np.clip(images, -1, 1), y))  # noqa: E731
    masks = {"lower_half": np.zeros(x.shape[1:], np.float32)}
    masks["lower_half"][: x.shape[1] // 2] = 1.0
    masks["random_half"] = np.asarray(
        jax.random.uniform(jax.random.PRNGKey(3), x.shape[1:]) < 0.5, np.float32
    )
    noise = np.clip(np.asarray(jax.random.normal(jax.random.PRNGKey(4), x.shape)), -1, 1)
    repaint = {}
    for name, mask in masks.items():
        entry = {"original": acc(x), "noise_filled": acc(mask * x + (1 - mask) * noise)}
        for j, r in REPAINT_SETTINGS:
            run = jax.jit(lambda d, xs, j=j, r=r, m=mask: editing.repaint(key, d, xs, m, 100, j, r))
            out = run(model, x)
            known_error = float(np.max(np.abs(np.asarray(out) - x) * mask))
            entry[f"j={j},r={r}"] = {"accuracy": acc(out), "known_max_error": known_error}
        repaint[name] = entry
        logging.warning("RePaint %s: %s", name, entry)

    inversion = {}
    for steps in INVERSION_STEPS:
        z = jax.jit(editing.ddim_invert, static_argnums=2)(model, x, steps)
        back = jax.jit(editing.ddim_decode, static_argnums=2)(model, z, steps)
        inversion[str(steps)] = float(np.sqrt(np.mean(np.square(np.asarray(back) - x))))
    logging.warning("DDIM inversion RMSE: %s", inversion)

    floor = ruler.report(np.asarray(exp.dataset.as_array("train")["x"][:n]))
    results = {
        "config": {"steps": _STEPS.value, "num_samples": n, "workdir": root},
        "classifier_free": cfg,
        "classifier": cg,
        "frechet_floor_train_vs_test": floor["frechet_floor_train_vs_test"],
        "eval_classifier_test_accuracy": ruler.classifier_test_accuracy,
        "noisy_classifier_accuracy_by_t": outputs.read_json(
            os.path.join(root, "classifier_digits", "metrics.json")
        )["accuracy_by_t"],
        "repaint": repaint,
        "ddim_inversion_rmse": inversion,
        "seconds": time.time() - started,
    }
    os.makedirs(os.path.dirname(_OUT.value) or ".", exist_ok=True)
    with open(_OUT.value, "w") as f:
        json.dump(results, f, indent=2)

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for name, entries in (("classifier-free (w)", cfg), ("classifier (s)", cg)):
        fr, ac = [e["frechet"] for e in entries], [e["accuracy"] for e in entries]
        axes[0].plot(fr, ac, "o-", label=name)
        for e in entries:
            axes[0].annotate(f"{e['scale']:g}", (e["frechet"], e["accuracy"]), fontsize=7)
    axes[0].axvline(results["frechet_floor_train_vs_test"], color="k", ls=":", label="floor")
    axes[0].set(xlabel="Frechet distance to test", ylabel="accuracy on requested class")
    axes[0].legend(fontsize=8)
    names = list(repaint)
    cols = ["noise_filled", *[f"j={j},r={r}" for j, r in REPAINT_SETTINGS], "original"]
    for i, name in enumerate(names):
        vals = [repaint[name][c]["accuracy"] if c.startswith("j=") else repaint[name][c]
                for c in cols]  # fmt: skip
        axes[1].bar(np.arange(len(cols)) + 0.4 * i, vals, width=0.4, label=name)
    axes[1].set_xticks(np.arange(len(cols)) + 0.2, cols, fontsize=7, rotation=20)
    axes[1].set(ylabel="eval-classifier accuracy", title="RePaint (100 steps)")
    axes[1].legend(fontsize=8)
    fig.suptitle(f"digits, {_STEPS.value} training steps per model (CLI runs)")
    fig.tight_layout()
    fig.savefig(os.path.splitext(_OUT.value)[0] + ".png", dpi=120)
    print(json.dumps({k: results[k] for k in ("classifier_free", "classifier")}, indent=1))


if __name__ == "__main__":
    app.run(main)
