"""Beats and heart-rate variability (HRV) from an rPPG pulse.

    beats = detect_beats(pulse, fps)            # systolic peaks, sub-frame times
    hrv = hrv_metrics(beats.times_s)            # RMSSD, SDNN, pNN50, LF/HF, quality

Beat times are the pulse's systolic peaks, found on a band-passed copy (fundamental and
second harmonic of the clip's HR) and timed between frames by a parabola through the
peak sample and its two neighbours. Without that a beat time is off by up to half a frame
(std ``1 / (fps * sqrt(12))``: 9.6 ms at 30 fps), and since a successive IBI difference
involves three beat times its error std is ``sqrt(6)`` times that: a 24 ms floor on RMSSD at
30 fps, half a resting adult's RMSSD. Measured floors with interpolation are in
docs/BENCHMARKS.md ("Vital signs").

IBIs (inter-beat intervals) outside 0.25-2 s or more than ``ARTEFACT_FRACTION`` from the
median of their neighbours are artefacts (a missed or extra beat) and leave the
statistics; RMSSD and pNN50 use only successive pairs of clean IBIs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from .hr import DEFAULT_BAND_BPM, estimate_hr
from .traces import check_fps

#: An IBI this far (relative) from the median of its neighbours is an artefact.
ARTEFACT_FRACTION = 0.3
#: At most this share of IBIs may be artefacts for the HRV quality to be "good".
MAX_ARTEFACT_SHARE = 0.1
#: Fewest clean successive IBI differences for a "good" RMSSD (about 25 s at 72 bpm).
MIN_DIFFERENCES = 30
#: LF/HF needs two cycles of the slowest LF rhythm (0.04 Hz): the shortest clip it is read from.
LF_HF_MIN_S = 50.0
LF_BAND_HZ = (0.04, 0.15)
HF_BAND_HZ = (0.15, 0.4)
RESAMPLE_HZ = 4.0  # the IBI series is resampled evenly at this rate for its spectrum


@dataclass
class Beats:
    """Beats found in a pulse.

    times_s: ``[B]`` systolic peak times in seconds (sub-frame); amplitude: ``[B]`` peak
    minus the preceding trough of the band-passed pulse; hr_bpm: the clip's spectral HR
    that set the search; filtered: ``[T]`` the band-passed pulse the peaks were found on.
    """

    times_s: np.ndarray
    amplitude: np.ndarray
    hr_bpm: float
    filtered: np.ndarray


def _parabolic(y: np.ndarray, i: np.ndarray) -> np.ndarray:
    """Sub-sample offsets (-0.5..0.5) of the peaks at indices ``i`` of ``y``, from the parabola
    through ``y[i-1], y[i], y[i+1]``."""
    left, mid, right = y[i - 1], y[i], y[i + 1]
    curve = left - 2.0 * mid + right
    offset = np.where(curve < 0, 0.5 * (left - right) / np.where(curve < 0, curve, -1.0), 0.0)
    return np.clip(offset, -0.5, 0.5)


def detect_beats(pulse, fps, hr_bpm: float | None = None, band_bpm=DEFAULT_BAND_BPM, interpolate: bool = True) -> Beats:
    """Systolic peaks of a pulse signal, timed between frames.

    Args:
        pulse: ``[T]`` rPPG pulse (blood volume up = positive, as every reader here gives it).
        fps: frame rate.
        hr_bpm: the clip's HR if known; else read from the pulse's spectrum in ``band_bpm``.
        band_bpm: HR search band.
        interpolate: time peaks between frames (False: at the peak frame, to measure what
            interpolation gains).

    Returns:
        :class:`Beats`. No beats (an empty array) where the pulse is flat.

    Raises:
        InputError: a pulse that is not ``[T]`` finite values, or a bad fps.
    """
    from scipy import signal  # noqa: PLC0415 (slow to import: loaded on first use)

    fps = check_fps(fps)
    x = np.asarray(pulse, dtype=np.float64)
    if x.ndim != 1 or len(x) < 8 or not np.all(np.isfinite(x)):
        raise InputError(f"expected a finite pulse signal [T] with T >= 8, got shape {x.shape}.")
    empty = Beats(np.zeros(0), np.zeros(0), float("nan"), np.zeros_like(x))
    if not np.std(x) > 1e-12:  # flat: a still image's readers give rounding noise, not beats
        return empty
    hr = float(hr_bpm) if hr_bpm is not None else estimate_hr(x, fps, band_bpm)
    if not np.isfinite(hr):
        return empty
    f_hr = hr / 60.0
    # Fundamental and second harmonic, with room for the rate's own variation: the peak's
    # timing follows the beat, and the slower breathing baseline and faster noise go.
    low, high = 0.5 * f_hr, min(2.5 * f_hr, 0.45 * fps)
    sos = signal.butter(2, [low, high], btype="bandpass", fs=fps, output="sos")
    y = signal.sosfiltfilt(sos, x - x.mean(), padlen=min(len(x) - 1, int(3 * fps / low)))
    # Beats at least 0.6 of the mean period apart (HRV rarely shortens an IBI by 40 %), and
    # standing out from the noise between them.
    peaks, _ = signal.find_peaks(y, distance=max(1, int(0.6 * fps / f_hr)), prominence=0.25 * np.std(y))
    peaks = peaks[(peaks > 0) & (peaks < len(y) - 1)]
    if not len(peaks):
        return Beats(np.zeros(0), np.zeros(0), hr, y)
    times = (peaks + (_parabolic(y, peaks) if interpolate else 0.0)) / fps
    troughs = np.array([y[max(0, p - int(0.7 * fps / f_hr)): p + 1].min() for p in peaks])
    return Beats(times, y[peaks] - troughs, hr, y)


def clean_ibis(times_s) -> tuple[np.ndarray, np.ndarray]:
    """IBIs in ms ``[B-1]`` and whether each is clean (not an artefact), ``[B-1]`` bool."""
    from scipy import signal  # noqa: PLC0415

    t = np.asarray(times_s, dtype=np.float64)
    ibi = np.diff(t) * 1000.0
    if len(ibi) == 0:
        return ibi, np.zeros(0, bool)
    local = signal.medfilt(ibi, 5) if len(ibi) >= 5 else np.full_like(ibi, np.median(ibi))
    ok = (ibi >= 250.0) & (ibi <= 2000.0) & (np.abs(ibi - local) <= ARTEFACT_FRACTION * local)
    return ibi, ok


def hrv_metrics(times_s, duration_s: float | None = None) -> dict:
    """Time- and frequency-domain HRV from beat times.

    Args:
        times_s: ``[B]`` beat times in seconds, increasing.
        duration_s: the clip's length (default: from the first to the last beat).

    Returns (JSON-able; None where a measure cannot be read):
        ``n_beats``, ``artefact_share`` (IBIs rejected), ``mean_ibi_ms``, ``hr_bpm`` (from
        the mean IBI), ``rmssd_ms``, ``sdnn_ms``, ``pnn50`` (share of successive
        differences > 50 ms, 0..1), ``lf_ms2``, ``hf_ms2``, ``lf_hf`` (Welch on the IBI
        series resampled at 4 Hz; only from ``LF_HF_MIN_S`` up), ``quality`` ("good":
        at least ``MIN_DIFFERENCES`` clean differences and at most ``MAX_ARTEFACT_SHARE``
        artefacts; "poor": readable but short or noisy; "none": fewer than 3 clean beats)
        and ``quality_reason``.
    """
    from scipy import interpolate, signal  # noqa: PLC0415

    t = np.asarray(times_s, dtype=np.float64)
    ibi, ok = clean_ibis(t)
    out = {"n_beats": int(len(t)), "artefact_share": None, "mean_ibi_ms": None, "hr_bpm": None,
           "rmssd_ms": None, "sdnn_ms": None, "pnn50": None, "lf_ms2": None, "hf_ms2": None, "lf_hf": None,
           "quality": "none", "quality_reason": "fewer than 3 clean beats"}
    if ok.sum() < 2:
        return out
    pairs = ok[1:] & ok[:-1]
    diffs = np.diff(ibi)[pairs]
    clean = ibi[ok]
    out.update(artefact_share=float(1.0 - ok.mean()), mean_ibi_ms=float(clean.mean()),
               hr_bpm=float(60000.0 / clean.mean()), sdnn_ms=float(clean.std(ddof=1)))
    if len(diffs):
        out.update(rmssd_ms=float(np.sqrt(np.mean(diffs**2))), pnn50=float(np.mean(np.abs(diffs) > 50.0)))
    span = duration_s if duration_s is not None else float(t[-1] - t[0])
    if span >= LF_HF_MIN_S and ok.sum() >= 8:
        # The clean IBIs at their beat times, evenly resampled (cubic), linear trend removed.
        at = t[1:][ok]
        grid = np.arange(at[0], at[-1], 1.0 / RESAMPLE_HZ)
        series = signal.detrend(interpolate.CubicSpline(at, clean)(grid))
        freqs, psd = signal.welch(series, fs=RESAMPLE_HZ, nperseg=min(len(series), int(64 * RESAMPLE_HZ)),
                                  noverlap=None, detrend=False)
        band = lambda lo, hi: float(np.trapezoid(psd[(freqs >= lo) & (freqs < hi)],  # noqa: E731
                                                 freqs[(freqs >= lo) & (freqs < hi)]))
        lf, hf = band(*LF_BAND_HZ), band(*HF_BAND_HZ)
        out.update(lf_ms2=lf, hf_ms2=hf, lf_hf=lf / hf if hf > 0 else None)
    if len(diffs) >= MIN_DIFFERENCES and out["artefact_share"] <= MAX_ARTEFACT_SHARE:
        out.update(quality="good", quality_reason=None)
    else:
        reasons = []
        if len(diffs) < MIN_DIFFERENCES:
            reasons.append(f"{len(diffs)} clean successive IBI differences (want {MIN_DIFFERENCES}: a longer clip)")
        if out["artefact_share"] > MAX_ARTEFACT_SHARE:
            reasons.append(f"{out['artefact_share']:.0%} of IBIs rejected as artefacts")
        out.update(quality="poor", quality_reason="; ".join(reasons))
    return out
