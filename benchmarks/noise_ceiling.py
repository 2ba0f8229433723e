"""The ceiling no model can pass: Cycles against itself, and what the light passes' noise costs.

For the views of one split, renders the ground truth a second time with another Cycles seed and
prints the PSNR between the two renders (face pixels, display space, pooled over the views, as
the report scores models). Each render is truth plus independent noise, so a model that predicted
the noise-free image exactly would score about 3 dB above this figure against one render.

With --bank, also renders the views' G-buffers with --light-samples shadow samples instead of the
dataset's, and prints the bank's PSNR with both: the difference is what the light passes' own
noise costs (a G-buffer setting, `generate --light-samples`).

    .venv/bin/python benchmarks/noise_ceiling.py --scene example_scenes/cache/james.blend \\
        --data out/demo/dataset [--bank out/demo/bank/face.nfbank] [--split test] [--light-samples 64]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import bpy  # noqa: E402

from backend.dataset import open_dataset  # noqa: E402
from backend.metrics import psnr_from_mse, to_display  # noqa: E402
from blender_addon.camera_model import DEFAULT_SENSOR_MM, CameraSpec  # noqa: E402
from blender_addon.gbuffer import render_gbuffer  # noqa: E402
from blender_addon.ground_truth import render_ground_truth  # noqa: E402
from blender_addon.render_rig import RenderRig  # noqa: E402
from blender_addon.scene_setup import ensure_material, find_target, load_scene_file  # noqa: E402

SEED_OFFSET = 1_000_003  # any seed the dataset's own renders (seed = sample index) never use


def camera_of(record: dict) -> CameraSpec:
    """The sample's camera: its matrix and the lens that gives its recorded focal length."""
    width = record["resolution"][0]
    focal = record["camera"]["K"][0][0]
    return CameraSpec(np.array(record["camera"]["matrix_world"]), lens_mm=focal * DEFAULT_SENSOR_MM / width)


def rerender(dataset, indices, scene: str, out: Path, light_samples: int | None) -> Path:
    """A copy of the dataset's records for `indices` whose files are fresh renders with new seeds."""
    settings = dataset.settings
    load_scene_file(scene)
    target = find_target(bpy.context.scene, settings["object"])
    ensure_material(target)
    (out / "samples").mkdir(parents=True)
    records = []
    with RenderRig(target, tuple(settings["resolution"])) as rig:
        for i in indices:
            record = dict(dataset.record(i))
            camera, lights, seed = camera_of(record), record["lights"], i + SEED_OFFSET
            render_ground_truth(rig, camera, lights, str(out / record["ground_truth"]), settings["gt_samples"],
                                settings["gt_denoise"], seed=seed)
            if light_samples:
                render_gbuffer(rig, camera, lights, str(out / record["gbuffer"]), light_samples, seed=seed)
            else:
                record["gbuffer"] = str(Path(dataset.root, record["gbuffer"]))
            records.append(record)
            print(f"  view {i} rendered", flush=True)
    manifest = {**dataset.manifest, "samples": records}
    (out / "manifest.json").write_text(json.dumps(manifest))
    return out


def pooled_psnr(pairs) -> float:
    squared, count = 0.0, 0
    for prediction, target, mask in pairs:
        diff = to_display(prediction)[mask] - to_display(target)[mask]
        squared += float(np.sum(diff.astype(np.float64) ** 2))
        count += diff.size
    return psnr_from_mse(squared / max(count, 1))


def ground_truth(dataset, i) -> np.ndarray:
    return dataset.load_ground_truth(i)[:3].transpose(1, 2, 0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scene", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--bank", default=None)
    parser.add_argument("--split", default="test")
    parser.add_argument("--light-samples", type=int, default=64)
    args = parser.parse_args()
    dataset = open_dataset(args.data)
    indices = dataset.indices(args.split)
    with tempfile.TemporaryDirectory() as tmp:
        second = open_dataset(rerender(dataset, indices, args.scene, Path(tmp) / "second",
                                       args.light_samples if args.bank else None))
        masks = {i: dataset.load_gbuffer(i).covered for i in indices}
        ceiling = pooled_psnr((ground_truth(second, i), ground_truth(dataset, i), masks[i]) for i in indices)
        print(f"noise ceiling ({len(indices)} {args.split} views, {dataset.settings['gt_samples']} spp"
              f"{' + denoiser' if dataset.settings['gt_denoise'] else ''}): Cycles vs Cycles {ceiling:.2f} dB")
        if args.bank:
            from backend.bank import load_bank
            from backend.renderers.torch_renderer import create

            renderer = create(load_bank(args.bank))
            for name, source in ((f"{dataset.settings['gbuffer_light_samples']} light samples (dataset)", dataset),
                                 (f"{args.light_samples} light samples", second)):
                score = pooled_psnr((renderer.render(source.load_gbuffer(i))[..., :3], ground_truth(dataset, i),
                                     masks[i]) for i in indices)
                print(f"bank with {name}: {score:.2f} dB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
