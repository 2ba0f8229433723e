"""Features against a per-pixel transcription of gbuffer.md section 2."""

import math

import numpy as np
import torch

from backend.features import FEATURE_NAMES, N_FEATURES, compute_features, light_scale, shading_inputs
from backend.synthetic import sphere_gbuffer


def normalize(x):
    return x / max(np.linalg.norm(x), 1e-12)


def reference_pixel(g, i, j, k):
    p = g.position[:, i, j].astype(np.float64)
    n = normalize(g.normal[:, i, j].astype(np.float64))
    v = normalize(g.camera_position - p)
    q, rgb, power = g.lights[k, :3], g.lights[k, 3:6], g.lights[k, 6]
    d = max(np.linalg.norm(q - p), 1e-6)
    l = (q - p) / d
    h = normalize(l + v)
    scale = power / (4 * math.pi**2 * d**2)
    visibility = g.light_pass(k)[:, i, j].sum() / max(rgb.sum() * scale, 1e-12)
    return np.array([g.uv[0, i, j], g.uv[1, i, j], *n, *v, *l, n @ l, n @ v, n @ h, visibility, *g.albedo[:, i, j]]), scale


def test_matches_reference_per_pixel_with_several_lights():
    g = sphere_gbuffer(24, 30, n_lights=3, seed=4)
    features, factor = shading_inputs(g)
    assert features.shape == (3, 24, 30, N_FEATURES) and features.dtype == torch.float32
    assert len(FEATURE_NAMES) == N_FEATURES == 18
    ys, xs = np.nonzero(g.covered)
    for i, j in list(zip(ys, xs))[::37]:
        for k in range(3):
            expected, scale = reference_pixel(g, i, j, k)
            np.testing.assert_allclose(features[k, i, j].numpy(), expected, rtol=1e-5, atol=1e-5)
            np.testing.assert_allclose(factor[k, i, j].numpy(), scale * g.lights[k, 3:6], rtol=1e-5)
            assert np.isclose(light_scale(g)[k, i, j].item(), scale, rtol=1e-5)


def test_visibility_is_n_dot_l_without_shadows():
    g = sphere_gbuffer(32, 32, n_lights=2, seed=5)
    features = compute_features(g).numpy()[:, g.covered]
    np.testing.assert_allclose(features[..., 14], np.clip(features[..., 11], 0, None), atol=1e-4)


def test_uncovered_pixels_are_zero_even_when_nan():
    g = sphere_gbuffer(16, 16)
    g.planes[3:, ~g.covered] = np.nan
    features = compute_features(g)
    assert torch.isfinite(features).all()
    assert (features[:, torch.from_numpy(~g.covered)] == 0).all()
