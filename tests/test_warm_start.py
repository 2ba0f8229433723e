"""The warm start widens a narrower source: the wider network starts as the source's exact function."""

import numpy as np
import torch

from backend.bank import random_bank
from backend.stacked_mlp import StackedMLP
from backend.warm_start import widened_rows


def test_a_widened_network_computes_what_its_source_computes_and_its_extra_units_can_learn():
    source = random_bank(3, [1, 2], [23, 8, 6, 3])
    wide = StackedMLP(2, [23, 11, 9, 3], "exp", np.full(3, 0.3), torch.Generator().manual_seed(0), "cpu")
    wide.load_rows(widened_rows(source.slots[:2], source.layers, wide.slot_rows(), wide.layers))
    narrow = StackedMLP(2, source.layers, "exp", np.full(3, 0.3), torch.Generator().manual_seed(1), "cpu")
    narrow.load_rows(source.slots[:2])
    x = torch.randn(2, 50, 23, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(wide(x), narrow(x), rtol=1e-5, atol=1e-6)
    wide(x).sum().backward()
    (w1, _), (w2, _), _ = wide.weights
    assert w2.grad[:, 8:].abs().sum() > 0  # the extra first-layer units' outgoing weights get gradients
    assert (w1[:, :, 8:].detach() != 0).any()  # and they keep their random incoming weights
