"""Per-pixel, per-light network input (docs/formats/gbuffer.md, section 2; FEATURE_SPEC_VERSION 2).

Everything here is something a real-time engine can hand a pixel: rasterised UV, normal and
albedo, view and light directions, the shadowed light pass (the only shadow information), and
the pre-filtered planes of backend.prefilter (visibility and albedo blurred at skin scattering
radii, as screen-space subsurface scattering does). One definition, used by training and by the
torch renderer; the CUDA kernel reimplements the per-pixel part and reads the same pre-filtered
planes. Computed in torch float32 so the same code runs on the CPU and on CUDA.
"""

from __future__ import annotations

import torch

from backend.gbuffer import ALBEDO, FEATURE_SPEC_VERSION, NORMAL, POSITION, U, V, GBuffer
from backend.prefilter import (FILTERED_FIXED, FILTERED_PER_LIGHT, CoveredPixels, FilterRadii, filtered_at,
                               light_geometry, light_passes, light_scale_of, lights_tensor, norm3, pixel_planes,
                               visibility_of)

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
PER_LIGHT = (8, 9, 10, 11, 13, 14, 18, 19)  # features that differ between lights; the rest are the pixel's

__all__ = ["FEATURE_NAMES", "FEATURE_SPEC_VERSION", "N_FEATURES", "N_PIXEL_FEATURES", "compute_features",
           "covered_shading_inputs", "light_scale", "pixel_shading_inputs", "shading_inputs"]


def _normalize(x: torch.Tensor, dim: int = 0, eps: float = 1e-12) -> torch.Tensor:
    """x / max(|x|, eps) along dim (of size 3, xyz)."""
    return x / norm3(x, dim).clamp_min(eps).unsqueeze(dim)


def light_scale(gbuffer: GBuffer, device="cpu") -> torch.Tensor:
    """P / (4 pi^2 d^2) per light and pixel, [L, H, W]: white Lambertian radiance per unit n.l
    (uncovered pixels count as position 0)."""
    planes = torch.as_tensor(gbuffer.planes, device=device)
    position = torch.where(planes[0] > 0.5, planes[POSITION], torch.zeros((), device=device)).reshape(3, -1)
    lights = lights_tensor(gbuffer, device)
    return light_scale_of(lights, light_geometry(lights, position)[1]).view(gbuffer.n_lights, gbuffer.height,
                                                                             gbuffer.width)


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
    pixels = CoveredPixels.of(gbuffer, device)
    if filtered is not None:
        filtered = pixels.gather(filtered)
    x, factor = pixel_shading_inputs(gbuffer, radii, pixels, filtered=filtered)
    n_lights, hw = gbuffer.n_lights, gbuffer.height * gbuffer.width

    def frame(values: torch.Tensor) -> torch.Tensor:  # [C, L, N] -> [L, H, W, C]
        out = torch.zeros(n_lights, hw, values.shape[0], device=values.device)
        out[:, pixels.flat] = values.permute(1, 2, 0)
        return out.view(n_lights, gbuffer.height, gbuffer.width, -1)

    return frame(x), frame(factor)


def covered_shading_inputs(gbuffer: GBuffer, radii: FilterRadii, device="cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """(features [N, L, F], light factor [N, L, 3]) of the N covered pixels in row order, i.e.
    shading_inputs(...)[i][:, covered].transpose(0, 1) without the full frames."""
    x, factor = pixel_shading_inputs(gbuffer, radii, CoveredPixels.of(gbuffer, device))
    return x.permute(2, 1, 0).contiguous(), factor.permute(2, 1, 0).contiguous()


def pixel_shading_inputs(gbuffer: GBuffer, radii: FilterRadii, pixels: CoveredPixels, planes: torch.Tensor | None = None,
                         filtered: torch.Tensor | None = None, mean: torch.Tensor | None = None,
                         std: torch.Tensor | None = None, lap=None,
                         out: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(features [F, L, N], light factor [3, L, N]) at the covered pixels (all of the frame's, in any
    order: the pre-filter's mask), computed once per pixel and light, every light at once.

    planes: pixel_planes(gbuffer, pixels) if the caller has them; filtered: the pre-filtered planes
    at the pixels, [3 + 2L, N], made here (with the visibility computed once for both) if None.
    With mean and std ([F]) the features come normalised, (x - mean) / std, as the network sees them.
    lap(stage), if given, is called after the per-pixel light terms ("features") and after the
    pre-filter ("prefilter"), for the renderer's per-stage timings. out: a [F, L, N] buffer for the features.
    """
    device = pixels.device
    n_lights, count = gbuffer.n_lights, len(pixels)
    if planes is None:
        planes = pixel_planes(gbuffer, pixels)
    lights = lights_tensor(gbuffer, device)
    n = _normalize(planes[NORMAL])  # [3, N]
    camera = torch.as_tensor(gbuffer.camera_position, device=device).view(3, 1)
    view = _normalize(camera - planes[POSITION])
    l, d = light_geometry(lights, planes[POSITION])  # [L, 3, N], [L, N]
    h = _normalize(l + view[None], dim=1)
    scale = light_scale_of(lights, d)
    visibility = visibility_of(lights, light_passes(planes, n_lights), scale)  # the pre-filter's definition, once
    if filtered is None:
        if lap:
            lap("features")
        filtered = filtered_at(gbuffer, radii, pixels, planes, visibility)
        if lap:
            lap("prefilter")
    per_light = {8: l[:, 0], 9: l[:, 1], 10: l[:, 2], 11: (n[None] * l).sum(1), 13: (n[None] * h).sum(1),
                 14: visibility, 18: filtered[FILTERED_FIXED::FILTERED_PER_LIGHT],
                 19: filtered[FILTERED_FIXED + 1 :: FILTERED_PER_LIGHT]}  # [L, N] each
    per_pixel = {0: planes[U], 1: planes[V], 2: n[0], 3: n[1], 4: n[2], 5: view[0], 6: view[1], 7: view[2],
                 12: (n * view).sum(0), 15: planes[ALBEDO][0], 16: planes[ALBEDO][1], 17: planes[ALBEDO][2],
                 20: filtered[0], 21: filtered[1], 22: filtered[2]}  # [N] each
    x = torch.empty(N_FEATURES, n_lights, count, device=device) if out is None else out
    for i in range(N_FEATURES):
        x[i] = per_light[i] if i in per_light else per_pixel[i]
    if mean is not None:  # in place, all features at once: the same (x - mean) / std, without temporaries
        x.sub_(mean.view(-1, 1, 1)).div_(std.view(-1, 1, 1))
    factor = (scale[:, None] * lights[:, 3:6, None]).transpose(0, 1).contiguous()  # [3, L, N]
    return x, factor
