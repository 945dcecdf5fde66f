"""pulse.py: HR targets, beat shape, synthetic pulse."""

import numpy as np
import pytest
from scipy.signal import argrelextrema

from physiolatent_core.errors import InputError
from physiolatent_core.pulse import HRTarget, hr_curve, parse_hr_target, ppg_waveform, synth_pulse


def spectral_peak_bpm(x: np.ndarray, fps: float, band=(40.0, 240.0)) -> float:
    """HR from the highest periodogram bin, zero-padded 16x for resolution."""
    x = (x - x.mean()) * np.hanning(len(x))
    n = 16 * len(x)
    freqs = np.fft.rfftfreq(n, 1 / fps) * 60
    power = np.abs(np.fft.rfft(x, n))
    inside = (freqs >= band[0]) & (freqs <= band[1])
    return float(freqs[inside][power[inside].argmax()])


# ---------------------------------------------------------------- parse_hr_target / hr_curve


@pytest.mark.parametrize("spec", [75, 75.0, "75", " 75 ", np.float32(75), np.array(75)])
def test_parse_constant(spec):
    target = parse_hr_target(spec)
    assert target.kind == "constant" and target.bpm == (75.0,)
    np.testing.assert_array_equal(hr_curve(target, 10, 30.0), np.full(10, 75.0))


def test_parse_ramp_runs_first_to_last_frame():
    target = parse_hr_target("70:120")
    assert target.kind == "ramp"
    curve = hr_curve(target, 101, 25.0)
    assert curve[0] == 70 and curve[-1] == 120 and curve[50] == pytest.approx(95)
    assert np.all(np.diff(curve) > 0)
    up_down = hr_curve("60:120:60", 201, 30.0)
    assert up_down[100] == pytest.approx(120) and up_down[-1] == pytest.approx(60)


def test_parse_knots_piecewise_linear_and_held():
    target = parse_hr_target([(1.0, 60), (3.0, 100)])
    assert target.kind == "knots" and target.times_s == (1.0, 3.0)
    curve = hr_curve(target, 5 * 10, 10.0)  # 5 s at 10 fps
    assert curve[0] == 60 and curve[10] == 60  # held before the first knot
    assert curve[20] == pytest.approx(80)  # halfway between the knots
    assert curve[30] == 100 and curve[-1] == 100  # held after the last


@pytest.mark.parametrize("spec", ["0s=70, 10s=110", "0=70; 10=110", " 0S=70 ;10 = 110, "])
def test_parse_text_knots(spec):
    target = parse_hr_target(spec)
    assert target == parse_hr_target([(0, 70), (10, 110)])
    assert target.kind == "knots" and target.times_s == (0.0, 10.0) and target.bpm == (70.0, 110.0)


@pytest.mark.parametrize(
    "spec, match",
    [
        ("0s=70, later=110", r"knot 'later=110' is not 'seconds=bpm'.*'0s=70, 5s=120'"),
        ("0s=70, 5s", r"knot '5s' is not 'seconds=bpm'"),
        ("0s=70:90", r"knot '0s=70:90' is not 'seconds=bpm'"),
        ("5s=70, 1s=80", r"strictly increasing, got \[5\.0, 1\.0\].*'0s=70, 5s=120'"),
        ("0s=70, 5s=300", r"HR knot at 5 s 300\.0 is outside the allowed range 30-240"),
    ],
)
def test_text_knot_errors_say_which_part_and_show_an_example(spec, match):
    with pytest.raises(InputError, match=match):
        parse_hr_target(spec)


def test_parse_passes_target_through():
    target = HRTarget("constant", (80.0,))
    assert parse_hr_target(target) is target


@pytest.mark.parametrize("spec", [29.9, 241, "300", "20:100", [(0, 70), (5, 250)], -75])
def test_out_of_range_names_the_range(spec):
    with pytest.raises(InputError, match="30-240"):
        parse_hr_target(spec)


@pytest.mark.parametrize(
    "spec", ["abc", "", "70:fast", None, True, [(0, 70), (0, 80)], [(2, 70), (1, 80)], [70, 80], {"hr": 70}, float("nan")]
)
def test_unreadable_specs_raise_input_error(spec):
    with pytest.raises(InputError):
        parse_hr_target(spec)


def test_hr_curve_rejects_bad_clip():
    with pytest.raises(InputError):
        hr_curve(70, 0, 30.0)
    with pytest.raises(InputError):
        hr_curve(70, 10, 0.0)


# ---------------------------------------------------------------- ppg_waveform


def test_waveform_is_normalised_and_periodic():
    phase = np.arange(2000) / 2000
    wave = ppg_waveform(phase)
    assert abs(wave.mean()) < 1e-6 and wave.std() == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(ppg_waveform(phase + 3.0), wave, atol=1e-9)
    # Continuous across the beat boundary.
    assert abs(ppg_waveform(np.array([1.0 - 1e-6]))[0] - ppg_waveform(np.array([0.0]))[0]) < 1e-3
    assert ppg_waveform(np.zeros((2, 3))).shape == (2, 3)


