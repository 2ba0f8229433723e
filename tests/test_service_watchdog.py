"""`serve --parent-pid`: the service follows the process that started it, with real processes and SIGKILL."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, process_ended, run_backend
from service_process import start_service, stop_service

EXIT_WITHIN_S = 10  # generous: the service polls every 0.5 s and waits for a training step to stop

# A Blender stand-in: starts the add-on's own service the way the add-on does, then idles until killed.
BLENDER_STAND_IN = """
import json, sys, time
sys.path.insert(0, sys.argv[1])
from blender_addon import service_client  # no bpy needed: it is what the add-on's threads use
service = service_client.LocalService(sys.executable, [sys.argv[2]])
print(json.dumps({"pid": service.process.pid, "log": str(service.log_path)}), flush=True)
time.sleep(300)
"""


def kill_and_reap(process: subprocess.Popen) -> None:
    """SIGKILL, then reap it as a shell would: an unreaped zombie still answers os.kill(pid, 0)."""
    process.kill()
    process.wait(timeout=10)


def free_pid() -> int:
    """The pid of a process that has exited and been reaped (Linux hands pids out in order)."""
    process = subprocess.Popen(["true"])
    process.wait()
    with pytest.raises(ProcessLookupError):
        os.kill(process.pid, 0)
    return process.pid


@pytest.mark.slow
def test_service_stops_and_cancels_training_when_its_parent_is_killed(tmp_path, suzanne_dataset):
    parent = subprocess.Popen(["sleep", "300"])
    service = start_service([suzanne_dataset, tmp_path], tmp_path / "service", parent_pid=parent.pid)
    try:
        bank = tmp_path / "bank.nfbank"
        with service.client() as client:
            job = client.post("/train", json={"dataset": str(suzanne_dataset), "bank": str(bank),
                                              "steps": 1_000_000}).json()
            deadline = time.monotonic() + 120
            while True:
                status = client.get(f"/train/{job['id']}").json()
                assert status["state"] == "running", status["error"]
                if (status["progress"] or {}).get("phase") == "train":
                    break
                assert time.monotonic() < deadline, "training did not start"
                time.sleep(0.05)
            assert service.process.poll() is None  # the parent lives: the service keeps running
        killed = time.monotonic()
        kill_and_reap(parent)
        code = service.process.wait(timeout=EXIT_WITHIN_S)
        print(f"service exited {time.monotonic() - killed:.2f} s after its parent was killed")
    finally:
        kill_and_reap(parent)
        stop_service(service)
    log = (service.work / "service.log").read_text()
    assert code == 0, log
    assert f"parent process {parent.pid} has gone; stopping the service" in log
    assert f"training job {job['id']} stopped with the service: cancelled" in log
    assert not bank.exists()


@pytest.mark.parametrize("pid", ["free", "0"])
def test_a_parent_that_does_not_run_is_refused(tmp_path, pid):
    pid = str(free_pid()) if pid == "free" else pid
    ready = tmp_path / "ready.json"
    result = run_backend("serve", "--port", "0", "--parent-pid", pid, "--ready-file", ready,
                         "--token-file", tmp_path / "token", "--allow", tmp_path, timeout=60)
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"error: --parent-pid {pid}: no such process" in result.stderr
    assert not ready.exists() and not (tmp_path / "token").exists()


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc to see a process that is not our child")
def test_the_addons_service_stops_when_blender_is_killed(tmp_path):
    blender = subprocess.Popen([sys.executable, "-c", BLENDER_STAND_IN, str(ROOT), str(tmp_path)],
                               stdout=subprocess.PIPE, text=True)
    service_pid = log = None
    try:
        started = json.loads(blender.stdout.readline())
        service_pid, log = started["pid"], Path(started["log"])
        command = Path(f"/proc/{service_pid}/cmdline").read_text().split("\0")
        assert command[command.index("--parent-pid") + 1] == str(blender.pid)
        kill_and_reap(blender)
        deadline = time.monotonic() + EXIT_WITHIN_S
        while not process_ended(service_pid):
            assert time.monotonic() < deadline, "the service outlived the killed Blender:\n" + log.read_text()
            time.sleep(0.05)
        assert f"parent process {blender.pid} has gone; stopping the service" in log.read_text()
    finally:
        kill_and_reap(blender)
        if service_pid is not None and not process_ended(service_pid):
            os.kill(service_pid, signal.SIGKILL)
        if log is not None:
            shutil.rmtree(log.parent, ignore_errors=True)  # the add-on's temp folder, left by the killed Blender
