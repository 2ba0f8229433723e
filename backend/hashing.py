"""Tile grid and tile keys (docs/formats/gbuffer.md, section 3): the talk's "array index = hash".

A tile's key is two B-bit occupancy masks of the UV bins its covered pixels touch:
`key = hash_u | hash_v << B`. Key 0 means "no covered pixel" (an empty tile, never shaded).
"""

from __future__ import annotations

import numpy as np

DEFAULT_TILE_SIZE = 16
DEFAULT_BINS = 8
MAX_BINS = 12  # the lookup table has 4**bins entries


def tile_grid(h: int, w: int, tile_size: int = DEFAULT_TILE_SIZE) -> tuple[int, int]:
    """(tile rows, tile columns) covering an h x w image; the last row/column may be partial."""
    if tile_size < 1:
        raise ValueError(f"tile size must be >= 1, got {tile_size}")
    return -(-h // tile_size), -(-w // tile_size)


def uv_bins(uv: np.ndarray, bins: int = DEFAULT_BINS) -> np.ndarray:
    """Bin index of each u (or v) value, in float32 arithmetic: clamp to [0, 1]; 1.0 lands in bin B-1."""
    scaled = np.clip(np.asarray(uv, dtype=np.float32), np.float32(0), np.float32(1)) * np.float32(bins)
    return np.minimum(np.floor(scaled).astype(np.int64), bins - 1)


def pixel_bits(mask: np.ndarray, u: np.ndarray, v: np.ndarray, bins: int = DEFAULT_BINS) -> np.ndarray:
    """Each pixel's contribution to its tile key (0 for uncovered pixels), int64 [H, W]."""
    if not 1 <= bins <= MAX_BINS:
        raise ValueError(f"bins must be in 1..{MAX_BINS}, got {bins}")
    covered = np.asarray(mask) > 0.5
    # Uncovered pixels may hold NaN; give them a harmless value before binning.
    u = np.where(covered, u, 0)
    v = np.where(covered, v, 0)
    bits = (np.int64(1) << uv_bins(u, bins)) | (np.int64(1) << (uv_bins(v, bins) + bins))
    return np.where(covered, bits, 0)


def tile_keys(mask, u, v, tile_size: int = DEFAULT_TILE_SIZE, bins: int = DEFAULT_BINS) -> np.ndarray:
    """Key of every tile, int64 [n_ty, n_tx]; inputs are [H, W] arrays (mask > 0.5 means covered)."""
    bits = pixel_bits(mask, u, v, bins)
    h, w = bits.shape
    n_ty, n_tx = tile_grid(h, w, tile_size)
    padded = np.zeros((n_ty * tile_size, n_tx * tile_size), dtype=np.int64)
    padded[:h, :w] = bits  # padding pixels are uncovered: they add no bits
    tiles = padded.reshape(n_ty, tile_size, n_tx, tile_size)
    return np.bitwise_or.reduce(np.bitwise_or.reduce(tiles, axis=3), axis=1)


def gbuffer_tile_keys(gbuffer, tile_size: int = DEFAULT_TILE_SIZE, bins: int = DEFAULT_BINS) -> np.ndarray:
    """tile_keys of a backend.gbuffer.GBuffer."""
    u, v = gbuffer.uv
    return tile_keys(gbuffer.mask, u, v, tile_size, bins)


def pixel_tile_map(values: np.ndarray, h: int, w: int, tile_size: int = DEFAULT_TILE_SIZE) -> np.ndarray:
    """Expand a per-tile array [n_ty, n_tx] to per-pixel [h, w] (e.g. keys or slots per pixel)."""
    expanded = np.repeat(np.repeat(values, tile_size, axis=0), tile_size, axis=1)
    return expanded[:h, :w]


def split_key(key: int, bins: int = DEFAULT_BINS) -> tuple[int, int]:
    """(hash_u, hash_v) of a key."""
    return key & ((1 << bins) - 1), key >> bins
