"""`python -m backend bench` on the CPU: torch and the emulated kernel on the same bank and frames."""

import subprocess
import sys
from pathlib import Path

import pytest

from backend.bank import random_bank, save_bank
from backend.commands.bench import parse_sizes
from backend.errors import UserError

ROOT = Path(__file__).resolve().parents[1]


def bench(*args):
    return subprocess.run([sys.executable, "-m", "backend", "bench", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def test_bench_prints_ms_per_frame_and_ratio(tmp_path):
    bank = save_bank(random_bank(0, [3 | 3 << 8, 12 | 48 << 8], [18, 16, 3]), tmp_path / "b.nfbank")
    result = bench("--bank", bank, "--renderer", "all", "--sizes", "48,40x24", "--lights", "2", "--seconds", "0.05")
    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines() if line.strip()[:1].isdigit()]
    assert {(row[0], row[4]) for row in rows} >= {("48x48", "torch-cpu"), ("48x48", "emulated"),
                                                 ("40x24", "torch-cpu"), ("40x24", "emulated")}
    for row in rows:
        assert float(row[5]) > 0  # ms/frame
    assert any(row[4] == "emulated" and row[7].endswith("x") for row in rows)  # ratio to torch, same run
    assert "routing:" in result.stdout and "with one network" in result.stdout


def test_bench_refuses_bad_sizes():
    result = bench("--sizes", "12xq")
    assert result.returncode == 2 and "--sizes" in result.stderr
    with pytest.raises(UserError):
        parse_sizes("0")
    assert parse_sizes("8, 1920x1080") == [(8, 8), (1920, 1080)]
