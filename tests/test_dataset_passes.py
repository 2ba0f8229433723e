"""The passes of a real Suzanne dataset make physical sense (real Cycles ground truth, traced G-buffers,
real EXR). The tracer's agreement with Cycles' own passes, light units included, is tests/test_tracer.py."""

from __future__ import annotations

import numpy as np
import pytest

from backend.dataset import open_dataset
from backend.errors import DatasetError
from blender_addon.camera_model import project


def covered_values(planes: np.ndarray, covered: np.ndarray) -> np.ndarray:
    return planes[:, covered]


def test_every_sample_loads_with_its_lights(suzanne_dataset):
    dataset = open_dataset(suzanne_dataset)
    assert dataset.labelled() == list(range(12)) and dataset.indices("unlabelled") == [12, 13, 14, 15]
    light_counts = {dataset.load_gbuffer(i).n_lights for i in dataset.labelled()}
    assert light_counts == {1, 2}
    assert sorted(sum(dataset.manifest["split"].values(), [])) == list(range(16))


def test_normals_unit_uv_in_range_albedo_plausible(suzanne_dataset):
    dataset = open_dataset(suzanne_dataset)
    for i in dataset.labelled():
        gbuffer = dataset.load_gbuffer(i)
        covered = gbuffer.covered
        assert covered.sum() > 200, f"sample {i}: the face should fill part of the frame"
        lengths = np.linalg.norm(covered_values(gbuffer.normal, covered), axis=0)
        np.testing.assert_allclose(lengths, 1.0, atol=1e-5)
        uv = covered_values(gbuffer.uv, covered)
        assert uv.min() >= 0.0 and uv.max() <= 1.0
        albedo = covered_values(gbuffer.albedo, covered)
        assert 0.05 < albedo.min() and albedo.max() <= 1.0


def test_mask_agrees_with_ground_truth_alpha(suzanne_dataset):
    dataset = open_dataset(suzanne_dataset)
    for i in dataset.labelled():
        covered = dataset.load_gbuffer(i).covered
        truth = dataset.load_ground_truth(i)
        disagree = int(((truth[3] > 0.5) != covered).sum())
        assert disagree <= 0.005 * covered.sum(), f"sample {i}: {disagree} pixels disagree"


def test_ground_truth_is_lit_where_the_lights_reach(suzanne_dataset):
    dataset = open_dataset(suzanne_dataset)
    for i in dataset.labelled():
        gbuffer, truth = dataset.load_gbuffer(i), dataset.load_ground_truth(i)
        assert truth[:3].min() >= -1e-4, f"sample {i}: negative radiance"
        assert np.all(truth[:, ~gbuffer.covered & (truth[3] == 0)] == 0), "empty film must be transparent black"
        lit = gbuffer.covered & (sum(gbuffer.light_pass(k).sum(axis=0) for k in range(gbuffer.n_lights)) > 0.05)
        assert np.median(truth[:3, lit].sum(axis=0)) > 0.005, f"sample {i}: lit skin renders black"


def test_world_position_projects_onto_pixel_centre(suzanne_dataset):
    dataset = open_dataset(suzanne_dataset)
    for i in dataset.labelled():
        gbuffer, camera = dataset.load_gbuffer(i), dataset.record(i)["camera"]
        rows, cols = np.nonzero(gbuffer.covered)
        pixels = project(camera["matrix_world"], camera["K"], gbuffer.position[:, rows, cols].T)
        error = np.abs(pixels - np.stack([cols + 0.5, rows + 0.5], axis=1))
        assert error.max() < 0.1, f"sample {i}: reprojection error {error.max():.3f} px"
        np.testing.assert_allclose(gbuffer.camera_position, np.array(camera["matrix_world"])[:3, 3], atol=1e-5)


def light_geometry(gbuffer, k: int):
    """Per-pixel signed height of light k above the tangent plane, distance, and cosine."""
    to_light = gbuffer.lights[k, :3, None, None] - gbuffer.position
    distance = np.linalg.norm(to_light, axis=0)
    height = (gbuffer.normal * to_light).sum(axis=0)
    return height, distance, height / np.maximum(distance, 1e-9)


def test_light_pass_is_zero_where_light_is_behind_surface(suzanne_dataset):
    dataset = open_dataset(suzanne_dataset)
    checked = 0
    for i in dataset.labelled():
        gbuffer = dataset.load_gbuffer(i)
        for k in range(gbuffer.n_lights):
            height, _, _ = light_geometry(gbuffer, k)
            behind = gbuffer.covered & (height < -gbuffer.lights[k, 7] - 1e-3)  # whole sphere below horizon
            assert np.all(gbuffer.light_pass(k)[:, behind] == 0)
            checked += int(behind.sum())
    assert checked > 100


