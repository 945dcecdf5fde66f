"""Issue 19: HRV and breathing targets (pulse.py) and their readers (rppg.beats, rppg.breathing,
rppg.vitals), each on signals whose answer is known; the request, the CLI and the editor carry them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from physiolatent_core import cli
from physiolatent_core.editor import PulseEditor
from physiolatent_core.errors import InputError
from physiolatent_core.pipeline import JobRequest, NetworkFiles
from physiolatent_core.pulse import SYSTOLIC_PHASE, check_rmssd, hr_curve, parse_resp_target, synth_pulse
from physiolatent_core.rppg.beats import detect_beats, hrv_metrics
from physiolatent_core.rppg.breathing import breathing_rate
from physiolatent_core.rppg.vitals import vital_signs, wide_pulse
from physiolatent_core.verify import verify_vitals


def rmssd(times_s) -> float:
    return float(np.sqrt(np.mean(np.diff(np.diff(times_s) * 1000.0) ** 2)))


# --------------------------------------------------------------------------- targets


@pytest.mark.parametrize("spec, kind, values", [
    (14, "constant", (14.0,)), ("14", "constant", (14.0,)), ("12:18", "ramp", (12.0, 18.0)),
    ("0s=12, 30s=18", "knots", (12.0, 18.0)), ([(0, 10), (5, 20)], "knots", (10.0, 20.0)),
])
def test_breathing_targets_take_the_hr_grammar(spec, kind, values):
    target = parse_resp_target(spec)
    assert target.kind == kind and target.bpm == values and target.unit == "breaths/min"
    assert "breaths/min" in str(target)
    assert hr_curve(target, 30, 1.0).min() == min(values)


@pytest.mark.parametrize("spec, message", [(2, "4-40 breaths/min"), ("12:60", "4-40"), ("fast", "not a number"),
                                           ("0s=12, 1s=x", "seconds=bpm"), (True, "breathing-rate target")])
def test_bad_breathing_targets_say_what_to_give(spec, message):
    with pytest.raises(InputError, match=message):
        parse_resp_target(spec)


def test_rmssd_targets_are_checked():
    assert check_rmssd("45") == 45.0
    for bad in (-1, 500, "much", float("nan")):
        with pytest.raises(InputError, match="RMSSD"):
            check_rmssd(bad)


@pytest.mark.parametrize("target_ms, resp", [(45.0, 14), (10.0, "10:16"), (90.0, 6)])
def test_hrv_model_hits_the_rmssd_exactly_and_peaks_are_the_beats(target_ms, resp):
    fps = 30.0
    pulse = synth_pulse(int(60 * fps), fps, 72, rmssd_ms=target_ms, resp_rate=resp, seed=3)
    assert rmssd(pulse.beat_times_s) == pytest.approx(target_ms, rel=1e-6)
    assert 60.0 / np.diff(pulse.beat_times_s).mean() == pytest.approx(72.0, abs=1.5)
    # Each beat time is where the phase passes k + SYSTOLIC_PHASE: the systolic peak.
    frac = np.interp(pulse.beat_times_s * fps, np.arange(len(pulse.phase)), pulse.phase) % 1.0
    np.testing.assert_allclose(frac, SYSTOLIC_PHASE, atol=1e-3)  # the phase is sampled per frame
    assert pulse.breath is not None and pulse.resp_bpm is not None


def test_hrv_model_has_respiratory_sinus_arrhythmia_at_the_breathing_rate():
    """The IBI series' spectrum peaks at the breathing rate (HF), and shorter IBIs come with inspiration."""
    pulse = synth_pulse(3600, 30.0, 72, rmssd_ms=50.0, resp_rate=15, resp_depth=0.0, seed=1)
    t = pulse.beat_times_s
    grid = np.arange(t[1], t[-1], 0.25)
    series = np.interp(grid, t[1:], np.diff(t))
    series -= series.mean()
    freqs = np.fft.rfftfreq(8192, 0.25) * 60
    power = np.abs(np.fft.rfft(series * np.hanning(len(series)), 8192)) ** 2
    high = freqs > 6.0
    assert freqs[high][power[high].argmax()] == pytest.approx(15.0, abs=0.5)


