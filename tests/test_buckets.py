"""Merging pixel records: sorted by key, stable, missing lights padded with zero factor."""

import numpy as np

from backend.buckets import PixelRecords, merge


def records(keys, n_lights, seed):
    rng = np.random.default_rng(seed)
    n = len(keys)
    return PixelRecords(np.asarray(keys, np.int64), rng.random((n, n_lights, 4), dtype=np.float32),
                        rng.random((n, n_lights, 3), dtype=np.float32), rng.random((n, 3), dtype=np.float32),
                        np.arange(n) % 2 == 0)


def test_merge_sorts_by_key_keeps_order_within_a_key_and_pads_missing_lights():
    one, two = records([1, 3, 3, 7], 1, 0), records([2, 3, 5], 2, 1)
    merged = merge([one, two])
    np.testing.assert_array_equal(merged.keys, [1, 2, 3, 3, 3, 5, 7])
    source = [(one, 0), (two, 0), (one, 1), (one, 2), (two, 1), (two, 2), (one, 3)]  # stable within key 3
    for row, (part, i) in enumerate(source):
        lights = part.features.shape[1]
        np.testing.assert_array_equal(merged.features[row, :lights], part.features[i])
        np.testing.assert_array_equal(merged.factor[row, :lights], part.factor[i])
        assert not merged.factor[row, lights:].any() and not merged.features[row, lights:].any()
        np.testing.assert_array_equal(merged.target[row], part.target[i])
        assert merged.borrowed[row] == part.borrowed[i]
    same = merge([records([4, 1], 1, 2), records([2], 1, 3)])  # every part with every light: no padding
    assert same.features.shape == (3, 1, 4) and list(same.keys) == [1, 2, 4]
