"""Pinhole camera of a sample: Blender's matrix_world plus lens, and the pixel intrinsics K.

K follows docs/formats/dataset.md "Camera convention": OpenCV camera coordinates
(x right, y down, z forward), pixels measured from the top-left corner, so the centre of pixel
(row i, col j) is (j + 0.5, i + 0.5). Pure math; `from_object` reads a Blender camera.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

DEFAULT_LENS_MM = 50.0
DEFAULT_SENSOR_MM = 36.0


@dataclass
class CameraSpec:
    matrix_world: np.ndarray  # 4x4 camera-to-world, Blender convention (looks down -Z, +Y up)
    lens_mm: float = DEFAULT_LENS_MM
    sensor_width_mm: float = DEFAULT_SENSOR_MM
    sensor_height_mm: float = 24.0
    sensor_fit: str = "AUTO"  # Blender's AUTO / HORIZONTAL / VERTICAL
    shift_x: float = 0.0
    shift_y: float = 0.0

    @classmethod
    def from_object(cls, camera_object) -> "CameraSpec":
        data = camera_object.data
        if data.type != "PERSP":
            raise ValueError(f"camera {camera_object.name!r} is {data.type}; only perspective cameras are supported")
        return cls(np.array(camera_object.matrix_world, dtype=np.float64), data.lens, data.sensor_width,
                   data.sensor_height, data.sensor_fit, data.shift_x, data.shift_y)

    def to_json(self) -> dict:
        """Every field, JSON-ready (the preview sends its camera to the G-buffer worker this way)."""
        return {**{f.name: getattr(self, f.name) for f in fields(self)},
                "matrix_world": np.asarray(self.matrix_world, dtype=np.float64).tolist()}

    @classmethod
    def from_json(cls, record: dict) -> "CameraSpec":
        return cls(**{**record, "matrix_world": np.array(record["matrix_world"], dtype=np.float64)})

    @property
    def position(self) -> np.ndarray:
        return np.asarray(self.matrix_world, dtype=np.float64)[:3, 3]

    def intrinsics(self, width: int, height: int) -> np.ndarray:
        """3x3 K in pixels for a width x height render with square pixels."""
        fit = self.sensor_fit
        if fit == "AUTO":
            fit = "HORIZONTAL" if width >= height else "VERTICAL"
            sensor = self.sensor_width_mm
        else:
            sensor = self.sensor_width_mm if fit == "HORIZONTAL" else self.sensor_height_mm
        fit_pixels = width if fit == "HORIZONTAL" else height
        focal = self.lens_mm / sensor * fit_pixels
        # Blender's shift is a fraction of the fitted dimension; +x moves the frame right, +y up.
        cx = width / 2 - self.shift_x * fit_pixels
        cy = height / 2 + self.shift_y * fit_pixels
        return np.array([[focal, 0, cx], [0, focal, cy], [0, 0, 1]], dtype=np.float64)

    def to_record(self, width: int, height: int) -> dict:
        """The "camera" object of a sample record."""
        return {
            "matrix_world": np.asarray(self.matrix_world, dtype=np.float64).tolist(),
            "K": self.intrinsics(width, height).tolist(),
            "position": self.position.tolist(),
        }


def project(matrix_world, K, points: np.ndarray) -> np.ndarray:
    """World points [..., 3] -> pixel (col, row) [..., 2] per the dataset's camera convention."""
    world_to_camera = np.linalg.inv(np.asarray(matrix_world, dtype=np.float64))
    homogeneous = np.concatenate([points, np.ones(points.shape[:-1] + (1,))], axis=-1)
    camera = homogeneous @ world_to_camera.T
    opencv = camera[..., :3] * np.array([1.0, -1.0, -1.0])
    pixels = opencv @ np.asarray(K, dtype=np.float64).T
    return pixels[..., :2] / pixels[..., 2:3]
