"""The PhysioLatent network as nodes (paper pipeline; needs weights, a GPU helps).

    Face Crop -> VAE Encode (3D causal) -> Spatio-Temporal Fusion(+HR prompt) -> FiLM Decode
    -> Face Uncrop -> Face Composite

Types passed between these nodes:
    PHYSIO_VAE      physiolatent_core.model.VAE (frozen CogVideoX 3D causal VAE)
    PHYSIO_ADAPTER  physiolatent_core.model.PhysioLatentAdapter (conditioner, fusion, FiLM),
                    checked against the VAE it was trained with when loaded
    PHYSIO_COND     dict {"hr_bpm": float (the rate the network is conditioned on),
                          "hr_curve": np.ndarray [T] or None (trajectory prompts),
                          "spec": str, "text": str, "clip_pooled": torch [1,768] or None}
    LATENT          ComfyUI's {"samples": [1,16,T',h,w]} plus "physio_frames": T and
                    "physio_windows": [(latent frames, frames, context frames)] per
                    temporal window (network_editor.window_spans, the windows the command
                    line uses), "samples" being the windows' latents one after another

The network conditions one heart rate per clip (c [B, dim]); a trajectory prompt is
reduced to its mean rate for it (use the training-free Pulse Edit for changing rates).
Models live on the CPU between runs and move to ComfyUI's torch device only while a
node computes, then memory is freed.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch
from torch import nn

from physiolatent_core.errors import InputError, ModelFileError

from ._common import (Progress, check_fps, free_memory, image_to_numpy, intermediate_device, list_model_files,
                      numpy_to_image, resolve_model_file, torch_device)

CATEGORY = "PhysioLatent/Network"
DEFAULT_TEMPLATE = "Heart rate {bpm} bpm"
CLIP_L_DIM = 768  # pooled width of CLIP ViT-L/14's text tower (the paper's encoder)

_FPS = ("FLOAT", {"default": 30.0, "min": 0.01, "max": 1000.0, "step": 0.01,
                  "tooltip": "Frame rate of the clip (connect Get Video Components' fps)."})


# --------------------------------------------------------------------------- loaders
class LoadVAE3D:
    DESCRIPTION = ("Loads the 3D causal video VAE (CogVideoX VAE, .safetensors) from ComfyUI/models/vae. "
                   "Alternatively connect a core VAE that holds a CogVideoX VAE.")
    CATEGORY = CATEGORY
    FUNCTION = "load"
    RETURN_TYPES = ("PHYSIO_VAE",)
    RETURN_NAMES = ("vae",)
    OUTPUT_TOOLTIPS = ("The 3D causal VAE for VAE Encode (3D causal), the adapter and FiLM Decode.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "vae_name": (list_model_files("vae"), {
                    "tooltip": "CogVideoX VAE weights in ComfyUI/models/vae (e.g. cogvideox_vae.safetensors)."}),
                "dtype": (["auto", "float32", "bfloat16", "float16"], {
                    "default": "auto", "tooltip": "Compute precision: auto = bfloat16 on GPU, float32 on CPU."}),
            },
            "optional": {
                "vae": ("VAE", {"tooltip": "Optional core VAE (from Load VAE) holding a CogVideoX VAE; used instead of the file."}),
            },
        }

    def load(self, vae_name, dtype, vae=None):
        from physiolatent_core.model import VAE, load_vae

        torch_dtype = _dtype(dtype, torch_device())
        if vae is not None:
            inner = getattr(vae, "first_stage_model", vae)
            if type(inner).__name__ != "AutoencoderKLCogVideoX":
                raise ModelFileError(
                    f"The connected VAE is a {type(inner).__name__}, not the CogVideoX 3D causal VAE. "
                    "Disconnect it and pick the CogVideoX VAE file in vae_name instead."
                )
            return (VAE(nn.Module.to(inner, dtype=torch_dtype)),)
        path = resolve_model_file("vae", vae_name, "3D causal VAE")
        return (load_vae(path, dtype=torch_dtype, device="cpu"),)


class _CoreClipStandIn(nn.Module):
    """Stands in for the transformers CLIP model of a CLIP-conditioned adapter.

    Inside ComfyUI the prompt text is embedded by the core CLIP (Load CLIP) in the
    Heart-Rate Prompt node and handed to the adapter's conditioner (see _condition), so
    the adapter never runs a CLIP of its own; reaching this module means none was given.
    """

    def __init__(self, hidden_size: int = CLIP_L_DIM):
        super().__init__()
        self.config = SimpleNamespace(hidden_size=hidden_size, max_position_embeddings=77)
        self.anchor = nn.Parameter(torch.zeros(1), requires_grad=False)  # gives the module a device

    def forward(self, *args, **kwargs):
        raise _no_clip_error()

    @staticmethod
    def tokenizer(*args, **kwargs):
        raise _no_clip_error()


def _no_clip_error() -> InputError:
    return InputError("This adapter was trained with CLIP text conditioning: connect Load CLIP "
                      "(clip_l.safetensors, type stable_diffusion) to the Heart-Rate Prompt's clip input.")


class LoadAdapter:
    DESCRIPTION = ("Loads the trained PhysioLatent adapter (HR conditioner, spatio-temporal fusion, FiLM and "
                   "decoder output layer, .safetensors) from ComfyUI/models/physiolatent, checking that it was "
                   "trained with the connected VAE.")
    CATEGORY = CATEGORY
    FUNCTION = "load"
    RETURN_TYPES = ("PHYSIO_ADAPTER",)
    RETURN_NAMES = ("adapter",)
    OUTPUT_TOOLTIPS = ("The adapter for Spatio-Temporal Fusion and FiLM Decode.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "adapter_name": (list_model_files("physiolatent"), {
                "tooltip": "Adapter weights in ComfyUI/models/physiolatent (e.g. physiolatent_adapter.safetensors)."}),
            "vae": ("PHYSIO_VAE", {"tooltip": "The VAE the adapter was trained with (Load 3D Causal VAE)."}),
        }}

    def load(self, adapter_name, vae):
        import json

        from safetensors import safe_open

        from physiolatent_core.model import load_adapter

        path = resolve_model_file("physiolatent", adapter_name, "PhysioLatent adapter")
        try:
            with safe_open(path, framework="pt") as f:
                config = json.loads((f.metadata() or {}).get("config", "{}"))
        except Exception:  # unreadable or not an adapter: load_adapter says which, with advice
            config = {}
        clip_kwargs = {}
        if config.get("hr_mode") in ("clip", "both"):
            clip_kwargs = {"clip_model": _CoreClipStandIn(), "tokenizer": _CoreClipStandIn.tokenizer}
        return (load_adapter(path, vae, device="cpu", **clip_kwargs),)


# --------------------------------------------------------------------------- HR condition
def _clip_pooled(clip, text: str) -> torch.Tensor:
    """Core CLIP (CLIPLoader) -> pooled text embedding [1, D] without the projection.

    "unprojected" is the final-layer EOS hidden state, i.e. transformers'
    CLIPTextModel.pooler_output, which is what the adapter's conditioner was trained on.
    """
    tokens = clip.tokenize(text)
    _cond, pooled = clip.encode_from_tokens(tokens, return_pooled="unprojected")
    if pooled is None:
        raise InputError("The connected CLIP gives no pooled text embedding; load clip_l.safetensors with "
                         "Load CLIP type 'stable_diffusion'.")
    return pooled.detach().to("cpu", torch.float32).reshape(1, -1)


def _prompt(template: str, bpm: float) -> str:
    if "{bpm}" not in template:
        raise InputError(f"template must contain '{{bpm}}' where the heart rate goes; got {template!r}.")
    return template.replace("{bpm}", f"{round(bpm)}")


class HeartRatePrompt:
    DESCRIPTION = ("The heart-rate condition for the network: CLIP text embedding of e.g. 'Heart rate 90 bpm' "
                   "(connect Load CLIP with clip_l) and/or the number itself, as the adapter was trained.")
    CATEGORY = CATEGORY
    FUNCTION = "run"
    RETURN_TYPES = ("PHYSIO_COND",)
    RETURN_NAMES = ("condition",)
    OUTPUT_TOOLTIPS = ("Heart-rate condition for Fusion and FiLM Decode.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "target_hr_bpm": ("FLOAT", {"default": 90.0, "min": 30.0, "max": 240.0, "step": 1.0,
                                            "tooltip": "Heart rate the edited video should show (the paper trains 60-120)."}),
                "template": ("STRING", {"default": DEFAULT_TEMPLATE,
                                        "tooltip": "Prompt text; {bpm} is replaced by the target (the paper's template is the default)."}),
            },
            "optional": {
                "clip": ("CLIP", {"tooltip": "CLIP text encoder (Load CLIP: clip_l.safetensors, type stable_diffusion). "
                                             "Needed by CLIP-conditioned adapters; numeric adapters ignore it."}),
            },
        }

    def run(self, target_hr_bpm, template, clip=None):
        from physiolatent_core.model import check_hr_bpm

        bpm = float(target_hr_bpm)
        check_hr_bpm(bpm)
        text = _prompt(template, bpm)
        pooled = _clip_pooled(clip, text) if clip is not None else None
        return ({"hr_bpm": bpm, "hr_curve": None, "spec": f"{bpm:g}", "text": text, "clip_pooled": pooled},)


class HeartRateTrajectoryPrompt:
    DESCRIPTION = ("A heart rate that changes over the clip ('70:120' ramp or '0s=70, 5s=110' points). The "
                   "network conditions one rate per clip, so it gets the trajectory's mean; the per-frame "
                   "curve is kept in the condition for reports.")
    CATEGORY = CATEGORY
    FUNCTION = "run"
    RETURN_TYPES = ("PHYSIO_COND",)
    RETURN_NAMES = ("condition",)
    OUTPUT_TOOLTIPS = ("Heart-rate condition (mean of the trajectory for the network).",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "trajectory": ("STRING", {"default": "70:120",
                                          "tooltip": "'70:120' ramps over the clip; '0s=70, 5s=110' gives time=bpm points."}),
                "fps": _FPS,
                "num_frames": ("INT", {"default": 49, "min": 1, "max": 100000,
                                       "tooltip": "Frames in the clip the condition is for."}),
                "template": ("STRING", {"default": DEFAULT_TEMPLATE,
                                        "tooltip": "Prompt text for CLIP; {bpm} is replaced by the mean rate."}),
            },
            "optional": {"clip": ("CLIP", {"tooltip": "CLIP text encoder for CLIP-conditioned adapters."})},
        }

    def run(self, trajectory, fps, num_frames, template, clip=None):
        from physiolatent_core.pulse import hr_curve, parse_hr_target

        fps = check_fps(fps)
        target = parse_hr_target(trajectory)
        curve = hr_curve(target, int(num_frames), fps).astype(np.float32)
        bpm = float(curve.mean())
        text = _prompt(template, bpm)
        pooled = _clip_pooled(clip, text) if clip is not None else None
        return ({"hr_bpm": bpm, "hr_curve": curve, "spec": str(target), "text": text, "clip_pooled": pooled},)


def _condition(adapter, cond: dict, device) -> torch.Tensor:
    """PHYSIO_COND -> the adapter's condition c [1, cond_dim] on ``device``."""
    conditioner = adapter.conditioner
    hr = torch.tensor([cond["hr_bpm"]], dtype=torch.float32)
    if conditioner.mode in ("clip", "both"):
        pooled = cond.get("clip_pooled")
        if pooled is None:
            raise _no_clip_error()
        width = conditioner.clip_proj[0].normalized_shape[0]
        if pooled.shape[-1] != width:
            raise InputError(f"The connected CLIP gives {pooled.shape[-1]}-d embeddings; this adapter needs {width}-d "
                             "(CLIP ViT-L/14: clip_l.safetensors).")
        # The conditioner caches pooled CLIP outputs by prompt: hand it the core CLIP's.
        conditioner._cache[conditioner.prompt(cond["hr_bpm"])] = pooled[0].to(device)
    return conditioner(hr.to(device))