def test_breathing_must_be_slower_than_half_the_heart_rate():
    with pytest.raises(InputError, match="two beats per breath"):
        synth_pulse(300, 30.0, 50, rmssd_ms=20, resp_rate=30)


def test_default_pulse_is_unchanged_without_the_new_targets():
    """Existing synthetic subjects and edits keep their pulse (bit for bit) when no target is given."""
    a = synth_pulse(300, 30.0, 72, seed=2)
    assert a.beat_times_s is None and a.resp_bpm is not None
    b = synth_pulse(300, 30.0, 72, seed=2, resp_rate=15)  # the same rate, as a target: the same wave
    np.testing.assert_allclose(a.wave, b.wave, atol=1e-9)


# --------------------------------------------------------------------------- beats and HRV


def test_hrv_metrics_by_hand():
    ibis_ms = np.array([800, 850, 790, 900, 820, 810, 880, 800], float)
    times = np.concatenate([[0.0], np.cumsum(ibis_ms) / 1000.0])
    m = hrv_metrics(times)
    diffs = np.diff(ibis_ms)
    assert m["rmssd_ms"] == pytest.approx(np.sqrt(np.mean(diffs**2)))
    assert m["sdnn_ms"] == pytest.approx(ibis_ms.std(ddof=1))
    assert m["pnn50"] == pytest.approx(np.mean(np.abs(diffs) > 50))
    assert m["hr_bpm"] == pytest.approx(60000.0 / ibis_ms.mean())
    assert m["lf_hf"] is None and m["quality"] == "poor"  # 6 s: too short for LF/HF and a good RMSSD


def test_missed_beat_is_an_artefact_not_variability():
    ibis = 0.8 + 0.03 * np.sin(np.arange(80))
    times = np.concatenate([[0.0], np.cumsum(ibis)])
    whole = hrv_metrics(times)
    missed = hrv_metrics(np.delete(times, 40))  # one beat not detected: a double interval
    assert missed["artefact_share"] > 0
    assert missed["rmssd_ms"] == pytest.approx(whole["rmssd_ms"], rel=0.05)


@pytest.mark.parametrize("mod_hz, lf_dominant", [(0.1, True), (0.25, False)])
def test_lf_hf_follows_where_the_ibis_vary(mod_hz, lf_dominant):
    t, times = 0.0, []
    while t < 120:
        times.append(t)
        t += 0.8 + 0.04 * np.sin(2 * np.pi * mod_hz * t)
    m = hrv_metrics(np.array(times))
    assert (m["lf_hf"] > 1.0) == lf_dominant


@pytest.mark.parametrize("fps", [30.0, 60.0])
def test_beats_recover_known_beat_times_and_rmssd(fps):
    pulse = synth_pulse(int(60 * fps), fps, 72, rmssd_ms=45.0, resp_rate=14, seed=5)
    beats = detect_beats(pulse.wave, fps)
    truth = pulse.beat_times_s
    assert len(beats.times_s) == len(truth)
    errors = beats.times_s - truth
    assert np.std(errors) < 0.006  # sub-frame: well under a frame (33 ms at 30 fps)
    assert hrv_metrics(beats.times_s)["rmssd_ms"] == pytest.approx(45.0, rel=0.1)


def test_interpolation_lowers_the_timing_floor():
    # 71 bpm: at 72 bpm and 30 fps every beat falls at the same place between frames.
    pulse = synth_pulse(1800, 30.0, 71, rmssd_ms=0.0, resp_rate=14, resp_depth=0.0, seed=2)
    fine = hrv_metrics(detect_beats(pulse.wave, 30.0).times_s)["rmssd_ms"]
    coarse = hrv_metrics(detect_beats(pulse.wave, 30.0, interpolate=False).times_s)["rmssd_ms"]
    assert fine < 5.0 < coarse


