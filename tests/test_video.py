"""Tests for physiolatent_core.video: reading, streaming, writing, dithering, bad input."""

from __future__ import annotations

import os
import tracemalloc
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from scipy.signal import periodogram

from physiolatent_core import video
from physiolatent_core.errors import InputError, VideoError
from physiolatent_core.video import (
    DitherState,
    TruncatedVideoWarning,
    VideoWriter,
    encode_decode,
    iter_frames,
    probe_video,
    quantize_to_uint8,
    read_video,
    to_float,
    write_video,
)
from physiolatent_core.video.quantise import _TileDither
from physiolatent_core.video.write import _RGB_TO_YCBCR, _rgb_to_ycbcr420

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _random_clip(t=12, h=24, w=32, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 1, (t, h, w, 3)).astype(np.float32)


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def _empty(tmp_path: Path) -> Path:
    folder = tmp_path / "empty"
    folder.mkdir()
    return folder


def _encode_raw(path, frames_u8, codec, pix_fmt, in_fmt="rgb24", pts=None, time_base=None, options=None):
    """Write frames with PyAV directly (to make inputs our writer never produces)."""
    with av.open(str(path), "w", options=options or {}) as c:
        s = c.add_stream(codec, rate=30)
        s.width, s.height, s.pix_fmt = frames_u8.shape[2], frames_u8.shape[1], pix_fmt
        if time_base is not None:
            s.time_base = s.codec_context.time_base = time_base
        for i, f in enumerate(frames_u8):
            frame = av.VideoFrame.from_ndarray(f, format=in_fmt).reformat(format=pix_fmt)
            frame.pts = i if pts is None else pts[i]
            if time_base is not None:
                frame.time_base = time_base
            c.mux(s.encode(frame))
        c.mux(s.encode(None))


# ------------------------------------------------------------------ quantisation


def test_round_and_truncate_levels():
    x = np.array([[0.0, 0.4 / 255, 0.6 / 255, 127.5 / 255, 1.0, 1.7, -0.2]], np.float32)
    assert quantize_to_uint8(x, "round").tolist() == [[0, 0, 1, 128, 255, 255, 0]]
    assert quantize_to_uint8(x, "truncate").tolist() == [[0, 0, 0, 127, 255, 255, 0]]


def test_block_conversions_match_whole_array_arithmetic():
    # to_float and round/truncate work a block at a time; the result must not depend on
    # where the blocks fall (sizes not a multiple of the block, strided views, uint16).
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 256, (3, 301, 293, 3), dtype=np.uint8)[:, ::2]
    np.testing.assert_array_equal(to_float(codes), codes.astype(np.float32) * np.float32(1 / 255))
    deep = rng.integers(0, 65536, (2, 17, 9), dtype=np.uint16)
    np.testing.assert_array_equal(to_float(deep), deep.astype(np.float32) * np.float32(1 / 65535))
    values = rng.uniform(-0.1, 1.1, (2, 301, 293, 3)).astype(np.float32)
    scaled = np.clip(values, 0, 1) * np.float32(255)
    np.testing.assert_array_equal(quantize_to_uint8(values, "round"), np.floor(scaled + 0.5).astype(np.uint8))
    np.testing.assert_array_equal(quantize_to_uint8(values, "truncate"), scaled.astype(np.uint8))


def test_ycbcr420_is_bt709_limited_range_with_2x2_mean_chroma():
    # OpenCV's fast paths (bilinear at half size, 3-row transform) against float64 arithmetic.
    rng = np.random.default_rng(1)
    rgb = rng.uniform(0, 1, (6, 10, 3)).astype(np.float32)
    luma, cb, cr = _rgb_to_ycbcr420(rgb)
    matrix = _RGB_TO_YCBCR.astype(np.float64)
    full = rgb.astype(np.float64) @ matrix[:, :3].T + matrix[:, 3]
    np.testing.assert_allclose(luma, full[..., 0], atol=1e-4)
    means = full.reshape(3, 2, 5, 2, 3).mean(axis=(1, 3))
    np.testing.assert_allclose(cb, means[..., 1], atol=1e-4)
    np.testing.assert_allclose(cr, means[..., 2], atol=1e-4)


