"""Each specialist's own input frame (KiloNeRF's local coordinates, for every input).

A bucket sees a small patch of face: over its pixels most inputs span a fraction of their range
over the whole face, so a network started from the teacher, in the bank's global normalisation,
needs large weight changes to vary across its own patch. Network r instead trains on
(x - shift[r]) / scale[r], x normalised over its own training pixels; the frame is folded into
its first layer whenever rows leave the model (backend.stacked_mlp), so the bank, the renderers
and the kernel never see it. For Adam this is a first-layer step size of lr / scale per input.
"""

from __future__ import annotations

import torch

SCALE_FLOOR = 0.1  # an input that barely varies over a bucket is magnified at most 10x
SAMPLE_ROWS = 65536  # rows per network used for the statistics (evenly spaced: deterministic)


def local_frames(features: torch.Tensor, factor: torch.Tensor, start: torch.Tensor, count: torch.Tensor,
                 shared: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """(shift [R, F], scale [R, F]) of R networks reading rows start[r] : start[r] + count[r] of the
    globally normalised features [N, L, F]; networks in `shared` (fed the whole face) keep (0, 1)."""
    n_networks, n_features = len(start), features.shape[-1]
    shift = torch.zeros(n_networks, n_features)
    scale = torch.ones(n_networks, n_features)
    for r in range(n_networks):
        if r in shared or int(count[r]) == 0:
            continue
        rows = start[r] + torch.linspace(0, int(count[r]) - 1, min(int(count[r]), SAMPLE_ROWS)).long()
        lit = factor[rows].sum(-1) > 0  # [M, L]: the (pixel, light) pairs that carry light
        values = features[rows][lit].double().cpu()
        if len(values) < 2:
            continue
        shift[r] = values.mean(0).float()
        scale[r] = values.std(0).float().clamp(SCALE_FLOOR, 1.0)
    return shift, scale
