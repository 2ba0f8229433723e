"""Read datasets written by Generate Dataset (docs/formats/dataset.md) into canonical G-buffers.

`open_dataset(DIR)` checks the manifest; `Dataset.load_gbuffer(i)` and `load_ground_truth(i)` read
sample i's EXRs; `read_gbuffer(path)` reads a lone G-buffer EXR with its sidecar record;
`write_gbuffer_exr` writes the G-buffer file (the tracer's output, in the layout the reader
reads). Every problem raises DatasetError or GBufferError naming the file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from backend.errors import DatasetError, GBufferError
from backend.exr import ExrError, read_parts, write_parts
from backend.gbuffer import FIXED_PLANES, MASK, NORMAL, GBuffer, light_pass_planes

FORMAT = "neural-face-dataset"
# 2 added the "unlabelled" split (records whose ground_truth is null); 3 traces every G-buffer with
# the backend's ray tracer from the exported scene (no Cycles sampling noise in the light passes);
# 4 adds each light's own ground truth (its light group's pass, denoised on its own) to the ground truth file.
VERSION = 4
SUPPORTED_VERSIONS = (4,)
UNLABELLED = "unlabelled"

# EXR part and channels of each fixed G-buffer plane group, in plane order (gbuffer.md section 1).
GBUFFER_CHANNELS = [
    ("GBuffer.Combined", "A"),  # coverage mask
    ("GBuffer.UV", "UV"),
    ("Lights.Normal", "XYZ"),  # the normal the light passes were shaded with
    ("GBuffer.Position", "XYZ"),
    ("GBuffer.Diffuse Color", "RGB"),  # Blender's DiffCol pass: albedo
]
LIGHT_PART = "Lights.Combined_{lightgroup}"
LIGHTS_COVERAGE_PART = "Lights.Combined"
GROUND_TRUTH_PART = "GroundTruth.Combined"
GROUND_TRUTH_LIGHT_PART = "GroundTruth.Combined_{lightgroup}"  # the radiance light `lightgroup` alone gives


def _read(path: Path, error=DatasetError) -> dict[str, dict[str, np.ndarray]]:
    try:
        return read_parts(path)
    except ExrError as exc:
        raise error(str(exc)) from None


def _planes(parts: dict, path: Path, part: str, channels: str, shape: tuple[int, int], error) -> np.ndarray:
    if part not in parts:
        raise error(f"{path}: pass {part!r} is missing (found: {', '.join(sorted(parts))})")
    layer = parts[part]
    for channel in channels:
        if channel not in layer:
            raise error(f"{path}: channel {channel!r} of pass {part!r} is missing")
        if layer[channel].shape != shape:
            raise error(f"{path}: pass {part!r} is {layer[channel].shape[::-1]} pixels (W, H), "
                        f"the record says {shape[::-1]}")
    return np.stack([layer[channel] for channel in channels])


def lights_array(lights: list[dict], source: str) -> np.ndarray:
    """[L, 8] float32 (gbuffer.md section 1) of light records (position, color, power, radius)."""
    try:
        return np.array([[*light["position"], *light["color"], light["power"], light["radius"]] for light in lights],
                        dtype=np.float32).reshape(-1, 8)
    except (KeyError, TypeError, ValueError) as exc:
        raise GBufferError(f"{source}: malformed light record ({exc})") from None


def _unpremultiply_lights_layer(planes: np.ndarray, lights_alpha: np.ndarray) -> None:
    """Make the `Lights` layer describe the pixel centre like the 1-sample `GBuffer` layer.

    Its few samples lie within 0.005 px of the centre, yet where a silhouette passes that close
    some miss, which scales the Normal and light passes by the hit fraction `lights_alpha`.
    Divide it out and keep as covered only pixels both layers hit.
    """
    covered = (planes[MASK] > 0.5) & (lights_alpha > 0)
    planes[MASK] = covered
    scale = np.where(covered, 1.0 / np.maximum(lights_alpha, 1e-6), 0.0).astype(np.float32)
    planes[FIXED_PLANES:] *= scale
    length = np.linalg.norm(planes[NORMAL], axis=0)
    planes[NORMAL] /= np.where(covered, np.maximum(length, 1e-12), 1.0)


def gbuffer_from_exr(exr_path: Path, record: dict) -> GBuffer:
    """Assemble the canonical G-buffer of one EXR and its sample record."""
    source = str(exr_path)
    try:
        width, height = record["resolution"]
        camera_position = record["camera"]["position"]
        focal_px = float(record["camera"]["K"][0][0])
        lightgroups = [light["lightgroup"] for light in record["lights"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise GBufferError(f"{source}: its record lacks resolution, camera or lights ({exc})") from None
    if not lightgroups:
        raise GBufferError(f"{source}: its record lists no lights")
    parts = _read(exr_path, GBufferError)
    shape = (height, width)
    planes = [_planes(parts, exr_path, part, channels, shape, GBufferError) for part, channels in GBUFFER_CHANNELS]
    planes += [_planes(parts, exr_path, LIGHT_PART.format(lightgroup=group), "RGB", shape, GBufferError)
               for group in lightgroups]
    stacked = np.concatenate(planes)
    _unpremultiply_lights_layer(stacked, _planes(parts, exr_path, LIGHTS_COVERAGE_PART, "A", shape, GBufferError)[0])
    return GBuffer(stacked, lights_array(record["lights"], source), np.asarray(camera_position), source=source,
                   focal_px=focal_px)


def write_gbuffer_exr(path: str | os.PathLike, gbuffer: GBuffer, record: dict, attributes: dict[str, str]) -> None:
    """Write `gbuffer` as the G-buffer file of `record` (the parts and channels gbuffer_from_exr reads),
    atomically; `attributes` (e.g. the tracer and its version) go into every part's header."""
    parts = {part: dict(zip(channels, gbuffer.planes[start : start + len(channels)]))
             for (part, channels), start in zip(GBUFFER_CHANNELS, (0, 1, 3, 6, 9))}
    parts[LIGHTS_COVERAGE_PART] = {"A": gbuffer.planes[MASK]}  # one exact hit per pixel: nothing to divide out
    for k, light in enumerate(record["lights"]):
        parts[LIGHT_PART.format(lightgroup=light["lightgroup"])] = dict(zip("RGB", gbuffer.planes[light_pass_planes(k)]))
    write_parts(path, parts, attributes)


