"""The reference renderer: docs/formats/gbuffer.md in batched torch, on the CPU or CUDA.

Per tile: key -> lut -> slot. Only covered pixels cost anything: they are compacted and ordered
by slot (tiles sorted by slot, each tile's covered pixels in row order), so every network's
pixels are one contiguous run of columns per light, and each network runs as one matmul per
layer and light over its whole run (long runs cut into cache-sized pieces). Features are
computed once per pixel and light for all lights at once, the pre-filter only around the
covered pixels (backend/prefilter.py). No Python loop over tiles or pixels; the loop over the
slots a frame uses is the only one. A bank's border blend (gbuffer.md section 4b) then runs the
neighbouring networks its edge pixels mix in, all slots in one batched matmul per layer.
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
        order, runs, slot_grid = self.pixel_order(gbuffer)
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
                if self.bank.border_blend:
                    self._blend_borders(rows, x, factor, order[:shaded], slot_grid, gbuffer.width)
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

    def pixel_order(self, gbuffer: GBuffer) -> tuple[np.ndarray, list[tuple[int, int, int]], np.ndarray]:
        """(flat indices of every covered pixel, [(slot, start, end), ...], slot of every tile [n_ty, n_tx]
        (-1: empty)): the shaded tiles' covered pixels ordered by slot, then any covered pixel of a tile
        without a slot (not shaded).

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
        slot_grid = np.full(len(index), -1, dtype=np.int64)
        slot_grid[tiles] = slots
        slot_grid = slot_grid.reshape(tile_grid(h, w, t))
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
        return order, runs, slot_grid

    def _blend_borders(self, rows: torch.Tensor, x: torch.Tensor, factor: torch.Tensor, shaded: np.ndarray,
                       slot_grid: np.ndarray, width: int) -> None:
        """Mix each neighbouring tile's network into the pixels near the shared edge (gbuffer.md
        section 4b), in place: rows[:M, :3] hold the own networks' radiance of the M shaded pixels
        (flat indices `shaded`); x [F, L, N] and factor [3, L, N] are the pixels' inputs."""
        pixel, slot, weight = self.blend_entries(shaded, slot_grid, width)
        if not len(pixel):
            return
        index = torch.from_numpy(pixel).to(self.device)
        y = self._batched_networks(_columns(x, index), slot)  # [3, L, E] the neighbours' transfer
        radiance = (y * _columns(factor, index)).sum(1)  # [3, E]
        weight = torch.from_numpy(weight).to(self.device)
        kept = torch.ones(len(shaded), device=self.device).index_add_(0, index, -weight)
        rows[: len(shaded), :3] *= kept[:, None]
        rows[: len(shaded), :3].index_add_(0, index, (radiance * weight).T)

    def blend_entries(self, shaded: np.ndarray, slot_grid: np.ndarray, width: int):
        """(position in `shaded`, neighbour slot, weight) of every neighbouring network mixed into a
        shaded pixel (flat indices `shaded`; slot_grid from pixel_order), sorted by slot."""
        t, band = self.bank.tile_size, self.bank.border_blend
        if band == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
        ys, xs = np.divmod(shaded, width)
        iy, ix = ys % t, xs % t
        near = np.flatnonzero((np.minimum(iy, t - 1 - iy) < band) | (np.minimum(ix, t - 1 - ix) < band))
        ys, xs, iy, ix = ys[near], xs[near], iy[near], ix[near]  # the band's pixels: the only ones that mix
        ty, tx = ys // t, xs // t
        own = slot_grid[ty, tx]
        weights_y, weights_x = _blend_weights(iy, t, band), _blend_weights(ix, t, band)
        padded = np.pad(slot_grid, 1, constant_values=-1)  # no neighbour outside the frame
        pixel, slot, weight = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)], [np.zeros(0, np.float32)]
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                if dy == dx == 0:
                    continue
                w = weights_y[dy + 1] * weights_x[dx + 1]
                other = padded[ty + 1 + dy, tx + 1 + dx]
                used = np.flatnonzero((w > 0) & (other >= 0) & (other != own))
                pixel.append(near[used]), slot.append(other[used]), weight.append(w[used])
        pixel, slot, weight = np.concatenate(pixel), np.concatenate(slot), np.concatenate(weight)
        by_slot = np.argsort(slot, kind="stable")
        return pixel[by_slot], slot[by_slot], weight[by_slot]

    def evaluations_per_pixel(self, gbuffer: GBuffer) -> tuple[int, int]:
        """(network evaluations per light, shaded pixels) of a frame: one per pixel, plus one per
        neighbouring network a border blend mixes in."""
        order, runs, slot_grid = self.pixel_order(gbuffer)
        shaded = runs[-1][2] if runs else 0
        mixed = len(self.blend_entries(order[:shaded], slot_grid, gbuffer.width)[0]) if shaded else 0
        return shaded + mixed, shaded

    def _batched_networks(self, x: torch.Tensor, slot: np.ndarray) -> torch.Tensor:
        """Output transfer [3, L, E] of entries x [F, L, E] whose networks are `slot` [E] (sorted).

        The border blend's entries are a few dozen pixels per slot, too few for a matmul call each:
        every slot's entries are padded to the longest run and all slots go through one batched
        matmul per layer."""
        n_features, n_lights, n = x.shape
        starts = np.flatnonzero(np.r_[True, slot[1:] != slot[:-1]])
        lengths = np.diff(np.r_[starts, n])
        longest = int(lengths.max())
        if len(starts) * longest > 4 * n:  # one long run would pad the rest many times over: slot by slot
            return self._networks(x, [(int(slot[a]), int(a), int(a + k)) for a, k in zip(starts, lengths)])
        # column j of run r reads entry starts[r] + j, or the zero column n past the run's end
        column = np.arange(longest)
        source = np.where(column < lengths[:, None], starts[:, None] + column, n)  # [R, longest]
        padded = torch.cat([x, x.new_zeros(n_features, n_lights, 1)], 2)
        h = _columns(padded, torch.from_numpy(source.reshape(-1)).to(x.device))  # [F, L, R * longest]
        h = h.view(n_features, n_lights, len(starts), longest).permute(2, 0, 1, 3).reshape(len(starts), n_features, -1)
        runs = torch.from_numpy(slot[starts]).to(x.device)
        last = len(self._layers) - 1
        for i, (w, bias) in enumerate(self._layers):
            h = torch.baddbmm(bias[runs], w[runs], h)
            if i < last:
                h = h.relu_()
        y = h.view(len(starts), 3, n_lights, longest).permute(1, 2, 0, 3).reshape(3, n_lights, -1)
        valid = torch.from_numpy(np.flatnonzero(source.reshape(-1) < n)).to(x.device)
        return activate_output(_columns(y, valid), self.bank.output_activation)

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


def _columns(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """x [A, B, N] at the columns `index` of its last axis, [A, B, len(index)]: gathered through a 2-D
    view (along the last axis of a 3-D tensor torch's CPU index_select is several times slower)."""
    a, b, _ = x.shape
    return x.reshape(a * b, -1).index_select(1, index).view(a, b, -1)


def _blend_weights(c: np.ndarray, tile: int, band: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per in-tile coordinate c: the weights of the tile before, this tile and the tile after along
    one axis (gbuffer.md section 4b), float32 as the kernel computes them."""
    c = c.astype(np.float32)
    before = np.maximum(np.float32(0), np.float32(0.5) * (1 - (c + np.float32(0.5)) / np.float32(band)))
    after = np.maximum(np.float32(0), np.float32(0.5) * (1 - (np.float32(tile) - c - np.float32(0.5)) / np.float32(band)))
    return before, 1 - before - after, after


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
