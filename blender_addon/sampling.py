"""Random cameras, lights and the train/val/test split of a dataset, from (seed, sample index) only.

Sample i's camera and lights depend on nothing but the settings and i, so a resumed run renders
exactly what an uninterrupted one would. Pure numpy: no bpy, testable anywhere.
"""

from __future__ import annotations

import colorsys
import math

import numpy as np

from .dataset_settings import SPLIT_NAMES, UNLABELLED, DatasetSettings

_AXES = {"-Y": (0, -1, 0), "+Y": (0, 1, 0), "-X": (-1, 0, 0), "+X": (1, 0, 0), "-Z": (0, 0, -1), "+Z": (0, 0, 1)}


def face_frame(front_axis: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(front, up, side) unit vectors: world up is +Z unless the face looks along Z, then +Y."""
    front = np.array(_AXES[front_axis], dtype=np.float64)
    up = np.array((0.0, 1.0, 0.0) if front_axis.endswith("Z") else (0.0, 0.0, 1.0))
    side = np.cross(up, front)
    return front, up, side


def direction(front_axis: str, azimuth_deg: float, elevation_deg: float) -> np.ndarray:
    """Unit vector from the face centre: azimuth turns about world up from the front, elevation lifts."""
    front, up, side = face_frame(front_axis)
    az, el = math.radians(azimuth_deg), math.radians(elevation_deg)
    return math.cos(el) * (math.cos(az) * front + math.sin(az) * side) + math.sin(el) * up


def look_at(eye: np.ndarray, target: np.ndarray, up: np.ndarray) -> np.ndarray:
    """Blender camera matrix_world (4x4): the camera looks down its local -Z with +Y up."""
    back = eye - target
    back /= np.linalg.norm(back)
    right = np.cross(up, back)
    right /= np.linalg.norm(right)
    cam_up = np.cross(back, right)
    matrix = np.eye(4)
    matrix[:3, 0], matrix[:3, 1], matrix[:3, 2], matrix[:3, 3] = right, cam_up, back, eye
    return matrix


def sample_view(settings: DatasetSettings, centre, radius: float, index: int) -> tuple[np.ndarray, list[dict]]:
    """Camera matrix_world and light records of sample `index` (see dataset.md "Sample record")."""
    rng = np.random.default_rng([settings.seed, index])
    centre = np.asarray(centre, dtype=np.float64)
    _, up, _ = face_frame(settings.front_axis)

    def uniform(pair):
        return float(rng.uniform(pair[0], pair[1]))

    eye = centre + radius * uniform(settings.camera_distance) * direction(
        settings.front_axis, uniform(settings.camera_azimuth_deg), uniform(settings.camera_elevation_deg))
    camera = look_at(eye, centre, up)

    lights = []
    for k in range(int(rng.integers(settings.lights[0], settings.lights[1] + 1))):
        position = centre + radius * uniform(settings.light_distance) * direction(
            settings.front_axis, uniform(settings.light_azimuth_deg), uniform(settings.light_elevation_deg))
        color = colorsys.hsv_to_rgb(rng.uniform(), uniform(settings.light_color_saturation), 1.0)
        lights.append({
            "name": f"NF_Light_{k}",
            "type": "POINT",
            "position": [float(x) for x in position],
            "color": [float(c) for c in color],
            "power": uniform(settings.light_power) * radius**2,
            "radius": uniform(settings.light_radius) * radius,
            "lightgroup": f"light{k}",
        })
    return camera, lights


def assign_split(count: int, seed: int, fractions: dict, unlabelled: int = 0) -> dict[str, list[int]]:
    """Deterministic shuffle of 0..count-1 into train/val/test; val and test get rounded shares.

    The `unlabelled` G-buffer-only views follow them: indices count..count+unlabelled-1, their
    cameras and lights drawn like any other sample's (sample_view depends on the index only).
    """
    order = np.random.default_rng([seed, count, 0x5EED]).permutation(count)
    n_val = int(round(count * fractions["val"]))
    n_test = min(int(round(count * fractions["test"])), count - n_val)
    parts = {"val": order[:n_val], "test": order[n_val:n_val + n_test], "train": order[n_val + n_test:]}
    split = {name: sorted(int(i) for i in parts[name]) for name in SPLIT_NAMES}
    split[UNLABELLED] = list(range(count, count + unlabelled))
    return split
