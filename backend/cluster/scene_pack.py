"""The driver's scene as one self-contained .blend, as bytes: no worker needs the driver's files.

Runs in the driver's bpy session after the scene is loaded and checked (generate.prepare_job).
The target's image textures are packed into the file; one that is neither packed nor on disk
stops the run before anything is written, since every worker would render it pink.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator

from backend.errors import UserError

FILE_SOURCES = ("FILE", "SEQUENCE", "TILED")


def target_images(target) -> list:
    """The images the target's materials read, through node groups too."""
    images: dict[str, object] = {}

    def visit(tree, seen: set) -> None:
        if tree is None or tree.name in seen:
            return
        seen.add(tree.name)
        for node in tree.nodes:
            if getattr(node, "image", None) is not None:
                images[node.image.name] = node.image
            if getattr(node, "node_tree", None) is not None:
                visit(node.node_tree, seen)

    for slot in target.material_slots:
        if slot.material is not None and slot.material.use_nodes:
            visit(slot.material.node_tree, set())
    return list(images.values())


def _external(images) -> Iterator:
    return (image for image in images if image.source in FILE_SOURCES and image.packed_file is None)


def check_textures(target) -> None:
    import bpy

    for image in _external(target_images(target)):
        path = bpy.path.abspath(image.filepath, library=image.library)
        if image.source == "FILE" and not os.path.isfile(path):
            raise UserError(f"texture {image.name!r} of {target.name!r} is missing: {path!r} does not exist; "
                            "fix the path (File > External Data > Find Missing Files) or pack it")


def pack_scene(target) -> bytes:
    """Check and pack the target's textures, and return the current file saved as a copy."""
    import bpy

    from backend.commands.generate import quiet_stdout

    check_textures(target)
    for image in _external(target_images(target)):
        image.pack()
    with tempfile.TemporaryDirectory(prefix="nf-scene-") as folder:
        path = os.path.join(folder, "scene.blend")
        with quiet_stdout():
            bpy.ops.wm.save_as_mainfile(filepath=path, copy=True, compress=True)
        with open(path, "rb") as stream:
            return stream.read()
