"""experiments/benchmarks/peers.py and report.py: the diffjax side, the report, the sizes.

The tests above the line need no PyTorch (CI does not install the `peers` extra); the ones
below it skip without it and check that the diffusers networks are ours: equal parameter
counts, and for the 8x8 UNet equal outputs on copied weights.
"""

import builtins
import json
import os
import re

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.benchmarks import peers, report

TINY = peers.Case(
    batch=2,
    shape=(4, 4, 1),
    unet=dict(ch=8, ch_mult=(1,), num_res_blocks=1, attn_resolutions=(), num_groups=4),
    diffusers={},
    params=0,
)


def test_diffjax_param_counts_match_the_cases():
    for name, case in peers.CASES.items():
        assert peers.diffjax_param_count(case) == case.params, name


def test_unequal_param_counts_raise_naming_both():
    peers.check_param_counts("x", {"diffjax": 5, "pytorch": 5})
    with pytest.raises(ValueError, match=r"case x: .*diffjax 1,000, pytorch 1,001"):
        peers.check_param_counts("x", {"diffjax": 1000, "pytorch": 1001})


def test_summarize_medians_and_ratios():
    times = {
        "diffjax": {"forward": [0.1, 0.3, 0.2], "train_step": [1.0], "ddim50": []},
        "pytorch": {"forward": [0.4, 0.4, 0.5], "train_step": [0.5, 0.5], "ddim50": [2.0]},
    }
    summary = peers.summarize(times)
    assert list(summary["median_ms"]) == ["forward", "train_step"]  # no diffjax ddim50 times
    np.testing.assert_allclose(summary["median_ms"]["forward"]["diffjax"], 200.0)
    np.testing.assert_allclose(summary["median_ms"]["forward"]["pytorch"], 400.0)
    np.testing.assert_allclose(summary["ratio_diffjax_over_pytorch"]["forward"], 0.5)
    np.testing.assert_allclose(summary["ratio_diffjax_over_pytorch"]["train_step"], 2.0)
    assert "ddim50_over_50_forwards" not in summary
    times["diffjax"]["ddim50"] = [11.0]  # 50 forwards of 0.2 s, and 1 s of loop
    overhead = peers.summarize(times)["ddim50_over_50_forwards"]
    np.testing.assert_allclose([overhead["diffjax"], overhead["pytorch"]], [1.1, 0.1])


def test_jax_side_runs_every_measure_at_tiny_size():
    side = peers.JaxSide(TINY, seed=0)
    assert side.num_params == peers.diffjax_param_count(TINY)
    assert set(side.compile_s) == set(peers.MEASURES)
    before = jax.tree.map(np.asarray, side.state[0])
    for measure in peers.MEASURES:
        side.run(measure)
    side.run("train_step")  # the donated state is threaded through
    assert side.step_count == 2
    moved = jax.tree.map(lambda a, b: np.abs(a - np.asarray(b)).max(), before, side.state[0])
    assert max(jax.tree.leaves(moved)) > 0
    out = side.ddim(side.params, side.noise)
    assert out.shape == side.noise.shape and np.isfinite(np.asarray(out)).all()


def test_missing_torch_exits_with_the_install_hint(monkeypatch):
    real_import = builtins.__import__

    def no_torch(name, *args, **kwargs):
        if name.split(".")[0] in ("torch", "diffusers"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_torch)
    monkeypatch.setattr(
        peers.importlib, "import_module", lambda name: no_torch(name, fromlist=("x",))
    )
    with pytest.raises(SystemExit, match=re.escape('pip install -e ".[peers]"')):
        peers.import_peers()


def test_write_report_is_atomic_json_with_the_machine(tmp_path):
    path = tmp_path / "sub" / "r.json"
    written = report.write_report(str(path), {"results": [{"a": 1}]})
    loaded = json.loads(path.read_text())
    assert loaded == written and loaded["results"] == [{"a": 1}]
    for key in ("platform", "cpu_model", "cpu_count", "jax", "jaxlib", "device_count"):
        assert key in loaded["machine"]
    assert os.listdir(path.parent) == ["r.json"]  # no temporary file left behind
    report.write_report(str(path), {"machine": "x86_64"})  # a benchmark's own machine field
    assert json.loads(path.read_text()) == {"machine": "x86_64"}


