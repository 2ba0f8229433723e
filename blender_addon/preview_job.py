"""One Neural Render Preview frame. Only the two ends touch bpy, on the main thread; Cycles never runs there.

1. `PreviewJob(context)` (main thread, a few ms): reads the view, the lights and the settings, and
   writes the target's evaluated mesh when it changed (preview_snapshot.mesh_file).
2. `run` (a worker thread, no bpy): the service traces the G-buffer from that mesh and the
   dataset's baked albedo (the same tracer that made the training data) and shades it; with
   "Compare with Cycles", the preview's Blender worker path-traces the Cycles frame first.
3. `apply` (main thread, from a timer or a modal operator): bulk-write the images, record the timings.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import threading
import time

import bpy
import numpy as np

from . import preview_image, preview_snapshot, preview_worker_client
from .processes import blender_command
from .atomic import write_json_atomically
from .dataset_job import manifest_shadow_rays
from .errors import SceneError
from .preferences import connection
from .preview_pipeline import ShadedFrame, trace_and_shade
from .preview_view import find_viewport, resolution_for, scene_camera, scene_lights, viewport_camera
from .preview_worker_client import WorkerError
from .properties_dataset import dataset_folder
from .scene_export import SCENE_DIR
from .scene_setup import find_target
from .service_client import ServiceError, connect

REQUEST_NAME = "preview-request.json"  # the last frame's /preview request, kept in the work folder
WORKER_TIMEOUT_BASE_S = 120.0  # the first frame waits for the worker's Blender to start

BUTTON, LIVE = "button", "live"  # who starts a frame, and so who applies its result

_work_dir: str | None = None
# The one owner of the frames in flight, for the operator, Live and the panel's Cancel button alike.
_in_flight: "tuple[PreviewJob, threading.Thread] | None" = None  # one at a time: frames share the work files
_awaited: "dict[str, tuple[PreviewJob, threading.Thread]]" = {}  # by starter: the frame it will apply


def work_dir() -> str:
    """This Blender session's folder for preview files (the local service is allowed to use it)."""
    global _work_dir
    if _work_dir is None or not os.path.isdir(_work_dir):
        _work_dir = tempfile.mkdtemp(prefix="neural-face-preview-")
        atexit.register(shutil.rmtree, _work_dir, ignore_errors=True)
    return _work_dir


def busy() -> bool:
    """True while a frame (from the operator or from Live) is in flight."""
    return _in_flight is not None and _in_flight[1].is_alive()


def rendering_for(starter: str) -> bool:
    """True while the frame `starter` waits for is still rendering."""
    return starter in _awaited and _awaited[starter][1].is_alive()


def cancel_in_flight() -> None:
    """Cancel the frame in flight; its starter gets it back with the error "preview cancelled"."""
    if busy():
        _in_flight[0].cancel()


def drop(starter: str) -> None:
    """Cancel the frame `starter` waits for and forget it: nobody will apply it."""
    job, thread = _awaited.pop(starter, (None, None))
    if job is not None and thread.is_alive():
        job.cancel()


def run_in_background(job: "PreviewJob", starter: str = BUTTON) -> threading.Thread:
    """Render `job` in a thread; `take_finished(starter)` hands it back once rendered."""
    global _in_flight
    thread = threading.Thread(target=job.run, name="neural-preview", daemon=True)
    _in_flight = _awaited[starter] = (job, thread)
    thread.start()
    return thread


def take_finished(starter: str) -> "PreviewJob | None":
    """The frame `starter` started, once rendered, and only once; None while it renders or when there is none."""
    if starter not in _awaited or rendering_for(starter):
        return None
    return _awaited.pop(starter)[0]


def _target(context):
    """The Dataset panel's target, else the active mesh, else the scene's largest mesh."""
    chosen = context.scene.neural_face_dataset.target
    if chosen is not None:
        return find_target(context.scene, chosen.name)
    active = context.active_object
    if active is not None and active.type == "MESH" and active.data.uv_layers.active is not None:
        return active
    return find_target(context.scene)


def _shadow_rays(scene) -> int:
    """Shadow rays of the dataset the bank learnt from, else the Dataset panel's (what it would be made with)."""
    folder = dataset_folder(scene)
    made_with = manifest_shadow_rays(folder) if folder else None
    return made_with if made_with is not None else scene.neural_face_dataset.gbuffer_shadow_rays


def _baked_albedo(scene) -> str:
    """The dataset's baked albedo (scene/albedo.npz), which the tracer reads at each pixel's UV."""
    folder = dataset_folder(scene)
    path = os.path.join(folder, SCENE_DIR, "albedo.npz") if folder else ""
    if not path or not os.path.isfile(path):
        raise SceneError(f"no baked albedo in the dataset folder {folder!r}: the preview reads the albedo that "
                         "Generate Dataset bakes into DATASET/scene/; generate the dataset first, or set the Dataset "
                         "panel's output folder to the bank's dataset")
    return path


