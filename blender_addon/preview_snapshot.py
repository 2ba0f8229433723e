"""Copies of the target object for the preview, rewritten only when the object changed (main thread).

- `mesh_file`: the evaluated mesh in world space (scene_export.evaluated_mesh, docs/formats/scene.md),
  which the service's tracer builds its ray-tracing structure from; rewritten when the geometry
  or the object's placement changed, so camera and light moves (most of Live's frames) reuse it.
- `snapshot`: a .blend of the target alone for the "Compare with Cycles" worker. Its
  `bpy.data.libraries.write` takes about 3 ms for the example face but grows with the mesh and its
  packed textures, and every new file makes the worker load the object again; camera, light and
  placement changes reuse it.
A depsgraph handler marks both stale when the target's geometry or shading changes; another target,
another .blend file or Edit Mode always write new ones.
"""

from __future__ import annotations

import os
import time

import bpy
import numpy as np

from .atomic import atomic_open
from .scene_export import evaluated_mesh

_stale = True
_key: tuple[str, str] | None = None  # (target name, .blend path) the current file was written for
_path: str | None = None
_count = 0


_material_edits = 0
_geometry_edits = 0  # geometry or shading updates of the mesh file's object: its staleness
_mesh: tuple[tuple, str] | None = None  # (what the current mesh file was written for, its path)


@bpy.app.handlers.persistent
def _on_depsgraph_update(scene, depsgraph) -> None:
    global _stale, _material_edits, _geometry_edits
    for update in depsgraph.updates:
        if isinstance(update.id, bpy.types.Material):
            _material_edits += 1
        elif isinstance(update.id, bpy.types.Object) and (update.is_updated_geometry or update.is_updated_shading):
            name = update.id.original.name  # not a mere move
            if _mesh is not None and name == _mesh[0][0]:
                _geometry_edits += 1
            if _key is not None and name == _key[0]:
                _stale = True


def material_edits() -> int:
    """How many material updates Blender has evaluated: Live re-renders when it changes."""
    return _material_edits


@bpy.app.handlers.persistent
def _on_load_post(*args) -> None:
    global _stale, _mesh
    _stale, _mesh = True, None


def snapshot(target, folder: str) -> tuple[str, float]:
    """A .blend holding `target` as it is now, and the seconds spent writing it (0 when reused)."""
    global _stale, _key, _path, _count
    if target.mode == "EDIT":
        target.update_from_editmode()  # until then, Edit Mode's changes live in the edit mesh only
        _stale = True
    key = (target.name, bpy.data.filepath)
    if not _stale and key == _key and _path is not None and os.path.dirname(_path) == folder and os.path.exists(_path):
        return _path, 0.0
    _count += 1
    path = os.path.join(folder, f"scene-{_count}.blend")
    start = time.perf_counter()
    bpy.data.libraries.write(path, {target}, path_remap="ABSOLUTE")
    seconds = time.perf_counter() - start
    if _path is not None:
        try:  # one frame at a time: the worker has finished with the previous file
            os.remove(_path)
        except OSError:
            pass
    _stale, _key, _path = False, key, path
    return path, seconds


def mesh_file(target, folder: str) -> tuple[str, float]:
    """`mesh.npz` of the evaluated `target` in world space as it is now, and the seconds spent writing
    it (0 when reused)."""
    global _mesh
    editing = target.mode == "EDIT"
    if editing:
        target.update_from_editmode()  # until then, Edit Mode's changes live in the edit mesh only
    key = (target.name, bpy.data.filepath, tuple(map(tuple, target.matrix_world)), _geometry_edits)
    if not editing and _mesh is not None and _mesh[0] == key and os.path.dirname(_mesh[1]) == folder \
            and os.path.exists(_mesh[1]):
        return _mesh[1], 0.0
    start = time.perf_counter()
    path = os.path.join(folder, "preview-mesh.npz")
    with atomic_open(path, "wb") as stream:  # one frame at a time: the service has read the previous one
        np.savez(stream, **evaluated_mesh(target))
    _mesh = (key, path)
    return path, time.perf_counter() - start


def unsaved_images(target) -> list[str]:
    """Names of the target's image textures with unsaved pixels, which a written file cannot carry."""
    images = {node.image for slot in target.material_slots if slot.material and slot.material.node_tree
              for node in slot.material.node_tree.nodes if node.type == "TEX_IMAGE" and node.image}
    return sorted(image.name for image in images if image.is_dirty)


def register():
    bpy.app.handlers.depsgraph_update_post.append(_on_depsgraph_update)
    bpy.app.handlers.load_post.append(_on_load_post)


def unregister():
    global _stale
    for handlers, handler in ((bpy.app.handlers.depsgraph_update_post, _on_depsgraph_update),
                              (bpy.app.handlers.load_post, _on_load_post)):
        if handler in handlers:
            handlers.remove(handler)
    _stale = True
