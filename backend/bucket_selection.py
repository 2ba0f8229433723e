"""Keep a specialist only where it beats the shared network on held-out views (bank.md "Selection").

A bucket's network sees its patch of face under the few lights of the training views that show
it, so it can fit those views and still lose to the shared network (trained on every pixel) on a
new view. After training, every tile of the validation views is shaded by both; a bucket whose
network has the larger squared error over its validation pixels gets the shared network's
weights in its slot. The test views are never looked at.

A bucket with fewer than `min_pixels` validation pixels cannot be judged, and it gets the shared
network too: such a network learnt from a patch the validation views barely show, so nothing
checks it, and where it meets an input its few views never had it can be badly wrong (on the
second mesh, one such network shaded 256 unlit pixels as lit, 24 dB worse than one network,
and cost the whole bank 0.2 dB; docs/training.md, "Specialists nothing can check").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from backend.bank import SHARED_SLOT_KEY, Bank, make_bank
from backend.evaluation import View, pixel_errors, render_views
from backend.model_kinds import HASH_BANK

MIN_VALIDATION_PIXELS = 256


@dataclass
class Selection:
    bank: Bank
    lost_keys: list[int]  # judged buckets whose network lost to the shared network: their slot now holds it
    unjudged_keys: list[int]  # buckets with too few validation pixels to be judged: their slot holds it too
    judged: int  # buckets with enough validation pixels to be compared

    @property
    def replaced_keys(self) -> list[int]:
        return self.lost_keys + self.unjudged_keys


def squared_error_per_slot(bank: Bank, errors: list[np.ndarray], views: list[View]) -> tuple[np.ndarray, np.ndarray]:
    """(sum of squared display error, pixel count) per slot over the views' covered pixels, from
    their pixel_errors (backend.evaluation)."""
    squared, counts = np.zeros(bank.n_slots), np.zeros(bank.n_slots, dtype=np.int64)
    for view, error in zip(views, errors):
        keys, tile = view.pixel_tiles(bank.tile_size, bank.bins)
        slots = bank.slot_of_keys(keys).reshape(-1)[tile]
        covered = slots >= 0  # pixels of tiles without a slot count for no network
        squared += np.bincount(slots[covered], weights=error[covered], minlength=bank.n_slots)
        counts += np.bincount(slots[covered], minlength=bank.n_slots)
    return squared, counts


def select_specialists(bank: Bank, views: list[View], device="cpu", min_pixels: int = MIN_VALIDATION_PIXELS) -> Selection:
    """The bank with every bucket that loses to the shared network on `views` replaced by it."""
    slot_keys = bank.meta["slot_keys"]
    if bank.kind != HASH_BANK or SHARED_SLOT_KEY not in slot_keys:
        return Selection(bank, [], [], 0)
    shared = slot_keys.index(SHARED_SLOT_KEY)
    shared_only = make_bank(bank.slots, bank.feature_mean, bank.feature_std, bank.meta)
    shared_only.lut = np.where(bank.lut >= 0, shared, -1).astype(np.int32)
    own_error, counts = squared_error_per_slot(bank, pixel_errors(render_views(bank, views, device), views), views)
    # The shared-only frames, binned by the slot each pixel's tile has in the bank.
    shared_error, _ = squared_error_per_slot(bank, pixel_errors(render_views(shared_only, views, device), views),
                                             views)
    judged = [s for s in range(bank.n_slots) if s != shared and counts[s] >= min_pixels]
    unjudged = [s for s in range(bank.n_slots) if s != shared and counts[s] < min_pixels]
    losers = [s for s in judged if shared_error[s] < own_error[s]]
    slots = bank.slots.copy()
    slots[losers + unjudged] = bank.slots[shared]
    return Selection(make_bank(slots, bank.feature_mean, bank.feature_std, bank.meta),
                     [int(slot_keys[s]) for s in losers], [int(slot_keys[s]) for s in unjudged], len(judged))