class PreviewJob:
    def __init__(self, context):
        # World matrices are only current after an evaluation; a script may have moved things since.
        context.view_layer.update()
        scene = context.scene
        self.scene_name = scene.name
        settings = scene.neural_face_preview
        self.target = _target(context)
        if settings.source == "VIEWPORT":
            view = find_viewport(context)
            if view is None:
                raise SceneError("no 3D viewport is open; choose the active camera as the preview's view")
            space, region = view
            self.camera = viewport_camera(space, space.region_3d)
            aspect = region.width / max(region.height, 1)
        else:
            self.camera = scene_camera(scene)
            render = scene.render
            aspect = (render.resolution_x * render.pixel_aspect_x) / (render.resolution_y * render.pixel_aspect_y)
        self.resolution = resolution_for(settings.resolution, aspect)
        self.lights, self.ignored_lights = scene_lights(scene)
        self.bank = scene.neural_face_train.resolved_bank(scene)
        if not self.bank:
            raise SceneError("no weight bank yet: train one (Train panel) or set the Weight Bank path")
        self.renderer = settings.renderer
        self.compare = settings.compare
        self.compare_samples = settings.compare_samples
        self.connection = connection(context)
        albedo = _baked_albedo(scene)
        self.timings: dict[str, float] = {}
        self.cycles: np.ndarray | None = None
        self.shaded: ShadedFrame | None = None
        self.error: str | None = None
        self.cancelled = False
        self.unsaved_images = preview_snapshot.unsaved_images(self.target) if self.compare else []
        mesh, self.timings["snapshot"] = preview_snapshot.mesh_file(self.target, work_dir())
        width, height = self.resolution
        self._preview = {
            "bank": self.bank, "mesh": mesh, "albedo": albedo, "camera": self.camera.to_record(width, height),
            "lights": self.lights, "resolution": [width, height], "shadow_rays": _shadow_rays(scene),
            "renderer": self.renderer,
        }
        self._request_id = preview_worker_client.new_request_id()
        self._request = None
        if self.compare:  # the Cycles frame needs the target in a file the worker's Blender can load
            snapshot, seconds = preview_snapshot.snapshot(self.target, work_dir())
            self.timings["snapshot"] += seconds
            self._request = {
                "scene": snapshot, "object": self.target.name,
                "matrix_world": [list(row) for row in self.target.matrix_world],
                "camera": self.camera.to_json(), "lights": self.lights, "resolution": list(self.resolution),
                "cycles": os.path.join(work_dir(), "preview.cycles.npy"), "cycles_samples": self.compare_samples,
            }

    def run(self) -> None:
        """Safe in a worker thread: touches no bpy data. Ends with `shaded` set, or `error`."""
        try:
            if self.compare:
                seconds = preview_worker_client.render(blender_command("preview"), self._request_id, self._request,
                                                       self._worker_timeout_s())
                self.timings["cycles"] = seconds["cycles"]
                self.cycles = np.load(self._request["cycles"])
            if not self.cancelled:
                folders = [work_dir(), os.path.dirname(self.bank), os.path.dirname(self._preview["albedo"])]
                client = connect(self.connection, folders)
                write_json_atomically(os.path.join(work_dir(), REQUEST_NAME), self._preview)  # what was asked, to inspect
                self.shaded = trace_and_shade(client, self._preview, work_dir())
                self.timings["gbuffer"] = self.shaded.trace_s
        except (ServiceError, WorkerError) as exc:
            self.error = str(exc)
        except Exception as exc:  # the thread's last word: apply() must find a frame or an error, never neither
            self.error = f"preview failed: {exc}"
        if self.cancelled:
            self.error, self.shaded = "preview cancelled", None

    def _worker_timeout_s(self) -> float:
        """Generous: it only catches a worker that hangs (a CPU doing 0.2 M samples/s is slow for Cycles)."""
        width, height = self.resolution
        return WORKER_TIMEOUT_BASE_S + width * height * self.compare_samples / 2e5

    def cancel(self) -> None:
        """Stop this frame: its Cycles render in the worker is killed (a new worker serves the next frame);
        tracing and shading, short, are left to finish and their result dropped."""
        self.cancelled = True
        preview_worker_client.cancel(self._request_id)

    def apply(self, scene) -> None:
        start = time.perf_counter()
        frame = self.shaded.frame
        preview_image.write_image(preview_image.PREVIEW_IMAGE, frame)
        settings = scene.neural_face_preview
        if self.cycles is not None:
            preview_image.write_image(preview_image.CYCLES_IMAGE, self.cycles)
            shown, settings.mean_abs_diff = preview_image.difference(frame, self.cycles)
            preview_image.write_image(preview_image.DIFFERENCE_IMAGE, shown)
        self.timings["upload"] = time.perf_counter() - start
        self.timings["transfer"], self.timings["shading"] = self.shaded.transfer_s, self.shaded.shading_s
        settings.snapshot_ms = 1000 * self.timings["snapshot"]
        settings.gbuffer_ms = 1000 * self.timings["gbuffer"]
        settings.transfer_ms = 1000 * self.timings["transfer"]
        settings.shading_ms = 1000 * self.timings["shading"]
        settings.upload_ms = 1000 * self.timings["upload"]
        settings.cycles_ms = 1000 * self.timings.get("cycles", 0.0)
        settings.renderer_used = self.shaded.renderer
        settings.status = f"{frame.shape[1]}x{frame.shape[0]} with {self.shaded.renderer}"
        for window in bpy.context.window_manager.windows:
            for area in window.screen.areas:
                if area.type in ("VIEW_3D", "IMAGE_EDITOR"):
                    area.tag_redraw()