def test_plot_ratios_writes_a_png(tmp_path):
    results = [
        {"case": "a", "batch": 2, "ratio_diffjax_over_pytorch": {"forward": 0.5, "ddim50": 1.5}},
        {"case": "b", "batch": 4, "ratio_diffjax_over_pytorch": {"train_step": 2.0}},
    ]
    peers.plot_ratios(results, str(tmp_path / "r.png"))
    assert (tmp_path / "r.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ---- with PyTorch and diffusers (pip install -e ".[peers]") ---------------------------------

_RESNET = {
    "norm1": "GroupNorm_0",
    "conv1": "Conv_0",
    "time_emb_proj": "Dense_0",
    "norm2": "GroupNorm_1",
    "conv2": "Conv_1",
    "conv_shortcut": "Conv_2",
}


def _diffjax_name(torch_name: str, num_levels: int) -> tuple[str, ...]:
    """The diffjax module path of a diffusers UNet2DModel parameter's module."""
    parts = torch_name.split(".")
    if parts[0] == "conv_norm_out":
        return ("GroupNorm_0",)
    if parts[0] in ("conv_in", "conv_out"):
        return (parts[0],)
    if parts[0] == "time_embedding":
        return ("time_embedding", {"linear_1": "dense_0", "linear_2": "dense_1"}[parts[1]])
    if parts[0] == "mid_block":
        block = "mid_attn" if parts[1] == "attentions" else f"mid_{parts[2]}"
        rest = parts[3:]
    else:
        down = parts[0] == "down_blocks"
        side, level = ("down", int(parts[1])) if down else ("up", num_levels - 1 - int(parts[1]))
        if parts[2] in ("downsamplers", "upsamplers"):
            return (f"{side}_{level}_resample",)
        block = f"{side}_{level}_{parts[3]}" + ("_attn" if parts[2] == "attentions" else "")
        rest = parts[4:]
    if block.endswith("attn"):
        inner = {"group_norm": ("GroupNorm_0",), "to_out": ("SelfAttention_0", "out")}
        return (block, *inner.get(rest[0], ("SelfAttention_0", "qkv")))
    return (block, _RESNET[rest[0]])


def diffjax_params_of(model, num_levels: int):
    """The diffjax parameter tree holding the weights of a diffusers UNet2DModel."""
    weights = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    flat = {}
    for name, w in weights.items():
        module, kind = name.rsplit(".", 1)
        path = _diffjax_name(module, num_levels)
        if module.endswith(("to_k", "to_v")):
            continue  # taken with to_q
        if module.endswith("to_q"):
            w = np.concatenate([weights[f"{module[:-1]}{c}.{kind}"] for c in "qkv"], axis=0)
        if kind == "weight" and w.ndim == 4:
            flat[(*path, "kernel")] = w.transpose(2, 3, 1, 0)  # [out, in, kh, kw] -> HWIO
        elif kind == "weight" and w.ndim == 2:
            flat[(*path, "kernel")] = w.T
        else:  # a GroupNorm's weight, or a bias
            flat[(*path, "scale" if kind == "weight" else "bias")] = w
    return flax.traverse_util.unflatten_dict(flat)


@pytest.fixture(scope="module")
def torch_and_diffusers():
    torch = pytest.importorskip("torch")
    diffusers = pytest.importorskip("diffusers")
    return torch, diffusers


def test_diffusers_unet_has_our_param_count(torch_and_diffusers):
    _, diffusers = torch_and_diffusers
    case = peers.CASES["unet_8x8"]
    model = diffusers.UNet2DModel(**case.diffusers)
    assert sum(p.numel() for p in model.parameters()) == case.params


def test_diffusers_unet_equals_ours_on_copied_weights(torch_and_diffusers):
    torch, diffusers = torch_and_diffusers
    case = peers.CASES["unet_8x8"]
    torch.manual_seed(0)
    model = diffusers.UNet2DModel(**case.diffusers).eval()
    params = diffjax_params_of(model, num_levels=len(case.diffusers["block_out_channels"]))
    ours = peers.diffjax_model(case)
    x = jax.random.normal(jax.random.key(0), (4, *case.shape))
    t = jnp.asarray([0.001, 0.25, 0.5, 0.999])
    expected = jax.eval_shape(ours.init, jax.random.key(1), x, t)["params"]
    assert jax.tree.map(np.shape, params) == jax.tree.map(np.shape, flax.linen.meta.unbox(expected))
    out = jax.jit(ours.apply)({"params": params}, x, t)
    x_nchw = torch.tensor(np.asarray(x).transpose(0, 3, 1, 2))
    with torch.inference_mode():
        ref = model(x_nchw, torch.tensor(np.asarray(1000 * t))).sample.numpy()  # diffusers' t
    ref = ref.transpose(0, 2, 3, 1)  # NCHW -> NHWC
    assert np.abs(ref).mean() > 0.05  # torch's init leaves no branch at zero
    np.testing.assert_allclose(out, ref, atol=1e-4, rtol=1e-4)
