"""Generate Dataset operator.

The job is `python -m backend generate` (the backend's Python from the preferences) on a saved
copy of the open file: the same command a user types, so the add-on and the CLI make the same
dataset, and the backend's ray tracer writes the G-buffers (the add-on never imports the
backend). In the UI it runs as a child process, so the interface stays responsive while Cycles
renders; a modal timer reads its progress lines into the window manager's progress bar and the
status bar ("sample i of N, time left"). Esc interrupts it (SIGINT), leaving a valid partial
dataset that the next run resumes. In background mode (where timers never fire) the operator
waits for the same command.

With a "Render on Cluster" address in the preferences, a `ClusterDatasetWatcher` thread sends the
saved copy to the service instead, which renders it on that Ray cluster (docs/cluster.md); the
progress bar follows the service's job, with the live workers, and Esc cancels it there.
"""

import json
import os
import queue
import signal
import subprocess
import tempfile
import threading
import time

import bpy

from .dataset_job import DatasetJob
from .errors import InputError
from .preferences import backend_python, cluster, connection
from .processes import ChildProcess
from .scene_setup import find_target
from .service_client import ServiceError, connect

POLL_S = 0.5
STOP_TIMEOUT_S = 10.0
PROGRESS_PREFIX = "NF_PROGRESS"  # what `generate --progress-lines` prints: NF_PROGRESS DONE TOTAL


def make_job(context) -> DatasetJob:
    """Build and check the job from the panel's settings; raises InputError before writing anything."""
    props = context.scene.neural_face_dataset
    target = find_target(context.scene, props.target.name if props.target else "")
    job = DatasetJob(props.to_settings(target.name), target, bpy.path.abspath(props.output_dir))
    job.check()
    return job


def progress_text(done: int, total: int, seconds_per_sample: float | None, workers: int | None = None) -> str:
    on_cluster = "" if workers is None else f", {workers} cluster workers"
    if seconds_per_sample is None:
        return f"Neural Face: sample {done + 1} of {total}{on_cluster} (Esc cancels)"
    minutes, seconds = divmod(int(seconds_per_sample * (total - done) + 0.5), 60)
    return f"Neural Face: sample {done} of {total}, {minutes}:{seconds:02d} left{on_cluster} (Esc cancels)"