# --------------------------------------------------------------------------- network
class VAEEncode3D:
    DESCRIPTION = ("Encodes face crops with the 3D causal VAE into a spatio-temporal latent [1,16,T',h,w] "
                   "(8x smaller in space, 4x in time; frames are padded to 1+8k and cropped back on decode).")
    CATEGORY = CATEGORY
    FUNCTION = "encode"
    RETURN_TYPES = ("LATENT",)
    RETURN_NAMES = ("latent",)
    OUTPUT_TOOLTIPS = ("{'samples': [1,16,T',h,w] (the windows' latents in turn), 'physio_frames': T, "
                       "'physio_windows': [...]}",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "images": ("IMAGE", {"tooltip": "Face crops (Face Crop), sides a multiple of 8."}),
            "vae": ("PHYSIO_VAE", {"tooltip": "From Load 3D Causal VAE."}),
        }}

    def encode(self, images, vae):
        from physiolatent_core.network_editor import encode_crops, window_spans

        frames = image_to_numpy(images)
        t, h, w = frames.shape[:3]
        if h % vae.spatial_ratio or w % vae.spatial_ratio:
            raise InputError(f"VAE Encode needs frame sides that are multiples of {vae.spatial_ratio}; got {w}x{h}. "
                             "Set Face Crop's size to a multiple of 8.")
        device = torch_device()
        spans = window_spans(t)  # the windows the command line's network editor uses
        progress = Progress(len(spans))
        latents = []
        try:
            _to(vae, device)
            with torch.inference_mode():
                for span in spans:
                    latents.append(encode_crops(vae, frames[span.source:span.stop], device).to(intermediate_device()))
                    progress.update(1)
        finally:
            _to(vae, "cpu")
            free_memory()
        windows = [(z.shape[2], span.stop - span.source, span.context) for z, span in zip(latents, spans)]
        return ({"samples": torch.cat(latents, dim=2), "physio_frames": t, "physio_windows": windows},)


