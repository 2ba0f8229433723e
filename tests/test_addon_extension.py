"""The add-on as users get it: Blender's validator accepts it, Blender's operator installs the zip
headless, its classes register and unregister cleanly, and its operator writes a dataset."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from backend.commands.addon import blender_ext, build
from backend.dataset import open_dataset
from conftest import ROOT

INSTALL_AND_RUN = textwrap.dedent("""
    import sys, json, bpy
    import addon_utils  # on sys.path once bpy is imported
    zip_path, scene_path, out_dir = sys.argv[1:4]
    bpy.ops.extensions.package_install_files(filepath=zip_path, repo="user_default", enable_on_install=True)
    module = "bl_ext.user_default.neural_face"
    report = {"enabled": module in {m.__name__ for m in addon_utils.modules() if addon_utils.check(m.__name__)[1]}}
    report["registered"] = [hasattr(bpy.types, name) for name in
                            ("NEURAL_FACE_OT_generate_dataset", "NEURALFACE_PT_dataset")]
    bpy.ops.wm.open_mainfile(filepath=scene_path)
    props = bpy.context.scene.neural_face_dataset
    props.output_dir, props.samples, props.resolution, props.gt_samples = out_dir, 2, (16, 16), 1
    props.unlabelled = 2
    report["operator"] = list(bpy.ops.neural_face.generate_dataset("INVOKE_DEFAULT"))
    addon_utils.disable(module)
    report["unregistered"] = [not hasattr(bpy.types, name) for name in
                              ("NEURAL_FACE_OT_generate_dataset", "NEURALFACE_PT_dataset")]
    report["scene_property_removed"] = not hasattr(bpy.types.Scene, "neural_face_dataset")
    print("REPORT" + json.dumps(report))
""")

REGISTER_TWICE = textwrap.dedent("""
    import bpy, blender_addon
    for _ in range(2):
        blender_addon.register()
        assert hasattr(bpy.types, "NEURALFACE_PT_dataset") and hasattr(bpy.types.Scene, "neural_face_dataset")
        blender_addon.unregister()
        assert not hasattr(bpy.types, "NEURALFACE_PT_dataset") and not hasattr(bpy.types.Scene, "neural_face_dataset")
    print("CLEAN")
""")


@pytest.fixture(scope="module")
def addon_zip(tmp_path_factory):
    return build(tmp_path_factory.mktemp("dist"))


def test_blender_validator_accepts_source_and_zip(addon_zip):
    for path in (ROOT / "blender_addon", addon_zip):
        result = blender_ext("validate", str(path))
        assert result.returncode == 0, result.stdout + result.stderr
    assert addon_zip.name == "neural_face-0.1.0.zip"


def test_register_and_unregister_twice_in_a_row():
    result = subprocess.run([sys.executable, "-c", REGISTER_TWICE], cwd=ROOT, capture_output=True, text=True,
                            timeout=120)
    assert "CLEAN" in result.stdout, result.stderr[-3000:]


@pytest.mark.slow
def test_zip_installs_headless_and_its_operator_generates(addon_zip, suzanne_blend, tmp_path):
    out = tmp_path / "from_operator"
    # Isolate Blender's user config; the installed add-on finds the backend's Python as a user would set it.
    environment = dict(os.environ, HOME=str(tmp_path / "home"), NEURAL_FACE_PYTHON=sys.executable)
    result = subprocess.run([sys.executable, "-c", INSTALL_AND_RUN, str(addon_zip), str(suzanne_blend), str(out)],
                            cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=300)
    lines = [line for line in result.stdout.splitlines() if line.startswith("REPORT")]
    assert lines, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads(lines[0][len("REPORT"):])
    assert report == {"enabled": True, "registered": [True, True], "operator": ["FINISHED"],
                      "unregistered": [True, True], "scene_property_removed": True}
    dataset = open_dataset(out)  # background mode: the operator ran synchronously to the end
    assert dataset.labelled() == [0, 1] and dataset.indices("unlabelled") == [2, 3] and dataset.resolution == (16, 16)
    dataset.load_gbuffer(1), dataset.load_ground_truth(1)


def test_the_command_the_operator_starts_reports_progress_and_writes_the_dataset(suzanne_blend, tmp_path):
    """The UI operator runs `python -m backend generate --settings-file F --progress-lines` (operators_dataset)."""
    from blender_addon.dataset_settings import DatasetSettings

    settings = DatasetSettings(scene=str(suzanne_blend), resolution=(16, 16), samples=2, gt_samples=1)
    out, settings_file = tmp_path / "generated", tmp_path / "settings.json"
    command = [sys.executable, "-m", "backend", "generate", "--scene", str(suzanne_blend), "--out", str(out),
               "--settings-file", str(settings_file), "--progress-lines"]
    settings_file.write_text(json.dumps(settings.to_json()))
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    progress = [line.split()[1:] for line in result.stdout.splitlines() if line.startswith("NF_PROGRESS")]
    assert progress == [["0", "2"], ["1", "2"], ["2", "2"]]
    assert open_dataset(out).indices() == [0, 1]
    assert open_dataset(out).settings["scene"] == str(suzanne_blend), "the file's scene, not the copy's path"

    settings_file.write_text(json.dumps(dict(settings.to_json(), seed=5)))
    refused = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "other settings (seed)" in refused.stderr
