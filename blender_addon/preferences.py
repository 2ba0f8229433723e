"""Add-on preferences: how to reach the backend service (start it locally, or use a running one), and
the Ray cluster Generate Dataset renders on through it (docs/cluster.md)."""

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
    cluster: bpy.props.StringProperty(
        name="Render on Cluster",
        description="Ray cluster HOST:PORT (as `ray start --head` prints it) that Generate Dataset renders on "
                    "through the service; empty: render on this machine",
    )
    cluster_token_file: bpy.props.StringProperty(
        name="Cluster Token File", subtype="FILE_PATH",
        description="File holding the cluster head's auth token (RAY_AUTH_MODE=token); empty: none",
    )

    def draw(self, context):
        layout = self.layout
        layout.prop(self, "connection", expand=True)
        if self.connection == "LOCAL":
            layout.prop(self, "python")
        else:
            layout.prop(self, "url")
            layout.prop(self, "token")
            layout.label(text="Paths in the Train and Preview panels are paths on the service's machine", icon="INFO")
        box = layout.box()
        box.prop(self, "cluster")
        if self.connection == "LOCAL":
            box.prop(self, "cluster_token_file")
        elif self.cluster:
            box.label(text="The running service must have been started with this --cluster", icon="INFO")


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


def backend_python(context) -> str:
    """The interpreter with the backend installed (the preference, else service_client.default_python)."""
    addon = context.preferences.addons.get(__package__)
    return addon.preferences.python if addon and addon.preferences.python else default_python()


def cluster(context) -> dict | None:
    """{"address", "token_file"} of the "Render on Cluster" preference, or None to render locally.

    Without preferences, $NEURAL_FACE_CLUSTER and $NEURAL_FACE_CLUSTER_TOKEN_FILE name a cluster.
    """
    addon = context.preferences.addons.get(__package__)
    prefs = addon.preferences if addon else None
    address = prefs.cluster.strip() if prefs is not None else os.environ.get("NEURAL_FACE_CLUSTER", "")
    if not address:
        return None
    token_file = bpy.path.abspath(prefs.cluster_token_file) if prefs is not None and prefs.cluster_token_file \
        else os.environ.get("NEURAL_FACE_CLUSTER_TOKEN_FILE", "")
    return {"address": address, "token_file": token_file}


register, unregister = bpy.utils.register_classes_factory((NEURALFACE_AP_preferences,))