def test_unlabelled_views_have_a_gbuffer_and_no_ground_truth(suzanne_dataset):
    dataset = open_dataset(suzanne_dataset)
    for i in dataset.indices("unlabelled"):
        record = dataset.record(i)
        assert record["ground_truth"] is None and not (suzanne_dataset / "samples" / f"{i:06d}.gt.exr").exists()
        assert dataset.load_gbuffer(i).covered.any()
        with pytest.raises(DatasetError, match="unlabelled view"):
            dataset.load_ground_truth(i)


def test_each_light_has_its_own_ground_truth_summing_to_the_combined_one(suzanne_dataset):
    """The combined ground truth is the sum of the light groups' passes (each denoised on its own),
    with the render's coverage as alpha; no light is black where it shines."""
    dataset = open_dataset(suzanne_dataset)
    for i in dataset.labelled():
        gbuffer, truth, lights = dataset.load_gbuffer(i), dataset.load_ground_truth(i), dataset.load_light_ground_truths(i)
        assert lights.shape == (gbuffer.n_lights, 3, 64, 64)
        assert lights.min() >= -1e-4, f"sample {i}: negative radiance"
        np.testing.assert_allclose(truth[:3], lights.sum(axis=0), rtol=1e-5, atol=1e-7, err_msg=f"sample {i}")
        face = truth[3] > 0.99
        assert np.mean(face == gbuffer.covered) > 0.97, f"sample {i}: alpha is not the film's coverage"
        for k in range(gbuffer.n_lights):
            lit = face & (gbuffer.light_pass(k).sum(axis=0) > 0.05)
            if lit.sum() > 20:
                assert np.median(lights[k][:, lit].sum(axis=0)) > 0.005, f"sample {i}: light {k} renders black"


BOTH_WAYS = """
import sys
sys.path.insert(0, sys.argv[1])
import bpy
from blender_addon.camera_model import CameraSpec
from blender_addon.ground_truth import render_ground_truth
from blender_addon.render_rig import RenderRig

bpy.ops.wm.open_mainfile(filepath=sys.argv[2], load_ui=False)
suzanne = next(o for o in bpy.data.objects if o.type == "MESH")
camera = CameraSpec([[1, 0, 0, 0], [0, 0, -1, -4], [0, 1, 0, 0], [0, 0, 0, 1]])
lights = [{"name": f"NF_Light_{k}", "type": "POINT", "position": p, "color": c, "power": 300.0, "radius": 0.2,
           "lightgroup": f"light{k}"} for k, (p, c) in enumerate([([2, -3, 2], [1, 0.9, 0.8]), ([-3, -2, 0], [0.6, 0.7, 1])])]
with RenderRig(suzanne, (64, 64)) as rig:
    for per_light, name in ((True, "lights.exr"), (False, "cycles.exr")):
        render_ground_truth(rig, camera, lights, f"{sys.argv[3]}/{name}", 32, denoise=True, seed=3, per_light=per_light)
"""


@pytest.mark.slow
def test_summed_light_passes_match_cycles_own_denoised_render(suzanne_blend, tmp_path):
    """The dataset's combined truth (each light's pass denoised, then summed) against Cycles' own
    denoiser on the combined pass of the same render (what "Compare with Cycles" shows)."""
    import subprocess
    import sys

    from backend.exr import read_parts
    from backend.metrics import psnr_from_mse, to_display
    from conftest import ROOT

    completed = subprocess.run([sys.executable, "-c", BOTH_WAYS, str(ROOT), str(suzanne_blend), str(tmp_path)],
                               capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    summed = read_parts(tmp_path / "lights.exr")["GroundTruth.Combined"]
    cycles = read_parts(tmp_path / "cycles.exr")["GroundTruth.Combined"]
    rgb = [np.stack([image[c] for c in "RGB"], axis=-1) for image in (summed, cycles)]
    face = (summed["A"] > 0.99) & (cycles["A"] > 0.99)
    assert face.sum() > 500
    np.testing.assert_array_equal(summed["A"] > 0.5, cycles["A"] > 0.5)
    psnr = psnr_from_mse(float(((to_display(rgb[0]) - to_display(rgb[1])) ** 2)[face].mean()))
    assert psnr > 38.0, f"summed per-light truth differs from Cycles' denoised render: {psnr:.1f} dB"
