"""Target pulse synthesis: HR targets, a PPG beat shape, and a realistic pulse signal.

Three pieces, used by the editor (the pulse to inject), by ``synth.py`` (the ground-truth
pulse of a synthetic subject) and by the CLI (parsing ``--target-hr``):

* :func:`parse_hr_target` turns what a user typed (``75``, ``"75"``, ``"70:120"``, knots
  such as ``"0s=70, 5s=120"``) into an :class:`HRTarget`; :func:`hr_curve` samples it per
  frame, in bpm. It is the one reader of that grammar: the CLI and the nodes call it.
  :func:`parse_face_targets` reads the same per face of a clip (``"1=75, 2=remove"``) into
  :class:`FaceTargets`.
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
import re
from dataclasses import dataclass

import numpy as np

from .errors import InputError

HR_MIN_BPM = 30.0
HR_MAX_BPM = 240.0
HRV_MAX_BPM = 3.0  # cap on the std of heart-rate variability, whatever hrv_ms asks
# Breathing-rate targets, breaths per minute: slow paced breathing to panting.
RESP_MIN_BPM = 4.0
RESP_MAX_BPM = 40.0
RMSSD_MAX_MS = 200.0  # RMSSD targets above this are far outside resting adults' range (~10-100 ms)
# Phase (cycles) of the systolic peak in ppg_waveform: the beat times of synth_pulse's HRV
# model are the peaks, which is what beat detectors (rppg.beats) time.
SYSTOLIC_PHASE = 0.18
# Power of the slow (LF, ~0.1 Hz) part of the IBI series relative to the respiratory (HF)
# part in the HRV model: LF/HF of healthy adults at rest is about 1-2.
LF_HF_RATIO = 1.5

__all__ = [
    "HR_MAX_BPM",
    "HR_MIN_BPM",
    "HRV_MAX_BPM",
    "HRTarget",
    "RESP_MAX_BPM",
    "RESP_MIN_BPM",
    "RMSSD_MAX_MS",
    "PulseSignal",
    "FaceTargets",
    "REMOVE",
    "hr_curve",
    "parse_face_targets",
    "parse_hr_target",
    "parse_resp_target",
    "check_rmssd",
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
    unit: str = "bpm"  # "breaths/min" for a breathing-rate target (parse_resp_target)

    @property
    def mean_bpm(self) -> float:
        """The mean of the knot values (for a constant target: the target itself)."""
        return float(np.mean(self.bpm))

    def __str__(self) -> str:
        if self.kind == "constant":
            return f"{self.bpm[0]:g} {self.unit}"
        if self.kind == "ramp":
            return ":".join(f"{b:g}" for b in self.bpm) + f" {self.unit} (ramp)"
        return ", ".join(f"{t:g}s={b:g}" for t, b in zip(self.times_s, self.bpm)) + f" {self.unit}"


def _check_rate(value, what: str, low: float, high: float, unit: str, hint: str = "") -> float:
    """One rate as a float in ``low``-``high`` ``unit``, or an InputError naming the range."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InputError(f"{what} must be a number ({unit}), got {value!r}.")
    rate = float(value)
    if not np.isfinite(rate) or not low <= rate <= high:
        raise InputError(f"{what} {value!r} is outside the allowed range {low:g}-{high:g} {unit}; {hint}")
    return rate


def _check_bpm(value, what: str) -> float:
    """One heart rate in HR_MIN_BPM-HR_MAX_BPM bpm."""
    return _check_rate(value, what, HR_MIN_BPM, HR_MAX_BPM, "bpm",
                       f"choose a heart rate between {HR_MIN_BPM:g} and {HR_MAX_BPM:g}.")


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


