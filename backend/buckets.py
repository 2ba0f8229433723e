"""The bucket store: every covered training pixel filed under its tile's key ("one folder per hash").

An indexed equivalent of the talk's folders: one file per sample holding that sample's pixels
sorted by key, plus `index.json` with each sample's per-key pixel counts. Adding samples to a
dataset and training again only processes the new samples (a sample whose record changed is
processed again). The store lives beside the bank being trained, in
`buckets/tile<T>_bins<B>/` (the dataset folder stays read-only), and is rebuilt when the dataset,
its settings, the feature spec or the store format change.

A pixel record is what training needs for one pixel: features per light `[L, F]`, light factor
per light `[L, 3]` (gbuffer.md section 5) and the ground-truth radiance `[3]` under those lights.
With each light's own ground truth (dataset version 4), a pixel seen under L lights gives L
records of one light each: L targets where the sum gave one, and no light's share to guess.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from backend.atomic import atomic_open, write_text_atomic
from backend.errors import DatasetError
from backend.features import shading_inputs
from backend.gbuffer import FEATURE_SPEC_VERSION, GBuffer
from backend.hashing import gbuffer_tile_keys, pixel_tile_map
from backend.prefilter import FilterRadii

STORE_VERSION = 3  # 3: one record per pixel and light, from each light's own ground truth


@dataclass
class PixelRecords:
    """Covered pixels sorted by tile key; L may differ between samples until `merge` pads it."""

    keys: np.ndarray  # [N] int64
    features: np.ndarray  # [N, L, F] float32
    factor: np.ndarray  # [N, L, 3] float32
    target: np.ndarray  # [N, 3] float32

    def __len__(self) -> int:
        return len(self.keys)


@dataclass
class Buckets:
    """All training pixels grouped by key: bucket b owns rows start[b] : start[b] + count[b]."""

    records: PixelRecords
    keys: np.ndarray  # [n_buckets] int64, ascending
    start: np.ndarray  # [n_buckets] int64
    count: np.ndarray  # [n_buckets] int64

    @classmethod
    def from_records(cls, records: PixelRecords) -> "Buckets":
        keys, start, count = np.unique(records.keys, return_index=True, return_counts=True)
        return cls(records, keys, start.astype(np.int64), count.astype(np.int64))


def sample_records(gbuffer: GBuffer, ground_truth: np.ndarray, tile_size: int, bins: int,
                   radii: FilterRadii) -> PixelRecords:
    """Pixel records of one sample. `ground_truth`: linear radiance, either each light's own
    [L, 3, H, W] (one record per covered pixel and light) or the sum over the lights, RGB(A)
    [C, H, W] (one record per covered pixel, all its lights)."""
    features, factor = shading_inputs(gbuffer, radii)
    covered = gbuffer.covered
    keys = pixel_tile_map(gbuffer_tile_keys(gbuffer, tile_size, bins), gbuffer.height, gbuffer.width, tile_size)[covered]
    order = np.argsort(keys, kind="stable")
    features = features.numpy()[:, covered].transpose(1, 0, 2)[order]  # [N, L, F]
    factor = factor.numpy()[:, covered].transpose(1, 0, 2)[order]  # [N, L, 3]
    if ground_truth.ndim == 4:  # per light: records pixel-major, so the keys stay sorted
        n_lights = gbuffer.n_lights
        if ground_truth.shape[0] != n_lights:
            raise DatasetError(f"{gbuffer.source}: {ground_truth.shape[0]} per-light ground truths "
                               f"for {n_lights} lights")
        target = ground_truth[:, :3, covered].transpose(2, 0, 1)[order]  # [N, L, 3]
        return PixelRecords(
            keys=np.repeat(keys[order].astype(np.int64), n_lights),
            features=np.ascontiguousarray(features.reshape(-1, 1, features.shape[-1])),
            factor=np.ascontiguousarray(factor.reshape(-1, 1, 3)),
            target=np.ascontiguousarray(target.reshape(-1, 3), dtype=np.float32),
        )
    return PixelRecords(
        keys=keys[order].astype(np.int64),
        features=features,
        factor=factor,
        target=np.ascontiguousarray(ground_truth[:3, covered].T[order], dtype=np.float32),
    )


def merge(parts: list[PixelRecords]) -> PixelRecords:
    """Concatenate records sorted by key, padding missing lights with zero factor (no contribution)."""
    n_lights = max(p.features.shape[1] for p in parts)

    def pad(a: np.ndarray) -> np.ndarray:
        return np.pad(a, ((0, 0), (0, n_lights - a.shape[1]), (0, 0)))

    keys = np.concatenate([p.keys for p in parts])
    order = np.argsort(keys, kind="stable")
    return PixelRecords(
        keys=keys[order],
        features=np.concatenate([pad(p.features) for p in parts])[order],
        factor=np.concatenate([pad(p.factor) for p in parts])[order],
        target=np.concatenate([p.target for p in parts])[order],
    )


def fingerprint(value) -> str:
    """Hash of a JSON-able value (dataset settings, a sample record)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


class BucketStore:
    def __init__(self, root, tile_size: int, bins: int, dataset, radii: FilterRadii, per_light: bool = True):
        """`per_light`: records from each light's own ground truth (else from their sum)."""
        self.root = Path(root)
        self.tile_size, self.bins, self.dataset, self.radii = tile_size, bins, dataset, radii
        self.per_light = per_light
        self.identity = {"store_version": STORE_VERSION, "feature_spec_version": FEATURE_SPEC_VERSION,
                         "filter_radii": radii.to_json(), "per_light": per_light,
                         "tile_size": tile_size, "bins": bins, "dataset": str(Path(dataset.root).resolve()),
                         "dataset_settings": fingerprint(dataset.manifest.get("settings", {}))}
        self.index = self._read_index()

    @classmethod
    def beside(cls, bank_path, dataset, tile_size: int, bins: int, radii: FilterRadii,
               per_light: bool = True) -> "BucketStore":
        """The store of a bank being trained: `<bank folder>/buckets/tile<T>_bins<B>[_summed]/`."""
        name = f"tile{tile_size}_bins{bins}" + ("" if per_light else "_summed")
        return cls(Path(bank_path).parent / "buckets" / name, tile_size, bins, dataset, radii, per_light)

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
                     target=records.target)
        keys, counts = np.unique(records.keys, return_counts=True)
        self.index["samples"][str(index)] = {"record": fingerprint(self.dataset.record(index)), "pixels": len(records),
                                             "keys": dict(zip(map(str, keys.tolist()), counts.tolist()))}
        write_text_atomic(self.root / "index.json", json.dumps(self.index))

    def update(self, indices, on_sample=None) -> list[int]:
        """Process the samples of `indices` not yet in the store; returns the ones added."""
        added = []
        for i in self.missing(indices):
            gbuffer = self.dataset.load_gbuffer(i)
            truth = self.dataset.load_light_ground_truths(i) if self.per_light else self.dataset.load_ground_truth(i)
            self.add(i, sample_records(gbuffer, truth, self.tile_size, self.bins, self.radii))
            added.append(i)
            if on_sample:
                on_sample(i)
        return added

    def load(self, indices) -> Buckets:
        """All pixels of the given samples, grouped by key."""
        parts = []
        for i in indices:
            with np.load(self.sample_path(i)) as data:
                parts.append(PixelRecords(data["keys"], data["features"], data["factor"], data["target"]))
        if not parts or sum(len(p) for p in parts) == 0:
            raise DatasetError(f"{self.dataset.root}: the training samples cover no face pixels; check that the "
                               "camera sees the object, or generate more samples")
        return Buckets.from_records(merge(parts))
