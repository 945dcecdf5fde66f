"""The output is the input except for the pulse: audio and subtitle streams, timestamps
(offsets, variable frame rates), rotation, colour tags, container metadata and bit depth
carried from the input file to the written one (video/keep.py, VideoWriter with
``input_path``). Every input is a tiny file made here with PyAV."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from physiolatent_core.errors import InputError
from physiolatent_core.video import VideoWriter, iter_frames, probe_video, read_video, write_video
from physiolatent_core.video.keep import Colour, source_layout

FPS, SIZE, RATE, TONE = 15, (48, 96), 16000, 440.0  # frames/s, (H, W), audio samples/s, Hz


def _frames(n: int, rng_seed: int = 0) -> np.ndarray:
    """uint8 [n, H, W, 3]: saturated blocks (a wrong colour matrix moves them by several
    levels) and a moving gradient."""
    h, w = SIZE
    frames = np.empty((n, h, w, 3), np.uint8)
    blocks = np.array([[200, 40, 30], [40, 180, 60], [30, 50, 210], [220, 170, 140]], np.uint8)
    for t in range(n):
        frames[t] = np.linspace(40, 200, w, dtype=np.float32)[None, :, None].astype(np.uint8)
        for k, colour in enumerate(blocks):
            frames[t, 8:24, 8 + 22 * k : 24 + 22 * k] = colour
        frames[t, 30:40, (2 * t) % w] = 255
    return frames


def _tone(seconds: float, rate: int = RATE) -> np.ndarray:
    return (0.3 * np.sin(2 * np.pi * TONE * np.arange(int(seconds * rate)) / rate)).astype(np.float32)


def make_clip(path: Path, n: int = 30, *, audio_codec: str | None = None, audio_start_s: float = 0.0,
              subtitle: bool = False, rotation: float = 0, colour: Colour | None = None, pix_fmt: str = "yuv420p",
              pts: list[int] | None = None, time_base: Fraction | None = None, metadata: dict | None = None,
              deep_values: np.ndarray | None = None, frames: np.ndarray | None = None, fps: float = FPS) -> Path:
    """A small H.264 (lossless, qp 0) clip with the given extras (``frames``: uint8 RGB, else made up)."""
    frames = _frames(n) if frames is None else frames
    n = len(frames)
    container = av.open(str(path), "w")
    video = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
    video.width, video.height, video.pix_fmt = frames.shape[2], frames.shape[1], pix_fmt
    video.options = {"qp": "0", "preset": "ultrafast"}
    if time_base is not None:
        video.codec_context.time_base = video.time_base = time_base
    if colour is not None:
        cc = video.codec_context
        cc.colorspace, cc.color_primaries, cc.color_trc, cc.color_range = (
            colour.matrix, colour.primaries, colour.trc, colour.range)
    if rotation:
        video.set_display_rotation(rotation)
    sound = None
    if audio_codec is not None:
        sound = container.add_stream(audio_codec, rate=RATE)
        sound.layout = "mono"
    subs = container.add_mux_stream("subrip") if subtitle else None  # packets muxed as they are
    container.metadata.update(metadata or {})
    for t, rgb in enumerate(frames):
        if deep_values is not None:
            frame = av.VideoFrame.from_ndarray(deep_values[t], format="rgb48le").reformat(
                format=pix_fmt, dst_colorspace=colour.matrix if colour else None,
                dst_color_range=colour.range if colour else None)
        else:
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(
                format=pix_fmt, dst_colorspace=colour.matrix if colour and colour.matrix != 2 else None,
                dst_color_range=colour.range if colour else None)
        if colour is not None:
            frame.colorspace, frame.color_range = colour.matrix, colour.range
        frame.pts = pts[t] if pts is not None else t
        container.mux(video.encode(frame))
    container.mux(video.encode(None))
    if sound is not None:
        samples = _tone(n / fps - audio_start_s)
        for at in range(0, len(samples), 1024):
            block = samples[at : at + 1024]
            frame = av.AudioFrame.from_ndarray(block[None], format="flt", layout="mono")  # PyAV converts it
            frame.sample_rate, frame.pts = RATE, int(audio_start_s * RATE) + at
            frame.time_base = Fraction(1, RATE)
            container.mux(sound.encode(frame))
        container.mux(sound.encode(None))
    if subs is not None:
        cue = av.Packet(b"hello")
        cue.pts, cue.dts, cue.duration, cue.time_base, cue.stream = 500, 500, 1000, Fraction(1, 1000), subs
        container.mux(cue)
    container.close()
    return path


def packets(path, kind: str) -> list[tuple]:
    """(pts, dts, bytes) of every packet of the first ``kind`` stream."""
    with av.open(str(path)) as c:
        stream = getattr(c.streams, kind)[0]
        return [(p.pts, p.dts, bytes(p)) for p in c.demux(stream) if p.size]


def samples(path) -> tuple[float, np.ndarray]:
    """(start time in s, mono float samples) of the first audio stream, decoded."""
    with av.open(str(path)) as c:
        stream = c.streams.audio[0]
        frames = list(c.decode(stream))
        start = float(frames[0].pts * frames[0].time_base)
        raw = np.concatenate([f.to_ndarray().reshape(-1) for f in frames])
    if raw.dtype == np.uint8:  # unsigned 8-bit PCM: 128 is silence
        return start, (raw.astype(np.float32) - 128) / 128
    return start, raw.astype(np.float32) / (32768 if raw.dtype == np.int16 else 1)


def copy_through(src: Path, out: Path, **kwargs) -> VideoWriter:
    """Decode ``src`` and write its frames to ``out`` with ``input_path=src``; the writer."""
    frames, fps = read_video(src)
    with VideoWriter(out, fps, input_path=src, preset="ultrafast", **kwargs) as writer:
        writer.write(frames)
    return writer


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_audio_is_copied_packet_for_packet_with_its_offset(tmp_path, suffix):
    src = make_clip(tmp_path / "in.mp4", 45, audio_codec="aac", audio_start_s=0.4)
    writer = copy_through(src, tmp_path / f"out{suffix}")
    assert [p[2] for p in packets(writer.path, "audio")] == [p[2] for p in packets(src, "audio")]
    start_in, tone_in = samples(src)
    start_out, tone_out = samples(writer.path)
    assert start_out == pytest.approx(start_in, abs=1e-3) and start_in == pytest.approx(0.4 - 1024 / RATE, abs=1e-3)
    assert np.array_equal(tone_out, tone_in)  # the same packets decode to the same samples
    assert writer.kept["streams"] == [{"index": 1, "type": "audio", "codec": "aac", "sample_rate": RATE,
                                       "channels": 1, "start_s": pytest.approx(start_in, abs=1e-3),
                                       "action": "copied"}]


def test_audio_a_container_cannot_hold_is_reencoded_in_sync(tmp_path):
    src = make_clip(tmp_path / "in.mkv", 45, audio_codec="pcm_u8", audio_start_s=0.5)  # not in .mp4
    writer = copy_through(src, tmp_path / "out.mp4")
    assert writer.kept["streams"][0]["action"] == "re-encoded to aac"
    start_in, tone_in = samples(src)
    start_out, tone_out = samples(writer.path)
    # Line the two up by their timestamps: AAC's priming is in its timestamps, not the samples.
    shift = int(round((start_in - start_out) * RATE))
    n = min(len(tone_in), len(tone_out) - shift) - 2048
    a, b = tone_in[1024:n], tone_out[shift + 1024 : shift + n]
    snr = 10 * np.log10(np.sum(a**2) / np.sum((a - b) ** 2))
    assert snr > 20, snr  # the same tone at the same time (an offset of one sample period would be ~ -3 dB)
    assert abs(len(tone_out) - shift - len(tone_in)) < 2048


def test_subtitles_are_carried_or_left_out_with_a_reason(tmp_path):
    src = make_clip(tmp_path / "in.mkv", 30, audio_codec="flac", subtitle=True)
    kept = copy_through(src, tmp_path / "out.mkv").kept["streams"]
    assert [s["action"] for s in kept] == ["copied", "copied"]
    kept = copy_through(src, tmp_path / "out.mp4").kept["streams"]
    assert kept[0]["action"] == "copied" and kept[1]["action"] == "left out" and kept[1]["codec"] in kept[1]["why"]
    with av.open(str(tmp_path / "out.mp4")) as c:
        assert [s.type for s in c.streams] == ["video", "audio"]


def test_fewer_frames_than_the_input_cut_the_audio_at_the_video_end(tmp_path):
    src = make_clip(tmp_path / "in.mp4", 45, audio_codec="aac")
    frames, fps = read_video(src, max_frames=15)
    out = write_video(tmp_path / "out.mp4", frames, fps, input_path=src, preset="ultrafast")
    last_pts = packets(out, "audio")[-1][0]
    assert 0.9 < last_pts / RATE < 1.0 + 1024 / RATE  # 15 frames at 15 fps: audio up to 1 s, not 3


def test_variable_frame_timestamps_and_start_offset_are_kept(tmp_path):
    rng = np.random.default_rng(1)
    steps = rng.choice([33, 67, 100], size=29)  # ms: 30, 15 and 10 fps mixed
    pts = list(250 + np.concatenate([[0], np.cumsum(steps)]))  # starts at 0.25 s
    src = make_clip(tmp_path / "in.mkv", 30, pts=pts, time_base=Fraction(1, 1000))
    assert probe_video(src).variable_fps
    for suffix in (".mkv", ".mp4"):
        writer = copy_through(src, tmp_path / f"out{suffix}")
        with av.open(str(writer.path)) as c:
            s = c.streams.video[0]
            got = sorted(float(p.pts * s.time_base) for p in c.demux(s) if p.size)
        assert np.allclose(got, np.array(pts) / 1000, atol=1e-3), suffix
        assert writer.kept["timestamps"] == "the input's"


def test_a_different_fps_retimes_the_frames(tmp_path):
    src = make_clip(tmp_path / "in.mp4", 30)
    frames, _ = read_video(src)
    with VideoWriter(tmp_path / "out.mp4", 30.0, input_path=src, preset="ultrafast") as writer:
        writer.write(frames)
    assert writer.kept["timestamps"] == "retimed to a constant rate"
    assert probe_video(writer.path).fps == pytest.approx(30.0)


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_rotation_and_container_metadata_are_kept(tmp_path, suffix):
    meta = {"title": "interview take 3", "creation_time": "2024-05-06T07:08:09.000000Z", "comment": "phone"}
    src = make_clip(tmp_path / "in.mp4", 20, rotation=90, metadata=meta)
    assert probe_video(src).rotation == 90
    writer = copy_through(src, tmp_path / f"out{suffix}")
    info = probe_video(writer.path)
    assert info.rotation == 90 and writer.kept["rotation_deg"] == 90
    with av.open(str(writer.path)) as c:
        tags = {k.lower(): v for k, v in c.metadata.items()}  # Matroska writes COMMENT
        for key, value in meta.items():
            assert tags.get(key) == value, (key, tags)


@pytest.mark.parametrize("colour", [Colour(5, 6, 6, 2),  # BT.601 full range
                                    Colour(9, 9, 16, 1)],  # BT.2020 / PQ, limited
                         ids=["bt601-full", "bt2020-pq"])
def test_colour_tags_and_matrix_are_kept(tmp_path, colour):
    src = make_clip(tmp_path / "in.mp4", 20, colour=colour)
    info_in = probe_video(src)
    assert info_in.colour == colour.names()
    writer = copy_through(src, tmp_path / "out.mp4", crf=4)  # little codec noise on these tiny saturated blocks
    assert probe_video(writer.path).colour == colour.names() and writer.kept["colour"]["matrix_kept"]
    # Tagged as the input and encoded with its matrix and range: decoded by the tags, the
    # colours are the input's (a BT.709 encode under these tags is off by several levels).
    before = read_video(src)[0].astype(np.float64)
    after = read_video(writer.path)[0].astype(np.float64)
    inner = [np.s_[:, 12:20, 12 + 22 * k : 20 + 22 * k] for k in range(4)]  # away from chroma-blurred edges
    worst = max(np.abs(before[b].mean((0, 1, 2)) - after[b].mean((0, 1, 2))).max() for b in inner) * 255
    assert worst < 0.5, worst


def test_colour_tags_go_to_ffv1_as_primaries_and_transfer(tmp_path):
    src = make_clip(tmp_path / "in.mp4", 20, colour=Colour(9, 9, 16, 1))
    writer = copy_through(src, tmp_path / "out.mkv")
    colour = probe_video(writer.path).colour
    assert (colour["matrix"], colour["primaries"], colour["transfer"]) == ("rgb", "bt2020", "smpte2084")


def _ten_bit_clip(tmp_path) -> tuple[Path, np.ndarray]:
    """A 10-bit clip whose frames change by a quarter of an 8-bit level per frame."""
    h, w = SIZE
    base = np.linspace(0.3, 0.6, w)[None, :, None] * np.array([1.0, 0.8, 0.6]) * np.ones((h, w, 1))  # skin-like
    deep = np.stack([base + t * 0.25 / 255 for t in range(16)])
    values = np.round(deep * 65535).astype(np.uint16)
    return make_clip(tmp_path / "in10.mp4", 16, pix_fmt="yuv420p10le", colour=Colour(1, 1, 1, 1),
                     deep_values=values), deep


def test_ten_bit_input_is_read_deep_and_written_at_ten_bits(tmp_path):
    src, deep = _ten_bit_clip(tmp_path)
    info = probe_video(src)
    assert info.bit_depth == 10
    raw = next(iter_frames(src, chunk_frames=16, raw=True))
    assert raw.dtype == np.uint16
    frames = read_video(src)[0]
    # The colours as made (a 16-bit conversion that swaps or mixes channels would show here).
    assert np.abs(frames.mean((0, 1, 2)) - deep.mean((0, 1, 2))).max() < 1 / 255
    # The frame means step by a quarter of an 8-bit level: an 8-bit read would round them away.
    means = frames.mean((1, 2, 3)) * 255
    assert np.allclose(np.diff(means), 0.25, atol=0.05)
    psnr = {}
    for bits in (10, 8):  # crf 0: what is lost is the depth, not the codec's
        writer = copy_through(src, tmp_path / f"out{bits}.mp4", bit_depth=bits, crf=0)
        assert probe_video(writer.path).bit_depth == bits and writer.kept["bit_depth"] == {"input": 10, "output": bits}
        again = read_video(writer.path)[0].astype(np.float64)
        psnr[bits] = -10 * np.log10(np.mean((again - frames) ** 2))
        slope = np.polyfit(np.arange(len(again)), again.mean((1, 2, 3)) * 255, 1)[0]
        assert slope == pytest.approx(0.25, abs=0.02), (bits, slope)  # the dither keeps the sub-level steps
    assert psnr[10] > psnr[8] + 2, psnr  # measured: 54.6 against 51.9 dB (x264 at crf 0 is not lossless at 10 bits)


def test_sixteen_bit_ffv1_is_lossless_for_deep_frames(tmp_path):
    src, _ = _ten_bit_clip(tmp_path)
    frames = read_video(src)[0]
    out = write_video(tmp_path / "out16.mkv", frames, FPS, input_path=src, bit_depth=16)
    assert probe_video(out).bit_depth == 16
    assert np.abs(read_video(out)[0] - frames).max() < 1.5 / 65535
    folder = write_video(str(tmp_path / "frames16") + "/", frames, FPS, bit_depth=16)  # 16-bit PNGs
    assert probe_video(folder, fps=FPS).bit_depth == 16
    assert np.abs(read_video(folder, fps=FPS)[0] - frames).max() < 1.5 / 65535


def test_bit_depths_a_format_cannot_write_are_refused(tmp_path):
    with pytest.raises(InputError, match="cannot be written at 16 bits"):
        VideoWriter(tmp_path / "x.mp4", 15, bit_depth=16)
    with pytest.raises(InputError, match="cannot be written at 10 bits"):
        VideoWriter(tmp_path / "frames/", 15, bit_depth=10)


def test_layout_of_a_folder_is_none_and_png_output_says_what_it_left_out(tmp_path):
    src = make_clip(tmp_path / "in.mp4", 20, audio_codec="aac")
    assert source_layout(tmp_path) is None
    frames, fps = read_video(src)
    with VideoWriter(str(tmp_path / "frames") + "/", fps, input_path=src) as writer:
        writer.write(frames)
    assert writer.kept["streams"][0]["action"] == "left out"


def test_the_cli_edit_keeps_the_audio_and_says_so(tmp_path):
    """The command line's edit: the saved file has the input's audio packets, and the report
    lists what was kept."""
    import json

    from physiolatent_core import cli
    from physiolatent_core.synth import synth_subject
    from physiolatent_core.video import quantize_to_uint8

    clip = synth_subject(duration_s=5.0, hr_bpm=72.0, size=(120, 160), fps=15.0, seed=3)
    src = make_clip(tmp_path / "talk.mp4", frames=quantize_to_uint8(clip.frames), fps=15.0, audio_codec="aac",
                    metadata={"title": "talk"})
    out = tmp_path / "talk_edited.mp4"
    assert cli.main(["edit", str(src), "-o", str(out), "--target-hr", "90", "--quiet", "--no-figure",
                     "--methods", "pos", "--preset", "ultrafast"]) == 0
    assert packets(out, "audio") == packets(src, "audio")
    report = json.loads((tmp_path / "talk_edited.mp4.report.json").read_text())
    assert [s["action"] for s in report["kept"]["streams"]] == ["copied"]
    assert report["kept"]["metadata"] == ["title"] and report["input"]["streams"][0]["codec"] == "aac"


def test_upright_frames_are_turned_as_shown_and_written_back_as_stored(tmp_path):
    shown = _frames(10)  # what the viewer should see
    stored = np.ascontiguousarray(np.rot90(shown, -1, axes=(1, 2)))  # a phone's sensor: on its side
    src = make_clip(tmp_path / "phone.mp4", frames=stored, rotation=90)  # the display matrix turns it back
    upright = next(iter_frames(src, chunk_frames=10, upright=True, raw=True))
    error = np.abs(upright.astype(int) - shown).mean()  # 4:2:0 blurs the saturated blocks' edges
    wrong_way = np.abs(np.rot90(upright, 2, axes=(1, 2)).astype(int) - shown).mean()
    assert upright.shape == shown.shape and error < 3 and wrong_way > 10 * error, (error, wrong_way)
    lazy = next(iter_frames(src, chunk_frames=10, upright=True, lazy=True))
    assert lazy.shape == shown.shape and np.array_equal(np.asarray(lazy), upright)
    frames = read_video(src)[0]
    with VideoWriter(tmp_path / "out.mp4", FPS, input_path=src, upright=True, preset="ultrafast") as writer:
        writer.write(next(iter_frames(src, chunk_frames=10, upright=True)))
    assert probe_video(writer.path).rotation == 90
    again = read_video(writer.path)[0]
    assert again.shape == frames.shape and np.abs(again - frames).mean() < 2 / 255  # stored as the input was


def test_the_cli_edits_a_phone_video_stored_on_its_side(tmp_path):
    """A face stored sideways under a 90 degree display matrix is found (tracked upright),
    edited, and written back sideways with the rotation kept."""
    import json

    from physiolatent_core import cli
    from physiolatent_core.synth import synth_subject
    from physiolatent_core.video import quantize_to_uint8

    clip = synth_subject(duration_s=5.0, hr_bpm=72.0, size=(160, 120), fps=15.0, seed=3)  # portrait
    stored = np.ascontiguousarray(np.rot90(quantize_to_uint8(clip.frames), -1, axes=(1, 2)))
    src = make_clip(tmp_path / "phone.mp4", frames=stored, fps=15.0, rotation=90, audio_codec="aac")
    out = tmp_path / "phone_edited.mp4"
    assert cli.main(["edit", str(src), "-o", str(out), "--target-hr", "90", "--quiet", "--no-figure",
                     "--methods", "pos", "--preset", "ultrafast"]) == 0
    info = probe_video(out)
    assert info.rotation == 90 and (info.width, info.height) == (160, 120)
    report = json.loads((tmp_path / "phone_edited.mp4.report.json").read_text())
    assert report["face"]["frames_detected"] > 0.8 * report["face"]["frames"]
    assert abs(report["verify"]["hr_bpm"]["pos"] - 90) < 5


def test_the_cli_edits_a_ten_bit_hdr_clip_at_ten_bits(tmp_path):
    """A 10-bit BT.2020/PQ face clip edited with --bit-depth 10: the saved file is 10-bit,
    tagged as the input, and reads the target."""
    import json

    from physiolatent_core import cli
    from physiolatent_core.synth import synth_subject

    clip = synth_subject(duration_s=5.0, hr_bpm=72.0, size=(120, 160), fps=15.0, seed=3)
    deep = np.round(np.clip(clip.frames, 0, 1) * 65535).astype(np.uint16)
    src = make_clip(tmp_path / "hdr.mp4", frames=np.zeros(deep.shape, np.uint8), fps=15.0, pix_fmt="yuv420p10le",
                    colour=Colour(9, 9, 16, 1), deep_values=deep)
    out = tmp_path / "hdr_edited.mp4"
    assert cli.main(["edit", str(src), "-o", str(out), "--target-hr", "90", "--quiet", "--no-figure",
                     "--methods", "pos", "--bit-depth", "10", "--preset", "ultrafast"]) == 0
    info = probe_video(out)
    assert info.bit_depth == 10 and info.colour == Colour(9, 9, 16, 1).names()
    report = json.loads((tmp_path / "hdr_edited.mp4.report.json").read_text())
    assert report["kept"]["bit_depth"] == {"input": 10, "output": 10}
    assert abs(report["verify"]["hr_bpm"]["pos"] - 90) < 5 and report["verify"]["psnr_db"] > 38
