"""`python -m backend addon`: build the installable extension zip with Blender's own builder."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from backend.errors import UserError

SOURCE = Path(__file__).resolve().parents[2] / "blender_addon"


def add_arguments(parser) -> None:
    parser.add_argument("--out", default="dist", help="output folder (default dist/)")


def extension_tool() -> Path:
    """blender_ext.py of the bpy module: the validator and builder Blender itself uses."""
    import importlib.util

    spec = importlib.util.find_spec("bpy")  # locate the wheel without importing Blender
    if spec is None or spec.origin is None:
        raise UserError("the bpy module is not installed; run `make setup`")
    matches = sorted(Path(spec.origin).parent.glob("*/scripts/addons_core/bl_pkg/cli/blender_ext.py"))
    if not matches:
        raise UserError(f"Blender's extension tool blender_ext.py is missing under {Path(spec.origin).parent}")
    return matches[-1]


def blender_ext(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(extension_tool()), *args], capture_output=True, text=True)


def build(out_dir: Path) -> Path:
    """Validate the add-on source and build `<out_dir>/neural_face-<version>.zip`; returns its path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for step in (("validate", str(SOURCE)), ("build", "--source-dir", str(SOURCE), "--output-dir", str(out_dir))):
        result = blender_ext(*step)
        if result.returncode != 0:
            raise UserError(f"blender_ext {step[0]} failed:\n{result.stdout}{result.stderr}")
    return max(out_dir.glob("neural_face-*.zip"), key=lambda p: p.stat().st_mtime)


def run(args) -> int:
    print(f"add-on: {build(Path(args.out))}")
    return 0
