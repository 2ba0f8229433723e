"""Drives the add-on in headless Blender for tests/test_preview_addon.py (run with the bpy module's Python).

Usage: python blender_preview_session.py SCENE.blend RESULT.json preview|train [key=value ...]
Enables the add-on as Blender does, sets up Suzanne with a camera and a point light, runs the
operator, and writes what the test checks into RESULT.json (and the preview image as .npy).
"""

import json
import shutil
import sys
from pathlib import Path

import bpy
import numpy as np

import addon_utils  # importable only once bpy is

ROOT = Path(__file__).resolve().parents[1]
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


def main(scene_path: str, result_path: str, action: str, options: dict) -> None:
    prefs = enable_addon()
    if "url" in options:
        prefs.connection, prefs.url, prefs.token = "REMOTE", options["url"], options["token"]
    else:
        prefs.connection, prefs.python = "LOCAL", options["python"]
    scene = stage_scene(scene_path)
    scene.neural_face_train.bank_path = options["bank"]
    result = {}
    if action == "preview":
        settings = scene.neural_face_preview
        settings.resolution = int(options["resolution"])
        settings.renderer = "torch"
        settings.compare = options.get("compare") == "1"
        result["operator"], result["error"] = run_operator(bpy.ops.neural_face.preview)
        image = bpy.data.images.get("Neural Preview")
        if image is not None:
            from blender_addon.preview_image import read_image

            np.save(result_path + ".npy", read_image(image))
            result.update(image_size=list(image.size), is_float=image.is_float)
        result.update(status=settings.status, gbuffer=keep_gbuffer(settings.gbuffer_path, result_path),
                      times_ms={k: getattr(settings, k + "_ms") for k in ("gbuffer", "transfer", "shading", "upload", "cycles")},
                      images=sorted(i.name for i in bpy.data.images))
    elif action == "live":
        result["changed"] = live_signature_changes(scene)
    else:
        scene.neural_face_dataset.output_dir = options["dataset"]
        scene.neural_face_train.steps = int(options["steps"])
        result["operator"], result["error"] = run_operator(bpy.ops.neural_face.train)
        state = scene.neural_face_train
        result.update(state=state.state, step=state.step, total_steps=state.total_steps, loss=state.loss,
                      val_psnr=state.val_psnr, progress=state.progress, message=state.message,
                      report=state.report_path)
    Path(result_path).write_text(json.dumps(result))



def keep_gbuffer(gbuffer_path: str, result_path: str) -> str:
    """Copy the preview's G-buffer and its record out of the work folder, which Blender's exit deletes."""
    if not gbuffer_path:
        return gbuffer_path
    from blender_addon.gbuffer import sidecar_path

    kept = Path(result_path).with_name("kept_gbuffer")  # not beside result_path: NAME.json is the record's name
    kept.mkdir(exist_ok=True)
    target = kept / Path(gbuffer_path).name
    shutil.copyfile(gbuffer_path, target)
    shutil.copyfile(sidecar_path(gbuffer_path), sidecar_path(str(target)))
    return str(target)

if __name__ == "__main__":
    scene_arg, result_arg, action_arg = sys.argv[1:4]
    main(scene_arg, result_arg, action_arg, dict(arg.split("=", 1) for arg in sys.argv[4:]))
