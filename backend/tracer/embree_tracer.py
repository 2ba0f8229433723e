"""The G-buffer recipe as a ray tracer on Embree (docs/formats/scene.md, "Tracing"): the only definition.

Primary rays through the pixel centres give coverage, UV, shading normal and position by
barycentric interpolation of the exported mesh; albedo is the baked texture read bilinearly at
the UV. Each light pass is the white-Lambertian shadowed irradiance of dataset.md,
`c * P * max(0, n.l) * V / (4 pi^2 d^2)`, where V, the visible fraction of the spherical light,
comes from a fixed, stratified set of shadow rays: deterministic (a still camera gives a still
image) and free of Cycles' sampling noise. Shadow rays are spent only where they matter: none
where n.l <= 0, four at the light's rim first, and the full set only where those four disagree
(the penumbra).

How it is computed (the values are those of the recipe; only the work is cut): the frame is cut
into bands of rows that each thread traces and shades from start to end (primary rays, surface,
shadow rays), so a band's arrays stay in the CPU's cache and numpy and Embree, which both release
the GIL, keep every core busy; per-pixel values are held as [channels, pixels] float32 columns,
and everything a hit reads of its triangle (corner positions, normals and UVs, the face normal)
comes from one row of a per-triangle table, gathered once; primary rays go only through pixels
that some triangle's projected bounding box covers. docs/formats/scene.md, "Speed", has the figures.
"""

from __future__ import annotations

import math
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

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
BAND_PIXELS = 16384  # pixels a thread traces and shades together: their arrays stay in the CPU's cache
STAGES = ("primary", "surface", "shadows")


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


def _dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-column dot product of [3, N] columns, [N]."""
    return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]


def _length(x: np.ndarray) -> np.ndarray:
    return np.sqrt(_dot(x, x))


def _normalize(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(_length(x), 1e-12)


def _tangent_frame(n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two unit vectors orthogonal to unit vectors n [3, N] (Duff et al. 2017, branch-free), [3, N] each."""
    sign = np.where(n[2] >= 0, np.float32(1), np.float32(-1))
    a = -1 / (sign + n[2])
    b = n[0] * n[1] * a
    t1 = np.stack([1 + sign * n[0] ** 2 * a, sign * b, -sign * n[0]])
    t2 = np.stack([b, sign + n[1] ** 2 * a, -n[1]])
    return t1, t2