def test_tile_dither_steps_whole_tiles_and_keeps_the_tile_mean():
    # A flat plane 0.3 level above 100 with a frame size that is no multiple of the tile:
    # the tiles step by whole levels, and over time each tile averages the wanted value.
    dither = _TileDither(tile=8, seed=0)
    planes = np.stack([dither(np.full((20, 30), 100.3, np.float32)) for _ in range(200)]).astype(float)
    assert set(np.unique(planes)) <= {100.0, 101.0}
    assert np.all(planes[:, :8, :8] == planes[:, :1, :1])  # a tile moves as a whole
    np.testing.assert_allclose(planes.mean(axis=0), 100.3, atol=0.02)


def test_dither_keeps_mean_and_carries_state_across_chunks():
    level = np.full((200, 8, 8), 100.3 / 255, np.float32)
    whole = quantize_to_uint8(level, "dither", seed=3)
    assert set(np.unique(whole)) == {100, 101}
    assert abs(whole.mean() - 100.3) < 0.01  # error diffusion: the time average is exact
    assert np.all(np.abs(whole.astype(float).mean(0) - 100.3) < 0.01)  # per pixel too
    state = DitherState(seed=3)
    chunked = np.concatenate([quantize_to_uint8(c, "dither", state=state) for c in np.split(level, [7, 64, 150])])
    np.testing.assert_array_equal(chunked, whole)
    with pytest.raises(InputError, match="one state per video"):
        quantize_to_uint8(np.zeros((2, 4, 4)), "dither", state=state)
    with pytest.raises(InputError, match="choose one of"):
        quantize_to_uint8(level, "floor")


def _subgrey_pulse(t=300, fps=30.0, size=48):
    """Flat grey 128/255 (0.502) plus a 0.3-grey-level sine at 1.2 Hz: [T, H, W, 3]."""
    wave = 0.3 / 255 * np.sin(2 * np.pi * 1.2 * np.arange(t) / fps)
    # 128/255, not 0.5: at 127.5 levels plain rounding toggles 127/128 and would keep the
    # sine as a square wave; from a whole level, rounding must erase it.
    return np.broadcast_to((128 / 255 + wave)[:, None, None, None], (t, size, size, 3)).astype(np.float32)


def _sine_amplitude_levels(frames, fps, hz=1.2):
    """(spectral peak in Hz, amplitude in grey levels) of the mean grey over time."""
    mean = frames.mean(axis=(1, 2, 3)) * 255
    freqs, power = periodogram(mean - mean.mean(), fs=fps, window="hann")
    t = np.arange(len(mean)) / fps
    amplitude = np.abs(2 * np.mean((mean - mean.mean()) * np.exp(-2j * np.pi * hz * t)))
    return freqs[np.argmax(power)], amplitude


@pytest.mark.parametrize("suffix,tolerance", [(".mkv", 0.05), (".mp4", 0.3)])  # mp4 measured: 0.25
def test_subgrey_pulse_survives_dithered_write(tmp_path, suffix, tolerance):
    frames, fps = _subgrey_pulse(), 30.0
    out = write_video(tmp_path / f"pulse{suffix}", frames, fps, crf=18)
    back, back_fps = read_video(out)
    assert back.shape == frames.shape and back_fps == pytest.approx(fps)
    peak_hz, amplitude = _sine_amplitude_levels(back, fps)
    assert peak_hz == pytest.approx(1.2, abs=0.05)
    assert amplitude == pytest.approx(0.3, rel=tolerance)
    # Plain rounding erases the same pulse: the test can fail.
    rounded, _ = read_video(write_video(tmp_path / f"round{suffix}", frames, fps, crf=18, dither=False))
    assert _sine_amplitude_levels(rounded, fps)[1] < 0.03


def test_subgrey_pulse_on_a_textured_still_through_h264(tmp_path):
    """On texture, per-pixel dither flips scattered pixels that H.264 drops (measured ~20 %
    kept); the writer's tile dither keeps ~50 %, rounding ~1 %."""
    from skimage import data, transform

    fps, t = 30.0, np.arange(200) / 30.0
    face = transform.resize(data.astronaut(), (96, 96), anti_aliasing=True).astype(np.float32)
    clip = np.clip(face[None] + (0.3 / 255 * np.sin(2 * np.pi * 1.2 * t))[:, None, None, None], 0, 1)
    kept, peak = {}, {}
    for method in ("dither", "round"):
        back, _ = read_video(write_video(tmp_path / f"{method}.mp4", clip, fps, crf=18, quantize=method))
        peak[method], kept[method] = _sine_amplitude_levels(back, fps)
    assert peak["dither"] == pytest.approx(1.2, abs=0.05)
    assert kept["dither"] > 0.35 * 0.3
    assert kept["round"] < 0.1 * 0.3


