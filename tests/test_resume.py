"""Long and large videos: pass 3 in segments (video/segments.py), resumed after an interruption
(resume.py); memory bounded for 4K frames."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest

from physiolatent_core import resume
from physiolatent_core.errors import InputError
from physiolatent_core.pipeline import JobRequest, run_job
from physiolatent_core.synth import synth_subject
from physiolatent_core.video import VideoWriter, probe_video, read_video
from physiolatent_core.video import segments
from physiolatent_core.video.segments import JoinWriter, SegmentWriter, read_segment

ROOT = Path(__file__).resolve().parents[1]
FPS = 15.0
SEGMENT_S = 1.0  # 15 frames a segment: the 5 s clip is 5 segments


@pytest.fixture(scope="module")
def clip():
    return synth_subject(duration_s=5.0, hr_bpm=72.0, size=(120, 160), fps=FPS, seed=5)


@pytest.fixture(scope="module")
def clip_path(clip, tmp_path_factory) -> Path:
    """The clip saved losslessly with a sound track (a tone), to check it survives a resume."""
    samples = np.sin(2 * np.pi * 440 * np.arange(int(5 * 16000)) / 16000)[None].repeat(2, 0) * 0.1
    return Path(_write(tmp_path_factory.mktemp("in") / "face.mkv", clip, samples))


def _write(path: Path, clip, samples) -> str:
    with VideoWriter(path, clip.fps, audio=(samples.astype(np.float32), 16000)) as writer:
        writer.write(clip.frames)
    return str(writer.path)


@pytest.fixture(autouse=True)
def short_segments(monkeypatch):
    monkeypatch.setattr(resume, "SEGMENT_S", SEGMENT_S)


def _edit(clip_path: Path, out: Path, **kwargs) -> dict:
    return run_job(JobRequest(clip_path, "edit", out, target=kwargs.pop("target", 90), quiet=True, verify=False,
                              figure=False, **kwargs))


def _interrupt_after(monkeypatch, closes: int) -> dict:
    """Make the ``closes``-th segment close of the next job raise KeyboardInterrupt (a Ctrl-C);
    returns the counter of segment closes, which also counts them afterwards."""
    real_close, count = SegmentWriter.close, {"closes": 0, "stop_at": closes}

    def close(self):
        path = real_close(self)
        count["closes"] += 1
        if count["closes"] == count["stop_at"]:
            raise KeyboardInterrupt
        return path

    monkeypatch.setattr(SegmentWriter, "close", close)
    return count


def _pts(path: Path) -> list[int]:
    with av.open(str(path)) as container:
        return sorted(p.pts for p in container.demux(video=0) if p.pts is not None)


@pytest.mark.parametrize("suffix", [".mkv", ".mp4"])
def test_a_resumed_run_redoes_no_segment_and_gives_the_same_file(clip_path, tmp_path, monkeypatch, suffix):
    whole = _edit(clip_path, tmp_path / f"whole{suffix}")
    assert whole["resume"] == {"segment_frames": 15, "segments_reused": 0, "frames_reused": 0}
    assert not (tmp_path / f"whole{suffix}.partial").exists()  # removed once joined

    out = tmp_path / f"resumed{suffix}"
    count = _interrupt_after(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        _edit(clip_path, out)
    assert not out.exists()  # the output appears only when complete
    work = tmp_path / f"resumed{suffix}.partial"
    assert read_segment(work, 0) is not None and read_segment(work, 1) is not None and read_segment(work, 2) is None

    count.update(closes=0, stop_at=-1)
    report = _edit(clip_path, out, resume=True)
    assert count["closes"] == 3  # segments 2, 3, 4: the two finished ones were not written again
    assert report["resume"] == {"segment_frames": 15, "segments_reused": 2, "frames_reused": 30}
    assert not work.exists()

    a, _ = read_video(tmp_path / f"whole{suffix}")
    b, _ = read_video(out)
    assert a.shape == b.shape == (75, 120, 160, 3)
    assert np.array_equal(a, b)  # the same decoded frames as the uninterrupted run
    assert _pts(out) == _pts(tmp_path / f"whole{suffix}")
    info = probe_video(out)
    assert info.num_frames == 75 and abs(info.fps - FPS) < 1e-3 * FPS and not info.variable_fps  # ms timestamps (.mkv input)
    assert [s["type"] for s in info.streams] == ["audio"]  # the sound survives the resume
    assert [s["action"] for s in report["kept"]["streams"]] == ["copied"]


def test_a_stale_or_mismatched_work_folder_is_refused(clip_path, tmp_path, monkeypatch):
    out = tmp_path / "out.mkv"
    count = _interrupt_after(monkeypatch, 1)
    with pytest.raises(KeyboardInterrupt):
        _edit(clip_path, out)
    count["stop_at"] = -1
    with pytest.raises(InputError, match=r"--resume to continue it, or delete that folder"):
        _edit(clip_path, out)
    with pytest.raises(InputError, match=r"other settings \(differs in: target\)"):
        _edit(clip_path, out, target=80, resume=True)
    with pytest.raises(InputError, match=r"other settings \(differs in: crf, seed\)"):
        _edit(clip_path, out, seed=3, crf=20, resume=True)
    other = tmp_path / "other.mkv"
    other.write_bytes(Path(clip_path).read_bytes()[:-1] + b"\0")  # another input under the folder's name
    with pytest.raises(InputError, match=r"another input file"):
        _edit(other, out, resume=True)
    assert read_segment(out.with_name("out.mkv.partial"), 0) is not None  # refusals keep the user's work
    with pytest.raises(InputError, match="PNG"):
        _edit(clip_path, tmp_path / "frames/", resume=True)


def test_resume_without_a_work_folder_just_starts(clip_path, tmp_path):
    report = _edit(clip_path, tmp_path / "out.mkv", resume=True)
    assert report["resume"]["segments_reused"] == 0 and (tmp_path / "out.mkv").exists()


def test_one_segment_is_what_a_plain_writer_writes(clip, tmp_path):
    """Segment 0 keeps the writer's seed and a clip of one segment its frames: short jobs
    (and the CLI == nodes promise) are unchanged by segmenting."""
    frames = clip.frames[:30]
    for suffix in (".mkv", ".mp4"):
        with VideoWriter(tmp_path / f"plain{suffix}", FPS, seed=7) as plain:
            plain.write(frames)
        folder = tmp_path / f"segs{suffix}"
        folder.mkdir()
        with SegmentWriter(folder, 0, 0, tmp_path / f"joined{suffix}", FPS, seed=7) as writer:
            writer.write(frames)
        with JoinWriter(tmp_path / f"joined{suffix}", FPS, seed=7) as joined:
            joined.append(read_segment(folder, 0))
        a, _ = read_video(tmp_path / f"plain{suffix}")
        b, _ = read_video(tmp_path / f"joined{suffix}")
        assert np.array_equal(a, b), suffix


def test_a_segment_cut_short_is_written_again(clip, tmp_path):
    folder = tmp_path / "segs"
    folder.mkdir()
    with SegmentWriter(folder, 0, 0, tmp_path / "out.mkv", FPS) as writer:
        writer.write(clip.frames[:10])
    data, _ = segments.segment_paths(folder, 0)
    assert read_segment(folder, 0) is not None
    data.write_bytes(data.read_bytes()[:-5])  # the machine went down while it was being written
    assert read_segment(folder, 0) is None


def test_a_killed_command_resumes(clip_path, tmp_path):
    """The real thing: the CLI killed with SIGKILL while it writes segments, then --resume."""
    out = tmp_path / "out.mkv"
    work = tmp_path / "out.mkv.partial"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cli = "import sys; from physiolatent_core import cli, resume; resume.SEGMENT_S = 0.4; sys.exit(cli.main())"
    command = [sys.executable, "-c", cli, "edit", str(clip_path), "-o", str(out), "--target-hr", "90",
               "--no-verify", "--no-figure", "--quiet"]  # 6 frames a segment
    child = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while read_segment(work, 2) is None and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    child.send_signal(signal.SIGKILL)
    child.wait()
    if out.exists():
        pytest.skip("the job finished before it could be killed (a very fast machine)")
    assert read_segment(work, 0) is not None
    done = subprocess.run(command + ["--resume"], env=env, cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "out.mkv.report.json").read_text())
    assert report["resume"]["segments_reused"] >= 3 and not work.exists()
    assert probe_video(out).num_frames == 75


# --------------------------------------------------------------------------- large frames


def test_large_frames_stay_small_in_memory():
    """A 4K chunk is one frame, and the codec sample's box at most a 1080p frame's pixels."""
    from physiolatent_core.codec import cap_box
    from physiolatent_core.editor import SAMPLE_MAX_PIXELS
    from physiolatent_core.pipeline import Source
    from physiolatent_core.video import VideoInfo

    def chunk_frames(width, height):
        info = VideoInfo("x.mp4", width, height, 30.0, 100, 3.3, False, False, False, "h264")
        return Source(Path("x.mp4"), info).chunk_frames

    assert chunk_frames(3840, 2160) == 1 and chunk_frames(1920, 1080) == 3 and chunk_frames(640, 480) == 26
    face = (900, 0, 3400, 2160)  # a close-up 4K face and its margin
    x0, y0, x1, y1 = cap_box(face, SAMPLE_MAX_PIXELS)
    assert (x1 - x0) * (y1 - y0) <= SAMPLE_MAX_PIXELS and x0 % 16 == 0 and y0 % 16 == 0
    assert face[0] <= x0 < x1 <= face[2] and face[1] <= y0 < y1 <= face[3]
    assert abs((x0 + x1) / 2 - 2150) < 16 and abs((y0 + y1) / 2 - 1080) < 16  # about the face's centre
    assert cap_box((16, 32, 656, 512), SAMPLE_MAX_PIXELS) == (16, 32, 656, 512)  # small boxes unchanged


def test_rotation_and_ten_bits_survive_segments(tmp_path):
    """The CLI's phone-video and 10-bit HDR checks of test_video_keep.py, with the clips
    written as five segments and joined."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import test_video_keep as keep

    for name, check in (("phone", keep.test_the_cli_edits_a_phone_video_stored_on_its_side),
                        ("hdr", keep.test_the_cli_edits_a_ten_bit_hdr_clip_at_ten_bits)):
        (tmp_path / name).mkdir()
        check(tmp_path / name)
        report = json.loads(next((tmp_path / name).glob("*.report.json")).read_text())
        assert report["resume"]["segment_frames"] == 15 and report["face"]["frames"] == 75  # five segments


