"""synth.py: synthetic face clips whose pulse can be read back."""

import importlib.util

import cv2
import numpy as np
import pytest

from physiolatent_core.errors import InputError
from physiolatent_core.pulse import hr_curve
from physiolatent_core.synth import (
    _EXPOSURE,
    BLOOD_DIRECTION_RGB,
    MONK_SKIN_TONES,
    speech_opening,
    synth_subject,
)

SMALL = dict(size=(96, 128))


def skin_green(clip) -> np.ndarray:
    """Mean green inside the ground-truth skin mask, per frame: ``[T]``."""
    m = clip.skin_mask
    return (clip.frames[..., 1] * m).sum(axis=(1, 2)) / m.sum(axis=(1, 2))


def spectral_peak_bpm(x: np.ndarray, fps: float, band=(40.0, 240.0)) -> float:
    """HR from the highest periodogram bin of the detrended signal, zero-padded 16x."""
    x = x - np.polyval(np.polyfit(np.arange(len(x)), x, 2), np.arange(len(x)))
    x = x * np.hanning(len(x))
    n = 16 * len(x)
    freqs = np.fft.rfftfreq(n, 1 / fps) * 60
    power = np.abs(np.fft.rfft(x, n))
    inside = (freqs >= band[0]) & (freqs <= band[1])
    return float(freqs[inside][power[inside].argmax()])


@pytest.fixture(scope="module")
def default_clip():
    return synth_subject(duration_s=1.0)


def test_shapes_ranges_and_quantisation(default_clip):
    clip = default_clip
    t = 30
    assert clip.frames.shape == (t, 240, 320, 3) and clip.frames.dtype == np.float32
    assert clip.skin_mask.shape == (t, 240, 320) and clip.face_box.shape == (t, 4)
    assert clip.ppg.shape == clip.hr_curve_bpm.shape == (t,)
    assert clip.fps == 30.0 and clip.duration_s == pytest.approx(1.0)
    assert 0.0 <= clip.frames.min() and clip.frames.max() <= 1.0
    levels = clip.frames[::7] * 255
    assert np.abs(levels - np.round(levels)).max() < 1e-3
    assert 0.0 <= clip.skin_mask.min() and clip.skin_mask.max() <= 1.0
    # The skin is a sizeable, but not dominant, part of the frame.
    skin_share = (clip.skin_mask[0] > 0.5).mean()
    assert 0.03 < skin_share < 0.3


def test_face_is_large_and_haar_detectable(default_clip):
    x0, y0, x1, y1 = default_clip.face_box[0]
    assert x1 - x0 >= 80
    gray = cv2.cvtColor((default_clip.frames[0] * 255).astype(np.uint8), cv2.COLOR_RGB2GRAY)
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    found = cascade.detectMultiScale(gray, 1.1, 5)
    assert len(found) >= 1
    fx, fy, fw, fh = found[0]
    # The detection overlaps the ground-truth face box.
    assert x0 < fx + fw / 2 < x1 and y0 < fy + fh / 2 < y1
    # The skin mask lies within the face box.
    ys, xs = np.nonzero(default_clip.skin_mask[0] > 0.5)
    assert xs.min() >= x0 - 3 and xs.max() <= x1 + 3 and ys.min() >= y0 - 3 and ys.max() <= y1 + 3


@pytest.mark.parametrize("hr, seed", [(55, 0), (72, 1), (120, 2)])
def test_hr_recoverable_from_green_channel(hr, seed):
    clip = synth_subject(duration_s=10.0, hr_bpm=hr, seed=seed, **SMALL)
    assert clip.hr_bpm == pytest.approx(hr, abs=0.5)
    assert abs(spectral_peak_bpm(skin_green(clip), clip.fps) - hr) < 3.0
    # The darkening follows blood volume: green correlates negatively with the ppg.
    assert np.corrcoef(skin_green(clip), clip.ppg)[0, 1] < -0.5


def test_no_pulse_means_no_peak_at_the_hr():
    clip = synth_subject(duration_s=10.0, hr_bpm=90, pulse_amplitude=0.0, seed=3, **SMALL)
    assert abs(np.corrcoef(skin_green(clip), clip.ppg)[0, 1]) < 0.3


