"""Entry point of the add-on's background Blender processes, which keep Cycles off the UI's main thread.

`blender --background --factory-startup --python worker.py -- JOB ARGS...`, or under the bpy module
`python worker.py JOB ARGS...`. JOB names a module of this package with a `main(*ARGS) -> int`:
- `dataset`: one Generate Dataset job (dataset_worker.py);
- `preview`: a persistent server of Neural Render Preview G-buffers (preview_worker.py).
No add-on is enabled in the worker, so the package is imported by path.
"""

import importlib
import os
import subprocess
import sys
from collections import deque
from pathlib import Path

JOBS = {"dataset": "dataset_worker", "preview": "preview_worker"}
NO_CONSOLE = getattr(subprocess, "CREATE_NO_WINDOW", 0)  # Popen flag: Windows opens no console for these


def log_tail(path: str | os.PathLike, lines: int) -> list[str]:
    """The last lines of a process's log file (the add-on's workers and service); none if unreadable."""
    try:
        with open(path, errors="replace") as log:
            return [line.rstrip("\n") for line in deque(log, lines)]
    except OSError:
        return []


def command(job: str, *args: str) -> list[str]:
    """The command line that runs `job` in a new background Blender (or bpy-module Python)."""
    import bpy

    if bpy.app.binary_path:
        return [bpy.app.binary_path, "--background", "--factory-startup", "--python", __file__, "--", job, *args]
    return [sys.executable, __file__, job, *args]  # the bpy module: this Python can import bpy


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in JOBS:
        print(f"usage: worker.py {{{'|'.join(JOBS)}}} ARGS...", file=sys.stderr)
        return 2
    package_dir = Path(__file__).resolve().parent
    if str(package_dir.parent) not in sys.path:
        sys.path.insert(0, str(package_dir.parent))
    module = importlib.import_module(f"{package_dir.name}.{JOBS[argv[0]]}")
    return module.main(*argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else sys.argv[1:]))
