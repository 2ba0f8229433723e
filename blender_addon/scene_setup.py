"""Scenes in, target mesh out: open a .blend or import an .obj, find and check the face mesh,
and give it a subsurface skin material when it has none.
"""

from __future__ import annotations

import os

import bpy
from mathutils import Vector

from .errors import SceneError

SKIN_MATERIAL = "NF_Skin"
# Red light scatters furthest in skin; Subsurface Scale is set relative to the head's size.
SKIN_SUBSURFACE_RADIUS = (1.0, 0.35, 0.2)
SKIN_SCALE_PER_BOUNDING_RADIUS = 0.02  # ~4 mm for a real head (radius ~0.2 m)
DEFAULT_SKIN_COLOR = (0.8, 0.55, 0.45, 1.0)


def load_scene_file(path: str) -> None:
    """Make `path` (.blend or .obj) the current Blender file."""
    if not os.path.isfile(path):
        raise SceneError(f"scene file {path!r} does not exist")
    extension = os.path.splitext(path)[1].lower()
    if extension not in (".blend", ".obj"):
        raise SceneError(f"scene file {path!r} is neither a .blend nor an .obj file")
    try:
        if extension == ".blend":
            bpy.ops.wm.open_mainfile(filepath=os.path.abspath(path), load_ui=False)
        else:
            bpy.ops.wm.read_factory_settings(use_empty=True)
            bpy.ops.wm.obj_import(filepath=os.path.abspath(path))
    except RuntimeError as exc:  # Blender reports unreadable files this way
        raise SceneError(f"Blender could not read scene file {path!r}: {str(exc).strip()}") from None


def find_target(scene, name: str = ""):
    """The named mesh object, or the scene's only / largest mesh; checked for a UV map."""
    if name:
        obj = scene.objects.get(name)
        if obj is None:
            raise SceneError(f"object {name!r} is not in scene {scene.name!r}")
        if obj.type != "MESH":
            raise SceneError(f"object {name!r} is a {obj.type}, not a mesh")
    else:
        meshes = [o for o in scene.objects if o.type == "MESH"]
        if not meshes:
            raise SceneError(f"scene {scene.name!r} has no mesh object to render")
        obj = max(meshes, key=lambda o: len(o.data.vertices))
    if len(obj.data.polygons) == 0:
        raise SceneError(f"mesh {obj.name!r} has no faces")
    if obj.data.uv_layers.active is None:
        raise SceneError(f"mesh {obj.name!r} has no UV map; unwrap it (UV > Unwrap) first")
    return obj


def bounds(obj) -> tuple[list[float], float]:
    """World-space bounding-box centre and bounding radius (half the box diagonal)."""
    corners = [obj.matrix_world @ Vector(corner) for corner in obj.bound_box]
    low = Vector([min(c[i] for c in corners) for i in range(3)])
    high = Vector([max(c[i] for c in corners) for i in range(3)])
    return list((low + high) / 2), (high - low).length / 2


def ensure_material(obj) -> None:
    """Give a mesh without any material the default skin material."""
    if not any(slot.material for slot in obj.material_slots):
        obj.data.materials.clear()
        obj.data.materials.append(make_skin_material(bounds(obj)[1]))


def make_skin_material(bounding_radius: float, base_color_image=None, name: str = SKIN_MATERIAL):
    """Principled BSDF with subsurface scattering; base colour from the scan texture if given."""
    material = bpy.data.materials.new(name)
    nodes, links = material.node_tree.nodes, material.node_tree.links
    bsdf = nodes.get("Principled BSDF")
    bsdf.inputs["Base Color"].default_value = DEFAULT_SKIN_COLOR
    bsdf.inputs["Roughness"].default_value = 0.45
    bsdf.inputs["IOR"].default_value = 1.4
    bsdf.inputs["Subsurface Weight"].default_value = 1.0
    bsdf.inputs["Subsurface Radius"].default_value = SKIN_SUBSURFACE_RADIUS
    bsdf.inputs["Subsurface Scale"].default_value = SKIN_SCALE_PER_BOUNDING_RADIUS * bounding_radius
    bsdf.subsurface_method = "RANDOM_WALK_SKIN"
    if base_color_image is not None:
        texture = nodes.new("ShaderNodeTexImage")
        texture.image = base_color_image
        texture.location = (-400, 200)
        links.new(texture.outputs["Color"], bsdf.inputs["Base Color"])
    return material
