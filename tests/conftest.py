"""Shared fixtures: a small real dataset of Suzanne rendered by the real CLI (bpy + Cycles + EXR).

`suzanne_dataset` (session): 12 samples at 64x64, 1-2 point lights (some samples have 2),
8 ground-truth samples, and 4 unlabelled views; returns the dataset folder. Use it for training, kernel and service tests.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SUZANNE_SAMPLES = 12
SUZANNE_UNLABELLED = 4  # G-buffer-only views after the labelled ones (indices 12..15)


def process_ended(pid: int) -> bool:
    """Whether a process that is not our child has exited (gone, or a zombie nobody has reaped yet)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def run_backend(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """`python -m backend ARGS` in a subprocess (bpy state never leaks into the test process)."""
    return subprocess.run([sys.executable, "-m", "backend", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def suzanne_blend(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("scenes") / "suzanne.blend"
    subprocess.run([sys.executable, str(ROOT / "example_scenes" / "build_suzanne.py"), str(path)],
                   check=True, capture_output=True, timeout=120)
    return path


def suzanne_generate_args(scene: Path, out: Path, samples: int = SUZANNE_SAMPLES) -> list[str]:
    """The generate command line of the `suzanne_dataset` fixture (reuse it to resume or extend)."""
    return ["generate", "--scene", str(scene), "--out", str(out), "--samples", str(samples),
            "--unlabelled", str(SUZANNE_UNLABELLED), "--resolution", "64", "--lights", "1-2", "--gt-samples", "8", "--shadow-rays", "4", "--seed", "7"]


@pytest.fixture(scope="session")
def suzanne_dataset(tmp_path_factory, suzanne_blend) -> Path:
    out = tmp_path_factory.mktemp("suzanne_dataset")
    result = run_backend(*suzanne_generate_args(suzanne_blend, out))
    assert result.returncode == 0, result.stderr[-3000:]
    return out


@pytest.fixture(scope="session")
def ray_head():
    """One real Ray head on 127.0.0.1 with two worker CPUs and a token, for every cluster test."""
    from ray_cluster import RayNode

    head = RayNode(num_cpus=2)
    yield head
    head.stop()
