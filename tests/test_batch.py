"""batch/: tiny fake copies of each dataset layout go through ``batch`` and come back in
the same layout, with ground truth our readers read back; policies; resume; failures; Ray."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from scipy import io as sio

from physiolatent_core import cli
from physiolatent_core.batch import BatchRequest, Policy, assign_targets, detect_layout, parse_policy, run_batch
from physiolatent_core.data import read_folder, read_mmpd, read_pure, read_ubfc
from physiolatent_core.errors import InputError
from physiolatent_core.face import face_mask
from physiolatent_core.rppg import estimate, estimate_hr
from physiolatent_core.synth import synth_subject

FPS = 15.0
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def faces():
    """Two 4.4 s, 15 fps, 96x128 synthetic subjects (true HR 66 and 84), uint8 frames."""
    out = []
    for seed, hr in ((1, 66.0), (2, 84.0)):
        clip = synth_subject(duration_s=4.4, hr_bpm=hr, size=(96, 128), fps=FPS, seed=seed)
        out.append((np.round(clip.frames * 255).astype(np.uint8), hr))
    return out


@pytest.fixture(scope="module")
def face30():
    """MMPD is 30 fps: a 4.4 s, 96x128 subject (true HR 72) at that rate."""
    clip = synth_subject(duration_s=4.4, hr_bpm=72.0, size=(96, 128), fps=30.0, seed=3)
    return [(np.round(clip.frames * 255).astype(np.uint8), 72.0)]


def write_ffv1(path, frames, fps=FPS):
    """Lossless FFV1 (as test_data writes its fake datasets), any container."""
    with av.open(str(path), "w") as c:
        s = c.add_stream("ffv1", rate=int(fps))
        s.width, s.height, s.pix_fmt = frames.shape[2], frames.shape[1], "bgr0"
        for f in frames:
            c.mux(s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        c.mux(s.encode())


def make_ubfc(root: Path, faces) -> Path:
    for k, (frames, hr) in enumerate(faces, 1):
        sub = root / f"subject{k}"
        sub.mkdir(parents=True)
        write_ffv1(sub / "vid.avi", frames)
        t = np.arange(len(frames)) / FPS
        rows = (np.sin(2 * np.pi * hr / 60 * t), np.full(len(frames), hr), t)
        (sub / "ground_truth.txt").write_text("\n".join(" ".join(f"{v:.6e}" for v in r) for r in rows) + "\n")
    return root


def make_pure(root: Path, faces) -> Path:
    t0 = 1_392_643_993_642_000_000
    for k, (frames, hr) in enumerate(faces, 1):
        rec = f"0{k}-01"
        d = root / rec / rec
        d.mkdir(parents=True)
        frame_ns = t0 + (np.arange(len(frames)) * 1e9 / FPS).astype(np.int64)
        for ts, f in zip(frame_ns, frames):
            cv2.imwrite(str(d / f"Image{ts}.png"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
        ppg_ns = t0 + (np.arange(4 * len(frames)) * 1e9 / 60).astype(np.int64)
        pkgs = [{"Timestamp": int(ts), "Value": {"waveform": int(100 + 50 * np.sin(2 * np.pi * hr / 60 * i / 60)),
                                                 "pulseRate": int(hr), "o2saturation": 98, "signalStrength": 4}}
                for i, ts in enumerate(ppg_ns)]
        labels = {"/FullPackage": pkgs, "/Image": [{"Timestamp": int(ts)} for ts in frame_ns]}
        (root / rec / f"{rec}.json").write_text(json.dumps(labels))
    return root


def make_mmpd(root: Path, faces) -> Path:
    for k, (frames, hr) in enumerate(faces, 1):
        d = root / f"subject{k}"
        d.mkdir(parents=True)
        gt = np.sin(2 * np.pi * hr / 60 * np.arange(len(frames)) / 30.0)[None, :]
        sio.savemat(str(d / f"p{k}_0.mat"), {"video": frames.astype(np.float64) / 255.0, "GT_ppg": gt,
                                             "light": "LED-low"})
    return root


def make_folder(root: Path, faces) -> Path:
    root.mkdir(parents=True)
    for k, (frames, hr) in enumerate(faces, 1):
        write_ffv1(root / f"face{k}.mkv", frames)
    (root / "labels.csv").write_text("file,hr_bpm,subject_id\nface1.mkv,66,alice\nface2.mkv,84,bob\n")
    return root


def pos_hr(frames: np.ndarray, fps: float) -> float:
    """POS through our skin mask on frames read back by the dataset's reader."""
    mask, _ = face_mask(frames, fps)
    return estimate(frames, fps, mask=mask, methods=["pos"])["pos"]["hr_bpm"]


