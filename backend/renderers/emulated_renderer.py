"""The tile kernel on the CPU: kernels/tile_kernel.cu compiled with g++ through kernels/cuda_emu.h and
called with ctypes. The very source the GPU runs, one fiber per CUDA thread; slow, for tests only.
`thread_order="reverse"` runs each block's threads last to first between barriers, so tests can
show that the frame does not depend on an order the GPU does not guarantee.
"""

from __future__ import annotations

import ctypes
from functools import lru_cache
from pathlib import Path

import numpy as np

from backend.bank import Bank
from backend.gbuffer import GBuffer
from backend.renderers.kernel_build import build_emulator
from backend.renderers.kernel_host import check_gbuffer, kernel_bank, kernel_filtered_planes

_FLOATS = ctypes.POINTER(ctypes.c_float)


@lru_cache(maxsize=None)
def _library(path: Path) -> ctypes.CDLL:
    library = ctypes.CDLL(str(path))
    library.nf_emulator_render.restype = ctypes.c_int
    library.nf_emulator_render.argtypes = [
        _FLOATS, _FLOATS, ctypes.c_int, ctypes.c_int, _FLOATS, ctypes.c_int,
        ctypes.c_float, ctypes.c_float, ctypes.c_float, _FLOATS,
        ctypes.POINTER(ctypes.c_int32), ctypes.c_void_p, _FLOATS, _FLOATS, _FLOATS, ctypes.c_int,
    ]
    library.nf_emulator_last_error.restype = ctypes.c_char_p
    library.nf_emulator_slot_stride.restype = ctypes.c_int
    return library


def _pointer(array: np.ndarray | None, kind=_FLOATS):
    return None if array is None else array.ctypes.data_as(kind)


class EmulatedRenderer:
    name = "emulated"

    def __init__(self, bank: Bank, weights: str = "bank", thread_order: str = "forward"):
        if thread_order not in ("forward", "reverse"):
            raise ValueError(f"thread_order must be 'forward' or 'reverse', got {thread_order!r}")
        self.reverse = thread_order == "reverse"
        self.kernel_bank = kernel_bank(bank, weights)
        self.library = _library(build_emulator(self.kernel_bank.config))
        stride = self.library.nf_emulator_slot_stride()
        if stride != self.kernel_bank.config.slot_stride:  # host and kernel must agree on the row layout
            raise RuntimeError(f"emulator slot stride {stride} != host {self.kernel_bank.config.slot_stride}")

    def render(self, gbuffer: GBuffer) -> np.ndarray:
        """Shaded frame [H, W, 4] float32, as the CUDA kernel computes it."""
        kb = self.kernel_bank
        check_gbuffer(gbuffer, kb.config)
        filtered = kernel_filtered_planes(gbuffer, kb)
        out = np.empty((gbuffer.height, gbuffer.width, 4), dtype=np.float32)
        camera = gbuffer.camera_position
        status = self.library.nf_emulator_render(
            _pointer(gbuffer.planes), _pointer(filtered), gbuffer.height, gbuffer.width, _pointer(gbuffer.lights), gbuffer.n_lights,
            float(camera[0]), float(camera[1]), float(camera[2]), _pointer(gbuffer.background),
            _pointer(kb.lut, ctypes.POINTER(ctypes.c_int32)), kb.slots.ctypes.data, _pointer(kb.feature_mean),
            _pointer(kb.feature_std), _pointer(out), int(self.reverse))
        if status != 0:
            raise RuntimeError(f"emulated tile kernel failed: {self.library.nf_emulator_last_error().decode()}")
        return out


def create(bank: Bank, weights: str = "bank", thread_order: str = "forward") -> EmulatedRenderer:
    return EmulatedRenderer(bank, weights, thread_order)
