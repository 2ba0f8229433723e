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

How it is computed (the values are those of the definition above; only the work is cut):
- everything per pixel works on the covered pixels only, compacted (`CoveredPixels`);
- the blurs run on the bounding box of the covered pixels (plus a margin, aligned to the widest
  octave's downsampling), which is exact: outside it every weighted value and the mask are 0;
- every octave is blurred once for all the planes that need it (albedo, every light's visibility
  and the mask in one call), so the near and the far width share their common octaves and the
  mask is blurred once per octave, not once per plane;
- the downsampled octaves are interpolated bilinearly with the full frame's sampling positions
  (what `F.interpolate(..., size=(H, W))` would use): where the frame's sides are multiples of the
  octave's factor, by upsampling the crop in one vectorised pass and reading the covered pixels;
  otherwise at the covered pixels only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from backend.errors import GBufferError
from backend.gbuffer import ALBEDO, FIXED_PLANES, POSITION, GBuffer

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


# --- covered pixels, compacted ---------------------------------------------------------------------


class CoveredPixels:
    """The covered pixels of an H x W frame as flat (row-major) indices, in a chosen order.

    Per-pixel values are held as [C, N] columns in this order. The torch renderer orders them by
    network slot so that each network's pixels are one contiguous run; `of` takes row order.
    """

    def __init__(self, flat, height: int, width: int, device="cpu"):
        self.device = torch.device(device)
        self.flat = torch.as_tensor(np.asarray(flat, dtype=np.int64)).to(self.device)
        self.height, self.width = height, width
        self.ys = torch.div(self.flat, width, rounding_mode="floor")
        self.xs = self.flat - self.ys * width

    @classmethod
    def of(cls, gbuffer: GBuffer, device="cpu") -> "CoveredPixels":
        return cls(np.flatnonzero(gbuffer.covered), gbuffer.height, gbuffer.width, device)

    def __len__(self) -> int:
        return int(self.flat.shape[0])

    def gather(self, planes, out: torch.Tensor | None = None) -> torch.Tensor:
        """[C, H, W] (numpy or torch) -> [C, N] at these pixels (into out, [C, N], if given)."""
        planes = torch.as_tensor(planes)
        flat = self.flat if planes.device == self.device else self.flat.to(planes.device)
        if out is not None and planes.device == out.device:
            return torch.index_select(planes.reshape(planes.shape[0], -1), 1, flat, out=out)
        gathered = planes.reshape(planes.shape[0], -1).index_select(1, flat).to(self.device)
        return gathered if out is None else out.copy_(gathered)

    def scatter(self, values: torch.Tensor) -> torch.Tensor:
        """[C, N] -> [C, H, W], 0 on every other pixel."""
        out = torch.zeros(values.shape[0], self.height * self.width, dtype=values.dtype, device=values.device)
        out[:, self.flat] = values
        return out.view(values.shape[0], self.height, self.width)


def pixel_planes(gbuffer: GBuffer, pixels: CoveredPixels) -> torch.Tensor:
    """All planes of the G-buffer at the given (covered) pixels, [12 + 3L, N] float32."""
    return pixels.gather(gbuffer.planes)


# --- the light terms, every light at once ----------------------------------------------------------


def norm3(x: torch.Tensor, dim: int) -> torch.Tensor:
    """Euclidean length along dim (of size 3): sqrt(x0^2 + x1^2 + x2^2) in float32.

    Not torch.linalg.vector_norm, which is up to 100x slower over a short, strided dimension on the
    CPU; the two differ by at most one float32 rounding.
    """
    return (x * x).sum(dim).sqrt()


def light_geometry(lights: torch.Tensor, position: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(l [L, 3, N], d [L, N]) from surface points position [3, N] towards every light ([L, 8])."""
    to_light = lights[:, 0:3, None] - position[None]
    d = norm3(to_light, 1).clamp_min(1e-6)
    return to_light / d[:, None], d


def light_scale_of(lights: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """P / (4 pi^2 d^2) per light and point, [L, N] (white Lambertian radiance per unit n.l)."""
    return lights[:, 6:7] / (4.0 * math.pi**2 * d * d)


def visibility_of(lights: torch.Tensor, passes: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Shadowed n.l of every light, [L, N]: passes [L, 3, N] (light pass rgb), scale [L, N] (light_scale_of)."""
    return passes.sum(1) / (lights[:, 3:6].sum(1, keepdim=True) * scale).clamp_min(1e-12)


def lights_tensor(gbuffer: GBuffer, device) -> torch.Tensor:
    return torch.as_tensor(gbuffer.lights, device=device)


def light_passes(planes: torch.Tensor, n_lights: int) -> torch.Tensor:
    """Light pass rgb of every light, [L, 3, N], from pixel planes [12 + 3L, N]."""
    return planes[FIXED_PLANES:].view(n_lights, 3, -1)


def visibility_planes(gbuffer: GBuffer, planes: torch.Tensor) -> torch.Tensor:
    """Shadowed n.l of every light, [L, H, W] (the `visibility` feature, gbuffer.md section 2), from
    planes [12 + 3L, H, W] with uncovered pixels zeroed."""
    flat = planes.reshape(planes.shape[0], -1)
    lights = lights_tensor(gbuffer, planes.device)
    _, d = light_geometry(lights, flat[POSITION])
    return visibility_of(lights, light_passes(flat, gbuffer.n_lights), light_scale_of(lights, d)).view(
        gbuffer.n_lights, *planes.shape[1:])


# --- the blur --------------------------------------------------------------------------------------


def _gaussian(sigma: float, device) -> torch.Tensor:
    half = max(1, math.ceil(3 * sigma))
    x = torch.arange(-half, half + 1, dtype=torch.float32, device=device)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    return kernel / kernel.sum()


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian of [C, H, W], zero outside the frame.

    Tap by tap, the centre tap first, each tap one multiply-add of the shifted frame (taps that would
    read outside the frame add nothing): on the CPU several times faster than a depthwise F.conv2d
    with zero padding, and equal to it to float32 rounding.
    """
    kernel = _gaussian(sigma, x.device).tolist()
    half = (len(kernel) - 1) // 2
    return _taps(_taps(x, kernel, half, 2), kernel, half, 1)


def _taps(x: torch.Tensor, kernel: list[float], half: int, dim: int) -> torch.Tensor:
    """1-D correlation of x with kernel (2 half + 1 taps) along dim, zero outside."""
    n = x.shape[dim]
    y = torch.mul(x, kernel[half])  # the centre tap reads every position: it starts every sum
    for i in range(len(kernel)):  # output j gets tap i from x[j + i - half] when that is inside
        offset = i - half
        lo, hi = max(0, -offset), min(n, n - offset)
        if offset and hi > lo:
            y.narrow(dim, lo, hi - lo).add_(x.narrow(dim, lo + offset, hi - lo), alpha=kernel[i])
    return y


def _factor(k: int) -> int:
    """Downsampling of octave k (width 2**k px): from 4 px on, 2**(k-1), so the kernel stays ~2 px wide."""
    return 2 ** max(0, k - 1)


def _octave_blur(weighted: torch.Tensor, k: int) -> torch.Tensor:
    """Octave k of [C, h, w] (values times mask, and the mask): on the frame itself, or averaged
    down by its factor (ceil mode) and blurred there (not upsampled: see _sample)."""
    sigma, factor = 2.0**k, _factor(k)
    if factor == 1:
        return _blur(weighted, sigma)
    small = _average_down(weighted, factor)
    # Averaging over a factor-wide box already blurs by sqrt((factor^2 - 1) / 12) px.
    rest = math.sqrt(max(sigma**2 - (factor**2 - 1) / 12, 0.25 * factor**2)) / factor
    return _blur(small, rest)


def _average_down(x: torch.Tensor, factor: int) -> torch.Tensor:
    """F.avg_pool2d(x, factor, ceil_mode=True) of [C, h, w]; where h and w are multiples of factor,
    summed here in its order (row by row) and divided by factor^2: the same values, several times
    faster on the CPU."""
    c, h, w = x.shape
    if h % factor or w % factor:  # partial windows at the frame's edge: average only what is inside
        return F.avg_pool2d(x[None], factor, ceil_mode=True)[0]
    total = x[:, 0::factor, 0::factor].clone()
    for i in range(factor):
        for j in range(factor):
            if i or j:
                total.add_(x[:, i::factor, j::factor])
    return total.div_(factor * factor)


def _source_index(dst: torch.Tensor, in_size: int, out_size: int):
    """Bilinear taps (i0, i1, weight of i1) of F.interpolate(size=out_size, align_corners=False)."""
    scale = torch.tensor(in_size, dtype=torch.float32) / torch.tensor(out_size, dtype=torch.float32)
    src = ((dst.to(torch.float32) + 0.5) * scale.to(dst.device) - 0.5).clamp_min(0)
    i0 = src.to(torch.int64)
    i1 = i0 + (i0 < in_size - 1).to(torch.int64)
    return i0, i1, src - i0


@dataclass
class _Crop:
    """The frame's rows y0..y1 and columns x0..x1 that the blurs work on."""

    y0: int
    y1: int
    x0: int
    x1: int

    @classmethod
    def around(cls, pixels: CoveredPixels, align: int) -> "_Crop":
        # 3 downsampled cells of margin on each side hold every bilinear tap of a covered pixel.
        margin = 3 * align
        ymin, ymax = int(pixels.ys.min()), int(pixels.ys.max())
        xmin, xmax = int(pixels.xs.min()), int(pixels.xs.max())
        y0, x0 = max(0, (ymin - margin) // align * align), max(0, (xmin - margin) // align * align)
        y1 = min(pixels.height, -(-(ymax + 1 + margin) // align) * align)
        x1 = min(pixels.width, -(-(xmax + 1 + margin) // align) * align)
        return cls(y0, y1, x0, x1)


def _sample(blurred: torch.Tensor, k: int, crop: _Crop, pixels: CoveredPixels) -> torch.Tensor:
    """Octave k's blurred crop [C, h, w] at the covered pixels, [C, N]: read directly at full
    resolution, bilinearly upsampled from the downsampled frame at the same positions as an
    F.interpolate of the whole frame back to H x W would (torch.lerp: one pass instead of three, equal
    to float32 rounding)."""
    factor = _factor(k)
    c, h, w = blurred.shape
    if factor == 1:
        return blurred.reshape(c, h * w).index_select(1, (pixels.ys - crop.y0) * w + (pixels.xs - crop.x0))
    height, width = pixels.height, pixels.width
    if height % factor == 0 and width % factor == 0:
        # The frame's taps are then those of a uniform 1/factor scale, periodic from the crop's
        # corner (a multiple of factor): upsampling the crop gives them all in one vectorised pass (the
        # crop's edges clamp differently from the frame's, but its margin keeps every covered pixel's
        # taps off them).
        up = F.interpolate(blurred[None], scale_factor=factor, mode="bilinear", align_corners=False,
                           recompute_scale_factor=False)[0]
        return up.reshape(c, -1).index_select(1, (pixels.ys - crop.y0) * up.shape[2] + (pixels.xs - crop.x0))
    # Otherwise along x for every column of the crop (the taps of F.interpolate, in its order: x, then y) ...
    columns = torch.arange(crop.x0, crop.x1, device=blurred.device)
    x0, x1, wx = _source_index(columns, -(-width // factor), width)
    # (the crop's outermost columns, which no covered pixel reads, may tap outside it: clamped)
    x0, x1 = ((i - crop.x0 // factor).clamp(0, w - 1) for i in (x0, x1))
    grid = blurred.reshape(c * h, w)  # (index_select along the last dim of a 2-D view: several times faster)
    rows = torch.lerp(grid.index_select(1, x0), grid.index_select(1, x1), wx)  # [C * h, crop width]
    # ... then along y at the covered pixels only.
    y0, y1, wy = _source_index(pixels.ys, -(-height // factor), height)
    span = crop.x1 - crop.x0
    x = pixels.xs - crop.x0
    rows = rows.view(c, h * span)
    top = rows.index_select(1, (y0 - crop.y0 // factor) * span + x)
    bottom = rows.index_select(1, (y1 - crop.y0 // factor) * span + x)
    return torch.lerp(top, bottom, wy)


def _octave_range(sigma: torch.Tensor) -> tuple[int, int]:
    """First and last octave k bracketing the widths sigma (already clamped; at least two octaves)."""
    low, high = torch.aminmax(sigma)
    first = math.floor(math.log2(float(low)))
    return first, max(math.ceil(math.log2(float(high))), first + 1)


def _interpolate(octaves: list[torch.Tensor], sigma: torch.Tensor, first: int, last: int) -> torch.Tensor:
    """Per pixel, linear in log2 sigma between the two octaves around it: octaves [C, N] each for
    k = first..last, sigma [N]."""
    position = (torch.log2(sigma) - first).clamp(0, last - first)
    lower = position.floor().clamp(max=last - first - 1)
    upper_weight = position - lower
    below, above = octaves[0], octaves[1]
    for j in range(1, last - first):
        here = lower == j
        below, above = torch.where(here, octaves[j], below), torch.where(here, octaves[j + 1], above)
    return torch.lerp(below, above, upper_weight)


def blur_at(pixels: CoveredPixels, groups: list[tuple[torch.Tensor, list[torch.Tensor]]]) -> list[list[torch.Tensor]]:
    """Masked variable-width Gaussians at the covered pixels, the mask being `pixels` themselves.

    groups: [(values [C, N], [sigma_px [N], ...]), ...]: each group's values blurred at each of its
    width maps. Returns per group, per width map, [C, N]. Each octave is blurred once for every
    group that needs it, with the mask.
    """
    n = len(pixels)
    device = pixels.device
    plans = []  # per group: per width map (clamped sigma, first, last)
    for _, sigmas in groups:
        clamped = [s.clamp(MIN_SIGMA_PX, MAX_SIGMA_PX) for s in sigmas]
        plans.append([(s, *_octave_range(s)) for s in clamped])
    needs = {}  # octave k -> groups that need it
    for g, plan in enumerate(plans):
        for _, first, last in plan:
            for k in range(first, last + 1):
                needs.setdefault(k, set()).add(g)
    crop = _Crop.around(pixels, max(_factor(k) for k in needs))
    h, w = crop.y1 - crop.y0, crop.x1 - crop.x0
    local = (pixels.ys - crop.y0) * w + (pixels.xs - crop.x0)
    # The weighted planes on the crop: every group's values (times the mask: 0 off the covered
    # pixels), then the mask.
    sizes = [values.shape[0] for values, _ in groups]
    starts = np.concatenate([[0], np.cumsum(sizes)]).tolist()
    # Built by gathering from the compacted values and a zero column (faster than scattering).
    source = torch.cat([torch.cat([values for values, _ in groups] + [torch.ones(1, n, device=device)]),
                        torch.zeros(starts[-1] + 1, 1, device=device)], dim=1)
    inverse = torch.full((h * w,), n, dtype=torch.int64, device=device)
    inverse[local] = torch.arange(n, device=device)
    weighted = source.index_select(1, inverse).view(-1, h, w)
    normalised = {}  # (group, k) -> [C, N]
    for k in sorted(needs):
        members = sorted(needs[k])
        channels = [c for g in members for c in range(starts[g], starts[g + 1])] + [starts[-1]]
        if channels == list(range(channels[0], channels[-1] + 1)):
            subset = weighted[channels[0] : channels[-1] + 1]
        else:
            subset = weighted[channels]
        at = _sample(_octave_blur(subset, k), k, crop, pixels)
        at = at[:-1] / at[-1:].clamp_min(1e-6)
        offset = 0
        for g in members:
            normalised[g, k] = at[offset : offset + sizes[g]]
            offset += sizes[g]
    return [[_interpolate([normalised[g, k] for k in range(first, last + 1)], sigma, first, last)
             for sigma, first, last in plan] for g, plan in enumerate(plans)]


def filtered_at(gbuffer: GBuffer, radii: FilterRadii, pixels: CoveredPixels, planes: torch.Tensor,
                visibility: torch.Tensor) -> torch.Tensor:
    """The pre-filtered planes at the covered pixels, [3 + 2L, N] (order of filtered_planes).

    `pixels` must be every covered pixel of the frame (the blur's mask), in any order; planes
    [12 + 3L, N] are their pixel_planes, visibility [L, N] their visibility_of.
    """
    if gbuffer.focal_px is None or not gbuffer.focal_px > 0:
        raise GBufferError(f"{gbuffer.source}: the pre-filter needs the camera's focal length in pixels "
                           "(the record's camera K); re-render the G-buffer with this version")
    n_lights, n = gbuffer.n_lights, len(pixels)
    if n == 0:
        return torch.zeros(filtered_plane_count(n_lights), 0, device=pixels.device)
    camera = torch.as_tensor(gbuffer.camera_position, device=pixels.device).view(3, 1)
    pixels_per_unit = gbuffer.focal_px / norm3(planes[POSITION] - camera, 0).clamp_min(1e-6)
    near, far = radii.visibility
    (albedo,), (vis_near, vis_far) = blur_at(pixels, [
        (planes[ALBEDO], [radii.albedo * pixels_per_unit]),
        (visibility, [near * pixels_per_unit, far * pixels_per_unit]),
    ])
    return torch.cat([albedo, torch.stack([vis_near, vis_far], dim=1).reshape(2 * n_lights, n)])


def filtered_planes(gbuffer: GBuffer, radii: FilterRadii, device="cpu") -> torch.Tensor:
    """[3 + 2L, H, W] float32: albedo blurred at radii.albedo, then per light its visibility
    blurred at the near and the far radius; 0 on uncovered pixels."""
    pixels = CoveredPixels.of(gbuffer, device)
    planes = pixel_planes(gbuffer, pixels)
    lights = lights_tensor(gbuffer, pixels.device)
    _, d = light_geometry(lights, planes[POSITION])
    visibility = visibility_of(lights, light_passes(planes, gbuffer.n_lights), light_scale_of(lights, d))
    return pixels.scatter(filtered_at(gbuffer, radii, pixels, planes, visibility)).contiguous()
