"""evaluate.py: tables from known edits (identity, an oracle that paints the target pulse, a pulse remover)."""

import json
import math

import numpy as np
import pytest
import torch

from physiolatent_core.data import WindowDataset
from physiolatent_core.data.records import Clip
from physiolatent_core.evaluate import evaluate_windows, format_tables, summarize, write_report

FPS = 20.0
T = 121  # 6 s


def pulse_clip(hr_bpm, seed, amp=0.01):
    """Flat skin patch with a sinusoidal pulse along the blood-volume direction + a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(T) / FPS
    wave = np.sin(2 * np.pi * hr_bpm / 60 * t)
    base = np.array([0.6, 0.45, 0.35], np.float32)
    direction = np.array([0.33, 0.77, 0.53], np.float32)
    rgb = base * (1 - amp * direction * wave[:, None])  # [T,3]
    frames = np.broadcast_to(rgb[:, None, None, :], (T, 16, 16, 3)).copy()
    frames += rng.normal(0, 0.002, frames.shape)
    return Clip(subject_id=f"s{seed}", fps=FPS, num_frames=T, hr_bpm=hr_bpm, _frames=frames.astype(np.float32))


def paint(video, target_hr_bpm, amp):
    """Replace the clip's pulse by a sinusoid at the target (amp 0: remove it): video [1,3,T,H,W] in [-1,1]."""
    rgb01 = (video + 1) / 2
    mean = rgb01.mean(dim=(2, 3, 4), keepdim=True)  # steady colour
    t = torch.arange(video.shape[2]) / FPS
    wave = torch.sin(2 * math.pi * target_hr_bpm / 60 * t)[None, None, :, None, None]
    direction = torch.tensor([0.33, 0.77, 0.53])[None, :, None, None, None]
    return (mean * (1 - amp * direction * wave)).expand_as(video) * 2 - 1


def oracle_edit(video, mask, target_hr_bpm, remove):
    return paint(video, target_hr_bpm, 0.0 if remove else 0.01)


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: small ops, shared 2-core CPU (two OpenMP threads spin against each other)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def windows():
    return WindowDataset([pulse_clip(66.0, 1), pulse_clip(72.0, 2)], num_frames=T, size=16, crop="none")


def test_identity_edit_leaves_input_error(windows):
    res = evaluate_windows(lambda v, m, hr, rm: v, windows, targets_bpm=(60, 120), methods=["pos", "chrom", "green"])
    s = summarize(res)
    t2 = {r["target_hr_bpm"]: r for r in s["table2"]}
    # nothing changes: output error equals input error, input HR ~ 66/72 bpm
    assert t2[120.0]["output_mae"][0] == pytest.approx(t2[120.0]["input_mae"][0])
    assert t2[120.0]["input_mae"][0] == pytest.approx(120 - 69, abs=1.5)
    assert t2[60.0]["input_mape"][0] == pytest.approx(100 * 9 / 60, abs=3)
    assert t2[60.0]["psnr"][0] == 100.0 and t2[60.0]["ssim"][0] == pytest.approx(1.0)
    assert [r["method"] for r in s["table4"]] == ["pos", "chrom", "green"]


def test_oracle_edit_hits_targets_and_removal_lowers_snr(windows, tmp_path):
    res = evaluate_windows(oracle_edit, windows, targets_bpm=(60, 90, 120), methods=["pos", "chrom"], psd_examples=1)
    s = summarize(res)
    for row in s["table2"]:
        assert row["output_mae"][0] < 1.5, row
        assert row["input_mae"][0] > 5
        assert 25 < row["psnr"][0] < 80
    for row in s["table4"]:
        assert row["output_mae"][0] < 1.5
    rem = s["removal"]
    assert rem["n"] == 2 and rem["snr_in_db"][0] > 5 and rem["delta_snr_db"][0] < -5
    md = format_tables(s)
    assert "Table 2" in md and "Table 4" in md and "Removal" in md and "| 90 |" in md
    write_report(res, tmp_path)
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["summary"]["table2"][0]["target_hr_bpm"] == 60.0 and len(data["edit"]) == 6
    assert (tmp_path / "tables.md").exists() and (tmp_path / "psd_0.png").stat().st_size > 1000


def test_unknown_estimator_is_an_input_error(windows):
    from physiolatent_core.errors import InputError

    with pytest.raises(InputError, match="unknown rPPG estimators"):
        evaluate_windows(oracle_edit, windows, methods=["physnet"])


def test_main_evaluate_end_to_end_with_tiny_files(tmp_path):
    """CLI path: VAE + adapter files, a folder dataset, tables written (tiny random VAE, 17 frames 16x16)."""
    import argparse

    import av

    from physiolatent_core.evaluate import add_evaluate_arguments, main_evaluate
    from physiolatent_core.model import PhysioLatentAdapter, adapter_config_tiny, build_vae, save_adapter, save_vae
    from physiolatent_core.model import tiny_vae_config

    vae = build_vae(tiny_vae_config(), seed=0)
    save_vae(vae, tmp_path / "vae.safetensors")
    save_adapter(tmp_path / "adapter.safetensors", PhysioLatentAdapter(adapter_config_tiny(), vae), vae)
    data = tmp_path / "videos"
    data.mkdir()
    clip = pulse_clip(66.0, 3)
    with av.open(str(data / "s1.mkv"), "w") as c:
        s = c.add_stream("ffv1", rate=20)
        s.width = s.height = 16
        s.pix_fmt = "bgr0"
        for f in (clip.frames(0, 17) * 255).round().astype(np.uint8):
            c.mux(s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        c.mux(s.encode())
    args = add_evaluate_arguments(argparse.ArgumentParser()).parse_args(
        ["--vae", str(tmp_path / "vae.safetensors"), "--adapter", str(tmp_path / "adapter.safetensors"),
         "--data", str(data), "--split", "all", "--targets", "90", "--methods", "pos", "--num-frames", "17",
         "--size", "16", "--crop", "none", "--psd-examples", "1", "--device", "cpu", "--out", str(tmp_path / "eval")]
    )
    assert main_evaluate(args) == 0
    summary = json.loads((tmp_path / "eval" / "results.json").read_text())["summary"]
    assert summary["table2"][0]["n"] == 1 and summary["removal"]["n"] == 1
    assert np.isfinite(summary["table2"][0]["psnr"][0])
    assert (tmp_path / "eval" / "psd_0.png").exists()
