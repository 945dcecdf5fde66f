"""The paper's network (PhysioLatent): frozen CogVideoX VAE + trainable adapter.

Modules (one idea each):
  vae.py           the 3D causal VAE: config factories, loading, encode/decode, windows
  text.py          HR condition c from "Heart rate {hr} bpm" (CLIP) and/or numeric bpm
  fusion.py        latent fusion z' = F(z, c): (2+1)D conv + divided space-time attention
  film.py          FiLM in the decoder + trainable conv_out
  physiolatent.py  the adapter and the full model
  adapter_file.py  adapter files: weights + config + the VAE's fingerprint (safetensors)

Editing a clip with the network (windows, crops, streaming) is ``network_editor.py``'s.

Importing this package imports torch but not diffusers/transformers (they load lazily
when a VAE or CLIP model is built).
"""

from .adapter_file import load_adapter, save_adapter
from .film import FiLMDecoder
from .fusion import FusionConfig, LatentFusion, fusion_config_base, fusion_config_tiny
from .physiolatent import AdapterConfig, PhysioLatent, PhysioLatentAdapter, adapter_config_base, adapter_config_tiny
from .text import HRConditioner, check_hr_bpm, load_clip_text_model, load_clip_tokenizer
from .vae import (
    VAE,
    build_vae,
    cogvideox_vae_config,
    load_vae,
    map_windows,
    save_vae,
    tiny_vae_config,
    vae_fingerprint,
)

__all__ = [
    "AdapterConfig", "FiLMDecoder", "FusionConfig", "HRConditioner", "LatentFusion",
    "PhysioLatent", "PhysioLatentAdapter", "VAE", "adapter_config_base", "adapter_config_tiny", "build_vae",
    "check_hr_bpm", "cogvideox_vae_config", "fusion_config_base", "fusion_config_tiny",
    "load_adapter", "load_clip_text_model", "load_clip_tokenizer", "load_vae", "map_windows", "save_adapter",
    "save_vae", "tiny_vae_config", "vae_fingerprint",
]