def _knots_target(spec, example: str, check=None, unit: str = "bpm", noun: str = "HR") -> HRTarget:
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
    check = check or _check_bpm
    bpm = tuple(check(float(b), f"{noun} knot at {t:g} s") for t, b in knots)
    return HRTarget("knots", bpm, tuple(float(t) for t in times), unit)


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
        if _is_per_face(spec):
            raise InputError(
                f"{spec!r} gives a target per face; here one target is taken (a number like 75, a ramp like "
                "70:120, or knots like '0s=70, 5s=120'). Per-face targets go to a file job (the CLI's "
                "--target-hr, pipeline.JobRequest) or editor.edit_faces; in ComfyUI pick the face with Face Select."
            )
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


# --------------------------------------------------------------------------- per-face targets

REMOVE = "remove"  # a face's target: take its pulse out
_FACE_PART = re.compile(r"^\s*(\d+)\s*=(.*)$", re.S)  # "2=..." starts face 2's target; "2s=..." is a knot


def _is_per_face(text: str) -> bool:
    """Whether ``text`` is the per-face form: it starts with a face id (a whole number >= 1
    without a unit) and ``=``. Knots written without ``s`` that start at 0 (``0=70; 5=120``)
    stay knots: no face has id 0."""
    match = _FACE_PART.match(text.replace(";", ",").split(",")[0])
    return match is not None and int(match.group(1)) >= 1


@dataclass(frozen=True)
class FaceTargets:
    """What to do with each face of a clip.

    ``all``: one target for every face (an :class:`HRTarget` or :data:`REMOVE`), or None
    when targets are given per face; ``faces``: ((face id, HRTarget or REMOVE), ...) by id.
    Faces not named keep their own pulse (:meth:`for_face` gives None).
    """

    all: HRTarget | str | None = None
    faces: tuple[tuple[int, HRTarget | str], ...] = ()

    @property
    def per_face(self) -> bool:
        return self.all is None

    def for_face(self, face_id: int) -> HRTarget | str | None:
        """Face ``face_id``'s target, REMOVE, or None (left untouched)."""
        return self.all if self.all is not None else dict(self.faces).get(int(face_id))

    def check_faces(self, face_ids) -> None:
        """InputError if a face named here is not among ``face_ids`` (the clip's faces)."""
        face_ids = sorted(int(i) for i in face_ids)
        missing = [i for i, _ in self.faces if i not in face_ids]
        if missing:
            found = ", ".join(map(str, face_ids)) or "none"
            raise InputError(
                f"face {', '.join(map(str, missing))} is not in the clip: the faces found are {found} "
                f"({len(face_ids)} face{'s' if len(face_ids) != 1 else ''}, numbered by first appearance, "
                "left to right). Name those, or give one target for every face."
            )

    def __str__(self) -> str:
        if self.all is not None:
            return str(self.all)
        return "; ".join(f"face {i}: {t}" for i, t in self.faces)


def _face_target(spec, face: str) -> HRTarget | str:
    if isinstance(spec, str) and spec.strip().lower() == REMOVE:
        return REMOVE
    try:
        return parse_hr_target(spec)
    except InputError as error:
        raise InputError(f"{face}: {error}") from None


