"""The tile kernel compiles with nvcc for Turing, Ampere and Hopper without register spills and within
the 48 KB static shared-memory limit (ptxas's own resource report), and the emulator builds with g++.

Skipped, with a message, only where nvcc is absent; never passes without compiling.
"""

import pytest

from backend.renderers.kernel_build import (STATIC_SHARED_LIMIT, KernelBuildError, KernelConfig, build_cubin,
                                  build_emulator, find_nvcc)

DEFAULT = KernelConfig((23, 32, 32, 3), border_blend=1)  # the training default (TrainConfig.widths, border_blend)
CASES = [  # the default shape on every architecture; a 64-wide layer takes ~20 s of ptxas, so once
    *[pytest.param(DEFAULT, arch, id=f"default-{arch}") for arch in ("sm_75", "sm_86", "sm_90")],
    pytest.param(KernelConfig((23, 32, 32, 3)), "sm_86", id="no-blend-sm_86"),
    pytest.param(KernelConfig((23, 32, 32, 3), output_activation="softplus", weights_half=True), "sm_86",
                 id="fp16-softplus-sm_86"),
    pytest.param(KernelConfig((23, 64, 64, 3)), "sm_90", id="wide-64x64-sm_90", marks=pytest.mark.slow),
]

needs_nvcc = pytest.mark.skipif(find_nvcc() is None, reason="nvcc not found: the ptxas resource check cannot run here")


@needs_nvcc
@pytest.mark.parametrize("config,arch", CASES)
def test_no_spills_and_shared_memory_within_static_limit(config, arch):
    usage = build_cubin(config, arch).usage
    print(f"{config} {arch}: {usage}")
    assert not usage.spills, f"{arch} spills registers: {usage}"
    assert usage.stack_frame_bytes == 0, f"{arch} uses local memory: {usage}"
    assert usage.registers <= 255
    assert config.slot_stride * config.weight_bytes <= usage.shared_bytes <= STATIC_SHARED_LIMIT, usage


def test_bank_too_large_for_shared_memory_is_refused_before_compiling():
    too_wide = KernelConfig((23, 90, 80, 3))  # 9683 fp32 values = 38732 bytes > 32 KB
    with pytest.raises(KernelBuildError, match="32768 bytes in shared memory"):
        build_emulator(too_wide)
    with pytest.raises(KernelBuildError, match="1024"):
        KernelConfig((23, 8, 3), tile_size=33).check_fits()


@needs_nvcc
def test_nvcc_errors_are_reported():
    with pytest.raises(KernelBuildError, match="nvcc failed"):
        build_cubin(KernelConfig((23, 32, 3)), "sm_1")
