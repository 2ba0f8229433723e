"""Training on the real Suzanne dataset: banks, baselines, determinism, kill -9 + resume, bad input."""

import gc
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from backend.bank import SHARED_SLOT_KEY, load_bank, slot_size
from backend.buckets import LAST_LOAD, PixelRecords, keep_last_results
from backend.errors import DatasetError
from backend.prefilter import FilterRadii
from backend.bank import companion_path
from backend.neural_texture import multiply_adds
from backend.teacher_labels import LAST_LABELS
from backend.training import Problem, TrainConfig, blended_cost, train, train_step
from backend.stacked_mlp import StackedMLP

ROOT = Path(__file__).resolve().parents[1]
FAST = dict(steps=40, eval_every=20, checkpoint_every=20, batch=64, widths=(16, 16), min_bucket_pixels=64)

RADII = FilterRadii.for_object(1.0)


def fast_config(data, out, **changes) -> TrainConfig:
    return TrainConfig(data=str(data), out=str(out), **{**FAST, **changes})


@pytest.mark.slow
def test_hash_bank_is_written_deterministic_and_reports_progress(suzanne_dataset, tmp_path):
    progress = []
    result = train(fast_config(suzanne_dataset, tmp_path / "a" / "bank.nfbank"), on_progress=progress.append)
    bank = load_bank(result.bank_path)
    assert bank.kind == "hash_bank" and bank.layers == [23, 16, 16, 3] and not result.cancelled
    assert np.isfinite(result.val_psnr) and result.steps == 40 and result.curve_path.exists()
    assert {p.phase for p in progress} >= {"buckets", "train", "validate", "save", "done"}
    assert progress[-1].step == 40 and progress[-1].total_steps == 40
    seen = np.nonzero(bank.lut_seen)[0].tolist()
    assert sorted(k for k in bank.meta["slot_keys"] if k != SHARED_SLOT_KEY) == seen
    assert min(bank.meta["slot_pixels"]) >= 64
    provenance = bank.meta["provenance"]
    assert provenance["steps"] == 40 and set(provenance["fallback_val_psnr"]) == {"nearest_key", "shared_network"}
    assert provenance["val_psnr"] == max(provenance["fallback_val_psnr"].values())

    again = train(fast_config(suzanne_dataset, tmp_path / "b" / "bank.nfbank"))
    assert np.array_equal(load_bank(again.bank_path).slots, bank.slots)


@pytest.mark.slow
def test_training_data_is_freed_when_train_returns(suzanne_dataset, tmp_path):
    """Frames left in reference cycles (matplotlib's parser keeps exceptions with their tracebacks)
    held every model's data until the cyclic collector ran: gigabytes per model in the service."""
    gc.disable()
    try:
        train(fast_config(suzanne_dataset, tmp_path / "bank.nfbank", steps=5, eval_every=5))
        # type(), not isinstance(): isinstance on every live object trips deprecated torch module proxies
        alive = [o for o in gc.get_objects() if type(o) in (Problem, PixelRecords, StackedMLP)]
    finally:
        gc.enable()
    assert alive == []


def test_networks_train_independently():
    """Changing one bucket's pixels leaves every other bucket's network bit-for-bit the same."""
    def problem(noise: float) -> Problem:
        rng = np.random.default_rng(0)
        n = 600
        features = rng.normal(size=(n, 1, 23)).astype(np.float32)
        target = np.abs(rng.normal(size=(n, 3))).astype(np.float32)
        target[300:] += noise  # only the second bucket's data changes
        records = PixelRecords(np.repeat([3 | 3 << 8, 5 | 5 << 8], 300), features, np.ones((n, 1, 3), np.float32), target)
        return Problem([3 | 3 << 8, 5 | 5 << 8], torch.tensor([0, 300]), torch.tensor([300, 300]), 32, [23, 8, 3],
                       torch.from_numpy(features), torch.from_numpy(records.factor), torch.from_numpy(target),
                       np.zeros(23, np.float32), np.ones(23, np.float32), np.full(3, 0.5), RADII)

    def run(p: Problem) -> np.ndarray:
        generator = torch.Generator().manual_seed(1)
        model = StackedMLP(2, p.layers, "exp", p.initial_output, generator, "cpu")
        optimizer = torch.optim.Adam(model.params, lr=1e-2)
        for _ in range(20):
            train_step(model, optimizer, p, generator, "tonemap")
        return model.slot_rows()

    a, b = run(problem(0.0)), run(problem(5.0))
    assert np.array_equal(a[0], b[0]) and not np.array_equal(a[1], b[1])


