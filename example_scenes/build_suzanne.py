"""Build the tests' small scene: Suzanne with UVs, smooth shading and the add-on's skin material,
its base colour a procedural texture (so albedo varies over UV) packed into the .blend.

Usage: python example_scenes/build_suzanne.py OUT.blend   (the bpy module's Python)
"""

import sys
from pathlib import Path

import bpy
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from blender_addon.scene_setup import bounds, make_skin_material  # noqa: E402

TEXTURE_SIZE = 64


def albedo_texture():
    """Smooth skin-like colours that change with u and v, plus a darker band: the network sees material."""
    u, v = np.meshgrid(np.linspace(0, 1, TEXTURE_SIZE), np.linspace(0, 1, TEXTURE_SIZE))
    band = 1.0 - 0.35 * (np.abs(v - 0.5) < 0.08)
    rgba = np.stack([(0.55 + 0.3 * u) * band, (0.35 + 0.25 * v) * band, 0.3 + 0.1 * u * v, np.ones_like(u)], -1)
    return packed_image("NF_Suzanne_Albedo", rgba)


def packed_image(name: str, rgba: np.ndarray):
    """A float image of rgba [S, S, 4] (row 0 = v 0), packed into the .blend so the file stands alone."""
    image = bpy.data.images.new(name, rgba.shape[1], rgba.shape[0], float_buffer=True)
    image.pixels.foreach_set(rgba.astype(np.float32).ravel())
    image.pack()
    return image


def main(out_path: str) -> None:
    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.ops.mesh.primitive_monkey_add(calc_uvs=True)
    suzanne = bpy.context.active_object
    bpy.ops.object.shade_smooth()
    suzanne.data.materials.append(make_skin_material(bounds(suzanne)[1], albedo_texture()))
    bpy.ops.wm.save_as_mainfile(filepath=str(Path(out_path).resolve()))


if __name__ == "__main__":
    main(sys.argv[1])
