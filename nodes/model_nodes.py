"""The PhysioLatent network as nodes (paper pipeline; needs weights, a GPU helps).

    Face Crop -> VAE Encode (3D causal) -> Spatio-Temporal Fusion(+HR prompt) -> FiLM Decode
    -> Face Uncrop -> Face Composite

Types passed between these nodes:
    PHYSIO_VAE      a loaded CogVideoX-style 3D causal VAE (physiolatent_core.model.vae)
    PHYSIO_ADAPTER  the trained fusion + FiLM weights (physiolatent_core.model.physiolatent)
    PHYSIO_COND     dict: {"hr_bpm": np.ndarray [T] per frame or None, "hr_spec": str,
                           "text": str, "clip": (tokens [1,L,D], pooled [1,D]) or None}
    LATENT          ComfyUI's {"samples": [B,16,T',h,w]} with "physio_frames": T (frames that
                    were encoded, so decode can trim the causal padding back)

All the model arithmetic is in physiolatent_core.model; these nodes load files from
ComfyUI's model folders, move tensors between devices and free memory afterwards.
"""

from __future__ import annotations

import numpy as np
import torch

from physiolatent_core.errors import InputError, ModelFileError

from ._common import (Progress, check_fps, free_memory, image_to_numpy, intermediate_device, list_model_files,
                      numpy_to_image, resolve_model_file, torch_device)

CATEGORY = "PhysioLatent/Network"
DEFAULT_TEMPLATE = "Heart rate {bpm} bpm"

_FPS = ("FLOAT", {"default": 30.0, "min": 0.01, "max": 1000.0, "step": 0.01,
                  "tooltip": "Frame rate of the clip (connect Get Video Components' fps)."})


def _model_api():
    """The network library, imported on first use (diffusers/transformers are heavy)."""
    from physiolatent_core import model

    return model


# --------------------------------------------------------------------------- loaders
class LoadVAE3D:
    DESCRIPTION = ("Loads the 3D causal video VAE (CogVideoX VAE, .safetensors) from ComfyUI/models/vae. "
                   "Alternatively connect a core VAE that holds a CogVideoX VAE.")
    CATEGORY = CATEGORY
    FUNCTION = "load"
    RETURN_TYPES = ("PHYSIO_VAE",)
    RETURN_NAMES = ("vae",)
    OUTPUT_TOOLTIPS = ("The 3D causal VAE for VAE Encode (3D causal) and FiLM Decode.",)

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
        api = _model_api()
        device = torch_device()
        torch_dtype = _dtype(dtype, device)
        if vae is not None:
            inner = getattr(vae, "first_stage_model", vae)
            if "cogvideox" not in type(inner).__name__.lower():
                raise ModelFileError(
                    f"The connected VAE is a {type(inner).__name__}, not a CogVideoX 3D causal VAE. "
                    "Disconnect it and pick the CogVideoX VAE file in vae_name instead."
                )
            return (api.vae.CausalVAE.from_module(inner, device=device, dtype=torch_dtype),)
        path = resolve_model_file("vae", vae_name, "3D causal VAE")
        return (api.vae.load_vae(path, device=device, dtype=torch_dtype),)


class LoadAdapter:
    DESCRIPTION = ("Loads the trained PhysioLatent adapter (spatio-temporal fusion + FiLM + decoder output "
                   "layer, .safetensors) from ComfyUI/models/physiolatent.")
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
        }}

    def load(self, adapter_name):
        path = resolve_model_file("physiolatent", adapter_name, "PhysioLatent adapter")
        return (_model_api().physiolatent.load_adapter(path, device=torch_device()),)


# --------------------------------------------------------------------------- HR condition
def _clip_embed(clip, text: str):
    """Core CLIP (CLIPLoader) -> (tokens [1,L,D], pooled [1,D]) on the intermediate device."""
    tokens = clip.tokenize(text)
    cond, pooled = clip.encode_from_tokens(tokens, return_pooled=True)
    dev = intermediate_device()
    return cond.to(dev, torch.float32), (pooled.to(dev, torch.float32) if pooled is not None else None)


def _prompt(template: str, bpm: float) -> str:
    if "{bpm}" not in template:
        raise InputError(f"template must contain '{{bpm}}' where the heart rate goes; got {template!r}.")
    return template.replace("{bpm}", f"{bpm:g}")


