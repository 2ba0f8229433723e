"""Many independent per-pixel MLPs as stacked tensors, trained together with batched matmuls.

Network r's layer i is W_i[r] ([in, out]) and b_i[r]; nothing is shared between networks and
Adam's updates are element-wise, so training R networks in one stack is R independent problems.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from backend.bank import pack, unpack
from backend.network import forward


def inverse_activation(value: float, activation: str) -> float:
    """y with activation(y) == value (to start every network at the data's typical transfer)."""
    value = max(value, 1e-4)
    return math.log(value) if activation == "exp" else math.log(math.expm1(value))


class ParameterSnapshots:
    """Copies of a model's `params` and their restoration (best-on-validation weights, checkpoints)."""

    params: list[torch.Tensor]

    def state(self) -> list[torch.Tensor]:
        return [p.detach().clone() for p in self.params]

    def load_state(self, tensors: list[torch.Tensor]) -> None:
        with torch.no_grad():
            for p, t in zip(self.params, tensors):
                p.copy_(t)


class StackedMLP(ParameterSnapshots):
    """input_frames: optional (shift [R, in], scale [R, in]); network r then trains on the local
    inputs (x - shift[r]) / scale[r] (backend.local_frames). Rows in and out (slot_rows, load_rows,
    copy_network) are always in the bank's global inputs: the frame is folded into the first layer."""

    def __init__(self, n_networks: int, layers: list[int], output_activation: str, initial_output: np.ndarray,
                 generator: torch.Generator, device, input_frames: tuple[torch.Tensor, torch.Tensor] | None = None):
        self.layers, self.output_activation = list(layers), output_activation
        self.frames = None if input_frames is None else tuple(t.to(device) for t in input_frames)
        self.params: list[torch.Tensor] = []
        for i, (n_in, n_out) in enumerate(zip(layers[:-1], layers[1:])):
            last = i == len(layers) - 2
            scale = (0.1 if last else 1.0) * math.sqrt(2.0 / n_in)
            w = torch.randn(n_networks, n_in, n_out, generator=generator) * scale
            if last:
                b = torch.tensor([inverse_activation(float(v), output_activation) for v in initial_output])
                b = b.expand(n_networks, n_out).clone()
            else:
                b = torch.zeros(n_networks, n_out)
            self.params += [w.to(device).requires_grad_(), b.to(device).requires_grad_()]

    @property
    def weights(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return list(zip(self.params[0::2], self.params[1::2]))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """x [R, M, in] -> transfer [R, M, 3]."""
        if self.frames is not None:
            shift, scale = self.frames
            x = (x - shift[:, None]) / scale[:, None]
        return forward(self.weights, x, self.output_activation)

    def slot_rows(self) -> np.ndarray:
        """Packed rows [R, P] float32 in bank order (global inputs)."""
        with torch.no_grad():
            layers = [(w.detach(), b.detach()) for w, b in self.weights]
            if self.frames is not None:  # W x' + b with x' = (x - shift) / scale
                shift, scale = self.frames
                w0 = layers[0][0] / scale[:, :, None]
                layers[0] = (w0, layers[0][1] - torch.einsum("ri,rio->ro", shift, w0))
            return pack([(w.cpu(), b.cpu()) for w, b in layers]).numpy()

    def load_rows(self, rows: np.ndarray, networks: list[int] | None = None) -> None:
        """Set every network, or only `networks`, from packed rows [R, P] (one row each; the bank
        layout, backend.bank.pack)."""
        index = slice(None) if networks is None else networks
        with torch.no_grad():
            source = unpack(torch.tensor(np.asarray(rows, dtype=np.float32)), self.layers)  # a copy: rows may be read-only
            if self.frames is not None:
                shift, scale = (t[index].cpu() for t in self.frames)
                w0, b0 = source[0]
                source[0] = (w0 * scale[:, :, None], b0 + torch.einsum("ri,rio->ro", shift, w0))
            for (w, b), (rw, rb) in zip(self.weights, source):
                w[index] = rw.to(w.device)
                b[index] = rb.to(b.device)

    def copy_network(self, source: int, targets: list[int]) -> None:
        """Give networks `targets` the function of network `source` (in their own input frames)."""
        self.load_rows(self.slot_rows()[[source] * len(targets)], targets)

    @property
    def n_parameters_per_network(self) -> int:
        return sum(int(np.prod(p.shape[1:])) for p in self.params)
