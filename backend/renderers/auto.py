"""Pick the fastest renderer this machine can run: the PyCUDA kernel when it can, else torch."""

from __future__ import annotations


def choose() -> tuple[str, str]:
    """(renderer name, reason in words)."""
    from backend.renderers.pycuda_renderer import CudaUnavailable, cuda_driver

    try:
        cuda = cuda_driver()
    except CudaUnavailable as exc:
        return "torch", exc.reason
    from backend.renderers.kernel_build import find_nvcc

    if find_nvcc() is None:  # the kernel is compiled for the device's architecture at first use
        return "torch", f"CUDA device {cuda.Device(0).name()} found, but nvcc (the CUDA toolkit) is not"
    return "pycuda", f"CUDA device {cuda.Device(0).name()}"
