"""An analytic G-buffer (a textured sphere under point lights) for tests and speed benchmarks.

Consistent with docs/formats/dataset.md's light units: the light pass is the unshadowed white
Lambertian radiance `rgb * P * max(0, n.l) / (4 pi^2 d^2)`, so features behave as on real data.
"""

from __future__ import annotations

import math

import numpy as np

from backend.gbuffer import GBuffer


def sphere_gbuffer(height: int, width: int, n_lights: int = 1, seed: int = 0, radius: float = 0.8) -> GBuffer:
    """A unit-distance view of a sphere filling ~`radius` of the frame, with random lights."""
    rng = np.random.default_rng(seed)
    camera = np.array([0.0, 0.0, 3.0], dtype=np.float32)
    rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    sx = ((cols + 0.5) / width * 2 - 1) / radius
    sy = (1 - (rows + 0.5) / height * 2) / radius
    r2 = sx**2 + sy**2
    covered = r2 < 1
    z = np.sqrt(np.clip(1 - r2, 0, 1))
    normal = np.stack([sx, sy, z])
    position = normal.copy()  # unit sphere at the origin
    u = (np.arctan2(sx, z) / math.pi + 1) / 2
    v = np.arccos(np.clip(sy, -1, 1)) / math.pi
    albedo = np.stack([0.6 + 0.3 * np.sin(9 * u), 0.4 + 0.2 * np.cos(7 * v), 0.35 + 0.0 * u])
    lights = np.zeros((n_lights, 8), dtype=np.float32)
    passes = []
    for k in range(n_lights):
        direction = rng.normal(size=3)
        direction[2] = abs(direction[2]) + 0.5
        q = 3.0 * direction / np.linalg.norm(direction)
        colour = rng.uniform(0.6, 1.0, 3)
        power = rng.uniform(200, 600)
        lights[k] = [*q, *colour, power, 0.05]
        to_light = q.reshape(3, 1, 1) - position
        d = np.linalg.norm(to_light, axis=0)
        n_dot_l = np.clip((normal * to_light / d).sum(0), 0, None)
        passes.append(colour.reshape(3, 1, 1) * power * n_dot_l / (4 * math.pi**2 * d**2))
    planes = np.concatenate([covered[None], u[None], v[None], normal, position, albedo, *passes]).astype(np.float32)
    planes[1:, ~covered] = 0
    background = np.broadcast_to(np.array([0.05, 0.05, 0.08], dtype=np.float32).reshape(3, 1, 1),
                                 (3, height, width)).copy()
    # Pixels span 2 / (radius * width) world units at the sphere's front (distance 2 from the camera).
    return GBuffer(planes, lights, camera, background, source=f"<sphere {width}x{height}>", focal_px=radius * width)
