"""Verification: does an edited clip carry the intended pulse, and does it still look the same?

* ``verify(frames, fps, ...)`` -> a JSON-able dict: HR per estimator; with ``reference_frames``
  (the unedited clip) also HR before/after, rPPG-Toolbox SNR at the reference's HR
  before/after, PSNR and SSIM of the whole frames; with a target, whether each estimator
  reads it within 3 bpm.
* ``verify_vitals(traces_after, fps, ...)`` -> HRV (RMSSD, SDNN, pNN50, LF/HF) and breathing
  rate before/after, against RMSSD and breathing targets (``rppg.vitals``).
* ``plot_pulse(...)`` -> a matplotlib ``Figure``: POS pulse waveforms and spectra before/after.
* ``plot_vitals(...)`` -> a ``Figure``: inter-beat intervals and the breathing signal.
* ``figure_to_image(fig)`` -> ``[H, W, 3]`` float32 0..1 (ComfyUI shows plots as IMAGE).
* ``save_figure(fig, path)`` -> atomic write (temp file + rename).

matplotlib and scikit-image are imported inside the functions that need them.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .errors import InputError
from .rppg import ColourTraces, check_fps, pulse_of, read_traces, resolve_methods
from .rppg.hr import DEFAULT_BAND_BPM, MIN_DURATION_S, check_duration, estimate_hr, power_spectrum, snr_db

#: PSNR reported for identical clips (the true value is infinite, which JSON cannot hold).
PSNR_CAP_DB = 100.0
#: |HR - target| below this counts as "on target" (the paper's and this project's tolerance).
TARGET_TOLERANCE_BPM = 3.0
#: RMSSD read back within this fraction of its target counts as set (issue 19's acceptance).
RMSSD_TOLERANCE = 0.2
#: A breathing rate within this many breaths/min counts as set; a removal leaves none this close.
RESP_TOLERANCE_BPM = 1.5


def _check_frames(frames, name: str) -> np.ndarray:
    x = np.asarray(frames)
    if x.ndim != 4 or x.shape[-1] != 3:
        raise InputError(f"{name} must have shape [T, H, W, 3] (RGB, 0..1), got {x.shape}.")
    if not np.issubdtype(x.dtype, np.floating):
        raise InputError(f"{name} must be float RGB in 0..1, got dtype {x.dtype}; divide 8-bit frames by 255.")
    return x


def psnr_db(frames, reference) -> float:
    """PSNR (data range 1.0) over all pixels of all frames, ``[T,H,W,3]`` each.

    ``cv2.norm(NORM_L2SQR)`` sums squared differences frame by frame in double precision
    without a full-size difference array. Identical clips give ``PSNR_CAP_DB``.
    """
    import cv2  # noqa: PLC0415 (lazy, like the other heavy imports here)

    total = 0.0
    for a, b in zip(frames, reference):
        total += cv2.norm(np.asarray(a, dtype=np.float32), np.asarray(b, dtype=np.float32), cv2.NORM_L2SQR)
    mse = total / np.prod(np.shape(frames))
    if mse <= 0:
        return PSNR_CAP_DB
    return float(min(PSNR_CAP_DB, 10.0 * math.log10(1.0 / mse)))


def ssim(frames, reference, max_frames: int = 6) -> tuple[float, int]:
    """Mean SSIM over up to ``max_frames`` evenly spaced frames (whole RGB frames,
    ``skimage.metrics.structural_similarity`` defaults, data range 1.0).

    Returns ``(mean_ssim, frames_used)``. SSIM changes slowly along a clip, so a subsample
    keeps verification fast (a 640x480 frame takes ~0.1 s).
    """
    from skimage.metrics import structural_similarity  # noqa: PLC0415 (lazy: slow import)

    n = len(frames)
    idx = np.unique(np.linspace(0, n - 1, min(n, max_frames)).round().astype(int))
    values = [
        structural_similarity(
            np.asarray(frames[i], dtype=np.float32),
            np.asarray(reference[i], dtype=np.float32),
            channel_axis=-1,
            data_range=1.0,
        )
        for i in idx
    ]
    return float(np.mean(values)), int(len(idx))


class FidelityMeter:
    """PSNR and SSIM of a long clip against its reference, fed chunk by chunk.

    >>> meter = FidelityMeter(n_frames)
    >>> for edited, reference in chunks: meter.update(edited, reference)
    >>> meter.psnr_db, meter.ssim

    Same definitions as :func:`psnr_db` and :func:`ssim` (SSIM on ``max_frames`` evenly
    spaced frames), without holding either clip in memory.
    """

    def __init__(self, n_frames: int, max_frames: int = 6):
        self.ssim_at = set(np.unique(np.linspace(0, n_frames - 1, min(n_frames, max_frames)).round().astype(int)).tolist())
        self._sq_error = 0.0
        self._values = 0
        self._ssims: list[float] = []
        self._t = 0

    def update(self, frames: np.ndarray, reference: np.ndarray) -> None:
        import cv2  # noqa: PLC0415

        for a, b in zip(frames, reference):
            a, b = np.asarray(a, dtype=np.float32), np.asarray(b, dtype=np.float32)
            self._sq_error += cv2.norm(a, b, cv2.NORM_L2SQR)
            self._values += a.size
            if self._t in self.ssim_at:
                self._ssims.append(ssim(a[None], b[None], max_frames=1)[0])
            self._t += 1

    @property
    def psnr_db(self) -> float:
        mse = self._sq_error / max(self._values, 1)
        return PSNR_CAP_DB if mse <= 0 else float(min(PSNR_CAP_DB, 10.0 * math.log10(1.0 / mse)))

    @property
    def ssim(self) -> float | None:
        return float(np.mean(self._ssims)) if self._ssims else None


def _median_finite(values) -> float | None:
    finite = [v for v in values if math.isfinite(v)]
    return float(np.median(finite)) if finite else None


def jsonable(value):
    """numpy -> Python, NaN/inf -> None, Paths -> str, so ``json.dumps`` writes strict JSON."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, Path):
        return str(value)
    return value


