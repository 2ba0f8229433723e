"""Per-pixel, per-light network input (docs/formats/gbuffer.md, section 2; FEATURE_SPEC_VERSION 2).

Everything here is something a real-time engine can hand a pixel: rasterised UV, normal and
albedo, view and light directions, the shadowed light pass (the only shadow information), and
the pre-filtered planes of backend.prefilter (visibility and albedo blurred at skin scattering
radii, as screen-space subsurface scattering does). One definition, used by training and by the
torch renderer; the CUDA kernel reimplements the per-pixel part and reads the same pre-filtered
planes. Computed in torch float32 so the same code runs on the CPU and on CUDA.
"""

from __future__ import annotations

import math

import torch

from backend.gbuffer import ALBEDO, FEATURE_SPEC_VERSION, NORMAL, POSITION, U, V, GBuffer
from backend.prefilter import FILTERED_FIXED, FILTERED_PER_LIGHT, FilterRadii, filtered_planes, visibility_planes

FEATURE_NAMES = (
    "u", "v",
    "n_x", "n_y", "n_z",
    "view_x", "view_y", "view_z",
    "light_x", "light_y", "light_z",
    "n_dot_l", "n_dot_v", "n_dot_h",
    "visibility",
    "albedo_r", "albedo_g", "albedo_b",
    "visibility_near", "visibility_far",
    "albedo_wide_r", "albedo_wide_g", "albedo_wide_b",
)
N_FEATURES = len(FEATURE_NAMES)
N_PIXEL_FEATURES = 18  # computed from the pixel's own planes; the rest are read from the pre-filter
assert N_FEATURES == 23

__all__ = ["FEATURE_NAMES", "FEATURE_SPEC_VERSION", "N_FEATURES", "N_PIXEL_FEATURES", "compute_features",
           "light_scale", "shading_inputs"]


def _normalize(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """x / max(|x|, eps) along dim 0 (xyz first)."""
    return x / torch.linalg.vector_norm(x, dim=0, keepdim=True).clamp_min(eps)


def _planes(gbuffer: GBuffer, device) -> torch.Tensor:
    """Planes with uncovered pixels zeroed (they may hold NaN, which must not leak anywhere)."""
    planes = torch.as_tensor(gbuffer.planes, device=device)
    covered = planes[0] > 0.5
    return torch.where(covered, planes, torch.zeros((), device=device))


def _light_geometry(gbuffer: GBuffer, planes: torch.Tensor, k: int):
    """(l [3,H,W], d [H,W]) from the surface point towards light k."""
    q = torch.as_tensor(gbuffer.lights[k, 0:3], device=planes.device).view(3, 1, 1)
    to_light = q - planes[POSITION]
    d = torch.linalg.vector_norm(to_light, dim=0).clamp_min(1e-6)
    return to_light / d, d


def _scale(gbuffer: GBuffer, k: int, d: torch.Tensor) -> torch.Tensor:
    return float(gbuffer.lights[k, 6]) / (4.0 * math.pi**2 * d * d)


def light_scale(gbuffer: GBuffer, device="cpu") -> torch.Tensor:
    """P / (4 pi^2 d^2) per light and pixel, [L, H, W]: white Lambertian radiance per unit n.l."""
    planes = _planes(gbuffer, device)
    return torch.stack([_scale(gbuffer, k, _light_geometry(gbuffer, planes, k)[1]) for k in range(gbuffer.n_lights)])


def compute_features(gbuffer: GBuffer, radii: FilterRadii, device="cpu") -> torch.Tensor:
    """Features [L, H, W, F] float32 (F = 23, order FEATURE_NAMES); uncovered pixels are 0."""
    return shading_inputs(gbuffer, radii, device)[0]


def shading_inputs(gbuffer: GBuffer, radii: FilterRadii, device="cpu",
                   filtered: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(features [L, H, W, F], light factor [L, H, W, 3]) in one pass; uncovered pixels are 0.

    The light factor `rgb_k * light_scale_k` is what network output k is multiplied by
    (gbuffer.md section 5): radiance = sum_k factor_k * f_k(features_k). `filtered` is
    prefilter.filtered_planes(gbuffer, radii), made here unless the caller already has it.
    """
    if filtered is None:
        filtered = filtered_planes(gbuffer, radii, device)
    albedo_wide = filtered[:FILTERED_FIXED]
    planes = _planes(gbuffer, device)
    covered = planes[0] > 0.5
    n = _normalize(planes[NORMAL])
    view = _normalize(torch.as_tensor(gbuffer.camera_position, device=device).view(3, 1, 1) - planes[POSITION])
    n_dot_v = (n * view).sum(0)
    per_light, factors = [], []
    visibilities = visibility_planes(gbuffer, planes)  # the pre-filter's own definition, one for both
    for k in range(gbuffer.n_lights):
        l, d = _light_geometry(gbuffer, planes, k)
        h = _normalize(l + view)
        scale = _scale(gbuffer, k, d)
        colour = torch.as_tensor(gbuffer.lights[k, 3:6], device=device)
        visibility = visibilities[k]
        channels = [
            planes[U], planes[V], *n, *view, *l,
            (n * l).sum(0), n_dot_v, (n * h).sum(0),
            visibility, *planes[ALBEDO],
            *filtered[FILTERED_FIXED + FILTERED_PER_LIGHT * k : FILTERED_FIXED + FILTERED_PER_LIGHT * (k + 1)],
            *albedo_wide,
        ]
        per_light.append(torch.stack(channels, dim=-1))
        factors.append(scale[..., None] * colour)
    zero = torch.zeros((), device=device)
    keep = covered[None, :, :, None]
    return torch.where(keep, torch.stack(per_light), zero), torch.where(keep, torch.stack(factors), zero)
