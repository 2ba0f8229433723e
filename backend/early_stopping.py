"""Early stopping per network: every bucket keeps the weights at which *its own* validation pixels
were shaded best (the issue's lever 3: stop each bucket early on that bucket's own validation pixels).

One early stop for the whole bank keeps the step at which the bank scored best on average, but
buckets learn at different speeds: a large bucket may still improve while a small one already
fits its few views too closely. At every validation, each slot's squared display error over the
validation pixels that its tiles route to it is compared with its best so far, and the slot's
weights are kept when it improved. At the end every slot that could be judged gets its own best
weights; a slot with fewer than MIN_VALIDATION_PIXELS validation pixels keeps the bank's overall
best. Each network is still chosen on its own pixels only, so the buckets stay independent.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from backend.bank import Bank
from backend.bucket_selection import MIN_VALIDATION_PIXELS, squared_error_per_slot
from backend.evaluation import View


@dataclass
class NetworkBests:
    """Per network (in the model's order): its least validation error so far, and its weights then."""

    error: np.ndarray  # [R] mean squared display error per validation pixel; inf until judged
    pixels: np.ndarray  # [R] validation pixels routed to the network
    step: np.ndarray  # [R] the step of the best
    rows: np.ndarray  # [R, P] packed weights at the best

    @classmethod
    def empty(cls, rows: np.ndarray) -> "NetworkBests":
        n = rows.shape[0]
        return cls(np.full(n, np.inf), np.zeros(n, np.int64), np.zeros(n, np.int64), rows.copy())

    def update(self, bank: Bank, errors: list[np.ndarray], views: list[View], step: int) -> None:
        """Score this validation of `bank` (whose slots are the model's first networks) per slot, from its
        frames' pixel_errors (backend.evaluation), and keep the slots' weights where they improved."""
        squared, pixels = squared_error_per_slot(bank, errors, views)
        n = len(squared)
        error = np.where(pixels > 0, squared / np.maximum(pixels, 1), np.inf)
        better = np.flatnonzero(error < self.error[:n])
        self.error[better], self.step[better], self.rows[better] = error[better], step, bank.slots[better]
        self.pixels[:n] = pixels

    def combined(self, overall: np.ndarray) -> tuple[np.ndarray, int]:
        """`overall` (the bank's best weights) with every judged network's own best; and how many were judged."""
        judged = self.pixels >= MIN_VALIDATION_PIXELS
        rows = overall.copy()
        rows[judged] = self.rows[judged]
        return rows, int(judged.sum())
