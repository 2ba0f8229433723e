"""One Generate Dataset job in its own Blender process, so the UI never waits on Cycles.

The operator saves a copy of the open file and starts `worker.py dataset SCENE_COPY OUT_DIR
SETTINGS_JSON` (processes.blender_command), then reads lines `NF_PROGRESS <done> <total>` from its stdout.
Killing the process at any moment leaves a valid partial dataset (dataset_job commits each
sample atomically).
"""

import json
import sys

import bpy

from .dataset_job import DatasetJob
from .dataset_settings import DatasetSettings
from .errors import InputError
from .scene_setup import ensure_material, find_target, load_scene_file

PROGRESS_PREFIX = "NF_PROGRESS"


def main(scene_copy: str, out_dir: str, settings_json: str) -> int:
    settings = DatasetSettings.from_json(json.loads(settings_json))
    try:
        load_scene_file(scene_copy)
        target = find_target(bpy.context.scene, settings.object)
        ensure_material(target)
        job = DatasetJob(settings, target, out_dir)
        job.start()
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    with job:
        print(f"{PROGRESS_PREFIX} {job.done_count} {job.total}", flush=True)
        while job.pending:
            progress = job.step()
            print(f"{PROGRESS_PREFIX} {progress.done} {progress.total}", flush=True)
    return 0
