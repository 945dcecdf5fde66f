"""PhysioLatent: frozen VAE + trainable adapter (condition, fusion, FiLM, conv_out).

    v [B,3,T,H,W] in [-1,1] --VAE.encode (frozen, no grad)--> z [B,16,T',h,w]
    hr_bpm [B], remove --HRConditioner--> c [B,cond_dim]
    z' = LatentFusion(z, c)
    v_hat = FiLMDecoder.decode(z', c)  (frozen decoder + FiLM + trainable conv_out)

At initialisation the adapter is the identity on the latent and FiLM is (1, 0), so
`PhysioLatent(vae, adapter)(v, hr)` equals the plain VAE reconstruction. The face mask
compositing (v_hat inside M, v outside) is done by the caller: `edit_with_model` at
inference, the training loop for the losses.

Public API
----------
AdapterConfig (dataclass; to_dict() / from_dict())
adapter_config_tiny() / adapter_config_base() -> AdapterConfig
PhysioLatentAdapter(config, vae, clip_model=None, tokenizer=None, clip_path=None, tokenizer_path=None)
    .conditioner (HRConditioner), .fusion (LatentFusion), .film (FiLMDecoder or None)
PhysioLatent(vae, adapter)
    forward(video [B,3,T,H,W] in [-1,1], hr_bpm [B], remove=False) -> video [B,3,T,H,W]
    encode(video) -> z ; condition(hr_bpm, remove) -> c ; fuse(z, c) -> z' ; decode(z', c, num_frames) -> video
    trainable_parameters() -> list[nn.Parameter]
save_adapter(path, adapter, vae) / load_adapter(path, vae, clip_model=None, tokenizer=None, ...) -> adapter
    safetensors, metadata: format, format_version, config (JSON), vae_fingerprint.
edit_with_model(frames [T,H,W,3] 0..1, fps, target_hr_bpm, model, face_mask=None, crop_size=256,
                mode="edit"|"remove", device="cpu", dtype=torch.float32, window_frames=49,
                overlap_frames=8, track=None) -> ModelEditResult

Removal mode: `remove=True` selects the conditioner's learned remove embedding instead
of an HR condition (see text.py); the training loop teaches it with a removal loss.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import InputError, ModelFileError
from .film import FiLMDecoder
from .fusion import FusionConfig, LatentFusion, fusion_config_base, fusion_config_tiny
from .text import HRConditioner, check_hr_bpm
from .vae import VAE, map_windows, vae_fingerprint

ADAPTER_FORMAT = "physiolatent-adapter"
ADAPTER_FORMAT_VERSION = 1


@dataclass
class AdapterConfig:
    hr_mode: str = "numeric"  # "clip" | "numeric" | "both" (text.py)
    cond_dim: int = 256
    cond_hidden: int = 256
    num_frequencies: int = 16
    film: bool = True  # FiLM + trainable conv_out in the decoder (ablation: False = plain decoder)
    fusion: FusionConfig = field(default_factory=fusion_config_base)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "AdapterConfig":
        d = dict(d)
        fusion = FusionConfig(**d.pop("fusion", {}))
        return cls(fusion=fusion, **d)


def adapter_config_tiny(hr_mode: str = "numeric") -> AdapterConfig:
    fusion = fusion_config_tiny()
    return AdapterConfig(hr_mode=hr_mode, cond_dim=fusion.cond_dim, cond_hidden=32, num_frequencies=8, fusion=fusion)


def adapter_config_base(hr_mode: str = "numeric") -> AdapterConfig:
    fusion = fusion_config_base()
    return AdapterConfig(hr_mode=hr_mode, cond_dim=fusion.cond_dim, fusion=fusion)


class PhysioLatentAdapter(nn.Module):
    """All trainable parts. Its state_dict is what an adapter file holds (no VAE, no CLIP)."""

    def __init__(self, config: AdapterConfig | dict, vae: VAE, clip_model=None, tokenizer=None,
                 clip_path=None, tokenizer_path=None):
        super().__init__()
        cfg = config if isinstance(config, AdapterConfig) else AdapterConfig.from_dict(config)
        if cfg.fusion.cond_dim != cfg.cond_dim:
            raise InputError(f"fusion.cond_dim ({cfg.fusion.cond_dim}) must equal cond_dim ({cfg.cond_dim}).")
        if cfg.fusion.latent_channels != vae.latent_channels:
            raise InputError(f"fusion.latent_channels ({cfg.fusion.latent_channels}) must equal the VAE's "
                             f"latent channels ({vae.latent_channels}).")
        self.config = cfg
        self.conditioner = HRConditioner(cfg.hr_mode, cfg.cond_dim, clip_model=clip_model, tokenizer=tokenizer,
                                         clip_path=clip_path, tokenizer_path=tokenizer_path,
                                         num_frequencies=cfg.num_frequencies, hidden=cfg.cond_hidden)
        self.fusion = LatentFusion(cfg.fusion)
        self.film = FiLMDecoder(vae, cfg.cond_dim) if cfg.film else None


class PhysioLatent(nn.Module):
    """The whole network: frozen `vae` + trainable `adapter`. See the module docstring."""

    def __init__(self, vae: VAE, adapter: PhysioLatentAdapter):
        super().__init__()
        self.vae = vae
        self.adapter = adapter

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.adapter.parameters() if p.requires_grad]

    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """video [B,3,T,H,W] in [-1,1] -> z [B,C,T',h,w]. Frozen: computed without a graph."""
        with torch.no_grad():
            return self.vae.encode(video)

    def condition(self, hr_bpm, remove: bool | torch.Tensor = False) -> torch.Tensor:
        """hr_bpm [B] -> c [B, cond_dim]."""
        return self.adapter.conditioner(hr_bpm, remove)

    def fuse(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return self.adapter.fusion(z, c)

    def decode(self, z: torch.Tensor, c: torch.Tensor, num_frames: int | None = None) -> torch.Tensor:
        """z' [B,C,T',h,w], c -> video [B,3,T,H,W] (float32)."""
        if self.adapter.film is None:
            return self.vae.decode(z, num_frames=num_frames).float()
        return self.adapter.film.decode(z, c, num_frames=num_frames)

    def forward(self, video: torch.Tensor, hr_bpm, remove: bool | torch.Tensor = False) -> torch.Tensor:
        """video [B,3,T,H,W] in [-1,1], hr_bpm [B] (bpm) -> edited video [B,3,T,H,W] (float32, not clamped).

        Differentiable with respect to the adapter's parameters.
        """
        hr = torch.as_tensor(hr_bpm, dtype=torch.float32).reshape(-1)
        if hr.shape[0] not in (1, video.shape[0]):
            raise InputError(f"hr_bpm has {hr.shape[0]} values for a batch of {video.shape[0]} clips.")
        hr = hr.expand(video.shape[0])
        z = self.encode(video)
        c = self.condition(hr, remove)
        return self.decode(self.fuse(z, c), c, num_frames=video.shape[2])


# --------------------------------------------------------------------------- adapter files


def save_adapter(path, adapter: PhysioLatentAdapter, vae: VAE) -> None:
    """Write the adapter's weights + config + the VAE fingerprint to one .safetensors file (atomic)."""
    from safetensors.torch import save_file

    from ..atomic import atomic_path

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


# --------------------------------------------------------------------------- inference


@dataclass
class ModelEditResult:
    """Output of `edit_with_model` (mirrors editor.EditResult's main fields)."""

    frames: np.ndarray  # [T,H,W,3] float32 0..1
    mask: np.ndarray  # [T,H,W] float32, where the decoder output was composited
    fps: float
    target_hr_bpm: float | None
    mode: str
    info: dict = field(default_factory=dict)


def _to_video_tensor(crops: np.ndarray) -> torch.Tensor:
    """[T,S,S,3] 0..1 -> [1,3,T,S,S] in [-1,1] (float32, CPU)."""
    return torch.from_numpy(np.ascontiguousarray(crops, dtype=np.float32)).permute(3, 0, 1, 2)[None] * 2 - 1


def edit_with_model(
    frames: np.ndarray,
    fps: float,
    target_hr_bpm: float | None,
    model: PhysioLatent,
    face_mask: np.ndarray | None = None,
    crop_size: int = 256,
    mode: str = "edit",
    device="cpu",
    dtype: torch.dtype = torch.float32,
    window_frames: int = 49,
    overlap_frames: int = 8,
    track=None,
) -> ModelEditResult:
    """Edit (or remove) the pulse of a face video with a trained PhysioLatent model.

    frames [T,H,W,3] float32 0..1 -> face track -> fixed-size face crops [T,S,S,3] ->
    per temporal window (49 frames, 8 overlap, cross-faded): encode -> fuse -> FiLM
    decode, on `device` in `dtype`, under inference_mode -> uncrop -> composite inside
    `face_mask` (default: face.skin_mask of the track). Memory is bounded by one window
    on the device; the crops of the whole clip live on the host.
    """
    from .. import face as face_mod  # lazy: face.py pulls OpenCV

    if mode not in ("edit", "remove"):
        raise InputError(f"mode must be 'edit' or 'remove'; got {mode!r}.")
    frames = np.asarray(frames, dtype=np.float32)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise InputError(f"frames must be [T,H,W,3] float 0..1; got shape {frames.shape}.")
    if not fps or fps <= 0:
        raise InputError(f"fps must be positive; got {fps}.")
    if mode == "edit":
        if target_hr_bpm is None:
            raise InputError("mode='edit' needs target_hr_bpm (e.g. 90).")
        check_hr_bpm(target_hr_bpm)
    if crop_size % model.vae.spatial_ratio:
        raise InputError(f"crop_size must be a multiple of {model.vae.spatial_ratio}; got {crop_size}.")

    if track is None:
        track = face_mod.track_face(frames, fps)
    if face_mask is None:
        face_mask = face_mod.skin_mask(frames, track)
    crops, crop_info = face_mod.crop_faces(frames, track, size=crop_size, fixed=True)

    nn.Module.to(model.vae.model, device=device, dtype=dtype)  # note: moves the caller's VAE
    model.adapter.to(device)
    remove = mode == "remove"
    hr = torch.tensor([target_hr_bpm if not remove else 60.0], dtype=torch.float32, device=device)

    def run_window(v: torch.Tensor) -> torch.Tensor:
        v = v.to(device=device, dtype=dtype)
        z = model.vae.encode(v)
        c = model.condition(hr, remove)
        return model.decode(model.fuse(z, c), c, num_frames=v.shape[2]).float().cpu()

    video = _to_video_tensor(crops)
    try:
        with torch.inference_mode():
            out = map_windows(video, run_window, window_frames, overlap_frames)
    except torch.OutOfMemoryError as exc:
        raise InputError(f"Out of GPU memory editing {crop_size}x{crop_size} crops in {window_frames}-frame windows "
                         f"({exc}). Use a smaller crop_size (e.g. 128), a shorter window_frames (e.g. 25), "
                         "dtype=torch.bfloat16, or run on a GPU with more memory.") from exc
    edited_crops = ((out[0].permute(1, 2, 3, 0).numpy() + 1) / 2).clip(0, 1).astype(np.float32)
    edited = face_mod.uncrop_faces(edited_crops, crop_info, frames)
    result = face_mod.composite(frames, edited, face_mask)
    return ModelEditResult(
        frames=np.asarray(result, dtype=np.float32),
        mask=np.asarray(face_mask, dtype=np.float32),
        fps=float(fps),
        target_hr_bpm=None if remove else float(target_hr_bpm),
        mode=mode,
        info={"crop_size": crop_size, "window_frames": window_frames, "overlap_frames": overlap_frames,
              "device": str(device), "dtype": str(dtype)},
    )
