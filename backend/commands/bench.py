"""`python -m backend bench`: milliseconds per frame of each renderer on the same bank and G-buffers.

Frames are the analytic sphere G-buffer (backend.synthetic) at each size; the bank is the one given
or a random bank with a network for every tile key those frames contain. For each size and
renderer it prints ms/frame (median), the ratio to the torch renderer measured in the same run,
and on CUDA the kernel's achieved bandwidth and FLOP/s as a share of the device's peak (the peak
figures and how they were derived are printed). The last block compares the hash bank with a
one-network bank at the largest size: what per-tile routing costs.
"""

from __future__ import annotations

import os

from backend.commands.argument_types import positive_float, positive_int
from backend.errors import UserError
from backend.renderer_bench import (STAGES, Work, cuda_peak, kernel_ms, make_renderers, median_ms, random_bench_bank,
                                    stage_medians, torch_device, training_summary)

RENDERER_CHOICES = ("torch", "pycuda", "emulated", "all")
GPU_SIZES = "512,1920x1080,3840x2160"
CPU_SIZES = "256,512"
MAX_SIDE = 8192  # 4x the largest default frame; a 64-megapixel G-buffer already takes 4 GB
EMULATED_MAX_PIXELS = 1024 * 1024  # beyond this the CPU emulation takes minutes: skipped under "all"


def add_arguments(parser) -> None:
    parser.add_argument("--bank", help="weight bank (.nfbank); default: a random bank over the frames' tile keys")
    parser.add_argument("--renderer", choices=RENDERER_CHOICES, default="all",
                        help="renderer(s) to time (default all that this machine can run)")
    parser.add_argument("--sizes", help=f"comma-separated N (NxN) or WxH; default {GPU_SIZES} with CUDA, "
                                        f"else {CPU_SIZES}")
    parser.add_argument("--lights", type=positive_int, default=1, help="lights per frame (default 1)")
    parser.add_argument("--seconds", type=positive_float, default=1.0, help="time spent per measurement (default 1)")
    parser.add_argument("--threads", type=positive_int, help="torch CPU threads (default: torch's own choice)")


def parse_sizes(text: str) -> list[tuple[int, int]]:
    """"512,1920x1080" -> [(512, 512), (1920, 1080)] as (width, height)."""
    sizes = []
    for item in text.split(","):
        parts = item.strip().lower().split("x")
        try:
            w, h = (int(parts[0]), int(parts[0])) if len(parts) == 1 else (int(parts[0]), int(parts[1]))
        except (ValueError, IndexError):
            raise UserError(f"--sizes: {item!r} is not N or WxH") from None
        if not (1 <= w <= MAX_SIDE and 1 <= h <= MAX_SIDE) or len(parts) > 2:
            raise UserError(f"--sizes: {item!r} is not a positive N or WxH of 1..{MAX_SIDE} pixels a side")
        sizes.append((w, h))
    return sizes


def skipped(label: str, size, args) -> bool:
    """The CPU emulation is left out of large frames unless asked for by name."""
    return label == "emulated" and args.renderer == "all" and size[0] * size[1] > EMULATED_MAX_PIXELS


