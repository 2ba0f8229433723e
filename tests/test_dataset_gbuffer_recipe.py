"""The G-buffer recipe as the preview calls it: one view from a Blender camera object -> EXR + sidecar."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from backend.dataset import read_gbuffer
from blender_addon.camera_model import project
from conftest import ROOT

ONE_VIEW = textwrap.dedent("""
    import sys, math, bpy
    sys.path.insert(0, sys.argv[1])
    from blender_addon.camera_model import CameraSpec
    from blender_addon.gbuffer import write_gbuffer
    bpy.ops.wm.open_mainfile(filepath=sys.argv[2])
    camera = bpy.data.objects.new("Cam", bpy.data.cameras.new("Cam"))
    bpy.context.scene.collection.objects.link(camera)
    camera.location = (0.6, -5.0, 0.4)
    camera.rotation_euler = (math.radians(88), 0, math.radians(6))
    camera.data.sensor_fit, camera.data.shift_x, camera.data.shift_y = sys.argv[4], 0.08, -0.05
    light = {"name": "L", "type": "POINT", "position": [2.0, -4.0, 3.0], "color": [1.0, 0.9, 0.8],
             "power": 800.0, "radius": 0.0, "lightgroup": "light0"}
    write_gbuffer(bpy.data.objects["Suzanne"], CameraSpec.from_object(camera), [light], (48, 32), sys.argv[3])
""")


@pytest.mark.parametrize("sensor_fit", ["AUTO", "VERTICAL"])
def test_one_view_from_a_camera_object_reprojects_exactly(suzanne_blend, tmp_path, sensor_fit):
    exr = tmp_path / "view.gbuffer.exr"
    result = subprocess.run([sys.executable, "-c", ONE_VIEW, str(ROOT), str(suzanne_blend), str(exr), sensor_fit],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    gbuffer = read_gbuffer(exr)
    assert (gbuffer.height, gbuffer.width, gbuffer.n_lights) == (32, 48, 1)
    record = json.loads((tmp_path / "view.json").read_text())
    rows, cols = np.nonzero(gbuffer.covered)
    assert rows.size > 100
    pixels = project(record["camera"]["matrix_world"], record["camera"]["K"], gbuffer.position[:, rows, cols].T)
    assert np.abs(pixels - np.stack([cols + 0.5, rows + 0.5], axis=1)).max() < 0.1
