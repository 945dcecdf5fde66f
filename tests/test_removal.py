"""Removal at every strength: the aligned band-stop (fine-scale colour, head motion) and the
pooled editor after it."""

import numpy as np
import pytest
from scipy import ndimage

from physiolatent_core import editor
from physiolatent_core.aligned_bandstop import AlignedBandStop
from physiolatent_core.editors import run_editor
from physiolatent_core.errors import InputError
from physiolatent_core.face.track import FaceTrack
from physiolatent_core.rppg.hr import snr_db
from physiolatent_core.synth import synth_subject

FPS = 30.0


def _texture(size: int, seed: int = 0) -> np.ndarray:
    """A skin-like textured RGB image [size, size, 3] around 0.5, with detail at several scales."""
    rng = np.random.default_rng(seed)
    grey = sum(ndimage.gaussian_filter(rng.standard_normal((size, size)), s) * s for s in (1.0, 3.0, 8.0))
    grey = 0.5 + 0.08 * grey / grey.std()
    return np.clip(np.stack([grey * 1.1, grey * 0.8, grey * 0.7], axis=-1), 0, 1).astype(np.float32)


def _still_track(n: int, size: int, box) -> FaceTrack:
    return FaceTrack(np.tile(np.asarray(box, float), (n, 1)), np.ones(n, bool), FPS, (size, size))


def _amplitude_at(x: np.ndarray, hz: float) -> np.ndarray:
    """Amplitude of the ``hz`` component of x [T, ...] along time."""
    t = np.arange(len(x)) / FPS
    return 2 * np.abs(np.tensordot(np.exp(-2j * np.pi * hz * t), x - x.mean(axis=0), axes=(0, 0))) / len(x)


def test_fine_scale_pulse_is_removed_and_large_changes_are_kept():
    # A pulse that pooling cancels (opposite phases 12 px apart: the face mean has none), which
    # only a pixel-level reader sees, and a 6 % in-band flicker in one corner (content).
    n, size, hz = 180, 128, 1.3
    base = _texture(size)
    t = np.arange(n) / FPS
    yy, xx = np.mgrid[:size, :size]
    checker = (np.sin(2 * np.pi * xx / 24) * np.sin(2 * np.pi * yy / 24)).astype(np.float32)
    pulse = 0.004 * np.sin(2 * np.pi * hz * t)[:, None, None] * checker
    content = np.zeros((size, size), np.float32)
    content[8:30, 8:30] = 1.0
    flicker = 0.06 * np.sin(2 * np.pi * 1.0 * t)[:, None, None] * content
    frames = base[None] * (1 + pulse + flicker)[..., None]
    mask = np.ones((n, size, size), np.float32)
    box = (22.0, 34.0, 106.0, 118.0)  # its mask region covers the frame
    stage = AlignedBandStop(FPS, _still_track(n, size, box), strength="max")
    out = run_editor(stage, frames.astype(np.float32), mask)

    def fine(frames_):  # the green change projected on the pattern: the fine-scale pulse
        g = frames_[:, 36:108, 36:108, 1] / base[None, 36:108, 36:108, 1]
        pattern = checker[36:108, 36:108]
        return _amplitude_at(np.einsum("tij,ij->t", g, pattern) / np.sum(pattern**2), hz)

    assert 20 * np.log10(fine(frames) / fine(out)) >= 12.0  # the fine pulse is gone
    kept = _amplitude_at(out[:, 12:26, 12:26, 1] / base[None, 12:26, 12:26, 1], 1.0).mean()
    assert kept >= 0.9 * 0.06  # the large change is content, left alone


def test_sub_pixel_pulse_band_motion_is_steadied_and_a_nod_is_kept():
    from physiolatent_core.aligned_bandstop import AlignedBandStop as Stage

    n, size = 180, 160
    big = _texture(size + 40, seed=2)
    t = np.arange(n) / FPS

    def moving(dy):  # the textured "head" moved down by dy [T] pixels
        import cv2

        return np.stack([cv2.warpAffine(big, np.float32([[1, 0, 0], [0, 1, d]]), big.shape[1::-1], flags=cv2.INTER_CUBIC,
                                        borderMode=cv2.BORDER_REFLECT)[20:-20, 20:-20] for d in dy])

    box = (40.0, 50.0, 120.0, 130.0)

    def band_motion(frames_, hz):
        prev, steps = None, []
        import cv2

        for f in frames_:
            g = cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2GRAY)
            steps.append(Stage._face_step(prev, g, np.array(box)))
            prev = g
        return _amplitude_at(np.cumsum(steps, axis=0)[:, 1], hz)

    bob = moving(0.3 * np.sin(2 * np.pi * 1.2 * t)).astype(np.float32)  # a ballistocardiographic bob
    mask = np.ones((n, size, size), np.float32)
    out = run_editor(Stage(FPS, _still_track(n, size, box), strength="max"), bob.copy(), mask)
    assert band_motion(bob, 1.2) > 0.25
    assert band_motion(out, 1.2) < 0.3 * band_motion(bob, 1.2)
    nod = moving(3.0 * np.sin(2 * np.pi * 1.0 * t)).astype(np.float32)  # a nod: content
    out = run_editor(Stage(FPS, _still_track(n, size, box), strength="max"), nod.copy(), mask)
    assert band_motion(out, 1.0) > 0.9 * band_motion(nod, 1.0)


@pytest.fixture(scope="module")
def talking():
    return synth_subject(duration_s=12.0, fps=FPS, hr_bpm=74.0, size=(200, 260), seed=7, pulse_amplitude=0.004)


@pytest.mark.parametrize("strength", ["standard", "max"])
def test_every_strength_hides_the_true_hr_within_the_fidelity_floor(talking, strength):
    from physiolatent_core import rppg

    res = editor.remove_pulse(talking.frames, FPS, face_mask=talking.skin_mask, robust_to="lossless",
                              strength=strength)
    before = rppg.estimate(talking.frames, FPS, talking.skin_mask)
    after = rppg.estimate(res.frames, FPS, talking.skin_mask)
    for name in before:
        assert abs(after[name]["hr_bpm"] - talking.hr_bpm) > 5.0, name
        drop = snr_db(before[name]["pulse"], FPS, talking.hr_bpm) - snr_db(after[name]["pulse"], FPS, talking.hr_bpm)
        assert drop >= 15.0, (name, drop)
    a8, b8 = (np.floor(x * 255 + 0.5) for x in (talking.frames, res.frames))
    psnr = 10 * np.log10(255**2 / np.mean((a8 - b8) ** 2))
    assert psnr >= 45.0
    if strength == "max":
        assert res.info["strength"] == "max" and res.info["aligned_bandstop"]["grid"] == [49, 40]
        assert res.info["predicted_psnr_db"] >= 45.0


def test_strength_errors():
    from physiolatent_core.pipeline import JobRequest

    with pytest.raises(InputError, match="removal strength must be one of"):
        JobRequest(input="a.mp4", mode="remove", output="b.mkv", strength="huge")
    with pytest.raises(InputError, match="give it to remove"):
        JobRequest(input="a.mp4", mode="edit", output="b.mkv", target=80, strength="max")
    with pytest.raises(InputError, match="strength must be one of"):
        AlignedBandStop(FPS, None, strength="gentle")
