"""What an H.264 output path keeps of a small skin-colour change (physiolatent_core.codec)."""

import numpy as np
import pytest

from physiolatent_core import codec, editor
from physiolatent_core.errors import InputError
from physiolatent_core.synth import synth_subject

FPS = 30.0


@pytest.fixture(scope="module")
def sample():
    clip = synth_subject(duration_s=3.2, fps=FPS, size=(160, 208), seed=2, pulse_amplitude=0.003)
    x0, y0, x1, y1 = codec.sample_box(clip.skin_mask[:1], margin=0.75)
    return clip.frames[:, y0:y1, x0:x1], clip.skin_mask[:, y0:y1, x0:x1]


def test_sample_box_is_macroblock_aligned_and_inside_the_frame():
    mask = np.zeros((2, 100, 130), np.float32)
    mask[:, 40:60, 50:70] = 1.0
    x0, y0, x1, y1 = codec.sample_box(mask, margin=0.75)
    assert x0 % 16 == 0 and y0 % 16 == 0
    assert (x1 % 16 == 0 or x1 == 130) and (y1 % 16 == 0 or y1 == 100)
    assert x0 <= 35 and y0 <= 25 and x1 >= 85 and y1 >= 75


def test_near_lossless_path_keeps_the_colour_change(sample):
    frames, mask = sample
    gain = codec.colour_response(frames, mask, FPS, editor.BLOOD_VOLUME_DIRECTION, crf=0)
    np.testing.assert_allclose(gain, 1.0, atol=0.1)


def test_the_sample_is_left_as_given_and_uint8_measures_the_same(sample):
    """The round trips edit their own copies; 8-bit samples (what the editor keeps) give
    the gains of the same frames as float."""
    frames, mask = sample
    kept = frames.copy()
    as_float = codec.colour_response(frames, mask, FPS, editor.BLOOD_VOLUME_DIRECTION, crf=23, preset="ultrafast")
    np.testing.assert_array_equal(frames, kept)
    as_uint8 = codec.colour_response(np.round(frames * 255).astype(np.uint8), np.round(mask * 255).astype(np.uint8),
                                     FPS, editor.BLOOD_VOLUME_DIRECTION, crf=23, preset="ultrafast")
    np.testing.assert_allclose(as_uint8, as_float, atol=0.02)


def test_crf23_keeps_less_and_turns_the_colour(sample):
    """Measured on every clip tried: the green (luma-heavy) part of the pulse loses most."""
    frames, mask = sample
    gain = codec.colour_response(frames, mask, FPS, editor.BLOOD_VOLUME_DIRECTION, crf=23)
    assert gain[1] < 0.9 and gain[1] < min(gain[0], gain[2])


def test_too_short_or_faceless_samples_are_refused(sample):
    frames, mask = sample
    with pytest.raises(InputError, match="too short"):
        codec.colour_response(frames[:20], mask[:20], FPS, editor.BLOOD_VOLUME_DIRECTION)
    with pytest.raises(InputError, match="empty face mask"):
        codec.colour_response(frames, np.zeros_like(mask), FPS, editor.BLOOD_VOLUME_DIRECTION)
