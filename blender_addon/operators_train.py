"""Train, Cancel Training and Open Report operators.

A `TrainingWatcher` thread starts the job on the service and polls its status; the operator copies
that status into `scene.neural_face_train` on modal timer events (so the panel's progress bar moves)
and reports the outcome. `execute` does the same in a plain loop for scripts and background mode.
"""

from __future__ import annotations

import os
import pathlib
import threading
import time

import bpy

from .preferences import connection
from .properties_dataset import dataset_folder
from .service_client import ServiceError, connect

POLL_S = 0.5
FINAL_STATES = ("done", "failed", "cancelled")
HEADLINE_KEYS = 3  # metrics shown in the panel and the final report line

_watcher: "TrainingWatcher | None" = None


class TrainingWatcher:
    """Runs in a thread (no bpy): start the job, then refresh `status` until it ends."""

    def __init__(self, connection: dict, dataset: str, bank: str, steps: int):
        self.connection, self.dataset, self.bank, self.steps = connection, dataset, bank, steps
        self.status: dict = {"state": "starting"}
        self.error: str | None = None
        self.cancel_requested = threading.Event()
        self.thread = threading.Thread(target=self._run, name="neural-train", daemon=True)

    def _run(self) -> None:
        try:
            client = connect(self.connection, [self.dataset, os.path.dirname(self.bank)])
            self.status = client.start_training(self.dataset, self.bank, steps=self.steps or None)
            while self.status["state"] not in FINAL_STATES:
                time.sleep(POLL_S)
                if self.cancel_requested.is_set():
                    self.status = client.cancel_training(self.status["id"])
                    self.cancel_requested.clear()
                self.status = client.training_status(self.status["id"])
        except ServiceError as exc:
            self.error = str(exc)

    @property
    def finished(self) -> bool:
        return not self.thread.is_alive()


def headline(metrics: dict | None) -> str:
    items = list((metrics or {}).items())[:HEADLINE_KEYS]
    return ", ".join(f"{k} {v:.4g}" for k, v in items)


def copy_status(state, watcher: TrainingWatcher) -> None:
    """Mirror the service's job status into the scene's train state (main thread)."""
    status = watcher.status
    state.state = status["state"]
    state.job_id = status.get("id", "")
    progress = status.get("progress") or {}
    if progress:
        total, elapsed, eta = progress["total_steps"], progress["elapsed_s"], progress["eta_s"]
        state.step, state.total_steps = progress["step"], total or 0
        if total:
            state.progress = progress["step"] / total
        elif eta is not None:  # bounded by time, not steps
            state.progress = elapsed / max(elapsed + eta, 1e-9)
        state.loss = progress["loss"] or 0.0
        state.val_psnr = progress["val_psnr"] or 0.0
        state.eta_s = progress["eta_s"] or 0.0
    state.report_path = status.get("report") or ""
    if watcher.error is not None:
        state.state, state.message = "failed", watcher.error
    elif status.get("error"):
        state.message = status["error"]
    elif status["state"] == "done":
        state.message = headline(status.get("metrics"))


def report_outcome(state, report) -> set[str]:
    if state.state == "done":
        report({"INFO"}, f"Training done: {state.message}")
        return {"FINISHED"}
    if state.state == "cancelled":
        report({"WARNING"}, f"Training cancelled: {state.message}" if state.message else "Training cancelled")
        return {"CANCELLED"}
    report({"ERROR"}, f"Training failed: {state.message}")
    return {"CANCELLED"}


class NEURALFACE_OT_train(bpy.types.Operator):
    """Train the tile networks on the dataset folder and write the weight bank and its report"""

    bl_idname = "neural_face.train"
    bl_label = "Train"

    _timer = None

    @classmethod
    def poll(cls, context):
        return _watcher is None or _watcher.finished

    def _start(self, context) -> TrainingWatcher | None:
        global _watcher
        scene = context.scene
        dataset = dataset_folder(scene)
        if not dataset:
            self.report({"ERROR"}, "set the dataset folder first (Dataset panel)")
            return None
        state = scene.neural_face_train
        state.message, state.progress, state.step, state.report_path = "", 0.0, 0, ""
        _watcher = TrainingWatcher(connection(context), dataset, state.resolved_bank(scene), state.steps)
        _watcher.thread.start()
        return _watcher

    def execute(self, context):
        watcher = self._start(context)
        if watcher is None:
            return {"CANCELLED"}
        state = context.scene.neural_face_train
        while not watcher.finished:
            watcher.thread.join(POLL_S)
            copy_status(state, watcher)
            print(f"training: {state.state} step {state.step}/{state.total_steps} loss {state.loss:.4g} "
                  f"val PSNR {state.val_psnr:.2f} dB")
        copy_status(state, watcher)
        return report_outcome(state, self.report)

    def invoke(self, context, event):
        if bpy.app.background:
            return self.execute(context)
        if self._start(context) is None:
            return {"CANCELLED"}
        self._timer = context.window_manager.event_timer_add(POLL_S, window=context.window)
        context.window_manager.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        state = context.scene.neural_face_train
        copy_status(state, _watcher)
        for area in context.screen.areas if context.screen else []:
            area.tag_redraw()
        if not _watcher.finished:
            return {"PASS_THROUGH"}
        context.window_manager.event_timer_remove(self._timer)
        return report_outcome(state, self.report)


class NEURALFACE_OT_cancel_training(bpy.types.Operator):
    """Stop the running training job (the bank is not written)"""

    bl_idname = "neural_face.cancel_training"
    bl_label = "Cancel Training"

    @classmethod
    def poll(cls, context):
        return _watcher is not None and not _watcher.finished

    def execute(self, context):
        _watcher.cancel_requested.set()
        return {"FINISHED"}


class NEURALFACE_OT_open_report(bpy.types.Operator):
    """Open the quality report of the last training in the web browser"""

    bl_idname = "neural_face.open_report"
    bl_label = "Open Report"

    @classmethod
    def poll(cls, context):
        return bool(context.scene.neural_face_train.report_path)

    def execute(self, context):
        path = bpy.path.abspath(context.scene.neural_face_train.report_path)
        if not os.path.isfile(path):
            self.report({"ERROR"}, f"report {path} does not exist (on a remote service it is on that machine)")
            return {"CANCELLED"}
        bpy.ops.wm.url_open(url=pathlib.Path(path).as_uri())
        return {"FINISHED"}


register, unregister = bpy.utils.register_classes_factory(
    (NEURALFACE_OT_train, NEURALFACE_OT_cancel_training, NEURALFACE_OT_open_report))