class SpatioTemporalFusion:
    DESCRIPTION = ("Fuses the video latent with the heart-rate condition (channel concat, pseudo-3D conv, "
                   "divided space-time attention with AdaLN) into the edited latent z'.")
    CATEGORY = CATEGORY
    FUNCTION = "fuse"
    RETURN_TYPES = ("LATENT",)
    RETURN_NAMES = ("latent",)
    OUTPUT_TOOLTIPS = ("Edited latent z'.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "latent": ("LATENT", {"tooltip": "From VAE Encode (3D causal)."}),
            "condition": ("PHYSIO_COND", {"tooltip": "From Heart-Rate Prompt."}),
            "adapter": ("PHYSIO_ADAPTER", {"tooltip": "From Load PhysioLatent Adapter."}),
        }}

    def fuse(self, latent, condition, adapter):
        from physiolatent_core.network_editor import fuse_latent

        device = torch_device()
        progress = Progress(1)
        try:
            adapter.to(device)
            with torch.inference_mode():
                c = _condition(adapter, condition, device)
                fused = [fuse_latent(adapter, z.to(device), c).to(intermediate_device())
                         for z in _latent_windows(latent, adapter)]
        finally:
            adapter.to("cpu")
            free_memory()
        progress.update(1)
        return ({**latent, "samples": torch.cat(fused, dim=2)},)


