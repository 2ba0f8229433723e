"""`python -m backend train`: bucket the dataset's tiles by key and train one network per bucket."""

from __future__ import annotations

import argparse
import dataclasses

from backend.commands.argument_types import (bins_or_auto, decay, non_negative_int, positive_float, positive_int,
                                            torch_device)
from backend.bank import companion_path
from backend.buckets import keep_last_results
from backend.commands.generate import cluster_address
from backend.hashing import MAX_BINS
from backend.model_kinds import BASELINE_KINDS, HASH_BANK, MODEL_KINDS, SINGLE_COST, TEACHER_KINDS, companion_suffix
from backend.training import DEFAULT_STEPS, LOSS_SPACES, TrainConfig, blended_cost, needs_teacher, teacher_config, train


def widths(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(w) for w in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"widths {text!r} must be comma-separated integers, e.g. 32,32") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"widths {text!r} must be positive")
    return values


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="dataset folder (python -m backend generate)")
    parser.add_argument("--out", required=True, help="weight bank to write, e.g. out/face.nfbank")
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--steps", type=positive_int, help=f"training steps (default {DEFAULT_STEPS})")
    budget.add_argument("--minutes", type=positive_float, help="wall-clock budget per model instead of steps")
    parser.add_argument("--device", type=torch_device, default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resume", action="store_true", help="continue from the checkpoint next to --out")
    parser.add_argument("--overwrite", action="store_true", help="replace --out even if it is not a weight bank")
    parser.add_argument("--widths", type=widths, default=(32, 32), help="hidden layer widths (default 32,32)")
    parser.add_argument("--lr", type=positive_float, default=5e-3,
                        help="peak learning rate of a hash bank (default 5e-3); each other kind, and a network "
                             "that starts from the teacher, scales it by its own measured factor "
                             "(backend/learning_rates.py)")
    parser.add_argument("--batch", type=positive_int, default=256, help="pixels per bucket per step (default 256)")
    parser.add_argument("--checkpoint-every", type=positive_int, default=200, help="steps between checkpoints")
    parser.add_argument("--eval-every", type=positive_int, default=100, help="steps between validation renders")
    parser.add_argument("--patience", type=non_negative_int, default=TrainConfig.patience,
                        help="evaluations without a 0.05 dB gain before stopping (default 0: never, the whole "
                             "budget; the best weights on the validation views are kept)")
    parser.add_argument("--ema-decay", type=decay, default=TrainConfig.ema_decay,
                        help="validate and keep the moving average of the weights with this decay per step "
                             f"(default {TrainConfig.ema_decay}; 0: the raw weights)")
    parser.add_argument("--kind", choices=MODEL_KINDS, default=HASH_BANK, help=f"model to train (default {HASH_BANK})")
    parser.add_argument("--baselines", action="store_true",
                        help="also train both single-network baselines on the same data and budget "
                             "(written next to --out as NAME.single_cost.nfbank and NAME.single_params.nfbank)")
    parser.add_argument("--loss-space", choices=LOSS_SPACES, default="tonemap")
    parser.add_argument("--output-activation", choices=("exp", "softplus"), default="exp")
    parser.add_argument("--fallback", choices=("auto", "nearest_key", "shared_network"), default="auto")
    parser.add_argument("--min-bucket-pixels", type=non_negative_int,
                        help="pixels a key needs for a network of its own (default 0.25%% of the training pixels)")
    parser.add_argument("--no-teacher", action="store_true",
                        help="ignore the dataset's unlabelled views (by default a teacher network trained on the "
                             "labelled views shades them, and every model also trains on its answers)")
    parser.add_argument("--teacher-kind", choices=TEACHER_KINDS, default=TrainConfig.teacher_kind,
                        help=f"the teacher trained on the labelled views (default {TrainConfig.teacher_kind}; "
                             "neural_texture: a learned UV feature texture in front of the network)")
    parser.add_argument("--teacher-widths", type=widths, help="the teacher's hidden widths (default --widths)")
    parser.add_argument("--warm-from", metavar="BANK",
                        help="start every network from this bank instead of the teacher (same layers, or a "
                             "neural_texture bank of the same hidden widths)")
    parser.add_argument("--random-start", action="store_true",
                        help="start every network at random instead of from the teacher (which still labels the "
                             "unlabelled views)")
    parser.add_argument("--texture-channels", type=positive_int, default=TrainConfig.texture_channels,
                        help="neural_texture models: learned channels per texel")
    parser.add_argument("--texture-resolution", type=positive_int, default=TrainConfig.texture_resolution,
                        help="neural_texture models: texels per side")
    parser.add_argument("--keep-all-specialists", action="store_true",
                        help="keep every bucket's network, even where the shared network does better on the "
                             "validation views")
    parser.add_argument("--combined-targets", action="store_true",
                        help="learn the ground truth summed over each view's lights (one target per pixel) instead "
                             "of each light's own (one target per pixel and light)")
    parser.add_argument("--tile-size", type=positive_int, default=16)
    parser.add_argument("--bins", type=bins_or_auto, default=TrainConfig.bins,
                        help=f"UV bins per axis of the tile key, 1..{MAX_BINS} (default auto: the most that the "
                             "training views fill, so that at most 5%% of the validation views' tiles lack a network; "
                             "backend/bin_choice.py)")
    parser.add_argument("--halo", type=int, default=TrainConfig.halo, metavar="PX",
                        help=f"pixels each specialist also learns from its neighbouring tiles, along their common "
                             f"border, so that neighbours agree there (default {TrainConfig.halo}; 0: none)")
    parser.add_argument("--border-blend", type=int, default=TrainConfig.border_blend, metavar="PX",
                        help="pixels from a tile's edge over which the hash bank mixes in the neighbouring tile's "
                             f"network when shading, so that specialists meet without a step (default "
                             f"{TrainConfig.border_blend}; 0: none)")
    parser.add_argument("--global-frames", action="store_true",
                        help="train every specialist on the bank's global input normalisation instead of its own "
                             "bucket's (the recipe before local frames)")
    parser.add_argument("--cluster", type=cluster_address, metavar="ADDRESS",
                        help="train on a node of this Ray cluster (HOST:PORT or local; a GPU node with --device "
                             "cuda) and bring the bank back (docs/cluster.md)")
    parser.add_argument("--cluster-token-file", metavar="FILE", help="the cluster head's auth token")


FITTED_GAP_DB = 0.1  # a final validation score this far above the loop's best gets fitted_note's caveat


def config_from_args(args, kind: str, out) -> TrainConfig:
    return TrainConfig(
        data=args.data, out=str(out), steps=args.steps, minutes=args.minutes, device=args.device, seed=args.seed,
        resume=args.resume, widths=tuple(args.widths), lr=args.lr, batch=args.batch,
        checkpoint_every=args.checkpoint_every, eval_every=args.eval_every, patience=args.patience, kind=kind,
        loss_space=args.loss_space, output_activation=args.output_activation, fallback=args.fallback,
        min_bucket_pixels=args.min_bucket_pixels, tile_size=args.tile_size, bins=args.bins, halo=args.halo,
        border_blend=args.border_blend,
        teacher=None if args.no_teacher else "auto", select_specialists=not args.keep_all_specialists,
        teacher_kind=args.teacher_kind, teacher_widths=None if args.teacher_widths is None else tuple(args.teacher_widths),
        warm_from=args.warm_from, warm_start=not args.random_start, texture_channels=args.texture_channels, texture_resolution=args.texture_resolution,
        per_light_targets=not args.combined_targets, local_frames=not args.global_frames, ema_decay=args.ema_decay,
    )


def run_one(config: TrainConfig, name: str | None = None, cluster=None, token_file: str | None = None) -> dict:
    from tqdm import tqdm

    name = name or config.kind
    bar = tqdm(total=config.step_limit, desc=name, unit="step", dynamic_ncols=True)

    def on_progress(progress) -> None:
        bar.update(progress.step - bar.n)
        psnr = "-" if progress.val_psnr is None else f"{progress.val_psnr:.2f}dB"
        eta = "" if progress.eta_s is None else f" eta={progress.eta_s:.0f}s"
        bar.set_postfix_str(f"{progress.phase} loss={progress.loss:.4g} val={psnr}{eta}", refresh=False)

    try:
        if cluster is None:
            result = train(config, on_progress=on_progress)
        else:
            from backend.cluster.training import train_on_cluster

            result = train_on_cluster(config, cluster, token_file, on_progress)
    finally:
        bar.close()
    if result.cancelled:
        print(f"{name}: cancelled at step {result.steps}; resume with --resume ({result.checkpoint_path})")
    else:
        early = " (early stop)" if result.stopped_early else ""
        size_kb = result.bank_path.stat().st_size / 1024
        print(f"{name}: {result.bank_path} ({size_kb:.0f} KB)  val PSNR {result.val_psnr:.2f} dB{fitted_note(result)} "
              f"after {result.steps} steps{early}, {result.seconds:.0f} s; curve {result.curve_path}")
    return {"kind": name, "bank": str(result.bank_path), "val_psnr": result.val_psnr,
            "steps": result.steps, "seconds": result.seconds, "cancelled": result.cancelled}


def fitted_note(result) -> str:
    """Where a bank's final validation score is well above the best the whole bank reached while training,
    the difference was chosen on those same views (each network's own best step, selection, the
    fallback): say so, since new views will not see all of it (docs/training.md, "Specialists nothing can
    check")."""
    scores = [h["val_psnr"] for h in result.history]
    if not scores or result.val_psnr - max(scores) <= FITTED_GAP_DB:
        return ""
    return (f" ({max(scores):.2f} before each network's own best step and selection, which were chosen on "
            "these same validation views, so part of the difference is fitted to them)")


def run(args) -> int:
    from backend.outputs import BANK, check_output

    kinds = [args.kind, *(kind for kind in BASELINE_KINDS if kind != args.kind)] if args.baselines else [args.kind]
    outs = {kind: args.out if kind == args.kind else companion_path(args.out, companion_suffix(kind)) for kind in kinds}
    teacher = [] if args.no_teacher else [teacher_config(config_from_args(args, kinds[0], args.out)).out]
    for out in [*outs.values(), *teacher]:  # before the first step: training takes minutes
        check_output(out, BANK, args.overwrite)
    with keep_last_results():  # the models below share one read of the labelled and teacher-labelled pixels
        return _train_all(args, kinds, outs)


def _train_all(args, kinds: list[str], outs: dict) -> int:
    first = config_from_args(args, kinds[0], outs[kinds[0]])
    if needs_teacher(first):  # its own bar; the models below then find it and reuse it
        if run_one(teacher_config(first), "teacher", args.cluster, args.cluster_token_file)["cancelled"]:
            return 130
    for kind, out in outs.items():
        config = config_from_args(args, kind, out)
        if kind == SINGLE_COST and kinds[0] == HASH_BANK:  # the same cost per pixel as the bank, blend included
            config = dataclasses.replace(config, cost_multiply_adds=blended_cost(outs[HASH_BANK], args.data))
            print(f"single_cost: matched to the bank's {config.cost_multiply_adds:,} multiply-adds per pixel and light")
        if run_one(config, cluster=args.cluster, token_file=args.cluster_token_file)["cancelled"]:
            return 130
    return 0
