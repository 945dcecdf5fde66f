"""Latent fusion F(z, c) -> z': the paper's spatio-temporal layers (Fig. 4).

Two variants, selected by `FusionConfig.variant`:

(a) ``"conv"``  (ablation baseline): [z ; proj(c) broadcast] -> 1x1x1 conv to `hidden`
    -> 4 pseudo-(2+1)D conv blocks -> output projection.
(b) ``"attention"`` (proposed, default):
        x = in_proj([z ; proj(c) broadcast over T,h,w])         [B, D, T, h, w]
        x = x + PseudoConv3d(x)                                  spatial 3x3 then temporal k=3
        x = x + time positional encoding (sinusoidal, per latent frame)
        N x DividedSTBlock(x, c):
            x = x + SpatialAttn(LN(x))                           tokens: the h*w positions of one frame
            x = x + g1(c) * TemporalAttn(AdaLN(x; c))            tokens: the T frames at one position
            x = x + g2(c) * MLP(AdaLN(x; c))
        out = Linear(AdaLN(x; c))                                -> [B, C, T, h, w]
    z' = z + out.

Choices where the paper is silent (documented here, see ../../docs/ARCHITECTURE.md):
* AdaLN is DiT-style (shift, scale, gate from c); only the temporal stream is
  conditioned, as in the paper's figure. Gates and the output projection are
  zero-initialised ("AdaLN-Zero"), so the untrained network is exactly z' = z.
* The pseudo-(2+1)D conv's temporal kernel is centred by default (`causal_time=False`);
  `causal_time=True` pads only the past, like the VAE.
* Spatial positions are not encoded explicitly: the 3x3 convolution before the
  attention already makes features position-aware locally. Time gets a sinusoidal code
  so temporal attention can see frame order (the pulse phase).

Public API
----------
FusionConfig (dataclass; .to_dict() / FusionConfig(**d))
fusion_config_tiny() / fusion_config_base() -> FusionConfig
LatentFusion(config)
    forward(z [B,C,T,h,w], c [B,cond_dim]) -> z' [B,C,T,h,w]
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn


@dataclass
class FusionConfig:
    latent_channels: int = 16  # C of the VAE latent
    cond_dim: int = 256  # width of c from HRConditioner
    cond_channels: int = 16  # proj(c) channels concatenated to z
    hidden: int = 256  # D, working width
    num_blocks: int = 4  # divided space-time blocks (or conv blocks for "conv")
    num_heads: int = 4
    mlp_ratio: float = 2.0
    variant: str = "attention"  # "attention" (b) or "conv" (a)
    causal_time: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


def fusion_config_tiny() -> FusionConfig:
    """For tests on CPU: a few thousand parameters per block."""
    return FusionConfig(cond_dim=32, cond_channels=4, hidden=32, num_blocks=2, num_heads=2)


def fusion_config_base() -> FusionConfig:
    """Default for training on a GPU (about 5.7 M parameters)."""
    return FusionConfig(cond_dim=256, cond_channels=16, hidden=256, num_blocks=4, num_heads=4)


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """AdaLN: x [N, L, D] with shift/scale [N, D]."""
    return x * (1 + scale[:, None]) + shift[:, None]


def time_encoding(num_frames: int, dim: int, device) -> torch.Tensor:
    """Sinusoidal code [T, dim] of the latent frame index."""
    pos = torch.arange(num_frames, device=device, dtype=torch.float32)[:, None]
    freqs = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim))
    enc = torch.zeros(num_frames, dim, device=device)
    enc[:, 0::2] = torch.sin(pos * freqs)
    enc[:, 1::2] = torch.cos(pos * freqs[: dim // 2])
    return enc


class PseudoConv3d(nn.Module):
    """(2+1)D convolution: GroupNorm -> SiLU -> 3x3 spatial conv -> SiLU -> k=3 temporal conv.

    [B, D, T, h, w] -> [B, D, T, h, w]. Used inside a residual.
    """

    def __init__(self, dim: int, causal_time: bool = False):
        super().__init__()
        self.norm = nn.GroupNorm(min(32, dim // 4) or 1, dim)
        self.spatial = nn.Conv3d(dim, dim, kernel_size=(1, 3, 3), padding=(0, 1, 1))
        self.temporal = nn.Conv3d(dim, dim, kernel_size=(3, 1, 1))
        self.causal_time = causal_time

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.spatial(F.silu(self.norm(x)))
        # replicate padding in time: no artificial dark frame at the clip ends
        pad = (0, 0, 0, 0, 2, 0) if self.causal_time else (0, 0, 0, 0, 1, 1)
        return self.temporal(F.pad(F.silu(x), pad, mode="replicate"))


class Attention(nn.Module):
    """Multi-head self-attention on [N, L, D] (PyTorch SDPA)."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = rearrange(self.qkv(x), "n l (three h d) -> three n h l d", three=3, h=self.num_heads)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(rearrange(out, "n h l d -> n l (h d)"))


