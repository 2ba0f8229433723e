"""Drives the add-on in headless Blender for tests/test_preview_addon.py (run with the bpy module's Python).

Usage: python blender_preview_session.py SCENE.blend RESULT.json ACTION [key=value ...]
ACTION: preview, train, live (the change detector), live_frames (the Live timer's callback, pumped
as Blender's event loop would: timers never fire in background mode), cancel (cancels, and a
worker that does not answer in time), snapshots (which edits write a new snapshot of the target)
hold_worker (one preview, then the worker's pid in RESULT.json and wait to be killed) or dataset
(Generate Dataset on the Ray cluster given as cluster=HOST:PORT token_file=FILE, through the service).
Enables the add-on as Blender does, sets up Suzanne with a camera and a point light, runs the
operator, and writes what the test checks into RESULT.json (and the preview image as .npy).
"""

import json
import os
import shutil
import sys
import time
from pathlib import Path

import bpy
import numpy as np

import addon_utils  # importable only once bpy is

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("snapshot", "gbuffer", "transfer", "shading", "upload", "cycles")
sys.path.insert(0, str(ROOT))


def enable_addon():
    errors = []
    addon_utils.enable("blender_addon", default_set=True, handle_error=errors.append)
    if errors or "blender_addon" not in bpy.context.preferences.addons:
        raise SystemExit(f"could not enable the add-on: {errors}")
    return bpy.context.preferences.addons["blender_addon"].preferences


def stage_scene(scene_path: str):
    bpy.ops.wm.open_mainfile(filepath=scene_path, load_ui=False)
    scene = bpy.context.scene
    camera = bpy.data.objects.new("Camera", bpy.data.cameras.new("Camera"))
    scene.collection.objects.link(camera)
    camera.location = (0.3, -4.0, 0.6)
    camera.rotation_euler = (1.43, 0.0, 0.07)
    scene.camera = camera
    light = bpy.data.objects.new("Key", bpy.data.lights.new("Key", "POINT"))
    light.data.energy, light.data.shadow_soft_size = 400.0, 0.1
    light.location = (2.0, -3.0, 2.0)
    scene.collection.objects.link(light)
    scene.render.resolution_x, scene.render.resolution_y = 400, 300
    suzanne = next(o for o in scene.objects if o.type == "MESH")
    bpy.context.view_layer.objects.active = suzanne
    return scene


def run_operator(operator) -> tuple[list[str], str]:
    """The operator's return set; an ERROR report raises RuntimeError in Python, recorded as ["error"]."""
    try:
        return sorted(operator()), ""
    except RuntimeError as exc:
        return ["error"], str(exc)


def live_signature_changes(scene) -> dict:
    """Whether Live's change detector sees each kind of edit (its timer never fires in background mode)."""
    from blender_addon.preview_live import signature

    edits = {
        "camera": lambda: setattr(scene.camera, "location", (0.5, -4.0, 0.6)),
        "light": lambda: setattr(bpy.data.lights["Key"], "energy", 100.0),
        "object": lambda: setattr(next(o for o in scene.objects if o.type == "MESH"), "rotation_euler", (0, 0, 0.3)),
        "geometry": lambda: setattr(next(o for o in scene.objects if o.type == "MESH").data.vertices[0], "co", (0, 0, 9)),
        "nothing": lambda: None,
    }
    changed = {}
    for name, edit in edits.items():
        before = signature(bpy.context)
        edit()
        bpy.context.view_layer.update()
        changed[name] = signature(bpy.context) != before
    return changed


def live_frames(scene) -> dict:
    """Live end to end: a first frame, debounce, a re-render after a light edit, and quiet when idle."""
    from blender_addon import preview_job, preview_live
    from blender_addon.preview_image import PREVIEW_IMAGE, read_image

    def pump(seconds: float, until=lambda: False) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            preview_live._tick()  # the callback bpy.app.timers runs every TICK_S in the UI
            if until():
                return True
            time.sleep(0.02)
        return False

    def shown():
        image = bpy.data.images.get(PREVIEW_IMAGE)
        return None if image is None else read_image(image).copy()

    result = {}
    scene.neural_face_preview.live = True  # its update callback enables Live
    preview_live._tick()
    result["debounced_first"] = not preview_job.busy()
    result["first_frame"] = pump(120, lambda: shown() is not None and not preview_job.busy())
    first = shown()
    result["quiet_when_idle"] = not pump(1.0, preview_job.busy)

    bpy.data.lights["Key"].energy = 100.0
    preview_live._tick()
    result["debounced_edit"] = not preview_job.busy()
    result["edit_rerendered"] = pump(120, lambda: not preview_job.busy() and not np.array_equal(shown(), first))
    second = shown()
    covered = first[..., 3] > 0.5
    result["edit_darkened"] = bool(second[covered, :3].mean() < first[covered, :3].mean())
    pump(120, lambda: not preview_job.busy())

    material = next(o for o in scene.objects if o.type == "MESH").active_material
    material.node_tree.nodes["Principled BSDF"].inputs["Roughness"].default_value = 0.9
    result["material_rerendered"] = pump(5, preview_job.busy)
    pump(120, lambda: not preview_job.busy())
    result["status"] = scene.neural_face_preview.status
    scene.neural_face_preview.live = False
    return result


