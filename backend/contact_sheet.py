"""A PNG contact sheet of a dataset: one row per sample, one tile per pass (for eyes, not for code).

Columns: ground truth, mask, UV, normal, position, albedo, sum of the light passes. Radiance is
shown with a plain sRGB transfer after exposure to the sheet's 99th percentile.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from backend.dataset import open_dataset
from backend.metrics import to_display

COLUMNS = ("ground truth", "mask", "uv", "normal", "position", "albedo", "light passes")


def _tiles(gbuffer, truth: np.ndarray) -> list[np.ndarray]:
    covered = gbuffer.covered
    exposure = 1 / max(float(np.percentile(truth[:3, covered], 99)) if covered.any() else 1.0, 1e-6)
    position = gbuffer.position
    low, high = (position[:, covered].min(axis=1), position[:, covered].max(axis=1)) if covered.any() else (0, 1)
    lights = sum(gbuffer.light_pass(k) for k in range(gbuffer.n_lights))
    images = [
        to_display(truth[:3] * exposure),
        np.repeat(gbuffer.mask[None], 3, axis=0),
        np.concatenate([gbuffer.uv, np.zeros_like(gbuffer.uv[:1])]),
        gbuffer.normal * 0.5 + 0.5,
        (position - np.reshape(low, (3, 1, 1))) / np.reshape(np.maximum(high - low, 1e-9), (3, 1, 1)),
        to_display(gbuffer.albedo),
        to_display(lights * exposure),
    ]
    return [np.where(covered, image, 0.15) for image in images]


def write_contact_sheet(dataset_dir: str | Path, png_path: str | Path, rows: int = 4) -> Path:
    dataset = open_dataset(dataset_dir)
    width, height = dataset.resolution
    label = 16
    indices = dataset.labelled()[:rows]
    sheet = np.zeros((label + height * len(indices), width * len(COLUMNS), 3), dtype=np.float32)
    for row, index in enumerate(indices):
        tiles = _tiles(dataset.load_gbuffer(index), dataset.load_ground_truth(index))
        for column, tile in enumerate(tiles):
            top = label + row * height
            sheet[top:top + height, column * width:(column + 1) * width] = np.clip(tile, 0, 1).transpose(1, 2, 0)
    image = Image.fromarray((sheet * 255 + 0.5).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for column, name in enumerate(COLUMNS):
        draw.text((column * width + 4, 2), name, fill=(255, 255, 255))
    png_path = Path(png_path)
    image.save(png_path)
    return png_path
