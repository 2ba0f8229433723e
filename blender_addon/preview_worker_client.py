"""The add-on's side of the preview's Blender worker (preview_worker.py): start it, ask, stop it.

No bpy after start-up, so a preview thread can wait on Cycles while Blender's UI keeps running.
One worker serves the whole session: it starts with the first frame (about as long as Blender
takes to start), stays loaded, and is started again if it died, after a cancel, after a broken
exchange, and every MAX_SNAPSHOT_LOADS new snapshots (each load leaves some memory behind in
Blender). Its stdin is a pipe from this Blender, so it exits with it, even after a kill -9.
"""

from __future__ import annotations

import itertools
import json
import os
import queue
import subprocess
import tempfile
import threading

from .processes import ChildProcess, SessionSingleton

MAX_SNAPSHOT_LOADS = 200  # about 100 KiB each


class WorkerError(Exception):
    """The worker refused a request, died, or did not answer in time; the message is for the user."""


class PreviewWorker:
    def __init__(self, command: list[str]):
        self.child = ChildProcess(command, os.path.join(tempfile.mkdtemp(prefix="neural-face-worker-"),
                                                        "preview_worker.log"), stdout_pipe=True,
                                  stdin=subprocess.PIPE, encoding="utf-8", errors="replace", bufsize=1)
        self.process, self.log_path = self.child.process, self.child.log_path
        self._replies: queue.Queue = queue.Queue()
        threading.Thread(target=self._read_replies, name="neural-preview-worker", daemon=True).start()
        self.pending: int | None = None  # id of the request it is working on
        self.snapshot: str | None = None
        self.snapshot_loads = 0

    def _read_replies(self) -> None:
        for line in self.process.stdout:
            self._replies.put(line)
        self._replies.put(None)  # end of output: the worker has exited

    def alive(self) -> bool:
        return self.child.alive()

    def render(self, request_id: int, request: dict, timeout_s: float) -> dict:
        """Send one request and wait for its reply; returns the reply's `seconds`.

        Any failure to exchange cleanly kills the worker, so a late reply can never answer the next request.
        """
        if request["scene"] != self.snapshot:
            self.snapshot, self.snapshot_loads = request["scene"], self.snapshot_loads + 1
        self.pending = request_id
        try:
            self.process.stdin.write(json.dumps({"id": request_id, **request}) + "\n")
            self.process.stdin.flush()
            while True:
                line = self._replies.get(timeout=timeout_s)
                if line is None:
                    raise WorkerError(self._died())
                reply = json.loads(line)
                if reply.get("id") == request_id:
                    break
        except (BrokenPipeError, OSError):
            raise WorkerError(self._died()) from None
        except queue.Empty:
            self.kill()
            raise WorkerError(f"the preview's Blender worker did not answer within {timeout_s:.0f} s and was "
                              f"stopped; the next frame starts a new one") from None
        except BaseException:
            self.kill()
            raise
        finally:
            self.pending = None
        if not reply["ok"]:
            raise WorkerError(reply["error"])
        return reply["seconds"]

    def _died(self) -> str:
        code = self.process.wait()
        return f"the preview's Blender worker stopped (exit code {code}): {self.log_tail() or 'no output'}"

    def log_tail(self, lines: int = 5) -> str:
        return " | ".join(line.strip() for line in self.child.log_tail(lines) if line.strip())

    def stop(self) -> None:
        """Close its stdin (an idle worker exits at once); kill it if it is busy: it holds nothing to save."""
        self.child.stop(timeout_s=1, ask=self.process.stdin.close)
        try:
            os.remove(self.log_path)
            os.rmdir(os.path.dirname(self.log_path))
        except OSError:
            pass

    def kill(self) -> None:
        self.child.kill()


_worker = SessionSingleton(PreviewWorker.stop)
_request_ids = itertools.count(1)


def new_request_id() -> int:
    return next(_request_ids)


def render(command: list[str], request_id: int, request: dict, timeout_s: float) -> dict:
    """Render `request` in the session's worker (started with `command` when needed); seconds per stage."""
    def usable(worker: PreviewWorker) -> bool:
        fresh_snapshot = request["scene"] != worker.snapshot
        return worker.alive() and not (fresh_snapshot and worker.snapshot_loads >= MAX_SNAPSHOT_LOADS)

    worker = _worker.get(usable, lambda previous: PreviewWorker(command))
    return worker.render(request_id, request, timeout_s)


def cancel(request_id: int) -> bool:
    """Stop the worker if it is busy with `request_id`; True if it was stopped. An idle worker is kept."""
    with _worker.lock:
        if _worker.current is None or _worker.current.pending != request_id:
            return False
        _worker.current.kill()  # the waiting render() sees the end of output and raises WorkerError
        return True


def stop() -> None:
    _worker.stop()
