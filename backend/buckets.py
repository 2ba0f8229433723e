"""The bucket store: every covered training pixel filed under its tile's key ("one folder per hash").

An indexed equivalent of the talk's folders: one file per sample holding that sample's pixels
sorted by key, plus `index.json` with each sample's per-key pixel counts. Adding samples to a
dataset and training again only processes the new samples (a sample whose record changed is
processed again). The store lives beside the bank being trained, in
`buckets/tile<T>_bins<B>/` (the dataset folder stays read-only), and is rebuilt when the dataset,
its settings, the feature spec or the store format change.

A tile's network also learns from its neighbours' pixels near their common border (`halo`, in
pixels): such a record is *borrowed*, filed under the neighbouring tile's key as well as its own.
Two networks that meet at a tile border then fit the same pixels there, so their answers agree
where the key changes and the frame shows no seam; each network also sees a little more of the
face. Borrowed records only feed the hash bank's specialists: bucket sizes, the choice of which
keys get a network and every single-network model use a pixel's own record alone.

A pixel record is what training needs for one pixel: features per light `[L, F]`, light factor
per light `[L, 3]` (gbuffer.md section 5) and the ground-truth radiance `[3]` under those lights.
With each light's own ground truth (dataset version 4), a pixel seen under L lights gives L
records of one light each: L targets where the sum gave one, and no light's share to guess.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from backend.atomic import atomic_open, write_text_atomic
from backend.errors import DatasetError
from backend.features import shading_inputs
from backend.gbuffer import FEATURE_SPEC_VERSION, GBuffer
from backend.hashing import gbuffer_tile_keys, pixel_tile_map
from backend.prefilter import FilterRadii

STORE_VERSION = 4  # 3: one record per pixel and light, from each light's own ground truth; 4: borrowed records


@dataclass
class PixelRecords:
    """Covered pixels sorted by tile key; L may differ between samples until `merge` pads it."""

    keys: np.ndarray  # [N] int64
    features: np.ndarray  # [N, L, F] float32
    factor: np.ndarray  # [N, L, 3] float32
    target: np.ndarray  # [N, 3] float32
    borrowed: np.ndarray | None = None  # [N] bool: filed under a neighbouring tile's key (halo); None: none is

    def __post_init__(self):
        if self.borrowed is None:
            self.borrowed = np.zeros(len(self.keys), dtype=bool)

    def __len__(self) -> int:
        return len(self.keys)

    def frozen(self) -> "PixelRecords":
        """These records, made read-only (kept for the next model of the same process: see LastResult)."""
        for array in (self.keys, self.features, self.factor, self.target, self.borrowed):
            array.setflags(write=False)
        return self

    def select(self, rows: np.ndarray) -> "PixelRecords":
        return PixelRecords(self.keys[rows], self.features[rows], self.factor[rows], self.target[rows],
                            self.borrowed[rows])


@dataclass
class Buckets:
    """All training pixels grouped by key: bucket b owns rows start[b] : start[b] + count[b]."""

    records: PixelRecords
    keys: np.ndarray  # [n_buckets] int64, ascending
    start: np.ndarray  # [n_buckets] int64
    count: np.ndarray  # [n_buckets] int64

    own_count: np.ndarray  # [n_buckets] int64: of them, the pixels of the key's own tiles (not borrowed)

    @classmethod
    def from_records(cls, records: PixelRecords) -> "Buckets":
        keys, start, count = np.unique(records.keys, return_index=True, return_counts=True)
        own_count = np.add.reduceat(~records.borrowed, start) if len(start) else np.zeros(0, np.int64)
        return cls(records, keys, start.astype(np.int64), count.astype(np.int64), own_count.astype(np.int64))

    @property
    def own_pixels(self) -> int:
        return int(self.own_count.sum())

    def without_borrowed(self) -> "Buckets":
        """Every pixel once, under its own tile's key: what a single network trains on."""
        if not self.records.borrowed.any():
            return self
        return Buckets.from_records(self.records.select(np.flatnonzero(~self.records.borrowed)))


