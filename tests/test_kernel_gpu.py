"""The PyCUDA renderer on a real GPU: same frames as the torch renderer, no memory errors under
compute-sanitizer, buffers reused across frames, and the bench prints its figures.

Skipped here (no GPU); run unchanged on a CUDA machine with `pip install -e ".[cuda]"`:
`python -m pytest -m gpu tests/test_kernel_gpu.py`.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from backend.bank import random_bank
from backend.errors import GBufferError, UserError
from backend.hashing import gbuffer_tile_keys
from backend.renderers import get_renderer
from backend.synthetic import sphere_gbuffer

ROOT = Path(__file__).resolve().parents[1]
RTOL, ATOL = 1e-4, 1e-5


def _cuda_problem() -> str | None:
    from backend.renderers.pycuda_renderer import cuda_driver

    try:
        cuda_driver()
    except UserError as exc:
        return str(exc)
    return None


pytestmark = [pytest.mark.gpu, pytest.mark.skipif(_cuda_problem() is not None, reason=f"no GPU run: {_cuda_problem()}")]


def bank_for(*gbuffers, **kwargs):
    keys = np.unique(np.concatenate([gbuffer_tile_keys(g).ravel() for g in gbuffers]))
    return random_bank(1, keys[keys > 0][::2], [23, 32, 32, 3], **kwargs)


def torch_device():
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


@pytest.mark.parametrize("height,width,n_lights,activation,dtype", [
    (23, 37, 1, "exp", "float32"),
    (1, 1, 1, "softplus", "float32"),
    (64, 64, 3, "exp", "float16"),
    (1080, 1920, 2, "softplus", "float32"),
])
def test_pycuda_matches_torch(height, width, n_lights, activation, dtype):
    g = sphere_gbuffer(height, width, n_lights=n_lights, seed=width)
    bank = bank_for(g, output_activation=activation, weights_dtype=dtype)
    frame = get_renderer("pycuda", bank).render(g)
    np.testing.assert_allclose(frame, get_renderer("torch", bank, device=torch_device()).render(g), rtol=RTOL, atol=ATOL)
    if height * width <= 64 * 64:  # the same source on the CPU (slow at 1080p)
        np.testing.assert_allclose(frame, get_renderer("emulated", bank).render(g), rtol=RTOL, atol=ATOL)


def test_buffers_are_reused_and_resized_between_frames():
    small, large = sphere_gbuffer(40, 30, n_lights=2, seed=1), sphere_gbuffer(100, 120, n_lights=1, seed=2)
    bank = bank_for(small, large)
    renderer, reference = get_renderer("pycuda", bank), get_renderer("emulated", bank)
    for g in (small, small, large, small):
        np.testing.assert_allclose(renderer.render(g), reference.render(g), rtol=RTOL, atol=ATOL)
    bad = sphere_gbuffer(20, 20)
    with pytest.raises(GBufferError):
        bad.planes = bad.planes.astype(np.float64)
        renderer.render(bad)
    np.testing.assert_allclose(renderer.render(small), reference.render(small), rtol=RTOL, atol=ATOL)


SANITIZED = """
import numpy as np
from backend.bank import random_bank
from backend.hashing import gbuffer_tile_keys
from backend.renderers import get_renderer
from backend.synthetic import sphere_gbuffer
for h, w, lights in [(23, 37, 1), (1, 1, 2), (70, 90, 3)]:
    g = sphere_gbuffer(h, w, n_lights=lights, seed=h)
    keys = np.unique(gbuffer_tile_keys(g)); keys = keys[keys > 0]
    bank = random_bank(0, keys[::2], [23, 32, 32, 3])
    get_renderer("pycuda", bank).render(g)
    g.background = None
    get_renderer("pycuda", bank).render(g)
print("rendered")
"""


@pytest.mark.slow
@pytest.mark.parametrize("tool", ["memcheck", "racecheck", "synccheck", "initcheck"])
def test_compute_sanitizer_finds_no_errors(tool):
    bundled = Path(os.environ.get("CUDA_HOME", "/usr/local/cuda")) / "bin" / "compute-sanitizer"
    sanitizer = shutil.which("compute-sanitizer") or (str(bundled) if bundled.is_file() else None)
    if sanitizer is None:
        pytest.skip("compute-sanitizer not found (CUDA toolkit bin not on PATH)")
    result = subprocess.run([sanitizer, f"--tool={tool}", "--error-exitcode=99", sys.executable, "-c", SANITIZED],
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0 and "rendered" in result.stdout, result.stdout[-3000:] + result.stderr[-3000:]
    assert "ERROR SUMMARY: 0 errors" in result.stdout + result.stderr


@pytest.mark.slow
def test_bench_prints_pycuda_and_torch_side_by_side():
    result = subprocess.run([sys.executable, "-m", "backend", "bench", "--renderer", "all", "--seconds", "0.3"],
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    print(result.stdout)
    for size in ("512x512", "1920x1080", "3840x2160"):
        rows = [line for line in result.stdout.splitlines() if line.strip().startswith(size)]
        assert any(" pycuda " in row for row in rows) and any("torch-" in row for row in rows), result.stdout
