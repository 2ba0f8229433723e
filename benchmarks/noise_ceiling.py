"""The ceiling no model can pass: Cycles against itself.

For the views of one split, renders the ground truth a second time with another Cycles seed and
prints the PSNR between the two renders (face pixels, display space, pooled over the views, as
the report scores models). Each render is truth plus independent noise, so a model that predicted
the noise-free image exactly would score about 3 dB above this figure against one render.

With --bank, also prints the bank's PSNR against either render. The G-buffers are traced
(dataset versions 3 and 4) and carry no sampling noise of their own, so the ground truth's noise is
the only noise in the comparison.

    .venv/bin/python benchmarks/noise_ceiling.py --scene example_scenes/cache/james.blend \\
        --data out/demo/dataset [--bank out/demo/bank/face.nfbank] [--split test]
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
from blender_addon.ground_truth import render_ground_truth  # noqa: E402
from blender_addon.render_rig import RenderRig  # noqa: E402
from blender_addon.scene_setup import ensure_material, find_target, load_scene_file  # noqa: E402

SEED_OFFSET = 1_000_003  # any seed the dataset's own renders (seed = sample index) never use


def camera_of(record: dict) -> CameraSpec:
    """The sample's camera: its matrix and the lens that gives its recorded focal length."""
    width = record["resolution"][0]
    focal = record["camera"]["K"][0][0]
    return CameraSpec(np.array(record["camera"]["matrix_world"]), lens_mm=focal * DEFAULT_SENSOR_MM / width)


def rerender(dataset, indices, scene: str, out: Path) -> Path:
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
    args = parser.parse_args()
    dataset = open_dataset(args.data)
    indices = dataset.indices(args.split)
    with tempfile.TemporaryDirectory() as tmp:
        second = open_dataset(rerender(dataset, indices, args.scene, Path(tmp) / "second"))
        masks = {i: dataset.load_gbuffer(i).covered for i in indices}
        ceiling = pooled_psnr((ground_truth(second, i), ground_truth(dataset, i), masks[i]) for i in indices)
        print(f"noise ceiling ({len(indices)} {args.split} views, {dataset.settings['gt_samples']} spp"
              f"{' + denoiser' if dataset.settings['gt_denoise'] else ''}): Cycles vs Cycles {ceiling:.2f} dB")
        if args.bank:
            from backend.bank import load_bank
            from backend.renderers.torch_renderer import create

            renderer = create(load_bank(args.bank))
            frames = {i: renderer.render(dataset.load_gbuffer(i))[..., :3] for i in indices}
            for name, source in (("the dataset's render", dataset), ("the second render", second)):
                score = pooled_psnr((frames[i], ground_truth(source, i), masks[i]) for i in indices)
                print(f"bank against {name}: {score:.2f} dB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