# ------------------------------------------------------------------ writing and reading back


def test_lazy_chunks_are_the_raw_chunks_converted_where_used(tmp_path):
    clip = _random_clip(t=11, h=24, w=32)
    path = write_video(tmp_path / "c.mp4", clip, 30.0, crf=18)
    raw = list(iter_frames(path, chunk_frames=4, raw=True))
    lazy = list(iter_frames(path, chunk_frames=4, lazy=True))
    assert [len(c) for c in lazy] == [4, 4, 3]
    for r, c in zip(raw, lazy):
        assert isinstance(c, video.LazyFrames) and c.shape == r.shape and c.dtype == np.uint8
        np.testing.assert_array_equal(np.asarray(c), r)
        np.testing.assert_array_equal(np.asarray(c[1]), r[1])
        assert c[1].shape == r[1].shape and c[1].copy() is c[1]
    folder = write_video(tmp_path / "frames", clip, 30.0)  # a folder has nothing to defer
    chunks = list(iter_frames(folder, chunk_frames=4, lazy=True, stop=6))
    assert [type(c) for c in chunks] == [np.ndarray, np.ndarray] and chunks[0].dtype == np.uint8


@pytest.mark.parametrize("lazy", [False, True])
def test_a_size_change_inside_the_stream_is_refused(tmp_path, lazy):
    # Two MPEG-TS streams of different sizes back to back decode as one stream.
    parts = []
    for i, (h, w) in enumerate([(24, 32), (32, 48)]):
        path = tmp_path / f"{i}.ts"
        with av.open(str(path), "w", format="mpegts") as c:
            s = c.add_stream("libx264", rate=30)
            s.width, s.height, s.pix_fmt = w, h, "yuv420p"
            for k in range(5):
                c.mux(s.encode(av.VideoFrame.from_ndarray(np.full((h, w, 3), 40 * k, np.uint8), format="rgb24")))
            c.mux(s.encode(None))
        parts.append(path.read_bytes())
    joined = tmp_path / "joined.ts"
    joined.write_bytes(b"".join(parts))
    with pytest.raises(VideoError, match="frame 5 .* 48x32 .* earlier frames are 32x24"):
        list(iter_frames(joined, chunk_frames=4, raw=True, lazy=lazy))


def test_ffv1_is_lossless_for_8bit_rgb(tmp_path):
    clip = np.random.default_rng(1).integers(0, 256, (6, 21, 35, 3), dtype=np.uint8)  # odd size too
    back, _ = read_video(write_video(tmp_path / "x.mkv", clip, 25.0))
    np.testing.assert_array_equal(np.round(back * 255).astype(np.uint8), clip)
    assert probe_video(tmp_path / "x.mkv").codec == "ffv1"


def test_mp4_roundtrip_fps_count_and_colour(tmp_path):
    rng = np.random.default_rng(2)
    colours = rng.uniform(0.05, 0.95, (4, 3)).astype(np.float32)
    image = np.repeat(np.repeat(colours.reshape(2, 2, 3), 16, 0), 16, 1)  # 4 flat 16x16 patches
    clip = np.broadcast_to(image, (20, 32, 32, 3))
    path = write_video(tmp_path / "c.mp4", clip, 30000 / 1001, crf=0)
    info = probe_video(path)
    assert (info.width, info.height, info.num_frames, info.codec) == (32, 32, 20, "h264")
    assert info.fps == pytest.approx(29.97, abs=1e-3) and not info.variable_fps
    assert info.duration_s == pytest.approx(20 / info.fps, rel=1e-3)
    back, _ = read_video(path)
    patch_means = back[:, 4:12, 4:12].mean(axis=(0, 1, 2))
    assert np.abs(patch_means - colours[0]).max() * 255 < 0.75  # BT.709 tags honoured both ways