def check_truth(ppg, fps, hr_values, target):
    assert np.allclose(hr_values, target)
    assert abs(estimate_hr(np.asarray(ppg) - np.mean(ppg), fps) - target) < 2.0  # the waveform beats at the target


# --------------------------------------------------------------------------- layouts in and out


def test_ubfc_through_the_command_line(tmp_path, faces, capsys):
    root = make_ubfc(tmp_path / "UBFC", faces)
    out = tmp_path / "UBFC_100"
    assert detect_layout(root) == "ubfc"
    assert cli.main(["batch", root, "-o", out, "--target-hr", "100", "--workers", "1", "--quiet"]) == 0
    clips = read_ubfc(out)
    assert [c.subject_id for c in clips] == ["subject1", "subject2"]
    for clip, (frames, _) in zip(clips, faces):
        assert clip.num_frames == len(frames) and clip.fps == pytest.approx(FPS) and clip.hr_bpm == 100.0
        lines = (out / clip.subject_id / "ground_truth.txt").read_text().splitlines()
        ppg, hr, _t = (np.array(line.split(), float) for line in lines)
        check_truth(ppg, FPS, hr, 100.0)
        assert abs(pos_hr(clip.frames(0, clip.num_frames), FPS) - 100.0) <= 3.0
    summary = json.loads((out / ".physiolatent" / "summary.json").read_text())
    assert summary["counts"]["done"] == 2 and summary["hr_before_bpm"]["values"] == [66.0, 84.0]
    assert (out / ".physiolatent" / "summary.png").stat().st_size > 10_000
    assert set(summary["hit_rate_by_reader"]) == {"green", "chrom", "pos", "lgi", "omit"}
    # Rerunning the same command does nothing new.
    assert cli.main(["batch", root, "-o", out, "--target-hr", "100", "--workers", "1", "--quiet"]) == 0
    summary = json.loads((out / ".physiolatent" / "summary.json").read_text())
    assert summary["counts"]["skipped_as_done"] == 2 and summary["counts"]["processed_this_run"] == 0


def test_pure_comes_back_as_pure(tmp_path, faces):
    root = make_pure(tmp_path / "PURE", faces[:1])
    out = tmp_path / "PURE_out"
    summary = run_batch(BatchRequest(root, out, target="120", workers=1, methods=("pos",), quiet=True))
    assert summary["counts"]["done"] == 1, summary["failures"]
    (clip,) = read_pure(out)
    (original,) = read_pure(root)
    assert clip.num_frames == original.num_frames and clip.fps == pytest.approx(original.fps)
    assert sorted(p.name for p in (out / "01-01" / "01-01").iterdir()) == \
        sorted(p.name for p in (root / "01-01" / "01-01").iterdir())
    labels = json.loads((out / "01-01" / "01-01.json").read_text())
    assert labels["/Image"] == json.loads((root / "01-01" / "01-01.json").read_text())["/Image"]
    hr = [p["Value"]["pulseRate"] for p in labels["/FullPackage"]]
    assert labels["/FullPackage"][0]["Value"]["o2saturation"] == 98
    check_truth(clip.ppg, clip.fps, hr, 120.0)
    assert abs(pos_hr(clip.frames(0, clip.num_frames), clip.fps) - 120.0) <= 3.0


