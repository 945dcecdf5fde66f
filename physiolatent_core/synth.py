"""Synthetic face clips with a known pulse, for tests, benchmarks and the demo.

A real still face photo (``skimage.data.astronaut()``, public domain, NASA) is animated:

1. **Pulse.** Skin pixels are modulated multiplicatively along the blood-volume colour
   direction in normalised RGB, (0.33, 0.77, 0.53), scaled so the green change is the
   amplitude: ``pixel *= 1 - pulse_amplitude * w(x, y) * dir_rgb * ppg(t)``. The pulse
   ``ppg`` is blood volume (more blood, darker skin); see :mod:`physiolatent_core.pulse`.
   ``w`` is a smooth amplitude map on the skin: forehead and cheeks strongest, nose medium,
   weak elsewhere, normalised to mean 1 over the skin.
2. **Illumination.** A slow global gain (all channels) plus a slight colour-temperature
   drift (red up while blue down), both below 0.1 Hz.
3. **Motion.** The whole frame moves by a sub-pixel-to-few-pixel translation, a tiny
   rotation and scale (slow sway plus a smooth random walk below 0.3 Hz), with
   ``cv2.warpAffine``; the skin mask and face box move with it.
4. **Sensor.** Gaussian noise per pixel and frame (drawn from a small bank at random
   offsets, for speed: see ``_noise_bank``), then rounding to k/255.
5. **Skin tone** (optional). The photo's skin (face, ears, neck) is about tone 5 of the
   Monk Skin Tone scale; ``skin_tone=6..10`` darkens it to that tone's swatch colour, per
   channel and multiplicatively (more melanin absorbs more of every colour, so shading and
   texture stay). The pulse stays a relative change, so on dark skin it is the same
   fraction of fewer grey levels, and the sensor noise is a larger fraction of them: the
   harder case for every reader and for the 8-bit and H.264 paths. ``skin_tone=1..4``
   brightens it: a per-channel gain, then a soft knee (``_soft_knee``) that keeps every
   skin value below full scale before exposure, so the brightest skin never clips even
   when the light drifts up (a clipped pixel would lose the pulse); the knee compresses
   the highlights' texture (tone 1's red swatch is 0.96 of full scale, so its red has
   little room left), and each gain is fitted so the skin's mean still matches the swatch.
   The pulse is applied after the tone, so it stays the same relative change.
6. **Talking** (optional, ``talking=True``). Speech-like jaw motion: the jaw opens with a
   syllable rhythm of 3-6 Hz (the rate wanders), in bursts of speech (1-3 s) and pauses
   (0.3-1.5 s), each syllable opening by a random amount; the lower face (lower lip, chin,
   jaw) is warped down with it (``cv2.remap``; up to 12 % of the face's half-height) while
   the upper face stays, and the mouth's inside darkens as it opens (the lips part, the
   teeth and mouth cavity show). The pulse is written before the warp, so it moves with
   the skin, and the skin mask moves with the jaw too. Syllable rates sit just above the
   HR band, but their bursts, pauses and uneven openings put motion power inside it: the
   hard case of talking-head video for every reader.

Everything random derives from ``seed``. The skin mask returned is the ground truth: the
pixels the pulse was written to.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from .errors import InputError
from .pulse import _smooth_noise, parse_hr_target, synth_pulse

__all__ = ["BLOOD_DIRECTION_RGB", "MONK_SKIN_TONES", "SynthClip", "check_skin_tone", "speech_opening",
           "synth_subject"]

# Blood-volume colour direction in normalised RGB, scaled so its green component is 1.
BLOOD_DIRECTION_RGB = np.array([0.33, 0.77, 0.53]) / 0.77

# Geometry of the astronaut photo (512x512), measured by eye on the image: the face's skin
# is about this ellipse (centre x, y; semi-axes x, y); eyes and mouth are excluded.
_ASTRONAUT_FACE = dict(centre=(222.0, 122.0), axes=(42.0, 55.0))
_ASTRONAUT_HOLES = (  # (centre x, centre y, semi-axis x, semi-axis y)
    (203.0, 101.0, 11.0, 6.0),  # right eye (viewer's left)
    (243.0, 101.0, 11.0, 6.0),  # left eye
    (203.0, 88.0, 13.0, 4.0),  # brows
    (243.0, 88.0, 13.0, 4.0),
    (222.0, 144.0, 20.0, 9.0),  # mouth (open smile, teeth)
)
# Monk Skin Tone scale (Monk 2019, Google), sRGB swatch of each of its ten tones.
MONK_SKIN_TONES = {
    1: (246, 237, 228), 2: (243, 231, 219), 3: (247, 234, 208), 4: (234, 218, 186),
    5: (215, 189, 150), 6: (160, 126, 86), 7: (130, 92, 67), 8: (96, 65, 52),
    9: (58, 49, 42), 10: (41, 36, 32),
}
#: The photo's own skin is about this tone: darker tones darken it, lighter ones brighten it
#: under a soft knee (see the module docstring).
PHOTO_SKIN_TONE = 5
# Knee of the brightening for tones lighter than the photo's: skin values above it are
# compressed towards full scale instead of clipping.
_KNEE = 0.75
# Jaw geometry in face-ellipse units (u across, v down, both in semi-axes from the face
# centre), measured on the photo: the parting line of the lips, the chin, the mouth's
# half-width; and the largest jaw drop.
_LIP_LINE_V = 0.36
_CHIN_V = 1.0
_MOUTH_HALF_WIDTH_U = 0.45
_JAW_DROP = 0.12
# Scale the photo down a little so its bright forehead (~0.94) never clips when the
# illumination drifts up: clipped pixels would lose the pulse.
_EXPOSURE = 0.9


@dataclass
class SynthClip:
    """A synthetic clip and its ground truth.

    Attributes:
        frames: ``[T, H, W, 3]`` float32 RGB in 0..1.
        fps: frame rate.
        ppg: ``[T]`` blood-volume pulse written into the skin (zero-mean, unit std).
        hr_bpm: mean heart rate over the clip, bpm.
        hr_curve_bpm: ``[T]`` instantaneous heart rate, bpm.
        skin_mask: ``[T, H, W]`` float32 0..1, where the pulse was written (moves with the head).
        face_box: ``[T, 4]`` float (x0, y0, x1, y1) pixels, bounding box of the face ellipse.
        amplitude_map: ``[H, W]`` float32, the pulse weight ``w`` before motion: 0 off the
            skin, mean 1 on it.
    """

    frames: np.ndarray
    fps: float
    ppg: np.ndarray
    hr_bpm: float
    hr_curve_bpm: np.ndarray
    skin_mask: np.ndarray
    face_box: np.ndarray
    amplitude_map: np.ndarray
    beat_times_s: np.ndarray | None = None  # systolic peak times (s), with rmssd_ms
    resp_bpm: np.ndarray | None = None  # [T] breathing rate, breaths/min

    @property
    def duration_s(self) -> float:
        return len(self.frames) / self.fps


def _ellipse(shape: tuple[int, int], cx: float, cy: float, ax: float, ay: float) -> np.ndarray:
    """Boolean ellipse ``[H, W]``."""
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float64)
    return ((xx - cx) / ax) ** 2 + ((yy - cy) / ay) ** 2 <= 1.0


@lru_cache(maxsize=1)
def _astronaut() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The photo (float32 0..1), its skin mask, amplitude map and all-skin map (face, ears
    and neck: what a skin tone darkens), all 512x512."""
    from skimage import data

    photo = data.astronaut()
    (cx, cy), (ax, ay) = _ASTRONAUT_FACE["centre"], _ASTRONAUT_FACE["axes"]
    shape = photo.shape[:2]

    # Skin = skin-coloured (YCrCb box) and bright enough to exclude hair, inside the face
    # ellipse, minus eyes, brows and mouth.
    ycrcb = cv2.cvtColor(photo, cv2.COLOR_RGB2YCrCb)
    skin = cv2.inRange(ycrcb, (120, 136, 80), (255, 175, 125)) > 0
    skin &= _ellipse(shape, cx, cy, ax, ay)
    for hx, hy, hax, hay in _ASTRONAUT_HOLES:
        skin &= ~_ellipse(shape, hx, hy, hax, hay)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
    skin = cv2.morphologyEx(skin.astype(np.uint8), cv2.MORPH_OPEN, kernel)
    skin = cv2.morphologyEx(skin, cv2.MORPH_CLOSE, kernel).astype(np.float32)
    skin = cv2.GaussianBlur(skin, (0, 0), 1.5)  # soft edge, ~2 px

    # Amplitude map in face-relative coordinates (u, v in units of the semi-axes): blobs
    # on the forehead and cheeks (strongest), the nose (medium), a floor elsewhere.
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float64)
    u, v = (xx - cx) / ax, (yy - cy) / ay

    def blob(u0, v0, su, sv):
        return np.exp(-0.5 * (((u - u0) / su) ** 2 + ((v - v0) / sv) ** 2))

    strong = np.maximum.reduce(
        [blob(0.0, -0.65, 0.55, 0.2), blob(-0.5, 0.15, 0.25, 0.25), blob(0.5, 0.15, 0.25, 0.25)]
    )
    weight = 0.25 + 0.75 * np.maximum(strong, 0.6 * blob(0.0, 0.05, 0.15, 0.3))
    amp_map = (skin * weight).astype(np.float32)
    amp_map /= amp_map[skin > 0.5].mean()

    # All visible skin: skin-coloured pixels in a region around the face reaching down to
    # the collar (the rule alone also takes the blonde hair's highlights and the background).
    all_skin = cv2.inRange(ycrcb, (40, 133, 77), (255, 178, 127)) > 0
    all_skin &= _ellipse(shape, cx, cy + 25.0, 1.45 * ax, 1.6 * ay)
    all_skin = cv2.morphologyEx(all_skin.astype(np.uint8), cv2.MORPH_OPEN, kernel)
    all_skin = cv2.morphologyEx(all_skin, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (9, 9)))
    all_skin = cv2.GaussianBlur(all_skin.astype(np.float32), (0, 0), 2.0)
    return photo.astype(np.float32) / 255.0, skin, amp_map, all_skin


