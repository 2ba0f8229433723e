"""The service over real HTTP: token on every request, size limit, folder confinement, 4xx for bad input."""

from __future__ import annotations

import json

import os
from pathlib import Path
import stat

import pytest

from service_process import start_service, stop_service


@pytest.fixture(scope="module")
def allowed(tmp_path_factory):
    return tmp_path_factory.mktemp("allowed")


@pytest.fixture(scope="module")
def service(tmp_path_factory, allowed):
    service = start_service([allowed], tmp_path_factory.mktemp("service"))
    yield service
    stop_service(service)


@pytest.mark.parametrize("path", ["/health", "/openapi.json", "/docs", "/train/abc", "/no-such-route"])
@pytest.mark.parametrize("token", ["", "wrong-token"])
def test_requests_without_the_right_token_are_refused(service, path, token):
    with service.client(token=token) as client:
        response = client.get(path)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert "token" in response.json()["detail"]


def test_post_without_token_is_refused_before_anything_runs(service, allowed):
    with service.client(token="") as client:
        response = client.post("/train", json={"dataset": str(allowed)})
    assert response.status_code == 401


def test_health_with_token(service):
    with service.client() as client:
        body = client.get("/health").json()
    assert body["status"] == "ok" and body["version"]


def test_token_file_is_private(service):
    path = service.work / "token"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert path.read_text().strip() == service.token


def test_oversized_request_is_refused(service, allowed):
    body = {"bank": str(allowed / "b.nfbank"), "gbuffer": str(allowed / ("x" * 200_000))}
    with service.client() as client:
        response = client.post("/render", json=body)
    assert response.status_code == 413


