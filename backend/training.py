"""Training: one small MLP per tile-key bucket, all buckets at once, and the two baselines.

The talk's "hash division of labour": each bucket's network sees only its own bucket's pixels.
Every step samples the same number of pixels from every bucket and trains all networks with one
batched matmul per layer (backend.stacked_mlp). Baselines get the same pixels per step and the
same budget: `single_cost` is one network of the same per-pixel cost (the bank's layers, widened
beside a border-blended bank to the multiply-adds its pixels pay: `cost_multiply_adds`),
`single_params` one network with as many parameters as the whole bank (hidden width capped).

`train(config, on_progress, should_stop)` is the API of the CLI, the HTTP service and the
Blender Train button. It writes the bank atomically, a checkpoint every `checkpoint_every` steps
(`--resume` continues from it, so a kill -9 loses at most one interval) and a training-curve PNG.
"""

from __future__ import annotations

import dataclasses
import gc
import hashlib
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

import backend
from backend.atomic import atomic_open
from backend.bank import (FALLBACK_MODES, OUTPUT_ACTIVATIONS, SHARED_SLOT_KEY, Bank, companion_path, load_bank,
                          make_bank, make_meta, save_bank, slot_size)
from backend.bin_choice import BinChoice, choose_bins
from backend.bucket_selection import select_specialists
from backend.buckets import Buckets, BucketStore, bucket_threshold, merge
from backend.dataset import open_dataset
from backend.errors import DatasetError, UserError
from backend.early_stopping import NetworkBests
from backend.evaluation import (RepeatedViews, evaluations_per_pixel, load_views, mean_psnr, pixel_errors,
                                psnr_of_errors)
from backend.features import N_FEATURES
from backend.hashing import MAX_BINS
from backend.learning_rates import learning_rate, lr_scales
from backend.local_frames import local_frames
from backend.model_kinds import (BANK_KIND_OF, HASH_BANK, MODEL_KINDS, NEURAL_TEXTURE, SINGLE_COST, SINGLE_PARAMS,
                                 TEACHER_KINDS)
from backend.neural_texture import TEXTURE_CHANNELS, TEXTURE_RESOLUTION, NeuralTextureModel, multiply_adds
from backend.prefilter import FilterRadii
from backend.report_figures import plot_curve
from backend.stacked_mlp import StackedMLP
from backend.teacher_labels import teacher_path, teacher_records
from backend.warm_start import warm_start
from backend.weight_average import EMA_DECAY, WeightAverage

LOSS_SPACES = ("log", "tonemap", "linear")
LOG_EPS = 1e-3  # radiance floor of the log loss: below it, errors are invisible on a display
# A step budget keeps training deterministic for a seed. 12000, not 2000: at 2000 every model of a
# 40-view dataset was a dB and more short of what it reached at 12000, and the bank the most
# (docs/training.md, "The default step budget").
DEFAULT_STEPS = 12000
HALO = 4  # px a specialist borrows from each neighbouring tile (docs/training.md, "Tile seams: the halo")
BORDER_BLEND = 1  # px over which neighbouring specialists are mixed when shading (docs/training.md, "Tile
# seams: the border blend"; gbuffer.md section 4b)
MIN_PSNR_GAIN = 0.05  # dB an evaluation must gain to count as an improvement for early stopping


