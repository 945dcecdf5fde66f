"""benchmarks/learned_reader: the PhysNet judge's shapes, loss and crop/read plumbing (no training)."""

import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks" / "learned_reader"))

from crops import CROP_PX, reader_crops  # noqa: E402
from physnet import PhysNet, neg_pearson, standardise  # noqa: E402
from reader import read_wave  # noqa: E402


def test_physnet_gives_one_value_per_frame():
    net = PhysNet(4, 8).eval()
    x = standardise(torch.rand(2, 32, 64, 64, 3))
    assert x.shape == (2, 3, 32, 64, 64)
    assert net(x).shape == (2, 32)


def test_negative_pearson_loss():
    y = torch.randn(3, 50)
    assert float(neg_pearson(y, y)) == pytest.approx(0.0, abs=1e-5)
    assert float(neg_pearson(-y, y)) == pytest.approx(2.0, abs=1e-5)
    assert float(neg_pearson(3 * y + 1, y)) == pytest.approx(0.0, abs=1e-5)  # scale and offset free


def test_standardise_is_relative_change_in_percent():
    crops = torch.full((1, 4, 8, 8, 3), 0.5)
    crops[:, 1] *= 1.01
    x = standardise(crops)
    assert float(x[0, 0, 1].mean()) == pytest.approx(100 * (1.01 / 1.0025 - 1), rel=1e-3)


def test_reader_crops_and_overlapping_windows_cover_every_frame():
    from physiolatent_core.synth import synth_subject

    clip = synth_subject(duration_s=5.0, hr_bpm=80, seed=1, talking=True)
    crops = reader_crops(clip.frames, clip.fps)
    assert crops.shape == (len(clip.frames), CROP_PX, CROP_PX, 3)
    # The crop holds the face: skin-coloured centre, not the background.
    centre = crops[:, 24:40, 24:40].mean(axis=(0, 1, 2))
    assert centre[0] > centre[2] + 0.1
    net = PhysNet(4, 8).eval()
    wave = read_wave(net, crops, window=64, hop=32)
    assert wave.shape == (len(crops),) and np.all(np.isfinite(wave))