def test_trajectory_is_followed():
    clip = synth_subject(duration_s=24.0, hr_bpm="60:120", seed=4, motion_px=1.0, **SMALL)
    n = len(clip.frames)
    np.testing.assert_allclose(clip.hr_curve_bpm.mean(), 90, atol=1.0)
    assert clip.hr_curve_bpm[-30:].mean() - clip.hr_curve_bpm[:30].mean() > 50
    green, fps, w = skin_green(clip), clip.fps, int(8 * clip.fps)
    assert abs(spectral_peak_bpm(green[:w], fps) - hr_curve("60:120", n, fps)[:w].mean()) < 5
    assert abs(spectral_peak_bpm(green[-w:], fps) - hr_curve("60:120", n, fps)[-w:].mean()) < 5
    knots = synth_subject(duration_s=2.0, hr_bpm=[(0, 60), (1, 100)], hrv_ms=0.0, **SMALL)
    assert knots.hr_curve_bpm[0] == 60 and knots.hr_curve_bpm[-1] == 100


def test_deterministic_given_seed():
    a = synth_subject(duration_s=1.0, seed=5, **SMALL)
    b = synth_subject(duration_s=1.0, seed=5, **SMALL)
    c = synth_subject(duration_s=1.0, seed=6, **SMALL)
    np.testing.assert_array_equal(a.frames, b.frames)
    np.testing.assert_array_equal(a.skin_mask, b.skin_mask)
    assert not np.array_equal(a.frames, c.frames)


def test_pulse_goes_along_blood_direction_on_skin_only():
    clean = dict(duration_s=1.0, motion_px=0.0, illumination_drift=0.0, noise_std=0.0, quantize=False, **SMALL)
    with_pulse = synth_subject(pulse_amplitude=0.01, **clean)
    without = synth_subject(pulse_amplitude=0.0, **clean)
    ratio = with_pulse.frames / np.maximum(without.frames, 1e-3) - 1.0  # = -amp * w * dir * ppg
    off_skin = (with_pulse.amplitude_map == 0) & (without.frames[0].min(axis=-1) > 0.02)
    assert off_skin.mean() > 0.5
    assert np.abs(ratio[:, off_skin]).max() < 1e-5
    # On the skin the relative change is proportional to the blood-volume colour direction.
    t = int(np.argmax(np.abs(with_pulse.ppg)))
    on = with_pulse.skin_mask[t] > 0.9
    per_channel = ratio[t][on].mean(axis=0)
    np.testing.assert_allclose(per_channel / per_channel[1], BLOOD_DIRECTION_RGB, rtol=0.02)
    # Mean green change per unit pulse is the requested amplitude (weight map mean 1).
    assert abs(per_channel[1] / with_pulse.ppg[t]) == pytest.approx(0.01, rel=0.25)
    # Forehead stronger than the chin: the weight map is not flat.
    amp = with_pulse.amplitude_map
    assert amp[on].max() > 1.5 * np.percentile(amp[on], 10)


def test_mask_and_box_move_with_the_head():
    moving = synth_subject(duration_s=4.0, motion_px=4.0, seed=7, **SMALL)
    centres = (moving.face_box[:, :2] + moving.face_box[:, 2:]) / 2
    assert np.ptp(centres[:, 0]) > 1.0  # it did move
    # The skin mask's centroid follows the face box centre.
    yy, xx = np.mgrid[0:96, 0:128]
    m = moving.skin_mask
    mask_x = (m * xx).sum(axis=(1, 2)) / m.sum(axis=(1, 2))
    assert np.corrcoef(mask_x, centres[:, 0])[0, 1] > 0.9
    still = synth_subject(duration_s=1.0, motion_px=0.0, seed=7, **SMALL)
    np.testing.assert_array_equal(still.skin_mask[0], still.skin_mask[-1])
    np.testing.assert_allclose(still.face_box[0], still.face_box[-1])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(hr_bpm=20), "30-240"),
        (dict(hr_bpm="70:300"), "30-240"),
        (dict(hr_bpm="fast"), "not a number"),
        (dict(duration_s=0.01), "at least 2"),
        (dict(fps=0), "fps"),
        (dict(size=(10, 10)), "size"),
        (dict(pulse_amplitude=0.5), "pulse_amplitude"),
        (dict(photo="lena"), "astronaut"),
        (dict(skin_tone=0), "Monk Skin Tone"),
        (dict(skin_tone=4.5), "Monk Skin Tone"),
        (dict(skin_tone=11), "Monk Skin Tone"),
        (dict(skin_tone=True), "Monk Skin Tone"),
        (dict(skin_tone="8"), "Monk Skin Tone"),
    ],
)
def test_bad_arguments_raise_input_error(kwargs, match):
    with pytest.raises(InputError, match=match):
        synth_subject(**{**dict(duration_s=1.0, **SMALL), **kwargs})


