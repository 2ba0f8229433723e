"""`python -m backend generate`: render a dataset with the add-on's own code via bpy.

Cycles (through the add-on's DatasetJob) renders the ground truth; the backend's ray tracer
(backend/tracer) writes every G-buffer from the scene the job exported. The add-on's Generate
Dataset runs this same command (with --progress-lines), so the UI and the CLI make the same data.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from pathlib import Path

from backend.commands.argument_types import non_negative_int
from backend.errors import UserError
from backend.tracer.samples import SampleTracer

MAX_SIDE = 8192
PROGRESS_PREFIX = "NF_PROGRESS"  # blender_addon/operators_dataset.py reads these lines


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scene", required=True, help="FILE.blend or FILE.obj holding the face mesh")
    parser.add_argument("--out", required=True, help="dataset folder (created, or resumed if it holds this dataset)")
    parser.add_argument("--samples", type=int, default=100, help="number of samples (default 100)")
    parser.add_argument("--unlabelled", type=int, default=None,
                        help="extra views with a G-buffer only, no ground truth: cheap, labelled by the teacher "
                             "in training (default: twice --samples)")
    parser.add_argument("--resolution", type=resolution, default=(256, 256), help="W or WxH in pixels (default 256)")
    parser.add_argument("--seed", type=int, default=0, help="random seed of cameras, lights and split")
    parser.add_argument("--lights", type=light_range, default=(1, 2),
                        help="point lights per sample: K (1..K) or MIN-MAX (default 1-2)")
    parser.add_argument("--gt-samples", type=int, default=64, help="Cycles samples of the ground truth")
    parser.add_argument("--no-denoise", action="store_true", help="do not denoise the ground truth")
    parser.add_argument("--shadow-rays", type=int, default=16,
                        help="shadow rays per light in a penumbra pixel of the traced G-buffer; a square number "
                             "(default 16)")
    parser.add_argument("--light-radius", type=radius_range, default=None,
                        help="point-light radius range MIN-MAX in bounding radii (default 0-0.15; 0 = hard shadows)")
    parser.add_argument("--device", default="CPU", choices=("CPU", "CUDA", "OPTIX", "HIP", "ONEAPI"),
                        help="what Cycles renders the ground truth on: CPU (default) or a GPU backend; with "
                             "--cluster, every worker's (a worker without such a GPU is named and refused)")
    parser.add_argument("--object", default="", help="target mesh name (default: the largest mesh)")
    parser.add_argument("--front-axis", default="-Y", help="axis the face looks along (default -Y)")
    parser.add_argument("--overwrite", action="store_true", help="replace a different dataset in --out")
    parser.add_argument("--progress-lines", action="store_true",
                        help="print 'NF_PROGRESS DONE TOTAL' lines on stdout instead of a bar (the add-on reads them)")
    parser.add_argument("--settings-file", metavar="FILE",
                        help="dataset settings as JSON, in manifest.json's \"settings\" form (the add-on sends "
                             "its panel's this way); replaces the setting options above")
    cluster = parser.add_argument_group("Ray cluster (docs/cluster.md)")
    cluster.add_argument("--cluster", type=cluster_address, metavar="ADDRESS",
                         help="render on the Ray cluster at HOST:PORT (as `ray start --head` prints it), "
                              "or local[:N] for a throwaway local cluster of N workers")
    cluster.add_argument("--cluster-token-file", metavar="FILE",
                         help="the head's auth token, for a cluster started with RAY_AUTH_MODE=token")
    cluster.add_argument("--worker-cpus", type=non_negative_int, default=0, metavar="K",
                         help="CPUs (Cycles threads) per worker; default 0: one worker per node, all its CPUs")


def resolution(text: str) -> tuple[int, int]:
    try:
        sides = [int(part) for part in text.lower().split("x")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"resolution {text!r} must be W or WxH, e.g. 256 or 320x240") from None
    if len(sides) == 1:
        sides *= 2
    if len(sides) != 2 or not all(1 <= side <= MAX_SIDE for side in sides):
        raise argparse.ArgumentTypeError(f"resolution {text!r}: width and height must be 1..{MAX_SIDE}")
    return sides[0], sides[1]


def cluster_address(text: str):
    from backend.cluster.connection import parse_address

    try:
        return parse_address(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def light_range(text: str) -> tuple[int, int]:
    try:
        parts = [int(part) for part in text.split("-")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"lights {text!r} must be K or MIN-MAX, e.g. 2 or 1-3") from None
    low, high = (1, parts[0]) if len(parts) == 1 else parts[:2]
    if len(parts) > 2 or low < 1 or high < low:
        raise argparse.ArgumentTypeError(f"lights {text!r}: need at least one light per sample (1 <= MIN <= MAX)")
    return low, high


def radius_range(text: str) -> tuple[float, float]:
    try:
        low, high = (float(part) for part in text.split("-")) if "-" in text else (float(text),) * 2
    except ValueError:
        raise argparse.ArgumentTypeError(f"light radius {text!r} must be R or MIN-MAX, e.g. 0 or 0-0.2") from None
    return low, high


def import_addon():
    """The repository's add-on package with its job modules loaded (its UI modules are not needed)."""
    root = str(Path(__file__).resolve().parents[2])
    if root not in sys.path:
        sys.path.insert(0, root)
    import blender_addon
    import blender_addon.dataset_job
    import blender_addon.dataset_settings
    import blender_addon.errors
    import blender_addon.render_rig
    import blender_addon.scene_setup  # noqa: F401  (each import binds the submodule on the package)

    return blender_addon


