"""The warm start: every network begins as the teacher (KiloNeRF's distillation, then fine-tuning).

Each bucket then only learns how its patch of face differs from the teacher, which its few views
can tell it. `single_cost` starts the same way, so that it gets everything the hash bank gets, and
each kind then trains at its own measured best learning rate (backend.learning_rates).

How a source reaches a model:
- a source of the model's own layers is copied into every network ("copy");
- a neural-texture source of the same hidden widths is folded into plain networks ("fold",
  backend.neural_texture.folded_rows): each network gets the source with its texture input held at
  its mean over that network's own training pixels;
- a neural-texture model copies a neural-texture source of its shape, texture and all ("copy");
- a plain model of the same depth whose hidden layers are at least as wide as the source's (the
  `single_cost` that matches a blended bank's cost, `single_params`) gets the source widened
  ("copy+widen", "fold+widen"): each extra hidden unit keeps its random incoming weights and feeds
  the next layer with zero weights, so the network starts as the source's exact function and its
  extra units start learning at once.
Anything else starts at random and learns from the teacher's labels only.
"""

from __future__ import annotations

import numpy as np
import torch

from backend.bank import Bank, pack, unpack
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
    folds = source.kind == NEURAL_TEXTURE  # folded, the texture's inputs are gone: the model's inputs remain
    plain = [problem.layers[0], *source.layers[1:]] if folds else source.layers
    if not _widens(plain, problem.layers):
        return None
    if folds:
        rows, how = folded_rows(source, fitted_texture(problem, source)), "fold"
    else:
        rows, how = np.broadcast_to(source.slots[0], (len(problem.slot_keys), source.slots.shape[1])), "copy"
    if plain != problem.layers:
        rows, how = widened_rows(rows, plain, model.slot_rows(), problem.layers), how + "+widen"
    model.load_rows(rows)
    return how


def _widens(source_layers: list[int], layers: list[int]) -> bool:
    """Whether a network of source_layers embeds in one of `layers`: same inputs, outputs and depth,
    hidden layers at least as wide."""
    return (len(source_layers) == len(layers) and source_layers[0] == layers[0] and source_layers[-1] == layers[-1]
            and all(s <= w for s, w in zip(source_layers[1:-1], layers[1:-1])))


def widened_rows(rows: np.ndarray, source_layers: list[int], initial: np.ndarray, layers: list[int]) -> np.ndarray:
    """Rows [R, P] of networks of `layers` computing what `rows` (of source_layers) compute: the
    source's weights in each layer's first units, `initial`'s (the model's random start) in the
    rest, and zero weights from every extra unit into the next layer."""
    out = [(w.copy(), b.copy()) for w, b in unpack(np.array(initial, dtype=np.float32), layers)]
    for (w, b), (sw, sb) in zip(out, unpack(np.asarray(rows, dtype=np.float32), source_layers)):
        n_in, n_out = sw.shape[-2:]
        w[:, n_in:, :] = 0.0  # the extra units of the layer below add nothing yet
        w[:, :n_in, :n_out] = sw
        b[:, :n_out] = sb
    return pack(out)


def fitted_texture(problem, source: Bank) -> np.ndarray:
    """[R, 3, C]: the source's texture as an affine function of UV over each network's training pixels."""
    return texture_fit(source.texture, problem.features[:, 0, :2].cpu(), problem.feature_mean[:2],
                       problem.feature_std[:2], problem.start, problem.count, affine=FOLD_AFFINE)
