"""Resolution transfer: a bank trained at one resolution shading the same views at a multiple of it.

For the views of one split, renders their Cycles ground truth at --scale times the dataset's
resolution (same cameras: the focal length in pixels scales with the frame), traces their
G-buffers with the dataset's own tracer settings, and prints for the bank, at 1x and at the new
size: test PSNR (face pixels, pooled, display space, as the report scores) and the share of
shaded tiles whose key was never seen in training (they use the bank's fallback network).
At 2x every 16 px tile covers half the UV extent of a 1x tile, so its keys differ.

    .venv/bin/python benchmarks/resolution_transfer.py --scene example_scenes/cache/james.blend \\
        --data out/demo/dataset --bank out/demo/bank/face.nfbank [--scale 2] [--split test]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import bpy  # noqa: E402

from backend.bank import load_bank  # noqa: E402
from backend.dataset import open_dataset  # noqa: E402
from backend.evaluation import load_views, mean_psnr  # noqa: E402
from backend.tracer.samples import SampleTracer  # noqa: E402
from noise_ceiling import camera_of  # noqa: E402  (benchmarks/: this script's folder)
from blender_addon.ground_truth import render_ground_truth  # noqa: E402
from blender_addon.render_rig import RenderRig  # noqa: E402
from blender_addon.scene_setup import ensure_material, find_target, load_scene_file  # noqa: E402


def scaled_dataset(dataset, indices, scene: str, scale: int, out: Path) -> Path:
    """A dataset folder holding `indices` re-rendered at `scale` x the resolution (same scene/ export)."""
    settings = dataset.settings
    width, height = (side * scale for side in settings["resolution"])
    load_scene_file(scene)
    target = find_target(bpy.context.scene, settings["object"])
    ensure_material(target)
    (out / "samples").mkdir(parents=True)
    shutil.copytree(dataset.root / "scene", out / "scene")
    tracer = SampleTracer(out, settings["gbuffer_shadow_rays"])
    records = []
    with RenderRig(target, (width, height)) as rig:
        for i in indices:
            record = json.loads(json.dumps(dataset.record(i)))
            camera = camera_of(record)  # its lens gives the scaled focal length at the scaled width
            record.update(resolution=[width, height], camera=camera.to_record(width, height))
            render_ground_truth(rig, camera, record["lights"], str(out / record["ground_truth"]),
                                settings["gt_samples"], settings["gt_denoise"], seed=i)
            tracer(record)
            records.append(record)
            print(f"  view {i} rendered at {width}x{height}", flush=True)
    manifest = {**dataset.manifest, "settings": {**settings, "resolution": [width, height]}, "samples": records}
    (out / "manifest.json").write_text(json.dumps(manifest))
    return out


def score(bank, dataset, indices) -> tuple[float, float]:
    """(pooled PSNR, share of shaded tiles whose key had no bucket of its own): the report's measures."""
    from backend.report import unseen_share

    views = load_views(dataset, indices)
    return mean_psnr(bank, views), unseen_share(bank, views)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scene", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--bank", required=True, action="append", help="a bank to score (repeatable)")
    parser.add_argument("--scale", type=int, default=2)
    parser.add_argument("--split", default="test")
    args = parser.parse_args()
    dataset = open_dataset(args.data)
    indices = dataset.indices(args.split)
    with tempfile.TemporaryDirectory() as tmp:
        scaled = open_dataset(scaled_dataset(dataset, indices, args.scene, args.scale, Path(tmp) / "scaled"))
        width, height = dataset.resolution
        print(f"{len(indices)} {args.split} views, {width}x{height} and {width * args.scale}x{height * args.scale}")
        for path in args.bank:
            bank = load_bank(path)
            at_1x, at_nx = score(bank, dataset, indices), score(bank, scaled, indices)
            print(f"{Path(path).name}: {at_1x[0]:.2f} dB at 1x ({100 * at_1x[1]:.1f}% unseen tiles), "
                  f"{at_nx[0]:.2f} dB at {args.scale}x ({100 * at_nx[1]:.1f}% unseen tiles)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
