"""What the two hosts of kernels/tile_kernel.cu (PyCUDA and the CPU emulator) share: the bank in the
layout the kernel reads, the launch grid, and the checks that must pass before any launch, so a bad
input is a clear error and never an out-of-bounds read on the device.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from backend.bank import Bank, check_bank
from backend.errors import BankError, GBufferError
from backend.gbuffer import GBuffer
from backend.renderers.kernel_build import KernelBuildError, KernelConfig
from backend.prefilter import FilterRadii, filtered_planes

MAX_GRID_Y = 65535  # CUDA's limit on gridDim.y (tile rows)


@dataclass(frozen=True)
class KernelBank:
    """A bank as the kernel reads it: slot rows padded to 16 bytes, in the kernel's weight dtype."""

    config: KernelConfig
    slots: np.ndarray  # [S, config.slot_stride] float32 or float16
    lut: np.ndarray  # [4**bins] int32
    feature_mean: np.ndarray  # [23] float32
    feature_std: np.ndarray  # [23] float32
    filter_radii: FilterRadii  # widths of the pre-filtered planes the host makes per frame


def kernel_bank(bank: Bank, weights: str = "bank", min_blocks_per_sm: int = 1) -> KernelBank:
    """Lay the bank out for the kernel. weights: "bank" keeps its dtype, "float16" halves fp32 weights.

    The bank is checked first (shapes, lookup table within the slots): the device trusts every index.
    """
    check_bank(bank)
    if weights not in ("bank", "float16"):
        raise BankError(f"weights must be 'bank' or 'float16', got {weights!r}")
    if bank.hidden_activation != "relu":
        raise BankError(f"the kernel implements ReLU hidden layers, the bank uses {bank.hidden_activation!r}")
    config = KernelConfig.from_bank(bank, min_blocks_per_sm=min_blocks_per_sm)
    if weights == "float16":
        config = KernelConfig(config.layers, config.tile_size, config.bins, config.output_activation, True,
                              min_blocks_per_sm)
    try:
        config.check_fits()
    except KernelBuildError as exc:
        raise BankError(str(exc)) from exc
    dtype = np.float16 if config.weights_half else np.float32
    slots = np.zeros((bank.n_slots, config.slot_stride), dtype=dtype)
    slots[:, : config.slot_params] = bank.slots
    return KernelBank(config, slots, np.ascontiguousarray(bank.lut, dtype=np.int32),
                      np.ascontiguousarray(bank.feature_mean, dtype=np.float32),
                      np.ascontiguousarray(bank.feature_std, dtype=np.float32), bank.filter_radii)


def kernel_filtered_planes(gbuffer: GBuffer, kb: KernelBank) -> np.ndarray:
    """The pre-filtered planes [3 + 2L, H, W] the kernel reads (backend.prefilter, made on the CPU)."""
    return np.ascontiguousarray(filtered_planes(gbuffer, kb.filter_radii).numpy(), dtype=np.float32)


def launch_grid(gbuffer: GBuffer, config: KernelConfig) -> tuple[int, int, int]:
    """(tile columns, tile rows, 1): one block per tile."""
    t = config.tile_size
    return -(-gbuffer.width // t), -(-gbuffer.height // t), 1


def check_gbuffer(gbuffer: GBuffer, config: KernelConfig) -> None:
    """GBufferError unless the kernel can take the frame: a GBuffer (whose arrays it keeps float32,
    C-contiguous and of matching shapes whenever they change) within one launch's grid."""
    if not isinstance(gbuffer, GBuffer):
        raise GBufferError(f"expected a backend.gbuffer.GBuffer, got {type(gbuffer).__name__}")
    tile_rows = -(-gbuffer.height // config.tile_size)
    if tile_rows > MAX_GRID_Y:
        raise GBufferError(f"{gbuffer.source}: {gbuffer.width}x{gbuffer.height} is too large for one launch "
                           f"({tile_rows} tile rows, at most {MAX_GRID_Y})")
