"""Tile keys against a pixel-by-pixel transcription of gbuffer.md section 3 and the talk."""

import numpy as np
import pytest

from backend.hashing import pixel_tile_map, split_key, tile_grid, tile_keys


def reference_keys(mask, u, v, tile_size, bins):
    """The spec's loop, one pixel at a time, in float32 arithmetic."""
    h, w = mask.shape
    n_ty, n_tx = tile_grid(h, w, tile_size)
    keys = np.zeros((n_ty, n_tx), dtype=np.int64)
    for ty in range(n_ty):
        for tx in range(n_tx):
            hash_u = hash_v = 0
            for i in range(ty * tile_size, min(h, (ty + 1) * tile_size)):
                for j in range(tx * tile_size, min(w, (tx + 1) * tile_size)):
                    if not mask[i, j] > 0.5:
                        continue
                    scaled_u = np.float32(min(max(u[i, j], 0), 1)) * np.float32(bins)
                    scaled_v = np.float32(min(max(v[i, j], 0), 1)) * np.float32(bins)
                    hash_u |= 1 << min(int(np.floor(scaled_u)), bins - 1)
                    hash_v |= 1 << min(int(np.floor(scaled_v)), bins - 1)
            keys[ty, tx] = hash_u | (hash_v << bins)
    return keys


@pytest.mark.parametrize("shape,tile_size,bins", [((37, 53), 16, 8), ((16, 16), 16, 8), ((20, 9), 4, 5), ((33, 70), 8, 12)])
def test_matches_spec_loop_on_any_size(shape, tile_size, bins):
    rng = np.random.default_rng(1)
    mask = (rng.random(shape) > 0.3).astype(np.float32)
    u = rng.uniform(-0.2, 1.2, shape).astype(np.float32)
    v = rng.uniform(-0.2, 1.2, shape).astype(np.float32)
    u[0, :5] = 1.0
    v[-1, -3:] = 0.0
    expected = reference_keys(mask, u, v, tile_size, bins)
    assert tile_keys(mask, u, v, tile_size, bins).tolist() == expected.tolist()


def test_agrees_with_the_talk_inside_the_unit_square():
    rng = np.random.default_rng(2)
    u = rng.random((32, 32)).astype(np.float32)
    v = rng.random((32, 32)).astype(np.float32)
    keys = tile_keys(np.ones((32, 32)), u, v)
    for ty, tx in [(0, 0), (1, 1)]:
        hash_u = hash_v = 0
        for uu, vv in zip(u[ty * 16 : ty * 16 + 16, tx * 16 : tx * 16 + 16].ravel(), v[ty * 16 : ty * 16 + 16, tx * 16 : tx * 16 + 16].ravel()):
            hash_u |= 1 << (int(uu * 8) % 8)
            hash_v |= 1 << (int(vv * 8) % 8)
        assert keys[ty, tx] == hash_u | hash_v << 8


def test_edge_cases():
    mask = np.zeros((16, 32), dtype=np.float32)
    u = np.full((16, 32), np.nan, dtype=np.float32)  # uncovered pixels may hold anything
    v = np.full((16, 32), np.nan, dtype=np.float32)
    mask[0, 0], u[0, 0], v[0, 0] = 1, 1.0, 0.0  # u == 1.0 -> last bin, not bin 0
    mask[0, 1], u[0, 1], v[0, 1] = 1, -0.5, 7.0  # outside [0, 1] -> clamped
    keys = tile_keys(mask, u, v)
    assert split_key(int(keys[0, 0])) == ((1 << 7) | (1 << 0), (1 << 0) | (1 << 7))
    assert keys[0, 1] == 0  # a tile without covered pixels is empty
    mask[5, 20] = 0.5  # exactly 0.5 is not covered
    assert tile_keys(mask, u, v)[0, 1] == 0


def test_every_non_empty_tile_has_a_u_and_a_v_bit():
    rng = np.random.default_rng(3)
    mask = rng.random((64, 64)) > 0.9
    keys = tile_keys(mask, rng.random((64, 64)), rng.random((64, 64)))
    for key in keys.ravel():
        hash_u, hash_v = split_key(int(key))
        assert (hash_u == 0) == (hash_v == 0) == (key == 0)


def test_pixel_tile_map_crops_partial_tiles():
    values = np.arange(6).reshape(2, 3)
    per_pixel = pixel_tile_map(values, 20, 40, 16)
    assert per_pixel.shape == (20, 40)
    assert per_pixel[17, 33] == 5 and per_pixel[15, 15] == 0 and per_pixel[0, 16] == 1
