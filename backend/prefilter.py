"""Pre-filtered G-buffer planes: what subsurface scattering brings a pixel from its neighbours.

Skin carries light sideways by millimetres, so a pixel's radiance depends on the irradiance and
albedo around it, which a per-pixel network cannot see. A real-time skin renderer hands it over
pre-filtered (screen-space subsurface scattering, Jimenez et al. 2009/2015): the irradiance and
the albedo blurred by a Gaussian whose width is a world-space scattering radius, converted to
pixels by the depth. We do the same, once per frame, before the per-pixel networks run; both the
torch renderer and the CUDA kernel read the planes this module makes (gbuffer.md section 2b).

The blur is masked (only covered pixels contribute, so the background never bleeds in) and its
width varies per pixel: `sigma_px = radius * focal_px / distance`. It is evaluated at octave
widths (1, 2, 4, ... pixels; wide ones on a downsampled frame) and interpolated in log2 width,
so the cost is a few small convolutions whatever the resolution, and the result depends on the
world-space radius, not on the render size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from backend.errors import GBufferError
from backend.gbuffer import ALBEDO, MASK, POSITION, GBuffer, light_pass_planes

# Radii in units of the object's bounding radius. The generator's skin scatters red light over a
# mean free path of 0.02 bounding radii (blender_addon/scene_setup.py); a near and a far width
# bracket the skin's diffusion profile, the albedo is blurred at the near one.
VISIBILITY_RADII_PER_BOUNDING_RADIUS = (0.01, 0.03)
ALBEDO_RADIUS_PER_BOUNDING_RADIUS = 0.01
MIN_SIGMA_PX, MAX_SIGMA_PX = 0.5, 64.0
FILTERED_FIXED = 3  # albedo rgb
FILTERED_PER_LIGHT = 2  # visibility at the near and far radius


@dataclass(frozen=True)
class FilterRadii:
    """World-space Gaussian widths of the pre-filter (stored in the bank, gbuffer.md section 2b)."""

    visibility: tuple[float, float]
    albedo: float

    @classmethod
    def for_object(cls, bounding_radius: float) -> "FilterRadii":
        near, far = VISIBILITY_RADII_PER_BOUNDING_RADIUS
        return cls((near * bounding_radius, far * bounding_radius), ALBEDO_RADIUS_PER_BOUNDING_RADIUS * bounding_radius)

    def to_json(self) -> dict:
        return {"visibility": list(self.visibility), "albedo": self.albedo}

    @classmethod
    def from_json(cls, data: dict) -> "FilterRadii":
        near, far = data["visibility"]
        return cls((float(near), float(far)), float(data["albedo"]))


def filtered_plane_count(n_lights: int) -> int:
    return FILTERED_FIXED + FILTERED_PER_LIGHT * n_lights


def _gaussian(sigma: float, device) -> torch.Tensor:
    half = max(1, math.ceil(3 * sigma))
    x = torch.arange(-half, half + 1, dtype=torch.float32, device=device)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    return kernel / kernel.sum()


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian of [C, H, W], zero outside the frame."""
    kernel = _gaussian(sigma, x.device)
    half, channels = (len(kernel) - 1) // 2, x.shape[0]
    y = F.conv2d(x[None], kernel.view(1, 1, 1, -1).expand(channels, 1, 1, -1), padding=(0, half), groups=channels)
    return F.conv2d(y, kernel.view(1, 1, -1, 1).expand(channels, 1, -1, 1), padding=(half, 0), groups=channels)[0]


def _octave(weighted: torch.Tensor, sigma: float) -> torch.Tensor:
    """Blur of [C + 1, H, W] (values times mask, then the mask) at width sigma px.

    From 4 px on, the frame is averaged down by 2**k first so the kernel stays about 2 px wide.
    """
    h, w = weighted.shape[1:]
    factor = 2 ** max(0, int(math.floor(math.log2(sigma))) - 1)
    if factor == 1:
        return _blur(weighted, sigma)
    small = F.avg_pool2d(weighted[None], factor, ceil_mode=True)[0]
    # Averaging over a factor-wide box already blurs by sqrt((factor^2 - 1) / 12) px.
    rest = math.sqrt(max(sigma**2 - (factor**2 - 1) / 12, 0.25 * factor**2)) / factor
    return F.interpolate(_blur(small, rest)[None], size=(h, w), mode="bilinear", align_corners=False)[0]


