"""Neural Face: generate a G-buffer + Cycles dataset of a face, train hash-keyed tile networks,
and preview the neural render in the viewport (see README.md).

Each UI module below has register()/unregister(); append new ones to MODULE_NAMES. They are
imported inside register() so the headless CLI can use the job modules without the UI.
"""

import importlib

MODULE_NAMES = ["properties", "operators_dataset", "panels", "preferences", "properties_preview",
                "operators_train", "operators_preview", "preview_overlay", "panels_preview"]

_registered = []


def register():
    for name in MODULE_NAMES:
        module = importlib.import_module(f"{__package__}.{name}")
        module.register()
        _registered.append(module)


def unregister():
    while _registered:
        _registered.pop().unregister()
