"""Training losses of the PhysioLatent network (paper §3), in torch.

    L_total = α·L_wave + β(t)·L_freq + λ·L_F                 (edit mode)
    L_total = α·L_removal + λ·L_F                            (removal mode)

* ``fidelity_loss`` (L_F): MSE (+ LPIPS) between output and input video.
* ``wave_loss``: 1 − phase-invariant Pearson correlation between the output's
  rPPG and a sinusoid at the target HR. The paper does not say how the phase of
  the sinusoid is chosen; we take the best phase in closed form (projection on
  the sin/cos pair), so the network is never punished for the pulse's phase.
* ``freq_loss``: |f_target − f_pred| in Hz, f_pred a soft-argmax over the PSD.
* ``removal_loss``: fraction of in-band power concentrated around the dominant
  peak; minimising it flattens the spectrum, i.e. removes any periodic pulse.
* ``beta_schedule``: the curriculum ramp β(t) on the frequency term.

Signals are ``[B, T]`` torch tensors sampled at ``fps`` (a Python float); HRs
are in bpm at the API and converted to Hz here. Videos are the model's layout,
``[B, 3, T, H, W]`` in [-1, 1]; masks ``[B, T, H, W]`` in 0..1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from .errors import InputError, ModelFileError

__all__ = [
    "PhysioLoss",
    "beta_schedule",
    "fidelity_loss",
    "freq_loss",
    "make_lpips",
    "masked_mean_rgb",
    "removal_loss",
    "wave_loss",
]

_EPS = 1e-8


# --------------------------------------------------------------------------- helpers


def _as_hr_tensor(target_hr_bpm, batch: int, like: torch.Tensor) -> torch.Tensor:
    """Target HR as a float tensor ``[B]`` on ``like``'s device (accepts a float or a [B] tensor)."""
    hr = torch.as_tensor(target_hr_bpm, dtype=like.dtype, device=like.device).reshape(-1)
    if hr.numel() == 1:
        hr = hr.expand(batch)
    if hr.numel() != batch:
        raise InputError(f"target_hr_bpm has {hr.numel()} values for a batch of {batch}; give one HR per clip.")
    return hr


def _check_pulse(pulse: torch.Tensor, fps: float) -> None:
    if pulse.ndim != 2:
        raise InputError(f"pulse must be [B, T]; got shape {tuple(pulse.shape)}.")
    if pulse.shape[1] < 8:
        raise InputError(f"pulse has only {pulse.shape[1]} samples; a heart rate needs a few seconds of signal.")
    if not fps > 0:
        raise InputError(f"fps must be positive; got {fps}.")


def _band_psd(pulse: torch.Tensor, fps: float, band_bpm: tuple[float, float], pad_factor: int = 8):
    """Power spectrum of ``pulse`` [B, T] restricted to ``band_bpm``.

    Mean-removed, Hann-windowed (so a sinusoid's lobe is symmetric about its true
    frequency and a soft-argmax lands on it) and zero-padded to ``pad_factor``×
    the next power of two, for a frequency grid finer than 1/duration.

    Returns ``(freqs_hz [F], psd [B, F])``.
    """
    t = pulse.shape[1]
    lo_hz, hi_hz = band_bpm[0] / 60.0, band_bpm[1] / 60.0
    if not 0 < lo_hz < hi_hz < fps / 2:
        raise InputError(f"band_bpm={band_bpm} must lie inside (0, Nyquist={fps * 30:.0f} bpm) for fps={fps}.")
    x = pulse - pulse.mean(dim=1, keepdim=True)
    x = x * torch.hann_window(t, periodic=False, dtype=x.dtype, device=x.device)
    n_fft = pad_factor * (1 << (t - 1).bit_length())
    spec = torch.fft.rfft(x, n=n_fft, dim=1)
    psd = spec.real**2 + spec.imag**2
    freqs = torch.fft.rfftfreq(n_fft, d=1.0 / fps).to(x.device, x.dtype)
    keep = (freqs >= lo_hz) & (freqs <= hi_hz)
    return freqs[keep], psd[:, keep]


# --------------------------------------------------------------------------- fidelity


