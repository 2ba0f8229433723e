"""The one rule for every output path, applied by the commands and the service's jobs alike.

An output may replace only what this project wrote there before; anything else is refused unless
the user says `--overwrite`. A file never replaces a folder, nor a folder a file, whatever the flag.
What is "ours" is recognised by content, never by name:

- a weight bank: a safetensors header whose metadata says `neural-face-bank` (bank.md);
- a report folder: its `metrics.json` holds the report's `headline`, `models` and `timing`;
- a rendered image: the marker `render` puts in a PNG's text chunks or an EXR's header;
- a service frame: a float32 `.npy` array of shape [H, W, 4], as the service writes them.

The check also proves that the folder the output goes in can be written (it creates and removes a
probe file), so a long job never learns at its end that its output cannot be saved.
"""

from __future__ import annotations

import json
import os
import struct
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from backend.errors import UserError

RENDER_MARKER_KEY = "neural_face"  # PNG text chunk / EXR header attribute of a rendered image
RENDER_MARKER_VALUE = "render"
HEADER_LIMIT = 1 << 20  # a safetensors header larger than this is not one of our banks


class OutputError(UserError):
    """An output path would destroy something the project did not write, or cannot be written."""


def is_bank_file(path: Path) -> bool:
    from backend.bank import BANK_FORMAT, METADATA_KEY

    try:
        with open(path, "rb") as stream:
            size = struct.unpack("<Q", stream.read(8))[0]
            if size > HEADER_LIMIT:
                return False
            metadata = json.loads(stream.read(size)).get("__metadata__", {})
            return json.loads(metadata[METADATA_KEY]).get("format") == BANK_FORMAT
    except (OSError, ValueError, KeyError, TypeError, AttributeError, struct.error):
        return False


def is_report_folder(path: Path) -> bool:
    try:
        metrics = json.loads((path / "metrics.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(metrics, dict) and {"headline", "models", "timing"} <= metrics.keys()


def is_rendered_image(path: Path) -> bool:
    try:
        if path.suffix.lower() == ".png":
            from PIL import Image

            with Image.open(path) as image:
                return image.format == "PNG" and image.info.get(RENDER_MARKER_KEY) == RENDER_MARKER_VALUE
        if path.suffix.lower() == ".exr":
            import OpenEXR

            return OpenEXR.File(str(path), header_only=True).header().get(RENDER_MARKER_KEY) == RENDER_MARKER_VALUE
    except Exception:  # unreadable, truncated, another format: not a render of ours
        return False
    return False


def is_frame_array(path: Path) -> bool:
    import numpy as np

    try:
        with open(path, "rb") as stream:
            version = np.lib.format.read_magic(stream)
            read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                           (2, 0): np.lib.format.read_array_header_2_0}.get(version)
            if read_header is None:
                return False
            shape, fortran, dtype = read_header(stream)
    except (OSError, ValueError):
        return False
    return dtype == np.float32 and len(shape) == 3 and shape[2] == 4 and not fortran


@dataclass(frozen=True)
class OutputKind:
    noun: str  # what the error messages call it
    folder: bool
    is_ours: Callable[[Path], bool]


BANK = OutputKind("weight bank", False, is_bank_file)
REPORT = OutputKind("report", True, is_report_folder)
IMAGE = OutputKind("rendered image", False, is_rendered_image)
FRAME = OutputKind("frame", False, is_frame_array)


def check_output(path, kind: OutputKind, overwrite: bool = False, option: str = "--out",
                 overwrite_flag: str = "--overwrite") -> Path:
    """Raise OutputError unless `kind` may be written at `path`; writes nothing that stays.

    `option` and `overwrite_flag` are how the caller's user names the path and the override.
    """
    path = Path(path)
    if path.is_dir() and not kind.folder:
        raise OutputError(f"{option} {path} is a folder; give a file name for the {kind.noun}")
    if path.exists() and kind.folder and not path.is_dir():
        raise OutputError(f"{option} {path} is a file; the {kind.noun} is a folder: give a new or empty folder, "
                          f"or an earlier {kind.noun}")
    if path.exists() and not overwrite and not kind.is_ours(path) and not _empty_folder(path):
        held = "a folder" if path.is_dir() else "a file"
        raise OutputError(f"{option} {path} is {held} this project did not write (not a {kind.noun}); "
                          f"choose another path, or pass {overwrite_flag} to replace it")
    _check_writable(path, option)
    return path


def _empty_folder(path: Path) -> bool:
    return path.is_dir() and not any(path.iterdir())


def _check_writable(path: Path, option: str) -> None:
    """The output's folder (or the nearest one there is, which its folders will be made in) takes a file."""
    folder = path.absolute().parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir():
        raise OutputError(f"{option} {path} cannot be created: {folder} is a file, not a folder")
    try:
        handle, probe = tempfile.mkstemp(prefix=".neural-face-probe-", dir=folder)
    except OSError as exc:
        raise OutputError(f"{option} {path} cannot be written: {folder} is not writable ({exc.strerror})") from None
    os.close(handle)
    os.unlink(probe)
