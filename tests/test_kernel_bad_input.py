"""Bad input to the kernel hosts is a clear error before any launch, never a crash or a hang."""

import dataclasses

import numpy as np
import pytest

from backend.bank import random_bank
from backend.errors import BankError, GBufferError, UserError
from backend.renderers import get_renderer
from backend.synthetic import sphere_gbuffer

LAYERS = [23, 16, 3]


@pytest.fixture(scope="module")
def renderer():
    return get_renderer("emulated", random_bank(0, [3 | 3 << 8], LAYERS))


def test_planes_of_the_wrong_dtype(renderer):
    g = sphere_gbuffer(20, 20)
    with pytest.raises(GBufferError, match="planes must be a C-contiguous float32"):
        g.planes = g.planes.astype(np.float64)  # refused by the G-buffer itself, before any renderer
        renderer.render(g)


def test_planes_not_contiguous(renderer):
    g = sphere_gbuffer(20, 20)
    with pytest.raises(GBufferError, match="C-contiguous"):
        g.planes = g.planes[:, :, ::2]
        renderer.render(g)


def test_channels_that_do_not_match_the_lights(renderer):
    g = sphere_gbuffer(20, 20, n_lights=1)
    with pytest.raises(GBufferError, match="15 planes for 2 light"):
        g.lights = np.concatenate([g.lights, g.lights])  # 2 lights, but light-pass planes for 1
        renderer.render(g)


def test_background_of_another_size(renderer):
    g = sphere_gbuffer(20, 20)
    with pytest.raises(GBufferError, match="background"):
        g.background = np.zeros((3, 20, 21), dtype=np.float32)
        renderer.render(g)


def test_empty_frame(renderer):
    g = sphere_gbuffer(20, 20)
    with pytest.raises(GBufferError, match="H, W > 0"):
        g.planes = np.zeros((15, 0, 20), dtype=np.float32)
        renderer.render(g)


def test_not_a_gbuffer(renderer):
    with pytest.raises(GBufferError, match="GBuffer"):
        renderer.render(np.zeros((15, 4, 4), dtype=np.float32))


def test_bank_too_large_for_shared_memory():
    bank = random_bank(0, [3 | 3 << 8], [23, 90, 80, 3])
    for name in ("emulated", "pycuda"):
        with pytest.raises(UserError, match="32768|PyCUDA|CUDA"):
            get_renderer(name, bank)
    with pytest.raises(BankError, match="38732 bytes.*32768"):
        get_renderer("emulated", bank)


def test_bank_with_another_hidden_activation():
    bank = random_bank(0, [3 | 3 << 8], LAYERS)
    bank = dataclasses.replace(bank, meta={**bank.meta, "hidden_activation": "tanh"})
    with pytest.raises(BankError, match="ReLU"):
        get_renderer("emulated", bank)


def test_no_cuda_device_is_a_clear_error():
    from backend.renderers.pycuda_renderer import cuda_driver

    try:
        cuda_driver()
    except UserError:
        pass
    else:
        pytest.skip("this machine has PyCUDA and a CUDA device; tests/test_kernel_gpu.py covers it")
    with pytest.raises(UserError, match="PyCUDA|CUDA") as caught:
        get_renderer("pycuda", random_bank(0, [3 | 3 << 8], LAYERS))
    assert "renderer torch" in str(caught.value) or "pip install" in str(caught.value)


def test_bank_whose_lookup_table_points_outside_the_slots():
    bank = random_bank(0, [3 | 3 << 8], LAYERS)
    bank.lut[5] = bank.n_slots  # the kernel would read past the last slot
    with pytest.raises(BankError, match="lookup table"):
        get_renderer("emulated", bank)
