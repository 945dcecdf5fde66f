"""The training-free editor on synthetic subjects with a known pulse."""

import numpy as np
import pytest

from physiolatent_core import editor, rppg, video
from physiolatent_core.errors import InputError
from physiolatent_core.pulse import hr_curve, parse_hr_target
from physiolatent_core.rppg.hr import estimate_hr, hr_over_time, snr_db
from physiolatent_core.synth import synth_subject

FPS = 30.0


@pytest.fixture(scope="module")
def clip():
    return synth_subject(duration_s=12.0, fps=FPS, hr_bpm=68.0, size=(200, 260), seed=4, pulse_amplitude=0.004)


@pytest.fixture(scope="module")
def very_dark_clip():
    """Monk tone 10: face skin ~32 grey levels, a 1 % change is a third of a level."""
    return synth_subject(duration_s=12.0, fps=FPS, hr_bpm=68.0, size=(200, 260), seed=0, pulse_amplitude=0.004,
                         skin_tone=10)


def read_all(frames, mask):
    rgb = rppg.extract_rgb(frames, mask)
    return {name: fn(rgb, FPS) for name, fn in rppg.ESTIMATORS.items()}


def psnr(a, b):
    return 10 * np.log10(1.0 / np.mean((a.astype(np.float64) - b) ** 2))


@pytest.mark.parametrize("target", [55.0, 83.7, 130.0])
def test_every_estimator_reads_a_constant_target(clip, target):
    res = editor.edit_pulse(clip.frames, FPS, target, face_mask=clip.skin_mask, robust_to="lossless")
    for name, pulse in read_all(res.frames, clip.skin_mask).items():
        assert abs(estimate_hr(pulse, FPS) - target) <= 3.0, name


def test_trajectory_is_followed(clip):
    res = editor.edit_pulse(clip.frames, FPS, "70:120", face_mask=clip.skin_mask, robust_to="lossless")
    pulse = read_all(res.frames, clip.skin_mask)["pos"]
    times, hrs = hr_over_time(pulse, FPS, window_s=6.0, step_s=1.0)
    want = 70 + 50 * np.asarray(times) / (len(pulse) / FPS)
    assert np.mean(np.abs(np.asarray(hrs) - want)) < 4.0
    assert hrs[-1] - hrs[0] > 25  # it really rises


def test_every_estimator_follows_a_trajectory_window_by_window():
    # PCA and ICA pick, per window, the colour component with the sharpest spectral peak: a
    # 70->120 bpm sweep is spread over ~20 bpm in 6 s, so any narrow residual in another
    # colour direction wins. The removed own pulse must therefore add none: pooled as the
    # estimators pool the face, it must equal the face's own pulse exactly (a subject with
    # 2.5 px of head motion, which moves colour between the editor's grid cells).
    subject = synth_subject(duration_s=12.0, fps=FPS, hr_bpm=66.0, size=(240, 320), seed=7, motion_px=2.5,
                            pulse_amplitude=0.006)
    res = editor.edit_pulse(subject.frames, FPS, "70:120", face_mask=subject.skin_mask, robust_to="lossless")
    rgb = rppg.extract_rgb(res.frames, subject.skin_mask)
    want = hr_curve(parse_hr_target("70:120"), len(rgb), FPS)
    n = int(6 * FPS)
    for name, estimator in rppg.ESTIMATORS.items():
        errors = [abs(estimate_hr(estimator(rgb[s : s + n], FPS), FPS) - want[s : s + n].mean())
                  for s in range(0, len(rgb) - n + 1, int(FPS))]
        assert np.mean(errors) <= 3.0, (name, np.round(errors, 1))


