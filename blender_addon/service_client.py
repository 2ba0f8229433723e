"""Talking to the backend service: a stdlib HTTP client, and the local service process the add-on owns.

No bpy here, so it can be used from worker threads. The add-on either connects to a running service
(URL + token from the preferences, e.g. through an SSH tunnel to a GPU box) or starts
`python -m backend serve` itself with the backend's interpreter, and stops it when Blender quits.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from .atomic import atomic_open
from .processes import ChildProcess, SessionSingleton

STARTUP_TIMEOUT_S = 90.0  # first start imports torch; a cold disk cache can take a while
STOP_TIMEOUT_S = 15.0  # the service's own shutdown (a training job's last step, open requests) takes up to 10 s


class ServiceError(Exception):
    """The service answered with an error; the message is the service's own explanation."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class ServiceUnreachable(ServiceError):
    """No service answers at the URL, or the local one could not be started."""


class ServiceClient:
    def __init__(self, url: str, token: str, timeout_s: float = 120.0):
        self.url = url.rstrip("/")
        self.token = token
        self.timeout_s = timeout_s
        self._health: dict | None = None

    def _call(self, method: str, path: str, body: bytes | None = None,
              content_type: str = "application/json") -> bytes:
        try:
            request = urllib.request.Request(self.url + path, data=body, method=method)
        except ValueError:
            raise ServiceUnreachable(f"invalid service URL {self.url!r}; expected http://host:port") from None
        request.add_header("Authorization", f"Bearer {self.token}")
        if body is not None:
            request.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                return response.read()
        except urllib.error.HTTPError as exc:
            raise ServiceError(_error_detail(exc), exc.code) from None
        except (urllib.error.URLError, ConnectionError, TimeoutError, socket.timeout) as exc:
            reason = getattr(exc, "reason", exc)
            raise ServiceUnreachable(f"backend service not reachable at {self.url}: {reason}") from None

    def _json(self, method: str, path: str, payload: dict | None = None) -> dict:
        body = None if payload is None else json.dumps(payload).encode()
        return json.loads(self._call(method, path, body))

    def health(self) -> dict:
        return self._json("GET", "/health")

    @property
    def shares_files(self) -> bool:
        """True when the service runs on this machine, so paths can be passed instead of file contents."""
        if self._health is None:
            self._health = self.health()
        return self._health["hostname"] == socket.gethostname()

    def start_training(self, dataset: str, bank: str | None = None, report_dir: str | None = None,
                       steps: int | None = None) -> dict:
        payload = {"dataset": dataset, "bank": bank, "report_dir": report_dir, "steps": steps}
        return self._json("POST", "/train", {k: v for k, v in payload.items() if v is not None})

    def training_status(self, job_id: str) -> dict:
        return self._json("GET", f"/train/{urllib.parse.quote(job_id)}")

    def cancel_training(self, job_id: str) -> dict:
        return self._json("POST", f"/train/{urllib.parse.quote(job_id)}/cancel")

    def start_dataset(self, scene: str, out: str, settings: dict, cluster: str) -> dict:
        """Generate Dataset on the service's Ray cluster, which must be `cluster` (docs/cluster.md)."""
        return self._json("POST", "/dataset", {"scene": scene, "out": out, "settings": settings, "cluster": cluster})

    def dataset_status(self, job_id: str) -> dict:
        return self._json("GET", f"/dataset/{urllib.parse.quote(job_id)}")

    def cancel_dataset(self, job_id: str) -> dict:
        return self._json("POST", f"/dataset/{urllib.parse.quote(job_id)}/cancel")

    def render(self, bank: str, gbuffer: str, renderer: str = "auto", out: str | None = None) -> dict:
        payload = {"bank": bank, "gbuffer": gbuffer, "renderer": renderer}
        if out is not None:
            payload["out"] = out
        return self._json("POST", "/render", payload)

    def preview(self, request: dict) -> dict:
        """Trace and shade one preview frame (the service's /preview: bank, mesh, albedo, camera, lights, ...)."""
        return self._json("POST", "/preview", request)

    def upload(self, path: str, name: str) -> str:
        """Copy a local file into the service's files folder; returns its path there."""
        with open(path, "rb") as f:
            data = f.read()
        answer = json.loads(self._call("PUT", f"/files/{urllib.parse.quote(name)}", data, "application/octet-stream"))
        return answer["path"]

    def download(self, name: str, dest: str) -> None:
        data = self._call("GET", f"/files/{urllib.parse.quote(name)}")
        with atomic_open(dest, "wb") as stream:
            stream.write(data)


