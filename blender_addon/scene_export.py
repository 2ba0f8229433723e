"""Export what the backend's ray tracer needs to make G-buffers: the evaluated mesh and its albedo.

docs/formats/scene.md is the format (the one definition; backend/tracer/scene_file.py reads it).
Written once per dataset into `DIR/scene/`:
- `mesh.npz`: the evaluated target mesh in world space, triangulated as Cycles triangulates it
  (`loop_triangles`), with per-corner UVs (the active render UV map, the one Cycles' UV pass
  shows) and per-corner shading normals (`corner_normals`: smooth, flat and custom normals alike);
- `albedo.npz`: the material's base colour baked by Cycles into UV space (bake type Diffuse,
  colour only: the same quantity as Cycles' Diffuse Color pass), bottom row first as Blender
  stores images.

The bake works on a temporary image node added to each of the target's materials, removed
afterwards; the user's materials are otherwise untouched.
"""

from __future__ import annotations

import os

import bpy
import numpy as np

from .atomic import atomic_open, write_json_atomically

FORMAT = "neural-face-scene"
VERSION = 1
SCENE_DIR = "scene"
DEFAULT_ALBEDO_SIZE = 1024
BAKE_MARGIN_PX = 16  # colour bleeds this far past UV island borders, so bilinear lookups there stay on skin
BAKE_IMAGE = "NF_Albedo_Bake"


def export_scene(rig, folder: str, albedo_size: int = DEFAULT_ALBEDO_SIZE) -> dict:
    """Write `folder/scene/` for the rig's target; returns the scene.json record."""
    out = os.path.join(folder, SCENE_DIR)
    os.makedirs(out, exist_ok=True)
    mesh = evaluated_mesh(rig.target)
    with atomic_open(os.path.join(out, "mesh.npz"), "wb") as stream:
        np.savez_compressed(stream, **mesh)
    albedo = bake_albedo(rig, albedo_size)
    with atomic_open(os.path.join(out, "albedo.npz"), "wb") as stream:
        np.savez_compressed(stream, albedo=albedo.astype(np.float16))
    record = {
        "format": FORMAT,
        "version": VERSION,
        "blender_version": bpy.app.version_string,
        "object": rig.target.name,
        "triangles": int(len(mesh["triangles"])),
        "vertices": int(len(mesh["positions"])),
        "albedo_size": [int(albedo.shape[1]), int(albedo.shape[0])],
        "bake_margin_px": BAKE_MARGIN_PX,
    }
    write_json_atomically(os.path.join(out, "scene.json"), record, durable=True)
    return record


def evaluated_mesh(obj) -> dict:
    """World-space arrays of the evaluated (modifiers applied) mesh: positions [V, 3], triangles
    [T, 3], corner_uv [T, 3, 2], corner_normal [T, 3, 3], all float32 / int32."""
    depsgraph = bpy.context.evaluated_depsgraph_get()
    evaluated = obj.evaluated_get(depsgraph)
    mesh = evaluated.to_mesh()
    try:
        mesh.calc_loop_triangles()
        n_tris, n_verts, n_loops = len(mesh.loop_triangles), len(mesh.vertices), len(mesh.loops)
        positions = np.empty(n_verts * 3, np.float32)
        mesh.vertices.foreach_get("co", positions)
        loops = np.empty(n_tris * 3, np.int32)
        mesh.loop_triangles.foreach_get("loops", loops)
        triangle_vertices = np.empty(n_tris * 3, np.int32)
        mesh.loop_triangles.foreach_get("vertices", triangle_vertices)
        normals = np.empty(n_loops * 3, np.float32)
        mesh.corner_normals.foreach_get("vector", normals)
        uv_layer = next((layer for layer in mesh.uv_layers if layer.active_render), mesh.uv_layers.active)
        uvs = np.empty(n_loops * 2, np.float32)
        uv_layer.data.foreach_get("uv", uvs)
    finally:
        evaluated.to_mesh_clear()
    matrix = np.array(obj.matrix_world, dtype=np.float64)
    positions = positions.reshape(-1, 3) @ matrix[:3, :3].T + matrix[:3, 3]
    normal_matrix = np.linalg.inv(matrix[:3, :3]).T  # normals transform by the inverse transpose
    normals = normals.reshape(-1, 3) @ normal_matrix.T
    normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
    loops = loops.reshape(-1, 3)
    return {
        "positions": positions.astype(np.float32),
        "triangles": triangle_vertices.reshape(-1, 3),
        "corner_uv": uvs.reshape(-1, 2)[loops].astype(np.float32),
        "corner_normal": normals[loops].astype(np.float32),
    }


def bake_albedo(rig, size: int) -> np.ndarray:
    """Base colour in UV space, [size, size, 3] float32 linear, row 0 = v 0 (Blender's order)."""
    target, scene = rig.target, rig.scene
    image = bpy.data.images.new(BAKE_IMAGE, size, size, alpha=False, float_buffer=True)
    added = []
    try:
        for slot in target.material_slots:
            material = slot.material
            if material is None or not material.use_nodes:
                continue
            node = material.node_tree.nodes.new("ShaderNodeTexImage")
            node.image = image
            material.node_tree.nodes.active = node  # Cycles bakes into the active image node
            added.append((material, node))
        layer = scene.view_layers[0]
        cycles = scene.cycles
        saved = cycles.samples
        cycles.samples = 1  # colour only: no light is sampled
        scene.render.bake.margin = BAKE_MARGIN_PX
        scene.render.bake.use_pass_direct = scene.render.bake.use_pass_indirect = False
        scene.render.bake.use_pass_color = True
        for obj in layer.objects:
            obj.select_set(obj == target, view_layer=layer)
        with bpy.context.temp_override(scene=scene, view_layer=layer, active_object=target, object=target,
                                       selected_objects=[target]):
            layer.objects.active = target
            bpy.ops.object.bake(type="DIFFUSE", pass_filter={"COLOR"}, margin=BAKE_MARGIN_PX, use_clear=True)
        cycles.samples = saved
        pixels = np.empty(size * size * 4, np.float32)
        image.pixels.foreach_get(pixels)
        return pixels.reshape(size, size, 4)[..., :3].copy()
    finally:
        for material, node in added:
            material.node_tree.nodes.remove(node)
        bpy.data.images.remove(image)