def test_mmpd_comes_back_as_mmpd(tmp_path, face30):
    root = make_mmpd(tmp_path / "MMPD", face30)
    out = tmp_path / "MMPD_out"
    summary = run_batch(BatchRequest(root, out, target="90", workers=1, methods=("pos",), quiet=True))
    assert summary["counts"]["done"] == 1, summary["failures"]
    (clip,) = read_mmpd(out)
    mat = sio.loadmat(str(out / "subject1" / "p1_0.mat"))
    assert mat["video"].dtype == np.float64 and mat["video"].shape == (len(face30[0][0]), 96, 128, 3)
    assert str(mat["light"][0]) == "LED-low"  # the other variables come along
    check_truth(clip.ppg, clip.fps, 90.0, 90.0)
    assert abs(pos_hr(clip.frames(0, clip.num_frames), clip.fps) - 90.0) <= 3.0


def test_folder_balanced_with_a_corrupt_clip_on_a_pool(tmp_path, faces):
    root = make_folder(tmp_path / "videos", faces)
    broken = root / "broken.mkv"  # a container header and then garbage
    broken.write_bytes((root / "face1.mkv").read_bytes()[:4000] + os.urandom(20_000))
    (root / "labels.csv").write_text("file,hr_bpm,subject_id\nface1.mkv,66,alice\nface2.mkv,84,bob\n"
                                     "broken.mkv,70,carol\n")
    out = tmp_path / "videos_balanced"
    summary = run_batch(BatchRequest(root, out, target="balanced:60-120", workers=2, methods=("pos",),
                                     quiet=True))
    assert summary["counts"] == {**summary["counts"], "clips": 3, "done": 2, "failed": 1}
    (failure,) = summary["failures"]
    assert failure["clip"] == "broken.mkv" and failure["reason"]
    # three clips ranked by their labelled HR (66, 70, 84) get 70, 90, 110: a flat histogram over 60-120
    clips = {Path(c.source).name: c for c in read_folder(out)}
    assert sorted(clips) == ["face1.mkv", "face2.mkv"]
    assert clips["face1.mkv"].hr_bpm == 70.0 and clips["face2.mkv"].hr_bpm == 110.0
    assert clips["face1.mkv"].subject_id == "alice"
    check_truth(clips["face2.mkv"].ppg, FPS, 110.0, 110.0)
    assert "broken.mkv" not in (out / "labels.csv").read_text()
    # the failed clip is retried on a rerun; the done ones are not redone
    summary = run_batch(BatchRequest(root, out, target="balanced:60-120", workers=2, methods=("pos",), quiet=True))
    assert summary["counts"]["skipped_as_done"] == 2 and summary["counts"]["processed_this_run"] == 1


def test_remove_writes_no_pulse_as_ground_truth(tmp_path, faces):
    root = make_ubfc(tmp_path / "UBFC", faces[:1])
    out = tmp_path / "UBFC_anon"
    summary = run_batch(BatchRequest(root, out, remove=True, workers=1, methods=("pos", "chrom"), quiet=True))
    assert summary["counts"]["done"] == 1 and summary["policy"] == "remove"
    (clip,) = read_ubfc(out)
    assert clip.hr_bpm == 0.0 and not np.any(clip.ppg)  # the subject's own pulse is not copied over
    assert set(summary["hit_rate_by_reader"]) == {"pos", "chrom"}


def test_hrv_and_breathing_targets_reach_the_written_ground_truth(tmp_path, faces):
    from physiolatent_core.editor import injected_wave

    root = make_ubfc(tmp_path / "UBFC", faces[:1])
    out = tmp_path / "UBFC_hrv"
    summary = run_batch(BatchRequest(root, out, target="90", hrv_rmssd_ms=45.0, resp_rate="14", workers=1,
                                     methods=("pos",), verify=False, quiet=True))
    assert summary["counts"]["done"] == 1, summary["failures"]
    (clip,) = read_ubfc(out)
    lines = (out / clip.subject_id / "ground_truth.txt").read_text().splitlines()
    ppg = np.array(lines[0].split(), float)
    wanted = injected_wave(clip.num_frames, FPS, 90, seed=0, rmssd_ms=45.0, resp_rate=14)
    plain = injected_wave(clip.num_frames, FPS, 90, seed=0)
    assert np.corrcoef(ppg, wanted)[0, 1] > 0.999 and np.corrcoef(ppg, plain)[0, 1] < 0.99
    with pytest.raises(InputError, match="HRV and breathing targets"):
        BatchRequest(root, out, remove=True, hrv_rmssd_ms=45.0)
    with pytest.raises(InputError, match="goes with --remove"):
        BatchRequest(root, out, target="90", strength="max")


