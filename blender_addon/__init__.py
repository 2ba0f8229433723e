"""Neural Face: generate a G-buffer + Cycles dataset of a face, train hash-keyed tile networks,
and preview the neural render in the viewport (see README.md).

The UI modules are named <Blender concept>_<feature>: properties_, operators_ and panels_ for each
of the three features, dataset, train and preview (docs/addon.md "Files"). Each has
register()/unregister(); append new ones to MODULE_NAMES. They are imported inside register() so
the headless CLI can use the job modules without the UI.
"""

import importlib

MODULE_NAMES = ["preferences",
                "properties_dataset", "operators_dataset", "panels_dataset",
                "properties_train", "operators_train", "panels_train",
                "properties_preview", "operators_preview", "preview_overlay", "panels_preview"]

_registered = []


def register():
    for name in MODULE_NAMES:
        module = importlib.import_module(f"{__package__}.{name}")
        module.register()
        _registered.append(module)


def unregister():
    while _registered:
        _registered.pop().unregister()
