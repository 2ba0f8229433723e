"""Generate Dataset jobs of the service: `python -m backend generate --cluster` in a child process.

The service renders nothing itself (bpy stays out of its process): a job runs the CLI on the
service's own cluster (`serve --cluster`; a request cannot send the service to another address),
reads progress from the dataset's manifest (the committed samples) and the live workers from the
CLI's progress bar, and cancels with SIGINT, which stops handing out work and keeps the finished
samples (docs/cluster.md).
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from backend.atomic import write_text_atomic

POLL_S = 0.5
CANCEL_WAIT_S = 30.0  # SIGINT ends the driver at once; its workers go with it
LIVE_WORKERS = re.compile(rb"workers=(\d+)")


@dataclass
class GenerateJob:
    KIND = "dataset"
    scene: Path
    out: Path
    settings: dict
    cluster: str
    token_file: Path | None
    work_folder: Path
    overwrite: bool = False
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    state: str = "running"
    done: int = 0
    workers: int = 0
    error: str | None = None
    stop: threading.Event = field(default_factory=threading.Event)

    @property
    def log_path(self) -> Path:
        return self.work_folder / f"dataset-{self.id}.log"

    def status(self) -> dict:
        return {"id": self.id, "state": self.state, "dataset": str(self.out), "done": self.done,
                "total": int(self.settings.get("samples", 0)), "workers": self.workers, "error": self.error}

    def command(self, settings_file: Path) -> list[str]:
        command = [sys.executable, "-m", "backend", "generate", "--scene", str(self.scene), "--out", str(self.out),
                   "--settings-file", str(settings_file), "--cluster", self.cluster]
        if self.token_file:
            command += ["--cluster-token-file", str(self.token_file)]
        return command + (["--overwrite"] if self.overwrite else [])

    def run(self) -> None:
        settings_file = self.work_folder / f"dataset-{self.id}.json"
        write_text_atomic(settings_file, json.dumps(self.settings))
        with open(self.log_path, "wb") as log:
            process = subprocess.Popen(self.command(settings_file), stdin=subprocess.DEVNULL,
                                       stdout=subprocess.DEVNULL, stderr=log, preexec_fn=_interrupt_with_parent)
        while process.poll() is None:
            if self.stop.is_set():
                _interrupt(process)
            self._refresh()
            time.sleep(POLL_S)
        self._refresh()
        if process.returncode == 0:
            self.state = "done"
        elif self.stop.is_set():
            self.state, self.error = "cancelled", f"{self.done} samples kept in {self.out}; run again to resume"
        else:
            self.state, self.error = "failed", self._last_error(process.returncode)

    def _refresh(self) -> None:
        try:
            self.done = len(json.loads((self.out / "manifest.json").read_text())["samples"])
        except (OSError, ValueError, KeyError, TypeError):
            pass  # not written yet, or not ours
        counts = LIVE_WORKERS.findall(self._log_tail())
        if counts:
            self.workers = int(counts[-1])

    def _log_tail(self, size: int = 8192) -> bytes:
        try:
            with open(self.log_path, "rb") as log:
                log.seek(max(log.seek(0, 2) - size, 0))
                return log.read()
        except OSError:
            return b""

    def _last_error(self, code: int) -> str:
        lines = [line.strip() for line in self._log_tail().decode(errors="replace").splitlines() if line.strip()]
        errors = [line for line in lines if line.startswith("error: ")]
        return errors[-1][len("error: "):] if errors else (lines[-1] if lines else f"generate exited with code {code}")


def _interrupt_with_parent() -> None:
    """In the child, before exec: a service that dies (even by kill -9) interrupts its driver (Linux)."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGINT)  # PR_SET_PDEATHSIG


def _interrupt(process: subprocess.Popen) -> None:
    """Ctrl-C for the driver: it stops handing out work; killed if it does not end in time."""
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=CANCEL_WAIT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
