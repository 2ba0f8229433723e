"""The Ray actor that renders samples: one per worker, holding one bpy session with the scene loaded.

It renders with the add-on's own DatasetJob (the same recipe, cameras, lights and split as a
local run) into a private temporary folder, and returns each sample's record and files as bytes;
the driver writes and commits them. The module imports neither ray nor bpy at the top, so the
driver can import it anywhere and a worker without bpy can still say so.
"""

from __future__ import annotations

import glob
import hashlib
import os
import platform
import shutil
import socket
import tempfile
from pathlib import Path

# The add-on files that decide a sample's pixels and record: a worker must run the same ones.
RECIPE_FILES = ("camera_model.py", "dataset_job.py", "dataset_settings.py", "ground_truth.py",
                "render_rig.py", "sampling.py", "scene_export.py", "scene_setup.py")
ADDON_DIR = Path(__file__).resolve().parents[2] / "blender_addon"
FOLDER_PREFIX = "nf-worker-"  # + pid: the worker's private dataset folder


def recipe_fingerprint() -> str:
    digest = hashlib.sha256()
    for name in RECIPE_FILES:
        digest.update(name.encode() + b"\0" + (ADDON_DIR / name).read_bytes())
    return digest.hexdigest()[:16]


def remove_stale_folders() -> None:
    """Workers end by a kill (Ray's, or a fault), never by a clean exit: sweep up after dead ones."""
    for path in glob.glob(os.path.join(tempfile.gettempdir(), FOLDER_PREFIX + "*")):
        pid = path.rsplit("-", 1)[-1]
        if pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
            shutil.rmtree(path, ignore_errors=True)


def node_name() -> str:
    import ray

    node_id = ray.get_runtime_context().get_node_id()
    return f"{socket.gethostname()} ({ray.util.get_node_ip_address()}, Ray node {node_id[:8]})"


class SampleRenderer:
    """Made a Ray actor by the driver: `ray.remote(SampleRenderer).options(num_cpus=...)`."""

    def __init__(self):
        self.job = None
        remove_stale_folders()
        self.folder = os.path.join(tempfile.gettempdir(), f"{FOLDER_PREFIX}{os.getpid()}")
        shutil.rmtree(self.folder, ignore_errors=True)
        os.makedirs(self.folder)

    def start(self, scene: bytes, settings: dict, threads: int, blender: str, device: str = "CPU") -> dict:
        """Load the scene and prepare the render rig; returns what the driver checks before any work.

        A worker without bpy, or with another Blender than the driver's `blender`, answers at once.
        """
        info = {"node": node_name(), "pid": os.getpid(), "python": platform.python_version(),
                "blender": None, "error": "", "fingerprint": "", "object": None}
        try:
            import bpy
        except ImportError as exc:
            info["error"] = str(exc)
            return info
        info["blender"] = bpy.app.version_string
        if info["blender"] != blender:
            return info
        info["fingerprint"] = recipe_fingerprint()
        from backend.commands.generate import import_addon, quiet_stdout

        addon = import_addon()
        scene_path = os.path.join(self.folder, "scene.blend")
        with open(scene_path, "wb") as stream:
            stream.write(scene)
        with quiet_stdout():
            addon.scene_setup.load_scene_file(scene_path)
        os.remove(scene_path)  # loaded; the folder now only ever holds the sample in hand
        target = addon.scene_setup.find_target(bpy.context.scene, settings["object"])
        addon.scene_setup.ensure_material(target)
        job_settings = addon.dataset_settings.DatasetSettings.from_json(settings)
        self.job = addon.dataset_job.DatasetJob(job_settings, target, os.path.join(self.folder, "dataset"),
                                                device=device)
        try:
            self.job.start(export=False)  # the driver exported the scene and traces the G-buffers
        except addon.errors.SceneError as exc:  # e.g. no GPU of the asked kind on this node
            info["error"] = str(exc)
            return info
        render = self.job.rig.scene.render
        render.threads_mode, render.threads = "FIXED", threads  # the CPUs Ray gave this worker, no more
        info["object"] = self.job.manifest["object"]
        return info

    def render(self, index: int) -> tuple[dict, dict[str, bytes]]:
        """Render sample `index`; returns its record and {path relative to the dataset: file bytes}."""
        from backend.commands.generate import quiet_stdout

        with quiet_stdout():
            record = self.job.render_sample(index)
        files = {}
        if record.get("ground_truth") is not None:  # an unlabelled view has none: the driver traces its G-buffer
            path = os.path.join(self.job.out_dir, record["ground_truth"])
            with open(path, "rb") as stream:
                files[record["ground_truth"]] = stream.read()
            os.remove(path)
        return record, files

    def close(self) -> None:
        """At the end of a run: leave nothing behind (a worker killed instead is swept up by the next)."""
        shutil.rmtree(self.folder, ignore_errors=True)
