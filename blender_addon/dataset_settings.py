"""Dataset settings as plain data: shared by the add-on panel, the operator and the headless CLI.

Everything that decides the pixels of a dataset lives here, so two runs with equal settings
produce the same dataset and a run with other settings into the same folder can be refused.
Distances are in units of the target's bounding radius and light power in W per radius^2,
so a face modelled in centimetres or in metres gives the same images (docs/formats/dataset.md).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from .errors import SettingsError

FRONT_AXES = ("-Y", "+Y", "-X", "+X", "-Z", "+Z")
MAX_RESOLUTION = 8192
MAX_LIGHTS = 8
SPLIT_NAMES = ("train", "val", "test")  # the labelled splits (fractions of `samples`)
UNLABELLED = "unlabelled"  # the split of the G-buffer-only views


@dataclass
class DatasetSettings:
    scene: str = ""
    object: str = ""
    resolution: tuple[int, int] = (256, 256)
    samples: int = 100
    unlabelled: int = 0  # extra views with a G-buffer only (no ground truth, traced in milliseconds): teacher-labelled
    seed: int = 0
    gt_samples: int = 64
    gt_denoise: bool = True
    gbuffer_shadow_rays: int = 16  # per light and penumbra pixel of the traced light passes (a square)
    camera_distance: tuple[float, float] = (2.2, 3.0)
    camera_elevation_deg: tuple[float, float] = (-20.0, 30.0)
    camera_azimuth_deg: tuple[float, float] = (-60.0, 60.0)
    front_axis: str = "-Y"
    lights: tuple[int, int] = (1, 2)
    light_distance: tuple[float, float] = (2.5, 5.0)
    light_elevation_deg: tuple[float, float] = (-30.0, 70.0)
    light_azimuth_deg: tuple[float, float] = (-110.0, 110.0)
    light_power: tuple[float, float] = (200.0, 800.0)
    light_radius: tuple[float, float] = (0.0, 0.15)
    light_color_saturation: tuple[float, float] = (0.0, 0.35)
    split: dict = field(default_factory=lambda: {"train": 0.8, "val": 0.1, "test": 0.1})

    def to_json(self) -> dict:
        """JSON-ready dict (tuples become lists), the form stored in manifest.json."""
        data = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}

    @classmethod
    def from_json(cls, data: dict) -> "DatasetSettings":
        defaults = cls()
        values = {}
        for name, value in data.items():
            if not hasattr(defaults, name):
                raise SettingsError(f"unknown dataset setting {name!r}")
            values[name] = tuple(value) if isinstance(getattr(defaults, name), tuple) else value
        return cls(**values)

    def validate(self) -> None:
        """Raise SettingsError naming the first setting that is out of range."""
        width, height = self.resolution
        if not (1 <= width <= MAX_RESOLUTION and 1 <= height <= MAX_RESOLUTION):
            raise SettingsError(
                f"resolution {width}x{height} is out of range: width and height must be 1..{MAX_RESOLUTION}"
            )
        _check_int("samples", self.samples, 1, 10_000_000)
        _check_int("unlabelled", self.unlabelled, 0, 10_000_000)
        _check_int("gt_samples", self.gt_samples, 1, 1_000_000)
        _check_int("gbuffer_shadow_rays", self.gbuffer_shadow_rays, 4, 1024)
        if round(self.gbuffer_shadow_rays ** 0.5) ** 2 != self.gbuffer_shadow_rays:
            raise SettingsError(f"gbuffer_shadow_rays = {self.gbuffer_shadow_rays} must be a square number "
                                "(4, 9, 16, 25, ...): the rays form a stratified grid over the light")
        low, high = self.lights
        if low < 1 or high < low or high > MAX_LIGHTS:
            raise SettingsError(
                f"lights per sample {low}..{high} is out of range: need 1 <= min <= max <= {MAX_LIGHTS} "
                "(a sample without a light would be black)"
            )
        if self.front_axis not in FRONT_AXES:
            raise SettingsError(f"front axis {self.front_axis!r} must be one of {', '.join(FRONT_AXES)}")
        for name in ("camera_distance", "light_distance", "light_power"):
            _check_range(name, getattr(self, name), positive=True)
        for name in ("camera_elevation_deg", "camera_azimuth_deg", "light_elevation_deg",
                     "light_azimuth_deg", "light_radius", "light_color_saturation"):
            _check_range(name, getattr(self, name), positive=False)
        if self.camera_distance[0] <= 1.0:
            raise SettingsError("camera_distance must exceed 1 bounding radius, or the camera is inside the object")
        if max(abs(e) for e in self.camera_elevation_deg) >= 90:
            raise SettingsError("camera_elevation_deg must stay inside (-90, 90) degrees")
        if self.light_color_saturation[1] > 1:
            raise SettingsError("light_color_saturation must lie in 0..1")
        if set(self.split) != set(SPLIT_NAMES) or any(v < 0 for v in self.split.values()) \
                or abs(sum(self.split.values()) - 1) > 1e-6:
            raise SettingsError(f"split must give train/val/test fractions >= 0 that sum to 1, got {self.split}")


def _check_int(name: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise SettingsError(f"{name} = {value} is out of range {low}..{high}")


def _check_range(name: str, pair: tuple[float, float], positive: bool) -> None:
    low, high = pair
    if high < low or (positive and low <= 0) or (not positive and name == "light_radius" and low < 0):
        need = "0 < min <= max" if positive else "min <= max"
        raise SettingsError(f"{name} = {low}..{high} is invalid: need {need}")
