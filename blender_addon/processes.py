"""The add-on's child processes, handled one way: the service, the preview worker, the dataset worker.

- `blender_command`: the command line of a new background Blender running a job of worker.py;
- `ChildProcess`: a child whose output goes to a log file (a file, not a pipe nobody reads, which
  would stall it once full), with its log's tail, and a stop that asks, waits, then kills;
- `SessionSingleton`: at most one child of a kind for the Blender session, replaced when it is no
  longer usable and stopped when Blender quits (atexit).
Standard library only (bpy only inside blender_command), so threads can use it.
"""

from __future__ import annotations

import atexit
import os
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Callable
from pathlib import Path

NO_CONSOLE = getattr(subprocess, "CREATE_NO_WINDOW", 0)  # Popen flag: Windows opens no console for these
WORKER_SCRIPT = str(Path(__file__).resolve().with_name("worker.py"))


def blender_command(job: str, *args: str) -> list[str]:
    """The command line that runs `job` of worker.py in a new background Blender (or bpy-module Python)."""
    import bpy

    if bpy.app.binary_path:
        return [bpy.app.binary_path, "--background", "--factory-startup", "--python", WORKER_SCRIPT, "--",
                job, *args]
    return [sys.executable, WORKER_SCRIPT, job, *args]  # the bpy module: this Python can import bpy


def log_tail(path: str | os.PathLike, lines: int) -> list[str]:
    """The last lines of a log file; none if it is unreadable."""
    try:
        with open(path, errors="replace") as log:
            return [line.rstrip("\n") for line in deque(log, lines)]
    except OSError:
        return []


class ChildProcess:
    """`command` with stderr (and stdout, unless `stdout_pipe`) written to `log_path`."""

    def __init__(self, command: list[str], log_path: str | os.PathLike, stdout_pipe: bool = False, **popen):
        self.log_path = str(log_path)
        with open(self.log_path, "w") as log:
            self.process = subprocess.Popen(command, stdout=subprocess.PIPE if stdout_pipe else log,
                                            stderr=log if stdout_pipe else subprocess.STDOUT,
                                            creationflags=NO_CONSOLE, **popen)

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int) -> list[str]:
        return log_tail(self.log_path, lines)

    def stop(self, timeout_s: float, ask: Callable[[], None] | None = None) -> None:
        """Ask it to end (`ask`, default SIGTERM), wait up to `timeout_s`, then kill it."""
        if self.process.poll() is None:
            try:
                (ask or self.process.terminate)()
                self.process.wait(timeout=timeout_s)
            except (OSError, subprocess.TimeoutExpired):
                self.kill()

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()


class SessionSingleton:
    """The one child object of a kind (anything with a stop), kept for the session and stopped at exit."""

    def __init__(self, stop: Callable[[object], None]):
        self.current = None
        self.lock = threading.Lock()  # held by `get`, `stop`, and callers that look at `current`
        self._stop = stop
        atexit.register(self.stop)

    def get(self, usable: Callable[[object], bool], start: Callable[[object], object]):
        """The current one if `usable(current)`, else a new `start(previous)` (previous is stopped, or None)."""
        with self.lock:
            if self.current is None or not usable(self.current):
                previous, self.current = self.current, None
                if previous is not None:
                    self._stop(previous)
                self.current = start(previous)
            return self.current

    def stop(self) -> None:
        with self.lock:
            if self.current is not None:
                self._stop(self.current)
                self.current = None
