"""Known-answer tests for physiolatent_core.losses."""

import math

import pytest
import torch

from physiolatent_core.errors import InputError
from physiolatent_core.losses import (
    PhysioLoss,
    beta_schedule,
    fidelity_loss,
    freq_loss,
    make_lpips,
    removal_loss,
    spectral_peak_hz,
    wave_loss,
)

FPS = 30.0
T = 300  # 10 s


def sinusoid(hr_bpm, phase=0.0, t=T, fps=FPS):
    time_s = torch.arange(t, dtype=torch.float64) / fps
    return torch.sin(2 * math.pi * hr_bpm / 60.0 * time_s + phase)[None]


def test_wave_loss_phase_invariant_zero_at_target():
    for phase in (0.0, 0.7, math.pi / 2, 2.5):
        assert wave_loss(sinusoid(72, phase), 72.0, FPS).item() < 1e-3


def test_wave_loss_high_for_noise_and_other_frequency():
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(4, T, generator=g, dtype=torch.float64)
    assert wave_loss(noise, torch.full((4,), 72.0), FPS).item() > 0.85
    assert wave_loss(sinusoid(120), 72.0, FPS).item() > 0.9


def test_wave_loss_batch_of_targets_and_bad_shape():
    pulse = torch.cat([sinusoid(60), sinusoid(100)])
    assert wave_loss(pulse, torch.tensor([60.0, 100.0]), FPS).item() < 1e-3
    assert wave_loss(pulse, torch.tensor([100.0, 60.0]), FPS).item() > 0.9
    with pytest.raises(InputError):
        wave_loss(pulse[0], 60.0, FPS)
    with pytest.raises(InputError):
        wave_loss(pulse, torch.tensor([60.0, 70.0, 80.0]), FPS)


@pytest.mark.parametrize("hr", [48.0, 75.0, 97.0, 150.0])
def test_freq_loss_recovers_sinusoid_frequency(hr):
    pulse = sinusoid(hr, phase=0.3)
    assert abs(spectral_peak_hz(pulse, FPS).item() - hr / 60) < 0.05
    assert freq_loss(pulse, hr, FPS).item() < 0.05
    assert abs(freq_loss(pulse, hr + 30, FPS).item() - 0.5) < 0.05


def test_freq_loss_gradient_points_toward_target():
    # pulse = a·sin(f1) + (1−a)·sin(f2): more weight on the target's component lowers the loss.
    s1, s2 = sinusoid(70), sinusoid(110)
    a = torch.tensor(0.6, dtype=torch.float64, requires_grad=True)
    freq_loss(a * s1 + (1 - a) * s2, 70.0, FPS).backward()
    assert a.grad.item() < 0  # increasing a (toward 70 bpm) reduces the loss
    a.grad = None
    freq_loss(a * s1 + (1 - a) * s2, 110.0, FPS).backward()
    assert a.grad.item() > 0
    # and on the frequency itself: below the target, the gradient says "go up"
    f = torch.tensor(1.2, dtype=torch.float64, requires_grad=True)
    time_s = torch.arange(T, dtype=torch.float64) / FPS
    freq_loss(torch.sin(2 * math.pi * f * time_s)[None], 90.0, FPS).backward()
    assert f.grad.item() < 0


def test_removal_loss_larger_for_sinusoid_than_noise():
    g = torch.Generator().manual_seed(1)
    noise = torch.randn(8, T, generator=g, dtype=torch.float64)
    sin_loss = removal_loss(sinusoid(80), FPS).item()
    noise_loss = removal_loss(noise, FPS).item()
    assert sin_loss > 0.8
    assert noise_loss < 0.4
    assert sin_loss > 2 * noise_loss


def test_beta_schedule_values():
    assert beta_schedule(0, 100, 200, 2.0) == 0.0
    assert beta_schedule(99, 100, 200, 2.0) == 0.0
    assert beta_schedule(100, 100, 200, 2.0) == 0.0
    assert beta_schedule(200, 100, 200, 2.0) == pytest.approx(1.0)
    assert beta_schedule(300, 100, 200, 2.0) == 2.0
    assert beta_schedule(10_000, 100, 200, 2.0) == 2.0
    assert beta_schedule(150, 100, 200, 2.0, "cosine") == pytest.approx(2.0 * 0.5 * (1 - math.cos(math.pi / 4)))
    assert beta_schedule(200, 100, 200, 2.0, "cosine") == pytest.approx(1.0)
    assert beta_schedule(5, 5, 0, 3.0) == 3.0
    with pytest.raises(InputError):
        beta_schedule(0, 0, 10, 1.0, "exp")


