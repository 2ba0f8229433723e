"""The weight bank: every network of a trained model in one safetensors file (docs/formats/bank.md).

`Bank` is the in-memory form; `save_bank` / `load_bank` are the only ways to write and read the
file. `build_lut` resolves unseen keys to a fallback slot once, at save time, so every renderer
only ever indexes the lookup table ("array index = hash").
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from backend.atomic import write_bytes_atomic
from backend.errors import BankError
from backend.features import FEATURE_NAMES, N_FEATURES
from backend.gbuffer import FEATURE_SPEC_VERSION
from backend.hashing import MAX_BINS
from backend.model_kinds import BANK_KINDS, HASH_BANK, NEURAL_TEXTURE, SINGLE_NETWORK
from backend.prefilter import FilterRadii

BANK_FORMAT = "neural-face-bank"
BANK_VERSION = 4  # the newest version this code writes (border-blended banks); it reads READABLE_VERSIONS
# 3 = 2 + kind neural_texture and its `texture` tensor; 4 = 3 + `border_blend` (gbuffer.md section 4b).
# A bank is written at the lowest version that holds it, so older readers still read what they can render.
READABLE_VERSIONS = (2, 3, 4)
METADATA_KEY = "neural_face"
SLOT_BYTES_LIMIT = 32768  # one network in the kernel's shared memory
FALLBACK_MODES = ("nearest_key", "shared_network")
OUTPUT_ACTIVATIONS = ("exp", "softplus")
SHARED_SLOT_KEY = -1  # slot_keys entry of the shared fallback network


@dataclass
class Bank:
    slots: np.ndarray  # [S, P] float32 or float16, packed layers (pack / unpack)
    lut: np.ndarray  # [4**bins] int32, key -> slot, -1 for key 0
    lut_seen: np.ndarray  # [4**bins] uint8, 1 where the key had its own bucket
    feature_mean: np.ndarray  # [F] float32
    feature_std: np.ndarray  # [F] float32
    meta: dict = field(default_factory=dict)  # the JSON metadata of bank.md
    texture: np.ndarray | None = None  # [C, R, R] float32, neural_texture banks only (bank.md)

    @property
    def layers(self) -> list[int]:
        return list(self.meta["layers"])

    @property
    def tile_size(self) -> int:
        return int(self.meta["tile_size"])

    @property
    def bins(self) -> int:
        return int(self.meta["bins"])

    @property
    def border_blend(self) -> int:
        """Pixels from a tile's edge over which its network is mixed with its neighbour's (gbuffer.md
        section 4b); 0 (no blend) for banks before version 4."""
        return int(self.meta.get("border_blend", 0))

    @property
    def output_activation(self) -> str:
        return self.meta["output_activation"]

    @property
    def weights_dtype(self) -> str:
        return self.meta["weights_dtype"]

    @property
    def kind(self) -> str:
        return self.meta.get("kind", HASH_BANK)

    @property
    def filter_radii(self) -> FilterRadii:
        """World-space widths of the pre-filtered feature planes (gbuffer.md section 2b)."""
        return FilterRadii.from_json(self.meta["filter_radii"])

    @property
    def n_slots(self) -> int:
        return self.slots.shape[0]

    @property
    def slot_keys(self) -> list[int]:
        """Bucket key of each slot (SHARED_SLOT_KEY for the shared fallback network)."""
        return list(self.meta["slot_keys"])

    @property
    def slot_pixels(self) -> list[int]:
        """Training pixels of each slot's bucket."""
        return list(self.meta["slot_pixels"])

    @property
    def fallback_mode(self) -> str:
        return self.meta["fallback"]["mode"]

    @property
    def fallback_slot(self) -> int | None:
        """The shared fallback network's slot (shared_network mode), else None."""
        return self.meta["fallback"]["slot"]

    @property
    def hidden_activation(self) -> str:
        return self.meta.get("hidden_activation", "relu")

    @property
    def provenance(self) -> dict:
        """How the bank was made (training settings, history); {} for a bank that does not say."""
        return self.meta.get("provenance") or {}

    def slot_of_keys(self, keys: np.ndarray) -> np.ndarray:
        """Slot per key (-1 for key 0), same shape as keys."""
        return self.lut[np.asarray(keys, dtype=np.int64)]


