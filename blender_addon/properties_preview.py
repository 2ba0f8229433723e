"""Scene settings and live state of Train (`scene.neural_face_train`) and Neural Render Preview
(`scene.neural_face_preview`). Progress and timings live here so panels redraw them like any property.
"""

import os

import bpy

DEFAULT_BANK_NAME = "bank.nfbank"


def dataset_folder(scene) -> str:
    """The Dataset panel's output folder (properties.py), absolute; '' when unset."""
    folder = scene.neural_face_dataset.output_dir
    return bpy.path.abspath(folder) if folder else ""


class NeuralFaceTrainState(bpy.types.PropertyGroup):
    bank_path: bpy.props.StringProperty(
        name="Weight Bank", subtype="FILE_PATH",
        description="Bank file to write (Train) and shade with (Preview); empty: bank.nfbank in the dataset folder")
    steps: bpy.props.IntProperty(name="Steps", default=0, min=0, max=10_000_000,
                                 description="Training steps; 0 uses the trainer's default")
    job_id: bpy.props.StringProperty()
    state: bpy.props.StringProperty(description="running, reporting, done, failed or cancelled")
    progress: bpy.props.FloatProperty(min=0.0, max=1.0, subtype="FACTOR")
    step: bpy.props.IntProperty()
    total_steps: bpy.props.IntProperty()
    loss: bpy.props.FloatProperty()
    val_psnr: bpy.props.FloatProperty(description="Validation PSNR in dB (0 until measured)")
    eta_s: bpy.props.FloatProperty()
    message: bpy.props.StringProperty(description="Headline numbers when done, the error when failed")
    report_path: bpy.props.StringProperty(subtype="FILE_PATH")

    def resolved_bank(self, scene) -> str:
        """The bank path as set, else bank.nfbank in the dataset folder; '' when neither is known."""
        if self.bank_path:
            return bpy.path.abspath(self.bank_path)
        dataset = dataset_folder(scene)
        return os.path.join(dataset, DEFAULT_BANK_NAME) if dataset else ""


def _live_changed(self, context):
    from . import preview_live

    preview_live.set_enabled(self.live)


class NeuralFacePreviewState(bpy.types.PropertyGroup):
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
    gbuffer_path: bpy.props.StringProperty(description="G-buffer file of the last preview")
    renderer_used: bpy.props.StringProperty()
    snapshot_ms: bpy.props.FloatProperty(name="Snapshot", description="Copying the object for the worker, "
                                         "on Blender's main thread (the only preview stage there but Upload)")
    gbuffer_ms: bpy.props.FloatProperty(name="G-buffer")
    transfer_ms: bpy.props.FloatProperty(name="Transfer")
    shading_ms: bpy.props.FloatProperty(name="Shading")
    upload_ms: bpy.props.FloatProperty(name="Upload")
    cycles_ms: bpy.props.FloatProperty(name="Cycles")
    mean_abs_diff: bpy.props.FloatProperty(name="Mean |difference|")


_classes = (NeuralFaceTrainState, NeuralFacePreviewState)


def register():
    for cls in _classes:
        bpy.utils.register_class(cls)
    bpy.types.Scene.neural_face_train = bpy.props.PointerProperty(type=NeuralFaceTrainState)
    bpy.types.Scene.neural_face_preview = bpy.props.PointerProperty(type=NeuralFacePreviewState)


def unregister():
    del bpy.types.Scene.neural_face_preview
    del bpy.types.Scene.neural_face_train
    for cls in reversed(_classes):
        bpy.utils.unregister_class(cls)