class FiLMDecode:
    DESCRIPTION = ("Decodes the edited latent with the frozen VAE decoder, FiLM-modulated by the heart-rate "
                   "condition and with the fine-tuned output layer, so the sub-1% colour pulse survives decoding.")
    CATEGORY = CATEGORY
    FUNCTION = "decode"
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("images",)
    OUTPUT_TOOLTIPS = ("Decoded face crops [T,S,S,3].",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "latent": ("LATENT", {"tooltip": "Edited latent from Spatio-Temporal Fusion."}),
            "condition": ("PHYSIO_COND", {"tooltip": "The same Heart-Rate Prompt as the fusion."}),
            "adapter": ("PHYSIO_ADAPTER", {"tooltip": "From Load PhysioLatent Adapter."}),
            "vae": ("PHYSIO_VAE", {"tooltip": "From Load 3D Causal VAE (the one the adapter was loaded with)."}),
        }}

    def decode(self, latent, condition, adapter, vae):
        from physiolatent_core.model import PhysioLatent
        from physiolatent_core.network_editor import decode_latent

        if adapter.film is not None and adapter.film.vae is not vae:
            raise InputError("FiLM Decode got a different VAE from the one the adapter was loaded with: connect the "
                             "same Load 3D Causal VAE to both.")
        device = torch_device()
        model = PhysioLatent(vae, adapter)
        windows = _latent_windows(latent, adapter)
        progress = Progress(len(windows))
        crops = []
        try:
            _to(vae, device)
            adapter.to(device)
            with torch.inference_mode():
                c = _condition(adapter, condition, device)
                for z, (_, frames, context) in zip(windows, latent["physio_windows"]):
                    crops.append(decode_latent(model, z.to(device), c, frames, context))
                    progress.update(1)
        finally:
            _to(vae, "cpu")
            adapter.to("cpu")
            free_memory()
        return (numpy_to_image(np.concatenate(crops)),)


