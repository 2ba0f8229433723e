"""`python -m backend demo` (`make demo`): example face -> dataset -> hash bank + baselines -> report.

Each stage is the real command in its own process (so Blender's memory is given back before
training); re-running resumes: the dataset and the example scene are kept, training restarts.
The defaults aim at 20 minutes on a 2-core CPU (15.4 to 22.3 measured from fresh clones, as the
machine's speed varied: Cycles took 1.7 to 3.9 s a view); the stage timings are printed at the end.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from backend.errors import UserError

ROOT = Path(__file__).resolve().parents[2]
SCENE = ROOT / "example_scenes" / "cache" / "james.blend"


def add_arguments(parser) -> None:
    parser.add_argument("--out", default="out/demo", help="folder for dataset, banks and report (default out/demo)")
    # 160 labelled views (128 train, 16 val, 16 test): the hash bank's gain over one network grows with the
    # labelled views (+0.36 dB at 64 train views, +0.67 at 128; docs/training.md), and 160 still fits 20 minutes.
    parser.add_argument("--samples", type=int, default=160, help="dataset samples (default 160)")
    parser.add_argument("--unlabelled", type=int, default=160,
                        help="G-buffer-only views the teacher labels (default 160)")
    parser.add_argument("--resolution", default="256", help="dataset resolution (default 256)")
    parser.add_argument("--gt-samples", type=int, default=32, help="Cycles samples per ground truth (default 32)")
    # 2.25: four models (each its whole budget) fit 20 minutes with generate (18.0 min in all, measured).
    parser.add_argument("--train-minutes", type=float, default=2.25,
                        help="training budget of the teacher, the hash bank and each baseline (default 2.25)")
    parser.add_argument("--device", default="cpu", help="training and report device (default cpu)")


def stage(name: str, args: list[str], timings: dict) -> None:
    print(f"\n== {name}: python -m backend {' '.join(args)}", flush=True)
    start = time.monotonic()
    code = subprocess.run([sys.executable, "-m", "backend", *args], cwd=ROOT).returncode
    timings[name] = time.monotonic() - start
    if code != 0:
        raise UserError(f"demo stopped: the {name} stage failed (exit code {code}); its message is above")


def run(args) -> int:
    from backend.commands.report import headline_lines

    out = Path(args.out).resolve()
    data, bank, report = out / "dataset", out / "bank" / "face.nfbank", out / "report"
    timings: dict[str, float] = {}
    stage("example", ["example"], timings)
    stage("generate", ["generate", "--scene", str(SCENE), "--out", str(data), "--samples", str(args.samples),
                       "--unlabelled", str(args.unlabelled),
                       "--resolution", args.resolution, "--gt-samples", str(args.gt_samples)], timings)
    stage("train", ["train", "--data", str(data), "--out", str(bank), "--minutes", str(args.train_minutes),
                    "--device", args.device, "--baselines"], timings)
    stage("report", ["report", "--bank", str(bank), "--data", str(data), "--out", str(report),
                     "--device", args.device], timings)
    metrics = json.loads((report / "metrics.json").read_text())
    print("\n== demo finished in " + ", ".join(f"{k} {v / 60:.1f} min" for k, v in timings.items())
          + f" (total {sum(timings.values()) / 60:.1f} min)")
    print(f"report: {report / 'index.html'}")
    for line in headline_lines(metrics):
        print(line)
    return 0
