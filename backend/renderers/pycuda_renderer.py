"""The tile kernel on a CUDA GPU, launched with PyCUDA (the optional `cuda` extra, imported lazily).

The cubin is built once per bank shape and device architecture (cached on disk by kernel_build)
and loaded once per process; the bank is uploaded once; device buffers are kept and reused while
frames keep their size. Per frame: upload the G-buffer, launch one block
per tile, download the frame. Every check (G-buffer shape and dtype, bank against shared memory,
CUDA device present) runs before anything is launched.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager

import numpy as np

from backend.bank import Bank
from backend.errors import BankError, UserError
from backend.gbuffer import GBuffer
from backend.prefilter import filtered_plane_count
from backend.renderers.kernel_build import KERNEL_NAME, build_cubin
from backend.renderers.kernel_host import check_gbuffer, kernel_bank, kernel_filtered_planes, launch_grid

_MODULES: dict[tuple[int, str], object] = {}  # (device ordinal, cubin path) -> loaded module


class CudaUnavailable(UserError):
    """PyCUDA or a CUDA device is missing; `reason` says which in a few words."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


def cuda_driver():
    """pycuda.driver, initialised, or CudaUnavailable saying what is missing: the one CUDA probe of
    the kernel's renderer, the automatic choice and the benchmark."""
    try:
        import pycuda.driver as cuda
    except ImportError as exc:
        raise CudaUnavailable(f"the pycuda renderer needs PyCUDA: pip install -e \".[cuda]\" ({exc})",
                              "pycuda is not installed") from exc
    try:
        cuda.init()
        count = cuda.Device.count()
    except Exception as exc:  # pycuda raises its own error types when the driver is missing
        raise CudaUnavailable(f"no usable CUDA driver ({exc}); use --renderer torch",
                              f"no usable CUDA driver ({exc})") from exc
    if count == 0:
        raise CudaUnavailable("no CUDA device found; use --renderer torch", "no CUDA device found")
    return cuda


def cuda_available() -> bool:
    try:
        cuda_driver()
    except CudaUnavailable:
        return False
    return True


class _FrameBuffers:
    """Device buffers for one G-buffer shape, reused frame after frame."""

    def __init__(self, cuda, gbuffer: GBuffer):
        self.shape = self.shape_of(gbuffer)
        self.planes = cuda.mem_alloc(gbuffer.planes.nbytes)
        self.filtered = cuda.mem_alloc(filtered_plane_count(gbuffer.n_lights) * gbuffer.height * gbuffer.width * 4)
        self.lights = cuda.mem_alloc(gbuffer.lights.nbytes)
        self.background = None if gbuffer.background is None else cuda.mem_alloc(gbuffer.background.nbytes)
        self.out = cuda.mem_alloc(gbuffer.height * gbuffer.width * 4 * 4)

    @staticmethod
    def shape_of(gbuffer: GBuffer) -> tuple:
        return gbuffer.planes.shape, gbuffer.lights.shape, gbuffer.background is not None

    def free(self) -> None:
        for buffer in (self.planes, self.filtered, self.lights, self.background, self.out):
            if buffer is not None:
                buffer.free()


