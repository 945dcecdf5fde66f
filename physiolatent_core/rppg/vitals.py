"""Vital signs beyond the heart rate, from colour traces: beats, HRV and breathing.

    vitals = vital_signs(traces, fps)     # rppg.ColourTraces or an RGB trace [T,3]
    vitals.as_dict()                      # {"hr_bpm", "hrv": {...}, "breathing": {...}}

Beats come from a reader's pulse (band-passed to the HR band, so its breathing baseline is
gone); by default (``method="auto"``) from whichever of ``AUTO_METHODS`` reads the clip with
the highest SNR, as in-band noise is what jitters a beat's timing: after H.264 the chroma is
noisier than the luma, and GREEN timed an edit's beats to RMSSD 48 ms where POS read 64
(target 45; docs/BENCHMARKS.md, "Vital signs"), while lossless POS was best. The baseline
modulation of breathing comes from :func:`wide_pulse`, POS's projection without that band-pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .beats import Beats, detect_beats, hrv_metrics
from .breathing import Breathing, breathing_rate
from .hr import DEFAULT_BAND_BPM, check_duration, estimate_hr, snr_db
from .traces import check_fps

#: The readers ``method="auto"`` chooses from (mean skin colour ones; PCA/ICA pick a component per clip).
AUTO_METHODS = ("pos", "green", "chrom", "lgi", "omit", "pbv")
SLOW_HZ = 0.04  # colour changes slower than this are illumination drift, not breathing (>= 4 breaths/min)


def wide_pulse(rgb, fps) -> np.ndarray:
    """POS's projection (Wang et al. 2017) of the whole clip, kept down to ``SLOW_HZ``.

    POS proper normalises 1.6 s windows, which removes the breathing baseline (0.07-0.7 Hz);
    here the colour is normalised by its slow mean (below ``SLOW_HZ``) and projected with
    one weight for the clip, set on the HR band. ``rgb [T,3]`` -> ``[T]``.
    """
    from scipy import signal  # noqa: PLC0415 (slow to import: loaded on first use)

    fps = check_fps(fps)
    x = np.asarray(rgb, dtype=np.float64)
    pad = min(len(x) - 1, int(3 * fps / SLOW_HZ))
    slow = signal.sosfiltfilt(signal.butter(1, SLOW_HZ, fs=fps, output="sos"), x, axis=0, padlen=pad)
    norm = x / np.maximum(slow, 1e-6) - 1.0
    s1, s2 = norm[:, 1] - norm[:, 2], -2.0 * norm[:, 0] + norm[:, 1] + norm[:, 2]
    band = signal.butter(2, [0.7, min(3.0, 0.45 * fps)], btype="bandpass", fs=fps, output="sos")
    f1, f2 = (signal.sosfiltfilt(band, s, padlen=min(len(s) - 1, int(3 * fps))) for s in (s1, s2))
    alpha = f1.std() / max(f2.std(), 1e-12)
    return s1 + alpha * s2


@dataclass
class VitalSigns:
    """What :func:`vital_signs` read: the beats, HRV measures, breathing and the pulse used."""

    beats: Beats
    hrv: dict
    breathing: Breathing
    pulse: np.ndarray
    method: str

    def as_dict(self) -> dict:
        return {"method": self.method, "hr_bpm": self.hrv.get("hr_bpm"), "hrv": dict(self.hrv),
                "breathing": self.breathing.as_dict()}


def vital_signs(traces, fps, method: str = "auto", band_bpm=DEFAULT_BAND_BPM) -> VitalSigns:
    """Beats, HRV (RMSSD, SDNN, pNN50, LF/HF) and breathing rate of a clip.

    Args:
        traces: ``rppg.ColourTraces`` or a mean skin colour trace ``[T,3]``.
        fps: frame rate.
        method: the reader whose pulse the beats are timed on (any of ``rppg.METHODS``), or
            ``"auto"``: the one of ``AUTO_METHODS`` with the highest SNR (``rppg.hr.snr_db``).
        band_bpm: HR search band.

    Raises:
        InputError: a clip shorter than ``rppg.MIN_DURATION_S`` or bad traces.
    """
    from . import ColourTraces, pulse_of  # noqa: PLC0415 (the package imports this module's siblings)

    fps = check_fps(fps)
    traces = ColourTraces.of(traces)
    duration = check_duration(len(traces), fps)
    band_hz = (band_bpm[0] / 60.0, band_bpm[1] / 60.0)
    if method == "auto":
        pulses = {name: pulse_of(name, traces, fps, band_hz) for name in AUTO_METHODS}
        snrs = {name: snr_db(p, fps, estimate_hr(p, fps, band_bpm)) for name, p in pulses.items()}
        method = max(snrs, key=lambda name: snrs[name] if np.isfinite(snrs[name]) else -np.inf)
        pulse = pulses[method]
    else:
        pulse = pulse_of(method, traces, fps, band_hz)
    beats = detect_beats(pulse, fps, hr_bpm=estimate_hr(pulse, fps, band_bpm), band_bpm=band_bpm)
    hrv = hrv_metrics(beats.times_s, duration_s=duration)
    breathing = breathing_rate(beats, fps, baseline_pulse=wide_pulse(traces.rgb, fps))
    return VitalSigns(beats, hrv, breathing, pulse, method)