@contextlib.contextmanager
def quiet_stdout():
    """Silence Cycles' per-tile log lines on stdout so the progress bar stays readable."""
    sys.stdout.flush()
    saved = os.dup(1)
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 1)
        try:
            yield
        finally:
            sys.stdout.flush()
            os.dup2(saved, 1)
            os.close(saved)


def settings_from_args(args, addon):
    if args.settings_file:
        try:
            with open(args.settings_file) as stream:
                data = json.load(stream)
            # The file's "scene" (the add-on names the file its saved copy came from) wins over the copy's path,
            # so a resumed run from Blender finds the same settings.
            return addon.dataset_settings.DatasetSettings.from_json({"scene": os.path.abspath(args.scene), **data})
        except (OSError, ValueError, TypeError) as exc:
            raise UserError(f"settings file {args.settings_file!r} is unusable ({exc}); write it as "
                            "manifest.json's \"settings\" object") from None
        except addon.errors.InputError as exc:
            raise UserError(f"settings file {args.settings_file!r}: {exc}") from None
    optional = {"light_radius": args.light_radius} if args.light_radius is not None else {}
    return addon.dataset_settings.DatasetSettings(**optional,
        scene=os.path.abspath(args.scene), object=args.object, resolution=args.resolution,
        samples=args.samples, unlabelled=2 * args.samples if args.unlabelled is None else args.unlabelled,
        seed=args.seed, gt_samples=args.gt_samples, gt_denoise=not args.no_denoise,
        gbuffer_shadow_rays=args.shadow_rays, front_axis=args.front_axis, lights=args.lights)


def prepare_job(args, addon):
    """Load the scene and check every input; raises UserError before anything is written."""
    settings = settings_from_args(args, addon)
    try:
        settings.validate()
        with quiet_stdout():
            addon.scene_setup.load_scene_file(args.scene)
        import bpy

        target = addon.scene_setup.find_target(bpy.context.scene, settings.object)
        settings.object = target.name
        job = addon.dataset_job.DatasetJob(settings, target, args.out, overwrite=args.overwrite,
                                           trace_gbuffer=SampleTracer(args.out, settings.gbuffer_shadow_rays),
                                           device=args.device)
        job.check()
        if not args.cluster:  # on a cluster the workers render, and each checks its own device
            addon.render_rig.use_device(bpy.context.scene, args.device)
    except addon.errors.InputError as exc:
        raise UserError(str(exc)) from None
    addon.scene_setup.ensure_material(target)
    return job


class ProgressLines:
    """The tqdm calls the loops make, printed as `NF_PROGRESS DONE TOTAL` lines for the add-on."""

    def __init__(self, job):
        self.job = job

    def __enter__(self):
        self.update(0)
        return self

    def __exit__(self, *exc) -> None:
        pass

    def update(self, _count: int) -> None:
        print(f"{PROGRESS_PREFIX} {self.job.done_count} {self.job.total}", flush=True)

    def set_postfix_str(self, _text: str, refresh: bool = True) -> None:
        pass

    def refresh(self) -> None:
        pass


def progress_bar(job, lines: bool = False):
    if lines:
        return ProgressLines(job)
    from tqdm import tqdm

    return tqdm(total=job.total, initial=job.done_count, unit="sample", desc="generate")


def run(args) -> int:
    addon = import_addon()
    job = prepare_job(args, addon)
    if args.cluster:
        from backend.cluster.dataset import generate_on_cluster

        stats = generate_on_cluster(job, args.cluster, args.cluster_token_file, args.worker_cpus,
                                    lambda job: progress_bar(job, args.progress_lines))
        if stats.requeued:
            print(f"rendered again after their worker was lost: samples {sorted(stats.requeued)}", file=sys.stderr)
        print(stats.summary(), file=sys.stderr)
        print(f"dataset: {job.manifest_path} ({job.done_count} samples)")
        return 0
    with job:
        with quiet_stdout():  # the albedo bake's log lines
            job.start()
        with progress_bar(job, args.progress_lines) as bar:
            while job.pending:
                with quiet_stdout():
                    job.step()
                bar.update(1)
    print(f"dataset: {job.manifest_path} ({job.done_count} samples)")
    return 0
