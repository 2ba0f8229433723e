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
    bank = save_bank(random_bank(0, [3 | 3 << 8, 12 | 48 << 8], [23, 16, 3]), tmp_path / "b.nfbank")
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


def test_bench_prints_bank_size_and_training_time_to_the_reported_psnr(tmp_path):
    bank = random_bank(0, [3 | 3 << 8], [23, 16, 3])
    bank.meta["provenance"] = {"device": "cpu", "seconds": 90.0, "best_step": 200, "history": [
        {"step": 100, "loss": 0.01, "val_psnr": 20.0, "seconds": 30.0},
        {"step": 200, "loss": 0.005, "val_psnr": 24.5, "seconds": 61.0},
        {"step": 300, "loss": 0.004, "val_psnr": 24.1, "seconds": 90.0}]}
    path = save_bank(bank, tmp_path / "b.nfbank")
    result = bench("--bank", path, "--renderer", "torch", "--sizes", "32", "--seconds", "0.05")
    assert result.returncode == 0, result.stderr
    assert f"bank file: {path.stat().st_size / 1024:.0f} KB" in result.stdout
    assert "24.50 dB reached at step 200 after 61 s (90 s in all)" in result.stdout