def _crop_box(size: tuple[int, int], photo_hw: tuple[int, int]) -> tuple[float, float, float, float]:
    """Photo region (x0, y0, width, height) with the aspect of ``size``, face centred.

    The crop is twice the face's height tall (face, hair and shoulders), shrunk if needed
    to fit the photo, and shifted to stay inside it.
    """
    out_h, out_w = size
    (cx, cy), (_, ay) = _ASTRONAUT_FACE["centre"], _ASTRONAUT_FACE["axes"]
    crop_h = 4.0 * ay
    crop_w = crop_h * out_w / out_h
    scale = min(1.0, photo_hw[1] / crop_w, photo_hw[0] / crop_h)
    crop_w, crop_h = crop_w * scale, crop_h * scale
    x0 = float(np.clip(cx - crop_w / 2, 0, photo_hw[1] - crop_w))
    y0 = float(np.clip(cy - crop_h / 2, 0, photo_hw[0] - crop_h))
    return x0, y0, crop_w, crop_h


def _check(name: str, value, low: float, high: float = np.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value):
        raise InputError(f"{name} must be a number, got {value!r}.")
    if not low <= value <= high:
        raise InputError(f"{name} must be between {low:g} and {high:g}, got {value!r}.")
    return float(value)


def check_skin_tone(skin_tone, name: str = "skin_tone") -> None:
    """Raise InputError unless ``skin_tone`` is None or a tone ``synth_subject`` renders."""
    if skin_tone is not None and (
        isinstance(skin_tone, bool) or not isinstance(skin_tone, numbers.Integral) or skin_tone not in MONK_SKIN_TONES
    ):
        raise InputError(
            f"{name} must be a Monk Skin Tone scale tone from {min(MONK_SKIN_TONES)} to {max(MONK_SKIN_TONES)} "
            f"(an integer), or none for the photo's own skin (about tone {PHOTO_SKIN_TONE}); got {skin_tone!r}."
        )


