"""The G-buffer recipe as a ray tracer on Embree (docs/formats/scene.md, "Tracing"): the only definition.

Primary rays through the pixel centres give coverage, UV, shading normal and position by
barycentric interpolation of the exported mesh; albedo is the baked texture read bilinearly at
the UV. Each light pass is the white-Lambertian shadowed irradiance of dataset.md,
`c * P * max(0, n.l) * V / (4 pi^2 d^2)`, where V, the visible fraction of the spherical light,
comes from a fixed, stratified set of shadow rays: deterministic (a still camera gives a still
image) and free of Cycles' sampling noise. Shadow rays are spent only where they matter: none
where n.l <= 0, four at the light's rim first, and the full set only where those four disagree
(the penumbra).
"""

from __future__ import annotations

import math
import os
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from embreex import rtcore_scene
from embreex.mesh_construction import TriangleMesh

from backend.errors import GBufferError
from backend.gbuffer import FIXED_PLANES, LIGHT_FIELDS, PLANES_PER_LIGHT, GBuffer
from backend.tracer.scene_file import TracedScene

TRACER_VERSION = 1  # bump when traced values change (the dataset records it)
DEFAULT_SHADOW_RAYS = 16  # per light and pixel in the penumbra; a perfect square (stratified grid)
RIM_RAYS = 4  # traced first; the rest only where these disagree
TERMINATOR_OFFSET = 0.1  # Cycles' default shadow terminator geometry offset of an object
RAY_OFFSET = 1e-5  # in units of the scene's extent: shadow rays start this far off the surface
MIN_RAYS_PER_THREAD = 16384  # below this a thread costs more than it saves


def disk_pattern(count: int) -> np.ndarray:
    """`count` (a square) stratified points on the unit disk, [count, 2]; the first four lie on
    the rim at 90 degree steps (Shirley-Chiu concentric map of a regular grid's cell centres)."""
    side = math.isqrt(count)
    if side * side != count or side < 2:
        raise ValueError(f"shadow rays must be a square number >= 4, got {count}")
    cells = (np.stack(np.meshgrid(np.arange(side), np.arange(side), indexing="ij"), -1).reshape(-1, 2) + 0.5) / side
    a, b = 2 * cells[:, 0] - 1, 2 * cells[:, 1] - 1
    first = np.abs(a) > np.abs(b)
    radius = np.where(first, a, b)
    angle = np.where(first, (math.pi / 4) * b / np.where(a == 0, 1, a),
                     math.pi / 2 - (math.pi / 4) * a / np.where(b == 0, 1, b))
    points = np.stack([radius * np.cos(angle), radius * np.sin(angle)], -1)
    corners = [0, side - 1, side * (side - 1), side * side - 1]  # the grid's corners map onto the rim
    order = corners + [i for i in range(count) if i not in corners]
    rim = points[order[:RIM_RAYS]]
    points[order[:RIM_RAYS]] = rim / np.linalg.norm(rim, axis=1, keepdims=True)  # exactly on the rim
    return points[order].astype(np.float32)


