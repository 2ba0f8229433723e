"""`python -m backend render` on real dataset samples: outputs, compositing, and every refusal."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import OpenEXR
import pytest
from PIL import Image

from backend.features import N_FEATURES
from backend.bank import load_bank, random_bank, save_bank
from backend.cli import main
from backend.dataset import open_dataset
from backend.exr import read_parts
from backend.hashing import gbuffer_tile_keys
from backend.renderers.torch_renderer import create

ROOT = Path(__file__).resolve().parents[1]


def render_cli(*args):
    """The real command line in a subprocess."""
    return subprocess.run([sys.executable, "-m", "backend", "render", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def render_main(capsys, *args) -> tuple[int, str]:
    """The same command through backend.cli.main in this process (exit code, stderr)."""
    code = main(["render", *map(str, args)])
    return code, capsys.readouterr().err


@pytest.fixture(scope="module")
def sample(suzanne_dataset, tmp_path_factory):
    """(dataset, index, bank path) with a random bank over the first sample's tile keys."""
    dataset = open_dataset(suzanne_dataset)
    index = dataset.indices("test")[0]
    keys = np.unique(gbuffer_tile_keys(dataset.load_gbuffer(index)))
    bank_path = save_bank(random_bank(3, keys[keys > 0], [N_FEATURES, 16, 16, 3]), tmp_path_factory.mktemp("bank") / "b.nfbank")
    return dataset, index, bank_path


def gbuffer_path(dataset, index) -> Path:
    return dataset.root / dataset.record(index)["gbuffer"]


def test_exr_and_png_outputs(sample, tmp_path):
    dataset, index, bank_path = sample
    result = render_cli("--bank", bank_path, "--gbuffer", gbuffer_path(dataset, index), "--out", tmp_path / "f.exr")
    assert result.returncode == 0, result.stderr
    gbuffer = dataset.load_gbuffer(index)
    layer = next(iter(read_parts(tmp_path / "f.exr").values()))
    frame = np.stack([layer[c] for c in "RGBA"], axis=-1)
    expected = create(load_bank(bank_path)).render(gbuffer)
    covered = gbuffer.covered
    np.testing.assert_allclose(frame[covered], expected[covered], rtol=1e-6)
    ground_truth = dataset.load_ground_truth(index)[:3].transpose(1, 2, 0)
    np.testing.assert_array_equal(frame[~covered, :3], ground_truth[~covered])  # the sample's own background
    assert (frame[..., 3] == covered).all()

    result = render_cli("--bank", bank_path, "--gbuffer", gbuffer_path(dataset, index), "--out", tmp_path / "f.png",
                        "--background", "1,0,0")
    assert result.returncode == 0, result.stderr
    png = np.asarray(Image.open(tmp_path / "f.png"))
    assert png.shape == (64, 64, 4) and (png[~covered] == [255, 0, 0, 0]).all()


def copy_sample(dataset, index, tmp_path) -> Path:
    """The sample's G-buffer EXR and its record, copied to tmp_path."""
    source = gbuffer_path(dataset, index)
    target = tmp_path / source.name
    shutil.copy(source, target)
    (tmp_path / source.name.replace(".gbuffer.exr", ".json")).write_text(json.dumps(dataset.record(index)))
    return target


def with_nan(path: Path) -> Path:
    exr = OpenEXR.File(str(path), separate_channels=True)
    part = next(p for p in exr.parts if p.name().endswith("Position"))
    channel = next(iter(part.channels.values()))
    mask = next(p for p in exr.parts if p.name() == "GBuffer.Combined").channels["GBuffer.Combined.A"].pixels
    pixels = channel.pixels.copy()
    pixels[np.unravel_index(np.argmax(mask), mask.shape)] = np.nan
    channel.pixels = pixels
    exr.write(str(path))
    return path


def test_bad_input_is_named_exits_non_zero_and_writes_nothing(sample, tmp_path, capsys):
    dataset, index, bank_path = sample
    good = copy_sample(dataset, index, tmp_path)
    truncated = tmp_path / "trunc" / good.name
    truncated.parent.mkdir()
    shutil.copy(good.with_name(good.name.replace(".gbuffer.exr", ".json")), truncated.parent)
    truncated.write_bytes(good.read_bytes()[:5000])
    nan_dir = tmp_path / "nan"
    nan_dir.mkdir()
    nan = with_nan(copy_sample(dataset, index, nan_dir))
    corrupt_bank = tmp_path / "corrupt.nfbank"
    corrupt_bank.write_bytes(Path(bank_path).read_bytes()[:-64])
    out = tmp_path / "out.exr"
    out.write_bytes(b"keep me")
    cases = [
        ((bank_path, truncated, out), str(truncated)),
        ((bank_path, nan, out), "NaN"),
        ((corrupt_bank, good, out), str(corrupt_bank)),
        ((tmp_path / "missing.nfbank", good, out), "missing.nfbank"),
        ((bank_path, good, tmp_path / "out.jpg"), "out.jpg"),
    ]
    for (bank, gbuffer, target), expected in cases:
        code, stderr = render_main(capsys, "--bank", bank, "--gbuffer", gbuffer, "--out", target)
        assert code != 0 and expected in stderr, (expected, stderr)
    assert out.read_bytes() == b"keep me" and not (tmp_path / "out.jpg").exists()
    code, stderr = render_main(capsys, "--bank", bank_path, "--gbuffer", good, "--out", tmp_path / "bg.exr",
                               "--background", dataset.root / dataset.record(index)["ground_truth"])
    assert code == 0, stderr  # a same-size EXR background is fine
    result = render_cli("--bank", corrupt_bank, "--gbuffer", good, "--out", out)
    assert result.returncode == 2 and "corrupt.nfbank" in result.stderr and "Traceback" not in result.stderr