def verify(
    frames,
    fps,
    mask=None,
    methods=None,
    reference_frames=None,
    target_hr_bpm=None,
    true_hr_bpm=None,
    band_bpm=DEFAULT_BAND_BPM,
    ssim_frames: int = 6,
    min_duration_s: float = MIN_DURATION_S,
) -> dict:
    """Verification report for one (edited) clip.

    Args:
        frames: ``[T, H, W, 3]`` float 0..1, the clip to check (e.g. the editor's output).
        fps: frame rate.
        mask: ``[T, H, W]`` / ``[H, W]`` skin weights used for the colour traces of both
            clips, or None (whole frame).
        methods: reader names (default: all of ``rppg.METHODS``, SSR included).
        reference_frames: the unedited clip ``[T, H, W, 3]``, same shape; enables the
            before/after and fidelity entries.
        target_hr_bpm: the HR the edit aimed at.
        true_hr_bpm: the known HR of the clip (synthetic data); ``hr_error_bpm`` is measured
            against it, else against ``target_hr_bpm``.
        band_bpm: HR search band.
        ssim_frames: frames sampled for SSIM.
        min_duration_s: shorter clips raise ``InputError``.

    Returns (every value a float, bool, int, str, list or None; ``json.dumps`` works):
        ``fps``, ``n_frames``, ``duration_s``, ``methods``, ``band_bpm``,
        ``hr_bpm`` {method: HR of ``frames``}, ``hr_bpm_median``,
        ``snr_db`` {method: SNR of ``frames`` at its own HR (rPPG-Toolbox definition)};
        with a reference: ``hr_bpm_before``, ``hr_bpm_median_before``,
        ``snr_db_before`` / ``snr_db_after`` {method: SNR at that method's reference HR},
        ``psnr_db``, ``ssim``, ``ssim_frames``;
        with a target: ``target_hr_bpm``, ``target_within_3bpm`` {method: bool},
        ``snr_db_at_target`` {method};
        with a target or a truth: ``hr_error_bpm`` {method: |HR - truth|}, ``hr_error_against``,
        ``hr_mae_bpm`` (mean over methods).
        An HR that cannot be read (flat pulse, e.g. a grey video) is None.
    """
    x = _check_frames(frames, "frames")
    ref = None
    if reference_frames is not None:
        ref = _check_frames(reference_frames, "reference_frames")
        if ref.shape != x.shape:
            raise InputError(
                f"reference_frames {ref.shape} and frames {x.shape} differ in shape; pass the unedited "
                "clip with the same size and number of frames."
            )
    names = resolve_methods(methods)
    report = verify_traces(
        read_traces(x, mask, names), fps, methods=names,
        traces_before=None if ref is None else read_traces(ref, mask, names),
        target_hr_bpm=target_hr_bpm, true_hr_bpm=true_hr_bpm, band_bpm=band_bpm, min_duration_s=min_duration_s,
    )
    if ref is not None:
        report["psnr_db"] = psnr_db(x, ref)
        report["ssim"], report["ssim_frames"] = ssim(x, ref, max_frames=ssim_frames)
    return jsonable(report)


