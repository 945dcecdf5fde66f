"""Readers read back tiny fake copies of each dataset layout; splits and windows behave."""

import json
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from scipy import io as sio

from physiolatent_core.data import (
    PAPER_TARGETS_BPM,
    WindowDataset,
    read_dataset,
    read_folder,
    read_mmpd,
    read_pure,
    read_ubfc,
    sample_target_hr,
    split_clips,
    split_subjects,
    window_starts,
)
from physiolatent_core.data.records import Clip
from physiolatent_core.errors import InputError

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def gradient_frames(n, h=24, w=32, seed=0):
    """uint8 [n,h,w,3] frames whose mean brightness encodes the frame index."""
    rng = np.random.default_rng(seed)
    base = rng.integers(40, 200, size=(1, h, w, 3))
    ramp = (np.arange(n) * 3)[:, None, None, None]
    return np.clip(base + ramp, 0, 255).astype(np.uint8)


def write_video(path, frames, fps=30):
    """Lossless FFV1 so the read-back can be compared exactly."""
    with av.open(str(path), "w") as c:
        s = c.add_stream("ffv1", rate=fps)
        s.width, s.height, s.pix_fmt = frames.shape[2], frames.shape[1], "bgr0"
        for f in frames:
            c.mux(s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        c.mux(s.encode())


def test_ubfc_layout(tmp_path):
    n = 12
    for k, hr in ((1, 70.0), (3, 95.0)):
        sub = tmp_path / f"subject{k}"
        sub.mkdir()
        frames = gradient_frames(n, seed=k)
        write_video(sub / "vid.avi", frames)
        t = np.arange(n) / 30.0
        ppg = np.sin(2 * np.pi * hr / 60 * t)
        (sub / "ground_truth.txt").write_text(
            "\n".join(" ".join(f"{v:.6e}" for v in row) for row in (ppg, np.full(n, hr), t)) + "\n"
        )
    clips = read_ubfc(tmp_path)
    assert [c.subject_id for c in clips] == ["subject1", "subject3"]
    c = clips[1]
    assert c.fps == pytest.approx(30.0) and c.num_frames == n and c.hr_bpm == 95.0
    np.testing.assert_allclose(c.ppg, np.sin(2 * np.pi * 95 / 60 * np.arange(n) / 30), atol=1e-4)
    got = c.frames(2, 5)
    assert got.shape == (3, 24, 32, 3) and got.dtype == np.float32
    np.testing.assert_allclose(got, gradient_frames(n, seed=3)[2:5] / 255.0, atol=1.5 / 255)
    with pytest.raises(InputError):
        c.frames(10, 20)


def test_ubfc_bad_ground_truth(tmp_path):
    sub = tmp_path / "subject1"
    sub.mkdir()
    write_video(sub / "vid.avi", gradient_frames(4))
    (sub / "ground_truth.txt").write_text("1 2 3 4\n70 70 70 70\n")
    with pytest.raises(InputError, match="3 lines"):
        read_ubfc(tmp_path)
    with pytest.raises(InputError, match="does not exist"):
        read_ubfc(tmp_path / "nope")


def test_pure_layout(tmp_path):
    n, t0 = 10, 1_392_643_993_642_000_000
    frame_ns = t0 + (np.arange(n) * 1e9 / 30).astype(np.int64)
    for rec in ("01-01", "01-02", "02-01"):
        d = tmp_path / rec / rec
        d.mkdir(parents=True)
        frames = gradient_frames(n, seed=int(rec.replace("-", "")))
        for ts, f in zip(frame_ns, frames):
            cv2.imwrite(str(d / f"Image{ts}.png"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
        ppg_ns = t0 + (np.arange(2 * n) * 1e9 / 60).astype(np.int64)  # pulse oximeter at 60 Hz
        pkgs = [
            {"Timestamp": int(ts), "Value": {"waveform": int(i), "pulseRate": 66, "o2saturation": 98, "signalStrength": 4}}
            for i, ts in enumerate(ppg_ns)
        ]
        labels = {"/FullPackage": pkgs, "/Image": [{"Timestamp": int(ts)} for ts in frame_ns]}
        (tmp_path / rec / f"{rec}.json").write_text(json.dumps(labels))
    clips = read_pure(tmp_path)
    assert [c.subject_id for c in clips] == ["01", "01", "02"]
    c = clips[0]
    assert c.fps == pytest.approx(30.0, rel=1e-3) and c.num_frames == n and c.hr_bpm == 66.0
    # waveform value i sits at i/60 s, so at frame k (k/30 s) it reads 2k
    np.testing.assert_allclose(c.ppg, 2 * np.arange(n), atol=0.05)
    np.testing.assert_allclose(c.frames(0, n), gradient_frames(n, seed=101) / 255.0, atol=1e-6)
    train, val, test = split_clips(clips, val_frac=0, test_frac=0.5, seed=0)
    assert {c.subject_id for c in train}.isdisjoint({c.subject_id for c in test})
    assert len(train) + len(test) == 3 and not val


def test_mmpd_layout(tmp_path):
    n = 8
    for s in (1, 2):
        d = tmp_path / f"subject{s}"
        d.mkdir()
        video = gradient_frames(n, seed=s).astype(np.float64) / 255.0
        gt = np.linspace(-1, 1, n)[None, :]
        sio.savemat(str(d / f"p{s}_0.mat"), {"video": video, "GT_ppg": gt, "light": "LED-low"})
    clips = read_mmpd(tmp_path)
    assert [c.subject_id for c in clips] == ["subject1", "subject2"]
    c = clips[1]
    assert c.num_frames == n and c.fps == 30.0
    np.testing.assert_allclose(c.ppg, np.linspace(-1, 1, n), atol=1e-6)
    np.testing.assert_allclose(c.frames(3, 6), gradient_frames(n, seed=2)[3:6] / 255.0, atol=1e-6)


def test_folder_with_labels(tmp_path):
    write_video(tmp_path / "a.mp4", gradient_frames(6, seed=1), fps=25)
    write_video(tmp_path / "b.mkv", gradient_frames(5, seed=2), fps=25)
    (tmp_path / "labels.csv").write_text("file,hr_bpm,subject_id\na.mp4,81.5,alice\n")
    (tmp_path / "b.json").write_text(json.dumps({"hr_bpm": 64, "ppg": [0, 1, 2, 3, 4]}))
    clips = read_folder(tmp_path)
    assert [(c.subject_id, c.hr_bpm, c.num_frames) for c in clips] == [("alice", 81.5, 6), ("b", 64.0, 5)]
    assert clips[0].fps == pytest.approx(25.0) and clips[0].ppg is None
    np.testing.assert_allclose(clips[1].ppg, [0, 1, 2, 3, 4], atol=1e-6)
    assert clips[0].frames(0, 6).shape == (6, 24, 32, 3)
    with pytest.raises(InputError):
        read_dataset("celeb", tmp_path)


def test_split_subjects_disjoint_deterministic():
    ids = [f"s{i}" for i in range(10)] * 3
    tr, va, te = split_subjects(ids, val_frac=0.1, test_frac=0.2, seed=3)
    assert (len(tr), len(va), len(te)) == (7, 1, 2)
    assert set(tr) | set(va) | set(te) == {f"s{i}" for i in range(10)}
    assert not (set(tr) & set(te) or set(tr) & set(va) or set(va) & set(te))
    assert split_subjects(ids, 0.1, 0.2, seed=3) == (tr, va, te)
    assert split_subjects(ids, 0.1, 0.2, seed=4) != (tr, va, te)
    with pytest.raises(InputError):
        split_subjects(["only"], 0.5, 0.5)


def test_sample_target_hr():
    rng = np.random.default_rng(0)
    d = sample_target_hr(rng, 500, "discrete")
    assert set(d.tolist()) == set(PAPER_TARGETS_BPM)
    u = sample_target_hr(rng, 500, "uniform", low_bpm=40, high_bpm=180)
    assert u.min() >= 40 and u.max() <= 180 and len(np.unique(u)) == 500
    with pytest.raises(InputError):
        sample_target_hr(rng, 1, "gaussian")


def test_window_dataset_center_crop_and_mask():
    frames = np.random.default_rng(0).random((20, 40, 60, 3), dtype=np.float32)
    mask = np.zeros((20, 40, 60), np.float32)
    mask[:, 10:30, 20:40] = 1
    clip = Clip(subject_id="x", fps=15.0, num_frames=20, _frames=frames, mask=mask, hr_bpm=70.0)
    assert window_starts(20, 9) == [0, 9] and window_starts(20, 9, stride=4) == [0, 4, 8]
    ds = WindowDataset([clip], num_frames=9, size=20, crop="center")
    assert len(ds) == 2
    item = ds[1]
    assert item["video"].shape == (3, 9, 20, 20) and item["mask"].shape == (9, 20, 20)
    assert item["start"] == 9 and item["source_hr_bpm"] == 70.0
    assert -1.0 <= item["video"].min() and item["video"].max() <= 1.0
    # center square of a 40x60 frame is columns 10..50: the mask box is centred in it
    assert item["mask"][:, 10, 10] .min() == 1 and item["mask"][:, 0, 0].max() == 0
    with pytest.raises(InputError):
        WindowDataset([clip], num_frames=30, size=20, crop="center")


@pytest.mark.shared_data
def test_folder_reader_on_real_video():
    if not (SHARED_DATA / "evm_face.mp4").exists():
        pytest.skip("../shared/data not present")
    clips = [c for c in read_folder(SHARED_DATA) if c.source.endswith("evm_face.mp4")]
    assert clips[0].fps == pytest.approx(30.0, rel=1e-3) and clips[0].num_frames >= 300
    assert clips[0].frames(0, 5).shape == (5, 592, 528, 3)


@pytest.mark.shared_data
def test_face_cropped_window_on_real_video():
    if not (SHARED_DATA / "evm_face.mp4").exists():
        pytest.skip("../shared/data not present")
    clips = [c for c in read_folder(SHARED_DATA) if c.source.endswith("evm_face.mp4")]
    item = WindowDataset(clips, 17, 64, crop="face", max_windows_per_clip=1)[0]
    assert item["video"].shape == (3, 17, 64, 64) and item["mask"].shape == (17, 64, 64)
    assert 0.05 < float(item["mask"].mean()) < 0.9  # skin inside the crop, not the whole crop
    assert item["video"].std() > 0.1  # a face, not a flat patch
