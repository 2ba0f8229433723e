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
shadow rays), so a band's arrays stay in the CPU's cache and Embree and the compiled per-pixel
loops (backend/tracer/pixel_kernels.py), which both release the GIL, keep every core busy;
everything a hit reads of its triangle (corner positions, normals and UVs, the face normal) is one
row of a per-triangle table; all shadow rays of one stage (rim, penumbra) go to Embree in one
query; primary rays go only through pixels that some triangle's projected bounding box covers.
docs/formats/scene.md, "Speed", has the figures.
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
from backend.tracer import pixel_kernels as kernels
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

    def directions(self, band: slice, local: np.ndarray) -> np.ndarray:
        """Unit directions [n, 3] float32 of the pixels at `local` (row-major indices inside frame rows
        `band`, inside the footprint); in float64 until rounded once, as Embree takes them."""
        rows = self._by_row[band.start - self.rows.start : band.stop - self.rows.start]
        return kernels.primary_directions(rows, self._by_col, local)


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

    def candidates_in(self, band: slice) -> np.ndarray:
        """Row-major indices inside frame rows `band` of the pixels to trace."""
        if self.candidates is None:
            return np.arange((band.stop - band.start) * (self.cols.stop - self.cols.start))
        return np.flatnonzero(self.candidates[band.start - self.rays.rows.start : band.stop - self.rays.rows.start])

    def pixels(self, band: slice, local: np.ndarray) -> np.ndarray:
        """Flat frame indices of a band's pixels given by their row-major index inside it."""
        span = self.cols.stop - self.cols.start
        return (band.start + local // span) * self.width + self.cols.start + local % span


@dataclass
class _Surface:
    """The hits of a band, [n, 3] float32 each (pixel_kernels.surface)."""

    position: np.ndarray
    normal: np.ndarray  # unit shading normal, facing the ray
    face: np.ndarray  # unit geometric normal, facing the ray
    lifted: np.ndarray  # where the smooth surface lies above the flat triangle (the shadow terminator offset)


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
        self._offset = np.float32(RAY_OFFSET * max(float(np.linalg.norm(high - low)), 1e-6))
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
        pixels = frame.pixels(band, local[hits])
        surface = _Surface(*kernels.surface(hit["u"], hit["v"], hit["primID"], hits, directions, self._triangle_rows,
                                            self.scene.albedo, pixels, frame.flat))
        seconds["surface"] = time.perf_counter() - start
        start = time.perf_counter()
        for k, light in enumerate(frame.lights):
            self._light_pass(light, surface, pixels, frame.flat, FIXED_PLANES + 3 * k)
        seconds["shadows"] = time.perf_counter() - start
        return seconds

    def _light_pass(self, light: np.ndarray, surface: _Surface, pixels: np.ndarray, flat: np.ndarray,
                    plane: int) -> None:
        """The shadowed white-Lambertian irradiance of one light at the surface points, into
        flat[plane:plane + 3, pixels]."""
        distance, l, n_dot_l = kernels.light_geometry(light, surface.position, surface.normal)
        lit = np.flatnonzero(n_dot_l > 0)
        visible = self._visible_fraction(light, surface, lit, l, n_dot_l) if len(lit) else np.zeros(0, np.float32)
        kernels.write_light_pass(light, distance, n_dot_l, lit, visible, pixels, flat, plane)

    def _visible_fraction(self, light: np.ndarray, surface: _Surface, lit: np.ndarray, l: np.ndarray,
                          n_dot_l: np.ndarray) -> np.ndarray:
        """Mean unoccluded fraction of the rays from the points `lit` to points of the light's disk
        (radius, facing the points); one ray to the centre for a point light. [m] float32."""
        radius = light[7]
        starts, to_centre, t1, t2 = kernels.shadow_frames(light, lit, surface.position, surface.face,
                                                          surface.lifted, l, n_dot_l, np.float32(TERMINATOR_OFFSET),
                                                          self._offset)
        everyone = np.arange(len(lit))
        if radius <= 0:
            return self._unoccluded(everyone, starts, to_centre, t1, t2, np.zeros((1, 2), np.float32))
        rim = self._unoccluded(everyone, starts, to_centre, t1, t2, self.pattern[:RIM_RAYS])
        penumbra = np.flatnonzero((rim > 0) & (rim < RIM_RAYS))
        fraction = rim / np.float32(RIM_RAYS)
        if len(penumbra) and len(self.pattern) > RIM_RAYS:
            inner = self._unoccluded(penumbra, starts, to_centre, t1, t2, self.pattern[RIM_RAYS:])
            fraction[penumbra] = (rim[penumbra] + inner) / np.float32(len(self.pattern))
        return fraction

    def _unoccluded(self, subset: np.ndarray, starts: np.ndarray, to_centre: np.ndarray, t1: np.ndarray,
                    t2: np.ndarray, points: np.ndarray) -> np.ndarray:
        """How many of the rays from the points `subset` to `points` [P, 2] of the light's disk are free
        of geometry, [len(subset)] float32 (for a point light, P = 1 and the point is the centre)."""
        origins, directions, lengths = kernels.disk_rays(subset, starts, to_centre, t1, t2, points)
        occluded = self._embree.run(origins, directions, lengths, query="OCCLUDED")
        return kernels.unoccluded_counts(occluded, len(points))
