"""Find, track and mask the face; crop it out and paste it back; composite edits."""

from .track import *  # noqa: F403
from .track import NO_FACE_ADVICE, __all__, _iou  # noqa: F401
