"""Quality against per-pixel cost: the hash bank and one network at hidden widths 8, 16, 32 and 64.

The talk's claim is that many narrow specialists reach the quality of one wider network at a
fraction of its per-pixel cost. For every width this trains, on the same dataset and budget
(teacher labels of the unlabelled views included, as `train` does by default), a hash bank and
one network (`single_cost` of that width), scores both on the test views like the report does,
and prints a table of test PSNR against multiply-adds per pixel and light, and writes
`cost_sweep.png` and `cost_sweep.json` into --out.

With --teacher (e.g. the demo's `face.teacher.nfbank`) every model learns from that one teacher's
labels of the unlabelled views; students of the teacher's own width start from it, as in `train`.

    .venv/bin/python benchmarks/cost_sweep.py --data out/demo/dataset --out out/sweep --minutes 2 \\
        [--steps 2000] [--teacher out/demo/bank/face.teacher.nfbank]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backend.bank import load_bank, slot_size  # noqa: E402
from backend.dataset import open_dataset  # noqa: E402
from backend.evaluation import load_views, mean_psnr  # noqa: E402
from backend.model_kinds import HASH_BANK, SINGLE_COST  # noqa: E402
from backend.neural_texture import multiply_adds  # noqa: E402
from backend.training import TrainConfig, train  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--widths", default="8,16,32,64")
    parser.add_argument("--kinds", default=f"{HASH_BANK},{SINGLE_COST}", help="models to train at every width")
    parser.add_argument("--minutes", type=float, default=2.0, help="training budget per model")
    parser.add_argument("--steps", type=int, help="a fixed step budget per model instead of --minutes (best "
                        "validation weights, no early stop): the same work for every model on a loaded machine")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--teacher", default="auto", help="a teacher bank for every model (default: train one each)")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    dataset = open_dataset(args.data)
    test_views = load_views(dataset, dataset.indices("test"))
    rows = []
    for width in [int(w) for w in args.widths.split(",")]:
        for kind in args.kinds.split(","):
            path = out / f"w{width}" / f"{kind}.nfbank"
            budget = {"steps": args.steps, "patience": 0} if args.steps else {"minutes": args.minutes}
            config = TrainConfig(data=args.data, out=str(path), widths=(width, width), kind=kind,
                                 device=args.device, teacher=args.teacher, **budget)
            train(config)
            bank = load_bank(path)
            row = {"kind": kind, "width": width, "multiply_adds": multiply_adds(bank.layers),
                   "parameters": bank.n_slots * slot_size(bank.layers), "networks": bank.n_slots,
                   "test_psnr": mean_psnr(bank, test_views, args.device)}
            rows.append(row)
            print(f"{kind:12s} width {width:3d}: {row['multiply_adds']:6d} MAC/pixel/light, "
                  f"{row['networks']:4d} networks, test PSNR {row['test_psnr']:.2f} dB", flush=True)
    (out / "cost_sweep.json").write_text(json.dumps(rows, indent=1))
    plot(rows, out / "cost_sweep.png")
    print(f"plot: {out / 'cost_sweep.png'}")
    return 0


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, axis = plt.subplots(figsize=(6, 4))
    for kind, style in ((HASH_BANK, "o-"), (SINGLE_COST, "s--")):
        mine = sorted((r for r in rows if r["kind"] == kind), key=lambda r: r["multiply_adds"])
        axis.semilogx([r["multiply_adds"] for r in mine], [r["test_psnr"] for r in mine], style,
                      label=kind.replace("_", " "))
        for r in mine:
            axis.annotate(f"w{r['width']}", (r["multiply_adds"], r["test_psnr"]), fontsize=8,
                          textcoords="offset points", xytext=(4, -10))
    costs = sorted({r["multiply_adds"] for r in rows})
    axis.set_xticks(costs, [f"{c:,}" for c in costs])
    axis.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())  # log-axis minor labels overlap
    axis.set_xlabel("multiply-adds per pixel and light")
    axis.set_ylabel("test PSNR (dB, face pixels)")
    axis.legend()
    axis.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
