"""Add-on preferences: how to reach the backend service (start it locally, or use a running one)."""

import os

import bpy

from .service_client import default_python


class NEURALFACE_AP_preferences(bpy.types.AddonPreferences):
    bl_idname = __package__

    connection: bpy.props.EnumProperty(
        name="Backend",
        items=[("LOCAL", "Start Locally", "Start `python -m backend serve` with the interpreter below when needed"),
               ("REMOTE", "Running Service", "Use a service already running, e.g. on a GPU box through an SSH tunnel")],
        default="LOCAL",
    )
    python: bpy.props.StringProperty(
        name="Backend Python", subtype="FILE_PATH", default=default_python(),
        description="Interpreter with the backend installed (the project's .venv/bin/python)",
    )
    url: bpy.props.StringProperty(name="Service URL", default="http://127.0.0.1:8765")
    token: bpy.props.StringProperty(name="Token", subtype="PASSWORD",
                                    description="The service's token (printed by `python -m backend serve`)")

    def draw(self, context):
        layout = self.layout
        layout.prop(self, "connection", expand=True)
        if self.connection == "LOCAL":
            layout.prop(self, "python")
        else:
            layout.prop(self, "url")
            layout.prop(self, "token")
            layout.label(text="Paths in the Train and Preview panels are paths on the service's machine", icon="INFO")


def connection(context) -> dict:
    """The configured way to reach the service, read on the main thread; `service_client.connect` uses it.

    Without preferences (the add-on registered by a script rather than enabled) the defaults apply;
    $NEURAL_FACE_URL and $NEURAL_FACE_TOKEN then name a running service.
    """
    addon = context.preferences.addons.get(__package__)
    prefs = addon.preferences if addon else None
    if prefs is not None and prefs.connection == "REMOTE":
        return {"url": prefs.url, "token": prefs.token}
    if prefs is None and os.environ.get("NEURAL_FACE_URL"):
        return {"url": os.environ["NEURAL_FACE_URL"], "token": os.environ.get("NEURAL_FACE_TOKEN", "")}
    return {"python": prefs.python if prefs is not None else default_python()}


register, unregister = bpy.utils.register_classes_factory((NEURALFACE_AP_preferences,))