def test_edit_is_invisible_and_local(clip):
    res = editor.edit_pulse(clip.frames, FPS, 100, face_mask=clip.skin_mask, robust_to="lossless")
    assert psnr(res.frames, clip.frames) >= 52.0
    outside = clip.skin_mask == 0
    assert np.array_equal(res.frames[outside], clip.frames[outside])
    # Lossless path: temporal dither to 8 bit keeps the edit.
    stored = video.quantize_to_uint8(res.frames, method="dither").astype(np.float32) / 255
    assert abs(estimate_hr(read_all(stored, clip.skin_mask)["pos"], FPS) - 100) <= 3.0


def talking_skin(clip, rms=0.014):
    """The clip with skin brightness changing in the pulse band (84-126 bpm), on 8-bit levels."""
    from scipy import signal

    band = signal.butter(2, [1.4, 2.1], btype="bandpass", fs=FPS, output="sos")
    motion = signal.sosfiltfilt(band, np.random.default_rng(0).standard_normal(len(clip.frames)))
    motion *= rms / motion.std()
    frames = np.clip(clip.frames * (1.0 + motion[:, None, None, None] * clip.skin_mask[..., None]), 0, 1)
    return video.quantize_to_uint8(frames, "round").astype(np.float32) / 255


def test_lossless_edit_keeps_its_fidelity_floor(clip):
    # The editor predicts the PSNR of the 8-bit file from the pooled colours; under a floor
    # it raises the strength, spreads the change and removes the "own pulse" (here facial
    # motion) only as far as the floor allows.
    frames = talking_skin(clip, rms=0.02)

    def stored_psnr(res):
        return psnr(video.quantize_to_uint8(res.frames, method="dither").astype(np.float32) / 255, frames)

    free = editor.edit_pulse(frames, FPS, 130, face_mask=clip.skin_mask, robust_to="lossless", min_psnr_db=0)
    assert free.info["min_psnr_db"] is None and free.info["own_removed_fraction"] == 1.0
    measured = stored_psnr(free)
    assert abs(free.info["predicted_psnr_db"] - measured) < 1.0
    floor = measured + 2.0
    kept = editor.edit_pulse(frames, FPS, 130, face_mask=clip.skin_mask, robust_to="lossless", min_psnr_db=floor)
    assert kept.info["predicted_psnr_db"] >= floor
    assert stored_psnr(kept) >= floor - 0.5
    assert (kept.info["evenness"], kept.info["own_removed_fraction"]) != editor.FIDELITY_STEPS[0]
    # Removal never removes less of the own pulse; out of reach of the floor it spreads it evenly.
    gone = editor.remove_pulse(frames, FPS, face_mask=clip.skin_mask, robust_to="lossless", min_psnr_db=80)
    assert (gone.info["evenness"], gone.info["own_removed_fraction"]) == (1.0, 1.0)
    assert gone.info["predicted_psnr_db"] < 80
    # The default floor is the lossless path's; H.264 outputs have none.
    assert editor.PulseEditor(FPS, "edit", target=90, robust_to="lossless").min_psnr_db == 52.0
    assert editor.PulseEditor(FPS, "edit", target=90, robust_to="h264").min_psnr_db is None


def test_strength_rises_only_where_the_clip_would_outvote_the_pulse(clip):
    # A clean clip keeps the lossless amplitude (and its fidelity).
    res = editor.edit_pulse(clip.frames, FPS, 100, face_mask=clip.skin_mask, robust_to="lossless")
    assert res.info["injected_rms"] == editor.AMPLITUDE_FOR["lossless"]
    assert res.info["predicted_misreads"] == []
    # Skin brightness changing in the pulse band (1.4 % RMS, 84-126 bpm, like the facial
    # motion of a generated talking head) outvotes the lossless amplitude in GREEN; the
    # editor raises the amplitude until every estimator reads the target.
    frames = talking_skin(clip)
    base = editor.AMPLITUDE_FOR["lossless"]
    fixed = editor.edit_pulse(frames, FPS, 130, face_mask=clip.skin_mask, robust_to="lossless", amplitude=base)
    assert fixed.info["injected_rms"] == base  # an explicit amplitude is kept
    errors = [abs(estimate_hr(p, FPS) - 130) for p in read_all(fixed.frames, clip.skin_mask).values()]
    assert max(errors) > 3.0  # the problem
    res = editor.edit_pulse(frames, FPS, 130, face_mask=clip.skin_mask, robust_to="lossless")
    assert base < res.info["injected_rms"] <= editor.AMPLITUDE_MAX_FOR["lossless"]
    assert res.info["predicted_misreads"] == []
    for name, pulse in read_all(res.frames, clip.skin_mask).items():
        assert abs(estimate_hr(pulse, FPS) - 130) <= 3.0, name


