"""ComfyUI entry point of the PhysioLatent node pack.

ComfyUI imports this folder as a package, so only relative imports are used here.
The library itself lives in ``physiolatent_core`` and never imports ComfyUI.
"""

import os
import sys

# The nodes import the library as ``physiolatent_core`` (as the CLI and tests do). Inside
# ComfyUI this folder is not on sys.path, so append it; appending (not prepending) keeps
# ComfyUI's own top-level modules, e.g. its ``nodes.py``, first in line.
_PACK_ROOT = os.path.dirname(os.path.abspath(__file__))
if _PACK_ROOT not in sys.path:
    sys.path.append(_PACK_ROOT)

from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS  # noqa: E402

# Example workflows in workflows/ are offered by ComfyUI's template browser.
WEB_DIRECTORY = None

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
