"""Shade held-out views with a bank and score them against Cycles (used by training and the report)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import torch

from backend.bank import Bank
from backend.gbuffer import GBuffer
from backend.hashing import gbuffer_tile_keys, pixel_tile_map
from backend.metrics import psnr_from_mse, to_display
from backend.neural_texture import create
from backend.renderers.torch_renderer import TorchRenderer


@dataclass
class View:
    index: int
    gbuffer: GBuffer
    ground_truth: np.ndarray  # [H, W, 3] linear radiance
    _keys: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def mask(self) -> np.ndarray:
        return self.gbuffer.covered

    @cached_property
    def display_truth(self) -> np.ndarray:
        """The ground truth as displayed, at the covered pixels, [N, 3] (kept: training scores the
        same views at every validation)."""
        return to_display(self.ground_truth[self.mask])

    def pixel_tiles(self, tile_size: int, bins: int) -> tuple[np.ndarray, np.ndarray]:
        """(key of every tile, [n_ty, n_tx]; index of each covered pixel's tile in it, [N]), kept per key layout."""
        if (tile_size, bins) not in self._keys:
            keys = gbuffer_tile_keys(self.gbuffer, tile_size, bins)
            g = self.gbuffer
            tile = pixel_tile_map(np.arange(keys.size).reshape(keys.shape), g.height, g.width, tile_size)[self.mask]
            self._keys[tile_size, bins] = (keys, tile)
        return self._keys[tile_size, bins]


def load_views(dataset, indices) -> list[View]:
    views = []
    for i in indices:
        gbuffer = dataset.load_gbuffer(i)
        gbuffer.background = None
        views.append(View(i, gbuffer, dataset.load_ground_truth(i)[:3].transpose(1, 2, 0)))
    return views


def render_views(bank: Bank, views: list[View], device="cpu") -> list[np.ndarray]:
    """The torch renderer's frames (backend.neural_texture's for a neural_texture bank)."""
    renderer = create(bank, device=device)
    return [renderer.render(view.gbuffer)[..., :3] for view in views]


PREPARED_BYTES = 1 << 29  # once RepeatedViews keeps more than this, further views are prepared at every render


class RepeatedViews:
    """The same views shaded again and again by banks that differ only in their weights (training's
    validations): each view's weight-independent work (pixel order, features, pre-filter, column
    plan: about half a frame's time) is done once per bank layout and kept, until PREPARED_BYTES is passed."""

    def __init__(self, views: list[View], device="cpu"):
        self.views, self.device = views, device
        self._layout, self._prepared = None, []

    def render(self, bank: Bank) -> list[np.ndarray]:
        """render_views(bank, self.views): the same frames."""
        renderer = create(bank, device=self.device)
        layout = frame_layout(bank)
        if layout != self._layout:
            self._layout, self._prepared, kept = layout, [], 0
            for view in self.views:
                if kept > PREPARED_BYTES:
                    break
                self._prepared.append(renderer.prepare(view.gbuffer))
                kept += _tensor_bytes(self._prepared[-1])
        frames = [renderer.shade(prepared)[..., :3] for prepared in self._prepared]
        return frames + [renderer.render(view.gbuffer)[..., :3] for view in self.views[len(frames):]]


def frame_layout(bank: Bank) -> bytes:
    """What a prepared frame depends on: the bank but for its weights (slots and texture)."""
    meta = {k: v for k, v in bank.meta.items() if k != "provenance"}
    return b"".join([json.dumps(meta, sort_keys=True, default=str).encode(), bank.feature_mean.tobytes(),
                     bank.feature_std.tobytes(), np.asarray(bank.lut).tobytes()])


def _tensor_bytes(prepared) -> int:
    total = 0
    for value in vars(prepared).values():
        if isinstance(value, torch.Tensor):
            total += value.numel() * value.element_size()
        elif value is not None and hasattr(value, "__dataclass_fields__"):
            total += _tensor_bytes(value)
    return total


def mean_psnr(bank: Bank, views: list[View], device="cpu") -> float:
    """PSNR of all views' face pixels pooled together (one MSE over every covered pixel)."""
    return pooled_psnr(render_views(bank, views, device), views)


def pixel_errors(frames: list[np.ndarray], views: list[View]) -> list[np.ndarray]:
    """Per view, the squared display error of each covered pixel summed over rgb, [N] float64."""
    errors = []
    for view, frame in zip(views, frames):
        diff = (to_display(frame[view.mask]) - view.display_truth).astype(np.float64)
        errors.append((diff * diff).sum(-1))
    return errors


def psnr_of_errors(errors: list[np.ndarray]) -> float:
    """PSNR of pixel_errors pooled over every covered pixel and channel."""
    squared = sum(float(e.sum()) for e in errors)
    return psnr_from_mse(squared / max(3 * sum(e.size for e in errors), 1))


def pooled_psnr(frames: list[np.ndarray], views: list[View]) -> float:
    """PSNR of the frames' face pixels against their views' ground truth, one MSE over every covered pixel."""
    return psnr_of_errors(pixel_errors(frames, views))


def evaluations_per_pixel(bank: Bank, views: list[View]) -> float:
    """Network evaluations per shaded pixel and light over the views (1 plus what a border blend adds)."""
    counter = TorchRenderer(bank)
    evaluations = shaded = 0
    for view in views:
        e, s = counter.evaluations_per_pixel(view.gbuffer)
        evaluations, shaded = evaluations + e, shaded + s
    return evaluations / max(shaded, 1)
