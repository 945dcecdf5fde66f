"""network_editor.edit_with_model end to end on a short synthetic subject (tiny VAE, untrained adapter)."""

import numpy as np
import pytest

from physiolatent_core.errors import InputError
from physiolatent_core.model import PhysioLatent, PhysioLatentAdapter, adapter_config_tiny, build_vae, tiny_vae_config
from physiolatent_core.network_editor import edit_with_model

synth = pytest.importorskip("physiolatent_core.synth")
face = pytest.importorskip("physiolatent_core.face")


@pytest.fixture(scope="module")
def clip():
    return synth.synth_subject(duration_s=1.0, fps=15.0, hr_bpm=80.0, seed=3)


@pytest.fixture(scope="module")
def model():
    vae = build_vae(tiny_vae_config(), seed=0)
    return PhysioLatent(vae, PhysioLatentAdapter(adapter_config_tiny(), vae))


def test_edit_replaces_only_the_masked_face(clip, model):
    frames = clip.frames[:15]
    mask = clip.skin_mask[:15].astype(np.float32)
    res = edit_with_model(frames, clip.fps, 100.0, model, face_mask=mask, crop_size=32,
                          window_frames=9, context_frames=3)
    assert res.frames.shape == frames.shape and res.frames.dtype == np.float32
    outside = mask == 0
    assert outside.any() and np.array_equal(res.frames[outside], frames[outside])  # untouched outside the mask
    near = mask < 1e-3
    assert np.abs(res.frames[near] - frames[near]).max() <= 1e-3
    inside = mask > 0.99
    assert inside.any() and np.abs(res.frames[inside] - frames[inside]).mean() > 1e-4  # decoder output used
    assert res.mode == "edit" and res.target_hr_bpm == 100.0


def test_edit_argument_errors(clip, model):
    frames = clip.frames[:9]
    with pytest.raises(InputError, match="between 30 and 240"):
        edit_with_model(frames, clip.fps, 2.0, model, crop_size=32)
    with pytest.raises(InputError, match="mode"):
        edit_with_model(frames, clip.fps, 80.0, model, crop_size=32, mode="boost")
    with pytest.raises(InputError, match="multiple of 8"):
        edit_with_model(frames, clip.fps, 80.0, model, crop_size=36)
