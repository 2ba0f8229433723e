"""`python -m backend report`: HTML quality report of a bank (and its baselines) against a dataset."""

from __future__ import annotations


def add_arguments(parser) -> None:
    parser.add_argument("--bank", required=True, help="weight bank (.nfbank); baselines next to it are included")
    parser.add_argument("--data", required=True, help="dataset folder")
    parser.add_argument("--out", required=True, help="report folder (replaces an earlier report there)")
    parser.add_argument("--overwrite", action="store_true", help="replace --out even if it is not a report")
    parser.add_argument("--renderer", default="torch", help="renderer to score and time (default torch)")
    parser.add_argument("--device", default="cpu", help="torch device (cpu or cuda)")


def headline_lines(metrics: dict) -> list[str]:
    from backend.report import aim_value_text

    h, t = metrics["headline"], metrics["timing"]
    lines = [f"test PSNR (face pixels): {h['model'].replace('_', ' ')} {h['test_psnr']:.2f} dB"]
    lines += [f"  baseline {name.removeprefix('test_psnr_')}: {value:.2f} dB"
              for name, value in h.items() if name.startswith("test_psnr_")]
    seams = [f"{label} {h[key]:.2f}" for label, key in (("tile-seam ratio", "seam_ratio_test"),
                                                          ("step ratio", "seam_step_ratio_test"))
             if h[key] is not None]
    unseen = h["unseen_key_share_test"]
    keys = [] if unseen is None else [f"unseen tile keys on test views: {100 * unseen:.1f}%"]
    lines.append("; ".join([*keys, *seams]) + " (1 = no seams)")
    for aim in h.get("aims", []):
        lines.append(f"aim {'met' if aim['met'] else 'NOT met'}: {aim['aim']} (measured {aim_value_text(aim)})")
    lines.append(f"neural {t['neural_ms_per_frame']:.1f} ms/frame vs Cycles {t['cycles_s_per_frame']:.2f} s/frame "
                 f"at {t['resolution'][0]}x{t['resolution'][1]}: {t['ratio_cycles_over_neural']:.0f}x faster")
    return lines


def run(args) -> int:
    from pathlib import Path

    from backend.outputs import REPORT, check_output
    from backend.report import write_report

    check_output(args.out, REPORT, args.overwrite)
    metrics = write_report(args.bank, args.data, args.out, renderer=args.renderer, device=args.device)
    print(f"report: {Path(args.out) / 'index.html'}")
    for line in headline_lines(metrics):
        print(line)
    return 0
