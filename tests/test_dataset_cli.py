"""`python -m backend generate`: resume after a kill, and clear refusals of bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from backend.dataset import open_dataset
from conftest import ROOT, SUZANNE_SAMPLES, SUZANNE_UNLABELLED, run_backend, suzanne_generate_args


def sample_files(dataset_dir):
    return {p.name: p.stat().st_mtime_ns for p in (dataset_dir / "samples").iterdir()}


@pytest.mark.slow
def test_killed_run_resumes_and_renders_only_missing_samples(suzanne_blend, suzanne_dataset, tmp_path):
    out = tmp_path / "resumed"
    args = suzanne_generate_args(suzanne_blend, out)
    process = subprocess.Popen([sys.executable, "-m", "backend", *args], cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    manifest = out / "manifest.json"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if manifest.exists() and len(json.loads(manifest.read_text())["samples"]) >= 3:
            break
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()

    partial = open_dataset(out)
    finished = partial.indices()
    assert 3 <= len(finished) < SUZANNE_SAMPLES, "kill the run while it is still rendering"
    for i in finished:  # whatever the kill interrupted, every listed sample reads as complete
        partial.load_gbuffer(i), partial.load_ground_truth(i) if i < SUZANNE_SAMPLES else None
    kept = {name: mtime for name, mtime in sample_files(out).items()
            if name[:6].isdigit() and int(name[:6]) in finished and not name.endswith(".partial")}
    (out / "samples" / "000011.gt.exr.partial").write_bytes(b"half a file")

    result = run_backend(*args)
    assert result.returncode == 0, result.stderr
    after = sample_files(out)
    assert all(after[name] == mtime for name, mtime in kept.items()), "a finished sample was rendered again"
    assert not any(name.endswith(".partial") for name in after)
    resumed, whole = open_dataset(out), open_dataset(suzanne_dataset)
    assert resumed.indices() == list(range(SUZANNE_SAMPLES + SUZANNE_UNLABELLED))
    assert resumed.indices("unlabelled") == list(range(SUZANNE_SAMPLES, SUZANNE_SAMPLES + SUZANNE_UNLABELLED))
    for i in resumed.indices():  # identical cameras and lights to a run rendered in one go
        assert resumed.record(i)["camera"] == whole.record(i)["camera"]
        assert resumed.record(i)["lights"] == whole.record(i)["lights"]


def test_rerun_of_finished_dataset_renders_nothing(suzanne_blend, suzanne_dataset):
    before = sample_files(suzanne_dataset)
    result = run_backend(*suzanne_generate_args(suzanne_blend, suzanne_dataset))
    assert result.returncode == 0, result.stderr
    assert sample_files(suzanne_dataset) == before


def refused(result, *words):
    assert result.returncode != 0
    message = result.stderr.lower()
    missing = [w for w in words if w.lower() not in message]
    assert not missing, f"error message lacks {missing}: {result.stderr[-2000:]}"


def write_obj(path, with_uv: bool):
    lines = ["v 0 0 0", "v 1 0 0", "v 0 0 1"]
    if with_uv:
        lines += ["vt 0 0", "vt 1 0", "vt 0 1"]
    lines.append("f 1/1 2/2 3/3" if with_uv else "f 1 2 3")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("case", ["missing scene", "no mesh", "no uv", "zero lights", "unwritable out",
                                  "resolution 0", "absurd resolution", "bad scene type",
                                  "corrupt scene"])
def test_bad_input_is_refused_and_nothing_is_written(case, suzanne_blend, tmp_path):
    out = tmp_path / "out"
    scene, extra, words = suzanne_blend, [], []
    if case == "missing scene":
        scene, words = tmp_path / "nowhere.blend", ["nowhere.blend", "does not exist"]
    elif case == "no mesh":
        scene, words = tmp_path / "empty.obj", ["no mesh"]
        scene.write_text("# an OBJ file without geometry\n")
    elif case == "no uv":
        scene, words = write_obj(tmp_path / "flat.obj", with_uv=False), ["no uv map"]
    elif case == "zero lights":
        extra, words = ["--lights", "0"], ["lights", "at least one light"]
    elif case == "unwritable out":
        blocker = tmp_path / "a_file"
        blocker.write_text("")
        out, words = blocker / "out", ["cannot be created", "a_file"]
    elif case == "resolution 0":
        extra, words = ["--resolution", "0"], ["resolution", "1..8192"]
    elif case == "absurd resolution":
        extra, words = ["--resolution", "100000x64"], ["resolution", "1..8192"]
    elif case == "corrupt scene":
        scene, words = tmp_path / "broken.blend", ["broken.blend", "could not read"]
        scene.write_bytes(b"not a blend file")
    elif case == "bad scene type":
        scene, words = write_obj(tmp_path / "face.txt", with_uv=True), ["face.txt", "neither"]
    result = run_backend("generate", "--scene", scene, "--out", out, "--samples", "1", "--resolution", "16",
                         *extra)
    refused(result, *words)
    assert not out.exists()


def test_folder_with_other_settings_is_refused_without_overwrite(suzanne_blend, suzanne_dataset, tmp_path):
    manifest = (suzanne_dataset / "manifest.json").read_bytes()
    args = suzanne_generate_args(suzanne_blend, suzanne_dataset)
    args[args.index("--seed") + 1] = "8"
    refused(run_backend(*args), "other settings", "seed", "--overwrite")
    assert (suzanne_dataset / "manifest.json").read_bytes() == manifest

    foreign = tmp_path / "holiday_photos"
    foreign.mkdir()
    (foreign / "beach.jpg").write_bytes(b"\xff\xd8")
    refused(run_backend(*suzanne_generate_args(suzanne_blend, foreign)), "not empty", "holiday_photos")
    assert sorted(p.name for p in foreign.iterdir()) == ["beach.jpg"]


@pytest.mark.slow
def test_overwrite_replaces_a_different_dataset(suzanne_blend, tmp_path):
    out = tmp_path / "replaced"
    first = ["generate", "--scene", suzanne_blend, "--out", out, "--resolution", "16", "--gt-samples", "1"]
    assert run_backend(*first, "--samples", "2").returncode == 0
    assert run_backend(*first, "--samples", "1", "--overwrite").returncode == 0
    dataset = open_dataset(out)  # by default twice as many unlabelled views as samples
    assert dataset.labelled() == [0] and dataset.indices("unlabelled") == [1, 2] and dataset.settings["samples"] == 1
    assert sorted(os.listdir(out / "samples")) == ["000000.gbuffer.exr", "000000.gt.exr", "000000.json",
                                                   "000001.gbuffer.exr", "000001.json",
                                                   "000002.gbuffer.exr", "000002.json"]


MISSING_GPU_PROBE = """
import bpy
cycles = bpy.context.preferences.addons["cycles"].preferences
present = set()
for kind in ("CUDA", "OPTIX", "HIP", "ONEAPI"):
    cycles.compute_device_type = kind
    cycles.refresh_devices()
    present |= {d.type for d in cycles.devices if d.type == kind}
print("MISSING", next((k for k in ("ONEAPI", "HIP", "CUDA", "OPTIX") if k not in present), ""))
"""


def missing_gpu_backend() -> str:
    """A Cycles GPU backend this machine has no device for ('' if it has them all)."""
    out = subprocess.run([sys.executable, "-c", MISSING_GPU_PROBE], capture_output=True, text=True, timeout=60).stdout
    words = next((line.split() for line in out.splitlines() if line.startswith("MISSING")), [])
    return words[1] if len(words) > 1 else ""


def test_a_gpu_device_the_machine_lacks_is_refused_before_anything_is_written(suzanne_blend, tmp_path):
    device = missing_gpu_backend()
    if not device:
        pytest.skip("this machine has a GPU of every Cycles backend")
    out = tmp_path / "gpu"
    result = run_backend("generate", "--scene", suzanne_blend, "--out", out, "--samples", "2", "--resolution", "16",
                         "--device", device)
    assert result.returncode == 2
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith(f"error: Cycles finds no {device} device on this machine"), last_line
    assert "--device CPU" in last_line
    assert not out.exists()
