"""`generate --cluster` and `train --cluster`: real Ray on 127.0.0.1, real bpy workers, real Cycles, real EXR.

One head with two worker CPUs serves every test (`ray_head`, conftest.py). A cluster dataset must
equal a local run's, survive a kill -9 of a worker mid-sample and of the driver, and bad input must
fail fast with nothing written; Blender's Generate Dataset reaches the cluster through the service;
a cluster-trained bank matches a local one, and Ctrl-C brings its checkpoint back.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from backend.dataset import open_dataset
from conftest import ROOT
from ray_cluster import RAY_ENV, RayNode, marked_processes

SAMPLES = 6
pytestmark = pytest.mark.timeout(240)
UNLABELLED = 2  # G-buffer-only views in the run compared with a local one


def generate_args(scene, out, samples=SAMPLES, unlabelled=None) -> list[str]:
    """Samples of about a second on one core: long enough to kill a worker or the driver mid-run."""
    return ["generate", "--scene", str(scene), "--out", str(out), "--samples", str(samples), "--resolution", "48",
            "--lights", "1-2", "--gt-samples", "256", "--shadow-rays", "4", "--seed", "5",
            "--unlabelled", str(UNLABELLED if unlabelled is None else unlabelled)]


def run_driver(*args, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "backend", *map(str, args)], cwd=ROOT, env={**os.environ, **RAY_ENV},
                          capture_output=True, text=True, timeout=timeout)


def start_driver(*args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "backend", *map(str, args)], cwd=ROOT,
                            env={**os.environ, **RAY_ENV}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)


def on_cluster(head: RayNode) -> list[str]:
    return ["--cluster", head.address, "--cluster-token-file", head.token_file, "--worker-cpus", "1"]


@pytest.fixture(scope="session")
def local_reference(tmp_path_factory, suzanne_blend):
    """The same settings rendered locally, without Ray."""
    out = tmp_path_factory.mktemp("local_reference")
    result = run_driver(*generate_args(suzanne_blend, out, unlabelled=UNLABELLED))
    assert result.returncode == 0, result.stderr[-3000:]
    return out


def comparable(manifest_path) -> dict:
    """The manifest without what differs between any two runs: the creation time and render seconds."""
    manifest = json.loads(manifest_path.read_text())
    manifest.pop("created")
    manifest["settings"].pop("scene")
    for record in manifest["samples"]:
        record.pop("seconds")
    return manifest


def committed(out, count) -> bool:
    try:
        return len(json.loads((out / "manifest.json").read_text())["samples"]) >= count
    except (OSError, ValueError):
        return False


def wait_until(condition, process, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, f"the driver ended early: {process.stderr.read()[-3000:]}"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def assert_complete_and_valid(out, samples) -> None:
    dataset = open_dataset(out)
    indices = [record["index"] for record in json.loads((out / "manifest.json").read_text())["samples"]]
    assert indices == list(range(samples + UNLABELLED)), "every sample once, none twice"
    for i in indices:
        dataset.load_gbuffer(i), dataset.load_ground_truth(i) if i < samples else None
    names = sorted(p.name for p in (out / "samples").iterdir())
    assert names == sorted(f"{i:06d}{ext}" for i in indices
                           for ext in ((".gbuffer.exr", ".gt.exr", ".json") if i < samples else (".gbuffer.exr", ".json")))


@pytest.mark.slow
def test_cluster_dataset_equals_local_run(ray_head, suzanne_blend, local_reference, tmp_path):
    out = tmp_path / "cluster"
    result = run_driver(*generate_args(suzanne_blend, out, unlabelled=UNLABELLED), *on_cluster(ray_head))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "workers=2" in result.stderr
    assert comparable(out / "manifest.json") == comparable(local_reference / "manifest.json")
    cluster, local = open_dataset(out), open_dataset(local_reference)
    for i in range(SAMPLES):  # same pixels too: the workers run the local recipe on the packed scene
        a, b = cluster.load_gbuffer(i), local.load_gbuffer(i)
        for name in ("planes", "lights", "camera_position"):
            assert np.array_equal(getattr(a, name), getattr(b, name)), name
        np.testing.assert_allclose(cluster.load_ground_truth(i), local.load_ground_truth(i), atol=1e-5)
    for i in cluster.indices("unlabelled"):  # G-buffer-only views come back without a ground truth
        assert cluster.record(i)["ground_truth"] is None
        assert np.array_equal(cluster.load_gbuffer(i).planes, local.load_gbuffer(i).planes)
    assert cluster.indices("unlabelled") == list(range(SAMPLES, SAMPLES + UNLABELLED))
    assert_complete_and_valid(out, SAMPLES)


@pytest.mark.slow
def test_worker_killed_mid_sample_is_replaced_and_nothing_is_lost(ray_head, suzanne_blend, local_reference,
                                                                  tmp_path):
    out, samples = tmp_path / "killed_worker", 8
    driver = start_driver(*generate_args(suzanne_blend, out, samples), *on_cluster(ray_head))

    def rendering_worker():
        return [pid for pid, command in marked_processes(ray_head.marker).items()
                if command.startswith("ray::SampleRenderer.render")]

    wait_until(lambda: committed(out, 1) and rendering_worker(), driver)
    victim = rendering_worker()[0]
    os.kill(victim, signal.SIGKILL)
    _, stderr = driver.communicate(timeout=180)
    assert driver.returncode == 0, stderr[-3000:]
    assert "rendered again after their worker was lost" in stderr
    assert_complete_and_valid(out, samples)
    reference = open_dataset(local_reference)
    for i in range(SAMPLES):
        assert open_dataset(out).record(i)["camera"] == reference.record(i)["camera"]


@pytest.mark.slow
def test_killed_driver_resumes_rendering_only_missing_samples(ray_head, suzanne_blend, local_reference, tmp_path):
    out = tmp_path / "killed_driver"
    args = [*generate_args(suzanne_blend, out), *on_cluster(ray_head)]
    driver = start_driver(*args)
    wait_until(lambda: committed(out, 2), driver)
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    kept = {p.name: p.stat().st_mtime_ns for p in (out / "samples").iterdir()
            if p.name[:6].isdigit() and int(p.name[:6]) in open_dataset(out).indices()}
    assert 2 * 3 <= len(kept) < SAMPLES * 3, "kill the driver while it is still rendering"

    result = run_driver(*args)
    assert result.returncode == 0, result.stderr[-3000:]
    after = {p.name: p.stat().st_mtime_ns for p in (out / "samples").iterdir()}
    assert all(after[name] == mtime for name, mtime in kept.items()), "a finished sample was rendered again"
    assert_complete_and_valid(out, SAMPLES)
    assert comparable(out / "manifest.json") == comparable(local_reference / "manifest.json")


def test_unreachable_address_fails_within_seconds(suzanne_blend, tmp_path):
    from ray_cluster import free_loopback_port

    out = tmp_path / "out"
    start = time.monotonic()
    result = run_driver(*generate_args(suzanne_blend, out, samples=1), "--cluster", f"127.0.0.1:{free_loopback_port()}",
                        timeout=60)
    seconds = time.monotonic() - start
    assert result.returncode == 2
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith("error: cannot reach a Ray cluster at 127.0.0.1:"), result.stderr[-2000:]
    assert "ray start --head" in last_line
    assert seconds < 20, f"took {seconds:.1f} s"
    assert not out.exists()


def test_malformed_address_is_refused(suzanne_blend, tmp_path):
    result = run_driver(*generate_args(suzanne_blend, tmp_path / "out", samples=1), "--cluster", "headnode")
    assert result.returncode == 2
    assert "HOST:PORT" in result.stderr and "local[:N]" in result.stderr
    assert not (tmp_path / "out").exists()


MISSING_TEXTURE_SCENE = """
import sys, bpy
bpy.ops.wm.open_mainfile(filepath=sys.argv[1])
mesh = max((o for o in bpy.data.objects if o.type == "MESH"), key=lambda o: len(o.data.vertices))
material = bpy.data.materials.new("Textured")
node = material.node_tree.nodes.new("ShaderNodeTexImage")
node.image = bpy.data.images.load(sys.argv[3], check_existing=False)
material.node_tree.links.new(node.outputs["Color"], material.node_tree.nodes["Principled BSDF"].inputs["Base Color"])
mesh.data.materials.clear()
mesh.data.materials.append(material)
bpy.ops.wm.save_as_mainfile(filepath=sys.argv[2])
"""


def test_missing_texture_is_refused_before_connecting(suzanne_blend, tmp_path):
    texture = tmp_path / "skin.png"
    from PIL import Image

    Image.new("RGB", (4, 4), (200, 150, 120)).save(texture)
    scene = tmp_path / "textured.blend"
    subprocess.run([sys.executable, "-c", MISSING_TEXTURE_SCENE, suzanne_blend, scene, texture], check=True,
                   capture_output=True, timeout=120)
    texture.unlink()
    out = tmp_path / "out"
    result = run_driver(*generate_args(scene, out, samples=1), "--cluster", "127.0.0.1:9", timeout=60)
    assert result.returncode == 2
    assert "texture 'skin.png'" in result.stderr and "is missing" in result.stderr and str(texture) in result.stderr
    assert not out.exists()


RAY_FREE_RUN = """
import sys
from backend.cli import main
code = main(sys.argv[1:])
assert code == 0, code
assert not any(name == "ray" or name.startswith("ray.") for name in sys.modules), "a local run imported ray"
"""


def test_local_run_never_imports_ray(suzanne_blend, tmp_path):
    result = subprocess.run([sys.executable, "-c", RAY_FREE_RUN, *generate_args(suzanne_blend, tmp_path / "out", 1),
                             "--resolution", "16", "--gt-samples", "4"], cwd=ROOT, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]


FAKE_BPY = """
# Stands in for the bpy module of a worker node: absent, or of another Blender (the file `mode` says which).
from pathlib import Path