def test_h264_encodes_are_reproducible(tmp_path):
    # x264's AVX-512 code gave a different file for the same frames at some widths (260 here);
    # video.write._x264_options keeps it off on such CPUs.
    from physiolatent_core.synth import synth_subject

    clip = synth_subject(duration_s=2.0, fps=30.0, size=(200, 260), seed=4).frames
    files = [write_video(tmp_path / f"r{i}.mp4", clip, 30.0, crf=23) for i in range(3)]
    assert len({Path(f).read_bytes() for f in files}) == 1


def test_odd_size_is_padded_for_h264_and_cropped_by_encode_decode(tmp_path):
    clip = _random_clip(t=5, h=25, w=33)
    info = probe_video(write_video(tmp_path / "odd.mp4", clip, 30.0))
    assert (info.width, info.height) == (34, 26)
    out = encode_decode(clip, 30.0)
    assert out.shape == clip.shape and out.dtype == np.float32


def test_encode_decode_ffv1_equals_truncation():
    clip = _random_clip(t=4)
    out = encode_decode(clip, 30.0, codec="ffv1", quantize="truncate")
    np.testing.assert_array_equal(np.round(out * 255), np.floor(clip * 255))
    with pytest.raises(InputError, match="unknown codec"):
        encode_decode(clip, 30.0, codec="vp9")


def test_encode_decode_h264_default_is_close_but_not_identical():
    y, x = np.mgrid[0:32, 0:48] / 48.0
    image = np.stack([0.2 + 0.6 * x, 0.5 + 0.3 * np.sin(6 * y), 0.4 + 0.2 * x * y], -1).astype(np.float32)
    clip = np.broadcast_to(image, (8, 32, 48, 3))
    out = encode_decode(clip, 30.0)  # truncate + crf 23, like ComfyUI's SaveVideo
    error = np.abs(out - clip) * 255
    assert 0.1 < error.mean() < 3  # lossy, but only by a few grey levels on smooth content


@pytest.mark.parametrize("name,encoder,pix_fmt,codec", [("a.avi", "mpeg4", "yuv420p", "mpeg4"),
                                                         ("a.webm", "libvpx-vp9", "yuv420p", "vp9"),
                                                         ("a.mov", "png", "rgb24", "png")])
def test_reads_other_containers(tmp_path, name, encoder, pix_fmt, codec):
    gradient = np.linspace(30, 220, 32).astype(np.uint8)
    clip = np.broadcast_to(gradient[None, None, :, None], (5, 16, 32, 3)).copy()
    _encode_raw(tmp_path / name, clip, encoder, pix_fmt)
    info = probe_video(tmp_path / name)
    frames, fps = read_video(tmp_path / name)
    assert (info.codec, info.num_frames, fps, frames.shape) == (codec, 5, 30.0, (5, 16, 32, 3))
    assert np.abs(frames * 255 - clip).mean() < 3


def test_png_folder_roundtrip_and_missing_fps(tmp_path):
    clip = _random_clip(t=3)
    out = write_video(str(tmp_path / "frames") + "/", clip, 24.0)
    assert _leftovers(Path(out)) == ["frame_000000.png", "frame_000001.png", "frame_000002.png"]
    with pytest.raises(InputError, match="missing fps: pass --fps"):
        read_video(out)
    back, fps = read_video(out, fps=24.0)
    assert fps == 24.0 and np.abs(back - clip).max() <= 1 / 255
    info = probe_video(out, fps=24.0)
    assert (info.num_frames, info.width, info.height, info.codec) == (3, 32, 24, "png")
    assert probe_video(write_video(tmp_path / "nosuffix", clip, 24.0), fps=24.0).num_frames == 3


def test_frame_folder_is_sorted_naturally(tmp_path):
    for n in (10, 2, 1):  # "10" sorts before "2" as text
        cv2.imwrite(str(tmp_path / f"img{n}.jpg"), np.full((8, 8, 3), n * 20, np.uint8))
    (tmp_path / "notes.txt").write_text("ignored")
    frames, _ = read_video(tmp_path, fps=10.0)
    assert np.round(frames[:, 4, 4, 0] * 255 / 20).tolist() == [1, 2, 10]


