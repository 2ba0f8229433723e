"""The warm start: every network begins as the teacher (KiloNeRF's distillation, then fine-tuning).

Each bucket then only learns how its patch of face differs from the teacher, which its few views
can tell it. `single_cost` starts the same way, so that it gets everything the hash bank gets, and
each kind then trains at its own measured best learning rate (backend.learning_rates).

How a source reaches a model:
- a source of the model's own layers is copied into every network ("copy");
- a neural-texture source of the same hidden widths is folded into plain networks ("fold",
  backend.neural_texture.folded_rows): each network gets the source with its texture input held at
  its mean over that network's own training pixels;
- a neural-texture model copies a neural-texture source of its shape, texture and all ("copy").
Anything else (single_params is wider than the teacher) starts at random and learns from the
teacher's labels only.
"""

from __future__ import annotations

import numpy as np
import torch

from backend.bank import Bank
from backend.model_kinds import NEURAL_TEXTURE
from backend.neural_texture import folded_rows, texture_fit

FOLD_AFFINE = False  # fold a neural-texture source as an affine function of UV per network, not its mean
# (measured: no better, docs/training.md)


def warm_start(model, problem, source: Bank, kind: str) -> str | None:
    """Load `source` into `model` (a StackedMLP or NeuralTextureModel of `kind`); returns how, or None."""
    if kind == NEURAL_TEXTURE:
        if source.kind != NEURAL_TEXTURE or source.layers != problem.layers or \
                tuple(source.texture.shape) != tuple(model.texture.shape):
            return None
        model.mlp.load_rows(source.slots[:1])
        with torch.no_grad():
            model.texture.copy_(torch.from_numpy(np.asarray(source.texture)))
        return "copy"
    if source.kind == NEURAL_TEXTURE:
        if source.layers[1:] != problem.layers[1:]:
            return None
        model.load_rows(folded_rows(source, fitted_texture(problem, source)))
        return "fold"
    if source.layers == problem.layers:
        model.load_rows(np.broadcast_to(source.slots[0], (len(problem.slot_keys), source.slots.shape[1])))
        return "copy"
    return None


def fitted_texture(problem, source: Bank) -> np.ndarray:
    """[R, 3, C]: the source's texture as an affine function of UV over each network's training pixels."""
    return texture_fit(source.texture, problem.features[:, 0, :2].cpu(), problem.feature_mean[:2],
                       problem.feature_std[:2], problem.start, problem.count, affine=FOLD_AFFINE)
