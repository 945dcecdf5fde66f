"""rPPG estimators, HR/SNR, traces and differentiable POS on synthetic signals with known HR."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from physiolatent_core.errors import InputError
from physiolatent_core.rppg import ESTIMATORS, estimate, extract_rgb, hr
from physiolatent_core.rppg.estimators import pos_raw
from physiolatent_core.rppg.traces import detrend

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
PBV_DIRECTION = np.array([0.33, 0.77, 0.53])
SKIN = np.array([0.72, 0.52, 0.42])


def synth_trace(hr_bpm, fps=30.0, duration_s=12.0, seed=0, noise=3e-4, motion=0.004, inband_motion=0.0):
    """Mean skin colour [T, 3] with a pulse of known HR.

    skin * (1 + 0.3 % * pulse * blood-volume direction) * intensity(t) + noise, where
    intensity(t) carries a slow illumination drift (+3 % over the clip), sway at 0.23 Hz
    (``motion``, outside the HR band) and optionally an in-band intensity wobble of
    amplitude ``inband_motion`` at a random frequency (the hard case for GREEN).
    """
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(duration_s * fps))) / fps
    f = hr_bpm / 60.0
    phase = rng.uniform(0, 2 * np.pi)
    # slight HRV: +-1 bpm slow wobble of the instantaneous rate
    inst_phase = 2 * np.pi * f * t + (1.0 / 60.0) / 0.1 * np.sin(2 * np.pi * 0.1 * t) + phase
    pulse = np.sin(inst_phase) + 0.35 * np.sin(2 * inst_phase + 1.0)
    pulse /= pulse.std()
    intensity = (1.0 + 0.03 * t / t[-1]) * (1.0 + motion * np.sin(2 * np.pi * 0.23 * t + rng.uniform(0, 6)))
    if inband_motion:
        intensity *= 1.0 + inband_motion * np.sin(2 * np.pi * rng.uniform(0.75, 2.9) * t + rng.uniform(0, 6))
    rgb = SKIN * (1.0 + 0.003 * np.outer(pulse, PBV_DIRECTION)) * intensity[:, None]
    return rgb + rng.normal(0.0, noise, rgb.shape)


# --------------------------------------------------------------------------- HR from a spectrum


@pytest.mark.parametrize("fps", [30.0, 25.0])
def test_estimate_hr_sweep_within_1bpm_on_clean_10s(fps):
    t = np.arange(int(10 * fps)) / fps
    rates = list(np.arange(40.0, 180.01, 6.7)) + [73.4, 180.0, 40.0]
    errors = [abs(hr.estimate_hr(np.sin(2 * np.pi * r / 60 * t + 0.7), fps) - r) for r in rates]
    assert max(errors) <= 1.0, dict(zip(rates, errors))


def test_power_spectrum_band_and_peak():
    fps = 30.0
    t = np.arange(300) / fps
    freqs, power = hr.power_spectrum(np.sin(2 * np.pi * 1.5 * t), fps, band_bpm=(40, 180))
    assert freqs.min() >= 40 and freqs.max() <= 180
    assert np.all(np.diff(freqs) <= 0.11)  # zero-padded to <= 0.1 bpm bins
    assert abs(freqs[np.argmax(power)] - 90.0) < 0.5


def test_estimate_hr_nan_for_flat_signal():
    assert np.isnan(hr.estimate_hr(np.zeros(300), 30.0))


def test_snr_db_matches_toolbox_definition_on_tone_plus_white_noise():
    fps, n, sigma, amp = 30.0, 4096, 0.5, 1.0
    rng = np.random.default_rng(1)
    t = np.arange(n) / fps
    f_hr = 1.2  # 72 bpm; 2nd harmonic 144 bpm is inside the 45-150 band
    x = amp * np.sin(2 * np.pi * f_hr * t) + rng.normal(0, sigma, n)
    # Expected: the tone's power A^2/2 is signal; white noise spreads sigma^2 over 0..fs/2.
    # Noise inside the band but outside the two +-0.1 Hz windows ~ sigma^2 * width / (fs/2);
    # noise inside the windows adds sigma^2 * 0.4 / (fs/2) to the signal part.
    rest_hz = (2.5 - 0.75) - 0.2 - (2.5 - (2.4 - 0.1))
    noise = sigma**2 * rest_hz / (fps / 2)
    signal = amp**2 / 2 + sigma**2 * 0.4 / (fps / 2)
    expected = 20 * np.log10(signal / noise)
    got = hr.snr_db(x, fps, 72.0)
    assert abs(got - expected) < 1.0, (got, expected)
    assert abs(hr.snr_db(x, fps, 72.0, db_factor=10.0) - got / 2) < 1e-9
    # SNR at a wrong HR is far lower
    assert hr.snr_db(x, fps, 100.0) < got - 20


def test_hr_over_time_follows_a_step():
    fps = 30.0
    t = np.arange(int(40 * fps)) / fps
    rate = np.where(t < 20, 70.0, 100.0)
    x = np.sin(2 * np.pi * np.cumsum(rate / 60.0) / fps)
    times, rates = hr.hr_over_time(x, fps, window_s=8, step_s=2)
    assert len(times) == len(rates) > 10
    assert np.all(np.abs(rates[times < 14] - 70) < 1.5)
    assert np.all(np.abs(rates[times > 26] - 100) < 1.5)


def test_check_duration_says_how_long_is_needed():
    with pytest.raises(InputError, match=r"4\.0 s \(120 frames\)"):
        hr.check_duration(90, 30.0)
    assert hr.check_duration(150, 30.0) == pytest.approx(5.0)
    with pytest.raises(InputError, match=r"20\.0 s"):
        hr.check_duration(300, 30.0, resolution_bpm=3.0)
    with pytest.raises(InputError, match="fps"):
        hr.check_duration(300, 0.0)


def test_one_minimum_duration_and_reader_list():
    import inspect

    from physiolatent_core import editor, rppg, verify

    assert rppg.MIN_DURATION_S == hr.MIN_DURATION_S == editor.MIN_DURATION_S == 4.0
    for fn in (hr.check_duration, rppg.estimate, verify.verify, verify.verify_traces):
        assert inspect.signature(fn).parameters["min_duration_s"].default == rppg.MIN_DURATION_S
    assert set(rppg.DEFAULT_METHODS) <= set(rppg.METHODS)
    assert rppg.resolve_methods(rppg.DEFAULT_METHODS) == list(rppg.DEFAULT_METHODS)


def test_detrend_removes_trend_keeps_pulse():
    fps = 30.0
    t = np.arange(600) / fps
    pulse = 0.01 * np.sin(2 * np.pi * 1.2 * t)
    out = detrend(pulse + 0.5 + 0.2 * t - 0.01 * t**2)
    core = slice(60, -60)  # away from the ends
    assert np.abs(out[core] - pulse[core]).max() < 0.003


def test_detrend_of_many_traces_matches_a_fresh_solve():
    # detrend keeps the factorised system per length; each call must still solve its own trace.
    import scipy.sparse.linalg

    rng = np.random.default_rng(1)
    n, lam = 150, 100.0
    d2 = scipy.sparse.diags([1.0, -2.0, 1.0], [0, 1, 2], shape=(n - 2, n), format="csc")
    system = (scipy.sparse.identity(n, format="csc") + lam**2 * (d2.T @ d2)).tocsc()
    for _ in range(3):
        x = rng.standard_normal((n, 3)).cumsum(axis=0)
        np.testing.assert_allclose(detrend(x), x - scipy.sparse.linalg.spsolve(system, x), atol=1e-10)


def test_band_sos_is_a_private_copy():
    from physiolatent_core.rppg.traces import band_sos

    first = band_sos(30.0, (0.7, 3.0))
    first[:] = 0.0  # a caller scribbling on its filter must not change the next caller's
    assert np.abs(band_sos(30.0, (0.7, 3.0))).max() > 0


# --------------------------------------------------------------------------- traces


def test_extract_rgb_weighted_mean_and_gaps():
    rng = np.random.default_rng(0)
    frames = rng.random((5, 6, 7, 3), dtype=np.float32)
    mask = rng.random((5, 6, 7)).astype(np.float32)
    mask[2] = 0.0  # face lost in frame 2
    got = extract_rgb(frames, mask)
    want = np.einsum("thwc,thw->tc", frames.astype(np.float64), mask) / mask.sum(axis=(1, 2))[:, None].clip(1e-12)
    for i in (0, 1, 3, 4):
        np.testing.assert_allclose(got[i], want[i], rtol=1e-5)
    np.testing.assert_allclose(got[2], (got[1] + got[3]) / 2, rtol=1e-6)  # interpolated
    np.testing.assert_allclose(extract_rgb(frames), frames.mean(axis=(1, 2)), rtol=1e-5)
    np.testing.assert_allclose(extract_rgb(frames, mask[0]), np.einsum("thwc,hw->tc", frames, mask[0]) / mask[0].sum(), rtol=1e-5)


def test_extract_rgb_rejects_bad_input():
    frames = np.zeros((4, 5, 6, 3), np.float32)
    with pytest.raises(InputError, match="mask shape"):
        extract_rgb(frames, np.ones((5, 5)))
    with pytest.raises(InputError, match=r"\[T, H, W, 3\]"):
        extract_rgb(np.zeros((4, 5, 6)))
    with pytest.raises(InputError, match="zero in every frame"):
        extract_rgb(frames, np.zeros((4, 5, 6)))


# --------------------------------------------------------------------------- estimators


@pytest.mark.parametrize("method", sorted(ESTIMATORS))
def test_each_estimator_reads_known_hr_within_3bpm(method):
    fn = ESTIMATORS[method]
    for i, (true_hr, fps) in enumerate([(52.0, 30.0), (73.4, 30.0), (98.0, 25.0), (137.0, 30.0), (165.0, 30.0)]):
        rgb = synth_trace(true_hr, fps=fps, seed=10 + i, inband_motion=0.0005)
        pulse = fn(rgb, fps)
        assert pulse.shape == (len(rgb),) and np.all(np.isfinite(pulse))
        got = hr.estimate_hr(pulse, fps)
        assert abs(got - true_hr) <= 3.0, (method, true_hr, got)


MOTION_ROBUST = ["chrom", "pos", "lgi", "omit", "pbv"]


@pytest.mark.parametrize("method", MOTION_ROBUST)
def test_motion_robust_estimators_survive_strong_inband_intensity_motion(method):
    """Intensity motion twice the pulse amplitude, inside the HR band: GREEN is fooled (checked
    below), methods that cancel the (1,1,1) / skin-colour direction are not."""
    for i, true_hr in enumerate([62.0, 88.0, 121.0]):
        rgb = synth_trace(true_hr, seed=40 + i, inband_motion=0.006)
        got = hr.estimate_hr(ESTIMATORS[method](rgb, 30.0), 30.0)
        assert abs(got - true_hr) <= 3.0, (method, true_hr, got)


def test_strong_inband_motion_fools_green():
    errors = [
        abs(hr.estimate_hr(ESTIMATORS["green"](synth_trace(r, seed=40 + i, inband_motion=0.006), 30.0), 30.0) - r)
        for i, r in enumerate([62.0, 88.0, 121.0])
    ]
    assert max(errors) > 3.0  # so the motion test above is a real test


def test_pbv_data_driven_signature_and_short_clips():
    rgb = synth_trace(81.0, seed=7, motion=0.0)
    assert abs(hr.estimate_hr(ESTIMATORS["pbv"](rgb, 30.0, signature=None), 30.0) - 81.0) <= 3.0
    for name, fn in ESTIMATORS.items():  # shorter than one CHROM/POS window: finite output, no crash
        out = fn(rgb[:30], 30.0)
        assert out.shape == (30,) and np.all(np.isfinite(out)), name


def test_hr_over_time_window_longer_than_clip_gives_one_window():
    t = np.arange(150) / 30.0
    times, rates = hr.hr_over_time(np.sin(2 * np.pi * 1.1 * t), 30.0, window_s=10)
    assert times.tolist() == [2.5] and abs(rates[0] - 66.0) < 1.0


def test_estimators_reject_bad_traces():
    with pytest.raises(InputError, match=r"\[T, 3\]"):
        ESTIMATORS["pos"](np.ones((100, 4)), 30.0)
    with pytest.raises(InputError, match="NaN"):
        ESTIMATORS["chrom"](np.full((100, 3), np.nan), 30.0)
    with pytest.raises(InputError, match="fps"):
        ESTIMATORS["green"](np.ones((100, 3)), -1)


def test_estimate_convenience_on_frames_with_mask():
    fps, true_hr = 30.0, 84.0
    rgb = synth_trace(true_hr, fps=fps, duration_s=8.0, seed=3)
    rng = np.random.default_rng(0)
    texture = rng.uniform(0.8, 1.2, (12, 16, 1))
    frames = (rgb[:, None, None, :] * texture).astype(np.float32)
    mask = np.zeros((12, 16), np.float32)
    mask[2:10, 3:13] = 1.0
    frames[:, ~mask.astype(bool)] = rng.random((len(rgb), int((mask == 0).sum()), 3))  # noisy background
    out = estimate(frames, fps, mask=mask, methods=["pos", "chrom", "omit"])
    assert set(out) == {"pos", "chrom", "omit"}
    for name, res in out.items():
        assert abs(res["hr_bpm"] - true_hr) <= 3.0, (name, res["hr_bpm"])
        assert res["pulse"].shape == (len(rgb),)
        assert res["snr_db"] > 0
    with pytest.raises(InputError, match="unknown rPPG method"):
        estimate(frames, fps, methods=["nope"])
    with pytest.raises(InputError, match="at least 4.0 s"):
        estimate(frames[:60], fps)


# --------------------------------------------------------------------------- torch POS


@pytest.mark.parametrize("fps", [30.0, 24.5])
def test_pos_torch_matches_numpy_pos(fps):
    torch = pytest.importorskip("torch")
    from physiolatent_core.rppg.torch_pos import pos_torch

    rng = np.random.default_rng(5)
    rgb = rng.uniform(0.3, 0.8, (3, 150, 3))
    got = pos_torch(torch.from_numpy(rgb), fps).numpy()
    want = np.stack([pos_raw(r, fps) for r in rgb])
    assert got.shape == (3, 150)
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)
    short = pos_torch(torch.from_numpy(rgb[:, :20]), fps).numpy()  # shorter than one window
    np.testing.assert_allclose(short[0], pos_raw(rgb[0, :20], fps), rtol=1e-9, atol=1e-12)


def test_pos_torch_gradients_flow():
    torch = pytest.importorskip("torch")
    from physiolatent_core.rppg.torch_pos import pos_torch

    rgb = torch.from_numpy(synth_trace(75.0, duration_s=6.0)[None]).float().requires_grad_(True)
    pulse = pos_torch(rgb, 30.0)
    spectrum = torch.fft.rfft(pulse, n=1024).abs() ** 2
    spectrum[..., 40:90].sum().backward()  # a band-power loss, as a training loss would use
    grad = rgb.grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0
    # a constant clip (e.g. padding frames) must not give NaN gradients
    flat = torch.full((1, 90, 3), 0.5, requires_grad=True)
    pos_torch(flat, 30.0).pow(2).sum().backward()
    assert torch.isfinite(flat.grad).all()


def test_masked_mean_rgb_torch_layouts_match_extract_rgb():
    torch = pytest.importorskip("torch")
    from physiolatent_core.rppg.torch_pos import masked_mean_rgb_torch

    rng = np.random.default_rng(2)
    frames = rng.random((2, 5, 6, 7, 3), dtype=np.float32)  # [B,T,H,W,3]
    mask = rng.random((2, 5, 6, 7)).astype(np.float32)
    want = np.stack([extract_rgb(frames[b], mask[b]) for b in range(2)])
    got = masked_mean_rgb_torch(torch.from_numpy(frames), torch.from_numpy(mask))
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-5)
    bcthw = torch.from_numpy(np.ascontiguousarray(frames.transpose(0, 4, 1, 2, 3)))
    got2 = masked_mean_rgb_torch(bcthw, torch.from_numpy(mask)[:, None])
    np.testing.assert_allclose(got2.numpy(), want, rtol=1e-5)
    np.testing.assert_allclose(masked_mean_rgb_torch(bcthw).numpy(), frames.mean(axis=(2, 3)), rtol=1e-5)
    with pytest.raises(InputError, match="mask shape"):
        masked_mean_rgb_torch(bcthw, torch.ones(2, 4, 6, 7))


# --------------------------------------------------------------------------- real video


def _read_rgb_trace(path: Path, box) -> tuple[np.ndarray, float]:
    """Decode with PyAV and average a fixed box (fractions of H, W) per frame."""
    av = pytest.importorskip("av")
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate)
        rows = []
        for frame in container.decode(stream):
            img = frame.to_ndarray(format="rgb24")
            h, w = img.shape[:2]
            crop = img[int(box[0] * h) : int(box[1] * h), int(box[2] * w) : int(box[3] * w)]
            rows.append(crop.reshape(-1, 3).mean(axis=0) / 255.0)
    return np.array(rows), fps


@pytest.mark.shared_data
@pytest.mark.skipif(not (SHARED_DATA / "evm_face.mp4").exists(), reason="../shared/data not present")
def test_real_video_evm_face_reads_53bpm():
    """MIT EVM 'face' clip: published average pulse 53 bpm (PROVENANCE.md)."""
    rgb, fps = _read_rgb_trace(SHARED_DATA / "evm_face.mp4", box=(0.25, 0.6, 0.3, 0.7))
    out = estimate(rgb, fps, methods=["pos", "chrom", "lgi", "omit", "green"])
    report = {k: round(v["hr_bpm"], 1) for k, v in out.items()}
    json.dumps(report)
    for name, bpm in report.items():
        assert abs(bpm - 53.0) <= 3.0, report


# --------------------------------------------------------------------------- synthetic face video


@pytest.mark.parametrize("true_hr", [64.0, 103.0])
def test_estimators_on_synth_face_clip(true_hr):
    """Rendered face (synth.py): head motion, illumination drift, sensor noise, 8-bit rounding."""
    synth = pytest.importorskip("physiolatent_core.synth")
    clip = synth.synth_subject(duration_s=8.0, fps=30.0, hr_bpm=true_hr, size=(96, 128), seed=int(true_hr))
    out = estimate(clip.frames, clip.fps, mask=clip.skin_mask)
    readings = {k: round(v["hr_bpm"], 1) for k, v in out.items()}
    for name in ("pos", "chrom", "lgi", "omit", "pbv", "green"):
        assert abs(readings[name] - clip.hr_bpm) <= 3.0, (clip.hr_bpm, readings)
    # the majority of all eight agree with the truth
    assert sum(abs(v - clip.hr_bpm) <= 3.0 for v in readings.values()) >= 6, readings
