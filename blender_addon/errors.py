"""Problems with the user's input, reported with a message that names the file or setting.

The operator shows them in Blender's status bar; the CLI turns them into backend.errors.UserError
(non-zero exit, no traceback).
"""


class InputError(Exception):
    """Base of every error the user can fix."""


class SettingsError(InputError):
    """A dataset setting is out of range."""


class SceneError(InputError):
    """The scene file, target object, mesh or UV map is missing or unusable."""


class OutputError(InputError):
    """The output folder is unwritable or holds a different dataset."""