def companion_path(bank_path, suffix: str) -> Path:
    """`out/bank.nfbank` -> `out/bank<suffix>` (checkpoint, curve plot, baselines, teacher)."""
    path = Path(bank_path)
    return path.with_name(path.name.removesuffix(".nfbank") + suffix)


# --- packing ------------------------------------------------------------------------------------


def slot_size(layers: list[int]) -> int:
    """P = sum(in_i * out_i + out_i)."""
    return sum(i * o + o for i, o in zip(layers[:-1], layers[1:]))


def pack(weights_and_biases) -> np.ndarray:
    """[(W_i [..., in, out], b_i [..., out]), ...] -> packed rows [..., P] (numpy or torch)."""
    parts = []
    for w, b in weights_and_biases:
        parts += [w.reshape(*w.shape[:-2], -1), b]
    if isinstance(parts[0], np.ndarray):
        return np.concatenate(parts, axis=-1)
    import torch

    return torch.cat(parts, dim=-1)


def unpack(slots, layers: list[int]):
    """Packed rows [..., P] -> [(W_i [..., in, out], b_i [..., out]), ...] (views where possible)."""
    if slots.shape[-1] != slot_size(layers):
        raise ValueError(f"slot rows have {slots.shape[-1]} values, layers {layers} need {slot_size(layers)}")
    out, offset = [], 0
    lead = tuple(slots.shape[:-1])
    for i, o in zip(layers[:-1], layers[1:]):
        w = slots[..., offset : offset + i * o].reshape(*lead, i, o)
        offset += i * o
        b = slots[..., offset : offset + o]
        offset += o
        out.append((w, b))
    return out


# --- lookup table -------------------------------------------------------------------------------

_POPCOUNT8 = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def _popcount(x: np.ndarray) -> np.ndarray:
    """Bit count of non-negative int64 values below 2**24 (keys have at most 2 * 12 bits)."""
    return _POPCOUNT8[x & 255] + _POPCOUNT8[(x >> 8) & 255] + _POPCOUNT8[(x >> 16) & 255]


