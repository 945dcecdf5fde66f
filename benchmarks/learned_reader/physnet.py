"""PhysNet (Yu, Li, Zhao, BMVC 2019), the 3D-CNN encoder-decoder variant, from the paper.

The paper's PhysNet-3DCNN-ED: a spatio-temporal encoder of 3D convolutions (batch norm,
ReLU) that pools space down to a few pixels and time by 4, a decoder of two transposed
temporal convolutions (batch norm, ELU) back to the input's frame count, a spatial
average pool, and a 1x1x1 convolution to one waveform value per frame. It is trained with
the negative Pearson correlation between that waveform and the true pulse.

Layout (channels ``c1, c2``; the paper has 32 and 64):

=====  ==================================  ============================
block  layer                               output [C, T, S, S], S = 64
=====  ==================================  ============================
1      conv 1x5x5, BN, ReLU                c1, T, 64
       max-pool 1x2x2                      c1, T, 32
2, 3   conv 3x3x3, BN, ReLU (x2)           c2, T, 32
       max-pool 2x2x2                      c2, T/2, 16
4, 5   conv 3x3x3 (x2)                     c2, T/2, 16
       max-pool 2x2x2                      c2, T/4, 8
6, 7   conv 3x3x3 (x2)                     c2, T/4, 8
       max-pool 1x2x2                      c2, T/4, 4
8, 9   conv 3x3x3 (x2)                     c2, T/4, 4
up     convT 4x1x1 stride 2x1x1 (x2)       c2, T, 4
       average pool over space             c2, T, 1
out    conv 1x1x1                          1, T
=====  ==================================  ============================

Reduced for CPU training on two shared cores: ``c1 = 8, c2 = 16`` (a quarter of the paper's widths)
and 64 x 64 crops (the paper uses 128 x 128).
"""

from __future__ import annotations

import torch
from torch import nn


def _block(c_in: int, c_out: int, kernel: tuple[int, int, int]) -> nn.Sequential:
    padding = tuple(k // 2 for k in kernel)
    return nn.Sequential(nn.Conv3d(c_in, c_out, kernel, padding=padding), nn.BatchNorm3d(c_out), nn.ReLU(inplace=True))


def _up(c: int) -> nn.Sequential:
    return nn.Sequential(nn.ConvTranspose3d(c, c, (4, 1, 1), stride=(2, 1, 1), padding=(1, 0, 0)),
                         nn.BatchNorm3d(c), nn.ELU(inplace=True))


class PhysNet(nn.Module):
    """``x [B, 3, T, S, S]`` (T a multiple of 4) -> waveform ``[B, T]``."""

    def __init__(self, c1: int = 16, c2: int = 32):
        super().__init__()
        self.c1, self.c2 = c1, c2
        self.encoder = nn.Sequential(
            _block(3, c1, (1, 5, 5)),
            nn.MaxPool3d((1, 2, 2)),
            _block(c1, c2, (3, 3, 3)), _block(c2, c2, (3, 3, 3)),
            nn.MaxPool3d((2, 2, 2)),
            _block(c2, c2, (3, 3, 3)), _block(c2, c2, (3, 3, 3)),
            nn.MaxPool3d((2, 2, 2)),
            _block(c2, c2, (3, 3, 3)), _block(c2, c2, (3, 3, 3)),
            nn.MaxPool3d((1, 2, 2)),
            _block(c2, c2, (3, 3, 3)), _block(c2, c2, (3, 3, 3)),
        )
        self.decoder = nn.Sequential(_up(c2), _up(c2))
        self.head = nn.Conv3d(c2, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = x.shape[2]
        z = self.decoder(self.encoder(x))
        z = nn.functional.adaptive_avg_pool3d(z, (t, 1, 1))
        return self.head(z)[:, 0, :, 0, 0]


def neg_pearson(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of 1 - Pearson r between ``pred [B, T]`` and ``target [B, T]``."""
    p = pred - pred.mean(dim=1, keepdim=True)
    q = target - target.mean(dim=1, keepdim=True)
    r = (p * q).sum(dim=1) / (p.norm(dim=1) * q.norm(dim=1) + 1e-8)
    return (1.0 - r).mean()


def standardise(crops: torch.Tensor) -> torch.Tensor:
    """Face crops ``[B, T, S, S, 3]`` 0..1 -> the network's input ``[B, 3, T, S, S]``: each
    pixel's relative change from its mean over the window, in percent, clipped to +-20 (so
    a face edge sweeping past a pixel cannot swamp a 0.3 % pulse)."""
    mean = crops.mean(dim=1, keepdim=True).clamp_min(1.0 / 255)
    x = (100.0 * (crops / mean - 1.0)).clamp(-20.0, 20.0)
    return x.permute(0, 4, 1, 2, 3).contiguous()
