"""The service's Generate Dataset jobs on its Ray cluster: progress, cancel, resume, refusals.

A real service (`serve --cluster`) drives a real `generate --cluster` on the shared test head.
"""

from __future__ import annotations

import shutil
import time

import pytest

from backend.dataset import open_dataset
from service_process import start_service, stop_service

pytestmark = pytest.mark.timeout(240)
SETTINGS = {"samples": 4, "resolution": [48, 48], "gt_samples": 256, "gbuffer_shadow_rays": 4, "seed": 5,
            "lights": [1, 2]}


@pytest.fixture(scope="module")
def cluster_service(ray_head, suzanne_blend, tmp_path_factory):
    allowed = tmp_path_factory.mktemp("dataset_service_allowed")
    shutil.copy(suzanne_blend, allowed / "suzanne.blend")
    service = start_service([allowed], tmp_path_factory.mktemp("dataset_service"),
                            ("--cluster", ray_head.address, "--cluster-token-file", ray_head.token_file))
    yield service, allowed, ray_head.address
    stop_service(service)


def follow(client, status, until=lambda status: False, timeout=180) -> tuple[dict, int]:
    """Poll a dataset job until it ends (or `until`); returns its status and the most live workers seen."""
    deadline, workers = time.monotonic() + timeout, 0
    while status["state"] == "running" and not until(status):
        assert time.monotonic() < deadline, status
        time.sleep(0.2)
        status = client.get(f"/dataset/{status['id']}").raise_for_status().json()
        workers = max(workers, status["workers"])
    return status, workers


@pytest.mark.slow
def test_dataset_job_renders_on_the_cluster_with_progress(cluster_service):
    service, allowed, address = cluster_service
    out = allowed / "dataset"
    with service.client() as client:
        answer = client.post("/dataset", json={"scene": str(allowed / "suzanne.blend"), "out": str(out),
                                               "settings": SETTINGS, "cluster": address})
        assert answer.status_code == 202, answer.text
        status, workers = follow(client, answer.json())
    assert status["state"] == "done", status
    assert (status["done"], status["total"], workers) == (4, 4, 1)  # one worker per node, all its CPUs
    dataset = open_dataset(out)
    assert dataset.indices() == [0, 1, 2, 3]
    assert dataset.manifest["settings"]["resolution"] == [48, 48]


@pytest.mark.slow
def test_cancelled_dataset_job_keeps_its_samples_and_resumes(cluster_service):
    service, allowed, _ = cluster_service
    out = allowed / "cancelled"
    request = {"scene": str(allowed / "suzanne.blend"), "out": str(out), "settings": {**SETTINGS, "samples": 8}}
    with service.client() as client:
        status = client.post("/dataset", json=request).raise_for_status().json()
        status, _ = follow(client, status, until=lambda status: status["done"] >= 1)
        client.post(f"/dataset/{status['id']}/cancel").raise_for_status()
        status, _ = follow(client, status)
        assert status["state"] == "cancelled", status
        kept = open_dataset(out).indices()
        assert 1 <= len(kept) < 8 and f"{len(kept)} samples kept" in status["error"]
        status, _ = follow(client, client.post("/dataset", json=request).raise_for_status().json())
    assert status["state"] == "done" and open_dataset(out).indices() == list(range(8))


def test_dataset_requests_cannot_choose_another_cluster(cluster_service, tmp_path):
    service, allowed, _ = cluster_service
    request = {"scene": str(allowed / "suzanne.blend"), "out": str(allowed / "elsewhere"), "settings": SETTINGS}
    with service.client() as client:
        answer = client.post("/dataset", json={**request, "cluster": "10.1.2.3:6379"})
        assert answer.status_code == 409 and "renders on the cluster at 127.0.0.1:" in answer.json()["detail"]
        answer = client.post("/dataset", json={**request, "scene": str(tmp_path / "outside.blend")})
        assert answer.status_code == 403
    assert not (allowed / "elsewhere").exists()


def test_service_without_cluster_refuses_dataset_jobs(tmp_path):
    service = start_service([tmp_path], tmp_path / "service")
    try:
        with service.client() as client:
            answer = client.post("/dataset", json={"scene": str(tmp_path / "a.blend"), "out": str(tmp_path / "d"),
                                                   "settings": SETTINGS})
        assert answer.status_code == 409 and "serve --cluster" in answer.json()["detail"]
    finally:
        stop_service(service)