def _normalize(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def _tangent_frame(n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two unit vectors orthogonal to unit vectors n [N, 3] (Duff et al. 2017, branch-free)."""
    sign = np.where(n[:, 2] >= 0, 1.0, -1.0)
    a = -1.0 / (sign + n[:, 2])
    b = n[:, 0] * n[:, 1] * a
    t1 = np.stack([1 + sign * n[:, 0] ** 2 * a, sign * b, -sign * n[:, 0]], -1)
    t2 = np.stack([b, sign + n[:, 1] ** 2 * a, -n[:, 1]], -1)
    return t1.astype(np.float32), t2.astype(np.float32)


def bilinear(texture: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Texture [S, S, C] (row 0 = v 0) at uv [N, 2] in [0, 1] (clamped at the edges), [N, C]."""
    height, width = texture.shape[:2]
    x = np.clip(uv[:, 0], 0, 1) * width - 0.5
    y = np.clip(uv[:, 1], 0, 1) * height - 0.5
    x0, y0 = np.floor(x), np.floor(y)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    x0i, y0i = x0.astype(np.int64), y0.astype(np.int64)
    x0i, x1i = np.clip(x0i, 0, width - 1), np.clip(x0i + 1, 0, width - 1)  # clamp to the edge texels
    y0i, y1i = np.clip(y0i, 0, height - 1), np.clip(y0i + 1, 0, height - 1)
    top = texture[y0i, x0i] * (1 - fx) + texture[y0i, x1i] * fx
    bottom = texture[y1i, x0i] * (1 - fx) + texture[y1i, x1i] * fx
    return (top * (1 - fy) + bottom * fy).astype(np.float32)


def camera_rays(camera: dict, width: int, height: int, rows: slice, cols: slice):
    """World-space origin [3] and unit directions [n, 3] through the centres of the pixels in
    rows x cols (dataset.md "Camera convention"), row-major."""
    matrix = np.asarray(camera["matrix_world"], np.float64)
    K = np.asarray(camera["K"], np.float64)
    i, j = np.meshgrid(np.arange(rows.start, rows.stop), np.arange(cols.start, cols.stop), indexing="ij")
    pixels = np.stack([j.ravel() + 0.5, i.ravel() + 0.5, np.ones(i.size)], -1)
    opencv = pixels @ np.linalg.inv(K).T
    blender = opencv * np.array([1.0, -1.0, -1.0])  # OpenCV camera axes -> Blender's (looks down -Z)
    directions = _normalize(blender @ matrix[:3, :3].T)
    return matrix[:3, 3].astype(np.float32), directions.astype(np.float32)


class EmbreeTracer:
    """G-buffers of one scene (built once; about 0.1 s per 100k triangles) for any camera and lights."""

    name = "embree"

    def __init__(self, scene: TracedScene, shadow_rays: int = DEFAULT_SHADOW_RAYS):
        self.scene = scene
        self.pattern = disk_pattern(shadow_rays)
        self._embree = rtcore_scene.EmbreeScene()
        TriangleMesh(self._embree, scene.positions, scene.triangles)
        corners = scene.positions[scene.triangles]  # [T, 3, 3]
        self._corners = corners
        self._face_normal = _normalize(np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]))
        extent = float(np.linalg.norm(scene.positions.max(0) - scene.positions.min(0)))
        self._offset = RAY_OFFSET * max(extent, 1e-6)
        self.seconds: dict[str, float] = {}  # stage times of the last trace
        # Embree releases the GIL, so ray batches split over threads run on every core.
        self._threads = max(1, min(os.cpu_count() or 1, 8))
        self._pool = ThreadPoolExecutor(self._threads, thread_name_prefix="tracer") if self._threads > 1 else None

    def _run(self, origins: np.ndarray, directions: np.ndarray, dists: np.ndarray | None = None,
             query: str = "INTERSECT"):
        """Embree over [n, 3] rays, split over the pool: `primID`, `u`, `v` of the first hits (INTERSECT),
        or occlusion as Embree reports it (OCCLUDED: < 0 where unoccluded)."""
        def one(chunk: slice):
            kwargs = {"dists": dists[chunk]} if dists is not None else {}
            if query == "INTERSECT":
                hit = self._embree.run(origins[chunk], directions[chunk], output=1, **kwargs)
                return {key: hit[key] for key in ("primID", "u", "v")}
            return np.asarray(self._embree.run(origins[chunk], directions[chunk], query=query, **kwargs))

        n = len(origins)
        parts = min(self._threads, max(1, n // MIN_RAYS_PER_THREAD))
        if parts == 1 or self._pool is None:
            return one(slice(0, n))
        bounds = np.linspace(0, n, parts + 1).astype(int)
        results = list(self._pool.map(one, [slice(a, b) for a, b in zip(bounds, bounds[1:])]))
        if query == "INTERSECT":
            return {key: np.concatenate([r[key] for r in results]) for key in results[0]}
        return np.concatenate(results)

    def trace(self, camera: dict, lights: np.ndarray, resolution: tuple[int, int], source: str = "<traced>") -> GBuffer:
        """The G-buffer (gbuffer.md section 1) of `camera` (a sample record's "camera": matrix_world,
        K, position) and `lights` [L, 8] (position, colour, power, radius) at resolution (W, H)."""
        lights = np.atleast_2d(np.asarray(lights, np.float32))
        if lights.ndim != 2 or lights.shape[1] != LIGHT_FIELDS or len(lights) == 0:
            raise GBufferError(f"{source}: lights must be [L >= 1, {LIGHT_FIELDS}], got {lights.shape}")
        width, height = resolution
        start = time.perf_counter()
        rows, cols = self._footprint(camera, width, height)
        planes = np.zeros((FIXED_PLANES + PLANES_PER_LIGHT * len(lights), height, width), np.float32)
        origin, directions = camera_rays(camera, width, height, rows, cols)
        hit = self._run(np.ascontiguousarray(np.broadcast_to(origin, directions.shape)), directions)
        covered = hit["primID"] >= 0
        self.seconds = {"primary": time.perf_counter() - start}
        if covered.any():
            self._fill(planes, rows, cols, covered, hit, directions, lights)
        self.seconds["total"] = time.perf_counter() - start
        return GBuffer(planes, lights, np.asarray(camera["position"], np.float32), source=source,
                       focal_px=float(np.asarray(camera["K"])[0][0]))

    def _footprint(self, camera: dict, width: int, height: int) -> tuple[slice, slice]:
        """Rows and columns that can see the mesh: its projected bounding box, one pixel wider;
        the whole frame when part of the mesh lies behind the camera."""
        matrix = np.asarray(camera["matrix_world"], np.float64)
        low, high = self.scene.positions.min(0), self.scene.positions.max(0)
        box = np.array([[x, y, z] for x in (low[0], high[0]) for y in (low[1], high[1]) for z in (low[2], high[2])])
        local = (box - matrix[:3, 3]) @ matrix[:3, :3]  # camera axes (Blender: looks down -Z)
        depth = -local[:, 2]
        if np.any(depth <= 1e-9):
            return slice(0, height), slice(0, width)
        K = np.asarray(camera["K"], np.float64)
        cols = K[0, 0] * local[:, 0] / depth + K[0, 2]
        rows = -K[1, 1] * local[:, 1] / depth + K[1, 2]
        c0, c1 = int(np.clip(np.floor(cols.min()) - 1, 0, width)), int(np.clip(np.ceil(cols.max()) + 1, 0, width))
        r0, r1 = int(np.clip(np.floor(rows.min()) - 1, 0, height)), int(np.clip(np.ceil(rows.max()) + 1, 0, height))
        return slice(r0, max(r0, r1)), slice(c0, max(c0, c1))

    def _fill(self, planes, rows, cols, covered, hit, directions, lights) -> None:
        scene = self.scene
        start = time.perf_counter()
        tri = hit["primID"][covered]
        u, v = hit["u"][covered], hit["v"][covered]
        weights = np.stack([1 - u - v, u, v], -1)  # barycentrics of corners 0, 1, 2, [N, 3]
        position = np.einsum("nki,nk->ni", self._corners[tri], weights)
        uv = np.einsum("nki,nk->ni", scene.corner_uv[tri], weights)
        normal = _normalize(np.einsum("nki,nk->ni", scene.corner_normal[tri], weights))
        face = self._face_normal[tri]
        backfacing = (face * directions[covered]).sum(1) > 0  # Cycles turns both normals to face the ray
        normal[backfacing] *= -1
        face[backfacing] *= -1
        # Covered pixels' indices in the flattened frame: every plane is written there at once.
        local = np.nonzero(covered)[0]
        width = planes.shape[2]
        frame_rows = rows.start + local // (cols.stop - cols.start)
        pixels = frame_rows * width + cols.start + local % (cols.stop - cols.start)
        flat = planes.reshape(planes.shape[0], -1)
        flat[0, pixels] = 1.0
        flat[1:3, pixels] = uv.T
        flat[3:6, pixels] = normal.T
        flat[6:9, pixels] = position.T
        flat[9:12, pixels] = bilinear(scene.albedo, uv).T
        self.seconds["surface"] = time.perf_counter() - start
        start = time.perf_counter()
        lifted = self._smooth_surface_offset(tri, weights, position)
        for k, light in enumerate(lights):
            flat[FIXED_PLANES + 3 * k : FIXED_PLANES + 3 * k + 3, pixels] = self._light_pass(
                light, position, normal, face, lifted).T
        self.seconds["shadows"] = time.perf_counter() - start

    def _smooth_surface_offset(self, tri, weights, position) -> np.ndarray:
        """Where the smooth surface lies above the flat triangle at each hit, [N, 3] (Hanika 2021,
        "Hacking the shadow terminator", as Cycles' shadow terminator geometry offset): the hit
        moved onto the tangent planes of the corners it lies below, blended by barycentrics."""
        corners, normals = self._corners[tri], self.scene.corner_normal[tri]  # [N, 3, 3]
        below = np.minimum(np.einsum("nki,nki->nk", position[:, None, :] - corners, normals), 0)  # [N, 3]
        return -np.einsum("nk,nki->ni", below * weights, normals)

    def _light_pass(self, light, position, normal, face, lifted) -> np.ndarray:
        """[N, 3] shadowed white-Lambertian irradiance of one light at N surface points."""
        centre, colour, power, radius = light[0:3], light[3:6], float(light[6]), float(light[7])
        to_light = centre - position
        distance = np.maximum(np.linalg.norm(to_light, axis=1), 1e-6)
        l = to_light / distance[:, None]
        n_dot_l = (normal * l).sum(1)
        visible = np.zeros(len(position), np.float32)
        lit = np.nonzero(n_dot_l > 0)[0]
        if len(lit):
            face_dot_l = (face[lit] * l[lit]).sum(1)
            # Cycles lifts shadow rays of triangles at grazing angles to the light onto the smooth
            # surface (its default geometry offset, 0.1), fully where n.l + ng.l < 0.1, not at all
            # past 0.2; and a ray never hits the triangle it starts on: start on the light's side.
            cutoff = TERMINATOR_OFFSET
            amount = np.where(n_dot_l[lit] < cutoff, np.clip(2 - (face_dot_l + n_dot_l[lit]) / cutoff, 0, 1),
                              np.clip(1 - face_dot_l / cutoff, 0, 1))
            side = np.where(face_dot_l >= 0, 1.0, -1.0)[:, None]
            origins = position[lit] + lifted[lit] * amount[:, None] + face[lit] * side * self._offset
            visible[lit] = self._visible_fraction(origins, centre, l[lit], radius)
        scale = power / (4 * math.pi**2 * distance**2) * np.maximum(n_dot_l, 0) * visible
        return scale[:, None] * colour[None, :]

    def _visible_fraction(self, origins, centre, l, radius) -> np.ndarray:
        """Mean unoccluded fraction of rays from origins [N, 3] to points of the light's disk (radius,
        facing the points); one ray to the centre for a point light."""
        if radius <= 0:
            return self._unoccluded(origins[None], centre[None, None, :])[0]
        t1, t2 = _tangent_frame(l)

        def targets(points: np.ndarray) -> np.ndarray:  # [P, N, 3]: the points of the disk facing each origin
            return centre + radius * (points[:, 0, None, None] * t1 + points[:, 1, None, None] * t2)

        rim = self._unoccluded(origins[None], targets(self.pattern[:RIM_RAYS]))  # [4, N]
        fraction = rim.mean(0)
        penumbra = np.nonzero((fraction > 0) & (fraction < 1))[0]
        if len(penumbra) and len(self.pattern) > RIM_RAYS:
            inner = self._unoccluded(origins[None, penumbra], targets(self.pattern[RIM_RAYS:])[:, penumbra])
            fraction[penumbra] = (rim[:, penumbra].sum(0) + inner.sum(0)) / len(self.pattern)
        return fraction

    def _unoccluded(self, origins: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """1 where the segment origin -> target is free of geometry, else 0: origins [1 or P, N, 3] and
        targets [P, N, 3] (or broadcastable) in one batch of P * N rays; [P, N] float32."""
        offset = targets - origins
        shape = offset.shape[:-1]
        offset = offset.reshape(-1, 3)
        length = np.linalg.norm(offset, axis=1)
        directions = (offset / np.maximum(length, 1e-12)[:, None]).astype(np.float32)
        starts = np.ascontiguousarray(np.broadcast_to(origins, shape + (3,)).reshape(-1, 3), np.float32)
        occluded = self._run(starts, directions, (length * (1 - 1e-4)).astype(np.float32), query="OCCLUDED")
        return (occluded < 0).astype(np.float32).reshape(shape)
