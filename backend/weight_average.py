"""An exponential moving average of a model's weights: what validation scores and the bank keeps.

Adam's last steps leave every network a little off its minimum in the direction of its last few
batches. Averaging the weights over the last thousand or so steps (tiny-cuda-nn's and
instant-ngp's EMA) cancels that noise; a small network that sees each of its pixels hundreds of
times gains most, and so does a specialist of tens of views (docs/training.md, "The weights'
moving average"). Training steps the raw weights; the average is swapped in while the model is
validated, so the best-on-validation weights, each network's own best and the bank are averages.

The decay is debiased as in TensorFlow's ExponentialMovingAverage: at step t it is
min(decay, (1 + t) / (10 + t)), so a run of a few dozen steps averages over its own steps instead
of staying near where it started.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch

EMA_DECAY = 0.999  # per step: the average spans about the last thousand steps


class WeightAverage:
    """The moving average of `model.params` (a ParameterSnapshots model), or nothing when decay is 0."""

    def __init__(self, model, decay: float, saved: list[torch.Tensor] | None = None):
        """saved: the average a checkpoint kept (loaded onto the CPU), moved to the model's device."""
        self.model, self.decay = model, decay
        self.average = None
        if decay:
            self.average = model.state() if saved is None else [a.to(p.device) for a, p in zip(saved, model.params)]

    def update(self, step: int) -> None:
        """Fold in the weights after training step `step` (1 for the first)."""
        if self.average is None:
            return
        weight = 1.0 - min(self.decay, (1.0 + step) / (10.0 + step))
        with torch.no_grad():
            for average, param in zip(self.average, self.model.params):
                average.lerp_(param, weight)

    def state(self) -> list[torch.Tensor] | None:
        return None if self.average is None else [a.clone() for a in self.average]

    @contextmanager
    def applied(self):
        """The model holds the averaged weights inside, its own training weights again after."""
        if self.average is None:
            yield
            return
        trained = self.model.state()
        self.model.load_state(self.average)
        try:
            yield
        finally:
            self.model.load_state(trained)