def test_iter_frames_chunks_start_stop(tmp_path):
    clip = np.random.default_rng(3).integers(0, 256, (23, 16, 16, 3), dtype=np.uint8)
    path = write_video(tmp_path / "x.mkv", clip, 30.0)
    chunks = list(iter_frames(path, chunk_frames=5, start=3, stop=20))
    assert [len(c) for c in chunks] == [5, 5, 5, 2]
    assert all(c.dtype == np.float32 and c.shape[1:] == (16, 16, 3) for c in chunks)
    np.testing.assert_array_equal(np.round(np.concatenate(chunks) * 255).astype(np.uint8), clip[3:20])
    assert len(read_video(path, max_frames=7)[0]) == 7
    with pytest.raises(InputError):
        next(iter_frames(path, chunk_frames=0))


def test_streaming_memory_is_bounded_by_the_chunk(tmp_path):
    clip = np.random.default_rng(4).integers(0, 256, (150, 96, 128, 3), dtype=np.uint8)
    path = write_video(tmp_path / "long.mkv", clip, 30.0)
    chunk_bytes = 8 * 96 * 128 * 3 * 4
    tracemalloc.start()
    count = sum(len(c) for c in iter_frames(path, chunk_frames=8))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert count == 150
    assert peak < 4 * chunk_bytes < 150 * 96 * 128 * 3 * 4 / 4  # a few chunks, not the clip


def test_variable_frame_rate_uses_median_interval(tmp_path):
    frames = np.zeros((40, 16, 16, 3), np.uint8)
    intervals = np.full(39, 40)  # ms: 25 fps ...
    intervals[::7] = 55  # ... with some late frames
    pts = np.concatenate([[0], np.cumsum(intervals)])
    path = tmp_path / "vfr.mkv"
    _encode_raw(path, frames, "ffv1", "bgr0", pts=pts.tolist(), time_base=Fraction(1, 1000))
    info = probe_video(path)
    assert info.variable_fps and info.fps == pytest.approx(25.0)
    cfr = write_video(tmp_path / "cfr.mkv", frames, 25.0)
    assert not probe_video(cfr).variable_fps


# ------------------------------------------------------------------ output safety


def test_never_overwrites_input_or_existing_output(tmp_path):
    clip = _random_clip(t=2)
    src = write_video(tmp_path / "in.mkv", clip, 30.0)
    before = Path(src).read_bytes()
    with pytest.raises(InputError, match="output path equals input"):
        write_video(src, clip, 30.0, overwrite=True, input_path=tmp_path / "." / "in.mkv")
    with pytest.raises(InputError, match="--overwrite"):
        write_video(src, clip, 30.0)
    assert Path(src).read_bytes() == before
    write_video(src, clip[:1], 30.0, overwrite=True)
    assert probe_video(src).num_frames == 1
    folder = write_video(str(tmp_path / "f") + "/", clip, 30.0)
    write_video(folder, clip[:1], 30.0, overwrite=True)
    assert len(os.listdir(folder)) == 1
    assert _leftovers(tmp_path) == ["f", "in.mkv"]


@pytest.mark.parametrize("name", ["a.mp4", "a.mkv", "frames/"])
def test_failure_leaves_nothing_behind(tmp_path, name):
    with pytest.raises(RuntimeError):
        with VideoWriter(str(tmp_path / name), 30.0) as writer:
            writer.write(_random_clip(t=3))
            raise RuntimeError("user code failed mid-way")
    with pytest.raises(InputError, match="frame size"):
        with VideoWriter(str(tmp_path / name), 30.0) as writer:
            writer.write(_random_clip(t=2))
            writer.write(_random_clip(t=2, h=10))
    with pytest.raises(VideoError, match="no frames"):
        with VideoWriter(str(tmp_path / name), 30.0):
            pass
    assert _leftovers(tmp_path) == []


def test_writer_rejects_bad_arguments(tmp_path):
    clip = _random_clip(t=2)
    with pytest.raises(InputError, match=".avi"):
        VideoWriter(tmp_path / "a.avi", 30.0)
    with pytest.raises(InputError, match="fps"):
        VideoWriter(tmp_path / "a.mp4", 0)
    with pytest.raises(InputError, match="does not exist"):
        VideoWriter(tmp_path / "missing" / "a.mp4", 30.0)
    with pytest.raises(InputError, match="preset"):
        VideoWriter(tmp_path / "a.mp4", 30.0, preset="quick")
    (tmp_path / "dir.mp4").mkdir()
    with pytest.raises(InputError, match="exists as a folder"):
        VideoWriter(tmp_path / "dir.mp4", 30.0, overwrite=True)
    (tmp_path / "dir.mp4").rmdir()
    with pytest.raises(InputError, match=r"\[t, H, W, 3\]"):
        write_video(tmp_path / "a.mp4", clip[..., :2], 30.0)
    bad = clip.copy()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(InputError, match="NaN"):
        write_video(tmp_path / "a.mp4", bad, 30.0)
    assert _leftovers(tmp_path) == []


