"""A real `python -m backend serve` process for tests: free port, fresh token, chosen allowed folders."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Service:
    url: str
    token: str
    work: Path
    process: subprocess.Popen

    def client(self, token: str | None = None, **kwargs) -> httpx.Client:
        token = self.token if token is None else token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=120, **kwargs)


def start_service(allow: list[Path], work: Path, extra_args: tuple[str, ...] = (),
                  parent_pid: int | None = None) -> Service:
    """Start the service and wait for its first answer; with `parent_pid`, it follows that process."""
    work.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(24)
    ready = work / "ready.json"
    command = [sys.executable, "-m", "backend", "serve", "--port", "0", "--ready-file", str(ready),
               "--token-file", str(work / "token"), "--work-dir", str(work / "service"), *extra_args]
    for folder in allow:
        command += ["--allow", str(folder)]
    if parent_pid is not None:
        command += ["--parent-pid", str(parent_pid)]
    log = open(work / "service.log", "w")
    process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                               env={**os.environ, "NEURAL_FACE_TOKEN": token})
    deadline = time.monotonic() + 60
    while not ready.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError("service did not start:\n" + (work / "service.log").read_text())
        time.sleep(0.05)
    service = Service(json.loads(ready.read_text())["url"], token, work, process)
    with service.client() as client:
        while True:  # the socket listens before the app is up; wait for the first answer
            try:
                client.get("/health").raise_for_status()
                return service
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)


def stop_service(service: Service) -> None:
    service.process.terminate()
    try:
        service.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        service.process.kill()
        service.process.wait()