@pytest.mark.skipif(importlib.util.find_spec("physiolatent_core.rppg") is None, reason="rppg not written yet")
def test_project_estimators_read_the_true_hr():
    from physiolatent_core import rppg

    clip = synth_subject(duration_s=10.0, hr_bpm=84, seed=8, **SMALL)
    rgb = rppg.extract_rgb(clip.frames, clip.skin_mask)
    for name in ("green", "chrom", "pos"):
        pulse = rppg.ESTIMATORS[name](rgb, clip.fps)
        assert abs(rppg.estimate_hr(pulse, clip.fps) - 84) < 3.0, name


def test_sensor_noise_is_gaussian_and_fresh_every_frame():
    still = dict(duration_s=1.0, motion_px=0.0, illumination_drift=0.0, pulse_amplitude=0.0, quantize=False, **SMALL)
    clean = synth_subject(noise_std=0.0, **still).frames
    noise = synth_subject(noise_std=0.01, **still).frames - clean
    inside = (clean > 0.05) & (clean < 0.95)  # away from clipping
    assert noise[inside].std() == pytest.approx(0.01, rel=0.05)
    assert abs(noise[inside].mean()) < 5e-4
    flat = noise.reshape(len(noise), -1)
    neighbours = [abs(np.corrcoef(flat[t], flat[t + 1])[0, 1]) for t in range(len(flat) - 1)]
    assert max(neighbours) < 0.1, "consecutive frames must not share their noise"


@pytest.mark.parametrize("tone", [1, 3, 6, 8, 10])
def test_skin_tone_changes_the_skin_only_and_keeps_the_relative_pulse(tone):
    common = dict(duration_s=6.0, hr_bpm=72, seed=3, noise_std=0.0, quantize=False, **SMALL)
    photo, dark = synth_subject(**common), synth_subject(skin_tone=tone, **common)
    still = dict(common, motion_px=0.0, illumination_drift=0.0)  # only the pulse changes
    still_photo, still_dark = synth_subject(**still), synth_subject(skin_tone=tone, **still)
    on_skin = dark.skin_mask[0] > 0.9
    swatch = np.array(MONK_SKIN_TONES[tone]) / 255.0 * _EXPOSURE
    np.testing.assert_allclose(dark.frames[0][on_skin].mean(axis=0), swatch, rtol=0.1)
    # The background is the photo's (same seed: same motion and light).
    corner = (slice(None), slice(0, 12), slice(0, 12))
    np.testing.assert_array_equal(dark.frames[corner], photo.frames[corner])
    # The pulse is the same fraction of the darker skin.
    rel_photo = skin_green(still_photo) / skin_green(still_photo).mean()
    rel_dark = skin_green(still_dark) / skin_green(still_dark).mean()
    assert np.ptp(rel_photo) > 0.01
    np.testing.assert_allclose(rel_dark, rel_photo, atol=1e-4)


def test_lighter_tones_never_clip_the_skin():
    # Tone 1 is the brightest swatch; with the light drifting up 3 std, skin must stay below full scale.
    clip = synth_subject(duration_s=4.0, skin_tone=1, illumination_drift=0.03, noise_std=0.0, quantize=False,
                         seed=2, **SMALL)
    assert clip.frames[clip.skin_mask > 0.5].max() < 0.99


