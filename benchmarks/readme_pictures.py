"""The README's two pictures, from a finished `make demo`: one test view and 4x crops of it.

`demo_test_view.png`: Cycles | hash bank | one network of the same per-pixel cost, their FLIP
error maps below. `demo_crops.png`: a square of the same view in the same order, enlarged 4x
(nearest neighbour, so tile seams would show as they are).

    .venv/bin/python benchmarks/readme_pictures.py --demo out/demo [--view 11] [--crop ROW,COL,SIZE]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backend.bank import companion_path, load_bank  # noqa: E402
from backend.dataset import open_dataset  # noqa: E402
from backend.evaluation import load_views, render_views  # noqa: E402
from backend.metrics import flip_map  # noqa: E402
from backend.model_kinds import SINGLE_COST, companion_suffix  # noqa: E402
from backend.report_figures import error_picture, frame_picture, save_png  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--demo", default="out/demo", help="the demo's output folder (default out/demo)")
    parser.add_argument("--view", type=int, help="test sample index (default: the first test view)")
    parser.add_argument("--crop", help="ROW,COL,SIZE of the crop (default: a quarter-frame square at the face's centre)")
    parser.add_argument("--out", default=str(ROOT / "docs" / "images"), help="folder for the two PNGs")
    args = parser.parse_args()

    demo = Path(args.demo)
    dataset = open_dataset(demo / "dataset")
    index = args.view if args.view is not None else dataset.indices("test")[0]
    [view] = load_views(dataset, [index])
    bank_path = demo / "bank" / "face.nfbank"
    banks = [load_bank(bank_path), load_bank(companion_path(bank_path, companion_suffix(SINGLE_COST)))]
    frames = [render_views(bank, [view])[0][..., :3] for bank in banks]
    mask = view.mask
    pictures = [frame_picture(view.ground_truth)] + [frame_picture(f) for f in frames]
    errors = [np.zeros_like(pictures[0])] + [error_picture(flip_map(f, view.ground_truth), mask) for f in frames]
    out = Path(args.out)
    save_png(np.concatenate([np.concatenate(pictures, axis=1), np.concatenate(errors, axis=1)], axis=0),
             out / "demo_test_view.png")

    height, width = mask.shape
    if args.crop:
        row, col, size = (int(v) for v in args.crop.split(","))
    else:
        rows, cols = np.nonzero(mask)
        size = min(height, width) // 4
        row = int(np.clip(rows.mean() - size / 2, 0, height - size))
        col = int(np.clip(cols.mean() - size / 2, 0, width - size))
    crops = [p[row : row + size, col : col + size] for p in pictures]
    save_png(np.concatenate(crops, axis=1), out / "demo_crops.png", scale=4)
    print(f"test view {index}, crop rows {row}..{row + size}, cols {col}..{col + size}: {out}/demo_test_view.png, "
          f"{out}/demo_crops.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
