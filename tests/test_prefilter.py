"""The fast pre-filter against a plain whole-frame transcription of gbuffer.md section 2b.

The reference below blurs the whole frame with F.conv2d at every octave and upsamples with
F.interpolate, as the section reads; backend.prefilter computes only around the covered pixels,
shares octaves between planes and samples at the covered pixels only. The values must agree to
float32 rounding, on odd sizes, off-centre objects, objects cut by the frame and wide radii.
"""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from backend import prefilter
from backend.gbuffer import ALBEDO, MASK, POSITION, GBuffer, light_pass_planes
from backend.prefilter import CoveredPixels, FilterRadii, filtered_at, filtered_planes, pixel_planes
from backend.synthetic import sphere_gbuffer


def reference_gaussian(sigma):
    half = max(1, math.ceil(3 * sigma))
    x = torch.arange(-half, half + 1, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    return kernel / kernel.sum()


def reference_blur(x, sigma):
    kernel = reference_gaussian(sigma)
    half, channels = (len(kernel) - 1) // 2, x.shape[0]
    y = F.conv2d(x[None], kernel.view(1, 1, 1, -1).expand(channels, 1, 1, -1), padding=(0, half), groups=channels)
    return F.conv2d(y, kernel.view(1, 1, -1, 1).expand(channels, 1, -1, 1), padding=(half, 0), groups=channels)[0]


def reference_octave(weighted, sigma):
    h, w = weighted.shape[1:]
    factor = 2 ** max(0, int(math.floor(math.log2(sigma))) - 1)
    if factor == 1:
        return reference_blur(weighted, sigma)
    small = F.avg_pool2d(weighted[None], factor, ceil_mode=True)[0]
    rest = math.sqrt(max(sigma**2 - (factor**2 - 1) / 12, 0.25 * factor**2)) / factor
    return F.interpolate(reference_blur(small, rest)[None], size=(h, w), mode="bilinear", align_corners=False)[0]


def reference_variable_blur(values, mask, sigma_px):
    sigma_px = sigma_px.clamp(0.5, 64.0)
    covered = mask > 0.5
    first = math.floor(math.log2(float(sigma_px[covered].min())))
    last = max(math.ceil(math.log2(float(sigma_px[covered].max()))), first + 1)
    weighted = torch.cat([values * mask, mask[None]])
    octaves = []
    for k in range(first, last + 1):
        blurred = reference_octave(weighted, 2.0**k)
        octaves.append(blurred[:-1] / blurred[-1:].clamp_min(1e-6))
    position = (torch.log2(sigma_px) - first).clamp(0, last - first)
    lower = position.floor().clamp(max=last - first - 1)
    stack = torch.stack(octaves)
    index = lower.long()[None, None].expand(1, values.shape[0], *lower.shape)
    below, above = torch.gather(stack, 0, index)[0], torch.gather(stack, 0, index + 1)[0]
    return torch.where(covered, below + (above - below) * (position - lower), torch.zeros(()))


def reference_filtered_planes(g, radii):
    planes = torch.from_numpy(g.planes)
    covered = planes[MASK] > 0.5
    mask = covered.float()
    planes = torch.where(covered, planes, torch.zeros(()))
    camera = torch.from_numpy(g.camera_position).view(3, 1, 1)
    pixels_per_unit = g.focal_px / (planes[POSITION] - camera).norm(dim=0).clamp_min(1e-6)
    out = [reference_variable_blur(planes[ALBEDO], mask, radii.albedo * pixels_per_unit)]
    for k in range(g.n_lights):
        light = torch.from_numpy(g.lights[k])
        d = (light[0:3].view(3, 1, 1) - planes[POSITION]).norm(dim=0).clamp_min(1e-6)
        scale = light[6] / (4.0 * math.pi**2 * d * d)
        visibility = planes[light_pass_planes(k)].sum(0) / (light[3:6].sum() * scale).clamp_min(1e-12)
        for radius in radii.visibility:
            out.append(reference_variable_blur(visibility[None], mask, radius * pixels_per_unit))
    return torch.cat(out).numpy()


def shifted(g, dy, dx):
    """The same object moved by (dy, dx) pixels, cut where it leaves the frame."""
    planes = np.zeros_like(g.planes)
    h, w = g.height, g.width
    src = g.planes[:, max(0, -dy) : h - max(0, dy), max(0, -dx) : w - max(0, dx)]
    planes[:, max(0, dy) : max(0, dy) + src.shape[1], max(0, dx) : max(0, dx) + src.shape[2]] = src
    return GBuffer(planes, g.lights, g.camera_position, focal_px=g.focal_px)


CASES = [  # (height, width, lights, seed, sphere radius, shift, (near, far, albedo) radii)
    (45, 38, 2, 1, 0.8, (0, 0), (0.05, 0.15, 0.05)),
    (97, 131, 1, 3, 0.4, (20, -40), (0.1, 0.4, 0.02)),  # off-centre: the crop is inside the frame
    (130, 77, 3, 6, 1.3, (0, 0), (0.5, 1.0, 0.001)),  # cut by every edge; widths up to the 64 px clamp
    (200, 170, 2, 5, 0.3, (-70, 60), (0.003, 0.3, 0.2)),  # small, near a corner, octaves from 0.5 px
    (256, 256, 2, 0, 0.8, (0, 0), (0.01, 0.03, 0.01)),  # the bench's frame and the default radii
    (128, 192, 1, 4, 0.5, (-30, 50), (0.02, 0.2, 0.05)),  # sides divisible by every factor, crop off the edges
]


@pytest.mark.parametrize("h,w,lights,seed,radius,shift,radii", CASES)
def test_matches_the_whole_frame_transcription(h, w, lights, seed, radius, shift, radii):
    g = shifted(sphere_gbuffer(h, w, n_lights=lights, seed=seed, radius=radius), *shift)
    radii = FilterRadii(radii[:2], radii[2])
    expected = reference_filtered_planes(g, radii)
    got = filtered_planes(g, radii).numpy()
    assert got.shape == expected.shape == (3 + 2 * lights, h, w)
    np.testing.assert_allclose(got, expected, rtol=0, atol=2e-6)
    assert (got[:, ~g.covered] == 0).all()


def test_pixel_order_does_not_matter():
    g = shifted(sphere_gbuffer(70, 90, n_lights=2, seed=2, radius=0.5), 10, -15)
    radii = FilterRadii((0.05, 0.2), 0.1)
    rows = CoveredPixels.of(g)
    shuffled = CoveredPixels(np.random.default_rng(0).permutation(rows.flat.numpy()), g.height, g.width)

    def at(pixels):
        planes = pixel_planes(g, pixels)
        lights = prefilter.lights_tensor(g, "cpu")
        _, d = prefilter.light_geometry(lights, planes[POSITION])
        visibility = prefilter.visibility_of(lights, prefilter.light_passes(planes, 2), prefilter.light_scale_of(lights, d))
        return pixels.scatter(filtered_at(g, radii, pixels, planes, visibility))

    np.testing.assert_array_equal(at(shuffled).numpy(), at(rows).numpy())


def test_blur_and_average_down_are_the_torch_operators():
    x = torch.rand(3, 37, 52)
    for sigma in (0.5, 1.0, 2.0, 3.7):
        np.testing.assert_allclose(prefilter._blur(x, sigma).numpy(), reference_blur(x, sigma).numpy(), rtol=0, atol=1e-6)
    for factor in (2, 4):
        for y in (x, x[:, :36, :52]):  # partial windows, then whole ones only
            np.testing.assert_array_equal(prefilter._average_down(y, factor).numpy(),
                                          F.avg_pool2d(y[None], factor, ceil_mode=True)[0].numpy())


def test_a_single_covered_pixel_and_an_empty_frame():
    g = sphere_gbuffer(20, 20, n_lights=1)
    g.planes[0] = 0
    assert (filtered_planes(g, FilterRadii((0.1, 0.2), 0.1)).numpy() == 0).all()
    g = sphere_gbuffer(20, 20, n_lights=1)
    g.planes[0] = 0
    g.planes[0, 7, 9] = 1
    radii = FilterRadii((0.1, 0.2), 0.1)
    np.testing.assert_allclose(filtered_planes(g, radii).numpy(), reference_filtered_planes(g, radii), atol=2e-6)