def existing_folder(path: str) -> str:
    """`path`, or its nearest existing parent: what the service may be allowed to write into."""
    while not os.path.isdir(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    return path


class ClusterDatasetWatcher:
    """Runs in a thread (no bpy): submit the saved scene to the service's cluster, then refresh `status`."""

    def __init__(self, connection: dict, cluster: dict, scene_copy: str, out_dir: str, settings: dict):
        self.connection, self.cluster, self.scene_copy = connection, cluster, scene_copy
        self.out_dir, self.settings = out_dir, settings
        self.status = {"state": "starting", "done": 0, "total": settings["samples"], "workers": 0, "error": None}
        self.error: str | None = None
        self.cancel_requested = threading.Event()
        self.thread = threading.Thread(target=self._run, name="neural-dataset", daemon=True)

    def _run(self) -> None:
        try:
            folders = [os.path.dirname(self.scene_copy), existing_folder(self.out_dir)]
            client = connect(self.connection, folders, self.cluster)
            scene = self.scene_copy if client.shares_files else client.upload(self.scene_copy, "dataset_scene.blend")
            self.status = client.start_dataset(scene, self.out_dir, self.settings, self.cluster["address"])
            while self.status["state"] == "running":
                time.sleep(POLL_S)
                if self.cancel_requested.is_set():
                    client.cancel_dataset(self.status["id"])
                    self.cancel_requested.clear()
                self.status = client.dataset_status(self.status["id"])
        except ServiceError as exc:
            self.error = str(exc)

    @property
    def finished(self) -> bool:
        return not self.thread.is_alive()

    def outcome(self) -> tuple[set, str]:
        state, done, total = self.status["state"], self.status["done"], self.status["total"]
        if self.error is not None or state == "failed":
            return {"ERROR"}, self.error or self.status["error"]
        if state == "cancelled":
            return {"WARNING"}, f"Cancelled: {self.status['error']}"
        return {"INFO"}, f"Dataset written to {self.out_dir} on the cluster ({done} of {total} samples)"


def save_scene_copy(folder: str) -> str:
    """The open file as the worker or the cluster sees it: a copy, so unsaved edits are included."""
    scene_copy = os.path.join(folder, "scene.blend")
    bpy.ops.wm.save_as_mainfile(filepath=scene_copy, copy=True, check_existing=False)
    return scene_copy


def generate_command(context, job: DatasetJob, folder: str) -> list[str]:
    """`python -m backend generate` of `job` on a saved copy of the open file (written into `folder`)."""
    python = backend_python(context)
    if not python or not os.path.isfile(python):
        raise InputError(f"the backend's Python {python!r} does not exist: set it in the add-on's preferences "
                         "(the project's .venv/bin/python, where `make setup` installed the backend)")
    settings_file = os.path.join(folder, "settings.json")
    with open(settings_file, "w") as stream:
        json.dump(job.settings.to_json(), stream)
    return [python, "-m", "backend", "generate", "--scene", save_scene_copy(folder), "--out", job.out_dir,
            "--settings-file", settings_file, "--progress-lines"]


def _read_progress(stream, lines: queue.Queue) -> None:
    """The command's stdout -> (done, total) tuples; everything else it prints is dropped."""
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
        if cluster(context):
            return self._execute_on_cluster(context, job)
        with tempfile.TemporaryDirectory(prefix="neural_face_") as folder:
            try:
                command = generate_command(context, job, folder)
            except InputError as exc:
                self.report({"ERROR"}, str(exc))
                return {"CANCELLED"}
            result = subprocess.run(command, capture_output=True, text=True)
        for line in result.stdout.splitlines():
            if line.startswith(PROGRESS_PREFIX):
                print(f"Neural Face: sample {line.split()[1]} of {line.split()[2]}")
        if result.returncode != 0:
            errors = [line for line in result.stderr.splitlines() if line.strip()]
            self.report({"ERROR"}, errors[-1] if errors else f"generate exited with code {result.returncode}")
            return {"CANCELLED"}
        self.report({"INFO"}, f"Dataset written to {job.out_dir} ({job.total} samples)")
        return {"FINISHED"}

    def _execute_on_cluster(self, context, job: DatasetJob):
        """Background mode: the cluster path in a plain loop."""
        with tempfile.TemporaryDirectory(prefix="neural_face_") as folder:
            watcher = self._start_cluster(context, job, folder)
            while not watcher.finished:
                watcher.thread.join(POLL_S)
                status = watcher.status
                print(f"Neural Face: {status['state']} sample {status['done']} of {status['total']} "
                      f"on {status['workers']} cluster workers")
        level, message = watcher.outcome()
        self.report(level, message)
        return {"FINISHED"} if level == {"INFO"} else {"CANCELLED"}

    def _start_cluster(self, context, job: DatasetJob, folder: str) -> ClusterDatasetWatcher:
        scene_copy = save_scene_copy(folder)
        watcher = ClusterDatasetWatcher(connection(context), cluster(context), scene_copy, job.out_dir,
                                        job.settings.to_json())
        watcher.thread.start()
        return watcher

    def invoke(self, context, event):
        if bpy.app.background:
            return self.execute(context)
        try:
            job = make_job(context)
        except InputError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        self._out_dir, self._total = job.out_dir, job.total
        self._watcher = None
        if cluster(context):
            self._tempdir = tempfile.TemporaryDirectory(prefix="neural_face_")
            self._watcher = self._start_cluster(context, job, self._tempdir.name)
        else:
            try:
                self._start_worker(context, job)
            except InputError as exc:
                self._tempdir.cleanup()
                self.report({"ERROR"}, str(exc))
                return {"CANCELLED"}
        self._done, self._first_done, self._first_time = 0, None, None
        wm = context.window_manager
        wm.progress_begin(0, self._total)
        self._show(context)
        self._timer = wm.event_timer_add(0.2, window=context.window)
        wm.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def _start_worker(self, context, job: DatasetJob) -> None:
        command = generate_command(context, job, self._tempdir.name)
        self._worker = ChildProcess(command, os.path.join(self._tempdir.name, "generate.log"), stdout_pipe=True,
                                    text=True)
        self._progress = queue.Queue()
        threading.Thread(target=_read_progress, args=(self._worker.process.stdout, self._progress),
                         daemon=True).start()

    def modal(self, context, event):
        if self._watcher is not None:
            return self._modal_cluster(context, event)
        if event.type == "ESC":  # a killed run still leaves a valid dataset; SIGINT lets it end cleanly
            self._worker.stop(timeout_s=STOP_TIMEOUT_S, ask=lambda: self._worker.process.send_signal(
                signal.SIGINT if os.name == "posix" else signal.SIGTERM))
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
        if self._worker.alive():
            return {"RUNNING_MODAL"}
        if self._worker.process.returncode != 0:
            error = [line for line in self._worker.log_tail(20) if line.strip()]
            message = error[-1] if error else f"generate exited with code {self._worker.process.returncode}"
            return self._finish(context, {"ERROR"}, message)
        return self._finish(context, {"INFO"}, f"Dataset written to {self._out_dir} ({self._done} samples)")

    def _modal_cluster(self, context, event):
        if event.type == "ESC":
            self._watcher.cancel_requested.set()  # the job turns "cancelled" at the service's next poll
            return {"RUNNING_MODAL"}
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        done = self._watcher.status["done"]
        if done != self._done and self._first_done is None:
            self._first_done, self._first_time = done, time.monotonic()
        self._done = done
        self._show(context)
        if not self._watcher.finished:
            return {"RUNNING_MODAL"}
        return self._finish(context, *self._watcher.outcome())

    def _show(self, context) -> None:
        wm = context.window_manager
        rendered = self._done - (self._first_done or 0)
        pace = (time.monotonic() - self._first_time) / rendered if rendered > 0 else None
        wm.progress_update(self._done)
        wm.neural_face_dataset_progress = self._done / self._total
        workers = self._watcher.status["workers"] if self._watcher is not None else None
        wm.neural_face_dataset_status = progress_text(self._done, self._total, pace, workers)
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
