"""How the hash bank's gap to one shared network changes with the number of training views.

Usage: .venv/bin/python benchmarks/data_scaling.py --data DIR --train-views 8,16,32,64 --minutes 1.5 --out OUTDIR
       (or --steps N instead of --minutes)

Tests the hypothesis of docs/training.md ("What limits it"): the hash bank (one small MLP per
tile-key bucket) loses to one network of the same per-pixel cost (`single_cost`) because each
bucket sees too little data. For each N it writes `OUTDIR/views_N/dataset/`: a manifest.json that
keeps the original val and test lists and only the first N train indices (the other train samples
are dropped from "samples"), and a symlink to the original `samples/` folder. On it, the project's
own `backend.training.train` trains the hash bank and `single_cost` with the same budget, the same
way `train --baselines` does (the bucket store is built first, so bucket building does not eat
into either model's minutes). `backend.report.write_report` then scores both on the ORIGINAL
dataset's test views (the report is kept in `views_N/report/`).

The bucket threshold is the project default, a share of the training pixels (0.25%), so the number
of buckets stays roughly constant while the pixels per bucket grow with N.
Prints one row per N and writes OUTDIR/results.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backend.bank import SHARED_SLOT_KEY  # noqa: E402
from backend.buckets import BucketStore  # noqa: E402
from backend.dataset import open_dataset  # noqa: E402
from backend.report import write_report  # noqa: E402
from backend.bank import companion_path  # noqa: E402
from backend.training import TrainConfig, train  # noqa: E402

KINDS = ("hash_bank", "single_cost")


def subset_dataset(source: Path, n_train: int, folder: Path) -> Path:
    """A dataset folder holding the first n_train train samples of source and all its val and test."""
    manifest = json.loads((source / "manifest.json").read_text())
    split = manifest["split"]
    if n_train > len(split["train"]):
        raise SystemExit(f"{source}: only {len(split['train'])} train samples, asked for {n_train}")
    split = {**split, "train": split["train"][:n_train]}
    keep = set(split["train"]) | set(split["val"]) | set(split["test"])
    manifest = {**manifest, "split": split, "samples": [r for r in manifest["samples"] if r["index"] in keep]}
    folder.mkdir(parents=True, exist_ok=True)
    link = folder / "samples"
    if not link.is_symlink():
        link.symlink_to((source / "samples").resolve(), target_is_directory=True)
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return folder


def run_size(source: Path, n_train: int, out: Path, steps, minutes) -> dict:
    folder = out / f"views_{n_train}"
    data = subset_dataset(source, n_train, folder / "dataset")
    bank_path = folder / "bank" / "face.nfbank"
    configs = {kind: TrainConfig(data=str(data), steps=steps, minutes=minutes, kind=kind,
                                 out=str(bank_path if kind == "hash_bank" else
                                         companion_path(bank_path, f".{kind}.nfbank")))
               for kind in KINDS}
    dataset, config = open_dataset(data), configs["hash_bank"]
    bank_path.parent.mkdir(parents=True, exist_ok=True)
    BucketStore.beside(bank_path, dataset, config.tile_size, config.bins).update(dataset.indices("train"))
    trained = {}
    for kind, cfg in configs.items():
        result = train(cfg)
        trained[kind] = {"steps": result.steps, "seconds": round(result.seconds, 1), "val_psnr": result.val_psnr,
                         "stopped_early": result.stopped_early}
        print(f"  N={n_train} {kind}: {result.steps} steps, {result.seconds:.0f} s, val {result.val_psnr:.2f} dB",
              flush=True)
    metrics = write_report(bank_path, source, folder / "report")  # scored on the original test views
    head, buckets = metrics["headline"], metrics["buckets"]
    return {
        "train_views": n_train,
        "slots": buckets["slots"],
        "median_bucket_pixels": statistics.median(
            pixels for key, pixels in zip(buckets["slot_keys"], buckets["slot_pixels"]) if key != SHARED_SLOT_KEY),
        "hash_test_psnr": head["test_psnr"],
        "single_test_psnr": head["test_psnr_single_cost"],
        "gap_db": head["test_psnr_single_cost"] - head["test_psnr"],
        "unseen_key_share_test": head["unseen_key_share_test"],
        "hash_seam_step_ratio": head["seam_step_ratio_test"],
        "fallback": metrics["fallback"]["mode"],
        "training": trained,
    }


def table(rows: list[dict]) -> str:
    lines = ["train views | slots | median px/bucket | hash test PSNR | single test PSNR | gap dB | "
             "unseen test tiles | hash seam step ratio | steps hash/single",
             "---|---|---|---|---|---|---|---|---"]
    for r in rows:
        t = r["training"]
        lines.append(f"{r['train_views']} | {r['slots']} | {r['median_bucket_pixels']:.0f} | "
                     f"{r['hash_test_psnr']:.2f} | {r['single_test_psnr']:.2f} | {r['gap_db']:.2f} | "
                     f"{100 * r['unseen_key_share_test']:.1f}% | {r['hash_seam_step_ratio']:.2f} | "
                     f"{t['hash_bank']['steps']}/{t['single_cost']['steps']}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, type=Path, help="dataset folder (python -m backend generate)")
    parser.add_argument("--train-views", default="8,16,32,64", help="comma-separated train-set sizes")
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--minutes", type=float, help="wall-clock training budget per model")
    budget.add_argument("--steps", type=int, help="training steps per model instead")
    parser.add_argument("--out", required=True, type=Path, help="folder for the subset datasets, banks and reports")
    args = parser.parse_args()
    if args.minutes is None and args.steps is None:
        args.minutes = 1.5
    sizes = [int(n) for n in args.train_views.split(",")]
    budget = f"{args.minutes} min" if args.minutes else f"{args.steps} steps"
    print(f"data {args.data}, train views {sizes}, budget {budget} per model", flush=True)
    rows, started = [], time.monotonic()
    for n in sizes:
        rows.append(run_size(args.data, n, args.out, args.steps, args.minutes))
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "results.json").write_text(json.dumps(rows, indent=2))
    print(f"\n{table(rows)}\n\nPSNR on the original dataset's test views (face pixels, sRGB); gap = single - hash. "
          f"{time.monotonic() - started:.0f} s in all.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
