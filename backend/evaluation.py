"""Shade held-out views with a bank and score them against Cycles (used by training and the report)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from backend.bank import Bank
from backend.gbuffer import GBuffer
from backend.metrics import psnr_from_mse, to_display
from backend.neural_texture import create
from backend.renderers.torch_renderer import TorchRenderer


@dataclass
class View:
    index: int
    gbuffer: GBuffer
    ground_truth: np.ndarray  # [H, W, 3] linear radiance

    @property
    def mask(self) -> np.ndarray:
        return self.gbuffer.covered


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


def mean_psnr(bank: Bank, views: list[View], device="cpu") -> float:
    """PSNR of all views' face pixels pooled together (one MSE over every covered pixel)."""
    return pooled_psnr(render_views(bank, views, device), views)


def pooled_psnr(frames: list[np.ndarray], views: list[View]) -> float:
    """PSNR of the frames' face pixels against their views' ground truth, one MSE over every covered pixel."""
    squared, count = 0.0, 0
    for view, frame in zip(views, frames):
        diff = to_display(frame)[view.mask] - to_display(view.ground_truth)[view.mask]
        squared += float(np.sum(diff.astype(np.float64) ** 2))
        count += diff.size
    return psnr_from_mse(squared / max(count, 1))


def evaluations_per_pixel(bank: Bank, views: list[View]) -> float:
    """Network evaluations per shaded pixel and light over the views (1 plus what a border blend adds)."""
    counter = TorchRenderer(bank)
    evaluations = shaded = 0
    for view in views:
        e, s = counter.evaluations_per_pixel(view.gbuffer)
        evaluations, shaded = evaluations + e, shaded + s
    return evaluations / max(shaded, 1)
