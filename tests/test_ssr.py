"""SSR: the pixel-level estimator (skin colour distribution, not the mean colour)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from physiolatent_core import video
from physiolatent_core.errors import InputError
from physiolatent_core.rppg import ESTIMATORS, colour_moments, estimate_hr, extract_rgb, ssr
from physiolatent_core.synth import synth_subject

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.mark.parametrize("true_hr", [57.0, 103.0])
def test_ssr_reads_the_pulse_of_a_rendered_face(true_hr):
    clip = synth_subject(duration_s=10.0, fps=30.0, hr_bpm=true_hr, size=(120, 160), seed=int(true_hr))
    pulse = ssr(colour_moments(clip.frames, clip.skin_mask), clip.fps)
    assert pulse.shape == (len(clip.frames),) and np.all(np.isfinite(pulse))
    assert abs(estimate_hr(pulse, clip.fps) - clip.hr_bpm) <= 1.5


def test_ssr_ignores_a_brightness_flicker_that_fools_green():
    # Scaling every pixel alike leaves the skin-colour subspace where it is: a 1 % RMS flicker
    # at 150 bpm (2.5 times the rendered pulse's 0.4 %) takes GREEN, not SSR.
    clip = synth_subject(duration_s=10.0, fps=30.0, hr_bpm=70.0, size=(120, 160), seed=3)
    t = np.arange(len(clip.frames)) / clip.fps
    flicker = 1.0 + 0.01 * np.sqrt(2) * np.sin(2 * np.pi * 2.5 * t)
    frames = np.clip(clip.frames * flicker[:, None, None, None], 0, 1).astype(np.float32)
    green = ESTIMATORS["green"](extract_rgb(frames, clip.skin_mask), clip.fps)
    assert abs(estimate_hr(green, clip.fps) - 150.0) <= 2.0  # the flicker is what GREEN reads
    pulse = ssr(colour_moments(frames, clip.skin_mask), clip.fps)
    assert abs(estimate_hr(pulse, clip.fps) - clip.hr_bpm) <= 1.5


def test_colour_moments_are_weighted_second_moments_with_gaps_filled():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (4, 6, 5, 3), dtype=np.uint8)
    mask = rng.uniform(0, 1, (4, 6, 5)).astype(np.float32)
    mask[2] = 0.0  # face lost in frame 2
    got = colour_moments(frames, mask)
    v = frames.astype(np.float64) / 255.0
    for i in (0, 1, 3):
        w = mask[i].reshape(-1, 1).astype(np.float64)
        px = v[i].reshape(-1, 3)
        np.testing.assert_allclose(got[i], (px * w).T @ px / w.sum(), rtol=1e-6)
    np.testing.assert_allclose(got[2], (got[1] + got[3]) / 2)  # interpolated from its neighbours
    np.testing.assert_allclose(colour_moments(v.astype(np.float32), mask), got, rtol=1e-5)  # 8-bit == float


def test_ssr_explains_bad_input():
    frames = np.zeros((5, 4, 4, 3), np.float32)
    with pytest.raises(InputError, match="zero in every frame"):
        colour_moments(frames, np.zeros((5, 4, 4), np.float32))
    with pytest.raises(InputError, match="does not match"):
        colour_moments(frames, np.ones((5, 3, 4), np.float32))
    with pytest.raises(InputError, match=r"\[T, 3, 3\]"):
        ssr(np.zeros((30, 3)), 30.0)  # a mean-colour trace is not what SSR reads


@pytest.mark.shared_data
@pytest.mark.skipif(not (SHARED_DATA / "evm_face.mp4").exists(), reason="../shared/data not present")
def test_ssr_reads_the_real_evm_face_at_its_published_rate():
    """MIT EVM 'face' clip: published average pulse 53 bpm (PROVENANCE.md)."""
    frames, fps = video.read_video(SHARED_DATA / "evm_face.mp4", max_frames=300)
    h, w = frames.shape[1:3]
    mask = np.zeros((h, w), np.float32)
    mask[int(0.25 * h) : int(0.6 * h), int(0.3 * w) : int(0.7 * w)] = 1.0  # the forehead and cheeks
    assert abs(estimate_hr(ssr(colour_moments(frames, mask), fps), fps) - 53.0) <= 3.0
