"""Builds kernels/tile_kernel.cu for one bank shape: a cubin with nvcc (PyCUDA) or a CPU shared library
with g++ through kernels/cuda_emu.h (the emulated renderer), cached by a hash of sources and flags.

The bank's layer widths, tile size, bins, output activation and weight dtype are compile-time
macros (`KernelConfig.defines`), so every layer loop unrolls and activations live in registers.
`ptxas_usage` reads ptxas's resource report (registers, spills, shared memory) for the checks.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from backend.atomic import atomic_path, write_text_atomic
from backend.bank import SLOT_BYTES_LIMIT
from backend.errors import UserError

KERNEL_DIR = Path(__file__).resolve().parents[2] / "kernels"
KERNEL_SOURCE = KERNEL_DIR / "tile_kernel.cu"
EMULATOR_SOURCES = (KERNEL_DIR / "emulator.cpp", KERNEL_SOURCE, KERNEL_DIR / "cuda_emu.h")
KERNEL_NAME = "nf_tile_kernel"
STATIC_SHARED_LIMIT = 48 * 1024  # bytes of static __shared__ memory a block may declare


class KernelBuildError(UserError):
    """A compiler is missing or failed on the tile kernel."""


@dataclass(frozen=True)
class KernelConfig:
    layers: tuple[int, ...]
    tile_size: int = 16
    bins: int = 8
    output_activation: str = "exp"
    weights_half: bool = False
    min_blocks_per_sm: int = 1
    border_blend: int = 0  # px (gbuffer.md section 4b)

    @classmethod
    def from_bank(cls, bank, **options) -> "KernelConfig":
        return cls(tuple(bank.layers), bank.tile_size, bank.bins, bank.output_activation,
                   bank.weights_dtype == "float16", border_blend=bank.border_blend, **options)

    @property
    def threads(self) -> int:
        return self.tile_size * self.tile_size

    @property
    def weight_bytes(self) -> int:
        return 2 if self.weights_half else 4

    @property
    def slot_params(self) -> int:
        return sum(i * o + o for i, o in zip(self.layers[:-1], self.layers[1:]))

    @property
    def slot_stride(self) -> int:
        """Values per slot row on the device: padded to 16 bytes for vector loads."""
        per_vector = 16 // self.weight_bytes
        return -(-self.slot_params // per_vector) * per_vector

    def defines(self) -> dict[str, str]:
        return {
            "NF_LAYERS": ",".join(str(n) for n in self.layers),
            "NF_TILE": str(self.tile_size),
            "NF_BINS": str(self.bins),
            "NF_SOFTPLUS": "1" if self.output_activation == "softplus" else "0",
            "NF_WEIGHTS_HALF": "1" if self.weights_half else "0",
            "NF_MIN_BLOCKS": str(self.min_blocks_per_sm),
            "NF_BLEND": str(self.border_blend),
        }

    def check_fits(self) -> None:
        """KernelBuildError before any compiler runs when the bank cannot be run by the kernel."""
        if self.threads > 1024:
            raise KernelBuildError(f"tile size {self.tile_size} needs {self.threads} threads per block; CUDA allows 1024")
        if self.slot_stride * self.weight_bytes > SLOT_BYTES_LIMIT:
            raise KernelBuildError(
                f"one network of layers {list(self.layers)} is {self.slot_stride * self.weight_bytes} bytes; "
                f"the kernel holds at most {SLOT_BYTES_LIMIT} bytes in shared memory (use narrower layers or fp16)")


@dataclass(frozen=True)
class PtxasUsage:
    registers: int
    spill_store_bytes: int
    spill_load_bytes: int
    stack_frame_bytes: int
    shared_bytes: int

    @property
    def spills(self) -> bool:
        return self.spill_store_bytes > 0 or self.spill_load_bytes > 0


def ptxas_usage(report: str, kernel: str = KERNEL_NAME) -> PtxasUsage:
    """Parse `ptxas -v` output for one entry function."""
    section = report.split(f"Compiling entry function '{kernel}'", 1)
    if len(section) != 2:
        raise ValueError(f"no ptxas report for {kernel!r} in:\n{report}")
    text = section[1]
    frame = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", text)
    used = re.search(r"Used (\d+) registers", text)
    smem = re.search(r"(\d+) bytes smem", text)
    if not frame or not used:
        raise ValueError(f"unreadable ptxas report:\n{report}")
    return PtxasUsage(int(used.group(1)), int(frame.group(2)), int(frame.group(3)), int(frame.group(1)),
                      int(smem.group(1)) if smem else 0)


def cache_dir() -> Path:
    """kernels/build next to the sources, or the user cache when the checkout is read-only."""
    for candidate in (KERNEL_DIR / "build", Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "neural-face"):
        try:
            candidate.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if os.access(candidate, os.W_OK):
            return candidate
    raise KernelBuildError("no writable folder for compiled kernels (tried kernels/build and ~/.cache/neural-face)")


def _cached(kind: str, suffix: str, sources, command_key: list[str], build) -> Path:
    """Path of the cached artefact for these sources and flags.

    When absent, `build(tmp_path)` makes it and returns the compiler's output, kept beside it as
    `<artefact>.log` (for nvcc, ptxas's resource report). Both are renamed into place, so a
    killed build leaves no half-written artefact.
    """
    digest = hashlib.sha256()
    for source in sources:
        digest.update(source.read_bytes())
    digest.update("\0".join(command_key).encode())
    target = cache_dir() / f"{kind}-{digest.hexdigest()[:20]}{suffix}"
    if not target.exists():
        with atomic_path(target, suffix=suffix) as tmp:
            write_text_atomic(target.with_name(target.name + ".log"), build(tmp))
    return target


def _run(command: list[str], what: str) -> str:
    """The command's stdout + stderr; KernelBuildError when it cannot run or fails."""
    try:
        result = subprocess.run(command, capture_output=True, text=True)
    except OSError as exc:
        raise KernelBuildError(f"{what}: cannot run {command[0]} ({exc})") from exc
    if result.returncode != 0:
        raise KernelBuildError(f"{what} failed ({' '.join(command)}):\n{result.stderr.strip()}")
    return result.stdout + result.stderr


def find_nvcc() -> str | None:
    """nvcc on PATH, else under $CUDA_HOME or /usr/local/cuda."""
    found = shutil.which("nvcc")
    if found:
        return found
    for root in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if root and (Path(root) / "bin" / "nvcc").is_file():
            return str(Path(root) / "bin" / "nvcc")
    return None


@lru_cache(maxsize=None)
def _nvcc_version(nvcc: str) -> str:
    return _run([nvcc, "--version"], "nvcc --version")


def nvcc_flags(config: KernelConfig, arch: str) -> list[str]:
    # nvcc splits -D values at commas unless they are escaped.
    defines = [f"-D{name}={value.replace(',', chr(92) + ',')}" for name, value in config.defines().items()]
    return ["-cubin", f"-arch={arch}", "-O3", "-std=c++17", "-Xptxas", "-v", *defines]


@dataclass(frozen=True)
class Cubin:
    path: Path
    usage: PtxasUsage


def build_cubin(config: KernelConfig, arch: str) -> Cubin:
    """Compile the kernel for `arch` (e.g. "sm_86"); cached, with ptxas's report kept beside it."""
    config.check_fits()
    nvcc = find_nvcc()
    if nvcc is None:
        raise KernelBuildError("nvcc not found (PATH, $CUDA_HOME/bin, /usr/local/cuda/bin); install the CUDA toolkit")
    flags = nvcc_flags(config, arch)
    version = _nvcc_version(nvcc)

    def build(tmp: Path) -> str:
        return _run([nvcc, *flags, str(KERNEL_SOURCE), "-o", str(tmp)], "nvcc")

    path = _cached(f"tile_kernel-{arch}", ".cubin", [KERNEL_SOURCE], [version, *flags], build)
    return Cubin(path, ptxas_usage(path.with_name(path.name + ".log").read_text()))


def build_emulator(config: KernelConfig) -> Path:
    """Compile kernels/emulator.cpp (which includes tile_kernel.cu) into a shared library; cached."""
    config.check_fits()
    compiler = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
    if compiler is None:
        raise KernelBuildError("no C++ compiler found for the emulated kernel (set CXX or install g++)")
    flags = ["-O2", "-std=c++17", "-shared", "-fPIC", "-fno-strict-aliasing", "-Wall", "-Wno-unknown-pragmas",
             *(f"-D{name}={value}" for name, value in config.defines().items())]

    def build(tmp: Path) -> str:
        return _run([compiler, *flags, "-x", "c++", str(KERNEL_DIR / "emulator.cpp"), "-o", str(tmp)], "emulator build")

    return _cached("emulator", ".so", EMULATOR_SOURCES, [compiler, *flags], build)
