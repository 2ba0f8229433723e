"""Image quality of a neural frame against Cycles: PSNR, SSIM and NVIDIA FLIP, on the face only.

All three compare display images: linear radiance clipped to [0, 1] and sRGB-encoded (what the
artist sees; the datasets' radiance stays well under 1). Each is averaged over the face pixels
(the G-buffer's coverage mask) because the background is composited, not predicted, and would
otherwise inflate every score. SSIM and FLIP are computed on the whole frame (they look at
neighbourhoods) and their per-pixel maps averaged over the mask.
"""

from __future__ import annotations

import numpy as np


def to_display(rgb: np.ndarray) -> np.ndarray:
    """Linear radiance [..., 3] -> sRGB-encoded [0, 1] float32."""
    x = np.clip(np.asarray(rgb, dtype=np.float32), 0.0, 1.0)
    return np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(x, 1 / 2.4) - 0.055).astype(np.float32)


def psnr_from_mse(mse: float) -> float:
    return float("inf") if mse <= 0 else 10.0 * float(np.log10(1.0 / mse))


def ssim(pred: np.ndarray, target: np.ndarray, mask: np.ndarray) -> float:
    """Mean SSIM (scikit-image, 7x7 window) of display images over mask pixels."""
    from skimage.metrics import structural_similarity

    _, full = structural_similarity(to_display(target), to_display(pred), channel_axis=-1, data_range=1.0, full=True)
    return float(full.mean(axis=-1)[mask].mean())


def flip_map(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """NVIDIA FLIP (LDR) error map [H, W] in [0, 1] of display images."""
    import flip_evaluator

    error, _, _ = flip_evaluator.evaluate(to_display(target), to_display(pred), "LDR", applyMagma=False)
    return np.asarray(error, dtype=np.float32).reshape(pred.shape[:2])


def paired_gain_interval(psnr_a, psnr_b, level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): the mean of the per-view gains PSNR(a) - PSNR(b) of two models on the same
    views and its `level` confidence interval (Student's t over the views). Pairing cancels how much
    harder one view is than another, which is far larger than the models' difference; with a
    handful of views the interval is wide, and says so."""
    from scipy import stats

    gains = np.asarray(psnr_a, dtype=np.float64) - np.asarray(psnr_b, dtype=np.float64)
    mean = float(gains.mean())
    half = float(stats.t.ppf(0.5 + level / 2, len(gains) - 1) * gains.std(ddof=1) / np.sqrt(len(gains)))
    return mean, mean - half, mean + half