class PyCudaRenderer:
    name = "pycuda"

    def __init__(self, bank: Bank, weights: str = "bank", min_blocks_per_sm: int = 1, device: int = 0):
        self.cuda = cuda = cuda_driver()
        self.kernel_bank = kb = kernel_bank(bank, weights, min_blocks_per_sm)
        config = kb.config
        if not 0 <= device < cuda.Device.count():
            raise CudaUnavailable(f"CUDA device {device} does not exist ({cuda.Device.count()} found)")
        self.device = cuda.Device(device)
        major, minor = self.device.compute_capability()
        self.arch = f"sm_{major}{minor}"
        self.cubin = build_cubin(config, self.arch)
        shared = self.device.get_attribute(cuda.device_attribute.MAX_SHARED_MEMORY_PER_BLOCK)
        if self.cubin.usage.shared_bytes > shared:
            raise BankError(f"the kernel for layers {list(config.layers)} needs {self.cubin.usage.shared_bytes} bytes "
                            f"of shared memory; {self.device.name()} has {shared} per block")
        if self.cubin.usage.spills:
            warnings.warn(f"layers {list(config.layers)} with {min_blocks_per_sm} block(s) per SM spill registers on "
                          f"{self.arch} ({self.cubin.usage}); expect a slower kernel", stacklevel=2)
        self.context = self.device.retain_primary_context()  # the context torch uses too
        self._frame: _FrameBuffers | None = None
        self._uploaded: GBuffer | None = None
        with self.active():
            key = (device, str(self.cubin.path))
            if key not in _MODULES:
                _MODULES[key] = cuda.module_from_file(str(self.cubin.path))
            self.kernel = _MODULES[key].get_function(KERNEL_NAME)
            self.slots = cuda.to_device(kb.slots)
            self.lut = cuda.to_device(kb.lut)
            self.feature_mean = cuda.to_device(kb.feature_mean)
            self.feature_std = cuda.to_device(kb.feature_std)

    @contextmanager
    def active(self):
        """Make this renderer's context current for the block."""
        self.context.push()
        try:
            yield
        finally:
            self.cuda.Context.pop()

    def upload(self, gbuffer: GBuffer) -> None:
        """Check the G-buffer, then copy it into (reused) device buffers."""
        check_gbuffer(gbuffer, self.kernel_bank.config)
        with self.active():
            if self._frame is None or self._frame.shape != _FrameBuffers.shape_of(gbuffer):
                if self._frame is not None:
                    self._frame.free()
                    self._frame = None  # not left pointing at freed memory if the allocation below fails
                self._frame = _FrameBuffers(self.cuda, gbuffer)
            self.cuda.memcpy_htod(self._frame.planes, gbuffer.planes)
            self.cuda.memcpy_htod(self._frame.filtered, kernel_filtered_planes(gbuffer, self.kernel_bank))
            self.cuda.memcpy_htod(self._frame.lights, gbuffer.lights)
            if gbuffer.background is not None:
                self.cuda.memcpy_htod(self._frame.background, gbuffer.background)
        self._uploaded = gbuffer

    def launch(self) -> None:
        """Shade the uploaded G-buffer on the device (asynchronous)."""
        if self._uploaded is None:
            raise RuntimeError("launch() before upload()")
        g, f, kb = self._uploaded, self._frame, self.kernel_bank
        camera = g.camera_position
        with self.active():
            self.kernel(
                f.planes, f.filtered, np.int32(g.height), np.int32(g.width), f.lights, np.int32(g.n_lights),
                np.float32(camera[0]), np.float32(camera[1]), np.float32(camera[2]),
                f.background if f.background is not None else np.intp(0),
                self.lut, self.slots, self.feature_mean, self.feature_std, f.out,
                block=(kb.config.threads, 1, 1), grid=launch_grid(g, kb.config))

    def download(self) -> np.ndarray:
        """The last launched frame [H, W, 4] float32 (waits for the kernel)."""
        g = self._uploaded
        frame = np.empty((g.height, g.width, 4), dtype=np.float32)
        with self.active():
            self.cuda.memcpy_dtoh(frame, self._frame.out)
        return frame

    def render(self, gbuffer: GBuffer) -> np.ndarray:
        """Shaded frame [H, W, 4] float32: covered pixels (radiance, 1), others (background, 0)."""
        self.upload(gbuffer)
        self.launch()
        return self.download()

    def close(self) -> None:
        """Free the device memory now rather than at garbage collection."""
        with self.active():
            if self._frame is not None:
                self._frame.free()
                self._frame = None
            for buffer in (self.slots, self.lut, self.feature_mean, self.feature_std):
                buffer.free()


def create(bank: Bank, weights: str = "bank", min_blocks_per_sm: int = 1, device: int = 0) -> PyCudaRenderer:
    return PyCudaRenderer(bank, weights, min_blocks_per_sm, device)
