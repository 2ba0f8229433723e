"""Training jobs over real HTTP: progress while running, the report when done, cancel (while training
and while reporting), one job at a time."""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path

import pytest

from service_process import start_service, stop_service


@pytest.fixture(scope="module")
def service(tmp_path_factory, suzanne_dataset):
    out = tmp_path_factory.mktemp("trained")
    service = start_service([suzanne_dataset, out], tmp_path_factory.mktemp("train_service"))
    service.out = out
    yield service
    stop_service(service)


def wait_for(client, job_id: str, states: tuple[str, ...], timeout_s: float = 240) -> tuple[dict, list[dict]]:
    """Poll the job until its state is one of `states`; returns the last status and every progress seen."""
    seen = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = client.get(f"/train/{job_id}").json()
        if status["progress"]:
            seen.append(status["progress"])
        if status["state"] in states:
            return status, seen
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} still {status['state']} after {timeout_s} s")


@pytest.mark.slow
def test_training_job_reports_progress_and_ends_with_the_report(service, suzanne_dataset):
    bank = service.out / "job.nfbank"
    with service.client() as client:
        # Enough steps that the job is seen mid-training by a 50 ms poll, whatever the machine's speed.
        started = client.post("/train", json={"dataset": str(suzanne_dataset), "bank": str(bank), "steps": 200})
        assert started.status_code == 202, started.text
        status, seen = wait_for(client, started.json()["id"], ("done", "failed", "cancelled"))
    assert status["state"] == "done", status["error"]
    assert any(p["phase"] == "train" and 0 < p["step"] < 200 for p in seen)
    assert status["progress"]["step"] == 200 and status["progress"]["val_psnr"] > 0
    assert bank.is_file()
    assert Path(status["report"]).is_file() and Path(status["report"]).parent == service.out / "job_report"
    assert status["metrics"]["test_psnr"] > 0


@pytest.mark.slow
def test_cancel_stops_the_job_and_a_second_job_waits_its_turn(service, suzanne_dataset):
    bank = service.out / "cancelled.nfbank"
    with service.client() as client:
        job = client.post("/train", json={"dataset": str(suzanne_dataset), "bank": str(bank),
                                          "steps": 1_000_000}).json()
        second = client.post("/train", json={"dataset": str(suzanne_dataset), "bank": str(bank)})
        assert second.status_code == 409 and job["id"] in second.json()["detail"]
        wait_for(client, job["id"], ("running",))
        assert client.post(f"/train/{job['id']}/cancel").status_code == 200
        status, _ = wait_for(client, job["id"], ("done", "failed", "cancelled"), timeout_s=60)
    assert status["state"] == "cancelled"
    assert not bank.exists()


def held_reader(fifo: Path, job_status, deadline: float) -> int:
    """Wait until the service opens the FIFO `fifo` to read it (it then waits for data); returns our end of
    that FIFO, blocking, for writing."""
    while True:
        try:
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as exc:
            if exc.errno != errno.ENXIO:  # ENXIO: nobody reads it yet
                raise
            status = job_status()
            assert status["state"] in ("running", "reporting"), status["error"]
            assert time.monotonic() < deadline, f"nobody read {fifo}: {status}"
            time.sleep(0.01)
            continue
        os.set_blocking(fd, True)
        return fd


def replace_path(path: Path, make) -> None:
    """Put a new file (`make(tmp)`) at `path` atomically; a reader holding the old one keeps it."""
    tmp = path.with_name(path.name + ".new")
    make(tmp)
    os.replace(tmp, path)


@pytest.mark.slow
def test_cancel_while_reporting_keeps_the_bank_and_writes_no_report(service, suzanne_dataset):
    """The dataset's manifest.json is a FIFO the test feeds, so it sees every read of it. Training reads
    it while "running"; the report's first act is reading it again. The test holds that read back,
    cancels, then lets it through: the cancel lands mid-report on any machine, without a race."""
    data = service.out / "gated"
    data.mkdir()
    (data / "samples").symlink_to(suzanne_dataset / "samples")
    manifest = (suzanne_dataset / "manifest.json").read_bytes()
    gate = data / "manifest.json"
    os.mkfifo(gate)
    bank = data / "bank.nfbank"
    deadline = time.monotonic() + 240
    with service.client() as client:
        started = client.post("/train", json={"dataset": str(data), "bank": str(bank), "steps": 20})
        assert started.status_code == 202, started.text
        job_id = started.json()["id"]

        def job_status() -> dict:
            return client.get(f"/train/{job_id}").json()

        while True:
            fd = held_reader(gate, job_status, deadline)
            state = job_status()["state"]  # the job waits on this read: its state cannot change now
            if state == "reporting":
                cancel = client.post(f"/train/{job_id}/cancel")
                assert cancel.status_code == 200 and cancel.json()["state"] == "reporting"
                replace_path(gate, lambda tmp: tmp.write_bytes(manifest))  # later reads, if any, pass
            else:
                assert state == "running", job_status()["error"]
                replace_path(gate, os.mkfifo)  # the next read gets a FIFO of its own, so one copy each
            with os.fdopen(fd, "wb") as stream:
                stream.write(manifest)
            if state == "reporting":
                break
        status, _ = wait_for(client, job_id, ("done", "failed", "cancelled"), timeout_s=60)
    assert status["state"] == "cancelled", status["error"]
    assert status["error"] == f"cancelled while writing the report; the bank is kept at {bank}"
    assert bank.is_file() and status["report"] is None and status["metrics"] is None
    assert not [p.name for p in data.iterdir() if "report" in p.name]  # neither the report nor its temp folder


@pytest.fixture(scope="module")
def tiny_bank(tmp_path_factory, suzanne_dataset) -> Path:
    from backend.training import TrainConfig, train

    out = tmp_path_factory.mktemp("tiny_bank") / "bank.nfbank"
    train(TrainConfig(data=str(suzanne_dataset), out=str(out), steps=10, eval_every=10, batch=32,
                      widths=(16, 16), min_bucket_pixels=64))
    return out


@pytest.mark.slow
def test_a_report_cancelled_at_any_stage_leaves_the_previous_report_as_it_was(tiny_bank, suzanne_dataset,
                                                                              tmp_path):
    from backend.report import ReportCancelled, write_report

    out = tmp_path / "report"
    asked = []

    def never() -> bool:
        asked.append(1)
        return False

    write_report(tiny_bank, suzanne_dataset, out, should_stop=never)
    previous = {p.name: p.read_bytes() for p in out.iterdir()}
    assert "index.html" in previous and len(asked) > 5  # asked between views and stages
    for stop_at in range(1, len(asked) + 1):  # every point where a cancel is seen, the last one included
        calls = []

        def stop_on_call(n=stop_at, calls=calls) -> bool:
            calls.append(1)
            return len(calls) >= n

        with pytest.raises(ReportCancelled):
            write_report(tiny_bank, suzanne_dataset, out, should_stop=stop_on_call)
        assert len(calls) == stop_at
        assert {p.name: p.read_bytes() for p in out.iterdir()} == previous
        assert [p.name for p in tmp_path.iterdir()] == ["report"]  # no half-built folder beside it