def _to(vae, device) -> None:
    """Move the VAE's weights (dtype kept); nn.Module.to skips diffusers' upcast warning."""
    nn.Module.to(vae.model, device=device)


def _latent_windows(latent, adapter) -> list[torch.Tensor]:
    """The LATENT of VAE Encode (3D causal), split into its windows' latents [1,16,t',h,w]."""
    z = latent.get("samples") if isinstance(latent, dict) else None
    windows = latent.get("physio_windows") if isinstance(latent, dict) else None
    if not isinstance(z, torch.Tensor) or z.ndim != 5 or not windows:
        shape = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
        raise InputError(f"Expected a video latent [1,16,T',h,w] from VAE Encode (3D causal); got {shape}. "
                         "Latents from core VAE Encode or other models do not work here.")
    want = adapter.config.fusion.latent_channels
    if z.shape[1] != want:
        raise InputError(f"The latent has {z.shape[1]} channels but the adapter expects {want}: encode with the "
                         "CogVideoX VAE the adapter was trained with.")
    return list(torch.split(z, [w[0] for w in windows], dim=2))


def _dtype(name: str, device: torch.device) -> torch.dtype:
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return getattr(torch, name)


NODE_CLASS_MAPPINGS = {
    "PhysioLatentLoadVAE": LoadVAE3D,
    "PhysioLatentLoadAdapter": LoadAdapter,
    "PhysioLatentHRPrompt": HeartRatePrompt,
    "PhysioLatentHRTrajectoryPrompt": HeartRateTrajectoryPrompt,
    "PhysioLatentVAEEncode": VAEEncode3D,
    "PhysioLatentFusion": SpatioTemporalFusion,
    "PhysioLatentFiLMDecode": FiLMDecode,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "PhysioLatentLoadVAE": "Load 3D Causal VAE (PhysioLatent)",
    "PhysioLatentLoadAdapter": "Load PhysioLatent Adapter",
    "PhysioLatentHRPrompt": "Heart-Rate Prompt (PhysioLatent)",
    "PhysioLatentHRTrajectoryPrompt": "Heart-Rate Trajectory Prompt (PhysioLatent)",
    "PhysioLatentVAEEncode": "VAE Encode (3D causal, PhysioLatent)",
    "PhysioLatentFusion": "Spatio-Temporal Fusion (PhysioLatent)",
    "PhysioLatentFiLMDecode": "FiLM Decode (PhysioLatent)",
}