mode = (Path(__file__).parents[1] / "mode").read_text().strip()
if mode == "missing":
    raise ImportError("No module named 'bpy'")


class app:
    version_string = mode
"""


@pytest.fixture
def odd_cluster(tmp_path):
    """A second one-node cluster whose workers' Python finds the stand-in bpy first.

    (Ray refuses a second node on a loopback-only cluster, so the odd worker gets a head of its own.)
    """
    (tmp_path / "shadow" / "bpy").mkdir(parents=True)
    (tmp_path / "shadow" / "bpy" / "__init__.py").write_text(FAKE_BPY)
    head = RayNode(num_cpus=1, extra_env={"PYTHONPATH": str(tmp_path / "shadow")})
    yield head, tmp_path / "shadow" / "mode"
    head.stop()


@pytest.mark.slow
def test_worker_without_bpy_or_with_other_blender_is_named_and_nothing_is_written(odd_cluster, suzanne_blend,
                                                                                    tmp_path):
    head, mode_file = odd_cluster
    out = tmp_path / "out"
    for mode, words in (("missing", ["cannot import bpy", "pip install -e"]),
                        ("4.2.0", ["has Blender 4.2.0, the driver 5.0.1", "bpy==5.0.1"])):
        mode_file.write_text(mode)
        result = run_driver(*generate_args(suzanne_blend, out, samples=2), *on_cluster(head))
        assert result.returncode == 2, result.stderr[-3000:]
        last_line = result.stderr.strip().splitlines()[-1]
        assert last_line.startswith("error: worker on ") and "(127.0.0.1, Ray node " in last_line, last_line
        assert all(word in last_line for word in words), last_line
        assert not out.exists()


def test_a_gpu_device_on_a_cluster_without_gpus_is_refused_and_nothing_is_written(ray_head, suzanne_blend, tmp_path):
    out = tmp_path / "out"
    result = run_driver(*generate_args(suzanne_blend, out, samples=1), *on_cluster(ray_head), "--device", "CUDA")
    assert result.returncode == 2, result.stderr[-3000:]
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith(f"error: the Ray cluster at {ray_head.address} has no node with a GPU"), last_line
    assert "--device CPU" in last_line
    assert not out.exists()


def test_driver_without_the_heads_token_is_refused(ray_head, suzanne_blend, tmp_path):
    out = tmp_path / "out"
    start = time.monotonic()
    result = run_driver(*generate_args(suzanne_blend, out, samples=1), "--cluster", ray_head.address, timeout=90)
    assert result.returncode == 2
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith(f"error: cannot connect to the Ray cluster at {ray_head.address}"), result.stderr
    assert "requires an auth token" in last_line and "--cluster-token-file" in last_line
    assert time.monotonic() - start < 20  # Ray's retries are cut to about 6 s
    assert not out.exists()


@pytest.mark.slow
def test_addon_generates_on_the_cluster_through_its_service(ray_head, suzanne_blend, tmp_path):
    """Blender's Generate Dataset with "Render on Cluster" set: the add-on starts its service with --cluster."""
    from test_preview_addon import blender_session

    out = tmp_path / "from_blender"
    result = blender_session(suzanne_blend, tmp_path / "dataset.json", "dataset", tmp_path, python=sys.executable,
                             bank=tmp_path / "unused.nfbank", dataset=out, cluster=ray_head.address,
                             token_file=ray_head.token_file)
    assert result["operator"] == ["FINISHED"], result
    assert "on 1 cluster workers" in result["stdout"]
    assert_complete_and_valid(out, 3)


