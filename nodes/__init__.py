"""PhysioLatent ComfyUI nodes: one module per stage, each node a thin shell over physiolatent_core.

Modules:
    synth_nodes   Synthetic Subject (try the pack with no footage)
    face_nodes    Face Mask, Face Select, Face Crop, Face Uncrop, Face Composite
    edit_nodes    Pulse Edit, Pulse Remove (training-free)
    key_nodes     Pulse Remove (reversible), Pulse Restore (restore keys)
    verify_nodes  Estimate Heart Rate
    save_nodes    Save Video (pulse-safe), Pre-quantise for SaveVideo
    model_nodes   the PhysioLatent network: loaders, HR prompt, VAE encode, fusion, FiLM decode
"""

from . import edit_nodes, face_nodes, key_nodes, model_nodes, save_nodes, synth_nodes, verify_nodes
from ._common import register_model_folder

_MODULES = (synth_nodes, face_nodes, edit_nodes, key_nodes, verify_nodes, save_nodes, model_nodes)

NODE_CLASS_MAPPINGS = {}
NODE_DISPLAY_NAME_MAPPINGS = {}
for _module in _MODULES:
    NODE_CLASS_MAPPINGS.update(_module.NODE_CLASS_MAPPINGS)
    NODE_DISPLAY_NAME_MAPPINGS.update(_module.NODE_DISPLAY_NAME_MAPPINGS)

# Inside ComfyUI: make models/physiolatent a known model folder (no-op elsewhere).
register_model_folder()

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