def test_oversized_chunked_request_is_refused(service, allowed):
    def chunks():
        for _ in range(100):
            yield b"x" * 4096

    with service.client() as client:
        response = client.post("/render", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413


@pytest.mark.parametrize("field", ["bank", "gbuffer", "out"])
def test_paths_outside_the_allowed_folders_are_refused(service, allowed, field):
    (allowed / "b.nfbank").write_bytes(b"")
    (allowed / "g.gbuffer.exr").write_bytes(b"")
    body = {"bank": str(allowed / "b.nfbank"), "gbuffer": str(allowed / "g.gbuffer.exr"),
            "out": str(allowed / "frame.npy"), field: "/etc/passwd"}
    with service.client() as client:
        response = client.post("/render", json=body)
    assert response.status_code == 403
    assert "outside" in response.json()["detail"]


def preview_body(allowed, **changes) -> dict:
    camera = {"matrix_world": [[1, 0, 0, 0], [0, 0, -1, -4], [0, 1, 0, 0], [0, 0, 0, 1]],
              "K": [[64, 0, 32], [0, 64, 32], [0, 0, 1]], "position": [0, -4, 0]}
    light = {"position": [2, -3, 2], "color": [1, 1, 1], "power": 400.0, "radius": 0.1}
    return {"bank": str(allowed / "b.nfbank"), "mesh": str(allowed / "mesh.npz"), "albedo": str(allowed / "albedo.npz"),
            "camera": camera, "lights": [light], "resolution": [64, 64], "out": str(allowed / "frame.npy"), **changes}


@pytest.mark.parametrize("field", ["bank", "mesh", "albedo", "out"])
def test_preview_paths_outside_the_allowed_folders_are_refused(service, allowed, field):
    for name in ("b.nfbank", "mesh.npz", "albedo.npz"):
        (allowed / name).write_bytes(b"")
    with service.client() as client:
        response = client.post("/preview", json=preview_body(allowed, **{field: "/etc/passwd"}))
    assert response.status_code == 403
    assert "outside" in response.json()["detail"]


@pytest.mark.parametrize("change, words", [
    ({"resolution": [0, 64]}, "width and height must be 1..8192"),
    ({"shadow_rays": 10}, "must be a square number"),
    ({"lights": []}, "lights"),
])
def test_bad_preview_requests_are_refused_with_what_is_wrong(service, allowed, change, words):
    for name in ("b.nfbank", "mesh.npz", "albedo.npz"):
        (allowed / name).write_bytes(b"")
    with service.client() as client:
        response = client.post("/preview", json=preview_body(allowed, **change))
    assert response.status_code == 422
    assert words in json.dumps(response.json()["detail"])


def test_a_corrupt_mesh_file_is_a_clear_422(service, allowed):
    for name in ("b.nfbank", "albedo.npz"):
        (allowed / name).write_bytes(b"")
    (allowed / "mesh.npz").write_bytes(b"not a zip")
    with service.client() as client:
        response = client.post("/preview", json=preview_body(allowed))
    assert response.status_code == 422
    assert "mesh.npz" in response.json()["detail"] and "unreadable" in response.json()["detail"]


def test_dot_dot_and_symlinks_do_not_escape(service, allowed):
    link = allowed / "escape"
    if not link.exists():
        link.symlink_to("/etc")
    with service.client() as client:
        for path in [f"{allowed}/../../etc/passwd", f"{link}/passwd"]:
            response = client.post("/render", json={"bank": path, "gbuffer": path})
            assert response.status_code == 403, path
        response = client.post("/train", json={"dataset": str(link)})
        assert response.status_code == 403


@pytest.mark.parametrize("body", [
    b"{not json",
    b"[]",
    b'{"bank": 3, "gbuffer": []}',
    b'{"gbuffer": "/x"}',
    b'{"bank": "", "gbuffer": ""}',
    b'{"bank": "relative/bank.nfbank", "gbuffer": "g.exr"}',
    b'{"bank": "/a", "gbuffer": "/b", "renderer": "opengl"}',
    b'{"bank": "/a", "gbuffer": "/b", "colour": "red"}',
])
def test_malformed_render_requests_get_a_4xx_with_a_message(service, body):
    with service.client() as client:
        response = client.post("/render", content=body, headers={"content-type": "application/json"})
    assert 400 <= response.status_code < 500, response.text
    assert isinstance(response.json()["detail"], str) and response.json()["detail"]


def test_missing_files_are_404_with_the_path(service, allowed):
    with service.client() as client:
        response = client.post("/render", json={"bank": str(allowed / "never-trained.nfbank"),
                                                "gbuffer": str(allowed / "g.exr")})
        assert response.status_code == 404
        assert "never-trained.nfbank" in response.json()["detail"]
        assert "train" in response.json()["detail"]
        assert client.get("/train/nope").status_code == 404
        assert client.post("/train/nope/cancel").status_code == 404
        assert client.get("/files/nothing.npy").status_code == 404


def test_corrupt_inputs_are_4xx_not_500(service, allowed):
    (allowed / "corrupt.nfbank").write_bytes(b"\x00" * 64)
    (allowed / "corrupt.gbuffer.exr").write_bytes(b"not an exr")
    (allowed / "corrupt.json").write_text("{}")
    with service.client() as client:
        response = client.post("/render", json={"bank": str(allowed / "corrupt.nfbank"),
                                                "gbuffer": str(allowed / "corrupt.gbuffer.exr")})
        assert response.status_code == 422, response.text
        response = client.post("/train", json={"dataset": str(allowed), "steps": 0})
        assert response.status_code == 422


def test_upload_names_cannot_leave_the_files_folder(service):
    with service.client() as client:
        for name in ["..%2Fescape", ".hidden", "a%2Fb", "x" * 200]:
            assert 400 <= client.put(f"/files/{name}", content=b"data").status_code < 500, name


def test_upload_and_download_round_trip(service):
    payload = os.urandom(100_000)
    with service.client() as client:
        stored = client.put("/files/sample.bin", content=payload, headers={"content-type": "application/octet-stream"})
        assert stored.status_code == 200, stored.text
        assert stored.json()["bytes"] == len(payload)
        assert client.get("/files/sample.bin").content == payload


def test_download_does_not_follow_a_symlink_out_of_the_files_folder(service, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("not for download")
    with service.client() as client:
        files_folder = Path(client.put("/files/probe.bin", content=b"x").json()["path"]).parent
        (files_folder / "escape.txt").symlink_to(secret)
        assert client.get("/files/escape.txt").status_code == 404