# ------------------------------------------------------------------ bad input


def test_missing_and_non_video_files(tmp_path):
    with pytest.raises(VideoError, match="not found"):
        probe_video(tmp_path / "nope.mp4")
    (tmp_path / "notes.txt").write_text("hello " * 100)
    with pytest.raises(VideoError, match="text file"):
        read_video(tmp_path / "notes.txt")
    (tmp_path / "fake.mp4").write_text("not a video\n")
    with pytest.raises(VideoError, match="cannot open"):
        probe_video(tmp_path / "fake.mp4")
    with pytest.raises(VideoError, match="no PNG/JPG"):
        probe_video(_empty(tmp_path), fps=30)


def test_file_with_no_frames(tmp_path):
    with av.open(str(tmp_path / "zero.mp4"), "w") as c:
        s = c.add_stream("libx264", rate=30)
        s.width, s.height, s.pix_fmt = 16, 16, "yuv420p"
        c.start_encoding()
    with pytest.raises(VideoError, match="no video frames"):
        read_video(tmp_path / "zero.mp4")


def test_truncated_files(tmp_path):
    clip = np.random.default_rng(5).integers(0, 256, (30, 32, 32, 3), dtype=np.uint8)
    # Index at the front (faststart): the first half of the frames still decodes.
    _encode_raw(tmp_path / "front.mp4", clip, "libx264", "yuv420p", options={"movflags": "faststart"})
    data = (tmp_path / "front.mp4").read_bytes()
    (tmp_path / "front_cut.mp4").write_bytes(data[: len(data) // 2])
    with pytest.warns(TruncatedVideoWarning):
        frames, _ = read_video(tmp_path / "front_cut.mp4")
    assert 0 < len(frames) < 30
    # Index at the end (the default): cutting it off loses the header.
    data = Path(write_video(tmp_path / "end.mp4", clip, 30.0)).read_bytes()
    (tmp_path / "end_cut.mp4").write_bytes(data[: len(data) // 2])
    with pytest.raises(VideoError, match="header"):
        read_video(tmp_path / "end_cut.mp4")


def test_grayscale_and_alpha_sources(tmp_path):
    gray = np.random.default_rng(6).integers(0, 256, (4, 16, 16), dtype=np.uint8)
    _encode_raw(tmp_path / "gray.mkv", gray, "ffv1", "gray", in_fmt="gray")
    info = probe_video(tmp_path / "gray.mkv")
    frames, _ = read_video(tmp_path / "gray.mkv")
    assert info.is_grayscale and not info.has_alpha and frames.shape == (4, 16, 16, 3)
    np.testing.assert_array_equal(np.round(frames * 255).astype(np.uint8), np.repeat(gray[..., None], 3, -1))

    rgba = np.random.default_rng(7).integers(0, 256, (3, 16, 16, 4), dtype=np.uint8)
    _encode_raw(tmp_path / "alpha.mkv", rgba, "ffv1", "bgra", in_fmt="rgba")
    assert probe_video(tmp_path / "alpha.mkv").has_alpha
    with pytest.warns(UserWarning, match="alpha"):
        frames, _ = read_video(tmp_path / "alpha.mkv")
    np.testing.assert_array_equal(np.round(frames * 255).astype(np.uint8), rgba[..., :3])

    folder = _empty(tmp_path)
    cv2.imwrite(str(folder / "0.png"), cv2.cvtColor(rgba[0], cv2.COLOR_RGBA2BGRA))
    cv2.imwrite(str(folder / "1.png"), cv2.cvtColor(rgba[1], cv2.COLOR_RGBA2BGRA))
    assert probe_video(folder, fps=5).has_alpha
    frames, _ = read_video(folder, fps=5)
    np.testing.assert_array_equal(np.round(frames * 255).astype(np.uint8), rgba[:2, ..., :3])


# ------------------------------------------------------------------ real videos (skipped without ../shared/data)


@pytest.mark.shared_data
@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="needs ../shared/data")
def test_real_videos_probe():
    evm = probe_video(SHARED_DATA / "evm_face.mp4")
    assert (evm.width, evm.height, evm.num_frames, evm.fps, evm.variable_fps) == (528, 592, 301, 30.0, False)
    naber = probe_video(SHARED_DATA / "naber_rppg_video.mp4")
    assert naber.variable_fps and naber.fps == pytest.approx(29.5, abs=0.05) and naber.num_frames == 907
    chunk = next(iter_frames(SHARED_DATA / "naber_rppg_video.mp4", chunk_frames=16))
    assert chunk.shape == (16, 240, 320, 3) and 0.05 < chunk.mean() < 0.95


def test_prefetch_keeps_order_and_raises_the_sources_error():
    assert list(video.prefetch(range(7))) == list(range(7))
    assert list(video.prefetch([])) == []

    def failing():
        yield 1
        raise VideoError("damaged")

    got = []
    with pytest.raises(VideoError, match="damaged"):
        for item in video.prefetch(failing()):
            got.append(item)
    assert got == [1]


def test_behind_calls_in_order_and_reports_errors():
    seen = []
    with video.Behind(seen.append) as call:
        for i in range(5):
            call(i)
    assert seen == list(range(5))  # the last call finished on leaving the block

    def fail_on_two(i):
        if i == 2:
            raise VideoError("disk full")

    with pytest.raises(VideoError, match="disk full"):
        with video.Behind(fail_on_two) as call:
            for i in range(4):
                call(i)


def test_whole_level_change_survives_truncation_and_steps_tile_by_tile():
    """A sub-level change on 8-bit frames, made in whole levels per 8x8 tile: truncating to
    8 bit keeps it exactly, the tile's mean over time is the change, and pixels the weight
    leaves out stay bit-identical."""
    rng = np.random.default_rng(0)
    t, h, w = 120, 40, 48
    levels = rng.integers(20, 60, (h, w, 3))  # dark skin: a 1 % change is under half a level
    frames = np.repeat((levels / 255.0).astype(np.float32)[None], t, axis=0)
    box = (5, 3, 45, 37)  # x0, y0, x1, y1
    weight = np.zeros((34, 40), np.float32)
    weight[2:-2, 2:-2] = 1.0
    wave = 0.01 * np.sin(2 * np.pi * 1.5 * np.arange(t) / 30.0)  # 1 % at 1.5 Hz
    residual = video.DitherState(seed=1).get((-(-h // 8), -(-w // 8), 3))
    out = frames.copy()
    for i in range(t):
        region = out[i, 3:37, 5:45]
        change = region * wave[i] * weight[..., None]
        video.add_in_whole_levels(out[i], box, change, weight, residual)
    truncated = np.floor(out.astype(np.float32) * np.float32(255)).astype(int)  # core SaveVideo
    steps = truncated - levels[None]
    assert np.array_equal(truncated, np.rint(out * 255).astype(int)), "truncation must equal rounding"
    off = np.ones((h, w), bool)
    off[3:37, 5:45] = weight <= 0.5
    assert np.array_equal(out[:, off], frames[:, off]), "pixels outside the weight are untouched"
    assert np.abs(steps).max() == 1 and (steps != 0).mean() > 0.05
    # Every on-pixel of a tile steps alike.
    on = ~off
    for ty, tx in [(1, 1), (2, 3), (3, 4)]:
        tile = steps[:, ty * 8 : ty * 8 + 8, tx * 8 : tx * 8 + 8][:, on[ty * 8 : ty * 8 + 8, tx * 8 : tx * 8 + 8]]
        assert (tile == tile[:, :1]).all()
    # The steps carry the wanted change: their 1.5 Hz component has its amplitude.
    sine = np.sin(2 * np.pi * 1.5 * np.arange(t) / 30.0)
    kept = 2 * np.mean(steps[:, 16:24, 16:24, 1].mean(axis=(1, 2)) * sine)
    assert kept == pytest.approx(0.01 * levels[16:24, 16:24, 1].mean(), rel=0.15)
