"""The tracer's per-pixel arithmetic as compiled loops (numba): what embree_tracer does between its
Embree queries, for one band of pixels at a time.

Numpy spent more time on this arithmetic than Embree spent tracing (about 30 array passes per hit,
each a temporary of the band's size); here each pixel is read once and written once. The values are
the recipe's (docs/formats/scene.md, "Tracing"), in float32 as before: constants are float32 so that
no step is promoted to float64 where numpy's was not. Every kernel releases the GIL, so the tracer's
band threads run them on all cores, and caches its machine code beside this file (the first trace
on a fresh install compiles them, about a second, once).
"""

from __future__ import annotations

import math

import numba
import numpy as np

_compiled = numba.njit(cache=True, nogil=True, error_model="numpy")

ONE, ZERO = np.float32(1.0), np.float32(0.0)
TINY_LENGTH = np.float32(1e-12)
MIN_DISTANCE = np.float32(1e-6)
HALF = np.float32(0.5)
FOUR_PI_SQUARED = np.float32(4 * math.pi**2)
SHADOW_LENGTH = np.float32(1 - 1e-4)  # a shadow ray stops just short of the light's disk


@_compiled
def primary_directions(by_row, by_col, local):
    """Unit directions [n, 3] float32 of the pixels at row-major indices `local` of a band whose rows
    and columns add up to the pixel's direction (CameraRays); float64 until rounded once."""
    n_cols = by_col.shape[0]
    out = np.empty((local.shape[0], 3), np.float32)
    for i in range(local.shape[0]):
        row, col = local[i] // n_cols, local[i] % n_cols
        x = by_row[row, 0] + by_col[col, 0]
        y = by_row[row, 1] + by_col[col, 1]
        z = by_row[row, 2] + by_col[col, 2]
        length = math.sqrt(x * x + y * y + z * z)
        out[i, 0], out[i, 1], out[i, 2] = x / length, y / length, z / length
    return out


@_compiled
def surface(u, v, prim, hits, directions, triangle_rows, albedo, pixels, flat):
    """Interpolate the hits `hits` (indices into the band's rays) of their triangles' rows (per corner:
    position, shading normal, uv; then the face normal) and write the fixed planes of `pixels` in flat
    [C, H * W]: coverage, uv, shading normal, position and the albedo read bilinearly at the uv.

    Returns per hit [n, 3] float32: position, unit shading normal and unit face normal (both facing
    the ray, as Cycles turns them), and where the smooth surface lies above the flat triangle (Hanika
    2021, "Hacking the shadow terminator", as Cycles' geometry offset: the hit moved onto the tangent
    planes of the corners it lies below, blended by barycentrics)."""
    n = hits.shape[0]
    position = np.empty((n, 3), np.float32)
    normal = np.empty((n, 3), np.float32)
    face = np.empty((n, 3), np.float32)
    lifted = np.empty((n, 3), np.float32)
    height, width = albedo.shape[0], albedo.shape[1]
    mixed = np.empty(8, np.float32)  # the hit's position, shading normal and uv
    for i in range(n):
        ray = hits[i]
        w1, w2 = u[ray], v[ray]
        w0 = ONE - w1 - w2
        row = triangle_rows[prim[ray]]
        for c in range(8):
            mixed[c] = row[c] * w0 + row[8 + c] * w1 + row[16 + c] * w2
        facing = ONE
        if row[24] * directions[ray, 0] + row[25] * directions[ray, 1] + row[26] * directions[ray, 2] > ZERO:
            facing = -ONE
        length = max(math.sqrt(mixed[3] * mixed[3] + mixed[4] * mixed[4] + mixed[5] * mixed[5]), TINY_LENGTH)
        p = pixels[i]
        flat[0, p] = ONE
        flat[1, p], flat[2, p] = mixed[6], mixed[7]
        for c in range(3):
            position[i, c] = mixed[c]
            normal[i, c] = mixed[3 + c] / length * facing
            face[i, c] = row[24 + c] * facing
            flat[3 + c, p] = normal[i, c]
            flat[6 + c, p] = mixed[c]
            lifted[i, c] = ZERO
        for corner in range(3):
            base = 8 * corner
            weight = w0 if corner == 0 else (w1 if corner == 1 else w2)
            below = ZERO
            for c in range(3):
                below += (mixed[c] - row[base + c]) * row[base + 3 + c]
            below = min(below, ZERO)
            for c in range(3):
                lifted[i, c] -= below * weight * row[base + 3 + c]
        _bilinear_into(albedo, height, width, mixed[6], mixed[7], flat, 9, p)
    return position, normal, face, lifted


@numba.njit(inline="always", cache=True, nogil=True)
def _bilinear_into(texture, height, width, u, v, flat, plane, p):
    """texture [S, S, 3] (row 0 = v 0) at (u, v), clamped at the edges, into flat[plane:plane + 3, p]."""
    x = min(max(u, ZERO), ONE) * np.float32(width) - HALF
    y = min(max(v, ZERO), ONE) * np.float32(height) - HALF
    x0, y0 = math.floor(x), math.floor(y)
    fx, fy = x - np.float32(x0), y - np.float32(y0)
    left, right = min(max(int(x0), 0), width - 1), min(max(int(x0) + 1, 0), width - 1)
    top, bottom = min(max(int(y0), 0), height - 1), min(max(int(y0) + 1, 0), height - 1)
    for c in range(3):
        upper = texture[top, left, c] * (ONE - fx) + texture[top, right, c] * fx
        lower = texture[bottom, left, c] * (ONE - fx) + texture[bottom, right, c] * fx
        flat[plane + c, p] = upper * (ONE - fy) + lower * fy


