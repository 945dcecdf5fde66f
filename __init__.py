"""ComfyUI entry point of the PhysioLatent node pack.

ComfyUI imports this folder as a package, so only relative imports are used here.
The library itself lives in ``physiolatent_core`` and never imports ComfyUI.
"""

from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

WEB_DIRECTORY = None

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
