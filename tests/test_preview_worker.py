"""The preview's long-lived Blender worker (its "Compare with Cycles" frames) does not grow: many frames, new snapshots."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import ROOT

FRAMES = 24
WORKER_LOOP = """
import json, sys
sys.path.insert(0, sys.argv[1])
import bpy
from blender_addon.camera_model import CameraSpec
from blender_addon.preview_worker import PreviewScene, render

bpy.ops.wm.open_mainfile(filepath=sys.argv[2], load_ui=False)
suzanne = next(o for o in bpy.data.objects if o.type == "MESH")
out = sys.argv[3]
snapshots = [f"{out}/a.blend", f"{out}/b.blend"]
for path in snapshots:
    bpy.data.libraries.write(path, {suzanne}, path_remap="ABSOLUTE")
name, matrix = suzanne.name, [list(row) for row in suzanne.matrix_world]
camera = CameraSpec([[1, 0, 0, 0], [0, 0, -1, -4], [0, 1, 0, 0], [0, 0, 0, 1]]).to_json()
light = {"name": "NF_Light_0", "type": "POINT", "position": [2, -3, 2], "color": [1, 1, 1], "power": 400.0,
         "radius": 0.1, "lightgroup": "light0"}
bpy.ops.wm.read_factory_settings(use_empty=True)  # the worker starts from an empty file, as --factory-startup

def counts():
    return {name: len(getattr(bpy.data, name)) for name in ("objects", "meshes", "materials", "images", "libraries",
            "scenes", "cameras", "lights", "node_groups", "worlds", "textures")}

scene, seen = PreviewScene(), []
for frame in range(int(sys.argv[4])):
    render(scene, {"scene": snapshots[frame % 2], "object": name, "matrix_world": matrix,
                   "camera": camera, "lights": [light], "resolution": [16, 12], "cycles": f"{out}/c.npy",
                   "cycles_samples": 1})
    seen.append(counts())
print(json.dumps(seen))
"""


@pytest.mark.slow
def test_worker_data_stays_flat_over_many_frames_and_snapshots(suzanne_blend, tmp_path):
    completed = subprocess.run([sys.executable, "-c", WORKER_LOOP, str(ROOT), str(suzanne_blend), str(tmp_path),
                                str(FRAMES)], capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    seen = json.loads(completed.stdout.strip().splitlines()[-1])
    assert seen[1]["objects"] == 1 and seen[1]["libraries"] == 0, seen[1]  # only the loaded target stays
    assert seen[-1] == seen[1], f"bpy.data grew between frame 2 and frame {FRAMES}: {seen[1]} -> {seen[-1]}"
