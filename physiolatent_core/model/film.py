"""FiLM-conditioned VAE decoder with a fine-tuned output layer.

The paper: "We apply FiLM in the decoder with a fine-tuned output layer to avoid the
degradation of physiological signals during reconstruction." Where FiLM goes is not
stated; we put it after the decoder's mid block and after each of its up blocks:

    h <- h * (1 + gamma_k(c)) + beta_k(c)      gamma_k, beta_k: [B, C_k], per channel

with `gamma_k, beta_k = Linear_k(SiLU(c))`, zero-initialised (gamma = 0 i.e. scale 1,
beta = 0 at start). `decoder.conv_out` (10,371 parameters in CogVideoX-2B) is replaced
by a trainable copy; everything else in the VAE stays frozen and shared.

Mechanism: inside `FiLMDecoder.decode` only, the decoder's mid block and up blocks
are temporarily replaced by wrappers that apply FiLM to their outputs (diffusers
blocks return `(hidden_states, conv_cache)`), and `decoder.conv_out` by the trainable
copy; the plain `VAE.decode` is unaffected. Wrappers, not hooks, so that diffusers'
gradient checkpointing (which re-runs blocks during backward) stays correct.
diffusers decodes latents a few frames at a time; FiLM is constant over time, so this
chunking does not change what FiLM does.

Public API
----------
FiLMDecoder(vae, cond_dim)
    decode(z [B,C,T',h,w], c [B,cond_dim], num_frames=None) -> video [B,3,T,H,W]
    film_channels -> list[int]          channels modulated at each FiLM site
The VAE is held by reference, not registered: the FiLMDecoder's state_dict holds only
its generators and conv_out (the adapter file stays small).
"""

from __future__ import annotations

import copy
from contextlib import contextmanager

import torch
from torch import nn

from .vae import VAE


class FiLMDecoder(nn.Module):
    """Decoder of a frozen VAE with per-channel FiLM from c and a trainable conv_out."""

    def __init__(self, vae: VAE, cond_dim: int):
        super().__init__()
        self._vae = (vae,)  # a tuple hides it from nn.Module registration
        dec = vae.decoder
        self.sites = ["mid_block"] + [f"up_blocks.{i}" for i in range(len(dec.up_blocks))]
        channels = [dec.mid_block.resnets[-1].out_channels] + [blk.resnets[-1].out_channels for blk in dec.up_blocks]
        self.film_channels = channels
        self.generators = nn.ModuleList(nn.Sequential(nn.SiLU(), nn.Linear(cond_dim, 2 * ch)) for ch in channels)
        for g in self.generators:
            nn.init.zeros_(g[-1].weight)
            nn.init.zeros_(g[-1].bias)
        # trainable float32 copy of the output layer, starting from the pretrained weights
        self.conv_out = copy.deepcopy(dec.conv_out).float().requires_grad_(True)

    @property
    def vae(self) -> VAE:
        return self._vae[0]

    @contextmanager
    def _conditioned(self, c: torch.Tensor):
        """Wrap the shared decoder's blocks with FiLM and install the trainable conv_out; restore after.

        Wrapping (rather than forward hooks that are removed on exit) matters for
        gradient checkpointing: diffusers' checkpoint keeps a reference to the called
        module and re-runs it during backward, after this context has exited, so the
        FiLM parameters must live in that module object.
        """
        dec = self.vae.decoder
        params = [g(c) for g in self.generators]  # each [B, 2*C_k], float32
        original_mid, original_ups, original_out = dec.mid_block, list(dec.up_blocks), dec.conv_out
        dec.mid_block = _FiLMBlock(original_mid, params[0])
        for i, (blk, p) in enumerate(zip(original_ups, params[1:])):
            dec.up_blocks[i] = _FiLMBlock(blk, p)
        dec.conv_out = _DtypeBridge(self.conv_out)
        try:
            yield
        finally:
            dec.mid_block, dec.conv_out = original_mid, original_out
            for i, blk in enumerate(original_ups):
                dec.up_blocks[i] = blk

    def decode(self, z: torch.Tensor, c: torch.Tensor, num_frames: int | None = None) -> torch.Tensor:
        """z [B,C,T',h,w] (scaled latent), c [B,cond_dim] -> video [B,3,T,H,W] (float32 from conv_out)."""
        with self._conditioned(c):
            return self.vae.decode(z, num_frames=num_frames)


class _FiLMBlock(nn.Module):
    """A diffusers decoder block followed by FiLM: h * (1 + gamma) + beta, per channel."""

    def __init__(self, block: nn.Module, film: torch.Tensor):
        super().__init__()
        self.block = block
        self.film = film  # [B, 2*C] (a tensor attribute, not a parameter: it is computed from c)

    def forward(self, *args, **kwargs):
        hidden, cache = self.block(*args, **kwargs)  # diffusers blocks return (hidden_states, conv_cache)
        gamma, beta = self.film.to(hidden.dtype)[:, :, None, None, None].chunk(2, dim=1)
        return hidden * (1 + gamma) + beta, cache


class _DtypeBridge(nn.Module):
    """Runs the float32 trainable conv_out on a (possibly bf16/fp16) decoder's features."""

    def __init__(self, conv: nn.Module):
        super().__init__()
        self.conv = conv

    def forward(self, x: torch.Tensor, conv_cache=None):
        dtype = next(self.conv.parameters()).dtype
        if conv_cache is not None:
            conv_cache = conv_cache.to(dtype)
        return self.conv(x.to(dtype), conv_cache=conv_cache)
