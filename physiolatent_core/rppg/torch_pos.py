"""Differentiable POS and masked mean colour in PyTorch (for training losses).

``pos_torch`` computes exactly ``estimators.pos_raw`` (POS before detrend/band-pass) for a
batch, with autograd: every 1.6 s window (stride 1) is cut with ``Tensor.unfold`` and the
windows are overlap-added back with ``F.fold``. No Python loop over frames.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange

from ..errors import InputError
from .estimators import EPS, POS_PROJECTION


def pos_torch(rgb: torch.Tensor, fps: float, window_s: float = 1.6) -> torch.Tensor:
    """POS pulse of a batch of colour traces.

    Args:
        rgb: ``[B, T, 3]`` mean skin colour per frame (positive values, e.g. 0..1).
        fps: frame rate.
        window_s: POS window (1.6 s as in Wang et al. 2017).

    Returns:
        ``[B, T]`` pulse, same dtype/device; zero-mean per window, not band-passed.
    """
    if rgb.ndim != 3 or rgb.shape[-1] != 3:
        raise InputError(f"pos_torch expects rgb of shape [B, T, 3], got {tuple(rgb.shape)}.")
    if not (fps > 0 and math.isfinite(fps)):
        raise InputError(f"fps must be positive and finite, got {fps!r}.")
    b, t, _ = rgb.shape
    if t < 2:
        raise InputError(f"pos_torch needs at least 2 frames, got {t}.")
    win = int(min(max(math.ceil(window_s * fps), 2), t))

    windows = rgb.unfold(1, win, 1)  # [B, W, 3, win], W = T - win + 1
    cn = windows / windows.mean(dim=-1, keepdim=True).clamp_min(EPS)
    proj = torch.as_tensor(POS_PROJECTION, dtype=rgb.dtype, device=rgb.device)
    s = torch.einsum("kc,bwcl->bwkl", proj, cn)  # [B, W, 2, win]
    s1, s2 = s[:, :, 0], s[:, :, 1]
    # sqrt(var + EPS^2) instead of std: the same value to ~1e-12 relative, with a derivative
    # that stays bounded (<= 1/(2 EPS)) for (near-)constant windows such as padding frames.
    std1 = (s1.var(dim=-1, correction=0, keepdim=True) + EPS**2).sqrt()
    std2 = (s2.var(dim=-1, correction=0, keepdim=True) + EPS**2).sqrt()
    alpha = std1 / (std2 + EPS)
    h = s1 + alpha * s2
    h = h - h.mean(dim=-1, keepdim=True)  # [B, W, win]

    # Overlap-add: fold treats each window as a 1 x win patch at stride 1 along time.
    out = F.fold(rearrange(h, "b w l -> b l w"), output_size=(1, t), kernel_size=(1, win))
    return out[:, 0, 0, :]


def masked_mean_rgb_torch(video: torch.Tensor, mask: torch.Tensor | None = None, layout: str = "auto") -> torch.Tensor:
    """Mask-weighted mean colour per frame, differentiable.

    Args:
        video: ``[B, 3, T, H, W]`` ("bcthw", VAE layout) or ``[B, T, H, W, 3]`` ("bthwc",
            ComfyUI layout). ``layout="auto"`` picks "bthwc" when the last axis has size 3,
            else "bcthw"; pass it explicitly when both axes could be 3.
        mask: ``[B, T, H, W]``, ``[B, 1, T, H, W]``, ``[T, H, W]`` or ``[H, W]`` weights, or None.

    Returns:
        ``[B, T, 3]``. Frames with an all-zero mask give 0 (the sum is clamped, not NaN).
    """
    if video.ndim != 5:
        raise InputError(f"video must be 5-D [B,3,T,H,W] or [B,T,H,W,3], got {tuple(video.shape)}.")
    if layout == "auto":
        layout = "bthwc" if video.shape[-1] == 3 else "bcthw"
    if layout == "bthwc":
        v = video
    elif layout == "bcthw":
        if video.shape[1] != 3:
            raise InputError(f"video in layout [B,3,T,H,W] must have 3 channels, got {tuple(video.shape)}.")
        v = rearrange(video, "b c t h w -> b t h w c")
    else:
        raise InputError(f"layout must be 'auto', 'bthwc' or 'bcthw', got {layout!r}.")
    b, t, h, w, _ = v.shape
    if mask is None:
        return v.mean(dim=(2, 3))
    m = mask.to(v.dtype)
    if m.ndim == 5:
        m = m[:, 0]
    if m.ndim == 2:
        m = m.expand(b, t, h, w)
    elif m.ndim == 3:
        m = m.unsqueeze(0).expand(b, t, h, w)
    if tuple(m.shape) != (b, t, h, w):
        raise InputError(f"mask shape {tuple(mask.shape)} does not fit video {tuple(video.shape)}; expected [B,T,H,W].")
    num = torch.einsum("bthwc,bthw->btc", v, m)
    den = m.sum(dim=(2, 3)).clamp_min(EPS).unsqueeze(-1)
    return num / den
