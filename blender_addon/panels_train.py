"""The Train panel in the sidebar's "Neural Face" tab."""

from __future__ import annotations

import bpy

from . import operators_train
from .sidebar import SidebarPanel


class NEURALFACE_PT_train(SidebarPanel, bpy.types.Panel):
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


register, unregister = bpy.utils.register_classes_factory((NEURALFACE_PT_train,))
