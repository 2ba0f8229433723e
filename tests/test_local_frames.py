"""Specialists' own input frames: folded into the bank's rows exactly, and measured per bucket."""

import numpy as np
import torch

from backend.local_frames import SCALE_FLOOR, local_frames
from backend.stacked_mlp import StackedMLP

LAYERS = [23, 16, 16, 3]


def framed_and_plain(shift, scale):
    framed = StackedMLP(3, LAYERS, "exp", np.full(3, 0.3), torch.Generator().manual_seed(0), "cpu",
                        input_frames=(shift, scale))
    plain = StackedMLP(3, LAYERS, "exp", np.full(3, 0.3), torch.Generator().manual_seed(1), "cpu")
    return framed, plain


def test_rows_leave_and_enter_a_framed_model_in_the_banks_global_inputs():
    rng = np.random.default_rng(0)
    shift = torch.from_numpy(rng.normal(size=(3, 23)).astype(np.float32))
    scale = torch.from_numpy(rng.uniform(SCALE_FLOOR, 1.0, size=(3, 23)).astype(np.float32))
    framed, plain = framed_and_plain(shift, scale)
    x = torch.from_numpy(rng.normal(size=(3, 40, 23)).astype(np.float32))
    plain.load_rows(framed.slot_rows())  # what the bank and every renderer get
    assert torch.allclose(framed(x), plain(x), rtol=1e-5, atol=1e-6)
    plain_rows = StackedMLP(3, LAYERS, "exp", np.full(3, 0.3), torch.Generator().manual_seed(2), "cpu").slot_rows()
    framed.load_rows(plain_rows)  # a warm start from global rows
    plain.load_rows(plain_rows)
    assert torch.allclose(framed(x), plain(x), rtol=1e-5, atol=1e-6)
    framed.copy_network(0, [2])  # selection copies functions, not frame-relative parameters
    same = framed(x[:1].expand(3, -1, -1))
    assert torch.allclose(same[2], same[0], rtol=1e-5, atol=1e-6) and not torch.allclose(same[1], same[0])


def test_each_bucket_is_normalised_over_its_own_lit_rows_and_the_shared_network_keeps_the_global_frame():
    rng = np.random.default_rng(1)
    features = torch.from_numpy(rng.normal(size=(300, 1, 23)).astype(np.float32))
    features[:100, 0, 0] = 0.25 + 0.5 * features[:100, 0, 0]  # bucket 0: feature 0 spans half its range
    features[:100, 0, 1] = 3.0  # and feature 1 is constant
    factor = torch.ones(300, 1, 3)
    factor[50:100] = 0  # unlit rows carry no light and do not count
    features[50:100, 0, 0] = 100.0
    shift, scale = local_frames(features, factor, torch.tensor([0, 100, 0]), torch.tensor([100, 200, 300]), shared=[2])
    lit = features[:50, 0].double()
    assert torch.allclose(shift[0], lit.mean(0).float(), atol=1e-5)
    assert abs(float(scale[0, 0]) - float(lit[:, 0].std())) < 1e-5 and float(scale[0, 0]) < 1.0
    assert float(scale[0, 1]) == np.float32(SCALE_FLOOR)  # a constant input is magnified at most 1 / SCALE_FLOOR
    assert float(scale[1].max()) <= 1.0  # never shrunk
    assert torch.equal(shift[2], torch.zeros(23)) and torch.equal(scale[2], torch.ones(23))
