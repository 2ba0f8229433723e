"""Each network keeps its weights of the validation at which its own validation pixels were shaded best."""

import numpy as np

from backend.bank import make_bank, random_bank
from backend.bucket_selection import MIN_VALIDATION_PIXELS, squared_error_per_slot
from backend.early_stopping import NetworkBests
from backend.evaluation import View, pixel_errors, render_views
from backend.features import N_FEATURES
from backend.hashing import gbuffer_tile_keys
from backend.renderers.torch_renderer import create
from backend.synthetic import sphere_gbuffer


def test_every_judged_network_keeps_its_own_best_validation():
    gbuffers = [sphere_gbuffer(128, 128, n_lights=2, seed=i) for i in range(2)]
    keys = np.unique(np.concatenate([gbuffer_tile_keys(g, 16, 4).ravel() for g in gbuffers]))
    right = random_bank(0, keys[keys > 0], [N_FEATURES, 8, 3], bins=4)
    wrong = random_bank(1, keys[keys > 0], [N_FEATURES, 8, 3], bins=4)
    views = [View(i, g, create(right).render(g)[..., :3]) for i, g in enumerate(gbuffers)]  # right is the truth
    even = np.arange(right.n_slots) % 2 == 0
    # Validation 1: the even networks are right; validation 2: the odd ones. Each is best at its own step.
    first = np.where(even[:, None], right.slots, wrong.slots)
    second = np.where(even[:, None], wrong.slots, right.slots)
    bests = NetworkBests.empty(wrong.slots)
    for step, rows in ((1, first), (2, second)):
        bank = make_bank(rows, right.feature_mean, right.feature_std, right.meta)
        bests.update(bank, pixel_errors(render_views(bank, views), views), views, step)
    _, pixels = squared_error_per_slot(right, pixel_errors(render_views(right, views), views), views)
    judged = pixels >= MIN_VALIDATION_PIXELS
    assert judged.sum() >= 4 and (~judged).any(), "the views must give some networks too few pixels to judge"
    np.testing.assert_array_equal(bests.step[judged], np.where(even, 1, 2)[judged])
    overall = np.zeros_like(right.slots)
    rows, n_judged = bests.combined(overall)
    assert n_judged == judged.sum()
    np.testing.assert_array_equal(rows[judged], right.slots[judged])
    np.testing.assert_array_equal(rows[~judged], overall[~judged])  # unjudged: the bank's overall best
