"""rPPG: read the pulse (and the heart rate) out of face video.

    rgb = extract_rgb(frames, mask)            # [T,H,W,3] -> [T,3] mean skin colour
    pulse = ESTIMATORS["pos"](rgb, fps)         # [T,3] -> [T] (green chrom pos pca ica lgi pbv omit)
    hr = hr.estimate_hr(pulse, fps)             # bpm
    pulse = ssr(colour_moments(frames, mask), fps)  # SSR: the skin pixels' colour distribution
    estimate(frames, fps, mask)                 # all of the above, for several methods

``METHODS`` names every reader: the mean-colour ``ESTIMATORS`` and SSR (``DEFAULT_METHODS``:
the CLI's default few; ``resolve_methods`` checks names). Streaming callers
keep a :class:`ColourTraces` per chunk (``read_traces``), join them and read any method
from them (``pulse_of``).

``torch_pos`` (differentiable POS for training) imports torch, so it is not imported here:
``from physiolatent_core.rppg.torch_pos import pos_torch``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from . import hr
from .estimators import ESTIMATORS
from .hr import MIN_DURATION_S, check_duration, estimate_hr, hr_over_time, power_spectrum, snr_db
from .ssr import colour_moments, ssr
from .traces import check_fps, extract_rgb

__all__ = [
    "DEFAULT_METHODS",
    "ESTIMATORS",
    "METHODS",
    "MIN_DURATION_S",
    "ColourTraces",
    "check_duration",
    "colour_moments",
    "estimate",
    "estimate_hr",
    "extract_rgb",
    "hr",
    "hr_over_time",
    "power_spectrum",
    "pulse_of",
    "read_traces",
    "resolve_methods",
    "snr_db",
    "ssr",
    "to_rgb_trace",
]


#: Every reader, by name: the mean-colour estimators, then SSR (pixel level).
METHODS = (*ESTIMATORS, "ssr")
#: The readers the CLI reports unless ``--methods`` names others (``None`` elsewhere means all).
DEFAULT_METHODS = ("green", "chrom", "pos", "lgi", "omit")


@dataclass(frozen=True)
class ColourTraces:
    """What the readers need of a clip: the mean skin colour ``rgb [T, 3]`` and, for SSR,
    the skin pixels' colour moments ``moments [T, 3, 3]`` (None when SSR was not asked for)."""

    rgb: np.ndarray
    moments: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.rgb)

    def __getitem__(self, frames: slice) -> "ColourTraces":
        """The traces of a span of frames (``traces[start:stop]``), e.g. a window."""
        return ColourTraces(self.rgb[frames], None if self.moments is None else self.moments[frames])

    @classmethod
    def of(cls, traces) -> "ColourTraces":
        """``ColourTraces`` as given; a mean-colour trace ``[T, 3]`` wrapped (no moments)."""
        return traces if isinstance(traces, cls) else cls(to_rgb_trace(traces))

    @classmethod
    def join(cls, parts) -> "ColourTraces":
        """The traces of consecutive chunks, as one."""
        parts = list(parts)
        moments = None if any(p.moments is None for p in parts) else np.concatenate([p.moments for p in parts])
        return cls(np.concatenate([p.rgb for p in parts]), moments)


def read_traces(frames, mask=None, methods=None) -> ColourTraces:
    """``frames [T,H,W,3]`` -> the traces ``methods`` read (the moments only if SSR is among
    them); a mean-colour trace ``[T, 3]`` is wrapped as it is (SSR cannot read it)."""
    x = np.asarray(frames)
    if x.ndim == 2:
        return ColourTraces(to_rgb_trace(x, mask))
    moments = colour_moments(x, mask) if "ssr" in resolve_methods(methods) else None
    return ColourTraces(extract_rgb(x, mask), moments)


def pulse_of(method: str, traces, fps, band_hz=None) -> np.ndarray:
    """Pulse ``[T]`` of ``method`` (a name of ``METHODS``) from ``ColourTraces`` or an RGB trace ``[T, 3]``."""
    traces = ColourTraces.of(traces)
    kwargs = {} if band_hz is None else {"band_hz": band_hz}
    if method == "ssr":
        if traces.moments is None:
            raise InputError("SSR reads the skin pixels' colour distribution, not a mean colour: pass frames, "
                             "or traces read with SSR among the methods (rppg.read_traces).")
        return ssr(traces.moments, fps, **kwargs)
    return ESTIMATORS[method](traces.rgb, fps, **kwargs)


def resolve_methods(methods=None, pixels: bool = True) -> list[str]:
    """``None`` / "all" / ["all"] -> every reader of ``METHODS`` (only ``ESTIMATORS`` when the
    caller has no ``pixels``, i.e. mean-colour traces only); a name or a list of names -> validated list."""
    every = list(METHODS if pixels else ESTIMATORS)
    if methods is None:
        return every
    names = [methods] if isinstance(methods, str) else list(methods)
    names = [str(n).strip().lower() for n in names]
    if names == ["all"]:
        return every
    unknown = [n for n in names if n not in METHODS]
    if unknown or not names:
        raise InputError(f"unknown rPPG method(s) {unknown or names}; choose from {sorted(METHODS)}.")
    return names


def to_rgb_trace(frames_or_rgb, mask=None) -> np.ndarray:
    """Frames ``[T,H,W,3]`` -> ``extract_rgb(frames, mask)``; an RGB trace ``[T,3]`` passes through."""
    x = np.asarray(frames_or_rgb)
    if x.ndim == 2 and x.shape[1] == 3:
        if mask is not None:
            raise InputError("a mask was given with an RGB trace [T,3]; masks apply to frames [T,H,W,3] only.")
        return x.astype(np.float64)
    return extract_rgb(x, mask)


def estimate(frames, fps, mask=None, methods=None, band_bpm=hr.DEFAULT_BAND_BPM,
             min_duration_s: float = MIN_DURATION_S) -> dict:
    """Run several estimators on one clip.

    Args:
        frames: ``[T, H, W, 3]`` float 0..1, or an RGB trace ``[T, 3]``.
        fps: frame rate.
        mask: ``[T, H, W]`` / ``[H, W]`` skin weights, or None (whole frame).
        methods: names from ``METHODS``; None = all (of ``ESTIMATORS`` for a trace: SSR needs frames).
        band_bpm: HR search band (also the estimators' band-pass).
        min_duration_s: shorter clips raise ``InputError`` (see ``hr.check_duration``).

    Returns:
        ``{name: {"hr_bpm": float, "snr_db": float, "pulse": np.ndarray [T]}}``; ``snr_db``
        is rPPG-Toolbox's SNR at the method's own HR.
    """
    fps = check_fps(fps)
    x = np.asarray(frames)
    names = resolve_methods(methods, pixels=x.ndim != 2)
    traces = read_traces(x, mask, names)
    check_duration(len(traces), fps, min_duration_s=min_duration_s)
    band_hz = (band_bpm[0] / 60.0, band_bpm[1] / 60.0)
    results = {}
    for name in names:
        pulse = pulse_of(name, traces, fps, band_hz)
        bpm = estimate_hr(pulse, fps, band_bpm)
        results[name] = {
            "hr_bpm": bpm,
            "snr_db": snr_db(pulse, fps, bpm) if np.isfinite(bpm) else float("nan"),
            "pulse": pulse,
        }
    return results