def test_strength_rises_where_a_face_box_reader_would_see_the_background(clip):
    # Readers that average a whole face box (as rPPG-Toolbox crops, 1.5x the detector's box;
    # our mask's box is larger than a detector's, so 1.25x of it here) also see background,
    # hair and unmasked skin, which the edit leaves alone. A background flickering in the pulse
    # band (0.8 % RMS, 84-126 bpm) outvotes the lossless amplitude in GREEN through that box.
    from scipy import signal

    band = signal.butter(2, [1.4, 2.1], btype="bandpass", fs=FPS, output="sos")
    flicker = signal.sosfiltfilt(band, np.random.default_rng(0).standard_normal(len(clip.frames)))
    flicker *= 0.008 / flicker.std()
    outside = 1.0 - clip.skin_mask[..., None]
    frames = np.clip(clip.frames * (1.0 + flicker[:, None, None, None] * outside), 0, 1).astype(np.float32)
    on = clip.skin_mask.max(axis=0) > 0.05
    rows, cols = np.flatnonzero(on.any(axis=1)), np.flatnonzero(on.any(axis=0))
    cy, cx = (rows[0] + rows[-1]) / 2, (cols[0] + cols[-1]) / 2
    half = 1.25 * max(rows[-1] - rows[0], cols[-1] - cols[0]) / 2
    box = np.zeros(on.shape, np.float32)
    box[int(cy - half) : int(cy + half), int(cx - half) : int(cx + half)] = 1.0

    base = editor.AMPLITUDE_FOR["lossless"]
    fixed = editor.edit_pulse(frames, FPS, 130, face_mask=clip.skin_mask, robust_to="lossless", amplitude=base)
    assert abs(estimate_hr(read_all(fixed.frames, box)["green"], FPS) - 130) > 3.0  # the problem
    res = editor.edit_pulse(frames, FPS, 130, face_mask=clip.skin_mask, robust_to="lossless")
    assert base < res.info["injected_rms"] <= editor.AMPLITUDE_MAX_FOR["lossless"]
    assert res.info["predicted_misreads"] == []
    for roi in (clip.skin_mask, box):
        for name, pulse in read_all(res.frames, roi).items():
            assert abs(estimate_hr(pulse, FPS) - 130) <= 3.0, name


def test_remove_hides_the_true_hr(clip):
    res = editor.remove_pulse(clip.frames, FPS, face_mask=clip.skin_mask, robust_to="lossless")
    before, after = read_all(clip.frames, clip.skin_mask), read_all(res.frames, clip.skin_mask)
    for name in before:
        assert abs(estimate_hr(after[name], FPS) - clip.hr_bpm) > 5.0, name
        assert snr_db(before[name], FPS, clip.hr_bpm) - snr_db(after[name], FPS, clip.hr_bpm) >= 15.0, name


