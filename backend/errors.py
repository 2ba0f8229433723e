"""Errors meant for the user: they name the problem and what to do, and exit non-zero."""


class UserError(Exception):
    """A problem with the user's input or environment, reported without a traceback."""

    exit_code = 2


class DatasetError(UserError):
    """A dataset folder, manifest or sample file is missing, corrupt or inconsistent."""


class BankError(UserError):
    """A weight bank is missing, corrupt, of another version, or does not match the input."""


class GBufferError(UserError):
    """A G-buffer has missing passes, non-finite values or the wrong size."""
