"""The tile kernel's source, compiled for the CPU (kernels/cuda_emu.h), against the torch renderer.

Tolerance: 1e-4 relative (plus 1e-5 absolute for values near 0). The kernel computes the same
float32 formulas in another order (fused multiply-adds, per-pixel sums), so the two agree to a
few ulp; anything structural (wrong key, slot, feature, light or tile edge) is off by far more.
"""

import dataclasses

import numpy as np
import pytest

from backend.bank import load_bank, random_bank
from backend.dataset import open_dataset
from backend.gbuffer import GBuffer
from backend.hashing import gbuffer_tile_keys
from backend.renderers import get_renderer
from backend.synthetic import sphere_gbuffer

RTOL, ATOL = 1e-4, 1e-5
LAYERS = [23, 32, 32, 3]


def keys_of(*gbuffers, tile_size=16, bins=8):
    keys = np.unique(np.concatenate([gbuffer_tile_keys(g, tile_size, bins).ravel() for g in gbuffers]))
    return keys[keys > 0]


def assert_kernel_matches_torch(bank, gbuffer, rtol=RTOL, atol=ATOL):
    """Torch's frame, from the kernel with its threads run first to last and last to first."""
    expected = get_renderer("torch", bank).render(gbuffer)
    frame = get_renderer("emulated", bank).render(gbuffer)
    assert frame.shape == (gbuffer.height, gbuffer.width, 4) and frame.dtype == np.float32
    np.testing.assert_allclose(frame, expected, rtol=rtol, atol=atol)
    np.testing.assert_array_equal(get_renderer("emulated", bank, thread_order="reverse").render(gbuffer), frame)
    return frame


@pytest.mark.parametrize("height,width,n_lights,activation,dtype", [
    (23, 37, 1, "exp", "float32"),  # partial tiles on the right and at the bottom
    (1, 1, 1, "softplus", "float32"),
    (64, 64, 3, "softplus", "float32"),
    (64, 64, 2, "exp", "float16"),
    (37, 23, 3, "exp", "float32"),
])
def test_matches_torch_on_random_banks(height, width, n_lights, activation, dtype):
    g = sphere_gbuffer(height, width, n_lights=n_lights, seed=height + width)
    assert g.covered.any()
    bank = random_bank(height * width, keys_of(g), LAYERS, output_activation=activation, weights_dtype=dtype)
    frame = assert_kernel_matches_torch(bank, g)
    assert (frame[..., 3] == g.covered).all()
    assert np.abs(frame[g.covered, :3]).max() > 0.01  # real shading, not a frame of zeros


@pytest.mark.parametrize("height,width,n_lights,band,dtype", [
    (64, 64, 2, 1, "float32"),
    (45, 71, 1, 2, "float16"),  # partial tiles: a neighbour past the frame's edge is not mixed in
    (64, 64, 3, 8, "float32"),  # the widest band: every pixel of a tile mixes
])
def test_border_blend_matches_torch(height, width, n_lights, band, dtype):
    g = sphere_gbuffer(height, width, n_lights=n_lights, seed=band)
    bank = random_bank(band, keys_of(g), LAYERS, weights_dtype=dtype, border_blend=band)
    frame = assert_kernel_matches_torch(bank, g)
    plain = get_renderer("torch", dataclasses.replace(bank, meta={**bank.meta, "border_blend": 0})).render(g)
    tile_edge = np.zeros(g.covered.shape, bool)
    tile_edge[15::16] = tile_edge[16::16] = True
    tile_edge[:, 15::16] = tile_edge[:, 16::16] = True
    changed = np.abs(frame[..., :3] - plain[..., :3]).max(-1) > 1e-4
    assert changed[tile_edge & g.covered].mean() > 0.5  # the networks meet at the edges ...
    if band < 8:  # ... and only there
        in_tile_y, in_tile_x = np.indices(g.covered.shape) % 16
        far = (np.minimum(in_tile_y, 15 - in_tile_y) >= band) & (np.minimum(in_tile_x, 15 - in_tile_x) >= band)
        assert not changed[far].any()


def test_unseen_keys_use_the_fallback_like_torch():
    g = sphere_gbuffer(64, 64, n_lights=2, seed=5)
    keys = keys_of(g)
    for fallback in ("nearest_key", "shared_network"):
        bank = random_bank(11, keys[::3], LAYERS, fallback=fallback)
        tile_keys = gbuffer_tile_keys(g)
        assert (bank.lut_seen[tile_keys[tile_keys > 0]] == 0).any(), "the frame must contain unseen keys"
        frame = assert_kernel_matches_torch(bank, g)
        assert (frame[..., 3] == g.covered).all()


