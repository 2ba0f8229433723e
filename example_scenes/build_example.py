"""Build the example scene from the scanned face: example_scenes/cache/james.blend.

The mesh and texture (james.obj, james.jpg) come from the menpo3d 0.8.6 source distribution
(BSD-3-Clause, Imperial College London), fetched by `python -m backend example`.
Usage: python example_scenes/build_example.py CACHE_DIR   (the bpy module's Python)
"""

import sys
from pathlib import Path

import bpy
import numpy as np
from mathutils import Matrix, Vector

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from blender_addon.camera_model import CameraSpec  # noqa: E402
from blender_addon.sampling import look_at  # noqa: E402
from blender_addon.scene_setup import bounds, make_skin_material  # noqa: E402

FACE_NAME = "James"


def import_face(cache: Path):
    """The scan as one smooth-shaded mesh with its UV map; after import it looks towards -Y."""
    bpy.ops.wm.obj_import(filepath=str(cache / "james.obj"))
    face = bpy.context.selected_objects[0]
    face.name = FACE_NAME
    bpy.context.view_layer.objects.active = face
    bpy.ops.object.shade_smooth()
    return face


def add_skin(face, cache: Path) -> None:
    """Replace the OBJ's plain material with subsurface skin whose base colour is the scan."""
    texture = bpy.data.images.load(str(cache / "james.jpg"))
    texture.pack()  # the .blend stands alone
    face.data.materials.clear()
    face.data.materials.append(make_skin_material(bounds(face)[1], texture))


def add_camera_and_lights(face) -> None:
    """A front camera and a key/fill pair, for looking at the scene; datasets place their own."""
    centre, radius = bounds(face)
    centre = Vector(centre)
    scene = bpy.context.scene
    camera = bpy.data.objects.new("Camera", bpy.data.cameras.new("Camera"))
    camera.data.lens = CameraSpec(None).lens_mm
    camera.data.clip_start, camera.data.clip_end = radius * 0.01, radius * 100
    eye = centre + Vector((0.0, -3.0 * radius, 0.3 * radius))
    camera.matrix_world = Matrix(look_at(np.array(eye), np.array(centre), np.array((0.0, 0.0, 1.0))).tolist())
    scene.collection.objects.link(camera)
    scene.camera = camera
    for name, offset, power in (("Key", (-1.5, -2.5, 1.5), 600.0), ("Fill", (2.5, -2.0, 0.0), 150.0)):
        light = bpy.data.objects.new(name, bpy.data.lights.new(name, "POINT"))
        light.data.energy = power * radius**2
        light.data.shadow_soft_size = 0.1 * radius
        light.location = centre + radius * Vector(offset)
        scene.collection.objects.link(light)
    scene.render.engine = "CYCLES"
    scene.render.resolution_x = scene.render.resolution_y = 512
    scene.world = None


def main(cache: Path) -> None:
    bpy.ops.wm.read_factory_settings(use_empty=True)
    face = import_face(cache)
    add_skin(face, cache)
    add_camera_and_lights(face)
    bpy.ops.wm.save_as_mainfile(filepath=str((cache / "james.blend").resolve()))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
