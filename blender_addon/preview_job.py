"""One Neural Render Preview frame, in three steps that run where Blender allows them.

1. `render_inputs` (main thread: bpy renders only there): the G-buffer of the view with THE dataset
   recipe (gbuffer.write_gbuffer), and with "Compare with Cycles" the Cycles render of the same view.
2. `shade` (a worker thread, no bpy): the service shades the G-buffer; the frame comes back as a file.
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

from . import preview_image
from .errors import SceneError
from .gbuffer import write_gbuffer
from .ground_truth import render_ground_truth
from .preferences import connection
from .preview_pipeline import ShadedFrame, shade
from .preview_view import resolution_for, scene_camera, scene_lights, viewport_camera
from .render_rig import RenderRig
from .scene_setup import find_target
from .service_client import ServiceError, connect

_work_dir: str | None = None
_shading: threading.Thread | None = None  # one frame in flight at a time: they share the work files


def work_dir() -> str:
    """This Blender session's folder for preview files (the local service is allowed to use it)."""
    global _work_dir
    if _work_dir is None or not os.path.isdir(_work_dir):
        _work_dir = tempfile.mkdtemp(prefix="neural-face-preview-")
        atexit.register(shutil.rmtree, _work_dir, ignore_errors=True)
    return _work_dir


def busy() -> bool:
    """True while a frame (from the operator or from Live) is being shaded."""
    return _shading is not None and _shading.is_alive()


def shade_in_background(job: "PreviewJob") -> threading.Thread:
    global _shading
    _shading = threading.Thread(target=job.shade, name="neural-preview", daemon=True)
    _shading.start()
    return _shading


def find_viewport(context):
    """(space, region) of the 3D viewport in context, else of the first one on screen; None if there is none."""
    areas = [context.area] if context.area is not None and context.area.type == "VIEW_3D" else []
    for window in context.window_manager.windows:
        areas += [a for a in window.screen.areas if a.type == "VIEW_3D"]
    for area in areas:
        region = next((r for r in area.regions if r.type == "WINDOW"), None)
        if region is not None:
            return area.spaces.active, region
    return None


def _target(context):
    """The Dataset panel's target, else the active mesh, else the scene's largest mesh."""
    chosen = context.scene.neural_face_dataset.target
    if chosen is not None:
        return find_target(context.scene, chosen.name)
    active = context.active_object
    if active is not None and active.type == "MESH" and active.data.uv_layers.active is not None:
        return active
    return find_target(context.scene)


class PreviewJob:
    def __init__(self, context):
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
        self.gbuffer_path = os.path.join(work_dir(), "preview.gbuffer.exr")
        self.timings: dict[str, float] = {}
        self.cycles = None
        self.shaded: ShadedFrame | None = None
        self.error: str | None = None

    def render_inputs(self) -> None:
        start = time.perf_counter()
        write_gbuffer(self.target, self.camera, self.lights, self.resolution, self.gbuffer_path)
        self.timings["gbuffer"] = time.perf_counter() - start
        if self.compare:
            start = time.perf_counter()
            path = os.path.join(work_dir(), "preview.cycles.exr")
            with RenderRig(self.target, self.resolution) as rig:
                image = rig.scene.render.image_settings  # one RGBA layer, which bpy can load as an image
                image.media_type = "IMAGE"
                image.file_format = "OPEN_EXR"
                image.color_mode = "RGBA"
                render_ground_truth(rig, self.camera, self.lights, path, self.compare_samples, denoise=True)
            self.cycles = preview_image.load_exr(path)
            self.timings["cycles"] = time.perf_counter() - start

    def shade(self) -> None:
        """Safe in a worker thread: touches no bpy data."""
        try:
            client = connect(self.connection, [work_dir(), os.path.dirname(self.bank)])
            self.shaded = shade(client, self.bank, self.gbuffer_path, self.renderer, work_dir())
        except ServiceError as exc:
            self.error = str(exc)
        except Exception as exc:  # the thread's last word: apply() must find a frame or an error, never neither
            self.error = f"preview failed: {exc}"

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
        settings.gbuffer_ms = 1000 * self.timings["gbuffer"]
        settings.transfer_ms = 1000 * self.timings["transfer"]
        settings.shading_ms = 1000 * self.timings["shading"]
        settings.upload_ms = 1000 * self.timings["upload"]
        settings.cycles_ms = 1000 * self.timings.get("cycles", 0.0)
        settings.renderer_used = self.shaded.renderer
        settings.gbuffer_path = self.gbuffer_path
        settings.status = f"{frame.shape[1]}x{frame.shape[0]} with {self.shaded.renderer}"
        for window in bpy.context.window_manager.windows:
            for area in window.screen.areas:
                if area.type in ("VIEW_3D", "IMAGE_EDITOR"):
                    area.tag_redraw()
