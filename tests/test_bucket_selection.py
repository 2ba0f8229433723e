"""A specialist survives only where it beats the shared network on the validation views."""

import numpy as np

from backend.bank import SHARED_SLOT_KEY, random_bank
from backend.bucket_selection import select_specialists
from backend.evaluation import View
from backend.features import N_FEATURES
from backend.hashing import gbuffer_tile_keys
from backend.renderers.torch_renderer import create
from backend.synthetic import sphere_gbuffer


def views_and_bank(seed: int):
    gbuffers = [sphere_gbuffer(64, 64, n_lights=2, seed=seed + i) for i in range(2)]
    keys = np.unique(np.concatenate([gbuffer_tile_keys(g).ravel() for g in gbuffers]))
    bank = random_bank(seed, keys[keys > 0], [N_FEATURES, 8, 3], fallback="shared_network")
    return gbuffers, bank


def test_buckets_that_lose_to_the_shared_network_get_its_weights():
    gbuffers, bank = views_and_bank(3)
    shared = bank.meta["slot_keys"].index(SHARED_SLOT_KEY)
    shared_only = random_bank(3, [], [N_FEATURES, 8, 3], fallback="shared_network")
    shared_only.slots[0] = bank.slots[shared]
    # The "ground truth" is what the shared network renders: every judged specialist loses.
    views = [View(i, g, create(shared_only).render(g)[..., :3]) for i, g in enumerate(gbuffers)]
    selection = select_specialists(bank, views, min_pixels=20)
    assert selection.judged > 0 and len(selection.replaced_keys) == selection.judged
    for key in selection.replaced_keys:
        np.testing.assert_array_equal(selection.bank.slots[bank.lut[key]], bank.slots[shared])
    kept = [k for k in bank.meta["slot_keys"] if k not in selection.replaced_keys and k != SHARED_SLOT_KEY]
    for key in kept:  # too few validation pixels to judge: untouched
        np.testing.assert_array_equal(selection.bank.slots[bank.lut[key]], bank.slots[bank.lut[key]])


def test_buckets_that_win_are_kept():
    gbuffers, bank = views_and_bank(4)
    # The "ground truth" is the bank's own frame: no specialist loses.
    views = [View(i, g, create(bank).render(g)[..., :3]) for i, g in enumerate(gbuffers)]
    selection = select_specialists(bank, views, min_pixels=20)
    assert selection.judged > 0 and selection.replaced_keys == []
    np.testing.assert_array_equal(selection.bank.slots, bank.slots)