@_compiled
def light_geometry(light, position, normal):
    """Per point: distance to the light's centre (at least 1e-6), the unit direction l [n, 3] towards
    it, and n.l."""
    n = position.shape[0]
    distance = np.empty(n, np.float32)
    l = np.empty((n, 3), np.float32)
    n_dot_l = np.empty(n, np.float32)
    for i in range(n):
        x, y, z = light[0] - position[i, 0], light[1] - position[i, 1], light[2] - position[i, 2]
        d = max(math.sqrt(x * x + y * y + z * z), MIN_DISTANCE)
        l[i, 0], l[i, 1], l[i, 2] = x / d, y / d, z / d
        distance[i] = d
        n_dot_l[i] = normal[i, 0] * l[i, 0] + normal[i, 1] * l[i, 1] + normal[i, 2] * l[i, 2]
    return distance, l, n_dot_l


@_compiled
def shadow_frames(light, lit, position, face, lifted, l, n_dot_l, terminator, offset):
    """Where the shadow rays of the points `lit` start, [m, 3], the offset from there to the light's
    centre, [m, 3], and two vectors spanning the light's disk as the points see it (radius times a
    unit tangent frame of l, Duff et al. 2017), [m, 3] each.

    Cycles lifts shadow rays of triangles at grazing angles to the light onto the smooth surface (its
    default geometry offset, `terminator`), fully where n.l + ng.l < terminator, not at all past twice
    that; and a ray never hits the triangle it starts on: it starts `offset` off it, on the light's side."""
    m = lit.shape[0]
    radius = light[7]
    starts = np.empty((m, 3), np.float32)
    to_centre = np.empty((m, 3), np.float32)
    t1 = np.empty((m, 3), np.float32)
    t2 = np.empty((m, 3), np.float32)
    for j in range(m):
        i = lit[j]
        face_dot_l = face[i, 0] * l[i, 0] + face[i, 1] * l[i, 1] + face[i, 2] * l[i, 2]
        if n_dot_l[i] < terminator:
            amount = min(max(np.float32(2) - (face_dot_l + n_dot_l[i]) / terminator, ZERO), ONE)
        else:
            amount = min(max(ONE - face_dot_l / terminator, ZERO), ONE)
        side = ONE if face_dot_l >= ZERO else -ONE
        for c in range(3):
            starts[j, c] = position[i, c] + lifted[i, c] * amount + face[i, c] * side * offset
            to_centre[j, c] = light[c] - starts[j, c]
        nx, ny, nz = l[i, 0], l[i, 1], l[i, 2]
        sign = ONE if nz >= ZERO else -ONE
        a = -ONE / (sign + nz)
        b = nx * ny * a
        t1[j, 0], t1[j, 1], t1[j, 2] = radius * (ONE + sign * nx * nx * a), radius * (sign * b), radius * (-sign * nx)
        t2[j, 0], t2[j, 1], t2[j, 2] = radius * b, radius * (sign + ny * ny * a), radius * (-ny)
    return starts, to_centre, t1, t2


@_compiled
def disk_rays(subset, starts, to_centre, t1, t2, points):
    """Shadow rays from the points `subset` (indices into starts) to `points` [P, 2] of the light's
    disk: origins, unit directions [len(subset) * P, 3] and lengths (point-major within each point)."""
    count = subset.shape[0] * points.shape[0]
    origins = np.empty((count, 3), np.float32)
    directions = np.empty((count, 3), np.float32)
    lengths = np.empty(count, np.float32)
    k = 0
    for s in range(subset.shape[0]):
        j = subset[s]
        for q in range(points.shape[0]):
            a, b = points[q, 0], points[q, 1]
            x = to_centre[j, 0] + a * t1[j, 0] + b * t2[j, 0]
            y = to_centre[j, 1] + a * t1[j, 1] + b * t2[j, 1]
            z = to_centre[j, 2] + a * t1[j, 2] + b * t2[j, 2]
            length = math.sqrt(x * x + y * y + z * z)
            scale = max(length, TINY_LENGTH)
            origins[k, 0], origins[k, 1], origins[k, 2] = starts[j, 0], starts[j, 1], starts[j, 2]
            directions[k, 0], directions[k, 1], directions[k, 2] = x / scale, y / scale, z / scale
            lengths[k] = length * SHADOW_LENGTH
            k += 1
    return origins, directions, lengths


@_compiled
def unoccluded_counts(occluded, per_point):
    """Rays that reached the light per point, from Embree's answers (0: occluded, -1: free) of
    `per_point` consecutive rays each, [m] float32."""
    m = occluded.shape[0] // per_point
    counts = np.zeros(m, np.float32)
    for j in range(m):
        for q in range(per_point):
            if occluded[j * per_point + q] < 0:
                counts[j] += ONE
    return counts


@_compiled
def write_light_pass(light, distance, n_dot_l, lit, visible, pixels, flat, plane):
    """The light pass `colour * P / (4 pi^2 d^2) * max(0, n.l) * V` of every point into
    flat[plane:plane + 3, pixels]; V is `visible` at the points `lit` and 0 elsewhere."""
    n = distance.shape[0]
    power = light[6]
    fraction = np.zeros(n, np.float32)
    for j in range(lit.shape[0]):
        fraction[lit[j]] = visible[j]
    for i in range(n):
        scale = power / (FOUR_PI_SQUARED * (distance[i] * distance[i])) * max(n_dot_l[i], ZERO) * fraction[i]
        for c in range(3):
            flat[plane + c, pixels[i]] = light[3 + c] * scale
