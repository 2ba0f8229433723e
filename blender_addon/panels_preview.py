"""Train and Neural Render Preview panels in the 3D viewport sidebar's "Neural Face" tab."""

from __future__ import annotations

import bpy

from . import operators_train, preview_job


class _NeuralFacePanel:
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "Neural Face"


class NEURALFACE_PT_train(_NeuralFacePanel, bpy.types.Panel):
    bl_label = "Train"
    bl_order = 10

    def draw(self, context):
        layout = self.layout
        state = context.scene.neural_face_train
        layout.prop(state, "bank_path")
        layout.prop(state, "steps")
        if operators_train.NEURALFACE_OT_cancel_training.poll(context):  # a job is running
            text = (f"{state.state} {state.step}/{state.total_steps}  loss {state.loss:.4g}  "
                    f"val PSNR {state.val_psnr:.2f} dB  ETA {state.eta_s:.0f} s")
            layout.progress(factor=state.progress, type="BAR", text=text)
            layout.operator("neural_face.cancel_training", icon="CANCEL")
        else:
            layout.operator("neural_face.train", icon="PLAY")
        if state.message:
            layout.label(text=state.message, icon="ERROR" if state.state == "failed" else "INFO")
        if state.report_path:
            layout.operator("neural_face.open_report", icon="URL")


class NEURALFACE_PT_preview(_NeuralFacePanel, bpy.types.Panel):
    bl_label = "Neural Render Preview"
    bl_order = 20

    def draw(self, context):
        layout = self.layout
        settings = context.scene.neural_face_preview
        layout.prop(settings, "source", expand=True)
        layout.prop(settings, "resolution")
        layout.prop(settings, "renderer")
        row = layout.row()
        row.prop(settings, "compare")
        row.prop(settings, "live")
        if settings.compare:
            layout.prop(settings, "compare_samples")
        layout.prop(settings, "show_overlay")
        if preview_job.busy():
            layout.operator("neural_face.cancel_preview", icon="CANCEL")
        else:
            layout.operator("neural_face.preview", icon="SHADING_RENDERED")
        if settings.status:
            layout.label(text=settings.status)
        if settings.renderer_used:
            column = layout.column(align=True)
            for label, value in (("G-buffer", settings.gbuffer_ms), ("Transfer", settings.transfer_ms),
                                 ("Shading", settings.shading_ms), ("Upload", settings.upload_ms)):
                column.label(text=f"{label}: {value:.1f} ms")
            column.label(text=f"UI thread: {settings.snapshot_ms + settings.upload_ms:.1f} ms (snapshot, upload)")
            if settings.compare:
                column.label(text=f"Cycles: {settings.cycles_ms:.0f} ms")
                column.label(text=f"Mean |difference|: {settings.mean_abs_diff:.4f}")


register, unregister = bpy.utils.register_classes_factory((NEURALFACE_PT_train, NEURALFACE_PT_preview))
