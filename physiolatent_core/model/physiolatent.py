"""PhysioLatent: frozen VAE + trainable adapter (condition, fusion, FiLM, conv_out).

    v [B,3,T,H,W] in [-1,1] --VAE.encode (frozen, no grad)--> z [B,16,T',h,w]
    hr_bpm [B], remove --HRConditioner--> c [B,cond_dim]
    z' = LatentFusion(z, c)
    v_hat = FiLMDecoder.decode(z', c)  (frozen decoder + FiLM + trainable conv_out)

At initialisation the adapter is the identity on the latent and FiLM is (1, 0), so
`PhysioLatent(vae, adapter)(v, hr)` equals the plain VAE reconstruction. The face mask
compositing (v_hat inside M, v outside) is done by the caller: `network_editor.NetworkEditor`
at inference, the training loop for the losses.

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

Adapter files (save_adapter / load_adapter) are ``adapter_file.py``'s.

Removal mode: `remove=True` selects the conditioner's learned remove embedding instead
of an HR condition (see text.py); the training loop teaches it with a removal loss.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from ..errors import InputError
from .film import FiLMDecoder
from .fusion import FusionConfig, LatentFusion, fusion_config_base, fusion_config_tiny
from .text import HRConditioner
from .vae import VAE

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
