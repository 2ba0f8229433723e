"""Generate Dataset as a step-wise job shared by the modal operator and the headless CLI.

`DatasetJob.check()` validates everything before a byte is written; `start()` creates or resumes
the dataset folder and exports the scene the G-buffer tracer reads (scene_export.py); each
`step()` renders one sample's Cycles ground truth, has the backend's ray tracer write its
G-buffer (`trace_gbuffer`, given by the caller: the add-on never imports the backend, and
`python -m backend generate` runs this job for the UI and the CLI alike), and commits it by
rewriting manifest.json atomically. A sample exists only once its record is in the
manifest, so a killed run never leaves a half-written sample that reads as valid, and a re-run
renders only what is missing (docs/formats/dataset.md).
"""

from __future__ import annotations

import datetime
import glob
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass

import bpy

from .atomic import PARTIAL_SUFFIX, write_json_atomically
from .camera_model import CameraSpec
from .dataset_settings import UNLABELLED, DatasetSettings
from .errors import OutputError
from .ground_truth import render_ground_truth
from .render_rig import RenderRig
from .sampling import assign_split, sample_view
from .scene_export import SCENE_DIR, export_scene
from .scene_setup import bounds

FORMAT = "neural-face-dataset"
VERSION = 4  # 2: the "unlabelled" split of G-buffer-only views; 3: G-buffers traced from scene/;
# 4: the ground truth file holds each light's own pass too
MANIFEST = "manifest.json"
SAMPLES_DIR = "samples"


@dataclass
class Progress:
    done: int  # samples finished, including those kept from an earlier run
    total: int
    index: int  # the sample just rendered
    seconds: float  # its render time (G-buffer + ground truth)


def sample_name(index: int) -> str:
    return f"{index:06d}"


