"""The per-pixel MLP of docs/formats/gbuffer.md section 5, evaluated for many networks at once.

Training (stacked bucket weights) and the torch renderer (weights gathered per tile) both call
`forward`, so there is one definition of the network in Python.
"""

from __future__ import annotations

import torch

EXP_CLAMP = 15.0


def activate_output(y: torch.Tensor, activation: str) -> torch.Tensor:
    """exp(min(y, 15)) or softplus(y) = max(y, 0) + log1p(exp(-|y|))."""
    if activation == "exp":
        return torch.exp(torch.clamp(y, max=EXP_CLAMP))
    if activation == "softplus":
        return torch.clamp(y, min=0) + torch.log1p(torch.exp(-torch.abs(y)))
    raise ValueError(f"unknown output activation {activation!r}")


def forward_raw(layers, x: torch.Tensor) -> torch.Tensor:
    """Pre-activation output [N, M, out] of N networks on M pixels each.

    layers: [(W [N, in, out], b [N, out]), ...]; x: [N, M, in]. Hidden layers use ReLU.
    """
    h = x
    for i, (w, b) in enumerate(layers):
        h = torch.baddbmm(b.unsqueeze(1), h, w)
        if i < len(layers) - 1:
            h = torch.relu(h)
    return h


def forward(layers, x: torch.Tensor, output_activation: str) -> torch.Tensor:
    """Output transfer f [N, M, 3] of N networks on M pixels each (see forward_raw)."""
    return activate_output(forward_raw(layers, x), output_activation)
