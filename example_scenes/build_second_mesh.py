"""Build the second test mesh of the division-of-labour checks: not the scan, another scale.

Suzanne subdivided twice (about 15,700 triangles), 0.25 units wide (the scan is in millimetres,
about 190 wide), re-unwrapped with Smart UV Project (many islands, as a game-ready head has),
with the add-on's skin material whose base colour is a procedural skin texture: a warm base,
darker freckle blobs, a redder band where lips would be and two brow bands.

Usage: python example_scenes/build_second_mesh.py OUT.blend   (the bpy module's Python)
Then, e.g.: python -m backend generate --scene OUT.blend --out data2 --samples 60 --resolution 160
"""

import sys
from pathlib import Path

import bpy
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from blender_addon.scene_setup import bounds, make_skin_material  # noqa: E402
from example_scenes.build_suzanne import packed_image  # noqa: E402

TEXTURE_SIZE = 512
WIDTH = 0.25  # scene units across the head


def skin_texture(seed: int = 3):
    """Freckles and bands over a warm base: colour that changes on several scales across the UVs."""
    rng = np.random.default_rng(seed)
    u, v = np.meshgrid(np.linspace(0, 1, TEXTURE_SIZE), np.linspace(0, 1, TEXTURE_SIZE))
    base = np.stack([0.72 + 0.08 * u, 0.48 + 0.05 * v, 0.38 + 0.04 * u * v], -1)
    darkening = np.zeros_like(u)
    for cu, cv, radius in zip(rng.random(220), rng.random(220), rng.uniform(0.004, 0.012, 220)):
        darkening = np.maximum(darkening, np.exp(-((u - cu) ** 2 + (v - cv) ** 2) / (2 * radius**2)))
    colour = base * (1 - 0.35 * darkening[..., None])
    lips = np.exp(-((v - 0.3) ** 2) / (2 * 0.02**2))[..., None] * np.array([0.1, -0.12, -0.08])
    brows = (np.abs(v - 0.75) < 0.015)[..., None] * np.array([-0.35, -0.25, -0.2])
    rgba = np.concatenate([np.clip(colour + lips + brows, 0.02, 1), np.ones_like(u)[..., None]], -1)
    return packed_image("NF_Second_Albedo", rgba)


def main(out_path: str) -> None:
    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.ops.mesh.primitive_monkey_add()
    head = bpy.context.active_object
    head.name = "SecondHead"
    subdivision = head.modifiers.new("Subdivision", "SUBSURF")
    subdivision.levels = subdivision.render_levels = 2
    bpy.ops.object.modifier_apply(modifier=subdivision.name)
    scale = WIDTH / max(head.dimensions)
    head.scale = (scale, scale, scale)
    bpy.ops.object.transform_apply(location=False, rotation=False, scale=True)
    bpy.ops.object.mode_set(mode="EDIT")
    bpy.ops.mesh.select_all(action="SELECT")
    bpy.ops.uv.smart_project(island_margin=0.01)
    bpy.ops.object.mode_set(mode="OBJECT")
    bpy.ops.object.shade_smooth()
    head.data.materials.append(make_skin_material(bounds(head)[1], skin_texture()))
    bpy.ops.wm.save_as_mainfile(filepath=str(Path(out_path).resolve()))


if __name__ == "__main__":
    main(sys.argv[1])
