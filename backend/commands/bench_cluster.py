"""`python -m backend bench-cluster`: the cost of rendering through Ray on one machine.

Renders the same dataset three times with `generate`: locally, on a throwaway local Ray cluster
with one worker of all cores (`--cluster local:1`: the same layout, so the difference is Ray's
overhead), and with one single-threaded worker per core (`local:C`). Prints wall times, the
overhead ratio, the bytes each sample sends back and how fast the driver commits samples, which
bounds the scaling across machines (docs/cluster.md).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from backend.commands.example import ensure_example

SUMMARY = re.compile(r"cluster: (\d+) samples in ([\d.]+) s on (\d+) workers after a ([\d.]+) s start; "
                     r"(\d+) KiB received per sample; driver commits (\d+|inf) samples/s \((\d+|inf) MiB/s\)")


def add_arguments(parser) -> None:
    parser.add_argument("--samples", type=int, default=16, help="samples per run (default 16)")
    parser.add_argument("--resolution", type=int, default=192, help="square resolution (default 192)")
    parser.add_argument("--gt-samples", type=int, default=32, help="ground-truth Cycles samples (default 32)")
    parser.add_argument("--scene", type=Path, default=None, help="scene file (default: the example face)")


def generate(args, scene: Path, out: Path, *cluster: str) -> tuple[float, str]:
    command = [sys.executable, "-m", "backend", "generate", "--scene", str(scene), "--out", str(out),
               "--samples", str(args.samples), "--resolution", str(args.resolution),
               "--gt-samples", str(args.gt_samples), *cluster]
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"bench-cluster: {' '.join(command)} failed:\n{result.stderr[-2000:]}")
    return seconds, result.stderr


def render_seconds(out: Path) -> float:
    """The local run's time inside Cycles, summed over samples (its wall time less start-up)."""
    samples = json.loads((out / "manifest.json").read_text())["samples"]
    return sum(sum(record["seconds"].values()) for record in samples)


def run(args) -> int:
    scene = args.scene or ensure_example()
    cores = os.cpu_count() or 1
    print(f"scene {scene.name}, {args.samples} samples at {args.resolution}x{args.resolution}, ground truth "
          f"{args.gt_samples} spp + OIDN, {cores} cores; each run a fresh `generate` process")
    with tempfile.TemporaryDirectory(prefix="nf-bench-cluster-") as folder:
        local_wall, _ = generate(args, scene, Path(folder) / "local")
        local_render = render_seconds(Path(folder) / "local")
        print(f"local                    : {local_wall:6.1f} s wall ({local_render:.1f} s rendering)")
        starts = []
        for workers in sorted({1, cores}):
            wall, log = generate(args, scene, Path(folder) / f"ray{workers}", "--cluster", f"local:{workers}")
            match = SUMMARY.search(log)
            if match is None:
                raise SystemExit(f"bench-cluster: no summary line in the cluster run's output:\n{log[-2000:]}")
            _, rendering, _, start, kib, commits, mib = match.groups()
            starts.append(float(start))
            label = f"Ray local:{workers} ({workers} x {cores // workers} threads)"
            print(f"{label:25s}: {wall:6.1f} s wall, overhead ratio {wall / local_wall:.2f}x "
                  f"(start {float(start):.1f} s, rendering {float(rendering):.1f} s = "
                  f"{float(rendering) / local_render:.2f}x local rendering)")
        print(f"fixed start-up           : {max(starts):.1f} s (Ray, workers, bpy, scene): under 15% of any run "
              f"with more than {max(starts) / 0.15:.0f} s of local rendering")
        print(f"per-sample transfer      : {kib} KiB (G-buffer + ground truth EXR, worker to driver)")
        print(f"driver write rate        : {commits} samples/s ({mib} MiB/s), files fsynced, manifest rewritten "
              "per sample")
    return 0
