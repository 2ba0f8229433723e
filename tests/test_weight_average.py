"""The weights' moving average: the debiased decay, and the model's own weights back after validation."""

import numpy as np
import torch

from backend.stacked_mlp import StackedMLP
from backend.weight_average import WeightAverage


def model(seed: int = 0) -> StackedMLP:
    return StackedMLP(3, [5, 4, 3], "exp", np.full(3, 0.5), torch.Generator().manual_seed(seed), "cpu")


def test_the_average_follows_the_debiased_decay():
    net = model()
    start = net.state()
    average = WeightAverage(net, decay=0.9)
    expected = [p.clone() for p in start]
    for step in range(1, 40):
        with torch.no_grad():
            for p in net.params:
                p.add_(0.01 * step)
        average.update(step)
        weight = 1 - min(0.9, (1 + step) / (10 + step))
        expected = [e + weight * (p.detach() - e) for e, p in zip(expected, net.params)]
    for got, want in zip(average.state(), expected):
        torch.testing.assert_close(got, want)
    # the first steps count almost fully: after step 1 the average moved 9/11 of the way (1 - 2/11)
    fresh, moved = model(), model()
    first = WeightAverage(fresh, decay=0.999)
    with torch.no_grad():
        for p in fresh.params:
            p.add_(1.0)
    first.update(1)
    for got, before in zip(first.state(), moved.state()):
        torch.testing.assert_close(got, before + 9 / 11)


def test_validation_sees_the_average_and_training_gets_its_weights_back():
    net = model()
    average = WeightAverage(net, decay=0.5)
    with torch.no_grad():
        for p in net.params:
            p.mul_(3.0)
    trained = net.state()
    average.update(100)
    with average.applied():
        for p, a in zip(net.params, average.state()):
            torch.testing.assert_close(p.detach(), a)
        assert not all(torch.equal(p.detach(), t) for p, t in zip(net.params, trained))
    for p, t in zip(net.params, trained):
        assert torch.equal(p.detach(), t)


def test_decay_zero_is_the_raw_weights():
    net = model()
    average = WeightAverage(net, decay=0.0)
    average.update(1)
    assert average.state() is None
    before = net.state()
    with average.applied():
        for p, b in zip(net.params, before):
            assert torch.equal(p.detach(), b)