def nearest_seen_keys(seen_keys: np.ndarray, seen_pixels: np.ndarray, bins: int) -> np.ndarray:
    """Index into seen_keys of the nearest seen key for every key 0..4**bins-1.

    Nearest: smallest Hamming distance popcount(a ^ b); ties go to more training pixels, then to
    the smaller key (bank.md, "Fallback for unseen keys").
    """
    order = np.lexsort((seen_keys, -np.asarray(seen_pixels, dtype=np.int64)))  # preferred first
    ranked = np.asarray(seen_keys, dtype=np.int64)[order]
    n_keys = 4**bins
    best = np.empty(n_keys, dtype=np.int64)
    chunk = max(1, (1 << 22) // max(len(ranked), 1))
    for start in range(0, n_keys, chunk):
        keys = np.arange(start, min(n_keys, start + chunk), dtype=np.int64)
        distance = _popcount(keys[:, None] ^ ranked[None, :])
        best[start : start + len(keys)] = order[np.argmin(distance, axis=1)]  # argmin keeps the first tie
    return best


def build_lut(slot_keys, slot_pixels, bins: int, fallback: str, shared_slot: int | None = None):
    """(lut int32 [4**bins], lut_seen uint8 [4**bins]) for slots with the given keys.

    slot_keys[s] is the bucket key of slot s (SHARED_SLOT_KEY for the shared fallback network).
    Unseen keys go to the nearest seen key's slot or to `shared_slot`; key 0 maps to -1.
    """
    slot_keys = np.asarray(slot_keys, dtype=np.int64)
    slot_pixels = np.asarray(slot_pixels, dtype=np.int64)
    n_keys = 4**bins
    bucket_slots = np.nonzero(slot_keys != SHARED_SLOT_KEY)[0]
    if fallback == "shared_network":
        if shared_slot is None or slot_keys[shared_slot] != SHARED_SLOT_KEY:
            raise ValueError("shared_network fallback needs the slot of the shared network")
        lut = np.full(n_keys, shared_slot, dtype=np.int32)
    elif fallback == "nearest_key":
        if len(bucket_slots) == 0:
            raise ValueError("nearest_key fallback needs at least one bucket slot")
        nearest = nearest_seen_keys(slot_keys[bucket_slots], slot_pixels[bucket_slots], bins)
        lut = bucket_slots[nearest].astype(np.int32)
    else:
        raise ValueError(f"unknown fallback {fallback!r}; choose one of {FALLBACK_MODES}")
    lut_seen = np.zeros(n_keys, dtype=np.uint8)
    lut[slot_keys[bucket_slots]] = bucket_slots
    lut_seen[slot_keys[bucket_slots]] = 1
    lut[0] = -1
    lut_seen[0] = 0
    return lut, lut_seen


# --- building and checking ----------------------------------------------------------------------


def make_meta(layers, slot_keys, slot_pixels, *, tile_size=16, bins=8, output_activation="exp",
              weights_dtype="float32", fallback="nearest_key", shared_slot=None, kind=HASH_BANK,
              filter_radii: FilterRadii | None = None, provenance=None, texture: dict | None = None,
              border_blend: int = 0) -> dict:
    """The metadata dict of bank.md with this code's format, version and feature names.

    filter_radii default to those of an object of bounding radius 1 (random test banks).
    texture ({"channels": C, "resolution": R}) only for kind neural_texture; border_blend in pixels.
    """
    meta = {
        "format": BANK_FORMAT,
        "version": BANK_VERSION if border_blend else 3 if kind == NEURAL_TEXTURE else 2,
        "feature_spec_version": FEATURE_SPEC_VERSION,
        "feature_names": list(FEATURE_NAMES),
        "filter_radii": (filter_radii or FilterRadii.for_object(1.0)).to_json(),
        "tile_size": int(tile_size),
        "bins": int(bins),
        "layers": [int(x) for x in layers],
        "hidden_activation": "relu",
        "output_activation": output_activation,
        "weights_dtype": weights_dtype,
        "slot_keys": [int(k) for k in slot_keys],
        "slot_pixels": [int(n) for n in slot_pixels],
        "fallback": {"mode": fallback, "slot": None if shared_slot is None else int(shared_slot)},
        "kind": kind,
        "provenance": dict(provenance or {}),
    }
    if texture is not None:
        meta["texture"] = {"channels": int(texture["channels"]), "resolution": int(texture["resolution"])}
    if border_blend:
        meta["border_blend"] = int(border_blend)
    return meta


def make_bank(slots, feature_mean, feature_std, meta: dict, texture: np.ndarray | None = None) -> Bank:
    """A Bank whose lookup table is built from meta's slot keys and fallback."""
    lut, lut_seen = build_lut(meta["slot_keys"], meta["slot_pixels"], meta["bins"],
                              meta["fallback"]["mode"], meta["fallback"]["slot"])
    dtype = np.float16 if meta["weights_dtype"] == "float16" else np.float32
    return Bank(np.ascontiguousarray(slots, dtype=dtype), lut, lut_seen,
                np.asarray(feature_mean, dtype=np.float32), np.asarray(feature_std, dtype=np.float32), meta,
                None if texture is None else np.ascontiguousarray(texture, dtype=np.float32))


def random_bank(seed: int, keys, layers, bins: int = 8, tile_size: int = 16, output_activation: str = "exp",
                fallback: str = "nearest_key", weights_dtype: str = "float32", border_blend: int = 0) -> Bank:
    """A bank of random but sane networks (He-initialised, outputs of order 0.1..1) for tests."""
    rng = np.random.default_rng(seed)
    keys = [int(k) for k in keys]
    slot_keys = keys + ([SHARED_SLOT_KEY] if fallback == "shared_network" else [])
    shared_slot = len(keys) if fallback == "shared_network" else None
    rows = []
    for _ in slot_keys:
        wb = []
        for i, o in zip(layers[:-1], layers[1:]):
            wb.append((rng.normal(0, np.sqrt(2.0 / i), (i, o)).astype(np.float32),
                       rng.normal(0, 0.1, o).astype(np.float32)))
        wb[-1] = (wb[-1][0] * 0.3, wb[-1][1] + (-1.0 if output_activation == "exp" else 0.0))
        rows.append(pack(wb))
    meta = make_meta(layers, slot_keys, rng.integers(1, 10000, len(slot_keys)), tile_size=tile_size, bins=bins,
                     output_activation=output_activation, weights_dtype=weights_dtype, fallback=fallback,
                     shared_slot=shared_slot, provenance={"random_seed": seed}, border_blend=border_blend)
    mean = rng.normal(0, 0.2, N_FEATURES).astype(np.float32)
    std = rng.uniform(0.3, 1.0, N_FEATURES).astype(np.float32)
    return make_bank(np.stack(rows), mean, std, meta)


def check_bank(bank: Bank, source: str = "<memory>") -> None:
    """Raise BankError (naming source) unless bank is a bank this code can render (bank.md, Compatibility)."""
    meta = bank.meta

    def fail(problem: str):
        raise BankError(f"{source}: {problem}")

    if meta.get("format") != BANK_FORMAT:
        fail(f"not a neural face weight bank (format {meta.get('format')!r})")
    if meta.get("version") not in READABLE_VERSIONS:
        fail(f"bank version {meta.get('version')!r}, this code reads versions "
             f"{', '.join(map(str, READABLE_VERSIONS))}; retrain or update")
    if meta.get("feature_spec_version") != FEATURE_SPEC_VERSION:
        fail(f"feature spec version {meta.get('feature_spec_version')!r}, this code computes version "
             f"{FEATURE_SPEC_VERSION}; retrain the bank")
    try:
        layers, bins, tile_size = bank.layers, bank.bins, bank.tile_size
        activation, dtype, kind = bank.output_activation, bank.weights_dtype, bank.kind
        slot_keys, mode = bank.slot_keys, bank.fallback_mode
        radii, blend = bank.filter_radii, bank.border_blend
    except (KeyError, TypeError, ValueError) as exc:
        fail(f"metadata lacks or garbles {exc}")
    if not all(isinstance(width, int) for width in layers):
        fail(f"layers {layers!r} must be integers")
    if kind == NEURAL_TEXTURE:
        try:
            channels, resolution = int(meta["texture"]["channels"]), int(meta["texture"]["resolution"])
        except (KeyError, TypeError, ValueError) as exc:
            fail(f"a neural_texture bank needs texture channels and resolution in its metadata ({exc})")
        if meta.get("version", 0) < 3 or bank.texture is None or \
                tuple(bank.texture.shape) != (channels, resolution, resolution):
            fail(f"a neural_texture bank (version 3) needs a texture tensor of shape {(channels, resolution, resolution)}")
        if not np.all(np.isfinite(bank.texture)):
            fail("texture values are not finite")
    else:
        channels = 0
        if bank.texture is not None:
            fail(f"a {kind} bank has no texture tensor")
    if len(layers) < 2 or layers[0] != N_FEATURES + channels or layers[-1] != 3 or min(layers) < 1:
        fail(f"layers {layers} must start with {N_FEATURES + channels} inputs and end with 3 outputs")
    if not 1 <= bins <= MAX_BINS or tile_size < 1:
        fail(f"bins {bins} (1..{MAX_BINS}) or tile size {tile_size} out of range")
    if activation not in OUTPUT_ACTIVATIONS or dtype not in ("float32", "float16") or kind not in BANK_KINDS:
        fail(f"unknown output activation {activation!r}, weights dtype {dtype!r} or kind {kind!r}")
    if mode not in FALLBACK_MODES:
        fail(f"unknown fallback mode {mode!r}")
    if not 0 <= blend <= tile_size // 2 or (blend and (kind != HASH_BANK or meta.get("version", 0) < 4)):
        fail(f"border blend {blend} px: a hash bank (version 4) blends 0..{tile_size // 2} px")
    if not all(np.isfinite(r) and r > 0 for r in (*radii.visibility, radii.albedo)):
        fail(f"filter radii {radii} must be positive")
    if kind in (SINGLE_NETWORK, NEURAL_TEXTURE) and (len(slot_keys) != 1 or mode != "shared_network"):
        fail(f"a {kind} bank has exactly one slot, used as the shared_network fallback for every key")
    p = slot_size(layers)
    expected = {
        "slots": (len(slot_keys), p), "lut": (4**bins,), "lut_seen": (4**bins,),
        "feature_mean": (N_FEATURES,), "feature_std": (N_FEATURES,),
    }
    for name, shape in expected.items():
        actual = tuple(getattr(bank, name).shape)
        if actual != shape:
            fail(f"tensor {name} has shape {actual}, metadata says {shape}")
    if str(bank.slots.dtype) != dtype:
        fail(f"slots are {bank.slots.dtype}, metadata says {dtype}")
    if kind == HASH_BANK and p * bank.slots.dtype.itemsize > SLOT_BYTES_LIMIT:  # baselines are torch-only
        fail(f"one slot is {p * bank.slots.dtype.itemsize} bytes, over the {SLOT_BYTES_LIMIT}-byte shared-memory limit")
    if bank.lut[0] != -1 or bank.lut[1:].min(initial=0) < 0 or bank.lut.max(initial=0) >= len(slot_keys):
        fail("lookup table has entries outside the slots")
    if not np.all(np.isfinite(bank.slots)) or not np.all(bank.feature_std > 0):
        fail("weights are not finite or a feature std is not positive")


# --- file ---------------------------------------------------------------------------------------


def save_bank(bank: Bank, path) -> Path:
    """Write bank to path atomically (temporary file in the same folder, then rename)."""
    from safetensors.numpy import save

    path = Path(path)
    check_bank(bank, str(path))
    tensors = {
        "slots": np.ascontiguousarray(bank.slots),
        "lut": np.ascontiguousarray(bank.lut, dtype=np.int32),
        "lut_seen": np.ascontiguousarray(bank.lut_seen, dtype=np.uint8),
        "feature_mean": np.ascontiguousarray(bank.feature_mean, dtype=np.float32),
        "feature_std": np.ascontiguousarray(bank.feature_std, dtype=np.float32),
    }
    if bank.texture is not None:
        tensors["texture"] = np.ascontiguousarray(bank.texture, dtype=np.float32)
    write_bytes_atomic(path, save(tensors, metadata={METADATA_KEY: json.dumps(bank.meta)}))
    return path


def load_bank(path) -> Bank:
    """Read and check a bank file; every problem is a BankError naming the file."""
    from safetensors import SafetensorError
    from safetensors.numpy import load

    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BankError(f"{path}: cannot read the weight bank ({exc.strerror or exc})") from exc
    if len(data) < 8 or struct.unpack("<Q", data[:8])[0] > len(data) - 8:
        raise BankError(f"{path}: not a safetensors file or truncated ({len(data)} bytes)")
    try:
        header = json.loads(data[8 : 8 + struct.unpack("<Q", data[:8])[0]])
        meta = json.loads(header.get("__metadata__", {})[METADATA_KEY])
        tensors = load(data)
    except (ValueError, KeyError, TypeError, AttributeError, SafetensorError) as exc:
        raise BankError(f"{path}: not a readable neural face weight bank ({exc})") from exc
    missing = {"slots", "lut", "lut_seen", "feature_mean", "feature_std"} - set(tensors)
    if missing:
        raise BankError(f"{path}: tensors missing: {', '.join(sorted(missing))}")
    if not isinstance(meta, dict):
        raise BankError(f"{path}: metadata is not a JSON object")
    bank = Bank(tensors["slots"], tensors["lut"], tensors["lut_seen"], tensors["feature_mean"],
                tensors["feature_std"], meta, tensors.get("texture"))
    check_bank(bank, str(path))
    return bank


def bank_summary(bank: Bank) -> str:
    """One line for terminals: kind, slots, layers, size."""
    size_kb = bank.slots.nbytes / 1024
    return (f"{bank.kind}: {bank.n_slots} slot(s) of layers {bank.layers} {bank.weights_dtype}, "
            f"{size_kb:.1f} KB of weights, {bank.tile_size}px tiles, {bank.bins} bins, "
            f"fallback {bank.fallback_mode}" + (f", {bank.border_blend}px border blend" if bank.border_blend else ""))
