"""The Neural Render Preview's Blender worker: renders "Compare with Cycles" frames off the UI.

The preview's G-buffer is traced by the service (backend/tracer); only the Cycles comparison
needs Blender. bpy renders only on the main thread of the process that owns the data, and a
path-traced frame takes seconds, so the preview hands it to this persistent background Blender
(`worker.py preview`, started by preview_worker_client). Protocol, one JSON object a line:
- stdin, a request: `scene` (a .blend holding only the target object, written by
  `bpy.data.libraries.write` on the UI side, rewritten only when the object changed), `object`,
  `matrix_world`, `camera` (CameraSpec.to_json), `lights` (dataset light records), `resolution`,
  `cycles` (.npy to write) and `cycles_samples`; `id`;
- stdout, the reply: `{"id": ..., "ok": true, "seconds": {...}}` or `{"id": ..., "ok": false,
  "error": "..."}`. Blender's and Cycles' own output is moved to stderr (the add-on's log file) at
  start, so stdout carries replies only.
The worker exits when stdin closes: when its Blender quits or dies, after the frame in hand.
"""

from __future__ import annotations

import json
import os
import sys
import time

import bpy
import numpy as np
from mathutils import Matrix

from .atomic import atomic_open
from .camera_model import CameraSpec
from .errors import InputError, SceneError
from .ground_truth import render_ground_truth
from .preview_image import load_exr
from .render_rig import RenderRig
from .scene_setup import ensure_material


class PreviewScene:
    """The target object of the latest snapshot, loaded once per snapshot file (the UI side keeps the
    file while the object is unchanged, so camera and light moves reuse it)."""

    def __init__(self):
        self._snapshot: str | None = None
        self._target = None

    def target(self, snapshot: str, name: str, matrix_world: list):
        loaded = snapshot != self._snapshot
        if loaded:
            self._load(snapshot, name)
        # The snapshot's object is not parented in the rig, so its world placement is set directly.
        self._target.matrix_world = Matrix(matrix_world)
        if loaded:  # as the dataset worker did on its copy: a bare mesh was rendered with the skin material
            ensure_material(self._target)
        return self._target

    def _load(self, snapshot: str, name: str) -> None:
        if self._target is not None:  # the previous snapshot's object and everything only it used
            bpy.data.objects.remove(self._target)
            self._target, self._snapshot = None, None
            bpy.data.orphans_purge(do_recursive=True)
        if not os.path.isfile(snapshot):
            raise SceneError(f"scene snapshot {snapshot!r} does not exist")
        with bpy.data.libraries.load(snapshot, link=False) as (source, loaded):
            if name not in source.objects:
                raise SceneError(f"object {name!r} is not in the preview's scene snapshot")
            loaded.objects = [name]
        for library in list(bpy.data.libraries):  # appended data is local; the file's record would pile up
            bpy.data.libraries.remove(library)
        self._target = loaded.objects[0]
        # The UI sends the evaluated world matrix; nothing in the worker may move the object again.
        self._target.parent = None
        self._target.constraints.clear()
        self._target.animation_data_clear()
        self._snapshot = snapshot


def render(scene: PreviewScene, request: dict) -> dict:
    """Write the request's Cycles frame; returns seconds per stage."""
    start = time.perf_counter()
    target = scene.target(request["scene"], request["object"], request["matrix_world"])
    camera = CameraSpec.from_json(request["camera"])
    resolution = tuple(request["resolution"])
    seconds = {"load": time.perf_counter() - start}
    if request.get("cycles"):
        start = time.perf_counter()
        exr = request["cycles"] + ".exr"
        with RenderRig(target, resolution) as rig:
            image = rig.scene.render.image_settings  # one RGBA layer, which bpy can load as an image
            image.media_type = "IMAGE"
            image.file_format = "OPEN_EXR"
            image.color_mode = "RGBA"
            render_ground_truth(rig, camera, request["lights"], exr, request["cycles_samples"], denoise=True,
                                per_light=False)
        frame = load_exr(exr)
        os.remove(exr)
        with atomic_open(request["cycles"], "wb") as stream:  # the UI side reads it with numpy alone
            np.save(stream, frame)
        seconds["cycles"] = time.perf_counter() - start
    return seconds


def main() -> int:
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8")
    sys.stdout.flush()
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # from now on, everything else printed goes to the log
    scene = PreviewScene()
    for line in sys.stdin:  # ends when the add-on closes the pipe, or when its Blender dies
        request = json.loads(line)
        try:
            reply = {"ok": True, "seconds": render(scene, request)}
        except InputError as exc:
            reply = {"ok": False, "error": str(exc)}
        except Exception as exc:  # a failed render must reach the user as a report, not end the worker
            reply = {"ok": False, "error": f"rendering the preview's Cycles frame failed: {exc}"}
        replies.write(json.dumps({"id": request.get("id"), **reply}) + "\n")
        replies.flush()
    return 0
