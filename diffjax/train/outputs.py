"""What a run leaves in its workdir besides checkpoints: sample grids and arrays, the loss
curve, and metrics.json with the offline sample-quality figures."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np

from diffjax.evaluation import plots
from diffjax.evaluation.sample_quality import SampleQuality
from diffjax.train import sharding, writer


def save_samples(workdir: str, name: str, x: np.ndarray, num_cols: int | None = None) -> str:
    """Writes `<workdir>/samples/<name>.png` (a grid of `num_cols` columns, default square, or
    a scatter for 2-D points) and `.npz`.

    Only process 0 writes; every process calls it after sampling together.
    """
    directory = os.path.join(workdir, "samples")
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, name)
    if jax.process_index() != 0:
        return path + ".png"
    np.savez(path + ".npz", samples=x)
    if x.ndim == 4:
        plots.save_image_grid(path + ".png", x, num_cols)
    else:
        plots.save_scatter(path + ".png", x)
    return path + ".png"


def grid_columns(exp) -> int | None:
    """Sample-grid columns: one per class for a conditional model (each row shows every class
    in turn, as `Experiment.sample_labels` draws them), else the default square grid."""
    return exp.conditioning.num_classes or None


def save_loss_curve(workdir: str) -> str:
    """Draws `<workdir>/loss_curve.png` from the run's metric history (process 0 only)."""
    path = os.path.join(workdir, "loss_curve.png")
    if jax.process_index() != 0:
        return path
    history = writer.read_history(workdir)
    plots.save_loss_curve(
        path, np.array([h["step"] for h in history]), np.array([h["loss"] for h in history])
    )
    return path


def read_json(path: str) -> dict:
    with open(path) as f:
        return json.load(f)


def write_json(path: str, payload: dict) -> None:
    """Writes JSON atomically (temporary file, then rename), creating the directory."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(payload, f, indent=2, sort_keys=True)
    os.replace(tmp, path)


def quality_ruler(exp, workdir: str) -> SampleQuality:
    """The offline sample-quality ruler of `exp`'s dataset (features cached in the workdir);
    a latent run's is its image dataset's."""
    train = exp.image_dataset.as_array("train")
    test = exp.image_dataset.as_array("test")
    return SampleQuality.fit(
        os.path.join(workdir, "eval_features"),
        train["x"],
        train["label"],
        test["x"],
        # One fixed key: the classifier, floor and ceiling are the same ruler for every run.
        jax.random.PRNGKey(0),
        test_y=test["label"],
    )


def sampler(exp, num_samples: int):
    """`exp.sample` of `num_samples` jitted as `(params, key) -> x`: the draws are split over
    the mesh's data x fsdp devices (`sharding.sample_sharding`), then gathered onto every
    device, so each host can read them."""
    mesh = sharding.make_mesh(exp.mesh)
    draw = sample_function(exp, mesh, num_samples)
    return lambda params, key: sharding.gather(draw(params, key), mesh)


def sample_function(exp, mesh, num_samples: int):
    """`exp.sample` jitted as `(params, key) -> x` with its draws split over data x fsdp."""
    return sharding.jit_over_batch(
        lambda params, key: exp.sample(params, key, num_samples),
        mesh,
        out_shardings=sharding.sample_sharding(mesh, num_samples),
    )


def evaluate_sample_quality(exp, state, workdir: str, num_samples: int) -> dict:
    """Frechet distance of `num_samples` EMA samples (key `exp.seed + 1`) to the test split, next
    to the floor (train vs test) and the ceiling (noise), written to `<workdir>/metrics.json`.

    For a class-conditional model of images it adds "classifier_accuracy_on_labels": the
    fraction of samples (clipped to [-1, 1]) the feature classifier assigns to the class they
    were drawn for (`Experiment.sample_labels`), next to its own test accuracy.
    """
    quality = quality_ruler(exp, workdir)
    sample = sampler(exp, num_samples)
    x = np.asarray(sample(state.ema_params, jax.random.PRNGKey(exp.seed + 1)))
    report = {"step": int(state.step), **quality.report(x)}
    if exp.latent is not None:  # LDM's scale factor of the latents the model was trained on
        report["latent_scale_factor"] = exp.latent.scale
    labels = exp.sample_labels(num_samples)
    if labels is not None and quality.classifier is not None:
        accuracy = quality.classifier.accuracy(np.clip(x, -1.0, 1.0), labels)
        report["classifier_accuracy_on_labels"] = float(accuracy)
    if jax.process_index() == 0:
        write_json(os.path.join(workdir, "metrics.json"), report)
    return report


CLASSIFIER_TIMES = (0.0, 0.25, 0.5, 0.75, 1.0)


def evaluate_classifier(exp, state, workdir: str) -> dict:
    """A noisy classifier's test accuracy on x_t at each t of CLASSIFIER_TIMES (t = 0 at the
    data; at t = 1 it can only be chance), written to `<workdir>/metrics.json`."""
    test = exp.dataset.as_array("test")
    mesh = sharding.make_mesh(exp.mesh)
    x, labels = sharding.put_split(test["x"], mesh), sharding.put_split(test["label"], mesh)
    process = exp.recipe.process_for(state.ema_params)

    def accuracy(params, key, t, x, labels):
        times = jnp.full(x.shape[:1], t)
        x_t, _ = process.marginal_sample(key, x, times)
        return jnp.mean(jnp.argmax(exp.apply_fn(params["model"], x_t, times), -1) == labels)

    accuracy = sharding.jit_over_batch(accuracy, mesh)

    key = jax.random.PRNGKey(exp.seed + 1)
    report = {
        "step": int(state.step),
        "accuracy_by_t": {
            str(t): float(accuracy(state.ema_params, jax.random.fold_in(key, i), t, x, labels))
            for i, t in enumerate(CLASSIFIER_TIMES)
        },
    }
    if jax.process_index() == 0:
        write_json(os.path.join(workdir, "metrics.json"), report)
    return report
