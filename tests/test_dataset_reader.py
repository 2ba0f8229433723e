"""backend.dataset and backend.exr on real files: the canonical G-buffer, and errors naming the file."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from backend.dataset import open_dataset, read_gbuffer
from backend.errors import DatasetError, GBufferError
from backend.exr import read_parts, write_rgba


@pytest.fixture
def dataset_copy(suzanne_dataset, tmp_path):
    return shutil.copytree(suzanne_dataset, tmp_path / "copy")


def edit_manifest(root, change):
    path = root / "manifest.json"
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))


def test_read_gbuffer_of_a_lone_file_matches_the_dataset(suzanne_dataset):
    dataset = open_dataset(suzanne_dataset)
    alone = read_gbuffer(suzanne_dataset / "samples" / "000003.gbuffer.exr")
    np.testing.assert_array_equal(alone.planes, dataset.load_gbuffer(3).planes)
    assert alone.planes.shape == (12 + 3 * alone.n_lights, 64, 64)
    assert dataset.resolution == (64, 64)
    assert set(dataset.indices("train")) | set(dataset.indices("val")) | set(dataset.indices("test")) \
        | set(dataset.indices("unlabelled")) \
        == set(dataset.indices())


def test_missing_manifest_names_the_folder(tmp_path):
    with pytest.raises(DatasetError, match="manifest.json does not exist"):
        open_dataset(tmp_path)


def test_unknown_version_is_refused(dataset_copy):
    edit_manifest(dataset_copy, lambda m: m.update(version=99))
    with pytest.raises(DatasetError, match="version 99 is not supported"):
        open_dataset(dataset_copy)


def test_a_version_3_dataset_is_refused_with_what_to_do(dataset_copy):
    edit_manifest(dataset_copy, lambda m: m.update(version=3))
    with pytest.raises(DatasetError, match=r"version 3 dataset.*each light's own ground truth.*generate"):
        open_dataset(dataset_copy)


def test_a_missing_light_ground_truth_names_the_pass(dataset_copy):
    def rename_light(manifest):
        manifest["samples"][0]["lights"][0]["lightgroup"] = "light7"
    edit_manifest(dataset_copy, rename_light)
    with pytest.raises(DatasetError, match="pass 'GroundTruth.Combined_light7' is missing"):
        open_dataset(dataset_copy).load_light_ground_truths(0)


def test_truncated_exr_names_the_file(dataset_copy):
    path = dataset_copy / "samples" / "000002.gbuffer.exr"
    path.write_bytes(path.read_bytes()[:3000])
    with pytest.raises(GBufferError, match="000002.gbuffer.exr"):
        open_dataset(dataset_copy).load_gbuffer(2)
    truth = dataset_copy / "samples" / "000002.gt.exr"
    truth.unlink()
    with pytest.raises(DatasetError, match="000002.gt.exr: file does not exist"):
        open_dataset(dataset_copy).load_ground_truth(2)


def test_missing_light_pass_and_wrong_size_are_named(dataset_copy):
    def add_light(manifest):
        record = manifest["samples"][0]
        record["lights"].append(dict(record["lights"][0], lightgroup="light5"))
        manifest["samples"][1]["resolution"] = [32, 64]
    edit_manifest(dataset_copy, add_light)
    dataset = open_dataset(dataset_copy)
    with pytest.raises(GBufferError, match="pass 'Lights.Combined_light5' is missing"):
        dataset.load_gbuffer(0)
    with pytest.raises(GBufferError, match=r"is \(64, 64\) pixels .* the record says \(32, 64\)"):
        dataset.load_gbuffer(1)
    with pytest.raises(DatasetError, match="sample 99 is not in the manifest"):
        dataset.load_gbuffer(99)


def test_float32_writer_round_trips(tmp_path):
    image = np.random.default_rng(0).random((5, 7, 4), dtype=np.float32) * 100
    write_rgba(tmp_path / "out.exr", image)
    channels = next(iter(read_parts(tmp_path / "out.exr").values()))
    np.testing.assert_array_equal(np.stack([channels[c] for c in "RGBA"], axis=-1), image)
    assert not list(tmp_path.glob("*.partial"))


def test_contact_sheet_shows_every_pass_of_the_first_samples(suzanne_dataset, tmp_path):
    from PIL import Image

    from backend.contact_sheet import COLUMNS, write_contact_sheet

    sheet = Image.open(write_contact_sheet(suzanne_dataset, tmp_path / "sheet.png", rows=3))
    assert sheet.size == (64 * len(COLUMNS), 16 + 3 * 64)
    pixels = np.asarray(sheet, dtype=np.float32)
    first_row = pixels[16:80]
    assert all(first_row[:, c * 64:(c + 1) * 64].std() > 5 for c in range(len(COLUMNS))), "a tile is blank"
