"""A specialist survives only where it beats the shared network on the validation views, which must
show enough of its tiles to tell."""

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
    assert selection.judged > 0 and len(selection.lost_keys) == selection.judged
    specialists = [k for k in bank.meta["slot_keys"] if k != SHARED_SLOT_KEY]
    assert sorted(selection.replaced_keys) == sorted(specialists)  # the judged lost, the others are unjudged
    for key in specialists:
        np.testing.assert_array_equal(selection.bank.slots[bank.lut[key]], bank.slots[shared])


def test_buckets_that_win_are_kept():
    gbuffers, bank = views_and_bank(4)
    # The "ground truth" is the bank's own frame: no specialist loses.
    views = [View(i, g, create(bank).render(g)[..., :3]) for i, g in enumerate(gbuffers)]
    selection = select_specialists(bank, views, min_pixels=20)
    assert selection.judged > 0 and selection.lost_keys == []
    shared = bank.meta["slot_keys"].index(SHARED_SLOT_KEY)
    for slot, key in enumerate(bank.meta["slot_keys"]):
        expected = shared if key in selection.unjudged_keys else slot
        np.testing.assert_array_equal(selection.bank.slots[slot], bank.slots[expected])


def test_a_specialist_the_validation_views_barely_show_gets_the_shared_network_even_if_it_would_win():
    gbuffers, bank = views_and_bank(4)
    views = [View(i, g, create(bank).render(g)[..., :3]) for i, g in enumerate(gbuffers)]  # every specialist wins
    tiny = select_specialists(bank, views, min_pixels=20)
    unjudged = select_specialists(bank, views, min_pixels=10**9)  # no bucket has that many validation pixels
    assert tiny.judged > 0 and unjudged.judged == 0 and unjudged.lost_keys == []
    specialists = [k for k in bank.meta["slot_keys"] if k != SHARED_SLOT_KEY]
    assert sorted(unjudged.unjudged_keys) == sorted(specialists)
    shared = bank.meta["slot_keys"].index(SHARED_SLOT_KEY)
    assert all((unjudged.bank.slots[bank.lut[key]] == bank.slots[shared]).all() for key in specialists)