def test_flat_or_bad_pulses():
    assert len(detect_beats(np.zeros(300), 30.0).times_s) == 0
    assert hrv_metrics([])["quality"] == "none"
    with pytest.raises(InputError):
        detect_beats(np.full(300, np.nan), 30.0)


# --------------------------------------------------------------------------- breathing


@pytest.mark.parametrize("rate", [8.0, 14.0, 22.0])
def test_breathing_rate_from_a_pulse_with_known_breathing(rate):
    fps = 30.0
    pulse = synth_pulse(int(60 * fps), fps, 75, rmssd_ms=40.0, resp_rate=rate, resp_depth=0.2, seed=int(rate))
    beats = detect_beats(pulse.wave, fps)
    read = breathing_rate(beats, fps, baseline_pulse=pulse.wave)
    assert read.rate_bpm == pytest.approx(rate, abs=0.5)
    assert read.quality == "good"
    assert set(read.estimates) == {"frequency", "amplitude", "baseline"}


def test_each_modulation_alone_reads_the_rate():
    """Amplitude and baseline modulation without RSA, and RSA without them."""
    fps, rate = 30.0, 12.0
    am = synth_pulse(1800, fps, 70, rmssd_ms=0.0, resp_rate=rate, resp_depth=0.3, seed=1)
    read = breathing_rate(detect_beats(am.wave, fps), fps, baseline_pulse=am.wave)
    for name in ("amplitude", "baseline"):
        assert read.estimates[name]["rate_bpm"] == pytest.approx(rate, abs=0.5)
    fm = synth_pulse(1800, fps, 70, rmssd_ms=50.0, resp_rate=rate, resp_depth=0.0, seed=1)
    read = breathing_rate(detect_beats(fm.wave, fps), fps)
    assert read.estimates["frequency"]["rate_bpm"] == pytest.approx(rate, abs=0.5)


@pytest.mark.parametrize("seed", range(6))
def test_noise_gives_no_confident_breathing(seed):
    rng = np.random.default_rng(seed)
    beats = detect_beats(rng.standard_normal(1800), 30.0, hr_bpm=72.0)
    read = breathing_rate(beats, 30.0, baseline_pulse=rng.standard_normal(1800))
    assert read.quality != "good"


# --------------------------------------------------------------------------- from a face clip


@pytest.fixture(scope="module")
def subject():
    from physiolatent_core.synth import synth_subject

    return synth_subject(duration_s=40.0, fps=30.0, hr_bpm=72.0, size=(96, 128), seed=7, rmssd_ms=45.0,
                         resp_rate=14.0, motion_px=1.0)


def test_vital_signs_of_a_synthetic_face(subject):
    from physiolatent_core.rppg import extract_rgb

    rgb = extract_rgb(subject.frames, subject.skin_mask)
    vitals = vital_signs(rgb, subject.fps)
    assert vitals.hrv["rmssd_ms"] == pytest.approx(45.0, rel=0.2)
    assert vitals.breathing.rate_bpm == pytest.approx(14.0, abs=1.5)
    assert wide_pulse(rgb, subject.fps).shape == (len(rgb),)
    report = verify_vitals(rgb, subject.fps, rmssd_target_ms=45.0, resp_target_bpm=14.0)
    assert report["rmssd_within_20pct"] and report["resp_within_1_5"]
    # Against the clip itself: breathing not removed.
    assert verify_vitals(rgb, subject.fps, traces_before=rgb)["breathing_removed"] is False


# --------------------------------------------------------------------------- request, CLI, editor


def test_request_and_cli_carry_the_targets():
    args = cli.build_parser(network=False).parse_args(
        ["edit", "in.mp4", "-o", "out.mkv", "--target-hr", "72", "--hrv-rmssd", "45", "--resp-rate", "12:16"])
    request = cli._request(args, "edit")
    assert request.hrv_rmssd_ms == 45.0 and request.resp_rate_bpm.bpm == (12.0, 16.0)


