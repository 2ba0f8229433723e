"""Weight bank file: round trip, packing, lookup table fallbacks and every refusal of bank.md."""

import json

import numpy as np
import pytest
from safetensors.numpy import save

from backend.bank import (SHARED_SLOT_KEY, build_lut, load_bank, pack, random_bank, save_bank, slot_size,
                          unpack)
from backend.errors import BankError

KEYS = [0b11 | 0b11 << 8, 0b1100 | 0b1 << 8, 0b10000000 | 0b10000000 << 8]


def write_raw(path, bank, meta_changes=(), tensor_changes=()):
    meta = {**bank.meta, **dict(meta_changes)}
    tensors = {"slots": bank.slots, "lut": bank.lut, "lut_seen": bank.lut_seen,
               "feature_mean": bank.feature_mean, "feature_std": bank.feature_std, **dict(tensor_changes)}
    path.write_bytes(save(tensors, metadata={"neural_face": json.dumps(meta)}))
    return path


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_round_trip(tmp_path, dtype):
    bank = random_bank(1, KEYS, [23, 16, 8, 3], weights_dtype=dtype, output_activation="softplus")
    loaded = load_bank(save_bank(bank, tmp_path / "a.nfbank"))
    assert loaded.slots.dtype == np.dtype(dtype) and loaded.meta == bank.meta
    for name in ("slots", "lut", "lut_seen", "feature_mean", "feature_std"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(bank, name))
    assert loaded.layers == [23, 16, 8, 3] and loaded.output_activation == "softplus"
    assert list(tmp_path.iterdir()) == [tmp_path / "a.nfbank"]  # no temporary file left


def test_pack_layout_is_row_major_weight_then_bias():
    layers = [18, 4, 3]
    rng = np.random.default_rng(0)
    wb = [(rng.random((18, 4)), rng.random(4)), (rng.random((4, 3)), rng.random(3))]
    row = pack(wb)
    assert row.shape == (slot_size(layers),) == (18 * 4 + 4 + 4 * 3 + 3,)
    assert row[2 * 4 + 1] == wb[0][0][2, 1] and row[18 * 4 + 2] == wb[0][1][2] and row[-1] == wb[1][1][2]
    for (w, b), (w2, b2) in zip(wb, unpack(np.stack([row, row])[1], layers)):
        np.testing.assert_array_equal(w, w2)
        np.testing.assert_array_equal(b, b2)


def test_nearest_key_fallback_uses_hamming_distance_then_pixels_then_key():
    keys = [0b0011, 0b0101, 0b1100]
    lut, seen = build_lut(keys, [10, 50, 10], bins=2, fallback="nearest_key")
    assert lut[0] == -1 and seen[0] == 0
    assert [lut[k] for k in keys] == [0, 1, 2] and seen[keys].tolist() == [1, 1, 1]
    assert lut[0b0001] == 1  # distance 1 to 0011 and 0101: more pixels wins
    assert lut[0b1000] == 2  # distance 1 to 1100 only
    assert lut[0b1111] == 1  # distance 2 to all three: more pixels wins
    assert lut[0b1010] == 0  # distance 2 to 0011 and 1100, equal pixels: smaller key
    brute = [min(range(3), key=lambda s: (bin(k ^ keys[s]).count("1"), -[10, 50, 10][s], keys[s])) for k in range(1, 16)]
    assert lut[1:].tolist() == brute


def test_shared_network_fallback():
    bank = random_bank(2, KEYS, [23, 8, 3], fallback="shared_network")
    shared = bank.meta["fallback"]["slot"]
    assert bank.meta["slot_keys"][shared] == SHARED_SLOT_KEY
    assert bank.lut[KEYS].tolist() == [0, 1, 2] and bank.lut[5 | 5 << 8] == shared and bank.lut[0] == -1


def test_refusals_name_the_file(tmp_path):
    bank = random_bank(3, KEYS, [23, 8, 3])
    good = save_bank(bank, tmp_path / "good.nfbank")
    cases = {
        "missing.nfbank": None,
        "truncated.nfbank": good.read_bytes()[:-100],
        "garbage.nfbank": b"this is not a bank at all",
    }
    for name, content in cases.items():
        if content is not None:
            (tmp_path / name).write_bytes(content)
    bad = {
        "version": write_raw(tmp_path / "v1.nfbank", bank, {"version": 1}),
        "feature spec": write_raw(tmp_path / "spec.nfbank", bank, {"feature_spec_version": 99}),
        "shape": write_raw(tmp_path / "shape.nfbank", bank, tensor_changes={"lut": bank.lut[:100]}),
        "32768": write_raw(tmp_path / "big.nfbank", random_bank(3, KEYS, [23, 8, 3]),
                           {"layers": [23, 128, 64, 3]},
                           {"slots": np.zeros((3, slot_size([23, 128, 64, 3])), np.float32)}),
    }
    for name in cases:
        with pytest.raises(BankError, match=name):
            load_bank(tmp_path / name)
    for problem, path in bad.items():
        with pytest.raises(BankError, match=problem) as info:
            load_bank(path)
        assert path.name in str(info.value)


def test_failed_save_overwrites_nothing(tmp_path):
    path = save_bank(random_bank(4, KEYS, [23, 8, 3]), tmp_path / "bank.nfbank")
    before = path.read_bytes()
    broken = random_bank(5, KEYS, [23, 8, 3])
    broken.slots[0, 0] = np.nan
    with pytest.raises(BankError, match="bank.nfbank"):
        save_bank(broken, path)
    assert path.read_bytes() == before and len(list(tmp_path.iterdir())) == 1