def test_chaff_leaves_every_notched_rate_empty():
    # Removal's chaff is notched at the own HR and, where the estimators agree on another
    # rate (a "pulse" that is motion), there too: no reader may find a peak at either.
    from scipy.signal import welch

    n, rng = 30 * 60, np.random.default_rng(1)
    t = np.arange(n) / FPS
    phases = [2 * np.pi * 70 / 60 * t, 2 * np.pi * 110 / 60 * t]
    chaff = editor._chaff(n, FPS, phases, (40.0, 180.0), rng)
    freqs, power = welch(chaff @ editor.BLOOD_VOLUME_DIRECTION, fs=FPS, nperseg=1024)
    bpm = freqs * 60
    band = (bpm >= 40) & (bpm <= 180)
    for notch in (70, 110):
        near = np.abs(bpm - notch) <= 2.0
        assert power[near].mean() < 0.1 * power[band].mean(), notch


def test_remove_with_decoy_reads_the_decoy(clip):
    res = editor.remove_pulse(clip.frames, FPS, face_mask=clip.skin_mask, decoy_hr_bpm=95.0, robust_to="lossless")
    assert abs(estimate_hr(read_all(res.frames, clip.skin_mask)["chrom"], FPS) - 95.0) <= 3.0
    with pytest.raises(InputError, match="decoy"):
        editor.remove_pulse(clip.frames, FPS, face_mask=clip.skin_mask, decoy_hr_bpm=70.0)


def test_edit_survives_comfyui_savevideo_path(clip):
    """Truncation to 8 bit + libx264 crf 23 yuv420p, as core SaveVideo writes."""
    res = editor.edit_pulse(clip.frames, FPS, 75, face_mask=clip.skin_mask, robust_to="h264",
                            codec_quantize="truncate")
    saved = video.encode_decode(res.frames, FPS, codec="h264", crf=23, quantize="truncate")
    for name, pulse in read_all(saved, clip.skin_mask).items():
        assert abs(estimate_hr(pulse, FPS) - 75) <= 3.0, name
        # PBV cancels a strong pulse that the codec turned off the blood-volume direction;
        # measured here 8.5 dB for PBV, 19-22 dB for the others.
        assert snr_db(pulse, FPS, 75) > 6.0, name


def test_edit_survives_h264_on_dark_skin(clip):
    """Monk tone 8 (skin ~60 grey levels): the same relative change is fewer levels, so
    H.264 keeps less of it; the editor measures that and still gets the target through."""
    dark = synth_subject(duration_s=12.0, fps=FPS, hr_bpm=68.0, size=(200, 260), seed=4, pulse_amplitude=0.004,
                         skin_tone=8)
    res = editor.edit_pulse(dark.frames, FPS, 100, face_mask=dark.skin_mask, robust_to="h264")
    light = editor.edit_pulse(clip.frames[:150], FPS, 100, face_mask=clip.skin_mask[:150], robust_to="h264")
    assert res.info["codec_gain_rgb"][1] < light.info["codec_gain_rgb"][1] - 0.05
    saved = video.encode_decode(res.frames, FPS, codec="h264", crf=23)
    for name, pulse in read_all(saved, dark.skin_mask).items():
        assert abs(estimate_hr(pulse, FPS) - 100) <= 3.0, name


@pytest.mark.parametrize("target", [55.0, 100.0])
def test_edit_survives_savevideo_truncation_on_very_dark_skin(very_dark_clip, target):
    """Monk tone 10: the change is under a level in every channel, which truncation would
    turn into a plain brightness step (the colour-model readers then read the subject's own
    68 bpm); made in whole levels, it is kept as it is."""
    dark = very_dark_clip
    res = editor.edit_pulse(dark.frames, FPS, target, face_mask=dark.skin_mask, robust_to="h264",
                            codec_quantize="truncate")
    steps = res.frames.astype(np.float64) * 255 - np.rint(dark.frames * 255)
    assert np.abs(steps - np.rint(steps)).max() < 2e-3, "the change is in whole levels"
    saved = video.encode_decode(res.frames, FPS, codec="h264", crf=23, quantize="truncate")
    for name, pulse in read_all(saved, dark.skin_mask).items():
        assert abs(estimate_hr(pulse, FPS) - target) <= 3.0, name


