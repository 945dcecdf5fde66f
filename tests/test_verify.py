"""verify(): JSON report on before/after clips with known pulses; plots and atomic saving."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from physiolatent_core.errors import InputError
from physiolatent_core.rppg import ESTIMATORS, METHODS, ColourTraces, extract_rgb, read_traces
from physiolatent_core.verify import (PSNR_CAP_DB, figure_to_image, plot_pulse, psnr_db, save_figure, verify,
                                      verify_traces)

FPS = 30.0
H, W = 40, 48


def _face_clip(hr_bpm, duration_s=8.0, seed=0, amplitude=0.004):
    """A small textured 'face' [T,H,W,3] whose skin box pulses at ``hr_bpm``, and its mask [H,W]."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(duration_s * FPS)) / FPS
    texture = np.array([0.7, 0.5, 0.4]) * rng.uniform(0.85, 1.15, (H, W, 1))
    mask = np.zeros((H, W), np.float32)
    mask[8:32, 10:38] = 1.0
    pulse = np.sin(2 * np.pi * hr_bpm / 60.0 * t)
    gain = 1.0 + amplitude * np.outer(pulse, [0.33, 0.77, 0.53])  # [T, 3]
    frames = texture[None] * (1.0 + (gain[:, None, None, :] - 1.0) * mask[None, :, :, None])
    frames += np.random.default_rng(seed + 1).normal(0, 0.003, frames.shape)
    return np.clip(frames, 0, 1).astype(np.float32), mask


def test_verify_reports_before_after_and_target():
    before, mask = _face_clip(68.0, seed=1)
    after, _ = _face_clip(112.0, seed=1)
    report = verify(after, FPS, mask=mask, reference_frames=before, target_hr_bpm=112.0)
    text = json.dumps(report, allow_nan=False)  # strict JSON: no numpy types, no NaN
    assert json.loads(text) == report

    assert report["n_frames"] == len(after) and report["duration_s"] == pytest.approx(8.0)
    assert set(report["hr_bpm"]) == set(report["methods"]) and report["methods"] == list(METHODS)
    for name in ("pos", "chrom", "green", "lgi", "omit", "ssr"):
        assert abs(report["hr_bpm"][name] - 112.0) <= 3.0
        assert abs(report["hr_bpm_before"][name] - 68.0) <= 3.0
        assert report["target_within_3bpm"][name] is True
        # the reference pulse at 68 bpm is gone from the edited clip
        assert report["snr_db_after"][name] < report["snr_db_before"][name] - 10.0
        assert report["snr_db_at_target"][name] > 0
    assert abs(report["hr_bpm_median"] - 112.0) <= 3.0
    assert report["hr_error_against"] == "target_hr_bpm"
    assert report["hr_mae_bpm"] == pytest.approx(np.mean(list(report["hr_error_bpm"].values())))
    assert 30.0 < report["psnr_db"] < PSNR_CAP_DB
    assert 0.5 < report["ssim"] < 1.0 and report["ssim_frames"] == 6


def test_verify_traces_read_ssr_only_from_colour_moments():
    # Streaming callers keep ColourTraces per chunk; a mean-colour trace [T, 3] serves the
    # eight mean-colour estimators, and SSR, which reads the pixels' colour distribution,
    # asks for the moments by name instead of reading something else.
    clip, mask = _face_clip(90.0, seed=3)
    chunks = [read_traces(clip[i : i + 50], mask, ["pos", "ssr"]) for i in range(0, len(clip), 50)]
    joined = ColourTraces.join(chunks)
    report = verify_traces(joined, FPS, methods=["pos", "ssr"])
    assert abs(report["hr_bpm"]["ssr"] - 90.0) <= 3.0 and abs(report["hr_bpm"]["pos"] - 90.0) <= 3.0
    whole = verify(clip, FPS, mask=mask, methods=["pos", "ssr"])
    assert report["hr_bpm"] == pytest.approx(whole["hr_bpm"])  # chunked == whole clip
    plain = verify_traces(extract_rgb(clip, mask), FPS)
    assert plain["methods"] == list(ESTIMATORS)  # no moments: every mean-colour estimator
    with pytest.raises(InputError, match="SSR reads the skin pixels"):
        verify_traces(extract_rgb(clip, mask), FPS, methods=["ssr"])


def test_verify_off_target_and_true_hr():
    clip, mask = _face_clip(75.0, seed=2)
    report = verify(clip, FPS, mask=mask, methods=["pos", "chrom"], target_hr_bpm=120.0, true_hr_bpm=75.0)
    assert report["methods"] == ["pos", "chrom"]
    assert report["target_within_3bpm"] == {"pos": False, "chrom": False}
    assert report["hr_error_against"] == "true_hr_bpm"
    assert all(e <= 3.0 for e in report["hr_error_bpm"].values())
    assert "psnr_db" not in report  # no reference given