@pytest.mark.parametrize("kwargs, message", [
    (dict(mode="remove", output=Path("o.mkv"), hrv_rmssd_ms=40), "decoy"),
    (dict(mode="edit", output=Path("o.mkv"), target=72, resp_rate_bpm=80), "breaths/min"),
    (dict(mode="edit", output=Path("o.mkv"), target=72, hrv_rmssd_ms=900), "RMSSD"),
    (dict(mode="edit", output=Path("o.mkv"), target=72, hrv_rmssd_ms=40, network=NetworkFiles(Path("v"), Path("a"))),
     "training-free"),
])
def test_request_refuses_targets_it_cannot_set(kwargs, message):
    with pytest.raises(InputError, match=message):
        JobRequest(input="in.mp4", **kwargs)


def test_editor_refuses_breathing_for_a_plain_removal():
    with pytest.raises(InputError, match="decoy"):
        PulseEditor(30.0, "remove", resp_rate=14)


# --------------------------------------------------------------------------- nodes


def test_pulse_edit_and_estimate_vital_signs_nodes(subject):
    """The nodes set and read back HRV and breathing on a synthetic face (lossless, in memory)."""
    import json
    import sys

    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parent / "comfyui"))
    from workflow_tools import load_pack

    nodes = load_pack().NODE_CLASS_MAPPINGS
    images = torch.from_numpy(subject.frames)
    mask = torch.from_numpy(subject.skin_mask)
    edit = nodes["PhysioLatentPulseEdit"]()
    edited, info = edit.run(images, subject.fps, 84.0, "lossless", 0, mask=mask, hrv_rmssd_ms=30.0, resp_rate="10")
    assert json.loads(info)["injected_rmssd_ms"] == 30.0
    est = nodes["PhysioLatentEstimateVitals"]()
    out = est.run(edited, subject.fps, "pos", mask=mask, reference=images, target_rmssd_ms=30.0,
                  target_resp_rate=10.0)
    hr, rmssd_ms, resp, text, plot = out["result"]
    report = json.loads(text)
    assert hr == pytest.approx(84.0, abs=3.0)
    assert report["rmssd_within_20pct"] and report["resp_within_1_5"], report
    assert report["before"]["breathing"]["rate_bpm"] == pytest.approx(14.0, abs=1.5)  # the subject's own
    assert plot.shape[0] == 1 and plot.shape[-1] == 3


def test_removal_takes_the_breathing_out_with_the_pulse(subject):
    """The subject breathes at 14/min in its pulse's rate and amplitude, and its skin colour drifts
    with the breath (0.3 %, stronger than the synthetic pulse's own baseline, as on real clips);
    after a removal no modulation above the noise peaks within 1.5 breaths/min of it."""
    from physiolatent_core.editor import BLOOD_VOLUME_DIRECTION, remove_pulse
    from physiolatent_core.rppg import extract_rgb

    t = np.arange(len(subject.frames)) / subject.fps
    drift = 0.003 * np.sin(2 * np.pi * 14.0 / 60.0 * t)
    frames = subject.frames * (1.0 - drift[:, None, None, None] * subject.skin_mask[..., None]
                               * BLOOD_VOLUME_DIRECTION.astype(np.float32))
    frames = np.clip(frames, 0.0, 1.0).astype(np.float32)
    before = extract_rgb(frames, subject.skin_mask)
    result = remove_pulse(frames, subject.fps, face_mask=subject.skin_mask, robust_to="lossless")
    after = extract_rgb(result.frames, subject.skin_mask)
    report = verify_vitals(after, subject.fps, traces_before=before)
    assert report["before"]["breathing"]["estimates"]["baseline"]["rate_bpm"] == pytest.approx(14.0, abs=0.5)
    assert report["breathing_removed"], report["after"]["breathing"]


def test_a_still_image_has_no_vital_signs():
    vitals = vital_signs(np.full((300, 3), 0.5), 30.0)
    assert vitals.hrv["quality"] == "none" and vitals.breathing.rate_bpm is None
