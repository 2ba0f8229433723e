"""Live preview: re-render, debounced, when the view, a light or the object changes.

A bpy.app.timers tick compares a signature of what the frame depends on (view, lights, object
transforms and vertex positions, material edits, preview settings); after DEBOUNCE_S without change it starts a
PreviewJob, whose G-buffer render and shading run in a thread, and applies the result on a later tick. A
signature, unlike depsgraph update handlers, is not fooled by the preview's own render scene.
"""

from __future__ import annotations

import time

import bpy
import numpy as np

from . import preview_job, preview_snapshot
from .errors import InputError
from .preview_job import LIVE, PreviewJob
from .preview_view import find_viewport

DEBOUNCE_S = 0.3
TICK_S = 0.1

_enabled = False
_due: float | None = None
_signature = None


def _rounded(values) -> tuple:
    return tuple(round(float(v), 5) for v in values)


def _geometry(mesh) -> int:
    """Fingerprint of the vertex positions (about 0.1 ms for a scanned face's 6k vertices)."""
    positions = np.empty(len(mesh.vertices) * 3, dtype=np.float32)
    mesh.vertices.foreach_get("co", positions)
    return hash(positions.tobytes())


def signature(context) -> tuple:
    """Everything a preview frame depends on, compared on every tick."""
    context.view_layer.update()  # as PreviewJob does: current world matrices, or a later frame differs
    scene = context.scene
    settings = scene.neural_face_preview
    parts = [settings.source, settings.resolution, settings.renderer, settings.compare,
             preview_snapshot.material_edits()]
    for obj in scene.objects:
        if obj.type == "LIGHT":
            parts.append(_rounded([*obj.matrix_world.translation, *obj.data.color, obj.data.energy,
                                   obj.data.shadow_soft_size, obj.visible_get()]))
        elif obj.type == "MESH" or obj == scene.camera:
            parts.append(_rounded(v for row in obj.matrix_world for v in row))
        if obj.type == "MESH":
            if obj.mode == "EDIT":
                obj.update_from_editmode()  # Edit Mode's changes reach the mesh data only through this
            parts.append(_geometry(obj.data))
    if scene.camera is not None:
        parts.append(_rounded([scene.camera.data.lens, scene.camera.data.sensor_width]))
    view = find_viewport(context) if settings.source == "VIEWPORT" else None
    if view is not None:
        space, region = view
        parts.append(_rounded([*(v for row in space.region_3d.view_matrix for v in row), space.lens,
                               region.width, region.height]))
    return tuple(parts)


def _tick():
    global _due, _signature
    if not _enabled:
        return None
    context = bpy.context
    finished = preview_job.take_finished(LIVE)
    if finished is not None:
        _finish(context, finished)
    if preview_job.rendering_for(LIVE):
        return TICK_S
    current = signature(context)
    if current != _signature:
        _signature, _due = current, time.monotonic() + DEBOUNCE_S
    if _due is not None and time.monotonic() >= _due and not preview_job.busy():  # else retry on a later tick
        _due = None
        _start(context)
    return TICK_S


def _start(context) -> None:
    try:
        job = PreviewJob(context)
    except InputError as exc:
        context.scene.neural_face_preview.status = str(exc)
        return
    except Exception as exc:  # e.g. a full disk: an exception would unregister the timer, Live silently off
        context.scene.neural_face_preview.status = f"live preview failed: {exc}"
        return
    preview_job.run_in_background(job, LIVE)


def _finish(context, job: PreviewJob) -> None:
    if job.error is not None:
        context.scene.neural_face_preview.status = job.error
    else:
        job.apply(context.scene)


def set_enabled(enabled: bool) -> None:
    """Start or stop live updates (the Live checkbox); timers never fire in background mode."""
    global _enabled, _signature
    if enabled == _enabled:
        return
    _enabled = enabled
    if enabled:
        _signature = None
        bpy.app.timers.register(_tick, first_interval=TICK_S)
    else:
        if bpy.app.timers.is_registered(_tick):
            bpy.app.timers.unregister(_tick)
        preview_job.drop(LIVE)  # its result would never be applied