def test_whole_levels_only_for_a_sub_level_change_and_then_chunks_in_order(clip, very_dark_clip):
    light = editor.edit_pulse(clip.frames[:150], FPS, 90, face_mask=clip.skin_mask[:150], robust_to="h264",
                              codec_quantize="truncate")
    assert light.info["change_green_levels"] > editor.WHOLE_LEVEL_BELOW and not light.info["whole_levels"]
    dark = very_dark_clip
    ed = editor.PulseEditor(FPS, "edit", target=90, robust_to="lossless", codec_quantize="truncate")
    ed.observe(dark.frames, dark.skin_mask)
    info = ed.plan()
    assert info["change_green_levels"] < editor.WHOLE_LEVEL_BELOW and info["whole_levels"]
    ed.apply(dark.frames[:50], dark.skin_mask[:50], 0)
    with pytest.raises(InputError, match="in order"):
        ed.apply(dark.frames[100:], dark.skin_mask[100:], 100)


def test_codec_compensation_is_measured_only_for_h264(clip):
    lossless = editor.edit_pulse(clip.frames[:150], FPS, 90, face_mask=clip.skin_mask[:150], robust_to="lossless")
    assert lossless.info["codec_gain_rgb"] == [1.0, 1.0, 1.0] and lossless.info["codec"] is None
    h264 = editor.edit_pulse(clip.frames[:150], FPS, 90, face_mask=clip.skin_mask[:150], robust_to="h264")
    gain = np.array(h264.info["codec_gain_rgb"])
    assert np.all(gain < 1.0) and gain[1] < gain[0] and h264.info["codec"]["crf"] == 23
    assert h264.info["codec"]["test_hz"] == pytest.approx(1.5)  # measured at the injected rate


@pytest.mark.parametrize("quantize", ["dither", "truncate"])
def test_streaming_equals_whole_clip_and_is_deterministic(clip, very_dark_clip, quantize):
    subject = clip if quantize == "dither" else very_dark_clip  # truncate: made in whole levels
    frames, mask = subject.frames, subject.skin_mask
    whole = editor.edit_pulse(frames, FPS, 90, face_mask=mask, seed=7, codec_quantize=quantize)
    assert whole.info["whole_levels"] == (quantize == "truncate")
    ed = editor.PulseEditor(FPS, "edit", target=90, seed=7, codec_quantize=quantize)
    chunks = [(s, min(s + 100, len(frames))) for s in range(0, len(frames), 100)]
    for a, b in chunks:
        ed.observe(frames[a:b], mask[a:b])
    assert ed._gain_future is not None  # the codec measurement started once its 4 s sample was in
    ed.plan()
    streamed = np.concatenate([ed.apply(frames[a:b], mask[a:b], a) for a, b in chunks])
    np.testing.assert_array_equal(streamed, whole.frames)
    again = editor.edit_pulse(frames, FPS, 90, face_mask=mask, seed=7, codec_quantize=quantize).frames
    np.testing.assert_array_equal(again, whole.frames)


def test_bad_inputs_are_explained(clip):
    frames, mask = clip.frames, clip.skin_mask
    with pytest.raises(InputError, match="fps"):
        editor.edit_pulse(frames, 0, 80, face_mask=mask)
    with pytest.raises(InputError, match="30"):
        editor.edit_pulse(frames, FPS, 300, face_mask=mask)
    with pytest.raises(InputError, match="mask"):
        editor.edit_pulse(frames, FPS, 80, face_mask=mask[:-1])
    with pytest.raises(InputError, match="RGB"):
        editor.edit_pulse(frames[..., 0], FPS, 80, face_mask=mask)
    with pytest.raises(InputError):  # 2 s cannot carry a readable HR
        editor.edit_pulse(frames[:60], FPS, 80, face_mask=mask[:60])
    with pytest.raises(InputError, match="mask"):
        editor.edit_pulse(frames, FPS, 80, face_mask=np.zeros_like(mask))