def verify_traces(
    traces_after,
    fps,
    methods=None,
    traces_before=None,
    target_hr_bpm=None,
    true_hr_bpm=None,
    band_bpm=DEFAULT_BAND_BPM,
    min_duration_s: float = MIN_DURATION_S,
) -> dict:
    """:func:`verify` on colour traces (``rppg.ColourTraces`` from ``rppg.read_traces``, or
    mean-colour traces ``[T, 3]`` from ``rppg.extract_rgb``) instead of frames, for callers
    that stream long clips. Same keys, without ``psnr_db`` / ``ssim``."""
    fps = check_fps(fps)
    traces_after = ColourTraces.of(traces_after)
    names = resolve_methods(methods, pixels=traces_after.moments is not None)
    duration = check_duration(len(traces_after), fps, min_duration_s=min_duration_s)
    band_hz = (band_bpm[0] / 60.0, band_bpm[1] / 60.0)

    pulses_after = {n: pulse_of(n, traces_after, fps, band_hz) for n in names}
    hr_after = {n: estimate_hr(p, fps, band_bpm) for n, p in pulses_after.items()}

    report: dict = {
        "fps": fps,
        "n_frames": len(traces_after),
        "duration_s": duration,
        "methods": names,
        "band_bpm": list(band_bpm),
        "hr_bpm": hr_after,
        "hr_bpm_median": _median_finite(hr_after.values()),
        "snr_db": {n: snr_db(pulses_after[n], fps, hr) if math.isfinite(hr) else None for n, hr in hr_after.items()},
    }

    if traces_before is not None:
        traces_before = ColourTraces.of(traces_before)
        if len(traces_before) != len(traces_after):
            raise InputError(f"the before/after traces differ in length ({len(traces_before)} vs {len(traces_after)}).")
        pulses_before = {n: pulse_of(n, traces_before, fps, band_hz) for n in names}
        hr_before = {n: estimate_hr(p, fps, band_bpm) for n, p in pulses_before.items()}
        report["hr_bpm_before"] = hr_before
        report["hr_bpm_median_before"] = _median_finite(hr_before.values())
        report["snr_db_before"] = {
            n: snr_db(pulses_before[n], fps, hr_before[n]) if math.isfinite(hr_before[n]) else None for n in names
        }
        report["snr_db_after"] = {
            n: snr_db(pulses_after[n], fps, hr_before[n]) if math.isfinite(hr_before[n]) else None for n in names
        }

    if target_hr_bpm is not None:
        target = float(target_hr_bpm)
        report["target_hr_bpm"] = target
        report["target_within_3bpm"] = {
            n: bool(math.isfinite(hr) and abs(hr - target) <= TARGET_TOLERANCE_BPM) for n, hr in hr_after.items()
        }
        report["snr_db_at_target"] = {n: snr_db(pulses_after[n], fps, target) for n in names}

    truth = true_hr_bpm if true_hr_bpm is not None else target_hr_bpm
    if truth is not None:
        report["true_hr_bpm"] = None if true_hr_bpm is None else float(true_hr_bpm)
        report["hr_error_against"] = "true_hr_bpm" if true_hr_bpm is not None else "target_hr_bpm"
        errors = {n: abs(hr - float(truth)) for n, hr in hr_after.items()}
        report["hr_error_bpm"] = errors
        finite = [e for e in errors.values() if math.isfinite(e)]
        report["hr_mae_bpm"] = float(np.mean(finite)) if finite else None

    return jsonable(report)


