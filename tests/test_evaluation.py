"""Validation scoring: repeated views shaded from their kept weight-independent work give the frames
a fresh render gives, and the pooled PSNR is the plain one."""

import numpy as np

from backend.bank import make_bank, random_bank
from backend.evaluation import RepeatedViews, View, pixel_errors, pooled_psnr, render_views
from backend.features import N_FEATURES
from backend.hashing import gbuffer_tile_keys
from backend.metrics import paired_gain_interval, psnr_from_mse, to_display
from backend.synthetic import sphere_gbuffer
from tests.test_neural_texture import texture_bank


def views_of(gbuffers, seed=0):
    rng = np.random.default_rng(seed)
    return [View(i, g, rng.uniform(0, 0.6, (g.height, g.width, 3)).astype(np.float32)) for i, g in enumerate(gbuffers)]


def test_repeated_views_match_fresh_renders_as_weights_and_layouts_change():
    gbuffers = [sphere_gbuffer(96, 80, n_lights=2, seed=1), sphere_gbuffer(64, 64, n_lights=1, seed=2)]
    views = views_of(gbuffers)
    keys = np.unique(np.concatenate([gbuffer_tile_keys(g).ravel() for g in gbuffers]))
    first = random_bank(3, keys[keys > 0], [N_FEATURES, 16, 12, 3], border_blend=2)
    retrained = make_bank(random_bank(4, keys[keys > 0], [N_FEATURES, 16, 12, 3]).slots, first.feature_mean,
                          first.feature_std, first.meta)  # new weights, the same layout
    other_layout = random_bank(5, keys[keys > 0][::2], [N_FEATURES, 16, 12, 3])
    repeated = RepeatedViews(views)
    for bank in (first, retrained, other_layout, first):
        for kept, fresh in zip(repeated.render(bank), render_views(bank, views)):
            np.testing.assert_array_equal(kept, fresh)
    # A different texture of the same neural-texture layout
    for bank in (texture_bank(0), texture_bank(0, texture=np.zeros((4, 8, 8), np.float32))):
        for kept, fresh in zip(repeated.render(bank), render_views(bank, views)):
            np.testing.assert_array_equal(kept, fresh)


def test_pooled_psnr_is_one_mse_over_every_covered_pixel_and_channel():
    views = views_of([sphere_gbuffer(48, 48, seed=3), sphere_gbuffer(32, 64, seed=4)], seed=1)
    frames = [np.clip(v.ground_truth + 0.05, 0, 1) for v in views]
    diff = np.concatenate([(to_display(f) - to_display(v.ground_truth))[v.mask].ravel() for f, v in zip(frames, views)])
    assert abs(pooled_psnr(frames, views) - psnr_from_mse(float(np.mean(diff.astype(np.float64) ** 2)))) < 1e-9
    assert [e.shape for e in pixel_errors(frames, views)] == [(int(v.mask.sum()),) for v in views]


def test_the_gain_interval_is_students_t_over_the_paired_views():
    """Per-view gains 1, 2, 3 dB: mean 2, standard error 1 / sqrt(3), t(0.975, 2 dof) = 4.303."""
    mean, low, high = paired_gain_interval([31.0, 32.0, 33.0], [30.0, 30.0, 30.0])
    assert mean == 2.0
    np.testing.assert_allclose([low, high], [2.0 - 4.3027 / 3**0.5, 2.0 + 4.3027 / 3**0.5], atol=1e-3)
    # The same spread over more views pins the mean down more tightly; a constant gain exactly.
    wide = high - low
    _, low, high = paired_gain_interval(np.tile([31.0, 32.0, 33.0], 10), np.full(30, 30.0))
    assert high - low < wide / 4
    assert paired_gain_interval([31.0, 32.0], [30.5, 31.5]) == (0.5, 0.5, 0.5)
