"""Adapter files: the trained part of PhysioLatent as one .safetensors file.

The file holds the adapter's weights (no VAE, no CLIP), and in its metadata the format
name and version, the adapter's config (JSON) and the fingerprint of the VAE it was
trained on, so loading refuses a file made for another VAE instead of editing badly.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..atomic import atomic_path
from ..errors import ModelFileError
from .physiolatent import AdapterConfig, PhysioLatentAdapter
from .vae import VAE, vae_fingerprint

ADAPTER_FORMAT = "physiolatent-adapter"
ADAPTER_FORMAT_VERSION = 1


def save_adapter(path, adapter: PhysioLatentAdapter, vae: VAE) -> None:
    """Write the adapter's weights + config + the VAE fingerprint to one .safetensors file (atomic)."""
    from safetensors.torch import save_file

    sd = {k: v.detach().contiguous().cpu() for k, v in adapter.state_dict().items()}
    metadata = {
        "format": ADAPTER_FORMAT,
        "format_version": str(ADAPTER_FORMAT_VERSION),
        "config": json.dumps(adapter.config.to_dict()),
        "vae_fingerprint": vae_fingerprint(vae),
    }
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        save_file(sd, str(tmp), metadata=metadata)


def load_adapter(path, vae: VAE, clip_model=None, tokenizer=None, clip_path=None, tokenizer_path=None,
                 device=None) -> PhysioLatentAdapter:
    """Read an adapter file written by `save_adapter` for this `vae`.

    Raises ModelFileError when the file is missing, corrupt, not an adapter, of an
    unknown format version, or trained on a different VAE (fingerprint mismatch).
    """
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"Adapter file not found: {path}. Put physiolatent_adapter.safetensors in "
                             "ComfyUI/models/physiolatent (or train one with `python -m physiolatent_core.train`).")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
        sd = load_file(str(path))
    except Exception as exc:
        raise ModelFileError(f"Could not read {path}: {exc}. The file is truncated or corrupt; copy it again.") from exc
    if metadata.get("format") != ADAPTER_FORMAT:
        raise ModelFileError(f"{path.name} is not a PhysioLatent adapter (metadata format="
                             f"{metadata.get('format')!r}). Pick the adapter file, not the VAE or CLIP file.")
    if metadata.get("format_version") != str(ADAPTER_FORMAT_VERSION):
        raise ModelFileError(f"{path.name} has adapter format version {metadata.get('format_version')!r}; this "
                             f"PhysioLatent reads version {ADAPTER_FORMAT_VERSION}. Update PhysioLatent or re-export.")
    expected_fp, actual_fp = metadata.get("vae_fingerprint"), vae_fingerprint(vae)
    if expected_fp != actual_fp:
        raise ModelFileError(f"{path.name} was trained with a different VAE (fingerprint {expected_fp}, loaded VAE "
                             f"{actual_fp}). Load the VAE it was trained with (the CogVideoX-2B VAE for released "
                             "adapters), or retrain the adapter.")
    config = AdapterConfig.from_dict(json.loads(metadata["config"]))
    adapter = PhysioLatentAdapter(config, vae, clip_model=clip_model, tokenizer=tokenizer,
                                  clip_path=clip_path, tokenizer_path=tokenizer_path)
    result = adapter.load_state_dict(sd, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ModelFileError(f"{path.name} does not match its own config: missing {result.missing_keys[:3]}, "
                             f"unexpected {result.unexpected_keys[:3]}. The file is damaged; re-export it.")
    return adapter.to(device) if device is not None else adapter
