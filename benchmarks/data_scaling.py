"""How the hash bank's gap to one shared network changes with the number of training views.

Usage: .venv/bin/python benchmarks/data_scaling.py --data DIR --train-views 8,16,32,64 --minutes 1.5 --out OUTDIR
       (or --steps N instead of --minutes)
Today's recipe (a neural-texture teacher on the N labelled views, every model of the students
started from it and trained on the labelled + teacher-labelled pixels):
       .venv/bin/python benchmarks/data_scaling.py --data DIR --train-views 32,64,128 --out OUTDIR \
           --teacher-steps 2000 --steps 1500 --eval-every 250 --patience 0 --threads 1 [--seed S]

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

With --teacher-steps (the recipe since issue 9, docs/training.md "The recipe since feature spec 2"):
the subset keeps every unlabelled view of the source; a teacher of --teacher-kind (default
neural_texture) is trained for that many steps on the N labelled views (`face.teacher.nfbank`),
then the hash bank and `single_cost` (the student budget: --steps or --minutes) start from it and
train on the labelled pixels plus its labels of the unlabelled views, as teacher_students.py does.
All three are scored on the source's test views with backend.evaluation.mean_psnr (pooled over
the face pixels, as the report's test PSNR), also split into tiles whose key had a network of its
own in the hash bank and tiles that fall back. No report is written in this mode. Without
--teacher-steps the old mode runs unchanged (no unlabelled views, no teacher, random starts).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from backend.bank import SHARED_SLOT_KEY, load_bank  # noqa: E402
from backend.buckets import BucketStore  # noqa: E402
from backend.dataset import UNLABELLED, open_dataset  # noqa: E402
from backend.evaluation import load_views, mean_psnr, render_views  # noqa: E402
from backend.hashing import gbuffer_tile_keys, pixel_tile_map  # noqa: E402
from backend.metrics import psnr_from_mse, to_display  # noqa: E402
from backend.model_kinds import HASH_BANK, NEURAL_TEXTURE, SINGLE_COST, TEACHER_KINDS, companion_suffix  # noqa: E402
from backend.prefilter import FilterRadii  # noqa: E402
from backend.report import unseen_share, write_report  # noqa: E402
from backend.bank import companion_path  # noqa: E402
from backend.teacher_labels import teacher_path  # noqa: E402
from backend.training import TrainConfig, train, with_bins  # noqa: E402

KINDS = (HASH_BANK, SINGLE_COST)


def subset_dataset(source: Path, n_train: int, folder: Path, unlabelled: bool = False) -> Path:
    """A dataset folder holding the first n_train train samples of source and all its val and test
    (and, with unlabelled, all its unlabelled views)."""
    manifest = json.loads((source / "manifest.json").read_text())
    split = manifest["split"]
    if n_train > len(split["train"]):
        raise SystemExit(f"{source}: only {len(split['train'])} train samples, asked for {n_train}")
    split = {**split, "train": split["train"][:n_train]}
    keep = set(split["train"]) | set(split["val"]) | set(split["test"])
    if unlabelled:
        keep |= {r["index"] for r in manifest["samples"] if r.get("split") == UNLABELLED}
    elif UNLABELLED in split:  # the old mode: labelled views only, so no teacher is trained
        split = {**split, UNLABELLED: []}
    manifest = {**manifest, "split": split, "samples": [r for r in manifest["samples"] if r["index"] in keep]}
    folder.mkdir(parents=True, exist_ok=True)
    link = folder / "samples"
    if not link.is_symlink():
        link.symlink_to((source / "samples").resolve(), target_is_directory=True)
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return folder


def same_bins(configs: dict) -> dict:
    """Every model keyed with the bins the hash bank's `--bins auto` chooses, so that all read one bucket store."""
    bins = with_bins(configs[HASH_BANK])[0].bins
    return {name: dataclasses.replace(config, bins=bins) for name, config in configs.items()}