class DividedSTBlock(nn.Module):
    """Spatial attention, then AdaLN-conditioned temporal attention and MLP. [B,D,T,h,w] -> same."""

    def __init__(self, dim: int, num_heads: int, cond_dim: int, mlp_ratio: float):
        super().__init__()
        self.norm_s = nn.LayerNorm(dim)
        self.attn_s = Attention(dim, num_heads)
        self.norm_t = nn.LayerNorm(dim, elementwise_affine=False)
        self.attn_t = Attention(dim, num_heads)
        self.norm_m = nn.LayerNorm(dim, elementwise_affine=False)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, dim))
        # c -> (shift, scale, gate) for temporal attention and for the MLP
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(cond_dim, 6 * dim))
        # spatial attention has no c-gate: zero its output projection instead, so the block starts as identity
        nn.init.zeros_(self.attn_s.proj.weight)
        nn.init.zeros_(self.attn_s.proj.bias)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        b, _, t, h, w = x.shape
        # spatial: one sequence of h*w tokens per frame
        s = rearrange(x, "b d t h w -> (b t) (h w) d")
        s = s + self.attn_s(self.norm_s(s))
        # temporal: one sequence of T tokens per spatial position, modulated by c
        x = rearrange(s, "(b t) (h w) d -> (b h w) t d", b=b, h=h)
        shift_t, scale_t, gate_t, shift_m, scale_m, gate_m = self.ada(c).chunk(6, dim=-1)  # each [B, D]
        per_pos = lambda v: v.repeat_interleave(h * w, dim=0)  # [B, D] -> [(B h w), D]  # noqa: E731
        x = x + per_pos(gate_t)[:, None] * self.attn_t(modulate(self.norm_t(x), per_pos(shift_t), per_pos(scale_t)))
        x = x + per_pos(gate_m)[:, None] * self.mlp(modulate(self.norm_m(x), per_pos(shift_m), per_pos(scale_m)))
        return rearrange(x, "(b h w) t d -> b d t h w", b=b, h=h)


class LatentFusion(nn.Module):
    """F(z, c): z [B,C,T,h,w], c [B,cond_dim] -> z' [B,C,T,h,w]; identity at initialisation."""

    def __init__(self, config: FusionConfig | dict | None = None):
        super().__init__()
        cfg = config if isinstance(config, FusionConfig) else FusionConfig(**(config or {}))
        if cfg.variant not in ("attention", "conv"):
            raise ValueError(f"FusionConfig.variant must be 'attention' or 'conv'; got {cfg.variant!r}")
        self.config = cfg
        d = cfg.hidden
        self.cond_proj = nn.Linear(cfg.cond_dim, cfg.cond_channels)
        self.in_proj = nn.Conv3d(cfg.latent_channels + cfg.cond_channels, d, kernel_size=1)
        if cfg.variant == "conv":
            self.convs = nn.ModuleList(PseudoConv3d(d, cfg.causal_time) for _ in range(cfg.num_blocks))
            self.out = nn.Sequential(nn.GroupNorm(min(32, d // 4) or 1, d), nn.SiLU(), nn.Conv3d(d, cfg.latent_channels, 1))
            nn.init.zeros_(self.out[-1].weight)
            nn.init.zeros_(self.out[-1].bias)
        else:
            self.conv = PseudoConv3d(d, cfg.causal_time)
            self.blocks = nn.ModuleList(
                DividedSTBlock(d, cfg.num_heads, cfg.cond_dim, cfg.mlp_ratio) for _ in range(cfg.num_blocks)
            )
            self.norm_out = nn.LayerNorm(d, elementwise_affine=False)
            self.ada_out = nn.Sequential(nn.SiLU(), nn.Linear(cfg.cond_dim, 2 * d))
            self.out = nn.Linear(d, cfg.latent_channels)
            for blk in self.blocks:  # AdaLN-Zero
                nn.init.zeros_(blk.ada[-1].weight)
                nn.init.zeros_(blk.ada[-1].bias)
            nn.init.zeros_(self.ada_out[-1].weight)
            nn.init.zeros_(self.ada_out[-1].bias)
            nn.init.zeros_(self.out.weight)
            nn.init.zeros_(self.out.bias)

    def forward(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """z [B,C,T,h,w] (any float dtype), c [B,cond_dim] -> z' [B,C,T,h,w] in z's dtype.

        Computation runs in this module's dtype (its parameters'), so a float32 adapter
        can sit on a bf16 VAE.
        """
        dtype = self.in_proj.weight.dtype
        x_z, c = z.to(dtype), c.to(dtype)
        b, _, t, h, w = z.shape
        cmap = self.cond_proj(c)[:, :, None, None, None].expand(-1, -1, t, h, w)  # broadcast over T,h,w
        x = self.in_proj(torch.cat([x_z, cmap], dim=1))  # [B, D, T, h, w]
        if self.config.variant == "conv":
            for conv in self.convs:
                x = x + conv(x)
            delta = self.out(x)
        else:
            x = x + self.conv(x)
            x = x + rearrange(time_encoding(t, x.shape[1], x.device).to(dtype), "t d -> 1 d t 1 1")
            for blk in self.blocks:
                x = blk(x, c)
            shift, scale = self.ada_out(c).chunk(2, dim=-1)
            tokens = rearrange(x, "b d t h w -> b (t h w) d")
            delta = rearrange(self.out(modulate(self.norm_out(tokens), shift, scale)),
                              "b (t h w) c -> b c t h w", t=t, h=h)
        return (x_z + delta).to(z.dtype)