def make_lpips(net: str = "alex", device: str | torch.device = "cpu") -> nn.Module:
    """Build a frozen LPIPS metric (the ``lpips`` package), or say exactly what is missing.

    LPIPS needs ``pip install lpips torchvision`` (torchvision must match your torch
    build) and the ImageNet backbone weights, which torchvision downloads into
    ``$TORCH_HOME/hub/checkpoints`` (default ``~/.cache/torch/hub/checkpoints``; for
    ``net="alex"`` the file ``alexnet-owt-7be5be79.pth``). Offline, copy that file there.
    """
    try:
        import lpips  # noqa: PLC0415 - optional, heavy
    except ImportError as exc:
        raise ImportError(
            "LPIPS was asked for but the 'lpips' package (and torchvision) is not installed. "
            "Install both with `pip install lpips torchvision` (torchvision matching your torch build), "
            "or train with lpips_weight=0 (MSE only)."
        ) from exc
    try:
        metric = lpips.LPIPS(net=net, verbose=False)
    except Exception as exc:  # the backbone download fails offline
        raise ModelFileError(
            f"LPIPS could not load its '{net}' backbone weights ({exc}). torchvision looks for them in "
            "$TORCH_HOME/hub/checkpoints (default ~/.cache/torch/hub/checkpoints); for net='alex' copy "
            "alexnet-owt-7be5be79.pth there, or train with lpips_weight=0 (MSE only)."
        ) from exc
    metric = metric.to(device).eval()
    for p in metric.parameters():
        p.requires_grad_(False)
    return metric


def fidelity_loss(
    output: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor | None = None,
    lpips_fn: nn.Module | None = None,
    lpips_weight: float = 1.0,
) -> torch.Tensor:
    """L_F = MSE(output, target) + lpips_weight · LPIPS(output, target).

    Args:
        output, target: ``[B, 3, T, H, W]`` in [-1, 1].
        mask: optional ``[B, T, H, W]`` (or ``[B, 1, T, H, W]``) weights for the MSE
            (mean over the masked pixels). LPIPS always sees whole frames.
        lpips_fn: a callable ``(x [N,3,H,W], y [N,3,H,W]) -> [N,...]`` in [-1, 1],
            e.g. ``make_lpips()``. Required when ``lpips_weight > 0``: we never
            silently drop a term that was asked for.
    Returns: scalar tensor.
    """
    if output.shape != target.shape or output.ndim != 5 or output.shape[1] != 3:
        raise InputError(
            f"fidelity_loss wants two [B,3,T,H,W] videos of the same shape; got {tuple(output.shape)} "
            f"and {tuple(target.shape)}."
        )
    sq = (output - target) ** 2
    if mask is None:
        mse = sq.mean()
    else:
        m = mask if mask.ndim == 5 else mask.unsqueeze(1)
        m = m.to(sq.dtype).expand_as(sq)
        mse = (sq * m).sum() / m.sum().clamp_min(_EPS)
    if lpips_weight == 0:
        return mse
    if lpips_fn is None:
        raise InputError(
            f"lpips_weight={lpips_weight} but no lpips_fn was given; pass lpips_fn=make_lpips() "
            "or set lpips_weight=0 for an MSE-only loss."
        )
    frames_out = rearrange(output, "b c t h w -> (b t) c h w")
    frames_tgt = rearrange(target, "b c t h w -> (b t) c h w")
    return mse + lpips_weight * lpips_fn(frames_out, frames_tgt).mean()


# --------------------------------------------------------------------------- physiological


def wave_loss(pulse: torch.Tensor, target_hr_bpm, fps: float) -> torch.Tensor:
    """1 − max over phase of Pearson(pulse, sin(2π f t + φ)), f = HR/60; mean over the batch.

    The maximum over φ has a closed form: a phase-shifted sinusoid is a point in
    span{sin, cos}; after removing means and orthonormalising that pair (they are
    not orthogonal on a window that is not a whole number of periods), the best
    correlation is the norm of the projection of the normalised pulse on it,
    ``sqrt(ρ_sin² + ρ_cos²)``.

    Args: pulse ``[B, T]``; target_hr_bpm float or ``[B]``; fps float.
    Returns: scalar in [0, 1]: 0 for a sinusoid at the target (any phase), ≈1 for
    noise or a different frequency.
    """
    _check_pulse(pulse, fps)
    b, t = pulse.shape
    hr = _as_hr_tensor(target_hr_bpm, b, pulse)
    time_s = torch.arange(t, dtype=pulse.dtype, device=pulse.device) / fps
    arg = 2 * math.pi * (hr / 60.0)[:, None] * time_s[None, :]  # [B, T]

    def unit(x: torch.Tensor) -> torch.Tensor:
        x = x - x.mean(dim=1, keepdim=True)
        return x / (x.norm(dim=1, keepdim=True) + _EPS)

    s = unit(torch.sin(arg))
    c = unit(torch.cos(arg))
    c = unit(c - (c * s).sum(dim=1, keepdim=True) * s)  # Gram–Schmidt
    p = unit(pulse)
    rho_s = (p * s).sum(dim=1)
    rho_c = (p * c).sum(dim=1)
    corr = torch.sqrt(rho_s**2 + rho_c**2 + _EPS)  # eps: finite gradient at corr = 0
    return (1.0 - corr).mean()


