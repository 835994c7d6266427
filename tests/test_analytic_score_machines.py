"""The score machines against the empirical mixture score and brute-force NumPy posteriors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffjax import processes, samplers
from diffjax.analytic import score_machines as sm
from diffjax.analytic.gaussian import GaussianMixture

VP = processes.get("vp")
RF = processes.get("rectified_flow")
TRAIN = jax.random.uniform(jax.random.key(0), (7, 5, 6, 2), minval=-1.0, maxval=1.0)
X = jax.random.normal(jax.random.key(1), (3, 5, 6, 2))
T = jnp.array([0.2, 0.5, 0.8])


def x0_of(machine, process=VP):
    return np.asarray(jax.jit(lambda x, t: machine.denoiser(process).x0(x, t))(X, T))


def softmax_mean(dist, values, t, process):
    """sum_k softmax_k(-dist_k / (2 sigma^2)) values_k; dist [B, ..., K], values [K, ...]."""
    sigma = np.asarray(process.sigma(t), np.float64).reshape((-1,) + (1,) * (dist.ndim - 1))
    logits = -dist / (2 * sigma**2)
    w = np.exp(logits - logits.max(-1, keepdims=True))
    return np.tensordot(w / w.sum(-1, keepdims=True), values, axes=1)


def padded_windows(images, patch_size):
    """[N, H, W, P, P, C]: the zero-padded window around every pixel, by slicing."""
    r = patch_size // 2
    images = np.asarray(images, np.float64)
    n, h, w, c = images.shape
    padded = np.pad(images, ((0, 0), (r, r), (r, r), (0, 0)))
    out = np.zeros((n, h, w, patch_size, patch_size, c))
    for i in range(h):
        for j in range(w):
            out[:, i, j] = padded[:, i : i + patch_size, j : j + patch_size]
    return out


def cut(h, w, patch_size):
    """[H, W] tuples (rows off top, bottom, columns off left, right) of each pixel's window."""
    r = patch_size // 2
    rows = [(max(r - i, 0), max(i + r - h + 1, 0)) for i in range(h)]
    cols = [(max(r - j, 0), max(j + r - w + 1, 0)) for j in range(w)]
    return [[row + col for col in cols] for row in rows]


@pytest.mark.parametrize("process", [VP, RF], ids=["vp", "rectified_flow"])
def test_ideal_score_is_the_empirical_mixture_score(process):
    # The empirical distribution is a mixture of deltas: equal weights, zero covariances.
    flat = TRAIN.reshape(TRAIN.shape[0], -1)
    mix = GaussianMixture(
        jnp.full((flat.shape[0],), 1.0 / flat.shape[0]),
        flat,
        jnp.zeros((flat.shape[0], flat.shape[1], flat.shape[1])),
    )
    got = jax.jit(lambda x, t: sm.ideal(TRAIN, chunk_size=3).denoiser(process).score(x, t))(X, T)
    want = mix.score(X.reshape(X.shape[0], -1), T, process).reshape(X.shape)
    np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-4)


@pytest.mark.parametrize("chunk_size", [1, 3, 7, 100])
def test_ideal_chunked_log_sum_exp_equals_the_direct_softmax(chunk_size):
    x = np.asarray(X, np.float64).reshape(3, 1, -1)
    d = np.asarray(TRAIN, np.float64).reshape(7, -1)
    alpha = np.asarray(VP.alpha(T), np.float64).reshape(3, 1, 1)
    dist = np.sum((x - alpha * d[None]) ** 2, -1)  # [B, N]
    want = softmax_mean(dist, d, T, VP).reshape(X.shape)
    got = x0_of(sm.ideal(TRAIN, chunk_size=chunk_size))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_ideal_machine_samples_training_images():
    train = jax.random.uniform(jax.random.key(2), (5, 4, 4, 1), minval=-1.0, maxval=1.0)
    denoiser = sm.ideal(train, chunk_size=2).denoiser(VP)
    sampler = samplers.get("ddim", eta=0.0)
    x1 = VP.prior_sample(jax.random.key(3), (16, 4, 4, 1))
    x = jax.jit(lambda x1: sampler(jax.random.key(4), denoiser, x1, num_steps=200))(x1)
    dist = jnp.sqrt(jnp.sum(jnp.square(x[:, None] - train[None]), axis=(2, 3, 4)))  # [16, 5]
    np.testing.assert_array_less(dist.min(1), 1e-3)


