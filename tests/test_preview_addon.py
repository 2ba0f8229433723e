"""The add-on's Train and Neural Render Preview operators in headless Blender against a real service.

Blender runs in a subprocess (tests/blender_preview_session.py) so bpy state never leaks between
tests. A tiny bank is trained from the `suzanne_dataset` fixture with backend.training.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import process_ended
from service_process import start_service, stop_service

SESSION = Path(__file__).with_name("blender_preview_session.py")
PREVIEW_SIZE = 64


@pytest.fixture(scope="module")
def tiny_bank(suzanne_dataset, tmp_path_factory) -> Path:
    from backend.training import TrainConfig, train

    out = tmp_path_factory.mktemp("preview_bank") / "tiny.nfbank"
    train(TrainConfig(data=str(suzanne_dataset), out=str(out), steps=20, eval_every=10))
    return out


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    """TMPDIR of the Blender sessions: the add-on's preview files land here, inside the allowed folders."""
    return tmp_path_factory.mktemp("blender_tmp")


@pytest.fixture(scope="module")
def service(tmp_path_factory, tiny_bank, scratch, suzanne_dataset):
    service = start_service([tiny_bank.parent, scratch, suzanne_dataset], tmp_path_factory.mktemp("preview_service"))
    yield service
    stop_service(service)


def blender_session(scene: Path, result: Path, action: str, scratch: Path, **options) -> dict:
    args = [sys.executable, str(SESSION), str(scene), str(result), action, *(f"{k}={v}" for k, v in options.items())]
    completed = subprocess.run(args, capture_output=True, text=True, timeout=300,
                               env={"PATH": "/usr/bin:/bin", "HOME": str(scratch), "TMPDIR": str(scratch)})
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    return {**json.loads(result.read_text()), "stdout": completed.stdout}


@pytest.mark.slow
def test_preview_shows_exactly_the_frame_the_backend_traces_and_shades(service, suzanne_blend, suzanne_dataset,
                                                                       tiny_bank, scratch, tmp_path):
    from backend.bank import load_bank
    from backend.dataset import lights_array
    from backend.rendering import DEFAULT_BACKGROUND
    from backend.renderers.torch_renderer import TorchRenderer
    from backend.tracer import get_tracer, load_parts

    result = blender_session(suzanne_blend, tmp_path / "preview.json", "preview", scratch, url=service.url,
                             token=service.token, bank=tiny_bank, resolution=PREVIEW_SIZE, dataset=suzanne_dataset)
    assert result["operator"] == ["FINISHED"], result
    assert result["is_float"] and result["image_size"] == [PREVIEW_SIZE, round(PREVIEW_SIZE * 3 / 4)]
    shown = np.load(tmp_path / "preview.json.npy")

    request = json.loads(Path(result["request"]).read_text())
    assert request["albedo"] == str(suzanne_dataset / "scene" / "albedo.npz"), "the dataset's bake"
    assert request["shadow_rays"] == 4, "the dataset's shadow rays (conftest: --shadow-rays 4)"
    tracer = get_tracer(load_parts(request["mesh"], request["albedo"]), shadow_rays=request["shadow_rays"])
    gbuffer = tracer.trace(request["camera"], lights_array(request["lights"], "request"), tuple(request["resolution"]))
    gbuffer.background = np.broadcast_to(np.array(DEFAULT_BACKGROUND, np.float32)[:, None, None],
                                         (3, gbuffer.height, gbuffer.width)).copy()
    expected = TorchRenderer(load_bank(tiny_bank)).render(gbuffer)
    assert shown.shape == expected.shape
    assert np.array_equal(shown, expected)
    coverage = (expected[..., 3] > 0.5).mean()
    assert 0.1 < coverage < 0.9, coverage  # Suzanne in view: the check is not vacuous, the camera not inside her

    assert request["camera"]["position"] == pytest.approx([0.3, -4.0, 0.6], abs=1e-5)  # the scene's camera and light
    assert [light["position"] for light in request["lights"]] == [pytest.approx([2.0, -3.0, 2.0], abs=1e-5)]
    assert all(result["times_ms"][stage] > 0 for stage in ("snapshot", "gbuffer", "transfer", "shading", "upload"))
    assert result["renders_in_session"] == 0, "Cycles ran in the UI's process"
    assert result["workers_started"] == 0, "no Blender worker is needed without Compare with Cycles"


@pytest.mark.slow
def test_compare_with_cycles_adds_the_render_and_the_difference(service, suzanne_blend, suzanne_dataset, tiny_bank,
                                                                scratch, tmp_path):
    result = blender_session(suzanne_blend, tmp_path / "compare.json", "preview", scratch, url=service.url,
                             token=service.token, bank=tiny_bank, resolution=32, compare=1, dataset=suzanne_dataset)
    assert result["operator"] == ["FINISHED"], result
    assert {"Neural Preview", "Neural Preview Cycles", "Neural Preview Difference"} <= set(result["images"])
    assert result["times_ms"]["cycles"] > 0
    assert result["renders_in_session"] == 0


@pytest.mark.parametrize("case, expected", [
    ("no_bank", "train one first"),
    ("wrong_token", "401"),
    ("unreachable", "not reachable"),
    ("incompatible_bank", "422"),
    ("no_dataset", "no baked albedo"),
])
def test_preview_errors_reach_the_user_as_reports(service, suzanne_blend, suzanne_dataset, tiny_bank, scratch,
                                                  tmp_path, case, expected):
    options = {"url": service.url, "token": service.token, "bank": tiny_bank, "resolution": 16,
               "dataset": suzanne_dataset}
    if case == "no_bank":
        options["bank"] = tiny_bank.with_name("never_trained.nfbank")
    elif case == "incompatible_bank":
        options["bank"] = tiny_bank.with_name("not_a_bank.nfbank")
        options["bank"].write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{}")
    elif case == "no_dataset":
        options["dataset"] = tmp_path / "no_dataset_here"
    elif case == "wrong_token":
        options["token"] = "not-the-token"
    else:
        options["url"] = "http://127.0.0.1:9"  # discard port: nothing listens
    result = blender_session(suzanne_blend, tmp_path / "error.json", "preview", scratch, **options)
    assert result["operator"] == ["error"], result
    assert expected in result["error"]