def wait_for(condition, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {seconds} s waiting for {condition}")
        time.sleep(0.01)


def cancel_then_preview() -> dict:
    """Cancel a frame while the worker renders it, preview again, cancel a finished frame, time one out."""
    from blender_addon import preview_job, preview_worker_client, processes

    job = preview_job.PreviewJob(bpy.context)
    thread = preview_job.run_in_background(job)
    wait_for(lambda: getattr(preview_worker_client._worker.current, "pending", None))
    job.cancel()  # the worker is still starting: its reply cannot have come yet
    thread.join(120)
    result = {"cancel_error": job.error, "cancelled_frame": job.shaded is not None}
    result["operator"], result["error"] = run_operator(bpy.ops.neural_face.preview)  # a new worker takes over

    finished = preview_job.PreviewJob(bpy.context)
    finished.run()
    pid = preview_worker_client._worker.current.process.pid
    finished.cancel()  # nothing of it is in the worker any more: the worker must stay
    worker = preview_worker_client._worker.current
    result["idle_worker_kept"] = worker.alive() and worker.process.pid == pid

    late = preview_job.PreviewJob(bpy.context)
    try:
        preview_worker_client.render(processes.blender_command("preview"), preview_worker_client.new_request_id(),
                                     late._request, timeout_s=0.001)
    except preview_worker_client.WorkerError as exc:
        result["timeout_error"] = str(exc)
    result["worker_after_timeout_alive"] = preview_worker_client._worker.current.alive()
    late.run()
    result["after_timeout_frame"] = late.shaded is not None and late.error is None

    preview_worker_client.MAX_SNAPSHOT_LOADS = 1  # replaced at every new snapshot from now on
    pids = []
    for edit in (lambda: None, lambda: setattr(bpy.data.lights["Key"], "energy", 50.0),
                 lambda: setattr(bpy.context.active_object.active_material, "roughness", 0.7)):
        edit()
        job = preview_job.PreviewJob(bpy.context)
        job.run()
        pids.append(preview_worker_client._worker.current.process.pid if job.error is None else job.error)
    result["worker_pids_light_then_material_edit"] = pids
    return result


def snapshot_reuse(scene) -> dict:
    """Which edits make the preview write a new snapshot of the target, and what Edit Mode's holds."""
    import bmesh

    from blender_addon import preview_job

    suzanne = next(o for o in scene.objects if o.type == "MESH")

    scene.neural_face_preview.compare = True  # the .blend snapshot is made for the Cycles comparison
    mesh_versions = {}  # the mesh file's modification time after each edit: a new one means rewritten

    def snapshot_after(edit, name: str) -> str:
        edit()
        job = preview_job.PreviewJob(bpy.context)
        mesh_versions[name] = os.stat(job._preview["mesh"]).st_mtime_ns
        return job._request["scene"]

    def edit_mode_move():
        bpy.context.view_layer.objects.active = suzanne
        bpy.ops.object.mode_set(mode="EDIT")
        mesh = bmesh.from_edit_mesh(suzanne.data)
        for vertex in mesh.verts:
            vertex.co.z += 5.0
        bmesh.update_edit_mesh(suzanne.data)

    paths = {
        "first": snapshot_after(lambda: None, "first"),
        "camera": snapshot_after(lambda: setattr(scene.camera, "location", (0.5, -4.0, 0.6)), "camera"),
        "light": snapshot_after(lambda: setattr(bpy.data.lights["Key"], "energy", 100.0), "light"),
        "object_moved": snapshot_after(lambda: setattr(suzanne, "location", (0.0, 0.0, 0.1)), "object_moved"),
        "material": snapshot_after(lambda: setattr(
            suzanne.active_material.node_tree.nodes["Principled BSDF"].inputs["Roughness"], "default_value", 0.9),
            "material"),
        "edit_mode": snapshot_after(edit_mode_move, "edit_mode"),
    }
    edit_mesh = np.load(os.path.join(preview_job.work_dir(), "preview-mesh.npz"))["positions"]
    with bpy.data.libraries.load(paths["edit_mode"]) as (source, loaded):
        loaded.meshes = list(source.meshes)
    top = max(v.co.z for v in loaded.meshes[0].vertices)
    return {"paths": paths, "edit_mode_top_z": top, "files": sorted(os.listdir(os.path.dirname(paths["edit_mode"]))),
            "mesh_versions": mesh_versions, "edit_mode_mesh_top_z": float(edit_mesh[:, 2].max())}


def hold_worker(result_path: str) -> None:
    """Leave the preview worker running, report its pid, and wait for the test's kill -9."""
    from blender_addon import preview_worker_client

    Path(result_path).write_text(json.dumps({"worker_pid": preview_worker_client._worker.current.process.pid}))
    time.sleep(600)


def count_renders() -> list:
    """Renders started in this Blender process: the preview must leave every one to its worker."""
    renders = []
    bpy.app.handlers.render_init.append(lambda *args: renders.append(1))
    return renders


def main(scene_path: str, result_path: str, action: str, options: dict) -> None:
    prefs = enable_addon()
    if "url" in options:
        prefs.connection, prefs.url, prefs.token = "REMOTE", options["url"], options["token"]
    else:
        prefs.connection, prefs.python = "LOCAL", options["python"]
    scene = stage_scene(scene_path)
    scene.neural_face_train.bank_path = options["bank"]
    if "dataset" in options:  # the preview reads the albedo baked into it; training reads the dataset
        scene.neural_face_dataset.output_dir = options["dataset"]
    result = {}
    renders = count_renders()
    if action in ("preview", "hold_worker"):
        settings = scene.neural_face_preview
        settings.resolution = int(options["resolution"])
        settings.renderer = "torch"
        settings.compare = options.get("compare") == "1"
        if options.get("bare") == "1":  # a mesh without material: the dataset gives it the skin material
            next(o for o in scene.objects if o.type == "MESH").data.materials.clear()
        result["operator"], result["error"] = run_operator(bpy.ops.neural_face.preview)
        image = bpy.data.images.get("Neural Preview")
        if image is not None:
            from blender_addon.preview_image import read_image

            np.save(result_path + ".npy", read_image(image))
            result.update(image_size=list(image.size), is_float=image.is_float)
        if action == "hold_worker":
            hold_worker(result_path)
        from blender_addon import preview_worker_client

        result["workers_started"] = int(preview_worker_client._worker.current is not None)
        result.update(status=settings.status, request=keep_request(result_path),
                      times_ms={stage: getattr(settings, stage + "_ms") for stage in STAGES},
                      images=sorted(i.name for i in bpy.data.images))
    elif action == "snapshots":
        result.update(snapshot_reuse(scene))
    elif action == "cancel":  # what a cancel stops is the Cycles comparison in the worker
        scene.neural_face_preview.resolution, scene.neural_face_preview.renderer = 16, "torch"
        scene.neural_face_preview.compare, scene.neural_face_preview.compare_samples = True, 4
        result.update(cancel_then_preview())
    elif action == "live":
        result["changed"] = live_signature_changes(scene)
    elif action == "dataset":
        prefs.cluster, prefs.cluster_token_file = options["cluster"], options["token_file"]
        props = scene.neural_face_dataset
        props.output_dir, props.samples, props.resolution = options["dataset"], 3, (48, 48)
        props.unlabelled = 2
        props.gt_samples, props.gbuffer_shadow_rays, props.seed = 256, 4, 5
        result["operator"], result["error"] = run_operator(bpy.ops.neural_face.generate_dataset)
    elif action == "live_frames":
        scene.neural_face_preview.resolution, scene.neural_face_preview.renderer = 32, "torch"
        result.update(live_frames(scene))
    else:
        scene.neural_face_dataset.output_dir = options["dataset"]
        scene.neural_face_train.steps = int(options["steps"])
        result["operator"], result["error"] = run_operator(bpy.ops.neural_face.train)
        state = scene.neural_face_train
        result.update(state=state.state, step=state.step, total_steps=state.total_steps, loss=state.loss,
                      val_psnr=state.val_psnr, progress=state.progress, message=state.message,
                      report=state.report_path)
    result["renders_in_session"] = len(renders)
    Path(result_path).write_text(json.dumps(result))



def keep_request(result_path: str) -> str:
    """Copy the last preview request and its mesh file out of the work folder, which Blender's exit deletes."""
    from blender_addon.preview_job import REQUEST_NAME, work_dir

    source = Path(work_dir()) / REQUEST_NAME
    if not source.is_file():
        return ""
    kept = Path(result_path).with_name("kept_request")
    kept.mkdir(exist_ok=True)
    request = json.loads(source.read_text())
    request["mesh"] = str(shutil.copyfile(request["mesh"], kept / Path(request["mesh"]).name))
    (kept / REQUEST_NAME).write_text(json.dumps(request))
    return str(kept / REQUEST_NAME)

if __name__ == "__main__":
    scene_arg, result_arg, action_arg = sys.argv[1:4]
    main(scene_arg, result_arg, action_arg, dict(arg.split("=", 1) for arg in sys.argv[4:]))