def sample_records(gbuffer: GBuffer, ground_truth: np.ndarray, tile_size: int, bins: int,
                   radii: FilterRadii, halo: int = 0) -> PixelRecords:
    """Pixel records of one sample. `ground_truth`: linear radiance, either each light's own
    [L, 3, H, W] (one record per covered pixel and light) or the sum over the lights, RGB(A)
    [C, H, W] (one record per covered pixel, all its lights). With `halo` > 0, covered pixels
    within `halo` pixels of a neighbouring tile with another key are also borrowed by that key."""
    features, factor = shading_inputs(gbuffer, radii)
    covered = gbuffer.covered
    key_map = pixel_tile_map(gbuffer_tile_keys(gbuffer, tile_size, bins), gbuffer.height, gbuffer.width, tile_size)
    keys = key_map[covered].astype(np.int64)
    pixels = np.arange(len(keys))  # into the covered pixels, row-major
    borrowed = np.zeros(len(keys), dtype=bool)
    if halo > 0:
        lent_pixels, lent_keys = halo_records(key_map, covered, halo)
        pixels, keys = np.concatenate([pixels, lent_pixels]), np.concatenate([keys, lent_keys])
        borrowed = np.concatenate([borrowed, np.ones(len(lent_keys), dtype=bool)])
    order = np.argsort(keys, kind="stable")
    keys, pixels, borrowed = keys[order], pixels[order], borrowed[order]
    features = features.numpy()[:, covered].transpose(1, 0, 2)[pixels]  # [N, L, F]
    factor = factor.numpy()[:, covered].transpose(1, 0, 2)[pixels]  # [N, L, 3]
    if ground_truth.ndim == 4:  # per light: records pixel-major, so the keys stay sorted
        n_lights = gbuffer.n_lights
        if ground_truth.shape[0] != n_lights:
            raise DatasetError(f"{gbuffer.source}: {ground_truth.shape[0]} per-light ground truths "
                               f"for {n_lights} lights")
        target = ground_truth[:, :3, covered].transpose(2, 0, 1)[pixels]  # [N, L, 3]
        return PixelRecords(
            keys=np.repeat(keys, n_lights),
            features=np.ascontiguousarray(features.reshape(-1, 1, features.shape[-1])),
            factor=np.ascontiguousarray(factor.reshape(-1, 1, 3)),
            target=np.ascontiguousarray(target.reshape(-1, 3), dtype=np.float32),
            borrowed=np.repeat(borrowed, n_lights),
        )
    return PixelRecords(
        keys=keys,
        features=features,
        factor=factor,
        target=np.ascontiguousarray(ground_truth[:3, covered].T[pixels], dtype=np.float32),
        borrowed=borrowed,
    )


def halo_records(key_map: np.ndarray, covered: np.ndarray, halo: int) -> tuple[np.ndarray, np.ndarray]:
    """(covered pixel index, key) of every covered pixel within `halo` pixels (along x, y or a
    diagonal) of a neighbouring tile with another key: the pixels that tile's key borrows. A tile
    without covered pixels has key 0 (hashing.tile_keys) and borrows nothing."""
    h, w = covered.shape
    ys, xs = np.nonzero(covered)
    own = key_map[ys, xs]
    codes = []
    for dy in (-halo, 0, halo):
        for dx in (-halo, 0, halo):
            other = key_map[np.clip(ys + dy, 0, h - 1), np.clip(xs + dx, 0, w - 1)].astype(np.int64)
            lent = np.flatnonzero((other != own) & (other != 0))
            codes.append(lent.astype(np.int64) << 32 | other[lent])
    codes = np.unique(np.concatenate(codes))  # a pixel lends itself once to each other key
    return codes >> 32, codes & 0xFFFFFFFF


def merge(parts: list[PixelRecords]) -> PixelRecords:
    """Concatenate records sorted by key, padding missing lights with zero factor (no contribution)."""
    n_lights = max(p.features.shape[1] for p in parts)

    def stacked(arrays: list[np.ndarray]) -> np.ndarray:
        # Concatenated as they are where every part has all the lights (per-light records always
        # do): no padded copy of arrays that can hold gigabytes.
        if all(a.shape[1] == n_lights for a in arrays):
            return np.concatenate(arrays)
        whole = np.zeros((sum(len(a) for a in arrays), n_lights, arrays[0].shape[2]), arrays[0].dtype)
        start = 0
        for a in arrays:
            whole[start : start + len(a), : a.shape[1]] = a
            start += len(a)
        return whole

    keys = np.concatenate([p.keys for p in parts])
    order = np.argsort(keys, kind="stable")
    return PixelRecords(
        keys=keys[order],
        features=stacked([p.features for p in parts])[order],
        factor=stacked([p.factor for p in parts])[order],
        target=np.concatenate([p.target for p in parts])[order],
        borrowed=np.concatenate([p.borrowed for p in parts])[order],
    )


MIN_BUCKET_SHARE = 0.0025  # default share of the training records a key needs for a network of its own


def bucket_threshold(min_bucket_pixels: int | None, total_records: int) -> int:
    """Training records a key needs for a network of its own: `min_bucket_pixels`, or when that is
    None MIN_BUCKET_SHARE of all of them (the rarer keys use the bank's fallback)."""
    if min_bucket_pixels is not None:
        return min_bucket_pixels
    return max(1, math.ceil(MIN_BUCKET_SHARE * total_records))


class LastResult:
    """The last result of a costly, deterministic set-up step, by key, kept inside
    `keep_last_results()`: the models one `train --baselines` process trains one after the other
    share their labelled and teacher-labelled pixels (gigabytes: one result, read-only; outside the
    block, as in the service's and the cluster's long-lived processes, nothing is kept)."""

    keeping = 0
    instances: list["LastResult"] = []

    def __init__(self):
        self.key, self.value = None, None
        LastResult.instances.append(self)

    def get(self, key: str, make):
        if not LastResult.keeping:
            return make()
        if key != self.key:
            self.clear()  # the old one is released before the new one is made
            self.value, self.key = make(), key
        return self.value

    def clear(self) -> None:
        self.key, self.value = None, None


