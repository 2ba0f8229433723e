"""Teacher labels: the unlabelled views' pixels, shaded by a trained teacher (KiloNeRF's recipe).

A bucket's network only sees its patch of face under the lights of the labelled views that show
it. Unlabelled views (a G-buffer, no path-traced ground truth: `generate --unlabelled N`) show
every patch under many more cameras and lights; a teacher trained on every labelled pixel shades
them, and its answers become extra training pixels, filed under their tiles' keys like any
other. Every network (the hash bank's and the baselines') then trains on the same labelled and
teacher-labelled pixels, each bucket still on its own pixels only.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from backend.bank import Bank, companion_path
from backend.buckets import LastResult, PixelRecords, fingerprint, merge, sample_records
from backend.model_kinds import HASH_BANK, MODEL_KINDS, companion_suffix
from backend.prefilter import FilterRadii
from backend.neural_texture import create

TEACHER_SUFFIX = ".teacher.nfbank"


LAST_LABELS = LastResult()


def teacher_records(teacher: Bank, dataset, indices, tile_size: int, bins: int, radii: FilterRadii,
                    device="cpu", on_view=None, per_light: bool = True, halo: int = 0) -> PixelRecords | None:
    """Pixel records of the unlabelled views `indices` with the teacher's radiance as the target:
    each light's own (the view rendered under that light alone), or with `per_light` False the sum.
    Read-only: the same teacher's labels of the same views are made once per process."""
    weights = hashlib.sha256(np.ascontiguousarray(teacher.slots).tobytes())
    weights.update(teacher.feature_mean.tobytes() + teacher.feature_std.tobytes())
    if teacher.texture is not None:
        weights.update(np.ascontiguousarray(teacher.texture).tobytes())
    key = json.dumps([weights.hexdigest(), str(Path(dataset.root).resolve()),
                      [[i, fingerprint(dataset.record(i))] for i in indices], tile_size, bins, radii.to_json(),
                      str(device), per_light, halo])
    return LAST_LABELS.get(key, lambda: _labelled(teacher, dataset, indices, tile_size, bins, radii, device,
                                                  on_view, per_light, halo))


def _labelled(teacher: Bank, dataset, indices, tile_size, bins, radii, device, on_view, per_light, halo):
    renderer = create(teacher, device=device)

    def radiance(gbuffer) -> np.ndarray:  # [3, H, W]
        return np.ascontiguousarray(renderer.render(gbuffer)[..., :3].transpose(2, 0, 1))

    parts = []
    for i in indices:
        gbuffer = dataset.load_gbuffer(i)
        gbuffer.background = None
        if per_light:
            truth = np.stack([radiance(gbuffer.only_light(k)) for k in range(gbuffer.n_lights)])
        else:
            truth = radiance(gbuffer)
        parts.append(sample_records(gbuffer, truth, tile_size, bins, radii, halo))
        if on_view:
            on_view(i)
    parts = [p for p in parts if len(p)]
    return merge(parts).frozen() if parts else None


COMPANION_SUFFIXES = tuple(companion_suffix(kind) for kind in MODEL_KINDS if kind != HASH_BANK)


def teacher_path(bank_path) -> Path:
    """Where `train` keeps the teacher of the bank at bank_path.

    A baseline written beside a bank (`NAME.single_cost.nfbank`, ...: `train --baselines`) shares
    the bank's teacher `NAME.teacher.nfbank`, so one teacher is trained for all of them.
    """
    path = Path(bank_path)
    for suffix in COMPANION_SUFFIXES:
        if path.name.endswith(suffix) and len(path.name) > len(suffix):
            path = path.with_name(path.name.removesuffix(suffix) + ".nfbank")
            break
    return companion_path(path, TEACHER_SUFFIX)
