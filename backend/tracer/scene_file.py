"""Read a traced scene (docs/formats/scene.md): the mesh and baked albedo the G-buffer tracer needs.

Written by the add-on (blender_addon/scene_export.py) into `DIR/scene/`; this is the reader and
its checks. Every problem raises SceneFileError naming the file and what to do.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from backend.errors import DatasetError

FORMAT = "neural-face-scene"
VERSION = 1
SCENE_DIR = "scene"
MESH_ARRAYS = ("positions", "triangles", "corner_uv", "corner_normal")


class SceneFileError(DatasetError):
    pass


@dataclass
class TracedScene:
    """World-space triangles with per-corner UV and normal, plus the albedo texture."""

    positions: np.ndarray  # [V, 3] float32
    triangles: np.ndarray  # [T, 3] int32
    corner_uv: np.ndarray  # [T, 3, 2] float32
    corner_normal: np.ndarray  # [T, 3, 3] float32, unit length
    albedo: np.ndarray  # [S, S, 3] float32 linear, row 0 = v 0
    source: str = "<memory>"

    def __post_init__(self) -> None:
        self.positions = np.ascontiguousarray(self.positions, np.float32)
        self.triangles = np.ascontiguousarray(self.triangles, np.int32)
        self.corner_uv = np.ascontiguousarray(self.corner_uv, np.float32)
        self.corner_normal = np.ascontiguousarray(self.corner_normal, np.float32)
        self.albedo = np.ascontiguousarray(self.albedo, np.float32)
        self.validate()

    def validate(self) -> None:
        n_tris = len(self.triangles)
        checks = [
            (self.positions.ndim == 2 and self.positions.shape[1] == 3, "positions must be [V, 3]"),
            (self.triangles.ndim == 2 and self.triangles.shape[1] == 3 and n_tris > 0, "triangles must be [T > 0, 3]"),
            (self.corner_uv.shape == (n_tris, 3, 2), "corner_uv must be [T, 3, 2]"),
            (self.corner_normal.shape == (n_tris, 3, 3), "corner_normal must be [T, 3, 3]"),
            (self.albedo.ndim == 3 and self.albedo.shape[2] == 3, "albedo must be [H, W, 3]"),
        ]
        for ok, problem in checks:
            if not ok:
                raise SceneFileError(f"{self.source}: {problem}")
        if n_tris and (self.triangles.min() < 0 or self.triangles.max() >= len(self.positions)):
            raise SceneFileError(f"{self.source}: a triangle names a vertex that does not exist")
        for name in ("positions", "corner_uv", "corner_normal", "albedo"):
            if not np.all(np.isfinite(getattr(self, name))):
                raise SceneFileError(f"{self.source}: {name} holds NaN or Inf values")


def _load_npz(path: Path, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [name for name in names if name not in data]
            if missing:
                raise SceneFileError(f"{path}: arrays {', '.join(missing)} are missing; export the scene again")
            return {name: data[name] for name in names}
    except FileNotFoundError:
        raise SceneFileError(f"{path} does not exist; generate the dataset again with this version") from None
    except (OSError, ValueError) as exc:
        raise SceneFileError(f"{path}: unreadable ({exc}); generate the dataset again") from None


def load_mesh(path: str | Path) -> dict[str, np.ndarray]:
    """The arrays of a `mesh.npz` (scene.md), unchecked until they become a TracedScene."""
    return _load_npz(Path(path), MESH_ARRAYS)


def load_scene(folder: str | Path) -> TracedScene:
    """`folder` is a dataset folder or its `scene/` folder."""
    folder = Path(folder)
    if (folder / SCENE_DIR / "scene.json").exists() or not (folder / "scene.json").exists():
        folder = folder / SCENE_DIR
    meta_path = folder / "scene.json"
    try:
        meta = json.loads(meta_path.read_text())
    except FileNotFoundError:
        raise SceneFileError(f"{meta_path} does not exist: the dataset holds no traced scene; generate it again "
                             "with this version (python -m backend generate)") from None
    except (OSError, ValueError) as exc:
        raise SceneFileError(f"{meta_path}: unreadable ({exc})") from None
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise SceneFileError(f"{meta_path}: not a version {VERSION} {FORMAT} file "
                             f"(found {meta.get('format')!r} version {meta.get('version')!r})")
    return TracedScene(**load_mesh(folder / "mesh.npz"), albedo=load_albedo(folder / "albedo.npz"), source=str(folder))


def load_albedo(path: str | Path) -> np.ndarray:
    """The baked texture of an `albedo.npz` (scene.md), [S, S, 3]."""
    return _load_npz(Path(path), ("albedo",))["albedo"]


def load_parts(mesh_path: str | Path, albedo_path: str | Path) -> TracedScene:
    """A scene from a mesh file and an albedo file apart (the preview: today's mesh, the dataset's bake)."""
    return TracedScene(**load_mesh(mesh_path), albedo=load_albedo(albedo_path), source=str(mesh_path))
