"""Writes the notebooks of this folder from the cells defined here, and executes them.

  python notebooks/build.py              # write every .ipynb (no outputs)
  python notebooks/build.py --execute    # ... and run each top to bottom with its full settings
  python notebooks/build.py --execute quickstart   # one notebook

The cells live in `notebooks/cells/<name>.py` (Python, so ruff checks them as code): a line
`# %% [markdown]` or `# %%` starts a markdown or a code cell, as in Jupytext's percent format;
markdown lines are comments. Each notebook's `metadata["diffjax"]` records what it was saved
from: the diffjax version, a SHA-256 of its cells and a SHA-256 of the signatures of the public
API it calls (`API` below). `tests/test_notebooks.py` recomputes all three, so a notebook saved
from older cells or against a changed API fails the tests until it is executed again.

Executing runs in the repository root (the notebooks import `configs`), with the kernel of this
Python, and saves the outputs into the notebook.
"""

import argparse
import hashlib
import importlib
import inspect
import os
import sys
import time

import nbformat

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
# Where the saved notebooks point Colab (assumed: the project's public GitHub repository).
GITHUB = "diffjax/diffjax"

# The public API each notebook calls: a change of any signature here means the saved outputs
# may no longer be what the cells produce.
API = {
    "quickstart": [
        "diffjax.train.train",
        "diffjax.train.derive",
        "diffjax.train.restore_latest",
        "diffjax.train.experiment.Experiment.with_sampling",
        "diffjax.train.experiment.Experiment.sample",
        "diffjax.evaluation.plots.image_grid",
    ],
    "processes_and_samplers": [
        "diffjax.processes.get",
        "diffjax.samplers.get",
        "diffjax.samplers.names",
        "diffjax.samplers.base.Sampler.__call__",
        "diffjax.analytic.gaussian.GaussianMixture.gaussian",
        "diffjax.analytic.gaussian.GaussianMixture.denoiser",
        "diffjax.analytic.gaussian.GaussianMixture.ode_solution",
        "diffjax.evaluation.frechet.gaussian_stats",
        "diffjax.evaluation.frechet.frechet_distance",
    ],
    "likelihood": [
        "diffjax.likelihood.nll",
        "diffjax.processes.get",
        "diffjax.data.toy2d.eight_gaussians_mixture",
        "diffjax.data.toy2d.log_prob",
        "diffjax.train.train",
        "diffjax.train.derive",
        "diffjax.train.generate.eval_bpd",
    ],
    "flows_and_few_step": [
        "diffjax.train.train",
        "diffjax.train.derive",
        "diffjax.train.load_config",
        "diffjax.train.restore_latest",
        "diffjax.train.reflow.reflow",
        "diffjax.train.experiment.Experiment.denoiser",
        "diffjax.train.experiment.Experiment.with_sampling",
        "diffjax.train.experiment.Experiment.sample",
        "diffjax.samplers.get",
        "diffjax.evaluation.sliced.sliced_w1",
    ],
    "guidance_and_editing": [
        "diffjax.guidance.classifier",
        "diffjax.guidance.classifier_free",
        "diffjax.editing.repaint",
        "diffjax.editing.ddim_invert",
        "diffjax.editing.ddim_decode",
        "diffjax.analytic.gaussian.GaussianMixture.class_log_posterior",
        "diffjax.samplers.get",
        "diffjax.train.train",
        "diffjax.train.derive",
        "diffjax.train.restore_latest",
        "diffjax.evaluation.plots.image_grid",
    ],
    "analytic_theory": [
        "diffjax.data.get",
        "diffjax.processes.get",
        "diffjax.samplers.get",
        "diffjax.analytic.score_machines.ideal",
        "diffjax.analytic.score_machines.local",
        "diffjax.analytic.score_machines.equivariant_local",
        "diffjax.analytic.score_machines.scheduled",
        "diffjax.analytic.score_machines.nearest_distance",
        "diffjax.analytic.receptive_field.calibrate",
        "diffjax.analytic.receptive_field.schedule",
        "diffjax.train.train",
        "diffjax.train.derive",
        "diffjax.train.restore_latest",
        "diffjax.train.experiment.Experiment.denoiser",
    ],
}
NAMES = tuple(API)

