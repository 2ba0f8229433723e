"""The canonical G-buffer every renderer and the trainer read (docs/formats/gbuffer.md, section 1)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from backend.errors import GBufferError

FEATURE_SPEC_VERSION = 3  # 3: G-buffers traced (noise-free light passes), values as 2

# Plane layout of GBuffer.planes: fixed planes first, then three per light.
MASK, U, V = 0, 1, 2
NORMAL = slice(3, 6)
POSITION = slice(6, 9)
ALBEDO = slice(9, 12)
FIXED_PLANES = 12
PLANES_PER_LIGHT = 3
LIGHT_FIELDS = 8  # position xyz, colour rgb, power, radius
ARRAYS = ("planes", "lights", "camera_position", "background")  # checked again whenever one is assigned


def light_pass_planes(k: int) -> slice:
    start = FIXED_PLANES + PLANES_PER_LIGHT * k
    return slice(start, start + PLANES_PER_LIGHT)


@dataclass
class GBuffer:
    planes: np.ndarray  # [12 + 3L, H, W] float32
    lights: np.ndarray  # [L, 8] float32
    camera_position: np.ndarray  # [3] float32
    background: np.ndarray | None = None  # [3, H, W] float32
    source: str = "<memory>"  # file it came from, for error messages
    focal_px: float | None = None  # pinhole focal length in pixels (K[0][0]); the pre-filter needs it

    def __post_init__(self) -> None:
        self.planes = np.ascontiguousarray(self.planes, dtype=np.float32)
        self.lights = np.ascontiguousarray(np.atleast_2d(self.lights), dtype=np.float32)
        self.camera_position = np.ascontiguousarray(self.camera_position, dtype=np.float32).reshape(3)
        if self.background is not None:
            self.background = np.ascontiguousarray(self.background, dtype=np.float32)
        self.validate()
        self._built = True

    def __setattr__(self, name, value) -> None:
        """A G-buffer stays valid: assigning an array (e.g. the background, set after reading) re-checks it,
        and a refused one leaves the old array in place."""
        if name not in ARRAYS or not self.__dict__.get("_built"):
            return super().__setattr__(name, value)
        old = self.__dict__[name]
        super().__setattr__(name, value)
        try:
            self.validate(values=name != "background")
        except GBufferError:
            super().__setattr__(name, old)
            raise

    @property
    def n_lights(self) -> int:
        return self.lights.shape[0]

    @property
    def height(self) -> int:
        return self.planes.shape[1]

    @property
    def width(self) -> int:
        return self.planes.shape[2]

    @property
    def mask(self) -> np.ndarray:
        return self.planes[MASK]

    @property
    def covered(self) -> np.ndarray:
        return self.planes[MASK] > 0.5

    @property
    def uv(self) -> np.ndarray:
        return self.planes[U : V + 1]

    @property
    def normal(self) -> np.ndarray:
        return self.planes[NORMAL]

    @property
    def position(self) -> np.ndarray:
        return self.planes[POSITION]

    @property
    def albedo(self) -> np.ndarray:
        return self.planes[ALBEDO]

    def light_pass(self, k: int) -> np.ndarray:
        return self.planes[light_pass_planes(k)]

    def only_light(self, k: int) -> "GBuffer":
        """The same view lit by light k alone (its radiance is light k's term of gbuffer.md section 5)."""
        planes = np.concatenate([self.planes[:FIXED_PLANES], self.light_pass(k)])
        return GBuffer(planes, self.lights[k : k + 1], self.camera_position, self.background, self.source,
                       self.focal_px)

    def validate(self, values: bool = True) -> None:
        """Raise GBufferError naming the source and the problem; NaN/Inf only matter where covered
        (`values`: look at them too, not only at types and shapes)."""
        for name in ARRAYS:
            array = getattr(self, name)
            if array is not None and (not isinstance(array, np.ndarray) or array.dtype != np.float32
                                      or not array.flags.c_contiguous):
                kind = getattr(array, "dtype", type(array).__name__)
                raise GBufferError(f"{self.source}: {name} must be a C-contiguous float32 numpy array, got {kind}")
        p = self.planes
        if p.ndim != 3 or p.shape[1] == 0 or p.shape[2] == 0:
            raise GBufferError(f"{self.source}: G-buffer planes must be [C, H, W] with H, W > 0, got {p.shape}")
        if self.lights.ndim != 2 or self.lights.shape[1] != LIGHT_FIELDS or self.lights.shape[0] < 1:
            raise GBufferError(f"{self.source}: lights must be [L >= 1, {LIGHT_FIELDS}], got {self.lights.shape}")
        expected = FIXED_PLANES + PLANES_PER_LIGHT * self.n_lights
        if p.shape[0] != expected:
            raise GBufferError(
                f"{self.source}: {p.shape[0]} planes for {self.n_lights} light(s); expected {expected} "
                f"(12 fixed + 3 light-pass planes per light)"
            )
        if self.background is not None and self.background.shape != (3, self.height, self.width):
            raise GBufferError(
                f"{self.source}: background is {self.background.shape}, expected (3, {self.height}, {self.width})"
            )
        if self.focal_px is not None and not (np.isfinite(self.focal_px) and self.focal_px > 0):
            raise GBufferError(f"{self.source}: focal length must be a positive number of pixels, got {self.focal_px}")
        if self.camera_position.shape != (3,):
            raise GBufferError(f"{self.source}: camera_position must have 3 values, got {self.camera_position.shape}")
        if not values:
            return
        if not np.all(np.isfinite(self.lights)) or not np.all(np.isfinite(self.camera_position)):
            raise GBufferError(f"{self.source}: non-finite light or camera values")
        covered = self.covered
        # Screened by one sum over the planes (NaN and Inf survive it; a 512 px frame in 2-3 ms
        # instead of 7 for gathering every plane), checked plane by plane only where it flags a pixel.
        with np.errstate(over="ignore", invalid="ignore"):  # a finite pair may overflow: then checked plane by plane
            screened = np.isfinite(np.add.reduce(p, axis=0)[covered]).all()
        if screened:
            return
        bad = ~np.isfinite(p[:, covered])
        if bad.any():
            plane = int(np.nonzero(bad.any(axis=1))[0][0])
            raise GBufferError(f"{self.source}: NaN or Inf in plane {plane} on {int(bad.any(axis=0).sum())} covered pixel(s)")