def _soft_knee(x: np.ndarray) -> np.ndarray:
    """Identity below ``_KNEE``, then a tanh that approaches 1 and never reaches it."""
    over = np.maximum(x - _KNEE, 0.0) / (1.0 - _KNEE)
    return np.where(x < _KNEE, x, _KNEE + (1.0 - _KNEE) * np.tanh(over)).astype(np.float32)


@lru_cache(maxsize=16)
def _tone_gain(skin_tone: int | None) -> np.ndarray:
    """Per-channel factor [3] that takes the photo's mean face skin to the swatch of Monk
    tone ``skin_tone`` (for lighter tones: the mean after ``_soft_knee``, fitted by bisection)."""
    photo, skin, _, _ = _astronaut()
    face_skin = photo[skin > 0.5]
    swatch = np.array(MONK_SKIN_TONES[skin_tone]) / 255.0
    if skin_tone >= PHOTO_SKIN_TONE:
        return (swatch / face_skin.mean(axis=0)).astype(np.float32)
    gain = np.empty(3)
    for c in range(3):
        low, high = 0.5, 8.0
        for _ in range(40):  # the knee's mean rises monotonically with the gain
            mid = 0.5 * (low + high)
            low, high = (mid, high) if _soft_knee(face_skin[:, c] * mid).mean() < swatch[c] else (low, mid)
        gain[c] = 0.5 * (low + high)
    return gain.astype(np.float32)


