"""The notebooks: saved from the current cells and API with a full run's outputs (fast), and
executed top to bottom with their shortened settings, `FAST = True` (slow)."""

import importlib.util
import os

import nbformat
import pytest

_SPEC = importlib.util.spec_from_file_location(
    "notebooks_build",
    os.path.join(os.path.dirname(__file__), os.pardir, "notebooks", "build.py"),
)
build = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(build)

# Per notebook: the code cells (by index among code cells) that draw a figure (image/png).
FIGURES = {
    "quickstart": (3, 4, 5),  # loss curve, three samplers' grids, Frechet bars
    # the processes' alpha / sigma / log-SNR; deterministic and stochastic samplers' errors
    "processes_and_samplers": (2, 4, 5),
    # Hutchinson errors, error vs NFE, density heat-maps, digits bits/dim
    "likelihood": (3, 4, 5, 6),
    "flows_and_few_step": (3, 4),  # trajectories and straightness, 1- and 2-step samples
    # exact classifier guidance, RePaint and DDIM inversion, classifier-free guidance on digits
    "guidance_and_editing": (2, 3, 4),
    # the machines' samples, distances to the training set, receptive field and r^2, grids
    "analytic_theory": (2, 3, 5),
}


def _code_cells(nb) -> list:
    return [c for c in nb.cells if c.cell_type == "code"]


def _figures(nb) -> list[int]:
    """Indices (among code cells) of the cells with an image/png output."""
    return [
        i
        for i, cell in enumerate(_code_cells(nb))
        if any("image/png" in out.get("data", {}) for out in cell.get("outputs", []))
    ]


def _errors(nb) -> list[str]:
    return [
        f"{out.ename}: {out.evalue}"
        for cell in _code_cells(nb)
        for out in cell.get("outputs", [])
        if out.output_type == "error"
    ]


def test_every_notebook_has_its_cells_file_and_api():
    cells = sorted(f[: -len(".py")] for f in os.listdir(os.path.join(build.HERE, "cells")))
    assert cells == sorted(build.NAMES) == sorted(FIGURES)


def test_an_edited_cell_or_a_changed_signature_changes_the_recorded_hashes(monkeypatch):
    import diffjax.train

    cells = build.read_cells("quickstart")
    kind, source = cells[-1]
    assert build.sources_sha256([*cells[:-1], (kind, source + " ")]) != build.sources_sha256(cells)
    before = build.api_sha256("quickstart")
    monkeypatch.setattr(diffjax.train, "derive", lambda config, updates: config)
    assert build.api_sha256("quickstart") != before


@pytest.mark.parametrize("name", build.NAMES)
def test_saved_notebook_is_a_full_run_of_the_current_cells_and_api(name):
    """The saved notebook's cells are `cells/<name>.py` as they are now, its recorded hashes
    match the cells and the current signatures of the API it calls, and it carries the outputs
    of a full run (FAST = False) with every figure and no error: otherwise run
    `python notebooks/build.py --execute <name>`."""
    saved = nbformat.read(build.path_of(name), as_version=4)
    fresh = build.notebook(name)
    stale = "saved from older code: run `python notebooks/build.py --execute " + name + "`"
    assert [c.source for c in saved.cells] == [c.source for c in fresh.cells], stale
    assert build.parameters_cell(saved).source == "FAST = False"
    recorded = dict(saved.metadata["diffjax"])
    assert recorded.pop("seconds") > 0, "the notebook was not executed"
    assert recorded == fresh.metadata["diffjax"], stale
    assert not _errors(saved)
    assert all(c.execution_count for c in _code_cells(saved)), "not every cell ran"
    assert _figures(saved) == list(FIGURES[name]), stale


@pytest.mark.slow
@pytest.mark.parametrize("name", build.NAMES)
def test_notebook_runs_top_to_bottom_with_fast_settings(name, monkeypatch):
    # The kernel imports diffjax and configs from this checkout (its cwd is the repository root).
    monkeypatch.setenv("PYTHONPATH", build.ROOT)
    nb = build.execute(build.notebook(name), fast=True)
    assert not _errors(nb)
    assert all(c.execution_count for c in _code_cells(nb))
    assert _figures(nb) == list(FIGURES[name])