def parse_face_targets(spec) -> FaceTargets:
    """Read heart-rate targets for the faces of a clip.

    Args:
        spec: one of
            * anything :func:`parse_hr_target` reads, or ``"remove"``: the same for every face;
            * per face, ``"ID=TARGET"`` parts: ``"1=75, 2=remove"``, ``"1=70:120; 2=90"``. A
              face's TARGET is a number, a ramp, ``remove`` or knots; knots inside a face
              need their ``s`` (``"1=0s=70, 8s=110; 2=remove"``): a part that starts with a
              bare whole number and ``=`` starts the next face. Parts are separated by
              ``,`` or ``;``;
            * a dict ``{face_id: target}``, or a :class:`FaceTargets` (returned unchanged).

    Faces are numbered 1, 2, ... by first appearance (``face.track_faces``); faces not named
    keep their own pulse. Whether the named faces exist is checked against the clip
    (:meth:`FaceTargets.check_faces`).

    Raises:
        InputError: unreadable spec, a face named twice, a target outside 30-240 bpm.
    """
    if isinstance(spec, FaceTargets):
        return spec
    if isinstance(spec, dict):
        faces = {}
        for key, value in spec.items():
            try:
                face_id = int(key)
            except (TypeError, ValueError):
                face_id = 0
            if face_id < 1 or str(key).strip() != str(face_id):
                raise InputError(f"face id {key!r} is not a whole number >= 1; faces are numbered 1, 2, ...")
            faces[face_id] = _face_target(value, f"face {face_id}")
        if not faces:
            raise InputError("no face targets given; write e.g. '1=75, 2=remove', or one target for all faces.")
        return FaceTargets(None, tuple(sorted(faces.items())))
    if isinstance(spec, str) and _is_per_face(spec):
        texts: dict[int, list[str]] = {}
        current = None
        for part in spec.replace(";", ",").split(","):
            if not part.strip():
                continue
            match = _FACE_PART.match(part)
            if match is not None and int(match.group(1)) >= 1:
                current = int(match.group(1))
                if current in texts:
                    raise InputError(f"face {current} is given two targets in {spec!r}; give each face one.")
                texts[current] = [match.group(2)]
            elif match is not None:
                raise InputError(f"face id 0 in {spec!r}: faces are numbered 1, 2, ...")
            else:  # a knot of the current face
                texts[current].append(part)
        return FaceTargets(None, tuple((i, _face_target(", ".join(p).strip(), f"face {i}"))
                                       for i, p in sorted(texts.items())))
    return FaceTargets(_face_target(spec, "target"), ())


def _check_resp(value, what: str) -> float:
    """One breathing rate in RESP_MIN_BPM-RESP_MAX_BPM breaths/min."""
    return _check_rate(value, what, RESP_MIN_BPM, RESP_MAX_BPM, "breaths/min",
                       f"choose a breathing rate between {RESP_MIN_BPM:g} and {RESP_MAX_BPM:g} "
                       "(12-20 is typical at rest).")


def parse_resp_target(spec) -> HRTarget:
    """Read a breathing-rate target (breaths/min) in the heart-rate grammar.

    ``14``, ``"14"``, a ramp ``"12:18"``, knots ``"0s=12, 30s=18"`` or ``[(0, 12), (30, 18)]``,
    or an :class:`HRTarget` with ``unit="breaths/min"``; every value in 4-40 breaths/min.
    :func:`hr_curve` samples it per frame, in breaths/min.

    Raises:
        InputError: unreadable spec or a value outside 4-40 breaths/min.
    """
    if isinstance(spec, HRTarget):
        if spec.unit != "breaths/min":
            raise InputError(f"{spec} is a heart-rate target, not a breathing rate.")
        return spec
    if isinstance(spec, np.ndarray) and spec.ndim == 0:
        spec = spec.item()
    unit = "breaths/min"
    if isinstance(spec, numbers.Real) and not isinstance(spec, bool):
        return HRTarget("constant", (_check_resp(spec, "Breathing rate"),), unit=unit)
    if isinstance(spec, str):
        if "=" in spec:
            return _knots_target(_parse_text_knots(spec), "'0s=12, 30s=18'", _check_resp, unit, "Breathing-rate")
        parts = [p.strip() for p in spec.strip().split(":")]
        values = []
        for part in parts:
            try:
                number = float(part)
            except ValueError:
                raise InputError(f"Breathing rate {part!r} is not a number; write a rate like 14, a ramp like "
                                 "12:18, or knots like '0s=12, 30s=18'.") from None
            values.append(_check_resp(number, "Breathing rate"))
        return HRTarget("constant" if len(values) == 1 else "ramp", tuple(values), unit=unit)
    if isinstance(spec, (list, tuple, np.ndarray)):
        return _knots_target(spec, "[(0, 12), (30, 18)]", _check_resp, unit, "Breathing-rate")
    raise InputError(
        f"Cannot read a breathing-rate target from {spec!r} ({type(spec).__name__}); give a number like 14, "
        "a ramp like '12:18', or knots like '0s=12, 30s=18'."
    )