def verify_vitals(traces_after, fps, traces_before=None, rmssd_target_ms=None, resp_target_bpm=None,
                  method: str = "auto", band_bpm=DEFAULT_BAND_BPM) -> dict:
    """HRV and breathing read from colour traces (``rppg.vitals.vital_signs``), against targets.

    Args:
        traces_after: ``rppg.ColourTraces`` or an RGB trace ``[T,3]`` of the clip to check.
        fps: frame rate.
        traces_before: the same of the unedited clip, or None.
        rmssd_target_ms: the RMSSD the edit aimed at.
        resp_target_bpm: the breathing rate aimed at, breaths/min (a trajectory's mean).
        method: the reader whose pulse the beats are timed on (``"auto"``: the clip's cleanest,
            see ``rppg.vitals``; the report's ``after.method`` names it).

    Returns (JSON-able): ``after`` (and ``before``) {``hr_bpm``, ``hrv`` {rmssd_ms, sdnn_ms, pnn50,
    lf_hf, quality, ...}, ``breathing`` {rate_bpm, quality, estimates}}; with targets
    ``rmssd_error`` (relative) and ``rmssd_within_20pct``, ``resp_error_bpm`` and
    ``resp_within_1_5``; with ``before`` and no breathing target (a removal) ``breathing_removed``:
    no modulation above the noise peaks within ``RESP_TOLERANCE_BPM`` of the original's rate.
    """
    from .rppg.vitals import vital_signs  # noqa: PLC0415

    after = vital_signs(traces_after, fps, method=method, band_bpm=band_bpm).as_dict()
    report: dict = {"method": method, "after": after}
    before = None
    if traces_before is not None:
        before = vital_signs(traces_before, fps, method=method, band_bpm=band_bpm).as_dict()
        report["before"] = before
    rmssd, rate = after["hrv"]["rmssd_ms"], after["breathing"]["rate_bpm"]
    if rmssd_target_ms is not None:
        target = float(rmssd_target_ms)
        report["rmssd_target_ms"] = target
        error = None if rmssd is None or target <= 0 else (rmssd - target) / target
        report["rmssd_error"] = error
        report["rmssd_within_20pct"] = bool(error is not None and abs(error) <= RMSSD_TOLERANCE)
    if resp_target_bpm is not None:
        target = float(resp_target_bpm)
        report["resp_target_bpm"] = target
        report["resp_error_bpm"] = None if rate is None else rate - target
        report["resp_within_1_5"] = bool(rate is not None and abs(rate - target) <= RESP_TOLERANCE_BPM)
    elif before is not None and before["breathing"]["rate_bpm"] is not None:
        # Removed: no modulation that reads above the noise (rppg.breathing.MIN_QUALITY) still
        # peaks within RESP_TOLERANCE_BPM of the original's rate, fused or not.
        from .rppg.breathing import MIN_QUALITY  # noqa: PLC0415

        original = before["breathing"]["rate_bpm"]
        peaks = [e["rate_bpm"] for e in after["breathing"]["estimates"].values()
                 if e["rate_bpm"] is not None and e["quality"] >= MIN_QUALITY]
        report["breathing_removed"] = bool(all(abs(p - original) > RESP_TOLERANCE_BPM for p in peaks))
    return jsonable(report)


# --------------------------------------------------------------------------- plots


