"""Generate Dataset operator.

In the UI the job runs in a separate background Blender process (worker.py dataset), so the
interface stays responsive while Cycles renders; a modal timer reads its progress into the
window manager's progress bar and the status bar ("sample i of N, time left"). Esc stops the
worker, leaving a valid partial dataset that the next run resumes. In background mode (where
timers never fire) the same job runs synchronously in this process.
"""

import json
import os
import queue
import subprocess
import tempfile
import threading
import time

import bpy

from . import worker
from .dataset_worker import PROGRESS_PREFIX
from .dataset_job import DatasetJob
from .errors import InputError
from .scene_setup import ensure_material, find_target


def make_job(context) -> DatasetJob:
    """Build and check the job from the panel's settings; raises InputError before writing anything."""
    props = context.scene.neural_face_dataset
    target = find_target(context.scene, props.target.name if props.target else "")
    job = DatasetJob(props.to_settings(target.name), target, bpy.path.abspath(props.output_dir))
    job.check()
    return job


def progress_text(done: int, total: int, seconds_per_sample: float | None) -> str:
    if seconds_per_sample is None:
        return f"Neural Face: sample {done + 1} of {total} (Esc cancels)"
    minutes, seconds = divmod(int(seconds_per_sample * (total - done) + 0.5), 60)
    return f"Neural Face: sample {done} of {total}, {minutes}:{seconds:02d} left (Esc cancels)"


def _read_progress(stream, lines: queue.Queue) -> None:
    """Worker stdout -> (done, total) tuples; everything else Blender prints is dropped."""
    for line in stream:
        if line.startswith(PROGRESS_PREFIX):
            done, total = line.split()[1:3]
            lines.put((int(done), int(total)))


class NEURALFACE_OT_generate_dataset(bpy.types.Operator):
    bl_idname = "neural_face.generate_dataset"
    bl_label = "Generate Dataset"
    bl_description = "Render G-buffer passes and Cycles ground truth of the target for random cameras and lights"

    @classmethod
    def poll(cls, context):
        return context.scene is not None and not context.window_manager.neural_face_dataset_status

    def execute(self, context):
        try:
            job = make_job(context)
        except InputError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        ensure_material(job.target)
        with job:
            job.start()
            while job.pending:
                progress = job.step()
                print(f"Neural Face: sample {progress.done} of {progress.total} ({progress.seconds:.1f} s)")
        self.report({"INFO"}, f"Dataset written to {job.out_dir} ({job.done_count} samples)")
        return {"FINISHED"}

    def invoke(self, context, event):
        if bpy.app.background:
            return self.execute(context)
        try:
            job = make_job(context)
        except InputError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        self._out_dir, self._total = job.out_dir, job.total
        self._start_worker(job)
        self._done, self._first_done, self._first_time = 0, None, None
        wm = context.window_manager
        wm.progress_begin(0, self._total)
        self._show(context)
        self._timer = wm.event_timer_add(0.2, window=context.window)
        wm.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def _start_worker(self, job: DatasetJob) -> None:
        self._tempdir = tempfile.TemporaryDirectory(prefix="neural_face_")
        scene_copy = os.path.join(self._tempdir.name, "scene.blend")
        bpy.ops.wm.save_as_mainfile(filepath=scene_copy, copy=True, check_existing=False)
        command = worker.command("dataset", scene_copy, job.out_dir, json.dumps(job.settings.to_json()))
        self._log_path = os.path.join(self._tempdir.name, "worker.log")
        with open(self._log_path, "w") as log:  # a file, not a pipe: an unread pipe could stall the worker
            self._worker = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, text=True,
                                            creationflags=worker.NO_CONSOLE)
        self._progress = queue.Queue()
        threading.Thread(target=_read_progress, args=(self._worker.stdout, self._progress), daemon=True).start()

    def modal(self, context, event):
        if event.type == "ESC":
            self._worker.terminate()
            self._worker.wait()
            return self._finish(context, {"WARNING"}, f"Cancelled: {self._done} of {self._total} samples kept "
                                                      "in the dataset; run again to resume")
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        while not self._progress.empty():
            self._done = self._progress.get()[0]
            now = time.monotonic()
            if self._first_done is None:
                self._first_done, self._first_time = self._done, now
        self._show(context)
        if self._worker.poll() is None:
            return {"RUNNING_MODAL"}
        if self._worker.returncode != 0:
            with open(self._log_path) as log:
                error = log.read().strip().splitlines()
            message = error[-1] if error else f"dataset worker exited with code {self._worker.returncode}"
            return self._finish(context, {"ERROR"}, message)
        return self._finish(context, {"INFO"}, f"Dataset written to {self._out_dir} ({self._done} samples)")

    def _show(self, context) -> None:
        wm = context.window_manager
        rendered = self._done - (self._first_done or 0)
        pace = (time.monotonic() - self._first_time) / rendered if rendered > 0 else None
        wm.progress_update(self._done)
        wm.neural_face_dataset_progress = self._done / self._total
        wm.neural_face_dataset_status = progress_text(self._done, self._total, pace)
        context.workspace.status_text_set(wm.neural_face_dataset_status)
        for area in context.screen.areas:
            area.tag_redraw()

    def _finish(self, context, level: set, message: str):
        wm = context.window_manager
        wm.event_timer_remove(self._timer)
        wm.progress_end()
        wm.neural_face_dataset_status = ""
        context.workspace.status_text_set(None)
        self._tempdir.cleanup()
        self.report(level, message)
        return {"FINISHED"} if level == {"INFO"} else {"CANCELLED"}


CLASSES = (NEURALFACE_OT_generate_dataset,)


register, unregister = bpy.utils.register_classes_factory(CLASSES)