def sidecar_path(exr_path: Path) -> Path:
    """`NAME.gbuffer.exr` or `NAME.exr` -> `NAME.json` (matches blender_addon/gbuffer.py)."""
    name = exr_path.name
    for suffix in (".exr", ".gbuffer"):
        name = name[: -len(suffix)] if name.endswith(suffix) else name
    return exr_path.with_name(name + ".json")


def read_gbuffer(exr_path: str | os.PathLike) -> GBuffer:
    """Read a single G-buffer EXR with its sidecar record."""
    exr_path = Path(exr_path)
    record_path = sidecar_path(exr_path)
    try:
        record = json.loads(record_path.read_text())
    except FileNotFoundError:
        raise GBufferError(f"{exr_path}: its record {record_path} does not exist") from None
    except (OSError, ValueError) as exc:
        raise GBufferError(f"{record_path}: unreadable record ({exc})") from None
    return gbuffer_from_exr(exr_path, record)


class Dataset:
    """A dataset folder: its manifest and finished samples, by sample index."""

    def __init__(self, root: Path, manifest: dict):
        self.root = root
        self.manifest = manifest
        self.records = {record["index"]: record for record in manifest["samples"]}

    @property
    def settings(self) -> dict:
        return self.manifest["settings"]

    @property
    def resolution(self) -> tuple[int, int]:
        width, height = self.settings["resolution"]
        return width, height

    def __len__(self) -> int:
        return len(self.records)

    @property
    def bounding_radius(self) -> float:
        """The target object's bounding radius in scene units (the scale of the pre-filter's radii)."""
        return float(self.manifest["object"]["bounding_radius"])

    def indices(self, split: str | None = None) -> list[int]:
        """Finished sample indices, optionally only those of split "train", "val", "test" or "unlabelled"."""
        if split == UNLABELLED and split not in self.manifest["split"]:
            return []  # a version 1 dataset has none
        if split is not None and split not in self.manifest["split"]:
            raise DatasetError(f"{self.root}: unknown split {split!r}; choose train, val, test or unlabelled")
        return sorted(i for i, record in self.records.items() if split is None or record["split"] == split)

    def labelled(self) -> list[int]:
        """Finished samples with a ground truth (every split but "unlabelled")."""
        return [i for i in self.indices() if self.records[i]["split"] != UNLABELLED]

    def record(self, index: int) -> dict:
        if index not in self.records:
            raise DatasetError(f"{self.root}: sample {index} is not in the manifest "
                               f"({len(self.records)} finished samples)")
        return self.records[index]

    def load_gbuffer(self, index: int) -> GBuffer:
        record = self.record(index)
        return gbuffer_from_exr(self.root / record["gbuffer"], record)

    def _ground_truth_parts(self, index: int) -> tuple[Path, dict, tuple[int, int]]:
        record = self.record(index)
        if record.get("ground_truth") is None:
            raise DatasetError(f"{self.root}: sample {index} is an unlabelled view (a G-buffer without ground truth)")
        path = self.root / record["ground_truth"]
        width, height = record["resolution"]
        return path, _read(path), (height, width)

    def load_ground_truth(self, index: int) -> np.ndarray:
        """RGBA float32 [4, H, W]: linear radiance premultiplied by alpha, alpha = coverage."""
        path, parts, shape = self._ground_truth_parts(index)
        return _combined_ground_truth(path, parts, shape)

    def load_light_ground_truths(self, index: int) -> np.ndarray:
        """Each light's own radiance, float32 [L, 3, H, W] in the record's light order (their sum is
        the combined ground truth up to the denoiser's error); black where the film is empty."""
        path, parts, shape = self._ground_truth_parts(index)
        coverage = _combined_ground_truth(path, parts, shape)[3]
        lights = np.stack([_planes(parts, path, GROUND_TRUTH_LIGHT_PART.format(lightgroup=light["lightgroup"]), "RGB",
                                   shape, DatasetError) for light in self.record(index)["lights"]])
        if not np.all(np.isfinite(lights)):
            raise DatasetError(f"{path}: a light's ground truth holds NaN or Inf values")
        lights[:, :, coverage == 0] = 0
        return lights


