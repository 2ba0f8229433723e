"""The reference renderer against a pixel-by-pixel numpy transcription of gbuffer.md section 5."""

import numpy as np
import pytest
import torch

from backend.bank import random_bank, unpack
from backend.errors import GBufferError
from backend.features import compute_features, light_scale
from backend.gbuffer import GBuffer
from backend.hashing import gbuffer_tile_keys, pixel_tile_map
from backend.renderers import get_renderer
from backend.renderers.auto import choose
from backend.renderers.torch_renderer import create
from backend.synthetic import sphere_gbuffer


def bank_for(g, activation="exp", every=2, **kwargs):
    keys = np.unique(gbuffer_tile_keys(g))
    return random_bank(7, keys[keys > 0][::every], [23, 16, 12, 3], output_activation=activation, **kwargs)


def reference_pixel(bank, g, i, j):
    """Radiance of one pixel, in float64 numpy (with the bank's border blend, gbuffer.md section 4b)."""
    t, band = bank.tile_size, bank.border_blend
    slots = bank.lut[gbuffer_tile_keys(g, bank.tile_size, bank.bins)]
    ty, tx = i // t, j // t
    networks = {int(slots[ty, tx]): 1.0}
    if band:
        def axis(c):  # weights of the tile before, and after, along one axis
            return max(0.0, (1 - (c + 0.5) / band) / 2), max(0.0, (1 - (t - c - 0.5) / band) / 2)
        (up, down), (left, right) = axis(i % t), axis(j % t)
        for dy, wy in ((-1, up), (0, 1 - up - down), (1, down)):
            for dx, wx in ((-1, left), (0, 1 - left - right), (1, right)):
                y, x = ty + dy, tx + dx
                if (dy or dx) and wy * wx > 0 and 0 <= y < slots.shape[0] and 0 <= x < slots.shape[1]:
                    other = int(slots[y, x])
                    if other >= 0 and other != int(slots[ty, tx]):
                        networks[other] = networks.get(other, 0.0) + wy * wx
                        networks[int(slots[ty, tx])] -= wy * wx
    features = compute_features(g, bank.filter_radii).numpy().astype(np.float64)
    scale = light_scale(g).numpy()
    total = np.zeros(3)
    for slot, weight in networks.items():
        layers = unpack(bank.slots[slot].astype(np.float64), bank.layers)
        for k in range(g.n_lights):
            x = (features[k, i, j] - bank.feature_mean) / bank.feature_std
            for n, (w, b) in enumerate(layers):
                x = x @ w + b
                if n < len(layers) - 1:
                    x = np.maximum(x, 0)
            f = np.exp(np.minimum(x, 15)) if bank.output_activation == "exp" else np.maximum(x, 0) + np.log1p(np.exp(-abs(x)))
            total += weight * g.lights[k, 3:6] * scale[k, i, j] * f
    return total


@pytest.mark.parametrize("activation,dtype", [("exp", "float32"), ("softplus", "float16")])
def test_matches_reference_on_partial_tiles_and_unseen_keys(activation, dtype):
    g = sphere_gbuffer(45, 38, n_lights=2, seed=1)  # 3x3 tiles, the last row and column partial
    bank = bank_for(g, activation, weights_dtype=dtype)
    frame = create(bank).render(g)
    assert frame.shape == (45, 38, 4) and frame.dtype == np.float32
    ys, xs = np.nonzero(g.covered)
    for i, j in list(zip(ys, xs))[::23] + [(44, 20), (30, 37)]:
        if g.covered[i, j]:
            np.testing.assert_allclose(frame[i, j, :3], reference_pixel(bank, g, i, j), rtol=2e-4, atol=1e-6)
    np.testing.assert_array_equal(frame[~g.covered, :3], g.background.transpose(1, 2, 0)[~g.covered])
    assert (frame[..., 3] == g.covered).all()


def test_lights_add_up():
    g = sphere_gbuffer(32, 32, n_lights=2, seed=2)
    bank = bank_for(g, every=1)
    renderer = create(bank)
    both = renderer.render(g)
    singles = [renderer.render(g.only_light(k)) for k in range(2)]  # how the teacher labels each light's own radiance
    covered = g.covered
    np.testing.assert_allclose(both[covered, :3], singles[0][covered, :3] + singles[1][covered, :3], rtol=1e-5)


def test_without_background_uncovered_is_black_and_empty_frame_works():
    g = sphere_gbuffer(20, 20)
    g.background = None
    bank = bank_for(g)
    assert (create(bank).render(g)[~g.covered] == 0).all()
    g.planes[0] = 0
    assert (create(bank).render(g) == 0).all()


