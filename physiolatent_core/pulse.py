"""Target pulse synthesis: HR targets, a PPG beat shape, and a realistic pulse signal.

Three pieces, used by the editor (the pulse to inject), by ``synth.py`` (the ground-truth
pulse of a synthetic subject) and by the CLI (parsing ``--target-hr``):

* :func:`parse_hr_target` turns what a user typed (``75``, ``"75"``, ``"70:120"``, knots
  such as ``"0s=70, 5s=120"``) into an :class:`HRTarget`; :func:`hr_curve` samples it per
  frame, in bpm. It is the one reader of that grammar: the CLI and the nodes call it.
* :func:`ppg_waveform` is one beat of a photoplethysmogram as a function of phase.
* :func:`synth_pulse` integrates the instantaneous heart rate into a beat phase, so HR
  trajectories keep a continuous waveform, and adds heart-rate variability (HRV) and
  respiratory modulation.

Sign convention
---------------
Every waveform here is **blood volume**: larger values mean more blood under the skin.
More blood absorbs more light, so the skin gets slightly *darker* (mostly in green) when
the waveform peaks; whoever turns the waveform into pixels (``editor.py``, ``synth.py``)
applies that sign: ``pixel *= 1 - amplitude * direction_rgb * wave``.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np

from .errors import InputError

HR_MIN_BPM = 30.0
HR_MAX_BPM = 240.0
HRV_MAX_BPM = 3.0  # cap on the std of heart-rate variability, whatever hrv_ms asks

__all__ = [
    "HR_MAX_BPM",
    "HR_MIN_BPM",
    "HRV_MAX_BPM",
    "HRTarget",
    "PulseSignal",
    "hr_curve",
    "parse_hr_target",
    "ppg_waveform",
    "synth_pulse",
]


# --------------------------------------------------------------------------- HR targets


@dataclass(frozen=True)
class HRTarget:
    """A heart-rate target over a clip.

    ``kind`` says how to read the numbers:

    * ``"constant"``: ``bpm`` has one value.
    * ``"ramp"``: ``bpm`` holds values spaced evenly from the first to the last frame
      (``"70:120"`` is a linear ramp; ``"70:120:90"`` goes up, then down), linear between.
    * ``"knots"``: piecewise-linear through (``times_s[i]``, ``bpm[i]``); held constant
      before the first and after the last knot.
    """

    kind: str
    bpm: tuple[float, ...]
    times_s: tuple[float, ...] | None = None

    @property
    def mean_bpm(self) -> float:
        """The mean of the knot values (for a constant target: the target itself)."""
        return float(np.mean(self.bpm))

    def __str__(self) -> str:
        if self.kind == "constant":
            return f"{self.bpm[0]:g} bpm"
        if self.kind == "ramp":
            return ":".join(f"{b:g}" for b in self.bpm) + " bpm (ramp)"
        return ", ".join(f"{t:g}s={b:g}" for t, b in zip(self.times_s, self.bpm)) + " bpm"


def _check_bpm(value, what: str) -> float:
    """One bpm value as a float in the allowed range, or an InputError naming the range."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InputError(f"{what} must be a number of beats per minute, got {value!r}.")
    bpm = float(value)
    if not np.isfinite(bpm) or not HR_MIN_BPM <= bpm <= HR_MAX_BPM:
        raise InputError(
            f"{what} {value!r} is outside the allowed range {HR_MIN_BPM:g}-{HR_MAX_BPM:g} bpm; "
            f"choose a heart rate between {HR_MIN_BPM:g} and {HR_MAX_BPM:g}."
        )
    return bpm