def _combined_ground_truth(path: Path, parts: dict, shape: tuple[int, int]) -> np.ndarray:
    image = _planes(parts, path, GROUND_TRUTH_PART, "RGBA", shape, DatasetError)
    if not np.all(np.isfinite(image)):
        raise DatasetError(f"{path}: ground truth holds NaN or Inf values")
    image[:3, image[3] == 0] = 0  # the denoiser bleeds colour into the empty film; it is black
    return image


def open_dataset(root: str | os.PathLike) -> Dataset:
    root = Path(root)
    manifest_path = root / "manifest.json"
    try:
        manifest = json.loads(manifest_path.read_text())
    except FileNotFoundError:
        raise DatasetError(f"{manifest_path} does not exist; generate a dataset first "
                           "(python -m backend generate)") from None
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{manifest_path}: unreadable manifest ({exc})") from None
    if manifest.get("format") != FORMAT:
        raise DatasetError(f"{manifest_path}: not a {FORMAT} manifest")
    if manifest.get("version") == 3:
        raise DatasetError(f"{manifest_path}: a version 3 dataset, whose ground truth holds only the sum over the "
                           f"lights; training now learns from each light's own ground truth (dataset version "
                           f"{VERSION}). Generate it again with the same settings (python -m backend generate "
                           "--overwrite, or into a new folder)")
    if manifest.get("version") in (1, 2):
        raise DatasetError(f"{manifest_path}: a version {manifest['version']} dataset, whose G-buffers Cycles "
                           f"rendered; this version traces them from the exported scene (dataset version {VERSION}, "
                           "feature spec 3), so its banks would see other inputs. Generate the dataset again with "
                           "the same settings into a new folder (python -m backend generate)")
    if manifest.get("version") not in SUPPORTED_VERSIONS:
        raise DatasetError(f"{manifest_path}: dataset format version {manifest.get('version')} "
                           f"is not supported (this code reads version {VERSION})")
    for key in ("settings", "split", "samples"):
        if key not in manifest:
            raise DatasetError(f"{manifest_path}: key {key!r} is missing")
    return Dataset(root, manifest)
