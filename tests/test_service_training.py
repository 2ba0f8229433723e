"""Training jobs over real HTTP: progress while running, the report when done, cancel, one job at a time."""

from __future__ import annotations

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