def spectral_peak_hz(
    pulse: torch.Tensor,
    fps: float,
    band_bpm: tuple[float, float] = (40.0, 180.0),
    temperature: float = 0.05,
) -> torch.Tensor:
    """Differentiable dominant frequency ``[B]`` in Hz: soft-argmax over the in-band PSD.

    Weights are ``softmax((psd / max psd) / temperature)``: with temperature 0.05
    a bin at half the peak power weighs e^-10 of the peak, so this is an argmax
    that still passes gradient to every bin near the peak.
    """
    _check_pulse(pulse, fps)
    freqs, psd = _band_psd(pulse, fps, band_bpm)
    rel = psd / (psd.amax(dim=1, keepdim=True) + _EPS)
    weights = torch.softmax(rel / temperature, dim=1)
    return (weights * freqs[None, :]).sum(dim=1)


def freq_loss(
    pulse: torch.Tensor,
    target_hr_bpm,
    fps: float,
    band_bpm: tuple[float, float] = (40.0, 180.0),
    temperature: float = 0.05,
) -> torch.Tensor:
    """|f_target − f_pred| in Hz (paper's L_freq), mean over the batch.

    ``f_pred`` is ``spectral_peak_hz`` (soft-argmax on a zero-padded Hann FFT).
    Args: pulse ``[B, T]``; target_hr_bpm float or ``[B]``; fps float.
    """
    hr = _as_hr_tensor(target_hr_bpm, pulse.shape[0], pulse)
    f_pred = spectral_peak_hz(pulse, fps, band_bpm, temperature)
    return (hr / 60.0 - f_pred).abs().mean()


def removal_loss(
    pulse: torch.Tensor,
    fps: float,
    band_bpm: tuple[float, float] = (40.0, 180.0),
    peak_halfwidth_bpm: float = 6.0,
    temperature: float = 0.02,
) -> torch.Tensor:
    """Spectral peakedness to minimise in removal mode; mean over the batch.

    For each candidate HR in the band, the fraction of in-band power within
    ±``peak_halfwidth_bpm`` of it (the same ±6 bpm window as the rPPG SNR); the
    loss is a soft maximum of that fraction over candidates. ≈1 for a pure
    sinusoid, ≈ window/band width for white noise; it falls as the pulse's
    power is spread across the band, which is what lowers the rPPG SNR.

    Args: pulse ``[B, T]``; fps float. Returns a scalar in (0, 1].
    """
    _check_pulse(pulse, fps)
    freqs, psd = _band_psd(pulse, fps, band_bpm)
    df_bpm = float(freqs[1] - freqs[0]) * 60.0 if freqs.numel() > 1 else 1.0
    half = max(1, int(round(peak_halfwidth_bpm / df_bpm)))
    frac = psd / (psd.sum(dim=1, keepdim=True) + _EPS)
    window_power = F.avg_pool1d(frac[:, None, :], 2 * half + 1, stride=1, padding=half, count_include_pad=True)
    window_power = window_power[:, 0, :] * (2 * half + 1)  # sums, not means
    weights = torch.softmax(window_power / temperature, dim=1)
    return (weights * window_power).sum(dim=1).mean()


# --------------------------------------------------------------------------- schedule


def beta_schedule(step: int, start: int, length: int, beta_max: float, shape: str = "linear") -> float:
    """Curriculum weight β(step) of the frequency loss.

    0 before ``start``, ramps to ``beta_max`` over ``length`` steps, then stays.
    ``shape="linear"`` or ``"cosine"`` (half-cosine ease-in/out). ``length=0`` is a step.
    """
    if length < 0 or start < 0:
        raise InputError(f"beta_schedule needs start >= 0 and length >= 0; got start={start}, length={length}.")
    if shape not in ("linear", "cosine"):
        raise InputError(f"beta_schedule shape must be 'linear' or 'cosine'; got {shape!r}.")
    if step < start:
        return 0.0
    if length == 0 or step >= start + length:
        return float(beta_max)
    progress = (step - start) / length
    if shape == "cosine":
        progress = 0.5 * (1.0 - math.cos(math.pi * progress))
    return float(beta_max) * progress


