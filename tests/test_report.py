"""The HTML report of a real (tiny) bank and its baselines on the Suzanne dataset."""

import json
import math
import re

import numpy as np
import pytest

from backend.cli import main
from backend.bank import companion_path
from backend.training import TrainConfig, train


@pytest.fixture(scope="module")
def trained(suzanne_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("report_bank") / "bank.nfbank"
    for kind in ("hash_bank", "single_cost", "single_params"):
        path = out if kind == "hash_bank" else companion_path(out, f".{kind}.nfbank")
        train(TrainConfig(data=str(suzanne_dataset), out=str(path), kind=kind, steps=10, eval_every=10, batch=32,
                          widths=(16, 16), min_bucket_pixels=64, max_baseline_width=64))
    return out


@pytest.mark.slow
def test_report_has_every_part(trained, suzanne_dataset, tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["report", "--bank", str(trained), "--data", str(suzanne_dataset), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "index.html" in printed and "single_cost" in printed and "faster" in printed
    # The gain is printed signed with its unit; its interval needs two test views or more
    # (test_gain_aim_says_how_far_the_test_views_pin_it_down), and this dataset has one.
    assert re.search(r"single_cost \+ 1\.0 dB test PSNR \(measured [+-]\d+\.\d\d dB\)", printed), printed
    assert re.search(r"seam step ratio <= 1\.2 \(measured \d+\.\d\d\)", printed), printed
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["models"]) == {"hash_bank", "single_cost", "single_params", "teacher"}
    for model in metrics["models"].values():
        for split in ("val", "test"):
            scores = model[split]
            assert math.isfinite(scores["psnr"]) and 0 < scores["ssim"] <= 1 and 0 <= scores["flip"] <= 1
            assert scores["seam_ratio"] is None or scores["seam_ratio"] > 0
    assert 0 <= metrics["unseen_key_share"]["test"] <= 1
    # The cost a pixel pays: the hash bank's border blend (trained default 1 px) runs a second network on
    # some of its edge pixels, at most 3 more on a corner pixel; one network never does.
    bank = metrics["models"]["hash_bank"]
    assert 1.0 <= bank["network_evaluations_per_pixel"] <= 4.0
    assert bank["multiply_adds_per_pixel_light_effective"] == \
        round(bank["multiply_adds_per_pixel_light"] * bank["network_evaluations_per_pixel"])
    assert metrics["models"]["single_cost"]["network_evaluations_per_pixel"] == 1.0
    if bank["network_evaluations_per_pixel"] > 1.0:
        assert "border blend: " in (out / "index.html").read_text()
    timing = metrics["timing"]
    assert timing["neural_ms_per_frame"] > 0 and timing["ratio_cycles_over_neural"] > 0
    assert timing["resolution"] == [64, 64]
    html = (out / "index.html").read_text()
    assert "peak learning rate" in html and "UV bins chosen from the data" in html  # what each model was given
    images = re.findall(r"src='([^']+)'", html)
    assert len(metrics["views"]) >= 1 and len(images) >= 4 * len(metrics["views"]) + 4
    assert all((out / name).is_file() for name in images)
    for part in ("tile_keys.png", "bucket_sizes.png", "tile_seams.png", "quality_against_cost.png",
                 "curve_hash_bank.png"):
        assert part in images
    from backend.outputs import REPORT, check_output

    check_output(out, REPORT)  # the next report may replace this one (and the trained bank's own outputs)


@pytest.mark.slow
def test_a_single_network_is_reported_as_itself(trained, suzanne_dataset, tmp_path, capsys):
    """Not as a "hash bank" whose every tile key is unseen: it has no keys, and the hash bank's aims are not its."""
    out = tmp_path / "report"
    single = companion_path(trained, ".single_cost.nfbank")
    assert main(["report", "--bank", str(single), "--data", str(suzanne_dataset), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "single cost" in printed and "hash bank" not in printed and "unseen" not in printed
    metrics = json.loads((out / "metrics.json").read_text())
    assert next(iter(metrics["models"])) == "single_cost" and "hash_bank" not in metrics["models"]
    assert metrics["headline"]["unseen_key_share_test"] is None and metrics["unseen_key_share"] == {}
    assert [aim["aim"] for aim in metrics["headline"]["aims"]] == ["best model >= 34 dB test PSNR"]
    html = (out / "index.html").read_text()
    assert "tile_keys.png" not in html and "unseen in training" not in html


def test_report_needs_test_views(trained, suzanne_dataset, tmp_path):
    manifest = json.loads((suzanne_dataset / "manifest.json").read_text())
    data = tmp_path / "no_test"
    data.mkdir()
    (data / "samples").symlink_to(suzanne_dataset / "samples")
    manifest["samples"] = [s for s in manifest["samples"] if s["split"] != "test"]
    (data / "manifest.json").write_text(json.dumps(manifest))
    out = tmp_path / "report"
    assert main(["report", "--bank", str(trained), "--data", str(data), "--out", str(out)]) == 2
    assert not out.exists()


def test_step_ratio_sees_whole_tile_bias_that_border_error_cannot():
    from backend.report import step_errors

    rng = np.random.default_rng(0)
    h, w, tile = 64, 48, 16
    mask = np.ones((h, w), dtype=bool)
    noise = rng.normal(0.0, 0.01, (h, w, 3))
    tile_bias = np.repeat(np.repeat(rng.normal(0.0, 0.05, (h // tile, w // tile, 3)), tile, 0), tile, 1)

    def ratio(error):
        sums = step_errors(error, mask, tile)
        return (sums["across"][0] / sums["across"][1]) / (sums["within"][0] / sums["within"][1])

    assert 0.8 < ratio(noise) < 1.25  # no seams
    assert ratio(noise + tile_bias) > 5  # each tile shifted as a whole: a seam on every border


def test_gain_aim_says_how_far_the_test_views_pin_it_down():
    """The pooled gain, then the per-view gains' mean, 95% interval and how many views the bank wins."""
    from backend.report import aim_value_text, aims

    def scores(psnrs):
        views = [{"index": i, "psnr": p} for i, p in enumerate(psnrs)]
        return {"test": {"psnr": float(np.mean(psnrs)), "ssim": 0.9, "flip": 0.05, "seam_step_ratio": 1.0,
                         "views": views}}

    results = {"hash_bank": scores([31.0, 32.0, 33.5]), "single_cost": scores([30.0, 30.0, 34.0])}
    gain = aims(results)[0]
    assert gain["views"] == 3 and gain["views_better"] == 2 and gain["per_view_mean"] == 0.833
    low, high = gain["interval_95"]
    assert low < 0 < gain["per_view_mean"] < high  # three views cannot tell these two apart
    assert re.fullmatch(r"\+0\.83 dB pooled; per view \+0\.83, 95% interval -\d\.\d\d to \+\d\.\d\d over 3 "
                        r"test views, better on 2", aim_value_text(gain)), aim_value_text(gain)
    one_view = {name: scores([r["test"]["psnr"]]) for name, r in results.items()}
    assert "interval_95" not in aims(one_view)[0] and aim_value_text(aims(one_view)[0]) == "+0.83 dB"