def test_a_resumed_pass_bar_counts_the_finished_frames_as_done(monkeypatch):
    """The pass bars count frames; a resumed pass 3 starts at the frames already written."""
    import io

    from tqdm import tqdm

    from physiolatent_core import pipeline

    bars = []

    def progress(iterable, quiet, **kwargs):
        bars.append(tqdm(iterable, file=io.StringIO(), disable=False, **kwargs))
        return bars[-1]

    monkeypatch.setattr(pipeline, "progress", progress)
    chunks = [np.zeros((4, 1, 1, 3), np.float32)] * 10  # 40 frames; 18 done: the fifth chunk straddles them
    seen = []
    for chunk in pipeline._frame_bar(iter(chunks), False, "editing", 40, done_frames=18):
        seen.append(bars[0].n)
    assert bars[0].unit == "frame" and bars[0].total == 40
    assert seen[:5] == [18] * 5 and seen[5] == 20 and bars[0].n == 40  # frames 18, 19 of the fifth, then 4 a chunk


def test_the_network_editor_resumes_too(clip_path, tmp_path, monkeypatch):
    """The network carries context from window to window: a resume applies the finished
    windows again (dropping their frames) and gives the uninterrupted run's frames."""
    import torch

    from physiolatent_core.model import PhysioLatentAdapter, adapter_config_tiny, build_vae, save_adapter, tiny_vae_config
    from physiolatent_core.model.vae import save_vae
    from physiolatent_core.pipeline import NetworkFiles

    vae = build_vae(tiny_vae_config(), seed=0)
    save_vae(vae, tmp_path / "vae.safetensors")
    adapter = PhysioLatentAdapter(adapter_config_tiny(), vae)
    torch.manual_seed(1)
    with torch.no_grad():  # an untrained adapter is the identity: give it weights that change the latent
        for p in adapter.fusion.parameters():
            p.add_(0.05 * torch.randn_like(p))
    save_adapter(tmp_path / "adapter.safetensors", adapter, vae)
    network = NetworkFiles(tmp_path / "vae.safetensors", tmp_path / "adapter.safetensors", device="cpu",
                           crop_size=32)

    def edit(out, **kwargs):
        return run_job(JobRequest(clip_path, "edit", out, target=90, quiet=True, verify=False, figure=False,
                                  network=network, **kwargs))

    edit(tmp_path / "whole.mkv")
    count = _interrupt_after(monkeypatch, 3)  # 45 frames: past the first window (editor.chunk_frames)
    with pytest.raises(KeyboardInterrupt):
        edit(tmp_path / "resumed.mkv")
    count.update(closes=0, stop_at=-1)
    report = edit(tmp_path / "resumed.mkv", resume=True)
    assert report["editor"]["window_frames"] - report["editor"]["context_frames"] == 41  # windows of 41 new frames
    assert report["resume"]["segments_reused"] == 3 and count["closes"] == 2
    assert np.array_equal(read_video(tmp_path / "whole.mkv")[0], read_video(tmp_path / "resumed.mkv")[0])
