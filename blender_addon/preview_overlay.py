"""Draws the preview images over the 3D viewport (a POST_PIXEL draw handler with the `gpu` module).

Only the drawing lives here; `gpu` does not exist in background mode, so it is imported lazily and
the handler is installed only with a UI.
"""

from __future__ import annotations

import bpy

from . import preview_image

MARGIN_PX = 12
MAX_HEIGHT_FRACTION = 0.45  # of the viewport, for the images drawn in a row
_handle = None


def _images(settings) -> list:
    names = [preview_image.PREVIEW_IMAGE]
    if settings.compare:
        names += [preview_image.CYCLES_IMAGE, preview_image.DIFFERENCE_IMAGE]
    return [image for image in (bpy.data.images.get(n) for n in names) if image is not None and image.size[0] > 0]


def _rectangles(region, images, fill_view: bool) -> list[tuple[float, float, float, float]]:
    """(x, y, width, height) of each image: the whole region for a lone viewport-view frame, else a row."""
    if fill_view and len(images) == 1:
        return [(0.0, 0.0, float(region.width), float(region.height))]
    width, height = images[0].size
    count = len(images)
    scale = min((region.width - MARGIN_PX * (count + 1)) / (count * width),
                region.height * MAX_HEIGHT_FRACTION / height)
    w, h = width * scale, height * scale
    return [(MARGIN_PX + i * (w + MARGIN_PX), MARGIN_PX, w, h) for i in range(count)]


def _draw() -> None:
    import gpu
    from gpu_extras.presets import draw_texture_2d

    context = bpy.context
    settings = context.scene.neural_face_preview
    images = _images(settings) if settings.show_overlay else []
    if not images:
        return
    gpu.state.blend_set("ALPHA")  # uncovered pixels of the neural frame are transparent
    for image, (x, y, w, h) in zip(images, _rectangles(context.region, images, settings.source == "VIEWPORT")):
        # The frames are linear radiance; this converts them for the viewport's sRGB framebuffer.
        draw_texture_2d(gpu.texture.from_image(image), (x, y), w, h, is_scene_linear_with_rec709_srgb_target=True)
    gpu.state.blend_set("NONE")


def register():
    global _handle
    if not bpy.app.background:
        _handle = bpy.types.SpaceView3D.draw_handler_add(_draw, (), "WINDOW", "POST_PIXEL")


def unregister():
    global _handle
    if _handle is not None:
        bpy.types.SpaceView3D.draw_handler_remove(_handle, "WINDOW")
        _handle = None
