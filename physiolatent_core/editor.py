"""Training-free pulse editor: set, remove or replace the heart-rate signal of a face video.

The blood-volume pulse changes skin colour multiplicatively, along a nearly fixed
colour direction, with a spatial amplitude map (forehead and cheeks strongest) and one
waveform shared by the whole face. The editor models exactly that:

1. **Pool** skin colour over a coarse grid that follows the face box (``grid`` cells),
   weighted by the soft skin mask: ``colours [T, K, 3]``.
2. **Normalise** each cell by its slow temporal mean, so illumination drift and
   motion-induced brightness changes (which are slow or shared by all channels) stay
   out of the pulse estimate: ``norm = colours / lowpass(colours) - 1``.
3. **Find the subject's own pulse**: POS on the whole-face colour (pooled as estimators
   pool it: pixels averaged, then normalised) gives a waveform; its HR trajectory gives a
   phase ``phi(t)``; the face colour is demodulated at ``phi`` and its harmonics (a
   tracking notch that follows heart-rate variability) and each cell gets a slowly varying
   share of that face pulse, scaled so that the shares pooled again give exactly the face
   pulse: the removal then adds nothing, in any colour direction, to what estimators see.
4. **Build the correction** per cell and channel: minus the own pulse, plus a synthetic
   target pulse (realistic waveform, HRV, respiration; see ``pulse.py``) that reuses the
   measured spatial amplitude map and colour direction. Removal injects, instead of a
   target, either a decoy pulse or pulse-band "chaff" with a notch at the true HR.
5. **Apply** the correction as a smooth multiplicative gain field (cubic upsampling of
   the grid to the face box), only inside the mask: ``out = frame * (1 + mask * delta)``.

Strength depends on where the video goes next (``robust_to``): a lossless file keeps a
0.3 % edit, while H.264 at crf 23 (what ComfyUI's SaveVideo writes) erases sub-1 %
temporal changes, so the default for ``h264`` is stronger. H.264 also keeps less of the
chroma than of the luminance of a small change, which turns the saved pulse away from
the blood-volume direction; for ``h264`` the editor measures that on a sample of the clip
(:mod:`codec`) and pre-compensates the injected pulse per colour channel. Where the
clip's own colour changes outside the pulse (facial motion, flicker; and, for readers
that average a whole face box, background and hair) would still outvote the injected
pulse, the amplitude is raised in steps, as far as the estimators need (predicted from
the pooled colours before anything is applied). Measured in
``benchmarks/quality.py`` and recorded in ``docs/BENCHMARKS.md``.

For long videos the editor streams: ``observe`` every chunk (pass 1), ``plan`` once,
then ``apply`` every chunk (pass 2), as ``editors.ChunkEditor``. Memory is ``O(T * K)``
besides the chunk itself.

This module is longer than the others because it is one algorithm: the plan's steps
(own pulse, correction, strength, fidelity floor) share one state and are tuned
together; its small signal helpers sit at the bottom.
"""

from __future__ import annotations

import functools
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import cv2
import numpy as np

from .codec import cap_box, colour_response, sample_box
from .errors import InputError
from .pulse import HRTarget, check_rmssd, hr_curve, parse_hr_target, parse_resp_target, synth_pulse
from .rppg import ESTIMATORS
from .rppg.hr import MIN_DURATION_S, check_duration, estimate_hr, hr_over_time
from .rppg.traces import fill_gaps
from .video.quantise import DitherState, add_in_whole_levels, quantize_to_uint8

# Blood-volume pulse direction in normalised RGB (de Haan & van Leest 2014), scaled so
# the green component is 1: the colour change per unit green change.
BLOOD_VOLUME_DIRECTION = np.array([0.33, 0.77, 0.53]) / 0.77

# RMS of the injected pulse, as a fraction of the green value, per output path: natural
# pulses are ~0.1-0.4 % RMS, and crf 23 erases smaller temporal changes (docs/ARCHITECTURE.md, "Edit strength").
AMPLITUDE_FOR = {"lossless": 0.0035, "h264": 0.012}
# Where the clip's own non-pulse colour changes (facial motion of generated talking heads,
# flicker) would still outvote the injected pulse, the editor raises the amplitude in
# steps of STRENGTH_STEP up to this (the lossless ceiling is the H.264 default).
AMPLITUDE_MAX_FOR = {"lossless": 0.012, "h264": 0.018}
STRENGTH_STEP = 1.5
# Lossless outputs promise fidelity, so their predicted PSNR over whole frames is kept at least
# this; H.264 outputs have none, as the codec, not fidelity, is their limit (docs/ARCHITECTURE.md,
# "A fidelity floor"; docs/BENCHMARKS.md, run V).
MIN_PSNR_DB_FOR = {"lossless": 52.0, "h264": None}
# Under the floor, ways to make the correction, tried in this order until one fits:
# (evenness, fraction of the own pulse removed). Evenness blends each cell's share of the
# face's own pulse, and the injected pulse's amplitude map, toward the same share
# everywhere: pooled over the face both stay whole, and a change costs the least fidelity
# spread evenly (on talking heads the uneven shares and map follow facial motion).
FIDELITY_STEPS = [(0.0, 1.0), (0.5, 1.0), (1.0, 1.0)] + [(1.0, float(f)) for f in np.linspace(0.9, 0.0, 10)]
# A predicted reading counts as right within this many bpm, inside the 3 bpm the benchmark accepts
# (docs/BENCHMARKS.md): of a constant target over the whole clip, of a changing one over 6 s windows.
PREDICT_TOLERANCE_BPM = {"constant": 1.5, "changing": 2.0}
MAX_PREDICT_WINDOWS = 60  # a changing target is checked on at most this many windows
# The strength check reads the edited face two ways: through the skin mask, and as a reader
# that only knows a face box averages it: a square this many times the mask's box, about
# rPPG-Toolbox's 1.5x detector box (docs/BENCHMARKS.md, run M).
READER_BOX_SCALE = 1.25

# Half-width of the band kept around the own HR and its harmonic: wide enough for the
# sidebands of breathing (0.1-0.4 Hz) and of heart-rate variability.
OWN_BANDWIDTH_HZ = 0.45
# Removal also takes out the face colour's slow drift at breathing rates (4-36 breaths/min; the
# pulse band starts at 40 bpm), measured around its mean over SLOW_MEAN_S (rppg.vitals reads
# breathing the same way).
BREATHING_BAND_HZ = (0.06, 0.6)
SLOW_MEAN_S = 25.0
# Half-width of the face colour band removed around each rate an estimator reads (remove_readings):
# 0.15 Hz = 9 bpm, so a reading that survives lands more than 5 bpm away.
READING_NOTCH_HZ = 0.15
_MAX_DELTA = 0.06  # never change a skin pixel by more than 6 %
OWN_SHARE_MAX = 2.0  # lossless outputs: a cell's own pulse at most 2x the face's (docs/BENCHMARKS.md, run U)
# Truncation to 8 bit (core SaveVideo) turns a change under a grey level into a brightness
# flicker, not a colour change, so for a truncated output whose peak green change (the largest)
# is below this many levels the edit is made in whole levels (docs/ARCHITECTURE.md, "Outputs
# that will be truncated"; docs/BENCHMARKS.md, runs T and U).
WHOLE_LEVEL_BELOW = 1.0

# The injected pulse's HRV when no RMSSD is asked for (pulse.synth_pulse's hrv_ms: mild), and the
# depth of its breathing modulation when a breathing rate is (amplitude +-20 %, baseline half that:
# within the 10-30 % respiratory amplitude variation of resting PPG, and readable after the edit).
TARGET_HRV_MS = 15.0
RESP_DEPTH = 0.2