# --------------------------------------------------------------------------- rPPG of a video


def masked_mean_rgb(video: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mask-weighted mean colour per frame of a model-layout video.

    Args: video ``[B, 3, T, H, W]`` in [-1, 1]; mask ``[B, T, H, W]`` / ``[B, 1, T, H, W]`` or None.
    Returns: ``[B, T, 3]`` in 0..1 (the range POS expects: it divides by the mean colour).
    """
    from .rppg.torch_pos import masked_mean_rgb_torch  # noqa: PLC0415

    return masked_mean_rgb_torch((video + 1.0) * 0.5, mask, layout="bcthw")


def _pos(rgb: torch.Tensor, fps: float) -> torch.Tensor:
    """Differentiable POS ``[B,T,3] -> [B,T]`` (rppg.torch_pos, same maths as the evaluation's POS)."""
    from .rppg.torch_pos import pos_torch  # noqa: PLC0415

    return pos_torch(rgb, fps)


# --------------------------------------------------------------------------- total


@dataclass
class LossWeights:
    """Weights of the total objective (paper §3; values are ours, the paper gives none)."""

    alpha: float = 1.0  # wave (edit) / removal (remove) term
    beta_max: float = 1.0  # frequency term after the ramp
    beta_start: int = 0
    beta_length: int = 1000
    beta_shape: str = "linear"
    lam: float = 1.0  # fidelity term
    lpips_weight: float = 1.0


class PhysioLoss(nn.Module):
    """The paper's total objective on a batch of output videos.

    ``forward(output_video, input_video, face_mask, target_hr_bpm, fps, step, remove=False)``
    returns ``(total, parts)`` where ``parts`` holds detached floats:
    ``fidelity, wave, freq, removal, beta, total`` (terms not used in the mode are 0).
    The rPPG signal is POS on the mask-weighted mean colour of the output.
    """

    def __init__(
        self,
        alpha: float = 1.0,
        beta_max: float = 1.0,
        beta_start: int = 0,
        beta_length: int = 1000,
        lam: float = 1.0,
        lpips_weight: float = 1.0,
        lpips_fn: nn.Module | None = None,
        beta_shape: str = "linear",
        band_bpm: tuple[float, float] = (40.0, 180.0),
        freq_temperature: float = 0.05,
        mask_fidelity: bool = False,
    ):
        super().__init__()
        if lpips_weight > 0 and lpips_fn is None:
            lpips_fn = make_lpips()  # raises a clear error when LPIPS is unavailable
        self.w = LossWeights(alpha, beta_max, beta_start, beta_length, beta_shape, lam, lpips_weight)
        self.lpips_fn = lpips_fn
        self.band_bpm = tuple(band_bpm)
        self.freq_temperature = freq_temperature
        self.mask_fidelity = mask_fidelity

    def rppg(self, video: torch.Tensor, face_mask: torch.Tensor | None, fps: float) -> torch.Tensor:
        """POS pulse ``[B, T]`` of ``video`` [B,3,T,H,W] inside ``face_mask``."""
        return _pos(masked_mean_rgb(video, face_mask), fps)

    def forward(
        self,
        output_video: torch.Tensor,
        input_video: torch.Tensor,
        face_mask: torch.Tensor | None,
        target_hr_bpm,
        fps: float,
        step: int,
        remove: bool = False,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        w = self.w
        fid = fidelity_loss(
            output_video,
            input_video,
            mask=face_mask if self.mask_fidelity else None,
            lpips_fn=self.lpips_fn,
            lpips_weight=w.lpips_weight,
        )
        # POS in float32: its ratios and std are fragile in bf16.
        pulse = self.rppg(output_video.float(), None if face_mask is None else face_mask.float(), fps)
        zero = pulse.new_zeros(())
        beta = beta_schedule(step, w.beta_start, w.beta_length, w.beta_max, w.beta_shape)
        if remove:
            rem = removal_loss(pulse, fps, self.band_bpm)
            wave = freq = zero
            total = w.alpha * rem + w.lam * fid
        else:
            rem = zero
            wave = wave_loss(pulse, target_hr_bpm, fps)
            freq = freq_loss(pulse, target_hr_bpm, fps, self.band_bpm, self.freq_temperature)
            total = w.alpha * wave + beta * freq + w.lam * fid
        parts = {
            "total": float(total.detach()),
            "fidelity": float(fid.detach()),
            "wave": float(wave.detach()),
            "freq": float(freq.detach()),
            "removal": float(rem.detach()),
            "beta": beta,
        }
        return total, parts
