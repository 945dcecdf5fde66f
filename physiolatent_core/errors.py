"""Exceptions a user can act on.

Every message says what was wrong and what to do about it. ComfyUI shows the
message in its error panel; the CLI prints it without a traceback.
"""


class PhysioLatentError(ValueError):
    """Base class: bad input or a missing resource, with advice in the message."""


class VideoError(PhysioLatentError):
    """A video file could not be read or written as asked."""


class FaceNotFoundError(PhysioLatentError):
    """No face could be found where one is required."""


class ModelFileError(PhysioLatentError):
    """A weights file is missing, corrupt, or of the wrong kind."""


class InputError(PhysioLatentError):
    """An argument is out of range or inconsistent with another."""