# Seconds of the clip's start (at least) that are kept (face region, uint8) to measure the codec on.
CODEC_SAMPLE_S = 3.2
SAMPLE_MAX_PIXELS = 1920 * 1088  # of the codec sample's box (1080p faces keep theirs whole)


@dataclass
class EditResult:
    """Output of :func:`edit_pulse` / :func:`remove_pulse`.

    frames: float32 [T,H,W,3] edited clip; face_mask: [T,H,W] mask used;
    info: JSON-able facts (own HR, target, amplitude, colour direction, ...).
    """

    frames: np.ndarray
    face_mask: np.ndarray
    info: dict = field(default_factory=dict)


@dataclass
class _Plan:
    delta: np.ndarray  # [T, gh, gw, 3] multiplicative correction per cell
    info: dict


class PulseEditor:
    """Streaming editor (``editors.ChunkEditor``). ``observe`` all chunks, ``plan()``,
    then ``apply`` all chunks, of any length.

    Args:
        fps: frame rate of the clip.
        mode: ``"edit"`` (inject ``target``) or ``"remove"``.
        target: HR target (anything :func:`pulse.parse_hr_target` accepts), edit mode.
        decoy_hr_bpm: remove mode: inject a pulse at this HR instead of chaff.
        robust_to: ``"lossless"`` or ``"h264"``: sets the injected amplitude
            (``AMPLITUDE_FOR``; raised up to ``AMPLITUDE_MAX_FOR`` where the edited face
            colour is predicted to be misread, see ``_strength``; ``info["injected_rms"]``
            says what was used).
        amplitude: fixed injected RMS amplitude (fraction of green), never raised.
        grid: (rows, cols) of the pooling grid over the face box.
        band_bpm: physiological HR band searched for the subject's own pulse.
        seed: seeds the target's heart-rate variability and the chaff.
        min_psnr_db: fidelity floor (``MIN_PSNR_DB_FOR`` the path's default when None; 0
            switches it off): strength raises stop, and the correction is spread evenly
            and (edits only) less of the own pulse removed, where the predicted PSNR of the
            8-bit output would fall below it (``info["predicted_psnr_db"]``;
            ``info["evenness"]`` and ``info["own_removed_fraction"]``, see
            ``FIDELITY_STEPS``). The base amplitude is kept even where it alone exceeds the
            floor (a close-up face).
        codec_crf, codec_quantize, codec_preset: the H.264 output path that
            ``robust_to="h264"`` is measured on: libx264 crf, the 8-bit quantiser before
            it (``"dither"`` as our writer, ``"truncate"`` as ComfyUI's core SaveVideo)
            and the x264 preset. With ``"truncate"``, a change whose green peak is under
            a grey level (``WHOLE_LEVEL_BELOW``; dark skin, dim video) is made in whole 8-bit
            levels, dithered over time (``video.add_in_whole_levels``), so that truncation
            keeps it; ``apply`` then takes the chunks in order (``info["whole_levels"]``).
        hrv_rmssd_ms: RMSSD (ms) of the injected pulse's beats (target or decoy): beat-by-beat
            HRV with respiratory sinus arrhythmia (``pulse.synth_pulse``); default: the
            fixed mild HRV (``TARGET_HRV_MS``).
        resp_rate: breathing rate of the injected pulse, breaths/min, a number or a
            trajectory (``pulse.parse_resp_target``): its beat rate, amplitude (by
            ``RESP_DEPTH``) and baseline follow it; default 15/min, shallow.
    """

    chunk_frames: int | None = None  # apply takes chunks of any length (editors.ChunkEditor)

    def __init__(
        self,
        fps: float,
        mode: str = "edit",
        target: HRTarget | float | str | None = None,
        decoy_hr_bpm: float | None = None,
        robust_to: str = "h264",
        amplitude: float | None = None,
        grid: tuple[int, int] = (6, 6),
        band_bpm: tuple[float, float] = (40.0, 180.0),
        seed: int = 0,
        min_psnr_db: float | None = None,
        codec_crf: int = 23,
        codec_quantize: str = "dither",
        codec_preset: str = "medium",
        hrv_rmssd_ms: float | None = None,
        resp_rate=None,
    ):
        if not fps or fps <= 0:
            raise InputError(f"fps must be positive, got {fps!r}: pass the video's frame rate.")
        if mode not in ("edit", "remove"):
            raise InputError(f"mode must be 'edit' or 'remove', got {mode!r}.")
        if robust_to not in AMPLITUDE_FOR:
            raise InputError(f"robust_to must be one of {sorted(AMPLITUDE_FOR)}, got {robust_to!r}.")
        if mode == "edit" and target is None:
            raise InputError("edit mode needs a target heart rate (e.g. 75 or '70:120').")
        self.fps = float(fps)
        self.mode = mode
        self.target = parse_hr_target(target) if target is not None else None
        self.decoy = parse_hr_target(decoy_hr_bpm) if decoy_hr_bpm is not None else None
        self.hrv_rmssd_ms = check_rmssd(hrv_rmssd_ms) if hrv_rmssd_ms is not None else None
        self.resp_rate = parse_resp_target(resp_rate) if resp_rate is not None else None
        if mode == "remove" and self.decoy is None and (self.hrv_rmssd_ms is not None or self.resp_rate is not None):
            raise InputError("HRV and breathing targets shape an injected pulse: give a decoy HR to remove with, "
                             "or edit to a target HR.")
        self.robust_to = robust_to
        self.amplitude = float(amplitude) if amplitude is not None else AMPLITUDE_FOR[robust_to]
        self.max_amplitude = self.amplitude if amplitude is not None else AMPLITUDE_MAX_FOR[robust_to]
        if not 0 < self.amplitude <= 0.03:
            raise InputError(f"amplitude {self.amplitude} is outside (0, 0.03]: use e.g. 0.004-0.012.")
        self.grid = (int(grid[0]), int(grid[1]))
        self.band_bpm = band_bpm
        self.seed = seed
        self.min_psnr_db = MIN_PSNR_DB_FOR[robust_to] if min_psnr_db is None else float(min_psnr_db) or None
        if codec_quantize not in ("dither", "truncate"):
            raise InputError(f"codec_quantize must be 'dither' or 'truncate', got {codec_quantize!r}.")
        # H.264 keeps a colour change differently at different rates (its frame types and
        # dead zone act over time), so the codec is measured at the rate injected: the
        # target's mean HR, or the middle of the band for chaff.
        injected = self.target if mode == "edit" else self.decoy
        test_hz = (injected.mean_bpm if injected is not None else float(np.mean(band_bpm))) / 60.0
        self.codec = dict(crf=int(codec_crf), quantize=codec_quantize, preset=codec_preset, test_hz=test_hz)
        # Six cycles of the test rate, at least CODEC_SAMPLE_S.
        self._sample_frames = int(round(max(CODEC_SAMPLE_S, 6.0 / test_hz) * self.fps))
        # The first seconds of the face region, uint8 (a 1080p face is ~1 GB as float32):
        self._sample: np.ndarray | None = None  # [n, h, w, 3] RGB
        self._sample_mask: np.ndarray | None = None  # [n, h, w], mask * 255
        self._sample_len = 0
        self._gain: np.ndarray | None = None  # measured once, by the first plan()
        self._gain_future: Future | None = None  # the codec measurement, once the sample is complete
        self._sample_box: tuple[int, int, int, int] | None = None
        self._colours: list[np.ndarray] = []  # per chunk [t, K, 3]
        self._weights: list[np.ndarray] = []  # per chunk [t, K]
        self._reach: list[np.ndarray] = []  # per chunk [t, K]: mean of mask * apply weight
        self._boxes: list[np.ndarray] = []  # per chunk [t, 4] int
        self._box_mean: list[np.ndarray] = []  # per chunk [t, 3]: mean colour of the face box reader
        self._box_share: list[np.ndarray] = []  # per chunk [t, K]: pixels a cell's correction reaches / box pixels
        self._applied_px: list[np.ndarray] = []  # per chunk [t, K]: sum of the apply weight over a cell's pixels
        self._frame_pixels = 0
        self._plan: _Plan | None = None
        # An output truncated to 8 bit gets a sub-level change in whole levels
        # (video.add_in_whole_levels), dithered over time: the rounding residual per 8x8
        # tile, carried from chunk to chunk. Decided in plan() from the change's size.
        self._whole_levels = False
        self._residual: np.ndarray | None = None  # [ceil(H/8), ceil(W/8), 3] levels, per tile
        self._next_frame = 0  # whole-level changes need the chunks in order
        # Remove mode: also take the face colour out around every rate an estimator reads
        # (``READING_NOTCH_HZ``), not only around the own HR (removal.PrivacyRemover sets it).
        self.remove_readings = False
        self._read_rates: list[float] = []
        # A stage applied before this editor (removal.PrivacyRemover's aligned band-stop): plan()
        # sees the pooled colours as that stage leaves them, so nothing is removed twice.
        self.upstream = None

    # ---------------------------------------------------------------- pass 1
    def observe(self, frames: np.ndarray, face_mask: np.ndarray) -> None:
        """Pool one chunk. frames [t,H,W,3] float 0..1, face_mask [t,H,W] 0..1."""
        _check_frames_mask(frames, face_mask)
        boxes = _mask_boxes(face_mask)
        gh, gw = self.grid
        colours = np.zeros((len(frames), gh * gw, 3), np.float64)
        weights = np.zeros((len(frames), gh * gw), np.float64)
        reach = np.zeros((len(frames), gh * gw), np.float64)
        box_mean = np.zeros((len(frames), 3), np.float64)
        box_share = np.zeros((len(frames), gh * gw), np.float64)
        applied_px = np.zeros((len(frames), gh * gw), np.float64)
        self._frame_pixels = frames.shape[1] * frames.shape[2]
        for i, (frame, mask, (x0, y0, x1, y1)) in enumerate(zip(frames, face_mask, boxes)):
            if x1 - x0 < gw or y1 - y0 < gh:
                continue  # no face in this frame: weights stay 0
            m = np.ascontiguousarray(mask[y0:y1, x0:x1], dtype=np.float32)
            fm = frame[y0:y1, x0:x1] * m[..., None]
            sum_fm = cv2.resize(fm, (gw, gh), interpolation=cv2.INTER_AREA)
            sum_m = cv2.resize(m, (gw, gh), interpolation=cv2.INTER_AREA)
            weights[i] = sum_m.reshape(-1)
            applied = _apply_weight(m)
            reach[i] = cv2.resize(m * applied, (gw, gh), interpolation=cv2.INTER_AREA).reshape(-1)
            colours[i] = (sum_fm / np.maximum(sum_m, 1e-6)[..., None]).reshape(-1, 3)
            # The face box reader (see _reader_box): its mean colour, and the fraction of
            # its pixels each cell's correction reaches.
            rx0, ry0, rx1, ry1 = _reader_box((x0, y0, x1, y1), frame.shape)
            area = (rx1 - rx0) * (ry1 - ry0)
            box_mean[i] = np.asarray(cv2.sumElems(frame[ry0:ry1, rx0:rx1])[:3]) / area
            cell_area = (x1 - x0) * (y1 - y0) / (gh * gw)
            applied_px[i] = cv2.resize(applied, (gw, gh), interpolation=cv2.INTER_AREA).reshape(-1) * cell_area
            box_share[i] = applied_px[i] / area
        self._colours.append(colours)
        self._weights.append(weights)
        self._reach.append(reach)
        self._box_mean.append(box_mean)
        self._box_share.append(box_share)
        self._applied_px.append(applied_px)
        self._boxes.append(boxes)
        if self.robust_to == "h264":
            self._keep_sample(frames, face_mask)

    def _keep_sample(self, frames: np.ndarray, face_mask: np.ndarray) -> None:
        """Keep the first seconds of the face region (``_sample_frames``) to measure the codec on."""
        need = self._sample_frames - self._sample_len
        if need <= 0:
            return
        if self._sample_box is None:
            with_face = np.flatnonzero(face_mask.reshape(len(face_mask), -1).max(axis=1) > 0.05)
            if not len(with_face):
                return  # no face yet: start the sample where the face is
            frames, face_mask = frames[with_face[0]:], face_mask[with_face[0]:]
            # Around the first face (so any chunking gives the same sample), with a wide
            # margin: it must hold 3 s of head motion, and x264's decisions near the face
            # depend on its surroundings (docs/ARCHITECTURE.md, "The codec's sample").
            # At most a 1080p frame's pixels: a 4K face's box would be gigabytes of sample
            # (the codec works on 16x16 blocks, so the face's middle at full resolution
            # measures it as well).
            self._sample_box = x0, y0, x1, y1 = cap_box(sample_box(face_mask[:1], margin=0.75), SAMPLE_MAX_PIXELS)
            self._sample = np.empty((self._sample_frames, y1 - y0, x1 - x0, 3), np.uint8)
            self._sample_mask = np.empty((self._sample_frames, y1 - y0, x1 - x0), np.uint8)
        x0, y0, x1, y1 = self._sample_box
        crop, mask = frames[:need, y0:y1, x0:x1], face_mask[:need, y0:y1, x0:x1]
        at = slice(self._sample_len, self._sample_len + len(crop))
        self._sample[at] = crop if crop.dtype == np.uint8 else quantize_to_uint8(crop, "round")
        self._sample_mask[at] = quantize_to_uint8(mask, "round")
        self._sample_len += len(crop)
        if self._sample_len == self._sample_frames:
            # Complete: measure the codec in a worker thread while the caller observes the
            # rest of the clip (x264 releases the GIL); plan() waits for it.
            pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="codec-gain")
            self._gain_future = pool.submit(self._measure_codec)
            pool.shutdown(wait=False)  # the submitted measurement still runs to the end

    def _measure_codec(self) -> np.ndarray:
        n = self._sample_len
        gain = colour_response(self._sample[:n], self._sample_mask[:n], self.fps, BLOOD_VOLUME_DIRECTION,
                               amplitude=self.amplitude, **self.codec)
        self._sample = self._sample_mask = None  # not needed any more
        return gain

    def _codec_gain(self) -> np.ndarray:
        """Per-channel fraction [3] of a colour change that the output path keeps (1 = lossless)."""
        if self.robust_to != "h264":
            return np.ones(3)
        if self._gain is None:
            if self._gain_future is not None:  # started when the sample was complete
                self._gain = self._gain_future.result()
            elif self._sample is None:
                raise InputError("no face was found in any frame: nothing to measure the codec on.")
            else:  # the clip (with a face) is shorter than the sample: measure what there is
                self._gain = self._measure_codec()
        return self._gain

    # ---------------------------------------------------------------- plan
    def plan(self, track=None) -> dict:
        """Estimate the own pulse and build the per-cell correction. Returns info.

        ``track`` is accepted for the editor protocol (``editors.ChunkEditor``) and not
        needed: the face masks observed carry the face's position."""
        if not self._colours:
            raise InputError("no frames were observed: the clip is empty.")
        colours = np.concatenate(self._colours)  # [T, K, 3]
        if self.upstream is not None:  # what an earlier stage (removal.PrivacyRemover) leaves
            pre = self.upstream.pooled_correction(np.concatenate(self._boxes), self.grid)
            colours = colours * np.exp(-pre.reshape(len(colours), -1, 3))
        weights = np.concatenate(self._weights)  # [T, K]
        # The correction reaches only sum(m * w) / sum(m) of what a cell's pooled colour
        # measured (w: the apply weight, < 1 at soft mask edges); scale it back up.
        reach = weights.sum(axis=0) / np.maximum(np.concatenate(self._reach).sum(axis=0), 1e-9)
        n_frames = len(colours)
        check_duration(n_frames, self.fps, min_duration_s=MIN_DURATION_S)
        if (weights.sum(axis=1) > 0).mean() < 0.5:
            raise InputError("the face mask is empty in most frames: pass a mask that covers the face skin.")

        norm, valid = _normalise(colours, weights, self.fps)  # [T,K,3], [K]
        face_weights = weights.mean(axis=0) * valid
        # The face colour as estimators see it (pixels averaged, then normalised); the mean
        # of per-cell normalised colours would carry motion that the face average has not
        # (a cell's colour changes as the face slides through it, the face's does not).
        cell_weights = weights * valid  # [T, K]
        face_sum = np.einsum("tk,tkc->tc", cell_weights, colours)
        face_rgb = face_sum / np.maximum(cell_weights.sum(axis=1), 1e-12)[:, None]  # [T, 3]
        # pooling[t,k,c]: how much a relative change of cell k moves the face mean of channel c.
        pooling = cell_weights[..., None] * colours
        pooling /= np.maximum(pooling.sum(axis=1, keepdims=True), 1e-12)
        face_norm = _normalise(face_rgb[:, None, :], cell_weights.sum(axis=1, keepdims=True), self.fps)[0][:, 0]

        own_wave = ESTIMATORS["pos"](1.0 + face_norm, self.fps)
        own_hr_hz = _hr_track(own_wave, self.fps, self.band_bpm)
        phase = _refine_phase(own_wave, own_hr_hz, self.fps)

        # Own pulse: the whole-face waveform per channel (fundamental and two harmonics, with
        # the amplitude and rate modulation of breathing and HRV), times a slowly varying
        # per-cell gain. The face mean is far less noisy than any cell.
        face_own = np.zeros_like(face_norm)
        for harmonic in (1, 2, 3):
            envelope = _demodulate(face_norm, harmonic * phase, self.fps, cutoff_hz=OWN_BANDWIDTH_HZ)
            face_own += np.real(envelope * np.exp(1j * harmonic * phase)[:, None])
        cell_gain = _local_regression(norm, face_own[:, None, :], self.fps)  # [T,K,3]
        if self.robust_to == "lossless":
            # A cell's blood-volume pulse is in phase with the face's and at most a few times it;
            # larger or antiphase shares follow motion (talking, brows), whose removal costs
            # PSNR. H.264 outputs keep them, which reads better after the codec
            # (docs/ARCHITECTURE.md, "Motion in step with the pulse").
            np.clip(cell_gain, 0.0, OWN_SHARE_MAX, out=cell_gain)

        @functools.cache
        def own_spread(evenness: float) -> np.ndarray:
            """Own pulse per cell [T,K,3]: shares blended toward even by ``evenness``, then
            scaled so the removed pulse, pooled as estimators pool, is exactly face_own."""
            gain = cell_gain if evenness == 0 else (1.0 - evenness) * cell_gain + evenness
            pooled_gain = np.einsum("tkc,tkc->tc", pooling, gain)
            gain = gain / np.where(pooled_gain > 0.2, pooled_gain, 1.0)[:, None, :]
            return gain * face_own[:, None, :] * valid[None, :, None]

        own = own_spread(0.0)
        amp_g = np.sqrt(np.mean(own[..., 1] ** 2, axis=0))
        amp_map = _amplitude_map(amp_g, valid, face_weights)
        if self.mode == "remove":
            # Breathing shows in the pulse's rate and amplitude (removed with it: OWN_BANDWIDTH_HZ
            # holds those sidebands) and as a slow drift of the skin colour, which the 0.4 Hz
            # normalisation above never sees: take the face colour's breathing band out too, the
            # same relative change in every cell, so the face mean loses exactly it.
            beside_pulse = _breathing_band(face_rgb, cell_weights.sum(axis=1) > 0, self.fps)
            # Where the readers read the face at other rates than the own HR (a "pulse" that is
            # facial motion, or what an earlier stage left), the face colour's component around each
            # such rate goes too, so no reader keeps its reading (removal.PrivacyRemover asks for it).
            # Each component is taken from what the own pulse and the rates before it leave: the
            # own HR track passes near these rates (on liveportrait_d10 it wanders 62-82 bpm), and
            # removing a rate twice puts it back with the opposite sign, a peak where the reader
            # read (docs/BENCHMARKS.md, issue 21, history).
            residual = face_norm - face_own
            reading_phases = self._reading_phases(face_norm, own_hr_hz) if self.remove_readings else []
            for reading_phase in reading_phases:
                near = _demodulate(residual, reading_phase, self.fps, cutoff_hz=READING_NOTCH_HZ)
                component = np.real(near * np.exp(1j * reading_phase)[:, None])
                beside_pulse = beside_pulse + component
                residual = residual - component
            beside_pulse = beside_pulse[:, None, :] * valid[None, :, None]
            pulse_spread = own_spread
            own_spread = functools.cache(lambda evenness: pulse_spread(evenness) + beside_pulse)

        rng = np.random.default_rng(self.seed)
        if self.mode == "edit":
            injected = _target_wave(n_frames, self.fps, self.target, self.seed, self.band_bpm, self.hrv_rmssd_ms,
                                    self.resp_rate)
            injected_hr = hr_curve(self.target, n_frames, self.fps)
        elif self.decoy is not None:
            injected = _target_wave(n_frames, self.fps, self.decoy, self.seed, self.band_bpm, self.hrv_rmssd_ms,
                                    self.resp_rate)
            injected_hr = hr_curve(self.decoy, n_frames, self.fps)
            _check_decoy(injected_hr, own_hr_hz * 60.0)
        else:
            # Notched at the own HR, and at the HR the estimators agree on where that differs
            # (a clip whose "pulse" is motion): chaff must not put a peak where readers
            # would report the subject's HR.
            readings = [estimate_hr(estimator(1.0 + face_norm, self.fps), self.fps, band_bpm=self.band_bpm)
                        for estimator in ESTIMATORS.values()]
            consensus_hz = float(np.nanmedian(readings)) / 60.0
            phases = [phase, *reading_phases]
            if np.isfinite(consensus_hz) and abs(consensus_hz - np.median(own_hr_hz)) > 5.0 / 60.0:
                phases.append(2.0 * np.pi * consensus_hz * np.arange(n_frames) / self.fps)
            injected = _chaff(n_frames, self.fps, phases, self.band_bpm, rng)  # [T, 3]
            injected_hr = None
        # The colour direction is the physiological one that every model-based estimator
        # assumes (PBV's signature, CHROM's and POS's projections), not a per-clip measurement,
        # which the skin and non-skin mixed in each cell skews (docs/ARCHITECTURE.md, "Edit strength").
        # Blood volume up -> skin darker: negative sign on the colour change.
        # The injected pulse is divided by what the output path keeps of each channel, so the
        # saved file holds it along the blood-volume direction (the green amplitude stays
        # as chosen; a lossy path keeps ``codec_gain[1]`` of it). The own pulse is not: the
        # codec acts on the whole signal, the original's own pulse included, so removing
        # exactly what was measured leaves none of it (docs/ARCHITECTURE.md, codec.py).
        codec_gain = self._codec_gain()
        colour = BLOOD_VOLUME_DIRECTION * codec_gain[1] / codec_gain
        if injected.ndim == 1:
            injected = injected[:, None] * colour[None, :]
        else:  # chaff: already spread over colours
            injected = injected * (codec_gain[1] / codec_gain)[None, :]

        @functools.cache
        def unit_for(evenness: float) -> np.ndarray:
            """Injected change per unit amplitude [T,K,3]; the amplitude map blended toward
            even by ``evenness`` (the same share everywhere costs the least fidelity)."""
            cell_map = amp_map if evenness == 0 else np.where(valid, (1.0 - evenness) * amp_map + evenness, 0.0)
            unit = -injected[:, None, :] * cell_map[None, :, None]
            # Pooled as estimators pool, the amplitude map weighs each channel a little
            # differently (cells differ in colour); rescale so the face mean moves along `colour`.
            pooled_map = np.einsum("tkc,k->tc", pooling, cell_map)
            return unit * (pooled_map[:, 1:2] / np.maximum(pooled_map, 1e-6))[:, None, :]

        reach = np.minimum(reach, 3.0)[None, :, None]
        box_mean = fill_gaps(np.concatenate(self._box_mean), weights.sum(axis=1) > 0)  # [T, 3]
        box_reader = box_mean, np.concatenate(self._box_share)
        applied_px = np.concatenate(self._applied_px)

        def fidelity(change):  # PSNR of the 8-bit output before any codec
            return _predicted_psnr_db(change, colours, applied_px, self._frame_pixels)

        amplitude, (evenness, removed), misread = self._strength(colours, weights, unit_for, own_spread, reach,
                                                                 codec_gain, injected_hr, box_reader, fidelity)
        delta = np.clip((amplitude * unit_for(evenness) - removed * own_spread(evenness)) * reach,
                        -_MAX_DELTA, _MAX_DELTA)
        breathing_removed = 1.0 if self.mode == "remove" else None
        if self.mode == "remove" and self.min_psnr_db is not None and fidelity(delta) < self.min_psnr_db:
            # The floor holds before the removal beside the pulse (breathing band, other readings)
            # does: on short or moving clips the breathing band is mostly motion and drift
            # (sadtalker, 8 s: 49.7 dB in full).
            for breathing_removed in (0.75, 0.5, 0.25, 0.0):
                delta = np.clip((amplitude * unit_for(evenness) - removed * pulse_spread(evenness)
                                 - breathing_removed * beside_pulse) * reach, -_MAX_DELTA, _MAX_DELTA)
                if fidelity(delta) >= self.min_psnr_db:
                    break
        green_levels = _peak_green_levels(delta, colours, cell_weights)
        self._whole_levels = self.codec["quantize"] == "truncate" and green_levels < WHOLE_LEVEL_BELOW

        gh, gw = self.grid
        self._plan = _Plan(delta=delta.reshape(n_frames, gh, gw, 3).astype(np.float32), info={})
        info = {
            "mode": self.mode,
            "fps": self.fps,
            "n_frames": n_frames,
            "own_hr_bpm": float(np.median(own_hr_hz) * 60.0),
            "own_pulse_rms": float(np.sqrt(np.mean(own[..., 1][:, valid] ** 2))) if valid.any() else 0.0,
            "injected_rms": amplitude,
            "injected_rms_base": self.amplitude,
            "predicted_misreads": misread,
            "own_removed_fraction": removed,
            "breathing_removed_fraction": breathing_removed,
            "readings_removed_bpm": self._read_rates if self.mode == "remove" else None,
            "evenness": evenness,
            "predicted_psnr_db": fidelity(delta),
            "min_psnr_db": self.min_psnr_db,
            "robust_to": self.robust_to,
            "codec_gain_rgb": [float(g) for g in codec_gain],
            "codec": dict(self.codec) if self.robust_to == "h264" else None,
            "change_green_levels": green_levels,
            "whole_levels": self._whole_levels,
            "colour_direction_rgb": [float(c) for c in BLOOD_VOLUME_DIRECTION],
            "grid": list(self.grid),
            "valid_cells": int(valid.sum()),
            "seed": self.seed,
        }
        if injected_hr is not None:
            info["injected_hr_bpm_mean"] = float(np.mean(injected_hr))
            info["injected_hr_bpm_range"] = [float(np.min(injected_hr)), float(np.max(injected_hr))]
            info["injected_rmssd_ms"] = self.hrv_rmssd_ms
            info["injected_resp_rate"] = None if self.resp_rate is None else str(self.resp_rate)
        self._plan.info = info
        return info

    def _reading_phases(self, face_norm: np.ndarray, own_hr_hz: np.ndarray) -> list[np.ndarray]:
        """Phases [T] of the constant rates the estimators read on ``face_norm`` [T,3], one per
        rate at least 5 bpm from the own HR (and 3 bpm from each other)."""
        rates: list[float] = []
        for estimator in ESTIMATORS.values():
            bpm = estimate_hr(estimator(1.0 + face_norm, self.fps), self.fps, band_bpm=self.band_bpm)
            if np.isfinite(bpm) and abs(bpm - 60.0 * np.median(own_hr_hz)) > 5.0 and all(
                    abs(bpm - r) > 3.0 for r in rates):
                rates.append(float(bpm))
        self._read_rates = rates
        t = np.arange(len(face_norm)) / self.fps
        return [2.0 * np.pi * bpm / 60.0 * t for bpm in rates]

    def _strength(self, colours, weights, unit_for, own_spread, reach, codec_gain, injected_hr, box_reader, fidelity):
        """The injected amplitude, the fidelity step (evenness, fraction of the own pulse
        removed; see ``FIDELITY_STEPS``) and the estimators predicted to misread (None: not
        checked).

        The mean skin colour that estimators see is the weight-averaged cell colour, so the
        edited one can be predicted from the pooled colours: ``colours * (1 + change)``.
        A lossy path keeps ``codec_gain`` (per channel) of the injected pulse; the own pulse
        is removed before the codec sees it, so its removal is not scaled. Starting from
        ``self.amplitude``, the amplitude grows by ``STRENGTH_STEP`` up to
        ``max_amplitude`` while any estimator of ``ESTIMATORS`` misreads the injected HR;
        the smallest amplitude with the fewest misreads wins (more strength that fixes
        nothing would only cost fidelity). The same estimators also read the face box
        (``box_reader``: its mean colour [T,3] and each cell's share of its pixels [T,K]),
        whose hair, background and unmasked skin keep the clip's own colour changes.
        Under a fidelity floor (``min_psnr_db``) each amplitude takes the first of
        ``FIDELITY_STEPS`` (remove mode: of those that remove all of it) whose change keeps
        the predicted PSNR (``fidelity(change)``); where the floor cuts a step short, the
        largest amplitude below it that fits is tried once, and raising stops there.
        ``unit_for(evenness)`` and ``own_spread(evenness)`` give the injected change per unit
        amplitude and the own pulse, [T,K,3] each.
        """
        # Removal is what remove mode is for: it may spread evenly, never remove less.
        options = FIDELITY_STEPS if self.mode == "edit" else [r for r in FIDELITY_STEPS if r[1] == 1.0]
        cheapest_whole = (1.0, 1.0)  # where nothing fits: all of it, spread evenly

        def planned(amplitude, step):
            evenness, fraction = step
            return np.clip((amplitude * unit_for(evenness) - fraction * own_spread(evenness)) * reach,
                           -_MAX_DELTA, _MAX_DELTA)

        def best_step(amplitude):
            if self.min_psnr_db is None:
                return FIDELITY_STEPS[0]
            return next((r for r in options if fidelity(planned(amplitude, r)) >= self.min_psnr_db), None)

        if injected_hr is None:  # chaff: nothing to read, the base amplitude
            return self.amplitude, best_step(self.amplitude) or cheapest_whole, None
        face_weights = weights / np.maximum(weights.sum(axis=1, keepdims=True), 1e-12)  # [T,K]
        box_mean, box_share = box_reader
        best = None
        refined = False
        amplitude = self.amplitude
        while True:
            step = best_step(amplitude)
            if step is None and best is not None and not refined:
                # The floor cuts the step short: the largest amplitude below it that fits.
                low, high = best[0], amplitude
                for _ in range(6):
                    middle = 0.5 * (low + high)
                    low, high = (middle, high) if best_step(middle) is not None else (low, middle)
                refined = True
                if low > best[0] * 1.05:
                    amplitude, step = low, best_step(low)
            if step is None:  # over the floor even with the own pulse left as it is
                if best is not None:
                    return best
                step = cheapest_whole  # the base amplitude is kept (info["predicted_psnr_db"] tells)
            change = planned(amplitude, step) / reach
            change += (codec_gain - 1.0) * amplitude * unit_for(step[0])  # the path keeps codec_gain of it
            colour_change = colours * change  # [T, K, 3]
            rgb = np.einsum("tk,tkc->tc", face_weights, colours + colour_change)
            box_rgb = box_mean + np.einsum("tk,tkc->tc", box_share, colour_change * reach)
            misread = _misreads(rgb, self.fps, injected_hr)
            misread += [f"{name} (face box)" for name in _misreads(box_rgb, self.fps, injected_hr)]
            if best is None or len(misread) < len(best[2]):
                best = (amplitude, step, misread)
            if not misread or amplitude >= self.max_amplitude * (1 - 1e-9):
                return best
            amplitude = min(amplitude * STRENGTH_STEP, self.max_amplitude)

    # ---------------------------------------------------------------- pass 2
    def apply(self, frames: np.ndarray, face_mask: np.ndarray, start: int, inplace: bool = False) -> np.ndarray:
        """Edit one chunk (frames ``start .. start+t`` of the clip).

        Returns a new array, or ``frames`` itself edited when ``inplace`` (float32 frames
        only): streaming callers own their decoded chunks, and a fresh copy of every chunk
        costs more than the edit.
        """
        if self._plan is None:
            raise RuntimeError("call plan() after observing every chunk, before apply().")
        _check_frames_mask(frames, face_mask)
        boxes = np.concatenate(self._boxes)[start : start + len(frames)]
        delta = self._plan.delta[start : start + len(frames)]
        if len(boxes) != len(frames):
            raise InputError(
                f"apply() got frames {start}..{start + len(frames)} but only {len(np.concatenate(self._boxes))} "
                "were observed: observe and apply the same clip."
            )
        if inplace and frames.dtype != np.float32:
            raise InputError("inplace editing needs float32 frames.")
        if self._whole_levels:
            if start != self._next_frame:
                raise InputError(f"apply() got frames from {start} but the next is {self._next_frame}: for an "
                                 "8-bit truncated output (codec_quantize='truncate') apply the chunks in order, once.")
            self._next_frame = start + len(frames)
            if self._residual is None:  # one per 8x8 tile of the frame
                h, w = frames.shape[1:3]
                self._residual = DitherState(seed=self.seed).get((-(-h // 8), -(-w // 8), 3))
        out = frames if inplace else np.array(frames, dtype=np.float32, copy=True)
        for i, (x0, y0, x1, y1) in enumerate(boxes):
            if x1 - x0 < self.grid[1] or y1 - y0 < self.grid[0]:
                continue
            change = cv2.resize(delta[i], (int(x1 - x0), int(y1 - y0)), interpolation=cv2.INTER_CUBIC)
            weight = _apply_weight(face_mask[i, y0:y1, x0:x1])
            change *= weight[..., None]
            region = out[i, y0:y1, x0:x1]
            if self._whole_levels:
                change *= region
                add_in_whole_levels(out[i], (x0, y0, x1, y1), change, weight, self._residual)
                continue
            change += 1.0
            np.multiply(region, change, out=region)
            np.clip(region, 0.0, 1.0, out=region)
        return out

    @property
    def info(self) -> dict:
        return {} if self._plan is None else dict(self._plan.info)


def edit_pulse(
    frames: np.ndarray,
    fps: float,
    target_hr_bpm,
    face_mask: np.ndarray | None = None,
    robust_to: str = "h264",
    seed: int = 0,
    **kwargs,
) -> EditResult:
    """Replace the subject's pulse by a target HR (constant, ``"70:120"`` ramp, or knots).

    frames: float32 [T,H,W,3] 0..1; face_mask: [T,H,W] (computed with ``face.face_mask``
    when None). Extra keyword arguments go to :class:`PulseEditor`.
    """
    return _run(frames, fps, face_mask, PulseEditor(fps, "edit", target=target_hr_bpm,
                                                    robust_to=robust_to, seed=seed, **kwargs))


def remove_pulse(
    frames: np.ndarray,
    fps: float,
    face_mask: np.ndarray | None = None,
    decoy_hr_bpm: float | None = None,
    robust_to: str = "h264",
    seed: int = 0,
    strength: str | None = None,
    **kwargs,
) -> EditResult:
    """Suppress the subject's pulse; optionally inject a decoy HR instead of chaff.

    ``strength``: ``"standard"``, ``"strong"`` or ``"max"`` (default), see ``removal.py``."""
    from .removal import DEFAULT_STRENGTH, PrivacyRemover, check_strength

    strength = check_strength(strength or DEFAULT_STRENGTH)
    pooled = PulseEditor(fps, "remove", decoy_hr_bpm=decoy_hr_bpm, robust_to=robust_to, seed=seed, **kwargs)
    if strength == "standard":
        return _run(frames, fps, face_mask, pooled)
    return _run(frames, fps, face_mask, PrivacyRemover(fps, pooled, strength, min_psnr_db=kwargs.get("min_psnr_db")))


def _run(frames, fps, face_mask, editor) -> EditResult:
    from .editors import run_editor

    frames = _as_frames(frames)
    track = None
    if face_mask is None:
        from .face import face_mask as compute_face_mask

        face_mask, track = compute_face_mask(frames, fps)
    elif hasattr(editor, "follow"):  # a given mask, and an editor that follows the face: track it
        from .face import track_face

        track = track_face(frames, fps)
    face_mask = np.asarray(face_mask, dtype=np.float32)
    return EditResult(frames=run_editor(editor, frames, face_mask, track), face_mask=face_mask, info=editor.info)


# -------------------------------------------------------------------- helpers


def _as_frames(frames) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise InputError(f"frames must be [T,H,W,3] RGB, got shape {frames.shape}: convert grayscale/alpha to RGB.")
    if frames.dtype != np.float32:
        frames = frames.astype(np.float32) / (255.0 if frames.dtype == np.uint8 else 1.0)
    return frames


def _check_frames_mask(frames: np.ndarray, face_mask: np.ndarray) -> None:
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise InputError(f"frames must be [T,H,W,3] RGB, got shape {frames.shape}.")
    if face_mask.shape != frames.shape[:3]:
        raise InputError(
            f"face mask shape {face_mask.shape} does not match frames {frames.shape[:3]}: "
            "the mask needs one [H,W] plane per frame, same size as the frames."
        )


def _apply_weight(mask: np.ndarray) -> np.ndarray:
    """Strength of the correction per pixel: full from mask 0.5 up, fading to 0 at the edge.

    Multiplying by the soft mask itself would under-correct: the pooled colour is a
    mask-weighted mean, so a correction scaled by the mask again reaches only
    sum(m^2)/sum(m) of the pulse it measured.
    """
    return np.minimum(mask * 2.0, 1.0)


def _reader_box(box, shape) -> tuple[int, int, int, int]:
    """The region a face-box rPPG reader averages: the mask's box made square and enlarged
    ``READER_BOX_SCALE`` times about its centre, clipped to the frame. It holds hair,
    background and skin that the edit leaves alone."""
    x0, y0, x1, y1 = box
    cx, cy, half = (x0 + x1) / 2, (y0 + y1) / 2, READER_BOX_SCALE * max(x1 - x0, y1 - y0) / 2
    h, w = shape[:2]
    return (max(0, int(cx - half)), max(0, int(cy - half)), min(w, int(cx + half)), min(h, int(cy + half)))


def _peak_green_levels(delta: np.ndarray, colours: np.ndarray, weights: np.ndarray) -> float:
    """Peak green change in 8-bit grey levels: sqrt(2) x its RMS over frames and skin cells,
    weighted as the face mean weighs them. delta [T,K,3] relative, colours [T,K,3] 0..1,
    weights [T,K]."""
    levels = delta[..., 1] * colours[..., 1] * 255.0
    return float(np.sqrt(2.0 * np.sum(weights * levels**2) / max(float(weights.sum()), 1e-12)))


def _predicted_psnr_db(delta: np.ndarray, colours: np.ndarray, applied_px: np.ndarray, frame_pixels: int) -> float:
    """PSNR over whole frames of an 8-bit output holding the relative change ``delta [T,K,3]``
    of cells with mean colour ``colours [T,K,3]`` (0..1) over ``applied_px [T,K]`` pixels.

    A change of x grey levels, dithered to whole levels, is floor(x) or ceil(x) in
    proportion: a squared error of x^2 + f(1 - f) (f the fraction of x), so a sub-level
    change costs about its size, not its square.
    """
    levels = np.abs(delta * colours) * 255.0
    frac = levels - np.floor(levels)
    squared = np.einsum("tk,tkc->", applied_px, levels**2 + frac * (1.0 - frac))
    mse = squared / max(len(delta) * frame_pixels * 3, 1) / 255.0**2
    return float(10.0 * np.log10(1.0 / mse)) if mse > 0 else float("inf")


def _mask_boxes(face_mask: np.ndarray, threshold: float = 0.05) -> np.ndarray:
    """Bounding box (x0, y0, x1, y1) of mask > threshold per frame; zeros where empty."""
    on = face_mask > threshold
    rows, cols = on.any(axis=2), on.any(axis=1)  # [t,H], [t,W]
    boxes = np.zeros((len(face_mask), 4), np.int64)
    for i, (r, c) in enumerate(zip(rows, cols)):
        if r.any():
            ys, xs = np.flatnonzero(r), np.flatnonzero(c)
            boxes[i] = xs[0], ys[0], xs[-1] + 1, ys[-1] + 1
    return boxes


def _sosfiltfilt(sos, x, fps: float):
    """Zero-phase filter along time (axis 0). Odd-reflection padding of ~4 s keeps the slow
    filters used here (down to 0.15 Hz) from ringing at the clip's ends."""
    from scipy import signal  # noqa: PLC0415 (slow to import: loaded on first use)
    return signal.sosfiltfilt(sos, x, axis=0, padlen=min(x.shape[0] - 1, int(4 * fps)))


def _normalise(colours: np.ndarray, weights: np.ndarray, fps: float):
    """Cell colours -> relative colour change around the slow mean. Returns (norm, valid)."""
    from scipy import signal  # noqa: PLC0415 (slow to import: loaded on first use)
    valid = weights.mean(axis=0) > 0.01 * weights.mean(axis=0).max()
    # Frames where a cell is empty: interpolate the cell's colour from the frames that saw it.
    filled = np.stack([fill_gaps(colours[:, k], weights[:, k] > 1e-3) for k in range(colours.shape[1])], axis=1)
    filled = np.maximum(filled, 1e-3)
    sos = signal.butter(2, 0.4, btype="lowpass", fs=fps, output="sos")
    slow = np.maximum(_sosfiltfilt(sos, filled, fps), 1e-3)
    norm = filled / slow - 1.0
    norm[:, ~valid] = 0.0
    return norm, valid


def _breathing_band(face_rgb: np.ndarray, present: np.ndarray, fps: float) -> np.ndarray:
    """Relative change of the face colour ``face_rgb [T,3]`` at breathing rates
    (``BREATHING_BAND_HZ``), around its mean over ``SLOW_MEAN_S``; frames without a face
    (``present [T]`` False) interpolated. ``[T,3]``."""
    from scipy import signal  # noqa: PLC0415 (slow to import: loaded on first use)
    filled = np.maximum(np.stack([fill_gaps(face_rgb[:, c], present) for c in range(3)], axis=1), 1e-3)
    slow = signal.sosfiltfilt(signal.butter(1, 1.0 / SLOW_MEAN_S, fs=fps, output="sos"), filled, axis=0,
                              padlen=min(len(filled) - 1, int(SLOW_MEAN_S * fps)))
    band = signal.butter(2, BREATHING_BAND_HZ, btype="bandpass", fs=fps, output="sos")
    return _sosfiltfilt(band, filled / np.maximum(slow, 1e-3) - 1.0, fps)


def _hr_track(pulse: np.ndarray, fps: float, band_bpm) -> np.ndarray:
    """Own HR per frame in Hz: sliding-window spectral peaks, median-smoothed."""
    from scipy import signal  # noqa: PLC0415 (slow to import: loaded on first use)
    duration = len(pulse) / fps
    window_s = min(10.0, duration)
    times, hrs = hr_over_time(pulse, fps, window_s=window_s, step_s=1.0, band_bpm=band_bpm)
    hrs = np.asarray(hrs, float)
    if len(hrs) >= 3:
        hrs = signal.medfilt(hrs, 3 if len(hrs) < 7 else 5)
    t = np.arange(len(pulse)) / fps
    return np.interp(t, np.asarray(times, float), hrs) / 60.0 if len(hrs) > 1 else np.full(len(pulse), hrs[0] / 60.0)


def _demodulate(x: np.ndarray, phase: np.ndarray, fps: float, cutoff_hz: float) -> np.ndarray:
    """Complex envelope of x at the given phase: 2 * lowpass(x * exp(-i phase)), along axis 0."""
    from scipy import signal  # noqa: PLC0415 (slow to import: loaded on first use)
    rot = np.exp(-1j * phase).reshape((-1,) + (1,) * (x.ndim - 1))
    sos = signal.butter(2, cutoff_hz, btype="lowpass", fs=fps, output="sos")
    mixed = x * rot
    return 2.0 * (_sosfiltfilt(sos, mixed.real, fps) + 1j * _sosfiltfilt(sos, mixed.imag, fps))


def _local_regression(y: np.ndarray, x: np.ndarray, fps: float, cutoff_hz: float = 0.1) -> np.ndarray:
    """Slowly varying least-squares gain b(t) with y ~ b x, per element (broadcast over x)."""
    from scipy import signal  # noqa: PLC0415 (slow to import: loaded on first use)
    sos = signal.butter(2, cutoff_hz, btype="lowpass", fs=fps, output="sos")
    num = _sosfiltfilt(sos, y * x, fps)
    den = _sosfiltfilt(sos, np.broadcast_to(x * x, y.shape), fps)
    return num / np.maximum(den, 1e-12 + 1e-3 * den.max())


def _refine_phase(pulse: np.ndarray, hr_hz: np.ndarray, fps: float) -> np.ndarray:
    """Phase of the own pulse: nominal phase of the HR track plus the measured slow offset,
    so heart-rate variability is followed without widening the notch."""
    nominal = 2.0 * np.pi * np.cumsum(hr_hz) / fps
    envelope = _demodulate(pulse, nominal, fps, cutoff_hz=0.3)
    return nominal + np.unwrap(np.angle(envelope))


def _misreads(rgb: np.ndarray, fps: float, hr_bpm: np.ndarray, window_s: float = 6.0) -> list[str]:
    """Estimators (of ``ESTIMATORS``) that do not read ``hr_bpm [T]`` from the colour trace
    ``rgb [T,3]``: a constant HR from the whole clip; a changing one window by window
    (``window_s`` windows, 1 s apart), as heart-rate tracking reads it."""
    misread = []
    n = min(int(window_s * fps), len(rgb))
    constant = np.ptp(hr_bpm) < 1e-6
    # Windows 1 s apart, at most MAX_PREDICT_WINDOWS of them (evenly spread on long clips).
    starts = [0] if constant else np.arange(0, len(rgb) - n + 1, max(int(fps), 1))
    if len(starts) > MAX_PREDICT_WINDOWS:
        starts = starts[np.linspace(0, len(starts) - 1, MAX_PREDICT_WINDOWS).round().astype(int)]
    tolerance = PREDICT_TOLERANCE_BPM["constant" if constant else "changing"]
    for name, estimator in ESTIMATORS.items():
        if constant:
            error = abs(estimate_hr(estimator(rgb, fps), fps) - hr_bpm[0])
        else:
            error = np.mean([abs(estimate_hr(estimator(rgb[s : s + n], fps), fps) - hr_bpm[s : s + n].mean())
                             for s in starts])
        if not error <= tolerance:  # NaN (no peak) counts as a misread
            misread.append(name)
    return misread


def _amplitude_map(amp_g: np.ndarray, valid: np.ndarray, face_weights: np.ndarray) -> np.ndarray:
    """Per-cell pulse strength relative to the face mean, half measured, half uniform."""
    out = np.zeros_like(amp_g)
    if not valid.any():
        return out
    mean = np.average(amp_g[valid], weights=face_weights[valid])
    rel = np.clip(amp_g / max(mean, 1e-9), 0.3, 2.5) if mean > 0 else np.ones_like(amp_g)
    out[valid] = 0.5 * rel[valid] + 0.5
    # Rescale so the face-weighted mean strength is exactly 1.
    return out / np.average(out[valid], weights=face_weights[valid])


def _target_wave(n_frames: int, fps: float, target: HRTarget, seed: int, band_bpm, rmssd_ms=None,
                 resp_rate=None) -> np.ndarray:
    """Realistic target pulse (unit RMS) whose spectral peak sits on a constant target.

    Heart-rate variability makes a short clip's spectral peak wander by a bpm or two from
    the mean HR, and the spectral peak is what estimators read. For a constant target the
    HR curve is shifted until the peak lands on it (two corrections suffice). ``rmssd_ms``
    and ``resp_rate`` (breaths/min) set the beat-by-beat HRV and breathing
    (``pulse.synth_pulse``); breathing set by the user modulates by ``RESP_DEPTH``.
    """
    curve = hr_curve(target, n_frames, fps)
    extra = dict(rmssd_ms=rmssd_ms, resp_rate=resp_rate, resp_depth=RESP_DEPTH if resp_rate is not None else 0.1)
    pulse = synth_pulse(n_frames, fps, target, hrv_ms=TARGET_HRV_MS, seed=seed, **extra)
    if np.ptp(curve) > 1e-6:
        return pulse.wave
    want, shift = float(curve[0]), 0.0
    for _ in range(2):
        error = estimate_hr(pulse.wave, fps, band_bpm=band_bpm) - want
        if abs(error) < 0.2:
            break
        shift -= error
        pulse = synth_pulse(n_frames, fps, parse_hr_target(want + shift), hrv_ms=TARGET_HRV_MS, seed=seed, **extra)
    return pulse.wave


def _chaff(n_frames: int, fps: float, notch_phases: list[np.ndarray], band_bpm, rng) -> np.ndarray:
    """Pulse-band noise notched at each of ``notch_phases`` (the own HR's phase, and the
    estimators' consensus where it differs) and their harmonics: [T, 3] colour change per
    unit amplitude.

    Estimators then find random, wandering peaks instead of the true HR, and the SNR at the
    true HR drops because the band around it gets no power. Most of the chaff follows the
    blood-volume direction (where a pulse would be); a weaker, independent part fills the
    two colour directions orthogonal to it, because PCA and ICA pick the most periodic of
    three colour components, and any residual of the own pulse there must not stand out.
    """
    from scipy import signal  # noqa: PLC0415 (slow to import: loaded on first use)
    low, high = band_bpm[0] / 60.0, min(band_bpm[1] / 60.0, 0.45 * fps)
    sos = signal.butter(3, [low, high], btype="bandpass", fs=fps, output="sos")
    noise = _sosfiltfilt(sos, rng.standard_normal((n_frames, 3)), fps)
    for notch_phase in notch_phases:
        for harmonic in (1, 2, 3):
            near = _demodulate(noise, harmonic * notch_phase, fps, cutoff_hz=10.0 / 60.0)
            noise = noise - np.real(near * np.exp(1j * harmonic * notch_phase)[:, None])
    noise /= np.maximum(noise.std(axis=0), 1e-12)
    # Orthonormal colour basis: the pulse direction first.
    basis, _ = np.linalg.qr(np.stack([BLOOD_VOLUME_DIRECTION, [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], axis=1))
    scale = np.linalg.norm(BLOOD_VOLUME_DIRECTION) * np.array([1.0, 0.5, 0.5])
    return (noise * scale) @ basis.T


def _check_decoy(decoy_hr_bpm: np.ndarray, own_hr_bpm: np.ndarray) -> None:
    gap = np.abs(decoy_hr_bpm - own_hr_bpm).min()
    if gap < 10.0:
        raise InputError(
            f"decoy HR comes within {gap:.1f} bpm of the subject's own HR (~{np.median(own_hr_bpm):.0f} bpm): "
            "choose a decoy at least 10 bpm away, or remove without a decoy."
        )


def injected_wave(n_frames: int, fps: float, target, seed: int = 0, band_bpm=(40.0, 180.0), rmssd_ms=None,
                  resp_rate=None) -> np.ndarray:
    """The unit blood-volume pulse ``PulseEditor(fps, target=target, seed=seed, hrv_rmssd_ms=rmssd_ms,
    resp_rate=resp_rate)`` injects into an ``n_frames``-frame clip ([T] float64): an edited
    clip's new ground truth."""
    rmssd_ms = check_rmssd(rmssd_ms) if rmssd_ms is not None else None
    resp_rate = parse_resp_target(resp_rate) if resp_rate is not None else None
    return _target_wave(n_frames, fps, parse_hr_target(target), seed, band_bpm, rmssd_ms, resp_rate)
