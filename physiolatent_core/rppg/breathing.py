"""Breathing rate from an rPPG pulse: three respiratory modulations, fused.

Breathing changes the pulse three ways (Karlen et al. 2013, "Multiparameter respiratory
rate estimation from the photoplethysmogram"):

* **frequency** (respiratory sinus arrhythmia): the inter-beat intervals shorten during
  inspiration;
* **amplitude**: each beat's height rises and falls with the breath;
* **baseline** (intensity): the blood volume under the skin drifts with the breath.

Each is sampled once per beat (:func:`rppg.beats.detect_beats`), resampled evenly at
``RESAMPLE_HZ``, and its spectral peak in ``BAND_BPM`` read with peak interpolation;
its quality is the share of the band's power within ``PEAK_HALF_WIDTH_BPM`` of that peak.
The fused rate is the quality-weighted mean of the estimates (quality at least
``MIN_QUALITY``) that agree within ``AGREE_BPM`` of the best, "good" when at least two agree
(Karlen's smart fusion accepts three within 4 breaths/min; two agreeing of three is the same
idea where one modulation is missing, as the amplitude often is after H.264).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError
from .beats import Beats, clean_ibis
from .traces import check_fps

BAND_BPM = (4.0, 40.0)  # breaths/min searched
RESAMPLE_HZ = 4.0
PEAK_HALF_WIDTH_BPM = 1.5  # a modulation's power counted as its peak within this of it
AGREE_BPM = 1.0  # estimates within this of the best agree
# An estimate with less of its band's power at its peak is noise: on white noise (60 s) the
# three modulations measured 0.2-0.6 each, and two of them at 0.4 or more agreed by chance
# in none of 12 seeds (against 5 of 12 with 0.25 and 2 breaths/min).
MIN_QUALITY = 0.4
MIN_BEATS = 8
MODULATIONS = ("frequency", "amplitude", "baseline")


@dataclass
class Breathing:
    """Breathing read from a pulse.

    rate_bpm: fused breathing rate, breaths/min (None where nothing could be read);
    quality: "good" (two or three modulations agree), "poor" (one) or "none";
    estimates: {modulation: {"rate_bpm", "quality"}}; times_s ``[N]`` and series
    {modulation: ``[N]``}: the evenly resampled modulation signals (zero mean, unit std),
    e.g. for a plot; signal: ``[N]`` their quality-weighted sum where they agree.
    """

    rate_bpm: float | None
    quality: str
    estimates: dict = field(default_factory=dict)
    times_s: np.ndarray = field(default_factory=lambda: np.zeros(0))
    series: dict = field(default_factory=dict)
    signal: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def as_dict(self) -> dict:
        return {"rate_bpm": self.rate_bpm, "quality": self.quality, "estimates": self.estimates}


def _peak_rate(series: np.ndarray, band_bpm) -> tuple[float | None, float]:
    """(spectral peak in breaths/min with parabolic interpolation on log power, quality 0..1)."""
    n = len(series)
    nfft = 1 << max(int(np.ceil(np.log2(max(n, 1)))), 12)  # bins of under 0.06 breaths/min
    spectrum = np.abs(np.fft.rfft(series * np.hanning(n), nfft)) ** 2
    freqs = np.fft.rfftfreq(nfft, 1.0 / RESAMPLE_HZ) * 60.0
    band = (freqs >= band_bpm[0]) & (freqs <= band_bpm[1])
    if not band.any() or spectrum[band].sum() <= 0:
        return None, 0.0
    idx = np.flatnonzero(band)
    k = idx[np.argmax(spectrum[idx])]
    if k in (idx[0], idx[-1]):
        return None, 0.0  # the band's edge: a slope (drift, or a rate outside the band), not a peak
    rate = freqs[k]
    if 0 < k < len(spectrum) - 1:
        a, b, c = np.log(spectrum[k - 1 : k + 2] + 1e-300)
        if a - 2 * b + c < 0:
            rate += 0.5 * (a - c) / (a - 2 * b + c) * (freqs[1] - freqs[0])
    rate = float(np.clip(rate, freqs[idx[0]], freqs[idx[-1]]))  # interpolation at the band's edge stays inside
    near = band & (np.abs(freqs - rate) <= PEAK_HALF_WIDTH_BPM)
    return float(rate), float(spectrum[near].sum() / spectrum[band].sum())


def breathing_rate(beats: Beats, fps, baseline_pulse=None, band_bpm=BAND_BPM) -> Breathing:
    """Breathing rate from the beats of a pulse.

    Args:
        beats: :func:`rppg.beats.detect_beats` of the pulse (times and amplitudes).
        fps: frame rate.
        baseline_pulse: ``[T]`` the pulse without its slow part removed (e.g.
            ``rppg.vitals.wide_pulse``), for the baseline modulation; None leaves it out
            (band-passed pulses have lost it).
        band_bpm: breathing rates searched, breaths/min; the top is kept under half the
            heart rate, as beats sample the breath.

    Returns:
        :class:`Breathing`.
    """
    from scipy import interpolate, signal  # noqa: PLC0415 (slow to import: loaded on first use)

    fps = check_fps(fps)
    t = np.asarray(beats.times_s, dtype=np.float64)
    if len(t) < MIN_BEATS:
        return Breathing(None, "none")
    ibi, ok = clean_ibis(t)
    keep = np.concatenate([[True], ok])  # a beat after a rejected IBI is an artefact too
    keep[1:] &= ok
    t_ok = t[keep]
    if len(t_ok) < MIN_BEATS:
        return Breathing(None, "none")
    hr_hz = 1.0 / np.median(np.diff(t_ok))
    band = (band_bpm[0], min(band_bpm[1], 0.45 * hr_hz * 60.0))
    raw = {
        "frequency": (0.5 * (t_ok[1:] + t_ok[:-1]), np.diff(t_ok)),
        "amplitude": (t_ok, np.asarray(beats.amplitude, float)[keep]),
    }
    if baseline_pulse is not None:
        x = np.asarray(baseline_pulse, dtype=np.float64)
        if x.ndim != 1:
            raise InputError(f"baseline_pulse must be [T], got shape {x.shape}.")
        # The mean of the pulse over each beat: the beat's own shape averages out.
        edges = np.clip(np.round(t_ok * fps).astype(int), 0, len(x))
        means = np.array([x[a:b].mean() for a, b in zip(edges[:-1], edges[1:]) if b > a])
        if len(means) == len(edges) - 1:
            raw["baseline"] = (0.5 * (t_ok[1:] + t_ok[:-1]), means)
    grid = np.arange(t_ok[0], t_ok[-1], 1.0 / RESAMPLE_HZ)
    if len(grid) < 16:
        return Breathing(None, "none")
    sos = signal.butter(2, [band[0] / 60.0 * 0.8, min(band[1] / 60.0 * 1.2, 0.45 * RESAMPLE_HZ)], btype="bandpass",
                        fs=RESAMPLE_HZ, output="sos")
    series, estimates = {}, {}
    for name, (at, values) in raw.items():
        if len(at) < 4 or np.ptp(values) <= 0:
            continue
        even = interpolate.PchipInterpolator(at, values, extrapolate=True)(grid)
        even = signal.sosfiltfilt(sos, signal.detrend(even), padlen=min(len(even) - 1, int(20 * RESAMPLE_HZ)))
        if even.std() <= 0:
            continue
        series[name] = even / even.std()
        rate, quality = _peak_rate(series[name], band)
        estimates[name] = {"rate_bpm": rate, "quality": quality}
    usable = {n: e for n, e in estimates.items() if e["rate_bpm"] is not None and e["quality"] >= MIN_QUALITY}
    if not usable:
        return Breathing(None, "none", estimates, grid - grid[0] + t_ok[0], series, np.zeros(len(grid)))
    best = max(usable, key=lambda n: usable[n]["quality"])
    agree = [n for n, e in usable.items() if abs(e["rate_bpm"] - usable[best]["rate_bpm"]) <= AGREE_BPM]
    weights = np.array([usable[n]["quality"] for n in agree])
    rate = float(np.average([usable[n]["rate_bpm"] for n in agree], weights=weights))
    # Sign-align the agreeing series to the best one before summing them for display.
    fused = sum(w * series[n] * np.sign(np.dot(series[n], series[best]) or 1.0) for n, w in zip(agree, weights))
    return Breathing(rate, "good" if len(agree) >= 2 else "poor", estimates, grid, series, fused / weights.sum())
