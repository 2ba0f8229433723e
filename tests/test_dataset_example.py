"""The example face: fetched from PyPI (menpo3d 0.8.6 sdist), built into a .blend, idempotently."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import ROOT, run_backend

CACHE = ROOT / "example_scenes" / "cache"


@pytest.mark.slow
def test_example_scene_is_built_once_and_is_a_textured_uv_mapped_face(tmp_path):
    result = run_backend("example")
    assert result.returncode == 0, result.stderr
    blend = CACHE / "james.blend"
    built = blend.stat().st_mtime_ns
    assert run_backend("example").returncode == 0
    assert blend.stat().st_mtime_ns == built, "a second run must not rebuild"
    assert "Imperial College London" in (CACHE / "LICENSE.txt").read_text()

    probe = tmp_path / "probe.py"
    probe.write_text(
        "import bpy, sys\n"
        f"bpy.ops.wm.open_mainfile(filepath={str(blend)!r})\n"
        "face = bpy.data.objects['James']\n"
        "bsdf = face.active_material.node_tree.nodes['Principled BSDF']\n"
        "texture = bsdf.inputs['Base Color'].links[0].from_node.image\n"
        "print('PROBE', len(face.data.vertices), face.data.uv_layers.active is not None,\n"
        "      bsdf.inputs['Subsurface Weight'].default_value, texture.size[0], texture.packed_file is not None,\n"
        "      all(p.use_smooth for p in face.data.polygons))\n")
    output = subprocess.run([sys.executable, str(probe)], capture_output=True, text=True, timeout=120).stdout
    line = next(line for line in output.splitlines() if line.startswith("PROBE"))
    assert line.split()[1:] == ["6393", "True", "1.0", "2400", "True", "True"]
