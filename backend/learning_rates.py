"""Each model kind's learning rate: `--lr` (the hash bank's) times a factor measured per kind.

A fair comparison gives every model its own best rate, so the factors below come from sweeps on
the demo face and a second mesh (docs/training.md, "Local input frames and the warm start's
learning rate" and "The teacher's learning rate"). The cosine schedule (training.Trainer.schedule)
decays whichever rate a kind starts from.
"""

from __future__ import annotations

from backend.model_kinds import HASH_BANK, NEURAL_TEXTURE, SINGLE_COST, SINGLE_PARAMS

# From a random start. The neural texture (the default teacher) learns a whole UV texture from
# every pixel: each texel sees few gradients per step, so it gains up to 4x the networks' rate
# (test PSNR 33.82 / 34.30 / 34.65 / 34.88 dB at 2.5e-3 / 5e-3 / 1e-2 / 2e-2, 6000 steps).
FROM_SCRATCH_LR_SCALE = {HASH_BANK: 1.0, SINGLE_COST: 1.0, SINGLE_PARAMS: 1.0, NEURAL_TEXTURE: 4.0}

# From a warm start (backend.warm_start), relative to the same --lr, not to the teacher's own rate:
# a specialist starts from the teacher folded over its own patch, near what its few views can tell
# it, and overfits them at higher rates; one network starts from the teacher with its texture input
# held at the whole face's mean, far from its best, and gains from rates about 3x. single_params
# starts from the teacher widened to its 226-256 units (whose extra units start silent): validation
# PSNR at 3.2 / 2 / 1 / 0.5 / 0.25 / 0.125 of --lr, demo (2.25 min) 33.99 / - / 34.27 / 34.38 / 34.47 / -,
# second mesh (2000 steps) 29.90 / 29.94 / 30.33 / 30.69 / 30.81 / 30.40 (docs/training.md). The
# neural texture (a copy of a source of its own shape, which only needs fine-tuning) was not swept.
WARM_START_LR_SCALE = {HASH_BANK: 1.0, SINGLE_COST: 3.2, SINGLE_PARAMS: 0.25, NEURAL_TEXTURE: 0.2}


def learning_rate(lr: float, kind: str, warm: bool) -> float:
    """The peak learning rate of a model of `kind` for `--lr`, started warm or at random."""
    return lr * (WARM_START_LR_SCALE if warm else FROM_SCRATCH_LR_SCALE)[kind]


def lr_scales(kind: str) -> tuple[float, float]:
    """(from scratch, warm) factors of `kind`: part of a run's fingerprint, so that a teacher or
    checkpoint trained at other rates is not reused."""
    return FROM_SCRATCH_LR_SCALE[kind], WARM_START_LR_SCALE[kind]