class HeartRatePrompt:
    DESCRIPTION = ("The heart-rate condition for the network: a CLIP text embedding of e.g. "
                   "'Heart rate 90 bpm' (connect Load CLIP), or the number alone when no CLIP is connected.")
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
                                            "tooltip": "Heart rate the edited video should show (the paper trains on 60-120)."}),
                "template": ("STRING", {"default": DEFAULT_TEMPLATE,
                                        "tooltip": "Prompt text; {bpm} is replaced by the target."}),
            },
            "optional": {
                "clip": ("CLIP", {"tooltip": "Optional CLIP text encoder (Load CLIP, type stable_diffusion, clip_l). "
                                             "Without it the adapter's numeric HR embedding is used."}),
            },
        }

    def run(self, target_hr_bpm, template, clip=None):
        bpm = float(target_hr_bpm)
        text = _prompt(template, bpm)
        embed = _clip_embed(clip, text) if clip is not None else None
        return ({"hr_bpm": None, "hr_const": bpm, "hr_spec": f"{bpm:g}", "text": text, "clip": embed},)


class HeartRateTrajectoryPrompt:
    DESCRIPTION = ("A heart rate that changes over the clip ('70:120' ramp or '0s=70, 5s=110' points), "
                   "as a per-frame numeric condition (CLIP embeds the mean rate when connected).")
    CATEGORY = CATEGORY
    FUNCTION = "run"
    RETURN_TYPES = ("PHYSIO_COND",)
    RETURN_NAMES = ("condition",)
    OUTPUT_TOOLTIPS = ("Per-frame heart-rate condition.",)

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
            "optional": {"clip": ("CLIP", {"tooltip": "Optional CLIP text encoder."})},
        }

    def run(self, trajectory, fps, num_frames, template, clip=None):
        from physiolatent_core.pulse import hr_curve

        from .edit_nodes import _target_spec

        fps = check_fps(fps)
        target = _target_spec(0.0, trajectory)
        curve = hr_curve(target, int(num_frames), fps).astype(np.float32)
        text = _prompt(template, round(float(curve.mean())))
        embed = _clip_embed(clip, text) if clip is not None else None
        return ({"hr_bpm": curve, "hr_const": float(curve.mean()), "hr_spec": str(target), "text": text,
                 "clip": embed},)


# --------------------------------------------------------------------------- network
class VAEEncode3D:
    DESCRIPTION = ("Encodes face crops with the 3D causal VAE into a spatio-temporal latent "
                   "[1,16,T',h,w] (8x smaller in space, 4x in time; clips are padded to 1+4k frames).")
    CATEGORY = CATEGORY
    FUNCTION = "encode"
    RETURN_TYPES = ("LATENT",)
    RETURN_NAMES = ("latent",)
    OUTPUT_TOOLTIPS = ("{'samples': [1,16,T',h,w]}",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "images": ("IMAGE", {"tooltip": "Face crops (Face Crop), sides a multiple of 8."}),
            "vae": ("PHYSIO_VAE", {"tooltip": "From Load 3D Causal VAE."}),
        }}

    def encode(self, images, vae):
        frames = image_to_numpy(images)
        t, h, w = frames.shape[:3]
        if h % 8 or w % 8:
            raise InputError(f"VAE Encode needs frame sides that are multiples of 8; got {w}x{h}. "
                             "Set Face Crop's size to a multiple of 8.")
        progress = Progress(1)
        with torch.inference_mode():
            z = vae.encode(torch.from_numpy(frames))
        progress.update(1)
        free_memory()
        return ({"samples": z.to(intermediate_device()), "physio_frames": t},)


class SpatioTemporalFusion:
    DESCRIPTION = ("Fuses the video latent with the heart-rate condition (pseudo-3D conv + divided space-time "
                   "attention with AdaLN) into an edited latent.")
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
        z = _latent_samples(latent)
        progress = Progress(1)
        with torch.inference_mode():
            z2 = adapter.fuse(z, condition)
        progress.update(1)
        free_memory()
        return ({**latent, "samples": z2.to(intermediate_device())},)


class FiLMDecode:
    DESCRIPTION = ("Decodes the edited latent with the frozen VAE decoder, FiLM-modulated by the heart-rate "
                   "condition, so the sub-1% colour pulse survives decoding.")
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
            "vae": ("PHYSIO_VAE", {"tooltip": "From Load 3D Causal VAE."}),
        }}

    def decode(self, latent, condition, adapter, vae):
        z = _latent_samples(latent)
        progress = Progress(1)
        with torch.inference_mode():
            frames = adapter.decode(vae, z, condition)
        progress.update(1)
        n = latent.get("physio_frames")
        if n is not None:
            frames = frames[: int(n)]
        free_memory()
        return (numpy_to_image(frames.detach().float().cpu().numpy()),)


def _latent_samples(latent) -> torch.Tensor:
    z = latent.get("samples") if isinstance(latent, dict) else None
    if not isinstance(z, torch.Tensor) or z.ndim != 5:
        shape = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
        raise InputError(f"Expected a video latent [1,16,T',h,w] from VAE Encode (3D causal); got {shape}. "
                         "Image latents (4-D) from the core VAE Encode do not work here.")
    return z


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
