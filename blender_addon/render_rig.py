"""A private Cycles scene that renders one target object under a given camera and point lights.

The user's scene is never changed: the rig links the target into its own scene (no world light,
none of the user's lights or other objects), owns its camera and lights, and removes all of it
on `close()`. The G-buffer recipe (gbuffer.py) and the ground truth (ground_truth.py) configure
it and call `render`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import bpy
from mathutils import Matrix

from .atomic import PARTIAL_SUFFIX
from .camera_model import CameraSpec
from .errors import SceneError

GBUFFER_LAYER = "GBuffer"
LIGHTS_LAYER = "Lights"
GROUND_TRUTH_LAYER = "GroundTruth"
PIXEL_FILTER_WIDTH = 0.01  # px: every sample hits the pixel centre, so data passes are exact there
DEVICES = ("CPU", "CUDA", "OPTIX", "HIP", "ONEAPI")  # what Cycles renders on: the CPU, or a GPU backend


def use_device(scene, device: str) -> None:
    """Render `scene` with Cycles on `device` (every GPU of that backend); SceneError when there is none."""
    if device not in DEVICES:
        raise SceneError(f"render device {device!r} is not one of {', '.join(DEVICES)}")
    if device == "CPU":
        scene.cycles.device = "CPU"
        return
    cycles = bpy.context.preferences.addons["cycles"].preferences
    cycles.compute_device_type = device
    cycles.refresh_devices()
    gpus = [d for d in cycles.devices if d.type == device]
    if not gpus:
        seen = ", ".join(f"{d.name} ({d.type})" for d in cycles.devices) or "nothing"
        raise SceneError(f"Cycles finds no {device} device on this machine (it sees: {seen}); "
                         f"render with --device CPU, or on a node with a {device} GPU and its driver")
    for d in cycles.devices:
        d.use = d.type == device
    scene.cycles.device = "GPU"


class RenderRig:
    def __init__(self, target, resolution: tuple[int, int], device: str = "CPU"):
        self.target = target
        self.scene = bpy.data.scenes.new("NF_Render")
        self.scene.collection.objects.link(target)
        self.scene.world = None
        self._configure_render(resolution)
        try:
            use_device(self.scene, device)
        except SceneError:
            bpy.data.scenes.remove(self.scene)
            raise
        self._add_view_layers()
        camera_data = bpy.data.cameras.new("NF_Camera")
        self.camera = bpy.data.objects.new("NF_Camera", camera_data)
        self.scene.collection.objects.link(self.camera)
        self.scene.camera = self.camera
        self.lights: list = []

    @property
    def resolution(self) -> tuple[int, int]:
        return self.scene.render.resolution_x, self.scene.render.resolution_y

    def _configure_render(self, resolution: tuple[int, int]) -> None:
        render = self.scene.render
        render.engine = "CYCLES"
        render.resolution_x, render.resolution_y = resolution
        render.resolution_percentage = 100
        render.film_transparent = True
        self.scene.cycles.filter_width = PIXEL_FILTER_WIDTH  # render.filter_size is not read by Cycles
        render.use_file_extension = False
        render.use_persistent_data = False
        self.scene.cycles.use_adaptive_sampling = False
        self.scene.view_settings.view_transform = "Standard"
        _use_float_exr(render.image_settings)

    def _add_view_layers(self) -> None:
        gbuffer = self.scene.view_layers[0]
        gbuffer.name = GBUFFER_LAYER
        gbuffer.samples = 1  # exact per-pixel data; the filter puts the one sample on the centre
        gbuffer.use_pass_uv = gbuffer.use_pass_position = True
        gbuffer.use_pass_diffuse_color = True
        lights = self.scene.view_layers.new(LIGHTS_LAYER)
        # The plain-diffuse normal: Principled BSDF bends grazing normals (valid-reflection fix),
        # which would no longer match the normal the light passes were shaded with.
        lights.use_pass_normal = True
        white = bpy.data.materials.new("NF_White_Lambert")  # default node tree: white diffuse-only BSDF
        _make_white_lambert(white)
        lights.material_override = white
        self.white_material = white
        self.scene.view_layers.new(GROUND_TRUTH_LAYER)

    def set_camera(self, camera: CameraSpec) -> None:
        data = self.camera.data
        data.type = "PERSP"
        data.lens = camera.lens_mm
        data.sensor_width, data.sensor_height = camera.sensor_width_mm, camera.sensor_height_mm
        data.sensor_fit = camera.sensor_fit
        data.shift_x, data.shift_y = camera.shift_x, camera.shift_y
        data.clip_start, data.clip_end = 1e-4, 1e6
        self.camera.matrix_world = Matrix([list(row) for row in camera.matrix_world])  # rows, not columns

    def set_lights(self, lights: list[dict]) -> None:
        """Replace the rig's lights; light k joins light group `lights[k]["lightgroup"]`, whose pass
        the `Lights` and `GroundTruth` layers render."""
        for obj in self.lights:
            data = obj.data
            bpy.data.objects.remove(obj)
            bpy.data.lights.remove(data)
        layers = [self.scene.view_layers[name] for name in (LIGHTS_LAYER, GROUND_TRUTH_LAYER)]
        for layer in layers:
            while layer.lightgroups:
                layer.lightgroups.remove(layer.lightgroups[0])
        self.lights = []
        for spec in lights:
            data = bpy.data.lights.new(spec["name"], "POINT")
            data.energy = spec["power"]
            data.color = spec["color"]
            data.shadow_soft_size = spec["radius"]
            obj = bpy.data.objects.new(spec["name"], data)
            obj.location = spec["position"]
            obj.lightgroup = spec["lightgroup"]
            for layer in layers:
                layer.lightgroups.add(name=spec["lightgroup"])
            self.scene.collection.objects.link(obj)
            self.lights.append(obj)

    def render(self, layers: tuple[str, ...], path: str) -> float:
        """Render the named view layers into one multilayer EXR at `path` (atomically); returns seconds."""
        self._use_layers(layers)
        partial = path + PARTIAL_SUFFIX  # Cycles writes it; renamed once complete, as atomic.atomic_open does
        self.scene.render.filepath = partial
        start = time.perf_counter()
        bpy.ops.render.render(write_still=True, scene=self.scene.name)
        return self._commit(partial, path, time.perf_counter() - start)

    def render_composited(self, layer: str, path: str,
                          outputs: Callable[[bpy.types.NodeTree, bpy.types.Node], dict]) -> float:
        """Render view layer `layer` and write, atomically, a multilayer EXR at `path` holding exactly
        the parts `outputs(tree, render_layers_node)` returns ({part name: compositor socket}), e.g.
        passes denoised by compositor nodes it adds to `tree`; returns seconds."""
        self._use_layers((layer,))
        partial = path + PARTIAL_SUFFIX
        tree = bpy.data.node_groups.new("NF_Output", "CompositorNodeTree")
        try:
            source = tree.nodes.new("CompositorNodeRLayers")
            source.scene, source.layer = self.scene, layer
            writer = tree.nodes.new("CompositorNodeOutputFile")
            _use_float_exr(writer.format)
            writer.directory, writer.file_name = os.path.split(partial)
            for name, socket in outputs(tree, source).items():
                writer.file_output_items.new("RGBA", name)
                tree.links.new(socket, writer.inputs[name])
            self.scene.compositing_node_group = tree
            self.scene.render.use_compositing = True
            start = time.perf_counter()
            bpy.ops.render.render(write_still=False, scene=self.scene.name)
            seconds = time.perf_counter() - start
        finally:
            self.scene.compositing_node_group = None
            bpy.data.node_groups.remove(tree)
        return self._commit(partial, path, seconds)

    def _use_layers(self, names: tuple[str, ...]) -> None:
        for view_layer in self.scene.view_layers:
            view_layer.use = view_layer.name in names

    @staticmethod
    def _commit(partial: str, path: str, seconds: float) -> float:
        if not os.path.exists(partial):
            raise RuntimeError(f"Cycles did not write {partial}")
        os.replace(partial, path)
        return seconds

    def close(self) -> None:
        """Remove everything the rig created; the target object stays untouched in the user's scenes."""
        self.set_lights([])
        camera_data = self.camera.data
        bpy.data.objects.remove(self.camera)
        bpy.data.cameras.remove(camera_data)
        bpy.data.materials.remove(self.white_material)
        bpy.data.scenes.remove(self.scene)

    def __enter__(self) -> "RenderRig":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _use_float_exr(image) -> None:
    """Multilayer OpenEXR, float32, ZIP: the render output's and the File Output node's format."""
    image.media_type = "MULTI_LAYER_IMAGE"  # Blender 5.0: must precede file_format
    image.file_format = "OPEN_EXR_MULTILAYER"
    image.color_depth = "32"
    image.exr_codec = "ZIP"


def _make_white_lambert(material) -> None:
    nodes = material.node_tree.nodes
    nodes.clear()
    bsdf = nodes.new("ShaderNodeBsdfDiffuse")
    bsdf.inputs["Color"].default_value = (1.0, 1.0, 1.0, 1.0)
    bsdf.inputs["Roughness"].default_value = 0.0  # Lambert, not Oren-Nayar
    output = nodes.new("ShaderNodeOutputMaterial")
    material.node_tree.links.new(bsdf.outputs["BSDF"], output.inputs["Surface"])
