"""Cycles ground truth of a sample: path tracing of the real materials (subsurface skin).

Same rig, camera, lights and near-zero pixel filter as the G-buffer, so the target is the
radiance at exactly the pixel centre the G-buffer describes. Full light transport, optional
OpenImageDenoise, transparent film; only the dataset's point lights light the face.
"""

from __future__ import annotations

from .camera_model import CameraSpec
from .render_rig import GROUND_TRUTH_LAYER, RenderRig

MAX_BOUNCES = 8


def render_ground_truth(rig: RenderRig, camera: CameraSpec, lights: list[dict], exr_path: str,
                        samples: int, denoise: bool, seed: int = 0) -> float:
    """Render view layer `GroundTruth` into `exr_path`; returns seconds."""
    cycles = rig.scene.cycles
    cycles.samples = samples
    cycles.use_denoising = denoise
    if denoise:
        cycles.denoiser = "OPENIMAGEDENOISE"
    cycles.max_bounces = MAX_BOUNCES
    cycles.diffuse_bounces = cycles.glossy_bounces = 4
    cycles.transmission_bounces = cycles.transparent_max_bounces = MAX_BOUNCES
    cycles.seed = seed
    rig.scene.view_layers[GROUND_TRUTH_LAYER].samples = samples
    rig.set_camera(camera)
    rig.set_lights(lights)
    return rig.render((GROUND_TRUTH_LAYER,), exr_path)