@pytest.mark.slow
def test_kill_9_then_resume_matches_an_uninterrupted_run(suzanne_dataset, tmp_path):
    args = ["train", "--data", str(suzanne_dataset), "--steps", "1500", "--checkpoint-every", "10", "--eval-every", "500",
            "--batch", "32", "--widths", "16,16", "--min-bucket-pixels", "64", "--patience", "0"]
    killed = tmp_path / "killed" / "bank.nfbank"
    checkpoint = companion_path(killed, ".ckpt")
    process = subprocess.Popen([sys.executable, "-m", "backend", *args, "--out", str(killed)], cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not checkpoint.exists() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    time.sleep(0.2)  # die between two checkpoints
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert checkpoint.exists() and not killed.exists(), "the run finished before it could be killed"
    step = torch.load(checkpoint, weights_only=False)["state"]["step"]
    assert 10 <= step < 1500

    resumed = subprocess.run([sys.executable, "-m", "backend", *args, "--out", str(killed), "--resume"], cwd=ROOT,
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    straight = tmp_path / "straight" / "bank.nfbank"
    subprocess.run([sys.executable, "-m", "backend", *args, "--out", str(straight)], cwd=ROOT, check=True,
                   capture_output=True, timeout=300)
    assert np.array_equal(load_bank(killed).slots, load_bank(straight).slots)


@pytest.mark.slow
def test_baselines_same_budget(suzanne_dataset, tmp_path):
    out = tmp_path / "bank.nfbank"
    result = subprocess.run([sys.executable, "-m", "backend", "train", "--data", str(suzanne_dataset), "--out", str(out),
                             "--steps", "20", "--eval-every", "10", "--batch", "32", "--widths", "16,16",
                             "--min-bucket-pixels", "64", "--baselines"], cwd=ROOT, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    bank = load_bank(out)
    cost, params = (load_bank(companion_path(out, f".{k}.nfbank")) for k in ("single_cost", "single_params"))
    assert cost.kind == params.kind == "single_network" and cost.n_slots == params.n_slots == 1
    # single_cost costs what the bank costs a pixel, the networks its border blend mixes in included
    blended = blended_cost(out, suzanne_dataset)
    assert blended > multiply_adds(bank.layers) and cost.meta["provenance"]["cost_multiply_adds"] == blended
    width = cost.layers[1]
    assert cost.layers == [23, width, width, 3] and width >= 16
    assert all(abs(multiply_adds(cost.layers) - blended) <= abs(multiply_adds([23, w, w, 3]) - blended)
               for w in (width - 1, width + 1) if w >= 16)
    assert f"matched to the bank's {blended:,} multiply-adds" in result.stdout
    # Only the specialists are mixed at tile edges (a version-4 bank); one network has nothing to mix.
    assert (bank.border_blend, bank.meta["version"]) == (1, 4)
    assert cost.border_blend == params.border_blend == 0 and "border_blend" not in cost.meta
    hash_networks = len([k for k in bank.meta["slot_keys"] if k != SHARED_SLOT_KEY]) + 1
    total = hash_networks * slot_size(bank.layers)
    assert slot_size(params.layers) <= total < slot_size([23, params.layers[1] + 1, params.layers[1] + 1, 3])
    for baseline in (cost, params):
        provenance = baseline.meta["provenance"]
        assert provenance["steps"] == 20 and provenance["batch_per_network"] == 32 * hash_networks
        assert provenance["warm_start_how"] in ("fold", "fold+widen")
        assert (baseline.lut[1:] == 0).all()


def test_too_small_dataset_is_refused_and_nothing_written(suzanne_dataset, tmp_path):
    small = tmp_path / "one_sample"
    (small / "samples").mkdir(parents=True)
    manifest = json.loads((Path(suzanne_dataset) / "manifest.json").read_text())
    manifest["samples"] = manifest["samples"][:1]
    (small / "manifest.json").write_text(json.dumps(manifest))
    out = tmp_path / "out" / "bank.nfbank"
    with pytest.raises(DatasetError, match="at least one train and one val"):
        train(fast_config(small, out))
    assert not out.exists()
    manifest["samples"] = []
    (small / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DatasetError, match="one_sample"):
        train(fast_config(small, out))


def test_cancel_keeps_a_checkpoint_and_writes_no_bank(suzanne_dataset, tmp_path):
    out = tmp_path / "bank.nfbank"
    calls = []
    result = train(fast_config(suzanne_dataset, out, steps=1000), should_stop=lambda: calls.append(1) or len(calls) > 5)
    assert result.cancelled and result.bank_path is None and not out.exists()
    assert result.steps == 5 and result.checkpoint_path.exists()


def test_bucket_store_only_processes_new_samples(suzanne_dataset, tmp_path):
    from backend.buckets import BucketStore
    from backend.dataset import open_dataset

    dataset = open_dataset(suzanne_dataset)
    train_ids = dataset.indices("train")
    store = BucketStore.beside(tmp_path / "bank.nfbank", dataset, 16, 8, RADII)
    assert store.update(train_ids[:3]) == train_ids[:3]
    first = {i: store.sample_path(i).stat().st_mtime_ns for i in train_ids[:3]}
    reopened = BucketStore.beside(tmp_path / "bank.nfbank", dataset, 16, 8, RADII)
    assert reopened.update(train_ids) == train_ids[3:]
    assert all(reopened.sample_path(i).stat().st_mtime_ns == t for i, t in first.items())
    buckets = reopened.load(train_ids)
    assert (np.diff(buckets.records.keys) >= 0).all() and buckets.count.sum() == len(buckets.records)
    total = sum(int(dataset.load_gbuffer(i).covered.sum()) * dataset.load_gbuffer(i).n_lights for i in train_ids)
    assert len(buckets.records) == total  # one record per pixel and light
    assert BucketStore.beside(tmp_path / "bank.nfbank", dataset, 8, 8, RADII).update(train_ids[:1]) == train_ids[:1]


def test_each_light_gives_its_own_records_and_their_targets_sum_to_the_pixels_truth(suzanne_dataset):
    """Per-light records are the summed records split by light: the same key and features, one light's
    factor each, and targets that add up (within the denoiser's error) to the pixel's combined truth."""
    from backend.buckets import sample_records
    from backend.dataset import open_dataset

    dataset = open_dataset(suzanne_dataset)
    index = next(i for i in dataset.indices("train") if dataset.load_gbuffer(i).n_lights == 2)
    gbuffer = dataset.load_gbuffer(index)
    summed = sample_records(gbuffer, dataset.load_ground_truth(index), 16, 4, RADII)
    split = sample_records(gbuffer, dataset.load_light_ground_truths(index), 16, 4, RADII)
    assert len(split) == 2 * len(summed) and split.features.shape[1] == 1
    np.testing.assert_array_equal(split.keys, np.repeat(summed.keys, 2))
    np.testing.assert_array_equal(split.features[:, 0].reshape(-1, 2, split.features.shape[-1]), summed.features)
    np.testing.assert_array_equal(split.factor[:, 0].reshape(-1, 2, 3), summed.factor)
    pixel_sum = split.target.reshape(-1, 2, 3).sum(1)
    assert np.sqrt(((pixel_sum - summed.target) ** 2).mean()) < 0.1 * np.sqrt((summed.target ** 2).mean())


def test_a_tile_lends_its_border_pixels_to_each_neighbouring_key():
    """Keys [[1, 2], [3, 3]] on 4 px tiles, halo 1: a pixel is lent to every other key whose tile lies
    one pixel away (along x, y or a diagonal), once per key; a tile without coverage (key 0, as
    hashing.tile_keys gives it) borrows nothing."""
    from backend.buckets import halo_records

    key_map = np.repeat(np.repeat(np.array([[1, 2], [3, 3]]), 4, axis=0), 4, axis=1)
    covered = np.ones((8, 8), dtype=bool)
    pixels, keys = halo_records(key_map, covered, 1)
    lent = {(int(p) // 8, int(p) % 8, int(k)) for p, k in zip(pixels, keys)}
    assert len(lent) == len(pixels)
    expected = set()
    for y in range(8):
        for x in range(8):
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    other = key_map[min(max(y + dy, 0), 7), min(max(x + dx, 0), 7)]
                    if other != key_map[y, x]:
                        expected.add((y, x, int(other)))
    assert lent == expected
    assert (3, 3, 2) in lent and (3, 3, 3) in lent and (4, 4, 1) in lent and (0, 0, 2) not in lent
    assert not any(k == 3 for y, x, k in lent if y >= 4)  # the key-3 tiles lend to 1 and 2 only
    covered[:4, 4:] = False  # the tile of key 2 off the face: its key is 0, and it borrows nothing
    key_map[:4, 4:] = 0
    _, keys = halo_records(key_map, covered, 1)
    assert set(keys.tolist()) == {1, 3}


def test_borrowed_pixels_feed_only_the_specialists(suzanne_dataset):
    """A halo adds records under neighbouring keys and changes nothing else: a pixel's own records,
    the bucket sizes that choose which keys get a network, and a single network's data."""
    from backend.buckets import Buckets, sample_records
    from backend.dataset import open_dataset
    from backend.training import build_problem

    dataset = open_dataset(suzanne_dataset)
    index = dataset.indices("train")[0]
    gbuffer, truth = dataset.load_gbuffer(index), dataset.load_light_ground_truths(index)
    plain = sample_records(gbuffer, truth, 16, 4, RADII)
    halo = sample_records(gbuffer, truth, 16, 4, RADII, halo=3)
    own = np.flatnonzero(~halo.borrowed)
    assert halo.borrowed.any() and not plain.borrowed.any() and (np.diff(halo.keys) >= 0).all()
    for name in ("keys", "features", "factor", "target"):
        np.testing.assert_array_equal(getattr(halo, name)[own], getattr(plain, name))
    assert np.isin(halo.keys[halo.borrowed], plain.keys).all()  # only keys the view has
    with_halo, without = Buckets.from_records(halo), Buckets.from_records(plain)
    np.testing.assert_array_equal(with_halo.keys, without.keys)
    np.testing.assert_array_equal(with_halo.own_count, without.count)
    assert (with_halo.count > with_halo.own_count).any()
    config = TrainConfig(data=str(suzanne_dataset), out="unused", min_bucket_pixels=50, teacher=None)
    bank = build_problem(with_halo, config, RADII)
    assert bank.slot_keys == build_problem(without, config, RADII).slot_keys
    assert bank.target.shape[0] == len(halo)
    single = build_problem(with_halo, TrainConfig(data=str(suzanne_dataset), out="unused", kind="single_cost"), RADII)
    np.testing.assert_array_equal(single.target.numpy(), plain.target)


def test_combined_targets_train_from_a_store_of_their_own(suzanne_dataset, tmp_path):
    out = tmp_path / "bank.nfbank"
    result = train(TrainConfig(data=str(suzanne_dataset), out=str(out), steps=4, eval_every=2, min_bucket_pixels=50,
                               teacher=None, per_light_targets=False))
    bank = load_bank(result.bank_path)
    assert bank.provenance["per_light_targets"] is False
    assert (tmp_path / "buckets" / f"tile16_bins{bank.bins}_summed" / "index.json").exists()
    assert not (tmp_path / "buckets" / f"tile16_bins{bank.bins}").exists()


def test_patience_stops_a_run_whose_validation_no_longer_improves(suzanne_dataset, tmp_path):
    """Off by default (the whole budget is used); with --patience N, N evaluations without a 0.05 dB
    gain end the run. A learning rate of 1e-9 leaves the validation PSNR where it was."""
    config = dict(data=str(suzanne_dataset), steps=50, eval_every=1, min_bucket_pixels=50, teacher=None, lr=1e-9)
    assert TrainConfig(out="x", **config).patience == 0
    result = train(TrainConfig(out=str(tmp_path / "stops.nfbank"), patience=2, **config))
    assert result.stopped_early and result.steps == 3


@pytest.mark.slow
def test_models_of_one_process_share_their_pixels_and_train_as_they_would_alone(suzanne_dataset, tmp_path):
    out = tmp_path / "bank.nfbank"
    alone = load_bank(train(fast_config(suzanne_dataset, companion_path(out, ".single_params.nfbank"),
                                        kind="single_params")).bank_path).slots  # trains the shared teacher too
    with keep_last_results():
        train(fast_config(suzanne_dataset, out))
        kept = LAST_LOAD.value, LAST_LABELS.value
        assert kept[0] is not None and kept[1] is not None and not kept[1].features.flags.writeable
        shared = train(fast_config(suzanne_dataset, companion_path(out, ".single_params.nfbank"), kind="single_params"))
        assert LAST_LOAD.value is kept[0] and LAST_LABELS.value is kept[1]  # read once, for both models
    assert LAST_LOAD.value is None and LAST_LABELS.value is None  # released after the block
    np.testing.assert_array_equal(load_bank(shared.bank_path).slots, alone)


def test_a_validation_score_lifted_by_choices_made_on_those_views_says_so():
    from backend.commands.train import fitted_note
    from backend.training import TrainResult

    def result(final: float) -> TrainResult:
        history = [{"step": 100, "val_psnr": 33.0}, {"step": 200, "val_psnr": 34.19}]
        return TrainResult(None, 200, final, 1.0, False, False, None, Path("x.ckpt"), history)

    assert "34.19 before each network's own best step and selection" in fitted_note(result(34.96))
    assert fitted_note(result(34.25)) == ""  # within 0.1 dB of the loop's best: nothing to flag
    assert fitted_note(TrainResult(None, 0, 30.0, 0.0, False, False, None, Path("x.ckpt"), [])) == ""