# --------------------------------------------------------------------------- policies and safety


def test_policies_parse_and_assign():
    assert parse_policy("100") == Policy("fixed", (parse_policy("100").values[0],))
    assert parse_policy("60, 80,100") == Policy("list", (60.0, 80.0, 100.0))
    assert parse_policy("uniform:40-180") == Policy("uniform", (40.0, 180.0))
    assert parse_policy("balanced:50-150").kind == "balanced"
    assert parse_policy("0s=70, 8s=110").values[0].kind == "knots"
    ids = [f"c{i}" for i in range(10)]
    assert assign_targets(parse_policy("70:120"), ids[:1], {})["c0"] == "70:120"
    assert list(assign_targets(parse_policy("60,80"), ids[:3], {}).values()) == ["60", "80", "60"]
    uniform = assign_targets(parse_policy("uniform:40-180"), ids, {}, seed=3)
    assert all(40 <= float(v) <= 180 for v in uniform.values())
    assert assign_targets(parse_policy("uniform:40-180"), ids[3:], {}, seed=3)["c5"] == uniform["c5"]
    measured = {c: 80.0 + i for i, c in enumerate(reversed(ids))}  # c9 slowest
    balanced = assign_targets(parse_policy("balanced:50-150"), ids, measured)
    assert sorted(float(v) for v in balanced.values()) == [55.0 + 10 * i for i in range(10)]
    assert balanced["c9"] == "55.0" and balanced["c0"] == "145.0"  # rank kept: the least change for each clip
    for bad in ("uniform:180-40", "balanced:50", "fast", "uniform:10-100"):
        with pytest.raises(InputError):
            parse_policy(bad)
    with pytest.raises(InputError, match="measured"):
        assign_targets(parse_policy("balanced:50-150"), ids, {})


def test_refuses_unsafe_roots(tmp_path, faces):
    root = make_ubfc(tmp_path / "UBFC", faces[:1])
    for out in (root, root / "out", tmp_path):
        with pytest.raises(InputError, match="outside the dataset"):
            run_batch(BatchRequest(root, out, target="100", quiet=True))
    foreign = tmp_path / "full"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="no batch run wrote"):
        run_batch(BatchRequest(root, foreign, target="100", quiet=True))
    out = tmp_path / "busy"
    from physiolatent_core.batch import RunDir

    held = RunDir(out)
    held.open()  # another run holds it (the lock lives as long as its RunDir)
    with pytest.raises(InputError, match="another batch run"):
        run_batch(BatchRequest(root, out, target="100", quiet=True))
    del held
    with pytest.raises(InputError, match="not both"):
        BatchRequest(root, tmp_path / "o", target="100", remove=True)
    with pytest.raises(InputError, match="layout"):
        detect_layout(tmp_path / "full")


# --------------------------------------------------------------------------- kill and resume