def test_fidelity_loss_mse_mask_and_lpips_contract():
    g = torch.Generator().manual_seed(2)
    x = torch.rand(1, 3, 4, 8, 8, generator=g) * 2 - 1
    y = x.clone()
    y[..., :4] += 0.5  # differ only in the left half
    assert fidelity_loss(x, y, lpips_weight=0).item() == pytest.approx(0.125, rel=1e-5)
    mask = torch.zeros(1, 4, 8, 8)
    mask[..., 4:] = 1
    assert fidelity_loss(x, y, mask=mask, lpips_weight=0).item() == pytest.approx(0.0, abs=1e-7)
    # LPIPS asked for without a metric: an error, never a silent MSE-only loss
    with pytest.raises(InputError):
        fidelity_loss(x, y, lpips_weight=1.0)
    calls = []

    def fake_lpips(a, b):
        calls.append(a.shape)
        return ((a - b) ** 2).mean(dim=(1, 2, 3))

    out = fidelity_loss(x, y, lpips_fn=fake_lpips, lpips_weight=2.0).item()
    assert calls == [torch.Size([4, 3, 8, 8])]  # frames of the clip, batched
    assert out == pytest.approx(0.125 * 3, rel=1e-5)


def test_make_lpips_reports_what_is_missing():
    try:
        import lpips  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="pip install lpips torchvision"):
            make_lpips()
    else:
        pytest.skip("lpips installed here: the missing-package message cannot be exercised")


def _video_with_pulse(hr_bpm, t=150, fps=15.0, size=16, amp=0.01):
    """[1,3,T,H,W] in [-1,1]: a flat skin colour modulated along the pulse direction."""
    time_s = torch.arange(t) / fps
    wave = torch.sin(2 * math.pi * hr_bpm / 60 * time_s)
    base = torch.tensor([0.6, 0.45, 0.35])
    direction = torch.tensor([0.33, 0.77, 0.53])
    rgb = base[:, None] * (1 + amp * direction[:, None] * wave[None, :])  # [3, T]
    video = rgb[:, :, None, None].expand(3, t, size, size)[None]
    return video * 2 - 1


def test_physioloss_edit_and_remove_modes():
    fps = 15.0
    loss = PhysioLoss(alpha=1.0, beta_max=1.0, beta_start=0, beta_length=10, lam=1.0, lpips_weight=0)
    vid80 = _video_with_pulse(80, fps=fps)
    mask = torch.ones(1, vid80.shape[2], 16, 16)
    total_hit, parts_hit = loss(vid80, vid80, mask, torch.tensor([80.0]), fps, step=100)
    total_miss, parts_miss = loss(vid80, vid80, mask, torch.tensor([120.0]), fps, step=100)
    assert parts_hit["fidelity"] == 0.0
    assert parts_hit["beta"] == 1.0
    assert parts_hit["wave"] < 0.1 and parts_hit["freq"] < 0.05
    assert parts_miss["wave"] > 0.8 and parts_miss["freq"] > 0.5
    assert total_miss.item() > total_hit.item() + 1
    # before the ramp the frequency term is off
    _, early = loss(vid80, vid80, mask, torch.tensor([120.0]), fps, step=0)
    assert early["beta"] == 0.0 and early["total"] == pytest.approx(early["wave"], rel=1e-5)
    # removal mode scores the periodic pulse high, a flat video low
    _, rem = loss(vid80, vid80, mask, torch.tensor([80.0]), fps, step=100, remove=True)
    assert rem["removal"] > 0.8 and rem["wave"] == 0.0
    # gradient reaches the output video
    out = vid80.clone().requires_grad_(True)
    total, _ = loss(out, vid80, mask, torch.tensor([120.0]), fps, step=100)
    total.backward()
    assert out.grad is not None and out.grad.abs().sum() > 0


def test_physioloss_without_lpips_package_is_explicit():
    try:
        import lpips  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError):
            PhysioLoss(lpips_weight=1.0)
    else:
        pytest.skip("lpips installed here")