def _toned(photo_rgb: np.ndarray, all_skin: np.ndarray, skin_tone: int) -> np.ndarray:
    """The photo with its skin (``all_skin`` [H, W] soft) taken to ``skin_tone``."""
    gain = _tone_gain(skin_tone)
    if skin_tone >= PHOTO_SKIN_TONE:
        return photo_rgb * (1.0 - all_skin[..., None] * (1.0 - gain))
    weight = all_skin[..., None]
    return photo_rgb * (1.0 - weight) + _soft_knee(photo_rgb * gain) * weight


def _scene(size: tuple[int, int], skin_tone: int | None = None):
    """The photo cropped around the face, its skin darkened to ``skin_tone`` (Monk scale;
    None: as photographed), and resized to ``size`` = (H, W).

    Returns:
        base ``[H, W, 3]`` float32 (exposure applied), skin mask ``[H, W]`` float32,
        amplitude map ``[H, W]`` float32, and the face-ellipse box corners ``[4, 2]``
        (x, y) in output pixels.
    """
    out_h, out_w = size
    photo_rgb, skin_full, amp_full, all_skin = _astronaut()
    if skin_tone is not None:
        photo_rgb = _toned(photo_rgb, all_skin, skin_tone)
    x0, y0, crop_w, crop_h = _crop_box(size, photo_rgb.shape[:2])
    sx, sy = out_w / crop_w, out_h / crop_h
    to_frame = np.array([[sx, 0.0, -x0 * sx], [0.0, sy, -y0 * sy]])
    interp = cv2.INTER_AREA if sx < 1 else cv2.INTER_CUBIC

    def to_output(img):
        return cv2.warpAffine(img, to_frame, (out_w, out_h), flags=interp, borderMode=cv2.BORDER_REFLECT101)

    base = np.clip(to_output(photo_rgb), 0, 1) * _EXPOSURE
    skin = np.clip(to_output(skin_full), 0, 1)
    amp_map = np.clip(to_output(amp_full), 0, None)
    (cx, cy), (ax, ay) = _ASTRONAUT_FACE["centre"], _ASTRONAUT_FACE["axes"]
    corners = np.array([[cx - ax, cy - ay], [cx + ax, cy - ay], [cx - ax, cy + ay], [cx + ax, cy + ay]])
    return base, skin, amp_map, corners @ to_frame[:, :2].T + to_frame[:, 2]


def _head_motion(rng: np.random.Generator, n_frames: int, fps: float, motion_px: float):
    """Slow sway plus a smooth random walk, all below 0.3 Hz (outside the HR band).

    Returns shift ``[T, 2]`` pixels (x, y), rotation ``[T]`` degrees, zoom ``[T]`` (1 = none);
    rotation and zoom scale with ``motion_px`` (0.5 degree and 0.4 % at 2 px).
    """
    t_s = np.arange(n_frames) / fps
    cutoff = min(0.3, 0.4 * fps)

    def wander():
        sway = np.sin(2 * np.pi * rng.uniform(0.05, 0.2) * t_s + rng.uniform(0, 2 * np.pi))
        return 0.5 * sway + 0.5 * _smooth_noise(rng, n_frames, fps, cutoff)

    shift = motion_px * np.stack([wander(), wander()], axis=1)
    angle_deg = 0.25 * motion_px * wander()
    zoom = 1.0 + 0.002 * motion_px * wander()
    return shift, angle_deg, zoom


