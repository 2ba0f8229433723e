"""Run one Generate Dataset job in its own Blender process, so the UI never waits on Cycles.

The operator saves a copy of the open file, starts
`blender -b --factory-startup --python dataset_worker.py -- SCENE_COPY OUT_DIR SETTINGS_JSON`
and reads lines `NF_PROGRESS <done> <total>` from its stdout. Killing the process at any moment
leaves a valid partial dataset (dataset_job commits each sample atomically). The same script
runs under the bpy module: `python dataset_worker.py SCENE_COPY OUT_DIR SETTINGS_JSON`.
"""

import importlib
import json
import sys
from pathlib import Path

PROGRESS_PREFIX = "NF_PROGRESS"


def _addon_module(name: str):
    """A module of this add-on, imported by path: the worker runs with no add-ons enabled."""
    package_dir = Path(__file__).resolve().parent
    if str(package_dir.parent) not in sys.path:
        sys.path.insert(0, str(package_dir.parent))
    return importlib.import_module(f"{package_dir.name}.{name}")


def main(scene_copy: str, out_dir: str, settings_json: str) -> int:
    import bpy

    scene_setup = _addon_module("scene_setup")
    settings = _addon_module("dataset_settings").DatasetSettings.from_json(json.loads(settings_json))
    try:
        scene_setup.load_scene_file(scene_copy)
        target = scene_setup.find_target(bpy.context.scene, settings.object)
        scene_setup.ensure_material(target)
        job = _addon_module("dataset_job").DatasetJob(settings, target, out_dir)
        job.start()
    except _addon_module("errors").InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    with job:
        print(f"{PROGRESS_PREFIX} {job.done_count} {settings.samples}", flush=True)
        while job.pending:
            progress = job.step()
            print(f"{PROGRESS_PREFIX} {progress.done} {progress.total}", flush=True)
    return 0


if __name__ == "__main__":
    arguments = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else sys.argv[1:]
    sys.exit(main(*arguments))
