"""G-buffer tracer time against pixels and triangles: linear in pixels, flat in mesh size.

Usage: .venv/bin/python benchmarks/bench_tracer.py [--sizes 128 256 512] [--levels 0 1 2] [--views 3]

The example face (`make example` builds it), subdivided 0, 1 and 2 times (12k, 73k and 293k
triangles), is exported as Generate Dataset exports it (blender_addon/scene_export.evaluated_mesh)
and traced from the dataset's random cameras and lights (two lights, 16 shadow rays). Prints the
median time per frame and per megapixel, by stage (each stage's time summed over the tracer's
threads, so they can add up to more than the frame), and the build time of the ray-tracing structure.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import bpy
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SCENE = ROOT / "example_scenes" / "cache" / "james.blend"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256, 512])
    parser.add_argument("--levels", type=int, nargs="+", default=[0, 1, 2], help="subdivision levels")
    parser.add_argument("--views", type=int, default=3, help="timed views per size (after one warm-up)")
    args = parser.parse_args()
    if not SCENE.is_file():
        print(f"{SCENE} is missing: build it first with `make example`", file=sys.stderr)
        return 2
    from backend.dataset import lights_array
    from backend.tracer import TracedScene, get_tracer
    from backend.tracer.embree_tracer import STAGES
    from blender_addon.camera_model import CameraSpec
    from blender_addon.dataset_settings import DatasetSettings
    from blender_addon.sampling import sample_view
    from blender_addon.scene_export import evaluated_mesh
    from blender_addon.scene_setup import bounds, find_target, load_scene_file

    load_scene_file(str(SCENE))
    face = find_target(bpy.context.scene)
    centre, radius = bounds(face)
    settings = DatasetSettings(lights=(2, 2))
    modifier = face.modifiers.new("bench", "SUBSURF")
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (other work changes every figure)")
    print(f"{'triangles':>9} {'build ms':>8} | " + " | ".join(f"{s:>4} px: ms (ms/MP)" for s in args.sizes)
          + " | stages at the largest size (ms)")
    for level in args.levels:
        modifier.levels = modifier.render_levels = level
        mesh = evaluated_mesh(face)
        start = time.perf_counter()
        tracer = get_tracer(TracedScene(**mesh, albedo=np.full((64, 64, 3), 0.5, np.float32)))
        build_ms = 1000 * (time.perf_counter() - start)
        views = [sample_view(settings, centre, radius, i) for i in range(args.views + 1)]
        cells, stages = [], {}
        for size in args.sizes:
            times = []
            for i, (matrix, lights) in enumerate(views):
                camera = CameraSpec(matrix).to_record(size, size)
                tracer.trace(camera, lights_array(lights, "bench"), (size, size))
                if i > 0:
                    times.append(1000 * tracer.seconds["total"])
                    for stage in STAGES:
                        stages.setdefault(stage, []).append(1000 * tracer.seconds[stage])
            median = statistics.median(times)
            cells.append(f"{median:8.1f} ({median / (size * size / 1e6):5.0f})")
            if size != args.sizes[-1]:
                stages = {}
        stage_text = ", ".join(f"{k} {statistics.median(v):.1f}" for k, v in stages.items())
        print(f"{len(mesh['triangles']):9d} {build_ms:8.1f} | " + " | ".join(cells) + f" | {stage_text}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