@pytest.mark.slow
def test_train_on_the_cluster_brings_back_the_bank_a_local_run_trains(ray_head, suzanne_dataset, tmp_path):
    from backend.bank import load_bank

    common = ["train", "--data", suzanne_dataset, "--no-teacher", "--steps", "30", "--eval-every", "10"]
    local = run_driver(*common, "--out", tmp_path / "local.nfbank")
    remote = run_driver(*common, "--out", tmp_path / "remote.nfbank", "--cluster", ray_head.address,
                        "--cluster-token-file", ray_head.token_file)
    assert local.returncode == 0 and remote.returncode == 0, remote.stderr[-3000:]
    assert "after 30 steps" in remote.stdout
    a, b = load_bank(tmp_path / "local.nfbank"), load_bank(tmp_path / "remote.nfbank")
    assert np.array_equal(a.lut, b.lut)
    np.testing.assert_allclose(a.slots, b.slots, atol=1e-4)  # one torch thread there, two here
    assert (tmp_path / "remote.ckpt").is_file() and (tmp_path / "remote.curve.png").is_file()


@pytest.mark.slow
def test_ctrl_c_stops_cluster_training_and_brings_the_checkpoint_back(ray_head, suzanne_dataset, tmp_path):
    import re
    import threading

    args = ["train", "--data", suzanne_dataset, "--no-teacher", "--out", tmp_path / "bank.nfbank", "--steps", "100000",
            "--checkpoint-every", "20", "--patience", "0", "--cluster", ray_head.address,
            "--cluster-token-file", ray_head.token_file]
    driver = subprocess.Popen([sys.executable, "-m", "backend", *map(str, args)], cwd=ROOT,
                              env={**os.environ, **RAY_ENV}, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    stderr = []
    reader = threading.Thread(target=lambda: stderr.extend(iter(lambda: driver.stderr.read1(4096), b"")))
    reader.start()

    def remote_step() -> int:  # the progress bar relays the remote trainer's step
        steps = re.findall(rb"(\d+)/100000 \[", b"".join(stderr))
        return int(steps[-1]) if steps else 0

    wait_until(lambda: remote_step() >= 40, driver)
    driver.send_signal(signal.SIGINT)
    stdout = driver.stdout.read()
    driver.wait(timeout=120)
    reader.join()
    assert driver.returncode == 130, b"".join(stderr)[-3000:]
    assert b"cancelled at step" in stdout and (tmp_path / "bank.ckpt").is_file()
    assert not (tmp_path / "bank.nfbank").exists()