def test_an_array_assigned_after_construction_is_checked_and_a_bad_one_refused():
    """rendering.py and the service set the background after reading: the G-buffer checks it then."""
    g = sphere_gbuffer(16, 16)
    background, planes = g.background, g.planes.copy()
    with pytest.raises(GBufferError, match="background is"):
        g.background = np.zeros((3, 16, 17), np.float32)
    planes[3:, g.covered] = np.nan  # every plane but mask and UV
    with pytest.raises(GBufferError, match="NaN or Inf"):
        g.planes = planes
    assert g.background is background and np.isfinite(g.planes).all()  # the refused arrays were not kept
    g.background = np.ones((3, 16, 16), np.float32)
    assert (create(bank_for(g)).render(g)[~g.covered, :3] == 1).all()


def test_non_finite_values_are_refused_only_where_covered():
    """The check screens by a sum over the planes, then confirms plane by plane: one Inf on one
    covered pixel is refused, NaN off the face is not, nor finite values whose sum overflows."""
    g = sphere_gbuffer(16, 16)
    planes = g.planes.copy()
    planes[6:, ~g.covered] = np.nan
    g.planes = planes
    planes = planes.copy()
    y, x = np.argwhere(g.covered)[0]
    planes[-1, y, x] = 3e38
    planes[-2, y, x] = 3e38  # their sum is +Inf in float32, each value is finite
    g.planes = planes
    planes = planes.copy()
    planes[7, y, x] = np.inf
    with pytest.raises(GBufferError, match="NaN or Inf in plane 7 on 1 covered pixel"):
        g.planes = planes


def test_auto_choice_and_registry():
    name, reason = choose()
    assert name in ("torch", "pycuda") and reason
    g = sphere_gbuffer(16, 16)
    assert get_renderer("torch", bank_for(g)).name == "torch"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    g = sphere_gbuffer(70, 50, n_lights=2)
    bank = bank_for(g)
    np.testing.assert_allclose(create(bank, "cuda").render(g), create(bank).render(g), rtol=1e-4, atol=1e-6)


def test_pixels_are_grouped_by_slot_and_tiles_without_a_slot_stay_black():
    g = sphere_gbuffer(45, 38, n_lights=2, seed=1)
    bank = bank_for(g)
    renderer = create(bank)
    order, runs, _ = renderer.pixel_order(g)
    slot_of_pixel = pixel_tile_map(renderer.tile_slots(g), g.height, g.width, bank.tile_size).reshape(-1)
    assert sorted(order) == list(np.flatnonzero(g.covered))
    assert len({slot for slot, _, _ in runs}) == len(runs) and runs[-1][2] == len(order)
    for slot, start, end in runs:
        assert (slot_of_pixel[order[start:end]] == slot).all()
    timings = {}
    frame = renderer.render(g, timings)
    assert set(timings) == {"setup", "prefilter", "features", "networks", "composite"}
    key = gbuffer_tile_keys(g)[1, 1]
    bank.lut[key] = -1  # not a bank the writer makes (every key has a slot), but the old renderer's answer holds
    unshaded = pixel_tile_map(gbuffer_tile_keys(g) == key, g.height, g.width, bank.tile_size) & g.covered
    frame_without = create(bank).render(g)
    assert unshaded.any() and (frame_without[unshaded, :3] == 0).all() and (frame_without[unshaded, 3] == 1).all()
    np.testing.assert_array_equal(frame_without[~unshaded], frame[~unshaded])


@pytest.mark.parametrize("band,n_lights", [(1, 2), (3, 1), (8, 3)])
def test_border_blend_matches_reference(band, n_lights):
    """Edge pixels mix their neighbours' networks as section 4b says, corners included, however the
    renderer packs its columns (each network's own pixels, then the ones it is mixed into)."""
    g = sphere_gbuffer(45, 38, n_lights=n_lights, seed=3)
    bank = bank_for(g, every=1, border_blend=band)
    renderer = create(bank)
    frame = renderer.render(g)
    ys, xs = np.nonzero(g.covered)
    edge = [(i, j) for i, j in zip(ys, xs) if min(i % 16, 15 - i % 16, j % 16, 15 - j % 16) < band]
    for i, j in edge[::7] + [(15, 15), (16, 16), (15, 16), (31, 31)]:
        if g.covered[i, j]:
            np.testing.assert_allclose(frame[i, j, :3], reference_pixel(bank, g, i, j), rtol=2e-4, atol=1e-6)
    evaluations, shaded = renderer.evaluations_per_pixel(g)
    assert shaded == int(g.covered.sum()) and shaded < evaluations < 4 * shaded
