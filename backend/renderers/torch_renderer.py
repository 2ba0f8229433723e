"""The reference renderer: docs/formats/gbuffer.md in batched torch, on the CPU or CUDA.

Per tile: key -> lut -> slot. Only covered pixels cost anything: they are compacted and ordered
by slot (tiles sorted by slot, each tile's covered pixels in row order), so every network's
pixels are one contiguous run of columns per light, and each network runs as one matmul per
layer and light over its whole run (long runs cut into cache-sized pieces). Features are
computed once per pixel and light for all lights at once, the pre-filter only around the
covered pixels (backend/prefilter.py). No Python loop over tiles or pixels; the loop over the
slots a frame uses is the only one.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from backend.bank import Bank, unpack
from backend.features import N_FEATURES, pixel_shading_inputs
from backend.gbuffer import GBuffer
from backend.hashing import gbuffer_tile_keys, pixel_bits, tile_grid
from backend.network import activate_output
from backend.prefilter import CoveredPixels

COLUMNS_PER_MATMUL = 4096  # pixel-lights per matmul: the hidden activations stay in cache


class TorchRenderer:
    name = "torch"

    def __init__(self, bank: Bank, device="cpu", threads: int | None = None):
        """threads: torch CPU threads while a frame is shaded (set and put back around each frame;
        torch's setting is process-wide). None leaves torch's choice. On a 2-core CPU that other
        work shares, 1 is several times faster than 2 (see `python -m backend bench --threads`)."""
        self.bank = bank
        self.device = torch.device(device)
        self.threads = threads
        slots = torch.from_numpy(np.asarray(bank.slots, dtype=np.float32)).to(self.device)
        self.weights = unpack(slots, bank.layers)  # [(W [S,in,out], b [S,out]), ...]
        # The networks run on features-major columns, y = W^T x + b: [out, in] weights, [out, 1] biases.
        self._layers = [(w.transpose(1, 2).contiguous(), b.unsqueeze(2).contiguous()) for w, b in self.weights]
        self.mean = torch.from_numpy(bank.feature_mean).to(self.device)
        self.std = torch.from_numpy(bank.feature_std).to(self.device)
        self._tile_pixels = {}  # (h, w) -> [n_tiles, T*T] flat pixel index of each tile's pixels (h*w: none)
        self._buffers = {}  # name -> float32 buffer reused by every frame (see _buffer)

    def tile_slots(self, gbuffer: GBuffer) -> np.ndarray:
        """Slot of every tile, int64 [n_ty, n_tx]; -1 for empty tiles."""
        keys = gbuffer_tile_keys(gbuffer, self.bank.tile_size, self.bank.bins)
        return self.bank.slot_of_keys(keys).astype(np.int64)

    def render(self, gbuffer: GBuffer, timings: dict | None = None) -> np.ndarray:
        """Shaded frame [H, W, 4] float32: covered pixels (radiance, 1), others (background, 0).

        timings: if given, milliseconds per stage are added to it (setup: tile keys, pixel order
        and gathering the planes; prefilter; features; networks; composite).
        """
        before = torch.get_num_threads()
        if self.threads and self.threads != before:
            torch.set_num_threads(self.threads)
        try:
            with torch.no_grad():
                return self._render(gbuffer, timings)
        finally:
            if torch.get_num_threads() != before:
                torch.set_num_threads(before)

    def _render(self, gbuffer: GBuffer, timings: dict | None) -> np.ndarray:
        lap = _Laps(timings, self.device)
        order, runs = self.pixel_order(gbuffer)
        n_lights, count = gbuffer.n_lights, len(order)
        rows = None
        if count:
            pixels = CoveredPixels(order, gbuffer.height, gbuffer.width, self.device)
            planes = pixels.gather(gbuffer.planes, out=self._buffer("planes", (gbuffer.planes.shape[0], count)))
            lap("setup")
            x, factor = pixel_shading_inputs(gbuffer, self.bank.filter_radii, pixels, planes, mean=self.mean,
                                             std=self.std, lap=lap,
                                             out=self._buffer("features", (N_FEATURES, n_lights, count)))
            lap("features")  # x [F, L, N] normalised, factor [3, L, N]
            shaded = runs[-1][2] if runs else 0
            y = self._networks(x, runs)  # [3, L, shaded]
            rows = torch.zeros(count, 4, device=self.device)  # (radiance, 1) per pixel, in `order`
            if shaded:
                rows[:shaded, :3] = (y * factor[:, :, :shaded]).sum(1).T
            rows[:, 3] = 1.0
            rows = rows.cpu()
            lap("networks")
        else:
            lap("setup")
        frame = np.empty((gbuffer.height, gbuffer.width, 4), dtype=np.float32)
        flat = torch.from_numpy(frame).view(-1, 4)
        if gbuffer.background is not None:
            flat[:, :3] = torch.from_numpy(gbuffer.background).view(3, -1).T
        else:
            flat[:, :3] = 0.0
        flat[:, 3] = 0.0
        if rows is not None:
            flat.index_copy_(0, torch.from_numpy(order), rows)
        lap("composite")
        return frame

    def pixel_order(self, gbuffer: GBuffer) -> tuple[np.ndarray, list[tuple[int, int, int]]]:
        """(flat indices of every covered pixel, [(slot, start, end), ...]): the shaded tiles' covered
        pixels ordered by slot, then any covered pixel of a tile without a slot (not shaded).

        The tile keys are those of hashing.tile_keys (the same pixel_bits, OR-ed per tile), made
        from the covered pixels only.
        """
        t, bins = self.bank.tile_size, self.bank.bins
        h, w = gbuffer.height, gbuffer.width
        index = self._tile_index(h, w, t)  # [n_tiles, T*T]
        mask = np.append(gbuffer.planes[0].reshape(-1), np.float32(0))  # index h*w: padding, never covered
        keep = mask[index] > 0.5
        tile_major = index[keep]  # every covered pixel, tile by tile
        counts = keep.sum(1)
        tiles = np.flatnonzero(counts)
        starts = (np.cumsum(counts) - counts)[tiles]
        bits = pixel_bits(mask[tile_major], gbuffer.planes[1].reshape(-1)[tile_major],
                          gbuffer.planes[2].reshape(-1)[tile_major], bins)
        slots = self.bank.slot_of_keys(np.bitwise_or.reduceat(bits, starts) if len(tiles) else bits).astype(np.int64)
        by_slot = np.argsort(slots, kind="stable")
        by_slot = by_slot[slots[by_slot] >= 0]
        sizes = counts[tiles[by_slot]]
        ends = np.cumsum(sizes)
        # Tile segments moved into slot order: output position i reads tile_major[i + shift of its tile].
        order = tile_major[np.repeat(starts[by_slot] - (ends - sizes), sizes) + np.arange(ends[-1] if len(ends) else 0)]
        runs = []
        if len(by_slot):
            slot_of_tile = slots[by_slot]
            last = np.flatnonzero(np.r_[slot_of_tile[1:] != slot_of_tile[:-1], True])
            run_ends = ends[last]
            runs = [(int(s), int(a), int(b)) for s, a, b in zip(slot_of_tile[last], np.r_[0, run_ends[:-1]], run_ends)]
        if len(order) < len(tile_major):  # covered pixels of tiles without a slot: radiance 0, as before
            unshaded = np.zeros(h * w + 1, dtype=bool)
            unshaded[tile_major] = True
            unshaded[order] = False
            order = np.concatenate([order, np.flatnonzero(unshaded)])
        return order, runs

    def _buffer(self, name: str, shape: tuple[int, ...]) -> torch.Tensor:
        """A buffer kept from frame to frame (a fresh multi-megabyte tensor costs page faults, as much
        as the work done in it); renderers shade one frame at a time (the service holds a lock)."""
        size = int(np.prod(shape))
        buffer = self._buffers.get(name)
        if buffer is None or buffer.numel() < size:
            buffer = self._buffers[name] = torch.empty(size, device=self.device)
        return buffer[:size].view(shape)

    def _tile_index(self, h: int, w: int, t: int) -> np.ndarray:
        if (h, w) not in self._tile_pixels:
            n_ty, n_tx = tile_grid(h, w, t)
            grid = np.full((n_ty * t, n_tx * t), h * w, dtype=np.int64)
            grid[:h, :w] = np.arange(h * w).reshape(h, w)
            self._tile_pixels[h, w] = grid.reshape(n_ty, t, n_tx, t).transpose(0, 2, 1, 3).reshape(n_ty * n_tx, t * t)
        return self._tile_pixels[h, w]

    def _networks(self, x: torch.Tensor, runs) -> torch.Tensor:
        """Output transfer f [3, L, M] of the first M (shaded) pixels of x [F, L, N], slot by slot.

        Every light's columns of a piece of a run go through one matmul per layer: runs are a few
        hundred pixels, and a matmul's call costs as much as its work at that size."""
        n_lights = x.shape[1]
        shaded = runs[-1][2] if runs else 0
        y = torch.empty(3, n_lights, shaded, device=x.device)
        last = len(self._layers) - 1
        step = max(1, COLUMNS_PER_MATMUL // n_lights)
        for slot, start, end in runs:
            for a in range(start, end, step):
                b = min(a + step, end)
                h = x[:, :, a:b].reshape(x.shape[0], -1)  # [F, L * pixels]
                for i, (w, bias) in enumerate(self._layers):
                    h = torch.addmm(bias[slot], w[slot], h)
                    if i < last:
                        h = h.relu_()
                y[:, :, a:b] = h.view(3, n_lights, b - a)
        return activate_output(y, self.bank.output_activation)


class _Laps:
    """Adds the milliseconds since the last call to timings[stage] (nothing without timings)."""

    def __init__(self, timings: dict | None, device: torch.device):
        self.timings = timings
        self.sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
        self.last = time.perf_counter()

    def __call__(self, stage: str) -> None:
        if self.timings is None:
            return
        self.sync()
        now = time.perf_counter()
        self.timings[stage] = self.timings.get(stage, 0.0) + (now - self.last) * 1e3
        self.last = now


def create(bank: Bank, device="cpu", threads: int | None = None) -> TorchRenderer:
    return TorchRenderer(bank, device=device, threads=threads)