def bilinear(texture: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Texture [S, S, C] (row 0 = v 0) at uv [2, N] in [0, 1] (clamped at the edges), [C, N]."""
    height, width, channels = texture.shape
    texels = texture.reshape(-1, channels)  # flat: np.take is several times faster than 2-D indexing
    x = np.clip(uv[0], 0, 1) * width - 0.5
    y = np.clip(uv[1], 0, 1) * height - 0.5
    x0, y0 = np.floor(x), np.floor(y)
    fx, fy = x - x0, y - y0
    x0i, y0i = x0.astype(np.intp), y0.astype(np.intp)
    left, right = np.clip(x0i, 0, width - 1), np.clip(x0i + 1, 0, width - 1)  # clamp to the edge texels
    top, bottom = np.clip(y0i, 0, height - 1) * width, np.clip(y0i + 1, 0, height - 1) * width

    def texel(row: np.ndarray, col: np.ndarray) -> np.ndarray:
        return texels.take(row + col, axis=0).T

    upper = texel(top, left) * (1 - fx) + texel(top, right) * fx
    lower = texel(bottom, left) * (1 - fx) + texel(bottom, right) * fx
    return upper * (1 - fy) + lower * fy


class CameraRays:
    """Primary rays through the pixel centres of a footprint (dataset.md "Camera convention"): the
    camera's origin, and each pixel's direction from a term per column and one per row (a pixel's
    direction is linear in its column and row before normalisation)."""

    def __init__(self, camera: dict, rows: slice, cols: slice):
        matrix = np.asarray(camera["matrix_world"], np.float64)
        flip = np.diag([1.0, -1.0, -1.0])  # OpenCV camera axes -> Blender's (looks down -Z)
        to_world = matrix[:3, :3] @ flip @ np.linalg.inv(np.asarray(camera["K"], np.float64))
        self.origin = matrix[:3, 3].astype(np.float32)
        self.rows = rows
        self._by_col = (np.arange(cols.start, cols.stop) + 0.5)[:, None] * to_world[:, 0] + to_world[:, 2]
        self._by_row = (np.arange(rows.start, rows.stop) + 0.5)[:, None] * to_world[:, 1]

    def directions(self, band: slice, local: np.ndarray | None) -> np.ndarray:
        """Unit directions [n, 3] float32 of the pixels of frame rows `band` (inside the footprint),
        row-major, or of those at `local` (row-major indices inside the band); in float64 until
        rounded once, as Embree takes them."""
        rows = self._by_row[band.start - self.rows.start : band.stop - self.rows.start]
        if local is None:
            d = (rows[:, None, :] + self._by_col[None]).reshape(-1, 3)
        else:
            d = rows[local // len(self._by_col)] + self._by_col[local % len(self._by_col)]
        return (d / np.sqrt(np.einsum("ij,ij->i", d, d))[:, None]).astype(np.float32)


def _project(camera: dict, points: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Pixel columns and rows (continuous: pixel j spans [j, j + 1)) of world points [N, 3]; None when
    one of them lies behind the camera."""
    matrix = np.asarray(camera["matrix_world"], np.float64)
    local = (np.asarray(points, np.float64) - matrix[:3, 3]) @ matrix[:3, :3]  # camera axes (Blender: looks down -Z)
    depth = -local[:, 2]
    if np.any(depth <= 1e-9):
        return None
    K = np.asarray(camera["K"], np.float64)
    return K[0, 0] * local[:, 0] / depth + K[0, 2], -K[1, 1] * local[:, 1] / depth + K[1, 2]


@dataclass
class _Frame:
    """What every band of one trace shares: the planes it writes, flattened [C, H * W], its rays and
    the footprint's pixels they are cast through (`candidates`, [rows, cols] bool; None: all)."""

    flat: np.ndarray
    width: int
    cols: slice
    rays: CameraRays
    candidates: np.ndarray | None
    lights: np.ndarray

    def candidates_in(self, band: slice) -> np.ndarray | None:
        """Row-major indices inside frame rows `band` of the pixels to trace; None: all of them."""
        if self.candidates is None:
            return None
        return np.flatnonzero(self.candidates[band.start - self.rays.rows.start : band.stop - self.rays.rows.start])

    def pixels(self, band: slice, local: np.ndarray) -> np.ndarray:
        """Flat frame indices of a band's pixels given by their row-major index inside it."""
        span = self.cols.stop - self.cols.start
        return (band.start + local // span) * self.width + self.cols.start + local % span


@dataclass
class _Surface:
    """The hits of a band as [channels, n] columns."""

    position: np.ndarray  # [3, n]
    normal: np.ndarray  # [3, n] unit shading normal, facing the ray
    face: np.ndarray  # [3, n] unit geometric normal, facing the ray
    uv: np.ndarray  # [2, n]
    corners: np.ndarray  # [3, 8, n] per corner of the hit triangle: position, shading normal (as exported), uv
    weights: tuple[np.ndarray, np.ndarray, np.ndarray]  # barycentrics of corners 0, 1, 2, [n] each


class EmbreeTracer:
    """G-buffers of one scene (built once; about 0.1 s per 100k triangles) for any camera and lights."""

    name = "embree"

    def __init__(self, scene: TracedScene, shadow_rays: int = DEFAULT_SHADOW_RAYS):
        self.scene = scene
        self.pattern = disk_pattern(shadow_rays)
        self._embree = rtcore_scene.EmbreeScene()
        TriangleMesh(self._embree, scene.positions, scene.triangles)
        # Embree builds its structure on the first query: here, so that two threads never both do.
        self._embree.run(np.zeros((1, 3), np.float32), np.ones((1, 3), np.float32))
        corners = scene.positions[scene.triangles]  # [T, 3, 3]
        face_normal = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
        face_normal /= np.maximum(np.linalg.norm(face_normal, axis=1, keepdims=True), 1e-12)
        # Row t: corner 0, 1, 2 of triangle t (position, normal, uv: 8 values each), then its face normal.
        per_corner = np.concatenate([corners, scene.corner_normal, scene.corner_uv], axis=2).reshape(-1, 24)
        self._triangle_rows = np.ascontiguousarray(np.concatenate([per_corner, face_normal], axis=1), np.float32)
        low, high = scene.positions.min(0), scene.positions.max(0)
        self._box = np.array([[x, y, z] for x in (low[0], high[0]) for y in (low[1], high[1]) for z in (low[2], high[2])],
                             np.float64)
        self._offset = RAY_OFFSET * max(float(np.linalg.norm(high - low)), 1e-6)
        self.seconds: dict[str, float] = {}  # the last trace's: "total" (wall) and each stage's, summed over threads
        self._threads = max(1, min(os.cpu_count() or 1, 8))
        self._pool = ThreadPoolExecutor(self._threads, thread_name_prefix="tracer") if self._threads > 1 else None

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
        frame = _Frame(planes.reshape(planes.shape[0], -1), width, cols, CameraRays(camera, rows, cols),
                       self._candidates(camera, rows, cols), lights)
        step = max(1, BAND_PIXELS // max(1, cols.stop - cols.start))
        bands = [slice(r, min(r + step, rows.stop)) for r in range(rows.start, rows.stop, step)]
        if self._pool is None or len(bands) < 2:
            band_seconds = [self._trace_band(frame, band) for band in bands]
        else:
            band_seconds = list(self._pool.map(lambda band: self._trace_band(frame, band), bands))
        self.seconds = {stage: sum(s[stage] for s in band_seconds) for stage in STAGES}
        self.seconds["total"] = time.perf_counter() - start
        return GBuffer(planes, lights, np.asarray(camera["position"], np.float32), source=source,
                       focal_px=float(np.asarray(camera["K"])[0][0]))

    def _footprint(self, camera: dict, width: int, height: int) -> tuple[slice, slice]:
        """Rows and columns that can see the mesh: its projected bounding box, one pixel wider;
        the whole frame when part of the mesh lies behind the camera."""
        projected = _project(camera, self._box)
        if projected is None:
            return slice(0, height), slice(0, width)
        cols, rows = projected
        c0, c1 = int(np.clip(np.floor(cols.min()) - 1, 0, width)), int(np.clip(np.ceil(cols.max()) + 1, 0, width))
        r0, r1 = int(np.clip(np.floor(rows.min()) - 1, 0, height)), int(np.clip(np.ceil(rows.max()) + 1, 0, height))
        return slice(r0, max(r0, r1)), slice(c0, max(c0, c1))

    def _candidates(self, camera: dict, rows: slice, cols: slice) -> np.ndarray | None:
        """[rows, cols] bool: the footprint's pixels inside the projected bounding box (one pixel wider)
        of some triangle, the only ones a primary ray can hit (the rays that miss cost half as much as
        those that hit); None, trace them all, when the mesh has more triangles than half the footprint
        has pixels (the boxes would cost more than the rays they save) or a vertex is behind the camera."""
        n_rows, n_cols = rows.stop - rows.start, cols.stop - cols.start
        if 2 * len(self.scene.triangles) > n_rows * n_cols:
            return None
        projected = _project(camera, self.scene.positions)
        if projected is None:
            return None
        corners = np.stack(projected, -1)[self.scene.triangles] - [cols.start, rows.start]  # [T, 3, (col, row)]
        low = np.maximum(np.floor(corners.min(1)).astype(np.int64) - 1, 0)
        high = np.minimum(np.ceil(corners.max(1)).astype(np.int64) + 1, [n_cols - 1, n_rows - 1])
        inside = (low <= high).all(1)
        (c0, r0), (c1, r1) = low[inside].T, high[inside].T + 1
        # Each box adds 1 to the pixels inside it: +1 and -1 at its corners in a difference array,
        # summed along both axes.
        stride = n_cols + 1
        corner_index = np.concatenate([r0 * stride + c0, r0 * stride + c1, r1 * stride + c0, r1 * stride + c1])
        signs = np.repeat([1.0, -1.0, -1.0, 1.0], len(c0))
        boxes = np.bincount(corner_index, signs, minlength=(n_rows + 1) * stride).reshape(n_rows + 1, stride)
        return boxes.cumsum(0).cumsum(1)[:n_rows, :n_cols] > 0.5

    def _trace_band(self, frame: _Frame, band: slice) -> dict[str, float]:
        """Trace and shade frame rows `band` into frame.flat; returns the seconds of each stage."""
        seconds = dict.fromkeys(STAGES, 0.0)
        start = time.perf_counter()
        local = frame.candidates_in(band)
        directions = frame.rays.directions(band, local)
        hit = self._embree.run(np.broadcast_to(frame.rays.origin, directions.shape), directions, output=1)
        hits = np.flatnonzero(hit["primID"] >= 0)
        seconds["primary"] = time.perf_counter() - start
        if not len(hits):
            return seconds
        start = time.perf_counter()
        surface = self._surface(hit, hits, directions)
        # Every plane is written at the covered pixels at once.
        pixels = frame.pixels(band, hits if local is None else local[hits])
        flat = frame.flat
        flat[0, pixels] = 1.0
        flat[1:3, pixels] = surface.uv
        flat[3:6, pixels] = surface.normal
        flat[6:9, pixels] = surface.position
        flat[9:12, pixels] = bilinear(self.scene.albedo, surface.uv)
        seconds["surface"] = time.perf_counter() - start
        start = time.perf_counter()
        lifted = _smooth_surface_offset(surface)
        for k, light in enumerate(frame.lights):
            flat[FIXED_PLANES + 3 * k : FIXED_PLANES + 3 * k + 3, pixels] = self._light_pass(light, surface, lifted)
        seconds["shadows"] = time.perf_counter() - start
        return seconds

    def _surface(self, hit: dict, hits: np.ndarray, directions: np.ndarray) -> _Surface:
        """Barycentric interpolation at the hits `hits` (indices into the band's rays)."""
        u, v = hit["u"].take(hits), hit["v"].take(hits)
        weights = (1 - u - v, u, v)
        rows = np.ascontiguousarray(self._triangle_rows.take(hit["primID"].take(hits), axis=0).T)  # [27, n]
        corners = rows[:24].reshape(3, 8, -1)
        mixed = corners[0] * weights[0] + corners[1] * weights[1] + corners[2] * weights[2]  # [8, n]
        face = rows[24:27]
        # Cycles turns both normals to face the ray where it hits a triangle's back.
        facing = np.where(_dot(face, directions.take(hits, axis=0).T) > 0, np.float32(-1), np.float32(1))
        return _Surface(position=mixed[0:3], normal=_normalize(mixed[3:6]) * facing, face=face * facing,
                        uv=mixed[6:8], corners=corners, weights=weights)

    def _light_pass(self, light: np.ndarray, surface: _Surface, lifted: np.ndarray) -> np.ndarray:
        """[3, n] shadowed white-Lambertian irradiance of one light at the surface points."""
        centre, colour, power, radius = light[0:3, None], light[3:6, None], float(light[6]), float(light[7])
        to_light = centre - surface.position
        distance = np.maximum(_length(to_light), 1e-6)
        l = to_light / distance
        n_dot_l = _dot(surface.normal, l)
        visible = np.zeros(len(distance), np.float32)
        lit = np.flatnonzero(n_dot_l > 0)
        if len(lit):
            origins = self._shadow_origins(surface, lifted, l[:, lit], n_dot_l[lit], lit)
            visible[lit] = self._visible_fraction(origins, centre, l[:, lit], radius)
        scale = power / (4 * math.pi**2 * distance**2) * np.maximum(n_dot_l, 0) * visible
        return colour * scale

    def _shadow_origins(self, surface: _Surface, lifted: np.ndarray, l: np.ndarray, n_dot_l: np.ndarray,
                        lit: np.ndarray) -> np.ndarray:
        """Where the shadow rays of the lit points start, [3, m]."""
        face = surface.face[:, lit]
        face_dot_l = _dot(face, l)
        # Cycles lifts shadow rays of triangles at grazing angles to the light onto the smooth
        # surface (its default geometry offset, 0.1), fully where n.l + ng.l < 0.1, not at all
        # past 0.2; and a ray never hits the triangle it starts on: start on the light's side.
        cutoff = TERMINATOR_OFFSET
        amount = np.where(n_dot_l < cutoff, np.clip(2 - (face_dot_l + n_dot_l) / cutoff, 0, 1),
                          np.clip(1 - face_dot_l / cutoff, 0, 1))
        side = np.where(face_dot_l >= 0, np.float32(1), np.float32(-1))
        return surface.position[:, lit] + lifted[:, lit] * amount + face * side * self._offset

    def _visible_fraction(self, origins: np.ndarray, centre: np.ndarray, l: np.ndarray, radius: float) -> np.ndarray:
        """Mean unoccluded fraction of rays from origins [3, m] to points of the light's disk (radius,
        facing the points); one ray to the centre for a point light. [m] float32."""
        to_centre = centre - origins
        starts = np.ascontiguousarray(origins.T)  # [m, 3], as Embree takes them, for every ray of a point
        if radius <= 0:
            return self._unoccluded(starts, to_centre)
        t1, t2 = _tangent_frame(l)
        t1, t2 = radius * t1, radius * t2

        def unoccluded(points: np.ndarray, subset=slice(None)) -> np.ndarray:  # [P, m] of points [P, 2] of the disk
            return np.stack([self._unoccluded(starts[subset], to_centre[:, subset] + a * t1[:, subset] + b * t2[:, subset])
                             for a, b in points])

        rim = unoccluded(self.pattern[:RIM_RAYS])
        fraction = rim.mean(0)
        penumbra = np.flatnonzero((fraction > 0) & (fraction < 1))
        if len(penumbra) and len(self.pattern) > RIM_RAYS:
            inner = unoccluded(self.pattern[RIM_RAYS:], penumbra)
            fraction[penumbra] = (rim[:, penumbra].sum(0) + inner.sum(0)) / len(self.pattern)
        return fraction

    def _unoccluded(self, starts: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        """1 where the segment start -> start + offset is free of geometry, else 0: starts [m, 3],
        offsets [3, m]; [m] float32."""
        length = _length(offsets)
        directions = np.empty(starts.shape, np.float32)
        np.divide(offsets, np.maximum(length, 1e-12), out=directions.T)
        occluded = self._embree.run(starts, directions, length * np.float32(1 - 1e-4), query="OCCLUDED")
        return (occluded < 0).astype(np.float32)


def _smooth_surface_offset(surface: _Surface) -> np.ndarray:
    """Where the smooth surface lies above the flat triangle at each hit, [3, n] (Hanika 2021,
    "Hacking the shadow terminator", as Cycles' shadow terminator geometry offset): the hit
    moved onto the tangent planes of the corners it lies below, blended by barycentrics."""
    lifted = np.zeros_like(surface.position)
    for corner, weight in zip(surface.corners, surface.weights):
        position, normal = corner[0:3], corner[3:6]
        below = np.minimum(_dot(surface.position - position, normal), 0)
        lifted -= below * weight * normal
    return lifted
