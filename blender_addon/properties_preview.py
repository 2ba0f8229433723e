"""Neural Render Preview settings and the last frame's timings (`scene.neural_face_preview`), which
the panel redraws like any property."""

import bpy

from . import preview_live


def _live_changed(self, context):
    preview_live.set_enabled(self.live)


class NEURALFACE_PG_preview(bpy.types.PropertyGroup):
    source: bpy.props.EnumProperty(
        name="View",
        items=[("CAMERA", "Active Camera", "Render the scene camera's view"),
               ("VIEWPORT", "Viewport", "Render the 3D viewport's current view")],
        default="CAMERA")
    resolution: bpy.props.IntProperty(name="Resolution", default=256, min=16, max=2048,
                                      description="Pixels along the longer side of the preview")
    renderer: bpy.props.EnumProperty(
        name="Renderer",
        items=[("auto", "Auto", "CUDA kernel when a GPU is there, else torch on the CPU"),
               ("torch", "Torch", "Reference renderer (CPU or GPU)"),
               ("pycuda", "CUDA Kernel", "The tile kernel launched with PyCUDA"),
               ("emulated", "Emulated Kernel", "The kernel's algorithm emulated on the CPU")],
        default="auto")
    compare: bpy.props.BoolProperty(name="Compare with Cycles", default=False,
                                    description="Also path-trace the same view with Cycles and show the difference")
    compare_samples: bpy.props.IntProperty(name="Cycles Samples", default=16, min=1, max=4096)
    live: bpy.props.BoolProperty(name="Live", default=False, update=_live_changed,
                                 description="Re-render when the view, the lights or the object change")
    show_overlay: bpy.props.BoolProperty(name="Show in Viewport", default=True)
    status: bpy.props.StringProperty()
    renderer_used: bpy.props.StringProperty()
    snapshot_ms: bpy.props.FloatProperty(name="Snapshot", description="Copying the object for the worker, "
                                         "on Blender's main thread (the only preview stage there but Upload)")
    gbuffer_ms: bpy.props.FloatProperty(name="G-buffer")
    transfer_ms: bpy.props.FloatProperty(name="Transfer")
    shading_ms: bpy.props.FloatProperty(name="Shading")
    upload_ms: bpy.props.FloatProperty(name="Upload")
    cycles_ms: bpy.props.FloatProperty(name="Cycles")
    mean_abs_diff: bpy.props.FloatProperty(name="Mean |difference|")


def register():
    bpy.utils.register_class(NEURALFACE_PG_preview)
    bpy.types.Scene.neural_face_preview = bpy.props.PointerProperty(type=NEURALFACE_PG_preview)


def unregister():
    del bpy.types.Scene.neural_face_preview
    bpy.utils.unregister_class(NEURALFACE_PG_preview)
