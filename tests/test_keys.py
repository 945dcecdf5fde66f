"""Restore keys (keys.py, --key-out, restore): the original comes back bit-exactly from a
lossless output, as closely as H.264 allows from an .mp4 one, and a key opens nothing
but the file it was made for (wrong key, tampered or re-encoded file, changed key: a
clear InputError and nothing written)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest

from physiolatent_core import cli
from physiolatent_core.errors import InputError
from physiolatent_core.keys import KeyReader, KeyWriter, level_codes, restore_chunks
from physiolatent_core.pipeline import JobRequest, run_job
from physiolatent_core.restore import RestoreRequest, run_restore
from physiolatent_core.synth import synth_subject
from physiolatent_core.video import iter_frames, read_video, write_video


def codes(path) -> np.ndarray:
    """Every frame of a file as decoded, 8-bit codes [T, H, W, 3]."""
    return np.concatenate(list(iter_frames(Path(path), chunk_frames=64, raw=True)))


@pytest.fixture(scope="module")
def jobs(tmp_path_factory):
    """A 4.4 s, 30 fps, 160x120 synthetic face saved losslessly (three key chunks), removed
    to .mkv and to .mp4 and edited to .mkv, each with a key of differences; and the same
    face saved as H.264, removed to .mp4, whose key holds the (smaller) input file."""
    d = tmp_path_factory.mktemp("keys")
    clip = synth_subject(duration_s=4.4, hr_bpm=72.0, size=(120, 160), fps=30.0, seed=3)
    source = Path(write_video(d / "face.mkv", clip.frames, clip.fps))
    out = {"dir": d, "input": source, "input_h264": Path(write_video(d / "face.mp4", clip.frames, clip.fps))}
    for name, mode, ext, extra in (("removed", "remove", "mkv", {}), ("removed_h264", "remove", "mp4", {}),
                                   ("edited", "edit", "mkv", {"target": 100}), ("src_removed", "remove", "mp4", {})):
        report = run_job(JobRequest(input=out["input_h264"] if name == "src_removed" else source, mode=mode,
                                    output=d / f"{name}.{ext}", key_out=d / f"{name}.key.json", figure=False,
                                    report=d / f"{name}.report.json", verify=False, quiet=True, **extra))
        out[name] = (d / f"{name}.{ext}", d / f"{name}.key.json")
        out[name + "_payload"] = report["key"]["payload"]
    return out


def restore(video, key, output, **kwargs):
    return run_restore(RestoreRequest(input=video, key=key, output=output, quiet=True, **kwargs))


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("name", ["removed", "edited"])
def test_lossless_output_restores_bit_exactly(jobs, name):
    video, key = jobs[name]
    assert jobs[name + "_payload"] == "difference"
    original = codes(jobs["input"])
    assert not np.array_equal(codes(video), original)  # the job changed something to undo
    result = restore(video, key, jobs["dir"] / f"{name}.restored.mkv")
    assert result["bit_exact"] and result["frames"] == len(original)
    assert np.array_equal(codes(result["output"]), original)  # PSNR infinite
    assert result["key_header"]["mode"] == ("remove" if name == "removed" else "edit")
    assert "key" not in result["key_header"]  # the AES key is not echoed


def test_h264_output_restores_exactly_to_mkv_and_closely_to_mp4(jobs):
    video, key = jobs["removed_h264"]
    original = codes(jobs["input"])
    # The key holds the codec's change as well, so a lossless restore is exact even from H.264.
    exact = restore(video, key, jobs["dir"] / "from_h264.mkv")
    assert exact["bit_exact"] and np.array_equal(codes(exact["output"]), original)
    lossy = restore(video, key, jobs["dir"] / "from_h264.mp4", crf=18)
    assert not lossy["bit_exact"] and 38.0 < lossy["psnr_db"] < 100.0, lossy["psnr_db"]
    frames, _ = read_video(lossy["output"])
    mse = np.mean((frames.astype(np.float64) - original / 255.0) ** 2)
    assert abs(10 * np.log10(1 / mse) - lossy["psnr_db"]) < 0.01  # the reported PSNR is the file's


def test_key_of_an_h264_input_holds_the_smaller_input_file(jobs, tmp_path):
    video, key = jobs["src_removed"]
    assert jobs["src_removed_payload"] == "source"
    assert key.stat().st_size < 1.5 * jobs["input_h264"].stat().st_size  # base64 of the file, not of differences
    original = codes(jobs["input_h264"])
    exact = restore(video, key, tmp_path / "exact.mkv")
    assert exact["bit_exact"] and np.array_equal(codes(exact["output"]), original)
    lossy = restore(video, key, tmp_path / "lossy.mp4")
    assert not lossy["bit_exact"] and 38.0 < lossy["psnr_db"] < 100.0
    frames, fps = read_video(video)
    refused(Path(write_video(tmp_path / "reencoded.mp4", frames, fps, crf=18)), key, tmp_path / "o.mkv",
            "not the file this key was made for")
    refused(jobs["removed_h264"][0], key, tmp_path / "o.mkv", "not the file this key was made for")

    def flip(lines):
        _, blob = json.loads(lines[1].rstrip(","))
        raw = bytearray(base64.b64decode(blob))
        raw[-3] ^= 1
        lines[1] = json.dumps(["", base64.b64encode(bytes(raw)).decode()]) + ("," if lines[1].endswith(",") else "")

    refused(video, _edit_key(key, tmp_path / "flipped.json", flip), tmp_path / "o.mkv", "does not open piece 0")
    with pytest.raises(InputError, match="holds the input file itself"):
        from physiolatent_core.keys import restore_frames

        restore_frames(codes(video), key)


def test_report_and_key_summary(jobs, tmp_path):
    report = run_job(JobRequest(input=jobs["input"], mode="remove", output=tmp_path / "r.mkv",
                                key_out=tmp_path / "k.json", figure=False, verify=False, quiet=True))
    assert report["outputs"]["key"] == str(tmp_path / "k.json")
    assert report["key"]["frames"] == 132 and report["key"]["chunks"] == 3  # 64 + 64 + 4 frames
    assert report["key"]["bytes"] == (tmp_path / "k.json").stat().st_size
    json.loads((tmp_path / "k.json").read_text())  # the key file is plain JSON


# --------------------------------------------------------------------------- refusals


def refused(video, key, output, match):
    before = sorted(Path(output).parent.iterdir())
    with pytest.raises(InputError, match=match):
        restore(video, key, output)
    assert sorted(Path(output).parent.iterdir()) == before  # nothing written, no temp file left


def test_wrong_key_is_refused(jobs):
    video, _ = jobs["removed"]
    _, other_key = jobs["edited"]  # the key of another output of the same input
    refused(video, other_key, jobs["dir"] / "wrong.mkv", "not the file this key was made for")


def test_tampered_file_is_refused(jobs, tmp_path):
    video, key = jobs["removed"]
    frames = codes(video)
    frames[100, 60, 80, 1] ^= 1  # one level of one channel of one pixel in the second chunk
    tampered = Path(write_video(tmp_path / "tampered.mkv", frames, 30.0))
    refused(tampered, key, tmp_path / "out.mkv", "frames 64-127 differ")


def test_reencoded_file_is_refused(jobs, tmp_path):
    video, key = jobs["removed"]
    frames, fps = read_video(video)
    reencoded = Path(write_video(tmp_path / "reencoded.mp4", frames, fps, crf=18))
    refused(reencoded, key, tmp_path / "out.mkv", "re-encoded")


def test_trimmed_file_is_refused(jobs, tmp_path):
    video, key = jobs["removed"]
    trimmed = Path(write_video(tmp_path / "trimmed.mkv", codes(video)[:128], 30.0))
    refused(trimmed, key, tmp_path / "out.mkv", "fewer frames")


def _edit_key(path: Path, out: Path, change) -> Path:
    lines = path.read_text().split("\n")
    change(lines)
    out.write_text("\n".join(lines))
    return out


def test_changed_key_is_refused(jobs, tmp_path):
    video, key = jobs["removed"]

    def flip_ciphertext(lines):
        digest, blob = json.loads(lines[2].rstrip(","))
        raw = bytearray(base64.b64decode(blob))
        raw[40] ^= 0x10
        lines[2] = json.dumps([digest, base64.b64encode(bytes(raw)).decode()]) + ","

    def other_aes_key(lines):
        head = json.loads(lines[0] + "]}")
        head["header"]["key"] = base64.b64encode(bytes(32)).decode()
        lines[0] = lines[0].split('"header": ')[0] + '"header": ' + json.dumps(head["header"]) + ', "chunks": ['

    def other_header(lines):
        lines[0] = lines[0].replace('"mode": "remove"', '"mode": "edit"')

    def cut_trailer(lines):
        lines[-2] = lines[-2].replace('"frames": 132', '"frames": 128')

    for change, match in ((flip_ciphertext, "does not open chunk 1"), (other_aes_key, "does not open chunk 0"),
                          (other_header, "does not open chunk 0"), (cut_trailer, "does not open its trailer")):
        changed = _edit_key(key, tmp_path / f"{change.__name__}.json", change)
        refused(video, changed, tmp_path / f"{change.__name__}.mkv", match)


def test_not_a_key_and_paths_are_refused(jobs, tmp_path):
    video, key = jobs["removed"]
    (tmp_path / "report.json").write_text('{"a": 1}\n')
    refused(video, tmp_path / "report.json", tmp_path / "o.mkv", "not a PhysioLatent key")
    refused(video, tmp_path / "missing.json", tmp_path / "o.mkv", "does not exist")
    odd_name = tmp_path / "key.mkv"  # a key named like a video
    odd_name.write_bytes(key.read_bytes())
    with pytest.raises(InputError, match="overwrite its key"):
        restore(video, odd_name, odd_name, overwrite=True)
    with pytest.raises(InputError, match="estimate changes nothing"):
        JobRequest(input=video, mode="estimate", key_out=tmp_path / "k.json")
    with pytest.raises(InputError, match="must differ"):
        run_job(JobRequest(input=jobs["input"], mode="remove", output=tmp_path / "x.mkv",
                           key_out=tmp_path / "x.mkv.png", quiet=True))  # the figure's name (sidecar)
    assert not (tmp_path / "x.mkv").exists()


# --------------------------------------------------------------------------- the format


def test_key_writer_and_reader_round_trip_chunks(tmp_path):
    rng = np.random.default_rng(0)
    original = rng.integers(0, 256, (10, 8, 12, 3), dtype=np.uint8)
    output = np.clip(original.astype(int) + rng.integers(-3, 4, original.shape), 0, 255).astype(np.uint8)
    output[9] = 255 - original[9]  # differences beyond int8 in the short last chunk
    with KeyWriter(tmp_path / "k.json", width=12, height=8, chunk_frames=4) as writer:
        for at in range(0, 10, 4):
            writer.add(original[at : at + 4], output[at : at + 4])
    with KeyReader(tmp_path / "k.json") as reader:
        back = np.concatenate([reader.undo(output[at : at + 4]) for at in range(0, 10, 4)])
        assert reader.finish()["frames"] == 10
    assert np.array_equal(back, original)
    with pytest.raises(InputError, match="made for a 12x8 video"):
        KeyReader(tmp_path / "k.json").undo(output[:4, :4])
    with pytest.raises(InputError, match="at least one frame"):
        KeyWriter(tmp_path / "empty.json", width=12, height=8, chunk_frames=4).close()
    assert not (tmp_path / "empty.json").exists()


def test_restore_chunks_streams_the_original(jobs):
    video, key = jobs["edited"]
    chunks = list(restore_chunks(video, key))
    assert [len(c) for c in chunks] == [64, 64, 4]
    assert np.array_equal(np.concatenate(chunks), codes(jobs["input"]))


# --------------------------------------------------------------------------- command line


def test_cli_remove_with_key_and_restore(jobs, tmp_path, capsys):
    out, key = tmp_path / "r.mkv", tmp_path / "r.key.json"
    assert cli.main(["remove", jobs["input"], "-o", out, "--key-out", key, "--no-figure", "--no-verify",
                     "--quiet"]) == 0
    assert cli.main(["restore", out, "--key", key, "-o", tmp_path / "back.mkv"]) == 0
    assert "original frames exactly" in capsys.readouterr().out
    assert np.array_equal(codes(tmp_path / "back.mkv"), codes(jobs["input"]))
    assert cli.main(["restore", jobs["input"], "--key", key, "-o", tmp_path / "no.mkv"]) == 2
    assert "not the file this key was made for" in capsys.readouterr().err
    assert not (tmp_path / "no.mkv").exists()


# --------------------------------------------------------------------------- nodes


@pytest.fixture()
def pack(tmp_path, monkeypatch):
    import sys

    monkeypatch.setenv("PHYSIOLATENT_OUTPUT_DIR", str(tmp_path / "output"))
    sys.path.insert(0, str(Path(__file__).resolve().parent / "comfyui"))
    from workflow_tools import load_pack

    nodes = load_pack().NODE_CLASS_MAPPINGS

    def node(name, **kwargs):
        cls = nodes[name]
        out = getattr(cls(), cls.FUNCTION)(**kwargs)
        return out["result"] if isinstance(out, dict) else out

    return node


def test_nodes_remove_reversibly_save_losslessly_and_restore(jobs, pack, tmp_path):
    import torch

    frames, fps = read_video(jobs["input"])
    images, key, info = pack("PhysioLatentPulseRemoveReversible", images=torch.from_numpy(frames), fps=fps,
                             decoy_hr_bpm=0.0, robust_to="lossless", seed=0)
    assert (tmp_path / "output" / key).is_file() and json.loads(info)["key"] == key
    removed = images.numpy()
    assert not np.array_equal(removed, frames) and level_codes(removed) is not None  # on 8-bit levels
    back, _ = pack("PhysioLatentPulseRestore", images=images, key=key)
    assert np.array_equal(back.numpy(), frames)  # directly: exact
    # Saved by the pack's pulse-safe saver (dither on) as mkv and loaded again: exact too.
    (saved,) = pack("PhysioLatentSaveVideo", images=images, fps=fps, filename_prefix="PhysioLatent/removed",
                    format="mkv (FFV1 lossless)", crf=18, dither=True)
    loaded, _ = read_video(saved)
    back, restore_info = pack("PhysioLatentPulseRestore", images=torch.from_numpy(loaded), key=key)
    assert np.array_equal(back.numpy(), frames) and json.loads(restore_info)["mode"] == "remove"
    with pytest.raises(InputError, match="not on 8-bit levels"):
        pack("PhysioLatentPulseRestore", images=images + 0.3 / 255, key=key)
    with pytest.raises(InputError, match="not the file this key was made for"):
        pack("PhysioLatentPulseRestore", images=torch.from_numpy(frames), key=key)
    with pytest.raises(InputError, match="outside ComfyUI's output folder"):
        pack("PhysioLatentPulseRestore", images=images, key="../" + Path(jobs["removed"][1]).name)


def test_restore_node_reads_a_command_line_key(jobs, pack, tmp_path):
    import shutil

    import torch

    video, key = jobs["removed"]
    (tmp_path / "output").mkdir(parents=True, exist_ok=True)
    shutil.copy(key, tmp_path / "output" / "cli.key.json")
    loaded, _ = read_video(video)
    back, _ = pack("PhysioLatentPulseRestore", images=torch.from_numpy(loaded), key="cli.key.json")
    assert np.array_equal(np.rint(back.numpy() * 255).astype(np.uint8), codes(jobs["input"]))


def test_a_video_stored_on_its_side_restores_as_stored(tmp_path):
    """A phone video stored sideways under a 90 degree display matrix: the job reads it upright;
    the key and the restore do too, and the restored file is stored as the input was."""
    from fractions import Fraction

    import av

    from physiolatent_core.video import probe_video, quantize_to_uint8

    clip = synth_subject(duration_s=4.2, hr_bpm=72.0, size=(120, 160), fps=30.0, seed=5)
    stored = np.ascontiguousarray(np.rot90(quantize_to_uint8(clip.frames, "round"), -1, axes=(1, 2)))
    src = tmp_path / "phone.mp4"
    with av.open(str(src), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(30))
        stream.width, stream.height, stream.pix_fmt = stored.shape[2], stored.shape[1], "yuv420p"
        stream.options = {"crf": "18", "preset": "ultrafast"}
        stream.set_display_rotation(90)
        for t, rgb in enumerate(stored):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = t
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    assert probe_video(src).rotation == 90
    out, key = tmp_path / "removed.mkv", tmp_path / "k.json"
    run_job(JobRequest(input=src, mode="remove", output=out, key_out=key, figure=False, verify=False, quiet=True))
    result = restore(out, key, tmp_path / "back.mkv")
    assert result["bit_exact"] and probe_video(result["output"]).rotation == 90
    assert np.array_equal(codes(result["output"]), codes(src))  # as stored, frame for frame


def test_a_deeper_input_is_refused_before_any_work(tmp_path):
    import cv2

    frames = tmp_path / "frames"
    frames.mkdir()
    for t in range(3):
        cv2.imwrite(str(frames / f"f{t}.png"), np.full((48, 64, 3), 30000 + 1000 * t, np.uint16))
    with pytest.raises(InputError, match="16-bit frames; a restore key holds 8-bit"):
        run_job(JobRequest(input=frames, mode="remove", output=tmp_path / "out.mkv", key_out=tmp_path / "k.json",
                           fps=0.5, quiet=True))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames"]