def plot_vitals(after, fps, before=None, title: str | None = None, figsize=(8.0, 5.5), dpi: int = 100):
    """Inter-beat intervals (top) and the fused breathing signal (bottom), before and after.

    Args:
        after: ``rppg.vitals.VitalSigns`` of the clip to show.
        fps: frame rate.
        before: the same of the unedited clip, or None.

    Returns:
        a ``matplotlib.figure.Figure`` (Agg canvas).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: PLC0415 (lazy)
    from matplotlib.figure import Figure  # noqa: PLC0415

    from .rppg.beats import clean_ibis  # noqa: PLC0415

    fig = Figure(figsize=figsize, dpi=dpi)
    FigureCanvasAgg(fig)
    ax_ibi, ax_breath = fig.subplots(2, 1)
    for label, vitals, color in (("before", before, "0.55"), ("after", after, "tab:red")):
        if vitals is None:
            continue
        ibi, ok = clean_ibis(vitals.beats.times_s)
        rmssd = vitals.hrv.get("rmssd_ms")
        ax_ibi.plot(vitals.beats.times_s[1:][ok], ibi[ok], ".-", color=color, lw=1.0, ms=4,
                    label=f"{label}: RMSSD {rmssd:.0f} ms" if rmssd is not None else f"{label}: RMSSD -")
        breathing = vitals.breathing
        if len(breathing.signal):
            rate = breathing.rate_bpm
            ax_breath.plot(breathing.times_s, breathing.signal, color=color, lw=1.2,
                           label=f"{label}: {rate:.1f} breaths/min ({breathing.quality})" if rate is not None
                           else f"{label}: no breathing read")
    ax_ibi.set(xlabel="time (s)", ylabel="inter-beat interval (ms)", title=title or "beats and breathing")
    ax_breath.set(xlabel="time (s)", ylabel="breathing (fused, z-score)")
    for ax in (ax_ibi, ax_breath):
        ax.legend(loc="upper right", fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def _as_pulse(data, fps: float, mask, method: str, band_bpm) -> np.ndarray:
    """Frames ``[T,H,W,3]``, ``ColourTraces`` or an RGB trace ``[T,3]`` -> pulse via ``method``;
    a pulse ``[T]`` passes."""
    if isinstance(data, ColourTraces):
        traces = data
    else:
        x = np.asarray(data)
        if x.ndim == 1:
            return x.astype(np.float64)
        traces = read_traces(x, mask, [method])
    return pulse_of(method, traces, fps, (band_bpm[0] / 60.0, band_bpm[1] / 60.0))


def plot_pulse(
    after,
    fps,
    before=None,
    mask=None,
    method: str = "pos",
    target_hr_bpm=None,
    band_bpm=DEFAULT_BAND_BPM,
    title: str | None = None,
    max_bpm: float = 240.0,
    figsize=(8.0, 5.5),
    dpi: int = 100,
):
    """Pulse waveforms (top) and spectra (bottom, 0-4 Hz on a bpm axis), before and after.

    Args:
        after: the clip to show: frames ``[T,H,W,3]``, an RGB trace ``[T,3]`` or a pulse ``[T]``.
        fps: frame rate.
        before: the same for the unedited clip, or None.
        mask: skin weights for frame inputs.
        method: estimator that turns frames/traces into pulses (POS by default).
        target_hr_bpm: drawn as a dashed vertical line on the spectrum.
        band_bpm: HR search band (shaded; the marked peak is searched inside it).

    Returns:
        a ``matplotlib.figure.Figure`` (Agg canvas, no pyplot global state).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: PLC0415 (lazy)
    from matplotlib.figure import Figure  # noqa: PLC0415

    fps = check_fps(fps)
    method = resolve_methods(method)[0]
    series = [("before", before, "0.55"), ("after", after, "tab:red")]
    series = [(label, _as_pulse(d, fps, mask, method, band_bpm), color) for label, d, color in series if d is not None]

    fig = Figure(figsize=figsize, dpi=dpi)
    FigureCanvasAgg(fig)
    ax_wave, ax_spec = fig.subplots(2, 1)
    for label, pulse, color in series:
        t = np.arange(len(pulse)) / fps
        ax_wave.plot(t, pulse / max(pulse.std(), 1e-12), color=color, lw=1.0, label=label)
        freqs, power = power_spectrum(pulse, fps, band_bpm=(0.0, max_bpm))
        power = power / max(power.max(), 1e-300)
        ax_spec.plot(freqs, power, color=color, lw=1.2, label=label)
        if np.any(pulse):
            peak = estimate_hr(pulse, fps, band_bpm)
            height = float(np.interp(peak, freqs, power))
            ax_spec.plot([peak], [height], "o", color=color)
            ax_spec.annotate(f"{peak:.1f} bpm", (peak, height), textcoords="offset points", xytext=(5, 4),
                             color=color, fontsize=9)
    if target_hr_bpm is not None:
        ax_spec.axvline(float(target_hr_bpm), color="tab:blue", ls="--", lw=1.2, label=f"target {float(target_hr_bpm):.0f} bpm")
    ax_spec.axvspan(band_bpm[0], band_bpm[1], color="0.93", zorder=0)
    ax_wave.set(xlabel="time (s)", ylabel="pulse (z-score)", title=title or f"{method.upper()} pulse")
    ax_spec.set(xlabel="frequency (bpm)", ylabel="power (normalised)", xlim=(0.0, max_bpm), ylim=(0.0, 1.15))
    for ax in (ax_wave, ax_spec):
        ax.legend(loc="upper right", fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def figure_to_image(fig) -> np.ndarray:
    """Render a Figure to ``[H, W, 3]`` float32 RGB in 0..1 (ComfyUI IMAGE layout, without the batch axis)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: PLC0415 (lazy)

    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    canvas.draw()
    rgba = np.asarray(canvas.buffer_rgba())
    return rgba[..., :3].astype(np.float32) / 255.0


def save_figure(fig, path, dpi: int | None = None, overwrite: bool = False) -> str:
    """Write ``fig`` to ``path`` (format from the extension, PNG when there is none) atomically:
    a temp file in the same folder is renamed into place, so a failure leaves nothing behind."""
    from .atomic import atomic_path  # noqa: PLC0415

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out, overwrite=overwrite) as tmp:
        fig.savefig(tmp, format=(out.suffix or ".png").lstrip(".").lower(), dpi=dpi)
    return str(out)