def run_size(source: Path, n_train: int, out: Path, steps, minutes) -> dict:
    folder = out / f"views_{n_train}"
    data = subset_dataset(source, n_train, folder / "dataset")
    bank_path = folder / "bank" / "face.nfbank"
    configs = {kind: TrainConfig(data=str(data), steps=steps, minutes=minutes, kind=kind,
                                 out=str(bank_path if kind == HASH_BANK else
                                         companion_path(bank_path, companion_suffix(kind))))
               for kind in KINDS}
    configs = same_bins(configs)
    dataset, config = open_dataset(data), configs[HASH_BANK]
    bank_path.parent.mkdir(parents=True, exist_ok=True)
    BucketStore.beside(bank_path, dataset, config.tile_size, config.bins,
                       FilterRadii.for_object(dataset.bounding_radius)).update(dataset.indices("train"))
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


def split_psnr(bank, views, seen_of) -> dict:
    """Pooled test PSNR of bank over all face pixels, and over the pixels of tiles whose key had a
    network of its own (seen_of(view): bool [H, W], the hash bank's lut_seen per pixel) and the rest."""
    sums = {"seen": [0.0, 0], "unseen": [0.0, 0]}
    for view, frame in zip(views, render_views(bank, views)):
        seen = seen_of(view)
        diff2 = (to_display(frame) - to_display(view.ground_truth)).astype(np.float64) ** 2
        for name, part in (("seen", view.mask & seen), ("unseen", view.mask & ~seen)):
            sums[name][0] += float(diff2[part].sum())
            sums[name][1] += int(part.sum()) * 3
    return {name: psnr_from_mse(total / max(count, 1)) for name, (total, count) in sums.items()}


def run_size_teacher(source: Path, n_train: int, out: Path, args) -> dict:
    """Today's recipe at N train views: teacher, then the hash bank and single_cost started from it."""
    folder = out / (f"views_{n_train}" + (f"_seed{args.seed}" if args.seed else ""))
    data = subset_dataset(source, n_train, folder / "dataset", unlabelled=True)
    bank_path = folder / "bank" / "face.nfbank"
    teacher = teacher_path(bank_path)
    common = dict(data=str(data), eval_every=args.eval_every, patience=args.patience, seed=args.seed,
                  checkpoint_every=10**6)
    configs = {"teacher": TrainConfig(out=str(teacher), kind=args.teacher_kind, teacher=None,
                                      steps=args.teacher_steps, **common)}
    for kind in KINDS:
        configs[kind] = TrainConfig(out=str(bank_path if kind == HASH_BANK else
                                            companion_path(bank_path, companion_suffix(kind))),
                                    kind=kind, teacher=str(teacher), steps=args.steps, minutes=args.minutes, **common)
    configs = same_bins(configs)
    dataset = open_dataset(data)
    bank_path.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    BucketStore.beside(bank_path, dataset, configs[HASH_BANK].tile_size, configs[HASH_BANK].bins,
                       FilterRadii.for_object(dataset.bounding_radius)).update(dataset.indices("train"))
    setup_s = time.monotonic() - started
    log = folder / "training.json"
    trained = json.loads(log.read_text()) if log.exists() else {}
    for name, cfg in configs.items():
        if name in trained and Path(cfg.out).exists():  # a finished model of an interrupted run
            continue
        start = time.monotonic()
        result = train(cfg)
        trained[name] = {"steps": result.steps, "seconds": round(result.seconds, 1),
                         "wall_s": round(time.monotonic() - start, 1), "val_psnr": round(result.val_psnr, 3),
                         "stopped_early": result.stopped_early}
        log.write_text(json.dumps(trained, indent=1))
        print(f"  N={n_train} seed {args.seed} {name}: {result.steps} steps, {result.seconds:.0f} s training, "
              f"{trained[name]['wall_s']:.0f} s wall, val {result.val_psnr:.2f} dB", flush=True)
    test_views = load_views(open_dataset(source), open_dataset(source).indices("test"))
    banks = {name: load_bank(cfg.out) for name, cfg in configs.items()}
    hash_bank = banks[HASH_BANK]

    def seen_of(view):
        keys = gbuffer_tile_keys(view.gbuffer, hash_bank.tile_size, hash_bank.bins)
        known = hash_bank.lut_seen[keys].astype(bool) & (keys > 0)
        return pixel_tile_map(known, *view.mask.shape, hash_bank.tile_size)

    test = {name: mean_psnr(bank, test_views) for name, bank in banks.items()}
    split = {name: split_psnr(bank, test_views, seen_of) for name, bank in banks.items()}
    provenance = hash_bank.provenance
    return {
        "train_views": n_train, "seed": args.seed, "recipe": f"teacher {args.teacher_kind}",
        "slots": hash_bank.n_slots,
        "median_bucket_pixels": statistics.median(
            pixels for key, pixels in zip(hash_bank.slot_keys, hash_bank.slot_pixels) if key != SHARED_SLOT_KEY),
        "teacher_test_psnr": test["teacher"], "hash_test_psnr": test[HASH_BANK],
        "single_test_psnr": test[SINGLE_COST], "gain_db": test[HASH_BANK] - test[SINGLE_COST],
        "test_psnr_seen_unseen_tiles": split,
        "unseen_key_share_test": unseen_share(hash_bank, test_views),
        "teacher_pixels": provenance.get("teacher_pixels"), "train_pixels": provenance.get("train_pixels"),
        "specialists_replaced": provenance.get("specialists_replaced"),
        "specialists_judged": provenance.get("specialists_judged"),
        "bucket_setup_s": round(setup_s, 1), "training": trained,
    }