def test_killed_run_resumes_without_redoing_finished_clips(tmp_path, faces):
    root = make_folder(tmp_path / "videos", faces)
    write_ffv1(root / "face3.mkv", faces[0][0])  # three clips
    out = tmp_path / "out"
    command = [sys.executable, "-m", "physiolatent_core", "batch", str(root), "-o", str(out), "--target-hr",
               "60,100", "--workers", "1", "--methods", "pos", "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    manifest = out / ".physiolatent" / "manifest.jsonl"
    proc = subprocess.Popen(command, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if manifest.exists() and manifest.read_text().count('"status": "done"') >= 1:
                break
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)  # as a crash would: no cleanup
    finally:
        proc.wait()
    finished = [json.loads(line) for line in manifest.read_text().splitlines()]
    assert 1 <= len(finished) < 3, "the run should have been killed part-way"
    mtimes = {r["clip"]: Path(r["outputs"][0]).stat().st_mtime_ns for r in finished}
    assert subprocess.run(command, env=env).returncode == 0
    records = [json.loads(line) for line in manifest.read_text().splitlines()]
    assert sorted(r["clip"] for r in records) == ["face1.mkv", "face2.mkv", "face3.mkv"]  # none twice
    assert {c: Path(next(r for r in records if r["clip"] == c)["outputs"][0]).stat().st_mtime_ns
            for c in mtimes} == mtimes
    assert [c.hr_bpm for c in read_folder(out)] == [60.0, 100.0, 60.0]
    assert not any((out / ".physiolatent" / "staging").iterdir())


# --------------------------------------------------------------------------- Ray


@pytest.fixture(scope="module")
def tiny_network(tmp_path_factory):
    """A tiny VAE and a random adapter (as test_pipeline's), as the network's files."""
    import torch

    from physiolatent_core.model import PhysioLatentAdapter, adapter_config_tiny, build_vae, save_adapter, tiny_vae_config
    from physiolatent_core.model.vae import save_vae
    from physiolatent_core.pipeline import NetworkFiles

    root = tmp_path_factory.mktemp("models")
    vae = build_vae(tiny_vae_config(), seed=0)
    save_vae(vae, root / "vae.safetensors")
    adapter = PhysioLatentAdapter(adapter_config_tiny(), vae)
    torch.manual_seed(1)
    with torch.no_grad():
        for p in adapter.fusion.parameters():
            p.add_(0.05 * torch.randn_like(p))
    save_adapter(root / "adapter.safetensors", adapter, vae)
    return NetworkFiles(root / "vae.safetensors", root / "adapter.safetensors", device="cpu", crop_size=32)


def test_network_weights_load_once_per_worker(tmp_path, faces, tiny_network, monkeypatch):
    from physiolatent_core import network_editor, pipeline

    loads = []
    load = network_editor.NetworkEditor.from_files.__func__
    monkeypatch.setattr(network_editor.NetworkEditor, "from_files",
                        classmethod(lambda cls, *a, **k: loads.append(1) or load(cls, *a, **k)))
    monkeypatch.setattr(pipeline, "_KEPT_NETWORKS", None)  # as a fresh worker
    # The network's frames are test_pipeline's and the Ray test's business; here only its loading counts.
    monkeypatch.setattr(network_editor.NetworkEditor, "apply", lambda self, frames, *a, **k: frames)
    root = make_folder(tmp_path / "videos", faces)
    summary = run_batch(BatchRequest(root, tmp_path / "out", target="90", workers=1, network=tiny_network,
                                     verify=False, quiet=True))
    assert summary["counts"]["done"] == 2, summary["failures"]
    assert len(loads) == 1
    assert [c.hr_bpm for c in read_folder(tmp_path / "out")] == [90.0, 90.0]


def test_ray_engine_in_local_mode(tmp_path, faces, tiny_network):
    ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'physiolatent[ray]')")
    root = make_folder(tmp_path / "videos", faces)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(REPO)}})
    try:  # one Ray for both paths: tasks (training-free), and actors holding the network
        summary = run_batch(BatchRequest(root, tmp_path / "out", target="100", engine="ray", workers=2,
                                         methods=("pos",), quiet=True))
        assert summary["engine"].startswith("ray") and summary["counts"]["done"] == 2, summary["failures"]
        assert [c.hr_bpm for c in read_folder(tmp_path / "out")] == [100.0, 100.0]
        (root / "face2.mkv").unlink()  # one clip: the tiny network takes seconds per clip on a CPU
        (root / "labels.csv").unlink()
        summary = run_batch(BatchRequest(root, tmp_path / "net", target="90", engine="ray", workers=1,
                                         network=tiny_network, verify=False, quiet=True))
        assert summary["counts"]["done"] == 1, summary["failures"]
        (clip,) = read_folder(tmp_path / "net")
        assert clip.hr_bpm == 90.0 and clip.num_frames == len(faces[0][0])
    finally:
        ray.shutdown()
