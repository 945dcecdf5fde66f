"""rPPG: read the pulse (and the heart rate) out of face video.

    rgb = extract_rgb(frames, mask)            # [T,H,W,3] -> [T,3] mean skin colour
    pulse = ESTIMATORS["pos"](rgb, fps)         # [T,3] -> [T] (green chrom pos pca ica lgi pbv omit)
    hr = hr.estimate_hr(pulse, fps)             # bpm
    pulse = ssr(colour_moments(frames, mask), fps)  # SSR reads the pixels' colour distribution
    estimate(frames, fps, mask)                 # all of the above, for several methods

``torch_pos`` (differentiable POS for training) imports torch, so it is not imported here:
``from physiolatent_core.rppg.torch_pos import pos_torch``.
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError
from . import hr
from .estimators import ESTIMATORS
from .hr import check_duration, estimate_hr, hr_over_time, power_spectrum, snr_db
from .ssr import colour_moments, ssr
from .traces import check_fps, extract_rgb

__all__ = [
    "ESTIMATORS",
    "check_duration",
    "colour_moments",
    "estimate",
    "estimate_hr",
    "extract_rgb",
    "hr",
    "hr_over_time",
    "power_spectrum",
    "resolve_methods",
    "snr_db",
    "ssr",
    "to_rgb_trace",
]


def resolve_methods(methods=None) -> list[str]:
    """``None`` / "all" -> every estimator; a name or a list of names -> validated list."""
    if methods is None or methods == "all":
        return list(ESTIMATORS)
    names = [methods] if isinstance(methods, str) else list(methods)
    names = [str(n).strip().lower() for n in names]
    unknown = [n for n in names if n not in ESTIMATORS]
    if unknown or not names:
        raise InputError(f"unknown rPPG method(s) {unknown or names}; choose from {sorted(ESTIMATORS)}.")
    return names


def to_rgb_trace(frames_or_rgb, mask=None) -> np.ndarray:
    """Frames ``[T,H,W,3]`` -> ``extract_rgb(frames, mask)``; an RGB trace ``[T,3]`` passes through."""
    x = np.asarray(frames_or_rgb)
    if x.ndim == 2 and x.shape[1] == 3:
        if mask is not None:
            raise InputError("a mask was given with an RGB trace [T,3]; masks apply to frames [T,H,W,3] only.")
        return x.astype(np.float64)
    return extract_rgb(x, mask)


def estimate(frames, fps, mask=None, methods=None, band_bpm=hr.DEFAULT_BAND_BPM, min_duration_s: float = 4.0) -> dict:
    """Run several estimators on one clip.

    Args:
        frames: ``[T, H, W, 3]`` float 0..1, or an RGB trace ``[T, 3]``.
        fps: frame rate.
        mask: ``[T, H, W]`` / ``[H, W]`` skin weights, or None (whole frame).
        methods: names from ``ESTIMATORS``; None = all.
        band_bpm: HR search band (also the estimators' band-pass).
        min_duration_s: shorter clips raise ``InputError`` (see ``hr.check_duration``).

    Returns:
        ``{name: {"hr_bpm": float, "snr_db": float, "pulse": np.ndarray [T]}}``; ``snr_db``
        is rPPG-Toolbox's SNR at the method's own HR.
    """
    fps = check_fps(fps)
    names = resolve_methods(methods)
    rgb = to_rgb_trace(frames, mask)
    check_duration(len(rgb), fps, min_duration_s=min_duration_s)
    band_hz = (band_bpm[0] / 60.0, band_bpm[1] / 60.0)
    results = {}
    for name in names:
        pulse = ESTIMATORS[name](rgb, fps, band_hz=band_hz)
        bpm = estimate_hr(pulse, fps, band_bpm)
        results[name] = {
            "hr_bpm": bpm,
            "snr_db": snr_db(pulse, fps, bpm) if np.isfinite(bpm) else float("nan"),
            "pulse": pulse,
        }
    return results
