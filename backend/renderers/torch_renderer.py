"""The reference renderer: docs/formats/gbuffer.md in batched torch, on the CPU or CUDA.

Per tile: key -> lut -> slot; the slot's weights are gathered once per tile and every pixel of
the tile (times every light) goes through one batched matmul per layer, the way the CUDA kernel
runs one block per tile. No Python loop over tiles, slots or pixels; tiles are processed in
chunks only to bound memory at large sizes.
"""

from __future__ import annotations

import numpy as np
import torch

from backend.bank import Bank, unpack
from backend.features import shading_inputs
from backend.gbuffer import GBuffer
from backend.hashing import gbuffer_tile_keys, tile_grid
from backend.network import forward

TILES_PER_CHUNK = 1024


class TorchRenderer:
    name = "torch"

    def __init__(self, bank: Bank, device="cpu"):
        self.bank = bank
        self.device = torch.device(device)
        slots = torch.from_numpy(np.asarray(bank.slots, dtype=np.float32)).to(self.device)
        self.weights = unpack(slots, bank.layers)  # [(W [S,in,out], b [S,out]), ...]
        self.mean = torch.from_numpy(bank.feature_mean).to(self.device)
        self.std = torch.from_numpy(bank.feature_std).to(self.device)

    def tile_slots(self, gbuffer: GBuffer) -> np.ndarray:
        """Slot of every tile, int64 [n_ty, n_tx]; -1 for empty tiles."""
        keys = gbuffer_tile_keys(gbuffer, self.bank.tile_size, self.bank.bins)
        return self.bank.slot_of_keys(keys).astype(np.int64)

    @torch.no_grad()
    def render(self, gbuffer: GBuffer) -> np.ndarray:
        """Shaded frame [H, W, 4] float32: covered pixels (radiance, 1), others (background, 0)."""
        t = self.bank.tile_size
        h, w = gbuffer.height, gbuffer.width
        n_ty, n_tx = tile_grid(h, w, t)
        features, factor = shading_inputs(gbuffer, self.bank.filter_radii, self.device)  # [L,H,W,F], [L,H,W,3]
        x = _to_tiles((features - self.mean) / self.std, n_ty, n_tx, t)  # [n_ty*n_tx, L, T*T, F]
        factor = _to_tiles(factor, n_ty, n_tx, t)
        slots = torch.from_numpy(self.tile_slots(gbuffer).reshape(-1)).to(self.device)
        tiles = torch.nonzero(slots >= 0).squeeze(1)
        radiance = torch.zeros(n_ty * n_tx, t * t, 3, device=self.device)
        for chunk in torch.split(tiles, TILES_PER_CHUNK):
            radiance[chunk] = self._shade(slots[chunk], x[chunk], factor[chunk])
        image = _from_tiles(radiance, n_ty, n_tx, t)[:h, :w]
        return self._composite(gbuffer, image.cpu().numpy())

    def _shade(self, slots: torch.Tensor, x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
        """Radiance [n, T*T, 3] of n tiles: sum over lights of factor * f(x); x is [n, L, T*T, F]."""
        n, n_lights, pixels, f = x.shape
        layers = [(wt[slots], b[slots]) for wt, b in self.weights]
        out = forward(layers, x.reshape(n, n_lights * pixels, f), self.bank.output_activation)
        return (out.view(n, n_lights, pixels, 3) * factor).sum(1)

    @staticmethod
    def _composite(gbuffer: GBuffer, radiance: np.ndarray) -> np.ndarray:
        covered = gbuffer.covered
        frame = np.zeros((gbuffer.height, gbuffer.width, 4), dtype=np.float32)
        if gbuffer.background is not None:
            frame[..., :3] = gbuffer.background.transpose(1, 2, 0)
        frame[covered, :3] = radiance[covered]
        frame[covered, 3] = 1.0
        return frame


def _to_tiles(a: torch.Tensor, n_ty: int, n_tx: int, t: int) -> torch.Tensor:
    """[L, H, W, C] -> [n_ty*n_tx, L, T*T, C], zero-padded at the right and bottom edges."""
    n_lights, h, w, c = a.shape
    padded = torch.nn.functional.pad(a, (0, 0, 0, n_tx * t - w, 0, n_ty * t - h))
    tiles = padded.view(n_lights, n_ty, t, n_tx, t, c).permute(1, 3, 0, 2, 4, 5)
    return tiles.reshape(n_ty * n_tx, n_lights, t * t, c)


def _from_tiles(tiles: torch.Tensor, n_ty: int, n_tx: int, t: int) -> torch.Tensor:
    """[n_ty*n_tx, T*T, C] -> [n_ty*T, n_tx*T, C]."""
    c = tiles.shape[-1]
    return tiles.view(n_ty, n_tx, t, t, c).permute(0, 2, 1, 3, 4).reshape(n_ty * t, n_tx * t, c)


def create(bank: Bank, device="cpu") -> TorchRenderer:
    return TorchRenderer(bank, device=device)