@dataclass
class TrainConfig:
    data: str
    out: str
    steps: int | None = None  # stop after this many steps (DEFAULT_STEPS when minutes is unset too)
    minutes: float | None = None  # or after this much wall time (whichever comes first)
    device: str = "cpu"
    seed: int = 0
    resume: bool = False
    widths: tuple[int, ...] = (32, 32)
    lr: float = 5e-3
    batch: int = 256  # pixels per bucket per step
    checkpoint_every: int = 200
    eval_every: int = 100
    # Evaluations without a MIN_PSNR_GAIN before stopping; 0 (default) runs the whole budget: validation
    # PSNR still rises by tenths of a dB in the cosine schedule's second half, slower than any patience
    # rule tells from noise (docs/training.md, "Per-light ground truth and the whole budget"). The best-on-validation weights are kept.
    patience: int = 0
    kind: str = HASH_BANK
    loss_space: str = "tonemap"
    output_activation: str = "exp"
    fallback: str = "auto"  # nearest_key, shared_network, or auto: the better on validation views
    min_bucket_pixels: int | None = None  # rarer keys use the fallback; None: MIN_BUCKET_SHARE of all pixels
    tile_size: int = 16
    bins: int | str = "auto"  # UV bins per axis of the tile key; auto: as many as the data fills (backend/bin_choice.py)
    max_baseline_width: int = 256
    select_specialists: bool = True  # a bucket losing to the shared network on validation views gets its weights
    per_network_stopping: bool = True  # each bucket keeps its weights of its own best validation (early_stopping.py)
    ema_decay: float = EMA_DECAY  # validation and the bank use the weights' moving average with this decay per
    # step (backend/weight_average.py; docs/training.md, "The weights' moving average"); 0: the raw weights
    teacher: str | None = "auto"  # bank whose shading of the unlabelled views adds training pixels;
    # "auto": with unlabelled views, train a teacher of teacher_kind on the labelled pixels first (or reuse it)
    teacher_kind: str = NEURAL_TEXTURE  # or single_cost (one MLP of the bank's layers); docs/training.md
    teacher_widths: tuple[int, ...] | None = None  # the teacher's hidden widths; None: widths
    texture_channels: int = TEXTURE_CHANNELS  # neural_texture models: learned channels per texel
    texture_resolution: int = TEXTURE_RESOLUTION  # and texels per side
    warm_from: str | None = None  # bank to start every network from instead of the teacher (same layers,
    # or a neural_texture bank of the same hidden widths, folded: backend.neural_texture.folded_rows)
    warm_start: bool = True  # start from warm_from or the teacher (backend.warm_start); False: random start,
    # the teacher's labels only
    per_light_targets: bool = True  # learn each light's own ground truth (one record per pixel and light);
    # False: the sum over the lights, one record per pixel (docs/training.md, "Per-light ground truth and the
    # whole budget")
    halo: int = HALO  # px: a specialist also learns its neighbouring tiles' pixels this close to their common
    # border, so that neighbours agree there (backend/buckets.py; docs/training.md, "Tile seams: the halo")
    border_blend: int = BORDER_BLEND  # px: a pixel this close to its tile's edge mixes in the neighbouring
    # tile's network, weighted linearly to 1/2 on the edge (hash banks only; 0: off; gbuffer.md section 4b)
    local_frames: bool = True  # each specialist trains on its inputs normalised over its own bucket, folded into
    # its first layer in the bank (backend/local_frames.py; docs/training.md, "Local input frames")
    cost_multiply_adds: int | None = None  # single_cost: hidden widths chosen so that one evaluation costs about
    # this many multiply-adds per pixel and light (`train --baselines` passes the bank's, border blend
    # included); None: the bank's layers

    def validate(self) -> None:
        problems = []
        if self.kind not in MODEL_KINDS:
            problems.append(f"kind {self.kind!r} (choose {', '.join(MODEL_KINDS)})")
        if self.loss_space not in LOSS_SPACES:
            problems.append(f"loss space {self.loss_space!r} (choose {', '.join(LOSS_SPACES)})")
        if self.output_activation not in OUTPUT_ACTIVATIONS:
            problems.append(f"output activation {self.output_activation!r}")
        if self.teacher_kind not in TEACHER_KINDS:
            problems.append(f"teacher kind {self.teacher_kind!r} (choose {', '.join(TEACHER_KINDS)})")
        if self.teacher_widths is not None and (not self.teacher_widths or min(self.teacher_widths) < 1):
            problems.append("teacher widths must be positive")
        if self.texture_channels < 1 or self.texture_resolution < 2:
            problems.append("texture channels must be positive and its resolution at least 2")
        if self.fallback not in (*FALLBACK_MODES, "auto"):
            problems.append(f"fallback {self.fallback!r}")
        if self.steps is not None and self.steps < 1 or self.minutes is not None and self.minutes <= 0:
            problems.append("steps and minutes must be positive")
        if not self.widths or min(self.widths) < 1 or min(self.batch, self.checkpoint_every, self.eval_every) < 1:
            problems.append("widths, batch, checkpoint and evaluation intervals must be positive")
        if not 0 <= self.ema_decay < 1:
            problems.append(f"moving-average decay {self.ema_decay} (0 <= decay < 1; 0: off)")
        if not 0 <= self.halo < self.tile_size:
            problems.append(f"halo {self.halo} (0..{self.tile_size - 1} pixels)")
        if not 0 <= self.border_blend <= self.tile_size // 2:
            problems.append(f"border blend {self.border_blend} (0..{self.tile_size // 2} pixels)")
        if self.bins != "auto" and not (isinstance(self.bins, int) and 1 <= self.bins <= MAX_BINS) or self.tile_size < 1:
            problems.append(f"bins {self.bins} (1..{MAX_BINS}) or tile size {self.tile_size}")
        if self.cost_multiply_adds is not None and self.cost_multiply_adds < 1:
            problems.append(f"cost {self.cost_multiply_adds} multiply-adds per pixel and light (must be positive)")
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            problems.append("device cuda, but torch sees no CUDA device")
        if problems:
            raise UserError("invalid training settings: " + "; ".join(problems))

    @property
    def layers(self) -> list[int]:
        inputs = N_FEATURES + (self.texture_channels if self.kind == NEURAL_TEXTURE else 0)
        return [inputs, *self.widths, 3]

    @property
    def step_limit(self) -> int | None:
        return self.steps if self.steps is not None else (None if self.minutes else DEFAULT_STEPS)

    def fingerprint(self) -> str:
        """What a checkpoint must agree on to be resumed (everything but the budget and device)."""
        fixed = {k: v for k, v in dataclasses.asdict(self).items()
                 if k not in ("steps", "minutes", "device", "resume", "checkpoint_every", "patience", "out")}
        if self.kind != HASH_BANK:
            del fixed["halo"]  # only specialists learn borrowed pixels: a teacher serves banks of any halo
            del fixed["border_blend"]  # and only they are mixed at tile edges
            del fixed["local_frames"]
            del fixed["bins"]  # one network for every key
        if self.kind != SINGLE_COST:
            del fixed["cost_multiply_adds"]
        fixed["lr_scales"] = lr_scales(self.kind)
        return hashlib.sha256(json.dumps(fixed, sort_keys=True, default=list).encode()).hexdigest()


