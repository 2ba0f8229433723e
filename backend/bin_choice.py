"""How many UV bins per axis a tile key gets, when `train --bins auto` (the default): as many as
the data fills.

More bins make more, smaller specialists, each for a narrower patch of face. But a key trains a
network only if its tiles hold enough pixels (`min_bucket_pixels`), and a tile whose key has none
falls back to a neighbour's. How many keys the training views fill depends on the mesh's UV
layout, the resolution (a tile spans more UV at fewer pixels) and the number of views, so no
fixed count suits every dataset (docs/training.md, "The tile key's bins, chosen from the data"):
on the example face at 256 px 4 bins beat 3, on a head with fragmented UVs at 160 px 3 beat 4.

The rule: the most bins of CANDIDATES whose networks would cover all but MAX_UNSEEN_SHARE of the
validation views' non-empty tiles. It needs only the G-buffers (the keys and the pixels under them,
counted as training counts them), not a trained model, and it is cached beside the bucket stores.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from backend.atomic import write_text_atomic
from backend.buckets import MIN_BUCKET_SHARE, bucket_threshold, fingerprint
from backend.hashing import gbuffer_tile_keys, pixel_tile_map

# At most 4: on the example face 5 and 6 bins fill as well (1.6% and 5.5% unseen) but gain no more
# than the seeds' spread over 4 (+0.10 dB at 5, three seeds) and cost seams; the talk's 8 lost.
CANDIDATES = (4, 3, 2)
MAX_UNSEEN_SHARE = 0.05  # the fragmented head at 160 px: 16.8% unseen at 4 bins, 3.0% at 3 (its best)


@dataclass
class BinChoice:
    bins: int
    unseen_share: dict[int, float]  # per candidate: validation tiles whose key would have no network
    networks: dict[int, int]  # per candidate: keys with enough pixels for a network of their own


def choose_bins(dataset, train_ids, val_ids, tile_size: int, per_light: bool, min_bucket_pixels: int | None,
                cache: Path | None = None) -> BinChoice:
    """The bins of `dataset` for networks trained on the views `train_ids` (the labelled training
    views and those the teacher labels) and judged on `val_ids`. A key needs
    `buckets.bucket_threshold(min_bucket_pixels, ...)` training records for a network of its own, as
    in training; a record is a covered pixel under one light (`per_light`) or under all of them."""
    identity = {"dataset": str(Path(dataset.root).resolve()), "tile_size": tile_size, "per_light": per_light,
                "train": fingerprint([dataset.record(i) for i in train_ids]),
                "val": fingerprint([dataset.record(i) for i in val_ids]),
                "min_bucket_pixels": min_bucket_pixels, "min_share": MIN_BUCKET_SHARE,
                "candidates": list(CANDIDATES), "max_unseen_share": MAX_UNSEEN_SHARE}
    if cache is not None:
        try:
            stored = json.loads(cache.read_text())
            if stored["identity"] == identity:
                choice = stored["choice"]
                return BinChoice(choice["bins"], {int(k): v for k, v in choice["unseen_share"].items()},
                                 {int(k): v for k, v in choice["networks"].items()})
        except (OSError, ValueError, KeyError):
            pass
    counts = {bins: Counter() for bins in CANDIDATES}
    total = 0
    for i in train_ids:
        gbuffer = dataset.load_gbuffer(i)
        covered = gbuffer.covered
        weight = gbuffer.n_lights if per_light else 1
        total += int(covered.sum()) * weight
        for bins in CANDIDATES:
            keys = pixel_tile_map(gbuffer_tile_keys(gbuffer, tile_size, bins), gbuffer.height, gbuffer.width,
                                  tile_size)[covered]
            for key, n in zip(*np.unique(keys, return_counts=True)):
                counts[bins][int(key)] += int(n) * weight
    threshold = bucket_threshold(min_bucket_pixels, total)
    seen = {bins: {key for key, n in counts[bins].items() if n >= threshold} for bins in CANDIDATES}
    unseen = {bins: [0, 0] for bins in CANDIDATES}
    for i in val_ids:
        gbuffer = dataset.load_gbuffer(i)
        for bins in CANDIDATES:
            keys = gbuffer_tile_keys(gbuffer, tile_size, bins)
            keys = keys[keys > 0]
            unseen[bins][0] += sum(int(key) not in seen[bins] for key in keys)
            unseen[bins][1] += len(keys)
    share = {bins: a / b if b else 1.0 for bins, (a, b) in unseen.items()}
    fitting = [bins for bins in CANDIDATES if share[bins] <= MAX_UNSEEN_SHARE]
    choice = BinChoice(max(fitting) if fitting else min(CANDIDATES, key=lambda b: (share[b], -b)), share,
                       {bins: len(seen[bins]) for bins in CANDIDATES})
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(cache, json.dumps({"identity": identity, "choice": asdict(choice)}))
    return choice

