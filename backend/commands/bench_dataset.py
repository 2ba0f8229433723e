"""`python -m backend bench-dataset`: dataset generation speed and memory on the example face.

Prints seconds per sample for the G-buffer recipe and for the Cycles ground truth separately,
and the process's resident memory along a long run, to show whether it stays flat.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from backend.commands.example import ensure_example
from backend.commands.generate import import_addon, quiet_stdout


def add_arguments(parser) -> None:
    parser.add_argument("--samples", type=int, default=50, help="samples to render (default 50)")
    parser.add_argument("--resolution", type=int, default=256, help="square resolution (default 256)")
    parser.add_argument("--gt-samples", type=int, default=64, help="ground-truth Cycles samples (default 64)")
    parser.add_argument("--scene", type=Path, default=None, help="scene file (default: the example face)")


def memory_mib() -> tuple[float, float]:
    """(current, peak) resident set size of this process in MiB, from /proc/self/status."""
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def run(args) -> int:
    from tqdm import tqdm

    from backend.commands import generate

    scene = args.scene or ensure_example()
    addon = import_addon()
    with tempfile.TemporaryDirectory() as out:
        parser = argparse.ArgumentParser()  # generate's own options and defaults, whatever it adds later
        generate.add_arguments(parser)
        generate_args = parser.parse_args(["--scene", str(scene), "--out", out, "--samples", str(args.samples),
                                           "--resolution", str(args.resolution), "--gt-samples", str(args.gt_samples),
                                           "--unlabelled", "0"])
        job = generate.prepare_job(generate_args, addon)
        rss = []
        with job:
            job.start()
            for _ in tqdm(range(len(job.pending)), unit="sample", desc="bench-dataset"):
                with quiet_stdout():
                    job.step()
                rss.append(memory_mib()[0])
        seconds = [record["seconds"] for record in job.manifest["samples"]]
    gbuffer = [s["gbuffer"] for s in seconds]
    truth = [s["ground_truth"] for s in seconds]
    print(f"scene {scene}, {args.resolution}x{args.resolution}, {len(seconds)} samples, "
          f"ground truth {args.gt_samples} spp + OIDN, G-buffer traced with {generate_args.shadow_rays} shadow rays")
    print(f"G-buffer (traced): {statistics.median(gbuffer):.3f} s/sample median ({statistics.mean(gbuffer):.3f} mean)")
    print(f"ground truth     : {statistics.median(truth):.3f} s/sample median ({statistics.mean(truth):.3f} mean)")
    marks = sorted({0, len(rss) // 4, len(rss) // 2, 3 * len(rss) // 4, len(rss) - 1})
    print("resident memory  : " + ", ".join(f"after sample {i + 1}: {rss[i]:.0f} MiB" for i in marks))
    print(f"peak memory      : {memory_mib()[1]:.0f} MiB; growth from sample {marks[1] + 1} to {len(rss)}: "
          f"{rss[-1] - rss[marks[1]]:+.0f} MiB")
    return 0
