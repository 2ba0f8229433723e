"""Neural Render Preview operator: a snapshot on the main thread, everything slow in a thread, images via a timer.

`execute` runs the three steps of preview_job in a row (scripts, tests, background mode, where timers
never fire); `invoke` runs the G-buffer render and the shading in a thread and finishes from modal
timer events, so Blender stays responsive; Esc cancels the frame.
"""

from __future__ import annotations

import bpy

from . import preview_job, preview_live, preview_snapshot, preview_worker_client
from .errors import InputError
from .preview_job import BUTTON, PreviewJob

POLL_INTERVAL_S = 0.05


def prepare(context, report) -> PreviewJob | None:
    """Build the job; problems go to `report` and give None."""
    try:
        job = PreviewJob(context)
    except InputError as exc:
        report({"ERROR"}, str(exc))
        context.scene.neural_face_preview.status = str(exc)
        return None
    if job.ignored_lights:
        report({"WARNING"}, f"only point lights are shaded; ignored: {', '.join(job.ignored_lights)}")
    if job.unsaved_images:
        report({"WARNING"}, f"the preview sees the saved pixels of {', '.join(job.unsaved_images)}; save the "
                            "images (or pack them) to preview your changes")
    return job


def finish(context, job: PreviewJob, report) -> set[str]:
    if job.error is not None:
        report({"WARNING"} if job.cancelled else {"ERROR"}, job.error)
        context.scene.neural_face_preview.status = job.error
        return {"CANCELLED"}
    job.apply(context.scene)
    settings = context.scene.neural_face_preview
    report({"INFO"}, f"Neural preview {settings.status}: G-buffer {settings.gbuffer_ms:.0f} ms, transfer "
                     f"{settings.transfer_ms:.0f} ms, shading {settings.shading_ms:.0f} ms, upload "
                     f"{settings.upload_ms:.1f} ms")
    return {"FINISHED"}


class NEURALFACE_OT_preview(bpy.types.Operator):
    """Shade the current view with the trained networks and show it in the viewport"""

    bl_idname = "neural_face.preview"
    bl_label = "Neural Render Preview"

    _timer = None

    @classmethod
    def poll(cls, context):
        return not preview_job.busy()

    def execute(self, context):
        job = prepare(context, self.report)
        if job is None:
            return {"CANCELLED"}
        job.run()
        return finish(context, job, self.report)

    def invoke(self, context, event):
        if bpy.app.background:
            return self.execute(context)
        job = prepare(context, self.report)
        if job is None:
            return {"CANCELLED"}
        preview_job.run_in_background(job, BUTTON)
        context.scene.neural_face_preview.status = "rendering (Esc cancels)"
        self._timer = context.window_manager.event_timer_add(POLL_INTERVAL_S, window=context.window)
        context.window_manager.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        if event.type == "ESC" and event.value == "PRESS":
            preview_job.cancel_in_flight()  # the frame ends soon with the error "preview cancelled"
            return {"RUNNING_MODAL"}
        job = preview_job.take_finished(BUTTON) if event.type == "TIMER" else None
        if job is None:
            return {"PASS_THROUGH"}
        context.window_manager.event_timer_remove(self._timer)
        return finish(context, job, self.report)


class NEURALFACE_OT_cancel_preview(bpy.types.Operator):
    """Stop the preview frame being rendered (the button's or Live's)"""

    bl_idname = "neural_face.cancel_preview"
    bl_label = "Cancel Preview"

    @classmethod
    def poll(cls, context):
        return preview_job.busy()

    def execute(self, context):
        preview_job.cancel_in_flight()
        return {"FINISHED"}


def register():
    bpy.utils.register_class(NEURALFACE_OT_preview)
    bpy.utils.register_class(NEURALFACE_OT_cancel_preview)
    preview_snapshot.register()


def unregister():
    preview_live.set_enabled(False)
    preview_job.cancel_in_flight()
    preview_worker_client.stop()  # a disabled or reloaded add-on leaves no Blender behind
    preview_snapshot.unregister()
    bpy.utils.unregister_class(NEURALFACE_OT_cancel_preview)
    bpy.utils.unregister_class(NEURALFACE_OT_preview)