def _parse_number(text: str, what: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise InputError(
            f"{what} {text!r} is not a number; write a heart rate like 75, a ramp like "
            f"70:120, or knots like '0s=70, 5s=120'."
        ) from None


def _parse_text_knots(text: str) -> list[tuple[float, float]]:
    """``"0s=70, 5s=120"`` / ``"0=70; 5=120"`` -> ``[(0.0, 70.0), (5.0, 120.0)]`` (time in seconds,
    ``s`` suffix optional; parts separated by ``,`` or ``;``)."""
    knots = []
    for part in text.replace(";", ",").split(","):
        if not part.strip():
            continue
        t, _sep, bpm = part.partition("=")
        try:
            knots.append((float(t.strip().rstrip("sS")), float(bpm)))
        except ValueError:
            raise InputError(
                f"HR knot {part.strip()!r} is not 'seconds=bpm'; write knots like '0s=70, 5s=120' "
                "(or a ramp like '70:120')."
            ) from None
    return knots


def _knots_target(spec, example: str) -> HRTarget:
    """(time_s, bpm) pairs -> a "knots" HRTarget; ``example`` shows the caller's form in errors."""
    try:
        knots = np.asarray(spec, dtype=np.float64)
    except (TypeError, ValueError):
        knots = None
    if knots is None or knots.ndim != 2 or knots.shape[1] != 2 or len(knots) == 0:
        raise InputError(
            f"HR knots must be a list of (time_s, bpm) pairs, got {spec!r}; for example {example}."
        )
    times = knots[:, 0]
    if not np.all(np.isfinite(times)) or np.any(times < 0) or np.any(np.diff(times) <= 0):
        raise InputError(
            f"HR knot times must be finite, >= 0 and strictly increasing, got {times.tolist()}; "
            f"for example {example}."
        )
    bpm = tuple(_check_bpm(float(b), f"HR knot at {t:g} s") for t, b in knots)
    return HRTarget("knots", bpm, tuple(float(t) for t in times))


def parse_hr_target(spec) -> HRTarget:
    """Read a heart-rate target in any form a user may give it.

    Args:
        spec: one of
            * a number (``75``) or numeric string (``"75"``): constant HR;
            * a string ``"A:B"`` (or ``"A:B:C..."``): linear ramp over the clip through
              evenly spaced values;
            * a sequence of ``(t_s, bpm)`` pairs with increasing ``t_s >= 0``:
              piecewise-linear, held before the first and after the last knot;
            * the same knots as text, ``"0s=70, 5s=120"`` or ``"0=70; 5=120"`` (time in
              seconds ``=`` bpm, ``s`` optional, parts separated by ``,`` or ``;``);
            * an :class:`HRTarget` (returned unchanged).

    Returns:
        HRTarget with every bpm in 30-240.

    Raises:
        InputError: unreadable spec, or a value outside 30-240 bpm.
    """
    if isinstance(spec, HRTarget):
        return spec
    if isinstance(spec, np.ndarray) and spec.ndim == 0:
        spec = spec.item()
    if isinstance(spec, numbers.Real) and not isinstance(spec, bool):
        return HRTarget("constant", (_check_bpm(spec, "Target heart rate"),))
    if isinstance(spec, str):
        if "=" in spec:
            return _knots_target(_parse_text_knots(spec), "'0s=70, 5s=120'")
        parts = [p.strip() for p in spec.strip().split(":")]
        if len(parts) == 1:
            return HRTarget("constant", (_check_bpm(_parse_number(parts[0], "Target heart rate"), "Target heart rate"),))
        values = tuple(_check_bpm(_parse_number(p, "Ramp value"), "Ramp value") for p in parts)
        return HRTarget("ramp", values)
    if isinstance(spec, (list, tuple, np.ndarray)):
        return _knots_target(spec, "[(0, 70), (5, 120)]")
    raise InputError(
        f"Cannot read a heart-rate target from {spec!r} ({type(spec).__name__}); give a number "
        f"like 75, a ramp like '70:120', or knots like '0s=70, 5s=120' or [(0, 70), (5, 120)]."
    )


def _check_clip(n_frames, fps) -> tuple[int, float]:
    if isinstance(n_frames, bool) or not isinstance(n_frames, numbers.Integral) or n_frames < 1:
        raise InputError(f"n_frames must be a positive integer, got {n_frames!r}.")
    if isinstance(fps, bool) or not isinstance(fps, numbers.Real) or not np.isfinite(fps) or fps <= 0:
        raise InputError(f"fps must be a positive number, got {fps!r}.")
    return int(n_frames), float(fps)


def hr_curve(target, n_frames: int, fps: float) -> np.ndarray:
    """The target heart rate at every frame.

    Args:
        target: anything :func:`parse_hr_target` accepts.
        n_frames: T, number of frames.
        fps: frame rate; frame ``i`` is at ``i / fps`` seconds.

    Returns:
        ``[T]`` float64, bpm.
    """
    target = parse_hr_target(target)
    n_frames, fps = _check_clip(n_frames, fps)
    if target.kind == "constant":
        return np.full(n_frames, target.bpm[0])
    if target.kind == "ramp":
        # Values evenly spaced from the first frame to the last.
        where = np.linspace(0.0, 1.0, len(target.bpm))
        return np.interp(np.linspace(0.0, 1.0, n_frames), where, target.bpm)
    t_s = np.arange(n_frames) / fps
    return np.interp(t_s, target.times_s, target.bpm)


# --------------------------------------------------------------------------- beat shape

# One PPG beat as a sum of two periodic, asymmetric Gaussians in phase (cycles, 0 = beat
# onset): the systolic wave rises fast (left width) and falls slowly (right width), peaking
# at 0.18 cycles so the upstroke takes ~18 % of the beat; the smaller diastolic (reflected)
# wave follows, and the dip between the two is the dicrotic notch.
# (amplitude, centre, left width, right width)
_BEAT_COMPONENTS = ((1.00, 0.18, 0.06, 0.13), (0.50, 0.46, 0.07, 0.17))


def _raw_beat(phase: np.ndarray) -> np.ndarray:
    frac = np.mod(phase, 1.0)
    out = np.zeros_like(frac, dtype=np.float64)
    for amp, centre, left, right in _BEAT_COMPONENTS:
        # Add the copies from the neighbouring beats so the sum is smooth and periodic.
        for shift in (-1.0, 0.0, 1.0):
            d = frac - centre + shift
            out += amp * np.exp(-0.5 * (d / np.where(d < 0, left, right)) ** 2)
    return out


_GRID = _raw_beat(np.arange(4096) / 4096)
_BEAT_MEAN, _BEAT_STD = float(_GRID.mean()), float(_GRID.std())


def ppg_waveform(phase_cycles) -> np.ndarray:
    """A PPG (blood volume) beat shape evaluated at a phase given in cycles.

    Phase 0 (and every integer) is about the beat onset (the foot, the minimum is at
    -0.03); the fast systolic upstroke
    peaks at 0.18, followed by the dicrotic notch (~0.37) and the diastolic wave (~0.44),
    then the slow decay to the next foot. Periodic with period 1.

    Args:
        phase_cycles: array of any shape, phase in cycles (unwrapped values are fine).

    Returns:
        Same shape, float64; zero-mean and unit-std over one period. Blood volume: see the
        module docstring for the sign to apply to pixels.
    """
    phase = np.asarray(phase_cycles, dtype=np.float64)
    return (_raw_beat(phase) - _BEAT_MEAN) / _BEAT_STD


# --------------------------------------------------------------------------- pulse signal


@dataclass
class PulseSignal:
    """A synthetic pulse sampled at the frames of a clip.

    Attributes:
        wave: ``[T]`` blood-volume pulse, zero-mean, unit std over the clip.
        hr_bpm: ``[T]`` instantaneous heart rate actually used (target + HRV), bpm.
        phase: ``[T]`` unwrapped beat phase in cycles (beat onsets at integers).
    """

    wave: np.ndarray
    hr_bpm: np.ndarray
    phase: np.ndarray


def _smooth_noise(rng: np.random.Generator, n: int, fps: float, cutoff_hz: float) -> np.ndarray:
    """Low-pass Gaussian noise, ``[n]``, scaled to unit std before cropping.

    Filtered on a padded sequence so short clips get the same statistics as long ones.
    """
    from scipy import signal  # noqa: PLC0415 (slow to import: loaded on first use)
    pad = int(np.ceil(4.0 * fps / cutoff_hz))
    white = rng.standard_normal(n + 2 * pad)
    sos = signal.butter(2, cutoff_hz, fs=fps, output="sos")
    smooth = signal.sosfiltfilt(sos, white)
    return smooth[pad : pad + n] / smooth.std()


def synth_pulse(
    n_frames: int,
    fps: float,
    target,
    hrv_ms: float = 20.0,
    resp_hz: float = 0.25,
    resp_depth: float = 0.1,
    seed: int = 0,
) -> PulseSignal:
    """A realistic pulse following a heart-rate target.

    The instantaneous HR is the target curve plus HRV; its integral is the beat phase, fed
    through :func:`ppg_waveform`. Respiration modulates the amplitude and the baseline.

    Args:
        n_frames: T.
        fps: frame rate.
        target: anything :func:`parse_hr_target` accepts.
        hrv_ms: heart-rate variability as the std of beat-to-beat (RR) interval changes in
            milliseconds (20 ms is about 1.7 bpm at 72 bpm; at most ``HRV_MAX_BPM`` = 3 bpm
            whatever the HR); 0 disables it. Made of slow
            (< 0.15 Hz) random variation plus respiratory sinus arrhythmia at ``resp_hz``.
            Its mean over the clip is removed, so the mean HR equals the target's.
        resp_hz: breathing rate in Hz (0.2-0.3 is typical at rest); 0 disables
            respiratory modulation.
        resp_depth: relative depth of the respiratory amplitude modulation (0-0.9); the
            baseline wanders by half of that (in units of the beat's std).
        seed: everything random (HRV, initial phases) comes from ``default_rng(seed)``.

    Returns:
        PulseSignal with ``wave``, ``hr_bpm``, ``phase`` each ``[T]``.

    Raises:
        InputError: bad target, clip, or modulation settings, or a heart rate whose
            frequency is at or above Nyquist (``fps / 2``).
    """
    n_frames, fps = _check_clip(n_frames, fps)
    if not np.isfinite(hrv_ms) or hrv_ms < 0:
        raise InputError(f"hrv_ms must be >= 0 milliseconds, got {hrv_ms!r}.")
    if not np.isfinite(resp_depth) or not 0 <= resp_depth <= 0.9:
        raise InputError(f"resp_depth must be between 0 and 0.9, got {resp_depth!r}.")
    if not np.isfinite(resp_hz) or not 0 <= resp_hz < fps / 2:
        raise InputError(f"resp_hz must be between 0 and fps/2 = {fps / 2:g} Hz, got {resp_hz!r}.")
    rng = np.random.default_rng(seed)
    t_s = np.arange(n_frames) / fps
    hr = hr_curve(target, n_frames, fps)

    if hrv_ms > 0:
        slow = _smooth_noise(rng, n_frames, fps, cutoff_hz=min(0.15, 0.4 * fps))
        rsa = np.sqrt(2.0) * np.sin(2 * np.pi * resp_hz * t_s + rng.uniform(0, 2 * np.pi))
        variation = (slow + rsa) / np.sqrt(2.0)  # ~unit std
        variation -= variation.mean()  # keep the clip's mean HR on target
        # An RR change of d ms at heart rate h bpm is a rate change of d * h^2 / 60000 bpm;
        # capped so fast hearts (where real HRV shrinks) keep a readable rate.
        hr = hr + variation * np.minimum(hrv_ms * hr**2 / 60000.0, HRV_MAX_BPM)
    else:
        rng.standard_normal(1)  # keep the stream of draws the same shape either way
    if hr.max() / 60.0 >= fps / 2:
        raise InputError(
            f"A heart rate of {hr.max():.0f} bpm cannot be represented at {fps:g} fps (Nyquist "
            f"{fps * 30:g} bpm); use a higher frame rate or a lower heart rate."
        )

    # Trapezoidal integral of the beat frequency (Hz) gives the phase in cycles.
    phase0 = rng.uniform(0.0, 1.0)
    freq_hz = hr / 60.0
    steps = 0.5 * (freq_hz[1:] + freq_hz[:-1]) / fps
    phase = phase0 + np.concatenate([[0.0], np.cumsum(steps)])

    wave = ppg_waveform(phase)
    if resp_hz > 0 and resp_depth > 0:
        breath = np.sin(2 * np.pi * resp_hz * t_s + rng.uniform(0, 2 * np.pi))
        wave = wave * (1.0 + resp_depth * breath) + 0.5 * resp_depth * breath
    if n_frames > 1 and wave.std() > 0:
        wave = (wave - wave.mean()) / wave.std()
    return PulseSignal(wave=wave, hr_bpm=hr, phase=phase)
