"""Measuring the renderers: what a frame must move and compute, the device's peaks, and timings.

`Work.of` is the renderer-independent cost of shading a frame (bytes and FLOPs); `cuda_peak` reads
device 0's DRAM bandwidth and fp32 peak from its attributes, so achieved figures can be given as a
share of the peak; `median_ms` and `kernel_ms` time a whole frame or the kernel alone.
`python -m backend bench` prints them.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import numpy as np

from backend.features import N_FEATURES
from backend.errors import UserError

DEFAULT_LAYERS = (N_FEATURES, 32, 32, 3)
FP32_LANES_PER_SM = {(7, 0): 64, (7, 5): 64, (8, 0): 64}  # every later architecture: 128


def median_ms(fn, seconds: float, sync=lambda: None) -> float:
    """Median wall time of fn() in ms (after one warm-up, `sync` waits for the device)."""

    def wall_ms() -> float:
        start = time.perf_counter()
        fn()
        sync()
        return (time.perf_counter() - start) * 1e3

    return median_of(wall_ms, seconds)


def median_of(measure_ms, seconds: float) -> float:
    """Median of measure_ms() over about `seconds` (3 to 100 runs), after one warm-up run."""
    measure_ms()
    times = []
    deadline = time.perf_counter() + seconds
    while len(times) < 3 or (time.perf_counter() < deadline and len(times) < 100):
        times.append(measure_ms())
    return statistics.median(times)


STAGES = ("setup", "prefilter", "features", "networks", "composite")  # the torch renderer's, in order


def stage_medians(renderer, gbuffer, seconds: float) -> dict[str, float]:
    """Median ms per stage of the torch renderer (render(gbuffer, timings)) over about `seconds`."""
    runs = []

    def one_frame() -> float:
        timings = {}
        renderer.render(gbuffer, timings)
        runs.append(timings)
        return sum(timings.values())

    median_of(one_frame, seconds)
    runs = runs[1:]  # the warm-up
    return {stage: statistics.median(run.get(stage, 0.0) for run in runs) for stage in STAGES}


@dataclass
class Work:
    """What shading one frame must move and compute, independent of the renderer."""

    bytes: float  # G-buffer planes read + background + output + one network load per shaded tile
    flops: float  # MLP multiply-adds x 2 over covered pixels and lights (and the networks a border blend mixes in)
    shaded_tiles: int
    slots_used: int

    @classmethod
    def of(cls, bank, gbuffer) -> "Work":
        from backend.hashing import gbuffer_tile_keys

        slots = bank.lut[gbuffer_tile_keys(gbuffer, bank.tile_size, bank.bins)]
        shaded = int((slots >= 0).sum())
        covered = int(gbuffer.covered.sum())
        pixels = gbuffer.height * gbuffer.width
        layers = bank.layers
        macs = sum(i * o for i, o in zip(layers[:-1], layers[1:]))
        planes_per_covered = gbuffer.planes.shape[0] - 3  # mask, u, v are read for every pixel
        gbuffer_bytes = 4 * (3 * pixels + planes_per_covered * covered)
        background_bytes = 0 if gbuffer.background is None else 12 * pixels
        weights_bytes = shaded * bank.slots.shape[1] * bank.slots.dtype.itemsize
        evaluations = float(covered)
        if bank.border_blend:  # edge pixels also run their neighbours' networks (gbuffer.md section 4b)
            from backend.renderers.torch_renderer import TorchRenderer

            total, shaded_pixels = TorchRenderer(bank).evaluations_per_pixel(gbuffer)
            evaluations *= total / max(shaded_pixels, 1)
        return cls(gbuffer_bytes + background_bytes + 16 * pixels + weights_bytes,
                   2.0 * macs * evaluations * gbuffer.n_lights, shaded, len(np.unique(slots[slots >= 0])))


@dataclass
class Peak:
    bandwidth: float  # bytes/s
    flops: float  # fp32 FLOP/s
    how: str


def cuda_peak() -> Peak | None:
    """Device 0's DRAM bandwidth and fp32 peak from its attributes (needs pycuda)."""
    try:
        from backend.renderers.pycuda_renderer import cuda_driver

        cuda = cuda_driver()
    except UserError:
        return None
    device = cuda.Device(0)
    a = cuda.device_attribute
    mem_khz, bus_bits = device.get_attribute(a.MEMORY_CLOCK_RATE), device.get_attribute(a.GLOBAL_MEMORY_BUS_WIDTH)
    sms, core_khz = device.get_attribute(a.MULTIPROCESSOR_COUNT), device.get_attribute(a.CLOCK_RATE)
    lanes = FP32_LANES_PER_SM.get(device.compute_capability(), 128)
    bandwidth = 2 * mem_khz * 1e3 * bus_bits / 8
    flops = sms * lanes * 2 * core_khz * 1e3
    how = (f"{device.name()}: peak {bandwidth / 1e9:.0f} GB/s (2 x {mem_khz / 1e3:.0f} MHz x {bus_bits}-bit bus), "
           f"{flops / 1e12:.1f} TFLOP/s fp32 ({sms} SMs x {lanes} lanes x 2 x {core_khz / 1e3:.0f} MHz boost)")
    return Peak(bandwidth, flops, how)


