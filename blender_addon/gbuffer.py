"""The G-buffer quantities rendered by Cycles: the reference the backend's tracer is checked against.

Datasets and the preview trace their G-buffers in the backend (backend/tracer, docs/formats/scene.md);
this Cycles render of the same quantities stays as the reference of `tests/test_tracer.py` and
of the light-pass noise measurements (benchmarks/noise_ceiling.py). One render, two view layers:
- `GBuffer`: real materials, 1 sample, passes Combined (alpha = coverage), UV, Position,
  DiffCol (albedo);
- `Lights`: every surface overridden by a white Lambertian, one light group per light, so
  `Combined_light<k>` is light k's shadowed direct radiance, something a real-time engine can
  also compute (n.l times shadow visibility); it cannot contain the subsurface answer. Its Normal
  pass is the smooth shading normal those light passes were computed with.
Direct light only (`max_bounces = 0`), near-zero pixel filter, transparent film.
"""

from __future__ import annotations

import os

from .atomic import write_json_atomically
from .camera_model import CameraSpec
from .render_rig import GBUFFER_LAYER, LIGHTS_LAYER, RenderRig

DEFAULT_LIGHT_SAMPLES = 4


def render_gbuffer(rig: RenderRig, camera: CameraSpec, lights: list[dict], exr_path: str,
                   light_samples: int = DEFAULT_LIGHT_SAMPLES, seed: int = 0) -> dict:
    """Render the recipe into `exr_path`; returns the record fields: resolution, camera, lights, seconds."""
    cycles = rig.scene.cycles
    cycles.samples = light_samples
    cycles.use_denoising = False
    cycles.max_bounces = 0
    cycles.seed = seed
    rig.scene.view_layers[LIGHTS_LAYER].samples = light_samples
    rig.set_camera(camera)
    rig.set_lights(lights)
    seconds = rig.render((GBUFFER_LAYER, LIGHTS_LAYER), exr_path)
    width, height = rig.resolution
    return {
        "resolution": [width, height],
        "camera": camera.to_record(width, height),
        "lights": lights,
        "seconds": {"gbuffer": round(seconds, 4)},
    }


def sidecar_path(exr_path: str) -> str:
    """`NAME.gbuffer.exr` (or `NAME.exr`) -> `NAME.json`, where the reader looks for the record."""
    base = exr_path[: -len(".exr")] if exr_path.endswith(".exr") else exr_path
    base = base[: -len(".gbuffer")] if base.endswith(".gbuffer") else base
    return base + ".json"


def write_gbuffer(target, camera: CameraSpec, lights: list[dict], resolution: tuple[int, int],
                  exr_path: str, light_samples: int = DEFAULT_LIGHT_SAMPLES) -> dict:
    """One-off G-buffer (the preview's entry point): EXR plus its sidecar JSON record."""
    with RenderRig(target, resolution) as rig:
        record = render_gbuffer(rig, camera, lights, exr_path, light_samples)
    record["gbuffer"] = os.path.basename(exr_path)
    write_json_atomically(sidecar_path(exr_path), record)
    return record