# The first code cell of every notebook, after its title.
SETUP = f"""\
# Colab: clone the repository (the notebooks read its configs/) and install it. Locally, in a
# clone with `pip install -e ".[notebooks]"`, this cell only moves to the repository's root.
import os
import subprocess
import sys

REPOSITORY = "https://github.com/{GITHUB}"  # assumed public home of diffjax
if "google.colab" in sys.modules:
    subprocess.run(["git", "clone", "-q", "--depth=1", REPOSITORY, "/content/diffjax"], check=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "-e", "/content/diffjax"], check=True
    )
    os.chdir("/content/diffjax")
elif os.path.basename(os.getcwd()) == "notebooks":
    os.chdir("..")
sys.path.insert(0, os.getcwd())  # configs/ is a folder of the repository, not of the package"""
PARAMETERS_TAG = "parameters"  # the cell holding `FAST = False`, which the tests replace


def _resolve(dotted: str):
    """The object named `dotted`: the longest importable module prefix, then attributes."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ModuleNotFoundError:
            continue
        for name in parts[i:]:
            obj = getattr(obj, name)
        return obj
    raise ModuleNotFoundError(dotted)


def api_sha256(name: str) -> str:
    """SHA-256 of `<dotted name><signature>` of every API entry of notebook `name`."""
    lines = [f"{dotted}{inspect.signature(_resolve(dotted))}" for dotted in API[name]]
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def badge(name: str) -> str:
    """The "Open in Colab" badge of notebook `name` (Markdown)."""
    url = f"https://colab.research.google.com/github/{GITHUB}/blob/main/notebooks/{name}.ipynb"
    return f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({url})"


def read_cells(name: str) -> list[tuple[str, str]]:
    """(kind, source) of every cell of notebook `name`: the title cell of `cells/<name>.py` with
    the Colab badge, the setup cell, then the file's other cells; kind "markdown" or "code"."""
    with open(os.path.join(HERE, "cells", f"{name}.py")) as f:
        lines = f.read().splitlines()
    cells, kind, body = [], None, []
    for line in [*lines, "# %%"]:
        if line.startswith("# %%"):
            if kind is not None:
                text = "\n".join(body).strip("\n")
                if kind == "markdown":
                    text = "\n".join(row[2:] if row.startswith("# ") else row[1:] for row in body)
                    text = text.strip("\n")
                cells.append((kind, text))
            kind = "markdown" if line.strip() == "# %% [markdown]" else "code"
            body = []
        elif kind is not None:
            body.append(line)
    (kind, title), *rest = cells
    heading, _, text = title.partition("\n")
    return [(kind, f"{heading}\n\n{badge(name)}\n{text}"), ("code", SETUP), *rest]


def sources_sha256(cells: list[tuple[str, str]]) -> str:
    return hashlib.sha256(repr(cells).encode()).hexdigest()


def notebook(name: str) -> nbformat.NotebookNode:
    """The notebook `name` without outputs, its metadata recording what it is built from."""
    import diffjax

    cells = read_cells(name)
    nb = nbformat.v4.new_notebook()
    for kind, source in cells:
        if kind == "markdown":
            nb.cells.append(nbformat.v4.new_markdown_cell(source))
        else:
            cell = nbformat.v4.new_code_cell(source)
            if source.startswith("FAST = "):
                cell.metadata["tags"] = [PARAMETERS_TAG]
            nb.cells.append(cell)
    for cell in nb.cells:  # stable ids, so rebuilding an unchanged notebook changes nothing
        cell.id = f"{name[:20]}-{nb.cells.index(cell)}"
    nb.metadata = {
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
        "colab": {"provenance": []},
        "diffjax": {
            "version": diffjax.__version__,
            "sources_sha256": sources_sha256(cells),
            "api_sha256": api_sha256(name),
        },
    }
    return nb


def parameters_cell(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    (cell,) = [c for c in nb.cells if PARAMETERS_TAG in c.metadata.get("tags", [])]
    return cell


def execute(nb: nbformat.NotebookNode, fast: bool, timeout: int = 1800) -> nbformat.NotebookNode:
    """Runs `nb` in place in the repository root with `FAST = fast`; raises on a failing cell."""
    from nbclient import NotebookClient

    parameters_cell(nb).source = f"FAST = {fast}"
    client = NotebookClient(
        nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": ROOT}}
    )
    client.execute()
    return nb


def path_of(name: str) -> str:
    return os.path.join(HERE, f"{name}.ipynb")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", default=list(NAMES), choices=[[], *NAMES])
    parser.add_argument("--execute", action="store_true", help="run with FAST = False, save")
    args = parser.parse_args()
    for name in args.names:
        nb = notebook(name)
        if args.execute:
            start = time.perf_counter()
            execute(nb, fast=False)
            nb.metadata["diffjax"]["seconds"] = round(time.perf_counter() - start)
            print(f"{name}: {nb.metadata['diffjax']['seconds']} s", file=sys.stderr)
        nbformat.write(nb, path_of(name))


if __name__ == "__main__":
    main()
