"""The reference renderer: docs/formats/gbuffer.md in batched torch, on the CPU or CUDA.

Per tile: key -> lut -> slot. Only covered pixels cost anything: their features are computed once
per pixel and light for all lights at once, the pre-filter only around the covered pixels
(backend/prefilter.py). The networks then run on columns: one per covered pixel of a shaded tile,
plus, with a border blend (gbuffer.md section 4b), one per neighbouring network an edge pixel
mixes in. The columns are gathered in slot order, each network's columns and lights side by side,
so every network runs as one matmul per layer over a cache-sized piece of its columns, reading the
gathered block in place, and one weighted index_add sums each pixel's lights and networks. No Python
loop over tiles or pixels; the loop over the pieces of the slots a frame uses is the only one.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from backend.bank import Bank, unpack
from backend.features import N_FEATURES, pixel_shading_inputs
from backend.gbuffer import GBuffer
from backend.hashing import gbuffer_tile_keys, pixel_bits, tile_grid
from backend.network import activate_output
from backend.prefilter import CoveredPixels

COLUMNS_PER_MATMUL = 4096  # pixel-lights per matmul: the hidden activations stay in cache


@dataclass
class ColumnPlan:
    """Which network evaluates which pixel's features, and where its radiance goes (see _shade).

    A column is one network evaluation of one pixel under one light. `gather` [L * C] picks each
    column's features from the [F, L * N] features (N covered pixels, C network evaluations per
    light); `pieces` [(slot, start, end), ...] are ranges of gathered columns one network runs on;
    `target` [L * C] is the shaded pixel each column adds into, with `weight` [L * C] (None: 1,
    no border blend)."""

    gather: torch.Tensor
    target: torch.Tensor
    weight: torch.Tensor | None
    pieces: list[tuple[int, int, int]]


@dataclass
class PreparedFrame:
    """A frame's weight-independent work (TorchRenderer.prepare): covered pixels in slot order, their
    normalised features x [F, L, N] and light factors [3, L, N], and the column plan of the M shaded ones."""

    gbuffer: GBuffer
    order: np.ndarray
    x: torch.Tensor | None
    factor: torch.Tensor | None
    plan: ColumnPlan | None
    shaded: int


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
        layers = [(w.transpose(1, 2).contiguous(), b.unsqueeze(2).contiguous()) for w, b in self.weights]
        # per slot, its layers as views (indexing a slot per piece and layer costs as much as a small matmul)
        self._slot_layers = [[(w[slot], b[slot]) for w, b in layers] for slot in range(bank.n_slots)]
        self.mean = torch.from_numpy(bank.feature_mean).to(self.device)
        self.std = torch.from_numpy(bank.feature_std).to(self.device)
        self._tile_pixels = {}  # (h, w) -> [n_tiles, T*T] flat pixel index of each tile's pixels (h*w: none)
        self._band = {}  # (h, w) -> _band_geometry
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
        with self._frame_threads(), torch.no_grad():
            return self._render(gbuffer, timings)

    def prepare(self, gbuffer: GBuffer) -> "PreparedFrame":
        """Everything of a frame that does not depend on the networks' weights: the pixel order, the
        features and the column plan (training shades its validation views with new weights at every
        validation; `shade` then runs only the networks and the composite). Valid for banks of this
        bank's layout (its slot keys, fallback, normalisation, pre-filter and blend)."""
        with self._frame_threads(), torch.no_grad():
            return self._prepare(gbuffer, _Laps(None, self.device), reuse_buffers=False)

    def shade(self, prepared: "PreparedFrame") -> np.ndarray:
        """render(prepared.gbuffer), from a frame `prepare` made (by this renderer or another of the same layout)."""
        with self._frame_threads(), torch.no_grad():
            return self._finish(prepared, _Laps(None, self.device))

    @contextmanager
    def _frame_threads(self):
        """torch's CPU threads set to `threads` for the work inside, and put back after (process-wide)."""
        before = torch.get_num_threads()
        if self.threads and self.threads != before:
            torch.set_num_threads(self.threads)
        try:
            yield
        finally:
            if torch.get_num_threads() != before:
                torch.set_num_threads(before)

    def _render(self, gbuffer: GBuffer, timings: dict | None) -> np.ndarray:
        lap = _Laps(timings, self.device)
        return self._finish(self._prepare(gbuffer, lap, reuse_buffers=True), lap)

    def _prepare(self, gbuffer: GBuffer, lap: "_Laps", reuse_buffers: bool) -> "PreparedFrame":
        order, runs, slot_grid = self.pixel_order(gbuffer)
        n_lights, count = gbuffer.n_lights, len(order)
        shaded = runs[-1][2] if runs else 0
        x = factor = plan = None
        if count:
            buffer = self._buffer if reuse_buffers else (lambda name, shape: torch.empty(shape, device=self.device))
            pixels = CoveredPixels(order, gbuffer.height, gbuffer.width, self.device)
            planes = pixels.gather(gbuffer.planes, out=buffer("planes", (gbuffer.planes.shape[0], count)))
            lap("setup")
            x, factor = pixel_shading_inputs(gbuffer, self.bank.filter_radii, pixels, planes, mean=self.mean,
                                             std=self.std, lap=lap,
                                             out=buffer("features", (N_FEATURES, n_lights, count)))
            lap("features")  # x [F, L, N] normalised, factor [3, L, N]
            if shaded:
                plan = self.column_plan(order[:shaded], runs, slot_grid, gbuffer.height, gbuffer.width, n_lights, count)
        return PreparedFrame(gbuffer, order, x, factor, plan, shaded)

    def _finish(self, prepared: "PreparedFrame", lap: "_Laps") -> np.ndarray:
        gbuffer, order, count = prepared.gbuffer, prepared.order, len(prepared.order)
        rows = None
        if count:
            rows = torch.zeros(count, 4, device=self.device)  # (radiance, 1) per pixel, in `order`
            if prepared.shaded:
                rows[:prepared.shaded, :3] = self._shade(prepared.x, prepared.factor, prepared.plan, prepared.shaded).T
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

    def column_plan(self, shaded: np.ndarray, runs, slot_grid: np.ndarray, height: int, width: int,
                    n_lights: int, n_pixels: int) -> ColumnPlan:
        """The columns of the M shaded pixels (flat indices `shaded`, the first M of the frame's N =
        n_pixels covered pixels, ordered by slot in `runs`): each pixel's own network with the weight
        its border blend leaves it, then the neighbouring networks the blend mixes in."""
        m = len(shaded)
        run_slot = np.array([r[0] for r in runs], np.int64)
        run_start, run_end = (np.array([r[i] for r in runs], np.int64) for i in (1, 2))
        pixel, slot, weight = self.blend_entries(shaded, slot_grid, height, width)
        # Run r's columns: its own pixels, then the blend's entries for its slot (runs and entries are
        # both in slot order, so each own pixel moves up by the entries of the slots before its own).
        entries_before = np.searchsorted(slot, run_slot)
        entries = np.searchsorted(slot, run_slot, "right") - entries_before  # (a neighbour's slot is a run's)
        own_at = np.arange(m) + np.repeat(entries_before, run_end - run_start)
        entry_at = np.arange(len(pixel)) + np.repeat(run_end, entries)
        source = np.empty(m + len(pixel), np.int64)
        source[own_at], source[entry_at] = np.arange(m), pixel
        column_slot = np.repeat(run_slot, run_end - run_start + entries)
        column_weight = None
        if len(pixel):
            column_weight = np.empty(len(source), np.float32)
            column_weight[own_at] = 1 - np.bincount(pixel, weight, minlength=m)
            column_weight[entry_at] = weight
        n = len(source)
        starts = run_start + entries_before  # each run's first column
        step = max(1, COLUMNS_PER_MATMUL // n_lights)
        pieces = []  # (slot, first column, end) of each cache-sized piece of each slot's columns
        for begin, end in zip(starts.tolist(), np.r_[starts[1:], n].tolist()):
            pieces += [(int(column_slot[begin]), a, min(a + step, end)) for a in range(begin, end, step)]
        bounds = np.array([p[1] for p in pieces] + [n])
        lengths = np.diff(bounds)
        piece_start, piece_length = np.repeat(bounds[:-1], lengths), np.repeat(lengths, lengths)
        # gathered position of (column c, light l): n_lights * its piece's start + l * piece length + offset
        first = n_lights * piece_start + (np.arange(n) - piece_start)
        gather, target = np.empty(n_lights * n, np.int64), np.empty(n_lights * n, np.int64)
        weights = None if column_weight is None else np.empty(n_lights * n, np.float32)
        for light in range(n_lights):
            position = first + light * piece_length
            gather[position] = light * n_pixels + source
            target[position] = source
            if weights is not None:
                weights[position] = column_weight
        device = self.device
        return ColumnPlan(torch.from_numpy(gather).to(device), torch.from_numpy(target).to(device),
                          None if weights is None else torch.from_numpy(weights).to(device),
                          [(s, n_lights * a, n_lights * b) for s, a, b in pieces])

    def _shade(self, x: torch.Tensor, factor: torch.Tensor, plan: ColumnPlan, shaded: int) -> torch.Tensor:
        """Radiance [3, M] of the M shaded pixels: x [F, L, N] and factor [3, L, N] are the covered
        pixels' features and light factors; sum over lights and networks of weight * factor * f."""
        n_features = x.shape[0]
        n = len(plan.gather)
        columns = torch.index_select(x.view(n_features, -1), 1, plan.gather,
                                     out=self._buffer("columns", (n_features, n)))  # [F, L * C], pieces side by side
        scale = torch.index_select(factor.view(3, -1), 1, plan.gather, out=self._buffer("scale", (3, n)))
        if plan.weight is not None:
            scale *= plan.weight
        y = self._buffer("transfer", (3, n))
        for slot, start, end in plan.pieces:
            h = columns[:, start:end]
            layers = self._slot_layers[slot]
            for w, bias in layers[:-1]:
                h = torch.addmm(bias, w, h).relu_()
            w, bias = layers[-1]
            y[:, start:end] = torch.addmm(bias, w, h)
        y = activate_output(y, self.bank.output_activation).mul_(scale)
        return torch.zeros(3, shaded, device=x.device).index_add_(1, plan.target, y)

    def blend_entries(self, shaded: np.ndarray, slot_grid: np.ndarray, height: int, width: int):
        """(position in `shaded`, neighbour slot, weight) of every neighbouring network mixed into a
        shaded pixel (flat indices `shaded`; slot_grid from pixel_order), sorted by slot."""
        if self.bank.border_blend == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
        position = np.full(height * width, -1, np.int64)
        position[shaded] = np.arange(len(shaded))
        slots = np.pad(slot_grid, 1, constant_values=-1).reshape(-1)  # no neighbour outside the frame
        pixel, slot, weight = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)], [np.zeros(0, np.float32)]
        for band_pixel, own_tile, other_tile, w in self._band_geometry(height, width):
            at, own, other = position[band_pixel], slots[own_tile], slots[other_tile]
            used = np.flatnonzero((at >= 0) & (other >= 0) & (other != own))
            pixel.append(at[used]), slot.append(other[used]), weight.append(w[used])
        pixel, slot, weight = np.concatenate(pixel), np.concatenate(slot), np.concatenate(weight)
        by_slot = np.argsort(slot, kind="stable")
        return pixel[by_slot], slot[by_slot], weight[by_slot]

    def _band_geometry(self, height: int, width: int) -> list[tuple[np.ndarray, ...]]:
        """Per neighbour direction, the frame's pixels that mix it in (flat index), their own tile and
        that neighbour's (flat indices into the tile grid padded by one tile) and the weight: fixed for a
        frame size, so a frame only looks up slots."""
        if (height, width) not in self._band:
            t, band = self.bank.tile_size, self.bank.border_blend
            n_ty, n_tx = tile_grid(height, width, t)
            ys, xs = np.divmod(np.arange(height * width), width)
            iy, ix = ys % t, xs % t
            near = np.flatnonzero((np.minimum(iy, t - 1 - iy) < band) | (np.minimum(ix, t - 1 - ix) < band))
            ty, tx = ys[near] // t, xs[near] // t
            weights_y, weights_x = _blend_weights(iy[near], t, band), _blend_weights(ix[near], t, band)
            geometry = []
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    w = weights_y[dy + 1] * weights_x[dx + 1]
                    mixes = np.flatnonzero(w > 0)
                    if (dy or dx) and len(mixes):
                        own = (ty[mixes] + 1) * (n_tx + 2) + tx[mixes] + 1
                        geometry.append((near[mixes], own, own + dy * (n_tx + 2) + dx, w[mixes]))
            self._band[height, width] = geometry
        return self._band[height, width]

    def evaluations_per_pixel(self, gbuffer: GBuffer) -> tuple[int, int]:
        """(network evaluations per light, shaded pixels) of a frame: one per pixel, plus one per
        neighbouring network a border blend mixes in."""
        order, runs, slot_grid = self.pixel_order(gbuffer)
        shaded = runs[-1][2] if runs else 0
        mixed = len(self.blend_entries(order[:shaded], slot_grid, gbuffer.height, gbuffer.width)[0]) if shaded else 0
        return shaded + mixed, shaded

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
