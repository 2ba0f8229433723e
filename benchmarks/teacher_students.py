"""Teachers x students at fixed step budgets (docs/training.md, "Distilling from a stronger teacher").

    .venv/bin/python benchmarks/teacher_students.py --data DATA --out OUT --teacher nt \
        --teacher-steps 4000 --student-steps 3000 --students hash_bank,single_cost

Trains one teacher on the labelled views (sc: one network of the students' layers; nt: a neural
texture, a learned UV feature grid in front of the same network; wide: one network of
--wide-widths), then every student on the labelled views plus the teacher's labels of the
unlabelled views, started as `--start` says (teacher: copy or fold the teacher; none: random;
a path: that bank). Every model is scored on the test views with the training code's own
evaluation (backend.evaluation.mean_psnr: one MSE over every face pixel of the split, as the
report's pooled test PSNR). One JSON line per model is appended to OUT/results.jsonl.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from backend.bank import load_bank
from backend.dataset import open_dataset
from backend.evaluation import load_views, mean_psnr
from backend.model_kinds import HASH_BANK, NEURAL_TEXTURE, SINGLE_COST
from backend.training import TrainConfig, train

TEACHERS = {"sc": dict(kind=SINGLE_COST), "nt": dict(kind=NEURAL_TEXTURE), "wide": dict(kind=SINGLE_COST)}


def score(bank_path: Path, views) -> float:
    return mean_psnr(load_bank(bank_path), views)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--teacher", choices=sorted(TEACHERS), required=True)
    parser.add_argument("--wide-widths", default="128,128")
    parser.add_argument("--teacher-steps", type=int, default=4000)
    parser.add_argument("--student-steps", type=int, default=3000)
    parser.add_argument("--students", default=f"{HASH_BANK},{SINGLE_COST}")
    parser.add_argument("--start", default="teacher", help="teacher, none, or a bank path to start students from")
    parser.add_argument("--tag", default="", help="suffix of the student banks' names")
    parser.add_argument("--eval-every", type=int, default=250)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bins", type=int, default=8, help="UV bins of the students' tile key")
    args = parser.parse_args()

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    test_views = load_views(open_dataset(args.data), open_dataset(args.data).indices("test"))
    common = dict(data=args.data, eval_every=args.eval_every, checkpoint_every=10**6, patience=0, seed=args.seed)
    results = out / "results.jsonl"

    def record(row: dict) -> None:
        print(json.dumps(row), flush=True)
        with results.open("a") as stream:
            stream.write(json.dumps(row) + "\n")

    widths = tuple(int(w) for w in args.wide_widths.split(",")) if args.teacher == "wide" else (32, 32)
    teacher = out / f"teacher_{args.teacher}.nfbank"
    if not teacher.exists():
        start = time.monotonic()
        result = train(TrainConfig(out=str(teacher), steps=args.teacher_steps, widths=widths, teacher=None,
                                   **TEACHERS[args.teacher], **common))
        record({"model": f"teacher_{args.teacher}", "kind": TEACHERS[args.teacher]["kind"], "widths": widths,
                "steps": result.steps, "train_s": round(result.seconds, 1),
                "wall_s": round(time.monotonic() - start, 1), "val_psnr": round(result.val_psnr, 3),
                "test_psnr": round(score(teacher, test_views), 3)})
    for kind in args.students.split(","):
        bank = out / f"{kind}_from_{args.teacher}{args.tag}.nfbank"
        warm = None if args.start in ("teacher", "none") else args.start
        start = time.monotonic()
        # --start none: the teacher labels the views, but no network starts from it
        trainer_result = train(TrainConfig(out=str(bank), steps=args.student_steps, kind=kind, teacher=str(teacher),
                                           warm_from=warm, warm_start=args.start != "none", bins=args.bins, **common))
        provenance = load_bank(bank).provenance
        record({"model": bank.stem, "kind": kind, "teacher": args.teacher, "start": args.start, "bins": args.bins,
                "warm_start_how": provenance.get("warm_start_how"), "steps": trainer_result.steps,
                "train_s": round(trainer_result.seconds, 1), "wall_s": round(time.monotonic() - start, 1),
                "val_psnr": round(trainer_result.val_psnr, 3), "test_psnr": round(score(bank, test_views), 3),
                "replaced": provenance.get("specialists_replaced"), "judged": provenance.get("specialists_judged")})


if __name__ == "__main__":
    main()
