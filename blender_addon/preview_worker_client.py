"""The add-on's side of the preview's Blender worker (preview_worker.py): start it, ask, stop it.

No bpy after start-up, so a preview thread can wait on Cycles while Blender's UI keeps running.
One worker serves the whole session: it starts with the first frame (about as long as Blender
takes to start), stays loaded, and is started again if it died. Its stdin is a pipe from this
Blender, so it exits with it, even after a kill -9.
"""

from __future__ import annotations

import atexit
import json
import os
import subprocess
import tempfile
import threading
from collections import deque

from .preview_worker import REPLY_PREFIX


class WorkerError(Exception):
    """The worker refused a request, or died; the message is for the user."""


class PreviewWorker:
    def __init__(self, command: list[str]):
        self.log_path = os.path.join(tempfile.mkdtemp(prefix="neural-face-worker-"), "preview_worker.log")
        with open(self.log_path, "w") as log:  # a file, not a pipe that nobody reads
            self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                                            text=True, bufsize=1)

    def alive(self) -> bool:
        return self.process.poll() is None

    def render(self, request: dict) -> dict:
        """Send one request and wait for its reply; returns the reply's `seconds`."""
        try:
            self.process.stdin.write(json.dumps(request) + "\n")
            self.process.stdin.flush()
        except (BrokenPipeError, OSError):
            raise WorkerError(self._died()) from None
        for line in self.process.stdout:
            if line.startswith(REPLY_PREFIX):
                reply = json.loads(line[len(REPLY_PREFIX):])
                if not reply["ok"]:
                    raise WorkerError(reply["error"])
                return reply["seconds"]
        raise WorkerError(self._died())

    def _died(self) -> str:
        code = self.process.wait()
        return f"the preview's Blender worker stopped (exit code {code}): {self.log_tail() or 'no output'}"

    def log_tail(self, lines: int = 5) -> str:
        try:
            with open(self.log_path, errors="replace") as log:
                return " | ".join(line.strip() for line in deque(log, lines) if line.strip())
        except OSError:
            return ""

    def stop(self) -> None:
        """Close its stdin (it exits after the current frame); kill it if it does not."""
        if self.process.poll() is None:
            try:
                self.process.stdin.close()
                self.process.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait()
        self.process.stdout.close()
        try:
            os.remove(self.log_path)
            os.rmdir(os.path.dirname(self.log_path))
        except OSError:
            pass

    def kill(self) -> None:
        """Cancel: the frame in flight ends with a WorkerError, the next frame starts a new worker."""
        self.process.kill()


_worker: PreviewWorker | None = None
_lock = threading.Lock()


def render(command: list[str], request: dict) -> dict:
    """Render `request` in the session's worker (started with `command` when needed)."""
    global _worker
    with _lock:
        if _worker is None or not _worker.alive():
            if _worker is not None:
                _worker.stop()
            _worker = PreviewWorker(command)
        worker = _worker
    return worker.render(request)


def cancel() -> None:
    """Stop the frame in flight, if any (Esc in the preview operator)."""
    with _lock:
        if _worker is not None and _worker.alive():
            _worker.kill()


def stop() -> None:
    global _worker
    with _lock:
        if _worker is not None:
            _worker.stop()
            _worker = None


atexit.register(stop)