def run(args) -> int:
    from backend.bank import bank_summary, load_bank
    from backend.synthetic import sphere_gbuffer

    from backend.renderers.pycuda_renderer import cuda_available

    has_cuda = cuda_available() or torch_device() == "cuda"
    sizes = parse_sizes(args.sizes or (GPU_SIZES if has_cuda else CPU_SIZES))
    names = ["torch", "pycuda", "emulated"] if args.renderer == "all" else [args.renderer]
    if args.renderer == "all" and not cuda_available():
        names.remove("pycuda")
        print("pycuda: skipped (no PyCUDA or no CUDA device)")
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch CPU threads: {torch.get_num_threads()}; lights per frame: {args.lights}")
    frames = [sphere_gbuffer(h, w, n_lights=args.lights, seed=0) for w, h in sizes]
    bank = load_bank(args.bank) if args.bank else random_bench_bank(frames)
    print(f"bank: {'random, ' if not args.bank else args.bank + ': '}{bank_summary(bank)}")
    if args.bank:
        print(f"bank file: {os.path.getsize(args.bank) / 1024:.0f} KB; {training_summary(bank)}")
    peak = cuda_peak() if has_cuda else None
    if peak:
        print(f"device: {peak.how}")
    print("work per frame: bytes = G-buffer planes read + background + RGBA out + one network per shaded tile; "
          "FLOPs = 2 x MLP multiply-adds x covered pixels x lights")
    renderers = make_renderers(names, bank)
    header = f"{'size':>10} {'covered':>9} {'tiles':>6} {'slots':>5}  {'renderer':<12} {'ms/frame':>9} {'ns/px':>6} " \
             f"{'vs torch':>9} {'kernel ms':>9} {'GB/s':>7} {'%bw':>5} {'GFLOP/s':>8} {'%fp32':>6}"
    print(header)
    for (w, h), gbuffer in zip(sizes, frames):
        work = Work.of(bank, gbuffer)
        torch_ms = None
        for label, renderer, sync in renderers:
            if skipped(label, (w, h), args):
                continue
            ms = median_ms(lambda: renderer.render(gbuffer), args.seconds, sync)
            torch_ms = ms if label.startswith("torch") else torch_ms
            ratio = f"{torch_ms / ms:8.1f}x" if torch_ms and not label.startswith("torch") else f"{'':>9}"
            line = (f"{w:>5}x{h:<4} {int(gbuffer.covered.sum()):>9} {work.shaded_tiles:>6} {work.slots_used:>5}  "
                    f"{label:<12} {ms:9.2f} {ms * 1e6 / (w * h):6.1f} {ratio}")
            on_pycuda = label.startswith("pycuda")
            timed_ms = kernel_ms(renderer, gbuffer, args.seconds) if on_pycuda else ms
            if peak and (on_pycuda or label == "torch-cuda"):
                bw, fl = work.bytes / (timed_ms * 1e-3), work.flops / (timed_ms * 1e-3)
                kernel = f"{timed_ms:9.3f}" if on_pycuda else f"{'':>9}"
                line += (f" {kernel} {bw / 1e9:7.1f} {100 * bw / peak.bandwidth:5.1f} {fl / 1e9:8.1f} "
                         f"{100 * fl / peak.flops:6.2f}")
            print(line, flush=True)
    print("vs torch: torch renderer time / this renderer's time, same bank and frame, this run. GB/s and "
          "GFLOP/s use the kernel-only time for pycuda and the whole frame for torch-cuda. "
          "pycuda-fp16w: weights stored as fp16; pycuda-occ2: registers capped for 2 blocks per SM.")
    print_stages(renderers, sizes, frames, args)
    largest = max(range(len(sizes)), key=lambda i: sizes[i][0] * sizes[i][1])
    routing_cost(renderers, names, bank, frames[largest], sizes[largest], args)
    return 0


def print_stages(renderers, sizes, frames, args) -> None:
    """The torch renderer's median ms per stage at each size (setup: tile keys, pixel order, planes)."""
    for label, renderer, _ in renderers:
        if not label.startswith("torch"):
            continue
        for (w, h), gbuffer in zip(sizes, frames):
            stages = stage_medians(renderer, gbuffer, args.seconds)
            parts = "  ".join(f"{stage} {stages[stage]:.2f}" for stage in STAGES)
            print(f"stages: {label} {w}x{h}, median ms: {parts}  (sum {sum(stages.values()):.2f})", flush=True)


def routing_cost(renderers, names, bank, gbuffer, size, args) -> None:
    """Hash bank vs a one-network bank of the same layers on the largest frame."""
    single = random_bench_bank([gbuffer], like=bank)
    print(f"routing: {size[0]}x{size[1]}, {Work.of(bank, gbuffer).slots_used} networks vs 1 network of the same layers")
    for (label, renderer, sync), (_, single_renderer, _) in zip(renderers, make_renderers(names, single)):
        if skipped(label, size, args):
            continue
        routed = median_ms(lambda: renderer.render(gbuffer), args.seconds, sync)
        shared = median_ms(lambda: single_renderer.render(gbuffer), args.seconds, sync)
        print(f"  {label:<12} {routed:9.2f} ms with routing, {shared:9.2f} ms with one network ({routed / shared:.2f}x)")
