"""Features against a per-pixel transcription of gbuffer.md section 2."""

import math

import numpy as np
import torch

from backend.features import FEATURE_NAMES, N_FEATURES, compute_features, light_scale, shading_inputs
from backend.prefilter import FilterRadii, filtered_planes
from backend.synthetic import sphere_gbuffer

RADII = FilterRadii((0.05, 0.15), 0.05)


def normalize(x):
    return x / max(np.linalg.norm(x), 1e-12)


def reference_pixel(g, i, j, k, filtered):
    p = g.position[:, i, j].astype(np.float64)
    n = normalize(g.normal[:, i, j].astype(np.float64))
    v = normalize(g.camera_position - p)
    q, rgb, power = g.lights[k, :3], g.lights[k, 3:6], g.lights[k, 6]
    d = max(np.linalg.norm(q - p), 1e-6)
    l = (q - p) / d
    h = normalize(l + v)
    scale = power / (4 * math.pi**2 * d**2)
    visibility = g.light_pass(k)[:, i, j].sum() / max(rgb.sum() * scale, 1e-12)
    wide = [*filtered[3 + 2 * k : 5 + 2 * k, i, j], *filtered[0:3, i, j]]
    return np.array([g.uv[0, i, j], g.uv[1, i, j], *n, *v, *l, n @ l, n @ v, n @ h, visibility, *g.albedo[:, i, j],
                     *wide]), scale


def test_matches_reference_per_pixel_with_several_lights():
    g = sphere_gbuffer(24, 30, n_lights=3, seed=4)
    features, factor = shading_inputs(g, RADII)
    filtered = filtered_planes(g, RADII).numpy()
    assert features.shape == (3, 24, 30, N_FEATURES) and features.dtype == torch.float32
    assert len(FEATURE_NAMES) == N_FEATURES == 23
    ys, xs = np.nonzero(g.covered)
    for i, j in list(zip(ys, xs))[::37]:
        for k in range(3):
            expected, scale = reference_pixel(g, i, j, k, filtered)
            np.testing.assert_allclose(features[k, i, j].numpy(), expected, rtol=1e-5, atol=1e-5)
            np.testing.assert_allclose(factor[k, i, j].numpy(), scale * g.lights[k, 3:6], rtol=1e-5)
            assert np.isclose(light_scale(g)[k, i, j].item(), scale, rtol=1e-5)


def test_visibility_is_n_dot_l_without_shadows():
    g = sphere_gbuffer(32, 32, n_lights=2, seed=5)
    features = compute_features(g, RADII).numpy()[:, g.covered]
    np.testing.assert_allclose(features[..., 14], np.clip(features[..., 11], 0, None), atol=1e-4)


def test_uncovered_pixels_are_zero_even_when_nan():
    g = sphere_gbuffer(16, 16)
    g.planes[3:, ~g.covered] = np.nan
    features = compute_features(g, RADII)
    assert torch.isfinite(features).all()
    assert (features[:, torch.from_numpy(~g.covered)] == 0).all()


def flat_plane_gbuffer(size: int, distance: float, shadow_column: int | None = None):
    """A plane z = 0 seen straight on from z = distance (1 px = distance / focal units), one light
    overhead; left of shadow_column the light is blocked (a hard shadow edge)."""
    from backend.gbuffer import GBuffer

    focal = float(size)
    rows, cols = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    x = (cols + 0.5 - size / 2) * distance / focal
    y = (size / 2 - rows - 0.5) * distance / focal
    ones, zeros = np.ones((size, size)), np.zeros((size, size))
    light = np.array([0, 0, 1e3, 1, 1, 1, 4 * math.pi**2 * 1e6, 0], dtype=np.float32)  # light_scale = 1 at z=0
    lit = ones if shadow_column is None else (cols >= shadow_column).astype(float)
    planes = np.stack([ones, cols / size, rows / size, zeros, zeros, ones, x, y, zeros, 0.2 + 0.6 * (cols % 2),
                       0.5 * ones, 0.5 * ones, lit, lit, lit]).astype(np.float32)
    return GBuffer(planes, light[None], np.array([0, 0, distance]), focal_px=focal)


def test_wide_visibility_is_the_shadow_edge_blurred_at_the_world_radius():
    from scipy.stats import norm

    g = flat_plane_gbuffer(96, distance=4.0, shadow_column=48)
    radii = FilterRadii((0.1, 0.2), 0.1)
    filtered = filtered_planes(g, radii).numpy()
    row = 48
    for plane, radius in ((3, 0.1), (4, 0.2)):
        sigma_px = radius * g.focal_px / 4.0  # 2.4 and 4.8 px; the light sits straight above the plane
        cols = np.arange(30, 66)
        expected = norm.cdf((cols - 47.5) / sigma_px)
        np.testing.assert_allclose(filtered[plane, row, cols], expected, atol=0.03)


def test_prefilter_is_the_same_in_world_units_at_any_resolution():
    radii = FilterRadii((0.1, 0.2), 0.1)
    low = filtered_planes(flat_plane_gbuffer(64, 4.0, shadow_column=32), radii).numpy()
    high = filtered_planes(flat_plane_gbuffer(128, 4.0, shadow_column=64), radii).numpy()
    high_at_low = high.reshape(high.shape[0], 64, 2, 64, 2).mean(axis=(2, 4))  # the same world points
    np.testing.assert_allclose(high_at_low[:, 8:56, 8:56], low[:, 8:56, 8:56], atol=0.03)


def test_prefilter_sees_only_covered_pixels():
    g = sphere_gbuffer(40, 40, n_lights=2, seed=3)
    clean = filtered_planes(g, RADII).numpy()
    g.planes[1:, ~g.covered] = np.nan  # whatever the background holds must not leak in
    g.planes[9:12, ~g.covered] = 0
    dirty = filtered_planes(g, RADII).numpy()
    np.testing.assert_array_equal(dirty, clean)
    assert (clean[:, ~g.covered] == 0).all()
    g.planes[9:12, g.covered] = 0.37  # a constant albedo stays constant up to the silhouette
    np.testing.assert_allclose(filtered_planes(g, RADII).numpy()[0:3, g.covered], 0.37, rtol=1e-5)


def test_covered_inputs_are_the_frames_at_the_covered_pixels():
    from backend.features import covered_shading_inputs

    g = sphere_gbuffer(30, 26, n_lights=2, seed=6)
    features, factor = shading_inputs(g, RADII)
    covered = torch.from_numpy(g.covered)
    x, f = covered_shading_inputs(g, RADII)
    assert x.shape == (int(covered.sum()), 2, N_FEATURES) and f.shape == (int(covered.sum()), 2, 3)
    np.testing.assert_array_equal(x.numpy(), features[:, covered].transpose(0, 1).numpy())
    np.testing.assert_array_equal(f.numpy(), factor[:, covered].transpose(0, 1).numpy())
