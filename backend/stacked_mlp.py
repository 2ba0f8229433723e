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
    def __init__(self, n_networks: int, layers: list[int], output_activation: str, initial_output: np.ndarray,
                 generator: torch.Generator, device):
        self.layers, self.output_activation = list(layers), output_activation
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
        return forward(self.weights, x, self.output_activation)

    def slot_rows(self) -> np.ndarray:
        """Packed rows [R, P] float32 in bank order."""
        with torch.no_grad():
            return pack([(w.detach().cpu(), b.detach().cpu()) for w, b in self.weights]).numpy()

    def load_rows(self, rows: np.ndarray) -> None:
        """Set every network from packed rows [R, P] (the bank layout, backend.bank.pack)."""
        with torch.no_grad():
            source = unpack(torch.tensor(np.asarray(rows, dtype=np.float32)), self.layers)  # a copy: rows may be read-only
            for (w, b), (rw, rb) in zip(self.weights, source):
                w.copy_(rw)
                b.copy_(rb)

    def copy_network(self, source: int, targets: list[int]) -> None:
        """Give networks `targets` the weights of network `source`."""
        with torch.no_grad():
            for p in self.params:
                p[targets] = p[source].clone()

    @property
    def n_parameters_per_network(self) -> int:
        return sum(int(np.prod(p.shape[1:])) for p in self.params)
