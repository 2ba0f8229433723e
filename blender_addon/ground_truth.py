"""Cycles ground truth of a sample: path tracing of the real materials (subsurface skin).

Same rig, camera, lights and near-zero pixel filter as the G-buffer, so the target is the
radiance at exactly the pixel centre the G-buffer describes. Full light transport, optional
OpenImageDenoise, transparent film; only the dataset's point lights light the face.

One render gives, per light, its light group's pass: the radiance that light alone would give.
With `denoise`, each light's pass is denoised on its own by the compositor's OpenImageDenoise
node, fed the render's denoising albedo and normal. The combined radiance is their sum (light
transport is linear in the lights) with the render's alpha, so the file's passes add up exactly
and each pixel is denoised once per light, not once more for the sum: OpenImageDenoise is half
of a view's cost at the dataset's sample counts. Training learns from one target per light
(docs/formats/dataset.md, "The ground-truth file").
"""

from __future__ import annotations

from .camera_model import CameraSpec
from .render_rig import GROUND_TRUTH_LAYER, RenderRig

MAX_BOUNCES = 8
COMBINED_PART = f"{GROUND_TRUTH_LAYER}.Combined"
LIGHT_PART = f"{GROUND_TRUTH_LAYER}.Combined_{{lightgroup}}"  # one light's radiance (docs/formats/dataset.md)


def render_ground_truth(rig: RenderRig, camera: CameraSpec, lights: list[dict], exr_path: str,
                        samples: int, denoise: bool, seed: int = 0, per_light: bool = True) -> float:
    """Render view layer `GroundTruth` into `exr_path`: the combined pass and, with `per_light`, one
    pass per light (written by the compositor as a multilayer EXR); returns seconds."""
    cycles = rig.scene.cycles
    cycles.samples = samples
    cycles.use_denoising = denoise and not per_light  # per light, the compositor denoises each pass
    if denoise:
        cycles.denoiser = "OPENIMAGEDENOISE"
    cycles.max_bounces = MAX_BOUNCES
    cycles.diffuse_bounces = cycles.glossy_bounces = 4
    cycles.transmission_bounces = cycles.transparent_max_bounces = MAX_BOUNCES
    cycles.seed = seed
    layer = rig.scene.view_layers[GROUND_TRUTH_LAYER]
    layer.samples = samples
    layer.cycles.denoising_store_passes = denoise and per_light  # the albedo and normal the light passes' denoiser reads
    rig.set_camera(camera)
    rig.set_lights(lights)
    if not per_light:  # the combined pass alone, in the render output's own format
        return rig.render((GROUND_TRUTH_LAYER,), exr_path)

    def outputs(tree, render_layers) -> dict:
        parts, total = {}, None
        for light in lights:
            group = light["lightgroup"]
            radiance = render_layers.outputs[f"Combined_{group}"]
            if denoise:
                denoiser = tree.nodes.new("CompositorNodeDenoise")
                tree.links.new(radiance, denoiser.inputs["Image"])
                tree.links.new(render_layers.outputs["Denoising Albedo"], denoiser.inputs["Albedo"])
                tree.links.new(render_layers.outputs["Denoising Normal"], denoiser.inputs["Normal"])
                radiance = denoiser.outputs["Image"]
            parts[LIGHT_PART.format(lightgroup=group)] = radiance
            total = radiance if total is None else _add(tree, total, radiance)
        combined = tree.nodes.new("CompositorNodeSetAlpha")  # premultiplied radiance, alpha = coverage
        combined.inputs["Type"].default_value = "Replace Alpha"
        if total is not None:
            tree.links.new(total, combined.inputs["Image"])
        else:  # no light: black
            combined.inputs["Image"].default_value = (0.0, 0.0, 0.0, 1.0)
        tree.links.new(render_layers.outputs["Alpha"], combined.inputs["Alpha"])
        return {COMBINED_PART: combined.outputs["Image"], **parts}

    return rig.render_composited(GROUND_TRUTH_LAYER, exr_path, outputs)


def _add(tree, a, b):
    """Compositor socket a + b (RGBA, unclamped)."""
    node = tree.nodes.new("ShaderNodeMix")
    node.data_type, node.blend_type, node.clamp_result = "RGBA", "ADD", False
    node.inputs["Factor"].default_value = 1.0
    tree.links.new(a, node.inputs[6])  # the RGBA data type's A and B inputs
    tree.links.new(b, node.inputs[7])
    return node.outputs[2]