def _illumination(rng: np.random.Generator, n_frames: int, fps: float, drift: float) -> np.ndarray:
    """Per-frame RGB gain ``[T, 3]`` float32: global brightness and a colour-temperature
    drift (red up while blue down, a quarter as strong), both below 0.05 Hz."""
    cutoff = min(0.05, 0.4 * fps)
    brightness = 1.0 + drift * _smooth_noise(rng, n_frames, fps, cutoff)
    warmth = 0.25 * drift * _smooth_noise(rng, n_frames, fps, cutoff)
    return (brightness[:, None] * np.stack([1 + warmth, np.ones(n_frames), 1 - warmth], axis=1)).astype(np.float32)


def speech_opening(rng: np.random.Generator, n_frames: int, fps: float) -> np.ndarray:
    """Jaw opening ``[T]`` in 0..1 of someone talking: syllables at a wandering 3-6 Hz, each
    opening by a random 40-100 %, in bursts of speech (1-3 s) separated by pauses (0.3-1.5 s,
    mouth closed); burst edges ramp over 0.1 s. Rates above ``fps / 2.5`` are capped so the
    syllables stay visible at low frame rates."""
    t_s = np.arange(n_frames) / fps
    # Syllable phase: a rate that wanders smoothly between 3 and 6 Hz.
    rate_hz = np.clip(4.5 + 1.2 * _smooth_noise(rng, n_frames, fps, min(0.5, 0.4 * fps)), 3.0, 6.0)
    rate_hz = np.minimum(rate_hz, fps / 2.5)
    phase = np.cumsum(rate_hz) / fps + rng.uniform()
    syllable = np.floor(phase).astype(int)
    depth = rng.uniform(0.4, 1.0, syllable.max() + 1)[syllable]
    opening = depth * 0.5 * (1.0 - np.cos(2 * np.pi * phase))
    # Bursts and pauses.
    talking = np.zeros(n_frames, bool)
    start = -rng.uniform(0.0, 2.0)  # mid-burst at the clip start, as often as not
    while start < t_s[-1] + 1.0:
        stop = start + rng.uniform(1.0, 3.0)
        talking |= (t_s >= start) & (t_s < stop)
        start = stop + rng.uniform(0.3, 1.5)
    ramp = max(1, round(0.1 * fps))
    envelope = np.convolve(talking.astype(float), np.ones(ramp) / ramp, mode="same")
    return (opening * envelope).astype(np.float32)


def _jaw_fields(size: tuple[int, int], corners: np.ndarray):
    """Where the jaw moves, in output pixels.

    Returns ``drop [H, W]`` float32: each pixel's downward shift, in pixels, at full
    opening (0 above the lips, ``_JAW_DROP`` face half-heights on the lower lip and chin,
    fading out across the jaw's width and below the chin), and ``mouth [H, W]`` float32
    0..1, the lip parting, where the mouth's inside shows as the jaw opens.
    """
    height, width = size
    cx, cy = corners.mean(axis=0)
    ax = (corners[:, 0].max() - corners[:, 0].min()) / 2
    ay = (corners[:, 1].max() - corners[:, 1].min()) / 2
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    u, v = (xx - cx) / ax, (yy - cy) / ay

    def smoothstep(x, lo, hi):
        z = np.clip((x - lo) / (hi - lo), 0.0, 1.0)
        return z * z * (3 - 2 * z)

    below_lips = smoothstep(v, _LIP_LINE_V - 0.04, _LIP_LINE_V + 0.08)
    above_neck = 1.0 - smoothstep(v, _CHIN_V, _CHIN_V + 0.35)
    across = np.exp(-((u / 0.8) ** 4))
    drop = (_JAW_DROP * ay) * below_lips * above_neck * across
    mouth = np.exp(-((u / _MOUTH_HALF_WIDTH_U) ** 4) - ((v - _LIP_LINE_V - 0.5 * _JAW_DROP) / (0.6 * _JAW_DROP)) ** 2)
    return drop.astype(np.float32), mouth.astype(np.float32)


def _noise_bank(rng: np.random.Generator, n_frames: int, size: tuple[int, int], std: float, margin: int = 16):
    """Sensor noise source: a bank of Gaussian noise frames and per-frame picks.

    Drawing fresh Gaussians for every pixel of every frame (69 M for 10 s at 320x240)
    would dominate the render time, so a bank of up to 8 noise frames (plus ``margin``
    pixels) is drawn once and every frame takes a random entry at a random offset:
    per-pixel statistics stay Gaussian and consecutive frames' noise is independent in
    practice (a repeat needs the same entry and offset: 1 in 2,300).

    Returns:
        bank ``[K, H + margin, W + margin, 3]`` float32 (already scaled by ``std``) and
        picks ``[T, 3]`` int (entry, dy, dx).
    """
    height, width = size
    bank = rng.standard_normal((min(8, n_frames), height + margin, width + margin, 3), dtype=np.float32)
    bank *= np.float32(std)
    picks = np.stack([rng.integers(0, len(bank), n_frames), *rng.integers(0, margin + 1, (2, n_frames))], axis=1)
    return bank, picks


