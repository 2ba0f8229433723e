"""The backend's G-buffer tracer: analytic checks on hand-made scenes, and agreement with Cycles.

The Cycles reference is the recipe the tracer replaced (blender_addon/gbuffer.py: one Cycles
render of coverage, UV, position, albedo, normal and light passes), rendered for the same views
of Suzanne and of the example face; docs/formats/scene.md states the bounds asserted here.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from backend.dataset import gbuffer_from_exr
from backend.errors import DatasetError
from backend.tracer import TracedScene, get_tracer, load_scene
from backend.tracer.embree_tracer import disk_pattern
from backend.tracer.samples import trace_record
from conftest import ROOT, run_backend
from tracer_transcription import trace as transcribed_trace


def quad(z: float, half: float, normal=(0.0, 0.0, 1.0)) -> dict:
    """Two triangles of a square at height z facing +z, uv = (x, y) mapped to [0, 1]."""
    p = np.array([[-half, -half, z], [half, -half, z], [half, half, z], [-half, half, z]], np.float32)
    tris = np.array([[0, 1, 2], [0, 2, 3]], np.int32)
    uv = (p[:, :2] / (2 * half) + 0.5)[tris]
    return {"positions": p, "triangles": tris, "corner_uv": uv,
            "corner_normal": np.broadcast_to(np.array(normal, np.float32), (2, 3, 3)).copy()}


def merged(*meshes: dict) -> dict:
    offset, out = 0, {k: [] for k in meshes[0]}
    for mesh in meshes:
        for key, value in mesh.items():
            out[key].append(value + offset if key == "triangles" else value)
        offset += len(mesh["positions"])
    return {k: np.concatenate(v) for k, v in out.items()}


def camera_looking_down(height: float, focal_px: float, size: int) -> dict:
    """A camera at (0, 0, height) looking down -z (Blender's camera default orientation)."""
    matrix = np.eye(4)
    matrix[2, 3] = height
    return {"matrix_world": matrix.tolist(), "K": [[focal_px, 0, size / 2], [0, focal_px, size / 2], [0, 0, 1]],
            "position": [0.0, 0.0, height]}


def light(position, radius=0.0, power=100.0, colour=(1.0, 0.5, 0.25)) -> np.ndarray:
    return np.array([[*position, *colour, power, radius]], np.float32)


def ground_scene(**extra) -> TracedScene:
    albedo = np.zeros((8, 8, 3), np.float32)
    albedo[..., 0] = np.linspace(0, 1, 8)[None, :]  # red grows with u
    albedo[..., 1] = 0.5
    return TracedScene(**merged(quad(0.0, 1.0), *extra.get("occluders", [])), albedo=albedo)


def test_a_plane_from_above_gives_exact_coverage_uv_position_and_the_unshadowed_light_formula():
    scene = ground_scene()
    size = 32
    gbuffer = get_tracer(scene).trace(camera_looking_down(4.0, 40.0, size), light((0.5, 0.0, 2.0)), (size, size))
    covered = gbuffer.covered
    # The plane spans +-1 at distance 4 with focal 40 px: +-10 px around the centre.
    rows, cols = np.nonzero(covered)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (6, 25, 6, 25)
    x = (cols + 0.5 - size / 2) / 40 * 4
    np.testing.assert_allclose(gbuffer.position[0, rows, cols], x, atol=1e-5)
    np.testing.assert_allclose(gbuffer.uv[0, rows, cols], x / 2 + 0.5, atol=1e-5)
    np.testing.assert_allclose(gbuffer.normal[:, covered], np.array([[0], [0], [1]]) * np.ones(covered.sum()))
    p = gbuffer.position[:, covered]
    to_light = np.array([[0.5], [0.0], [2.0]]) - p
    d = np.linalg.norm(to_light, axis=0)
    expected = 100.0 * (to_light[2] / d) / (4 * math.pi**2 * d**2)
    np.testing.assert_allclose(gbuffer.light_pass(0)[:, covered], np.outer([1.0, 0.5, 0.25], expected), rtol=1e-4)
    assert gbuffer.focal_px == 40.0 and not gbuffer.planes[:, ~covered].any()


def test_albedo_is_the_baked_texture_read_bilinearly_at_the_uv():
    gbuffer = get_tracer(ground_scene()).trace(camera_looking_down(4.0, 40.0, 32), light((0, 0, 2)), (32, 32))
    covered = gbuffer.covered
    u = gbuffer.uv[0, covered]
    texel = np.clip(u * 8 - 0.5, 0, 7)  # the red channel is linear in the texel index
    np.testing.assert_allclose(gbuffer.albedo[0, covered], texel / 7, atol=1e-6)
    np.testing.assert_allclose(gbuffer.albedo[1, covered], 0.5)


def test_a_blocker_casts_a_hard_shadow_and_a_soft_one_half_covers_its_light_at_the_edge():
    # A blocker over x < 0 at height 1; the light straight above at height 2: the shadow edge is x = 0.
    blocker = quad(1.0, 1.0)
    blocker["positions"][:, 0] -= 1.0  # now spans x in [-2, 0]
    scene = ground_scene(occluders=[blocker])
    size = 64
    camera = camera_looking_down(0.5, 40.0, size)  # below the blocker, looking at the ground
    hard = get_tracer(scene).trace(camera, light((0, 0, 2)), (size, size))
    x = hard.position[0]
    lit = hard.light_pass(0).sum(0) > 0
    inside = hard.covered & (np.abs(x) < 0.5)
    assert np.array_equal(lit[inside], x[inside] > 0)
    # Radius 0.2: the penumbra is where the light's disk straddles the blocker's edge; right
    # under the edge (x = 0) exactly half of a symmetric stratified pattern is blocked.
    soft = get_tracer(scene, shadow_rays=16).trace(camera, light((0, 0, 2), radius=0.2), (size, size))
    unshadowed = get_tracer(ground_scene(), shadow_rays=16).trace(camera, light((0, 0, 2), radius=0.2), (size, size))
    ratio = soft.light_pass(0).sum(0)[inside] / unshadowed.light_pass(0).sum(0)[inside]
    xs = x[inside]
    assert ratio[xs < -0.25].max() == 0 and ratio[xs > 0.25].min() == 1
    edge = np.abs(xs) < 0.01
    assert edge.any() and np.all(np.abs(ratio[edge] - 0.5) <= 0.25)
    row = np.abs(hard.position[1][inside]) < 0.02  # one row of pixels across the edge
    assert np.all(np.diff(ratio[row][np.argsort(xs[row])]) >= -1e-6), "V must grow across the penumbra"
    again = get_tracer(scene, shadow_rays=16).trace(camera, light((0, 0, 2), radius=0.2), (size, size))
    assert np.array_equal(again.planes, soft.planes), "tracing is deterministic"


def uv_sphere(centre, radius: float, rings: int = 8, segments: int = 12) -> dict:
    """A coarse smooth-shaded UV sphere: its flat triangles lie well below the smooth surface, so the
    shadow terminator offset matters."""
    theta = np.linspace(0, np.pi, rings + 1)[1:-1]
    phi = np.linspace(0, 2 * np.pi, segments, endpoint=False)
    ring = np.stack([np.sin(theta)[:, None] * np.cos(phi), np.sin(theta)[:, None] * np.sin(phi),
                     np.cos(theta)[:, None] * np.ones_like(phi)], -1).reshape(-1, 3)
    unit = np.concatenate([[[0, 0, 1]], ring, [[0, 0, -1]]]).astype(np.float32)
    tris = []
    for s in range(segments):
        t = (s + 1) % segments
        tris.append([0, 1 + s, 1 + t])
        for r in range(rings - 3):
            a, b = 1 + r * segments, 1 + (r + 1) * segments
            tris += [[a + s, b + s, b + t], [a + s, b + t, a + t]]
        last = 1 + (rings - 2) * segments
        tris.append([len(unit) - 1, last - segments + t, last - segments + s])
    tris = np.array(tris, np.int32)
    uv = np.stack([np.arctan2(unit[:, 1], unit[:, 0]) / (2 * np.pi) + 0.5, unit[:, 2] * 0.5 + 0.5], -1)[tris]
    return {"positions": (unit * radius + np.asarray(centre, np.float32)).astype(np.float32), "triangles": tris,
            "corner_uv": uv.astype(np.float32), "corner_normal": unit[tris]}


def test_the_compiled_tracer_equals_the_whole_frame_numpy_transcription_of_the_recipe():
    rng = np.random.default_rng(3)
    scene = TracedScene(**merged(quad(0.0, 2.0), uv_sphere((0.2, -0.1, 0.6), 0.5, rings=6, segments=8)),
                        albedo=rng.uniform(0, 1, (16, 16, 3)).astype(np.float32))
    matrix = np.eye(4)
    angle = 0.9  # tilted towards +y about x: the ground, the sphere and its shadows in view
    matrix[:3, :3] = [[1, 0, 0], [0, math.cos(angle), -math.sin(angle)], [0, math.sin(angle), math.cos(angle)]]
    matrix[:3, 3] = [0.0, -2.6, 2.2]
    size = 96
    camera = {"matrix_world": matrix.tolist(), "K": [[96.0, 0, size / 2], [0, 96.0, size / 2], [0, 0, 1]],
              "position": matrix[:3, 3].tolist()}
    lights = np.concatenate([light((1.5, -1.0, 2.0), radius=0.3), light((-2.0, 0.5, 0.9), power=60.0, colour=(0.3, 1, 1))])
    tracer = get_tracer(scene, shadow_rays=16)
    traced = tracer.trace(camera, lights, (size, size)).planes
    expected = transcribed_trace(tracer, camera, lights, (size, size))
    covered = expected[0] > 0
    assert 0.3 < covered.mean() < 1 and (expected[12:].sum(0)[covered] == 0).any(), "a frame with shadows"
    penumbra = expected[12:15].sum(0) / np.maximum(expected[12:15].sum(0).max(), 1e-12)
    assert ((penumbra > 0.01) & (penumbra < 0.99)).any(), "and soft edges"
    np.testing.assert_allclose(traced, expected, rtol=1e-6, atol=1e-7)


def valley(half: float = 1.0, depth: float = 0.5) -> dict:
    """Two smooth-shaded slopes meeting in a concave crease along x (z = depth * |y| / half): the
    crease's vertex normals point straight up, so near it each slope's shading normal leans past its
    face normal, and a light can be in front of the one and behind the other's plane."""
    y = np.array([-half, 0.0, half], np.float32)
    p = np.array([[x, yy, depth * abs(yy) / half] for yy in y for x in (-half, half)], np.float32)
    tris = np.array([[0, 1, 3], [0, 3, 2], [2, 3, 5], [2, 5, 4]], np.int32)
    slope = depth / half
    up = np.array([0, 0, 1], np.float32)
    a = np.array([0, slope, 1], np.float32) / np.hypot(slope, 1)  # the y < 0 slope's face normal
    b = np.array([0, -slope, 1], np.float32) / np.hypot(slope, 1)
    vertex_normal = np.stack([a, a, up, up, b, b])
    uv = (p[:, :2] / (2 * half) + 0.5)[tris]
    return {"positions": p, "triangles": tris, "corner_uv": uv.astype(np.float32), "corner_normal": vertex_normal[tris]}


def test_a_concave_crease_lit_from_behind_its_face_plane_starts_its_shadow_rays_on_the_lights_side():
    scene = TracedScene(**valley(), albedo=np.full((4, 4, 3), 0.5, np.float32))
    elevation = math.radians(15)  # below the slopes' 26.6 degrees: behind the y < 0 slope's plane
    lights = light((0.0, -6 * math.cos(elevation), 6 * math.sin(elevation)), radius=0.05)
    camera = camera_looking_down(4.0, 48.0, 48)
    tracer = get_tracer(scene, shadow_rays=16)
    gbuffer = tracer.trace(camera, lights, (48, 48))
    expected = transcribed_trace(tracer, camera, lights, (48, 48))
    np.testing.assert_allclose(gbuffer.planes, expected, rtol=1e-6, atol=1e-7)
    # The pixels this is about: on the y < 0 slope (its face turned away from the light), near the
    # crease (the shading normal towards it), and lit: their rays leave the slope's back.
    behind = gbuffer.covered & (gbuffer.position[1] < 0) & (gbuffer.light_pass(0).sum(0) > 0)
    assert behind.sum() > 20


def test_the_disk_pattern_is_stratified_with_its_first_four_points_on_the_rim():
    pattern = disk_pattern(16)
    assert pattern.shape == (16, 2)
    np.testing.assert_allclose(np.linalg.norm(pattern[:4], axis=1), 1.0, atol=1e-6)
    assert np.all(np.linalg.norm(pattern, axis=1) <= 1 + 1e-6)
    np.testing.assert_allclose(pattern.mean(0), 0.0, atol=1e-6)  # symmetric: no bias towards one side
    with pytest.raises(ValueError, match="square"):
        disk_pattern(10)


def test_a_back_facing_hit_turns_its_normal_towards_the_camera():
    mesh = quad(0.0, 1.0, normal=(0.0, 0.0, -1.0))
    mesh["triangles"] = mesh["triangles"][:, ::-1].copy()  # wound the other way: its front faces -z
    mesh["corner_uv"] = mesh["corner_uv"][:, ::-1].copy()
    scene = TracedScene(**mesh, albedo=np.ones((2, 2, 3), np.float32))
    gbuffer = get_tracer(scene).trace(camera_looking_down(4.0, 40.0, 16), light((0, 0, 2)), (16, 16))
    assert np.allclose(gbuffer.normal[2, gbuffer.covered], 1.0)
    assert gbuffer.light_pass(0)[:, gbuffer.covered].min() > 0


def test_a_missing_or_foreign_scene_folder_is_refused_with_what_to_do(tmp_path):
    with pytest.raises(DatasetError, match="generate it again"):
        load_scene(tmp_path)
    (tmp_path / "scene").mkdir()
    (tmp_path / "scene" / "scene.json").write_text(json.dumps({"format": "other", "version": 1}))
    with pytest.raises(DatasetError, match="not a version 1 neural-face-scene"):
        load_scene(tmp_path)


REFERENCE = textwrap.dedent("""
    import json, sys
    sys.path.insert(0, sys.argv[1])
    import bpy
    from blender_addon.camera_model import CameraSpec
    from blender_addon.dataset_settings import DatasetSettings
    from blender_addon.gbuffer import render_gbuffer
    from blender_addon.render_rig import RenderRig
    from blender_addon.sampling import sample_view
    from blender_addon.scene_export import export_scene
    from blender_addon.scene_setup import bounds, ensure_material, find_target, load_scene_file
    scene_path, out, size, views = sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
    load_scene_file(scene_path)
    target = find_target(bpy.context.scene)
    ensure_material(target)
    settings = DatasetSettings(scene=scene_path, resolution=(size, size), samples=views, lights=(1, 2))
    centre, radius = bounds(target)
    records = []
    with RenderRig(target, (size, size)) as rig:
        export_scene(rig, out, 1024)
        for i in range(views):
            matrix, lights = sample_view(settings, centre, radius, i)
            record = render_gbuffer(rig, CameraSpec(matrix), lights, f"{out}/{i}.gbuffer.exr", 16, seed=i)
            records.append(record)
    json.dump(records, open(f"{out}/records.json", "w"))
""")


@pytest.fixture(scope="module")
def example_blend() -> Path:
    result = run_backend("example", timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    return ROOT / "example_scenes" / "cache" / "james.blend"


@pytest.mark.slow
@pytest.mark.parametrize("mesh", ["suzanne", "example face"])
def test_traced_gbuffers_agree_with_cycles_on_the_same_views(mesh, request, tmp_path):
    blend = request.getfixturevalue("suzanne_blend" if mesh == "suzanne" else "example_blend")
    size, views = (64, 4) if mesh == "suzanne" else (96, 3)
    result = subprocess.run([sys.executable, "-c", REFERENCE, str(ROOT), str(blend), str(tmp_path), str(size),
                             str(views)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    tracer = get_tracer(load_scene(tmp_path))
    extent = float(np.linalg.norm(np.ptp(tracer.scene.positions, axis=0)))
    light_differences = []
    for i, record in enumerate(json.loads((tmp_path / "records.json").read_text())):
        cycles = gbuffer_from_exr(tmp_path / f"{i}.gbuffer.exr", record)
        traced = trace_record(tracer, record)
        assert np.array_equal(cycles.covered, traced.covered), f"view {i}: coverage differs"
        both = cycles.covered
        assert np.abs(cycles.uv[:, both] - traced.uv[:, both]).max() < 1e-4
        assert np.abs(cycles.position[:, both] - traced.position[:, both]).max() < 1e-4 * extent
        normal_error = np.linalg.norm(cycles.normal[:, both] - traced.normal[:, both], axis=0)
        assert np.percentile(normal_error, 99) < 0.01
        view = np.asarray(record["camera"]["position"])[:, None] - traced.position[:, both]
        facing = (traced.normal[:, both] * view / np.linalg.norm(view, axis=0)).sum(0) > 0.8
        albedo_error = np.abs(cycles.albedo[:, both] - traced.albedo[:, both]).max(0)
        assert np.median(albedo_error[facing]) < 0.01
        for k in range(cycles.n_lights):
            reference, ours = cycles.light_pass(k)[:, both].sum(0), traced.light_pass(k)[:, both].sum(0)
            scale = max(reference.mean(), 1e-12)
            light_differences.append((np.median(np.abs(reference - ours)) / scale,
                                      np.abs(reference - ours).mean() / scale))
    medians, means = np.array(light_differences).T
    assert medians.max() < 0.05 and means.max() < 0.10, light_differences
