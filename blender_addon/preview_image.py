"""Frames in and out of Blender images: float datablocks written with one bulk `foreach_set`.

Frames are [H, W, 4] float32 with rows top to bottom (EXR and the service); `Image.pixels` runs
bottom to top, hence the flips.
"""

from __future__ import annotations

import numpy as np

import bpy

PREVIEW_IMAGE = "Neural Preview"
CYCLES_IMAGE = "Neural Preview Cycles"
DIFFERENCE_IMAGE = "Neural Preview Difference"
DIFFERENCE_GAIN = 4.0  # the difference image shows 4 x |neural - Cycles| so small errors stay visible


def write_image(name: str, frame: np.ndarray):
    """Put `frame` into float image `name`, (re)creating it at the frame's size; returns the image."""
    height, width = frame.shape[:2]
    image = bpy.data.images.get(name)
    if image is not None and (tuple(image.size) != (width, height) or not image.is_float):
        bpy.data.images.remove(image)
        image = None
    if image is None:
        image = bpy.data.images.new(name, width, height, alpha=True, float_buffer=True)
    image.pixels.foreach_set(np.ascontiguousarray(frame[::-1], dtype=np.float32).ravel())
    image.update()  # marks the GPU texture stale, so the overlay draws the new pixels
    return image


def read_image(image) -> np.ndarray:
    """Image pixels as [H, W, 4] float32, rows top to bottom."""
    width, height = image.size
    pixels = np.empty(width * height * 4, dtype=np.float32)
    image.pixels.foreach_get(pixels)
    return pixels.reshape(height, width, 4)[::-1]


def load_exr(path: str) -> np.ndarray:
    """A single-layer RGBA EXR as [H, W, 4] float32 rows top to bottom; the temporary datablock is removed."""
    image = bpy.data.images.load(path, check_existing=False)
    try:
        return read_image(image).copy()
    finally:
        bpy.data.images.remove(image)


def difference(neural: np.ndarray, cycles: np.ndarray) -> tuple[np.ndarray, float]:
    """Displayable |neural - Cycles| (RGB scaled by DIFFERENCE_GAIN, opaque) and its mean over covered pixels."""
    absolute = np.abs(neural[..., :3] - cycles[..., :3])
    covered = (neural[..., 3] > 0.5) | (cycles[..., 3] > 0.5)
    mean = float(absolute[covered].mean()) if covered.any() else 0.0
    shown = np.concatenate([absolute * DIFFERENCE_GAIN, np.ones_like(absolute[..., :1])], axis=-1)
    return shown.astype(np.float32), mean