@contextmanager
def keep_last_results():
    LastResult.keeping += 1
    try:
        yield
    finally:
        LastResult.keeping -= 1
        if not LastResult.keeping:
            for result in LastResult.instances:
                result.clear()


LAST_LOAD = LastResult()


def fingerprint(value) -> str:
    """Hash of a JSON-able value (dataset settings, a sample record)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


class BucketStore:
    def __init__(self, root, tile_size: int, bins: int, dataset, radii: FilterRadii, per_light: bool = True,
                 halo: int = 0):
        """`per_light`: records from each light's own ground truth (else from their sum); `halo`:
        pixels a key borrows from its neighbouring tiles (sample_records)."""
        self.root = Path(root)
        self.tile_size, self.bins, self.dataset, self.radii = tile_size, bins, dataset, radii
        self.per_light, self.halo = per_light, halo
        self.identity = {"store_version": STORE_VERSION, "feature_spec_version": FEATURE_SPEC_VERSION,
                         "filter_radii": radii.to_json(), "per_light": per_light, "halo": halo,
                         "tile_size": tile_size, "bins": bins, "dataset": str(Path(dataset.root).resolve()),
                         "dataset_settings": fingerprint(dataset.manifest.get("settings", {}))}
        self.index = self._read_index()

    @classmethod
    def beside(cls, bank_path, dataset, tile_size: int, bins: int, radii: FilterRadii,
               per_light: bool = True, halo: int = 0) -> "BucketStore":
        """The store of a bank being trained: `<bank folder>/buckets/tile<T>_bins<B>[_summed]/`."""
        name = f"tile{tile_size}_bins{bins}" + ("" if per_light else "_summed")
        return cls(Path(bank_path).parent / "buckets" / name, tile_size, bins, dataset, radii, per_light, halo)

    def _read_index(self) -> dict:
        path = self.root / "index.json"
        try:
            index = json.loads(path.read_text())
        except (OSError, ValueError):
            index = None
        if not index or index.get("identity") != self.identity:
            shutil.rmtree(self.root, ignore_errors=True)  # stale or foreign: rebuild from scratch
            index = {"identity": self.identity, "samples": {}}
        return index


    def sample_path(self, index: int) -> Path:
        return self.root / f"{index:06d}.npz"

    def missing(self, indices) -> list[int]:
        """Samples not in the store, or whose record (camera, lights, files) changed since."""
        samples = self.index["samples"]
        return [i for i in indices if str(i) not in samples or not self.sample_path(i).exists()
                or samples[str(i)]["record"] != fingerprint(self.dataset.record(i))]

    def add(self, index: int, records: PixelRecords) -> None:
        """File one sample's pixels under their keys and record it in the index."""
        with atomic_open(self.sample_path(index)) as stream:
            np.savez(stream, keys=records.keys, features=records.features, factor=records.factor,
                     target=records.target, borrowed=records.borrowed)
        keys, counts = np.unique(records.keys[~records.borrowed], return_counts=True)
        self.index["samples"][str(index)] = {"record": fingerprint(self.dataset.record(index)), "pixels": int((~records.borrowed).sum()),
                                             "keys": dict(zip(map(str, keys.tolist()), counts.tolist()))}
        write_text_atomic(self.root / "index.json", json.dumps(self.index))

    def update(self, indices, on_sample=None) -> list[int]:
        """Process the samples of `indices` not yet in the store; returns the ones added."""
        added = []
        for i in self.missing(indices):
            gbuffer = self.dataset.load_gbuffer(i)
            truth = self.dataset.load_light_ground_truths(i) if self.per_light else self.dataset.load_ground_truth(i)
            self.add(i, sample_records(gbuffer, truth, self.tile_size, self.bins, self.radii, self.halo))
            added.append(i)
            if on_sample:
                on_sample(i)
        return added

    def load(self, indices) -> Buckets:
        """All pixels of the given samples, grouped by key (read-only: the same samples of the same
        store load once per process, so `train --baselines` reads and sorts them once)."""
        samples = self.index["samples"]
        key = json.dumps([self.identity, str(self.root.resolve()), [[i, samples.get(str(i), {}).get("record")]
                                                                    for i in indices]])
        return LAST_LOAD.get(key, lambda: self._load(indices))

    def _load(self, indices) -> Buckets:
        parts = []
        for i in indices:
            with np.load(self.sample_path(i)) as data:
                parts.append(PixelRecords(data["keys"], data["features"], data["factor"], data["target"],
                                          data["borrowed"]))
        if not parts or sum(len(p) for p in parts) == 0:
            raise DatasetError(f"{self.dataset.root}: the training samples cover no face pixels; check that the "
                               "camera sees the object, or generate more samples")
        return Buckets.from_records(merge(parts).frozen())
