"""The report's pictures, as PNG files: G-buffer strips, frames, error maps, tile keys, charts."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from backend.atomic import atomic_path
from backend.gbuffer import GBuffer
from backend.hashing import pixel_tile_map
from backend.metrics import to_display
from backend.model_kinds import HASH_BANK


def save_png(image: np.ndarray, path: Path, scale: int = 1) -> str:
    """Save [H, W, 3] floats in [0, 1] (nearest-neighbour upscaled by `scale`); returns the file name."""
    from PIL import Image

    if scale > 1:
        image = np.repeat(np.repeat(image, scale, axis=0), scale, axis=1)
    with atomic_path(path, suffix=".png") as tmp:
        Image.fromarray(np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)).save(tmp)
    return path.name


def gbuffer_strip(gbuffer: GBuffer) -> np.ndarray:
    """Albedo | normal | UV | summed light passes, side by side, display-encoded."""
    covered = gbuffer.covered[..., None]
    albedo = to_display(gbuffer.albedo.transpose(1, 2, 0))
    normal = gbuffer.normal.transpose(1, 2, 0) * 0.5 + 0.5
    uv = np.dstack([gbuffer.uv[0], gbuffer.uv[1], np.zeros_like(gbuffer.uv[0])])
    light = sum(gbuffer.light_pass(k) for k in range(gbuffer.n_lights)).transpose(1, 2, 0)
    panels = [np.where(covered, p, 0) for p in (albedo, normal, uv, to_display(light))]
    return np.concatenate(panels, axis=1)


def frame_picture(rgb: np.ndarray) -> np.ndarray:
    return to_display(rgb)


def error_picture(error_map: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """FLIP error map [H, W] in [0, 1] through the magma colour map; background black."""
    from matplotlib import colormaps

    coloured = colormaps["magma"](np.clip(error_map, 0, 1))[..., :3]
    return np.where(mask[..., None], coloured, 0)


def key_picture(tile_keys: np.ndarray, seen: np.ndarray, shape: tuple[int, int], tile_size: int,
                frame: np.ndarray) -> np.ndarray:
    """Each non-empty tile tinted by a colour hashed from its key over `frame`; unseen keys in red stripes."""
    h, w = shape
    keys = pixel_tile_map(tile_keys, h, w, tile_size)
    hashed = (keys.astype(np.uint64) * np.uint64(2654435761)) % np.uint64(2**24)
    colour = np.stack([(hashed >> np.uint64(s)) & np.uint64(255) for s in (0, 8, 16)], axis=-1) / 255.0
    picture = 0.55 * colour + 0.45 * frame
    unseen = pixel_tile_map(~seen, h, w, tile_size)
    rows, cols = np.indices((h, w))
    stripes = unseen & (((rows + cols) // 2) % 3 == 0)
    picture[stripes] = (1.0, 0.1, 0.1)
    picture[keys == 0] = 0
    grid = (rows % tile_size == 0) | (cols % tile_size == 0)
    picture[grid] = picture[grid] * 0.5
    return picture


def bar_chart(values: dict[str, float], path: Path, title: str, ylabel: str, reference: float | None = None) -> str:
    plt = _pyplot()
    fig, axis = plt.subplots(figsize=(6, 3.2))
    axis.bar(list(values), list(values.values()), color=["tab:red", "tab:blue", "tab:green", "tab:gray"][: len(values)])
    if reference is not None:
        axis.axhline(reference, color="black", linewidth=0.8, linestyle="--")
    axis.set_title(title)
    axis.set_ylabel(ylabel)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path.name


def bucket_chart(slot_pixels: list[int], path: Path) -> str:
    plt = _pyplot()
    counts = sorted(slot_pixels, reverse=True)
    fig, axis = plt.subplots(figsize=(7, 3.2))
    axis.bar(range(len(counts)), counts, width=1.0, color="tab:red")
    axis.set_yscale("log")
    axis.set_xlabel(f"bucket (slot), largest first; {len(counts)} in all")
    axis.set_ylabel("training pixels")
    axis.set_title("Bucket sizes")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path.name


def cost_chart(points: dict[str, tuple[int, float]], path: Path) -> str:
    """Test PSNR against multiply-adds per pixel and light, one labelled point per model (the talk's claim:
    specialists reach one network's quality at a fraction of its cost)."""
    plt = _pyplot()
    fig, axis = plt.subplots(figsize=(6, 3.6))
    for name, (cost, psnr) in points.items():
        axis.scatter([cost], [psnr], color="tab:red" if name == HASH_BANK else "tab:blue", zorder=3)
        axis.annotate(name, (cost, psnr), textcoords="offset points", xytext=(5, 4), fontsize=8)
    axis.set_xscale("log")
    axis.set_xlabel("multiply-adds per pixel and light")
    axis.set_ylabel("test PSNR (dB, face pixels)")
    axis.set_title("Quality against per-pixel cost")
    axis.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path.name


def plot_curve(history: list[dict], path: Path, title: str) -> Path:
    """Training loss and validation PSNR against steps, as a PNG beside a bank (written atomically)."""
    plt = _pyplot()
    steps = [h["step"] for h in history]
    fig, loss_axis = plt.subplots(figsize=(7, 4))
    loss_axis.semilogy(steps, [h["loss"] for h in history], color="tab:blue")
    loss_axis.set_xlabel("step")
    loss_axis.set_ylabel("training loss", color="tab:blue")
    psnr_axis = loss_axis.twinx()
    psnr_axis.plot(steps, [h["val_psnr"] for h in history], color="tab:red", marker=".")
    psnr_axis.set_ylabel("validation PSNR (dB, face pixels)", color="tab:red")
    loss_axis.set_title(title)
    fig.tight_layout()
    try:
        with atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=100)
    finally:
        plt.close(fig)
    return path


def _pyplot():
    """matplotlib.pyplot on the file-only Agg backend (no display on a server or in Blender's backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
