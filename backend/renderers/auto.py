"""Pick the fastest renderer this machine can run: the PyCUDA kernel when it can, else torch."""

from __future__ import annotations


def choose() -> tuple[str, str]:
    """(renderer name, reason in words)."""
    try:
        import pycuda.driver as cuda
    except ImportError:
        return "torch", "pycuda is not installed"
    try:
        cuda.init()
        count = cuda.Device.count()
    except Exception as exc:  # pycuda raises its own LogicError/RuntimeError when no driver is there
        return "torch", f"no usable CUDA driver ({exc})"
    if count == 0:
        return "torch", "no CUDA device found"
    from backend.kernel_build import find_nvcc

    if find_nvcc() is None:  # the kernel is compiled for the device's architecture at first use
        return "torch", f"CUDA device {cuda.Device(0).name()} found, but nvcc (the CUDA toolkit) is not"
    return "pycuda", f"CUDA device {cuda.Device(0).name()}"