@dataclass
class TrainProgress:
    step: int
    total_steps: int | None
    loss: float
    val_psnr: float | None
    elapsed_s: float
    eta_s: float | None
    phase: str  # "buckets", "train", "validate", "save", "done"


@dataclass
class TrainResult:
    bank_path: Path | None  # None when cancelled (the checkpoint holds the progress)
    steps: int
    val_psnr: float
    seconds: float
    stopped_early: bool
    cancelled: bool
    curve_path: Path | None
    checkpoint_path: Path
    history: list[dict] = field(default_factory=list)


# --- the problem: networks, their pixels and the normalised data --------------------------------


@dataclass
class Problem:
    """The networks to train: network r samples rows start[r] : start[r] + count[r] of the data."""

    slot_keys: list[int]
    start: torch.Tensor  # [R] int64 (CPU, for sampling)
    count: torch.Tensor  # [R] int64
    pixels_per_network: int
    layers: list[int]
    features: torch.Tensor  # [N, L, F] normalised, on the device
    factor: torch.Tensor  # [N, L, 3]
    target: torch.Tensor  # [N, 3]
    feature_mean: np.ndarray
    feature_std: np.ndarray
    initial_output: np.ndarray  # [3] typical transfer target / sum(factor)
    filter_radii: FilterRadii


