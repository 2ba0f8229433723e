"""OpenEXR helpers: read every part of a (multi-part, multilayer) file, write float32 images.

Blender's multilayer EXRs are multi-part files whose part names are `<view layer>.<pass>` and
whose channel names are `<view layer>.<pass>.<channel>`; `read_parts` returns them as
{part name: {channel letter(s): [H, W] float32}}, rows top to bottom.
"""

from __future__ import annotations

import os

import numpy as np
import OpenEXR

from backend.atomic import atomic_path
from backend.errors import UserError


class ExrError(UserError):
    """An EXR file is missing, truncated or not an OpenEXR image."""


def read_parts(path: str | os.PathLike) -> dict[str, dict[str, np.ndarray]]:
    path = str(path)
    if not os.path.isfile(path):
        raise ExrError(f"{path}: file does not exist")
    try:
        exr = OpenEXR.File(path, separate_channels=True)
        parts = {}
        for part in exr.parts:
            prefix = part.name() + "."
            parts[part.name()] = {
                name[len(prefix):] if name.startswith(prefix) else name: np.asarray(channel.pixels, dtype=np.float32)
                for name, channel in part.channels.items()
            }
    except Exception as exc:  # the binding raises plain RuntimeError/ValueError on damaged files
        raise ExrError(f"{path}: not a readable OpenEXR file ({exc})") from exc
    return parts


def write_exr(path: str | os.PathLike, channels: dict[str, np.ndarray], half: bool = False,
              attributes: dict[str, str] | None = None) -> None:
    """Write one part with the given [H, W] channels (e.g. R, G, B, A), ZIP-compressed, atomically;
    `attributes` are extra string attributes of its header."""
    path = str(path)
    dtype = np.float16 if half else np.float32
    data = {name: np.ascontiguousarray(pixels, dtype=dtype) for name, pixels in channels.items()}
    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage, **(attributes or {})}
    with atomic_path(path, suffix=".exr") as tmp, OpenEXR.File(header, data) as exr:
        exr.write(str(tmp))


def write_parts(path: str | os.PathLike, parts: dict[str, dict[str, np.ndarray]],
                attributes: dict[str, str] | None = None) -> None:
    """Write a multi-part file as Blender's multilayer EXRs are ({part: {channel: [H, W]}}, channels
    named `<part>.<channel>`, float32, ZIP), atomically: what read_parts reads back."""
    exr_parts = []
    for name, channels in parts.items():
        header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage, "name": name,
                  **(attributes or {})}
        data = {f"{name}.{channel}": np.ascontiguousarray(pixels, dtype=np.float32) for channel, pixels in channels.items()}
        exr_parts.append(OpenEXR.Part(header, data, name=name))
    with atomic_path(str(path), suffix=".exr") as tmp, OpenEXR.File(exr_parts) as exr:
        exr.write(str(tmp))


def write_rgba(path: str | os.PathLike, image: np.ndarray, half: bool = False,
               attributes: dict[str, str] | None = None) -> None:
    """Write an [H, W, 3 or 4] linear image (alpha optional) as an RGB(A) EXR."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise ValueError(f"expected an [H, W, 3|4] image, got {image.shape}")
    write_exr(path, {name: image[..., i] for i, name in enumerate("RGBA"[: image.shape[2]])}, half=half,
              attributes=attributes)