def test_verify_identical_clip_and_psnr():
    clip, mask = _face_clip(80.0, seed=3)
    report = verify(clip, FPS, mask=mask, methods="pos", reference_frames=clip.copy())
    assert report["psnr_db"] == PSNR_CAP_DB
    assert report["ssim"] == pytest.approx(1.0)
    assert report["hr_bpm"]["pos"] == pytest.approx(report["hr_bpm_before"]["pos"])
    noisy = np.clip(clip + np.random.default_rng(0).normal(0, 0.01, clip.shape), 0, 1).astype(np.float32)
    mse = np.mean((noisy.astype(np.float64) - clip) ** 2)
    assert psnr_db(noisy, clip) == pytest.approx(10 * np.log10(1 / mse), abs=1e-3)


def test_verify_grey_video_gives_null_not_nan():
    clip, mask = _face_clip(80.0, seed=4)
    grey = np.repeat(clip.mean(axis=-1, keepdims=True), 3, axis=-1)
    report = verify(grey, FPS, mask=mask, methods=["pos", "green"])
    json.dumps(report, allow_nan=False)
    assert report["hr_bpm"]["pos"] is None  # POS sees no chrominance in a grey clip
    assert report["hr_bpm"]["green"] is not None


def test_verify_rejects_bad_input():
    clip, mask = _face_clip(80.0, seed=5)
    with pytest.raises(InputError, match="differ in shape"):
        verify(clip, FPS, reference_frames=clip[:-1])
    with pytest.raises(InputError, match=r"at least 4\.0 s"):
        verify(clip[:60], FPS)
    with pytest.raises(InputError, match=r"\[T, H, W, 3\]"):
        verify(clip[..., 0], FPS)
    with pytest.raises(InputError, match="unknown rPPG method"):
        verify(clip, FPS, methods=["posx"])
    with pytest.raises(InputError, match="divide 8-bit frames by 255"):
        verify((clip * 255).astype(np.uint8), FPS)


def test_plot_pulse_figure_image_and_atomic_save(tmp_path):
    before, mask = _face_clip(65.0, seed=6)
    after, _ = _face_clip(105.0, seed=6)
    fig = plot_pulse(after, FPS, before=before, mask=mask, target_hr_bpm=105.0)
    ax_wave, ax_spec = fig.axes[:2]
    assert len(ax_wave.lines) == 2  # before and after waveforms
    labels = [t.get_text() for t in ax_spec.texts]
    assert any(abs(float(s.split()[0]) - 105.0) <= 3.0 for s in labels), labels
    assert any(abs(float(s.split()[0]) - 65.0) <= 3.0 for s in labels), labels
    dashed = [ln for ln in ax_spec.lines if ln.get_linestyle() == "--"]
    assert len(dashed) == 1 and dashed[0].get_xdata()[0] == pytest.approx(105.0)

    img = figure_to_image(fig)
    assert img.ndim == 3 and img.shape[2] == 3 and img.dtype == np.float32
    assert 0.0 <= img.min() and img.max() <= 1.0 and img.std() > 0.01  # not blank

    out = tmp_path / "plots" / "pulse.png"
    assert save_figure(fig, out) == str(out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert os.listdir(out.parent) == ["pulse.png"]  # no temp file left behind
    with pytest.raises(InputError, match="already exists"):
        save_figure(fig, out)
    save_figure(fig, out, overwrite=True)


def test_plot_pulse_accepts_pulses_and_traces():
    t = np.arange(240) / FPS
    pulse = np.sin(2 * np.pi * 1.5 * t)
    fig = plot_pulse(pulse, FPS)
    assert len(fig.axes[0].lines) == 1
    assert "90" in fig.axes[1].texts[0].get_text()
    rgb = np.stack([0.6 + 0 * t, 0.5 + 0.002 * pulse, 0.4 + 0 * t], axis=1)
    fig2 = plot_pulse(rgb, FPS, method="green")
    assert "90" in fig2.axes[1].texts[0].get_text()


def test_verify_on_synth_clip_reads_truth():
    synth = pytest.importorskip("physiolatent_core.synth")
    clip = synth.synth_subject(duration_s=6.0, fps=25.0, hr_bpm=88.0, size=(80, 96), seed=7)
    report = verify(clip.frames, clip.fps, mask=clip.skin_mask, methods=["pos", "chrom"], true_hr_bpm=clip.hr_bpm)
    assert report["hr_error_against"] == "true_hr_bpm"
    assert all(e <= 3.0 for e in report["hr_error_bpm"].values()), report["hr_bpm"]