def manifest_shadow_rays(folder: str) -> int | None:
    """The shadow rays the dataset in `folder` was traced with; None when it holds none of ours."""
    try:
        with open(os.path.join(folder, MANIFEST)) as stream:
            return int(json.load(stream)["settings"]["gbuffer_shadow_rays"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


class DatasetJob:
    def __init__(self, settings: DatasetSettings, target, out_dir: str, overwrite: bool = False,
                 trace_gbuffer: Callable[[dict], float] | None = None, device: str = "CPU"):
        """`trace_gbuffer(record)` writes the G-buffer EXR of a sample record (its "gbuffer" path,
        relative to `out_dir`) and returns the seconds it took; `step` needs it, `render_sample`
        (what a cluster worker runs) does not. `device`: what Cycles renders the ground truth on
        (render_rig.DEVICES); not a setting, since it changes only the sampling noise."""
        self.settings = settings
        self.device = device
        self.trace_gbuffer = trace_gbuffer
        self.target = target
        self.out_dir = os.path.abspath(out_dir)
        self.overwrite = overwrite
        self.manifest: dict | None = None
        self.rig: RenderRig | None = None
        self.pending: list[int] = []

    @property
    def manifest_path(self) -> str:
        return os.path.join(self.out_dir, MANIFEST)

    def check(self) -> None:
        """Raise an InputError naming the problem; writes nothing."""
        self.settings.validate()
        if os.path.exists(self.out_dir) and not os.path.isdir(self.out_dir):
            raise OutputError(f"output {self.out_dir!r} exists and is not a folder")
        parent = self.out_dir
        while not os.path.exists(parent):
            parent = os.path.dirname(parent)
        if not os.path.isdir(parent) or not os.access(parent, os.W_OK | os.X_OK):
            raise OutputError(f"output folder {self.out_dir!r} cannot be created or written (check {parent!r})")
        if self.overwrite or not os.path.isdir(self.out_dir):
            return
        existing = self._read_existing_manifest()
        if existing is None:
            if os.listdir(self.out_dir):
                raise OutputError(f"output folder {self.out_dir!r} is not empty and holds no dataset; "
                                  "choose an empty folder or pass --overwrite")
        elif existing.get("settings") != self.settings.to_json():
            changed = sorted(k for k, v in self.settings.to_json().items() if existing["settings"].get(k) != v)
            raise OutputError(f"{self.manifest_path} holds a dataset made with other settings "
                              f"({', '.join(changed)}); use another folder or --overwrite to replace it")

    def _read_existing_manifest(self) -> dict | None:
        if not os.path.exists(self.manifest_path):
            return None
        try:
            with open(self.manifest_path) as stream:
                manifest = json.load(stream)
        except (OSError, ValueError) as exc:
            raise OutputError(f"{self.manifest_path} is unreadable ({exc}); pass --overwrite to replace it") from exc
        if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
            raise OutputError(f"{self.manifest_path} is not a version {VERSION} {FORMAT} manifest; "
                              "use another folder or --overwrite")
        return manifest

    def start(self, export: bool = True) -> None:
        """Create or resume the dataset folder and the render rig; fills `pending`. `export`: write
        `scene/` (mesh and baked albedo) unless it is there already (a cluster worker needs none)."""
        self.check()
        samples_dir = os.path.join(self.out_dir, SAMPLES_DIR)
        if self.overwrite:
            shutil.rmtree(samples_dir, ignore_errors=True)
            shutil.rmtree(os.path.join(self.out_dir, SCENE_DIR), ignore_errors=True)
            if os.path.exists(self.manifest_path):
                os.remove(self.manifest_path)
        os.makedirs(samples_dir, exist_ok=True)
        existing = self._read_existing_manifest()
        centre, radius = bounds(self.target)
        kept = [r for r in (existing or {}).get("samples", []) if self._files_exist(r)]
        self.manifest = {
            "format": FORMAT,
            "version": VERSION,
            "blender_version": bpy.app.version_string,
            "created": (existing or {}).get("created") or _utc_now(),
            "settings": self.settings.to_json(),
            "object": {"name": self.target.name, "bbox_center": centre, "bounding_radius": radius},
            "scene": SCENE_DIR,  # what the G-buffers are traced from (docs/formats/scene.md)
            "split": assign_split(self.settings.samples, self.settings.seed, self.settings.split,
                                  self.settings.unlabelled),
            "samples": kept,
        }
        write_json_atomically(self.manifest_path, self.manifest, durable=True)
        self._remove_orphans({r["index"] for r in kept})
        done = {r["index"] for r in kept}
        self.pending = [i for i in range(self.total) if i not in done]
        self.rig = RenderRig(self.target, tuple(self.settings.resolution), self.device)
        if export and not os.path.isfile(os.path.join(self.out_dir, SCENE_DIR, "scene.json")):
            export_scene(self.rig, self.out_dir)

    @property
    def total(self) -> int:
        """Labelled samples plus unlabelled views."""
        return self.settings.samples + self.settings.unlabelled

    def _files_exist(self, record: dict) -> bool:
        return all(os.path.isfile(os.path.join(self.out_dir, record[key])) for key in ("gbuffer", "ground_truth")
                   if record.get(key) is not None)

    def _remove_orphans(self, kept: set[int]) -> None:
        """Delete temporaries and files of samples a killed run did not commit."""
        for path in glob.glob(os.path.join(self.out_dir, SAMPLES_DIR, "*")):
            name = os.path.basename(path)
            stem = name.split(".")[0]
            if name.endswith(PARTIAL_SUFFIX) or not stem.isdigit() or int(stem) not in kept:
                os.remove(path)

    @property
    def done_count(self) -> int:
        return len(self.manifest["samples"]) if self.manifest else 0

    def step(self) -> Progress:
        """Render, trace and commit the next pending sample."""
        if self.trace_gbuffer is None:
            raise RuntimeError("DatasetJob.step needs trace_gbuffer: the backend's tracer writes the G-buffers")
        record = self.render_sample(self.pending[0])
        record["seconds"]["gbuffer"] = round(self.trace_gbuffer(record), 4)
        self.pending.pop(0)
        return self.commit(record)

    def commit(self, record: dict) -> Progress:
        """Add a sample whose files are in place to the manifest (the cluster driver commits this way too)."""
        index = record["index"]
        write_json_atomically(os.path.join(self.out_dir, SAMPLES_DIR, sample_name(index) + ".json"), record,
                              durable=True)
        self.manifest["samples"] = sorted(self.manifest["samples"] + [record], key=lambda r: r["index"])
        write_json_atomically(self.manifest_path, self.manifest, durable=True)
        return Progress(self.done_count, self.total, index, sum(record["seconds"].values()))

    def render_sample(self, index: int) -> dict:
        """Render sample `index`'s ground truth into the job's folder and return its record (not yet
        committed; its G-buffer is still to be traced)."""
        settings = self.settings
        obj = self.manifest["object"]
        matrix, lights = sample_view(settings, obj["bbox_center"], obj["bounding_radius"], index)
        camera = CameraSpec(matrix)
        name = sample_name(index)
        gbuffer = f"{SAMPLES_DIR}/{name}.gbuffer.exr"
        split = next(part for part, members in self.manifest["split"].items() if index in members)
        width, height = settings.resolution
        ground_truth, gt_seconds = None, 0.0  # an unlabelled view has a G-buffer only
        if split != UNLABELLED:
            ground_truth = f"{SAMPLES_DIR}/{name}.gt.exr"
            gt_seconds = render_ground_truth(self.rig, camera, lights, os.path.join(self.out_dir, ground_truth),
                                             settings.gt_samples, settings.gt_denoise, seed=index)
        return {
            "index": index,
            "split": split,
            "gbuffer": gbuffer,
            "ground_truth": ground_truth,
            "resolution": [width, height],
            "camera": camera.to_record(width, height),
            "lights": lights,
            "device": self.device,  # what Cycles rendered the ground truth on (its noise differs by device)
            "seconds": {"gbuffer": 0.0, "ground_truth": round(gt_seconds, 4)},
        }

    def close(self) -> None:
        if self.rig is not None:
            self.rig.close()
            self.rig = None

    def __enter__(self) -> "DatasetJob":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