def test_waveform_has_fast_upstroke_and_dicrotic_notch():
    phase = np.arange(1000) / 1000
    wave = ppg_waveform(phase)
    peak = phase[wave.argmax()]
    foot = phase[wave.argmin()] - 1.0  # the foot sits just before the integer phase
    assert 0.12 <= peak <= 0.25
    assert peak - foot < 0.3, "the systolic upstroke must take a small part of the beat"
    # Two maxima per beat (systolic, diastolic) with a notch between them.
    maxima = phase[argrelextrema(wave, np.greater)[0]]
    minima = phase[argrelextrema(wave, np.less)[0]]
    assert len(maxima) == 2
    notch = minima[(minima > maxima[0]) & (minima < maxima[1])]
    assert len(notch) == 1
    # The diastolic wave is smaller than the systolic one, and the notch above the foot.
    assert wave.max() > ppg_waveform(maxima[1:])[0] > ppg_waveform(notch)[0] > wave.min()


# ---------------------------------------------------------------- synth_pulse


@pytest.mark.parametrize("hr, fps, seed", [(45, 30.0, 0), (72, 30.0, 1), (110, 25.0, 2), (180, 60.0, 3)])
def test_mean_hr_and_spectral_peak_match_constant_target(hr, fps, seed):
    n = int(20 * fps)
    pulse = synth_pulse(n, fps, hr, seed=seed)
    assert pulse.wave.shape == pulse.hr_bpm.shape == pulse.phase.shape == (n,)
    assert abs(pulse.hr_bpm.mean() - hr) < 0.5
    beats_per_min = (pulse.phase[-1] - pulse.phase[0]) / ((n - 1) / fps) * 60
    assert abs(beats_per_min - hr) < 0.5
    assert abs(spectral_peak_bpm(pulse.wave, fps) - hr) < 2.0
    assert abs(pulse.wave.mean()) < 1e-9 and pulse.wave.std() == pytest.approx(1.0)


def test_hrv_is_configurable_and_bounded():
    with_hrv = synth_pulse(900, 30.0, 72, hrv_ms=20.0, seed=4)
    assert 0.2 < with_hrv.hr_bpm.std() < 4.0
    assert synth_pulse(900, 30.0, 72, hrv_ms=60.0, seed=4).hr_bpm.std() > with_hrv.hr_bpm.std()
    steady = synth_pulse(900, 30.0, 72, hrv_ms=0.0, resp_depth=0.0, seed=4)
    np.testing.assert_array_equal(steady.hr_bpm, 72.0)
    # Without HRV or breathing the wave is exactly the beat shape at the integrated phase.
    shape = ppg_waveform(steady.phase)
    np.testing.assert_allclose(steady.wave, (shape - shape.mean()) / shape.std(), atol=1e-9)
    np.testing.assert_allclose(np.diff(steady.phase), 72 / 60 / 30.0)


def test_respiration_modulates_amplitude():
    fps, n = 30.0, 1800
    breathing = synth_pulse(n, fps, 72, hrv_ms=0.0, resp_hz=0.25, resp_depth=0.3, seed=5).wave
    steady = synth_pulse(n, fps, 72, hrv_ms=0.0, resp_depth=0.0, seed=5).wave
    beat = int(round(fps * 60 / 72))  # per-beat peak-to-peak varies only with breathing
    p2p = lambda w: np.array([np.ptp(w[i : i + beat]) for i in range(0, n - beat, beat)])  # noqa: E731
    assert p2p(breathing).std() / p2p(breathing).mean() > 0.1
    assert p2p(steady).std() / p2p(steady).mean() < 0.05


def test_deterministic_given_seed():
    a = synth_pulse(300, 30.0, "60:90", seed=7)
    b = synth_pulse(300, 30.0, "60:90", seed=7)
    c = synth_pulse(300, 30.0, "60:90", seed=8)
    np.testing.assert_array_equal(a.wave, b.wave)
    np.testing.assert_array_equal(a.hr_bpm, b.hr_bpm)
    assert not np.allclose(a.wave, c.wave)


def test_trajectory_changes_beat_rate_over_time():
    fps = 30.0
    pulse = synth_pulse(int(30 * fps), fps, "60:120", hrv_ms=0.0, seed=1)
    np.testing.assert_allclose(pulse.hr_bpm, hr_curve("60:120", len(pulse.wave), fps))
    first, last = pulse.wave[: int(8 * fps)], pulse.wave[-int(8 * fps) :]
    assert abs(spectral_peak_bpm(first, fps) - 68) < 5  # the mean target over each 8 s window
    assert abs(spectral_peak_bpm(last, fps) - 112) < 5
    # Phase is continuous: no jumps beyond one frame's worth of beats.
    assert np.diff(pulse.phase).max() <= 120 / 60 / fps + 1e-9


def test_bad_settings_raise_input_error():
    with pytest.raises(InputError, match="30-240"):
        synth_pulse(100, 30.0, 20)
    with pytest.raises(InputError, match="Nyquist"):
        synth_pulse(100, 6.0, 200)  # 3.3 Hz needs more than 6 fps
    with pytest.raises(InputError):
        synth_pulse(100, 30.0, 70, hrv_ms=-1)
    with pytest.raises(InputError):
        synth_pulse(100, 30.0, 70, resp_depth=2.0)
    with pytest.raises(InputError):
        synth_pulse(0, 30.0, 70)
