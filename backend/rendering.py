"""Shade one G-buffer file with a bank and write the frame (the `render` command and the service).

The face is composited over a background: the sample's Cycles ground truth where it sits next to
the G-buffer (`NAME.gt.exr`), else a flat colour. `.exr` output is linear float32 RGBA; `.png` is
8-bit sRGB (radiance clipped to [0, 1], as metrics.to_display) with alpha = coverage. Both carry
the render marker (backend.outputs), so a later render may replace them and nothing else.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from backend.atomic import atomic_path
from backend.bank import load_bank
from backend.dataset import GROUND_TRUTH_PART, read_gbuffer
from backend.errors import UserError
from backend.exr import ExrError, read_parts, write_rgba
from backend.metrics import to_display
from backend.outputs import IMAGE, RENDER_MARKER_KEY, RENDER_MARKER_VALUE, check_output
from backend.renderers import get_renderer

OUTPUT_SUFFIXES = (".exr", ".png")
DEFAULT_BACKGROUND = (0.05, 0.05, 0.05)


def ground_truth_path(gbuffer_path: Path) -> Path:
    """`NNNNNN.gbuffer.exr` -> `NNNNNN.gt.exr` (dataset.md layout)."""
    return gbuffer_path.with_name(gbuffer_path.name.removesuffix(".gbuffer.exr").removesuffix(".exr") + ".gt.exr")


def parse_colour(text: str) -> tuple[float, float, float]:
    try:
        values = tuple(float(x) for x in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or not all(np.isfinite(values)):
        raise UserError(f"background {text!r} must be 'auto', 'R,G,B' (linear, e.g. 0.1,0.1,0.1) or an EXR file")
    return values


def background_for(gbuffer, gbuffer_path: Path, spec: str) -> np.ndarray:
    """[3, H, W] background: 'auto' (the sample's ground truth if present, else a grey), 'R,G,B' or an EXR."""
    h, w = gbuffer.height, gbuffer.width
    if spec == "auto":
        path = ground_truth_path(gbuffer_path)
        if not path.exists():
            return np.broadcast_to(np.array(DEFAULT_BACKGROUND, np.float32)[:, None, None], (3, h, w)).copy()
    elif spec.lower().endswith(".exr"):
        path = Path(spec)
    else:
        return np.broadcast_to(np.array(parse_colour(spec), np.float32)[:, None, None], (3, h, w)).copy()
    try:
        parts = read_parts(path)
    except ExrError as exc:
        raise UserError(f"background: {exc}") from None
    layer = parts.get(GROUND_TRUTH_PART) or next(iter(parts.values()))
    if not all(c in layer for c in "RGB"):
        raise UserError(f"{path}: background needs R, G and B channels")
    image = np.stack([layer[c] for c in "RGB"])
    if image.shape[1:] != (h, w):
        raise UserError(f"{path}: background is {image.shape[2]}x{image.shape[1]}, the G-buffer is {w}x{h}")
    if "A" in layer:  # as Dataset.load_ground_truth: the denoiser bleeds colour into the empty film
        image[:, layer["A"] == 0] = 0
    return np.nan_to_num(image, nan=0.0, posinf=0.0, neginf=0.0)


def write_frame(frame: np.ndarray, out_path: Path) -> None:
    """Write [H, W, 4] linear RGBA as EXR, or as sRGB PNG; atomically (temporary name, then rename)."""
    if out_path.suffix.lower() == ".exr":
        write_rgba(out_path, frame, attributes={RENDER_MARKER_KEY: RENDER_MARKER_VALUE})  # atomic itself
        return
    from PIL import Image, PngImagePlugin

    rgba = np.concatenate([to_display(frame[..., :3]), np.clip(frame[..., 3:], 0, 1)], axis=-1)
    marker = PngImagePlugin.PngInfo()
    marker.add_text(RENDER_MARKER_KEY, RENDER_MARKER_VALUE)
    with atomic_path(out_path, suffix=".png") as tmp:
        Image.fromarray(np.round(rgba * 255).astype(np.uint8), "RGBA").save(tmp, format="PNG", pnginfo=marker)


def render_file(bank_path, gbuffer_path, out_path, renderer: str = "torch", background: str = "auto",
                device: str | None = None, overwrite: bool = False) -> dict:
    """Shade gbuffer_path with the bank and write out_path (.exr or .png); returns what happened."""
    out_path, gbuffer_path = Path(out_path), Path(gbuffer_path)
    if out_path.suffix.lower() not in OUTPUT_SUFFIXES:
        raise UserError(f"{out_path}: output must end in .exr or .png")
    bank = load_bank(bank_path)
    gbuffer = read_gbuffer(gbuffer_path)
    gbuffer.background = background_for(gbuffer, gbuffer_path, background)
    check_output(out_path, IMAGE, overwrite)  # after the inputs: their errors say more
    options = {"device": device} if device else {}
    shader = get_renderer(renderer, bank, **options)
    start = time.perf_counter()
    frame = shader.render(gbuffer)
    seconds = time.perf_counter() - start
    write_frame(frame, out_path)
    return {"out": str(out_path), "renderer": shader.name, "width": gbuffer.width, "height": gbuffer.height,
            "lights": gbuffer.n_lights, "covered_pixels": int(gbuffer.covered.sum()), "ms": round(seconds * 1e3, 2)}