def table_teacher(rows: list[dict]) -> str:
    lines = ["train views | seed | networks | median px/bucket | teacher | hash bank | single_cost | gain dB | "
             "hash/single on seen-key tiles | unseen test tiles | steps teacher/hash/single",
             "---|---|---|---|---|---|---|---|---|---|---"]
    for r in rows:
        t, sp = r["training"], r["test_psnr_seen_unseen_tiles"]
        lines.append(f"{r['train_views']} | {r['seed']} | {r['slots']} | {r['median_bucket_pixels']:.0f} | "
                     f"{r['teacher_test_psnr']:.2f} | {r['hash_test_psnr']:.2f} | {r['single_test_psnr']:.2f} | "
                     f"{r['gain_db']:+.2f} | {sp['hash_bank']['seen']:.2f}/{sp['single_cost']['seen']:.2f} | "
                     f"{100 * r['unseen_key_share_test']:.1f}% | "
                     f"{t['teacher']['steps']}/{t['hash_bank']['steps']}/{t['single_cost']['steps']}")
    return "\n".join(lines)


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
    parser.add_argument("--teacher-steps", type=int,
                        help="today's recipe: train a teacher this many steps on the N labelled views, keep the "
                             "unlabelled views, start the students from it (--steps: the students' budget)")
    parser.add_argument("--teacher-kind", default=NEURAL_TEXTURE, choices=TEACHER_KINDS)
    parser.add_argument("--eval-every", type=int, help="teacher mode: validation interval in steps (default: training's)")
    parser.add_argument("--patience", type=int, help="teacher mode: evaluations without gain before stopping; 0 never (default: training's)")
    parser.add_argument("--seed", type=int, default=0, help="teacher mode: training seed (folder views_N_seedS)")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    args = parser.parse_args()
    if args.minutes is None and args.steps is None:
        args.minutes = 1.5
    if args.threads:
        torch.set_num_threads(args.threads)
    defaults = TrainConfig(data="", out="")
    args.eval_every = args.eval_every or defaults.eval_every
    args.patience = defaults.patience if args.patience is None else args.patience
    sizes = [int(n) for n in args.train_views.split(",")]
    budget = f"{args.minutes} min" if args.minutes else f"{args.steps} steps"
    print(f"data {args.data}, train views {sizes}, budget {budget} per model", flush=True)
    rows, started = [], time.monotonic()
    for n in sizes:
        if args.teacher_steps:
            rows.append(run_size_teacher(args.data, n, args.out, args))
        else:
            rows.append(run_size(args.data, n, args.out, args.steps, args.minutes))
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "results.json").write_text(json.dumps(rows, indent=2))
    if args.teacher_steps:
        print(f"\n{table_teacher(rows)}\n\nPSNR pooled over the original dataset's test views' face pixels "
              f"(sRGB, backend.evaluation.mean_psnr); gain = hash - single. {time.monotonic() - started:.0f} s in all.")
    else:
        print(f"\n{table(rows)}\n\nPSNR on the original dataset's test views (face pixels, sRGB); gap = single - hash. "
              f"{time.monotonic() - started:.0f} s in all.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