def synth_subject(
    duration_s: float = 10.0,
    fps: float = 30.0,
    hr_bpm=72.0,
    size: tuple[int, int] = (240, 320),
    seed: int = 0,
    motion_px: float = 2.0,
    pulse_amplitude: float = 0.004,
    illumination_drift: float = 0.02,
    noise_std: float = 1.0 / 255,
    quantize: bool = True,
    photo: str = "astronaut",
    hrv_ms: float = 20.0,
    resp_hz: float = 0.25,
    skin_tone: int | None = None,
    rmssd_ms: float | None = None,
    resp_rate=None,
    resp_depth: float = 0.1,
    talking: bool = False,
) -> SynthClip:
    """Render a face clip with a known pulse.

    Args:
        duration_s: clip length; T = round(duration_s * fps) frames (at least 2).
        fps: frame rate.
        hr_bpm: heart rate: a number, or any trajectory :func:`pulse.parse_hr_target`
            accepts (``"70:120"``, knots ``[(t_s, bpm), ...]``).
        size: output (height, width) in pixels. At the default the face is about 100 px wide.
        seed: all randomness (pulse, motion, illumination, noise) derives from it.
        motion_px: head motion amplitude in pixels (translation; rotation and scale scale
            with it); 0 for a still head.
        pulse_amplitude: relative green change per unit pulse (the pulse has unit std),
            averaged over the skin: 0.004 = 0.4 %, about 1 grey level on bright skin.
        illumination_drift: std of the slow global brightness change (0.02 = 2 %).
        noise_std: sensor noise std in 0..1 units (default one grey level).
        quantize: round the output to k/255 like an 8-bit camera.
        photo: the still to animate; only ``"astronaut"`` (skimage) for now.
        hrv_ms, resp_hz: heart-rate variability and breathing rate, see
            :func:`pulse.synth_pulse`.
        rmssd_ms, resp_rate, resp_depth: the beat-by-beat HRV model's RMSSD target (ms) and
            the breathing rate (breaths/min, a number or a trajectory) and depth, see
            :func:`pulse.synth_pulse`; the known beats are then ``SynthClip.beat_times_s``.
        skin_tone: None for the photo's own skin (about Monk tone 5), or a tone of the
            Monk Skin Tone scale, 1-10 (:data:`MONK_SKIN_TONES`): darker or lighter skin.
            The pulse stays a relative change of the skin.
        talking: speech-like jaw motion (:func:`speech_opening`; the lower face moves down,
            the mouth opens); its randomness also derives from ``seed``. Off by default.

    Returns:
        SynthClip.

    Raises:
        InputError: an argument out of range (HR outside 30-240 bpm, too short a clip, ...).
    """
    if photo != "astronaut":
        raise InputError(f"Unknown photo {photo!r}; the only one available is 'astronaut'.")
    duration_s = _check("duration_s", duration_s, 0.0)
    fps = _check("fps", fps, 1.0, 1000.0)
    n_frames = int(round(duration_s * fps))
    if n_frames < 2:
        raise InputError(
            f"A {duration_s:g} s clip at {fps:g} fps has {n_frames} frame(s); ask for at least 2."
        )
    try:
        out_h, out_w = (int(s) for s in size)
    except (TypeError, ValueError):
        raise InputError(f"size must be (height, width), got {size!r}.") from None
    if out_h < 32 or out_w < 32 or out_h > 4096 or out_w > 4096:
        raise InputError(f"size must be between 32 and 4096 pixels per side, got {size!r}.")
    motion_px = _check("motion_px", motion_px, 0.0, 50.0)
    pulse_amplitude = _check("pulse_amplitude", pulse_amplitude, 0.0, 0.05)
    illumination_drift = _check("illumination_drift", illumination_drift, 0.0, 0.3)
    noise_std = _check("noise_std", noise_std, 0.0, 0.5)
    check_skin_tone(skin_tone)
    target = parse_hr_target(hr_bpm)

    pulse_seed, motion_seed, light_seed, noise_seed = np.random.SeedSequence(seed).spawn(4)
    pulse = synth_pulse(
        n_frames, fps, target, hrv_ms=hrv_ms, resp_hz=resp_hz, seed=int(pulse_seed.generate_state(1)[0]),
        rmssd_ms=rmssd_ms, resp_rate=resp_rate, resp_depth=resp_depth,
    )
    ppg = pulse.wave.astype(np.float32)

    base, skin, amp_map, corners = _scene((out_h, out_w), skin_tone)
    centre = corners.mean(axis=0)
    # Per-pixel, per-channel pulse gain: pixel *= 1 - ppg(t) * gain.
    pulse_gain = (pulse_amplitude * amp_map[..., None] * BLOOD_DIRECTION_RGB).astype(np.float32)
    shift, angle_deg, zoom = _head_motion(np.random.default_rng(motion_seed), n_frames, fps, motion_px)
    light = _illumination(np.random.default_rng(light_seed), n_frames, fps, illumination_drift)
    bank, picks = _noise_bank(np.random.default_rng(noise_seed), n_frames, (out_h, out_w), noise_std)
    if talking:
        # A fifth child of the same seed: the first four, and so every clip rendered
        # without talking, stay as they were.
        talk_seed = np.random.SeedSequence(seed).spawn(5)[4]
        opening = speech_opening(np.random.default_rng(talk_seed), n_frames, fps)
        drop, mouth = _jaw_fields((out_h, out_w), corners)
        grid_y, grid_x = np.mgrid[0:out_h, 0:out_w].astype(np.float32)
        jawed, jawed_skin = np.empty_like(base), np.empty_like(skin)

    frames = np.empty((n_frames, out_h, out_w, 3), np.float32)
    masks = np.empty((n_frames, out_h, out_w), np.float32)
    boxes = np.empty((n_frames, 4))
    lit = np.empty_like(base)
    for t in range(n_frames):
        # lit = base * (1 - ppg[t] * pulse_gain) * light[t], in place to spare memory traffic.
        np.multiply(pulse_gain, -ppg[t], out=lit)
        lit += 1.0
        lit *= base
        lit *= light[t]
        skin_t = skin
        if talking and opening[t] > 0:
            # Pull the lower face down (each pixel reads from above it), darken the parted lips.
            map_y = grid_y - opening[t] * drop
            cv2.remap(lit, grid_x, map_y, cv2.INTER_LINEAR, dst=jawed, borderMode=cv2.BORDER_REFLECT101)
            cv2.remap(skin, grid_x, map_y, cv2.INTER_LINEAR, dst=jawed_skin, borderMode=cv2.BORDER_CONSTANT)
            jawed *= (1.0 - 0.75 * opening[t] * mouth)[..., None]
            lit[:], skin_t = jawed, jawed_skin
        motion = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), float(angle_deg[t]), float(zoom[t]))
        motion[:, 2] += shift[t]
        if motion_px > 0:
            cv2.warpAffine(lit, motion, (out_w, out_h), dst=frames[t], flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REFLECT101)
            cv2.warpAffine(skin_t, motion, (out_w, out_h), dst=masks[t], flags=cv2.INTER_LINEAR, borderValue=0)
        else:
            frames[t], masks[t] = lit, skin_t
        if noise_std > 0:
            k, dy, dx = picks[t]  # a random bank entry at a random offset
            frames[t] += bank[k, dy : dy + out_h, dx : dx + out_w]
        np.clip(frames[t], 0.0, 1.0, out=frames[t])
        if quantize:  # round to k/255 like an 8-bit camera
            frames[t] *= 255.0
            np.round(frames[t], out=frames[t])
            frames[t] /= 255.0
        moved = corners @ motion[:, :2].T + motion[:, 2]
        boxes[t] = (*moved.min(axis=0), *moved.max(axis=0))

    return SynthClip(
        frames=frames,
        fps=fps,
        ppg=ppg,
        hr_bpm=float(pulse.hr_bpm.mean()),
        hr_curve_bpm=pulse.hr_bpm,
        skin_mask=masks,
        face_box=boxes,
        amplitude_map=amp_map.astype(np.float32),
        beat_times_s=pulse.beat_times_s,
        resp_bpm=pulse.resp_bpm,
    )