def _error_detail(exc: urllib.error.HTTPError) -> str:
    try:
        detail = json.loads(exc.read()).get("detail")
    except (ValueError, AttributeError, OSError):
        detail = None
    return f"service error {exc.code}: {detail or exc.reason}"


def default_python() -> str:
    """$NEURAL_FACE_PYTHON, else the project's .venv next to this add-on's source folder, else ''."""
    if os.environ.get("NEURAL_FACE_PYTHON"):
        return os.environ["NEURAL_FACE_PYTHON"]
    for folder in Path(__file__).resolve().parents:
        for candidate in (folder / ".venv" / "bin" / "python", folder / ".venv" / "Scripts" / "python.exe"):
            if candidate.is_file():
                return str(candidate)
    return ""


class LocalService:
    """`python -m backend serve` on a free loopback port, allowed to touch `folders` and its temp folder;
    with `cluster` ({"address", "token_file"}), it renders Generate Dataset requests on that Ray cluster."""

    def __init__(self, python: str, folders: list[str], cluster: dict | None = None):
        if not python or not Path(python).is_file():
            raise ServiceUnreachable(
                f"backend Python interpreter not found: {python!r}; set it in the add-on preferences "
                f"(the project's .venv/bin/python) or give the URL of a running service")
        self.folders = sorted({str(Path(f).resolve()) for f in folders})
        self.cluster = cluster
        self.temp = tempfile.mkdtemp(prefix="neural-face-addon-")
        token = secrets.token_urlsafe(32)
        ready = Path(self.temp) / "ready.json"
        self.log_path = Path(self.temp) / "service.log"
        command = [python, "-m", "backend", "serve", "--port", "0", "--ready-file", str(ready),
                   "--token-file", str(Path(self.temp) / "token"), "--work-dir", str(Path(self.temp) / "work"),
                   "--parent-pid", str(os.getpid())]  # the service stops by itself if Blender is killed
        for folder in self.folders:
            command += ["--allow", folder]
        if cluster:
            command += ["--cluster", cluster["address"]]
            command += ["--cluster-token-file", cluster["token_file"]] if cluster.get("token_file") else []
        # The token travels in the environment, not on the command line other users can read.
        self.child = ChildProcess(command, self.log_path, env={**os.environ, "NEURAL_FACE_TOKEN": token})
        self.process = self.child.process
        try:
            self.client = ServiceClient(self._wait_ready(ready), token)
            self._wait_healthy()
        except ServiceUnreachable:
            self.stop()
            raise

    def _wait_ready(self, ready: Path) -> str:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServiceUnreachable(f"backend service exited at start:\n{self.log_tail()}")
            if ready.is_file():
                return json.loads(ready.read_text())["url"]
            time.sleep(0.1)
        raise ServiceUnreachable(f"backend service did not start within {STARTUP_TIMEOUT_S:.0f} s:\n{self.log_tail()}")

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            try:
                self.client.health()
                return
            except ServiceUnreachable:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise ServiceUnreachable(f"backend service does not answer:\n{self.log_tail()}") from None
                time.sleep(0.1)

    def log_tail(self, lines: int = 15) -> str:
        return "\n".join(self.child.log_tail(lines))

    def covers(self, folders: list[str]) -> bool:
        return all(any(Path(f).resolve().is_relative_to(root) for root in self.folders) for f in folders)

    def alive(self) -> bool:
        return self.child.alive()

    def stop(self) -> None:
        self.child.stop(STOP_TIMEOUT_S)
        shutil.rmtree(self.temp, ignore_errors=True)


_local = SessionSingleton(LocalService.stop)


def local_service(python: str, folders: list[str], cluster: dict | None = None) -> ServiceClient:
    """The add-on's own service, started (or restarted with more allowed folders, or for another
    cluster when one is asked for) when needed."""
    def usable(service: LocalService) -> bool:
        return service.alive() and service.covers(folders) and cluster in (None, service.cluster)

    def start(previous: LocalService | None) -> LocalService:  # it keeps what the one before was allowed
        if previous is None:
            return LocalService(python, list(folders), cluster)
        return LocalService(python, previous.folders + list(folders), cluster or previous.cluster)

    return _local.get(usable, start).client


def connect(connection: dict, folders: list[str], cluster: dict | None = None) -> ServiceClient:
    """A client for `connection` (from preferences.connection): the given URL, or the add-on's own service
    (started with `cluster`, from preferences.cluster, when given)."""
    if "url" in connection:
        return ServiceClient(connection["url"], connection["token"])
    return local_service(connection["python"], folders, cluster)


def stop_local_service() -> None:
    _local.stop()