def feature_statistics(buckets: Buckets) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std of every feature over the (pixel, light) pairs that carry light."""
    records = buckets.records
    lit = records.factor.sum(-1) > 0
    values = records.features[lit].astype(np.float64)
    return values.mean(0).astype(np.float32), np.maximum(values.std(0), 1e-2).astype(np.float32)


def same_params_width(config: TrainConfig, total_params: int) -> int:
    """Hidden width of a network with as many hidden layers as config and ~total_params parameters."""
    width = 1
    while width < config.max_baseline_width and slot_size([N_FEATURES, *[width + 1] * len(config.widths), 3]) <= total_params:
        width += 1
    return width


def same_cost_width(config: TrainConfig, target: int) -> int:
    """Hidden width of a network with as many hidden layers as config whose multiply-adds per pixel and
    light are nearest to `target` (never narrower than config's widest layer)."""
    def cost(width: int) -> int:
        return multiply_adds([N_FEATURES, *[width] * len(config.widths), 3])

    width = max(config.widths)
    while width < config.max_baseline_width and abs(cost(width + 1) - target) < abs(cost(width) - target):
        width += 1
    return width


def blended_cost(bank_path, data) -> int:
    """Multiply-adds per pixel and light that a hash bank pays on its dataset's validation views, the
    networks its border blend mixes in included: what `train --baselines` matches single_cost to."""
    bank, dataset = load_bank(bank_path), open_dataset(data)
    return round(multiply_adds(bank.layers) * evaluations_per_pixel(bank, load_views(dataset, dataset.indices("val"))))


def min_bucket_pixels(config: TrainConfig, total_pixels: int) -> int:
    return bucket_threshold(config.min_bucket_pixels, total_pixels)


def build_problem(buckets: Buckets, config: TrainConfig, radii: FilterRadii,
                  normalisation: tuple[np.ndarray, np.ndarray] | None = None) -> Problem:
    if config.kind != HASH_BANK:  # borrowed pixels only feed the specialists
        buckets = buckets.without_borrowed()
    total = len(buckets.records)
    threshold = min_bucket_pixels(config, buckets.own_pixels)
    own = buckets.own_count >= threshold
    n_hash_networks = int(own.sum()) + 1  # + the shared fallback network
    layers = config.layers
    if config.kind == HASH_BANK:
        if not own.any():
            raise UserError(f"no tile key has {threshold} training pixels (the largest bucket has "
                            f"{int(buckets.own_count.max())}); lower --min-bucket-pixels or generate more samples")
        slot_keys = [*buckets.keys[own].tolist(), SHARED_SLOT_KEY]
        start = [*buckets.start[own].tolist(), 0]
        count = [*buckets.count[own].tolist(), total]
        per_network = config.batch
    else:  # one network, fed as many pixels per step as the whole hash bank
        slot_keys, start, count, per_network = [SHARED_SLOT_KEY], [0], [total], config.batch * n_hash_networks
        if config.kind == SINGLE_PARAMS:
            width = same_params_width(config, n_hash_networks * slot_size(config.layers))
            layers = [N_FEATURES, *[width] * len(config.widths), 3]
        elif config.kind == SINGLE_COST and config.cost_multiply_adds is not None:
            layers = [N_FEATURES, *[same_cost_width(config, config.cost_multiply_adds)] * len(config.widths), 3]
        # neural_texture: config.layers already has the texture's channels as extra inputs
    # A teacher's normalisation, where there is one, so that networks starting from it see what it saw.
    mean, std = normalisation if normalisation is not None else feature_statistics(buckets)
    records = buckets.records
    device = torch.device(config.device)
    light_sum = records.factor.sum(1).mean(-1)
    usable = light_sum > 1e-6
    ratio = np.median(records.target[usable] / light_sum[usable, None], axis=0) if usable.any() else np.full(3, 0.3)
    return Problem(
        slot_keys=slot_keys,
        start=torch.tensor(start, dtype=torch.int64),
        count=torch.tensor(count, dtype=torch.int64),
        pixels_per_network=per_network,
        layers=layers,
        features=torch.from_numpy((records.features - mean) / std).to(device),
        factor=_tensor(records.factor, device),
        target=_tensor(records.target, device),
        feature_mean=mean,
        feature_std=std,
        initial_output=np.clip(ratio, 0.01, 10.0),
        filter_radii=radii,
    )


def _tensor(array: np.ndarray, device) -> torch.Tensor:
    """The array as a tensor, sharing its memory unless it is read-only (kept records: LastResult)."""
    return torch.from_numpy(array if array.flags.writeable else array.copy()).to(device)


def loss_per_network(pred: torch.Tensor, target: torch.Tensor, space: str) -> torch.Tensor:
    """Mean loss of each network over its pixels, [R]; pred and target are [R, M, 3] radiance."""
    if space == "log":
        diff = torch.log(pred + LOG_EPS) - torch.log(target + LOG_EPS)
    elif space == "tonemap":  # Reinhard then gamma 1/2.2: close to what the display shows
        diff = (pred / (1 + pred)).clamp_min(1e-8) ** (1 / 2.2) - (target / (1 + target)).clamp_min(1e-8) ** (1 / 2.2)
    else:
        diff = pred - target
    return (diff * diff).mean(dim=(1, 2))


# --- banks ---------------------------------------------------------------------------------------


def fallback_candidates(config: TrainConfig) -> tuple[str, ...]:
    """The fallback modes the bank may be written with; validation during training uses the first.

    `auto` scores every mode on the validation views at the end and keeps the best; a single
    network is its own fallback.
    """
    if config.kind != HASH_BANK:
        return ("shared_network",)
    return FALLBACK_MODES if config.fallback == "auto" else (config.fallback,)


def to_bank(model, problem: Problem, config: TrainConfig, fallback: str, provenance: dict) -> Bank:
    rows = model.slot_rows()
    slot_keys = list(problem.slot_keys)
    pixels = problem.count.tolist()
    kind = BANK_KIND_OF[config.kind]
    if fallback == "nearest_key":  # the shared network is not needed
        rows, slot_keys, pixels = rows[:-1], slot_keys[:-1], pixels[:-1]
    shared = slot_keys.index(SHARED_SLOT_KEY) if fallback == "shared_network" else None
    meta = make_meta(problem.layers, slot_keys, pixels, tile_size=config.tile_size, bins=config.bins,
                     output_activation=config.output_activation, fallback=fallback, shared_slot=shared,
                     kind=kind, filter_radii=problem.filter_radii, provenance=provenance,
                     texture=None if kind != NEURAL_TEXTURE else
                     {"channels": config.texture_channels, "resolution": config.texture_resolution},
                     border_blend=config.border_blend if kind == HASH_BANK else 0)
    return make_bank(rows, problem.feature_mean, problem.feature_std, meta,
                     model.texture_array() if kind == NEURAL_TEXTURE else None)


# --- the loop's state and its checkpoint ---------------------------------------------------------

CHECKPOINT_VERSION = 3  # 2: the whole loop state as one TrainState; 3: with the weights' moving average


@dataclass
class TrainState:
    """Everything the training loop changes, saved as it is in every checkpoint.

    `--resume` loads it back and continues bit for bit, as if the run had never stopped.
    """

    step: int = 0
    history: list[dict] = field(default_factory=list)  # one entry per validation
    best_psnr: float = -math.inf
    best_step: int = 0
    best_params: list | None = None  # the model's parameters at best_psnr
    evals_since_best: int = 0
    network_bests: NetworkBests | None = None  # hash banks: each network's own best validation
    seconds: float = 0.0  # training time of this run and of those it resumes, at the last capture
    params: list | None = None  # the model, optimizer and sampling generator at the last capture
    optimizer: dict | None = None
    generator: torch.Tensor | None = None
    average: list | None = None  # the weights' moving average at the last capture (backend.weight_average)

    def capture(self, model, optimizer, generator: torch.Generator, average: WeightAverage, seconds: float) -> None:
        self.params, self.optimizer, self.generator = model.state(), optimizer.state_dict(), generator.get_state()
        self.average, self.seconds = average.state(), seconds

    def restore(self, model, optimizer, generator: torch.Generator) -> None:
        model.load_state(self.params)
        optimizer.load_state_dict(self.optimizer)
        generator.set_state(self.generator)


def save_checkpoint(path: Path, state: TrainState, fingerprint: str, manifest_sha: str) -> None:
    with atomic_open(path) as stream:
        torch.save({"version": CHECKPOINT_VERSION, "fingerprint": fingerprint, "manifest_sha256": manifest_sha,
                    "state": vars(state)}, stream)


def load_checkpoint(path: Path, config: TrainConfig, manifest_sha: str) -> TrainState | None:
    if not path.exists():
        return None
    try:
        saved = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise UserError(f"{path}: unreadable checkpoint ({exc}); delete it or train without --resume") from exc
    if saved.get("version") != CHECKPOINT_VERSION:
        raise UserError(f"{path}: a checkpoint of an older version of this code; train without --resume "
                        "to start over")
    if saved.get("fingerprint") != config.fingerprint() or saved.get("manifest_sha256") != manifest_sha:
        raise UserError(f"{path}: checkpoint was made with other training settings or data; "
                        "train without --resume to start over")
    return TrainState(**saved["state"])


# --- the loop ------------------------------------------------------------------------------------


def _splits(dataset) -> tuple[list[int], list[int]]:
    train_ids, val_ids = dataset.indices("train"), dataset.indices("val")
    if len(dataset) < 2 or not train_ids or not val_ids:
        raise DatasetError(f"{dataset.root}: training needs at least one train and one val sample; this dataset "
                           f"has {len(train_ids)} train and {len(val_ids)} val of {len(dataset)} samples. "
                           "Generate more samples (e.g. --samples 20)")
    return train_ids, val_ids


def manifest_sha256(dataset) -> str:
    return hashlib.sha256((Path(dataset.root) / "manifest.json").read_bytes()).hexdigest()


def train_step(model, optimizer, problem: Problem, generator: torch.Generator, loss_space: str) -> float:
    """One Adam step of every network on its own freshly sampled pixels; returns the mean loss."""
    n_networks, m = len(problem.slot_keys), problem.pixels_per_network
    # Sampled on the CPU generator so a seed gives the same pixels on every device.
    offsets = (torch.rand(n_networks, m, generator=generator) * problem.count[:, None]).long()
    rows = (problem.start[:, None] + offsets).to(problem.features.device)
    flat = rows.view(-1)  # index_select: several times faster than indexing with `rows` on the CPU
    x = problem.features.index_select(0, flat)  # [R * M, L, F]
    n_lights = x.shape[1]
    transfer = model(x.view(n_networks, m * n_lights, -1)).view(n_networks, m, n_lights, 3)
    pred = (transfer * problem.factor.index_select(0, flat).view(n_networks, m, n_lights, 3)).sum(2)
    losses = loss_per_network(pred, problem.target.index_select(0, flat).view(n_networks, m, 3), loss_space)
    optimizer.zero_grad(set_to_none=True)
    losses.sum().backward()  # a sum keeps every network's gradient its own
    optimizer.step()
    return float(losses.detach().mean())


class Trainer:
    """One model's training run: set-up, the loop (validation, early stop, checkpoints), the bank."""

    def __init__(self, config: TrainConfig, on_progress, should_stop):
        self.config = config
        self.on_progress = on_progress or (lambda progress: None)
        self.should_stop = should_stop or (lambda: False)
        self.out = Path(config.out)
        self.checkpoint_path = companion_path(self.out, ".ckpt")
        self.started = time.monotonic()
        self.state = TrainState()
        self.seconds_before = 0.0  # training time of the runs this one resumes
        self.base_lr = config.lr  # the kind's own rate, set in run() (backend.learning_rates)

    @property
    def elapsed(self) -> float:
        return self.seconds_before + time.monotonic() - self.started

    def done_fraction(self, step: int) -> float:
        """How much of the budget (steps or minutes, whichever runs out first) is spent, 0..1+."""
        limit, minutes = self.config.step_limit, self.config.minutes
        return max(step / limit if limit else 0.0, self.elapsed / (60 * minutes) if minutes else 0.0)

    def progress(self, step: int, loss: float, val_psnr, phase: str) -> None:
        done = self.done_fraction(step)
        eta = self.elapsed * (1 - done) / done if done > 0 else None
        self.on_progress(TrainProgress(step, self.config.step_limit, loss, val_psnr, self.elapsed, eta, phase))

    def schedule(self, step: int) -> float:
        """Cosine decay of the learning rate to 5% over the budget."""
        done = min(self.done_fraction(step), 1.0)
        return self.base_lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * done)))

    # --- set-up

    def run(self) -> TrainResult:
        config = self.config
        config.validate()
        config, bin_choice = with_bins(config)
        self.config = config
        dataset = open_dataset(config.data)
        train_ids, val_ids = _splits(dataset)
        self.out.parent.mkdir(parents=True, exist_ok=True)
        radii = FilterRadii.for_object(dataset.bounding_radius)
        store = BucketStore.beside(self.out, dataset, config.tile_size, config.bins, radii, config.per_light_targets,
                                   config.halo)
        store.update(train_ids, on_sample=lambda i: self.progress(0, float("nan"), None, "buckets"))
        buckets, teacher_pixels, teacher = store.load(train_ids), 0, None
        unlabelled = dataset.indices("unlabelled")
        if config.teacher not in (None, "auto") and unlabelled:
            teacher = load_bank(config.teacher)
            labelled = teacher_records(teacher, dataset, unlabelled, config.tile_size, config.bins, radii,
                                       config.device, on_view=lambda i: self.progress(0, float("nan"), None, "teacher"),
                                       per_light=config.per_light_targets,
                                       halo=config.halo)  # one set for every kind: build_problem drops
            # the borrowed records for a single network, so the baselines reuse the bank's labels
            if labelled is not None:
                teacher_pixels = int((~labelled.borrowed).sum())
                buckets = Buckets.from_records(merge([buckets.records, labelled]))
        source = load_bank(config.warm_from) if config.warm_from else teacher
        problem = build_problem(buckets, config, radii,
                                None if source is None else (source.feature_mean, source.feature_std))
        views = load_views(dataset, val_ids)
        generator = torch.Generator().manual_seed(config.seed)
        torch.manual_seed(config.seed)
        if config.kind == NEURAL_TEXTURE:
            model = NeuralTextureModel(problem.layers, config.texture_channels, config.texture_resolution,
                                       config.output_activation, problem.initial_output, generator, config.device,
                                       problem.feature_mean, problem.feature_std)
        else:
            frames = None
            if config.kind == HASH_BANK and config.local_frames:
                frames = local_frames(problem.features, problem.factor, problem.start, problem.count,
                                      shared=[problem.slot_keys.index(SHARED_SLOT_KEY)])
            model = StackedMLP(len(problem.slot_keys), problem.layers, config.output_activation,
                               problem.initial_output, generator, config.device, input_frames=frames)
        warm = warm_start(model, problem, source, config.kind) if source is not None and config.warm_start else None
        self.base_lr = learning_rate(config.lr, config.kind, warm=warm is not None)
        optimizer = torch.optim.Adam(model.params, lr=self.base_lr)
        provenance = {"dataset": str(Path(config.data).resolve()), "manifest_sha256": manifest_sha256(dataset),
                      "seed": config.seed, "device": config.device, "backend_version": backend.__version__,
                      "learning_rate": self.base_lr,  # the kind's peak rate (backend.learning_rates)
                      "model": config.kind, "loss_space": config.loss_space, "batch_per_network": problem.pixels_per_network,
                      "train_pixels": buckets.own_pixels,  # records: pixel-light pairs when per light
                      "borrowed_pixels": int(problem.target.shape[0]) - buckets.own_pixels, "halo": config.halo,
                      "bins": config.bins, "bins_chosen": None if bin_choice is None else dataclasses.asdict(bin_choice),
                      "per_light_targets": config.per_light_targets,
                      "cost_multiply_adds": config.cost_multiply_adds if config.kind == SINGLE_COST else None,
                      "min_bucket_pixels": min_bucket_pixels(config, buckets.own_pixels),
                      "train_samples": len(train_ids), "val_samples": len(val_ids),
                      "fingerprint": config.fingerprint(),
                      "teacher": config.teacher if teacher_pixels else None, "teacher_pixels": teacher_pixels,
                      "teacher_kind": teacher.kind if teacher_pixels else None,
                      "unlabelled_samples": len(unlabelled) if teacher_pixels else 0, "warm_start": warm is not None,
                      "warm_start_from": None if warm is None else config.warm_from or config.teacher,
                      "warm_start_how": warm}
        resumed = load_checkpoint(self.checkpoint_path, config, provenance["manifest_sha256"]) if config.resume else None
        if resumed is not None:
            resumed.restore(model, optimizer, generator)
            self.state, self.seconds_before = resumed, resumed.seconds
        # The budget (and the learning-rate schedule over it) counts training only: the first model
        # pays for building the bucket store, which the baselines after it reuse.
        provenance["setup_seconds"] = time.monotonic() - self.started
        self.started = time.monotonic()
        return self.loop(model, optimizer, generator, problem, views, provenance)

    # --- the loop

    def loop(self, model, optimizer, generator, problem: Problem, views, provenance: dict) -> TrainResult:
        config, state = self.config, self.state
        validated_as = fallback_candidates(config)[0]
        per_network = config.kind == HASH_BANK and config.per_network_stopping
        if state.best_params is None:
            state.best_params = model.state()
        validation = RepeatedViews(views, config.device)
        average = WeightAverage(model, config.ema_decay, state.average)

        def validate(loss: float) -> bool:
            with average.applied():  # what is scored and kept is the weights' moving average
                return score(loss)

        def score(loss: float) -> bool:
            """Score the model on the validation views, keep it if best; True when patience is spent."""
            self.progress(state.step, loss, state.best_psnr if state.history else None, "validate")
            bank = to_bank(model, problem, config, validated_as, provenance)
            errors = pixel_errors(validation.render(bank), views)
            psnr = psnr_of_errors(errors)
            if per_network:  # the validation bank's slots are the model's packed rows: not packed again
                state.network_bests = state.network_bests or NetworkBests.empty(model.slot_rows())
                state.network_bests.update(bank, errors, views, state.step)
            state.history.append({"step": state.step, "loss": loss, "val_psnr": psnr, "seconds": self.elapsed})
            if psnr > state.best_psnr + MIN_PSNR_GAIN:
                state.best_psnr, state.best_step, state.best_params = psnr, state.step, model.state()
                state.evals_since_best = 0
            else:
                state.evals_since_best += 1
            return bool(config.patience) and state.evals_since_best >= config.patience

        def checkpoint() -> None:
            state.capture(model, optimizer, generator, average, self.elapsed)
            save_checkpoint(self.checkpoint_path, state, config.fingerprint(), provenance["manifest_sha256"])

        loss, stopped_early, cancelled = float("nan"), False, False
        while self.done_fraction(state.step) < 1.0 and not stopped_early:
            if self.should_stop():
                cancelled = True
                break
            for group in optimizer.param_groups:
                group["lr"] = self.schedule(state.step)
            loss = train_step(model, optimizer, problem, generator, config.loss_space)
            state.step += 1
            average.update(state.step)
            if state.step % config.eval_every == 0:
                stopped_early = validate(loss)
            if state.step % config.checkpoint_every == 0:
                checkpoint()
            self.progress(state.step, loss, state.history[-1]["val_psnr"] if state.history else None, "train")
        if not cancelled and (not state.history or state.history[-1]["step"] != state.step):
            validate(loss)
        checkpoint()
        if cancelled:
            return TrainResult(None, state.step, state.best_psnr, self.elapsed, stopped_early, True, None,
                               self.checkpoint_path, state.history)
        return self.finish(model, problem, views, provenance, stopped_early)

    # --- the bank

    def finish(self, model, problem: Problem, views, provenance: dict, stopped_early: bool) -> TrainResult:
        config, state = self.config, self.state
        self.progress(state.step, state.history[-1]["loss"], state.best_psnr, "save")
        model.load_state(state.best_params)
        stopped_on_own = None
        if state.network_bests is not None:
            rows, stopped_on_own = state.network_bests.combined(model.slot_rows())
            model.load_rows(rows)
        selection = None
        if config.kind == HASH_BANK and config.select_specialists:
            selection = select_specialists(to_bank(model, problem, config, "shared_network", provenance), views,
                                           config.device)
            slot_keys = list(problem.slot_keys)
            model.copy_network(slot_keys.index(SHARED_SLOT_KEY), [slot_keys.index(k) for k in selection.replaced_keys])
        scores = {mode: mean_psnr(to_bank(model, problem, config, mode, provenance), views, config.device)
                  for mode in fallback_candidates(config)}
        fallback = max(scores, key=scores.get)
        provenance = {**provenance, "steps": state.step, "best_step": state.best_step,
                      "seconds": round(self.elapsed, 2),
                      "val_psnr": scores[fallback], "fallback_val_psnr": scores, "stopped_early": stopped_early,
                      "networks_stopped_on_own_pixels": stopped_on_own,
                      "specialists_replaced": None if selection is None else len(selection.lost_keys),
                      "specialists_judged": None if selection is None else selection.judged,
                      "specialists_unjudged": None if selection is None else len(selection.unjudged_keys),
                      "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                      "history": [{k: round(v, 5) for k, v in h.items()} for h in state.history]}
        save_bank(to_bank(model, problem, config, fallback, provenance), self.out)
        curve = plot_curve(state.history, companion_path(self.out, ".curve.png"), f"{config.kind} ({self.out.name})")
        self.progress(state.step, state.history[-1]["loss"], scores[fallback], "done")
        return TrainResult(self.out, state.step, scores[fallback], self.elapsed, stopped_early, False, curve,
                           self.checkpoint_path, state.history)


def with_bins(config: TrainConfig) -> tuple[TrainConfig, BinChoice | None]:
    """config with its tile key's bins decided, and the choice when they were "auto" (backend.bin_choice):
    counted over the views its networks learn from, the labelled ones and those a teacher labels."""
    if config.bins != "auto":
        return config, None
    dataset = open_dataset(config.data)
    train_ids, val_ids = _splits(dataset)
    taught = dataset.indices("unlabelled") if config.teacher is not None else []
    choice = choose_bins(dataset, train_ids + taught, val_ids, config.tile_size, config.per_light_targets,
                         config.min_bucket_pixels, cache=Path(config.out).parent / "buckets" / "bin_choice.json")
    return dataclasses.replace(config, bins=choice.bins), choice


def teacher_config(config: TrainConfig) -> TrainConfig:
    """The teacher of config: a model of config.teacher_kind and teacher_widths on the labelled pixels only."""
    return dataclasses.replace(config, kind=config.teacher_kind, widths=tuple(config.teacher_widths or config.widths),
                               out=str(teacher_path(config.out)), teacher=None, warm_from=None)


def needs_teacher(config: TrainConfig) -> bool:
    """Whether config asks for a teacher that is not there yet (or was made with other settings or data)."""
    dataset = open_dataset(config.data)
    if config.teacher != "auto" or not dataset.indices("unlabelled"):
        return False
    teacher = teacher_config(config)
    try:
        provenance = load_bank(teacher.out).meta.get("provenance", {})
    except UserError:  # missing or unreadable: train it
        return True
    return provenance.get("manifest_sha256") != manifest_sha256(dataset) or \
        provenance.get("fingerprint") != teacher.fingerprint()


def train(config: TrainConfig, on_progress: Callable[[TrainProgress], None] | None = None,
          should_stop: Callable[[], bool] | None = None) -> TrainResult:
    """Train the model of config.kind on config.data and write the bank to config.out.

    With `teacher="auto"` and unlabelled views in the dataset, the teacher is trained first
    (`<out>.teacher.nfbank`, reused by later models of the same data) and labels those views.
    """
    if config.teacher == "auto":
        config.validate()
        teacher = teacher_config(with_bins(config)[0])  # its bucket store is then the one its students read
        if needs_teacher(config):
            result = _run_and_release(Trainer(teacher, on_progress, should_stop))
            if result.cancelled:
                return result
        has_views = bool(open_dataset(config.data).indices("unlabelled"))
        config = dataclasses.replace(config, teacher=teacher.out if has_views else None)
    return _run_and_release(Trainer(config, on_progress, should_stop))


def _run_and_release(trainer: Trainer) -> TrainResult:
    """trainer.run(), then its data freed before returning. Libraries it calls leave reference
    cycles through frames (matplotlib's tick-label parser keeps exceptions with their tracebacks),
    and a frame holds the whole training stack's locals: on the demo's data 3-4 GB per model stayed
    resident until Python's cyclic collector happened to run. The service trains in its own
    process, model after model."""
    try:
        return trainer.run()
    finally:
        del trainer
        gc.collect()