def variable_blur(values: torch.Tensor, mask: torch.Tensor, sigma_px: torch.Tensor) -> torch.Tensor:
    """Masked Gaussian of values [C, H, W] over mask [H, W] (0/1) with a per-pixel width [H, W]."""
    sigma_px = sigma_px.clamp(MIN_SIGMA_PX, MAX_SIGMA_PX)
    covered = mask > 0.5
    low = sigma_px[covered].min() if covered.any() else sigma_px.new_tensor(1.0)
    high = sigma_px[covered].max() if covered.any() else sigma_px.new_tensor(1.0)
    first = math.floor(math.log2(float(low)))
    last = max(math.ceil(math.log2(float(high))), first + 1)
    weighted = torch.cat([values * mask, mask[None]])
    octaves = []
    for k in range(first, last + 1):
        blurred = _octave(weighted, 2.0**k)
        octaves.append(blurred[:-1] / blurred[-1:].clamp_min(1e-6))
    position = (torch.log2(sigma_px) - first).clamp(0, last - first)
    lower = position.floor().clamp(max=last - first - 1)
    upper_weight = position - lower
    stack = torch.stack(octaves)  # [K, C, H, W]
    index = lower.long()[None, None].expand(1, values.shape[0], *lower.shape)
    below = torch.gather(stack, 0, index)[0]
    above = torch.gather(stack, 0, index + 1)[0]
    return torch.where(covered, below + (above - below) * upper_weight, torch.zeros((), device=values.device))


def visibility_planes(gbuffer: GBuffer, planes: torch.Tensor) -> torch.Tensor:
    """Shadowed n.l of every light, [L, H, W] (the `visibility` feature, gbuffer.md section 2)."""
    out = []
    for k in range(gbuffer.n_lights):
        light = torch.as_tensor(gbuffer.lights[k], device=planes.device)
        d = torch.linalg.vector_norm(light[0:3].view(3, 1, 1) - planes[POSITION], dim=0).clamp_min(1e-6)
        scale = light[6] / (4.0 * math.pi**2 * d * d)
        out.append(planes[light_pass_planes(k)].sum(0) / (light[3:6].sum() * scale).clamp_min(1e-12))
    return torch.stack(out)


def filtered_planes(gbuffer: GBuffer, radii: FilterRadii, device="cpu") -> torch.Tensor:
    """[3 + 2L, H, W] float32: albedo blurred at radii.albedo, then per light its visibility
    blurred at the near and the far radius; 0 on uncovered pixels."""
    if gbuffer.focal_px is None or not gbuffer.focal_px > 0:
        raise GBufferError(f"{gbuffer.source}: the pre-filter needs the camera's focal length in pixels "
                           "(the record's camera K); re-render the G-buffer with this version")
    planes = torch.as_tensor(gbuffer.planes, device=device)
    covered = planes[MASK] > 0.5
    mask = covered.float()
    planes = torch.where(covered, planes, torch.zeros((), device=device))  # uncovered pixels may hold NaN
    camera = torch.as_tensor(gbuffer.camera_position, device=device).view(3, 1, 1)
    pixels_per_unit = gbuffer.focal_px / torch.linalg.vector_norm(planes[POSITION] - camera, dim=0).clamp_min(1e-6)
    out = [variable_blur(planes[ALBEDO], mask, radii.albedo * pixels_per_unit)]
    visibility = visibility_planes(gbuffer, planes)
    for k in range(gbuffer.n_lights):
        for radius in radii.visibility:
            out.append(variable_blur(visibility[k : k + 1], mask, radius * pixels_per_unit))
    return torch.cat(out).contiguous()
