"""What the preview looks at: the camera (active scene camera or the 3D viewport's view) and the lights.

The preview shades the user's scene as it is: its point lights become the G-buffer recipe's light
records (dataset.md "Sample record"), so the trained networks see inputs made exactly as in training.
"""

from __future__ import annotations

import numpy as np

from .camera_model import CameraSpec
from .errors import SceneError

# Blender draws a perspective viewport as a camera with a 36 mm sensor and twice the view's lens
# field of view (CAMERA_PARAM_ZOOM_INIT_PERSP = 2 in BKE_camera_params_from_view3d).
VIEWPORT_SENSOR_MM = 36.0
VIEWPORT_ZOOM = 2.0


def scene_camera(scene) -> CameraSpec:
    if scene.camera is None:
        raise SceneError("the scene has no active camera; add one or choose the viewport's view")
    try:
        return CameraSpec.from_object(scene.camera)
    except ValueError as exc:
        raise SceneError(str(exc)) from None


def viewport_camera(space, region_3d) -> CameraSpec:
    """The camera a perspective 3D viewport draws with (its view matrix inverted)."""
    if region_3d.view_perspective == "ORTHO":
        raise SceneError("the viewport is orthographic; switch it to perspective (numpad 5) for the preview")
    matrix_world = np.array(region_3d.view_matrix.inverted(), dtype=np.float64)
    return CameraSpec(matrix_world, lens_mm=space.lens / VIEWPORT_ZOOM, sensor_width_mm=VIEWPORT_SENSOR_MM,
                      sensor_height_mm=VIEWPORT_SENSOR_MM, sensor_fit="AUTO")


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


def resolution_for(size: int, aspect: float) -> tuple[int, int]:
    """(width, height) whose larger side is `size`, for a width/height `aspect`."""
    if aspect >= 1.0:
        return size, max(1, round(size / aspect))
    return max(1, round(size * aspect)), size


def scene_lights(scene) -> tuple[list[dict], list[str]]:
    """Light records of the scene's visible point lights, and the names of lights the recipe ignores."""
    records, ignored = [], []
    for obj in scene.objects:
        if obj.type != "LIGHT" or not obj.visible_get():
            continue
        if obj.data.type != "POINT":
            ignored.append(obj.name)
            continue
        k = len(records)
        records.append({
            "name": f"NF_Light_{k}", "type": "POINT",
            "position": [float(x) for x in obj.matrix_world.translation],
            "color": [float(c) for c in obj.data.color],
            "power": float(obj.data.energy),
            "radius": float(obj.data.shadow_soft_size),
            "lightgroup": f"light{k}",
        })
    if not records:
        raise SceneError("the scene has no visible point light; the preview shades point lights only")
    return records, ignored
