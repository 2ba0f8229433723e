"""Entry script of the add-on's background Blender processes, which keep Cycles off the UI's main thread.

`blender --background --factory-startup --python worker.py -- JOB ARGS...`, or under the bpy module
`python worker.py JOB ARGS...` (processes.blender_command builds the line). JOB names a module of
this package with a `main(*ARGS) -> int`:
- `preview`: a persistent server of Neural Render Preview G-buffers (preview_worker.py).
No add-on is enabled in the worker, so the package is imported by path.
"""

import importlib
import sys
from pathlib import Path

JOBS = {"preview": "preview_worker"}


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
