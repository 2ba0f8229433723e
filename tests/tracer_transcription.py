"""The tracer's recipe (docs/formats/scene.md, "Tracing") transcribed in whole-frame numpy, for tests.

No bands, no candidate pixels, no compiled loops: every pixel's primary ray, then array arithmetic
over all hits, one Embree query per shadow-ray point of the disk pattern. backend/tracer computes
the same values with its per-pixel kernels; tests/test_tracer.py holds the two equal.
"""

from __future__ import annotations

import math

import numpy as np

from backend.gbuffer import FIXED_PLANES, PLANES_PER_LIGHT
from backend.tracer.embree_tracer import RIM_RAYS, TERMINATOR_OFFSET, EmbreeTracer


def _dot(a, b):
    return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]


def _normalize(x):
    return x / np.maximum(np.sqrt(_dot(x, x)), 1e-12)


def _bilinear(texture, uv):
    height, width, channels = texture.shape
    texels = texture.reshape(-1, channels)
    x = np.clip(uv[0], 0, 1) * width - 0.5
    y = np.clip(uv[1], 0, 1) * height - 0.5
    x0, y0 = np.floor(x), np.floor(y)
    fx, fy = x - x0, y - y0
    x0i, y0i = x0.astype(np.intp), y0.astype(np.intp)
    left, right = np.clip(x0i, 0, width - 1), np.clip(x0i + 1, 0, width - 1)
    top, bottom = np.clip(y0i, 0, height - 1) * width, np.clip(y0i + 1, 0, height - 1) * width

    def texel(row, col):
        return texels.take(row + col, axis=0).T

    return (texel(top, left) * (1 - fx) + texel(top, right) * fx) * (1 - fy) + \
        (texel(bottom, left) * (1 - fx) + texel(bottom, right) * fx) * fy


def trace(tracer: EmbreeTracer, camera: dict, lights: np.ndarray, resolution: tuple[int, int]) -> np.ndarray:
    """The G-buffer planes [12 + 3L, H, W] of the recipe."""
    width, height = resolution
    lights = np.atleast_2d(np.asarray(lights, np.float32))
    matrix = np.asarray(camera["matrix_world"], np.float64)
    to_world = matrix[:3, :3] @ np.diag([1.0, -1.0, -1.0]) @ np.linalg.inv(np.asarray(camera["K"], np.float64))
    cols, rows = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    d = rows.reshape(-1, 1) * to_world[:, 1] + (cols.reshape(-1, 1) * to_world[:, 0] + to_world[:, 2])
    directions = (d / np.sqrt(np.einsum("ij,ij->i", d, d))[:, None]).astype(np.float32)
    origin = matrix[:3, 3].astype(np.float32)
    hit = tracer._embree.run(np.broadcast_to(origin, directions.shape), directions, output=1)
    hits = np.flatnonzero(hit["primID"] >= 0)
    planes = np.zeros((FIXED_PLANES + PLANES_PER_LIGHT * len(lights), height * width), np.float32)
    if not len(hits):
        return planes.reshape(-1, height, width)
    # Barycentric interpolation of the hit triangles' corners.
    u, v = hit["u"][hits], hit["v"][hits]
    weights = (1 - u - v, u, v)
    table = tracer._triangle_rows[hit["primID"][hits]].T  # [27, n]
    corners = table[:24].reshape(3, 8, -1)
    mixed = corners[0] * weights[0] + corners[1] * weights[1] + corners[2] * weights[2]
    facing = np.where(_dot(table[24:27], directions[hits].T) > 0, np.float32(-1), np.float32(1))
    position, normal, face, uv = mixed[0:3], _normalize(mixed[3:6]) * facing, table[24:27] * facing, mixed[6:8]
    planes[0, hits], planes[1:3, hits], planes[3:6, hits], planes[6:9, hits] = 1.0, uv, normal, position
    planes[9:12, hits] = _bilinear(tracer.scene.albedo, uv)
    # Hanika's shadow terminator offset: the hit moved onto the tangent planes of the corners it lies below.
    lifted = np.zeros_like(position)
    for corner, weight in zip(corners, weights):
        below = np.minimum(_dot(position - corner[0:3], corner[3:6]), 0)
        lifted -= below * weight * corner[3:6]
    for k, light in enumerate(lights):
        centre, colour, power, radius = light[0:3, None], light[3:6, None], float(light[6]), float(light[7])
        to_light = centre - position
        distance = np.maximum(np.sqrt(_dot(to_light, to_light)), 1e-6)
        l = to_light / distance
        n_dot_l = _dot(normal, l)
        visible = np.zeros(len(distance), np.float32)
        lit = np.flatnonzero(n_dot_l > 0)
        if len(lit):
            visible[lit] = _visible_fraction(tracer, position[:, lit], face[:, lit], lifted[:, lit], l[:, lit],
                                             n_dot_l[lit], centre, radius)
        scale = power / (4 * math.pi**2 * distance**2) * np.maximum(n_dot_l, 0) * visible
        planes[FIXED_PLANES + 3 * k : FIXED_PLANES + 3 * k + 3, hits] = colour * scale
    return planes.reshape(-1, height, width)


def _visible_fraction(tracer, position, face, lifted, l, n_dot_l, centre, radius):
    face_dot_l = _dot(face, l)
    cutoff = TERMINATOR_OFFSET
    amount = np.where(n_dot_l < cutoff, np.clip(2 - (face_dot_l + n_dot_l) / cutoff, 0, 1),
                      np.clip(1 - face_dot_l / cutoff, 0, 1))
    side = np.where(face_dot_l >= 0, np.float32(1), np.float32(-1))
    origins = position + lifted * amount + face * side * tracer._offset
    to_centre = centre - origins
    starts = np.ascontiguousarray(origins.T)

    def unoccluded(offsets, subset=slice(None)):
        length = np.sqrt(_dot(offsets, offsets))
        directions = np.ascontiguousarray((offsets / np.maximum(length, 1e-12)).T, np.float32)
        occluded = tracer._embree.run(np.ascontiguousarray(starts[subset]), directions, length * np.float32(1 - 1e-4),
                                      query="OCCLUDED")
        return (occluded < 0).astype(np.float32)

    if radius <= 0:
        return unoccluded(to_centre)
    n = l
    sign = np.where(n[2] >= 0, np.float32(1), np.float32(-1))
    a = -1 / (sign + n[2])
    b = n[0] * n[1] * a
    t1 = radius * np.stack([1 + sign * n[0] ** 2 * a, sign * b, -sign * n[0]])
    t2 = radius * np.stack([b, sign + n[1] ** 2 * a, -n[1]])
    pattern = tracer.pattern
    rim = np.stack([unoccluded(to_centre + p * t1 + q * t2) for p, q in pattern[:RIM_RAYS]])
    fraction = rim.mean(0)
    penumbra = np.flatnonzero((fraction > 0) & (fraction < 1))
    if len(penumbra) and len(pattern) > RIM_RAYS:
        sub = (slice(None), penumbra)
        inner = np.stack([unoccluded(to_centre[sub] + p * t1[sub] + q * t2[sub], penumbra)
                          for p, q in pattern[RIM_RAYS:]])
        fraction[penumbra] = (rim[:, penumbra].sum(0) + inner.sum(0)) / len(pattern)
    return fraction