def test_lossless_edit_leaves_motion_in_step_with_the_pulse_alone(clip, monkeypatch):
    """A patch of skin that flickers 15x as strongly as the face's pulse, at its rate, is
    motion (a brow, a talking mouth), not blood volume: a lossless edit bounds each cell's
    share of the own pulse (``OWN_SHARE_MAX``), so it takes less of that flicker out."""
    frames, mask = clip.frames.copy(), clip.skin_mask
    t = np.arange(len(frames)) / FPS
    ys, xs = np.nonzero(mask.mean(axis=0) > 0.5)
    cy, cx, h, w = int(ys.mean()), int(xs.mean()), (ys.max() - ys.min()) // 6, (xs.max() - xs.min()) // 6
    patch = (slice(None), slice(cy - h // 2, cy + h // 2), slice(cx - w // 2, cx + w // 2))  # ~1/36 of the face
    own = editor.edit_pulse(frames, FPS, 90, face_mask=mask, robust_to="lossless").info["own_hr_bpm"]
    flicker = 1.0 + 0.06 * np.sin(2 * np.pi * own / 60.0 * t)[:, None, None, None]
    frames[patch] = np.clip(frames[patch] * flicker.astype(np.float32), 0, 1)

    def flicker_removed(share_max):  # the share of the patch's flicker that the edit took out
        monkeypatch.setattr(editor, "OWN_SHARE_MAX", share_max)
        res = editor.edit_pulse(frames, FPS, 90, face_mask=mask, robust_to="lossless")
        change = (res.frames[patch] - frames[patch]).mean(axis=(1, 2, 3)) / frames[patch].mean()
        return float(-2 * np.mean(change * np.sin(2 * np.pi * own / 60.0 * t)) / 0.06)

    # Measured: 0.094 of the flicker taken out with the bound, 0.138 without (the patch
    # straddles grid cells, so neither takes out much).
    assert flicker_removed(editor.OWN_SHARE_MAX) < 0.8 * flicker_removed(np.inf)


def test_removing_a_reading_near_the_own_hr_takes_it_once():
    # A brightness flicker of the skin at 60 bpm, 8 bpm from the pulse (68): GREEN reads the
    # flicker, POS (the own-HR reader) the pulse. The own pulse's removal already takes much of
    # 60 bpm (its band holds the sidebands of breathing and HRV); taking the reading's rate
    # from the face colour again would put the flicker back inverted (liveportrait_d10).
    from physiolatent_core.editors import run_editor

    clip = synth_subject(duration_s=12.0, fps=FPS, hr_bpm=68.0, size=(200, 260), seed=4, pulse_amplitude=0.003,
                         motion_px=0.0)
    t = np.arange(len(clip.frames)) / FPS
    flicker = 1.0 + 0.006 * np.sin(2 * np.pi * 60.0 / 60.0 * t)
    frames = clip.frames * np.where(clip.skin_mask[..., None] > 0, flicker[:, None, None, None], 1.0)
    frames = frames.astype(np.float32)
    before = read_all(frames, clip.skin_mask)
    assert abs(estimate_hr(before["green"], FPS) - 60.0) <= 2.0 and abs(estimate_hr(before["pos"], FPS) - 68.0) <= 2.0

    remover = editor.PulseEditor(FPS, "remove", robust_to="lossless", min_psnr_db=0)
    remover.remove_readings = True  # as removal.PrivacyRemover asks
    after = read_all(run_editor(remover, frames, clip.skin_mask), clip.skin_mask)
    assert any(abs(bpm - 60.0) < 2.0 for bpm in remover.info["readings_removed_bpm"])
    drop = snr_db(before["green"], FPS, 60.0) - snr_db(after["green"], FPS, 60.0)
    assert drop >= 10.0, drop
    assert abs(estimate_hr(after["green"], FPS) - 60.0) > 5.0