def test_all_background_frames():
    covered = sphere_gbuffer(40, 50, n_lights=2, seed=3)
    bank = random_bank(2, keys_of(covered), LAYERS)
    planes = covered.planes.copy()
    planes[0] = 0  # nothing covered: every tile has key 0
    planes[1:] = np.nan  # values of uncovered pixels must be ignored
    empty = GBuffer(planes, covered.lights, covered.camera_position, covered.background, focal_px=covered.focal_px)
    frame = get_renderer("emulated", bank).render(empty)
    np.testing.assert_array_equal(frame[..., :3], covered.background.transpose(1, 2, 0))
    assert (frame[..., 3] == 0).all()
    black = GBuffer(planes, covered.lights, covered.camera_position, None, focal_px=covered.focal_px)
    assert (get_renderer("emulated", bank).render(black) == 0).all()


@pytest.mark.parametrize("band", [0, 3])
def test_other_tile_size_and_bins(band):
    g = sphere_gbuffer(30, 45, n_lights=2, seed=9)
    bank = random_bank(4, keys_of(g, tile_size=8, bins=5), [23, 24, 3], tile_size=8, bins=5,
                       output_activation="softplus", border_blend=band)
    assert_kernel_matches_torch(bank, g)


def test_fp16_weights_option():
    """weights="float16" stores an fp32 bank's weights as fp16: exactly torch on the rounded bank,
    and within 2e-2 relative of the fp32 bank (the stated fp16 bound)."""
    g = sphere_gbuffer(48, 40, n_lights=2, seed=4)
    bank = random_bank(6, keys_of(g), LAYERS)
    half = get_renderer("emulated", bank, weights="float16").render(g)
    rounded = dataclasses.replace(bank, slots=bank.slots.astype(np.float16).astype(np.float32))
    np.testing.assert_allclose(half, get_renderer("torch", rounded).render(g), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(half, get_renderer("torch", bank).render(g), rtol=2e-2, atol=1e-3)


@pytest.mark.slow
def test_matches_torch_on_a_bank_trained_on_suzanne(suzanne_dataset, tmp_path):
    from backend.training import TrainConfig, train

    result = train(TrainConfig(data=str(suzanne_dataset), out=str(tmp_path / "suzanne.nfbank"), steps=40,
                               eval_every=20, min_bucket_pixels=32, batch=64))
    bank = load_bank(result.bank_path)
    dataset = open_dataset(suzanne_dataset)
    indices = dataset.indices("test") + dataset.indices("val")
    lights = set()
    for index in indices[:3] + dataset.indices("train")[:1]:
        g = dataset.load_gbuffer(index)
        lights.add(g.n_lights)
        assert_kernel_matches_torch(bank, g)
    tile_keys = np.concatenate([gbuffer_tile_keys(dataset.load_gbuffer(i), bank.tile_size, bank.bins).ravel()
                                for i in indices[:3]])  # the trained bank's bins (4 by default), not the spec's 8
    print(f"trained bank: {bank.n_slots} slots; lights per frame tested: {sorted(lights)}; "
          f"unseen keys in test frames: {int((bank.lut_seen[tile_keys[tile_keys > 0]] == 0).sum())}")


def test_key_edge_cases_u_equal_one_and_out_of_range_uv():
    """u == 1 lands in bin B-1 (not 0), UVs outside [0, 1] are clamped (gbuffer.md section 3)."""
    g = sphere_gbuffer(16, 48, n_lights=1, seed=8)
    planes = g.planes.copy()
    planes[0] = 1
    planes[1:3, :, :16] = 0.55  # tile 0: u == 1 and v == 1 on a few pixels
    planes[1:3, 3:5, 2:6] = 1.0
    planes[1, :, 16:32], planes[2, :, 16:32] = -0.25, 0.3  # tile 1: u below 0
    planes[1, :, 32:], planes[2, :, 32:] = 1.5, 0.3  # tile 2: u above 1
    g = GBuffer(planes, g.lights, g.camera_position, g.background, focal_px=g.focal_px)
    right = [(1 << 4 | 1 << 7) | (1 << 4 | 1 << 7) << 8, 1 | 1 << 10, 1 << 7 | 1 << 10]
    wrong = [(1 << 4 | 1) | (1 << 4 | 1) << 8, 1 << 7 | 1 << 10, 1 | 1 << 10]  # wrapped 1.0, swapped clamping
    assert list(gbuffer_tile_keys(g).ravel()) == right
    bank = random_bank(12, sorted(set(right + wrong)), LAYERS)  # a wrong key would pick another network
    assert_kernel_matches_torch(bank, g)