@pytest.mark.parametrize("chunk_size", [2, 7])
@pytest.mark.parametrize("patch_size", [1, 3, 5])
def test_local_matches_the_windowed_posterior(patch_size, chunk_size):
    alpha = np.asarray(VP.alpha(T), np.float64).reshape(3, 1, 1, 1, 1, 1, 1)
    xw = padded_windows(X, patch_size)[:, None]  # [B, 1, H, W, P, P, C]
    dw = padded_windows(TRAIN, patch_size)[None]  # [1, N, H, W, P, P, C]
    dist = np.moveaxis(np.sum((xw - alpha * dw) ** 2, axis=(4, 5, 6)), 1, -1)  # [B, H, W, N]
    w = softmax_mean(dist, np.eye(7), T, VP)  # [B, H, W, N]
    want = np.einsum("bhwn,nhwc->bhwc", w, np.asarray(TRAIN, np.float64))
    got = x0_of(sm.local(TRAIN, patch_size, chunk_size=chunk_size))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_local_with_a_covering_window_is_ideal():
    # P = 2 max(H, W) - 1: the window of every pixel holds the whole image.
    np.testing.assert_allclose(
        x0_of(sm.local(TRAIN, 11, chunk_size=3)), x0_of(sm.ideal(TRAIN)), rtol=1e-4, atol=1e-5
    )


def brute_force_els(patch_size, boundary_aware):
    """The ELS posterior mean from an explicit list of every dataset patch (NumPy)."""
    h, w = TRAIN.shape[1:3]
    alpha = np.asarray(VP.alpha(T), np.float64)
    query = padded_windows(X, patch_size).reshape(3, h * w, -1)
    bank = padded_windows(TRAIN, patch_size).reshape(7 * h * w, -1)
    centres = np.asarray(TRAIN, np.float64).reshape(7 * h * w, -1)
    kinds = [k for row in cut(h, w, patch_size) for k in row]  # [H W]
    out = np.zeros((3, h * w, TRAIN.shape[-1]))
    for p in range(h * w):
        rows = [k for k in range(7 * h * w) if not boundary_aware or kinds[k % (h * w)] == kinds[p]]
        dist = np.sum((query[:, p, None] - alpha[:, None, None] * bank[rows][None]) ** 2, -1)
        out[:, p] = softmax_mean(dist, centres[rows], T, VP)
    return out.reshape(X.shape)


@pytest.mark.parametrize("boundary_aware", [False, True])
@pytest.mark.parametrize("patch_size", [3, 5])
def test_els_matches_the_posterior_over_all_patches(patch_size, boundary_aware):
    machine = sm.equivariant_local(TRAIN, patch_size, boundary_aware, chunk_size=3)
    np.testing.assert_allclose(
        x0_of(machine), brute_force_els(patch_size, boundary_aware), rtol=1e-4, atol=1e-5
    )


def test_els_of_one_constant_image_is_ideal():
    train = jnp.full((1, 5, 6, 2), 0.3)
    ideal = x0_of(sm.ideal(train))
    np.testing.assert_allclose(ideal, 0.3, rtol=1e-6)
    for boundary_aware in (False, True):
        els = sm.equivariant_local(train, 3, boundary_aware)
        np.testing.assert_allclose(x0_of(els), ideal, rtol=1e-6)


def test_boundary_aware_els_is_local_where_the_padding_pattern_is_unique():
    # A corner's window is cut as no other pixel's: the boundary-aware machine may only use the
    # N patches at that corner, which is the LS machine's posterior there. The plain machine,
    # which also draws on interior patches, is not.
    aware = x0_of(sm.equivariant_local(TRAIN, 3, boundary_aware=True))
    plain = x0_of(sm.equivariant_local(TRAIN, 3))
    local = x0_of(sm.local(TRAIN, 3))
    corners = (slice(None), [0, 0, -1, -1], [0, -1, 0, -1])
    np.testing.assert_allclose(aware[corners], local[corners], rtol=1e-4, atol=1e-5)
    assert np.abs(plain[corners] - local[corners]).max() > 1e-2