def torch_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def random_bench_bank(frames, like=None):
    """Random bank with a network per tile key of the frames, or with `like`'s shape and one shared network."""
    from backend.bank import random_bank
    from backend.hashing import gbuffer_tile_keys

    if like is not None:
        return random_bank(0, [], like.layers, bins=like.bins, tile_size=like.tile_size,
                           output_activation=like.output_activation, fallback="shared_network")
    keys = np.unique(np.concatenate([gbuffer_tile_keys(g).ravel() for g in frames]))
    return random_bank(0, keys[keys > 0], list(DEFAULT_LAYERS))


# The kernel's compile-time switches, timed side by side so the faster one can be kept.
PYCUDA_VARIANTS = {
    "pycuda": {},
    "pycuda-fp16w": {"weights": "float16"},  # half the shared memory and L2 traffic per network
    "pycuda-occ2": {"min_blocks_per_sm": 2},  # two resident blocks per SM, fewer registers per thread
}


def make_renderers(names, bank):
    """[(label, renderer, sync)] for the requested renderer names (pycuda: each kernel variant)."""
    from backend.renderers import get_renderer

    made = []
    for name in names:
        if name == "torch":
            device = torch_device()
            sync = lambda: None
            if device == "cuda":
                import torch

                sync = torch.cuda.synchronize
            made.append((f"torch-{device}", get_renderer("torch", bank, device=device), sync))
        elif name == "pycuda":
            made += [(label, get_renderer("pycuda", bank, **options), lambda: None)
                     for label, options in PYCUDA_VARIANTS.items()]
        else:
            made.append((name, get_renderer(name, bank), lambda: None))
    return made


def kernel_ms(renderer, gbuffer, seconds: float) -> float:
    """Median device time of the pycuda kernel alone (G-buffer already uploaded), in ms, by CUDA events."""
    cuda = renderer.cuda
    renderer.upload(gbuffer)
    with renderer.active():
        start, end = cuda.Event(), cuda.Event()

        def event_ms() -> float:
            start.record()
            renderer.launch()
            end.record()
            end.synchronize()
            return end.time_since(start)

        return median_of(event_ms, seconds)


def training_summary(bank) -> str:
    """How long training took to reach the validation PSNR the bank reports (from its provenance)."""
    provenance = bank.provenance
    best = next((h for h in provenance.get("history", []) if h["step"] == provenance.get("best_step")), None)
    if best is None:
        return "no training history in the bank"
    return (f"trained on {provenance.get('device', '?')}: best validation PSNR during training "
            f"{best['val_psnr']:.2f} dB reached at step "
            f"{best['step']} after {best['seconds']:.0f} s ({provenance.get('seconds', 0):.0f} s in all)")
