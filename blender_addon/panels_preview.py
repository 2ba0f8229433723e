"""The Neural Render Preview panel in the sidebar's "Neural Face" tab."""

from __future__ import annotations

import bpy

from . import preview_job
from .sidebar import SidebarPanel


class NEURALFACE_PT_preview(SidebarPanel, bpy.types.Panel):
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


register, unregister = bpy.utils.register_classes_factory((NEURALFACE_PT_preview,))