def test_padding_pattern_classes():
    # P = 5 on 8 x 8: rows 0, 1, 2..5, 6, 7 are cut differently, so 5 x 5 classes; one interior.
    ids = sm.padding_pattern(8, 8, 5)
    assert len(np.unique(ids)) == 25
    assert len(np.unique(ids[2:6, 2:6])) == 1
    kinds = cut(8, 8, 5)
    for i, j, k, m in [(0, 0, 0, 1), (0, 3, 0, 4), (2, 2, 5, 5), (1, 6, 1, 7)]:
        assert (ids[i, j] == ids[k, m]) == (kinds[i][j] == kinds[k][m])


@pytest.mark.parametrize(
    ("name", "build"),
    [
        ("ddpm", lambda train: sm.ideal(train)),
        ("heun", lambda train: sm.local(train, 3)),
        ("dpm_solver_pp", lambda train: sm.equivariant_local(train, 3, True)),
    ],
)
def test_machines_sample_with_samplers(name, build):
    # A stochastic, a second-order ODE and a multistep sampler: each only sees a Denoiser.
    train = jax.random.uniform(jax.random.key(5), (4, 4, 4, 1), minval=-1.0, maxval=1.0)
    sampler = samplers.get(name)
    x1 = VP.prior_sample(jax.random.key(6), (2, 4, 4, 1))
    x = jax.jit(lambda x1, m: sampler(jax.random.key(7), m.denoiser(VP), x1, num_steps=8))(
        x1, build(train)
    )
    assert x.shape == x1.shape and bool(jnp.all(jnp.isfinite(x)))


def test_memory_stays_bounded_where_the_unchunked_softmax_would_not_fit():
    # [B H W, N H W] float32 logits would take 4 * 4096 * 512000 B = 8.4 GB; the chunked scan
    # holds one chunk's [4096, 16 * 256] logits and its patches.
    train = jax.ShapeDtypeStruct((2000, 16, 16, 1), jnp.float32)
    x = jax.ShapeDtypeStruct((16, 16, 16, 1), jnp.float32)
    t = jax.ShapeDtypeStruct((16,), jnp.float32)

    def x0(train, x, t):
        return sm.EquivariantLocal(train, 3, True, 16).x0_mean(x, t, VP)

    memory = jax.jit(x0).lower(train, x, t).compile().memory_analysis()
    assert memory.temp_size_in_bytes < 200e6
    # and it runs: a smaller training set so the test stays fast
    small = jax.random.uniform(jax.random.key(8), (40, 16, 16, 1), minval=-1.0, maxval=1.0)
    noisy = jax.random.normal(jax.random.key(9), (16, 16, 16, 1))
    out = jax.jit(x0)(small, noisy, jnp.full((16,), 0.5))
    assert bool(jnp.all(jnp.isfinite(out)))


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: sm.local(TRAIN, 4), "must be odd"),
        (lambda: sm.equivariant_local(TRAIN, 0), "must be odd"),
        (lambda: sm.equivariant_local(TRAIN, 13), "larger than images"),
        (lambda: sm.ideal(TRAIN[:0]), "empty"),
        (lambda: sm.ideal(TRAIN[0]), r"\[N, H, W, C\]"),
        (lambda: sm.ideal(TRAIN, chunk_size=0), "chunk_size"),
        (lambda: sm.get("elss", TRAIN), "valid score machines: els, els_scheduled, ideal, ls"),
    ],
)
def test_bad_input_is_a_clear_error(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_scheduled_machine_switches_patch_size_at_its_edges():
    machine = sm.scheduled(TRAIN, (3, 5), (0.5,), chunk_size=4)
    for t, p in [(0.3, 3), (0.5, 5), (0.7, 5)]:
        times = jnp.full((3,), t)
        got = jax.jit(lambda x, t: machine.x0_mean(x, t, VP))(X, times)
        want = sm.equivariant_local(TRAIN, p, chunk_size=4).x0_mean(X, times, VP)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="increasing"):
        sm.scheduled(TRAIN, (3, 5), (0.5, 0.6))