@pytest.mark.slow
def test_train_operator_starts_the_service_and_reports_progress(suzanne_dataset, suzanne_blend, scratch, tmp_path):
    bank = tmp_path / "trained.nfbank"
    result = blender_session(suzanne_blend, tmp_path / "train.json", "train", scratch, python=sys.executable,
                             dataset=suzanne_dataset, bank=bank, steps=20)
    assert result["operator"] == ["FINISHED"], result
    assert result["state"] == "done"
    assert result["step"] == result["total_steps"] == 20 and result["progress"] == pytest.approx(1.0)
    assert result["loss"] > 0 and result["val_psnr"] > 0
    progress_lines = re.findall(r"training: running step (\d+)/20", result["stdout"])
    assert progress_lines and min(map(int, progress_lines)) < 20, "no progress was reported while training ran"
    assert bank.is_file() and Path(result["report"]).is_file()


def test_live_preview_notices_view_light_and_object_changes(suzanne_blend, scratch, tmp_path):
    result = blender_session(suzanne_blend, tmp_path / "live.json", "live", scratch, python=sys.executable,
                             bank=tmp_path / "unused.nfbank")
    assert result["changed"] == {"camera": True, "light": True, "object": True, "geometry": True, "nothing": False}


@pytest.mark.slow
def test_live_renders_after_edits_debounced_and_stays_quiet_when_idle(service, suzanne_blend, suzanne_dataset,
                                                                       tiny_bank, scratch, tmp_path):
    result = blender_session(suzanne_blend, tmp_path / "live_frames.json", "live_frames", scratch, url=service.url,
                             token=service.token, bank=tiny_bank, dataset=suzanne_dataset)
    assert result["debounced_first"] and result["debounced_edit"], "a change must wait DEBOUNCE_S before a render"
    assert result["first_frame"], result
    assert result["quiet_when_idle"], "Live re-rendered although nothing changed"
    assert result["edit_rerendered"] and result["edit_darkened"], result  # the key light went from 400 W to 100 W
    assert result["material_rerendered"], "a material edit did not start a Live frame"
    assert result["renders_in_session"] == 0


def test_cancelled_frame_ends_with_a_message_and_the_next_frame_works(service, suzanne_blend, suzanne_dataset,
                                                                       tiny_bank, scratch, tmp_path):
    result = blender_session(suzanne_blend, tmp_path / "cancel.json", "cancel", scratch, url=service.url,
                             token=service.token, bank=tiny_bank, dataset=suzanne_dataset)
    assert result["cancel_error"] == "preview cancelled" and not result["cancelled_frame"], result
    assert result["operator"] == ["FINISHED"], result  # a new worker took over
    assert result["idle_worker_kept"], "cancelling a frame the worker had finished stopped the worker"
    assert "did not answer within 0 s" in result["timeout_error"] and not result["worker_after_timeout_alive"]
    assert result["after_timeout_frame"], result
    first, after_light, after_material = result["worker_pids_light_then_material_edit"]
    assert first == after_light != after_material, result  # replaced at the limit, only by a new snapshot


def test_snapshot_is_rewritten_only_when_the_object_changes(suzanne_blend, suzanne_dataset, scratch, tmp_path):
    result = blender_session(suzanne_blend, tmp_path / "snapshots.json", "snapshots", scratch, python=sys.executable,
                             bank=tmp_path / "unused.nfbank", dataset=suzanne_dataset)
    paths = result["paths"]
    assert paths["camera"] == paths["light"] == paths["object_moved"] == paths["first"]  # the worker reuses it
    assert paths["material"] != paths["object_moved"] and paths["edit_mode"] != paths["material"]
    assert result["edit_mode_top_z"] > 4.0  # Edit Mode's unflushed move is in the snapshot
    mesh = result["mesh_versions"]  # the tracer's mesh file is in world space: a move rewrites it too
    assert mesh["camera"] == mesh["light"] == mesh["first"] != mesh["object_moved"] != mesh["edit_mode"]
    assert result["edit_mode_mesh_top_z"] > 4.0
    assert [name for name in result["files"] if name.endswith(".blend")] == [Path(paths["edit_mode"]).name]


@pytest.mark.slow
def test_preview_worker_exits_when_blender_is_killed(service, suzanne_blend, suzanne_dataset, tiny_bank, scratch,
                                                      tmp_path):
    result_path = tmp_path / "hold.json"
    args = [sys.executable, str(SESSION), str(suzanne_blend), str(result_path), "hold_worker", f"url={service.url}",
            f"token={service.token}", f"bank={tiny_bank}", "resolution=16", "compare=1", f"dataset={suzanne_dataset}"]
    session = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env={"PATH": "/usr/bin:/bin", "HOME": str(scratch), "TMPDIR": str(scratch)})
    try:
        deadline = time.monotonic() + 120
        while not result_path.is_file() and session.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert result_path.is_file(), "the session never reported its preview worker"
        worker_pid = json.loads(result_path.read_text())["worker_pid"]
        assert not process_ended(worker_pid)
    finally:
        session.kill()  # SIGKILL: no atexit, no cleanup in Blender
        session.wait()
    deadline = time.monotonic() + 20
    while not process_ended(worker_pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert process_ended(worker_pid), "the preview worker outlived the Blender that started it"