def test_speech_opening_has_syllables_bursts_and_pauses():
    fps = 30.0
    opening = speech_opening(np.random.default_rng(0), 900, fps)
    assert opening.min() >= 0 and opening.max() <= 1
    closed = opening < 0.02
    assert 0.1 < closed.mean() < 0.8  # pauses and syllable closures, but mostly talking
    # Syllable rate: the spectrum of the opening peaks in 3-6 Hz.
    freqs = np.fft.rfftfreq(len(opening), 1 / fps)
    power = np.abs(np.fft.rfft(opening - opening.mean())) ** 2
    assert 3.0 <= freqs[power[freqs > 1.0].argmax() + (freqs <= 1.0).sum()] <= 6.0
    # Pauses: some stretch of at least 0.3 s with the mouth closed.
    runs = np.diff(np.flatnonzero(np.diff(np.r_[0, closed.astype(int), 0])))[::2]
    assert runs.max() >= 0.3 * fps


@pytest.fixture(scope="module")
def talking_pair():
    common = dict(duration_s=8.0, hr_bpm=84, seed=5, motion_px=1.0)
    return synth_subject(talking=True, **common), synth_subject(**common)


def test_talking_moves_the_lower_face_only(talking_pair):
    talking, still_mouth = talking_pair
    x0, y0, x1, y1 = still_mouth.face_box[0]
    height = y1 - y0
    change = np.abs(talking.frames - still_mouth.frames).mean(axis=(0, 3))  # [H, W]
    cols = slice(int(x0), int(x1))
    upper = change[int(y0): int(y0 + 0.4 * height), cols].mean()  # forehead and eyes
    lower = change[int(y0 + 0.65 * height): int(y1), cols].mean()  # mouth and chin
    assert lower > 0.01 and upper < 0.002
    # Frame to frame, the mouth region changes far more than the forehead does (whose slow
    # light drift is the same in both).
    mouth = talking.frames[:, int(y0 + 0.65 * height): int(y0 + 0.8 * height), cols].mean(axis=(1, 2, 3))
    forehead = talking.frames[:, int(y0 + 0.1 * height): int(y0 + 0.25 * height), cols].mean(axis=(1, 2, 3))
    assert np.diff(mouth).std() > 5 * np.diff(forehead).std()
    # The skin mask follows the jaw.
    assert np.abs(talking.skin_mask - still_mouth.skin_mask).max() > 0.5


def test_talking_is_deterministic_and_leaves_other_clips_alone(talking_pair):
    talking, still_mouth = talking_pair
    again = synth_subject(duration_s=8.0, hr_bpm=84, seed=5, motion_px=1.0, talking=True)
    np.testing.assert_array_equal(again.frames, talking.frames)
    other = synth_subject(duration_s=8.0, hr_bpm=84, seed=6, motion_px=1.0, talking=True)
    assert np.abs(other.frames - talking.frames).max() > 0.1
    # Talking changes only the jaw: the pulse, motion, light and noise are the same draw.
    np.testing.assert_array_equal(talking.ppg, still_mouth.ppg)
    np.testing.assert_array_equal(talking.face_box, still_mouth.face_box)


@pytest.mark.parametrize("tone", [2, 9])
def test_pos_reads_the_pulse_of_a_talking_subject_saved_lossless(tmp_path, tone):
    from physiolatent_core import face, rppg, video

    clip = synth_subject(duration_s=10.0, hr_bpm=96, seed=tone, talking=True, skin_tone=tone)
    path = video.write_video(tmp_path / "talking.mkv", clip.frames, clip.fps)
    frames, fps = video.read_video(path)
    assert np.abs(frames - clip.frames).max() < 1.5 / 255  # lossless (our writer's dither moves a level at most)
    mask, _ = face.face_mask(frames, fps)  # our tracker's skin mask, not the ground truth
    result = rppg.estimate(frames, fps, mask, methods=["pos"])
    assert abs(result["pos"]["hr_bpm"] - clip.hr_bpm) < 3.0