def check_rmssd(value) -> float:
    """An RMSSD target in ms (0-RMSSD_MAX_MS) as a float, or an InputError that says the range."""
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, str)):
        raise InputError(f"RMSSD must be a number of milliseconds, got {value!r}.")
    try:
        rmssd = float(value)
    except ValueError:
        raise InputError(f"RMSSD {value!r} is not a number; give milliseconds like 45.") from None
    if not np.isfinite(rmssd) or not 0.0 <= rmssd <= RMSSD_MAX_MS:
        raise InputError(f"RMSSD {value!r} ms is outside 0-{RMSSD_MAX_MS:g} ms; resting adults measure about "
                         "10-100 ms (e.g. 45).")
    return rmssd


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
        beat_times_s: with ``rmssd_ms``, the systolic peak times (s) inside the clip, the
            ground truth of beat detectors; else None.
        resp_bpm, breath: breathing rate (breaths/min) and waveform per frame, or None.
    """

    wave: np.ndarray
    hr_bpm: np.ndarray
    phase: np.ndarray
    beat_times_s: np.ndarray | None = None  # [B] systolic peak times in the clip (HRV model only)
    resp_bpm: np.ndarray | None = None  # [T] breathing rate, breaths/min (None: no breathing)
    breath: np.ndarray | None = None  # [T] breathing waveform, +1 = full inspiration

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
    rmssd_ms: float | None = None,
    resp_rate=None,
) -> PulseSignal:
    """A realistic pulse following a heart-rate target.

    Two heart-rate variability (HRV) models:

    * default (``rmssd_ms=None``): the instantaneous HR is the target curve plus smooth
      variation of about ``hrv_ms``; its integral is the beat phase.
    * ``rmssd_ms`` given: beat by beat. Each inter-beat interval (IBI) is the target's
      plus respiratory sinus arrhythmia (shorter during inspiration, at the breathing
      rate) plus a slower component (0.04-0.15 Hz, Mayer waves) with ``LF_HF_RATIO`` times
      the power, scaled so the RMSSD of the clip's beats is exactly ``rmssd_ms``; the phase
      passes ``k + SYSTOLIC_PHASE`` at beat ``k``'s time, so the waveform's systolic peaks
      are the beats (``beat_times_s``).

    Either way the phase is fed through :func:`ppg_waveform`, and breathing modulates the
    amplitude (by ``resp_depth``) and the baseline (by half of that, in units of the beat's std).

    Args:
        n_frames: T.
        fps: frame rate.
        target: anything :func:`parse_hr_target` accepts.
        hrv_ms: default model: the std of RR interval changes in ms (20 ms is about
            1.7 bpm at 72 bpm; at most ``HRV_MAX_BPM`` = 3 bpm whatever the HR); 0 disables
            it. Slow (< 0.15 Hz) variation plus RSA; its mean is removed, so the mean HR
            equals the target's. Ignored when ``rmssd_ms`` is given.
        resp_hz: breathing rate in Hz (0.2-0.3 is typical at rest); 0 disables
            respiratory modulation. ``resp_rate`` overrides it.
        resp_depth: relative depth of the respiratory amplitude modulation (0-0.9).
        seed: everything random (HRV, initial phases) comes from ``default_rng(seed)``.
        rmssd_ms: RMSSD target of the beat-by-beat model, 0-``RMSSD_MAX_MS`` ms.
        resp_rate: breathing rate in breaths/min, anything :func:`parse_resp_target`
            accepts (``14``, ``"12:18"``, ``"0s=12, 30s=18"``).

    Returns:
        PulseSignal with ``wave``, ``hr_bpm``, ``phase`` each ``[T]`` (and the HRV model's
        beats and the breathing, see :class:`PulseSignal`).

    Raises:
        InputError: bad target, clip, or modulation settings, a breathing rate at or above
            half the heart rate (the beats cannot carry it), or a heart rate whose frequency
            is at or above Nyquist (``fps / 2``).
    """
    n_frames, fps = _check_clip(n_frames, fps)
    if not np.isfinite(hrv_ms) or hrv_ms < 0:
        raise InputError(f"hrv_ms must be >= 0 milliseconds, got {hrv_ms!r}.")
    if not np.isfinite(resp_depth) or not 0 <= resp_depth <= 0.9:
        raise InputError(f"resp_depth must be between 0 and 0.9, got {resp_depth!r}.")
    if not np.isfinite(resp_hz) or not 0 <= resp_hz < fps / 2:
        raise InputError(f"resp_hz must be between 0 and fps/2 = {fps / 2:g} Hz, got {resp_hz!r}.")
    if rmssd_ms is not None:
        rmssd_ms = check_rmssd(rmssd_ms)
    rng = np.random.default_rng(seed)
    t_s = np.arange(n_frames) / fps
    hr = hr_curve(target, n_frames, fps)
    resp_bpm = None
    if resp_rate is not None:
        resp_bpm = hr_curve(parse_resp_target(resp_rate), n_frames, fps)
        if np.any(resp_bpm >= hr / 2):
            raise InputError(f"a breathing rate of {resp_bpm.max():g} breaths/min needs a heart rate above "
                             f"{2 * resp_bpm.max():g} bpm (at least two beats per breath); lower the breathing rate.")
    elif resp_hz > 0:
        resp_bpm = np.full(n_frames, 60.0 * resp_hz)
    breathing = resp_bpm is not None and resp_depth > 0

    if rmssd_ms is not None:
        resp_phase0 = rng.uniform(0, 2 * np.pi)
        phase, beat_times = _beat_model(hr, resp_bpm, fps, rmssd_ms, resp_phase0, rng)
        hr = np.gradient(phase, 1.0 / fps) * 60.0 if n_frames > 1 else hr
        resp_phase = resp_phase0 + _resp_phase(resp_bpm, fps) if resp_bpm is not None else None
    else:
        beat_times = None
        resp_phase = None
        if hrv_ms > 0:
            slow = _smooth_noise(rng, n_frames, fps, cutoff_hz=min(0.15, 0.4 * fps))
            start = rng.uniform(0, 2 * np.pi)
            if resp_rate is not None:
                rsa = np.sqrt(2.0) * np.sin(_resp_phase(resp_bpm, fps) + start)
            else:
                rsa = np.sqrt(2.0) * np.sin(2 * np.pi * resp_hz * t_s + start)
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

    if rmssd_ms is None:
        # Trapezoidal integral of the beat frequency (Hz) gives the phase in cycles.
        phase0 = rng.uniform(0.0, 1.0)
        freq_hz = hr / 60.0
        steps = 0.5 * (freq_hz[1:] + freq_hz[:-1]) / fps
        phase = phase0 + np.concatenate([[0.0], np.cumsum(steps)])

    wave = ppg_waveform(phase)
    breath = None
    if breathing:
        if resp_phase is None:
            start = rng.uniform(0, 2 * np.pi)
            resp_phase = (2 * np.pi * resp_hz * t_s if resp_rate is None else _resp_phase(resp_bpm, fps)) + start
        breath = np.sin(resp_phase)
        wave = wave * (1.0 + resp_depth * breath) + 0.5 * resp_depth * breath
    if n_frames > 1 and wave.std() > 0:
        wave = (wave - wave.mean()) / wave.std()
    return PulseSignal(wave=wave, hr_bpm=hr, phase=phase, beat_times_s=beat_times, resp_bpm=resp_bpm, breath=breath)


def _resp_phase(resp_bpm: np.ndarray, fps: float) -> np.ndarray:
    """Breathing phase (radians) per frame from the rate per frame, starting at 0."""
    freq_hz = np.asarray(resp_bpm, float) / 60.0
    steps = 0.5 * (freq_hz[1:] + freq_hz[:-1]) / fps
    return 2 * np.pi * np.concatenate([[0.0], np.cumsum(steps)])


def _rmssd_scale(base: np.ndarray, variation: np.ndarray, rmssd_s: float) -> float:
    """The s >= 0 with RMSSD(base + s * variation) = rmssd_s (IBIs in seconds); 0 when the
    target trajectory alone already varies more."""
    db, dv = np.diff(base), np.diff(variation)
    a, b, c = np.mean(dv * dv), np.mean(db * dv), np.mean(db * db) - rmssd_s**2
    if a <= 0 or b * b - a * c < 0:
        return 0.0
    return max(0.0, (-b + np.sqrt(b * b - a * c)) / a)


def _beat_model(hr: np.ndarray, resp_bpm, fps: float, rmssd_ms: float, resp_phase0: float, rng):
    """Beat-by-beat HRV: (phase per frame [T] in cycles, systolic peak times in the clip [B] s).

    IBI_k = 60 / HR(t_k) + s * (RSA_k + LF_k): RSA = -sin(breathing phase) (inspiration
    shortens the interval), LF = band-limited 0.04-0.15 Hz noise with LF_HF_RATIO times its
    power; s set so the RMSSD of the beats inside the clip is rmssd_ms (three passes, as the
    beat times move with s).
    """
    from scipy import interpolate, signal  # noqa: PLC0415 (slow to import: loaded on first use)

    n = len(hr)
    duration = n / fps
    t_frames = np.arange(n) / fps
    margin = 3.0 * 60.0 / max(float(hr.min()), 1.0)
    # A 4 Hz grid over the clip and its margins: breathing phase and the slow LF noise.
    grid = np.arange(-margin, duration + margin, 0.25)
    hr_at = lambda t: np.interp(t, t_frames, hr)  # noqa: E731 (held constant beyond the ends)
    if resp_bpm is not None:
        resp_grid = np.interp(grid, t_frames, resp_bpm)
        resp_phase = resp_phase0 + 2 * np.pi * np.concatenate([[0.0], np.cumsum(resp_grid[:-1] / 60.0 * 0.25)])
        resp_phase -= np.interp(0.0, grid, resp_phase) - resp_phase0  # phase resp_phase0 at t = 0, as the frames'
    else:
        resp_phase = None
    pad = 200
    sos = signal.butter(2, [0.04, 0.15], btype="bandpass", fs=4.0, output="sos")
    lf = signal.sosfiltfilt(sos, rng.standard_normal(len(grid) + 2 * pad))[pad:-pad]
    first = -rng.uniform(0.0, 1.0) * 60.0 / hr[0]  # the last beat before the clip starts

    def variation_at(t):
        hf = -np.sin(np.interp(t, grid, resp_phase)) if resp_phase is not None else np.zeros_like(t)
        slow = np.interp(t, grid, lf)
        hf_std, lf_std = max(np.std(hf), 1e-12), max(np.std(slow), 1e-12)
        v = (hf / hf_std if resp_phase is not None else 0.0) + slow / lf_std * np.sqrt(
            LF_HF_RATIO if resp_phase is not None else 1.0)
        return v - np.mean(v)

    times = [first]
    while times[-1] < duration + margin:
        times.append(times[-1] + 60.0 / hr_at(times[-1]))
    times = np.asarray(times)
    scale = 0.0
    for _ in range(3):
        base = 60.0 / hr_at(times[:-1])
        variation = variation_at(times[:-1])
        inside = (times[:-1] >= 0) & (times[1:] <= duration)
        if inside.sum() >= 3:
            scale = _rmssd_scale(base[inside], variation[inside], rmssd_ms / 1000.0)
        ibi = np.maximum(base + scale * variation, 0.25 * base)
        times = first + np.concatenate([[0.0], np.cumsum(ibi)])
    beat_phase = np.arange(len(times)) + SYSTOLIC_PHASE
    phase = interpolate.PchipInterpolator(times, beat_phase)(t_frames)
    return phase, times[(times >= 0) & (times <= duration)]
