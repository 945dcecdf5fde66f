"""Heart rate from a pulse signal: spectrum, peak HR, SNR, HR over time, duration check.

HR is in bpm at every function here; frequencies are converted with ``bpm = 60 * Hz``.
A clip of D seconds resolves about 60 / D bpm per FFT bin; ``estimate_hr`` zero-pads the
FFT and interpolates the peak on log power, which reads a clean 10 s tone to well
under 1 bpm.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import InputError
from .traces import check_fps

DEFAULT_BAND_BPM: tuple[float, float] = (40.0, 180.0)
#: rPPG-Toolbox's SNR band, 0.75-2.5 Hz.
SNR_BAND_BPM: tuple[float, float] = (45.0, 150.0)
#: Shortest clip, in seconds, that HR is read from (``check_duration``'s floor), everywhere:
#: a few beats at 40 bpm, and enough for the 1.6 s estimator windows.
MIN_DURATION_S = 4.0


def _check_pulse(pulse) -> np.ndarray:
    x = np.asarray(pulse, dtype=np.float64)
    if x.ndim != 1 or x.shape[0] < 2:
        raise InputError(f"expected a pulse signal of shape [T] with T >= 2, got {x.shape}.")
    if not np.all(np.isfinite(x)):
        raise InputError("the pulse signal contains NaN or inf values.")
    return x


def _next_pow2(n: int) -> int:
    return 1 << max(int(n) - 1, 0).bit_length()


def default_nfft(n_samples: int, fps: float) -> int:
    """FFT length for HR spectra: zero-padded to a bin of <= 0.1 bpm (a power of two)."""
    return _next_pow2(max(n_samples, math.ceil(600.0 * fps)))


def power_spectrum(pulse, fps, band_bpm=DEFAULT_BAND_BPM, nfft: int | None = None, window: str = "hann"):
    """Zero-padded periodogram of ``pulse`` (mean removed).

    Args:
        pulse: ``[T]`` signal.
        fps: sampling rate (frames per second).
        band_bpm: keep only this band, ``(low, high)`` in bpm; None keeps 0..Nyquist.
        nfft: FFT length (>= T); default ``default_nfft`` (bins of <= 0.1 bpm).
        window: scipy window name; Hann keeps leakage from strong out-of-band content low.

    Returns:
        ``(freqs_bpm [F], power [F])``.
    """
    from scipy import signal  # noqa: PLC0415 (slow to import: loaded on first use)
    x = _check_pulse(pulse)
    fps = check_fps(fps)
    n = default_nfft(len(x), fps) if nfft is None else max(int(nfft), len(x))
    freqs_hz, power = signal.periodogram(x, fs=fps, window=window, nfft=n, detrend="constant")
    freqs_bpm = freqs_hz * 60.0
    if band_bpm is None:
        return freqs_bpm, power
    keep = (freqs_bpm >= band_bpm[0]) & (freqs_bpm <= band_bpm[1])
    return freqs_bpm[keep], power[keep]


def estimate_hr(pulse, fps, band_bpm=DEFAULT_BAND_BPM, nfft: int | None = None) -> float:
    """HR in bpm: the highest spectral peak inside ``band_bpm``, refined by fitting a parabola
    to the log power of the peak bin and its two neighbours. NaN for a flat (all-zero)
    signal, which has no peak (e.g. POS on a grey video)."""
    x = _check_pulse(pulse)
    fps = check_fps(fps)
    freqs, power = power_spectrum(x, fps, band_bpm=None, nfft=nfft)
    in_band = np.flatnonzero((freqs >= band_bpm[0]) & (freqs <= band_bpm[1]))
    if in_band.size == 0:
        raise InputError(f"band {band_bpm} bpm lies above the Nyquist rate of {fps:g} fps ({30 * fps:g} bpm).")
    if not power[in_band].max() > 0:
        return float("nan")
    k = int(in_band[np.argmax(power[in_band])])
    if 0 < k < len(power) - 1:
        a, b, c = np.log(np.maximum(power[k - 1 : k + 2], 1e-300))
        denom = a - 2.0 * b + c
        delta = 0.5 * (a - c) / denom if denom < 0 else 0.0
        delta = float(np.clip(delta, -0.5, 0.5))
    else:
        delta = 0.0
    step = freqs[1] - freqs[0]
    return float(np.clip(freqs[k] + delta * step, band_bpm[0], band_bpm[1]))


def snr_db(pulse, fps, hr_bpm, band_bpm=SNR_BAND_BPM, db_factor: float = 20.0) -> float:
    """Pulse SNR as rPPG-Toolbox computes it (``evaluation/post_process.py::_calculate_SNR``).

    Signal = periodogram power within +-6 bpm of ``hr_bpm`` and of ``2 * hr_bpm``;
    noise = the remaining power inside ``band_bpm`` (default 45-150 bpm = 0.75-2.5 Hz).
    The periodogram is rectangular-window, not detrended, with nfft = next power of two >= T.
    The toolbox converts the *power* ratio with ``mag2db`` = 20 log10, so ``db_factor=20``
    (default) reproduces its numbers; pass 10 for the textbook power-dB (half the value).
    Returns 0.0 when there is no remaining power (the toolbox's convention).
    """
    from scipy import signal  # noqa: PLC0415 (slow to import: loaded on first use)
    x = _check_pulse(pulse)
    fps = check_fps(fps)
    f1 = float(hr_bpm) / 60.0
    f2 = 2.0 * f1
    dev = 6.0 / 60.0
    freqs, power = signal.periodogram(x, fs=fps, nfft=_next_pow2(len(x)), detrend=False)
    near1 = (freqs >= f1 - dev) & (freqs <= f1 + dev)
    near2 = (freqs >= f2 - dev) & (freqs <= f2 + dev)
    rest = (freqs >= band_bpm[0] / 60.0) & (freqs <= band_bpm[1] / 60.0) & ~near1 & ~near2
    noise = power[rest].sum()
    if noise == 0:
        return 0.0
    ratio = (power[near1].sum() + power[near2].sum()) / noise
    if ratio <= 0:
        return float("-inf")
    return float(db_factor * np.log10(ratio))


def hr_over_time(pulse, fps, window_s: float = 10.0, step_s: float = 1.0, band_bpm=DEFAULT_BAND_BPM):
    """HR in sliding windows.

    Returns ``(times_s [N], hr_bpm [N])``: ``times_s`` are window centres. A clip shorter than
    ``window_s`` gives one window covering the whole clip.
    """
    x = _check_pulse(pulse)
    fps = check_fps(fps)
    if window_s <= 0 or step_s <= 0:
        raise InputError(f"window_s and step_s must be positive, got {window_s} and {step_s}.")
    win = min(len(x), max(2, int(round(window_s * fps))))
    step = max(1, int(round(step_s * fps)))
    starts = np.arange(0, len(x) - win + 1, step)
    nfft = default_nfft(win, fps)
    hrs = np.array([estimate_hr(x[s : s + win], fps, band_bpm, nfft=nfft) for s in starts])
    times = (starts + win / 2.0) / fps
    return times, hrs


def check_duration(n_frames: int, fps, min_duration_s: float = MIN_DURATION_S,
                   resolution_bpm: float | None = None) -> float:
    """Raise ``InputError`` when a clip is too short to estimate HR; return its duration in s.

    The FFT bin of a D-second clip is about 60 / D bpm before interpolation, so asking for
    ``resolution_bpm`` needs at least 60 / resolution_bpm seconds; ``min_duration_s`` is the
    floor (default ``MIN_DURATION_S``).
    """
    fps = check_fps(fps)
    duration = n_frames / fps
    needed = float(min_duration_s)
    if resolution_bpm is not None:
        if resolution_bpm <= 0:
            raise InputError(f"resolution_bpm must be positive, got {resolution_bpm}.")
        needed = max(needed, 60.0 / resolution_bpm)
    if duration + 1e-9 < needed:
        raise InputError(
            f"the clip is {duration:.2f} s long ({n_frames} frames at {fps:g} fps), but HR estimation "
            f"needs at least {needed:.1f} s ({math.ceil(needed * fps)} frames): the spectral resolution "
            f"is about 60/duration bpm. Use a longer clip."
        )
    return duration
